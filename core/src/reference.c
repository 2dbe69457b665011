/* reference.c - the once-per-dataset full-attention pass, as per-row summaries. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastexp.h"
#include "linalg.h"
#include "parallel.h"

double lsh_attn_raw(const struct lsh_attn *a, size_t i, size_t j)
{
    return lsh_dot(a->d, a->q + i * a->d, a->k + j * a->d);
}

/* Rows per block: a block's scores (rows x n doubles) stay around 32 MiB, so
 * the pass streams over rows whatever n is; but at least 8 rows, for GEMM. */
static size_t block_rows(size_t n)
{
    size_t b = ((size_t)1 << 22) / (n ? n : 1);
    if (b < 8)
        b = 8;
    if (b > 128)
        b = 128;
    return b;
}

struct pass {
    const struct lsh_attn *a;
    struct lsh_reference *ref;
    size_t rows_per_block;
    double **scratch;   /* per thread: rows_per_block x n scores, then A */
    double **qblock;    /* per thread: rows_per_block x d gathered query rows */
};

static size_t row_of(const struct lsh_reference *ref, size_t r)
{
    return ref->rows ? ref->rows[r] : r;
}

/* Insert (j, s) into the best-first list top[0..*len) of capacity k; j comes
 * in ascending order, so an equal score ranks after those already there. */
static void topk_insert(uint32_t *top, double *val, size_t *len, size_t k, uint32_t j, double s)
{
    if (k == 0)
        return;
    if (*len == k && !(s > val[k - 1]))
        return;
    size_t pos = *len < k ? *len : k - 1;
    while (pos > 0 && s > val[pos - 1]) {
        top[pos] = top[pos - 1];
        val[pos] = val[pos - 1];
        pos--;
    }
    top[pos] = j;
    val[pos] = s;
    if (*len < k)
        (*len)++;
}

/* One row's summaries from its raw dot products q_i . k_j (in place: raw
 * becomes A_i, zero outside U_i). */
static void summarise_row(const struct lsh_attn *a, struct lsh_reference *ref, size_t r,
                          size_t i, double *raw, double *topval, double *row_sum)
{
    const size_t n = a->n;
    const int fallback = lsh_attn_u_fallback(a, i);
    /* U_i is a prefix [0, hi) of keys, minus i when excluding self. */
    size_t hi = a->causal ? i + 1 : n;
    int skip_i = a->exclude_self;
    if (fallback) {
        hi = n;
        skip_i = 0;
    }

    /* U_i as at most two ranges [lo_t, hi_t) of keys: [0, hi) without i, or {i} */
    size_t ranges[2][2] = {{0, hi}, {0, 0}};
    if (fallback) {
        ranges[0][0] = i;
        ranges[0][1] = i + 1;
    } else if (skip_i && i < hi) {
        ranges[0][1] = i;
        ranges[1][0] = i + 1;
        ranges[1][1] = hi;
    }
    double gden = 0.0, mx = -INFINITY;
    uint32_t count = 0;
    size_t tlen = 0;
    uint32_t *top = ref->top + r * ref->kmax;
    const double *gn = a->gnorm;
    for (int t = 0; t < 2; t++) {
        const size_t lo = ranges[t][0], up = ranges[t][1];
        count += (uint32_t)(up - lo);
        /* G_ij^2 over j != i (split loops keep them vectorisable) */
        for (size_t j = lo; j < up && j < i; j++)
            gden += gn ? raw[j] * gn[j] * raw[j] * gn[j] : raw[j] * raw[j];
        for (size_t j = lo > i + 1 ? lo : i + 1; j < up; j++)
            gden += gn ? raw[j] * gn[j] * raw[j] * gn[j] : raw[j] * raw[j];
        /* the max and the top-k: a new entry beats the current k-th rarely */
        double kth = tlen == ref->kmax && tlen ? topval[tlen - 1] : -INFINITY;
        for (size_t j = lo; j < up; j++) {
            double sj = a->scale * raw[j];
            mx = sj > mx ? sj : mx;
            if (sj > kth || tlen < ref->kmax) {
                topk_insert(top, topval, &tlen, ref->kmax, (uint32_t)j, sj);
                kth = tlen == ref->kmax && tlen ? topval[tlen - 1] : -INFINITY;
            }
        }
    }
    /* exp(s_ij - max) over U_i, left unnormalised: the caller's GEMM for O
     * and this row's sums divide by sum_j once.  In chunks that stay in L1,
     * so the row is read from memory once more, not three times. */
    double sum = 0.0, sq = 0.0;
    if (fallback) {
        memset(raw, 0, n * sizeof *raw);
        raw[i] = 1.0; /* exp(s_ii - s_ii) */
        sum = sq = 1.0;
    } else {
        for (size_t j0 = 0; j0 < hi; j0 += 1024) {
            const size_t j1 = j0 + 1024 < hi ? j0 + 1024 : hi;
            lsh_exp_affine(raw + j0, j1 - j0, a->scale, mx);
            if (skip_i && i >= j0 && i < j1)
                raw[i] = 0.0;
            for (size_t j = j0; j < j1; j++) {
                sum += raw[j];
                sq += raw[j] * raw[j];
            }
        }
        if (hi < n)
            memset(raw + hi, 0, (n - hi) * sizeof *raw);
    }
    double lse = mx + log(sum);
    double a2 = sq / (sum * sum);
    *row_sum = sum;
    ref->lse[r] = lse;
    ref->sum_a2[r] = a2;
    ref->gram_den[r] = gden;
    ref->u_count[r] = count;
}

static int block_task(void *ctx, size_t task, unsigned thread)
{
    struct pass *p = ctx;
    const struct lsh_attn *a = p->a;
    struct lsh_reference *ref = p->ref;
    size_t r0 = task * p->rows_per_block;
    size_t rb = ref->m - r0 < p->rows_per_block ? ref->m - r0 : p->rows_per_block;
    double *scores = p->scratch[thread];
    double *qb = p->qblock[thread];
    double topval[1024];
    double *tv = ref->kmax <= 1024 ? topval : NULL;
    double *tv_heap = NULL;
    if (!tv) {
        tv = tv_heap = malloc(ref->kmax * sizeof *tv);
        if (!tv)
            return LSH_ENOMEM;
    }

    for (size_t r = 0; r < rb; r++)
        memcpy(qb + r * a->d, a->q + row_of(ref, r0 + r) * a->d, a->d * sizeof *qb);
    lsh_gemm_nt(rb, a->n, a->d, qb, a->k, scores);
    if (ref->raw)
        memcpy(ref->raw + r0 * a->n, scores, rb * a->n * sizeof *scores);
    double sums[128];
    for (size_t r = 0; r < rb; r++)
        summarise_row(a, ref, r0 + r, row_of(ref, r0 + r), scores + r * a->n, tv, &sums[r]);
    /* O = A V from the unnormalised rows, then each row over its sum */
    double *o = ref->out + r0 * a->d_v;
    lsh_gemm(rb, a->d_v, a->n, scores, a->v, o, 0);
    for (size_t r = 0; r < rb; r++)
        for (size_t e = 0; e < a->d_v; e++)
            o[r * a->d_v + e] /= sums[r];
    free(tv_heap);
    return 0;
}

void lsh_reference_free(struct lsh_reference *ref)
{
    if (!ref)
        return;
    free((void *)ref->rows);
    free(ref->lse);
    free(ref->sum_a2);
    free(ref->gram_den);
    free(ref->u_count);
    free(ref->out);
    free(ref->top);
    free(ref->raw);
    free(ref);
}

size_t lsh_reference_cache_bytes(size_t m, size_t n)
{
    return m * n * sizeof(double);
}

int lsh_reference_compute(const struct lsh_attn *attn, const size_t *rows, size_t m,
                          unsigned threads, size_t cache_bytes, struct lsh_reference **out,
                          struct lsh_error *err)
{
    double t0 = lsh_now();
    const size_t n = attn->n;
    if (n == 0)
        return lsh_error_set(err, LSH_EINVAL, "reference: the dataset has no rows");
    struct lsh_reference *ref = calloc(1, sizeof *ref);
    if (!ref)
        return lsh_error_set(err, LSH_ENOMEM, "reference: out of memory");
    ref->attn = attn;
    ref->m = rows ? m : n;
    if (rows) {
        size_t *copy = malloc(m * sizeof *copy);
        if (!copy) {
            free(ref);
            return lsh_error_set(err, LSH_ENOMEM, "reference: out of memory");
        }
        memcpy(copy, rows, m * sizeof *copy);
        ref->rows = copy;
    }
    uint32_t kmax = 0;
    for (size_t t = 0; t < attn->n_topk; t++)
        if (attn->topk[t] > kmax)
            kmax = attn->topk[t];
    ref->kmax = kmax < n ? kmax : n;

    const size_t M = ref->m;
    ref->lse = malloc(M * sizeof *ref->lse);
    ref->sum_a2 = malloc(M * sizeof *ref->sum_a2);
    ref->gram_den = malloc(M * sizeof *ref->gram_den);
    ref->u_count = malloc(M * sizeof *ref->u_count);
    ref->out = malloc((M * attn->d_v + 1) * sizeof *ref->out);
    ref->top = calloc(M * ref->kmax + 1, sizeof *ref->top);
    if (M * n <= cache_bytes / sizeof(double))
        ref->raw = malloc(lsh_reference_cache_bytes(M, n)); /* NULL: stream instead */

    if (threads < 1)
        threads = 1;
    struct pass p = {.a = attn, .ref = ref, .rows_per_block = block_rows(n)};
    p.scratch = calloc(threads, sizeof *p.scratch);
    p.qblock = calloc(threads, sizeof *p.qblock);
    int rc = 0;
    if (!ref->lse || !ref->sum_a2 || !ref->gram_den || !ref->u_count || !ref->out ||
        !ref->top || !p.scratch || !p.qblock)
        rc = LSH_ENOMEM;
    for (unsigned t = 0; t < threads && !rc; t++) {
        p.scratch[t] = malloc(p.rows_per_block * n * sizeof(double));
        p.qblock[t] = malloc(p.rows_per_block * attn->d * sizeof(double) + 1);
        if (!p.scratch[t] || !p.qblock[t])
            rc = LSH_ENOMEM;
    }
    size_t n_blocks = (M + p.rows_per_block - 1) / p.rows_per_block;
    if (!rc)
        rc = lsh_parallel_for(threads, n_blocks, block_task, &p);
    for (unsigned t = 0; p.scratch && t < threads; t++) {
        free(p.scratch[t]);
        free(p.qblock[t]);
    }
    free(p.scratch);
    free(p.qblock);
    if (rc) {
        lsh_reference_free(ref);
        return lsh_error_set(err, rc, "reference: out of memory (n = %zu)", n);
    }
    ref->flops = 2.0 * (double)M * (double)n * (double)(attn->d + attn->d_v);
    ref->seconds = lsh_now() - t0;
    *out = ref;
    return 0;
}
