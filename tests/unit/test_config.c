/* test_config.c - the YAML configuration (SPEC 10): the spec's examples, every
 * default, the parameter sweep expansion, the resolved YAML, and every error
 * path with its code, file:line:column and message. */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "plan.h"
#include "registry.h"
#include "results.h"

static struct lsh_registry *reg;

static void setup(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    reg = lsh_registry_alloc();
    cr_assert_not_null(reg);
    const char *dir = getenv("LSHLAB_STRATEGY_PATH");
    cr_assert_not_null(dir, "LSHLAB_STRATEGY_PATH is not set (run the tests with meson test)");
    cr_assert_eq(lsh_registry_load_dir(reg, dir, &err), 0, "%s", err.message);
}

static void teardown(void)
{
    lsh_registry_free(reg);
    reg = NULL;
}

TestSuite(config, .init = setup, .fini = teardown);

/* ---- helpers ---------------------------------------------------------------- */

static struct lsh_config *parse_ok(const char *yaml)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_config_parse(yaml, strlen(yaml), "test.yaml", reg, &cfg, &err);
    cr_assert_eq(rc, 0, "unexpected error %d at %d:%d: %s", rc, err.line, err.column,
                 err.message);
    cr_assert_not_null(cfg);
    return cfg;
}

/* Parse yaml, expect error code at line:column, and every phrase (a
 * NULL-terminated list) in the message. */
static void expect_error(const char *yaml, size_t len, int code, int line, int column, ...)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_config_parse(yaml, len, "test.yaml", reg, &cfg, &err);
    cr_assert_eq(rc, code, "expected code %d, got %d (%d:%d: %s)", code, rc, err.line,
                 err.column, err.message);
    cr_assert_eq(err.code, code);
    cr_assert_null(cfg, "out must not be written on failure");
    cr_assert_str_eq(err.file, "test.yaml");
    cr_assert_eq(err.line, line, "line %d, expected %d: %s", err.line, line, err.message);
    cr_assert_eq(err.column, column, "column %d, expected %d: %s", err.column, column,
                 err.message);
    va_list ap;
    va_start(ap, column);
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *))
        cr_assert_not_null(strstr(err.message, p), "'%s' not in message: %s", p, err.message);
    va_end(ap);
}

#define BAD(yaml, line, column, ...) \
    expect_error(yaml, strlen(yaml), LSH_ECONFIG, line, column, __VA_ARGS__, (const char *)NULL)

/* A config that parses but whose plan is refused (the checks that need a
 * dataset's shape are made once, in plan.c): code, place and phrases. */
static void expect_plan_error(const char *yaml, int line, int column, ...)
{
    struct lsh_config *cfg = parse_ok(yaml);
    struct lsh_plan *plan = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_plan_build(cfg, &plan, &err);
    cr_assert_eq(rc, LSH_ECONFIG, "expected LSH_ECONFIG, got %d: %s", rc, err.message);
    cr_assert_null(plan);
    cr_assert_str_eq(err.file, "test.yaml");
    cr_assert_eq(err.line, line, "line %d, expected %d: %s", err.line, line, err.message);
    cr_assert_eq(err.column, column, "column %d, expected %d: %s", err.column, column,
                 err.message);
    va_list ap;
    va_start(ap, column);
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *))
        cr_assert_not_null(strstr(err.message, p), "'%s' not in message: %s", p, err.message);
    va_end(ap);
    /* the same without an error struct must not crash (plan.c wrote through NULL) */
    cr_assert_eq(lsh_plan_build(cfg, &plan, NULL), LSH_ECONFIG);
    lsh_config_free(cfg);
}

#define BAD_PLAN(yaml, line, column, ...) \
    expect_plan_error(yaml, line, column, __VA_ARGS__, (const char *)NULL)

static char *case_path(const char *name)
{
    const char *root = getenv("LSHLAB_SOURCE_ROOT");
    cr_assert_not_null(root, "LSHLAB_SOURCE_ROOT is not set (run the tests with meson test)");
    static char path[4096];
    snprintf(path, sizeof path, "%s/tests/unit/config_cases/%s", root, name);
    return path;
}

static struct lsh_config *load_case(const char *name)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_config_load(case_path(name), reg, &cfg, &err);
    cr_assert_eq(rc, 0, "%s:%d:%d: %s", err.file, err.line, err.column, err.message);
    return cfg;
}

/* The smallest valid sweep; tests that provoke an error edit one line of it. */
#define HEAD "name: t\n"                       /* 1 */
#define DATASETS                                \
    "datasets:\n"                     /* 2 */   \
    "  - name: g\n"                   /* 3 */   \
    "    kind: gaussian\n"            /* 4 */   \
    "    n: 100\n"                    /* 5 */   \
    "    d: 8\n"                      /* 6 */
#define STRATEGIES                              \
    "strategies:\n"                   /* 7 */   \
    "  - name: hyperplane\n"          /* 8 */
#define SWEEP                                   \
    "sweep:\n"                        /* 9 */   \
    "  n_buckets: 4\n"                /* 10 */
#define MINIMAL HEAD DATASETS STRATEGIES SWEEP

/* ---- the SPEC's examples ---------------------------------------------------- */

Test(config, spec_sweep_example_parses_to_its_values)
{
    struct lsh_config *cfg = load_case("reformer-ablation.yaml");
    cr_assert(strstr(cfg->path, "reformer-ablation.yaml"));
    cr_assert(strstr(cfg->text, "name: reformer-ablation\nseed: 2020\n") == cfg->text);
    cr_assert_str_eq(cfg->name, "reformer-ablation");
    cr_assert_eq(cfg->seed, 2020);
    cr_assert_eq(cfg->repeats, 3);
    cr_assert_str_eq(cfg->output, "results/reformer-ablation.h5");
    cr_assert_eq(cfg->experiment, LSH_EXPERIMENT_SWEEP);

    cr_assert_eq(cfg->n_datasets, 2);
    const struct lsh_dataset_spec *c4 = &cfg->datasets[0], *g1 = &cfg->datasets[1];
    cr_assert_str_eq(c4->name, "clustered-4k");
    cr_assert_eq(c4->kind, LSH_DATA_CLUSTERED);
    cr_assert_eq(c4->n, 4096);
    cr_assert_eq(c4->d, 64);
    cr_assert_eq(c4->d_v, 64);
    cr_assert_eq(c4->clusters, 32);
    cr_assert_eq(c4->spread, 0.5);
    cr_assert_lt(c4->norm, 0, "norm: default (sqrt(d)) is stored as < 0");
    cr_assert_eq(c4->reference_rows, 0);
    cr_assert_eq(c4->line, 7);
    cr_assert_eq(c4->column, 5);
    cr_assert_null(c4->file);
    cr_assert_str_eq(g1->name, "gaussian-1k");
    cr_assert_eq(g1->kind, LSH_DATA_GAUSSIAN);
    cr_assert_eq(g1->n, 1024);
    cr_assert_eq(g1->d, 64);
    cr_assert_eq(g1->d_v, 0, "d_v defaults to 0, meaning d");
    cr_assert_eq(g1->line, 14);

    const struct lsh_attention *a = &cfg->attention;
    cr_assert_eq(a->keys, LSH_KEYS_SHARED);
    cr_assert_eq(a->exclude_self, 1);
    cr_assert_eq(a->causal, 0);
    cr_assert_eq(a->scale_auto, 1);
    cr_assert_eq(a->n_topk, 2);
    cr_assert_eq(a->topk[0], 1);
    cr_assert_eq(a->topk[1], 10);

    cr_assert_eq(cfg->n_strategies, 3);
    const struct lsh_strategy_spec *rot = &cfg->strategies[0], *hyp = &cfg->strategies[1],
                                   *km = &cfg->strategies[2];
    cr_assert_str_eq(rot->name, "rotation");
    cr_assert_eq(rot->strategy, lsh_registry_find(reg, "rotation"));
    cr_assert_eq(rot->skip_invalid, 0);
    cr_assert_eq(rot->line, 25);
    cr_assert_eq(rot->n_sets, 1);
    cr_assert_eq(rot->sets[0].n_params, 2);
    cr_assert_str_eq(rot->sets[0].canonical, "orthogonal=false,factors=[]");
    cr_assert_eq(rot->sets[0].values[0].type, LSH_PARAM_BOOL);
    cr_assert_eq(rot->sets[0].values[0].i, 0);
    cr_assert_eq(rot->sets[0].values[1].type, LSH_PARAM_INT_LIST);
    cr_assert_eq(rot->sets[0].values[1].list_len, 0);
    cr_assert_str_eq(hyp->name, "hyperplane");
    cr_assert_eq(hyp->n_sets, 1);
    cr_assert_eq(hyp->sets[0].n_params, 0);
    cr_assert_str_eq(hyp->sets[0].canonical, "");
    cr_assert_eq(km->n_sets, 2);
    cr_assert_str_eq(km->sets[0].canonical, "iterations=1,init=random");
    cr_assert_str_eq(km->sets[1].canonical, "iterations=10,init=random");
    cr_assert_eq(km->sets[1].values[0].i, 10);
    cr_assert_str_eq(km->sets[1].values[1].choice, "random");

    const struct lsh_sweep *s = &cfg->sweep;
    uint32_t nh[] = {1, 2, 4, 8}, nb[] = {8, 16, 32, 64};
    cr_assert_eq(s->n_n_hashes, 4);
    cr_assert_arr_eq(s->n_hashes, nh, sizeof nh);
    cr_assert_eq(s->n_n_buckets, 4);
    cr_assert_arr_eq(s->n_buckets, nb, sizeof nb);
    cr_assert_eq(s->n_buckets_marks[0].line, 31);
    cr_assert_eq(s->n_buckets_marks[0].column, 15);
    cr_assert_eq(s->n_buckets_marks[3].line, 31);
    cr_assert_eq(s->n_buckets_marks[3].column, 26);
    cr_assert_eq(s->n_mode, 1);
    cr_assert_eq(s->mode[0], LSH_MODE_BUCKET);
    cr_assert_eq(s->n_chunk_size, 1);
    cr_assert_eq(s->chunk_size[0], 64);
    cr_assert_eq(s->n_look_back, 1);
    cr_assert_eq(s->look_back[0], 1);
    cr_assert_eq(s->n_window, 1);
    cr_assert_eq(s->window[0], LSH_WINDOW_ALL);
    cr_assert_eq(s->n_combine, 1);
    cr_assert_eq(s->combine[0], LSH_COMBINE_UNION);
    cr_assert_eq(cfg->dump, 0);
    lsh_config_free(cfg);
}

Test(config, spec_collision_example_parses_to_its_values)
{
    struct lsh_config *cfg = load_case("collision.yaml");
    cr_assert_str_eq(cfg->name, "collision");
    cr_assert_eq(cfg->experiment, LSH_EXPERIMENT_COLLISION);
    cr_assert_eq(cfg->seed, 7);
    cr_assert_eq(cfg->repeats, 1);
    cr_assert_str_eq(cfg->output, "results/collision.h5");
    cr_assert_eq(cfg->n_datasets, 0);
    cr_assert_eq(cfg->collision.d, 64);
    cr_assert_eq(cfg->collision.pairs, 20000);
    double angles[] = {10, 20, 30, 45, 60, 75, 90, 120, 150};
    cr_assert_eq(cfg->collision.n_angles, 9);
    for (size_t i = 0; i < 9; i++)
        cr_assert_eq(cfg->collision.angles[i], angles[i]);
    cr_assert_eq(cfg->n_strategies, 2);
    cr_assert_eq(cfg->sweep.n_n_hashes, 1);
    cr_assert_eq(cfg->sweep.n_hashes[0], 16);
    uint32_t nb[] = {2, 4, 8, 16, 64};
    cr_assert_eq(cfg->sweep.n_n_buckets, 5);
    cr_assert_arr_eq(cfg->sweep.n_buckets, nb, sizeof nb);
    lsh_config_free(cfg);
}

/* Hand-written: every default of the SPEC example filled in. */
static const char resolved_example[] =
    "name: reformer-ablation\n"
    "seed: 2020\n"
    "repeats: 3\n"
    "output: results/reformer-ablation.h5\n"
    "experiment: sweep\n"
    "datasets:\n"
    "  - name: clustered-4k\n"
    "    kind: clustered\n"
    "    n: 4096\n"
    "    d: 64\n"
    "    d_v: 64\n"
    "    clusters: 32\n"
    "    spread: 0.5\n"
    "    norm: 8\n"
    "    reference_rows: all\n"
    "  - name: gaussian-1k\n"
    "    kind: gaussian\n"
    "    n: 1024\n"
    "    d: 64\n"
    "    d_v: 64\n"
    "    reference_rows: all\n"
    "attention:\n"
    "  keys: shared\n"
    "  exclude_self: true\n"
    "  causal: false\n"
    "  scale: auto\n"
    "  topk: [1, 10]\n"
    "  oracle: false\n"
    "strategies:\n"
    "  - name: rotation\n"
    "    skip_invalid: false\n"
    "    params: {orthogonal: [false], factors: [[]]}\n"
    "  - name: hyperplane\n"
    "    skip_invalid: false\n"
    "    params: {}\n"
    "  - name: kmeans\n"
    "    skip_invalid: false\n"
    "    params: {iterations: [1, 10], init: [random], balanced: [false]}\n"
    "sweep:\n"
    "  n_hashes: [1, 2, 4, 8]\n"
    "  n_buckets: [8, 16, 32, 64]\n"
    "  mode: [bucket]\n"
    "  chunk_size: [64]\n"
    "  look_back: [1]\n"
    "  window: [all]\n"
    "  combine: [union]\n"
    "  min_collisions: [1]\n"
    "  sink: [0]\n"
    "  local: [0]\n"
    "dump: []\n";

Test(config, spec_sweep_example_resolves_every_default)
{
    struct lsh_config *cfg = load_case("reformer-ablation.yaml");
    char *y = lsh_config_resolved_yaml(cfg);
    cr_assert_not_null(y);
    cr_assert_str_eq(y, resolved_example);
    free(y);
    lsh_config_free(cfg);
}

Test(config, spec_collision_example_resolves_every_default)
{
    struct lsh_config *cfg = load_case("collision.yaml");
    char *y = lsh_config_resolved_yaml(cfg);
    cr_assert_str_eq(y, "name: collision\n"
                        "seed: 7\n"
                        "repeats: 1\n"
                        "output: results/collision.h5\n"
                        "experiment: collision\n"
                        "collision:\n"
                        "  d: 64\n"
                        "  angles: [10, 20, 30, 45, 60, 75, 90, 120, 150]\n"
                        "  pairs: 20000\n"
                        "strategies:\n"
                        "  - name: rotation\n"
                        "    skip_invalid: false\n"
                        "    params: {orthogonal: [false], factors: [[]]}\n"
                        "  - name: hyperplane\n"
                        "    skip_invalid: false\n"
                        "    params: {}\n"
                        "sweep:\n"
                        "  n_hashes: [16]\n"
                        "  n_buckets: [2, 4, 8, 16, 64]\n"
                        "dump: []\n");
    free(y);
    lsh_config_free(cfg);
}

/* Resolving is idempotent: the resolved YAML is itself a valid config that
 * resolves to the same text (what --resume compares). */
static void check_fixpoint(const char *yaml)
{
    struct lsh_config *cfg = parse_ok(yaml);
    char *y1 = lsh_config_resolved_yaml(cfg);
    cr_assert_not_null(y1);
    struct lsh_config *again = parse_ok(y1);
    char *y2 = lsh_config_resolved_yaml(again);
    cr_assert_str_eq(y2, y1);
    free(y1);
    free(y2);
    lsh_config_free(again);
    lsh_config_free(cfg);
}


Test(config, resolved_yaml_is_a_fixpoint)
{
    check_fixpoint(resolved_example);
    check_fixpoint(MINIMAL);
    check_fixpoint("name: big.one\n"
                   "seed: 18446744073709551615\n"
                   "repeats: 2\n"
                   "output: \"/tmp/out dir/x\\\"y.h5\"\n"
                   "dump: [rows, data]\n"
                   "datasets:\n"
                   "  - name: h\n"
                   "    kind: hdf5\n"
                   "    file: \"data/q k.h5\"\n"
                   "    q: /q\n"
                   "    k: /k\n"
                   "    reference_rows: 10\n"
                   "  - name: c\n"
                   "    kind: clustered\n"
                   "    n: 50\n"
                   "    d: 3\n"
                   "    clusters: 2\n"
                   "    spread: 0\n"
                   "    norm: 0.1\n"
                   "  - name: h2\n"
                   "    kind: hdf5\n"
                   "    file: x.h5\n"
                   "    q: q\n"
                   "    d_v: 5\n"
                   "attention: {keys: separate, causal: true, scale: 0.3, topk: 5}\n"
                   "strategies:\n"
                   "  - name: rotation\n"
                   "    skip_invalid: true\n"
                   "    params: {orthogonal: [true, false], factors: [[2, 4], [8]]}\n"
                   "  - name: kmeans\n"
                   "    params: {init: [kmeans++, random], iterations: 0}\n"
                   "  - name: rotation\n"
                   "    params: {factors: [4, 2]}\n"
                   "sweep:\n"
                   "  n_hashes: [4, 1]\n"
                   "  n_buckets: [8, 2]\n"
                   "  mode: [chunked, bucket]\n"
                   "  chunk_size: [16, 8]\n"
                   "  look_back: [0, 2]\n"
                   "  window: [same_bucket, all]\n"
                   "  combine: [rounds, union]\n");
}

/* ---- defaults and values ------------------------------------------------------ */

Test(config, minimal_config_gets_every_default)
{
    struct lsh_config *cfg = parse_ok(MINIMAL);
    cr_assert_str_eq(cfg->path, "test.yaml");
    cr_assert_str_eq(cfg->text, MINIMAL);
    cr_assert_eq(cfg->seed, 0);
    cr_assert_eq(cfg->repeats, 1);
    cr_assert_str_eq(cfg->output, "results/t.h5");
    cr_assert_eq(cfg->experiment, LSH_EXPERIMENT_SWEEP);
    cr_assert_eq(cfg->dump, 0);
    const struct lsh_dataset_spec *ds = &cfg->datasets[0];
    cr_assert_eq(ds->d_v, 0);
    cr_assert_eq(ds->reference_rows, 0);
    cr_assert_eq(ds->clusters, 16);
    cr_assert_eq(ds->spread, 0.5);
    cr_assert_lt(ds->norm, 0);
    const struct lsh_attention *a = &cfg->attention;
    cr_assert_eq(a->keys, LSH_KEYS_SHARED);
    cr_assert_eq(a->exclude_self, 1);
    cr_assert_eq(a->causal, 0);
    cr_assert_eq(a->scale_auto, 1);
    cr_assert_eq(a->n_topk, 2);
    cr_assert_eq(a->topk[0], 1);
    cr_assert_eq(a->topk[1], 10);
    const struct lsh_sweep *s = &cfg->sweep;
    cr_assert_eq(s->n_n_hashes, 1);
    cr_assert_eq(s->n_hashes[0], 1);
    cr_assert_eq(s->n_n_buckets, 1);
    cr_assert_eq(s->n_buckets[0], 4);
    cr_assert_eq(s->n_buckets_marks[0].line, 10);
    cr_assert_eq(s->n_buckets_marks[0].column, 14);
    cr_assert_eq(s->mode[0], LSH_MODE_BUCKET);
    cr_assert_eq(s->chunk_size[0], 64);
    cr_assert_eq(s->look_back[0], 1);
    cr_assert_eq(s->window[0], LSH_WINDOW_ALL);
    cr_assert_eq(s->combine[0], LSH_COMBINE_UNION);
    cr_assert_eq(cfg->strategies[0].skip_invalid, 0);
    lsh_config_free(cfg);
}

Test(config, separate_keys_default_to_keeping_self)
{
    struct lsh_config *cfg = parse_ok(MINIMAL "attention:\n  keys: separate\n");
    cr_assert_eq(cfg->attention.keys, LSH_KEYS_SEPARATE);
    cr_assert_eq(cfg->attention.exclude_self, 0);
    lsh_config_free(cfg);
    cfg = parse_ok(MINIMAL "attention: {keys: separate, exclude_self: true}\n");
    cr_assert_eq(cfg->attention.exclude_self, 1);
    lsh_config_free(cfg);
    cfg = parse_ok(MINIMAL "attention: {keys: shared_normalized, exclude_self: false, "
                           "causal: true, scale: 1}\n");
    cr_assert_eq(cfg->attention.keys, LSH_KEYS_SHARED_NORMALIZED);
    cr_assert_eq(cfg->attention.exclude_self, 0);
    cr_assert_eq(cfg->attention.causal, 1);
    cr_assert_eq(cfg->attention.scale_auto, 0);
    cr_assert_eq(cfg->attention.scale, 1.0);
    lsh_config_free(cfg);
}

Test(config, scale_takes_any_decimal_number)
{
    struct lsh_config *cfg = parse_ok(MINIMAL "attention: {scale: 2.385e-1}\n");
    cr_assert_eq(cfg->attention.scale_auto, 0);
    cr_assert_float_eq(cfg->attention.scale, 0.2385, 1e-15);
    lsh_config_free(cfg);
    cfg = parse_ok(MINIMAL "attention: {scale: .125}\n");
    cr_assert_eq(cfg->attention.scale, 0.125);
    lsh_config_free(cfg);
}

Test(config, topk_and_n_hashes_are_sorted_and_deduplicated)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS STRATEGIES SWEEP
                                      "  n_hashes: [8, 2, 2, 4]\n"
                                      "attention:\n  topk: [10, 1, 5, 10]\n");
    uint32_t nh[] = {2, 4, 8}, tk[] = {1, 5, 10};
    cr_assert_eq(cfg->sweep.n_n_hashes, 3);
    cr_assert_arr_eq(cfg->sweep.n_hashes, nh, sizeof nh);
    cr_assert_eq(cfg->attention.n_topk, 3);
    cr_assert_arr_eq(cfg->attention.topk, tk, sizeof tk);
    lsh_config_free(cfg);
    cfg = parse_ok(MINIMAL "attention:\n  topk: 3\n");
    cr_assert_eq(cfg->attention.n_topk, 1);
    cr_assert_eq(cfg->attention.topk[0], 3);
    lsh_config_free(cfg);
}

Test(config, n_buckets_keep_their_order_and_positions)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS STRATEGIES
                                      "sweep:\n"
                                      "  n_buckets:\n"
                                      "    - 64\n"
                                      "    - 2\n"
                                      "    - 24\n");
    uint32_t nb[] = {64, 2, 24};
    cr_assert_arr_eq(cfg->sweep.n_buckets, nb, sizeof nb);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cfg->sweep.n_buckets_marks[i].line, 11 + i);
        cr_assert_eq(cfg->sweep.n_buckets_marks[i].column, 7);
    }
    lsh_config_free(cfg);
}

Test(config, sweep_lists_of_modes_and_options)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS STRATEGIES SWEEP
                                      "  mode: [bucket, chunked]\n"
                                      "  chunk_size: [32, 8]\n"
                                      "  look_back: [0, 1, 2]\n"
                                      "  window: [same_bucket, all]\n"
                                      "  combine: [rounds, union]\n");
    const struct lsh_sweep *s = &cfg->sweep;
    cr_assert_eq(s->n_mode, 2);
    cr_assert_eq(s->mode[1], LSH_MODE_CHUNKED);
    uint32_t cs[] = {32, 8}, lb[] = {0, 1, 2};
    cr_assert_eq(s->n_chunk_size, 2);
    cr_assert_arr_eq(s->chunk_size, cs, sizeof cs);
    cr_assert_eq(s->n_look_back, 3);
    cr_assert_arr_eq(s->look_back, lb, sizeof lb);
    cr_assert_eq(s->n_window, 2);
    cr_assert_eq(s->window[0], LSH_WINDOW_SAME_BUCKET);
    cr_assert_eq(s->window[1], LSH_WINDOW_ALL);
    cr_assert_eq(s->n_combine, 2);
    cr_assert_eq(s->combine[0], LSH_COMBINE_ROUNDS);
    lsh_config_free(cfg);
}

Test(config, chunk_options_are_ignored_without_chunked_mode)
{
    /* chunk_size 500 > n = 100 would be an error with mode chunked */
    struct lsh_config *cfg = parse_ok(MINIMAL "  chunk_size: 500\n  look_back: 3\n"
                                              "  window: same_bucket\n");
    cr_assert_eq(cfg->sweep.chunk_size[0], 500);
    cr_assert_eq(cfg->sweep.mode[0], LSH_MODE_BUCKET);
    lsh_config_free(cfg);
}

Test(config, parameter_lists_expand_to_their_cartesian_product)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS
                                      "strategies:\n"
                                      "  - name: rotation\n"
                                      "    params:\n"
                                      "      factors: [[4, 4], [2, 8]]\n"
                                      "      orthogonal: [false, true]\n"
                                      SWEEP);
    const struct lsh_strategy_spec *ss = &cfg->strategies[0];
    cr_assert_eq(ss->n_sets, 4);
    /* schema order (orthogonal, factors), the first parameter outermost */
    const char *want[] = {"orthogonal=false,factors=[4,4]", "orthogonal=false,factors=[2,8]",
                          "orthogonal=true,factors=[4,4]", "orthogonal=true,factors=[2,8]"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(ss->sets[i].canonical, want[i]);
        cr_assert_eq(ss->sets[i].n_params, 2);
        cr_assert_eq(ss->sets[i].values[0].i, (int64_t)(i / 2));
        cr_assert_eq(ss->sets[i].values[1].list_len, 2);
    }
    cr_assert_eq(ss->sets[1].values[1].list[0], 2);
    cr_assert_eq(ss->sets[1].values[1].list[1], 8);
    cr_assert_eq(ss->sets[2].values[1].list[0], 4);
    lsh_config_free(cfg);
}

Test(config, a_flat_int_list_is_one_value)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS
                                      "strategies:\n"
                                      "  - name: rotation\n"
                                      "    params: {factors: [4, 2, 8]}\n"
                                      "  - name: rotation\n"
                                      "    params: {factors: [], orthogonal: true}\n"
                                      "  - name: rotation\n"
                                      "    params: {factors: [[]]}\n"
                                      "    skip_invalid: true\n"
                                      SWEEP);
    cr_assert_eq(cfg->strategies[0].n_sets, 1);
    cr_assert_str_eq(cfg->strategies[0].sets[0].canonical, "orthogonal=false,factors=[4,2,8]");
    cr_assert_eq(cfg->strategies[0].sets[0].values[1].list_len, 3);
    cr_assert_eq(cfg->strategies[1].n_sets, 1);
    cr_assert_str_eq(cfg->strategies[1].sets[0].canonical, "orthogonal=true,factors=[]");
    cr_assert_eq(cfg->strategies[2].n_sets, 1);
    cr_assert_str_eq(cfg->strategies[2].sets[0].canonical, "orthogonal=false,factors=[]");
    cr_assert_eq(cfg->strategies[2].skip_invalid, 1);
    lsh_config_free(cfg);
}

Test(config, choice_and_int_parameters)
{
    struct lsh_config *cfg = parse_ok(HEAD DATASETS
                                      "strategies:\n"
                                      "  - name: kmeans\n"
                                      "    params: {init: [kmeans++, random], iterations: 0}\n"
                                      SWEEP);
    const struct lsh_strategy_spec *ss = &cfg->strategies[0];
    cr_assert_eq(ss->n_sets, 2);
    cr_assert_str_eq(ss->sets[0].canonical, "iterations=0,init=kmeans++");
    cr_assert_str_eq(ss->sets[1].canonical, "iterations=0,init=random");
    cr_assert_eq(ss->sets[0].values[0].type, LSH_PARAM_INT);
    cr_assert_eq(ss->sets[0].values[1].type, LSH_PARAM_CHOICE);
    /* the choice points into the plugin's own words */
    const struct lsh_param *init = &ss->strategy->params[1];
    cr_assert_eq(ss->sets[0].values[1].choice, init->choices[1]);
    lsh_config_free(cfg);
}

Test(config, datasets_of_every_kind)
{
    struct lsh_config *cfg = parse_ok(HEAD
                                      "datasets:\n"
                                      "  - name: c\n"
                                      "    kind: clustered\n"
                                      "    n: 2048\n"
                                      "    d: 16\n"
                                      "    d_v: 4\n"
                                      "    clusters: 3\n"
                                      "    spread: 0\n"
                                      "    norm: 2.385\n"
                                      "    reference_rows: 512\n"
                                      "  - name: real_q.v2\n"
                                      "    kind: hdf5\n"
                                      "    file: data/attn.h5\n"
                                      "    q: /layer0/q\n"
                                      "    v: /layer0/v\n"
                                      "    reference_rows: all\n"
                                      STRATEGIES SWEEP);
    const struct lsh_dataset_spec *c = &cfg->datasets[0], *h = &cfg->datasets[1];
    cr_assert_eq(c->d_v, 4);
    cr_assert_eq(c->clusters, 3);
    cr_assert_eq(c->spread, 0);
    cr_assert_eq(c->norm, 2.385);
    cr_assert_eq(c->reference_rows, 512);
    cr_assert_eq(h->kind, LSH_DATA_HDF5);
    cr_assert_eq(h->n, 0);
    cr_assert_eq(h->d, 0);
    cr_assert_str_eq(h->file, "data/attn.h5");
    cr_assert_str_eq(h->q, "/layer0/q");
    cr_assert_null(h->k);
    cr_assert_str_eq(h->v, "/layer0/v");
    cr_assert_eq(h->reference_rows, 0);
    cr_assert_eq(h->line, 12);
    lsh_config_free(cfg);
}

Test(config, dump_flags_and_top_level_values)
{
    struct lsh_config *cfg = parse_ok(MINIMAL "dump: [rows, hash_params, data, buckets]\n"
                                              "seed: 18446744073709551615\n"
                                              "repeats: 10000\n"
                                              "output: out/x.h5\n"
                                              "experiment: sweep\n");
    cr_assert_eq(cfg->dump, LSH_DUMP_DATA | LSH_DUMP_BUCKETS | LSH_DUMP_HASH_PARAMS |
                                LSH_DUMP_ROWS);
    cr_assert_eq(cfg->seed, UINT64_MAX);
    cr_assert_eq(cfg->repeats, 10000);
    cr_assert_str_eq(cfg->output, "out/x.h5");
    lsh_config_free(cfg);
}

Test(config, anchors_and_aliases_are_values)
{
    struct lsh_config *cfg = parse_ok("name: t\n"
                                      "datasets:\n"
                                      "  - {name: a, kind: gaussian, n: &n 100, d: &d 8}\n"
                                      "  - {name: b, kind: gaussian, n: *n, d: *d}\n"
                                      STRATEGIES SWEEP);
    cr_assert_eq(cfg->datasets[1].n, 100);
    cr_assert_eq(cfg->datasets[1].d, 8);
    lsh_config_free(cfg);
}

Test(config, enum_names)
{
    cr_assert_str_eq(lsh_keys_name(LSH_KEYS_SHARED), "shared");
    cr_assert_str_eq(lsh_keys_name(LSH_KEYS_SHARED_NORMALIZED), "shared_normalized");
    cr_assert_str_eq(lsh_keys_name(LSH_KEYS_SEPARATE), "separate");
    cr_assert_str_eq(lsh_mode_name(LSH_MODE_BUCKET), "bucket");
    cr_assert_str_eq(lsh_mode_name(LSH_MODE_CHUNKED), "chunked");
    cr_assert_str_eq(lsh_window_name(LSH_WINDOW_ALL), "all");
    cr_assert_str_eq(lsh_window_name(LSH_WINDOW_SAME_BUCKET), "same_bucket");
    cr_assert_str_eq(lsh_combine_name(LSH_COMBINE_UNION), "union");
    cr_assert_str_eq(lsh_combine_name(LSH_COMBINE_ROUNDS), "rounds");
    cr_assert_str_eq(lsh_data_kind_name(LSH_DATA_GAUSSIAN), "gaussian");
    cr_assert_str_eq(lsh_data_kind_name(LSH_DATA_CLUSTERED), "clustered");
    cr_assert_str_eq(lsh_data_kind_name(LSH_DATA_HDF5), "hdf5");
    cr_assert_str_eq(lsh_mode_name((enum lsh_mode)7), "unknown");
    lsh_config_free(NULL);
}

/* Many entries, on success and on an error at the very end: valgrind checks
 * that nothing leaks either way. */
static char *big_config(size_t n_datasets, size_t n_kmeans, const char *tail)
{
    size_t cap = 256 + n_datasets * 80 + n_kmeans * 80 + strlen(tail);
    char *y = malloc(cap);
    cr_assert_not_null(y);
    size_t len = (size_t)snprintf(y, cap, "name: big\ndatasets:\n");
    for (size_t i = 0; i < n_datasets; i++)
        len += (size_t)snprintf(y + len, cap - len,
                                "  - {name: d%zu, kind: clustered, n: %zu, d: 4}\n", i, 100 + i);
    len += (size_t)snprintf(y + len, cap - len, "strategies:\n  - name: rotation\n"
                                                "    params: {factors: [[2], [4], [2, 2]]}\n");
    for (size_t i = 0; i < n_kmeans; i++)
        len += (size_t)snprintf(y + len, cap - len,
                                "  - {name: kmeans, params: {iterations: %zu, init: [random, "
                                "kmeans++]}}\n", i);
    snprintf(y + len, cap - len, "sweep: {n_buckets: [2, 4], mode: [bucket, chunked], "
                                 "chunk_size: [8, 16]}\n%s", tail);
    return y;
}

Test(config, big_configs_parse_and_free_cleanly)
{
    char *y = big_config(300, 200, "");
    struct lsh_config *cfg = parse_ok(y);
    cr_assert_eq(cfg->n_datasets, 300);
    cr_assert_eq(cfg->n_strategies, 201);
    cr_assert_eq(cfg->strategies[0].n_sets, 3);
    cr_assert_str_eq(cfg->strategies[200].sets[1].canonical, "iterations=199,init=kmeans++");
    char *r = lsh_config_resolved_yaml(cfg);
    cr_assert_not_null(r);
    free(r);
    lsh_config_free(cfg);
    free(y);

    y = big_config(300, 200, "dump: [everything]\n");
    BAD(y, 507, 8, "dump: 'everything' is not allowed");
    free(y);
}

/* ---- errors: files and YAML ---------------------------------------------------- */

Test(config, missing_file_is_an_io_error)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    const char *path = "/nonexistent/lshlab/none.yaml";
    int rc = lsh_config_load(path, reg, &cfg, &err);
    cr_assert_eq(rc, LSH_EIO);
    cr_assert_eq(err.code, LSH_EIO);
    cr_assert_null(cfg);
    cr_assert_str_eq(err.file, path);
    cr_assert_not_null(strstr(err.message, strerror(ENOENT)), "%s", err.message);
}

Test(config, errors_from_a_file_name_the_file)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    const char *path = case_path("misspelt.yaml");
    cr_assert_eq(lsh_config_load(path, reg, &cfg, &err), LSH_ECONFIG);
    cr_assert_str_eq(err.file, path);
    cr_assert_eq(err.line, 5);
    cr_assert_eq(err.column, 5);
    cr_assert_not_null(strstr(err.message, "did you mean 'kind'?"), "%s", err.message);
    char line[2048];
    lsh_error_format(&err, line, sizeof line);
    cr_assert_not_null(strstr(line, "misspelt.yaml:5:5: unknown key 'knid'"), "%s", line);
}

Test(config, yaml_syntax_errors_keep_libyaml_text_and_position)
{
    BAD("name: t\n  seed: 1\n", 2, 7, "YAML syntax error",
        "mapping values are not allowed in this context");
    BAD("name: t\nsweep: {n_buckets: [1, 2}\n", 2, 25, "YAML syntax error",
        "did not find expected ',' or ']'");
    BAD("name: t\nseed: *nowhere\n", 2, 7, "YAML syntax error: found undefined alias");
}

Test(config, tabs_are_refused)
{
    BAD("name: t\ndatasets:\n\t- name: g\n", 3, 1, "found character that cannot start any token",
        "tabs are not allowed");
}

Test(config, invalid_utf8_is_a_yaml_error)
{
    BAD("name: t\nseed: \xff\n", 2, 7, "YAML syntax error", "invalid");
}

Test(config, empty_file_is_an_error)
{
    BAD("", 1, 1, "empty");
    BAD("# nothing but a comment\n\n", 1, 1, "empty");
}

Test(config, top_level_must_be_a_mapping)
{
    BAD("- name: t\n- seed: 1\n", 1, 1, "must be a mapping", "got a list");
    BAD("just words\n", 1, 1, "must be a mapping", "got 'just words'");
}

Test(config, one_document_only)
{
    BAD(MINIMAL "---\nname: u\n", 12, 1, "second YAML document");
}

Test(config, non_word_keys_are_refused)
{
    BAD(MINIMAL "? [a, b]\n: 1\n", 11, 3, "a key must be a word", "got a list");
}

Test(config, nul_characters_are_refused)
{
    BAD("name: \"a\\0b\"\n", 1, 7, "name", "NUL character");
}

Test(config, a_registry_is_required)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_config_parse(MINIMAL, strlen(MINIMAL), "t.yaml", NULL, &cfg, &err),
                 LSH_EINVAL);
    cr_assert_null(cfg);
    cr_assert_not_null(strstr(err.message, "registry"), "%s", err.message);
}

/* ---- errors: keys ------------------------------------------------------------------- */

Test(config, unknown_keys_suggest_the_nearest)
{
    BAD("nmae: t\n" DATASETS STRATEGIES SWEEP, 1, 1,
        "unknown key 'nmae' in the top-level mapping; did you mean 'name'?");
    BAD(MINIMAL "  n_hashs: 2\n", 11, 3,
        "unknown key 'n_hashs' in sweep; did you mean 'n_hashes'?");
    BAD("name: t\ndatasets:\n  - name: g\n    kind: gaussian\n    n: 100\n    dd: 8\n"
        STRATEGIES SWEEP, 6, 5, "unknown key 'dd' in datasets[0]; did you mean 'd'?");
}

Test(config, unknown_keys_far_from_any_list_the_allowed_ones)
{
    BAD(MINIMAL "  frobnicate: 2\n", 11, 3, "unknown key 'frobnicate' in sweep; allowed: n_hashes, "
        "n_buckets, mode, chunk_size, look_back, window, combine");
}

Test(config, duplicate_keys_are_errors)
{
    BAD(MINIMAL "  n_buckets: 8\n", 11, 3,
        "duplicate key 'n_buckets' in sweep (first given on line 10)");
}

Test(config, missing_required_keys)
{
    BAD(DATASETS STRATEGIES SWEEP, 1, 1, "missing required key 'name'");
    BAD(HEAD STRATEGIES SWEEP, 1, 1, "missing required key 'datasets'");
    BAD(HEAD DATASETS SWEEP, 1, 1, "missing required key 'strategies'");
    BAD(HEAD DATASETS STRATEGIES, 1, 1, "missing required key 'sweep'");
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_hashes: 2\n", 10, 3,
        "sweep: missing required key 'n_buckets'");
}

/* ---- errors: values --------------------------------------------------------------- */

Test(config, integers_must_be_plain_integers)
{
    static const char *const bad[] = {"abc", "1.5", "1e3", "0x10", "010", "1_000", "+", "\"12\""};
    static const char *const shown[] = {"got 'abc'", "got '1.5'", "got '1e3'", "got '0x10'",
                                        "got '010'", "got '1_000'", "got '+'",
                                        "got the quoted string \"12\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char y[512];
        snprintf(y, sizeof y, "name: t\ndatasets:\n  - name: g\n    kind: gaussian\n"
                              "    n: %s\n    d: 8\n" STRATEGIES SWEEP, bad[i]);
        BAD(y, 5, 8, "datasets[0].n: expected an integer >= 1", shown[i]);
    }
}

Test(config, zero_and_negative_counts_are_refused)
{
    BAD(MINIMAL "repeats: 0\n", 11, 10, "repeats: '0' is out of range",
        "expected an integer in [1, 10000]");
    BAD(MINIMAL "seed: -1\n", 11, 7, "seed: '-1' is out of range", "expected an integer >= 0");
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: [4, 0]\n", 10, 18,
        "sweep.n_buckets: '0' is out of range");
}

Test(config, values_beyond_the_c_type_are_refused)
{
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: 4294967296\n", 10, 14,
        "'4294967296' is out of range", "[1, 4294967295]");
    BAD(MINIMAL "seed: 18446744073709551616\n", 11, 7, "'18446744073709551616' is out of range");
}

Test(config, null_values_are_refused)
{
    BAD(MINIMAL "seed:\n", 11, 6, "seed: expected an integer >= 0, got nothing (null)");
    BAD(MINIMAL "output: ~\n", 11, 9, "output: expected a file path, got nothing (null)");
}

Test(config, strings_must_not_be_empty)
{
    BAD(MINIMAL "output: \"\"\n", 11, 9, "output: expected a file path, got an empty string");
}

Test(config, booleans_are_true_or_false_only)
{
    BAD(MINIMAL "attention:\n  exclude_self: yes\n", 12, 17,
        "attention.exclude_self: expected true or false, got 'yes'");
    BAD(MINIMAL "attention:\n  causal: \"true\"\n", 12, 11, "expected true or false");
}

Test(config, list_where_a_scalar_belongs)
{
    BAD("name: [a, b]\n" DATASETS STRATEGIES SWEEP, 1, 7, "name: expected a name", "got a list");
    BAD(MINIMAL "attention: {causal: [true]}\n", 11, 21, "attention.causal",
        "expected true or false, got a list");
}

Test(config, mapping_where_a_list_belongs)
{
    BAD(HEAD "datasets: {a: 1}\n" STRATEGIES SWEEP, 2, 11,
        "datasets: expected a list of datasets, got a mapping");
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: 4\n  n_hashes: {a: 1}\n", 11, 13,
        "sweep.n_hashes: expected an integer in [1, 1024] or a list of them, got a mapping");
}

Test(config, empty_lists_are_refused)
{
    BAD(HEAD DATASETS "strategies: []\n" SWEEP, 7, 13, "strategies: the list is empty");
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: []\n", 10, 14,
        "sweep.n_buckets: the list is empty");
}

Test(config, names_are_words)
{
    BAD("name: a b\n" DATASETS STRATEGIES SWEEP, 1, 7, "'a b' is not a valid name",
        "letters, digits");
    BAD("name: t\ndatasets:\n  - name: x/y\n    kind: gaussian\n    n: 100\n    d: 8\n"
        STRATEGIES SWEEP, 3, 11, "datasets[0].name: 'x/y' is not a valid name");
}

Test(config, experiment_is_sweep_or_collision)
{
    BAD(MINIMAL "experiment: sweeep\n", 11, 13, "experiment: 'sweeep' is not allowed",
        "did you mean 'sweep'?", "one of: sweep, collision");
}

Test(config, dump_is_a_list_of_known_words)
{
    BAD(MINIMAL "dump: [data, everything]\n", 11, 14, "dump: 'everything' is not allowed",
        "one of: data, buckets, hash_params, rows");
    BAD(MINIMAL "dump: data\n", 11, 7, "dump: expected a list of: data", "got 'data'");
}

/* ---- errors: datasets ------------------------------------------------------------- */

#define DS(lines) HEAD "datasets:\n  - name: g\n" lines STRATEGIES SWEEP

Test(config, dataset_kind_is_required_and_known)
{
    BAD(DS("    n: 100\n    d: 8\n"), 3, 5, "datasets[0]: missing required key 'kind'");
    BAD(DS("    kind: gausian\n    n: 100\n    d: 8\n"), 4, 11,
        "datasets[0].kind: 'gausian' is not allowed (did you mean 'gaussian'?)",
        "one of: gaussian, clustered, hdf5");
}

Test(config, dataset_entries_are_mappings)
{
    BAD(HEAD "datasets:\n  - g\n" STRATEGIES SWEEP, 3, 5, "datasets[0]: expected a mapping",
        "got 'g'");
}

Test(config, generated_datasets_need_n_and_d)
{
    BAD(DS("    kind: gaussian\n    d: 8\n"), 3, 5,
        "datasets[0]: missing required key 'n' for kind gaussian");
    BAD(DS("    kind: clustered\n    n: 100\n    d: 0\n"), 6, 8,
        "datasets[0].d: '0' is out of range");
}

Test(config, keys_of_another_kind_are_errors)
{
    BAD(DS("    kind: gaussian\n    n: 100\n    d: 8\n    clusters: 4\n"), 7, 5,
        "'clusters' applies to kind clustered only");
    BAD(DS("    kind: clustered\n    n: 100\n    d: 8\n    file: x.h5\n"), 7, 5,
        "'file' applies to kind hdf5 only");
    BAD(DS("    kind: hdf5\n    file: x.h5\n    q: /q\n    n: 100\n"), 7, 5,
        "'n' is not allowed for kind hdf5: it comes from the file");
    BAD(DS("    kind: hdf5\n    file: x.h5\n    q: /q\n    v: /v\n    d_v: 3\n"), 8, 5,
        "'d_v' is not allowed when 'v' is given");
}

Test(config, hdf5_datasets_need_file_and_q)
{
    BAD(DS("    kind: hdf5\n    file: x.h5\n"), 3, 5,
        "datasets[0]: missing required key 'q' for kind hdf5");
}

Test(config, dataset_names_are_unique)
{
    BAD(HEAD "datasets:\n  - {name: g, kind: gaussian, n: 10, d: 2}\n"
             "  - {name: g, kind: gaussian, n: 10, d: 2}\n" STRATEGIES SWEEP,
        4, 12, "dataset name 'g' is used twice (first on line 3)");
}

Test(config, generator_parameters_are_checked)
{
    BAD(DS("    kind: clustered\n    n: 100\n    d: 8\n    spread: -0.5\n"), 7, 13,
        "datasets[0].spread: '-0.5' is out of range; expected a number >= 0");
    BAD(DS("    kind: clustered\n    n: 100\n    d: 8\n    norm: 0\n"), 7, 11,
        "datasets[0].norm: '0' is out of range; expected a number > 0");
    BAD(DS("    kind: clustered\n    n: 100\n    d: 8\n    clusters: 0\n"), 7, 15,
        "datasets[0].clusters: '0' is out of range");
    BAD(DS("    kind: clustered\n    n: 100\n    d: 8\n    spread: .nan\n"), 7, 13,
        "expected a number >= 0, got '.nan'");
}

Test(config, reference_rows_at_most_n)
{
    BAD_PLAN(DS("    kind: gaussian\n    n: 100\n    d: 8\n    reference_rows: 101\n"), 7, 21,
             "101 rows is more than n = 100", "[1, 100] or all");
    BAD(DS("    kind: gaussian\n    n: 100\n    d: 8\n    reference_rows: some\n"), 7, 21,
        "expected an integer >= 1, got 'some'");
}

/* ---- errors: attention ------------------------------------------------------------ */

Test(config, attention_values_are_checked)
{
    BAD(MINIMAL "attention: [shared]\n", 11, 12, "attention: expected a mapping", "got a list");
    BAD(MINIMAL "attention: {keys: share}\n", 11, 19, "attention.keys: 'share' is not allowed",
        "did you mean 'shared'?");
    BAD(MINIMAL "attention: {scale: 0}\n", 11, 20, "attention.scale: '0' is out of range",
        "auto or a number > 0");
    BAD(MINIMAL "attention: {scale: fast}\n", 11, 20,
        "attention.scale: expected auto or a number > 0, got 'fast'");
    BAD(MINIMAL "attention: {scale: 1e999}\n", 11, 20, "'1e999' is out of range");
    BAD(MINIMAL "attention: {topk: [5, 0]}\n", 11, 23, "attention.topk: '0' is out of range");
    BAD(MINIMAL "attention: {topk: []}\n", 11, 19, "attention.topk: the list is empty");
}

/* ---- errors: strategies ----------------------------------------------------------- */

#define WITH_STRATEGIES(lines) HEAD DATASETS "strategies:\n" lines SWEEP

Test(config, unknown_strategy_lists_the_available_ones)
{
    BAD(WITH_STRATEGIES("  - name: rotaton\n"), 8, 11,
        "strategies[0].name: unknown strategy 'rotaton'; did you mean 'rotation'?", "available:",
        "hyperplane", "kmeans");
    BAD(WITH_STRATEGIES("  - name: quantum_annealing\n"), 8, 11,
        "unknown strategy 'quantum_annealing'; available:", "rotation");
}

Test(config, strategy_entries_are_checked)
{
    BAD(WITH_STRATEGIES("  - skip_invalid: true\n"), 8, 5,
        "strategies[0]: missing required key 'name'");
    BAD(WITH_STRATEGIES("  - rotation\n"), 8, 5, "strategies[0]: expected a mapping");
    BAD(WITH_STRATEGIES("  - name: rotation\n    skip_invalid: maybe\n"), 9, 19,
        "strategies[0].skip_invalid: expected true or false, got 'maybe'");
    BAD(WITH_STRATEGIES("  - name: rotation\n    parms: {}\n"), 9, 5,
        "unknown key 'parms' in strategies[0]; did you mean 'params'?");
}

Test(config, unknown_parameter_suggests_the_nearest)
{
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iteration: 3}\n"), 9, 14,
        "unknown key 'iteration' in the params of strategy 'kmeans'; did you mean 'iterations'?");
    BAD(WITH_STRATEGIES("  - name: hyperplane\n    params: {bits: 3}\n"), 9, 14,
        "strategy 'hyperplane' has no parameters");
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: [3]\n"), 9, 13,
        "strategies[0].params: expected a mapping");
}

Test(config, parameter_values_are_typed_and_bounded)
{
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: 5000}\n"), 9, 26,
        "strategies[0].params.iterations: '5000' is out of range", "[0, 1000]");
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: ten}\n"), 9, 26,
        "expected an integer in [0, 1000], got 'ten'");
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {init: kmeans+}\n"), 9, 20,
        "strategies[0].params.init: 'kmeans+' is not allowed (did you mean 'kmeans++'?)",
        "one of: random, kmeans++");
    BAD(WITH_STRATEGIES("  - name: rotation\n    params: {orthogonal: yes}\n"), 9, 26,
        "strategies[0].params.orthogonal: expected true or false, got 'yes'");
    BAD(WITH_STRATEGIES("  - name: rotation\n    params: {factors: [1, 4]}\n"), 9, 24,
        "strategies[0].params.factors: '1' is out of range", "[2, 65536]");
    BAD(WITH_STRATEGIES("  - name: rotation\n    params: {factors: 4}\n"), 9, 23,
        "expected a list of integers in [2, 65536], got '4'");
    BAD(WITH_STRATEGIES("  - name: rotation\n    params: {factors: [[2, 2], 4]}\n"), 9, 32,
        "expected a list of integers in [2, 65536], got '4'");
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: {a: 1}}\n"), 9, 26,
        "expected a value or a list of them, got a mapping");
}

Test(config, swept_parameter_lists_are_checked)
{
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: []}\n"), 9, 26,
        "strategies[0].params.iterations: the list is empty");
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: [1, 2, 1]}\n"), 9, 33,
        "the value 1 is given twice (first on line 9)");
    BAD(WITH_STRATEGIES("  - name: rotation\n    params: {factors: [[2, 2], [4], [2, 2]]}\n"),
        9, 37, "the value [2,2] is given twice");
}

Test(config, the_same_parameter_set_twice_is_an_error)
{
    BAD(WITH_STRATEGIES("  - name: kmeans\n    params: {iterations: [1, 2]}\n"
                        "  - name: kmeans\n    params: {iterations: [3, 2]}\n"),
        10, 5, "strategies[1]: strategy 'kmeans' with parameters 'iterations=2,init=random' is "
               "already listed on line 8");
    BAD(WITH_STRATEGIES("  - name: hyperplane\n  - name: hyperplane\n    skip_invalid: true\n"),
        9, 5, "strategy 'hyperplane' with parameters '' is already listed on line 8");
}

Test(config, too_many_parameter_combinations)
{
    /* 2 x 32769 lists > 65536 sets */
    size_t cap = 32769 * 16 + 1024;
    char *y = malloc(cap);
    cr_assert_not_null(y);
    size_t len = (size_t)snprintf(y, cap, HEAD DATASETS "strategies:\n  - name: rotation\n"
                                  "    params:\n      orthogonal: [true, false]\n"
                                  "      factors: [");
    for (int i = 0; i < 32769; i++)
        len += (size_t)snprintf(y + len, cap - len, "%s[2, %d]", i ? ", " : "", 2 + i);
    snprintf(y + len, cap - len, "]\n" SWEEP);
    BAD(y, 10, 7, "strategy 'rotation': more than 65536 parameter combinations");
    free(y);
}

/* ---- errors: sweep ---------------------------------------------------------------- */

#define WITH_SWEEP(lines) HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: [4, 8]\n" lines

Test(config, n_buckets_must_not_repeat)
{
    BAD(HEAD DATASETS STRATEGIES "sweep:\n  n_buckets: [4, 8, 4]\n", 10, 21,
        "sweep.n_buckets: 4 is given twice (first on line 10)");
}

Test(config, sweep_words_are_checked)
{
    BAD(WITH_SWEEP("  mode: chunk\n"), 11, 9, "sweep.mode: 'chunk' is not allowed",
        "did you mean 'chunked'?");
    BAD(WITH_SWEEP("  mode: [bucket, bucket]\n"), 11, 18, "sweep.mode: 'bucket' is given twice");
    BAD(WITH_SWEEP("  window: none\n"), 11, 11, "sweep.window: 'none' is not allowed",
        "one of: all, same_bucket");
    BAD(WITH_SWEEP("  combine: [union, round]\n"), 11, 20, "sweep.combine: 'round' is not allowed",
        "did you mean 'rounds'?");
}

Test(config, sweep_numbers_are_checked)
{
    BAD(WITH_SWEEP("  look_back: -1\n"), 11, 14, "sweep.look_back: '-1' is out of range",
        "[0, 1048576]");
    BAD(WITH_SWEEP("  chunk_size: 0\n"), 11, 15, "sweep.chunk_size: '0' is out of range");
    BAD(WITH_SWEEP("  n_hashes: [1, 2.5]\n"), 11, 17, "sweep.n_hashes: expected an integer",
        "got '2.5'");
}

Test(config, chunk_size_larger_than_a_dataset_is_an_error)
{
    BAD_PLAN(WITH_SWEEP("  mode: [bucket, chunked]\n  chunk_size: [50, 200]\n"), 12, 20,
             "sweep.chunk_size: 200 is larger than n = 100 of dataset 'g'");
    BAD_PLAN(HEAD "datasets:\n  - {name: small, kind: gaussian, n: 32, d: 8}\n" STRATEGIES
                  "sweep:\n  n_buckets: 4\n  mode: [bucket, chunked]\n",
             8, 18, "default chunk_size 64 is larger than n = 32 of dataset 'small'");
}

/* ---- errors: collision ------------------------------------------------------------ */

#define COLLISION_HEAD "name: c\nexperiment: collision\n"   /* lines 1-2 */
#define COLLISION_SWEEP "sweep:\n  n_buckets: [2, 4]\n"

Test(config, collision_needs_its_block)
{
    BAD(COLLISION_HEAD STRATEGIES COLLISION_SWEEP, 1, 1,
        "missing required key 'collision' (experiment collision)");
    BAD(COLLISION_HEAD "collision: {d: 8, pairs: 10}\n" STRATEGIES COLLISION_SWEEP, 3, 12,
        "collision: missing required key 'angles'");
}

Test(config, collision_and_sweep_blocks_do_not_mix)
{
    BAD(MINIMAL "collision: {d: 8, angles: 90, pairs: 10}\n", 11, 1,
        "'collision' applies to experiment collision only");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 10}\n" DATASETS STRATEGIES
        COLLISION_SWEEP, 3 + 1, 1, "'datasets' does not apply to experiment collision");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 10}\nattention: {causal: true}\n"
        STRATEGIES COLLISION_SWEEP, 4, 1, "'attention' does not apply to experiment collision");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP "  mode: chunked\n", 8, 3, "sweep: 'mode' does not apply to experiment "
        "collision");
}

Test(config, collision_values_are_checked)
{
    BAD(COLLISION_HEAD "collision: {d: 8, angles: [0, 90], pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP, 3, 28, "collision.angles: '0' is out of range",
        "expected an angle in degrees in (0, 180]");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 180.5, pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP, 3, 27, "'180.5' is out of range");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: [10, 20, 10], pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP, 3, 36, "collision.angles: 10 is given twice (first on line 3)");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 0}\n" STRATEGIES COLLISION_SWEEP,
        3, 38, "collision.pairs: '0' is out of range");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 10, pears: 3}\n" STRATEGIES
        COLLISION_SWEEP, 3, 42, "unknown key 'pears' in collision; did you mean 'pairs'?");
}

Test(config, collision_accepts_a_single_angle)
{
    struct lsh_config *cfg = parse_ok(COLLISION_HEAD "collision: {d: 8, angles: 22.5, pairs: 10}\n"
                                      STRATEGIES COLLISION_SWEEP);
    cr_assert_eq(cfg->collision.n_angles, 1);
    cr_assert_eq(cfg->collision.angles[0], 22.5);
    cr_assert_eq(cfg->sweep.n_hashes[0], 1);
    lsh_config_free(cfg);
}

/* ---- the file itself: only regular files, of bounded size ------------------------- */

/* Load path, expect LSH_ECONFIG naming it with every phrase (NULL-terminated). */
static void expect_file_refused(const char *path, ...)
{
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_config_load(path, reg, &cfg, &err);
    cr_assert_eq(rc, LSH_ECONFIG, "%s: expected LSH_ECONFIG, got %d: %s", path, rc, err.message);
    cr_assert_null(cfg);
    cr_assert_str_eq(err.file, path);
    va_list ap;
    va_start(ap, path);
    for (const char *p = va_arg(ap, const char *); p; p = va_arg(ap, const char *))
        cr_assert_not_null(strstr(err.message, p), "'%s' not in message: %s", p, err.message);
    va_end(ap);
}

/* A reader that waits for a writer, or reads forever, must fail by the
 * timeout instead of hanging the suite (or, with the memory cap, of eating
 * the machine): the old reader did both. */
static void cap_memory(void)
{
    struct rlimit lim = {(rlim_t)1 << 30, (rlim_t)1 << 30};
    cr_assert_eq(setrlimit(RLIMIT_DATA, &lim), 0);
}

Test(config, a_fifo_is_refused_without_waiting_for_a_writer, .timeout = 10)
{
    char path[] = "/tmp/lshlab-fifo-XXXXXX";
    cr_assert_not_null(mkdtemp(path));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/config.yaml", path);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    expect_file_refused(fifo, "a FIFO", "allowed: a regular file", (const char *)NULL);
    unlink(fifo);
    rmdir(path);
}

Test(config, devices_and_folders_are_refused, .timeout = 10, .init = cap_memory)
{
    expect_file_refused("/dev/zero", "is a character device", "allowed: a regular file",
                        (const char *)NULL);
    expect_file_refused("/tmp", "is a folder", (const char *)NULL);
}

Test(config, a_file_over_16_mib_is_refused_unread, .timeout = 10, .init = cap_memory)
{
    char path[] = "/tmp/lshlab-big-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    /* sparse: 16 MiB + 1 byte of nothing */
    cr_assert_eq(ftruncate(fd, (off_t)(16 << 20) + 1), 0);
    close(fd);
    expect_file_refused(path, "16777217 bytes", "at most 16777216", (const char *)NULL);
    unlink(path);
}

/* "name: t\nx: " then depth - 1 flow lists (the top mapping is the first level). */
static char *nested(size_t depth)
{
    size_t lists = depth - 1;
    char *y = malloc(2 * lists + 16);
    cr_assert_not_null(y);
    strcpy(y, "name: t\nx: ");
    size_t len = strlen(y);
    memset(y + len, '[', lists);
    memset(y + len + lists, ']', lists);
    strcpy(y + len + 2 * lists, "\n");
    return y;
}

Test(config, yaml_nested_deeper_than_64_levels_is_refused_quickly, .timeout = 20)
{
    /* 64 levels are YAML the loader reads (the key is then unknown) */
    char *y = nested(64);
    BAD(y, 2, 1, "unknown key 'x'");
    free(y);
    /* the 65th level is the 64th '[': column 4 + 63 */
    y = nested(65);
    BAD(y, 2, 67, "nested more than 64", "at most 64 levels");
    free(y);
    /* 100k levels took minutes before any error */
    y = nested(100000);
    BAD(y, 2, 67, "nested more than 64");
    free(y);
}

/* ---- limits that make every valid config runnable ------------------------------ */

Test(config, at_most_64_topk_values)
{
    char y[2048], list[1024] = "";
    for (int k = 1; k <= 64; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", k > 1 ? ", " : "", k);
    snprintf(y, sizeof y, MINIMAL "attention:\n  topk: [%s]\n", list);
    struct lsh_config *cfg = parse_ok(y);
    cr_assert_eq(cfg->attention.n_topk, 64);
    lsh_config_free(cfg);
    /* repeats do not count: 65 values, 64 different */
    snprintf(y, sizeof y, MINIMAL "attention:\n  topk: [%s, 64]\n", list);
    lsh_config_free(parse_ok(y));
    snprintf(y, sizeof y, MINIMAL "attention:\n  topk: [%s, 65]\n", list);
    BAD(y, 12, 9, "attention.topk: 65 different values; allowed: at most 64");
}

Test(config, names_fit_the_results_columns)
{
    char name[80], y[512];
    memset(name, 'a', 63);
    name[63] = '\0';
    snprintf(y, sizeof y, HEAD "datasets:\n  - {name: %s, kind: gaussian, n: 100, d: 8}\n"
             STRATEGIES SWEEP, name);
    lsh_config_free(parse_ok(y));
    strcat(name, "b");
    snprintf(y, sizeof y, HEAD "datasets:\n  - {name: %s, kind: gaussian, n: 100, d: 8}\n"
             STRATEGIES SWEEP, name);
    BAD(y, 3, 12, "datasets[0].name:", "is 64 characters long; allowed: at most 63");
    snprintf(y, sizeof y, "name: %s\n" DATASETS STRATEGIES SWEEP, name);
    BAD(y, 1, 7, "name:", "is 64 characters long; allowed: at most 63");
    /* . and .. are not HDF5 group names */
    BAD(HEAD "datasets:\n  - {name: ., kind: gaussian, n: 100, d: 8}\n" STRATEGIES SWEEP, 3,
        12, "datasets[0].name: '.' is not a valid name");
    BAD(HEAD "datasets:\n  - {name: .., kind: gaussian, n: 100, d: 8}\n" STRATEGIES SWEEP, 3,
        12, "'..' is not a valid name");
}

Test(config, parameter_sets_fit_the_params_column)
{
    /* "orthogonal=false,factors=[" + "128" + 75 x ",64" + "]" = 26 + 3 + 225 + 1 = 255 */
    char y[2048], list[1024] = "";
    for (int k = 0; k < 76; k++)
        strcat(list, k ? ", 64" : "128");
    snprintf(y, sizeof y, HEAD DATASETS "strategies:\n  - name: rotation\n    skip_invalid: true\n"
             "    params: {factors: [%s]}\n" SWEEP, list);
    struct lsh_config *cfg = parse_ok(y);
    cr_assert_eq(strlen(cfg->strategies[0].sets[0].canonical), 255);
    lsh_config_free(cfg);
    strcat(list, ", 2");
    snprintf(y, sizeof y, HEAD DATASETS "strategies:\n  - name: rotation\n    skip_invalid: true\n"
             "    params: {factors: [%s]}\n" SWEEP, list);
    BAD(y, 10, 13, "strategy 'rotation': the parameter set 'orthogonal=false,factors=[128,64",
        "is 257 characters long", "allowed: at most 255");
}

Test(config, repeats_n_hashes_and_look_back_are_bounded)
{
    lsh_config_free(parse_ok(MINIMAL "repeats: 10000\n"));
    BAD(MINIMAL "repeats: 10001\n", 11, 10, "repeats: '10001' is out of range",
        "expected an integer in [1, 10000]");
    BAD(MINIMAL "repeats: 4294967295\n", 11, 10, "repeats: '4294967295' is out of range");
    struct lsh_config *cfg = parse_ok(WITH_SWEEP("  n_hashes: [1, 1024]\n"));
    cr_assert_eq(cfg->sweep.n_hashes[1], 1024);
    lsh_config_free(cfg);
    BAD(WITH_SWEEP("  n_hashes: [1, 1025]\n"), 11, 17, "sweep.n_hashes: '1025' is out of range",
        "[1, 1024]");
    BAD(WITH_SWEEP("  n_hashes: 3000000\n"), 11, 13, "'3000000' is out of range");
    lsh_config_free(parse_ok(WITH_SWEEP("  mode: chunked\n  chunk_size: 4\n"
                                        "  look_back: 1048576\n")));
    BAD(WITH_SWEEP("  mode: chunked\n  chunk_size: 4\n  look_back: 4294967295\n"), 13, 14,
        "sweep.look_back: '4294967295' is out of range", "[0, 1048576]");
}

Test(config, the_number_of_points_is_bounded)
{
    /* 10000 repeats x 2 n_buckets x 200 n_hashes = 4e6 points: allowed */
    char y[8192], list[2048] = "";
    for (int k = 1; k <= 200; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", k > 1 ? ", " : "", k);
    snprintf(y, sizeof y, HEAD "repeats: 10000\n" "datasets:\n  - {name: g, kind: gaussian, n: 100, "
             "d: 8}\n" STRATEGIES "sweep:\n  n_buckets: [4, 8]\n  n_hashes: [%s]\n", list);
    lsh_config_free(parse_ok(y));
    /* a third n_buckets: 6e6 > 2^22 = 4194304 */
    snprintf(y, sizeof y, HEAD "repeats: 10000\n" "datasets:\n  - {name: g, kind: gaussian, n: 100, "
             "d: 8}\n" STRATEGIES "sweep:\n  n_buckets: [4, 8, 16]\n  n_hashes: [%s]\n", list);
    BAD(y, 8, 3, "the sweep is too large: it expands to 6000000 points", "at most 4194304");
    /* x 2000 chunked mode settings: counted exactly */
    snprintf(y, sizeof y, HEAD "repeats: 10000\n" "datasets:\n  - {name: g, kind: gaussian, n: 100, "
             "d: 8}\n" STRATEGIES "sweep:\n  n_buckets: [4, 8, 16]\n  n_hashes: [%s]\n"
             "  mode: chunked\n  chunk_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
             "  look_back: [%s]\n", list, list);
    BAD(y, 8, 3, "the sweep is too large: it expands to 12000000000 points");
}

Test(config, the_plan_refuses_more_rows_than_32_bit_ids_hold)
{
    BAD_PLAN(HEAD "datasets:\n  - {name: g, kind: gaussian, n: 2147483648, d: 1}\n" STRATEGIES
             SWEEP, 3, 5, "dataset 'g' has 2147483648 rows; allowed: at most 2147483647");
}

Test(config, a_plan_without_an_error_struct_survives_a_missing_data_file)
{
    struct lsh_config *cfg = parse_ok(HEAD "datasets:\n  - {name: h, kind: hdf5, "
                                      "file: /nonexistent/lshlab/x.h5, q: q}\n" STRATEGIES SWEEP);
    struct lsh_plan *plan = NULL;
    /* plan.c wrote the config's place through err even when it was NULL */
    cr_assert_neq(lsh_plan_build(cfg, &plan, NULL), 0);
    cr_assert_null(plan);
    lsh_config_free(cfg);
}

Test(config, collision_refuses_what_does_not_apply_where_it_is_written)
{
    BAD(COLLISION_HEAD "repeats: 2\ncollision: {d: 8, angles: 90, pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP, 3, 10, "repeats: 2 does not apply to experiment collision",
        "allowed: 1");
    BAD(COLLISION_HEAD "dump: [rows]\ncollision: {d: 8, angles: 90, pairs: 10}\n" STRATEGIES
        COLLISION_SWEEP, 3, 7, "dump does not apply to experiment collision", "allowed: []");
    BAD(COLLISION_HEAD "collision: {d: 1, angles: 90, pairs: 10}\n" STRATEGIES COLLISION_SWEEP,
        3, 16, "collision.d: '1' is out of range; expected an integer >= 2");
    BAD(COLLISION_HEAD "collision: {d: 8, angles: 90, pairs: 1152921504606846976}\n"
        STRATEGIES COLLISION_SWEEP, 3, 38, "collision.pairs: 1152921504606846976 pairs",
        "allowed: at most 144115188075855871");
    struct lsh_config *cfg = parse_ok(COLLISION_HEAD "repeats: 1\ndump: []\n"
                                      "collision: {d: 2, angles: 90, pairs: 10}\n" STRATEGIES
                                      COLLISION_SWEEP);
    cr_assert_eq(cfg->collision.d, 2);
    lsh_config_free(cfg);
}

Test(config, name_and_params_limits_are_the_results_columns_less_their_nul)
{
    cr_assert_eq(LSH_NAME_MAX + 1, LSH_RUNS_NAME_LEN);
    cr_assert_eq(LSH_PARAMS_MAX + 1, LSH_RUNS_PARAMS_LEN);
}

/* SPEC 11: kind npy, layers:/heads: (ascending, `all` the default) and
 * q/k/v templates come through parsing and resolving unchanged. */
Test(config, npy_kind_layers_heads_and_templates_resolve_and_are_a_fixpoint)
{
    const char *yaml = "name: heads\n"
                       "datasets:\n"
                       "  - name: a\n"
                       "    kind: npy\n"
                       "    q: \"dump/q_l{layer}_h{head}.npy\"\n"
                       "    k: k.npy\n"
                       "    layers: [2, 0]\n"
                       "    heads: 3\n"
                       "  - name: b\n"
                       "    kind: hdf5\n"
                       "    file: x.h5\n"
                       "    q: /layer{layer}/q\n"
                       "    layers: all\n"
                       "strategies:\n"
                       "  - name: rotation\n"
                       "sweep:\n"
                       "  n_buckets: [4]\n";
    struct lsh_config *cfg = parse_ok(yaml);
    const struct lsh_dataset_spec *a = &cfg->datasets[0], *b = &cfg->datasets[1];
    cr_expect_eq(a->kind, LSH_DATA_NPY);
    cr_expect_null(a->file);
    cr_expect_str_eq(a->q, "dump/q_l{layer}_h{head}.npy");
    cr_expect(a->n_layers == 2 && a->layers[0] == 0 && a->layers[1] == 2);
    cr_expect(a->n_heads == 1 && a->heads[0] == 3);
    cr_expect(b->n_layers == 0 && !b->layers && b->n_heads == 0 && !b->heads);
    char *y = lsh_config_resolved_yaml(cfg);
    cr_expect(strstr(y, "    kind: npy\n    q: \"dump/q_l{layer}_h{head}.npy\"\n    k: k.npy\n"
                        "    layers: [0, 2]\n    heads: [3]\n"), "%s", y);
    cr_expect(strstr(y, "    q: \"/layer{layer}/q\"\n    layers: all\n    heads: all\n") ||
                  strstr(y, "    q: /layer{layer}/q\n    layers: all\n    heads: all\n"),
              "%s", y);
    free(y);
    lsh_config_free(cfg);
    check_fixpoint(yaml);
}

/* ---- candidate rules (SPEC 13), importance (SPEC 14), the oracle -------------------- */

Test(config, candidate_rules_default_to_the_union_of_rounds)
{
    struct lsh_config *cfg = parse_ok(MINIMAL);
    const struct lsh_sweep *s = &cfg->sweep;
    cr_assert_eq(s->n_min_collisions, 1);
    cr_expect_eq(s->min_collisions[0], 1);
    cr_assert_eq(s->n_sink, 1);
    cr_expect_eq(s->sink[0], 0);
    cr_assert_eq(s->n_local, 1);
    cr_expect_eq(s->local[0], 0);
    cr_expect_eq(cfg->attention.oracle, 0);
    lsh_config_free(cfg);
}

Test(config, candidate_rules_keep_their_order_and_positions)
{
    struct lsh_config *cfg = parse_ok(WITH_SWEEP("  min_collisions: [2, 1, 3]\n"
                                                 "  sink: 4\n"
                                                 "  local: [16, 0]\n"
                                                 "  combine: [union, importance]\n")
                                      "attention: {oracle: true}\n");
    const struct lsh_sweep *s = &cfg->sweep;
    cr_assert_eq(s->n_min_collisions, 3);
    cr_expect_eq(s->min_collisions[0], 2);
    cr_expect_eq(s->min_collisions[1], 1);
    cr_expect_eq(s->min_collisions[2], 3);
    cr_expect_eq(s->min_collisions_marks[2].line, 11);
    cr_expect_eq(s->min_collisions_marks[2].column, 26);
    cr_assert_eq(s->n_sink, 1);
    cr_expect_eq(s->sink[0], 4);
    cr_expect_eq(s->sink_marks[0].line, 12);
    cr_expect_eq(s->sink_marks[0].column, 9);
    cr_assert_eq(s->n_local, 2);
    cr_expect_eq(s->local[0], 16);
    cr_expect_eq(s->local[1], 0);
    cr_expect_eq(s->local_marks[1].column, 15);
    cr_assert_eq(s->n_combine, 2);
    cr_expect_eq(s->combine[1], LSH_COMBINE_IMPORTANCE);
    cr_expect_eq(s->combine_marks[1].line, 14);
    cr_expect_eq(s->combine_marks[1].column, 20);
    cr_expect_eq(cfg->attention.oracle, 1);
    char *y = lsh_config_resolved_yaml(cfg);
    cr_assert_not_null(y);
    cr_expect(strstr(y, "  oracle: true\n"), "%s", y);
    cr_expect(strstr(y, "  combine: [union, importance]\n"
                        "  min_collisions: [2, 1, 3]\n"
                        "  sink: [4]\n"
                        "  local: [16, 0]\n"), "%s", y);
    free(y);
    lsh_config_free(cfg);
    check_fixpoint(WITH_SWEEP("  min_collisions: [2, 1, 3]\n  sink: 4\n  local: [16, 0]\n"
                              "  combine: importance\n") "attention: {oracle: true}\n");
}

Test(config, candidate_rule_values_are_checked)
{
    BAD(WITH_SWEEP("  min_collisions: 0\n"), 11, 19, "sweep.min_collisions: '0' is out of range",
        "[1, 1024]");
    BAD(WITH_SWEEP("  min_collisions: [1, 1025]\n"), 11, 23,
        "sweep.min_collisions: '1025' is out of range");
    BAD(WITH_SWEEP("  sink: -1\n"), 11, 9, "sweep.sink: '-1' is out of range", "[0, 2147483647]");
    BAD(WITH_SWEEP("  local: 2147483648\n"), 11, 10, "sweep.local: '2147483648' is out of range");
    BAD(WITH_SWEEP("  local: [8, 4, 8]\n"), 11, 17,
        "sweep.local: 8 is given twice (first on line 11)");
    BAD(WITH_SWEEP("  sink: [1.5]\n"), 11, 10, "sweep.sink: expected an integer", "got '1.5'");
    BAD(WITH_SWEEP("  min_colisions: 2\n"), 11, 3,
        "unknown key 'min_colisions' in sweep; did you mean 'min_collisions'?");
    BAD(WITH_SWEEP("  lcoal: 2\n"), 11, 3, "unknown key 'lcoal' in sweep; did you mean 'local'?");
    BAD(WITH_SWEEP("  combine: importanse\n"), 11, 12,
        "sweep.combine: 'importanse' is not allowed", "did you mean 'importance'?");
}

Test(config, the_oracle_is_a_boolean)
{
    BAD(MINIMAL "attention: {oracle: yes}\n", 11, 21, "attention.oracle: expected true or false",
        "got 'yes'");
    BAD(MINIMAL "attention: {oracel: true}\n", 11, 13,
        "unknown key 'oracel' in attention; did you mean 'oracle'?");
}

Test(config, combine_rounds_refuses_other_candidate_rules)
{
    /* the error stands at the rule's value and names combine rounds' place */
    BAD(WITH_SWEEP("  combine: [union, rounds]\n  min_collisions: [1, 2]\n"), 12, 23,
        "sweep.min_collisions: 2 cannot be swept with sweep.combine: rounds (line 11, column 20)",
        "defined only with min_collisions 1, sink 0 and local 0");
    BAD(WITH_SWEEP("  sink: [0, 4]\n  combine: rounds\n"), 11, 13,
        "sweep.sink: 4 cannot be swept with sweep.combine: rounds (line 12, column 12)");
    BAD(WITH_SWEEP("  combine: rounds\n  local: 3\n"), 12, 10,
        "sweep.local: 3 cannot be swept with sweep.combine: rounds (line 11, column 12)");
    /* the neutral values are fine with rounds */
    lsh_config_free(parse_ok(WITH_SWEEP("  combine: rounds\n  min_collisions: 1\n  sink: 0\n")));
    /* and other rules are fine with union and importance */
    lsh_config_free(parse_ok(WITH_SWEEP("  combine: [union, importance]\n  min_collisions: 2\n"
                                        "  sink: 1\n  local: 4\n")));
}

Test(config, combine_importance_refuses_chunked_mode)
{
    BAD(WITH_SWEEP("  mode: [bucket, chunked]\n  chunk_size: 8\n  combine: [importance]\n"), 13, 13,
        "sweep.combine: importance cannot be swept with sweep.mode: chunked (line 11, column 18)",
        "bucket mode only (docs/definitions.md section 5)");
}

Test(config, candidate_rules_do_not_apply_to_the_collision_experiment)
{
    BAD("name: c\nexperiment: collision\n" STRATEGIES
        "sweep:\n  n_buckets: [2, 4]\n  min_collisions: 2\n"
        "collision: {d: 8, angles: [30], pairs: 100}\n",
        7, 3, "sweep: 'min_collisions' does not apply to experiment collision");
}

Test(config, candidate_rules_multiply_the_point_count)
{
    /* 1 set x 1 B x 1 H x 1 mode x 1 combine x 1 dataset x 1 repeat x
     * (1024 t x 64 s x 65 w) = 4 259 840 > 2^22 = 4 194 304 */
    char yaml[16384];
    int len = snprintf(yaml, sizeof yaml, "%s", WITH_SWEEP("  min_collisions: ["));
    for (int t = 1; t <= 1024; t++)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len, "%s%d", t > 1 ? "," : "", t);
    len += snprintf(yaml + len, sizeof yaml - (size_t)len, "]\n  sink: [");
    for (int s = 0; s < 64; s++)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len, "%s%d", s ? "," : "", s);
    len += snprintf(yaml + len, sizeof yaml - (size_t)len, "]\n  local: [");
    for (int w = 0; w < 65; w++)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len, "%s%d", w ? "," : "", w);
    snprintf(yaml + len, sizeof yaml - (size_t)len, "]\n");
    /* n_buckets is [4, 8]: twice that */
    BAD(yaml, 10, 3, "it expands to 8519680 points", "min_collisions x sink x local");
}
