/* edata_export.c - a test plugin that hashes every row to bucket 0 but whose
 * export_params returns LSH_STRATEGY_EDATA (-3, the value of the host's
 * LSH_ECONFIG): the host must report it as a plugin failure of the point. */
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
    (void)state, (void)sink;
    return LSH_STRATEGY_EDATA;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "edata_export",
    .summary = "test plugin: export_params fails with LSH_STRATEGY_EDATA",
    .init = init,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
