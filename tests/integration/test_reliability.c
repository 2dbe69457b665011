/* test_reliability.c - what happens to a sweep when things go wrong, end to
 * end through the real lshlab binary:
 *  - killed with SIGKILL at random moments, and right after (or in the middle
 *    of) a chosen write of the results file: the .partial always opens, its
 *    /runs holds only whole rows (each equal to the uninterrupted run's), and
 *    --resume ends with metric columns bit-identical to an uninterrupted run;
 *  - SIGINT / SIGTERM: stops after the current point, exit 130, says how to
 *    resume; the resumed file equals the uninterrupted one;
 *  - --resume of a file written from another config is refused, untouched;
 *  - two runs on one results file: the second is refused;
 *  - plugins that misbehave at run time (bucket out of range, error code),
 *    or data only a fit can refuse (kmeans on repeated rows): their points
 *    are 'failed' with the reason, the sweep goes on, exit 5;
 *  - a full disk (RLIMIT_FSIZE): a clear message, the rows written before
 *    stay readable, and --resume completes the sweep. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

static char dir[256];

/* Paths handed out by in_dir(), freed with the folder. */
static char *paths[256];
static size_t n_paths;

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/lshlab-rel-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void drop_dir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    while (n_paths)
        free(paths[--n_paths]);
}

TestSuite(reliability, .init = make_dir, .fini = drop_dir, .timeout = 300);

static const char *exe(void)
{
    const char *e = getenv("LSHLAB_EXE");
    cr_assert_not_null(e, "LSHLAB_EXE is not set (run through meson test)");
    return e;
}

/* dir/name, valid for the whole test. */
static const char *in_dir(const char *name)
{
    cr_assert_lt(n_paths, sizeof paths / sizeof *paths);
    char *s = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(s);
    sprintf(s, "%s/%s", dir, name);
    return paths[n_paths++] = s;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)len + 1, 1);
    cr_assert_eq(fread(s, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return s;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- running lshlab ----------------------------------------------------------- */

/* NAME=VALUE strings start() adds to the child's environment (NULL-ended). */
static const char *child_env[8];

/* Start `lshlab ARGS...` (NULL-terminated) with stdout+stderr to log; an
 * fsize_kib > 0 sets RLIMIT_FSIZE; plugin_dir is put first on the plugin path. */
static pid_t start(const char *log, long fsize_kib, const char *plugin_dir, const char *args[])
{
    const char *argv[32] = {exe()};
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(99);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        if (fsize_kib > 0) {
            struct rlimit rl = {(rlim_t)fsize_kib * 1024, (rlim_t)fsize_kib * 1024};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        if (plugin_dir) {
            const char *old = getenv("LSHLAB_STRATEGY_PATH");
            char path[2048];
            snprintf(path, sizeof path, "%s%s%s", plugin_dir, old ? ":" : "", old ? old : "");
            setenv("LSHLAB_STRATEGY_PATH", path, 1);
        }
        for (int i = 0; child_env[i]; i++) {
            char name[64];
            const char *eq = strchr(child_env[i], '=');
            snprintf(name, sizeof name, "%.*s", (int)(eq - child_env[i]), child_env[i]);
            setenv(name, eq + 1, 1);
        }
        execv(argv[0], (char *const *)argv);
        _exit(98);
    }
    return pid;
}

/* Wait; returns the exit code, or 128 + the signal that killed it. */
static int finish(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int lshlab(char **out, long fsize_kib, const char *plugin_dir, const char *args[])
{
    const char *log = in_dir("lshlab.log");
    int code = finish(start(log, fsize_kib, plugin_dir, args));
    if (out)
        *out = read_file(log);
    return code;
}

/* ---- /runs ------------------------------------------------------------------ */

/* /runs as rows of bytes, with a mask of the bytes that must be identical
 * between runs: every column but the timings (*_seconds, *_seconds_se). */
struct runs {
    size_t rows, row_size;
    unsigned char *data, *mask;
    size_t id_off, status_off, status_len;
};

/* 0 when the file opened and /runs was read; -1 when HDF5 cannot open it. */
static int read_runs(const char *path, struct runs *r)
{
    memset(r, 0, sizeof *r);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return -1;
    hid_t ds = H5Dopen2(f, "/runs", H5P_DEFAULT);
    cr_assert(ds >= 0, "%s has no /runs", path);
    hid_t ft = H5Dget_type(ds), mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[1];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    r->rows = (size_t)dims[0];
    r->row_size = H5Tget_size(mt);
    r->data = calloc(r->rows + 1, r->row_size);
    r->mask = calloc(1, r->row_size);
    cr_assert(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->data) >= 0,
              "cannot read /runs of %s", path);
    int n = H5Tget_nmembers(mt);
    for (int i = 0; i < n; i++) {
        char *name = H5Tget_member_name(mt, (unsigned)i);
        hid_t t = H5Tget_member_type(mt, (unsigned)i);
        size_t off = H5Tget_member_offset(mt, (unsigned)i), size = H5Tget_size(t);
        if (!strstr(name, "_seconds"))
            memset(r->mask + off, 1, size);
        if (!strcmp(name, "point_id"))
            r->id_off = off;
        if (!strcmp(name, "status")) {
            r->status_off = off;
            r->status_len = size;
        }
        H5Tclose(t);
        H5free_memory(name);
    }
    H5Sclose(sp);
    H5Tclose(mt);
    H5Tclose(ft);
    H5Dclose(ds);
    H5Fclose(f);
    return 0;
}

static uint64_t row_id(const struct runs *r, size_t i)
{
    uint64_t id;
    memcpy(&id, r->data + i * r->row_size + r->id_off, sizeof id);
    return id;
}

static const char *row_status(const struct runs *r, size_t i, char *buf, size_t size)
{
    size_t n = r->status_len < size - 1 ? r->status_len : size - 1;
    memcpy(buf, r->data + i * r->row_size + r->status_off, n);
    buf[n] = '\0';
    return buf;
}

static void free_runs(struct runs *r)
{
    free(r->data);
    free(r->mask);
}

/* Every row of got is a whole row of want (same point, same bytes outside
 * the timings), no point twice; with complete, every point of want too. */
static void assert_rows_of(const struct runs *got, const struct runs *want, int complete,
                           const char *what)
{
    cr_assert_eq(got->row_size, want->row_size, "%s: /runs columns differ", what);
    unsigned char *seen = calloc(want->rows + 1, 1);
    for (size_t i = 0; i < got->rows; i++) {
        uint64_t id = row_id(got, i);
        char status[32];
        cr_assert_lt(id, want->rows, "%s: row %zu has point_id %llu, beyond the sweep", what, i,
                     (unsigned long long)id);
        cr_assert_not(seen[id], "%s: point %llu is in /runs twice", what,
                      (unsigned long long)id);
        seen[id] = 1;
        cr_assert_str_eq(row_status(got, i, status, sizeof status), "ok", "%s: row %zu", what, i);
        const unsigned char *a = got->data + i * got->row_size;
        const unsigned char *b = want->data + id * want->row_size; /* want is in id order */
        for (size_t k = 0; k < got->row_size; k++)
            if (want->mask[k] && a[k] != b[k])
                cr_assert_fail("%s: point %llu differs from the uninterrupted run at byte %zu",
                               what, (unsigned long long)id, k);
    }
    if (complete)
        cr_assert_eq(got->rows, want->rows, "%s: %zu rows, the uninterrupted run has %zu", what,
                     got->rows, want->rows);
    free(seen);
}

/* ---- the sweep --------------------------------------------------------------- */

/* 288 points over two datasets, all three strategies, both modes, and dumps
 * (new HDF5 objects per point): about a second of work on 2 cores. */
static const char sweep_config[] =
    "name: crash\n"
    "seed: 11\n"
    "datasets:\n"
    "  - {name: c, kind: clustered, n: 600, d: 16, clusters: 8}\n"
    "  - {name: g, kind: gaussian, n: 400, d: 8}\n"
    "attention: {topk: [1, 5]}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "  - name: hyperplane\n"
    "  - name: kmeans\n"
    "    params: {iterations: [2, 5]}\n"
    "sweep:\n"
    "  n_hashes: [1, 2, 4]\n"
    "  n_buckets: [4, 8, 16]\n"
    "  mode: [bucket, chunked]\n"
    "  chunk_size: 32\n"
    "  combine: [union, rounds]\n"
    "dump: [buckets, hash_params]\n";

/* Under valgrind (tools/memcheck.sh sets LSHLAB_TEST_QUICK) every run is
 * some 50 times slower: the same tests on 24 points and fewer kills, since
 * there they look for memory errors, not for the moment of a kill. */
static const char quick_config[] =
    "name: crash\n"
    "seed: 11\n"
    "datasets:\n"
    "  - {name: c, kind: clustered, n: 300, d: 8, clusters: 4}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "  - name: kmeans\n"
    "    params: {iterations: 2}\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: [4, 8]\n"
    "  mode: [bucket, chunked]\n"
    "  chunk_size: 16\n"
    "  combine: [union, rounds]\n"
    "dump: [buckets, hash_params, rows]\n";

static int quick(void)
{
    const char *q = getenv("LSHLAB_TEST_QUICK");
    return q && *q;
}

static const char *sweep(void)
{
    return quick() ? quick_config : sweep_config;
}

/* The uninterrupted run: its /runs, in point order, and how long it took. */
static double reference_run(const char *cfg, struct runs *ref)
{
    const char *out = in_dir("reference.h5");
    double t0 = now();
    char *log = NULL;
    const char *args[] = {"run", cfg, "-o", out, "-q", "-j", "2", NULL};
    cr_assert_eq(lshlab(&log, 0, NULL, args), 0, "%s", log);
    free(log);
    double seconds = now() - t0;
    cr_assert_eq(read_runs(out, ref), 0);
    cr_assert_eq(ref->rows, quick() ? 32 : 288);
    for (size_t i = 0; i < ref->rows; i++)
        cr_assert_eq(row_id(ref, i), i, "the reference's rows are not in point order");
    return seconds;
}

/* After a crash or a stop: no stray snapshot, and the .partial (when there
 * is one) opens and holds only whole rows of the uninterrupted run. */
static size_t check_partial(const char *out, const struct runs *ref, const char *what)
{
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", out);
    if (!exists(partial))
        return 0;
    struct runs got;
    cr_assert_eq(read_runs(partial, &got), 0, "%s: HDF5 cannot open %s", what, partial);
    assert_rows_of(&got, ref, 0, what);
    size_t n = got.rows;
    free_runs(&got);
    return n;
}

Test(reliability, sigkill_at_random_moments_then_resume_is_bit_identical)
{
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("killed.h5");
    write_file(cfg, sweep());
    struct runs ref;
    double t_ref = reference_run(cfg, &ref);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    const int kills = quick() ? 3 : 8;
    int killed = 0, finished = 0, started = 0;
    size_t rows_before = 0;
    for (int attempt = 0; killed < kills && attempt < 3 * kills; attempt++) {
        /* the first ones early (opening, first rows); then anywhere in what is
         * left of the work, as far as the reference's pace tells */
        double left = t_ref * (1.0 - (double)rows_before / (double)ref.rows) + 0.05;
        double delay = killed < 2 ? 0.05 * rand() / RAND_MAX : left * rand() / RAND_MAX;
        const char *args[] = {"run", cfg, "-o", out, "-q", "-j", "2",
                              started ? "--resume" : NULL, NULL};
        pid_t pid = start(in_dir("killed.log"), 0, NULL, args);
        started = 1;
        struct timespec ts = {(time_t)delay, (long)(fmod(delay, 1.0) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int code = finish(pid);
        char what[160];
        snprintf(what, sizeof what, "kill %d at %.3fs (seed %u)", killed + 1, delay, seed);
        /* it finished first (or was killed on its way out): check it, start over */
        if (code != 128 + SIGKILL || exists(out)) {
            cr_assert(code == 0 || code == 128 + SIGKILL, "%s: exit %d: %s", what, code,
                      read_file(in_dir("killed.log")));
            struct runs got;
            cr_assert_eq(read_runs(out, &got), 0);
            assert_rows_of(&got, &ref, 1, "finished between kills");
            free_runs(&got);
            cr_assert_eq(unlink(out), 0);
            finished++;
            started = 0;
            rows_before = 0;
            continue;
        }
        killed++;
        size_t rows = check_partial(out, &ref, what);
        cr_log_info("%s: %zu rows in the .partial", what, rows);
        cr_expect_geq(rows, rows_before, "%s: the .partial lost rows (%zu before, %zu now)",
                      what, rows_before, rows);
        rows_before = rows;
    }
    cr_log_info("%d kills, %d runs finished between them (seed %u); reference run %.2fs",
                killed, finished, seed, t_ref);
    cr_expect_geq(killed, kills, "only %d runs were killed before finishing", killed);

    char *log = NULL;
    const char *args[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&log, 0, NULL, args), 0, "final resume: %s", log);
    free(log);
    struct runs got;
    cr_assert_eq(read_runs(out, &got), 0);
    assert_rows_of(&got, &ref, 1, "resumed after kills");
    free_runs(&got);
    char partial[600], work[600];
    snprintf(partial, sizeof partial, "%s.partial", out);
    snprintf(work, sizeof work, "%s.work", out);
    cr_expect_not(exists(partial), "a .partial is left after completion");
    cr_expect_not(exists(work), "a working copy is left after completion");
    /* every point's dumps made it too */
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (size_t p = 0; p < ref.rows; p += 7) {
        char path[64];
        snprintf(path, sizeof path, "/points/%zu/buckets", p);
        cr_expect(H5Lexists(f, "/points", H5P_DEFAULT) > 0 &&
                      H5Lexists(f, path, H5P_DEFAULT) > 0,
                  "no %s after resume", path);
    }
    H5Fclose(f);
    free_runs(&ref);
}

/* start() for a run that wait_for_rows() watches: each finished row is
 * published at once, so that a short sweep on a fast machine cannot finish
 * between two spaced-out snapshots before the watcher has seen a row. */
static pid_t start_watched(const char *log, const char *args[])
{
    size_t k = 0;
    while (child_env[k])
        k++;
    child_env[k] = "LSHLAB_TEST_SNAPSHOT_EVERY_ROW=1";
    pid_t pid = start(log, 0, NULL, args);
    child_env[k] = NULL;
    return pid;
}

/* Wait until the .partial holds a row (the run is under way). */
static void wait_for_rows(const char *out, pid_t pid)
{
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", out);
    /* generous: under valgrind lshlab takes seconds just to start */
    for (double t0 = now(); now() - t0 < 300;) {
        struct runs r;
        if (exists(partial) && read_runs(partial, &r) == 0) {
            size_t n = r.rows;
            free_runs(&r);
            if (n > 0)
                return;
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the run ended before writing a row");
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("no row after 300 s");
}

/* A run of sweep() writing out, frozen (SIGSTOP) once its .partial holds a
 * row: it holds the results, with no race with its end. */
static pid_t start_frozen(const char *cfg, const char *out, const char *log)
{
    write_file(cfg, sweep());
    const char *args[] = {"run", cfg, "-o", out, "-q", "-j", "1", NULL};
    pid_t pid = start_watched(log, args);
    wait_for_rows(out, pid);
    kill(pid, SIGSTOP);
    return pid;
}

static void stop_then_resume(int sig)
{
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("stopped.h5"),
               *log = in_dir("stopped.log");
    write_file(cfg, sweep());
    struct runs ref;
    reference_run(cfg, &ref);

    const char *args[] = {"run", cfg, "-o", out, "-j", "2", NULL};
    pid_t pid = start_watched(log, args);
    wait_for_rows(out, pid);
    kill(pid, sig);
    int code = finish(pid);
    char *text = read_file(log);
    cr_assert_eq(code, 130, "%s: exit %d, expected 130 (stopped): %s", strsignal(sig), code,
                 text);
    cr_expect(strstr(text, "stopping after the current point"), "%s", text);
    cr_expect(strstr(text, "continue with: lshlab run") && strstr(text, "--resume"), "%s",
              text);
    free(text);
    size_t rows = check_partial(out, &ref, strsignal(sig));
    cr_expect_gt(rows, 0);
    cr_expect_lt(rows, ref.rows, "the run was not stopped early");
    char work[600];
    snprintf(work, sizeof work, "%s.work", out);
    cr_expect_not(exists(work), "a clean stop leaves no working copy");
    cr_expect_not(exists(out), "a stopped run must not look finished");

    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    char *o = NULL;
    cr_assert_eq(lshlab(&o, 0, NULL, resume), 0, "%s", o);
    free(o);
    struct runs got;
    cr_assert_eq(read_runs(out, &got), 0);
    assert_rows_of(&got, &ref, 1, "resumed after a stop");
    free_runs(&got);
    free_runs(&ref);
}

Test(reliability, sigint_stops_after_the_point_and_resume_completes)
{
    stop_then_resume(SIGINT);
}

Test(reliability, sigterm_stops_after_the_point_and_resume_completes)
{
    stop_then_resume(SIGTERM);
}

/* a closed terminal: killed before, with the point under way lost */
Test(reliability, sighup_stops_after_the_point_and_resume_completes)
{
    stop_then_resume(SIGHUP);
}

static const char small_config[] =
    "name: small\n"
    "seed: 3\n"
    "datasets:\n"
    "  - {name: g, kind: gaussian, n: 64, d: 4}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: [4, 8]\n";

/* A file's bytes and times, to prove it was not touched. */
static char *fingerprint(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return strdup("(absent)");
    char *bytes = read_file(path);
    size_t len = (size_t)st.st_size;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)bytes[i]) * 1099511628211ULL;
    free(bytes);
    char *s = malloc(128);
    snprintf(s, 128, "%lld %lld.%09ld %llx", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             st.st_mtim.tv_nsec, (unsigned long long)h);
    return s;
}

Test(reliability, resume_refuses_a_file_from_another_config_and_leaves_it)
{
    const char *cfg = in_dir("small.yaml"), *other = in_dir("other.yaml"),
               *out = in_dir("small.h5");
    write_file(cfg, small_config);
    char *o = NULL;
    const char *first[] = {"run", cfg, "-o", out, "-q", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, first), 0, "%s", o);
    free(o);
    /* the same sweep with another seed: every number would differ */
    char text[sizeof small_config + 8];
    snprintf(text, sizeof text, "%s", small_config);
    memcpy(strstr(text, "seed: 3"), "seed: 4", 7);
    write_file(other, text);
    char *before = fingerprint(out);
    const char *args[] = {"run", other, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, args), 3, "%s", o);
    cr_expect(strstr(o, "different configuration") && strstr(o, "seed"), "%s", o);
    cr_expect(strstr(o, "--force"), "%s", o);
    free(o);
    char *after = fingerprint(out);
    cr_expect_str_eq(after, before, "the refused resume changed the file");
    char partial[600], work[600];
    snprintf(partial, sizeof partial, "%s.partial", out);
    snprintf(work, sizeof work, "%s.work", out);
    cr_expect_not(exists(partial));
    cr_expect_not(exists(work));
    free(before);
    free(after);
    /* the same config resumes a finished file: nothing to do, still exit 0 */
    const char *same[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, same), 0, "%s", o);
    free(o);
    struct runs r;
    cr_assert_eq(read_runs(out, &r), 0);
    cr_expect_eq(r.rows, 4);
    free_runs(&r);
}

Test(reliability, a_second_run_on_the_same_results_is_refused)
{
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("busy.h5");
    pid_t pid = start_frozen(cfg, out, in_dir("busy.log"));
    char *o = NULL;
    const char *again[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    int code = lshlab(&o, 0, NULL, again);
    cr_expect_eq(code, 4, "a second writer was let in: exit %d: %s", code, o);
    cr_expect(strstr(o, "another lshlab run is writing"), "%s", o);
    free(o);
    const char *force[] = {"run", cfg, "-o", out, "-q", "--force", NULL};
    cr_expect_eq(lshlab(&o, 0, NULL, force), 4, "%s", o);
    free(o);
    kill(pid, SIGKILL);
    finish(pid);
}

/* On a file system without hard links the working copy is created under its
 * own name and locked at once: a second writer is still refused, and a kill
 * leaves a .partial that --resume finishes. */
Test(reliability, without_hard_links_one_writer_and_resume_still_hold)
{
    child_env[0] = "LSHLAB_TEST_NO_HARD_LINKS=1";
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("nolink.h5");
    pid_t pid = start_frozen(cfg, out, in_dir("nolink.log"));
    char *o = NULL;
    const char *again[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    int code = lshlab(&o, 0, NULL, again);
    cr_expect_eq(code, 4, "a second writer was let in: exit %d: %s", code, o);
    cr_expect(strstr(o, "another lshlab run is writing"), "%s", o);
    free(o);
    kill(pid, SIGKILL);
    finish(pid);
    cr_assert_eq(lshlab(&o, 0, NULL, again), 0, "%s", o);
    free(o);
    cr_expect(exists(out) && !exists(in_dir("nolink.h5.work")) &&
              !exists(in_dir("nolink.h5.partial")));
    child_env[0] = NULL;
}

/* Found by the hostile pass: two runs started at the same moment both
 * passed the busy check; the second then failed creating the working copy
 * (exit 1, not 4), and two --resume runs could each remove the other's new
 * working copy as a crash's leftover, so that both failed.  Now exactly one
 * writes (and finishes the file) and the other is told that one is running. */
Test(reliability, runs_started_together_on_one_file_let_exactly_one_write)
{
    const char *cfg = in_dir("race.yaml"), *out = in_dir("race.h5");
    write_file(cfg, "name: race\n"
                    "datasets:\n  - {name: g, kind: gaussian, n: 256, d: 4}\n"
                    "strategies:\n  - name: rotation\n"
                    "sweep:\n  n_hashes: [1, 2]\n  n_buckets: [2, 4]\n");
    const int tries = quick() ? 2 : 6;
    for (int t = 0; t < 2 * tries; t++) {
        const int resume = t >= tries; /* the second half: --resume of a finished file */
        if (!resume)
            unlink(out);
        const char *args[] = {"run", cfg, "-o", out, "-q", "-j", "1",
                              resume ? "--resume" : "--force", NULL};
        if (!resume) /* --force would wait for nothing: both plain */
            args[7] = NULL;
        pid_t a = start(in_dir("race-a.log"), 0, NULL, args);
        pid_t b = start(in_dir("race-b.log"), 0, NULL, args);
        const int ca = finish(a), cb = finish(b);
        char *la = read_file(in_dir("race-a.log")), *lb = read_file(in_dir("race-b.log"));
        cr_expect((ca == 0 && cb == 4) || (ca == 4 && cb == 0) || (resume && ca == 0 && cb == 0),
                  "try %d%s: exits %d and %d:\n%s\n%s", t, resume ? " (resume)" : "", ca, cb, la,
                  lb);
        /* or, when the other one finished (or published) before this one
         * looked, what it found: the file, or its .partial */
        cr_expect(ca == 0 || strstr(la, "file exists: "), "%s", la);
        cr_expect(cb == 0 || strstr(lb, "file exists: "), "%s", lb);
        free(la);
        free(lb);
        struct runs r;
        cr_assert_eq(read_runs(out, &r), 0, "try %d: no complete file", t);
        cr_expect_eq(r.rows, 4);
        free_runs(&r);
        cr_expect_not(exists(in_dir("race.h5.work")) || exists(in_dir("race.h5.partial")),
                      "try %d: a working copy or .partial is left", t);
    }
}

/* ---- plugins that fail at run time ---------------------------------------------- */

static const char plugin_config[] =
    "name: plugins\n"
    "datasets:\n"
    "  - {name: g, kind: gaussian, n: 50, d: 4}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "  - name: bad_bucket\n"
    "  - name: failing_hash\n"
    "  - name: hyperplane\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: [4]\n";

Test(reliability, misbehaving_plugins_fail_their_points_and_the_sweep_goes_on)
{
    const char *built = getenv("LSHLAB_TEST_PLUGIN_DIR");
    cr_assert_not_null(built, "LSHLAB_TEST_PLUGIN_DIR is not set (run through meson test)");
    /* only these two: the other test plugins are refused at load */
    const char *plugins = in_dir("plugins");
    cr_assert_eq(mkdir(plugins, 0755), 0);
    const char *names[] = {"bad_bucket.so", "failing_hash.so"};
    for (int i = 0; i < 2; i++) {
        char from[1024], to[1024];
        snprintf(from, sizeof from, "%s/%s", built, names[i]);
        snprintf(to, sizeof to, "%s/%s", plugins, names[i]);
        cr_assert_eq(symlink(from, to), 0, "%s", strerror(errno));
    }
    const char *cfg = in_dir("plugins.yaml"), *out = in_dir("plugins.h5");
    write_file(cfg, plugin_config);
    char *o = NULL;
    const char *args[] = {"run", cfg, "-o", out, NULL};
    cr_assert_eq(lshlab(&o, 0, plugins, args), 5, "%s", o);
    cr_expect(strstr(o, "4 points failed"), "%s", o);
    free(o);

    /* 4 strategies x 2 n_hashes, in point order */
    struct runs r;
    cr_assert_eq(read_runs(out, &r), 0);
    cr_assert_eq(r.rows, 8);
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/runs", H5P_DEFAULT);
    struct rec {
        char strategy[64], status[16], message[256];
        double out_rel_err;
    } rec[8];
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(struct rec));
    hid_t s64 = H5Tcopy(H5T_C_S1), s16 = H5Tcopy(H5T_C_S1), s256 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s64, 64);
    H5Tset_size(s16, 16);
    H5Tset_size(s256, 256);
    H5Tinsert(mt, "strategy", offsetof(struct rec, strategy), s64);
    H5Tinsert(mt, "status", offsetof(struct rec, status), s16);
    H5Tinsert(mt, "message", offsetof(struct rec, message), s256);
    H5Tinsert(mt, "out_rel_err", offsetof(struct rec, out_rel_err), H5T_NATIVE_DOUBLE);
    cr_assert(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rec) >= 0);
    for (int i = 0; i < 8; i++) {
        const char *st = rec[i].strategy;
        if (!strcmp(st, "rotation") || !strcmp(st, "hyperplane")) {
            cr_expect_str_eq(rec[i].status, "ok", "%s row %d", st, i);
            cr_expect_gt(rec[i].out_rel_err, 0.0, "%s row %d", st, i);
        } else {
            cr_expect_str_eq(rec[i].status, "failed", "%s row %d", st, i);
            cr_expect_eq(rec[i].out_rel_err, 0.0, "a failed point's metrics are zero");
        }
        if (!strcmp(st, "bad_bucket"))
            cr_expect(strstr(rec[i].message, "bad_bucket returned bucket 4 for row 0") &&
                          strstr(rec[i].message, "n_buckets is 4"),
                      "%s", rec[i].message);
        if (!strcmp(st, "failing_hash"))
            cr_expect(strstr(rec[i].message, "failing_hash: this plugin always fails, on purpose"),
                      "%s", rec[i].message);
    }
    cr_expect_str_eq(rec[7].strategy, "hyperplane", "the sweep stopped at the failures");
    H5Tclose(s64);
    H5Tclose(s16);
    H5Tclose(s256);
    H5Tclose(mt);
    H5Dclose(ds);
    H5Fclose(f);
    free_runs(&r);

    /* --resume runs the failed points again (they fail again), keeps the rest */
    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, plugins, resume), 5, "%s", o);
    free(o);
    cr_assert_eq(read_runs(out, &r), 0);
    cr_expect_eq(r.rows, 8);
    free_runs(&r);
}

/* ---- full disk ------------------------------------------------------------------ */

Test(reliability, a_full_disk_stops_with_a_message_and_keeps_the_rows_written)
{
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("full.h5");
    write_file(cfg, sweep());
    struct runs ref;
    reference_run(cfg, &ref);
    /* a disk that fills up at 60% of the finished file (2.6 MB; quick: 0.4 MB) */
    struct stat st;
    cr_assert_eq(stat(in_dir("reference.h5"), &st), 0);
    char *o = NULL;
    const char *args[] = {"run", cfg, "-o", out, "-q", NULL};
    /* snapshots after every row, not when the clock says, so that rows are
     * kept before the disk fills however loaded the machine is */
    child_env[0] = "LSHLAB_TEST_SNAPSHOT_EVERY_ROW=1";
    int code = lshlab(&o, (long)(st.st_size * 6 / 10 / 1024), NULL, args);
    child_env[0] = NULL;
    cr_assert_eq(code, 1, "exit %d: %s", code, o);
    cr_expect(strstr(o, "File too large"), "no reason given: %s", o);
    cr_expect(strstr(o, ".partial") && strstr(o, "--resume"), "no way out given: %s", o);
    free(o);
    size_t rows = check_partial(out, &ref, "disk full");
    cr_expect_gt(rows, 0, "no rows kept");
    cr_expect_lt(rows, ref.rows);
    char work[600], tmp[600];
    snprintf(work, sizeof work, "%s.work", out);
    snprintf(tmp, sizeof tmp, "%s.partial.tmp", out);
    cr_expect_not(exists(work), "the broken working copy is left behind");
    cr_expect_not(exists(tmp), "a half snapshot is left behind");
    cr_expect_not(exists(out));

    /* space again: --resume completes it, identical to the uninterrupted run */
    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, resume), 0, "%s", o);
    free(o);
    struct runs got;
    cr_assert_eq(read_runs(out, &got), 0);
    assert_rows_of(&got, &ref, 1, "resumed after a full disk");
    free_runs(&got);
    free_runs(&ref);
}

/* ---- a kill between any two writes ---------------------------------------------- */

static const char small_sweep[] =
    "name: small\n"
    "seed: 5\n"
    "datasets:\n"
    "  - {name: c, kind: clustered, n: 200, d: 8, clusters: 4}\n"
    "strategies:\n"
    "  - name: rotation\n"
    "  - name: kmeans\n"
    "    params: {iterations: 3}\n"
    "sweep:\n"
    "  n_hashes: [1, 2]\n"
    "  n_buckets: [4, 8]\n"
    "  mode: [bucket, chunked]\n"
    "  chunk_size: 16\n"
    "dump: [buckets, hash_params]\n";

static long read_count(const char *path)
{
    char *s = read_file(path);
    long n = atol(s);
    free(s);
    return n;
}

/* A random kill almost never lands inside an HDF5 flush, where writing the
 * file in place used to tear it (8 of 182 write positions of this sweep left
 * a .partial HDF5 could not open).  killwrite.so kills lshlab right after a
 * chosen write to the results files, or after half of it: first, middle and
 * last writes, and random ones between. */
Test(reliability, sigkill_between_any_two_writes_leaves_a_readable_partial)
{
    const char *shim = getenv("LSHLAB_TEST_KILLWRITE");
    cr_assert_not_null(shim, "LSHLAB_TEST_KILLWRITE is not set (run through meson test)");
    const char *cfg = in_dir("small.yaml"), *out = in_dir("torn.h5");
    write_file(cfg, small_sweep);

    struct runs ref;
    const char *ref_out = in_dir("small-ref.h5");
    const char *ref_args[] = {"run", cfg, "-o", ref_out, "-q", NULL};
    char *o = NULL;
    cr_assert_eq(lshlab(&o, 0, NULL, ref_args), 0, "%s", o);
    free(o);
    cr_assert_eq(read_runs(ref_out, &ref), 0);

    char preload[1100], target[600], count[600], limit[64];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", shim);
    snprintf(target, sizeof target, "LSHLAB_KILL_PATH=%s", out);
    snprintf(count, sizeof count, "LSHLAB_KILL_COUNT_FILE=%s", in_dir("writes.txt"));
    child_env[0] = preload;
    child_env[1] = target;
    child_env[2] = count;
    /* a sanitizer runtime wants to be loaded first; the shim comes before it */
    child_env[3] = "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:exitcode=86";
    /* snapshots after every row, not when the clock says: every run then makes
     * the same writes, and each kill below lands where it is aimed */
    child_env[4] = "LSHLAB_TEST_SNAPSHOT_EVERY_ROW=1";
    const char *args[] = {"run", cfg, "-o", out, "-q", NULL};
    long writes = 0;
    for (int k = 0; k < 2; k++) { /* twice: the count must not depend on timing */
        cr_assert_eq(lshlab(&o, 0, NULL, args), 0, "%s", o);
        free(o);
        long w = read_count(in_dir("writes.txt"));
        cr_assert_gt(w, 20, "only %ld writes seen: is the shim loaded?", w);
        cr_assert(k == 0 || w == writes, "%ld writes, then %ld: the kills cannot be aimed",
                  writes, w);
        writes = w;
        cr_assert_eq(unlink(out), 0);
    }

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    enum { KILLS = 16 };
    const int kills = quick() ? 6 : KILLS;
    long at[KILLS] = {1, 2, 3, writes / 2, writes - 1, writes};
    for (int i = 6; i < KILLS; i++)
        at[i] = 1 + rand() % writes;
    int killed = 0;
    for (int i = 0; i < kills; i++) {
        char partial[600], work[600], tmp[600];
        snprintf(partial, sizeof partial, "%s.partial", out);
        snprintf(work, sizeof work, "%s.work", out);
        snprintf(tmp, sizeof tmp, "%s.partial.tmp", out);
        unlink(out), unlink(partial), unlink(work), unlink(tmp);
        snprintf(limit, sizeof limit, "LSHLAB_KILL_AFTER_WRITES=%ld", at[i]);
        child_env[5] = limit;
        child_env[6] = i % 2 ? "LSHLAB_KILL_TORN=1" : NULL;
        int code = lshlab(&o, 0, NULL, args);
        free(o);
        child_env[5] = child_env[6] = NULL;
        char what[160];
        snprintf(what, sizeof what, "killed %s write %ld of %ld (seed %u)",
                 i % 2 ? "in the middle of" : "after", at[i], writes, seed);
        cr_expect_eq(code, 128 + SIGKILL, "%s: exit code %d, not killed", what, code);
        if (code != 128 + SIGKILL)
            continue;
        killed++;
        check_partial(out, &ref, what);
    }
    child_env[0] = NULL;
    cr_expect_eq(killed, kills, "only %d of %d runs were killed", killed, kills);

    /* and the last torn run resumes to the uninterrupted result */
    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, resume), 0, "%s", o);
    free(o);
    struct runs got;
    cr_assert_eq(read_runs(out, &got), 0);
    assert_rows_of(&got, &ref, 1, "resumed after a torn write");
    free_runs(&got);
    free_runs(&ref);
}

/* ---- data only a fit can refuse ------------------------------------------------- */

/* kmeans needs n_buckets distinct rows.  Validation refuses B > n before any
 * work (the battery's kmeans cases); rows that repeat are seen only by the
 * fit, so such a point fails with the plugin's reason and the sweep goes on. */
Test(reliability, kmeans_on_too_few_distinct_rows_fails_its_point_with_the_reason)
{
    const char *data = in_dir("dup.h5"), *cfg = in_dir("dup.yaml"), *out = in_dir("dup-out.h5");
    double q[20 * 4];
    for (int i = 0; i < 20; i++)
        for (int e = 0; e < 4; e++) /* 3 distinct rows, repeated */
            q[i * 4 + e] = fmod(2.385 + 0.7391 * ((i % 3) * 4 + e), 5.3) - 2.6;
    hid_t f = H5Fcreate(data, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {20, 4};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, q) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    write_file(cfg, "name: dup\n"
                    "datasets:\n"
                    "  - {name: h, kind: hdf5, file: dup.h5, q: q}\n"
                    "strategies:\n"
                    "  - name: kmeans\n"
                    "  - name: rotation\n"
                    "sweep:\n"
                    "  n_buckets: [4]\n");
    char *o = NULL;
    const char *args[] = {"run", cfg, "-o", out, NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, args), 5, "%s", o);
    free(o);
    char *csv = NULL;
    const char *show[] = {"show", out, "--csv", NULL};
    cr_assert_eq(lshlab(&csv, 0, NULL, show), 0, "%s", csv);
    cr_expect(strstr(csv, "failed") && strstr(csv, "only 3 distinct non-zero rows"), "%s", csv);
    cr_expect(strstr(csv, ",rotation,") && strstr(csv, ",ok,"), "%s", csv);
    free(csv);
}

/* ---- issue 8: the results file against a hostile or changing world ---------------- */

/* A second plain `run` while one writes is told that a run is active, with
 * its process id, and to wait or stop it, not to use --resume. */
Test(reliability, a_second_plain_run_is_told_a_run_is_active_not_to_resume)
{
    const char *cfg = in_dir("crash.yaml"), *out = in_dir("busy2.h5");
    pid_t pid = start_frozen(cfg, out, in_dir("busy2.log"));
    char *o = NULL, who[48];
    snprintf(who, sizeof who, "process %ld", (long)pid);
    const char *again[] = {"run", cfg, "-o", out, "-q", NULL};
    cr_expect_eq(lshlab(&o, 0, NULL, again), 4, "%s", o);
    cr_expect(strstr(o, "another lshlab run is writing") && strstr(o, who), "%s", o);
    cr_expect_null(strstr(o, "--resume"), "%s", o);
    free(o);
    kill(pid, SIGKILL);
    finish(pid);
}

/* `ln -s victim out.h5.work` (or .partial.tmp): the run refuses, naming the
 * link, and the victim keeps its bytes. */
Test(reliability, a_link_at_a_working_name_is_refused_and_its_target_kept)
{
    const char *cfg = in_dir("small.yaml"), *out = in_dir("linked.h5");
    const char *victim = in_dir("victim.txt");
    write_file(cfg, small_config);
    static const char *const suffixes[] = {".work", ".partial.tmp"};
    for (int i = 0; i < 2; i++) {
        char link[600];
        snprintf(link, sizeof link, "%s%s", out, suffixes[i]);
        write_file(victim, "keep me\n");
        cr_assert_eq(symlink(victim, link), 0);
        char *o = NULL;
        const char *args[] = {"run", cfg, "-o", out, "-q", "--force", NULL};
        int code = lshlab(&o, 0, NULL, args);
        cr_expect_neq(code, 0, "%s", o);
        cr_expect(strstr(o, link) && strstr(o, "symbolic link"), "%s", o);
        free(o);
        char *text = read_file(victim);
        cr_expect_str_eq(text, "keep me\n");
        free(text);
        cr_expect_not(exists(out));
        unlink(link);
    }
}

/* An hdf5 input edited between a run and --resume: the resume is refused,
 * naming the dataset and the file; the unchanged input resumes. */
Test(reliability, resume_after_the_hdf5_input_changed_is_refused)
{
    const char *data = in_dir("in.h5"), *cfg = in_dir("in.yaml"), *out = in_dir("in-out.h5");
    double q[24 * 4];
    for (int i = 0; i < 24 * 4; i++)
        q[i] = fmod(2.385 * i, 5.3) - 2.6;
    for (int pass = 0; pass < 2; pass++) {
        hid_t f = H5Fcreate(data, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[2] = {24, 4};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t ds = H5Dcreate2(f, "q", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        cr_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, q) >= 0);
        H5Dclose(ds);
        H5Sclose(sp);
        H5Fclose(f);
        if (pass == 1)
            break;
        write_file(cfg, "name: in\n"
                        "datasets:\n"
                        "  - {name: h, kind: hdf5, file: in.h5, q: q}\n"
                        "strategies:\n"
                        "  - name: rotation\n"
                        "sweep:\n"
                        "  n_hashes: [1, 2]\n"
                        "  n_buckets: [4]\n");
        char *o = NULL;
        const char *args[] = {"run", cfg, "-o", out, "-q", NULL};
        cr_assert_eq(lshlab(&o, 0, NULL, args), 0, "%s", o);
        free(o);
        /* drop the last row, as if the run had stopped before it */
        f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t runs = H5Dopen2(f, "runs", H5P_DEFAULT);
        hsize_t one = 1;
        cr_assert_geq(H5Dset_extent(runs, &one), 0);
        H5Dclose(runs);
        H5Fclose(f);
        q[5] += 0.25; /* then edit one value of the input */
    }
    char *o = NULL;
    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_expect_neq(lshlab(&o, 0, NULL, resume), 0, "%s", o);
    cr_expect(strstr(o, "dataset 'h'") && strstr(o, "in.h5") && strstr(o, "changed"), "%s", o);
    free(o);
    struct runs r;
    cr_assert_eq(read_runs(out, &r), 0, "the refused resume did not give the file back");
    cr_expect_eq(r.rows, 1);
    free_runs(&r);
}

/* Replace the root attribute resolved_config of p by its text without each of
 * `gone` (every one must be there). */
static void strip_resolved(const char *p, const char *const *gone, size_t n_gone)
{
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t a = H5Aopen(f, "resolved_config", H5P_DEFAULT);
    hid_t st = H5Aget_type(a);
    char *yaml = NULL;
    cr_assert(H5Tis_variable_str(st) > 0);
    cr_assert_geq(H5Aread(a, st, &yaml), 0);
    char *text = strdup(yaml);
    H5free_memory(yaml);
    H5Aclose(a);
    for (size_t i = 0; i < n_gone; i++) {
        char *at = strstr(text, gone[i]);
        cr_assert_not_null(at, "'%s' not in the resolved config:\n%s", gone[i], text);
        memmove(at, at + strlen(gone[i]), strlen(at + strlen(gone[i])) + 1);
    }
    cr_assert_geq(H5Adelete(f, "resolved_config"), 0);
    hid_t sc = H5Screate(H5S_SCALAR);
    a = H5Acreate2(f, "resolved_config", st, sc, H5P_DEFAULT, H5P_DEFAULT);
    const char *w = text;
    cr_assert_geq(H5Awrite(a, st, &w), 0);
    H5Aclose(a);
    H5Sclose(sc);
    H5Tclose(st);
    H5Fclose(f);
    free(text);
}

/* A file written before the candidate rules and kmeans' `balanced` (their
 * default lines absent from its resolved config, as lshlab f3c60d2 wrote it)
 * resumes with a config that names kmeans: the defaults reproduce it. */
Test(reliability, a_kmeans_file_written_before_balanced_and_the_rules_resumes)
{
    const char *cfg = in_dir("old.yaml"), *out = in_dir("old.h5");
    write_file(cfg, "name: old\n"
                    "datasets:\n"
                    "  - {name: g, kind: gaussian, n: 24, d: 4}\n"
                    "strategies:\n"
                    "  - name: kmeans\n"
                    "  - name: hyperplane\n"
                    "sweep:\n"
                    "  n_hashes: [1, 2]\n"
                    "  n_buckets: [2]\n");
    char *o = NULL;
    const char *args[] = {"run", cfg, "-o", out, "-q", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, args), 0, "%s", o);
    free(o);
    struct runs full;
    cr_assert_eq(read_runs(out, &full), 0);
    /* the first row only, and the config as the older lshlab resolved it */
    hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t runs = H5Dopen2(f, "runs", H5P_DEFAULT);
    hsize_t one = 1;
    cr_assert_geq(H5Dset_extent(runs, &one), 0);
    H5Dclose(runs);
    H5Fclose(f);
    static const char *const gone[] = {"  oracle: false\n", "  min_collisions: [1]\n",
                                       "  sink: [0]\n", "  local: [0]\n", ", balanced: [false]"};
    strip_resolved(out, gone, sizeof gone / sizeof *gone);

    const char *resume[] = {"run", cfg, "-o", out, "-q", "--resume", NULL};
    cr_assert_eq(lshlab(&o, 0, NULL, resume), 0, "%s", o);
    free(o);
    struct runs r;
    cr_assert_eq(read_runs(out, &r), 0);
    assert_rows_of(&r, &full, 1, "resumed file written before the rules");
    free_runs(&r);
    free_runs(&full);
}

/* The doubles of column name of /runs in row order. */
static void read_column(const char *path, const char *name, double *out, size_t rows)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s", path);
    hid_t ds = H5Dopen2(f, "/runs", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[1];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    cr_assert_eq(dims[0], rows, "%s: %llu rows", path, (unsigned long long)dims[0]);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(double));
    H5Tinsert(mt, name, 0, H5T_NATIVE_DOUBLE);
    cr_assert(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Tclose(mt);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
}

/* A collision_prob that passes the host's probes but is NaN (mode 6) or
 * 1.5 (mode 7) at the data's cosines fails its importance points with the
 * reason and never writes an ok row; the same pass's union points, which do
 * not use the law, are ok, with the bits of a sweep of union alone.  One
 * that returns -0 (mode 5) is the probability 0: the collision table writes
 * it as +0 (no sign bit in p_law). */
Test(reliability, a_law_bad_off_the_probes_fails_its_points_and_minus_zero_is_zero)
{
    const char *built = getenv("LSHLAB_TEST_PLUGIN_DIR");
    cr_assert_not_null(built, "LSHLAB_TEST_PLUGIN_DIR is not set (run through meson test)");
    const char *plugins = in_dir("laws");
    cr_assert_eq(mkdir(plugins, 0755), 0);
    char from[1024], to[1024];
    snprintf(from, sizeof from, "%s/bad_law.so", built);
    snprintf(to, sizeof to, "%s/bad_law.so", plugins);
    cr_assert_eq(symlink(from, to), 0, "%s", strerror(errno));

    const char *cfg = in_dir("law.yaml"), *out = in_dir("law.h5");
    write_file(cfg, "name: law\n"
                    "datasets:\n  - {name: g, kind: gaussian, n: 12, d: 3}\n"
                    "attention: {keys: separate, oracle: true}\n"
                    "strategies:\n  - {name: bad_law, params: {mode: [6, 7]}}\n"
                    "sweep:\n  n_buckets: [2]\n  combine: [union, importance]\n");
    char *o = NULL;
    const char *args[] = {"run", cfg, "-o", out, "-q", NULL};
    cr_assert_eq(lshlab(&o, 0, plugins, args), 5, "%s", o);
    free(o);
    struct runs r;
    cr_assert_eq(read_runs(out, &r), 0);
    cr_assert_eq(r.rows, 4);
    const char *ucfg = in_dir("lawu.yaml"), *uout = in_dir("lawu.h5");
    write_file(ucfg, "name: law\n"
                     "datasets:\n  - {name: g, kind: gaussian, n: 12, d: 3}\n"
                     "attention: {keys: separate, oracle: true}\n"
                     "strategies:\n  - {name: bad_law, params: {mode: [6, 7]}}\n"
                     "sweep:\n  n_buckets: [2]\n  combine: union\n");
    const char *uargs[] = {"run", ucfg, "-o", uout, "-q", NULL};
    cr_assert_eq(lshlab(&o, 0, plugins, uargs), 0, "%s", o);
    free(o);
    double got[4], want[2], mass[4], want_mass[2];
    read_column(out, "out_rel_err", got, 4);
    read_column(out, "mass_recall", mass, 4);
    read_column(uout, "out_rel_err", want, 2);
    read_column(uout, "mass_recall", want_mass, 2);
    for (size_t i = 0; i < r.rows; i++) { /* points: mode x combine, combine fastest */
        char status[32];
        cr_expect_str_eq(row_status(&r, i, status, sizeof status), i % 2 ? "failed" : "ok",
                         "row %zu", i);
        if (i % 2 == 0) {
            cr_expect(got[i] == want[i / 2] && mass[i] == want_mass[i / 2] && want[i / 2] > 0,
                      "row %zu: out_rel_err %.17g mass_recall %.17g, union alone %.17g %.17g", i,
                      got[i], mass[i], want[i / 2], want_mass[i / 2]);
        }
    }
    free_runs(&r);

    const char *ccfg = in_dir("lawc.yaml"), *cout = in_dir("lawc.h5");
    write_file(ccfg, "name: lawc\nexperiment: collision\n"
                     "collision: {d: 3, angles: [10, 90], pairs: 20}\n"
                     "strategies:\n  - {name: bad_law, params: {mode: 5}}\n"
                     "sweep:\n  n_hashes: [1]\n  n_buckets: [2]\n");
    const char *cargs[] = {"run", ccfg, "-o", cout, "-q", NULL};
    cr_assert_eq(lshlab(&o, 0, plugins, cargs), 0, "%s", o);
    free(o);
    hid_t f = H5Fopen(cout, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/collision", H5P_DEFAULT);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(double));
    H5Tinsert(mt, "p_law", 0, H5T_NATIVE_DOUBLE);
    double p[2] = {1, 1};
    cr_assert(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0);
    for (int i = 0; i < 2; i++)
        cr_expect(p[i] == 0.0 && !signbit(p[i]), "p_law %g (sign bit %d)", p[i], !!signbit(p[i]));
    H5Tclose(mt);
    H5Dclose(ds);
    H5Fclose(f);
}
