/* fuzz_hdf5.c - libFuzzer target for the HDF5 dataset reader: any file is
 * either refused with a message, or probed and loaded into finite matrices of
 * the shape the probe announced.  The bytes are written to a private file
 * because the reader opens data by path, as lshlab does.
 *
 * Two kinds of input.  A first byte below 0x80: the rest is the file itself
 * (mutated HDF5 seeds).  Otherwise the input describes a file that the HDF5
 * API then writes - for each of q, k, v a datatype (every class, odd float
 * layouts), a rank, a shape, a layout and raw value bytes (so NaN, Inf and
 * huge integers come up), or a group or a dangling link in its place - and the
 * bytes left over flip bits of the written file.  Random bytes rarely make a
 * valid HDF5 file; described ones reach every branch of the reader. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "dataset.h"
#include "fuzz_unit_check.h"

/* Declared sizes above this are skipped: reading them is slow, not wrong. */
#define FUZZ_MAX_ELEMENTS ((hsize_t)1 << 20)

static const char *scratch(void)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/lshlab-fuzz-hdf5-%ld.h5", (long)getpid());
    return path;
}

/* Is every dataset we may read small enough?  (Only the harness asks.) */
static int small_enough(const char *file)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return 1; /* the reader will refuse it */
    int ok = 1;
    static const char *const names[] = {"q", "k", "v"};
    for (int i = 0; i < 3 && ok; i++) {
        if (H5Lexists(f, names[i], H5P_DEFAULT) <= 0)
            continue;
        hid_t ds = H5Dopen2(f, names[i], H5P_DEFAULT);
        hid_t sp = ds < 0 ? H5I_INVALID_HID : H5Dget_space(ds);
        int rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        hsize_t dims[H5S_MAX_RANK];
        if (rank > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0) {
            hsize_t total = 1;
            for (int r = 0; r < rank && ok; r++) {
                if (dims[r] && total > FUZZ_MAX_ELEMENTS / dims[r])
                    ok = 0;
                else
                    total *= dims[r];
            }
        }
        if (sp >= 0)
            H5Sclose(sp);
        if (ds >= 0)
            H5Dclose(ds);
    }
    H5Fclose(f);
    return ok;
}

static void try_spec(const char *file, const char *k, const char *v, int separate)
{
    struct lsh_dataset_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = "fuzz";
    spec.kind = LSH_DATA_HDF5;
    spec.file = (char *)file;
    spec.q = "q";
    spec.k = (char *)k;
    spec.v = (char *)v;
    spec.norm = -1;
    struct lsh_error err;
    lsh_error_clear(&err);
    struct lsh_dataset_layout lay;
    int probed = lsh_dataset_probe(&spec, NULL, &lay, &err);
    if (probed && !err.message[0])
        abort();
    /* the first and the last unit the probe lists ({-1, -1} when it refused) */
    for (int u = 0; u < 2; u++) {
        struct lsh_dataset_unit unit = {-1, -1};
        if (!probed)
            unit = (struct lsh_dataset_unit){u ? lay.layers[lay.n_layers - 1] : lay.layers[0],
                                             u ? lay.heads[lay.n_heads - 1] : lay.heads[0]};
        struct lsh_dataset *ds = NULL;
        lsh_error_clear(&err);
        int made = lsh_dataset_make(&spec, NULL, 7, separate, unit, &ds, &err);
        if (made) {
            if (!err.message[0])
                abort();
            /* what the probe accepted, loading accepts (memory aside) */
            if (!probed && made != LSH_ENOMEM && !(separate && !k)) {
                fprintf(stderr, "probe accepted but make refused: %s\n", err.message);
                abort();
            }
            continue;
        }
        if (probed) {
            fprintf(stderr, "probe refused (%d) but make accepted\n", probed);
            abort();
        }
        fuzz_check_unit(ds, &lay);
        lsh_dataset_free(ds);
    }
    if (!probed)
        lsh_dataset_layout_free(&lay);
}

/* ---- described files -------------------------------------------------------- */

struct cursor {
    const uint8_t *p;
    size_t left;
};

static unsigned take(struct cursor *c)
{
    if (!c->left)
        return 0;
    c->left--;
    return *c->p++;
}

static hid_t make_type(struct cursor *c)
{
    hid_t t;
    switch (take(c) % 16) {
    case 0: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case 1: return H5Tcopy(H5T_NATIVE_FLOAT);
    case 2: return H5Tcopy(H5T_NATIVE_INT8);
    case 3: return H5Tcopy(H5T_NATIVE_UINT16);
    case 4: return H5Tcopy(H5T_NATIVE_INT32);
    case 5: return H5Tcopy(H5T_NATIVE_UINT64);
    case 6: return H5Tcopy(H5T_NATIVE_LDOUBLE);
    case 7: return H5Tcopy(H5T_IEEE_F64BE);
    case 8: /* a 16-bit float: HDF5 converts it in software */
        t = H5Tcopy(H5T_IEEE_F32LE);
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_precision(t, 16);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, 15);
        return t;
    case 9:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + take(c) % 8);
        return t;
    case 10:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        return t;
    case 11:
        t = H5Tcreate(H5T_COMPOUND, 16);
        H5Tinsert(t, "a", 0, H5T_NATIVE_DOUBLE);
        H5Tinsert(t, "b", 8, H5T_NATIVE_DOUBLE);
        return t;
    case 12: {
        t = H5Tenum_create(H5T_NATIVE_INT);
        int v0 = 0, v1 = 1;
        H5Tenum_insert(t, "zero", &v0);
        H5Tenum_insert(t, "one", &v1);
        return t;
    }
    case 13: return H5Tcopy(H5T_NATIVE_B8);
    case 14: {
        hsize_t two = 2;
        return H5Tarray_create2(H5T_NATIVE_DOUBLE, 1, &two);
    }
    default: return H5Tcreate(H5T_OPAQUE, 4);
    }
}

static void make_object(hid_t f, const char *name, struct cursor *c)
{
    unsigned what = take(c) % 8;
    if (what == 0)
        return; /* absent */
    if (what == 1) {
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0)
            H5Gclose(g);
        return;
    }
    if (what == 2) {
        H5Lcreate_soft("/nowhere", f, name, H5P_DEFAULT, H5P_DEFAULT);
        return;
    }
    hid_t type = make_type(c);
    int rank = (int)(take(c) % 4);
    hsize_t dims[3] = {0, 0, 0};
    hsize_t total = 1;
    for (int r = 0; r < rank; r++) {
        dims[r] = take(c) % 24;
        total *= dims[r];
    }
    hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (rank && total && (take(c) & 1)) {
        hsize_t chunk[3];
        for (int r = 0; r < rank; r++)
            chunk[r] = 1 + take(c) % dims[r];
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t ds = type < 0 || space < 0
                   ? H5I_INVALID_HID
                   : H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    size_t size = type >= 0 ? H5Tget_size(type) : 0;
    int vl = type >= 0 && H5Tis_variable_str(type) > 0;
    if (ds >= 0 && total && size && !vl && (take(c) % 4)) {
        unsigned char *buf = calloc(total, size);
        for (size_t b = 0; buf && b < total * size; b++)
            buf[b] = (unsigned char)take(c);
        if (buf)
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        free(buf);
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
}

static int describe_file(const char *file, const uint8_t *data, size_t size)
{
    struct cursor c = {data, size};
    hid_t f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return -1;
    make_object(f, "q", &c);
    make_object(f, "k", &c);
    make_object(f, "v", &c);
    H5Fclose(f);
    /* the rest: (offset, xor) pairs that damage the file */
    FILE *fp = fopen(file, "r+b");
    if (!fp)
        return -1;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    while (c.left >= 3 && len > 0) {
        long off = (long)((take(&c) << 8 | take(&c)) % (unsigned)len);
        int x = (int)take(&c);
        fseek(fp, off, SEEK_SET);
        int b = fgetc(fp);
        fseek(fp, off, SEEK_SET);
        fputc((b ^ x) & 0xff, fp);
    }
    fclose(fp);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    const char *file = scratch();
    if (size && data[0] >= 0x80) {
        if (describe_file(file, data + 1, size - 1) != 0)
            abort();
    } else {
        FILE *f = fopen(file, "wb");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
            abort();
    }
    if (small_enough(file)) {
        try_spec(file, NULL, NULL, 0);
        try_spec(file, "k", "v", 1);
    }
    unlink(file);
    return 0;
}
