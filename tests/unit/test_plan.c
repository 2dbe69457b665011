/* test_plan.c - expansion of a config into points: counts, order, seeds
 * (n_hashes not in them), skip_invalid, and strategy checks at validation. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dataset.h"
#include "eval.h"
#include "plan.h"
#include "registry.h"
#include "results.h"

static struct lsh_registry *reg;

static void load(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    reg = lsh_registry_alloc();
    cr_assert_not_null(reg);
    const char *dir = getenv("LSHLAB_STRATEGY_PATH");
    cr_assert_not_null(dir, "LSHLAB_STRATEGY_PATH is not set (run through meson test)");
    cr_assert_eq(lsh_registry_load_dir(reg, dir, &err), 0, "%s", err.message);
}

static void unload(void)
{
    lsh_registry_free(reg);
}

TestSuite(plan, .init = load, .fini = unload);

static int build(const char *yaml, struct lsh_config **cfg, struct lsh_plan **plan,
                 struct lsh_error *err)
{
    lsh_error_clear(err);
    *cfg = NULL;
    *plan = NULL;
    int rc = lsh_config_parse(yaml, strlen(yaml), "t.yaml", reg, cfg, err);
    if (!rc)
        rc = lsh_plan_build(*cfg, plan, err);
    return rc;
}

static const char sweep_yaml[] =
    "name: p\n"
    "seed: 3\n"
    "repeats: 2\n"
    "datasets:\n"
    "  - {name: a, kind: gaussian, n: 50, d: 8}\n"
    "  - {name: b, kind: clustered, n: 40, d: 8}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "    params: {orthogonal: [false, true]}\n"
    "  - name: hyperplane\n"
    "sweep:\n"
    "  n_hashes: [4, 1, 2]\n"
    "  n_buckets: [4, 8]\n"
    "  mode: [bucket, chunked]\n"
    "  chunk_size: [8, 16]\n"
    "  look_back: 1\n"
    "  window: [all, same_bucket]\n"
    "  combine: [union, rounds]\n";

Test(plan, counts_follow_the_cartesian_product)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(sweep_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    /* groups: 2 datasets x (2 rotation sets + 1 hyperplane) x 2 B x 2 repeats = 24
     * modes: bucket + chunked x 2 chunk sizes x 1 look_back x 2 windows = 5
     * points per pass: 3 n_hashes x 2 combines = 6 */
    cr_expect_eq(plan->n_groups, 24);
    cr_expect_eq(plan->n_passes, 24 * 5);
    cr_expect_eq(plan->n_points, 24 * 5 * 6);
    cr_expect_eq(plan->n_skipped_groups, 0);
    for (size_t p = 0; p < plan->n_points; p++)
        cr_assert_eq(plan->points[p].id, p);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, point_order_is_hashes_then_combine_within_a_pass)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(sweep_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    const uint32_t want_h[] = {1, 1, 2, 2, 4, 4};
    for (size_t k = 0; k < 6; k++) {
        cr_expect_eq(plan->points[k].n_hashes, want_h[k]);
        cr_expect_eq(plan->points[k].combine, k % 2 ? LSH_COMBINE_ROUNDS : LSH_COMBINE_UNION);
        cr_expect_eq(plan->points[k].pass, 0);
    }
    cr_expect_eq(plan->passes[0].mode.mode, LSH_MODE_BUCKET);
    cr_expect_eq(plan->passes[1].mode.mode, LSH_MODE_CHUNKED);
    cr_expect_eq(plan->passes[1].mode.chunk_size, 8);
    cr_expect_eq(plan->passes[1].mode.window, LSH_WINDOW_ALL);
    cr_expect_eq(plan->passes[2].mode.window, LSH_WINDOW_SAME_BUCKET);
    cr_expect_eq(plan->passes[3].mode.chunk_size, 16);
    cr_expect_eq(plan->groups[0].h_max, 4);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, seeds_differ_by_repeat_bucket_and_params_but_not_by_n_hashes)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(sweep_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    for (size_t g = 0; g < plan->n_groups; g++)
        for (size_t h = g + 1; h < plan->n_groups; h++)
            cr_expect_neq(plan->groups[g].seed, plan->groups[h].seed, "groups %zu, %zu", g, h);
    /* all points of a pass share the group's seed, whatever their n_hashes */
    struct lsh_point_key k0, k5;
    lsh_plan_point_key(plan, cfg, 0, &k0);
    lsh_plan_point_key(plan, cfg, 5, &k5);
    cr_expect_eq(k0.seed, k5.seed);
    cr_expect_neq(k0.n_hashes, k5.n_hashes);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, seeds_do_not_depend_on_the_rest_of_the_sweep)
{
    /* The same point in a smaller config has the same seed (SPEC 7). */
    const char *small =
        "name: p\nseed: 3\nrepeats: 2\n"
        "datasets:\n  - {name: b, kind: clustered, n: 40, d: 8}\n"
        "strategies:\n  - name: hyperplane\n"
        "sweep:\n  n_hashes: 1\n  n_buckets: 8\n";
    struct lsh_config *c1, *c2;
    struct lsh_plan *p1, *p2;
    struct lsh_error err;
    cr_assert_eq(build(sweep_yaml, &c1, &p1, &err), 0, "%s", err.message);
    cr_assert_eq(build(small, &c2, &p2, &err), 0, "%s", err.message);
    int found = 0;
    for (size_t g = 0; g < p1->n_groups; g++) {
        const struct lsh_hash_group *a = &p1->groups[g];
        if (a->dataset == 1 && a->strategy == 1 && a->n_buckets == 8 && a->repeat == 1) {
            cr_expect_eq(a->seed, p2->groups[1].seed);
            found = 1;
        }
    }
    cr_expect(found);
    lsh_plan_free(p1);
    lsh_config_free(c1);
    lsh_plan_free(p2);
    lsh_config_free(c2);
}

Test(plan, invalid_bucket_count_is_an_error_at_its_position)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 50, d: 8}\n"
                       "strategies:\n  - name: rotation\n"
                       "sweep:\n  n_buckets: [4, 7]\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), LSH_ECONFIG);
    cr_expect_eq(err.line, 7);
    cr_expect_eq(err.column, 18);
    cr_expect(strstr(err.message, "7") && strstr(err.message, "rotation"), "%s", err.message);
    cr_expect(strstr(err.message, "skip_invalid"), "%s", err.message);
    lsh_config_free(cfg);
}

Test(plan, skip_invalid_marks_the_group_skipped_with_the_reason)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 50, d: 8}\n"
                       "strategies:\n  - name: hyperplane\n    skip_invalid: true\n"
                       "sweep:\n  n_hashes: [1, 2]\n  n_buckets: [4, 24, 8]\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    cr_expect_eq(plan->n_groups, 3);
    cr_expect_eq(plan->n_points, 6);
    cr_expect_eq(plan->n_skipped_groups, 1);
    cr_expect_null(plan->groups[0].skip_reason);
    cr_assert_not_null(plan->groups[1].skip_reason);
    cr_expect(strstr(plan->groups[1].skip_reason, "24"), "%s", plan->groups[1].skip_reason);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, kmeans_with_more_buckets_than_rows_is_refused)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 10, d: 8}\n"
                       "strategies:\n  - name: kmeans\n"
                       "sweep:\n  n_buckets: 16\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), LSH_ECONFIG);
    cr_expect(strstr(err.message, "kmeans") && strstr(err.message, "16"), "%s", err.message);
    lsh_config_free(cfg);
}

Test(plan, chunk_size_larger_than_n_is_refused)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 10, d: 8}\n"
                       "strategies:\n  - name: hyperplane\n"
                       "sweep:\n  n_buckets: 4\n  mode: chunked\n  chunk_size: 64\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    int rc = build(yaml, &cfg, &plan, &err);
    cr_assert_eq(rc, LSH_ECONFIG);
    cr_expect(strstr(err.message, "64"), "%s", err.message);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

/* ---- memory ------------------------------------------------------------------------ */

/* lo <= got <= lo + slack: a module's figure is what it allocates (hand-counted
 * below) plus at most a little bookkeeping. */
#define expect_bytes(got, lo, slack, what)                                                   \
    cr_expect((got) >= (size_t)(lo) && (got) <= (size_t)(lo) + (size_t)(slack),              \
              "%s: %zu bytes, hand count %zu (+ up to %zu)", what, (size_t)(got),            \
              (size_t)(lo), (size_t)(slack))

Test(plan, memory_figures_are_the_modules_hand_counted_sizes)
{
    /* data: Q 1000 x 16, V 1000 x 8, K too when separate, centres 50 x 16 */
    struct lsh_dataset_spec g = {.kind = LSH_DATA_GAUSSIAN, .n = 1000, .d = 16, .d_v = 8};
    expect_bytes(lsh_dataset_bytes(&g, 1000, 16, 8, 0), 128000 + 64000, 1024, "gaussian");
    expect_bytes(lsh_dataset_bytes(&g, 1000, 16, 8, 1), 2 * 128000 + 64000, 1024, "separate");
    struct lsh_dataset_spec c = {.kind = LSH_DATA_CLUSTERED, .n = 1000, .d = 16, .clusters = 50};
    expect_bytes(lsh_dataset_bytes(&c, 1000, 16, 8, 0), 192000 + 50 * 16 * 8, 1024, "clustered");
    /* reference, n = m = 1000, d 16, d_v 8, top 10: per row lse, sum_a2,
     * gram_den, a row index (8 each), |U_i| (4), O_i (64), top-10 (40); per
     * thread a 256 x 256 block of scores, 256 x 16 query rows, 256 x 10
     * top-k scores, running max and 3 x 8 lane sums of 256 rows, 256 lengths,
     * a chunk of K transposed (16 x 264) and its rows of V (256 x 8) */
    struct lsh_bytes r = lsh_reference_bytes(1000, 1000, 16, 8, 10);
    expect_bytes(r.shared, 1000 * (32 + 4 + 64 + 40), 2048, "reference, shared");
    expect_bytes(r.per_thread,
                 524288 + 32768 + 20480 + 25 * 2048 + 2048 + 16 * 264 * 8 + 256 * 8 * 8, 2048,
                 "reference, per thread");
    /* eval, row path, bucket mode, 4 rounds of 16 buckets: per round the keys
     * sorted by bucket (4 n) and 17 starts; per thread 6 index arrays (4 n)
     * and 2 score arrays (8 n); the row order (8 m) */
    struct lsh_eval_shape es = {.n = 1000, .m = 1000, .d = 16, .d_v = 8, .n_topk = 1,
                                .h_max = 4, .n_buckets = 16, .n_prefix = 2, .n_combine = 2};
    struct lsh_mode_opts bucket = {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0};
    struct lsh_bytes e = lsh_eval_bytes(&es, &bucket, 0);
    expect_bytes(e.per_thread, 1000 * 40, 2048, "eval rows, per thread");
    /* + partial sums: 17 blocks x 2 x 2 x (9 metrics x 5 sums) doubles */
    expect_bytes(e.shared, 4 * (4000 + 68) + 8000 + 17 * 4 * 45 * 8, 4096, "eval rows, shared");
}

/* At n = 64k the old model budgeted a 33 MB score block per thread for the
 * reference (0.7 MB used) and refused -j 8 under 700 MiB; what is
 * allocated fits. */
Test(plan, a_64k_dataset_that_fits_is_not_refused)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 65536, d: 64}\n"
                       "strategies:\n  - name: hyperplane\n"
                       "sweep:\n  n_hashes: 8\n  n_buckets: 64\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    lsh_error_clear(&err);
    cr_expect_eq(lsh_plan_check_memory(cfg, plan, 8, (size_t)700 << 20, &err), 0, "%s",
                 err.message);
    /* Q and V alone are 64 MiB: not below that either */
    cr_expect_eq(lsh_plan_check_memory(cfg, plan, 8, (size_t)64 << 20, &err), LSH_ECONFIG);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

/* d = 2^61 (and d_v, clusters = 2^58) wrapped n x d around to a small number:
 * the check passed and the reference overflowed a heap buffer. */
Test(plan, sizes_that_overflow_are_refused_by_the_memory_check)
{
    static const char *const datasets[] = {
        "{name: a, kind: gaussian, n: 8, d: 2305843009213693952}",
        "{name: a, kind: gaussian, n: 8, d: 4, d_v: 2305843009213693952}",
        "{name: a, kind: clustered, n: 8, d: 64, clusters: 288230376151711744}",
    };
    for (size_t t = 0; t < sizeof datasets / sizeof datasets[0]; t++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 "name: p\ndatasets:\n  - %s\nstrategies:\n  - name: hyperplane\n"
                 "sweep:\n  n_buckets: 4\n",
                 datasets[t]);
        struct lsh_config *cfg;
        struct lsh_plan *plan;
        struct lsh_error err;
        int rc = build(yaml, &cfg, &plan, &err);
        if (rc) { /* refused earlier, by the config checks: as good */
            cr_expect_eq(rc, LSH_ECONFIG, "%s: %s", datasets[t], err.message);
            lsh_config_free(cfg);
            continue;
        }
        lsh_error_clear(&err);
        cr_expect_eq(lsh_plan_check_memory(cfg, plan, 2, (size_t)1 << 40, &err), LSH_ECONFIG,
                     "%s was admitted", datasets[t]);
        cr_expect(strstr(err.message, "'a'") != NULL, "%s", err.message);
        struct lsh_memory mem;
        lsh_plan_memory(cfg, plan, 0, &mem);
        cr_expect_eq(lsh_memory_total(&mem, 2, 0), SIZE_MAX, "%s", datasets[t]);
        lsh_plan_free(plan);
        lsh_config_free(cfg);
    }
}

/* The collision experiment was not counted: 4M pairs of d = 512 take 32 GiB
 * for the pairs alone. */
static int fit_nothing(void *state, const double *x, size_t n, size_t d,
                       struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)n, (void)d, (void)err;
    return 0;
}

Test(plan, the_collision_experiment_is_counted)
{
    /* a strategy that fits: the host gives each fit a private copy of the rows */
    static const struct lsh_strategy fitting = {.name = "fitting", .fit = fit_nothing};
    struct lsh_strategy_spec spec = {.name = "fitting", .strategy = &fitting, .n_sets = 1};
    struct lsh_config cfg = {.experiment = LSH_EXPERIMENT_COLLISION, .strategies = &spec,
                             .n_strategies = 1};
    uint32_t hashes[1] = {4};
    cfg.sweep.n_hashes = hashes;
    cfg.sweep.n_n_hashes = 1;
    cfg.sweep.n_n_buckets = 1;
    cfg.collision.pairs = 4000000;
    cfg.collision.d = 512;
    /* 2 x 4M x 512 doubles, the 8M buckets per thread, the fit copy per thread */
    const size_t pairs = (size_t)2 * 4000000 * 512 * 8;
    const size_t got = lsh_plan_collision_memory(&cfg, 1);
    cr_expect(got >= 2 * pairs + 8000000 * 4 && got <= 2 * pairs + ((size_t)128 << 20),
              "%zu bytes", got);
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_expect_eq(lsh_plan_check_collision_memory(&cfg, 1, (size_t)4 << 30, &err), LSH_ECONFIG);
    cr_expect(strstr(err.message, "collision") != NULL, "%s", err.message);
    cfg.collision.pairs = 1000;
    cr_expect_eq(lsh_plan_check_collision_memory(&cfg, 1, (size_t)4 << 30, &err), 0, "%s",
                 err.message);
}

/* The score cache is kept when it fits beside the rest on one thread, for
 * every -j; the threads are capped to what fits beside it. */
Test(plan, the_cache_choice_does_not_depend_on_threads)
{
    const struct lsh_memory mem = {.shared = 100, .per_thread = 10, .cache = 50};
    int cache;
    for (unsigned j = 1; j <= 3; j++) {
        cr_expect_eq(lsh_plan_threads(&mem, j, 160, &cache), 1); /* 100 + 10 + 50 */
        cr_expect_eq(cache, 1, "-j %u", j);
        cr_expect_eq(lsh_plan_threads(&mem, j, 159, &cache), j);
        cr_expect_eq(cache, 0, "-j %u", j);
        cr_expect_eq(lsh_plan_threads(&mem, j, 180, &cache), j < 3 ? j : 3);
        cr_expect_eq(cache, 1, "-j %u", j);
    }
    cr_expect_eq(lsh_plan_threads(&mem, 8, 185, &cache), 3);
    const struct lsh_memory none = {.shared = 100, .per_thread = 10, .cache = 0};
    cr_expect_eq(lsh_plan_threads(&none, 4, 1000, &cache), 4);
    cr_expect_eq(cache, 0);
}

/* ---- candidate rules (SPEC 13) and combine importance (SPEC 14) ------------------------ */

/* One group; passes: bucket, then chunked c=8 lb=1 window all, each with
 * min_collisions [2, 1] x sink [0, 3] x local [5]. */
static const char rules_yaml[] =
    "name: r\n"
    "datasets:\n  - {name: a, kind: gaussian, n: 50, d: 8}\n"
    "strategies:\n  - name: hyperplane\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: 4\n"
    "  mode: [bucket, chunked]\n"
    "  chunk_size: 8\n"
    "  combine: union\n"
    "  min_collisions: [2, 1]\n"
    "  sink: [0, 3]\n"
    "  local: 5\n";

Test(plan, candidate_rules_make_passes_after_the_mode_setting_in_the_order_given)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(rules_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    /* worked by hand: 2 mode settings x 2 t x 2 s x 1 w = 8 passes of 2 points */
    cr_assert_eq(plan->n_groups, 1);
    cr_assert_eq(plan->n_passes, 8);
    cr_assert_eq(plan->n_points, 16);
    const struct { enum lsh_mode mode; uint32_t t, s; } want[8] = {
        {LSH_MODE_BUCKET, 2, 0},  {LSH_MODE_BUCKET, 2, 3},
        {LSH_MODE_BUCKET, 1, 0},  {LSH_MODE_BUCKET, 1, 3},
        {LSH_MODE_CHUNKED, 2, 0}, {LSH_MODE_CHUNKED, 2, 3},
        {LSH_MODE_CHUNKED, 1, 0}, {LSH_MODE_CHUNKED, 1, 3},
    };
    for (size_t pa = 0; pa < 8; pa++) {
        const struct lsh_mode_opts *m = &plan->passes[pa].mode;
        cr_expect_eq(m->mode, want[pa].mode, "pass %zu", pa);
        cr_expect_eq(m->min_collisions, want[pa].t, "pass %zu", pa);
        cr_expect_eq(m->sink, want[pa].s, "pass %zu", pa);
        cr_expect_eq(m->local, 5, "pass %zu", pa);
        cr_expect_eq(m->chunk_size, want[pa].mode == LSH_MODE_CHUNKED ? 8u : 0u);
        cr_expect_eq(plan->passes[pa].first_point, 2 * pa);
    }
    /* point 5 = pass 2 (bucket, t 1, s 0), n_hashes 2: its key carries the rule */
    struct lsh_point_key k;
    lsh_plan_point_key(plan, cfg, 5, &k);
    cr_expect_eq(k.point_id, 5);
    cr_expect_eq(k.mode, LSH_MODE_BUCKET);
    cr_expect_eq(k.n_hashes, 2);
    cr_expect_eq(k.min_collisions, 1);
    cr_expect_eq(k.sink, 0);
    cr_expect_eq(k.local, 5);
    /* the rule is not part of the seed: every pass of the group has one */
    struct lsh_point_key k0;
    lsh_plan_point_key(plan, cfg, 0, &k0);
    cr_expect_eq(k0.seed, k.seed);
    cr_expect_eq(k0.min_collisions, 2);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, default_rules_keep_the_plan_and_seeds_of_a_config_without_them)
{
    static const char tail[] = "  min_collisions: 1\n  sink: [0]\n  local: 0\n";
    char with[sizeof sweep_yaml + sizeof tail];
    snprintf(with, sizeof with, "%s%s", sweep_yaml, tail);
    struct lsh_config *c0, *c1;
    struct lsh_plan *p0, *p1;
    struct lsh_error err;
    cr_assert_eq(build(sweep_yaml, &c0, &p0, &err), 0, "%s", err.message);
    cr_assert_eq(build(with, &c1, &p1, &err), 0, "%s", err.message);
    cr_assert_eq(p0->n_points, p1->n_points);
    cr_assert_eq(p0->n_passes, p1->n_passes);
    for (size_t p = 0; p < p0->n_points; p++) {
        struct lsh_point_key a, b;
        lsh_plan_point_key(p0, c0, p, &a);
        lsh_plan_point_key(p1, c1, p, &b);
        cr_expect_eq(a.seed, b.seed);
        cr_expect_eq(a.n_hashes, b.n_hashes);
        cr_expect_eq(a.mode, b.mode);
        cr_expect_eq(a.min_collisions, 1);
        cr_expect_eq(b.min_collisions, 1);
        cr_expect_eq(a.sink + a.local + b.sink + b.local, 0);
    }
    lsh_plan_free(p0);
    lsh_plan_free(p1);
    lsh_config_free(c0);
    lsh_config_free(c1);
}

/* k-means publishes no collision law (SPEC 12.1: NaN for every other rule). */
Test(plan, importance_without_a_law_is_refused_at_the_strategy)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 50, d: 8}\n"
                       "strategies:\n  - name: kmeans\n"
                       "sweep:\n  n_buckets: 4\n  combine: [union, importance]\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), LSH_ECONFIG);
    cr_expect_null(plan);
    cr_expect_eq(err.line, 5, "%d:%d %s", err.line, err.column, err.message);
    cr_expect_eq(err.column, 5, "%d:%d %s", err.line, err.column, err.message);
    cr_expect(strstr(err.message, "combine importance needs a collision law"), "%s",
              err.message);
    cr_expect(strstr(err.message, "kmeans"), "%s", err.message);
    cr_expect(strstr(err.message, "(line 8, column 20)"), "%s", err.message);
    cr_expect(strstr(err.message, "skip_invalid"), "%s", err.message);
    lsh_config_free(cfg);
}

Test(plan, importance_without_a_law_skips_the_group_with_skip_invalid)
{
    const char *yaml = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 50, d: 8}\n"
                       "strategies:\n  - name: kmeans\n    skip_invalid: true\n"
                       "sweep:\n  n_hashes: [1, 2]\n  n_buckets: [4, 8]\n"
                       "  combine: [union, importance]\n";
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(yaml, &cfg, &plan, &err), 0, "%s", err.message);
    cr_expect_eq(plan->n_groups, 2);
    cr_expect_eq(plan->n_points, 8);
    cr_expect_eq(plan->n_skipped_groups, 2);
    for (size_t g = 0; g < 2; g++) {
        cr_assert_not_null(plan->groups[g].skip_reason);
        cr_expect(strstr(plan->groups[g].skip_reason, "collision law"), "%s",
                  plan->groups[g].skip_reason);
    }
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, the_oracle_and_importance_reach_the_memory_figure)
{
    /* lsh_plan_memory passes shape.importance and shape.oracle to eval's
     * figure: whatever eval counts for them is in the dataset's total */
    const char *base = "name: p\n"
                       "datasets:\n  - {name: a, kind: gaussian, n: 2000, d: 16}\n"
                       "strategies:\n  - name: hyperplane\n"
                       "sweep:\n  n_hashes: [1, 4]\n  n_buckets: 8\n  combine: [union, rounds]\n";
    char with[1024];
    snprintf(with, sizeof with, "%sattention: {oracle: true}\n", base);
    struct lsh_config *c0, *c1;
    struct lsh_plan *p0, *p1;
    struct lsh_error err;
    cr_assert_eq(build(base, &c0, &p0, &err), 0, "%s", err.message);
    cr_assert_eq(build(with, &c1, &p1, &err), 0, "%s", err.message);
    struct lsh_memory m0, m1;
    lsh_plan_memory(c0, p0, 0, &m0);
    lsh_plan_memory(c1, p1, 0, &m1);
    struct lsh_eval_shape s = {.n = 2000, .m = 2000, .d = 16, .d_v = 16, .n_topk = 2,
                               .h_max = 4, .n_buckets = 8, .n_prefix = 2, .n_combine = 2};
    const struct lsh_mode_opts mode = {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0};
    const struct lsh_bytes e0 = lsh_eval_bytes(&s, &mode, 0);
    s.oracle = 1;
    const struct lsh_bytes e1 = lsh_eval_bytes(&s, &mode, 0);
    cr_expect_eq(m1.shared - m0.shared, e1.shared - e0.shared);
    cr_expect_eq(m1.per_thread - m0.per_thread, e1.per_thread - e0.per_thread);
    lsh_plan_free(p0);
    lsh_plan_free(p1);
    lsh_config_free(c0);
    lsh_config_free(c1);
}

/* ---- the spread over MPI ranks (SPEC 15) ------------------------------------------- */

#include "reference.h"
#include "spread.h"

static const char spread_yaml[] =
    "name: s\n"
    "seed: 1\n"
    "datasets:\n"
    "  - {name: small1, kind: gaussian, n: 64, d: 4}\n"
    "  - {name: big, kind: gaussian, n: 40000, d: 4}\n"
    "  - {name: small2, kind: gaussian, n: 32, d: 4}\n"
    "strategies:\n"
    "  - name: hyperplane\n"
    "  - name: random\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: [2, 4, 8]\n";

Test(plan, spread_cuts_groups_contiguously_and_a_large_unit_by_slices)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(spread_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    cr_assert_eq(plan->n_groups, 18); /* 3 datasets x 2 strategies x 3 bucket counts */
    for (unsigned ranks = 1; ranks <= 4; ranks++) {
        struct lsh_spread sp;
        cr_assert_eq(lsh_spread_plan(cfg, plan, NULL, ranks, &sp, &err), 0, "%s", err.message);
        /* small1 | big (by rows) | small2: each whole run of units is its own segment */
        cr_assert_eq(sp.n_segments, 3);
        const size_t firsts[] = {0, 6, 12}, ends[] = {6, 12, 18};
        for (size_t k = 0; k < 3; k++) {
            const struct lsh_spread_segment *s = &sp.segments[k];
            cr_assert_eq(s->first_group, firsts[k]);
            cr_assert_eq(s->end_group, ends[k]);
            cr_assert_eq(s->by_rows, k == 1);
            cr_assert_eq(s->cut[0], s->by_rows ? 0 : s->first_group);
            size_t points = 0;
            for (unsigned r = 0; r < ranks; r++) {
                cr_assert_leq(s->cut[r], s->cut[r + 1], "cuts ascend");
                points += s->points[r];
            }
            if (s->by_rows) {
                /* 40000 rows: 3 slices of 16384; the first ranks take one more */
                cr_assert_eq(s->slices, (40000 + lsh_slice_rows() - 1) / lsh_slice_rows());
                cr_assert_eq(s->cut[ranks], s->slices);
                cr_assert_geq(s->cut[1], 1, "rank 0 always has rows");
                for (unsigned r = 0; r + 1 < ranks; r++)
                    cr_assert_geq(s->cut[r + 1] - s->cut[r], s->cut[r + 2] - s->cut[r + 1]);
            } else {
                cr_assert_eq(s->cut[ranks], s->end_group, "every group is someone's");
                cr_assert_eq(points, 12, "each group's 2 points once");
            }
        }
        lsh_spread_free(&sp);
    }
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}

Test(plan, spread_gives_done_points_no_work)
{
    struct lsh_config *cfg;
    struct lsh_plan *plan;
    struct lsh_error err;
    cr_assert_eq(build(spread_yaml, &cfg, &plan, &err), 0, "%s", err.message);
    unsigned char *done = calloc(plan->n_points, 1);
    /* small1 done but its last group's points: that group is all there is */
    for (size_t p = 0; p < 10; p++)
        done[p] = 1;
    struct lsh_spread sp;
    cr_assert_eq(lsh_spread_plan(cfg, plan, done, 2, &sp, &err), 0, "%s", err.message);
    const struct lsh_spread_segment *s = &sp.segments[0];
    cr_assert_eq(s->points[0] + s->points[1], 2);
    cr_assert_eq((s->cost[0] > 0.0) + (s->cost[1] > 0.0), 1,
                 "one rank gets the one group left");
    lsh_spread_free(&sp);
    free(done);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
}
