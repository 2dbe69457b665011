/* test_plan.c - expansion of a config into points: counts, order, seeds
 * (n_hashes not in them), skip_invalid, and strategy checks at validation. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
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
