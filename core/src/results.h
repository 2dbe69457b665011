/* results.h - the HDF5 results file (SPEC 9).
 *
 * Safety: a run writes to a working copy, "<path>.work", and after rows
 * replaces "<path>.partial" (atomic rename) with a snapshot of it, so that a
 * crash, even SIGKILL in the middle of an HDF5 write, always leaves a
 * .partial that opens and holds whole rows (results.c says more).  <path>
 * appears only when the sweep is complete, so it is never half-written; an
 * existing <path> is never touched unless the caller asked to replace it
 * (--force) or resume it (--resume).  One run at a time writes a file.
 *
 * /runs is one extendible, chunked compound dataset whose fields are the
 * point key then the metric columns (topk_recall_K for each K of the config).
 * Strings are fixed-length, NUL-padded (h5py/pandas read them as bytes).
 */
#ifndef LSH_RESULTS_H
#define LSH_RESULTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "error.h"
#include "point.h"

#define LSH_RESULTS_FORMAT "lshlab-results"
/* Version 2 (SPEC 16): /runs has the key columns layer and head (int32, -1
 * for a dataset without that axis) after dataset; /datasets/NAME has the
 * attributes layers, heads, kv_heads, source and dtype, and per-unit groups
 * (lsh_results_write_dataset).  Every file this lshlab writes is version 2;
 * `show` reads versions 1 and 2; --resume continues only version 2. */
#define LSH_RESULTS_FORMAT_VERSION 2
#define LSH_RESULTS_FORMAT_VERSION_MIN 1 /* the oldest `show` reads */

/* Fixed string widths in /runs. */
#define LSH_RUNS_NAME_LEN 64    /* dataset, strategy */
#define LSH_RUNS_PARAMS_LEN 256 /* params */
#define LSH_RUNS_WORD_LEN 16    /* mode, window, combine, status */
#define LSH_RUNS_MESSAGE_LEN 256

struct lsh_run_row {
    struct lsh_point_key key;
    enum lsh_point_status status;
    const char *message;          /* why skipped/failed; "" when ok */
    struct lsh_metrics metrics;   /* zeros unless ok */
};

struct lsh_results;

enum lsh_results_mode {
    LSH_RESULTS_CREATE,  /* error (LSH_EEXIST) if <path> or <path>.partial exists */
    LSH_RESULTS_FORCE,   /* replace an existing file (only when the run completes) */
    LSH_RESULTS_RESUME   /* continue <path>.partial, or <path>, when the resolved
                            config matches; create when neither exists */
};

/* Open the results of cfg for writing.  cmdline: the command line, for
 * provenance.  Checks that the output folder exists and is writable before
 * anything is created. */
int lsh_results_open(const char *path, const struct lsh_config *cfg, const char *cmdline,
                     enum lsh_results_mode mode, struct lsh_results **out,
                     struct lsh_error *err);

/* Resume: is this point already in /runs (with status ok or skipped)?
 * On resume, rows with any other status (failed, or a row left unfinished
 * by a crash) are dropped from /runs at open, so that the point runs again. */
int lsh_results_has_point(const struct lsh_results *res, uint64_t point_id);

/* Resume: check every row kept from the file against the plan, before any
 * is trusted.  planned(ctx, index, record) fills the key of the planned row:
 * record is a zeroed struct lsh_run_row whose .key is to be filled for
 * point_id index (sweep), or a zeroed struct lsh_collision_row whose key
 * fields (strategy, params, n_buckets, n_hashes, angle, pairs, seed) are to
 * be filled for row index (collision).  n_planned: points (sweep) or rows
 * (collision) in the plan.  A row whose key differs, whose index is past
 * the plan, whose status is unknown or whose values are not finite and in
 * range is LSH_EDATA naming the row, the point and the column (duplicated
 * point_ids are refused by open already); flipped bytes fail the read
 * (checksums) with LSH_EDATA too.  Call it right after lsh_results_open (a
 * new file has no rows: nothing to check); after a refusal,
 * lsh_results_close puts the files back as open found them. */
typedef void (*lsh_results_planned_fn)(void *ctx, uint64_t index, void *record);
int lsh_results_check_resumed(struct lsh_results *res, lsh_results_planned_fn planned,
                              void *ctx, uint64_t n_planned, struct lsh_error *err);
size_t lsh_results_row_count(const struct lsh_results *res);

/* /datasets/NAME for one unit (a layer and head, SPEC 11.2) of a dataset.
 * /datasets/NAME is written once, by its first unit: attributes kind, n, d,
 * d_v, seed, generator parameters (clusters, spread, norm (the value used)
 * for clustered; file, q, k, v for hdf5), layers and heads (int32 arrays of
 * the selected indices, [-1] for an absent axis), kv_heads (int64, 0
 * without a head axis), source and dtype (strings, from lay), then
 * reference_rows (the rows evaluated) last.  A dataset without axes keeps
 * its data (Q, K, V when dump_data) and input_digest there.  A unit of a
 * dataset with axes gets its own group, /datasets/NAME/layer{L}/head{H}
 * (head{H} or layer{L} alone when the other axis is absent), holding its
 * Q, K, V when dump_data and always its input_digest (written last).
 * input_digest: a 64-bit hash of the shape and of the bits of Q, K (when
 * separate) and V of that unit as loaded.  lay: the dataset's probed
 * layout (NULL: one problem without axes, source "", dtype float64).
 * Idempotent on resume (a group left unfinished is rewritten); a finished
 * group whose n, d, d_v, layers, heads or digest differ from ds is
 * LSH_EDATA naming the dataset, the unit and its input file (the input
 * changed since the run began), and when no row was added since open,
 * lsh_results_close then gives the file back as open found it. */
struct lsh_dataset;
struct lsh_dataset_layout;
int lsh_results_write_dataset(struct lsh_results *res, const struct lsh_dataset_layout *lay,
                              const struct lsh_dataset *ds, int dump_data,
                              struct lsh_error *err);

/* Append one row to /runs and flush.  The metric columns of a row whose
 * status is not ok are written as 0 whatever row->metrics holds.  A point
 * already in /runs (lsh_results_has_point) is refused with LSH_EINVAL; a key
 * string too long for its column with LSH_ERANGE (open checks the config's
 * names first); a message too long is cut, ending in "...". */
int lsh_results_append(struct lsh_results *res, const struct lsh_run_row *row,
                       struct lsh_error *err);

/* /points/<point_id>/<name>: an optional array (dump: buckets, hash_params,
 * rows).  type 'u' = uint32, 'd' = double; rank 1 (cols == 0) or 2. */
int lsh_results_dump_array(struct lsh_results *res, uint64_t point_id, const char *name,
                           char type, const void *data, size_t rows, size_t cols,
                           struct lsh_error *err);

/* /collision rows (SPEC 8).  On resume /collision keeps its rows and
 * lsh_results_row_count() says how many there are. */
struct lsh_collision_row {
    const char *strategy, *params;
    uint32_t n_buckets, n_hashes;
    double angle;                 /* degrees */
    uint64_t pairs;
    double p_round, p_round_se, p_any, p_any_se;
    uint64_t seed;
    double seconds;
    /* columns has_law and p_law (after p_any_se): does the strategy publish
     * collision_prob for this point, and its one-round value at angle (0
     * without) */
    uint8_t has_law;
    double p_law;
};
int lsh_results_append_collision(struct lsh_results *res, const struct lsh_collision_row *row,
                                 struct lsh_error *err);

/* Snapshots are taken after appended rows, but at most as often as keeps
 * their cost near 5% of the run time.  This takes one now: <path>.partial
 * then holds every row appended so far. */
int lsh_results_sync(struct lsh_results *res, struct lsh_error *err);

/* Flush, close and, when complete, move the working copy to <path> (and
 * remove <path>.partial); complete = 0 makes it the .partial, for --resume.
 * After a failed write the working copy is dropped: the .partial keeps the
 * rows of the last snapshot. */
int lsh_results_close(struct lsh_results *res, int complete, struct lsh_error *err);

/* `lshlab show`: print /runs (and /collision) of a results file as an aligned
 * table (numbers %.6g), or as CSV with a header line (numbers %.17g, fields
 * quoted as RFC 4180 says when they hold a comma, quote or line break).
 * Columns are read from the file's own compound type, so any topk set (or a
 * later format's extra columns) shows.  A file holding both tables prints
 * each after a "# /runs" or "# /collision" line.  Text from the file (cells
 * and column names) is printed with control characters and bytes that are
 * not UTF-8 escaped as \xHH, in the table and in CSV alike (so a line break
 * in a field is escaped, never quoted).  Rows are read in blocks; a table
 * declaring more rows than the file stores, or a failed checksum, is
 * LSH_EDATA ("damaged"). */
int lsh_results_show(const char *path, int csv, FILE *out, struct lsh_error *err);

/* HDF5 quiet: no error stack printed (called once at start-up; open and
 * show call it too).
 *
 * Thread safety: a struct lsh_results is used by one thread at a time, and
 * HDF5 (a non-thread-safe build) by one thread of the process at a time. */
void lsh_results_init_library(void);

#endif
