/* dataset.h - Q, K, V for one dataset (SPEC 6), generated from seeds or read
 * from HDF5.
 *
 * Each matrix is drawn from its own stream, seeded by (config seed, dataset
 * name, matrix name), so that e.g. adding K never changes V.  Matrices are
 * row-major doubles.  NaN or Inf in a loaded matrix is an error.
 */
#ifndef LSH_DATASET_H
#define LSH_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

struct lsh_dataset {
    const struct lsh_dataset_spec *spec; /* borrowed from the config */
    size_t n, d, d_v;
    uint64_t seed;     /* lsh_seed_str(config seed, name) */
    double *q;         /* n x d, owned */
    double *k;         /* n x d, owned; NULL unless keys are separate */
    double *v;         /* n x d_v, owned */
};

/* Shapes of an hdf5 dataset spec, validated before any work: n and d of Q,
 * and d_v of V (d when V is absent).  Checks that the file and paths exist,
 * are rank 2, numeric, that K matches Q's shape and V has n rows, and reads
 * the values (a block of rows at a time) to refuse NaN and Inf. */
int lsh_dataset_probe(const struct lsh_dataset_spec *spec, const char *config_path,
                      size_t *n, size_t *d, size_t *d_v, struct lsh_error *err);

/* Make the data of spec.  separate: K is generated/loaded too (keys: separate). */
int lsh_dataset_make(const struct lsh_dataset_spec *spec, const char *config_path,
                     uint64_t config_seed, int separate, struct lsh_dataset **out,
                     struct lsh_error *err);
void lsh_dataset_free(struct lsh_dataset *ds);

/* What lsh_dataset_make takes at its peak for spec with these shapes (from
 * lsh_dataset_probe): Q, V, K when separate, a generator's cluster centres,
 * HDF5's conversion buffers; SIZE_MAX when that cannot be addressed. */
size_t lsh_dataset_bytes(const struct lsh_dataset_spec *spec, size_t n, size_t d, size_t d_v,
                         int separate);

#endif
