/* bad_abi_major.c - a test plugin built for a future ABI major: the loader
 * must refuse it before touching anything past the version fields. */
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
    .abi_major = LSH_STRATEGY_ABI_MAJOR + 1,
    .abi_minor = 0,
    .name = "bad_abi_major",
    .summary = "test plugin: ABI major from the future",
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
