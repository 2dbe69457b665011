/* fastexp.c - the array form of lsh_exp, cloned for wider vectors.  Every
 * clone does the same element-wise IEEE operations (no FMA contraction under
 * -std=c11), so the bits are the same whichever runs. */
#include "fastexp.h"

#include <stddef.h>

/* The clones are static behind a plain entry point: clang 14 names the ifunc
 * of an external target_clones function "NAME.ifunc", so calls from other
 * files to NAME did not link. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void exp_affine(double *x, size_t n, double scale, double shift)
{
    for (size_t t = 0; t < n; t++)
        x[t] = lsh_exp(scale * x[t] - shift);
}

void lsh_exp_affine(double *x, size_t n, double scale, double shift)
{
    exp_affine(x, n, scale, shift);
}
