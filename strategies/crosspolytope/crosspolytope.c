/* crosspolytope.c - FALCONN's cross-polytope LSH (SPEC 12.2): k polytopes,
 * each rotating the zero-padded row by `rotations` rounds of H.D (H the
 * orthonormal Walsh-Hadamard matrix, applied as a fast transform; D a random
 * +-1 diagonal), then taking the argmax of concat(y[0:m], -y[0:m]). */
#include <lshlab/strategy.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows rotated together: the transform runs on LANES interleaved rows, so
 * every butterfly is a short vector operation (the same arithmetic per row,
 * so the same bits as one row at a time). */
#define LANES 8
/* (2m)^k = n_buckets < 2^32 with 2m >= 2 allows k <= 31 and nothing more. */
#define K_MAX 31

enum { P_ROTATIONS, P_K, N_PARAMS };

static const struct lsh_param params[] = {
    [P_ROTATIONS] = {.name = "rotations", .type = LSH_PARAM_INT,
                     .doc = "rounds of H.D per polytope (pseudo-random rotation; FALCONN uses 3)",
                     .def_int = 3, .min = 1, .max = 5},
    [P_K] = {.name = "k", .type = LSH_PARAM_INT,
             .doc = "polytopes concatenated: n_buckets must be (2m)^k with 1 <= m <= d' "
                    "(d padded to a power of two)",
             .def_int = 1, .min = 1, .max = K_MAX},
    [N_PARAMS] = {.type = LSH_PARAM_END},
};

struct crosspolytope {
    size_t d, dp;        /* d, and d' = the smallest power of two >= d */
    unsigned k, rotations;
    uint32_t m;          /* argmax over m coordinates and their negatives */
    double scale;        /* 1/sqrt(d'): H = scale * (+-1 Sylvester matrix) */
    double *diag;        /* (k * rotations) x d' of +-1, polytope-major */
    double *y;           /* d' x LANES workspace: the rows being rotated, interleaved */
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

/* base^k, or UINT64_MAX once it passes 2^32 (no allowed n_buckets is that big). */
static uint64_t power_capped(uint64_t base, unsigned k)
{
    uint64_t p = 1;
    for (unsigned t = 0; t < k; t++) {
        if (p > (UINT64_C(1) << 32) / base)
            return UINT64_MAX;
        p *= base;
    }
    return p;
}

/* The largest m >= 0 with (2m)^k <= b (0 when even m = 1 is too big). */
static uint64_t root_floor(uint32_t b, unsigned k)
{
    uint64_t lo = 0, hi = (uint64_t)b / 2 + 1; /* (2 hi)^k > b */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (power_capped(2 * mid, k) <= b)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* d' = the smallest power of two >= d; 0 when it does not fit a size_t. */
static size_t padded(size_t d)
{
    size_t p = 1;
    while (p < d) {
        if (p > SIZE_MAX / 2)
            return 0;
        p *= 2;
    }
    return p;
}

/* Reads the parameters; finds m with (2m)^k = n_buckets, 1 <= m <= d'. */
static int layout(const struct lsh_round *round, struct crosspolytope *s,
                  struct lsh_strategy_error *err)
{
    const struct lsh_param_value *pv = round->params;
    size_t np = pv ? round->n_params : 0;
    int64_t rotations = params[P_ROTATIONS].def_int, k = params[P_K].def_int;
    if (np > P_ROTATIONS) {
        if (pv[P_ROTATIONS].type != LSH_PARAM_INT)
            return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope: parameter rotations is not an INT");
        rotations = pv[P_ROTATIONS].i;
    }
    if (np > P_K) {
        if (pv[P_K].type != LSH_PARAM_INT)
            return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope: parameter k is not an INT");
        k = pv[P_K].i;
    }
    if (rotations < 1 || rotations > 5)
        return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope needs rotations in 1..5, got %lld",
                    (long long)rotations);
    if (k < 1 || k > K_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope needs k in 1..%d, got %lld", K_MAX,
                    (long long)k);
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope needs d >= 1");
    const size_t dp = padded(round->d);
    if (dp == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope: d = %zu is too large", round->d);

    const uint32_t b = round->n_buckets;
    const unsigned ku = (unsigned)k;
    /* m ranges over 1 .. min(d', what keeps (2m)^k below 2^32) */
    const uint64_t m_top = root_floor(UINT32_MAX, ku) < dp ? root_floor(UINT32_MAX, ku) : dp;
    const uint64_t m = root_floor(b, ku);
    if (m >= 1 && m <= m_top && power_capped(2 * m, ku) == b) {
        s->dp = dp;
        s->d = round->d;
        s->k = ku;
        s->rotations = (unsigned)rotations;
        s->m = (uint32_t)m;
        return 0;
    }
    /* say which n_buckets are allowed near the given one */
    if (m_top == 0 || power_capped(2, ku) > UINT32_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "crosspolytope with k = %u has no n_buckets "
                    "(2m)^%u below 2^32", ku, ku);
    if (m == 0)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "crosspolytope with k = %u needs n_buckets = (2m)^%u, 1 <= m <= d' = %zu; "
                    "got %u, the smallest allowed is %llu", ku, ku, dp, (unsigned)b,
                    (unsigned long long)power_capped(2, ku));
    if (m >= m_top)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "crosspolytope with k = %u needs n_buckets = (2m)^%u, 1 <= m <= d' = %zu "
                    "(d = %zu padded to a power of two); got %u, the largest allowed is %llu",
                    ku, ku, dp, round->d, (unsigned)b,
                    (unsigned long long)power_capped(2 * m_top, ku));
    return fail(err, LSH_STRATEGY_EINVAL,
                "crosspolytope with k = %u needs n_buckets = (2m)^%u, 1 <= m <= d' = %zu; got "
                "%u, the nearest allowed are %llu and %llu", ku, ku, dp, (unsigned)b,
                (unsigned long long)power_capped(2 * m, ku),
                (unsigned long long)power_capped(2 * (m + 1), ku));
}

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct crosspolytope s;
    return layout(round, &s, err);
}

static void fini(void *state)
{
    struct crosspolytope *s = state;
    free(s->diag);
    free(s->y);
    s->diag = s->y = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct crosspolytope *s = state;
    int rc = layout(round, s, err);
    if (rc < 0)
        return rc;
    const size_t rows = (size_t)s->k * s->rotations;
    if (s->dp > SIZE_MAX / sizeof(double) / (rows > LANES ? rows : LANES))
        return fail(err, LSH_STRATEGY_ENOMEM, "crosspolytope: %zu diagonals of d' = %zu are too "
                    "large", rows, s->dp);
    s->scale = 1 / sqrt((double)s->dp);
    s->diag = malloc(rows * s->dp * sizeof *s->diag);
    s->y = malloc(s->dp * LANES * sizeof *s->y);
    if (!s->diag || !s->y) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "crosspolytope: out of memory for %zu diagonals "
                    "of d' = %zu", rows, s->dp);
    }
    /* Row-major draw order is part of the contract: draw 0 gives +1, 1 gives -1. */
    for (size_t i = 0; i < rows * s->dp; i++)
        s->diag[i] = round->host->uniform_int(round->rng, 2) ? -1.0 : 1.0;
    return 0;
}

/* y <- (unnormalised Sylvester Walsh-Hadamard) y, in place, for LANES
 * interleaved vectors of n entries (entry j of lane l at y[j * LANES + l]):
 * n log2 n additions each; entry (i, j) of the matrix is (-1)^popcount(i & j).
 * Element-wise additions only, so every clone gives the same bits. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void fwht(double *y, size_t n)
{
    for (size_t h = 1; h < n; h *= 2)
        for (size_t i = 0; i < n; i += 2 * h)
            for (size_t j = i; j < i + h; j++) {
                double *u = y + j * LANES, *v = y + (j + h) * LANES;
                for (size_t l = 0; l < LANES; l++) {
                    const double a = u[l], b = v[l];
                    u[l] = a + b;
                    v[l] = a - b;
                }
            }
}

/* Index of the largest entry of concat(y[0:m], -y[0:m]) for lane l; the
 * first one wins a tie (SPEC 1). */
static uint32_t argmax_pm(const double *y, size_t l, uint32_t m)
{
    uint32_t best = 0;
    double top = y[l];
    for (uint32_t j = 1; j < m; j++)
        if (y[j * LANES + l] > top) {
            top = y[j * LANES + l];
            best = j;
        }
    for (uint32_t j = 0; j < m; j++)
        if (-y[j * LANES + l] > top) {
            top = -y[j * LANES + l];
            best = m + j;
        }
    return best;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    struct crosspolytope *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "crosspolytope: rows have d = %zu, the round has %zu", d, s->d);
    const size_t dp = s->dp;
    double *y = s->y;
    for (size_t start = 0; start < n; start += LANES) {
        const size_t rows = n - start < LANES ? n - start : LANES;
        const double *x0 = x + start * d;
        uint32_t stride = 1;
        for (size_t l = 0; l < rows; l++)
            bucket[start + l] = 0;
        for (unsigned t = 0; t < s->k; t++) {
            const double *diag = s->diag + (size_t)t * s->rotations * dp;
            memset(y, 0, dp * LANES * sizeof *y); /* zero padding, and unused lanes */
            for (size_t l = 0; l < rows; l++)
                for (size_t j = 0; j < d; j++)
                    y[j * LANES + l] = x0[l * d + j] * diag[j];
            fwht(y, dp);
            for (unsigned r = 1; r < s->rotations; r++) {
                /* the previous round's 1/sqrt(d') folded into this D:
                 * scale * (+-1) is exact, so the bits are those of scaling first */
                const double *dr = diag + (size_t)r * dp;
                for (size_t j = 0; j < dp; j++) {
                    const double f = s->scale * dr[j];
                    for (size_t l = 0; l < LANES; l++)
                        y[j * LANES + l] *= f;
                }
                fwht(y, dp);
            }
            for (size_t j = 0; j < (size_t)s->m * LANES; j++)
                y[j] *= s->scale;
            for (size_t l = 0; l < rows; l++)
                bucket[start + l] += argmax_pm(y, l, s->m) * stride;
            stride *= 2 * s->m; /* the last product is n_buckets itself: no overflow */
        }
    }
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct crosspolytope *s = state;
    return sink->array(sink, "diagonals", s->diag, (size_t)s->k * s->rotations, s->dp);
}

static const struct lsh_strategy crosspolytope = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "crosspolytope",
    .summary = "cross-polytope LSH (FALCONN): k argmaxes of concat(y, -y), y = (H.D)^rotations x "
               "by fast Hadamard, B = (2m)^k",
    .params = params,
    .state_size = sizeof(struct crosspolytope),
    .check = check,
    .init = init,
    .fit = NULL,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
    .assign = NULL,
    .collision_prob = NULL, /* no closed form: importance refuses it */
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &crosspolytope;
}
