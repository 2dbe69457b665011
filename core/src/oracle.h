/* oracle.h - the budget-matched oracle of SPEC 13: for an evaluated row i and
 * a budget m (its |S_i| at some prefix), O_i = the m keys of U_i with the
 * largest s_ij (ties to the smaller j), the best candidate set of that size.
 *
 * Per row the keys of U_i are selected once, for the row's largest budget,
 * and sorted; every smaller budget is a prefix of that order, so the mass
 * sum_{O_i} A_ij and the output error of the union softmax over O_i for all
 * of a row's budgets cost one selection and one walk down the prefix.  Scores
 * are the bits candidates get (the reference's score cache, else
 * lsh_attn_raw), so a strategy that finds the best set scores exactly the
 * oracle's mass.  Library code: no threads of its own (eval calls it per row
 * from its row blocks); a workspace is used by one thread at a time. */
#ifndef LSH_ORACLE_H
#define LSH_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "reference.h"

struct lsh_oracle_ws;

/* Bytes of one workspace for n keys and d_v value columns (saturating). */
size_t lsh_oracle_ws_bytes(size_t n, size_t d_v);

/* NULL when out of memory. */
struct lsh_oracle_ws *lsh_oracle_ws_alloc(size_t n, size_t d_v);
void lsh_oracle_ws_free(struct lsh_oracle_ws *ws);

/* Evaluated row r of ref (row i = ref->rows ? ref->rows[r] : r; r among the
 * rows ref computed, [ref->r0, ref->r1), whose cache it reads) with budgets
 * budget[0 .. n_budget) (any order; each is clamped to [1, |U_i|], since an
 * empty row's S_i = {i} has m = 1):
 *   mass[t] = sum_{j in O_i} A_ij, A_ij = exp(s_ij - lse_i);
 *   err2[t] = ||O_i - O^O_i||^2, O^O_i = sum_{O_i} e^{s_ij} v_j / sum_{O_i} e^{s_ij}
 *             (formed with a max shift: exact however small the mass). */
void lsh_oracle_row(const struct lsh_reference *ref, size_t r, const uint32_t *budget,
                    size_t n_budget, struct lsh_oracle_ws *ws, double *mass, double *err2);

/* A unit's oracle table: for each of the reference's rows [ref->r0, ref->r1),
 * the mass and err2 of every budget 1 .. |U_i|, filled by a row's first
 * lsh_oracle_row_table and read by the later ones (a pass after the first
 * then costs a lookup a budget: the order of U_i's keys is the same in every
 * pass).  The values are the bits lsh_oracle_row gives (its walk down the
 * prefix adds the same terms in the same order, whichever budgets it stops
 * at).  Rows are filled by whichever thread evaluates them: a row must not
 * be looked up by two threads at once. */
struct lsh_oracle_table;
/* Bytes of the table for ref's rows (16 per key of each U_i, plus offsets). */
size_t lsh_oracle_table_bytes(const struct lsh_reference *ref);
/* NULL when out of memory. */
struct lsh_oracle_table *lsh_oracle_table_alloc(const struct lsh_reference *ref);
void lsh_oracle_table_free(struct lsh_oracle_table *t);

/* Whether every row of the table is built: later passes then only read it,
 * and may run side by side. */
int lsh_oracle_table_full(const struct lsh_oracle_table *t);
/* lsh_oracle_row, through the table when t is not NULL. */
void lsh_oracle_row_table(const struct lsh_reference *ref, size_t r, const uint32_t *budget,
                          size_t n_budget, struct lsh_oracle_ws *ws,
                          struct lsh_oracle_table *t, double *mass, double *err2);

#endif
