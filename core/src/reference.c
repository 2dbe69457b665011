/* reference.c - the once-per-dataset full-attention pass, as per-row summaries.
 *
 * Flash-attention style: fixed blocks of ROW_BLOCK query rows against chunks
 * of KEY_CHUNK keys, so a chunk's scores (ROW_BLOCK x KEY_CHUNK doubles) stay
 * in L2 between the two GEMMs and the per-row work in between.  Per row an
 * online softmax: a running max m_i, and the running sums (sum of exps, sum
 * of their squares, and O_i) are rescaled whenever m_i grows, before the
 * chunk is added, so every exp is <= 1.  Blocks and chunks are fixed and each
 * row's sums are accumulated in one fixed order, so the result does not
 * depend on the thread count. */
#define _GNU_SOURCE /* madvise */
#include "reference.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lshlab/fmadots.h>

#include "fastexp.h"
#include "linalg.h"
#include "parallel.h"

double lsh_attn_raw(const struct lsh_attn *a, size_t i, size_t j)
{
    return lsh_chain_dot(a->d, a->q + i * a->d, a->k + j * a->d);
}

/* Block shape: ROW_BLOCK x KEY_CHUNK scores are 512 KiB, well inside L2
 * (2 MiB a core here) beside the chunk's K and V (KEY_CHUNK x 64 doubles
 * each).  Fixed, so the result is the same on every thread count and every
 * n.  At n = 4096, d = 64 on the Xeon of tools/bench/NOTES.md, 128-512 rows
 * x 256-1024 keys are within ~3% of each other (256 x 256 the best, fewer
 * repacks of K and V per key); 64 rows lose ~10% to GEMM overheads. */
#define ROW_BLOCK ((size_t)256)
#define KEY_CHUNK ((size_t)256)
/* A chunk of K, transposed for lshlab_fma_dots: a row stride that is not a
 * multiple of 4 KiB (whose columns would share one cache set) */
#define KT_STRIDE (KEY_CHUNK + 8)

/* Per-thread scratch, allocated once. */
struct scratch {
    double *s;       /* ROW_BLOCK x KEY_CHUNK scores, then exps (row stride kc) */
    double *qb;      /* ROW_BLOCK x d gathered query rows */
    double *topval;  /* ROW_BLOCK x kmax: the scores of the running top-k */
    size_t *tlen;    /* ROW_BLOCK: running top-k lengths */
    double *mx;      /* ROW_BLOCK running maxima */
    double *sum, *sq, *gram; /* ROW_BLOCK x 8: running sums, lane by lane */
    double *lanemax; /* 2 x KEY_CHUNK / 8: lane maxima of a row's two pieces */
    double *kt;      /* d x KT_STRIDE: a chunk of K, transposed */
    double *vp;      /* KEY_CHUNK x lsh_pad8(d_v): its rows of V, padded (d_v % 8 != 0) */
};

struct pass {
    const struct lsh_attn *a;
    struct lsh_reference *ref;
    size_t r0, r1;           /* the evaluated rows computed (ref->r0, ref->r1) */
    struct scratch *scratch; /* per thread */
    double *block_flops;     /* per block, summed in block order at the end */
};

static size_t row_of(const struct lsh_reference *ref, size_t r)
{
    return ref->rows ? ref->rows[r] : r;
}

/* U_i as a range [lo, hi) of keys minus `skip` (or skip = (size_t)-1). */
struct urange {
    size_t lo, hi, skip;
};

static struct urange u_range(const struct lsh_attn *a, size_t i)
{
    struct urange u;
    if (lsh_attn_u_fallback(a, i)) {
        u.lo = i;
        u.hi = i + 1;
        u.skip = (size_t)-1;
    } else {
        u.lo = 0;
        u.hi = a->causal ? i + 1 : a->n;
        u.skip = a->exclude_self && i < u.hi ? i : (size_t)-1;
    }
    return u;
}

/* Insert (j, s) into the best-first list top[0..*len) of capacity k; j comes
 * in ascending order, so an equal score ranks after those already there. */
static inline void topk_insert(uint32_t *top, double *val, size_t *len, size_t k, uint32_t j,
                               double s)
{
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

#define INLINE static inline __attribute__((always_inline))

/* Eight doubles as one vector (GCC vector extensions: each clone lowers it
 * to its own registers, lane by lane, so the same bits whichever runs). */
typedef double v8d __attribute__((vector_size(64)));
typedef double v8du __attribute__((vector_size(64), aligned(8))); /* unaligned */
typedef long long v8l __attribute__((vector_size(64)));
#define LOAD8(p) (*(const v8du *)(p))
#define STORE8(p, v) (*(v8du *)(p) = (v))
/* acc = max(acc, v) lane by lane (v > acc ? v : acc). */
#define MAX8(acc, v)                                                                        \
    do {                                                                                    \
        const v8d v_ = (v);                                                                 \
        const v8l m_ = v_ > (acc);                                                          \
        (acc) = (v8d)((m_ & (v8l)v_) | (~m_ & (v8l)(acc)));                                 \
    } while (0)

/* The last n % 8 of x[0..n) as a vector padded with zeros. */
#define TAIL8(dst, x, n)                                                                    \
    do {                                                                                    \
        double t_[8] = {0};                                                                 \
        memcpy(t_, (x) + ((n) & ~(size_t)7), ((n)&7) * sizeof(double));                    \
        memcpy(&(dst), t_, sizeof t_);                                                      \
    } while (0)

/* A fixed-order sum of the lanes. */
INLINE double hsum8(const double *l)
{
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* max(m, max_t scale * x[t]) over t < n: exact, so any order gives it.
 * On the way, g[8q + l] = the max of group q of 64 keys in lane l (keys
 * 64q + 8a + l, a < 8), for row_topk. */
INLINE double row_max(const double *x, size_t n, double scale, double m, double *g)
{
    v8d acc = {m, m, m, m, m, m, m, m};
    size_t t = 0;
    for (; t + 64 <= n; t += 64) {
        v8d g0 = scale * LOAD8(x + t), g1 = scale * LOAD8(x + t + 8);
        v8d g2 = scale * LOAD8(x + t + 16), g3 = scale * LOAD8(x + t + 24);
        MAX8(g0, scale * LOAD8(x + t + 32));
        MAX8(g1, scale * LOAD8(x + t + 40));
        MAX8(g2, scale * LOAD8(x + t + 48));
        MAX8(g3, scale * LOAD8(x + t + 56));
        MAX8(g0, g1);
        MAX8(g2, g3);
        MAX8(g0, g2);
        STORE8(g + t / 8, g0);
        MAX8(acc, g0);
    }
    for (; t + 8 <= n; t += 8)
        MAX8(acc, scale * LOAD8(x + t));
    double l[8];
    memcpy(l, &acc, sizeof l);
    for (int u = 0; u < 8; u++)
        m = l[u] > m ? l[u] : m;
    for (; t < n; t++) {
        const double s = scale * x[t];
        m = s > m ? s : m;
    }
    return m;
}

/* acc += (x[t] g[t])^2 lane by lane (g NULL: x[t]^2), t < n. */
INLINE void row_gram(const double *x, const double *g, size_t n, double *acc)
{
    v8d a = LOAD8(acc), v, w;
    size_t t = 0;
    if (g) {
        for (; t + 8 <= n; t += 8) {
            v = LOAD8(x + t) * LOAD8(g + t);
            a += v * v;
        }
        TAIL8(v, x, n);
        TAIL8(w, g, n);
        v *= w;
    } else {
        for (; t + 8 <= n; t += 8) {
            v = LOAD8(x + t);
            a += v * v;
        }
        TAIL8(v, x, n);
    }
    a += v * v;
    STORE8(acc, a);
}

/* sum += x[t], sq += x[t]^2 lane by lane, t < n. */
INLINE void row_sums(const double *x, size_t n, double *sum, double *sq)
{
    v8d s = LOAD8(sum), q = LOAD8(sq), v;
    size_t t = 0;
    for (; t + 8 <= n; t += 8) {
        v = LOAD8(x + t);
        s += v;
        q += v * v;
    }
    TAIL8(v, x, n);
    s += v;
    q += v * v;
    STORE8(sum, s);
    STORE8(sq, q);
}

/* The k-th largest of g[0..m), k <= TOPK_BOUND_MAX < m. */
#define TOPK_BOUND_MAX 16
static double kth_largest(const double *g, size_t m, size_t k)
{
    double best[TOPK_BOUND_MAX];
    size_t len = 0;
    for (size_t t = 0; t < m; t++) {
        const double v = g[t];
        if (len == k && !(v > best[k - 1]))
            continue;
        size_t pos = len < k ? len++ : k - 1;
        while (pos > 0 && v > best[pos - 1]) {
            best[pos] = best[pos - 1];
            pos--;
        }
        best[pos] = v;
    }
    return best[k - 1];
}

/* Move the top-k list on over keys j0 + t, t < n, scores scale * x[t], with
 * g the lane maxima of row_max.  Each lane maximum is the score of a distinct
 * key, so a key below the k-th largest of them, b, is beaten by k keys of
 * this chunk; only the lanes of a group whose maximum is >= b and above the
 * current k-th are looked at.  Their keys above both bounds are collected
 * without branches, in ascending order (the tie rule), then inserted. */
INLINE void row_topk(const double *x, size_t n, size_t j0, double scale, uint32_t *top,
                     double *val, size_t *len, size_t k, const double *g)
{
    const size_t ng = n / 64;
    /* b matters while the list fills (a row's first chunk); later the k-th
     * of the keys so far is the better bound */
    const double b = *len < k && k <= TOPK_BOUND_MAX && 8 * ng > k ? kth_largest(g, 8 * ng, k)
                                                                    : -INFINITY;
    double kth = *len == k ? val[k - 1] : -INFINITY;
    uint32_t cj[64];
    double cs[64];
    for (size_t q = 0; q < ng; q++) {
        unsigned lanes = 0;
        for (unsigned l = 0; l < 8; l++)
            lanes |= (unsigned)((g[q * 8 + l] >= b) & (g[q * 8 + l] > kth)) << l;
        if (!lanes)
            continue;
        size_t c = 0;
        for (size_t u0 = q * 64; u0 < q * 64 + 64; u0 += 8)
            for (unsigned m = lanes; m; m &= m - 1) {
                const size_t u = u0 + (unsigned)__builtin_ctz(m);
                const double s = scale * x[u];
                cj[c] = (uint32_t)(j0 + u);
                cs[c] = s;
                c += (s >= b) & (s > kth);
            }
        for (size_t t = 0; t < c; t++)
            if (cs[t] > kth) {
                topk_insert(top, val, len, k, cj[t], cs[t]);
                kth = *len == k ? val[k - 1] : -INFINITY;
            }
    }
    for (size_t t = ng * 64; t < n; t++) {
        const double s = scale * x[t];
        if (s >= b && s > kth) {
            topk_insert(top, val, len, k, (uint32_t)(j0 + t), s);
            kth = *len == k ? val[k - 1] : -INFINITY;
        }
    }
}

/* One chunk [j0, j0 + kc) for the rows of a block: s (rb x kc raw scores)
 * becomes the unnormalised exps (zero outside U_i), and each row's running
 * max and sums move on; ref->out's block rows are rescaled where the max
 * grew. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void chunk_rows(const struct lsh_attn *a, struct lsh_reference *ref,
                       struct scratch *w, size_t r0, size_t rb, size_t j0, size_t kc)
{
    const size_t dv = a->d_v, kmax = ref->kmax;
    const double scale = a->scale;
    const double *gn = a->gnorm;
    for (size_t r = 0; r < rb; r++) {
        const size_t i = row_of(ref, r0 + r);
        double *x = w->s + r * kc;
        const struct urange u = u_range(a, i);
        const size_t lo = u.lo > j0 ? u.lo : j0;
        const size_t hi = u.hi < j0 + kc ? u.hi : j0 + kc;
        if (lo >= hi) {
            memset(x, 0, kc * sizeof *x);
            continue;
        }
        /* [lo, hi) as up to two pieces without `skip` */
        size_t pl[2] = {lo, 0}, ph[2] = {hi, 0};
        int np = 1;
        if (u.skip >= lo && u.skip < hi) {
            ph[0] = u.skip;
            pl[1] = u.skip + 1;
            ph[1] = hi;
            np = 2;
        }
        double cm = -INFINITY;
        for (int p = 0; p < np; p++)
            cm = row_max(x + (pl[p] - j0), ph[p] - pl[p], scale, cm,
                         w->lanemax + p * (KEY_CHUNK / 8));
        /* the top-k: only when the chunk has a score above the k-th */
        size_t *len = &w->tlen[r];
        double *tv = w->topval + r * kmax;
        if (kmax && (*len < kmax || cm > tv[kmax - 1]))
            for (int p = 0; p < np; p++)
                row_topk(x + (pl[p] - j0), ph[p] - pl[p], pl[p], scale,
                         ref->top + (r0 + r) * kmax, tv, len, kmax,
                         w->lanemax + p * (KEY_CHUNK / 8));
        /* G_ij^2 over j != i */
        double *gram = w->gram + r * 8;
        if (i >= lo && i < hi) {
            row_gram(x + (lo - j0), gn ? gn + lo : NULL, i - lo, gram);
            row_gram(x + (i + 1 - j0), gn ? gn + i + 1 : NULL, hi - i - 1, gram);
        } else {
            row_gram(x + (lo - j0), gn ? gn + lo : NULL, hi - lo, gram);
        }
        /* a larger max: rescale what the earlier chunks added, first */
        double *sum = w->sum + r * 8, *sq = w->sq + r * 8;
        double m = w->mx[r];
        if (cm > m) {
            if (m > -INFINITY) {
                const double f = lsh_exp(m - cm), f2 = lsh_exp(2.0 * (m - cm));
                STORE8(sum, LOAD8(sum) * f);
                STORE8(sq, LOAD8(sq) * f2);
                double *o = ref->out + (r0 + r) * dv;
                for (size_t e = 0; e < dv; e++)
                    o[e] *= f;
            }
            w->mx[r] = m = cm;
        }
        lsh_exp_affine(x + (lo - j0), hi - lo, scale, m);
        if (lo > j0)
            memset(x, 0, (lo - j0) * sizeof *x);
        if (hi < j0 + kc)
            memset(x + (hi - j0), 0, (j0 + kc - hi) * sizeof *x);
        if (np == 2)
            x[u.skip - j0] = 0.0;
        row_sums(x + (lo - j0), hi - lo, sum, sq);
    }
}

static int block_task(void *ctx, size_t task, unsigned thread)
{
    struct pass *p = ctx;
    const struct lsh_attn *a = p->a;
    struct lsh_reference *ref = p->ref;
    struct scratch *w = &p->scratch[thread];
    const size_t n = a->n, d = a->d, dv = a->d_v;
    const size_t r0 = p->r0 + task * ROW_BLOCK; /* r0 is a multiple of ROW_BLOCK */
    const size_t rb = p->r1 - r0 < ROW_BLOCK ? p->r1 - r0 : ROW_BLOCK;
    double flops = 0.0;

    /* keys [0, khi) hold every U_i of the block */
    size_t khi = 0;
    for (size_t r = 0; r < rb; r++) {
        const size_t i = row_of(ref, r0 + r);
        const struct urange u = u_range(a, i);
        khi = u.hi > khi ? u.hi : khi;
        memcpy(w->qb + r * d, a->q + i * d, d * sizeof *w->qb);
        w->mx[r] = -INFINITY;
        memset(w->sum + r * 8, 0, 8 * sizeof *w->sum);
        memset(w->sq + r * 8, 0, 8 * sizeof *w->sq);
        memset(w->gram + r * 8, 0, 8 * sizeof *w->gram);
        w->tlen[r] = 0;
        ref->u_count[r0 + r] =
            (uint32_t)(u.hi - u.lo - (u.skip != (size_t)-1 ? 1 : 0));
    }
    double *o = ref->out + r0 * dv;
    memset(o, 0, rb * dv * sizeof *o);

    /* Both GEMMs as FMA chains (lshlab/fmadots.h): the same bits on every
     * machine, and faster than OpenBLAS on the kernels it is pinned to here */
    const size_t dvp = lsh_pad8(dv);
    /* The score cache holds every key, also those past U_i under causal:
     * the scores of the chunks past khi are for it alone.  Its bits are
     * lsh_attn_raw's, which is the same FMA chain, so --memory-limit changes
     * only how the metrics are computed. */
    double *raw = ref->raw ? ref->raw + (r0 - ref->r0) * n : NULL; /* the part's rows alone */
    for (size_t j0 = 0, kc; j0 < (raw ? n : khi); j0 += kc) {
        const size_t end = j0 < khi ? khi : n;
        kc = end - j0 < KEY_CHUNK ? end - j0 : KEY_CHUNK;
        lsh_gather_transposed(kc, d, a->k + j0 * d, NULL, KT_STRIDE, w->kt);
        lshlab_fma_dots(rb, kc, d, KT_STRIDE, w->qb, w->kt, w->s, 0);
        for (size_t r = 0; raw && r < rb; r++)
            memcpy(raw + r * n + j0, w->s + r * kc, kc * sizeof *raw);
        if (j0 >= khi)
            continue;
        const double *vc = a->v + j0 * dv;
        if (dvp != dv) {
            for (size_t u = 0; u < kc; u++)
                memcpy(w->vp + u * dvp, vc + u * dv, dv * sizeof *vc);
            vc = w->vp;
        }
        chunk_rows(a, ref, w, r0, rb, j0, kc);
        lshlab_fma_dots(rb, dv, kc, dvp, w->s, vc, o, 1);
        flops += 2.0 * (double)rb * (double)kc * (double)(d + dv);
    }

    for (size_t r = 0; r < rb; r++) {
        const double sum = hsum8(w->sum + r * 8);
        ref->lse[r0 + r] = w->mx[r] + log(sum);
        ref->sum_a2[r0 + r] = hsum8(w->sq + r * 8) / (sum * sum);
        ref->gram_den[r0 + r] = hsum8(w->gram + r * 8);
        for (size_t e = 0; e < dv; e++)
            o[r * dv + e] /= sum;
    }
    p->block_flops[task] = flops;
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
    return lsh_size_mul3(m, n, sizeof(double));
}

struct lsh_bytes lsh_reference_bytes(size_t n, size_t m, size_t d, size_t d_v, size_t kmax)
{
    const size_t D = sizeof(double), U = sizeof(uint32_t);
    const size_t m1 = lsh_size_add(m, 1);
    kmax = kmax < n ? kmax : n;
    struct lsh_bytes b;
    /* rows, lse, sum_a2, gram_den, u_count, out, top, block_flops */
    b.shared = lsh_size_mul(m1, 4 * D + U);
    b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(lsh_size_mul(m, d_v), 1), D));
    b.shared = lsh_size_add(b.shared, lsh_size_mul(lsh_size_add(lsh_size_mul(m, kmax), 1), U));
    b.shared = lsh_size_add(b.shared, lsh_size_mul(m1 / ROW_BLOCK + 2, D));
    b.shared = lsh_size_add(b.shared, sizeof(struct lsh_reference));
    /* struct scratch and what scratch_alloc takes */
    b.per_thread = sizeof(struct scratch) + ROW_BLOCK * KEY_CHUNK * D + ROW_BLOCK * sizeof(size_t) +
                   25 * ROW_BLOCK * D + (KEY_CHUNK / 4 + 1) * D;
    b.per_thread = lsh_size_add(b.per_thread,
                                lsh_size_mul(lsh_size_add(lsh_size_mul(ROW_BLOCK, d), 1), D));
    b.per_thread = lsh_size_add(b.per_thread,
                                lsh_size_mul(lsh_size_add(lsh_size_mul(ROW_BLOCK, kmax), 1), D));
    /* kt, vp */
    b.per_thread = lsh_size_add(b.per_thread,
                                lsh_size_mul(lsh_size_add(lsh_size_mul(KT_STRIDE, d), 1), D));
    b.per_thread = lsh_size_add(
        b.per_thread, lsh_size_mul(lsh_size_add(lsh_size_mul(KEY_CHUNK, lsh_pad8(d_v)), 1), D));
    return b;
}

/* The Euclidean norm of x[0..d) without overflow or underflow on the way
 * (the largest entry is factored out); NaN or Inf when an entry is. */
static double safe_norm(const double *x, size_t d)
{
    double mx = 0.0;
    for (size_t e = 0; e < d; e++) {
        const double v = fabs(x[e]);
        if (!(v <= mx)) /* NaN too */
            mx = v;
    }
    if (mx == 0.0 || !isfinite(mx))
        return mx;
    double s = 0.0;
    for (size_t e = 0; e < d; e++)
        s += (x[e] / mx) * (x[e] / mx);
    return mx * sqrt(s);
}

void lsh_attn_normalize_rows(const double *q, size_t n, size_t d, double *k, double *norm)
{
    for (size_t j = 0; j < n; j++) {
        const double *x = q + j * d;
        double s = 0.0;
        for (size_t e = 0; e < d; e++)
            s += x[e] * x[e];
        /* the plain sum where it neither underflows nor overflows (the bits
         * every earlier run had); the scaled one elsewhere */
        s = s > 0x1p-900 && s < 0x1p900 ? sqrt(s) : safe_norm(x, d);
        norm[j] = s;
        for (size_t e = 0; e < d; e++) /* a zero row stays zero */
            k[j * d + e] = s > 0.0 ? x[e] / s : 0.0;
    }
}

/* The largest row norm of an n x d matrix (NaN beats every number). */
static double max_norm(const double *x, size_t n, size_t d)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double v = safe_norm(x + i * d, d);
        if (!(v <= mx))
            mx = v;
    }
    return mx;
}

int lsh_attn_check(const struct lsh_attn *a, const char *dataset, struct lsh_error *err)
{
    const char *name = dataset ? dataset : "?";
    const double mq = max_norm(a->q, a->n, a->d), mk = max_norm(a->k, a->n, a->d);
    const double mv = max_norm(a->v, a->n, a->d_v);
    double mg = 1.0;
    for (size_t j = 0; a->gnorm && j < a->n; j++)
        if (!(fabs(a->gnorm[j]) <= mg))
            mg = fabs(a->gnorm[j]);
    if (!isfinite(mq) || !isfinite(mk) || !isfinite(mv) || !isfinite(mg) || !isfinite(a->scale))
        return lsh_error_set(err, LSH_EDATA,
                             "dataset '%s': %s holds a value that is not finite, or rows whose "
                             "norm overflows (largest |q| %g, |k| %g, |v| %g, scale %g); allowed: "
                             "finite values whose row norms are finite (a smaller norm or "
                             "spread for generated data, or normalised data)",
                             name, !isfinite(mq) ? "Q" : !isfinite(mk) ? "K" : !isfinite(mv) ? "V"
                                   : !isfinite(mg) ? "the norms of Q" : "the scale",
                             mq, mk, mv, a->scale);
    /* scale * max|q| * max|k| <= 2^33 / d: a score's rounding, about d 2^-53
     * times that, stays below 2^-20 */
    const double bound = fabs(a->scale) * mq * mk;
    const double allowed = LSH_ATTN_SCORE_ERR / (0x1p-53 * (double)(a->d ? a->d : 1));
    if (!(bound <= allowed))
        return lsh_error_set(err, LSH_EDATA,
                             "dataset '%s': scores scale * q.k reach up to %g (scale %g, largest "
                             "|q| %g, largest |k| %g), but at d = %zu they are formed exactly "
                             "enough (rounding below 2^-20) only up to %g; allowed: a smaller "
                             "scale, a smaller norm or spread (generated data), or normalised "
                             "data",
                             name, bound, a->scale, mq, mk, a->d, allowed);
    /* gram_recovery is a ratio of sums of (q.k)^2, free of the data's scale:
     * when even the largest Gram entry is below 2^-250 its square nears the
     * underflow and the sums come out 0 (written as 0/0 = 0) or lose their
     * digits; all-zero data is a true 0/0 and stays allowed */
    double g = 1.0;
    if (a->gnorm) { /* G_ij = (q_i . k_j) * gnorm[j] */
        g = 0.0;
        for (size_t j = 0; j < a->n; j++)
            g = fabs(a->gnorm[j]) > g ? fabs(a->gnorm[j]) : g;
    }
    const double gmax = mq * mk * g; /* may underflow to 0 itself */
    if (mq > 0.0 && mk > 0.0 && g > 0.0 && gmax < 0x1p-250)
        return lsh_error_set(err, LSH_EDATA,
                             "dataset '%s': Gram entries q.k are at most %g x %g x %g (largest "
                             "|q|, |k| and key norm factor), so their squares underflow and "
                             "gram_recovery "
                             "cannot be formed; allowed: rows whose largest |q| |k| is at least "
                             "2^-250 (about 5.5e-76), or all zero (gram_recovery does not "
                             "depend on the data's scale: scale it up)",
                             name, mq, mk, g);
    /* sums of squares over n rows (and n keys) stay far from overflow */
    const double big = 0x1p500, rows = (double)a->n;
    const double gram = mq * mk * mg;
    if (!(gram * rows <= big) || !(mv * rows <= big))
        return lsh_error_set(err, LSH_EDATA,
                             "dataset '%s': %s up to %g over n = %zu rows would overflow the "
                             "error sums; allowed: n x that up to 2^500 (normalise the data)",
                             name, gram * rows <= big ? "rows of V have norms" : "Gram entries q.k reach",
                             gram * rows <= big ? mv : gram, a->n);
    return 0;
}

/* The score cache: huge pages where the kernel gives them on request, so
 * filling it does not cost a page fault per 4 KiB. */
static double *cache_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (bytes >= huge) {
        if (posix_memalign(&p, huge, bytes) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, bytes, MADV_HUGEPAGE);
#endif
        return p;
    }
    return malloc(bytes ? bytes : 1);
}

static void scratch_free(struct scratch *w)
{
    free(w->kt);
    free(w->vp);
    free(w->s);
    free(w->qb);
    free(w->topval);
    free(w->tlen);
    free(w->mx);
    free(w->lanemax);
    memset(w, 0, sizeof *w);
}

static int scratch_alloc(struct scratch *w, const struct lsh_attn *a, size_t kmax)
{
    memset(w, 0, sizeof *w);
    w->s = malloc(ROW_BLOCK * KEY_CHUNK * sizeof *w->s);
    w->qb = malloc((ROW_BLOCK * a->d + 1) * sizeof *w->qb);
    w->topval = malloc((ROW_BLOCK * kmax + 1) * sizeof *w->topval);
    w->tlen = malloc(ROW_BLOCK * sizeof *w->tlen);
    w->mx = malloc(25 * ROW_BLOCK * sizeof *w->mx);
    w->lanemax = malloc((KEY_CHUNK / 4 + 1) * sizeof *w->lanemax);
    w->kt = lsh_alloc_doubles(KT_STRIDE * a->d + 1, 0);                 /* y operands: */
    w->vp = lsh_alloc_doubles(KEY_CHUNK * lsh_pad8(a->d_v) + 1, 1); /* padding stays 0 */
    if (!w->s || !w->qb || !w->topval || !w->tlen || !w->mx || !w->lanemax || !w->kt ||
        !w->vp) {
        scratch_free(w);
        return LSH_ENOMEM;
    }
    w->sum = w->mx + ROW_BLOCK;
    w->sq = w->sum + 8 * ROW_BLOCK;
    w->gram = w->sq + 8 * ROW_BLOCK;
    return 0;
}

/* ---- slices of evaluated rows ------------------------------------------------ */

/* The slice length, fixed once per process by slice_init (pthread_once: the
 * first caller, whichever thread, reads the environment; every later caller
 * sees the same value).  LSHLAB_TEST_SLICE_ROWS is for tests only: it makes
 * small datasets have several slices, which changes the per-slice row orders
 * and so the bits of datasets above it (never those of a one-slice one). */
static size_t slice_rows = LSH_SLICE_ROWS;
static pthread_once_t slice_once = PTHREAD_ONCE_INIT;

static void slice_init(void)
{
    const char *s = getenv("LSHLAB_TEST_SLICE_ROWS");
    if (!s || *s < '0' || *s > '9')
        return;
    char *end = NULL;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    /* a multiple of ROW_BLOCK (and so of eval's 64-row blocks), >= ROW_BLOCK;
     * at most 2^30, so that slice arithmetic never nears a wrap */
    if (errno || *end || v < ROW_BLOCK || v % ROW_BLOCK || v > ((unsigned long long)1 << 30))
        return;
    slice_rows = (size_t)v;
}

size_t lsh_slice_rows(void)
{
    pthread_once(&slice_once, slice_init);
    return slice_rows;
}

size_t lsh_slice_count(size_t m)
{
    const size_t S = lsh_slice_rows();
    return m <= S ? 1 : m / S + (m % S != 0);
}

int lsh_reference_compute(const struct lsh_attn *attn, const size_t *rows, size_t m,
                          unsigned threads, size_t cache_bytes, struct lsh_reference **out,
                          struct lsh_error *err)
{
    return lsh_reference_compute_part(attn, rows, m, 0, rows ? m : attn->n, threads,
                                      cache_bytes, out, err);
}

int lsh_reference_compute_part(const struct lsh_attn *attn, const size_t *rows, size_t m,
                               size_t r0, size_t r1, unsigned threads, size_t cache_bytes,
                               struct lsh_reference **out, struct lsh_error *err)
{
    double t0 = lsh_now();
    const size_t n = attn->n;
    if (n == 0)
        return lsh_error_set(err, LSH_EINVAL, "reference: the dataset has no rows");
    if (rows && m > n)
        return lsh_error_set(err, LSH_EINVAL, "reference: %zu rows of %zu", m, n);
    if (threads < 1)
        threads = 1;
    uint32_t kmax = 0;
    for (size_t t = 0; t < attn->n_topk; t++)
        if (attn->topk[t] > kmax)
            kmax = attn->topk[t];
    /* one figure holds every size product below: none wraps when it does not */
    const size_t M = rows ? m : n;
    if (lsh_bytes_total(lsh_reference_bytes(n, M, attn->d, attn->d_v, kmax), threads) ==
            SIZE_MAX || lsh_size_mul(n, attn->d) == SIZE_MAX)
        return lsh_error_set(err, LSH_ENOMEM,
                             "reference: %zu rows of d = %zu, d_v = %zu cannot be addressed", M,
                             attn->d, attn->d_v);
    const size_t S = lsh_slice_rows();
    if (!(r0 < r1 && r1 <= M && r0 % S == 0 && (r1 % S == 0 || r1 == M)))
        return lsh_error_set(err, LSH_EINVAL,
                             "reference: rows [%zu, %zu) of %zu are not a run of whole slices "
                             "of %zu rows",
                             r0, r1, M, S);
    int rc = lsh_attn_check(attn, NULL, err);
    if (rc)
        return rc;
    struct lsh_reference *ref = calloc(1, sizeof *ref);
    if (!ref)
        return lsh_error_set(err, LSH_ENOMEM, "reference: out of memory");
    ref->attn = attn;
    ref->m = rows ? m : n;
    if (rows) {
        size_t *copy = malloc(m * sizeof *copy + 1);
        if (!copy) {
            free(ref);
            return lsh_error_set(err, LSH_ENOMEM, "reference: out of memory");
        }
        memcpy(copy, rows, m * sizeof *copy);
        ref->rows = copy;
    }
    ref->kmax = kmax < n ? kmax : n;
    ref->r0 = r0;
    ref->r1 = r1;

    /* every row, zero outside the part */
    ref->lse = calloc(M + 1, sizeof *ref->lse);
    ref->sum_a2 = calloc(M + 1, sizeof *ref->sum_a2);
    ref->gram_den = calloc(M + 1, sizeof *ref->gram_den);
    ref->u_count = calloc(M + 1, sizeof *ref->u_count);
    ref->out = calloc(M * attn->d_v + 1, sizeof *ref->out);
    ref->top = calloc(M * ref->kmax + 1, sizeof *ref->top);
    if (lsh_reference_cache_bytes(r1 - r0, n) <= cache_bytes) /* NULL: stream instead */
        ref->raw = cache_alloc(lsh_reference_cache_bytes(r1 - r0, n));

    const size_t n_blocks = (r1 - r0 + ROW_BLOCK - 1) / ROW_BLOCK;
    struct pass p = {.a = attn, .ref = ref, .r0 = r0, .r1 = r1};
    p.scratch = calloc(threads, sizeof *p.scratch);
    p.block_flops = calloc(n_blocks + 1, sizeof *p.block_flops);
    if (!ref->lse || !ref->sum_a2 || !ref->gram_den || !ref->u_count || !ref->out ||
        !ref->top || !p.scratch || !p.block_flops)
        rc = LSH_ENOMEM;
    unsigned made = 0;
    for (; made < threads && !rc; made++)
        rc = scratch_alloc(&p.scratch[made], attn, ref->kmax);
    if (!rc)
        rc = lsh_parallel_for(threads, n_blocks, block_task, &p);
    for (unsigned t = 0; p.scratch && t < made; t++)
        scratch_free(&p.scratch[t]);
    double flops = 0.0;
    for (size_t b = 0; p.block_flops && b < n_blocks; b++)
        flops += p.block_flops[b];
    free(p.scratch);
    free(p.block_flops);
    if (rc) {
        lsh_reference_free(ref);
        return lsh_error_set(err, rc, "reference: out of memory (n = %zu)", n);
    }
    ref->flops = flops;
    ref->seconds = lsh_now() - t0;
    *out = ref;
    return 0;
}
