/* sortlsh.c - HyperAttention's sortLSH (SPEC 12.2): r SimHash bits, read as
 * a reflected Gray code, give each row a rank; queries and keys are sorted by
 * (rank, position) separately and cut into equal blocks. */
#include <lshlab/strategy.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows projected per GEMM: bounds the workspace whatever n. */
#define BATCH_ROWS 1024

enum { P_PROJECTIONS, N_PARAMS };

static const struct lsh_param params[] = {
    [P_PROJECTIONS] = {.name = "projections", .type = LSH_PARAM_INT,
                       .doc = "SimHash bits r; rows are ordered by the Gray-code rank of their "
                              "r-bit code",
                       .def_int = 7, .min = 1, .max = 30},
    [N_PARAMS] = {.type = LSH_PARAM_END},
};

struct sortlsh {
    size_t d;
    unsigned r;
    uint32_t b;
    double *w;   /* d x r, row-major: column t is w_t */
    double *y;   /* BATCH_ROWS x r workspace */
    const struct lsh_host *host; /* static in the host: outlives the round */
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

static int read_projections(const struct lsh_round *round, unsigned *r,
                            struct lsh_strategy_error *err)
{
    const struct lsh_param_value *pv = round->params;
    size_t np = pv ? round->n_params : 0;
    int64_t v = params[P_PROJECTIONS].def_int;
    if (np > P_PROJECTIONS) {
        if (pv[P_PROJECTIONS].type != LSH_PARAM_INT)
            return fail(err, LSH_STRATEGY_EINVAL, "sortlsh: parameter projections is not an INT");
        v = pv[P_PROJECTIONS].i;
    }
    if (v < 1 || v > 30)
        return fail(err, LSH_STRATEGY_EINVAL, "sortlsh needs projections in 1..30, got %lld",
                    (long long)v);
    *r = (unsigned)v;
    return 0;
}

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    unsigned r;
    int rc = read_projections(round, &r, err);
    if (rc < 0)
        return rc;
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "sortlsh needs d >= 1");
    if (round->n_buckets == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "sortlsh needs n_buckets >= 1");
    /* n_rows == 0: the host does not know the rows yet; assign() checks then. */
    if (round->n_rows > 0 && round->n_buckets > round->n_rows)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "sortlsh cuts the rows into n_buckets equal blocks, so it needs n_buckets "
                    "<= rows; got n_buckets %u for %zu rows",
                    (unsigned)round->n_buckets, round->n_rows);
    return 0;
}

static void fini(void *state)
{
    struct sortlsh *s = state;
    free(s->w);
    free(s->y);
    s->w = s->y = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct sortlsh *s = state;
    int rc = check(round, err);
    if (rc < 0)
        return rc;
    read_projections(round, &s->r, err);
    s->d = round->d;
    s->b = round->n_buckets;
    s->host = round->host;
    if (s->d > SIZE_MAX / sizeof(double) / s->r)
        return fail(err, LSH_STRATEGY_ENOMEM, "sortlsh: W of %zu x %u is too large", s->d, s->r);
    s->w = malloc(s->d * s->r * sizeof *s->w);
    s->y = malloc((size_t)BATCH_ROWS * s->r * sizeof *s->y);
    if (!s->w || !s->y) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "sortlsh: out of memory");
    }
    /* Row-major draw order is part of the contract: a known W for tests. */
    for (size_t i = 0; i < s->d * s->r; i++)
        s->w[i] = round->host->normal(round->rng);
    return 0;
}

/* The position of code c in the reflected Gray sequence g(p) = p ^ (p >> 1):
 * g^-1(c) = c ^ (c >> 1) ^ (c >> 2) ^ ... */
static uint32_t gray_rank(uint32_t c)
{
    for (unsigned shift = 1; shift < 32; shift *= 2)
        c ^= c >> shift;
    return c;
}

/* Digits of the LSD radix sort: 2^11 counters fit in L1. */
#define DIGIT_BITS 11

/* Sorts a[0 .. n-1] stably by bits 32 .. 32 + bits - 1 (the rank), so rows
 * of equal rank keep their position order; tmp is n more.  Returns the array
 * that holds the result (a or tmp). */
static uint64_t *radix_sort_ranks(uint64_t *a, uint64_t *tmp, size_t n, unsigned bits)
{
    size_t count[(size_t)1 << DIGIT_BITS];
    for (unsigned lo = 32; lo < 32 + bits; lo += DIGIT_BITS) {
        const uint64_t mask = ((uint64_t)1 << DIGIT_BITS) - 1;
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[a[i] >> lo & mask]++;
        if (n == 0 || count[a[0] >> lo & mask] == n)
            continue; /* every row has this digit: the pass would change nothing */
        size_t sum = 0;
        for (size_t v = 0; v <= mask; v++) {
            const size_t c = count[v];
            count[v] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[a[i] >> lo & mask]++] = a[i];
        uint64_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* floor(b * n / nb) without overflow (b < nb < 2^32). */
static size_t place(uint64_t b, uint64_t n, uint64_t nb)
{
    return (size_t)(b * (n / nb) + b * (n % nb) / nb);
}

/* rank(row i) << 32 | i for n rows, sorted by (rank, position): in key or
 * in tmp, whichever is returned. */
static const uint64_t *sorted_ranks(struct sortlsh *s, const double *x, size_t n, uint64_t *key,
                                    uint64_t *tmp)
{
    const unsigned r = s->r;
    for (size_t start = 0; start < n; start += BATCH_ROWS) {
        size_t m = n - start < BATCH_ROWS ? n - start : BATCH_ROWS;
        s->host->gemm(m, r, s->d, x + start * s->d, s->w, s->y, 0);
        for (size_t i = 0; i < m; i++) {
            const double *y = s->y + i * r;
            uint32_t code = 0;
            for (unsigned t = 0; t < r; t++)
                code |= (uint32_t)(y[t] > 0) << t; /* strictly: 0 and NaN give bit 0 */
            key[start + i] = (uint64_t)gray_rank(code) << 32 | (uint64_t)(start + i);
        }
    }
    return radix_sort_ranks(key, tmp, n, r);
}

/* Sorted place p of n falls in block b when floor(b n/B) <= p < floor((b+1) n/B). */
static void equal_blocks(const uint64_t *key, size_t n, uint32_t nb, uint32_t *bucket)
{
    for (uint32_t b = 0; b < nb; b++)
        for (size_t p = place(b, n, nb); p < place((size_t)b + 1, n, nb); p++)
            bucket[key[p] & UINT32_MAX] = b;
}

static int assign(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err)
{
    struct sortlsh *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "sortlsh: rows have d = %zu, the round has %zu",
                    d, s->d);
    if (s->b > n_q || s->b > n_k)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "sortlsh cuts queries and keys into n_buckets equal blocks, so it needs "
                    "n_buckets <= rows; got n_buckets %u for %zu queries and %zu keys",
                    (unsigned)s->b, n_q, n_k);
    if (n_q > UINT32_MAX || n_k > UINT32_MAX)
        return fail(err, LSH_STRATEGY_EINVAL, "sortlsh: at most 2^32 - 1 rows, got %zu and %zu",
                    n_q, n_k);
    const int shared = k == q && n_k == n_q;
    const size_t most = n_q > n_k ? n_q : n_k; /* < 2^32: no overflow below */
    uint64_t *key = malloc(2 * most * sizeof *key); /* keys and the sort's other half */
    if (!key)
        return fail(err, LSH_STRATEGY_ENOMEM, "sortlsh: out of memory for %zu sort keys", most);
    equal_blocks(sorted_ranks(s, q, n_q, key, key + most), n_q, s->b, bq);
    if (shared)
        memcpy(bk, bq, n_q * sizeof *bq);
    else
        equal_blocks(sorted_ranks(s, k, n_k, key, key + most), n_k, s->b, bk);
    free(key);
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct sortlsh *s = state;
    return sink->array(sink, "projections", s->w, s->d, s->r);
}

static const struct lsh_strategy sortlsh = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "sortlsh",
    .summary = "sortLSH (HyperAttention): sort by the Gray rank of r SimHash bits, cut queries "
               "and keys into B equal blocks",
    .params = params,
    .state_size = sizeof(struct sortlsh),
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
    return &sortlsh;
}
