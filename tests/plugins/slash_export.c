/* slash_export.c - a test plugin that hashes every row to bucket 0 and
 * exports an array named "a/b": the host must fail the point, not the run. */
#include <lshlab/strategy.h>

#include <string.h>

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    memset(bucket, 0, n * sizeof *bucket);
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    (void)state;
    static const double v[2] = {2.385, -0.5};
    return sink->array(sink, "a/b", v, 1, 2);
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "slash_export",
    .summary = "test plugin: exports an array named a/b",
    .init = init,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
