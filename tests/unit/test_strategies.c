/* test_strategies.c - the built-in strategies against SPEC 2: a conformance
 * loop over every registered plugin, hand-worked answers, closed forms. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "registry.h"
#include "rng.h"

static const double PI = 3.14159265358979323846;

/* ---- helpers ---------------------------------------------------------------- */

static struct lsh_registry *load_registry(void)
{
    struct lsh_registry *reg = lsh_registry_alloc();
    cr_assert(reg);
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_registry_load_default(reg, &err), 0, "%s", err.message);
    return reg;
}

static const struct lsh_strategy *builtin(struct lsh_registry *reg, const char *name)
{
    const struct lsh_strategy *s = lsh_registry_find(reg, name);
    cr_assert(s, "strategy %s is not registered", name);
    return s;
}

static size_t schema_len(const struct lsh_strategy *s)
{
    size_t n = 0;
    while (s->params && s->params[n].type != LSH_PARAM_END)
        n++;
    return n;
}

/* Every parameter at its published default (as the config would fill it). */
static size_t default_values(const struct lsh_strategy *s, struct lsh_param_value *v,
                             size_t max)
{
    size_t n = schema_len(s);
    cr_assert(n <= max);
    for (size_t i = 0; i < n; i++) {
        const struct lsh_param *p = &s->params[i];
        memset(&v[i], 0, sizeof v[i]);
        v[i].type = p->type;
        v[i].i = p->def_int;
        v[i].r = p->def_real;
        if (p->type == LSH_PARAM_CHOICE)
            for (size_t c = 0; p->choices[c]; c++)
                if (strcmp(p->choices[c], p->def_choice) == 0)
                    v[i].choice = p->choices[c];
    }
    return n;
}

/* A value list for a strategy's schema, with one parameter overridden. */
static struct lsh_param_value *param_by_name(const struct lsh_strategy *s,
                                             struct lsh_param_value *v, const char *name)
{
    for (size_t i = 0; s->params && s->params[i].type != LSH_PARAM_END; i++)
        if (strcmp(s->params[i].name, name) == 0)
            return &v[i];
    cr_assert_fail("%s has no parameter %s", s->name, name);
    return NULL;
}

static const char *choice_of(const struct lsh_strategy *s, const char *param, const char *word)
{
    for (size_t i = 0; s->params && s->params[i].type != LSH_PARAM_END; i++)
        if (strcmp(s->params[i].name, param) == 0)
            for (size_t c = 0; s->params[i].choices[c]; c++)
                if (strcmp(s->params[i].choices[c], word) == 0)
                    return s->params[i].choices[c];
    cr_assert_fail("%s.%s has no choice %s", s->name, param, word);
    return NULL;
}

/* One round of a strategy, as the engine drives it. */
struct instance {
    const struct lsh_strategy *s;
    void *state;
    struct lsh_rng *rng;
    struct lsh_round round;
    struct lsh_strategy_error err;
};

static struct lsh_round make_round(size_t d, uint32_t b, size_t n_rows,
                                   const struct lsh_param_value *v, size_t n_params)
{
    struct lsh_round r = {.d = d, .n_buckets = b, .n_rows = n_rows, .params = v,
                          .n_params = n_params, .host = lsh_host_services()};
    return r;
}

static int check_round(const struct lsh_strategy *s, struct lsh_round round,
                       struct lsh_strategy_error *err)
{
    memset(err, 0, sizeof *err);
    round.rng = NULL;
    round.seed = 0;
    return s->check ? s->check(&round, err) : 0;
}

/* init with the given host/rng; returns init's code. */
static int instance_init(struct instance *in, const struct lsh_strategy *s,
                         struct lsh_round round, uint64_t seed, struct lsh_rng *rng)
{
    memset(in, 0, sizeof *in);
    in->s = s;
    size_t size = (s->state_size + 63) / 64 * 64;
    in->state = aligned_alloc(64, size ? size : 64);
    cr_assert(in->state);
    memset(in->state, 0, size ? size : 64);
    in->rng = rng ? NULL : lsh_rng_alloc(seed);
    round.seed = seed;
    round.rng = rng ? rng : in->rng;
    in->round = round;
    return s->init(in->state, &round, &in->err);
}

static void instance_free(struct instance *in)
{
    in->s->fini(in->state);
    free(in->state);
    lsh_rng_free(in->rng);
}

/* init, fit on x (when the strategy fits), hash x in batches of `batch`. */
static void hash_round(const struct lsh_strategy *s, struct lsh_round round, uint64_t seed,
                       const double *x, size_t n, size_t batch, uint32_t *bucket)
{
    struct instance in;
    cr_assert_eq(instance_init(&in, s, round, seed, NULL), 0, "%s init: %s", s->name,
                 in.err.message);
    if (s->fit)
        cr_assert_eq(s->fit(in.state, x, n, round.d, &in.err), 0, "%s fit: %s", s->name,
                     in.err.message);
    for (size_t start = 0; start < n; start += batch) {
        size_t m = n - start < batch ? n - start : batch;
        cr_assert_eq(s->hash(in.state, x + start * round.d, m, round.d, bucket + start, &in.err),
                     0, "%s hash: %s", s->name, in.err.message);
    }
    instance_free(&in);
}

/* A sink that keeps the arrays it is given. */
struct capture {
    size_t n;
    char name[4][64];
    double *data[4];
    size_t rows[4], cols[4];
};

static int capture_array(struct lsh_sink *sink, const char *name, const double *data,
                         size_t rows, size_t cols)
{
    struct capture *c = sink->ctx;
    if (c->n == 4)
        return -1;
    snprintf(c->name[c->n], sizeof c->name[c->n], "%s", name);
    c->data[c->n] = malloc((rows * cols > 0 ? rows * cols : 1) * sizeof(double));
    memcpy(c->data[c->n], data, rows * cols * sizeof(double));
    c->rows[c->n] = rows;
    c->cols[c->n] = cols;
    c->n++;
    return 0;
}

static void capture_free(struct capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
    c->n = 0;
}

static void gaussian(struct lsh_rng *rng, double *x, size_t count, double scale)
{
    for (size_t i = 0; i < count; i++)
        x[i] = scale * lsh_rng_normal(rng);
}

/* ---- conformance: every registered strategy --------------------------------- */

static int valid_word(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* One round of s through the host (as the sweep drives it): fit, then assign
 * or hash.  k NULL: keys are the queries; k == q: shared keys (bk filled). */
static void host_round(const struct lsh_strategy *s, const struct lsh_param_value *v, size_t np,
                       size_t d, uint32_t b, uint64_t seed, const double *q, size_t n_q,
                       const double *k, size_t n_k, uint32_t *bq, uint32_t *bk)
{
    struct lsh_host_point pt = {.strategy = s, .params = "", .values = v, .n_values = np,
                                .n_buckets = b, .d = d, .n_rows = k && k != q ? n_q + n_k : n_q};
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_host_round_open(&pt, 0, seed, &r, &err), 0, "%s", err.message);
    const struct lsh_host_rows rq = {q, n_q, bq}, rk = {k, n_k, bk};
    cr_assert_eq(lsh_host_round_bucket(r, &rq, k ? &rk : NULL, 1, &err), 0, "%s", err.message);
    lsh_host_round_close(r);
}

/* One parameter set of s against the contract, for every usual n_buckets it
 * accepts; returns how many it accepted. */
static size_t conform_values(const struct lsh_strategy *s, const struct lsh_param_value *v,
                             size_t np, const char *which)
{
    /* Rows: gaussian, one zero row, one exact repeat, n > 2 GEMM batches;
     * a second set of rows for separate keys. */
    const size_t n = 2600, d = 12;
    double *x = malloc(2 * n * d * sizeof *x);
    struct lsh_rng *data_rng = lsh_rng_alloc(2385);
    gaussian(data_rng, x, 2 * n * d, 2.385);
    lsh_rng_free(data_rng);
    memset(x + 7 * d, 0, d * sizeof *x);
    memcpy(x + 11 * d, x + 3 * d, d * sizeof *x);
    const double *y = x + n * d;

    uint32_t *b1 = malloc(n * sizeof *b1), *b2 = malloc(n * sizeof *b2);
    uint32_t *k1 = malloc(n * sizeof *k1), *k2 = malloc(n * sizeof *k2);
    const uint32_t candidates[] = {1, 2, 3, 4, 6, 8, 16, 24, 64};
    size_t accepted = 0;
    for (size_t c = 0; c < sizeof candidates / sizeof *candidates; c++) {
        uint32_t b = candidates[c];
        struct lsh_round round = make_round(d, b, n, v, np);
        struct lsh_strategy_error err;
        if (check_round(s, round, &err) != 0) {
            cr_assert(strlen(err.message) > 0, "%s %s refused B = %u without a reason", s->name,
                      which, b);
            continue;
        }
        accepted++;

        if (s->hash && !lsh_host_assigns(s)) {
            hash_round(s, round, 1001, x, n, n, b1);
            for (size_t i = 0; i < n; i++)
                cr_assert_lt(b1[i], b, "%s B = %u: row %zu in bucket %u", s->name, b, i, b1[i]);
            cr_assert_eq(b1[11], b1[3], "%s: equal rows in different buckets", s->name);

            hash_round(s, round, 1001, x, n, n, b2);
            cr_assert_arr_eq(b1, b2, n * sizeof *b1, "%s B = %u: same seed, other buckets",
                             s->name, b);

            for (size_t batch = 1; batch <= 1031; batch += 515) { /* 1, 516, 1031 */
                hash_round(s, round, 1001, x, n, batch, b2);
                cr_assert_arr_eq(b1, b2, n * sizeof *b1, "%s B = %u: batches of %zu differ",
                                 s->name, b, batch);
            }
            if (b >= 2) {
                int differs = 0;
                for (uint64_t seed = 1002; seed < 1005 && !differs; seed++) {
                    hash_round(s, round, seed, x, n, n, b2);
                    differs = memcmp(b1, b2, n * sizeof *b1) != 0;
                }
                cr_assert(differs, "%s B = %u: other round seeds give the same buckets",
                          s->name, b);
            }
        } else {
            cr_assert(lsh_host_assigns(s), "%s has neither hash nor assign", s->name);
            /* assign sees all rows at once: two host batches (a full and a
             * partial one) are enough, and k-means' iterations over 2600
             * rows made this test minutes long under valgrind; test_host
             * checks k-means against the old hash batches on 2600 rows */
            const size_t na = 1100;
            /* shared keys: the same pointer, key buckets from assign */
            host_round(s, v, np, d, b, 1001, x, na, x, na, b1, k1);
            for (size_t i = 0; i < na; i++) {
                cr_assert_lt(b1[i], b, "%s %s B = %u: query %zu in bucket %u", s->name, which, b,
                             i, b1[i]);
                cr_assert_lt(k1[i], b, "%s %s B = %u: key %zu in bucket %u", s->name, which, b, i,
                             k1[i]);
            }
            host_round(s, v, np, d, b, 1001, x, na, x, na, b2, k2);
            cr_assert_arr_eq(b1, b2, na * sizeof *b1, "%s %s B = %u: same seed, other buckets",
                             s->name, which, b);
            cr_assert_arr_eq(k1, k2, na * sizeof *k1, "%s %s B = %u: same seed, other keys",
                             s->name, which, b);
            host_round(s, v, np, d, b, 1001, x, na, NULL, 0, b2, NULL);
            cr_assert_arr_eq(b1, b2, na * sizeof *b1,
                             "%s %s B = %u: queries differ with and without the keys asked for",
                             s->name, which, b);
            /* separate keys: in range and reproducible */
            host_round(s, v, np, d, b, 1001, x, na, y, na, b1, k1);
            host_round(s, v, np, d, b, 1001, x, na, y, na, b2, k2);
            for (size_t i = 0; i < na; i++)
                cr_assert(b1[i] < b && k1[i] < b, "%s %s B = %u separate: row %zu", s->name,
                          which, b, i);
            cr_assert_arr_eq(b1, b2, na * sizeof *b1, "%s %s B = %u separate: not reproducible",
                             s->name, which, b);
            cr_assert_arr_eq(k1, k2, na * sizeof *k1, "%s %s B = %u separate: not reproducible",
                             s->name, which, b);
            /* other seeds change the buckets, unless the rule is a fixed
             * function of positions (neither the seed nor the rows matter) */
            if (b >= 2) {
                host_round(s, v, np, d, b, 1001, x, na, NULL, 0, b1, NULL);
                int differs = 0;
                for (uint64_t seed = 1002; seed < 1005 && !differs; seed++) {
                    host_round(s, v, np, d, b, seed, x, na, NULL, 0, b2, NULL);
                    differs = memcmp(b1, b2, na * sizeof *b1) != 0;
                }
                if (!differs) {
                    host_round(s, v, np, d, b, 1001, y, na, NULL, 0, b2, NULL);
                    cr_assert_arr_eq(b1, b2, na * sizeof *b1,
                                     "%s %s B = %u: the rows change the buckets but the round "
                                     "seed does not", s->name, which, b);
                }
            }
        }

        if (s->export_params) {
            struct instance in;
            cr_assert_eq(instance_init(&in, s, round, 1001, NULL), 0);
            if (s->fit)
                cr_assert_eq(s->fit(in.state, x, n, d, &in.err), 0);
            struct capture cap = {0};
            struct lsh_sink sink = {.ctx = &cap, .array = capture_array};
            cr_assert_eq(s->export_params(in.state, &sink), 0, "%s export failed", s->name);
            for (size_t a = 0; a < cap.n; a++) {
                cr_assert(valid_word(cap.name[a]));
                for (size_t k = 0; k < cap.rows[a] * cap.cols[a]; k++)
                    cr_assert(isfinite(cap.data[a][k]));
            }
            capture_free(&cap);
            instance_free(&in);
        }

        /* a published law is a probability at every cosine, 1 for equal
         * vectors of a hash() rule (it buckets each row by itself) */
        struct lsh_host_point pt = {.strategy = s, .params = "", .values = v, .n_values = np,
                                    .n_buckets = b, .d = d, .n_rows = n};
        struct lsh_host_law law;
        char why[512];
        if (lsh_host_law_of(&pt, &law, why, sizeof why) == 0) {
            for (double cs = -1; cs <= 1.0001; cs += 0.125) {
                double p;
                cr_assert_eq(lsh_host_law_eval(&law, cs, &p), 0, "%s B = %u: law(%g) = %g",
                             s->name, b, cs, p);
            }
            double p1;
            lsh_host_law_eval(&law, 1.0, &p1);
            if (!lsh_host_assigns(s))
                cr_assert_eq(p1, 1.0, "%s B = %u: equal vectors collide with p = %g", s->name,
                             b, p1);
        } else {
            cr_assert(strstr(why, s->name), "%s: the reason does not name it: %s", s->name, why);
        }
    }
    free(b1);
    free(b2);
    free(k1);
    free(k2);
    free(x);
    return accepted;
}

static void conform(const struct lsh_strategy *s, const char *origin)
{
    struct lsh_error lerr;
    cr_assert_eq(lsh_registry_check_strategy(s, origin, &lerr), 0, "%s", lerr.message);
    cr_assert_eq(s->abi_major, LSH_STRATEGY_ABI_MAJOR);
    cr_assert_leq(s->abi_minor, LSH_STRATEGY_ABI_MINOR);
    cr_assert(valid_word(s->name), "%s: bad name", origin);
    cr_assert(s->summary && strlen(s->summary) > 10, "%s: no summary", s->name);
    for (size_t i = 0; i < schema_len(s); i++)
        cr_assert(s->params[i].doc && strlen(s->params[i].doc) > 10, "%s.%s: no doc", s->name,
                  s->params[i].name);

    /* the defaults, then each BOOL parameter flipped (kmeans balanced,
     * rotation orthogonal): every rule a strategy offers */
    struct lsh_param_value v[16];
    size_t np = default_values(s, v, 16);
    size_t accepted = conform_values(s, v, np, "(defaults)");
    cr_assert_geq(accepted, 3, "%s accepts fewer than 3 of the usual n_buckets", s->name);
    for (size_t p = 0; p < np; p++)
        if (v[p].type == LSH_PARAM_BOOL) {
            char which[96];
            snprintf(which, sizeof which, "(%s=%s)", s->params[p].name, v[p].i ? "false" : "true");
            v[p].i = !v[p].i;
            cr_assert_geq(conform_values(s, v, np, which), 2, "%s %s accepts fewer than 2 of the "
                          "usual n_buckets", s->name, which);
            v[p].i = !v[p].i;
        }
}

/* Data-driven over the registry: every built-in strategy (all of
 * strategies/meson.build) and any plugin on LSHLAB_STRATEGY_PATH. */
Test(strategies, conformance_of_every_registered_strategy, .timeout = 240)
{
    struct lsh_registry *reg = load_registry();
    const char *builtins[] = {"rotation", "hyperplane", "kmeans", "random", "window"};
    const size_t n_builtins = sizeof builtins / sizeof *builtins;
    cr_assert_geq(lsh_registry_count(reg), n_builtins);
    for (size_t i = 0; i < n_builtins; i++)
        builtin(reg, builtins[i]);
    for (size_t i = 0; i < lsh_registry_count(reg); i++)
        conform(lsh_registry_get(reg, i), lsh_registry_origin(reg, i));
    lsh_registry_free(reg);
}

Test(strategies, builtin_schemas_are_as_specified)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *rot = builtin(reg, "rotation");
    cr_assert_eq(schema_len(rot), 2);
    cr_assert_str_eq(rot->params[0].name, "orthogonal");
    cr_assert_eq(rot->params[0].type, LSH_PARAM_BOOL);
    cr_assert_eq(rot->params[0].def_int, 0);
    cr_assert_str_eq(rot->params[1].name, "factors");
    cr_assert_eq(rot->params[1].type, LSH_PARAM_INT_LIST);
    cr_assert_eq(rot->params[1].min, 2);
    cr_assert_eq(rot->params[1].max, 65536);

    cr_assert_eq(schema_len(builtin(reg, "hyperplane")), 0);

    const struct lsh_strategy *km = builtin(reg, "kmeans");
    cr_assert_eq(schema_len(km), 3);
    cr_assert_str_eq(km->params[0].name, "iterations");
    cr_assert_eq(km->params[0].type, LSH_PARAM_INT);
    cr_assert_eq(km->params[0].def_int, 10);
    cr_assert_eq(km->params[0].min, 0);
    cr_assert_eq(km->params[0].max, 1000);
    cr_assert_str_eq(km->params[1].name, "init");
    cr_assert_eq(km->params[1].type, LSH_PARAM_CHOICE);
    cr_assert_str_eq(km->params[1].def_choice, "random");
    cr_assert_str_eq(km->params[1].choices[0], "random");
    cr_assert_str_eq(km->params[1].choices[1], "kmeans++");
    cr_assert_null(km->params[1].choices[2]);
    cr_assert_str_eq(km->params[2].name, "balanced", "appended last: the canonical text of "
                     "existing sets keeps its order");
    cr_assert_eq(km->params[2].type, LSH_PARAM_BOOL);
    cr_assert_eq(km->params[2].def_int, 0);
    cr_assert_eq(schema_len(builtin(reg, "random")), 0);
    cr_assert_eq(schema_len(builtin(reg, "window")), 0);
    lsh_registry_free(reg);
}

/* ---- a host whose normal() returns numbers we chose ------------------------- */

struct fixed_stream {
    const double *values;
    size_t len, next;
};

static double fixed_normal(struct lsh_rng *rng)
{
    struct fixed_stream *f = (struct fixed_stream *)(void *)rng;
    cr_assert_lt(f->next, f->len, "the plugin drew more normals than the example has");
    return f->values[f->next++];
}

static double no_uniform(struct lsh_rng *rng)
{
    (void)rng;
    cr_assert_fail("this strategy should draw normals only");
    return 0;
}

static uint64_t no_uniform_int(struct lsh_rng *rng, uint64_t n)
{
    (void)rng, (void)n;
    cr_assert_fail("this strategy should draw normals only");
    return 0;
}

static void fixed_host(struct lsh_host *h)
{
    const struct lsh_host *real = lsh_host_services();
    *h = *real;
    h->normal = fixed_normal;
    h->uniform = no_uniform;
    h->uniform_int = no_uniform_int;
}

/* Runs a strategy with R (or W) drawn from `draws`, and hashes x. */
static void hash_with_draws(const struct lsh_strategy *s, const struct lsh_param_value *v,
                            size_t np, size_t d, uint32_t b, const double *draws,
                            size_t n_draws, const double *x, size_t n, uint32_t *bucket,
                            struct capture *cap)
{
    struct lsh_host host;
    fixed_host(&host);
    struct fixed_stream stream = {draws, n_draws, 0};
    struct lsh_round round = make_round(d, b, n, v, np);
    round.host = &host;
    struct instance in;
    cr_assert_eq(instance_init(&in, s, round, 0, (struct lsh_rng *)(void *)&stream), 0, "%s",
                 in.err.message);
    cr_assert_eq(stream.next, n_draws, "drew %zu normals, expected %zu", stream.next, n_draws);
    cr_assert_eq(s->hash(in.state, x, n, d, bucket, &in.err), 0, "%s", in.err.message);
    if (cap) {
        struct lsh_sink sink = {.ctx = cap, .array = capture_array};
        cr_assert_eq(s->export_params(in.state, &sink), 0);
    }
    instance_free(&in);
}

Test(strategies, rotation_hand_worked_example)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "rotation");
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);

    /* d = 3, B = 4: R is 3 x 2, drawn row by row:
     *     R = [  0.5  -1.2 ]
     *         [  1.5   0.3 ]
     *         [ -0.8   2.0 ]
     * bucket = argmax of (y0, y1, -y0, -y1), y = xR:
     *  (2.385, -0.71, 1.1):  y0 = 1.1925 - 1.065 - 0.88 = -0.7525
     *                        y1 = -2.862 - 0.213 + 2.2  = -0.875
     *                        (-0.7525, -0.875, 0.7525, 0.875)   -> 3
     *  (0.2, 1.5, -0.71):    y0 = 0.1 + 2.25 + 0.568    =  2.918
     *                        y1 = -0.24 + 0.45 - 1.42   = -1.21
     *                        (2.918, -1.21, -2.918, 1.21)       -> 0
     *  (-0.5, 0.25, 2.385):  y0 = -0.25 + 0.375 - 1.908 = -1.783
     *                        y1 = 0.6 + 0.075 + 4.77    =  5.445
     *                        (-1.783, 5.445, 1.783, -5.445)     -> 1
     *  (-0.2, -1.5, 0.71):   y = (-2.918, 1.21)
     *                        (-2.918, 1.21, 2.918, -1.21)       -> 2
     *  (0, 0, 0):            all four are 0, a tie: the first   -> 0 */
    const double r[] = {0.5, -1.2, 1.5, 0.3, -0.8, 2.0};
    const double x[] = {2.385, -0.71, 1.1, 0.2, 1.5, -0.71, -0.5, 0.25, 2.385,
                        -0.2, -1.5, 0.71, 0, 0, 0};
    const uint32_t want[] = {3, 0, 1, 2, 0};
    uint32_t got[5];
    struct capture cap = {0};
    hash_with_draws(s, v, np, 3, 4, r, 6, x, 5, got, &cap);
    cr_assert_arr_eq(got, want, sizeof want);
    cr_assert_eq(cap.n, 1);
    cr_assert_str_eq(cap.name[0], "rotation");
    cr_assert_eq(cap.rows[0], 3);
    cr_assert_eq(cap.cols[0], 2);
    cr_assert_arr_eq(cap.data[0], r, sizeof r); /* not orthogonal: R as drawn */
    capture_free(&cap);
    lsh_registry_free(reg);
}

Test(strategies, rotation_hand_worked_factors)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "rotation");
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    const int64_t factors[] = {4, 2};
    param_by_name(s, v, "factors")->list = factors;
    param_by_name(s, v, "factors")->list_len = 2;

    /* d = 2, factors [4, 2], B = 8: columns 0-1 belong to factor 0 (f = 4),
     * column 2 to factor 1 (f = 2); b = a0 + 4 a1.
     *     R = [ 1.0   -0.5   2.0 ]
     *         [ 0.25   1.5  -1.0 ]
     *  (2.385, -0.71): y = (2.385 - 0.1775, -1.1925 - 1.065, 4.77 + 0.71)
     *                    = (2.2075, -2.2575, 5.48)
     *     a0 = argmax(2.2075, -2.2575, -2.2075, 2.2575) = 3
     *     a1 = argmax(5.48, -5.48) = 0                        -> 3 + 4*0 = 3
     *  (-1.0, 0.6):    y = (-1 + 0.15, 0.5 + 0.9, -2 - 0.6) = (-0.85, 1.4, -2.6)
     *     a0 = argmax(-0.85, 1.4, 0.85, -1.4) = 1
     *     a1 = argmax(-2.6, 2.6) = 1                          -> 1 + 4*1 = 5
     *  (-2.385, 0.1):  y = (-2.385 + 0.025, 1.1925 + 0.15, -4.77 - 0.1)
     *                    = (-2.36, 1.3425, -4.87)
     *     a0 = argmax(-2.36, 1.3425, 2.36, -1.3425) = 2
     *     a1 = argmax(-4.87, 4.87) = 1                        -> 2 + 4*1 = 6 */
    const double r[] = {1.0, -0.5, 2.0, 0.25, 1.5, -1.0};
    const double x[] = {2.385, -0.71, -1.0, 0.6, -2.385, 0.1};
    const uint32_t want[] = {3, 5, 6};
    uint32_t got[3];
    hash_with_draws(s, v, np, 2, 8, r, 6, x, 3, got, NULL);
    cr_assert_arr_eq(got, want, sizeof want);
    lsh_registry_free(reg);
}

Test(strategies, rotation_hand_worked_orthogonal)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "rotation");
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    param_by_name(s, v, "orthogonal")->i = 1;

    /* d = 2, B = 4, drawn A = [ -3  1 ]  columns a1 = (-3, -4), a2 = (1, 2).
     *                        [ -4  2 ]
     * Gram-Schmidt: q1 = a1/5 = (-0.6, -0.8)            (R11 = 5 > 0)
     *   a2 - (q1.a2) q1 = (1, 2) - (-2.2)(-0.6, -0.8) = (-0.32, 0.24), /0.4
     *   q2 = (-0.8, 0.6)                                  (R22 = 0.4 > 0)
     * So R = [ -0.6  -0.8 ]
     *        [ -0.8   0.6 ]
     *  (2.385, -0.71): y = (-1.431 + 0.568, -1.908 - 0.426) = (-0.863, -2.334)
     *                  (-0.863, -2.334, 0.863, 2.334)   -> 3
     *                  (with the raw A it would be (-4.315, 0.965): bucket 2)
     *  (0.71, 2.385):  y = (-0.426 - 1.908, -0.568 + 1.431) = (-2.334, 0.863)
     *                  (-2.334, 0.863, 2.334, -0.863)   -> 2 */
    const double a[] = {-3, 1, -4, 2};
    const double q[] = {-0.6, -0.8, -0.8, 0.6};
    const double x[] = {2.385, -0.71, 0.71, 2.385};
    const uint32_t want[] = {3, 2};
    uint32_t got[2];
    struct capture cap = {0};
    hash_with_draws(s, v, np, 2, 4, a, 4, x, 2, got, &cap);
    cr_assert_arr_eq(got, want, sizeof want);
    for (size_t i = 0; i < 4; i++)
        cr_assert_float_eq(cap.data[0][i], q[i], 1e-15, "R[%zu] = %.17g", i, cap.data[0][i]);
    capture_free(&cap);
    lsh_registry_free(reg);
}

Test(strategies, hyperplane_hand_worked_example)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "hyperplane");

    /* d = 2, B = 4, k = 2: W is 2 x 2, drawn row by row:
     *     W = [ 1.0  -2.0 ]     w0 = (1.0, 0.5), w1 = (-2.0, 1.0)
     *         [ 0.5   1.0 ]
     * b = [x.w0 > 0] + 2 [x.w1 > 0]
     *  (2.385, -0.71):  x.w0 = 2.385 - 0.355 = 2.03,  x.w1 = -4.77 - 0.71 = -5.48  -> 1
     *  (-0.71, 2.385):  x.w0 = -0.71 + 1.1925 = 0.4825, x.w1 = 1.42 + 2.385 = 3.805 -> 3
     *  (-2.385, 0.71):  x.w0 = -2.03, x.w1 = 5.48                                  -> 2
     *  (1.0, -2.0):     x.w0 = 1 - 1 = 0 exactly (not > 0), x.w1 = -4              -> 0 */
    const double w[] = {1.0, -2.0, 0.5, 1.0};
    const double x[] = {2.385, -0.71, -0.71, 2.385, -2.385, 0.71, 1.0, -2.0};
    const uint32_t want[] = {1, 3, 2, 0};
    uint32_t got[4];
    struct capture cap = {0};
    hash_with_draws(s, NULL, 0, 2, 4, w, 4, x, 4, got, &cap);
    cr_assert_arr_eq(got, want, sizeof want);
    cr_assert_str_eq(cap.name[0], "hyperplanes");
    cr_assert_arr_eq(cap.data[0], w, sizeof w);
    capture_free(&cap);

    /* B = 1: no hyperplane is drawn, every row is in bucket 0. */
    hash_with_draws(s, NULL, 0, 2, 1, w, 0, x, 4, got, NULL);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(got[i], 0);
    lsh_registry_free(reg);
}

/* ---- check(): what each rule refuses, and why ------------------------------- */

static void expect_check(const struct lsh_strategy *s, struct lsh_round round, const char *why)
{
    struct lsh_strategy_error err;
    int rc = check_round(s, round, &err);
    if (!why) {
        cr_assert_eq(rc, 0, "%s refused: %s", s->name, err.message);
        return;
    }
    cr_assert_eq(rc, LSH_STRATEGY_EINVAL, "%s accepted, expected: %s", s->name, why);
    cr_assert(strstr(err.message, why), "expected \"%s\" in: %s", why, err.message);
    /* init refuses the same round with the same reason. */
    struct instance in;
    cr_assert_eq(instance_init(&in, s, round, 5, NULL), LSH_STRATEGY_EINVAL);
    cr_assert(strstr(in.err.message, why), "init said: %s", in.err.message);
    instance_free(&in);
}

Test(strategies, rotation_check_says_why)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "rotation");
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    struct lsh_param_value *ortho = param_by_name(s, v, "orthogonal");
    struct lsh_param_value *fac = param_by_name(s, v, "factors");

    expect_check(s, make_round(16, 7, 100, v, np), "rotation needs an even n_buckets, got 7");
    expect_check(s, make_round(16, 1, 100, v, np), "rotation needs an even n_buckets, got 1");
    expect_check(s, make_round(16, 2, 100, v, np), NULL);
    const int64_t odd[] = {4, 3};
    fac->list = odd;
    fac->list_len = 2;
    expect_check(s, make_round(16, 12, 100, v, np), "rotation needs even factors >= 2, got 3");
    const int64_t f44[] = {4, 4};
    fac->list = f44;
    expect_check(s, make_round(16, 32, 100, v, np), "rotation factors multiply to 16, but "
                                                    "n_buckets is 32");
    expect_check(s, make_round(16, 8, 100, v, np), "rotation factors multiply to more than "
                                                   "n_buckets 8");
    expect_check(s, make_round(16, 16, 100, v, np), NULL);
    ortho->i = 1; /* 4/2 + 4/2 = 4 columns */
    expect_check(s, make_round(4, 16, 100, v, np), NULL);
    expect_check(s, make_round(3, 16, 100, v, np), "rotation orthogonal needs the sum of "
                                                   "factors/2 <= d, got 4 and d = 3");
    fac->list_len = 0;
    expect_check(s, make_round(16, 32, 100, v, np), NULL);
    expect_check(s, make_round(16, 34, 100, v, np), "rotation orthogonal needs n_buckets/2 <= "
                                                    "d, got n_buckets 34 and d = 16");
    lsh_registry_free(reg);
}

Test(strategies, hyperplane_and_kmeans_check_say_why)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *hp = builtin(reg, "hyperplane");
    expect_check(hp, make_round(16, 24, 100, NULL, 0), "power of two, got 24");
    expect_check(hp, make_round(16, 0, 100, NULL, 0), "power of two, got 0");
    expect_check(hp, make_round(16, 1, 100, NULL, 0), NULL);
    expect_check(hp, make_round(16, 1u << 31, 100, NULL, 0), NULL);

    const struct lsh_strategy *km = builtin(reg, "kmeans");
    struct lsh_param_value v[4];
    size_t np = default_values(km, v, 4);
    expect_check(km, make_round(16, 64, 12, v, np),
                 "kmeans needs n_buckets <= the rows it fits on, got n_buckets 64 for 12 rows");
    expect_check(km, make_round(16, 12, 12, v, np), NULL);
    expect_check(km, make_round(16, 1, 1, v, np), NULL);
    lsh_registry_free(reg);
}

/* ---- rotation orthogonal: a true rotation ----------------------------------- */

/* Q (d x c) from export has orthonormal columns, and Q^T A is upper
 * triangular with a positive diagonal, A the Gaussian draw of the seed. */
static void check_orthogonal_rotation(const struct lsh_strategy *s, size_t d, uint32_t b,
                                      const int64_t *factors, size_t n_factors, size_t cols)
{
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    param_by_name(s, v, "orthogonal")->i = 1;
    param_by_name(s, v, "factors")->list = factors;
    param_by_name(s, v, "factors")->list_len = n_factors;
    struct lsh_round round = make_round(d, b, 10, v, np);
    const uint64_t seed = 0x5eed2385;
    struct instance in;
    cr_assert_eq(instance_init(&in, s, round, seed, NULL), 0, "%s", in.err.message);
    struct capture cap = {0};
    struct lsh_sink sink = {.ctx = &cap, .array = capture_array};
    cr_assert_eq(s->export_params(in.state, &sink), 0);
    instance_free(&in);
    cr_assert_eq(cap.rows[0], d);
    cr_assert_eq(cap.cols[0], cols);
    const double *q = cap.data[0];

    double *a = malloc(d * cols * sizeof *a);
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    for (size_t i = 0; i < d * cols; i++)
        a[i] = lsh_rng_normal(rng); /* the same draws, in the same row-major order */
    lsh_rng_free(rng);

    double worst = 0;
    for (size_t j = 0; j < cols; j++)
        for (size_t k = 0; k < cols; k++) {
            double dot = 0;
            for (size_t i = 0; i < d; i++)
                dot += q[i * cols + j] * q[i * cols + k];
            double dev = fabs(dot - (j == k ? 1.0 : 0.0));
            worst = dev > worst ? dev : worst;
        }
    cr_assert_lt(worst, 1e-12, "Q^T Q is off the identity by %g", worst);

    for (size_t j = 0; j < cols; j++)
        for (size_t k = 0; k < cols; k++) {
            double r = 0; /* (Q^T A)_jk */
            for (size_t i = 0; i < d; i++)
                r += q[i * cols + j] * a[i * cols + k];
            if (j > k)
                cr_assert_lt(fabs(r), 1e-10, "R[%zu][%zu] = %g below the diagonal", j, k, r);
            if (j == k)
                cr_assert_gt(r, 0.1, "R[%zu][%zu] = %g is not positive", j, k, r);
        }
    free(a);
    capture_free(&cap);
}

Test(strategies, rotation_orthogonal_columns_are_orthonormal)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "rotation");
    check_orthogonal_rotation(s, 64, 128, NULL, 0, 64); /* square: the hardest case */
    check_orthogonal_rotation(s, 40, 16, NULL, 0, 8);
    const int64_t factors[] = {8, 8, 16};
    check_orthogonal_rotation(s, 20, 1024, factors, 3, 16);
    lsh_registry_free(reg);
}

/* ---- hyperplane: the SimHash collision law ---------------------------------- */

Test(strategies, hyperplane_collisions_follow_the_closed_form, .timeout = 240)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "hyperplane");
    const size_t d = 16, pairs = 200, rounds = 400;
    const double degrees[] = {20, 60, 90, 135};
    const unsigned ks[] = {1, 2, 3};

    /* Pairs at exact angle theta: x = u, y = cos(theta) u + sin(theta) v with
     * u, v orthonormal (Gram-Schmidt on two Gaussian draws). */
    double *x = malloc(2 * pairs * d * sizeof *x);
    uint32_t *bucket = malloc(2 * pairs * sizeof *bucket);
    double *share = malloc(rounds * sizeof *share);
    struct lsh_rng *data_rng = lsh_rng_alloc(20);
    for (size_t a = 0; a < sizeof degrees / sizeof *degrees; a++) {
        double theta = degrees[a] * PI / 180;
        for (size_t p = 0; p < pairs; p++) {
            double u[16], w[16], uu = 0, uw = 0, ww = 0;
            gaussian(data_rng, u, d, 1);
            gaussian(data_rng, w, d, 1);
            for (size_t i = 0; i < d; i++)
                uu += u[i] * u[i];
            for (size_t i = 0; i < d; i++)
                u[i] /= sqrt(uu);
            for (size_t i = 0; i < d; i++)
                uw += u[i] * w[i];
            for (size_t i = 0; i < d; i++)
                w[i] -= uw * u[i];
            for (size_t i = 0; i < d; i++)
                ww += w[i] * w[i];
            for (size_t i = 0; i < d; i++) {
                w[i] /= sqrt(ww);
                x[(2 * p) * d + i] = 2.385 * u[i];
                x[(2 * p + 1) * d + i] = 0.71 * (cos(theta) * u[i] + sin(theta) * w[i]);
            }
        }
        for (size_t kk = 0; kk < sizeof ks / sizeof *ks; kk++) {
            unsigned k = ks[kk];
            struct lsh_round round = make_round(d, 1u << k, 2 * pairs, NULL, 0);
            double mean = 0;
            for (size_t r = 0; r < rounds; r++) {
                hash_round(s, round, lsh_seed_u64(k, r), x, 2 * pairs, 2 * pairs, bucket);
                size_t hits = 0;
                for (size_t p = 0; p < pairs; p++)
                    hits += bucket[2 * p] == bucket[2 * p + 1];
                share[r] = (double)hits / pairs;
                mean += share[r];
            }
            mean /= rounds;
            /* Pairs of one round share its hyperplanes, so the error is the
             * spread of per-round shares, not a binomial over all pairs. */
            double var = 0;
            for (size_t r = 0; r < rounds; r++)
                var += (share[r] - mean) * (share[r] - mean);
            double se = sqrt(var / (rounds - 1)) / sqrt((double)rounds);
            double want = pow(1 - theta / PI, k);
            cr_assert_lt(fabs(mean - want), 4 * se,
                         "theta %g deg, k %u: p = %.4f, closed form %.4f, se %.4f", degrees[a],
                         k, mean, want, se);
        }
    }
    lsh_rng_free(data_rng);
    free(share);
    free(bucket);
    free(x);
    lsh_registry_free(reg);
}

/* ---- kmeans ----------------------------------------------------------------- */

/* Fits kmeans on x and hashes x; returns fit's code (err filled). */
static int kmeans_run(const struct lsh_strategy *s, const char *init, int64_t iterations,
                      uint32_t b, const double *x, size_t n, size_t d, uint64_t seed,
                      uint32_t *bucket, struct capture *cap, struct lsh_strategy_error *err)
{
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    param_by_name(s, v, "init")->choice = choice_of(s, "init", init);
    param_by_name(s, v, "iterations")->i = iterations;
    struct instance in;
    cr_assert_eq(instance_init(&in, s, make_round(d, b, n, v, np), seed, NULL), 0, "%s",
                 in.err.message);
    int rc = s->fit(in.state, x, n, d, &in.err);
    if (rc == 0) {
        cr_assert_eq(s->hash(in.state, x, n, d, bucket, &in.err), 0, "%s", in.err.message);
        if (cap) {
            struct lsh_sink sink = {.ctx = cap, .array = capture_array};
            cr_assert_eq(s->export_params(in.state, &sink), 0);
        }
    }
    *err = in.err;
    instance_free(&in);
    return rc;
}

Test(strategies, kmeans_plusplus_finds_tight_clusters)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    /* 4 tight clusters around 2.385 e_0 .. 2.385 e_3 in R^8, interleaved. */
    const size_t d = 8, n = 200;
    double *x = malloc(n * d * sizeof *x);
    uint32_t bucket[200];
    struct lsh_rng *rng = lsh_rng_alloc(4);
    gaussian(rng, x, n * d, 0.01);
    lsh_rng_free(rng);
    for (size_t i = 0; i < n; i++)
        x[i * d + i % 4] += 2.385;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        struct lsh_strategy_error err;
        cr_assert_eq(kmeans_run(s, "kmeans++", 10, 4, x, n, d, seed, bucket, NULL, &err), 0,
                     "%s", err.message);
        for (size_t i = 4; i < n; i++)
            cr_assert_eq(bucket[i], bucket[i % 4], "seed %llu: row %zu left its cluster",
                         (unsigned long long)seed, i);
        for (size_t a = 0; a < 4; a++)
            for (size_t c = 0; c < a; c++)
                cr_assert_neq(bucket[a], bucket[c], "seed %llu: clusters %zu and %zu merged",
                              (unsigned long long)seed, a, c);
    }
    free(x);
    lsh_registry_free(reg);
}

/* 4 distinct rows, each repeated 30 times, and 5 zero rows. */
static double *repeated_rows(size_t *n_out, size_t d)
{
    const double base[4][3] = {{2.385, -0.71, 0.3}, {-0.71, 2.385, 1.1}, {0.3, 0.3, -2.385},
                               {-1.25, -1.5, 0.4}};
    size_t n = 4 * 30 + 5;
    double *x = calloc(n * d, sizeof *x);
    for (size_t i = 0; i < 120; i++)
        memcpy(x + (i + i / 24) * d, base[i % 4], d * sizeof *x); /* zeros at 24, 49, ... */
    *n_out = n;
    return x;
}

Test(strategies, kmeans_init_skips_zero_and_repeated_rows)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t d = 3;
    size_t n;
    double *x = repeated_rows(&n, d);
    uint32_t bucket[125];
    const char *inits[] = {"random", "kmeans++"};
    for (size_t k = 0; k < 2; k++)
        for (int64_t iterations = 0; iterations <= 10; iterations += 10)
            for (uint64_t seed = 1; seed <= 8; seed++) {
                struct lsh_strategy_error err;
                cr_assert_eq(kmeans_run(s, inits[k], iterations, 4, x, n, d, seed, bucket, NULL,
                                        &err),
                             0, "%s", err.message);
                /* B = the number of distinct rows: each gets its own centroid. */
                uint32_t of[4] = {9, 9, 9, 9};
                for (size_t i = 0; i < n; i++) {
                    int zero = x[i * d] == 0 && x[i * d + 1] == 0 && x[i * d + 2] == 0;
                    if (zero) {
                        cr_assert_eq(bucket[i], 0, "zero row %zu in bucket %u", i, bucket[i]);
                        continue;
                    }
                    size_t which = 0;
                    while (x[i * d] != (which == 0   ? 2.385
                                        : which == 1 ? -0.71
                                        : which == 2 ? 0.3
                                                     : -1.25))
                        which++;
                    if (of[which] == 9)
                        of[which] = bucket[i];
                    cr_assert_eq(bucket[i], of[which], "%s: copies of row %zu split", inits[k],
                                 which);
                }
                for (size_t a = 0; a < 4; a++)
                    for (size_t c = 0; c < a; c++)
                        cr_assert_neq(of[a], of[c], "%s seed %llu: distinct rows share a bucket",
                                      inits[k], (unsigned long long)seed);
            }
    free(x);
    lsh_registry_free(reg);
}

Test(strategies, kmeans_refuses_too_few_distinct_rows)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t d = 3;
    size_t n;
    double *x = repeated_rows(&n, d);
    uint32_t bucket[125];
    const char *inits[] = {"random", "kmeans++"};
    for (size_t k = 0; k < 2; k++) {
        struct lsh_strategy_error err;
        cr_assert_eq(kmeans_run(s, inits[k], 10, 5, x, n, d, 3, bucket, NULL, &err),
                     LSH_STRATEGY_EDATA);
        cr_assert_str_eq(err.message, "kmeans: n_buckets 5 but only 4 distinct non-zero rows");
    }
    /* All rows zero: nothing to fit. */
    memset(x, 0, n * d * sizeof *x);
    struct lsh_strategy_error err;
    cr_assert_eq(kmeans_run(s, "kmeans++", 10, 1, x, n, d, 3, bucket, NULL, &err),
                 LSH_STRATEGY_EDATA);
    cr_assert_str_eq(err.message, "kmeans: n_buckets 1 but only 0 distinct non-zero rows");
    free(x);
    lsh_registry_free(reg);
}

Test(strategies, kmeans_zero_row_goes_to_bucket_0)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t d = 6, n = 300;
    double *x = malloc(n * d * sizeof *x);
    uint32_t *bucket = malloc(n * sizeof *bucket);
    struct lsh_rng *rng = lsh_rng_alloc(6);
    gaussian(rng, x, n * d, 2.385);
    lsh_rng_free(rng);
    memset(x + 17 * d, 0, d * sizeof *x);
    struct capture cap = {0};
    struct lsh_strategy_error err;
    cr_assert_eq(kmeans_run(s, "random", 10, 8, x, n, d, 9, bucket, &cap, &err), 0, "%s",
                 err.message);
    cr_assert_eq(bucket[17], 0);
    int others_in_0 = 0, others_elsewhere = 0;
    for (size_t i = 0; i < n; i++)
        if (i != 17 && bucket[i] == 0)
            others_in_0++;
        else if (i != 17)
            others_elsewhere++;
    cr_assert(others_in_0 > 0 && others_elsewhere > 0);
    capture_free(&cap);
    free(bucket);
    free(x);
    lsh_registry_free(reg);
}

/* A row scaled by a power of two is the same unit row (normalisation
 * scales by powers of two, exactly): every row of the data scaled by one of
 * 2^-1005 ... 2^1015 gives the same fit and buckets as the unscaled data,
 * and a subnormal multiple of e_0 hashes as e_0 does. */
Test(strategies, kmeans_buckets_do_not_change_when_rows_are_scaled_by_powers_of_two)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t d = 6, n = 300;
    double *x = malloc(n * d * sizeof *x), *y = malloc(n * d * sizeof *y);
    uint32_t *bx = malloc(n * sizeof *bx), *by = malloc(n * sizeof *by);
    struct lsh_rng *rng = lsh_rng_alloc(8);
    gaussian(rng, x, n * d, 2.0);
    lsh_rng_free(rng);
    for (size_t t = 0; t < n * d; t++) /* no entry so small that its scaled value is subnormal */
        if (fabs(x[t]) < 0.01)
            x[t] = x[t] < 0 ? -0.01 : 0.01;
    memset(x, 0, d * sizeof *x); /* rows 0 and 1: e_0 and 2^-1070 e_0 */
    memset(x + d, 0, d * sizeof *x);
    x[0] = 1.0;
    x[d] = ldexp(1.0, -1070);
    const int k[] = {-1005, -700, -300, -1, 0, 1, 300, 700, 1015};
    memcpy(y, x, n * d * sizeof *y);
    for (size_t i = 2; i < n; i++)
        for (size_t j = 0; j < d; j++)
            y[i * d + j] = ldexp(x[i * d + j], k[i % 9]);
    struct lsh_strategy_error err;
    struct capture cx = {0}, cy = {0};
    cr_assert_eq(kmeans_run(s, "kmeans++", 10, 8, x, n, d, 4, bx, &cx, &err), 0, "%s",
                 err.message);
    cr_assert_eq(kmeans_run(s, "kmeans++", 10, 8, y, n, d, 4, by, &cy, &err), 0, "%s",
                 err.message);
    /* the centroids, normalised sums of the unit rows, to the bit */
    cr_assert_eq(cx.n, 1);
    cr_assert_eq(cy.n, 1);
    cr_assert_eq(cx.rows[0] * cx.cols[0], 8 * d);
    cr_expect_arr_eq(cy.data[0], cx.data[0], 8 * d * sizeof(double),
                     "the centroids of the scaled rows differ");
    capture_free(&cx);
    capture_free(&cy);
    cr_expect_eq(bx[1], bx[0], "2^-1070 e_0 in bucket %u, e_0 in %u", bx[1], bx[0]);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(by[i], bx[i], "row %zu scaled by 2^%d: bucket %u, unscaled %u", i,
                     i < 2 ? 0 : k[i % 9], by[i], bx[i]);
    free(x);
    free(y);
    free(bx);
    free(by);
    lsh_registry_free(reg);
}

/* x / |x| as docs/definitions.md gives k-means' unit rows, written out here
 * plainly: x scaled by 2^-e (its largest |x_j| = f 2^e, f in [1/2, 1)), the
 * squares summed in eight lanes (lane j mod 8, j ascending), the lanes added
 * as ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)), then times 1 / sqrt. */
static void unit_row(const double *x, size_t d, double *out)
{
    double big = 0, l[8] = {0};
    for (size_t j = 0; j < d; j++)
        big = fabs(x[j]) > big ? fabs(x[j]) : big;
    int e;
    frexp(big, &e);
    for (size_t j = 0; j < d; j++) {
        out[j] = ldexp(ldexp(x[j], -(e / 2)), -(e - e / 2));
        l[j % 8] += out[j] * out[j];
    }
    const double sq = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    const double inv = 1.0 / sqrt(sq);
    for (size_t j = 0; j < d; j++)
        out[j] *= inv;
}

Test(strategies, kmeans_converged_centroids_are_normalised_member_sums)
{
    /* A fixed point of Lloyd's steps, checked from outside, to the bit: each
     * exported centroid is the unit vector of the sum, in row order, of the
     * unit rows hashed to it.  B <= 8 takes the fit's own assignment kernel
     * (rows in lanes), 13 the other; d = 5 the plain unit rows, 37 the
     * vector ones (with a tail). */
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t n = 400, dmax = 37;
    double *x = malloc(n * dmax * sizeof *x), *u = malloc(dmax * sizeof *u);
    double *sum = malloc(dmax * sizeof *sum), *want = malloc(dmax * sizeof *want);
    uint32_t *bucket = malloc(n * sizeof *bucket);
    struct lsh_rng *rng = lsh_rng_alloc(11);
    gaussian(rng, x, n * dmax, 2.385);
    lsh_rng_free(rng);
    const char *inits[] = {"random", "kmeans++"};
    const uint32_t bs[] = {6, 8, 13};
    const size_t ds[] = {5, 37};
    for (size_t k = 0; k < 12; k++) {
        const uint32_t b = bs[k / 4];
        const size_t d = ds[k / 2 % 2];
        const char *init = inits[k % 2];
        struct capture cap = {0};
        struct lsh_strategy_error err;
        cr_assert_eq(kmeans_run(s, init, 1000, b, x, n, d, 21, bucket, &cap, &err), 0, "%s",
                     err.message);
        cr_assert_str_eq(cap.name[0], "centroids");
        cr_assert_eq(cap.rows[0], b);
        cr_assert_eq(cap.cols[0], d);
        for (uint32_t c = 0; c < b; c++) {
            size_t members = 0;
            memset(sum, 0, d * sizeof *sum);
            for (size_t i = 0; i < n; i++) {
                if (bucket[i] != c)
                    continue;
                unit_row(x + i * d, d, u);
                for (size_t j = 0; j < d; j++)
                    sum[j] += u[j];
                members++;
            }
            cr_assert_gt(members, 0, "%s B %u d %zu: bucket %u is empty", init, b, d, c);
            unit_row(sum, d, want);
            cr_expect_arr_eq(cap.data[0] + c * d, want, d * sizeof *want,
                             "%s B %u d %zu: centroid %u is not its members' unit sum", init, b,
                             d, c);
        }
        capture_free(&cap);
    }
    free(bucket);
    free(want);
    free(sum);
    free(u);
    free(x);
    lsh_registry_free(reg);
}

/* The score kernel's blocks, panels and tails (B not a multiple of its
 * vector width, n not of its row blocks, odd d): every row's bucket is the
 * argmax of x/|x| . c over the exported centroids, recomputed here in long
 * double, except where the two best scores are within 1e-12 (a near tie the
 * last bits may decide). */
Test(strategies, kmeans_buckets_are_the_nearest_exported_centroid_at_every_shape)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t n = 301, ds[] = {3, 33, 64};
    const uint32_t bs[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 100};
    double *x = malloc(n * 64 * sizeof *x);
    uint32_t *bucket = malloc(n * sizeof *bucket);
    struct lsh_rng *rng = lsh_rng_alloc(5);
    gaussian(rng, x, n * 64, 1.0);
    lsh_rng_free(rng);
    size_t checked = 0;
    for (size_t k = 0; k < sizeof ds / sizeof *ds; k++)
        for (size_t t = 0; t < sizeof bs / sizeof *bs; t++) {
            const size_t d = ds[k];
            const uint32_t b = bs[t];
            struct capture cap = {0};
            struct lsh_strategy_error err;
            cr_assert_eq(kmeans_run(s, "random", 2, b, x, n, d, 17 + t, bucket, &cap, &err), 0,
                         "d %zu B %u: %s", d, b, err.message);
            const double *c = cap.data[0];
            for (size_t i = 0; i < n; i++) {
                long double len = 0, best = -INFINITY, second = -INFINITY;
                uint32_t arg = 0;
                for (size_t e = 0; e < d; e++)
                    len += (long double)x[i * d + e] * x[i * d + e];
                for (uint32_t j = 0; j < b; j++) {
                    long double dot = 0;
                    for (size_t e = 0; e < d; e++)
                        dot += (long double)x[i * d + e] * c[j * d + e];
                    dot /= sqrtl(len);
                    if (dot > best) {
                        second = best;
                        best = dot;
                        arg = j;
                    } else if (dot > second) {
                        second = dot;
                    }
                }
                if (best - second < 1e-12L)
                    continue;
                cr_assert_eq(bucket[i], arg, "d %zu B %u row %zu: bucket %u, nearest %u", d, b,
                             i, bucket[i], arg);
                checked++;
            }
            capture_free(&cap);
        }
    cr_assert_gt(checked, 3 * 17 * n * 9 / 10, "only %zu rows away from a near tie", checked);
    free(bucket);
    free(x);
    lsh_registry_free(reg);
}

Test(strategies, kmeans_must_fit_before_hashing)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    const double x[6] = {2.385, -0.71, 0.5, 1.25, -1.0, 0.3};
    uint32_t bucket[2];
    struct instance in;
    cr_assert_eq(instance_init(&in, s, make_round(3, 2, 2, v, np), 1, NULL), 0);
    cr_assert_eq(s->hash(in.state, x, 2, 3, bucket, &in.err), LSH_STRATEGY_EFAIL);
    cr_assert_str_eq(in.err.message, "kmeans: hash called before fit");
    struct capture cap = {0};
    struct lsh_sink sink = {.ctx = &cap, .array = capture_array};
    cr_assert_lt(s->export_params(in.state, &sink), 0);
    cr_assert_eq(cap.n, 0);
    /* Rows of the wrong width are refused, not read out of bounds. */
    cr_assert_eq(s->fit(in.state, x, 3, 2, &in.err), LSH_STRATEGY_EINVAL);
    cr_assert(strstr(in.err.message, "d = 2"), "%s", in.err.message);
    instance_free(&in);
    lsh_registry_free(reg);
}

/* ---- kmeans balanced, window, random (SPEC 12.2) ------------------------------ */

/* The real host, except uniform_int always returns 0: k-means' random
 * initialisation then takes the first B distinct non-zero rows in order. */
static uint64_t first_int(struct lsh_rng *rng, uint64_t n)
{
    (void)rng, (void)n;
    return 0;
}

/* A k-means round with centroids = the first B rows of c (unit rows, distinct),
 * iterations 0, balanced as given; then assign(q, k) directly. */
static int kmeans_assign_with(const struct lsh_strategy *s, int balanced, const double *c,
                              uint32_t b, const double *q, size_t n_q, const double *k,
                              size_t n_k, size_t d, uint32_t *bq, uint32_t *bk,
                              struct lsh_strategy_error *err)
{
    struct lsh_host h = *lsh_host_services();
    h.uniform_int = first_int;
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    param_by_name(s, v, "iterations")->i = 0;
    param_by_name(s, v, "balanced")->i = balanced;
    struct lsh_round round = make_round(d, b, b, v, np);
    round.host = &h;
    struct instance in;
    cr_assert_eq(instance_init(&in, s, round, 1, NULL), 0, "%s", in.err.message);
    cr_assert_eq(s->fit(in.state, c, b, d, &in.err), 0, "%s", in.err.message);
    memset(err, 0, sizeof *err);
    int rc = s->assign(in.state, q, n_q, k, n_k, d, bq, bk, err);
    instance_free(&in);
    return rc;
}

Test(strategies, kmeans_balanced_capacities_and_tie_order_by_hand)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    cr_assert(s->assign);
    const double c[4] = {1, 0, 0, 1}; /* c0 = e1, c1 = e2 */
    struct lsh_strategy_error err;

    /* n = 4, B = 2: capacity 2.  Rows 0-2 are (1,1): x.c = 1/sqrt2 for both
     * centroids (a tie); row 3 is (1,0): x.c = (1, 0).  Pairs by descending
     * x.c: (3,c0) -> c0 {3}; then the ties in row order, centroid order:
     * (0,c0) -> c0 {3,0}, full; (0,c1) row 0 placed; (1,c0) full;
     * (1,c1) -> c1 {1}; (2,c0) full; (2,c1) -> c1 {1,2}. */
    const double q[8] = {1, 1, 1, 1, 1, 1, 1, 0};
    uint32_t bq[6], bk[6];
    cr_assert_eq(kmeans_assign_with(s, 1, c, 2, q, 4, q, 4, 2, bq, bk, &err), 0, "%s",
                 err.message);
    const uint32_t want[4] = {0, 1, 1, 0};
    cr_expect_arr_eq(bq, want, sizeof want, "balanced: %u %u %u %u", bq[0], bq[1], bq[2], bq[3]);
    cr_expect_arr_eq(bk, want, sizeof want, "shared keys (k == q) take the same assignment");
    /* unbalanced: the argmax, ties to the smaller centroid: all four in c0 */
    cr_assert_eq(kmeans_assign_with(s, 0, c, 2, q, 4, q, 4, 2, bq, bk, &err), 0);
    const uint32_t argmax[4] = {0, 0, 0, 0};
    cr_expect_arr_eq(bq, argmax, sizeof argmax);
    cr_expect_arr_eq(bk, argmax, sizeof argmax);

    /* capacity ceil(n/B), queries and keys separately: 5 queries all on c0
     * (capacity 3): rows 0-2 in c0, rows 3-4 spill to c1; 3 keys (0,2), a
     * zero row and (0,1) (capacity 2): key 0 -> c1 (x.c = 1), key 2 -> c1
     * (x.c = 1, c1 now full), the zero key scores 0 everywhere: c0. */
    const double q5[10] = {2, 0, 3, 0, 1, 0, 5, 0, 7, 0};
    const double k3[6] = {0, 2, 0, 0, 0, 1};
    cr_assert_eq(kmeans_assign_with(s, 1, c, 2, q5, 5, k3, 3, 2, bq, bk, &err), 0, "%s",
                 err.message);
    const uint32_t want_q5[5] = {0, 0, 0, 1, 1}, want_k3[3] = {1, 0, 1};
    cr_expect_arr_eq(bq, want_q5, sizeof want_q5);
    cr_expect_arr_eq(bk, want_k3, sizeof want_k3);

    /* a worked case with distinct scores, B = 3, n = 6 (capacity 2), d = 2:
     * centroids e1, e2, (-1,0).  Rows and x.c (c0, c1, c2):
     *   r0 (3,4)/5  .6 .8 -.6    r1 (4,3)/5  .8 .6 -.8    r2 (1,0)    1  0 -1
     *   r3 (5,12)/13 .385 .923 -.385   r4 (-1,0) -1 0 1   r5 (1,-1)/sqrt2 .707 -.707 -.707
     * walk: (r2,c0 1) (r4,c2 1) (r3,c1 .923) (r0,c1 .8) c1 full; (r1,c0 .8) c0 full;
     * (r5,c0 .707) full, (r5,c1 -.707) full, (r5,c2 -.707) -> c2. */
    const double c3[6] = {1, 0, 0, 1, -1, 0};
    const double q6[12] = {3, 4, 4, 3, 1, 0, 5, 12, -1, 0, 1, -1};
    cr_assert_eq(kmeans_assign_with(s, 1, c3, 3, q6, 6, q6, 6, 2, bq, bk, &err), 0, "%s",
                 err.message);
    const uint32_t want6[6] = {1, 0, 0, 1, 2, 2};
    cr_expect_arr_eq(bq, want6, sizeof want6, "%u %u %u %u %u %u", bq[0], bq[1], bq[2], bq[3],
                     bq[4], bq[5]);

    /* a tie between two centroids with room, after the best filled: the
     * smaller centroid.  Centroids e1, e2, -e2; three rows (1,0) score
     * (1, 0, 0); capacity 1: row 0 -> c0; row 1 ties c1/c2 -> c1; row 2 -> c2. */
    const double cpm[6] = {1, 0, 0, 1, 0, -1};
    const double ones[6] = {1, 0, 1, 0, 1, 0};
    cr_assert_eq(kmeans_assign_with(s, 1, cpm, 3, ones, 3, ones, 3, 2, bq, bk, &err), 0, "%s",
                 err.message);
    const uint32_t want3[3] = {0, 1, 2};
    cr_expect_arr_eq(bq, want3, sizeof want3, "%u %u %u", bq[0], bq[1], bq[2]);

    /* B > rows: refused with the count */
    cr_expect_eq(kmeans_assign_with(s, 1, c3, 3, q6, 2, q6, 2, 2, bq, bk, &err),
                 LSH_STRATEGY_EDATA);
    cr_expect_str_eq(err.message, "kmeans balanced needs n_buckets <= the query rows, got "
                                  "n_buckets 3 for 2 query rows");
    cr_expect_eq(kmeans_assign_with(s, 1, c3, 3, q6, 6, q6, 2, 2, bq, bk, &err),
                 LSH_STRATEGY_EDATA);
    cr_expect_str_eq(err.message, "kmeans balanced needs n_buckets <= the key rows, got "
                                  "n_buckets 3 for 2 key rows");
    lsh_registry_free(reg);
}

/* Bucket sizes of a balanced round never exceed ceil(n/B), for queries and
 * separate keys alike (n = 2600, B = 24: capacity 109; 2500 keys: 105), on
 * Gaussian rows through the host. */
Test(strategies, kmeans_balanced_buckets_respect_the_capacity)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "kmeans");
    const size_t n = 2600, d = 8;
    const uint32_t b = 24;
    double *x = malloc(2 * n * d * sizeof *x);
    struct lsh_rng *rng = lsh_rng_alloc(99);
    gaussian(rng, x, 2 * n * d, 1);
    lsh_rng_free(rng);
    struct lsh_param_value v[4];
    size_t np = default_values(s, v, 4);
    param_by_name(s, v, "balanced")->i = 1;
    uint32_t *bq = malloc(n * sizeof *bq), *bk = malloc(n * sizeof *bk);
    host_round(s, v, np, d, b, 7, x, n, x + n * d, n - 100, bq, bk);
    size_t cq[24] = {0}, ck[24] = {0};
    for (size_t i = 0; i < n; i++)
        cq[bq[i]]++;
    for (size_t j = 0; j < n - 100; j++)
        ck[bk[j]]++;
    for (uint32_t c = 0; c < b; c++) {
        cr_expect_leq(cq[c], 109, "query bucket %u holds %zu > ceil(2600/24)", c, cq[c]);
        cr_expect_leq(ck[c], 105, "key bucket %u holds %zu > ceil(2500/24)", c, ck[c]);
    }
    free(x);
    free(bq);
    free(bk);
    lsh_registry_free(reg);
}

Test(strategies, window_blocks_by_hand)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "window");
    cr_assert(lsh_host_assigns(s));
    cr_assert_null(s->hash);
    double x[20 * 2] = {0};
    for (size_t i = 0; i < 40; i++)
        x[i] = (double)((i * 37) % 11) - 5; /* the rows do not matter */
    uint32_t bq[20], bk[20];
    /* n = 10, B = 4: floor(4i/10) = 0 0 0 1 1 2 2 2 3 3; keys n = 7:
     * floor(4j/7) = 0 0 1 1 2 2 3 */
    host_round(s, NULL, 0, 2, 4, 1, x, 10, x + 20, 7, bq, bk);
    const uint32_t wq[10] = {0, 0, 0, 1, 1, 2, 2, 2, 3, 3}, wk[7] = {0, 0, 1, 1, 2, 2, 3};
    cr_expect_arr_eq(bq, wq, sizeof wq);
    cr_expect_arr_eq(bk, wk, sizeof wk);
    /* shared keys: the same blocks; another seed: the same blocks */
    host_round(s, NULL, 0, 2, 4, 99, x, 10, x, 10, bq, bk);
    cr_expect_arr_eq(bq, wq, sizeof wq);
    cr_expect_arr_eq(bk, wq, sizeof wq);
    /* B > n: n = 3, B = 8: floor(8i/3) = 0 2 5 (some buckets empty) */
    host_round(s, NULL, 0, 2, 8, 1, x, 3, NULL, 0, bq, NULL);
    const uint32_t w3[3] = {0, 2, 5};
    cr_expect_arr_eq(bq, w3, sizeof w3);
    /* B = 1: everything in bucket 0; B = n: bucket i */
    host_round(s, NULL, 0, 2, 20, 1, x, 20, NULL, 0, bq, NULL);
    for (uint32_t i = 0; i < 20; i++)
        cr_expect_eq(bq[i], i);
    lsh_registry_free(reg);
}

/* random: bucket i = floor(u_i B), u_i the round stream's i-th uniform (the
 * host seeds the stream with the round's seed); separate keys take uniforms
 * n_q + j; shared keys the query buckets.  Counts against the uniform law:
 * chi-square with B - 1 = 15 degrees of freedom below its 0.999 quantile
 * (37.70), for a fixed seed. */
Test(strategies, random_buckets_are_the_round_streams_uniforms_and_pass_chi_square)
{
    struct lsh_registry *reg = load_registry();
    const struct lsh_strategy *s = builtin(reg, "random");
    cr_assert(lsh_host_assigns(s));
    const size_t n = 20000, n_k = 300, d = 3;
    const uint32_t b = 16;
    double *x = calloc((n + n_k) * d, sizeof *x);
    uint32_t *bq = malloc(n * sizeof *bq), *bk = malloc(n * sizeof *bk);
    const uint64_t seed = 0x2385;
    host_round(s, NULL, 0, d, b, seed, x, n, x + n * d, n_k, bq, bk);
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    for (size_t i = 0; i < n + n_k; i++) {
        const uint32_t want = (uint32_t)floor(lsh_rng_uniform(rng) * b);
        cr_assert_eq(i < n ? bq[i] : bk[i - n], want, "%s %zu", i < n ? "query" : "key",
                     i < n ? i : i - n);
    }
    lsh_rng_free(rng);
    double counts[16] = {0}, chi2 = 0, e = (double)n / b;
    for (size_t i = 0; i < n; i++)
        counts[bq[i]]++;
    for (uint32_t c = 0; c < b; c++)
        chi2 += (counts[c] - e) * (counts[c] - e) / e;
    cr_expect_lt(chi2, 37.70, "chi-square %.2f with 15 degrees of freedom", chi2);

    uint32_t *again = malloc(n * sizeof *again);
    memcpy(again, bq, n * sizeof *bq);
    host_round(s, NULL, 0, d, b, seed, x, n, x, n, bq, bk);
    cr_expect_arr_eq(bq, again, n * sizeof *bq, "the same stream whatever the keys");
    cr_expect_arr_eq(bk, bq, n * sizeof *bq, "shared keys take the query buckets");
    host_round(s, NULL, 0, d, b, seed + 1, x, n, NULL, 0, bq, NULL);
    cr_expect_neq(memcmp(bq, again, n * sizeof *bq), 0, "another round seed, other buckets");
    free(again);
    free(x);
    free(bq);
    free(bk);
    lsh_registry_free(reg);
}
