/* host.h - the one place lshlab calls a strategy plugin (as SQLite's vtab.c
 * is for virtual tables): the host services, check(), and the lifecycle of a
 * round (open: state, rng, init; bucket: fit, hash or assign and the
 * bucket-range check; export: export_params through a checked sink; close:
 * fini), and the collision laws (collision_prob).  ABI 1.1 members are read
 * only for plugins that declare abi_minor >= 1.
 *
 * Nothing else in lshlab calls a struct lsh_strategy's callbacks, so a new
 * ABI minor (an optional callback such as `assign`) lands in host.c alone.
 *
 * Faults a plugin can make are contained here:
 * - every plugin return code becomes LSH_EPLUGIN (never a host code such as
 *   LSH_ECONFIG, which LSH_STRATEGY_EDATA would otherwise equal), with the
 *   message "strategy / round h / callback: the plugin's message";
 * - the plugin's message buffer is NUL-terminated before it is read, and its
 *   control characters are shown as '?';
 * - a plugin never gets a pointer to data other rounds or points read: fit()
 *   gets a private copy of its rows and hash() batches of rows copied into a
 *   scratch buffer (LSH_HOST_BATCH_ROWS rows), its buckets into scratch too,
 *   so a plugin that writes through its const pointer changes only its own
 *   copy, and its buckets reach the caller only after the range check;
 * - a bucket >= n_buckets, a state_size over LSH_HOST_STATE_MAX and an
 *   exported array name that is not a plain word are LSH_EPLUGIN errors.
 *
 * Thread safety: the services table is immutable; a round is used by one
 * thread at a time; different rounds may run on different threads.
 */
#ifndef LSH_HOST_H
#define LSH_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "lshlab/strategy.h"

/* The largest state_size the host allocates per round (1 GiB): a plugin that
 * needs more allocates it in init.  The registry refuses larger ones at load. */
#define LSH_HOST_STATE_MAX ((size_t)1 << 30)

/* Rows per hash() call.  It equals the batch the built-in plugins split
 * their GEMMs into (and is a multiple of k-means' batch for B a power of
 * two), so their GEMM calls, and hence the buckets, are the same as when
 * hash() was handed all rows at once. */
#define LSH_HOST_BATCH_ROWS 1024

/* Exported array names: 1 to LSH_HOST_NAME_MAX characters of [A-Za-z0-9_.-]. */
#define LSH_HOST_NAME_MAX 64

/* The services table given to plugins (struct lsh_host): the random streams
 * of rng.h and the BLAS-backed GEMMs of linalg.h.  Static; never NULL. */
const struct lsh_host *lsh_host_services(void);

/* One point of a strategy: what check() and every round of it are told.
 * Borrowed pointers; they must outlive the rounds opened with it. */
struct lsh_host_point {
    const struct lsh_strategy *strategy;
    const char *params;                    /* canonical text, for messages ("" none) */
    const struct lsh_param_value *values;  /* in the order of strategy->params */
    size_t n_values;
    uint32_t n_buckets;
    size_t d;
    size_t n_rows;                         /* rows fit() will see */
};

/* The point of parameter set ps of a configured strategy (config.h). */
struct lsh_strategy_spec;
struct lsh_host_point lsh_host_point_of(const struct lsh_strategy_spec *st, size_t ps,
                                        uint32_t n_buckets, size_t d, size_t n_rows);

/* Run the strategy's check() (if it has one) on pt.  0 when accepted; else
 * LSH_EPLUGIN, and why holds one formatted reason:
 *   "<name>[ <params>] cannot run n_buckets <B> <where>: <the plugin's message>"
 * where is the caller's "on dataset 'x' (n = .., d = ..)" or the like. */
int lsh_host_check(const struct lsh_host_point *pt, const char *where, char *why,
                   size_t why_size);

/* ---- rounds ---------------------------------------------------------------- */

struct lsh_host_round;

/* Open round h of pt with the round's seed: allocate the zeroed, 64-byte
 * aligned state (state_size, refused above LSH_HOST_STATE_MAX), seed its
 * random stream from seed, call init.  *out is owned (lsh_host_round_close).
 * Errors: LSH_EPLUGIN (init failed, or state_size refused), LSH_ENOMEM. */
int lsh_host_round_open(const struct lsh_host_point *pt, uint32_t h, uint64_t seed,
                        struct lsh_host_round **out, struct lsh_error *err);

/* Rows to bucket: n rows of pt->d doubles (borrowed, never written) and
 * where their buckets go (n values, caller storage). */
struct lsh_host_rows {
    const double *x;
    size_t n;
    uint32_t *bucket;
};

/* Does s assign whole sets (ABI 1.1 `assign`)?  Then a round gives keys
 * buckets of their own even when keys are shared (an asymmetric rule). */
int lsh_host_assigns(const struct lsh_strategy *s);

/* Does s publish a collision law (ABI 1.1 `collision_prob`)?  It may still
 * be NaN for some parameters: lsh_host_law_of says for a point. */
int lsh_host_has_law(const struct lsh_strategy *s);

/* Bucket the queries q and the keys k with this round.  Call once per round.
 *  - k NULL: keys are the queries and only q's buckets are wanted.
 *  - k->x == q->x (same rows, same n): keys are the queries (shared keys),
 *    and k->bucket receives the key buckets: a copy of q's for a hash()
 *    strategy, assign's own key buckets for an assign strategy.
 *  - else: keys are other rows (separate keys, or the collision
 *    experiment's y of each pair).
 * fit (if any) runs once on a private copy of q's rows, followed by k's
 * when they are other rows and fit_keys is set (SPEC 2.3: [Q; K] for
 * separate keys; not for the normalised rows of shared_normalized); then assign(q, k) once
 * (lsh_host_assigns) or hash() on q's rows and on k's other rows, in
 * batches.  Every bucket is checked to be below n_buckets.
 * Errors: LSH_EPLUGIN (a callback failed, or a bucket out of range; err
 * says which), LSH_ENOMEM.  The caller's rows are never handed to the plugin. */
int lsh_host_round_bucket(struct lsh_host_round *r, const struct lsh_host_rows *q,
                          const struct lsh_host_rows *k, int fit_keys, struct lsh_error *err);

/* ---- collision laws (ABI 1.1 collision_prob) ---------------------------------- */

/* A strategy's closed-form one-round collision probability for one point
 * (its parameters, n_buckets and d).  Filled by lsh_host_law_of; immutable
 * afterwards and safe to evaluate from many threads. */
struct lsh_host_law {
    double (*fn)(const struct lsh_round *round, double cos_theta);
    struct lsh_round round;   /* as check() sees it: rng NULL, seed 0, round 0 */
    const char *name;         /* the strategy */
};

/* 0 when pt's strategy publishes a law for pt (ABI >= 1.1, collision_prob
 * non-NULL, and a value in [0, 1] at each of a few probe cosines from -1 to
 * 1); else LSH_EPLUGIN with the reason in why, e.g. "rotation
 * orthogonal=true,factors=[] with n_buckets 8 has no closed-form collision
 * probability (...)".  pt's borrowed pointers must outlive law. */
int lsh_host_law_of(const struct lsh_host_point *pt, struct lsh_host_law *law, char *why,
                    size_t why_size);

/* p = the law at cos_theta (clamped to [-1, 1]).  0, or LSH_EPLUGIN when the
 * plugin's value is not in [0, 1] (NaN included); *p holds it either way. */
int lsh_host_law_eval(const struct lsh_host_law *law, double cos_theta, double *p);

/* Where exported arrays go: name (checked: a plain word), rows x cols
 * doubles, row-major, borrowed for the call.  Returns 0 or an LSH_E* code
 * with err filled. */
typedef int (*lsh_host_array_fn)(void *ctx, const char *name, const double *data,
                                 size_t rows, size_t cols, struct lsh_error *err);

/* Call export_params (a no-op when the strategy has none), handing each
 * array to fn (NULL: only check the names and the plugin's return code, so
 * a caller can refuse a point before writing any of it).  Returns 0; the
 * code fn returned (err filled by fn); or LSH_EPLUGIN when the plugin failed
 * or named an array badly. */
int lsh_host_round_export(struct lsh_host_round *r, lsh_host_array_fn fn, void *ctx,
                          struct lsh_error *err);

/* fini (when init succeeded) and free.  NULL is allowed. */
void lsh_host_round_close(struct lsh_host_round *r);

/* Memory for a round of pt (its strategy and parameters, on pt->n_rows rows
 * of pt->d doubles into pt->n_buckets buckets), for the memory plan: what the
 * host allocates, plus, for the built-in strategies, what they allocate
 * themselves (another plugin's own allocations cannot be known):
 *   kept      - from open to close: the state (rounded to 64) and the stream;
 *   transient - only inside lsh_host_round_bucket, freed before it returns:
 *               the private copy of the rows fit() gets, or the hash batch
 *               (rows and their buckets), or assign's copy of every row and
 *               bucket, whichever is larger (they are never held together).
 * A run holding H rounds open, T of them bucketing at once, needs
 * H * kept + T * transient.  Saturates at SIZE_MAX instead of wrapping.
 * n_rows: every row the round sees (queries and other keys). */
struct lsh_host_memory {
    size_t kept, transient;
};
void lsh_host_round_memory(const struct lsh_host_point *pt, struct lsh_host_memory *out);

/* A rough cost of one round of pt (its fit and the hashing of pt->n_rows
 * rows), in flops: the built-in strategies' by their own loops, another
 * plugin's guessed at 8 d a row.  Only to order work (sweep.c runs the
 * costliest hash groups first); never a figure, and no result depends on it. */
double lsh_host_round_cost(const struct lsh_host_point *pt);

#endif
