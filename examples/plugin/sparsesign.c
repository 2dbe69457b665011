/* sparsesign.c - an example strategy plugin, built outside the lshlab tree
 * against the installed SDK (<lshlab/strategy.h>, found through pkg-config).
 *
 * Rule: draw `bits` sparse random sign vectors r_t (Achlioptas 2003: each entry
 * is +1 with probability density/2, -1 with probability density/2, else 0).
 * Bit t of a row's code is [x.r_t > 0] (strictly: 0 and NaN give 0), and the
 * bucket is code mod n_buckets, so any n_buckets <= 2^bits works, powers of
 * two or not.  A projection that drew no non-zero entry gets one (a uniform
 * coordinate, a fair sign), so no bit is constant.
 *
 * What a plugin must do (see strategy.h): publish its parameters as a schema
 * (the host checks types and ranges), refuse what it cannot hash in check(),
 * draw every random number from round->rng in init(), hash as a pure function
 * of the state and the row, and free what init allocated in fini().
 */
#include <lshlab/strategy.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const struct lsh_param params[] = {
    {.name = "bits", .type = LSH_PARAM_INT, .doc = "number of sign projections (code has 2^bits values)",
     .def_int = 8, .min = 1, .max = 31},
    {.name = "density", .type = LSH_PARAM_REAL, .doc = "probability that an entry of r_t is non-zero",
     .def_real = 1.0 / 3.0, .min = 0.001, .max = 1.0},
    {.type = LSH_PARAM_END},
};
enum { P_BITS, P_DENSITY };

/* One round: the non-zero entries of every projection, projection by projection. */
struct sparsesign {
    size_t d;
    uint32_t n_buckets;
    unsigned bits;
    size_t *start;   /* bits + 1 offsets into idx/sign: projection t is [start[t], start[t+1]) */
    size_t *idx;     /* coordinate of each non-zero entry */
    double *sign;    /* +1 or -1 */
};

static int fail(struct lsh_strategy_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Called at validation time (round->rng == NULL) and again by init. */
static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    const int64_t bits = round->params[P_BITS].i;
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "sparsesign needs d >= 1");
    if (round->n_buckets == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "sparsesign needs n_buckets >= 1");
    if ((uint64_t)round->n_buckets > ((uint64_t)1 << bits))
        return fail(err, LSH_STRATEGY_EINVAL,
                    "sparsesign with bits = %lld has only %llu codes, fewer than n_buckets = %u; "
                    "raise bits", (long long)bits, (unsigned long long)((uint64_t)1 << bits),
                    (unsigned)round->n_buckets);
    return 0;
}

static void fini(void *state)
{
    struct sparsesign *s = state;
    free(s->start);
    free(s->idx);
    free(s->sign);
    s->start = s->idx = NULL;
    s->sign = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct sparsesign *s = state; /* zeroed by the host */
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    s->d = round->d;
    s->n_buckets = round->n_buckets;
    s->bits = (unsigned)round->params[P_BITS].i;
    const double density = round->params[P_DENSITY].r;
    if (s->d > SIZE_MAX / sizeof(double) / s->bits)
        return fail(err, LSH_STRATEGY_ENOMEM, "sparsesign: %zu x %u projections are too large",
                    s->d, s->bits);
    s->start = malloc((s->bits + 1) * sizeof *s->start);
    s->idx = malloc(s->d * s->bits * sizeof *s->idx);
    s->sign = malloc(s->d * s->bits * sizeof *s->sign);
    if (!s->start || !s->idx || !s->sign) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "sparsesign: out of memory");
    }
    /* Draw order (part of the rule): projection by projection, coordinate by
     * coordinate, one uniform each; then, for an empty projection, one
     * uniform_int for its coordinate and one uniform for its sign. */
    const struct lsh_host *h = round->host;
    size_t n = 0;
    for (unsigned t = 0; t < s->bits; t++) {
        s->start[t] = n;
        for (size_t e = 0; e < s->d; e++) {
            const double u = h->uniform(round->rng);
            if (u < density) {
                s->idx[n] = e;
                s->sign[n++] = u < density / 2 ? 1.0 : -1.0;
            }
        }
        if (n == s->start[t]) {
            s->idx[n] = (size_t)h->uniform_int(round->rng, s->d);
            s->sign[n++] = h->uniform(round->rng) < 0.5 ? 1.0 : -1.0;
        }
    }
    s->start[s->bits] = n;
    return 0;
}

/* Pure: the same row gives the same bucket in any batch, on any thread. */
static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    const struct sparsesign *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "sparsesign: rows have d = %zu, the round has %zu",
                    d, s->d);
    for (size_t i = 0; i < n; i++) {
        const double *row = x + i * d;
        uint32_t code = 0;
        for (unsigned t = 0; t < s->bits; t++) {
            double y = 0;
            for (size_t k = s->start[t]; k < s->start[t + 1]; k++)
                y += s->sign[k] * row[s->idx[k]];
            code |= (uint32_t)(y > 0) << t;
        }
        bucket[i] = code % s->n_buckets;
    }
    return 0;
}

/* dump: [hash_params] stores the projections as a dense d x bits array
 * (column t is r_t), as hyperplane stores its hyperplanes. */
static int export_params(void *state, struct lsh_sink *sink)
{
    const struct sparsesign *s = state;
    double *r = calloc(s->d * s->bits, sizeof *r);
    if (!r)
        return LSH_STRATEGY_ENOMEM;
    for (unsigned t = 0; t < s->bits; t++)
        for (size_t k = s->start[t]; k < s->start[t + 1]; k++)
            r[s->idx[k] * s->bits + t] = s->sign[k];
    int rc = sink->array(sink, "projections", r, s->d, s->bits);
    free(r);
    return rc;
}

static const struct lsh_strategy sparsesign = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "sparsesign",
    .summary = "example plugin: signs of sparse random +-1 projections, code mod n_buckets "
               "(any B <= 2^bits)",
    .params = params,
    .state_size = sizeof(struct sparsesign),
    .check = check,
    .init = init,
    .fit = NULL,         /* data-independent */
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
    /* ABI 1.1 members.  assign: not needed, rows hash one at a time.
     * collision_prob: none; for sparse signs the chance that two vectors share a
     * bit depends on more than their angle, so there is no closed form (and
     * `combine: importance`, which needs one, cannot use this strategy). */
    .assign = NULL,
    .collision_prob = NULL,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &sparsesign;
}
