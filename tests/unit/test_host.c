/* test_host.c - the plugin host: every plugin fault stays a clear error of its
 * point (codes, messages without a NUL, rows written through a const pointer,
 * buckets out of range, bad export names, a state_size near SIZE_MAX), the
 * rows a plugin gets are copies in batches with the buckets of one call, and
 * the sweep and collision check their thread pool. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collision.h"
#include "config.h"
#include "host.h"
#include "parallel.h"
#include "plan.h"
#include "registry.h"
#include "results.h"
#include "rng.h"
#include "sweep.h"

static struct lsh_registry *reg;
static char dir[64];

static void load_test_plugin(const char *name)
{
    const char *pdir = getenv("LSHLAB_TEST_PLUGIN_DIR");
    cr_assert_not_null(pdir, "LSHLAB_TEST_PLUGIN_DIR is not set (run through meson test)");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", pdir, name);
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_registry_load_file(reg, path, &err), 0, "%s", err.message);
}

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
    const char *names[] = {"fit_in_place", "no_nul_message", "bad_export"};
    for (size_t i = 0; i < 3; i++)
        load_test_plugin(names[i]);
    snprintf(dir, sizeof dir, "/tmp/lshlab-test-host-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    lsh_registry_free(reg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(host, .init = setup, .fini = teardown, .timeout = 120);

/* The longest run of c in s. */
static size_t longest_run(const char *s, char c)
{
    size_t best = 0, cur = 0;
    for (; *s; s++) {
        cur = *s == c ? cur + 1 : 0;
        best = cur > best ? cur : best;
    }
    return best;
}

/* ---- strategies defined here, each with one fault ---------------------------- */

static int t_init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int t_init_edata(void *state, const struct lsh_round *round,
                        struct lsh_strategy_error *err)
{
    (void)state, (void)round;
    snprintf(err->message, sizeof err->message, "only %d distinct rows", 2);
    return LSH_STRATEGY_EDATA;
}

static int t_fit_silent(void *state, const double *x, size_t n, size_t d,
                        struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)n, (void)d, (void)err;
    return LSH_STRATEGY_EDATA;
}

static int t_hash_zero(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                       struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    memset(bucket, 0, n * sizeof *bucket);
    return 0;
}

static int t_hash_past_end(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                           struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    for (size_t i = 0; i < n; i++)
        bucket[i] = i == 3 ? 8 : 1;
    return 0;
}

static int t_hash_even_rows_only(void *state, const double *x, size_t n, size_t d,
                                 uint32_t *bucket, struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    for (size_t i = 0; i < n; i += 2)
        bucket[i] = 1;
    return 0;
}

/* hash() that records what it was handed, then scribbles on it. */
static const double *caller_rows;
static size_t caller_bytes, max_batch, calls;
static int t_hash_scribble(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                           struct lsh_strategy_error *err)
{
    (void)state, (void)err;
    const char *p = (const char *)x, *lo = (const char *)caller_rows;
    cr_expect(p + n * d * sizeof *x <= lo || p >= lo + caller_bytes,
              "hash() was handed the caller's rows");
    max_batch = n > max_batch ? n : max_batch;
    calls++;
    for (size_t i = 0; i < n; i++) {
        bucket[i] = x[i * d] > 0;
        ((double *)x)[i * d] = -1e300; /* the fault: writing through const */
    }
    return 0;
}

static void t_fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy base = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR, .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "probe", .summary = "test", .init = t_init, .hash = t_hash_zero, .fini = t_fini,
};

static struct lsh_host_point point_of(const struct lsh_strategy *s, uint32_t n_buckets, size_t d,
                                      size_t n_rows)
{
    return (struct lsh_host_point){.strategy = s, .params = "", .n_buckets = n_buckets, .d = d,
                                   .n_rows = n_rows};
}

/* ---- codes and messages -------------------------------------------------------- */

Test(host, every_plugin_code_becomes_eplugin_naming_strategy_round_and_callback)
{
    struct lsh_strategy s = base;
    s.init = t_init_edata;
    struct lsh_host_point pt = point_of(&s, 4, 2, 10);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    /* LSH_STRATEGY_EDATA is -3, LSH_ECONFIG too: it must not come through */
    cr_assert_eq(lsh_host_round_open(&pt, 7, 2385, &r, &err), LSH_EPLUGIN);
    cr_expect_null(r);
    cr_expect_str_eq(err.message, "probe / round 7 / init: only 2 distinct rows");

    s = base;
    s.fit = t_fit_silent;
    double x[4] = {2.385, -0.71, 0.5, 1.25};
    uint32_t b[2];
    struct lsh_host_rows rows = {x, 2, b};
    cr_assert_eq(lsh_host_round_open(&pt, 0, 1, &r, &err), 0, "%s", err.message);
    cr_expect_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "probe / round 0 / fit: returned -3 (the data cannot be "
                                  "hashed) without a message");
    lsh_host_round_close(r);
}

Test(host, a_message_without_a_nul_is_read_to_255_bytes)
{
    const struct lsh_strategy *s = lsh_registry_find(reg, "no_nul_message");
    cr_assert_not_null(s);
    char why[1024];
    struct lsh_host_point pt = point_of(s, 3, 4, 10);
    cr_assert_eq(lsh_host_check(&pt, "on dataset 'g' (n = 10, d = 4)", why, sizeof why),
                 LSH_EPLUGIN);
    cr_expect_eq(longest_run(why, 'x'), LSH_STRATEGY_MSG_MAX - 1, "%s", why);
    cr_expect(strstr(why, "no_nul_message cannot run n_buckets 3 on dataset 'g'"), "%s", why);

    pt.n_buckets = 4;
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_host_round_open(&pt, 1, 5, &r, &err), 0, "%s", err.message);
    double x[8] = {0};
    uint32_t b[2];
    struct lsh_host_rows rows = {x, 2, b};
    cr_expect_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), LSH_EPLUGIN);
    cr_expect_eq(longest_run(err.message, 'y'), LSH_STRATEGY_MSG_MAX - 1, "%s", err.message);
    cr_expect_eq(strncmp(err.message, "no_nul_message / round 1 / hash: yyy", 36), 0, "%s",
                 err.message);
    lsh_host_round_close(r);
}

Test(host, a_bucket_out_of_range_fails_the_round_naming_row_and_value)
{
    struct lsh_strategy s = base;
    s.hash = t_hash_past_end;
    struct lsh_host_point pt = point_of(&s, 8, 1, 5);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_host_round_open(&pt, 2, 9, &r, &err), 0, "%s", err.message);
    double x[5] = {1, 2, 3, 4, 5};
    uint32_t b[5];
    struct lsh_host_rows rows = {x, 5, b};
    cr_expect_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "probe / round 2 / hash: probe returned bucket 8 for row 3; "
                                  "n_buckets is 8");
    lsh_host_round_close(r);
}

Test(host, a_bucket_hash_leaves_unwritten_fails_the_round_whatever_the_memory_held)
{
    struct lsh_strategy s = base;
    s.hash = t_hash_even_rows_only;
    struct lsh_host_point pt = point_of(&s, 8, 1, 5);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    double x[5] = {1, 2, 3, 4, 5};
    uint32_t b[5];
    /* twice, with the heap churned between: the verdict must not depend on
     * what the host's batch buffer held before */
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lsh_host_round_open(&pt, 2, 9, &r, &err), 0, "%s", err.message);
        struct lsh_host_rows rows = {x, 5, b};
        cr_expect_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), LSH_EPLUGIN);
        cr_expect_str_eq(err.message, "probe / round 2 / hash: probe left the bucket of row 1 "
                                      "unwritten (or wrote 4294967295); n_buckets is 8");
        lsh_host_round_close(r);
        void *churn = calloc(1, 4096);
        free(churn);
    }
}

Test(host, a_state_size_near_size_max_is_refused_not_allocated)
{
    struct lsh_strategy s = base;
    s.state_size = SIZE_MAX - 8;
    struct lsh_host_point pt = point_of(&s, 4, 2, 10);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    cr_expect_eq(lsh_host_round_open(&pt, 0, 1, &r, &err), LSH_EPLUGIN);
    cr_expect(strstr(err.message, "probe / round 0 / init: state_size is 18446744073709551607 "
                                  "bytes; allowed: at most 1073741824"), "%s", err.message);
    s.state_size = LSH_HOST_STATE_MAX + 1;
    cr_expect_eq(lsh_host_round_open(&pt, 0, 1, &r, &err), LSH_EPLUGIN);
    struct lsh_host_memory mem;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 10, .d = 2, .n_buckets = 4}, &mem);
    cr_expect_eq(mem.kept, SIZE_MAX, "a refused state counts as unaffordable");
}

Test(host, round_memory_counts_state_fit_copy_and_hash_batch)
{
    struct lsh_strategy s = base;
    s.state_size = 100; /* rounded to 128 */
    struct lsh_host_memory mem;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 5000, .d = 3, .n_buckets = 4}, &mem);
    cr_expect_geq(mem.kept, 128);
    cr_expect_lt(mem.kept, 128 + 1024);
    cr_expect_eq(mem.transient, 1024 * (3 * 8 + 4),
                 "no fit: one batch of 1024 rows of 3 doubles, and their buckets");
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 7, .d = 3, .n_buckets = 4}, &mem);
    cr_expect_eq(mem.transient, 7 * (3 * 8 + 4), "fewer rows than a batch");
    s.fit = t_fit_silent;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 5000, .d = 3, .n_buckets = 4}, &mem);
    cr_expect_eq(mem.transient, 5000 * 3 * 8, "fit: a copy of all its rows");
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = SIZE_MAX / 2, .d = 3, .n_buckets = 4}, &mem);
    cr_expect_eq(mem.transient, SIZE_MAX, "saturates");
}

/* ---- rows ------------------------------------------------------------------------ */

Test(host, hash_gets_copies_in_batches_and_the_caller_rows_stay_unchanged)
{
    struct lsh_strategy s = base;
    s.hash = t_hash_scribble;
    const size_t n = 2500, d = 3; /* three batches: 1024, 1024, 452 */
    double *x = malloc(n * d * sizeof *x), *keep = malloc(n * d * sizeof *x);
    uint32_t *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n * d; i++)
        x[i] = keep[i] = (double)((i * 7919) % 13) - 6.0 + 0.385;
    caller_rows = x;
    caller_bytes = n * d * sizeof *x;
    struct lsh_host_point pt = point_of(&s, 2, d, n);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_host_round_open(&pt, 0, 1, &r, &err), 0, "%s", err.message);
    struct lsh_host_rows rows = {x, n, b};
    cr_assert_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), 0, "%s", err.message);
    lsh_host_round_close(r);
    cr_expect_eq(memcmp(x, keep, n * d * sizeof *x), 0, "hash() changed the caller's rows");
    cr_expect_eq(calls, 3);
    cr_expect_eq(max_batch, LSH_HOST_BATCH_ROWS);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(b[i], (uint32_t)(keep[i * d] > 0), "row %zu", i);
    free(x);
    free(keep);
    free(b);
}

Test(host, builtin_buckets_through_the_host_equal_one_direct_hash_call)
{
    /* the host batches rows by 1024, as rotation does internally: the same
     * GEMMs, so the same bits as handing hash() every row at once */
    const char *names[] = {"rotation", "hyperplane", "kmeans"};
    const size_t n = 2600, d = 5;
    double *x = malloc(n * d * sizeof *x);
    uint32_t *via_host = malloc(n * sizeof *via_host), *direct = malloc(n * sizeof *direct);
    struct lsh_rng *rng = lsh_rng_alloc(2385);
    for (size_t i = 0; i < n * d; i++)
        x[i] = lsh_rng_normal(rng);
    lsh_rng_free(rng);
    for (size_t k = 0; k < 3; k++) {
        const struct lsh_strategy *s = lsh_registry_find(reg, names[k]);
        cr_assert_not_null(s);
        struct lsh_host_point pt = point_of(s, 16, d, n);
        const uint64_t seed = 0x2385;
        struct lsh_host_round *r = NULL;
        struct lsh_error err;
        cr_assert_eq(lsh_host_round_open(&pt, 3, seed, &r, &err), 0, "%s", err.message);
        struct lsh_host_rows rows = {x, n, via_host};
        cr_assert_eq(lsh_host_round_bucket(r, &rows, NULL, 0, &err), 0, "%s", err.message);
        lsh_host_round_close(r);

        /* the plugin by hand, as the host did before: init, fit, one hash call */
        void *state = aligned_alloc(64, (s->state_size + 63) / 64 * 64);
        memset(state, 0, s->state_size);
        struct lsh_rng *rr = lsh_rng_alloc(seed);
        struct lsh_round round = {.d = d, .n_buckets = 16, .round = 3, .seed = seed,
                                  .n_rows = n, .rng = rr, .host = lsh_host_services()};
        struct lsh_strategy_error serr = {{0}};
        cr_assert_eq(s->init(state, &round, &serr), 0, "%s", serr.message);
        if (s->fit)
            cr_assert_eq(s->fit(state, x, n, d, &serr), 0, "%s", serr.message);
        cr_assert_eq(s->hash(state, x, n, d, direct, &serr), 0, "%s", serr.message);
        s->fini(state);
        free(state);
        lsh_rng_free(rr);
        cr_expect_eq(memcmp(via_host, direct, n * sizeof *direct), 0, "%s: buckets differ",
                     names[k]);
    }
    free(x);
    free(via_host);
    free(direct);
}

/* ---- export_params ---------------------------------------------------------------- */

static const char *export_name;
static int export_code;
static int t_export(void *state, struct lsh_sink *sink)
{
    (void)state;
    static const double v[3] = {2.385, -0.5, 7};
    int rc = sink->array(sink, export_name, v, 1, 3);
    return export_code ? export_code : rc;
}

struct got {
    char name[80];
    double v[3];
    int calls, fail_with;
};

static int collect(void *ctx, const char *name, const double *data, size_t rows, size_t cols,
                   struct lsh_error *err)
{
    struct got *g = ctx;
    g->calls++;
    if (g->fail_with)
        return lsh_error_set(err, g->fail_with, "disk full writing %s", name);
    snprintf(g->name, sizeof g->name, "%s", name);
    cr_assert_eq(rows * cols, 3);
    memcpy(g->v, data, sizeof g->v);
    return 0;
}

static int export_with(const char *name, int code, struct got *g, struct lsh_error *err)
{
    struct lsh_strategy s = base;
    s.export_params = t_export;
    export_name = name;
    export_code = code;
    struct lsh_host_point pt = point_of(&s, 4, 3, 1);
    struct lsh_host_round *r = NULL;
    cr_assert_eq(lsh_host_round_open(&pt, 5, 1, &r, err), 0, "%s", err->message);
    lsh_error_clear(err);
    int rc = lsh_host_round_export(r, collect, g, err);
    lsh_host_round_close(r);
    return rc;
}

Test(host, export_names_must_be_plain_words_and_sink_errors_pass_through)
{
    struct got g = {0};
    struct lsh_error err;
    cr_expect_eq(export_with("centroids.v-2_X", 0, &g, &err), 0, "%s", err.message);
    cr_expect_str_eq(g.name, "centroids.v-2_X");
    cr_expect_eq(g.v[0], 2.385);

    const char *bad[] = {"a/b", "", "x y", "..\x1b[2J",
                         "a_name_of_sixty_five_characters_is_one_more_than_the_limit_of_64x"};
    for (size_t i = 0; i < 5; i++) {
        memset(&g, 0, sizeof g);
        cr_expect_eq(export_with(bad[i], 0, &g, &err), LSH_EPLUGIN, "'%s'", bad[i]);
        cr_expect_eq(g.calls, 0, "'%s' reached the sink", bad[i]);
        cr_expect(strstr(err.message, "probe / round 5 / export_params: array name '"), "%s",
                  err.message);
        cr_expect(strstr(err.message, "allowed: 1 to 64 characters of A-Za-z0-9_.-"), "%s",
                  err.message);
        cr_expect_null(strchr(err.message, '\x1b'), "a control byte is printed raw");
    }
    memset(&g, 0, sizeof g);
    cr_expect_eq(export_with("ok", LSH_STRATEGY_EDATA, &g, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "probe / round 5 / export_params: returned -3 (the data "
                                  "cannot be hashed) without a message");
    memset(&g, 0, sizeof g);
    g.fail_with = LSH_EIO;
    cr_expect_eq(export_with("ok", 0, &g, &err), LSH_EIO, "the sink's own error is the host's");
    cr_expect_str_eq(err.message, "disk full writing ok");
}

/* ---- through the sweep --------------------------------------------------------------- */

struct seen {
    size_t n;
    struct {
        char strategy[64], message[1024];
        enum lsh_point_status status;
        struct lsh_metrics m;
        double topk[4];
    } row[64];
};

static void keep_rows(void *ctx, const struct lsh_progress *p)
{
    struct seen *s = ctx;
    if (!p->row)
        return;
    cr_assert_lt(s->n, 64);
    snprintf(s->row[s->n].strategy, 64, "%s", p->row->key.strategy);
    snprintf(s->row[s->n].message, 1024, "%s", p->row->message);
    s->row[s->n].status = p->row->status;
    s->row[s->n].m = p->row->metrics;
    for (size_t k = 0; k < 2; k++)
        s->row[s->n].topk[k] = p->row->metrics.topk_recall[k];
    s->row[s->n].m.topk_recall = NULL;
    s->row[s->n].m.se = NULL;
    s->n++;
}

static int sweep(const char *yaml, const char *name, unsigned threads, struct seen *seen,
                 struct lsh_run_summary *sum, struct lsh_error *err)
{
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    lsh_error_clear(err);
    cr_assert_eq(lsh_config_parse(yaml, strlen(yaml), "h.yaml", reg, &cfg, err), 0, "%s",
                 err->message);
    cr_assert_eq(lsh_plan_build(cfg, &plan, err), 0, "%s", err->message);
    char path[128];
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    struct lsh_run_opts opts = {
        .threads = threads, .memory_limit = (size_t)1 << 32, .output = path,
        .cmdline = "test", .progress = keep_rows, .progress_ctx = seen,
    };
    int rc = lsh_sweep_run(cfg, plan, &opts, sum, err);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    return rc;
}

#define SWEEP_YAML(strategies, dump)                        \
    "name: h\n"                                             \
    "seed: 11\n"                                            \
    "datasets:\n"                                           \
    "  - {name: g, kind: clustered, n: 120, d: 6, d_v: 3, clusters: 4, norm: 2.385}\n" \
    "attention: {topk: [1, 4]}\n"                           \
    "strategies: " strategies "\n"                          \
    "sweep: {n_hashes: [1, 3], n_buckets: [4]}\n" dump

Test(host, a_fit_writing_its_rows_does_not_change_what_later_strategies_see)
{
    struct seen *alone = calloc(1, sizeof *alone), *after = calloc(1, sizeof *after);
    struct lsh_run_summary sum;
    struct lsh_error err;
    cr_assert_eq(sweep(SWEEP_YAML("[{name: rotation}]", ""), "alone", 2, alone, &sum, &err), 0,
                 "%s", err.message);
    cr_assert_eq(sweep(SWEEP_YAML("[{name: fit_in_place}, {name: rotation}]", ""), "after", 2,
                       after, &sum, &err), 0, "%s", err.message);
    cr_assert_eq(alone->n, 2);
    cr_assert_eq(after->n, 4);
    for (size_t i = 0; i < 2; i++) {
        const struct lsh_metrics *a = &alone->row[i].m, *b = &after->row[2 + i].m;
        cr_assert_str_eq(after->row[2 + i].strategy, "rotation");
        cr_expect_eq(b->mass_recall, a->mass_recall, "mass_recall %.17g, alone %.17g",
                     b->mass_recall, a->mass_recall);
        cr_expect_eq(b->out_rel_err, a->out_rel_err);
        cr_expect_eq(b->attn_rel_err, a->attn_rel_err);
        cr_expect_eq(b->kl, a->kl);
        cr_expect_eq(b->gram_recovery, a->gram_recovery);
        cr_expect_eq(b->density, a->density);
        cr_expect_eq(after->row[2 + i].topk[1], alone->row[i].topk[1]);
    }
    free(alone);
    free(after);
}

Test(host, a_hash_message_without_a_nul_reaches_the_row_cut_at_255_bytes)
{
    struct seen *seen = calloc(1, sizeof *seen);
    struct lsh_run_summary sum;
    struct lsh_error err;
    cr_assert_eq(sweep(SWEEP_YAML("[{name: no_nul_message}]", ""), "nonul", 1, seen, &sum,
                       &err), 0, "%s", err.message);
    cr_assert_eq(seen->n, 2);
    cr_expect_eq(seen->row[0].status, LSH_POINT_FAILED);
    cr_expect_eq(longest_run(seen->row[0].message, 'y'), LSH_STRATEGY_MSG_MAX - 1, "%s",
                 seen->row[0].message);
    free(seen);
}

Test(host, plan_reads_a_check_message_without_a_nul_to_255_bytes)
{
    static const char yaml[] =
        "name: h\n"
        "datasets: [{name: g, kind: gaussian, n: 20, d: 4}]\n"
        "strategies: [{name: no_nul_message}]\n"
        "sweep: {n_hashes: 1, n_buckets: [3]}\n";
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_config_parse(yaml, strlen(yaml), "h.yaml", reg, &cfg, &err), 0, "%s",
                 err.message);
    cr_expect_eq(lsh_plan_build(cfg, &plan, &err), LSH_ECONFIG);
    cr_expect_eq(longest_run(err.message, 'x'), LSH_STRATEGY_MSG_MAX - 1, "%s", err.message);
    cr_expect(strstr(err.message, "xxx; allowed: values the strategy accepts"), "%s",
              err.message);
    lsh_config_free(cfg);
}

Test(host, export_faults_fail_their_points_and_the_sweep_goes_on)
{
    struct seen *seen = calloc(1, sizeof *seen);
    struct lsh_run_summary sum;
    struct lsh_error err;
    int rc = sweep(SWEEP_YAML("[{name: bad_export, params: {fault: [slash, edata]}}, "
                              "{name: rotation}]", "dump: [hash_params]\n"),
                   "export", 2, seen, &sum, &err);
    cr_assert_eq(rc, 0, "the run ended (%d): %s", rc, err.message);
    cr_assert_eq(seen->n, 6);
    cr_expect_eq(sum.failed, 4);
    cr_expect_eq(sum.ok, 2);
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(seen->row[i].status, LSH_POINT_FAILED, "row %zu", i);
    cr_expect(strstr(seen->row[0].message, "bad_export / round 0 / export_params: array name "
                                           "'a/b' is not allowed"), "%s", seen->row[0].message);
    cr_expect(strstr(seen->row[2].message, "bad_export / round 0 / export_params: returned -3"),
              "%s", seen->row[2].message);
    cr_expect_eq(seen->row[4].status, LSH_POINT_OK);
    cr_expect_eq(seen->row[5].status, LSH_POINT_OK);
    free(seen);
}

/* ---- thread pools that cannot start ---------------------------------------------------- */

Test(host, sweep_stops_when_its_hashing_pool_cannot_start)
{
    struct seen *seen = calloc(1, sizeof *seen);
    struct lsh_run_summary sum;
    struct lsh_error err;
    lsh_parallel_fail_next(1); /* the first pool of the run: hashing the rounds */
    int rc = sweep(SWEEP_YAML("[{name: rotation}]", ""), "pool", 2, seen, &sum, &err);
    lsh_parallel_fail_next(0);
    cr_expect_eq(rc, LSH_ENOMEM, "rc %d: %s", rc, err.message);
    cr_expect(strstr(err.message, "to hash 3 rounds"), "%s", err.message);
    cr_expect_eq(seen->n, 0, "a point was written from rounds never hashed");
    free(seen);
}

Test(host, collision_stops_when_its_rounds_pool_cannot_start)
{
    static const char yaml[] =
        "name: c\n"
        "experiment: collision\n"
        "collision: {d: 4, angles: [30], pairs: 100}\n"
        "strategies: [{name: hyperplane}]\n"
        "sweep: {n_hashes: 3, n_buckets: 4}\n";
    struct lsh_config *cfg = NULL;
    struct lsh_collision_plan *plan = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_config_parse(yaml, strlen(yaml), "c.yaml", reg, &cfg, &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_collision_plan_build(cfg, &plan, &err), 0, "%s", err.message);
    char path[128];
    snprintf(path, sizeof path, "%s/c.h5", dir);
    struct lsh_collision_opts opts = {.threads = 2, .output = path, .cmdline = "test"};
    /* 100 pairs are one drawing task (run without a pool): the first pool
     * is the rounds' */
    lsh_parallel_fail_next(1);
    int rc = lsh_collision_run(cfg, plan, &opts, NULL, &err);
    lsh_parallel_fail_next(0);
    cr_expect_eq(rc, LSH_ENOMEM, "rc %d: %s", rc, err.message);
    lsh_collision_plan_free(plan);
    lsh_config_free(cfg);
}

/* ---- found by the hostile pass ------------------------------------------------------ */

static int t_init_touch(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)round, (void)err;
    memset(state, 0x5a, 16); /* the fault: state_size 0, yet it writes its state */
    return 0;
}

Test(host, a_state_size_of_zero_still_gets_a_state_a_plugin_may_touch)
{
    struct lsh_strategy s = base;
    s.init = t_init_touch;
    s.state_size = 0;
    struct lsh_host_point pt = point_of(&s, 4, 2, 10);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_host_round_open(&pt, 0, 1, &r, &err), 0, "%s", err.message);
    lsh_host_round_close(r);
    struct lsh_host_memory mem;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 10, .d = 2, .n_buckets = 4}, &mem);
    cr_expect_geq(mem.kept, 64, "the 64 bytes given to a state_size of 0 are counted");
}

static int t_export_twice(void *state, struct lsh_sink *sink)
{
    (void)state;
    static const double a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    int rc = sink->array(sink, "w", a, 1, 3);
    return rc ? rc : sink->array(sink, "w", b, 1, 3);
}

Test(host, an_export_name_given_twice_fails_the_round_before_anything_is_written)
{
    struct lsh_strategy s = base;
    s.export_params = t_export_twice;
    struct lsh_host_point pt = point_of(&s, 4, 3, 1);
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_host_round_open(&pt, 2, 1, &r, &err), 0, "%s", err.message);
    cr_expect_eq(lsh_host_round_export(r, NULL, NULL, &err), LSH_EPLUGIN, "the check pass");
    cr_expect_str_eq(err.message, "probe / round 2 / export_params: array name 'w' is given "
                                  "twice; allowed: one array per name");
    lsh_host_round_close(r);
}

/* Found by the hostile pass: rotation at B = 2^20, d = 64 holds a 64 x 2^19 R
 * per round (256 MiB, 2 GiB for 8 rounds) that the plan did not count, so
 * --memory-limit 300M peaked at 2.2 GB.  The built-ins' own figures are in. */
Test(host, round_memory_counts_what_the_builtin_strategies_allocate)
{
    struct lsh_host_memory mem;
    struct lsh_strategy s = base;
    s.name = "rotation";
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 2048, .d = 64, .n_buckets = (uint32_t)1 << 20}, &mem);
    cr_expect_geq(mem.kept, (size_t)64 * (1u << 19) * 8, "R: d x B/2 doubles");
    cr_expect_lt(mem.kept, (size_t)64 * (1u << 19) * 8 + ((size_t)9 << 20), "and a bounded batch");
    s.name = "kmeans";
    s.fit = t_fit_silent;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 5000, .d = 16, .n_buckets = 4096}, &mem);
    cr_expect_geq(mem.kept, (size_t)4096 * 16 * 8, "the B x d centroids");
    cr_expect_geq(mem.transient, (size_t)5000 * 16 * 8 * 2 + (size_t)4096 * 16 * 8,
                  "fit: the host's copy, the plugin's unit rows and its sums");
    s = base;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = &s, .n_rows = 2048, .d = 64, .n_buckets = (uint32_t)1 << 20}, &mem);
    cr_expect_lt(mem.kept, 1024, "an unknown plugin: only what the host allocates");
}

/* The kept figures of rotation and k-means against what their init really
 * allocates (glibc's count of bytes in use): never less (but for the
 * allocator's own rounding), and not 8 MiB of batch workspace more, which kept small units' hash groups from running
 * side by side under a few hundred MiB. */
Test(host, round_memory_of_rotation_and_kmeans_bounds_their_allocations_closely)
{
    static const char yaml[] = "name: m\n"
                               "datasets:\n"
                               "  - {name: g, kind: gaussian, n: 64, d: 4}\n"
                               "strategies:\n"
                               "  - name: rotation\n"
                               "  - name: kmeans\n"
                               "sweep: {n_hashes: 1, n_buckets: 4}\n";
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_config_parse(yaml, strlen(yaml), "m.yaml", reg, &cfg, &err), 0, "%s",
                 err.message);
    const struct {
        size_t d;
        uint32_t b;
    } shapes[] = {{32, 32}, {64, 8}, {16, 4096}, {8, 2}};
    for (size_t s = 0; s < cfg->n_strategies; s++)
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            const struct lsh_host_point pt =
                lsh_host_point_of(&cfg->strategies[s], 0, shapes[k].b, shapes[k].d, 8192);
            struct lsh_host_memory mem;
            lsh_host_round_memory(&pt, &mem);
            struct mallinfo2 m0 = mallinfo2(); /* heap and mmap'ed blocks */
            const size_t before = m0.uordblks + m0.hblkhd;
            struct lsh_host_round *r = NULL;
            cr_assert_eq(lsh_host_round_open(&pt, 0, 7, &r, &err), 0, "%s", err.message);
            struct mallinfo2 m1 = mallinfo2();
            const size_t used = m1.uordblks + m1.hblkhd - before;
            lsh_host_round_close(r);
            const char *name = cfg->strategies[s].name;
            /* beyond the count: the allocator's headers and page rounding of
             * large blocks (the plan's per-process allowance covers them) */
            cr_expect_leq(used, mem.kept + 32768, "%s d %zu B %u: init took %zu bytes, counted %zu",
                          name, shapes[k].d, shapes[k].b, used, mem.kept);
            if (used > 0) /* 0 under a sanitizer's or valgrind's malloc */
                cr_expect_leq(mem.kept, 2 * used + 65536,
                              "%s d %zu B %u: counted %zu bytes, init took %zu", name,
                              shapes[k].d, shapes[k].b, mem.kept, used);
        }
    lsh_config_free(cfg);
}

/* The host's GEMM with an empty inner dimension is C = 0 (or C unchanged
 * when accumulating), as the sum over no terms: BLAS refused the leading
 * dimension 0 it was given, printed a complaint and left C as it was. */
Test(host, gemm_with_k_0_is_a_sum_over_nothing)
{
    const struct lsh_host *h = lsh_host_services();
    double a[1] = {2.385}, b[1] = {1.5}, c[6];
    for (size_t i = 0; i < 6; i++)
        c[i] = 7.25;
    h->gemm(2, 3, 0, a, b, c, 0);
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq(c[i], 0.0, "c[%zu] = %g", i, c[i]);
    for (size_t i = 0; i < 6; i++)
        c[i] = 7.25;
    h->gemm(2, 3, 0, a, b, c, 1);
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq(c[i], 7.25, "c[%zu] = %g", i, c[i]);
    h->gemm_nt(2, 3, 0, a, b, c);
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq(c[i], 0.0, "c[%zu] = %g", i, c[i]);
}

/* ---- assign (ABI 1.1) ------------------------------------------------------------ */

static const struct lsh_strategy *test_plugin(const char *name)
{
    if (!lsh_registry_find(reg, name))
        load_test_plugin(name);
    const struct lsh_strategy *s = lsh_registry_find(reg, name);
    cr_assert_not_null(s);
    return s;
}

/* One round of pt on q (and k) through the host; returns its code. */
static int bucket_once(const struct lsh_host_point *pt, const struct lsh_host_rows *q,
                       const struct lsh_host_rows *k, int fit_keys, struct lsh_error *err)
{
    struct lsh_host_round *r = NULL;
    lsh_error_clear(err);
    cr_assert_eq(lsh_host_round_open(pt, 2, 2385, &r, err), 0, "%s", err->message);
    int rc = lsh_host_round_bucket(r, q, k, fit_keys, err);
    lsh_host_round_close(r);
    return rc;
}

Test(host, an_assign_bucket_out_of_range_fails_naming_query_or_key_row_and_value)
{
    const struct lsh_strategy *s = test_plugin("assign_probe");
    cr_assert(lsh_host_assigns(s));
    struct lsh_host_point pt = point_of(s, 8, 2, 3);
    /* query bucket = x[0], key bucket = x[1] */
    double q[6] = {1, 0, 9, 0, 2, 0}, k[4] = {0, 3, 0, 8};
    uint32_t bq[3], bk[2];
    struct lsh_host_rows rq = {q, 3, bq}, rk = {k, 2, bk};
    struct lsh_error err;
    cr_expect_eq(bucket_once(&pt, &rq, NULL, 0, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "assign_probe / round 2 / assign: assign_probe returned "
                                  "bucket 9 for query row 1; n_buckets is 8");
    q[2] = 7;
    cr_expect_eq(bucket_once(&pt, &rq, &rk, 1, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "assign_probe / round 2 / assign: assign_probe returned "
                                  "bucket 8 for key row 1; n_buckets is 8");
    /* the same rows as keys: key buckets are x[1] = 0, all in range */
    uint32_t bk3[3] = {77, 77, 77};
    struct lsh_host_rows same = {q, 3, bk3};
    cr_expect_eq(bucket_once(&pt, &rq, &same, 1, &err), 0, "%s", err.message);
    cr_expect(bq[0] == 1 && bq[1] == 7 && bq[2] == 2);
    cr_expect(bk3[0] == 0 && bk3[1] == 0 && bk3[2] == 0, "key buckets come from bk");
    k[3] = 7;
    cr_expect_eq(bucket_once(&pt, &rq, &rk, 1, &err), 0, "%s", err.message);
    cr_expect(bk[0] == 3 && bk[1] == 7);
    /* a key row whose bucket assign leaves unwritten */
    k[2] = -4;
    cr_expect_eq(bucket_once(&pt, &rq, &rk, 1, &err), LSH_EPLUGIN);
    cr_expect_str_eq(err.message, "assign_probe / round 2 / assign: assign_probe left the "
                                  "bucket of key row 1 unwritten (or wrote 4294967295); "
                                  "n_buckets is 8");
}

Test(host, assign_gets_k_as_q_when_keys_are_shared_and_fit_sees_keys_only_with_fit_keys)
{
    const struct lsh_strategy *s = test_plugin("assign_probe");
    struct lsh_host_point pt = point_of(s, 64, 2, 4);
    /* row 0: fit's row count; row 1: is k == q; row 2: n of its side; row 3: 5 / 6 */
    double q[8] = {-1, 0, -2, 0, -3, 0, 5, 6};
    double k[6] = {-1, 0, -2, 0, -3, 0}; /* other rows, n_k = 3 */
    uint32_t bq[4], bk[4];
    struct lsh_host_rows rq = {q, 4, bq};
    struct lsh_error err;

    /* k NULL: keys are the queries, one copy passed as both */
    cr_assert_eq(bucket_once(&pt, &rq, NULL, 1, &err), 0, "%s", err.message);
    uint32_t want_null[4] = {4, 1, 4, 5};
    cr_expect_arr_eq(bq, want_null, sizeof bq);

    /* the same pointer: shared keys, key buckets from bk (x[d-1] for row 3) */
    struct lsh_host_rows same = {q, 4, bk};
    cr_assert_eq(bucket_once(&pt, &rq, &same, 1, &err), 0, "%s", err.message);
    cr_expect_arr_eq(bq, want_null, sizeof bq);
    uint32_t want_same_k[4] = {4, 1, 4, 6};
    cr_expect_arr_eq(bk, want_same_k, sizeof bk, "fit sees q once; k == q; key rule x[d-1]");

    /* other rows with the same values: not the same pointer */
    double copy[8];
    memcpy(copy, q, sizeof q);
    struct lsh_host_rows twin = {copy, 4, bk};
    cr_assert_eq(bucket_once(&pt, &rq, &twin, 0, &err), 0, "%s", err.message);
    uint32_t want_twin_q[4] = {4, 0, 4, 5}, want_twin_k[4] = {4, 0, 4, 6};
    cr_expect_arr_eq(bq, want_twin_q, sizeof bq);
    cr_expect_arr_eq(bk, want_twin_k, sizeof bk);

    /* other rows, n_k = 3: fit sees q then k only with fit_keys */
    struct lsh_host_rows rk = {k, 3, bk};
    cr_assert_eq(bucket_once(&pt, &rq, &rk, 1, &err), 0, "%s", err.message);
    uint32_t want_q7[4] = {7, 0, 4, 5}, want_k7[3] = {7, 0, 3};
    cr_expect_arr_eq(bq, want_q7, sizeof bq);
    cr_expect_arr_eq(bk, want_k7, 3 * sizeof *bk);
    cr_assert_eq(bucket_once(&pt, &rq, &rk, 0, &err), 0, "%s", err.message);
    uint32_t want_q4[4] = {4, 0, 4, 5}, want_k4[3] = {4, 0, 3};
    cr_expect_arr_eq(bq, want_q4, sizeof bq);
    cr_expect_arr_eq(bk, want_k4, 3 * sizeof *bk);
}

/* A plugin built against the frozen 1.0 header (tests/plugins/abi_1_0): its
 * struct ends at fini.  It loads, the host never takes it for an assign
 * strategy nor reads a law from it (the test runs under ASan in the
 * sanitizer build: a read past its struct is a global-buffer-overflow), and
 * its buckets are those of sign hyperplanes computed here by hand from the
 * round's stream. */
Test(host, an_abi_1_0_plugin_loads_and_hashes_as_an_independent_simhash)
{
    const struct lsh_strategy *s = test_plugin("simhash10");
    cr_expect_eq(s->abi_minor, 0);
    cr_expect_not(lsh_host_assigns(s), "a 1.0 plugin has no assign member to read");
    const size_t n = 1500, d = 7; /* two hash batches */
    const uint32_t b = 8;
    const unsigned kbits = 3;
    struct lsh_host_point pt = point_of(s, b, d, n);
    struct lsh_host_law law;
    char why[256];
    cr_expect_eq(lsh_host_law_of(&pt, &law, why, sizeof why), LSH_EPLUGIN);
    cr_expect_str_eq(why, "simhash10 publishes no collision probability (collision_prob: the "
                          "plugin is built for strategy ABI 1.0)");
    struct lsh_host_memory mem;
    lsh_host_round_memory(&(struct lsh_host_point){.strategy = s, .n_rows = n, .d = d, .n_buckets = b}, &mem);
    cr_expect_eq(mem.transient, LSH_HOST_BATCH_ROWS * (d * 8 + 4), "hash batches, not assign");

    double *x = malloc(2 * n * d * sizeof *x);
    uint32_t *bq = malloc(n * sizeof *bq), *bk = malloc(n * sizeof *bk);
    struct lsh_rng *rng = lsh_rng_alloc(77);
    for (size_t i = 0; i < 2 * n * d; i++)
        x[i] = lsh_rng_normal(rng);
    lsh_rng_free(rng);
    const uint64_t seed = 0xabc;
    struct lsh_host_rows rq = {x, n, bq}, rk = {x + n * d, n, bk};
    struct lsh_host_round *r = NULL;
    struct lsh_error err;
    cr_assert_eq(lsh_host_round_open(&pt, 1, seed, &r, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_host_round_bucket(r, &rq, &rk, 1, &err), 0, "%s", err.message);
    lsh_host_round_close(r);

    /* by hand: W row-major from the round's stream, bit t = [x.w_t > 0] */
    double w[7 * 3];
    struct lsh_rng *wr = lsh_rng_alloc(seed);
    for (size_t i = 0; i < d * kbits; i++)
        w[i] = lsh_rng_normal(wr);
    lsh_rng_free(wr);
    for (size_t i = 0; i < 2 * n; i++) {
        uint32_t want = 0;
        for (unsigned t = 0; t < kbits; t++) {
            double y = 0;
            for (size_t e = 0; e < d; e++)
                y += x[i * d + e] * w[e * kbits + t];
            want |= (uint32_t)(y > 0) << t;
        }
        uint32_t got = i < n ? bq[i] : bk[i - n];
        cr_assert_eq(got, want, "%s row %zu: bucket %u, by hand %u", i < n ? "query" : "key",
                     i < n ? i : i - n, got, want);
    }
    /* shared keys: the key buckets are a copy of the query buckets */
    uint32_t *copy = malloc(n * sizeof *copy);
    memcpy(copy, bq, n * sizeof *bq);
    struct lsh_host_rows same = {x, n, bk};
    cr_assert_eq(lsh_host_round_open(&pt, 1, seed, &r, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_host_round_bucket(r, &rq, &same, 1, &err), 0, "%s", err.message);
    lsh_host_round_close(r);
    cr_expect_arr_eq(bq, copy, n * sizeof *bq);
    cr_expect_arr_eq(bk, copy, n * sizeof *bk);
    free(copy);
    free(x);
    free(bq);
    free(bk);
}

/* k-means hashes through assign now: with balanced false its buckets must be
 * the ones the host's hash batches of 1024 rows gave before (also for
 * B > 1024, where k-means cuts each host batch into smaller GEMMs), for
 * queries, shared keys (a copy) and separate keys. */
Test(host, kmeans_assign_gives_the_buckets_of_the_old_hash_batches)
{
    const struct lsh_strategy *s = lsh_registry_find(reg, "kmeans");
    cr_assert_not_null(s);
    cr_assert(lsh_host_assigns(s));
    const size_t n = 2600, d = 6;
    double *x = malloc(2 * n * d * sizeof *x);
    struct lsh_rng *rng = lsh_rng_alloc(2385);
    for (size_t i = 0; i < 2 * n * d; i++)
        x[i] = lsh_rng_normal(rng);
    lsh_rng_free(rng);
    uint32_t *bq = malloc(n * sizeof *bq), *bk = malloc(n * sizeof *bk);
    uint32_t *old = malloc(2 * n * sizeof *old);
    const uint32_t bs[] = {16, 1500};
    for (size_t c = 0; c < 2; c++)
        for (int separate = 0; separate < 2; separate++) {
            struct lsh_param_value v[3] = {{.type = LSH_PARAM_INT, .i = 2},
                                           {.type = LSH_PARAM_CHOICE, .choice = "random"},
                                           {.type = LSH_PARAM_BOOL, .i = 0}};
            struct lsh_host_point pt = point_of(s, bs[c], d, separate ? 2 * n : n);
            pt.values = v;
            pt.n_values = 3;
            const uint64_t seed = 0x5eed + c;
            struct lsh_host_rows rq = {x, n, bq};
            struct lsh_host_rows rk = {separate ? x + n * d : x, n, bk};
            struct lsh_host_round *r = NULL;
            struct lsh_error err;
            cr_assert_eq(lsh_host_round_open(&pt, 0, seed, &r, &err), 0, "%s", err.message);
            cr_assert_eq(lsh_host_round_bucket(r, &rq, &rk, 1, &err), 0, "%s", err.message);
            lsh_host_round_close(r);

            /* as the host drove it before: fit on [Q; K], hash in batches of 1024 */
            void *state = aligned_alloc(64, (s->state_size + 63) / 64 * 64);
            memset(state, 0, s->state_size);
            struct lsh_rng *rr = lsh_rng_alloc(seed);
            struct lsh_round round = {.d = d, .n_buckets = bs[c], .seed = seed,
                                      .n_rows = pt.n_rows, .params = v, .n_params = 3,
                                      .rng = rr, .host = lsh_host_services()};
            struct lsh_strategy_error serr = {{0}};
            cr_assert_eq(s->init(state, &round, &serr), 0, "%s", serr.message);
            cr_assert_eq(s->fit(state, x, pt.n_rows, d, &serr), 0, "%s", serr.message);
            const size_t rows = separate ? 2 * n : n;
            for (size_t part = 0; part < rows; part += n)
                for (size_t at = 0; at < n; at += LSH_HOST_BATCH_ROWS) {
                    size_t m = n - at < LSH_HOST_BATCH_ROWS ? n - at : LSH_HOST_BATCH_ROWS;
                    cr_assert_eq(s->hash(state, x + (part + at) * d, m, d, old + part + at,
                                         &serr), 0, "%s", serr.message);
                }
            s->fini(state);
            free(state);
            lsh_rng_free(rr);
            cr_expect_arr_eq(bq, old, n * sizeof *bq, "B = %u: query buckets changed", bs[c]);
            cr_expect_arr_eq(bk, separate ? old + n : old, n * sizeof *bk,
                             "B = %u %s: key buckets changed", bs[c],
                             separate ? "separate" : "shared");
        }
    free(x);
    free(bq);
    free(bk);
    free(old);
}
