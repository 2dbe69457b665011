/* null_hash.c - a test plugin whose required hash callback is NULL: the
 * loader must refuse it, naming the callback. */
#include <lshlab/strategy.h>

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "null_hash",
    .summary = "test plugin: no hash callback",
    .init = init,
    .hash = NULL,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
