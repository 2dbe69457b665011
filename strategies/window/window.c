/* window.c - the sliding-window baseline (SPEC 12.2): bucket(i) =
 * floor(i * B / n) for queries and keys alike (n = n_q for queries, n_k for
 * keys): B contiguous blocks of positions, no randomness.  With mode: chunked
 * and look_back it is a sliding window. */
#include <lshlab/strategy.h>

#include <stdarg.h>
#include <stdio.h>

static const struct lsh_param params[] = {
    {.type = LSH_PARAM_END},
};

struct window_rule {
    uint32_t b;
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
        return fail(err, LSH_STRATEGY_EINVAL, "window needs n_buckets >= 1");
    return 0;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct window_rule *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    s->b = round->n_buckets;
    return 0;
}

/* floor(i * B / n), exactly in 64 bits: i < n < 2^32 and B < 2^32. */
static void blocks(size_t n, uint32_t b, uint32_t *bucket)
{
    for (size_t i = 0; i < n; i++)
        bucket[i] = (uint32_t)((uint64_t)i * b / n);
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    (void)q;
    (void)k;
    (void)d;
    const struct window_rule *s = state;
    if (n_q > UINT32_MAX || n_k > UINT32_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "window: at most %lu rows, got %zu",
                    (unsigned long)UINT32_MAX, n_q > n_k ? n_q : n_k);
    blocks(n_q, s->b, bq);
    blocks(n_k, s->b, bk);
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy window_rule = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "window",
    .summary = "baseline: contiguous blocks of positions, bucket(i) = floor(i B / n) for "
               "queries and keys alike",
    .params = params,
    .state_size = sizeof(struct window_rule),
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
    return &window_rule;
}
