/* kmeans.c - spherical k-means buckets (Routing Transformer, SPEC 2.3): fit
 * B unit centroids on the round's rows, then bucket = the nearest centroid by
 * cosine; with balanced: true (SPEC 12.2, Routing Transformer's equal
 * clusters) queries and keys are each assigned with capacity ceil(n/B) per
 * centroid, greedily by descending cosine. */
#include <lshlab/fmadots.h>
#include <lshlab/strategy.h>

#include <float.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Workspace cap for one GEMM batch of scores (rows x B doubles), so a large
 * B shrinks the batch instead of growing the memory. */
#define BATCH_ROWS 1024
#define BATCH_DOUBLES ((size_t)1 << 20)

/* The host's hash batch (host.h LSH_HOST_BATCH_ROWS): assign() hands the
 * unbalanced rule rows in batches of this size, exactly as the host handed
 * them to hash() before assign existed, so the GEMMs and buckets are the same. */
#define HOST_BATCH_ROWS 1024

/* balanced is last: the canonical text of a parameter set lists the
 * parameters in this order. */
enum { P_ITERATIONS, P_INIT, P_BALANCED, N_PARAMS };

static const char *const init_choices[] = {"random", "kmeans++", NULL};

static const struct lsh_param params[] = {
    [P_ITERATIONS] = {.name = "iterations", .type = LSH_PARAM_INT,
                      .doc = "Lloyd steps after the initialisation (0: the initial centroids)",
                      .def_int = 10, .min = 0, .max = 1000},
    [P_INIT] = {.name = "init", .type = LSH_PARAM_CHOICE,
                .doc = "initial centroids: random (B distinct non-zero rows) or kmeans++ "
                       "(spread by 1 - cosine)",
                .def_choice = "random", .choices = init_choices},
    [P_BALANCED] = {.name = "balanced", .type = LSH_PARAM_BOOL,
                    .doc = "equal clusters: queries and keys (separately) each fill at most "
                           "ceil(n/B) rows per centroid, best cosine first; needs n_buckets <= "
                           "rows",
                    .def_int = 0},
    [N_PARAMS] = {.type = LSH_PARAM_END},
};

struct kmeans {
    size_t d;
    uint32_t b;
    int64_t iterations;
    int plusplus;
    int balanced;
    int fitted;
    size_t batch;   /* rows per GEMM */
    double *c;      /* B x d unit centroids, row-major */
    double *ct;     /* d x bp: the centroids transposed, zero past B */
    size_t bp;      /* B rounded up to a multiple of 8 */
    double *xn;     /* batch x d normalised rows (workspace) */
    double *scores; /* batch x B (workspace) */
    /* fit() draws the initial centroids: the stream must outlive init. */
    struct lsh_rng *rng;
    const struct lsh_host *host;
};

static int fail(struct lsh_strategy_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int read_params(const struct lsh_round *round, int64_t *iterations, int *plusplus,
                       int *balanced, struct lsh_strategy_error *err)
{
    const struct lsh_param_value *pv = round->params;
    size_t np = pv ? round->n_params : 0;
    *iterations = params[P_ITERATIONS].def_int;
    *plusplus = 0;
    *balanced = 0;
    if (np > P_ITERATIONS) {
        if (pv[P_ITERATIONS].type != LSH_PARAM_INT)
            return fail(err, LSH_STRATEGY_EINVAL, "kmeans: parameter iterations is not an INT");
        *iterations = pv[P_ITERATIONS].i;
        if (*iterations < 0)
            return fail(err, LSH_STRATEGY_EINVAL, "kmeans needs iterations >= 0, got %lld",
                        (long long)*iterations);
    }
    if (np > P_INIT) {
        if (pv[P_INIT].type != LSH_PARAM_CHOICE || !pv[P_INIT].choice)
            return fail(err, LSH_STRATEGY_EINVAL, "kmeans: parameter init is not a CHOICE");
        if (strcmp(pv[P_INIT].choice, "kmeans++") == 0)
            *plusplus = 1;
        else if (strcmp(pv[P_INIT].choice, "random") != 0)
            return fail(err, LSH_STRATEGY_EINVAL,
                        "kmeans: init must be random or kmeans++, got %s", pv[P_INIT].choice);
    }
    if (np > P_BALANCED) {
        if (pv[P_BALANCED].type != LSH_PARAM_BOOL)
            return fail(err, LSH_STRATEGY_EINVAL, "kmeans: parameter balanced is not a BOOL");
        *balanced = pv[P_BALANCED].i != 0;
    }
    return 0;
}

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    int64_t iterations;
    int plusplus, balanced;
    int rc = read_params(round, &iterations, &plusplus, &balanced, err);
    if (rc < 0)
        return rc;
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans needs d >= 1");
    if (round->n_buckets == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans needs n_buckets >= 1");
    /* n_rows == 0: the host does not know the rows yet; fit() checks then. */
    if (round->n_rows > 0 && round->n_buckets > round->n_rows)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "kmeans needs n_buckets <= the rows it fits on, got n_buckets %u for %zu "
                    "rows",
                    (unsigned)round->n_buckets, round->n_rows);
    return 0;
}

static void fini(void *state)
{
    struct kmeans *s = state;
    free(s->c);
    free(s->xn);
    free(s->scores);
    free(s->ct);
    s->c = s->xn = s->scores = s->ct = NULL;
    s->fitted = 0;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct kmeans *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    read_params(round, &s->iterations, &s->plusplus, &s->balanced, err);
    s->d = round->d;
    s->b = round->n_buckets;
    s->rng = round->rng;
    s->host = round->host;
    s->fitted = 0;
    s->batch = BATCH_DOUBLES / s->b;
    if (s->batch > BATCH_ROWS)
        s->batch = BATCH_ROWS;
    if (s->batch == 0)
        s->batch = 1;
    s->bp = ((size_t)s->b + 7) / 8 * 8; /* b <= UINT32_MAX: no wrap */
    if (s->d > SIZE_MAX / sizeof(double) / s->bp || s->d > SIZE_MAX / sizeof(double) / s->batch)
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: %u centroids of d = %zu are too large",
                    (unsigned)s->b, s->d);
    s->c = malloc((size_t)s->b * s->d * sizeof *s->c);
    /* the kernel's y: on cache lines it runs faster (no load straddles two) */
    const size_t ct_bytes = (s->bp * s->d * sizeof *s->ct + 63) / 64 * 64;
    s->ct = aligned_alloc(64, ct_bytes ? ct_bytes : 64);
    if (s->ct)
        memset(s->ct, 0, ct_bytes);
    s->xn = malloc(s->batch * s->d * sizeof *s->xn);
    s->scores = malloc(s->batch * s->b * sizeof *s->scores);
    if (!s->c || !s->ct || !s->xn || !s->scores) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: out of memory for %u centroids",
                    (unsigned)s->b);
    }
    return 0;
}

/* out = x / |x|; returns 0 (and a zero out) for a zero row.  x is first
 * scaled by the power of two that brings its largest entry into [1/2, 1)
 * (exact), so that |x|^2 can neither overflow nor underflow, then multiplied
 * by 1 / |x|: one division a row, not two an entry (divisions were most of
 * this function, which runs on every row of every fit and hash).  Sums in
 * eight lanes added in a fixed order: vectorisable, the same bits from every
 * clone. */
/* 2^k for a normal exponent, -1022 <= k <= 1023. */
static inline double pow2(int k)
{
    const uint64_t bits = (uint64_t)(k + 1023) << 52;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* normalise's steps in vectors, for d >= 8 and a normal largest entry: the
 * same operations on each entry (its largest by strict >, which passes over a
 * NaN as fabs(x) > m does; (x s1) s2; the squares' sums in lane j mod 8, in
 * j's order; those eight added in normalise's tree), so the same bits, in
 * ~40 instructions a row of 32 where GCC's clone of the loops kept its lanes
 * on the stack.  -1: not handled here (zero, inf or subnormal largest). */
__attribute__((target("avx512f"))) static int normalise_avx512(const double *x, size_t d,
                                                              double *out)
{
    const __mmask8 tail = (__mmask8)((1u << (d % 8)) - 1);
    __m512d m = _mm512_setzero_pd();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        const __m512d a = _mm512_abs_pd(_mm512_loadu_pd(x + j));
        m = _mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(a, m, _CMP_GT_OQ), a);
    }
    if (tail) {
        const __m512d a = _mm512_abs_pd(_mm512_maskz_loadu_pd(tail, x + j));
        m = _mm512_mask_mov_pd(m, _mm512_mask_cmp_pd_mask(tail, a, m, _CMP_GT_OQ), a);
    }
    const double big = _mm512_reduce_max_pd(m); /* no NaN in m: order does not matter */
    if (!(big >= DBL_MIN) || isinf(big))
        return -1;
    uint64_t bits;
    memcpy(&bits, &big, sizeof bits);
    const int e = (int)((bits >> 52) & 0x7ff) - 1022;
    const __m512d s1 = _mm512_set1_pd(pow2(-(e / 2))), s2 = _mm512_set1_pd(pow2(-(e - e / 2)));
    __m512d l = _mm512_setzero_pd();
    for (j = 0; j + 8 <= d; j += 8) {
        const __m512d o = _mm512_mul_pd(_mm512_mul_pd(_mm512_loadu_pd(x + j), s1), s2);
        _mm512_storeu_pd(out + j, o);
        l = _mm512_add_pd(l, _mm512_mul_pd(o, o));
    }
    if (tail) {
        const __m512d o = _mm512_mul_pd(_mm512_mul_pd(_mm512_maskz_loadu_pd(tail, x + j), s1), s2);
        _mm512_mask_storeu_pd(out + j, tail, o);
        l = _mm512_mask_add_pd(l, tail, l, _mm512_mul_pd(o, o));
    }
    /* ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) */
    const __m512d a = _mm512_add_pd(l, _mm512_permute_pd(l, 0x55));
    const __m512d b = _mm512_add_pd(a, _mm512_permutex_pd(a, 0x4e));
    const double sq = _mm512_cvtsd_f64(b) + _mm256_cvtsd_f64(_mm512_extractf64x4_pd(b, 1));
    const __m512d inv = _mm512_set1_pd(1.0 / sqrt(sq));
    for (j = 0; j + 8 <= d; j += 8)
        _mm512_storeu_pd(out + j, _mm512_mul_pd(_mm512_loadu_pd(out + j), inv));
    if (tail)
        _mm512_mask_storeu_pd(out + j, tail,
                              _mm512_mul_pd(_mm512_maskz_loadu_pd(tail, out + j), inv));
    return 1;
}

static int have_avx512(void);
#endif

__attribute__((target_clones("avx512f", "avx2", "default")))
static int normalise_loops(const double *x, size_t d, double *out)
{
    /* the largest |x_j| in eight lanes (one chain of maxima is latency-bound) */
    double m[8] = {0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        for (size_t k = 0; k < 8; k++)
            m[k] = fabs(x[j + k]) > m[k] ? fabs(x[j + k]) : m[k];
    for (size_t k = 0; j + k < d; k++)
        m[k] = fabs(x[j + k]) > m[k] ? fabs(x[j + k]) : m[k];
    double big = 0;
    for (size_t k = 0; k < 8; k++)
        big = m[k] > big ? m[k] : big;
    if (!(big > 0) || isinf(big)) {
        memset(out, 0, d * sizeof *out);
        return 0;
    }
    int e;
    double s1, s2;
    if (big >= DBL_MIN) {
        /* big = f 2^e, f in [1/2, 1), read off its exponent bits; 2^-e in two
         * factors (a single one is not a double when e = 1024), each built from
         * its bits: what frexp and ldexp give, without their calls (a third of
         * this function at d = 32) */
        uint64_t bits;
        memcpy(&bits, &big, sizeof bits);
        e = (int)((bits >> 52) & 0x7ff) - 1022;
        s1 = pow2(-(e / 2));
        s2 = pow2(-(e - e / 2));
    } else { /* subnormal: e below -1021, and 2^-e past what pow2 makes */
        frexp(big, &e);
        s1 = ldexp(1.0, -(e / 2));
        s2 = ldexp(1.0, -(e - e / 2));
    }
    for (size_t j = 0; j < d; j++)
        out[j] = x[j] * s1 * s2;
    double l[8] = {0};
    for (j = 0; j + 8 <= d; j += 8)
        for (size_t k = 0; k < 8; k++)
            l[k] += out[j + k] * out[j + k];
    for (size_t k = 0; j + k < d; k++)
        l[k] += out[j + k] * out[j + k];
    const double sq = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    const double inv = 1.0 / sqrt(sq);
    for (size_t t = 0; t < d; t++)
        out[t] *= inv;
    return 1;
}

static int normalise(const double *x, size_t d, double *out) /* out may be x */
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (d >= 8 && have_avx512()) {
        const int live = normalise_avx512(x, d, out);
        if (live >= 0)
            return live;
    }
#endif
    return normalise_loops(x, d, out);
}

/* out (m x B) = the scores of m unit rows against the centroids, each one
 * chain of fused multiply-adds (lshlab/fmadots.h): the same buckets on every
 * machine, where a BLAS GEMM's rounding depends on the CPU's kernels (and
 * faster than OpenBLAS at N = B of 8 .. 64). */
static void centroids_t(struct kmeans *s)
{
    for (size_t c = 0; c < s->b; c++)
        for (size_t e = 0; e < s->d; e++)
            s->ct[e * s->bp + c] = s->c[c * s->d + e];
}

static void centroid_scores(struct kmeans *s, size_t m, const double *xn, double *out)
{
    centroids_t(s); /* they move between calls: cheap to redo */
    lshlab_fma_dots(m, s->b, s->d, s->bp, xn, s->ct, out, 0);
}

static int same_vector(const double *a, const double *b, size_t d)
{
    for (size_t j = 0; j < d; j++)
        if (a[j] != b[j])
            return 0;
    return 1;
}

/* argmax_c of one row of scores; the first wins a tie (SPEC 1). */
static uint32_t argmax(const double *scores, uint32_t b)
{
    uint32_t best = 0;
    double top = scores[0];
    for (uint32_t c = 1; c < b; c++)
        if (scores[c] > top) {
            top = scores[c];
            best = c;
        }
    return best;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* argmax of each row of b >= 8 scores in vectors: lane l keeps the largest of
 * scores l, l + 8, l + 16, ... and the first c holding it (strict >, as
 * argmax); then the largest over the lanes, and the smallest c among the
 * lanes that hold it: argmax's answer, the first of equal maxima (-0 == +0
 * for both), without a branch.  A row with a NaN goes to argmax itself. */
__attribute__((target("avx512f"))) static void argmax_rows_avx512(const double *scores, size_t m,
                                                                 uint32_t b, uint32_t *out)
{
    const __mmask8 tail = (__mmask8)((1u << (b % 8)) - 1);
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for (size_t i = 0; i < m; i++) {
        const double *r = scores + i * b;
        __m512d top = _mm512_loadu_pd(r);
        __m512i at = lane;
        __mmask8 nan = _mm512_cmp_pd_mask(top, top, _CMP_UNORD_Q);
        uint32_t c = 8;
        for (; c + 8 <= b; c += 8) {
            const __m512d v = _mm512_loadu_pd(r + c);
            const __mmask8 gt = _mm512_cmp_pd_mask(v, top, _CMP_GT_OQ);
            nan |= _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
            top = _mm512_mask_mov_pd(top, gt, v);
            at = _mm512_mask_mov_epi64(at, gt, _mm512_add_epi64(lane, _mm512_set1_epi64(c)));
        }
        if (c < b) {
            const __m512d v = _mm512_maskz_loadu_pd(tail, r + c);
            const __mmask8 gt = _mm512_mask_cmp_pd_mask(tail, v, top, _CMP_GT_OQ);
            nan |= _mm512_mask_cmp_pd_mask(tail, v, v, _CMP_UNORD_Q);
            top = _mm512_mask_mov_pd(top, gt, v);
            at = _mm512_mask_mov_epi64(at, gt, _mm512_add_epi64(lane, _mm512_set1_epi64(c)));
        }
        if (nan) {
            out[i] = argmax(r, b);
            continue;
        }
        const __mmask8 best =
            _mm512_cmp_pd_mask(top, _mm512_set1_pd(_mm512_reduce_max_pd(top)), _CMP_EQ_OQ);
        out[i] = (uint32_t)_mm512_mask_reduce_min_epi64(best, at);
    }
}

/* Sixteen rows' nearest of B <= 8 centroids, the rows in lanes: xt holds
 * their unit rows transposed (d x 16).  The scores of B of a few centroids
 * as rows x centroids waste most of a vector on B (and ran at a third of the
 * kernel's speed, bound by its broadcasts); as centroids x rows each is the
 * same chain of fused multiply-adds over e ascending from 0, so the same bits,
 * and the argmax, lane by lane in centroid order with argmax's strict >, is
 * argmax's answer, NaN included. */
static inline __attribute__((always_inline, target("avx512f"))) void
nearest16(const double *restrict xt, const double *restrict ct, size_t d, size_t bp,
          const unsigned B, uint32_t *restrict best)
{
    __m512d a0[8], a1[8];
#pragma GCC unroll 8
    for (unsigned c = 0; c < B; c++)
        a0[c] = a1[c] = _mm512_setzero_pd();
    for (size_t e = 0; e < d; e++) {
        const __m512d x0 = _mm512_load_pd(xt + e * 16), x1 = _mm512_load_pd(xt + e * 16 + 8);
#pragma GCC unroll 8
        for (unsigned c = 0; c < B; c++) {
            const __m512d y = _mm512_set1_pd(ct[e * bp + c]);
            a0[c] = _mm512_fmadd_pd(x0, y, a0[c]);
            a1[c] = _mm512_fmadd_pd(x1, y, a1[c]);
        }
    }
    __m512d t0 = a0[0], t1 = a1[0];
    __m512i b0 = _mm512_setzero_si512(), b1 = b0;
#pragma GCC unroll 8
    for (unsigned c = 1; c < B; c++) {
        const __mmask8 g0 = _mm512_cmp_pd_mask(a0[c], t0, _CMP_GT_OQ);
        const __mmask8 g1 = _mm512_cmp_pd_mask(a1[c], t1, _CMP_GT_OQ);
        t0 = _mm512_mask_mov_pd(t0, g0, a0[c]);
        t1 = _mm512_mask_mov_pd(t1, g1, a1[c]);
        b0 = _mm512_mask_mov_epi64(b0, g0, _mm512_set1_epi64(c));
        b1 = _mm512_mask_mov_epi64(b1, g1, _mm512_set1_epi64(c));
    }
    _mm256_storeu_si256((__m256i *)best, _mm512_cvtepi64_epi32(b0));
    _mm256_storeu_si256((__m256i *)(best + 8), _mm512_cvtepi64_epi32(b1));
}

/* best[16 k + l] for the blocks of sixteen rows of xt (k-th: 16 d doubles). */
__attribute__((target("avx512f"))) static void nearest_small(const double *xt, size_t blocks,
                                                            const double *ct, size_t d,
                                                            size_t bp, uint32_t b,
                                                            uint32_t *best)
{
#define NEAREST_CASE(B)                                                                          \
    case B:                                                                                      \
        for (size_t k = 0; k < blocks; k++)                                                      \
            nearest16(xt + k * 16 * d, ct, d, bp, B, best + 16 * k);                             \
        break;
    switch (b) {
        NEAREST_CASE(1)
        NEAREST_CASE(2)
        NEAREST_CASE(3)
        NEAREST_CASE(4)
        NEAREST_CASE(5)
        NEAREST_CASE(6)
        NEAREST_CASE(7)
        NEAREST_CASE(8)
    default:
        break;
    }
#undef NEAREST_CASE
}

static int have_avx512(void)
{
    static int known = -1; /* the same answer from every thread: a benign race */
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") != 0;
    }
    return known;
}
#endif

/* out[i] = argmax of row i of m rows of scores: in vectors (above), or four
 * rows at a time: each row's compares are argmax's, in its order, but four
 * chains of dependent maxima run side by side (one alone is bound by their
 * latency).  k-means' fits spent ~7% of real-heads.yaml here. */
static void argmax_rows(const double *scores, size_t m, uint32_t b, uint32_t *out)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (b >= 8 && have_avx512()) {
        argmax_rows_avx512(scores, m, b, out);
        return;
    }
#endif
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const double *r0 = scores + i * b, *r1 = r0 + b, *r2 = r1 + b, *r3 = r2 + b;
        double t0 = r0[0], t1 = r1[0], t2 = r2[0], t3 = r3[0];
        uint32_t b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        for (uint32_t c = 1; c < b; c++) {
            if (r0[c] > t0)
                t0 = r0[c], b0 = c;
            if (r1[c] > t1)
                t1 = r1[c], b1 = c;
            if (r2[c] > t2)
                t2 = r2[c], b2 = c;
            if (r3[c] > t3)
                t3 = r3[c], b3 = c;
        }
        out[i] = b0, out[i + 1] = b1, out[i + 2] = b2, out[i + 3] = b3;
    }
    for (; i < m; i++)
        out[i] = argmax(scores + i * b, b);
}

static int too_few(struct lsh_strategy_error *err, uint32_t b, size_t distinct)
{
    return fail(err, LSH_STRATEGY_EDATA, "kmeans: n_buckets %u but only %zu distinct non-zero rows",
                (unsigned)b, distinct);
}

/* B distinct non-zero rows, uniformly at random: a partial Fisher-Yates
 * shuffle that passes over zero rows and repeats of a chosen row. */
static int init_random(struct kmeans *s, const double *xn, const unsigned char *live, size_t n,
                       struct lsh_strategy_error *err)
{
    size_t d = s->d, chosen = 0;
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx)
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = 0; i < n && chosen < s->b; i++) {
        size_t j = i + (size_t)s->host->uniform_int(s->rng, (uint64_t)(n - i));
        size_t r = idx[j];
        idx[j] = idx[i];
        idx[i] = r;
        if (!live[r])
            continue;
        int repeat = 0;
        for (size_t c = 0; c < chosen && !repeat; c++)
            repeat = same_vector(xn + r * d, s->c + c * d, d);
        if (!repeat)
            memcpy(s->c + chosen++ * d, xn + r * d, d * sizeof *s->c);
    }
    free(idx);
    /* Having seen every row, chosen is the number of distinct ones. */
    return chosen < s->b ? too_few(err, s->b, chosen) : 0;
}

/* dist[i] = min(dist[i], 1 - x_i.c): the spherical D(x) of k-means++, since
 * |x - c|^2 = 2 - 2 x.c.  A row equal to c gets exactly 0, so it is never
 * drawn again even when x.c rounds to just below 1. */
static void update_dist(const struct kmeans *s, const double *xn, const unsigned char *live,
                        size_t n, const double *c, double *ct1, double *out, double *dist)
{
    for (size_t e = 0; e < s->d; e++) /* c transposed: d x 8, zero past column 0 */
        ct1[e * 8] = c[e];
    lshlab_fma_dots(n, 1, s->d, 8, xn, ct1, out, 0);
    for (size_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        double dd = 1 - out[i];
        if (dd < 1e-9 && same_vector(xn + i * s->d, c, s->d))
            dd = 0;
        if (dd < 0)
            dd = 0;
        if (dd < dist[i])
            dist[i] = dd;
    }
}

static int init_plusplus(struct kmeans *s, const double *xn, const unsigned char *live,
                         size_t n, struct lsh_strategy_error *err)
{
    size_t d = s->d, n_live = 0;
    for (size_t i = 0; i < n; i++)
        n_live += live[i];
    if (n_live == 0)
        return too_few(err, s->b, 0);
    double *dist = malloc(n * sizeof *dist), *dot = malloc(n * sizeof *dot);
    double *ct1 = calloc(d * 8, sizeof *ct1);
    if (!dist || !dot || !ct1) {
        free(dist);
        free(dot);
        free(ct1);
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: out of memory");
    }
    /* The first centroid: uniform among the non-zero rows. */
    size_t pick = (size_t)s->host->uniform_int(s->rng, (uint64_t)n_live), r = 0;
    for (size_t i = 0; i < n; i++) {
        dist[i] = live[i] ? INFINITY : 0;
        if (live[i] && pick-- == 0)
            r = i;
    }
    memcpy(s->c, xn + r * d, d * sizeof *s->c);
    update_dist(s, xn, live, n, s->c, ct1, dot, dist);
    int rc = 0;
    for (uint32_t chosen = 1; chosen < s->b; chosen++) {
        double total = 0;
        size_t last = SIZE_MAX;
        for (size_t i = 0; i < n; i++)
            if (dist[i] > 0) {
                total += dist[i];
                last = i;
            }
        if (!(total > 0)) {
            rc = too_few(err, s->b, chosen);
            break;
        }
        double u = s->host->uniform(s->rng) * total, acc = 0;
        r = last; /* should rounding leave u past the running sum */
        for (size_t i = 0; i < n; i++)
            if (dist[i] > 0) {
                acc += dist[i];
                if (u < acc) {
                    r = i;
                    break;
                }
            }
        double *c = s->c + (size_t)chosen * d;
        memcpy(c, xn + r * d, d * sizeof *c);
        update_dist(s, xn, live, n, c, ct1, dot, dist);
    }
    free(dist);
    free(dot);
    free(ct1);
    return rc;
}

/* sums[c] = the sum of the live unit rows assigned to c, in row order (the
 * same bits every run and from every clone: each entry's adds are the same,
 * whatever the vector width), counts[c] how many. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void cluster_sums(const double *xn, const unsigned char *live, const uint32_t *assign,
                         size_t n, size_t d, uint32_t b, double *sums, size_t *counts)
{
    memset(sums, 0, (size_t)b * d * sizeof *sums);
    memset(counts, 0, b * sizeof *counts);
    for (size_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        double *restrict sum = sums + (size_t)assign[i] * d;
        const double *restrict x = xn + i * d;
        for (size_t j = 0; j < d; j++)
            sum[j] += x[j];
        counts[assign[i]]++;
    }
}

/* Lloyd steps.  When an assignment repeats the previous one, the centroids
 * would come out bit-identical, so every later step is a no-op: stop. */
static int lloyd(struct kmeans *s, const double *xn, const unsigned char *live, size_t n,
                 struct lsh_strategy_error *err)
{
    size_t d = s->d;
    uint32_t b = s->b;
    uint32_t *assign = malloc(n * sizeof *assign);
    double *sums = malloc((size_t)b * d * sizeof *sums);
    size_t *counts = malloc(b * sizeof *counts);
    if (!assign || !sums || !counts) {
        free(assign);
        free(sums);
        free(counts);
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        assign[i] = UINT32_MAX;
    /* few centroids: the rows transposed once, in blocks of sixteen (zero past n) */
    double *xt = NULL;
    uint32_t *near = NULL;
    const size_t blocks = (n + 15) / 16;
#if defined(__x86_64__) && defined(__GNUC__)
    if (b <= 8 && have_avx512() && blocks <= SIZE_MAX / 16 / sizeof *xt / d) {
        xt = aligned_alloc(64, blocks * 16 * d * sizeof *xt);
        near = malloc(blocks * 16 * sizeof *near);
        if (!xt || !near) { /* the plain path then */
            free(xt);
            free(near);
            xt = NULL;
            near = NULL;
        } else {
            memset(xt + (n / 16) * 16 * d, 0, (blocks - n / 16) * 16 * d * sizeof *xt);
            for (size_t i = 0; i < n; i++)
                for (size_t e = 0; e < d; e++)
                    xt[(i / 16) * 16 * d + e * 16 + i % 16] = xn[i * d + e];
        }
    }
#endif
    for (int64_t it = 0; it < s->iterations; it++) {
        int changed = 0;
#if defined(__x86_64__) && defined(__GNUC__)
        if (xt) {
            centroids_t(s);
            nearest_small(xt, blocks, s->ct, d, s->bp, b, near);
            for (size_t i = 0; i < n; i++) {
                if (!live[i])
                    continue;
                changed |= near[i] != assign[i];
                assign[i] = near[i];
            }
        }
#endif
        for (size_t start = 0; !xt && start < n; start += s->batch) {
            size_t m = n - start < s->batch ? n - start : s->batch;
            centroid_scores(s, m, xn + start * d, s->scores);
            uint32_t best[BATCH_ROWS];
            argmax_rows(s->scores, m, b, best);
            for (size_t i = 0; i < m; i++) {
                if (!live[start + i])
                    continue; /* a zero row adds nothing to any sum */
                changed |= best[i] != assign[start + i];
                assign[start + i] = best[i];
            }
        }
        if (!changed)
            break;
        cluster_sums(xn, live, assign, n, d, b, sums, counts);
        /* An empty cluster, or one whose members cancel, keeps its centroid. */
        for (uint32_t c = 0; c < b; c++) {
            double *sum = sums + (size_t)c * d;
            if (counts[c] > 0 && normalise(sum, d, sum))
                memcpy(s->c + (size_t)c * d, sum, d * sizeof *s->c);
        }
    }
    free(xt);
    free(near);
    free(assign);
    free(sums);
    free(counts);
    return 0;
}

static int fit(void *state, const double *x, size_t n, size_t d, struct lsh_strategy_error *err)
{
    struct kmeans *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans: rows have d = %zu, the round has %zu", d,
                    s->d);
    s->fitted = 0;
    if (n == 0)
        return too_few(err, s->b, 0);
    if (n > SIZE_MAX / sizeof(double) / d)
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: %zu rows are too many", n);
    double *xn = malloc(n * d * sizeof *xn);
    unsigned char *live = malloc(n);
    if (!xn || !live) {
        free(xn);
        free(live);
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans: out of memory for %zu rows", n);
    }
    for (size_t i = 0; i < n; i++)
        live[i] = (unsigned char)normalise(x + i * d, d, xn + i * d);
    int rc = s->plusplus ? init_plusplus(s, xn, live, n, err) : init_random(s, xn, live, n, err);
    if (rc == 0)
        rc = lloyd(s, xn, live, n, err);
    free(xn);
    free(live);
    s->fitted = rc == 0;
    return rc;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    struct kmeans *s = state;
    if (!s->fitted)
        return fail(err, LSH_STRATEGY_EFAIL, "kmeans: hash called before fit");
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans: rows have d = %zu, the round has %zu", d,
                    s->d);
    uint32_t b = s->b;
    for (size_t start = 0; start < n; start += s->batch) {
        size_t m = n - start < s->batch ? n - start : s->batch;
        for (size_t i = 0; i < m; i++) /* bucket 0 marks a zero row until the argmax */
            bucket[start + i] = (uint32_t)normalise(x + (start + i) * d, d, s->xn + i * d);
        centroid_scores(s, m, s->xn, s->scores);
        uint32_t best[BATCH_ROWS];
        argmax_rows(s->scores, m, b, best);
        for (size_t i = 0; i < m; i++)
            bucket[start + i] = bucket[start + i] ? best[i] : 0;
    }
    return 0;
}

/* ---- balanced assignment (SPEC 12.2) ---------------------------------------- */

/* A (row, centroid) pair of the greedy walk: descending score, then the
 * smaller row, then the smaller centroid. */
struct pair {
    double score;
    uint32_t row, c;
};

static int pair_before(const struct pair *a, const struct pair *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    if (a->row != b->row)
        return a->row < b->row;
    return a->c < b->c;
}

static void heap_down(struct pair *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && pair_before(&h[l], &h[top]))
            top = l;
        if (r < n && pair_before(&h[r], &h[top]))
            top = r;
        if (top == i)
            return;
        struct pair t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

/* The best centroid of one row of scores among those with room (ties: the
 * smaller centroid); UINT32_MAX when none has room. */
static uint32_t best_open(const double *scores, uint32_t b, const size_t *load, size_t cap)
{
    uint32_t best = UINT32_MAX;
    for (uint32_t c = 0; c < b; c++)
        if (load[c] < cap && (best == UINT32_MAX || scores[c] > scores[best]))
            best = c;
    return best;
}

/* bucket[0 .. n-1] of n rows with capacity ceil(n/B) per centroid: walk all
 * (row, centroid) pairs by descending x.c (ties: smaller row, then smaller
 * centroid), giving a row to a centroid when the row has none and the
 * centroid has room.  The walk is done lazily: a heap holds each unplaced
 * row's best pair among centroids with room; a popped pair whose centroid
 * has filled meanwhile is replaced by the row's next best.  Pairs of full
 * centroids and placed rows are exactly the ones the full walk passes over,
 * so the result is the same. */
static int balanced_rows(struct kmeans *s, const double *x, size_t n, size_t d, uint32_t *bucket,
                         const char *what, struct lsh_strategy_error *err)
{
    const uint32_t b = s->b;
    if (n < b)
        return fail(err, LSH_STRATEGY_EDATA,
                    "kmeans balanced needs n_buckets <= the %s rows, got n_buckets %u for %zu "
                    "%s rows", what, (unsigned)b, n, what);
    if (n > UINT32_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans balanced: %zu %s rows are too many", n,
                    what);
    if (n > SIZE_MAX / sizeof(double) / b)
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans balanced: %zu x %u scores are too many", n,
                    (unsigned)b);
    double *sc = malloc(n * b * sizeof *sc);
    struct pair *heap = malloc(n * sizeof *heap);
    size_t *load = calloc(b, sizeof *load);
    if (!sc || !heap || !load) {
        free(sc);
        free(heap);
        free(load);
        return fail(err, LSH_STRATEGY_ENOMEM, "kmeans balanced: out of memory for %zu x %u "
                    "scores", n, (unsigned)b);
    }
    for (size_t start = 0; start < n; start += s->batch) {
        size_t m = n - start < s->batch ? n - start : s->batch;
        for (size_t i = 0; i < m; i++) /* a zero row scores 0 against every centroid */
            normalise(x + (start + i) * d, d, s->xn + i * d);
        centroid_scores(s, m, s->xn, sc + start * b);
    }
    const size_t cap = n / b + (n % b != 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = argmax(sc + i * b, b);
        heap[i] = (struct pair){sc[i * b + c], (uint32_t)i, c};
    }
    for (size_t i = n / 2; i-- > 0;)
        heap_down(heap, n, i);
    size_t left = n;
    while (left > 0) {
        struct pair top = heap[0];
        if (load[top.c] < cap) {
            bucket[top.row] = top.c;
            load[top.c]++;
            heap[0] = heap[--left];
        } else { /* total room b * cap >= n: some centroid still has room */
            uint32_t c = best_open(sc + (size_t)top.row * b, b, load, cap);
            heap[0] = (struct pair){sc[(size_t)top.row * b + c], top.row, c};
        }
        heap_down(heap, left, 0);
    }
    free(sc);
    free(heap);
    free(load);
    return 0;
}

/* The unbalanced rule on n rows, in the host's batches of HOST_BATCH_ROWS:
 * the very calls hash() got before assign existed. */
static int nearest_rows(struct kmeans *s, const double *x, size_t n, size_t d, uint32_t *bucket,
                        struct lsh_strategy_error *err)
{
    for (size_t start = 0; start < n; start += HOST_BATCH_ROWS) {
        size_t m = n - start < HOST_BATCH_ROWS ? n - start : HOST_BATCH_ROWS;
        int rc = hash(s, x + start * d, m, d, bucket + start, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    struct kmeans *s = state;
    if (!s->fitted)
        return fail(err, LSH_STRATEGY_EFAIL, "kmeans: assign called before fit");
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "kmeans: rows have d = %zu, the round has %zu", d,
                    s->d);
    if (s->balanced) {
        int rc = balanced_rows(s, q, n_q, d, bq, "query", err);
        if (rc == 0 && k == q && n_k == n_q)
            memcpy(bk, bq, n_q * sizeof *bq);
        else if (rc == 0)
            rc = balanced_rows(s, k, n_k, d, bk, "key", err);
        return rc;
    }
    int rc = nearest_rows(s, q, n_q, d, bq, err);
    if (rc == 0 && k == q && n_k == n_q)
        memcpy(bk, bq, n_q * sizeof *bq);
    else if (rc == 0)
        rc = nearest_rows(s, k, n_k, d, bk, err);
    return rc;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct kmeans *s = state;
    if (!s->fitted)
        return LSH_STRATEGY_EFAIL;
    return sink->array(sink, "centroids", s->c, s->b, s->d);
}

static const struct lsh_strategy kmeans = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "kmeans",
    .summary = "spherical k-means buckets (Routing Transformer): nearest of B centroids fitted "
               "on the unit rows; balanced: equal clusters",
    .params = params,
    .state_size = sizeof(struct kmeans),
    .check = check,
    .init = init,
    .fit = fit,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
    .assign = assign,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &kmeans;
}
