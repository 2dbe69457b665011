/* huge_state.c - a test plugin asking for a state of SIZE_MAX - 8 bytes: the
 * host must refuse it, not round the size up past zero and crash. */
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
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "huge_state",
    .summary = "test plugin: state_size near SIZE_MAX",
    .state_size = SIZE_MAX - 8,
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
