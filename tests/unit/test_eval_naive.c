/* test_eval_naive.c - the engine's metrics (reference.c + eval.c) against a
 * deliberately naive oracle written straight from SPEC 3-5.
 *
 * The oracle shares no code with the engine: it builds dense n x n masks for
 * U_i, every S_i^h and S_i, the full score and Gram matrices, dense A and
 * A-hat (combine: rounds literally per round with its LSE weight), O = A V
 * and O-hat = A-hat V, and then reads every metric column off those
 * matrices.  Chunked candidate sets come from ranking every item against
 * every other one (the sorted position of an item is the number of items
 * before it), so no sort routine is shared either.  Buckets are random: the
 * oracle checks the metric machinery, not a hashing strategy.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "eval.h"
#include "oracle.h"
#include "reference.h"

#define MAX_TOPK 4
#define MAX_PREFIX 8
#define REL_TOL 1e-9
#define ABS_TOL 1e-12
#define TWO_PI 6.283185307179586476925286766559

/* ---- our own generator: xorshift64* and Box-Muller ------------------------ */

struct xrng {
    uint64_t s;
};

static uint64_t xr_next(struct xrng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(2685821657736338717);
}

static void xr_seed(struct xrng *r, uint64_t seed)
{
    r->s = seed * UINT64_C(0x9E3779B97F4A7C15) + UINT64_C(0x2545F4914F6CDD1D);
    if (r->s == 0)
        r->s = 1;
    for (int t = 0; t < 4; t++)
        xr_next(r);
}

/* Uniform in (0, 1). */
static double xr_unit(struct xrng *r)
{
    return ((double)(xr_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double xr_normal(struct xrng *r)
{
    double u1 = xr_unit(r), u2 = xr_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

static uint32_t xr_below(struct xrng *r, uint32_t m)
{
    return (uint32_t)(xr_next(r) % m);
}

/* ---- one attention problem with its buckets -------------------------------- */

struct setup {
    size_t n, d, dv;
    enum lsh_keys keys;
    int exclude_self, causal;
    double scale;           /* 0: 1/sqrt(d) */
    uint32_t H, B;
    size_t n_topk;
    uint32_t topk[MAX_TOPK]; /* ascending */
    int integer_entries;    /* Q, K in {-2..2}: exact scores, many ties */
    int ids_256_apart;      /* buckets only 0..3 and 256..259 (B > 259) */
};

struct problem {
    struct setup s;
    double *q;       /* n x d */
    double *kmat;    /* n x d, keys separate only */
    double *keff;    /* n x d, the effective keys given to the engine */
    double *gnorm;   /* n, shared_normalized only */
    double *v;       /* n x dv */
    uint32_t *bq;    /* H x n */
    uint32_t *bk;    /* H x n, keys separate only (else bq is used) */
    struct lsh_attn attn;
};

static struct setup make_setup(size_t n, enum lsh_keys keys, uint32_t H, uint32_t B)
{
    struct setup s;
    memset(&s, 0, sizeof s);
    s.n = n;
    s.d = 5;
    s.dv = 3;
    s.keys = keys;
    s.exclude_self = keys != LSH_KEYS_SEPARATE;
    s.causal = 0;
    s.scale = 0.0;
    s.H = H;
    s.B = B;
    s.n_topk = 3;
    s.topk[0] = 1;
    s.topk[1] = 3;
    s.topk[2] = 10;
    return s;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    cr_assert_not_null(p, "out of memory");
    return p;
}

/* Rows with irregular magnitudes: each row has its own scale in [0.35, 2.6]
 * and a small per-column offset, so no two rows look alike. */
static void fill_matrix(struct xrng *r, double *x, size_t rows, size_t cols, double base)
{
    for (size_t i = 0; i < rows; i++) {
        double f = base * (0.35 + 2.25 * xr_unit(r));
        for (size_t t = 0; t < cols; t++)
            x[i * cols + t] = f * xr_normal(r) + 0.173 * (double)(t % 3) - 0.09;
    }
}

static void problem_make(struct problem *p, const struct setup *s, uint64_t seed)
{
    struct xrng r;
    size_t n = s->n, d = s->d;

    memset(p, 0, sizeof *p);
    p->s = *s;
    xr_seed(&r, seed);
    p->q = xcalloc(n * d, sizeof(double));
    p->keff = xcalloc(n * d, sizeof(double));
    p->v = xcalloc(n * s->dv, sizeof(double));
    fill_matrix(&r, p->q, n, d, 1.0);
    fill_matrix(&r, p->v, n, s->dv, 3.7);
    if (s->integer_entries)
        for (size_t t = 0; t < n * d; t++)
            p->q[t] = (double)xr_below(&r, 5) - 2.0;
    if (s->keys == LSH_KEYS_SEPARATE) {
        p->kmat = xcalloc(n * d, sizeof(double));
        fill_matrix(&r, p->kmat, n, d, 1.3);
        if (s->integer_entries)
            for (size_t t = 0; t < n * d; t++)
                p->kmat[t] = (double)xr_below(&r, 5) - 2.0;
        memcpy(p->keff, p->kmat, n * d * sizeof(double));
    } else if (s->keys == LSH_KEYS_SHARED_NORMALIZED) {
        p->gnorm = xcalloc(n, sizeof(double));
        for (size_t j = 0; j < n; j++) {
            double nn = 0.0;
            for (size_t t = 0; t < d; t++)
                nn += p->q[j * d + t] * p->q[j * d + t];
            p->gnorm[j] = sqrt(nn);
            for (size_t t = 0; t < d; t++)
                p->keff[j * d + t] = p->q[j * d + t] / p->gnorm[j];
        }
    } else {
        memcpy(p->keff, p->q, n * d * sizeof(double));
    }

    /* Buckets: uniform, but a quarter of the rows of a round crowd into one
     * bucket, so bucket sizes are uneven.  Separate keys share the query's
     * bucket half of the time, which exercises the (bucket, position, kind)
     * interleaving of the chunked sort. */
    p->bq = xcalloc((size_t)s->H * n, sizeof(uint32_t));
    for (uint32_t h = 0; h < s->H; h++) {
        uint32_t crowd = xr_below(&r, s->B);
        for (size_t i = 0; i < n; i++)
            p->bq[h * n + i] = xr_unit(&r) < 0.25 ? crowd : xr_below(&r, s->B);
    }
    if (s->ids_256_apart)
        for (size_t t = 0; t < (size_t)s->H * n; t++)
            p->bq[t] = p->bq[t] % 4 + (p->bq[t] / 4 % 2) * 256;
    if (s->keys == LSH_KEYS_SEPARATE) {
        p->bk = xcalloc((size_t)s->H * n, sizeof(uint32_t));
        for (size_t t = 0; t < (size_t)s->H * n; t++)
            p->bk[t] = xr_unit(&r) < 0.5 ? p->bq[t] : xr_below(&r, s->B);
    }

    p->attn.n = n;
    p->attn.d = d;
    p->attn.d_v = s->dv;
    p->attn.q = p->q;
    p->attn.k = p->keff;
    p->attn.v = p->v;
    p->attn.gnorm = p->gnorm;
    p->attn.scale = s->scale > 0.0 ? s->scale : 1.0 / sqrt((double)d);
    p->attn.exclude_self = s->exclude_self;
    p->attn.causal = s->causal;
    p->attn.n_topk = s->n_topk;
    p->attn.topk = s->topk;
}

static void problem_free(struct problem *p)
{
    free(p->q);
    free(p->kmat);
    free(p->keff);
    free(p->gnorm);
    free(p->v);
    free(p->bq);
    free(p->bk);
    memset(p, 0, sizeof *p);
}

static const uint32_t *key_buckets(const struct problem *p)
{
    return p->bk ? p->bk : p->bq;
}

/* ---- the oracle --------------------------------------------------------- */

struct expect {
    double out_rel_err, attn_rel_err, mass_recall, kl;
    uint64_t empty_rows;
    double gram_recovery;
    double topk_recall[MAX_TOPK];
    double density, mean_candidates, bucket_max, bucket_entropy;
    double oracle_mass_recall, oracle_out_rel_err; /* the budget-matched oracle */
    /* what the case exercised, for the tests' own sanity checks */
    uint64_t rows_with_dropped_round; /* some but not all T_i^h empty */
    uint64_t rows_full;               /* S_i = U_i */
    uint64_t forced_pairs;            /* sink or local keys in some S_i */
    uint64_t counted_out;             /* pairs met in 1..t-1 rounds (min_collisions) */
};

/* ---- the collision law of combine importance (SPEC 14), our own ---------- */

/* SimHash with law_bits bits: p = (1 - theta/pi)^bits; law_const >= 0
 * replaces it by that constant (1: every u is 1; out of [0, 1]: a broken
 * plugin). */
static double law_bits = 2.0, law_const = -1.0;

static double test_law_p(double c)
{
    if (law_const >= 0.0)
        return law_const;
    c = c < -1.0 ? -1.0 : c > 1.0 ? 1.0 : c;
    return pow(1.0 - acos(c) / 3.14159265358979323846, law_bits);
}

static double test_law_fn(const struct lsh_round *round, double cos_theta)
{
    (void)round;
    return test_law_p(cos_theta);
}

/* P(Binomial(H, p) >= t), term by term from the definition. */
static double naive_tail(double p, uint32_t H, uint32_t t)
{
    double u = 0.0;
    for (uint32_t k = t; k <= H; k++) {
        double choose = 1.0;
        for (uint32_t r = 1; r <= k; r++)
            choose = choose * (double)(H - k + r) / (double)r;
        u += choose * pow(p, (double)k) * pow(1.0 - p, (double)(H - k));
    }
    return u;
}

/* What engine_run hands lsh_eval_pass (NULL: no importance, no oracle). */
static const struct lsh_eval_opts *run_opts = NULL;

static double ratio0(double num, double den)
{
    return den == 0.0 ? 0.0 : num / den;
}

static double dot(const double *a, const double *b, size_t d)
{
    double s = 0.0;
    for (size_t t = 0; t < d; t++)
        s += a[t] * b[t];
    return s;
}

/* LSE of x[j] over mask[j] != 0; -inf for an empty mask. */
static double lse_masked(const double *x, const unsigned char *mask, size_t n)
{
    double mx = -INFINITY, sum = 0.0;
    for (size_t j = 0; j < n; j++)
        if (mask[j] && x[j] > mx)
            mx = x[j];
    if (mx == -INFINITY)
        return -INFINITY;
    for (size_t j = 0; j < n; j++)
        if (mask[j])
            sum += exp(x[j] - mx);
    return mx + log(sum);
}

/* One chunked item: a query or a key at a position, in a bucket. */
struct item {
    uint32_t bucket;
    size_t pos;
    int kind; /* 0 query, 1 key */
};

static int item_before(const struct item *a, const struct item *b)
{
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket;
    if (a->pos != b->pos)
        return a->pos < b->pos;
    return a->kind < b->kind;
}

/* sh[i*n + j] = [j in S_i^h], SPEC 3. */
static void round_candidates(const struct problem *p, const struct lsh_mode_opts *mo,
                             uint32_t h, unsigned char *sh)
{
    size_t n = p->s.n;
    const uint32_t *bq = p->bq + (size_t)h * n;
    const uint32_t *bk = key_buckets(p) + (size_t)h * n;

    if (mo->mode == LSH_MODE_BUCKET) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                sh[i * n + j] = bk[j] == bq[i];
        return;
    }

    int separate = p->s.keys == LSH_KEYS_SEPARATE;
    size_t m = separate ? 2 * n : n;
    struct item *items = xcalloc(m, sizeof *items);
    size_t *qchunk = xcalloc(n, sizeof(size_t));
    size_t *kchunk = xcalloc(n, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        if (separate) {
            items[2 * i] = (struct item){bq[i], i, 0};
            items[2 * i + 1] = (struct item){bk[i], i, 1};
        } else {
            items[i] = (struct item){bq[i], i, 0};
        }
    }
    /* sorted position = number of items ordered before it */
    for (size_t a = 0; a < m; a++) {
        size_t rank = 0;
        for (size_t b = 0; b < m; b++)
            rank += item_before(&items[b], &items[a]);
        size_t chunk = rank / mo->chunk_size;
        if (!separate) {
            qchunk[items[a].pos] = chunk;
            kchunk[items[a].pos] = chunk;
        } else if (items[a].kind == 0) {
            qchunk[items[a].pos] = chunk;
        } else {
            kchunk[items[a].pos] = chunk;
        }
    }
    size_t n_chunks = (m + mo->chunk_size - 1) / mo->chunk_size;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            /* key chunk is the query's own or one of look_back before it,
             * chunk 0 wrapping to the last ones */
            size_t back = (qchunk[i] + n_chunks - kchunk[j]) % n_chunks;
            int in = back <= mo->look_back;
            if (mo->window == LSH_WINDOW_SAME_BUCKET)
                in = in && bk[j] == bq[i];
            sh[i * n + j] = (unsigned char)in;
        }
    free(items);
    free(qchunk);
    free(kchunk);
}

/* Every metric of SPEC 5 for rounds [0, Hp) and one combine. */
/* The metrics over the rows i with sel[i] (every row when sel is NULL): a
 * sampled reference (reference_rows) evaluates the same ratios over its
 * sample. */
static void oracle_rows(const struct problem *p, const struct lsh_mode_opts *mo, uint32_t Hp,
                        enum lsh_combine combine, const unsigned char *sel, struct expect *e)
{
    size_t n = p->s.n, d = p->s.d, dv = p->s.dv;
    double scale = p->attn.scale;
    unsigned char *U = xcalloc(n * n, 1);
    unsigned char *T = xcalloc((size_t)Hp * n * n, 1);
    unsigned char *S = xcalloc(n * n, 1);
    unsigned char *empty = xcalloc(n, 1);
    double *s = xcalloc(n * n, sizeof(double));
    double *G = xcalloc(n * n, sizeof(double));
    double *A = xcalloc(n * n, sizeof(double));
    double *Ah = xcalloc(n * n, sizeof(double));
    double *O = xcalloc(n * dv, sizeof(double));
    double *Oh = xcalloc(n * dv, sizeof(double));
    double *z = xcalloc(Hp, sizeof(double));

    memset(e, 0, sizeof *e);
    size_t n_sel = 0;
    for (size_t i = 0; i < n; i++)
        n_sel += !sel || sel[i];

    /* U_i */
    for (size_t i = 0; i < n; i++) {
        int any = 0;
        for (size_t j = 0; j < n; j++) {
            int ok = !(p->s.exclude_self && j == i) && !(p->s.causal && j > i);
            U[i * n + j] = (unsigned char)ok;
            any |= ok;
        }
        if (!any)
            U[i * n + i] = 1;
    }

    /* T_i^h = S_i^h n U_i; S_i = the keys of >= t of them (t = 1: the
     * union), the sink keys and the local window, within U_i (SPEC 13);
     * empty rows fall back to {i} */
    uint32_t *count = xcalloc(n * n, sizeof(uint32_t));
    unsigned char *forced = xcalloc(n * n, 1);
    const uint32_t tmin = mo->min_collisions ? mo->min_collisions : 1;
    for (uint32_t h = 0; h < Hp; h++) {
        unsigned char *th = T + (size_t)h * n * n;
        round_candidates(p, mo, h, th);
        for (size_t t = 0; t < n * n; t++) {
            th[t] = th[t] && U[t];
            count[t] += th[t];
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            size_t t = i * n + j;
            int local = (i > j ? i - j : j - i) < mo->local;
            forced[t] = (unsigned char)(U[t] && (j < mo->sink || local));
            S[t] = (unsigned char)(count[t] >= tmin || forced[t]);
            e->forced_pairs += forced[t];
            e->counted_out += count[t] > 0 && count[t] < tmin && !forced[t];
        }
    for (size_t i = 0; i < n; i++) {
        int any = 0, full = 1;
        for (size_t j = 0; j < n; j++) {
            any |= S[i * n + j];
            full &= S[i * n + j] == U[i * n + j];
        }
        if (!any) {
            empty[i] = 1;
            S[i * n + i] = 1;
            e->empty_rows += !sel || sel[i];
        }
        e->rows_full += (uint64_t)(any && full);
        int n_empty_rounds = 0;
        for (uint32_t h = 0; h < Hp; h++) {
            int round_any = 0;
            for (size_t j = 0; j < n; j++)
                round_any |= T[(size_t)h * n * n + i * n + j];
            n_empty_rounds += !round_any;
        }
        e->rows_with_dropped_round +=
            (uint64_t)(n_empty_rounds > 0 && (uint32_t)n_empty_rounds < Hp);
    }

    /* scores and the unscaled Gram matrix */
    const double *gk = p->s.keys == LSH_KEYS_SEPARATE ? p->kmat : p->q;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            s[i * n + j] = scale * dot(p->q + i * d, p->keff + j * d, d);
            G[i * n + j] = dot(p->q + i * d, gk + j * d, d);
        }

    /* A and A-hat */
    for (size_t i = 0; i < n; i++) {
        const double *si = s + i * n;
        double lu = lse_masked(si, U + i * n, n);
        for (size_t j = 0; j < n; j++)
            A[i * n + j] = U[i * n + j] ? exp(si[j] - lu) : 0.0;

        if (empty[i]) {
            Ah[i * n + i] = 1.0;
        } else if (combine == LSH_COMBINE_IMPORTANCE) {
            /* A-hat proportional to A / u over S_i, u = 1 for sink and local
             * keys, else P(Binomial(Hp, p) >= t) with p = law(cos) */
            double *x = xcalloc(n, sizeof(double));
            for (size_t j = 0; j < n; j++) {
                if (!S[i * n + j])
                    continue;
                double u = 1.0;
                if (!forced[i * n + j]) {
                    const double *qi = p->q + i * d, *kj = p->keff + j * d;
                    double nq = sqrt(dot(qi, qi, d)), nk = sqrt(dot(kj, kj, d));
                    double c = nq > 0.0 && nk > 0.0 ? dot(qi, kj, d) / (nq * nk) : 0.0;
                    u = naive_tail(test_law_p(c), Hp, tmin);
                }
                x[j] = si[j] - log(u);
            }
            double lz = lse_masked(x, S + i * n, n);
            for (size_t j = 0; j < n; j++)
                Ah[i * n + j] = S[i * n + j] ? exp(x[j] - lz) : 0.0;
            free(x);
        } else if (combine == LSH_COMBINE_UNION) {
            double ls = lse_masked(si, S + i * n, n);
            for (size_t j = 0; j < n; j++)
                Ah[i * n + j] = S[i * n + j] ? exp(si[j] - ls) : 0.0;
        } else {
            /* z_ih per round; an empty round has z = -inf and weight 0 */
            double zmax = -INFINITY, zsum = 0.0;
            for (uint32_t h = 0; h < Hp; h++) {
                z[h] = lse_masked(si, T + (size_t)h * n * n + i * n, n);
                if (z[h] > zmax)
                    zmax = z[h];
            }
            for (uint32_t h = 0; h < Hp; h++)
                if (z[h] != -INFINITY)
                    zsum += exp(z[h] - zmax);
            double zall = zmax + log(zsum);
            for (uint32_t h = 0; h < Hp; h++) {
                if (z[h] == -INFINITY)
                    continue;
                double w = exp(z[h] - zall);
                const unsigned char *th = T + (size_t)h * n * n + i * n;
                for (size_t j = 0; j < n; j++)
                    if (th[j])
                        Ah[i * n + j] += w * exp(si[j] - z[h]);
            }
        }
    }

    /* O = A V, O-hat = A-hat V */
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < dv; c++) {
            double o = 0.0, oh = 0.0;
            for (size_t j = 0; j < n; j++) {
                o += A[i * n + j] * p->v[j * dv + c];
                oh += Ah[i * n + j] * p->v[j * dv + c];
            }
            O[i * dv + c] = o;
            Oh[i * dv + c] = oh;
        }

    /* Frobenius ratios */
    double num = 0.0, den = 0.0;
    for (size_t t = 0; t < n * dv; t++) {
        if (sel && !sel[t / dv])
            continue;
        num += (O[t] - Oh[t]) * (O[t] - Oh[t]);
        den += O[t] * O[t];
    }
    e->out_rel_err = ratio0(sqrt(num), sqrt(den));
    num = den = 0.0;
    for (size_t t = 0; t < n * n; t++) {
        if (sel && !sel[t / n])
            continue;
        num += (A[t] - Ah[t]) * (A[t] - Ah[t]);
        den += A[t] * A[t];
    }
    e->attn_rel_err = ratio0(sqrt(num), sqrt(den));

    /* mass_recall, kl, gram_recovery, density, mean_candidates */
    double mass = 0.0, kl = 0.0, gnum = 0.0, gden = 0.0, ssum = 0.0, usum = 0.0;
    size_t kl_rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (sel && !sel[i])
            continue;
        double mi = 0.0, kli = 0.0;
        for (size_t j = 0; j < n; j++) {
            size_t t = i * n + j;
            if (S[t])
                mi += A[t];
            if (Ah[t] > 0.0)
                kli += Ah[t] * log(Ah[t] / A[t]);
            if (S[t] && j != i)
                gnum += G[t] * G[t];
            if (U[t] && j != i)
                gden += G[t] * G[t];
            ssum += S[t];
            usum += U[t];
        }
        mass += mi;
        if (!empty[i]) {
            kl += kli;
            kl_rows++;
        }
    }
    e->mass_recall = mass / (double)n_sel;
    e->kl = kl_rows ? kl / (double)kl_rows : 0.0;
    e->gram_recovery = ratio0(gnum, gden);
    e->density = ssum / usum;
    e->mean_candidates = ssum / (double)n_sel;

    /* The budget-matched oracle: O_i = the |S_i| keys of U_i of largest
     * score (ties to the smaller j), found by a full sort of U_i (insertion
     * sort of its indices); its mass and its union softmax's output.  Only
     * when compared (O(n^3): the larger cases ran minutes under valgrind). */
    if (run_opts && run_opts->oracle) {
        size_t *ord = xcalloc(n, sizeof(size_t));
        double omass = 0.0, oerr = 0.0, oden = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (sel && !sel[i])
                continue;
            size_t u = 0, budget = 0;
            for (size_t j = 0; j < n; j++) {
                budget += S[i * n + j];
                if (!U[i * n + j])
                    continue;
                size_t at = u++;
                while (at > 0 && s[i * n + ord[at - 1]] < s[i * n + j]) {
                    ord[at] = ord[at - 1];
                    at--;
                }
                ord[at] = j;
            }
            if (budget > u)
                budget = u;
            double mx = s[i * n + ord[0]], z = 0.0, oo[16] = {0};
            cr_assert(dv <= 16);
            for (size_t k = 0; k < budget; k++) {
                omass += A[i * n + ord[k]];
                z += exp(s[i * n + ord[k]] - mx);
            }
            for (size_t k = 0; k < budget; k++)
                for (size_t c = 0; c < dv; c++)
                    oo[c] += exp(s[i * n + ord[k]] - mx) / z * p->v[ord[k] * dv + c];
            for (size_t c = 0; c < dv; c++) {
                oerr += (O[i * dv + c] - oo[c]) * (O[i * dv + c] - oo[c]);
                oden += O[i * dv + c] * O[i * dv + c];
            }
        }
        e->oracle_mass_recall = omass / (double)n_sel;
        e->oracle_out_rel_err = ratio0(sqrt(oerr), sqrt(oden));
        free(ord);
    }

    /* top-K recall: pick the best remaining key of U_i K times, ties to the
     * smaller index (a strict > while scanning j upwards) */
    unsigned char *taken = xcalloc(n, 1);
    for (size_t k = 0; k < p->s.n_topk; k++) {
        double rec = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (sel && !sel[i])
                continue;
            size_t u = 0, hit = 0;
            for (size_t j = 0; j < n; j++)
                u += U[i * n + j];
            size_t want = p->s.topk[k] < u ? p->s.topk[k] : u;
            memset(taken, 0, n);
            for (size_t r = 0; r < want; r++) {
                size_t best = n;
                for (size_t j = 0; j < n; j++)
                    if (U[i * n + j] && !taken[j] &&
                        (best == n || s[i * n + j] > s[i * n + best]))
                        best = j;
                taken[best] = 1;
                hit += S[i * n + best];
            }
            rec += (double)hit / (double)want;
        }
        e->topk_recall[k] = rec / (double)n_sel;
    }
    free(taken);

    /* bucket balance of the query buckets of rounds [0, Hp) */
    uint32_t B = p->s.B;
    size_t *bcount = xcalloc(B, sizeof(size_t));
    double bmax = 0.0, bent = 0.0;
    for (uint32_t h = 0; h < Hp; h++) {
        memset(bcount, 0, B * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
            bcount[p->bq[(size_t)h * n + i]]++;
        size_t big = 0;
        double ent = 0.0;
        for (uint32_t b = 0; b < B; b++) {
            if (bcount[b] > big)
                big = bcount[b];
            if (bcount[b] > 0) {
                double pb = (double)bcount[b] / (double)n;
                ent -= pb * log(pb);
            }
        }
        double m = (double)big / ((double)n / (double)B);
        if (m > bmax)
            bmax = m;
        bent += B > 1 ? ent / log((double)B) : 0.0;
    }
    free(bcount);
    e->bucket_max = bmax;
    e->bucket_entropy = bent / (double)Hp;

    free(U);
    free(T);
    free(S);
    free(count);
    free(forced);
    free(empty);
    free(s);
    free(G);
    free(A);
    free(Ah);
    free(O);
    free(Oh);
    free(z);
}

static void oracle(const struct problem *p, const struct lsh_mode_opts *mo, uint32_t Hp,
                   enum lsh_combine combine, struct expect *e)
{
    oracle_rows(p, mo, Hp, combine, NULL, e);
}

/* ---- running the engine --------------------------------------------------- */

static void metrics_alloc(struct lsh_metrics *m, size_t count, size_t n_topk)
{
    memset(m, 0, count * sizeof *m);
    for (size_t t = 0; t < count; t++)
        m[t].topk_recall = xcalloc(n_topk, sizeof(double));
}

static void metrics_free(struct lsh_metrics *m, size_t count)
{
    for (size_t t = 0; t < count; t++)
        free(m[t].topk_recall);
}

static int close_enough(double got, double want);

/* Run the engine twice: candidate scores recomputed (streaming) and looked up
 * in the reference's score cache; both must agree to rounding. */
/* The oracle through a unit's table (filled by the first pass, read by the
 * second) gives the bits of `want`, the pass without it. */
static void expect_oracle_table_bits(const struct lsh_reference *ref,
                                     const struct lsh_rounds *rounds,
                                     const struct lsh_mode_opts *mo, const uint32_t *prefixes,
                                     size_t n_prefix, const enum lsh_combine *combines,
                                     size_t n_combine, unsigned threads,
                                     const struct lsh_metrics *want)
{
    struct lsh_eval_opts o = *run_opts;
    o.oracle_table = lsh_oracle_table_alloc(ref);
    cr_assert_not_null(o.oracle_table);
    const size_t count = n_prefix * n_combine;
    struct lsh_metrics *got = xcalloc(count, sizeof *got);
    metrics_alloc(got, count, ref->attn->n_topk);
    for (int pass = 0; pass < 2; pass++) {
        struct lsh_error err;
        memset(&err, 0, sizeof err);
        int rc = lsh_eval_pass(ref, rounds, mo, prefixes, n_prefix, combines, n_combine, &o,
                               threads, got, NULL, &err);
        cr_assert_eq(rc, 0, "lsh_eval_pass with an oracle table (%d): %s", rc, err.message);
        for (size_t t = 0; t < count; t++)
            cr_expect(!memcmp(&got[t].oracle_mass_recall, &want[t].oracle_mass_recall,
                              sizeof(double)) &&
                          !memcmp(&got[t].oracle_out_rel_err, &want[t].oracle_out_rel_err,
                                  sizeof(double)),
                      "pass %d with the oracle table, point %zu: %a %a, without %a %a", pass, t,
                      got[t].oracle_mass_recall, got[t].oracle_out_rel_err,
                      want[t].oracle_mass_recall, want[t].oracle_out_rel_err);
    }
    metrics_free(got, count);
    free(got);
    lsh_oracle_table_free(o.oracle_table);
}

static void engine_run(const struct problem *p, const struct lsh_mode_opts *mo,
                       const uint32_t *prefixes, size_t n_prefix,
                       const enum lsh_combine *combines, size_t n_combine, unsigned threads,
                       struct lsh_metrics *out)
{
    struct lsh_rounds rounds = {
        .n = p->s.n,
        .n_hashes = p->s.H,
        .n_buckets = p->s.B,
        .bq = p->bq,
        .bk = key_buckets(p),
    };
    size_t count = n_prefix * n_combine;
    struct lsh_metrics *cached = xcalloc(count, sizeof *cached);
    metrics_alloc(cached, count, p->attn.n_topk);
    for (int use_cache = 0; use_cache <= 1; use_cache++) {
        struct lsh_reference *ref = NULL;
        struct lsh_error err;
        memset(&err, 0, sizeof err);
        int rc = lsh_reference_compute(&p->attn, NULL, 0, threads, use_cache ? (size_t)-1 : 0,
                                       &ref, &err);
        cr_assert_eq(rc, 0, "lsh_reference_compute failed (%d): %s", rc, err.message);
        cr_assert(use_cache ? ref->raw != NULL : ref->raw == NULL);
        rc = lsh_eval_pass(ref, &rounds, mo, prefixes, n_prefix, combines, n_combine, run_opts,
                           threads, use_cache ? cached : out, NULL, &err);
        cr_assert_eq(rc, 0, "lsh_eval_pass failed (%d): %s", rc, err.message);
        if (use_cache && run_opts && run_opts->oracle)
            expect_oracle_table_bits(ref, &rounds, mo, prefixes, n_prefix, combines, n_combine,
                                     threads, cached);
        lsh_reference_free(ref);
    }
    for (size_t t = 0; t < count; t++) {
        cr_expect(close_enough(cached[t].out_rel_err, out[t].out_rel_err),
                  "score cache changes out_rel_err: %.17g vs %.17g", cached[t].out_rel_err,
                  out[t].out_rel_err);
        cr_expect(close_enough(cached[t].mass_recall, out[t].mass_recall));
        cr_expect(close_enough(cached[t].kl, out[t].kl));
        cr_expect(close_enough(cached[t].gram_recovery, out[t].gram_recovery));
        cr_expect_eq(cached[t].density, out[t].density);
    }
    metrics_free(cached, count);
    free(cached);
}

/* combine importance weighs keys by 1/u(p(cos)), and p = (1 - theta/pi)^k
 * has an infinite slope at cos = -1: the last ulp of a cosine (engine and
 * oracle form q.k in different orders) moves A-hat by up to ~1e-9
 * relatively there.  Its comparisons use this looser tolerance. */
#define IMPORTANCE_TOL 1e-7
static double rel_tol = REL_TOL;

static int close_enough(double got, double want)
{
    if (isnan(got) || isnan(want))
        return 0;
    double mag = fabs(got) > fabs(want) ? fabs(got) : fabs(want);
    return fabs(got - want) <= rel_tol * mag + ABS_TOL;
}

static const char *keys_str(enum lsh_keys k)
{
    return k == LSH_KEYS_SHARED ? "shared" : k == LSH_KEYS_SHARED_NORMALIZED ? "shared_normalized"
                                                                             : "separate";
}

static void describe(char *buf, size_t size, const struct problem *p,
                     const struct lsh_mode_opts *mo, uint32_t Hp, enum lsh_combine c,
                     uint64_t seed)
{
    const struct setup *s = &p->s;
    const char *cname = c == LSH_COMBINE_UNION ? "union" : c == LSH_COMBINE_ROUNDS ? "rounds"
                                                                                    : "importance";
    char rule[96] = "";
    if (mo->min_collisions > 1 || mo->sink || mo->local)
        snprintf(rule, sizeof rule, " min_collisions=%u sink=%u local=%u", mo->min_collisions,
                 mo->sink, mo->local);
    size_t len;
    if (mo->mode == LSH_MODE_BUCKET)
        snprintf(buf, size,
                 "[n=%zu d=%zu dv=%zu keys=%s excl=%d causal=%d H=%u B=%u mode=bucket "
                 "n_hashes=%u combine=%s seed=%llu]",
                 s->n, s->d, s->dv, keys_str(s->keys), s->exclude_self, s->causal, s->H, s->B,
                 Hp, cname, (unsigned long long)seed);
    else
        snprintf(buf, size,
                 "[n=%zu d=%zu dv=%zu keys=%s excl=%d causal=%d H=%u B=%u mode=chunked c=%u "
                 "look_back=%u window=%s n_hashes=%u combine=%s seed=%llu]",
                 s->n, s->d, s->dv, keys_str(s->keys), s->exclude_self, s->causal, s->H, s->B,
                 mo->chunk_size, mo->look_back,
                 mo->window == LSH_WINDOW_ALL ? "all" : "same_bucket", Hp, cname,
                 (unsigned long long)seed);
    len = strlen(buf);
    if (rule[0] && len + 1 < size)
        snprintf(buf + len - 1, size - len + 1, "%s]", rule);
}

/* attn_rel_err = sqrt(r2): the engine gets sum_{j not in S_i} A_ij^2 as
 * sum_{U_i} A^2 - sum_{S_i} A^2 (its work is proportional to the candidates),
 * which is exact only up to a few ulps of sum_{U_i} A^2; so r2 may be off by
 * a few epsilon absolutely, i.e. r by ~1e-8 when r itself is ~0.  The test
 * attn_rel_err_zero_for_union_and_rounds_when_every_row_keeps_all_of_u holds the engine to an
 * exact zero where one is due. */
#define ATTN_SQ_TOL 1e-14

static int attn_close_enough(double got, double want)
{
    return close_enough(got, want) || fabs(got * got - want * want) <= ATTN_SQ_TOL;
}

#define EXPECT_CLOSE(what, got, want)                                                       \
    cr_expect(close_enough((got), (want)), "%s %s: engine %.17g, oracle %.17g", (what),      \
              #want, (double)(got), (double)(want))

static void compare(const char *what, const struct lsh_metrics *m, const struct expect *e,
                    size_t n_topk)
{
    EXPECT_CLOSE(what, m->out_rel_err, e->out_rel_err);
    cr_expect(attn_close_enough(m->attn_rel_err, e->attn_rel_err),
              "%s attn_rel_err: engine %.17g, oracle %.17g", what, m->attn_rel_err,
              e->attn_rel_err);
    EXPECT_CLOSE(what, m->mass_recall, e->mass_recall);
    EXPECT_CLOSE(what, m->kl, e->kl);
    cr_expect_eq(m->empty_rows, e->empty_rows, "%s empty_rows: engine %llu, oracle %llu", what,
                 (unsigned long long)m->empty_rows, (unsigned long long)e->empty_rows);
    EXPECT_CLOSE(what, m->gram_recovery, e->gram_recovery);
    for (size_t k = 0; k < n_topk; k++)
        cr_expect(close_enough(m->topk_recall[k], e->topk_recall[k]),
                  "%s topk_recall[%zu]: engine %.17g, oracle %.17g", what, k,
                  m->topk_recall[k], e->topk_recall[k]);
    EXPECT_CLOSE(what, m->density, e->density);
    EXPECT_CLOSE(what, m->mean_candidates, e->mean_candidates);
    EXPECT_CLOSE(what, m->bucket_max, e->bucket_max);
    EXPECT_CLOSE(what, m->bucket_entropy, e->bucket_entropy);
    if (run_opts && run_opts->oracle) {
        EXPECT_CLOSE(what, m->oracle_mass_recall, e->oracle_mass_recall);
        EXPECT_CLOSE(what, m->oracle_out_rel_err, e->oracle_out_rel_err);
        cr_expect(m->oracle_mass_recall >= m->mass_recall - 1e-12,
                  "%s oracle_mass_recall %.17g < mass_recall %.17g at the same sizes", what,
                  m->oracle_mass_recall, m->mass_recall);
    } else {
        cr_expect(m->oracle_mass_recall == 0.0 && m->oracle_out_rel_err == 0.0,
                  "%s oracle metrics without the oracle", what);
    }
}

/* The engine's row path for every combine (LSHLAB_TEST_ROW_PATH), or its
 * own choice. */
static void force_row_path(int on)
{
    if (on)
        setenv("LSHLAB_TEST_ROW_PATH", "1", 1);
    else
        unsetenv("LSHLAB_TEST_ROW_PATH");
}

/* What a batch of cases exercised (summed over every prefix and combine). */
struct tally {
    uint64_t empty_rows, rows_with_dropped_round, rows_full, points;
};

/* Build the problem for (setup, seed), run the engine once with the given
 * prefixes and combines, and compare every output against the oracle. */
static void check_case(const struct setup *s, const struct lsh_mode_opts *mo,
                       const uint32_t *prefixes, size_t n_prefix,
                       const enum lsh_combine *combines, size_t n_combine, unsigned threads,
                       uint64_t seed, struct tally *tally)
{
    struct problem p;
    struct lsh_metrics out[MAX_PREFIX * 2];
    char what[512];

    cr_assert(n_prefix * n_combine <= MAX_PREFIX * 2);
    problem_make(&p, s, seed);
    metrics_alloc(out, n_prefix * n_combine, s->n_topk);
    engine_run(&p, mo, prefixes, n_prefix, combines, n_combine, threads, out);
    for (size_t ip = 0; ip < n_prefix; ip++)
        for (size_t ic = 0; ic < n_combine; ic++) {
            struct expect e;
            oracle(&p, mo, prefixes[ip], combines[ic], &e);
            describe(what, sizeof what, &p, mo, prefixes[ip], combines[ic], seed);
            rel_tol = combines[ic] == LSH_COMBINE_IMPORTANCE ? IMPORTANCE_TOL : REL_TOL;
            compare(what, &out[ip * n_combine + ic], &e, s->n_topk);
            rel_tol = REL_TOL;
            if (tally) {
                tally->empty_rows += e.empty_rows;
                tally->rows_with_dropped_round += e.rows_with_dropped_round;
                tally->rows_full += e.rows_full;
                tally->points++;
            }
        }
    metrics_free(out, n_prefix * n_combine);

    /* Union and rounds take the engine's tile path (GEMMs over bucket blocks
     * or chunk windows), importance its row path: hold the row path to the
     * oracle on the tile path's cases too (the small ones: the large ones are
     * there for the tiles, and the row path is slow under valgrind), and the
     * tile path of union alone (which counts no repeats). */
    if (s->n <= 512 && lsh_eval_uses_tiles(mo, combines, n_combine, prefixes[n_prefix - 1])) {
        metrics_alloc(out, n_prefix * n_combine, s->n_topk);
        force_row_path(1);
        engine_run(&p, mo, prefixes, n_prefix, combines, n_combine, threads, out);
        force_row_path(0);
        for (size_t ip = 0; ip < n_prefix; ip++)
            for (size_t ic = 0; ic < n_combine; ic++) {
                struct expect e;
                oracle(&p, mo, prefixes[ip], combines[ic], &e);
                describe(what, sizeof what, &p, mo, prefixes[ip], combines[ic], seed);
                strncat(what, " (row path)", sizeof what - strlen(what) - 1);
                compare(what, &out[ip * n_combine + ic], &e, s->n_topk);
            }
        metrics_free(out, n_prefix * n_combine);
    }
    int has_union = 0;
    for (size_t ic = 0; ic < n_combine; ic++)
        has_union |= combines[ic] == LSH_COMBINE_UNION;
    if (n_combine > 1 && has_union) {
        const enum lsh_combine u = LSH_COMBINE_UNION;
        metrics_alloc(out, n_prefix, s->n_topk);
        engine_run(&p, mo, prefixes, n_prefix, &u, 1, threads, out);
        for (size_t ip = 0; ip < n_prefix; ip++) {
            struct expect e;
            oracle(&p, mo, prefixes[ip], u, &e);
            describe(what, sizeof what, &p, mo, prefixes[ip], u, seed);
            strncat(what, " (union alone)", sizeof what - strlen(what) - 1);
            compare(what, &out[ip], &e, s->n_topk);
        }
        metrics_free(out, n_prefix);
    }
    problem_free(&p);
}

static const enum lsh_combine both_combines[2] = {LSH_COMBINE_UNION, LSH_COMBINE_ROUNDS};
static const uint32_t prefixes_123[3] = {1, 2, 3};

/* Every prefix 1..H and both combines in one pass. */
static void check_all(const struct setup *s, const struct lsh_mode_opts *mo, uint64_t seed,
                      struct tally *tally)
{
    uint32_t prefixes[MAX_PREFIX];
    cr_assert(s->H <= MAX_PREFIX);
    for (uint32_t h = 0; h < s->H; h++)
        prefixes[h] = h + 1;
    check_case(s, mo, prefixes, s->H, both_combines, 2, 1, seed, tally);
}

static struct lsh_mode_opts bucket_mode(void)
{
    struct lsh_mode_opts mo = {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0};
    return mo;
}

static struct lsh_mode_opts chunked_mode(uint32_t c, uint32_t look_back, enum lsh_window w)
{
    struct lsh_mode_opts mo = {LSH_MODE_CHUNKED, c, look_back, w, 1, 0, 0};
    return mo;
}

/* ---- a hand-worked example ------------------------------------------------- */

/* n = 4, d = 2, d_v = 1, keys shared, exclude_self, scale 1, B = 2, H = 2.
 *   q0 = (1, 0), q1 = (0, 1), q2 = (1, 1), q3 = (-1, 0);  v = (2.5, -1.25, 0.5, 4).
 * Scores s_ij = q_i.q_j (also G, since scale = 1):
 *   row 0: s01 = 0, s02 = 1, s03 = -1     Z0 = 1 + e + 1/e
 *   row 1: s10 = 0, s12 = 1, s13 = 0      Z1 = 2 + e
 *   row 2: s20 = 1, s21 = 1, s23 = -1     Z2 = 2e + 1/e
 *   row 3: s30 = -1, s31 = 0, s32 = -1    Z3 = 1 + 2/e
 * Off-diagonal Gram energy: pairs (0,2), (1,2), (2,3), (0,3) have G^2 = 1, the
 * rest 0, each counted from both sides: 8.
 * Round 0 buckets (0, 1, 0, 1): S_0 = {2}, S_1 = {3}, S_2 = {0}, S_3 = {1}.
 * Round 1 buckets (0, 0, 0, 1): T_0 = {1,2}, T_1 = {0,2}, T_2 = {0,1}, T_3 = {}.
 */
Test(eval_naive, hand_worked_four_tokens_union_and_rounds)
{
    const double e1 = exp(1.0), ei = exp(-1.0);
    double q[8] = {1, 0, 0, 1, 1, 1, -1, 0};
    double v[4] = {2.5, -1.25, 0.5, 4};
    uint32_t bq[8] = {0, 1, 0, 1, 0, 0, 0, 1};
    uint32_t topk[3] = {1, 2, 3};
    struct lsh_attn attn = {
        .n = 4, .d = 2, .d_v = 1, .q = q, .k = q, .v = v, .gnorm = NULL, .scale = 1.0,
        .exclude_self = 1, .causal = 0, .n_topk = 3, .topk = topk,
    };
    struct lsh_rounds rounds = {.n = 4, .n_hashes = 2, .n_buckets = 2, .bq = bq, .bk = bq};
    struct lsh_mode_opts mo = bucket_mode();
    struct lsh_metrics out[4];
    struct lsh_reference *ref = NULL;
    struct lsh_error err;

    memset(&err, 0, sizeof err);
    metrics_alloc(out, 4, 3);
    cr_assert_eq(lsh_reference_compute(&attn, NULL, 0, 1, 0, &ref, &err), 0, "%s", err.message);
    cr_assert_eq(lsh_eval_pass(ref, &rounds, &mo, prefixes_123, 2, both_combines, 2, NULL, 1, out,
                               NULL, &err),
                 0, "%s", err.message);

    /* Full attention rows (j = 0..3). */
    const double Z0 = 1 + e1 + ei, Z1 = 2 + e1, Z2 = 2 * e1 + ei, Z3 = 1 + 2 * ei;
    const double A[4][4] = {
        {0, 1 / Z0, e1 / Z0, ei / Z0},
        {1 / Z1, 0, e1 / Z1, 1 / Z1},
        {e1 / Z2, e1 / Z2, 0, ei / Z2},
        {ei / Z3, 1 / Z3, ei / Z3, 0},
    };
    double O[4], sumA2 = 0, sumO2 = 0;
    for (int i = 0; i < 4; i++) {
        O[i] = 0;
        for (int j = 0; j < 4; j++) {
            O[i] += A[i][j] * v[j];
            sumA2 += A[i][j] * A[i][j];
        }
        sumO2 += O[i] * O[i];
    }

    /* n_hashes = 1: every S_i is one key, A-hat is a permutation matrix and
     * union and rounds agree. */
    {
        const int sel[4] = {2, 3, 0, 1};
        const double mass[4] = {e1 / Z0, 1 / Z1, e1 / Z2, 1 / Z3};
        double dO = 0, dA = 0, mr = 0, kl = 0;
        for (int i = 0; i < 4; i++) {
            dO += (O[i] - v[sel[i]]) * (O[i] - v[sel[i]]);
            mr += mass[i] / 4;
            kl += -log(mass[i]) / 4;
        }
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double ah = j == sel[i] ? 1.0 : 0.0;
                dA += (A[i][j] - ah) * (A[i][j] - ah);
            }
        for (int c = 0; c < 2; c++) {
            const struct lsh_metrics *m = &out[0 * 2 + c];
            const char *what = c == 0 ? "[hand n_hashes=1 union]" : "[hand n_hashes=1 rounds]";
            EXPECT_CLOSE(what, m->out_rel_err, sqrt(dO) / sqrt(sumO2));
            EXPECT_CLOSE(what, m->attn_rel_err, sqrt(dA) / sqrt(sumA2));
            EXPECT_CLOSE(what, m->mass_recall, mr);
            EXPECT_CLOSE(what, m->kl, kl);
            cr_expect_eq(m->empty_rows, 0, "%s empty_rows %llu", what,
                         (unsigned long long)m->empty_rows);
            /* recovered: (0,2), (2,0) with G^2 = 1; (1,3), (3,1) with G = 0 */
            EXPECT_CLOSE(what, m->gram_recovery, 2.0 / 8.0);
            /* K = 1: T = {2}, {2}, {0} (s20 = s21 = 1, tie to 0), {1} -> 1, 0, 1, 1 */
            EXPECT_CLOSE(what, m->topk_recall[0], 3.0 / 4.0);
            /* K = 2: T_0 = {2,1}: 1/2; T_1 = {2,0} (s10 = s13 = 0, tie to 0): 0;
             * T_2 = {0,1}: 1/2; T_3 = {1,0} (s30 = s32 = -1, tie to 0): 1/2 */
            EXPECT_CLOSE(what, m->topk_recall[1], 1.5 / 4.0);
            /* K = 3: T_i = U_i, one of three keys each */
            EXPECT_CLOSE(what, m->topk_recall[2], 1.0 / 3.0);
            EXPECT_CLOSE(what, m->density, 4.0 / 12.0);
            EXPECT_CLOSE(what, m->mean_candidates, 1.0);
            /* round 0 sizes (2, 2): perfectly balanced */
            EXPECT_CLOSE(what, m->bucket_max, 1.0);
            EXPECT_CLOSE(what, m->bucket_entropy, 1.0);
        }
    }

    /* n_hashes = 2: S_0 = {1,2}, S_1 = {0,2,3} = U_1, S_2 = {0,1}, S_3 = {1}. */
    {
        /* union: A-hat_i = softmax over S_i */
        const double AU[4][4] = {
            {0, 1 / (1 + e1), e1 / (1 + e1), 0},
            {1 / Z1, 0, e1 / Z1, 1 / Z1},
            {0.5, 0.5, 0, 0},
            {0, 1, 0, 0},
        };
        /* rounds:
         * row 0: z00 = s02 = 1, z01 = log(1 + e), w = (e, 1 + e) / (1 + 2e):
         *        A-hat01 = w1/(1+e) = 1/(1+2e), A-hat02 = w0 + w1 e/(1+e) = 2e/(1+2e)
         * row 1: T^0 = {3}, T^1 = {0,2} disjoint: the same as union
         * row 2: z20 = 1, z21 = 1 + log 2, w = (1/3, 2/3):
         *        A-hat20 = 1/3 + (2/3)(1/2) = 2/3, A-hat21 = 1/3
         * row 3: T^1 empty drops out, A-hat31 = 1 */
        const double AR[4][4] = {
            {0, 1 / (1 + 2 * e1), 2 * e1 / (1 + 2 * e1), 0},
            {1 / Z1, 0, e1 / Z1, 1 / Z1},
            {2.0 / 3.0, 1.0 / 3.0, 0, 0},
            {0, 1, 0, 0},
        };
        const double mass[4] = {(1 + e1) / Z0, 1.0, 2 * e1 / Z2, 1 / Z3};
        double mr = (mass[0] + mass[1] + mass[2] + mass[3]) / 4;
        /* union KL_i = -log mass_i; rounds KL by hand:
         * row 0: log(Z0/(1+2e)) + (2e/(1+2e)) log 2
         * row 2: (2/3) log(2 Z2/(3e)) + (1/3) log(Z2/(3e))
         * rows 1 and 3 as union (0 and log Z3) */
        double klu = (-log(mass[0]) - log(mass[1]) - log(mass[2]) - log(mass[3])) / 4;
        double klr = (log(Z0 / (1 + 2 * e1)) + 2 * e1 / (1 + 2 * e1) * log(2.0) + 0.0 +
                      2.0 / 3.0 * log(2 * Z2 / (3 * e1)) + 1.0 / 3.0 * log(Z2 / (3 * e1)) +
                      log(Z3)) /
                     4;
        for (int c = 0; c < 2; c++) {
            const double(*AH)[4] = c == 0 ? AU : AR;
            const struct lsh_metrics *m = &out[1 * 2 + c];
            const char *what = c == 0 ? "[hand n_hashes=2 union]" : "[hand n_hashes=2 rounds]";
            double dA = 0, dO = 0;
            for (int i = 0; i < 4; i++) {
                double oh = 0;
                for (int j = 0; j < 4; j++) {
                    dA += (A[i][j] - AH[i][j]) * (A[i][j] - AH[i][j]);
                    oh += AH[i][j] * v[j];
                }
                dO += (O[i] - oh) * (O[i] - oh);
            }
            EXPECT_CLOSE(what, m->out_rel_err, sqrt(dO) / sqrt(sumO2));
            EXPECT_CLOSE(what, m->attn_rel_err, sqrt(dA) / sqrt(sumA2));
            EXPECT_CLOSE(what, m->mass_recall, mr);
            EXPECT_CLOSE(what, m->kl, c == 0 ? klu : klr);
            cr_expect_eq(m->empty_rows, 0, "%s empty_rows %llu", what,
                         (unsigned long long)m->empty_rows);
            /* computed pairs with G^2 = 1: (0,2), (1,2), (2,0), (2,1); the others,
             * (0,1), (1,0), (1,3), (3,1), have G = 0 -> 4 of 8 */
            EXPECT_CLOSE(what, m->gram_recovery, 4.0 / 8.0);
            /* K = 1: T = {2}, {2}, {0}, {1} -> all hit */
            EXPECT_CLOSE(what, m->topk_recall[0], 1.0);
            /* K = 2: {2,1} 1, {2,0} 1, {0,1} 1, {1,0} 1/2 */
            EXPECT_CLOSE(what, m->topk_recall[1], 3.5 / 4.0);
            /* K = 3: 2/3, 1, 2/3, 1/3 */
            EXPECT_CLOSE(what, m->topk_recall[2], (2.0 / 3 + 1 + 2.0 / 3 + 1.0 / 3) / 4);
            EXPECT_CLOSE(what, m->density, 8.0 / 12.0);
            EXPECT_CLOSE(what, m->mean_candidates, 2.0);
            /* round 1 sizes (3, 1): 3 / (4/2) = 1.5; entropies 1 and H(3/4,1/4)/log 2 */
            EXPECT_CLOSE(what, m->bucket_max, 1.5);
            double h1 = (-0.75 * log(0.75) - 0.25 * log(0.25)) / log(2.0);
            EXPECT_CLOSE(what, m->bucket_entropy, (1.0 + h1) / 2.0);
        }
    }
    lsh_reference_free(ref);

    /* and the oracle agrees with the hand values */
    struct problem p;
    memset(&p, 0, sizeof p);
    p.s = make_setup(4, LSH_KEYS_SHARED, 2, 2);
    p.s.d = 2;
    p.s.dv = 1;
    p.s.n_topk = 3;
    memcpy(p.s.topk, topk, sizeof topk);
    p.q = q;
    p.keff = q;
    p.v = v;
    p.bq = bq;
    p.attn = attn;
    for (uint32_t Hp = 1; Hp <= 2; Hp++)
        for (int c = 0; c < 2; c++) {
            struct expect e;
            char what[64];
            oracle(&p, &mo, Hp, both_combines[c], &e);
            snprintf(what, sizeof what, "[oracle vs hand n_hashes=%u combine=%d]", Hp, c);
            compare(what, &out[(Hp - 1) * 2 + c], &e, 3);
        }
    metrics_free(out, 4);
}

/* ---- bucket mode ------------------------------------------------------------ */

Test(eval_naive, bucket_mode_shared_keys)
{
    const uint32_t Bs[] = {2, 4, 8};
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 101;
    for (size_t b = 0; b < 3; b++)
        for (int excl = 0; excl <= 1; excl++) {
            struct setup s = make_setup(23 + 7 * b, LSH_KEYS_SHARED, 3, Bs[b]);
            s.exclude_self = excl;
            s.d = 4 + b;
            s.dv = 2 + b;
            check_all(&s, &mo, seed++, NULL);
        }
}

Test(eval_naive, bucket_mode_shared_normalized_keys)
{
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 201;
    for (uint32_t B = 2; B <= 8; B *= 2)
        for (int excl = 0; excl <= 1; excl++) {
            struct setup s = make_setup(31, LSH_KEYS_SHARED_NORMALIZED, 3, B);
            s.exclude_self = excl;
            s.d = 6;
            s.dv = 4;
            s.scale = 1.0; /* Reformer's own setting */
            check_all(&s, &mo, seed++, NULL);
        }
}

Test(eval_naive, bucket_mode_separate_keys)
{
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 301;
    for (uint32_t B = 2; B <= 8; B *= 2)
        for (int excl = 0; excl <= 1; excl++) {
            struct setup s = make_setup(29, LSH_KEYS_SEPARATE, 3, B);
            s.exclude_self = excl;
            s.d = 3 + B / 2;
            s.dv = 5;
            check_all(&s, &mo, seed++, NULL);
        }
}

/* ---- chunked mode ------------------------------------------------------------ */

Test(eval_naive, chunked_chunk_size_divides_n_look_back_0_1_2)
{
    const uint32_t sizes[] = {4, 6, 8};
    uint64_t seed = 401;
    for (size_t c = 0; c < 3; c++)
        for (uint32_t lb = 0; lb <= 2; lb++) {
            struct lsh_mode_opts mo = chunked_mode(sizes[c], lb, LSH_WINDOW_ALL);
            struct setup s = make_setup(48, LSH_KEYS_SHARED, 3, 4);
            check_all(&s, &mo, seed++, NULL);
        }
}

Test(eval_naive, chunked_chunk_size_not_dividing_n_look_back_0_1_2)
{
    const uint32_t sizes[] = {5, 7, 9};
    uint64_t seed = 501;
    for (size_t c = 0; c < 3; c++)
        for (uint32_t lb = 0; lb <= 2; lb++) {
            struct lsh_mode_opts mo = chunked_mode(sizes[c], lb, LSH_WINDOW_ALL);
            struct setup s = make_setup(37, c == 1 ? LSH_KEYS_SHARED_NORMALIZED : LSH_KEYS_SHARED,
                                        3, 4);
            check_all(&s, &mo, seed++, NULL);
        }
}

Test(eval_naive, chunked_look_back_covers_every_chunk)
{
    /* n = 10, c = 4: three chunks (4, 4, 2); look_back 2 reaches all of them,
     * 3 and 7 wrap around more than once.  c = 16 >= n: a single chunk. */
    const uint32_t lbs[] = {2, 3, 7};
    uint64_t seed = 601;
    for (size_t t = 0; t < 3; t++)
        for (int w = 0; w <= 1; w++) {
            struct lsh_mode_opts mo = chunked_mode(4, lbs[t], w ? LSH_WINDOW_SAME_BUCKET
                                                               : LSH_WINDOW_ALL);
            struct setup s = make_setup(10, LSH_KEYS_SHARED, 3, 4);
            check_all(&s, &mo, seed++, NULL);
        }
    for (uint32_t lb = 0; lb <= 1; lb++) {
        struct lsh_mode_opts mo = chunked_mode(16, lb, LSH_WINDOW_ALL);
        struct setup s = make_setup(10, LSH_KEYS_SHARED, 2, 4);
        struct tally t = {0};
        check_all(&s, &mo, seed++, &t);
        /* one chunk holds everything: every row sees all of U_i */
        cr_expect_eq(t.rows_full, (uint64_t)10 * 2 * 2, "single chunk should be full attention");
    }
}

Test(eval_naive, chunked_window_same_bucket)
{
    const uint32_t sizes[] = {4, 7};
    uint64_t seed = 701;
    for (size_t c = 0; c < 2; c++)
        for (uint32_t lb = 0; lb <= 2; lb++) {
            struct lsh_mode_opts mo = chunked_mode(sizes[c], lb, LSH_WINDOW_SAME_BUCKET);
            struct setup s = make_setup(33, LSH_KEYS_SHARED, 3, 4);
            check_all(&s, &mo, seed++, NULL);
        }
}

Test(eval_naive, chunked_separate_keys_interleaved_sort)
{
    /* 2n = 42 items: c = 6 and 7 divide it, c = 4 and 8 do not */
    const uint32_t sizes[] = {4, 6, 7, 8};
    uint64_t seed = 801;
    for (size_t c = 0; c < 4; c++)
        for (uint32_t lb = 0; lb <= 2; lb++)
            for (int w = 0; w <= 1; w++) {
                struct lsh_mode_opts mo = chunked_mode(sizes[c], lb, w ? LSH_WINDOW_SAME_BUCKET
                                                                        : LSH_WINDOW_ALL);
                struct setup s = make_setup(21, LSH_KEYS_SEPARATE, 3, 4);
                s.exclude_self = (int)((c + lb) % 2);
                s.d = 7;
                s.dv = 2;
                check_all(&s, &mo, seed++, NULL);
            }
    /* few items: 2n = 12, c = 5 gives chunks (5, 5, 2); look_back 2 covers all */
    for (uint32_t lb = 0; lb <= 2; lb++) {
        struct lsh_mode_opts mo = chunked_mode(5, lb, LSH_WINDOW_ALL);
        struct setup s = make_setup(6, LSH_KEYS_SEPARATE, 2, 2);
        check_all(&s, &mo, seed++, NULL);
    }
}

/* A hand-made case of the interleaving: with chunk size 2, query i and key i
 * of the same bucket share a chunk, so with look_back 0 and window all each
 * query sees exactly its own key (buckets all 0). */
Test(eval_naive, chunked_separate_keys_query_before_key_of_same_position)
{
    struct setup s = make_setup(8, LSH_KEYS_SEPARATE, 1, 2);
    struct problem p;
    struct lsh_mode_opts mo = chunked_mode(2, 0, LSH_WINDOW_ALL);
    struct lsh_metrics out[1];
    const enum lsh_combine u = LSH_COMBINE_UNION;
    const uint32_t one = 1;
    struct expect e;

    s.exclude_self = 0;
    problem_make(&p, &s, 901);
    memset(p.bq, 0, 8 * sizeof(uint32_t));
    memset(p.bk, 0, 8 * sizeof(uint32_t));
    metrics_alloc(out, 1, s.n_topk);
    engine_run(&p, &mo, &one, 1, &u, 1, 1, out);
    oracle(&p, &mo, 1, u, &e);
    compare("[separate, c=2, lb=0, all buckets 0]", out, &e, s.n_topk);
    cr_expect(close_enough(out[0].mean_candidates, 1.0), "each query sees only key i: %g",
              out[0].mean_candidates);
    cr_expect(close_enough(out[0].density, 1.0 / 8.0), "density %g", out[0].density);
    metrics_free(out, 1);
    problem_free(&p);
}

/* ---- combine ---------------------------------------------------------------- */

Test(eval_naive, combine_rounds_with_empty_rounds_dropping_out)
{
    struct lsh_mode_opts modes[3] = {bucket_mode(), chunked_mode(3, 0, LSH_WINDOW_SAME_BUCKET),
                                     chunked_mode(4, 1, LSH_WINDOW_ALL)};
    uint64_t seed = 1001;
    struct tally t = {0};
    for (size_t m = 0; m < 3; m++)
        for (int k = 0; k < 2; k++) {
            struct setup s = make_setup(40, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3, 16);
            check_all(&s, &modes[m], seed++, &t);
        }
    cr_expect_gt(t.rows_with_dropped_round, 0, "no row had an empty round among non-empty ones");
}

Test(eval_naive, combine_order_rounds_then_union)
{
    const enum lsh_combine rev[2] = {LSH_COMBINE_ROUNDS, LSH_COMBINE_UNION};
    struct lsh_mode_opts mo = bucket_mode();
    struct setup s = make_setup(27, LSH_KEYS_SHARED, 3, 4);
    check_case(&s, &mo, prefixes_123, 3, rev, 2, 1, 1101, NULL);
    const enum lsh_combine only_rounds = LSH_COMBINE_ROUNDS;
    check_case(&s, &mo, prefixes_123, 3, &only_rounds, 1, 1, 1102, NULL);
}

/* ---- attention options ------------------------------------------------------- */

Test(eval_naive, causal_and_exclude_self_on_and_off)
{
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(5, 1, LSH_WINDOW_ALL)};
    const enum lsh_keys keys[3] = {LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED,
                                   LSH_KEYS_SEPARATE};
    uint64_t seed = 1201;
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < 3; k++)
            for (int causal = 0; causal <= 1; causal++)
                for (int excl = 0; excl <= 1; excl++) {
                    struct setup s = make_setup(19, keys[k], 3, 3);
                    s.causal = causal;
                    s.exclude_self = excl;
                    check_all(&s, &modes[m], seed++, NULL);
                }
}

/* Small integer entries and scale 0.5 make every score exact, so rows have many
 * tied scores: top-K must break them towards the smaller key index. */
Test(eval_naive, topk_ties_broken_towards_smaller_index)
{
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(5, 1, LSH_WINDOW_ALL)};
    uint64_t seed = 1251;
    for (size_t m = 0; m < 2; m++)
        for (int k = 0; k < 2; k++)
            for (int causal = 0; causal <= 1; causal++) {
                struct setup s = make_setup(30, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3, 4);
                s.integer_entries = 1;
                s.d = 3;
                s.scale = 0.5;
                s.causal = causal;
                s.n_topk = 4;
                s.topk[0] = 1;
                s.topk[1] = 2;
                s.topk[2] = 4;
                s.topk[3] = 7;
                check_all(&s, &modes[m], seed++, NULL);
            }
}

/* ---- prefixes, bucket counts, sizes ----------------------------------------- */

Test(eval_naive, several_prefixes_in_one_pass)
{
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(6, 1, LSH_WINDOW_ALL)};
    const uint32_t p13[2] = {1, 3}, p2[1] = {2}, p245[3] = {2, 4, 5};
    for (size_t m = 0; m < 2; m++) {
        struct setup s = make_setup(35, LSH_KEYS_SHARED, 3, 4);
        check_case(&s, &modes[m], prefixes_123, 3, both_combines, 2, 1, 1301, NULL);
        check_case(&s, &modes[m], p13, 2, both_combines, 2, 1, 1301, NULL);
        check_case(&s, &modes[m], p2, 1, both_combines, 2, 1, 1301, NULL);
        struct setup s5 = make_setup(35, LSH_KEYS_SEPARATE, 5, 4);
        check_case(&s5, &modes[m], p245, 3, both_combines, 2, 1, 1302, NULL);
    }
}

Test(eval_naive, few_buckets_dense_candidates)
{
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(8, 2, LSH_WINDOW_ALL)};
    uint64_t seed = 1401;
    struct tally t = {0};
    for (size_t m = 0; m < 2; m++)
        for (uint32_t B = 1; B <= 2; B++)
            for (int k = 0; k < 2; k++) {
                struct setup s = make_setup(24, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3, B);
                s.n_topk = 4;
                s.topk[0] = 1;
                s.topk[1] = 2;
                s.topk[2] = 5;
                s.topk[3] = 40; /* > n: T_i = U_i */
                check_all(&s, &modes[m], seed++, &t);
            }
    cr_expect_gt(t.rows_full, 0, "dense case never reached S_i = U_i");
}

Test(eval_naive, many_buckets_with_empty_rows)
{
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(4, 0, LSH_WINDOW_SAME_BUCKET)};
    const enum lsh_keys keys[3] = {LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED,
                                   LSH_KEYS_SEPARATE};
    uint64_t seed = 1501;
    struct tally t = {0};
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < 3; k++)
            for (int excl = 0; excl <= 1; excl++) {
                struct setup s = make_setup(40, keys[k], 3, 16);
                s.exclude_self = excl;
                s.d = 8;
                check_all(&s, &modes[m], seed++, &t);
            }
    cr_expect_gt(t.empty_rows, 0, "B = 16 with n = 40 should give empty rows");
}

Test(eval_naive, sizes_from_5_to_64)
{
    const size_t ns[] = {5, 9, 16, 41, 64};
    uint64_t seed = 1601;
    for (size_t t = 0; t < 5; t++) {
        struct setup s = make_setup(ns[t], (enum lsh_keys)(t % 3), 3, 4);
        s.d = 3 + t;
        s.dv = 2 + (t % 4);
        struct lsh_mode_opts mb = bucket_mode();
        struct lsh_mode_opts mc = chunked_mode(3 + (uint32_t)t, (uint32_t)(t % 3),
                                               t % 2 ? LSH_WINDOW_SAME_BUCKET : LSH_WINDOW_ALL);
        check_all(&s, &mb, seed++, NULL);
        check_all(&s, &mc, seed++, NULL);
    }
}

Test(eval_naive, single_token_n1)
{
    const enum lsh_keys keys[3] = {LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED,
                                   LSH_KEYS_SEPARATE};
    struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(4, 1, LSH_WINDOW_ALL)};
    uint64_t seed = 1701;
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < 3; k++)
            for (int excl = 0; excl <= 1; excl++)
                for (int causal = 0; causal <= 1; causal++) {
                    struct setup s = make_setup(1, keys[k], 2, 4);
                    s.exclude_self = excl;
                    s.causal = causal;
                    check_all(&s, &modes[m], seed++, NULL);
                }

    /* Shared keys, n = 1: U_0 = S_0 = {0}, not an empty row; the Gram ratio is
     * 0/0, written as 0 with a warning. */
    struct setup s = make_setup(1, LSH_KEYS_SHARED, 1, 4);
    struct problem p;
    struct lsh_metrics out[1];
    const uint32_t one = 1;
    const enum lsh_combine u = LSH_COMBINE_UNION;
    struct lsh_mode_opts mo = bucket_mode();
    problem_make(&p, &s, 1799);
    metrics_alloc(out, 1, s.n_topk);
    engine_run(&p, &mo, &one, 1, &u, 1, 1, out);
    cr_expect_eq(out[0].empty_rows, 0);
    cr_expect(close_enough(out[0].mass_recall, 1.0));
    cr_expect(close_enough(out[0].out_rel_err, 0.0));
    cr_expect_eq(out[0].gram_recovery, 0.0);
    cr_expect(out[0].warnings & LSH_WARN_GRAM_ZERO, "0/0 gram_recovery without a warning");
    cr_expect(close_enough(out[0].bucket_max, 4.0), "one row in one of 4 buckets: %g",
              out[0].bucket_max);
    cr_expect_eq(out[0].bucket_entropy, 0.0);
    metrics_free(out, 1);
    problem_free(&p);
}

/* When every S_i is U_i (or an empty row falls back to {i} = U_i), union's A-hat
 * is A and attn_rel_err is 0, as out_rel_err (~1e-16) shows; a value like 2e-8
 * there is not what SPEC 5 defines. */
Test(eval_naive, attn_rel_err_zero_for_union_and_rounds_when_every_row_keeps_all_of_u)
{
    struct {
        size_t n;
        enum lsh_keys keys;
        int exclude_self;
        uint32_t B;
        struct lsh_mode_opts mo;
        int key_elsewhere; /* separate: key 0 in another bucket than query 0 */
    } cases[] = {
        {1, LSH_KEYS_SHARED, 1, 4, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 0},
        {1, LSH_KEYS_SEPARATE, 0, 4, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 0},
        /* an empty row whose fallback {0} is U_0 itself: A = A-hat = [1] */
        {1, LSH_KEYS_SEPARATE, 0, 4, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 1},
        {24, LSH_KEYS_SHARED, 1, 1, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 0},
        {24, LSH_KEYS_SEPARATE, 0, 1, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 0},
        {10, LSH_KEYS_SHARED, 1, 4, {LSH_MODE_CHUNKED, 16, 1, LSH_WINDOW_ALL, 1, 0, 0}, 0},
    };
    /* three rounds, each the same full attention: combine rounds weighs
     * every key by the same N = H, so its A-hat is A too (the tile path's sums
     * take their exact form when every N_ij is the same) */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (uint64_t seed = 1901; seed < 1909; seed++) {
            struct setup s = make_setup(cases[c].n, cases[c].keys, 3, cases[c].B);
            struct problem p;
            struct lsh_metrics out[6];
            struct expect e;
            char what[512];
            s.exclude_self = cases[c].exclude_self;
            problem_make(&p, &s, seed + 100 * c);
            if (p.bk) /* key i in query i's bucket (or deliberately not) */
                for (size_t i = 0; i < 3 * s.n; i++)
                    p.bk[i] = (p.bq[i] + (uint32_t)cases[c].key_elsewhere) % s.B;
            metrics_alloc(out, 6, s.n_topk);
            engine_run(&p, &cases[c].mo, prefixes_123, 3, both_combines, 2, 1, out);
            for (uint32_t h = 1; h <= 3; h++) {
                oracle(&p, &cases[c].mo, h, LSH_COMBINE_UNION, &e);
                describe(what, sizeof what, &p, &cases[c].mo, h, LSH_COMBINE_UNION,
                         seed + 100 * c);
                cr_assert(e.attn_rel_err <= ABS_TOL && e.rows_full + e.empty_rows == cases[c].n,
                          "%s: case should be full attention", what);
            }
            for (size_t k = 0; k < 6; k++) {
                cr_expect(fabs(out[k].attn_rel_err) <= ABS_TOL,
                          "%s prefix %zu combine %zu attn_rel_err: engine %.17g", what, k / 2 + 1,
                          k % 2, out[k].attn_rel_err);
                cr_expect(fabs(out[k].out_rel_err) <= ABS_TOL,
                          "%s prefix %zu combine %zu out_rel_err: engine %.17g", what, k / 2 + 1,
                          k % 2, out[k].out_rel_err);
            }
            metrics_free(out, 6);
            problem_free(&p);
        }
    }
}

/* ---- determinism over threads ------------------------------------------------- */

static void expect_bit_identical(const char *what, const struct lsh_metrics *a,
                                 const struct lsh_metrics *b, size_t n_topk)
{
#define SAME(field)                                                                          \
    cr_expect(memcmp(&a->field, &b->field, sizeof a->field) == 0,                              \
              "%s %s differs: %.17g vs %.17g", what, #field, (double)a->field, (double)b->field)
    SAME(out_rel_err);
    SAME(attn_rel_err);
    SAME(mass_recall);
    SAME(kl);
    SAME(empty_rows);
    SAME(gram_recovery);
    SAME(density);
    SAME(mean_candidates);
    SAME(bucket_max);
    SAME(bucket_entropy);
    SAME(warnings);
#undef SAME
    cr_expect(memcmp(a->topk_recall, b->topk_recall, n_topk * sizeof(double)) == 0,
              "%s topk_recall differs", what);
}

Test(eval_naive, threads_1_and_2_bit_identical)
{
    struct {
        size_t n;
        enum lsh_keys keys;
        struct lsh_mode_opts mo;
        uint32_t B;
    } cases[] = {
        {64, LSH_KEYS_SHARED, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 4},
        {64, LSH_KEYS_SEPARATE, {LSH_MODE_CHUNKED, 6, 1, LSH_WINDOW_ALL, 1, 0, 0}, 4},
        {333, LSH_KEYS_SHARED_NORMALIZED, {LSH_MODE_CHUNKED, 16, 2, LSH_WINDOW_SAME_BUCKET, 1, 0, 0}, 8},
        {517, LSH_KEYS_SHARED, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 16},
        {517, LSH_KEYS_SEPARATE, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}, 32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct setup s = make_setup(cases[c].n, cases[c].keys, 3, cases[c].B);
        s.d = 8;
        s.dv = 5;
        struct problem p;
        struct lsh_metrics one[6], two[6];
        char what[512];
        problem_make(&p, &s, 1801 + c);
        metrics_alloc(one, 6, s.n_topk);
        metrics_alloc(two, 6, s.n_topk);
        engine_run(&p, &cases[c].mo, prefixes_123, 3, both_combines, 2, 1, one);
        engine_run(&p, &cases[c].mo, prefixes_123, 3, both_combines, 2, 2, two);
        for (size_t t = 0; t < 6; t++) {
            snprintf(what, sizeof what, "[case %zu, n=%zu, out %zu, 1 vs 2 threads]", c,
                     cases[c].n, t);
            expect_bit_identical(what, &one[t], &two[t], s.n_topk);
        }
        /* the larger sizes against the oracle too */
        if (cases[c].n > 64) {
            for (size_t t = 0; t < 6; t++) {
                struct expect e;
                oracle(&p, &cases[c].mo, prefixes_123[t / 2], both_combines[t % 2], &e);
                describe(what, sizeof what, &p, &cases[c].mo, prefixes_123[t / 2],
                         both_combines[t % 2], 1801 + c);
                compare(what, &two[t], &e, s.n_topk);
            }
        }
        metrics_free(one, 6);
        metrics_free(two, 6);
        { /* union alone: the tile path */
            const enum lsh_combine u = LSH_COMBINE_UNION;
            metrics_alloc(one, 3, s.n_topk);
            metrics_alloc(two, 3, s.n_topk);
            engine_run(&p, &cases[c].mo, prefixes_123, 3, &u, 1, 1, one);
            for (unsigned th = 2; th <= 3; th++) {
                engine_run(&p, &cases[c].mo, prefixes_123, 3, &u, 1, th, two);
                for (size_t t = 0; t < 3; t++) {
                    snprintf(what, sizeof what, "[case %zu, n=%zu, union alone, prefix %zu, 1 vs "
                             "%u threads]", c, cases[c].n, t, th);
                    expect_bit_identical(what, &one[t], &two[t], s.n_topk);
                }
            }
            metrics_free(one, 3);
            metrics_free(two, 3);
        }
        problem_free(&p);
    }
}

/* Buckets of 350-700 rows and keys: several row tiles and up to two key chunks of
 * the tile path per bucket (causal with shared keys, then separate keys);
 * B = 1: every pair of round 1 is a repeat. */
Test(eval_naive, buckets_larger_than_one_tile)
{
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 2701;
    for (int k = 0; k < 3; k++) {
        struct setup s = make_setup(700, k == 1 ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 2,
                                    k == 2 ? 1 : 2);
        s.causal = k == 0;
        check_all(&s, &mo, seed++, NULL);
    }
}

static void one_slot(void)
{
    setenv("LSHLAB_TEST_TILE_SLOTS", "1", 1);
}

/* With one part slot a thread, a bucket of two key chunks no longer fits it:
 * each tile then loads its own chunks and gathers the keys it keeps (the path
 * of groups of more than 4 x 512 keys); buckets of one chunk still share
 * theirs.  n = 1100, B = 2: buckets of ~550 keys, tiles whose keys partly met
 * before in later rounds. */
Test(eval_naive, buckets_larger_than_the_part_slots, .init = one_slot)
{
    struct lsh_mode_opts mo = bucket_mode();
    const uint64_t seed = 2705;
    struct setup s = make_setup(1100, LSH_KEYS_SHARED, 3, 2);
    check_all(&s, &mo, seed, NULL);
}

/* The tile path holds the keys' buckets of earlier rounds as bytes when
 * B <= 256, as 32-bit ids above: both against the brute force, B = 260 with
 * ids 256 apart (read as bytes, buckets 0 and 256 would be one). */
Test(eval_naive, bucket_ids_as_bytes_up_to_256_buckets_and_as_words_above)
{
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 2711;
    for (uint32_t B = 256; B <= 260; B += 4) {
        struct setup s = make_setup(120, LSH_KEYS_SHARED, 3, B);
        s.ids_256_apart = B > 259;
        check_all(&s, &mo, seed++, NULL);
    }
}

/* With a huge scale, a row whose best keys are not candidates has a mass of
 * exactly 0 in double precision: its metrics come from the max-shifted
 * scores (the exact path), in both the row and the tile path. */
Test(eval_naive, candidate_mass_underflow_takes_the_exact_path)
{
    struct lsh_mode_opts mo = bucket_mode();
    uint64_t seed = 2801;
    for (int k = 0; k < 2; k++) {
        struct setup s = make_setup(200, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3, 8);
        s.scale = 3000.0;
        check_all(&s, &mo, seed++, NULL);
    }
}

/* ---- the reference pass alone, against a brute-force two-pass oracle ---- */

/* n = 1100 keys: two full key chunks of the reference pass and a partial one,
 * eight full row blocks and a partial one.  Keys grow along j, so a row's max
 * rises from chunk to chunk (the running sums are rescaled), and a few rows
 * are hot enough that the rescale underflows to 0.  With integer entries the
 * scores are exact and full of ties, so the top-k must match index for index
 * (ties: smaller j first), also across chunks. */
struct ref_case {
    int causal, exclude_self, normalized, integer, sampled;
};

static void ref_oracle_row(const struct lsh_attn *a, size_t i, size_t kmax, double *lse,
                           double *sum_a2, double *gram, uint32_t *count, double *o,
                           uint32_t *top, double *s)
{
    const size_t n = a->n;
    unsigned char *in = xcalloc(n, 1);
    int any = 0;
    for (size_t j = 0; j < n; j++) {
        in[j] = (unsigned char)(!(a->exclude_self && j == i) && !(a->causal && j > i));
        any |= in[j];
    }
    if (!any)
        in[i] = 1;
    double mx = -INFINITY;
    *count = 0;
    *gram = 0.0;
    for (size_t j = 0; j < n; j++) {
        double raw = dot(a->q + i * a->d, a->k + j * a->d, a->d);
        s[j] = a->scale * raw;
        if (!in[j])
            continue;
        (*count)++;
        mx = s[j] > mx ? s[j] : mx;
        double g = a->gnorm ? raw * a->gnorm[j] : raw;
        if (j != i)
            *gram += g * g;
    }
    double z = 0.0, z2 = 0.0;
    for (size_t j = 0; j < n; j++)
        if (in[j]) {
            z += exp(s[j] - mx);
            z2 += exp(2.0 * (s[j] - mx));
        }
    *lse = mx + log(z);
    *sum_a2 = z2 / (z * z);
    memset(o, 0, a->d_v * sizeof *o);
    for (size_t j = 0; j < n; j++)
        if (in[j])
            for (size_t e = 0; e < a->d_v; e++)
                o[e] += exp(s[j] - *lse) * a->v[j * a->d_v + e];
    /* top-k by selection: best score, ties to the smaller j */
    for (size_t len = 0; len < kmax && len < *count; len++) {
        size_t best = n;
        for (size_t j = 0; j < n; j++)
            if (in[j] == 1 && (best == n || s[j] > s[best]))
                best = j;
        top[len] = (uint32_t)best;
        in[best] = 2; /* taken */
    }
    free(in);
}

static void check_reference_case(const struct ref_case *rc, uint64_t seed)
{
    const size_t n = 1100, d = rc->integer ? 3 : 7, dv = 3; /* d = 3: ties everywhere */
    struct xrng r;
    xr_seed(&r, seed);
    double *q = xcalloc(n * d, sizeof(double)), *k = xcalloc(n * d, sizeof(double));
    double *v = xcalloc(n * dv, sizeof(double)), *gn = xcalloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double f = i % 97 == 5 ? 40.0 : 1.0 + 2.0 * (double)i / (double)n;
        for (size_t t = 0; t < d; t++)
            q[i * d + t] = rc->integer ? (double)xr_below(&r, 5) - 2.0 : f * xr_normal(&r);
    }
    for (size_t t = 0; t < n * dv; t++)
        v[t] = 3.0 * xr_normal(&r);
    if (rc->normalized) {
        for (size_t j = 0; j < n; j++) {
            double nn = sqrt(dot(q + j * d, q + j * d, d));
            gn[j] = nn;
            for (size_t t = 0; t < d; t++)
                k[j * d + t] = nn > 0.0 ? q[j * d + t] / nn : 0.0;
        }
    } else {
        memcpy(k, q, n * d * sizeof(double));
    }
    /* kmax 10 (the first chunk's bound on the k-th applies) or 40 (it does not) */
    static const uint32_t topk[3] = {1, 10, 40};
    const size_t kmax = seed % 2 ? 40 : 10;
    struct lsh_attn a = {
        .n = n, .d = d, .d_v = dv, .q = q, .k = k, .v = v,
        .gnorm = rc->normalized ? gn : NULL,
        .scale = rc->integer ? 0.5 : 1.0 / sqrt((double)d),
        .exclude_self = rc->exclude_self, .causal = rc->causal, .n_topk = kmax == 40 ? 3 : 2,
        .topk = topk,
    };
    size_t *rows = NULL, m = n;
    if (rc->sampled) { /* rows 0, 1, then every third, then the last */
        rows = xcalloc(n, sizeof *rows);
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (i < 2 || i % 3 == 0 || i == n - 1)
                rows[m++] = i;
    }

    struct lsh_reference *ref[3] = {NULL, NULL, NULL};
    const unsigned threads[3] = {1, 3, 2};
    for (int t = 0; t < 3; t++) {
        struct lsh_error err;
        memset(&err, 0, sizeof err);
        int rcode = lsh_reference_compute(&a, rows, m, threads[t], t == 2 ? (size_t)-1 : 0,
                                          &ref[t], &err);
        cr_assert_eq(rcode, 0, "lsh_reference_compute: %s", err.message);
    }
    cr_assert_eq(ref[0]->kmax, kmax);
    cr_assert_not_null(ref[2]->raw);
    double *s = xcalloc(n, sizeof(double)), o[3];
    uint32_t top[40];
    char what[160];
    snprintf(what, sizeof what, "[causal=%d excl=%d normalized=%d integer=%d sampled=%d]",
             rc->causal, rc->exclude_self, rc->normalized, rc->integer, rc->sampled);
    for (size_t ri = 0; ri < m; ri++) {
        const size_t i = rows ? rows[ri] : ri;
        double lse, a2, gram;
        uint32_t count;
        ref_oracle_row(&a, i, kmax, &lse, &a2, &gram, &count, o, top, s);
        const struct lsh_reference *e = ref[0];
        cr_expect(fabs(e->lse[ri] - lse) <= 1e-12 * (fabs(lse) + 1.0),
                  "%s row %zu lse: %.17g vs %.17g", what, i, e->lse[ri], lse);
        cr_expect(fabs(e->sum_a2[ri] - a2) <= 1e-11 * a2, "%s row %zu sum_a2: %.17g vs %.17g",
                  what, i, e->sum_a2[ri], a2);
        cr_expect(fabs(e->gram_den[ri] - gram) <= 1e-11 * gram + 1e-300,
                  "%s row %zu gram_den: %.17g vs %.17g", what, i, e->gram_den[ri], gram);
        cr_expect_eq(e->u_count[ri], count, "%s row %zu |U_i|", what, i);
        for (size_t c = 0; c < dv; c++)
            cr_expect(fabs(e->out[ri * dv + c] - o[c]) <= 1e-10 * 30.0,
                      "%s row %zu O[%zu]: %.17g vs %.17g", what, i, c, e->out[ri * dv + c], o[c]);
        const size_t valid = count < kmax ? count : kmax;
        for (size_t t = 0; t < valid; t++) {
            const uint32_t j = e->top[ri * kmax + t];
            if (rc->integer) /* exact scores: the very same list */
                cr_expect_eq(j, top[t], "%s row %zu top[%zu]: key %u vs %u", what, i, t, j,
                             top[t]);
            else /* the same scores (GEMM and dot products may round apart) */
                cr_expect(j < n && fabs(s[j] - s[top[t]]) <= 1e-12 * (fabs(s[top[t]]) + 1.0),
                          "%s row %zu top[%zu]: key %u (%.17g) vs %u (%.17g)", what, i, t, j,
                          j < n ? s[j] : 0.0, top[t], s[top[t]]);
        }
        for (size_t j = 0; j < n; j += 7) /* the score cache, every row in full */
            cr_expect(fabs(ref[2]->raw[ri * n + j] - s[j] / a.scale) <=
                          1e-12 * (fabs(s[j] / a.scale) + 1.0),
                      "%s row %zu raw[%zu]", what, i, j);
    }
    /* 1, 2 and 3 threads, cache or none: the same bits */
    for (int t = 1; t < 3; t++) {
        cr_expect(memcmp(ref[0]->lse, ref[t]->lse, m * sizeof(double)) == 0, "%s lse", what);
        cr_expect(memcmp(ref[0]->sum_a2, ref[t]->sum_a2, m * sizeof(double)) == 0, "%s a2", what);
        cr_expect(memcmp(ref[0]->gram_den, ref[t]->gram_den, m * sizeof(double)) == 0,
                  "%s gram", what);
        cr_expect(memcmp(ref[0]->out, ref[t]->out, m * dv * sizeof(double)) == 0, "%s out", what);
        for (size_t ri = 0; ri < m; ri++) {
            const size_t valid = ref[0]->u_count[ri] < kmax ? ref[0]->u_count[ri] : kmax;
            cr_expect(memcmp(ref[0]->top + ri * kmax, ref[t]->top + ri * kmax,
                             valid * sizeof(uint32_t)) == 0,
                      "%s top of row %zu", what, ri);
        }
    }
    cr_expect_eq(ref[0]->flops, ref[1]->flops, "%s flops", what);
    for (int t = 0; t < 3; t++)
        lsh_reference_free(ref[t]);
    free(s);
    free(rows);
    free(q);
    free(k);
    free(v);
    free(gn);
}

Test(eval_naive, reference_pass_over_several_key_chunks)
{
    uint64_t seed = 3001;
    for (int causal = 0; causal <= 1; causal++)
        for (int excl = 0; excl <= 1; excl++)
            for (int variant = 0; variant < 3; variant++) {
                struct ref_case rc = {causal, excl, variant == 1, variant == 2, 0};
                check_reference_case(&rc, seed++);
            }
    struct ref_case sampled = {1, 1, 0, 0, 1};
    check_reference_case(&sampled, seed++);
    struct ref_case sampled_int = {0, 1, 0, 1, 1};
    check_reference_case(&sampled_int, seed++);
    check_reference_case(&sampled_int, seed++);
}

/* A sampled reference (reference_rows): each metric is the same ratio over
 * the sampled rows, on the tile path (union alone) and on the row path
 * (union with rounds), in both modes. */
Test(eval_naive, sampled_rows_give_the_oracle_over_the_sample)
{
    const struct lsh_mode_opts modes[3] = {bucket_mode(), chunked_mode(5, 1, LSH_WINDOW_ALL),
                                           chunked_mode(4, 0, LSH_WINDOW_SAME_BUCKET)};
    uint64_t seed = 2901;
    for (size_t mi = 0; mi < 3; mi++)
        for (int k = 0; k < 2; k++)
            for (int causal = 0; causal <= 1; causal++) {
                struct setup s = make_setup(90, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3, 4);
                s.causal = causal;
                struct problem p;
                problem_make(&p, &s, seed);
                size_t rows[90], m = 0;
                unsigned char sel[90] = {0};
                for (size_t i = 0; i < s.n; i++)
                    if (i % 3 == 1 || i == 0 || i == s.n - 1) {
                        rows[m++] = i;
                        sel[i] = 1;
                    }
                struct lsh_rounds rounds = {.n = s.n, .n_hashes = s.H, .n_buckets = s.B,
                                            .bq = p.bq, .bk = key_buckets(&p)};
                for (size_t nc = 1; nc <= 2; nc++) { /* union alone, then both */
                    struct lsh_reference *ref = NULL;
                    struct lsh_error err;
                    memset(&err, 0, sizeof err);
                    cr_assert_eq(lsh_reference_compute(&p.attn, rows, m, 2, 0, &ref, &err), 0,
                                 "%s", err.message);
                    struct lsh_metrics out[6];
                    metrics_alloc(out, 3 * nc, s.n_topk);
                    cr_assert_eq(lsh_eval_pass(ref, &rounds, &modes[mi], prefixes_123, 3,
                                               both_combines, nc, NULL, 2, out, NULL, &err),
                                 0, "%s", err.message);
                    for (size_t ip = 0; ip < 3; ip++)
                        for (size_t ic = 0; ic < nc; ic++) {
                            struct expect e;
                            char what[512];
                            oracle_rows(&p, &modes[mi], prefixes_123[ip], both_combines[ic], sel,
                                        &e);
                            describe(what, sizeof what, &p, &modes[mi], prefixes_123[ip],
                                     both_combines[ic], seed);
                            strncat(what, nc == 1 ? " (sampled, union alone)" : " (sampled)",
                                    sizeof what - strlen(what) - 1);
                            compare(what, &out[ip * nc + ic], &e, s.n_topk);
                            cr_expect_eq(out[ip * nc + ic].empty_rows, e.empty_rows);
                        }
                    metrics_free(out, 3 * nc);
                    lsh_reference_free(ref);
                }
                problem_free(&p);
                seed++;
            }
}

/* ---- candidate rules, importance and the oracle (SPEC 13-14) --------------- */

static struct lsh_host_law test_law = {.fn = test_law_fn, .name = "simhash-test"};
static const struct lsh_eval_opts opts_law = {.law = &test_law, .oracle = 0};
static const struct lsh_eval_opts opts_law_oracle = {.law = &test_law, .oracle = 1};
static const enum lsh_combine union_importance[2] = {LSH_COMBINE_UNION,
                                                     LSH_COMBINE_IMPORTANCE};
static const uint32_t prefixes_1234[4] = {1, 2, 3, 4};

static struct lsh_mode_opts with_rule(struct lsh_mode_opts mo, uint32_t t, uint32_t sink,
                                      uint32_t local)
{
    mo.min_collisions = t;
    mo.sink = sink;
    mo.local = local;
    return mo;
}

/* S_i = the keys of U_i met in >= t of the first H rounds: against a count of
 * rounds per pair in dense masks, every prefix, both modes, t above H too. */
Test(eval_naive, min_collisions_against_a_brute_force_count)
{
    const struct lsh_mode_opts modes[3] = {bucket_mode(), chunked_mode(5, 1, LSH_WINDOW_ALL),
                                           chunked_mode(4, 0, LSH_WINDOW_SAME_BUCKET)};
    const enum lsh_combine u = LSH_COMBINE_UNION;
    uint64_t seed = 4001;
    struct tally tally = {0};
    for (size_t mi = 0; mi < 3; mi++)
        for (int k = 0; k < 2; k++)
            for (uint32_t t = 2; t <= 5; t += (t == 3 ? 2 : 1)) {
                struct setup s = make_setup(40, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 4, 3);
                s.causal = k;
                struct lsh_mode_opts mo = with_rule(modes[mi], t, 0, 0);
                check_case(&s, &mo, prefixes_1234, 4, &u, 1, 1, seed++, &tally);
            }
    run_opts = &opts_law_oracle; /* importance and the oracle over the same sets */
    for (size_t mi = 0; mi < 3; mi++)
        for (uint32_t t = 2; t <= 3; t++) {
            struct setup s = make_setup(33, LSH_KEYS_SHARED_NORMALIZED, 4, 4);
            struct lsh_mode_opts mo = with_rule(modes[mi], t, 0, 0);
            check_case(&s, &mo, prefixes_1234, 4, union_importance, 2, 2, seed++, &tally);
        }
    run_opts = NULL;
    cr_assert(tally.empty_rows > 0, "no empty rows exercised");
}

/* A candidate rule that adds nothing (t = 1; local 1 with exclude_self: only
 * j = i, which U_i drops) must give the union's bits exactly, on the tile
 * path and on the row path; and the oracle on must not move any other metric
 * by a bit. */
Test(eval_naive, min_collisions_1_equals_the_union_bit_for_bit)
{
    const struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(6, 1, LSH_WINDOW_ALL)};
    for (size_t mi = 0; mi < 2; mi++)
        for (int causal = 0; causal <= 1; causal++) {
            struct setup s = make_setup(150, LSH_KEYS_SHARED, 3, 4);
            s.causal = causal;
            struct problem p;
            problem_make(&p, &s, 4101 + mi * 2 + (size_t)causal);
            struct lsh_metrics a[6], b[6];
            char what[256];
            metrics_alloc(a, 6, s.n_topk);
            metrics_alloc(b, 6, s.n_topk);
            struct lsh_mode_opts rule = with_rule(modes[mi], 1, 0, 1);
            cr_assert(lsh_eval_uses_tiles(&rule, union_importance, 1, 3),
                      "union with a candidate rule takes the tile path");
            cr_assert(!lsh_eval_uses_tiles(&rule, union_importance, 2, 3),
                      "importance takes the row path");
            const enum lsh_combine un = LSH_COMBINE_UNION;
            for (int row_path = 0; row_path <= 1; row_path++) {
                /* the row path: union next to rounds, as in a sweep of both */
                force_row_path(row_path);
                if (row_path)
                    engine_run(&p, &modes[mi], prefixes_123, 3, both_combines, 2, 2, a);
                else
                    engine_run(&p, &modes[mi], prefixes_123, 3, &un, 1, 2, a);
                engine_run(&p, &rule, prefixes_123, 3, &un, 1, 2, b);
                force_row_path(0);
                for (size_t t = 0; t < 3; t++) {
                    snprintf(what, sizeof what,
                             "[mode %zu causal %d prefix %zu, %s path: rule vs union]", mi,
                             causal, t, row_path ? "row" : "tile");
                    expect_bit_identical(what, &a[row_path ? 2 * t : t], &b[t], s.n_topk);
                }
            }
            /* union alone (tile path) with and without the oracle */
            const enum lsh_combine u = LSH_COMBINE_UNION;
            struct lsh_mode_opts plain = modes[mi];
            cr_assert(lsh_eval_uses_tiles(&plain, &u, 1, 3));
            engine_run(&p, &plain, prefixes_123, 3, &u, 1, 2, a);
            run_opts = &opts_law_oracle;
            engine_run(&p, &plain, prefixes_123, 3, &u, 1, 2, b);
            run_opts = NULL;
            for (size_t t = 0; t < 3; t++) {
                snprintf(what, sizeof what, "[mode %zu causal %d prefix %zu: oracle on vs off]",
                         mi, causal, t);
                expect_bit_identical(what, &a[t], &b[t], s.n_topk);
            }
            metrics_free(a, 6);
            metrics_free(b, 6);
            problem_free(&p);
        }
}

/* Sink keys j < s and the local window |i - j| < w (causal: i - w < j <= i)
 * join every S_i within U_i: keys shared, normalised and separate, causal and
 * exclude_self on and off, both modes, with t = 1 and 2; in bucket mode with
 * importance too (u = 1 for those keys) and the oracle. */
Test(eval_naive, sink_and_local_against_brute_force)
{
    const enum lsh_keys keys[3] = {LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED,
                                   LSH_KEYS_SEPARATE};
    const uint32_t sl[4][2] = {{3, 0}, {0, 2}, {2, 5}, {0, 1}};
    const struct lsh_mode_opts modes[2] = {bucket_mode(), chunked_mode(4, 1, LSH_WINDOW_ALL)};
    uint64_t seed = 4201;
    struct tally tally = {0};
    uint64_t forced = 0;
    run_opts = &opts_law_oracle;
    for (size_t mi = 0; mi < 2; mi++)
        for (size_t k = 0; k < 3; k++)
            for (int causal = 0; causal <= 1; causal++)
                for (int excl = 0; excl <= 1; excl++)
                    for (size_t r = 0; r < 4; r++) {
                        uint32_t t = 1 + (uint32_t)((r + (size_t)causal) % 2);
                        struct setup s = make_setup(29, keys[k], 3, 8);
                        s.causal = causal;
                        s.exclude_self = excl;
                        struct lsh_mode_opts mo = with_rule(modes[mi], t, sl[r][0], sl[r][1]);
                        check_case(&s, &mo, prefixes_123, 3, union_importance, mi ? 1 : 2, 1,
                                   seed, &tally);
                        struct problem p;
                        struct expect e;
                        problem_make(&p, &s, seed++);
                        oracle(&p, &mo, 3, LSH_COMBINE_UNION, &e);
                        forced += e.forced_pairs;
                        problem_free(&p);
                    }
    run_opts = NULL;
    cr_assert(forced > 0 && tally.points > 0);
}

/* combine importance against SPEC 14 evaluated by brute force (dense A / u,
 * u from the binomial terms one by one): t = 1, 2, 3, laws of 1 to 3 bits,
 * with and without sinks and a window, every key kind, every prefix. */
Test(eval_naive, importance_against_brute_force)
{
    const enum lsh_keys keys[3] = {LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED,
                                   LSH_KEYS_SEPARATE};
    struct lsh_mode_opts mo0 = bucket_mode();
    uint64_t seed = 4301;
    run_opts = &opts_law;
    for (size_t k = 0; k < 3; k++)
        for (uint32_t t = 1; t <= 3; t++)
            for (int rules = 0; rules <= 1; rules++) {
                law_bits = (double)t;
                struct setup s = make_setup(45, keys[k], 4, 2 + t);
                s.causal = rules && k == 0;
                struct lsh_mode_opts mo = with_rule(mo0, t, rules ? 2 : 0, rules ? 3 : 0);
                check_case(&s, &mo, prefixes_1234, 4, union_importance, 2, 1, seed++, NULL);
            }
    /* larger: several blocks of rows, two threads */
    law_bits = 2.0;
    struct setup s = make_setup(300, LSH_KEYS_SEPARATE, 3, 8);
    struct lsh_mode_opts mo = with_rule(mo0, 2, 1, 2);
    check_case(&s, &mo, prefixes_123, 3, union_importance, 2, 2, seed++, NULL);
    /* huge scale: A underflows on S_i; A-hat is formed from s - log u */
    struct setup big = make_setup(60, LSH_KEYS_SHARED, 3, 4);
    big.scale = 3000.0;
    mo = with_rule(mo0, 1, 0, 0);
    check_case(&big, &mo, prefixes_123, 3, union_importance, 2, 1, seed++, NULL);
    run_opts = NULL;
}

/* With p = 1 every u is 1, so importance is the union softmax: its metrics
 * equal union's from the same pass. */
Test(eval_naive, importance_with_p_one_equals_union)
{
    law_const = 1.0;
    run_opts = &opts_law;
    const struct lsh_mode_opts modes[2] = {bucket_mode(), with_rule(bucket_mode(), 2, 1, 2)};
    for (size_t mi = 0; mi < 2; mi++) {
        struct setup s = make_setup(80, LSH_KEYS_SHARED, 4, 4);
        struct problem p;
        struct lsh_metrics out[8];
        char what[128];
        problem_make(&p, &s, 4401 + mi);
        metrics_alloc(out, 8, s.n_topk);
        engine_run(&p, &modes[mi], prefixes_1234, 4, union_importance, 2, 1, out);
        for (size_t ip = 0; ip < 4; ip++) {
            const struct lsh_metrics *un = &out[2 * ip], *im = &out[2 * ip + 1];
            snprintf(what, sizeof what, "[p = 1, mode %zu, prefix %zu]", mi, ip + 1);
            EXPECT_CLOSE(what, im->out_rel_err, un->out_rel_err);
            cr_expect(attn_close_enough(im->attn_rel_err, un->attn_rel_err), "%s attn", what);
            EXPECT_CLOSE(what, im->kl, un->kl);
            cr_expect_eq(im->mass_recall, un->mass_recall, "%s", what);
            cr_expect_eq(im->density, un->density, "%s", what);
            cr_expect(un->kl > 0.0, "%s: a case with nothing to estimate", what);
        }
        metrics_free(out, 8);
        problem_free(&p);
    }
    run_opts = NULL;
    law_const = -1.0;
}

static int run_expect_error(const struct problem *p, const struct lsh_mode_opts *mo,
                            unsigned threads, struct lsh_error *err)
{
    struct lsh_rounds rounds = {.n = p->s.n, .n_hashes = p->s.H, .n_buckets = p->s.B,
                                .bq = p->bq, .bk = key_buckets(p)};
    struct lsh_reference *ref = NULL;
    memset(err, 0, sizeof *err);
    cr_assert_eq(lsh_reference_compute(&p->attn, NULL, 0, threads, 0, &ref, err), 0);
    struct lsh_metrics out[2];
    metrics_alloc(out, 2, p->s.n_topk);
    int rc = lsh_eval_pass(ref, &rounds, mo, prefixes_123, 1, union_importance, 2, &opts_law,
                           threads, out, NULL, err);
    metrics_free(out, 2);
    lsh_reference_free(ref);
    return rc;
}

/* A law value outside [0, 1] fails the pass (LSH_EPLUGIN), and so does a
 * collided pair whose u is 0 (LSH_EDATA), each naming the strategy and the
 * pair; sink and local keys have u = 1 whatever the law. */
Test(eval_naive, importance_refuses_a_bad_law_and_u_zero)
{
    struct setup s = make_setup(70, LSH_KEYS_SHARED, 3, 4);
    struct problem p;
    struct lsh_error err;
    problem_make(&p, &s, 4501);
    struct lsh_mode_opts mo = bucket_mode();
    for (unsigned th = 1; th <= 2; th++) {
        law_const = 1.5;
        cr_expect_eq(run_expect_error(&p, &mo, th, &err), LSH_EPLUGIN);
        cr_expect(strstr(err.message, "simhash-test") && strstr(err.message, "query") &&
                      strstr(err.message, "1.5"),
                  "message: %s", err.message);
        law_const = 0.0;
        cr_expect_eq(run_expect_error(&p, &mo, th, &err), LSH_EDATA);
        cr_expect(strstr(err.message, "simhash-test") && strstr(err.message, "key") &&
                      strstr(err.message, "u = P(Binomial"),
                  "message: %s", err.message);
        /* t above every prefix, every key a sink: nothing collided, no u = 0 */
        struct lsh_mode_opts only_sinks = with_rule(mo, 5, 70, 0);
        cr_expect_eq(run_expect_error(&p, &only_sinks, th, &err), 0, "%s", err.message);
    }
    law_const = -1.0;
    problem_free(&p);
}

/* The budget-matched oracle against a full sort of U_i per row: the tile path
 * (union alone), the row path (union with rounds), candidate rules, chunked
 * mode, separate keys, ties (integer entries), causal rows and empty rows. */
Test(eval_naive, oracle_against_a_brute_force_sort)
{
    const struct lsh_mode_opts modes[3] = {bucket_mode(), chunked_mode(5, 1, LSH_WINDOW_ALL),
                                           with_rule(bucket_mode(), 2, 1, 2)};
    uint64_t seed = 4601;
    struct tally tally = {0};
    run_opts = &opts_law_oracle;
    for (size_t mi = 0; mi < 3; mi++)
        for (int k = 0; k < 2; k++)
            for (int variant = 0; variant < 3; variant++) {
                struct setup s = make_setup(48, k ? LSH_KEYS_SEPARATE : LSH_KEYS_SHARED, 3,
                                            variant == 2 ? 16 : 4);
                s.causal = variant == 1;
                s.integer_entries = variant == 0;
                if (s.integer_entries) {
                    s.d = 3;
                    s.scale = 0.5;
                }
                /* (integer keys may point exactly away from a query: p = 0,
                 * so no importance there) */
                const enum lsh_combine *cb = mi == 2 ? union_importance : both_combines;
                const size_t nc = mi == 2 && s.integer_entries ? 1 : 2;
                check_case(&s, &modes[mi], prefixes_123, 3, cb, nc, 1 + (unsigned)variant % 2,
                           seed++, &tally);
            }
    run_opts = NULL;
    cr_assert(tally.empty_rows > 0, "no empty rows exercised");
}

/* With reference_rows: the rules, importance and the oracle over the sample,
 * with finite standard errors (positive where the rows differ). */
Test(eval_naive, sampled_rows_with_rules_importance_and_oracle)
{
    const struct lsh_mode_opts modes[2] = {with_rule(bucket_mode(), 2, 2, 3), bucket_mode()};
    uint64_t seed = 4701;
    for (size_t mi = 0; mi < 2; mi++) {
        struct setup s = make_setup(120, LSH_KEYS_SHARED, 3, 4);
        s.causal = mi == 1;
        struct problem p;
        problem_make(&p, &s, seed++);
        size_t rows[120], m = 0;
        unsigned char sel[120] = {0};
        for (size_t i = 0; i < s.n; i++)
            if (i % 4 == 1 || i == 0) {
                rows[m++] = i;
                sel[i] = 1;
            }
        struct lsh_rounds rounds = {.n = s.n, .n_hashes = s.H, .n_buckets = s.B, .bq = p.bq,
                                    .bk = key_buckets(&p)};
        struct lsh_reference *ref = NULL;
        struct lsh_error err;
        memset(&err, 0, sizeof err);
        cr_assert_eq(lsh_reference_compute(&p.attn, rows, m, 2, 0, &ref, &err), 0, "%s",
                     err.message);
        struct lsh_metrics out[6];
        struct lsh_metric_se se[6];
        double tse[6][MAX_TOPK];
        metrics_alloc(out, 6, s.n_topk);
        for (size_t t = 0; t < 6; t++) {
            memset(&se[t], 0, sizeof se[t]);
            se[t].topk_recall = tse[t];
            out[t].se = &se[t];
        }
        cr_assert_eq(lsh_eval_pass(ref, &rounds, &modes[mi], prefixes_123, 3, union_importance,
                                   2, &opts_law_oracle, 2, out, NULL, &err),
                     0, "%s", err.message);
        run_opts = &opts_law_oracle;
        for (size_t t = 0; t < 6; t++) {
            struct expect e;
            char what[512], why[256];
            oracle_rows(&p, &modes[mi], prefixes_123[t / 2], union_importance[t % 2], sel, &e);
            describe(what, sizeof what, &p, &modes[mi], prefixes_123[t / 2],
                     union_importance[t % 2], seed);
            compare(what, &out[t], &e, s.n_topk);
            cr_expect_eq(lsh_metrics_check(&out[t], s.n_topk, why, sizeof why), 0, "%s: %s",
                         what, why);
            cr_expect(se[t].oracle_mass_recall > 0.0 && se[t].oracle_out_rel_err > 0.0 &&
                          se[t].mass_recall > 0.0,
                      "%s: standard errors %g %g", what, se[t].oracle_mass_recall,
                      se[t].oracle_out_rel_err);
            cr_expect_eq(out[t].oracle_seconds, out[0].oracle_seconds);
        }
        run_opts = NULL;
        metrics_free(out, 6);
        lsh_reference_free(ref);
        problem_free(&p);
    }
}

/* Rules, importance and the oracle give the same bits on 1, 2 and 3 threads. */
Test(eval_naive, rules_importance_oracle_bit_identical_for_every_thread_count)
{
    struct {
        size_t n;
        enum lsh_keys keys;
        struct lsh_mode_opts mo;
    } cases[] = {
        {333, LSH_KEYS_SHARED, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 2, 3, 4}},
        {517, LSH_KEYS_SEPARATE, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 8}},
        {400, LSH_KEYS_SHARED_NORMALIZED, {LSH_MODE_CHUNKED, 16, 1, LSH_WINDOW_ALL, 2, 1, 0}},
        {300, LSH_KEYS_SHARED, {LSH_MODE_BUCKET, 0, 0, LSH_WINDOW_ALL, 1, 0, 0}},
    };
    run_opts = &opts_law_oracle;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct setup s = make_setup(cases[c].n, cases[c].keys, 3, 16);
        s.d = 8;
        s.dv = 5;
        struct problem p;
        problem_make(&p, &s, 4801 + c);
        struct lsh_metrics one[6], more[6];
        char what[256];
        metrics_alloc(one, 6, s.n_topk);
        metrics_alloc(more, 6, s.n_topk);
        engine_run(&p, &cases[c].mo, prefixes_123, 3, union_importance, 2, 1, one);
        for (unsigned th = 2; th <= 3; th++) {
            engine_run(&p, &cases[c].mo, prefixes_123, 3, union_importance, 2, th, more);
            for (size_t t = 0; t < 6; t++) {
                snprintf(what, sizeof what, "[case %zu out %zu, 1 vs %u threads]", c, t, th);
                expect_bit_identical(what, &one[t], &more[t], s.n_topk);
                cr_expect(memcmp(&one[t].oracle_mass_recall, &more[t].oracle_mass_recall,
                                 sizeof(double)) == 0 &&
                              memcmp(&one[t].oracle_out_rel_err, &more[t].oracle_out_rel_err,
                                     sizeof(double)) == 0,
                          "%s oracle differs", what);
            }
        }
        if (c == 0) /* and against the naive oracle */
            for (size_t t = 0; t < 6; t++) {
                struct expect e;
                oracle(&p, &cases[c].mo, prefixes_123[t / 2], union_importance[t % 2], &e);
                describe(what, sizeof what, &p, &cases[c].mo, prefixes_123[t / 2],
                         union_importance[t % 2], 4801 + c);
                compare(what, &one[t], &e, s.n_topk);
            }
        metrics_free(one, 6);
        metrics_free(more, 6);
        problem_free(&p);
    }
    run_opts = NULL;
}

/* The memory figure grows by what importance and the oracle allocate. */
Test(eval_naive, eval_bytes_count_importance_and_oracle)
{
    struct lsh_eval_shape sh = {.n = 4096, .m = 4096, .d = 64, .d_v = 64, .n_topk = 2,
                                .h_max = 8, .n_buckets = 64, .n_prefix = 4, .n_combine = 2};
    struct lsh_mode_opts mo = with_rule(bucket_mode(), 2, 0, 0);
    struct lsh_bytes b0 = lsh_eval_bytes(&sh, &mo, 0);
    sh.importance = 1;
    struct lsh_bytes b1 = lsh_eval_bytes(&sh, &mo, 0);
    cr_expect(b1.per_thread >= b0.per_thread + 4 * 4096 * sizeof(double));
    cr_expect(b1.shared >= b0.shared + 4096 * sizeof(double));
    sh.oracle = 1;
    struct lsh_bytes b2 = lsh_eval_bytes(&sh, &mo, 0);
    cr_expect(b2.shared >= b1.shared + 4096 * 4 * sizeof(uint32_t));
    cr_expect(b2.per_thread >= b1.per_thread + lsh_oracle_ws_bytes(4096, 64));
}

/* ---- a pass in parts (SPEC 15): slices of evaluated rows ------------------- */

/* Slices of 256 rows, so that a few hundred rows make several slices.  Read
 * once per process by lsh_slice_rows(); Criterion runs each test in its own
 * process, and .init runs in it before the test. */
static void small_slices(void)
{
    setenv("LSHLAB_TEST_SLICE_ROWS", "256", 1);
}

#define SAME_BITS(what, a, b, name)                                                          \
    cr_expect(memcmp(&(a), &(b), sizeof(a)) == 0, "%s: %s differs: %.17g vs %.17g", what,     \
              name, (double)(a), (double)(b))

/* Every metric column and standard error, bit for bit (timings aside). */
static void expect_all_bits(const char *what, const struct lsh_metrics *a,
                            const struct lsh_metrics *b, size_t n_topk)
{
    expect_bit_identical(what, a, b, n_topk);
    SAME_BITS(what, a->oracle_mass_recall, b->oracle_mass_recall, "oracle_mass_recall");
    SAME_BITS(what, a->oracle_out_rel_err, b->oracle_out_rel_err, "oracle_out_rel_err");
    if (!a->se || !b->se)
        return;
    const struct lsh_metric_se *x = a->se, *y = b->se;
    SAME_BITS(what, x->out_rel_err, y->out_rel_err, "se out_rel_err");
    SAME_BITS(what, x->attn_rel_err, y->attn_rel_err, "se attn_rel_err");
    SAME_BITS(what, x->mass_recall, y->mass_recall, "se mass_recall");
    SAME_BITS(what, x->kl, y->kl, "se kl");
    SAME_BITS(what, x->empty_rows, y->empty_rows, "se empty_rows");
    SAME_BITS(what, x->gram_recovery, y->gram_recovery, "se gram_recovery");
    SAME_BITS(what, x->density, y->density, "se density");
    SAME_BITS(what, x->mean_candidates, y->mean_candidates, "se mean_candidates");
    SAME_BITS(what, x->oracle_mass_recall, y->oracle_mass_recall, "se oracle_mass_recall");
    SAME_BITS(what, x->oracle_out_rel_err, y->oracle_out_rel_err, "se oracle_out_rel_err");
    cr_expect(memcmp(x->topk_recall, y->topk_recall, n_topk * sizeof(double)) == 0,
              "%s: se topk_recall differs", what);
}

/* Metrics with standard errors, for count points. */
struct part_out {
    struct lsh_metrics mt[MAX_PREFIX * 2];
    struct lsh_metric_se se[MAX_PREFIX * 2];
    double tk[MAX_PREFIX * 2][MAX_TOPK], tse[MAX_PREFIX * 2][MAX_TOPK];
    double *mass;
    uint32_t *cand;
    struct lsh_row_dump dump;
};

static void part_out_init(struct part_out *o, size_t count, size_t n_prefix, size_t m)
{
    memset(o, 0, sizeof *o);
    for (size_t t = 0; t < count; t++) {
        o->mt[t].topk_recall = o->tk[t];
        o->se[t].topk_recall = o->tse[t];
        o->mt[t].se = &o->se[t];
    }
    o->mass = xcalloc(n_prefix * m, sizeof *o->mass);
    o->cand = xcalloc(n_prefix * m, sizeof *o->cand);
    o->dump.mass = o->mass;
    o->dump.candidates = o->cand;
}

static void part_out_free(struct part_out *o)
{
    free(o->mass);
    free(o->cand);
}

/* A part's reference against the whole one: the part's rows bit for bit
 * (its cache rows against lsh_attn_raw's bits), zeros elsewhere. */
static void expect_reference_part(const char *what, const struct lsh_reference *whole,
                                  const struct lsh_reference *part, size_t r0, size_t r1)
{
    const struct lsh_attn *a = whole->attn;
    const size_t dv = a->d_v, K = whole->kmax;
    cr_assert_eq(part->m, whole->m);
    cr_assert_eq(part->kmax, K);
    cr_assert(part->r0 == r0 && part->r1 == r1, "%s: part rows [%zu, %zu)", what, part->r0,
              part->r1);
    size_t differ = 0, nonzero = 0;
    for (size_t r = 0; r < whole->m; r++) {
        if (r >= r0 && r < r1) {
            differ += memcmp(&part->lse[r], &whole->lse[r], sizeof(double)) != 0;
            differ += memcmp(&part->sum_a2[r], &whole->sum_a2[r], sizeof(double)) != 0;
            differ += memcmp(&part->gram_den[r], &whole->gram_den[r], sizeof(double)) != 0;
            differ += part->u_count[r] != whole->u_count[r];
            differ += memcmp(part->out + r * dv, whole->out + r * dv, dv * sizeof(double)) != 0;
            differ += memcmp(part->top + r * K, whole->top + r * K, K * sizeof(uint32_t)) != 0;
            if (part->raw) {
                const size_t i = whole->rows ? whole->rows[r] : r;
                for (size_t j = 0; j < a->n; j++) {
                    const double want = lsh_attn_raw(a, i, j);
                    differ += memcmp(&part->raw[(r - r0) * a->n + j], &want, sizeof want) != 0;
                }
            }
        } else {
            nonzero += part->lse[r] != 0.0 || part->sum_a2[r] != 0.0 ||
                       part->gram_den[r] != 0.0 || part->u_count[r] != 0;
            for (size_t e = 0; e < dv; e++)
                nonzero += part->out[r * dv + e] != 0.0;
            for (size_t k = 0; k < K; k++)
                nonzero += part->top[r * K + k] != 0;
        }
    }
    cr_expect_eq(differ, 0, "%s: rows [%zu, %zu): %zu values differ from the whole reference",
                 what, r0, r1, differ);
    cr_expect_eq(nonzero, 0, "%s: %zu values outside the part are not zero", what, nonzero);
}

/* The pass cut at cuts[0..n_cuts) (slice boundaries): every part computes its
 * own reference (compute_part) and its partials into its place in one array,
 * then lsh_eval_finish; the parts' references are checked against whole. */
static void run_in_parts(const struct problem *p, const size_t *rows, size_t m,
                         const struct lsh_reference *whole, const struct lsh_mode_opts *mo,
                         const uint32_t *prefixes, size_t np, const enum lsh_combine *cb,
                         size_t nc, const struct lsh_eval_opts *opts, const size_t *cuts,
                         size_t n_cuts, unsigned threads, int use_cache, struct part_out *out)
{
    struct lsh_rounds rounds = {.n = p->s.n, .n_hashes = p->s.H, .n_buckets = p->s.B,
                                .bq = p->bq, .bk = key_buckets(p)};
    const int oracle = opts && opts->oracle;
    const size_t total = lsh_eval_part_doubles(m, p->attn.n_topk, np, nc, oracle);
    cr_assert(total > 0);
    double *partials = xcalloc(total, sizeof *partials);
    double seconds[LSH_EVAL_SECONDS(MAX_PREFIX)];
    struct lsh_reference *first = NULL;
    struct lsh_error err;
    memset(&err, 0, sizeof err);
    size_t off = 0;
    char what[256];
    for (size_t k = 0; k <= n_cuts; k++) {
        const size_t r0 = k ? cuts[k - 1] : 0, r1 = k < n_cuts ? cuts[k] : m;
        struct lsh_reference *ref = NULL;
        int rc = lsh_reference_compute_part(&p->attn, rows, m, r0, r1, threads,
                                            use_cache ? (size_t)-1 : 0, &ref, &err);
        cr_assert_eq(rc, 0, "compute_part [%zu, %zu): %s", r0, r1, err.message);
        cr_assert(use_cache ? ref->raw != NULL : ref->raw == NULL);
        snprintf(what, sizeof what, "reference part %zu of %zu", k, n_cuts + 1);
        expect_reference_part(what, whole, ref, r0, r1);
        rc = lsh_eval_pass_part(ref, &rounds, mo, prefixes, np, cb, nc, opts, threads, r0, r1,
                                partials + off, seconds, &out->dump, &err);
        cr_assert_eq(rc, 0, "pass_part [%zu, %zu): %s", r0, r1, err.message);
        off += lsh_eval_part_doubles(r1 - r0, p->attn.n_topk, np, nc, oracle);
        if (k == 0)
            first = ref; /* finish reads m, rows and attn only */
        else
            lsh_reference_free(ref);
    }
    cr_assert_eq(off, total, "the parts' partials (%zu) are not the whole's (%zu)", off, total);
    cr_assert_eq(lsh_eval_finish(first, &rounds, prefixes, np, nc, opts, partials, seconds,
                                 out->mt, &err),
                 0, "%s", err.message);
    lsh_reference_free(first);
    free(partials);
}

struct part_case {
    const char *name;
    size_t n, sampled;          /* sampled: every row i with i % 3 != 1, else all rows */
    enum lsh_keys keys;
    int causal;
    struct lsh_mode_opts mo;
    size_t nc;
    enum lsh_combine cb[2];
    const struct lsh_eval_opts *opts;
    uint32_t B;
};

/* One pass (threads 1) against the same pass cut into parts at every slice
 * boundary (cache on, 1 thread), cut once (2 threads), and as one part
 * through pass_part + finish (3 threads): every metric and standard error,
 * the row dump and the parts' references, bit for bit.  Under valgrind
 * (LSHLAB_TEST_QUICK) each case runs one of the three cuts, in turn, so
 * every case and every cut still runs. */
Test(eval_naive, parts_cut_at_slice_boundaries_give_the_bits_of_one_pass, .init = small_slices)
{
    cr_assert_eq(lsh_slice_rows(), 256, "LSHLAB_TEST_SLICE_ROWS was not taken");
    cr_assert_eq(lsh_slice_count(800), 4);
    cr_assert_eq(lsh_slice_count(768), 3);
    const struct part_case cases[] = {
        {"tile path, bucket, causal", 600, 0, LSH_KEYS_SHARED, 1, bucket_mode(), 1,
         {LSH_COMBINE_UNION}, NULL, 8},
        {"tile path, chunked same_bucket, separate keys", 700, 0, LSH_KEYS_SEPARATE, 0,
         chunked_mode(16, 1, LSH_WINDOW_SAME_BUCKET), 1, {LSH_COMBINE_UNION}, NULL, 4},
        {"tile path, bucket, oracle", 600, 0, LSH_KEYS_SHARED_NORMALIZED, 0, bucket_mode(), 1,
         {LSH_COMBINE_UNION}, &opts_law_oracle, 8},
        {"row path, bucket, union + rounds", 700, 0, LSH_KEYS_SHARED, 0, bucket_mode(), 2,
         {LSH_COMBINE_UNION, LSH_COMBINE_ROUNDS}, NULL, 8},
        {"row path, chunked, union + rounds, causal", 600, 0, LSH_KEYS_SEPARATE, 1,
         chunked_mode(20, 1, LSH_WINDOW_ALL), 2, {LSH_COMBINE_UNION, LSH_COMBINE_ROUNDS}, NULL,
         8},
        {"rules t=2 sink local, union + importance, oracle", 600, 0, LSH_KEYS_SHARED, 1,
         with_rule(bucket_mode(), 2, 4, 8), 2, {LSH_COMBINE_UNION, LSH_COMBINE_IMPORTANCE},
         &opts_law_oracle, 8},
        {"rules t=2, chunked, oracle", 600, 0, LSH_KEYS_SHARED, 0,
         with_rule(chunked_mode(12, 1, LSH_WINDOW_ALL), 2, 2, 3), 1, {LSH_COMBINE_UNION},
         &opts_law_oracle, 4},
        {"sampled rows, tile path, oracle", 800, 1, LSH_KEYS_SHARED, 0, bucket_mode(), 1,
         {LSH_COMBINE_UNION}, &opts_law_oracle, 8},
        {"sampled rows, rules, importance, oracle", 800, 1, LSH_KEYS_SEPARATE, 1,
         with_rule(bucket_mode(), 2, 2, 3), 2, {LSH_COMBINE_UNION, LSH_COMBINE_IMPORTANCE},
         &opts_law_oracle, 8},
    };
    law_bits = 2.0;
    const char *quick = getenv("LSHLAB_TEST_QUICK");
    const int all_cuts = !(quick && *quick);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct part_case *pc = &cases[c];
        struct setup s = make_setup(pc->n, pc->keys, 3, pc->B);
        s.causal = pc->causal;
        s.d = 6;
        s.dv = 4;
        struct problem p;
        problem_make(&p, &s, 5101 + c);
        size_t *rows = NULL, m = s.n;
        if (pc->sampled) {
            rows = xcalloc(s.n, sizeof *rows);
            m = 0;
            for (size_t i = 0; i < s.n; i++)
                if (i % 3 != 1)
                    rows[m++] = i;
        }
        const size_t np = 3, count = np * pc->nc, S = lsh_slice_rows();
        cr_assert(m > 2 * S && m % S != 0, "case %zu: %zu rows are not >2 slices", c, m);
        struct lsh_rounds rounds = {.n = s.n, .n_hashes = s.H, .n_buckets = s.B, .bq = p.bq,
                                    .bk = key_buckets(&p)};
        struct lsh_error err;
        memset(&err, 0, sizeof err);
        struct lsh_reference *whole = NULL;
        cr_assert_eq(lsh_reference_compute(&p.attn, rows, m, 1, 0, &whole, &err), 0, "%s",
                     err.message);
        cr_assert(whole->r0 == 0 && whole->r1 == m);
        struct part_out one, got;
        part_out_init(&one, count, np, m);
        cr_assert_eq(lsh_eval_pass(whole, &rounds, &pc->mo, prefixes_123, np, pc->cb, pc->nc,
                                   pc->opts, 1, one.mt, &one.dump, &err),
                     0, "%s: %s", pc->name, err.message);
        size_t every[8], n_every = 0;
        for (size_t r = S; r < m; r += S)
            every[n_every++] = r;
        const size_t once[1] = {2 * S};
        const struct {
            const size_t *cuts;
            size_t n_cuts;
            unsigned threads;
            int cache;
        } cuts[3] = {{every, n_every, 1, 1}, {once, 1, 2, 0}, {NULL, 0, 3, 1}};
        for (size_t k = 0; k < 3; k++) {
            if (!all_cuts && k != c % 3)
                continue;
            part_out_init(&got, count, np, m);
            run_in_parts(&p, rows, m, whole, &pc->mo, prefixes_123, np, pc->cb, pc->nc,
                         pc->opts, cuts[k].cuts, cuts[k].n_cuts, cuts[k].threads,
                         cuts[k].cache, &got);
            for (size_t t = 0; t < count; t++) {
                char what[256];
                snprintf(what, sizeof what, "[%s: %zu parts, %u threads, out %zu]", pc->name,
                         cuts[k].n_cuts + 1, cuts[k].threads, t);
                expect_all_bits(what, &one.mt[t], &got.mt[t], s.n_topk);
            }
            cr_expect(memcmp(one.mass, got.mass, np * m * sizeof *one.mass) == 0,
                      "[%s] row dump mass differs", pc->name);
            cr_expect(memcmp(one.cand, got.cand, np * m * sizeof *one.cand) == 0,
                      "[%s] row dump candidates differ", pc->name);
            part_out_free(&got);
        }
        part_out_free(&one);
        lsh_reference_free(whole);
        free(rows);
        problem_free(&p);
    }
}

/* Parts that are not whole slices, or lie outside their reference, are
 * refused with a message naming the rows. */
Test(eval_naive, parts_refuse_rows_that_are_not_whole_slices, .init = small_slices)
{
    struct setup s = make_setup(600, LSH_KEYS_SHARED, 2, 4);
    struct problem p;
    problem_make(&p, &s, 5201);
    struct lsh_rounds rounds = {.n = s.n, .n_hashes = s.H, .n_buckets = s.B, .bq = p.bq,
                                .bk = p.bq};
    struct lsh_error err;
    memset(&err, 0, sizeof err);
    struct lsh_reference *ref = NULL;
    const struct { size_t r0, r1; } bad[] = {{0, 300}, {100, 600}, {256, 256}, {512, 700}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cr_expect_eq(lsh_reference_compute_part(&p.attn, NULL, 0, bad[k].r0, bad[k].r1, 1, 0,
                                                &ref, &err),
                     LSH_EINVAL, "rows [%zu, %zu) accepted", bad[k].r0, bad[k].r1);
        cr_expect(strstr(err.message, "slices of 256 rows") != NULL, "%s", err.message);
    }
    cr_assert_eq(lsh_reference_compute_part(&p.attn, NULL, 0, 256, 512, 1, 0, &ref, &err), 0,
                 "%s", err.message);
    const enum lsh_combine u = LSH_COMBINE_UNION;
    const struct lsh_mode_opts mo = bucket_mode();
    double partials[4096], seconds[LSH_EVAL_SECONDS(2)];
    const uint32_t pre[2] = {1, 2};
    cr_assert(lsh_eval_part_doubles(256, s.n_topk, 2, 1, 0) <= 4096);
    cr_expect_eq(lsh_eval_pass_part(ref, &rounds, &mo, pre, 2, &u, 1, NULL, 1, 0, 256, partials,
                                    seconds, NULL, &err),
                 LSH_EINVAL);
    cr_expect(strstr(err.message, "outside the reference's rows [256, 512)") != NULL, "%s",
              err.message);
    cr_expect_eq(lsh_eval_pass_part(ref, &rounds, &mo, pre, 2, &u, 1, NULL, 1, 256, 300, partials,
                                    seconds, NULL, &err),
                 LSH_EINVAL);
    cr_expect_eq(lsh_eval_pass_part(ref, &rounds, &mo, pre, 2, &u, 1, NULL, 1, 256, 512, partials,
                                    seconds, NULL, &err),
                 0, "%s", err.message);
    lsh_reference_free(ref);
    problem_free(&p);
}

/* LSHLAB_TEST_SLICE_ROWS other than a multiple of 256 is ignored. */
static void odd_slices(void)
{
    setenv("LSHLAB_TEST_SLICE_ROWS", "300", 1);
}

Test(eval_naive, slice_rows_ignore_a_value_that_is_not_a_multiple_of_256, .init = odd_slices)
{
    cr_expect_eq(lsh_slice_rows(), LSH_SLICE_ROWS);
    cr_expect_eq(lsh_slice_count(LSH_SLICE_ROWS), 1);
    cr_expect_eq(lsh_slice_count(LSH_SLICE_ROWS + 1), 2);
    cr_expect_eq(lsh_slice_count(1), 1);
}

/* The brute-force oracle with rows in several slices: the row path (union and
 * rounds), the tile path (union alone), rules with importance and the oracle,
 * over 520-560 rows in slices of 256. */
Test(eval_naive, brute_force_with_rows_in_several_slices, .init = small_slices)
{
    cr_assert_eq(lsh_slice_count(520), 3);
    struct lsh_mode_opts mo = bucket_mode();
    struct setup s = make_setup(560, LSH_KEYS_SHARED, 2, 4);
    s.causal = 1;
    check_all(&s, &mo, 5301, NULL);
    mo = chunked_mode(24, 1, LSH_WINDOW_ALL);
    s = make_setup(520, LSH_KEYS_SEPARATE, 2, 4);
    check_all(&s, &mo, 5302, NULL);
    law_bits = 2.0;
    run_opts = &opts_law_oracle;
    mo = with_rule(bucket_mode(), 2, 2, 3);
    s = make_setup(520, LSH_KEYS_SHARED, 3, 4);
    check_case(&s, &mo, prefixes_123, 3, union_importance, 2, 2, 5303, NULL);
    run_opts = NULL;
}
