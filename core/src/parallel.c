/* parallel.c - lsh_parallel_for on POSIX threads. */
#define _POSIX_C_SOURCE 200809L
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

static atomic_uint fail_next; /* lsh_parallel_fail_next */

void lsh_parallel_fail_next(unsigned n)
{
    atomic_store(&fail_next, n);
}

struct pool {
    lsh_task_fn fn;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
    atomic_int stop;
    int *codes; /* per task, so the reported error is the first in task order */
};

struct worker {
    struct pool *pool;
    unsigned thread;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct pool *p = w->pool;
    for (;;) {
        if (atomic_load(&p->stop))
            break;
        size_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks)
            break;
        int rc = p->fn(p->ctx, t, w->thread);
        if (rc) {
            p->codes[t] = rc;
            atomic_store(&p->stop, 1);
        }
    }
    return NULL;
}

int lsh_parallel_for(unsigned threads, size_t n_tasks, lsh_task_fn fn, void *ctx)
{
    if (n_tasks == 0)
        return 0;
    if (threads < 1)
        threads = 1;
    if (threads > n_tasks)
        threads = (unsigned)n_tasks;
    if (threads == 1) {
        for (size_t t = 0; t < n_tasks; t++) {
            int rc = fn(ctx, t, 0);
            if (rc)
                return rc;
        }
        return 0;
    }
    struct pool p = {.fn = fn, .ctx = ctx, .n_tasks = n_tasks};
    atomic_init(&p.next, 0);
    atomic_init(&p.stop, 0);
    p.codes = calloc(n_tasks, sizeof *p.codes);
    pthread_t *tid = calloc(threads, sizeof *tid);
    struct worker *ws = calloc(threads, sizeof *ws);
    unsigned fail = atomic_load(&fail_next);
    while (fail && !atomic_compare_exchange_weak(&fail_next, &fail, fail - 1))
        ;
    if (!p.codes || !tid || !ws || fail) {
        free(p.codes);
        free(tid);
        free(ws);
        return LSH_ENOMEM; /* no task ran: a caller must not read their outputs */
    }
    unsigned started = 0;
    for (unsigned i = 1; i < threads; i++) {
        ws[i] = (struct worker){&p, i};
        if (pthread_create(&tid[i], NULL, work, &ws[i]) != 0)
            break;
        started = i;
    }
    ws[0] = (struct worker){&p, 0};
    work(&ws[0]);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
    int rc = 0;
    for (size_t t = 0; t < n_tasks && !rc; t++)
        rc = p.codes[t];
    free(p.codes);
    free(tid);
    free(ws);
    return rc;
}

unsigned lsh_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

double lsh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
