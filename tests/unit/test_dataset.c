/* test_dataset.c - generated data has the distribution SPEC 6 describes and
 * depends only on (seed, name); HDF5 data is read exactly, and every bad
 * file is refused with a message naming it. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "dataset.h"
#include "rng.h"

static char dir[64];

#define NOUNIT ((struct lsh_dataset_unit){-1, -1})

/* The shape of a dataset's problems, from its probe. */
static int probe_shape(const struct lsh_dataset_spec *s, const char *cfgpath, size_t *n,
                       size_t *d, size_t *d_v, struct lsh_error *err)
{
    struct lsh_dataset_layout lay;
    int rc = lsh_dataset_probe(s, cfgpath, &lay, err);
    *n = lay.n;
    *d = lay.d;
    *d_v = lay.d_v;
    lsh_dataset_layout_free(&lay);
    return rc;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/lshlab-ds-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(dataset, .init = setup, .fini = teardown);

static struct lsh_dataset_spec spec_of(enum lsh_data_kind kind, size_t n, size_t d)
{
    struct lsh_dataset_spec s;
    memset(&s, 0, sizeof s);
    s.name = "set";
    s.kind = kind;
    s.n = n;
    s.d = d;
    s.clusters = 4;
    s.spread = 0.5;
    s.norm = -1;
    return s;
}

Test(dataset, gaussian_entries_have_mean_0_variance_1)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_GAUSSIAN, 4000, 16);
    struct lsh_dataset *ds;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_make(&s, NULL, 1, 0, NOUNIT, &ds, &err), 0, "%s", err.message);
    cr_expect_eq(ds->d_v, 16);
    cr_expect_null(ds->k);
    double m = 0, v = 0;
    size_t N = ds->n * ds->d;
    for (size_t t = 0; t < N; t++)
        m += ds->q[t];
    m /= (double)N;
    for (size_t t = 0; t < N; t++)
        v += (ds->q[t] - m) * (ds->q[t] - m);
    v /= (double)N;
    cr_expect(fabs(m) < 5.0 / sqrt((double)N), "mean %g", m);
    cr_expect(fabs(v - 1) < 5.0 * sqrt(2.0 / (double)N), "variance %g", v);
    lsh_dataset_free(ds);
}

/* clustered: row = norm (c + spread z / sqrt(d)), so E||row||^2 = norm^2 (1 + spread^2)
 * with norm = sqrt(d); and rows of one cluster are close to one unit centre. */
Test(dataset, clustered_rows_have_the_expected_norm_and_clusters)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_CLUSTERED, 2000, 32);
    struct lsh_dataset *ds;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_make(&s, NULL, 9, 0, NOUNIT, &ds, &err), 0, "%s", err.message);
    double sq = 0;
    for (size_t i = 0; i < ds->n; i++)
        for (size_t e = 0; e < ds->d; e++)
            sq += ds->q[i * ds->d + e] * ds->q[i * ds->d + e];
    sq /= (double)ds->n;
    double want = 32.0 * (1 + 0.25);
    cr_expect(fabs(sq - want) / want < 0.02, "mean squared norm %g, want %g", sq, want);
    /* With 4 clusters, each row's cosine to some other row is high (same
     * cluster: about 1/(1 + spread^2) = 0.8). */
    size_t close = 0;
    for (size_t i = 0; i < 50; i++) {
        const double *x = ds->q + i * ds->d;
        double best = -1;
        for (size_t j = 0; j < ds->n; j++) {
            if (j == i)
                continue;
            const double *y = ds->q + j * ds->d;
            double xy = 0, xx = 0, yy = 0;
            for (size_t e = 0; e < ds->d; e++) {
                xy += x[e] * y[e];
                xx += x[e] * x[e];
                yy += y[e] * y[e];
            }
            double c = xy / sqrt(xx * yy);
            best = c > best ? c : best;
        }
        close += best > 0.7;
    }
    cr_expect_eq(close, 50);
    lsh_dataset_free(ds);
}

Test(dataset, draws_depend_on_seed_and_name_only)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_CLUSTERED, 30, 4);
    struct lsh_dataset *a, *b, *c, *k;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_make(&s, NULL, 5, 0, NOUNIT, &a, &err), 0);
    cr_assert_eq(lsh_dataset_make(&s, NULL, 5, 0, NOUNIT, &b, &err), 0);
    cr_assert_eq(lsh_dataset_make(&s, NULL, 5, 1, NOUNIT, &k, &err), 0);
    s.name = "other";
    cr_assert_eq(lsh_dataset_make(&s, NULL, 5, 0, NOUNIT, &c, &err), 0);
    cr_expect_eq(memcmp(a->q, b->q, 30 * 4 * sizeof(double)), 0);
    cr_expect_neq(memcmp(a->q, c->q, 30 * 4 * sizeof(double)), 0);
    /* asking for K changes neither Q nor V */
    cr_expect_eq(memcmp(a->q, k->q, 30 * 4 * sizeof(double)), 0);
    cr_expect_eq(memcmp(a->v, k->v, 30 * 4 * sizeof(double)), 0);
    cr_assert_not_null(k->k);
    cr_expect_neq(memcmp(k->q, k->k, 30 * 4 * sizeof(double)), 0);
    lsh_dataset_free(a);
    lsh_dataset_free(b);
    lsh_dataset_free(c);
    lsh_dataset_free(k);
}

static void write_h5(const char *path, const char *name, hid_t type, int rank,
                     const hsize_t *dims, const void *data)
{
    hid_t f = access(path, F_OK) == 0 ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                                      : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0);
    cr_assert(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
}

Test(dataset, hdf5_reads_q_k_v_exactly_and_converts_floats)
{
    char path[128];
    snprintf(path, sizeof path, "%s/data.h5", dir);
    double q[3 * 2] = {2.385, -0.71, 0.5, 1e-3, -4.25, 3.0};
    float k[3 * 2] = {1.5f, 2.5f, -0.25f, 0.125f, 8.0f, -1.0f};
    float v[3 * 1] = {1.75f, -2.0f, 3.0e-3f};
    hsize_t dq[2] = {3, 2}, dv[2] = {3, 1};
    write_h5(path, "q", H5T_NATIVE_DOUBLE, 2, dq, q);
    write_h5(path, "k", H5T_NATIVE_FLOAT, 2, dq, k);
    /* big-endian on disk: HDF5 swaps the bytes */
    hid_t be = H5Tcopy(H5T_IEEE_F32BE);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(2, dv, NULL);
    hid_t dsv = H5Dcreate2(f, "v", be, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(H5Dwrite(dsv, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(dsv);
    H5Sclose(sp);
    H5Fclose(f);
    H5Tclose(be);
    struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
    s.file = "data.h5";
    s.q = "q";
    s.k = "k";
    s.v = "v";
    char cfgpath[128];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.yaml", dir); /* file is relative to it */
    size_t n, d, dvv;
    struct lsh_error err;
    cr_assert_eq(probe_shape(&s, cfgpath, &n, &d, &dvv, &err), 0, "%s", err.message);
    cr_expect(n == 3 && d == 2 && dvv == 1);
    struct lsh_dataset *ds;
    cr_assert_eq(lsh_dataset_make(&s, cfgpath, 1, 1, NOUNIT, &ds, &err), 0, "%s", err.message);
    for (int t = 0; t < 6; t++) {
        cr_expect_eq(ds->q[t], q[t]);
        cr_expect_eq(ds->k[t], (double)k[t]);
    }
    for (int t = 0; t < 3; t++)
        cr_expect_eq(ds->v[t], (double)v[t]);
    lsh_dataset_free(ds);
}

static void expect_refused(const char *setup_name, const char *qpath, const char *kpath,
                           const char *needle)
{
    char path[128], cfgpath[128];
    snprintf(path, sizeof path, "%s/%s.h5", dir, setup_name);
    snprintf(cfgpath, sizeof cfgpath, "%s/c.yaml", dir);
    struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
    char fname[64];
    snprintf(fname, sizeof fname, "%s.h5", setup_name);
    s.file = fname;
    s.q = (char *)qpath;
    s.k = (char *)kpath;
    size_t n, d, dv;
    struct lsh_error err;
    lsh_error_clear(&err);
    struct lsh_dataset *ds = NULL;
    int rc = probe_shape(&s, cfgpath, &n, &d, &dv, &err);
    if (!rc)
        rc = lsh_dataset_make(&s, cfgpath, 1, kpath != NULL, NOUNIT, &ds, &err);
    cr_expect_neq(rc, 0, "%s was accepted", setup_name);
    cr_expect(strstr(err.message, needle), "%s: message '%s' lacks '%s'", setup_name,
              err.message, needle);
    lsh_dataset_free(ds);
}

Test(dataset, bad_hdf5_inputs_are_refused_with_clear_messages)
{
    char path[128];
    double x[6] = {1, 2, 3, 4, 5, 6}, nanv[6] = {1, 2, NAN, 4, 5, 6}, infv[6] = {1, 2, 3, INFINITY, 5, 6};
    hsize_t d2[2] = {3, 2}, d1[1] = {6}, d5[5] = {1, 1, 1, 3, 2}, dk[2] = {2, 3};
    int ints[6] = {1, 2, 3, 4, 5, 6};
    snprintf(path, sizeof path, "%s/ok.h5", dir);
    write_h5(path, "q", H5T_NATIVE_DOUBLE, 2, d2, x);
    write_h5(path, "flat", H5T_NATIVE_DOUBLE, 1, d1, x);
    write_h5(path, "rank5", H5T_NATIVE_DOUBLE, 5, d5, x);
    write_h5(path, "ints", H5T_NATIVE_INT, 2, d2, ints);
    write_h5(path, "u16", H5T_NATIVE_UINT16, 2, d2, (uint16_t[6]){1, 2, 3, 4, 5, 6});
    write_h5(path, "kbad", H5T_NATIVE_DOUBLE, 2, dk, x);
    write_h5(path, "nan", H5T_NATIVE_DOUBLE, 2, d2, nanv);
    write_h5(path, "inf", H5T_NATIVE_DOUBLE, 2, d2, infv);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 6);
    char text[6 * 6] = "abcdeabcdeabcdeabcdeabcdeabcde";
    write_h5(path, "text", st, 2, d2, text);
    H5Tclose(st);
    snprintf(path, sizeof path, "%s/noth5.h5", dir);
    FILE *f = fopen(path, "w");
    fputs("not hdf5\n", f);
    fclose(f);

    expect_refused("missing", "q", NULL, "missing.h5");
    expect_refused("noth5", "q", NULL, "not an HDF5 file");
    expect_refused("ok", "nope", NULL, "no dataset 'nope'");
    expect_refused("ok", "flat", NULL, "rank 1");
    expect_refused("ok", "rank5", NULL, "rank 5; need a 2-D array [n, d], 3-D [heads, n, d] "
                                       "or 4-D [layers, heads, n, d] (its shape: 1 x 1 x 1 x 3 x 2)");
    expect_refused("ok", "ints", NULL, "'ints' holds 32-bit signed integers; allowed: IEEE "
                                       "float16, float32 or float64");
    expect_refused("ok", "u16", NULL, "16-bit unsigned integers (bfloat16");
    expect_refused("ok", "text", NULL, "not numeric");
    expect_refused("ok", "q", "kbad", "differ in shape");
    expect_refused("ok", "nan", NULL, "NaN");
    expect_refused("ok", "inf", NULL, "Inf");
}

/* ---- sizes (issue 8) ------------------------------------------------------------- */

/* 8 x 2^61 x 8 bytes is 2^67: n*d*sizeof(double) wraps to 0 in size_t, and a
 * malloc(0) buffer was then filled.  Probe and make each refuse, naming the
 * dataset and the values. */
static void expect_size_refused(struct lsh_dataset_spec s, const char *needle)
{
    size_t n, d, dv;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_expect_eq(probe_shape(&s, NULL, &n, &d, &dv, &err), LSH_ECONFIG, "%s accepted",
                 needle);
    cr_expect(strstr(err.message, "dataset 'set'") && strstr(err.message, needle) &&
                  strstr(err.message, "allowed"),
              "%s", err.message);
    for (int separate = 0; separate < 2; separate++) {
        struct lsh_dataset *ds = NULL;
        lsh_error_clear(&err);
        cr_expect_eq(lsh_dataset_make(&s, NULL, 1, separate, NOUNIT, &ds, &err), LSH_ECONFIG,
                     "%s made", needle);
        cr_expect(strstr(err.message, needle), "%s", err.message);
        lsh_dataset_free(ds);
    }
}

Test(dataset, sizes_whose_bytes_wrap_around_are_refused_before_allocating)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_GAUSSIAN, 8, 2305843009213693952u);
    expect_size_refused(s, "d = 2305843009213693952");
    s = spec_of(LSH_DATA_GAUSSIAN, 8, 4);
    s.d_v = 2305843009213693952u;
    expect_size_refused(s, "d_v = 2305843009213693952");
    s = spec_of(LSH_DATA_CLUSTERED, 8, 8); /* 2^58 centres x 8 x 8 bytes = 2^64 */
    s.clusters = 288230376151711744u;
    expect_size_refused(s, "clusters = 288230376151711744");
    s = spec_of(LSH_DATA_GAUSSIAN, (size_t)1 << 62, 2); /* 2n rows of a separate-keys fit */
    expect_size_refused(s, "n = 4611686018427387904");
    s = spec_of(LSH_DATA_CLUSTERED, 8, 8);
    s.clusters = 0;
    expect_size_refused(s, "clusters is 0");
}

/* ---- clustered data at the edge of float64 (issue 8) --------------------------- */

/* d = 1: the centres are +-1, so a row is norm (+-1 + spread z) and, with
 * spread 1e308 and norm 1e-3, about 1e305 z: representable, though
 * spread z alone is not once |z| > 1.8 (about 7% of draws). */
Test(dataset, clustered_rows_are_finite_when_representable_though_spread_z_is_not)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_CLUSTERED, 400, 1);
    s.spread = 1e308;
    s.norm = 1e-3;
    struct lsh_dataset *ds;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_make(&s, NULL, 3, 1, NOUNIT, &ds, &err), 0, "%s", err.message);
    double big = 0;
    for (size_t i = 0; i < 400; i++) {
        cr_expect(isfinite(ds->q[i]) && isfinite(ds->k[i]), "row %zu: %g %g", i, ds->q[i],
                  ds->k[i]);
        big = fabs(ds->q[i]) > big ? fabs(ds->q[i]) : big;
    }
    /* max |z| of 400 normal draws is above 2 with probability 1 - 0.954^400 */
    cr_expect(big > 2e305 && big < 1e307, "largest |row| %g", big);
    lsh_dataset_free(ds);
}

/* norm 1e300 and spread 1e300 make rows of about 1e600: refused when
 * validated (probe) as when made, with the values, never written as Inf. */
Test(dataset, clustered_rows_beyond_float64_are_refused_with_a_reason)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_CLUSTERED, 50, 4);
    s.spread = 1e300;
    s.norm = 1e300;
    size_t n, d, dv;
    struct lsh_dataset *ds = NULL;
    struct lsh_error err;
    lsh_error_clear(&err);
    cr_expect_eq(probe_shape(&s, NULL, &n, &d, &dv, &err), LSH_ECONFIG);
    cr_expect(strstr(err.message, "beyond float64"), "%s", err.message);
    lsh_error_clear(&err);
    cr_expect_eq(lsh_dataset_make(&s, NULL, 3, 0, NOUNIT, &ds, &err), LSH_ECONFIG);
    cr_expect(strstr(err.message, "dataset 'set'") && strstr(err.message, "beyond float64") &&
                  strstr(err.message, "norm 1e+300") && strstr(err.message, "spread 1e+300"),
              "%s", err.message);
    lsh_dataset_free(ds);
}

/* ---- HDF5 files that used to hang or mislead (issue 8) ------------------------- */

/* Probe `file` (relative to dir) with q = "q"; the return code, err filled. */
static int probe_file(const char *file, struct lsh_error *err)
{
    char cfgpath[128];
    snprintf(cfgpath, sizeof cfgpath, "%s/c.yaml", dir);
    struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
    s.file = (char *)file;
    s.q = "q";
    size_t n, d, dv;
    lsh_error_clear(err);
    return probe_shape(&s, cfgpath, &n, &d, &dv, err);
}

/* A dataset "q" of dims, never written (storage is allocated late, or by
 * chunk, by default); chunk: its
 * chunk shape, or NULL for contiguous; fill: its fill value. */
static hid_t create_unwritten(const char *path, const hsize_t dims[2], const hsize_t *chunk,
                              double fill, hid_t *file)
{
    *file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(*file >= 0);
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk)
        cr_assert(H5Pset_chunk(dcpl, 2, chunk) >= 0);
    cr_assert(H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill) >= 0);
    hid_t ds = H5Dcreate2(*file, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(ds >= 0);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

/* 10^7 x 4096 float64 is 328 GB; the file is a few kB.  Scanning its fill
 * values took minutes: the shape is refused before anything is read. */
Test(dataset, a_huge_declared_hdf5_dataset_is_refused_at_once, .timeout = 20)
{
    char path[128];
    snprintf(path, sizeof path, "%s/huge.h5", dir);
    hid_t f, ds = create_unwritten(path, (hsize_t[2]){10000000, 4096}, NULL, 0.0, &f);
    H5Dclose(ds);
    H5Fclose(f);
    struct lsh_error err;
    cr_expect_eq(probe_file("huge.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "huge.h5") && strstr(err.message, "n = 10000000") &&
                  strstr(err.message, "d = 4096") && strstr(err.message, "memory"),
              "%s", err.message);
}

/* 2^16 x 4096 float64 (2 GiB) declared, chunks of 64 rows, only the first
 * and the last chunk written, with a NaN in the last row: the scan reads the
 * written chunks one by one (and checks the fill value of the rest once),
 * and still reports where the NaN is. */
Test(dataset, a_nan_in_the_written_chunks_of_a_sparse_hdf5_dataset_is_found, .timeout = 20)
{
    enum { ROWS = 1 << 16, COLS = 4096, CR = 64 };
    char path[128];
    snprintf(path, sizeof path, "%s/sparse.h5", dir);
    hid_t f, ds = create_unwritten(path, (hsize_t[2]){ROWS, COLS}, (hsize_t[2]){CR, COLS}, 2.385,
                                   &f);
    double *x = calloc((size_t)CR * COLS, sizeof *x);
    cr_assert_not_null(x);
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(2, (hsize_t[2]){CR, COLS}, NULL);
    for (hsize_t r0 = 0; r0 < ROWS; r0 += ROWS - CR) {
        x[(size_t)CR * COLS - 2] = r0 ? NAN : 0.5; /* row ROWS - 1, column COLS - 2 */
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, (hsize_t[2]){r0, 0}, NULL,
                            (hsize_t[2]){CR, COLS}, NULL);
        cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, x) >= 0);
    }
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
    H5Fclose(f);
    free(x);
    struct lsh_error err;
    cr_expect_eq(probe_file("sparse.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "'q' holds NaN at row 65535, column 4094"), "%s",
              err.message);
}

/* Unwritten parts read as the fill value: a NaN fill is named as such. */
Test(dataset, an_unwritten_hdf5_dataset_with_a_nan_fill_value_is_refused)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fill.h5", dir);
    hid_t f, ds = create_unwritten(path, (hsize_t[2]){5, 3}, NULL, NAN, &f);
    H5Dclose(ds);
    H5Fclose(f);
    struct lsh_error err;
    cr_expect_eq(probe_file("fill.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "fill value") && strstr(err.message, "NaN"), "%s",
              err.message);
    /* a finite fill is fine: the data is 5 x 3 of it */
    ds = create_unwritten(path, (hsize_t[2]){5, 3}, (hsize_t[2]){2, 3}, 2.385, &f);
    H5Dclose(ds);
    H5Fclose(f);
    cr_expect_eq(probe_file("fill.h5", &err), 0, "%s", err.message);
}

/* A FIFO blocked open() until a writer came; a directory or a device is no
 * HDF5 file either.  Each is refused by what it is, at once. */
Test(dataset, a_fifo_directory_or_device_is_refused_without_blocking, .timeout = 20)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fifo.h5", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    snprintf(path, sizeof path, "%s/folder.h5", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    struct lsh_error err;
    cr_expect_eq(probe_file("fifo.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "fifo.h5") && strstr(err.message, "is a FIFO"), "%s",
              err.message);
    cr_expect_eq(probe_file("folder.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "folder.h5' is a folder"), "%s", err.message);
    cr_expect_eq(probe_file("/dev/null", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "is a character device"), "%s", err.message);
}

/* An external link makes HDF5 open another file by name: one to a FIFO
 * blocked the probe forever, one to a device read it, so each is refused
 * with what it is; a link to a regular file (by a relative name, found
 * beside the linking file) still reads. */
Test(dataset, an_external_link_to_a_fifo_or_device_is_refused_without_blocking,
     .timeout = 20)
{
    char path[128], fifo[128];
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const double x[6] = {1, 2, 3, 4, 5, 6};
    const hsize_t dims[2] = {3, 2};
    snprintf(path, sizeof path, "%s/target.h5", dir);
    write_h5(path, "q", H5T_NATIVE_DOUBLE, 2, dims, x);
    snprintf(path, sizeof path, "%s/links.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    cr_assert(H5Lcreate_external("pipe", "/q", f, "to_fifo", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    cr_assert(H5Lcreate_external("/dev/zero", "/q", f, "to_zero", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    cr_assert(H5Lcreate_external("target.h5", "/", f, "to_file", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    cr_assert(H5Lcreate_external("pipe", "/", f, "fifo_grp0", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    char cfgpath[128];
    snprintf(cfgpath, sizeof cfgpath, "%s/c.yaml", dir);
    struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
    s.file = "links.h5";
    size_t n = 0, d = 0, dv = 0;
    struct lsh_error err;
    s.q = "to_fifo";
    cr_expect_eq(probe_shape(&s, cfgpath, &n, &d, &dv, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "'to_fifo' is an external link to") &&
                  strstr(err.message, "pipe', which is a FIFO"),
              "%s", err.message);
    s.q = "to_zero";
    cr_expect_eq(probe_shape(&s, cfgpath, &n, &d, &dv, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "'/dev/zero', which is a character device"), "%s",
              err.message);
    s.q = "to_file/q";
    cr_expect_eq(probe_shape(&s, cfgpath, &n, &d, &dv, &err), 0, "%s", err.message);
    cr_expect(n == 3 && d == 2, "n = %zu, d = %zu", n, d);
    /* a template's enumeration looks through links the same way */
    s.q = "fifo_grp{head}/q";
    cr_expect_eq(probe_shape(&s, cfgpath, &n, &d, &dv, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "pipe', which is a FIFO"), "%s", err.message);
}

/* A chunk compressed with lzf (id 32000), which Debian's libhdf5 lacks: the
 * filter is optional at creation, so HDF5 accepts it unregistered, and the
 * chunk is written raw with its filter mask saying "applied". */
Test(dataset, an_unavailable_compression_filter_is_named_with_what_to_do)
{
    cr_assert_eq(H5Zfilter_avail(32000), 0, "this libhdf5 has lzf; the test needs it absent");
    char path[128];
    snprintf(path, sizeof path, "%s/lzf.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {4, 2};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_chunk(dcpl, 2, dims) >= 0);
    cr_assert(H5Pset_filter(dcpl, 32000, H5Z_FLAG_OPTIONAL, 0, NULL) >= 0);
    hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(ds >= 0);
    unsigned char raw[24] = "not really lzf, 24 bytes";
    cr_assert(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, (hsize_t[2]){0, 0}, sizeof raw, raw) >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    struct lsh_error err;
    cr_expect_eq(probe_file("lzf.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "lzf.h5") && strstr(err.message, "'q'") &&
                  strstr(err.message, "filter 32000 (lzf)") && strstr(err.message, "h5repack") &&
                  strstr(err.message, "HDF5_PLUGIN_PATH"),
              "%s", err.message);
}

/* Rows 0-1 of a 6 x 2 dataset in chunks of 2 rows are written: rows 2-5
 * read as the fill value when one is set, else as 0 (HDF5 leaves a missing
 * chunk of a file without a fill value as the buffer was) - and probe and
 * make agree.  Freed blocks of NaN first, so that an unzeroed buffer shows. */
Test(dataset, unwritten_hdf5_rows_read_as_the_fill_value_or_as_zero)
{
    static const double fills[3] = {2.385, 0.0, NAN};
    static const H5D_fill_time_t when[3] = {H5D_FILL_TIME_IFSET, H5D_FILL_TIME_IFSET,
                                            H5D_FILL_TIME_NEVER};
    for (int c = 0; c < 3; c++) {
        char path[128], cfgpath[128];
        snprintf(path, sizeof path, "%s/part%d.h5", dir, c);
        snprintf(cfgpath, sizeof cfgpath, "%s/c.yaml", dir);
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(2, (hsize_t[2]){6, 2}, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 2, (hsize_t[2]){2, 2});
        if (c != 1) /* c == 1: no fill value set */
            H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fills[c]);
        H5Pset_fill_time(dcpl, when[c]);
        hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        cr_assert(ds >= 0);
        const double x[4] = {-0.75, 1.25, 3.5, -2.0};
        hid_t ms = H5Screate_simple(2, (hsize_t[2]){2, 2}, NULL);
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, (hsize_t[2]){0, 0}, NULL, (hsize_t[2]){2, 2},
                            NULL);
        cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, ms, sp, H5P_DEFAULT, x) >= 0);
        H5Sclose(ms);
        H5Dclose(ds);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Fclose(f);

        void *junk[16];
        for (int j = 0; j < 16; j++) {
            double *b = malloc(12 * sizeof *b);
            for (int t = 0; t < 12; t++)
                b[t] = NAN;
            junk[j] = b;
        }
        for (int j = 0; j < 16; j++)
            free(junk[j]);
        struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
        char fname[32];
        snprintf(fname, sizeof fname, "part%d.h5", c);
        s.file = fname;
        s.q = "q";
        size_t n, d, dv;
        struct lsh_error err;
        cr_assert_eq(probe_shape(&s, cfgpath, &n, &d, &dv, &err), 0, "%d: %s", c,
                     err.message);
        struct lsh_dataset *got;
        cr_assert_eq(lsh_dataset_make(&s, cfgpath, 1, 0, NOUNIT, &got, &err), 0, "%d: %s", c,
                     err.message);
        for (int t = 0; t < 12; t++) {
            const double want = t < 4 ? x[t] : c == 0 ? 2.385 : 0.0;
            cr_expect_eq(got->q[t], want, "case %d, value %d: %g", c, t, got->q[t]);
        }
        lsh_dataset_free(got);
    }
}

/* A dataset whose values live in an external raw file - here a FIFO, which
 * would block the first read - is refused before anything is read. */
Test(dataset, an_hdf5_dataset_stored_in_external_files_is_refused_without_reading,
     .timeout = 20)
{
    char path[128], raw[128];
    snprintf(path, sizeof path, "%s/ext.h5", dir);
    snprintf(raw, sizeof raw, "%s/ext.raw", dir);
    cr_assert_eq(mkfifo(raw, 0600), 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(2, (hsize_t[2]){3, 2}, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_external(dcpl, raw, 0, 3 * 2 * sizeof(double)) >= 0);
    hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(ds >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    struct lsh_error err;
    cr_expect_eq(probe_file("ext.h5", &err), LSH_EDATA);
    cr_expect(strstr(err.message, "ext.h5") && strstr(err.message, "external raw data files"),
              "%s", err.message);
}

/* ---- layers and heads (SPEC 11) ------------------------------------------------- */

/* A value no two (layer, head, row, column) share, exact in float32 too:
 * each part a multiple of 2^-6 below 2^6. */
static double val(int m, int l, int h, int i, int e)
{
    return 16.0 * m + 4.0 * l + 1.0 * h + 0.125 * i + 0.015625 * e - 20.0;
}

/* An array of `rank` with the last dims[] of [L, H, n, d] filled by val(m). */
static void write_val(const char *path, const char *name, hid_t type, int m, int rank,
                      const hsize_t *dims)
{
    size_t total = 1;
    for (int r = 0; r < rank; r++)
        total *= dims[r];
    double *x = malloc(total * sizeof *x);
    const size_t L = rank == 4 ? dims[0] : 1, H = rank >= 3 ? dims[rank - 3] : 1,
                 n = dims[rank - 2], d = dims[rank - 1];
    for (size_t l = 0; l < L; l++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < n; i++)
                for (size_t e = 0; e < d; e++)
                    x[((l * H + h) * n + i) * d + e] = val(m, (int)l, (int)h, (int)i, (int)e);
    hid_t f = access(path, F_OK) == 0 ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)
                                      : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0, "cannot create %s", name);
    cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    free(x);
}

static struct lsh_dataset_spec h5spec(const char *q, const char *k, const char *v)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_HDF5, 0, 0);
    s.file = "heads.h5";
    s.q = (char *)q;
    s.k = (char *)k;
    s.v = (char *)v;
    return s;
}

static const char *cfg_path(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/c.yaml", dir);
    return p;
}

static const char *heads_file(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/heads.h5", dir);
    return p;
}

/* ds holds val(m) of (l, h) for Q (m 0), K (m 1, kv head), V (m 2, kv head). */
static void expect_unit(const struct lsh_dataset *ds, int l, int h, int kvh, int check_v)
{
    for (size_t i = 0; i < ds->n; i++)
        for (size_t e = 0; e < ds->d; e++) {
            cr_expect_eq(ds->q[i * ds->d + e], val(0, l, h, (int)i, (int)e),
                         "Q of layer %d head %d at %zu,%zu", l, h, i, e);
            if (ds->k)
                cr_expect_eq(ds->k[i * ds->d + e], val(1, l, kvh, (int)i, (int)e),
                             "K of layer %d head %d (kv %d) at %zu,%zu", l, h, kvh, i, e);
        }
    for (size_t i = 0; check_v && i < ds->n; i++)
        for (size_t e = 0; e < ds->d_v; e++)
            cr_expect_eq(ds->v[i * ds->d_v + e], val(2, l, kvh, (int)i, (int)e),
                         "V of layer %d head %d at %zu,%zu", l, h, i, e);
}

Test(dataset, a_rank4_hdf5_dataset_lists_its_selected_units_and_reads_each_exactly)
{
    const hsize_t dq[4] = {2, 3, 5, 2}, dk[4] = {2, 3, 5, 2}, dv[4] = {2, 3, 5, 3};
    write_val(heads_file(), "q", H5T_IEEE_F64BE, 0, 4, dq);
    write_val(heads_file(), "k", H5T_IEEE_F32LE, 1, 4, dk);
    write_val(heads_file(), "v", H5T_IEEE_F32BE, 2, 4, dv);
    struct lsh_dataset_spec s = h5spec("q", "k", "v");
    uint32_t heads[2] = {0, 2};
    s.heads = heads;
    s.n_heads = 2;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n == 5 && lay.d == 2 && lay.d_v == 3);
    cr_expect(lay.n_layers == 2 && lay.layers[0] == 0 && lay.layers[1] == 1);
    cr_expect(lay.n_heads == 2 && lay.heads[0] == 0 && lay.heads[1] == 2);
    cr_expect(lay.src_layers == 2 && lay.src_heads == 3 && lay.kv_heads == 3);
    cr_expect_str_eq(lay.dtype, "float64");
    cr_expect_str_eq(lay.source, heads_file());
    for (int l = 0; l < 2; l++)
        for (int b = 0; b < 2; b++) {
            const int h = heads[b];
            struct lsh_dataset *ds = NULL;
            cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 1, (struct lsh_dataset_unit){l, h},
                                          &ds, &err),
                         0, "%s", err.message);
            cr_expect(ds->unit.layer == l && ds->unit.head == h);
            cr_expect(ds->n == 5 && ds->d == 2 && ds->d_v == 3);
            expect_unit(ds, l, h, h, 1);
            lsh_dataset_free(ds);
        }
    /* a head the selection leaves out is not made */
    struct lsh_dataset *ds = NULL;
    cr_expect_neq(lsh_dataset_make(&s, cfg_path(), 1, 1, (struct lsh_dataset_unit){0, 1}, &ds,
                                   &err), 0);
    cr_expect(strstr(err.message, "layer 0, head 1 is not one of"), "%s", err.message);
    lsh_dataset_layout_free(&lay);
}

Test(dataset, a_rank3_dataset_maps_query_heads_to_fewer_kv_heads)
{
    const hsize_t dq[3] = {4, 3, 2}, dk[3] = {2, 3, 2};
    write_val(heads_file(), "q", H5T_NATIVE_DOUBLE, 0, 3, dq);
    write_val(heads_file(), "k", H5T_NATIVE_FLOAT, 1, 3, dk);
    struct lsh_dataset_spec s = h5spec("q", "k", NULL);
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n_layers == 1 && lay.layers[0] == -1 && lay.n_heads == 4);
    cr_expect(lay.src_layers == 0 && lay.src_heads == 4 && lay.kv_heads == 2);
    const int kv_of[4] = {0, 0, 1, 1}; /* floor(h * 2 / 4) */
    for (int h = 0; h < 4; h++) {
        cr_expect_eq(lay.heads[h], h);
        struct lsh_dataset *ds = NULL;
        cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 9, 1, (struct lsh_dataset_unit){-1, h},
                                      &ds, &err),
                     0, "%s", err.message);
        expect_unit(ds, 0, h, kv_of[h], 0);
        /* V is drawn from the dataset's "v" stream mixed with (layer, head) */
        struct lsh_rng *rng = lsh_rng_alloc(
            lsh_seed_unit(lsh_seed_str(lsh_seed_str(9, "set"), "v"), -1, h));
        for (size_t t = 0; t < ds->n * ds->d_v; t++)
            cr_expect_eq(ds->v[t], lsh_rng_normal(rng), "V of head %d at %zu", h, t);
        lsh_rng_free(rng);
        lsh_dataset_free(ds);
    }
    lsh_dataset_layout_free(&lay);
}

static void expect_heads_refused(struct lsh_dataset_spec s, const char *n1, const char *n2)
{
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_dataset_probe(&s, cfg_path(), &lay, &err);
    cr_expect_neq(rc, 0, "accepted (%s)", n1);
    cr_expect(strstr(err.message, n1) && (!n2 || strstr(err.message, n2)),
              "message '%s' lacks '%s' or '%s'", err.message, n1, n2 ? n2 : "");
    cr_expect(strstr(err.message, heads_file()) || strstr(err.message, ".npy"),
              "message '%s' does not name the file", err.message);
}

Test(dataset, bad_layer_and_head_shapes_and_selections_are_refused_naming_both_shapes)
{
    const hsize_t d4[4] = {2, 4, 3, 2}, d4k3[4] = {2, 3, 3, 2}, d4l3[4] = {3, 4, 3, 2},
                  d3[3] = {4, 3, 2}, d2[2] = {3, 2},
                  d4k2[4] = {2, 2, 3, 2}, d4n[4] = {2, 4, 4, 2};
    write_val(heads_file(), "q", H5T_NATIVE_DOUBLE, 0, 4, d4);
    write_val(heads_file(), "k3", H5T_NATIVE_DOUBLE, 1, 4, d4k3);
    write_val(heads_file(), "k2", H5T_NATIVE_DOUBLE, 1, 4, d4k2);
    write_val(heads_file(), "kl3", H5T_NATIVE_DOUBLE, 1, 4, d4l3);
    write_val(heads_file(), "kn", H5T_NATIVE_DOUBLE, 1, 4, d4n);
    write_val(heads_file(), "k_rank3", H5T_NATIVE_DOUBLE, 1, 3, d3);
    write_val(heads_file(), "q2", H5T_NATIVE_DOUBLE, 0, 2, d2);
    expect_heads_refused(h5spec("q", "k3", NULL), "K ('k3', 2 x 3 x 3 x 2) has 3 heads and Q "
                                                  "('q', 2 x 4 x 3 x 2) 4", "multiple");
    expect_heads_refused(h5spec("q", "kl3", NULL), "has 3 layers but Q", "2 x 4 x 3 x 2");
    expect_heads_refused(h5spec("q", "kn", NULL), "K ('kn', 2 x 4 x 4 x 2) and Q ('q', 2 x 4 x "
                                                  "3 x 2) differ in shape", NULL);
    expect_heads_refused(h5spec("q", "k_rank3", NULL), "has axes [heads, n, d] but Q",
                         "[layers, heads, n, d]");
    expect_heads_refused(h5spec("q", "k2", "q"), "K ('k2', 2 x 2 x 3 x 2) has 2 heads but V ('q', "
                                                 "2 x 4 x 3 x 2) has 4", NULL);
    struct lsh_dataset_spec s = h5spec("q", "k2", "k3");
    expect_heads_refused(s, "V ('k3', 2 x 3 x 3 x 2) has 3 heads", "multiple");
    uint32_t five[1] = {5}, one[1] = {1};
    s = h5spec("q", NULL, NULL);
    s.heads = five;
    s.n_heads = 1;
    expect_heads_refused(s, "heads: 5 is out of range: Q ('q', 2 x 4 x 3 x 2) has 4 heads (0 to 3)", NULL);
    s = h5spec("q", NULL, NULL);
    s.layers = five;
    s.n_layers = 1;
    expect_heads_refused(s, "layers: 5 is out of range: Q ('q', 2 x 4 x 3 x 2) has 2 layers (0 to 1)", NULL);
    s = h5spec("q2", NULL, NULL);
    s.heads = one;
    s.n_heads = 1;
    expect_heads_refused(s, "'heads:' is given, but Q ('q2', 3 x 2) has no head axis", NULL);
}

Test(dataset, a_nan_in_a_selected_head_is_named_with_layer_head_row_and_column)
{
    const hsize_t dq[4] = {2, 3, 4, 2};
    double x[2 * 3 * 4 * 2];
    for (size_t t = 0; t < sizeof x / sizeof *x; t++)
        x[t] = 0.25 * (double)t;
    x[((1 * 3 + 2) * 4 + 3) * 2 + 1] = NAN; /* layer 1, head 2, row 3, column 1 */
    write_h5(heads_file(), "q", H5T_NATIVE_DOUBLE, 4, dq, x);
    struct lsh_dataset_spec s = h5spec("q", NULL, NULL);
    expect_heads_refused(s, "dataset 'q' holds NaN at layer 1, head 2, row 3, column 1", NULL);
    struct lsh_dataset *ds = NULL;
    struct lsh_error err;
    cr_expect_neq(lsh_dataset_make(&s, cfg_path(), 1, 0, (struct lsh_dataset_unit){1, 2}, &ds,
                                   &err), 0, "make read a NaN");
    cr_expect(strstr(err.message, "NaN at layer 1, head 2, row 3, column 1"), "%s", err.message);
    /* not selected: not read */
    uint32_t h01[2] = {0, 1};
    s.heads = h01;
    s.n_heads = 2;
    struct lsh_dataset_layout lay;
    cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    lsh_dataset_layout_free(&lay);
}

/* Found by the hostile pass: a chunked [heads, n, d] dataset with a NaN fill
 * value whose heads 2 and 3 were never written was refused even when only
 * heads 0 and 1 are selected; an unwritten head that is selected is named
 * (head, row, column) as reading its fill value. */
Test(dataset, a_nan_fill_value_counts_only_in_the_selected_heads)
{
    const hsize_t dims[3] = {4, 3, 2}, chunk[3] = {1, 3, 2};
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t sp = H5Screate_simple(3, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const double fill = NAN;
    cr_assert(H5Pset_chunk(dcpl, 3, chunk) >= 0);
    cr_assert(H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill) >= 0);
    hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(ds >= 0);
    double x[2 * 3 * 2];
    for (size_t t = 0; t < sizeof x / sizeof *x; t++)
        x[t] = 0.5 + (double)t;
    hid_t ms = H5Screate_simple(3, (hsize_t[3]){2, 3, 2}, NULL);
    cr_assert(H5Sselect_hyperslab(sp, H5S_SELECT_SET, (hsize_t[3]){0, 0, 0}, NULL,
                                  (hsize_t[3]){2, 3, 2}, NULL) >= 0);
    cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, ms, sp, H5P_DEFAULT, x) >= 0); /* heads 0, 1 */
    H5Sclose(ms);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    struct lsh_dataset_spec s = h5spec("q", NULL, NULL);
    uint32_t h01[2] = {0, 1}, h2[1] = {2};
    s.heads = h01;
    s.n_heads = 2;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *out = NULL;
    cr_expect_eq(lsh_dataset_make(&s, cfg_path(), 1, 0, (struct lsh_dataset_unit){-1, 1}, &out,
                                  &err), 0, "%s", err.message);
    lsh_dataset_free(out);
    s.heads = h2;
    s.n_heads = 1;
    cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "holds NaN at head 2, row 0, column 0") &&
                  strstr(err.message, "never written, which reads as its fill value"),
              "%s", err.message);
}

/* ---- element types ------------------------------------------------------------- */

/* IEEE binary16 as an HDF5 type of the given byte order. */
static hid_t half_type(H5T_order_t order)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    cr_assert(H5Tset_fields(t, 15, 10, 5, 0, 10) >= 0 && H5Tset_precision(t, 16) >= 0 &&
              H5Tset_size(t, 2) >= 0 && H5Tset_ebias(t, 15) >= 0 && H5Tset_order(t, order) >= 0);
    return t;
}

/* float16 bit patterns and their values, worked out by hand. */
static const uint16_t half_bits[9] = {0x0001, 0x03ff, 0x0400, 0x3c00, 0x3c01,
                                      0xc0c4, 0x7bff, 0x8001, 0x0000};
static const double half_vals[9] = {5.9604644775390625e-08, 6.0975551605224609375e-05,
                                    6.103515625e-05, 1.0, 1.0009765625, -2.3828125, 65504.0,
                                    -5.9604644775390625e-08, 0.0};

Test(dataset, hdf5_float16_in_either_byte_order_is_read_exactly_with_subnormals)
{
    const hsize_t dims[2] = {3, 3};
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t le = half_type(H5T_ORDER_LE), be = half_type(H5T_ORDER_BE);
    const char *names[3] = {"q", "k", "bad"};
    hid_t types[3] = {le, be, be};
    uint16_t inf[9];
    memcpy(inf, half_bits, sizeof inf);
    inf[5] = 0xfc00; /* -Inf at row 1, column 2 */
    for (int i = 0; i < 3; i++) {
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t ds = H5Dcreate2(f, names[i], types[i], sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert(ds >= 0);
        cr_assert(H5Dwrite(ds, le, H5S_ALL, H5S_ALL, H5P_DEFAULT, i == 2 ? inf : half_bits) >= 0);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Tclose(le);
    H5Tclose(be);
    H5Fclose(f);
    struct lsh_dataset_spec s = h5spec("q", "k", NULL);
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect_str_eq(lay.dtype, "float16");
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *ds = NULL;
    cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 1, NOUNIT, &ds, &err), 0, "%s",
                 err.message);
    for (int t = 0; t < 9; t++) {
        cr_expect_eq(ds->q[t], half_vals[t], "Q[%d] = %.17g", t, ds->q[t]);
        cr_expect_eq(ds->k[t], half_vals[t], "K[%d] (big-endian) = %.17g", t, ds->k[t]);
    }
    lsh_dataset_free(ds);
    expect_heads_refused(h5spec("bad", NULL, NULL), "dataset 'bad' holds Inf at row 1, column 2",
                         NULL);
}

/* ---- path templates --------------------------------------------------------------- */

static void write_group_val(hid_t f, const char *path, int m, int l, int h, size_t n, size_t d)
{
    double x[64];
    for (size_t i = 0; i < n; i++)
        for (size_t e = 0; e < d; e++)
            x[i * d + e] = val(m, l, h, (int)i, (int)e);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    const hsize_t dims[2] = {n, d};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0, "cannot create %s", path);
    cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Pclose(lcpl);
}

Test(dataset, hdf5_templates_enumerate_layers_and_heads_and_map_kv_heads)
{
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    char p[64];
    for (int l = 0; l < 2; l++) {
        for (int h = 0; h < 3; h++) {
            snprintf(p, sizeof p, "/layer%d/head%d/q", l, h);
            write_group_val(f, p, 0, l, h, 4, 2);
        }
        snprintf(p, sizeof p, "/layer%d/head0/k", l); /* one kv head */
        write_group_val(f, p, 1, l, 0, 4, 2);
    }
    write_group_val(f, "/layer0/head4/q", 0, 0, 4, 4, 2); /* after a gap: not counted */
    write_group_val(f, "/only/h0", 0, 0, 0, 4, 2);
    write_group_val(f, "/only/h1", 0, 0, 1, 4, 2);
    write_group_val(f, "/odd/h0", 0, 0, 0, 4, 2);
    write_group_val(f, "/odd/h1", 0, 0, 1, 3, 2);
    H5Fclose(f);
    const hsize_t d3[3] = {2, 4, 2};
    write_val(heads_file(), "/cube0", H5T_NATIVE_DOUBLE, 0, 3, d3);

    struct lsh_dataset_spec s = h5spec("/layer{layer}/head{head}/q", "/layer{layer}/head{head}/k",
                                       NULL);
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n == 4 && lay.d == 2 && lay.n_layers == 2 && lay.n_heads == 3);
    cr_expect(lay.src_layers == 2 && lay.src_heads == 3 && lay.kv_heads == 1);
    cr_expect_str_eq(lay.dtype, "float32");
    lsh_dataset_layout_free(&lay);
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 3; h++) {
            struct lsh_dataset *ds = NULL;
            cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 1,
                                          (struct lsh_dataset_unit){l, h}, &ds, &err),
                         0, "%s", err.message);
            expect_unit(ds, l, h, 0, 0);
            lsh_dataset_free(ds);
        }
    uint32_t four[1] = {4};
    s.heads = four;
    s.n_heads = 1;
    expect_heads_refused(s, "heads: 4 is out of range: Q ('/layer{layer}/head{head}/q', a "
                            "template of 2 layers x 3 heads, each 4 x 2) has 3 heads", NULL);

    /* {head} only: no layer axis */
    s = h5spec("/only/h{head}", NULL, NULL);
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n_layers == 1 && lay.layers[0] == -1 && lay.n_heads == 2 &&
              lay.heads[1] == 1 && lay.src_layers == 0 && lay.src_heads == 2);
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *ds = NULL;
    cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 0, (struct lsh_dataset_unit){-1, 1}, &ds,
                                  &err), 0, "%s", err.message);
    expect_unit(ds, 0, 1, 0, 0);
    lsh_dataset_free(ds);

    expect_heads_refused(h5spec("/odd/h{head}", NULL, NULL),
                         "dataset '/odd/h1' is 3 x 2 (head 1, of Q's template '/odd/h{head}'), "
                         "but the first expansion is 4 x 2", NULL);
    /* rank 3 is [heads, n, d] only under a {layer}-only template
     * (tests/py/test_reader_layouts.py); under {head} it is refused */
    expect_heads_refused(h5spec("/cube{head}", NULL, NULL),
                         "dataset '/cube0' has rank 3 (2 x 4 x 2), an expansion of Q's template",
                         "need each expansion to be a 2-D array");
    expect_heads_refused(h5spec("/none{head}", NULL, NULL),
                         "dataset '/none0' does not exist: it is the first expansion of Q's "
                         "template '/none{head}'", NULL);
    expect_heads_refused(h5spec("/layer{layer}/head{head}/q", "/only/h{head}", NULL),
                         "K ('/only/h{head}', a template of 2 heads, each 4 x 2) has axes "
                         "[heads, n, d] but Q", "[layers, heads, n, d]");
}

Test(dataset, a_missing_expansion_of_a_two_axis_template_is_named)
{
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_group_val(f, "/l0/h0", 0, 0, 0, 2, 2);
    write_group_val(f, "/l0/h1", 0, 0, 1, 2, 2);
    write_group_val(f, "/l1/h0", 0, 1, 0, 2, 2);
    H5Fclose(f);
    struct lsh_dataset_spec s = h5spec("/l{layer}/h{head}", NULL, NULL);
    expect_heads_refused(s, "dataset '/l1/h1' does not exist (layer 1, head 1, of Q's template "
                            "'/l{layer}/h{head}')", NULL);
    uint32_t zero[1] = {0};
    s.heads = zero;
    s.n_heads = 1;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    lsh_dataset_layout_free(&lay);
}

/* ---- npy ---------------------------------------------------------------------- */

/* x as IEEE binary16 bits; x must be exactly representable. */
static uint16_t to_half(double x)
{
    const uint16_t s = signbit(x) ? 0x8000 : 0;
    x = fabs(x);
    if (x < 6.103515625e-05)
        return s | (uint16_t)(x * 16777216.0); /* subnormal: x / 2^-24 */
    int e;
    const double m = frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
    return s | (uint16_t)((e + 14) << 10) | (uint16_t)((m * 2.0 - 1.0) * 1024.0);
}

/* A .npy file (version 1) of `descr` holding val(m) over dims[] of rank 2..4. */
static void write_npy(const char *name, const char *descr, int m, int rank, const size_t *dims)
{
    char dict[160], shape[64] = "";
    for (int r = 0; r < rank; r++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%zu, ", dims[r]);
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
             descr, shape);
    size_t hlen = strlen(dict) + 1;
    while ((10 + hlen) % 64)
        hlen++;
    const size_t L = rank == 4 ? dims[0] : 1, H = rank >= 3 ? dims[rank - 3] : 1,
                 n = dims[rank - 2], d = dims[rank - 1];
    const size_t size = (size_t)(descr[2] - '0'), big = descr[0] == '>';
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hlen,
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, 10, f);
    fprintf(f, "%-*s\n", (int)hlen - 1, dict);
    for (size_t l = 0; l < L; l++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < n; i++)
                for (size_t e = 0; e < d; e++) {
                    const double x = val(m, (int)l, (int)h, (int)i, (int)e);
                    uint64_t u = 0;
                    if (size == 2) {
                        u = to_half(x);
                    } else if (size == 4) {
                        float fl = (float)x;
                        uint32_t w;
                        memcpy(&w, &fl, 4);
                        u = w;
                    } else {
                        memcpy(&u, &x, 8);
                    }
                    for (size_t b = 0; b < size; b++)
                        fputc((int)(u >> (8 * (big ? size - 1 - b : b))) & 0xff, f);
                }
    fclose(f);
}

static struct lsh_dataset_spec npyspec(const char *q, const char *k, const char *v)
{
    struct lsh_dataset_spec s = spec_of(LSH_DATA_NPY, 0, 0);
    s.q = (char *)q;
    s.k = (char *)k;
    s.v = (char *)v;
    return s;
}

Test(dataset, npy_rank4_arrays_of_each_dtype_and_byte_order_read_each_unit_exactly)
{
    /* val() values need up to 12 significant bits: float16 gets a small m */
    const size_t dq[4] = {2, 2, 3, 2}, dk[4] = {2, 1, 3, 2}, dv[4] = {2, 1, 3, 4};
    write_npy("q.npy", "<f8", 0, 4, dq);
    write_npy("k.npy", ">f4", 1, 4, dk);
    write_npy("v.npy", ">f8", 2, 4, dv);
    write_npy("q16.npy", ">f2", 0, 4, dq);
    struct lsh_dataset_spec s = npyspec("q.npy", "k.npy", "v.npy");
    uint32_t one[1] = {1};
    s.layers = one;
    s.n_layers = 1;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n == 3 && lay.d == 2 && lay.d_v == 4);
    cr_expect(lay.n_layers == 1 && lay.layers[0] == 1 && lay.n_heads == 2 && lay.heads[1] == 1);
    cr_expect(lay.src_layers == 2 && lay.src_heads == 2 && lay.kv_heads == 1);
    cr_expect_str_eq(lay.dtype, "float64");
    char want[160];
    snprintf(want, sizeof want, "%s/q.npy", dir);
    cr_expect_str_eq(lay.source, want);
    lsh_dataset_layout_free(&lay);
    for (int h = 0; h < 2; h++) {
        struct lsh_dataset *ds = NULL;
        cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 1, (struct lsh_dataset_unit){1, h},
                                      &ds, &err),
                     0, "%s", err.message);
        expect_unit(ds, 1, h, 0, 1);
        lsh_dataset_free(ds);
    }
    /* float16, big-endian: values beyond 11 bits are rounded by to_half's
     * truncation identically on both sides only when exact, so check those */
    s = npyspec("q16.npy", NULL, NULL);
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect_str_eq(lay.dtype, "float16");
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *ds = NULL;
    cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 0, (struct lsh_dataset_unit){1, 1}, &ds,
                                  &err), 0, "%s", err.message);
    for (size_t i = 0; i < 3; i++)
        for (size_t e = 0; e < 2; e++)
            cr_expect_eq(ds->q[i * 2 + e], val(0, 1, 1, (int)i, (int)e), "at %zu,%zu", i, e);
    lsh_dataset_free(ds);
}

Test(dataset, npy_templates_give_a_layer_axis_and_errors_name_the_files)
{
    const size_t d2[2] = {3, 2}, d2n[2] = {4, 2};
    write_npy("q_l0.npy", "<f4", 0, 2, d2);
    write_npy("q_l1.npy", "<f4", 0, 2, d2);
    write_npy("k_l0.npy", "<f8", 1, 2, d2);
    write_npy("k_l1.npy", "<f8", 1, 2, d2);
    write_npy("kn_l0.npy", "<f8", 1, 2, d2n);
    struct lsh_dataset_spec s = npyspec("q_l{layer}.npy", "k_l{layer}.npy", NULL);
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n_layers == 2 && lay.layers[1] == 1 && lay.n_heads == 1 && lay.heads[0] == -1);
    cr_expect(lay.src_layers == 2 && lay.src_heads == 0 && lay.kv_heads == 0);
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *ds = NULL;
    cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 1, (struct lsh_dataset_unit){1, -1}, &ds,
                                  &err), 0, "%s", err.message);
    /* each file is one layer's [n, d]: val(m, 0, 0) in each */
    expect_unit(ds, 0, 0, 0, 0);
    lsh_dataset_free(ds);
    char want[400];
    snprintf(want, sizeof want, "K ('%s/kn_l{layer}.npy', a template of 1 layers, each 4 x 2) "
                                "has 1 layers but Q ('%s/q_l{layer}.npy'", dir, dir);
    expect_heads_refused(npyspec("q_l{layer}.npy", "kn_l{layer}.npy", NULL), want, NULL);
    snprintf(want, sizeof want, "'%s/nope.npy': No such file", dir);
    expect_heads_refused(npyspec("nope.npy", NULL, NULL), want, NULL);
}

/* ---- hostile layouts (hreader) -------------------------------------------------- */

/* An unwritten chunked dataset declaring 2^31 (rank 4) or 2^40 (rank 3) heads
 * takes a few kB of file.  The selection (`all`) was allocated and filled
 * for every declared head before the problem count was checked: 8 GB
 * written (a hang), or "out of memory" (exit 1) for 2^40.  Each is refused
 * at once, naming the count and the limit. */
static void write_many_heads(const char *name, int rank, const hsize_t *dims)
{
    hid_t f = access(heads_file(), F_OK) == 0 ? H5Fopen(heads_file(), H5F_ACC_RDWR, H5P_DEFAULT)
                                              : H5Fcreate(heads_file(), H5F_ACC_TRUNC,
                                                          H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hsize_t chunk[4] = {1, 1, 1, 1};
    chunk[rank - 2] = dims[rank - 2];
    chunk[rank - 1] = dims[rank - 1];
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_chunk(dcpl, rank, chunk) >= 0);
    hid_t ds = H5Dcreate2(f, name, H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(ds >= 0);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
}

Test(dataset, billions_of_declared_heads_are_refused_at_once_naming_the_limit, .timeout = 10)
{
    write_many_heads("h4", 4, (hsize_t[4]){1, (hsize_t)1 << 31, 4, 4});
    write_many_heads("h3", 3, (hsize_t[3]){(hsize_t)1 << 40, 4, 4});
    write_many_heads("l4", 4, (hsize_t[4]){(hsize_t)1 << 33, 1, 4, 4});
    expect_heads_refused(h5spec("h4", NULL, NULL), "2147483648 heads",
                         "allowed: at most 65536");
    expect_heads_refused(h5spec("h3", NULL, NULL), "1099511627776 heads",
                         "allowed: at most 65536");
    expect_heads_refused(h5spec("l4", NULL, NULL), "8589934592 layers",
                         "allowed: at most 65536");
    /* a selection of a few of them is fine (their data reads as 0) */
    uint32_t two[2] = {5, 1048575};
    struct lsh_dataset_spec s = h5spec("h3", NULL, NULL);
    s.heads = two;
    s.n_heads = 2;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n_heads == 2 && lay.src_heads == (size_t)1 << 40);
    lsh_dataset_layout_free(&lay);
}

/* A template counts expansions up to the first that does not exist.  One
 * behind an external link to a device, or a .npy name in a symlink loop,
 * is neither there nor absent: each such expansion counted as present, so
 * the count ran on to 2^20 (minutes of HDF5 link lookups, seconds of
 * stat()).  It stops at the first, which is then named with what it is. */
Test(dataset, a_template_behind_a_device_link_or_symlink_loop_is_named_at_once, .timeout = 4)
{
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    cr_assert(H5Lcreate_external("/dev/zero", "/q", f, "ez", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    write_group_val(f, "/h0", 0, 0, 0, 2, 2);
    cr_assert(H5Lcreate_external("/dev/zero", "/q", f, "h1", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_heads_refused(h5spec("ez/{head}", NULL, NULL), "'ez/0' is an external link to "
                         "'/dev/zero', which is a character device", NULL);
    expect_heads_refused(h5spec("/h{head}", NULL, NULL), "'/h1' is an external link to "
                         "'/dev/zero', which is a character device", NULL);
    char a[160], b[160];
    snprintf(a, sizeof a, "%s/loop_a", dir);
    snprintf(b, sizeof b, "%s/loop_b", dir);
    cr_assert_eq(symlink(b, a), 0);
    cr_assert_eq(symlink(a, b), 0);
    char want[256];
    snprintf(want, sizeof want, "'%s/loop_a/q0.npy'", dir);
    expect_heads_refused(npyspec("loop_a/q{head}.npy", NULL, NULL), want,
                         "Too many levels of symbolic links");
    /* a dangling symlink among the expansions is named, not taken as the end */
    const size_t d2[2] = {3, 2};
    write_npy("q0.npy", "<f4", 0, 2, d2);
    snprintf(a, sizeof a, "%s/q1.npy", dir);
    cr_assert_eq(symlink("gone.npy", a), 0);
    snprintf(want, sizeof want, "'%s/q1.npy'", dir);
    expect_heads_refused(npyspec("q{head}.npy", NULL, NULL), want, "No such file");
}

/* docs/definitions.md 2.1: a template's heads are counted at the first
 * selected layer.  They were counted at layer 0, so `layers: [1]` of a
 * capture whose layer 0 has 4 heads and layer 1 has 2 was refused for a
 * head 2 that nothing asked for. */
Test(dataset, template_heads_are_counted_at_the_first_selected_layer)
{
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    char p[64];
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < (l ? 2 : 4); h++) {
            snprintf(p, sizeof p, "/l%d/h%d/q", l, h);
            write_group_val(f, p, 0, l, h, 3, 2);
        }
    H5Fclose(f);
    struct lsh_dataset_spec s = h5spec("/l{layer}/h{head}/q", NULL, NULL);
    expect_heads_refused(s, "dataset '/l1/h2/q' does not exist (layer 1, head 2,", NULL);
    uint32_t one[1] = {1}, seven[1] = {7};
    s.layers = one;
    s.n_layers = 1;
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    cr_expect(lay.n_layers == 1 && lay.layers[0] == 1 && lay.n_heads == 2 && lay.heads[1] == 1 &&
              lay.src_heads == 2, "%zu layers, %zu heads of %zu", lay.n_layers, lay.n_heads,
              lay.src_heads);
    lsh_dataset_layout_free(&lay);
    struct lsh_dataset *ds = NULL;
    cr_assert_eq(lsh_dataset_make(&s, cfg_path(), 1, 0, (struct lsh_dataset_unit){1, 1}, &ds,
                                  &err), 0, "%s", err.message);
    expect_unit(ds, 1, 1, 1, 0);
    lsh_dataset_free(ds);
    /* a layer beyond the template is named as such */
    s.layers = seven;
    expect_heads_refused(s, "layers: 7 is out of range", "has 2 layers");
}

/* A run probes its data when it plans, and reads each problem later: a file
 * rewritten in between with another shape was read as it now is, and the
 * points planned (and checked: chunk sizes, reference rows, buckets) for
 * the old shape ran silently on the new one.  Made against the probe's
 * layout, a changed shape is refused naming both; the same shape (new
 * values) is read. */
Test(dataset, a_file_whose_shape_changed_since_the_probe_is_refused_naming_both)
{
    const hsize_t d8[3] = {2, 8, 2}, d5[3] = {2, 5, 2}, d3h[3] = {3, 8, 2}, d8w[3] = {2, 8, 3};
    write_val(heads_file(), "q", H5T_NATIVE_DOUBLE, 0, 3, d8);
    struct lsh_dataset_spec s = h5spec("q", NULL, NULL);
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    cr_assert_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0, "%s", err.message);
    struct lsh_dataset *ds = NULL;
    const struct lsh_dataset_unit u = {-1, 1};
    cr_assert_eq(lsh_dataset_make_as(&s, cfg_path(), 1, 0, u, &lay, &ds, &err), 0, "%s",
                 err.message);
    expect_unit(ds, 0, 1, 1, 0);
    lsh_dataset_free(ds);
    const hsize_t *changed[3] = {d5, d3h, d8w};
    const char *what[3] = {"5 x 2", "3 heads", "8 x 3"};
    for (int c = 0; c < 3; c++) {
        unlink(heads_file());
        write_val(heads_file(), "q", H5T_NATIVE_DOUBLE, 0, 3, changed[c]);
        ds = NULL;
        lsh_error_clear(&err);
        cr_expect_eq(lsh_dataset_make_as(&s, cfg_path(), 1, 0, u, &lay, &ds, &err), LSH_EDATA,
                     "accepted a file changed to %s", what[c]);
        cr_expect_null(ds);
        cr_expect(strstr(err.message, heads_file()) && strstr(err.message, "changed since") &&
                      strstr(err.message, what[c]) && strstr(err.message, "8 x 2"),
                  "%s", err.message);
    }
    lsh_dataset_layout_free(&lay);
}

/* A path that names something other than a dataset says what it names:
 * a group, or a soft link leading nowhere (dangling, or a loop) -- each
 * was only "is not a dataset". */
Test(dataset, a_path_naming_a_group_or_a_dangling_or_looping_link_says_which)
{
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_group_val(f, "/g/x", 0, 0, 0, 2, 2);
    cr_assert(H5Lcreate_soft("/nothing", f, "dang", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    cr_assert(H5Lcreate_soft("/b", f, "a", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    cr_assert(H5Lcreate_soft("/a", f, "b", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_heads_refused(h5spec("g", NULL, NULL), "'g' is not a dataset: it is a group",
                         "allowed: a dataset");
    expect_heads_refused(h5spec("dang", NULL, NULL), "'dang' is not a dataset: it is a link "
                         "that leads nowhere", "allowed: a dataset");
    expect_heads_refused(h5spec("a", NULL, NULL), "'a' is not a dataset: it is a link that "
                         "leads nowhere", "allowed: a dataset");
}

/* A file HDF5 cannot open was "not an HDF5 file" whatever it was: an empty
 * file, an HDF5 file cut short (a copy that did not finish), a .npy file
 * given as hdf5.  Each now says which, with the size. */
Test(dataset, an_empty_truncated_or_npy_file_given_as_hdf5_says_which)
{
    const hsize_t dims[3] = {2, 64, 16};
    write_val(heads_file(), "q", H5T_NATIVE_DOUBLE, 0, 3, dims);
    FILE *in = fopen(heads_file(), "rb");
    cr_assert(in);
    static unsigned char bytes[1 << 16];
    const size_t got = fread(bytes, 1, sizeof bytes, in);
    fclose(in);
    cr_assert(got > 4096);
    char path[160];
    const char *names[3] = {"empty.h5", "cut.h5", "arr.npy"};
    const size_t sizes[3] = {0, got / 2, 128};
    const char *want[3] = {"is empty (0 bytes)", "is truncated or damaged",
                           "it is a .npy file (use kind: npy"};
    memcpy(bytes + 4 * 4096, "\x93NUMPY\x01\x00", 8);
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[c]);
        FILE *out = fopen(path, "wb");
        cr_assert(out);
        fwrite(c == 2 ? bytes + 4 * 4096 : bytes, 1, sizes[c], out);
        fclose(out);
        struct lsh_dataset_spec s = h5spec("q", NULL, NULL);
        s.file = (char *)names[c];
        struct lsh_dataset_layout lay;
        struct lsh_error err;
        cr_expect_eq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), LSH_EDATA, "%s", names[c]);
        cr_expect(strstr(err.message, names[c]) && strstr(err.message, "is not an HDF5 file") &&
                      strstr(err.message, want[c]),
                  "%s: %s", names[c], err.message);
    }
}

/* A damaged compressed chunk was only "cannot read 'q' as float64": the
 * message now carries libhdf5's own reason and says the file is damaged. */
Test(dataset, a_damaged_compressed_chunk_is_named_with_libhdf5s_reason)
{
    enum { N = 64, D = 16 };
    double x[N * D];
    for (int t = 0; t < N * D; t++)
        x[t] = sin(t);
    hid_t f = H5Fcreate(heads_file(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(2, (hsize_t[2]){N, D}, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    cr_assert(H5Pset_chunk(dcpl, 2, (hsize_t[2]){N, D}) >= 0 && H5Pset_deflate(dcpl, 6) >= 0);
    hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    cr_assert(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dflush(ds);
    haddr_t addr = 0;
    hsize_t size = 0, off[2];
    unsigned mask;
    cr_assert(H5Dget_chunk_info(ds, sp, 0, off, &mask, &addr, &size) >= 0 && size > 64);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    FILE *io = fopen(heads_file(), "r+b");
    cr_assert(io);
    unsigned char junk[48];
    memset(junk, 0x55, sizeof junk);
    fseek(io, (long)addr + 8, SEEK_SET);
    fwrite(junk, 1, sizeof junk, io);
    fclose(io);
    expect_heads_refused(h5spec("q", NULL, NULL), "cannot read 'q' as float64: ",
                         "the file is damaged");
    struct lsh_dataset_layout lay;
    struct lsh_error err;
    struct lsh_dataset_spec s = h5spec("q", NULL, NULL);
    cr_expect_neq(lsh_dataset_probe(&s, cfg_path(), &lay, &err), 0);
    cr_expect(!strstr(err.message, "no reason"), "%s", err.message);
}
