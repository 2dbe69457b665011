/* hyperplane.c - SimHash (Charikar 2002, SPEC 2.2): bit t of the bucket is
 * whether x lies strictly on the positive side of random hyperplane w_t. */
#include <lshlab/strategy.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Rows hashed per GEMM: bounds the workspace whatever the batch size. */
#define BATCH_ROWS 1024

static const struct lsh_param params[] = {
    {.type = LSH_PARAM_END},
};

struct hyperplane {
    size_t d;
    unsigned k;  /* log2 B */
    double *w;   /* d x k, row-major: column t is w_t */
    double *y;   /* BATCH_ROWS x k workspace */
    const struct lsh_host *host; /* static in the host: outlives the round */
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

/* k = log2 B, or -1 when B is not a power of two. */
static int log2_exact(uint32_t b)
{
    if (b == 0 || (b & (b - 1)) != 0)
        return -1;
    int k = 0;
    while (b >>= 1)
        k++;
    return k;
}

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "hyperplane needs d >= 1");
    if (log2_exact(round->n_buckets) < 0)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "hyperplane needs n_buckets to be a power of two, got %u",
                    (unsigned)round->n_buckets);
    return 0;
}

static void fini(void *state)
{
    struct hyperplane *s = state;
    free(s->w);
    free(s->y);
    s->w = s->y = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct hyperplane *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    s->d = round->d;
    s->k = (unsigned)log2_exact(round->n_buckets);
    s->host = round->host;
    if (s->k == 0)
        return 0; /* B = 1: no hyperplanes, every row in bucket 0 */
    if (s->d > SIZE_MAX / sizeof(double) / s->k)
        return fail(err, LSH_STRATEGY_ENOMEM, "hyperplane: W of %zu x %u is too large", s->d,
                    s->k);
    s->w = malloc(s->d * s->k * sizeof *s->w);
    s->y = malloc((size_t)BATCH_ROWS * s->k * sizeof *s->y);
    if (!s->w || !s->y) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "hyperplane: out of memory");
    }
    /* Row-major draw order is part of the contract: a known W for tests. */
    for (size_t i = 0; i < s->d * s->k; i++)
        s->w[i] = round->host->normal(round->rng);
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    struct hyperplane *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "hyperplane: rows have d = %zu, the round has %zu",
                    d, s->d);
    unsigned k = s->k;
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            bucket[i] = 0;
        return 0;
    }
    for (size_t start = 0; start < n; start += BATCH_ROWS) {
        size_t m = n - start < BATCH_ROWS ? n - start : BATCH_ROWS;
        s->host->gemm(m, k, d, x + start * d, s->w, s->y, 0);
        for (size_t i = 0; i < m; i++) {
            const double *y = s->y + i * k;
            uint32_t b = 0;
            for (unsigned t = 0; t < k; t++)
                b |= (uint32_t)(y[t] > 0) << t; /* strictly: 0 and NaN give bit 0 */
            bucket[start + i] = b;
        }
    }
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct hyperplane *s = state;
    if (s->k == 0)
        return 0; /* nothing was drawn */
    return sink->array(sink, "hyperplanes", s->w, s->d, s->k);
}

/* Charikar: one hyperplane separates two vectors at angle theta with
 * probability theta/pi, and the k = log2 B hyperplanes are independent. */
static double collision_prob(const struct lsh_round *round, double cos_theta)
{
    const int k = log2_exact(round->n_buckets);
    if (k < 0 || isnan(cos_theta))
        return NAN;
    const double c = cos_theta < -1 ? -1 : cos_theta > 1 ? 1 : cos_theta;
    return pow(1.0 - acos(c) / 3.14159265358979323846, (double)k);
}

static const struct lsh_strategy hyperplane = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "hyperplane",
    .summary = "sign of random hyperplanes (SimHash): bit t = [x.w_t > 0], B = 2^k, "
               "W d x k Gaussian",
    .params = params,
    .state_size = sizeof(struct hyperplane),
    .check = check,
    .init = init,
    .fit = NULL,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
    .assign = NULL,
    .collision_prob = collision_prob,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &hyperplane;
}
