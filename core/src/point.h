/* point.h - the types of one sweep point: its key, its status, its mode
 * setting and its metrics record (types only, no functions).
 *
 * plan builds keys and mode settings, eval fills metrics, results writes
 * them: each includes this header, and none of them includes another. */
#ifndef LSH_POINT_H
#define LSH_POINT_H

#include <stdint.h>

enum lsh_mode { LSH_MODE_BUCKET, LSH_MODE_CHUNKED };
enum lsh_window { LSH_WINDOW_ALL, LSH_WINDOW_SAME_BUCKET };
enum lsh_combine { LSH_COMBINE_UNION, LSH_COMBINE_ROUNDS, LSH_COMBINE_IMPORTANCE };

enum lsh_point_status { LSH_POINT_OK, LSH_POINT_SKIPPED, LSH_POINT_FAILED };

/* One mode setting of a pass: how the rounds' buckets become S_i^h (SPEC 3)
 * and the candidate rule that makes S_i of them (SPEC 13). */
struct lsh_mode_opts {
    enum lsh_mode mode;
    uint32_t chunk_size;     /* chunked */
    uint32_t look_back;      /* chunked */
    enum lsh_window window;  /* chunked */
    uint32_t min_collisions; /* t >= 1: j joins S_i when in S_i^h for >= t rounds */
    uint32_t sink;           /* keys j < sink join every S_i */
    uint32_t local;          /* keys with |i - j| < local join S_i */
};

/* The key of one sweep point, as written to /runs. */
struct lsh_point_key {
    uint64_t point_id;            /* index in the config's expansion order */
    const char *dataset;
    int32_t layer, head;          /* the unit (SPEC 11.2); -1: the dataset has no such axis */
    const char *strategy, *params;
    enum lsh_mode mode;
    uint32_t chunk_size, look_back; /* 0 in bucket mode */
    enum lsh_window window;       /* written as "n/a" in bucket mode */
    enum lsh_combine combine;
    uint32_t n_hashes, n_buckets, repeat;
    uint32_t min_collisions, sink, local; /* the candidate rule (SPEC 13): 1, 0, 0 by default */
    uint64_t seed;                /* the point seed (SPEC 7) */
};

/* Standard errors of the metrics when the reference is a sample of rows
 * (SPEC 6 reference_rows); 0 when every row is evaluated. */
struct lsh_metric_se {
    double out_rel_err, attn_rel_err, mass_recall, kl, empty_rows, gram_recovery;
    double *topk_recall;     /* n_topk values (owned by caller) */
    double density, mean_candidates, bucket_max, bucket_entropy;
    double oracle_mass_recall, oracle_out_rel_err; /* attention.oracle only */
};

/* The metric columns of SPEC 5 for one point. */
struct lsh_metrics {
    double out_rel_err, attn_rel_err, mass_recall, kl;
    uint64_t empty_rows;
    double gram_recovery;
    double *topk_recall;     /* n_topk values, in attn->topk order (owned by caller) */
    double density, mean_candidates, bucket_max, bucket_entropy;
    /* the budget-matched oracle (SPEC 13), filled when attention.oracle is
     * on: the best |S_i| keys of each row, their mass and output error */
    double oracle_mass_recall, oracle_out_rel_err;
    double hash_seconds, eval_seconds;
    double oracle_seconds;   /* this point's share of the oracle's time (0 when off) */
    struct lsh_metric_se *se;  /* NULL, or where lsh_eval_pass writes the errors */
    unsigned warnings;       /* LSH_WARN_* bits: a 0/0 ratio written as 0 */
};

enum {
    LSH_WARN_OUT_ZERO = 1u << 0,    /* ||O||_F = 0 */
    LSH_WARN_ATTN_ZERO = 1u << 1,   /* ||A||_F = 0 */
    LSH_WARN_GRAM_ZERO = 1u << 2,   /* no off-diagonal Gram energy */
    LSH_WARN_ENTROPY_B1 = 1u << 3   /* B = 1: entropy / log B is 0/0 */
};

#endif
