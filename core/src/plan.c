/* plan.c - expand a config into hash groups, passes and points, checking
 * every point with its strategy before any work starts. */
#include "plan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "eval.h"
#include "host.h"
#include "memsize.h"
#include "point.h"
#include "rng.h"

void lsh_plan_free(struct lsh_plan *plan)
{
    if (!plan)
        return;
    for (size_t g = 0; g < plan->n_groups; g++)
        free(plan->groups[g].skip_reason);
    for (size_t k = 0; plan->shapes && k < plan->n_datasets; k++)
        lsh_dataset_layout_free(&plan->shapes[k]);
    free(plan->shapes);
    free(plan->groups);
    free(plan->passes);
    free(plan->points);
    free(plan);
}

/* The point seed of SPEC 7: n_hashes is deliberately not part of it. */
static uint64_t point_seed(const struct lsh_config *cfg, const char *dataset,
                           const struct lsh_strategy_spec *st, const struct lsh_param_set *ps,
                           uint32_t n_buckets, uint32_t repeat)
{
    uint64_t h = lsh_seed_u64(0x6c73686c6162ULL /* "lshlab" */, cfg->seed);
    h = lsh_seed_str(h, dataset);
    h = lsh_seed_str(h, st->name);
    h = lsh_seed_str(h, ps->canonical);
    h = lsh_seed_u64(h, n_buckets);
    return lsh_seed_u64(h, repeat);
}

/* The passes of a hash group, in plan order: mode settings (bucket once,
 * chunked x chunk_size x look_back x window), each with every candidate rule
 * (min_collisions x sink x local, SPEC 13). */
static void put_rules(const struct lsh_sweep *sw, struct lsh_mode_opts mode,
                      struct lsh_mode_opts *out, size_t *k)
{
    for (size_t t = 0; t < sw->n_min_collisions; t++)
        for (size_t s = 0; s < sw->n_sink; s++)
            for (size_t w = 0; w < sw->n_local; w++) {
                if (out) {
                    out[*k] = mode;
                    out[*k].min_collisions = sw->min_collisions[t];
                    out[*k].sink = sw->sink[s];
                    out[*k].local = sw->local[w];
                }
                (*k)++;
            }
}

static size_t mode_settings(const struct lsh_sweep *sw, struct lsh_mode_opts *out)
{
    size_t k = 0;
    for (size_t a = 0; a < sw->n_mode; a++) {
        if (sw->mode[a] == LSH_MODE_BUCKET) {
            put_rules(sw, (struct lsh_mode_opts){LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0},
                      out, &k);
            continue;
        }
        for (size_t c = 0; c < sw->n_chunk_size; c++)
            for (size_t l = 0; l < sw->n_look_back; l++)
                for (size_t w = 0; w < sw->n_window; w++)
                    put_rules(sw, (struct lsh_mode_opts){LSH_MODE_CHUNKED, sw->chunk_size[c],
                                                         sw->look_back[l], sw->window[w], 1, 0,
                                                         0},
                              out, &k);
    }
    return k;
}

/* The sweep's first combine importance (its index), or n_combine. */
static size_t importance_at(const struct lsh_sweep *sw)
{
    size_t c = 0;
    while (c < sw->n_combine && sw->combine[c] != LSH_COMBINE_IMPORTANCE)
        c++;
    return c;
}

/* Is combine c one of the sweep's? */
static int combine_in(const struct lsh_sweep *sw, enum lsh_combine c)
{
    for (size_t k = 0; k < sw->n_combine; k++)
        if (sw->combine[k] == c)
            return 1;
    return 0;
}

/* combine importance needs the strategy's collision law for these
 * parameters, n_buckets and d (SPEC 14). */
static int check_law(const struct lsh_config *cfg, const struct lsh_strategy_spec *st,
                     const struct lsh_param_set *ps, const struct lsh_dataset_layout *shape,
                     uint32_t n_buckets, char *why, size_t why_size)
{
    const struct lsh_host_point pt = lsh_host_point_of(
        st, (size_t)(ps - st->sets), n_buckets, shape->d,
        cfg->attention.keys == LSH_KEYS_SEPARATE ? 2 * shape->n : shape->n);
    struct lsh_host_law law;
    char reason[LSH_ERROR_MSG_MAX - 256];
    if (!lsh_host_law_of(&pt, &law, reason, sizeof reason))
        return 0;
    snprintf(why, why_size, "combine importance needs a collision law (docs/definitions.md section 5): %s", reason);
    return LSH_ECONFIG;
}

static int check_point(const struct lsh_config *cfg, const struct lsh_strategy_spec *st,
                       const struct lsh_param_set *ps, const struct lsh_dataset_spec *ds,
                       const struct lsh_dataset_layout *shape, uint32_t n_buckets,
                       char *why, size_t why_size)
{
    const struct lsh_host_point pt = lsh_host_point_of(
        st, (size_t)(ps - st->sets), n_buckets, shape->d,
        cfg->attention.keys == LSH_KEYS_SEPARATE ? 2 * shape->n : shape->n);
    char where[320];
    snprintf(where, sizeof where, "on dataset '%s' (n = %zu, d = %zu)", ds->name, shape->n,
             shape->d);
    return lsh_host_check(&pt, where, why, why_size) ? LSH_ECONFIG : 0;
}

/* An error at a mark of the config, or at the dataset's entry when the
 * value was not written (a default). */
static int config_error(struct lsh_error *err, const struct lsh_config *cfg,
                        const struct lsh_dataset_spec *ds, struct lsh_mark at, const char *fmt,
                        ...) __attribute__((format(printf, 5, 6)));
static int config_error(struct lsh_error *err, const struct lsh_config *cfg,
                        const struct lsh_dataset_spec *ds, struct lsh_mark at, const char *fmt,
                        ...)
{
    char msg[LSH_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at.line <= 0)
        at = (struct lsh_mark){ds->line, ds->column};
    return lsh_error_at(err, LSH_ECONFIG, cfg->path, at.line, at.column, "%s", msg);
}

/* The checks that need a dataset's shape, for every kind (an hdf5 file's
 * shape is known only here): this is the one place they are made. */
static int check_datasets(const struct lsh_config *cfg, struct lsh_plan *plan,
                          struct lsh_error *err)
{
    const struct lsh_sweep *sw = &cfg->sweep;
    int chunked = 0;
    for (size_t m = 0; m < sw->n_mode; m++)
        chunked |= sw->mode[m] == LSH_MODE_CHUNKED;
    for (size_t k = 0; k < cfg->n_datasets; k++) {
        const struct lsh_dataset_spec *ds = &cfg->datasets[k];
        struct lsh_dataset_layout *sh = &plan->shapes[k];
        int rc = lsh_dataset_probe(ds, cfg->path, sh, err);
        if (rc) {
            if (err) { /* the probe names the data file; the config entry is the place */
                err->line = ds->line;
                err->column = ds->column;
                snprintf(err->file, sizeof err->file, "%s", cfg->path ? cfg->path : "");
            }
            return rc;
        }
        if (sh->n > LSH_ROWS_MAX)
            return config_error(err, cfg, ds, (struct lsh_mark){0, 0},
                                "dataset '%s' has %zu rows; allowed: at most %zu (rows are "
                                "numbered in 32 bits)", ds->name, sh->n, LSH_ROWS_MAX);
        if ((ds->kind == LSH_DATA_HDF5 || ds->kind == LSH_DATA_NPY) &&
            cfg->attention.keys == LSH_KEYS_SEPARATE && !ds->k)
            return config_error(err, cfg, ds, (struct lsh_mark){0, 0},
                                "dataset '%s': keys: separate needs a K matrix (add 'k: <path>')",
                                ds->name);
        if (ds->reference_rows > sh->n)
            return config_error(err, cfg, ds, ds->reference_rows_at,
                                "datasets[%zu].reference_rows: %zu rows is more than n = %zu of "
                                "dataset '%s'; allowed: an integer in [1, %zu] or all",
                                k, ds->reference_rows, sh->n, ds->name, sh->n);
        /* a chunk holding everything is not what a chunked point measures */
        for (size_t c = 0; chunked && c < sw->n_chunk_size; c++) {
            if (sw->chunk_size[c] <= sh->n)
                continue;
            if (sw->chunk_size_marks)
                return config_error(err, cfg, ds, sw->chunk_size_marks[c],
                                    "sweep.chunk_size: %" PRIu32 " is larger than n = %zu of "
                                    "dataset '%s'; allowed: 1 to n", sw->chunk_size[c], sh->n,
                                    ds->name);
            return config_error(err, cfg, ds, sw->chunked_at,
                                "sweep.mode: chunked with the default chunk_size %" PRIu32
                                " is larger than n = %zu of dataset '%s'; set sweep.chunk_size "
                                "(allowed: 1 to n)", sw->chunk_size[c], sh->n, ds->name);
        }
    }
    return 0;
}

int lsh_plan_build(const struct lsh_config *cfg, struct lsh_plan **out, struct lsh_error *err)
{
    const struct lsh_sweep *sw = &cfg->sweep;
    struct lsh_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    plan->n_datasets = cfg->n_datasets;
    plan->shapes = calloc(cfg->n_datasets + 1, sizeof *plan->shapes);
    int rc = plan->shapes ? check_datasets(cfg, plan, err)
                          : lsh_error_set(err, LSH_ENOMEM, "out of memory");
    if (rc) {
        lsh_plan_free(plan);
        return rc;
    }

    const size_t n_modes = mode_settings(sw, NULL);
    struct lsh_mode_opts *modes = calloc(n_modes + 1, sizeof *modes);
    size_t n_sets = 0;
    for (size_t s = 0; s < cfg->n_strategies; s++)
        n_sets += cfg->strategies[s].n_sets;
    /* Counts come from the config and the data: a product that wrapped
     * around would allocate too little (a 100 KB config with repeats near
     * 2^31 gets there). */
    size_t n_units = 0, n_groups, per_pass, n_all;
    int over = 0;
    for (size_t k = 0; k < cfg->n_datasets && !over; k++)
        over = __builtin_add_overflow(n_units, lsh_plan_units(plan, k), &n_units);
    if (over || __builtin_mul_overflow(n_units, n_sets, &n_groups) ||
        __builtin_mul_overflow(n_groups, sw->n_n_buckets, &n_groups) ||
        __builtin_mul_overflow(n_groups, (size_t)cfg->repeats, &n_groups) ||
        __builtin_mul_overflow(sw->n_n_hashes, sw->n_combine, &per_pass) ||
        __builtin_mul_overflow(n_groups, n_modes, &n_all) ||
        __builtin_mul_overflow(n_all, per_pass, &n_all) || n_all == SIZE_MAX) {
        free(modes);
        lsh_plan_free(plan);
        return lsh_error_at(err, LSH_ECONFIG, cfg->path, 0, 0,
                            "the sweep is too large to count: datasets x layers x heads x "
                            "parameter sets x n_buckets x repeats x modes x candidate rules x n_hashes x "
                            "combine "
                            "overflows");
    }
    /* The config bounded its points before the data was probed; its layers
     * and heads multiply them (SPEC 11.2). */
    if (n_all > LSH_POINTS_MAX) {
        size_t widest = 0;
        for (size_t k = 1; k < cfg->n_datasets; k++)
            if (lsh_plan_units(plan, k) > lsh_plan_units(plan, widest))
                widest = k;
        const struct lsh_dataset_spec *ds = &cfg->datasets[widest];
        free(modes);
        rc = lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                          "the sweep is too large: over the datasets' layers and heads (%zu "
                          "units; dataset '%s' selects %zu) it expands to %zu points; allowed: "
                          "at most %zu (select fewer layers or heads)",
                          n_units, ds->name, lsh_plan_units(plan, widest), n_all,
                          (size_t)LSH_POINTS_MAX);
        lsh_plan_free(plan);
        return rc;
    }
    plan->groups = calloc(n_groups + 1, sizeof *plan->groups);
    plan->passes = calloc(n_groups * n_modes + 1, sizeof *plan->passes);
    plan->points = calloc(n_groups * n_modes * per_pass + 1, sizeof *plan->points);
    if (!modes || !plan->groups || !plan->passes || !plan->points) {
        free(modes);
        lsh_plan_free(plan);
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    mode_settings(sw, modes);
    const uint32_t h_max = sw->n_hashes[sw->n_n_hashes - 1];

    for (size_t dsi = 0; dsi < cfg->n_datasets && !rc; dsi++) {
        const struct lsh_dataset_spec *ds = &cfg->datasets[dsi];
        const size_t units = lsh_plan_units(plan, dsi);
        for (size_t u = 0; u < units && !rc; u++) {
            const struct lsh_dataset_unit where = lsh_plan_unit(plan, dsi, u);
            for (size_t s = 0; s < cfg->n_strategies && !rc; s++) {
                const struct lsh_strategy_spec *st = &cfg->strategies[s];
                for (size_t ps = 0; ps < st->n_sets && !rc; ps++) {
                    for (size_t b = 0; b < sw->n_n_buckets && !rc; b++) {
                        char why[LSH_ERROR_MSG_MAX - 128];
                        int bad = check_point(cfg, st, &st->sets[ps], ds, &plan->shapes[dsi],
                                              sw->n_buckets[b], why, sizeof why);
                        const size_t imp = importance_at(sw);
                        if (!bad && imp < sw->n_combine) {
                            bad = check_law(cfg, st, &st->sets[ps], &plan->shapes[dsi],
                                            sw->n_buckets[b], why, sizeof why);
                            if (bad && !st->skip_invalid) {
                                const struct lsh_mark cm = sw->combine_marks[imp];
                                rc = lsh_error_at(err, LSH_ECONFIG, cfg->path, st->line,
                                                  st->column,
                                                  "%s on dataset '%s' (d = %zu), and "
                                                  "sweep.combine gives importance (line %d, "
                                                  "column %d); allowed: a strategy and "
                                                  "parameters with a law, another combine, or "
                                                  "'skip_invalid: true' on the strategy to "
                                                  "skip them", why, ds->name,
                                                  plan->shapes[dsi].d, cm.line, cm.column);
                                break;
                            }
                        }
                        if (bad && !st->skip_invalid) {
                            const struct lsh_mark *mk = &sw->n_buckets_marks[b];
                            rc = lsh_error_at(err, LSH_ECONFIG, cfg->path, mk->line, mk->column,
                                              "%s; allowed: values the strategy accepts, or "
                                              "'skip_invalid: true' on the strategy to skip them",
                                              why);
                            break;
                        }
                        for (uint32_t rep = 0; rep < cfg->repeats; rep++) {
                            struct lsh_hash_group *g = &plan->groups[plan->n_groups++];
                            *g = (struct lsh_hash_group){
                                .dataset = dsi, .strategy = s, .param_set = ps,
                                .unit = u, .where = where,
                                .n_buckets = sw->n_buckets[b], .repeat = rep, .h_max = h_max,
                                .seed = lsh_seed_unit(point_seed(cfg, ds->name, st,
                                                                 &st->sets[ps],
                                                                 sw->n_buckets[b], rep),
                                                      where.layer, where.head),
                                .first_pass = plan->n_passes, .n_passes = n_modes,
                            };
                            if (bad) {
                                g->skip_reason = strdup(why);
                                plan->n_skipped_groups++;
                            }
                            for (size_t m = 0; m < n_modes; m++) {
                                struct lsh_pass *pa = &plan->passes[plan->n_passes];
                                pa->group = plan->n_groups - 1;
                                pa->mode = modes[m];
                                pa->first_point = plan->n_points;
                                for (size_t h = 0; h < sw->n_n_hashes; h++)
                                    for (size_t c = 0; c < sw->n_combine; c++) {
                                        struct lsh_plan_point *pt = &plan->points[plan->n_points];
                                        pt->id = plan->n_points++;
                                        pt->pass = plan->n_passes;
                                        pt->n_hashes = sw->n_hashes[h];
                                        pt->combine = sw->combine[c];
                                    }
                                plan->n_passes++;
                            }
                        }
                    }
                }
            }
        }
    }
    free(modes);
    if (rc) {
        lsh_plan_free(plan);
        return rc;
    }
    *out = plan;
    return 0;
}

size_t lsh_plan_units(const struct lsh_plan *plan, size_t dataset)
{
    const struct lsh_dataset_layout *l = &plan->shapes[dataset];
    size_t units;
    if (__builtin_mul_overflow(l->n_layers, l->n_heads, &units))
        return SIZE_MAX;
    return units;
}

struct lsh_dataset_unit lsh_plan_unit(const struct lsh_plan *plan, size_t dataset, size_t u)
{
    const struct lsh_dataset_layout *l = &plan->shapes[dataset];
    return (struct lsh_dataset_unit){l->layers[u / l->n_heads], l->heads[u % l->n_heads]};
}

void lsh_plan_point_key(const struct lsh_plan *plan, const struct lsh_config *cfg, size_t p,
                        struct lsh_point_key *key)
{
    const struct lsh_plan_point *pt = &plan->points[p];
    const struct lsh_pass *pa = &plan->passes[pt->pass];
    const struct lsh_hash_group *g = &plan->groups[pa->group];
    const struct lsh_strategy_spec *st = &cfg->strategies[g->strategy];
    *key = (struct lsh_point_key){
        .point_id = pt->id,
        .dataset = cfg->datasets[g->dataset].name,
        .layer = g->where.layer,
        .head = g->where.head,
        .strategy = st->name,
        .params = st->sets[g->param_set].canonical,
        .mode = pa->mode.mode,
        .chunk_size = pa->mode.chunk_size,
        .look_back = pa->mode.look_back,
        .window = pa->mode.window,
        .combine = pt->combine,
        .n_hashes = pt->n_hashes,
        .n_buckets = g->n_buckets,
        .repeat = g->repeat,
        .min_collisions = pa->mode.min_collisions,
        .sink = pa->mode.sink,
        .local = pa->mode.local,
        .seed = g->seed,
    };
}

/* ---- memory ----------------------------------------------------------------------- */

/* Each module that allocates per dataset or per point gives its own figure
 * (lsh_dataset_bytes, lsh_reference_bytes, lsh_eval_bytes); what the sweep
 * itself allocates is counted here.  Phases are added, not overlapped (the
 * reference's scratch is gone when the rounds are hashed), so the sum is an
 * upper bound.  A round's memory (lsh_host_round_memory) includes what the
 * built-in strategies allocate (rotation's d x B/2 matrix and k-means' B x d
 * centroids live as long as their round, that is a hash group's h_max rounds);
 * what another plugin allocates itself cannot be known under ABI 1.0. */

/* The process without any data: code, libraries, HDF5, the results file;
 * and what a thread's stack and BLAS buffers touch. */
#define PROCESS_BYTES ((size_t)32 << 20)
#define THREAD_BYTES ((size_t)4 << 20)

/* The host's own memory for the rounds of a hash group (host.h): h_max
 * rounds held open and, per thread bucketing one, the copy of the fit rows
 * or a hash batch; the largest over the config's strategies. */
static struct lsh_bytes host_round_bytes(const struct lsh_config *cfg, size_t rows, size_t d,
                                         uint32_t n_buckets, size_t open_rounds)
{
    struct lsh_bytes b = {0, 0};
    for (size_t s = 0; s < cfg->n_strategies; s++) {
        const struct lsh_strategy_spec *st = &cfg->strategies[s];
        if (!st->strategy)
            continue;
        for (size_t ps = 0; ps < (st->sets ? st->n_sets : 1); ps++) {
            const struct lsh_host_point pt =
                st->sets ? lsh_host_point_of(st, ps, n_buckets, d, rows)
                         : (struct lsh_host_point){.strategy = st->strategy, .n_buckets = n_buckets,
                                                   .d = d, .n_rows = rows};
            struct lsh_host_memory m;
            lsh_host_round_memory(&pt, &m);
            const size_t kept = lsh_size_mul(open_rounds, m.kept);
            b.shared = kept > b.shared ? kept : b.shared;
            b.per_thread = m.transient > b.per_thread ? m.transient : b.per_thread;
        }
    }
    return b;
}

static size_t max_of(size_t a, size_t b)
{
    return a > b ? a : b;
}

void lsh_plan_memory(const struct lsh_config *cfg, const struct lsh_plan *plan, size_t dataset,
                     struct lsh_memory *out)
{
    const struct lsh_dataset_layout *sh = &plan->shapes[dataset];
    const struct lsh_dataset_spec *ds = &cfg->datasets[dataset];
    const struct lsh_sweep *sw = &cfg->sweep;
    const size_t n = sh->n, d = sh->d, dv = sh->d_v, D = sizeof(double), U = sizeof(uint32_t);
    const int separate = cfg->attention.keys == LSH_KEYS_SEPARATE;
    const size_t m = ds->reference_rows && ds->reference_rows < n ? ds->reference_rows : n;
    const size_t nh = sw->n_n_hashes, nc = sw->n_combine, nt = cfg->attention.n_topk;
    uint32_t kmax = 0, b_max = 0;
    for (size_t k = 0; k < nt; k++)
        kmax = cfg->attention.topk[k] > kmax ? cfg->attention.topk[k] : kmax;
    for (size_t k = 0; k < sw->n_n_buckets; k++)
        b_max = sw->n_buckets[k] > b_max ? sw->n_buckets[k] : b_max;
    const uint32_t h_max = sw->n_hashes[nh - 1];
    /* an assign strategy may give keys buckets of their own (sweep.c) */
    int assigns = 0;
    for (size_t s = 0; s < cfg->n_strategies; s++)
        assigns |= cfg->strategies[s].strategy && lsh_host_assigns(cfg->strategies[s].strategy);

    struct lsh_bytes b = {PROCESS_BYTES, THREAD_BYTES};
    b.shared = lsh_size_add(b.shared, lsh_dataset_bytes(ds, n, d, dv, separate));
    /* the sweep's problem: normalised keys and their norms, sampled rows */
    if (cfg->attention.keys == LSH_KEYS_SHARED_NORMALIZED)
        b.shared = lsh_size_add(b.shared, lsh_size_mul3(n, lsh_size_add(d, 1), D));
    if (m < n)
        b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(m, n), sizeof(size_t)));
    b = lsh_bytes_add(b, lsh_reference_bytes(n, m, d, dv, kmax));
    const size_t unit_shared = b.shared; /* what the unit's groups share */
    /* a hash group: buckets of h_max rounds, the host's rounds */
    b.shared = lsh_size_add(b.shared, lsh_size_mul3(h_max, n, separate || assigns ? 2 * U : U));
    /* rows a round sees: Q, and K or the unit keys beside them (assign copies both) */
    const int other_keys = cfg->attention.keys != LSH_KEYS_SHARED;
    b = lsh_bytes_add(b, host_round_bytes(cfg, other_keys ? lsh_size_mul(2, n) : n, d, b_max, h_max));
    /* a pass: the largest eval figure over the mode settings; its outputs */
    const size_t n_modes = mode_settings(sw, NULL);
    struct lsh_mode_opts *modes = calloc(n_modes + 1, sizeof *modes);
    int rows_path = 0;
    struct lsh_bytes ev = {0, 0};
    const struct lsh_eval_shape es = {
        .n = n, .m = m, .d = d, .d_v = dv, .n_topk = nt, .kmax = kmax < n ? kmax : n,
        .h_max = h_max, .n_buckets = b_max,
        .n_prefix = nh, .n_combine = nc, .separate = separate || assigns,
        .importance = importance_at(sw) < nc, .rounds = combine_in(sw, LSH_COMBINE_ROUNDS),
        .oracle = cfg->attention.oracle,
    };
    if (modes) {
        mode_settings(sw, modes);
        for (size_t k = 0; k < n_modes; k++) {
            const int tiles = lsh_eval_uses_tiles(&modes[k], sw->combine, nc, h_max);
            const struct lsh_bytes e = lsh_eval_bytes(&es, &modes[k], tiles);
            ev.shared = max_of(ev.shared, e.shared);
            ev.per_thread = max_of(ev.per_thread, e.per_thread);
            rows_path |= !tiles;
        }
        free(modes);
    } else { /* cannot count: say too much rather than too little */
        ev = (struct lsh_bytes){SIZE_MAX, SIZE_MAX};
        rows_path = 1;
    }
    b = lsh_bytes_add(b, ev);
    size_t outs = lsh_size_mul(lsh_size_mul(nh, nc),
                               lsh_size_add(sizeof(struct lsh_metrics) + sizeof(struct lsh_metric_se),
                                            lsh_size_mul(2 * nt, D)));
    if (cfg->dump & LSH_DUMP_ROWS)
        outs = lsh_size_add(outs, lsh_size_mul3(nh + 1, lsh_size_add(m, 1), D + U));
    b.shared = lsh_size_add(b.shared, outs);

    out->shared = b.shared;
    out->per_thread = b.per_thread;
    out->group = b.shared == SIZE_MAX ? SIZE_MAX : b.shared - unit_shared;
    /* Only the row path (combine importance, or over 255 rounds with rounds
     * or min_collisions > 1) and the oracle read cached scores; they get the
     * same bits from the cache as without it, and the oracle, which scores
     * every pair of U_i once a unit (every pass without its table), runs
     * about 4x faster with it. */
    out->cache = rows_path || cfg->attention.oracle ? lsh_reference_cache_bytes(m, n) : 0;
}

size_t lsh_memory_total(const struct lsh_memory *mem, unsigned threads, int cache)
{
    const size_t t = lsh_bytes_total((struct lsh_bytes){mem->shared, mem->per_thread},
                                     threads ? threads : 1);
    return cache ? lsh_size_add(t, mem->cache) : t;
}

unsigned lsh_plan_threads(const struct lsh_memory *mem, unsigned threads, size_t limit,
                          int *cache)
{
    threads = threads ? threads : 1;
    *cache = mem->cache > 0 && lsh_memory_total(mem, 1, 1) <= limit;
    if (!*cache)
        return threads;
    const size_t room = limit - lsh_memory_total(mem, 1, 1);
    const size_t more = mem->per_thread ? room / mem->per_thread : threads;
    return more + 1 < threads ? (unsigned)(more + 1) : threads;
}

unsigned lsh_plan_side_groups(const struct lsh_memory *mem, unsigned threads, size_t limit,
                              int cache, size_t groups, size_t *hold)
{
    unsigned w = threads ? threads : 1;
    size_t base = 0;
    for (; w > 1; w--) {
        /* the groups taken and not yet written: each worker's, and as many
         * finished ones whose rows and dumps wait for the writer; one of
         * them is in mem->shared */
        base = lsh_size_add(lsh_memory_total(mem, w, cache),
                            lsh_size_mul(2 * (size_t)w - 1, mem->group));
        if (base <= limit)
            break;
    }
    size_t h = 2 * (size_t)w;
    if (w > 1 && h < groups) {
        const size_t more = mem->group ? (limit - base) / mem->group : groups;
        h = more < groups - h ? h + more : groups;
    }
    if (hold)
        *hold = h;
    return w;
}

size_t lsh_plan_collision_memory(const struct lsh_config *cfg, unsigned threads)
{
    const struct lsh_sweep *sw = &cfg->sweep;
    const size_t P = cfg->collision.pairs, d = cfg->collision.d, D = sizeof(double);
    const size_t words = P / 64 + 1;
    size_t points = 0; /* skipped ones too: an upper bound */
    for (size_t s = 0; s < cfg->n_strategies; s++)
        points = lsh_size_add(points, lsh_size_mul(cfg->strategies[s].n_sets, sw->n_n_buckets));
    const size_t tasks = lsh_size_mul(points, sw->n_hashes[sw->n_n_hashes - 1]);
    struct lsh_bytes b = {PROCESS_BYTES, THREAD_BYTES};
    /* collision.c's block: the pairs, per task a bitmap, count, seconds, code
     * and message, per point its seed; per thread the pairs' buckets, a
     * drawing scratch row and a round's state */
    b.shared = lsh_size_add(b.shared, lsh_size_mul3(lsh_size_mul(2, P), d, D));
    b.shared = lsh_size_add(b.shared, lsh_size_mul(tasks, lsh_size_add(lsh_size_mul(words, 8),
                                                                       20 + LSH_STRATEGY_MSG_MAX + 160)));
    b.shared = lsh_size_add(b.shared, lsh_size_add(lsh_size_mul(points, 2 * sizeof(size_t)), lsh_size_mul(words, 8)));
    b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul3(2, P, sizeof(uint32_t)));
    b.per_thread = lsh_size_add(b.per_thread, lsh_size_mul(d, D));
    /* one round open per thread, opened and closed by its task */
    uint32_t b_max = 0;
    for (size_t k = 0; sw->n_buckets && k < sw->n_n_buckets; k++)
        b_max = sw->n_buckets[k] > b_max ? sw->n_buckets[k] : b_max;
    const struct lsh_bytes hr = host_round_bytes(cfg, lsh_size_mul(2, P), d, b_max, 1);
    b.per_thread = lsh_size_add(b.per_thread, lsh_size_add(hr.shared, hr.per_thread));
    return lsh_bytes_total(b, threads ? threads : 1);
}

static void human_bytes(size_t b, char *buf, size_t size)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, "%.*f %s", u ? 1 : 0, v, unit[u]);
}

int lsh_plan_check_memory(const struct lsh_config *cfg, const struct lsh_plan *plan,
                          unsigned threads, size_t limit, struct lsh_error *err)
{
    for (size_t k = 0; k < cfg->n_datasets; k++) {
        struct lsh_memory mem;
        lsh_plan_memory(cfg, plan, k, &mem);
        const size_t base = lsh_memory_total(&mem, threads, 0);
        if (base == SIZE_MAX) {
            const struct lsh_dataset_spec *ds = &cfg->datasets[k];
            const struct lsh_dataset_layout *sh = &plan->shapes[k];
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                                "dataset '%s' (n = %zu, d = %zu, d_v = %zu%s) is too large to "
                                "address: its sizes overflow; allowed: sizes whose products "
                                "fit in memory",
                                ds->name, sh->n, sh->d, sh->d_v,
                                ds->kind == LSH_DATA_CLUSTERED ? ", with its clusters" : "");
        }
        if (base > limit) {
            char need[32], have[32];
            human_bytes(base, need, sizeof need);
            human_bytes(limit, have, sizeof have);
            const struct lsh_dataset_spec *ds = &cfg->datasets[k];
            /* problems run one at a time: fewer heads would not help */
            const size_t units = lsh_plan_units(plan, k);
            char each[96] = "";
            if (units > 1)
                snprintf(each, sizeof each, " for each of its %zu (layer, head) problems (they "
                         "run one at a time)", units);
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                                "dataset '%s' (n = %zu) needs about %s on %u thread%s%s, more "
                                "than the memory limit of %s; allowed: raise --memory-limit, "
                                "use fewer threads (-j) or fewer n_hashes",
                                ds->name, plan->shapes[k].n, need, threads,
                                threads == 1 ? "" : "s", each, have);
        }
    }
    return 0;
}

int lsh_plan_check_collision_memory(const struct lsh_config *cfg, unsigned threads, size_t limit,
                                    struct lsh_error *err)
{
    const size_t need = lsh_plan_collision_memory(cfg, threads);
    if (need <= limit)
        return 0;
    char needs[32], have[32];
    human_bytes(need, needs, sizeof needs);
    human_bytes(limit, have, sizeof have);
    return lsh_error_at(err, LSH_ECONFIG, cfg->path, cfg->collision.pairs_at.line,
                        cfg->collision.pairs_at.column,
                        "the collision experiment (pairs %zu, d = %zu) needs about %s on %u "
                        "thread%s, more than the memory limit of %s; allowed: raise "
                        "--memory-limit, use fewer threads (-j), fewer pairs or n_hashes",
                        cfg->collision.pairs, cfg->collision.d,
                        need == SIZE_MAX ? "more than can be addressed" : needs, threads,
                        threads == 1 ? "" : "s", have);
}
