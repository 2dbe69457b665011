/* cli.c - the lshlab command: run, validate, strategies, show.  The only
 * place that talks to the user. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#include "collision.h"
#include "comm.h"
#include "config.h"
#include "host.h"
#include "linalg.h"
#include "parallel.h"
#include "plan.h"
#include "registry.h"
#include "results.h"
#include "results_schema.h"
#include "spread.h"
#include "sweep.h"
#include "version.h"

/* Exit codes (documented in --help and README.md). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,    /* I/O, data or memory failure during a run */
    EXIT_USAGE = 2,      /* bad command line */
    EXIT_CONFIG = 3,     /* invalid config or input; nothing was written */
    EXIT_EXISTS = 4,     /* results file exists: --force or --resume */
    EXIT_FAILED = 5,     /* the sweep finished but some points failed */
    EXIT_STOPPED = 130   /* SIGINT/SIGTERM/SIGHUP: stopped cleanly, --resume continues */
};

static const char *prog = "lshlab";

static const char main_usage[] =
    "usage: lshlab <command> [options]\n"
    "\n"
    "Measure how well hashing-based sparse attention (Reformer LSH and relatives)\n"
    "approximates full attention.\n"
    "\n"
    "commands:\n"
    "  run CONFIG          run the sweep a YAML config describes, write HDF5 results\n"
    "  validate CONFIG     check a config and say how many points it expands to\n"
    "  strategies          list the hashing strategies (plugins) found, which assign\n"
    "                      whole sets and which publish a collision law\n"
    "  show FILE           print the /runs table of a results file\n"
    "\n"
    "options:\n"
    "  -h, --help          this help; `lshlab <command> --help` for a command's\n"
    "  -V, --version       version, git revision and BLAS library\n"
    "\n"
    "exit codes: 0 ok, 1 runtime error, 2 usage, 3 invalid config or input,\n"
    "            4 results file exists, 5 some points failed, 130 stopped (resumable)\n"
    "environment: LSHLAB_STRATEGY_PATH  colon-separated folders searched for plugins first\n"
    "sweep keys: n_hashes n_buckets mode chunk_size look_back window combine\n"
    "            (union|rounds|importance) min_collisions sink local;\n"
    "attention keys: keys exclude_self causal scale topk oracle\n"
    "definitions of every hash rule, metric, seed and file field: docs/definitions.md\n";

/* s with control characters and bad UTF-8 written as \xHH, in buf (cut to
 * fit): values from the command line, a config or a file must not steer the
 * terminal. */
static const char *printable(const char *s, char *buf, size_t size)
{
    lsh_text_escape(buf, s, strnlen(s, (size - 1) / 4));
    return buf;
}

/* "lshlab: configuration error: file:line:column: message": the kind of
 * error (lsh_strerror) first, then where and why. */
static void print_error(const struct lsh_error *err)
{
    char buf[LSH_ERROR_MSG_MAX + LSH_ERROR_FILE_MAX + 64], safe[4 * sizeof buf + 1];
    lsh_error_format(err, buf, sizeof buf);
    fprintf(stderr, "%s: %s: %s\n", prog, err->code < 0 ? lsh_strerror(err->code) : "error",
            printable(buf, safe, sizeof safe));
}

static int exit_code_for(int code)
{
    switch (code) {
    case LSH_ECONFIG:
    case LSH_EDATA:
    case LSH_ENOTFOUND:
    case LSH_ERANGE:
        return EXIT_CONFIG;
    case LSH_EEXIST:
        return EXIT_EXISTS;
    case LSH_EINTR:
        return EXIT_STOPPED;
    case LSH_EPLUGIN: /* at run time: some work was done (load_and_plan maps its own) */
        return EXIT_RUNTIME;
    default:
        return EXIT_RUNTIME;
    }
}

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    char safe[4 * 256 + 1];
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg ? printable(arg, safe, sizeof safe) : arg);
    fprintf(stderr, "\n%s", usage);
    return EXIT_USAGE;
}

/* ---- a plugin that calls exit() ------------------------------------------------ */

/* A plugin runs inside lshlab: its exit() would end lshlab with the plugin's
 * status, often 0, and no word.  From the first plugin load until main
 * returns, an exit() is the plugin's: say so, and fail. */
static int plugins_live;
static const char *run_output; /* the results file a run is writing, else NULL */

static void on_plugin_exit(void)
{
    if (!plugins_live)
        return;
    char msg[2048];
    int len;
    if (run_output)
        len = snprintf(msg, sizeof msg, "%s: error: a strategy plugin called exit() during the "
                       "run; the results so far are kept in %s.partial (--resume continues "
                       "once the plugin is fixed)\n", prog, run_output);
    else
        len = snprintf(msg, sizeof msg, "%s: error: a strategy plugin called exit(); lshlab "
                       "stopped\n", prog);
    /* write(2), not stdio: the exit may come from a worker thread */
    ssize_t w = write(STDERR_FILENO, msg, len > 0 && (size_t)len < sizeof msg ? (size_t)len
                                                                              : strlen(msg));
    (void)w;
    _exit(EXIT_RUNTIME);
}

static int main_returns(int code)
{
    plugins_live = 0;
    lsh_comm_finalize();
    return code;
}

static struct lsh_registry *load_registry(void)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    plugins_live = 1;
    struct lsh_registry *reg = lsh_registry_alloc();
    if (!reg) {
        fprintf(stderr, "%s: error: out of memory\n", prog);
        return NULL;
    }
    if (lsh_registry_load_default(reg, &err)) {
        print_error(&err);
        lsh_registry_free(reg);
        return NULL;
    }
    return reg;
}

/* Load, validate and plan a config; prints the error itself. */
static int load_and_plan(const char *path, struct lsh_registry **reg, struct lsh_config **cfg,
                         struct lsh_plan **plan, struct lsh_collision_plan **cplan)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    *reg = load_registry();
    if (!*reg)
        return EXIT_RUNTIME;
    int rc = lsh_config_load(path, *reg, cfg, &err);
    if (!rc && (*cfg)->experiment == LSH_EXPERIMENT_SWEEP)
        rc = lsh_plan_build(*cfg, plan, &err);
    else if (!rc)
        rc = lsh_collision_plan_build(*cfg, cplan, &err);
    if (rc) {
        print_error(&err);
        return exit_code_for(rc) == EXIT_RUNTIME && rc != LSH_ENOMEM ? EXIT_CONFIG
                                                                    : exit_code_for(rc);
    }
    /* K is read (and checked) with any keys setting, but only separate keys
     * use it: say so, rather than let a study of K = Q pass for one of K */
    for (size_t i = 0; (*cfg)->attention.keys != LSH_KEYS_SEPARATE && i < (*cfg)->n_datasets; i++) {
        const struct lsh_dataset_spec *ds = &(*cfg)->datasets[i];
        if (ds->k && (ds->kind == LSH_DATA_HDF5 || ds->kind == LSH_DATA_NPY))
            fprintf(stderr, "lshlab: warning: %s:%d:%d: dataset '%s' gives k, which attention.keys "
                    "%s does not use (K is Q); set keys: separate to use it\n", path, ds->line,
                    ds->column, ds->name, lsh_keys_name((*cfg)->attention.keys));
    }
    return EXIT_OK;
}

/* ---- progress ------------------------------------------------------------------ */

struct progress {
    int tty, quiet;
    size_t first_done;          /* points done before this run's first one */
    int started;
    size_t shown;               /* rows kept for the summary table */
    size_t cap;
    struct table_row *rows;
    size_t n_topk;
    unsigned warned;            /* LSH_WARN_* bits already reported */
    char reason[LSH_ERROR_MSG_MAX]; /* the last skipped or failed point's message */
};

struct table_row {
    char dataset[LSH_RUNS_NAME_LEN];
    int32_t layer, head; /* -1: the data has no such axis */
    char strategy[48], params[64], mode[40], combine[12];
    unsigned h, b, rep;
    char status[8];
    double out, attn, mass, gram, dens;
};

static void fmt_duration(double s, char *buf, size_t size)
{
    if (s < 60)
        snprintf(buf, size, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static const char *status_name(enum lsh_point_status s)
{
    return s == LSH_POINT_OK ? "ok" : s == LSH_POINT_SKIPPED ? "skipped" : "failed";
}


static void keep_row(struct progress *pg, const struct lsh_run_row *row)
{
    if (pg->shown == pg->cap) {
        size_t cap = pg->cap ? 2 * pg->cap : 64;
        struct table_row *t = realloc(pg->rows, cap * sizeof *t);
        if (!t)
            return;
        pg->rows = t;
        pg->cap = cap;
    }
    struct table_row *t = &pg->rows[pg->shown++];
    const struct lsh_point_key *k = &row->key;
    snprintf(t->dataset, sizeof t->dataset, "%s", k->dataset);
    t->layer = k->layer;
    t->head = k->head;
    snprintf(t->strategy, sizeof t->strategy, "%s", k->strategy);
    snprintf(t->params, sizeof t->params, "%s", k->params);
    if (k->mode == LSH_MODE_BUCKET)
        snprintf(t->mode, sizeof t->mode, "bucket");
    else
        snprintf(t->mode, sizeof t->mode, "c%u/lb%u%s", k->chunk_size, k->look_back,
                 k->window == LSH_WINDOW_SAME_BUCKET ? "/sb" : "");
    /* the candidate rule (SPEC 13), when not the plain union of rounds */
    if (k->min_collisions != 1 || k->sink || k->local) {
        const size_t len = strlen(t->mode);
        snprintf(t->mode + len, sizeof t->mode - len, " t%u/s%u/w%u", k->min_collisions,
                 k->sink, k->local);
    }
    snprintf(t->combine, sizeof t->combine, "%s", lsh_combine_name(k->combine));
    snprintf(t->status, sizeof t->status, "%s", status_name(row->status));
    t->h = k->n_hashes;
    t->b = k->n_buckets;
    t->rep = k->repeat;
    t->out = row->metrics.out_rel_err;
    t->attn = row->metrics.attn_rel_err;
    t->mass = row->metrics.mass_recall;
    t->gram = row->metrics.gram_recovery;
    t->dens = row->metrics.density;
}

/* A 0/0 ratio is written as 0 (definitions: metrics); say so once per kind. */
static void warn_zero_ratios(struct progress *pg, const struct lsh_run_row *r)
{
    static const struct {
        unsigned bit;
        const char *what;
    } warn[] = {
        {LSH_WARN_OUT_ZERO, "||O||_F is 0, so out_rel_err (0/0) is written as 0"},
        {LSH_WARN_ATTN_ZERO, "||A||_F is 0, so attn_rel_err (0/0) is written as 0"},
        {LSH_WARN_GRAM_ZERO, "there is no off-diagonal Gram energy, so gram_recovery (0/0) is "
                             "written as 0"},
        {LSH_WARN_ENTROPY_B1, "n_buckets is 1, so bucket_entropy (0/0) is written as 0"},
    };
    for (size_t i = 0; i < sizeof warn / sizeof warn[0]; i++)
        if ((r->metrics.warnings & warn[i].bit) && !(pg->warned & warn[i].bit)) {
            pg->warned |= warn[i].bit;
            fprintf(stderr, "%swarning: dataset '%s': %s\n", pg->tty ? "\r\033[K" : "",
                    r->key.dataset, warn[i].what);
        }
}

/* " layer 1 head 3", " head 3", " layer 1" or "": the unit of a dataset with
 * axes, in words (an "H3" would read like the n_hashes H=1 beside it). */
static void unit_suffix(int32_t layer, int32_t head, char *buf, size_t size)
{
    int n = 0;
    buf[0] = '\0';
    if (layer >= 0)
        n = snprintf(buf, size, " layer %d", (int)layer);
    if (head >= 0 && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " head %d", (int)head);
}

/* " (layer 1, head 3)", " (head 3)", " (layer 1)" or "", as in messages. */
static void unit_paren(int32_t layer, int32_t head, char *buf, size_t size)
{
    if (layer >= 0 && head >= 0)
        snprintf(buf, size, " (layer %d, head %d)", (int)layer, (int)head);
    else if (layer >= 0)
        snprintf(buf, size, " (layer %d)", (int)layer);
    else if (head >= 0)
        snprintf(buf, size, " (head %d)", (int)head);
    else
        buf[0] = '\0';
}

static void on_progress(void *ctx, const struct lsh_progress *p)
{
    struct progress *pg = ctx;
    if (p->row)
        keep_row(pg, p->row);
    if (pg->quiet)
        return;
    char el[32], eta[32] = "?";
    fmt_duration(p->elapsed, el, sizeof el);
    char unit[64];
    unit_suffix(p->row ? p->row->key.layer : p->layer, p->row ? p->row->key.head : p->head, unit,
                sizeof unit);
    if (!strcmp(p->stage, "reference")) {
        unit_paren(p->layer, p->head, unit, sizeof unit);
        fprintf(stderr, "%s[%s] reference for dataset '%s'%s: %.2fs (%.1f GFLOP/s), %s\n",
                pg->tty ? "\r\033[K" : "", el, p->dataset, unit, p->seconds, p->gflops,
                p->note ? p->note : "");
        return;
    }
    if (!strcmp(p->stage, "resume-skip")) {
        fprintf(stderr, "resuming: %zu of %zu points already in the file\n", p->done, p->total);
        return;
    }
    if (!strcmp(p->stage, "oracle")) {
        unit_paren(p->layer, p->head, unit, sizeof unit);
        fprintf(stderr, "%s[%s] dataset '%s'%s: %s\n", pg->tty ? "\r\033[K" : "", el,
                p->dataset, unit, p->note ? p->note : "");
        return;
    }
    if (!p->row)
        return;
    if (p->row->status == LSH_POINT_OK)
        warn_zero_ratios(pg, p->row);
    if (!pg->started) { /* ETA from the rate of this run only, not resumed points */
        pg->first_done = p->done - 1;
        pg->started = 1;
    }
    size_t ran = p->done - pg->first_done;
    if (ran > 0 && p->done < p->total)
        fmt_duration(p->elapsed / (double)ran * (double)(p->total - p->done), eta, sizeof eta);
    else if (p->done >= p->total)
        snprintf(eta, sizeof eta, "0s");
    const struct lsh_run_row *r = p->row;
    const struct lsh_point_key *k = &r->key;
    /* A unit that fails fails all its points with one message: give it once. */
    const int new_reason = r->status != LSH_POINT_OK &&
                           strncmp(r->message, pg->reason, sizeof pg->reason - 1) != 0;
    if (r->status != LSH_POINT_OK)
        snprintf(pg->reason, sizeof pg->reason, "%s", r->message);
    if (pg->tty) {
        if (new_reason) /* a line that stays above the live one */
            fprintf(stderr, "\r\033[Kpoint %llu %s%s %s: %s: %s\n",
                    (unsigned long long)k->point_id, k->dataset, unit, k->strategy,
                    status_name(r->status), r->message);
        fprintf(stderr, "\r\033[K[%zu/%zu %3.0f%%] %s%s %s H=%u B=%u  elapsed %s  ETA %s",
                p->done, p->total, 100.0 * (double)p->done / (double)p->total, k->dataset, unit,
                k->strategy, k->n_hashes, k->n_buckets, el, eta);
        if (p->done >= p->total)
            fputc('\n', stderr);
    } else {
        char rule[48] = ""; /* the candidate rule, when not the union of rounds */
        if (k->min_collisions != 1 || k->sink || k->local)
            snprintf(rule, sizeof rule, " t=%u s=%u w=%u", k->min_collisions, k->sink, k->local);
        fprintf(stderr,
                "[%zu/%zu] point %llu %s%s %s%s%s H=%u B=%u rep=%u %s%s %s: %s",
                p->done, p->total, (unsigned long long)k->point_id, k->dataset, unit, k->strategy,
                k->params[0] ? " " : "", k->params, k->n_hashes, k->n_buckets, k->repeat,
                lsh_mode_name(k->mode), rule, lsh_combine_name(k->combine),
                status_name(r->status));
        /* a skipped or failed point has no metrics: its zeros are not shown */
        if (r->status == LSH_POINT_OK)
            fprintf(stderr, " out_rel_err=%.4g density=%.4g (%.3fs) ETA %s", r->metrics.out_rel_err,
                    r->metrics.density, r->metrics.hash_seconds + r->metrics.eval_seconds, eta);
        fputc('\n', stderr);
        if (r->status != LSH_POINT_OK)
            fprintf(stderr, "    %s\n", new_reason ? r->message : "(the same reason)");
    }
    fflush(stderr);
}

static void print_table(const struct progress *pg, const char *output)
{
    const size_t limit = 60;
    if (pg->shown == 0)
        return;
    int units = 0; /* columns for the layer and head when the data has them */
    int datasets = 0; /* and one for the dataset when there are several */
    size_t width = strlen("dataset");
    for (size_t t = 0; t < pg->shown; t++) {
        const size_t len = strlen(pg->rows[t].dataset);
        width = len > width ? len : width;
        datasets |= strcmp(pg->rows[t].dataset, pg->rows[0].dataset) != 0;
        units |= t < limit && (pg->rows[t].layer >= 0 || pg->rows[t].head >= 0);
    }
    if (datasets)
        printf("%-*s ", (int)width, "dataset");
    if (units)
        printf("layer head ");
    int mw = 12, cw = 6; /* the mode (with a candidate rule) and combine columns fit all */
    for (size_t t = 0; t < pg->shown && t < limit; t++) {
        const int m = (int)strlen(pg->rows[t].mode), c = (int)strlen(pg->rows[t].combine);
        mw = m > mw ? m : mw;
        cw = c > cw ? c : cw;
    }
    printf("%-10s %-28s %3s %4s %3s %-*s %-*s %-7s %10s %10s %10s %10s %10s\n", "strategy",
           "params", "H", "B", "rep", mw, "mode", cw, "comb", "status", "out_err", "attn_err",
           "mass", "gram", "density");
    for (size_t t = 0; t < pg->shown && t < limit; t++) {
        const struct table_row *r = &pg->rows[t];
        if (datasets)
            printf("%-*s ", (int)width, r->dataset);
        for (int a = 0; units && a < 2; a++) {
            const int32_t v = a ? r->head : r->layer;
            if (v >= 0)
                printf("%*d ", a ? 4 : 5, (int)v);
            else
                printf("%*s ", a ? 4 : 5, "-");
        }
        printf("%-10s %-28s %3u %4u %3u %-*s %-*s %-7s", r->strategy,
               r->params[0] ? r->params : "-", r->h, r->b, r->rep, mw, r->mode, cw, r->combine,
               r->status);
        if (!strcmp(r->status, "ok")) /* the others have no metrics, not zeros */
            printf(" %10.4g %10.4g %10.4g %10.4g %10.4g\n", r->out, r->attn, r->mass, r->gram,
                   r->dens);
        else
            printf(" %10s %10s %10s %10s %10s\n", "-", "-", "-", "-", "-");
    }
    if (pg->shown > limit)
        printf("... %zu more rows: lshlab show %s\n", pg->shown - limit, output);
}

/* ---- signals ---------------------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

/* The first Ctrl-C (or SIGTERM, SIGHUP) asks the run to stop after the current
 * point; the second ends the process at once, by the signal's default
 * action (the signal is blocked in here: it is delivered when we return).
 * The crash-safe results file keeps every point saved so far. */
static void on_signal(int sig)
{
    static const char first[] = "\nlshlab: stopping after the current point "
                                "(Ctrl-C again to abort now)\n";
    static const char again[] = "\nlshlab: aborting now, without finishing the current "
                                "point; `lshlab run ... --resume` continues from the last "
                                "saved point\n";
    const int second = stop_flag != 0;
    stop_flag = 1;
    ssize_t w = second ? write(STDERR_FILENO, again, sizeof again - 1)
                       : write(STDERR_FILENO, first, sizeof first - 1);
    (void)w;
    if (second) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a closed terminal (SIGHUP) stops the run the same way, unless the run
     * was started to outlive it (nohup: SIGHUP ignored) */
    struct sigaction hup;
    if (sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler != SIG_IGN)
        sigaction(SIGHUP, &sa, NULL);
}

/* ---- commands --------------------------------------------------------------------- */

static char *join_argv(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = calloc(len, 1);
    for (int i = 0; s && i < argc; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static const char run_usage[] =
    "usage: lshlab run CONFIG [-o FILE] [-j N] [--memory-limit SIZE] [--resume | --force]\n"
    "                  [--quiet]\n"
    "       mpirun -np RANKS lshlab run CONFIG [options]   (a build with MPI)\n"
    "\n"
    "Run every point of the sweep CONFIG describes and write the results (HDF5).\n"
    "A collision experiment (docs/definitions.md) writes its /collision rows the same way.\n"
    "The file is written through a working copy FILE.work, snapshotted as\n"
    "FILE.partial after finished points (what --resume continues), and renamed to\n"
    "FILE when the sweep ends; an existing FILE is never overwritten unless --force\n"
    "is given.\n"
    "\n"
    "  -o, --output FILE   results file (default: the config's output:, else\n"
    "                      results/<name>.h5)\n"
    "  -j, --jobs N        threads (default: all CPUs; under mpirun, per rank);\n"
    "                      results are bit-identical for every N and every number\n"
    "                      of MPI ranks\n"
    "  -m, --memory-limit SIZE  memory lshlab may plan for, e.g. 1G, 512M, 1.5GiB (default:\n"
    "                      half the physical memory).  A dataset's score cache is kept\n"
    "                      when it fits, else scores are recomputed (streaming); a\n"
    "                      dataset that cannot fit at all is an error before any work\n"
    "      --resume        continue an interrupted or finished file: skip the points\n"
    "                      already in /runs (the config must be the same)\n"
    "      --force         replace an existing results file when the run completes\n"
    "  -q, --quiet         no progress on stderr, no table on stdout\n"
    "  -h, --help          this help\n"
    "\n"
    "Progress goes to stderr (a live line with ETA on a terminal, else one line per\n"
    "point); a short table of the points goes to stdout at the end.\n"
    "Ctrl-C stops after the current point; `--resume` continues later.\n"
    "Under mpirun, work spreads over the ranks (`lshlab validate CONFIG --ranks N`\n"
    "shows how); rank 0 alone writes FILE and prints progress; a killed rank ends\n"
    "the run with FILE.partial kept, and --resume continues under any number of ranks.\n"
    "exit codes: 0 ok, 1 runtime error, 2 usage, 3 invalid config or input,\n"
    "            4 results file exists, 5 some points failed, 130 stopped\n";

/* The --memory-limit bounds: below 1 MiB nothing runs; above 2^60 bytes
 * is no machine's memory, and every sum of planned sizes stays far from
 * overflowing. */
#define MEMORY_LIMIT_MIN ((size_t)1 << 20)
#define MEMORY_LIMIT_MAX ((uint64_t)1 << 60)

/* "1G", "512M", "1.5GiB", "2048K" or plain bytes (binary units): decimal
 * digits with an optional fraction, then an optional unit.  No sign, no
 * exponent, no hex, no inf or nan (strtod would take all of them). */
static int parse_bytes(const char *s, size_t *out)
{
    const char *p = s;
    uint64_t whole = 0;
    double frac = 0, scale = 1;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (whole > (MEMORY_LIMIT_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            frac += (*p - '0') * (scale /= 10);
    if (!digits)
        return -1;
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && *p == 'i')
        p++;
    if (*p == 'B' || *p == 'b')
        p++;
    if (*p || whole > MEMORY_LIMIT_MAX >> shift)
        return -1;
    /* the whole part exactly (a double would round 2^60 - 6 to 2^60), the
     * fraction's bytes below 2^40 added, rounded down */
    const uint64_t bytes =
        (whole << shift) + (uint64_t)(frac * (double)((uint64_t)1 << shift));
    if (bytes < MEMORY_LIMIT_MIN || bytes > MEMORY_LIMIT_MAX || bytes > SIZE_MAX)
        return -1;
    *out = (size_t)bytes;
    return 0;
}

/* Default memory limit: half of the physical memory. */
static size_t default_memory_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return (size_t)4 << 30;
    return (size_t)pages * (size_t)page / 2;
}

static int check_memory(const struct lsh_config *cfg, const struct lsh_plan *plan,
                        unsigned threads, size_t limit)
{
    struct lsh_error err;
    lsh_error_clear(&err);
    if (plan ? lsh_plan_check_memory(cfg, plan, threads, limit, &err)
             : lsh_plan_check_collision_memory(cfg, threads, limit, &err)) {
        print_error(&err);
        return EXIT_CONFIG;
    }
    return EXIT_OK;
}

static int parse_jobs(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 1024)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* ---- the collision experiment (SPEC 8) ------------------------------------------- */

struct run_args {
    const char *path, *output;
    unsigned jobs;
    int resume, force, quiet;
    int argc;
    char **argv;
};

struct col_progress {
    int tty, quiet, started;
    size_t first_done;
    size_t shown, cap;
    struct lsh_collision_row *rows;  /* kept for the table; strings point into the config */
};

static void on_collision_progress(void *ctx, const struct lsh_collision_progress *p)
{
    struct col_progress *pg = ctx;
    if (p->row && pg->shown < 60) {
        if (pg->shown == pg->cap) {
            size_t cap = pg->cap ? 2 * pg->cap : 64;
            struct lsh_collision_row *t = realloc(pg->rows, cap * sizeof *t);
            if (t) {
                pg->rows = t;
                pg->cap = cap;
            }
        }
        if (pg->shown < pg->cap)
            pg->rows[pg->shown++] = *p->row;
    }
    if (pg->quiet)
        return;
    char el[32], eta[32] = "?";
    fmt_duration(p->elapsed, el, sizeof el);
    if (!strcmp(p->stage, "skip")) {
        fprintf(stderr, "skipped: %s\n", p->message);
        return;
    }
    if (!strcmp(p->stage, "resume-skip")) {
        fprintf(stderr, "resuming: %zu of %zu rows already in the file\n", p->done, p->total);
        return;
    }
    if (!strcmp(p->stage, "pairs")) {
        if (!pg->tty)
            fprintf(stderr, "[%s] angle %g: pairs drawn (%.2fs)\n", el, p->angle, p->seconds);
        return;
    }
    if (!p->row)
        return;
    if (!pg->started) {
        pg->first_done = p->done - 1;
        pg->started = 1;
    }
    size_t ran = p->done - pg->first_done;
    if (ran > 0 && p->done < p->total)
        fmt_duration(p->elapsed / (double)ran * (double)(p->total - p->done), eta, sizeof eta);
    else if (p->done >= p->total)
        snprintf(eta, sizeof eta, "0s");
    const struct lsh_collision_row *r = p->row;
    if (pg->tty) {
        fprintf(stderr, "\r\033[K[%zu/%zu %3.0f%%] angle %g %s B=%u H=%u  elapsed %s  ETA %s",
                p->done, p->total, 100.0 * (double)p->done / (double)p->total, r->angle,
                r->strategy, r->n_buckets, r->n_hashes, el, eta);
        if (p->done >= p->total)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "[%zu/%zu] angle %g %s%s%s B=%u H=%u: p_round=%.4g+-%.2g "
                        "p_any=%.4g+-%.2g (%.3fs) ETA %s\n",
                p->done, p->total, r->angle, r->strategy, r->params[0] ? " " : "", r->params,
                r->n_buckets, r->n_hashes, r->p_round, r->p_round_se, r->p_any, r->p_any_se,
                r->seconds, eta);
    }
    fflush(stderr);
}

static int run_collision(const struct run_args *a, const struct lsh_config *cfg,
                         const struct lsh_collision_plan *plan)
{
    struct col_progress pg = {.tty = isatty(STDERR_FILENO), .quiet = a->quiet};
    char *cmdline = join_argv(a->argc + 1, a->argv - 1);
    catch_stop_signals();

    const char *out_path = a->output ? a->output : cfg->output;
    struct lsh_collision_opts ro = {
        .threads = a->jobs,
        .mode = a->resume ? LSH_RESULTS_RESUME : a->force ? LSH_RESULTS_FORCE : LSH_RESULTS_CREATE,
        .output = out_path, .cmdline = cmdline ? cmdline : "lshlab run", .stop = &stop_flag,
        .progress = on_collision_progress, .progress_ctx = &pg,
    };
    if (!a->quiet)
        fprintf(stderr, "lshlab %s: %s: collision experiment, %zu rows (%zu angles, %zu pairs, "
                        "d = %zu) on %u thread%s -> %s\n",
                LSHLAB_VERSION, cfg->name, plan->n_rows, cfg->collision.n_angles,
                cfg->collision.pairs, cfg->collision.d, a->jobs, a->jobs == 1 ? "" : "s",
                out_path);
    struct lsh_collision_summary sum;
    struct lsh_error err;
    lsh_error_clear(&err);
    memset(&sum, 0, sizeof sum);
    run_output = out_path;
    int code, rc = lsh_collision_run(cfg, plan, &ro, &sum, &err);
    if (rc == LSH_EINTR) {
        fprintf(stderr, "%s: stopped after %zu of %zu rows; the results so far are in %s.partial\n"
                        "continue with: lshlab run %s --resume%s%s\n",
                prog, sum.written + sum.resumed, sum.rows, out_path, a->path,
                a->output ? " -o " : "", a->output ? a->output : "");
        code = EXIT_STOPPED;
    } else if (rc) {
        print_error(&err);
        code = exit_code_for(rc);
    } else {
        if (!a->quiet && pg.shown) {
            printf("%-10s %-28s %4s %3s %6s %9s %9s %9s %9s\n", "strategy", "params", "B", "H",
                   "angle", "p_round", "se", "p_any", "se");
            for (size_t t = 0; t < pg.shown; t++) {
                const struct lsh_collision_row *r = &pg.rows[t];
                printf("%-10s %-28s %4u %3u %6g %9.4g %9.2g %9.4g %9.2g\n", r->strategy,
                       r->params[0] ? r->params : "-", r->n_buckets, r->n_hashes, r->angle,
                       r->p_round, r->p_round_se, r->p_any, r->p_any_se);
            }
            if (sum.written > pg.shown)
                printf("... %zu more rows: lshlab show %s\n", sum.written - pg.shown, out_path);
        }
        if (!a->quiet) {
            char el[32];
            fmt_duration(sum.seconds, el, sizeof el);
            printf("%zu rows: %zu written, %zu resumed; %zu point%s skipped; %s -> %s\n", sum.rows,
                   sum.written, sum.resumed, sum.skipped_points,
                   sum.skipped_points == 1 ? "" : "s", el, out_path);
        }
        code = EXIT_OK;
    }
    free(pg.rows);
    free(cmdline);
    return code;
}

/* Under mpirun every rank loads the config, data and plugins itself: the
 * run starts only when all did, to the same plan (a rank that stopped alone
 * would leave the others waiting for it forever).  The worst exit code. */
static int ranks_agree(int code, const struct lsh_plan *plan,
                       const struct lsh_collision_plan *cplan)
{
    const uint64_t points = plan ? plan->n_points : cplan ? cplan->n_rows : 0;
    const uint64_t groups = plan ? plan->n_groups : 0;
    uint64_t v[5] = {(uint64_t)code, points, ~points, groups, ~groups};
    struct lsh_error e;
    lsh_error_clear(&e);
    if (lsh_comm_max_u64(v, 5, &e)) {
        print_error(&e);
        return EXIT_RUNTIME;
    }
    if (v[0] != EXIT_OK) {
        if (code == EXIT_OK && lsh_comm_rank() == 0)
            fprintf(stderr, "%s: error: another rank could not start the run (its message "
                            "above says why); every rank needs the config, its data and the "
                            "strategy plugins\n", prog);
        return code != EXIT_OK ? code : (int)v[0];
    }
    if (v[1] != ~v[2] || v[3] != ~v[4]) {
        if (lsh_comm_rank() == 0)
            fprintf(stderr, "%s: error: the ranks planned different runs (%llu to %llu "
                            "points, %llu to %llu hash groups); every rank needs the same "
                            "config, data and strategy plugins\n", prog,
                    (unsigned long long)~v[2], (unsigned long long)v[1],
                    (unsigned long long)~v[4], (unsigned long long)v[3]);
        return EXIT_CONFIG;
    }
    return EXIT_OK;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"jobs", required_argument, 0, 'j'},
        {"memory-limit", required_argument, 0, 'm'},
        {"resume", no_argument, 0, 'R'},       {"force", no_argument, 0, 'F'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *output = NULL;
    unsigned jobs = lsh_cpu_count();
    size_t memory_limit = default_memory_limit();
    int resume = 0, force = 0, quiet = 0, c;
    while ((c = getopt_long(argc, argv, "o:j:m:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'm':
            if (parse_bytes(optarg, &memory_limit))
                return usage_error(run_usage,
                                   "--memory-limit needs a size of at least 1M and at most "
                                   "2^60 bytes, like 512M, 4G or 1.5GiB, got '%s'", optarg);
            break;
        case 'j':
            if (parse_jobs(optarg, &jobs))
                return usage_error(run_usage, "-j needs a whole number from 1 to 1024, got '%s'",
                                   optarg);
            break;
        case 'R':
            resume = 1;
            break;
        case 'F':
            force = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            fputs(run_usage, stdout);
            return EXIT_OK;
        default:
            fputs(run_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage_error(run_usage, "run needs exactly one CONFIG file%s",
                           optind < argc - 1 ? " (extra arguments given)" : "");
    if (resume && force)
        return usage_error(run_usage, "%s", "--resume and --force exclude each other");
    const char *path = argv[optind];

    struct lsh_registry *reg = NULL;
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    struct lsh_collision_plan *cplan = NULL;
    int code = load_and_plan(path, &reg, &cfg, &plan, &cplan);
    if (code == EXIT_OK)
        code = check_memory(cfg, plan, jobs, memory_limit);
    if (lsh_comm_size() > 1)
        code = ranks_agree(code, plan, cplan);
    if (code == EXIT_OK && cplan && lsh_comm_rank() != 0) {
        /* a collision experiment is not spread: rank 0 runs it alone */
    } else if (code == EXIT_OK && cplan) {
        if (lsh_comm_size() > 1)
            fprintf(stderr, "%s: a collision experiment runs on rank 0 alone\n", prog);
        struct run_args ra = {path, output, jobs, resume, force, quiet, argc, argv};
        code = run_collision(&ra, cfg, cplan);
    }
    if (code != EXIT_OK || cplan) {
        lsh_collision_plan_free(cplan);
        lsh_plan_free(plan);
        lsh_config_free(cfg);
        lsh_registry_free(reg);
        return code;
    }

    /* Under mpirun rank 0 speaks for the run: the others print nothing and
     * keep the default signal actions (mpirun ends them). */
    const unsigned rank = lsh_comm_rank(), ranks = lsh_comm_size();
    if (rank != 0)
        quiet = 1;
    struct progress pg = {.tty = isatty(STDERR_FILENO), .quiet = quiet};
    char *cmdline = join_argv(argc + 1, argv - 1);
    if (rank == 0)
        catch_stop_signals();

    const char *out_path = output ? output : cfg->output;
    struct lsh_run_opts ro = {
        .threads = jobs,
        .memory_limit = memory_limit,
        .mode = resume ? LSH_RESULTS_RESUME : force ? LSH_RESULTS_FORCE : LSH_RESULTS_CREATE,
        .output = out_path, .cmdline = cmdline ? cmdline : "lshlab run",
        .stop = rank == 0 ? &stop_flag : NULL,
        .progress = rank == 0 ? on_progress : NULL, .progress_ctx = &pg,
    };
    size_t problems = 0;
    for (size_t k = 0; plan && k < plan->n_datasets; k++)
        problems += lsh_plan_units(plan, k);
    if (!quiet)
        fprintf(stderr, "lshlab %s: %s: %zu points (%zu attention problem%s, %zu hash groups) "
                "on %u thread%s%s%.0u%s -> %s\n", LSHLAB_VERSION, cfg->name, plan->n_points,
                problems, problems == 1 ? "" : "s", plan->n_groups, jobs, jobs == 1 ? "" : "s",
                ranks > 1 ? " x " : "", ranks > 1 ? ranks : 0u, ranks > 1 ? " MPI ranks" : "",
                out_path);
    struct lsh_run_summary sum;
    struct lsh_error err;
    lsh_error_clear(&err);
    memset(&sum, 0, sizeof sum);
    run_output = out_path;
    int rc = lsh_sweep_run(cfg, plan, &ro, &sum, &err);
    if (rank != 0) { /* rank 0 reports, and ends the run when it stops early */
        /* A failure every rank met at once is rank 0's to report and to exit
         * with: a code here would have mpirun end rank 0 as it reports. */
        code = rc && !sum.in_step ? exit_code_for(rc) : EXIT_OK;
    } else if (rc == LSH_EINTR) {
        fprintf(stderr, "%s: stopped after %zu of %zu points; the results so far are in %s.partial\n"
                        "continue with: lshlab run %s --resume%s%s\n",
                prog, sum.ok + sum.skipped + sum.failed + sum.resumed, sum.points, out_path, path,
                output ? " -o " : "", output ? output : "");
        code = EXIT_STOPPED;
    } else if (rc) {
        print_error(&err);
        code = exit_code_for(rc);
    } else {
        if (!quiet) {
            print_table(&pg, out_path);
            char el[32];
            fmt_duration(sum.seconds, el, sizeof el);
            printf("%zu points: %zu ok, %zu skipped, %zu failed%s%zu resumed; %s -> %s\n",
                   sum.points, sum.ok, sum.skipped, sum.failed, ", ", sum.resumed, el, out_path);
            const struct lsh_run_times *t = &sum.times;
            printf("time: data %.2f s, reference %.2f s, hashing %.2f s, evaluation %.2f s",
                   t->data, t->reference, t->hashing, t->evaluation);
            if (cfg->attention.oracle) /* a part of evaluation */
                printf(" (oracle %.2f s)", t->oracle);
            printf(", writing %.2f s, other %.2f s%s", t->writing, t->other,
                   ranks > 1 ? " (rank 0's; it also writes every rank's rows)" : "");
            if (sum.side_groups) /* their phases overlap: scaled to the elapsed time */
                printf(" (%zu hash groups side by side)", sum.side_groups);
            printf("\n");
            /* CPU seconds of all threads by phase: what -j threads x the
             * elapsed time leaves is the time they sat idle */
            const struct lsh_run_phases *c = &t->cpu;
            const double busy = c->data + c->reference + c->hashing + c->evaluation +
                                c->writing + c->other,
                         room = (double)jobs * sum.seconds;
            printf("cpu: %.2f s of %u thread%s x %.2f s (%.0f%% busy): data %.2f s, reference "
                   "%.2f s, hashing %.2f s, evaluation %.2f s, writing %.2f s, other %.2f s\n",
                   busy, jobs, jobs == 1 ? "" : "s", sum.seconds,
                   room > 0 ? 100.0 * busy / room : 0.0, c->data, c->reference, c->hashing,
                   c->evaluation, c->writing, c->other);
        }
        code = sum.failed ? EXIT_FAILED : EXIT_OK;
        if (sum.failed)
            fprintf(stderr, "%s: %zu points failed (status 'failed' in /runs; see its message "
                            "column)\n", prog, sum.failed);
    }
    /* Rank 0 stopped early (the file is closed): the other ranks may be
     * anywhere in their work, so end them all now.  Not when they stopped
     * with it: Debian's mpirun (Open MPI 4.1, PMIx) itself crashes, now and
     * then, as it handles an MPI_Abort. */
    if (rank == 0 && ranks > 1 && rc && !sum.in_step) {
        fflush(stdout);
        fflush(stderr);
        lsh_comm_abort(code);
    }
    free(pg.rows);
    free(cmdline);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    lsh_registry_free(reg);
    return code;
}

/* One line per dataset: its (layer, head) problems, their shape and its
 * points, e.g. "  dataset 'm': 2 layers x 4 heads = 8 problems (n = 1024,
 * d = 32, d_v = 32), 384 points". */
static void print_problems(const struct lsh_config *cfg, const struct lsh_plan *plan)
{
    for (size_t k = 0; k < plan->n_datasets; k++) {
        const struct lsh_dataset_layout *l = &plan->shapes[k];
        const size_t units = lsh_plan_units(plan, k);
        const int has_layer = l->n_layers > 0 && l->layers[0] >= 0;
        const int has_head = l->n_heads > 0 && l->heads[0] >= 0;
        size_t points = 0;
        for (size_t p = 0; p < plan->n_points; p++)
            points += plan->groups[plan->passes[plan->points[p].pass].group].dataset == k;
        char axes[96] = "";
        if (has_layer && has_head)
            snprintf(axes, sizeof axes, "%zu layer%s x %zu head%s = ", l->n_layers,
                     l->n_layers == 1 ? "" : "s", l->n_heads, l->n_heads == 1 ? "" : "s");
        else if (has_layer)
            snprintf(axes, sizeof axes, "%zu layer%s = ", l->n_layers, l->n_layers == 1 ? "" : "s");
        else if (has_head)
            snprintf(axes, sizeof axes, "%zu head%s = ", l->n_heads, l->n_heads == 1 ? "" : "s");
        char kv[112] = "";
        if (has_head && l->kv_heads > 0 && l->kv_heads < l->src_heads)
            snprintf(kv, sizeof kv, ", %zu key/value heads for %zu query heads", l->kv_heads,
                     l->src_heads);
        printf("  dataset '%s': %s%zu problem%s (n = %zu, d = %zu, d_v = %zu%s), %zu point%s\n",
               cfg->datasets[k].name, axes, units, units == 1 ? "" : "s", l->n, l->d, l->d_v,
               kv, points, points == 1 ? "" : "s");
    }
}

static const char validate_usage[] =
    "usage: lshlab validate CONFIG [--ranks N]\n"
    "\n"
    "Check CONFIG as `run` would (types, ranges, strategy constraints, data files)\n"
    "without running anything, and say how many points it expands to.\n"
    "  -r, --ranks N   also say how `mpirun -np N lshlab run CONFIG` would spread the\n"
    "                  work over N ranks (default under mpirun: its number of ranks)\n"
    "  -h, --help      this help\n"
    "exit codes: 0 valid, 2 usage, 3 invalid (the message says where and why)\n";

static int cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ranks", required_argument, 0, 'r'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    unsigned ranks = lsh_comm_size() > 1 ? lsh_comm_size() : 0;
    while ((c = getopt_long(argc, argv, "r:h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(validate_usage, stdout);
            return EXIT_OK;
        }
        if (c == 'r') {
            if (parse_jobs(optarg, &ranks))
                return usage_error(validate_usage,
                                   "--ranks needs a whole number from 1 to 1024, got '%s'",
                                   optarg);
            continue;
        }
        fputs(validate_usage, stderr);
        return EXIT_USAGE;
    }
    if (optind != argc - 1)
        return usage_error(validate_usage, "%s", "validate needs exactly one CONFIG file");
    struct lsh_registry *reg = NULL;
    struct lsh_config *cfg = NULL;
    struct lsh_plan *plan = NULL;
    struct lsh_collision_plan *cplan = NULL;
    int code = load_and_plan(argv[optind], &reg, &cfg, &plan, &cplan);
    if (code == EXIT_OK)
        code = check_memory(cfg, plan, lsh_cpu_count(), default_memory_limit());
    if (code == EXIT_OK) {
        if (plan) {
            size_t problems = 0;
            for (size_t k = 0; k < plan->n_datasets; k++)
                problems += lsh_plan_units(plan, k);
            printf("%s: valid: %zu point%s (%zu dataset%s, %zu attention problem%s, %zu hash "
                   "group%s, %zu pass%s", argv[optind], plan->n_points,
                   plan->n_points == 1 ? "" : "s", plan->n_datasets,
                   plan->n_datasets == 1 ? "" : "s", problems, problems == 1 ? "" : "s",
                   plan->n_groups, plan->n_groups == 1 ? "" : "s", plan->n_passes,
                   plan->n_passes == 1 ? "" : "es");
            /* a pass is a mode setting with a candidate rule (SPEC 13) */
            const struct lsh_sweep *sw = &cfg->sweep;
            const size_t rules = sw->n_min_collisions * sw->n_sink * sw->n_local;
            if (rules > 1)
                printf(" of %zu candidate rules (min_collisions x sink x local)", rules);
            if (cfg->attention.oracle)
                printf(", with the oracle");
            if (plan->n_skipped_groups)
                printf("; %zu hash groups skipped as invalid", plan->n_skipped_groups);
            printf(") -> %s\n", cfg->output);
            print_problems(cfg, plan);
            if (ranks) {
                struct lsh_spread sp;
                struct lsh_error e;
                lsh_error_clear(&e);
                if (lsh_spread_plan(cfg, plan, NULL, ranks, &sp, &e) == 0) {
                    lsh_spread_print(&sp, cfg, plan, 20, stdout);
                    lsh_spread_free(&sp);
                } else {
                    print_error(&e);
                    code = EXIT_RUNTIME;
                }
            }
        } else {
            printf("%s: valid: collision experiment, %zu rows", argv[optind], cplan->n_rows);
            if (cplan->n_skipped)
                printf(" (%zu strategy x n_buckets points skipped as invalid)", cplan->n_skipped);
            printf(" -> %s\n", cfg->output);
        }
    }
    lsh_collision_plan_free(cplan);
    lsh_plan_free(plan);
    lsh_config_free(cfg);
    lsh_registry_free(reg);
    return code;
}

static const char strategies_usage[] =
    "usage: lshlab strategies [--params]\n"
    "\n"
    "List the hashing strategies found on the plugin search path\n"
    "($LSHLAB_STRATEGY_PATH, then the build tree or the install folder).\n"
    "  -p, --params   also list each strategy's parameters (type, default, range, doc)\n";

static const char *type_name(enum lsh_param_type t)
{
    switch (t) {
    case LSH_PARAM_BOOL:
        return "bool";
    case LSH_PARAM_INT:
        return "int";
    case LSH_PARAM_REAL:
        return "real";
    case LSH_PARAM_CHOICE:
        return "choice";
    case LSH_PARAM_INT_LIST:
        return "int list";
    default:
        return "?";
    }
}

/* An INT bound: its digits while they are exact in a double, else %g (a
 * plugin may bound by 1e300, which %.0f prints as 301 digits). */
static const char *int_bound(double x, char *buf, size_t size)
{
    snprintf(buf, size, fabs(x) < 1e15 ? "%.0f" : "%g", x);
    return buf;
}

static void print_param(const struct lsh_param *p)
{
    char lo[32], hi[32];
    char def[128] = "", range[256] = "";
    switch (p->type) {
    case LSH_PARAM_BOOL:
        snprintf(def, sizeof def, "%s", p->def_int ? "true" : "false");
        break;
    case LSH_PARAM_INT:
        snprintf(def, sizeof def, "%lld", (long long)p->def_int);
        snprintf(range, sizeof range, "%s..%s", int_bound(p->min, lo, sizeof lo),
                 int_bound(p->max, hi, sizeof hi));
        break;
    case LSH_PARAM_REAL:
        snprintf(def, sizeof def, "%g", p->def_real);
        snprintf(range, sizeof range, "%g..%g", p->min, p->max);
        break;
    case LSH_PARAM_CHOICE:
        snprintf(def, sizeof def, "%s", p->def_choice);
        for (size_t k = 0; p->choices && p->choices[k]; k++) {
            size_t len = strlen(range);
            snprintf(range + len, sizeof range - len, "%s%s", k ? "|" : "", p->choices[k]);
        }
        break;
    case LSH_PARAM_INT_LIST:
        snprintf(def, sizeof def, "[]");
        snprintf(range, sizeof range, "each %s..%s", int_bound(p->min, lo, sizeof lo),
                 int_bound(p->max, hi, sizeof hi));
        break;
    default:
        break;
    }
    printf("    %-12s %-8s default %-8s %-16s %s\n", p->name, type_name(p->type), def, range,
           p->doc ? p->doc : "");
}

static int cmd_strategies(int argc, char **argv)
{
    static const struct option opts[] = {
        {"params", no_argument, 0, 'p'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int params = 0, c;
    while ((c = getopt_long(argc, argv, "ph", opts, NULL)) != -1) {
        if (c == 'p') {
            params = 1;
        } else if (c == 'h') {
            fputs(strategies_usage, stdout);
            return EXIT_OK;
        } else {
            fputs(strategies_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error(strategies_usage, "unexpected argument '%s'", argv[optind]);
    struct lsh_registry *reg = load_registry();
    if (!reg)
        return EXIT_RUNTIME;
    size_t n = lsh_registry_count(reg);
    if (n == 0)
        printf("no strategies found; set LSHLAB_STRATEGY_PATH to a folder of plugins\n");

    for (size_t i = 0; i < n; i++) {
        const struct lsh_strategy *s = lsh_registry_get(reg, i);
        /* assign: buckets the whole set at once (queries and keys apart);
         * law: publishes collision_prob, which combine importance needs */
        char traits[64] = "";
        const int assigns = lsh_host_assigns(s), law = lsh_host_has_law(s);
        if (assigns || law)
            snprintf(traits, sizeof traits, " [%s%s%s]", assigns ? "assigns whole sets" : "",
                     assigns && law ? ", " : "", law ? "collision law" : "");
        printf("%-12s %s%s\n", s->name, s->summary ? s->summary : "", traits);
        if (params) {
            printf("    (ABI %u.%u, %s)\n", s->abi_major, s->abi_minor,
                   lsh_registry_origin(reg, i));
            size_t k = 0;
            for (; s->params && s->params[k].type != LSH_PARAM_END; k++)
                print_param(&s->params[k]);
            if (k == 0)
                printf("    (no parameters)\n");
        }
    }
    if (n > 0)
        printf("\n[assigns whole sets]: buckets all rows of a round at once (equal-size "
               "buckets,\n  queries and keys apart, or positions); [collision law]: "
               "publishes the one-round\n  collision probability that combine: importance "
               "needs (for some parameters)\n");
    lsh_registry_free(reg);
    return EXIT_OK;
}

static const char show_usage[] =
    "usage: lshlab show FILE [--csv]\n"
    "\n"
    "Print the /runs table (and /collision, if any) of a results file.\n"
    "  -c, --csv   comma-separated values with a header line, full precision\n";

static int cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        {"csv", no_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int csv = 0, c;
    while ((c = getopt_long(argc, argv, "ch", opts, NULL)) != -1) {
        if (c == 'c') {
            csv = 1;
        } else if (c == 'h') {
            fputs(show_usage, stdout);
            return EXIT_OK;
        } else {
            fputs(show_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage_error(show_usage, "%s", "show needs exactly one results FILE");
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_results_show(argv[optind], csv, stdout, &err);
    /* `lshlab show FILE | head`: the reader has what it wanted */
    if (rc == LSH_EIO && ferror(stdout) && errno == EPIPE)
        return EXIT_OK;
    if (rc) {
        print_error(&err);
        return exit_code_for(rc);
    }
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    lsh_blas_pick_kernels(argv); /* may re-execute: before anything else */
    gsl_set_error_handler_off(); /* GSL aborts by default */
    signal(SIGXFSZ, SIG_IGN);    /* a file size limit is a write error (EFBIG), not a kill */
    /* `lshlab run ... | head`: a closed pipe is a failed write (EPIPE) on
     * stdout or stderr, not a kill; the run goes on writing its results. */
    signal(SIGPIPE, SIG_IGN);
    lsh_results_init_library();  /* HDF5 prints its error stack by default */
    lsh_blas_single_thread();    /* our threads, not BLAS's */
    atexit(on_plugin_exit);      /* after HDF5's own: it runs first, and leaves files as they are */

    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_usage, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("lshlab %s (git %s)\nstrategy ABI %d.%d\nBLAS: %s%s%s%s\n", LSHLAB_VERSION,
               LSHLAB_GIT_REVISION, LSH_STRATEGY_ABI_MAJOR, LSH_STRATEGY_ABI_MINOR,
               lsh_blas_name(), *lsh_blas_core() ? " (kernels: " : "", lsh_blas_core(),
               *lsh_blas_core() ? ")" : "");
        if (lsh_comm_library())
            printf("MPI: %s (mpirun -np N lshlab run ...)\n", lsh_comm_library());
        else
            printf("MPI: not built (runs as one process; meson setup -Dmpi=enabled)\n");
        return EXIT_OK;
    }
    /* Under mpirun: join the run's processes (else nothing happens). */
    struct lsh_error cerr;
    lsh_error_clear(&cerr);
    if (lsh_comm_init(&argc, &argv, &cerr)) {
        print_error(&cerr);
        return EXIT_RUNTIME;
    }
    /* Another rank's messages say which rank they come from. */
    static char rank_prog[48];
    if (lsh_comm_rank() != 0) {
        snprintf(rank_prog, sizeof rank_prog, "lshlab (rank %u)", lsh_comm_rank());
        prog = rank_prog;
    }
    /* Only rank 0 speaks for commands other than run. */
    if (lsh_comm_rank() != 0 && strcmp(cmd, "run") != 0 && !freopen("/dev/null", "w", stdout))
        return main_returns(EXIT_RUNTIME);
    /* Each command parses its own options: argv[1] becomes its argv[0]. */
    argc--;
    argv++;
    optind = 1;
    if (!strcmp(cmd, "run"))
        return main_returns(cmd_run(argc, argv));
    if (!strcmp(cmd, "validate"))
        return main_returns(cmd_validate(argc, argv));
    if (!strcmp(cmd, "strategies"))
        return main_returns(cmd_strategies(argc, argv));
    if (!strcmp(cmd, "show"))
        return main_returns(cmd_show(argc, argv));
    char safe[4 * 256 + 1];
    fprintf(stderr, "%s: unknown command '%s'\n\n%s", prog, printable(cmd, safe, sizeof safe),
            main_usage);
    return EXIT_USAGE;
}
