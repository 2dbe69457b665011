/* failing_hash.c - a test plugin that loads fine but whose hash always fails
 * with LSH_STRATEGY_EFAIL and a message the core must pass on. */
#include <lshlab/strategy.h>

#include <string.h>

#define FAILING_HASH_MESSAGE "failing_hash: this plugin always fails, on purpose"

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)n, (void)d, (void)bucket;
    if (err)
        strcpy(err->message, FAILING_HASH_MESSAGE);
    return LSH_STRATEGY_EFAIL;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "failing_hash",
    .summary = "test plugin: hash always fails with a message",
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
