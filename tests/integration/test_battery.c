/* test_battery.c - bad configs and bad inputs, data-driven: every
 * tests/battery/NAME.yaml is run through the real lshlab binary in a folder
 * of its own, and must exit with the code its header names, print every
 * expected text, name the place in the config (file:line:column) when the
 * config is at fault, and leave every file of the folder as it was: no
 * results file, no .partial, no working copy, nothing changed.
 *
 * Header lines, before the YAML (comments to it):
 *   # expect-exit: N          exit code of `lshlab run`
 *   # validate-exit: N        exit code of `lshlab validate` (default: N above)
 *   # args: ...               more arguments for `lshlab run`
 *   # setup: file PATH        a file that must survive unchanged
 *   # setup: readonly DIR     a folder nobody may write (immutable when root)
 *   # setup: copy FROM TO      a copy of the case folder's file FROM (e.g. q.npy) at TO
 *   # at: LINE:COLUMN         where the message must point ("none": no place)
 *   # expect: TEXT            text the output must contain (any number)
 * Every case folder also holds data.h5 (the fixture matrices below),
 * not_hdf5.h5 (text), fortran.npy (a Fortran-order 2 x 2 float64 array), q.npy (the
 * same bytes in C order)
 * and an empty results/. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#define MAX_CASES 256
#define MAX_EXPECT 8

struct bcase {
    char name[96];
};

/* ---- the fixture: data.h5 --------------------------------------------------- */

#define FN 20
#define FD 4

static void put(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(ds >= 0, "cannot create fixture %s", name);
    hsize_t count = 1;
    for (int r = 0; r < rank; r++)
        count *= dims[r];
    if (count)
        cr_assert(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void write_fixture(const char *path)
{
    double x[FN * (FD + 1)], y[FN * FD];
    for (int t = 0; t < FN * (FD + 1); t++)
        x[t] = fmod(2.385 + 0.7391 * t, 5.3) - 2.6;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    const hsize_t nd[2] = {FN, FD}, n3[2] = {FN, 3}, short_d[2] = {FN - 1, FD},
                  short3[2] = {FN - 1, 3}, wide[2] = {FN, FD + 1}, rank1[1] = {FN},
                  rank3[3] = {2, 5, FD}, rank5[5] = {2, 1, 1, 5, FD}, empty[2] = {0, FD};
    put(f, "q", H5T_NATIVE_DOUBLE, 2, nd, x);
    put(f, "k", H5T_NATIVE_DOUBLE, 2, nd, x + FD);
    put(f, "v", H5T_NATIVE_DOUBLE, 2, n3, x);
    put(f, "k_short", H5T_NATIVE_DOUBLE, 2, short_d, x);
    put(f, "k_wide", H5T_NATIVE_DOUBLE, 2, wide, x);
    put(f, "v_short", H5T_NATIVE_DOUBLE, 2, short3, x);
    put(f, "q_rank1", H5T_NATIVE_DOUBLE, 1, rank1, x);
    put(f, "q_rank3", H5T_NATIVE_DOUBLE, 3, rank3, x);
    put(f, "q_rank5", H5T_NATIVE_DOUBLE, 5, rank5, x);
    const hsize_t kv3[3] = {3, 5, FD};
    put(f, "k_rank3_h3", H5T_NATIVE_DOUBLE, 3, kv3, x);
    put(f, "q_empty", H5T_NATIVE_DOUBLE, 2, empty, x);
    memcpy(y, x, sizeof y);
    y[3 * FD + 2] = NAN;
    put(f, "q_nan", H5T_NATIVE_DOUBLE, 2, nd, y);
    memcpy(y, x, sizeof y);
    y[7 * FD + 0] = -INFINITY;
    put(f, "k_inf", H5T_NATIVE_DOUBLE, 2, nd, y);
    memcpy(y, x, sizeof y);
    y[5 * 3 + 1] = INFINITY;
    put(f, "v_inf", H5T_NATIVE_DOUBLE, 2, n3, y);
    /* rows repeating 3 distinct values: kmeans with B = 4 cannot fit */
    for (int i = 0; i < FN; i++)
        memcpy(y + i * FD, x + (i % 3) * FD, FD * sizeof *y);
    put(f, "q_dup", H5T_NATIVE_DOUBLE, 2, nd, y);
    char strings[FN * FD][8];
    memset(strings, 0, sizeof strings);
    for (int t = 0; t < FN * FD; t++)
        snprintf(strings[t], sizeof strings[t], "s%d", t);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 8);
    put(f, "q_str", st, 2, nd, strings);
    H5Tclose(st);
    hid_t g = H5Gcreate2(f, "grp", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(g >= 0);
    H5Gclose(g);
    H5Fclose(f);
}

/* ---- the cases -------------------------------------------------------------- */

static const char *battery_dir(void)
{
    static char dir[1024];
    const char *root = getenv("LSHLAB_SOURCE_ROOT");
    cr_assert_not_null(root, "LSHLAB_SOURCE_ROOT is not set (run through meson test)");
    snprintf(dir, sizeof dir, "%s/tests/battery", root);
    return dir;
}

static int cmp_case(const void *a, const void *b)
{
    return strcmp(((const struct bcase *)a)->name, ((const struct bcase *)b)->name);
}

static size_t list_cases(struct bcase *out, size_t max)
{
    DIR *d = opendir(battery_dir());
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".yaml") && len - 5 < sizeof out[n].name)
            snprintf(out[n++].name, sizeof out[n].name, "%.*s", (int)(len - 5), e->d_name);
    }
    closedir(d);
    qsort(out, n, sizeof *out, cmp_case);
    return n;
}

static void free_params(struct criterion_test_params *crp)
{
    cr_free(crp->params);
}

struct header {
    int exit_code, validate_exit;
    char args[256];
    char setup[8][128];
    int n_setup;
    char at[32];
    char expect[MAX_EXPECT][256];
    int n_expect;
};

static void read_header(const char *path, struct header *h)
{
    memset(h, 0, sizeof *h);
    h->exit_code = h->validate_exit = -1;
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    char line[512];
    while (fgets(line, sizeof line, f) && line[0] == '#') {
        line[strcspn(line, "\n")] = '\0';
        const char *v;
        if ((v = strstr(line, ": ")) == NULL)
            continue;
        v += 2;
        if (!strncmp(line, "# expect-exit:", 14))
            h->exit_code = atoi(v);
        else if (!strncmp(line, "# validate-exit:", 16))
            h->validate_exit = atoi(v);
        else if (!strncmp(line, "# args:", 7))
            snprintf(h->args, sizeof h->args, "%s", v);
        else if (!strncmp(line, "# setup:", 8) && h->n_setup < 8)
            snprintf(h->setup[h->n_setup++], sizeof h->setup[0], "%s", v);
        else if (!strncmp(line, "# at:", 5))
            snprintf(h->at, sizeof h->at, "%s", v);
        else if (!strncmp(line, "# expect:", 9) && h->n_expect < MAX_EXPECT)
            snprintf(h->expect[h->n_expect++], sizeof h->expect[0], "%s", v);
    }
    fclose(f);
    cr_assert(h->exit_code > 0, "%s: no '# expect-exit: N' header", path);
    cr_assert(h->at[0], "%s: no '# at: LINE:COLUMN' (or none) header", path);
    cr_assert(h->n_expect > 0, "%s: no '# expect: TEXT' header", path);
    if (h->validate_exit < 0)
        h->validate_exit = h->exit_code;
}

/* ---- the folder of one case --------------------------------------------------- */

static char casedir[256];
static char immutable[512];

static void make_casedir(void)
{
    snprintf(casedir, sizeof casedir, "/tmp/lshlab-battery-XXXXXX");
    cr_assert_not_null(mkdtemp(casedir));
    immutable[0] = '\0';
}

static void remove_casedir(void)
{
    char cmd[1200];
    if (immutable[0]) {
        snprintf(cmd, sizeof cmd, "chattr -i '%s'", immutable);
        (void)system(cmd);
    }
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' && rm -rf '%s'", casedir, casedir);
    cr_assert_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void copy_case(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "cannot copy %s to %s", from, to);
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* Returns 0, or 1 when the case cannot be set up here (skip). */
static int apply_setup(const char *setup)
{
    char path[512], cmd[1200];
    if (!strncmp(setup, "file ", 5)) {
        snprintf(path, sizeof path, "%s/%s", casedir, setup + 5);
        char text[600];
        snprintf(text, sizeof text, "precious bytes of %s\n", setup + 5);
        write_text(path, text);
        return 0;
    }
    if (!strncmp(setup, "copy ", 5)) {
        char from[128], to[128], src[512];
        cr_assert_eq(sscanf(setup + 5, "%127s %127s", from, to), 2, "setup '%s'", setup);
        snprintf(src, sizeof src, "%s/%s", casedir, from);
        snprintf(path, sizeof path, "%s/%s", casedir, to);
        copy_case(src, path);
        return 0;
    }
    if (!strncmp(setup, "readonly ", 9)) {
        snprintf(path, sizeof path, "%s/%s", casedir, setup + 9);
        cr_assert_eq(mkdir(path, 0755), 0);
        cr_assert_eq(chmod(path, 0555), 0);
        if (access(path, W_OK) != 0)
            return 0;
        /* root writes anywhere, except into an immutable folder */
        snprintf(cmd, sizeof cmd, "chattr +i '%s' 2>/dev/null", path);
        if (system(cmd) != 0 || access(path, W_OK) == 0)
            return 1;
        snprintf(immutable, sizeof immutable, "%s", path);
        return 0;
    }
    cr_assert_fail("unknown setup '%s'", setup);
    return 1;
}

/* Every file and folder under casedir: path, type, size, mtime, inode. */
static char listing[16384];
static size_t listing_len;

static int list_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag, (void)ftw;
    /* a folder's own times change when a file comes and goes: compare its
     * entries, not it */
    int dir = S_ISDIR(st->st_mode);
    int w = snprintf(listing + listing_len, sizeof listing - listing_len,
                     "%s %o %lld %lld.%09ld %llu\n", path + strlen(casedir), (unsigned)st->st_mode,
                     dir ? 0LL : (long long)st->st_size, dir ? 0LL : (long long)st->st_mtim.tv_sec,
                     dir ? 0L : st->st_mtim.tv_nsec, (unsigned long long)st->st_ino);
    if (w > 0 && (size_t)w < sizeof listing - listing_len)
        listing_len += (size_t)w;
    return 0;
}

static char *snapshot(void)
{
    listing_len = 0;
    listing[0] = '\0';
    cr_assert_eq(nftw(casedir, list_one, 16, FTW_PHYS), 0);
    return strdup(listing);
}

/* `lshlab ARGS` (split at spaces) run in casedir, without a shell: under
 * valgrind every shell would be one more process to trace. */
static int run(const char *args, char **out)
{
    const char *exe = getenv("LSHLAB_EXE");
    cr_assert_not_null(exe, "LSHLAB_EXE is not set (run through meson test)");
    char log[300], words[600];
    char *argv[32] = {(char *)exe};
    int argc = 1;
    snprintf(log, sizeof log, "%s.out", casedir);
    snprintf(words, sizeof words, "%s", args);
    for (char *w = strtok(words, " "); w && argc < 31; w = strtok(NULL, " "))
        argv[argc++] = w;
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_RDONLY);
        if (fd < 0 || null < 0 || chdir(casedir) != 0)
            _exit(99);
        dup2(null, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(exe, argv);
        _exit(98);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "lshlab %s did not exit normally (status %d)", args, st);
    FILE *f = fopen(log, "rb");
    cr_assert_not_null(f);
    *out = calloc(1, 65536);
    size_t len = fread(*out, 1, 65535, f);
    (*out)[len] = '\0';
    fclose(f);
    unlink(log);
    return WEXITSTATUS(st);
}

ParameterizedTestParameters(battery, bad_input)
{
    struct bcase *cases = cr_malloc(MAX_CASES * sizeof *cases);
    size_t n = list_cases(cases, MAX_CASES);
    return cr_make_param_array(struct bcase, cases, n, free_params);
}

ParameterizedTest(struct bcase *c, battery, bad_input, .init = make_casedir,
                  .fini = remove_casedir, .timeout = 120)
{
    char src[1200], yaml[128], path[512], args[600];
    snprintf(src, sizeof src, "%s/%s.yaml", battery_dir(), c->name);
    snprintf(yaml, sizeof yaml, "%s.yaml", c->name);
    struct header h;
    read_header(src, &h);

    snprintf(path, sizeof path, "%s/%s", casedir, yaml);
    copy_case(src, path);
    snprintf(path, sizeof path, "%s/data.h5", casedir);
    write_fixture(path);
    snprintf(path, sizeof path, "%s/not_hdf5.h5", casedir);
    write_text(path, "this is not an HDF5 file\n");
    snprintf(path, sizeof path, "%s/fortran.npy", casedir);
    FILE *npy = fopen(path, "wb");
    cr_assert_not_null(npy);
    const char *dict = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }";
    fprintf(npy, "\x93NUMPY%c%c%c%c%-117s\n", 1, 0, 118, 0, dict); /* 10 + 118 bytes */
    for (int t = 0; t < 32; t++)
        fputc(t < 24 ? 0 : 0x3f, npy);
    cr_assert_eq(fclose(npy), 0);
    snprintf(path, sizeof path, "%s/q.npy", casedir); /* the same in C order: valid */
    npy = fopen(path, "wb");
    cr_assert_not_null(npy);
    dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    fprintf(npy, "\x93NUMPY%c%c%c%c%-117s\n", 1, 0, 118, 0, dict);
    for (int t = 0; t < 32; t++)
        fputc(t < 24 ? 0 : 0x3f, npy);
    cr_assert_eq(fclose(npy), 0);
    snprintf(path, sizeof path, "%s/results", casedir);
    cr_assert_eq(mkdir(path, 0755), 0);
    for (int i = 0; i < h.n_setup; i++)
        if (apply_setup(h.setup[i]))
            cr_skip_test("%s: setup '%s' is not possible here (root without chattr)", c->name,
                         h.setup[i]);
    char *before = snapshot();

    char *out = NULL;
    snprintf(args, sizeof args, "run %s -q %s", yaml, h.args);
    int code = run(args, &out);
    cr_expect_eq(code, h.exit_code, "%s: lshlab %s exited %d, expected %d; it said:\n%s", c->name,
                 args, code, h.exit_code, out);
    for (int i = 0; i < h.n_expect; i++)
        cr_expect(strstr(out, h.expect[i]), "%s: the message lacks '%s'; it said:\n%s", c->name,
                  h.expect[i], out);
    if (strcmp(h.at, "none") != 0) {
        char where[200];
        snprintf(where, sizeof where, ": %s:%s: ", yaml, h.at);
        cr_expect(strstr(out, where), "%s: the message does not point at %s:%s; it said:\n%s",
                  c->name, yaml, h.at, out);
    }
    cr_expect(!strstr(out, "HDF5-DIAG"), "%s: HDF5's error stack leaked out:\n%s", c->name, out);
    char *after = snapshot();
    cr_expect_str_eq(after, before, "%s: files were created or changed:\nbefore:\n%s\nafter:\n%s",
                     c->name, before, after);
    free(after);
    free(out);

    /* under valgrind (LSHLAB_TEST_QUICK), `run` has covered the same code */
    const char *quick = getenv("LSHLAB_TEST_QUICK");
    if (quick && *quick) {
        free(before);
        return;
    }
    snprintf(args, sizeof args, "validate %s", yaml);
    code = run(args, &out);
    cr_expect_eq(code, h.validate_exit, "%s: lshlab %s exited %d, expected %d; it said:\n%s",
                 c->name, args, code, h.validate_exit, out);
    after = snapshot();
    cr_expect_str_eq(after, before, "%s: validate created or changed files", c->name);
    free(after);
    free(out);
    free(before);
}

/* The issue asks for at least 30 cases; make sure none went missing. */
Test(battery, has_at_least_30_cases)
{
    struct bcase *cases = calloc(MAX_CASES, sizeof *cases);
    size_t n = list_cases(cases, MAX_CASES);
    cr_expect_geq(n, 30, "only %zu cases in %s", n, battery_dir());
    free(cases);
}
