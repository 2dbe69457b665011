/* dots.h - one vector width of kmeans.c's score kernel, included once per
 * width with these defined:
 *   DOTS_NAME   the function's name
 *   DOTS_TARGET its target attribute
 *   DOTS_V, DOTS_W        the vector type and its doubles
 *   DOTS_ZERO(), DOTS_LOAD(p), DOTS_SET1(x), DOTS_FMA(a, b, c) (a b + c, one
 *   rounding), DOTS_STORE(p, v)
 *
 * out (m x b, row stride b) = x (m x d) C^T, from ct (d x bp: C transposed,
 * bp a multiple of 8, zero past b).  Every entry is one chain of fused
 * multiply-adds over e = 0 .. d-1 starting from 0, whatever the width, the
 * block or the row: the bits of kmeans.c's scalar fma loop. */

#define DOTS_CAT2(a, b) a##b
#define DOTS_CAT(a, b) DOTS_CAT2(a, b)
#define DOTS_FN(suffix) DOTS_CAT(DOTS_NAME, suffix)

/* rows [i0, i0 + RB) x the P vectors of centroids from c0 */
static inline __attribute__((always_inline, target(DOTS_TARGET))) void
DOTS_FN(_block)(size_t RB, size_t P, size_t i0, size_t c0, size_t b, size_t d, size_t bp,
                  const double *restrict x, const double *restrict ct, double *restrict out)
{
    DOTS_V acc[8][4];
    for (size_t r = 0; r < RB; r++)
        for (size_t p = 0; p < P; p++)
            acc[r][p] = DOTS_ZERO();
    for (size_t e = 0; e < d; e++) {
        DOTS_V cv[4];
        for (size_t p = 0; p < P; p++)
            cv[p] = DOTS_LOAD(ct + e * bp + c0 + p * DOTS_W);
        for (size_t r = 0; r < RB; r++) {
            const DOTS_V xv = DOTS_SET1(x[(i0 + r) * d + e]);
            for (size_t p = 0; p < P; p++)
                acc[r][p] = DOTS_FMA(xv, cv[p], acc[r][p]);
        }
    }
    const size_t cw = b - c0 < P * DOTS_W ? b - c0 : P * DOTS_W;
    for (size_t r = 0; r < RB; r++) {
        double row[4 * DOTS_W];
        for (size_t p = 0; p < P; p++)
            DOTS_STORE(row + p * DOTS_W, acc[r][p]);
        memcpy(out + (i0 + r) * b + c0, row, cw * sizeof *row);
    }
}

/* every row, in blocks of RB (then one at a time), for the P vectors from c0 */
static inline __attribute__((always_inline, target(DOTS_TARGET))) void
DOTS_FN(_panel)(size_t RB, size_t P, size_t m, size_t c0, size_t b, size_t d, size_t bp,
                  const double *restrict x, const double *restrict ct, double *restrict out)
{
    size_t i0 = 0;
    for (; i0 + RB <= m; i0 += RB)
        DOTS_FN(_block)(RB, P, i0, c0, b, d, bp, x, ct, out);
    for (; i0 < m; i0++)
        DOTS_FN(_block)(1, P, i0, c0, b, d, bp, x, ct, out);
}

/* Panels of 4 vectors, then the last 1-3 with more rows per block, so that
 * enough independent chains hide the FMA latency. */
__attribute__((target(DOTS_TARGET))) static void
DOTS_NAME(size_t m, size_t b, size_t d, size_t bp, const double *restrict x,
          const double *restrict ct, double *restrict out)
{
    size_t c0 = 0;
    for (; c0 + 4 * DOTS_W <= b; c0 += 4 * DOTS_W)
        DOTS_FN(_panel)(DOTS_RB4, 4, m, c0, b, d, bp, x, ct, out);
    const size_t left = (b - c0 + DOTS_W - 1) / DOTS_W; /* vectors, <= 4 */
    if (left == 4)
        DOTS_FN(_panel)(DOTS_RB4, 4, m, c0, b, d, bp, x, ct, out);
    else if (left == 3)
        DOTS_FN(_panel)(DOTS_RB4, 3, m, c0, b, d, bp, x, ct, out);
    else if (left == 2)
        DOTS_FN(_panel)(DOTS_RB2, 2, m, c0, b, d, bp, x, ct, out);
    else if (left == 1)
        DOTS_FN(_panel)(DOTS_RB2, 1, m, c0, b, d, bp, x, ct, out);
}

#undef DOTS_FN
#undef DOTS_CAT
#undef DOTS_CAT2
