/* linalg.h - the few dense kernels lshlab needs, on the CBLAS it is linked
 * against (OpenBLAS by default).  Row-major doubles throughout. */
#ifndef LSH_LINALG_H
#define LSH_LINALG_H

#include <stddef.h>
#include <stdint.h>

/* C[m x n] = A[m x k] B[k x n] (+ C when accumulate). */
void lsh_gemm(size_t m, size_t n, size_t k, const double *a, const double *b, double *c,
              int accumulate);

/* C[m x n] = A[m x k] B[n x k]^T, with ldc the row stride of C (>= n). */
void lsh_gemm_nt_ld(size_t m, size_t n, size_t k, const double *a, const double *b,
                    double *c, size_t ldc);
void lsh_gemm_nt(size_t m, size_t n, size_t k, const double *a, const double *b, double *c);

/* count doubles on a 64-byte boundary (zeroed when zero is non-zero), NULL
 * when out of memory or when count doubles cannot be addressed; free() them.
 * lshlab_fma_dots runs 12-19% faster when its y operand and y's rows (a
 * multiple of 8 doubles apart) start on cache lines: no load then straddles
 * two (measured on the Intel Xeon of 2026-12-03). */
double *lsh_alloc_doubles(size_t count, int zero);

/* n rounded up to a multiple of 8: whole vectors for lshlab_fma_dots. */
static inline size_t lsh_pad8(size_t n)
{
    return (n + 7) / 8 * 8;
}

/* kt[e stride + u] = k[row_u d + e] for u < nk, e < d (row_u = rows[u], or u
 * when rows is NULL), and 0 for u in [nk, lsh_pad8(nk)): nk rows of k
 * transposed for lshlab_fma_dots (finite padding, which it ignores).  A copy,
 * so the same values whatever the CPU; 8 x 8 blocks go through AVX-512
 * registers where there are some. */
void lsh_gather_transposed(size_t nk, size_t d, const double *k, const uint32_t *rows,
                           size_t stride, double *kt);

/* x . y over d entries as one chain of fused multiply-adds, e = 0 .. d-1 in
 * order from 0: the bits of an entry of lshlab_fma_dots (lshlab/fmadots.h). */
double lsh_chain_dot(size_t d, const double *x, const double *y);

/* out[u] = lsh_chain_dot(d, x, k + row_u d) for u < nk (row_u = rows[u], or
 * u when rows is NULL), with the same bits: the scores of a row's keys, for
 * the row path without a cache and for the oracle. */
void lsh_chain_dots(size_t d, const double *x, const double *k, const uint32_t *rows,
                    size_t nk, double *out);

/* Keep the BLAS single-threaded: lshlab's own threads do the parallel work
 * and OpenBLAS threads would fight them (and break -j determinism). */
void lsh_blas_single_thread(void);

/* When OpenBLAS did not recognise this CPU and fell back to its slowest
 * (Prescott) kernels, set OPENBLAS_CORETYPE to the best core the CPU
 * supports and re-execute the program with argv (main's, unchanged).
 * Returns when nothing needs doing or the re-exec failed.  Call first in
 * main, before any thread starts. */
void lsh_blas_pick_kernels(char **argv);

/* OpenBLAS's kernel set ("SkylakeX", "Haswell", ...), or "" for another BLAS. */
const char *lsh_blas_core(void);

/* Name of the CBLAS library the process really calls (for provenance). */
const char *lsh_blas_name(void);

#endif
