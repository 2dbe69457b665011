/* test_heads.c - each (layer, head) of a dataset is its own attention problem
 * (SPEC 11.2, 16): the plan's order and point ids over units, their seeds,
 * /runs layer and head, /datasets attributes and the dump layout, results
 * format version 2 (show reads version 1, resume refuses it), a resumed
 * multi-head run equal to an uninterrupted one, -j not changing a bit, and a
 * head whose scores overflow failing only its own points.
 *
 * Input files are written here with known values (rank 2, 3 and 4 HDF5
 * datasets); expected orders and seeds are computed by hand or from a
 * config without axes. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "config.h"
#include "plan.h"
#include "registry.h"
#include "results.h"
#include "rng.h"
#include "sweep.h"

static char dir[64];
static struct lsh_registry *reg;

static void setup(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    lsh_results_init_library();
    reg = lsh_registry_alloc();
    cr_assert_not_null(reg);
    const char *sdir = getenv("LSHLAB_STRATEGY_PATH");
    cr_assert_not_null(sdir, "LSHLAB_STRATEGY_PATH is not set (run through meson test)");
    cr_assert_eq(lsh_registry_load_dir(reg, sdir, &err), 0, "%s", err.message);
    snprintf(dir, sizeof dir, "/tmp/lshlab-test-heads-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
    lsh_registry_free(reg);
}

TestSuite(heads, .init = setup, .fini = teardown);

static const char *in_dir(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* ---- input files ------------------------------------------------------------------ */

/* A value of element (a, b, i, j) of a rank-4 array: distinct, small, not
 * round, the same formula for every rank (a, b = 0 when absent). */
static double value(int which, size_t a, size_t b, size_t i, size_t j)
{
    return sin(1.0 + 0.37 * (double)which + 1.3 * (double)a + 2.1 * (double)b +
               0.7 * (double)i + 0.29 * (double)j * (double)(i % 5 + 1));
}

/* Write /q, /k, /v of rank `rank` (2, 3 or 4) with dims [L, H, n, d] (the
 * leading ones dropped for lower ranks) as float64.  big_head >= 0: every
 * value of that head (of every layer) is multiplied by big. */
static void write_input(const char *path, int rank, size_t L, size_t H, size_t n, size_t d,
                        long big_head, double big)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    const char *names[3] = { "q", "k", "v" };
    for (int w = 0; w < 3; w++) {
        const size_t count = L * H * n * d;
        double *x = malloc(count * sizeof *x);
        for (size_t a = 0; a < L; a++)
            for (size_t b = 0; b < H; b++)
                for (size_t i = 0; i < n; i++)
                    for (size_t j = 0; j < d; j++)
                        x[((a * H + b) * n + i) * d + j] =
                            value(w, a, b, i, j) * ((long)b == big_head ? big : 1.0);
        hsize_t all[4] = { L, H, n, d };
        hid_t s = H5Screate_simple(rank, all + (4 - rank), NULL);
        hid_t ds = H5Dcreate2(f, names[w], H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        cr_assert_geq(ds, 0);
        cr_assert_geq(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
        H5Dclose(ds);
        H5Sclose(s);
        free(x);
    }
    H5Fclose(f);
}

/* ---- running ---------------------------------------------------------------------- */

static int build(const char *yaml, struct lsh_config **cfg, struct lsh_plan **plan,
                 struct lsh_error *err)
{
    lsh_error_clear(err);
    *cfg = NULL;
    *plan = NULL;
    int rc = lsh_config_parse(yaml, strlen(yaml), in_dir("c.yaml"), reg, cfg, err);
    if (!rc)
        rc = lsh_plan_build(*cfg, plan, err);
    return rc;
}

struct stopper {
    size_t after, seen;
    volatile sig_atomic_t flag;
};

static void count_rows(void *ctx, const struct lsh_progress *p)
{
    struct stopper *s = ctx;
    if (p->row && ++s->seen >= s->after && s->after)
        s->flag = 1;
}

/* Run yaml into out; stop_after > 0: stop after that many points. */
static int run(const char *yaml, const char *out, unsigned threads, enum lsh_results_mode mode,
               size_t stop_after, struct lsh_run_summary *sum, struct lsh_error *err)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    int rc = build(yaml, &cfg, &plan, err);
    cr_assert_eq(rc, 0, "%s", err->message);
    struct stopper st = { stop_after, 0, 0 };
    struct lsh_run_opts opts = {
        .threads = threads, .memory_limit = (size_t)1 << 32, .mode = mode, .output = out,
        .cmdline = "test", .stop = &st.flag, .progress = count_rows, .progress_ctx = &st,
    };
    struct lsh_run_summary s;
    rc = lsh_sweep_run(cfg, plan, &opts, sum ? sum : &s, err);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    return rc;
}

/* /runs, the columns these tests look at (timings left out: they differ
 * between runs by nature). */
struct row {
    uint64_t point_id;
    char dataset[LSH_RUNS_NAME_LEN];
    int32_t layer, head;
    char strategy[LSH_RUNS_NAME_LEN];
    uint32_t n_hashes, n_buckets;
    uint64_t seed;
    char status[LSH_RUNS_WORD_LEN], message[LSH_RUNS_MESSAGE_LEN];
    double out_rel_err, attn_rel_err, mass_recall, kl, gram_recovery, density;
    double mean_candidates, bucket_max, bucket_entropy;
    uint64_t empty_rows;
};

static hid_t row_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct row));
#define STR(f)                                                                              \
    do {                                                                                    \
        hid_t s = H5Tcopy(H5T_C_S1);                                                        \
        H5Tset_size(s, sizeof((struct row *)0)->f);                                         \
        H5Tset_strpad(s, H5T_STR_NULLPAD);                                                  \
        H5Tinsert(t, #f, HOFFSET(struct row, f), s);                                        \
        H5Tclose(s);                                                                        \
    } while (0)
#define NUM(f, type) H5Tinsert(t, #f, HOFFSET(struct row, f), type)
    NUM(point_id, H5T_NATIVE_UINT64);
    STR(dataset);
    NUM(layer, H5T_NATIVE_INT32);
    NUM(head, H5T_NATIVE_INT32);
    STR(strategy);
    NUM(n_hashes, H5T_NATIVE_UINT32);
    NUM(n_buckets, H5T_NATIVE_UINT32);
    NUM(seed, H5T_NATIVE_UINT64);
    STR(status);
    STR(message);
    NUM(out_rel_err, H5T_NATIVE_DOUBLE);
    NUM(attn_rel_err, H5T_NATIVE_DOUBLE);
    NUM(mass_recall, H5T_NATIVE_DOUBLE);
    NUM(kl, H5T_NATIVE_DOUBLE);
    NUM(gram_recovery, H5T_NATIVE_DOUBLE);
    NUM(density, H5T_NATIVE_DOUBLE);
    NUM(mean_candidates, H5T_NATIVE_DOUBLE);
    NUM(bucket_max, H5T_NATIVE_DOUBLE);
    NUM(bucket_entropy, H5T_NATIVE_DOUBLE);
    NUM(empty_rows, H5T_NATIVE_UINT64);
#undef STR
#undef NUM
    return t;
}

/* Every row of /runs of path, sorted by point_id (calloc'd). */
static struct row *read_rows(const char *path, size_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot open %s", path);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    cr_assert_geq(d, 0);
    hid_t s = H5Dget_space(d);
    hsize_t dims[1];
    H5Sget_simple_extent_dims(s, dims, NULL);
    struct row *rows = calloc(dims[0] + 1, sizeof *rows);
    hid_t t = row_type();
    if (dims[0])
        cr_assert_geq(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    *n = dims[0];
    for (size_t i = 1; i < *n; i++) /* insertion sort: resumed files are in run order */
        for (size_t j = i; j > 0 && rows[j - 1].point_id > rows[j].point_id; j--) {
            struct row tmp = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = tmp;
        }
    return rows;
}

static void expect_same_rows(const char *a, const char *b)
{
    size_t na, nb;
    struct row *ra = read_rows(a, &na), *rb = read_rows(b, &nb);
    cr_assert_eq(na, nb, "%s has %zu rows, %s %zu", a, na, b, nb);
    for (size_t i = 0; i < na; i++)
        cr_expect_eq(memcmp(&ra[i], &rb[i], sizeof ra[i]), 0,
                     "row %zu (point %" PRIu64 ", layer %d, head %d) differs between %s and %s",
                     i, ra[i].point_id, ra[i].layer, ra[i].head, a, b);
    free(ra);
    free(rb);
}

/* ---- the plan --------------------------------------------------------------------- */

/* Every layer and head of the file (2 x 2 in the tests below), two
 * strategies, two n_hashes: 4 units x 2 strategies x 1 n_buckets x 1
 * repeat = 8 groups, 2 points each, ordered layer > head > strategy >
 * n_hashes. */
static void heads_yaml(char *buf, size_t size, const char *file, const char *extra)
{
    snprintf(buf, size,
             "name: t\nseed: 5\n"
             "datasets:\n"
             "  - {name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v%s}\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}, {name: hyperplane}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [4]}\n",
             file, extra);
}

Test(heads, plan_order_and_point_ids_over_layers_and_heads)
{
    const char *file = in_dir("in4.h5");
    write_input(file, 4, 4, 3, 16, 4, -1, 1);
    char yaml[1024];
    /* layers 1 and 3 of 4, heads 0 and 2 of 3: the units carry the indices
     * selected, not their positions in the selection */
    heads_yaml(yaml, sizeof yaml, file, ", layers: [1, 3], heads: [0, 2]");
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    cr_assert_eq(plan->n_groups, 8);
    cr_assert_eq(plan->n_points, 16);
    /* by hand: point p is unit p / 4 = (layer, head) in {(1,0), (1,2), (3,0), (3,2)},
     * strategy (p / 2) % 2, n_hashes {1, 2}[p % 2] */
    static const int32_t want_layer[4] = { 1, 1, 3, 3 }, want_head[4] = { 0, 2, 0, 2 };
    static const char *const want_strategy[2] = { "rotation", "hyperplane" };
    for (size_t p = 0; p < 16; p++) {
        struct lsh_point_key k;
        lsh_plan_point_key(plan, cfg, p, &k);
        cr_expect_eq(k.point_id, p);
        cr_expect_str_eq(k.dataset, "m");
        cr_expect_eq(k.layer, want_layer[p / 4], "point %zu: layer %d", p, k.layer);
        cr_expect_eq(k.head, want_head[p / 4], "point %zu: head %d", p, k.head);
        cr_expect_str_eq(k.strategy, want_strategy[(p / 2) % 2], "point %zu", p);
        cr_expect_eq(k.n_hashes, p % 2 ? 2u : 1u, "point %zu", p);
    }
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

/* A head's point seed is lsh_seed_unit of the seed the same point has in a
 * dataset without axes (same name, same strategy, B, repeat): so heads
 * differ, and data without axes keeps its seeds. */
Test(heads, seeds_of_heads_are_the_old_seed_with_the_unit_mixed_in)
{
    const char *file = in_dir("in4.h5"), *flat = in_dir("in2.h5");
    write_input(file, 4, 2, 2, 16, 4, -1, 1);
    write_input(flat, 2, 1, 1, 16, 4, -1, 1);
    char yaml[1024], yaml2[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    snprintf(yaml2, sizeof yaml2,
             "name: t\nseed: 5\n"
             "datasets: [{name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v}]\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}, {name: hyperplane}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [4]}\n", flat);
    struct lsh_config *cfg, *cfg2;
    struct lsh_plan *plan, *plan2;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    cr_assert_eq(build(yaml2, &cfg2, &plan2, &err), 0, "%s", err.message);
    cr_assert_eq(plan2->n_groups, 2);
    cr_assert_eq(plan2->groups[0].where.layer, -1);
    cr_assert_eq(plan2->groups[0].where.head, -1);
    for (size_t g = 0; g < 8; g++) {
        const struct lsh_hash_group *gr = &plan->groups[g];
        const uint64_t old = plan2->groups[g % 2].seed; /* same strategy */
        cr_expect_eq(gr->seed, lsh_seed_unit(old, gr->where.layer, gr->where.head),
                     "group %zu", g);
        cr_expect_neq(gr->seed, old);
        for (size_t h = 0; h < g; h++)
            cr_expect_neq(gr->seed, plan->groups[h].seed, "groups %zu and %zu", h, g);
    }
    /* and lsh_seed_unit mixes in exactly what rng.h says */
    const uint64_t s = plan2->groups[0].seed;
    cr_expect_eq(lsh_seed_unit(s, -1, -1), s);
    cr_expect_eq(lsh_seed_unit(s, 3, 2),
                 lsh_seed_u64(lsh_seed_str(lsh_seed_u64(lsh_seed_str(s, "layer"), 3), "head"),
                              2));
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    lsh_plan_free(plan2);
    lsh_config_free(cfg2);
}

/* ---- the results file ---------------------------------------------------------------- */

static void read_matrix(hid_t f, const char *path, double *out, size_t rows, size_t cols)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    cr_assert_geq(d, 0, "no %s", path);
    hid_t s = H5Dget_space(d);
    hsize_t dims[2];
    cr_assert_eq(H5Sget_simple_extent_ndims(s), 2, "%s", path);
    H5Sget_simple_extent_dims(s, dims, NULL);
    cr_assert(dims[0] == rows && dims[1] == cols, "%s is %llux%llu", path,
              (unsigned long long)dims[0], (unsigned long long)dims[1]);
    cr_assert_geq(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), 0);
    H5Sclose(s);
    H5Dclose(d);
}

static void expect_i32s(hid_t obj, const char *name, const int32_t *want, size_t n)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert_geq(a, 0, "no attribute %s", name);
    hid_t s = H5Aget_space(a);
    cr_assert_eq(H5Sget_simple_extent_npoints(s), (hssize_t)n, "%s", name);
    int32_t got[8];
    cr_assert_geq(H5Aread(a, H5T_NATIVE_INT32, got), 0);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "%s[%zu] = %d", name, i, got[i]);
    H5Sclose(s);
    H5Aclose(a);
}

static int64_t attr_i64(hid_t obj, const char *name)
{
    int64_t v = -99;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert_geq(a, 0, "no attribute %s", name);
    cr_assert_geq(H5Aread(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
    return v;
}

static char *attr_str(hid_t obj, const char *name)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert_geq(a, 0, "no attribute %s", name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *v = NULL;
    cr_assert_geq(H5Aread(a, t, &v), 0);
    char *copy = strdup(v);
    H5free_memory(v);
    H5Tclose(t);
    H5Aclose(a);
    return copy;
}

Test(heads, runs_have_layer_and_head_and_dump_writes_each_unit)
{
    const char *file = in_dir("in4.h5"), *out = in_dir("r.h5");
    const size_t n = 16, d = 4;
    write_input(file, 4, 2, 3, n, d, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    strcat(yaml, "dump: [data]\n");
    struct lsh_error err;
    struct lsh_run_summary sum;
    cr_assert_eq(run(yaml, out, 2, LSH_RESULTS_CREATE, 0, &sum, &err), 0, "%s", err.message);
    cr_expect_eq(sum.ok, 24);
    size_t nr;
    struct row *rows = read_rows(out, &nr);
    cr_assert_eq(nr, 24);
    /* 2 layers x 3 heads, 4 points each */
    static const int32_t want_layer[6] = { 0, 0, 0, 1, 1, 1 }, want_head[6] = { 0, 1, 2, 0, 1, 2 };
    for (size_t p = 0; p < nr; p++) {
        cr_expect_eq(rows[p].layer, want_layer[p / 4], "row %zu", p);
        cr_expect_eq(rows[p].head, want_head[p / 4], "row %zu", p);
        cr_expect_str_eq(rows[p].status, "ok", "row %zu: %s", p, rows[p].message);
    }
    /* two heads of one layer see different data: different metrics */
    cr_expect_neq(rows[0].out_rel_err, rows[4].out_rel_err);
    free(rows);

    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    int version = 0;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT, &version);
    H5Aclose(a);
    cr_expect_eq(version, 2);
    hid_t g = H5Gopen2(f, "datasets/m", H5P_DEFAULT);
    cr_assert_geq(g, 0);
    expect_i32s(g, "layers", (const int32_t[]){ 0, 1 }, 2);
    expect_i32s(g, "heads", (const int32_t[]){ 0, 1, 2 }, 3);
    cr_expect_eq(attr_i64(g, "kv_heads"), 3);
    char *dtype = attr_str(g, "dtype"), *source = attr_str(g, "source");
    cr_expect_str_eq(dtype, "float64");
    cr_expect(strstr(source, "in4.h5"), "source: %s", source);
    free(dtype);
    free(source);
    cr_expect_eq(H5Lexists(g, "Q", H5P_DEFAULT), 0, "no Q at the top of a multi-head dataset");
    H5Gclose(g);
    /* every unit's Q, K, V are the file's values of that layer and head */
    double *x = malloc(n * d * sizeof *x);
    for (size_t u = 0; u < 6; u++)
        for (int w = 0; w < 3; w++) {
            char path[128];
            snprintf(path, sizeof path, "datasets/m/layer%d/head%d/%c", want_layer[u],
                     want_head[u], "QKV"[w]);
            read_matrix(f, path, x, n, d);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < d; j++)
                    cr_assert_eq(x[i * d + j],
                                 value(w, (size_t)want_layer[u], (size_t)want_head[u], i, j),
                                 "%s[%zu][%zu]", path, i, j);
        }
    free(x);
    H5Fclose(f);
}

/* Rank 3 (heads only): /datasets/NAME/head{H}/Q, no layer level; rank 2:
 * /datasets/NAME/Q as in format 1, layers and heads [-1], kv_heads 0. */
Test(heads, dump_leaves_out_the_level_of_an_absent_axis)
{
    const char *f3 = in_dir("in3.h5"), *f2 = in_dir("in2.h5"), *out = in_dir("r3.h5");
    write_input(f3, 3, 1, 2, 12, 4, -1, 1);
    write_input(f2, 2, 1, 1, 12, 4, -1, 1);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\n"
             "datasets:\n"
             "  - {name: h, kind: hdf5, file: %s, q: /q, v: /v}\n"
             "  - {name: flat, kind: hdf5, file: %s, q: /q, v: /v}\n"
             "strategies: [{name: hyperplane}]\n"
             "sweep: {n_hashes: [1], n_buckets: [2]}\n"
             "dump: [data]\n", f3, f2);
    struct lsh_error err;
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s", err.message);
    size_t nr;
    struct row *rows = read_rows(out, &nr);
    cr_assert_eq(nr, 3);
    cr_expect(rows[0].layer == -1 && rows[0].head == 0);
    cr_expect(rows[1].layer == -1 && rows[1].head == 1);
    cr_expect(rows[2].layer == -1 && rows[2].head == -1);
    free(rows);
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    double x[48];
    read_matrix(f, "datasets/h/head1/Q", x, 12, 4);
    cr_expect_eq(x[5], value(0, 0, 1, 1, 1));
    read_matrix(f, "datasets/flat/Q", x, 12, 4);
    cr_expect_eq(x[5], value(0, 0, 0, 1, 1));
    hid_t g = H5Gopen2(f, "datasets/h", H5P_DEFAULT);
    expect_i32s(g, "layers", (const int32_t[]){ -1 }, 1);
    expect_i32s(g, "heads", (const int32_t[]){ 0, 1 }, 2);
    cr_expect_eq(attr_i64(g, "kv_heads"), 2);
    H5Gclose(g);
    g = H5Gopen2(f, "datasets/flat", H5P_DEFAULT);
    expect_i32s(g, "layers", (const int32_t[]){ -1 }, 1);
    expect_i32s(g, "heads", (const int32_t[]){ -1 }, 1);
    cr_expect_eq(attr_i64(g, "kv_heads"), 0);
    cr_expect_gt(H5Aexists(g, "input_digest"), 0);
    H5Gclose(g);
    H5Fclose(f);
}

/* ---- determinism and resume ----------------------------------------------------------- */

Test(heads, results_do_not_depend_on_threads)
{
    const char *file = in_dir("in4.h5");
    write_input(file, 4, 2, 2, 24, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    struct lsh_error err;
    cr_assert_eq(run(yaml, in_dir("j1.h5"), 1, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s",
                 err.message);
    cr_assert_eq(run(yaml, in_dir("j2.h5"), 2, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s",
                 err.message);
    expect_same_rows(in_dir("j1.h5"), in_dir("j2.h5"));
}

/* Stopped in the middle of the second unit, then resumed (twice, the
 * second time in the third unit): the same rows as an uninterrupted run. */
Test(heads, a_resumed_multi_head_run_equals_an_uninterrupted_one)
{
    const char *file = in_dir("in4.h5");
    write_input(file, 4, 2, 2, 24, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    strcat(yaml, "dump: [data]\n");
    struct lsh_error err;
    cr_assert_eq(run(yaml, in_dir("whole.h5"), 2, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s",
                 err.message);
    const char *out = in_dir("resumed.h5");
    struct lsh_run_summary sum;
    cr_assert_eq(run(yaml, out, 2, LSH_RESULTS_CREATE, 5, &sum, &err), LSH_EINTR, "%s",
                 err.message);
    cr_assert_lt(sum.ok, 16);
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_RESUME, 5, &sum, &err), LSH_EINTR, "%s",
                 err.message);
    cr_expect_gt(sum.resumed, 0);
    cr_assert_eq(run(yaml, out, 2, LSH_RESULTS_RESUME, 0, &sum, &err), 0, "%s", err.message);
    cr_expect_eq(sum.resumed + sum.ok, 16);
    expect_same_rows(in_dir("whole.h5"), out);
    /* the units' data were written once each, and equal */
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    double x[96];
    read_matrix(f, "datasets/m/layer1/head1/V", x, 24, 4);
    cr_expect_eq(x[7], value(2, 1, 1, 1, 3));
    H5Fclose(f);
}

/* An input whose unit changed between the run and --resume is refused,
 * naming the dataset and the unit. */
Test(heads, resume_refuses_a_unit_whose_input_changed)
{
    const char *file = in_dir("in4.h5");
    write_input(file, 4, 2, 2, 24, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    const char *out = in_dir("changed.h5");
    struct lsh_error err;
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_CREATE, 6, NULL, &err), LSH_EINTR, "%s",
                 err.message);
    /* head 1 doubled: layer 0 head 1 was under way (points 4 to 7) */
    write_input(file, 4, 2, 2, 24, 4, 1, 2.0);
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_RESUME, 0, NULL, &err), LSH_EDATA, "%s",
                 err.message);
    cr_expect(strstr(err.message, "dataset 'm' (layer 0, head 1)") &&
              strstr(err.message, "changed since the run began"), "%s", err.message);
}

/* A file that gained a layer since the run began: the message says which
 * selection changed and how (both lists), not a unit that did not change. */
Test(heads, resume_names_the_layers_that_changed)
{
    const char *file = in_dir("in4l.h5");
    write_input(file, 4, 2, 2, 24, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    const char *out = in_dir("grown.h5");
    struct lsh_error err;
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_CREATE, 6, NULL, &err), LSH_EINTR, "%s",
                 err.message);
    write_input(file, 4, 3, 2, 24, 4, -1, 1);
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_RESUME, 0, NULL, &err), LSH_EDATA, "%s",
                 err.message);
    cr_expect(strstr(err.message, "dataset 'm' (input file ") &&
              strstr(err.message, "its layers were [0, 1], they are [0, 1, 2] now"), "%s",
              err.message);
}

/* ---- a head that cannot be evaluated ----------------------------------------------------- */

/* Head 1's values are 10^5 times the others: finite, but its scores
 * scale * q.k are beyond what is formed exactly.  Its points fail with the
 * reason (naming the head); the other heads' points are ok. */
Test(heads, a_head_whose_scores_overflow_fails_only_its_own_points)
{
    const char *file = in_dir("big.h5"), *out = in_dir("big_out.h5");
    write_input(file, 3, 1, 3, 16, 4, 1, 1e5);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\n"
             "datasets: [{name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v}]\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [4]}\n", file);
    struct lsh_error err;
    struct lsh_run_summary sum;
    cr_assert_eq(run(yaml, out, 2, LSH_RESULTS_CREATE, 0, &sum, &err), 0, "%s", err.message);
    cr_expect_eq(sum.ok, 4);
    cr_expect_eq(sum.failed, 2);
    size_t nr;
    struct row *rows = read_rows(out, &nr);
    cr_assert_eq(nr, 6);
    for (size_t p = 0; p < nr; p++) {
        cr_expect_eq(rows[p].head, (int32_t)(p / 2));
        if (rows[p].head == 1) {
            cr_expect_str_eq(rows[p].status, "failed");
            cr_expect(!strncmp(rows[p].message, "dataset 'm' (head 1): scores", 28), "%s",
                      rows[p].message);
        } else {
            cr_expect_str_eq(rows[p].status, "ok", "head %d: %s", rows[p].head,
                             rows[p].message);
        }
    }
    free(rows);
}

/* ---- format versions ------------------------------------------------------------------ */

/* A version 1 file, made here by hand: root attributes, and a /runs of the
 * version 1 columns (no layer, no head). */
static void write_v1_file(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t vl = H5Tcopy(H5T_C_S1);
    H5Tset_size(vl, H5T_VARIABLE);
    H5Tset_cset(vl, H5T_CSET_UTF8);
    hid_t sc = H5Screate(H5S_SCALAR);
    const char *fmt = "lshlab-results";
    hid_t a = H5Acreate2(f, "format", vl, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, vl, &fmt);
    H5Aclose(a);
    const int one = 1;
    a = H5Acreate2(f, "format_version", H5T_NATIVE_INT, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &one);
    H5Aclose(a);
    H5Sclose(sc);
    H5Tclose(vl);
    struct v1 {
        uint64_t point_id;
        char dataset[64], strategy[64];
        uint32_t n_hashes;
        char status[16];
        double out_rel_err;
    } rows[2] = { { 0, "g", "rotation", 1, "ok", 0.25 }, { 1, "g", "rotation", 2, "ok", 0.125 } };
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct v1));
    hid_t s64 = H5Tcopy(H5T_C_S1), s16 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s64, 64);
    H5Tset_strpad(s64, H5T_STR_NULLPAD);
    H5Tset_size(s16, 16);
    H5Tset_strpad(s16, H5T_STR_NULLPAD);
    H5Tinsert(t, "point_id", HOFFSET(struct v1, point_id), H5T_NATIVE_UINT64);
    H5Tinsert(t, "dataset", HOFFSET(struct v1, dataset), s64);
    H5Tinsert(t, "strategy", HOFFSET(struct v1, strategy), s64);
    H5Tinsert(t, "n_hashes", HOFFSET(struct v1, n_hashes), H5T_NATIVE_UINT32);
    H5Tinsert(t, "status", HOFFSET(struct v1, status), s16);
    H5Tinsert(t, "out_rel_err", HOFFSET(struct v1, out_rel_err), H5T_NATIVE_DOUBLE);
    hsize_t dims[1] = { 2 };
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "runs", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(s64);
    H5Tclose(s16);
    H5Tclose(t);
    H5Fclose(f);
}

Test(heads, show_reads_a_version_1_file)
{
    const char *path = in_dir("v1.h5");
    write_v1_file(path);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_results_show(path, 1, out, &err);
    fclose(out);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_expect_str_eq(text, "point_id,dataset,strategy,n_hashes,status,out_rel_err\n"
                           "0,g,rotation,1,ok,0.25\n"
                           "1,g,rotation,2,ok,0.125\n");
    free(text);
}

/* --resume of a version 1 file (a real one of this config, marked 1) is
 * refused naming both versions, and the file is left as it was. */
Test(heads, resume_refuses_a_version_1_file_naming_both_versions)
{
    const char *file = in_dir("in2.h5"), *out = in_dir("old.h5");
    write_input(file, 2, 1, 1, 12, 4, -1, 1);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\n"
             "datasets: [{name: h, kind: hdf5, file: %s, q: /q, v: /v}]\n"
             "strategies: [{name: hyperplane}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [2]}\n", file);
    struct lsh_error err;
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_CREATE, 1, NULL, &err), LSH_EINTR, "%s",
                 err.message);
    char partial[300];
    snprintf(partial, sizeof partial, "%s.partial", out);
    hid_t f = H5Fopen(partial, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const int one = 1;
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &one), 0);
    H5Aclose(a);
    H5Fclose(f);
    int rc = run(yaml, out, 1, LSH_RESULTS_RESUME, 0, NULL, &err);
    cr_expect(rc == LSH_ECONFIG || rc == LSH_EDATA, "rc %d: %s", rc, err.message);
    cr_expect(strstr(err.message, "format_version 1") && strstr(err.message, "writes 2"), "%s",
              err.message);
    cr_expect_eq(access(partial, F_OK), 0, "the .partial is kept");
    f = H5Fopen(partial, H5F_ACC_RDONLY, H5P_DEFAULT);
    int version = 0;
    a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT, &version);
    H5Aclose(a);
    H5Fclose(f);
    cr_expect_eq(version, 1);
}

/* ---- the command line ----------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Progress lines name the layer and head in words ("m layer 1 head 0", not
 * "L1 H0", which reads like the n_hashes H=1 beside it), the table has layer
 * and head columns, and the run ends with where its time went. */
Test(heads, progress_names_the_unit_and_the_run_prints_its_time)
{
    const char *exe = getenv("LSHLAB_EXE");
    cr_assert_not_null(exe, "LSHLAB_EXE is not set (run through meson test)");
    const char *file = in_dir("in4.h5"), *cfg = in_dir("cli.yaml");
    write_input(file, 4, 2, 2, 16, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' run '%s' -o '%s' -j 1 >'%s' 2>'%s'", exe, cfg,
             in_dir("cli.h5"), in_dir("out.txt"), in_dir("err.txt"));
    cr_assert_eq(system(cmd), 0, "%s", slurp(in_dir("err.txt")));
    const char *err = slurp(in_dir("err.txt"));
    cr_expect(strstr(err, "reference for dataset 'm' (layer 1, head 0):"), "%s", err);
    cr_expect(strstr(err, "point 14 m layer 1 head 1 hyperplane H=1 B=4"), "%s", err);
    const char *out = slurp(in_dir("out.txt"));
    cr_expect(strstr(out, "layer head strategy"), "%s", out);
    cr_expect(strstr(out, "\n    1    1 hyperplane"), "%s", out);
    cr_expect(strstr(out, "\ntime: data ") && strstr(out, " s, reference ") &&
              strstr(out, " s, hashing ") && strstr(out, " s, evaluation ") &&
              strstr(out, " s, writing ") && strstr(out, " s, other "), "%s", out);
}

/* ---- grouped-query attention and templates -------------------------------------------- */

static void write_array(hid_t f, const char *name, int rank, const hsize_t *dims,
                        const double *x)
{
    /* intermediate groups of a template path are created on the way */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(d, 0, "%s", name);
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
}

/* Q with 4 heads, K and V with 2 (query head h reads key/value head h / 2):
 * /datasets/NAME says kv_heads 2 and dtype float32, and the dump of head 3
 * holds key/value head 1 of the file. */
Test(heads, grouped_query_heads_dump_their_shared_keys)
{
    const char *file = in_dir("gqa.h5"), *out = in_dir("gqa_out.h5");
    enum { N = 8, D = 2 };
    double q[4 * N * D], kv[2 * N * D];
    for (size_t t = 0; t < 4 * N * D; t++)
        q[t] = (double)(float)value(0, 0, t / (N * D), (t / D) % N, t % D);
    for (size_t t = 0; t < 2 * N * D; t++)
        kv[t] = (double)(float)value(1, 0, t / (N * D), (t / D) % N, t % D);
    hid_t f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_array(f, "q", 3, (const hsize_t[]){ 4, N, D }, q);
    write_array(f, "k", 3, (const hsize_t[]){ 2, N, D }, kv);
    write_array(f, "v", 3, (const hsize_t[]){ 2, N, D }, kv);
    H5Fclose(f);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\n"
             "datasets: [{name: g, kind: hdf5, file: %s, q: /q, k: /k, v: /v}]\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: hyperplane}]\n"
             "sweep: {n_hashes: [1], n_buckets: [2]}\n"
             "dump: [data]\n", file);
    struct lsh_error err;
    cr_assert_eq(run(yaml, out, 1, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s", err.message);
    f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "datasets/g", H5P_DEFAULT);
    cr_expect_eq(attr_i64(g, "kv_heads"), 2);
    expect_i32s(g, "heads", (const int32_t[]){ 0, 1, 2, 3 }, 4);
    char *dtype = attr_str(g, "dtype");
    cr_expect_str_eq(dtype, "float32");
    free(dtype);
    H5Gclose(g);
    double x[N * D];
    read_matrix(f, "datasets/g/head3/K", x, N, D);
    for (size_t t = 0; t < N * D; t++)
        cr_assert_eq(x[t], kv[N * D + t], "K of head 3 [%zu]", t);
    read_matrix(f, "datasets/g/head3/Q", x, N, D);
    for (size_t t = 0; t < N * D; t++)
        cr_assert_eq(x[t], q[3 * N * D + t], "Q of head 3 [%zu]", t);
    H5Fclose(f);
}

/* A template (/layer{layer}/head{head}/q) is the same problems as a rank-4
 * array: the same rows, key for key and value for value. */
Test(heads, a_template_runs_the_same_problems_as_a_rank_4_array)
{
    const char *arr = in_dir("arr.h5"), *tpl = in_dir("tpl.h5");
    enum { L = 2, H = 2, N = 12, D = 4 };
    write_input(arr, 4, L, H, N, D, -1, 1);
    hid_t f = H5Fcreate(tpl, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    double x[N * D];
    for (int w = 0; w < 3; w++)
        for (size_t a = 0; a < L; a++)
            for (size_t b = 0; b < H; b++) {
                for (size_t t = 0; t < N * D; t++)
                    x[t] = value(w, a, b, t / D, t % D);
                char name[64];
                snprintf(name, sizeof name, "layer%zu/head%zu/%c", a, b, "qkv"[w]);
                hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
                H5Pset_create_intermediate_group(lcpl, 1);
                hsize_t dims[2] = { N, D };
                hid_t s = H5Screate_simple(2, dims, NULL);
                hid_t d = H5Dcreate2(f, name, H5T_IEEE_F64LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
                cr_assert_geq(d, 0);
                H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
                H5Dclose(d);
                H5Sclose(s);
                H5Pclose(lcpl);
            }
    H5Fclose(f);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, arr, "");
    struct lsh_error err;
    cr_assert_eq(run(yaml, in_dir("arr_out.h5"), 1, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s",
                 err.message);
    snprintf(yaml, sizeof yaml,
             "name: t\nseed: 5\n"
             "datasets:\n"
             "  - {name: m, kind: hdf5, file: %s, q: '/layer{layer}/head{head}/q', "
             "k: '/layer{layer}/head{head}/k', v: '/layer{layer}/head{head}/v'}\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}, {name: hyperplane}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [4]}\n", tpl);
    cr_assert_eq(run(yaml, in_dir("tpl_out.h5"), 1, LSH_RESULTS_CREATE, 0, NULL, &err), 0, "%s",
                 err.message);
    expect_same_rows(in_dir("arr_out.h5"), in_dir("tpl_out.h5"));
}

/* Write yaml to cfg and run `lshlab ARGS` on it; its exit status, stdout and
 * stderr (in out.txt and err.txt). */
static int lshlab_cli(const char *args, const char *cfg, const char *yaml)
{
    const char *exe = getenv("LSHLAB_EXE");
    cr_assert_not_null(exe, "LSHLAB_EXE is not set (run through meson test)");
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs(yaml, f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' >'%s' 2>'%s'", exe, args, cfg, in_dir("out.txt"),
             in_dir("err.txt"));
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A head whose points all fail says why once, not once per point. */
Test(heads, a_failed_head_gives_its_reason_once)
{
    const char *file = in_dir("big3.h5");
    write_input(file, 3, 1, 2, 16, 4, 1, 1e5);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\nseed: 5\n"
             "datasets: [{name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v}]\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}]\n"
             "sweep: {n_hashes: [1, 2, 4], n_buckets: [4]}\n", file);
    char args[512];
    snprintf(args, sizeof args, "run -j 1 -o '%s'", in_dir("t3.h5"));
    cr_assert_eq(lshlab_cli(args, in_dir("t3.yaml"), yaml), 5, "%s", slurp(in_dir("err.txt")));
    const char *err = slurp(in_dir("err.txt"));
    size_t reasons = 0;
    for (const char *p = err; (p = strstr(p, "scores scale * q.k reach")); p++)
        reasons++;
    cr_expect_eq(reasons, 1, "%s", err);
    cr_expect(strstr(err, "H=2 B=4 rep=0 bucket union: failed\n    (the same reason)\n"), "%s",
              err);
}

/* The memory a multi-head dataset needs is one problem's, since problems run
 * one at a time: the refusal says so, so no one shrinks the head selection
 * to fit. */
Test(heads, memory_refusal_says_problems_run_one_at_a_time)
{
    const char *file = in_dir("in4m.h5");
    write_input(file, 4, 2, 3, 16, 4, -1, 1);
    char yaml[1024];
    heads_yaml(yaml, sizeof yaml, file, "");
    char args[512];
    snprintf(args, sizeof args, "run -j 1 --memory-limit 2M -o '%s'", in_dir("mem.h5"));
    cr_assert_eq(lshlab_cli(args, in_dir("mem.yaml"), yaml), 3, "%s", slurp(in_dir("err.txt")));
    const char *err = slurp(in_dir("err.txt"));
    cr_expect(strstr(err, "dataset 'm' (n = 16) needs about ") &&
              strstr(err, " on 1 thread for each of its 6 (layer, head) problems (they run one "
                          "at a time), more than the memory limit of 2.0 MiB"), "%s", err);
}

/* validate says how many attention problems the points are spread over, per
 * dataset: a 2 x 2 file (4 problems, 16 points) and a dataset without axes
 * (1 problem, 4 points). */
Test(heads, validate_counts_the_problems_of_each_dataset)
{
    const char *file = in_dir("in4v.h5");
    write_input(file, 4, 2, 2, 16, 4, -1, 1);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\nseed: 5\n"
             "datasets:\n"
             "  - {name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v}\n"
             "  - {name: g, kind: gaussian, n: 16, d: 4}\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}, {name: hyperplane}]\n"
             "sweep: {n_hashes: [1, 2], n_buckets: [4]}\n", file);
    cr_assert_eq(lshlab_cli("validate", in_dir("v.yaml"), yaml), 0, "%s",
                 slurp(in_dir("err.txt")));
    const char *out = slurp(in_dir("out.txt"));
    cr_expect(strstr(out, "valid: 20 points (2 datasets, 5 attention problems, 10 hash groups"),
              "%s", out);
    cr_expect(strstr(out, "\n  dataset 'm': 2 layers x 2 heads = 4 problems (n = 16, d = 4, "
                          "d_v = 4), 16 points\n"), "%s", out);
    cr_expect(strstr(out, "\n  dataset 'g': 1 problem (n = 16, d = 4, d_v = 4), 4 points\n"),
              "%s", out);
}

/* The table at the end of a run over two datasets says which dataset each
 * row is of, and a failed point's progress line shows no metrics (it has
 * none), only its reason. */
Test(heads, run_table_names_the_dataset_and_failed_points_show_no_metrics)
{
    const char *file = in_dir("big2.h5");
    write_input(file, 3, 1, 2, 16, 4, 1, 1e5);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "name: t\nseed: 5\n"
             "datasets:\n"
             "  - {name: m, kind: hdf5, file: %s, q: /q, k: /k, v: /v}\n"
             "  - {name: gauss, kind: gaussian, n: 16, d: 4}\n"
             "attention: {keys: separate}\n"
             "strategies: [{name: rotation}]\n"
             "sweep: {n_hashes: [1], n_buckets: [4]}\n", file);
    char args[512];
    snprintf(args, sizeof args, "run -j 1 -o '%s'", in_dir("t2.h5"));
    cr_assert_eq(lshlab_cli(args, in_dir("t2.yaml"), yaml), 5, "%s", slurp(in_dir("err.txt")));
    const char *err = slurp(in_dir("err.txt"));
    cr_expect(strstr(err, "point 1 m head 1 rotation orthogonal=false,factors=[] H=1 B=4 rep=0 "
                          "bucket union: failed\n    dataset 'm' (head 1): scores"), "%s", err);
    const char *out = slurp(in_dir("out.txt"));
    cr_expect(strstr(out, "dataset layer head strategy"), "%s", out);
    cr_expect(strstr(out, "\nm           -    0 rotation"), "%s", out);
    cr_expect(strstr(out, "\ngauss       -    - rotation"), "%s", out);
    cr_expect(strstr(out, "union  failed           -          -          -          -          -\n"),
              "%s", out);
}
