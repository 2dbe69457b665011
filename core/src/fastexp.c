/* fastexp.c - the array forms of lsh_exp: AVX-512 and AVX2 forms doing the
 * scalar form's IEEE operations lane by lane (the table by a permute or a
 * gather, 2^k by scalef or the same two products), so the bits are the same
 * whichever runs. */
#include "fastexp.h"

#include <stddef.h>

/* Values u0 .. n - 1 of lsh_exp_keep; value u goes to lane u mod 8, whatever
 * the vector width (the vector forms' last values too). */
static void keep_scalar(double *x, size_t u0, size_t n, double scale, double shift,
                        const unsigned char *ok, const double *g, const uint32_t *id,
                        uint32_t self, double l[3][8])
{
    for (size_t u = u0; u < n; u++) {
        const double gx = g ? x[u] * g[u] : x[u];
        l[0][u & 7] += ok[u] == 1 && id[u] != self ? gx * gx : 0.0;
        const double e = ok[u] ? lsh_exp(scale * x[u] - shift) : 0.0;
        x[u] = e;
        l[1][u & 7] += ok[u] == 1 ? e : 0.0;
        l[2][u & 7] += ok[u] == 1 ? e * e : 0.0;
    }
}

/* Values u0 .. n - 1 of lsh_rounds_row, value u in lane u mod 8 */
static void rounds_scalar(const double *a, const unsigned char *ok, size_t u0, size_t n,
                          const double *dlog, double l[4][8], uint32_t mx[8])
{
    for (size_t u = u0; u < n; u++) {
        const uint32_t N = ok[u];
        const double x = a[u], x2 = x * x;
        l[0][u & 7] += x;
        l[1][u & 7] += x2;
        l[2][u & 7] += (double)(2 * (int32_t)N - 1) * x2;
        l[3][u & 7] += dlog[N] * x;
        mx[u & 7] = N > mx[u & 7] ? N : mx[u & 7];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The steps of lsh_exp both vector widths share, through the intrinsics of
 * prefix P (_mm512, _mm256) on vector type V: v clamped and split as
 * (16 k + j) ln2/16 + r (t holds k + j's bits)... */
#define EXP_SPLIT(P, V, v, t, k, r)                                                                \
    const V t = P##_fmadd_pd(v = P##_min_pd(P##_set1_pd(LSH_EXP_HI),                              \
                                            P##_max_pd(P##_set1_pd(LSH_EXP_LO), v)),               \
                             P##_set1_pd(LSH_EXP_INV), P##_set1_pd(LSH_EXP_SHIFT));                \
    const V k = P##_sub_pd(t, P##_set1_pd(LSH_EXP_SHIFT));                                         \
    const V r = P##_fnmadd_pd(k, P##_set1_pd(LSH_EXP_LN2LO),                                       \
                              P##_fnmadd_pd(k, P##_set1_pd(LSH_EXP_LN2HI), v))
/* ... and y = 2^(j/16) (1 + q(r)), tj the table's entries */
#define EXP_POLY(P, V, r, tj, y)                                                                   \
    V y = P##_fmadd_pd(P##_set1_pd(LSH_EXP_C7), r, P##_set1_pd(LSH_EXP_C6));                       \
    y = P##_fmadd_pd(y, r, P##_set1_pd(LSH_EXP_C5));                                               \
    y = P##_fmadd_pd(y, r, P##_set1_pd(LSH_EXP_C4));                                               \
    y = P##_fmadd_pd(y, r, P##_set1_pd(LSH_EXP_C3));                                               \
    y = P##_fmadd_pd(y, r, P##_set1_pd(LSH_EXP_C2));                                               \
    y = P##_fmadd_pd(y, r, P##_set1_pd(1.0));                                                      \
    y = P##_fmadd_pd(tj, P##_mul_pd(y, r), tj)

/* lsh_exp of eight values (max(lo, v) is (lo > v) ? lo : v, as the scalar
 * form: NaN stays) */
static inline __attribute__((always_inline, target("avx512f"))) __m512d exp8(__m512d v)
{
    EXP_SPLIT(_mm512, __m512d, v, t, k, r);
    const __m512d tj = _mm512_permutex2var_pd(
        _mm512_loadu_pd(lsh_exp_table), _mm512_castpd_si512(t), _mm512_loadu_pd(lsh_exp_table + 8));
    EXP_POLY(_mm512, __m512d, r, tj, y);
    /* y 2^floor(k/16), rounded once (k/16 is exact) */
    return _mm512_scalef_pd(y, _mm512_mul_pd(k, _mm512_set1_pd(0.0625)));
}

/* the first min(n, 8) lanes */
static inline __attribute__((always_inline, target("avx512f"))) __mmask8 lanes8(size_t n)
{
    return n >= 8 ? 0xff : (__mmask8)((1u << n) - 1);
}

__attribute__((target("avx512f"))) static void exp_avx512(double *x, size_t n, double scale,
                                                         double shift)
{
    const __m512d sc = _mm512_set1_pd(scale), sf = _mm512_set1_pd(shift);
    for (size_t i = 0; i < n; i += 8) {
        const __mmask8 mk = lanes8(n - i);
        const __m512d v = _mm512_maskz_loadu_pd(mk, x + i);
        _mm512_mask_storeu_pd(x + i, mk, exp8(_mm512_sub_pd(_mm512_mul_pd(sc, v), sf)));
    }
}

/* Eight values u .. u + 7 of keep_avx512 (mk: those below n; keep, fresh,
 * other: the kept ones, the new ones among them, and the new ones that are
 * not self).  A lane left out of a sum keeps its value: the bits of adding
 * e = 0 (a sum is never -0). */
static inline __attribute__((always_inline, target("avx512f"))) void
keep8(double *x, size_t u, __mmask8 mk, __mmask8 keep, __mmask8 fresh, __mmask8 other,
      const double *g, __m512d sc, __m512d sf, __m512d *s0, __m512d *s1, __m512d *s2)
{
    const __m512d v = _mm512_maskz_loadu_pd(mk, x + u);
    const __m512d gv = g ? _mm512_mul_pd(v, _mm512_maskz_loadu_pd(mk, g + u)) : v;
    *s0 = _mm512_add_pd(*s0, _mm512_maskz_mul_pd(other, gv, gv));
    const __m512d e = _mm512_maskz_mov_pd(keep, exp8(_mm512_sub_pd(_mm512_mul_pd(sc, v), sf)));
    _mm512_mask_storeu_pd(x + u, mk, e);
    *s1 = _mm512_mask_add_pd(*s1, fresh, *s1, e);
    *s2 = _mm512_mask_add_pd(*s2, fresh, *s2, _mm512_mul_pd(e, e));
}

/* Sixteen values a step: their ok bytes and ids as one vector each (the
 * masks of eight values then cost a third of the instructions); the last
 * values eight at a time, masked. */
__attribute__((target("avx512f"))) static void keep_avx512(double *x, size_t n, double scale,
                                                          double shift, const unsigned char *ok,
                                                          const double *g, const uint32_t *id,
                                                          uint32_t self, double l[3][8])
{
    const __m512d sc = _mm512_set1_pd(scale), sf = _mm512_set1_pd(shift);
    const __m512i me = _mm512_set1_epi32((int)self);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0;
    size_t u = 0;
    for (; u + 16 <= n; u += 16) {
        __m128i ob;
        memcpy(&ob, ok + u, sizeof ob);
        const __m512i o32 = _mm512_cvtepu8_epi32(ob);
        const __mmask16 keep = _mm512_test_epi32_mask(o32, o32);
        const __mmask16 fresh = _mm512_cmpeq_epi32_mask(o32, _mm512_set1_epi32(1));
        const __mmask16 other = fresh & _mm512_cmpneq_epi32_mask(_mm512_loadu_si512(id + u), me);
        keep8(x, u, 0xff, (__mmask8)keep, (__mmask8)fresh, (__mmask8)other, g, sc, sf, &s0, &s1,
              &s2);
        keep8(x, u + 8, 0xff, (__mmask8)(keep >> 8), (__mmask8)(fresh >> 8), (__mmask8)(other >> 8),
              g, sc, sf, &s0, &s1, &s2);
    }
    for (; u < n; u += 8) {
        const __mmask8 mk = lanes8(n - u);
        uint64_t b = 0;
        memcpy(&b, ok + u, n - u < 8 ? n - u : 8);
        const __m512i o64 = _mm512_cvtepu8_epi64(_mm_cvtsi64_si128((long long)b));
        const __mmask8 keep = _mm512_test_epi64_mask(o64, o64);
        const __mmask8 fresh = _mm512_cmpeq_epi64_mask(o64, _mm512_set1_epi64(1));
        uint32_t ib[8] = {0};
        memcpy(ib, id + u, (n - u < 8 ? n - u : 8) * sizeof *ib);
        __m256i iv;
        memcpy(&iv, ib, sizeof iv);
        const __mmask8 other = fresh & _mm512_cmpneq_epi64_mask(_mm512_cvtepu32_epi64(iv),
                                                                _mm512_set1_epi64(self));
        keep8(x, u, mk, keep, fresh, other, g, sc, sf, &s0, &s1, &s2);
    }
    _mm512_storeu_pd(l[0], s0);
    _mm512_storeu_pd(l[1], s1);
    _mm512_storeu_pd(l[2], s2);
}

/* lsh_exp of four values */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d exp4(__m256d v)
{
    EXP_SPLIT(_mm256, __m256d, v, t, k, r);
    const __m256i j = _mm256_and_si256(_mm256_castpd_si256(t), _mm256_set1_epi64x(15));
    const __m256d tj = _mm256_i64gather_pd(lsh_exp_table, j, 8);
    EXP_POLY(_mm256, __m256d, r, tj, y);
    /* 2^floor(k/16) in the scalar form's two halves; m1 + 1023 as the low
     * bits of an exact double plus 2^52, moved to the exponent */
    const __m256d magic = _mm256_set1_pd(0x1p52 + 1023.0);
    const __m256d m = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.0625)));
    const __m256d m1 = _mm256_floor_pd(_mm256_mul_pd(m, _mm256_set1_pd(0.5)));
    const __m256d m2 = _mm256_sub_pd(m, m1);
    const __m256d s1 =
        _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(_mm256_add_pd(m1, magic)), 52));
    const __m256d s2 =
        _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(_mm256_add_pd(m2, magic)), 52));
    return _mm256_mul_pd(_mm256_mul_pd(y, s1), s2);
}

__attribute__((target("avx2,fma"))) static void exp_avx2(double *x, size_t n, double scale,
                                                        double shift)
{
    const __m256d sc = _mm256_set1_pd(scale), sf = _mm256_set1_pd(shift);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d v = _mm256_loadu_pd(x + i);
        _mm256_storeu_pd(x + i, exp4(_mm256_sub_pd(_mm256_mul_pd(sc, v), sf)));
    }
    for (; i < n; i++)
        x[i] = lsh_exp(scale * x[i] - shift);
}

/* all ones in the lanes of u .. u + 3 where ok[u] >= lo and at most hi, and
 * (with id) id[u] != self */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d
keep4(const unsigned char *ok, size_t u, unsigned lo, unsigned hi, const uint32_t *id,
      uint32_t self)
{
#define KEEP1(k) (ok[u + k] >= lo && ok[u + k] <= hi && (!id || id[u + k] != self))
    const __m256i one = _mm256_set_epi64x(KEEP1(3), KEEP1(2), KEEP1(1), KEEP1(0));
#undef KEEP1
    return _mm256_castsi256_pd(_mm256_sub_epi64(_mm256_setzero_si256(), one));
}

/* Eight lanes as two halves of four; the values past n (at most the last
 * eight) by the scalar form into the same lanes. */
__attribute__((target("avx2,fma"))) static void keep_avx2(double *x, size_t n, double scale,
                                                        double shift, const unsigned char *ok,
                                                        const double *g, const uint32_t *id,
                                                        uint32_t self, double l[3][8])
{
    const __m256d sc = _mm256_set1_pd(scale), sf = _mm256_set1_pd(shift);
    __m256d s[3][2];
    for (int k = 0; k < 3; k++)
        s[k][0] = s[k][1] = _mm256_setzero_pd();
    size_t u = 0;
    for (; u + 8 <= n; u += 8)
        for (int half = 0; half < 2; half++) {
            const size_t w = u + 4 * (size_t)half;
            const __m256d v = _mm256_loadu_pd(x + w);
            const __m256d gv = g ? _mm256_mul_pd(v, _mm256_loadu_pd(g + w)) : v;
            s[0][half] = _mm256_add_pd(s[0][half], _mm256_and_pd(_mm256_mul_pd(gv, gv),
                                                                 keep4(ok, w, 1, 1, id, self)));
            const __m256d e = _mm256_and_pd(exp4(_mm256_sub_pd(_mm256_mul_pd(sc, v), sf)),
                                            keep4(ok, w, 1, 255, NULL, 0));
            _mm256_storeu_pd(x + w, e);
            const __m256d ef = _mm256_and_pd(e, keep4(ok, w, 1, 1, NULL, 0));
            s[1][half] = _mm256_add_pd(s[1][half], ef);
            s[2][half] = _mm256_add_pd(s[2][half], _mm256_mul_pd(ef, ef));
        }
    for (int k = 0; k < 3; k++) {
        _mm256_storeu_pd(l[k], s[k][0]);
        _mm256_storeu_pd(l[k] + 4, s[k][1]);
    }
    keep_scalar(x, u, n, scale, shift, ok, g, id, self, l);
}

/* Eight values a step; dlog[N] by a permute of two registers when N <= 15,
 * else by a gather. */
__attribute__((target("avx512f"))) static void rounds_avx512(const double *a,
                                                            const unsigned char *ok, size_t n,
                                                            const double *dlog, uint32_t h_max,
                                                            double l[4][8], uint32_t mx[8])
{
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    __m512i m = _mm512_setzero_si512();
    const int small = h_max <= 15;
    double t16[16] = {0};
    if (small)
        memcpy(t16, dlog, ((size_t)h_max + 1) * sizeof *t16);
    const __m512d t0 = _mm512_loadu_pd(t16), t1 = _mm512_loadu_pd(t16 + 8);
    for (size_t u = 0; u < n; u += 8) {
        const __mmask8 mk = lanes8(n - u);
        uint64_t b = 0;
        memcpy(&b, ok + u, n - u < 8 ? n - u : 8);
        const __m128i bv = _mm_cvtsi64_si128((long long)b);
        const __m512i N = _mm512_cvtepu8_epi64(bv);
        const __m512d x = _mm512_maskz_loadu_pd(mk, a + u), x2 = _mm512_mul_pd(x, x);
        const __m512d nd = _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(bv));
        const __m512d w = _mm512_sub_pd(_mm512_add_pd(nd, nd), _mm512_set1_pd(1.0)); /* exact */
        const __m512d dl = small ? _mm512_permutex2var_pd(t0, N, t1)
                                 : _mm512_i64gather_pd(N, dlog, 8);
        s0 = _mm512_add_pd(s0, x);
        s1 = _mm512_add_pd(s1, x2);
        s2 = _mm512_add_pd(s2, _mm512_mul_pd(w, x2));
        s3 = _mm512_add_pd(s3, _mm512_mul_pd(dl, x));
        m = _mm512_max_epu64(m, N);
    }
    _mm512_storeu_pd(l[0], s0);
    _mm512_storeu_pd(l[1], s1);
    _mm512_storeu_pd(l[2], s2);
    _mm512_storeu_pd(l[3], s3);
    uint64_t m64[8];
    _mm512_storeu_si512(m64, m);
    for (int e = 0; e < 8; e++)
        mx[e] = (uint32_t)m64[e];
}
#endif

uint32_t lsh_rounds_row_isa(const double *a, const unsigned char *ok, size_t n,
                            const double *dlog, uint32_t h_max, double out[4], int isa)
{
    /* not zeroed when the vector form writes them all: the zeroing (rep stos)
     * was half of this function's time on short rows */
    double l[4][8];
    uint32_t mx[8];
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= 2 && __builtin_cpu_supports("avx512f")) {
        rounds_avx512(a, ok, n, dlog, h_max, l, mx);
    } else
#else
    (void)isa;
    (void)h_max;
#endif
    {
        memset(l, 0, sizeof l);
        memset(mx, 0, sizeof mx);
        rounds_scalar(a, ok, 0, n, dlog, l, mx);
    }
    uint32_t m = 0;
    for (int e = 0; e < 8; e++)
        m = mx[e] > m ? mx[e] : m;
    for (int k = 0; k < 4; k++)
        out[k] += ((l[k][0] + l[k][1]) + (l[k][2] + l[k][3])) +
                  ((l[k][4] + l[k][5]) + (l[k][6] + l[k][7]));
    return m;
}

uint32_t lsh_rounds_row(const double *a, const unsigned char *ok, size_t n, const double *dlog,
                        uint32_t h_max, double out[4])
{
    return lsh_rounds_row_isa(a, ok, n, dlog, h_max, out, 2);
}

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

void lsh_exp_keep_isa(double *x, size_t n, double scale, double shift, const unsigned char *ok,
                      const double *g, const uint32_t *id, uint32_t self, double out[3], int isa)
{
    double l[3][8]; /* zeroed unless the AVX-512 form writes them all (as above) */
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= 2 && __builtin_cpu_supports("avx512f")) {
        keep_avx512(x, n, scale, shift, ok, g, id, self, l);
    } else if (isa >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        memset(l, 0, sizeof l);
        keep_avx2(x, n, scale, shift, ok, g, id, self, l);
    } else
#else
    (void)isa;
#endif
    {
        memset(l, 0, sizeof l);
        keep_scalar(x, 0, n, scale, shift, ok, g, id, self, l);
    }
    for (int k = 0; k < 3; k++)
        out[k] = ((l[k][0] + l[k][1]) + (l[k][2] + l[k][3])) +
                 ((l[k][4] + l[k][5]) + (l[k][6] + l[k][7]));
}

void lsh_exp_keep(double *x, size_t n, double scale, double shift, const unsigned char *ok,
                  const double *g, const uint32_t *id, uint32_t self, double out[3])
{
    lsh_exp_keep_isa(x, n, scale, shift, ok, g, id, self, out, 2);
}
