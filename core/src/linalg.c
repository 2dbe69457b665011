/* linalg.c - thin wrappers over CBLAS. */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT */
#include "linalg.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_cblas.h>
#include <lshlab/fmadots.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* A leading dimension: BLAS wants at least 1 even for an empty inner
 * dimension (k = 0 then gives C = beta C, as it should). */
static int ld(size_t x)
{
    return x ? (int)x : 1;
}

void lsh_gemm(size_t m, size_t n, size_t k, const double *a, const double *b, double *c,
              int accumulate)
{
    if (m == 0 || n == 0)
        return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, a,
                ld(k), b, (int)n, accumulate ? 1.0 : 0.0, c, (int)n);
}

void lsh_gemm_nt_ld(size_t m, size_t n, size_t k, const double *a, const double *b,
                    double *c, size_t ldc)
{
    if (m == 0 || n == 0)
        return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0, a,
                ld(k), b, ld(k), 0.0, c, (int)ldc);
}

void lsh_gemm_nt(size_t m, size_t n, size_t k, const double *a, const double *b, double *c)
{
    lsh_gemm_nt_ld(m, n, k, a, b, c, n);
}

#if defined(__x86_64__) || defined(__i386__)
/* Rows u0 .. u0+8 of k (through rows, or consecutive), columns [e0, e0+8):
 * an 8 x 8 block transposed in registers into kt (lanes paired by unpack,
 * then halves and quarters joined by two-source permutes). */
__attribute__((target("avx512f"))) static void transpose_block8(const double *k, size_t d,
                                                                const uint32_t *rows, size_t u0,
                                                                size_t e0, size_t stride,
                                                                double *kt)
{
    /* kt: the block's first column's output row */
    __m512d r[8];
    for (size_t i = 0; i < 8; i++)
        r[i] = _mm512_loadu_pd(k + (rows ? (size_t)rows[u0 + i] : u0 + i) * d + e0);
    __m512d lo[4], hi[4]; /* lo[p]: columns 0,2,4,6 of rows 2p, 2p+1; hi: 1,3,5,7 */
    for (int p = 0; p < 4; p++) {
        lo[p] = _mm512_unpacklo_pd(r[2 * p], r[2 * p + 1]);
        hi[p] = _mm512_unpackhi_pd(r[2 * p], r[2 * p + 1]);
    }
    const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    const __m512i low = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
    const __m512i high = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
    for (int odd = 0; odd < 2; odd++) {
        const __m512d *v = odd ? hi : lo;
        /* rows 0-3 and 4-7 of columns (0, 2) and (4, 6) (+ odd) */
        const __m512d a02 = _mm512_permutex2var_pd(v[0], first, v[1]);
        const __m512d a46 = _mm512_permutex2var_pd(v[0], second, v[1]);
        const __m512d b02 = _mm512_permutex2var_pd(v[2], first, v[3]);
        const __m512d b46 = _mm512_permutex2var_pd(v[2], second, v[3]);
        _mm512_storeu_pd(kt + u0 + (0 + odd) * stride, _mm512_permutex2var_pd(a02, low, b02));
        _mm512_storeu_pd(kt + u0 + (2 + odd) * stride, _mm512_permutex2var_pd(a02, high, b02));
        _mm512_storeu_pd(kt + u0 + (4 + odd) * stride, _mm512_permutex2var_pd(a46, low, b46));
        _mm512_storeu_pd(kt + u0 + (6 + odd) * stride, _mm512_permutex2var_pd(a46, high, b46));
    }
}
#endif

/* Columns [e0, e1) of nk rows of k (row length d) into kt's rows 0 .. e1-e0. */
static void gather_columns(size_t nk, size_t d, size_t e0, size_t e1, const double *k,
                           const uint32_t *rows, size_t stride, double *kt)
{
    size_t u0 = 0, e8 = e0;
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        e8 = e0 + (e1 - e0) / 8 * 8;
        for (; u0 + 8 <= nk; u0 += 8)
            for (size_t e = e0; e < e8; e += 8)
                transpose_block8(k, d, rows, u0, e, stride, kt + (e - e0) * stride);
    }
#endif
    for (size_t u = 0; u < nk; u++) { /* what the blocks left */
        const double *kr = k + (rows ? (size_t)rows[u] : u) * d;
        for (size_t e = u < u0 ? e8 : e0; e < e1; e++)
            kt[(e - e0) * stride + u] = kr[e];
    }
    for (size_t u = nk; u < lsh_pad8(nk); u++)
        for (size_t e = e0; e < e1; e++)
            kt[(e - e0) * stride + u] = 0.0;
}

void lsh_gather_transposed(size_t nk, size_t d, const double *k, const uint32_t *rows,
                           size_t stride, double *kt)
{
    gather_columns(nk, d, 0, d, k, rows, stride, kt);
}

double lsh_chain_dot(size_t d, const double *x, const double *y)
{
    double acc = 0.0;
    for (size_t e = 0; e < d; e++)
        acc = fma(x[e], y[e], acc);
    return acc;
}

void lsh_chain_dots(size_t d, const double *x, const double *k, const uint32_t *rows,
                    size_t nk, double *out)
{
    /* 32 keys x 64 columns at a time, transposed on the stack: each piece
     * continues the chains from out (lshlab_fma_dots' accumulate), so the
     * pieces change no bit */
    enum { KEYS = 32, COLS = 64 };
    double kt[COLS * KEYS];
    if (d == 0) /* empty chains */
        memset(out, 0, nk * sizeof *out);
    for (size_t u0 = 0; u0 < nk; u0 += KEYS) {
        const size_t nb = nk - u0 < KEYS ? nk - u0 : KEYS;
        const double *kb = rows ? k : k + u0 * d;
        for (size_t e0 = 0; e0 < d; e0 += COLS) {
            const size_t e1 = d - e0 < COLS ? d : e0 + COLS;
            gather_columns(nb, d, e0, e1, kb, rows ? rows + u0 : NULL, KEYS, kt);
            lshlab_fma_dots(1, nb, e1 - e0, KEYS, x + e0, kt, out + u0, e0 > 0);
        }
    }
}

void lsh_blas_single_thread(void)
{
    /* openblas_set_num_threads exists only in OpenBLAS; look it up so the
     * build can also link another CBLAS. */
    void (*set)(int) = (void (*)(int))(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (set)
        set(1);
    /* OpenBLAS started its worker threads when it was loaded, and they spin
     * (sched_yield) for a while before they sleep: on 2 cores that takes a
     * core from lshlab's own threads.  Stop them (what OpenBLAS itself does
     * before a fork); single-threaded calls never restart them. */
    int (*stop)(void) = (int (*)(void))(uintptr_t)dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (stop && set)
        stop();
}

static const char *openblas_core(void)
{
    const char *(*get)(void) =
        (const char *(*)(void))(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_get_corename");
    return get ? get() : NULL;
}

/* OpenBLAS's kernels that use AVX-512 (0.3.21 names). */
static int avx512_core(const char *core)
{
    return strcasecmp(core, "skylakex") == 0 || strcasecmp(core, "cooperlake") == 0 ||
           strcasecmp(core, "sapphirerapids") == 0;
}

void lsh_blas_pick_kernels(char **argv)
{
    /* OpenBLAS (0.3.21, Debian 12) does not know newer CPUs: newer Xeons
     * (e.g. model 207) get its Prescott (SSE3) kernels, 4x slower than its
     * AVX-512 ones, and AVX-512 EPYCs (Zen 4) its Haswell (AVX2) kernels,
     * 1.5x slower (bench-dgemm: 40-45 against 67 GFLOP/s).  It reads
     * OPENBLAS_CORETYPE only when it is loaded, so name the best core this
     * CPU supports and start again.  A user's own OPENBLAS_CORETYPE is
     * always kept. */
    const char *core = openblas_core();
    if (!core || getenv("OPENBLAS_CORETYPE") || avx512_core(core))
        return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (strcasecmp(core, "prescott") == 0 && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0)
        return;
    /* the binary's own path, so that ps and top still say lshlab */
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0 && (size_t)len < sizeof self - 1) {
        self[len] = '\0';
        execv(self, argv);
    }
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on with Prescott */
}

const char *lsh_blas_core(void)
{
    const char *core = openblas_core();
    return core ? core : "";
}

const char *lsh_blas_name(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "cblas_dgemm");
    if (sym && dladdr(sym, &info) && info.dli_fname)
        return info.dli_fname;
    return "unknown";
}

double *lsh_alloc_doubles(size_t count, int zero)
{
    if (count > (SIZE_MAX - 63) / sizeof(double))
        return NULL;
    /* aligned_alloc wants a multiple of the alignment */
    const size_t bytes = (count * sizeof(double) + 63) / 64 * 64;
    double *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p && zero)
        memset(p, 0, bytes);
    return p;
}
