/* fuzz_unit_check.h - what both data fuzz targets (fuzz_hdf5, fuzz_npy) ask
 * of a unit that lsh_dataset_make accepted: the probed shape and only
 * finite values.  Aborts otherwise, so libFuzzer reports the input. */
#ifndef LSH_FUZZ_UNIT_CHECK_H
#define LSH_FUZZ_UNIT_CHECK_H

#include <math.h>
#include <stdlib.h>

#include "dataset.h"

static inline void fuzz_check_unit(const struct lsh_dataset *ds,
                                   const struct lsh_dataset_layout *lay)
{
    if (ds->n != lay->n || ds->d != lay->d || ds->d_v != lay->d_v)
        abort();
    for (size_t t = 0; t < ds->n * ds->d; t++)
        if (!isfinite(ds->q[t]) || (ds->k && !isfinite(ds->k[t])))
            abort();
    for (size_t t = 0; t < ds->n * ds->d_v; t++)
        if (!isfinite(ds->v[t]))
            abort();
}

#endif
