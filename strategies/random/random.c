/* random.c - the random-sets baseline (SPEC 12.2): query i's bucket is
 * floor(u_i * B), u_i the i-th uniform of the round's stream; separate keys
 * draw their own (key j the (n_q + j)-th uniform), shared keys take the query
 * buckets.  It says what a candidate set of a given size is worth when it is
 * chosen without looking at the data. */
#include <lshlab/strategy.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct lsh_param params[] = {
    {.type = LSH_PARAM_END},
};

struct random_rule {
    uint32_t b;
    int drawn; /* assign runs once per round: the stream is read from its start */
    /* assign() draws the uniforms: the stream outlives init (until fini). */
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

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    if (round->n_buckets == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "random needs n_buckets >= 1");
    return 0;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct random_rule *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    s->b = round->n_buckets;
    s->rng = round->rng;
    s->host = round->host;
    s->drawn = 0;
    return 0;
}

/* floor(u * B) for u in [0, 1); u * B may round up to B when u is within
 * 2^-53 of 1: that is bucket B - 1. */
static uint32_t bucket_of(double u, uint32_t b)
{
    const double v = u * (double)b;
    return v < (double)b ? (uint32_t)v : b - 1;
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    (void)d;
    struct random_rule *s = state;
    if (s->drawn)
        return fail(err, LSH_STRATEGY_EFAIL, "random: assign called twice in one round (the "
                    "uniforms are the round's stream from its start)");
    s->drawn = 1;
    for (size_t i = 0; i < n_q; i++)
        bq[i] = bucket_of(s->host->uniform(s->rng), s->b);
    if (k == q && n_k == n_q) {
        memcpy(bk, bq, n_q * sizeof *bq);
        return 0;
    }
    for (size_t j = 0; j < n_k; j++)
        bk[j] = bucket_of(s->host->uniform(s->rng), s->b);
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy random_rule = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "random",
    .summary = "baseline: uniformly random buckets, floor(u_i B) from the round's stream "
               "(separate keys draw their own)",
    .params = params,
    .state_size = sizeof(struct random_rule),
    .check = check,
    .init = init,
    .fit = NULL,
    .hash = NULL,
    .export_params = NULL,
    .fini = fini,
    .assign = assign,
    .collision_prob = NULL,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &random_rule;
}
