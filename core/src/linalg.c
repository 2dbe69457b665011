/* linalg.c - thin wrappers over CBLAS. */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT */
#include "linalg.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_cblas.h>

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

double lsh_dot(size_t n, const double *x, const double *y)
{
    /* Four partial sums: vectorisable and a fixed order, so the same bits
     * on every run and thread count. */
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
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
