/* bad_abi_minor.c - a test plugin built against a newer minor ABI than the
 * host speaks: it may rely on members this host does not have, so it is refused. */
#include <lshlab/strategy.h>

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    for (size_t i = 0; i < n; i++)
        bucket[i] = 0;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR + 1,
    .name = "bad_abi_minor",
    .summary = "test plugin: ABI minor newer than the host",
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
