/* dataset.h - Q, K, V for one dataset (SPEC 6, 11), generated from seeds or
 * read from HDF5 or .npy files, one (layer, head) problem at a time.
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

/* One attention problem of a dataset (SPEC 11.2): a layer and a head, each
 * -1 when the dataset has no such axis (generated data, a rank-2 matrix). */
struct lsh_dataset_unit {
    int32_t layer, head;
};

/* What a probe finds out about a dataset before any work: the shape of each
 * of its problems (the same for every (layer, head)), and which problems the
 * selection (`layers:`, `heads:`) asks for, in run order: layer-major, each
 * list ascending as the config gives it.
 *   n_layers x n_heads problems: layers[a], heads[b].  A dataset without a
 *   layer axis has n_layers = 1, layers[0] = -1 (heads likewise).
 *   src_layers, src_heads, kv_heads: what the source holds (0 when it has no
 *   such axis); query head h reads key/value head h * kv_heads / src_heads
 *   (grouped-query attention; kv_heads == src_heads without it).
 *   dtype: the element type of Q as stored ("float16", "float32", "float64";
 *   "float64" for generated data); source: the file (as resolved), the
 *   template, or "generated" -- for the /datasets attributes. */
struct lsh_dataset_layout {
    size_t n, d, d_v;
    size_t n_layers, n_heads;
    int32_t *layers, *heads;      /* owned */
    size_t src_layers, src_heads, kv_heads;
    char dtype[16];
    char *source;                 /* owned */
};
void lsh_dataset_layout_free(struct lsh_dataset_layout *l);

struct lsh_dataset {
    const struct lsh_dataset_spec *spec; /* borrowed from the config */
    struct lsh_dataset_unit unit;
    size_t n, d, d_v;
    uint64_t seed;     /* lsh_seed_str(config seed, name): the same for every
                          unit (a missing V is drawn from it mixed with the unit) */
    double *q;         /* n x d, owned */
    double *k;         /* n x d, owned; NULL unless keys are separate */
    double *v;         /* n x d_v, owned */
};

/* Shapes of a dataset spec, validated before any work (by `validate` and by
 * `run` alike): n and d of Q, and d_v of V (d when V is absent).
 *
 * Every kind: n, d, d_v (and clusters) are at least 1, and the data's bytes
 * (Q, V, the centres) are few enough that no size product a caller forms
 * (n*d, 2n*d, n*d_v, clusters*d, times sizeof(double)) can wrap in size_t:
 * after a successful probe or make, those products are safe.  Errors are
 * LSH_ECONFIG for generated kinds.
 *
 * hdf5 and npy (SPEC 11.1), checked in this order, each refusal LSH_EDATA
 * or LSH_EIO naming the file (and the path in it), what it found and what
 * is allowed:
 *  - the file (hdf5), or each .npy file (relative to the config's folder),
 *    is a regular file (a FIFO, device or folder is refused without being
 *    opened, so nothing blocks); an HDF5 file, or a .npy file of version
 *    1.0-3.0 in C order whose size matches its header exactly (npy.h);
 *  - Q (K, V) each name an array of rank 2 [n, d], 3 [heads, n, d] or 4
 *    [layers, heads, n, d], or a template holding {layer} and/or {head}
 *    whose expansions are rank-2 arrays (`all` counts an axis from 0 up to
 *    the first expansion that does not exist: layers at head 0, heads at
 *    the first selected layer; every selected expansion must then exist and be n x d);
 *    elements IEEE float16, float32 or float64 in either byte order
 *    (anything else is named); non-empty; HDF5 values stored in the file
 *    itself (not in external raw files or a virtual dataset's sources,
 *    which could block), with every filter available;
 *  - K and V have Q's axes and layers, K Q's n and d, V Q's n; K and V may
 *    have fewer heads than Q (a divisor of Q's; K's and V's agree);
 *  - `layers:` / `heads:` name indices the source has (an error naming the
 *    index and how many there are), at most LSH_UNITS_MAX problems;
 *  - one problem's data fits this machine's physical memory (Q and V as
 *    float64); a file declaring more is refused before any value is read;
 *  - every value of every selected slab (Q's, and the K/V heads they read)
 *    is finite, an error naming layer, head, row and column otherwise: for
 *    HDF5 at the cost of the stored data, not of the declared shape
 *    (unwritten parts read as the fill value the file set, checked once,
 *    or as 0 when it set none or said "never"; of a partly written chunked
 *    dataset only the written chunks are read), a block of rows at a time.
 * Whether the data also fits --memory-limit with its workspaces is the
 * plan's question, not this one. */
int lsh_dataset_probe(const struct lsh_dataset_spec *spec, const char *config_path,
                      struct lsh_dataset_layout *out, struct lsh_error *err);

/* Make the data of one unit of spec (one the probe listed; {-1, -1} for a
 * dataset without axes; any other is LSH_EINVAL).  separate: K is
 * generated/loaded too (keys: separate).  Only that unit is read (an HDF5
 * hyperslab, or the .npy bytes at its offset); query head h reads key/value
 * head h * kv_heads / src_heads.  A missing V is drawn from
 * lsh_seed_unit(lsh_seed_str(ds->seed, "v"), layer, head) (without axes:
 * the stream of format version 1).  Checks the sizes again (with K counted
 * when separate) before allocating, so it holds without a probe; a loaded
 * matrix is checked finite as it is read (the file may have changed since
 * the probe).  A clustered row with a value beyond float64 (norm and
 * spread too large together) is refused (LSH_ECONFIG), never written as
 * Inf.  *out is owned by the caller. */
int lsh_dataset_make(const struct lsh_dataset_spec *spec, const char *config_path,
                     uint64_t config_seed, int separate, struct lsh_dataset_unit unit,
                     struct lsh_dataset **out, struct lsh_error *err);

/* lsh_dataset_make, and (hdf5, npy) the files must still hold what the
 * probe found (probed: its layout; NULL: no check): n, d, d_v, and the
 * layers, heads and key/value heads of the source.  A file rewritten with
 * another shape since the probe is LSH_EDATA naming both shapes, not read
 * as it now is (the run's points were planned and checked for the old
 * one). */
int lsh_dataset_make_as(const struct lsh_dataset_spec *spec, const char *config_path,
                        uint64_t config_seed, int separate, struct lsh_dataset_unit unit,
                        const struct lsh_dataset_layout *probed, struct lsh_dataset **out,
                        struct lsh_error *err);
void lsh_dataset_free(struct lsh_dataset *ds);

/* The path an hdf5 dataset's `file` (or an npy dataset's q, k, v) names: as
 * given when absolute, else relative to the folder of config_path.
 * malloc'd; NULL when out of memory. */
char *lsh_dataset_file_path(const char *file, const char *config_path);

/* visit(ctx, path, named) for every existing file the dataset spec reads:
 * an hdf5 dataset's file; an npy dataset's q, k, v, or every expansion of a
 * template over its selection (`all`: indices from 0 up to the first that
 * does not exist).  named is the file as the config names it (a template
 * expanded), path the same resolved as lsh_dataset_file_path does.  Returns
 * the first nonzero visit result, -1 when out of memory, else 0. */
int lsh_dataset_each_file(const struct lsh_dataset_spec *spec, const char *config_path,
                          int (*visit)(void *ctx, const char *path, const char *named),
                          void *ctx);

/* What lsh_dataset_make takes at its peak for spec with these shapes (from
 * lsh_dataset_probe, per unit): Q, V, K when separate, a generator's cluster
 * centres, HDF5's conversion buffers; SIZE_MAX when that cannot be
 * addressed. */
size_t lsh_dataset_bytes(const struct lsh_dataset_spec *spec, size_t n, size_t d, size_t d_v,
                         int separate);

#endif
