/* smyrf.c - SMYRF's asymmetric clustering (SPEC 12.2): queries and keys are
 * lifted to d + 2 dimensions so that |q~ - k~|^2 = 2(M_q^2 + M_k^2) - 2 q.k,
 * sorted separately along one random Gaussian direction, and cut into equal
 * blocks. */
#include <lshlab/strategy.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smyrf {
    size_t d;
    uint32_t b;
    double *a; /* d + 2: the projection direction */
};

/* One row on the sort line: its projection and its position. */
struct item {
    double v;
    size_t pos;
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

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "smyrf needs d >= 1");
    if (round->d > SIZE_MAX / sizeof(double) - 2)
        return fail(err, LSH_STRATEGY_EINVAL, "smyrf: d = %zu is too large", round->d);
    if (round->n_buckets == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "smyrf needs n_buckets >= 1");
    /* n_rows == 0: the host does not know the rows yet; assign() checks then. */
    if (round->n_rows > 0 && round->n_buckets > round->n_rows)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "smyrf cuts the rows into n_buckets equal blocks, so it needs n_buckets "
                    "<= rows; got n_buckets %u for %zu rows",
                    (unsigned)round->n_buckets, round->n_rows);
    return 0;
}

static void fini(void *state)
{
    struct smyrf *s = state;
    free(s->a);
    s->a = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct smyrf *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    s->d = round->d;
    s->b = round->n_buckets;
    s->a = malloc((s->d + 2) * sizeof *s->a);
    if (!s->a)
        return fail(err, LSH_STRATEGY_ENOMEM, "smyrf: out of memory");
    for (size_t i = 0; i < s->d + 2; i++)
        s->a[i] = round->host->normal(round->rng);
    return 0;
}

static double dot(const double *x, const double *y, size_t d)
{
    double sum = 0;
    for (size_t j = 0; j < d; j++)
        sum += x[j] * y[j];
    return sum;
}

/* The largest |x_i|^2 over n rows. */
static double max_norm2(const double *x, size_t n, size_t d)
{
    double top = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = dot(x + i * d, x + i * d, d);
        top = v > top ? v : top;
    }
    return top;
}

/* Ascending by value, then by position; NaN (only from overflowing rows)
 * after every number, so the order is total. */
static int cmp_item(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    if (a->v < b->v)
        return -1;
    if (a->v > b->v)
        return 1;
    const int na = isnan(a->v), nb = isnan(b->v);
    if (na != nb)
        return na - nb;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* floor(b * n / nb) without overflow (b <= nb < 2^32). */
static size_t place(uint64_t b, uint64_t n, uint64_t nb)
{
    return (size_t)(b * (n / nb) + b * (n % nb) / nb);
}

/* Position-sort n rows by a.x~, x~ = x with extra (the sqrt term) at
 * coordinate `slot` (d or d + 1) and 0 at the other, and cut the order into
 * equal blocks. */
static void sort_into_blocks(const struct smyrf *s, const double *x, size_t n, double m2,
                             size_t slot, struct item *it, uint32_t *bucket)
{
    const size_t d = s->d;
    for (size_t i = 0; i < n; i++) {
        const double *row = x + i * d;
        double lift = m2 - dot(row, row, d);
        lift = lift > 0 ? sqrt(lift) : 0; /* rounding may leave -epsilon at the largest row */
        it[i].v = dot(s->a, row, d) + s->a[slot] * lift;
        it[i].pos = i;
    }
    qsort(it, n, sizeof *it, cmp_item);
    for (uint32_t b = 0; b < s->b; b++)
        for (size_t p = place(b, n, s->b); p < place((uint64_t)b + 1, n, s->b); p++)
            bucket[it[p].pos] = b;
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    struct smyrf *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "smyrf: rows have d = %zu, the round has %zu", d,
                    s->d);
    if (s->b > n_q || s->b > n_k)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "smyrf cuts queries and keys into n_buckets equal blocks, so it needs "
                    "n_buckets <= rows; got n_buckets %u for %zu queries and %zu keys",
                    (unsigned)s->b, n_q, n_k);
    const size_t most = n_q > n_k ? n_q : n_k;
    if (most > SIZE_MAX / sizeof(struct item))
        return fail(err, LSH_STRATEGY_ENOMEM, "smyrf: %zu rows are too many", most);
    struct item *it = malloc(most * sizeof *it);
    if (!it)
        return fail(err, LSH_STRATEGY_ENOMEM, "smyrf: out of memory for %zu rows", most);
    /* M_q^2 + M_k^2: what every lifted row's squared norm becomes */
    const double m2 = max_norm2(q, n_q, d) + max_norm2(k, n_k, d);
    sort_into_blocks(s, q, n_q, m2, d + 1, it, bq); /* q~ = [q, 0, lift] */
    sort_into_blocks(s, k, n_k, m2, d, it, bk);     /* k~ = [k, lift, 0] */
    free(it);
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct smyrf *s = state;
    return sink->array(sink, "projection", s->a, 1, s->d + 2);
}

/* Equal blocks depend on the whole set: no closed-form pair law. */
static double collision_prob(const struct lsh_round *round, double cos_theta)
{
    (void)round;
    (void)cos_theta;
    return NAN;
}

static const struct lsh_strategy smyrf = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "smyrf",
    .summary = "SMYRF asymmetric LSH: sort lifted queries and keys along a random direction, "
               "cut each into B equal blocks",
    .params = NULL,
    .state_size = sizeof(struct smyrf),
    .check = check,
    .init = init,
    .fit = NULL,
    .hash = NULL,
    .export_params = export_params,
    .fini = fini,
    .assign = assign,
    .collision_prob = collision_prob,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &smyrf;
}
