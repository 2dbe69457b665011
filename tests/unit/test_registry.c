/* test_registry.c - the plugin loader: search path, shadowing, and every
 * reason a faulty plugin is refused (each provoked once). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"

/* ---- helpers ---------------------------------------------------------------- */

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set (run the tests through meson test)", name);
    return v;
}

/* Where the faulty plugins were built.  meson puts shared_module outputs in
 * the build folder of the meson.build that declares them (tests/), while
 * LSHLAB_TEST_PLUGIN_DIR names tests/plugins: look in both. */
static void test_plugin(const char *name, char *buf, size_t size)
{
    const char *dir = env_or_fail("LSHLAB_TEST_PLUGIN_DIR");
    snprintf(buf, size, "%s/%s.so", dir, name);
    if (access(buf, R_OK) == 0)
        return;
    char parent[512];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    snprintf(buf, size, "%s/%s.so", parent, name);
    cr_assert(access(buf, R_OK) == 0, "test plugin %s.so not found in %s or %s", name, dir,
              parent);
}

static void builtin_plugin(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s.so", env_or_fail("LSHLAB_STRATEGY_PATH"), name);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    cr_assert(in, "cannot open %s: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    cr_assert(out, "cannot create %s: %s", to, strerror(errno));
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, got, out), got);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* A fresh folder holding copies of the given plugin files (basename kept). */
struct tmp_dir {
    char path[256];
    char files[4][1536];
    size_t n;
};

static void tmp_dir_make(struct tmp_dir *t, const char *const *sources, size_t n)
{
    memset(t, 0, sizeof *t);
    const char *base = getenv("TMPDIR");
    snprintf(t->path, sizeof t->path, "%s/lshlab-registry-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(t->path), "mkdtemp: %s", strerror(errno));
    for (size_t i = 0; i < n; i++) {
        const char *slash = strrchr(sources[i], '/');
        snprintf(t->files[i], sizeof t->files[i], "%s/%s", t->path, slash ? slash + 1 : sources[i]);
        copy_file(sources[i], t->files[i]);
    }
    t->n = n;
}

static void tmp_dir_remove(struct tmp_dir *t)
{
    for (size_t i = 0; i < t->n; i++)
        unlink(t->files[i]);
    rmdir(t->path);
}

/* Loads one faulty plugin and returns the error (the registry stays empty). */
static struct lsh_error load_faulty(const char *name)
{
    char path[1024];
    test_plugin(name, path, sizeof path);
    struct lsh_registry *reg = lsh_registry_alloc();
    cr_assert(reg);
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_registry_load_file(reg, path, &err);
    cr_assert_eq(rc, LSH_EPLUGIN, "%s.so was accepted (rc %d)", name, rc);
    cr_assert_eq(err.code, LSH_EPLUGIN);
    cr_assert_eq(lsh_registry_count(reg), 0);
    cr_assert(strstr(err.message, path), "message does not name the file: %s", err.message);
    lsh_registry_free(reg);
    return err;
}

static void assert_contains(const char *message, const char *part)
{
    cr_assert(strstr(message, part), "expected \"%s\" in: %s", part, message);
}

/* ---- loading the built-in plugins ------------------------------------------- */

/* strategies/meson.build's list, in file-name order. */
static const char *const builtin_names[] = {"crosspolytope", "hyperplane", "kmeans", "random",
                                             "rotation", "smyrf", "sortlsh", "window"};
#define N_BUILTINS (sizeof builtin_names / sizeof *builtin_names)

Test(registry, loads_every_builtin_in_filename_order)
{
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(lsh_registry_load_dir(reg, env_or_fail("LSHLAB_STRATEGY_PATH"), &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_registry_count(reg), N_BUILTINS);
    /* hyperplane.so < kmeans.so < ... */
    const char *const *expect = builtin_names;
    for (size_t i = 0; i < N_BUILTINS; i++) {
        char path[1024];
        builtin_plugin(expect[i], path, sizeof path);
        cr_assert_str_eq(lsh_registry_get(reg, i)->name, expect[i]);
        cr_assert_str_eq(lsh_registry_origin(reg, i), path);
        cr_assert_eq(lsh_registry_find(reg, expect[i]), lsh_registry_get(reg, i));
    }
    cr_assert_null(lsh_registry_find(reg, "rotations"));
    cr_assert_null(lsh_registry_get(reg, N_BUILTINS));
    cr_assert_null(lsh_registry_origin(reg, N_BUILTINS));
    lsh_registry_free(reg);
    lsh_registry_free(NULL);
}

Test(registry, loads_one_file)
{
    char path[1024];
    builtin_plugin("kmeans", path, sizeof path);
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(lsh_registry_load_file(reg, path, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_registry_count(reg), 1);
    cr_assert_str_eq(lsh_registry_get(reg, 0)->name, "kmeans");
    /* Loading it again is a no-op: the name is already taken. */
    cr_assert_eq(lsh_registry_load_file(reg, path, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_registry_count(reg), 1);
    lsh_registry_free(reg);
}

/* ---- faulty plugins, each refused for its own reason ------------------------ */

Test(registry, refuses_a_newer_abi_major)
{
    struct lsh_error err = load_faulty("bad_abi_major");
    char want[128];
    snprintf(want, sizeof want, "ABI %d.0, this lshlab speaks %d.%d", LSH_STRATEGY_ABI_MAJOR + 1,
             LSH_STRATEGY_ABI_MAJOR, LSH_STRATEGY_ABI_MINOR);
    assert_contains(err.message, want);
}

Test(registry, refuses_a_newer_abi_minor)
{
    struct lsh_error err = load_faulty("bad_abi_minor");
    char want[128];
    snprintf(want, sizeof want, "ABI %d.%d, this lshlab speaks %d.%d", LSH_STRATEGY_ABI_MAJOR,
             LSH_STRATEGY_ABI_MINOR + 1, LSH_STRATEGY_ABI_MAJOR, LSH_STRATEGY_ABI_MINOR);
    assert_contains(err.message, want);
}

Test(registry, refuses_a_null_hash_callback)
{
    struct lsh_error err = load_faulty("null_hash");
    assert_contains(err.message, "NULL hash callback");
}

Test(registry, refuses_a_plugin_without_the_entry_symbol)
{
    struct lsh_error err = load_faulty("no_entry");
    assert_contains(err.message, "no lsh_strategy_entry symbol");
    assert_contains(err.message, "undefined symbol"); /* dlerror's own words */
}

Test(registry, refuses_a_default_outside_its_bounds)
{
    struct lsh_error err = load_faulty("bad_default");
    assert_contains(err.message, "parameter 'width' has default 0 outside its bounds [1, 10]");
}

Test(registry, refuses_a_state_size_over_1_gib)
{
    struct lsh_error err = load_faulty("huge_state");
    assert_contains(err.message, "strategy 'huge_state' has state_size 18446744073709551607 "
                                 "bytes; allowed: at most 1073741824");
}

Test(registry, refuses_a_missing_file_with_dlerror_text)
{
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    int rc = lsh_registry_load_file(reg, "/nonexistent/lshlab/none.so", &err);
    cr_assert_eq(rc, LSH_EPLUGIN);
    assert_contains(err.message, "plugin /nonexistent/lshlab/none.so: cannot load");
    assert_contains(err.message, "No such file");
    lsh_registry_free(reg);
}

Test(registry, loads_plugins_that_fail_only_when_hashing)
{
    /* bad_bucket and failing_hash are well-formed; catching what they do is
     * the engine's job.  Here: they load, and misbehave as advertised. */
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    char path[1024];
    test_plugin("bad_bucket", path, sizeof path);
    cr_assert_eq(lsh_registry_load_file(reg, path, &err), 0, "%s", err.message);
    test_plugin("failing_hash", path, sizeof path);
    cr_assert_eq(lsh_registry_load_file(reg, path, &err), 0, "%s", err.message);

    const struct lsh_strategy *bad = lsh_registry_find(reg, "bad_bucket");
    const struct lsh_strategy *failing = lsh_registry_find(reg, "failing_hash");
    cr_assert(bad && failing);
    struct lsh_round round = {.d = 2, .n_buckets = 8, .n_rows = 2};
    const double x[4] = {2.385, -0.71, 0.5, 1.25};
    uint32_t bucket[2] = {0, 0};
    _Alignas(64) unsigned char state[64] = {0};
    struct lsh_strategy_error serr = {{0}};
    cr_assert_eq(bad->init(state, &round, &serr), 0);
    cr_assert_eq(bad->hash(state, x, 2, 2, bucket, &serr), 0);
    cr_assert_eq(bucket[0], 8);
    bad->fini(state);
    cr_assert_eq(failing->init(state, &round, &serr), 0);
    cr_assert_eq(failing->hash(state, x, 2, 2, bucket, &serr), LSH_STRATEGY_EFAIL);
    assert_contains(serr.message, "failing_hash");
    failing->fini(state);
    lsh_registry_free(reg);
}

Test(registry, a_faulty_plugin_fails_its_whole_folder)
{
    /* In filename order bad_abi_major.so comes first among the test plugins. */
    char path[1024];
    test_plugin("bad_abi_major", path, sizeof path);
    *strrchr(path, '/') = '\0';
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(lsh_registry_load_dir(reg, path, &err), LSH_EPLUGIN);
    assert_contains(err.message, "bad_abi_major.so: ABI");
    lsh_registry_free(reg);
}

Test(registry, refuses_a_missing_folder_given_explicitly)
{
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(lsh_registry_load_dir(reg, "/nonexistent/lshlab-strategies", &err),
                 LSH_ENOTFOUND);
    assert_contains(err.message, "/nonexistent/lshlab-strategies");
    lsh_registry_free(reg);
}

/* ---- names: duplicates and shadowing ---------------------------------------- */

Test(registry, refuses_the_same_name_twice_in_one_folder)
{
    char real[1024], dup[1024];
    builtin_plugin("rotation", real, sizeof real);
    test_plugin("dup_rotation", dup, sizeof dup);
    const char *sources[] = {real, dup};
    struct tmp_dir t;
    tmp_dir_make(&t, sources, 2);

    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    int rc = lsh_registry_load_dir(reg, t.path, &err);
    tmp_dir_remove(&t);
    cr_assert_eq(rc, LSH_EPLUGIN);
    /* dup_rotation.so loads first, then rotation.so collides with it. */
    assert_contains(err.message, "rotation.so: strategy 'rotation' is also defined by");
    assert_contains(err.message, "dup_rotation.so in the same folder");
    lsh_registry_free(reg);
}

Test(registry, an_earlier_folder_shadows_a_later_one)
{
    char dup[1024];
    test_plugin("dup_rotation", dup, sizeof dup);
    const char *sources[] = {dup};
    struct tmp_dir t;
    tmp_dir_make(&t, sources, 1);

    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(lsh_registry_load_dir(reg, t.path, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_registry_load_dir(reg, env_or_fail("LSHLAB_STRATEGY_PATH"), &err), 0, "%s",
                 err.message);
    cr_assert_eq(lsh_registry_count(reg), N_BUILTINS);
    const struct lsh_strategy *rot = lsh_registry_find(reg, "rotation");
    cr_assert(rot);
    assert_contains(rot->summary, "test plugin");
    cr_assert_str_eq(lsh_registry_origin(reg, 0), t.files[0]);
    cr_assert(lsh_registry_find(reg, "hyperplane") && lsh_registry_find(reg, "kmeans"));
    lsh_registry_free(reg);
    tmp_dir_remove(&t);
}

/* ---- the default search path ------------------------------------------------ */

/* Runs body with LSHLAB_STRATEGY_PATH set to value (NULL: unset), restoring
 * it afterwards, since --no-fork runs every test in one process. */
static int load_default_with_env(const char *value, struct lsh_registry *reg,
                                 struct lsh_error *err)
{
    const char *old = getenv("LSHLAB_STRATEGY_PATH");
    char *saved = old ? strdup(old) : NULL;
    if (value)
        setenv("LSHLAB_STRATEGY_PATH", value, 1);
    else
        unsetenv("LSHLAB_STRATEGY_PATH");
    int rc = lsh_registry_load_default(reg, err);
    if (saved)
        setenv("LSHLAB_STRATEGY_PATH", saved, 1);
    else
        unsetenv("LSHLAB_STRATEGY_PATH");
    free(saved);
    return rc;
}

Test(registry, default_path_uses_the_build_tree_when_run_from_it)
{
    /* This test binary lives in the build tree, so the build's plugins are
     * found without any LSHLAB_STRATEGY_PATH. */
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    cr_assert_eq(load_default_with_env(NULL, reg, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_registry_count(reg), N_BUILTINS);
    for (size_t i = 0; i < N_BUILTINS; i++)
        cr_assert(strncmp(lsh_registry_origin(reg, i), LSHLAB_BUILD_STRATEGY_DIR,
                          strlen(LSHLAB_BUILD_STRATEGY_DIR)) == 0,
                  "%s is not from the build tree", lsh_registry_origin(reg, i));
    lsh_registry_free(reg);
}

Test(registry, default_path_puts_the_env_folders_first_and_skips_missing_ones)
{
    char dup[1024];
    test_plugin("dup_rotation", dup, sizeof dup);
    const char *sources[] = {dup};
    struct tmp_dir t;
    tmp_dir_make(&t, sources, 1);
    char value[1024];
    snprintf(value, sizeof value, "/nonexistent/lshlab-a::%s:/nonexistent/lshlab-b", t.path);

    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    int rc = load_default_with_env(value, reg, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_assert_eq(lsh_registry_count(reg), N_BUILTINS);
    cr_assert_str_eq(lsh_registry_origin(reg, 0), t.files[0]); /* "rotation" from the env */
    for (size_t i = 1; i < N_BUILTINS; i++)
        cr_assert(strncmp(lsh_registry_origin(reg, i), LSHLAB_BUILD_STRATEGY_DIR,
                          strlen(LSHLAB_BUILD_STRATEGY_DIR)) == 0);
    lsh_registry_free(reg);
    tmp_dir_remove(&t);
}

Test(registry, default_path_fails_on_a_faulty_plugin_in_the_env_folders)
{
    char bad[1024];
    test_plugin("null_hash", bad, sizeof bad);
    const char *sources[] = {bad};
    struct tmp_dir t;
    tmp_dir_make(&t, sources, 1);
    struct lsh_registry *reg = lsh_registry_alloc();
    struct lsh_error err;
    int rc = load_default_with_env(t.path, reg, &err);
    tmp_dir_remove(&t);
    cr_assert_eq(rc, LSH_EPLUGIN);
    assert_contains(err.message, "null_hash.so");
    lsh_registry_free(reg);
}

/* ---- the struct checks, one refusal each ------------------------------------ */

static int ok_init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int ok_hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                   struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)d, (void)err;
    memset(bucket, 0, n * sizeof *bucket);
    return 0;
}

static void ok_fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy valid = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "valid_1",
    .summary = "a well-formed strategy",
    .state_size = 0,
    .init = ok_init,
    .hash = ok_hash,
    .fini = ok_fini,
};

static void expect_refused(const struct lsh_strategy *s, const char *part)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_registry_check_strategy(s, "test.so", &err), LSH_EPLUGIN,
                 "accepted; expected a refusal mentioning \"%s\"", part);
    assert_contains(err.message, "plugin test.so: ");
    assert_contains(err.message, part);
}

static void expect_accepted(const struct lsh_strategy *s)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_assert_eq(lsh_registry_check_strategy(s, "test.so", &err), 0, "%s", err.message);
}

Test(registry, check_accepts_minimal_strategies)
{
    expect_accepted(&valid);
    struct lsh_strategy s = valid;
    static const struct lsh_param only_end[] = {{.type = LSH_PARAM_END}};
    s.params = only_end;
    expect_accepted(&s);
    static const char *const choices[] = {"a", "b_2", NULL};
    static const struct lsh_param all_types[] = {
        {.name = "flag", .type = LSH_PARAM_BOOL, .doc = "d", .def_int = 1},
        {.name = "count", .type = LSH_PARAM_INT, .doc = "d", .def_int = 3, .min = 3, .max = 3},
        {.name = "rate", .type = LSH_PARAM_REAL, .doc = "d", .def_real = 0.5, .min = 0, .max = 1},
        {.name = "kind", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "b_2",
         .choices = choices},
        {.name = "sizes", .type = LSH_PARAM_INT_LIST, .doc = "d", .min = 1, .max = 9},
        {.type = LSH_PARAM_END},
    };
    s.params = all_types;
    s.state_size = 4096;
    expect_accepted(&s);
}

Test(registry, check_refuses_bad_versions_names_and_callbacks)
{
    struct lsh_error err;
    cr_assert_eq(lsh_registry_check_strategy(NULL, "x.so", &err), LSH_EPLUGIN);
    assert_contains(err.message, "lsh_strategy_entry() returned NULL");

    struct lsh_strategy s = valid;
    s.abi_major = LSH_STRATEGY_ABI_MAJOR - 1;
    expect_refused(&s, "ABI 0.1");
    s = valid;
    s.name = "Rotation";
    expect_refused(&s, "strategy name 'Rotation' is not [a-z0-9_]+");
    s.name = "my-lsh";
    expect_refused(&s, "'my-lsh'");
    s.name = "";
    expect_refused(&s, "strategy name ''");
    s.name = NULL;
    expect_refused(&s, "strategy name '(null)'");
    s.name = "a_name_much_longer_than_sixty_three_characters_which_is_the_limit_x";
    expect_refused(&s, "at most 63");
    s = valid;
    s.summary = NULL;
    expect_refused(&s, "no summary");
    s = valid;
    s.init = NULL;
    expect_refused(&s, "NULL init callback");
    s = valid;
    s.fini = NULL;
    expect_refused(&s, "NULL fini callback");
}

Test(registry, check_refuses_inconsistent_schemas)
{
    struct lsh_strategy s = valid;
    static const char *const choices[] = {"random", "kmeans++", NULL};
    static const char *const twice[] = {"a", "a", NULL};
    static const char *const none[] = {NULL};

    const struct lsh_param dup[] = {
        {.name = "k", .type = LSH_PARAM_INT, .doc = "d", .def_int = 1, .min = 0, .max = 2},
        {.name = "k", .type = LSH_PARAM_BOOL, .doc = "d"},
        {.type = LSH_PARAM_END}};
    s.params = dup;
    expect_refused(&s, "parameter 'k' is declared twice");

    const struct lsh_param min_gt_max[] = {
        {.name = "k", .type = LSH_PARAM_INT, .doc = "d", .def_int = 1, .min = 5, .max = 2},
        {.type = LSH_PARAM_END}};
    s.params = min_gt_max;
    expect_refused(&s, "bounds [5, 2] (min > max)");

    const struct lsh_param list_bounds[] = {
        {.name = "f", .type = LSH_PARAM_INT_LIST, .doc = "d", .min = 8, .max = 2},
        {.type = LSH_PARAM_END}};
    s.params = list_bounds;
    expect_refused(&s, "'f' has bounds [8, 2]");

    const struct lsh_param real_out[] = {
        {.name = "rate", .type = LSH_PARAM_REAL, .doc = "d", .def_real = 2.385, .min = 0,
         .max = 1},
        {.type = LSH_PARAM_END}};
    s.params = real_out;
    expect_refused(&s, "'rate' has default 2.385 outside its bounds [0, 1]");

    const struct lsh_param bool_two[] = {
        {.name = "flag", .type = LSH_PARAM_BOOL, .doc = "d", .def_int = 2},
        {.type = LSH_PARAM_END}};
    s.params = bool_two;
    expect_refused(&s, "'flag' has default 2, not 0 or 1");

    const struct lsh_param bad_choice[] = {
        {.name = "init", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "kmeans--",
         .choices = choices},
        {.type = LSH_PARAM_END}};
    s.params = bad_choice;
    expect_refused(&s, "'init' has default 'kmeans--', which is not one of its choices");

    const struct lsh_param null_choice[] = {
        {.name = "init", .type = LSH_PARAM_CHOICE, .doc = "d", .choices = choices},
        {.type = LSH_PARAM_END}};
    s.params = null_choice;
    expect_refused(&s, "default '(null)'");

    const struct lsh_param no_choices[] = {
        {.name = "init", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "a",
         .choices = none},
        {.type = LSH_PARAM_END}};
    s.params = no_choices;
    expect_refused(&s, "'init' has no choices");

    const struct lsh_param choice_twice[] = {
        {.name = "init", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "a",
         .choices = twice},
        {.type = LSH_PARAM_END}};
    s.params = choice_twice;
    expect_refused(&s, "lists 'a' twice");

    const struct lsh_param no_doc[] = {
        {.name = "k", .type = LSH_PARAM_BOOL},
        {.type = LSH_PARAM_END}};
    s.params = no_doc;
    expect_refused(&s, "'k' (BOOL) has no doc line");

    const struct lsh_param bad_name[] = {
        {.name = "Iterations", .type = LSH_PARAM_BOOL, .doc = "d"},
        {.type = LSH_PARAM_END}};
    s.params = bad_name;
    expect_refused(&s, "name 'Iterations', not [a-z0-9_]+");

    const struct lsh_param bad_type[] = {
        {.name = "k", .type = (enum lsh_param_type)42, .doc = "d"},
        {.type = LSH_PARAM_END}};
    s.params = bad_type;
    expect_refused(&s, "'k' has unknown type 42");
}

/* ---- who can write a plugin --------------------------------------------------- */

/* Loads t's folder with LSHLAB_ALLOW_INSECURE_PLUGINS as given (NULL: unset). */
static int load_dir_allowing(const struct tmp_dir *t, const char *allow, struct lsh_error *err)
{
    if (allow)
        setenv("LSHLAB_ALLOW_INSECURE_PLUGINS", allow, 1);
    else
        unsetenv("LSHLAB_ALLOW_INSECURE_PLUGINS");
    struct lsh_registry *reg = lsh_registry_alloc();
    lsh_error_clear(err);
    int rc = lsh_registry_load_dir(reg, t->path, err);
    lsh_registry_free(reg);
    unsetenv("LSHLAB_ALLOW_INSECURE_PLUGINS");
    return rc;
}

Test(registry, refuses_a_folder_or_plugin_that_others_can_write)
{
    char dup[1024];
    test_plugin("dup_rotation", dup, sizeof dup);
    const char *sources[] = {dup};
    struct tmp_dir t;
    tmp_dir_make(&t, sources, 1);
    struct lsh_error err;
    cr_assert_eq(chmod(t.files[0], 0644), 0);
    cr_assert_eq(load_dir_allowing(&t, NULL, &err), 0, "%s", err.message);

    /* world-writable, with or without the sticky bit: anyone may add a *.so */
    const mode_t open_modes[] = {0777, 01777, 0757};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(chmod(t.path, open_modes[i]), 0);
        cr_expect_eq(load_dir_allowing(&t, NULL, &err), LSH_EPLUGIN, "mode %o was accepted",
                     (unsigned)open_modes[i]);
        char want[512];
        snprintf(want, sizeof want, "strategy folder %s can be written by every user", t.path);
        assert_contains(err.message, want);
        assert_contains(err.message, "LSHLAB_ALLOW_INSECURE_PLUGINS=1");
    }
    cr_expect_eq(load_dir_allowing(&t, "1", &err), 0, "the override: %s", err.message);

    /* a plugin file anyone can write, in a safe folder */
    cr_assert_eq(chmod(t.path, 0755), 0);
    cr_assert_eq(chmod(t.files[0], 0666), 0);
    cr_expect_eq(load_dir_allowing(&t, NULL, &err), LSH_EPLUGIN);
    char want[1600];
    snprintf(want, sizeof want, "strategy plugin %s can be written by every user", t.files[0]);
    assert_contains(err.message, want);
    struct lsh_registry *reg = lsh_registry_alloc();
    cr_expect_eq(lsh_registry_load_file(reg, t.files[0], &err), LSH_EPLUGIN, "load_file too");
    lsh_registry_free(reg);

    /* group-writable: fine when it is ours, refused when another user owns it */
    cr_assert_eq(chmod(t.files[0], 0664), 0);
    cr_assert_eq(chmod(t.path, 0775), 0);
    cr_expect_eq(load_dir_allowing(&t, NULL, &err), 0, "%s", err.message);
    if (geteuid() == 0 && chown(t.path, 1, (gid_t)-1) == 0) {
        cr_expect_eq(load_dir_allowing(&t, NULL, &err), LSH_EPLUGIN);
        assert_contains(err.message, "can be written by its group, and it belongs to another user");
    }
    tmp_dir_remove(&t);
}

/* Found by the hostile pass: a link in a safe folder to a plugin in a folder
 * anyone can write was loaded (and a dangling one there is a trap: anyone may
 * create its target later). */
Test(registry, refuses_a_linked_plugin_whose_target_folder_others_can_write)
{
    char dup[1024];
    test_plugin("dup_rotation", dup, sizeof dup);
    const char *sources[] = {dup};
    struct tmp_dir open_dir; /* holds the plugin itself */
    tmp_dir_make(&open_dir, sources, 1);
    cr_assert_eq(chmod(open_dir.files[0], 0644), 0);
    struct tmp_dir t; /* holds only the link */
    tmp_dir_make(&t, sources, 0);
    cr_assert_eq(chmod(t.path, 0755), 0);
    snprintf(t.files[0], sizeof t.files[0], "%s/dup_rotation.so", t.path);
    cr_assert_eq(symlink(open_dir.files[0], t.files[0]), 0, "%s", strerror(errno));
    t.n = 1;
    struct lsh_error err;
    cr_assert_eq(chmod(open_dir.path, 0755), 0);
    cr_expect_eq(load_dir_allowing(&t, NULL, &err), 0, "a safe target: %s", err.message);
    cr_assert_eq(chmod(open_dir.path, 0777), 0);
    cr_expect_eq(load_dir_allowing(&t, NULL, &err), LSH_EPLUGIN);
    char want[512];
    snprintf(want, sizeof want, "strategy folder %s can be written by every user",
             open_dir.path);
    assert_contains(err.message, want);
    struct lsh_registry *reg = lsh_registry_alloc();
    cr_expect_eq(lsh_registry_load_file(reg, t.files[0], &err), LSH_EPLUGIN, "load_file too");
    lsh_registry_free(reg);
    cr_expect_eq(load_dir_allowing(&t, "1", &err), 0, "the override: %s", err.message);
    cr_assert_eq(chmod(open_dir.path, 0755), 0);
    tmp_dir_remove(&t);
    tmp_dir_remove(&open_dir);
}

/* Found by the hostile pass: a summary or doc line with control bytes would reach
 * the terminal raw through `lshlab strategies`, and a choice with ',' '=' or a
 * space makes the canonical params text (a key of /runs) ambiguous. */
Test(registry, check_refuses_control_bytes_in_text_and_choices_that_are_not_words)
{
    struct lsh_strategy s = valid;
    s.summary = "\x1b[2Jclears the screen";
    expect_refused(&s, "summary has a control character");
    s = valid;
    static const char *const ok[] = {"a", "b", NULL};
    const struct lsh_param bad_doc[] = {
        {.name = "k", .type = LSH_PARAM_CHOICE, .doc = "d\tx", .def_choice = "a", .choices = ok},
        {.type = LSH_PARAM_END}};
    s.params = bad_doc;
    expect_refused(&s, "parameter 'k' has a control character in its doc line");
    static const char *const comma[] = {"a", "x=y,z", NULL};
    static const char *const space[] = {"a b", "c", NULL};
    static const char *const empty[] = {"", "c", NULL};
    const struct lsh_param *cases[3];
    const struct lsh_param p_comma[] = {
        {.name = "k", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "a", .choices = comma},
        {.type = LSH_PARAM_END}};
    const struct lsh_param p_space[] = {
        {.name = "k", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "c", .choices = space},
        {.type = LSH_PARAM_END}};
    const struct lsh_param p_empty[] = {
        {.name = "k", .type = LSH_PARAM_CHOICE, .doc = "d", .def_choice = "c", .choices = empty},
        {.type = LSH_PARAM_END}};
    cases[0] = p_comma, cases[1] = p_space, cases[2] = p_empty;
    const char *shown[] = {"'x=y,z'", "'a b'", "''"};
    for (size_t i = 0; i < 3; i++) {
        s.params = cases[i];
        expect_refused(&s, shown[i]);
        expect_refused(&s, "allowed: 1 to 63 characters of A-Za-z0-9_.+-");
    }
}
