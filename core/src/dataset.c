/* dataset.c - generate Q, K, V from seeds, or read them from an HDF5 file. */
#include "dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "memsize.h"
#include "rng.h"

/* ---- generated data --------------------------------------------------------- */

static int fill_gaussian(double *x, size_t count, uint64_t seed)
{
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    if (!rng)
        return LSH_ENOMEM;
    for (size_t t = 0; t < count; t++)
        x[t] = lsh_rng_normal(rng);
    lsh_rng_free(rng);
    return 0;
}

/* Rows = norm * (centre[label] + spread * N(0, I/d)), label uniform. */
static int fill_clustered(double *x, size_t n, size_t d, const double *centres,
                          size_t clusters, double spread, double norm, uint64_t seed)
{
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    if (!rng)
        return LSH_ENOMEM;
    const double sd = spread / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        const double *c = centres + lsh_rng_uniform_int(rng, clusters) * d;
        for (size_t e = 0; e < d; e++)
            x[i * d + e] = norm * (c[e] + sd * lsh_rng_normal(rng));
    }
    lsh_rng_free(rng);
    return 0;
}

/* Centres uniform on the unit sphere: normalised Gaussian draws. */
static int make_centres(double *c, size_t clusters, size_t d, uint64_t seed)
{
    int rc = fill_gaussian(c, clusters * d, seed);
    for (size_t k = 0; !rc && k < clusters; k++) {
        double s = 0.0;
        for (size_t e = 0; e < d; e++)
            s += c[k * d + e] * c[k * d + e];
        s = sqrt(s);
        for (size_t e = 0; e < d && s > 0.0; e++)
            c[k * d + e] /= s;
    }
    return rc;
}

/* ---- HDF5 ------------------------------------------------------------------- */

/* Resolve `file` against the config's folder unless it is absolute. */
static char *resolve_path(const char *file, const char *config_path)
{
    if (file[0] == '/' || !config_path || !strchr(config_path, '/'))
        return strdup(file);
    size_t dir = (size_t)(strrchr(config_path, '/') - config_path);
    size_t len = dir + 1 + strlen(file) + 1;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%.*s/%s", (int)dir, config_path, file);
    return p;
}

struct h5_matrix {
    size_t rows, cols;
};

/* Shape of a rank-2 numeric dataset; errors name the file and path. */
static int probe_matrix(hid_t file, const char *fname, const char *path, struct h5_matrix *m,
                        struct lsh_error *err)
{
    if (H5Lexists(file, path, H5P_DEFAULT) <= 0)
        return lsh_error_set(err, LSH_EDATA, "%s: no dataset '%s' in the file", fname, path);
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0)
        return lsh_error_set(err, LSH_EDATA, "%s: '%s' is not a dataset", fname, path);
    hid_t type = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(type);
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 0};
    int rc = 0;
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s: dataset '%s' is not numeric (need float or integer values)",
                           fname, path);
    else if (rank != 2)
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s: dataset '%s' has rank %d; need a 2-D array (rows x dims)",
                           fname, path, rank);
    else {
        H5Sget_simple_extent_dims(space, dims, NULL);
        if (dims[0] == 0 || dims[1] == 0)
            rc = lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' is empty (%llu x %llu)",
                               fname, path, (unsigned long long)dims[0],
                               (unsigned long long)dims[1]);
    }
    /* A file may announce any shape: it must fit in memory arithmetic. */
    if (!rc && (dims[0] > SIZE_MAX / dims[1] || dims[0] * dims[1] > SIZE_MAX / sizeof(double)))
        rc = lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' is too large (%llu x %llu)", fname,
                           path, (unsigned long long)dims[0], (unsigned long long)dims[1]);
    m->rows = (size_t)dims[0];
    m->cols = (size_t)dims[1];
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(ds);
    return rc;
}

static int not_finite(const char *fname, const char *path, double x, size_t row, size_t col,
                      struct lsh_error *err)
{
    return lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' holds %s at row %zu, column %zu", fname,
                         path, isnan(x) ? "NaN" : "Inf", row, col);
}

/* Validation reads the values too (SPEC 5: a NaN in the input is an error
 * before any work), a block of rows at a time so that memory stays small. */
static int scan_finite(hid_t file, const char *fname, const char *path,
                       const struct h5_matrix *m, struct lsh_error *err)
{
    const size_t block = m->cols >= 65536 ? 1 : 65536 / m->cols;
    double *x = malloc(block * m->cols * sizeof *x);
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    hid_t fspace = ds < 0 ? H5I_INVALID_HID : H5Dget_space(ds);
    int rc = 0;
    if (!x)
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    else if (fspace < 0)
        rc = lsh_error_set(err, LSH_EIO, "%s: cannot open '%s'", fname, path);
    for (size_t r0 = 0; !rc && r0 < m->rows; r0 += block) {
        hsize_t start[2] = {r0, 0}, count[2] = {m->rows - r0 < block ? m->rows - r0 : block,
                                                 m->cols};
        hid_t mspace = H5Screate_simple(2, count, NULL);
        if (mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(ds, H5T_NATIVE_DOUBLE, mspace, fspace, H5P_DEFAULT, x) < 0)
            rc = lsh_error_set(err, LSH_EIO, "%s: cannot read '%s' as float64", fname, path);
        if (mspace >= 0)
            H5Sclose(mspace);
        for (size_t t = 0; !rc && t < count[0] * m->cols; t++)
            if (!isfinite(x[t]))
                rc = not_finite(fname, path, x[t], r0 + t / m->cols, t % m->cols, err);
    }
    if (fspace >= 0)
        H5Sclose(fspace);
    if (ds >= 0)
        H5Dclose(ds);
    free(x);
    return rc;
}

static int read_matrix(hid_t file, const char *fname, const char *path, double *x,
                       const struct h5_matrix *m, struct lsh_error *err)
{
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0)
        return lsh_error_set(err, LSH_EIO, "%s: cannot open '%s'", fname, path);
    herr_t st = H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    if (st < 0)
        return lsh_error_set(err, LSH_EIO, "%s: cannot read '%s' as float64", fname, path);
    for (size_t t = 0; t < m->rows * m->cols; t++)
        if (!isfinite(x[t]))
            return not_finite(fname, path, x[t], t / m->cols, t % m->cols, err);
    return 0;
}

static hid_t open_h5(const char *fname, struct lsh_error *err)
{
    FILE *f = fopen(fname, "rb");
    if (!f) {
        lsh_error_set(err, LSH_EIO, "cannot open hdf5 data file '%s': %s", fname,
                      strerror(errno));
        return -1;
    }
    fclose(f);
    hid_t file = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        lsh_error_set(err, LSH_EDATA, "'%s' is not an HDF5 file", fname);
    return file;
}

struct h5_shapes {
    struct h5_matrix q, k, v;
};

/* Shapes of Q, K, V; scan: also check that every value is finite. */
static int probe_all(hid_t file, const char *fname, const struct lsh_dataset_spec *spec,
                     int scan, struct h5_shapes *s, struct lsh_error *err)
{
    int rc = probe_matrix(file, fname, spec->q, &s->q, err);
    if (!rc && spec->k) {
        rc = probe_matrix(file, fname, spec->k, &s->k, err);
        if (!rc && (s->k.rows != s->q.rows || s->k.cols != s->q.cols))
            rc = lsh_error_set(err, LSH_EDATA,
                               "%s: K ('%s', %zu x %zu) and Q ('%s', %zu x %zu) differ in shape",
                               fname, spec->k, s->k.rows, s->k.cols, spec->q, s->q.rows,
                               s->q.cols);
    }
    if (!rc && spec->v) {
        rc = probe_matrix(file, fname, spec->v, &s->v, err);
        if (!rc && s->v.rows != s->q.rows)
            rc = lsh_error_set(err, LSH_EDATA, "%s: V ('%s') has %zu rows but Q has %zu",
                               fname, spec->v, s->v.rows, s->q.rows);
    }
    if (!rc && scan)
        rc = scan_finite(file, fname, spec->q, &s->q, err);
    if (!rc && scan && spec->k)
        rc = scan_finite(file, fname, spec->k, &s->k, err);
    if (!rc && scan && spec->v)
        rc = scan_finite(file, fname, spec->v, &s->v, err);
    return rc;
}

int lsh_dataset_probe(const struct lsh_dataset_spec *spec, const char *config_path,
                      size_t *n, size_t *d, size_t *d_v, struct lsh_error *err)
{
    if (spec->kind != LSH_DATA_HDF5) {
        *n = spec->n;
        *d = spec->d;
        *d_v = spec->d_v ? spec->d_v : spec->d;
        return 0;
    }
    char *fname = resolve_path(spec->file, config_path);
    if (!fname)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    hid_t file = open_h5(fname, err);
    int rc = file < 0 ? err ? err->code : LSH_EIO : 0;
    struct h5_shapes s = {{0, 0}, {0, 0}, {0, 0}};
    if (!rc)
        rc = probe_all(file, fname, spec, 1, &s, err);
    if (file >= 0)
        H5Fclose(file);
    free(fname);
    if (rc)
        return rc;
    *n = s.q.rows;
    *d = s.q.cols;
    *d_v = spec->v ? s.v.cols : (spec->d_v ? spec->d_v : s.q.cols);
    return 0;
}

/* ---- make --------------------------------------------------------------------- */

void lsh_dataset_free(struct lsh_dataset *ds)
{
    if (!ds)
        return;
    free(ds->q);
    free(ds->k);
    free(ds->v);
    free(ds);
}

static int load_hdf5(struct lsh_dataset *ds, const char *config_path, int separate,
                     struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    char *fname = resolve_path(spec->file, config_path);
    if (!fname)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    hid_t file = open_h5(fname, err);
    int rc = file < 0 ? err ? err->code : LSH_EIO : 0;
    struct h5_shapes s = {{0, 0}, {0, 0}, {0, 0}};
    if (!rc)
        rc = probe_all(file, fname, spec, 0, &s, err);
    if (!rc && separate && !spec->k)
        rc = lsh_error_set(err, LSH_EDATA,
                           "dataset '%s': keys: separate needs a K matrix ('k:' path in %s)",
                           spec->name, fname);
    if (!rc) {
        ds->n = s.q.rows;
        ds->d = s.q.cols;
        ds->d_v = spec->v ? s.v.cols : (spec->d_v ? spec->d_v : ds->d);
        ds->q = malloc(ds->n * ds->d * sizeof *ds->q);
        ds->v = malloc(ds->n * ds->d_v * sizeof *ds->v);
        if (separate)
            ds->k = malloc(ds->n * ds->d * sizeof *ds->k);
        if (!ds->q || !ds->v || (separate && !ds->k))
            rc = lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory (%zu x %zu)",
                               spec->name, ds->n, ds->d);
    }
    if (!rc)
        rc = read_matrix(file, fname, spec->q, ds->q, &s.q, err);
    if (!rc && separate)
        rc = read_matrix(file, fname, spec->k, ds->k, &s.k, err);
    if (!rc && spec->v)
        rc = read_matrix(file, fname, spec->v, ds->v, &s.v, err);
    else if (!rc)
        rc = fill_gaussian(ds->v, ds->n * ds->d_v, lsh_seed_str(ds->seed, "v"));
    if (file >= 0)
        H5Fclose(file);
    free(fname);
    return rc;
}

static int generate(struct lsh_dataset *ds, int separate, struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    ds->n = spec->n;
    ds->d = spec->d;
    ds->d_v = spec->d_v ? spec->d_v : spec->d;
    ds->q = malloc(ds->n * ds->d * sizeof *ds->q);
    ds->v = malloc(ds->n * ds->d_v * sizeof *ds->v);
    if (separate)
        ds->k = malloc(ds->n * ds->d * sizeof *ds->k);
    if (!ds->q || !ds->v || (separate && !ds->k))
        return lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory (%zu x %zu)",
                             spec->name, ds->n, ds->d);
    const uint64_t sq = lsh_seed_str(ds->seed, "q"), sk = lsh_seed_str(ds->seed, "k");
    int rc = 0;
    if (spec->kind == LSH_DATA_GAUSSIAN) {
        rc = fill_gaussian(ds->q, ds->n * ds->d, sq);
        if (!rc && separate)
            rc = fill_gaussian(ds->k, ds->n * ds->d, sk);
    } else {
        double *centres = malloc(spec->clusters * ds->d * sizeof *centres);
        if (!centres)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        double norm = spec->norm > 0.0 ? spec->norm : sqrt((double)ds->d);
        rc = make_centres(centres, spec->clusters, ds->d, lsh_seed_str(ds->seed, "centres"));
        if (!rc)
            rc = fill_clustered(ds->q, ds->n, ds->d, centres, spec->clusters, spec->spread,
                                norm, sq);
        if (!rc && separate)
            rc = fill_clustered(ds->k, ds->n, ds->d, centres, spec->clusters, spec->spread,
                                norm, sk);
        free(centres);
    }
    if (!rc)
        rc = fill_gaussian(ds->v, ds->n * ds->d_v, lsh_seed_str(ds->seed, "v"));
    if (rc)
        return lsh_error_set(err, rc, "dataset '%s': out of memory", spec->name);
    return 0;
}

int lsh_dataset_make(const struct lsh_dataset_spec *spec, const char *config_path,
                     uint64_t config_seed, int separate, struct lsh_dataset **out,
                     struct lsh_error *err)
{
    struct lsh_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    ds->spec = spec;
    ds->seed = lsh_seed_str(config_seed, spec->name);
    int rc = spec->kind == LSH_DATA_HDF5 ? load_hdf5(ds, config_path, separate, err)
                                         : generate(ds, separate, err);
    if (rc) {
        lsh_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

/* ---- memory --------------------------------------------------------------------- */

size_t lsh_dataset_bytes(const struct lsh_dataset_spec *spec, size_t n, size_t d, size_t d_v,
                         int separate)
{
    const size_t D = sizeof(double);
    size_t b = lsh_size_mul3(n, d, separate ? 2 * D : D);
    b = lsh_size_add(b, lsh_size_mul3(n, d_v, D));
    if (spec->kind == LSH_DATA_CLUSTERED)
        b = lsh_size_add(b, lsh_size_mul3(spec->clusters, d, D));
    else if (spec->kind == LSH_DATA_HDF5)
        b = lsh_size_add(b, (size_t)4 << 20); /* type conversion and chunk caches */
    return lsh_size_add(b, sizeof(struct lsh_dataset) + 256);
}
