/* bad_bucket.c - a test plugin that loads fine but hashes every row to
 * n_buckets, one past the last bucket: the core must catch it at run time. */
#include <lshlab/strategy.h>

struct state {
    uint32_t n_buckets;
};

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)err;
    ((struct state *)state)->n_buckets = round->n_buckets;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)x, (void)d, (void)err;
    for (size_t i = 0; i < n; i++)
        bucket[i] = ((struct state *)state)->n_buckets;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "bad_bucket",
    .summary = "test plugin: every bucket is n_buckets (out of range)",
    .state_size = sizeof(struct state),
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
