/* parallel.c - the cost of one lsh_parallel_for call on T threads against
 * the same tasks on one thread: a sweep of small heads makes thousands of
 * calls a second, each a few tasks of microseconds.
 *   bench-parallel [threads] [tasks] [task_us]     defaults: 2 8 4 */
#include <stdio.h>
#include <stdlib.h>

#include "parallel.h"

static double task_us;
static volatile double sink;

static int task(void *ctx, size_t t, unsigned thread)
{
    (void)ctx;
    (void)t;
    (void)thread;
    double x = 0.0;
    for (double t0 = lsh_now(); lsh_now() - t0 < task_us * 1e-6;)
        x += 1.0;
    sink = x;
    return 0;
}

/* microseconds a call, best of 3 rounds of `calls` calls */
static double per_call(unsigned threads, size_t tasks, int calls)
{
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = lsh_now();
        for (int c = 0; c < calls; c++)
            if (lsh_parallel_for(threads, tasks, task, NULL))
                exit(1);
        double us = (lsh_now() - t0) / calls * 1e6;
        best = us < best ? us : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 2;
    size_t tasks = argc > 2 ? strtoul(argv[2], NULL, 10) : 8;
    task_us = argc > 3 ? strtod(argv[3], NULL) : 4.0;
    if (threads < 1 || tasks < 1 || !(task_us >= 0.0)) {
        fprintf(stderr, "usage: bench-parallel [threads >= 1] [tasks >= 1] [task_us >= 0]\n");
        return 2;
    }
    const double one = per_call(1, tasks, 2000), many = per_call(threads, tasks, 2000);
    printf("lsh_parallel_for of %zu tasks of %.1f us: %.1f us a call on %u threads, %.1f us on "
           "1 (ideal %.1f): %.1f us of overhead a call\n",
           tasks, task_us, many, threads, one, one / threads, many - one / threads);
    return 0;
}
