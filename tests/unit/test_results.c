/* test_results.c - the results file: create/force/resume never lose a file,
 * /runs holds exactly what was appended (read back with the plain HDF5 API,
 * not through results.c), `show --csv` prints a known text, and h5py/pandas
 * read what we write.
 *
 * The config is built by hand; lsh_config_resolved_yaml comes from config.c,
 * so every expectation about it is computed by calling it, never spelt out.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "config.h"
#include "dataset.h"
#include "error.h"
#include "results.h"

/* ---- a scratch folder per test --------------------------------------------- */

static char dir[64];
static char path[256], partial[300];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/lshlab-test-results-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run.h5", dir);
    snprintf(partial, sizeof partial, "%s.partial", path);
    lsh_results_init_library();
}

/* The folder is flat (one level at most), so no recursion is needed beyond it. */
static void remove_tree(const char *top)
{
    DIR *d = opendir(top);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", top, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(top);
}

static void drop_dir(void)
{
    remove_tree(dir);
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void write_bytes(const char *p, const char *text)
{
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* The whole file as a malloc'd buffer (NUL-terminated), its size in *len. */
static char *read_bytes(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "cannot open %s", p);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void assert_file_is(const char *p, const char *text)
{
    size_t n;
    char *got = read_bytes(p, &n);
    cr_assert_eq(n, strlen(text), "%s changed size", p);
    cr_assert_eq(memcmp(got, text, n), 0, "%s changed", p);
    free(got);
}

/* ---- a config built by hand ------------------------------------------------ */

static const struct lsh_strategy fake_rotation = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "rotation",
    .summary = "stand-in: results.c never hashes",
};

struct test_config {
    struct lsh_config cfg;
    struct lsh_dataset_spec datasets[1];
    struct lsh_strategy_spec strategies[1];
    struct lsh_param_set sets[1];
    uint32_t topk[2], n_hashes[2], n_buckets[2], chunk_size[1], look_back[1];
    struct lsh_mark marks[2];
    enum lsh_mode mode[2];
    enum lsh_window window[1];
    enum lsh_combine combine[2];
    double angles[2];
};

static void make_config(struct test_config *t, uint64_t seed, enum lsh_experiment experiment)
{
    memset(t, 0, sizeof *t);
    struct lsh_config *c = &t->cfg;
    c->path = "test.yaml";
    c->text = "name: results-test\nseed: 2385\n# the YAML as written\n";
    c->name = "results-test";
    c->seed = seed;
    c->repeats = 1;
    c->output = path;
    c->experiment = experiment;

    t->datasets[0] = (struct lsh_dataset_spec){ .name = "clustered-4k", .kind = LSH_DATA_CLUSTERED,
                                                .n = 4096, .d = 64, .d_v = 64, .clusters = 32,
                                                .spread = 0.5, .norm = -1, .line = 4,
                                                .column = 5 };
    c->n_datasets = 1;
    c->datasets = t->datasets;

    t->topk[0] = 1;
    t->topk[1] = 10;
    c->attention = (struct lsh_attention){ .keys = LSH_KEYS_SHARED, .exclude_self = 1,
                                           .scale_auto = 1, .n_topk = 2, .topk = t->topk };

    t->sets[0].canonical = "orthogonal=false,factors=[4,4]";
    t->strategies[0] = (struct lsh_strategy_spec){ .name = "rotation", .strategy = &fake_rotation,
                                                   .n_sets = 1, .sets = t->sets, .line = 9,
                                                   .column = 5 };
    c->n_strategies = 1;
    c->strategies = t->strategies;

    t->n_hashes[0] = 2, t->n_hashes[1] = 4;
    t->n_buckets[0] = 8, t->n_buckets[1] = 16;
    t->marks[0] = (struct lsh_mark){ 12, 14 };
    t->marks[1] = (struct lsh_mark){ 12, 17 };
    t->chunk_size[0] = 64;
    t->look_back[0] = 1;
    t->mode[0] = LSH_MODE_BUCKET, t->mode[1] = LSH_MODE_CHUNKED;
    t->window[0] = LSH_WINDOW_ALL;
    t->combine[0] = LSH_COMBINE_UNION, t->combine[1] = LSH_COMBINE_ROUNDS;
    c->sweep = (struct lsh_sweep){ .n_n_hashes = 2, .n_hashes = t->n_hashes, .n_n_buckets = 2,
                                   .n_buckets = t->n_buckets, .n_buckets_marks = t->marks,
                                   .n_mode = 2, .mode = t->mode, .n_chunk_size = 1,
                                   .chunk_size = t->chunk_size, .n_look_back = 1,
                                   .look_back = t->look_back, .n_window = 1,
                                   .window = t->window, .n_combine = 2,
                                   .combine = t->combine };
    t->angles[0] = 30, t->angles[1] = 90;
    c->collision = (struct lsh_collision_spec){ .d = 16, .n_angles = 2, .angles = t->angles,
                                                .pairs = 100 };
}

/* ---- rows --------------------------------------------------------------- */

struct test_row {
    struct lsh_run_row row;
    double topk[2];
};

/* Point `id`, bucket mode; metrics with values that are not round numbers
 * (2.385 has no exact binary form, so a lossy path would show). */
static void make_row(struct test_row *t, uint64_t id, enum lsh_point_status status)
{
    memset(t, 0, sizeof *t);
    struct lsh_run_row *r = &t->row;
    r->key = (struct lsh_point_key){ .point_id = id, .dataset = "clustered-4k",
                                     .layer = -1, .head = 5 + (int32_t)id,
                                     .strategy = "rotation",
                                     .params = "orthogonal=false,factors=[4,4]",
                                     .mode = LSH_MODE_BUCKET, .window = LSH_WINDOW_ALL,
                                     .combine = LSH_COMBINE_UNION, .n_hashes = 4,
                                     .n_buckets = 16, .repeat = 0,
                                     .min_collisions = 2, .sink = 4, .local = 8,
                                     .seed = UINT64_C(0xFEDCBA9876543210) + id };
    r->status = status;
    r->message = status == LSH_POINT_OK ? "" : "not run";
    t->topk[0] = 1.0;
    t->topk[1] = 0.875 - 0.001 * (double)id;
    r->metrics = (struct lsh_metrics){ .out_rel_err = 0.25 + (double)id, .attn_rel_err = 2.385,
                                       .mass_recall = 0.1, .kl = 0.5, .empty_rows = 3 + id,
                                       .gram_recovery = 0.75, .topk_recall = t->topk,
                                       .density = 0.125, .mean_candidates = 512,
                                       .bucket_max = 1.5, .bucket_entropy = 0.96875,
                                       .hash_seconds = 0.001953125, .eval_seconds = 3 };
}

static struct lsh_results *open_ok(const struct lsh_config *cfg, enum lsh_results_mode mode)
{
    struct lsh_results *res = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_results_open(path, cfg, "lshlab run test.yaml", mode, &res, &err);
    cr_assert_eq(rc, 0, "open failed: %s", err.message);
    cr_assert_not_null(res);
    return res;
}

static void append_ok(struct lsh_results *res, const struct lsh_run_row *row)
{
    struct lsh_error err;
    int rc = lsh_results_append(res, row, &err);
    cr_assert_eq(rc, 0, "append failed: %s", err.message);
}

static void close_ok(struct lsh_results *res, int complete)
{
    struct lsh_error err;
    int rc = lsh_results_close(res, complete, &err);
    cr_assert_eq(rc, 0, "close failed: %s", err.message);
}

/* A file with rows 0..n-1, all ok, completed. */
static void write_complete_file(const struct lsh_config *cfg, uint64_t n)
{
    struct lsh_results *res = open_ok(cfg, LSH_RESULTS_CREATE);
    for (uint64_t id = 0; id < n; id++) {
        struct test_row r;
        make_row(&r, id, LSH_POINT_OK);
        append_ok(res, &r.row);
    }
    close_ok(res, 1);
}

/* ---- reading back with HDF5 alone ---------------------------------------------- */

#define W LSH_RUNS_WORD_LEN
struct run_rec {
    uint64_t point_id;
    char dataset[LSH_RUNS_NAME_LEN + 1];
    int32_t layer, head;
    char strategy[LSH_RUNS_NAME_LEN + 1];
    char params[LSH_RUNS_PARAMS_LEN + 1], mode[W + 1];
    uint32_t chunk_size, look_back;
    char window[W + 1], combine[W + 1];
    uint32_t min_collisions, sink, local;
    uint32_t n_hashes, n_buckets, repeat;
    uint64_t seed;
    char status[W + 1], message[LSH_RUNS_MESSAGE_LEN + 1];
    double out_rel_err, attn_rel_err, mass_recall, kl;
    uint64_t empty_rows;
    double gram_recovery, topk_1, topk_10, density, mean_candidates, bucket_max;
    double bucket_entropy, hash_seconds, eval_seconds;
};

static const char *const run_names[] = {
    "point_id", "dataset", "layer", "head", "strategy", "params", "mode", "chunk_size", "look_back", "window",
    "combine", "min_collisions", "sink", "local", "n_hashes", "n_buckets", "repeat", "seed",
    "status", "message", "out_rel_err",
    "attn_rel_err", "mass_recall", "kl", "empty_rows", "gram_recovery", "topk_recall_1",
    "topk_recall_10", "density", "mean_candidates", "bucket_max", "bucket_entropy",
    "hash_seconds", "eval_seconds",
};
#define N_RUN_COLS (sizeof run_names / sizeof run_names[0])

static void insert_str(hid_t t, const char *name, size_t off, size_t size)
{
    hid_t s = H5Tcopy(H5T_C_S1);
    H5Tset_size(s, size);
    H5Tset_strpad(s, H5T_STR_NULLTERM);
    cr_assert_geq(H5Tinsert(t, name, off, s), 0);
    H5Tclose(s);
}

static hid_t run_rec_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct run_rec));
#define U64(f, name) H5Tinsert(t, name, HOFFSET(struct run_rec, f), H5T_NATIVE_UINT64)
#define U32(f, name) H5Tinsert(t, name, HOFFSET(struct run_rec, f), H5T_NATIVE_UINT32)
#define F64(f, name) H5Tinsert(t, name, HOFFSET(struct run_rec, f), H5T_NATIVE_DOUBLE)
#define STR(f, name) insert_str(t, name, HOFFSET(struct run_rec, f), sizeof((struct run_rec *)0)->f)
    U64(point_id, "point_id");
    STR(dataset, "dataset");
    H5Tinsert(t, "layer", HOFFSET(struct run_rec, layer), H5T_NATIVE_INT32);
    H5Tinsert(t, "head", HOFFSET(struct run_rec, head), H5T_NATIVE_INT32);
    STR(strategy, "strategy");
    STR(params, "params");
    STR(mode, "mode");
    U32(chunk_size, "chunk_size");
    U32(look_back, "look_back");
    STR(window, "window");
    STR(combine, "combine");
    U32(min_collisions, "min_collisions");
    U32(sink, "sink");
    U32(local, "local");
    U32(n_hashes, "n_hashes");
    U32(n_buckets, "n_buckets");
    U32(repeat, "repeat");
    U64(seed, "seed");
    STR(status, "status");
    STR(message, "message");
    F64(out_rel_err, "out_rel_err");
    F64(attn_rel_err, "attn_rel_err");
    F64(mass_recall, "mass_recall");
    F64(kl, "kl");
    U64(empty_rows, "empty_rows");
    F64(gram_recovery, "gram_recovery");
    F64(topk_1, "topk_recall_1");
    F64(topk_10, "topk_recall_10");
    F64(density, "density");
    F64(mean_candidates, "mean_candidates");
    F64(bucket_max, "bucket_max");
    F64(bucket_entropy, "bucket_entropy");
    F64(hash_seconds, "hash_seconds");
    F64(eval_seconds, "eval_seconds");
#undef U64
#undef U32
#undef F64
#undef STR
    return t;
}

/* Every row of /runs of file p (malloc'd), the count in *n. */
static struct run_rec *read_runs(const char *p, size_t *n)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot open %s", p);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    cr_assert_geq(d, 0);
    hid_t s = H5Dget_space(d);
    hsize_t dims[1];
    cr_assert_eq(H5Sget_simple_extent_ndims(s), 1);
    H5Sget_simple_extent_dims(s, dims, NULL);
    struct run_rec *rows = calloc(dims[0] + 1, sizeof *rows);
    hid_t t = run_rec_type();
    if (dims[0])
        cr_assert_geq(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    *n = dims[0];
    return rows;
}

/* A string attribute of the root group (NULL when absent), malloc'd. */
static char *root_attr(const char *p, const char *name)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    char *out = NULL;
    if (H5Aexists(f, name) > 0) {
        hid_t a = H5Aopen(f, name, H5P_DEFAULT);
        hid_t ft = H5Aget_type(a);
        cr_assert_eq(H5Tget_class(ft), H5T_STRING, "%s is not a string", name);
        cr_assert(H5Tis_variable_str(ft) > 0, "%s is not a variable-length string", name);
        cr_assert_eq(H5Tget_cset(ft), H5T_CSET_UTF8, "%s: h5py reads UTF-8 as str", name);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5T_CSET_UTF8);
        char *v = NULL;
        cr_assert_geq(H5Aread(a, mt, &v), 0);
        out = strdup(v);
        H5free_memory(v);
        H5Tclose(mt);
        H5Tclose(ft);
        H5Aclose(a);
    }
    H5Fclose(f);
    return out;
}

static void assert_root_attr(const char *p, const char *name, const char *want)
{
    char *got = root_attr(p, name);
    cr_assert_not_null(got, "attribute %s missing", name);
    cr_assert_str_eq(got, want, "attribute %s", name);
    free(got);
}

static void assert_row_matches(const struct run_rec *got, const struct test_row *want_row)
{
    const struct lsh_run_row *w = &want_row->row;
    int ok = w->status == LSH_POINT_OK;
    cr_assert_eq(got->point_id, w->key.point_id);
    cr_assert_str_eq(got->dataset, w->key.dataset);
    cr_assert_eq(got->layer, w->key.layer);
    cr_assert_eq(got->head, w->key.head);
    cr_assert_str_eq(got->strategy, w->key.strategy);
    cr_assert_str_eq(got->params, w->key.params);
    cr_assert_str_eq(got->mode, lsh_mode_name(w->key.mode));
    cr_assert_eq(got->chunk_size, w->key.chunk_size);
    cr_assert_eq(got->look_back, w->key.look_back);
    cr_assert_str_eq(got->window, w->key.mode == LSH_MODE_BUCKET
                                      ? "n/a" : lsh_window_name(w->key.window));
    cr_assert_str_eq(got->combine, lsh_combine_name(w->key.combine));
    cr_assert_eq(got->n_hashes, w->key.n_hashes);
    cr_assert_eq(got->n_buckets, w->key.n_buckets);
    cr_assert_eq(got->repeat, w->key.repeat);
    cr_assert_eq(got->seed, w->key.seed);
    cr_assert_str_eq(got->status,
                     ok ? "ok" : w->status == LSH_POINT_SKIPPED ? "skipped" : "failed");
    cr_assert_str_eq(got->message, w->message);
    /* Exact: a double goes through the file bit for bit.  Zeros unless ok. */
    const struct lsh_metrics *m = &w->metrics;
    cr_assert_eq(got->out_rel_err, ok ? m->out_rel_err : 0.0);
    cr_assert_eq(got->attn_rel_err, ok ? m->attn_rel_err : 0.0);
    cr_assert_eq(got->mass_recall, ok ? m->mass_recall : 0.0);
    cr_assert_eq(got->kl, ok ? m->kl : 0.0);
    cr_assert_eq(got->empty_rows, ok ? m->empty_rows : 0);
    cr_assert_eq(got->gram_recovery, ok ? m->gram_recovery : 0.0);
    cr_assert_eq(got->topk_1, ok ? m->topk_recall[0] : 0.0);
    cr_assert_eq(got->topk_10, ok ? m->topk_recall[1] : 0.0);
    cr_assert_eq(got->density, ok ? m->density : 0.0);
    cr_assert_eq(got->mean_candidates, ok ? m->mean_candidates : 0.0);
    cr_assert_eq(got->bucket_max, ok ? m->bucket_max : 0.0);
    cr_assert_eq(got->bucket_entropy, ok ? m->bucket_entropy : 0.0);
    cr_assert_eq(got->hash_seconds, ok ? m->hash_seconds : 0.0);
    cr_assert_eq(got->eval_seconds, ok ? m->eval_seconds : 0.0);
}

TestSuite(results, .init = make_dir, .fini = drop_dir);

/* ---- the file's contents ---------------------------------------------------- */

Test(results, rows_read_back_exactly)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct test_row rows[3];
    make_row(&rows[0], 0, LSH_POINT_OK);
    make_row(&rows[1], 1, LSH_POINT_OK);
    rows[1].row.key.mode = LSH_MODE_CHUNKED;
    rows[1].row.key.chunk_size = 32;
    rows[1].row.key.look_back = 2;
    rows[1].row.key.window = LSH_WINDOW_SAME_BUCKET;
    rows[1].row.key.combine = LSH_COMBINE_ROUNDS;
    rows[1].row.key.n_hashes = 2;
    rows[1].row.key.repeat = 7;
    make_row(&rows[2], 2, LSH_POINT_SKIPPED); /* its metrics must come out as zeros */
    rows[2].row.message = "hyperplane needs a power of two, got 24";

    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    cr_assert_eq(lsh_results_row_count(res), 0);
    for (int i = 0; i < 3; i++)
        append_ok(res, &rows[i].row);
    cr_assert_eq(lsh_results_row_count(res), 3);
    for (uint64_t id = 0; id < 3; id++)
        cr_assert(lsh_results_has_point(res, id));
    cr_assert_not(lsh_results_has_point(res, 3));
    /* after a snapshot, a copy of the .partial taken now (what a crash would
     * leave on disk) holds all three rows */
    struct lsh_error serr;
    cr_assert_eq(lsh_results_sync(res, &serr), 0, "%s", serr.message);
    char snapshot[300];
    snprintf(snapshot, sizeof snapshot, "%s/snapshot.h5", dir);
    size_t n_bytes;
    char *bytes = read_bytes(partial, &n_bytes);
    FILE *copy = fopen(snapshot, "wb");
    cr_assert_not_null(copy);
    cr_assert_eq(fwrite(bytes, 1, n_bytes, copy), n_bytes);
    fclose(copy);
    free(bytes);
    size_t n_open;
    free(read_runs(snapshot, &n_open));
    cr_assert_eq(n_open, 3);
    close_ok(res, 1);
    cr_assert(exists(path));
    cr_assert_not(exists(partial));

    size_t n;
    struct run_rec *got = read_runs(path, &n);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++)
        assert_row_matches(&got[i], &rows[i]);
    free(got);

    /* columns in SPEC order, fixed NUL-padded strings, chunked and extendible */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    cr_assert_eq(H5Tget_nmembers(t), (int)N_RUN_COLS);
    for (unsigned i = 0; i < N_RUN_COLS; i++) {
        char *name = H5Tget_member_name(t, i);
        cr_assert_str_eq(name, run_names[i], "column %u", i);
        H5free_memory(name);
    }
    hid_t st = H5Tget_member_type(t, 1);
    cr_assert_eq(H5Tget_class(st), H5T_STRING);
    cr_assert_eq(H5Tis_variable_str(st), 0);
    cr_assert_eq(H5Tget_size(st), LSH_RUNS_NAME_LEN);
    cr_assert_eq(H5Tget_strpad(st), H5T_STR_NULLPAD);
    H5Tclose(st);
    hid_t plist = H5Dget_create_plist(d);
    cr_assert_eq(H5Pget_layout(plist), H5D_CHUNKED);
    H5Pclose(plist);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1], maxdims[1];
    H5Sget_simple_extent_dims(sp, dims, maxdims);
    cr_assert_eq(maxdims[0], H5S_UNLIMITED);
    H5Sclose(sp);
    cr_assert_eq(H5Lexists(f, "collision", H5P_DEFAULT), 0);
    int version = 0;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT, &version);
    cr_assert_eq(version, LSH_RESULTS_FORMAT_VERSION);
    H5Aclose(a);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
}

Test(results, root_attributes_record_provenance)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_complete_file(&tc.cfg, 1);
    char *resolved = lsh_config_resolved_yaml(&tc.cfg);
    assert_root_attr(path, "format", LSH_RESULTS_FORMAT);
    assert_root_attr(path, "lshlab_version", LSHLAB_VERSION);
    assert_root_attr(path, "config", tc.cfg.text);
    assert_root_attr(path, "resolved_config", resolved);
    assert_root_attr(path, "command_line", "lshlab run test.yaml");
    assert_root_attr(path, "experiment", "sweep");
    assert_root_attr(path, "name", "results-test");
    free(resolved);
    const char *nonempty[] = { "git_revision", "host", "blas" };
    for (size_t i = 0; i < 3; i++) {
        char *v = root_attr(path, nonempty[i]);
        cr_assert(v && v[0], "attribute %s missing or empty", nonempty[i]);
        free(v);
    }
    /* created: ISO 8601 UTC, 2026-11-26T10:00:00Z */
    char *created = root_attr(path, "created");
    cr_assert_not_null(created);
    cr_assert_eq(strlen(created), 20, "created = '%s'", created);
    const char *shape = "dddd-dd-ddTdd:dd:ddZ";
    for (size_t i = 0; i < 20; i++)
        cr_assert(shape[i] == 'd' ? created[i] >= '0' && created[i] <= '9'
                                  : created[i] == shape[i],
                  "created = '%s'", created);
    free(created);
}

Test(results, skipped_message_too_long_is_cut_but_names_are_not)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    char longtext[400];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';

    struct test_row r;
    struct lsh_error err;
    make_row(&r, 0, LSH_POINT_FAILED);
    r.row.message = longtext;
    append_ok(res, &r.row);

    make_row(&r, 1, LSH_POINT_OK);
    r.row.key.strategy = longtext; /* a key that does not fit is refused, never cut */
    cr_assert_eq(lsh_results_append(res, &r.row, &err), LSH_ERANGE);
    cr_assert(strstr(err.message, "strategy"), "%s", err.message);
    cr_assert_eq(lsh_results_row_count(res), 1);
    cr_assert_not(lsh_results_has_point(res, 1));
    close_ok(res, 1);

    size_t n;
    struct run_rec *got = read_runs(path, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(strlen(got[0].message), LSH_RUNS_MESSAGE_LEN - 1);
    cr_assert_str_eq(got[0].message + LSH_RUNS_MESSAGE_LEN - 4, "...");
    cr_assert_str_eq(got[0].status, "failed");
    free(got);
}

Test(results, config_names_too_long_refused_before_creating)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    char longname[LSH_RUNS_NAME_LEN + 8];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    tc.datasets[0].name = longname;
    struct lsh_results *res = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_CREATE, &res, &err), LSH_ECONFIG);
    cr_assert_null(res);
    cr_assert_str_eq(err.file, "test.yaml");
    cr_assert_eq(err.line, 4);
    cr_assert_not(exists(path));
    cr_assert_not(exists(partial));
}

Test(results, duplicate_point_refused)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct test_row r;
    struct lsh_error err;
    make_row(&r, 5, LSH_POINT_OK);
    append_ok(res, &r.row);
    cr_assert_eq(lsh_results_append(res, &r.row, &err), LSH_EINVAL);
    cr_assert(strstr(err.message, "point 5"), "%s", err.message);
    cr_assert_eq(lsh_results_row_count(res), 1);
    close_ok(res, 0);
}

/* ---- never losing a file ------------------------------------------------------ */

Test(results, create_refuses_existing_file_and_leaves_it_unchanged)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    const char *precious = "precious results from last week\n";
    write_bytes(path, precious);

    struct lsh_results *res = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_CREATE, &res, &err),
                 LSH_EEXIST);
    cr_assert_null(res);
    char want[600];
    snprintf(want, sizeof want,
             "results file '%s' exists; use --force to replace it or --resume to continue it",
             path);
    cr_assert_str_eq(err.message, want);
    assert_file_is(path, precious);
    cr_assert_not(exists(partial));
}

Test(results, create_refuses_interrupted_partial)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    const char *half = "half a run\n";
    write_bytes(partial, half);
    struct lsh_results *res = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_CREATE, &res, &err),
                 LSH_EEXIST);
    cr_assert(strstr(err.message, "interrupted") && strstr(err.message, "--resume") &&
                  strstr(err.message, "--force"),
              "%s", err.message);
    assert_file_is(partial, half);
    cr_assert_not(exists(path));
}

Test(results, force_replaces_only_on_complete_close)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    const char *old = "the old results\n";
    write_bytes(path, old);
    write_bytes(partial, "a stale partial file\n");

    /* interrupted: the old file stays */
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_FORCE);
    struct test_row r;
    make_row(&r, 0, LSH_POINT_OK);
    append_ok(res, &r.row);
    assert_file_is(path, old);
    close_ok(res, 0);
    assert_file_is(path, old);
    cr_assert(exists(partial));

    /* complete: replaced */
    res = open_ok(&tc.cfg, LSH_RESULTS_FORCE);
    cr_assert_eq(lsh_results_row_count(res), 0, "force starts afresh");
    append_ok(res, &r.row);
    assert_file_is(path, old);
    close_ok(res, 1);
    cr_assert_not(exists(partial));
    size_t n;
    struct run_rec *got = read_runs(path, &n);
    cr_assert_eq(n, 1);
    assert_row_matches(&got[0], &r);
    free(got);
}

Test(results, interrupted_run_resumes_and_reruns_failed_points)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct test_row r[5];
    const enum lsh_point_status status[4] = { LSH_POINT_OK, LSH_POINT_FAILED, LSH_POINT_SKIPPED,
                                              LSH_POINT_OK };
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    for (uint64_t id = 0; id < 4; id++) {
        make_row(&r[id], id, status[id]);
        append_ok(res, &r[id].row);
    }
    cr_assert_not(lsh_results_has_point(res, 1), "a failed point is not done");
    close_ok(res, 0); /* interrupted */
    cr_assert_not(exists(path));
    cr_assert(exists(partial));

    res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    cr_assert(lsh_results_has_point(res, 0));
    cr_assert_not(lsh_results_has_point(res, 1));
    cr_assert(lsh_results_has_point(res, 2));
    cr_assert(lsh_results_has_point(res, 3));
    cr_assert_not(lsh_results_has_point(res, 4));
    cr_assert_eq(lsh_results_row_count(res), 3, "the failed row is dropped, to be re-run");
    make_row(&r[1], 1, LSH_POINT_OK);
    append_ok(res, &r[1].row);
    make_row(&r[4], 4, LSH_POINT_OK);
    append_ok(res, &r[4].row);
    close_ok(res, 1);
    cr_assert_not(exists(partial));

    size_t n;
    struct run_rec *got = read_runs(path, &n);
    const int order[5] = { 0, 2, 3, 1, 4 };
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_row_matches(&got[i], &r[order[i]]);
    free(got);
}

Test(results, resume_of_complete_file_puts_it_back_only_when_complete)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_complete_file(&tc.cfg, 2);

    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    cr_assert(lsh_results_has_point(res, 0) && lsh_results_has_point(res, 1));
    cr_assert_not(exists(path), "while the run goes on, only the .partial exists");
    cr_assert(exists(partial));
    close_ok(res, 0);
    cr_assert_not(exists(path));

    res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    struct test_row r;
    make_row(&r, 2, LSH_POINT_OK);
    append_ok(res, &r.row);
    close_ok(res, 1);
    cr_assert(exists(path));
    cr_assert_not(exists(partial));
    size_t n;
    free(read_runs(path, &n));
    cr_assert_eq(n, 3);
}

Test(results, resume_with_nothing_to_resume_creates)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    cr_assert_eq(lsh_results_row_count(res), 0);
    close_ok(res, 1);
    cr_assert(exists(path));
}

Test(results, resume_with_different_config_refused)
{
    struct test_config a, b;
    make_config(&a, 2385, LSH_EXPERIMENT_SWEEP);
    make_config(&b, 2386, LSH_EXPERIMENT_SWEEP);
    char *ya = lsh_config_resolved_yaml(&a.cfg), *yb = lsh_config_resolved_yaml(&b.cfg);
    cr_assert_str_neq(ya, yb, "the seed must show in the resolved config");
    free(ya);
    free(yb);

    /* a complete file: refused, and left in place byte for byte */
    write_complete_file(&a.cfg, 1);
    size_t n_before;
    char *before = read_bytes(path, &n_before);
    struct lsh_results *res = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_results_open(path, &b.cfg, "", LSH_RESULTS_RESUME, &res, &err),
                 LSH_ECONFIG);
    cr_assert_null(res);
    cr_assert(strstr(err.message, "different configuration") && strstr(err.message, "--force"),
              "%s", err.message);
    cr_assert(exists(path));
    cr_assert_not(exists(partial));
    size_t n_after;
    char *after = read_bytes(path, &n_after);
    cr_assert(n_before == n_after && !memcmp(before, after, n_before));
    free(before);
    free(after);

    /* an interrupted one: refused too, the .partial kept */
    remove(path);
    res = open_ok(&a.cfg, LSH_RESULTS_CREATE);
    close_ok(res, 0);
    cr_assert_eq(lsh_results_open(path, &b.cfg, "", LSH_RESULTS_RESUME, &res, &err),
                 LSH_ECONFIG);
    cr_assert(exists(partial));
    cr_assert_not(exists(path));
}

Test(results, resume_of_a_non_results_file_is_a_quiet_named_error)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_bytes(partial, "not HDF5 at all\n");

    /* HDF5 must not print its error stack: watch stderr while it fails */
    char errfile[300];
    snprintf(errfile, sizeof errfile, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(fileno(stderr));
    cr_assert(freopen(errfile, "w", stderr));
    struct lsh_results *res = NULL;
    struct lsh_error err;
    int rc = lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_RESUME, &res, &err);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);

    cr_assert_eq(rc, LSH_EDATA, "bad input, as any damaged results file: %s", err.message);
    cr_assert(strstr(err.message, partial) && strstr(err.message, "HDF5") &&
                  strstr(err.message, "is damaged"), "%s", err.message);
    assert_file_is(partial, "not HDF5 at all\n");
    assert_file_is(errfile, "");
}

Test(results, missing_output_folder_refused_and_nothing_created)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    char folder[128], p[256], want[700];
    snprintf(folder, sizeof folder, "%s/no-such-folder", dir);
    snprintf(p, sizeof p, "%s/run.h5", folder);
    struct lsh_results *res = NULL;
    struct lsh_error err;
    for (int mode = LSH_RESULTS_CREATE; mode <= LSH_RESULTS_RESUME; mode++) {
        cr_assert_eq(lsh_results_open(p, &tc.cfg, "", (enum lsh_results_mode)mode, &res, &err),
                     LSH_ENOTFOUND);
        cr_assert_null(res);
        snprintf(want, sizeof want,
                 "cannot write results to '%s': folder '%s' does not exist", p, folder);
        cr_assert_str_eq(err.message, want);
        cr_assert_not(exists(folder));
    }

    /* a file where the folder should be */
    snprintf(folder, sizeof folder, "%s/plain-file", dir);
    write_bytes(folder, "x");
    snprintf(p, sizeof p, "%s/run.h5", folder);
    cr_assert_neq(lsh_results_open(p, &tc.cfg, "", LSH_RESULTS_CREATE, &res, &err), 0);
    cr_assert(strstr(err.message, "is not a folder"), "%s", err.message);

    /* nothing at all was created in the scratch folder besides that file */
    DIR *d = opendir(dir);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    cr_assert_eq(entries, 1);
}

Test(results, close_of_null_is_fine)
{
    cr_assert_eq(lsh_results_close(NULL, 1, NULL), 0);
}

/* ---- /collision, /datasets, /points ------------------------------------------ */

Test(results, collision_rows_read_back_exactly)
{
    struct test_config tc;
    make_config(&tc, 7, LSH_EXPERIMENT_COLLISION);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct lsh_collision_row rows[2] = {
        { "rotation", "orthogonal=false", 16, 8, 30.0, 20000, 0.4375, 0.0123, 0.9921875,
          0.00061, 11, 0.25, 0, 0.0 },
        { "hyperplane", "", 4, 8, 90.0, 20000, 0.0625, 0.002, 0.40625, 0.0035, 12, 0.125, 1,
          0.5 },
    };
    struct lsh_error err;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(lsh_results_append_collision(res, &rows[i], &err), 0, "%s", err.message);
    struct test_row r;
    make_row(&r, 0, LSH_POINT_OK);
    cr_assert_eq(lsh_results_append(res, &r.row, &err), LSH_EINVAL, "no /runs here");
    cr_assert_eq(lsh_results_row_count(res), 2);
    close_ok(res, 1);

    struct coll_rec {
        char strategy[LSH_RUNS_NAME_LEN + 1], params[LSH_RUNS_PARAMS_LEN + 1];
        uint32_t n_buckets, n_hashes;
        double angle;
        uint64_t pairs;
        double p_round, p_round_se, p_any, p_any_se;
        uint8_t has_law;
        double p_law;
        uint64_t seed;
        double seconds;
    } got[2];
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof got[0]);
    insert_str(t, "strategy", HOFFSET(struct coll_rec, strategy), LSH_RUNS_NAME_LEN + 1);
    insert_str(t, "params", HOFFSET(struct coll_rec, params), LSH_RUNS_PARAMS_LEN + 1);
    H5Tinsert(t, "n_buckets", HOFFSET(struct coll_rec, n_buckets), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_hashes", HOFFSET(struct coll_rec, n_hashes), H5T_NATIVE_UINT32);
    H5Tinsert(t, "angle", HOFFSET(struct coll_rec, angle), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "pairs", HOFFSET(struct coll_rec, pairs), H5T_NATIVE_UINT64);
    H5Tinsert(t, "p_round", HOFFSET(struct coll_rec, p_round), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_round_se", HOFFSET(struct coll_rec, p_round_se), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_any", HOFFSET(struct coll_rec, p_any), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "p_any_se", HOFFSET(struct coll_rec, p_any_se), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "has_law", HOFFSET(struct coll_rec, has_law), H5T_NATIVE_UINT8);
    H5Tinsert(t, "p_law", HOFFSET(struct coll_rec, p_law), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "seed", HOFFSET(struct coll_rec, seed), H5T_NATIVE_UINT64);
    H5Tinsert(t, "seconds", HOFFSET(struct coll_rec, seconds), H5T_NATIVE_DOUBLE);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_eq(H5Lexists(f, "runs", H5P_DEFAULT), 0);
    hid_t d = H5Dopen2(f, "collision", H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    cr_assert_eq(H5Tget_nmembers(ft), 14);
    char *first = H5Tget_member_name(ft, 0), *last = H5Tget_member_name(ft, 13);
    cr_assert_str_eq(first, "strategy");
    cr_assert_str_eq(last, "seconds");
    H5free_memory(first);
    H5free_memory(last);
    cr_assert_geq(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, got), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_str_eq(got[i].strategy, rows[i].strategy);
        cr_assert_str_eq(got[i].params, rows[i].params);
        cr_assert_eq(got[i].n_buckets, rows[i].n_buckets);
        cr_assert_eq(got[i].n_hashes, rows[i].n_hashes);
        cr_assert_eq(got[i].angle, rows[i].angle);
        cr_assert_eq(got[i].pairs, rows[i].pairs);
        cr_assert_eq(got[i].p_round, rows[i].p_round);
        cr_assert_eq(got[i].p_round_se, rows[i].p_round_se);
        cr_assert_eq(got[i].p_any, rows[i].p_any);
        cr_assert_eq(got[i].p_any_se, rows[i].p_any_se);
        cr_assert_eq(got[i].has_law, rows[i].has_law);
        cr_assert_eq(got[i].p_law, rows[i].p_law);
        cr_assert_eq(got[i].seed, rows[i].seed);
        cr_assert_eq(got[i].seconds, rows[i].seconds);
    }
    H5Tclose(ft);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    assert_root_attr(path, "experiment", "collision");
}

static double read_attr_f64(hid_t obj, const char *name)
{
    double v = -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    cr_assert_geq(a, 0, "attribute %s missing", name);
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

static void read_matrix(hid_t f, const char *name, hid_t type, void *buf, int rank, hsize_t r,
                        hsize_t c)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert_geq(d, 0, "%s missing", name);
    hid_t s = H5Dget_space(d);
    hsize_t dims[2] = { 0, 0 };
    cr_assert_eq(H5Sget_simple_extent_ndims(s), rank, "%s rank", name);
    H5Sget_simple_extent_dims(s, dims, NULL);
    cr_assert_eq(dims[0], r);
    if (rank == 2)
        cr_assert_eq(dims[1], c);
    cr_assert_geq(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Sclose(s);
    H5Dclose(d);
}

Test(results, dataset_group_and_dumps_survive_resume)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    double q[6] = { 2.385, -1.25, 0.5, 3.0, -0.125, 7.75 };
    double k[6] = { 1, 2, 3, 4, 5, 6.5 };
    double v[3] = { 0.1, 0.2, 0.3 };
    struct lsh_dataset ds = { .spec = &tc.datasets[0], .unit = { -1, -1 }, .n = 3, .d = 2,
                              .d_v = 1, .seed = UINT64_C(0x123456789abcdef0), .q = q, .k = k, .v = v };
    struct lsh_error err;
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    cr_assert_eq(lsh_results_write_dataset(res, NULL, &ds, 1, &err), 0, "%s", err.message);
    uint32_t buckets[6] = { 0, 3, 1, 2, 2, 0 }, buckets2[6] = { 9, 9, 9, 9, 9, 9 };
    double mass[3] = { 0.5, 0.25, 0.125 };
    cr_assert_eq(lsh_results_dump_array(res, 17, "buckets", 'u', buckets, 2, 3, &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_results_dump_array(res, 17, "mass", 'd', mass, 3, 0, &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_results_dump_array(res, 17, "bad/name", 'd', mass, 3, 0, &err), LSH_EINVAL);
    cr_assert_eq(lsh_results_dump_array(res, 17, "mass", 'x', mass, 3, 0, &err), LSH_EINVAL);
    close_ok(res, 0);

    /* resume: the dataset group is kept as is, a re-run point's arrays replaced */
    res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    cr_assert_eq(lsh_results_write_dataset(res, NULL, &ds, 1, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_results_dump_array(res, 17, "buckets", 'u', buckets2, 2, 3, &err), 0, "%s",
                 err.message);
    close_ok(res, 1);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "datasets/clustered-4k", H5P_DEFAULT);
    cr_assert_geq(g, 0);
    uint64_t u = 0;
    hid_t a = H5Aopen(g, "seed", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_UINT64, &u);
    H5Aclose(a);
    cr_assert_eq(u, ds.seed);
    cr_assert_eq(read_attr_f64(g, "n"), 3);
    cr_assert_eq(read_attr_f64(g, "d"), 2);
    cr_assert_eq(read_attr_f64(g, "d_v"), 1);
    cr_assert_eq(read_attr_f64(g, "clusters"), 32);
    cr_assert_eq(read_attr_f64(g, "spread"), 0.5);
    cr_assert_eq(read_attr_f64(g, "norm"), sqrt(2.0), "norm: default sqrt(d)");
    cr_assert_eq(read_attr_f64(g, "reference_rows"), 3, "all rows");
    H5Gclose(g);

    double got[6];
    read_matrix(f, "datasets/clustered-4k/Q", H5T_NATIVE_DOUBLE, got, 2, 3, 2);
    cr_assert_eq(memcmp(got, q, sizeof q), 0);
    read_matrix(f, "datasets/clustered-4k/K", H5T_NATIVE_DOUBLE, got, 2, 3, 2);
    cr_assert_eq(memcmp(got, k, sizeof k), 0);
    read_matrix(f, "datasets/clustered-4k/V", H5T_NATIVE_DOUBLE, got, 2, 3, 1);
    cr_assert_eq(memcmp(got, v, sizeof v), 0);
    uint32_t gb[6];
    read_matrix(f, "points/17/buckets", H5T_NATIVE_UINT32, gb, 2, 2, 3);
    cr_assert_eq(memcmp(gb, buckets2, sizeof gb), 0);
    read_matrix(f, "points/17/mass", H5T_NATIVE_DOUBLE, got, 1, 3, 0);
    cr_assert_eq(memcmp(got, mass, sizeof mass), 0);
    H5Fclose(f);
}

/* ---- show ------------------------------------------------------------------ */

/* Two rows whose CSV needs full precision (2.385, 0.1), the largest uint64
 * and RFC 4180 quoting (a comma in params, quotes in the message). */
static void write_show_file(struct test_config *tc)
{
    make_config(tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct test_row a, b;
    make_row(&a, 0, LSH_POINT_OK);
    a.row.key.seed = UINT64_MAX;
    make_row(&b, 7, LSH_POINT_SKIPPED);
    b.row.key = (struct lsh_point_key){ .point_id = 7, .dataset = "gaussian-1k",
                                        .layer = 2, .head = -1,
                                        .strategy = "hyperplane", .params = "",
                                        .mode = LSH_MODE_CHUNKED, .chunk_size = 64,
                                        .look_back = 1, .window = LSH_WINDOW_SAME_BUCKET,
                                        .combine = LSH_COMBINE_ROUNDS, .n_hashes = 2,
                                        .n_buckets = 6, .repeat = 2, .min_collisions = 1,
                                        .seed = 42 };
    b.row.message = "needs \"B\" a power of two, got 6";
    struct lsh_results *res = open_ok(&tc->cfg, LSH_RESULTS_CREATE);
    append_ok(res, &a.row);
    append_ok(res, &b.row);
    close_ok(res, 1);
}

static char *show_text(const char *p, int csv, int *rc, struct lsh_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    *rc = lsh_results_show(p, csv, out, err);
    fclose(out);
    return text;
}

Test(results, show_csv_prints_known_text)
{
    struct test_config tc;
    write_show_file(&tc);
    struct lsh_error err;
    int rc;
    char *text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    const char *want =
        "point_id,dataset,layer,head,strategy,params,mode,chunk_size,look_back,window,combine,"
        "min_collisions,sink,local,"
        "n_hashes,n_buckets,repeat,seed,status,message,out_rel_err,attn_rel_err,mass_recall,kl,"
        "empty_rows,gram_recovery,topk_recall_1,topk_recall_10,density,mean_candidates,"
        "bucket_max,bucket_entropy,hash_seconds,eval_seconds\n"
        "0,clustered-4k,-1,5,rotation,\"orthogonal=false,factors=[4,4]\",bucket,0,0,n/a,union,"
        "2,4,8,4,16,"
        "0,18446744073709551615,ok,,0.25,2.3849999999999998,0.10000000000000001,0.5,3,0.75,1,"
        "0.875,0.125,512,1.5,0.96875,0.001953125,3\n"
        "7,gaussian-1k,2,-1,hyperplane,,chunked,64,1,same_bucket,rounds,1,0,0,2,6,2,42,skipped,"
        "\"needs \"\"B\"\" a power of two, got 6\",0,0,0,0,0,0,0,0,0,0,0,0,0,0\n";
    cr_assert_str_eq(text, want);
    free(text);
}

Test(results, show_table_is_aligned)
{
    struct test_config tc;
    write_show_file(&tc);
    struct lsh_error err;
    int rc;
    char *text = show_text(path, 0, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_assert(strncmp(text, "point_id  dataset", 17) == 0, "%s", text);
    cr_assert(strstr(text, " 2.385 "), "short numbers: %s", text);
    cr_assert(strstr(text, "\"orthogonal") == NULL, "no CSV quoting here: %s", text);
    /* the last column is numeric, right-aligned: every line equally long */
    size_t lines = 0, first = strcspn(text, "\n");
    for (const char *p = text; *p; p += strcspn(p, "\n") + 1, lines++)
        cr_assert_eq(strcspn(p, "\n"), first, "line %zu: %s", lines, text);
    cr_assert_eq(lines, 3);
    free(text);
}

Test(results, show_refuses_missing_and_foreign_files)
{
    struct lsh_error err;
    int rc;
    char *text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, LSH_ENOTFOUND);
    cr_assert(strstr(err.message, path), "%s", err.message);
    free(text);

    write_bytes(path, "a,b\n1,2\n");
    text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, LSH_EDATA);
    cr_assert(strstr(err.message, "not an HDF5 file"), "%s", err.message);
    free(text);

    remove(path);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    text = show_text(path, 0, &rc, &err);
    cr_assert_eq(rc, LSH_EDATA);
    cr_assert(strstr(err.message, "not an lshlab results file"), "%s", err.message);
    cr_assert_str_eq(text, "");
    free(text);
}

Test(results, show_reads_collision_tables)
{
    struct test_config tc;
    make_config(&tc, 7, LSH_EXPERIMENT_COLLISION);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct lsh_collision_row row = { "rotation", "orthogonal=true", 16, 8, 30.0, 20000,
                                     0.4375, 0.0125, 0.9921875, 0.5, 11, 0.25, 0, 0.0 };
    struct lsh_error err;
    cr_assert_eq(lsh_results_append_collision(res, &row, &err), 0, "%s", err.message);
    close_ok(res, 1);
    int rc;
    char *text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_assert_str_eq(text, "strategy,params,n_buckets,n_hashes,angle,pairs,p_round,p_round_se,"
                           "p_any,p_any_se,has_law,p_law,seed,seconds\n"
                           "rotation,orthogonal=true,16,8,30,20000,0.4375,0.012500000000000001,"
                           "0.9921875,0.5,0,0,"
                           "11,0.25\n");
    free(text);
}

/* ---- what researchers run -------------------------------------------------------- */

Test(results, pandas_reads_runs)
{
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import h5py, pandas' >/dev/null 2>&1") != 0)
        cr_skip_test("/usr/bin/python3 has no h5py/pandas");
    struct test_config tc;
    write_show_file(&tc);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \""
             "import h5py, pandas\n"
             "f = h5py.File('%s', 'r')\n"
             "df = pandas.DataFrame(f['runs'][()])\n"
             "assert len(df) == 2, len(df)\n"
             "assert list(df.columns[:5]) == ['point_id', 'dataset', 'layer', 'head', "
             "'strategy'], df.columns\n"
             "assert df['layer'].dtype == 'int32' and list(df['head']) == [5, -1]\n"
             "assert df['dataset'][0] == b'clustered-4k', df['dataset'][0]\n"
             "assert df['attn_rel_err'][0] == 2.385\n"
             "assert df['topk_recall_10'][0] == 0.875\n"
             "assert df['seed'][0] == 2**64 - 1\n"
             "assert f.attrs['format'] == 'lshlab-results', f.attrs['format']\n"
             "assert f.attrs['format_version'] == 2\n"
             "\"",
             path);
    cr_assert_eq(system(cmd), 0, "h5py/pandas could not read %s", path);
}

/* ---- crash safety -------------------------------------------------------------- */

/* A crash leaves <path>.work behind, possibly torn: it is never trusted;
 * resume starts from the last snapshot, <path>.partial. */
Test(results, a_torn_working_copy_is_ignored_on_resume)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct test_row r[3];
    for (int i = 0; i < 2; i++) {
        make_row(&r[i], (uint64_t)i, LSH_POINT_OK);
        append_ok(res, &r[i].row);
    }
    close_ok(res, 0);
    char work[300];
    snprintf(work, sizeof work, "%s.work", path);
    cr_assert_not(exists(work), "a clean stop leaves no working copy");
    write_bytes(work, "half of an HDF5 superblock, as a kill -9 might leave it");

    res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    cr_assert(lsh_results_has_point(res, 0) && lsh_results_has_point(res, 1));
    make_row(&r[2], 2, LSH_POINT_OK);
    append_ok(res, &r[2].row);
    close_ok(res, 1);
    cr_assert_not(exists(work));
    cr_assert_not(exists(partial));
    size_t n;
    struct run_rec *got = read_runs(path, &n);
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++)
        assert_row_matches(&got[i], &r[i]);
    free(got);
}

/* While a run holds the results, another open of them is refused (its
 * working copy is locked), whatever the mode; the first run is unharmed. */
Test(results, a_second_writer_is_refused)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    const enum lsh_results_mode modes[] = {LSH_RESULTS_FORCE, LSH_RESULTS_RESUME};
    for (int m = 0; m < 2; m++) {
        struct lsh_results *other = NULL;
        struct lsh_error err;
        lsh_error_clear(&err);
        cr_assert_eq(lsh_results_open(path, &tc.cfg, "", modes[m], &other, &err), LSH_EEXIST);
        cr_assert(strstr(err.message, "another lshlab run is writing"), "%s", err.message);
    }
    struct test_row r;
    make_row(&r, 0, LSH_POINT_OK);
    append_ok(res, &r.row);
    close_ok(res, 1);
    size_t n;
    free(read_runs(path, &n));
    cr_assert_eq(n, 1);
}

/* ---- links and special files at the names a run writes -------------------------- */

/* A link at any name lshlab writes (the working copy, the snapshot's
 * temporary, the .partial, the results file) is refused by name, neither
 * followed nor removed: the file it points at keeps its bytes. */
Test(results, links_at_the_names_written_are_refused_and_never_followed)
{
    static const char *const suffixes[] = { ".work", ".partial.tmp", ".partial", "" };
    const char *victim_text = "precious data, not an HDF5 file\n";
    char victim[300], link[320];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        write_bytes(victim, victim_text);
        snprintf(link, sizeof link, "%s%s", path, suffixes[i]);
        cr_assert_eq(symlink(victim, link), 0);
        const enum lsh_results_mode modes[] = { LSH_RESULTS_FORCE, LSH_RESULTS_RESUME };
        for (int m = 0; m < 2; m++) {
            struct lsh_results *res = NULL;
            struct lsh_error err;
            lsh_error_clear(&err);
            int rc = lsh_results_open(path, &tc.cfg, "", modes[m], &res, &err);
            if (rc == 0) {
                struct test_row r;
                make_row(&r, 0, LSH_POINT_OK);
                lsh_results_append(res, &r.row, &err);
                lsh_results_close(res, 1, &err);
            }
            cr_assert_neq(rc, 0, "a link at '%s' was accepted (mode %d)", link, m);
            cr_assert(strstr(err.message, link) && strstr(err.message, "symbolic link"),
                      "%s", err.message);
            assert_file_is(victim, victim_text);
            struct stat st;
            cr_assert_eq(lstat(link, &st), 0, "the link '%s' was removed", link);
            cr_assert(S_ISLNK(st.st_mode));
        }
        unlink(link);
        cr_assert_not(exists(path));
        cr_assert_not(exists(partial));
    }
}

/* `-o /dev/null --force` replaced the device with a regular file: a results
 * name that holds a device or FIFO is refused, and stays what it was. */
Test(results, a_fifo_at_the_results_name_is_refused_and_kept, .timeout = 30)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    cr_assert_eq(mkfifo(path, 0600), 0);
    struct lsh_results *res = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_FORCE, &res, &err);
    if (rc == 0)
        lsh_results_close(res, 1, &err);
    cr_assert_neq(rc, 0, "a FIFO at the results name was accepted");
    cr_assert(strstr(err.message, path) && strstr(err.message, "FIFO"), "%s", err.message);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISFIFO(st.st_mode), "the FIFO was replaced");
    cr_assert_not(exists(partial));
    /* show does not wait for a writer on it either */
    char *text = show_text(path, 0, &rc, &err);
    cr_assert_eq(rc, LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "not a regular file"), "%s", err.message);
    free(text);
}

/* A crash's leftovers that are regular files are replaced, not refused. */
Test(results, regular_leftovers_of_a_crash_are_replaced)
{
    char snapshot[320], work[320];
    snprintf(snapshot, sizeof snapshot, "%s.partial.tmp", path);
    snprintf(work, sizeof work, "%s.work", path);
    write_bytes(snapshot, "torn snapshot");
    write_bytes(work, "torn working copy");
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_complete_file(&tc.cfg, 2);
    size_t n;
    free(read_runs(path, &n));
    cr_assert_eq(n, 2);
    cr_assert_not(exists(snapshot));
    cr_assert_not(exists(work));
}

/* A second run while one writes is told that one is running (with its
 * process id), not that a previous run was interrupted and to resume it. */
Test(results, a_second_run_is_told_another_is_writing_not_to_resume)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    char pid[32];
    snprintf(pid, sizeof pid, "process %ld", (long)getpid());
    const enum lsh_results_mode modes[] = { LSH_RESULTS_CREATE, LSH_RESULTS_FORCE,
                                            LSH_RESULTS_RESUME };
    for (int m = 0; m < 3; m++) {
        struct lsh_results *other = NULL;
        struct lsh_error err;
        lsh_error_clear(&err);
        cr_assert_eq(lsh_results_open(path, &tc.cfg, "", modes[m], &other, &err), LSH_EEXIST);
        cr_assert(strstr(err.message, "another lshlab run is writing"), "%s", err.message);
        cr_assert(strstr(err.message, pid), "no '%s' in: %s", pid, err.message);
        cr_assert_null(strstr(err.message, "--resume"), "%s", err.message);
    }
    close_ok(res, 1);
}

/* ---- resuming a file that does not match the plan ----------------------------- */

/* The plan of these tests: point id has make_row's key. */
static void planned_like_make_row(void *ctx, uint64_t id, void *record)
{
    (void)ctx;
    struct test_row t;
    make_row(&t, id, LSH_POINT_OK);
    ((struct lsh_run_row *)record)->key = t.row.key;
}

/* Overwrite one field of row `row` of /runs in file p with plain HDF5 (which
 * keeps the chunk's checksum right): an edited, not a torn, file. */
static void forge_table_field(const char *p, const char *table, hsize_t row, const char *field,
                              hid_t type, const void *value)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, table, H5P_DEFAULT);
    hid_t mt = H5Tcreate(H5T_COMPOUND, H5Tget_size(type));
    H5Tinsert(mt, field, 0, type);
    hid_t fs = H5Dget_space(d);
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &row, NULL, &one, NULL);
    cr_assert_geq(H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, value), 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Tclose(mt);
    H5Dclose(d);
    H5Fclose(f);
}

static void forge_field(const char *p, hsize_t row, const char *field, hid_t type,
                        const void *value)
{
    forge_table_field(p, "runs", row, field, type, value);
}

/* Open p's results for resume and check them against planned_like_make_row
 * with n_planned points: the code, the message in err. */
static int resume_and_check(const struct lsh_config *cfg, uint64_t n_planned,
                            struct lsh_error *err)
{
    struct lsh_results *res = NULL;
    lsh_error_clear(err);
    int rc = lsh_results_open(path, cfg, "", LSH_RESULTS_RESUME, &res, err);
    if (rc)
        return rc;
    rc = lsh_results_check_resumed(res, planned_like_make_row, NULL, n_planned, err);
    struct lsh_error close_err;
    cr_assert_eq(lsh_results_close(res, 0, &close_err), 0, "%s", close_err.message);
    return rc;
}

static void write_partial_file(const struct lsh_config *cfg, uint64_t n)
{
    struct lsh_results *res = open_ok(cfg, LSH_RESULTS_CREATE);
    for (uint64_t id = 0; id < n; id++) {
        struct test_row r;
        make_row(&r, id, LSH_POINT_OK);
        append_ok(res, &r.row);
    }
    close_ok(res, 0);
}

Test(results, resume_refuses_a_duplicated_point_id)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 3);
    uint64_t one = 1;
    forge_field(partial, 2, "point_id", H5T_NATIVE_UINT64, &one);
    size_t before_len;
    char *before = read_bytes(partial, &before_len);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "point 1") && strstr(err.message, "twice") &&
                  strstr(err.message, partial),
              "%s", err.message);
    size_t after_len;
    char *after = read_bytes(partial, &after_len);
    cr_assert(after_len == before_len && !memcmp(before, after, after_len),
              "a refused resume changed the file");
    free(before);
    free(after);
}

Test(results, resume_refuses_a_point_id_outside_the_plan)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    uint64_t far = 99;
    forge_field(partial, 1, "point_id", H5T_NATIVE_UINT64, &far);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "point 99") && strstr(err.message, "plan (4 points)"), "%s",
              err.message);
}

/* Every key field of a resumed row must be the planned one; a complete file
 * refused on resume is given back under its own name. */
Test(results, resume_refuses_a_row_whose_key_differs_from_the_plan)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_complete_file(&tc.cfg, 2);
    uint32_t eight = 8;
    forge_field(path, 1, "n_buckets", H5T_NATIVE_UINT32, &eight);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "point 1") && strstr(err.message, "n_buckets is 8") &&
                  strstr(err.message, "has 16"),
              "%s", err.message);
    cr_assert(exists(path), "the refused file was not put back");
    cr_assert_not(exists(partial));

    /* a string field too, and the seed */
    forge_field(path, 1, "n_buckets", H5T_NATIVE_UINT32, &(uint32_t){ 16 });
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), 0, "%s", err.message);
    cr_assert(exists(partial), "an unfinished resume leaves a .partial");
    uint64_t seed = 5;
    forge_field(partial, 0, "seed", H5T_NATIVE_UINT64, &seed);
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "point 0") && strstr(err.message, "seed is 5"), "%s",
              err.message);
}

Test(results, resume_refuses_an_ok_row_with_impossible_values)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    const struct {
        const char *field;
        double value;
    } bad[] = { { "mass_recall", 15.8 }, { "kl", -1.43 }, { "out_rel_err", NAN },
                { "topk_recall_10", INFINITY } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double good = i == 0 ? 0.1 : i == 1 ? 0.5 : i == 2 ? 1.25 : 0.874;
        forge_field(partial, 1, bad[i].field, H5T_NATIVE_DOUBLE, &bad[i].value);
        struct lsh_error err;
        cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s: %s", bad[i].field,
                     err.message);
        cr_assert(strstr(err.message, "point 1") && strstr(err.message, bad[i].field), "%s",
                  err.message);
        forge_field(partial, 1, bad[i].field, H5T_NATIVE_DOUBLE, &good);
        cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), 0, "%s", err.message);
    }
}

/* Find the 8 bytes of x in buf (n bytes): the offset, or -1. */
static long find_double(const char *buf, size_t n, double x)
{
    for (size_t i = 0; i + sizeof x <= n; i++)
        if (!memcmp(buf + i, &x, sizeof x))
            return (long)i;
    return -1;
}

/* A flipped byte in a row is caught by the table's checksum, on resume and
 * by show, as a damaged file. */
Test(results, flipped_bytes_in_rows_are_refused_as_damage)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    size_t n;
    char *bytes = read_bytes(partial, &n);
    long at = find_double(bytes, n, 2.385); /* attn_rel_err of row 0 */
    cr_assert_geq(at, 0);
    bytes[at + 3] ^= 0x10;
    FILE *f = fopen(partial, "wb");
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    free(bytes);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "damaged") && strstr(err.message, partial), "%s",
              err.message);
    int rc;
    char *text = show_text(partial, 1, &rc, &err);
    cr_assert_eq(rc, LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "damaged"), "%s", err.message);
    cr_expect_str_eq(text, "", "the CSV of a damaged table printed a part of it");
    free(text);
}

/* ---- resuming with a changed input -------------------------------------------- */

/* Write /datasets/NAME from ds in a new file, stop, then resume with ds2:
 * the code of the resumed write, its message in err. */
static int resume_with_input(struct test_config *tc, const struct lsh_dataset *ds,
                             const struct lsh_dataset *ds2, struct lsh_error *err)
{
    struct lsh_results *res = open_ok(&tc->cfg, LSH_RESULTS_CREATE);
    cr_assert_eq(lsh_results_write_dataset(res, NULL, ds, 0, err), 0, "%s", err->message);
    struct test_row r;
    make_row(&r, 0, LSH_POINT_OK);
    append_ok(res, &r.row);
    close_ok(res, 0);
    res = open_ok(&tc->cfg, LSH_RESULTS_RESUME);
    lsh_error_clear(err);
    int rc = lsh_results_write_dataset(res, NULL, ds2, 0, err);
    struct lsh_error close_err;
    lsh_results_close(res, 0, &close_err);
    remove(partial);
    return rc;
}

/* An hdf5 input edited between the run and --resume (its shape or one
 * value) is refused, naming the dataset and the input file; the same input
 * resumes. */
Test(results, resume_refuses_an_input_that_changed)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    tc.datasets[0] = (struct lsh_dataset_spec){ .name = "attn", .kind = LSH_DATA_HDF5,
                                                .file = "data/attn.h5", .q = "/q" };
    double q[6] = { 2.385, -1.25, 0.5, 3.0, -0.125, 7.75 }, q2[6];
    double v[3] = { 0.1, 0.2, 0.3 };
    memcpy(q2, q, sizeof q);
    struct lsh_dataset ds = { .spec = &tc.datasets[0], .unit = { -1, -1 }, .n = 3, .d = 2,
                              .d_v = 1, .q = q, .v = v };
    struct lsh_dataset same = ds, edited = ds, reshaped = ds;
    same.q = q2;
    struct lsh_error err;
    cr_assert_eq(resume_with_input(&tc, &ds, &same, &err), 0, "%s", err.message);

    double q3[6];
    memcpy(q3, q, sizeof q);
    q3[4] = nextafter(q3[4], 0); /* one ulp */
    edited.q = q3;
    cr_assert_eq(resume_with_input(&tc, &ds, &edited, &err), LSH_EDATA);
    cr_assert(strstr(err.message, "'attn'") && strstr(err.message, "data/attn.h5") &&
                  strstr(err.message, "contents differ") && strstr(err.message, "--force"),
              "%s", err.message);

    reshaped.n = 2; /* the same numbers read as 2 x 3 */
    reshaped.d = 3;
    cr_assert_eq(resume_with_input(&tc, &ds, &reshaped, &err), LSH_EDATA);
    cr_assert(strstr(err.message, "n was 3, it is 2 now"), "%s", err.message);

    double v2[3] = { 0.1, 0.2, 0.30000000000000004 };
    struct lsh_dataset other_v = ds;
    other_v.v = v2;
    cr_assert_eq(resume_with_input(&tc, &ds, &other_v, &err), LSH_EDATA);
}

/* ---- show of hostile files ------------------------------------------------------ */

/* Text from the file reaches the terminal escaped: an escape sequence or a
 * byte that is not UTF-8 is printed as \xHH, in the table and in CSV alike;
 * valid UTF-8 is kept. */
Test(results, show_escapes_control_characters_and_invalid_utf8)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    struct test_row r;
    make_row(&r, 3, LSH_POINT_FAILED);
    r.row.message = "\x1b[31mred\x1b[0m caf\xc3\xa9 \xff\xc2\x9b end\n";
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    append_ok(res, &r.row);
    close_ok(res, 1);
    for (int csv = 0; csv < 2; csv++) {
        struct lsh_error err;
        int rc;
        char *text = show_text(path, csv, &rc, &err);
        cr_assert_eq(rc, 0, "%s", err.message);
        cr_assert(strstr(text, "\\x1b[31mred\\x1b[0m caf\xc3\xa9 \\xff\\xc2\\x9b end\\x0a"),
                  "csv=%d: %s", csv, text);
        for (const char *p = text; *p; p++)
            cr_assert(*p == '\n' || (unsigned char)*p >= 0x20, "csv=%d: a raw control byte",
                      csv);
        cr_assert_null(strstr(text, "\xff"));
        cr_assert_null(strstr(text, "\xc2\x9b"));
        free(text);
    }
}

/* Grow /runs of p to `rows` rows without writing them (what a forged or
 * damaged extent looks like: HDF5 reads fill values for them). */
static void forge_extent(const char *p, hsize_t rows)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    cr_assert_geq(H5Dset_extent(d, &rows), 0);
    H5Dclose(d);
    H5Fclose(f);
}

/* A file declaring 10^9 rows that it does not hold is refused at once as
 * damaged, by show and by resume, rather than read for minutes. */
Test(results, a_table_declaring_rows_it_does_not_store_is_refused_at_once, .timeout = 30)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    struct lsh_error err;
    int rc;
    /* a table with all its rows stored shows (first: HDF5 itself takes
     * seconds to shrink an extent of 10^9 rows back) */
    forge_extent(partial, 2);
    char *text = show_text(partial, 1, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    free(text);
    forge_extent(partial, 1000000000);
    text = show_text(partial, 0, &rc, &err);
    cr_assert_eq(rc, LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "damaged") && strstr(err.message, "1000000000 rows") &&
                  strstr(err.message, partial),
              "%s", err.message);
    free(text);
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "1000000000 rows"), "%s", err.message);
}

/* /collision rows are checked against the plan too: their key, and
 * probabilities in [0, 1]. */
static const struct lsh_collision_row planned_collision[2] = {
    { "rotation", "orthogonal=false", 16, 1, 30.0, 100, 0.4375, 0.0123, 0.4375, 0.0123, 11,
      0.25, 0, 0.0 },
    { "rotation", "orthogonal=false", 16, 2, 30.0, 100, 0.1875, 0.002, 0.625, 0.0035, 11,
      0.125, 0, 0.0 },
};

static void planned_collision_row(void *ctx, uint64_t i, void *record)
{
    (void)ctx;
    *(struct lsh_collision_row *)record = planned_collision[i];
}

static int resume_collision_and_check(const struct lsh_config *cfg, struct lsh_error *err)
{
    struct lsh_results *res = NULL;
    lsh_error_clear(err);
    int rc = lsh_results_open(path, cfg, "", LSH_RESULTS_RESUME, &res, err);
    if (!rc)
        rc = lsh_results_check_resumed(res, planned_collision_row, NULL, 2, err);
    lsh_results_close(res, 0, NULL);
    return rc;
}

Test(results, resumed_collision_rows_are_checked_against_the_plan)
{
    struct test_config tc;
    make_config(&tc, 7, LSH_EXPERIMENT_COLLISION);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct lsh_error err;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(lsh_results_append_collision(res, &planned_collision[i], &err), 0, "%s",
                     err.message);
    close_ok(res, 0);
    cr_assert_eq(resume_collision_and_check(&tc.cfg, &err), 0, "%s", err.message);

    double p = 1.5;
    forge_table_field(partial, "collision", 1, "p_any", H5T_NATIVE_DOUBLE, &p);
    cr_assert_eq(resume_collision_and_check(&tc.cfg, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "row 1 of /collision") && strstr(err.message, "p_any"), "%s",
              err.message);
    p = 0.625;
    forge_table_field(partial, "collision", 1, "p_any", H5T_NATIVE_DOUBLE, &p);
    double angle = 90;
    forge_table_field(partial, "collision", 0, "angle", H5T_NATIVE_DOUBLE, &angle);
    cr_assert_eq(resume_collision_and_check(&tc.cfg, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "row 0 of /collision") && strstr(err.message, "angle is 90"),
              "%s", err.message);
}

/* Found by the hostile pass: /runs rewritten with the same column names but kl
 * stored as float32 was resumed, and HDF5 rounded its cells to float on the
 * way (the file no longer ended bit-identical to an uninterrupted run). */
Test(results, resume_refuses_a_runs_table_whose_column_types_differ)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);

    hid_t f = H5Fopen(partial, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    int n = H5Tget_nmembers(ft);
    size_t size = 0;
    for (int i = 0; i < n; i++) {
        char *name = H5Tget_member_name(ft, (unsigned)i);
        size += strcmp(name, "kl") ? H5Tget_size(H5Tget_member_type(ft, (unsigned)i)) : 4;
        H5free_memory(name);
    }
    hid_t nt = H5Tcreate(H5T_COMPOUND, size);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        char *name = H5Tget_member_name(ft, (unsigned)i);
        hid_t mt = strcmp(name, "kl") ? H5Tget_member_type(ft, (unsigned)i)
                                      : H5Tcopy(H5T_IEEE_F32LE);
        H5Tinsert(nt, name, at, mt);
        at += H5Tget_size(mt);
        H5Tclose(mt);
        H5free_memory(name);
    }
    char buf[2][4096];
    cr_assert_leq(size, sizeof buf[0]);
    cr_assert_geq(H5Dread(d, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Dclose(d);
    H5Ldelete(f, "runs", H5P_DEFAULT);
    hsize_t dims = 2, maxd = H5S_UNLIMITED, chunk = 16;
    hid_t sp = H5Screate_simple(1, &dims, &maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    d = H5Dcreate2(f, "runs", nt, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert_geq(d, 0);
    cr_assert_geq(H5Dwrite(d, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(nt);
    H5Tclose(ft);
    H5Fclose(f);

    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_ECONFIG, "%s", err.message);
    cr_assert(strstr(err.message, "columns are not the ones") && strstr(err.message, "'kl'"),
              "%s", err.message);
}

/* Found by the hostile pass: an ok row's message (always empty when written)
 * replaced by escape sequences was resumed and kept. */
Test(results, resume_refuses_an_ok_row_with_a_message)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, LSH_RUNS_MESSAGE_LEN);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    char msg[LSH_RUNS_MESSAGE_LEN] = "\x1b[2Jplanted";
    forge_field(partial, 1, "message", st, msg);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "point 1") && strstr(err.message, "message"), "%s",
              err.message);
    memset(msg, 0, sizeof msg);
    forge_field(partial, 1, "message", st, msg);
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), 0, "%s", err.message);
    H5Tclose(st);
}

/* Found by the hostile pass: a row whose status cell is neither ok, skipped nor
 * failed was dropped and its point silently run again; it is damage. */
Test(results, resume_refuses_a_status_that_is_not_a_status)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    write_partial_file(&tc.cfg, 2);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, LSH_RUNS_WORD_LEN);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    char status[LSH_RUNS_WORD_LEN] = "bogus";
    forge_field(partial, 1, "status", st, status);
    H5Tclose(st);
    struct lsh_error err;
    cr_assert_eq(resume_and_check(&tc.cfg, 4, &err), LSH_EDATA, "%s", err.message);
    cr_assert(strstr(err.message, "row 1") && strstr(err.message, "'bogus'"), "%s",
              err.message);
}

/* ---- format version 2 files written before the candidate rules (SPEC 13) ---------------- */

/* Rewrite p as lshlab wrote it before min_collisions, sink, local and the
 * oracle: /runs without the three columns, the resolved config without
 * their default lines (done by hand here, line by line). */
static void make_file_before_rules(const char *p)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    hid_t ft = H5Dget_type(d), fs = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(fs, &n, NULL);
    /* the old row type: every member but the three, packed */
    size_t size = 0;
    const int members = H5Tget_nmembers(ft);
    for (int i = 0; i < members; i++) {
        char *name = H5Tget_member_name(ft, (unsigned)i);
        hid_t mt = H5Tget_member_type(ft, (unsigned)i);
        if (strcmp(name, "min_collisions") && strcmp(name, "sink") && strcmp(name, "local"))
            size += H5Tget_size(mt);
        H5Tclose(mt);
        H5free_memory(name);
    }
    hid_t old = H5Tcreate(H5T_COMPOUND, size);
    size_t off = 0;
    for (int i = 0; i < members; i++) {
        char *name = H5Tget_member_name(ft, (unsigned)i);
        hid_t mt = H5Tget_member_type(ft, (unsigned)i);
        if (strcmp(name, "min_collisions") && strcmp(name, "sink") && strcmp(name, "local")) {
            cr_assert_geq(H5Tinsert(old, name, off, mt), 0);
            off += H5Tget_size(mt);
        }
        H5Tclose(mt);
        H5free_memory(name);
    }
    cr_assert_eq(H5Tget_nmembers(old), members - 3);
    unsigned char *rows = malloc(n * size + 1);
    cr_assert_geq(H5Dread(d, old, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    hid_t dcpl = H5Dget_create_plist(d);
    H5Dclose(d);
    cr_assert_geq(H5Ldelete(f, "runs", H5P_DEFAULT), 0);
    hsize_t max = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &n, &max);
    d = H5Dcreate2(f, "runs", old, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert_geq(d, 0);
    cr_assert_geq(H5Dwrite(d, old, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
    free(rows);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Tclose(old);
    H5Sclose(fs);
    H5Tclose(ft);
    H5Fclose(f);

    char *yaml = root_attr(p, "resolved_config");
    cr_assert_not_null(yaml);
    static const char *const gone[] = {"  oracle: false\n", "  min_collisions: [1]\n",
                                       "  sink: [0]\n", "  local: [0]\n"};
    for (size_t i = 0; i < 4; i++) {
        char *at = strstr(yaml, gone[i]);
        cr_assert_not_null(at, "'%s' not in the resolved config:\n%s", gone[i], yaml);
        memmove(at, at + strlen(gone[i]), strlen(at + strlen(gone[i])) + 1);
    }
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Adelete(f, "resolved_config"), 0);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t sc = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "resolved_config", st, sc, H5P_DEFAULT, H5P_DEFAULT);
    const char *text = yaml;
    cr_assert_geq(H5Awrite(a, st, &text), 0);
    H5Aclose(a);
    H5Sclose(sc);
    H5Tclose(st);
    H5Fclose(f);
    free(yaml);
}

static uint32_t rule_one[1] = {1}, rule_zero[1] = {0};

static void default_rules(struct test_config *tc)
{
    struct lsh_sweep *s = &tc->cfg.sweep;
    s->n_min_collisions = s->n_sink = s->n_local = 1;
    s->min_collisions = rule_one;
    s->sink = s->local = rule_zero;
}

static void make_row_union(struct test_row *r, uint64_t id)
{
    make_row(r, id, LSH_POINT_OK);
    r->row.key.min_collisions = 1;
    r->row.key.sink = r->row.key.local = 0;
}

static void planned_union(void *ctx, uint64_t id, void *record)
{
    (void)ctx;
    struct test_row t;
    make_row_union(&t, id);
    ((struct lsh_run_row *)record)->key = t.row.key;
}

Test(results, a_file_written_before_the_rules_resumes_and_shows_them_as_1_0_0)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    default_rules(&tc);
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct test_row r[4];
    for (uint64_t id = 0; id < 3; id++) {
        make_row_union(&r[id], id);
        append_ok(res, &r[id].row);
    }
    close_ok(res, 0);
    make_file_before_rules(partial);

    res = open_ok(&tc.cfg, LSH_RESULTS_RESUME);
    struct lsh_error err;
    cr_assert_eq(lsh_results_check_resumed(res, planned_union, NULL, 4, &err), 0, "%s",
                 err.message);
    cr_assert(lsh_results_has_point(res, 2));
    make_row_union(&r[3], 3);
    append_ok(res, &r[3].row);
    close_ok(res, 1);

    /* the file keeps its columns: none for the rules */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "runs", H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    cr_expect_lt(H5Tget_member_index(ft, "min_collisions"), 0);
    cr_expect_eq(H5Tget_nmembers(ft), (int)N_RUN_COLS - 3);
    hid_t fs = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(fs, &n, NULL);
    cr_expect_eq(n, 4);
    H5Sclose(fs);
    H5Tclose(ft);
    H5Dclose(d);
    H5Fclose(f);

    /* show gives the rule of those points: 1, 0, 0 after combine */
    int rc;
    char *text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_expect(strstr(text, "window,combine,min_collisions,sink,local,n_hashes,"), "%s", text);
    cr_expect(strstr(text, "\n3,clustered-4k,-1,8,rotation,\"orthogonal=false,factors=[4,4]\","
                           "bucket,0,0,n/a,union,1,0,0,4,16,0,"), "%s", text);
    free(text);
}

Test(results, a_file_written_before_the_rules_is_not_resumed_with_other_rules)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    default_rules(&tc);
    write_partial_file(&tc.cfg, 2);
    make_file_before_rules(partial);
    static uint32_t two[1] = {2};
    tc.cfg.sweep.min_collisions = two;
    struct lsh_error err;
    struct lsh_results *res = NULL;
    cr_assert_eq(lsh_results_open(path, &tc.cfg, "", LSH_RESULTS_RESUME, &res, &err),
                 LSH_ECONFIG);
    cr_expect(strstr(err.message, "different configuration"), "%s", err.message);
    cr_expect(strstr(err.message, "min_collisions"), "%s", err.message);
}

Test(results, oracle_columns_only_with_the_oracle)
{
    struct test_config tc;
    make_config(&tc, 2385, LSH_EXPERIMENT_SWEEP);
    tc.cfg.attention.oracle = 1;
    tc.datasets[0].reference_rows = 100; /* with their _se columns */
    struct lsh_results *res = open_ok(&tc.cfg, LSH_RESULTS_CREATE);
    struct test_row r;
    make_row(&r, 0, LSH_POINT_OK);
    struct lsh_metric_se se = {.oracle_mass_recall = 0.03125, .oracle_out_rel_err = 0.0625};
    double se_topk[2] = {0, 0};
    se.topk_recall = se_topk;
    r.row.metrics.se = &se;
    r.row.metrics.oracle_mass_recall = 0.75;
    r.row.metrics.oracle_out_rel_err = 0.375;
    r.row.metrics.oracle_seconds = 0.5;
    append_ok(res, &r.row);
    close_ok(res, 1);
    struct lsh_error err;
    int rc;
    char *text = show_text(path, 1, &rc, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_expect(strstr(text, "bucket_entropy,bucket_entropy_se,oracle_mass_recall,"
                           "oracle_mass_recall_se,oracle_out_rel_err,oracle_out_rel_err_se,"
                           "hash_seconds,eval_seconds,oracle_seconds\n"), "%s", text);
    cr_expect(strstr(text, ",0.96875,0,0.75,0.03125,0.375,0.0625,0.001953125,3,0.5\n"), "%s",
              text);
    free(text);
}
