/* sweep.h - run a planned sweep: data, reference, rounds, passes, results.
 *
 * Data flows one way (DESIGN.md): for each unit of a dataset (a layer and
 * head, or the whole dataset without axes) the data is loaded and the
 * reference is computed once; for each hash group the rounds of its largest n_hashes are hashed
 * once (rounds in parallel); each pass evaluates all its points; rows are
 * appended and flushed as they finish.  Library code: it reports through the
 * progress callback and never prints.
 */
#ifndef LSH_SWEEP_H
#define LSH_SWEEP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "plan.h"
#include "results.h"

/* Where a run's time went, in seconds (lsh_now() around each phase):
 *   data       making a unit's data (load or generate), its problem (keys,
 *              sampled rows) and the check of its scores
 *   reference  the exact attention of each unit
 *   hashing    the rounds of each hash group, with their buffers
 *   evaluation each pass's points (lsh_eval_pass)
 *   writing    /datasets, /runs rows, /points dumps and the snapshots
 *   other      the rest: opening and closing the file, per-group and
 *              per-pass buffers, progress reports
 *   oracle     the part of evaluation the budget-matched oracle took
 *              (attention.oracle; 0 when off); not in other's sum.
 * cpu holds the CPU seconds of every thread in the same phases (other: the
 * rest of the process's since the run started), so that threads x elapsed
 * minus their total is the time threads sat idle. */
struct lsh_run_phases {
    double data, reference, hashing, evaluation, writing, other;
};
struct lsh_run_times {
    double data, reference, hashing, evaluation, writing, other;
    double oracle;
    struct lsh_run_phases cpu;
};

struct lsh_progress {
    const char *stage;            /* "reference", "hash", "oracle", "point", "resume-skip";
                                     "oracle": once per unit, after the first pass that
                                     ran the oracle: seconds is its time in that pass,
                                     note compares it with the unit's reference */
    size_t done, total;           /* points written (or found, on resume) so far */
    const struct lsh_run_row *row;/* the row just written ("point"), else NULL */
    const char *dataset;          /* the dataset being worked on */
    int32_t layer, head;          /* its unit (SPEC 11.2); -1: no such axis */
    const struct lsh_run_times *times; /* so far (other: elapsed minus the rest) */
    double seconds;               /* stage time (reference, hash) */
    double elapsed;               /* since the run started */
    double gflops;                /* reference: GFLOP/s of its GEMMs */
    const char *note;             /* reference: cached or streaming, and why; oracle:
                                     its cost per pass against the reference */
};

struct lsh_run_opts {
    unsigned threads;                 /* >= 1 */
    size_t memory_limit;              /* bytes: the score cache is kept only when the
                                         dataset's estimate plus the cache fits */
    enum lsh_results_mode mode;       /* create, force or resume */
    const char *output;               /* results path (default cfg->output) */
    const char *cmdline;              /* provenance */
    volatile sig_atomic_t *stop;      /* set asynchronously: stop after the point */
    void (*progress)(void *ctx, const struct lsh_progress *p);
    void *progress_ctx;
};

struct lsh_run_summary {
    size_t points, ok, skipped, failed, resumed;
    int interrupted;
    int in_step;                  /* the failure reached every rank at once (the open,
                                     or a verdict of a unit spread by rows): they all
                                     return it, so none needs ending (MPI_Abort) */
    double seconds;
    struct lsh_run_times times;   /* other = seconds minus the rest */
    size_t side_groups;           /* hash groups that ran side by side, one thread each
                                     (small units; the same bits as on every thread) */
};

/* Returns 0 when the sweep ran to the end (failed points are recorded in
 * /runs and counted in summary->failed, not errors), LSH_EINTR when stopped
 * (the .partial file is kept for --resume), or another error code. */
int lsh_sweep_run(const struct lsh_config *cfg, const struct lsh_plan *plan,
                  const struct lsh_run_opts *opts, struct lsh_run_summary *summary,
                  struct lsh_error *err);

#endif
