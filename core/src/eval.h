/* eval.h - candidate sets and metrics of sweep points (SPEC 3-5).
 *
 * One pass takes the rounds of a hash group (buckets of its largest
 * n_hashes), one mode setting (mode, chunk_size, look_back, window) and
 * evaluates every n_hashes prefix and every combine at once, by one of two
 * paths with the same results:
 *  - the row path: for row i the union of S_i^h grows round by round (a
 *    per-thread marker array), and at each prefix H the row's contribution
 *    to every metric is added;
 *  - the tile path (combine union alone): round by round, GEMMs over tiles
 *    of one bucket's rows x keys (bucket mode) or one chunk's queries x its
 *    window's keys (chunked mode), each pair counted in the first round that
 *    makes it a candidate; per-row running sums give every prefix.
 * Work is proportional to the candidate pairs, not to n^2.  Rows are cut
 * into fixed blocks whose partial sums are reduced in block order, so the
 * metrics are bit-identical for every thread count. */
#ifndef LSH_EVAL_H
#define LSH_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "point.h"
#include "reference.h"

/* Buckets of H rounds of one hash group. */
struct lsh_rounds {
    size_t n;            /* rows */
    uint32_t n_hashes;   /* H (the group's largest) */
    uint32_t n_buckets;  /* B */
    const uint32_t *bq;  /* H x n: round h, query (row of Q) i -> bq[h*n + i] */
    const uint32_t *bk;  /* H x n: key buckets; == bq when keys are not separate */
};

/* Optional per-row output (dump: rows): mass_i = sum_{j in S_i} A_ij and
 * |S_i| of every evaluated row r, for every prefix p, at [p * m + r]. */
struct lsh_row_dump {
    double *mass;            /* n_prefix x m values, caller-owned */
    uint32_t *candidates;    /* n_prefix x m values, caller-owned */
};

/* Evaluate prefixes[0..n_prefix) (ascending, each <= rounds->n_hashes) x
 * combines[0..n_combine) with one mode setting.  out[p * n_combine + c]
 * receives the metrics (topk_recall arrays provided by the caller);
 * bucket_max/bucket_entropy and eval_seconds are filled, hash_seconds not.
 * rows_dump may be NULL. */
int lsh_eval_pass(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                  const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                  size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                  unsigned threads, struct lsh_metrics *out, struct lsh_row_dump *rows_dump,
                  struct lsh_error *err);

/* Does a pass with this mode and these combines take the tile path (union
 * alone: candidate scores by GEMM over bucket blocks or chunk windows),
 * rather than the row path (which reads the reference's score cache if it
 * has one)? */
int lsh_eval_uses_tiles(const struct lsh_mode_opts *mode, const enum lsh_combine *combines,
                        size_t n_combine);

/* bucket_max and bucket_entropy of the query buckets of rounds [0, H). */
void lsh_bucket_stats(const struct lsh_rounds *rounds, uint32_t H, double *bucket_max,
                      double *bucket_entropy, unsigned *warnings);

#endif
