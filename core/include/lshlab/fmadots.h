/* lshlab/fmadots.h - exact, machine-independent blocks of dot products, for
 * lshlab's own code and for plugins (header only: no symbol, no ABI).
 *
 *   lshlab_fma_dots(m, b, d, bp, x, y, out, accumulate)
 *
 * out (m x b, row stride b) = x (m x d, row stride d) times y (d x bp, row
 * stride bp, bp a multiple of 8, columns b .. bp-1 finite and ignored), or
 * out += that product when accumulate is non-zero.  Every entry is one chain
 * of fused multiply-adds over e = 0 .. d-1 in order,
 *
 *     acc = accumulate ? out[i][c] : 0;  acc = fma(x[i][e], y[e][c], acc) ...
 *
 * so its bits do not depend on the machine, the vector width (AVX-512,
 * AVX2 with FMA, or scalar fma) or the block sizes.  A BLAS GEMM rounds some
 * entries differently from one CPU's kernels to another's (OpenBLAS 0.3.21's
 * Haswell and SkylakeX kernels disagree on about a third of a 4096 x 8 x 64
 * product).  Fast when b is a few vectors wide or more (B centroids of
 * k-means, keys of a tile); for large square products a BLAS is faster.
 * Give y on a 64-byte boundary (aligned_alloc(64, ...); bp a multiple of 8
 * keeps every row there too): no vector load then straddles two cache lines,
 * which made the kernel 12-19% faster at lshlab's shapes on an AVX-512 Xeon. */
#ifndef LSHLAB_FMADOTS_H
#define LSHLAB_FMADOTS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define LSHLAB_DOTS_CAT2(a, b) a##b
#define LSHLAB_DOTS_CAT(a, b) LSHLAB_DOTS_CAT2(a, b)
/* GCC keeps the accumulators in registers only when the loops over rows and
 * vectors are unrolled, which -O2 does not do by itself (the kernel then runs
 * at a third of its speed, each FMA's sum going through the stack); clang
 * unrolls them unasked and is slowed by the pragma. */
#if defined(__GNUC__) && !defined(__clang__)
#define LSHLAB_DOTS_UNROLL _Pragma("GCC unroll 8")
#else
#define LSHLAB_DOTS_UNROLL
#endif

/* One vector width of the kernel, expanded twice below.  DOTS_RB4, DOTS_RB2:
 * rows per block for panels of 3-4 and of 1-2 vectors, so that the
 * accumulators and operands fit the registers and enough independent chains
 * hide the FMA latency. */
#define LSHLAB_DOTS_WIDTH(NAME, TARGET, V, W, ZERO, LOAD, SET1, FMA, STORE, RB4, RB2)            \
    static inline __attribute__((always_inline, target(TARGET))) void LSHLAB_DOTS_CAT(           \
        NAME, _block)(size_t RB, size_t P, size_t i0, size_t c0, size_t b, size_t d, size_t bp,  \
                      const double *restrict x, const double *restrict y, double *restrict out,  \
                      int accumulate)                                                            \
    {                                                                                            \
        const size_t cw = b - c0 < P * W ? b - c0 : P * W;                                       \
        V acc[8][4];                                                                             \
        LSHLAB_DOTS_UNROLL for (size_t r = 0; r < RB; r++)                                       \
        {                                                                                        \
            double row[4 * W] = {0};                                                             \
            const double *from = out + (i0 + r) * b + c0;                                        \
            if (accumulate && cw < P * W) { /* a partial panel: through a buffer */              \
                memcpy(row, from, cw * sizeof *row);                                             \
                from = row;                                                                      \
            }                                                                                    \
            LSHLAB_DOTS_UNROLL for (size_t p = 0; p < P; p++)                                    \
                acc[r][p] = accumulate ? LOAD(from + p * W) : ZERO();                            \
        }                                                                                        \
        for (size_t e = 0; e < d; e++) {                                                         \
            V yv[4];                                                                             \
            LSHLAB_DOTS_UNROLL for (size_t p = 0; p < P; p++)                                    \
                yv[p] = LOAD(y + e * bp + c0 + p * W);                                           \
            LSHLAB_DOTS_UNROLL for (size_t r = 0; r < RB; r++)                                   \
            {                                                                                    \
                const V xv = SET1(x[(i0 + r) * d + e]);                                          \
                LSHLAB_DOTS_UNROLL for (size_t p = 0; p < P; p++)                                \
                    acc[r][p] = FMA(xv, yv[p], acc[r][p]);                                       \
            }                                                                                    \
        }                                                                                        \
        LSHLAB_DOTS_UNROLL for (size_t r = 0; r < RB; r++)                                       \
        {                                                                                        \
            double *to = out + (i0 + r) * b + c0;                                                \
            if (cw == P * W) {                                                                   \
                LSHLAB_DOTS_UNROLL for (size_t p = 0; p < P; p++)                                \
                    STORE(to + p * W, acc[r][p]);                                                \
                continue;                                                                        \
            }                                                                                    \
            double row[4 * W] = {0}; /* a partial panel: through a buffer */                     \
            LSHLAB_DOTS_UNROLL for (size_t p = 0; p < P; p++)                                    \
                STORE(row + p * W, acc[r][p]);                                                   \
            memcpy(to, row, cw * sizeof *row);                                                   \
        }                                                                                        \
    }                                                                                            \
    static inline __attribute__((always_inline, target(TARGET))) void LSHLAB_DOTS_CAT(           \
        NAME, _panel)(size_t RB, size_t P, size_t m, size_t c0, size_t b, size_t d, size_t bp,   \
                      const double *restrict x, const double *restrict y, double *restrict out,  \
                      int accumulate)                                                            \
    {                                                                                            \
        size_t i0 = 0;                                                                           \
        for (; i0 + RB <= m; i0 += RB)                                                           \
            LSHLAB_DOTS_CAT(NAME, _block)(RB, P, i0, c0, b, d, bp, x, y, out, accumulate);       \
        /* the last rows in blocks of 4, 2 and 1: one row at a time is slow */                   \
        if (RB > 4 && m - i0 >= 4) {                                                             \
            LSHLAB_DOTS_CAT(NAME, _block)(4, P, i0, c0, b, d, bp, x, y, out, accumulate);        \
            i0 += 4;                                                                             \
        }                                                                                        \
        if (RB > 2 && m - i0 >= 2) {                                                             \
            LSHLAB_DOTS_CAT(NAME, _block)(2, P, i0, c0, b, d, bp, x, y, out, accumulate);        \
            i0 += 2;                                                                             \
        }                                                                                        \
        for (; i0 < m; i0++)                                                                     \
            LSHLAB_DOTS_CAT(NAME, _block)(1, P, i0, c0, b, d, bp, x, y, out, accumulate);        \
    }                                                                                            \
    static __attribute__((target(TARGET), unused)) void NAME(                                    \
        size_t m, size_t b, size_t d, size_t bp, const double *restrict x,                       \
        const double *restrict y, double *restrict out, int accumulate)                          \
    {                                                                                            \
        size_t c0 = 0;                                                                           \
        for (; c0 + 4 * W <= b; c0 += 4 * W)                                                     \
            LSHLAB_DOTS_CAT(NAME, _panel)(RB4, 4, m, c0, b, d, bp, x, y, out, accumulate);       \
        const size_t left = (b - c0 + W - 1) / W; /* vectors, at most 4 */                       \
        if (left == 4)                                                                           \
            LSHLAB_DOTS_CAT(NAME, _panel)(RB4, 4, m, c0, b, d, bp, x, y, out, accumulate);       \
        else if (left == 3)                                                                      \
            LSHLAB_DOTS_CAT(NAME, _panel)(RB4, 3, m, c0, b, d, bp, x, y, out, accumulate);       \
        else if (left == 2)                                                                      \
            LSHLAB_DOTS_CAT(NAME, _panel)(RB2, 2, m, c0, b, d, bp, x, y, out, accumulate);       \
        else if (left == 1)                                                                      \
            LSHLAB_DOTS_CAT(NAME, _panel)(RB2, 1, m, c0, b, d, bp, x, y, out, accumulate);       \
    }

LSHLAB_DOTS_WIDTH(lshlab_dots_avx512, "avx512f", __m512d, 8, _mm512_setzero_pd, _mm512_loadu_pd,
                  _mm512_set1_pd, _mm512_fmadd_pd, _mm512_storeu_pd, 6, 8)
LSHLAB_DOTS_WIDTH(lshlab_dots_avx2, "avx2,fma", __m256d, 4, _mm256_setzero_pd, _mm256_loadu_pd,
                  _mm256_set1_pd, _mm256_fmadd_pd, _mm256_storeu_pd, 2, 4)
#endif

static __attribute__((unused)) void lshlab_fma_dots(size_t m, size_t b, size_t d, size_t bp,
                                                    const double *restrict x,
                                                    const double *restrict y,
                                                    double *restrict out, int accumulate)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        lshlab_dots_avx512(m, b, d, bp, x, y, out, accumulate);
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        lshlab_dots_avx2(m, b, d, bp, x, y, out, accumulate);
        return;
    }
#endif
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < b; c++) {
            double acc = accumulate ? out[i * b + c] : 0.0;
            for (size_t e = 0; e < d; e++)
                acc = fma(x[i * d + e], y[e * bp + c], acc);
            out[i * b + c] = acc;
        }
}

#endif
