/* bad_export.c - a test plugin that hashes every row to bucket 0 but whose
 * export_params fails, as its parameter `fault` says: "edata" returns
 * LSH_STRATEGY_EDATA (-3, the value of the host's LSH_ECONFIG), "slash"
 * exports an array named "a/b".  Either must fail the point, not the run. */
#include <lshlab/strategy.h>

#include <string.h>

static const char *const faults[] = {"edata", "slash", NULL};

static const struct lsh_param params[] = {
    {.name = "fault", .type = LSH_PARAM_CHOICE, .doc = "how export_params fails",
     .def_choice = "edata", .choices = faults},
    {.type = LSH_PARAM_END},
};

struct state {
    int slash;
};

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)err;
    ((struct state *)state)->slash = round->n_params > 0 &&
                                     strcmp(round->params[0].choice, "slash") == 0;
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
    static const double v[2] = {2.385, -0.5};
    if (((struct state *)state)->slash)
        return sink->array(sink, "a/b", v, 1, 2);
    return LSH_STRATEGY_EDATA;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "bad_export",
    .summary = "test plugin: export_params fails (LSH_STRATEGY_EDATA, or an array named a/b)",
    .params = params,
    .state_size = sizeof(struct state),
    .init = init,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
