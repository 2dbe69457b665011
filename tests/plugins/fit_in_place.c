/* fit_in_place.c - a test plugin whose fit() scales the rows it is given in
 * place to a largest entry of 1, casting away const: the host must give it a copy, so that the
 * data other strategies see is unchanged. */
#include <lshlab/strategy.h>

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int fit(void *state, const double *x, size_t n, size_t d, struct lsh_strategy_error *err)
{
    (void)state, (void)err;
    double *rows = (double *)x; /* the fault under test */
    for (size_t i = 0; i < n; i++) {
        double big = 0;
        for (size_t j = 0; j < d; j++) {
            double a = rows[i * d + j] < 0 ? -rows[i * d + j] : rows[i * d + j];
            big = a > big ? a : big;
        }
        for (size_t j = 0; big > 0 && j < d; j++)
            rows[i * d + j] /= big;
    }
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)err;
    for (size_t i = 0; i < n; i++)
        bucket[i] = x[i * d] > 0;
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "fit_in_place",
    .summary = "test plugin: fit rescales its (const) rows in place",
    .init = init,
    .fit = fit,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
