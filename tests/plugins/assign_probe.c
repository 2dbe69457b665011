/* assign_probe.c - a test plugin with assign (ABI 1.1) and no hash, whose
 * buckets say what the host handed it.  For a row x (query or key):
 *   x[0] >= 0  ->  query bucket (uint32_t)x[0], key bucket (uint32_t)x[d-1]
 *                  (so a bucket out of range comes from the data);
 *   x[0] == -1 ->  the number of rows fit() saw;
 *   x[0] == -2 ->  1 when k == q (the same pointer), else 0;
 *   x[0] == -3 ->  n_q for a query, n_k for a key;
 *   x[0] == -4 ->  nothing: the row's bucket is left unwritten. */
#include <lshlab/strategy.h>

struct state {
    size_t fit_rows;
};

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)round, (void)err;
    ((struct state *)state)->fit_rows = 0;
    return 0;
}

static int fit(void *state, const double *x, size_t n, size_t d, struct lsh_strategy_error *err)
{
    (void)x, (void)d, (void)err;
    ((struct state *)state)->fit_rows = n;
    return 0;
}

static uint32_t rule(const struct state *s, const double *x, size_t d, int key, int same,
                     size_t n)
{
    if (x[0] == -1)
        return (uint32_t)s->fit_rows;
    if (x[0] == -2)
        return (uint32_t)same;
    if (x[0] == -3)
        return (uint32_t)n;
    return (uint32_t)(key ? x[d - 1] : x[0]);
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    (void)err;
    const struct state *s = state;
    const int same = k == q;
    for (size_t i = 0; i < n_q; i++)
        if (q[i * d] != -4)
            bq[i] = rule(s, q + i * d, d, 0, same, n_q);
    for (size_t j = 0; j < n_k; j++)
        if (k[j * d] != -4)
            bk[j] = rule(s, k + j * d, d, 1, same, n_k);
    return 0;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "assign_probe",
    .summary = "test plugin: assign() whose buckets report what the host handed it",
    .state_size = sizeof(struct state),
    .init = init,
    .fit = fit,
    .hash = NULL,
    .fini = fini,
    .assign = assign,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
