/* eval.c - candidate sets S_i grown round by round, and the metrics of SPEC 5
 * accumulated from them and from the reference's per-row summaries. */
#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lshlab/fmadots.h>

#include "fastexp.h"
#include "linalg.h"
#include "oracle.h"
#include "parallel.h"

/* Rows per block: the unit of work handed to a thread and of the ordered
 * reduction that makes the result independent of the thread count.  Blocks
 * are cut within slices of evaluated rows (lsh_slice_rows(), a multiple of
 * 256): block b holds the rows [64 b, 64 b + 64) of the slice order, so a
 * pass's partials are the blocks of its slices, slice after slice, and a
 * part [r0, r1) of whole slices computes exactly blocks r0 / 64 onwards. */
#define ROWS_PER_BLOCK 64

/* Every metric is a ratio of sums over rows, sum_i y_i / sum_i x_i (x_i = 1
 * for means), possibly transformed (sqrt for the Frobenius ratios).  Per
 * (prefix, combine) and metric the accumulators hold sum y, sum x and, for
 * the standard errors of a sampled reference, sum y^2, sum xy, sum x^2. */
enum { M_OUT, M_ATTN, M_KL, M_EMPTY, M_MASS, M_GRAM, M_DENSITY, M_MEANCAND, M_TOPK };
enum { S_Y, S_X, S_YY, S_XY, S_XX, S_COUNT };

static inline void add_ratio(double *acc, size_t metric, double y, double x)
{
    double *f = acc + metric * S_COUNT;
    f[S_Y] += y;
    f[S_X] += x;
    f[S_YY] += y * y;
    f[S_XY] += x * y;
    f[S_XX] += x * x;
}

/* sum of (x_e - y_e)^2 (y NULL: of x_e^2) in eight lanes, coordinate e in
 * lane e mod 8, added as ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)): one chain
 * of n dependent adds a row and prefix was 2% of a sweep. */
static double sq_dist(const double *x, const double *y, size_t n)
{
    double l[8] = {0};
    size_t e = 0;
    if (y)
        for (; e + 8 <= n; e += 8)
            for (size_t k = 0; k < 8; k++)
                l[k] += (x[e + k] - y[e + k]) * (x[e + k] - y[e + k]);
    else
        for (; e + 8 <= n; e += 8)
            for (size_t k = 0; k < 8; k++)
                l[k] += x[e + k] * x[e + k];
    for (size_t k = 0; e + k < n; k++) {
        const double t = y ? x[e + k] - y[e + k] : x[e + k];
        l[k] += t * t;
    }
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* One round's index for the current mode. */
struct round_index {
    /* bucket mode: keys sorted by (bucket, position); bucket b holds
     * kperm[koff[b] .. koff[b+1]). */
    uint32_t *kperm, *koff;
    /* chunked mode: items sorted by (bucket, position, kind); an item is a
     * key position (shared keys) or 2*position + kind (separate keys, kind 1
     * = key); qpos[i] = where query i stands in that order. */
    uint32_t *items, *qpos;
    size_t n_items, n_chunks;
    /* chunked mode: the chunk of query i's item and of key j's item (the
     * same array when keys are shared) */
    uint32_t *qchunk, *kchunk;
};

/* What the row path knows of key j for the current row: one record, so
 * that a key's first look at it is one cache line, not one per array. */
struct key_state {
    uint32_t mark; /* == the workspace's stamp: j is in the row's union (the rest valid) */
    uint32_t cnt;  /* rounds whose T_i^h hold j (N_ij) */
    uint32_t pos;  /* its index t in cand[] */
    uint32_t rep;  /* its repeats since the last prefix (combine rounds) */
};

struct workspace {
    struct key_state *keys; /* by key j, for the current row                   */
    uint32_t *cand;    /* the union, in order of arrival                        */
    uint32_t *occ;     /* indices t repeated since the last prefix (combine rounds) */
    double *s;         /* s_ij of cand[t]                                       */
    double *av;        /* A_ij = exp(s_ij - lse_i) of cand[t]                   */
    double *num;       /* sum_{j in S} A_ij v_j (d_v)                           */
    double *num_rep;   /* sum over repeats of A_ij v_j (d_v): rounds adds it    */
    double *ohat;      /* d_v scratch                                           */
    uint32_t stamp;
    double *t_add, *t_metric; /* per prefix, seconds spent by this thread */
    /* candidate rules and importance (SPEC 13-14) */
    double *pj;        /* p_ij of cand[t] (combine importance); -1: a sink or
                          local key, u = 1                                      */
    double *lq;        /* log(1 - p_ij) of cand[t] (importance with t = 1)      */
    double *xw, *xe;   /* n scratch: importance's s - log u and A-hat of cand[t] */
    double *omass, *oerr2; /* n_prefix: the oracle's values of one row         */
    struct lsh_oracle_ws *ows; /* the oracle's workspace                        */
    /* the first failure this thread met (importance): its block and message */
    size_t err_block;
    int err_rc;
    char err_msg[LSH_ERROR_MSG_MAX];
};

struct ctx {
    const struct lsh_reference *ref;
    size_t r0, r1;     /* the part: evaluated rows [r0, r1), whole slices */
    const struct lsh_attn *a;
    const struct lsh_rounds *rounds;
    const struct lsh_mode_opts *mode;
    const uint32_t *prefixes;
    size_t n_prefix;
    const enum lsh_combine *combines;
    size_t n_combine;
    size_t n_fields;
    int need_rounds;   /* some combine is rounds: keep the repeats' sums */
    int need_union;    /* some combine is union (the tile path's num of S_i) */
    double *log_count; /* [0, h_max]: log(k), the same bits as log((double)k) */
    double *dlog;      /* [0, h_max]: k log k - (k - 1) log(k - 1), [0] = [1] = 0 */
    uint32_t h_max;    /* (counts with forced keys of the rules can exceed it) */
    struct round_index *idx;
    size_t *order;     /* the part's rows by round-0 bucket within each slice
                          (position k: the part's k-th): neighbours share keys */
    struct workspace *ws;
    double *partials;  /* the part's blocks x n_prefix x n_combine x n_fields */
    struct lsh_row_dump *dump;
    struct tile_state *tile; /* the tile path's state, or NULL */
    /* candidate rules (SPEC 13): rules is set unless t = 1, s = w = 0 */
    int rules;
    uint32_t min_t;
    /* combine importance (SPEC 14) */
    int importance;
    const struct lsh_host_law *law;
    double *knorm;     /* n: ||k_j|| of the effective keys */
    double *lchoose;   /* n_prefix: log C(H_p, t) */
    /* the oracle (SPEC 13): budgets[(r - r0) n_prefix + p] = |S_i| at prefix p */
    int oracle;
    uint32_t *budgets;
    struct lsh_oracle_table *otab; /* the unit's oracle table, or NULL */
    size_t f_oracle;   /* first oracle field (metric index) */
};

/* ---- per-round indexes ---------------------------------------------------- */

/* Stable counting sort of ids [0, count) by key[id] in [0, B): out[] gets the
 * ids, off[] (B + 1 entries) the bucket starts. */
static void counting_sort(const uint32_t *key, size_t count, uint32_t B, uint32_t *out,
                          uint32_t *off)
{
    memset(off, 0, (B + 1) * sizeof *off);
    for (size_t t = 0; t < count; t++)
        off[key[t] + 1]++;
    for (uint32_t b = 0; b < B; b++)
        off[b + 1] += off[b];
    for (size_t t = 0; t < count; t++)
        out[off[key[t]]++] = (uint32_t)t;
    /* off[b] now holds the end of b; shift back to starts. */
    for (uint32_t b = B; b > 0; b--)
        off[b] = off[b - 1];
    off[0] = 0;
}

static int index_round(struct ctx *c, size_t h)
{
    const struct lsh_rounds *R = c->rounds;
    const size_t n = R->n;
    const uint32_t B = R->n_buckets;
    struct round_index *x = &c->idx[h];
    const uint32_t *bq = R->bq + h * n, *bk = R->bk + h * n;
    const int separate = R->bk != R->bq;

    if (c->mode->mode == LSH_MODE_BUCKET) {
        x->kperm = malloc(n * sizeof *x->kperm);
        x->koff = malloc((B + 1) * sizeof *x->koff);
        if (!x->kperm || !x->koff)
            return LSH_ENOMEM;
        counting_sort(bk, n, B, x->kperm, x->koff);
        return 0;
    }
    /* chunked: with separate keys the 2n items q_0, k_0, q_1, k_1, ... are
     * sorted stably by bucket, which is the (bucket, position, kind) order. */
    size_t L = separate ? 2 * n : n;
    uint32_t *key = NULL;
    const uint32_t *sort_key = bq;
    if (separate) {
        key = malloc(L * sizeof *key);
        if (!key)
            return LSH_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            key[2 * i] = bq[i];
            key[2 * i + 1] = bk[i];
        }
        sort_key = key;
    }
    x->items = malloc(L * sizeof *x->items);
    x->qpos = malloc(n * sizeof *x->qpos);
    uint32_t *off = malloc((B + 1) * sizeof *off);
    if (!x->items || !x->qpos || !off) {
        free(key);
        free(off);
        return LSH_ENOMEM;
    }
    counting_sort(sort_key, L, B, x->items, off);
    const uint32_t cs = c->mode->chunk_size;
    x->qchunk = malloc(n * sizeof *x->qchunk);
    x->kchunk = separate ? malloc(n * sizeof *x->kchunk) : x->qchunk;
    if (!x->qchunk || !x->kchunk) {
        free(key);
        free(off);
        return LSH_ENOMEM;
    }
    for (size_t t = 0; t < L; t++) {
        uint32_t it = x->items[t];
        if (!separate) {
            x->qpos[it] = (uint32_t)t;
            x->qchunk[it] = (uint32_t)(t / cs);
        } else if ((it & 1u) == 0) {
            x->qpos[it >> 1] = (uint32_t)t;
            x->qchunk[it >> 1] = (uint32_t)(t / cs);
        } else {
            x->kchunk[it >> 1] = (uint32_t)(t / cs);
        }
    }
    x->n_items = L;
    x->n_chunks = (L + cs - 1) / cs;
    free(key);
    free(off);
    return 0;
}

static int index_task(void *ctx, size_t h, unsigned thread)
{
    (void)thread;
    return index_round(ctx, h);
}

static void free_index(struct round_index *x)
{
    free(x->kperm);
    free(x->koff);
    free(x->items);
    free(x->qpos);
    if (x->kchunk != x->qchunk)
        free(x->kchunk);
    free(x->qchunk);
}

/* ---- one row -------------------------------------------------------------- */

/* A row's mass below this is recomputed from the scores with a max shift:
 * sum_S A^2 (1 - 1/mass)^2 needs the squares of the largest A_ij on S, about
 * mass^2, far from underflow (a mass of 1e-200 once gave attn_rel_err 0.2%
 * off through A^2 = 0). */
#define TINY_MASS 1e-100

struct row {
    size_t r, i;      /* evaluated-row index and row of Q */
    size_t hi;        /* U_i is [0, hi) ...                              */
    int skip_i;       /* ... minus i when set                            */
    int only_i;       /* ... or just {i} (the U_i = {i} fallback)        */
    size_t m;         /* |union so far| */
    size_t n_occ;     /* entries of occ[] (keys repeated since the last prefix) */
    /* running sums over the union: A, A^2, G^2; repeats' A (combine rounds) */
    double mass, sa2, gram, rep_mass;
    size_t block;     /* the row block (for error reports) */
    double qnorm;     /* ||q_i|| (combine importance) */
    /* combine rounds from the tile path (rnum set): sums over every collision
     * up to the prefix, N_ij counting them: rnum = sum N A v (d_v), rden =
     * sum N A, rp1 = sum N A^2, rp2 = sum N^2 A^2, rk = sum A N log N; rsum =
     * sum N, rmax = max N (over S_i) */
    const double *rnum;
    double rden, rp1, rp2, rk;
    uint64_t rsum;
    uint32_t rmax;
};

static inline void consider(struct workspace *w, struct row *row, uint32_t j)
{
    if (row->only_i ? j != row->i : (j >= row->hi || (row->skip_i && j == row->i)))
        return;
    struct key_state *ks = &w->keys[j];
    if (ks->mark != w->stamp) {
        *ks = (struct key_state){w->stamp, 1, (uint32_t)row->m, 0};
        w->cand[row->m++] = j;
    } else {
        ks->cnt++; /* j is in another round's T_i^h too */
        if (ks->rep++ == 0)
            w->occ[row->n_occ++] = ks->pos;
    }
}

/* With a candidate rule (SPEC 13): key j joins S_i when its count of rounds
 * reaches t.  Sink and local keys enter with count t before round 0, so a
 * later collision never adds them again.  cnt[j] is valid when marked. */
static inline void consider_rule(struct workspace *w, struct row *row, uint32_t j, uint32_t t)
{
    if (row->only_i ? j != row->i : (j >= row->hi || (row->skip_i && j == row->i)))
        return;
    struct key_state *ks = &w->keys[j];
    if (ks->mark != w->stamp)
        *ks = (struct key_state){w->stamp, 0, 0, 0};
    if (++ks->cnt == t) {
        ks->pos = (uint32_t)row->m;
        w->cand[row->m++] = j;
    }
}

/* Chunks in a query's window (chunked mode): its own and look_back before
 * it, wrapping, each once, so at most all nc of them. */
static size_t window_span(const struct lsh_mode_opts *mode, size_t nc)
{
    const size_t span = (size_t)mode->look_back + 1;
    return span < nc ? span : nc;
}

/* Enumerate S_i^h (intersected with U_i) into the row's union (rule: by
 * consider_rule with t = c->min_t). */
static inline __attribute__((always_inline)) void
collect_round(const struct ctx *c, struct workspace *w, struct row *row, size_t h, int rule)
{
    const uint32_t tmin = c->min_t;
    const struct lsh_rounds *R = c->rounds;
    const size_t n = R->n;
    const struct round_index *x = &c->idx[h];
    const uint32_t *bq = R->bq + h * n, *bk = R->bk + h * n;
    const uint32_t b = bq[row->i];

    if (c->mode->mode == LSH_MODE_BUCKET) {
        for (uint32_t t = x->koff[b]; t < x->koff[b + 1]; t++) {
            uint32_t j = x->kperm[t];
            if (j >= row->hi && !row->only_i)
                break; /* positions ascend within a bucket */
            if (rule)
                consider_rule(w, row, j, tmin);
            else
                consider(w, row, j);
        }
        return;
    }
    const int separate = R->bk != R->bq;
    const int same_bucket = c->mode->window == LSH_WINDOW_SAME_BUCKET;
    const size_t cs = c->mode->chunk_size, nc = x->n_chunks;
    const size_t own = x->qpos[row->i] / cs;
    /* Own chunk and look_back chunks before it, wrapping; each chunk once. */
    const size_t span = window_span(c->mode, nc);
    for (size_t t = 0; t < span; t++) {
        size_t ch = (own + nc - t % nc) % nc;
        size_t lo = ch * cs, up = lo + cs < x->n_items ? lo + cs : x->n_items;
        for (size_t u = lo; u < up; u++) {
            uint32_t it = x->items[u];
            if (separate) {
                if ((it & 1u) == 0)
                    continue; /* a query item */
                it >>= 1;
            }
            if (same_bucket && bk[it] != b)
                continue;
            if (rule)
                consider_rule(w, row, it, tmin);
            else
                consider(w, row, it);
        }
    }
}

/* num += a * v_j, the inner loop of everything (d_v multiply-adds). */
static inline void axpy(size_t dv, double a, const double *restrict v, double *restrict num)
{
    for (size_t e = 0; e < dv; e++)
        num[e] += a * v[e];
}

/* num += sum_t av[t] v_{cand[t]} over t in [t0, t1): four rows of V per pass
 * over num, so num is loaded and stored a quarter as often.  Cloned for wider
 * vectors; every clone does the same element-wise operations in the same
 * order (no FMA contraction under -std=c11), so the bits do not change. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void gather_axpy(size_t dv, const double *v, const uint32_t *cand, const double *av,
                        size_t t0, size_t t1, double *restrict num)
{
    size_t t = t0;
    for (; t + 4 <= t1; t += 4) {
        /* the rows of V four candidates ahead: gathers are latency-bound */
        for (size_t u = t + 4; u < t + 8 && u < t1; u++)
            for (size_t e = 0; e < dv; e += 8)
                __builtin_prefetch(v + (size_t)cand[u] * dv + e);
        const double *restrict v0 = v + (size_t)cand[t] * dv;
        const double *restrict v1 = v + (size_t)cand[t + 1] * dv;
        const double *restrict v2 = v + (size_t)cand[t + 2] * dv;
        const double *restrict v3 = v + (size_t)cand[t + 3] * dv;
        const double a0 = av[t], a1 = av[t + 1], a2 = av[t + 2], a3 = av[t + 3];
        for (size_t e = 0; e < dv; e++)
            num[e] += (a0 * v0[e] + a1 * v1[e]) + (a2 * v2[e] + a3 * v3[e]);
    }
    for (; t < t1; t++)
        axpy(dv, av[t], v + (size_t)cand[t] * dv, num);
}

/* num += (rep_j av[t]) v_j, j = cand[t], for t = occ[0], occ[1], ... in that
 * order: the same additions, element by element, as one axpy per key, four
 * keys per pass over num, with the rows of V of the next four fetched ahead
 * (the repeats of combine: rounds are 2-3x the distinct pairs, and this
 * gather was the row path's largest cost).  rep_j counts a key's repeats
 * over the rounds since the last prefix: one row of V for all of them. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void repeat_axpy(size_t dv, const double *v, const uint32_t *cand, const double *av,
                        const struct key_state *keys, const uint32_t *occ, size_t n_occ,
                        double *restrict num)
{
    size_t k = 0;
    for (; k + 4 <= n_occ; k += 4) {
        for (size_t u = k + 4; u < k + 8 && u < n_occ; u++)
            for (size_t e = 0; e < dv; e += 8)
                __builtin_prefetch(v + (size_t)cand[occ[u]] * dv + e);
        const double *restrict v0 = v + (size_t)cand[occ[k]] * dv;
        const double *restrict v1 = v + (size_t)cand[occ[k + 1]] * dv;
        const double *restrict v2 = v + (size_t)cand[occ[k + 2]] * dv;
        const double *restrict v3 = v + (size_t)cand[occ[k + 3]] * dv;
        const double a0 = keys[cand[occ[k]]].rep * av[occ[k]],
                     a1 = keys[cand[occ[k + 1]]].rep * av[occ[k + 1]],
                     a2 = keys[cand[occ[k + 2]]].rep * av[occ[k + 2]],
                     a3 = keys[cand[occ[k + 3]]].rep * av[occ[k + 3]];
        for (size_t e = 0; e < dv; e++) {
            double x = num[e];
            x += a0 * v0[e];
            x += a1 * v1[e];
            x += a2 * v2[e];
            x += a3 * v3[e];
            num[e] = x;
        }
    }
    for (; k < n_occ; k++)
        axpy(dv, keys[cand[occ[k]]].rep * av[occ[k]], v + (size_t)cand[occ[k]] * dv, num);
}

/* The pair (i, j) of a failure, in w's message (the first one a thread
 * meets: the row blocks run in order on a thread). */
#define ROW_FAIL(w, row, rc, ...)                                                            \
    do {                                                                                     \
        if (!(w)->err_rc) {                                                                  \
            (w)->err_rc = (rc);                                                              \
            (w)->err_block = (row)->block;                                                   \
            snprintf((w)->err_msg, sizeof (w)->err_msg, __VA_ARGS__);                        \
        }                                                                                    \
        return (rc);                                                                         \
    } while (0)

/* out[t] = row[cand[t]]: a row's cached scores of its new keys. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void gather_scores(size_t k, const double *restrict row, const uint32_t *restrict cand,
                          double *restrict out)
{
    for (size_t t = 0; t < k; t++)
        out[t] = row[cand[t]];
}

/* out[0] = sum of (x_t g_{cand[t]})^2 over t with cand[t] != i (g: NULL for
 * 1, cand: NULL for every t), out[1] = sum of x_t; in eight lanes added in a
 * fixed order, the same bits from every clone.  A single running sum was a
 * chain of dependent additions per candidate. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void lane_sums(size_t k, const double *restrict x, const double *restrict g,
                      const uint32_t *restrict cand, uint32_t i, double *out)
{
    double l2[8] = {0}, l1[8] = {0};
    size_t t = 0;
    for (; t + 8 <= k; t += 8)
        for (size_t e = 0; e < 8; e++) {
            const double y = g ? x[t + e] * g[cand[t + e]] : x[t + e];
            l2[e] += cand && cand[t + e] == i ? 0.0 : y * y; /* + 0: the same bits */
            l1[e] += x[t + e];
        }
    for (size_t e = 0; t + e < k; e++) {
        const double y = g ? x[t + e] * g[cand[t + e]] : x[t + e];
        if (!(cand && cand[t + e] == i))
            l2[e] += y * y;
        l1[e] += x[t + e];
    }
    out[0] = ((l2[0] + l2[1]) + (l2[2] + l2[3])) + ((l2[4] + l2[5]) + (l2[6] + l2[7]));
    out[1] = ((l1[0] + l1[1]) + (l1[2] + l1[3])) + ((l1[4] + l1[5]) + (l1[6] + l1[7]));
}

/* The keys cand[m0 .. m) just joined: their score and A_ij once, and every
 * running sum grows by them (so each prefix costs only its new pairs, SPEC
 * 7's nesting made incremental).  With importance, p_ij of each, from the
 * law (one call per joined pair), or -1 for the sink and local keys
 * (forced). */
static int score_new(const struct ctx *c, struct workspace *w, struct row *row, size_t m0,
                     int forced)
{
    const struct lsh_attn *a = c->a;
    const struct lsh_reference *ref = c->ref;
    const size_t dv = a->d_v, i = row->i, k = row->m - m0;
    const double lse = ref->lse[row->r];
    const double *cache = ref->raw ? ref->raw + (row->r - ref->r0) * a->n : NULL;
    const uint32_t *cand = w->cand + m0;
    double *raw = w->s + m0;
    if (cache)
        gather_scores(k, cache, cand, raw);
    else /* lsh_attn_raw's bits, the cache's */
        lsh_chain_dots(a->d, a->q + i * a->d, a->k, cand, k, raw);
    double sums[2];
    lane_sums(k, raw, a->gnorm, cand, (uint32_t)i, sums);
    row->gram += sums[0];
    for (size_t t = 0; c->importance && t < k; t++) {
        if (forced) {
            w->pj[m0 + t] = -1.0;
            continue;
        }
        const uint32_t j = cand[t];
        const double kn = c->knorm[j];
        const double cs = row->qnorm > 0.0 && kn > 0.0 ? raw[t] / row->qnorm / kn : 0.0;
        double p;
        if (lsh_host_law_eval(c->law, cs, &p))
            ROW_FAIL(w, row, LSH_EPLUGIN,
                     "eval: combine importance: strategy %s's collision_prob at cos %.17g "
                     "(query %zu, key %u) is %g; allowed: a value in [0, 1]",
                     c->law->name ? c->law->name : "?", cs, i, j, p);
        w->pj[m0 + t] = p;
        w->lq[m0 + t] = log1p(-p);
    }
    for (size_t t = 0; t < k; t++)
        raw[t] *= a->scale; /* now s_ij */
    double *av = w->av + m0;
    memcpy(av, raw, k * sizeof *av);
    lsh_exp_affine(av, k, 1.0, lse);
    lane_sums(k, av, NULL, NULL, UINT32_MAX, sums);
    row->mass += sums[1];
    row->sa2 += sums[0];
    gather_axpy(dv, a->v, w->cand, w->av, m0, row->m, w->num);
    return 0;
}

/* Add round h to the row. */
static int add_round(const struct ctx *c, struct workspace *w, struct row *row, size_t h)
{
    const size_t m0 = row->m;
    if (c->rules)
        collect_round(c, w, row, h, 1);
    else
        collect_round(c, w, row, h, 0);
    return score_new(c, w, row, m0, 0);
}

/* The repeats since the last prefix into num_rep and rep_mass (combine
 * rounds); then none. */
static void flush_repeats(const struct ctx *c, struct workspace *w, struct row *row)
{
    if (c->need_rounds) {
        for (size_t k = 0; k < row->n_occ; k++)
            row->rep_mass += w->keys[w->cand[w->occ[k]]].rep * w->av[w->occ[k]];
        repeat_axpy(c->a->d_v, c->a->v, w->cand, w->av, w->keys, w->occ, row->n_occ,
                    w->num_rep);
    }
    for (size_t k = 0; k < row->n_occ; k++)
        w->keys[w->cand[w->occ[k]]].rep = 0;
    row->n_occ = 0;
}

/* The sink keys j < s and the local keys |i - j| < w (causal: i - w < j <=
 * i; U_i does that), within U_i, before round 0, in ascending order:
 * j < sink or lo <= j < up (forced_keys). */
static void forced_keys(const struct ctx *c, size_t i, uint32_t *sink, uint32_t *lo,
                        uint32_t *up)
{
    const size_t n = c->a->n, lw = c->mode->local;
    *sink = c->mode->sink < n ? c->mode->sink : (uint32_t)n;
    *lo = (uint32_t)(lw > 0 && i + 1 > lw ? i + 1 - lw : 0);
    *up = (uint32_t)(lw > 0 ? (i + lw < n ? i + lw : n) : 0);
}

static int add_forced(const struct ctx *c, struct workspace *w, struct row *row)
{
    const size_t i = row->i, m0 = row->m;
    const uint32_t tmin = c->min_t;
    uint32_t s, lo, up;
    forced_keys(c, i, &s, &lo, &up);
    for (size_t j = 0; j < s; j++)
        consider_rule(w, row, (uint32_t)j, 1);
    for (size_t j = lo > s ? lo : s; j < up; j++)
        consider_rule(w, row, (uint32_t)j, 1);
    for (size_t t = m0; t < row->m; t++)
        w->keys[w->cand[t]].cnt = tmin; /* a collision adds to it, never reaches t again */
    return score_new(c, w, row, m0, 1);
}

/* The exact path: A-hat from the scores with a max shift, for rows whose
 * mass underflowed.  Writes A-hat V into oh; returns sum (A - A-hat)^2 over S
 * and sets *z to log sum_S N^rounds e^s (the combine's normaliser). */
static double exact_row(const struct ctx *c, const struct workspace *w, const struct row *row,
                        int rounds, double *oh, double *kl_extra, double *z)
{
    const size_t dv = c->a->d_v, m = row->m;
    double mx = -INFINITY, den = 0.0;
    for (size_t t = 0; t < m; t++)
        mx = w->s[t] > mx ? w->s[t] : mx;
    for (size_t t = 0; t < m; t++)
        den += (rounds ? (double)w->keys[w->cand[t]].cnt : 1.0) * exp(w->s[t] - mx);
    *z = mx + log(den);
    double d2 = 0.0;
    *kl_extra = 0.0;
    memset(oh, 0, dv * sizeof *oh);
    for (size_t t = 0; t < m; t++) {
        double nj = rounds ? (double)w->keys[w->cand[t]].cnt : 1.0;
        double ah = nj * exp(w->s[t] - *z);
        if (nj > 1.0)
            *kl_extra += ah * log(nj);
        d2 += (w->av[t] - ah) * (w->av[t] - ah);
        axpy(dv, ah, c->a->v + (size_t)w->cand[t] * dv, oh);
    }
    return d2;
}

/* top-k hits: the share of T_i's first min(K, |U_i|) keys that are in S_i,
 * for each K of attn.topk.  in_s(arg, j, t) says whether key j, the row's
 * t-th best, is in S_i; an
 * empty S_i stands for {i}. */
typedef int (*in_s_fn)(const void *arg, uint32_t j, size_t t);

static void topk_ratios(const struct ctx *c, size_t r, size_t i, int empty, in_s_fn in_s,
                        const void *arg, double *ratio)
{
    const struct lsh_reference *ref = c->ref;
    const uint32_t *top = ref->top + r * ref->kmax;
    const uint32_t ucount = ref->u_count[r];
    for (size_t k = 0; k < c->a->n_topk && k < LSH_TOPK_MAX; k++) {
        size_t tk = c->a->topk[k] < ucount ? c->a->topk[k] : ucount;
        if (tk > ref->kmax)
            tk = ref->kmax;
        size_t hits = 0;
        for (size_t t = 0; t < tk; t++)
            hits += empty ? top[t] == i : in_s(arg, top[t], t) != 0;
        ratio[k] = tk ? (double)hits / (double)tk : 0.0;
    }
}

static int marked(const void *ws, uint32_t j, size_t t)
{
    (void)t;
    const struct workspace *w = ws;
    return w->keys[j].mark == w->stamp;
}

/* In S_i under a candidate rule: marked with a count that reached t. */
struct rule_arg {
    const struct workspace *w;
    uint32_t t;
};

static int joined(const void *arg, uint32_t j, size_t t)
{
    (void)t;
    const struct rule_arg *ra = arg;
    return ra->w->keys[j].mark == ra->w->stamp && ra->w->keys[j].cnt >= ra->t;
}

/* u = P(Binomial(H, p) >= t), summed exactly from k = t: for p < 1/2 up
 * from k = t (first term from logs, lchoose = log C(H, t)), else down from
 * k = H (first term p^H >= 2^-H), each term from the one before by the ratio
 * of binomial terms. */
static double binom_tail(double p, uint32_t H, uint32_t t, double lchoose)
{
    if (t > H || !(p > 0.0))
        return 0.0;
    if (p >= 1.0 || t == 0)
        return 1.0;
    if (t == 1)
        return -expm1((double)H * log1p(-p));
    double sum = 0.0;
    if (p < 0.5) {
        const double odds = p / (1.0 - p);
        double term = exp(lchoose + (double)t * log(p) + (double)(H - t) * log1p(-p));
        for (uint32_t k = t;; k++) {
            sum += term;
            if (k == H)
                break;
            term *= (double)(H - k) / (double)(k + 1) * odds;
        }
    } else {
        const double odds = (1.0 - p) / p;
        double term = exp((double)H * log(p));
        for (uint32_t k = H;; k--) {
            sum += term;
            if (k == t)
                break;
            term *= (double)k / (double)(H - k + 1) * odds;
        }
    }
    return sum < 1.0 ? sum : 1.0;
}

/* combine importance at prefix p: A-hat_ij = exp(s_ij - log u_ij - Z_i)
 * over S_i, max-shifted (exact however small the mass).  Writes A-hat V into
 * oh, sum_S (A - A-hat)^2 into *d2 and sum_S A-hat log(A-hat / A) into *kl;
 * fails (LSH_EDATA) on a collided pair with u = 0. */
static int importance_row(const struct ctx *c, struct workspace *w, const struct row *row,
                          size_t p, double *oh, double *d2, double *kl)
{
    const size_t dv = c->a->d_v, m = row->m;
    const uint32_t H = c->prefixes[p], t = c->min_t;
    const double lse = c->ref->lse[row->r], lch = c->lchoose[p];
    double *x = w->xw, *e = w->xe;
    double mx = -INFINITY;
    for (size_t k = 0; k < m; k++) {
        double lu = 0.0;
        if (w->pj[k] >= 0.0) {
            const double u = t == 1 ? -expm1((double)H * w->lq[k])
                                    : binom_tail(w->pj[k], H, t, lch);
            if (!(u > 0.0))
                ROW_FAIL(w, row, LSH_EDATA,
                         "eval: combine importance (strategy %s): at n_hashes %u, key %u is a "
                         "candidate of query %zu (met in >= %u of the %u rounds), but u = "
                         "P(Binomial(%u, p = %g) >= %u) is 0, so its weight 1/u is undefined "
                         "(the pass's importance points fail with it)",
                         c->law && c->law->name ? c->law->name : "?", H, w->cand[k], row->i, t,
                         H, H, w->pj[k], t);
            lu = log(u);
        }
        x[k] = w->s[k] - lu;
        mx = x[k] > mx ? x[k] : mx;
    }
    memcpy(e, x, m * sizeof *e);
    lsh_exp_affine(e, m, 1.0, mx);
    double z = 0.0;
    for (size_t k = 0; k < m; k++)
        z += e[k];
    const double lz = log(z), inv = 1.0 / z;
    double e2 = 0.0, e_kl = 0.0;
    for (size_t k = 0; k < m; k++) {
        const double ah = e[k] * inv, lah = (x[k] - mx) - lz;
        e[k] = ah;
        e2 += (w->av[k] - ah) * (w->av[k] - ah);
        e_kl += ah * (lah - (w->s[k] - lse)); /* log(A-hat / A), exact in logs */
    }
    memset(oh, 0, dv * sizeof *oh);
    gather_axpy(dv, c->a->v, w->cand, e, 0, m, oh);
    *d2 = e2;
    *kl = e_kl;
    return 0;
}

/* combine: rounds over S_i (N_j = cnt[cand[t]] <= h_max: no candidate rule
 * goes with it), Â = N A inv: *d2 = sum (A - Â)^2, *kl = sum Â log N.  In
 * eight lanes added in a fixed order (the same bits from every clone): a
 * single running sum was a chain of dependent additions, 15% of the row
 * path. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void rounds_terms(size_t m, const double *restrict av, const uint32_t *restrict cand,
                         const struct key_state *restrict keys, const double *restrict log_count,
                         double inv, double *d2, double *kl)
{
    double l2[8] = {0}, lk[8] = {0};
    size_t t = 0;
    for (; t + 8 <= m; t += 8)
        for (size_t e = 0; e < 8; e++) {
            const uint32_t cj = keys[cand[t + e]].cnt;
            const double ah = (double)cj * av[t + e] * inv, x = av[t + e] - ah;
            l2[e] += x * x;
            lk[e] += ah * log_count[cj]; /* log 1 = 0 */
        }
    for (size_t e = 0; t + e < m; e++) {
        const uint32_t cj = keys[cand[t + e]].cnt;
        const double ah = (double)cj * av[t + e] * inv, x = av[t + e] - ah;
        l2[e] += x * x;
        lk[e] += ah * log_count[cj];
    }
    *d2 = ((l2[0] + l2[1]) + (l2[2] + l2[3])) + ((l2[4] + l2[5]) + (l2[6] + l2[7]));
    *kl = ((lk[0] + lk[1]) + (lk[2] + lk[3])) + ((lk[4] + lk[5]) + (lk[6] + lk[7]));
}

/* combine rounds from the tile path's sums (row->rnum set, den = rden >
 * TINY_MASS): oh = rnum / den; *d2 = sum_S (A - N A / den)^2, which is
 * sa2 (1 - N / den)^2 when every N_ij is the same (sum N = |S| max N, exact
 * in integers), else rp0 - 2 rp1 / den + rp2 / den^2 (a few ulps of sa2
 * absolutely, as the union's sum over the keys off S_i); *kl = rk / den -
 * log den. */
static void rounds_moments(size_t dv, const struct row *row, double den, double *oh,
                           double *d2, double *kl)
{
    const double inv = 1.0 / den;
    for (size_t e = 0; e < dv; e++)
        oh[e] = row->rnum[e] * inv;
    if (row->rsum == (uint64_t)row->m * row->rmax) {
        const double f = 1.0 - (double)row->rmax * inv;
        *d2 = row->sa2 * f * f;
    } else {
        const double x = row->sa2 - 2.0 * row->rp1 * inv + row->rp2 * inv * inv;
        *d2 = x > 0.0 ? x : 0.0;
    }
    *kl = row->rk * inv - log(den);
}

/* Add the row's contribution at the current prefix to acc (n_combine x
 * n_fields), from the running sums: union A-hat = A / mass, rounds A-hat =
 * N A / sum_S N A, which is SPEC 4's LSE-weighted sum of per-round softmaxes. */
static int eval_row(const struct ctx *c, struct workspace *w, const struct row *row,
                    const double *num, const double *topk_ratio, double *acc,
                    size_t prefix_index)
{
    const struct lsh_reference *ref = c->ref;
    const struct lsh_attn *a = c->a;
    const size_t dv = a->d_v, r = row->r, i = row->i, m = row->m;
    const double lse = ref->lse[r], sum_a2 = ref->sum_a2[r];
    const double *o = ref->out + r * dv;
    const size_t nf = c->n_fields;
    const uint32_t ucount = ref->u_count[r];
    const int empty = m == 0;

    double mass = row->mass, sa2 = row->sa2, a_ii = 0.0;
    if (empty) {
        /* S_i = {i}: A-hat_ii = 1; A_ii is 0 unless i is in U_i. */
        if (lsh_attn_in_u(a, i, i))
            a_ii = exp(a->scale * lsh_attn_raw(a, i, i) - lse);
        mass = a_ii;
        sa2 = a_ii * a_ii;
    }
    /* ||A_i - A-hat_i||^2 = sum_S (A - A-hat)^2 + sum_{not S} A^2; the second
     * term cancels badly, so it is exactly 0 when S_i covers U_i. */
    const int covers = empty ? (a_ii > 0.0 && ucount == 1) : m == ucount;
    const double rest = covers ? 0.0 : sum_a2 - sa2;

    if (c->dump) {
        c->dump->mass[prefix_index * ref->m + r] = mass;
        c->dump->candidates[prefix_index * ref->m + r] = empty ? 1u : (uint32_t)m;
    }
    if (c->budgets)
        c->budgets[(r - c->r0) * c->n_prefix + prefix_index] = empty ? 1u : (uint32_t)m;

    for (size_t cb = 0; cb < c->n_combine; cb++) {
        double *f = acc + cb * nf;
        double *oh = w->ohat;
        double d2 = 0.0, kl = 0.0;
        const int rounds = c->combines[cb] == LSH_COMBINE_ROUNDS;
        const double den = !rounds ? mass : row->rnum ? row->rden : mass + row->rep_mass;
        if (empty) {
            memcpy(oh, c->a->v + i * dv, dv * sizeof *oh);
            d2 = (a_ii - 1.0) * (a_ii - 1.0);
        } else if (c->combines[cb] == LSH_COMBINE_IMPORTANCE) {
            int rc = importance_row(c, w, row, prefix_index, oh, &d2, &kl);
            if (rc)
                return rc;
        } else if (rounds && row->rnum) {
            rounds_moments(dv, row, den, oh, &d2, &kl);
        } else if (!(den > TINY_MASS)) {
            double kl_extra, z;
            d2 = exact_row(c, w, row, rounds, oh, &kl_extra, &z);
            kl = lse - z + kl_extra;
        } else if (!rounds) {
            const double inv = 1.0 / mass, f1 = 1.0 - inv;
            for (size_t e = 0; e < dv; e++)
                oh[e] = num[e] * inv;
            d2 = sa2 * f1 * f1; /* A - A-hat = A (1 - 1/mass) on S */
            kl = -log(mass);
        } else {
            const double inv = 1.0 / den;
            for (size_t e = 0; e < dv; e++)
                oh[e] = (num[e] + w->num_rep[e]) * inv;
            double kl_extra;
            rounds_terms(m, w->av, w->cand, w->keys, c->log_count, inv, &d2, &kl_extra);
            kl = kl_extra - log(den);
        }
        const double out2 = sq_dist(o, oh, dv), o2 = sq_dist(o, NULL, dv);
        const double cand = empty ? 1.0 : (double)m;
        add_ratio(f, M_OUT, out2, o2);
        add_ratio(f, M_ATTN, d2 + (rest > 0.0 ? rest : 0.0), sum_a2);
        add_ratio(f, M_KL, empty ? 0.0 : kl, empty ? 0.0 : 1.0);
        add_ratio(f, M_EMPTY, empty ? 1.0 : 0.0, 1.0);
        add_ratio(f, M_MASS, mass, 1.0);
        add_ratio(f, M_GRAM, empty ? 0.0 : row->gram, ref->gram_den[r]);
        add_ratio(f, M_DENSITY, cand, (double)ucount);
        add_ratio(f, M_MEANCAND, cand, 1.0);
        for (size_t k = 0; k < a->n_topk && k < LSH_TOPK_MAX; k++)
            add_ratio(f, M_TOPK + k, topk_ratio[k], 1.0);
    }
    return 0;
}

/* The part's evaluated rows, each slice's in order of their round-0 bucket
 * (stable): rows next to each other then gather the same rows of V, which
 * stay in cache.  The order is a function of the data and the slice only,
 * so the block sums are independent of threads and of the cut into parts. */
static size_t *row_order(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                         size_t r0, size_t r1)
{
    const size_t S = lsh_slice_rows();
    const uint32_t B = rounds->n_buckets;
    size_t *order = malloc((r1 - r0 + 1) * sizeof *order);
    size_t *start = malloc(((size_t)B + 1) * sizeof *start);
    if (!order || !start) {
        free(order);
        free(start);
        return NULL;
    }
    for (size_t s0 = r0; s0 < r1; s0 += S) {
        const size_t s1 = r1 - s0 < S ? r1 : s0 + S;
        size_t *out = order + (s0 - r0);
        memset(start, 0, ((size_t)B + 1) * sizeof *start);
        for (size_t r = s0; r < s1; r++)
            start[rounds->bq[ref->rows ? ref->rows[r] : r] + 1]++;
        for (uint32_t b = 0; b < B; b++)
            start[b + 1] += start[b];
        for (size_t r = s0; r < s1; r++)
            out[start[rounds->bq[ref->rows ? ref->rows[r] : r]]++] = r;
    }
    free(start);
    return order;
}

/* Evaluated row r with an empty S_i, in w (its marks forgotten, its sums 0). */
static struct row row_begin(const struct ctx *c, struct workspace *w, size_t r, size_t block)
{
    const struct lsh_attn *a = c->a;
    struct row row = {.r = r, .i = c->ref->rows ? c->ref->rows[r] : r, .block = block};
    row.only_i = lsh_attn_u_fallback(a, row.i);
    row.hi = a->causal ? row.i + 1 : a->n;
    row.skip_i = a->exclude_self;
    if (row.only_i)
        row.hi = a->n;
    if (++w->stamp == 0) { /* wrapped: forget every old mark */
        memset(w->keys, 0, a->n * sizeof *w->keys);
        w->stamp = 1;
    }
    memset(w->num, 0, a->d_v * sizeof *w->num);
    memset(w->num_rep, 0, a->d_v * sizeof *w->num_rep);
    return row;
}

/* The row path for evaluated row r: grow S_i round by round and add the row
 * to acc (n_prefix x stride) at every prefix, or only at prefix `only` when
 * only < n_prefix. */
static int row_path(const struct ctx *c, struct workspace *w, size_t r, double *acc,
                    size_t only, size_t block)
{
    const struct lsh_attn *a = c->a;
    const size_t stride = c->n_combine * c->n_fields;
    const uint32_t h_end = c->prefixes[only < c->n_prefix ? only : c->n_prefix - 1];
    struct row row = row_begin(c, w, r, block);
    size_t p = 0;
    int rc = 0;
    double t = lsh_now();
    if (c->importance) {
        const double *q = a->q + row.i * a->d;
        double nn = 0.0;
        for (size_t e = 0; e < a->d; e++)
            nn += q[e] * q[e];
        row.qnorm = sqrt(nn);
    }
    if (c->rules && (c->mode->sink || c->mode->local))
        rc = add_forced(c, w, &row);
    const struct rule_arg ra = {w, c->min_t};
    for (uint32_t h = 0; h < h_end && !rc; h++) {
        rc = add_round(c, w, &row, h);
        if (!rc && h + 1 == c->prefixes[p]) {
            if (only >= c->n_prefix || only == p) {
                flush_repeats(c, w, &row);
                double t1 = lsh_now(), ratio[LSH_TOPK_MAX];
                w->t_add[p] += t1 - t;
                if (c->rules)
                    topk_ratios(c, r, row.i, row.m == 0, joined, &ra, ratio);
                else
                    topk_ratios(c, r, row.i, row.m == 0, marked, w, ratio);
                rc = eval_row(c, w, &row, w->num, ratio, acc + p * stride, p);
                t = lsh_now();
                w->t_metric[p] += t - t1;
            }
            p++;
        }
    }
    return rc;
}

/* The rows of the part's block `block`: positions [k0, k1) of its order. */
static void block_span(const struct ctx *c, size_t block, size_t *k0, size_t *k1)
{
    const size_t rows = c->r1 - c->r0;
    *k0 = block * ROWS_PER_BLOCK;
    *k1 = *k0 + ROWS_PER_BLOCK < rows ? *k0 + ROWS_PER_BLOCK : rows;
}

static int block_task(void *vctx, size_t block, unsigned thread)
{
    struct ctx *c = vctx;
    const size_t stride = c->n_combine * c->n_fields;
    size_t k0, k1;
    block_span(c, block, &k0, &k1);
    for (size_t k = k0; k < k1; k++) {
        int rc = row_path(c, &c->ws[thread], c->order[k],
                          c->partials + block * c->n_prefix * stride, c->n_prefix,
                          c->r0 / ROWS_PER_BLOCK + block);
        if (rc)
            return rc;
    }
    return 0;
}

/* The budget-matched oracle (SPEC 13) for one block of evaluated rows (in
 * row order): every prefix's |S_i| at once, added to every combine. */
static int oracle_task(void *vctx, size_t block, unsigned thread)
{
    const struct ctx *c = vctx;
    struct workspace *w = &c->ws[thread];
    const struct lsh_reference *ref = c->ref;
    const size_t dv = c->a->d_v, np = c->n_prefix, nf = c->n_fields;
    const size_t stride = c->n_combine * nf;
    double *acc = c->partials + block * np * stride;
    size_t k0, k1;
    block_span(c, block, &k0, &k1);
    for (size_t r = c->r0 + k0; r < c->r0 + k1; r++) {
        lsh_oracle_row_table(ref, r, c->budgets + (r - c->r0) * np, np, w->ows, c->otab,
                             w->omass, w->oerr2);
        const double o2 = sq_dist(ref->out + r * dv, NULL, dv);
        for (size_t p = 0; p < np; p++)
            for (size_t cb = 0; cb < c->n_combine; cb++) {
                double *f = acc + p * stride + cb * nf;
                add_ratio(f, c->f_oracle, w->omass[p], 1.0);
                add_ratio(f, c->f_oracle + 1, w->oerr2[p], o2);
            }
    }
    return 0;
}

/* ---- the tile path: combines union and rounds --------------------------------- */

/* A round's pairs come in complete blocks: every row of a bucket meets every
 * key of it (bucket mode), every query of a chunk every key of the chunk's
 * window (chunked mode; with window same_bucket a per-pair mask).  So a round
 * is scored and summed by GEMMs over tiles of up to TILE_ROWS rows x
 * TILE_KEYS keys of one such group, and a pair counts in the first round that
 * makes it a candidate (it is new when no earlier round did), which makes S_i
 * the union and each prefix a running sum over rounds.  A tile pays for the
 * repeats too, not only the new pairs, but runs at GEMM speed rather than at
 * the speed of gathering rows of V. */
#define TILE_ROWS 128
#define TILE_KEYS 512
/* combine rounds on tiles: ok bytes hold 1 + a pair's earlier rounds */
#define TILE_ROUNDS_MAX 255
/* K^T's row stride in a tile: not a multiple of 4 KiB, whose columns would
 * all map to one cache set when the gather writes them */
#define KT_STRIDE (TILE_KEYS + 8)

struct tile_task {
    uint32_t g;       /* group: bucket (bucket mode) or chunk (chunked mode) */
    uint32_t t0, t1;  /* its rows rperm[t0 .. t1) */
    uint64_t pairs;   /* rows x keys: the work */
};

/* A run of tiles of one group, taken by one thread: the group's keys (their
 * rows of K, transposed, and of V, their earlier buckets) are gathered once
 * for all its tiles when they fit the thread's part slots. */
struct tile_job {
    size_t first, count; /* tasks[first .. first + count) */
    uint64_t pairs;
};

static int job_cmp(const void *x, const void *y)
{
    const struct tile_job *a = x, *b = y;
    if (a->pairs != b->pairs)
        return a->pairs > b->pairs ? -1 : 1;
    return a->first < b->first ? -1 : a->first > b->first;
}

/* One part of a group's keys (up to TILE_KEYS of them), as the tiles use it. */
struct tile_part {
    uint32_t *kj;     /* TILE_KEYS key ids                                */
    double *kd;       /* d x KT_STRIDE: their rows of K, transposed        */
    double *vc;       /* TILE_KEYS x lsh_pad8(d_v): their rows of V (zero pad) */
    double *gk;       /* TILE_KEYS: their Gram factors (1 without gnorm)  */
    uint32_t *kb;     /* h_max x TILE_KEYS: their buckets in earlier rounds */
    uint32_t *kc;     /* h_max x TILE_KEYS: their chunks (chunked mode)    */
    uint32_t *kb_now; /* TILE_KEYS: their buckets in this round (chunked)  */
    size_t nk;
};

/* Part slots a thread keeps: as many as fit SLOT_BYTES, 1 to 4 (a group of
 * up to 4 x TILE_KEYS keys then is gathered once for all its tiles). */
#define SLOT_BYTES ((size_t)4 << 20)
#define MAX_SLOTS 4

static size_t slot_bytes(size_t d, size_t dv, size_t h_max)
{
    const size_t D = sizeof(double), U = sizeof(uint32_t);
    size_t b = lsh_size_mul3(KT_STRIDE, lsh_size_add(d, 1), D);
    b = lsh_size_add(b, lsh_size_mul3(TILE_KEYS, lsh_size_add(lsh_pad8(dv), 1), D));
    b = lsh_size_add(b, lsh_size_mul3(h_max, 2 * TILE_KEYS, U));
    return lsh_size_add(b, TILE_KEYS * (2 * U + D) + 2 * 64); /* kd and vc on cache lines */
}

static unsigned tile_slots(size_t d, size_t dv, size_t h_max)
{
    /* tests set 1 to run groups of several parts through the uncached path */
    const char *t = getenv("LSHLAB_TEST_TILE_SLOTS");
    if (t && t[0] >= '1' && t[0] <= '0' + MAX_SLOTS && !t[1])
        return (unsigned)(t[0] - '0');
    const size_t k = SLOT_BYTES / slot_bytes(d, dv, h_max);
    return k < 1 ? 1 : k > MAX_SLOTS ? MAX_SLOTS : (unsigned)k;
}

struct tile_ws {
    double *qb;         /* TILE_ROWS x d: the tile's rows of Q              */
    double *kd;         /* d x KT_STRIDE: the kept keys' rows of K, transposed */
    double *vc;         /* TILE_KEYS x lsh_pad8(d_v): their rows of V (zero pad) */
    double *p;          /* TILE_ROWS x nk: raw scores, then A_ij (0 off S)  */
    double *onum;       /* TILE_ROWS x d_v: sum of A_ij v_j of this round   */
    double *onum_r;     /* TILE_ROWS x d_v: the same over every collision (rounds) */
    uint32_t *kj;       /* TILE_KEYS kept key ids                           */
    double *gk;         /* TILE_KEYS: their Gram factors                    */
    struct tile_part slot[MAX_SLOTS];
    unsigned n_slots;
    uint32_t *bi, *ci;  /* h_max: a row's buckets and chunks in earlier rounds */
    uint32_t *klist;    /* a chunked tile's keys (up to n)                   */
    uint32_t *cols;     /* TILE_KEYS: the chunk's keys new to some row      */
    unsigned char *any; /* TILE_KEYS: is key u new to some row?             */
    unsigned char *ok;  /* TILE_ROWS x TILE_KEYS: (i, j) in U_i and new      */
};

struct tile_state {
    size_t h;                   /* the round being added */
    uint32_t *rperm, *roff;     /* evaluated rows of round h by group */
    struct tile_task *tasks;
    size_t n_tasks;
    struct tile_job *jobs;
    size_t n_jobs;
    struct tile_ws *ws;         /* per thread */
    /* per evaluated row r: running sums over S_i of the rounds so far */
    double *mass, *sa2, *gram, *num; /* num: m x d_v */
    uint32_t *count;
    /* combine rounds: struct row's rnum (m x d_v), rden, rp1, rp2, rk, rsum, rmax */
    double *rnum, *rsums;            /* rsums: m x 4 (rden, rp1, rp2, rk) */
    uint64_t *rsum;
    uint32_t *rmax;
    uint16_t *tjoin;                 /* m x kmax: the best keys' join rounds */
    size_t p;                   /* the prefix whose metrics are being added */
};

/* What decides whether a key of a tile is new to row i in round h. */
struct tile_row {
    uint32_t hi, self;     /* U_i = [0, hi) minus self, or just {self} when only */
    int only;
    /* sink and local keys: j < sink or lo <= j < up, in S_i before round 0 */
    uint32_t sink, lo, up;
    const uint32_t *bi;    /* h: i's buckets in rounds 0..h-1 */
    const uint32_t *ci;    /* h: i's chunks in them (chunked mode), or NULL */
    uint32_t b_now;        /* i's bucket in round h (chunked, same_bucket) */
};

/* ok[u] = key kj[u] is in U_i (and not a sink or local key of row i), in
 * chunked mode with window same_bucket in i's bucket of round h, and was not
 * i's candidate in any round before h; returns how many are.  With `counts`
 * (combine rounds), ok[u] = 0 when not in U_i (or not in the bucket), else
 * 1 + the rounds before h that paired i and j (h < 255), and *any gets how
 * many are nonzero; with counts and join = t >= 2 (min_collisions t),
 * ok[u] = 1 where that count reaches t in round h (j joins S_i now), else 0,
 * and *any is the return.  A round g paired i and j when, in bucket mode,
 * they shared a bucket (kb: the keys' buckets, h x TILE_KEYS, or kb8 the
 * same as bytes when B <= 256, which compares four times as many a vector);
 * in chunked mode when j's chunk (kc) was i's or one of the span - 1 before
 * it, modulo nc, and with same_bucket their buckets agreed as well (kb_now:
 * the keys' buckets of round h).  The loops run over whole blocks of
 * MASK_BLOCK keys (no scalar tail: the inputs are set up to the block,
 * part_load), and ok past nk is 0. */
#define MASK_BLOCK 64

/* Is chunk kc of a key at most span - 1 chunks back from a query's chunk
 * cq, modulo nc (within its window)? */
static inline int chunk_back_in(int32_t cq, uint32_t kc, uint32_t nc, uint32_t span)
{
    int32_t back = cq - (int32_t)kc;
    back += (back >> 31) & (int32_t)nc;
    return (uint32_t)back < span;
}
__attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
static size_t tile_mask(size_t nk, const uint32_t *restrict kj, const uint32_t *restrict kb,
                        const unsigned char *restrict kb8, const uint32_t *restrict kc,
                        const uint32_t *restrict kb_now, const struct tile_row *row, size_t h,
                        uint32_t nc, uint32_t span, int same_bucket, int counts,
                        uint32_t join, unsigned char *restrict ok, size_t *any)
{
    const uint32_t hi = row->hi, self = row->self;
    const size_t nkp = (nk + MASK_BLOCK - 1) / MASK_BLOCK * MASK_BLOCK;
#define BLOCKS(u, body)                                                                            \
    do {                                                                                           \
        for (size_t u##0 = 0; u##0 < nkp; u##0 += MASK_BLOCK)                                      \
            for (size_t u = u##0; u < u##0 + MASK_BLOCK; u++)                                      \
                body                                                                               \
    } while (0)
    if (row->only)
        BLOCKS(u, ok[u] = kj[u] == self;);
    else
        BLOCKS(u, ok[u] = (unsigned char)((kj[u] < hi) & (kj[u] != self)););
    if (kc && same_bucket)
        BLOCKS(u, ok[u] &= (unsigned char)(kb_now[u] == row->b_now););
    if (row->sink || row->lo < row->up) { /* forced keys never join again */
        const uint32_t sink = row->sink, lo = row->lo, up = row->up;
        BLOCKS(u, ok[u] &= (unsigned char)!((kj[u] < sink) | ((kj[u] >= lo) & (kj[u] < up))););
    }
    /* round g paired them (in): off (union), or one more count (rounds) */
#define PAIRED(u, in)                                                                              \
    do {                                                                                           \
        if (counts)                                                                                \
            BLOCKS(u, ok[u] += (unsigned char)((ok[u] != 0) & (in)););                             \
        else                                                                                       \
            BLOCKS(u, ok[u] &= (unsigned char)!(in););                                             \
    } while (0)
    if (kb8 && !counts) /* union, B <= 256: a block's ok kept in a register over the rounds */
        for (size_t u0 = 0; u0 < nkp; u0 += MASK_BLOCK) {
            unsigned char o[MASK_BLOCK];
            memcpy(o, ok + u0, MASK_BLOCK);
            for (size_t g = 0; g < h; g++) {
                const unsigned char bg = (unsigned char)row->bi[g];
                const unsigned char *restrict k8 = kb8 + g * TILE_KEYS + u0;
                for (size_t u = 0; u < MASK_BLOCK; u++)
                    o[u] &= (unsigned char)!(k8[u] == bg);
            }
            memcpy(ok + u0, o, MASK_BLOCK);
        }
    else
        for (size_t g = 0; g < h; g++) {
            const uint32_t bg = row->bi[g];
            const uint32_t *restrict kbg = kb + g * TILE_KEYS;
            if (kb8) { /* bucket mode, B <= 256: four times the lanes */
                const unsigned char *restrict k8 = kb8 + g * TILE_KEYS;
                PAIRED(u, k8[u] == (unsigned char)bg);
                continue;
            }
            if (!kc) {
                PAIRED(u, kbg[u] == bg);
                continue;
            }
            const int32_t cg = (int32_t)row->ci[g];
            const uint32_t *restrict kcg = kc + g * TILE_KEYS;
            PAIRED(u, chunk_back_in(cg, kcg[u], nc, span) & (!same_bucket | (kbg[u] == bg)));
        }
#undef PAIRED
    memset(ok + nk, 0, nkp - nk);
    size_t count = 0;
    if (counts && join >= 2) /* joins S_i now: its count of rounds reaches t */
        BLOCKS(u, ok[u] = (unsigned char)(ok[u] == join););
    /* plain loops: one sum across the blocks (a sum per block is a horizontal
     * add each, most of this function's time) */
    if (counts && join < 2) {
        uint32_t ones = 0, nz = 0; /* at most TILE_KEYS */
        for (size_t u = 0; u < nkp; u++) {
            ones += ok[u] == 1;
            nz += ok[u] != 0;
        }
        count = ones;
        *any = nz;
    } else {
        uint32_t sum = 0; /* at most 255 TILE_KEYS */
        for (size_t u = 0; u < nkp; u++)
            sum += ok[u];
        count = sum;
        *any = count;
    }
#undef BLOCKS
    return count;
}

/* cols[] = the keys u < nk that some row of the tile keeps (any[]: scratch);
 * returns how many. */
static size_t tile_columns(size_t nr, size_t nk, const unsigned char *restrict ok,
                           unsigned char *restrict any, uint32_t *restrict cols)
{
    memcpy(any, ok, nk);
    for (size_t t = 1; t < nr; t++) {
        const unsigned char *restrict row = ok + t * TILE_KEYS;
        for (size_t u = 0; u < nk; u++)
            any[u] |= row[u];
    }
    size_t kept = 0;
    for (size_t u = 0; u < nk; u++)
        if (any[u])
            cols[kept++] = (uint32_t)u;
    return kept;
}

/* The keys of a task: a bucket's (bucket mode), or the key items of a
 * chunk's window (chunked mode: its own chunk and the span - 1 before it,
 * wrapping, each once). */
static const uint32_t *tile_keys(const struct ctx *c, const struct round_index *x, uint32_t g,
                                 uint32_t *buf, size_t *count)
{
    if (c->mode->mode == LSH_MODE_BUCKET) {
        *count = x->koff[g + 1] - x->koff[g];
        return x->kperm + x->koff[g];
    }
    const int separate = c->rounds->bk != c->rounds->bq;
    const size_t cs = c->mode->chunk_size, nc = x->n_chunks;
    const size_t span = window_span(c->mode, nc);
    size_t k = 0;
    for (size_t t = 0; t < span; t++) {
        const size_t ch = (g + nc - t % nc) % nc;
        const size_t lo = ch * cs, up = lo + cs < x->n_items ? lo + cs : x->n_items;
        for (size_t v = lo; v < up; v++) {
            const uint32_t it = x->items[v];
            if (!separate)
                buf[k++] = it;
            else if (it & 1u)
                buf[k++] = it >> 1;
        }
    }
    *count = k;
    return buf;
}

/* kd (transposed, KT_STRIDE), vc (padded rows) and gk of nk keys kj */
static void gather_rows(const struct lsh_attn *a, const uint32_t *kj, size_t nk, double *kd,
                        double *vc, double *gk)
{
    const size_t d = a->d, dv = a->d_v, dvp = lsh_pad8(dv);
    lsh_gather_transposed(nk, d, a->k, kj, KT_STRIDE, kd);
    for (size_t u = 0; u < nk; u++)
        memcpy(vc + u * dvp, a->v + (size_t)kj[u] * dv, dv * sizeof *vc);
    for (size_t u = 0; u < nk; u++)
        gk[u] = a->gnorm ? a->gnorm[kj[u]] : 1.0;
}

/* Loads part `part` of a group's keys (klist, keys of them, in parts of
 * equal size) into a slot: ids and earlier buckets; with `rows`, also their
 * rows of K (transposed) and V and their Gram factors. */
static void part_load(const struct ctx *c, struct tile_part *pt, const uint32_t *klist,
                      size_t keys, size_t parts, size_t part, int rows)
{
    const struct lsh_attn *a = c->a;
    const struct lsh_rounds *R = c->rounds;
    const size_t n = a->n, h = c->tile->h;
    const int chunked = c->mode->mode == LSH_MODE_CHUNKED;
    const size_t u0 = keys * part / parts;
    const size_t nk = keys * (part + 1) / parts - u0;
    pt->nk = nk;
    memcpy(pt->kj, klist + u0, nk * sizeof *pt->kj);
    /* tile_mask reads whole blocks: ids past nk are no key's, the rest 0 */
    const size_t nkp = (nk + MASK_BLOCK - 1) / MASK_BLOCK * MASK_BLOCK;
    for (size_t u = nk; u < nkp; u++)
        pt->kj[u] = UINT32_MAX;
    /* the keys' earlier buckets: in bucket mode with B <= 256 as bytes, in kb's memory */
    unsigned char *kb8 = !chunked && R->n_buckets <= 256 ? (unsigned char *)pt->kb : NULL;
    for (size_t g = 0; g < h; g++) {
        if (kb8)
            memset(kb8 + g * TILE_KEYS + nk, 0, nkp - nk);
        else
            memset(pt->kb + g * TILE_KEYS + nk, 0, (nkp - nk) * sizeof *pt->kb);
        memset(pt->kc + g * TILE_KEYS + nk, 0, (nkp - nk) * sizeof *pt->kc);
    }
    memset(pt->kb_now + nk, 0, (nkp - nk) * sizeof *pt->kb_now);
    for (size_t g = 0; g < h; g++)
        for (size_t u = 0; u < nk; u++) {
            if (kb8)
                kb8[g * TILE_KEYS + u] = (unsigned char)R->bk[g * n + pt->kj[u]];
            else
                pt->kb[g * TILE_KEYS + u] = R->bk[g * n + pt->kj[u]];
            if (chunked)
                pt->kc[g * TILE_KEYS + u] = c->idx[g].kchunk[pt->kj[u]];
        }
    if (chunked && c->mode->window == LSH_WINDOW_SAME_BUCKET)
        for (size_t u = 0; u < nk; u++)
            pt->kb_now[u] = R->bk[h * n + pt->kj[u]];
    if (rows)
        gather_rows(a, pt->kj, nk, pt->kd, pt->vc, pt->gk);
}

/* One tile: its rows against the group's keys, part by part: from the slots
 * when `cached` (the kept keys' columns copied out when some leave), else
 * each part's ids loaded here and its kept keys' rows gathered. */
static void tile_run(const struct ctx *c, struct tile_ws *w, const struct tile_task *tk,
                     const uint32_t *klist, size_t keys, size_t parts, int cached)
{
    struct tile_state *st = c->tile;
    const struct lsh_attn *a = c->a;
    const struct lsh_reference *ref = c->ref;
    const struct lsh_rounds *R = c->rounds;
    const size_t n = a->n, d = a->d, dv = a->d_v, h = st->h;
    const struct round_index *x = &c->idx[h];
    const size_t nr = tk->t1 - tk->t0;
    const uint32_t *rs = st->rperm + tk->t0; /* evaluated rows */
    const int chunked = c->mode->mode == LSH_MODE_CHUNKED;
    const int same_bucket = chunked && c->mode->window == LSH_WINDOW_SAME_BUCKET;
    const uint32_t nc = chunked ? (uint32_t)x->n_chunks : 1;
    const uint32_t span = chunked ? (uint32_t)window_span(c->mode, nc) : 1;
    const size_t dvp = lsh_pad8(dv);
    size_t ii[TILE_ROWS];
    double mass[TILE_ROWS] = {0}, sa2[TILE_ROWS] = {0}, gram[TILE_ROWS] = {0};
    uint32_t count[TILE_ROWS] = {0};
    /* combine rounds: the rows' rden, rp1, rp2, rk; sum N; max N */
    const int rounds = c->need_rounds;
    const uint32_t join = c->rules ? c->min_t : 0; /* min_collisions t (>= 2: counts) */
    double rsums[TILE_ROWS][4];
    uint64_t rsum[TILE_ROWS];
    uint32_t rmax[TILE_ROWS];
    if (rounds) { /* zeroed only when used: a tile is short */
        memset(rsums, 0, nr * sizeof *rsums);
        memset(rsum, 0, nr * sizeof *rsum);
        memset(rmax, 0, nr * sizeof *rmax);
    }

    for (size_t t = 0; t < nr; t++) {
        ii[t] = ref->rows ? ref->rows[rs[t]] : rs[t];
        memcpy(w->qb + t * d, a->q + ii[t] * d, d * sizeof *w->qb);
        /* the rows' running sums, added to at the end, towards L2 now (a row
         * of a tile is anywhere: each was a cache miss) */
        const size_t r = rs[t] - c->r0;
        const char *num = (const char *)(st->num + r * dv);
        for (size_t b = 0; b < dv * sizeof *st->num; b += 64)
            __builtin_prefetch(num + b, 1, 2);
        __builtin_prefetch(st->mass + r, 1, 2);
        __builtin_prefetch(st->sa2 + r, 1, 2);
        __builtin_prefetch(st->gram + r, 1, 2);
        __builtin_prefetch(st->count + r, 1, 2);
    }
    memset(w->onum, 0, nr * dv * sizeof *w->onum);
    if (rounds)
        memset(w->onum_r, 0, nr * dv * sizeof *w->onum_r);
    for (size_t part = 0; part < parts; part++) {
        struct tile_part *pt = &w->slot[cached ? part : 0];
        if (!cached)
            part_load(c, pt, klist, keys, parts, part, 0);
        size_t nk = pt->nk;
        const unsigned char *kb8 =
            !chunked && R->n_buckets <= 256 ? (const unsigned char *)pt->kb : NULL;
        size_t coll = 0, row_coll[TILE_ROWS]; /* collisions (union: new pairs) */
        for (size_t t = 0; t < nr; t++) {
            const size_t i = ii[t];
            for (size_t g = 0; g < h; g++) { /* i's rounds before h */
                w->bi[g] = R->bq[g * n + i];
                if (chunked)
                    w->ci[g] = c->idx[g].qchunk[i];
            }
            struct tile_row row = {.only = lsh_attn_u_fallback(a, i), .bi = w->bi,
                                   .ci = w->ci, .b_now = R->bq[h * n + i]};
            if (c->rules)
                forced_keys(c, i, &row.sink, &row.lo, &row.up);
            row.hi = (uint32_t)(a->causal && !row.only ? i + 1 : n);
            row.self = row.only || a->exclude_self ? (uint32_t)i : UINT32_MAX;
            count[t] += (uint32_t)tile_mask(nk, pt->kj, pt->kb, kb8, chunked ? pt->kc : NULL,
                                            pt->kb_now, &row, h, nc, span, same_bucket,
                                            rounds || join >= 2, join, w->ok + t * TILE_KEYS,
                                            &row_coll[t]);
            if (rounds)
                rsum[t] += row_coll[t]; /* each collision adds 1 to an N_ij */
            coll += row_coll[t];
        }
        if (coll == 0)
            continue; /* union: every pair was met in an earlier round */
        /* Keys that are new to no row of the tile (union) leave the GEMMs: in
         * later rounds rows that met before share most of their old keys. */
        const size_t kept = tile_columns(nr, nk, w->ok, w->any, w->cols);
        const uint32_t *kj = pt->kj;
        const double *kd = pt->kd, *vc = pt->vc, *gk = pt->gk;
        if (cached && kept < nk && w->cols[kept - 1] == kept - 1) {
            /* the kept keys are the slot's first ones (a causal tile's keys
             * up to its last row, in position order): used where they are */
            nk = kept;
        } else if (kept < nk || !cached) {
            /* local restrict pointers: the byte stores of ok would otherwise
             * make the compiler reload w->cols at every key */
            const uint32_t *restrict cols = w->cols;
            uint32_t *restrict kjc = w->kj;
            for (size_t v = 0; v < kept; v++)
                kjc[v] = pt->kj[cols[v]];
            if (kept < nk)
                for (size_t t = 0; t < nr; t++) { /* in place: cols[v] >= v */
                    unsigned char *ok = w->ok + t * TILE_KEYS;
                    for (size_t v = 0; v < kept; v++)
                        ok[v] = ok[cols[v]];
                }
            if (cached) { /* the kept keys' columns and rows, from the slot */
                double *restrict kdc = w->kd, *restrict gkc = w->gk;
                const double *restrict kds = pt->kd, *restrict gks = pt->gk;
                for (size_t e = 0; e < d; e++)
                    for (size_t v = 0; v < kept; v++)
                        kdc[e * KT_STRIDE + v] = kds[e * KT_STRIDE + cols[v]];
                for (size_t v = 0; v < kept; v++) {
                    memcpy(w->vc + v * dvp, pt->vc + cols[v] * dvp, dv * sizeof *w->vc);
                    gkc[v] = gks[cols[v]];
                }
            } else {
                gather_rows(a, w->kj, kept, w->kd, w->vc, w->gk);
            }
            kj = w->kj, kd = w->kd, vc = w->vc, gk = w->gk;
            nk = kept;
        }
        /* The GEMMs as FMA chains (lshlab/fmadots.h): the same bits on every
         * machine, and faster than a BLAS at these shapes */
        /* P's rows nkp apart, a whole number of vectors, so that they start on
         * cache lines like P: the columns past nk are scores of kd's finite
         * padding, zeroed after the exp, and P V then runs over them too, with
         * V's finite rows past nk: fma(0, v, acc) = acc (acc is never -0), the
         * bits of the product over nk keys. */
        const size_t nkp = lsh_pad8(nk);
        lshlab_fma_dots(nr, nkp, d, KT_STRIDE, w->qb, kd, w->p, 0);
        for (size_t t = 0; t < nr; t++) {
            double *pr = w->p + t * nkp;
            if (row_coll[t] == 0) {
                memset(pr, 0, nkp * sizeof *pr);
                continue;
            }
            double sums[3];
            const unsigned char *ok = w->ok + t * TILE_KEYS;
            lsh_exp_keep(pr, nk, a->scale, ref->lse[rs[t]], ok, a->gnorm ? gk : NULL, kj,
                         (uint32_t)ii[t], sums);
            memset(pr + nk, 0, (nkp - nk) * sizeof *pr);
            gram[t] += sums[0];
            mass[t] += sums[1];
            sa2[t] += sums[2];
            if (rounds) {
                const uint32_t mx = lsh_rounds_row(pr, ok, nk, c->dlog, c->h_max, rsums[t]);
                rmax[t] = mx > rmax[t] ? mx : rmax[t];
            }
        }
        if (rounds) { /* every collision's A v; then the new pairs' alone (union) */
            lshlab_fma_dots(nr, dv, nkp, dvp, w->p, vc, w->onum_r, 1);
            if (!c->need_union)
                continue;
            for (size_t t = 0; t < nr; t++) {
                double *restrict pr = w->p + t * nkp;
                const unsigned char *restrict ok = w->ok + t * TILE_KEYS;
                for (size_t v = 0; v < nk; v++)
                    pr[v] = ok[v] == 1 ? pr[v] : 0.0;
            }
        }
        lshlab_fma_dots(nr, dv, nkp, dvp, w->p, vc, w->onum, 1);
    }
    for (size_t t = 0; t < nr; t++) {
        const size_t r = rs[t] - c->r0; /* the part's row */
        st->mass[r] += mass[t];
        st->sa2[r] += sa2[t];
        st->gram[r] += gram[t];
        st->count[r] += count[t];
        for (size_t e = 0; e < dv; e++)
            st->num[r * dv + e] += w->onum[t * dv + e];
        if (!rounds)
            continue;
        for (int k = 0; k < 4; k++)
            st->rsums[r * 4 + k] += rsums[t][k];
        st->rsum[r] += rsum[t];
        st->rmax[r] = rmax[t] > st->rmax[r] ? rmax[t] : st->rmax[r];
        for (size_t e = 0; e < dv; e++)
            st->rnum[r * dv + e] += w->onum_r[t * dv + e];
    }
}

static int tile_job_run(void *vctx, size_t job, unsigned thread)
{
    const struct ctx *c = vctx;
    const struct tile_state *st = c->tile;
    const struct tile_job *jb = &st->jobs[job];
    struct tile_ws *w = &st->ws[thread];
    const uint32_t g = st->tasks[jb->first].g;
    size_t keys;
    const uint32_t *klist = tile_keys(c, &c->idx[st->h], g, w->klist, &keys);
    /* parts of equal size, none of a few keys */
    const size_t parts = (keys + TILE_KEYS - 1) / TILE_KEYS;
    const int cached = parts <= w->n_slots;
    for (size_t part = 0; cached && part < parts; part++)
        part_load(c, &w->slot[part], klist, keys, parts, part, 1);
    for (size_t k = 0; k < jb->count; k++)
        tile_run(c, w, &st->tasks[jb->first + k], klist, keys, parts, cached);
    return 0;
}

struct sig_arg {
    const uint16_t *join; /* the row's best keys' join rounds (join_round) */
    size_t H;
};

/* Was j a candidate of i in round g (before U_i)?  Bucket mode: one bucket;
 * chunked mode: j's chunk within i's window, and one bucket with window
 * same_bucket.  tile_mask is the same rule over a tile's keys. */
static int round_pair(const struct ctx *c, size_t g, size_t i, size_t j)
{
    const struct lsh_rounds *R = c->rounds;
    const int same = R->bq[g * R->n + i] == R->bk[g * R->n + j];
    if (c->mode->mode == LSH_MODE_BUCKET)
        return same;
    const struct round_index *x = &c->idx[g];
    const size_t nc = x->n_chunks;
    const size_t span = window_span(c->mode, nc);
    const size_t back = (x->qchunk[i] + nc - x->kchunk[j]) % nc;
    return back < span && (c->mode->window != LSH_WINDOW_SAME_BUCKET || same);
}

/* The round in which key j joins S_i (it is in S_i at prefix H when that
 * round is < H): 0 for a sink or local key, else the round where its count
 * of candidate rounds reaches t; TJOIN_NEVER outside U_i or after round
 * h_max - 1. */
#define TJOIN_NEVER UINT16_MAX
static uint16_t join_round(const struct ctx *c, size_t i, uint32_t j)
{
    if (!lsh_attn_in_u(c->a, i, j))
        return TJOIN_NEVER;
    if (c->rules) {
        uint32_t sink, lo, up;
        forced_keys(c, i, &sink, &lo, &up);
        if (j < sink || (j >= lo && j < up))
            return 0;
    }
    uint32_t met = 0;
    for (size_t g = 0; g < c->h_max; g++)
        if ((met += (uint32_t)round_pair(c, g, i, j)) >= c->min_t)
            return (uint16_t)g;
    return TJOIN_NEVER;
}

/* Is the row's t-th best key in S_i at prefix H?  From its join round. */
static int sig_in_s(const void *arg, uint32_t j, size_t t)
{
    const struct sig_arg *s = arg;
    (void)j;
    return s->join[t] < s->H;
}

/* The sink and local keys of one block of evaluated rows, before round 0:
 * the row path's (add_forced), as the first terms of the rows' sums. */
static int tile_forced_task(void *vctx, size_t block, unsigned thread)
{
    const struct ctx *c = vctx;
    const struct tile_state *st = c->tile;
    struct workspace *w = &c->ws[thread];
    const size_t dv = c->a->d_v;
    size_t k0, k1;
    block_span(c, block, &k0, &k1);
    for (size_t k = k0; k < k1; k++) {
        struct row row = row_begin(c, w, c->r0 + k, c->r0 / ROWS_PER_BLOCK + block);
        int rc = add_forced(c, w, &row);
        if (rc)
            return rc;
        st->mass[k] = row.mass;
        st->sa2[k] = row.sa2;
        st->gram[k] = row.gram;
        st->count[k] = (uint32_t)row.m;
        memcpy(st->num + k * dv, w->num, dv * sizeof *w->num);
    }
    return 0;
}

/* The metrics of prefix st->p for one block of evaluated rows (in row order). */
static int tile_metric_task(void *vctx, size_t block, unsigned thread)
{
    const struct ctx *c = vctx;
    const struct tile_state *st = c->tile;
    struct workspace *w = &c->ws[thread];
    const struct lsh_reference *ref = c->ref;
    const size_t stride = c->n_combine * c->n_fields, p = st->p;
    double *acc = c->partials + block * c->n_prefix * stride;
    size_t k0, k1;
    block_span(c, block, &k0, &k1);
    for (size_t k = k0; k < k1; k++) {
        const size_t r = c->r0 + k;
        struct row row = {.r = r, .i = ref->rows ? ref->rows[r] : r, .m = st->count[k],
                          .mass = st->mass[k], .sa2 = st->sa2[k], .gram = st->gram[k]};
        if (st->rnum) {
            row.rnum = st->rnum + k * c->a->d_v;
            row.rden = st->rsums[4 * k];
            row.rp1 = st->rsums[4 * k + 1];
            row.rp2 = st->rsums[4 * k + 2];
            row.rk = st->rsums[4 * k + 3];
            row.rsum = st->rsum[k];
            row.rmax = st->rmax[k];
        }
        uint16_t *join = st->tjoin + k * ref->kmax;
        if (p == 0) { /* once a pass, for every row: each prefix reads them */
            const size_t nt = ref->kmax < ref->u_count[r] ? ref->kmax : ref->u_count[r];
            for (size_t t = 0; t < nt; t++)
                join[t] = join_round(c, row.i, ref->top[r * ref->kmax + t]);
        }
        int rc;
        if (row.m > 0 && !(row.mass > TINY_MASS)) { /* the exact path needs the scores */
            rc = row_path(c, w, r, acc, p, c->r0 / ROWS_PER_BLOCK + block);
        } else {
            double ratio[LSH_TOPK_MAX];
            struct sig_arg arg = {join, c->prefixes[p]};
            topk_ratios(c, r, row.i, row.m == 0, sig_in_s, &arg, ratio);
            rc = eval_row(c, w, &row, st->num + k * c->a->d_v, ratio, acc + p * stride, p);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static void free_tile(struct tile_state *st, unsigned threads)
{
    for (unsigned t = 0; st->ws && t < threads; t++) {
        struct tile_ws *w = &st->ws[t];
        free(w->qb);
        free(w->kd);
        free(w->vc);
        free(w->p);
        free(w->onum);
        free(w->onum_r);
        free(w->kj);
        free(w->gk);
        for (unsigned k = 0; k < MAX_SLOTS; k++) {
            struct tile_part *pt = &w->slot[k];
            free(pt->kj);
            free(pt->kd);
            free(pt->vc);
            free(pt->gk);
            free(pt->kb);
            free(pt->kc);
            free(pt->kb_now);
        }
        free(w->bi);
        free(w->ci);
        free(w->klist);
        free(w->cols);
        free(w->any);
        free(w->ok);
    }
    free(st->ws);
    free(st->rperm);
    free(st->roff);
    free(st->tasks);
    free(st->jobs);
    free(st->mass);
    free(st->sa2);
    free(st->gram);
    free(st->num);
    free(st->count);
    free(st->rnum);
    free(st->rsums);
    free(st->rsum);
    free(st->rmax);
    free(st->tjoin);
}

/* Rounds one after another, each as parallel tiles; the metrics at each
 * prefix.  add_s[p] and met_s[p] get the wall seconds of adding the rounds of
 * prefix p (cumulative) and of its metrics.  Tiles are formed within slices
 * (a tile's rows, which decide its kept keys and so a row's bits, are those
 * of one slice whatever the part); the running sums are the part's rows'. */
static int tile_pass(struct ctx *c, unsigned threads, double *add_s, double *met_s)
{
    const struct lsh_attn *a = c->a;
    const struct lsh_reference *ref = c->ref;
    const struct lsh_rounds *R = c->rounds;
    const size_t m = c->r1 - c->r0, n = a->n, dv = a->d_v; /* m: the part's rows */
    const size_t S = lsh_slice_rows(), ms_max = m < S ? m : S;
    const uint32_t B = R->n_buckets, h_max = c->prefixes[c->n_prefix - 1];
    const int chunked = c->mode->mode == LSH_MODE_CHUNKED;
    /* tasks group rows by bucket, or by chunk (of the same number every round) */
    const size_t G = chunked ? c->idx[0].n_chunks : B;
    /* a slice of ms rows has at most ms / tile_rows + min(G, ms) tiles */
    const size_t tile_rows = a->causal ? TILE_ROWS / 2 : TILE_ROWS;
    size_t max_tasks = 1;
    for (size_t s0 = 0; s0 < m; s0 += S) {
        const size_t ms = m - s0 < S ? m - s0 : S;
        max_tasks += ms / tile_rows + (G < ms ? G : ms);
    }
    struct tile_state st = {0};
    c->tile = &st;
    st.ws = calloc(threads, sizeof *st.ws);
    st.rperm = malloc((m + 1) * sizeof *st.rperm);
    st.roff = malloc(((B > G ? B : G) + 1) * sizeof *st.roff);
    st.tasks = malloc(max_tasks * sizeof *st.tasks);
    st.jobs = malloc(max_tasks * sizeof *st.jobs);
    st.mass = calloc(m + 1, sizeof *st.mass);
    st.sa2 = calloc(m + 1, sizeof *st.sa2);
    st.gram = calloc(m + 1, sizeof *st.gram);
    st.num = calloc(m * dv + 1, sizeof *st.num);
    st.count = calloc(m + 1, sizeof *st.count);
    uint32_t *key = malloc((ms_max + 1) * sizeof *key);
    uint32_t *idx = malloc((ms_max + 1) * sizeof *idx);
    int rc = !st.ws || !st.rperm || !st.roff || !st.tasks || !st.jobs || !st.mass || !st.sa2 ||
                     !st.gram || !st.num || !st.count || !key || !idx
                 ? LSH_ENOMEM
                 : 0;
    if (!rc && !(st.tjoin = malloc((m * ref->kmax + 1) * sizeof *st.tjoin)))
        rc = LSH_ENOMEM;
    if (!rc && c->need_rounds &&
        (!(st.rnum = calloc(m * dv + 1, sizeof *st.rnum)) ||
         !(st.rsums = calloc(4 * m + 1, sizeof *st.rsums)) ||
         !(st.rsum = calloc(m + 1, sizeof *st.rsum)) ||
         !(st.rmax = calloc(m + 1, sizeof *st.rmax))))
        rc = LSH_ENOMEM;
    for (unsigned t = 0; t < threads && !rc; t++) {
        struct tile_ws *w = &st.ws[t];
        w->qb = malloc(TILE_ROWS * a->d * sizeof *w->qb + 1);
        /* y operands of lshlab_fma_dots and P: on cache lines; finite from the start */
        w->kd = lsh_alloc_doubles(KT_STRIDE * a->d + 1, 1);
        w->vc = lsh_alloc_doubles(TILE_KEYS * lsh_pad8(dv) + 1, 1);
        w->p = lsh_alloc_doubles(TILE_ROWS * TILE_KEYS, 0);
        w->onum = malloc(TILE_ROWS * dv * sizeof *w->onum + 1);
        if (c->need_rounds && !(w->onum_r = malloc(TILE_ROWS * dv * sizeof *w->onum_r + 1)))
            rc = LSH_ENOMEM;
        w->kj = malloc(TILE_KEYS * sizeof *w->kj);
        w->gk = malloc(TILE_KEYS * sizeof *w->gk);
        w->n_slots = tile_slots(a->d, dv, h_max);
        for (unsigned k = 0; k < w->n_slots; k++) {
            struct tile_part *pt = &w->slot[k];
            pt->kj = malloc(TILE_KEYS * sizeof *pt->kj);
            pt->kd = lsh_alloc_doubles(KT_STRIDE * a->d + 1, 0);
            pt->vc = lsh_alloc_doubles(TILE_KEYS * lsh_pad8(dv) + 1, 1);
            pt->gk = malloc(TILE_KEYS * sizeof *pt->gk);
            pt->kb = malloc((size_t)h_max * TILE_KEYS * sizeof *pt->kb);
            pt->kc = malloc((size_t)h_max * TILE_KEYS * sizeof *pt->kc);
            pt->kb_now = malloc(TILE_KEYS * sizeof *pt->kb_now);
            if (!pt->kj || !pt->kd || !pt->vc || !pt->gk || !pt->kb || !pt->kc || !pt->kb_now)
                rc = LSH_ENOMEM;
        }
        w->bi = malloc((size_t)h_max * sizeof *w->bi);
        w->ci = malloc((size_t)h_max * sizeof *w->ci);
        w->klist = chunked ? malloc((n + 1) * sizeof *w->klist) : NULL;
        w->cols = malloc(TILE_KEYS * sizeof *w->cols);
        w->any = malloc(TILE_KEYS);
        w->ok = malloc(TILE_ROWS * TILE_KEYS);
        if (!w->qb || !w->kd || !w->vc || !w->p || !w->onum || !w->kj || !w->gk || !w->bi ||
            !w->ci || (chunked && !w->klist) || !w->cols || !w->any || !w->ok)
            rc = LSH_ENOMEM;
    }
    double t = lsh_now(), add_cum = 0.0;
    size_t p = 0;
    if (!rc && c->rules && (c->mode->sink || c->mode->local))
        rc = lsh_parallel_for(threads, (m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK,
                              tile_forced_task, c);
    for (uint32_t h = 0; h < h_max && !rc; h++) {
        const struct round_index *x = &c->idx[h];
        /* Slice by slice: this round's evaluated rows by group, and within a
         * group by their buckets in rounds 0, 1, ..., h - 1 (stable sorts
         * from the last key to the first): rows that met before sit in one
         * tile, so the keys they all met before leave its GEMMs.  Causal
         * attention instead keeps a group's rows in position order, in tiles
         * of half the rows: a tile's keys past its last row then leave its
         * GEMMs, which saves more (real heads: 85M -> 63M entries).  Then
         * tiles of them. */
        st.n_tasks = 0;
        for (size_t s0 = 0; s0 < m; s0 += S) {
            const size_t ms = m - s0 < S ? m - s0 : S;
            uint32_t *rp = st.rperm + s0;
            for (size_t t = 0; t < ms; t++)
                rp[t] = (uint32_t)(c->r0 + s0 + t);
            for (size_t g = a->causal ? 1 : h + 1; g-- > 0;) {
                const int major = g == 0; /* the group of round h: the major key */
                for (size_t t = 0; t < ms; t++) {
                    const size_t r = rp[t], i = ref->rows ? ref->rows[r] : r;
                    key[t] = major && chunked ? x->qchunk[i]
                                              : R->bq[(major ? h : g - 1) * n + i];
                }
                counting_sort(key, ms, major ? (uint32_t)G : B, idx, st.roff);
                for (size_t t = 0; t < ms; t++)
                    key[t] = rp[idx[t]];
                memcpy(rp, key, ms * sizeof *key);
            }
            for (uint32_t g = 0; g < G; g++) {
                const uint64_t keys = chunked ? (uint64_t)c->mode->chunk_size * (c->mode->look_back + 1)
                                              : x->koff[g + 1] - x->koff[g];
                if (keys == 0)
                    continue; /* no keys: no pairs */
                /* tiles of equal size, none of a few rows (a poor GEMM) */
                const uint32_t rows = st.roff[g + 1] - st.roff[g];
                const uint32_t parts = (rows + tile_rows - 1) / tile_rows;
                for (uint32_t k = 0; k < parts; k++) {
                    uint32_t t0 = (uint32_t)s0 + st.roff[g] + (uint32_t)((uint64_t)rows * k / parts);
                    uint32_t t1 =
                        (uint32_t)s0 + st.roff[g] + (uint32_t)((uint64_t)rows * (k + 1) / parts);
                    st.tasks[st.n_tasks++] = (struct tile_task){g, t0, t1, (t1 - t0) * keys};
                }
            }
        }
        /* Jobs: runs of a group's tiles (which share its gathered keys), each
         * of at most a quarter of a thread's share of the round, so that
         * threads stay balanced; largest first, so that no big job is left
         * for the end.  Which thread takes a tile does not change any sum. */
        uint64_t total = 0;
        for (size_t k = 0; k < st.n_tasks; k++)
            total += st.tasks[k].pairs;
        const uint64_t cap = total / (4 * (uint64_t)threads);
        st.n_jobs = 0;
        for (size_t k = 0; k < st.n_tasks; k++) {
            struct tile_job *jb = st.n_jobs ? &st.jobs[st.n_jobs - 1] : NULL;
            if (jb && st.tasks[jb->first].g == st.tasks[k].g &&
                jb->pairs + st.tasks[k].pairs <= cap) {
                jb->count++;
                jb->pairs += st.tasks[k].pairs;
            } else {
                st.jobs[st.n_jobs++] = (struct tile_job){k, 1, st.tasks[k].pairs};
            }
        }
        qsort(st.jobs, st.n_jobs, sizeof *st.jobs, job_cmp);
        st.h = h;
        rc = lsh_parallel_for(threads, st.n_jobs, tile_job_run, c);
        double t1 = lsh_now();
        add_cum += t1 - t;
        t = t1;
        if (!rc && h + 1 == c->prefixes[p]) {
            st.p = p;
            const size_t n_blocks = (m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK; /* the part's */
            rc = lsh_parallel_for(threads, n_blocks, tile_metric_task, c);
            t1 = lsh_now();
            add_s[p] = add_cum;
            met_s[p] = t1 - t;
            t = t1;
            p++;
        }
    }
    free(key);
    free(idx);
    free_tile(&st, threads);
    c->tile = NULL;
    return rc;
}

/* ---- memory ---------------------------------------------------------------- */

struct lsh_bytes lsh_eval_bytes(const struct lsh_eval_shape *s, const struct lsh_mode_opts *mode,
                                int tiles)
{
    const size_t D = sizeof(double), U = sizeof(uint32_t), dv = s->d_v;
    const size_t H = s->h_max, B1 = (size_t)s->n_buckets + 1;
    /* n and m + 1, as allocated; saturating keeps a huge n huge */
    const size_t n1 = lsh_size_add(s->n, 1), m1 = lsh_size_add(s->m, 1);
    const int chunked = mode->mode == LSH_MODE_CHUNKED;
    const size_t L = s->separate ? lsh_size_mul(2, s->n) : s->n;
    const size_t G = chunked ? lsh_size_add(L / (mode->chunk_size ? mode->chunk_size : 1), 1) : B1;
    const size_t n_fields = (M_TOPK + s->n_topk + (s->oracle ? 2 : 0)) * S_COUNT;
    const size_t per_block = lsh_size_mul3(s->n_prefix, s->n_combine, n_fields);
    struct lsh_bytes b = {0, 0};
    /* per-round indexes (index_round) */
    size_t round = chunked ? lsh_size_add(lsh_size_mul(L, U), lsh_size_mul(n1, (s->separate ? 3 : 2) * U))
                           : lsh_size_add(lsh_size_mul(n1, U), B1 * U);
    round = lsh_size_add(round, sizeof(struct round_index));
    b.shared = lsh_size_mul(H, round);
    /* partial sums of row blocks, their total, timings; bucket stats */
    b.shared = lsh_size_add(b.shared, lsh_size_mul3(m1 / ROWS_PER_BLOCK + 2, per_block, D));
    b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(per_block, 4 * s->n_prefix + 2), D));
    b.shared = lsh_size_add(b.shared, B1 * D);
    /* while indexing, a thread's sort keys and bucket starts */
    b.per_thread = lsh_size_mul(lsh_size_add(chunked && s->separate ? L : 0, B1), U);
    /* the row workspace (every pass has it: the tile path's exact rows use it) */
    b.per_thread = lsh_size_add(b.per_thread, sizeof(struct workspace) + 2 * s->n_prefix * D);
    b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul(n1, 6 * U + 2 * D));
    b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul(lsh_size_add(dv, 1), 3 * D));
    if (s->importance) { /* p_ij, log(1 - p), two scratches by candidate; key norms, log C(H, t) */
        b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul(n1, 4 * D));
        b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(n1, s->n_prefix), D));
    }
    if (s->oracle) { /* budgets; a thread's two values by prefix and workspace */
        b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(lsh_size_mul(s->m,
                                                                                s->n_prefix), 1), U));
        b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul(s->n_prefix, 2 * D));
        b.per_thread = lsh_size_add(b.per_thread, lsh_oracle_ws_bytes(s->n, dv));
    }
    if (!tiles) { /* row_order */
        b.shared = lsh_size_add(b.shared, lsh_size_mul(m1, D));
        b.shared = lsh_size_add(b.shared, B1 * sizeof(size_t));
        return b;
    }
    /* tile_pass: rperm, roff, tasks and jobs, mass, sa2, gram, num, count;
     * key, idx (a slice's); tasks: a slice of ms rows has up to ms / tile
     * rows (TILE_ROWS / 2 under causal) + min(G, ms) tiles, and as many jobs
     * at most */
    const size_t S = lsh_slice_rows(), slices = lsh_slice_count(s->m);
    const size_t ms1 = s->m < S ? m1 : S + 1;
    size_t t = lsh_size_mul(m1, 2 * U + 3 * D);
    t = lsh_size_add(t, lsh_size_mul(ms1, 2 * U));
    t = lsh_size_add(t, lsh_size_mul(lsh_size_add(B1, G), U));
    const size_t groups = slices == 1 ? G : lsh_size_mul(slices, G) < m1 ? lsh_size_mul(slices, G) : m1;
    t = lsh_size_add(t, lsh_size_mul(lsh_size_add(m1 / (TILE_ROWS / 2), groups),
                                     sizeof(struct tile_task) + sizeof(struct tile_job)));
    t = lsh_size_add(t, lsh_size_mul(lsh_size_add(lsh_size_mul(s->m, dv), 1), D));
    t = lsh_size_add(t, lsh_size_mul(lsh_size_add(lsh_size_mul(s->m, s->kmax), 1),
                                     sizeof(uint16_t))); /* tjoin */
    if (s->rounds) /* rnum, rsums, rsum, rmax */
        t = lsh_size_add(t, lsh_size_add(lsh_size_mul(lsh_size_add(lsh_size_mul(s->m, dv), 1), D),
                                         lsh_size_mul(m1, 4 * D + 8 + U) + 3 * D));
    /* a thread's tile_ws: p and ok; kj, cols, gk, any; qb and kd; onum and
     * vc (each rounded up to whole cache lines); bi and ci; its part slots */
    size_t w = sizeof(struct tile_ws) + TILE_ROWS * TILE_KEYS * (D + 1) +
               TILE_KEYS * (2 * U + D + 1) + 4 * 64;
    w = lsh_size_add(w, lsh_size_mul3(TILE_ROWS + TILE_KEYS, lsh_size_add(s->d, 1), D));
    w = lsh_size_add(w, lsh_size_mul3(TILE_ROWS + TILE_KEYS, lsh_size_add(dv, 1), D));
    if (s->rounds) /* onum_r */
        w = lsh_size_add(w, lsh_size_mul3(TILE_ROWS, lsh_size_add(dv, 1), D));
    w = lsh_size_add(w, lsh_size_mul(H, 2 * U));
    w = lsh_size_add(w, lsh_size_mul(tile_slots(s->d, dv, H), slot_bytes(s->d, dv, H)));
    if (chunked)
        w = lsh_size_add(w, lsh_size_mul(n1, U));
    b.per_thread = lsh_size_add(b.per_thread, w);
    return b;
}

/* ---- the guard --------------------------------------------------------------- */

/* x into [lo, hi] when it lies within LSH_METRIC_TOL outside (rounding). */
static void settle(double *x, double lo, double hi)
{
    if (*x < lo && *x >= lo - LSH_METRIC_TOL)
        *x = lo;
    else if (*x > hi && *x <= hi + LSH_METRIC_TOL)
        *x = hi;
}

static void settle_metrics(struct lsh_metrics *mt, size_t n_topk)
{
    settle(&mt->mass_recall, 0.0, 1.0);
    settle(&mt->oracle_mass_recall, 0.0, 1.0);
    settle(&mt->gram_recovery, 0.0, 1.0);
    settle(&mt->density, 0.0, 1.0);
    settle(&mt->bucket_entropy, 0.0, 1.0);
    settle(&mt->kl, 0.0, INFINITY);
    for (size_t k = 0; k < n_topk; k++)
        settle(&mt->topk_recall[k], 0.0, 1.0);
}

/* A metric that is not a finite number in [lo, hi]: its name and value. */
static int out_of_range(const char *name, double x, double lo, double hi, char *why,
                        size_t why_size)
{
    if (isfinite(x) && x >= lo && x <= hi)
        return 0;
    if (why && why_size) {
        if (isinf(hi))
            snprintf(why, why_size, "metric %s is %g, not a finite number >= %g", name, x, lo);
        else
            snprintf(why, why_size, "metric %s is %g, outside [%g, %g]", name, x, lo, hi);
    }
    return LSH_EDATA;
}

int lsh_metrics_check(const struct lsh_metrics *mt, size_t n_topk, char *why, size_t why_size)
{
    const double inf = INFINITY;
    const struct { const char *name; double x, lo, hi; } v[] = {
        {"out_rel_err", mt->out_rel_err, 0, inf},    {"attn_rel_err", mt->attn_rel_err, 0, inf},
        {"mass_recall", mt->mass_recall, 0, 1},      {"kl", mt->kl, 0, inf},
        {"gram_recovery", mt->gram_recovery, 0, 1},  {"density", mt->density, 0, 1},
        {"mean_candidates", mt->mean_candidates, 0, inf},
        {"bucket_max", mt->bucket_max, 0, inf},      {"bucket_entropy", mt->bucket_entropy, 0, 1},
        {"hash_seconds", mt->hash_seconds, 0, inf},  {"eval_seconds", mt->eval_seconds, 0, inf},
        {"oracle_mass_recall", mt->oracle_mass_recall, 0, 1},
        {"oracle_out_rel_err", mt->oracle_out_rel_err, 0, inf},
        {"oracle_seconds", mt->oracle_seconds, 0, inf},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
        if (out_of_range(v[k].name, v[k].x, v[k].lo, v[k].hi, why, why_size))
            return LSH_EDATA;
    char name[48];
    for (size_t k = 0; k < n_topk; k++) {
        snprintf(name, sizeof name, "topk_recall[%zu]", k);
        if (out_of_range(name, mt->topk_recall[k], 0, 1, why, why_size))
            return LSH_EDATA;
    }
    const struct lsh_metric_se *se = mt->se;
    if (!se)
        return 0;
    const struct { const char *name; double x; } e[] = {
        {"out_rel_err_se", se->out_rel_err},     {"attn_rel_err_se", se->attn_rel_err},
        {"mass_recall_se", se->mass_recall},     {"kl_se", se->kl},
        {"empty_rows_se", se->empty_rows},       {"gram_recovery_se", se->gram_recovery},
        {"density_se", se->density},             {"mean_candidates_se", se->mean_candidates},
        {"bucket_max_se", se->bucket_max},       {"bucket_entropy_se", se->bucket_entropy},
        {"oracle_mass_recall_se", se->oracle_mass_recall},
        {"oracle_out_rel_err_se", se->oracle_out_rel_err},
    };
    for (size_t k = 0; k < sizeof e / sizeof e[0]; k++)
        if (out_of_range(e[k].name, e[k].x, 0, inf, why, why_size))
            return LSH_EDATA;
    for (size_t k = 0; se->topk_recall && k < n_topk; k++) {
        snprintf(name, sizeof name, "topk_recall_se[%zu]", k);
        if (out_of_range(name, se->topk_recall[k], 0, inf, why, why_size))
            return LSH_EDATA;
    }
    return 0;
}

/* ---- the pass -------------------------------------------------------------- */

/* Is the candidate rule other than the union of SPEC 3 (t = 1, s = w = 0)? */
static int has_rules(const struct lsh_mode_opts *mode)
{
    return mode->min_collisions > 1 || mode->sink > 0 || mode->local > 0;
}

int lsh_eval_uses_tiles(const struct lsh_mode_opts *mode, const enum lsh_combine *combines,
                        size_t n_combine, uint32_t h_max)
{
    /* tests set it to hold the row path to the oracle on the tile path's cases */
    const char *t = getenv("LSHLAB_TEST_ROW_PATH");
    if (t && !strcmp(t, "1"))
        return 0;
    /* both modes have tiles (bucket blocks, chunk windows), for union and
     * rounds with the plain rule, union with any rule (sink and local keys
     * by a pass of their own before round 0); rounds and min_collisions
     * count a pair's rounds in a byte */
    if (mode->min_collisions > 1 && h_max > TILE_ROUNDS_MAX)
        return 0;
    for (size_t k = 0; k < n_combine; k++)
        if (combines[k] == LSH_COMBINE_IMPORTANCE ||
            (combines[k] == LSH_COMBINE_ROUNDS && h_max > TILE_ROUNDS_MAX))
            return 0; /* the row path serves every combine in one pass */
    return 1;
}

void lsh_bucket_stats(const struct lsh_rounds *rounds, uint32_t H, double *bucket_max,
                      double *bucket_entropy, unsigned *warnings)
{
    const size_t n = rounds->n;
    const uint32_t B = rounds->n_buckets;
    size_t *sizes = calloc(B, sizeof *sizes);
    double bmax = 0.0, ent_sum = 0.0;
    if (!sizes) { /* cannot happen for sane B; report zeros rather than crash */
        *bucket_max = *bucket_entropy = 0.0;
        return;
    }
    for (uint32_t h = 0; h < H; h++) {
        memset(sizes, 0, B * sizeof *sizes);
        for (size_t i = 0; i < n; i++)
            sizes[rounds->bq[h * n + i]]++;
        size_t big = 0;
        double ent = 0.0;
        for (uint32_t b = 0; b < B; b++) {
            if (sizes[b] > big)
                big = sizes[b];
            if (sizes[b]) {
                double p = (double)sizes[b] / (double)n;
                ent -= p * log(p);
            }
        }
        double ratio = (double)big * (double)B / (double)n;
        if (ratio > bmax)
            bmax = ratio;
        ent_sum += B > 1 ? ent / log((double)B) : 0.0;
    }
    if (B <= 1 && warnings)
        *warnings |= LSH_WARN_ENTROPY_B1;
    *bucket_max = bmax;
    *bucket_entropy = H ? ent_sum / H : 0.0;
    free(sizes);
}

/* R = sum y / sum x over m rows and its standard error by the delta method
 * (ratio estimator): se^2 = fpc / (m (m - 1) xbar^2) sum (y - R x)^2, with fpc
 * = 1 - m/n (0 when every row is evaluated: the value is exact).  A 0/0
 * ratio is 0, with a warning flag. */
static void ratio_se(const double *acc, size_t metric, size_t m, double fpc, double *value,
                     double *se, unsigned *warnings, unsigned flag)
{
    const double *f = acc + metric * S_COUNT;
    if (f[S_X] == 0.0) {
        if (warnings)
            *warnings |= flag;
        *value = *se = 0.0;
        return;
    }
    const double R = f[S_Y] / f[S_X];
    *value = R;
    *se = 0.0;
    if (fpc > 0.0 && m > 1) {
        double ss = f[S_YY] - 2.0 * R * f[S_XY] + R * R * f[S_XX];
        double xbar = f[S_X] / (double)m;
        *se = ss > 0.0 ? sqrt(fpc * ss / ((double)m * (double)(m - 1))) / fabs(xbar) : 0.0;
    }
}

static void free_ws(struct workspace *w)
{
    free(w->keys);
    free(w->cand);
    free(w->occ);
    free(w->s);
    free(w->av);
    free(w->num);
    free(w->num_rep);
    free(w->ohat);
    free(w->t_add);
    free(w->t_metric);
    free(w->pj);
    free(w->xw);
    free(w->xe);
    free(w->lq);
    free(w->omass);
    free(w->oerr2);
    lsh_oracle_ws_free(w->ows);
}

/* Fields of one (prefix, combine): S_COUNT sums of each metric. */
static size_t fields_of(size_t n_topk, int oracle)
{
    return (M_TOPK + n_topk + (oracle ? 2 : 0)) * S_COUNT;
}

size_t lsh_eval_part_doubles(size_t rows, size_t n_topk, size_t n_prefix, size_t n_combine,
                             int oracle)
{
    const size_t blocks = rows / ROWS_PER_BLOCK + (rows % ROWS_PER_BLOCK != 0);
    if (n_topk > LSH_TOPK_MAX)
        return 0;
    const size_t per_block = lsh_size_mul3(n_prefix, n_combine, fields_of(n_topk, oracle));
    const size_t total = lsh_size_mul(blocks, per_block);
    return total == SIZE_MAX ? 0 : total;
}

/* What every pass and part refuses, whatever its rows. */
static int pass_check(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                      const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                      size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                      const struct lsh_eval_opts *opts, unsigned threads, struct lsh_error *err)
{
    const struct lsh_attn *a = ref->attn;
    if (rounds->n != a->n)
        return lsh_error_set(err, LSH_EINVAL, "eval: rounds hash %zu rows, data has %zu",
                             rounds->n, a->n);
    if (a->n_topk > LSH_TOPK_MAX)
        return lsh_error_set(err, LSH_EINVAL, "eval: at most %d topk values, got %zu", LSH_TOPK_MAX,
                             a->n_topk);
    for (size_t p = 0; p < n_prefix; p++)
        if (prefixes[p] < 1 || prefixes[p] > rounds->n_hashes ||
            (p && prefixes[p] <= prefixes[p - 1]))
            return lsh_error_set(err, LSH_EINVAL, "eval: bad n_hashes prefix %u", prefixes[p]);
    if (mode->mode == LSH_MODE_CHUNKED && mode->chunk_size == 0)
        return lsh_error_set(err, LSH_EINVAL, "eval: chunk_size must be >= 1");
    int importance = 0, rounds_c = 0;
    for (size_t cb = 0; cb < n_combine; cb++) {
        importance |= combines[cb] == LSH_COMBINE_IMPORTANCE;
        rounds_c |= combines[cb] == LSH_COMBINE_ROUNDS;
        if (combines[cb] == LSH_COMBINE_ROUNDS && has_rules(mode))
            return lsh_error_set(err, LSH_EINVAL, "eval: combine rounds is defined only with "
                                 "min_collisions 1, sink 0 and local 0 (docs/definitions.md section 4), got %u, %u, %u",
                                 mode->min_collisions, mode->sink, mode->local);
    }
    if (importance && !(opts && opts->law && opts->law->fn))
        return lsh_error_set(err, LSH_EINVAL, "eval: combine importance needs a collision law");
    const struct lsh_eval_shape shape = {
        .n = a->n, .m = ref->m, .d = a->d, .d_v = a->d_v, .n_topk = a->n_topk,
        .kmax = ref->kmax, .h_max = prefixes[n_prefix - 1], .n_buckets = rounds->n_buckets,
        .n_prefix = n_prefix, .n_combine = n_combine, .separate = rounds->bk != rounds->bq,
        .importance = importance, .rounds = rounds_c, .oracle = opts && opts->oracle,
    };
    /* one figure holds every size product below: none wraps when it does not */
    if (lsh_bytes_total(lsh_eval_bytes(&shape, mode, lsh_eval_uses_tiles(mode, combines,
                                                                        n_combine, shape.h_max)),
                        threads < 1 ? 1 : threads) == SIZE_MAX ||
        !lsh_eval_part_doubles(ref->m, a->n_topk, n_prefix, n_combine, opts && opts->oracle))
        return lsh_error_set(err, LSH_ENOMEM, "eval: %zu rows of d = %zu, d_v = %zu cannot be "
                             "addressed", a->n, a->d, a->d_v);
    return 0;
}

int lsh_eval_pass_part(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                       const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                       size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                       const struct lsh_eval_opts *opts, unsigned threads, size_t r0, size_t r1,
                       double *partials, double *seconds, struct lsh_row_dump *rows_dump,
                       struct lsh_error *err)
{
    const double t_start = lsh_now();
    const struct lsh_attn *a = ref->attn;
    if (n_prefix == 0 || n_combine == 0)
        return 0;
    int rc = pass_check(ref, rounds, mode, prefixes, n_prefix, combines, n_combine, opts,
                        threads, err);
    if (rc)
        return rc;
    const size_t S = lsh_slice_rows();
    if (!(r0 < r1 && r1 <= ref->m && r0 % S == 0 && (r1 % S == 0 || r1 == ref->m)))
        return lsh_error_set(err, LSH_EINVAL,
                             "eval: rows [%zu, %zu) of %zu are not a run of whole slices of %zu "
                             "rows",
                             r0, r1, ref->m, S);
    if (r0 < ref->r0 || r1 > ref->r1)
        return lsh_error_set(err, LSH_EINVAL,
                             "eval: rows [%zu, %zu) lie outside the reference's rows [%zu, %zu)",
                             r0, r1, ref->r0, ref->r1);
    int importance = 0;
    for (size_t cb = 0; cb < n_combine; cb++)
        importance |= combines[cb] == LSH_COMBINE_IMPORTANCE;
    const int oracle = opts && opts->oracle;
    if (threads < 1)
        threads = 1;

    const uint32_t h_max = prefixes[n_prefix - 1];
    const size_t rows = r1 - r0, n_blocks = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    struct ctx c = {
        .ref = ref, .r0 = r0, .r1 = r1, .a = a, .rounds = rounds, .mode = mode,
        .prefixes = prefixes, .n_prefix = n_prefix, .combines = combines,
        .n_combine = n_combine, .n_fields = fields_of(a->n_topk, oracle), .dump = rows_dump,
        .rules = has_rules(mode), .min_t = mode->min_collisions ? mode->min_collisions : 1,
        .importance = importance, .law = importance ? opts->law : NULL, .oracle = oracle,
        .f_oracle = M_TOPK + a->n_topk, .partials = partials,
        .otab = oracle ? opts->oracle_table : NULL,
    };
    memset(partials, 0,
           lsh_eval_part_doubles(rows, a->n_topk, n_prefix, n_combine, oracle) * sizeof *partials);
    for (size_t cb = 0; cb < n_combine; cb++) {
        c.need_rounds |= combines[cb] == LSH_COMBINE_ROUNDS;
        c.need_union |= combines[cb] == LSH_COMBINE_UNION;
    }
    c.idx = calloc(h_max, sizeof *c.idx);
    c.ws = calloc(threads, sizeof *c.ws);
    c.log_count = malloc(((size_t)h_max + 1) * sizeof *c.log_count);
    c.dlog = malloc(((size_t)h_max + 1) * sizeof *c.dlog);
    if (!c.idx || !c.ws || !c.log_count || !c.dlog)
        rc = LSH_ENOMEM;
    c.h_max = h_max;
    for (uint32_t k = 0; !rc && k <= h_max; k++) {
        c.log_count[k] = k ? log((double)k) : 0.0; /* [0]: never read */
        c.dlog[k] = k > 1 ? (double)k * c.log_count[k] - (double)(k - 1) * c.log_count[k - 1]
                          : 0.0;
    }
    if (!rc && importance) {
        c.knorm = malloc((a->n + 1) * sizeof *c.knorm);
        c.lchoose = malloc(n_prefix * sizeof *c.lchoose);
        if (!c.knorm || !c.lchoose)
            rc = LSH_ENOMEM;
        for (size_t j = 0; !rc && j < a->n; j++) {
            const double *k = a->k + j * a->d;
            double nn = 0.0;
            for (size_t e = 0; e < a->d; e++)
                nn += k[e] * k[e];
            c.knorm[j] = sqrt(nn);
        }
        for (size_t p = 0; !rc && p < n_prefix; p++) { /* log C(H, t), 0 when t > H */
            double l = 0.0;
            for (uint32_t k = 1; k <= c.min_t && c.min_t <= prefixes[p]; k++)
                l += log((double)(prefixes[p] - c.min_t + k) / (double)k);
            c.lchoose[p] = l;
        }
    }
    if (!rc && oracle && !(c.budgets = calloc(rows * n_prefix + 1, sizeof *c.budgets)))
        rc = LSH_ENOMEM;
    for (unsigned t = 0; t < threads && !rc; t++) {
        struct workspace *w = &c.ws[t];
        w->keys = calloc(a->n, sizeof *w->keys);
        w->cand = malloc(a->n * sizeof *w->cand);
        w->occ = malloc(a->n * sizeof *w->occ);
        w->s = malloc(a->n * sizeof *w->s);
        w->av = malloc(a->n * sizeof *w->av);
        w->num = malloc((a->d_v + 1) * sizeof *w->num);
        w->num_rep = malloc((a->d_v + 1) * sizeof *w->num_rep);
        w->ohat = malloc((a->d_v + 1) * sizeof *w->ohat);
        w->t_add = calloc(n_prefix, sizeof *w->t_add);
        w->t_metric = calloc(n_prefix, sizeof *w->t_metric);
        if (!w->keys || !w->cand || !w->occ || !w->s || !w->av ||
            !w->num || !w->num_rep || !w->ohat || !w->t_add || !w->t_metric)
            rc = LSH_ENOMEM;
        if (!rc && importance && (!(w->pj = malloc((a->n + 1) * sizeof *w->pj)) ||
                                  !(w->lq = malloc((a->n + 1) * sizeof *w->lq)) ||
                                  !(w->xw = malloc((a->n + 1) * sizeof *w->xw)) ||
                                  !(w->xe = malloc((a->n + 1) * sizeof *w->xe))))
            rc = LSH_ENOMEM;
        if (!rc && oracle && (!(w->omass = malloc(n_prefix * sizeof *w->omass)) ||
                              !(w->oerr2 = malloc(n_prefix * sizeof *w->oerr2)) ||
                              !(w->ows = lsh_oracle_ws_alloc(a->n, a->d_v))))
            rc = LSH_ENOMEM;
    }
    if (!rc)
        rc = lsh_parallel_for(threads, h_max, index_task, &c);
    const double t_indexed = lsh_now();
    /* per prefix: wall seconds of growing S_i up to it, and of its metrics */
    double *add_s = seconds, *met_s = seconds + n_prefix;
    memset(seconds, 0, LSH_EVAL_SECONDS(n_prefix) * sizeof *seconds);
    if (!rc && lsh_eval_uses_tiles(mode, combines, n_combine, h_max)) {
        rc = tile_pass(&c, threads, add_s, met_s);
    } else if (!rc) {
        if (!(c.order = row_order(ref, rounds, r0, r1)))
            rc = LSH_ENOMEM;
        if (!rc)
            rc = lsh_parallel_for(threads, n_blocks, block_task, &c);
        const double t_rows = lsh_now();
        /* the threads' own clocks, scaled to the wall time they shared */
        double cpu = 0.0, add_cum = 0.0;
        for (unsigned t = 0; t < threads; t++)
            for (size_t p = 0; p < n_prefix; p++)
                cpu += c.ws[t].t_add[p] + c.ws[t].t_metric[p];
        const double to_wall = cpu > 0.0 ? (t_rows - t_indexed) / cpu : 0.0;
        for (size_t p = 0; p < n_prefix; p++) {
            for (unsigned t = 0; t < threads; t++) {
                add_cum += c.ws[t].t_add[p];
                met_s[p] += c.ws[t].t_metric[p] * to_wall;
            }
            add_s[p] = add_cum * to_wall;
        }
    }
    /* the oracle, from every row's |S_i| at every prefix */
    const double t_oracle0 = lsh_now();
    if (!rc && oracle)
        rc = lsh_parallel_for(threads, n_blocks, oracle_task, &c);
    seconds[2 * n_prefix] = t_indexed - t_start;
    seconds[2 * n_prefix + 1] = oracle ? lsh_now() - t_oracle0 : 0.0;

    if (rc == LSH_EDATA || rc == LSH_EPLUGIN) { /* the failure of the first block */
        const struct workspace *first = NULL;
        for (unsigned t = 0; c.ws && t < threads; t++)
            if (c.ws[t].err_rc && (!first || c.ws[t].err_block < first->err_block))
                first = &c.ws[t];
        if (first)
            lsh_error_set(err, first->err_rc, "%s", first->err_msg);
        else
            lsh_error_set(err, rc, "eval: %s", lsh_strerror(rc));
    }
    for (uint32_t h = 0; c.idx && h < h_max; h++)
        free_index(&c.idx[h]);
    for (unsigned t = 0; c.ws && t < threads; t++)
        free_ws(&c.ws[t]);
    free(c.idx);
    free(c.order);
    free(c.ws);
    free(c.log_count);
    free(c.dlog);
    free(c.knorm);
    free(c.lchoose);
    free(c.budgets);
    if (rc == LSH_EDATA || rc == LSH_EPLUGIN)
        return rc;
    if (rc)
        return lsh_error_set(err, rc, "eval: out of memory (n = %zu)", a->n);
    return 0;
}

int lsh_eval_finish(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                    const uint32_t *prefixes, size_t n_prefix, size_t n_combine,
                    const struct lsh_eval_opts *opts, const double *partials,
                    const double *seconds, struct lsh_metrics *out, struct lsh_error *err)
{
    const struct lsh_attn *a = ref->attn;
    if (n_prefix == 0 || n_combine == 0)
        return 0;
    const int oracle = opts && opts->oracle;
    const size_t n_fields = fields_of(a->n_topk, oracle), f_oracle = M_TOPK + a->n_topk;
    const size_t n_blocks = (ref->m + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    const uint32_t h_max = prefixes[n_prefix - 1];
    const double *add_s = seconds, *met_s = seconds + n_prefix;
    const double index_s = seconds[2 * n_prefix], oracle_s = seconds[2 * n_prefix + 1];
    /* Reduce blocks in order (the same order for any thread count and any
     * cut into parts). */
    const size_t per_block = n_prefix * n_combine * n_fields;
    double *tot = calloc(per_block, sizeof *tot);
    if (!tot)
        return lsh_error_set(err, LSH_ENOMEM, "eval: out of memory (n = %zu)", a->n);
    for (size_t b = 0; b < n_blocks; b++)
        for (size_t f = 0; f < per_block; f++)
            tot[f] += partials[b * per_block + f];
    /* standard errors only for a sampled reference, with the finite
     * population correction of sampling without replacement */
    const double fpc = ref->rows ? 1.0 - (double)ref->m / (double)a->n : 0.0;
    for (size_t p = 0; p < n_prefix; p++) {
        for (size_t cb = 0; cb < n_combine; cb++) {
            const double *f = tot + (p * n_combine + cb) * n_fields;
            struct lsh_metrics *mt = &out[p * n_combine + cb];
            struct lsh_metric_se *se = mt->se;
            unsigned wflags = 0;
            double v, e;
            ratio_se(f, M_OUT, ref->m, fpc, &v, &e, &wflags, LSH_WARN_OUT_ZERO);
            mt->out_rel_err = sqrt(v);
            ratio_se(f, M_ATTN, ref->m, fpc, &v, &e, &wflags, LSH_WARN_ATTN_ZERO);
            mt->attn_rel_err = sqrt(v);
            ratio_se(f, M_KL, ref->m, fpc, &mt->kl, se ? &se->kl : &e, NULL, 0);
            ratio_se(f, M_EMPTY, ref->m, fpc, &v, &e, NULL, 0);
            mt->empty_rows = (uint64_t)f[M_EMPTY * S_COUNT + S_Y];
            ratio_se(f, M_MASS, ref->m, fpc, &mt->mass_recall, se ? &se->mass_recall : &e,
                     NULL, 0);
            ratio_se(f, M_GRAM, ref->m, fpc, &mt->gram_recovery,
                     se ? &se->gram_recovery : &e, &wflags, LSH_WARN_GRAM_ZERO);
            ratio_se(f, M_DENSITY, ref->m, fpc, &mt->density, se ? &se->density : &e,
                     NULL, 0);
            ratio_se(f, M_MEANCAND, ref->m, fpc, &mt->mean_candidates,
                     se ? &se->mean_candidates : &e, NULL, 0);
            for (size_t k = 0; k < a->n_topk; k++)
                ratio_se(f, M_TOPK + k, ref->m, fpc, &mt->topk_recall[k],
                         se && se->topk_recall ? &se->topk_recall[k] : &e, NULL, 0);
            if (se) {
                /* sqrt(R): delta method, d sqrt(R) = dR / (2 sqrt(R)) */
                ratio_se(f, M_OUT, ref->m, fpc, &v, &e, NULL, 0);
                se->out_rel_err = v > 0.0 ? e / (2.0 * sqrt(v)) : 0.0;
                ratio_se(f, M_ATTN, ref->m, fpc, &v, &e, NULL, 0);
                se->attn_rel_err = v > 0.0 ? e / (2.0 * sqrt(v)) : 0.0;
                ratio_se(f, M_EMPTY, ref->m, fpc, &v, &e, NULL, 0);
                se->empty_rows = e * (double)ref->m; /* of the count */
                se->bucket_max = se->bucket_entropy = 0.0; /* all rows are hashed */
                se->oracle_mass_recall = se->oracle_out_rel_err = 0.0;
            }
            mt->oracle_mass_recall = mt->oracle_out_rel_err = 0.0;
            if (oracle) {
                ratio_se(f, f_oracle, ref->m, fpc, &mt->oracle_mass_recall,
                         se ? &se->oracle_mass_recall : &e, NULL, 0);
                ratio_se(f, f_oracle + 1, ref->m, fpc, &v, &e, NULL, 0);
                mt->oracle_out_rel_err = sqrt(v);
                if (se)
                    se->oracle_out_rel_err = v > 0.0 ? e / (2.0 * sqrt(v)) : 0.0;
            }
            lsh_bucket_stats(rounds, prefixes[p], &mt->bucket_max, &mt->bucket_entropy,
                             &wflags);
            mt->warnings = wflags;
            settle_metrics(mt, a->n_topk);
            /* This point's own share: indexing of its rounds, growing S_i
             * through its rounds, and its metrics (shared by combines). */
            mt->eval_seconds = index_s * prefixes[p] / h_max + add_s[p] + met_s[p];
            mt->oracle_seconds = oracle_s / (double)(n_prefix * n_combine);
        }
    }
    free(tot);
    return 0;
}

int lsh_eval_pass(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                  const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                  size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                  const struct lsh_eval_opts *opts, unsigned threads, struct lsh_metrics *out,
                  struct lsh_row_dump *rows_dump, struct lsh_error *err)
{
    if (n_prefix == 0 || n_combine == 0)
        return 0;
    int rc = pass_check(ref, rounds, mode, prefixes, n_prefix, combines, n_combine, opts,
                        threads, err);
    if (rc)
        return rc;
    const size_t count = lsh_eval_part_doubles(ref->m, ref->attn->n_topk, n_prefix, n_combine,
                                               opts && opts->oracle);
    double *partials = malloc(count * sizeof *partials);
    double *seconds = malloc(LSH_EVAL_SECONDS(n_prefix) * sizeof *seconds);
    if (!partials || !seconds)
        rc = lsh_error_set(err, LSH_ENOMEM, "eval: out of memory (n = %zu)", ref->attn->n);
    if (!rc)
        rc = lsh_eval_pass_part(ref, rounds, mode, prefixes, n_prefix, combines, n_combine, opts,
                                threads, 0, ref->m, partials, seconds, rows_dump, err);
    if (!rc)
        rc = lsh_eval_finish(ref, rounds, prefixes, n_prefix, n_combine, opts, partials, seconds,
                             out, err);
    free(partials);
    free(seconds);
    return rc;
}
