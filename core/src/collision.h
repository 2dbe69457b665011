/* collision.h - the collision experiment (SPEC 8): how often does a strategy
 * put two unit vectors at angle theta in the same bucket?
 *
 * For every angle, strategy, parameter set, n_buckets and n_hashes, one
 * /collision row: p_round (mean over rounds of the share of pairs whose two
 * vectors share a bucket), p_any (share of pairs that share a bucket in at
 * least one of the rounds) and their standard errors.
 *
 * Randomness (SPEC 7), every draw a pure function of the config seed and of
 * what is drawn, never of order or threads.  With mix = lsh_seed_* (rng.h)
 * and bits(a) the IEEE-754 bits of the angle in degrees as a uint64:
 *   base          = mix(mix(0x6c73686c6162 ("lshlab"), config seed), "collision")
 *   pair i of a   = the stream seeded mix(mix(mix(base, "pairs"), bits(a)), i):
 *                   d normals g, then d normals g'; x = g/|g|;
 *                   u = g' - (g'.x) x, orthogonalised twice, then u/|u|
 *                   (drawn again from the same stream if |u| < 1e-9);
 *                   y = cos(a) x + sin(a) u (cos 90 = 0, sin 180 = 0 exactly)
 *                   -- the pairs of an angle are shared by every strategy and
 *                   n_buckets (common random numbers);
 *   point seed    = mix(mix(mix(mix(base, strategy), canonical params), B), bits(a))
 *                   (the /collision seed column; n_hashes is not in it);
 *   round h       = mix(point seed, h), exactly as a sweep's round (sweep.c):
 *                   init, fit on the 2*pairs rows [x_0..x_{P-1}; y_0..y_{P-1}]
 *                   (strategies with a fit, e.g. kmeans), hash those rows.
 * A row with n_hashes H uses rounds 0..H-1 of its point, so rows over H are
 * nested (common random numbers), as in a sweep.
 *
 * Statistics of a row (P pairs, s_h = share of pairs colliding in round h):
 *   p_round    = mean_{h<H} s_h;
 *   p_round_se = sd(s_0..s_{H-1}) / sqrt(H), sd with H - 1 in the denominator
 *                (SPEC 8): pairs share a round's hash function, so the rounds,
 *                not the pairs, are the independent replicates;
 *   p_any      = share of pairs colliding in at least one of rounds 0..H-1;
 *   p_any_se   = sqrt(p_any (1 - p_any) / P  +  H tau2 (1 - p_round)^(2(H-1))),
 *                tau2 = max(0, sd(s_h)^2 - p_round (1 - p_round) / P).
 *                The first term is the binomial variance of P pairs given the
 *                hash functions; tau2 estimates the between-pair covariance a
 *                shared round induces (the spread of the per-round shares
 *                beyond their binomial part), and the second term carries it
 *                to the at-least-once event to first order (delta method:
 *                a pair collides at least once unless it misses all H rounds).
 *                There is no unbiased estimator from H rounds alone; by
 *                simulation this one is within about 15% of the true spread for
 *                d >= 8, and too small for tiny d (<= 4) with p_any near 1.
 *   With H = 1 both standard errors are 0: one round says nothing about the
 *   spread between rounds ("not estimable", not "exact").
 *   seconds    = wall time of the row's H rounds (init, fit, hash), summed;
 *                drawing the pairs is shared by the angle's rows, not counted.
 *
 * Row order: angle (as given) > strategy > parameter set > n_buckets (as
 * given) > n_hashes (ascending); points a strategy cannot run are errors at
 * plan time, or, with skip_invalid, left out (no row).  All rows of an angle
 * are computed together (one draw of its pairs) and written, in that order,
 * when they are done; an interrupted run resumes after the rows in the file.
 *
 * Library code: reports through the progress callback, never prints.
 */
#ifndef LSH_COLLISION_H
#define LSH_COLLISION_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "results.h"

/* One (strategy, parameter set, n_buckets) of the experiment. */
struct lsh_collision_point {
    size_t strategy, param_set;  /* indices into the config */
    uint32_t n_buckets;
    char *skip_reason;           /* non-NULL: skipped (skip_invalid), no rows; owned */
};

struct lsh_collision_plan {
    size_t n_points;             /* every (strategy, parameter set, n_buckets) */
    struct lsh_collision_point *points;
    size_t n_skipped;            /* points with a skip_reason */
    size_t n_rows;               /* n_angles x (n_points - n_skipped) x n_n_hashes */
};

/* Check a collision config (its d, repeats and dump, and every strategy's
 * check() on every point, with 2 * pairs rows of dimension d) and expand it.
 * A point a strategy refuses is an LSH_ECONFIG error naming the n_buckets
 * entry of the config, unless the strategy says skip_invalid.  *out is owned
 * by the caller (lsh_collision_plan_free, which takes NULL). */
int lsh_collision_plan_build(const struct lsh_config *cfg, struct lsh_collision_plan **out,
                             struct lsh_error *err);
void lsh_collision_plan_free(struct lsh_collision_plan *plan);

struct lsh_collision_progress {
    const char *stage;           /* "skip" (a skipped point, before any work),
                                    "resume-skip", "pairs" (an angle's pairs drawn),
                                    "row" (a row written) */
    size_t done, total;          /* rows written (or found, on resume) so far; rows */
    const struct lsh_collision_row *row;  /* "row": the row just written */
    const char *message;         /* "skip": why */
    double angle;                /* "pairs": the angle */
    double seconds;              /* "pairs": time to draw them */
    double elapsed;              /* since the run started */
};

struct lsh_collision_opts {
    unsigned threads;                 /* >= 1 */
    enum lsh_results_mode mode;       /* create, force or resume */
    const char *output;               /* results path (default cfg->output) */
    const char *cmdline;              /* provenance */
    volatile sig_atomic_t *stop;      /* set asynchronously: stop soon, resumable */
    void (*progress)(void *ctx, const struct lsh_collision_progress *p);
    void *progress_ctx;
};

struct lsh_collision_summary {
    size_t rows, written, resumed, skipped_points;
    int interrupted;
    double seconds;
};

/* Run the experiment into /collision.  Returns 0 when every row is written,
 * LSH_EINTR when stopped (the .partial file is kept for --resume), or an
 * error: a plugin failure (LSH_EPLUGIN, naming strategy, round and reason)
 * ends the run, since /collision has no status column to record it.
 * Results are bit-identical for every thread count (timings aside). */
int lsh_collision_run(const struct lsh_config *cfg, const struct lsh_collision_plan *plan,
                      const struct lsh_collision_opts *opts,
                      struct lsh_collision_summary *summary, struct lsh_error *err);

/* ---- building blocks, exposed for tests ------------------------------------ */

/* The seeds of the scheme above. */
uint64_t lsh_collision_base_seed(uint64_t config_seed);
uint64_t lsh_collision_point_seed(uint64_t config_seed, const char *strategy,
                                  const char *canonical_params, uint32_t n_buckets,
                                  double angle);

/* Draw the pairs of one angle into xy (2 * pairs rows of d doubles, caller
 * storage): rows 0..pairs-1 are the x's, rows pairs..2*pairs-1 the y's.
 * Needs d >= 2 and 0 < angle <= 180 (degrees). */
int lsh_collision_draw_pairs(uint64_t config_seed, double angle, size_t pairs, size_t d,
                             unsigned threads, double *xy, struct lsh_error *err);

/* The statistics of one row from the per-round counts of colliding pairs
 * (count[h], h < H) and the number of pairs colliding in at least one round
 * (any), as defined above. */
struct lsh_collision_stats {
    double p_round, p_round_se, p_any, p_any_se;
};
void lsh_collision_stats(const uint64_t *count, uint32_t H, uint64_t any, uint64_t pairs,
                         struct lsh_collision_stats *out);

#endif
