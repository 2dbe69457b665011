/* dgemm.c - the DGEMM rate of this machine for the shapes of lshlab's
 * reference pass (a block of query rows against all keys, then the block's
 * attention against V), single-threaded BLAS, so the reference pass's
 * GFLOP/s can be quoted as a share of it.
 *   bench-dgemm [n] [d] [rows]     defaults: 4096 64 128 */
#include <stdio.h>
#include <stdlib.h>

#include "linalg.h"
#include "parallel.h"

int main(int argc, char **argv)
{
    lsh_blas_pick_kernels(argv); /* the kernels lshlab itself runs on */
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096;
    size_t d = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
    size_t rows = argc > 3 ? strtoul(argv[3], NULL, 10) : 128;
    lsh_blas_single_thread();
    double *q = malloc(rows * d * sizeof *q), *k = malloc(n * d * sizeof *k);
    double *s = malloc(rows * n * sizeof *s), *v = malloc(n * d * sizeof *v);
    double *o = malloc(rows * d * sizeof *o);
    if (!q || !k || !s || !v || !o)
        return 1;
    for (size_t t = 0; t < rows * d; t++)
        q[t] = (double)(t % 7) - 3.0;
    for (size_t t = 0; t < n * d; t++)
        k[t] = v[t] = (double)(t % 5) - 2.0;
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        size_t blocks = n / rows;
        double t0 = lsh_now();
        for (size_t b = 0; b < blocks; b++) {
            lsh_gemm_nt(rows, n, d, q, k, s);      /* scores of the block */
            lsh_gemm(rows, d, n, s, v, o, 0);      /* A V of the block */
        }
        double sec = lsh_now() - t0;
        double gflops = 2.0 * (double)blocks * rows * n * (2.0 * d) / sec * 1e-9;
        best = gflops > best ? gflops : best;
    }
    printf("dgemm %zu x %zu x %zu (nt) + %zu x %zu x %zu (nn), 1 thread: %.1f GFLOP/s (%s %s)\n",
           rows, n, d, rows, d, n, best, lsh_blas_name(), lsh_blas_core());
    free(q);
    free(k);
    free(s);
    free(v);
    free(o);
    return 0;
}
