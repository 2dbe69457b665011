/* parallel.c - lsh_parallel_for on POSIX threads. */
#define _POSIX_C_SOURCE 200809L
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

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

/* The workers stay between calls: a sweep of many small heads makes
 * thousands of calls, and starting threads for each (stacks mapped and
 * unmapped, TLB shootdowns) cost ~10% of such a run.  Worker k (1, 2, ...)
 * takes part in a call of threads > k; the caller is thread 0.  One call uses
 * the workers at a time: a call made while they are busy (from a task, or
 * another thread) starts threads of its own, as every call once did. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned started;     /* workers running */
    atomic_ulong round;   /* which call the workers are on */
    unsigned want;        /* workers 1 .. want take part in it */
    atomic_uint active;   /* of those, still working */
    struct pool *job;
    int atfork_set;       /* team_after_fork installed */
} team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
           0, 0, NULL, 0};
/* round and active change under mu, as the condition variables need; they
 * are atomic so that a thread can also watch them without mu while it spins */

/* A thread that waits for the next call (a worker) or for the workers to
 * finish (the caller) first spins for about this many pauses (~50-150 us)
 * before it sleeps: a sweep of small heads makes thousands of calls a second,
 * and waking a sleeping thread cost ~20 us a call (bench-parallel: 8 tasks
 * of 4 us took 35 us on two threads, 33 on one; 18 with the spin).  Not
 * under valgrind, which runs one thread at a time: a spinning thread would
 * hold up the one it waits for. */
#define SPIN_PAUSES 2048

static inline void pause_once(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin while *round == v or, when round is NULL, while *active != 0. */
static void spin_on(const atomic_ulong *round, unsigned long v, const atomic_uint *active)
{
    const unsigned limit = RUNNING_ON_VALGRIND ? 0 : SPIN_PAUSES; /* a few instructions */
    for (unsigned k = 0; k < limit; k++) {
        if (round ? atomic_load_explicit(round, memory_order_acquire) != v
                  : atomic_load_explicit(active, memory_order_acquire) == 0)
            return;
        pause_once();
    }
}

static pthread_mutex_t team_busy = PTHREAD_MUTEX_INITIALIZER;

struct member {
    unsigned id;
    unsigned long seen; /* the call before the one it was started for */
};

static void *team_member(void *arg)
{
    const struct member me = *(const struct member *)arg;
    free(arg);
    const unsigned id = me.id;
    unsigned long seen = me.seen;
    for (;;) {
        spin_on(&team.round, seen, NULL);
        pthread_mutex_lock(&team.mu);
        while (atomic_load(&team.round) == seen)
            pthread_cond_wait(&team.go, &team.mu);
        seen = atomic_load(&team.round);
        if (id > team.want) {
            pthread_mutex_unlock(&team.mu);
            continue;
        }
        struct worker w = {team.job, id};
        pthread_mutex_unlock(&team.mu);
        work(&w);
        pthread_mutex_lock(&team.mu);
        if (atomic_fetch_sub(&team.active, 1) == 1)
            pthread_cond_signal(&team.done);
        pthread_mutex_unlock(&team.mu);
    }
    return NULL;
}

/* A forked child has none of the parent's workers: start afresh. */
static void team_after_fork(void)
{
    pthread_mutex_init(&team.mu, NULL);
    pthread_cond_init(&team.go, NULL);
    pthread_cond_init(&team.done, NULL);
    pthread_mutex_init(&team_busy, NULL);
    team.started = 0;
    team.want = 0;
    atomic_store(&team.active, 0);
    team.job = NULL;
}

/* Workers 1 .. n - 1 running (fewer if threads cannot start); returns how
 * many run. */
static unsigned team_grow(unsigned n)
{
    if (!team.atfork_set) {
        if (pthread_atfork(NULL, NULL, team_after_fork) != 0)
            return 0;
        team.atfork_set = 1;
    }
    while (team.started + 1 < n) {
        pthread_t tid;
        pthread_attr_t attr;
        struct member *me = malloc(sizeof *me);
        if (!me || pthread_attr_init(&attr) != 0) {
            free(me);
            break;
        }
        *me = (struct member){team.started + 1, atomic_load(&team.round)};
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&tid, &attr, team_member, me);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            free(me);
            break;
        }
        team.started++;
    }
    return team.started;
}

/* The old way: threads of this call's own, joined at its end (at most 1024:
 * the arrays live on the stack; tasks only ever need fewer threads). */
static void run_own_threads(struct pool *p, unsigned threads)
{
    if (threads > 1024)
        threads = 1024;
    pthread_t tid[threads];
    struct worker ws[threads];
    unsigned started = 0;
    for (unsigned i = 1; i < threads; i++) {
        ws[i] = (struct worker){p, i};
        if (pthread_create(&tid[i], NULL, work, &ws[i]) != 0)
            break;
        started = i;
    }
    ws[0] = (struct worker){p, 0};
    work(&ws[0]);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(tid[i], NULL);
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
    unsigned fail = atomic_load(&fail_next);
    while (fail && !atomic_compare_exchange_weak(&fail_next, &fail, fail - 1))
        ;
    if (!p.codes || fail) {
        free(p.codes);
        return LSH_ENOMEM; /* no task ran: a caller must not read their outputs */
    }
    if (pthread_mutex_trylock(&team_busy) == 0) {
        pthread_mutex_lock(&team.mu);
        const unsigned have = team_grow(threads);
        team.job = &p;
        team.want = have < threads - 1 ? have : threads - 1;
        atomic_store(&team.active, team.want);
        atomic_fetch_add(&team.round, 1);
        pthread_cond_broadcast(&team.go);
        pthread_mutex_unlock(&team.mu);
        struct worker w0 = {&p, 0};
        work(&w0);
        spin_on(NULL, 0, &team.active);
        pthread_mutex_lock(&team.mu);
        while (atomic_load(&team.active) > 0)
            pthread_cond_wait(&team.done, &team.mu);
        team.job = NULL;
        pthread_mutex_unlock(&team.mu);
        pthread_mutex_unlock(&team_busy);
    } else {
        run_own_threads(&p, threads);
    }
    int rc = 0;
    for (size_t t = 0; t < n_tasks && !rc; t++)
        rc = p.codes[t];
    free(p.codes);
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

double lsh_cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double lsh_thread_cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
