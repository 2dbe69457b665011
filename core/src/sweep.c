/* sweep.c - the engine's driver: unit > reference > rounds > passes > rows.
 * A unit is one (layer, head) of a dataset (SPEC 11.2), its own attention
 * problem: its data, its reference and its hash groups, in plan order. */
#include "sweep.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "dataset.h"
#include "eval.h"
#include "host.h"
#include "oracle.h"
#include "parallel.h"
#include "reference.h"
#include "rng.h"
#include "spread.h"

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

struct run;
static int out_array(struct run *r, uint64_t point, const char *name, char type,
                     const void *data, size_t rows, size_t cols, struct lsh_error *err);

struct sink_ctx {
    struct run *r;
    uint64_t point_id;
    uint32_t round;
};

static int sink_array(void *ctx, const char *name, const double *data, size_t rows, size_t cols,
                      struct lsh_error *err)
{
    struct sink_ctx *sc = ctx;
    char full[LSH_HOST_NAME_MAX + 32]; /* host.c checked the name */
    snprintf(full, sizeof full, "hash_params_%s_h%u", name, sc->round);
    return out_array(sc->r, sc->point_id, full, 'd', data, rows, cols, err);
}

/* dump: buckets and hash_params for one point (its first H rounds).  A
 * plugin that cannot export fails the point (failure says why) before any of
 * its arrays is written; a write that fails is an error. */
static int dump_point(const struct lsh_config *cfg, struct run *res, const struct hashing *hs, uint64_t point_id, uint32_t H,
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
        rc = out_array(res, point_id, "buckets", 'u', hs->bq, H, n, err);
        if (!rc && hs->own_keys)
            rc = out_array(res, point_id, "key_buckets", 'u', hs->bk, H, n, err);
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
    double t0, cpu0; /* when the run started: wall, and the process's CPU */
    struct lsh_dataset_unit unit; /* the unit being worked on */
    struct lsh_run_times times;   /* other: left 0 until reported */
    double ref_seconds;           /* the unit's reference pass */
    int oracle_told;              /* the oracle's cost was reported for this unit */
    struct lsh_oracle_table *otab; /* the unit's oracle table, when it fits */
    /* many processes (SPEC 15; one process: rank 0 of 1) */
    unsigned rank, ranks;
    unsigned char *done;          /* per point: in the results (rank 0) or sent (others) */
    unsigned char *unit_written;  /* rank 0, per group: /datasets written for its unit */
    size_t *unit_first;           /* per group: the first group of its unit */
    struct wire *out;             /* others: records not yet sent to rank 0 */
    struct inbox *inbox;          /* rank 0: records received, per rank */
    const struct lsh_spread_segment *rows_seg; /* the unit being spread by rows, or NULL */
    size_t queued;                /* rank 0: rows received, not yet written (progress) */
    int step_rc;                  /* a failure every rank met at once (a verdict), which
                                     ends the run on all; 0 while it goes on (a pass's
                                     failure absorbed into failed rows clears it) */
    struct wire *held;            /* a hash group run side by side: its rows and arrays,
                                     as records the unit's writer writes in plan order */
    int thread_clock;             /* phases' CPU by the calling thread's clock */
};

static int is_done(const struct run *r, size_t p)
{
    return r->done[p] != 0;
}

/* When a phase began, by the wall clock and the process's CPU clock. */
struct stamp {
    double wall, cpu;
};

/* The CPU clock of run r's phases: the process's, or while hash groups run
 * side by side (each on its own thread) the calling thread's. */
static double run_cpu_now(const struct run *r)
{
    return r->thread_clock ? lsh_thread_cpu_now() : lsh_cpu_now();
}

static struct stamp stamp_now(const struct run *r)
{
    return (struct stamp){lsh_now(), run_cpu_now(r)};
}

/* Adds the wall and CPU seconds since stamp s to phase F of run r's times. */
#define SPENT(r, F, s)                                                                             \
    ((r)->times.F += lsh_now() - (s).wall, (r)->times.cpu.F += run_cpu_now(r) - (s).cpu)

/* The times so far, other being what the rest leaves of the elapsed time
 * (and of the CPU time since the run started). */
static struct lsh_run_times times_now(const struct run *r, double elapsed)
{
    struct lsh_run_times t = r->times;
    const double known = t.data + t.reference + t.hashing + t.evaluation + t.writing;
    t.other = elapsed > known ? elapsed - known : 0.0;
    const struct lsh_run_phases *c = &t.cpu;
    const double cpu = lsh_cpu_now() - r->cpu0,
                 cpu_known = c->data + c->reference + c->hashing + c->evaluation + c->writing;
    t.cpu.other = cpu > cpu_known ? cpu - cpu_known : 0.0;
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
        .stage = stage,
        .done = r->sum->ok + r->sum->skipped + r->sum->failed + r->sum->resumed + r->queued,
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

/* ---- records between ranks (SPEC 15) ---------------------------------------------------
 * Ranks other than 0 write nothing: their rows and dump arrays go to rank 0
 * as records, which rank 0 writes in plan order.  A message is a u32 count
 * of the rows in it (for the progress line), then records.  A record is a
 * kind byte:
 *   'R' row: point u64, status u32, message (u32 length, bytes), and when
 *       ok the metrics (the struct's bytes, then n_topk recalls, a byte
 *       saying whether standard errors follow, their struct and recalls);
 *   'A' array: point u64, name (u32 length, bytes), type byte, rows u64,
 *       cols u64, the values;
 *   'E' the end of a rank's share of a segment;
 *   'X' a rank's error: code i32, message (u32 length, bytes).
 * Pointers inside the copied structs are meaningless on arrival and reset. */

struct wire {
    unsigned char *p;
    size_t len, cap;
    uint32_t rows;   /* 'R' records since the last send */
    int oom;
};

static void wire_put(struct wire *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len == 0 && w->cap == 0) {
        w->p = malloc(4096);
        if (!w->p) {
            w->oom = 1;
            return;
        }
        w->cap = 4096;
    }
    if (w->len == 0) { /* room for the row count */
        memset(w->p, 0, sizeof w->rows);
        w->len = sizeof w->rows;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n)
            cap *= 2;
        unsigned char *q = realloc(w->p, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void wire_u8(struct wire *w, uint8_t v) { wire_put(w, &v, sizeof v); }
static void wire_u32(struct wire *w, uint32_t v) { wire_put(w, &v, sizeof v); }
static void wire_u64(struct wire *w, uint64_t v) { wire_put(w, &v, sizeof v); }

static void wire_str(struct wire *w, const char *text)
{
    const size_t len = text ? strlen(text) : 0;
    wire_u32(w, (uint32_t)len);
    wire_put(w, text, len);
}

/* Records buffered beyond this are sent at once (after a whole record). */
#define WIRE_FLUSH_BYTES ((size_t)256 << 20)

/* Send what is buffered to rank 0. */
static int wire_send(struct run *r, struct lsh_error *err)
{
    struct wire *w = r->out;
    if (w->oom)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory buffering results for rank 0");
    if (!w->len)
        return 0;
    memcpy(w->p, &w->rows, sizeof w->rows);
    int rc = lsh_comm_send(w->p, w->len, 0, err);
    w->len = 0;
    w->rows = 0;
    return rc;
}

/* A reader over one received message. */
struct reader {
    const unsigned char *p;
    size_t len, pos;
    int bad;
};

static const void *read_bytes(struct reader *rd, size_t n)
{
    if (rd->bad || n > rd->len - rd->pos) {
        rd->bad = 1;
        return NULL;
    }
    const void *at = rd->p + rd->pos;
    rd->pos += n;
    return at;
}

static int read_into(struct reader *rd, void *dst, size_t n)
{
    const void *src = read_bytes(rd, n);
    if (src && n)
        memcpy(dst, src, n);
    return src ? 0 : -1;
}

/* A string field into buf (cut to size - 1). */
static int read_str(struct reader *rd, char *buf, size_t size)
{
    uint32_t len = 0;
    if (read_into(rd, &len, sizeof len))
        return -1;
    const char *src = read_bytes(rd, len);
    if (!src)
        return -1;
    size_t k = len < size - 1 ? len : size - 1;
    memcpy(buf, src, k);
    buf[k] = '\0';
    return 0;
}

static int put_row(struct run *r, size_t point, enum lsh_point_status status,
                   const char *message, const struct lsh_metrics *m, const char *dataset,
                   struct lsh_error *err);
static int pump(struct run *r, struct lsh_error *err);

/* A row as a record: another rank's for rank 0, or a hash group's run side
 * by side for the unit's writer. */
static void send_row(struct wire *w, size_t nt, size_t point, enum lsh_point_status status,
                     const char *message, const struct lsh_metrics *m)
{
    wire_u8(w, 'R');
    w->rows++;
    wire_u64(w, point);
    wire_u32(w, (uint32_t)status);
    wire_str(w, message);
    wire_u8(w, m != NULL);
    if (m) {
        wire_put(w, m, sizeof *m);
        wire_put(w, m->topk_recall, nt * sizeof(double));
        wire_u8(w, m->se != NULL);
        if (m->se) {
            wire_put(w, m->se, sizeof *m->se);
            wire_put(w, m->se->topk_recall, nt * sizeof(double));
        }
    }
}

static int out_array(struct run *r, uint64_t point, const char *name, char type,
                     const void *data, size_t rows, size_t cols, struct lsh_error *err)
{
    if (r->rank == 0 && !r->held)
        return lsh_results_dump_array(r->res, point, name, type, data, rows, cols, err);
    struct wire *w = r->held ? r->held : r->out;
    const size_t values = rows * (cols ? cols : 1), size = type == 'u' ? 4 : 8;
    if (cols && values / cols != rows)
        return lsh_error_set(err, LSH_ERANGE, "array %s: %zu x %zu values", name, rows, cols);
    wire_u8(w, 'A');
    wire_u64(w, point);
    wire_str(w, name);
    wire_u8(w, (uint8_t)type);
    wire_u64(w, rows);
    wire_u64(w, cols);
    wire_put(w, data, values * size);
    if (w->oom)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory buffering %s", name);
    /* a message stays below MPI's int count (and the buffer bounded) */
    return w->len >= WIRE_FLUSH_BYTES && !r->held ? wire_send(r, err) : 0;
}

static int write_row(struct run *r, size_t point, enum lsh_point_status status,
                     const char *message, const struct lsh_metrics *m, const char *dataset,
                     struct lsh_error *err)
{
    const size_t nt = r->cfg->attention.n_topk;
    if (r->held) { /* the unit's writer marks it done when it writes it */
        send_row(r->held, nt, point, status, message, m);
        return r->held->oom ? lsh_error_set(err, LSH_ENOMEM, "out of memory buffering rows") : 0;
    }
    if (r->rank == 0)
        return put_row(r, point, status, message, m, dataset, err);
    r->done[point] = 1;
    if (r->rows_seg)
        return 0; /* spread by rows: rank 0 writes the unit's rows itself */
    send_row(r->out, nt, point, status, message, m);
    return r->out->oom ? lsh_error_set(err, LSH_ENOMEM, "out of memory buffering rows") : 0;
}

/* Rank 0: write one row (its own or another rank's). */
static int put_row(struct run *r, size_t point, enum lsh_point_status status,
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
    const struct stamp t0 = stamp_now(r);
    int rc = lsh_results_append(r->res, &row, err);
    SPENT(r, writing, t0);
    if (rc)
        return rc;
    r->done[point] = 1;
    /* take the other ranks' messages as they come, so their sends complete */
    if (r->ranks > 1 && pump(r, err) < 0)
        return LSH_EIO;
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
            if (!is_done(r, p))
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
            if (is_done(r, p))
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
        if (is_done(r, p))
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

/* ---- a pass spread by rows (SPEC 15) -------------------------------------------------- */

/* Evaluated rows [*r0, *r1) of rank q in the unit being spread by rows. */
static void rank_rows(const struct run *r, unsigned q, size_t *r0, size_t *r1)
{
    const struct lsh_spread_segment *sg = r->rows_seg;
    const size_t sr = lsh_slice_rows();
    *r0 = sg->cut[q] * sr < sg->m ? sg->cut[q] * sr : sg->m;
    *r1 = sg->cut[q + 1] * sr < sg->m ? sg->cut[q + 1] * sr : sg->m;
}

struct part_head {
    int32_t rc;                     /* 0, or why this rank has no partials */
    int32_t pad;                    /* the doubles after it stay aligned */
    char message[LSH_ERROR_MSG_MAX];
};
_Static_assert(sizeof(struct part_head) % sizeof(double) == 0, "part_head keeps doubles aligned");

/* Bytes rank q sends for one pass: its head, timings, partials and row dump. */
static size_t part_bytes(const struct run *r, unsigned q, size_t nh, size_t nc, int oracle,
                         int want_rows)
{
    size_t r0, r1;
    rank_rows(r, q, &r0, &r1);
    const size_t parts =
        r1 > r0 ? lsh_eval_part_doubles(r1 - r0, r->cfg->attention.n_topk, nh, nc, oracle) : 0;
    const size_t bytes = sizeof(struct part_head) +
                         (LSH_EVAL_SECONDS(nh) + parts) * sizeof(double) +
                         (want_rows ? nh * (r1 - r0) * (sizeof(double) + sizeof(uint32_t)) : 0);
    return (bytes + 7) / 8 * 8; /* the next rank's doubles start aligned in rank 0's buffer */
}

/* The agreement after a pass spread by rows: rank 0 tells the others
 * whether to go on (0), stop (LSH_EINTR) or give up (another code). */
static int pass_verdict(struct run *r, int rc, struct lsh_error *err)
{
    int32_t v = rc;
    struct lsh_error e;
    lsh_error_clear(&e);
    if (lsh_comm_bcast(&v, sizeof v, 0, &e))
        return r->rank == 0 && rc ? rc : lsh_error_set(err, LSH_EIO, "%s", e.message);
    r->step_rc = v;
    if (r->rank == 0 || v == 0)
        return rc;
    return v == LSH_EINTR ? LSH_EINTR
                          : lsh_error_set(err, v, "rank 0 stopped the run (it reports why)");
}

/* Every rank goes on (0) or none: rank 0 gathers each rank's code and tells
 * all the first failure in rank order, or LSH_EINTR when it was asked to
 * stop.  Rank 0 keeps the failing rank's message in err. */
static int agree(struct run *r, int rc, struct lsh_error *err)
{
    if (r->ranks == 1)
        return rc;
    struct part_head head = {.rc = rc};
    if (rc)
        snprintf(head.message, sizeof head.message, "rank %u: %.1000s", r->rank,
                 err && err->message[0] ? err->message : lsh_strerror(rc));
    size_t *counts = malloc(r->ranks * sizeof *counts);
    struct part_head *all = r->rank == 0 ? malloc(r->ranks * sizeof *all) : NULL;
    int v = 0;
    struct lsh_error e;
    lsh_error_clear(&e);
    if (!counts || (r->rank == 0 && !all)) {
        free(counts);
        free(all);
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    for (unsigned q = 0; q < r->ranks; q++)
        counts[q] = sizeof head;
    int grc = lsh_comm_gatherv(&head, counts, all, 0, &e);
    free(counts);
    if (grc) {
        free(all);
        return lsh_error_set(err, grc, "%s", e.message);
    }
    if (r->rank == 0) {
        for (unsigned q = 0; q < r->ranks && !v; q++)
            if (all[q].rc) {
                v = all[q].rc;
                if (q && err) {
                    all[q].message[sizeof all[q].message - 1] = '\0';
                    lsh_error_set(err, v, "%s", all[q].message);
                }
            }
        if (!v && stop_requested(r))
            v = LSH_EINTR;
    }
    free(all);
    return pass_verdict(r, r->rank == 0 ? v : rc, err);
}

/* Every rank evaluates its own rows; rank 0 gathers the partials in row
 * order and finishes the metrics into mt (and the row dump).  rc: this
 * rank's failure so far (it sends no partials then).  On rank 0 the return
 * is that of lsh_eval_finish or the first rank's failure (LSH_EDATA and
 * LSH_EPLUGIN fail the pass's points); on the others, the verdict. */
static int eval_by_rows(struct run *r, const struct lsh_reference *ref,
                        const struct lsh_rounds *rounds, const struct lsh_pass *pass,
                        const struct lsh_eval_opts *eo, struct lsh_metrics *mt,
                        struct lsh_row_dump *dump, int rc, struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const size_t nh = cfg->sweep.n_n_hashes, nc = cfg->sweep.n_combine, m = r->rows_seg->m;
    const int oracle = eo && eo->oracle, want_rows = dump != NULL;
    const unsigned R = r->ranks;
    size_t *counts = calloc(R, sizeof *counts);
    size_t total = 0;
    for (unsigned q = 0; counts && q < R; q++) {
        counts[q] = part_bytes(r, q, nh, nc, oracle, want_rows);
        total += counts[q];
    }
    const size_t mine = counts ? counts[r->rank] : 0;
    unsigned char *send = calloc(mine + 1, 1);
    unsigned char *all = r->rank == 0 ? malloc(total + 1) : NULL;
    if (!rc && (!counts || !send || (r->rank == 0 && !all)))
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory gathering a pass");
    if (!counts) { /* cannot take part: the run cannot go on */
        free(send);
        free(all);
        return rc;
    }
    size_t r0, r1;
    rank_rows(r, r->rank, &r0, &r1);
    struct part_head head = {0};
    double *secs = (double *)(send + sizeof head);
    double *partials = secs + LSH_EVAL_SECONDS(nh);
    const size_t parts_n =
        r1 > r0 ? lsh_eval_part_doubles(r1 - r0, cfg->attention.n_topk, nh, nc, oracle) : 0;
    struct stamp t0 = stamp_now(r);
    if (!rc && r1 > r0)
        rc = lsh_eval_pass_part(ref, rounds, &pass->mode, cfg->sweep.n_hashes, nh,
                                cfg->sweep.combine, nc, eo, r->opts->threads, r0, r1, partials,
                                secs, dump, err);
    SPENT(r, evaluation, t0);
    if (rc) {
        head.rc = rc;
        snprintf(head.message, sizeof head.message, "%s",
                 err && err->message[0] ? err->message : lsh_strerror(rc));
    } else if (want_rows) { /* the dump's values of this rank's rows */
        unsigned char *at = (unsigned char *)(partials + parts_n);
        for (size_t p = 0; p < nh; p++, at += (r1 - r0) * sizeof(double))
            memcpy(at, dump->mass + p * m + r0, (r1 - r0) * sizeof(double));
        for (size_t p = 0; p < nh; p++, at += (r1 - r0) * sizeof(uint32_t))
            memcpy(at, dump->candidates + p * m + r0, (r1 - r0) * sizeof(uint32_t));
    }
    if (send)
        memcpy(send, &head, sizeof head);
    struct lsh_error ge;
    lsh_error_clear(&ge);
    int grc = send ? lsh_comm_gatherv(send, counts, all, 0, &ge) : LSH_ENOMEM;
    free(send);
    if (r->rank != 0) {
        free(counts);
        if (grc)
            return lsh_error_set(err, grc, "%s", ge.message);
        return pass_verdict(r, 0, err); /* this rank's failure, if any, is rank 0's to report */
    }
    if (grc && !rc)
        rc = lsh_error_set(err, grc, "%s", ge.message);
    /* the first failure in rank (row) order */
    size_t off = 0;
    for (unsigned q = 0; !rc && q < R; off += counts[q], q++) {
        struct part_head h;
        memcpy(&h, all + off, sizeof h);
        if (h.rc) {
            h.message[sizeof h.message - 1] = '\0';
            rc = lsh_error_set(err, h.rc, "%s", h.message);
        }
    }
    double *joined = NULL, *secs0 = NULL;
    if (!rc) {
        size_t whole = lsh_eval_part_doubles(m, cfg->attention.n_topk, nh, nc, oracle);
        joined = malloc((whole + 1) * sizeof *joined);
        if (!joined)
            rc = lsh_error_set(err, LSH_ENOMEM, "out of memory gathering a pass");
        size_t at = 0;
        off = 0;
        for (unsigned q = 0; !rc && q < R; off += counts[q], q++) {
            size_t q0, q1;
            rank_rows(r, q, &q0, &q1);
            const double *qs = (const double *)(all + off + sizeof(struct part_head));
            if (q == 0)
                secs0 = (double *)qs;
            const size_t n_q =
                q1 > q0 ? lsh_eval_part_doubles(q1 - q0, cfg->attention.n_topk, nh, nc, oracle)
                        : 0;
            memcpy(joined + at, qs + LSH_EVAL_SECONDS(nh), n_q * sizeof *joined);
            at += n_q;
            if (want_rows && q1 > q0) {
                const unsigned char *d = (const unsigned char *)(qs + LSH_EVAL_SECONDS(nh) + n_q);
                for (size_t p = 0; p < nh; p++, d += (q1 - q0) * sizeof(double))
                    memcpy(dump->mass + p * m + q0, d, (q1 - q0) * sizeof(double));
                for (size_t p = 0; p < nh; p++, d += (q1 - q0) * sizeof(uint32_t))
                    memcpy(dump->candidates + p * m + q0, d, (q1 - q0) * sizeof(uint32_t));
            }
        }
        if (!rc && at != whole)
            rc = lsh_error_set(err, LSH_EINVAL, "parts hold %zu of %zu partial sums", at, whole);
    }
    t0 = stamp_now(r);
    if (!rc)
        rc = lsh_eval_finish(ref, rounds, cfg->sweep.n_hashes, nh, nc, eo, joined, secs0, mt,
                             err);
    SPENT(r, evaluation, t0);
    free(joined);
    free(all);
    free(counts);
    return rc;
}

static int pass_body(struct run *r, const struct hashing *hs, const struct problem *pb,
                     const struct lsh_reference *ref, const struct lsh_eval_opts *eo,
                     size_t pa, int *collective, struct lsh_error *err);

/* One pass; spread by rows, rank 0 then tells the others how it ended. */
static int run_pass(struct run *r, const struct hashing *hs, const struct problem *pb,
                    const struct lsh_reference *ref, const struct lsh_eval_opts *eo, size_t pa,
                    struct lsh_error *err)
{
    int collective = 0;
    int rc = pass_body(r, hs, pb, ref, eo, pa, &collective, err);
    if (collective && r->rank == 0)
        rc = pass_verdict(r, rc, err);
    return rc;
}

/* The pass again with its combines other than importance, after importance
 * failed it: their metrics land in mt at their own places (mt[prefix * nc +
 * combine], the topk arrays the caller set), importance's stay unset.
 * LSH_EDATA when every combine is importance (nothing to redo). */
static int without_importance(struct run *r, const struct lsh_reference *ref,
                              const struct lsh_rounds *rounds, const struct lsh_pass *pass,
                              const struct lsh_eval_opts *eo, struct lsh_metrics *mt,
                              struct lsh_row_dump *dump, struct lsh_error *err)
{
    struct stamp t0 = stamp_now(r);
    const struct lsh_config *cfg = r->cfg;
    const size_t nh = cfg->sweep.n_n_hashes, nc = cfg->sweep.n_combine;
    enum lsh_combine keep[LSH_COMBINE_IMPORTANCE + 1];
    size_t at[LSH_COMBINE_IMPORTANCE + 1], nk = 0;
    for (size_t c = 0; c < nc && nk < LSH_COMBINE_IMPORTANCE + 1; c++)
        if (cfg->sweep.combine[c] != LSH_COMBINE_IMPORTANCE) {
            keep[nk] = cfg->sweep.combine[c];
            at[nk++] = c;
        }
    if (!nk)
        return LSH_EDATA;
    struct lsh_metrics *part = calloc(nh * nk, sizeof *part);
    if (!part)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    for (size_t h = 0; h < nh; h++)
        for (size_t c = 0; c < nk; c++) { /* write straight into the caller's arrays */
            part[h * nk + c].topk_recall = mt[h * nc + at[c]].topk_recall;
            part[h * nk + c].se = mt[h * nc + at[c]].se;
        }
    struct lsh_eval_opts plain = eo ? *eo : (struct lsh_eval_opts){0};
    plain.law = NULL;
    int rc = lsh_eval_pass(ref, rounds, &pass->mode, cfg->sweep.n_hashes, nh, keep, nk, &plain,
                           r->opts->threads, part, dump, err);
    SPENT(r, evaluation, t0);
    for (size_t h = 0; !rc && h < nh; h++)
        for (size_t c = 0; c < nk; c++)
            mt[h * nc + at[c]] = part[h * nk + c];
    free(part);
    return rc;
}

static int pass_body(struct run *r, const struct hashing *hs, const struct problem *pb,
                     const struct lsh_reference *ref, const struct lsh_eval_opts *eo,
                     size_t pa, int *collective, struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const struct lsh_plan *plan = r->plan;
    const struct lsh_pass *pass = &plan->passes[pa];
    const size_t nh = cfg->sweep.n_n_hashes, nc = cfg->sweep.n_combine, nt = pb->attn.n_topk;
    const size_t first = pass->first_point, last = pass_end(plan, pa);
    int all_done = 1;
    for (size_t p = first; p < last; p++)
        all_done &= is_done(r, p);
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
    const size_t m_eval = r->rows_seg ? r->rows_seg->m : ref->m; /* ref: NULL on a rank
                                                                      without rows */
    if (want_rows) {
        dump.mass = calloc(nh * m_eval + 1, sizeof *dump.mass);
        dump.candidates = calloc(nh * m_eval + 1, sizeof *dump.candidates);
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
    struct stamp t0 = stamp_now(r);
    if (r->rows_seg) {
        *collective = 1;
        rc = eval_by_rows(r, ref, &rounds, pass, eo, mt, want_rows ? &dump : NULL, rc, err);
        if (r->rank != 0) { /* rank 0 writes the pass */
            free(mt);
            free(se);
            free(topk);
            free(dump.mass);
            free(dump.candidates);
            return rc;
        }
    } else if (!rc) {
        rc = lsh_eval_pass(ref, &rounds, &pass->mode, cfg->sweep.n_hashes, nh,
                           cfg->sweep.combine, nc, eo, r->opts->threads, mt,
                           want_rows ? &dump : NULL, err);
        SPENT(r, evaluation, t0);
    }
    /* SPEC 14's weights cannot be formed for this pass (a law value outside
     * [0, 1], or u_ij = 0 at a collided pair): the importance points fail
     * with the reason, and the pass's other combines, which do not use the
     * law, are evaluated again without it */
    char why[LSH_ERROR_MSG_MAX] = "";
    if ((rc == LSH_EDATA || rc == LSH_EPLUGIN) && !r->rows_seg && eo && eo->law) {
        snprintf(why, sizeof why, "%s", err ? err->message : "the pass failed");
        if (err)
            lsh_error_clear(err);
        r->step_rc = 0;
        rc = without_importance(r, ref, &rounds, pass, eo, mt, want_rows ? &dump : NULL, err);
    }
    if (rc == LSH_EDATA || rc == LSH_EPLUGIN) {
        /* the rest failed too (or the pass is spread by rows): every point
         * of the pass fails with the reason, and the run goes on */
        if (!why[0])
            snprintf(why, sizeof why, "%s", err ? err->message : "the pass failed");
        if (err)
            lsh_error_clear(err);
        r->step_rc = 0;
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
    t0 = stamp_now(r);
    for (size_t p = first; !rc && want_rows && p < last; p++) {
        if (is_done(r, p))
            continue;
        const size_t prefix = (p - first) / nc;
        rc = out_array(r, p, "row_mass", 'd', dump.mass + prefix * ref->m,
                                    ref->m, 0, err);
        if (!rc)
            rc = out_array(r, p, "row_candidates", 'u',
                                        dump.candidates + prefix * ref->m, ref->m, 0, err);
        if (!rc && pb->rows) {
            uint32_t *idx = malloc(ref->m * sizeof *idx);
            if (!idx)
                rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
            for (size_t t = 0; idx && t < ref->m; t++)
                idx[t] = (uint32_t)pb->rows[t];
            if (!rc)
                rc = out_array(r, p, "row_index", 'u', idx, ref->m, 0, err);
            free(idx);
        }
    }
    SPENT(r, writing, t0);
    for (size_t p = first; !rc && p < last; p++) {
        if (is_done(r, p))
            continue;
        const size_t k = p - first; /* = prefix index * nc + combine index */
        uint32_t H = plan->points[p].n_hashes;
        double hash_s = 0.0;
        for (uint32_t h = 0; h < H; h++)
            hash_s += hs->rs[h].seconds;
        mt[k].hash_seconds = hash_s;
        char failure[LSH_ERROR_MSG_MAX] = "";
        t0 = stamp_now(r);
        rc = dump_point(cfg, r, hs, p, H, failure, err);
        SPENT(r, writing, t0);
        if (!failure[0] && why[0] && cfg->sweep.combine[k % nc] == LSH_COMBINE_IMPORTANCE)
            snprintf(failure, sizeof failure, "%s", why);
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
    struct lsh_eval_opts eo = {.law = NULL, .oracle = cfg->attention.oracle,
                               .oracle_table = r->otab};
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
    struct stamp t0 = stamp_now(r);
    int rc = hash_group(&hs, r->opts->threads, &failure, err);
    SPENT(r, hashing, t0);
    if (r->rows_seg) /* every rank goes on, or none */
        rc = agree(r, rc, err);
    if (!rc && r->rows_seg) {
        /* and every rank hashed alike: a strategy that failed on some ranks
         * only (another build of a plugin on a node) would leave the ranks in
         * different collectives */
        uint64_t v[2] = {failure != NULL, failure == NULL};
        struct lsh_error e;
        lsh_error_clear(&e);
        if (lsh_comm_max_u64(v, 2, &e))
            rc = lsh_error_set(err, LSH_EIO, "%s", e.message);
        else if (v[0] && v[1])
            rc = r->step_rc = lsh_error_set(
                err, LSH_EPLUGIN,
                "strategy '%s' failed while hashing on some ranks only (rank %u: %.300s); "
                "every rank needs the same strategy plugins",
                st->name, r->rank, failure ? failure : "it did not fail");
    }
    if (!rc)
        report(r, "hash", ds->spec->name, NULL, lsh_now() - t0.wall, 0.0);
    if (!rc && failure)
        rc = write_group_rows(r, g, LSH_POINT_FAILED, failure, ds->spec->name, err);
    else
        for (size_t pa = g->first_pass; !rc && pa < g->first_pass + g->n_passes; pa++)
            rc = run_pass(r, &hs, pb, ref, &eo, pa, err);
    hashing_free(&hs);
    return rc;
}

struct reader;
static int play(struct run *r, struct reader *rd, unsigned q, int *ended, struct lsh_error *err);

/* ---- hash groups side by side --------------------------------------------------------
 * A small unit's passes are too short to keep threads busy (each round's tiles, each
 * pass's metrics end in a join), so its groups run side by side instead, one thread
 * each: the same bits (no figure depends on the thread count), and rows and arrays
 * as records (the wire's, as another rank sends them) that one writer at a time
 * writes in plan order while the others compute. */

/* Units with at most this many (evaluated row, key) pairs run their groups side by
 * side: at n = 4,096 a pass on two threads is still ~10% idle. */
#define SIDE_PAIRS_MAX ((uint64_t)1 << 24)

struct side_slot {
    struct wire out;            /* its records */
    struct lsh_run_times times; /* its phases: wall, and CPU by its thread's clock */
    struct lsh_error err;
    int rc, ran, taken, done;
};

struct side {
    struct run *r;              /* the run: the writer's */
    struct run proto;           /* what a group's run starts from (read only) */
    struct lsh_run_opts opts;   /* one thread, no progress lines */
    const struct lsh_dataset *ds;
    const struct problem *pb;
    const struct lsh_reference *ref;
    size_t g0, g1, written;     /* groups [g0, g1): the next to write */
    size_t *order, next;        /* the order to take them in, and how far */
    size_t held;                /* groups taken and not yet written */
    int writing, stop, rc;
    struct lsh_error *err;      /* the first failure's, in plan order */
    struct side_slot *slot;
    size_t lead;                /* held: at most this many (lsh_plan_side_groups) */
    double wall[3];             /* the groups' wall seconds: hashing, evaluation, oracle */
    pthread_mutex_t mu;
    pthread_cond_t wrote;       /* a group was written, or the workers stop */
};

/* Write the finished groups in plan order, unless another thread is at it. */
static void side_write(struct side *sd)
{
    pthread_mutex_lock(&sd->mu);
    if (sd->writing) {
        pthread_mutex_unlock(&sd->mu);
        return;
    }
    sd->writing = 1;
    while (!sd->stop && sd->written < sd->g1 && sd->slot[sd->written - sd->g0].done) {
        struct side_slot *sl = &sd->slot[sd->written - sd->g0];
        pthread_mutex_unlock(&sd->mu);
        struct lsh_error e;
        lsh_error_clear(&e);
        int rc = 0;
        if (sl->out.len) {
            struct reader rd = {sl->out.p, sl->out.len, sizeof sl->out.rows, 0};
            int ended = 0;
            rc = play(sd->r, &rd, 0, &ended, &e);
            if (!rc && rd.bad)
                rc = lsh_error_set(&e, LSH_EIO, "a hash group's records are damaged");
        }
        if (!rc && sl->rc) {
            rc = sl->rc;
            e = sl->err;
        }
        struct lsh_run_phases *c = &sd->r->times.cpu;
        c->hashing += sl->times.cpu.hashing;
        c->evaluation += sl->times.cpu.evaluation;
        c->writing += sl->times.cpu.writing;
        sd->r->times.writing += sl->times.writing;
        free(sl->out.p);
        sl->out = (struct wire){0};
        pthread_mutex_lock(&sd->mu);
        sd->wall[0] += sl->times.hashing;
        sd->wall[1] += sl->times.evaluation;
        sd->wall[2] += sl->times.oracle;
        if (rc) {
            sd->stop = 1;
            sd->rc = rc;
            if (sd->err)
                *sd->err = e;
        } else {
            sd->written++;
            sd->held--;
            sd->r->sum->side_groups += sl->ran;
        }
        pthread_cond_broadcast(&sd->wrote);
    }
    sd->writing = 0;
    pthread_mutex_unlock(&sd->mu);
}

static int run_group(struct run *r, const struct lsh_dataset *ds, const struct problem *pb,
                     const struct lsh_reference *ref, const struct lsh_hash_group *g,
                     struct lsh_error *err);

/* The group a worker takes next (under mu): the next untaken one in order;
 * g1 when every group is taken, or when the bound on groups held is full
 * (then wait: the order is plan order or every group fits the bound, so the
 * writer's group is among those held and is written without this thread). */
static size_t side_pick(struct side *sd)
{
    while (sd->next < sd->g1 - sd->g0 && sd->slot[sd->order[sd->next] - sd->g0].taken)
        sd->next++;
    if (sd->next == sd->g1 - sd->g0 || sd->held >= sd->lead)
        return sd->g1;
    return sd->order[sd->next];
}

/* A worker: take a group, run it on this thread, write what is ready. */
static int side_task(void *ctx, size_t task, unsigned thread)
{
    (void)task;
    (void)thread;
    struct side *sd = ctx;
    for (;;) {
        pthread_mutex_lock(&sd->mu);
        size_t gi = sd->g1;
        /* the records held stay bounded: a group waits while the writer's
         * has a thread of its own (it is being computed, or written) */
        while (!sd->stop && !stop_requested(&sd->proto) && (gi = side_pick(sd)) == sd->g1 &&
               sd->next < sd->g1 - sd->g0)
            pthread_cond_wait(&sd->wrote, &sd->mu);
        if (sd->stop || stop_requested(&sd->proto))
            gi = sd->g1;
        if (gi < sd->g1) {
            sd->slot[gi - sd->g0].taken = 1;
            sd->held++;
        }
        pthread_mutex_unlock(&sd->mu);
        if (gi >= sd->g1)
            return 0;
        struct side_slot *sl = &sd->slot[gi - sd->g0];
        const struct lsh_hash_group *g = &sd->proto.plan->groups[gi];
        lsh_error_clear(&sl->err);
        if (!g->skip_reason && !group_done(&sd->proto, g)) {
            struct run w = sd->proto;
            w.held = &sl->out;
            sl->rc = run_group(&w, sd->ds, sd->pb, sd->ref, g, &sl->err);
            if (!sl->rc && sl->out.oom)
                sl->rc = lsh_error_set(&sl->err, LSH_ENOMEM, "out of memory buffering rows");
            sl->times = w.times;
            sl->ran = 1;
        }
        pthread_mutex_lock(&sd->mu);
        sl->done = 1;
        pthread_mutex_unlock(&sd->mu);
        side_write(sd);
    }
}

/* A rough cost of group g, in flops, to run the costliest first (the last
 * groups taken then end near together): its rounds' fits and hashing, and
 * each pass's scored pairs, at a density of candidates guessed from its
 * mode (buckets as if even) and weighted by what a pair costs beside the
 * masks that every (row, key) pays (fitted on bench-peer's groups, to
 * within ~20%).  A skipped or resumed group costs nothing but goes first,
 * so that the writer never waits for it. */
static double group_cost(const struct run *r, const struct lsh_dataset *ds, size_t m,
                         const struct lsh_hash_group *g)
{
    if (g->skip_reason || group_done(r, g))
        return INFINITY;
    const struct lsh_config *cfg = r->cfg;
    const double n = (double)ds->n, h = g->h_max;
    const int separate = cfg->attention.keys == LSH_KEYS_SEPARATE;
    const struct lsh_host_point pt = lsh_host_point_of(
        &cfg->strategies[g->strategy], g->param_set, g->n_buckets, ds->d,
        separate ? 2 * ds->n : ds->n);
    double cost = h * lsh_host_round_cost(&pt);
    const double pairs = (double)m * n * (cfg->attention.causal ? 0.5 : 1.0);
    for (size_t pa = g->first_pass; pa < g->first_pass + g->n_passes; pa++) {
        const struct lsh_mode_opts *mo = &r->plan->passes[pa].mode;
        double dens = mo->mode == LSH_MODE_BUCKET
                          ? 1.0 - pow(1.0 - 1.0 / g->n_buckets, h)
                          : h * mo->chunk_size * (1.0 + mo->look_back) / n;
        dens += (mo->sink + 2.0 * mo->local) / n;
        cost += pairs * (3.0 * (double)(ds->d + ds->d_v) * (dens < 1 ? dens : 1) + 16);
    }
    return cost;
}

struct costed {
    double cost;
    size_t g;
};

static int cmp_costed(const void *a, const void *b)
{
    const struct costed *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    return x->g < y->g ? -1 : x->g > y->g;
}

/* Groups [g0, g1) of the unit, `workers` side by side, at most `hold` of
 * them taken and not yet written: the costliest first when every group fits
 * that bound (else the writer would wait for a cheap early group while the
 * bound fills with finished later ones), else in plan order.  The wall seconds of
 * their phases, which overlap, are scaled to fill the section's own (less
 * its writing): hashing + evaluation never exceed the elapsed time. */
static int run_side(struct run *r, const struct lsh_dataset *ds, const struct problem *pb,
                    const struct lsh_reference *ref, size_t g0, size_t g1, unsigned workers,
                    size_t hold, struct lsh_error *err)
{
    struct side sd = {.r = r, .proto = *r, .opts = *r->opts, .ds = ds, .pb = pb, .ref = ref,
                      .g0 = g0, .g1 = g1, .written = g0, .err = err,
                      .lead = hold};
    sd.opts.threads = 1;
    sd.opts.progress = NULL;
    sd.proto.opts = &sd.opts;
    sd.proto.thread_clock = 1;
    memset(&sd.proto.times, 0, sizeof sd.proto.times);
    sd.slot = calloc(g1 - g0, sizeof *sd.slot);
    sd.order = calloc(g1 - g0, sizeof *sd.order);
    struct costed *by = calloc(g1 - g0, sizeof *by);
    if (!sd.slot || !sd.order || !by) {
        free(by);
        free(sd.order);
        free(sd.slot);
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    for (size_t k = 0; k < g1 - g0; k++)
        by[k] = (struct costed){hold < g1 - g0 ? 0.0
                                                : group_cost(r, ds, ref->m, &r->plan->groups[g0 + k]),
                                g0 + k};
    qsort(by, g1 - g0, sizeof *by, cmp_costed);
    for (size_t k = 0; k < g1 - g0; k++)
        sd.order[k] = by[k].g;
    free(by);
    if (pthread_mutex_init(&sd.mu, NULL)) {
        free(sd.order);
        free(sd.slot);
        return lsh_error_set(err, LSH_ENOMEM, "cannot make a mutex");
    }
    if (pthread_cond_init(&sd.wrote, NULL)) {
        pthread_mutex_destroy(&sd.mu);
        free(sd.order);
        free(sd.slot);
        return lsh_error_set(err, LSH_ENOMEM, "cannot make a condition variable");
    }
    const double t0 = lsh_now(), w0 = r->times.writing;
    r->thread_clock = 1; /* the writer's rows: by the writing thread's clock */
    int rc = lsh_parallel_for(workers, workers, side_task, &sd);
    r->thread_clock = 0;
    if (rc)
        rc = lsh_error_set(err, rc, "out of memory starting %u threads", workers);
    else if (sd.rc)
        rc = sd.rc;
    else if (sd.written < g1)
        rc = LSH_EINTR; /* the workers stopped taking groups */
    const double rest = lsh_now() - t0 - (r->times.writing - w0),
                 both = sd.wall[0] + sd.wall[1];
    const double f = both > rest && both > 0 ? (rest > 0 ? rest : 0) / both : 1.0;
    r->times.hashing += f * sd.wall[0];
    r->times.evaluation += f * sd.wall[1];
    r->times.oracle += f * sd.wall[2];
    for (size_t k = 0; k < g1 - g0; k++)
        free(sd.slot[k].out.p);
    free(sd.slot);
    free(sd.order);
    pthread_cond_destroy(&sd.wrote);
    pthread_mutex_destroy(&sd.mu);
    return rc;
}

/* How many of the unit's groups run side by side: 1 (one after another,
 * each on every thread) unless the unit is small, one process runs it and
 * two fit the memory limit. */
static unsigned side_workers(const struct run *r, const struct lsh_memory *mem, int cache,
                             const struct lsh_reference *ref, size_t n, size_t groups,
                             size_t *hold)
{
    if (r->ranks > 1 || r->opts->threads < 2 || !ref ||
        (uint64_t)ref->m * n > SIDE_PAIRS_MAX)
        return 1;
    return lsh_plan_side_groups(mem, r->opts->threads, r->opts->memory_limit, cache, groups,
                                hold);
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

    /* Skipped groups need no data; finished groups (resume) need nothing.
     * A unit's skipped rows come first, as in one process: when the unit is
     * cut between ranks, the rank with its first group writes them all. */
    const size_t u0 = r->unit_first[first];
    size_t u1 = first == u0 ? last : first;
    while (first == u0 && u1 < plan->n_groups && r->unit_first[u1] == u0)
        u1++;
    for (size_t gi = first == u0 ? u0 : u1; gi < u1; gi++) {
        const struct lsh_hash_group *g = &plan->groups[gi];
        if (g->skip_reason && !group_done(r, g)) {
            int rc = write_group_rows(r, g, LSH_POINT_SKIPPED, g->skip_reason, name, err);
            if (rc)
                return rc;
        }
    }
    int need_data = 0;
    for (size_t gi = first; gi < last; gi++)
        need_data |= !plan->groups[gi].skip_reason && !group_done(r, &plan->groups[gi]);
    if (!need_data)
        return 0;

    struct lsh_dataset *ds = NULL;
    struct problem pb;
    struct lsh_reference *ref = NULL;
    memset(&pb, 0, sizeof pb);
    struct stamp t0 = stamp_now(r);
    int rc = lsh_dataset_make_as(&cfg->datasets[dsi], cfg->path, cfg->seed,
                                 cfg->attention.keys == LSH_KEYS_SEPARATE, r->unit,
                                 &plan->shapes[dsi], &ds, err);
    SPENT(r, data, t0);
    t0 = stamp_now(r);
    if (!rc && r->rank == 0 && !r->unit_written[r->unit_first[first]]) {
        rc = lsh_results_write_dataset(r->res, &plan->shapes[dsi], ds,
                                       (cfg->dump & LSH_DUMP_DATA) != 0, err);
        r->unit_written[r->unit_first[first]] = !rc;
    }
    SPENT(r, writing, t0);
    t0 = stamp_now(r);
    if (!rc)
        rc = problem_init(&pb, cfg, ds, err);
    /* Data whose scores cannot be formed exactly fails its own points (with
     * the reason in their rows), not the other units or datasets of the run. */
    struct lsh_error why;
    lsh_error_clear(&why);
    int bad = !rc && lsh_attn_check(&pb.attn, name, &why);
    if (bad)
        name_unit(&why, name, r->unit);
    SPENT(r, data, t0);
    int go = 1; /* compute the reference (0: another rank failed; agree() says so) */
    if (r->rows_seg) { /* spread by rows: every rank takes the same way */
        uint64_t v[3] = {rc != 0, bad != 0, !rc && !bad};
        struct lsh_error e;
        lsh_error_clear(&e);
        int arc = lsh_comm_max_u64(v, 3, &e);
        if (arc && !rc)
            rc = lsh_error_set(err, LSH_EIO, "%s", e.message);
        else if (v[0])
            bad = go = 0;
        else if (v[1] && v[2]) {
            bad = 0;
            rc = r->step_rc = lsh_error_set(err, LSH_EDATA,
                                            "dataset '%s': the ranks read different data (its "
                                            "scores can be formed on some ranks only); every "
                                            "rank needs the same input files", name);
        }
    }
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
    /* Keep the raw scores when they fit the memory limit; else stream (the
     * same bits either way: both are lsh_attn_raw's).  The choice is made on
     * a figure without the thread count, and the threads are capped to what
     * fits.
     * Every unit of a dataset has the same shape, so the same figure. */
    struct lsh_memory mem;
    lsh_plan_memory(cfg, plan, dsi, &mem);
    const size_t limit = r->opts->memory_limit;
    int cache;
    struct lsh_run_opts opts = *r->opts;
    const struct lsh_run_opts *caller_opts = r->opts;
    opts.threads = lsh_plan_threads(&mem, opts.threads, limit, &cache);
    r->opts = &opts;
    t0 = stamp_now(r);
    size_t r0 = 0, r1 = pb.m ? pb.m : ds->n;
    if (r->rows_seg)
        rank_rows(r, r->rank, &r0, &r1); /* this rank's rows alone */
    if (!rc && go && r1 > r0)
        rc = lsh_reference_compute_part(&pb.attn, pb.rows, pb.m ? pb.m : ds->n, r0, r1,
                                        r->opts->threads, cache ? mem.cache : 0, &ref, err);
    SPENT(r, reference, t0);
    if (r->rows_seg) /* every rank goes on, or none */
        rc = agree(r, rc, err);
    r->oracle_told = 0;
    r->ref_seconds = ref ? ref->seconds : 0.0;
    /* The oracle's table of every budget's figures, when it fits beside the
     * rest: a pass after the first then only looks them up (speed only: the
     * same bits as without it). */
    r->otab = NULL;
    if (!rc && ref && cfg->attention.oracle &&
        lsh_size_add(lsh_memory_total(&mem, opts.threads, cache),
                     lsh_oracle_table_bytes(ref)) <= limit)
        r->otab = lsh_oracle_table_alloc(ref); /* NULL: computed per pass */
    if (!rc && ref) {
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
    size_t hold = 0;
    const unsigned side = side_workers(r, &mem, cache, ref, ds->n, last - first, &hold);
    size_t gi = first;
    for (; !rc && gi < last; gi++) {
        const struct lsh_hash_group *g = &plan->groups[gi];
        if (g->skip_reason || group_done(r, g))
            continue;
        /* side by side from here, once the oracle's table is built (by the
         * unit's first pass, on every thread): the rest only read it */
        size_t todo = 0;
        for (size_t k = gi; k < last && todo < 2; k++)
            todo += !plan->groups[k].skip_reason && !group_done(r, &plan->groups[k]);
        if (side > 1 && todo > 1 && (!r->otab || lsh_oracle_table_full(r->otab)))
            break;
        rc = run_group(r, ds, &pb, ref, g, err);
        /* another rank sends each group's records as it finishes, so rank 0
         * shows its progress and a unit's dumps are not held (and copied) whole */
        if (!rc && r->rank != 0 && !r->rows_seg)
            rc = wire_send(r, err);
        if (!rc && !r->rows_seg && stop_requested(r)) /* by rows: the passes' verdicts */
            rc = LSH_EINTR;
    }
    if (!rc && gi < last)
        rc = run_side(r, ds, &pb, ref, gi, last, side, hold, err);
    r->opts = caller_opts;
    lsh_oracle_table_free(r->otab);
    r->otab = NULL;
    lsh_reference_free(ref);
    problem_free(&pb);
    lsh_dataset_free(ds);
    return rc;
}


/* ---- rank 0 collects the other ranks' records --------------------------------------- */

struct inbox_msg {
    struct inbox_msg *next;
    unsigned char *buf;
    size_t len, pos;
};

struct inbox {
    struct inbox_msg *head, *tail;
    int ended;
};

static void inbox_free(struct inbox *in)
{
    for (struct inbox_msg *m = in->head, *next; m; m = next) {
        next = m->next;
        free(m->buf);
        free(m);
    }
    in->head = in->tail = NULL;
}

/* Take every message that has arrived into its rank's inbox: 1 when some
 * did, 0 when none, < 0 on error. */
static int pump(struct run *r, struct lsh_error *err)
{
    int any = 0;
    for (;;) {
        void *buf;
        size_t len;
        unsigned src = 0;
        int got = lsh_comm_poll(&buf, &len, &src, err);
        if (got <= 0)
            return got < 0 ? -1 : any;
        struct inbox_msg *m = calloc(1, sizeof *m);
        if (!m || src == 0 || src >= r->ranks) {
            free(buf);
            free(m);
            lsh_error_set(err, m ? LSH_EIO : LSH_ENOMEM, "MPI: a message from rank %u", src);
            return -1;
        }
        m->buf = buf;
        m->len = len;
        uint32_t rows = 0;
        if (len >= sizeof rows)
            memcpy(&rows, buf, sizeof rows);
        m->pos = len >= sizeof rows ? sizeof rows : len;
        r->queued += rows;
        struct inbox *in = &r->inbox[src];
        if (in->tail)
            in->tail->next = m;
        else
            in->head = m;
        in->tail = m;
        any = 1;
    }
}

/* Rank 0: make and write /datasets for the unit of group g, when no rank-0
 * work did (its rows come from another rank). */
static int ensure_dataset(struct run *r, size_t g, struct lsh_error *err)
{
    const size_t u = r->unit_first[g];
    const struct lsh_hash_group *hg = &r->plan->groups[g];
    if (r->unit_written[u] || hg->skip_reason)
        return 0;
    const struct lsh_config *cfg = r->cfg;
    struct lsh_dataset *ds = NULL;
    struct stamp t0 = stamp_now(r);
    int rc = lsh_dataset_make_as(&cfg->datasets[hg->dataset], cfg->path, cfg->seed,
                                 cfg->attention.keys == LSH_KEYS_SEPARATE, hg->where,
                                 &r->plan->shapes[hg->dataset], &ds, err);
    SPENT(r, data, t0);
    t0 = stamp_now(r);
    if (!rc)
        rc = lsh_results_write_dataset(r->res, &r->plan->shapes[hg->dataset], ds,
                                       (cfg->dump & LSH_DUMP_DATA) != 0, err);
    SPENT(r, writing, t0);
    lsh_dataset_free(ds);
    r->unit_written[u] = !rc;
    return rc;
}

/* Write the records rd holds (another rank's, q > 0, or those of hash
 * groups run side by side, q = 0) in their order; *ended is set at an end
 * record.  A damaged record sets rd->bad and stops. */
static int play(struct run *r, struct reader *rd, unsigned q, int *ended, struct lsh_error *err)
{
    const size_t nt = r->cfg->attention.n_topk;
    int rc = 0;
    while (!rc && rd->pos < rd->len) {
        uint8_t kind = 0;
        read_into(rd, &kind, 1);
        if (kind == 'E') {
            *ended = 1;
        } else if (kind == 'X') {
            int32_t code = 0;
            char text[LSH_ERROR_MSG_MAX];
            if (!read_into(rd, &code, sizeof code) && !read_str(rd, text, sizeof text))
                rc = lsh_error_set(err, code ? code : LSH_EIO, "rank %u: %s", q, text);
        } else if (kind == 'R') {
            uint64_t point = 0;
            uint32_t status = 0;
            uint8_t has_m = 0, has_se = 0;
            char text[LSH_ERROR_MSG_MAX];
            struct lsh_metrics mt;
            struct lsh_metric_se se;
            double topk[LSH_TOPK_MAX], se_topk[LSH_TOPK_MAX];
            memset(&mt, 0, sizeof mt);
            read_into(rd, &point, sizeof point);
            read_into(rd, &status, sizeof status);
            read_str(rd, text, sizeof text);
            read_into(rd, &has_m, 1);
            if (has_m) {
                read_into(rd, &mt, sizeof mt);
                read_into(rd, topk, nt * sizeof *topk);
                mt.topk_recall = topk;
                mt.se = NULL;
                read_into(rd, &has_se, 1);
                if (has_se) {
                    read_into(rd, &se, sizeof se);
                    read_into(rd, se_topk, nt * sizeof *se_topk);
                    se.topk_recall = se_topk;
                    mt.se = &se;
                }
            }
            if (rd->bad || point >= r->plan->n_points)
                break;
            if (r->queued)
                r->queued--;
            const size_t g = r->plan->passes[r->plan->points[point].pass].group;
            r->unit = r->plan->groups[g].where; /* for the progress line */
            rc = ensure_dataset(r, g, err);
            if (!rc && !r->done[point])
                rc = put_row(r, (size_t)point, (enum lsh_point_status)status, text,
                             has_m ? &mt : NULL,
                             r->cfg->datasets[r->plan->groups[g].dataset].name, err);
            if (!rc && stop_requested(r))
                rc = LSH_EINTR;
        } else if (kind == 'A') {
            uint64_t point = 0, rows = 0, cols = 0;
            uint8_t type = 0;
            char name[LSH_HOST_NAME_MAX + 64];
            read_into(rd, &point, sizeof point);
            read_str(rd, name, sizeof name);
            read_into(rd, &type, 1);
            read_into(rd, &rows, sizeof rows);
            read_into(rd, &cols, sizeof cols);
            const size_t size = type == 'u' ? 4 : 8;
            const uint64_t values = rows * (cols ? cols : 1);
            const void *data = values <= (rd->len - rd->pos) / size
                                   ? read_bytes(rd, (size_t)values * size) : NULL;
            if (!data || point >= r->plan->n_points)
                break;
            const size_t g = r->plan->passes[r->plan->points[point].pass].group;
            rc = ensure_dataset(r, g, err);
            if (!rc && !r->done[point]) {
                const struct stamp t0 = stamp_now(r);
                rc = lsh_results_dump_array(r->res, point, name, (char)type, data,
                                            (size_t)rows, (size_t)cols, err);
                SPENT(r, writing, t0);
            }
        } else {
            rd->bad = 1;
            break;
        }
    }
    return rc;
}

/* Write the records of rank q's inbox: 1 when its end record was reached,
 * 0 when it needs more messages, else an error code. */
static int drain(struct run *r, unsigned q, struct lsh_error *err)
{
    struct inbox *in = &r->inbox[q];
    while (in->head) {
        struct inbox_msg *msg = in->head;
        struct reader rd = {msg->buf, msg->len, msg->pos, 0};
        int rc = play(r, &rd, q, &in->ended, err);
        msg->pos = rd.pos;
        if (rd.bad)
            return lsh_error_set(err, LSH_EIO, "MPI: a damaged message from rank %u", q);
        if (rc)
            return rc;
        in->head = msg->next;
        if (!in->head)
            in->tail = NULL;
        free(msg->buf);
        free(msg);
        if (in->ended)
            return 1;
    }
    return 0;
}

/* Rank 0, after its own share of a segment: the others' records, rank by
 * rank (so in plan order), until each one's end record. */
static int collect(struct run *r, struct lsh_error *err)
{
    for (unsigned q = 1; q < r->ranks; q++) {
        for (;;) {
            int rc = drain(r, q, err);
            if (rc == 1)
                break;
            if (rc)
                return rc;
            int got = pump(r, err);
            if (got < 0)
                return LSH_EIO;
            if (got == 0) {
                if (stop_requested(r))
                    return LSH_EINTR;
                struct timespec ts = {0, 1000000}; /* 1 ms */
                nanosleep(&ts, NULL);
            }
        }
        r->inbox[q].ended = 0;
    }
    return 0;
}

/* A rank's share of a segment spread by hash groups: its groups, unit by unit. */
static int run_share(struct run *r, const struct lsh_spread_segment *sg, struct lsh_error *err)
{
    int rc = 0;
    for (size_t gi = sg->cut[r->rank]; !rc && gi < sg->cut[r->rank + 1];) {
        size_t end = gi + 1;
        while (end < sg->cut[r->rank + 1] && r->unit_first[end] == r->unit_first[gi])
            end++;
        rc = run_unit(r, gi, end, err);
        if (!rc && r->rank != 0)
            rc = wire_send(r, err);
        gi = end;
    }
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
                    .cpu0 = lsh_cpu_now(), .unit = {-1, -1}, .rank = lsh_comm_rank(),
                    .ranks = lsh_comm_size()};
    if (cfg->experiment != LSH_EXPERIMENT_SWEEP)
        return lsh_error_set(err, LSH_EINVAL, "lsh_sweep_run: not a sweep experiment");
    struct wire out = {0};
    struct lsh_spread spread = {0};
    r.out = &out;
    r.done = calloc(plan->n_points + 1, 1);
    r.unit_written = calloc(plan->n_groups + 1, 1);
    r.unit_first = calloc(plan->n_groups + 1, sizeof *r.unit_first);
    r.inbox = r.rank == 0 ? calloc(r.ranks, sizeof *r.inbox) : NULL;
    int rc = 0;
    if (!r.done || !r.unit_written || !r.unit_first || (r.rank == 0 && !r.inbox))
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    for (size_t g = 0; !rc && g < plan->n_groups; g++)
        r.unit_first[g] = g && plan->groups[g].dataset == plan->groups[g - 1].dataset &&
                                  plan->groups[g].unit == plan->groups[g - 1].unit
                              ? r.unit_first[g - 1] : g;
    struct stamp t0 = stamp_now(&r);
    if (!rc && r.rank == 0) {
        rc = lsh_results_open(opts->output ? opts->output : cfg->output, cfg, opts->cmdline,
                              opts->mode, &r.res, err);
        if (!rc)
            rc = lsh_results_check_resumed(r.res, planned_point, &r, plan->n_points, err);
        for (size_t p = 0; !rc && p < plan->n_points; p++)
            r.done[p] = lsh_results_has_point(r.res, p) != 0;
    }
    SPENT(&r, writing, t0);
    /* Every rank starts from rank 0's state: whether the file opened, which
     * points it holds, and its memory limit (which decides the score cache
     * and the threads). */
    struct lsh_run_opts shared = *opts;
    if (r.ranks > 1) {
        int32_t v = rc;
        uint64_t limit = opts->memory_limit;
        struct lsh_error e;
        lsh_error_clear(&e);
        int brc = lsh_comm_bcast(&v, sizeof v, 0, &e);
        if (!brc && !v)
            brc = lsh_comm_bcast(r.done, plan->n_points, 0, &e);
        if (!brc && !v)
            brc = lsh_comm_bcast(&limit, sizeof limit, 0, &e);
        shared.memory_limit = (size_t)limit;
        if (brc && !rc)
            rc = lsh_error_set(err, brc, "%s", e.message);
        else if (v && r.rank != 0)
            rc = lsh_error_set(err, v, "rank 0 could not open the results (it reports why)");
    }
    r.opts = &shared;
    if (rc) {
        if (summary) {
            *summary = sum;
            summary->in_step = 1;
        }
        if (r.res)
            lsh_results_close(r.res, 0, NULL);
        free(r.done);
        free(r.unit_written);
        free(r.unit_first);
        free(r.inbox);
        return rc;
    }
    for (size_t p = 0; r.rank == 0 && p < plan->n_points; p++)
        sum.resumed += r.done[p];
    if (sum.resumed)
        report(&r, "resume-skip", NULL, NULL, 0.0, 0.0);

    rc = lsh_spread_plan(cfg, plan, r.done, r.ranks, &spread, err);
    for (size_t k = 0; !rc && k < spread.n_segments; k++) {
        const struct lsh_spread_segment *sg = &spread.segments[k];
        if (sg->by_rows) {
            r.rows_seg = sg;
            rc = run_unit(&r, sg->first_group, sg->end_group, err);
            r.rows_seg = NULL;
            continue;
        }
        rc = run_share(&r, sg, err);
        if (r.rank != 0) {
            /* the end of this rank's share, or why it stopped */
            struct lsh_error e;
            lsh_error_clear(&e);
            if (rc) {
                wire_u8(&out, 'X');
                int32_t code = rc;
                wire_put(&out, &code, sizeof code);
                wire_str(&out, err ? err->message : lsh_strerror(rc));
            } else {
                wire_u8(&out, 'E');
            }
            int src = wire_send(&r, &e);
            if (!rc && src)
                rc = lsh_error_set(err, src, "%s", e.message);
        } else if (!rc && r.ranks > 1) {
            rc = collect(&r, err);
        }
    }
    lsh_spread_free(&spread);
    if (r.rank != 0) {
        struct lsh_error e;
        lsh_error_clear(&e);
        int frc = lsh_comm_flush(&e);
        if (!rc && frc)
            rc = lsh_error_set(err, frc, "%s", e.message);
        free(out.p);
        free(r.done);
        free(r.unit_written);
        free(r.unit_first);
        sum.seconds = lsh_now() - r.t0;
        sum.times = times_now(&r, sum.seconds);
        sum.in_step = rc && rc == r.step_rc;
        if (summary)
            *summary = sum;
        return rc;
    }

    if (rc == LSH_EINTR) {
        sum.interrupted = 1;
        lsh_error_set(err, LSH_EINTR, "stopped after %zu of %zu points",
                      sum.ok + sum.skipped + sum.failed + sum.resumed, plan->n_points);
    }
    struct lsh_error close_err;
    lsh_error_clear(&close_err);
    t0 = stamp_now(&r);
    int crc = lsh_results_close(r.res, rc == 0, &close_err);
    SPENT(&r, writing, t0);
    if (!rc && crc) {
        rc = crc;
        if (err)
            *err = close_err;
    }
    for (unsigned q = 0; r.inbox && q < r.ranks; q++)
        inbox_free(&r.inbox[q]);
    free(r.inbox);
    free(out.p);
    free(r.done);
    free(r.unit_written);
    free(r.unit_first);
    sum.seconds = lsh_now() - r.t0;
    sum.times = times_now(&r, sum.seconds);
    sum.in_step = rc && rc == r.step_rc;
    if (summary)
        *summary = sum;
    return rc;
}
