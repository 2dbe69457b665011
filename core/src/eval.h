/* eval.h - candidate sets and metrics of sweep points (SPEC 3-5).
 *
 * One pass takes the rounds of a hash group (buckets of its largest
 * n_hashes), one mode setting (mode, chunk_size, look_back, window) and
 * evaluates every n_hashes prefix and every combine at once, by one of two
 * paths with the same results:
 *  - the row path (a pass with combine importance): for row i the union of
 *    S_i^h grows round by round (a per-thread marker array), and at each
 *    prefix H the row's contribution to every metric is added;
 *  - the tile path (combines union and rounds, any candidate rule): round by
 *    round, GEMMs over tiles of one bucket's rows x keys (bucket mode) or one
 *    chunk's queries x its window's keys (chunked mode), each pair counted in
 *    the round that makes it a candidate (its first, or its t-th with
 *    min_collisions t; rounds counts every collision); per-row running sums
 *    give every prefix.
 * Work is proportional to the candidate pairs, not to n^2.  Rows are cut
 * into fixed blocks whose partial sums are reduced in block order, so the
 * metrics are bit-identical for every thread count. */
#ifndef LSH_EVAL_H
#define LSH_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "host.h"
#include "memsize.h"
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

/* What a pass computes beyond SPEC 5's columns. */
struct lsh_oracle_table; /* oracle.h */

struct lsh_eval_opts {
    /* combine importance (SPEC 14): the strategy's collision law, whose
     * p_ij = law(c_ij) gives u_ij = P(Binomial(H, p_ij) >= min_collisions);
     * NULL when no combine is importance.  A law value outside [0, 1] at
     * some pair fails the pass with LSH_EPLUGIN (err names the pair). */
    const struct lsh_host_law *law;
    int oracle;    /* fill oracle_mass_recall and oracle_out_rel_err (SPEC 13) */
    /* with the oracle: the unit's oracle table (lsh_oracle_table_alloc of
     * this reference), filled by the first pass and read by the later ones
     * (the same bits as without it), or NULL */
    struct lsh_oracle_table *oracle_table;
};

/* Evaluate prefixes[0..n_prefix) (ascending, each <= rounds->n_hashes) x
 * combines[0..n_combine) with one mode setting (its candidate rule:
 * min_collisions, sink and local of SPEC 13).  out[p * n_combine + c]
 * receives the metrics (topk_recall arrays provided by the caller);
 * bucket_max/bucket_entropy, eval_seconds and oracle_seconds are filled,
 * hash_seconds not.  opts and rows_dump may be NULL.  combine rounds comes
 * only with min_collisions 1, sink 0 and local 0 (validation refuses the
 * rest), and importance only in bucket mode with opts->law set. */
int lsh_eval_pass(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                  const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                  size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                  const struct lsh_eval_opts *opts, unsigned threads, struct lsh_metrics *out,
                  struct lsh_row_dump *rows_dump, struct lsh_error *err);

/* ---- a pass in parts (SPEC 15: rows spread over processes) ----------------
 * lsh_eval_pass is lsh_eval_pass_part over [0, m) followed by
 * lsh_eval_finish.  A part covers evaluated rows [r0, r1) of the reference
 * (r0 a multiple of lsh_slice_rows(), r1 one too or m), for which ref holds
 * the reference (lsh_reference_compute_part); rounds hold every row.  Its
 * partial sums are per row block, in row order: the parts of a pass laid
 * end to end in row order are exactly the partials of the whole pass, so
 * lsh_eval_finish gives the same bits from any cut into parts. */

/* Doubles of partial sums of a part of `rows` evaluated rows (a multiple of
 * lsh_slice_rows(), or the tail).  0 when the shape cannot be addressed. */
size_t lsh_eval_part_doubles(size_t rows, size_t n_topk, size_t n_prefix, size_t n_combine,
                             int oracle);

/* Timings of a part, for eval_seconds and oracle_seconds (not metrics). */
#define LSH_EVAL_SECONDS(n_prefix) (2 * (n_prefix) + 2)

/* Compute the partials of rows [r0, r1) into partials
 * (lsh_eval_part_doubles(r1 - r0, ...) values) and the part's timings into
 * seconds (LSH_EVAL_SECONDS(n_prefix) values).  rows_dump, when given, is
 * written at the part's rows only.  Failures as lsh_eval_pass: LSH_EDATA /
 * LSH_EPLUGIN name the first failing row block of the part. */
int lsh_eval_pass_part(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                       const struct lsh_mode_opts *mode, const uint32_t *prefixes,
                       size_t n_prefix, const enum lsh_combine *combines, size_t n_combine,
                       const struct lsh_eval_opts *opts, unsigned threads, size_t r0, size_t r1,
                       double *partials, double *seconds, struct lsh_row_dump *rows_dump,
                       struct lsh_error *err);

/* The metrics of a whole pass from the partials of all its m rows (every
 * part's, end to end in row order) and one part's timings: fills out as
 * lsh_eval_pass does (bucket statistics from rounds).  ref gives m, the
 * sampled rows and the attention problem; its per-row arrays are not read. */
int lsh_eval_finish(const struct lsh_reference *ref, const struct lsh_rounds *rounds,
                    const uint32_t *prefixes, size_t n_prefix, size_t n_combine,
                    const struct lsh_eval_opts *opts, const double *partials,
                    const double *seconds, struct lsh_metrics *out, struct lsh_error *err);

/* Does a pass with this mode and these combines over h_max rounds take the
 * tile path (candidate scores by GEMM over bucket blocks or chunk windows:
 * combines union and rounds, with any candidate rule, h_max <= 255 when
 * rounds or min_collisions > 1 count a pair's rounds), rather than the row
 * path (combine importance; it reads the reference's score cache if it has
 * one)?  The environment
 * variable LSHLAB_TEST_ROW_PATH=1 makes it 0 (for tests).
 * lsh_eval_pass refuses combine rounds with any other rule (LSH_EINVAL), and
 * fails an importance pass with LSH_EPLUGIN (a law value outside [0, 1]) or
 * LSH_EDATA (a candidate pair whose u is 0), err naming strategy and pair. */
int lsh_eval_uses_tiles(const struct lsh_mode_opts *mode, const enum lsh_combine *combines,
                        size_t n_combine, uint32_t h_max);

/* The shape of a pass, for its memory figure. */
struct lsh_eval_shape {
    size_t n, m, d, d_v, n_topk;   /* rows, evaluated rows, widths, topk values */
    size_t kmax;                   /* the largest topk value (at most n) */
    uint32_t h_max, n_buckets;     /* the hash group's rounds and buckets */
    size_t n_prefix, n_combine;
    int separate;                  /* key buckets apart from query buckets */
    int importance;                /* some combine is importance */
    int rounds;                    /* some combine is rounds */
    int oracle;                    /* attention.oracle */
};

/* What lsh_eval_pass allocates (per-round indexes, workspaces, partial
 * sums; tiles: the tile path's, else the row path's), saturating at
 * SIZE_MAX.  Excludes the caller's outputs. */
struct lsh_bytes lsh_eval_bytes(const struct lsh_eval_shape *s, const struct lsh_mode_opts *mode,
                                int tiles);

/* Rounding lets a ratio that is at most 1 come out a few ulps above it (two
 * roundings of the same scores); lsh_eval_pass sets excursions up to this
 * far outside a metric's range to the range's end, and lsh_metrics_check
 * refuses anything further. */
#define LSH_METRIC_TOL 1e-5

/* Is mt a record that may be written as ok: every value finite, recalls,
 * density and bucket_entropy in [0, 1], kl and the errors >= 0, standard
 * errors finite and >= 0?  Returns 0, or LSH_EDATA with the first offending
 * metric and its value in why. */
int lsh_metrics_check(const struct lsh_metrics *mt, size_t n_topk, char *why, size_t why_size);

/* bucket_max and bucket_entropy of the query buckets of rounds [0, H). */
void lsh_bucket_stats(const struct lsh_rounds *rounds, uint32_t H, double *bucket_max,
                      double *bucket_entropy, unsigned *warnings);

#endif
