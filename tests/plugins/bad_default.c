/* bad_default.c - a test plugin whose parameter default lies outside its own
 * bounds: the loader must refuse the schema, naming the parameter. */
#include <lshlab/strategy.h>

static const struct lsh_param params[] = {
    {.name = "width", .type = LSH_PARAM_INT, .doc = "a width that cannot be its default",
     .def_int = 0, .min = 1, .max = 10},
    {.type = LSH_PARAM_END},
};

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
    .name = "bad_default",
    .summary = "test plugin: default outside its bounds",
    .params = params,
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
