/* test_oracle.c - the budget-matched oracle (oracle.c, SPEC 13) against a
 * brute force written here: U_i straight from SPEC 3, every key of U_i sorted
 * with qsort by (score descending, j ascending), and the mass and the output
 * error of the softmax over the first m keys summed in long double.  The
 * scores are the contract's (scale * lsh_attn_raw), lse_i and O_i the
 * reference's: both are inputs of the oracle, not what it computes.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "reference.h"

/* ---- our own generator: xorshift64* and Box-Muller ------------------------ */

struct xrng {
    uint64_t s;
};

static uint64_t xr_next(struct xrng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

static double xr_normal(struct xrng *r)
{
    double u1 = ((double)(xr_next(r) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)(xr_next(r) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925286766559 * u2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    cr_assert_not_null(p);
    return p;
}

/* ---- the brute force ------------------------------------------------------ */

struct bkey {
    double s;
    size_t j;
};

static int by_score_then_j(const void *pa, const void *pb)
{
    const struct bkey *a = pa, *b = pb;
    if (a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return a->j < b->j ? -1 : a->j > b->j;
}

/* U_i of SPEC 3 into keys (with scores); returns |U_i|. */
static size_t brute_u(const struct lsh_attn *a, size_t i, struct bkey *keys)
{
    size_t u = 0;
    for (size_t j = 0; j < a->n; j++) {
        if (a->exclude_self && j == i)
            continue;
        if (a->causal && j > i)
            continue;
        keys[u++] = (struct bkey){a->scale * lsh_attn_raw(a, i, j), j};
    }
    if (u == 0)
        keys[u++] = (struct bkey){a->scale * lsh_attn_raw(a, i, i), i};
    return u;
}

/* Mass and ||O_i - O^O_i||^2 of the best m keys for every m = 1..u (keys
 * sorted), into mass[m] and err2[m]: plain running sums in long double. */
static void brute_prefixes(const struct lsh_attn *a, const struct bkey *keys, size_t u,
                           double lse, const double *o, double *mass, double *err2)
{
    long double ms = 0.0L, den = 0.0L;
    long double *num = xcalloc(a->d_v, sizeof *num);
    for (size_t t = 0; t < u; t++) {
        ms += expl((long double)keys[t].s - lse);
        long double w = expl((long double)keys[t].s - keys[0].s);
        den += w;
        long double e2 = 0.0L;
        for (size_t e = 0; e < a->d_v; e++) {
            num[e] += w * a->v[keys[t].j * a->d_v + e];
            long double diff = o[e] - num[e] / den;
            e2 += diff * diff;
        }
        mass[t + 1] = (double)ms;
        err2[t + 1] = (double)e2;
    }
    free(num);
}

/* ---- problems ------------------------------------------------------------- */

struct problem {
    size_t n, d, dv;
    int separate;        /* keys K of their own, else k = q */
    int exclude_self, causal;
    size_t n_distinct;   /* 0: every key row drawn; else rows repeat a pool this size */
    double scale;        /* 0: 1/sqrt(d) */
    int sampled;         /* evaluate rows 0, 1, every third and the last */
    int small_budgets;   /* budgets at most |U_i| / 4 (the sampled first cut) */
    uint64_t seed;
};

struct data {
    double *q, *k, *v;
    size_t *rows, m;
    struct lsh_attn attn;
};

static void make_data(const struct problem *p, struct data *D)
{
    struct xrng r = {p->seed * UINT64_C(0x9E3779B97F4A7C15) + 12345};
    const size_t n = p->n, d = p->d;
    D->q = xcalloc(n * d, sizeof(double));
    D->k = p->separate ? xcalloc(n * d, sizeof(double)) : D->q;
    D->v = xcalloc(n * p->dv, sizeof(double));
    for (size_t t = 0; t < n * d; t++)
        D->q[t] = xr_normal(&r);
    if (p->separate)
        for (size_t t = 0; t < n * d; t++)
            D->k[t] = xr_normal(&r);
    if (p->n_distinct) /* duplicate rows of K (of Q when shared): tied scores */
        for (size_t j = p->n_distinct; j < n; j++)
            memcpy(D->k + j * d, D->k + (xr_next(&r) % p->n_distinct) * d, d * sizeof(double));
    for (size_t t = 0; t < n * p->dv; t++)
        D->v[t] = 2.385 * xr_normal(&r) + 0.5;
    D->rows = NULL;
    D->m = n;
    if (p->sampled) {
        D->rows = xcalloc(n, sizeof *D->rows);
        D->m = 0;
        for (size_t i = 0; i < n; i++)
            if (i < 2 || i % 3 == 0 || i == n - 1)
                D->rows[D->m++] = i;
    }
    D->attn = (struct lsh_attn){
        .n = n, .d = d, .d_v = p->dv, .q = D->q, .k = D->k, .v = D->v, .gnorm = NULL,
        .scale = p->scale > 0 ? p->scale : 1.0 / sqrt((double)d),
        .exclude_self = p->exclude_self, .causal = p->causal, .n_topk = 0, .topk = NULL,
    };
}

static void free_data(struct data *D)
{
    if (D->k != D->q)
        free(D->k);
    free(D->q);
    free(D->v);
    free(D->rows);
}

static struct lsh_reference *reference(const struct data *D, size_t cache_bytes)
{
    struct lsh_reference *ref = NULL;
    struct lsh_error err;
    memset(&err, 0, sizeof err);
    int rc = lsh_reference_compute(&D->attn, D->rows, D->rows ? D->m : 0, 1, cache_bytes, &ref,
                                   &err);
    cr_assert_eq(rc, 0, "lsh_reference_compute: %s", err.message);
    cr_assert_eq(ref->raw != NULL, cache_bytes != 0);
    return ref;
}

#define MAX_BUDGETS 12

/* Budgets for a row with |U_i| = u, in no order, with repeats and values to
 * clamp (0 and past u). */
static size_t budgets_for(size_t u, size_t row, int small, uint32_t *b)
{
    size_t nb = 0;
    if (small) {
        b[nb++] = (uint32_t)(u / 8 + row % 5);
        b[nb++] = 1;
        b[nb++] = (uint32_t)(u / 4);
        b[nb++] = 5;
        b[nb++] = (uint32_t)(u / 20 + 1);
        b[nb++] = 5;
        return nb;
    }
    b[nb++] = (uint32_t)(u / 2 + row % 3);
    b[nb++] = 1;
    b[nb++] = (uint32_t)u;
    b[nb++] = (uint32_t)(u / 3 + 1);
    b[nb++] = 0;
    b[nb++] = (uint32_t)(u + 7);
    b[nb++] = (uint32_t)(u / 2 + row % 3);
    b[nb++] = 2;
    b[nb++] = (uint32_t)(u > 1 ? u - 1 : 1);
    b[nb++] = 1;
    return nb;
}

/* Every evaluated row, with and without the score cache, against the brute
 * force; the two must also agree bit for bit (the cache holds lsh_attn_raw's
 * bits and the reference is the same with or without it). */
static void check_data(const struct problem *p, const struct data *D)
{
    const struct lsh_attn *a = &D->attn;
    struct lsh_reference *ref[2] = {reference(D, 0), reference(D, SIZE_MAX)};
    struct lsh_oracle_ws *ws = lsh_oracle_ws_alloc(p->n, p->dv);
    cr_assert_not_null(ws);
    struct bkey *keys = xcalloc(p->n, sizeof *keys);
    double *bmass = xcalloc(p->n + 1, sizeof *bmass), *berr2 = xcalloc(p->n + 1, sizeof *berr2);
    double vmax = 0.0;
    for (size_t t = 0; t < p->n * p->dv; t++)
        vmax = fabs(D->v[t]) > vmax ? fabs(D->v[t]) : vmax;
    const double err_tol = 1e-12 * vmax * sqrt((double)p->dv);

    for (size_t r = 0; r < D->m; r++) {
        const size_t i = D->rows ? D->rows[r] : r;
        const size_t u = brute_u(a, i, keys);
        cr_assert_eq(ref[0]->u_count[r], u, "row %zu: |U_i|", i);
        qsort(keys, u, sizeof *keys, by_score_then_j);
        brute_prefixes(a, keys, u, ref[0]->lse[r], ref[0]->out + r * p->dv, bmass, berr2);
        uint32_t b[MAX_BUDGETS];
        const size_t nb = budgets_for(u, r, p->small_budgets, b);
        double mass[2][MAX_BUDGETS], err2[2][MAX_BUDGETS];
        for (int c = 0; c < 2; c++)
            lsh_oracle_row(ref[c], r, b, nb, ws, mass[c], err2[c]);
        for (size_t t = 0; t < nb; t++) {
            const size_t m = b[t] < 1 ? 1 : b[t] > u ? u : b[t];
            const double bm = bmass[m], be = berr2[m];
            cr_assert(mass[0][t] == mass[1][t] && err2[0][t] == err2[1][t],
                      "row %zu budget %u: cache %.17g %.17g, recomputed %.17g %.17g", i, b[t],
                      mass[1][t], err2[1][t], mass[0][t], err2[0][t]);
            cr_assert(isfinite(mass[0][t]) && isfinite(err2[0][t]), "row %zu budget %u: %g %g",
                      i, b[t], mass[0][t], err2[0][t]);
            cr_assert(fabs(mass[0][t] - bm) <= 1e-12 * bm + 1e-300,
                      "row %zu budget %u (m %zu of %zu): mass %.17g, brute force %.17g", i, b[t],
                      m, u, mass[0][t], bm);
            cr_assert(fabs(sqrt(err2[0][t]) - sqrt(be)) <= 1e-9 * sqrt(be) + err_tol,
                      "row %zu budget %u (m %zu of %zu): err2 %.17g, brute force %.17g", i, b[t],
                      m, u, err2[0][t], be);
        }
    }
    free(keys);
    free(bmass);
    free(berr2);
    lsh_oracle_ws_free(ws);
    lsh_reference_free(ref[0]);
    lsh_reference_free(ref[1]);
}

static void check_problem(const struct problem *p)
{
    struct data D;
    make_data(p, &D);
    check_data(p, &D);
    free_data(&D);
}

Test(oracle, matches_brute_force_shared_keys_exclude_self)
{
    check_problem(&(struct problem){.n = 53, .d = 6, .dv = 5, .exclude_self = 1, .seed = 1});
}

Test(oracle, ties_go_to_the_smaller_key_index)
{
    /* 40 key rows from a pool of 4: every budget cuts through a tie */
    check_problem(&(struct problem){.n = 40, .d = 5, .dv = 3, .separate = 1, .n_distinct = 4,
                                    .seed = 2});
    check_problem(&(struct problem){.n = 37, .d = 4, .dv = 2, .exclude_self = 1,
                                    .n_distinct = 3, .seed = 3});
}

Test(oracle, causal_rows_with_and_without_self)
{
    check_problem(&(struct problem){.n = 41, .d = 7, .dv = 4, .exclude_self = 1, .causal = 1,
                                    .n_distinct = 9, .seed = 4});
    check_problem(&(struct problem){.n = 33, .d = 3, .dv = 6, .separate = 1, .causal = 1,
                                    .seed = 5});
}

Test(oracle, separate_keys_sampled_rows)
{
    check_problem(&(struct problem){.n = 70, .d = 8, .dv = 7, .separate = 1, .sampled = 1,
                                    .n_distinct = 20, .seed = 6});
    check_problem(&(struct problem){.n = 47, .d = 5, .dv = 4, .exclude_self = 1, .causal = 1,
                                    .sampled = 1, .seed = 7});
}

Test(oracle, long_rows_take_the_partial_sort)
{
    /* |U_i| in the hundreds: quicksort partitions, not only insertion sort */
    check_problem(&(struct problem){.n = 600, .d = 4, .dv = 3, .separate = 1,
                                    .n_distinct = 150, .sampled = 1, .seed = 8});
}

Test(oracle, small_budgets_of_long_rows_take_the_sampled_cut)
{
    check_problem(&(struct problem){.n = 700, .d = 5, .dv = 3, .separate = 1,
                                    .n_distinct = 100, .sampled = 1, .small_budgets = 1,
                                    .seed = 14});
    check_problem(&(struct problem){.n = 650, .d = 4, .dv = 2, .exclude_self = 1,
                                    .causal = 1, .sampled = 1, .small_budgets = 1, .seed = 15});
}

Test(oracle, a_sample_of_the_best_keys_still_gives_the_best_set)
{
    /* d = 1, every q = 1, so s_ij = k_j / sqrt(1): the keys the first cut
     * samples (every 10th of 640) are the 64 best, so its pivot leaves fewer
     * than the budget before it and the selection must go on past it. */
    struct problem p = {.n = 640, .d = 1, .dv = 2, .separate = 1, .sampled = 1,
                        .small_budgets = 1, .seed = 16};
    struct data D;
    make_data(&p, &D);
    for (size_t j = 0; j < p.n; j++) {
        D.q[j] = 1.0;
        D.k[j] = j % 10 == 0 ? 100.0 + 0.125 * (double)j : D.k[j];
    }
    check_data(&p, &D);
    free_data(&D);
}

Test(oracle, huge_scores_give_exact_errors_and_no_nan)
{
    /* scores spread over thousands: exp(s) overflows, and every A_ij but the
     * largest underflows, so only the max shift gets O^O right */
    check_problem(&(struct problem){.n = 45, .d = 6, .dv = 4, .separate = 1, .scale = 900.0,
                                    .n_distinct = 10, .seed = 9});
    check_problem(&(struct problem){.n = 30, .d = 4, .dv = 3, .exclude_self = 1, .causal = 1,
                                    .scale = 3000.0, .seed = 10});
}

Test(oracle, fallback_rows_attend_to_themselves)
{
    /* n = 1 with exclude_self, and row 0 of a causal problem: U_i = {i} */
    check_problem(&(struct problem){.n = 1, .d = 3, .dv = 2, .exclude_self = 1, .seed = 11});
    check_problem(&(struct problem){.n = 5, .d = 3, .dv = 2, .exclude_self = 1, .causal = 1,
                                    .seed = 12});
}

Test(oracle, hand_worked_three_keys)
{
    /* Three queries q = 1, keys 2, 3, 3 (d = 1, scale 1, separate keys):
     * s = (2, 3, 3) in every row; the order is j = 1, 2 (the tie to the
     * smaller j), then 0.  v = (4, 10, -3). */
    double q[3] = {1, 1, 1}, k[3] = {2, 3, 3}, v[3] = {4, 10, -3};
    struct lsh_attn a = {.n = 3, .d = 1, .d_v = 1, .q = q, .k = k, .v = v, .scale = 1.0};
    struct lsh_reference *ref = NULL;
    struct lsh_error err;
    memset(&err, 0, sizeof err);
    cr_assert_eq(lsh_reference_compute(&a, NULL, 0, 1, 0, &ref, &err), 0, "%s", err.message);
    struct lsh_oracle_ws *ws = lsh_oracle_ws_alloc(3, 1);
    const double e2 = exp(2.0), e3 = exp(3.0), Z = e2 + 2 * e3;
    const double o = (4 * e2 + 10 * e3 - 3 * e3) / Z;
    uint32_t b[4] = {3, 1, 2, 1};
    double mass[4], err2[4];
    lsh_oracle_row(ref, 2, b, 4, ws, mass, err2);
    const double want_mass[4] = {1.0, e3 / Z, 2 * e3 / Z, e3 / Z};
    const double want_out[4] = {o, 10.0, 3.5, 10.0};
    for (int t = 0; t < 4; t++) {
        cr_assert_float_eq(mass[t], want_mass[t], 1e-14, "budget %u: mass %.17g", b[t], mass[t]);
        cr_assert_float_eq(err2[t], (o - want_out[t]) * (o - want_out[t]), 1e-12,
                           "budget %u: err2 %.17g", b[t], err2[t]);
    }
    lsh_oracle_ws_free(ws);
    lsh_reference_free(ref);
}

Test(oracle, a_budget_does_not_depend_on_the_others)
{
    struct problem p = {.n = 90, .d = 6, .dv = 9, .separate = 1, .n_distinct = 30, .seed = 13};
    struct data D;
    make_data(&p, &D);
    struct lsh_reference *ref = reference(&D, 0);
    struct lsh_oracle_ws *ws = lsh_oracle_ws_alloc(p.n, p.dv);
    for (size_t r = 0; r < D.m; r += 7) {
        uint32_t b[MAX_BUDGETS];
        size_t nb = budgets_for(p.n, r, 0, b);
        double mass[MAX_BUDGETS], err2[MAX_BUDGETS];
        lsh_oracle_row(ref, r, b, nb, ws, mass, err2);
        for (size_t t = 0; t < nb; t++) {
            double m1, e1;
            lsh_oracle_row(ref, r, b + t, 1, ws, &m1, &e1);
            cr_assert(m1 == mass[t] && e1 == err2[t], "row %zu budget %u alone: %a %a vs %a %a",
                      r, b[t], m1, e1, mass[t], err2[t]);
        }
    }
    lsh_oracle_ws_free(ws);
    lsh_reference_free(ref);
    free_data(&D);
}

/* The oracle table: a row's first call fills every budget, later calls look
 * them up; each gives the bits of lsh_oracle_row, whichever budgets the
 * filling call had (causal and sampled rows, U_i of every size, clamping). */
Test(oracle, table_gives_the_bits_of_the_walk_for_every_budget)
{
    struct problem ps[2] = {
        {.n = 90, .d = 6, .dv = 9, .separate = 1, .n_distinct = 30, .seed = 14},
        {.n = 77, .d = 5, .dv = 3, .causal = 1, .exclude_self = 1, .sampled = 1, .seed = 15},
    };
    for (int c = 0; c < 2; c++) {
        struct data D;
        make_data(&ps[c], &D);
        struct lsh_reference *ref = reference(&D, 0);
        struct lsh_oracle_ws *ws = lsh_oracle_ws_alloc(ps[c].n, ps[c].dv);
        struct lsh_oracle_table *tab = lsh_oracle_table_alloc(ref);
        cr_assert_not_null(tab);
        cr_assert_geq(lsh_oracle_table_bytes(ref), 16 * D.m);
        for (int pass = 0; pass < 2; pass++)
            for (size_t r = 0; r < D.m; r++) {
                uint32_t b[MAX_BUDGETS];
                size_t nb = budgets_for(ps[c].n, r + (size_t)pass, pass, b);
                b[nb++] = 0;                     /* clamped to 1 */
                b[nb++] = (uint32_t)ps[c].n + 5; /* clamped to |U_i| */
                double m0[MAX_BUDGETS + 2], e0[MAX_BUDGETS + 2];
                double m1[MAX_BUDGETS + 2], e1[MAX_BUDGETS + 2];
                lsh_oracle_row(ref, r, b, nb, ws, m0, e0);
                lsh_oracle_row_table(ref, r, b, nb, ws, tab, m1, e1);
                for (size_t t = 0; t < nb; t++)
                    cr_assert(!memcmp(&m0[t], &m1[t], sizeof m0[t]) &&
                                  !memcmp(&e0[t], &e1[t], sizeof e0[t]),
                              "case %d pass %d row %zu budget %u: table %a %a, walk %a %a", c,
                              pass, r, b[t], m1[t], e1[t], m0[t], e0[t]);
            }
        lsh_oracle_table_free(tab);
        lsh_oracle_ws_free(ws);
        lsh_reference_free(ref);
        free_data(&D);
    }
}

Test(oracle, workspace_size_saturates)
{
    cr_assert_eq(lsh_oracle_ws_bytes(SIZE_MAX / 4, 8), SIZE_MAX);
    cr_assert_eq(lsh_oracle_ws_bytes(8, SIZE_MAX / 2), SIZE_MAX);
    cr_assert_null(lsh_oracle_ws_alloc(SIZE_MAX / 4, 8));
    cr_assert_geq(lsh_oracle_ws_bytes(100, 4), 100 * (sizeof(double) + sizeof(uint32_t)));
}
