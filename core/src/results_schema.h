/* results_schema.h - private to the results_*.c files: the /runs and
 * /collision row layouts, row packing and the HDF5 helpers they share.
 *
 * A table's columns come from a declared list (results_schema.c): the
 * point key, then the metric columns (topk_recall_K for each K of the
 * config, and X_se beside every metric X when rows are sampled).  A row is
 * packed into the compound type that is both the memory and the file type. */
#ifndef LSH_RESULTS_SCHEMA_H
#define LSH_RESULTS_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "config.h"
#include "error.h"
#include "results.h"

#define NO_HID H5I_INVALID_HID

struct lsh_col_def;

/* One column of the file: a declared column, expanded (topk) and placed. */
struct lsh_column {
    char name[48];
    const struct lsh_col_def *def;
    size_t index;  /* SRC_TOPK: which K */
    int se;        /* the standard error of def's metric (float64) */
    size_t offset; /* in the packed row */
    size_t size;
};

struct lsh_table {
    const char *name; /* "runs" or "collision" */
    struct lsh_column *cols;
    size_t n_cols;
    size_t row_size;
    hid_t type; /* packed compound: memory and file type alike */
    hid_t dset;
};

/* The table of cfg's experiment: its columns and packed type (dset is left
 * NO_HID).  file names the results file in errors.  /runs has the oracle's
 * columns only with attention.oracle; without_rules leaves out the rule
 * keys min_collisions, sink and local (SPEC 13), to resume a format version
 * 2 file written before them, whose points all have the rule 1, 0, 0. */
int lsh_table_init(struct lsh_table *tab, const struct lsh_config *cfg, const char *file,
                   int without_rules, struct lsh_error *err);

/* Create the (empty, extendible, chunked, checksummed) table in file. */
int lsh_table_create(struct lsh_table *tab, hid_t file, const char *path,
                     struct lsh_error *err);

/* Lay one record (a struct lsh_run_row or lsh_collision_row) out as a packed
 * row (buf: row_size bytes).  zero_metrics: the point did not run, its
 * metric columns are 0 whatever rec says. */
int lsh_table_pack(const struct lsh_table *tab, const void *rec, int zero_metrics,
                   unsigned char *buf, struct lsh_error *err);

void lsh_table_close(struct lsh_table *tab);

/* The rows /NAME (a 1-D table of rows of row_size bytes) declares, in
 * *n_rows, after checking that the file really stores them: a damaged or
 * forged extent (10^9 rows in a small file) is LSH_EDATA, before anything
 * is allocated or read for them. */
int lsh_table_rows(hid_t dset, size_t row_size, const char *path, const char *name,
                   hsize_t *n_rows, struct lsh_error *err);

/* Check a row read back from the file (packed) against the row as planned
 * (packed from the planned record): the key columns must be equal, a /runs
 * status ok, skipped or failed, the values of a row that ran finite and in
 * range ([0, 1] for shares), those of a row that did not run 0.  0, or -1
 * with why (size bytes) naming the column and both values. */
int lsh_table_check_row(const struct lsh_table *tab, const unsigned char *row,
                        const unsigned char *planned, char *why, size_t size);

/* Copy s[0..n) to dst (at least 4 * n + 1 bytes) with control characters
 * (C0, DEL, C1) and bytes that are not valid UTF-8 written as \xHH, so that
 * text from a file cannot steer a terminal.  Returns the length written. */
size_t lsh_text_escape(char *dst, const char *s, size_t n);

/* An HDF5 call failed: LSH_EIO saying which file and what we were doing,
 * with the innermost HDF5 reason.  A failed checksum says the file is damaged. */
__attribute__((format(printf, 3, 4)))
int lsh_h5_fail(struct lsh_error *err, const char *file, const char *fmt, ...);
int lsh_h5_enomem(struct lsh_error *err);

/* Scalar attributes (strings variable-length UTF-8).  < 0 on failure. */
hid_t lsh_h5_vl_string(void);
herr_t lsh_h5_write_attr(hid_t obj, const char *name, hid_t type, const void *value);
herr_t lsh_h5_attr_str(hid_t obj, const char *name, const char *value);
herr_t lsh_h5_attr_u64(hid_t obj, const char *name, uint64_t v);
herr_t lsh_h5_attr_f64(hid_t obj, const char *name, double v);

/* A string attribute, variable or fixed length, as a malloc'd string.
 * Returns 0, 1 when there is no such attribute, or -1 on error. */
int lsh_h5_read_attr_str(hid_t obj, const char *name, char **out);

/* Is this file ours?  0, or LSH_EDATA naming the file. */
int lsh_h5_check_format(hid_t file, const char *path, struct lsh_error *err);

/* The file's format_version attribute in *version: 0, or -1 when it cannot
 * be read as an integer. */
int lsh_h5_format_version(hid_t file, int *version);

#endif
