/* test_strategies_today.c - the strategies of SPEC 12.2 (crosspolytope,
 * sortlsh, smyrf) against hand-worked answers and brute-force computations
 * written from the SPEC, not from the plugins. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "registry.h"
#include "rng.h"

static struct lsh_registry *reg;

static void setup(void)
{
    reg = lsh_registry_alloc();
    cr_assert(reg);
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_registry_load_default(reg, &err), 0, "%s", err.message);
}

static void teardown(void)
{
    lsh_registry_free(reg);
}

TestSuite(today, .init = setup, .fini = teardown, .timeout = 120);

static const struct lsh_strategy *find(const char *name)
{
    const struct lsh_strategy *s = lsh_registry_find(reg, name);
    cr_assert(s, "strategy %s is not registered", name);
    return s;
}

static struct lsh_param_value int_value(int64_t i)
{
    return (struct lsh_param_value){.type = LSH_PARAM_INT, .i = i};
}

static void gaussian(uint64_t seed, double *x, size_t count, double scale)
{
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    for (size_t i = 0; i < count; i++)
        x[i] = scale * lsh_rng_normal(rng);
    lsh_rng_free(rng);
}

/* ---- driving a plugin through the host ---------------------------------------- */

struct exported {
    char name[64];
    double *data;
    size_t rows, cols;
};

static int keep_array(void *ctx, const char *name, const double *data, size_t rows, size_t cols,
                      struct lsh_error *err)
{
    (void)err;
    struct exported *e = ctx;
    cr_assert_null(e->data, "more than one exported array");
    snprintf(e->name, sizeof e->name, "%s", name);
    e->data = malloc((rows * cols > 0 ? rows * cols : 1) * sizeof *e->data);
    memcpy(e->data, data, rows * cols * sizeof *e->data);
    e->rows = rows;
    e->cols = cols;
    return 0;
}

/* One round (seed) of s: buckets of q (and of k: NULL, == q for shared keys,
 * or other rows), and the exported array.  Returns lsh_host_round_bucket's code. */
static int run_round(const struct lsh_strategy *s, const struct lsh_param_value *v, size_t nv,
                     uint32_t b, size_t d, uint64_t seed, const double *q, size_t n_q,
                     uint32_t *bq, const double *k, size_t n_k, uint32_t *bk,
                     struct exported *ex, struct lsh_error *err)
{
    struct lsh_host_point pt = {.strategy = s, .params = "", .values = v, .n_values = nv,
                                .n_buckets = b, .d = d,
                                .n_rows = k && k != q ? n_q + n_k : n_q};
    struct lsh_host_round *r = NULL;
    lsh_error_clear(err);
    cr_assert_eq(lsh_host_round_open(&pt, 0, seed, &r, err), 0, "%s", err->message);
    struct lsh_host_rows rq = {q, n_q, bq}, rk = {k, n_k, bk};
    int rc = lsh_host_round_bucket(r, &rq, k ? &rk : NULL, 0, err);
    if (ex) {
        memset(ex, 0, sizeof *ex);
        struct lsh_error xerr;
        cr_assert_eq(lsh_host_round_export(r, keep_array, ex, &xerr), 0, "%s", xerr.message);
        cr_assert_not_null(ex->data, "%s exported nothing", s->name);
    }
    lsh_host_round_close(r);
    return rc;
}

/* check() through the host: 0, or LSH_EPLUGIN with the reason in why. */
static int host_check(const struct lsh_strategy *s, const struct lsh_param_value *v, size_t nv,
                      uint32_t b, size_t d, size_t n_rows, char *why, size_t size)
{
    struct lsh_host_point pt = {.strategy = s, .params = "", .values = v, .n_values = nv,
                                .n_buckets = b, .d = d, .n_rows = n_rows};
    why[0] = 0;
    return lsh_host_check(&pt, "on dataset 't'", why, size);
}

static int sink_array(struct lsh_sink *sink, const char *name, const double *data, size_t rows,
                      size_t cols)
{
    return keep_array(sink->ctx, name, data, rows, cols, NULL);
}

/* ---- calling a plugin with scripted draws -------------------------------------- */

struct script {
    const double *normals;
    const uint64_t *ints;
    size_t n_normals, n_ints, next_normal, next_int;
};

static double script_normal(struct lsh_rng *rng)
{
    struct script *s = (struct script *)(void *)rng;
    cr_assert_lt(s->next_normal, s->n_normals, "the plugin drew more normals than scripted");
    return s->normals[s->next_normal++];
}

static double script_uniform(struct lsh_rng *rng)
{
    (void)rng;
    cr_assert_fail("no uniform draws are scripted");
    return 0;
}

static uint64_t script_uniform_int(struct lsh_rng *rng, uint64_t n)
{
    struct script *s = (struct script *)(void *)rng;
    cr_assert_eq(n, 2, "the diagonals are drawn as uniform_int(2)");
    cr_assert_lt(s->next_int, s->n_ints, "the plugin drew more integers than scripted");
    return s->ints[s->next_int++];
}

/* A state of s, initialised with the draws of sc (every one of them used). */
static void *scripted_init(const struct lsh_strategy *s, const struct lsh_param_value *v,
                           size_t nv, uint32_t b, size_t d, size_t n_rows, struct script *sc,
                           struct lsh_host *host)
{
    *host = *lsh_host_services();
    host->normal = script_normal;
    host->uniform = script_uniform;
    host->uniform_int = script_uniform_int;
    struct lsh_round round = {.d = d, .n_buckets = b, .n_rows = n_rows, .params = v,
                              .n_params = nv, .rng = (struct lsh_rng *)(void *)sc,
                              .host = host};
    size_t size = (s->state_size + 63) / 64 * 64;
    void *state = aligned_alloc(64, size ? size : 64);
    cr_assert(state);
    memset(state, 0, size ? size : 64);
    struct lsh_strategy_error err = {{0}};
    cr_assert_eq(s->init(state, &round, &err), 0, "%s", err.message);
    cr_assert_eq(sc->next_normal, sc->n_normals, "drew %zu normals, scripted %zu",
                 sc->next_normal, sc->n_normals);
    cr_assert_eq(sc->next_int, sc->n_ints, "drew %zu integers, scripted %zu", sc->next_int,
                 sc->n_ints);
    return state;
}

static void scripted_free(const struct lsh_strategy *s, void *state)
{
    s->fini(state);
    free(state);
}

/* ---- crosspolytope -------------------------------------------------------------- */

/* The 4 x 4 Sylvester Hadamard matrix, unnormalised, written out. */
static const double H4[4][4] = {
    {1, 1, 1, 1},
    {1, -1, 1, -1},
    {1, 1, -1, -1},
    {1, -1, -1, 1},
};

/* The orthonormal Sylvester matrix of order n (4 or 8): H8 = [H4 H4; H4 -H4]. */
static double hadamard(size_t n, size_t i, size_t j)
{
    if (n == 4)
        return H4[i][j] / 2;
    cr_assert_eq(n, 8);
    double h = H4[i % 4][j % 4] / sqrt(8.0);
    return i >= 4 && j >= 4 ? -h : h;
}

/* The bucket of x by SPEC 12.2 with explicit matrix products: d' = n. */
static uint32_t crosspolytope_brute(const double *x, size_t d, size_t n, const double *diag,
                                    unsigned k, unsigned rotations, uint32_t m)
{
    uint32_t b = 0, stride = 1;
    for (unsigned t = 0; t < k; t++) {
        double y[8] = {0}, z[8];
        memcpy(y, x, d * sizeof *y); /* zero-padded */
        for (unsigned r = 0; r < rotations; r++) {
            const double *dr = diag + ((size_t)t * rotations + r) * n;
            for (size_t i = 0; i < n; i++) {
                z[i] = 0;
                for (size_t j = 0; j < n; j++)
                    z[i] += hadamard(n, i, j) * dr[j] * y[j];
            }
            memcpy(y, z, sizeof z);
        }
        double concat[16];
        for (uint32_t j = 0; j < m; j++) {
            concat[j] = y[j];
            concat[m + j] = -y[j];
        }
        uint32_t a = 0;
        for (uint32_t j = 1; j < 2 * m; j++)
            if (concat[j] > concat[a]) /* strictly: the smaller index keeps a tie */
                a = j;
        b += a * stride;
        stride *= 2 * m;
    }
    return b;
}

Test(today, crosspolytope_4d_by_hand)
{
    /* x = (-2.385, 1, 0.5, 0.25); D1 = diag(+1, -1, +1, +1) (draws 0 1 0 0).
     * D1 x = (-2.385, -1, 0.5, 0.25); H4 D1 x / 2 = (-2.635, -1.135, -4.135, -1.635) / 2
     *      = y1 = (-1.3175, -0.5675, -2.0675, -0.8175).
     * One rotation: B = 8 (m = 4): concat(y1, -y1) peaks at -y1[2] = 2.0675: bucket 6;
     *   B = 4 (m = 2): (-1.3175, -0.5675, 1.3175, 0.5675): bucket 2;
     *   B = 2 (m = 1): (-1.3175, 1.3175): bucket 1.
     * Two rotations, D2 = diag(-1, +1, +1, -1) (draws 1 0 0 1):
     *   D2 y1 = (1.3175, -0.5675, -2.0675, 0.8175); H4 of it / 2 = (-0.5, -1, 2, 4.77) / 2
     *   = y2 = (-0.25, -0.5, 1, 2.385): B = 8: bucket 3; B = 4: (-0.25, -0.5, 0.25, 0.5):
     *   bucket 3; B = 2: (-0.25, 0.25): bucket 1.
     * k = 2, one rotation each, m = 2 (B = 16): polytope 0 uses D1: a_0 = 2; polytope 1
     *   uses D = -I (draws 1 1 1 1): -x = (2.385, -1, -0.5, -0.25), H4 of it / 2 =
     *   (0.635, 3.135, ...) / 2 = (0.3175, 1.5675, ...): (0.3175, 1.5675, -0.3175,
     *   -1.5675): a_1 = 1.  b = a_0 + 4 a_1 = 6.
     * A d = 3 row pads to d' = 4: (-2.385, 1, 0.5) gives D1 x = (-2.385, -1, 0.5, 0)
     *   and H4 of it / 2 = (-2.885, -0.885, -3.885, -1.885) / 2: B = 8: -y[2]: bucket 6. */
    const struct lsh_strategy *s = find("crosspolytope");
    const double x[4] = {-2.385, 1, 0.5, 0.25};
    static const uint64_t one[] = {0, 1, 0, 0}, two[] = {0, 1, 0, 0, 1, 0, 0, 1},
                          pair[] = {0, 1, 0, 0, 1, 1, 1, 1};
    struct {
        const uint64_t *draws;
        size_t n_draws;
        int64_t rotations, k;
        uint32_t b, expect;
    } cases[] = {
        {one, 4, 1, 1, 8, 6}, {one, 4, 1, 1, 4, 2}, {one, 4, 1, 1, 2, 1},
        {two, 8, 2, 1, 8, 3}, {two, 8, 2, 1, 4, 3}, {two, 8, 2, 1, 2, 1},
        {pair, 8, 1, 2, 16, 6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct lsh_param_value v[2] = {int_value(cases[c].rotations), int_value(cases[c].k)};
        struct script sc = {.ints = cases[c].draws, .n_ints = cases[c].n_draws};
        struct lsh_host host;
        void *state = scripted_init(s, v, 2, cases[c].b, 4, 1, &sc, &host);
        uint32_t bucket = 99;
        struct lsh_strategy_error err = {{0}};
        cr_assert_eq(s->hash(state, x, 1, 4, &bucket, &err), 0, "%s", err.message);
        cr_expect_eq(bucket, cases[c].expect, "case %zu (rotations %lld, k %lld, B %u): bucket %u",
                     c, (long long)cases[c].rotations, (long long)cases[c].k, cases[c].b, bucket);
        scripted_free(s, state);
    }

    /* the exported diagonals are the draws, 0 as +1 and 1 as -1, polytope-major */
    struct lsh_param_value v[2] = {int_value(1), int_value(2)};
    struct script sc = {.ints = pair, .n_ints = 8};
    struct lsh_host host;
    void *state = scripted_init(s, v, 2, 16, 4, 1, &sc, &host);
    struct exported ex = {.data = NULL};
    struct lsh_sink sink = {.ctx = &ex, .array = sink_array};
    cr_assert_eq(s->export_params(state, &sink), 0);
    cr_assert_str_eq(ex.name, "diagonals");
    cr_assert_eq(ex.rows, 2);
    cr_assert_eq(ex.cols, 4);
    const double expect[8] = {1, -1, 1, 1, -1, -1, -1, -1};
    for (size_t i = 0; i < 8; i++)
        cr_expect_eq(ex.data[i], expect[i], "diagonal entry %zu is %g", i, ex.data[i]);
    free(ex.data);
    scripted_free(s, state);

    /* a zero row: every entry of concat(y, -y) ties at 0, so a_t = 0 in each polytope */
    const double zero[4] = {0, 0, 0, 0};
    struct script sc0 = {.ints = pair, .n_ints = 8};
    state = scripted_init(s, v, 2, 16, 4, 1, &sc0, &host);
    uint32_t zb = 99;
    struct lsh_strategy_error zerr = {{0}};
    cr_assert_eq(s->hash(state, zero, 1, 4, &zb, &zerr), 0, "%s", zerr.message);
    cr_expect_eq(zb, 0, "zero row: bucket %u", zb);
    scripted_free(s, state);

    /* the d = 3 row, zero-padded */
    struct lsh_param_value v1[2] = {int_value(1), int_value(1)};
    struct script sc3 = {.ints = one, .n_ints = 4};
    state = scripted_init(s, v1, 2, 8, 3, 1, &sc3, &host);
    uint32_t bucket = 99;
    struct lsh_strategy_error err = {{0}};
    cr_assert_eq(s->hash(state, x, 1, 3, &bucket, &err), 0, "%s", err.message);
    cr_expect_eq(bucket, 6, "d = 3 padded: bucket %u", bucket);
    scripted_free(s, state);
}

Test(today, crosspolytope_buckets_equal_explicit_hadamard_products)
{
    /* d = 4 (d' = 4), d = 8 and d = 5 (padded to 8), seeded through the host; the
     * exported diagonals and H written out as matrices give every bucket */
    const struct lsh_strategy *s = find("crosspolytope");
    struct {
        size_t d, dp;
        int64_t rotations, k;
        uint32_t m;
    } cases[] = {{4, 4, 3, 1, 4}, {4, 4, 2, 2, 3}, {8, 8, 3, 2, 3}, {5, 8, 1, 3, 2},
                 {8, 8, 5, 1, 8}};
    const size_t n = 300;
    double *x = malloc(n * 8 * sizeof *x);
    uint32_t *b = malloc(n * sizeof *b);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const size_t d = cases[c].d, dp = cases[c].dp;
        gaussian(100 + c, x, n * d, 2.385);
        struct lsh_param_value v[2] = {int_value(cases[c].rotations), int_value(cases[c].k)};
        uint32_t nb = 1;
        for (int64_t t = 0; t < cases[c].k; t++)
            nb *= 2 * cases[c].m;
        struct exported ex;
        struct lsh_error err;
        cr_assert_eq(run_round(s, v, 2, nb, d, 0x5eed + c, x, n, b, NULL, 0, NULL, &ex, &err), 0,
                     "%s", err.message);
        cr_assert_str_eq(ex.name, "diagonals");
        cr_assert_eq(ex.rows, (size_t)(cases[c].k * cases[c].rotations));
        cr_assert_eq(ex.cols, dp);
        size_t plus = 0;
        for (size_t i = 0; i < ex.rows * ex.cols; i++) {
            cr_assert(ex.data[i] == 1 || ex.data[i] == -1, "diagonal entry %g", ex.data[i]);
            plus += ex.data[i] == 1;
        }
        cr_expect(plus > 0 && plus < ex.rows * ex.cols, "diagonals all of one sign");
        for (size_t i = 0; i < n; i++) {
            uint32_t want = crosspolytope_brute(x + i * d, d, dp, ex.data,
                                                (unsigned)cases[c].k,
                                                (unsigned)cases[c].rotations, cases[c].m);
            cr_expect_eq(b[i], want, "case %zu row %zu: bucket %u, by hand %u", c, i, b[i], want);
        }
        free(ex.data);
    }
    free(x);
    free(b);
}

Test(today, crosspolytope_check_names_the_allowed_n_buckets)
{
    const struct lsh_strategy *s = find("crosspolytope");
    char why[512];
    struct {
        int64_t k;
        uint32_t b;
        size_t d;
        const char *says; /* NULL: accepted */
    } cases[] = {
        {1, 8, 4, NULL},   {1, 2, 1, NULL},     {2, 36, 64, NULL},  {3, 8, 3, NULL},
        {2, 16, 3, NULL},  {1, 128, 64, NULL},  {1, 256, 100, NULL},
        {2, 50, 64, "the nearest allowed are 36 and 64"},
        {1, 7, 64, "the nearest allowed are 6 and 8"},
        {1, 10, 4, "the largest allowed is 8"},
        {1, 10, 3, "1 <= m <= d' = 4 (d = 3 padded to a power of two); got 10, the largest "
                   "allowed is 8"},
        {2, 3, 64, "the smallest allowed is 4"},
        {2, 100, 4, "the largest allowed is 64"},
        {3, 64, 2, NULL}, /* 64 = 4^3 needs m = 2 = d' */
        {1, 0, 4, "the smallest allowed is 2"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct lsh_param_value v[2] = {int_value(3), int_value(cases[c].k)};
        int rc = host_check(s, v, 2, cases[c].b, cases[c].d, 100, why, sizeof why);
        if (!cases[c].says) {
            cr_expect_eq(rc, 0, "case %zu (k %lld, B %u, d %zu) refused: %s", c,
                         (long long)cases[c].k, cases[c].b, cases[c].d, why);
            continue;
        }
        cr_expect_neq(rc, 0, "case %zu (k %lld, B %u, d %zu) accepted", c, (long long)cases[c].k,
                      cases[c].b, cases[c].d);
        cr_expect(strstr(why, cases[c].says), "case %zu: %s", c, why);
    }
}

/* ---- sortlsh -------------------------------------------------------------------- */

/* The r = 3 reflected Gray sequence g(p) = p ^ (p >> 1), p = 0..7, is
 * 000 001 011 010 110 111 101 100; the rank of a code is its place in it. */
static const uint32_t GRAY3_RANK[8] = {
    [0] = 0, [1] = 1, [3] = 2, [2] = 3, [6] = 4, [7] = 5, [5] = 6, [4] = 7,
};

Test(today, sortlsh_gray_ranks_for_r_3)
{
    /* W = I (d = r = 3): code(x) = sum_t [x_t > 0] 2^t.  Eight rows carrying every
     * code once; with B = 8 equal blocks of one row, bucket = rank. */
    const struct lsh_strategy *s = find("sortlsh");
    const double eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const uint32_t codes[8] = {5, 0, 7, 2, 4, 1, 6, 3};
    double x[8 * 3];
    for (size_t i = 0; i < 8; i++)
        for (size_t t = 0; t < 3; t++)
            x[i * 3 + t] = (codes[i] >> t & 1) ? 2.385 + (double)i : -0.5 - (double)t;
    struct lsh_param_value v[1] = {int_value(3)};
    struct script sc = {.normals = eye, .n_normals = 9};
    struct lsh_host host;
    void *state = scripted_init(s, v, 1, 8, 3, 8, &sc, &host);
    uint32_t bq[8], bk[8];
    struct lsh_strategy_error err = {{0}};
    cr_assert_eq(s->assign(state, x, 8, x, 8, 3, bq, bk, &err), 0, "%s", err.message);
    for (size_t i = 0; i < 8; i++) {
        cr_expect_eq(bq[i], GRAY3_RANK[codes[i]], "row %zu (code %u): bucket %u, rank %u", i,
                     codes[i], bq[i], GRAY3_RANK[codes[i]]);
        cr_expect_eq(bk[i], bq[i], "shared keys: key %zu in %u, query in %u", i, bk[i], bq[i]);
    }
    /* B = 2: ranks 0-3 (codes 0 1 3 2) in block 0, ranks 4-7 (codes 6 7 5 4) in 1 */
    scripted_free(s, state);
    sc.next_normal = 0;
    state = scripted_init(s, v, 1, 2, 3, 8, &sc, &host);
    cr_assert_eq(s->assign(state, x, 8, x, 8, 3, bq, bk, &err), 0, "%s", err.message);
    const uint32_t half[8] = {1, 0, 1, 0, 1, 0, 1, 0};
    for (size_t i = 0; i < 8; i++)
        cr_expect_eq(bq[i], half[i], "B = 2, row %zu (code %u): bucket %u", i, codes[i], bq[i]);
    scripted_free(s, state);
}

/* Equal blocks of a sorted order: block b holds places floor(b n / B) ..
 * floor((b + 1) n / B) - 1; sorted order by (value, position), written as an
 * insertion sort with the comparison spelled out. */
static void blocks_brute(const double *value, size_t n, uint32_t nb, uint32_t *bucket)
{
    size_t *order = malloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++) {
        size_t p = i;
        while (p > 0 && (value[order[p - 1]] > value[i] ||
                         (value[order[p - 1]] == value[i] && order[p - 1] > i))) {
            order[p] = order[p - 1];
            p--;
        }
        order[p] = i;
    }
    for (size_t p = 0; p < n; p++) {
        uint32_t b = 0;
        while (!((double)p >= floor((double)b * n / nb) && (double)p < floor((double)(b + 1) * n / nb)))
            b++;
        bucket[order[p]] = b;
    }
    free(order);
}

/* Sizes of the blocks: exactly floor((b + 1) n / B) - floor(b n / B). */
static void expect_block_sizes(const uint32_t *bucket, size_t n, uint32_t nb, const char *what)
{
    size_t *size = calloc(nb, sizeof *size);
    for (size_t i = 0; i < n; i++) {
        cr_assert_lt(bucket[i], nb);
        size[bucket[i]]++;
    }
    for (uint32_t b = 0; b < nb; b++) {
        size_t want = (size_t)((uint64_t)(b + 1) * n / nb - (uint64_t)b * n / nb);
        cr_expect_eq(size[b], want, "%s: block %u of %u holds %zu of %zu rows, want %zu", what, b,
                     nb, size[b], n, want);
    }
    free(size);
}

static void sortlsh_brute(const double *x, size_t n, size_t d, const double *w, size_t r,
                          uint32_t nb, uint32_t *bucket)
{
    double *rank = malloc(n * sizeof *rank);
    for (size_t i = 0; i < n; i++) {
        uint32_t code = 0;
        for (size_t t = 0; t < r; t++) {
            double dot = 0;
            for (size_t j = 0; j < d; j++)
                dot += x[i * d + j] * w[j * r + t];
            code |= (uint32_t)(dot > 0) << t;
        }
        rank[i] = GRAY3_RANK[code];
    }
    blocks_brute(rank, n, nb, bucket);
    free(rank);
}

Test(today, sortlsh_equal_blocks_follow_rank_then_position)
{
    /* r = 3: 8 ranks over 10 to 50 rows, so ties are many and positions decide */
    const struct lsh_strategy *s = find("sortlsh");
    const size_t d = 4, n_q = 50, n_k = 37;
    double q[50 * 4], k[37 * 4];
    gaussian(7, q, n_q * d, 2.385);
    gaussian(8, k, n_k * d, 0.5);
    struct lsh_param_value v[1] = {int_value(3)};
    const uint32_t bs[] = {1, 3, 4, 7, 16, 37};
    for (size_t c = 0; c < sizeof bs / sizeof *bs; c++) {
        uint32_t nb = bs[c], bq[50], bk[50], want[50];
        struct exported ex;
        struct lsh_error err;
        /* separate keys */
        cr_assert_eq(run_round(s, v, 1, nb, d, 0xab + c, q, n_q, bq, k, n_k, bk, &ex, &err), 0,
                     "%s", err.message);
        cr_assert_str_eq(ex.name, "projections");
        cr_assert_eq(ex.rows, d);
        cr_assert_eq(ex.cols, 3);
        expect_block_sizes(bq, n_q, nb, "sortlsh queries");
        expect_block_sizes(bk, n_k, nb, "sortlsh keys");
        sortlsh_brute(q, n_q, d, ex.data, 3, nb, want);
        for (size_t i = 0; i < n_q; i++)
            cr_expect_eq(bq[i], want[i], "B %u query %zu: bucket %u, by hand %u", nb, i, bq[i],
                         want[i]);
        sortlsh_brute(k, n_k, d, ex.data, 3, nb, want);
        for (size_t i = 0; i < n_k; i++)
            cr_expect_eq(bk[i], want[i], "B %u key %zu: bucket %u, by hand %u", nb, i, bk[i],
                         want[i]);
        free(ex.data);
        /* shared keys: the same pointer gives the query buckets */
        uint32_t sq[50], sk[50];
        cr_assert_eq(run_round(s, v, 1, nb, d, 0xab + c, q, n_q, sq, q, n_q, sk, NULL, &err), 0,
                     "%s", err.message);
        cr_expect_eq(memcmp(sq, bq, sizeof sq), 0, "B %u: shared-key queries differ", nb);
        cr_expect_eq(memcmp(sk, sq, sizeof sq), 0, "B %u: shared keys differ from queries", nb);
    }
}

Test(today, equal_block_rules_refuse_more_buckets_than_rows)
{
    char why[512];
    struct lsh_param_value v[1] = {int_value(7)};
    const struct lsh_strategy *sort = find("sortlsh"), *smyrf = find("smyrf");
    cr_expect_neq(host_check(sort, v, 1, 11, 4, 10, why, sizeof why), 0);
    cr_expect(strstr(why, "needs n_buckets <= rows; got n_buckets 11 for 10 rows"), "%s", why);
    cr_expect_eq(host_check(sort, v, 1, 10, 4, 10, why, sizeof why), 0, "%s", why);
    cr_expect_neq(host_check(smyrf, NULL, 0, 11, 4, 10, why, sizeof why), 0);
    cr_expect(strstr(why, "needs n_buckets <= rows; got n_buckets 11 for 10 rows"), "%s", why);
    cr_expect_eq(host_check(smyrf, NULL, 0, 10, 4, 10, why, sizeof why), 0, "%s", why);

    /* at assign: B <= n_q but B > n_k, and B > n_q */
    double q[10 * 2], k[4 * 2];
    gaussian(3, q, 20, 1);
    gaussian(4, k, 8, 1);
    uint32_t bq[10], bk[10];
    struct lsh_error err;
    const struct lsh_strategy *both[2] = {sort, smyrf};
    for (size_t i = 0; i < 2; i++) {
        const struct lsh_param_value *pv = i ? NULL : v;
        cr_expect_eq(run_round(both[i], pv, !i, 5, 2, 1, q, 10, bq, k, 4, bk, NULL, &err),
                     LSH_EPLUGIN);
        cr_expect(strstr(err.message, "got n_buckets 5 for 10 queries and 4 keys"), "%s",
                  err.message);
        cr_expect_eq(run_round(both[i], pv, !i, 5, 2, 1, k, 4, bq, q, 10, bk, NULL, &err),
                     LSH_EPLUGIN);
        cr_expect(strstr(err.message, "got n_buckets 5 for 4 queries and 10 keys"), "%s",
                  err.message);
        cr_expect_eq(run_round(both[i], pv, !i, 4, 2, 1, q, 10, bq, k, 4, bk, NULL, &err), 0,
                     "%s", err.message);
    }
}

/* ---- smyrf ---------------------------------------------------------------------- */

Test(today, smyrf_lift_keeps_the_identity_and_sorts_into_equal_blocks)
{
    /* q~ = [q, 0, sqrt(M_q^2 + M_k^2 - |q|^2)], k~ = [k, sqrt(M_q^2 + M_k^2 - |k|^2), 0]:
     * |q~ - k~|^2 = 2(M_q^2 + M_k^2) - 2 q.k for every pair.  Buckets: position sort
     * of a.q~ and of a.k~ (a the exported projection), equal blocks. */
    const struct lsh_strategy *s = find("smyrf");
    const size_t d = 5, n_q = 23, n_k = 17;
    double q[23 * 5], k[23 * 5];
    gaussian(11, q, n_q * d, 2.385);
    gaussian(12, k, n_k * d, 0.7);
    memcpy(q + 4 * d, q + 9 * d, d * sizeof *q); /* a tie: positions decide */
    const uint32_t bs[] = {1, 2, 5, 17};
    for (size_t c = 0; c < sizeof bs / sizeof *bs; c++) {
        const uint32_t nb = bs[c];
        uint32_t bq[23], bk[23], want[23];
        struct exported ex;
        struct lsh_error err;
        cr_assert_eq(run_round(s, NULL, 0, nb, d, 0xcafe + c, q, n_q, bq, k, n_k, bk, &ex, &err),
                     0, "%s", err.message);
        cr_assert_str_eq(ex.name, "projection");
        cr_assert_eq(ex.rows, 1);
        cr_assert_eq(ex.cols, d + 2);
        const double *a = ex.data;

        double mq = 0, mk = 0; /* squared maxima */
        for (size_t i = 0; i < n_q; i++) {
            double nn = 0;
            for (size_t j = 0; j < d; j++)
                nn += q[i * d + j] * q[i * d + j];
            mq = fmax(mq, nn);
        }
        for (size_t i = 0; i < n_k; i++) {
            double nn = 0;
            for (size_t j = 0; j < d; j++)
                nn += k[i * d + j] * k[i * d + j];
            mk = fmax(mk, nn);
        }
        double qt[23][7], kt[23][7], vq[23], vk[23];
        for (size_t i = 0; i < n_q; i++) {
            double nn = 0;
            for (size_t j = 0; j < d; j++) {
                qt[i][j] = q[i * d + j];
                nn += q[i * d + j] * q[i * d + j];
            }
            qt[i][d] = 0;
            qt[i][d + 1] = sqrt(fmax(0, mq + mk - nn));
            vq[i] = 0;
            for (size_t j = 0; j < d + 2; j++)
                vq[i] += a[j] * qt[i][j];
        }
        for (size_t i = 0; i < n_k; i++) {
            double nn = 0;
            for (size_t j = 0; j < d; j++) {
                kt[i][j] = k[i * d + j];
                nn += k[i * d + j] * k[i * d + j];
            }
            kt[i][d] = sqrt(fmax(0, mq + mk - nn));
            kt[i][d + 1] = 0;
            vk[i] = 0;
            for (size_t j = 0; j < d + 2; j++)
                vk[i] += a[j] * kt[i][j];
        }
        for (size_t i = 0; i < n_q; i++)
            for (size_t j = 0; j < n_k; j++) {
                double dist = 0, qk = 0;
                for (size_t t = 0; t < d + 2; t++)
                    dist += (qt[i][t] - kt[j][t]) * (qt[i][t] - kt[j][t]);
                for (size_t t = 0; t < d; t++)
                    qk += q[i * d + t] * k[j * d + t];
                cr_assert_float_eq(dist, 2 * (mq + mk) - 2 * qk, 1e-9 * (mq + mk),
                                   "pair (%zu, %zu): |q~ - k~|^2 = %.17g", i, j, dist);
            }
        expect_block_sizes(bq, n_q, nb, "smyrf queries");
        expect_block_sizes(bk, n_k, nb, "smyrf keys");
        blocks_brute(vq, n_q, nb, want);
        for (size_t i = 0; i < n_q; i++)
            cr_expect_eq(bq[i], want[i], "B %u query %zu: bucket %u, by hand %u", nb, i, bq[i],
                         want[i]);
        blocks_brute(vk, n_k, nb, want);
        for (size_t i = 0; i < n_k; i++)
            cr_expect_eq(bk[i], want[i], "B %u key %zu: bucket %u, by hand %u", nb, i, bk[i],
                         want[i]);
        if (nb == 5)
            cr_expect_leq(bq[4], bq[9], "equal rows: the earlier position sorts first");
        free(ex.data);
    }
}

Test(today, smyrf_keys_get_their_own_buckets_when_shared)
{
    /* shared keys (k == q): q~ and k~ differ in which extra slot holds the lift,
     * so with a scripted a the two orders can be worked out by hand.
     * d = 1, a = (1, 10, -10): a.q~ = q - 10 L, a.k~ = k + 10 L, L = sqrt(2 M^2 - x^2).
     * x = (3, -1, 2, 0): M^2 = 9; L = (3, sqrt 17, sqrt 14, sqrt 18) =
     * (3, 4.123, 3.742, 4.243).  Queries: (-27, -42.2, -35.4, -42.4): order 3 1 2 0;
     * keys: (33, 40.2, 39.4, 42.4): order 0 2 1 3.  B = 2: queries (1, 0, 1, 0),
     * keys (0, 1, 0, 1); B = 4: queries (3, 1, 2, 0), keys (0, 2, 1, 3). */
    const struct lsh_strategy *s = find("smyrf");
    const double a[3] = {1, 10, -10}, x[4] = {3, -1, 2, 0};
    const uint32_t q2[4] = {1, 0, 1, 0}, k2[4] = {0, 1, 0, 1}, q4[4] = {3, 1, 2, 0},
                   k4[4] = {0, 2, 1, 3};
    for (uint32_t nb = 2; nb <= 4; nb += 2) {
        struct script sc = {.normals = a, .n_normals = 3};
        struct lsh_host host;
        void *state = scripted_init(s, NULL, 0, nb, 1, 4, &sc, &host);
        uint32_t bq[4], bk[4];
        struct lsh_strategy_error err = {{0}};
        cr_assert_eq(s->assign(state, x, 4, x, 4, 1, bq, bk, &err), 0, "%s", err.message);
        for (size_t i = 0; i < 4; i++) {
            cr_expect_eq(bq[i], nb == 2 ? q2[i] : q4[i], "B %u query %zu: %u", nb, i, bq[i]);
            cr_expect_eq(bk[i], nb == 2 ? k2[i] : k4[i], "B %u key %zu: %u", nb, i, bk[i]);
        }
        scripted_free(s, state);
    }
}

Test(today, sortlsh_many_bits_rank_by_prefix_parity)
{
    /* r = 24: the rank's bit i is the parity of code bits i .. r-1 (the inverse of
     * g(p) = p ^ (p >> 1) read from the top bit down), so ranks span several
     * sort digits */
    const struct lsh_strategy *s = find("sortlsh");
    const size_t d = 6, n = 300, r = 24;
    const uint32_t nb = 7;
    double *x = malloc(n * d * sizeof *x), *rank = malloc(n * sizeof *rank);
    gaussian(21, x, n * d, 2.385);
    memcpy(x + 50 * d, x + 10 * d, d * sizeof *x); /* equal ranks: positions decide */
    uint32_t *bq = malloc(n * sizeof *bq), *want = malloc(n * sizeof *want);
    struct lsh_param_value v[1] = {int_value((int64_t)r)};
    struct exported ex;
    struct lsh_error err;
    cr_assert_eq(run_round(s, v, 1, nb, d, 77, x, n, bq, NULL, 0, NULL, &ex, &err), 0, "%s",
                 err.message);
    cr_assert_eq(ex.cols, r);
    for (size_t i = 0; i < n; i++) {
        int bit[24];
        for (size_t t = 0; t < r; t++) {
            double dot = 0;
            for (size_t j = 0; j < d; j++)
                dot += x[i * d + j] * ex.data[j * r + t];
            bit[t] = dot > 0;
        }
        uint32_t rk = 0;
        int parity = 0;
        for (size_t t = r; t-- > 0;) {
            parity ^= bit[t];
            rk |= (uint32_t)parity << t;
        }
        rank[i] = rk;
    }
    blocks_brute(rank, n, nb, want);
    expect_block_sizes(bq, n, nb, "sortlsh r = 24");
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(bq[i], want[i], "row %zu: bucket %u, by hand %u", i, bq[i], want[i]);
    free(ex.data);
    free(x);
    free(rank);
    free(bq);
    free(want);
}
