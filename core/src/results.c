/* results.c - writing the HDF5 results file (SPEC 9) safely: provenance
 * attributes, the /runs or /collision rows, /datasets and /points.
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
 * writing the same results: it is taken before the file gets its name
 * (claim_work), so the first run to claim the name writes, and any other is
 * told that one is running.  A write that fails (disk full) marks the
 * working copy broken: it is dropped, and <path>.partial keeps the rows
 * written before.
 *
 * Names.  Every file is created new (O_CREAT|O_EXCL|O_NOFOLLOW, or HDF5's
 * EXCL, checked against the locked descriptor), so a link planted at
 * <path>.work or <path>.partial.tmp is never followed; renames go only over
 * regular files, and a link, device, FIFO or folder at any of the names is
 * refused by name, never removed.  A regular leftover of a crash is replaced.
 *
 * Trust.  A resumed file is checked before its rows count: duplicated ids at
 * open, every row against the plan in lsh_results_check_resumed, each
 * dataset's input digest in lsh_results_write_dataset; the tables carry
 * fletcher32 checksums, so flipped bytes fail the read. */
#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "dataset.h"
#include "linalg.h"
#include "results_schema.h"
#include "version.h"

/* A snapshot after a row unless the last one was taken less than
 * PUBLISH_RATIO times its own cost ago: snapshots then take at most ~5% of
 * the run time, whatever the file size and file system (renaming over a file
 * makes ext4 write it out), and a crash loses at most that much work, which
 * --resume redoes.  Points that take longer than that get one each. */
#define PUBLISH_RATIO 20.0

/* ---- the handle ---------------------------------------------------------- */

struct lsh_results {
    char *path, *partial;
    char *work, *snapshot; /* the working copy, and where a snapshot is copied */
    int lock_fd;           /* the working copy, flock()ed while we write it */
    int own_work;          /* lock_fd is locked and res->work names it */
    int moved;             /* resume: <path> was moved to <path>.partial */
    int refused;           /* resume: the file does not match the plan or input */
    uint64_t n_rows_at_open;
    int broken;            /* a write to the working copy failed: never publish it */
    double publish_cost, published_at;
    enum lsh_experiment experiment;
    hid_t file;
    struct lsh_table table;   /* /runs or /collision */
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
    lsh_table_close(&res->table);
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

/* What st describes, for messages; NULL for a regular file. */
static const char *not_regular(const struct stat *st)
{
    if (S_ISREG(st->st_mode))
        return NULL;
    if (S_ISLNK(st->st_mode))
        return "a symbolic link";
    if (S_ISDIR(st->st_mode))
        return "a folder";
    if (S_ISFIFO(st->st_mode))
        return "a FIFO";
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        return "a device";
    return "not a regular file";
}

/* lshlab replaces, moves and removes regular files only, and never follows
 * a link at a name it writes: 0 when p is a regular file (*exists = 1) or
 * absent (*exists = 0); anything else is refused with `code`, naming it. */
static int check_regular(const char *p, int code, int *exists, struct lsh_error *err)
{
    struct stat st;
    if (lstat(p, &st) != 0) {
        if (errno != ENOENT)
            return lsh_error_set(err, LSH_EIO, "cannot check whether '%s' exists: %s", p,
                                 strerror(errno));
        if (exists)
            *exists = 0;
        return 0;
    }
    const char *what = not_regular(&st);
    if (what)
        return lsh_error_set(err, code,
                             "cannot write results at '%s': it is %s; lshlab replaces only "
                             "regular files, and neither follows nor removes anything else",
                             p, what);
    if (exists)
        *exists = 1;
    return 0;
}

/* Remove a file of ours (a leftover snapshot), but never a link or anything
 * else someone put at that name. */
static void remove_ours(const char *p)
{
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISREG(st.st_mode))
        unlink(p);
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
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lsh_error_set(err, LSH_ECONFIG, "cannot write results to '%s': it is a folder",
                             path);
    dir = folder_of(path);
    if (!dir)
        return lsh_h5_enomem(err);
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

/* Whether the file at p is the one at q (both existing). */
static int same_file(const struct stat *st, const char *q)
{
    struct stat other;
    return q && stat(q, &other) == 0 && other.st_dev == st->st_dev && other.st_ino == st->st_ino;
}

/* lsh_dataset_each_file's visitor: stops (1) at the file *st, keeping its path. */
struct input_hit {
    const struct stat *st;
    char *path;
};

static int is_this_file(void *ctx, const char *path, const char *named)
{
    struct input_hit *hit = ctx;
    if (!same_file(hit->st, path))
        return 0;
    hit->path = strdup(named);
    return 1;
}

/* None of the names lshlab replaces or removes (the results file, its
 * snapshot and working copies) may be the config or an hdf5 input file:
 * --force or a finished run would replace the data the run has just read. */
static int check_not_input(const char *const names[], size_t count, const struct lsh_config *cfg,
                           struct lsh_error *err)
{
    for (size_t i = 0; i < count; i++) {
        struct stat st;
        if (lstat(names[i], &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* absent; anything else check_regular refuses */
        if (same_file(&st, cfg->path))
            return lsh_error_set(err, LSH_ECONFIG,
                                 "cannot write results at '%s': it is the config file '%s'; "
                                 "allowed: a path that is none of the run's inputs",
                                 names[i], cfg->path);
        for (size_t k = 0; k < cfg->n_datasets; k++) {
            struct input_hit hit = {&st, NULL};
            int rc = lsh_dataset_each_file(&cfg->datasets[k], cfg->path, is_this_file, &hit);
            if (rc < 0)
                return lsh_h5_enomem(err);
            if (rc)
                rc = lsh_error_set(err, LSH_ECONFIG,
                                   "cannot write results at '%s': it is the data file '%s' of "
                                   "dataset '%s'; allowed: a path that is none of the run's "
                                   "inputs", names[i], hit.path ? hit.path : "?",
                                   cfg->datasets[k].name);
            free(hit.path);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Make the rename that published a file reach the disk (best effort). */
static void fsync_folder_of(const char *path)
{
    char *dir = folder_of(path);
    int fd = dir ? open(dir, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Create p as a new regular file for writing, never through a link: a
 * regular file left there by a crash is replaced, anything else refused.
 * The descriptor, or a negative LSH_E* code. */
static int create_new(const char *p, struct lsh_error *err)
{
    for (int attempt = 0;; attempt++) {
        int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST || attempt > 0)
            return lsh_error_set(err, LSH_EIO, "cannot create '%s': %s", p, strerror(errno));
        int rc = check_regular(p, LSH_EIO, NULL, err);
        if (rc)
            return rc;
        if (unlink(p) != 0 && errno != ENOENT)
            return lsh_error_set(err, LSH_EIO, "cannot replace the leftover '%s': %s", p,
                                 strerror(errno));
    }
}

/* Copy the file at from into the descriptor out.  0, or -1 with errno. */
static int copy_into(const char *from, int out)
{
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int rc = buf && in >= 0 ? 0 : -1, saved = buf ? errno : ENOMEM;
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
    if (in >= 0)
        close(in);
    free(buf);
    errno = saved;
    return rc;
}

/* Copy from to a new file at to (see create_new).  0, or an LSH_E* code. */
static int copy_file(const char *from, const char *to, struct lsh_error *err)
{
    int out = create_new(to, err);
    if (out < 0)
        return out;
    int rc = copy_into(from, out);
    if (close(out) != 0)
        rc = -1;
    return rc ? lsh_error_set(err, LSH_EIO, "cannot copy '%s' to '%s': %s", from, to,
                              strerror(errno))
              : 0;
}

/* The process holding an flock() on the file st describes, from /proc/locks
 * (Linux), or 0 when unknown. */
static long lock_holder(const struct stat *st)
{
    FILE *f = fopen("/proc/locks", "r");
    char line[256];
    long pid = 0;
    while (f && !pid && fgets(line, sizeof line, f)) {
        char kind[16];
        long p;
        unsigned maj, min;
        unsigned long long ino;
        if (strstr(line, "->"))
            continue; /* a waiter, not the holder */
        if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%llu", kind, &p, &maj, &min, &ino) == 5 &&
            !strcmp(kind, "FLOCK") && ino == (unsigned long long)st->st_ino &&
            maj == major(st->st_dev) && min == minor(st->st_dev))
            pid = p;
    }
    if (f)
        fclose(f);
    return pid;
}

static int busy(const struct lsh_results *res, const struct stat *st, struct lsh_error *err)
{
    char who[48] = "";
    long pid = lock_holder(st);
    if (pid > 0)
        snprintf(who, sizeof who, " (process %ld)", pid);
    return lsh_error_set(err, LSH_EEXIST,
                         "another lshlab run is writing '%s' now%s: wait for it to finish, or "
                         "stop it, then run again (its working copy '%s' is locked)",
                         res->path, who, res->work);
}

/* One writer per results file: a running writer holds an flock() on the
 * working copy.  Before anything else, find out whether one is running:
 * a locked working copy is refused as busy; an unlocked one is a crash's
 * leftover, never trusted, and removed; a link there is refused. */
static int check_work(struct lsh_results *res, struct lsh_error *err)
{
    struct stat st;
    int exists = 0, rc = check_regular(res->work, LSH_ECONFIG, &exists, err);
    if (rc || !exists)
        return rc;
    /* O_NONBLOCK: should a FIFO appear there meanwhile, open does not wait */
    int fd = open(res->work, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : lsh_error_set(err, LSH_EIO,
                                               "cannot open the working copy '%s': %s",
                                               res->work, strerror(errno));
    if (fstat(fd, &st) != 0)
        rc = lsh_error_set(err, LSH_EIO, "cannot check '%s': %s", res->work, strerror(errno));
    if (!rc && !S_ISREG(st.st_mode))
        rc = check_regular(res->work, LSH_ECONFIG, NULL, err);
    if (!rc && flock(fd, LOCK_EX | LOCK_NB) != 0)
        rc = errno == EWOULDBLOCK ? busy(res, &st, err)
                                  : lsh_error_set(err, LSH_EIO, "cannot lock '%s': %s",
                                                  res->work, strerror(errno));
    if (!rc && unlink(res->work) != 0 && errno != ENOENT)
        rc = lsh_error_set(err, LSH_EIO, "cannot remove the leftover working copy '%s': %s",
                           res->work, strerror(errno));
    close(fd);
    return rc;
}

/* Create the working copy, locked before anyone can see it: a new file under
 * a name of this process's own (<work>.<pid>), flock()ed, then linked to
 * res->work, which fails if the name exists.  So a working copy found under
 * its name is locked while its run lives, and an unlocked one is a crash's
 * leftover: check_work removes that one (once), and a locked one means that
 * another run got there first (busy, LSH_EEXIST).  The file starts empty. */
static int claim_work(struct lsh_results *res, struct lsh_error *err)
{
    const size_t len = strlen(res->work) + 24;
    char *own = malloc(len);
    if (!own)
        return lsh_h5_enomem(err);
    snprintf(own, len, "%s.%ld", res->work, (long)getpid());
    int fd = create_new(own, err), rc = fd < 0 ? fd : 0;
#if H5_VERSION_GE(1, 10, 7)
    if (!rc && flock(fd, LOCK_EX | LOCK_NB) != 0)
        rc = lsh_error_set(err, LSH_EIO, "cannot lock '%s': %s", own, strerror(errno));
#else
    /* No H5Pset_file_locking: HDF5's own flock() on the file is the lock. */
#endif
    int linked = 0;
    /* LSHLAB_TEST_NO_HARD_LINKS: take the path of a file system without them */
    const int no_links = getenv("LSHLAB_TEST_NO_HARD_LINKS") != NULL;
    for (int attempt = 0; !rc && !linked; attempt++) {
        if (no_links) {
            break;
        } else if (link(own, res->work) == 0) {
            linked = 1;
        } else if (errno == EPERM || errno == EOPNOTSUPP || errno == EMLINK ||
                   errno == ENOSYS) {
            break; /* a file system without hard links: below */
        } else if (errno != EEXIST) {
            rc = lsh_error_set(err, LSH_EIO, "cannot create the working copy '%s': %s",
                               res->work, strerror(errno));
        } else if (!(rc = check_work(res, err)) && attempt > 0) {
            struct stat st = {0};
            rc = busy(res, &st, err); /* another leftover appeared: someone else is at it */
        }
    }
    if (fd >= 0)
        unlink(own);
    free(own);
    if (!rc && !linked) {
        /* the name itself, created new (O_EXCL) and then locked: another run
         * may see it unlocked for an instant, as before claim_work */
        close(fd);
        fd = -1;
        for (int attempt = 0; !rc && fd < 0; attempt++) {
            fd = open(res->work, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            if (fd >= 0)
                break;
            if (errno != EEXIST || attempt > 0) {
                struct stat st = {0};
                rc = errno == EEXIST ? busy(res, &st, err)
                                     : lsh_error_set(err, LSH_EIO, "cannot create '%s': %s",
                                                     res->work, strerror(errno));
            } else {
                rc = check_work(res, err); /* busy, or a leftover removed */
            }
        }
#if H5_VERSION_GE(1, 10, 7)
        if (!rc && flock(fd, LOCK_EX | LOCK_NB) != 0) {
            struct stat st = {0};
            rc = errno == EWOULDBLOCK ? busy(res, &st, err)
                                      : lsh_error_set(err, LSH_EIO, "cannot lock '%s': %s",
                                                      res->work, strerror(errno));
            unlink(res->work); /* ours, just made */
        }
#endif
    }
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    res->lock_fd = fd;
    res->own_work = 1;
    return 0;
}

/* HDF5 opens files by name: check that it opened our locked working copy. */
static int check_same_file(struct lsh_results *res, struct lsh_error *err)
{
    struct stat mine, theirs;
    int *handle = NULL;
    if (H5Fget_vfd_handle(res->file, H5P_DEFAULT, (void **)&handle) < 0 || !handle ||
        fstat(*handle, &theirs) != 0 || fstat(res->lock_fd, &mine) != 0 ||
        theirs.st_ino != mine.st_ino || theirs.st_dev != mine.st_dev)
        return lsh_error_set(err, LSH_EIO,
                             "the working copy '%s' was replaced while it was being opened",
                             res->work);
    return 0;
}

/* Add to err's message where the rows are safe; returns rc. */
static int add_hint(struct lsh_error *err, int rc, const char *fmt, const char *file)
{
    if (err) {
        size_t len = strlen(err->message);
        snprintf(err->message + len, sizeof err->message - len, fmt, file);
    }
    return rc;
}

/* Snapshot the (flushed, hence consistent) working copy as <path>.partial. */
static int publish(struct lsh_results *res, struct lsh_error *err)
{
    double t0 = now_seconds();
    if (H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0) {
        res->broken = 1;
        return lsh_h5_fail(err, res->work, "flush the working copy");
    }
    int rc = copy_file(res->work, res->snapshot, err);
    if (!rc)
        rc = check_regular(res->partial, LSH_EIO, NULL, err);
    if (!rc && rename(res->snapshot, res->partial) != 0)
        rc = lsh_error_set(err, LSH_EIO, "cannot rename '%s' to '%s': %s", res->snapshot,
                           res->partial, strerror(errno));
    if (rc) {
        remove_ours(res->snapshot);
        return add_hint(err, rc, "; '%s' keeps the rows it had (free space, then run with "
                        "--resume to continue)", res->partial);
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
    return add_hint(err, rc, "; the rows finished before are safe in '%s' (free space, then "
                    "run with --resume to continue)", res->partial);
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
        if (lsh_h5_attr_str(file, strings[i].name, strings[i].value) < 0)
            return lsh_h5_fail(err, path, "write the %s attribute", strings[i].name);
    if (lsh_h5_write_attr(file, "format_version", H5T_NATIVE_INT, &version) < 0)
        return lsh_h5_fail(err, path, "write the format_version attribute");
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
    /* The working copy is locked by claim_work(), which HDF5's own lock on
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
                       const char *cmdline, const char *resolved, struct lsh_error *err)
{
    hid_t fapl = file_access();
    int rc = 0;

    /* into the empty working copy claim_work made ours (check_same_file
     * makes sure HDF5, which opens by name, wrote that file) */
    rc = claim_work(res, err);
    if (!rc) {
        res->file = fapl < 0 ? NO_HID : H5Fcreate(res->work, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (res->file < 0)
            rc = lsh_h5_fail(err, res->work, "create the results file");
    }
    if (fapl >= 0)
        H5Pclose(fapl); /* after lsh_h5_fail: any HDF5 call clears the error stack */
    if (!rc)
        rc = check_same_file(res, err);
    if (rc)
        return rc;
    rc = write_root_attributes(res->file, res->partial, cfg, cmdline, resolved, err);
    if (rc)
        return rc;
    rc = lsh_table_create(&res->table, res->file, res->partial, err);
    if (!rc && H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = lsh_h5_fail(err, res->partial, "create /%s", res->table.name);
    return rc;
}

/* The existing table must have exactly our columns, in our order, of our
 * types: HDF5 would convert a float32 column to double on the way (rounding its
 * cells), so a name alone does not make a column ours. */
static int check_columns(const struct lsh_results *res, struct lsh_error *err)
{
    hid_t ftype = H5Dget_type(res->table.dset);
    int rc = 0;
    const char *bad = NULL; /* the column whose type differs */
    if (ftype < 0)
        return lsh_h5_fail(err, res->partial, "read the type of /%s", res->table.name);
    int n = H5Tget_class(ftype) == H5T_COMPOUND ? H5Tget_nmembers(ftype) : -1;
    if (n != (int)res->table.n_cols)
        rc = -1;
    for (int i = 0; !rc && i < n; i++) {
        char *name = H5Tget_member_name(ftype, (unsigned)i);
        if (!name || strcmp(name, res->table.cols[i].name) != 0)
            rc = -1;
        H5free_memory(name);
        hid_t theirs = rc ? NO_HID : H5Tget_member_type(ftype, (unsigned)i);
        hid_t ours = rc ? NO_HID : H5Tget_member_type(res->table.type, (unsigned)i);
        if (!rc && (theirs < 0 || ours < 0 || H5Tequal(theirs, ours) <= 0)) {
            rc = -1;
            bad = res->table.cols[i].name;
        }
        if (theirs >= 0)
            H5Tclose(theirs);
        if (ours >= 0)
            H5Tclose(ours);
    }
    H5Tclose(ftype);
    if (rc)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': its /%s columns are not the ones this version "
                             "of lshlab writes%s%s%s; use --force to replace it",
                             res->partial, res->table.name, bad ? " (column '" : "",
                             bad ? bad : "", bad ? "' has another type)" : "");
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

/* A resumed file that does not match the plan: refuse it, saying where. */
static int damaged(const struct lsh_results *res, struct lsh_error *err, uint64_t row,
                   int has_id, uint64_t point_id, const char *why)
{
    char point[48] = "";
    if (has_id)
        snprintf(point, sizeof point, ", point %" PRIu64, point_id);
    return lsh_error_set(err, LSH_EDATA,
                         "cannot resume '%s': row %" PRIu64 " of /%s%s does not match this "
                         "config: %s; the file is damaged or was changed: restore it, or start "
                         "over with --force",
                         res->partial, row, res->table.name, point, why);
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

    if (fspace < 0) {
        rc = lsh_h5_fail(err, res->partial, "read the size of /runs");
        goto done;
    }
    if ((rc = lsh_table_rows(res->table.dset, res->table.row_size, res->partial, "runs", &n,
                             err)))
        goto done;
    res->n_rows = n;
    if (n == 0)
        goto done;
    rows = calloc((size_t)n, sizeof *rows);
    if (!rows) {
        rc = lsh_h5_enomem(err);
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
        rc = lsh_h5_fail(err, res->partial, "read the point ids of /runs");
        goto done;
    }

    size_t kept = 0;
    int *keep = calloc((size_t)n, sizeof *keep);
    if (!keep) {
        rc = lsh_h5_enomem(err);
        goto done;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
        char status[LSH_RUNS_WORD_LEN + 1] = "";
        memcpy(status, rows[i].status, LSH_RUNS_WORD_LEN);
        keep[i] = !strcmp(status, "ok") || !strcmp(status, "skipped");
        if (!keep[i] && strcmp(status, "failed")) { /* not a status we write */
            char shown[4 * LSH_RUNS_WORD_LEN + 1], why[4 * LSH_RUNS_WORD_LEN + 64];
            lsh_text_escape(shown, status, strlen(status));
            snprintf(why, sizeof why, "its status is '%s', not ok, skipped or failed", shown);
            free(keep);
            rc = damaged(res, err, i, 1, rows[i].point_id, why);
            goto done;
        }
        if (keep[i]) {
            kept++;
            size_t pos;
            if (find_done(res, rows[i].point_id, &pos)) {
                free(keep);
                rc = damaged(res, err, i, 1, rows[i].point_id, "its point_id is in /runs twice");
                goto done;
            }
            if (add_done(res, rows[i].point_id) < 0) {
                free(keep);
                rc = lsh_h5_enomem(err);
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
            rc = lsh_h5_enomem(err);
            goto done;
        }
        if (H5Dread(res->table.dset, res->table.type, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) < 0) {
            free(keep);
            rc = lsh_h5_fail(err, res->partial, "read /runs");
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
            rc = lsh_h5_fail(err, res->partial, "drop the failed rows of /runs");
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

/* The resolved config as lshlab wrote it before the candidate rules and the
 * oracle (SPEC 13): without the lines of their defaults.  A format version 2
 * file of that time is resumed when its config equals this. */
static char *resolved_before_rules(const char *resolved)
{
    static const char *const lines[] = {"  oracle: false\n", "  min_collisions: [1]\n",
                                        "  sink: [0]\n", "  local: [0]\n"};
    char *out = strdup(resolved);
    for (size_t i = 0; out && i < sizeof lines / sizeof *lines; i++) {
        char *at = strstr(out, lines[i]);
        if (at && (at == out || at[-1] == '\n'))
            memmove(at, at + strlen(lines[i]), strlen(at + strlen(lines[i])) + 1);
    }
    /* kmeans gained `balanced` (default false, last in its schema) with the
     * rules: a kmeans entry of such a file has its params line without it */
    static const char kmeans[] = "\n  - name: kmeans\n", bal[] = ", balanced: [false]}\n";
    for (char *at = out ? strstr(out, kmeans) : NULL; at; at = strstr(at + 1, kmeans)) {
        char *line = strstr(at + strlen(kmeans), "\n    params: {");
        char *next = strstr(at + strlen(kmeans), "\n  - ");
        char *end = line ? strchr(line + 1, '\n') : NULL;
        if (!line || (next && next < line) || !end || end - line < (ptrdiff_t)strlen(bal))
            continue;
        char *b = end + 1 - strlen(bal);
        if (strncmp(b, bal, strlen(bal)) == 0)
            memmove(b, b + strlen(", balanced: [false]"), strlen(b + strlen(", balanced: [false]")) + 1);
    }
    return out;
}

/* Does /runs of the file have a column of this name? */
static int has_column(hid_t dset, const char *name)
{
    hid_t ftype = H5Dget_type(dset);
    int has = ftype >= 0 && H5Tget_class(ftype) == H5T_COMPOUND &&
              H5Tget_member_index(ftype, name) >= 0;
    if (ftype >= 0)
        H5Tclose(ftype);
    return has;
}

static int resume_file(struct lsh_results *res, const struct lsh_config *cfg,
                       const char *resolved, struct lsh_error *err)
{
    /* errors name the file the user has: a finished one was moved to
     * .partial for the resume, and is moved back when it is refused */
    const char *shown = res->moved ? res->path : res->partial;
    hid_t fapl = file_access();
    char *file_yaml = NULL;
    int version = 0, rc;

    res->file = fapl < 0 ? NO_HID : H5Fopen(res->work, H5F_ACC_RDWR, fapl);
    rc = res->file < 0 ? lsh_h5_fail(err, shown, "open the results file to resume it") : 0;
    if (fapl >= 0)
        H5Pclose(fapl);
    if (!rc)
        rc = check_same_file(res, err);
    if (rc)
        return rc;
    rc = lsh_h5_check_format(res->file, shown, err);
    if (rc)
        return rc;

    if (lsh_h5_format_version(res->file, &version) < 0)
        return lsh_h5_fail(err, shown, "read the format_version attribute");
    if (version != LSH_RESULTS_FORMAT_VERSION)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it has format_version %d, this lshlab writes "
                             "%d%s; use --force to replace it",
                             shown, version, LSH_RESULTS_FORMAT_VERSION,
                             version == 1 ? " (version 1 has no layer and head columns)" : "");

    rc = lsh_h5_read_attr_str(res->file, "resolved_config", &file_yaml);
    if (rc < 0)
        return lsh_h5_fail(err, shown, "read the resolved_config attribute");
    if (rc > 0)
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it has no resolved_config attribute",
                             shown);
    int before_rules = 0; /* written before min_collisions, sink, local and oracle */
    char *old = NULL;     /* ours as such a file would have it */
    if (strcmp(file_yaml, resolved) != 0 && res->experiment == LSH_EXPERIMENT_SWEEP &&
        !strstr(file_yaml, "\n  min_collisions: ")) {
        if (!(old = resolved_before_rules(resolved))) {
            free(file_yaml);
            return lsh_h5_enomem(err);
        }
        before_rules = strcmp(file_yaml, old) == 0;
    }
    if (!before_rules && strcmp(file_yaml, resolved) != 0) {
        char where[400];
        describe_difference(file_yaml, old ? old : resolved, where, sizeof where);
        free(old);
        free(file_yaml);
        return lsh_error_set(err, LSH_ECONFIG,
                             "cannot resume '%s': it was written with a different configuration "
                             "(resolved config differs at %s); use --force to replace it",
                             shown, where);
    }
    free(old);
    free(file_yaml);

    htri_t has = H5Lexists(res->file, res->table.name, H5P_DEFAULT);
    if (has <= 0)
        return has < 0 ? lsh_h5_fail(err, shown, "look for /%s", res->table.name)
                       : lsh_error_set(err, LSH_EDATA, "cannot resume '%s': it has no /%s",
                                       shown, res->table.name);
    res->table.dset = H5Dopen2(res->file, res->table.name, H5P_DEFAULT);
    if (res->table.dset < 0)
        return lsh_h5_fail(err, shown, "open /%s", res->table.name);
    if (before_rules && !has_column(res->table.dset, "min_collisions")) {
        /* its rows keep their columns: every point has the rule 1, 0, 0,
         * the plan's (its config has the defaults), compared as such */
        hid_t dset = res->table.dset;
        res->table.dset = NO_HID;
        lsh_table_close(&res->table);
        rc = lsh_table_init(&res->table, cfg, res->partial, 1, err);
        res->table.dset = dset;
        unsigned char *row = rc ? NULL : realloc(res->row, res->table.row_size);
        if (!rc && !row)
            rc = lsh_h5_enomem(err);
        if (rc)
            return rc;
        res->row = row;
    }
    rc = check_columns(res, err);
    if (rc)
        return rc;
    if (res->experiment == LSH_EXPERIMENT_SWEEP)
        return read_done_points(res, err);

    hsize_t n = 0;
    rc = lsh_table_rows(res->table.dset, res->table.row_size, shown, res->table.name, &n,
                        err);
    res->n_rows = n;
    return rc;
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

/* A refused open or resume leaves the files as it found them. */
static void give_back(struct lsh_results *res)
{
    lsh_table_close(&res->table);
    if (res->file >= 0) {
        H5Fclose(res->file);
        res->file = NO_HID;
    }
    if (res->own_work) /* ours, and nothing in it is needed */
        unlink(res->work);
    if (res->moved)
        (void)rename(res->partial, res->path);
    results_free(res);
}

int lsh_results_open(const char *path, const struct lsh_config *cfg, const char *cmdline,
                     enum lsh_results_mode mode, struct lsh_results **out,
                     struct lsh_error *err)
{
    struct lsh_results *res = NULL;
    char *resolved = NULL;
    int rc, created = 0;

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
        return lsh_h5_enomem(err);
    res->file = res->table.dset = res->table.type = NO_HID;
    res->lock_fd = -1;
    res->experiment = cfg->experiment;
    res->path = strdup(path);
    res->partial = malloc(strlen(path) + sizeof ".partial");
    res->work = malloc(strlen(path) + sizeof ".work");
    res->snapshot = malloc(strlen(path) + sizeof ".partial.tmp");
    resolved = lsh_config_resolved_yaml(cfg);
    if (!res->path || !res->partial || !res->work || !res->snapshot || !resolved) {
        rc = lsh_h5_enomem(err);
        goto fail;
    }
    strcpy(res->partial, path);
    strcat(res->partial, ".partial");
    strcpy(res->work, path);
    strcat(res->work, ".work");
    strcpy(res->snapshot, path);
    strcat(res->snapshot, ".partial.tmp");

    rc = lsh_table_init(&res->table, cfg, res->partial, 0, err);
    if (!rc && !(res->row = malloc(res->table.row_size)))
        rc = lsh_h5_enomem(err);
    if (rc)
        goto fail;

    /* Names checked before anything is written, the lock first of all, so
     * that a second run is told that one is running, not what it left. */
    int has_path = 0, has_partial = 0;
    const char *const names[] = {path, res->partial, res->work, res->snapshot};
    if ((rc = check_not_input(names, sizeof names / sizeof *names, cfg, err)) ||
        (rc = check_work(res, err)) ||
        (rc = check_regular(path, LSH_ECONFIG, &has_path, err)) ||
        (rc = check_regular(res->partial, LSH_ECONFIG, &has_partial, err)) ||
        (rc = check_regular(res->snapshot, LSH_ECONFIG, NULL, err)))
        goto fail;
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
        created = 1;
        rc = create_file(res, cfg, cmdline, resolved, err);
        break;
    case LSH_RESULTS_FORCE:
        created = 1;
        rc = create_file(res, cfg, cmdline, resolved, err);
        break;
    case LSH_RESULTS_RESUME:
        if (!has_partial && !has_path) {
            created = 1;
            rc = create_file(res, cfg, cmdline, resolved, err);
            break;
        }
        /* never the working copy a crash may have left (it may be torn): a
         * new one, claimed first, so that a second run stops here */
        if ((rc = claim_work(res, err)))
            goto fail;
        if (!has_partial) {
            /* The complete file comes back only when this run completes. */
            if (rename(path, res->partial) != 0) {
                rc = lsh_error_set(err, LSH_EIO, "cannot move '%s' to '%s' to resume it: %s",
                                   path, res->partial, strerror(errno));
                goto fail;
            }
            res->moved = 1;
        }
        if (copy_into(res->partial, res->lock_fd) != 0)
            rc = lsh_error_set(err, LSH_EIO, "cannot copy '%s' to '%s' to resume it: %s",
                               res->partial, res->work, strerror(errno));
        if (!rc)
            rc = resume_file(res, cfg, resolved, err);
        break;
    default:
        rc = lsh_error_set(err, LSH_EINVAL, "lsh_results_open: unknown mode %d", (int)mode);
    }
    res->n_rows_at_open = res->n_rows;
    if (!rc && created) /* <path>.partial exists from the start */
        rc = publish(res, err);
    if (rc)
        goto fail;
    free(resolved);
    *out = res;
    return 0;

fail:
    free(resolved);
    if (res)
        give_back(res);
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

int lsh_results_check_resumed(struct lsh_results *res, lsh_results_planned_fn planned,
                              void *ctx, uint64_t n_planned, struct lsh_error *err)
{
    if (!res || !planned)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_check_resumed: NULL argument");
    const size_t rs = res->table.row_size;
    const hsize_t block = rs < (1u << 12) ? 1024 : 1; /* rows are a few hundred bytes */
    const int sweep = res->experiment == LSH_EXPERIMENT_SWEEP;
    unsigned char *rows = res->n_rows ? malloc(block * rs) : NULL;
    hid_t fspace = res->n_rows ? H5Dget_space(res->table.dset) : NO_HID;
    int rc = 0;
    if (res->n_rows && (!rows || fspace < 0))
        rc = rows ? lsh_h5_fail(err, res->partial, "read /%s", res->table.name)
                  : lsh_h5_enomem(err);
    for (hsize_t start = 0; !rc && start < res->n_rows; start += block) {
        hsize_t count = res->n_rows - start < block ? res->n_rows - start : block;
        hid_t mspace = H5Screate_simple(1, &count, NULL);
        if (mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dread(res->table.dset, res->table.type, mspace, fspace, H5P_DEFAULT, rows) < 0)
            rc = lsh_h5_fail(err, res->partial, "read /%s to resume it", res->table.name);
        if (mspace >= 0)
            H5Sclose(mspace);
        for (hsize_t k = 0; !rc && k < count; k++) {
            const unsigned char *row = rows + k * rs;
            uint64_t index = start + k;
            char why[1024];
            if (sweep) /* point_id: the first column */
                memcpy(&index, row + res->table.cols[0].offset, sizeof index);
            if (index >= n_planned) {
                snprintf(why, sizeof why, "%s %" PRIu64 " is past the end of this config's "
                         "plan (%" PRIu64 " %s)", sweep ? "its point_id" : "row", index,
                         n_planned, sweep ? "points" : "rows");
                rc = damaged(res, err, start + k, sweep, index, why);
                break;
            }
            union {
                struct lsh_run_row run;
                struct lsh_collision_row collision;
            } rec;
            memset(&rec, 0, sizeof rec);
            planned(ctx, index, &rec);
            rc = lsh_table_pack(&res->table, &rec, 1, res->row, err);
            if (!rc && lsh_table_check_row(&res->table, row, res->row, why, sizeof why) != 0)
                rc = damaged(res, err, start + k, sweep, index, why);
        }
    }
    if (fspace >= 0)
        H5Sclose(fspace);
    free(rows);
    res->refused = rc != 0;
    return rc;
}

/* ---- appending ----------------------------------------------------------- */

/* Extend the table by the packed row in res->row, write it and flush. */
static int append_row(struct lsh_results *res, struct lsh_error *err)
{
    hsize_t start[1] = { res->n_rows }, one[1] = { 1 }, dims[1] = { res->n_rows + 1 };
    hid_t fspace = NO_HID, mspace = NO_HID;
    int rc = 0;

    if (H5Dset_extent(res->table.dset, dims) < 0)
        return lsh_h5_fail(err, res->work, "extend /%s", res->table.name);
    fspace = H5Dget_space(res->table.dset);
    mspace = H5Screate_simple(1, one, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, one, NULL) < 0 ||
        H5Dwrite(res->table.dset, res->table.type, mspace, fspace, H5P_DEFAULT, res->row) < 0) {
        rc = lsh_h5_fail(err, res->work, "write row %" PRIu64 " of /%s", res->n_rows,
                     res->table.name);
        dims[0] = res->n_rows;
        H5Dset_extent(res->table.dset, dims);
        goto done;
    }
    res->n_rows++;
    if (H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = lsh_h5_fail(err, res->work, "flush /%s", res->table.name);
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
    int rc = lsh_table_pack(&res->table, row, row->status != LSH_POINT_OK, res->row, err);
    if (!rc && (rc = append_row(res, err)))
        return broken_write(res, rc, err);
    if (!rc && row->status != LSH_POINT_FAILED && add_done(res, row->key.point_id) < 0)
        rc = lsh_h5_enomem(err);
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
    int rc = lsh_table_pack(&res->table, row, 0, res->row, err);
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

/* Does this dataset have a layer or a head axis (more than one problem, or
 * one of a multi-head source)? */
static int has_axes(const struct lsh_dataset_unit u)
{
    return u.layer >= 0 || u.head >= 0;
}

/* A /datasets/NAME group is complete when its last attribute is there and,
 * with dump_data and no axes, its matrices: anything less is an
 * interrupted write. */
static int dataset_group_complete(hid_t group, const struct lsh_dataset *ds, int dump_data)
{
    if (H5Aexists(group, "reference_rows") <= 0)
        return 0;
    if (!has_axes(ds->unit) && dump_data &&
        (H5Lexists(group, "Q", H5P_DEFAULT) <= 0 || H5Lexists(group, "V", H5P_DEFAULT) <= 0 ||
         (ds->k && H5Lexists(group, "K", H5P_DEFAULT) <= 0)))
        return 0;
    return 1;
}

/* A unit's group (/datasets/NAME/layer{L}/head{H}) is complete when its
 * input_digest, written last, is there. */
static int unit_group_complete(hid_t group, const struct lsh_dataset *ds, int dump_data)
{
    if (H5Aexists(group, "input_digest") <= 0)
        return 0;
    if (dump_data && (H5Lexists(group, "Q", H5P_DEFAULT) <= 0 ||
                      H5Lexists(group, "V", H5P_DEFAULT) <= 0 ||
                      (ds->k && H5Lexists(group, "K", H5P_DEFAULT) <= 0)))
        return 0;
    return 1;
}

/* A digest of a dataset's input as loaded: its shape and the bits of Q, K
 * (when separate) and V.  A fast mixing hash: it is there to notice a
 * changed input, not to resist a forger. */
static uint64_t mix_words(uint64_t h, const double *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t w;
        memcpy(&w, &x[i], sizeof w);
        h ^= w * UINT64_C(0x9E3779B97F4A7C15);
        h = (h << 31 | h >> 33) * UINT64_C(0xBF58476D1CE4E5B9);
    }
    return h;
}

static uint64_t input_digest(const struct lsh_dataset *ds)
{
    const double shape[4] = { (double)ds->n, (double)ds->d, (double)ds->d_v, ds->k ? 1 : 0 };
    uint64_t h = mix_words(UINT64_C(0x6C73686C61622D31), shape, 4); /* "lshlab-1" */
    h = mix_words(h, ds->q, ds->q ? ds->n * ds->d : 0);
    h = mix_words(h, ds->k, ds->k ? ds->n * ds->d : 0);
    h = mix_words(h, ds->v, ds->v ? ds->n * ds->d_v : 0);
    h ^= h >> 33; /* splitmix64's finish */
    h *= UINT64_C(0xFF51AFD7ED558CCD);
    return h ^ h >> 33;
}

static int read_attr_u64(hid_t obj, const char *name, uint64_t *v)
{
    hid_t attr = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : NO_HID;
    int rc = attr >= 0 && H5Aread(attr, H5T_NATIVE_UINT64, v) >= 0 ? 0 : -1;
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* An int32 array attribute equal to v[0..n)?  1 yes, 0 no (or absent). */
/* "[0, 1, 2]", cut with "..." when it does not fit size. */
static void i32_list(const int32_t *v, size_t n, char *buf, size_t size)
{
    size_t len = (size_t)snprintf(buf, size, "[");
    for (size_t i = 0; i < n && len < size; i++) {
        if (len + 16 >= size) {
            snprintf(buf + len, size - len, "...");
            return;
        }
        len += (size_t)snprintf(buf + len, size - len, "%s%" PRId32, i ? ", " : "", v[i]);
    }
    if (len < size)
        snprintf(buf + len, size - len, "]");
}

/* The int32 array attribute name of obj as text ("[0, 1]"), or "none". */
static void attr_i32s_text(hid_t obj, const char *name, char *buf, size_t size)
{
    hid_t attr = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : NO_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : NO_HID;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int32_t *got = count >= 0 ? malloc(((size_t)count + 1) * sizeof *got) : NULL;
    if (got && H5Aread(attr, H5T_NATIVE_INT32, got) >= 0)
        i32_list(got, (size_t)count, buf, size);
    else
        snprintf(buf, size, "none");
    free(got);
    if (space >= 0)
        H5Sclose(space);
    if (attr >= 0)
        H5Aclose(attr);
}

static int attr_i32s_equal(hid_t obj, const char *name, const int32_t *v, size_t n)
{
    hid_t attr = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : NO_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : NO_HID;
    int same = 0;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (count >= 0 && (size_t)count == n) {
        int32_t *got = malloc((n + 1) * sizeof *got);
        same = got && H5Aread(attr, H5T_NATIVE_INT32, got) >= 0 &&
               (n == 0 || memcmp(got, v, n * sizeof *v) == 0);
        free(got);
    }
    if (space >= 0)
        H5Sclose(space);
    if (attr >= 0)
        H5Aclose(attr);
    return same;
}

/* The unit as text for messages: "", " (layer 1, head 3)", " (head 3)". */
static void unit_text(const struct lsh_dataset_unit u, char *buf, size_t size)
{
    if (u.layer >= 0 && u.head >= 0)
        snprintf(buf, size, " (layer %" PRId32 ", head %" PRId32 ")", u.layer, u.head);
    else if (u.layer >= 0)
        snprintf(buf, size, " (layer %" PRId32 ")", u.layer);
    else if (u.head >= 0)
        snprintf(buf, size, " (head %" PRId32 ")", u.head);
    else
        buf[0] = '\0';
}

/* unit: name the unit (its own digest changed), or not (the dataset's
 * shape or selection did, which no one unit is to blame for). */
static int input_changed(const struct lsh_results *res, const struct lsh_dataset *ds,
                         int unit_named, const char *what, struct lsh_error *err)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    char input[600], unit[64];
    if (spec->kind == LSH_DATA_HDF5)
        snprintf(input, sizeof input, "input file '%s'", spec->file);
    else if (spec->kind == LSH_DATA_NPY)
        snprintf(input, sizeof input, "input files '%s'%s", spec->q,
                 spec->k || spec->v ? ", ..." : "");
    else
        snprintf(input, sizeof input, "generated data");
    unit[0] = '\0';
    if (unit_named)
        unit_text(ds->unit, unit, sizeof unit);
    return lsh_error_set(err, LSH_EDATA,
                         "cannot resume '%s': dataset '%s'%s (%s) changed since the run began "
                         "(%s); its rows would mix with the old ones: restore the input, or "
                         "start over with --force",
                         res->partial, spec->name, unit, input, what);
}

/* Resume: the dataset's input must be the one the file's rows came from.
 * At /datasets/NAME: its shape, its selected layers and heads, and (without
 * axes) its digest; at a unit's group: that unit's digest. */
static int check_input(const struct lsh_results *res, hid_t group,
                       const struct lsh_dataset_layout *lay, const struct lsh_dataset *ds,
                       int unit_group, struct lsh_error *err)
{
    char what[200] = "";
    uint64_t then;
    if (!unit_group) {
        const char *names[3] = { "n", "d", "d_v" };
        const uint64_t now[3] = { ds->n, ds->d, ds->d_v };
        for (int i = 0; i < 3 && !what[0]; i++)
            if (read_attr_u64(group, names[i], &then) == 0 && then != now[i])
                snprintf(what, sizeof what, "%s was %" PRIu64 ", it is %" PRIu64 " now",
                         names[i], then, now[i]);
        for (int a = 0; a < 2 && !what[0] && lay; a++) {
            const char *axis = a ? "heads" : "layers";
            const int32_t *v = a ? lay->heads : lay->layers;
            const size_t n = a ? lay->n_heads : lay->n_layers;
            if (attr_i32s_equal(group, axis, v, n))
                continue;
            char was[80], is[80];
            attr_i32s_text(group, axis, was, sizeof was);
            i32_list(v, n, is, sizeof is);
            snprintf(what, sizeof what, "its %s were %s, they are %s now", axis, was, is);
        }
    }
    /* files written before digests were recorded have none to compare */
    if (!what[0] && (unit_group || !has_axes(ds->unit)) &&
        read_attr_u64(group, "input_digest", &then) == 0 && then != input_digest(ds))
        snprintf(what, sizeof what, "its contents differ");
    return what[0] ? input_changed(res, ds, unit_group, what, err) : 0;
}

static herr_t attr_i32s(hid_t obj, const char *name, const int32_t *v, size_t n)
{
    hsize_t dims[1] = { n };
    hid_t space = H5Screate_simple(1, dims, NULL), attr = NO_HID;
    herr_t rc = -1;
    if (space >= 0)
        attr = H5Acreate2(obj, name, H5T_NATIVE_INT32, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0)
        rc = H5Awrite(attr, H5T_NATIVE_INT32, v);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

static herr_t write_data(hid_t group, const struct lsh_dataset *ds)
{
    if (write_matrix(group, "Q", H5T_NATIVE_DOUBLE, ds->q, ds->n, ds->d) < 0 ||
        (ds->k && write_matrix(group, "K", H5T_NATIVE_DOUBLE, ds->k, ds->n, ds->d) < 0) ||
        write_matrix(group, "V", H5T_NATIVE_DOUBLE, ds->v, ds->n, ds->d_v) < 0)
        return -1;
    return 0;
}

/* /datasets/NAME: the dataset's attributes (and, without axes, its data
 * and digest). */
static int write_dataset_group(hid_t group, const struct lsh_dataset_layout *lay,
                               const struct lsh_dataset *ds, int dump_data)
{
    const struct lsh_dataset_spec *spec = ds->spec;
    const int axes = has_axes(ds->unit);
    if (dump_data && !axes && write_data(group, ds) < 0)
        return -1;
    if (lsh_h5_attr_str(group, "kind", lsh_data_kind_name(spec->kind)) < 0 ||
        lsh_h5_attr_u64(group, "n", ds->n) < 0 || lsh_h5_attr_u64(group, "d", ds->d) < 0 ||
        lsh_h5_attr_u64(group, "d_v", ds->d_v) < 0 || lsh_h5_attr_u64(group, "seed", ds->seed) < 0)
        return -1;
    if (spec->kind == LSH_DATA_CLUSTERED &&
        (lsh_h5_attr_u64(group, "clusters", spec->clusters) < 0 ||
         lsh_h5_attr_f64(group, "spread", spec->spread) < 0 ||
         lsh_h5_attr_f64(group, "norm", spec->norm < 0 ? sqrt((double)ds->d) : spec->norm) < 0))
        return -1;
    if (spec->kind == LSH_DATA_HDF5 && lsh_h5_attr_str(group, "file", spec->file) < 0)
        return -1;
    if ((spec->kind == LSH_DATA_HDF5 || spec->kind == LSH_DATA_NPY) &&
        (lsh_h5_attr_str(group, "q", spec->q) < 0 ||
         (spec->k && lsh_h5_attr_str(group, "k", spec->k) < 0) ||
         (spec->v && lsh_h5_attr_str(group, "v", spec->v) < 0)))
        return -1;
    /* SPEC 11.2: which problems, from what */
    static const int32_t none[1] = { -1 };
    const int64_t kv_heads = lay ? (int64_t)lay->kv_heads : 0;
    if (attr_i32s(group, "layers", lay && lay->n_layers ? lay->layers : none,
                  lay && lay->n_layers ? lay->n_layers : 1) < 0 ||
        attr_i32s(group, "heads", lay && lay->n_heads ? lay->heads : none,
                  lay && lay->n_heads ? lay->n_heads : 1) < 0 ||
        lsh_h5_write_attr(group, "kv_heads", H5T_NATIVE_INT64, &kv_heads) < 0 ||
        lsh_h5_attr_str(group, "source", lay && lay->source ? lay->source : "") < 0 ||
        lsh_h5_attr_str(group, "dtype", lay ? lay->dtype : "float64") < 0)
        return -1;
    if (!axes && lsh_h5_attr_u64(group, "input_digest", input_digest(ds)) < 0)
        return -1;
    /* Last, as the mark of a finished group. */
    uint64_t m = spec->reference_rows && spec->reference_rows < ds->n ? spec->reference_rows
                                                                      : ds->n;
    return lsh_h5_attr_u64(group, "reference_rows", m);
}

/* Open parent/name when it is there and complete (*complete = 1), else
 * (re)create it (*complete = 0).  NO_HID on failure. */
static hid_t fresh_or_complete(hid_t parent, const char *name, const struct lsh_dataset *ds,
                               int dump_data, int unit_level, int *complete)
{
    *complete = 0;
    htri_t has = H5Lexists(parent, name, H5P_DEFAULT);
    if (has < 0)
        return NO_HID;
    if (has) {
        hid_t g = H5Gopen2(parent, name, H5P_DEFAULT);
        if (g < 0)
            return NO_HID;
        *complete = unit_level ? unit_group_complete(g, ds, dump_data)
                               : dataset_group_complete(g, ds, dump_data);
        if (*complete)
            return g;
        H5Gclose(g);
        if (H5Ldelete(parent, name, H5P_DEFAULT) < 0) /* an unfinished write */
            return NO_HID;
    }
    return H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

int lsh_results_write_dataset(struct lsh_results *res, const struct lsh_dataset_layout *lay,
                              const struct lsh_dataset *ds, int dump_data,
                              struct lsh_error *err)
{
    if (!res || !ds || !ds->spec || !ds->spec->name)
        return lsh_error_set(err, LSH_EINVAL, "lsh_results_write_dataset: NULL argument");
    if (dump_data && (!ds->q || !ds->v))
        return lsh_error_set(err, LSH_EINVAL, "dataset '%s' has no data to dump",
                             ds->spec->name);
    const char *name = ds->spec->name;
    char where[LSH_RUNS_NAME_LEN + 64];
    hid_t top = open_group(res->file, "datasets"), group = NO_HID, mid = NO_HID, unit = NO_HID;
    int rc = 0, complete = 0;
    if (top < 0)
        return lsh_h5_fail(err, res->partial, "create /datasets");
    snprintf(where, sizeof where, "/datasets/%s", name);
    group = fresh_or_complete(top, name, ds, dump_data, 0, &complete);
    if (group < 0) {
        rc = broken_write(res, lsh_h5_fail(err, res->work, "write %s", where), err);
        goto done;
    }
    if (complete) {
        rc = check_input(res, group, lay, ds, 0, err); /* resume: written by the first run */
    } else if (write_dataset_group(group, lay, ds, dump_data) < 0) {
        rc = broken_write(res, lsh_h5_fail(err, res->work, "write %s", where), err);
        goto done;
    }
    if (!rc && has_axes(ds->unit)) {
        /* /datasets/NAME/layer{L}/head{H}, a level left out for an absent axis */
        char lname[24], hname[24];
        snprintf(lname, sizeof lname, "layer%" PRId32, ds->unit.layer);
        snprintf(hname, sizeof hname, "head%" PRId32, ds->unit.head);
        hid_t parent = group;
        const char *leaf = ds->unit.head >= 0 ? hname : lname;
        if (ds->unit.layer >= 0 && ds->unit.head >= 0) {
            parent = mid = open_group(group, lname);
            snprintf(where + strlen(where), sizeof where - strlen(where), "/%s", lname);
        }
        snprintf(where + strlen(where), sizeof where - strlen(where), "/%s", leaf);
        unit = parent < 0 ? NO_HID
                          : fresh_or_complete(parent, leaf, ds, dump_data, 1, &complete);
        if (unit < 0)
            rc = broken_write(res, lsh_h5_fail(err, res->work, "write %s", where), err);
        else if (complete)
            rc = check_input(res, unit, lay, ds, 1, err);
        else if ((dump_data && write_data(unit, ds) < 0) ||
                 lsh_h5_attr_u64(unit, "input_digest", input_digest(ds)) < 0)
            rc = broken_write(res, lsh_h5_fail(err, res->work, "write %s", where), err);
    }
    if (rc == LSH_EDATA && !res->broken)
        res->refused = res->n_rows == res->n_rows_at_open; /* nothing new: give it back */
    else if (!rc && H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = broken_write(res, lsh_h5_fail(err, res->work, "write %s", where), err);
done:
    if (unit >= 0)
        H5Gclose(unit);
    if (mid >= 0)
        H5Gclose(mid);
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
        rc = lsh_h5_fail(err, res->partial, "create /points/%s", point);
        goto done;
    }
    /* Resume re-runs a point whose row never made it: replace its arrays. */
    htri_t has = H5Lexists(group, name, H5P_DEFAULT);
    if (has < 0 || (has && H5Ldelete(group, name, H5P_DEFAULT) < 0) ||
        write_matrix(group, name, type == 'u' ? H5T_NATIVE_UINT32 : H5T_NATIVE_DOUBLE, data,
                     rows, cols) < 0)
        rc = broken_write(res, lsh_h5_fail(err, res->work, "write /points/%s/%s", point, name),
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
    if (res->refused) {
        give_back(res);
        return 0;
    }
    if (!res->broken && res->file >= 0 && H5Fflush(res->file, H5F_SCOPE_GLOBAL) < 0)
        rc = broken_write(res, lsh_h5_fail(err, res->partial, "flush the results file"), err);
    lsh_table_close(&res->table);
    if (res->file >= 0 && H5Fclose(res->file) < 0 && !rc)
        rc = broken_write(res, lsh_h5_fail(err, res->partial, "close the results file"), err);
    res->file = NO_HID;
    if (res->broken) {
        /* <path>.partial keeps the last snapshot */
        unlink(res->work);
        if (complete && !rc)
            rc = lsh_error_set(err, LSH_EIO, "'%s' is incomplete after a failed write",
                               res->partial);
    } else if (fsync(res->lock_fd) != 0) {
        rc = lsh_error_set(err, LSH_EIO, "cannot sync '%s' to disk: %s", res->work,
                           strerror(errno));
    } else if ((rc = check_regular(complete ? res->path : res->partial, LSH_EIO, NULL, err))) {
        /* something not ours appeared there during the run: the rows stay in
         * the working copy and the .partial */
    } else if (rename(res->work, complete ? res->path : res->partial) != 0) {
        rc = lsh_error_set(err, LSH_EIO, "cannot move '%s' to '%s': %s", res->work,
                           complete ? res->path : res->partial, strerror(errno));
    } else {
        if (complete)
            remove_ours(res->partial); /* after the rename: one of them always exists */
        fsync_folder_of(res->path);
    }
    remove_ours(res->snapshot); /* left by a crash in the middle of a snapshot */
    results_free(res);
    return rc;
}

