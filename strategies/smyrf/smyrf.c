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

/* One row on the sort line: its projection as an order-preserving integer
 * (order_key) and its position. */
struct item {
    uint64_t key;
    uint32_t pos;
};

/* Digits of the LSD radix sort: 2^11 counters fit in L1. */
#define DIGIT_BITS 11

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

/* x.y summed in eight lanes added in a fixed order: vectorisable, and the
 * same bits on every machine. */
static double dot(const double *x, const double *y, size_t d)
{
    double l[8] = {0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        for (size_t e = 0; e < 8; e++)
            l[e] += x[j + e] * y[j + e];
    for (size_t e = 0; j + e < d; e++)
        l[e] += x[j + e] * y[j + e];
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
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

/* An integer with the order of v: -0 and +0 equal, NaN (only from
 * overflowing rows) after every number. */
static uint64_t order_key(double v)
{
    if (isnan(v))
        return UINT64_MAX;
    if (v == 0)
        v = 0.0; /* -0 sorts as +0: a tie, broken by position */
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u >> 63 ? ~u : u | (uint64_t)1 << 63;
}

/* Sorts it[0 .. n-1] stably by key (so equal values keep their position
 * order); tmp is n more.  Returns the array that holds the result. */
static struct item *radix_sort(struct item *it, struct item *tmp, size_t n)
{
    size_t count[(size_t)1 << DIGIT_BITS];
    const uint64_t mask = ((uint64_t)1 << DIGIT_BITS) - 1;
    for (unsigned lo = 0; lo < 64; lo += DIGIT_BITS) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[it[i].key >> lo & mask]++;
        if (n == 0 || count[it[0].key >> lo & mask] == n)
            continue; /* every row has this digit: the pass would change nothing */
        size_t sum = 0;
        for (size_t v = 0; v <= mask; v++) {
            const size_t c = count[v];
            count[v] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[it[i].key >> lo & mask]++] = it[i];
        struct item *t = it;
        it = tmp;
        tmp = t;
    }
    return it;
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
                             size_t slot, struct item *it, struct item *tmp, uint32_t *bucket)
{
    const size_t d = s->d;
    for (size_t i = 0; i < n; i++) {
        const double *row = x + i * d;
        double lift = m2 - dot(row, row, d);
        lift = lift > 0 ? sqrt(lift) : 0; /* rounding may leave -epsilon at the largest row */
        it[i].key = order_key(dot(s->a, row, d) + s->a[slot] * lift);
        it[i].pos = (uint32_t)i;
    }
    it = radix_sort(it, tmp, n);
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
    if (most > UINT32_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "smyrf: at most 2^32 - 1 rows, got %zu", most);
    struct item *it = malloc(2 * most * sizeof *it); /* items and the sort's other half */
    if (!it)
        return fail(err, LSH_STRATEGY_ENOMEM, "smyrf: out of memory for %zu rows", most);
    /* M_q^2 + M_k^2: what every lifted row's squared norm becomes */
    const double m2 = max_norm2(q, n_q, d) + max_norm2(k, n_k, d);
    sort_into_blocks(s, q, n_q, m2, d + 1, it, it + most, bq); /* q~ = [q, 0, lift] */
    sort_into_blocks(s, k, n_k, m2, d, it, it + most, bk);     /* k~ = [k, lift, 0] */
    free(it);
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct smyrf *s = state;
    return sink->array(sink, "projection", s->a, 1, s->d + 2);
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
    .collision_prob = NULL, /* no closed form: importance refuses it */
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &smyrf;
}
