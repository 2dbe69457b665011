/* parallel.h - a minimal parallel for over task indices on N threads.
 *
 * Tasks are handed out dynamically, so which thread runs a task varies; a
 * caller that wants bit-identical results for every N must make each task's
 * output depend only on its index (write per-task partials, reduce them in
 * index order afterwards). */
#ifndef LSH_PARALLEL_H
#define LSH_PARALLEL_H

#include <stddef.h>

/* fn(ctx, task, thread) for task in [0, n_tasks); thread in [0, threads).
 * A non-zero return stops handing out new tasks; the first non-zero value in
 * task order among those that ran is returned.  LSH_ENOMEM (error.h) when the
 * pool cannot be set up: then no task ran, so a caller must check the return
 * even when its tasks never fail. */
typedef int (*lsh_task_fn)(void *ctx, size_t task, unsigned thread);
int lsh_parallel_for(unsigned threads, size_t n_tasks, lsh_task_fn fn, void *ctx);

/* For tests: the next n pools of more than one thread fail to set up, as
 * under OOM (lsh_parallel_for returns LSH_ENOMEM and runs no task). */
void lsh_parallel_fail_next(unsigned n);

/* Number of online CPUs (>= 1). */
unsigned lsh_cpu_count(void);

/* Monotonic wall clock in seconds. */
double lsh_now(void);

/* CPU seconds the whole process (every thread) has used so far. */
double lsh_cpu_now(void);

/* CPU seconds of the calling thread alone. */
double lsh_thread_cpu_now(void);

#endif
