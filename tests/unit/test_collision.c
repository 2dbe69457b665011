/* test_collision.c - the collision experiment (SPEC 8): pairs exactly at
 * their angle, the statistics on hand-worked counts, SimHash's closed-form
 * law (1 - theta/pi)^k reproduced within the standard errors, bit-identical
 * rows for any thread count, resume, and every refusal. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collision.h"
#include "config.h"
#include "host.h"
#include "registry.h"
#include "results.h"

static struct lsh_registry *reg;
static char dir[64];

static void setup(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    lsh_results_init_library();
    reg = lsh_registry_alloc();
    cr_assert_not_null(reg);
    const char *path = getenv("LSHLAB_STRATEGY_PATH");
    cr_assert_not_null(path, "LSHLAB_STRATEGY_PATH is not set (run through meson test)");
    cr_assert_eq(lsh_registry_load_dir(reg, path, &err), 0, "%s", err.message);
    snprintf(dir, sizeof dir, "/tmp/lshlab-test-collision-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    lsh_registry_free(reg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(collision, .init = setup, .fini = teardown);

static int load(const char *yaml, struct lsh_config **cfg, struct lsh_collision_plan **plan,
                struct lsh_error *err)
{
    lsh_error_clear(err);
    *cfg = NULL;
    *plan = NULL;
    int rc = lsh_config_parse(yaml, strlen(yaml), "c.yaml", reg, cfg, err);
    if (!rc)
        rc = lsh_collision_plan_build(*cfg, plan, err);
    return rc;
}

/* One /collision row as read back (the fields the tests look at). */
struct row {
    char strategy[64];
    char params[256];
    uint32_t n_buckets, n_hashes;
    double angle;
    uint64_t pairs;
    double p_round, p_round_se, p_any, p_any_se;
    uint64_t seed;
    double seconds;
};

static struct row *read_rows(const char *path, size_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot open %s", path);
    hid_t d = H5Dopen2(f, "collision", H5P_DEFAULT);
    cr_assert_geq(d, 0);
    hid_t space = H5Dget_space(d);
    hsize_t dims[1];
    H5Sget_simple_extent_dims(space, dims, NULL);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 64);
    H5Tset_strpad(str, H5T_STR_NULLPAD);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct row));
    H5Tinsert(t, "strategy", HOFFSET(struct row, strategy), str);
    hid_t pstr = H5Tcopy(H5T_C_S1);
    H5Tset_size(pstr, 256);
    H5Tset_strpad(pstr, H5T_STR_NULLPAD);
    H5Tinsert(t, "params", HOFFSET(struct row, params), pstr);
    H5Tinsert(t, "n_buckets", HOFFSET(struct row, n_buckets), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_hashes", HOFFSET(struct row, n_hashes), H5T_NATIVE_UINT32);
    H5Tinsert(t, "angle", HOFFSET(struct row, angle), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "pairs", HOFFSET(struct row, pairs), H5T_NATIVE_UINT64);
    H5Tinsert(t, "p_round", HOFFSET(struct row, p_round), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_round_se", HOFFSET(struct row, p_round_se), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_any", HOFFSET(struct row, p_any), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_any_se", HOFFSET(struct row, p_any_se), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "seed", HOFFSET(struct row, seed), H5T_NATIVE_UINT64);
    H5Tinsert(t, "seconds", HOFFSET(struct row, seconds), H5T_NATIVE_DOUBLE);
    struct row *rows = calloc(dims[0] + 1, sizeof *rows);
    cr_assert_not_null(rows);
    if (dims[0])
        cr_assert_geq(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    H5Tclose(t);
    H5Tclose(pstr);
    H5Tclose(str);
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    *n = dims[0];
    return rows;
}

struct stopper {
    volatile sig_atomic_t *flag;
    size_t after;  /* set the flag once this many rows are written */
    size_t rows;
};

static void count_rows(void *ctx, const struct lsh_collision_progress *p)
{
    struct stopper *s = ctx;
    if (!strcmp(p->stage, "row") && ++s->rows == s->after)
        *s->flag = 1;
}

static int run(const char *yaml, const char *name, unsigned threads, enum lsh_results_mode mode,
               struct stopper *stop, struct lsh_collision_summary *sum, char *path,
               size_t path_size)
{
    struct lsh_config *cfg;
    struct lsh_collision_plan *plan;
    struct lsh_error err;
    cr_assert_eq(load(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    snprintf(path, path_size, "%s/%s.h5", dir, name);
    struct lsh_collision_opts opts = {
        .threads = threads, .mode = mode, .output = path, .cmdline = "test",
        .stop = stop ? stop->flag : NULL, .progress = stop ? count_rows : NULL,
        .progress_ctx = stop,
    };
    int rc = lsh_collision_run(cfg, plan, &opts, sum, &err);
    cr_assert(rc == 0 || rc == LSH_EINTR, "%s", err.message);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);
    return rc;
}

/* ---- pairs ---------------------------------------------------------------- */

Test(collision, pairs_are_unit_vectors_exactly_at_the_angle)
{
    const double angles[] = {10.0, 37.5, 90.0, 123.4, 180.0};
    const size_t P = 700, d = 5;
    double *xy = malloc(2 * P * d * sizeof *xy);
    cr_assert_not_null(xy);
    for (size_t a = 0; a < sizeof angles / sizeof *angles; a++) {
        struct lsh_error err;
        cr_assert_eq(lsh_collision_draw_pairs(11, angles[a], P, d, 2, xy, &err), 0, "%s",
                     err.message);
        const double c = cos(angles[a] * 3.14159265358979323846 / 180.0);
        for (size_t i = 0; i < P; i++) {
            const double *x = xy + i * d, *y = xy + (P + i) * d;
            double xx = 0, yy = 0, xy_ = 0;
            for (size_t e = 0; e < d; e++) {
                xx += x[e] * x[e];
                yy += y[e] * y[e];
                xy_ += x[e] * y[e];
            }
            cr_assert_float_eq(xx, 1.0, 1e-13);
            cr_assert_float_eq(yy, 1.0, 1e-13);
            cr_assert_float_eq(xy_, c, 1e-13, "angle %g pair %zu: cos %.17g", angles[a], i, xy_);
        }
    }
    free(xy);
}

Test(collision, pairs_are_uniform_on_the_sphere)
{
    /* x uniform on S^{d-1}: E x_e = 0, E x_e^2 = 1/d; and so is y (rotation
     * invariance of the pair). 4000 pairs: the sd of a mean of x_e is
     * sqrt(1/d/4000) = 0.0079 for d = 4, of a mean of x_e^2 about 0.0035. */
    const size_t P = 4000, d = 4;
    double *xy = malloc(2 * P * d * sizeof *xy);
    cr_assert_not_null(xy);
    struct lsh_error err;
    cr_assert_eq(lsh_collision_draw_pairs(5, 60.0, P, d, 1, xy, &err), 0, "%s", err.message);
    for (size_t side = 0; side < 2; side++)
        for (size_t e = 0; e < d; e++) {
            double m = 0, m2 = 0;
            for (size_t i = 0; i < P; i++) {
                double v = xy[(side * P + i) * d + e];
                m += v;
                m2 += v * v;
            }
            cr_expect_float_eq(m / P, 0.0, 4 * 0.0079, "side %zu coordinate %zu", side, e);
            cr_expect_float_eq(m2 / P, 1.0 / d, 4 * 0.0035, "side %zu coordinate %zu", side, e);
        }
    free(xy);
}

Test(collision, pairs_depend_on_seed_and_angle_not_on_threads)
{
    const size_t P = 1500, d = 7, bytes = 2 * P * d * sizeof(double);
    double *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    cr_assert(a && b && c);
    struct lsh_error err;
    cr_assert_eq(lsh_collision_draw_pairs(3, 45.0, P, d, 1, a, &err), 0);
    cr_assert_eq(lsh_collision_draw_pairs(3, 45.0, P, d, 3, b, &err), 0);
    cr_expect_eq(memcmp(a, b, bytes), 0, "pairs differ between 1 and 3 threads");
    /* A pair is its own stream: the first 600 pairs of a larger draw are the
     * same pairs. */
    cr_assert_eq(lsh_collision_draw_pairs(3, 45.0, 600, d, 2, c, &err), 0);
    cr_expect_eq(memcmp(a, c, 600 * d * sizeof(double)), 0);
    cr_assert_eq(lsh_collision_draw_pairs(4, 45.0, P, d, 1, b, &err), 0);
    cr_expect_neq(memcmp(a, b, bytes), 0, "another seed, the same pairs");
    cr_assert_eq(lsh_collision_draw_pairs(3, 45.5, P, d, 1, b, &err), 0);
    cr_expect_neq(memcmp(a, b, P * d * sizeof(double)), 0, "another angle, the same x's");
    cr_expect_eq(lsh_collision_draw_pairs(3, 45.0, P, 1, 1, b, &err), LSH_EINVAL);
    cr_expect_eq(lsh_collision_draw_pairs(3, 0.0, P, d, 1, b, &err), LSH_EINVAL);
    cr_expect_eq(lsh_collision_draw_pairs(3, 180.5, P, d, 1, b, &err), LSH_EINVAL);
    free(a);
    free(b);
    free(c);
}

/* ---- statistics ----------------------------------------------------------- */

Test(collision, statistics_on_hand_worked_counts)
{
    /* 10 pairs, 3 rounds colliding 2, 5 and 8 pairs; 9 pairs at least once.
     * shares 0.2, 0.5, 0.8: p_round 0.5, sample variance 0.09, se sqrt(0.03);
     * tau2 = 0.09 - 0.5 * 0.5 / 10 = 0.065;
     * p_any_se = sqrt(0.9 * 0.1 / 10 + 3 * 0.065 * 0.5^4) = sqrt(0.0211875). */
    const uint64_t count[] = {2, 5, 8};
    struct lsh_collision_stats s;
    lsh_collision_stats(count, 3, 9, 10, &s);
    cr_expect_float_eq(s.p_round, 0.5, 1e-15);
    cr_expect_float_eq(s.p_round_se, sqrt(0.03), 1e-15);
    cr_expect_float_eq(s.p_any, 0.9, 1e-15);
    cr_expect_float_eq(s.p_any_se, sqrt(0.0211875), 1e-15);

    /* The spread of the shares below its binomial part: tau2 clamps to 0 and
     * p_any_se is the binomial one. shares 0.3, 0.31 of 1000 pairs. */
    const uint64_t close[] = {300, 310};
    lsh_collision_stats(close, 2, 450, 1000, &s);
    cr_expect_float_eq(s.p_round, 0.305, 1e-15);
    cr_expect_float_eq(s.p_round_se, 0.005, 1e-15);
    cr_expect_float_eq(s.p_any_se, sqrt(0.45 * 0.55 / 1000), 1e-15);

    /* One round: nothing to say about the spread between rounds. */
    lsh_collision_stats(count, 1, 2, 10, &s);
    cr_expect_float_eq(s.p_round, 0.2, 1e-15);
    cr_expect_float_eq(s.p_any, 0.2, 1e-15);
    cr_expect_eq(s.p_round_se, 0.0);
    cr_expect_eq(s.p_any_se, 0.0);
}

/* ---- SimHash's law ---------------------------------------------------------- */

static const char simhash_yaml[] =
    "name: simhash\n"
    "experiment: collision\n"
    "seed: 2385\n"
    "collision:\n"
    "  d: 32\n"
    "  angles: [12.5, 30, 45, 60, 90, 120, 150]\n"
    "  pairs: 3000\n"
    "strategies:\n"
    "  - name: hyperplane\n"
    "sweep:\n"
    "  n_hashes: [1, 24]\n"
    "  n_buckets: [2, 4, 8, 16]\n";

Test(collision, hyperplane_reproduces_simhash_law_within_its_standard_errors)
{
    /* Two unit vectors at angle theta share hyperplane bucket of B = 2^k with
     * probability (1 - theta/pi)^k in a round (SPEC 2.2), and, rounds being
     * independent given the pair, collide at least once in H rounds with
     * probability 1 - (1 - (1 - theta/pi)^k)^H.  Every estimate must be within
     * 4 standard errors of the law (plus 1/pairs, the resolution of a share,
     * for p_any at 0 or 1 where its se is 0), and the standard errors must be
     * honest: the mean of z^2 over the 28 p_round rows is near 1 (t with 23
     * degrees of freedom: 1.1), not far above (se too small) or below. */
    char path[128];
    struct lsh_collision_summary sum;
    cr_assert_eq(run(simhash_yaml, "simhash", 2, LSH_RESULTS_CREATE, NULL, &sum, path,
                     sizeof path), 0);
    size_t n;
    struct row *rows = read_rows(path, &n);
    cr_assert_eq(n, 7 * 4 * 2);
    cr_expect_eq(sum.rows, n);
    cr_expect_eq(sum.written, n);
    double z2 = 0.0;
    size_t nz = 0;
    for (size_t r = 0; r < n; r++) {
        const struct row *w = &rows[r];
        cr_assert_str_eq(w->strategy, "hyperplane");
        cr_assert_eq(w->pairs, 3000);
        const double k = log2((double)w->n_buckets);
        const double p = pow(1.0 - w->angle / 180.0, k);
        const double p_any = 1.0 - pow(1.0 - p, (double)w->n_hashes);
        if (w->n_hashes == 1) {
            cr_expect_eq(w->p_round, w->p_any);
            cr_expect_eq(w->p_round_se, 0.0);
            cr_expect_eq(w->p_any_se, 0.0);
            continue;
        }
        cr_assert_gt(w->p_round_se, 0.0, "B %u angle %g", w->n_buckets, w->angle);
        double z = (w->p_round - p) / w->p_round_se;
        z2 += z * z;
        nz++;
        cr_expect_lt(fabs(z), 4.0, "p_round %.6f vs law %.6f (se %.2g): B %u angle %g, z %.2f",
                     w->p_round, p, w->p_round_se, w->n_buckets, w->angle, z);
        cr_expect_leq(fabs(w->p_any - p_any), 4.0 * w->p_any_se + 1.0 / 3000,
                      "p_any %.6f vs law %.6f (se %.2g): B %u angle %g", w->p_any, p_any,
                      w->p_any_se, w->n_buckets, w->angle);
    }
    cr_assert_eq(nz, 28);
    cr_expect(z2 / (double)nz > 0.4 && z2 / (double)nz < 2.2, "mean z^2 %.3f", z2 / (double)nz);
    free(rows);
}

/* ---- determinism, resume ---------------------------------------------------- */

static const char mixed_yaml[] =
    "name: mixed\n"
    "experiment: collision\n"
    "seed: 99\n"
    "collision:\n"
    "  d: 8\n"
    "  angles: [30, 75, 140]\n"
    "  pairs: 700\n"
    "strategies:\n"
    "  - name: rotation\n"
    "    params: {orthogonal: [false, true]}\n"
    "  - name: hyperplane\n"
    "  - name: kmeans\n"
    "    params: {iterations: 3}\n"
    "sweep:\n"
    "  n_hashes: [1, 3, 5]\n"
    "  n_buckets: [4, 8]\n";

static void expect_same_rows(const struct row *a, const struct row *b, size_t n)
{
    for (size_t r = 0; r < n; r++) {
        cr_expect_str_eq(a[r].strategy, b[r].strategy, "row %zu", r);
        cr_expect_eq(a[r].n_buckets, b[r].n_buckets, "row %zu", r);
        cr_expect_eq(a[r].n_hashes, b[r].n_hashes, "row %zu", r);
        cr_expect_eq(a[r].angle, b[r].angle, "row %zu", r);
        cr_expect_eq(a[r].seed, b[r].seed, "row %zu", r);
        cr_expect_eq(memcmp(&a[r].p_round, &b[r].p_round, 4 * sizeof(double)), 0,
                     "row %zu: statistics differ", r);
    }
}

Test(collision, rows_are_bit_identical_for_any_thread_count)
{
    char p1[128], p3[128];
    struct lsh_collision_summary sum;
    run(mixed_yaml, "j1", 1, LSH_RESULTS_CREATE, NULL, &sum, p1, sizeof p1);
    run(mixed_yaml, "j3", 3, LSH_RESULTS_CREATE, NULL, &sum, p3, sizeof p3);
    size_t n1, n3;
    struct row *a = read_rows(p1, &n1), *b = read_rows(p3, &n3);
    /* 3 angles x (2 rotation + 1 hyperplane + 1 kmeans) x 2 B x 3 H */
    cr_assert_eq(n1, 3 * 4 * 2 * 3);
    cr_assert_eq(n3, n1);
    expect_same_rows(a, b, n1);
    /* Order: angle > strategy > parameters > n_buckets > n_hashes; the seed
     * does not depend on n_hashes (nested rounds); p_any grows with H. */
    cr_expect_eq(a[0].angle, 30.0);
    cr_expect_str_eq(a[0].strategy, "rotation");
    cr_expect_eq(a[0].n_buckets, 4);
    cr_expect_eq(a[1].n_hashes, 3);
    cr_expect_eq(a[0].seed, a[2].seed);
    cr_expect_neq(a[0].seed, a[3].seed);
    cr_expect_str_eq(a[23].strategy, "kmeans");
    cr_expect_eq(a[24].angle, 75.0);
    for (size_t r = 0; r < n1; r += 3) {
        cr_expect_leq(a[r].p_any, a[r + 1].p_any);
        cr_expect_leq(a[r + 1].p_any, a[r + 2].p_any);
        cr_expect_geq(a[r + 2].p_any, a[r + 2].p_round);
    }
    free(a);
    free(b);
}

Test(collision, an_interrupted_run_resumes_to_the_same_rows)
{
    char full[128], part[128];
    struct lsh_collision_summary sum;
    run(mixed_yaml, "full", 2, LSH_RESULTS_CREATE, NULL, &sum, full, sizeof full);

    volatile sig_atomic_t flag = 0;
    struct stopper stop = {&flag, 5, 0};
    cr_assert_eq(run(mixed_yaml, "part", 2, LSH_RESULTS_CREATE, &stop, &sum, part, sizeof part),
                 LSH_EINTR);
    cr_expect(sum.interrupted);
    /* The angle being written is finished (its rows are computed), the next
     * is not started. */
    cr_expect_eq(sum.written, 24);
    char partial[160];
    snprintf(partial, sizeof partial, "%s.partial", part);
    cr_expect_eq(access(partial, F_OK), 0);
    cr_expect_neq(access(part, F_OK), 0);

    flag = 0;
    stop.after = 0;
    cr_assert_eq(run(mixed_yaml, "part", 1, LSH_RESULTS_RESUME, &stop, &sum, part, sizeof part),
                 0);
    cr_expect_eq(sum.resumed, 24);
    cr_expect_eq(sum.written, 48);
    size_t n1, n2;
    struct row *a = read_rows(full, &n1), *b = read_rows(part, &n2);
    cr_assert_eq(n1, n2);
    expect_same_rows(a, b, n1);
    free(a);
    free(b);

    /* Resuming a finished file writes nothing and keeps every row. */
    cr_assert_eq(run(mixed_yaml, "part", 1, LSH_RESULTS_RESUME, NULL, &sum, part, sizeof part),
                 0);
    cr_expect_eq(sum.resumed, 72);
    cr_expect_eq(sum.written, 0);
}

/* ---- refusals --------------------------------------------------------------- */

Test(collision, a_point_the_strategy_refuses_is_an_error_unless_skip_invalid)
{
    static const char bad[] =
        "name: bad\n"
        "experiment: collision\n"
        "collision: {d: 16, angles: [30, 60], pairs: 100}\n"
        "strategies:\n"
        "  - name: hyperplane\n"
        "  - name: rotation\n"
        "sweep:\n"
        "  n_hashes: [2, 4]\n"
        "  n_buckets: [4, 6]\n";
    struct lsh_config *cfg;
    struct lsh_collision_plan *plan;
    struct lsh_error err;
    cr_assert_eq(load(bad, &cfg, &plan, &err), LSH_ECONFIG);
    cr_expect_eq(err.line, 9, "line %d: %s", err.line, err.message);
    cr_expect_eq(err.column, 18);
    cr_expect_not_null(strstr(err.message, "power of two"), "%s", err.message);
    cr_expect_not_null(strstr(err.message, "skip_invalid"), "%s", err.message);
    cr_expect_null(plan);
    lsh_config_free(cfg);

    char skip[sizeof bad + 64];
    snprintf(skip, sizeof skip, "%s", bad);
    char *at = strstr(skip, "  - name: hyperplane\n") + strlen("  - name: hyperplane\n");
    memmove(at + strlen("    skip_invalid: true\n"), at, strlen(at) + 1);
    memcpy(at, "    skip_invalid: true\n", strlen("    skip_invalid: true\n"));
    cr_assert_eq(load(skip, &cfg, &plan, &err), 0, "%s", err.message);
    cr_expect_eq(plan->n_points, 4);
    cr_expect_eq(plan->n_skipped, 1);
    cr_expect_not_null(plan->points[1].skip_reason);
    /* 2 angles x 3 points x 2 n_hashes */
    cr_expect_eq(plan->n_rows, 12);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);

    /* kmeans needs as many rows as buckets: 2 x pairs rows. */
    static const char few[] =
        "name: few\n"
        "experiment: collision\n"
        "collision: {d: 4, angles: [30], pairs: 3}\n"
        "strategies: [{name: kmeans}]\n"
        "sweep: {n_buckets: [4, 8]}\n";
    cr_assert_eq(load(few, &cfg, &plan, &err), LSH_ECONFIG);
    cr_expect_not_null(strstr(err.message, "n_buckets 8"), "%s", err.message);
    lsh_config_free(cfg);
}

Test(collision, refuses_what_does_not_apply)
{
    static const char *const yaml[] = {
        "name: a\nexperiment: collision\nrepeats: 2\n"
        "collision: {d: 8, angles: [30], pairs: 10}\n"
        "strategies: [{name: hyperplane}]\nsweep: {n_buckets: 4}\n",
        "name: a\nexperiment: collision\ndump: [buckets]\n"
        "collision: {d: 8, angles: [30], pairs: 10}\n"
        "strategies: [{name: hyperplane}]\nsweep: {n_buckets: 4}\n",
        "name: a\nexperiment: collision\n"
        "collision: {d: 1, angles: [30], pairs: 10}\n"
        "strategies: [{name: hyperplane}]\nsweep: {n_buckets: 4}\n",
    };
    const char *const why[] = {"repeats", "dump", "collision.d"};
    for (size_t i = 0; i < 3; i++) {
        struct lsh_config *cfg;
        struct lsh_collision_plan *plan;
        struct lsh_error err;
        cr_expect_eq(load(yaml[i], &cfg, &plan, &err), LSH_ECONFIG, "case %zu", i);
        cr_expect_not_null(strstr(err.message, why[i]), "case %zu: %s", i, err.message);
        lsh_config_free(cfg);
    }
}

Test(collision, a_failing_plugin_ends_the_run_with_its_message)
{
    struct lsh_error err;
    char plugin[512];
    const char *pdir = getenv("LSHLAB_TEST_PLUGIN_DIR");
    cr_assert_not_null(pdir);
    snprintf(plugin, sizeof plugin, "%s/failing_hash.so", pdir);
    cr_assert_eq(lsh_registry_load_file(reg, plugin, &err), 0, "%s", err.message);
    static const char yaml[] =
        "name: fails\n"
        "experiment: collision\n"
        "collision: {d: 4, angles: [30, 60], pairs: 50}\n"
        "strategies: [{name: failing_hash}]\n"
        "sweep: {n_hashes: 3, n_buckets: 4}\n";
    struct lsh_config *cfg;
    struct lsh_collision_plan *plan;
    cr_assert_eq(load(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    char path[128];
    snprintf(path, sizeof path, "%s/fails.h5", dir);
    struct lsh_collision_opts opts = {.threads = 2, .output = path, .cmdline = "test"};
    lsh_error_clear(&err);
    cr_expect_eq(lsh_collision_run(cfg, plan, &opts, NULL, &err), LSH_EPLUGIN);
    cr_expect_not_null(strstr(err.message, "this plugin always fails, on purpose"), "%s",
                       err.message);
    cr_expect_not_null(strstr(err.message, "round 0"), "%s", err.message);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);
}

/* ---- published laws (ABI 1.1 collision_prob) ---------------------------------- */

static const char law_yaml[] =
    "name: laws\n"
    "experiment: collision\n"
    "seed: 1723\n"
    "collision:\n"
    "  d: 16\n"
    "  angles: [20, 45, 75, 90, 130]\n"
    "  pairs: 1500\n"
    "strategies:\n"
    "  - name: hyperplane\n"
    "  - name: rotation\n"
    "  - name: rotation\n"
    "    skip_invalid: true\n"
    "    params: {factors: [[2], [2, 2], [4]]}\n"
    "sweep:\n"
    "  n_hashes: [24]\n"
    "  n_buckets: [2, 4]\n";

/* The parameter set of cfg whose strategy and canonical text a row names. */
static struct lsh_host_point point_of_row(const struct lsh_config *cfg, const struct row *w)
{
    for (size_t i = 0; i < cfg->n_strategies; i++) {
        const struct lsh_strategy_spec *st = &cfg->strategies[i];
        if (strcmp(st->name, w->strategy) != 0)
            continue;
        for (size_t ps = 0; ps < st->n_sets; ps++)
            if (strcmp(st->sets[ps].canonical, w->params) == 0)
                return lsh_host_point_of(st, ps, w->n_buckets, cfg->collision.d, 2 * w->pairs);
    }
    cr_assert_fail("no parameter set %s %s", w->strategy, w->params);
    return (struct lsh_host_point){0};
}

Test(collision, hyperplane_and_rotation_match_their_published_collision_prob)
{
    /* Every row of hyperplane (B = 2, 4) and of Gaussian rotation with B = 2,
     * 4 (factors [], [2], [2, 2], [4]) against the strategy's own
     * collision_prob at cos(angle), through the host's law: within 4
     * standard errors (24 rounds), and the standard errors honest (mean z^2
     * near 1).  The law itself is checked against (1 - theta/pi)^k here. */
    char path[128];
    struct lsh_collision_summary sum;
    cr_assert_eq(run(law_yaml, "laws", 2, LSH_RESULTS_CREATE, NULL, &sum, path, sizeof path), 0);
    struct lsh_config *cfg;
    struct lsh_collision_plan *plan;
    struct lsh_error err;
    cr_assert_eq(load(law_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    size_t n;
    struct row *rows = read_rows(path, &n);
    /* 5 angles x (hyperplane 2 + rotation [] 2 + [2] at 2 + [2,2] and [4] at 4) */
    cr_assert_eq(n, 5 * 7, "%zu rows", n);
    double z2 = 0;
    for (size_t r = 0; r < n; r++) {
        const struct row *w = &rows[r];
        struct lsh_host_point pt = point_of_row(cfg, w);
        struct lsh_host_law law;
        char why[512];
        cr_assert_eq(lsh_host_law_of(&pt, &law, why, sizeof why), 0, "%s", why);
        double p;
        const double c = cos(w->angle * 3.14159265358979323846 / 180.0);
        cr_assert_eq(lsh_host_law_eval(&law, c, &p), 0);
        const double k = log2((double)w->n_buckets);
        cr_expect_lt(fabs(p - pow(1.0 - w->angle / 180.0, k)), 1e-12,
                     "%s %s B %u angle %g: law %.15g", w->strategy, w->params, w->n_buckets,
                     w->angle, p);
        cr_assert_gt(w->p_round_se, 0.0);
        const double z = (w->p_round - p) / w->p_round_se;
        z2 += z * z;
        cr_expect_lt(fabs(z), 4.0, "%s %s B %u angle %g: p_round %.5f, law %.5f, se %.2g",
                     w->strategy, w->params, w->n_buckets, w->angle, w->p_round, p,
                     w->p_round_se);
    }
    cr_expect(z2 / (double)n > 0.3 && z2 / (double)n < 2.5, "mean z^2 %.3f", z2 / (double)n);
    free(rows);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);
}

Test(collision, rules_without_a_closed_form_publish_none_and_say_why)
{
    static const char yaml[] =
        "name: nolaw\n"
        "experiment: collision\n"
        "collision: {d: 16, angles: [30], pairs: 50}\n"
        "strategies:\n"
        "  - name: rotation\n"
        "    params: {orthogonal: [true, false], factors: [[], [8]]}\n"
        "  - name: kmeans\n"
        "sweep: {n_buckets: [8]}\n";
    struct lsh_config *cfg;
    struct lsh_collision_plan *plan;
    struct lsh_error err;
    cr_assert_eq(load(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    const struct lsh_strategy_spec *rot = &cfg->strategies[0];
    cr_assert_eq(rot->n_sets, 4);
    for (size_t ps = 0; ps < 4; ps++) {
        struct lsh_host_point pt = lsh_host_point_of(rot, ps, 8, 16, 100);
        struct lsh_host_law law;
        char why[512];
        cr_expect_eq(lsh_host_law_of(&pt, &law, why, sizeof why), LSH_EPLUGIN,
                     "rotation %s B 8 has no closed form", rot->sets[ps].canonical);
        cr_expect_not_null(strstr(why, "no closed-form collision probability"), "%s", why);
    }
    /* B = 4 with orthogonal: false has one (factor 4); orthogonal: true none */
    /* sets: (true, []), (true, [8]), (false, []), (false, [8]) */
    struct lsh_host_point pt = lsh_host_point_of(rot, 2, 4, 16, 100); /* false, [] */
    struct lsh_host_law law;
    char why[512];
    cr_expect_eq(lsh_host_law_of(&pt, &law, why, sizeof why), 0, "%s", why);
    pt = lsh_host_point_of(rot, 0, 4, 16, 100); /* true, [] */
    cr_expect_eq(lsh_host_law_of(&pt, &law, why, sizeof why), LSH_EPLUGIN);
    pt = lsh_host_point_of(&cfg->strategies[1], 0, 8, 16, 100);
    cr_expect_eq(lsh_host_law_of(&pt, &law, why, sizeof why), LSH_EPLUGIN);
    cr_expect_eq(strncmp(why, "kmeans iterations=10,init=random", 32), 0, "%s", why);
    cr_expect_not_null(strstr(why, " publishes no collision probability (collision_prob is "
                                   "NULL)"), "%s", why);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);
}

/* Every registered strategy (data-driven over the registry, kmeans balanced
 * too) runs in the collision experiment; an assign strategy hashes x as a
 * query and y as a key.  Two rules have a law by construction: window puts
 * pair p's x and y both in block floor(p B / pairs), so they always collide;
 * random draws x's and y's buckets independently and uniformly: 1/B. */
Test(collision, every_strategy_runs_in_the_collision_experiment, .timeout = 240)
{
    char yaml[4096];
    int at = snprintf(yaml, sizeof yaml,
                      "name: all\n"
                      "experiment: collision\n"
                      "seed: 5\n"
                      "collision: {d: 16, angles: [40, 100], pairs: 400}\n"
                      "strategies:\n");
    for (size_t i = 0; i < lsh_registry_count(reg); i++) {
        const struct lsh_strategy *s = lsh_registry_get(reg, i);
        at += snprintf(yaml + at, sizeof yaml - (size_t)at, "  - name: %s\n", s->name);
        if (!strcmp(s->name, "kmeans"))
            at += snprintf(yaml + at, sizeof yaml - (size_t)at,
                           "    params: {balanced: [false, true]}\n");
    }
    snprintf(yaml + at, sizeof yaml - (size_t)at, "sweep: {n_hashes: [8], n_buckets: [4]}\n");
    char path[128];
    struct lsh_collision_summary sum;
    cr_assert_eq(run(yaml, "all", 2, LSH_RESULTS_CREATE, NULL, &sum, path, sizeof path), 0);
    size_t n;
    struct row *rows = read_rows(path, &n);
    cr_assert_eq(n, 2 * (lsh_registry_count(reg) + 1), "%zu rows for %zu strategies", n,
                 lsh_registry_count(reg));
    for (size_t i = 0; i < lsh_registry_count(reg); i++) {
        const char *name = lsh_registry_get(reg, i)->name;
        size_t seen = 0;
        for (size_t r = 0; r < n; r++)
            seen += !strcmp(rows[r].strategy, name);
        cr_expect_eq(seen, !strcmp(name, "kmeans") ? 4 : 2, "%s: %zu rows", name, seen);
    }
    for (size_t r = 0; r < n; r++) {
        const struct row *w = &rows[r];
        cr_expect(w->p_round >= 0 && w->p_round <= 1 && w->p_any >= w->p_round, "%s %s",
                  w->strategy, w->params);
        cr_expect(isfinite(w->p_round_se) && w->p_round_se >= 0, "%s", w->strategy);
        if (!strcmp(w->strategy, "window"))
            cr_expect_eq(w->p_round, 1.0, "window: x and y of a pair share a block");
        if (!strcmp(w->strategy, "random"))
            cr_expect_lt(fabs(w->p_round - 0.25), 4 * w->p_round_se + 1e-9,
                         "random: p_round %.4f vs 1/4 (se %.3g)", w->p_round, w->p_round_se);
    }
    free(rows);
}
