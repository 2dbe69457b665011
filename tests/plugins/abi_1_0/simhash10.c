/* simhash10.c - a plugin built against the frozen ABI 1.0 header
 * (tests/plugins/abi_1_0/lshlab/strategy.h, as of the commit before ABI 1.1):
 * its struct lsh_strategy ends at fini.  A 1.1 host must keep loading it and
 * giving the same buckets, without reading past the struct (test_host, under
 * ASan).  The rule is sign-hyperplane hashing by hand: W (d x k, k = log2 B)
 * drawn row-major from round->host->normal, bit t = [x.w_t > 0], the dot
 * products summed in index order. */
#include <lshlab/strategy.h>

#include <stdlib.h>

#if LSH_STRATEGY_ABI_MINOR != 0
#error "simhash10 must be built against the frozen ABI 1.0 header"
#endif

struct state {
    size_t d;
    unsigned k;
    double *w;
};

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)err;
    struct state *s = state;
    uint32_t b = round->n_buckets;
    if (b == 0 || (b & (b - 1)) != 0 || round->d == 0 || round->d > 4096)
        return LSH_STRATEGY_EINVAL;
    s->d = round->d;
    s->k = 0;
    while (b >>= 1)
        s->k++;
    s->w = malloc((s->d * s->k + 1) * sizeof *s->w);
    if (!s->w)
        return LSH_STRATEGY_ENOMEM;
    for (size_t i = 0; i < s->d * s->k; i++)
        s->w[i] = round->host->normal(round->rng);
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)err;
    const struct state *s = state;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = 0;
        for (unsigned t = 0; t < s->k; t++) {
            double y = 0;
            for (size_t e = 0; e < d; e++)
                y += x[i * d + e] * s->w[e * s->k + t];
            b |= (uint32_t)(y > 0) << t;
        }
        bucket[i] = b;
    }
    return 0;
}

static void fini(void *state)
{
    struct state *s = state;
    free(s->w);
    s->w = NULL;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR, /* 0 */
    .name = "simhash10",
    .summary = "test plugin built against ABI 1.0: sign hyperplanes by hand",
    .state_size = sizeof(struct state),
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
