/* comm.h - the processes of one run (SPEC 15).
 *
 * With Open MPI (built with -Dmpi, started by mpirun) a run has size()
 * processes; otherwise, and whenever lshlab was not started by mpirun, it is
 * one process of rank 0 and every call here is a no-op on local memory.
 * Only the main thread of a process calls these (MPI_THREAD_FUNNELED).
 * Sizes are bytes; a message larger than what MPI can count is cut into
 * pieces by the functions themselves. */
#ifndef LSH_COMM_H
#define LSH_COMM_H

#include <stdint.h>
#include <stddef.h>

#include "error.h"

/* Start MPI when this process was started by mpirun (else nothing). */
int lsh_comm_init(int *argc, char ***argv, struct lsh_error *err);
void lsh_comm_finalize(void);
/* End every process of the run at once (mpirun reports it); after rank 0
 * closed its results file. */
void lsh_comm_abort(int code);

unsigned lsh_comm_rank(void);
unsigned lsh_comm_size(void);
/* "Open MPI 4.1.4" when built with MPI, else NULL. */
const char *lsh_comm_library(void);

/* Every rank's v[0 .. n) replaced by the largest value of each over all
 * ranks (a collective: every rank calls it). */
int lsh_comm_max_u64(uint64_t *v, size_t n, struct lsh_error *err);

/* buf (bytes) from root to every rank. */
int lsh_comm_bcast(void *buf, size_t bytes, unsigned root, struct lsh_error *err);

/* Root receives every rank's send (counts[r] bytes from rank r, known to
 * every rank) end to end in rank order in recv (root only). */
int lsh_comm_gatherv(const void *send, const size_t *counts, void *recv, unsigned root,
                     struct lsh_error *err);

/* Send bytes to rank dest without waiting (buf is copied); lsh_comm_flush
 * waits for every send of this process to complete. */
int lsh_comm_send(const void *buf, size_t bytes, unsigned dest, struct lsh_error *err);
int lsh_comm_flush(struct lsh_error *err);

/* A message that has arrived from any rank, if any: 1 and *buf (malloc'ed,
 * the caller frees it), *bytes, *source; 0 when none is waiting. */
int lsh_comm_poll(void **buf, size_t *bytes, unsigned *source, struct lsh_error *err);

#endif
