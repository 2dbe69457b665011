/* fastexp.c - the array form of lsh_exp: AVX-512 and AVX2 forms doing the
 * scalar form's IEEE operations lane by lane (the table by a permute or a
 * gather, 2^k by scalef or the same two products), so the bits are the same
 * whichever runs. */
#include "fastexp.h"

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void exp_avx512(double *x, size_t n, double scale,
                                                         double shift)
{
    const __m512d lo = _mm512_set1_pd(LSH_EXP_LO), hi = _mm512_set1_pd(LSH_EXP_HI);
    const __m512d inv = _mm512_set1_pd(LSH_EXP_INV), sh = _mm512_set1_pd(LSH_EXP_SHIFT);
    const __m512d l2h = _mm512_set1_pd(LSH_EXP_LN2HI), l2l = _mm512_set1_pd(LSH_EXP_LN2LO);
    const __m512d t0 = _mm512_loadu_pd(lsh_exp_table), t1 = _mm512_loadu_pd(lsh_exp_table + 8);
    const __m512d sc = _mm512_set1_pd(scale), sf = _mm512_set1_pd(shift);
    const __m512d sixteenth = _mm512_set1_pd(0.0625);
    size_t i = 0;
    for (; i < n; i += 8) {
        const __mmask8 mk = n - i >= 8 ? 0xff : (__mmask8)((1u << (n - i)) - 1);
        __m512d v = _mm512_maskz_loadu_pd(mk, x + i);
        v = _mm512_sub_pd(_mm512_mul_pd(sc, v), sf);
        v = _mm512_max_pd(lo, v); /* (lo > v) ? lo : v, as the scalar form (NaN stays) */
        v = _mm512_min_pd(hi, v);
        const __m512d t = _mm512_fmadd_pd(v, inv, sh);
        const __m512d k = _mm512_sub_pd(t, sh);
        __m512d r = _mm512_fnmadd_pd(k, l2h, v);
        r = _mm512_fnmadd_pd(k, l2l, r);
        const __m512d tj = _mm512_permutex2var_pd(t0, _mm512_castpd_si512(t), t1);
        __m512d p = _mm512_fmadd_pd(_mm512_set1_pd(LSH_EXP_C7), r, _mm512_set1_pd(LSH_EXP_C6));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(LSH_EXP_C5));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(LSH_EXP_C4));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(LSH_EXP_C3));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(LSH_EXP_C2));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
        const __m512d y = _mm512_fmadd_pd(tj, _mm512_mul_pd(p, r), tj);
        /* y 2^floor(k/16), rounded once (k/16 is exact) */
        _mm512_mask_storeu_pd(x + i, mk, _mm512_scalef_pd(y, _mm512_mul_pd(k, sixteenth)));
    }
}

__attribute__((target("avx2,fma"))) static void exp_avx2(double *x, size_t n, double scale,
                                                        double shift)
{
    const __m256d lo = _mm256_set1_pd(LSH_EXP_LO), hi = _mm256_set1_pd(LSH_EXP_HI);
    const __m256d inv = _mm256_set1_pd(LSH_EXP_INV), sh = _mm256_set1_pd(LSH_EXP_SHIFT);
    const __m256d l2h = _mm256_set1_pd(LSH_EXP_LN2HI), l2l = _mm256_set1_pd(LSH_EXP_LN2LO);
    const __m256d sc = _mm256_set1_pd(scale), sf = _mm256_set1_pd(shift);
    const __m256i low4 = _mm256_set1_epi64x(15);
    const __m256d sixteenth = _mm256_set1_pd(0.0625), half = _mm256_set1_pd(0.5);
    const __m256d magic = _mm256_set1_pd(0x1p52 + 1023.0);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_loadu_pd(x + i);
        v = _mm256_sub_pd(_mm256_mul_pd(sc, v), sf);
        v = _mm256_max_pd(lo, v);
        v = _mm256_min_pd(hi, v);
        const __m256d t = _mm256_fmadd_pd(v, inv, sh);
        const __m256d k = _mm256_sub_pd(t, sh);
        __m256d r = _mm256_fnmadd_pd(k, l2h, v);
        r = _mm256_fnmadd_pd(k, l2l, r);
        const __m256i tb = _mm256_castpd_si256(t);
        const __m256d tj = _mm256_i64gather_pd(lsh_exp_table, _mm256_and_si256(tb, low4), 8);
        __m256d p = _mm256_fmadd_pd(_mm256_set1_pd(LSH_EXP_C7), r, _mm256_set1_pd(LSH_EXP_C6));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(LSH_EXP_C5));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(LSH_EXP_C4));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(LSH_EXP_C3));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(LSH_EXP_C2));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
        const __m256d y = _mm256_fmadd_pd(tj, _mm256_mul_pd(p, r), tj);
        /* 2^floor(k/16) in the scalar form's two halves; m1 + 1023 as the low bits of
         * an exact double plus 2^52, moved to the exponent */
        const __m256d m = _mm256_floor_pd(_mm256_mul_pd(k, sixteenth));
        const __m256d m1 = _mm256_floor_pd(_mm256_mul_pd(m, half)), m2 = _mm256_sub_pd(m, m1);
        const __m256d s1 = _mm256_castsi256_pd(
            _mm256_slli_epi64(_mm256_castpd_si256(_mm256_add_pd(m1, magic)), 52));
        const __m256d s2 = _mm256_castsi256_pd(
            _mm256_slli_epi64(_mm256_castpd_si256(_mm256_add_pd(m2, magic)), 52));
        _mm256_storeu_pd(x + i, _mm256_mul_pd(_mm256_mul_pd(y, s1), s2));
    }
    for (; i < n; i++)
        x[i] = lsh_exp(scale * x[i] - shift);
}
#endif

static void exp_scalar(double *x, size_t n, double scale, double shift)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lsh_exp(scale * x[i] - shift);
}

void lsh_exp_affine_isa(double *x, size_t n, double scale, double shift, int isa)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= 2 && __builtin_cpu_supports("avx512f")) {
        exp_avx512(x, n, scale, shift);
        return;
    }
    if (isa >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        exp_avx2(x, n, scale, shift);
        return;
    }
#else
    (void)isa;
#endif
    exp_scalar(x, n, scale, shift);
}

void lsh_exp_affine(double *x, size_t n, double scale, double shift)
{
    lsh_exp_affine_isa(x, n, scale, shift, 2);
}
