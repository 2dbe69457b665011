/* rotation.c - Reformer's angular LSH (SPEC 2.1): bucket = argmax of
 * concat(xR, -xR) for a random Gaussian (optionally orthonormalised) R, with
 * optional factored buckets as trax and Hugging Face allow. */
#include <lshlab/strategy.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows hashed per GEMM, and at most BATCH_DOUBLES results at a time: the
 * workspace stays bounded whatever n and B (at B = 2^20 a batch of 1024 rows
 * would take 4 GiB a round). */
#define BATCH_ROWS 1024
#define BATCH_DOUBLES ((size_t)1 << 20)
/* Every factor is >= 2 and their product is a uint32_t n_buckets. */
#define MAX_FACTORS 32

enum { P_ORTHOGONAL, P_FACTORS, N_PARAMS };

static const struct lsh_param params[] = {
    [P_ORTHOGONAL] = {.name = "orthogonal", .type = LSH_PARAM_BOOL,
                      .doc = "orthonormalise R's columns (QR, diag(R) > 0): a true random "
                             "rotation; needs n_buckets/2 <= d",
                      .def_int = 0},
    [P_FACTORS] = {.name = "factors", .type = LSH_PARAM_INT_LIST,
                   .doc = "even factors whose product is n_buckets; factor t argmaxes over "
                          "its own f_t/2 columns ([] means one factor, n_buckets)",
                   .min = 2, .max = 65536},
    [N_PARAMS] = {.type = LSH_PARAM_END},
};

/* How the B buckets split into factors: factor t owns f[t]/2 columns. */
struct layout {
    int orthogonal;
    size_t n_factors;
    uint32_t f[MAX_FACTORS];
    size_t cols; /* sum of f[t]/2 */
};

struct rotation {
    size_t d;
    struct layout lay;
    double *r; /* d x cols, row-major */
    double *y; /* batch x cols workspace */
    size_t batch; /* rows per GEMM */
    const struct lsh_host *host; /* static in the host: outlives the round */
};

static int fail(struct lsh_strategy_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Reads the parameters and checks that the rule can hash with them. */
static int make_layout(const struct lsh_round *round, struct layout *lay,
                       struct lsh_strategy_error *err)
{
    const struct lsh_param_value *pv = round->params;
    size_t np = pv ? round->n_params : 0;
    uint32_t b = round->n_buckets;
    memset(lay, 0, sizeof *lay);

    if (np > P_ORTHOGONAL) {
        if (pv[P_ORTHOGONAL].type != LSH_PARAM_BOOL)
            return fail(err, LSH_STRATEGY_EINVAL, "rotation: parameter orthogonal is not a BOOL");
        lay->orthogonal = pv[P_ORTHOGONAL].i != 0;
    }
    const int64_t *list = NULL;
    size_t len = 0;
    if (np > P_FACTORS) {
        if (pv[P_FACTORS].type != LSH_PARAM_INT_LIST)
            return fail(err, LSH_STRATEGY_EINVAL, "rotation: parameter factors is not an INT_LIST");
        list = pv[P_FACTORS].list;
        len = list ? pv[P_FACTORS].list_len : 0;
    }
    if (round->d == 0)
        return fail(err, LSH_STRATEGY_EINVAL, "rotation needs d >= 1");

    if (len == 0) {
        if (b < 2 || b % 2 != 0)
            return fail(err, LSH_STRATEGY_EINVAL, "rotation needs an even n_buckets, got %u",
                        (unsigned)b);
        lay->n_factors = 1;
        lay->f[0] = b;
    } else {
        uint64_t product = 1;
        for (size_t t = 0; t < len; t++) {
            int64_t f = list[t];
            if (f < 2 || f % 2 != 0)
                return fail(err, LSH_STRATEGY_EINVAL,
                            "rotation needs even factors >= 2, got %lld", (long long)f);
            /* Each factor is >= 2, so a product still <= B stays in range. */
            if (f > (int64_t)b || product * (uint64_t)f > b)
                return fail(err, LSH_STRATEGY_EINVAL,
                            "rotation factors multiply to more than n_buckets %u", (unsigned)b);
            product *= (uint64_t)f;
            lay->f[t] = (uint32_t)f;
        }
        if (product != b)
            return fail(err, LSH_STRATEGY_EINVAL,
                        "rotation factors multiply to %llu, but n_buckets is %u",
                        (unsigned long long)product, (unsigned)b);
        lay->n_factors = len; /* len <= 31, as each factor halves what is left */
    }
    for (size_t t = 0; t < lay->n_factors; t++)
        lay->cols += lay->f[t] / 2;
    if (lay->orthogonal && lay->cols > round->d && len == 0)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "rotation orthogonal needs n_buckets/2 <= d, got n_buckets %u and d = %zu",
                    (unsigned)b, round->d);
    if (lay->orthogonal && lay->cols > round->d)
        return fail(err, LSH_STRATEGY_EINVAL,
                    "rotation orthogonal needs the sum of factors/2 <= d, got %zu and d = %zu",
                    lay->cols, round->d);
    return 0;
}

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct layout lay;
    return make_layout(round, &lay, err);
}

/* Householder QR of a (d x c, row-major, c <= d) in place; a becomes the thin
 * Q with every column's sign chosen so that diag(R) > 0, which is the Q that
 * Gram-Schmidt on the columns gives, but orthonormal to rounding error even
 * when a is ill-conditioned.  v is d x c scratch. */
static void orthonormalise(double *a, size_t d, size_t c, double *v, double *rdiag)
{
    for (size_t k = 0; k < c; k++) {
        double *vk = v + k * d;
        double norm = 0;
        for (size_t i = k; i < d; i++)
            norm += a[i * c + k] * a[i * c + k];
        norm = sqrt(norm);
        memset(vk, 0, d * sizeof *vk);
        if (norm == 0) { /* a zero column (probability 0): H_k = I */
            rdiag[k] = 0;
            continue;
        }
        /* alpha against the sign of a_kk avoids cancellation in v_k. */
        double alpha = a[k * c + k] >= 0 ? -norm : norm;
        double vv = 0;
        for (size_t i = k; i < d; i++)
            vk[i] = a[i * c + k];
        vk[k] -= alpha;
        for (size_t i = k; i < d; i++)
            vv += vk[i] * vk[i];
        for (size_t j = k; j < c; j++) {
            double s = 0;
            for (size_t i = k; i < d; i++)
                s += vk[i] * a[i * c + j];
            s *= 2 / vv;
            for (size_t i = k; i < d; i++)
                a[i * c + j] -= s * vk[i];
        }
        rdiag[k] = alpha;
    }
    /* Q = H_0 ... H_{c-1} [I; 0], applied right to left. */
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < c; j++)
            a[i * c + j] = i == j ? 1.0 : 0.0;
    for (size_t k = c; k-- > 0;) {
        const double *vk = v + k * d;
        double vv = 0;
        for (size_t i = k; i < d; i++)
            vv += vk[i] * vk[i];
        if (vv == 0)
            continue;
        for (size_t j = k; j < c; j++) {
            double s = 0;
            for (size_t i = k; i < d; i++)
                s += vk[i] * a[i * c + j];
            s *= 2 / vv;
            for (size_t i = k; i < d; i++)
                a[i * c + j] -= s * vk[i];
        }
    }
    for (size_t j = 0; j < c; j++)
        if (rdiag[j] < 0)
            for (size_t i = 0; i < d; i++)
                a[i * c + j] = -a[i * c + j];
}

static void fini(void *state)
{
    struct rotation *s = state;
    free(s->r);
    free(s->y);
    s->r = s->y = NULL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    struct rotation *s = state;
    int rc = make_layout(round, &s->lay, err);
    if (rc < 0)
        return rc;
    s->d = round->d;
    size_t d = s->d, cols = s->lay.cols;
    s->batch = BATCH_DOUBLES / cols;
    s->batch = s->batch > BATCH_ROWS ? BATCH_ROWS : s->batch ? s->batch : 1;
    if (cols > SIZE_MAX / sizeof(double) / d)
        return fail(err, LSH_STRATEGY_ENOMEM, "rotation: R of %zu x %zu is too large", d, cols);
    s->r = malloc(d * cols * sizeof *s->r);
    s->y = malloc(s->batch * cols * sizeof *s->y);
    if (!s->r || !s->y) {
        fini(s);
        return fail(err, LSH_STRATEGY_ENOMEM, "rotation: out of memory for R (%zu x %zu)", d,
                    cols);
    }
    /* Row-major draw order is part of the contract: a known R for tests. */
    for (size_t i = 0; i < d * cols; i++)
        s->r[i] = round->host->normal(round->rng);
    if (s->lay.orthogonal) {
        double *v = malloc(d * cols * sizeof *v), *rdiag = malloc(cols * sizeof *rdiag);
        if (!v || !rdiag) {
            free(v);
            free(rdiag);
            fini(s);
            return fail(err, LSH_STRATEGY_ENOMEM, "rotation: out of memory for the QR");
        }
        orthonormalise(s->r, d, cols, v, rdiag);
        free(v);
        free(rdiag);
    }
    s->host = round->host;
    return 0;
}

/* Index of the largest entry of concat(y, -y), y of length half; the first
 * one wins a tie (SPEC 1). */
static uint32_t argmax_pm(const double *y, uint32_t half)
{
    uint32_t best = 0;
    double top = y[0];
    for (uint32_t j = 1; j < half; j++)
        if (y[j] > top) {
            top = y[j];
            best = j;
        }
    for (uint32_t j = 0; j < half; j++)
        if (-y[j] > top) {
            top = -y[j];
            best = half + j;
        }
    return best;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    struct rotation *s = state;
    if (d != s->d)
        return fail(err, LSH_STRATEGY_EINVAL, "rotation: rows have d = %zu, the round has %zu",
                    d, s->d);
    size_t cols = s->lay.cols;
    for (size_t start = 0; start < n; start += s->batch) {
        size_t m = n - start < s->batch ? n - start : s->batch;
        s->host->gemm(m, cols, d, x + start * d, s->r, s->y, 0);
        for (size_t i = 0; i < m; i++) {
            const double *y = s->y + i * cols;
            uint32_t b = 0, stride = 1;
            for (size_t t = 0; t < s->lay.n_factors; t++) {
                uint32_t f = s->lay.f[t];
                b += argmax_pm(y, f / 2) * stride;
                stride *= f; /* the last product is B itself: no overflow */
                y += f / 2;
            }
            bucket[start + i] = b;
        }
    }
    return 0;
}

static int export_params(void *state, struct lsh_sink *sink)
{
    struct rotation *s = state;
    return sink->array(sink, "rotation", s->r, s->d, s->lay.cols);
}

/* The closed form exists when R is Gaussian (orthogonal: false) and every
 * factor is 2 or 4: a factor 2 is one hyperplane (the sign of x.r), a factor
 * 4 is exactly 2-bit SimHash with hyperplanes r1 - r2 and r1 + r2, which are
 * independent Gaussians; so the collision probability is (1 - theta/pi)^k
 * with k = sum_t log2 f_t.  NaN otherwise (no closed form published). */
static double collision_prob(const struct lsh_round *round, double cos_theta)
{
    struct layout lay;
    if (make_layout(round, &lay, NULL) < 0 || lay.orthogonal || isnan(cos_theta))
        return NAN;
    double k = 0;
    for (size_t t = 0; t < lay.n_factors; t++) {
        if (lay.f[t] != 2 && lay.f[t] != 4)
            return NAN;
        k += lay.f[t] == 2 ? 1 : 2;
    }
    const double c = cos_theta < -1 ? -1 : cos_theta > 1 ? 1 : cos_theta;
    return pow(1.0 - acos(c) / 3.14159265358979323846, k);
}

static const struct lsh_strategy rotation = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "rotation",
    .summary = "random rotation argmax (Reformer angular LSH): argmax of concat(xR, -xR), "
               "R d x B/2 Gaussian",
    .params = params,
    .state_size = sizeof(struct rotation),
    .check = check,
    .init = init,
    .fit = NULL,
    .hash = hash,
    .export_params = export_params,
    .fini = fini,
    .assign = NULL,
    .collision_prob = collision_prob,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &rotation;
}
