/* oracle.c - the budget-matched oracle (oracle.h).  Being written for issue
 * 10: nothing calls it until eval.c does. */
#include "oracle.h"

#include <stdlib.h>

#include "memsize.h"

struct lsh_oracle_ws {
    size_t n, d_v;
};

size_t lsh_oracle_ws_bytes(size_t n, size_t d_v)
{
    (void)n;
    (void)d_v;
    return sizeof(struct lsh_oracle_ws);
}

struct lsh_oracle_ws *lsh_oracle_ws_alloc(size_t n, size_t d_v)
{
    struct lsh_oracle_ws *ws = calloc(1, sizeof *ws);
    if (ws) {
        ws->n = n;
        ws->d_v = d_v;
    }
    return ws;
}

void lsh_oracle_ws_free(struct lsh_oracle_ws *ws)
{
    free(ws);
}

void lsh_oracle_row(const struct lsh_reference *ref, size_t r, const uint32_t *budget,
                    size_t n_budget, struct lsh_oracle_ws *ws, double *mass, double *err2)
{
    (void)ref, (void)r, (void)budget, (void)ws;
    for (size_t t = 0; t < n_budget; t++)
        mass[t] = err2[t] = 0.0;
}
