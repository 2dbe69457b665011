/* sweep.c - the engine's driver: unit > reference > rounds > passes > rows.
 * A unit is one (layer, head) of a dataset (SPEC 11.2), its own attention
 * problem: its data, its reference and its hash groups, in plan order. */
#include "sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "eval.h"
#include "host.h"
#include "parallel.h"
#include "reference.h"
#include "rng.h"

/* ---- attention problem of a dataset ------------------------------------------ */

struct problem {
    struct lsh_attn attn;
    double *k_norm;   /* shared_normalized: rows of Q / ||q||, owned */
    double *gnorm;    /* shared_normalized: ||q_j||, owned */
    size_t *rows;     /* reference_rows sample, owned (NULL: all) */
    size_t m;
};

static void problem_free(struct problem *p)
{
    free(p->k_norm);
    free(p->gnorm);
    free(p->rows);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* A seeded uniform sample of m of n rows without replacement, ascending. */
static size_t *sample_rows(size_t n, size_t m, uint64_t seed)
{
    size_t *idx = malloc(n * sizeof *idx);
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    if (!idx || !rng) {
        free(idx);
        lsh_rng_free(rng);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = 0; i < m; i++) { /* partial Fisher-Yates */
        size_t j = i + (size_t)lsh_rng_uniform_int(rng, n - i);
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    lsh_rng_free(rng);
    qsort(idx, m, sizeof *idx, cmp_size);
    return idx;
}

static int problem_init(struct problem *p, const struct lsh_config *cfg,
                        const struct lsh_dataset *ds, struct lsh_error *err)
{
    memset(p, 0, sizeof *p);
    const struct lsh_attention *at = &cfg->attention;
    struct lsh_attn *a = &p->attn;
    a->n = ds->n;
    a->d = ds->d;
    a->d_v = ds->d_v;
    a->q = ds->q;
    a->v = ds->v;
    a->k = ds->q;
    a->scale = at->scale_auto ? 1.0 / sqrt((double)ds->d) : at->scale;
    a->exclude_self = at->exclude_self;
    a->causal = at->causal;
    a->n_topk = at->n_topk;
    a->topk = at->topk;
    if (at->keys == LSH_KEYS_SEPARATE) {
        a->k = ds->k;
    } else if (at->keys == LSH_KEYS_SHARED_NORMALIZED) {
        p->k_norm = malloc(ds->n * ds->d * sizeof *p->k_norm);
        p->gnorm = malloc(ds->n * sizeof *p->gnorm);
        if (!p->k_norm || !p->gnorm)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        lsh_attn_normalize_rows(ds->q, ds->n, ds->d, p->k_norm, p->gnorm);
        a->k = p->k_norm;
        a->gnorm = p->gnorm;
    }
    if (ds->spec->reference_rows && ds->spec->reference_rows < ds->n) {
        p->m = ds->spec->reference_rows;
        p->rows = sample_rows(ds->n, p->m, lsh_seed_str(ds->seed, "reference_rows"));
        if (!p->rows)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- rounds of a hash group ------------------------------------------------------- */

struct round_state {
    struct lsh_host_round *round; /* open until the group is done (dump exports it) */
    double seconds;
    char message[LSH_ERROR_MSG_MAX]; /* why it failed, "" when it did not */
};

struct hashing {
    const struct lsh_config *cfg;
    const struct lsh_hash_group *g;
    struct lsh_host_point point; /* fit on [Q; K] when keys are separate (SPEC 2.3) */
    const struct lsh_dataset *ds;
    int separate;            /* keys are other rows (attention.keys separate) */
    const double *keys;      /* the effective keys: K, Q itself (shared) or the
                                normalised rows (shared_normalized) */
    int with_keys;           /* give key buckets too: separate, or an assign strategy */
    int own_keys;            /* after hashing: the key buckets are the group's own
                                (separate, or some round gave some key a bucket
                                other than its query's); else bk is bq */
    uint32_t *bq, *bk;       /* h_max x n */
    struct round_state *rs;
};

static int hash_task(void *ctx, size_t h, unsigned thread)
{
    (void)thread;
    struct hashing *hs = ctx;
    struct round_state *r = &hs->rs[h];
    const size_t n = hs->ds->n;
    double t0 = lsh_now();
    const struct lsh_host_rows q = {hs->ds->q, n, hs->bq + h * n};
    const struct lsh_host_rows k = {hs->keys, n, hs->bk ? hs->bk + h * n : NULL};
    struct lsh_error e;
    lsh_error_clear(&e);
    int rc = lsh_host_round_open(&hs->point, (uint32_t)h, lsh_seed_u64(hs->g->seed, h),
                                 &r->round, &e);
    if (!rc)
        rc = lsh_host_round_bucket(r->round, &q, hs->bk ? &k : NULL, hs->separate, &e);
    if (rc)
        memcpy(r->message, e.message, sizeof r->message);
    else
        r->seconds = lsh_now() - t0;
    return 0;
}

static void hashing_free(struct hashing *hs)
{
    if (hs->rs)
        for (uint32_t h = 0; h < hs->g->h_max; h++)
            lsh_host_round_close(hs->rs[h].round);
    free(hs->rs);
    free(hs->bq);
    free(hs->bk);
}

/* Hash h_max rounds; a plugin failure is returned as a message (the group's
 * points fail), a resource failure as an error code. */
static int hash_group(struct hashing *hs, unsigned threads, const char **failure,
                      struct lsh_error *err)
{
    const size_t n = hs->ds->n;
    const uint32_t H = hs->g->h_max;
    *failure = NULL;
    hs->bq = malloc(H * n * sizeof *hs->bq);
    hs->bk = hs->with_keys ? malloc(H * n * sizeof *hs->bk) : NULL;
    hs->rs = calloc(H, sizeof *hs->rs);
    if (!hs->bq || (hs->with_keys && !hs->bk) || !hs->rs)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory hashing %u rounds of %zu rows",
                             H, n);
    /* hash_task reports through rs[h]: a non-zero code is the pool's own
     * failure, and then some rounds were never hashed. */
    int rc = lsh_parallel_for(threads, H, hash_task, hs);
    if (rc)
        return lsh_error_set(err, rc, "out of memory starting %u threads to hash %u rounds",
                             threads, H);
    for (uint32_t h = 0; h < H; h++)
        if (hs->rs[h].message[0]) {
            *failure = hs->rs[h].message;
            break;
        }
    /* Shared keys keep shared semantics unless the rule gave some key a
     * bucket other than its query's (docs/definitions.md section 3); after a
     * failed round the buckets were never written, and the group's points
     * fail anyway. */
    hs->own_keys = hs->separate ||
                   (!*failure && hs->bk &&
                    memcmp(hs->bq, hs->bk, (size_t)H * n * sizeof *hs->bq) != 0);
    return 0;
}

/* ---- results of a point ------------------------------------------------------------ */

struct sink_ctx {
    struct lsh_results *res;
    uint64_t point_id;
    uint32_t round;
};

static int sink_array(void *ctx, const char *name, const double *data, size_t rows, size_t cols,
                      struct lsh_error *err)
{
    struct sink_ctx *sc = ctx;
    char full[LSH_HOST_NAME_MAX + 32]; /* host.c checked the name */
    snprintf(full, sizeof full, "hash_params_%s_h%u", name, sc->round);
    return lsh_results_dump_array(sc->res, sc->point_id, full, 'd', data, rows, cols, err);
}

/* dump: buckets and hash_params for one point (its first H rounds).  A
 * plugin that cannot export fails the point (failure says why) before any of
 * its arrays is written; a write that fails is an error. */
static int dump_point(const struct lsh_config *cfg, struct lsh_results *res,
                      const struct hashing *hs, uint64_t point_id, uint32_t H,
                      char failure[LSH_ERROR_MSG_MAX], struct lsh_error *err)
{
    const size_t n = hs->ds->n;
    const int params = (cfg->dump & LSH_DUMP_HASH_PARAMS) != 0;
    int rc = 0;
    for (uint32_t h = 0; params && h < H && !rc; h++) {
        struct lsh_error e;
        lsh_error_clear(&e);
        rc = lsh_host_round_export(hs->rs[h].round, NULL, NULL, &e);
        if (rc == LSH_EPLUGIN) {
            memcpy(failure, e.message, sizeof e.message);
            return 0;
        }
    }
    if (!rc && (cfg->dump & LSH_DUMP_BUCKETS)) {
        rc = lsh_results_dump_array(res, point_id, "buckets", 'u', hs->bq, H, n, err);
        if (!rc && hs->own_keys)
            rc = lsh_results_dump_array(res, point_id, "key_buckets", 'u', hs->bk, H, n, err);
    }
    for (uint32_t h = 0; params && h < H && !rc; h++) {
        struct sink_ctx sc = {res, point_id, h};
        rc = lsh_host_round_export(hs->rs[h].round, sink_array, &sc, err);
    }
    return rc;
}

/* ---- the run ---------------------------------------------------------------------- */

struct run {
    const struct lsh_config *cfg;
    const struct lsh_plan *plan;
    const struct lsh_run_opts *opts;
    struct lsh_results *res;
    struct lsh_run_summary *sum;
    double t0;
    struct lsh_dataset_unit unit; /* the unit being worked on */
    struct lsh_run_times times;   /* other: left 0 until reported */
    double ref_seconds;           /* the unit's reference pass */
    int oracle_told;              /* the oracle's cost was reported for this unit */
};

/* The times so far, other being what the rest leaves of the elapsed time. */
static struct lsh_run_times times_now(const struct run *r, double elapsed)
{
    struct lsh_run_times t = r->times;
    const double known = t.data + t.reference + t.hashing + t.evaluation + t.writing;
    t.other = elapsed > known ? elapsed - known : 0.0;
    return t;
}

static void report_note(struct run *r, const char *stage, const char *dataset,
                        const struct lsh_run_row *row, double seconds, double gflops,
                        const char *note)
{
    if (!r->opts->progress)
        return;
    const double elapsed = lsh_now() - r->t0;
    const struct lsh_run_times times = times_now(r, elapsed);
    struct lsh_progress p = {
        .stage = stage, .done = r->sum->ok + r->sum->skipped + r->sum->failed + r->sum->resumed,
        .total = r->plan->n_points, .row = row, .dataset = dataset,
        .layer = dataset ? r->unit.layer : -1, .head = dataset ? r->unit.head : -1,
        .times = &times, .seconds = seconds, .elapsed = elapsed, .gflops = gflops, .note = note,
    };
    r->opts->progress(r->opts->progress_ctx, &p);
}

static void report(struct run *r, const char *stage, const char *dataset,
                   const struct lsh_run_row *row, double seconds, double gflops)
{
    report_note(r, stage, dataset, row, seconds, gflops, NULL);
}

static int stop_requested(const struct run *r)
{
    return r->opts->stop && *r->opts->stop;
}

static int write_row(struct run *r, size_t point, enum lsh_point_status status,
                     const char *message, const struct lsh_metrics *m, const char *dataset,
                     struct lsh_error *err)
{
    /* A record with NaN, Inf or an impossible value is never written as ok. */
    char why[LSH_ERROR_MSG_MAX];
    if (status == LSH_POINT_OK && m &&
        lsh_metrics_check(m, r->cfg->attention.n_topk, why, sizeof why)) {
        status = LSH_POINT_FAILED;
        message = why;
        m = NULL;
    }
    struct lsh_run_row row = {.status = status, .message = message ? message : ""};
    lsh_plan_point_key(r->plan, r->cfg, point, &row.key);
    double zeros[LSH_TOPK_MAX] = {0};
    if (m) {
        row.metrics = *m;
    } else {
        row.metrics.topk_recall = zeros;
    }
    const double t0 = lsh_now();
    int rc = lsh_results_append(r->res, &row, err);
    r->times.writing += lsh_now() - t0;
    if (rc)
        return rc;
    if (status == LSH_POINT_OK)
        r->sum->ok++;
    else if (status == LSH_POINT_SKIPPED)
        r->sum->skipped++;
    else
        r->sum->failed++;
    report(r, "point", dataset, &row, 0.0, 0.0);
    return 0;
}

static int group_done(const struct run *r, const struct lsh_hash_group *g)
{
    const struct lsh_plan *plan = r->plan;
    for (size_t pa = g->first_pass; pa < g->first_pass + g->n_passes; pa++) {
        size_t first = plan->passes[pa].first_point;
        size_t last = pa + 1 < plan->n_passes ? plan->passes[pa + 1].first_point : plan->n_points;
        for (size_t p = first; p < last; p++)
            if (!lsh_results_has_point(r->res, p))
                return 0;
    }
    return 1;
}

static size_t pass_end(const struct lsh_plan *plan, size_t pa)
{
    return pa + 1 < plan->n_passes ? plan->passes[pa + 1].first_point : plan->n_points;
}

/* Write every point of group g with the same status (skipped / failed). */
static int write_group_rows(struct run *r, const struct lsh_hash_group *g,
                            enum lsh_point_status status, const char *message,
                            const char *dataset, struct lsh_error *err)
{
    for (size_t pa = g->first_pass; pa < g->first_pass + g->n_passes; pa++)
        for (size_t p = r->plan->passes[pa].first_point; p < pass_end(r->plan, pa); p++) {
            if (lsh_results_has_point(r->res, p))
                continue;
            int rc = write_row(r, p, status, message, NULL, dataset, err);
            if (rc)
                return rc;
        }
    return 0;
}

/* Write every not yet written point of pass pa as failed with message. */
static int fail_pass(struct run *r, size_t pa, const char *message, const char *dataset,
                     struct lsh_error *err)
{
    for (size_t p = r->plan->passes[pa].first_point; p < pass_end(r->plan, pa); p++) {
        if (lsh_results_has_point(r->res, p))
            continue;
        int rc = write_row(r, p, LSH_POINT_FAILED, message, NULL, dataset, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The oracle's cost, once per unit, after its first pass that ran it. */
static void report_oracle(struct run *r, const char *dataset, double seconds)
{
    if (r->oracle_told)
        return;
    r->oracle_told = 1;
    char note[160];
    if (r->ref_seconds > 0)
        snprintf(note, sizeof note, "oracle %.3g s per pass, %.2gx the reference (%.3g s)",
                 seconds, seconds / r->ref_seconds, r->ref_seconds);
    else
        snprintf(note, sizeof note, "oracle %.3g s per pass", seconds);
    report_note(r, "oracle", dataset, NULL, seconds, 0.0, note);
}

static int run_pass(struct run *r, const struct hashing *hs, const struct problem *pb,
                    const struct lsh_reference *ref, const struct lsh_eval_opts *eo, size_t pa,
                    struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const struct lsh_plan *plan = r->plan;
    const struct lsh_pass *pass = &plan->passes[pa];
    const size_t nh = cfg->sweep.n_n_hashes, nc = cfg->sweep.n_combine, nt = pb->attn.n_topk;
    const size_t first = pass->first_point, last = pass_end(plan, pa);
    int all_done = 1;
    for (size_t p = first; p < last; p++)
        all_done &= lsh_results_has_point(r->res, p);
    if (all_done)
        return 0;

    struct lsh_rounds rounds = {
        .n = hs->ds->n, .n_hashes = hs->g->h_max, .n_buckets = hs->g->n_buckets,
        .bq = hs->bq, .bk = hs->own_keys ? hs->bk : hs->bq,
    };
    struct lsh_metrics *mt = calloc(nh * nc, sizeof *mt);
    double *topk = calloc(2 * nh * nc * nt + 1, sizeof *topk);
    struct lsh_metric_se *se = pb->rows ? calloc(nh * nc, sizeof *se) : NULL;
    struct lsh_row_dump dump = {0};
    int want_rows = (cfg->dump & LSH_DUMP_ROWS) != 0;
    if (want_rows) {
        dump.mass = malloc((nh * ref->m + 1) * sizeof *dump.mass);
        dump.candidates = malloc((nh * ref->m + 1) * sizeof *dump.candidates);
    }
    int rc = 0;
    if (!mt || !topk || (pb->rows && !se) || (want_rows && (!dump.mass || !dump.candidates)))
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    for (size_t t = 0; !rc && t < nh * nc; t++) {
        mt[t].topk_recall = topk + t * nt;
        if (se) { /* a sampled reference: standard errors beside the metrics */
            mt[t].se = &se[t];
            se[t].topk_recall = topk + (nh * nc + t) * nt;
        }
    }
    double t0 = lsh_now();
    if (!rc)
        rc = lsh_eval_pass(ref, &rounds, &pass->mode, cfg->sweep.n_hashes, nh,
                           cfg->sweep.combine, nc, eo, r->opts->threads, mt,
                           want_rows ? &dump : NULL, err);
    r->times.evaluation += lsh_now() - t0;
    if (rc == LSH_EDATA || rc == LSH_EPLUGIN) {
        /* SPEC 14's weights cannot be formed for this pass (a law value
         * outside [0, 1], or u_ij = 0 at a collided pair): its own points
         * fail with the reason, and the run goes on */
        char why[LSH_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->message : "the pass failed");
        if (err)
            lsh_error_clear(err);
        rc = fail_pass(r, pa, why, hs->ds->spec->name, err);
        free(mt);
        free(se);
        free(topk);
        free(dump.mass);
        free(dump.candidates);
        return rc;
    }
    if (!rc && eo && eo->oracle) {
        double oracle_s = 0.0;
        for (size_t t = 0; t < nh * nc; t++)
            oracle_s += mt[t].oracle_seconds;
        r->times.oracle += oracle_s;
        report_oracle(r, hs->ds->spec->name, oracle_s);
    }
    t0 = lsh_now();
    for (size_t p = first; !rc && want_rows && p < last; p++) {
        if (lsh_results_has_point(r->res, p))
            continue;
        const size_t prefix = (p - first) / nc;
        rc = lsh_results_dump_array(r->res, p, "row_mass", 'd', dump.mass + prefix * ref->m,
                                    ref->m, 0, err);
        if (!rc)
            rc = lsh_results_dump_array(r->res, p, "row_candidates", 'u',
                                        dump.candidates + prefix * ref->m, ref->m, 0, err);
        if (!rc && pb->rows) {
            uint32_t *idx = malloc(ref->m * sizeof *idx);
            if (!idx)
                rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
            for (size_t t = 0; idx && t < ref->m; t++)
                idx[t] = (uint32_t)pb->rows[t];
            if (!rc)
                rc = lsh_results_dump_array(r->res, p, "row_index", 'u', idx, ref->m, 0, err);
            free(idx);
        }
    }
    r->times.writing += lsh_now() - t0;
    for (size_t p = first; !rc && p < last; p++) {
        if (lsh_results_has_point(r->res, p))
            continue;
        const size_t k = p - first; /* = prefix index * nc + combine index */
        uint32_t H = plan->points[p].n_hashes;
        double hash_s = 0.0;
        for (uint32_t h = 0; h < H; h++)
            hash_s += hs->rs[h].seconds;
        mt[k].hash_seconds = hash_s;
        char failure[LSH_ERROR_MSG_MAX] = "";
        t0 = lsh_now();
        rc = dump_point(cfg, r->res, hs, p, H, failure, err);
        r->times.writing += lsh_now() - t0;
        if (!rc && failure[0])
            rc = write_row(r, p, LSH_POINT_FAILED, failure, NULL, hs->ds->spec->name, err);
        else if (!rc)
            rc = write_row(r, p, LSH_POINT_OK, "", &mt[k], hs->ds->spec->name, err);
        if (!rc && stop_requested(r))
            rc = LSH_EINTR;
    }
    free(mt);
    free(se);
    free(topk);
    free(dump.mass);
    free(dump.candidates);
    return rc;
}

static int run_group(struct run *r, const struct lsh_dataset *ds, const struct problem *pb,
                     const struct lsh_reference *ref, const struct lsh_hash_group *g,
                     struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const struct lsh_strategy_spec *st = &cfg->strategies[g->strategy];
    const int separate = cfg->attention.keys == LSH_KEYS_SEPARATE;
    struct hashing hs = {
        .cfg = cfg, .g = g, .ds = ds, .separate = separate,
        .keys = pb->attn.k,
        .with_keys = separate || lsh_host_assigns(st->strategy),
        .point = lsh_host_point_of(st, g->param_set, g->n_buckets, ds->d,
                                   separate ? 2 * ds->n : ds->n),
    };
    /* what the passes compute beyond SPEC 5: the law of combine importance
     * (the plan checked it exists), the oracle */
    struct lsh_host_law law;
    struct lsh_eval_opts eo = {.law = NULL, .oracle = cfg->attention.oracle};
    char law_why[LSH_ERROR_MSG_MAX] = "";
    for (size_t c = 0; c < cfg->sweep.n_combine; c++)
        if (cfg->sweep.combine[c] == LSH_COMBINE_IMPORTANCE) {
            if (lsh_host_law_of(&hs.point, &law, law_why, sizeof law_why) == 0)
                eo.law = &law;
            else if (!law_why[0])
                snprintf(law_why, sizeof law_why, "no collision law");
            break;
        }
    if (law_why[0])
        return write_group_rows(r, g, LSH_POINT_FAILED, law_why, ds->spec->name, err);
    const char *failure = NULL;
    double t0 = lsh_now();
    int rc = hash_group(&hs, r->opts->threads, &failure, err);
    r->times.hashing += lsh_now() - t0;
    if (!rc)
        report(r, "hash", ds->spec->name, NULL, lsh_now() - t0, 0.0);
    if (!rc && failure)
        rc = write_group_rows(r, g, LSH_POINT_FAILED, failure, ds->spec->name, err);
    else
        for (size_t pa = g->first_pass; !rc && pa < g->first_pass + g->n_passes; pa++)
            rc = run_pass(r, &hs, pb, ref, &eo, pa, err);
    hashing_free(&hs);
    return rc;
}

/* The unit as text for messages: " (layer 1, head 3)", " (head 3)", "". */
static void unit_text(struct lsh_dataset_unit u, char *buf, size_t size)
{
    if (u.layer >= 0 && u.head >= 0)
        snprintf(buf, size, " (layer %d, head %d)", (int)u.layer, (int)u.head);
    else if (u.layer >= 0)
        snprintf(buf, size, " (layer %d)", (int)u.layer);
    else if (u.head >= 0)
        snprintf(buf, size, " (head %d)", (int)u.head);
    else
        buf[0] = '\0';
}

/* "dataset 'NAME': ..." of lsh_attn_check becomes "dataset 'NAME' (layer 1,
 * head 3): ...", so a unit's failed rows say which problem failed. */
static void name_unit(struct lsh_error *why, const char *name, struct lsh_dataset_unit u)
{
    char unit[64], prefix[LSH_RUNS_NAME_LEN + 16], msg[LSH_ERROR_MSG_MAX];
    unit_text(u, unit, sizeof unit);
    snprintf(prefix, sizeof prefix, "dataset '%s'", name);
    const size_t len = strlen(prefix);
    if (!unit[0] || strncmp(why->message, prefix, len) != 0)
        return;
    snprintf(msg, sizeof msg, "%s%s%s", prefix, unit, why->message + len);
    memcpy(why->message, msg, sizeof msg); /* both LSH_ERROR_MSG_MAX */
}

/* One unit (a layer and head of a dataset: its own attention problem, SPEC
 * 11.2): its hash groups are plan->groups[first, last). */
static int run_unit(struct run *r, size_t first, size_t last, struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const struct lsh_plan *plan = r->plan;
    const size_t dsi = plan->groups[first].dataset;
    const char *name = cfg->datasets[dsi].name;
    r->unit = plan->groups[first].where;

    /* Skipped groups need no data; finished groups (resume) need nothing. */
    int need_data = 0;
    for (size_t gi = first; gi < last; gi++) {
        const struct lsh_hash_group *g = &plan->groups[gi];
        if (group_done(r, g))
            continue;
        if (g->skip_reason) {
            int rc = write_group_rows(r, g, LSH_POINT_SKIPPED, g->skip_reason, name, err);
            if (rc)
                return rc;
        } else {
            need_data = 1;
        }
    }
    if (!need_data)
        return 0;

    struct lsh_dataset *ds = NULL;
    struct problem pb;
    struct lsh_reference *ref = NULL;
    memset(&pb, 0, sizeof pb);
    double t0 = lsh_now();
    int rc = lsh_dataset_make_as(&cfg->datasets[dsi], cfg->path, cfg->seed,
                                 cfg->attention.keys == LSH_KEYS_SEPARATE, r->unit,
                                 &plan->shapes[dsi], &ds, err);
    r->times.data += lsh_now() - t0;
    t0 = lsh_now();
    if (!rc)
        rc = lsh_results_write_dataset(r->res, &plan->shapes[dsi], ds,
                                       (cfg->dump & LSH_DUMP_DATA) != 0, err);
    r->times.writing += lsh_now() - t0;
    t0 = lsh_now();
    if (!rc)
        rc = problem_init(&pb, cfg, ds, err);
    /* Data whose scores cannot be formed exactly fails its own points (with
     * the reason in their rows), not the other units or datasets of the run. */
    struct lsh_error why;
    lsh_error_clear(&why);
    const int bad = !rc && lsh_attn_check(&pb.attn, name, &why);
    if (bad)
        name_unit(&why, name, r->unit);
    r->times.data += lsh_now() - t0;
    if (bad) {
        for (size_t gi = first; !rc && gi < last; gi++) {
            const struct lsh_hash_group *g = &plan->groups[gi];
            if (!g->skip_reason && !group_done(r, g))
                rc = write_group_rows(r, g, LSH_POINT_FAILED, why.message, name, err);
        }
        problem_free(&pb);
        lsh_dataset_free(ds);
        return rc;
    }
    /* Keep the raw scores when they fit the memory limit; else stream.  The
     * choice changes the last bits of the metrics, so it is made on a figure
     * without the thread count, and the threads are capped to what fits.
     * Every unit of a dataset has the same shape, so the same figure. */
    struct lsh_memory mem;
    lsh_plan_memory(cfg, plan, dsi, &mem);
    const size_t limit = r->opts->memory_limit;
    int cache;
    struct lsh_run_opts opts = *r->opts;
    const struct lsh_run_opts *caller_opts = r->opts;
    opts.threads = lsh_plan_threads(&mem, opts.threads, limit, &cache);
    r->opts = &opts;
    t0 = lsh_now();
    if (!rc)
        rc = lsh_reference_compute(&pb.attn, pb.rows, pb.m, r->opts->threads,
                                   cache ? mem.cache : 0, &ref, err);
    r->times.reference += lsh_now() - t0;
    r->oracle_told = 0;
    r->ref_seconds = ref ? ref->seconds : 0.0;
    if (!rc) {
        char note[200];
        const size_t rest = lsh_memory_total(&mem, 1, 0);
        if (ref->raw)
            snprintf(note, sizeof note, "scores cached (%.0f MiB) on %u thread%s",
                     mem.cache / 1048576.0, opts.threads, opts.threads == 1 ? "" : "s");
        else if (mem.cache == 0)
            snprintf(note, sizeof note, "bucket blocks: candidate scores by GEMM, no cache");
        else
            snprintf(note, sizeof note,
                     "streaming: scores recomputed per pair (a cache needs %.0f MiB; "
                     "the limit leaves %.0f MiB)", mem.cache / 1048576.0,
                     rest < limit ? (limit - rest) / 1048576.0 : 0.0);
        report_note(r, "reference", name, NULL, ref->seconds,
                    ref->seconds > 0 ? ref->flops / ref->seconds * 1e-9 : 0.0, note);
    }
    for (size_t gi = first; !rc && gi < last; gi++) {
        const struct lsh_hash_group *g = &plan->groups[gi];
        if (g->skip_reason || group_done(r, g))
            continue;
        rc = run_group(r, ds, &pb, ref, g, err);
        if (!rc && stop_requested(r))
            rc = LSH_EINTR;
    }
    r->opts = caller_opts;
    lsh_reference_free(ref);
    problem_free(&pb);
    lsh_dataset_free(ds);
    return rc;
}

/* The key of planned point id, for resume. */
static void planned_point(void *ctx, uint64_t id, void *record)
{
    const struct run *r = ctx;
    lsh_plan_point_key(r->plan, r->cfg, (size_t)id, &((struct lsh_run_row *)record)->key);
}

int lsh_sweep_run(const struct lsh_config *cfg, const struct lsh_plan *plan,
                  const struct lsh_run_opts *opts, struct lsh_run_summary *summary,
                  struct lsh_error *err)
{
    struct lsh_run_summary sum = {.points = plan->n_points};
    struct run r = {.cfg = cfg, .plan = plan, .opts = opts, .sum = &sum, .t0 = lsh_now(),
                    .unit = {-1, -1}};
    if (cfg->experiment != LSH_EXPERIMENT_SWEEP)
        return lsh_error_set(err, LSH_EINVAL, "lsh_sweep_run: not a sweep experiment");
    double t0 = lsh_now();
    int rc = lsh_results_open(opts->output ? opts->output : cfg->output, cfg, opts->cmdline,
                              opts->mode, &r.res, err);
    if (!rc)
        rc = lsh_results_check_resumed(r.res, planned_point, &r, plan->n_points, err);
    r.times.writing += lsh_now() - t0;
    if (rc) {
        lsh_results_close(r.res, 0, NULL);
        return rc;
    }
    for (size_t p = 0; p < plan->n_points; p++)
        sum.resumed += lsh_results_has_point(r.res, p) != 0;
    if (sum.resumed)
        report(&r, "resume-skip", NULL, NULL, 0.0, 0.0);

    /* Units in plan order: each one's groups are contiguous. */
    for (size_t gi = 0; !rc && gi < plan->n_groups;) {
        size_t end = gi + 1;
        while (end < plan->n_groups && plan->groups[end].dataset == plan->groups[gi].dataset &&
               plan->groups[end].unit == plan->groups[gi].unit)
            end++;
        rc = run_unit(&r, gi, end, err);
        gi = end;
    }

    if (rc == LSH_EINTR) {
        sum.interrupted = 1;
        lsh_error_set(err, LSH_EINTR, "stopped after %zu of %zu points",
                      sum.ok + sum.skipped + sum.failed + sum.resumed, plan->n_points);
    }
    struct lsh_error close_err;
    lsh_error_clear(&close_err);
    t0 = lsh_now();
    int crc = lsh_results_close(r.res, rc == 0, &close_err);
    r.times.writing += lsh_now() - t0;
    if (!rc && crc) {
        rc = crc;
        if (err)
            *err = close_err;
    }
    sum.seconds = lsh_now() - r.t0;
    sum.times = times_now(&r, sum.seconds);
    if (summary)
        *summary = sum;
    return rc;
}
