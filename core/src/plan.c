/* plan.c - expand a config into hash groups, passes and points, checking
 * every point with its strategy before any work starts. */
#include "plan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "results.h"
#include "rng.h"

void lsh_plan_free(struct lsh_plan *plan)
{
    if (!plan)
        return;
    for (size_t g = 0; g < plan->n_groups; g++)
        free(plan->groups[g].skip_reason);
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

/* Mode settings of the sweep: bucket once, chunked x chunk_size x look_back
 * x window. */
static size_t mode_settings(const struct lsh_sweep *sw, struct lsh_mode_opts *out)
{
    size_t k = 0;
    for (size_t a = 0; a < sw->n_mode; a++) {
        if (sw->mode[a] == LSH_MODE_BUCKET) {
            if (out)
                out[k] = (struct lsh_mode_opts){LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL};
            k++;
            continue;
        }
        for (size_t c = 0; c < sw->n_chunk_size; c++)
            for (size_t l = 0; l < sw->n_look_back; l++)
                for (size_t w = 0; w < sw->n_window; w++) {
                    if (out)
                        out[k] = (struct lsh_mode_opts){LSH_MODE_CHUNKED, sw->chunk_size[c],
                                                        sw->look_back[l], sw->window[w]};
                    k++;
                }
    }
    return k;
}

static int check_point(const struct lsh_config *cfg, const struct lsh_strategy_spec *st,
                       const struct lsh_param_set *ps, const struct lsh_dataset_spec *ds,
                       const struct lsh_dataset_shape *shape, uint32_t n_buckets,
                       char *why, size_t why_size)
{
    if (!st->strategy->check)
        return 0;
    struct lsh_round round = {
        .d = shape->d,
        .n_buckets = n_buckets,
        .n_rows = cfg->attention.keys == LSH_KEYS_SEPARATE ? 2 * shape->n : shape->n,
        .params = ps->values,
        .n_params = ps->n_params,
        .host = lsh_host_services(),
    };
    struct lsh_strategy_error serr = {{0}};
    int rc = st->strategy->check(&round, &serr);
    if (rc) {
        snprintf(why, why_size, "%s%s%s cannot run n_buckets %u on dataset '%s' (n = %zu, d = %zu): %s",
                 st->name, ps->canonical[0] ? " " : "", ps->canonical, n_buckets, ds->name,
                 shape->n, shape->d, serr.message[0] ? serr.message : "refused by check()");
        return LSH_ECONFIG;
    }
    return 0;
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
        struct lsh_dataset_shape *sh = &plan->shapes[k];
        int rc = lsh_dataset_probe(ds, cfg->path, &sh->n, &sh->d, &sh->d_v, err);
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
        if (ds->kind == LSH_DATA_HDF5 && cfg->attention.keys == LSH_KEYS_SEPARATE && !ds->k)
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
    /* Counts come from the config: a product that wrapped around would
     * allocate too little (a 100 KB config with repeats near 2^31 gets there). */
    size_t n_groups, per_pass, n_all;
    if (__builtin_mul_overflow(cfg->n_datasets, n_sets, &n_groups) ||
        __builtin_mul_overflow(n_groups, sw->n_n_buckets, &n_groups) ||
        __builtin_mul_overflow(n_groups, (size_t)cfg->repeats, &n_groups) ||
        __builtin_mul_overflow(sw->n_n_hashes, sw->n_combine, &per_pass) ||
        __builtin_mul_overflow(n_groups, n_modes, &n_all) ||
        __builtin_mul_overflow(n_all, per_pass, &n_all) || n_all == SIZE_MAX) {
        free(modes);
        lsh_plan_free(plan);
        return lsh_error_at(err, LSH_ECONFIG, cfg->path, 0, 0,
                            "the sweep is too large to count: datasets x parameter sets x "
                            "n_buckets x repeats x modes x n_hashes x combine overflows");
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
        for (size_t s = 0; s < cfg->n_strategies && !rc; s++) {
            const struct lsh_strategy_spec *st = &cfg->strategies[s];
            for (size_t ps = 0; ps < st->n_sets && !rc; ps++) {
                for (size_t b = 0; b < sw->n_n_buckets && !rc; b++) {
                    char why[LSH_ERROR_MSG_MAX - 128];
                    int bad = check_point(cfg, st, &st->sets[ps], ds, &plan->shapes[dsi],
                                          sw->n_buckets[b], why, sizeof why);
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
                            .n_buckets = sw->n_buckets[b], .repeat = rep, .h_max = h_max,
                            .seed = point_seed(cfg, ds->name, st, &st->sets[ps],
                                               sw->n_buckets[b], rep),
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
    free(modes);
    if (rc) {
        lsh_plan_free(plan);
        return rc;
    }
    *out = plan;
    return 0;
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
        .seed = g->seed,
    };
}

void lsh_plan_memory(const struct lsh_config *cfg, const struct lsh_plan *plan, size_t dataset,
                     unsigned threads, struct lsh_memory *out)
{
    const struct lsh_dataset_shape *sh = &plan->shapes[dataset];
    const struct lsh_dataset_spec *ds = &cfg->datasets[dataset];
    const size_t n = sh->n, d = sh->d, dv = sh->d_v, D = sizeof(double);
    const int separate = cfg->attention.keys == LSH_KEYS_SEPARATE;
    const size_t m = ds->reference_rows ? ds->reference_rows : n;
    uint32_t kmax = 0, h_max = 0, b_max = 0;
    for (size_t k = 0; k < cfg->attention.n_topk; k++)
        kmax = cfg->attention.topk[k] > kmax ? cfg->attention.topk[k] : kmax;
    for (size_t k = 0; k < cfg->sweep.n_n_buckets; k++)
        b_max = cfg->sweep.n_buckets[k] > b_max ? cfg->sweep.n_buckets[k] : b_max;
    h_max = cfg->sweep.n_hashes[cfg->sweep.n_n_hashes - 1];
    /* Q, K (or Q normalised), V, and [Q; K] for fits */
    size_t data = n * d * D * (separate ? 4 : 2) + n * dv * D + n * D;
    /* summaries, O, top-k; the block of scores per thread */
    size_t rows = n < 8 ? 8 : ((size_t)1 << 22) / n > 128 ? 128 : ((size_t)1 << 22) / n;
    rows = rows < 8 ? 8 : rows;
    size_t ref = m * (4 * D + dv * D + kmax * 4) + threads * rows * (n + d) * D;
    /* buckets (queries and keys), their per-round indexes, per-round plugin
     * state (a fit may hold a normalised copy of its rows, and B x d) */
    size_t rounds = (size_t)h_max * n * 4 * (separate ? 2 : 1) * 2 +
                    (size_t)h_max * ((separate ? 2 : 1) * n * 4 + n * 4 + (size_t)b_max * 4) +
                    (size_t)threads * ((separate ? 2 : 1) * n * (d + 1) * D + (size_t)b_max * d * D);
    /* eval workspaces; the tile path's running sums per row, and its tiles */
    size_t work = threads * (n * (5 * 4 + 2 * D) + 3 * dv * D) + m * (dv + 4) * D +
                  threads * ((size_t)1 << 21);
    out->base = data + ref + rounds + work + ((size_t)64 << 20); /* + the process itself */
    /* Only the row path reads cached scores: a combine other than union. */
    int rows_path = 0;
    const size_t n_modes = mode_settings(&cfg->sweep, NULL);
    struct lsh_mode_opts *modes = calloc(n_modes + 1, sizeof *modes);
    if (modes) {
        mode_settings(&cfg->sweep, modes);
        for (size_t k = 0; k < n_modes; k++)
            rows_path |= !lsh_eval_uses_tiles(&modes[k], cfg->sweep.combine, cfg->sweep.n_combine);
        free(modes);
    } else {
        rows_path = 1;
    }
    out->cache = rows_path ? m * n * D : 0;
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
        lsh_plan_memory(cfg, plan, k, threads, &mem);
        if (mem.base > limit) {
            char need[32], have[32];
            human_bytes(mem.base, need, sizeof need);
            human_bytes(limit, have, sizeof have);
            const struct lsh_dataset_spec *ds = &cfg->datasets[k];
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                                "dataset '%s' (n = %zu) needs about %s on %u thread%s, more "
                                "than the memory limit of %s; allowed: raise --memory-limit, "
                                "use fewer threads (-j) or fewer n_hashes",
                                ds->name, plan->shapes[k].n, need, threads,
                                threads == 1 ? "" : "s", have);
        }
    }
    return 0;
}
