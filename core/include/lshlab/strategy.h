/* strategy.h - the whole ABI between lshlab and a hashing-strategy plugin.
 *
 * A plugin is a shared module that exports one symbol, lsh_strategy_entry(),
 * returning a pointer to a static const struct lsh_strategy.  This header uses
 * standard headers only: a third party builds a plugin against it alone, e.g.
 *
 *     cc -std=c11 -shared -fPIC -I<prefix>/include my_strategy.c -o my_strategy.so
 *
 * and points LSHLAB_STRATEGY_PATH at the folder holding the .so.
 *
 * Versioning (as GStreamer/PipeWire do): the host loads a plugin only when its
 * abi_major equals LSH_STRATEGY_ABI_MAJOR and its abi_minor is not newer than the
 * host's.  Members are only ever appended; a host checks abi_minor before
 * calling a member added in a later minor version.
 *
 * ABI 1.1 appended two optional members, assign and collision_prob (at the end
 * of struct lsh_strategy).  A 1.0 plugin, built with a header that lacks them,
 * keeps loading: the host reads them only when the plugin's abi_minor >= 1.
 *
 * One instance of a strategy is one hash round.  The host allocates
 * state_size bytes (zeroed, 64-byte aligned, at least 64 bytes even for 0; at
 * most 1 GiB, larger values are refused at load: allocate big tables in init), calls init once with the
 * round's seed, then fit (if any) once, then hash any number of times (batches
 * of rows, possibly from several threads on *different* instances), then
 * export_params (optional) and fini.  An instance is never used by two threads
 * at once.
 *
 * Faults: the host treats any non-zero return as a failure of this plugin
 * (reported as "strategy / round h / callback: message", the point fails),
 * never as one of its own error codes.  Rows are handed out as copies, so a
 * plugin that writes through a const pointer changes only its copy; still,
 * don't.  A plugin must never call exit(): lshlab stops with an error then.
 *
 * Randomness: a plugin must draw every random number through round->rng and
 * round->host, which are seeded by the host from the round's seed.  That is
 * what makes results a pure function of the config seed (SPEC section 7).
 */
#ifndef LSHLAB_STRATEGY_H
#define LSHLAB_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LSH_STRATEGY_ABI_MAJOR 1
#define LSH_STRATEGY_ABI_MINOR 1

#if defined(_WIN32)
#define LSH_EXPORT __declspec(dllexport)
#else
#define LSH_EXPORT __attribute__((visibility("default")))
#endif

/* Return codes of callbacks: 0 on success, or one of these (negative). */
enum {
    LSH_STRATEGY_OK = 0,
    LSH_STRATEGY_EINVAL = -1,  /* a parameter, n_buckets or d is not allowed   */
    LSH_STRATEGY_ENOMEM = -2,  /* out of memory                                 */
    LSH_STRATEGY_EDATA = -3,   /* the data cannot be hashed (e.g. too few rows) */
    LSH_STRATEGY_EFAIL = -4    /* anything else; say what in err->message       */
};

/* Error detail, owned by the caller (the host).  A callback that fails writes
 * a one-line, human-readable reason into message, NUL-terminated.  (The host
 * does not rely on the NUL: it reads at most LSH_STRATEGY_MSG_MAX - 1 bytes and
 * shows control characters as '?'.) */
#define LSH_STRATEGY_MSG_MAX 256
struct lsh_strategy_error {
    char message[LSH_STRATEGY_MSG_MAX];
};

/* ---- parameters ---------------------------------------------------------- */

enum lsh_param_type {
    LSH_PARAM_END = 0,  /* terminates a parameter array                         */
    LSH_PARAM_BOOL,     /* true/false                                           */
    LSH_PARAM_INT,      /* integer in [min, max]                                */
    LSH_PARAM_REAL,     /* double in [min, max]                                 */
    LSH_PARAM_CHOICE,   /* one of choices[] (a NULL-terminated list of words    */
                        /* of [A-Za-z0-9_.+-], 1 to 63 characters)            */
    LSH_PARAM_INT_LIST  /* a list of integers, each in [min, max]; one value,   */
                        /* not a sweep (sweep it with a list of lists)          */
};

/* One parameter of a strategy, as published to the host.  The host checks a
 * config's values against it (type, bounds, choices) before the plugin runs;
 * the plugin's check() callback then sees only well-typed, in-range values. */
struct lsh_param {
    const char *name;            /* the YAML key under params:                */
    enum lsh_param_type type;
    const char *doc;             /* one line, shown by `lshlab strategies`    */
    /* default value: def_int for BOOL (0/1) and INT, def_real for REAL,
     * def_choice for CHOICE; INT_LIST defaults to the empty list.            */
    int64_t def_int;
    double def_real;
    const char *def_choice;
    double min, max;             /* inclusive bounds for INT, REAL, INT_LIST  */
    const char *const *choices;  /* CHOICE only                               */
};

/* A validated parameter value (same order as the plugin's params[]). */
struct lsh_param_value {
    enum lsh_param_type type;
    int64_t i;                   /* BOOL (0/1) and INT                        */
    double r;                    /* REAL                                      */
    const char *choice;          /* CHOICE: points into the plugin's choices[]*/
    const int64_t *list;         /* INT_LIST: borrowed, valid during the call */
    size_t list_len;
};

/* ---- host services ------------------------------------------------------- */

struct lsh_rng; /* opaque random stream, owned by the host */

struct lsh_host {
    uint32_t abi_minor;                              /* the host's minor       */
    double (*normal)(struct lsh_rng *rng);           /* N(0, 1)                */
    double (*uniform)(struct lsh_rng *rng);          /* [0, 1)                 */
    uint64_t (*uniform_int)(struct lsh_rng *rng, uint64_t n); /* [0, n), n>0   */
    /* C[m x n] = A[m x k] * B[k x n] (+ C when accumulate), row-major, double.
     * Uses the host's BLAS; safe to call from any thread. */
    void (*gemm)(size_t m, size_t n, size_t k, const double *a, const double *b,
                 double *c, int accumulate);
    /* C[m x n] = A[m x k] * B[n x k]^T, row-major (both operands row-wise). */
    void (*gemm_nt)(size_t m, size_t n, size_t k, const double *a, const double *b,
                    double *c);
};

/* What one round of a strategy is told.  The struct itself is borrowed for
 * the call only (copy what you need into your state), but round->rng and
 * round->host stay valid until fini returns, so fit() may keep drawing. */
struct lsh_round {
    size_t d;                            /* dimension of the rows             */
    uint32_t n_buckets;                  /* B: buckets are in [0, B)          */
    uint32_t round;                      /* h, 0-based                        */
    uint64_t seed;                       /* the round's seed (SPEC 7)         */
    size_t n_rows;                       /* rows that fit() will see (check:  */
                                         /* rows of the dataset to be hashed) */
    const struct lsh_param_value *params;/* in the order of strategy->params  */
    size_t n_params;
    struct lsh_rng *rng;                 /* seeded from seed; NULL in check() */
    const struct lsh_host *host;
};

/* Hash parameters exported for the results file (dump: hash_params). */
struct lsh_sink {
    void *ctx;
    /* Store a rows x cols row-major array under `name` (copied).  name: 1 to
     * 64 characters of [A-Za-z0-9_.-], one array per name (a name given
     * twice fails the round); the round is appended by the host.
     * Returns 0, or < 0 when it refused the array or could not store it:
     * then stop and return that value. */
    int (*array)(struct lsh_sink *sink, const char *name, const double *data,
                 size_t rows, size_t cols);
};

/* ---- the strategy -------------------------------------------------------- */

struct lsh_strategy {
    uint32_t abi_major, abi_minor;   /* LSH_STRATEGY_ABI_MAJOR / _MINOR         */
    const char *name;                /* the YAML `name:`; [a-z0-9_]+, unique    */
    const char *summary;             /* one line for `lshlab strategies`        */
    const struct lsh_param *params;  /* terminated by type LSH_PARAM_END; may   */
                                     /* be NULL when there are none             */
    size_t state_size;               /* bytes the host allocates per round      */

    /* Optional (NULL: everything the schema allows is accepted).  Called at
     * validation time, before any work, with round->rng == NULL and seed 0:
     * refuse n_buckets / d / n_rows / parameter combinations the rule cannot
     * hash, saying why in err.  Returns 0 or LSH_STRATEGY_EINVAL. */
    int (*check)(const struct lsh_round *round, struct lsh_strategy_error *err);

    /* Required.  Set up one round: draw the hash function from round->rng. */
    int (*init)(void *state, const struct lsh_round *round,
                struct lsh_strategy_error *err);

    /* Optional (NULL when the rule is data-independent).  Fit on x, n rows of
     * d doubles, row-major: the host's copy, valid for this call only (do not
     * keep the pointer).  Called once, after init. */
    int (*fit)(void *state, const double *x, size_t n, size_t d,
               struct lsh_strategy_error *err);

    /* Required, unless the strategy has assign (ABI 1.1), which the host
     * then calls instead (hash may be NULL).  bucket[i] = b(x_i) in [0, n_buckets) for the n rows of x
     * (copies, valid for this call only; the host currently hands out batches
     * of up to 1024 rows).  Must be a pure function of the state and the row
     * (no randomness here): any batch split gives the same buckets.  A bucket
     * >= n_buckets fails the round, and so does a row left unwritten (the
     * host sets every entry to UINT32_MAX first).  Write bucket[0 .. n-1]
     * only: the arrays
     * are sized for this batch, and a write past them is a memory error the
     * host cannot catch. */
    int (*hash)(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err);

    /* Optional.  Write the round's hash parameters (rotations, hyperplanes,
     * centroids) to sink.  The host may call it more than once per round (it
     * checks the names before it writes anything): give the same arrays. */
    int (*export_params)(void *state, struct lsh_sink *sink);

    /* Required.  Release what init/fit allocated (not the state itself). */
    void (*fini)(void *state);

    /* ---- ABI 1.1 (read by the host only when abi_minor >= 1) ---- */

    /* Optional.  Assign whole sets at once: for rules that need every row
     * (equal-size buckets), treat queries and keys differently (asymmetric
     * transforms), or use positions.  When present the host calls it, once per
     * round after fit, instead of hash:
     *   q:  n_q query rows of d doubles, row-major, in position order;
     *   k:  n_k key rows (== q, the same pointer, when keys are shared; the
     *       normalised rows when keys are shared_normalized);
     *   bq: n_q query buckets to write, bk: n_k key buckets to write.
     * Both are always written, and key buckets are always taken from bk, even
     * when k == q (an asymmetric rule gives a key another bucket than the same
     * row as a query).  Row i of q and row i of k are position i.  As with
     * hash(): the rows are the host's copies, valid for this call only; every
     * bucket must be < n_buckets, and written (else the round fails); no randomness beyond
     * what init and fit drew from round->rng; write bq[0 .. n_q-1] and
     * bk[0 .. n_k-1] only.  In the collision experiment the pair (x, y) is
     * hashed as query x and key y. */
    int (*assign)(void *state, const double *q, size_t n_q, const double *k, size_t n_k,
                  size_t d, uint32_t *bq, uint32_t *bk, struct lsh_strategy_error *err);

    /* Optional.  The closed-form probability that two vectors whose cosine is
     * cos_theta (in [-1, 1]) share a bucket in one round with these
     * parameters: round->d, round->n_buckets and round->params are set as in
     * check() (round->rng == NULL, seed 0, round 0).  Return NaN where the
     * rule has no closed form for these parameters.  Must be a pure function
     * of its arguments and thread-safe: the host calls it from several
     * threads at once, once per candidate pair, for `combine: importance`
     * (and once per angle for the collision experiment's law column).  A
     * value outside [0, 1] fails the point. */
    double (*collision_prob)(const struct lsh_round *round, double cos_theta);
};

/* The one symbol a plugin exports. */
typedef const struct lsh_strategy *(*lsh_strategy_entry_fn)(void);
#define LSH_STRATEGY_ENTRY_SYMBOL "lsh_strategy_entry"

#ifdef __cplusplus
}
#endif
#endif /* LSHLAB_STRATEGY_H */
