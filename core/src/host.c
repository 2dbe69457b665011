/* host.c - the only code that calls a strategy plugin's callbacks: check,
 * a round's init, fit, hash or assign, export_params and fini, and
 * collision_prob (host.h says what
 * it guarantees about a faulty plugin). */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "linalg.h"
#include "memsize.h"
#include "rng.h"

static const struct lsh_host services = {
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .normal = lsh_rng_normal,
    .uniform = lsh_rng_uniform,
    .uniform_int = lsh_rng_uniform_int,
    .gemm = lsh_gemm,
    .gemm_nt = lsh_gemm_nt,
};

const struct lsh_host *lsh_host_services(void)
{
    return &services;
}

struct lsh_host_round {
    struct lsh_host_point pt;
    uint32_t h;
    void *state;          /* host-allocated, 64-byte aligned, never NULL */
    struct lsh_rng *rng;  /* seeded from the round's seed; outlives init for fit */
    int live;             /* init succeeded: fini is owed */
};

/* ---- messages ---------------------------------------------------------------- */

/* A plugin's message as text we can print: NUL-terminated whatever the plugin
 * wrote (it may fill all LSH_STRATEGY_MSG_MAX bytes), control bytes as '?'. */
static const char *plugin_message(struct lsh_strategy_error *serr)
{
    serr->message[LSH_STRATEGY_MSG_MAX - 1] = '\0';
    for (char *c = serr->message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return serr->message;
}

static const char *code_meaning(int rc)
{
    switch (rc) {
    case LSH_STRATEGY_EINVAL:
        return "a parameter, n_buckets or d is not allowed";
    case LSH_STRATEGY_ENOMEM:
        return "out of memory";
    case LSH_STRATEGY_EDATA:
        return "the data cannot be hashed";
    case LSH_STRATEGY_EFAIL:
        return "failed";
    default:
        return "not a code of strategy.h";
    }
}

/* Every plugin failure becomes LSH_EPLUGIN: "strategy / round h / callback: message". */
static int plugin_failed(const struct lsh_host_round *r, const char *callback, int rc,
                         struct lsh_strategy_error *serr, struct lsh_error *err)
{
    const char *msg = serr ? plugin_message(serr) : "";
    if (msg[0])
        return lsh_error_set(err, LSH_EPLUGIN, "%s / round %u / %s: %s", r->pt.strategy->name,
                             r->h, callback, msg);
    return lsh_error_set(err, LSH_EPLUGIN, "%s / round %u / %s: returned %d (%s) without a message",
                         r->pt.strategy->name, r->h, callback, rc, code_meaning(rc));
}

/* ---- check ----------------------------------------------------------------- */

struct lsh_host_point lsh_host_point_of(const struct lsh_strategy_spec *st, size_t ps,
                                        uint32_t n_buckets, size_t d, size_t n_rows)
{
    const struct lsh_param_set *set = &st->sets[ps];
    return (struct lsh_host_point){
        .strategy = st->strategy, .params = set->canonical, .values = set->values,
        .n_values = set->n_params, .n_buckets = n_buckets, .d = d, .n_rows = n_rows,
    };
}

int lsh_host_check(const struct lsh_host_point *pt, const char *where, char *why,
                   size_t why_size)
{
    const struct lsh_strategy *s = pt->strategy;
    if (!s->check)
        return 0;
    struct lsh_round round = {
        .d = pt->d, .n_buckets = pt->n_buckets, .n_rows = pt->n_rows, .params = pt->values,
        .n_params = pt->n_values, .host = &services,
    };
    struct lsh_strategy_error serr;
    memset(&serr, 0, sizeof serr);
    int rc = s->check(&round, &serr);
    if (!rc)
        return 0;
    const char *msg = plugin_message(&serr);
    const char *params = pt->params ? pt->params : "";
    snprintf(why, why_size, "%s%s%s cannot run n_buckets %u %s: %s", s->name,
             params[0] ? " " : "", params, pt->n_buckets, where, msg[0] ? msg : "refused by check()");
    return LSH_EPLUGIN;
}

/* ---- rounds ---------------------------------------------------------------- */

/* The bytes allocated for a state: a multiple of 64 (aligned_alloc wants one),
 * and at least 64, so that a plugin declaring state_size 0 that still writes a
 * little state scribbles on its own bytes, not on NULL. */
static size_t state_bytes(size_t state_size)
{
    return state_size ? (state_size + 63) / 64 * 64 : 64;
}

static void round_free(struct lsh_host_round *r)
{
    free(r->state);
    lsh_rng_free(r->rng);
    free(r);
}

int lsh_host_round_open(const struct lsh_host_point *pt, uint32_t h, uint64_t seed,
                        struct lsh_host_round **out, struct lsh_error *err)
{
    const struct lsh_strategy *s = pt->strategy;
    if (s->state_size > LSH_HOST_STATE_MAX)
        return lsh_error_set(err, LSH_EPLUGIN,
                             "%s / round %u / init: state_size is %zu bytes; allowed: at most "
                             "%zu (1 GiB) per round", s->name, h, s->state_size,
                             LSH_HOST_STATE_MAX);
    const size_t size = state_bytes(s->state_size);
    struct lsh_host_round *r = calloc(1, sizeof *r);
    if (!r)
        return lsh_error_set(err, LSH_ENOMEM, "%s / round %u: out of memory", s->name, h);
    r->pt = *pt;
    r->h = h;
    r->rng = lsh_rng_alloc(seed);
    r->state = aligned_alloc(64, size);
    if (!r->rng || !r->state) {
        round_free(r);
        return lsh_error_set(err, LSH_ENOMEM, "%s / round %u: out of memory for its state "
                             "(%zu bytes)", s->name, h, size);
    }
    memset(r->state, 0, size);
    struct lsh_round round = {
        .d = pt->d, .n_buckets = pt->n_buckets, .round = h, .seed = seed, .n_rows = pt->n_rows,
        .params = pt->values, .n_params = pt->n_values, .rng = r->rng, .host = &services,
    };
    struct lsh_strategy_error serr;
    memset(&serr, 0, sizeof serr);
    int rc = s->init(r->state, &round, &serr);
    if (rc) {
        rc = plugin_failed(r, "init", rc, &serr, err);
        round_free(r); /* no fini: init did not succeed */
        return rc;
    }
    r->live = 1;
    *out = r;
    return 0;
}

void lsh_host_round_close(struct lsh_host_round *r)
{
    if (!r)
        return;
    if (r->live)
        r->pt.strategy->fini(r->state);
    round_free(r);
}

/* fit() on a private copy of all the parts' rows: whatever it writes stays there. */
static int fit(struct lsh_host_round *r, const struct lsh_host_rows *parts, size_t n_parts,
               struct lsh_error *err)
{
    const size_t d = r->pt.d;
    size_t total = 0, bytes = 0;
    for (size_t p = 0; p < n_parts; p++)
        total = lsh_size_add(total, parts[p].n);
    bytes = lsh_size_mul(lsh_size_mul(total, d), sizeof(double));
    double *x = bytes < SIZE_MAX ? malloc(bytes ? bytes : 1) : NULL;
    if (!x)
        return lsh_error_set(err, LSH_ENOMEM, "%s / round %u / fit: out of memory for a copy "
                             "of its %zu rows", r->pt.strategy->name, r->h, total);
    size_t at = 0;
    for (size_t p = 0; p < n_parts; p++) {
        if (parts[p].n)
            memcpy(x + at * d, parts[p].x, parts[p].n * d * sizeof *x);
        at += parts[p].n;
    }
    struct lsh_strategy_error serr;
    memset(&serr, 0, sizeof serr);
    int rc = r->pt.strategy->fit(r->state, x, total, d, &serr);
    free(x);
    return rc ? plugin_failed(r, "fit", rc, &serr, err) : 0;
}

/* The host fills the plugin's bucket array with this before each call: it is
 * never a bucket (n_buckets <= UINT32_MAX), so a row the plugin leaves
 * unwritten fails the range check, rather than passing or failing with
 * whatever the memory held. */
#define BUCKET_UNSET UINT32_MAX

/* The error for bucket b of a row (which: "" or "query " or "key "). */
static int bad_bucket(const struct lsh_host_round *r, const char *call, uint32_t b,
                      const char *which, size_t row, struct lsh_error *err)
{
    const char *name = r->pt.strategy->name;
    if (b == BUCKET_UNSET)
        return lsh_error_set(err, LSH_EPLUGIN, "%s / round %u / %s: %s left the bucket of %srow "
                             "%zu unwritten (or wrote %u); n_buckets is %u", name, r->h, call,
                             name, which, row, b, r->pt.n_buckets);
    return lsh_error_set(err, LSH_EPLUGIN, "%s / round %u / %s: %s returned bucket %u for %srow "
                         "%zu; n_buckets is %u", name, r->h, call, name, b, which, row,
                         r->pt.n_buckets);
}

/* hash() on batches copied into scratch, its buckets into scratch too: the
 * plugin never holds the caller's rows, and its buckets reach the caller
 * only after the range check (a plugin's bucket is not trusted). */
struct scratch {
    double *x;         /* LSH_HOST_BATCH_ROWS x d at most */
    uint32_t *bucket;  /* LSH_HOST_BATCH_ROWS */
};

static int hash(struct lsh_host_round *r, const struct lsh_host_rows *part,
                const struct scratch *sc, struct lsh_error *err)
{
    const size_t d = r->pt.d;
    const struct lsh_strategy *s = r->pt.strategy;
    for (size_t start = 0; start < part->n; start += LSH_HOST_BATCH_ROWS) {
        size_t m = part->n - start < LSH_HOST_BATCH_ROWS ? part->n - start : LSH_HOST_BATCH_ROWS;
        memcpy(sc->x, part->x + start * d, m * d * sizeof *sc->x);
        struct lsh_strategy_error serr;
        memset(&serr, 0, sizeof serr);
        memset(sc->bucket, 0xff, m * sizeof *sc->bucket); /* BUCKET_UNSET */
        int rc = s->hash(r->state, sc->x, m, d, sc->bucket, &serr);
        if (rc)
            return plugin_failed(r, "hash", rc, &serr, err);
        for (size_t i = 0; i < m; i++)
            if (sc->bucket[i] >= r->pt.n_buckets)
                return bad_bucket(r, "hash", sc->bucket[i], "", start + i, err);
        memcpy(part->bucket + start, sc->bucket, m * sizeof *sc->bucket);
    }
    return 0;
}

/* Bytes of a hash batch of `rows` rows of d doubles and their buckets. */
static size_t batch_bytes(size_t rows, size_t d)
{
    return lsh_size_mul(rows, lsh_size_add(lsh_size_mul(d, sizeof(double)), sizeof(uint32_t)));
}

/* ABI 1.1 members exist only in a plugin that says abi_minor >= 1: a 1.0
 * plugin's struct ends at fini, and reading past it reads its neighbours. */
static int has_1_1(const struct lsh_strategy *s)
{
    return s->abi_minor >= 1;
}

int lsh_host_assigns(const struct lsh_strategy *s)
{
    return has_1_1(s) && s->assign != NULL;
}

int lsh_host_has_law(const struct lsh_strategy *s)
{
    return has_1_1(s) && s->collision_prob != NULL;
}

/* assign() on private copies of the queries and keys (one copy, passed as
 * both, when keys are the queries), its buckets into scratch, range-checked. */
static int assign(struct lsh_host_round *r, const struct lsh_host_rows *q,
                  const struct lsh_host_rows *k, struct lsh_error *err)
{
    const size_t d = r->pt.d;
    const struct lsh_strategy *s = r->pt.strategy;
    const int shared = k->x == q->x && k->n == q->n;
    const size_t rows = shared ? q->n : lsh_size_add(q->n, k->n);
    const size_t bytes = lsh_size_mul(lsh_size_mul(rows, d), sizeof(double));
    const size_t nb = lsh_size_add(q->n, k->n);
    double *x = bytes < SIZE_MAX ? malloc(bytes ? bytes : 1) : NULL;
    uint32_t *b = nb < SIZE_MAX / sizeof *b ? malloc(nb * sizeof *b + 1) : NULL;
    if (!x || !b) {
        free(x);
        free(b);
        return lsh_error_set(err, LSH_ENOMEM, "%s / round %u / assign: out of memory for a "
                             "copy of its %zu rows", s->name, r->h, rows);
    }
    if (q->n)
        memcpy(x, q->x, q->n * d * sizeof *x);
    if (!shared && k->n)
        memcpy(x + q->n * d, k->x, k->n * d * sizeof *x);
    const double *kx = shared ? x : x + q->n * d;
    struct lsh_strategy_error serr;
    memset(&serr, 0, sizeof serr);
    memset(b, 0xff, nb * sizeof *b); /* BUCKET_UNSET */
    int rc = s->assign(r->state, x, q->n, kx, k->n, d, b, b + q->n, &serr);
    if (rc)
        rc = plugin_failed(r, "assign", rc, &serr, err);
    for (size_t i = 0; !rc && i < nb; i++)
        if (b[i] >= r->pt.n_buckets)
            rc = bad_bucket(r, "assign", b[i], i < q->n ? "query " : "key ",
                            i < q->n ? i : i - q->n, err);
    if (!rc) {
        memcpy(q->bucket, b, q->n * sizeof *b);
        if (k->bucket)
            memcpy(k->bucket, b + q->n, k->n * sizeof *b);
    }
    free(x);
    free(b);
    return rc;
}

int lsh_host_round_bucket(struct lsh_host_round *r, const struct lsh_host_rows *q,
                          const struct lsh_host_rows *k, int fit_keys, struct lsh_error *err)
{
    const struct lsh_host_rows keys_as_queries = {q->x, q->n, NULL};
    const int shared = !k || (k->x == q->x && k->n == q->n);
    struct lsh_host_rows parts[2] = {*q};
    if (!shared)
        parts[1] = *k;
    int rc = r->pt.strategy->fit ? fit(r, parts, shared || !fit_keys ? 1 : 2, err) : 0;
    if (rc)
        return rc;
    if (lsh_host_assigns(r->pt.strategy))
        return assign(r, q, k ? k : &keys_as_queries, err);
    size_t most = shared ? q->n : (q->n > k->n ? q->n : k->n);
    most = most < LSH_HOST_BATCH_ROWS ? most : LSH_HOST_BATCH_ROWS;
    const size_t bytes = batch_bytes(most, r->pt.d);
    struct scratch sc = {NULL, NULL};
    if (bytes < SIZE_MAX) {
        sc.x = malloc(bytes - most * sizeof *sc.bucket + 1);
        sc.bucket = malloc(most * sizeof *sc.bucket + 1);
    }
    if (!sc.x || !sc.bucket) {
        free(sc.x);
        free(sc.bucket);
        return lsh_error_set(err, LSH_ENOMEM, "%s / round %u / hash: out of memory for a batch "
                             "of %zu rows", r->pt.strategy->name, r->h, most);
    }
    rc = hash(r, q, &sc, err);
    if (!rc && !shared)
        rc = hash(r, k, &sc, err);
    else if (!rc && k && k->bucket)
        memcpy(k->bucket, q->bucket, q->n * sizeof *q->bucket); /* keys are the queries */
    free(sc.x);
    free(sc.bucket);
    return rc;
}

/* ---- collision_prob (ABI 1.1) ---------------------------------------------------- */

/* The points probed to decide that a rule has a law: both ends, orthogonal,
 * and some angles between. */
static const double law_probe[] = {-1.0, -0.5, 0.0, 0.3, 0.5, 0.9, 1.0};

int lsh_host_law_of(const struct lsh_host_point *pt, struct lsh_host_law *law, char *why,
                    size_t why_size)
{
    const struct lsh_strategy *s = pt->strategy;
    const char *params = pt->params ? pt->params : "";
    memset(law, 0, sizeof *law);
    if (!has_1_1(s) || !s->collision_prob) {
        snprintf(why, why_size, "%s%s%s publishes no collision probability (collision_prob%s)",
                 s->name, params[0] ? " " : "", params,
                 has_1_1(s) ? " is NULL" : ": the plugin is built for strategy ABI 1.0");
        return LSH_EPLUGIN;
    }
    law->fn = s->collision_prob;
    law->name = s->name;
    law->round = (struct lsh_round){
        .d = pt->d, .n_buckets = pt->n_buckets, .n_rows = pt->n_rows, .params = pt->values,
        .n_params = pt->n_values, .host = &services,
    };
    for (size_t t = 0; t < sizeof law_probe / sizeof *law_probe; t++) {
        double p;
        if (lsh_host_law_eval(law, law_probe[t], &p)) {
            double v = law->fn(&law->round, law_probe[t]);
            snprintf(why, why_size, "%s%s%s with n_buckets %u has no closed-form collision "
                     "probability (collision_prob(cos %g) = %g; allowed: a value in [0, 1])",
                     s->name, params[0] ? " " : "", params, pt->n_buckets, law_probe[t], v);
            memset(law, 0, sizeof *law);
            return LSH_EPLUGIN;
        }
    }
    return 0;
}

int lsh_host_law_eval(const struct lsh_host_law *law, double cos_theta, double *p)
{
    const double c = cos_theta < -1.0 ? -1.0 : cos_theta > 1.0 ? 1.0 : cos_theta;
    const double v = law->fn(&law->round, c) + 0.0; /* -0 is the probability 0 */
    *p = v;
    return v >= 0.0 && v <= 1.0 ? 0 : LSH_EPLUGIN; /* NaN fails both */
}

/* ---- export_params ------------------------------------------------------------ */

struct export_sink {
    struct lsh_sink sink;        /* what the plugin is handed; ctx points here */
    lsh_host_array_fn fn;        /* NULL: check only */
    void *ctx;
    struct lsh_error *err;
    int fn_rc;                   /* the first error fn returned */
    char bad[LSH_ERROR_MSG_MAX / 2]; /* why an array was refused */
    char (*names)[LSH_HOST_NAME_MAX + 1]; /* the names given so far (one array per name) */
    size_t n_names, cap_names;
};

/* 1 when name was given before, else remembers it; -1 when out of memory. */
static int seen_before(struct export_sink *es, const char *name)
{
    for (size_t i = 0; i < es->n_names; i++)
        if (strcmp(es->names[i], name) == 0)
            return 1;
    if (es->n_names == es->cap_names) {
        size_t cap = es->cap_names ? 2 * es->cap_names : 16;
        void *grown = cap < SIZE_MAX / sizeof *es->names ? realloc(es->names, cap * sizeof *es->names)
                                                         : NULL;
        if (!grown)
            return -1;
        es->names = grown;
        es->cap_names = cap;
    }
    strcpy(es->names[es->n_names++], name);
    return 0;
}

static int valid_name(const char *name)
{
    size_t len = 0;
    if (!name)
        return 0;
    for (; name[len] && len <= LSH_HOST_NAME_MAX; len++) {
        char c = name[len];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return len >= 1 && len <= LSH_HOST_NAME_MAX;
}

/* The first LSH_HOST_NAME_MAX characters of a refused name, printable. */
static void quote_name(const char *name, char *out, size_t size)
{
    if (!name) {
        snprintf(out, size, "(null)");
        return;
    }
    size_t k = 0;
    for (; name[k] && k < LSH_HOST_NAME_MAX && k + 4 < size; k++)
        out[k] = (unsigned char)name[k] < 0x20 || name[k] == 0x7f ? '?' : name[k];
    out[k] = '\0';
    if (name[k] && k + 4 < size)
        strcat(out, "...");
}

static int sink_array(struct lsh_sink *sink, const char *name, const double *data, size_t rows,
                      size_t cols)
{
    struct export_sink *es = sink->ctx;
    if (es->fn_rc || es->bad[0])
        return LSH_STRATEGY_EFAIL; /* after a failure nothing more is written */
    char shown[LSH_HOST_NAME_MAX + 8];
    quote_name(name, shown, sizeof shown);
    size_t count;
    int seen;
    if (!valid_name(name))
        snprintf(es->bad, sizeof es->bad, "array name '%s' is not allowed; allowed: 1 to %d "
                 "characters of A-Za-z0-9_.-", shown, LSH_HOST_NAME_MAX);
    else if (__builtin_mul_overflow(rows, cols ? cols : 1, &count) ||
             count > SIZE_MAX / sizeof(double))
        snprintf(es->bad, sizeof es->bad, "array '%s' of %zu x %zu is too large", shown, rows,
                 cols);
    else if (!data && count)
        snprintf(es->bad, sizeof es->bad, "array '%s' of %zu x %zu has no data (NULL)", shown,
                 rows, cols);
    else if ((seen = seen_before(es, name)) != 0)
        snprintf(es->bad, sizeof es->bad, seen > 0 ? "array name '%s' is given twice; allowed: "
                 "one array per name" : "out of memory for the name of array '%s'", shown);
    if (es->bad[0])
        return LSH_STRATEGY_EINVAL;
    if (!es->fn)
        return 0;
    int rc = es->fn(es->ctx, name, data, rows, cols, es->err);
    if (rc) {
        es->fn_rc = rc;
        return LSH_STRATEGY_EFAIL;
    }
    return 0;
}

int lsh_host_round_export(struct lsh_host_round *r, lsh_host_array_fn fn, void *ctx,
                          struct lsh_error *err)
{
    const struct lsh_strategy *s = r->pt.strategy;
    if (!s->export_params)
        return 0;
    struct export_sink es = {.fn = fn, .ctx = ctx, .err = err};
    es.sink.ctx = &es;
    es.sink.array = sink_array;
    int rc = s->export_params(r->state, &es.sink);
    free(es.names);
    if (es.fn_rc) /* the host's own failure (a write): err was filled by fn */
        return es.fn_rc;
    if (es.bad[0])
        return lsh_error_set(err, LSH_EPLUGIN, "%s / round %u / export_params: %s", s->name, r->h,
                             es.bad);
    return rc ? plugin_failed(r, "export_params", rc, NULL, err) : 0;
}

/* ---- memory ------------------------------------------------------------------ */

/* The integer value of parameter `name` of pt (BOOL or INT), or def when the
 * strategy has no such parameter. */
static int64_t param_int(const struct lsh_host_point *pt, const char *name, int64_t def)
{
    const struct lsh_param *ps = pt->strategy->params;
    for (size_t p = 0; ps && ps[p].type != LSH_PARAM_END && p < pt->n_values; p++)
        if (!strcmp(ps[p].name, name))
            return pt->values[p].i;
    return def;
}

/* What the built-in strategies (strategies/NAME/NAME.c) allocate themselves,
 * which the ABI gives a plugin no way to say: kept from init to fini,
 * transient while init runs, transient while fit runs (beside the host's copy of the rows), and
 * transient while assign runs (beside the host's copy of the rows and
 * buckets).  Each batches its hashing into at most 2^20 doubles of
 * workspace.  Another plugin: 0 (not known). */
struct own_bytes {
    size_t kept, initing, fitting, assigning;
};

/* Bytes of a batch workspace of `cols` doubles a row: rotation's and
 * k-means' batches are min(2^20 / cols, 1024) rows (at least one). */
static size_t batch_work(size_t cols)
{
    const size_t most = (size_t)1 << 20, rows = cols ? most / cols : most;
    const size_t batch = rows > 1024 ? 1024 : rows ? rows : 1;
    return lsh_size_mul3(batch, cols, sizeof(double));
}

static struct own_bytes builtin_bytes(const struct lsh_host_point *pt)
{
    const char *name = pt->strategy->name;
    const size_t n = pt->n_rows, d = pt->d, B = pt->n_buckets;
    const size_t D = sizeof(double);
    struct own_bytes o = {0, 0, 0, 0};
    if (!strcmp(name, "rotation")) {
        /* R (d x B/2 at most), a batch's projections; an orthogonal R's QR
         * copy and its diagonal while init runs */
        const size_t r = lsh_size_mul3(d, B / 2 + 1, D);
        o.kept = lsh_size_add(r, batch_work(B / 2 + 1));
        o.initing = lsh_size_add(r, lsh_size_mul(B / 2 + 1, D));
    } else if (!strcmp(name, "hyperplane")) {
        /* W (d x k, k = log2 B <= 32) and a batch of 1024 rows' projections */
        o.kept = lsh_size_add(lsh_size_mul3(d, 32, D), lsh_size_mul3(1024, 32, D));
    } else if (!strcmp(name, "kmeans")) {
        /* the B x d centroids, a batch of unit rows and its scores; fit: the
         * unit rows, their flags, assignments, distances, dots and indices,
         * and the centroids' sums and counts; balanced assignment: a heap of
         * (row, centroid) candidates, B + 2 words a row */
        /* the centroids, their transpose (B rounded up to 8, on a cache line),
         * a batch of unit rows and its scores */
        o.kept = lsh_size_add(lsh_size_add(lsh_size_mul3(B, d, D), lsh_size_mul3(B + 8, d, D) + 64),
                              lsh_size_add(lsh_size_mul3(1024, d, D), batch_work(B)));
        o.fitting = lsh_size_add(lsh_size_mul(n, lsh_size_add(lsh_size_mul(d, D), 1 + 4 + 2 * D + 8)),
                                 lsh_size_mul(B, lsh_size_add(lsh_size_mul(d, D), 8)));
        if (B <= 8) /* the unit rows transposed in blocks of 16, and their nearest */
            o.fitting = lsh_size_add(o.fitting, lsh_size_mul(lsh_size_add(n, 15) / 16 * 16,
                                                             lsh_size_add(lsh_size_mul(d, D), 4)));
        if (param_int(pt, "balanced", 0))
            o.assigning = lsh_size_add(lsh_size_mul(n, lsh_size_add(lsh_size_mul(B, D), 16)),
                                       lsh_size_mul(B, D));
    } else if (!strcmp(name, "crosspolytope")) {
        /* k x rotations diagonals of d' <= 2d and 8 rows of transforms; k <= log2 B */
        size_t log2b = 0;
        while (log2b < 32 && ((size_t)1 << (log2b + 1)) <= B)
            log2b++;
        o.kept = lsh_size_mul3(D, lsh_size_mul(2, d), lsh_size_add(lsh_size_mul(5, log2b), 8));
    } else if (!strcmp(name, "sortlsh")) {
        /* W (d x r, r <= 30) and a batch's projections; the sort keys */
        o.kept = lsh_size_mul3(D, 30, lsh_size_add(d, 1024));
        o.assigning = lsh_size_mul3(2, D, n);
    } else if (!strcmp(name, "smyrf")) {
        /* a (d + 2); the sort items, two of 16 bytes a row */
        o.kept = lsh_size_mul(D, lsh_size_add(d, 2));
        o.assigning = lsh_size_mul(32, n);
    }
    return o;
}

void lsh_host_round_memory(const struct lsh_host_point *pt, struct lsh_host_memory *out)
{
    const struct lsh_strategy *s = pt->strategy;
    const size_t n_rows = pt->n_rows, d = pt->d;
    const size_t state = s->state_size > LSH_HOST_STATE_MAX ? SIZE_MAX
                                                             : state_bytes(s->state_size);
    const struct own_bytes own = builtin_bytes(pt);
    /* the round itself and its stream (a gsl_rng and xoshiro's 32 bytes) */
    out->kept = lsh_size_add(lsh_size_add(state, sizeof(struct lsh_host_round) + 256), own.kept);
    const size_t copy = lsh_size_mul(n_rows, lsh_size_mul(d, sizeof(double)));
    /* the fit copy is held while the plugin's fit allocates its own; an
     * assign strategy gets a copy of every row and two buckets each (while
     * assign allocates its own) instead of hash batches */
    const size_t fitting = s->fit ? lsh_size_add(copy, own.fitting) : 0;
    const size_t bucketing =
        lsh_host_assigns(s)
            ? lsh_size_add(lsh_size_add(copy, lsh_size_mul(n_rows, 2 * sizeof(uint32_t))),
                           own.assigning)
            : batch_bytes(n_rows < LSH_HOST_BATCH_ROWS ? n_rows : LSH_HOST_BATCH_ROWS, d);
    out->transient = fitting > bucketing ? fitting : bucketing;
    out->transient = own.initing > out->transient ? own.initing : out->transient;
}

double lsh_host_round_cost(const struct lsh_host_point *pt)
{
    const char *name = pt->strategy->name;
    const double n = (double)pt->n_rows, d = (double)pt->d, B = (double)pt->n_buckets;
    unsigned log2b = 0;
    while (log2b < 32 && ((uint64_t)2 << log2b) <= pt->n_buckets)
        log2b++;
    if (!strcmp(name, "rotation")) /* x R: B / 2 columns */
        return n * d * (B + 4);
    if (!strcmp(name, "hyperplane"))
        return n * d * 2 * (log2b + 1);
    if (!strcmp(name, "kmeans")) /* the Lloyd steps' scores and unit rows, then the hashing */
        return n * d * (2 * B + 8) * (double)(param_int(pt, "iterations", 10) + 1);
    if (!strcmp(name, "crosspolytope")) {
        unsigned log2d = 1;
        while (log2d < 63 && ((uint64_t)1 << log2d) < 2 * (uint64_t)pt->d)
            log2d++;
        return n * 2 * d * log2d * (double)param_int(pt, "rotations", 3) *
               (double)param_int(pt, "k", 1);
    }
    if (!strcmp(name, "sortlsh"))
        return n * d * 2 * (double)param_int(pt, "projections", 7);
    return n * d * 8;
}
