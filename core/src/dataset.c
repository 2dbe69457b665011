/* dataset.c - generate Q, K, V from seeds, or read them from an HDF5 file. */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "memsize.h"
#include "rng.h"

/* ---- sizes ------------------------------------------------------------------ */

/* The most bytes of data any dataset may have: beyond it, n*d*sizeof(double)
 * and the like could wrap around in size_t. */
#define ADDRESSABLE ((double)(SIZE_MAX / 16))

/* Bytes of physical memory, or ADDRESSABLE if unknown: a file declaring more
 * data than this could never be loaded, so nothing of it is read. */
static double physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const double mem = pages > 0 && page > 0 ? (double)pages * (double)page : ADDRESSABLE;
    return mem < ADDRESSABLE ? mem : ADDRESSABLE;
}

/* Refuse a shape before anything is allocated for it.  Callers later form
 * n*d, 2n*d (K, and the 2n rows a fit sees under keys: separate), n*d_v and
 * clusters*d, times sizeof(double), in size_t: all of the data together (Q,
 * K when separate, V, the centres) must be at most `limit` bytes (at most
 * ADDRESSABLE), so that none of these products can wrap.  They are formed
 * here in double, which cannot overflow.  `what` names the dataset (and
 * file); `limit_is` says what the limit is. */
static int check_shape(const char *what, int code, size_t n, size_t d, size_t d_v,
                       size_t clusters, int separate, double limit, const char *limit_is,
                       struct lsh_error *err)
{
    if (n == 0 || d == 0 || d_v == 0)
        return lsh_error_set(err, code, "%s: n = %zu, d = %zu, d_v = %zu; each must be at least 1",
                             what, n, d, d_v);
    const double qk = (double)n * (double)d * (separate ? 2.0 : 1.0);
    const double need = 8.0 * (qk + (double)n * (double)d_v + (double)clusters * (double)d);
    if (need <= limit)
        return 0;
    char parts[128] = "";
    if (clusters)
        snprintf(parts, sizeof parts, ", clusters = %zu", clusters);
    return lsh_error_set(err, code,
                         "%s: n = %zu, d = %zu, d_v = %zu%s would need %.3g bytes of float64 "
                         "data (%s); allowed: at most %.3g bytes (%s)",
                         what, n, d, d_v, parts, need,
                         clusters ? (separate ? "Q, K, V and the centres" : "Q, V and the centres")
                                  : (separate ? "Q, K and V" : "Q and V"),
                         limit, limit_is);
}

/* The largest |z| a Gaussian draw can have (see check_generated). */
#define Z_MAX 15.0

/* The generator's parameters and the sizes they imply (check_shape). */
static int check_generated(const struct lsh_dataset_spec *spec, int separate,
                           struct lsh_error *err)
{
    char what[LSH_ERROR_MSG_MAX / 2];
    snprintf(what, sizeof what, "dataset '%s'", spec->name);
    const int clustered = spec->kind == LSH_DATA_CLUSTERED;
    if (clustered && spec->clusters == 0)
        return lsh_error_set(err, LSH_ECONFIG, "%s: clusters is 0; allowed: at least 1", what);
    if (clustered && !(spec->spread >= 0.0 && spec->spread <= DBL_MAX))
        return lsh_error_set(err, LSH_ECONFIG, "%s: spread %g; allowed: a finite number >= 0",
                             what, spec->spread);
    if (clustered && !(spec->norm <= DBL_MAX))
        return lsh_error_set(err, LSH_ECONFIG, "%s: norm %g; allowed: a finite number > 0",
                             what, spec->norm);
    /* |row entry| <= norm (1 + spread/sqrt(d) |z|), and GSL's ziggurat never
     * draws |z| above 14.2 (its tail is R - log(u)/R, R = 3.44, u >= 2^-53) */
    const double norm = spec->norm > 0.0 ? spec->norm : sqrt((double)spec->d);
    const double sd = spec->d ? spec->spread / sqrt((double)spec->d) : 0.0;
    if (clustered && !(norm + norm * sd * Z_MAX <= DBL_MAX))
        return lsh_error_set(err, LSH_ECONFIG,
                             "%s: norm %g and spread %g (d = %zu) give values beyond float64; "
                             "allowed: norm (1 + %g spread / sqrt(d)) at most %g",
                             what, norm, spec->spread, spec->d, Z_MAX, DBL_MAX);
    return check_shape(what, LSH_ECONFIG, spec->n, spec->d, spec->d_v ? spec->d_v : spec->d,
                       clustered ? spec->clusters : 0, separate, ADDRESSABLE,
                       "the most that sizes in memory can count", err);
}

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

/* Rows = norm * (centre[label] + spread * N(0, I/d)), label uniform.  When
 * the bracket overflows but the row does not (norm < 1), the row is formed
 * as norm*c + (norm*spread/sqrt(d))*z instead; check_generated has made sure
 * that every row is representable. */
static int fill_clustered(double *x, size_t n, size_t d, const double *centres, size_t clusters,
                          double spread, double norm, uint64_t seed)
{
    struct lsh_rng *rng = lsh_rng_alloc(seed);
    if (!rng)
        return LSH_ENOMEM;
    const double sd = spread / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        const double *c = centres + lsh_rng_uniform_int(rng, clusters) * d;
        for (size_t e = 0; e < d; e++) {
            const double z = lsh_rng_normal(rng), y = c[e] + sd * z;
            x[i * d + e] = isfinite(y) ? norm * y : norm * c[e] + (norm * sd) * z;
        }
    }
    lsh_rng_free(rng);
    return 0;
}

/* Centres uniform on the unit sphere: normalised Gaussian draws (whose sum of
 * squares is at most Z_MAX^2 d, far from overflow). */
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
char *lsh_dataset_file_path(const char *file, const char *config_path)
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

/* Names of the registered third-party filters one meets in practice. */
static const char *known_filter(H5Z_filter_t id)
{
    switch (id) {
    case 307: return "bzip2";
    case 32000: return "lzf";
    case 32001: return "blosc";
    case 32004: return "lz4";
    case 32008: return "bitshuffle";
    case 32015: return "zstd";
    case 32017: return "sz";
    case 32026: return "blosc2";
    default: return "unknown";
    }
}

/* Where the values are and how they are coded, before reading any: data
 * kept outside the file (external raw files, a virtual dataset's sources)
 * could be a FIFO or a device that blocks or never ends, so it is refused;
 * and a filter this libhdf5 cannot apply (not built in, no plugin on
 * HDF5_PLUGIN_PATH) would make every read fail with a bare "cannot read",
 * so it is named, with what to do. */
static int check_storage(hid_t ds, const char *fname, const char *path, struct lsh_error *err)
{
    hid_t dcpl = H5Dget_create_plist(ds);
    if (dcpl < 0)
        return lsh_error_set(err, LSH_EDATA, "%s: cannot read the layout of '%s'", fname, path);
    int rc = 0;
    if (H5Pget_layout(dcpl) == H5D_VIRTUAL || H5Pget_external_count(dcpl) > 0)
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s: dataset '%s' keeps its values in other files (%s); allowed: "
                           "values stored in the HDF5 file itself (write a self-contained copy)",
                           fname, path,
                           H5Pget_layout(dcpl) == H5D_VIRTUAL ? "a virtual dataset"
                                                              : "external raw data files");
    const int nf = rc ? 0 : H5Pget_nfilters(dcpl);
    for (int i = 0; !rc && i < nf; i++) {
        unsigned flags = 0, config = 0;
        size_t n_cd = 0;
        char name[64] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &n_cd, NULL, sizeof name,
                                         name, &config);
        if (id < 0 || H5Zfilter_avail(id) > 0)
            continue;
        name[sizeof name - 1] = '\0';
        for (char *c = name; *c; c++) /* the name comes from the file */
            *c = *c >= 0x20 && *c < 0x7f ? *c : '?';
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s: dataset '%s' is compressed with HDF5 filter %d (%s), which "
                           "this libhdf5 cannot decode; write an uncompressed copy "
                           "(h5repack -f NONE %s plain.h5, where the filter is available) or "
                           "install the filter's plugin and set HDF5_PLUGIN_PATH to its folder",
                           fname, path, (int)id, name[0] ? name : known_filter(id), fname);
    }
    H5Pclose(dcpl);
    return rc;
}

static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "not a regular file";
}

/* An external link (in the path or at its end) makes HDF5 open another file
 * by name, and a FIFO or a device there would block or never end, as the
 * data file itself would (open_h5): such a link is followed only to a
 * regular file.  The name is checked where HDF5 looks for it: as given when
 * absolute, else beside the linking file and in the current folder. */
struct elink_guard {
    char why[LSH_ERROR_MSG_MAX / 2];
};

static herr_t elink_check(const char *parent_file, const char *parent_group,
                          const char *child_file, const char *child_object, unsigned *acc_flags,
                          hid_t fapl, void *op_data)
{
    (void)parent_group, (void)child_object, (void)acc_flags, (void)fapl;
    struct elink_guard *g = op_data;
    char beside[4096];
    const char *slash = strrchr(parent_file, '/');
    snprintf(beside, sizeof beside, "%.*s/%s", slash ? (int)(slash - parent_file) : 1,
             slash ? parent_file : ".", child_file);
    const char *const names[] = {child_file[0] == '/' ? child_file : beside, child_file};
    for (size_t i = 0; i < (child_file[0] == '/' ? 1u : 2u); i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && !S_ISREG(st.st_mode)) {
            snprintf(g->why, sizeof g->why, "an external link to '%s', which is %s",
                     names[i], file_kind(st.st_mode));
            return -1;
        }
    }
    return 0;
}

/* Open the dataset at path, following external links to regular files only;
 * errors name the file and path.  The dataset, or -1 with err set. */
static hid_t open_dataset(hid_t file, const char *fname, const char *path, struct lsh_error *err)
{
    struct elink_guard g = {""};
    hid_t lapl = H5Pcreate(H5P_DATASET_ACCESS), ds = -1; /* a link access list too */
    if (lapl < 0 || H5Pset_elink_cb(lapl, elink_check, &g) < 0) {
        lsh_error_set(err, LSH_ENOMEM, "%s: cannot set up reading '%s'", fname, path);
    } else {
        htri_t has = H5Lexists(file, path, lapl);
        ds = has > 0 ? H5Dopen2(file, path, lapl) : -1;
        if (ds < 0 && g.why[0])
            lsh_error_set(err, LSH_EDATA, "%s: '%s' is %s; allowed: links to regular files",
                          fname, path, g.why);
        else if (ds < 0)
            lsh_error_set(err, LSH_EDATA,
                          has > 0 ? "%s: '%s' is not a dataset" : "%s: no dataset '%s' in the file",
                          fname, path);
    }
    if (lapl >= 0)
        H5Pclose(lapl);
    return ds;
}

/* Shape of a rank-2 numeric dataset stored in the file with available
 * filters; errors name the file and path. */
static int probe_matrix(hid_t file, const char *fname, const char *path, struct h5_matrix *m,
                        struct lsh_error *err)
{
    hid_t ds = open_dataset(file, fname, path, err);
    if (ds < 0)
        return err ? err->code : LSH_EDATA;
    int rc = check_storage(ds, fname, path, err);
    if (rc) {
        H5Dclose(ds);
        return rc;
    }
    hid_t type = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(type);
    hid_t space = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 0};
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
    /* hsize_t is 64-bit like size_t; check_shape then bounds the products */
    if (!rc && (dims[0] > SIZE_MAX || dims[1] > SIZE_MAX))
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

/* Where scan_finite reads: the dataset and a buffer of `block` full rows. */
struct scan {
    hid_t ds, fspace;
    const char *fname, *path;
    double *x;
    size_t block;
};

/* Rows [r0, r1) x columns [c0, c1) are finite, read `block` rows at a time. */
static int scan_region(const struct scan *sc, size_t r0, size_t r1, size_t c0, size_t c1,
                       struct lsh_error *err)
{
    int rc = 0;
    for (size_t r = r0; !rc && r < r1; r += sc->block) {
        hsize_t start[2] = {r, c0}, count[2] = {r1 - r < sc->block ? r1 - r : sc->block, c1 - c0};
        hid_t mspace = H5Screate_simple(2, count, NULL);
        memset(sc->x, 0, count[0] * count[1] * sizeof *sc->x); /* what unwritten parts read as */
        if (mspace < 0 ||
            H5Sselect_hyperslab(sc->fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(sc->ds, H5T_NATIVE_DOUBLE, mspace, sc->fspace, H5P_DEFAULT, sc->x) < 0)
            rc = lsh_error_set(err, LSH_EIO, "%s: cannot read '%s' as float64", sc->fname,
                               sc->path);
        if (mspace >= 0)
            H5Sclose(mspace);
        for (size_t t = 0; !rc && t < count[0] * count[1]; t++)
            if (!isfinite(sc->x[t]))
                rc = not_finite(sc->fname, sc->path, sc->x[t], r + t / count[1],
                                c0 + t % count[1], err);
    }
    return rc;
}

/* The written chunks of a partly written chunked dataset, one at a time.
 * Listing chunk i walks the index up to i, so this pays only while the
 * chunks are few against the declared elements; else returns 1 (not done). */
static int scan_chunks(const struct scan *sc, hid_t dcpl, const struct h5_matrix *m,
                       struct lsh_error *err)
{
    hsize_t cdims[2], nchunks = 0;
    if (H5Pget_chunk(dcpl, 2, cdims) != 2 || cdims[0] == 0 || cdims[1] == 0 ||
        H5Sselect_all(sc->fspace) < 0 ||
        H5Dget_num_chunks(sc->ds, sc->fspace, &nchunks) < 0 ||
        (double)nchunks * (double)nchunks * 32.0 > (double)m->rows * (double)m->cols)
        return 1;
    int rc = 0;
    for (hsize_t i = 0; !rc && i < nchunks; i++) {
        hsize_t off[2];
        unsigned mask;
        haddr_t addr;
        hsize_t size;
        if (H5Sselect_all(sc->fspace) < 0 ||
            H5Dget_chunk_info(sc->ds, sc->fspace, i, off, &mask, &addr, &size) < 0 ||
            off[0] >= m->rows || off[1] >= m->cols)
            return lsh_error_set(err, LSH_EIO, "%s: cannot list the chunks of '%s'", sc->fname,
                                 sc->path);
        const size_t r1 = m->rows - off[0] < cdims[0] ? m->rows : (size_t)(off[0] + cdims[0]);
        const size_t c1 = m->cols - off[1] < cdims[1] ? m->cols : (size_t)(off[1] + cdims[1]);
        rc = scan_region(sc, (size_t)off[0], r1, (size_t)off[1], c1, err);
    }
    return rc;
}

/* Every value the file holds is finite (SPEC 5: a NaN in the input is an
 * error before any work), at the cost of what the file stores rather than
 * of the shape it declares: unwritten parts all read as the fill value,
 * checked once, and of a partly written chunked dataset only the written
 * chunks are read.  A block of rows at a time, so memory stays small. */
static int scan_finite(hid_t file, const char *fname, const char *path,
                       const struct h5_matrix *m, struct lsh_error *err)
{
    struct scan sc = {.fname = fname, .path = path};
    sc.block = m->cols >= 65536 ? 1 : 65536 / m->cols;
    sc.x = malloc(sc.block * m->cols * sizeof *sc.x);
    sc.ds = open_dataset(file, fname, path, err);
    sc.fspace = sc.ds < 0 ? H5I_INVALID_HID : H5Dget_space(sc.ds);
    hid_t dcpl = sc.ds < 0 ? H5I_INVALID_HID : H5Dget_create_plist(sc.ds);
    H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
    int rc = 0;
    if (sc.ds < 0)
        rc = err ? err->code : LSH_EDATA;
    else if (!sc.x)
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    else if (sc.fspace < 0 || dcpl < 0 || H5Dget_space_status(sc.ds, &status) < 0)
        rc = lsh_error_set(err, LSH_EIO, "%s: cannot open '%s'", fname, path);
    /* HDF5 gives unwritten parts the fill value only if the file set one and
     * did not say "never"; else it leaves the (zeroed) buffer as it was */
    H5D_fill_value_t defined = H5D_FILL_VALUE_UNDEFINED;
    H5D_fill_time_t when = H5D_FILL_TIME_NEVER;
    double fill = 0.0;
    if (!rc && status != H5D_SPACE_STATUS_ALLOCATED &&
        H5Pfill_value_defined(dcpl, &defined) >= 0 && defined == H5D_FILL_VALUE_USER_DEFINED &&
        H5Pget_fill_time(dcpl, &when) >= 0 && when != H5D_FILL_TIME_NEVER &&
        H5Pget_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill) >= 0 && !isfinite(fill))
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s: dataset '%s' has unwritten parts, and its fill value (what "
                           "they read as) is %s",
                           fname, path, isnan(fill) ? "NaN" : "Inf");
    if (!rc && status != H5D_SPACE_STATUS_NOT_ALLOCATED) {
        if (status == H5D_SPACE_STATUS_ALLOCATED || H5Pget_layout(dcpl) != H5D_CHUNKED ||
            (rc = scan_chunks(&sc, dcpl, m, err)) == 1)
            rc = scan_region(&sc, 0, m->rows, 0, m->cols, err);
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sc.fspace >= 0)
        H5Sclose(sc.fspace);
    if (sc.ds >= 0)
        H5Dclose(sc.ds);
    free(sc.x);
    return rc;
}

static int read_matrix(hid_t file, const char *fname, const char *path, double *x,
                       const struct h5_matrix *m, struct lsh_error *err)
{
    hid_t ds = open_dataset(file, fname, path, err);
    if (ds < 0)
        return err ? err->code : LSH_EDATA;
    herr_t st = H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    if (st < 0)
        return lsh_error_set(err, LSH_EIO, "%s: cannot read '%s' as float64", fname, path);
    for (size_t t = 0; t < m->rows * m->cols; t++)
        if (!isfinite(x[t]))
            return not_finite(fname, path, x[t], t / m->cols, t % m->cols, err);
    return 0;
}

/* Only a regular file is handed to HDF5: opening a FIFO would block until a
 * writer comes, and a device can be endless.  stat() does neither. */
static hid_t open_h5(const char *fname, struct lsh_error *err)
{
    struct stat st;
    int fd = -1;
    if (stat(fname, &st) != 0 ||
        (S_ISREG(st.st_mode) && (fd = open(fname, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)) {
        lsh_error_set(err, LSH_EIO, "cannot open hdf5 data file '%s': %s", fname,
                      strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        lsh_error_set(err, LSH_EDATA,
                      "hdf5 data file '%s' is %s; allowed: a regular file holding HDF5", fname,
                      file_kind(st.st_mode));
        return -1;
    }
    close(fd);
    hid_t file = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        lsh_error_set(err, LSH_EDATA, "'%s' is not an HDF5 file", fname);
    return file;
}

struct h5_shapes {
    struct h5_matrix q, k, v;
};

/* Shapes of Q, K, V, and whether their data fits (check_shape; separate:
 * K is loaded too); scan: also check that every stored value is finite. */
static int probe_all(hid_t file, const char *fname, const struct lsh_dataset_spec *spec,
                     int separate, int scan, struct h5_shapes *s, struct lsh_error *err)
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
    if (!rc) {
        char what[LSH_ERROR_MSG_MAX / 2];
        snprintf(what, sizeof what, "dataset '%s' (%s)", spec->name, fname);
        rc = check_shape(what, LSH_EDATA, s->q.rows, s->q.cols,
                         spec->v ? s->v.cols : (spec->d_v ? spec->d_v : s->q.cols), 0,
                         separate, physical_memory(), "this machine's memory", err);
    }
    if (!rc && scan)
        rc = scan_finite(file, fname, spec->q, &s->q, err);
    if (!rc && scan && spec->k)
        rc = scan_finite(file, fname, spec->k, &s->k, err);
    if (!rc && scan && spec->v)
        rc = scan_finite(file, fname, spec->v, &s->v, err);
    return rc;
}

void lsh_dataset_layout_free(struct lsh_dataset_layout *l)
{
    if (!l)
        return;
    free(l->layers);
    free(l->heads);
    free(l->source);
    memset(l, 0, sizeof *l);
}

/* A layout of one problem without axes. */
static int single_unit(struct lsh_dataset_layout *l, const char *source, const char *dtype,
                       struct lsh_error *err)
{
    l->n_layers = l->n_heads = 1;
    l->layers = malloc(sizeof *l->layers);
    l->heads = malloc(sizeof *l->heads);
    l->source = strdup(source);
    if (!l->layers || !l->heads || !l->source)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    l->layers[0] = l->heads[0] = -1;
    snprintf(l->dtype, sizeof l->dtype, "%s", dtype);
    return 0;
}

int lsh_dataset_probe(const struct lsh_dataset_spec *spec, const char *config_path,
                      struct lsh_dataset_layout *out, struct lsh_error *err)
{
    memset(out, 0, sizeof *out);
    if (spec->kind != LSH_DATA_HDF5) {
        int rc = check_generated(spec, 0, err);
        if (!rc)
            rc = single_unit(out, "generated", "float64", err);
        if (rc) {
            lsh_dataset_layout_free(out);
            return rc;
        }
        out->n = spec->n;
        out->d = spec->d;
        out->d_v = spec->d_v ? spec->d_v : spec->d;
        return 0;
    }
    char *fname = lsh_dataset_file_path(spec->file, config_path);
    if (!fname)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    hid_t file = open_h5(fname, err);
    int rc = file < 0 ? err ? err->code : LSH_EIO : 0;
    struct h5_shapes s = {{0, 0}, {0, 0}, {0, 0}};
    if (!rc)
        rc = probe_all(file, fname, spec, 0, 1, &s, err);
    if (file >= 0)
        H5Fclose(file);
    if (!rc)
        rc = single_unit(out, fname, "float64", err);
    free(fname);
    if (rc) {
        lsh_dataset_layout_free(out);
        return rc;
    }
    out->n = s.q.rows;
    out->d = s.q.cols;
    out->d_v = spec->v ? s.v.cols : (spec->d_v ? spec->d_v : s.q.cols);
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

/* Q, V and (separate) K of ds->n x ds->d / d_v, whose sizes check_shape
 * passed.  Zeroed: HDF5 leaves unwritten parts of a file without a fill
 * value as it finds them, and they must read as 0 every time. */
static int alloc_matrices(struct lsh_dataset *ds, int separate, struct lsh_error *err)
{
    ds->q = calloc(ds->n * ds->d, sizeof *ds->q);
    ds->v = calloc(ds->n * ds->d_v, sizeof *ds->v);
    if (separate)
        ds->k = calloc(ds->n * ds->d, sizeof *ds->k);
    if (!ds->q || !ds->v || (separate && !ds->k))
        return lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory (%zu x %zu)",
                             ds->spec->name, ds->n, ds->d);
    return 0;
}

static int load_hdf5(struct lsh_dataset *ds, const char *config_path, int separate,
                     struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    char *fname = lsh_dataset_file_path(spec->file, config_path);
    if (!fname)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    hid_t file = open_h5(fname, err);
    int rc = file < 0 ? err ? err->code : LSH_EIO : 0;
    struct h5_shapes s = {{0, 0}, {0, 0}, {0, 0}};
    if (!rc && separate && !spec->k)
        rc = lsh_error_set(err, LSH_EDATA,
                           "dataset '%s': keys: separate needs a K matrix ('k:' path in %s)",
                           spec->name, fname);
    if (!rc)
        rc = probe_all(file, fname, spec, separate, 0, &s, err);
    if (!rc) {
        ds->n = s.q.rows;
        ds->d = s.q.cols;
        ds->d_v = spec->v ? s.v.cols : (spec->d_v ? spec->d_v : ds->d);
        rc = alloc_matrices(ds, separate, err);
    }
    if (!rc)
        rc = read_matrix(file, fname, spec->q, ds->q, &s.q, err);
    if (!rc && separate)
        rc = read_matrix(file, fname, spec->k, ds->k, &s.k, err);
    if (!rc && spec->v)
        rc = read_matrix(file, fname, spec->v, ds->v, &s.v, err);
    else if (!rc && fill_gaussian(ds->v, ds->n * ds->d_v, lsh_seed_str(ds->seed, "v")))
        rc = lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory", spec->name);
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
    int rc = check_generated(spec, separate, err);
    if (!rc)
        rc = alloc_matrices(ds, separate, err);
    if (rc)
        return rc;
    const uint64_t sq = lsh_seed_str(ds->seed, "q"), sk = lsh_seed_str(ds->seed, "k");
    if (spec->kind == LSH_DATA_GAUSSIAN) {
        rc = fill_gaussian(ds->q, ds->n * ds->d, sq);
        if (!rc && separate)
            rc = fill_gaussian(ds->k, ds->n * ds->d, sk);
    } else {
        double *centres = malloc(spec->clusters * ds->d * sizeof *centres);
        if (!centres)
            return lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory", spec->name);
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
                     uint64_t config_seed, int separate, struct lsh_dataset_unit unit,
                     struct lsh_dataset **out, struct lsh_error *err)
{
    struct lsh_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    ds->spec = spec;
    ds->unit = unit;
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
