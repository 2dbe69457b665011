/* spread.c - the cut of a sweep over N processes (spread.h). */
#include "spread.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

static size_t pass_end(const struct lsh_plan *plan, size_t pa)
{
    return pa + 1 < plan->n_passes ? plan->passes[pa + 1].first_point : plan->n_points;
}

/* Evaluated rows of dataset dsi. */
static size_t evaluated_rows(const struct lsh_config *cfg, const struct lsh_plan *plan,
                             size_t dsi)
{
    const size_t n = plan->shapes[dsi].n, rr = cfg->datasets[dsi].reference_rows;
    return rr && rr < n ? rr : n;
}

/* Points of group g not yet done. */
static size_t group_todo(const struct lsh_plan *plan, const unsigned char *done, size_t g)
{
    const struct lsh_hash_group *hg = &plan->groups[g];
    size_t todo = 0;
    for (size_t pa = hg->first_pass; pa < hg->first_pass + hg->n_passes; pa++)
        for (size_t p = plan->passes[pa].first_point; p < pass_end(plan, pa); p++)
            todo += !(done && done[p]);
    return todo;
}

/* Estimated flops of group g's passes still to run (the candidate pairs of
 * its largest prefix, each 2 (d + d_v) flops) and of its rounds (n d each);
 * a skipped group costs nothing. */
static double group_cost(const struct lsh_config *cfg, const struct lsh_plan *plan,
                         const unsigned char *done, size_t g)
{
    const struct lsh_hash_group *hg = &plan->groups[g];
    if (hg->skip_reason || group_todo(plan, done, g) == 0)
        return 0.0;
    const struct lsh_dataset_layout *sh = &plan->shapes[hg->dataset];
    const double n = (double)sh->n, m = (double)evaluated_rows(cfg, plan, hg->dataset);
    const double w = 2.0 * (double)(sh->d + sh->d_v);
    double cost = (double)hg->h_max * n * (double)sh->d;
    for (size_t pa = hg->first_pass; pa < hg->first_pass + hg->n_passes; pa++) {
        int todo = 0;
        for (size_t p = plan->passes[pa].first_point; p < pass_end(plan, pa); p++)
            todo |= !(done && done[p]);
        if (!todo)
            continue;
        const struct lsh_mode_opts *mo = &plan->passes[pa].mode;
        double per_round = mo->mode == LSH_MODE_CHUNKED
                               ? (double)mo->chunk_size * (1.0 + (double)mo->look_back)
                               : n / (double)(hg->n_buckets ? hg->n_buckets : 1);
        double cand = per_round * (double)hg->h_max + (double)mo->sink + 2.0 * mo->local;
        cost += m * (cand < n ? cand : n) * w;
    }
    return cost;
}

/* The reference of a unit of dataset dsi: 2 m n (d + d_v) flops. */
static double reference_cost(const struct lsh_config *cfg, const struct lsh_plan *plan,
                             size_t dsi)
{
    const struct lsh_dataset_layout *sh = &plan->shapes[dsi];
    return 2.0 * (double)evaluated_rows(cfg, plan, dsi) * (double)sh->n *
           (double)(sh->d + sh->d_v);
}

static int seg_alloc(struct lsh_spread_segment *s, unsigned ranks)
{
    s->cut = calloc((size_t)ranks + 1, sizeof *s->cut);
    s->cost = calloc(ranks, sizeof *s->cost);
    s->points = calloc(ranks, sizeof *s->points);
    return s->cut && s->cost && s->points ? 0 : LSH_ENOMEM;
}

static int same_unit(const struct lsh_plan *plan, size_t a, size_t b)
{
    return plan->groups[a].dataset == plan->groups[b].dataset &&
           plan->groups[a].unit == plan->groups[b].unit;
}

/* Cut groups [first, end) into ranks contiguous runs of about equal cost.
 * A unit's reference counts with its first group that has work.  Boundary
 * r (between runs r - 1 and r) goes at the group boundary k, not before the
 * previous one, that minimises |cost of groups before k - r / ranks of the
 * total|, plus the unit's reference cost when k cuts a unit in two (both
 * ranks then compute that reference). */
static int cut_groups(const struct lsh_config *cfg, const struct lsh_plan *plan,
                      const unsigned char *done, unsigned ranks, struct lsh_spread_segment *s)
{
    const size_t first = s->first_group, G = s->end_group - first;
    double *pre = calloc(G + 1, sizeof *pre); /* pre[k]: cost of groups [0, k) */
    if (!pre)
        return LSH_ENOMEM;
    int unit_charged = 0;
    for (size_t k = 0; k < G; k++) {
        const size_t g = first + k;
        if (k && !same_unit(plan, g, g - 1))
            unit_charged = 0;
        double c = group_cost(cfg, plan, done, g);
        if (c > 0.0 && !unit_charged) {
            c += reference_cost(cfg, plan, plan->groups[g].dataset);
            unit_charged = 1;
        }
        pre[k + 1] = pre[k] + c;
    }
    const double total = pre[G];
    s->cut[0] = first;
    s->cut[ranks] = s->end_group;
    size_t lo = 0;
    for (unsigned r = 1; r < ranks; r++) {
        const double target = total * (double)r / (double)ranks;
        size_t best = lo;
        double best_cost = -1.0;
        for (size_t k = lo; k <= G; k++) {
            double miss = fabs(pre[k] - target);
            if (k > 0 && k < G && same_unit(plan, first + k - 1, first + k))
                miss += reference_cost(cfg, plan, plan->groups[first + k].dataset);
            if (best_cost < 0.0 || miss < best_cost) {
                best = k;
                best_cost = miss;
            }
            if (pre[k] > target + best_cost)
                break; /* every later boundary misses by more */
        }
        s->cut[r] = first + best;
        lo = best;
    }
    for (unsigned r = 0; r < ranks; r++) {
        s->cost[r] = pre[s->cut[r + 1] - first] - pre[s->cut[r] - first];
        for (size_t g = s->cut[r]; g < s->cut[r + 1]; g++)
            s->points[r] += group_todo(plan, done, g);
    }
    free(pre);
    return 0;
}

int lsh_spread_plan(const struct lsh_config *cfg, const struct lsh_plan *plan,
                    const unsigned char *done, unsigned ranks, struct lsh_spread *out,
                    struct lsh_error *err)
{
    memset(out, 0, sizeof *out);
    if (ranks < 1)
        ranks = 1;
    out->ranks = ranks;
    /* at most one segment per unit */
    out->segments = calloc(plan->n_groups + 1, sizeof *out->segments);
    if (!out->segments)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t gi = 0; !rc && gi < plan->n_groups;) {
        size_t end = gi + 1;
        while (end < plan->n_groups && same_unit(plan, gi, end))
            end++;
        const size_t dsi = plan->groups[gi].dataset;
        const size_t m = evaluated_rows(cfg, plan, dsi);
        const size_t slices = lsh_slice_count(m);
        struct lsh_spread_segment *last =
            out->n_segments ? &out->segments[out->n_segments - 1] : NULL;
        if (slices < 2 && last && !last->by_rows) {
            last->end_group = end; /* one more whole unit */
        } else {
            struct lsh_spread_segment *s = &out->segments[out->n_segments++];
            s->first_group = gi;
            s->end_group = end;
            s->by_rows = slices >= 2;
            s->m = m;
            s->slices = slices;
            rc = seg_alloc(s, ranks);
        }
        gi = end;
    }
    for (size_t k = 0; !rc && k < out->n_segments; k++) {
        struct lsh_spread_segment *s = &out->segments[k];
        if (!s->by_rows) {
            rc = cut_groups(cfg, plan, done, ranks, s);
            continue;
        }
        /* slices over ranks as evenly as they go, the first ranks taking one
         * more; every rank works on every point of the unit */
        double work = 0.0;
        size_t todo = 0;
        for (size_t g = s->first_group; g < s->end_group; g++) {
            work += group_cost(cfg, plan, done, g);
            todo += group_todo(plan, done, g);
        }
        if (work > 0.0)
            work += reference_cost(cfg, plan, plan->groups[s->first_group].dataset);
        const size_t q = s->slices / ranks, extra = s->slices % ranks;
        for (unsigned r = 0; r < ranks; r++) {
            s->cut[r + 1] = s->cut[r] + q + (r < extra);
            const size_t mine = s->cut[r + 1] - s->cut[r];
            s->cost[r] = work * (double)mine / (double)s->slices;
            s->points[r] = mine ? todo : 0;
        }
    }
    if (rc) {
        lsh_spread_free(out);
        return lsh_error_set(err, rc, "out of memory");
    }
    return 0;
}

void lsh_spread_free(struct lsh_spread *s)
{
    for (size_t k = 0; s->segments && k < s->n_segments; k++) {
        free(s->segments[k].cut);
        free(s->segments[k].cost);
        free(s->segments[k].points);
    }
    free(s->segments);
    memset(s, 0, sizeof *s);
}

/* "name", "name (layer 1, head 3)" of group g's unit. */
static void unit_name(const struct lsh_config *cfg, const struct lsh_plan *plan, size_t g,
                      char *buf, size_t size)
{
    const struct lsh_hash_group *hg = &plan->groups[g];
    const char *name = cfg->datasets[hg->dataset].name;
    if (hg->where.layer >= 0 && hg->where.head >= 0)
        snprintf(buf, size, "%s (layer %d, head %d)", name, (int)hg->where.layer,
                 (int)hg->where.head);
    else if (hg->where.head >= 0)
        snprintf(buf, size, "%s (head %d)", name, (int)hg->where.head);
    else if (hg->where.layer >= 0)
        snprintf(buf, size, "%s (layer %d)", name, (int)hg->where.layer);
    else
        snprintf(buf, size, "%s", name);
}

void lsh_spread_print(const struct lsh_spread *s, const struct lsh_config *cfg,
                      const struct lsh_plan *plan, size_t max_lines, FILE *out)
{
    fprintf(out, "spread over %u rank%s: %zu segment%s in plan order\n", s->ranks,
            s->ranks == 1 ? "" : "s", s->n_segments, s->n_segments == 1 ? "" : "s");
    for (size_t k = 0; k < s->n_segments; k++) {
        if (k == max_lines) {
            fprintf(out, "  ... and %zu more segments\n", s->n_segments - k);
            break;
        }
        const struct lsh_spread_segment *sg = &s->segments[k];
        double total = 0.0;
        for (unsigned r = 0; r < s->ranks; r++)
            total += sg->cost[r];
        char a[160], b[160];
        unit_name(cfg, plan, sg->first_group, a, sizeof a);
        unit_name(cfg, plan, sg->end_group - 1, b, sizeof b);
        if (sg->by_rows)
            fprintf(out, "  %s: by rows, %zu rows in %zu slices of %zu\n", a, sg->m, sg->slices,
                    lsh_slice_rows());
        else if (strcmp(a, b) == 0)
            fprintf(out, "  %s: by hash groups (%zu)\n", a, sg->end_group - sg->first_group);
        else
            fprintf(out, "  %s .. %s: by hash groups (%zu)\n", a, b,
                    sg->end_group - sg->first_group);
        for (unsigned r = 0; r < s->ranks; r++) {
            const double share = total > 0.0 ? 100.0 * sg->cost[r] / total : 0.0;
            if (sg->by_rows)
                fprintf(out, "    rank %u: slices [%zu, %zu), %zu points, %.0f%% of the work\n", r,
                        sg->cut[r], sg->cut[r + 1], sg->points[r], share);
            else
                fprintf(out, "    rank %u: groups [%zu, %zu), %zu points, %.0f%% of the work\n", r,
                        sg->cut[r], sg->cut[r + 1], sg->points[r], share);
        }
    }
}
