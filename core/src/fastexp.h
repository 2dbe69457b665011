/* fastexp.h - exp(x) in plain C that the compiler vectorises (with
 * -fno-trapping-math), at most 2 ulp from glibc's exp, the same bits on
 * every x86-64 machine (no FMA contraction under -std=c11, no table).
 *
 * x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r from the
 * Cephes rational approximation 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)), and
 * 2^k applied in two halves so that subnormal results come out right.
 * Inputs are clamped to [-746, 710]: below, the result is 0; above, +inf.
 */
#ifndef LSH_FASTEXP_H
#define LSH_FASTEXP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline double lsh_exp(double x)
{
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93145751953125E-1, ln2_lo = 1.42860682030941723212E-6;
    const double shift = 0x1.8p52; /* adding it rounds to an integer */
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    double t = x * log2e + shift;
    double k = t - shift;
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    int32_t n = (int32_t)(uint32_t)bits; /* k as an integer: t's low bits */
    double r = x - k * ln2_hi;
    r = r - k * ln2_lo;
    double rr = r * r;
    double p = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr +
                    9.99999999999999999910E-1);
    double q = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr +
                2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
    double e = 1.0 + 2.0 * (p / (q - p));
    int32_t n1 = n >> 1, n2 = n - n1;
    uint64_t b1 = (uint64_t)(uint32_t)(n1 + 1023) << 52;
    uint64_t b2 = (uint64_t)(uint32_t)(n2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return e * s1 * s2;
}

/* x[t] = lsh_exp(scale * x[t] - shift) for t < n. */
void lsh_exp_affine(double *x, size_t n, double scale, double shift);

#endif
