/* bad_law.c - a test plugin (ABI 1.1): the sign of x[0] (B = 2) with a
 * collision_prob that misbehaves as its parameter `mode` says:
 *   0  the true law of this rule is unknown; returns 0.5 (valid everywhere)
 *   1  NaN everywhere            2  1.5 everywhere        3  -0.1 everywhere
 *   4  +Inf everywhere           5  -0.0 everywhere (a valid 0: u = 0 when collided)
 *   6  valid at the host's probe angles, NaN at every other cosine
 *   7  valid at the probes, 1.5 elsewhere
 * and `fail_assign` 1: assign returns an error without a message. */
#include <math.h>
#include <lshlab/strategy.h>

enum { P_MODE, P_FAIL };
static const struct lsh_param params[] = {
    [P_MODE] = {.name = "mode", .type = LSH_PARAM_INT, .doc = "how the law misbehaves",
                .def_int = 0, .min = 0, .max = 7},
    [P_FAIL] = {.name = "fail_assign", .type = LSH_PARAM_INT, .doc = "assign fails silently",
                .def_int = 0, .min = 0, .max = 1},
    {.type = LSH_PARAM_END},
};

struct state {
    int fail;
};

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)err;
    ((struct state *)state)->fail = (int)round->params[P_FAIL].i;
    return 0;
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    (void)err;
    if (((struct state *)state)->fail)
        return LSH_STRATEGY_EINVAL; /* and no message */
    for (size_t i = 0; i < n_q; i++)
        bq[i] = q[i * d] > 0;
    for (size_t j = 0; j < n_k; j++)
        bk[j] = k[j * d] > 0;
    return 0;
}

static int is_probe(double c)
{
    static const double probe[] = {-1.0, -0.5, 0.0, 0.3, 0.5, 0.9, 1.0};
    for (size_t t = 0; t < sizeof probe / sizeof *probe; t++)
        if (c == probe[t])
            return 1;
    return 0;
}

static double law(const struct lsh_round *round, double c)
{
    switch (round->params[P_MODE].i) {
    case 1: return NAN;
    case 2: return 1.5;
    case 3: return -0.1;
    case 4: return INFINITY;
    case 5: return -0.0;
    case 6: return is_probe(c) ? 0.5 : NAN;
    case 7: return is_probe(c) ? 0.5 : 1.5;
    default: return 0.5;
    }
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "bad_law",
    .summary = "test plugin: sign of x[0] with a misbehaving collision_prob",
    .params = params,
    .state_size = sizeof(struct state),
    .init = init,
    .hash = NULL,
    .fini = fini,
    .assign = assign,
    .collision_prob = law,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
