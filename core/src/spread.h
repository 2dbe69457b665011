/* spread.h - how a planned sweep's work is cut over N processes (SPEC 15).
 *
 * Units (a dataset's layer and head) are taken in plan order.  A unit whose
 * evaluated rows make more than one slice (reference.h) is a segment of its
 * own, spread by rows: rank r gets contiguous slices.  Runs of other units
 * make one segment, spread by hash groups: the groups still to run are cut
 * into N contiguous runs of about equal estimated cost, rank r taking run r
 * (a unit cut between two ranks is loaded, and its reference computed, by
 * both).  The cut changes only who computes what: every row's bits come from
 * its own slice, whatever the cut.  A pure function of the config, the plan,
 * the points already done and N, so every rank computes the same spread. */
#ifndef LSH_SPREAD_H
#define LSH_SPREAD_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "error.h"
#include "plan.h"

struct lsh_spread_segment {
    size_t first_group, end_group;  /* plan groups [first, end): whole units */
    int by_rows;                    /* one unit, spread by slices of its rows */
    size_t m, slices;               /* by_rows: evaluated rows and their slices */
    size_t *cut;                    /* ranks + 1 boundaries: rank r takes groups (by
                                       groups) or slices (by rows) [cut[r], cut[r+1]) */
    double *cost;                   /* per rank: estimated flops of its share */
    size_t *points;                 /* per rank: points still to run in its share
                                       (by rows: every rank works on every point) */
};

struct lsh_spread {
    unsigned ranks;
    size_t n_segments;
    struct lsh_spread_segment *segments;
};

/* done: n_points flags (1: the point is in the results already), or NULL. */
int lsh_spread_plan(const struct lsh_config *cfg, const struct lsh_plan *plan,
                    const unsigned char *done, unsigned ranks, struct lsh_spread *out,
                    struct lsh_error *err);
void lsh_spread_free(struct lsh_spread *s);

/* The spread as text for `lshlab validate --ranks N`: one line per segment
 * (up to max_lines, then a count of the rest), each rank's share. */
void lsh_spread_print(const struct lsh_spread *s, const struct lsh_config *cfg,
                      const struct lsh_plan *plan, size_t max_lines, FILE *out);

#endif
