/* oracle.c - the budget-matched oracle of SPEC 13 (oracle.h): per row, one
 * partial sort of U_i's scores for the largest budget, then one walk down the
 * sorted prefix that reads off every budget's mass and output error. */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastexp.h"
#include "linalg.h"
#include "memsize.h"

/* A key of U_i and its score s_ij = scale q_i . k_j. */
struct key {
    double s;
    uint32_t j;
};

struct lsh_oracle_ws {
    size_t n, d_v;
    struct key *key;  /* n: U_i's keys, the best M first, in order */
    double *ex;       /* n: exps of the sorted prefix */
    double *num;      /* d_v: sum e^{s - smax} v_j over the prefix so far */
    uint8_t *stop;    /* n + 1: stop[m] when some budget is m (zero between rows) */
    double *at_mass;  /* n + 1: the mass at each stop */
    double *at_err2;  /* n + 1: ||O_i - O^O_i||^2 at each stop */
};

size_t lsh_oracle_ws_bytes(size_t n, size_t d_v)
{
    const size_t n1 = lsh_size_add(n, 1);
    size_t b = sizeof(struct lsh_oracle_ws);
    b = lsh_size_add(b, lsh_size_mul(n, sizeof(struct key)));
    b = lsh_size_add(b, lsh_size_mul(n, sizeof(double)));
    b = lsh_size_add(b, lsh_size_mul(d_v, sizeof(double)));
    b = lsh_size_add(b, n1);
    b = lsh_size_add(b, lsh_size_mul3(n1, 2, sizeof(double)));
    return b;
}

struct lsh_oracle_ws *lsh_oracle_ws_alloc(size_t n, size_t d_v)
{
    if (lsh_oracle_ws_bytes(n, d_v) == SIZE_MAX)
        return NULL;
    struct lsh_oracle_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->n = n;
    ws->d_v = d_v;
    ws->key = malloc((n ? n : 1) * sizeof *ws->key);
    ws->ex = malloc((n ? n : 1) * sizeof *ws->ex);
    ws->num = malloc((d_v ? d_v : 1) * sizeof *ws->num);
    ws->stop = calloc(n + 1, 1);
    ws->at_mass = malloc((n + 1) * sizeof *ws->at_mass);
    ws->at_err2 = malloc((n + 1) * sizeof *ws->at_err2);
    if (!ws->key || !ws->ex || !ws->num || !ws->stop || !ws->at_mass || !ws->at_err2) {
        lsh_oracle_ws_free(ws);
        return NULL;
    }
    return ws;
}

void lsh_oracle_ws_free(struct lsh_oracle_ws *ws)
{
    if (!ws)
        return;
    free(ws->key);
    free(ws->ex);
    free(ws->num);
    free(ws->stop);
    free(ws->at_mass);
    free(ws->at_err2);
    free(ws);
}

/* ---- the order (score descending, ties to the smaller j) ---------------- */

/* Is a before b?  A strict total order (the j differ), written without
 * branches: the partition below is branch-free on random scores. */
static inline int before(struct key a, struct key b)
{
    return (a.s > b.s) | ((a.s == b.s) & (a.j < b.j));
}

static inline void swap(struct key *x, size_t a, size_t b)
{
    struct key t = x[a];
    x[a] = x[b];
    x[b] = t;
}

static void insertion_sort(struct key *x, size_t lo, size_t hi)
{
    for (size_t t = lo + 1; t < hi; t++) {
        struct key k = x[t];
        size_t u = t;
        for (; u > lo && before(k, x[u - 1]); u--)
            x[u] = x[u - 1];
        x[u] = k;
    }
}

/* Heap of the worst first, for heapsort (the fallback when quicksort's
 * pivots keep going bad: O(n log n) whatever the input). */
static void sift_down(struct key *x, size_t root, size_t len)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= len)
            return;
        if (c + 1 < len && before(x[c + 1], x[c]) == 0)
            c++; /* the worse child */
        if (before(x[root], x[c]) == 0)
            return;
        swap(x, root, c);
        root = c;
    }
}

static void heap_sort(struct key *x, size_t len)
{
    for (size_t t = len / 2; t-- > 0;)
        sift_down(x, t, len);
    for (size_t end = len; end-- > 1;) {
        swap(x, 0, end); /* the worst goes last */
        sift_down(x, 0, end);
    }
}

/* Lomuto partition of x[lo, hi) around the median of three; returns the
 * pivot's final position p: x[lo, p) before it, x(p, hi) after it.  The
 * swap is unconditional so that the loop does not branch on the data. */
static size_t partition(struct key *x, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (before(x[mid], x[lo]))
        swap(x, mid, lo);
    if (before(x[last], x[lo]))
        swap(x, last, lo);
    if (before(x[mid], x[last]))
        swap(x, mid, last); /* x[last] is now the median */
    const struct key piv = x[last];
    size_t p = lo;
    for (size_t t = lo; t < last; t++) {
        struct key k = x[t];
        int lt = before(k, piv);
        x[t] = x[p];
        x[p] = k;
        p += (size_t)lt;
    }
    swap(x, p, last);
    return p;
}

/* Bad pivots partial_sort takes before it turns to heapsort. */
static unsigned depth_limit(size_t len)
{
    unsigned d = 0;
    for (; len > 1; len >>= 1)
        d++;
    return 2 * d + 4;
}

/* Sort x[lo, hi) far enough that x[lo, want) holds the best keys of the
 * range in order: quicksort that drops the parts past `want`, so
 * O(len + want log want) expected; heapsort below `depth` bad pivots. */
static void partial_sort(struct key *x, size_t lo, size_t hi, size_t want, unsigned depth)
{
    while (lo < want && hi - lo > 1) {
        if (hi - lo <= 16) {
            insertion_sort(x, lo, hi);
            return;
        }
        if (depth == 0) {
            heap_sort(x + lo, hi - lo);
            return;
        }
        depth--;
        size_t p = partition(x, lo, hi);
        partial_sort(x, lo, p, want, depth);
        lo = p + 1;
    }
}

/* The best `want` of x[0, len) first, in order.  When they are a small share
 * of a long row, one first cut at a pivot taken from an evenly spaced sample
 * (a little past the share's rank in it, so that almost always at least
 * `want` keys come before it) leaves about twice `want` keys to sort; the
 * median-of-three passes alone would touch about 2 len.  Any pivot is
 * correct: a cut that leaves fewer than `want` before it just goes on. */
#define SAMPLE 64
static void select_best(struct key *x, size_t len, size_t want)
{
    if (len > 8 * SAMPLE && want <= len / 4) {
        struct key smp[SAMPLE];
        for (size_t t = 0; t < SAMPLE; t++)
            smp[t] = x[t * (len / SAMPLE)];
        insertion_sort(smp, 0, SAMPLE);
        size_t rank = (want * SAMPLE + len - 1) / len + 4;
        const struct key piv = smp[rank < SAMPLE ? rank : SAMPLE - 1];
        size_t p = 0;
        for (size_t t = 0; t < len; t++) {
            struct key k = x[t];
            int lt = before(k, piv);
            x[t] = x[p];
            x[p] = k;
            p += (size_t)lt;
        }
        /* x[0, p) before the pivot, x[p, len) the rest (the pivot among them) */
        partial_sort(x, 0, p, want, depth_limit(p));
        if (p < want)
            partial_sort(x, p, len, want, depth_limit(len - p));
        return;
    }
    partial_sort(x, 0, len, want, depth_limit(len));
}

/* ---- scores ----------------------------------------------------------------- */

/* key[t] = (scale * q_i . k_j, j) for j in [j0, j1), t from t0: lsh_attn_raw's
 * bits (lsh_chain_dots), which are the score cache's too. */
static void score_keys(const struct lsh_attn *a, size_t i, size_t j0, size_t j1,
                       struct key *key, size_t t0)
{
    double raw[256];
    for (size_t j = j0; j < j1; j += 256) {
        const size_t k = j1 - j < 256 ? j1 - j : 256;
        lsh_chain_dots(a->d, a->q + i * a->d, a->k + j * a->d, NULL, k, raw);
        for (size_t u = 0; u < k; u++)
            key[t0 + (j - j0) + u] = (struct key){a->scale * raw[u], (uint32_t)(j + u)};
    }
}

/* ---- the walk ------------------------------------------------------------- */

/* num += sum_t w[t] v_{key[t].j} for t in [t0, t1), each element added in
 * t order (four rows of V per pass over num, but the same additions in the
 * same order as one at a time, so a budget's bits do not depend on which
 * other budgets the row has). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void accumulate(size_t dv, const double *v, const struct key *key, const double *w,
                       size_t t0, size_t t1, double *restrict num)
{
    size_t t = t0;
    for (; t + 4 <= t1; t += 4) {
        const double *restrict v0 = v + (size_t)key[t].j * dv;
        const double *restrict v1 = v + (size_t)key[t + 1].j * dv;
        const double *restrict v2 = v + (size_t)key[t + 2].j * dv;
        const double *restrict v3 = v + (size_t)key[t + 3].j * dv;
        const double w0 = w[t], w1 = w[t + 1], w2 = w[t + 2], w3 = w[t + 3];
        for (size_t e = 0; e < dv; e++)
            num[e] = (((num[e] + w0 * v0[e]) + w1 * v1[e]) + w2 * v2[e]) + w3 * v3[e];
    }
    for (; t < t1; t++) {
        const double *restrict v0 = v + (size_t)key[t].j * dv;
        const double w0 = w[t];
        for (size_t e = 0; e < dv; e++)
            num[e] += w0 * v0[e];
    }
}

struct lsh_oracle_table {
    size_t r0, r1;
    size_t *off;            /* r1 - r0 + 1: row r's budgets at off[r - r0] + b - 1 */
    double *mass, *err2;
    unsigned char *built;   /* r1 - r0 */
};

size_t lsh_oracle_table_bytes(const struct lsh_reference *ref)
{
    const size_t rows = ref->r1 - ref->r0;
    size_t keys = 0;
    for (size_t r = ref->r0; r < ref->r1; r++) /* |U_i|, {i} for an empty one */
        keys = lsh_size_add(keys, ref->u_count[r]);
    size_t b = sizeof(struct lsh_oracle_table);
    b = lsh_size_add(b, lsh_size_mul3(keys, 2, sizeof(double)));
    b = lsh_size_add(b, lsh_size_mul(lsh_size_add(rows, 1), sizeof(size_t) + 1));
    return b;
}

struct lsh_oracle_table *lsh_oracle_table_alloc(const struct lsh_reference *ref)
{
    if (lsh_oracle_table_bytes(ref) == SIZE_MAX)
        return NULL;
    const size_t rows = ref->r1 - ref->r0;
    struct lsh_oracle_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->r0 = ref->r0;
    t->r1 = ref->r1;
    t->off = malloc((rows + 1) * sizeof *t->off);
    t->built = calloc(rows + 1, 1);
    if (!t->off || !t->built) {
        lsh_oracle_table_free(t);
        return NULL;
    }
    t->off[0] = 0;
    for (size_t r = ref->r0; r < ref->r1; r++)
        t->off[r - ref->r0 + 1] = t->off[r - ref->r0] + ref->u_count[r];
    t->mass = malloc((t->off[rows] + 1) * sizeof *t->mass);
    t->err2 = malloc((t->off[rows] + 1) * sizeof *t->err2);
    if (!t->mass || !t->err2) {
        lsh_oracle_table_free(t);
        return NULL;
    }
    return t;
}

void lsh_oracle_table_free(struct lsh_oracle_table *t)
{
    if (!t)
        return;
    free(t->off);
    free(t->mass);
    free(t->err2);
    free(t->built);
    free(t);
}

int lsh_oracle_table_full(const struct lsh_oracle_table *t)
{
    for (size_t r = t->r0; r < t->r1; r++)
        if (!t->built[r - t->r0])
            return 0;
    return 1;
}

void lsh_oracle_row(const struct lsh_reference *ref, size_t r, const uint32_t *budget,
                    size_t n_budget, struct lsh_oracle_ws *ws, double *mass, double *err2)
{
    lsh_oracle_row_table(ref, r, budget, n_budget, ws, NULL, mass, err2);
}

void lsh_oracle_row_table(const struct lsh_reference *ref, size_t r, const uint32_t *budget,
                          size_t n_budget, struct lsh_oracle_ws *ws,
                          struct lsh_oracle_table *tab, double *mass, double *err2)
{
    if (n_budget == 0)
        return;
    if (tab && tab->built[r - tab->r0]) {
        const size_t o = tab->off[r - tab->r0], u = tab->off[r - tab->r0 + 1] - o;
        for (size_t t = 0; t < n_budget; t++) {
            const size_t b = budget[t] < 1 ? 1 : budget[t] > u ? u : budget[t];
            mass[t] = tab->mass[o + b - 1];
            err2[t] = tab->err2[o + b - 1];
        }
        return;
    }
    const struct lsh_attn *a = ref->attn;
    const size_t n = a->n, dv = a->d_v, i = ref->rows ? ref->rows[r] : r;
    const double lse = ref->lse[r];
    const double *o = ref->out + r * dv;
    const double *cache = ref->raw ? ref->raw + (r - ref->r0) * n : NULL; /* the part's rows */
    struct key *key = ws->key;

    /* U_i with the bits candidates get: the cache, else lsh_attn_raw's. */
    size_t u = 0;
    if (lsh_attn_u_fallback(a, i)) {
        key[u++] = (struct key){a->scale * (cache ? cache[i] : lsh_attn_raw(a, i, i)),
                                (uint32_t)i};
    } else {
        const size_t hi = a->causal ? i + 1 : n;
        const int skip = a->exclude_self && i < hi;
        if (cache) {
            for (size_t j = 0; j < hi; j++)
                if (!(skip && j == i))
                    key[u++] = (struct key){a->scale * cache[j], (uint32_t)j};
        } else if (skip) {
            score_keys(a, i, 0, i, key, 0);
            score_keys(a, i, i + 1, hi, key, i);
            u = hi - 1;
        } else {
            score_keys(a, i, 0, hi, key, 0);
            u = hi;
        }
    }

    if (tab && tab->off[r - tab->r0 + 1] - tab->off[r - tab->r0] != u)
        tab = NULL; /* not the table of this reference: compute, do not store */
    /* Budgets clamped to [1, u]; mark where the walk stops (a table's row:
     * at every budget). */
    size_t big = 1;
    for (size_t t = 0; t < n_budget; t++) {
        size_t b = budget[t] < 1 ? 1 : budget[t] > u ? u : budget[t];
        ws->stop[b] = 1;
        big = b > big ? b : big;
    }
    if (tab) {
        memset(ws->stop + 1, 1, u);
        big = u;
    }

    select_best(key, u, big);

    /* Mass: the A_ij as candidates get them, exp(s_ij - lse_i). */
    double *ex = ws->ex;
    for (size_t t = 0; t < big; t++)
        ex[t] = key[t].s;
    lsh_exp_affine(ex, big, 1.0, lse);
    double sum = 0.0;
    for (size_t t = 0; t < big; t++) {
        sum += ex[t];
        if (ws->stop[t + 1])
            ws->at_mass[t + 1] = sum;
    }

    /* Output: the softmax over the prefix with the max shift (key[0] has
     * the row's largest score), so its terms are <= 1 and the first is 1. */
    for (size_t t = 0; t < big; t++)
        ex[t] = key[t].s;
    lsh_exp_affine(ex, big, 1.0, key[0].s);
    double *num = ws->num;
    memset(num, 0, dv * sizeof *num);
    double den = 0.0;
    size_t p = 0;
    while (p < big) {
        size_t b = p + 1;
        while (!ws->stop[b])
            b++;
        accumulate(dv, a->v, key, ex, p, b, num);
        for (size_t t = p; t < b; t++)
            den += ex[t];
        double e2 = 0.0;
        for (size_t e = 0; e < dv; e++) {
            double diff = o[e] - num[e] / den;
            e2 += diff * diff;
        }
        ws->at_err2[b] = e2;
        p = b;
    }

    for (size_t t = 0; t < n_budget; t++) {
        size_t b = budget[t] < 1 ? 1 : budget[t] > u ? u : budget[t];
        mass[t] = ws->at_mass[b];
        err2[t] = ws->at_err2[b];
    }
    for (size_t t = 0; t < n_budget; t++) {
        size_t b = budget[t] < 1 ? 1 : budget[t] > u ? u : budget[t];
        ws->stop[b] = 0;
    }
    if (tab) {
        const size_t o = tab->off[r - tab->r0];
        memcpy(tab->mass + o, ws->at_mass + 1, u * sizeof *tab->mass);
        memcpy(tab->err2 + o, ws->at_err2 + 1, u * sizeof *tab->err2);
        memset(ws->stop + 1, 0, u);
        tab->built[r - tab->r0] = 1;
    }
}
