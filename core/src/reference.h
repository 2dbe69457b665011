/* reference.h - full attention of one dataset as per-row summaries (SPEC 4-5),
 * computed once and shared by every point on that dataset.
 *
 * No n x n matrix is kept (unless the score cache is asked for): a
 * flash-attention-style pass over fixed blocks of rows and chunks of keys
 * (two GEMMs per block and chunk, an online softmax in between, whose exps
 * stay <= 1) leaves per row i: lse_i = LSE_{j in U_i} s_ij, sum_j A_ij^2,
 * O_i, sum_{j in U_i, j != i} G_ij^2, |U_i| and the top-K keys, in
 * O(n (d + d_v + K)) memory.  Candidate scores are recomputed later from Q
 * and K (lsh_attn_raw), or read from the cache.
 */
#ifndef LSH_REFERENCE_H
#define LSH_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "memsize.h"

/* The attention problem of one dataset: what SPEC 3-4 define, resolved. */
struct lsh_attn {
    size_t n, d, d_v;
    const double *q;      /* n x d, borrowed */
    const double *k;      /* n x d effective keys (Q, Q normalised, or K), borrowed */
    const double *v;      /* n x d_v, borrowed */
    const double *gnorm;  /* NULL, or n factors: G_ij = (q_i . k_j) * gnorm[j]
                             (shared_normalized: ||q_j||, since G = Q Q^T) */
    double scale;         /* s_ij = scale * q_i . k_j */
    int exclude_self, causal;
    size_t n_topk;
    const uint32_t *topk; /* ascending */
};

/* Is key j in U_i?  (SPEC 3; the U_i = {i} fallback is handled by callers
 * through lsh_attn_u_fallback.) */
static inline int lsh_attn_allowed(const struct lsh_attn *a, size_t i, size_t j)
{
    return !(a->exclude_self && j == i) && !(a->causal && j > i);
}

/* True when U_i would be empty and so is {i}. */
static inline int lsh_attn_u_fallback(const struct lsh_attn *a, size_t i)
{
    return a->exclude_self && (a->n == 1 || (a->causal && i == 0));
}

static inline int lsh_attn_in_u(const struct lsh_attn *a, size_t i, size_t j)
{
    return lsh_attn_u_fallback(a, i) ? j == i : lsh_attn_allowed(a, i, j);
}

/* q_i . k_j (unscaled). */
double lsh_attn_raw(const struct lsh_attn *a, size_t i, size_t j);

struct lsh_reference {
    const struct lsh_attn *attn;  /* borrowed */
    size_t m;                     /* rows evaluated */
    const size_t *rows;           /* m row indices ascending, or NULL: all n rows */
    size_t kmax;                  /* largest topk, at most n */
    /* per evaluated row r (row i = rows ? rows[r] : r): */
    double *lse;                  /* LSE_{j in U_i} s_ij */
    double *sum_a2;               /* sum_j A_ij^2 */
    double *gram_den;             /* sum_{j in U_i, j != i} G_ij^2 */
    uint32_t *u_count;            /* |U_i| */
    double *out;                  /* m x d_v: O_i */
    uint32_t *top;                /* m x kmax: best first (ties: smaller j);
                                     only the first min(kmax, |U_i|) are valid */
    double *raw;                  /* m x n cached q_i . k_j (row r at raw + r n, every
                                     key, also outside U_i), or NULL: candidate
                                     scores are recomputed */
    size_t r0, r1;                /* the rows computed: [r0, r1) (0, m unless a part) */
    double seconds;               /* wall time of the pass */
    double flops;                 /* floating-point operations of the GEMMs it did
                                     (causal: keys past a row block's last row
                                     are skipped; the cache is filled with
                                     lsh_attn_raw's bits, not by a GEMM) */
};

/* Can the scores of a be formed exactly enough?  Refuses (LSH_EDATA, naming
 * `dataset`, the bound and what is allowed) a value that is not finite, and
 * scores whose rounding would show in the metrics: a dot product of d terms
 * is off by up to about d * 2^-53 * scale * max|q_i| * max|k_j|, which moves
 * every A_ij = exp(s_ij - lse_i) by as much relatively; that is kept below
 * 2^-20 (so scale * max|q| * max|k| <= 2^33 / d).  Also refuses Gram entries
 * and rows of V so large that their squares summed over the rows overflow,
 * and Gram entries so small that their squares underflow (all zero is fine).
 * Norms are computed without overflow.  Called by lsh_reference_compute. */
#define LSH_ATTN_SCORE_ERR 0x1p-20
int lsh_attn_check(const struct lsh_attn *a, const char *dataset, struct lsh_error *err);

/* shared_normalized keys: k_j = q_j / ||q_j|| and norm[j] = ||q_j|| for the n
 * rows of q (d doubles each); a zero row stays zero.  The norm is formed
 * without overflow or underflow (rows of norm 1e-300 or 1e200 still give
 * unit keys), and as sqrt(sum q^2) wherever that is exact enough. */
void lsh_attn_normalize_rows(const double *q, size_t n, size_t d, double *k, double *norm);

/* What lsh_reference_compute allocates for n keys and m evaluated rows with
 * top-k lists of kmax keys, without the score cache (which is
 * lsh_reference_cache_bytes), saturating at SIZE_MAX. */
struct lsh_bytes lsh_reference_bytes(size_t n, size_t m, size_t d, size_t d_v, size_t kmax);

/* Compute the reference on `threads` threads.  rows: NULL for all rows, else
 * m ascending row indices (copied).  The raw scores are kept (ref->raw) when
 * they fit in cache_bytes, so points look them up instead of recomputing
 * them.  The result is bit-identical for every thread count (fixed blocks,
 * each row summed in one fixed order), with or without the cache. */
int lsh_reference_compute(const struct lsh_attn *attn, const size_t *rows, size_t m,
                          unsigned threads, size_t cache_bytes, struct lsh_reference **out,
                          struct lsh_error *err);

/* Evaluated rows are cut into slices of LSH_SLICE_ROWS consecutive rows (the
 * last one shorter): the unit in which one dataset's rows are spread over
 * processes (SPEC 15).  Every per-row order of the evaluation (row blocks,
 * bucket-ordered rows, tiles) stays inside a slice, so the rows of a slice
 * give the same bits whichever process computes them, and a run of any
 * number of processes (1 included) sums the same block partials in the same
 * order.  A multiple of every row block size (reference and evaluation). */
#define LSH_SLICE_ROWS ((size_t)16384)

/* The slice length in force: LSH_SLICE_ROWS, unless the environment sets
 * LSHLAB_TEST_SLICE_ROWS (for tests: a multiple of 256, at least 256; other
 * values are ignored) so that small datasets have several slices.  Read once,
 * by the first call (any thread: pthread_once), so a test sets it with setenv
 * before anything of lshlab runs in the process (Criterion forks per test). */
size_t lsh_slice_rows(void);

/* Slices of m evaluated rows: ceil(m / lsh_slice_rows()), at least 1. */
size_t lsh_slice_count(size_t m);

/* lsh_reference_compute for evaluated rows [r0, r1) alone (r0 a multiple
 * of lsh_slice_rows(), r1 one too or m; r0 < r1 <= m).  The per-row arrays
 * still hold all m rows (those outside the part are zero); the part's rows
 * are bit-identical to a whole computation's.  The score cache, when kept,
 * holds the part's rows alone (ref->raw + (r - ref->r0) n); flops and
 * seconds are the part's.  lsh_reference_compute is the part [0, m). */
int lsh_reference_compute_part(const struct lsh_attn *attn, const size_t *rows, size_t m,
                               size_t r0, size_t r1, unsigned threads, size_t cache_bytes,
                               struct lsh_reference **out, struct lsh_error *err);

/* Bytes the score cache of m rows of n keys takes (SIZE_MAX: too many). */
size_t lsh_reference_cache_bytes(size_t m, size_t n);
void lsh_reference_free(struct lsh_reference *ref);

#endif
