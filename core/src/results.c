/* results.c - the HDF5 results file (SPEC 9): provenance attributes, the
 * /runs or /collision table, /datasets and /points, and `lshlab show`.
 *
 * Crash safety.  HDF5 updates its metadata in place, in an order of its own,
 * so a process killed in the middle of a write or a flush can leave a file
 * that no longer opens (or a /runs whose extent counts a row that was never
 * written).  So HDF5 never writes the file a user can see: every write goes
 * to a working copy, <path>.work, and after a row is appended and flushed the
 * working copy (now consistent) is copied to <path>.partial.tmp and renamed
 * over <path>.partial.  rename() is atomic, so <path>.partial is at every
 * moment the last complete snapshot: it opens, and /runs holds whole rows.
 * A working copy found on resume is never trusted (it may be torn): resume
 * starts from a fresh copy of <path>.partial, and the points after the last
 * snapshot run again.  Snapshots cost a copy of the file; when that becomes
 * slow (big dumps) they are spaced out so that copying stays a small share
 * of the run time.  An flock() on the working copy keeps two runs from
 * writing the same results.  A write that fails (disk full) marks the
 * working copy broken: it is dropped, and <path>.partial keeps the rows
 * written before. */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "dataset.h"
#include "linalg.h"
#include "version.h"

#define NO_HID H5I_INVALID_HID
#define CHUNK_ROWS 64
#define SHOW_BLOCK_ROWS 1024
/* A snapshot after a row unless the last one was taken less than
 * PUBLISH_RATIO times its own cost ago: snapshots then take at most ~5% of
 * the run time, whatever the file size and file system (renaming over a file
 * makes ext4 write it out), and a crash loses at most that much work, which
 * --resume redoes.  Points that take longer than that get one each. */
#define PUBLISH_RATIO 20.0

/* ---- errors ------------------------------------------------------------- */

static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    char *detail = data;
    if (n == 0 && e->desc)
        snprintf(detail, 320, "%s", e->desc);
    return 0;
}

/* An HDF5 call failed: say which file and what we were doing, and add the
 * innermost HDF5 reason (the one that names the real cause). */
__attribute__((format(printf, 3, 4)))
static int h5_fail(struct lsh_error *err, const char *file, const char *fmt, ...)
{
    char what[512], detail[320] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, detail);
    if (detail[0])
        return lsh_error_set(err, LSH_EIO, "results file '%s': cannot %s (HDF5: %s)", file,
                             what, detail);
    return lsh_error_set(err, LSH_EIO, "results file '%s': cannot %s", file, what);
}

static int no_memory(struct lsh_error *err)
{
    return lsh_error_set(err, LSH_ENOMEM, "out of memory while writing results");
}

/* ---- the column tables --------------------------------------------------- */

enum col_kind { COL_U32, COL_U64, COL_F64, COL_STR };

enum col_src {
    SRC_FIELD, /* a field of the record at `offset`; COL_STR: a const char * */
    SRC_WORD,  /* a string computed from the record by word() */
    SRC_TOPK   /* metrics.topk_recall[k]: one column per K of attention.topk */
};

enum {
    COL_METRIC = 1u << 0,   /* a SPEC 5 metric: zero unless the point is ok */
    COL_TRUNCATE = 1u << 1, /* free text: cut to fit rather than refuse */
    COL_SE = 1u << 2        /* has a <name>_se companion when rows are sampled */
};

/* One column as declared.  Both tables are data, so adding a column (or a
 * *_se column next to every COL_METRIC one) touches only expand_columns. */
struct col_def {
    const char *name;
    enum col_kind kind;
    enum col_src src;
    size_t offset;
    size_t width; /* COL_STR: the fixed string length */
    const char *(*word)(const void *rec);
    unsigned flags;
    size_t se_offset; /* COL_SE: the field in struct lsh_metric_se */
};

static const char *status_name(enum lsh_point_status s)
{
    switch (s) {
    case LSH_POINT_OK:
        return "ok";
    case LSH_POINT_SKIPPED:
        return "skipped";
    case LSH_POINT_FAILED:
        return "failed";
    }
    return NULL;
}

static const char *run_mode(const void *rec)
{
    return lsh_mode_name(((const struct lsh_run_row *)rec)->key.mode);
}

static const char *run_window(const void *rec)
{
    const struct lsh_run_row *r = rec;
    return r->key.mode == LSH_MODE_BUCKET ? "n/a" : lsh_window_name(r->key.window);
}

static const char *run_combine(const void *rec)
{
    return lsh_combine_name(((const struct lsh_run_row *)rec)->key.combine);
}

static const char *run_status(const void *rec)
{
    return status_name(((const struct lsh_run_row *)rec)->status);
}

#define RUN(f) offsetof(struct lsh_run_row, f)
#define R_U32(name, f) { name, COL_U32, SRC_FIELD, RUN(f), 0, NULL, 0, 0 }
#define R_U64(name, f) { name, COL_U64, SRC_FIELD, RUN(f), 0, NULL, 0, 0 }
#define R_STR(name, f, w, fl) { name, COL_STR, SRC_FIELD, RUN(f), w, NULL, fl, 0 }
#define R_WORD(name, fn) { name, COL_STR, SRC_WORD, 0, LSH_RUNS_WORD_LEN, fn, 0, 0 }
#define R_METRIC(name, kind)                                                                 \
    { #name, kind, SRC_FIELD, RUN(metrics.name), 0, NULL, COL_METRIC | COL_SE,              \
      offsetof(struct lsh_metric_se, name) }
#define R_TIMING(name) { #name, COL_F64, SRC_FIELD, RUN(metrics.name), 0, NULL, COL_METRIC, 0 }

static const struct col_def run_columns[] = {
    R_U64("point_id", key.point_id),
    R_STR("dataset", key.dataset, LSH_RUNS_NAME_LEN, 0),
    R_STR("strategy", key.strategy, LSH_RUNS_NAME_LEN, 0),
    R_STR("params", key.params, LSH_RUNS_PARAMS_LEN, 0),
    R_WORD("mode", run_mode),
    R_U32("chunk_size", key.chunk_size),
    R_U32("look_back", key.look_back),
    R_WORD("window", run_window),
    R_WORD("combine", run_combine),
    R_U32("n_hashes", key.n_hashes),
    R_U32("n_buckets", key.n_buckets),
    R_U32("repeat", key.repeat),
    R_U64("seed", key.seed),
    R_WORD("status", run_status),
    R_STR("message", message, LSH_RUNS_MESSAGE_LEN, COL_TRUNCATE),
    R_METRIC(out_rel_err, COL_F64),
    R_METRIC(attn_rel_err, COL_F64),
    R_METRIC(mass_recall, COL_F64),
    R_METRIC(kl, COL_F64),
    R_METRIC(empty_rows, COL_U64),
    R_METRIC(gram_recovery, COL_F64),
    { "topk_recall_", COL_F64, SRC_TOPK, 0, 0, NULL, COL_METRIC | COL_SE, 0 },
    R_METRIC(density, COL_F64),
    R_METRIC(mean_candidates, COL_F64),
    R_METRIC(bucket_max, COL_F64),
    R_METRIC(bucket_entropy, COL_F64),
    R_TIMING(hash_seconds),
    R_TIMING(eval_seconds),
};

#define COL(f) offsetof(struct lsh_collision_row, f)
#define C_FIELD(name, kind, w) { #name, kind, SRC_FIELD, COL(name), w, NULL, 0, 0 }

static const struct col_def collision_columns[] = {
    C_FIELD(strategy, COL_STR, LSH_RUNS_NAME_LEN),
    C_FIELD(params, COL_STR, LSH_RUNS_PARAMS_LEN),
    C_FIELD(n_buckets, COL_U32, 0),
    C_FIELD(n_hashes, COL_U32, 0),
    C_FIELD(angle, COL_F64, 0),
    C_FIELD(pairs, COL_U64, 0),
    C_FIELD(p_round, COL_F64, 0),
    C_FIELD(p_round_se, COL_F64, 0),
    C_FIELD(p_any, COL_F64, 0),
    C_FIELD(p_any_se, COL_F64, 0),
    C_FIELD(seed, COL_U64, 0),
    C_FIELD(seconds, COL_F64, 0),
};

/* One column of the file: a declared column, expanded (topk) and placed. */
struct column {
    char name[48];
    const struct col_def *def;
    size_t index;  /* SRC_TOPK: which K */
    int se;        /* the standard error of def's metric (float64) */
    size_t offset; /* in the packed row */
    size_t size;
};

struct table {
    const char *name; /* "runs" or "collision" */
    struct column *cols;
    size_t n_cols;
    size_t row_size;
    hid_t type; /* packed compound: memory and file type alike */
    hid_t dset;
};

static size_t kind_size(const struct col_def *def)
{
    switch (def->kind) {
    case COL_U32:
        return sizeof(uint32_t);
    case COL_U64:
        return sizeof(uint64_t);
    case COL_F64:
        return sizeof(double);
    case COL_STR:
        return def->width;
    }
    return 0;
}

static hid_t kind_type(const struct col_def *def)
{
    hid_t t;
    switch (def->kind) {
    case COL_U32:
        return H5Tcopy(H5T_NATIVE_UINT32);
    case COL_U64:
        return H5Tcopy(H5T_NATIVE_UINT64);
    case COL_F64:
        return H5Tcopy(H5T_NATIVE_DOUBLE);
    case COL_STR:
        t = H5Tcopy(H5T_C_S1);
        if (t < 0 || H5Tset_size(t, def->width) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0) {
            if (t >= 0)
                H5Tclose(t);
            return NO_HID;
        }
        return t;
    }
    return NO_HID;
}

/* Expand the declared columns into the file's columns, in order. */
static int expand_columns(struct table *tab, const struct col_def *defs, size_t n_defs,
                          const uint32_t *topk, size_t n_topk, int with_se,
                          struct lsh_error *err)
{
    size_t n = 0, off = 0;
    for (size_t i = 0; i < n_defs; i++)
        n += (defs[i].src == SRC_TOPK ? n_topk : 1) * (with_se && (defs[i].flags & COL_SE) ? 2 : 1);
    tab->cols = calloc(n ? n : 1, sizeof *tab->cols);
    if (!tab->cols)
        return no_memory(err);
    for (size_t i = 0; i < n_defs; i++) {
        size_t copies = defs[i].src == SRC_TOPK ? n_topk : 1;
        for (size_t k = 0; k < copies; k++) {
            struct column *c = &tab->cols[tab->n_cols++];
            c->def = &defs[i];
            c->index = k;
            if (defs[i].src == SRC_TOPK)
                snprintf(c->name, sizeof c->name, "%s%" PRIu32, defs[i].name, topk[k]);
            else
                snprintf(c->name, sizeof c->name, "%s", defs[i].name);
            c->offset = off;
            c->size = kind_size(&defs[i]);
            off += c->size;
            if (with_se && (defs[i].flags & COL_SE)) {
                struct column *e = &tab->cols[tab->n_cols++];
                *e = *c;
                e->se = 1;
                size_t len = strlen(c->name); /* names are short: "_se" always fits */
                memcpy(e->name, c->name, len < sizeof e->name - 4 ? len : sizeof e->name - 4);
                memcpy(e->name + (len < sizeof e->name - 4 ? len : sizeof e->name - 4), "_se", 4);
                e->offset = off;
                e->size = sizeof(double);
                off += e->size;
            }
        }
    }
    tab->row_size = off;
    return 0;
}

static int build_type(struct table *tab, const char *file, struct lsh_error *err)
{
    tab->type = H5Tcreate(H5T_COMPOUND, tab->row_size);
    if (tab->type < 0)
        return h5_fail(err, file, "create the /%s row type", tab->name);
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct column *c = &tab->cols[i];
        hid_t t = c->se ? H5Tcopy(H5T_NATIVE_DOUBLE) : kind_type(c->def);
        herr_t rc = t < 0 ? -1 : H5Tinsert(tab->type, c->name, c->offset, t);
        if (t >= 0)
            H5Tclose(t);
        if (rc < 0)
            return h5_fail(err, file, "add column %s to the /%s row type", c->name, tab->name);
    }
    return 0;
}

static int put_string(unsigned char *dst, const struct column *c, const char *s,
                      struct lsh_error *err)
{
    size_t len = s ? strlen(s) : 0, cap = c->size - 1; /* always keep one NUL */
    if (len > cap) {
        if (!(c->def->flags & COL_TRUNCATE))
            return lsh_error_set(err, LSH_ERANGE,
                                 "%s '%s' is %zu characters long; the results file holds "
                                 "at most %zu",
                                 c->name, s, len, cap);
        memcpy(dst, s, cap - 3);
        memcpy(dst + cap - 3, "...", 3);
        return 0;
    }
    if (len)
        memcpy(dst, s, len);
    return 0;
}

/* Lay one record out as a packed row (buf: row_size bytes).  zero_metrics:
 * the point did not run, its metric columns are 0 whatever rec says. */
static int pack_row(const struct table *tab, const void *rec, int zero_metrics,
                    unsigned char *buf, struct lsh_error *err)
{
    const unsigned char *base = rec;
    memset(buf, 0, tab->row_size);
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct column *c = &tab->cols[i];
        const struct col_def *def = c->def;
        unsigned char *dst = buf + c->offset;
        if (zero_metrics && (def->flags & COL_METRIC))
            continue;
        if (c->se) {
            const struct lsh_metric_se *se = ((const struct lsh_run_row *)rec)->metrics.se;
            double v = 0.0;
            if (se && def->src == SRC_TOPK)
                v = se->topk_recall ? se->topk_recall[c->index] : 0.0;
            else if (se)
                memcpy(&v, (const unsigned char *)se + def->se_offset, sizeof v);
            memcpy(dst, &v, sizeof v);
        } else if (def->src == SRC_TOPK) {
            const double *recall = ((const struct lsh_run_row *)rec)->metrics.topk_recall;
            double v = recall ? recall[c->index] : 0.0;
            memcpy(dst, &v, sizeof v);
        } else if (def->src == SRC_WORD) {
            const char *w = def->word(rec);
            if (!w)
                return lsh_error_set(err, LSH_EINVAL, "invalid value for column %s", c->name);
            int rc = put_string(dst, c, w, err);
            if (rc)
                return rc;
        } else if (def->kind == COL_STR) {
            const char *s;
            memcpy(&s, base + def->offset, sizeof s);
            int rc = put_string(dst, c, s, err);
            if (rc)
                return rc;
        } else {
            memcpy(dst, base + def->offset, c->size);
        }
    }
    return 0;
}

static void table_close(struct table *tab)
{
    if (tab->dset >= 0)
        H5Dclose(tab->dset);
    if (tab->type >= 0)
        H5Tclose(tab->type);
    free(tab->cols);
    tab->cols = NULL;
    tab->dset = tab->type = NO_HID;
}

/* ---- the handle ---------------------------------------------------------- */

struct lsh_results {
    char *path, *partial;
    char *work, *snapshot; /* the working copy, and where a snapshot is copied */
    int lock_fd;           /* the working copy, flock()ed while we write it */
    int broken;            /* a write to the working copy failed: never publish it */
    double publish_cost, published_at;
    enum lsh_experiment experiment;
    hid_t file;
    struct table table;   /* /runs or /collision */
    unsigned char *row;   /* one packed row */
    uint64_t n_rows;
    uint64_t *done;       /* sorted ids of ok/skipped rows */
    size_t n_done, cap_done;
};

static int find_done(const struct lsh_results *res, uint64_t id, size_t *pos)
{
    size_t lo = 0, hi = res->n_done;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (res->done[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < res->n_done && res->done[lo] == id;
}

static int add_done(struct lsh_results *res, uint64_t id)
{
    size_t pos;
    if (find_done(res, id, &pos))
        return 0;
    if (res->n_done == res->cap_done) {
        size_t cap = res->cap_done ? 2 * res->cap_done : 64;
        uint64_t *p = realloc(res->done, cap * sizeof *p);
        if (!p)
            return -1;
        res->done = p;
        res->cap_done = cap;
    }
    memmove(res->done + pos + 1, res->done + pos, (res->n_done - pos) * sizeof *res->done);
    res->done[pos] = id;
    res->n_done++;
    return 0;
}

static void results_free(struct lsh_results *res)
{
    if (!res)
        return;
    table_close(&res->table);
    if (res->file >= 0)
        H5Fclose(res->file);
    if (res->lock_fd >= 0)
        close(res->lock_fd);
    free(res->path);
    free(res->partial);
    free(res->work);
    free(res->snapshot);
    free(res->row);
    free(res->done);
    free(res);
}

/* ---- files and folders --------------------------------------------------- */

/* 1 if something (even a dangling link) is at path, 0 if not, -1 on error. */
static int path_exists(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    return errno == ENOENT ? 0 : -1;
}

/* The folder part of path ("." for a bare name), malloc'd. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

static int check_folder(const char *path, struct lsh_error *err)
{
    const char *slash = strrchr(path, '/');
    struct stat st;
    char *dir;
    int rc = 0;

    if (!path[0] || (slash && !slash[1]))
        return lsh_error_set(err, LSH_ECONFIG, "cannot write results to '%s': not a file name",
                             path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lsh_error_set(err, LSH_ECONFIG, "cannot write results to '%s': it is a folder",
                             path);
    dir = folder_of(path);
    if (!dir)
        return no_memory(err);
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            rc = lsh_error_set(err, LSH_ENOTFOUND,
                               "cannot write results to '%s': folder '%s' does not exist", path,
                               dir);
        else
            rc = lsh_error_set(err, LSH_EIO, "cannot write results to '%s': folder '%s': %s",
                               path, dir, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        rc = lsh_error_set(err, LSH_ENOTFOUND,
                           "cannot write results to '%s': '%s' is not a folder", path, dir);
    } else if (access(dir, W_OK | X_OK) != 0) {
        rc = lsh_error_set(err, LSH_ECONFIG,
                           "cannot write results to '%s': folder '%s' is not writable (%s)",
                           path, dir, strerror(errno));
    }
    free(dir);
    return rc;
}

/* Make the data of the file reach the disk before the rename publishes it,
 * and the rename itself after (best effort on the folder). */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void fsync_folder_of(const char *path)
{
    char *dir = folder_of(path);
    if (dir)
        (void)fsync_path(dir, O_RDONLY);
    free(dir);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Copy the file at from to to (created or truncated).  0, or -1 with errno. */
static int copy_file(const char *from, const char *to)
{
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int rc = buf && out >= 0 ? 0 : -1, saved = buf ? errno : ENOMEM;
    while (!rc) {
        ssize_t got = read(in, buf, BUF);
        if (got <= 0) {
            rc = got < 0 ? -1 : 0;
            break;
        }
        for (ssize_t put = 0, w; !rc && put < got; put += w)
            if ((w = write(out, buf + put, (size_t)(got - put))) < 0)
                rc = -1;
    }
    if (rc)
        saved = errno;
    if (out >= 0 && close(out) != 0 && !rc) {
        rc = -1;
        saved = errno;
    }
    if (in >= 0)
        close(in);
    free(buf);
    errno = saved;
    return rc;
}

/* Create (or take over) the working copy and lock it: one writer per file. */
static int lock_work(struct lsh_results *res, struct lsh_error *err)
{
    res->lock_fd = open(res->work, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (res->lock_fd < 0)
        return lsh_error_set(err, LSH_EIO, "cannot create the working copy '%s': %s", res->work,
                             strerror(errno));
    if (flock(res->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(res->lock_fd);
        res->lock_fd = -1;
        if (e == EWOULDBLOCK)
            return lsh_error_set(err, LSH_EEXIST,
                                 "another lshlab run is writing '%s' (its working copy '%s' is "
                                 "locked)",
                                 res->path, res->work);
        return lsh_error_set(err, LSH_EIO, "cannot lock '%s': %s", res->work, strerror(e));
    }
#if !H5_VERSION_GE(1, 10, 7)
    /* No H5Pset_file_locking: HDF5's own lock on the file takes over. */
    flock(res->lock_fd, LOCK_UN);
#endif
    return 0;
}

/* Snapshot the (flushed, hence consistent) working copy as <path>.partial. */
static int publish(struct lsh_results *res, struct lsh_error *err)
{
    double t0 = now_seconds();
    if (H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0) {
        res->broken = 1;
        return h5_fail(err, res->work, "flush the working copy");
    }
    if (copy_file(res->work, res->snapshot) != 0 || rename(res->snapshot, res->partial) != 0) {
        int e = errno;
        unlink(res->snapshot);
        return lsh_error_set(err, LSH_EIO,
                             "cannot update '%s' with the newest rows: %s (it keeps the rows it "
                             "had; free space, then run with --resume to continue)",
                             res->partial, strerror(e));
    }
    res->published_at = now_seconds();
    res->publish_cost = res->published_at - t0;
    return 0;
}

static int maybe_publish(struct lsh_results *res, struct lsh_error *err)
{
    /* LSHLAB_TEST_SNAPSHOT_EVERY_ROW: the same writes in every run, for tests */
    if (!getenv("LSHLAB_TEST_SNAPSHOT_EVERY_ROW") &&
        now_seconds() - res->published_at < PUBLISH_RATIO * res->publish_cost)
        return 0;
    return publish(res, err);
}

/* A write to the working copy failed: it may be torn, so it is never
 * published again; say where the rows written so far are. */
static int broken_write(struct lsh_results *res, int rc, struct lsh_error *err)
{
    res->broken = 1;
    if (err) {
        char hint[LSH_ERROR_MSG_MAX];
        snprintf(hint, sizeof hint, "; the rows finished before are safe in '%s' (free space, "
                 "then run with --resume to continue)", res->partial);
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof err->message - len, "%s", hint);
    }
    return rc;
}

/* ---- attributes ----------------------------------------------------------- */

static hid_t vl_string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        t = NO_HID;
    }
    return t;
}

static herr_t write_attr(hid_t obj, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = NO_HID;
    herr_t rc = -1;
    if (space >= 0)
        attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0)
        rc = H5Awrite(attr, type, value);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

static herr_t attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = vl_string_type();
    if (t < 0)
        return -1;
    const char *v = value ? value : "";
    herr_t rc = write_attr(obj, name, t, &v);
    H5Tclose(t);
    return rc;
}

static herr_t attr_u64(hid_t obj, const char *name, uint64_t v)
{
    return write_attr(obj, name, H5T_NATIVE_UINT64, &v);
}

static herr_t attr_f64(hid_t obj, const char *name, double v)
{
    return write_attr(obj, name, H5T_NATIVE_DOUBLE, &v);
}

/* A string attribute, variable or fixed length, as a malloc'd string.
 * Returns 0, 1 when there is no such attribute, or -1 on error. */
static int read_attr_str(hid_t obj, const char *name, char **out)
{
    htri_t has = H5Aexists(obj, name);
    if (has <= 0)
        return has == 0 ? 1 : -1;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ftype = attr >= 0 ? H5Aget_type(attr) : NO_HID;
    hid_t mtype = NO_HID;
    int rc = -1;
    if (ftype < 0 || H5Tget_class(ftype) != H5T_STRING)
        goto done;
    if (H5Tis_variable_str(ftype) > 0) {
        char *v = NULL;
        mtype = vl_string_type();
        /* HDF5 converts no string between character sets: read it as stored */
        if (mtype >= 0 && H5Tset_cset(mtype, H5Tget_cset(ftype)) >= 0 &&
            H5Aread(attr, mtype, &v) >= 0) {
            *out = strdup(v ? v : "");
            H5free_memory(v);
            rc = *out ? 0 : -1;
        }
    } else {
        size_t size = H5Tget_size(ftype);
        char *v = calloc(size + 1, 1);
        mtype = H5Tcopy(H5T_C_S1);
        if (v && mtype >= 0 && H5Tset_size(mtype, size) >= 0 &&
            H5Tset_cset(mtype, H5Tget_cset(ftype)) >= 0 && H5Aread(attr, mtype, v) >= 0) {
            *out = v;
            v = NULL;
            rc = 0;
        }
        free(v);
    }
done:
    if (mtype >= 0)
        H5Tclose(mtype);
    if (ftype >= 0)
        H5Tclose(ftype);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* Is this file ours?  0, or an error naming the file. */
static int check_format(hid_t file, const char *path, struct lsh_error *err)
{
    char *format = NULL;
    int rc = read_attr_str(file, "format", &format);
    if (rc < 0)
        return h5_fail(err, path, "read the format attribute");
    if (rc > 0 || strcmp(format, LSH_RESULTS_FORMAT) != 0) {
        free(format);
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not an lshlab results file (no format attribute \"%s\")",
                             path, LSH_RESULTS_FORMAT);
    }
    free(format);
    return 0;
}

static int write_root_attributes(hid_t file, const char *path, const struct lsh_config *cfg,
                                 const char *cmdline, const char *resolved,
                                 struct lsh_error *err)
{
    char created[32] = "";
    struct utsname un;
    struct tm tm;
    time_t now = time(NULL);
    int version = LSH_RESULTS_FORMAT_VERSION;

    if (gmtime_r(&now, &tm))
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (uname(&un) != 0)
        snprintf(un.nodename, sizeof un.nodename, "unknown");

    const struct {
        const char *name, *value;
    } strings[] = {
        { "format", LSH_RESULTS_FORMAT },
        { "lshlab_version", LSHLAB_VERSION },
        { "git_revision", LSHLAB_GIT_REVISION },
        { "config", cfg->text },
        { "resolved_config", resolved },
        { "command_line", cmdline },
        { "created", created },
        { "host", un.nodename },
        { "blas", lsh_blas_name() },
        { "blas_kernels", lsh_blas_core() },
        { "experiment", cfg->experiment == LSH_EXPERIMENT_COLLISION ? "collision" : "sweep" },
        { "name", cfg->name },
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (attr_str(file, strings[i].name, strings[i].value) < 0)
            return h5_fail(err, path, "write the %s attribute", strings[i].name);
    if (write_attr(file, "format_version", H5T_NATIVE_INT, &version) < 0)
        return h5_fail(err, path, "write the format_version attribute");
    return 0;
}

/* ---- opening ------------------------------------------------------------- */

static hid_t file_access(void)
{
    /* STRONG: H5Fclose really closes the file (and every object left open),
     * so the rename that follows publishes a finished file. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        fapl = NO_HID;
    }
#if H5_VERSION_GE(1, 10, 7)
    /* The working copy is locked by lock_work(), which HDF5's own lock on
     * another descriptor would collide with. */
    if (fapl >= 0 && H5Pset_file_locking(fapl, 0, 1) < 0) {
        H5Pclose(fapl);
        fapl = NO_HID;
    }
#endif
    return fapl;
}

/* Names must fit their fixed-width columns: checked here, before any work,
 * rather than when the first row arrives. */
static int check_config_strings(const struct lsh_config *cfg, struct lsh_error *err)
{
    const size_t name_max = LSH_RUNS_NAME_LEN - 1, params_max = LSH_RUNS_PARAMS_LEN - 1;
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        const struct lsh_dataset_spec *ds = &cfg->datasets[i];
        if (ds->name && strlen(ds->name) > name_max)
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                                "dataset name '%s' is too long for the results file "
                                "(at most %zu characters)",
                                ds->name, name_max);
        if (ds->name && (strchr(ds->name, '/') || !strcmp(ds->name, ".")))
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, ds->line, ds->column,
                                "dataset name '%s' cannot name an HDF5 group "
                                "(no '/', not '.')",
                                ds->name);
    }
    for (size_t i = 0; i < cfg->n_strategies; i++) {
        const struct lsh_strategy_spec *st = &cfg->strategies[i];
        if (st->name && strlen(st->name) > name_max)
            return lsh_error_at(err, LSH_ECONFIG, cfg->path, st->line, st->column,
                                "strategy name '%s' is too long for the results file "
                                "(at most %zu characters)",
                                st->name, name_max);
        for (size_t j = 0; j < st->n_sets; j++)
            if (st->sets[j].canonical && strlen(st->sets[j].canonical) > params_max)
                return lsh_error_at(err, LSH_ECONFIG, cfg->path, st->line, st->column,
                                    "parameters '%s' of strategy '%s' are too long for the "
                                    "results file (at most %zu characters)",
                                    st->sets[j].canonical, st->name, params_max);
    }
    return 0;
}

static int create_file(struct lsh_results *res, const struct lsh_config *cfg,
                       const char *cmdline, const char *resolved, unsigned flags,
                       struct lsh_error *err)
{
    hsize_t dims[1] = { 0 }, maxdims[1] = { H5S_UNLIMITED }, chunk[1] = { CHUNK_ROWS };
    hid_t fapl = file_access(), space = NO_HID, dcpl = NO_HID;
    int rc = 0;

    res->file = fapl < 0 ? NO_HID : H5Fcreate(res->work, flags, H5P_DEFAULT, fapl);
    if (res->file < 0)
        rc = h5_fail(err, res->work, "create the results file");
    if (fapl >= 0)
        H5Pclose(fapl); /* after h5_fail: any HDF5 call clears the error stack */
    if (rc)
        return rc;
    rc = write_root_attributes(res->file, res->partial, cfg, cmdline, resolved, err);
    if (rc)
        goto fail;
    space = H5Screate_simple(1, dims, maxdims);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0) {
        rc = h5_fail(err, res->partial, "set up /%s", res->table.name);
        goto fail;
    }
    res->table.dset = H5Dcreate2(res->file, res->table.name, res->table.type, space,
                                 H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (res->table.dset < 0 || H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0) {
        rc = h5_fail(err, res->partial, "create /%s", res->table.name);
        goto fail;
    }
fail:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* The existing table must have exactly our columns, in our order. */
static int check_columns(const struct lsh_results *res, struct lsh_error *err)
{
    hid_t ftype = H5Dget_type(res->table.dset);
    int rc = 0;
    if (ftype < 0)
        return h5_fail(err, res->partial, "read the type of /%s", res->table.name);
    int n = H5Tget_class(ftype) == H5T_COMPOUND ? H5Tget_nmembers(ftype) : -1;
    if (n != (int)res->table.n_cols)
        rc = -1;
    for (int i = 0; !rc && i < n; i++) {
        char *name = H5Tget_member_name(ftype, (unsigned)i);
        if (!name || strcmp(name, res->table.cols[i].name) != 0)
            rc = -1;
        H5free_memory(name);
    }
    H5Tclose(ftype);
    if (rc)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': its /%s columns are not the ones this version "
                             "of lshlab writes; use --force to replace it",
                             res->partial, res->table.name);
    return 0;
}

/* Show where two resolved configs part ways, as "line N: 'x' vs 'y'". */
static void describe_difference(const char *file_yaml, const char *cfg_yaml, char *buf,
                                size_t size)
{
    const char *a = file_yaml, *b = cfg_yaml, *la = a, *lb = b;
    int line = 1;
    while (*a && *a == *b) {
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
        a++, b++;
    }
    int na = (int)strcspn(la, "\n"), nb = (int)strcspn(lb, "\n");
    snprintf(buf, size, "line %d: the file has '%.*s', this config '%.*s'", line,
             na > 120 ? 120 : na, la, nb > 120 ? 120 : nb, lb);
}

/* Drop the rows that do not count (failed, or never completed) so that they
 * are run again, and remember the ids of the rest. */
static int read_done_points(struct lsh_results *res, struct lsh_error *err)
{
    struct id_status {
        uint64_t point_id;
        char status[LSH_RUNS_WORD_LEN];
    } *rows = NULL;
    hid_t fspace = H5Dget_space(res->table.dset), mtype = NO_HID, stype = NO_HID;
    hsize_t n = 0;
    unsigned char *all = NULL;
    int rc = 0;

    if (fspace < 0 || H5Sget_simple_extent_dims(fspace, &n, NULL) < 0) {
        rc = h5_fail(err, res->partial, "read the size of /runs");
        goto done;
    }
    res->n_rows = n;
    if (n == 0)
        goto done;
    rows = calloc((size_t)n, sizeof *rows);
    if (!rows) {
        rc = no_memory(err);
        goto done;
    }
    mtype = H5Tcreate(H5T_COMPOUND, sizeof *rows);
    stype = H5Tcopy(H5T_C_S1);
    if (mtype < 0 || stype < 0 || H5Tset_size(stype, LSH_RUNS_WORD_LEN) < 0 ||
        H5Tset_strpad(stype, H5T_STR_NULLPAD) < 0 ||
        H5Tinsert(mtype, "point_id", offsetof(struct id_status, point_id),
                  H5T_NATIVE_UINT64) < 0 ||
        H5Tinsert(mtype, "status", offsetof(struct id_status, status), stype) < 0 ||
        H5Dread(res->table.dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0) {
        rc = h5_fail(err, res->partial, "read the point ids of /runs");
        goto done;
    }

    size_t kept = 0;
    int *keep = calloc((size_t)n, sizeof *keep);
    if (!keep) {
        rc = no_memory(err);
        goto done;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
        char status[LSH_RUNS_WORD_LEN + 1] = "";
        memcpy(status, rows[i].status, LSH_RUNS_WORD_LEN);
        keep[i] = !strcmp(status, "ok") || !strcmp(status, "skipped");
        if (keep[i]) {
            kept++;
            if (add_done(res, rows[i].point_id) < 0) {
                free(keep);
                rc = no_memory(err);
                goto done;
            }
        }
    }
    if (kept < (size_t)n) {
        hsize_t start[1] = { 0 }, count[1] = { kept }, new_n[1] = { kept };
        size_t rs = res->table.row_size, w = 0;
        hid_t mspace = NO_HID;
        all = malloc((size_t)n * rs);
        if (!all) {
            free(keep);
            rc = no_memory(err);
            goto done;
        }
        if (H5Dread(res->table.dset, res->table.type, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) < 0) {
            free(keep);
            rc = h5_fail(err, res->partial, "read /runs");
            goto done;
        }
        for (size_t i = 0; i < (size_t)n; i++)
            if (keep[i])
                memmove(all + w++ * rs, all + i * rs, rs);
        herr_t ok = 0;
        if (kept > 0) {
            mspace = H5Screate_simple(1, count, NULL);
            ok = mspace < 0 ? -1
                 : H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
            if (ok >= 0)
                ok = H5Dwrite(res->table.dset, res->table.type, mspace, fspace, H5P_DEFAULT,
                              all);
            if (mspace >= 0)
                H5Sclose(mspace);
        }
        if (ok < 0 || H5Dset_extent(res->table.dset, new_n) < 0 ||
            H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0) {
            free(keep);
            rc = h5_fail(err, res->partial, "drop the failed rows of /runs");
            goto done;
        }
        res->n_rows = kept;
    }
    free(keep);
done:
    free(all);
    free(rows);
    if (stype >= 0)
        H5Tclose(stype);
    if (mtype >= 0)
        H5Tclose(mtype);
    if (fspace >= 0)
        H5Sclose(fspace);
    return rc;
}

static int resume_file(struct lsh_results *res, const char *resolved, struct lsh_error *err)
{
    hid_t fapl = file_access();
    char *file_yaml = NULL;
    int version = 0, rc;

    res->file = fapl < 0 ? NO_HID : H5Fopen(res->work, H5F_ACC_RDWR, fapl);
    rc = res->file < 0 ? h5_fail(err, res->partial, "open the results file to resume it") : 0;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (rc)
        return rc;
    rc = check_format(res->file, res->partial, err);
    if (rc)
        return rc;

    hid_t attr = H5Aopen(res->file, "format_version", H5P_DEFAULT);
    herr_t got = attr < 0 ? -1 : H5Aread(attr, H5T_NATIVE_INT, &version);
    if (attr >= 0)
        H5Aclose(attr);
    if (got < 0)
        return h5_fail(err, res->partial, "read the format_version attribute");
    if (version != LSH_RESULTS_FORMAT_VERSION)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it has format_version %d, this lshlab writes "
                             "%d; use --force to replace it",
                             res->partial, version, LSH_RESULTS_FORMAT_VERSION);

    rc = read_attr_str(res->file, "resolved_config", &file_yaml);
    if (rc < 0)
        return h5_fail(err, res->partial, "read the resolved_config attribute");
    if (rc > 0)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it has no resolved_config attribute",
                             res->partial);
    if (strcmp(file_yaml, resolved) != 0) {
        char where[400];
        describe_difference(file_yaml, resolved, where, sizeof where);
        free(file_yaml);
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it was written with a different configuration "
                             "(resolved config differs at %s); use --force to replace it",
                             res->partial, where);
    }
    free(file_yaml);

    htri_t has = H5Lexists(res->file, res->table.name, H5P_DEFAULT);
    if (has <= 0)
        return has < 0 ? h5_fail(err, res->partial, "look for /%s", res->table.name)
                       : lsh_error_set(err, LSH_EDATA, "cannot resume '%s': it has no /%s",
                                       res->partial, res->table.name);
    res->table.dset = H5Dopen2(res->file, res->table.name, H5P_DEFAULT);
    if (res->table.dset < 0)
        return h5_fail(err, res->partial, "open /%s", res->table.name);
    rc = check_columns(res, err);
    if (rc)
        return rc;
    if (res->experiment == LSH_EXPERIMENT_SWEEP)
        return read_done_points(res, err);

    hid_t space = H5Dget_space(res->table.dset);
    hsize_t n = 0;
    got = space < 0 ? -1 : H5Sget_simple_extent_dims(space, &n, NULL);
    if (space >= 0)
        H5Sclose(space);
    if (got < 0)
        return h5_fail(err, res->partial, "read the size of /%s", res->table.name);
    res->n_rows = n;
    return 0;
}

void lsh_results_init_library(void)
{
    /* HDF5's exit handler closes what is still open; after a write failed
     * (disk full) H5Fclose leaves a half-freed file behind, and the handler
     * would crash on it.  Every file is closed explicitly anyway.  (Only the
     * first call in a process counts; later ones fail harmlessly.) */
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int lsh_results_open(const char *path, const struct lsh_config *cfg, const char *cmdline,
                     enum lsh_results_mode mode, struct lsh_results **out,
                     struct lsh_error *err)
{
    struct lsh_results *res = NULL;
    char *resolved = NULL;
    int rc, moved = 0, created = 0, locked = 0;

    if (!path || !cfg || !out)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_open: NULL argument");
    lsh_results_init_library();
    rc = check_folder(path, err);
    if (rc)
        return rc;
    rc = check_config_strings(cfg, err);
    if (rc)
        return rc;

    res = calloc(1, sizeof *res);
    if (!res)
        return no_memory(err);
    res->file = res->table.dset = res->table.type = NO_HID;
    res->lock_fd = -1;
    res->experiment = cfg->experiment;
    res->path = strdup(path);
    res->partial = malloc(strlen(path) + sizeof ".partial");
    res->work = malloc(strlen(path) + sizeof ".work");
    res->snapshot = malloc(strlen(path) + sizeof ".partial.tmp");
    resolved = lsh_config_resolved_yaml(cfg);
    if (!res->path || !res->partial || !res->work || !res->snapshot || !resolved) {
        rc = no_memory(err);
        goto fail;
    }
    strcpy(res->partial, path);
    strcat(res->partial, ".partial");
    strcpy(res->work, path);
    strcat(res->work, ".work");
    strcpy(res->snapshot, path);
    strcat(res->snapshot, ".partial.tmp");

    if (cfg->experiment == LSH_EXPERIMENT_COLLISION) {
        res->table.name = "collision";
        rc = expand_columns(&res->table, collision_columns,
                            sizeof collision_columns / sizeof collision_columns[0], NULL, 0, 0,
                            err);
    } else {
        res->table.name = "runs";
        /* SPEC 6: a sampled reference adds X_se beside every metric X */
        int sampled = 0;
        for (size_t k = 0; k < cfg->n_datasets; k++)
            sampled |= cfg->datasets[k].reference_rows > 0;
        rc = expand_columns(&res->table, run_columns, sizeof run_columns / sizeof run_columns[0],
                            cfg->attention.topk, cfg->attention.n_topk, sampled, err);
    }
    if (!rc)
        rc = build_type(&res->table, res->partial, err);
    if (!rc && !(res->row = malloc(res->table.row_size)))
        rc = no_memory(err);
    if (rc)
        goto fail;

    int has_path = path_exists(path), has_partial = path_exists(res->partial);
    if (has_path < 0 || has_partial < 0) {
        rc = lsh_error_set(err, LSH_EIO, "cannot check whether '%s' exists: %s",
                           has_path < 0 ? path : res->partial, strerror(errno));
        goto fail;
    }
    switch (mode) {
    case LSH_RESULTS_CREATE:
        if (has_path) {
            rc = lsh_error_set(err, LSH_EEXIST,
                               "results file '%s' exists; use --force to replace it or --resume "
                               "to continue it",
                               path);
            goto fail;
        }
        if (has_partial) {
            rc = lsh_error_set(err, LSH_EEXIST,
                               "a previous run writing '%s' was interrupted ('%s' exists); use "
                               "--resume to continue it or --force to start over",
                               path, res->partial);
            goto fail;
        }
        if ((rc = lock_work(res, err)))
            goto fail;
        locked = created = 1;
        rc = create_file(res, cfg, cmdline, resolved, H5F_ACC_TRUNC, err);
        break;
    case LSH_RESULTS_FORCE:
        if ((rc = lock_work(res, err)))
            goto fail;
        locked = created = 1;
        rc = create_file(res, cfg, cmdline, resolved, H5F_ACC_TRUNC, err);
        break;
    case LSH_RESULTS_RESUME:
        if ((rc = lock_work(res, err)))
            goto fail;
        locked = 1;
        if (!has_partial && has_path) {
            /* The complete file comes back only when this run completes. */
            if (rename(path, res->partial) != 0) {
                rc = lsh_error_set(err, LSH_EIO, "cannot move '%s' to '%s' to resume it: %s",
                                   path, res->partial, strerror(errno));
                goto fail;
            }
            moved = 1;
        }
        if (has_partial || has_path) {
            /* never the working copy a crash may have left: it may be torn */
            if (copy_file(res->partial, res->work) != 0)
                rc = lsh_error_set(err, LSH_EIO, "cannot copy '%s' to '%s' to resume it: %s",
                                   res->partial, res->work, strerror(errno));
            else
                rc = resume_file(res, resolved, err);
        } else {
            created = 1;
            rc = create_file(res, cfg, cmdline, resolved, H5F_ACC_TRUNC, err);
        }
        break;
    default:
        rc = lsh_error_set(err, LSH_EINVAL, "lsh_results_open: unknown mode %d", (int)mode);
    }
    if (!rc && created) /* <path>.partial exists from the start */
        rc = publish(res, err);
    if (rc)
        goto fail;
    free(resolved);
    *out = res;
    return 0;

fail:
    free(resolved);
    if (res) {
        table_close(&res->table);
        if (res->file >= 0) {
            H5Fclose(res->file);
            res->file = NO_HID;
        }
        if (locked) /* ours, and nothing in it is needed */
            unlink(res->work);
        if (moved)
            (void)rename(res->partial, path); /* a refused resume leaves things as found */
        results_free(res);
    }
    return rc;
}

int lsh_results_sync(struct lsh_results *res, struct lsh_error *err)
{
    if (!res)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_sync: NULL argument");
    if (res->broken)
        return lsh_error_set(err, LSH_EIO, "'%s' is not updated after a failed write",
                             res->partial);
    return publish(res, err);
}

int lsh_results_has_point(const struct lsh_results *res, uint64_t point_id)
{
    size_t pos;
    return res && find_done(res, point_id, &pos);
}

size_t lsh_results_row_count(const struct lsh_results *res)
{
    return res ? (size_t)res->n_rows : 0;
}

/* ---- appending ----------------------------------------------------------- */

/* Extend the table by the packed row in res->row, write it and flush. */
static int append_row(struct lsh_results *res, struct lsh_error *err)
{
    hsize_t start[1] = { res->n_rows }, one[1] = { 1 }, dims[1] = { res->n_rows + 1 };
    hid_t fspace = NO_HID, mspace = NO_HID;
    int rc = 0;

    if (H5Dset_extent(res->table.dset, dims) < 0)
        return h5_fail(err, res->work, "extend /%s", res->table.name);
    fspace = H5Dget_space(res->table.dset);
    mspace = H5Screate_simple(1, one, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, one, NULL) < 0 ||
        H5Dwrite(res->table.dset, res->table.type, mspace, fspace, H5P_DEFAULT, res->row) < 0) {
        rc = h5_fail(err, res->work, "write row %" PRIu64 " of /%s", res->n_rows,
                     res->table.name);
        dims[0] = res->n_rows;
        H5Dset_extent(res->table.dset, dims);
        goto done;
    }
    res->n_rows++;
    if (H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = h5_fail(err, res->work, "flush /%s", res->table.name);
done:
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    return rc;
}

int lsh_results_append(struct lsh_results *res, const struct lsh_run_row *row,
                       struct lsh_error *err)
{
    if (!res || !row)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_append: NULL argument");
    if (res->experiment != LSH_EXPERIMENT_SWEEP)
        return lsh_error_set(err, LSH_EINVAL, "'%s' holds a collision experiment, not /runs",
                             res->partial);
    if (lsh_results_has_point(res, row->key.point_id))
        return lsh_error_set(err, LSH_EINVAL, "point %" PRIu64 " is already in /runs of '%s'",
                             row->key.point_id, res->partial);
    if (res->broken)
        return lsh_error_set(err, LSH_EIO, "'%s' cannot take more rows after a failed write",
                             res->work);
    int rc = pack_row(&res->table, row, row->status != LSH_POINT_OK, res->row, err);
    if (!rc && (rc = append_row(res, err)))
        return broken_write(res, rc, err);
    if (!rc && row->status != LSH_POINT_FAILED && add_done(res, row->key.point_id) < 0)
        rc = no_memory(err);
    return rc ? rc : maybe_publish(res, err);
}

int lsh_results_append_collision(struct lsh_results *res, const struct lsh_collision_row *row,
                                 struct lsh_error *err)
{
    if (!res || !row)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_append_collision: NULL argument");
    if (res->experiment != LSH_EXPERIMENT_COLLISION)
        return lsh_error_set(err, LSH_EINVAL, "'%s' holds a sweep, not /collision",
                             res->partial);
    if (res->broken)
        return lsh_error_set(err, LSH_EIO, "'%s' cannot take more rows after a failed write",
                             res->work);
    int rc = pack_row(&res->table, row, 0, res->row, err);
    if (!rc && (rc = append_row(res, err)))
        return broken_write(res, rc, err);
    return rc ? rc : maybe_publish(res, err);
}

/* ---- datasets and dumps -------------------------------------------------- */

/* Open the group at name under parent, creating it if needed. */
static hid_t open_group(hid_t parent, const char *name)
{
    htri_t has = H5Lexists(parent, name, H5P_DEFAULT);
    if (has < 0)
        return NO_HID;
    return has ? H5Gopen2(parent, name, H5P_DEFAULT)
               : H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static herr_t write_matrix(hid_t group, const char *name, hid_t type, const void *data,
                           size_t rows, size_t cols)
{
    hsize_t dims[2] = { rows, cols };
    hid_t space = H5Screate_simple(cols ? 2 : 1, dims, NULL), dset = NO_HID;
    herr_t rc = -1;
    if (space >= 0)
        dset = H5Dcreate2(group, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dset >= 0)
        rc = (cols ? rows * cols : rows) == 0
                 ? 0 /* an empty array has nothing to write */
                 : H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* A /datasets/NAME group is complete when its last attribute is there and,
 * with dump_data, its matrices: anything less is an interrupted write. */
static int dataset_group_complete(hid_t group, const struct lsh_dataset *ds, int dump_data)
{
    if (H5Aexists(group, "reference_rows") <= 0)
        return 0;
    if (dump_data && (H5Lexists(group, "Q", H5P_DEFAULT) <= 0 ||
                      H5Lexists(group, "V", H5P_DEFAULT) <= 0 ||
                      (ds->k && H5Lexists(group, "K", H5P_DEFAULT) <= 0)))
        return 0;
    return 1;
}

static int write_dataset_group(hid_t group, const struct lsh_dataset *ds, int dump_data)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    if (dump_data &&
        (write_matrix(group, "Q", H5T_NATIVE_DOUBLE, ds->q, ds->n, ds->d) < 0 ||
         (ds->k && write_matrix(group, "K", H5T_NATIVE_DOUBLE, ds->k, ds->n, ds->d) < 0) ||
         write_matrix(group, "V", H5T_NATIVE_DOUBLE, ds->v, ds->n, ds->d_v) < 0))
        return -1;
    if (attr_str(group, "kind", lsh_data_kind_name(spec->kind)) < 0 ||
        attr_u64(group, "n", ds->n) < 0 || attr_u64(group, "d", ds->d) < 0 ||
        attr_u64(group, "d_v", ds->d_v) < 0 || attr_u64(group, "seed", ds->seed) < 0)
        return -1;
    if (spec->kind == LSH_DATA_CLUSTERED &&
        (attr_u64(group, "clusters", spec->clusters) < 0 ||
         attr_f64(group, "spread", spec->spread) < 0 ||
         attr_f64(group, "norm", spec->norm < 0 ? sqrt((double)ds->d) : spec->norm) < 0))
        return -1;
    if (spec->kind == LSH_DATA_HDF5 &&
        (attr_str(group, "file", spec->file) < 0 || attr_str(group, "q", spec->q) < 0 ||
         (spec->k && attr_str(group, "k", spec->k) < 0) ||
         (spec->v && attr_str(group, "v", spec->v) < 0)))
        return -1;
    /* Last, as the mark of a finished group. */
    uint64_t m = spec->reference_rows && spec->reference_rows < ds->n ? spec->reference_rows
                                                                      : ds->n;
    return attr_u64(group, "reference_rows", m);
}

int lsh_results_write_dataset(struct lsh_results *res, const struct lsh_dataset *ds,
                              int dump_data, struct lsh_error *err)
{
    if (!res || !ds || !ds->spec || !ds->spec->name)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_write_dataset: NULL argument");
    if (dump_data && (!ds->q || !ds->v))
        return lsh_error_set(err, LSH_EINVAL, "dataset '%s' has no data to dump",
                             ds->spec->name);
    const char *name = ds->spec->name;
    hid_t top = open_group(res->file, "datasets"), group = NO_HID;
    int rc = 0;
    if (top < 0)
        return h5_fail(err, res->partial, "create /datasets");
    htri_t has = H5Lexists(top, name, H5P_DEFAULT);
    if (has < 0) {
        rc = h5_fail(err, res->partial, "look for /datasets/%s", name);
        goto done;
    }
    if (has) {
        group = H5Gopen2(top, name, H5P_DEFAULT);
        int complete = group >= 0 && dataset_group_complete(group, ds, dump_data);
        if (group >= 0)
            H5Gclose(group);
        group = NO_HID;
        if (complete)
            goto done; /* resume: written by the first run */
        if (H5Ldelete(top, name, H5P_DEFAULT) < 0) {
            rc = h5_fail(err, res->partial, "replace the unfinished /datasets/%s", name);
            goto done;
        }
    }
    group = H5Gcreate2(top, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0 || write_dataset_group(group, ds, dump_data) < 0 ||
        H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = broken_write(res, h5_fail(err, res->work, "write /datasets/%s", name), err);
done:
    if (group >= 0)
        H5Gclose(group);
    H5Gclose(top);
    return rc;
}

int lsh_results_dump_array(struct lsh_results *res, uint64_t point_id, const char *name,
                           char type, const void *data, size_t rows, size_t cols,
                           struct lsh_error *err)
{
    char point[24];
    hid_t top = NO_HID, group = NO_HID;
    int rc = 0;

    if (!res || !name || !name[0] || strchr(name, '/') || (!data && (cols ? rows * cols : rows)))
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_dump_array: bad argument");
    if (type != 'u' && type != 'd')
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_dump_array: type '%c' is not u or d",
                             type);
    snprintf(point, sizeof point, "%" PRIu64, point_id);
    top = open_group(res->file, "points");
    group = top < 0 ? NO_HID : open_group(top, point);
    if (group < 0) {
        rc = h5_fail(err, res->partial, "create /points/%s", point);
        goto done;
    }
    /* Resume re-runs a point whose row never made it: replace its arrays. */
    htri_t has = H5Lexists(group, name, H5P_DEFAULT);
    if (has < 0 || (has && H5Ldelete(group, name, H5P_DEFAULT) < 0) ||
        write_matrix(group, name, type == 'u' ? H5T_NATIVE_UINT32 : H5T_NATIVE_DOUBLE, data,
                     rows, cols) < 0)
        rc = broken_write(res, h5_fail(err, res->work, "write /points/%s/%s", point, name),
                          err);
done:
    if (group >= 0)
        H5Gclose(group);
    if (top >= 0)
        H5Gclose(top);
    return rc;
}

/* ---- closing ------------------------------------------------------------- */

int lsh_results_close(struct lsh_results *res, int complete, struct lsh_error *err)
{
    int rc = 0;
    if (!res)
        return 0;
    if (!res->broken && res->file >= 0 && H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = broken_write(res, h5_fail(err, res->partial, "flush the results file"), err);
    table_close(&res->table);
    if (res->file >= 0 && H5Fclose(res->file) < 0 && !rc)
        rc = broken_write(res, h5_fail(err, res->partial, "close the results file"), err);
    res->file = NO_HID;
    if (res->broken) {
        /* <path>.partial keeps the last snapshot */
        unlink(res->work);
        if (complete && !rc)
            rc = lsh_error_set(err, LSH_EIO, "'%s' is incomplete after a failed write",
                               res->partial);
    } else if (fsync_path(res->work, O_RDONLY) != 0) {
        rc = lsh_error_set(err, LSH_EIO, "cannot sync '%s' to disk: %s", res->work,
                           strerror(errno));
    } else if (rename(res->work, complete ? res->path : res->partial) != 0) {
        rc = lsh_error_set(err, LSH_EIO, "cannot move '%s' to '%s': %s", res->work,
                           complete ? res->path : res->partial, strerror(errno));
    } else {
        if (complete)
            unlink(res->partial); /* after the rename: one of them always exists */
        fsync_folder_of(res->path);
    }
    unlink(res->snapshot); /* left by a crash in the middle of a snapshot */
    results_free(res);
    return rc;
}

/* ---- show ---------------------------------------------------------------- */

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

/* A column of a compound table as found in the file, read generically. */
struct show_col {
    char *name;
    H5T_class_t cls;
    size_t offset, size;
    int is_signed, is_vlstr;
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

static int show_table_open(hid_t file, const char *path, struct show_table *t,
                           struct lsh_error *err)
{
    hid_t ftype = NO_HID, space = NO_HID;
    int rc = 0;

    t->dset = H5Dopen2(file, t->name, H5P_DEFAULT);
    ftype = t->dset < 0 ? NO_HID : H5Dget_type(t->dset);
    space = t->dset < 0 ? NO_HID : H5Dget_space(t->dset);
    if (ftype < 0 || space < 0) {
        rc = h5_fail(err, path, "open /%s", t->name);
        goto done;
    }
    if (H5Tget_class(ftype) != H5T_COMPOUND || H5Sget_simple_extent_ndims(space) != 1) {
        rc = lsh_error_set(err, LSH_EDATA, "'%s': /%s is not a table (a 1-D compound dataset)",
                           path, t->name);
        goto done;
    }
    H5Sget_simple_extent_dims(space, &t->n_rows, NULL);
    t->mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
    t->n_cols = t->mtype < 0 ? -1 : H5Tget_nmembers(t->mtype);
    if (t->n_cols < 0) {
        rc = h5_fail(err, path, "read the columns of /%s", t->name);
        goto done;
    }
    t->row_size = H5Tget_size(t->mtype);
    t->cols = calloc((size_t)t->n_cols + 1, sizeof *t->cols);
    if (!t->cols) {
        rc = no_memory(err);
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
            rc = h5_fail(err, path, "read the columns of /%s", t->name);
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
            rc = no_memory(err);
            goto done;
        }
    }
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
        return csv ? sb_csv_field(b, s, n) : sb_put(b, s, n);
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
                 : width ? sb_put(b, c->name, strlen(c->name))
                         : sb_csv_field(b, c->name, strlen(c->name))) < 0)
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
    unsigned char *buf = malloc(t->row_size * SHOW_BLOCK_ROWS);
    hid_t fspace = H5Dget_space(t->dset);
    int rc = 0;
    if (!buf || fspace < 0) {
        rc = buf ? h5_fail(err, path, "read /%s", t->name) : no_memory(err);
        goto done;
    }
    for (hsize_t start = 0; start < t->n_rows; start += SHOW_BLOCK_ROWS) {
        hsize_t count = t->n_rows - start < SHOW_BLOCK_ROWS ? t->n_rows - start
                                                             : SHOW_BLOCK_ROWS;
        hid_t mspace = H5Screate_simple(1, &count, NULL);
        if (mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dread(t->dset, t->mtype, mspace, fspace, H5P_DEFAULT, buf) < 0) {
            if (mspace >= 0)
                H5Sclose(mspace);
            rc = h5_fail(err, path, "read /%s", t->name);
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
            rc = no_memory(err);
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
    if (!csv) {
        width = calloc((size_t)t.n_cols + 1, sizeof *width);
        if (!width) {
            rc = no_memory(err);
            goto done;
        }
        for (int j = 0; j < t.n_cols; j++)
            width[j] = strlen(t.cols[j].name);
        rc = show_rows(&t, path, width, NULL, &b, err);
        if (rc)
            goto done;
    }
    if (print_line(&t, NULL, width, &b, out) < 0)
        rc = no_memory(err);
    else
        rc = show_rows(&t, path, width, out, &b, err);
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
    if (S_ISDIR(st.st_mode) || H5Fis_hdf5(path) <= 0)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not an HDF5 file, so not an lshlab results file", path);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    /* Reading is allowed while a sweep is still writing the file (a .partial). */
    if (fapl >= 0)
        H5Pset_file_locking(fapl, 0, 1);
#endif
    file = fapl < 0 ? NO_HID : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    rc = file < 0 ? h5_fail(err, path, "open it") : 0;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (rc)
        return rc;
    rc = check_format(file, path, err);
    for (int i = 0; !rc && i < 2; i++) {
        htri_t has = H5Lexists(file, tables[i], H5P_DEFAULT);
        if (has < 0)
            rc = h5_fail(err, path, "look for /%s", tables[i]);
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
