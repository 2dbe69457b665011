/* fuzz_config.c - libFuzzer target for the config loader: any byte string
 * is either refused with an error that names a place, or loads into a config
 * whose resolved YAML loads again into the same resolved YAML, and plans.
 * Also linked into a plain driver (regress_main.c) that replays the kept
 * inputs in the normal test suite. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "plan.h"
#include "registry.h"
#include "results.h"

/* Plans larger than this are not built: they are refused or merely slow,
 * and the fuzzer would report the time, not a bug. */
#define FUZZ_MAX_POINTS 100000

static const struct lsh_registry *registry(void)
{
    static struct lsh_registry *reg;
    if (!reg) {
        struct lsh_error err;
        lsh_error_clear(&err);
        reg = lsh_registry_alloc();
        if (!reg || lsh_registry_load_default(reg, &err)) {
            fprintf(stderr, "fuzz_config: cannot load the strategies: %s\n", err.message);
            abort();
        }
    }
    return reg;
}

/* Points of the plan, saturating instead of wrapping. */
static size_t points_of(const struct lsh_config *cfg)
{
    size_t sets = 0, modes = 0, p;
    for (size_t s = 0; s < cfg->n_strategies; s++)
        sets += cfg->strategies[s].n_sets;
    for (size_t m = 0; m < cfg->sweep.n_mode; m++)
        modes += cfg->sweep.mode[m] == LSH_MODE_BUCKET
                     ? 1
                     : cfg->sweep.n_chunk_size * cfg->sweep.n_look_back * cfg->sweep.n_window;
    const size_t f[] = {cfg->n_datasets, sets, cfg->sweep.n_n_buckets, cfg->repeats, modes,
                        cfg->sweep.n_n_hashes, cfg->sweep.n_combine};
    p = 1;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (f[i] && p > SIZE_MAX / f[i])
            return SIZE_MAX;
        p *= f[i];
    }
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct lsh_registry *reg = registry();
    struct lsh_config *cfg = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_config_parse((const char *)data, size, "fuzz.yaml", reg, &cfg, &err);
    if (rc) {
        if (rc != LSH_ENOMEM && !err.message[0])
            abort(); /* every refusal says why */
        return 0;
    }
    /* The resolved config is a config: it loads, and resolves to itself. */
    char *y1 = lsh_config_resolved_yaml(cfg);
    if (!y1)
        abort();
    struct lsh_config *again = NULL;
    rc = lsh_config_parse(y1, strlen(y1), "resolved.yaml", reg, &again, &err);
    if (rc) {
        fprintf(stderr, "resolved config refused: %s:%d:%d: %s\n--\n%s", err.file, err.line,
                err.column, err.message, y1);
        abort();
    }
    char *y2 = lsh_config_resolved_yaml(again);
    if (!y2 || strcmp(y1, y2) != 0) {
        fprintf(stderr, "resolved config is not a fixed point:\n--\n%s--\n%s", y1,
                y2 ? y2 : "(null)");
        abort();
    }
    free(y2);
    free(y1);
    lsh_config_free(again);

    int has_hdf5 = 0;
    for (size_t i = 0; i < cfg->n_datasets; i++)
        has_hdf5 |= cfg->datasets[i].kind == LSH_DATA_HDF5;
    if (cfg->experiment == LSH_EXPERIMENT_SWEEP && !has_hdf5 &&
        points_of(cfg) <= FUZZ_MAX_POINTS) {
        struct lsh_plan *plan = NULL;
        if (!lsh_plan_build(cfg, &plan, &err)) {
            for (size_t p = 0; p < plan->n_points; p++) {
                struct lsh_point_key key;
                lsh_plan_point_key(plan, cfg, p, &key);
                if (key.point_id != p)
                    abort();
            }
            lsh_plan_free(plan);
        } else if (!err.message[0]) {
            abort();
        }
    }
    lsh_config_free(cfg);
    return 0;
}
