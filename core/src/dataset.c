/* dataset.c - generate Q, K, V from seeds, or read them from HDF5 or .npy files. */
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

#include "linalg.h"
#include "memsize.h"
#include "npy.h"
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
                     names[i], lsh_file_kind(st.st_mode));
            return -1;
        }
    }
    return 0;
}

/* What the existing link at path leads to, for messages. */
static const char *what_is(hid_t file, const char *path, hid_t lapl)
{
    const hid_t o = H5Oopen(file, path, lapl);
    if (o < 0)
        return "a link that leads nowhere (a dangling or looping soft link, or an external "
               "link to a missing file or object)";
    const H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    return t == H5I_GROUP ? "a group" : t == H5I_DATATYPE ? "a named datatype" : "not a dataset";
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
        else if (ds < 0 && has > 0)
            lsh_error_set(err, LSH_EDATA,
                          "%s: '%s' is not a dataset: it is %s; allowed: a dataset of "
                          "floats, [n, d], [heads, n, d] or [layers, heads, n, d]",
                          fname, path, what_is(file, path, lapl));
        else if (ds < 0)
            lsh_error_set(err, LSH_EDATA, "%s: no dataset '%s' in the file", fname, path);
    }
    if (lapl >= 0)
        H5Pclose(lapl);
    return ds;
}

/* Why HDF5 could not open the regular file fd: what it holds, by its first
 * bytes (an HDF5 superblock sits at 0, 512, 1024, 2048, ...). */
static void not_hdf5(int fd, const char *fname, uint64_t size, struct lsh_error *err)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    const ssize_t got = pread(fd, head, sizeof head, 0);
    int hdf5 = 0;
    for (uint64_t off = 0; !hdf5 && off + sizeof head <= size && off <= ((uint64_t)1 << 40);
         off = off ? 2 * off : 512) {
        unsigned char b[8];
        hdf5 = pread(fd, b, sizeof b, (off_t)off) == (ssize_t)sizeof b && !memcmp(b, sig, 8);
    }
    const unsigned long long bytes = (unsigned long long)size;
    if (size == 0)
        lsh_error_set(err, LSH_EDATA, "'%s' is not an HDF5 file: it is empty (0 bytes)", fname);
    else if (hdf5)
        lsh_error_set(err, LSH_EDATA,
                      "'%s' is not an HDF5 file libhdf5 can open: it has the HDF5 signature "
                      "but is truncated or damaged (%llu bytes; a copy that did not finish?)",
                      fname, bytes);
    else if (got >= 6 && !memcmp(head, "\x93NUMPY", 6))
        lsh_error_set(err, LSH_EDATA,
                      "'%s' is not an HDF5 file: it is a .npy file (use kind: npy, with q, k "
                      "and v naming .npy files)", fname);
    else
        lsh_error_set(err, LSH_EDATA,
                      "'%s' is not an HDF5 file (%llu bytes without the HDF5 signature); "
                      "allowed: an HDF5 file", fname, bytes);
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
                      lsh_file_kind(st.st_mode));
        return -1;
    }
    hid_t file = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        not_hdf5(fd, fname, (uint64_t)st.st_size, err);
    close(fd);
    return file;
}

/* ---- arrays: one of Q, K, V as a file holds it -------------------------------- */

/* An HDF5 dataset or a .npy file: rank 2 to 4, IEEE floats. */
struct arr {
    int rank;
    size_t dims[4];
    char dtype[16];    /* "float16", "float32", "float64" */
    int f16;           /* HDF5 float16: read raw and converted here, exactly */
};

/* Where arrays come from: one HDF5 file, or .npy files. */
struct rd {
    const struct lsh_dataset_spec *spec;
    const char *config_path;
    int npy;
    char *fname;       /* hdf5: the file as resolved; owned */
    hid_t file;        /* hdf5: open, or -1 */
};

/* A value's place in an array's own axes, for messages (-1: no such axis). */
struct at {
    long layer, head;
};

/* "FILE: dataset 'PATH'" or "'FILE.npy'" (resolved) for messages. */
static void arr_name(const struct rd *rd, const char *path, char *buf, size_t size)
{
    if (!rd->npy) {
        snprintf(buf, size, "%s: dataset '%s'", rd->fname, path);
        return;
    }
    char *p = lsh_dataset_file_path(path, rd->config_path);
    snprintf(buf, size, "'%s'", p ? p : path);
    free(p);
}

static void dims_text(const size_t *dims, int rank, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%zu", i ? " x " : "", dims[i]);
}

static void at_text(struct at at, size_t row, size_t col, char *buf, size_t size)
{
    char l[32] = "", h[32] = "";
    if (at.layer >= 0)
        snprintf(l, sizeof l, "layer %ld, ", at.layer);
    if (at.head >= 0)
        snprintf(h, sizeof h, "head %ld, ", at.head);
    snprintf(buf, size, "%s%srow %zu, column %zu", l, h, row, col);
}

static int not_finite(const struct rd *rd, const char *path, struct at at, double x, size_t row,
                      size_t col, struct lsh_error *err)
{
    char name[LSH_ERROR_MSG_MAX / 2], where[128];
    arr_name(rd, path, name, sizeof name);
    at_text(at, row, col, where, sizeof where);
    return lsh_error_set(err, LSH_EDATA, "%s holds %s at %s; allowed: finite values", name,
                         isnan(x) ? "NaN" : "Inf", where);
}

#define FLOATS_ALLOWED "allowed: IEEE float16, float32 or float64 values, either byte order"

/* An IEEE float16/32/64 in either byte order, else an error naming the type. */
static int h5_float_type(hid_t type, const char *fname, const char *path, struct arr *a,
                         struct lsh_error *err)
{
    const H5T_class_t cls = H5Tget_class(type);
    const size_t size = H5Tget_size(type);
    char what[160] = "";
    if (cls == H5T_FLOAT) {
        size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
        const H5T_order_t order = H5Tget_order(type);
        const int fields = H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0;
        static const size_t ieee[3][6] = {
            {2, 15, 10, 5, 10, 15}, {4, 31, 23, 8, 23, 127}, {8, 63, 52, 11, 52, 1023}};
        for (int i = 0; i < 3; i++) {
            if (size != ieee[i][0])
                continue;
            if (fields && spos == ieee[i][1] && epos == ieee[i][2] && esize == ieee[i][3] &&
                mpos == 0 && msize == ieee[i][4] && H5Tget_ebias(type) == ieee[i][5] &&
                H5Tget_norm(type) == H5T_NORM_IMPLIED && H5Tget_offset(type) == 0 &&
                H5Tget_precision(type) == 8 * size &&
                (order == H5T_ORDER_LE || order == H5T_ORDER_BE)) {
                snprintf(a->dtype, sizeof a->dtype, "float%zu", 8 * size);
                a->f16 = size == 2;
                return 0;
            }
        }
        snprintf(what, sizeof what, "holds %zu-bit floats%s", 8 * size,
                 size == 2 || size == 4 || size == 8 ? " of a non-IEEE layout" : "");
    } else if (cls == H5T_INTEGER) {
        const int sgn = H5Tget_sign(type) == H5T_SGN_2;
        snprintf(what, sizeof what, "holds %zu-bit %s integers%s", 8 * size,
                 sgn ? "signed" : "unsigned",
                 !sgn && size == 2 ? " (bfloat16 stored as uint16 is not read: store float32)"
                                   : "");
    } else {
        const char *k = cls == H5T_STRING     ? "strings"
                        : cls == H5T_COMPOUND ? "compound values (records, or complex numbers)"
                        : cls == H5T_ENUM     ? "enumerated values"
                        : cls == H5T_ARRAY    ? "arrays"
                        : cls == H5T_VLEN     ? "variable-length sequences"
                        : cls == H5T_OPAQUE   ? "opaque bytes"
                        : cls == H5T_BITFIELD ? "bit fields"
                        : cls == H5T_REFERENCE ? "references"
                                               : "values of an unknown class";
        snprintf(what, sizeof what, "is not numeric: it holds %s", k);
    }
    return lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' %s; " FLOATS_ALLOWED, fname, path,
                         what);
}

#define RANKS_ALLOWED \
    "need a 2-D array [n, d], 3-D [heads, n, d] or 4-D [layers, heads, n, d]"

/* Shape and type of the array at path; errors name the file and path. */
static int arr_info(struct rd *rd, const char *path, struct arr *a, struct lsh_error *err)
{
    memset(a, 0, sizeof *a);
    if (rd->npy) {
        char *p = lsh_dataset_file_path(path, rd->config_path);
        if (!p)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        struct lsh_npy h;
        int fd = -1;
        int rc = lsh_npy_open(p, &h, &fd, err);
        free(p);
        if (rc)
            return rc;
        close(fd);
        a->rank = h.rank;
        for (int i = 0; i < h.rank; i++) {
            if (h.shape[i] > SIZE_MAX)
                return lsh_error_set(err, LSH_EDATA, "'%s' is too large", path);
            a->dims[i] = (size_t)h.shape[i];
        }
        snprintf(a->dtype, sizeof a->dtype, "%s", h.dtype);
        return 0;
    }
    const char *fname = rd->fname;
    hid_t ds = open_dataset(rd->file, fname, path, err);
    if (ds < 0)
        return err ? err->code : LSH_EDATA;
    int rc = check_storage(ds, fname, path, err);
    hid_t type = rc ? H5I_INVALID_HID : H5Dget_type(ds);
    hid_t space = rc ? H5I_INVALID_HID : H5Dget_space(ds);
    if (!rc && (type < 0 || space < 0))
        rc = lsh_error_set(err, LSH_EIO, "%s: cannot read the type of '%s'", fname, path);
    if (!rc)
        rc = h5_float_type(type, fname, path, a, err);
    const int rank = rc ? 0 : H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    if (!rc && rank >= 0)
        H5Sget_simple_extent_dims(space, dims, NULL);
    char shape[160] = "";
    for (int i = 0, used = 0; !rc && i < rank && used < (int)sizeof shape; i++)
        used += snprintf(shape + used, sizeof shape - (size_t)used, "%s%llu", i ? " x " : "",
                         (unsigned long long)dims[i]);
    if (!rc && (rank < 2 || rank > 4))
        rc = lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' has rank %d; " RANKS_ALLOWED
                           " (its shape: %s)", fname, path, rank, rank > 0 ? shape : "scalar");
    for (int i = 0; !rc && i < rank; i++) {
        if (dims[i] == 0)
            rc = lsh_error_set(err, LSH_EDATA,
                               "%s: dataset '%s' is empty (%s); allowed: every dimension at "
                               "least 1", fname, path, shape);
        else if (dims[i] > SIZE_MAX)
            rc = lsh_error_set(err, LSH_EDATA, "%s: dataset '%s' is too large (%s)", fname,
                               path, shape);
    }
    if (!rc) {
        a->rank = rank;
        for (int i = 0; i < rank; i++)
            a->dims[i] = (size_t)dims[i];
    }
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    H5Dclose(ds);
    return rc;
}

/* Does the array at path exist?  (A template's `all` stops at the first
 * that does not.)  0: absent; 1: there; 2: neither -- something by that
 * name that cannot be looked through (a symlink loop or a dangling
 * symlink, an external link to a device, no permission): arr_info then says
 * what it is.  HDF5: every group on the way and the link itself; npy:
 * anything by that name. */
static int arr_exists(struct rd *rd, const char *path)
{
    if (rd->npy) {
        char *p = lsh_dataset_file_path(path, rd->config_path);
        struct stat st;
        int there = 2;
        if (p && stat(p, &st) == 0)
            there = 1;
        else if (p && (errno == ENOENT || errno == ENOTDIR) && lstat(p, &st) != 0)
            there = 0;
        free(p);
        return there;
    }
    /* an external link on the way is followed only to a regular file */
    struct elink_guard g = {""};
    const size_t len = strlen(path);
    char *pre = malloc(len + 1);
    hid_t lapl = H5Pcreate(H5P_LINK_ACCESS);
    int ok = pre && lapl >= 0 && H5Pset_elink_cb(lapl, elink_check, &g) >= 0;
    for (size_t i = 1; ok && i <= len; i++) {
        if ((i < len && path[i] != '/') || path[i - 1] == '/')
            continue;
        memcpy(pre, path, i);
        pre[i] = '\0';
        ok = H5Lexists(rd->file, pre, lapl) > 0;
    }
    if (!pre || lapl < 0 || g.why[0])
        ok = 2; /* arr_info will say what is wrong */
    if (lapl >= 0)
        H5Pclose(lapl);
    free(pre);
    return ok;
}

/* ---- HDF5 reading --------------------------------------------------------------- */

/* An open HDF5 array to read hyperslabs of. */
struct h5a {
    hid_t ds, fspace, mtype;
    const struct arr *a;
};

static void h5a_close(struct h5a *h)
{
    if (h->mtype >= 0 && h->mtype != H5T_NATIVE_DOUBLE)
        H5Tclose(h->mtype);
    if (h->fspace >= 0)
        H5Sclose(h->fspace);
    if (h->ds >= 0)
        H5Dclose(h->ds);
}

static int h5a_open(struct rd *rd, const char *path, const struct arr *a, struct h5a *h,
                    struct lsh_error *err)
{
    h->a = a;
    h->fspace = h->mtype = H5I_INVALID_HID;
    h->ds = open_dataset(rd->file, rd->fname, path, err);
    if (h->ds < 0)
        return err ? err->code : LSH_EDATA;
    h->fspace = H5Dget_space(h->ds);
    if (a->f16) { /* the file's own half type, little-endian: a byte swap at most */
        hid_t t = H5Dget_type(h->ds);
        h->mtype = t < 0 ? H5I_INVALID_HID : H5Tcopy(t);
        if (t >= 0)
            H5Tclose(t);
        if (h->mtype >= 0 && H5Tset_order(h->mtype, H5T_ORDER_LE) < 0) {
            H5Tclose(h->mtype);
            h->mtype = H5I_INVALID_HID;
        }
    } else {
        h->mtype = H5T_NATIVE_DOUBLE;
    }
    if (h->fspace < 0 || h->mtype < 0 || H5Sget_simple_extent_ndims(h->fspace) != a->rank) {
        h5a_close(h);
        return lsh_error_set(err, LSH_EIO, "%s: cannot open '%s'", rd->fname, path);
    }
    return 0;
}

/* The innermost reason libhdf5 recorded for the call that just failed
 * (e.g. a damaged chunk: "inflate() failed"), printable, for messages. */
static herr_t first_reason(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    if (n == 0 && e && e->desc) {
        snprintf(buf, 120, "%s", e->desc);
        for (char *c = buf; *c; c++)
            *c = *c >= 0x20 && *c < 0x7f ? *c : '?';
    }
    return 0;
}

static int read_failed(const char *fname, const char *path, const char *why,
                       struct lsh_error *err)
{
    return lsh_error_set(err, LSH_EIO,
                         "%s: cannot read '%s' as float64: %s; the file is damaged, or its "
                         "stored values cannot be decoded", fname, path,
                         why[0] ? why : "libhdf5 gave no reason");
}

/* Rows [r0, r0 + rows) x columns [c0, c0 + cols) of the [n, d] slab at lead
 * (layer and/or head, as the rank has them) into x, as doubles; parts the
 * file never wrote keep what x held.  float16 is read into the top quarter
 * of x and widened in place, front to back: value i is read before value i
 * is written, and writing it never reaches value i + 1. */
static int h5a_read(const struct h5a *h, const size_t *lead, size_t r0, size_t rows, size_t c0,
                    size_t cols, double *x, char why[120])
{
    why[0] = '\0';
    const int nl = h->a->rank - 2;
    hsize_t start[4], count[4];
    for (int i = 0; i < nl; i++) {
        start[i] = lead[i];
        count[i] = 1;
    }
    start[nl] = r0;
    count[nl] = rows;
    start[nl + 1] = c0;
    count[nl + 1] = cols;
    const size_t m = rows * cols;
    hsize_t mdim = m;
    unsigned char *raw = (unsigned char *)x + (h->a->f16 ? 6 * m : 0);
    hid_t ms = H5Screate_simple(1, &mdim, NULL);
    int rc = ms < 0 ||
             H5Sselect_hyperslab(h->fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
             H5Dread(h->ds, h->mtype, ms, h->fspace, H5P_DEFAULT, raw) < 0;
    if (rc) /* before the next call clears it */
        H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_reason, why);
    if (ms >= 0)
        H5Sclose(ms);
    if (!rc && h->a->f16)
        for (size_t i = 0; i < m; i++)
            x[i] = lsh_half_to_double((uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
    return rc ? -1 : 0;
}

/* Where scan_finite reads: the array, the slab and a buffer of `block` rows. */
struct scan {
    const struct rd *rd;
    const char *path;
    struct h5a h;
    size_t lead[2];
    struct at at;
    double *x;
    size_t block;
};

/* Rows [r0, r1) x columns [c0, c1) of the slab are finite, `block` rows at a time. */
static int scan_region(const struct scan *sc, size_t r0, size_t r1, size_t c0, size_t c1,
                       struct lsh_error *err)
{
    for (size_t r = r0; r < r1; r += sc->block) {
        const size_t rows = r1 - r < sc->block ? r1 - r : sc->block, cols = c1 - c0;
        memset(sc->x, 0, rows * cols * sizeof *sc->x); /* what unwritten parts read as */
        char why[120];
        if (h5a_read(&sc->h, sc->lead, r, rows, c0, cols, sc->x, why) < 0)
            return read_failed(sc->rd->fname, sc->path, why, err);
        for (size_t t = 0; t < rows * cols; t++)
            if (!isfinite(sc->x[t]))
                return not_finite(sc->rd, sc->path, sc->at, sc->x[t], r + t / cols,
                                  c0 + t % cols, err);
    }
    return 0;
}

/* The written chunks of a partly written chunked dataset that meet the
 * slab, one at a time.  Listing chunk i walks the index up to i, so this
 * pays only while the chunks are few against the slab's elements; else
 * returns 1 (not done). */
static int scan_chunks(const struct scan *sc, hid_t dcpl, struct lsh_error *err)
{
    const struct arr *a = sc->h.a;
    const int rank = a->rank, nl = rank - 2;
    const size_t rows = a->dims[nl], cols = a->dims[nl + 1];
    hsize_t cdims[4], nchunks = 0;
    if (H5Pget_chunk(dcpl, rank, cdims) != rank || H5Sselect_all(sc->h.fspace) < 0 ||
        H5Dget_num_chunks(sc->h.ds, sc->h.fspace, &nchunks) < 0 ||
        (double)nchunks * (double)nchunks * 32.0 > (double)rows * (double)cols)
        return 1;
    for (int i = 0; i < rank; i++)
        if (cdims[i] == 0)
            return 1;
    int rc = 0;
    for (hsize_t i = 0; !rc && i < nchunks; i++) {
        hsize_t off[4];
        unsigned mask;
        haddr_t addr;
        hsize_t size;
        if (H5Sselect_all(sc->h.fspace) < 0 ||
            H5Dget_chunk_info(sc->h.ds, sc->h.fspace, i, off, &mask, &addr, &size) < 0 ||
            off[nl] >= rows || off[nl + 1] >= cols)
            return lsh_error_set(err, LSH_EIO, "%s: cannot list the chunks of '%s'",
                                 sc->rd->fname, sc->path);
        int meets = 1;
        for (int j = 0; j < nl; j++)
            meets &= off[j] <= sc->lead[j] && sc->lead[j] - off[j] < cdims[j];
        if (!meets)
            continue;
        const size_t r1 = rows - off[nl] < cdims[nl] ? rows : (size_t)(off[nl] + cdims[nl]);
        const size_t c1 =
            cols - off[nl + 1] < cdims[nl + 1] ? cols : (size_t)(off[nl + 1] + cdims[nl + 1]);
        rc = scan_region(sc, (size_t)off[nl], r1, (size_t)off[nl + 1], c1, err);
    }
    return rc;
}

/* Every value of the [n, d] slab at lead is finite (SPEC 5: a NaN in the
 * input is an error before any work), at the cost of what the file stores
 * rather than of the shape it declares: unwritten parts all read as the
 * fill value, checked once, and of a partly written chunked dataset only
 * the written chunks are read.  A block of rows at a time, so memory stays
 * small. */
static int h5_scan(struct rd *rd, const char *path, const struct arr *a, const size_t *lead,
                   struct at at, struct lsh_error *err)
{
    const size_t rows = a->dims[a->rank - 2], cols = a->dims[a->rank - 1];
    struct scan sc = {.rd = rd, .path = path, .at = at};
    sc.lead[0] = lead[0];
    sc.lead[1] = lead[1];
    sc.block = cols >= 65536 ? 1 : 65536 / cols;
    if (sc.block > rows)
        sc.block = rows;
    int rc = h5a_open(rd, path, a, &sc.h, err);
    if (rc)
        return rc;
    sc.x = malloc(sc.block * cols * sizeof *sc.x);
    hid_t dcpl = H5Dget_create_plist(sc.h.ds);
    H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
    if (!sc.x)
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    else if (dcpl < 0 || H5Dget_space_status(sc.h.ds, &status) < 0)
        rc = lsh_error_set(err, LSH_EIO, "%s: cannot open '%s'", rd->fname, path);
    /* HDF5 gives unwritten parts the fill value only if the file set one and
     * did not say "never"; else it leaves the (zeroed) buffer as it was */
    H5D_fill_value_t defined = H5D_FILL_VALUE_UNDEFINED;
    H5D_fill_time_t when = H5D_FILL_TIME_NEVER;
    double fill = 0.0;
    if (!rc && status != H5D_SPACE_STATUS_ALLOCATED &&
        H5Pfill_value_defined(dcpl, &defined) >= 0 && defined == H5D_FILL_VALUE_USER_DEFINED &&
        H5Pget_fill_time(dcpl, &when) >= 0 && when != H5D_FILL_TIME_NEVER &&
        H5Pget_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill) >= 0 && !isfinite(fill)) {
        /* only the selected slab counts (an unwritten head that is not
         * selected is never read): read all of it, fill included */
        rc = scan_region(&sc, 0, rows, 0, cols, err);
        if (rc == LSH_EDATA && err) {
            const size_t len = strlen(err->message);
            snprintf(err->message + len, sizeof err->message - len,
                     " (a part of dataset '%s' never written, which reads as its fill value)",
                     path);
        }
    } else if (!rc && status != H5D_SPACE_STATUS_NOT_ALLOCATED) {
        if (status == H5D_SPACE_STATUS_ALLOCATED || H5Pget_layout(dcpl) != H5D_CHUNKED ||
            (rc = scan_chunks(&sc, dcpl, err)) == 1)
            rc = scan_region(&sc, 0, rows, 0, cols, err);
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    h5a_close(&sc.h);
    free(sc.x);
    return rc;
}

/* ---- reading a slab, either format ----------------------------------------------- */

/* Index of the [n, d] slab at (layer, head) among an array's slabs. */
static uint64_t slab_index(const struct arr *a, const size_t *lead)
{
    return a->rank == 4 ? (uint64_t)lead[0] * a->dims[1] + lead[1]
           : a->rank == 3 ? lead[0]
                          : 0;
}

/* The [n, d] slab at lead into x (n*d doubles), each value checked finite. */
static int arr_read(struct rd *rd, const char *path, const struct arr *a, const size_t *lead,
                    struct at at, double *x, struct lsh_error *err)
{
    const size_t rows = a->dims[a->rank - 2], cols = a->dims[a->rank - 1];
    int rc = 0;
    if (rd->npy) {
        char *p = lsh_dataset_file_path(path, rd->config_path);
        struct lsh_npy h;
        int fd = -1;
        rc = p ? lsh_npy_open(p, &h, &fd, err) : lsh_error_set(err, LSH_ENOMEM, "out of memory");
        for (int i = 0; !rc && i < a->rank; i++)
            if (h.rank != a->rank || h.shape[i] != a->dims[i])
                rc = lsh_error_set(err, LSH_EDATA, "'%s' changed while it was read", p);
        if (!rc)
            rc = lsh_npy_read(fd, &h, p, slab_index(a, lead) * rows * cols, rows * cols, x, err);
        if (fd >= 0)
            close(fd);
        free(p);
    } else {
        struct h5a h;
        rc = h5a_open(rd, path, a, &h, err);
        if (!rc) {
            char why[120];
            if (h5a_read(&h, lead, 0, rows, 0, cols, x, why) < 0)
                rc = read_failed(rd->fname, path, why, err);
            h5a_close(&h);
        }
    }
    for (size_t t = 0; !rc && t < rows * cols; t++)
        if (!isfinite(x[t]))
            rc = not_finite(rd, path, at, x[t], t / cols, t % cols, err);
    return rc;
}

/* Every value of the slab at lead is finite, with little memory. */
static int arr_scan(struct rd *rd, const char *path, const struct arr *a, const size_t *lead,
                    struct at at, struct lsh_error *err)
{
    if (!rd->npy)
        return h5_scan(rd, path, a, lead, at, err);
    const size_t rows = a->dims[a->rank - 2], cols = a->dims[a->rank - 1];
    const size_t total = rows * cols, block = 65536;
    char *p = lsh_dataset_file_path(path, rd->config_path);
    double *x = malloc(block * sizeof *x);
    struct lsh_npy h;
    int fd = -1;
    int rc = p && x ? lsh_npy_open(p, &h, &fd, err)
                    : lsh_error_set(err, LSH_ENOMEM, "out of memory");
    const uint64_t first = slab_index(a, lead) * total;
    for (size_t t0 = 0; !rc && t0 < total; t0 += block) {
        const size_t m = total - t0 < block ? total - t0 : block;
        rc = lsh_npy_read(fd, &h, p, first + t0, m, x, err);
        for (size_t t = 0; !rc && t < m; t++)
            if (!isfinite(x[t]))
                rc = not_finite(rd, path, at, x[t], (t0 + t) / cols, (t0 + t) % cols, err);
    }
    if (fd >= 0)
        close(fd);
    free(x);
    free(p);
    return rc;
}

/* ---- Q, K, V: arrays or path templates ------------------------------------------- */

/* One of Q, K, V as the config names it. */
struct src {
    const char *role;  /* "Q", "K", "V" */
    const char *path;  /* as the config gives it */
    int tl, th;        /* a template holding {layer} / {head} */
    int has_l, has_h;  /* the axes it has */
    size_t L, H;       /* their sizes (0 without) */
    size_t n, d;
    struct arr a;      /* the array, or a template's first expansion */
};

/* tmpl with {layer} and {head} replaced (a negative index is left as it
 * is); malloc'd, NULL when out of memory. */
static char *expand(const char *tmpl, long layer, long head)
{
    size_t cap = strlen(tmpl) + 1, n = 0;
    for (const char *s = tmpl; (s = strchr(s, '{')); s++)
        cap += 24;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *s = tmpl; *s;) {
        if (!strncmp(s, "{layer}", 7) && layer >= 0) {
            n += (size_t)snprintf(out + n, cap - n, "%ld", layer);
            s += 7;
        } else if (!strncmp(s, "{head}", 6) && head >= 0) {
            n += (size_t)snprintf(out + n, cap - n, "%ld", head);
            s += 6;
        } else {
            out[n++] = *s++;
        }
    }
    out[n] = '\0';
    return out;
}

/* visit(ctx, path) on tmpl resolved and expanded at (layer, head) when that
 * file exists (stat: links followed); *there says whether it did. */
static int visit_expansion(const char *tmpl, long layer, long head, const char *config_path,
                           int (*visit)(void *, const char *, const char *), void *ctx,
                           int *there)
{
    char *e = expand(tmpl, layer, head);
    char *p = e ? lsh_dataset_file_path(e, config_path) : NULL;
    struct stat st;
    *there = p && stat(p, &st) == 0;
    const int rc = !p ? -1 : *there ? visit(ctx, p, e) : 0;
    free(e);
    free(p);
    return rc;
}

int lsh_dataset_each_file(const struct lsh_dataset_spec *spec, const char *config_path,
                          int (*visit)(void *ctx, const char *path, const char *named),
                          void *ctx)
{
    int there = 0;
    if (spec->kind == LSH_DATA_HDF5)
        return visit_expansion(spec->file, -1, -1, config_path, visit, ctx, &there);
    if (spec->kind != LSH_DATA_NPY)
        return 0;
    const char *const src[3] = {spec->q, spec->k, spec->v};
    for (size_t m = 0; m < 3; m++) {
        if (!src[m])
            continue;
        const int tl = strstr(src[m], "{layer}") != NULL, th = strstr(src[m], "{head}") != NULL;
        /* each axis: the selection's indices, or (all) 0, 1, ... up to the
         * first expansion that does not exist, as the loader counts them */
        const size_t nl = !tl ? 1 : spec->n_layers ? spec->n_layers : LSH_AXIS_MAX;
        for (size_t li = 0; li < nl; li++) {
            const long l = !tl ? -1 : spec->n_layers ? (long)spec->layers[li] : (long)li;
            const size_t nh = !th ? 1 : spec->n_heads ? spec->n_heads : LSH_AXIS_MAX;
            int any = 0;
            for (size_t hi = 0; hi < nh; hi++) {
                const long h = !th ? -1 : spec->n_heads ? (long)spec->heads[hi] : (long)hi;
                int rc = visit_expansion(src[m], l, h, config_path, visit, ctx, &there);
                if (rc)
                    return rc;
                any |= there;
                if (!there && th && !spec->n_heads)
                    break;
            }
            if (!any && tl && !spec->n_layers)
                break;
        }
    }
    return 0;
}

/* "FILE: " for HDF5 (whose messages then name paths in it), "" for npy. */
static const char *prefix(const struct rd *rd, char *buf, size_t size)
{
    if (rd->npy)
        return "";
    snprintf(buf, size, "%s: ", rd->fname);
    return buf;
}

/* "'PATH', SHAPE" of a source: its path (a .npy file as resolved) and shape. */
static void src_label(const struct rd *rd, const struct src *s, char *buf, size_t size)
{
    char *p = rd->npy ? lsh_dataset_file_path(s->path, rd->config_path) : NULL;
    const char *path = p ? p : s->path;
    char shape[96];
    if (s->tl || s->th) {
        char ax[64] = "";
        if (s->tl)
            snprintf(ax, sizeof ax, "%zu layers%s", s->L, s->th ? " x " : "");
        if (s->th)
            snprintf(ax + strlen(ax), sizeof ax - strlen(ax), "%zu heads", s->H);
        if (s->has_h && !s->th)
            snprintf(shape, sizeof shape, "a template of %s, each %zu x %zu x %zu", ax, s->H,
                     s->n, s->d);
        else
            snprintf(shape, sizeof shape, "a template of %s, each %zu x %zu", ax, s->n, s->d);
    } else {
        dims_text(s->a.dims, s->a.rank, shape, sizeof shape);
    }
    snprintf(buf, size, "'%s', %s", path, shape);
    free(p);
}

static const char *axes_text(const struct src *s)
{
    return s->has_l && s->has_h ? "[layers, heads, n, d]"
           : s->has_h           ? "[heads, n, d]"
           : s->has_l           ? "[layers, n, d]"
                                : "[n, d]";
}

/* How many expansions of tmpl exist, counting one axis from 0 with the
 * other at `other` (-1: the template has no other axis).  One that is
 * neither there nor absent (arr_exists) ends the count, counted, so that
 * reading it names what it is. */
static size_t count_axis(struct rd *rd, const char *tmpl, int layer_axis, long other)
{
    size_t i = 0;
    for (; i < LSH_AXIS_MAX; i++) {
        char *p = expand(tmpl, layer_axis ? (long)i : other, layer_axis ? other : (long)i);
        const int there = p ? arr_exists(rd, p) : 0;
        free(p);
        if (there == 2) /* counted, and named when it is read */
            return i + 1;
        if (!there)
            break;
    }
    return i;
}

static int src_describe(struct rd *rd, const char *role, const char *path, struct src *s,
                        struct lsh_error *err)
{
    memset(s, 0, sizeof *s);
    s->role = role;
    s->path = path;
    s->tl = strstr(path, "{layer}") != NULL;
    s->th = strstr(path, "{head}") != NULL;
    if (!s->tl && !s->th) {
        int rc = arr_info(rd, path, &s->a, err);
        if (rc)
            return rc;
        const int r = s->a.rank;
        s->has_l = r == 4;
        s->has_h = r >= 3;
        s->L = r == 4 ? s->a.dims[0] : 0;
        s->H = r == 4 ? s->a.dims[1] : r == 3 ? s->a.dims[0] : 0;
        s->n = s->a.dims[r - 2];
        s->d = s->a.dims[r - 1];
        return 0;
    }
    s->has_l = s->tl;
    s->has_h = s->th;
    /* layers are counted at head 0, heads at the first selected layer
     * (docs/definitions.md 2.1; at layer 0 when that one is beyond the
     * layers, which the selection then names) */
    if (s->tl)
        s->L = count_axis(rd, path, 1, s->th ? 0 : -1);
    const long at_layer = rd->spec->n_layers && rd->spec->layers[0] < s->L
                              ? (long)rd->spec->layers[0] : 0;
    if (s->th)
        s->H = count_axis(rd, path, 0, s->tl ? at_layer : -1);
    char *first = expand(path, s->tl ? 0 : -1, s->th ? 0 : -1);
    if (!first)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    char name[LSH_ERROR_MSG_MAX / 2];
    arr_name(rd, first, name, sizeof name);
    int rc = 0;
    if ((s->tl && !s->L) || (s->th && !s->H))
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s does not exist: it is the first expansion of %s's template "
                           "'%s'; allowed: a template whose layers and heads are numbered "
                           "from 0",
                           name, role, path);
    if (!rc)
        rc = arr_info(rd, first, &s->a, err);
    /* Per-layer files of [heads, n, d] are how many tools dump a model: a
     * template with only {layer} takes its heads from the array. */
    const int per_layer_heads = s->tl && !s->th && s->a.rank == 3;
    if (!rc && s->a.rank != 2 && !per_layer_heads) {
        char shape[96];
        dims_text(s->a.dims, s->a.rank, shape, sizeof shape);
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s has rank %d (%s), an expansion of %s's template '%s'; need each "
                           "expansion to be a 2-D array [n, d]%s",
                           name, s->a.rank, shape, role, path,
                           s->tl && !s->th ? ", or [heads, n, d] (a template with only {layer})"
                                           : "");
    }
    free(first);
    if (!rc && per_layer_heads) {
        s->has_h = 1;
        s->H = s->a.dims[0];
    }
    if (!rc) {
        s->n = s->a.dims[s->a.rank - 2];
        s->d = s->a.dims[s->a.rank - 1];
    }
    return rc;
}

/* The array holding (layer l, head h) of s -- in the axes of s -- and the
 * slab's place in it: a template's expansion (checked to exist and to be
 * n x d; *owned is then malloc'd, free it) or s's own array. */
static int src_unit(struct rd *rd, const struct src *s, long l, long h, char **owned,
                    const char **path, struct arr *a, size_t lead[2], struct lsh_error *err)
{
    *owned = NULL;
    lead[0] = lead[1] = 0;
    if (!s->tl && !s->th) {
        *path = s->path;
        *a = s->a;
        if (a->rank == 4) {
            lead[0] = (size_t)l;
            lead[1] = (size_t)h;
        } else if (a->rank == 3) {
            lead[0] = (size_t)h;
        }
        return 0;
    }
    if (!(*owned = expand(s->path, s->tl ? l : -1, s->th ? h : -1)))
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    *path = *owned;
    char name[LSH_ERROR_MSG_MAX / 2], at[64];
    arr_name(rd, *owned, name, sizeof name);
    at_text((struct at){s->tl ? l : -1, s->th ? h : -1}, 0, 0, at, sizeof at);
    *strstr(at, "row") = '\0';
    if (!arr_exists(rd, *owned))
        return lsh_error_set(err, LSH_EDATA,
                             "%s does not exist (%sof %s's template '%s'); allowed: every "
                             "selected layer and head present",
                             name, at, s->role, s->path);
    int rc = arr_info(rd, *owned, a, err);
    int same = !rc && a->rank == s->a.rank;
    for (int i = 0; same && i < a->rank; i++)
        same = a->dims[i] == s->a.dims[i];
    if (!rc && !same) {
        char shape[96], first[96];
        dims_text(a->dims, a->rank, shape, sizeof shape);
        dims_text(s->a.dims, s->a.rank, first, sizeof first);
        rc = lsh_error_set(err, LSH_EDATA,
                           "%s is %s (%sof %s's template '%s'), but the first expansion is "
                           "%s; allowed: every expansion an array of one shape",
                           name, shape, at, s->role, s->path, first);
    }
    if (!rc && a->rank == 3) /* per-layer [heads, n, d] */
        lead[0] = (size_t)h;
    return rc;
}

/* What a dataset's sources hold and which of their problems it selects. */
struct resolved {
    struct src q, k, v;
    int has_k, has_v;
    size_t kv_heads, d_v;
    size_t n_layers, n_heads;
    int32_t *layers, *heads; /* owned */
};

static void resolved_fini(struct resolved *r)
{
    free(r->layers);
    free(r->heads);
    r->layers = r->heads = NULL;
}

/* One axis of the selection: `given` (n_given of them; none: all) against
 * what Q has (has: the axis exists; have: its size). */
static int select_axis(const struct rd *rd, const struct src *q, const char *key,
                       const char *noun, int has, size_t have, const uint32_t *given,
                       size_t n_given, int32_t **out, size_t *count, struct lsh_error *err)
{
    char pre[LSH_ERROR_FILE_MAX + 4], ql[LSH_ERROR_MSG_MAX / 2];
    src_label(rd, q, ql, sizeof ql);
    if (!has) {
        if (n_given) {
            return lsh_error_set(err, LSH_EDATA, "%s'%s:' is given, but Q (%s) has no %s axis; "
                                 "allowed: '%s:' only for 3-D or 4-D arrays or templates "
                                 "holding {%s}",
                                 prefix(rd, pre, sizeof pre), key, ql, noun, key, noun);
        }
        if (!(*out = malloc(sizeof **out)))
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        (*out)[0] = -1;
        *count = 1;
        return 0;
    }
    const size_t m = n_given ? n_given : have;
    /* `all` of an axis a file declares (a few kB can declare 2^40 heads) is
     * refused before anything is allocated for it */
    if (m > LSH_UNITS_MAX)
        return lsh_error_set(err, LSH_EDATA,
                             "%sQ (%s) has %zu %ss, and '%s: all' selects each as a problem; "
                             "allowed: at most %zu problems (select fewer with '%s:')",
                             prefix(rd, pre, sizeof pre), ql, have, noun, key, LSH_UNITS_MAX,
                             key);
    if (!(*out = malloc(m * sizeof **out)))
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    for (size_t i = 0; i < m; i++) {
        const size_t v = n_given ? given[i] : i;
        if (v >= have)
            return lsh_error_set(err, LSH_EDATA,
                                 "%s%s: %zu is out of range: Q (%s) has %zu %ss (0 to %zu)",
                                 prefix(rd, pre, sizeof pre), key, v, ql, have, noun,
                                 have - 1);
        (*out)[i] = (int32_t)v;
    }
    *count = m;
    return 0;
}

/* K or V against Q: the same axes and layers, n (and d for K), and a head
 * count dividing Q's. */
static int check_against_q(const struct rd *rd, const struct src *x, const struct src *q,
                           struct lsh_error *err)
{
    char pre[LSH_ERROR_FILE_MAX + 4], xl[LSH_ERROR_MSG_MAX / 3], ql[LSH_ERROR_MSG_MAX / 3];
    src_label(rd, x, xl, sizeof xl);
    src_label(rd, q, ql, sizeof ql);
    const char *p = prefix(rd, pre, sizeof pre);
    if (x->has_l != q->has_l || x->has_h != q->has_h)
        return lsh_error_set(err, LSH_EDATA,
                             "%s%s (%s) has axes %s but Q (%s) has %s; allowed: the same axes "
                             "for Q, K and V",
                             p, x->role, xl, axes_text(x), ql, axes_text(q));
    if (x->L != q->L)
        return lsh_error_set(err, LSH_EDATA,
                             "%s%s (%s) has %zu layers but Q (%s) has %zu; allowed: the same "
                             "layers",
                             p, x->role, xl, x->L, ql, q->L);
    if (x->role[0] == 'K' && (x->n != q->n || x->d != q->d))
        return lsh_error_set(err, LSH_EDATA, "%sK (%s) and Q (%s) differ in shape", p, xl, ql);
    if (x->role[0] == 'V' && x->n != q->n)
        return lsh_error_set(err, LSH_EDATA, "%sV ('%s') has %zu rows but Q has %zu (V: %s; Q: %s)",
                             p, x->path, x->n, q->n, xl, ql);
    if (x->has_h && (x->H > q->H || q->H % x->H))
        return lsh_error_set(err, LSH_EDATA,
                             "%s%s (%s) has %zu heads and Q (%s) %zu; allowed: Q's heads a "
                             "multiple of %s's (grouped-query attention)",
                             p, x->role, xl, x->H, ql, q->H, x->role);
    return 0;
}

static int resolve(struct rd *rd, int separate, struct resolved *r, struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = rd->spec;
    memset(r, 0, sizeof *r);
    int rc = src_describe(rd, "Q", spec->q, &r->q, err);
    if (!rc && spec->k && !(rc = src_describe(rd, "K", spec->k, &r->k, err)))
        r->has_k = 1;
    if (!rc && r->has_k)
        rc = check_against_q(rd, &r->k, &r->q, err);
    if (!rc && spec->v && !(rc = src_describe(rd, "V", spec->v, &r->v, err)))
        r->has_v = 1;
    if (!rc && r->has_v)
        rc = check_against_q(rd, &r->v, &r->q, err);
    if (rc)
        return rc;
    char pre[LSH_ERROR_FILE_MAX + 4], kl[LSH_ERROR_MSG_MAX / 3], vl[LSH_ERROR_MSG_MAX / 3];
    if (r->has_k && r->has_v && r->k.H != r->v.H) {
        src_label(rd, &r->k, kl, sizeof kl);
        src_label(rd, &r->v, vl, sizeof vl);
        return lsh_error_set(err, LSH_EDATA,
                             "%sK (%s) has %zu heads but V (%s) has %zu; allowed: as many "
                             "key as value heads",
                             prefix(rd, pre, sizeof pre), kl, r->k.H, vl, r->v.H);
    }
    r->kv_heads = r->has_k ? r->k.H : r->has_v ? r->v.H : r->q.H;
    r->d_v = r->has_v ? r->v.d : spec->d_v ? spec->d_v : r->q.d;
    rc = select_axis(rd, &r->q, "layers", "layer", r->q.has_l, r->q.L, spec->layers, spec->n_layers,
                     &r->layers, &r->n_layers, err);
    if (!rc)
        rc = select_axis(rd, &r->q, "heads", "head", r->q.has_h, r->q.H, spec->heads, spec->n_heads,
                         &r->heads, &r->n_heads, err);
    if (!rc && r->n_layers * r->n_heads > LSH_UNITS_MAX)
        rc = lsh_error_set(err, LSH_EDATA,
                           "%sdataset '%s' selects %zu layers x %zu heads = %zu problems; "
                           "allowed: at most %zu (select fewer with 'layers:' and 'heads:')",
                           prefix(rd, pre, sizeof pre), spec->name, r->n_layers, r->n_heads,
                           r->n_layers * r->n_heads, LSH_UNITS_MAX);
    if (!rc) {
        char what[LSH_ERROR_MSG_MAX / 2];
        snprintf(what, sizeof what, "dataset '%s' (%s)", spec->name,
                 rd->npy ? "npy" : rd->fname);
        rc = check_shape(what, LSH_EDATA, r->q.n, r->q.d, r->d_v, 0, separate,
                         physical_memory(), "this machine's memory, one layer and head at a "
                         "time", err);
    }
    if (rc)
        resolved_fini(r);
    return rc;
}

/* Query head h's key/value head (grouped-query attention); -1 without heads. */
static long kv_head(const struct resolved *r, long h)
{
    return h < 0 ? -1 : (long)((uint64_t)h * r->kv_heads / r->q.H);
}

/* Check (probe) or read (make, x != NULL) the slab of source s at (l, h). */
static int src_slab(struct rd *rd, const struct src *s, long l, long h, double *x,
                    struct lsh_error *err)
{
    char *owned = NULL;
    const char *path = NULL;
    struct arr a;
    size_t lead[2];
    int rc = src_unit(rd, s, l, h, &owned, &path, &a, lead, err);
    const struct at at = {s->has_l ? l : -1, s->has_h ? h : -1};
    if (!rc)
        rc = x ? arr_read(rd, path, &a, lead, at, x, err) : arr_scan(rd, path, &a, lead, at, err);
    free(owned);
    return rc;
}

static int rd_open(struct rd *rd, const struct lsh_dataset_spec *spec, const char *config_path,
                   struct lsh_error *err)
{
    memset(rd, 0, sizeof *rd);
    rd->spec = spec;
    rd->config_path = config_path;
    rd->npy = spec->kind == LSH_DATA_NPY;
    rd->file = H5I_INVALID_HID;
    if (!spec->q || (!rd->npy && !spec->file))
        return lsh_error_set(err, LSH_EINVAL, "dataset '%s': no %s given", spec->name,
                             spec->q ? "file" : "q");
    if (rd->npy)
        return 0;
    if (!(rd->fname = lsh_dataset_file_path(spec->file, config_path)))
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    rd->file = open_h5(rd->fname, err);
    return rd->file < 0 ? (err ? err->code : LSH_EIO) : 0;
}

static void rd_close(struct rd *rd)
{
    if (rd->file >= 0)
        H5Fclose(rd->file);
    free(rd->fname);
    rd->fname = NULL;
    rd->file = H5I_INVALID_HID;
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

/* Every selected slab of Q, K and V is there and finite; each key/value
 * slab once (query heads are ascending, so their kv heads are too). */
static int scan_selected(struct rd *rd, const struct resolved *r, struct lsh_error *err)
{
    int rc = 0;
    for (size_t a = 0; !rc && a < r->n_layers; a++) {
        long last_kv = -2;
        for (size_t b = 0; !rc && b < r->n_heads; b++) {
            const long l = r->layers[a], h = r->heads[b], kv = kv_head(r, h);
            rc = src_slab(rd, &r->q, l, h, NULL, err);
            if (!rc && r->has_k && kv != last_kv)
                rc = src_slab(rd, &r->k, l, kv, NULL, err);
            if (!rc && r->has_v && kv != last_kv)
                rc = src_slab(rd, &r->v, l, kv, NULL, err);
            last_kv = kv;
        }
    }
    return rc;
}

static int probe_file(const struct lsh_dataset_spec *spec, const char *config_path,
                      struct lsh_dataset_layout *out, struct lsh_error *err)
{
    struct rd rd;
    struct resolved r;
    int rc = rd_open(&rd, spec, config_path, err);
    int have_r = 0;
    if (!rc)
        have_r = !(rc = resolve(&rd, 0, &r, err));
    if (!rc)
        rc = scan_selected(&rd, &r, err);
    if (!rc) {
        char *src = rd.npy ? lsh_dataset_file_path(spec->q, config_path) : strdup(rd.fname);
        if (!src)
            rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
        out->source = src;
    }
    if (!rc) {
        out->n = r.q.n;
        out->d = r.q.d;
        out->d_v = r.d_v;
        out->n_layers = r.n_layers;
        out->n_heads = r.n_heads;
        out->layers = r.layers;
        out->heads = r.heads;
        r.layers = r.heads = NULL;
        out->src_layers = r.q.L;
        out->src_heads = r.q.H;
        out->kv_heads = r.q.has_h ? r.kv_heads : 0;
        snprintf(out->dtype, sizeof out->dtype, "%s", r.q.a.dtype);
    }
    if (have_r)
        resolved_fini(&r);
    rd_close(&rd);
    return rc;
}

int lsh_dataset_probe(const struct lsh_dataset_spec *spec, const char *config_path,
                      struct lsh_dataset_layout *out, struct lsh_error *err)
{
    memset(out, 0, sizeof *out);
    int rc;
    if (spec->kind == LSH_DATA_HDF5 || spec->kind == LSH_DATA_NPY) {
        rc = probe_file(spec, config_path, out, err);
    } else {
        rc = check_generated(spec, 0, err);
        if (!rc)
            rc = single_unit(out, "generated", "float64", err);
        if (!rc) {
            out->n = spec->n;
            out->d = spec->d;
            out->d_v = spec->d_v ? spec->d_v : spec->d;
        }
    }
    if (rc)
        lsh_dataset_layout_free(out);
    return rc;
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
    /* on cache lines: the reference reads V's rows in place as lshlab_fma_dots' y */
    ds->q = lsh_alloc_doubles(lsh_size_mul(ds->n, ds->d), 1);
    ds->v = lsh_alloc_doubles(lsh_size_mul(ds->n, ds->d_v), 1);
    if (separate)
        ds->k = lsh_alloc_doubles(lsh_size_mul(ds->n, ds->d), 1);
    if (!ds->q || !ds->v || (separate && !ds->k))
        return lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory (%zu x %zu)",
                             ds->spec->name, ds->n, ds->d);
    return 0;
}


/* Is v one of list[0..n)? */
static int listed(const int32_t *list, size_t n, int32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

/* The shapes resolve() found against those a probe found (probed may be
 * NULL): a file rewritten since the probe is not read as it now is. */
static int check_unchanged(const struct rd *rd, const struct resolved *r,
                           const struct lsh_dataset_layout *probed, struct lsh_error *err)
{
    const size_t kv = r->q.has_h ? r->kv_heads : 0;
    if (!probed || (probed->n == r->q.n && probed->d == r->q.d && probed->d_v == r->d_v &&
                    probed->src_layers == r->q.L && probed->src_heads == r->q.H &&
                    probed->kv_heads == kv))
        return 0;
    char pre[LSH_ERROR_FILE_MAX + 4];
    return lsh_error_set(err, LSH_EDATA,
                         "%sdataset '%s' changed since it was checked: each problem is now %zu "
                         "x %zu (V %zu columns) of %zu layers, %zu heads, %zu key/value heads; "
                         "it was %zu x %zu (V %zu columns) of %zu layers, %zu heads, %zu "
                         "key/value heads; allowed: input files left as they are during a run "
                         "(run it again)",
                         rd->npy ? "" : prefix(rd, pre, sizeof pre), rd->spec->name, r->q.n,
                         r->q.d, r->d_v, r->q.L, r->q.H, kv, probed->n, probed->d, probed->d_v,
                         probed->src_layers, probed->src_heads, probed->kv_heads);
}

static int load_file(struct lsh_dataset *ds, const char *config_path, int separate,
                     const struct lsh_dataset_layout *probed, struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    struct rd rd;
    struct resolved r;
    int have_r = 0;
    int rc = rd_open(&rd, spec, config_path, err);
    if (!rc && separate && !spec->k)
        rc = lsh_error_set(err, LSH_EDATA,
                           "dataset '%s': keys: separate needs a K matrix ('k:' %s)",
                           spec->name, rd.npy ? "file" : "path in the file");
    if (!rc)
        have_r = !(rc = resolve(&rd, separate, &r, err));
    if (!rc)
        rc = check_unchanged(&rd, &r, probed, err);
    const long l = ds->unit.layer, h = ds->unit.head;
    if (!rc && !(listed(r.layers, r.n_layers, ds->unit.layer) &&
                 listed(r.heads, r.n_heads, ds->unit.head)))
        rc = lsh_error_set(err, LSH_EINVAL,
                           "dataset '%s': layer %ld, head %ld is not one of the problems it "
                           "selects", spec->name, l, h);
    if (!rc) {
        ds->n = r.q.n;
        ds->d = r.q.d;
        ds->d_v = r.d_v;
        rc = alloc_matrices(ds, separate, err);
    }
    if (!rc)
        rc = src_slab(&rd, &r.q, l, h, ds->q, err);
    if (!rc && separate)
        rc = src_slab(&rd, &r.k, l, kv_head(&r, h), ds->k, err);
    if (!rc && r.has_v)
        rc = src_slab(&rd, &r.v, l, kv_head(&r, h), ds->v, err);
    else if (!rc && fill_gaussian(ds->v, ds->n * ds->d_v,
                                  lsh_seed_unit(lsh_seed_str(ds->seed, "v"), ds->unit.layer,
                                                ds->unit.head)))
        rc = lsh_error_set(err, LSH_ENOMEM, "dataset '%s': out of memory", spec->name);
    if (have_r)
        resolved_fini(&r);
    rd_close(&rd);
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
    return lsh_dataset_make_as(spec, config_path, config_seed, separate, unit, NULL, out, err);
}

int lsh_dataset_make_as(const struct lsh_dataset_spec *spec, const char *config_path,
                        uint64_t config_seed, int separate, struct lsh_dataset_unit unit,
                        const struct lsh_dataset_layout *probed, struct lsh_dataset **out,
                        struct lsh_error *err)
{
    struct lsh_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    ds->spec = spec;
    ds->unit = unit;
    ds->seed = lsh_seed_str(config_seed, spec->name);
    int rc = spec->kind == LSH_DATA_HDF5 || spec->kind == LSH_DATA_NPY
                 ? load_file(ds, config_path, separate, probed, err)
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
    else if (spec->kind == LSH_DATA_HDF5 || spec->kind == LSH_DATA_NPY)
        b = lsh_size_add(b, (size_t)4 << 20); /* type conversion and chunk caches */
    return lsh_size_add(b, sizeof(struct lsh_dataset) + 256);
}
