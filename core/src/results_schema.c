/* results_schema.c - the /runs and /collision tables of a results file
 * (SPEC 9): their columns, declared once as data, row packing, and the HDF5
 * attribute and error helpers the results files share. */
#include "results_schema.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_ROWS 64

/* ---- errors ------------------------------------------------------------- */

static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    char *detail = data;
    if (n == 0 && e->desc)
        snprintf(detail, 320, "%s", e->desc);
    return 0;
}

int lsh_h5_fail(struct lsh_error *err, const char *file, const char *fmt, ...)
{
    char what[512], detail[320] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, detail);
    /* the fletcher32 filter of /runs and /collision found flipped bytes; or
     * the file is cut short, or is no HDF5 file at all: bad input (exit 3),
     * whichever way it is damaged */
    if (strstr(detail, "checksum") || strstr(detail, "truncated file") ||
        strstr(detail, "signature not found"))
        return lsh_error_set(err, LSH_EDATA,
                             "results file '%s' is damaged: cannot %s (HDF5: %s); restore it "
                             "from a copy, or start over with --force",
                             file, what, detail);
    if (detail[0])
        return lsh_error_set(err, LSH_EIO, "results file '%s': cannot %s (HDF5: %s)", file,
                             what, detail);
    return lsh_error_set(err, LSH_EIO, "results file '%s': cannot %s", file, what);
}

int lsh_h5_enomem(struct lsh_error *err)
{
    return lsh_error_set(err, LSH_ENOMEM, "out of memory while writing results");
}

/* ---- the column tables --------------------------------------------------- */

enum col_kind { COL_U8, COL_U32, COL_I32, COL_U64, COL_F64, COL_STR };

enum col_src {
    SRC_FIELD, /* a field of the record at `offset`; COL_STR: a const char * */
    SRC_WORD,  /* a string computed from the record by word() */
    SRC_TOPK   /* metrics.topk_recall[k]: one column per K of attention.topk */
};

enum {
    COL_METRIC = 1u << 0,   /* a value (SPEC 5 metric): finite and >= 0; in /runs zero
                               unless the point is ok */
    COL_TRUNCATE = 1u << 1, /* free text: cut to fit rather than refuse */
    COL_SE = 1u << 2,       /* has a <name>_se companion when rows are sampled */
    COL_KEY = 1u << 3,      /* part of the row's key: a resumed row must match the plan */
    COL_UNIT = 1u << 4,     /* a COL_METRIC share or probability: in [0, 1] */
    COL_RULE = 1u << 5,     /* a candidate rule key (SPEC 13): absent from a format
                               version 2 file written before them, read as 1, 0, 0 */
    COL_ORACLE = 1u << 6    /* the budget-matched oracle's: only with attention.oracle */
};

/* One column as declared.  Both tables are data, so adding a column (or a
 * *_se column next to every COL_METRIC one) touches only expand_columns. */
struct lsh_col_def {
    const char *name;
    enum col_kind kind;
    enum col_src src;
    size_t offset;
    size_t width; /* COL_STR: the fixed string length */
    const char *(*word)(const void *rec);
    unsigned flags;
    size_t se_offset; /* COL_SE: the field in struct lsh_metric_se */
};

static const char *status_name(enum lsh_point_status s)
{
    switch (s) {
    case LSH_POINT_OK:
        return "ok";
    case LSH_POINT_SKIPPED:
        return "skipped";
    case LSH_POINT_FAILED:
        return "failed";
    }
    return NULL;
}

static const char *run_mode(const void *rec)
{
    return lsh_mode_name(((const struct lsh_run_row *)rec)->key.mode);
}

static const char *run_window(const void *rec)
{
    const struct lsh_run_row *r = rec;
    return r->key.mode == LSH_MODE_BUCKET ? "n/a" : lsh_window_name(r->key.window);
}

static const char *run_combine(const void *rec)
{
    return lsh_combine_name(((const struct lsh_run_row *)rec)->key.combine);
}

static const char *run_status(const void *rec)
{
    return status_name(((const struct lsh_run_row *)rec)->status);
}

#define RUN(f) offsetof(struct lsh_run_row, f)
#define K_U32(name, f) { name, COL_U32, SRC_FIELD, RUN(f), 0, NULL, COL_KEY, 0 }
#define K_I32(name, f) { name, COL_I32, SRC_FIELD, RUN(f), 0, NULL, COL_KEY, 0 }
#define K_U64(name, f) { name, COL_U64, SRC_FIELD, RUN(f), 0, NULL, COL_KEY, 0 }
#define K_STR(name, f, w) { name, COL_STR, SRC_FIELD, RUN(f), w, NULL, COL_KEY, 0 }
#define K_WORD(name, fn) { name, COL_STR, SRC_WORD, 0, LSH_RUNS_WORD_LEN, fn, COL_KEY, 0 }
#define R_METRIC(name, kind, fl)                                                             \
    { #name, kind, SRC_FIELD, RUN(metrics.name), 0, NULL, COL_METRIC | COL_SE | (fl),       \
      offsetof(struct lsh_metric_se, name) }
#define R_TIMING(name) { #name, COL_F64, SRC_FIELD, RUN(metrics.name), 0, NULL, COL_METRIC, 0 }
#define K_RULE(name, f) { name, COL_U32, SRC_FIELD, RUN(f), 0, NULL, COL_KEY | COL_RULE, 0 }

static const struct lsh_col_def run_columns[] = {
    K_U64("point_id", key.point_id),
    K_STR("dataset", key.dataset, LSH_RUNS_NAME_LEN),
    K_I32("layer", key.layer), /* format version 2 (SPEC 11.2, 16) */
    K_I32("head", key.head),
    K_STR("strategy", key.strategy, LSH_RUNS_NAME_LEN),
    K_STR("params", key.params, LSH_RUNS_PARAMS_LEN),
    K_WORD("mode", run_mode),
    K_U32("chunk_size", key.chunk_size),
    K_U32("look_back", key.look_back),
    K_WORD("window", run_window),
    K_WORD("combine", run_combine),
    K_RULE("min_collisions", key.min_collisions), /* SPEC 13 */
    K_RULE("sink", key.sink),
    K_RULE("local", key.local),
    K_U32("n_hashes", key.n_hashes),
    K_U32("n_buckets", key.n_buckets),
    K_U32("repeat", key.repeat),
    K_U64("seed", key.seed),
    { "status", COL_STR, SRC_WORD, 0, LSH_RUNS_WORD_LEN, run_status, 0, 0 },
    { "message", COL_STR, SRC_FIELD, RUN(message), LSH_RUNS_MESSAGE_LEN, NULL, COL_TRUNCATE, 0 },
    R_METRIC(out_rel_err, COL_F64, 0),
    R_METRIC(attn_rel_err, COL_F64, 0),
    R_METRIC(mass_recall, COL_F64, COL_UNIT),
    R_METRIC(kl, COL_F64, 0),
    R_METRIC(empty_rows, COL_U64, 0),
    R_METRIC(gram_recovery, COL_F64, COL_UNIT),
    { "topk_recall_", COL_F64, SRC_TOPK, 0, 0, NULL, COL_METRIC | COL_SE | COL_UNIT, 0 },
    R_METRIC(density, COL_F64, COL_UNIT),
    R_METRIC(mean_candidates, COL_F64, 0),
    R_METRIC(bucket_max, COL_F64, 0),
    R_METRIC(bucket_entropy, COL_F64, COL_UNIT),
    R_METRIC(oracle_mass_recall, COL_F64, COL_UNIT | COL_ORACLE), /* SPEC 13 */
    R_METRIC(oracle_out_rel_err, COL_F64, COL_ORACLE),
    R_TIMING(hash_seconds),
    R_TIMING(eval_seconds),
    { "oracle_seconds", COL_F64, SRC_FIELD, RUN(metrics.oracle_seconds), 0, NULL,
      COL_METRIC | COL_ORACLE, 0 },
};

#define COL(f) offsetof(struct lsh_collision_row, f)
#define C_FIELD(name, kind, w, fl) { #name, kind, SRC_FIELD, COL(name), w, NULL, fl, 0 }

static const struct lsh_col_def collision_columns[] = {
    C_FIELD(strategy, COL_STR, LSH_RUNS_NAME_LEN, COL_KEY),
    C_FIELD(params, COL_STR, LSH_RUNS_PARAMS_LEN, COL_KEY),
    C_FIELD(n_buckets, COL_U32, 0, COL_KEY),
    C_FIELD(n_hashes, COL_U32, 0, COL_KEY),
    C_FIELD(angle, COL_F64, 0, COL_KEY),
    C_FIELD(pairs, COL_U64, 0, COL_KEY),
    C_FIELD(p_round, COL_F64, 0, COL_METRIC | COL_UNIT),
    C_FIELD(p_round_se, COL_F64, 0, COL_METRIC),
    C_FIELD(p_any, COL_F64, 0, COL_METRIC | COL_UNIT),
    C_FIELD(p_any_se, COL_F64, 0, COL_METRIC),
    C_FIELD(has_law, COL_U8, 0, 0),       /* the strategy publishes collision_prob */
    C_FIELD(p_law, COL_F64, 0, COL_METRIC | COL_UNIT), /* its value; 0 without */
    C_FIELD(seed, COL_U64, 0, COL_KEY),
    C_FIELD(seconds, COL_F64, 0, COL_METRIC),
};


static size_t kind_size(const struct lsh_col_def *def)
{
    switch (def->kind) {
    case COL_U8:
        return sizeof(uint8_t);
    case COL_U32:
        return sizeof(uint32_t);
    case COL_I32:
        return sizeof(int32_t);
    case COL_U64:
        return sizeof(uint64_t);
    case COL_F64:
        return sizeof(double);
    case COL_STR:
        return def->width;
    }
    return 0;
}

static hid_t kind_type(const struct lsh_col_def *def)
{
    hid_t t;
    switch (def->kind) {
    case COL_U8:
        return H5Tcopy(H5T_NATIVE_UINT8);
    case COL_U32:
        return H5Tcopy(H5T_NATIVE_UINT32);
    case COL_I32:
        return H5Tcopy(H5T_NATIVE_INT32);
    case COL_U64:
        return H5Tcopy(H5T_NATIVE_UINT64);
    case COL_F64:
        return H5Tcopy(H5T_NATIVE_DOUBLE);
    case COL_STR:
        t = H5Tcopy(H5T_C_S1);
        if (t < 0 || H5Tset_size(t, def->width) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0) {
            if (t >= 0)
                H5Tclose(t);
            return NO_HID;
        }
        return t;
    }
    return NO_HID;
}

/* Expand the declared columns into the file's columns, in order. */
static int expand_columns(struct lsh_table *tab, const struct lsh_col_def *defs, size_t n_defs,
                          const uint32_t *topk, size_t n_topk, int with_se, unsigned omit,
                          struct lsh_error *err)
{
    size_t n = 0, off = 0;
    for (size_t i = 0; i < n_defs; i++)
        n += (defs[i].src == SRC_TOPK ? n_topk : 1) * (with_se && (defs[i].flags & COL_SE) ? 2 : 1);
    tab->cols = calloc(n ? n : 1, sizeof *tab->cols);
    if (!tab->cols)
        return lsh_h5_enomem(err);
    for (size_t i = 0; i < n_defs; i++) {
        if (defs[i].flags & omit)
            continue;
        size_t copies = defs[i].src == SRC_TOPK ? n_topk : 1;
        for (size_t k = 0; k < copies; k++) {
            struct lsh_column *c = &tab->cols[tab->n_cols++];
            c->def = &defs[i];
            c->index = k;
            if (defs[i].src == SRC_TOPK)
                snprintf(c->name, sizeof c->name, "%s%" PRIu32, defs[i].name, topk[k]);
            else
                snprintf(c->name, sizeof c->name, "%s", defs[i].name);
            c->offset = off;
            c->size = kind_size(&defs[i]);
            off += c->size;
            if (with_se && (defs[i].flags & COL_SE)) {
                struct lsh_column *e = &tab->cols[tab->n_cols++];
                *e = *c;
                e->se = 1;
                size_t len = strlen(c->name); /* names are short: "_se" always fits */
                memcpy(e->name, c->name, len < sizeof e->name - 4 ? len : sizeof e->name - 4);
                memcpy(e->name + (len < sizeof e->name - 4 ? len : sizeof e->name - 4), "_se", 4);
                e->offset = off;
                e->size = sizeof(double);
                off += e->size;
            }
        }
    }
    tab->row_size = off;
    return 0;
}

static int build_type(struct lsh_table *tab, const char *file, struct lsh_error *err)
{
    tab->type = H5Tcreate(H5T_COMPOUND, tab->row_size);
    if (tab->type < 0)
        return lsh_h5_fail(err, file, "create the /%s row type", tab->name);
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct lsh_column *c = &tab->cols[i];
        hid_t t = c->se ? H5Tcopy(H5T_NATIVE_DOUBLE) : kind_type(c->def);
        herr_t rc = t < 0 ? -1 : H5Tinsert(tab->type, c->name, c->offset, t);
        if (t >= 0)
            H5Tclose(t);
        if (rc < 0)
            return lsh_h5_fail(err, file, "add column %s to the /%s row type", c->name, tab->name);
    }
    return 0;
}

static int put_string(unsigned char *dst, const struct lsh_column *c, const char *s,
                      struct lsh_error *err)
{
    size_t len = s ? strlen(s) : 0, cap = c->size - 1; /* always keep one NUL */
    if (len > cap) {
        if (!(c->def->flags & COL_TRUNCATE))
            return lsh_error_set(err, LSH_ERANGE,
                                 "%s '%s' is %zu characters long; the results file holds "
                                 "at most %zu",
                                 c->name, s, len, cap);
        memcpy(dst, s, cap - 3);
        memcpy(dst + cap - 3, "...", 3);
        return 0;
    }
    if (len)
        memcpy(dst, s, len);
    return 0;
}

int lsh_table_pack(const struct lsh_table *tab, const void *rec, int zero_metrics,
                    unsigned char *buf, struct lsh_error *err)
{
    const unsigned char *base = rec;
    memset(buf, 0, tab->row_size);
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct lsh_column *c = &tab->cols[i];
        const struct lsh_col_def *def = c->def;
        unsigned char *dst = buf + c->offset;
        if (zero_metrics && (def->flags & COL_METRIC))
            continue;
        if (c->se) {
            const struct lsh_metric_se *se = ((const struct lsh_run_row *)rec)->metrics.se;
            double v = 0.0;
            if (se && def->src == SRC_TOPK)
                v = se->topk_recall ? se->topk_recall[c->index] : 0.0;
            else if (se)
                memcpy(&v, (const unsigned char *)se + def->se_offset, sizeof v);
            memcpy(dst, &v, sizeof v);
        } else if (def->src == SRC_TOPK) {
            const double *recall = ((const struct lsh_run_row *)rec)->metrics.topk_recall;
            double v = recall ? recall[c->index] : 0.0;
            memcpy(dst, &v, sizeof v);
        } else if (def->src == SRC_WORD) {
            const char *w = def->word(rec);
            if (!w)
                return lsh_error_set(err, LSH_EINVAL, "invalid value for column %s", c->name);
            int rc = put_string(dst, c, w, err);
            if (rc)
                return rc;
        } else if (def->kind == COL_STR) {
            const char *s;
            memcpy(&s, base + def->offset, sizeof s);
            int rc = put_string(dst, c, s, err);
            if (rc)
                return rc;
        } else {
            memcpy(dst, base + def->offset, c->size);
        }
    }
    return 0;
}

void lsh_table_close(struct lsh_table *tab)
{
    if (tab->dset >= 0)
        H5Dclose(tab->dset);
    if (tab->type >= 0)
        H5Tclose(tab->type);
    free(tab->cols);
    tab->cols = NULL;
    tab->dset = tab->type = NO_HID;
}

/* ---- attributes ----------------------------------------------------------- */

hid_t lsh_h5_vl_string(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        t = NO_HID;
    }
    return t;
}

herr_t lsh_h5_write_attr(hid_t obj, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = NO_HID;
    herr_t rc = -1;
    if (space >= 0)
        attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0)
        rc = H5Awrite(attr, type, value);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

herr_t lsh_h5_attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = lsh_h5_vl_string();
    if (t < 0)
        return -1;
    const char *v = value ? value : "";
    herr_t rc = lsh_h5_write_attr(obj, name, t, &v);
    H5Tclose(t);
    return rc;
}

herr_t lsh_h5_attr_u64(hid_t obj, const char *name, uint64_t v)
{
    return lsh_h5_write_attr(obj, name, H5T_NATIVE_UINT64, &v);
}

herr_t lsh_h5_attr_f64(hid_t obj, const char *name, double v)
{
    return lsh_h5_write_attr(obj, name, H5T_NATIVE_DOUBLE, &v);
}

int lsh_h5_read_attr_str(hid_t obj, const char *name, char **out)
{
    htri_t has = H5Aexists(obj, name);
    if (has <= 0)
        return has == 0 ? 1 : -1;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ftype = attr >= 0 ? H5Aget_type(attr) : NO_HID;
    hid_t mtype = NO_HID;
    int rc = -1;
    if (ftype < 0 || H5Tget_class(ftype) != H5T_STRING)
        goto done;
    if (H5Tis_variable_str(ftype) > 0) {
        char *v = NULL;
        mtype = lsh_h5_vl_string();
        /* HDF5 converts no string between character sets: read it as stored */
        if (mtype >= 0 && H5Tset_cset(mtype, H5Tget_cset(ftype)) >= 0 &&
            H5Aread(attr, mtype, &v) >= 0) {
            *out = strdup(v ? v : "");
            H5free_memory(v);
            rc = *out ? 0 : -1;
        }
    } else {
        size_t size = H5Tget_size(ftype);
        char *v = calloc(size + 1, 1);
        mtype = H5Tcopy(H5T_C_S1);
        if (v && mtype >= 0 && H5Tset_size(mtype, size) >= 0 &&
            H5Tset_cset(mtype, H5Tget_cset(ftype)) >= 0 && H5Aread(attr, mtype, v) >= 0) {
            *out = v;
            v = NULL;
            rc = 0;
        }
        free(v);
    }
done:
    if (mtype >= 0)
        H5Tclose(mtype);
    if (ftype >= 0)
        H5Tclose(ftype);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

int lsh_h5_check_format(hid_t file, const char *path, struct lsh_error *err)
{
    char *format = NULL;
    /* rc < 0: there is one, but not a string (HDF5 opened the file) */
    int rc = lsh_h5_read_attr_str(file, "format", &format);
    if (rc != 0 || strcmp(format, LSH_RESULTS_FORMAT) != 0) {
        free(format);
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not an lshlab results file (no format attribute \"%s\")",
                             path, LSH_RESULTS_FORMAT);
    }
    free(format);
    return 0;
}


int lsh_h5_format_version(hid_t file, int *version)
{
    hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
    herr_t got = attr < 0 ? -1 : H5Aread(attr, H5T_NATIVE_INT, version);
    if (attr >= 0)
        H5Aclose(attr);
    return got < 0 ? -1 : 0;
}

int lsh_table_init(struct lsh_table *tab, const struct lsh_config *cfg, const char *file,
                   int without_rules, struct lsh_error *err)
{
    int rc;
    tab->dset = tab->type = NO_HID;
    tab->cols = NULL;
    tab->n_cols = 0;
    if (cfg->experiment == LSH_EXPERIMENT_COLLISION) {
        tab->name = "collision";
        rc = expand_columns(tab, collision_columns,
                            sizeof collision_columns / sizeof collision_columns[0], NULL, 0, 0,
                            0, err);
    } else {
        tab->name = "runs";
        /* SPEC 6: a sampled reference adds X_se beside every metric X */
        int sampled = 0;
        for (size_t k = 0; k < cfg->n_datasets; k++)
            sampled |= cfg->datasets[k].reference_rows > 0;
        /* SPEC 13: the oracle's columns only when it is on; the rule keys
         * left out only to append to a file written before them */
        const unsigned omit = (cfg->attention.oracle ? 0u : COL_ORACLE) |
                              (without_rules ? COL_RULE : 0u);
        rc = expand_columns(tab, run_columns, sizeof run_columns / sizeof run_columns[0],
                            cfg->attention.topk, cfg->attention.n_topk, sampled, omit, err);
    }
    return rc ? rc : build_type(tab, file, err);
}

int lsh_table_create(struct lsh_table *tab, hid_t file, const char *path,
                     struct lsh_error *err)
{
    hsize_t dims[1] = { 0 }, maxdims[1] = { H5S_UNLIMITED }, chunk[1] = { CHUNK_ROWS };
    hid_t space = H5Screate_simple(1, dims, maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = 0;
    /* fletcher32: a flipped byte fails the read instead of being believed */
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0 ||
        H5Pset_fletcher32(dcpl) < 0) {
        rc = lsh_h5_fail(err, path, "set up /%s", tab->name);
        goto done;
    }
    tab->dset = H5Dcreate2(file, tab->name, tab->type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (tab->dset < 0)
        rc = lsh_h5_fail(err, path, "create /%s", tab->name);
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* ---- reading back -------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at s (n bytes left), 0 if none:
 * no overlong forms, surrogates or code points past U+10FFFF. */
static size_t utf8_length(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

size_t lsh_text_escape(char *dst, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_length(u + i, n - i);
        /* C0 controls, DEL and C1 controls (U+0080..U+009F) steer terminals */
        int control = len == 1 ? (u[i] < 0x20 || u[i] == 0x7F)
                               : len == 2 && u[i] == 0xC2 && u[i + 1] < 0xA0;
        if (len == 0 || control) {
            size_t k = len ? len : 1;
            for (size_t j = 0; j < k; j++)
                out += (size_t)sprintf(dst + out, "\\x%02x", u[i + j]);
            i += k;
        } else {
            memcpy(dst + out, u + i, len);
            out += len;
            i += len;
        }
    }
    dst[out] = '\0';
    return out;
}

int lsh_table_rows(hid_t dset, size_t row_size, const char *path, const char *name,
                   hsize_t *n_rows, struct lsh_error *err)
{
    hid_t space = H5Dget_space(dset), dcpl = H5Dget_create_plist(dset);
    hsize_t n = 0, chunk = 1;
    int rc = 0, compressed = 0;
    if (space < 0 || dcpl < 0 || H5Sget_simple_extent_ndims(space) != 1 ||
        H5Sget_simple_extent_dims(space, &n, NULL) < 0) {
        rc = lsh_h5_fail(err, path, "read the size of /%s", name);
        goto done;
    }
    if (H5Pget_layout(dcpl) == H5D_CHUNKED)
        H5Pget_chunk(dcpl, 1, &chunk);
    for (int i = 0, nf = H5Pget_nfilters(dcpl); i < nf; i++) {
        unsigned flags;
        size_t nv = 0;
        compressed |= H5Pget_filter2(dcpl, (unsigned)i, &flags, &nv, NULL, 0, NULL, NULL) !=
                      H5Z_FILTER_FLETCHER32;
    }
    /* Rows are written, never left to fill values: the rows a file declares
     * must be in its storage (allowing one partly filled chunk, and a
     * generous ratio if a tool compressed it). */
    double stored = (double)H5Dget_storage_size(dset) * (compressed ? 1024.0 : 1.0);
    double declared = (double)n * (double)row_size;
    if (n > 0 && declared > stored + (double)chunk * (double)row_size)
        rc = lsh_error_set(err, LSH_EDATA,
                           "results file '%s' is damaged: /%s declares %llu rows (%.3g bytes) "
                           "but stores only %.3g bytes",
                           path, name, (unsigned long long)n, declared,
                           (double)H5Dget_storage_size(dset));
    else
        *n_rows = n;
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return rc;
}

/* A cell of a packed row as text (strings escaped), for messages. */
static void cell_text(const struct lsh_column *c, const unsigned char *row, char *buf,
                      size_t size)
{
    const unsigned char *p = row + c->offset;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    double f;
    if (c->se || c->def->kind == COL_F64) {
        memcpy(&f, p, sizeof f);
        snprintf(buf, size, "%.17g", f);
    } else if (c->def->kind == COL_U8) {
        snprintf(buf, size, "%u", (unsigned)p[0]);
    } else if (c->def->kind == COL_U32) {
        memcpy(&u32, p, sizeof u32);
        snprintf(buf, size, "%" PRIu32, u32);
    } else if (c->def->kind == COL_I32) {
        memcpy(&i32, p, sizeof i32);
        snprintf(buf, size, "%" PRId32, i32);
    } else if (c->def->kind == COL_U64) {
        memcpy(&u64, p, sizeof u64);
        snprintf(buf, size, "%" PRIu64, u64);
    } else {
        enum { SHOWN = 80 }; /* enough to recognise it */
        char text[4 * SHOWN + 1];
        size_t n = strnlen((const char *)p, c->size < SHOWN ? c->size : SHOWN);
        lsh_text_escape(text, (const char *)p, n);
        snprintf(buf, size, "'%s'", text);
    }
}

int lsh_table_check_row(const struct lsh_table *tab, const unsigned char *row,
                        const unsigned char *planned, char *why, size_t size)
{
    char got[420], want[420];
    int ok = 1; /* /collision has no status: every row holds values */
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct lsh_column *c = &tab->cols[i];
        if (c->def->src != SRC_WORD || c->def->word != run_status)
            continue;
        char status[LSH_RUNS_WORD_LEN + 1] = "";
        memcpy(status, row + c->offset, c->size < LSH_RUNS_WORD_LEN ? c->size
                                                                      : LSH_RUNS_WORD_LEN);
        ok = !strcmp(status, "ok");
        if (!ok && strcmp(status, "skipped") && strcmp(status, "failed")) {
            cell_text(c, row, got, sizeof got);
            snprintf(why, size, "its status is %s, not ok, skipped or failed", got);
            return -1;
        }
    }
    for (size_t i = 0; i < tab->n_cols; i++) {
        const struct lsh_column *c = &tab->cols[i];
        const unsigned char *p = row + c->offset;
        unsigned flags = c->def->flags;
        if ((flags & COL_KEY) && memcmp(p, planned + c->offset, c->size) != 0) {
            cell_text(c, row, got, sizeof got);
            cell_text(c, planned, want, sizeof want);
            snprintf(why, size, "its %s is %s, this config's plan has %s", c->name, got, want);
            return -1;
        }
        if (ok && !strcmp(c->name, "message") && p[0] != '\0') {
            cell_text(c, row, got, sizeof got);
            snprintf(why, size, "it ran (status ok), yet its message is %s, not empty", got);
            return -1;
        }
        if (!(flags & COL_METRIC))
            continue;
        if (!ok) {
            static const unsigned char zero[sizeof(uint64_t)];
            if (memcmp(p, zero, c->size) != 0) {
                cell_text(c, row, got, sizeof got);
                snprintf(why, size, "it did not run, yet its %s is %s, not 0", c->name, got);
                return -1;
            }
            continue;
        }
        if (!c->se && c->def->kind != COL_F64)
            continue; /* a count: any value can be true */
        double v;
        memcpy(&v, p, sizeof v);
        /* a little slack for rounding: a sum of shares may end at 1 + 1 ulp */
        if (!isfinite(v) || v < -1e-9 || ((flags & COL_UNIT) && !c->se && v > 1 + 1e-9)) {
            snprintf(why, size, "its %s is %.17g, not a finite value in %s", c->name, v,
                     (flags & COL_UNIT) && !c->se ? "[0, 1]" : "[0, inf)");
            return -1;
        }
    }
    return 0;
}
