/* comm.c - Open MPI when built with it and started by mpirun, else one
 * process (comm.h). */
#include "comm.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LSHLAB_MPI
#include <mpi.h>
#endif

static unsigned g_rank, g_size = 1;
static int g_active; /* MPI_Init was called */

/* Started by mpirun (Open MPI sets these; PMIx launchers set PMIX_RANK). */
static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

unsigned lsh_comm_rank(void)
{
    return g_rank;
}

unsigned lsh_comm_size(void)
{
    return g_size;
}

#ifdef LSHLAB_MPI

/* One piece of a message: what an int count of MPI_BYTE holds. */
#define PIECE ((size_t)1 << 30)
#define TAG_DATA 1

const char *lsh_comm_library(void)
{
    static char name[64];
    if (!name[0]) {
#ifdef OMPI_MAJOR_VERSION
        snprintf(name, sizeof name, "Open MPI %d.%d.%d", OMPI_MAJOR_VERSION, OMPI_MINOR_VERSION,
                 OMPI_RELEASE_VERSION);
#else
        snprintf(name, sizeof name, "MPI %d.%d", MPI_VERSION, MPI_SUBVERSION);
#endif
    }
    return name;
}

static int mpi_fail(struct lsh_error *err, int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return lsh_error_set(err, LSH_EIO, "MPI: %s failed on rank %u: %s", what, g_rank, text);
}

int lsh_comm_init(int *argc, char ***argv, struct lsh_error *err)
{
    if (!launched_by_mpirun())
        return 0;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        return lsh_error_set(err, LSH_EIO, "MPI_Init_thread failed (code %d)", rc);
    g_active = 1;
    /* errors come back as codes, so a message can say what failed */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int r = 0, s = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    g_rank = (unsigned)r;
    g_size = (unsigned)s;
    return 0;
}

struct pending {
    MPI_Request req;
    void *buf;
};
static struct pending *g_sends;
static size_t g_n_sends, g_cap_sends;

/* Free the buffers of completed sends. */
static int reap(int wait, struct lsh_error *err)
{
    size_t kept = 0;
    for (size_t i = 0; i < g_n_sends; i++) {
        int done = 0, rc;
        if (wait)
            rc = MPI_Wait(&g_sends[i].req, MPI_STATUS_IGNORE), done = 1;
        else
            rc = MPI_Test(&g_sends[i].req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "a send");
        if (done)
            free(g_sends[i].buf);
        else
            g_sends[kept++] = g_sends[i];
    }
    g_n_sends = kept;
    return 0;
}

void lsh_comm_finalize(void)
{
    if (!g_active)
        return;
    reap(1, NULL);
    free(g_sends);
    g_sends = NULL;
    g_cap_sends = 0;
    MPI_Finalize();
    g_active = 0;
}

void lsh_comm_abort(int code)
{
    if (g_active && g_size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
}

int lsh_comm_max_u64(uint64_t *v, size_t n, struct lsh_error *err)
{
    if (!g_active || g_size == 1 || n == 0)
        return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, rc, "an all-reduce");
}

int lsh_comm_bcast(void *buf, size_t bytes, unsigned root, struct lsh_error *err)
{
    if (!g_active || g_size == 1)
        return 0;
    for (size_t off = 0; off < bytes; off += PIECE) {
        const size_t len = bytes - off < PIECE ? bytes - off : PIECE;
        int rc = MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, (int)root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "a broadcast");
    }
    return 0;
}

int lsh_comm_gatherv(const void *send, const size_t *counts, void *recv, unsigned root,
                     struct lsh_error *err)
{
    if (!g_active || g_size == 1) {
        if (counts[0])
            memmove(recv, send, counts[0]);
        return 0;
    }
    /* one MPI_Gatherv while every count and offset fits an int; else each
     * rank's bytes in turn, by point-to-point pieces */
    size_t total = 0;
    int fits = 1;
    for (unsigned r = 0; r < g_size; r++) {
        total += counts[r];
        fits &= counts[r] <= (size_t)INT_MAX && total <= (size_t)INT_MAX;
    }
    int rc = MPI_SUCCESS;
    if (fits) {
        int *cnt = NULL, *off = NULL;
        if (g_rank == root) {
            cnt = malloc(g_size * sizeof *cnt);
            off = malloc(g_size * sizeof *off);
            if (!cnt || !off) {
                free(cnt);
                free(off);
                return lsh_error_set(err, LSH_ENOMEM, "out of memory");
            }
            size_t o = 0;
            for (unsigned r = 0; r < g_size; r++) {
                cnt[r] = (int)counts[r];
                off[r] = (int)o;
                o += counts[r];
            }
        }
        rc = MPI_Gatherv(send, (int)counts[g_rank], MPI_BYTE, recv, cnt, off, MPI_BYTE,
                         (int)root, MPI_COMM_WORLD);
        free(cnt);
        free(off);
        return rc == MPI_SUCCESS ? 0 : mpi_fail(err, rc, "a gather");
    }
    size_t o = 0;
    for (unsigned r = 0; r < g_size && rc == MPI_SUCCESS; r++) {
        for (size_t p = 0; p < counts[r] && rc == MPI_SUCCESS; p += PIECE) {
            const size_t len = counts[r] - p < PIECE ? counts[r] - p : PIECE;
            if (r == root && g_rank == root)
                memmove((char *)recv + o + p, (const char *)send + p, len);
            else if (g_rank == root)
                rc = MPI_Recv((char *)recv + o + p, (int)len, MPI_BYTE, (int)r, TAG_DATA + 1,
                              MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            else if (g_rank == r)
                rc = MPI_Send((const char *)send + p, (int)len, MPI_BYTE, (int)root,
                              TAG_DATA + 1, MPI_COMM_WORLD);
        }
        o += counts[r];
    }
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, rc, "a gather");
}

int lsh_comm_send(const void *buf, size_t bytes, unsigned dest, struct lsh_error *err)
{
    if (!g_active || g_size == 1)
        return lsh_error_set(err, LSH_EINVAL, "MPI: send without other ranks");
    if (bytes > (size_t)INT_MAX)
        return lsh_error_set(err, LSH_ERANGE, "MPI: a message of %zu bytes (at most %d)", bytes,
                             INT_MAX);
    int rc = reap(0, err);
    if (rc)
        return rc;
    if (g_n_sends == g_cap_sends) {
        size_t cap = g_cap_sends ? 2 * g_cap_sends : 16;
        struct pending *p = realloc(g_sends, cap * sizeof *p);
        if (!p)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        g_sends = p;
        g_cap_sends = cap;
    }
    void *copy = malloc(bytes + 1);
    if (!copy)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    memcpy(copy, buf, bytes);
    struct pending *p = &g_sends[g_n_sends];
    rc = MPI_Isend(copy, (int)bytes, MPI_BYTE, (int)dest, TAG_DATA, MPI_COMM_WORLD, &p->req);
    if (rc != MPI_SUCCESS) {
        free(copy);
        return mpi_fail(err, rc, "a send");
    }
    p->buf = copy;
    g_n_sends++;
    return 0;
}

int lsh_comm_flush(struct lsh_error *err)
{
    return g_active ? reap(1, err) : 0;
}

int lsh_comm_poll(void **buf, size_t *bytes, unsigned *source, struct lsh_error *err)
{
    *buf = NULL;
    *bytes = 0;
    if (!g_active || g_size == 1)
        return 0;
    int rc = reap(0, err);
    if (rc)
        return -1;
    int flag = 0;
    MPI_Status st;
    rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG_DATA, MPI_COMM_WORLD, &flag, &st);
    if (rc != MPI_SUCCESS) {
        mpi_fail(err, rc, "a probe");
        return -1;
    }
    if (!flag)
        return 0;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    void *b = malloc((size_t)count + 1);
    if (!b) {
        lsh_error_set(err, LSH_ENOMEM, "out of memory receiving %d bytes", count);
        return -1;
    }
    rc = MPI_Recv(b, count, MPI_BYTE, st.MPI_SOURCE, TAG_DATA, MPI_COMM_WORLD,
                  MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(b);
        mpi_fail(err, rc, "a receive");
        return -1;
    }
    *buf = b;
    *bytes = (size_t)count;
    *source = (unsigned)st.MPI_SOURCE;
    return 1;
}

#else /* one process */

const char *lsh_comm_library(void)
{
    return NULL;
}

int lsh_comm_init(int *argc, char ***argv, struct lsh_error *err)
{
    (void)argc;
    (void)argv;
    if (launched_by_mpirun() && getenv("OMPI_COMM_WORLD_SIZE") &&
        strcmp(getenv("OMPI_COMM_WORLD_SIZE"), "1") != 0)
        return lsh_error_set(err, LSH_EINVAL,
                             "started by mpirun with %s processes, but this lshlab was built "
                             "without MPI (meson setup -Dmpi=enabled, with libopenmpi-dev)",
                             getenv("OMPI_COMM_WORLD_SIZE"));
    return 0;
}

void lsh_comm_finalize(void) {}

void lsh_comm_abort(int code)
{
    (void)code;
}

int lsh_comm_max_u64(uint64_t *v, size_t n, struct lsh_error *err)
{
    (void)v, (void)n, (void)err;
    return 0;
}

int lsh_comm_bcast(void *buf, size_t bytes, unsigned root, struct lsh_error *err)
{
    (void)buf, (void)bytes, (void)root, (void)err;
    return 0;
}

int lsh_comm_gatherv(const void *send, const size_t *counts, void *recv, unsigned root,
                     struct lsh_error *err)
{
    (void)root, (void)err;
    if (counts[0])
        memmove(recv, send, counts[0]);
    return 0;
}

int lsh_comm_send(const void *buf, size_t bytes, unsigned dest, struct lsh_error *err)
{
    (void)buf, (void)bytes, (void)dest;
    return lsh_error_set(err, LSH_EINVAL, "MPI: send without other ranks");
}

int lsh_comm_flush(struct lsh_error *err)
{
    (void)err;
    return 0;
}

int lsh_comm_poll(void **buf, size_t *bytes, unsigned *source, struct lsh_error *err)
{
    (void)source, (void)err;
    *buf = NULL;
    *bytes = 0;
    return 0;
}

#endif
