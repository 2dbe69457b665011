/* plan.h - a validated config expanded into hash groups and sweep points.
 *
 * point_id is the index in this expansion order (SPEC 8, 11.2), which is
 * also the order points are run and written:
 *   dataset > layer > head                                        (unit)
 *     > strategy > parameter set > n_buckets > repeat             (hash group)
 *     > mode setting (mode, chunk_size, look_back, window)
 *       > min_collisions > sink > local                            (pass)
 *         > n_hashes > combine                                     (point)
 * In bucket mode chunk_size, look_back and window do not apply and are not
 * swept.  A pass is one struct lsh_mode_opts: a mode setting with one
 * candidate rule (SPEC 13).  Building the plan also runs every strategy's
 * check() on every (dataset, parameter set, n_buckets), and, when a combine
 * is importance, asks for the strategy's collision law there (SPEC 14), so
 * an invalid point is an error here, before any work, unless the strategy
 * says skip_invalid (then its hash group is skipped with the reason).
 *
 * The units of a dataset (its selected (layer, head) problems) come from its
 * probed layout, layer-major: unit u is layers[u / n_heads], heads[u %
 * n_heads].  A dataset without axes has one unit {-1, -1}.  All units of a
 * dataset have the same shape, so the strategy checks and the memory figures
 * are per dataset.
 */
#ifndef LSH_PLAN_H
#define LSH_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "error.h"
#include "memsize.h"
#include "point.h"

struct lsh_registry;

struct lsh_hash_group {
    size_t dataset, strategy, param_set;  /* indices into the config */
    size_t unit;                          /* index of the unit in the dataset's layout */
    struct lsh_dataset_unit where;        /* its layer and head (-1: no such axis) */
    uint32_t n_buckets, repeat;
    uint32_t h_max;                       /* largest n_hashes */
    uint64_t seed;                        /* the point seed (SPEC 7), with layer and head
                                             mixed in (lsh_seed_unit, SPEC 11.2) */
    char *skip_reason;                    /* non-NULL: skipped (skip_invalid) */
    size_t first_pass, n_passes;
};

struct lsh_pass {
    size_t group;
    struct lsh_mode_opts mode;
    uint64_t first_point;                 /* its points: n_n_hashes x n_combine */
};

struct lsh_plan_point {
    uint64_t id;
    size_t pass;
    uint32_t n_hashes;
    enum lsh_combine combine;
};

struct lsh_plan {
    size_t n_datasets;
    struct lsh_dataset_layout *shapes;    /* per config dataset (probed) */
    size_t n_groups;
    struct lsh_hash_group *groups;
    size_t n_passes;
    struct lsh_pass *passes;
    size_t n_points;
    struct lsh_plan_point *points;
    size_t n_skipped_groups;
};

int lsh_plan_build(const struct lsh_config *cfg, struct lsh_plan **out, struct lsh_error *err);

/* The units of dataset k (n_layers x n_heads of its layout), and unit u of it. */
size_t lsh_plan_units(const struct lsh_plan *plan, size_t dataset);
struct lsh_dataset_unit lsh_plan_unit(const struct lsh_plan *plan, size_t dataset, size_t u);
void lsh_plan_free(struct lsh_plan *plan);

/* Fill key for point p (strings borrowed from cfg). */
void lsh_plan_point_key(const struct lsh_plan *plan, const struct lsh_config *cfg, size_t p,
                        struct lsh_point_key *key);


/* Memory a dataset's points need at most, in bytes: what does not depend on
 * the thread count, what each thread adds, and what the score cache would
 * add (0 when no point reads it: every pass takes the tile path).  The sum
 * of the figures of the modules that allocate (dataset, reference, eval),
 * of the sweep's own buffers and of the rounds (the host's copies, and what
 * the built-in strategies allocate; not what another plugin allocates
 * itself, see plan.c).  Saturates at
 * SIZE_MAX: a dataset whose sizes overflow needs more than any limit. */
struct lsh_memory {
    size_t shared, per_thread, cache;
    size_t group; /* the part of shared one hash group in progress takes (its
                     buckets and rounds, a pass's shared figure, its outputs) */
};
void lsh_plan_memory(const struct lsh_config *cfg, const struct lsh_plan *plan, size_t dataset,
                     struct lsh_memory *out);

/* shared + threads x per_thread (+ cache when cache), saturating. */
size_t lsh_memory_total(const struct lsh_memory *mem, unsigned threads, int cache);

/* Whether a dataset keeps the score cache under limit, and on how many of
 * `threads` threads it then runs.  The cache is kept when it fits beside the
 * rest on one thread, whatever `threads` is, so the choice does not depend
 * on -j; the threads are then capped to what fits beside it.  Neither
 * changes a metric's bits (a cached score is the one recomputed). */
unsigned lsh_plan_threads(const struct lsh_memory *mem, unsigned threads, size_t limit,
                          int *cache);

/* How many of a unit's `groups` hash groups may run side by side, one
 * thread each, on at most `threads` threads: w of them hold at least 2w
 * groups (w being computed, w finished and waiting to be written), each
 * mem->group beside the threads' figures.  1 when two do not fit under
 * limit.  *hold (when not NULL): how many groups may be held, 2w or more,
 * up to `groups`, as many as fit. */
unsigned lsh_plan_side_groups(const struct lsh_memory *mem, unsigned threads, size_t limit,
                              int cache, size_t groups, size_t *hold);

/* Check every dataset against limit (bytes): LSH_ECONFIG at the dataset's
 * position when one needs more than that on `threads` threads even without
 * the cache, or when its sizes overflow. */
int lsh_plan_check_memory(const struct lsh_config *cfg, const struct lsh_plan *plan,
                          unsigned threads, size_t limit, struct lsh_error *err);

/* The collision experiment's figure (pairs, their buckets, per-round
 * counts; the host's rounds), and its check against limit. */
size_t lsh_plan_collision_memory(const struct lsh_config *cfg, unsigned threads);
int lsh_plan_check_collision_memory(const struct lsh_config *cfg, unsigned threads, size_t limit,
                                    struct lsh_error *err);

#endif
