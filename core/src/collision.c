/* collision.c - the collision experiment (SPEC 8): pairs at a given angle,
 * hashed round by round, their collision shares written to /collision. */
#include "collision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "host.h"
#include "parallel.h"
#include "rng.h"

/* Pairs drawn per task: large enough to amortise a task, small enough to
 * spread over threads.  Not part of the seeding scheme (each pair has its
 * own stream), so changing it changes no number. */
#define PAIRS_PER_TASK 512

static const double pi = 3.14159265358979323846;

static int law_at(const struct lsh_config *cfg, const struct lsh_collision_point *pt,
                  double angle, struct lsh_collision_row *row, struct lsh_error *err);

/* ---- seeds ---------------------------------------------------------------- */

static uint64_t angle_bits(double angle)
{
    uint64_t b;
    _Static_assert(sizeof b == sizeof angle, "IEEE-754 double expected");
    memcpy(&b, &angle, sizeof b);
    return b;
}

uint64_t lsh_collision_base_seed(uint64_t config_seed)
{
    return lsh_seed_str(lsh_seed_u64(0x6c73686c6162ULL /* "lshlab" */, config_seed), "collision");
}

uint64_t lsh_collision_point_seed(uint64_t config_seed, const char *strategy,
                                  const char *canonical_params, uint32_t n_buckets,
                                  double angle)
{
    uint64_t h = lsh_collision_base_seed(config_seed);
    h = lsh_seed_str(h, strategy);
    h = lsh_seed_str(h, canonical_params);
    h = lsh_seed_u64(h, n_buckets);
    return lsh_seed_u64(h, angle_bits(angle));
}

/* ---- pairs ---------------------------------------------------------------- */

struct draw {
    uint64_t seed;     /* mix(mix(base, "pairs"), bits(angle)) */
    double c, s;       /* cos and sin of the angle */
    size_t pairs, d;
    double *xy;
    double *scratch;   /* d doubles per thread: g' */
};

static void cos_sin_degrees(double angle, double *c, double *s)
{
    if (angle == 90.0) {
        *c = 0.0;
        *s = 1.0;
    } else if (angle == 180.0) {
        *c = -1.0;
        *s = 0.0;
    } else {
        *c = cos(angle * (pi / 180.0));
        *s = sin(angle * (pi / 180.0));
    }
}

static double norm2(const double *v, size_t d)
{
    double s = 0.0;
    for (size_t e = 0; e < d; e++)
        s += v[e] * v[e];
    return sqrt(s);
}

/* u -= (u.x) x, for unit x. */
static void remove_component(double *u, const double *x, size_t d)
{
    double dot = 0.0;
    for (size_t e = 0; e < d; e++)
        dot += u[e] * x[e];
    for (size_t e = 0; e < d; e++)
        u[e] -= dot * x[e];
}

static int draw_task(void *ctx, size_t task, unsigned thread)
{
    struct draw *dr = ctx;
    const size_t d = dr->d;
    double *u = dr->scratch + (size_t)thread * d;
    struct lsh_rng *rng = lsh_rng_alloc(0);
    if (!rng)
        return LSH_ENOMEM;
    size_t first = task * PAIRS_PER_TASK, last = first + PAIRS_PER_TASK;
    if (last > dr->pairs)
        last = dr->pairs;
    for (size_t i = first; i < last; i++) {
        double *x = dr->xy + i * d, *y = dr->xy + (dr->pairs + i) * d;
        gsl_rng_set(lsh_rng_gsl(rng), (unsigned long)lsh_seed_u64(dr->seed, i));
        double nx;
        do { /* a zero Gaussian vector has probability 0; redraw rather than divide */
            for (size_t e = 0; e < d; e++)
                x[e] = lsh_rng_normal(rng);
            nx = norm2(x, d);
        } while (!(nx > 0.0));
        for (size_t e = 0; e < d; e++)
            x[e] /= nx;
        double nu;
        do {
            for (size_t e = 0; e < d; e++)
                u[e] = lsh_rng_normal(rng);
            remove_component(u, x, d);
            remove_component(u, x, d); /* twice is enough in floating point */
            nu = norm2(u, d);
        } while (!(nu > 1e-9));
        for (size_t e = 0; e < d; e++)
            y[e] = dr->c * x[e] + dr->s * (u[e] / nu);
    }
    lsh_rng_free(rng);
    return 0;
}

int lsh_collision_draw_pairs(uint64_t config_seed, double angle, size_t pairs, size_t d,
                             unsigned threads, double *xy, struct lsh_error *err)
{
    if (!xy || d < 2 || pairs == 0 || !(angle > 0.0 && angle <= 180.0))
        return lsh_error_set(err, LSH_EINVAL,
                             "lsh_collision_draw_pairs: needs d >= 2, pairs >= 1 and an angle "
                             "in (0, 180], got d = %zu, pairs = %zu, angle = %g", d, pairs, angle);
    if (threads < 1)
        threads = 1;
    struct draw dr = {
        .seed = lsh_seed_u64(lsh_seed_str(lsh_collision_base_seed(config_seed), "pairs"),
                             angle_bits(angle)),
        .pairs = pairs, .d = d, .xy = xy,
        .scratch = malloc((size_t)threads * d * sizeof(double)),
    };
    if (!dr.scratch)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory drawing %zu pairs", pairs);
    cos_sin_degrees(angle, &dr.c, &dr.s);
    int rc = lsh_parallel_for(threads, (pairs + PAIRS_PER_TASK - 1) / PAIRS_PER_TASK,
                              draw_task, &dr);
    free(dr.scratch);
    if (rc)
        return lsh_error_set(err, rc, "out of memory drawing %zu pairs", pairs);
    return 0;
}

/* ---- statistics ----------------------------------------------------------- */

void lsh_collision_stats(const uint64_t *count, uint32_t H, uint64_t any, uint64_t pairs,
                         struct lsh_collision_stats *out)
{
    const double P = (double)pairs;
    uint64_t total = 0;
    for (uint32_t h = 0; h < H; h++)
        total += count[h];
    const double mean = (double)total / ((double)H * P);
    const double pa = (double)any / P;
    *out = (struct lsh_collision_stats){.p_round = mean, .p_any = pa};
    if (H < 2)
        return; /* one round: the spread between rounds is not estimable */
    double ss = 0.0;
    for (uint32_t h = 0; h < H; h++) {
        double e = (double)count[h] / P - mean;
        ss += e * e;
    }
    const double var = ss / (double)(H - 1);
    out->p_round_se = sqrt(var / (double)H);
    double tau2 = var - mean * (1.0 - mean) / P;
    if (tau2 < 0.0)
        tau2 = 0.0;
    out->p_any_se = sqrt(pa * (1.0 - pa) / P +
                         (double)H * tau2 * pow(1.0 - mean, 2.0 * (double)(H - 1)));
}

/* ---- plan ----------------------------------------------------------------- */

void lsh_collision_plan_free(struct lsh_collision_plan *plan)
{
    if (!plan)
        return;
    for (size_t p = 0; p < plan->n_points; p++)
        free(plan->points[p].skip_reason);
    free(plan->points);
    free(plan);
}

int lsh_collision_plan_build(const struct lsh_config *cfg, struct lsh_collision_plan **out,
                             struct lsh_error *err)
{
    const struct lsh_collision_spec *col = &cfg->collision;
    const struct lsh_sweep *sw = &cfg->sweep;
    /* d >= 2, pairs that fit, repeats 1 and no dump: lsh_config_load checked them */
    if (cfg->experiment != LSH_EXPERIMENT_COLLISION)
        return lsh_error_set(err, LSH_EINVAL, "lsh_collision_plan_build: not a collision "
                                              "experiment");

    struct lsh_collision_plan *plan = calloc(1, sizeof *plan);
    size_t n = 0;
    for (size_t s = 0; s < cfg->n_strategies; s++)
        n += cfg->strategies[s].n_sets * sw->n_n_buckets;
    if (!plan || !(plan->points = calloc(n + 1, sizeof *plan->points))) {
        free(plan);
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t s = 0; s < cfg->n_strategies && !rc; s++) {
        const struct lsh_strategy_spec *st = &cfg->strategies[s];
        for (size_t ps = 0; ps < st->n_sets && !rc; ps++) {
            for (size_t b = 0; b < sw->n_n_buckets && !rc; b++) {
                struct lsh_collision_point *pt = &plan->points[plan->n_points++];
                *pt = (struct lsh_collision_point){s, ps, sw->n_buckets[b], NULL};
                const struct lsh_host_point hp = lsh_host_point_of(st, ps, sw->n_buckets[b],
                                                                   col->d, 2 * col->pairs);
                char where[192], why[LSH_ERROR_MSG_MAX - 160];
                snprintf(where, sizeof where, "in the collision experiment (d = %zu, 2 x %zu "
                         "pairs = %zu rows)", col->d, col->pairs, 2 * col->pairs);
                if (!lsh_host_check(&hp, where, why, sizeof why))
                    continue;
                if (!st->skip_invalid) {
                    const struct lsh_mark *mk = &sw->n_buckets_marks[b];
                    rc = lsh_error_at(err, LSH_ECONFIG, cfg->path, mk->line, mk->column,
                                      "%s; allowed: values the strategy accepts, or "
                                      "'skip_invalid: true' on the strategy to skip them", why);
                } else if (!(pt->skip_reason = strdup(why))) {
                    rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
                } else {
                    plan->n_skipped++;
                }
            }
        }
    }
    if (rc) {
        lsh_collision_plan_free(plan);
        return rc;
    }
    plan->n_rows = col->n_angles * (plan->n_points - plan->n_skipped) * sw->n_n_hashes;
    *out = plan;
    return 0;
}

/* ---- rounds --------------------------------------------------------------- */

/* One angle's work: every round of every point that runs. */
struct block {
    const struct lsh_config *cfg;
    const struct lsh_collision_opts *opts;
    size_t *live;            /* plan point index of each running point */
    size_t n_live;
    uint32_t h_max;
    size_t pairs, d, words;  /* words: 64-bit words per round's bitmap */
    double angle;
    const double *xy;        /* 2 * pairs rows */
    uint32_t **buckets;      /* per thread: 2 * pairs */
    uint64_t *bits;          /* n_live x h_max x words: pair i collided */
    uint64_t *count;         /* n_live x h_max */
    double *seconds;         /* n_live x h_max */
    uint64_t *seed;          /* n_live: point seeds */
    int *code;               /* n_live x h_max: 0, or why the round failed */
    char (*message)[LSH_ERROR_MSG_MAX];
};

static const struct lsh_collision_point *live_point(const struct block *bk,
                                                    const struct lsh_collision_plan *plan,
                                                    size_t k)
{
    return &plan->points[bk->live[k]];
}

struct round_ctx {
    struct block *bk;
    const struct lsh_collision_plan *plan;
};

static int round_task(void *ctx_, size_t task, unsigned thread)
{
    struct round_ctx *ctx = ctx_;
    struct block *bk = ctx->bk;
    const size_t k = task / bk->h_max, P = bk->pairs, d = bk->d;
    const uint32_t h = (uint32_t)(task % bk->h_max);
    const struct lsh_collision_point *pt = live_point(bk, ctx->plan, k);
    const struct lsh_strategy_spec *st = &bk->cfg->strategies[pt->strategy];
    const struct lsh_param_set *set = &st->sets[pt->param_set];
    char *msg = bk->message[task];
    if (bk->opts->stop && *bk->opts->stop)
        return LSH_EINTR;

    double t0 = lsh_now();
    const struct lsh_host_point hp = lsh_host_point_of(st, pt->param_set, pt->n_buckets, d, 2 * P);
    /* the pair (x, y) is hashed as query x and key y (an assign strategy
     * may treat them differently); fit sees [X; Y] */
    const struct lsh_host_rows x = {bk->xy, P, bk->buckets[thread]};
    const struct lsh_host_rows y = {bk->xy + P * d, P, bk->buckets[thread] + P};
    const uint32_t *b = x.bucket;
    struct lsh_host_round *round = NULL;
    struct lsh_error e;
    lsh_error_clear(&e);
    int rc = lsh_host_round_open(&hp, h, lsh_seed_u64(bk->seed[k], h), &round, &e);
    if (!rc)
        rc = lsh_host_round_bucket(round, &x, &y, 1, &e);
    lsh_host_round_close(round);
    if (rc) {
        snprintf(msg, sizeof bk->message[0], "angle %g, %s%s%s n_buckets %u: %.600s", bk->angle,
                 st->name, set->canonical[0] ? " " : "", set->canonical, pt->n_buckets,
                 e.message);
        goto done;
    }
    uint64_t *bits = bk->bits + task * bk->words, n_equal = 0;
    memset(bits, 0, bk->words * sizeof *bits);
    for (size_t i = 0; i < P; i++)
        if (b[i] == b[P + i]) {
            bits[i / 64] |= (uint64_t)1 << (i % 64);
            n_equal++;
        }
    bk->count[task] = n_equal;
    bk->seconds[task] = lsh_now() - t0;
done:
    bk->code[task] = rc;
    return rc;
}

static unsigned popcount64(uint64_t v)
{
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (unsigned)((v * 0x0101010101010101ULL) >> 56);
}

/* ---- the run -------------------------------------------------------------- */

struct run {
    const struct lsh_config *cfg;
    const struct lsh_collision_plan *plan;
    const struct lsh_collision_opts *opts;
    struct lsh_collision_summary *sum;
    struct lsh_results *res;
    double t0;
};

static void report(const struct run *r, const char *stage, const struct lsh_collision_row *row,
                   const char *message, double angle, double seconds)
{
    if (!r->opts->progress)
        return;
    struct lsh_collision_progress p = {
        .stage = stage, .done = r->sum->written + r->sum->resumed, .total = r->plan->n_rows,
        .row = row, .message = message, .angle = angle, .seconds = seconds,
        .elapsed = lsh_now() - r->t0,
    };
    r->opts->progress(r->opts->progress_ctx, &p);
}

static void block_free(struct block *bk, unsigned threads)
{
    if (bk->buckets)
        for (unsigned t = 0; t < threads; t++)
            free(bk->buckets[t]);
    free(bk->buckets);
    free(bk->live);
    free(bk->bits);
    free(bk->count);
    free(bk->seconds);
    free(bk->seed);
    free(bk->code);
    free(bk->message);
    free((void *)bk->xy);
}

static int block_alloc(struct block *bk, const struct run *r, unsigned threads,
                       struct lsh_error *err)
{
    const struct lsh_collision_plan *plan = r->plan;
    const size_t tasks = (plan->n_points - plan->n_skipped) * bk->h_max;
    bk->n_live = 0;
    bk->live = calloc(plan->n_points + 1, sizeof *bk->live);
    bk->seed = calloc(plan->n_points + 1, sizeof *bk->seed);
    bk->bits = calloc(tasks * bk->words + 1, sizeof *bk->bits);
    bk->count = calloc(tasks + 1, sizeof *bk->count);
    bk->seconds = calloc(tasks + 1, sizeof *bk->seconds);
    bk->code = calloc(tasks + 1, sizeof *bk->code);
    bk->message = calloc(tasks + 1, sizeof *bk->message);
    bk->xy = malloc(2 * bk->pairs * bk->d * sizeof(double));
    bk->buckets = calloc(threads, sizeof *bk->buckets);
    int ok = bk->live && bk->seed && bk->bits && bk->count && bk->seconds && bk->code &&
             bk->message && bk->xy && bk->buckets;
    for (unsigned t = 0; ok && t < threads; t++)
        ok = (bk->buckets[t] = malloc(2 * bk->pairs * sizeof(uint32_t))) != NULL;
    if (!ok)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory for %zu rounds of %zu pairs",
                             tasks, bk->pairs);
    for (size_t p = 0; p < plan->n_points; p++)
        if (!plan->points[p].skip_reason)
            bk->live[bk->n_live++] = p;
    return 0;
}

/* Compute the rows of angle ai and write those not in the file yet. */
static int run_angle(struct run *r, struct block *bk, size_t ai, size_t first_row,
                     struct lsh_error *err)
{
    const struct lsh_config *cfg = r->cfg;
    const struct lsh_sweep *sw = &cfg->sweep;
    const double angle = cfg->collision.angles[ai];
    const unsigned threads = r->opts->threads ? r->opts->threads : 1;
    bk->angle = angle;
    double t0 = lsh_now();
    int rc = lsh_collision_draw_pairs(cfg->seed, angle, bk->pairs, bk->d, threads,
                                      (double *)bk->xy, err);
    if (rc)
        return rc;
    report(r, "pairs", NULL, NULL, angle, lsh_now() - t0);
    for (size_t k = 0; k < bk->n_live; k++) {
        const struct lsh_collision_point *pt = live_point(bk, r->plan, k);
        const struct lsh_strategy_spec *st = &cfg->strategies[pt->strategy];
        bk->seed[k] = lsh_collision_point_seed(cfg->seed, st->name,
                                               st->sets[pt->param_set].canonical,
                                               pt->n_buckets, angle);
    }
    const size_t tasks = bk->n_live * bk->h_max;
    memset(bk->code, 0, tasks * sizeof *bk->code);
    struct round_ctx ctx = {bk, r->plan};
    const int pool_rc = lsh_parallel_for(threads, tasks, round_task, &ctx);
    /* The first failure in task order, so the error is the same for any -j;
     * a stop request wins over errors of rounds it cut short. */
    if (r->opts->stop && *r->opts->stop)
        return LSH_EINTR;
    for (size_t t = 0; t < tasks; t++) {
        if (bk->code[t] == LSH_EINTR)
            return LSH_EINTR;
        if (bk->code[t])
            return lsh_error_set(err, bk->code[t], "%s", bk->message[t]);
    }
    if (pool_rc) /* no round failed: the pool itself did, and some never ran */
        return lsh_error_set(err, pool_rc, "out of memory starting %u threads for %zu rounds",
                             threads, tasks);

    uint64_t *any = calloc(bk->words + 1, sizeof *any);
    if (!any)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    size_t row_index = first_row;
    for (size_t k = 0; k < bk->n_live && !rc; k++) {
        const struct lsh_collision_point *pt = live_point(bk, r->plan, k);
        const struct lsh_strategy_spec *st = &cfg->strategies[pt->strategy];
        memset(any, 0, bk->words * sizeof *any);
        size_t next = 0; /* index into sw->n_hashes (ascending) */
        double seconds = 0.0;
        for (uint32_t h = 0; h < bk->h_max && next < sw->n_n_hashes && !rc; h++) {
            const size_t task = k * bk->h_max + h;
            const uint64_t *bits = bk->bits + task * bk->words;
            for (size_t w = 0; w < bk->words; w++)
                any[w] |= bits[w];
            seconds += bk->seconds[task];
            if (h + 1 != sw->n_hashes[next])
                continue;
            next++;
            if (row_index++ < r->sum->resumed)
                continue;
            uint64_t n_any = 0;
            for (size_t w = 0; w < bk->words; w++)
                n_any += popcount64(any[w]);
            struct lsh_collision_stats stats;
            lsh_collision_stats(bk->count + k * bk->h_max, h + 1, n_any, bk->pairs, &stats);
            struct lsh_collision_row row = {
                .strategy = st->name, .params = st->sets[pt->param_set].canonical,
                .n_buckets = pt->n_buckets, .n_hashes = h + 1, .angle = angle,
                .pairs = bk->pairs, .p_round = stats.p_round, .p_round_se = stats.p_round_se,
                .p_any = stats.p_any, .p_any_se = stats.p_any_se, .seed = bk->seed[k],
                .seconds = seconds,
            };
            rc = law_at(cfg, pt, angle, &row, err);
            if (!rc)
                rc = lsh_results_append_collision(r->res, &row, err);
            if (!rc) {
                r->sum->written++;
                report(r, "row", &row, NULL, angle, 0.0);
            }
        }
    }
    free(any);
    return rc;
}

/* has_law and p_law of a row: the strategy's published one-round collision
 * probability at the pairs' angle (ABI 1.1 collision_prob), when it has one
 * for these parameters; 0 without. */
static int law_at(const struct lsh_config *cfg, const struct lsh_collision_point *pt,
                  double angle, struct lsh_collision_row *row, struct lsh_error *err)
{
    const struct lsh_strategy_spec *st = &cfg->strategies[pt->strategy];
    const struct lsh_host_point hp = lsh_host_point_of(st, pt->param_set, pt->n_buckets,
                                                       cfg->collision.d,
                                                       2 * cfg->collision.pairs);
    struct lsh_host_law law;
    char why[LSH_ERROR_MSG_MAX / 2];
    row->has_law = 0;
    row->p_law = 0.0;
    if (lsh_host_law_of(&hp, &law, why, sizeof why))
        return 0;
    double c, s, p;
    cos_sin_degrees(angle, &c, &s);
    if (lsh_host_law_eval(&law, c, &p))
        return lsh_error_set(err, LSH_EPLUGIN,
                             "strategy '%s' %s: collision_prob at angle %.17g degrees is %.17g, "
                             "not a probability in [0, 1]", st->name,
                             st->sets[pt->param_set].canonical, angle, p);
    row->has_law = 1;
    row->p_law = p;
    return 0;
}

/* The key of planned row i (angle > live point > n_hashes), for resume. */
static void planned_row(void *ctx, uint64_t i, void *record)
{
    const struct run *r = ctx;
    const struct lsh_config *cfg = r->cfg;
    struct lsh_collision_row *row = record;
    const size_t n_nh = cfg->sweep.n_n_hashes, n_live = r->plan->n_points - r->plan->n_skipped;
    size_t k = (size_t)(i / n_nh % n_live), seen = 0;
    const double angle = cfg->collision.angles[i / n_nh / n_live];
    for (size_t p = 0; p < r->plan->n_points; p++) {
        const struct lsh_collision_point *pt = &r->plan->points[p];
        if (pt->skip_reason || seen++ != k)
            continue;
        const struct lsh_strategy_spec *st = &cfg->strategies[pt->strategy];
        *row = (struct lsh_collision_row){
            .strategy = st->name, .params = st->sets[pt->param_set].canonical,
            .n_buckets = pt->n_buckets, .n_hashes = cfg->sweep.n_hashes[i % n_nh],
            .angle = angle, .pairs = cfg->collision.pairs,
            .seed = lsh_collision_point_seed(cfg->seed, st->name,
                                             st->sets[pt->param_set].canonical, pt->n_buckets,
                                             angle),
        };
        return;
    }
}

int lsh_collision_run(const struct lsh_config *cfg, const struct lsh_collision_plan *plan,
                      const struct lsh_collision_opts *opts,
                      struct lsh_collision_summary *summary, struct lsh_error *err)
{
    if (!cfg || !plan || !opts)
        return lsh_error_set(err, LSH_EINVAL, "lsh_collision_run: NULL argument");
    if (cfg->experiment != LSH_EXPERIMENT_COLLISION)
        return lsh_error_set(err, LSH_EINVAL, "lsh_collision_run: not a collision experiment");
    struct lsh_collision_summary sum = {.rows = plan->n_rows, .skipped_points = plan->n_skipped};
    struct run r = {.cfg = cfg, .plan = plan, .opts = opts, .sum = &sum, .t0 = lsh_now()};
    const unsigned threads = opts->threads ? opts->threads : 1;
    int rc = lsh_results_open(opts->output ? opts->output : cfg->output, cfg, opts->cmdline,
                              opts->mode, &r.res, err);
    if (!rc)
        rc = lsh_results_check_resumed(r.res, planned_row, &r, plan->n_rows, err);
    if (rc) {
        lsh_results_close(r.res, 0, NULL);
        return rc;
    }
    sum.resumed = lsh_results_row_count(r.res); /* at most n_rows: checked above */
    if (sum.resumed)
        report(&r, "resume-skip", NULL, NULL, 0.0, 0.0);
    for (size_t p = 0; !rc && p < plan->n_points; p++)
        if (plan->points[p].skip_reason)
            report(&r, "skip", NULL, plan->points[p].skip_reason, 0.0, 0.0);

    const struct lsh_sweep *sw = &cfg->sweep;
    struct block bk = {
        .cfg = cfg, .opts = opts, .h_max = sw->n_hashes[sw->n_n_hashes - 1],
        .pairs = cfg->collision.pairs, .d = cfg->collision.d,
        .words = (cfg->collision.pairs + 63) / 64,
    };
    const size_t per_angle = (plan->n_points - plan->n_skipped) * sw->n_n_hashes;
    if (!rc && per_angle && sum.resumed < plan->n_rows)
        rc = block_alloc(&bk, &r, threads, err);
    for (size_t ai = 0; !rc && per_angle && ai < cfg->collision.n_angles; ai++) {
        if ((ai + 1) * per_angle <= sum.resumed)
            continue; /* every row of this angle is in the file */
        rc = run_angle(&r, &bk, ai, ai * per_angle, err);
        if (!rc && opts->stop && *opts->stop && ai + 1 < cfg->collision.n_angles)
            rc = LSH_EINTR;
    }
    block_free(&bk, threads);

    if (rc == LSH_EINTR) {
        sum.interrupted = 1;
        lsh_error_set(err, LSH_EINTR, "stopped after %zu of %zu rows",
                      sum.written + sum.resumed, plan->n_rows);
    }
    struct lsh_error close_err;
    lsh_error_clear(&close_err);
    int crc = lsh_results_close(r.res, rc == 0, &close_err);
    if (!rc && crc) {
        rc = crc;
        if (err)
            *err = close_err;
    }
    sum.seconds = lsh_now() - r.t0;
    if (summary)
        *summary = sum;
    return rc;
}
