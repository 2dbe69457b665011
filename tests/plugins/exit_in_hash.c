/* exit_in_hash.c - a test plugin whose hash() calls exit(0): lshlab must not
 * exit 0 with its results unfinished. */
#include <lshlab/strategy.h>

#include <stdlib.h>

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)n, (void)d, (void)bucket, (void)err;
    exit(0);
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "exit_in_hash",
    .summary = "test plugin: hash calls exit(0)",
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
