/* test_numerics.c - scores that cannot be formed exactly are refused before
 * the reference, sizes that overflow are refused before allocating, a
 * metrics record with NaN, Inf or an impossible value is never ok, and the
 * score-cache choice (which changes the last bits) does not depend on -j. */
#include <criterion/criterion.h>
#include <lshlab/fmadots.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "eval.h"
#include "linalg.h"
#include "plan.h"
#include "reference.h"
#include "registry.h"
#include "sweep.h"

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    cr_assert_not_null(p, "out of memory");
    return p;
}

/* ---- the guard -------------------------------------------------------------------- */

/* A record every value of which is possible: two topk recalls. */
static struct lsh_metrics good_record(double *topk)
{
    topk[0] = 0.5;
    topk[1] = 1.0;
    return (struct lsh_metrics){
        .out_rel_err = 0.3, .attn_rel_err = 0.4, .mass_recall = 0.7, .kl = 0.2,
        .empty_rows = 3, .gram_recovery = 0.6, .topk_recall = topk, .density = 0.1,
        .mean_candidates = 12.0, .bucket_max = 2.5, .bucket_entropy = 0.9,
        .hash_seconds = 0.01, .eval_seconds = 0.02,
    };
}

Test(numerics, guard_accepts_a_possible_record)
{
    double topk[2];
    struct lsh_metrics m = good_record(topk);
    char why[256] = "";
    cr_expect_eq(lsh_metrics_check(&m, 2, why, sizeof why), 0, "%s", why);
    m.mass_recall = 1.0;
    m.kl = 0.0;
    m.gram_recovery = 0.0;
    cr_expect_eq(lsh_metrics_check(&m, 2, why, sizeof why), 0, "ends of the ranges: %s", why);
}

/* Each bad value alone makes the record not ok, and the reason names it. */
Test(numerics, guard_refuses_nan_inf_recall_outside_0_1_and_negative_kl)
{
    static const struct {
        size_t field;  /* which value to spoil */
        double value;
        const char *name;
    } bad[] = {
        {0, NAN, "out_rel_err"},         {1, INFINITY, "attn_rel_err"},
        {2, 15.8, "mass_recall"},        {2, -0.1, "mass_recall"},
        {3, -1.43, "kl"},                {3, NAN, "kl"},
        {4, 1.0 + 1e-3, "gram_recovery"}, {5, 2.0, "density"},
        {6, -INFINITY, "mean_candidates"}, {7, NAN, "bucket_entropy"},
        {8, 1.5, "topk_recall[1]"},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        double topk[2];
        struct lsh_metrics m = good_record(topk);
        double *slot[] = {&m.out_rel_err, &m.attn_rel_err, &m.mass_recall,  &m.kl,
                          &m.gram_recovery, &m.density,   &m.mean_candidates,
                          &m.bucket_entropy, &topk[1]};
        *slot[bad[t].field] = bad[t].value;
        char why[256] = "";
        cr_expect_eq(lsh_metrics_check(&m, 2, why, sizeof why), LSH_EDATA,
                     "%s = %g was accepted", bad[t].name, bad[t].value);
        cr_expect(strstr(why, bad[t].name) != NULL, "reason '%s' does not name %s", why,
                  bad[t].name);
    }
}

Test(numerics, guard_checks_standard_errors_too)
{
    double topk[2], topk_se[2] = {0.01, 0.02};
    struct lsh_metrics m = good_record(topk);
    struct lsh_metric_se se = {.mass_recall = 0.01, .topk_recall = topk_se};
    m.se = &se;
    char why[256] = "";
    cr_expect_eq(lsh_metrics_check(&m, 2, why, sizeof why), 0, "%s", why);
    se.kl = NAN;
    cr_expect_eq(lsh_metrics_check(&m, 2, why, sizeof why), LSH_EDATA);
    cr_expect(strstr(why, "kl_se") != NULL, "%s", why);
}

/* ---- scores that cannot be formed exactly ------------------------------------------ */

struct data {
    size_t n, d;
    double *q, *v;
    struct lsh_attn attn;
};

/* n rows of d: row i is (i % distinct + 1) * (1, -1, 2, 0, ...) / 8 scaled by
 * `value`, so rows repeat when distinct < n; V small integers. */
static void data_make(struct data *x, size_t n, size_t d, size_t distinct, double value,
                      double scale)
{
    static const uint32_t topk[1] = {2};
    x->n = n;
    x->d = d;
    x->q = xcalloc(n * d, sizeof *x->q);
    x->v = xcalloc(n * 2, sizeof *x->v);
    for (size_t i = 0; i < n; i++) {
        const double f = (double)(i % distinct + 1) / (double)distinct;
        for (size_t e = 0; e < d; e++)
            x->q[i * d + e] = value * f * (double)((int)(e * 7 % 5) - 2) / 8.0;
        x->v[2 * i] = (double)(i % 3);
        x->v[2 * i + 1] = 1.0 - (double)(i % 2);
    }
    x->attn = (struct lsh_attn){
        .n = n, .d = d, .d_v = 2, .q = x->q, .k = x->q, .v = x->v, .scale = scale,
        .exclude_self = 1, .n_topk = 1, .topk = topk,
    };
}

static void data_free(struct data *x)
{
    free(x->q);
    free(x->v);
}

/* The reference refuses attn with LSH_EDATA, and says what is allowed. */
static void expect_refused(const struct lsh_attn *a, const char *what)
{
    struct lsh_reference *ref = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_reference_compute(a, NULL, 0, 1, 0, &ref, &err);
    cr_expect_eq(rc, LSH_EDATA, "%s: reference gave %d, not LSH_EDATA (%s)", what, rc,
                 err.message);
    cr_expect(strstr(err.message, "allowed") != NULL, "%s: '%s' says nothing allowed", what,
              err.message);
    lsh_reference_free(ref);
    lsh_error_clear(&err);
    cr_expect_eq(lsh_attn_check(a, "dup", &err), LSH_EDATA, "%s", what);
    cr_expect(strstr(err.message, "'dup'") != NULL, "%s: '%s' does not name the dataset", what,
              err.message);
}

/* The case: duplicated rows with scale 1e16 gave mass_recall 15.8
 * and kl -1.43 with status ok.  |q| ~ 0.5 here, so the scores reach ~3e15,
 * where a dot product's rounding alone moves them by more than 1. */
Test(numerics, duplicated_rows_with_scale_1e16_are_refused)
{
    struct data x;
    data_make(&x, 64, 16, 4, 1.0, 1e16);
    expect_refused(&x.attn, "scale 1e16");
    data_free(&x);
}

Test(numerics, scale_1e308_is_refused)
{
    struct data x;
    data_make(&x, 32, 8, 32, 1.0, 1e308);
    expect_refused(&x.attn, "scale 1e308");
    data_free(&x);
}

/* HDF5 values around 1e154: each q.q overflows to Inf (NaN in the errors). */
Test(numerics, values_near_1e154_are_refused)
{
    struct data x;
    data_make(&x, 32, 8, 32, 8e154, 1.0 / sqrt(8.0));
    expect_refused(&x.attn, "values 1e154");
    data_free(&x);
}

/* What a generator with spread or norm 1e300 may leave: Inf entries, or
 * finite rows whose squared norm overflows. */
Test(numerics, infinite_values_and_overflowing_norms_are_refused)
{
    struct data x;
    data_make(&x, 32, 8, 32, 1e300, 1.0 / sqrt(8.0));
    expect_refused(&x.attn, "norm 1e300");
    x.q[5] = INFINITY;
    expect_refused(&x.attn, "an Inf entry");
    data_free(&x);
}

/* Just inside the bound (scale * max|q|^2 = 2^33 / d / 2) the scores are
 * formed exactly enough: every ratio that is at most 1 is, and kl >= 0. */
Test(numerics, scores_just_inside_the_bound_give_possible_metrics)
{
    struct data x;
    const size_t n = 96, d = 16;
    data_make(&x, n, d, 8, 1.0, 1.0);
    double mq = 0.0;
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t e = 0; e < d; e++)
            s += x.q[i * d + e] * x.q[i * d + e];
        mq = s > mq ? s : mq;
    }
    x.attn.scale = 0x1p33 / (double)d / 2.0 / mq;
    struct lsh_error err;
    lsh_error_clear(&err);
    struct lsh_reference *ref = NULL;
    cr_assert_eq(lsh_reference_compute(&x.attn, NULL, 0, 1, (size_t)-1, &ref, &err), 0, "%s",
                 err.message);
    /* two rounds: everything in bucket 0, then alternate buckets */
    uint32_t *b = xcalloc(2 * n, sizeof *b);
    for (size_t i = 0; i < n; i++)
        b[n + i] = (uint32_t)(i % 2);
    struct lsh_rounds rounds = {.n = n, .n_hashes = 2, .n_buckets = 2, .bq = b, .bk = b};
    const struct lsh_mode_opts mode = {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0};
    const uint32_t prefixes[2] = {1, 2};
    const enum lsh_combine combines[2] = {LSH_COMBINE_UNION, LSH_COMBINE_ROUNDS};
    struct lsh_metrics m[4];
    double topk[4];
    memset(m, 0, sizeof m);
    for (size_t t = 0; t < 4; t++)
        m[t].topk_recall = &topk[t];
    cr_assert_eq(lsh_eval_pass(ref, &rounds, &mode, prefixes, 2, combines, 2, NULL, 2, m, NULL, &err),
                 0, "%s", err.message);
    for (size_t t = 0; t < 4; t++) {
        char why[256] = "";
        cr_expect_eq(lsh_metrics_check(&m[t], 1, why, sizeof why), 0, "point %zu: %s", t, why);
        cr_expect(m[t].mass_recall <= 1.0 && m[t].kl >= 0.0, "mass %.17g kl %.17g",
                  m[t].mass_recall, m[t].kl);
    }
    free(b);
    lsh_reference_free(ref);
    data_free(&x);
}

/* {kind: gaussian, n: 8, d: 2^61} overflowed a heap buffer at reference.c:419:
 * n x d wraps to 0.  Refused before anything is allocated or read. */
Test(numerics, sizes_that_overflow_are_refused_before_allocating)
{
    double q[8] = {0}, v[8] = {0};
    struct lsh_attn a = {
        .n = 8, .d = (size_t)1 << 61, .d_v = 1, .q = q, .k = q, .v = v, .scale = 1.0,
    };
    struct lsh_reference *ref = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_expect_eq(lsh_reference_compute(&a, NULL, 0, 2, 0, &ref, &err), LSH_ENOMEM);
    cr_expect_null(ref);
    a.d = 1;
    a.d_v = (size_t)1 << 61;
    cr_expect_eq(lsh_reference_compute(&a, NULL, 0, 2, 0, &ref, &err), LSH_ENOMEM);
    cr_expect_null(ref);
}

/* ---- the score cache and -j ------------------------------------------------------- */

static struct lsh_registry *reg;

static void load_registry(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    reg = lsh_registry_alloc();
    cr_assert_not_null(reg);
    const char *dir = getenv("LSHLAB_STRATEGY_PATH");
    cr_assert_not_null(dir, "LSHLAB_STRATEGY_PATH is not set (run through meson test)");
    cr_assert_eq(lsh_registry_load_dir(reg, dir, &err), 0, "%s", err.message);
}

struct captured {
    size_t count, cap;
    struct lsh_metrics *m;  /* topk_recall not kept */
    int cached;             /* the reference kept the scores */
};

static void on_progress(void *ctx, const struct lsh_progress *p)
{
    struct captured *c = ctx;
    if (!strcmp(p->stage, "reference") && p->note)
        c->cached = !strncmp(p->note, "scores cached", 13);
    if (strcmp(p->stage, "point") || !p->row || c->count == c->cap)
        return;
    c->m[c->count] = p->row->metrics;
    c->count++;
}

/* Every metric of a and b has the same bits (timings aside). */
static int same_bits(const struct lsh_metrics *a, const struct lsh_metrics *b)
{
    const double x[] = {a->out_rel_err, a->attn_rel_err, a->mass_recall, a->kl,
                        a->gram_recovery, a->density, a->mean_candidates, a->bucket_max,
                        a->bucket_entropy};
    const double y[] = {b->out_rel_err, b->attn_rel_err, b->mass_recall, b->kl,
                        b->gram_recovery, b->density, b->mean_candidates, b->bucket_max,
                        b->bucket_entropy};
    return !memcmp(x, y, sizeof x) && a->empty_rows == b->empty_rows &&
           a->warnings == b->warnings;
}

/* A sweep config's parse and plan, or the test fails. */
static void parse_plan(const char *yaml, struct lsh_config **cfg, struct lsh_plan **plan)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_config_parse(yaml, strlen(yaml), "t.yaml", reg, cfg, &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_plan_build(*cfg, plan, &err), 0, "%s", err.message);
}

static void run_once(const struct lsh_config *cfg, const struct lsh_plan *plan, unsigned threads,
                     size_t limit, const char *out, struct captured *c)
{
    struct lsh_run_opts opts = {
        .threads = threads, .memory_limit = limit, .mode = LSH_RESULTS_FORCE, .output = out,
        .cmdline = "test", .progress = on_progress, .progress_ctx = c,
    };
    struct lsh_error err;
    lsh_error_clear(&err);
    c->count = 0;
    cr_assert_eq(lsh_sweep_run(cfg, plan, &opts, NULL, &err), 0, "%s", err.message);
    cr_assert_eq(c->count, plan->n_points);
}

/* --memory-limit 150M gave -j 2 the cache and -j 3 streaming, and
 * gram_recovery one ulp apart.  Limits in 1 MiB steps over the range where
 * a figure with the thread count in it would flip: every -j gives the same
 * bits at each of them (and some limits keep the cache, some do not). */
Test(numerics, same_bits_for_j1_j2_j3_at_every_limit_across_the_cache_boundary,
     .init = load_registry, .timeout = 240)
{
    static const char yaml[] =
        "name: jbits\n"
        "seed: 5\n"
        "datasets:\n"
        "  - {name: g, kind: gaussian, n: 384, d: 24, d_v: 4}\n"
        "strategies:\n"
        "  - name: hyperplane\n"
        "sweep:\n"
        "  n_hashes: [1, 3]\n"
        "  n_buckets: 4\n"
        "  mode: bucket\n"
        "  combine: [union, rounds]\n";
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    /* the row path, which reads the score cache (this process's own setting) */
    setenv("LSHLAB_TEST_ROW_PATH", "1", 1);
    parse_plan(yaml, &cfg, &plan);
    char dir[] = "/tmp/lshlab-jbits-XXXXXX", out[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/r.h5", dir);
    struct captured c[3];
    for (int t = 0; t < 3; t++)
        c[t] = (struct captured){0, plan->n_points, xcalloc(plan->n_points, sizeof *c[t].m), 0};
    int seen_cache = 0, seen_stream = 0;
    for (size_t mib = 24; mib <= 96; mib++) {
        for (unsigned t = 0; t < 3; t++)
            run_once(cfg, plan, t + 1, mib << 20, out, &c[t]);
        seen_cache |= c[0].cached || c[1].cached || c[2].cached;
        seen_stream |= !c[0].cached || !c[1].cached || !c[2].cached;
        for (unsigned t = 1; t < 3; t++) {
            cr_expect_eq(c[t].cached, c[0].cached, "limit %zu MiB: -j %u %s the cache, -j 1 %s",
                         mib, t + 1, c[t].cached ? "keeps" : "drops",
                         c[0].cached ? "keeps" : "drops");
            for (size_t p = 0; p < plan->n_points; p++)
                cr_expect(same_bits(&c[t].m[p], &c[0].m[p]),
                          "limit %zu MiB, point %zu: -j %u gives gram_recovery %.17g, -j 1 "
                          "%.17g", mib, p, t + 1, c[t].m[p].gram_recovery,
                          c[0].m[p].gram_recovery);
        }
    }
    cr_expect(seen_cache && seen_stream, "the limits do not cross the cache boundary");
    for (int t = 0; t < 3; t++)
        free(c[t].m);
    unlink(out);
    rmdir(dir);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    lsh_registry_free(reg);
}

/* A small unit's hash groups run side by side, one thread each, and one
 * writer writes their rows in plan order: every -j gives -j 1's metrics, in
 * the same order, with the oracle's table (built by the first group on
 * every thread), a rounds combine and dumps, whether the groups are taken
 * costliest first (every group fits the bound on groups held) or in plan
 * order (four of five fit); and a limit that fits the run on two threads but
 * not three groups' figures more runs them one after another. */
Test(numerics, hash_groups_side_by_side_give_the_bits_and_order_of_one_thread,
     .init = load_registry, .timeout = 240)
{
    static const char yaml[] =
        "name: side\n"
        "seed: 9\n"
        "datasets:\n"
        "  - {name: g, kind: clustered, n: 256, d: 16, d_v: 8, clusters: 4}\n"
        "attention: {oracle: true, topk: [1, 5]}\n"
        "strategies:\n"
        "  - name: hyperplane\n"
        "  - name: kmeans\n"
        "    params: {iterations: 3}\n"
        "  - name: rotation\n"
        "sweep:\n"
        "  n_hashes: [1, 2, 4]\n"
        "  n_buckets: [4, 8]\n"
        "  combine: [union, rounds]\n"
        "dump: [buckets, rows]\n";
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    parse_plan(yaml, &cfg, &plan);
    cr_assert_eq(plan->n_groups, 6);
    struct lsh_memory mem;
    lsh_plan_memory(cfg, plan, 0, &mem);
    cr_assert_gt(mem.group, 0);
    char dir[] = "/tmp/lshlab-side-XXXXXX", out[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/r.h5", dir);
    const size_t big = (size_t)1 << 32;
    /* two threads and the cache fit, a second group beside them does not */
    const size_t tight = lsh_memory_total(&mem, 2, 1) + mem.group;
    /* two side by side fit, holding four groups but not all five: they are
     * taken in plan order (the costliest first could wait on the writer) */
    const size_t four = lsh_memory_total(&mem, 2, 1) + 3 * mem.group;
    size_t hold = 0;
    cr_expect_eq(lsh_plan_side_groups(&mem, 2, four, 1, 5, &hold), 2);
    cr_expect_eq(hold, 4);
    cr_expect_eq(lsh_plan_side_groups(&mem, 2, four + 2 * mem.group - 1, 1, 5, &hold), 2);
    cr_expect_eq(hold, 5, "room for 5 groups and all but one byte of a sixth: %zu held", hold);
    cr_expect_eq(lsh_plan_side_groups(&mem, 2, big, 1, 5, &hold), 2);
    cr_expect_eq(hold, 5, "the held groups are capped at the unit's: %zu", hold);
    cr_expect_eq(lsh_plan_side_groups(&mem, 3, four, 1, 5, &hold), 2,
                 "three workers hold six groups, which do not fit");
    cr_expect_eq(lsh_plan_side_groups(&mem, 2, four - 1, 1, 5, &hold), 1);
    struct {
        unsigned threads;
        size_t limit;
        int side; /* expected: some groups side by side */
    } runs[] = {{1, big, 0}, {2, big, 1}, {3, big, 1}, {2, tight, 0}, {2, four, 1}};
    struct captured c[5];
    for (int t = 0; t < 5; t++) {
        c[t] = (struct captured){0, plan->n_points, xcalloc(plan->n_points, sizeof *c[t].m), 0};
        struct lsh_run_opts opts = {
            .threads = runs[t].threads, .memory_limit = runs[t].limit,
            .mode = LSH_RESULTS_FORCE, .output = out, .cmdline = "test",
            .progress = on_progress, .progress_ctx = &c[t],
        };
        struct lsh_run_summary sum;
        cr_assert_eq(lsh_sweep_run(cfg, plan, &opts, &sum, &err), 0, "%s", err.message);
        cr_assert_eq(c[t].count, plan->n_points);
        cr_assert_eq(sum.ok, plan->n_points);
        if (runs[t].side) /* all but the first, which builds the oracle's table */
            cr_expect_eq(sum.side_groups, plan->n_groups - 1, "-j %u: %zu groups side by side",
                         runs[t].threads, sum.side_groups);
        else
            cr_expect_eq(sum.side_groups, 0, "-j %u, limit %zu: %zu groups side by side",
                         runs[t].threads, runs[t].limit, sum.side_groups);
        for (size_t p = 0; t && p < plan->n_points; p++) {
            cr_expect(same_bits(&c[t].m[p], &c[0].m[p]),
                      "run %d, row %zu: out_rel_err %.17g, -j 1 %.17g", t, p,
                      c[t].m[p].out_rel_err, c[0].m[p].out_rel_err);
            cr_expect_eq(c[t].m[p].oracle_mass_recall, c[0].m[p].oracle_mass_recall,
                         "run %d, row %zu: the oracle differs", t, p);
        }
    }
    for (int t = 0; t < 5; t++)
        free(c[t].m);
    unlink(out);
    rmdir(dir);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    lsh_registry_free(reg);
}

/* Found by the hostile pass: rows of norm ~1e-300 (hdf5 data) gave
 * gram_recovery 0 with status ok, while the same rows times 1e300 give 0.48:
 * every (q.k)^2 underflowed to 0, and 0/0 is written as 0.  gram_recovery is
 * scale-free, so such data is refused, with what is allowed; all-zero data
 * (a true 0/0) and a largest |q||k| of 2^-200 are kept. */
Test(numerics, rows_whose_gram_entries_underflow_are_refused)
{
    struct data x;
    data_make(&x, 32, 8, 32, 1e-300, 1.0);
    expect_refused(&x.attn, "rows of norm 1e-300");
    data_free(&x);
    data_make(&x, 32, 8, 32, 1e-160, 1.0);
    expect_refused(&x.attn, "rows of norm 1e-160, squares of q.k near 1e-640");
    data_free(&x);

    struct lsh_error err;
    data_make(&x, 32, 8, 32, 0.0, 1.0);
    lsh_error_clear(&err);
    cr_expect_eq(lsh_attn_check(&x.attn, "zero", &err), 0, "all zero: %s", err.message);
    data_free(&x);
    data_make(&x, 32, 8, 32, 0x1p-100, 1.0);
    lsh_error_clear(&err);
    cr_expect_eq(lsh_attn_check(&x.attn, "small", &err), 0, "2^-100: %s", err.message);
    data_free(&x);
}

/* Found by the hostile pass: shared_normalized keys came from sqrt(sum q^2),
 * which underflows to 0 for rows of norm ~1e-170 (their keys became zero rows,
 * so a large query's score against them was 0 instead of ~|q|) and overflows
 * for rows of norm ~1e200. */
Test(numerics, normalized_keys_are_unit_for_tiny_and_huge_rows)
{
    const double rows[4][2] = {{3e-170, 4e-170}, {3e200, -4e200}, {3, 4}, {0, 0}};
    double k[8], norm[4];
    lsh_attn_normalize_rows(&rows[0][0], 4, 2, k, norm);
    const double want[4][2] = {{0.6, 0.8}, {0.6, -0.8}, {0.6, 0.8}, {0, 0}};
    const double want_norm[4] = {5e-170, 5e200, 5, 0};
    for (size_t j = 0; j < 4; j++) {
        cr_expect(fabs(norm[j] - want_norm[j]) <= 1e-15 * want_norm[j], "row %zu: norm %g",
                  j, norm[j]);
        for (size_t e = 0; e < 2; e++)
            cr_expect(fabs(k[j * 2 + e] - want[j][e]) <= 1e-15, "row %zu: k %g, want %g", j,
                      k[j * 2 + e], want[j][e]);
    }
    /* ordinary rows keep the plain sqrt(sum q^2) bits */
    cr_expect_eq(norm[2], sqrt(3.0 * 3.0 + 4.0 * 4.0));
}

/* Found by the hostile pass: --memory-limit 100M (scores streamed) and 4G
 * (scores cached) gave metric columns one ulp apart, though
 * docs/definitions.md says the limit changes only how.  The cache held the
 * GEMM's dot products, the streaming path lsh_attn_raw's: the cache must hold
 * exactly what lsh_attn_raw gives, also under causal and for sampled rows. */
Test(numerics, the_score_cache_holds_the_bits_the_streaming_path_recomputes)
{
    const size_t n = 300, d = 61;
    double *q = xcalloc(n * d, sizeof *q), *k = xcalloc(n * d, sizeof *k);
    double *v = xcalloc(n, sizeof *v);
    uint64_t s = 2385;
    for (size_t t = 0; t < n * d; t++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        q[t] = (double)(s >> 11) * 0x1p-53 - 0.5;
        s = s * 6364136223846793005u + 1442695040888963407u;
        k[t] = (double)(s >> 11) * 0x1p-53 - 0.5;
    }
    static const uint32_t topk[1] = {2};
    const size_t rows[3] = {0, 150, 299};
    for (int causal = 0; causal < 2; causal++) {
        struct lsh_attn a = {.n = n, .d = d, .d_v = 1, .q = q, .k = k, .v = v, .scale = 0.125,
                             .causal = causal, .n_topk = 1, .topk = topk};
        for (int sampled = 0; sampled < 2; sampled++) {
            struct lsh_reference *ref = NULL;
            struct lsh_error err;
            lsh_error_clear(&err);
            const size_t m = sampled ? 3 : n;
            cr_assert_eq(lsh_reference_compute(&a, sampled ? rows : NULL, sampled ? 3 : 0, 2,
                                               (size_t)-1, &ref, &err), 0, "%s", err.message);
            cr_assert_not_null(ref->raw);
            size_t differ = 0;
            for (size_t r = 0; r < m; r++) {
                const size_t i = sampled ? rows[r] : r;
                for (size_t j = 0; j < n; j++) {
                    const double want = lsh_attn_raw(&a, i, j);
                    differ += memcmp(&ref->raw[r * n + j], &want, sizeof want) != 0;
                }
            }
            cr_expect_eq(differ, 0, "causal %d, sampled %d: %zu cached scores differ", causal,
                         sampled, differ);
            lsh_reference_free(ref);
        }
    }
    free(q);
    free(k);
    free(v);
}

/* lshlab_fma_dots against its definition, bit for bit: every entry one fma
 * chain over e in order, from 0 or from out's value.  Shapes cover every
 * panel width (1-4 vectors and beyond), partial panels, row tails (blocks of
 * 8 or 6 rows, then 4, 2 and 1) and d = 1;
 * natively this runs the AVX-512 or AVX2 kernel, under valgrind the AVX2 one
 * (valgrind has no AVX-512). */
Test(numerics, fma_dots_are_one_fma_chain_per_entry)
{
    const size_t ms[] = {1, 3, 4, 9, 10, 15, 17},
                 bs[] = {1, 3, 4, 5, 8, 9, 13, 16, 17, 31, 32, 33, 64, 70},
                 ds[] = {1, 2, 7, 64};
    uint64_t state = 12345;
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t k = 0; k < sizeof bs / sizeof *bs; k++)
            for (size_t t = 0; t < sizeof ds / sizeof *ds; t++)
                for (int acc = 0; acc < 2; acc++) {
                    const size_t m = ms[a], b = bs[k], d = ds[t], bp = (b + 7) / 8 * 8 + 8;
                    double *x = malloc(m * d * sizeof *x), *y = malloc(d * bp * sizeof *y);
                    double *out = malloc(m * b * sizeof *out), *want = malloc(m * b * sizeof *want);
                    /* values with full mantissas, so that an other order rounds differently */
                    for (size_t i = 0; i < m * d; i++) {
                        state = state * 6364136223846793005u + 1442695040888963407u;
                        x[i] = (double)(state >> 11) / 9007199254740992.0 - 0.5;
                    }
                    for (size_t i = 0; i < d * bp; i++) {
                        state = state * 6364136223846793005u + 1442695040888963407u;
                        y[i] = (double)(state >> 11) / 9007199254740992.0 - 0.5;
                    }
                    for (size_t i = 0; i < m * b; i++)
                        out[i] = want[i] = acc ? x[i % (m * d)] * 3.0 : 1e300; /* 1e300: overwritten */
                    for (size_t i = 0; i < m; i++)
                        for (size_t c = 0; c < b; c++) {
                            double s = acc ? want[i * b + c] : 0.0;
                            for (size_t e = 0; e < d; e++)
                                s = fma(x[i * d + e], y[e * bp + c], s);
                            want[i * b + c] = s;
                        }
                    lshlab_fma_dots(m, b, d, bp, x, y, out, acc);
                    for (size_t i = 0; i < m * b; i++)
                        cr_assert(memcmp(&out[i], &want[i], sizeof *out) == 0,
                                  "m %zu b %zu d %zu accumulate %d entry %zu: %.17g, want %.17g",
                                  m, b, d, acc, i, out[i], want[i]);
                    free(x);
                    free(y);
                    free(out);
                    free(want);
                }
}

/* lsh_chain_dots (the row path's and the oracle's scores without a cache)
 * against its definition, bit for bit: each key's score one fma chain over
 * e = 0 .. d-1 from 0, through row indices or consecutive rows.  d over 64
 * takes several column pieces, nk over 32 several key blocks, and tails of
 * both; a sum in another order (lsh_dot's four partial sums, which the row
 * path used before) differs in about half of these. */
Test(numerics, chain_dots_of_gathered_keys_are_one_fma_chain_per_key)
{
    const size_t ds[] = {1, 5, 8, 63, 64, 65, 130, 200}, nks[] = {1, 7, 8, 9, 32, 33, 70};
    uint64_t state = 777;
    const size_t n = 90;
    for (size_t t = 0; t < sizeof ds / sizeof *ds; t++)
        for (size_t u = 0; u < sizeof nks / sizeof *nks; u++)
            for (int gathered = 0; gathered < 2; gathered++) {
                const size_t d = ds[t], nk = nks[u];
                double *k = malloc(n * d * sizeof *k), *x = malloc(d * sizeof *x);
                double *out = malloc(nk * sizeof *out);
                uint32_t rows[70];
                for (size_t i = 0; i < n * d; i++) {
                    state = state * 6364136223846793005u + 1442695040888963407u;
                    k[i] = (double)(state >> 11) / 9007199254740992.0 - 0.5;
                }
                for (size_t e = 0; e < d; e++) {
                    state = state * 6364136223846793005u + 1442695040888963407u;
                    x[e] = (double)(state >> 11) / 9007199254740992.0 - 0.5;
                }
                for (size_t v = 0; v < nk; v++) {
                    state = state * 6364136223846793005u + 1442695040888963407u;
                    rows[v] = (uint32_t)((state >> 33) % n);
                }
                lsh_chain_dots(d, x, k, gathered ? rows : NULL, nk, out);
                for (size_t v = 0; v < nk; v++) {
                    const double *kr = k + (gathered ? rows[v] : v) * d;
                    double s = 0.0;
                    for (size_t e = 0; e < d; e++)
                        s = fma(x[e], kr[e], s);
                    cr_assert(memcmp(&out[v], &s, sizeof s) == 0,
                              "d %zu nk %zu gathered %d key %zu: %.17g, want %.17g", d, nk,
                              gathered, v, out[v], s);
                    cr_assert(memcmp(&s, &(double){lsh_chain_dot(d, x, kr)}, sizeof s) == 0,
                              "lsh_chain_dot, d %zu key %zu", d, v);
                }
                free(k);
                free(x);
                free(out);
            }
}
