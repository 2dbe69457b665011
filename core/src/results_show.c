/* results_show.c - `lshlab show`: print the /runs and /collision tables of
 * a results file, read generically from the file's own compound types. */
#include "results.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "results_schema.h"

/* Rows are read and printed a block at a time, whatever the table's size. */
#define SHOW_BLOCK_BYTES (1 << 22)
#define MAX_ROW_BYTES (1 << 20)

/* A growable text buffer for one cell. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static int sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

__attribute__((format(printf, 2, 3)))
static int sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return n < 0 ? -1 : sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* RFC 4180: quote a field only when it holds a separator, quote or line break. */
static int sb_csv_field(struct sbuf *b, const char *s, size_t n)
{
    int quote = 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote)
        return sb_put(b, s, n);
    if (sb_put(b, "\"", 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (sb_put(b, &s[i], 1) < 0 || (s[i] == '"' && sb_put(b, "\"", 1) < 0))
            return -1;
    return sb_put(b, "\"", 1);
}

/* Text from the file, with control characters and invalid UTF-8 escaped
 * as \xHH (lsh_text_escape) so that it cannot steer a terminal; in CSV
 * then quoted as RFC 4180 says (a line break is escaped, so never quoted). */
static int sb_text(struct sbuf *b, const char *s, size_t n, int csv)
{
    if (n > SIZE_MAX / 4 - 1)
        return -1;
    char *text = malloc(4 * n + 1);
    if (!text)
        return -1;
    size_t len = lsh_text_escape(text, s, n);
    int rc = csv ? sb_csv_field(b, text, len) : sb_put(b, text, len);
    free(text);
    return rc;
}

/* A column of a compound table as found in the file, read generically. */
struct show_col {
    char *name;
    H5T_class_t cls;
    size_t offset, size;
    int is_signed, is_vlstr;
    const char *fixed;   /* not in the file: this value in every row */
};

struct show_table {
    const char *name;
    hid_t dset, mtype;
    hsize_t n_rows;
    size_t row_size;
    int n_cols, has_vl;
    struct show_col *cols;
};

static void show_table_close(struct show_table *t)
{
    for (int j = 0; t->cols && j < t->n_cols; j++)
        free(t->cols[j].name);
    free(t->cols);
    if (t->mtype >= 0)
        H5Tclose(t->mtype);
    if (t->dset >= 0)
        H5Dclose(t->dset);
}

/* A format version 2 /runs written before the candidate rules (SPEC 13)
 * has no min_collisions, sink and local: its points had the rule 1, 0, 0,
 * shown as such after combine. */
static int add_rule_columns(struct show_table *t)
{
    static const char *const names[] = {"min_collisions", "sink", "local"};
    static const char *const values[] = {"1", "0", "0"};
    int at = -1;
    for (int j = 0; j < t->n_cols; j++) {
        if (!strcmp(t->cols[j].name, names[0]))
            return 0;
        if (!strcmp(t->cols[j].name, "combine"))
            at = j + 1;
    }
    if (strcmp(t->name, "runs") != 0 || at < 0)
        return 0;
    struct show_col *cols = realloc(t->cols, ((size_t)t->n_cols + 4) * sizeof *cols);
    if (!cols)
        return LSH_ENOMEM;
    t->cols = cols;
    memmove(cols + at + 3, cols + at, (size_t)(t->n_cols - at) * sizeof *cols);
    for (int k = 0; k < 3; k++) {
        cols[at + k] = (struct show_col){.name = strdup(names[k]), .cls = H5T_INTEGER,
                                         .fixed = values[k]};
        t->n_cols++;
        if (!cols[at + k].name) {
            /* keep the table freeable: the rest are empty names */
            for (int m = k + 1; m < 3; m++)
                cols[at + m] = (struct show_col){.name = NULL, .fixed = ""};
            t->n_cols += 2 - k;
            return LSH_ENOMEM;
        }
    }
    return 0;
}

static int show_table_open(hid_t file, const char *path, struct show_table *t,
                           struct lsh_error *err)
{
    hid_t ftype = NO_HID, space = NO_HID;
    int rc = 0;

    /* lshlab writes its tables in the file itself: a link to another file
     * (which may be a FIFO that blocks, or a device) is not followed */
    H5L_info_t link;
    if (H5Lget_info(file, t->name, &link, H5P_DEFAULT) >= 0 && link.type != H5L_TYPE_HARD)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s': /%s is a link to elsewhere, not a table stored in the file",
                             path, t->name);
    t->dset = H5Dopen2(file, t->name, H5P_DEFAULT);
    ftype = t->dset < 0 ? NO_HID : H5Dget_type(t->dset);
    space = t->dset < 0 ? NO_HID : H5Dget_space(t->dset);
    if (ftype < 0 || space < 0) {
        rc = lsh_h5_fail(err, path, "open /%s", t->name);
        goto done;
    }
    if (H5Tget_class(ftype) != H5T_COMPOUND || H5Sget_simple_extent_ndims(space) != 1) {
        rc = lsh_error_set(err, LSH_EDATA, "'%s': /%s is not a table (a 1-D compound dataset)",
                           path, t->name);
        goto done;
    }
    t->mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
    t->n_cols = t->mtype < 0 ? -1 : H5Tget_nmembers(t->mtype);
    if (t->n_cols < 0) {
        rc = lsh_h5_fail(err, path, "read the columns of /%s", t->name);
        goto done;
    }
    t->row_size = H5Tget_size(t->mtype);
    if (t->row_size == 0 || t->row_size > MAX_ROW_BYTES) {
        rc = lsh_error_set(err, LSH_EDATA, "'%s': the rows of /%s are %zu bytes long; lshlab "
                           "results rows are well under %d bytes", path, t->name, t->row_size,
                           MAX_ROW_BYTES);
        goto done;
    }
    rc = lsh_table_rows(t->dset, t->row_size, path, t->name, &t->n_rows, err);
    if (rc)
        goto done;
    t->cols = calloc((size_t)t->n_cols + 1, sizeof *t->cols);
    if (!t->cols) {
        rc = lsh_h5_enomem(err);
        goto done;
    }
    for (int j = 0; j < t->n_cols; j++) {
        struct show_col *c = &t->cols[j];
        char *name = H5Tget_member_name(t->mtype, (unsigned)j);
        hid_t mt = H5Tget_member_type(t->mtype, (unsigned)j);
        if (!name || mt < 0) {
            H5free_memory(name);
            if (mt >= 0)
                H5Tclose(mt);
            rc = lsh_h5_fail(err, path, "read the columns of /%s", t->name);
            goto done;
        }
        c->name = strdup(name);
        H5free_memory(name);
        c->cls = H5Tget_class(mt);
        c->offset = H5Tget_member_offset(t->mtype, (unsigned)j);
        c->size = H5Tget_size(mt);
        c->is_signed = c->cls == H5T_INTEGER && H5Tget_sign(mt) == H5T_SGN_2;
        c->is_vlstr = c->cls == H5T_STRING && H5Tis_variable_str(mt) > 0;
        t->has_vl |= c->is_vlstr;
        H5Tclose(mt);
        if (!c->name) {
            rc = lsh_h5_enomem(err);
            goto done;
        }
    }
    if (!rc)
        rc = add_rule_columns(t);
    if (rc == LSH_ENOMEM)
        lsh_h5_enomem(err);
done:
    if (space >= 0)
        H5Sclose(space);
    if (ftype >= 0)
        H5Tclose(ftype);
    return rc;
}

static int is_numeric(const struct show_col *c)
{
    return c->cls == H5T_INTEGER || c->cls == H5T_FLOAT;
}

/* One cell as text: %.6g in the aligned table, full precision in CSV. */
static int format_cell(const struct show_col *c, const unsigned char *row, int csv,
                       struct sbuf *b)
{
    const unsigned char *p = row + c->offset;
    if (c->fixed)
        return sb_put(b, c->fixed, strlen(c->fixed));
    if (c->cls == H5T_INTEGER && (c->size == 1 || c->size == 2 || c->size == 4 || c->size == 8)) {
        union {
            int8_t i8;
            int16_t i16;
            int32_t i32;
            int64_t i64;
            uint8_t u8;
            uint16_t u16;
            uint32_t u32;
            uint64_t u64;
        } v;
        memcpy(&v, p, c->size);
        if (c->is_signed) {
            int64_t x = c->size == 1 ? v.i8 : c->size == 2 ? v.i16 : c->size == 4 ? v.i32 : v.i64;
            return sb_printf(b, "%" PRId64, x);
        }
        uint64_t x = c->size == 1 ? v.u8 : c->size == 2 ? v.u16 : c->size == 4 ? v.u32 : v.u64;
        return sb_printf(b, "%" PRIu64, x);
    }
    if (c->cls == H5T_FLOAT && c->size == sizeof(double)) {
        double v;
        memcpy(&v, p, sizeof v);
        return sb_printf(b, csv ? "%.17g" : "%.6g", v);
    }
    if (c->cls == H5T_FLOAT && c->size == sizeof(float)) {
        float v;
        memcpy(&v, p, sizeof v);
        return sb_printf(b, csv ? "%.9g" : "%.6g", (double)v);
    }
    if (c->cls == H5T_STRING) {
        const char *s;
        size_t n;
        if (c->is_vlstr) {
            memcpy(&s, p, sizeof s);
            s = s ? s : "";
            n = strlen(s);
        } else {
            s = (const char *)p;
            n = strnlen(s, c->size);
        }
        return sb_text(b, s, n, csv);
    }
    return sb_put(b, "?", 1);
}

/* One line: the header (row == NULL) or a row.  width == NULL: CSV. */
static int print_line(const struct show_table *t, const unsigned char *row, const size_t *width,
                      struct sbuf *b, FILE *out)
{
    for (int j = 0; j < t->n_cols; j++) {
        const struct show_col *c = &t->cols[j];
        b->len = 0;
        if ((row ? format_cell(c, row, !width, b)
                 : sb_text(b, c->name, strlen(c->name), !width)) < 0)
            return -1;
        if (j > 0)
            fputs(width ? "  " : ",", out);
        if (!width)
            fputs(b->p, out);
        else if (is_numeric(c))
            fprintf(out, "%*s", (int)width[j], b->p);
        else if (j + 1 < t->n_cols)
            fprintf(out, "%-*s", (int)width[j], b->p);
        else
            fputs(b->p, out);
    }
    fputc('\n', out);
    return 0;
}

/* Walk the rows in blocks: measure the column widths (out == NULL) or print. */
static int show_rows(const struct show_table *t, const char *path, size_t *width, FILE *out,
                     struct sbuf *b, struct lsh_error *err)
{
    const hsize_t block = SHOW_BLOCK_BYTES / t->row_size; /* >= 4 rows */
    unsigned char *buf = malloc(t->row_size * block);
    hid_t fspace = H5Dget_space(t->dset);
    int rc = 0;
    if (!buf || fspace < 0) {
        rc = buf ? lsh_h5_fail(err, path, "read /%s", t->name) : lsh_h5_enomem(err);
        goto done;
    }
    for (hsize_t start = 0; start < t->n_rows; start += block) {
        hsize_t count = t->n_rows - start < block ? t->n_rows - start : block;
        hid_t mspace = H5Screate_simple(1, &count, NULL);
        if (mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dread(t->dset, t->mtype, mspace, fspace, H5P_DEFAULT, buf) < 0) {
            rc = lsh_h5_fail(err, path, "read /%s", t->name); /* before HDF5 clears it */
            if (mspace >= 0)
                H5Sclose(mspace);
            goto done;
        }
        for (hsize_t r = 0; r < count && !rc; r++) {
            const unsigned char *row = buf + r * t->row_size;
            if (out) {
                rc = print_line(t, row, width, b, out);
                continue;
            }
            for (int j = 0; j < t->n_cols && !rc; j++) {
                b->len = 0;
                rc = format_cell(&t->cols[j], row, 0, b);
                if (b->len > width[j])
                    width[j] = b->len;
            }
        }
        if (t->has_vl)
            H5Dvlen_reclaim(t->mtype, mspace, H5P_DEFAULT, buf);
        H5Sclose(mspace);
        if (rc) {
            rc = lsh_h5_enomem(err);
            goto done;
        }
    }
done:
    if (fspace >= 0)
        H5Sclose(fspace);
    free(buf);
    return rc;
}

static int show_table(hid_t file, const char *path, const char *name, int csv, FILE *out,
                      struct lsh_error *err)
{
    struct show_table t = { .name = name, .dset = NO_HID, .mtype = NO_HID };
    struct sbuf b = { 0 };
    size_t *width = NULL;
    int rc = show_table_open(file, path, &t, err);
    if (rc)
        goto done;
    /* a first pass measures the columns, and reads every row once before
     * anything is printed: a damaged table prints nothing, CSV included */
    width = calloc((size_t)t.n_cols + 1, sizeof *width);
    if (!width) {
        rc = lsh_h5_enomem(err);
        goto done;
    }
    for (int j = 0; j < t.n_cols; j++)
        width[j] = strlen(t.cols[j].name);
    rc = show_rows(&t, path, width, NULL, &b, err);
    if (rc)
        goto done;
    if (print_line(&t, NULL, csv ? NULL : width, &b, out) < 0)
        rc = lsh_h5_enomem(err);
    else
        rc = show_rows(&t, path, csv ? NULL : width, out, &b, err);
done:
    free(width);
    free(b.p);
    show_table_close(&t);
    return rc;
}

int lsh_results_show(const char *path, int csv, FILE *out, struct lsh_error *err)
{
    static const char *const tables[] = { "runs", "collision" };
    int present[2] = { 0, 0 }, n_present = 0, rc = 0;
    struct stat st;
    hid_t file = NO_HID, fapl = NO_HID;

    if (!path || !out)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_show: NULL argument");
    lsh_results_init_library();
    if (stat(path, &st) != 0)
        return lsh_error_set(err, errno == ENOENT ? LSH_ENOTFOUND : LSH_EIO,
                             "cannot read results file '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) /* a FIFO or device would block or never end */
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not a regular file, so not an lshlab results file", path);
    if (H5Fis_hdf5(path) <= 0)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not an HDF5 file, so not an lshlab results file", path);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    /* Reading is allowed while a sweep is still writing the file (a .partial). */
    if (fapl >= 0)
        H5Pset_file_locking(fapl, 0, 1);
#endif
    file = fapl < 0 ? NO_HID : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    rc = file < 0 ? lsh_h5_fail(err, path, "open it") : 0;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (rc)
        return rc;
    rc = lsh_h5_check_format(file, path, err);
    int version = 0;
    /* Columns are read from the file's own types: a version 1 /runs simply
     * has no layer and head columns, and shows without them. */
    if (!rc && (lsh_h5_format_version(file, &version) < 0 ||
                version < LSH_RESULTS_FORMAT_VERSION_MIN || version > LSH_RESULTS_FORMAT_VERSION))
        rc = lsh_error_set(err, LSH_EDATA,
                           "'%s' has results format_version %d; this lshlab reads format_version "
                           "%d to %d",
                           path, version, LSH_RESULTS_FORMAT_VERSION_MIN,
                           LSH_RESULTS_FORMAT_VERSION);
    for (int i = 0; !rc && i < 2; i++) {
        htri_t has = H5Lexists(file, tables[i], H5P_DEFAULT);
        if (has < 0)
            rc = lsh_h5_fail(err, path, "look for /%s", tables[i]);
        present[i] = has > 0;
        n_present += present[i];
    }
    if (!rc && n_present == 0)
        rc = lsh_error_set(err, LSH_EDATA, "'%s' has neither /runs nor /collision", path);
    for (int i = 0, shown = 0; !rc && i < 2; i++) {
        if (!present[i])
            continue;
        /* Only a file with both tables needs telling which is which. */
        if (n_present > 1)
            fprintf(out, "%s# /%s\n", shown++ ? "\n" : "", tables[i]);
        rc = show_table(file, path, tables[i], csv, out, err);
    }
    H5Fclose(file);
    if (!rc && (fflush(out) != 0 || ferror(out)))
        rc = lsh_error_set(err, LSH_EIO, "cannot print the results of '%s': %s", path,
                           strerror(errno));
    return rc;
}

