/* fastexp.h - exp(x) in plain C, at most 2 ulp from glibc's exp, the same
 * bits on every machine: the array forms' AVX-512 and AVX2 code (fastexp.c)
 * does the very same IEEE operations, element by element.
 *
 * x = (16 k + j) ln2/16 + r with |r| <= ln2/32 (ln2/16 split in two, fused
 * multiply-adds), e^x = 2^k 2^(j/16) (1 + q(r)) with 2^(j/16) from a table
 * of 16 (a register-wide permute in the vector forms) and q the Taylor
 * polynomial of e^r - 1 to degree 7 (truncation < 2e-18); 2^k is applied in
 * two halves so that subnormal results are rounded once, as AVX-512's
 * scalef does.  Inputs are clamped to [-746, 710]: below, the result is 0;
 * above, +inf; NaN stays NaN.
 */
#ifndef LSH_FASTEXP_H
#define LSH_FASTEXP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 2^(j/16), j = 0..15, correctly rounded */
static const double lsh_exp_table[16] = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0};

#define LSH_EXP_LO (-746.0)
#define LSH_EXP_HI 710.0
#define LSH_EXP_INV (0x1.71547652b82fep+4) /* 16 / ln2 */
#define LSH_EXP_SHIFT (0x1.8p52)           /* adding it rounds to an integer */
#define LSH_EXP_LN2HI (0x1.62e42fefa39efp-5) /* ln2/16 = LN2HI + LN2LO */
#define LSH_EXP_LN2LO (0x1.abc9e3b39803fp-60)
/* q(r) = r (1 + r (1/2 + r (1/6 + ... + r / 7!))) */
#define LSH_EXP_C7 (1.0 / 5040.0)
#define LSH_EXP_C6 (1.0 / 720.0)
#define LSH_EXP_C5 (1.0 / 120.0)
#define LSH_EXP_C4 (1.0 / 24.0)
#define LSH_EXP_C3 (1.0 / 6.0)
#define LSH_EXP_C2 0.5

static inline double lsh_exp(double x)
{
    x = LSH_EXP_LO > x ? LSH_EXP_LO : x;
    x = LSH_EXP_HI < x ? LSH_EXP_HI : x;
    const double t = fma(x, LSH_EXP_INV, LSH_EXP_SHIFT);
    const double k = t - LSH_EXP_SHIFT; /* 16 k + j: an integer */
    double r = fma(-k, LSH_EXP_LN2HI, x);
    r = fma(-k, LSH_EXP_LN2LO, r);
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    const double tj = lsh_exp_table[bits & 15];
    double p = fma(LSH_EXP_C7, r, LSH_EXP_C6);
    p = fma(p, r, LSH_EXP_C5);
    p = fma(p, r, LSH_EXP_C4);
    p = fma(p, r, LSH_EXP_C3);
    p = fma(p, r, LSH_EXP_C2);
    p = fma(p, r, 1.0);
    const double y = fma(tj, p * r, tj);
    /* 2^floor(k/16) in two halves: y 2^m1 is exact, the second product rounds once */
    const int32_t m = (int32_t)(uint32_t)bits >> 4, m1 = m >> 1, m2 = m - m1;
    const uint64_t b1 = (uint64_t)(uint32_t)(m1 + 1023) << 52;
    const uint64_t b2 = (uint64_t)(uint32_t)(m2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return y * s1 * s2;
}

/* x[t] = lsh_exp(scale * x[t] - shift) for t < n (NaN stays NaN, its sign
 * may differ). */
void lsh_exp_affine(double *x, size_t n, double scale, double shift);
/* The same with the widest form at most isa (0 scalar, 1 AVX2 with FMA,
 * 2 AVX-512) that this CPU has: for the tests, which check they agree. */
void lsh_exp_affine_isa(double *x, size_t n, double scale, double shift, int isa);

/* A row of attention weights from its raw scores x (the tile path's), in one
 * pass: x[u] = lsh_exp(scale x[u] - shift) where ok[u] != 0, else 0 (without
 * a product: off the kept keys the exp may be inf).  The sums are over the
 * new keys, ok[u] == 1 (combine rounds also keeps keys met before, ok >= 2):
 * out[0] = sum of (raw x[u] g[u])^2 (g NULL: all 1) over those with
 * id[u] != self; out[1] = sum of the new x[u], out[2] = sum of their squares.  Each sum in
 * eight lanes (value u in lane u mod 8) added up as ((0 + 1) + (2 + 3)) +
 * ((4 + 5) + (6 + 7)): the same bits from every form. */
void lsh_exp_keep(double *x, size_t n, double scale, double shift, const unsigned char *ok,
                  const double *g, const uint32_t *id, uint32_t self, double out[3]);
void lsh_exp_keep_isa(double *x, size_t n, double scale, double shift, const unsigned char *ok,
                      const double *g, const uint32_t *id, uint32_t self, double out[3], int isa);


/* combine rounds' sums over a tile row (eval.c): a[u] its A_ij (0 off the
 * collisions), ok[u] its N_ij <= h_max after this round (0 off them), dlog[N]
 * = N log N - (N - 1) log(N - 1) for N <= h_max (dlog[0] = 0).  Adds sum a,
 * sum a^2, sum (2N - 1) a^2 and sum dlog[N] a to out[0..3], each in eight
 * lanes (value u in lane u mod 8) added up as lsh_exp_keep's; returns max N.
 * The same bits from every form (isa as lsh_exp_affine_isa's). */
uint32_t lsh_rounds_row(const double *a, const unsigned char *ok, size_t n, const double *dlog,
                        uint32_t h_max, double out[4]);
uint32_t lsh_rounds_row_isa(const double *a, const unsigned char *ok, size_t n,
                            const double *dlog, uint32_t h_max, double out[4], int isa);

#endif
