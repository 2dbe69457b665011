/* config.c - reads an experiment's YAML (SPEC 10) into a validated struct lsh_config. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "registry.h"

/* A strategy entry may expand into at most this many parameter sets (each
 * is then multiplied by datasets, n_buckets and repeats): a runaway generated
 * config should fail here, not exhaust memory later. */
#define MAX_PARAM_SETS ((size_t)1 << 16)

/* Values longer than this are cut in messages. */
#define SHOW_MAX 60

struct ctx {
    yaml_document_t doc;
    const char *file;               /* names the config in errors */
    struct lsh_error *err;
    const struct lsh_registry *reg;
    struct lsh_config *cfg;
    char desc[SHOW_MAX + 40];       /* describe()'s buffer: one use per message */
};

/* ---- errors --------------------------------------------------------------- */

static int vfail(struct ctx *c, int code, size_t line, size_t column, const char *fmt,
                 va_list ap)
{
    char msg[LSH_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return lsh_error_at(c->err, code, c->file, (int)line + 1, (int)column + 1, "%s", msg);
}

static int fail_mark(struct ctx *c, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_mark(struct ctx *c, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, LSH_ECONFIG, mark.line, mark.column, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail(struct ctx *c, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *c, const yaml_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(c, LSH_ECONFIG, node->start_mark.line, node->start_mark.column, fmt, ap);
    va_end(ap);
    return rc;
}

static int oom(struct ctx *c)
{
    return lsh_error_set(c->err, LSH_ENOMEM, "out of memory while reading the configuration");
}

static int line_of(const yaml_node_t *node)
{
    return (int)node->start_mark.line + 1;
}

static struct lsh_mark mark_of(const yaml_node_t *n)
{
    return (struct lsh_mark){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

/* ---- nodes ---------------------------------------------------------------- */

static yaml_node_t *node_at(struct ctx *c, int index)
{
    return yaml_document_get_node(&c->doc, index);
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int is_plain(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML's null: an empty value, ~ or null, unquoted. */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n))
        return 0;
    const char *s = sval(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* "a list", "'1.5'", "the quoted string \"12\"" - what the user wrote, for "got ...". */
static const char *describe(struct ctx *c, const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (is_null(n))
        return "nothing (null)";
    const char *s = sval(n);
    size_t len = strlen(s);
    int show = len > SHOW_MAX ? SHOW_MAX : (int)len;
    const char *more = len > SHOW_MAX ? "..." : "";
    if (is_plain(n))
        snprintf(c->desc, sizeof c->desc, "'%.*s%s'", show, s, more);
    else
        snprintf(c->desc, sizeof c->desc, "the quoted string \"%.*s%s\"", show, s, more);
    return c->desc;
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_item(struct ctx *c, const yaml_node_t *n, size_t i)
{
    return node_at(c, n->data.sequence.items.start[i]);
}

/* A value that may be one scalar or a list of them: its count and i-th item. */
static size_t n_items(const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE ? seq_len(n) : 1;
}

static yaml_node_t *item(struct ctx *c, yaml_node_t *n, size_t i)
{
    return n->type == YAML_SEQUENCE_NODE ? seq_item(c, n, i) : n;
}

/* The value under key in a mapping (NULL when absent); *key_node gets the key. */
static yaml_node_t *lookup(struct ctx *c, const yaml_node_t *map, const char *key,
                           yaml_node_t **key_node)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp(sval(k), key)) {
            if (key_node)
                *key_node = k;
            return node_at(c, p->value);
        }
    }
    return NULL;
}

static yaml_node_t *key_of(struct ctx *c, const yaml_node_t *map, const char *key)
{
    yaml_node_t *k = NULL;
    lookup(c, map, key, &k);
    return k;
}

/* ---- nearest word (Levenshtein) -------------------------------------------- */

#define LEV_MAX 128

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > LEV_MAX || lb > LEV_MAX)
        return (size_t)-1;
    size_t row[LEV_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
                              ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest of words[0..n) to w, or NULL when none is close enough to be a
 * plausible typo (a suggestion of an unrelated word only confuses). */
static const char *nearest(const char *w, const char *const *words, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = levenshtein(w, words[i]);
        if (d < best_d) {
            best_d = d;
            best = words[i];
        }
    }
    size_t len = strlen(w);
    size_t limit = len / 2 > 2 ? len / 2 : 2;
    return best && best_d <= limit ? best : NULL;
}

static void join_words(char *buf, size_t size, const char *const *words, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", words[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Every key of map must be a word in allowed[0..n), given once. */
static int check_keys(struct ctx *c, const yaml_node_t *map, const char *where,
                      const char *const *allowed, size_t n)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k->type != YAML_SCALAR_NODE || is_null(k))
            return fail(c, k, "%s: a key must be a word, got %s", where, describe(c, k));
        const char *name = sval(k);
        if (strlen(name) != k->data.scalar.length) /* "seed\0x" must not read as seed */
            return fail(c, k, "%s: the key '%s...' contains a NUL character", where, name);
        int known = 0;
        for (size_t i = 0; i < n && !known; i++)
            known = !strcmp(name, allowed[i]);
        if (!known) {
            const char *near = nearest(name, allowed, n);
            char list[512];
            join_words(list, sizeof list, allowed, n);
            if (near)
                return fail(c, k, "unknown key '%s' in %s; did you mean '%s'?", name, where, near);
            return fail(c, k, "unknown key '%s' in %s; allowed: %s", name, where, list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k0 = node_at(c, q->key);
            if (k0->type == YAML_SCALAR_NODE && !strcmp(sval(k0), name))
                return fail(c, k, "duplicate key '%s' in %s (first given on line %d)", name,
                            where, line_of(k0));
        }
    }
    return 0;
}

static int need_mapping(struct ctx *c, const yaml_node_t *n, const char *where, const char *what)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    return 0;
}

/* A list (block or flow); empty lists are refused unless allow_empty. */
static int need_list(struct ctx *c, const yaml_node_t *n, const char *where, const char *what,
                     int allow_empty)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    if (!allow_empty && seq_len(n) == 0)
        return fail(c, n, "%s: the list is empty; expected %s", where, what);
    return 0;
}

/* One scalar or a non-empty list of them. */
static int need_scalar_or_list(struct ctx *c, const yaml_node_t *n, const char *where,
                               const char *what)
{
    if (n->type == YAML_MAPPING_NODE)
        return fail(c, n, "%s: expected %s or a list of them, got a mapping", where, what);
    if (n->type == YAML_SEQUENCE_NODE && seq_len(n) == 0)
        return fail(c, n, "%s: the list is empty; expected %s or a list of them", where, what);
    return 0;
}

/* ---- scalars --------------------------------------------------------------- */

static int need_scalar(struct ctx *c, const yaml_node_t *n, const char *where, const char *what)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    if (strlen(sval(n)) != n->data.scalar.length)
        return fail(c, n, "%s: the value contains a NUL character", where);
    return 0;
}

static int get_string(struct ctx *c, const yaml_node_t *n, const char *where, const char *what,
                      const char **out)
{
    int rc = need_scalar(c, n, where, what);
    if (rc)
        return rc;
    if (!*sval(n))
        return fail(c, n, "%s: expected %s, got an empty string", where, what);
    *out = sval(n);
    return 0;
}

static int dup_string(struct ctx *c, const yaml_node_t *n, const char *where, const char *what,
                      char **out)
{
    const char *s = NULL;
    int rc = get_string(c, n, where, what, &s);
    if (rc)
        return rc;
    if (!(*out = strdup(s)))
        return oom(c);
    return 0;
}

/* Plain decimal integers only: YAML 1.1's 0x.., 0o.., 010 (octal), 1_000 and
 * 1e3 forms are refused, so a value means the same to every reader. */
enum { INT_OK, INT_SYNTAX, INT_OVERFLOW };

static int parse_int_text(const char *s, int *neg, uint64_t *mag)
{
    *neg = 0;
    if (*s == '-' || *s == '+')
        *neg = *s++ == '-';
    if (!isdigit((unsigned char)*s) || (s[0] == '0' && s[1]))
        return INT_SYNTAX;
    uint64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return INT_SYNTAX;
        unsigned digit = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return INT_OVERFLOW;
        v = v * 10 + digit;
    }
    *mag = v;
    return INT_OK;
}

static const char *uint_phrase(char *buf, size_t size, uint64_t lo, uint64_t hi)
{
    if (hi == UINT64_MAX)
        snprintf(buf, size, "an integer >= %" PRIu64, lo);
    else
        snprintf(buf, size, "an integer in [%" PRIu64 ", %" PRIu64 "]", lo, hi);
    return buf;
}

static int get_uint(struct ctx *c, const yaml_node_t *n, const char *where, uint64_t lo,
                    uint64_t hi, uint64_t *out)
{
    char what[96];
    uint_phrase(what, sizeof what, lo, hi);
    int rc = need_scalar(c, n, where, what);
    if (rc)
        return rc;
    int neg;
    uint64_t mag = 0;
    int r = is_plain(n) ? parse_int_text(sval(n), &neg, &mag) : INT_SYNTAX;
    if (r == INT_SYNTAX)
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    if (r == INT_OVERFLOW || (neg && mag) || mag < lo || mag > hi)
        return fail(c, n, "%s: %s is out of range; expected %s", where, describe(c, n), what);
    *out = mag;
    return 0;
}

static int get_u32(struct ctx *c, const yaml_node_t *n, const char *where, uint32_t lo,
                   uint32_t hi, uint32_t *out)
{
    uint64_t v;
    int rc = get_uint(c, n, where, lo, hi, &v);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

static int get_size(struct ctx *c, const yaml_node_t *n, const char *where, size_t lo,
                    size_t *out)
{
    uint64_t v;
    int rc = get_uint(c, n, where, lo, SIZE_MAX, &v);
    if (!rc)
        *out = (size_t)v;
    return rc;
}

static int get_int(struct ctx *c, const yaml_node_t *n, const char *where, int64_t lo,
                   int64_t hi, int64_t *out)
{
    char what[96];
    snprintf(what, sizeof what, "an integer in [%" PRId64 ", %" PRId64 "]", lo, hi);
    int rc = need_scalar(c, n, where, what);
    if (rc)
        return rc;
    int neg;
    uint64_t mag = 0;
    int r = is_plain(n) ? parse_int_text(sval(n), &neg, &mag) : INT_SYNTAX;
    if (r == INT_SYNTAX)
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    int64_t v = 0;
    if (r == INT_OK && !neg && mag <= (uint64_t)INT64_MAX)
        v = (int64_t)mag;
    else if (r == INT_OK && neg && mag <= (uint64_t)INT64_MAX + 1)
        v = mag ? -(int64_t)(mag - 1) - 1 : 0;
    else
        r = INT_OVERFLOW;
    if (r == INT_OVERFLOW || v < lo || v > hi)
        return fail(c, n, "%s: %s is out of range; expected %s", where, describe(c, n), what);
    *out = v;
    return 0;
}

/* Decimal numbers: 2, -0.5, .5, 1e-3; not YAML's .inf/.nan, nor hex. */
static int real_text_ok(const char *s)
{
    int digits = 0;
    if (*s == '+' || *s == '-')
        s++;
    for (; isdigit((unsigned char)*s); s++)
        digits++;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++)
            digits++;
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!isdigit((unsigned char)*s))
            return 0;
        while (isdigit((unsigned char)*s))
            s++;
    }
    return *s == '\0';
}

/* A finite number within [lo, hi]; an open end (lo_open/hi_open) excludes it. */
static int get_real(struct ctx *c, const yaml_node_t *n, const char *where, const char *what,
                    double lo, int lo_open, double hi, int hi_open, double *out)
{
    int rc = need_scalar(c, n, where, what);
    if (rc)
        return rc;
    if (!is_plain(n) || !real_text_ok(sval(n)))
        return fail(c, n, "%s: expected %s, got %s", where, what, describe(c, n));
    double v = strtod(sval(n), NULL);
    if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi || (hi_open && v == hi))
        return fail(c, n, "%s: %s is out of range; expected %s", where, describe(c, n), what);
    *out = v;
    return 0;
}

/* YAML 1.2 booleans as lshlab writes them: true or false (not yes/no/on/off). */
static int get_bool(struct ctx *c, const yaml_node_t *n, const char *where, int *out)
{
    int rc = need_scalar(c, n, where, "true or false");
    if (rc)
        return rc;
    if (is_plain(n) && !strcmp(sval(n), "true"))
        *out = 1;
    else if (is_plain(n) && !strcmp(sval(n), "false"))
        *out = 0;
    else
        return fail(c, n, "%s: expected true or false, got %s", where, describe(c, n));
    return 0;
}

static size_t count_words(const char *const *words)
{
    size_t n = 0;
    while (words[n])
        n++;
    return n;
}

/* One of the NULL-terminated words; *out is its index. */
static int get_choice(struct ctx *c, const yaml_node_t *n, const char *where,
                      const char *const *words, int *out)
{
    char list[512];
    size_t nw = count_words(words);
    join_words(list, sizeof list, words, nw);
    char what[560];
    snprintf(what, sizeof what, "one of: %s", list);
    int rc = need_scalar(c, n, where, what);
    if (rc)
        return rc;
    for (size_t i = 0; i < nw; i++)
        if (!strcmp(sval(n), words[i])) {
            *out = (int)i;
            return 0;
        }
    const char *near = nearest(sval(n), words, nw);
    if (near)
        return fail(c, n, "%s: %s is not allowed (did you mean '%s'?); expected %s", where,
                    describe(c, n), near, what);
    return fail(c, n, "%s: %s is not allowed; expected %s", where, describe(c, n), what);
}

static void field(char *buf, size_t size, const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(buf, size, "%s.%s", prefix, key);
    else
        snprintf(buf, size, "%s", key);
}

/* ---- duplicates ------------------------------------------------------------ */

struct keyed {
    double num;
    const char *str;
    size_t index;
};

static int cmp_num(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->num != y->num)
        return x->num < y->num ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_str(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    int d = strcmp(x->str, y->str);
    if (d)
        return d;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Is some value given twice?  Returns 1 with the first occurrence and the
 * earliest repetition in the file, 0 if none, -1 when out of memory.  Sorting
 * keeps this n log n for machine-written configs with long lists. */
static int find_dup(const double *nums, const char *const *strs, size_t n, size_t *first,
                    size_t *again)
{
    if (n < 2)
        return 0;
    struct keyed *k = malloc(n * sizeof *k);
    if (!k)
        return -1;
    for (size_t i = 0; i < n; i++) {
        k[i].num = nums ? nums[i] : 0;
        k[i].str = strs ? strs[i] : NULL;
        k[i].index = i;
    }
    qsort(k, n, sizeof *k, nums ? cmp_num : cmp_str);
    int found = 0;
    /* within a run of equal values (sorted by index) the head is the first
     * occurrence and the next one its first repetition */
    for (size_t i = 1; i < n; i++) {
        int same = nums ? k[i].num == k[i - 1].num : !strcmp(k[i].str, k[i - 1].str);
        int head = i == 1 || !(nums ? k[i - 1].num == k[i - 2].num
                                    : !strcmp(k[i - 1].str, k[i - 2].str));
        if (same && head && (!found || k[i].index < *again)) {
            found = 1;
            *first = k[i - 1].index;
            *again = k[i].index;
        }
    }
    free(k);
    return found;
}

/* ---- lists of numbers and words -------------------------------------------- */

enum dup_policy { DUP_ERROR, DUP_SORT_UNIQUE };

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* An integer in [lo, hi] or a list of them.  marks (optional) gets each
 * value's position (owned by the caller); with DUP_SORT_UNIQUE there are no
 * marks. */
static int get_u32_list(struct ctx *c, yaml_node_t *n, const char *where, uint32_t lo,
                        uint32_t hi, enum dup_policy dups, uint32_t **out, size_t *count,
                        struct lsh_mark **marks)
{
    char what[96];
    uint_phrase(what, sizeof what, lo, hi);
    int rc = need_scalar_or_list(c, n, where, what);
    if (rc)
        return rc;
    size_t m = n_items(n);
    uint32_t *v = malloc(m * sizeof *v);
    double *d = malloc(m * sizeof *d);
    struct lsh_mark *mk = malloc(m * sizeof *mk);
    if (!v || !d || !mk) {
        rc = oom(c);
        goto out;
    }
    for (size_t i = 0; i < m; i++) {
        yaml_node_t *it = item(c, n, i);
        if ((rc = get_u32(c, it, where, lo, hi, &v[i])))
            goto out;
        d[i] = v[i];
        mk[i] = mark_of(it);
    }
    if (dups == DUP_ERROR) {
        size_t first, again;
        int found = find_dup(d, NULL, m, &first, &again);
        if (found < 0) {
            rc = oom(c);
            goto out;
        }
        if (found) {
            rc = fail(c, item(c, n, again), "%s: %" PRIu32 " is given twice (first on line %d)",
                      where, v[again], mk[first].line);
            goto out;
        }
    } else {
        qsort(v, m, sizeof *v, cmp_u32);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            if (!u || v[i] != v[u - 1])
                v[u++] = v[i];
        m = u;
    }
    *out = v;
    *count = m;
    v = NULL;
    if (marks && dups == DUP_ERROR) {
        *marks = mk;
        mk = NULL;
    }
out:
    free(v);
    free(d);
    free(mk);
    return rc;
}

/* A word of words[] or a list of them (no repeats): indices into words. */
static int get_choice_list(struct ctx *c, yaml_node_t *n, const char *where,
                           const char *const *words, int **out, size_t *count,
                           struct lsh_mark **marks)
{
    char list[256], what[300];
    join_words(list, sizeof list, words, count_words(words));
    snprintf(what, sizeof what, "one of: %s", list);
    int rc = need_scalar_or_list(c, n, where, what);
    if (rc)
        return rc;
    size_t m = n_items(n);
    int *v = malloc(m * sizeof *v);
    if (!v)
        return oom(c);
    for (size_t i = 0; i < m; i++) {
        if ((rc = get_choice(c, item(c, n, i), where, words, &v[i]))) {
            free(v);
            return rc;
        }
        for (size_t j = 0; j < i; j++)
            if (v[j] == v[i]) {
                rc = fail(c, item(c, n, i), "%s: '%s' is given twice (first on line %d)", where,
                          words[v[i]], line_of(item(c, n, j)));
                free(v);
                return rc;
            }
    }
    if (marks) {
        if (!(*marks = malloc(m * sizeof **marks))) {
            free(v);
            return oom(c);
        }
        for (size_t i = 0; i < m; i++)
            (*marks)[i] = mark_of(item(c, n, i));
    }
    *out = v;
    *count = m;
    return 0;
}

/* ---- words ----------------------------------------------------------------- */

static const char *const experiment_words[] = {"sweep", "collision", NULL};
static const char *const kind_words[] = {"gaussian", "clustered", "hdf5", "npy", NULL};
static const char *const keys_words[] = {"shared", "shared_normalized", "separate", NULL};
static const char *const mode_words[] = {"bucket", "chunked", NULL};
static const char *const window_words[] = {"all", "same_bucket", NULL};
static const char *const combine_words[] = {"union", "rounds", "importance", NULL};
static const char *const dump_words[] = {"data", "buckets", "hash_params", "rows", NULL};

const char *lsh_keys_name(enum lsh_keys k)
{
    return (unsigned)k < 3 ? keys_words[k] : "unknown";
}

const char *lsh_mode_name(enum lsh_mode m)
{
    return (unsigned)m < 2 ? mode_words[m] : "unknown";
}

const char *lsh_window_name(enum lsh_window w)
{
    return (unsigned)w < 2 ? window_words[w] : "unknown";
}

const char *lsh_combine_name(enum lsh_combine c)
{
    return (unsigned)c < 3 ? combine_words[c] : "unknown";
}

const char *lsh_data_kind_name(enum lsh_data_kind k)
{
    return (unsigned)k < 4 ? kind_words[k] : "unknown";
}

/* [A-Za-z0-9_.-]+, not . or ..: names become file names and HDF5 group names. */
static int name_ok(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return 0;
    return 1;
}

/* Names are columns of the results file (LSH_NAME_MAX). */
static int check_name_length(struct ctx *c, const yaml_node_t *n, const char *where)
{
    size_t len = strlen(sval(n));
    if (len > LSH_NAME_MAX)
        return fail(c, n, "%s: %s is %zu characters long; allowed: at most %d", where,
                    describe(c, n), len, LSH_NAME_MAX);
    return 0;
}

static int get_name(struct ctx *c, const yaml_node_t *n, const char *where, char **out)
{
    const char *what = "a name of letters, digits, '_', '.' and '-' (not . or ..)";
    const char *s = NULL;
    int rc = get_string(c, n, where, what, &s);
    if (rc)
        return rc;
    if (!name_ok(s))
        return fail(c, n, "%s: %s is not a valid name; expected %s", where, describe(c, n),
                    what);
    if ((rc = check_name_length(c, n, where)))
        return rc;
    if (!(*out = strdup(s)))
        return oom(c);
    return 0;
}

/* ---- datasets -------------------------------------------------------------- */

static const char *const dataset_keys[] = {"name", "kind", "n", "d", "d_v", "clusters",
                                           "spread", "norm", "file", "q", "k", "v",
                                           "layers", "heads", "reference_rows"};
#define N_DATASET_KEYS (sizeof dataset_keys / sizeof *dataset_keys)

/* Which kinds a dataset key applies to (bit per enum lsh_data_kind). */
static unsigned dataset_key_kinds(const char *key)
{
    const unsigned g = 1u << LSH_DATA_GAUSSIAN, cl = 1u << LSH_DATA_CLUSTERED,
                   h = 1u << LSH_DATA_HDF5, np = 1u << LSH_DATA_NPY;
    if (!strcmp(key, "n") || !strcmp(key, "d"))
        return g | cl;
    if (!strcmp(key, "clusters") || !strcmp(key, "spread") || !strcmp(key, "norm"))
        return cl;
    if (!strcmp(key, "file"))
        return h;
    if (!strcmp(key, "q") || !strcmp(key, "k") || !strcmp(key, "v") || !strcmp(key, "layers") ||
        !strcmp(key, "heads"))
        return h | np;
    return g | cl | h | np;
}

/* A q, k or v path: '{' and '}' only in the placeholders {layer} and {head}. */
static int check_template(struct ctx *c, const yaml_node_t *n, const char *where, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '{' && (!strncmp(p, "{layer}", 7) || !strncmp(p, "{head}", 6))) {
            p = strchr(p, '}');
            continue;
        }
        if (*p == '{' || *p == '}')
            return fail(c, n, "%s: '%s' holds '%c' at character %zu outside a placeholder; "
                        "allowed: the placeholders {layer} and {head} only",
                        where, s, *p, (size_t)(p - s) + 1);
    }
    return 0;
}

/* layers: / heads: -- `all` (the default) or distinct indices, kept ascending. */
static int get_axis(struct ctx *c, yaml_node_t *v, const char *where, uint32_t **out,
                    size_t *count, struct lsh_mark *at)
{
    *at = mark_of(v);
    if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "all"))
        return 0;
    int rc = get_u32_list(c, v, where, 0, LSH_AXIS_MAX - 1, DUP_ERROR, out, count, NULL);
    if (!rc)
        qsort(*out, *count, sizeof **out, cmp_u32);
    return rc;
}

static int parse_dataset(struct ctx *c, yaml_node_t *n, size_t index)
{
    struct lsh_dataset_spec *ds = &c->cfg->datasets[index];
    char where[64], w[96];
    snprintf(where, sizeof where, "datasets[%zu]", index);
    int rc = need_mapping(c, n, where, "a mapping (name, kind, n, d, ...)");
    if (rc || (rc = check_keys(c, n, where, dataset_keys, N_DATASET_KEYS)))
        return rc;
    ds->line = line_of(n);
    ds->column = (int)n->start_mark.column + 1;
    ds->clusters = 16;
    ds->spread = 0.5;
    ds->norm = -1;

    yaml_node_t *v = lookup(c, n, "name", NULL);
    if (!v)
        return fail(c, n, "%s: missing required key 'name'", where);
    field(w, sizeof w, where, "name");
    if ((rc = get_name(c, v, w, &ds->name)))
        return rc;
    for (size_t j = 0; j < index; j++)
        if (!strcmp(c->cfg->datasets[j].name, ds->name))
            return fail(c, v, "%s: dataset name '%s' is used twice (first on line %d)", w,
                        ds->name, c->cfg->datasets[j].line);

    if (!(v = lookup(c, n, "kind", NULL)))
        return fail(c, n, "%s: missing required key 'kind' (gaussian, clustered, hdf5 or npy)",
                    where);
    int kind;
    field(w, sizeof w, where, "kind");
    if ((rc = get_choice(c, v, w, kind_words, &kind)))
        return rc;
    ds->kind = (enum lsh_data_kind)kind;

    /* keys of another kind: say which kind they belong to */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        const char *key = sval(k);
        if (dataset_key_kinds(key) & (1u << ds->kind))
            continue;
        if (ds->kind == LSH_DATA_NPY && !strcmp(key, "file"))
            return fail(c, k, "%s: 'file' is not allowed for kind npy: q, k and v name .npy "
                        "files (relative to the config's folder)", where);
        if (ds->kind == LSH_DATA_HDF5 || ds->kind == LSH_DATA_NPY)
            return fail(c, k, "%s: '%s' is not allowed for kind %s: it comes from the file",
                        where, key, kind_words[ds->kind]);
        if (dataset_key_kinds(key) == 1u << LSH_DATA_CLUSTERED)
            return fail(c, k, "%s: '%s' applies to kind clustered only", where, key);
        if (dataset_key_kinds(key) == 1u << LSH_DATA_HDF5)
            return fail(c, k, "%s: '%s' applies to kind hdf5 only", where, key);
        return fail(c, k, "%s: '%s' applies to kinds hdf5 and npy only", where, key);
    }

    if (ds->kind == LSH_DATA_HDF5 || ds->kind == LSH_DATA_NPY) {
        const int npy = ds->kind == LSH_DATA_NPY;
        static const char *const req[] = {"q", "file"};
        for (size_t i = 0; i < (npy ? 1u : 2u); i++)
            if (!lookup(c, n, req[i], NULL))
                return fail(c, n, "%s: missing required key '%s' for kind %s", where, req[i],
                            kind_words[ds->kind]);
        char **dst[] = {&ds->file, &ds->q, &ds->k, &ds->v};
        static const char *const keys[] = {"file", "q", "k", "v"};
        for (size_t i = 0; i < 4; i++) {
            if (!(v = lookup(c, n, keys[i], NULL)))
                continue;
            field(w, sizeof w, where, keys[i]);
            if ((rc = dup_string(c, v, w,
                                 !i ? "a file path"
                                 : npy ? "a .npy file path (or a template)"
                                       : "an HDF5 dataset path (or a template)",
                                 dst[i])))
                return rc;
            if (i && (rc = check_template(c, v, w, *dst[i])))
                return rc;
        }
        if ((v = lookup(c, n, "layers", NULL))) {
            field(w, sizeof w, where, "layers");
            if ((rc = get_axis(c, v, w, &ds->layers, &ds->n_layers, &ds->layers_at)))
                return rc;
        }
        if ((v = lookup(c, n, "heads", NULL))) {
            field(w, sizeof w, where, "heads");
            if ((rc = get_axis(c, v, w, &ds->heads, &ds->n_heads, &ds->heads_at)))
                return rc;
        }
        if (ds->n_layers && ds->n_heads && ds->n_layers * ds->n_heads > LSH_UNITS_MAX)
            return fail(c, v, "%s: %zu layers x %zu heads = %zu problems; allowed: at most %zu",
                        w, ds->n_layers, ds->n_heads, ds->n_layers * ds->n_heads, LSH_UNITS_MAX);
        yaml_node_t *k = key_of(c, n, "d_v");
        if (k && ds->v)
            return fail(c, k, "%s: 'd_v' is not allowed when 'v' is given: it comes from the "
                        "file", where);
    } else {
        static const char *const req[] = {"n", "d"};
        size_t *dst[] = {&ds->n, &ds->d};
        for (size_t i = 0; i < 2; i++) {
            if (!(v = lookup(c, n, req[i], NULL)))
                return fail(c, n, "%s: missing required key '%s' for kind %s", where, req[i],
                            kind_words[ds->kind]);
            field(w, sizeof w, where, req[i]);
            if ((rc = get_size(c, v, w, 1, dst[i])))
                return rc;
        }
    }
    if ((v = lookup(c, n, "d_v", NULL))) {
        field(w, sizeof w, where, "d_v");
        if ((rc = get_size(c, v, w, 1, &ds->d_v)))
            return rc;
    }
    if ((v = lookup(c, n, "clusters", NULL))) {
        field(w, sizeof w, where, "clusters");
        if ((rc = get_size(c, v, w, 1, &ds->clusters)))
            return rc;
    }
    if ((v = lookup(c, n, "spread", NULL))) {
        field(w, sizeof w, where, "spread");
        if ((rc = get_real(c, v, w, "a number >= 0", 0, 0, HUGE_VAL, 0, &ds->spread)))
            return rc;
    }
    if ((v = lookup(c, n, "norm", NULL))) {
        field(w, sizeof w, where, "norm");
        if ((rc = get_real(c, v, w, "a number > 0", 0, 1, HUGE_VAL, 0, &ds->norm)))
            return rc;
    }
    if ((v = lookup(c, n, "reference_rows", NULL))) {
        field(w, sizeof w, where, "reference_rows");
        /* `all` is the default spelled out (lsh_config_resolved_yaml writes it) */
        if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "all"))
            ds->reference_rows = 0;
        else if ((rc = get_size(c, v, w, 1, &ds->reference_rows)))
            return rc;
        ds->reference_rows_at = mark_of(v); /* plan.c checks it against n */
    }
    return 0;
}

static int parse_datasets(struct ctx *c, yaml_node_t *n)
{
    int rc = need_list(c, n, "datasets", "a list of datasets", 0);
    if (rc)
        return rc;
    size_t m = seq_len(n);
    if (!(c->cfg->datasets = calloc(m, sizeof *c->cfg->datasets)))
        return oom(c);
    c->cfg->n_datasets = m;
    for (size_t i = 0; i < m; i++)
        if ((rc = parse_dataset(c, seq_item(c, n, i), i)))
            return rc;
    return 0;
}

/* ---- attention ------------------------------------------------------------- */

static const char *const attention_keys[] = {"keys", "exclude_self", "causal", "scale", "topk",
                                             "oracle"};

static int parse_attention(struct ctx *c, yaml_node_t *n)
{
    struct lsh_attention *a = &c->cfg->attention;
    int rc;
    yaml_node_t *v;
    if (n) {
        if ((rc = need_mapping(c, n, "attention", "a mapping (keys, exclude_self, causal, "
                                                  "scale, topk, oracle)")) ||
            (rc = check_keys(c, n, "attention", attention_keys, 6)))
            return rc;
        int keys;
        if ((v = lookup(c, n, "keys", NULL))) {
            if ((rc = get_choice(c, v, "attention.keys", keys_words, &keys)))
                return rc;
            a->keys = (enum lsh_keys)keys;
        }
    }
    a->exclude_self = a->keys != LSH_KEYS_SEPARATE;
    a->scale_auto = 1;
    if (n && (v = lookup(c, n, "exclude_self", NULL)) &&
        (rc = get_bool(c, v, "attention.exclude_self", &a->exclude_self)))
        return rc;
    if (n && (v = lookup(c, n, "causal", NULL)) &&
        (rc = get_bool(c, v, "attention.causal", &a->causal)))
        return rc;
    if (n && (v = lookup(c, n, "scale", NULL))) {
        if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "auto"))
            a->scale_auto = 1;
        else if ((rc = get_real(c, v, "attention.scale", "auto or a number > 0", 0, 1,
                                HUGE_VAL, 0, &a->scale)))
            return rc;
        else
            a->scale_auto = 0;
    }
    if (n && (v = lookup(c, n, "oracle", NULL)) &&
        (rc = get_bool(c, v, "attention.oracle", &a->oracle)))
        return rc;
    if (n && (v = lookup(c, n, "topk", NULL))) {
        if ((rc = get_u32_list(c, v, "attention.topk", 1, UINT32_MAX, DUP_SORT_UNIQUE, &a->topk,
                               &a->n_topk, NULL)))
            return rc;
        if (a->n_topk > LSH_TOPK_MAX)
            return fail(c, v, "attention.topk: %zu different values; allowed: at most %d",
                        a->n_topk, LSH_TOPK_MAX);
        return 0;
    }
    if (!(a->topk = malloc(2 * sizeof *a->topk)))
        return oom(c);
    a->topk[0] = 1;
    a->topk[1] = 10;
    a->n_topk = 2;
    return 0;
}

/* ---- strategies ------------------------------------------------------------ */

static size_t n_schema(const struct lsh_strategy *s)
{
    size_t n = 0;
    if (s->params)
        while (s->params[n].type != LSH_PARAM_END)
            n++;
    return n;
}

/* %g, but whole numbers in full ("65536", not "65536" vs "6.5536e+04"). */
static void fmt_bound(char *buf, size_t size, double x)
{
    if (x == floor(x) && fabs(x) < 1e15)
        snprintf(buf, size, "%.0f", x);
    else
        snprintf(buf, size, "%g", x);
}

static int64_t bound_to_i64(double x, int up)
{
    if (x <= -9.2e18)
        return INT64_MIN;
    if (x >= 9.2e18)
        return INT64_MAX;
    return (int64_t)(up ? ceil(x) : floor(x));
}

/* The values given for one schema parameter, in the order given. */
struct pvalues {
    size_t n;
    struct lsh_param_value *v;   /* INT_LIST lists owned here */
    yaml_node_t **nodes;         /* where each value stands (NULL: the default) */
};

static void pvalues_fini(struct pvalues *pv)
{
    for (size_t i = 0; i < pv->n; i++)
        if (pv->v[i].type == LSH_PARAM_INT_LIST)
            free((void *)pv->v[i].list);
    free(pv->v);
    free(pv->nodes);
}

/* A string form of one value: canonical (no spaces) or YAML (choices quoted
 * when needed). */
struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->failed = 1;
            return;
        }
        if (b->p && (size_t)w < b->cap - b->len) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)w + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A string is written plain when every YAML reader takes it as that string;
 * otherwise double-quoted. */
static int plain_safe(const char *s)
{
    static const char *const reserved[] = {"y", "n", "yes", "no", "true", "false", "on",
                                           "off", "null"};
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-+/", *p))
            return 0;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (!strcasecmp(s, reserved[i]))
            return 0;
    return 1;
}

static void put_str(struct buf *b, const char *s)
{
    if (plain_safe(s)) {
        put(b, "%s", s);
        return;
    }
    put(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(b, "\\%c", *p);
        else if (*p == '\n')
            put(b, "\\n");
        else if (*p == '\t')
            put(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            put(b, "\\x%02x", *p);
        else
            put(b, "%c", *p);
    }
    put(b, "\"");
}

static void put_value(struct buf *b, const struct lsh_param_value *v, int yaml)
{
    switch (v->type) {
    case LSH_PARAM_BOOL:
        put(b, "%s", v->i ? "true" : "false");
        break;
    case LSH_PARAM_INT:
        put(b, "%" PRId64, v->i);
        break;
    case LSH_PARAM_REAL:
        put(b, "%.17g", v->r);
        break;
    case LSH_PARAM_CHOICE:
        if (yaml)
            put_str(b, v->choice);
        else
            put(b, "%s", v->choice);
        break;
    case LSH_PARAM_INT_LIST:
        put(b, "[");
        for (size_t i = 0; i < v->list_len; i++)
            put(b, "%s%" PRId64, i ? (yaml ? ", " : ",") : "", v->list[i]);
        put(b, "]");
        break;
    case LSH_PARAM_END:
        break;
    }
}

/* One value of parameter p (a scalar, or for INT_LIST a flat list). */
static int param_value(struct ctx *c, const struct lsh_param *p, yaml_node_t *n,
                       const char *where, struct lsh_param_value *out)
{
    char lo[32], hi[32], what[96];
    fmt_bound(lo, sizeof lo, p->min);
    fmt_bound(hi, sizeof hi, p->max);
    memset(out, 0, sizeof *out);
    out->type = p->type;
    int b, rc;
    switch (p->type) {
    case LSH_PARAM_BOOL:
        if ((rc = get_bool(c, n, where, &b)))
            return rc;
        out->i = b;
        return 0;
    case LSH_PARAM_INT:
        return get_int(c, n, where, bound_to_i64(p->min, 1), bound_to_i64(p->max, 0), &out->i);
    case LSH_PARAM_REAL:
        snprintf(what, sizeof what, "a finite number in [%s, %s]", lo, hi);
        return get_real(c, n, where, what, p->min, 0, p->max, 0, &out->r);
    case LSH_PARAM_CHOICE:
        if ((rc = get_choice(c, n, where, p->choices, &b)))
            return rc;
        out->choice = p->choices[b];
        return 0;
    case LSH_PARAM_INT_LIST: {
        snprintf(what, sizeof what, "a list of integers in [%s, %s]", lo, hi);
        if ((rc = need_list(c, n, where, what, 1)))
            return rc;
        size_t m = seq_len(n);
        int64_t *list = m ? malloc(m * sizeof *list) : NULL;
        if (m && !list)
            return oom(c);
        for (size_t i = 0; i < m; i++)
            if ((rc = get_int(c, seq_item(c, n, i), where, bound_to_i64(p->min, 1),
                              bound_to_i64(p->max, 0), &list[i]))) {
                free(list);
                return rc;
            }
        out->list = list;
        out->list_len = m;
        return 0;
    }
    case LSH_PARAM_END:
        break;
    }
    return lsh_error_set(c->err, LSH_EPLUGIN, "parameter '%s': unknown type %d", p->name,
                         (int)p->type);
}

static void param_default(const struct lsh_param *p, struct lsh_param_value *out)
{
    memset(out, 0, sizeof *out);
    out->type = p->type;
    out->i = p->def_int;
    out->r = p->def_real;
    out->choice = p->def_choice;
    /* point into choices[] as a parsed value would */
    if (p->type == LSH_PARAM_CHOICE && p->choices && p->def_choice)
        for (size_t i = 0; p->choices[i]; i++)
            if (!strcmp(p->choices[i], p->def_choice))
                out->choice = p->choices[i];
}

/* The list of values of parameter p: the default, one value, or a swept list. */
static int param_values(struct ctx *c, const struct lsh_param *p, yaml_node_t *n,
                        const char *where, struct pvalues *pv)
{
    size_t m = 1;
    int sweep = 0;
    if (n && p->type == LSH_PARAM_INT_LIST) {
        /* a flat list is one value; a list of lists is swept */
        sweep = n->type == YAML_SEQUENCE_NODE && seq_len(n) &&
                seq_item(c, n, 0)->type == YAML_SEQUENCE_NODE;
    } else if (n) {
        int rc = need_scalar_or_list(c, n, where, "a value");
        if (rc)
            return rc;
        sweep = n->type == YAML_SEQUENCE_NODE;
    }
    if (sweep)
        m = seq_len(n);
    pv->v = calloc(m, sizeof *pv->v);
    pv->nodes = calloc(m, sizeof *pv->nodes);
    if (!pv->v || !pv->nodes)
        return oom(c);
    if (!n) {
        param_default(p, &pv->v[0]);
        pv->n = 1;
        return 0;
    }
    for (size_t i = 0; i < m; i++) {
        yaml_node_t *it = sweep ? seq_item(c, n, i) : n;
        int rc = param_value(c, p, it, where, &pv->v[i]);
        if (rc)
            return rc;
        pv->nodes[i] = it;
        pv->n = i + 1;
    }
    /* a value given twice would make two identical points */
    char **strs = calloc(m, sizeof *strs);
    if (!strs)
        return oom(c);
    int rc = 0;
    for (size_t i = 0; i < m && !rc; i++) {
        struct buf b = {0};
        put_value(&b, &pv->v[i], 0);
        if (b.failed) {
            free(b.p);
            rc = oom(c);
        } else {
            strs[i] = b.p;
        }
    }
    size_t first, again;
    int found = rc ? 0 : find_dup(NULL, (const char *const *)strs, m, &first, &again);
    if (found < 0)
        rc = oom(c);
    else if (found)
        rc = fail(c, pv->nodes[again], "%s: the value %s is given twice (first on line %d)",
                  where, strs[again], line_of(pv->nodes[first]));
    for (size_t i = 0; i < m; i++)
        free(strs[i]);
    free(strs);
    return rc;
}

static void free_set(struct lsh_param_set *set)
{
    if (set->values)
        for (size_t i = 0; i < set->n_params; i++)
            if (set->values[i].type == LSH_PARAM_INT_LIST)
                free((void *)set->values[i].list);
    free(set->values);
    free(set->canonical);
}

static int expand_sets(struct ctx *c, struct lsh_strategy_spec *ss, const struct lsh_param *schema,
                       struct pvalues *pv, size_t np, const yaml_node_t *at)
{
    size_t total = 1;
    for (size_t p = 0; p < np; p++) {
        if (pv[p].n > MAX_PARAM_SETS / total)
            return fail(c, at, "strategy '%s': more than %zu parameter combinations", ss->name,
                        MAX_PARAM_SETS);
        total *= pv[p].n;
    }
    if (!(ss->sets = calloc(total, sizeof *ss->sets)))
        return oom(c);
    ss->n_sets = total;
    for (size_t s = 0; s < total; s++) {
        struct lsh_param_set *set = &ss->sets[s];
        if (np && !(set->values = calloc(np, sizeof *set->values)))
            return oom(c);
        set->n_params = np;
        /* the last parameter varies fastest: the first is outermost */
        size_t rem = s;
        for (size_t p = np; p-- > 0;) {
            const struct lsh_param_value *src = &pv[p].v[rem % pv[p].n];
            rem /= pv[p].n;
            set->values[p] = *src;
            if (src->type == LSH_PARAM_INT_LIST) {
                set->values[p].list = NULL;
                if (src->list_len) {
                    int64_t *copy = malloc(src->list_len * sizeof *copy);
                    if (!copy)
                        return oom(c);
                    memcpy(copy, src->list, src->list_len * sizeof *copy);
                    set->values[p].list = copy;
                }
            }
        }
        /* Trailing BOOL parameters at false, their default, are left out: a
         * flag appended to a schema (kmeans balanced) keeps the canonical
         * text, and with it the seeds and /runs keys, of every existing set. */
        size_t shown = np;
        while (shown > 0 && schema[shown - 1].type == LSH_PARAM_BOOL &&
               schema[shown - 1].def_int == 0 && set->values[shown - 1].i == 0)
            shown--;
        struct buf b = {0};
        put(&b, "%s", "");
        for (size_t p = 0; p < shown; p++) {
            put(&b, "%s%s=", p ? "," : "", schema[p].name);
            put_value(&b, &set->values[p], 0);
        }
        if (b.failed) {
            free(b.p);
            return oom(c);
        }
        set->canonical = b.p;
        if (b.len > LSH_PARAMS_MAX)
            return fail(c, at, "strategy '%s': the parameter set '%.60s...' is %zu characters "
                        "long as the results file writes it; allowed: at most %d", ss->name,
                        b.p, b.len, LSH_PARAMS_MAX);
    }
    return 0;
}

static const char *const strategy_keys[] = {"name", "skip_invalid", "params"};

static int unknown_strategy(struct ctx *c, const yaml_node_t *n, const char *where,
                            const char *name)
{
    size_t count = lsh_registry_count(c->reg);
    const char **names = malloc((count ? count : 1) * sizeof *names);
    if (!names)
        return oom(c);
    for (size_t i = 0; i < count; i++)
        names[i] = lsh_registry_get(c->reg, i)->name;
    char list[512];
    join_words(list, sizeof list, names, count);
    const char *near = nearest(name, names, count);
    const char *gone = lsh_registry_missing_folder(c->reg);
    char why[300] = "";
    if (gone)
        snprintf(why, sizeof why, "; LSHLAB_STRATEGY_PATH names the folder '%.200s', which does "
                 "not exist", gone);
    int rc;
    if (near)
        rc = fail(c, n, "%s: unknown strategy '%s'; did you mean '%s'? (available: %s)%s", where,
                  name, near, list, why);
    else
        rc = fail(c, n, "%s: unknown strategy '%s'; available: %s%s", where, name,
                  count ? list : "none (no plugins loaded)", why);
    free(names);
    return rc;
}

static int parse_params(struct ctx *c, struct lsh_strategy_spec *ss, yaml_node_t *n,
                        const yaml_node_t *entry, const char *where)
{
    const struct lsh_param *schema = ss->strategy->params;
    size_t np = n_schema(ss->strategy);
    char w[160];
    int rc = 0; /* the loop below reads it also when there is no params: block */
    if (n) {
        field(w, sizeof w, where, "params");
        if ((rc = need_mapping(c, n, w, "a mapping of parameter names to values")))
            return rc;
        if (np == 0 && n->data.mapping.pairs.top > n->data.mapping.pairs.start)
            return fail(c, node_at(c, n->data.mapping.pairs.start->key),
                        "%s: strategy '%s' has no parameters", w, ss->name);
        const char **names = malloc((np ? np : 1) * sizeof *names);
        if (!names)
            return oom(c);
        for (size_t p = 0; p < np; p++)
            names[p] = schema[p].name;
        char in[200];
        snprintf(in, sizeof in, "the params of strategy '%s'", ss->name);
        rc = check_keys(c, n, in, names, np);
        free(names);
        if (rc)
            return rc;
    }
    struct pvalues *pv = calloc(np ? np : 1, sizeof *pv);
    if (!pv)
        return oom(c);
    for (size_t p = 0; p < np && !rc; p++) {
        snprintf(w, sizeof w, "%s.params.%s", where, schema[p].name);
        rc = param_values(c, &schema[p], n ? lookup(c, n, schema[p].name, NULL) : NULL, w,
                          &pv[p]);
    }
    if (!rc)
        rc = expand_sets(c, ss, schema, pv, np, n ? n : entry);
    for (size_t p = 0; p < np; p++)
        pvalues_fini(&pv[p]);
    free(pv);
    return rc;
}

static int parse_strategy(struct ctx *c, yaml_node_t *n, size_t index)
{
    struct lsh_strategy_spec *ss = &c->cfg->strategies[index];
    char where[64], w[96];
    snprintf(where, sizeof where, "strategies[%zu]", index);
    int rc = need_mapping(c, n, where, "a mapping (name, skip_invalid, params)");
    if (rc || (rc = check_keys(c, n, where, strategy_keys, 3)))
        return rc;
    ss->line = line_of(n);
    ss->column = (int)n->start_mark.column + 1;
    yaml_node_t *v = lookup(c, n, "name", NULL);
    if (!v)
        return fail(c, n, "%s: missing required key 'name'", where);
    field(w, sizeof w, where, "name");
    if ((rc = dup_string(c, v, w, "a strategy name", &ss->name)))
        return rc;
    if (!(ss->strategy = lsh_registry_find(c->reg, ss->name)))
        return unknown_strategy(c, v, w, ss->name);
    if ((rc = check_name_length(c, v, w)))
        return rc;
    if ((v = lookup(c, n, "skip_invalid", NULL))) {
        field(w, sizeof w, where, "skip_invalid");
        if ((rc = get_bool(c, v, w, &ss->skip_invalid)))
            return rc;
    }
    return parse_params(c, ss, lookup(c, n, "params", NULL), n, where);
}

struct set_ref {
    const char *name, *canonical;
    size_t entry;
};

static int cmp_set_ref(const void *a, const void *b)
{
    const struct set_ref *x = a, *y = b;
    int d = strcmp(x->name, y->name);
    if (!d)
        d = strcmp(x->canonical, y->canonical);
    if (!d)
        d = x->entry < y->entry ? -1 : x->entry > y->entry;
    return d;
}

/* The same strategy may be listed twice, but not with a common parameter set:
 * that would run the same points (same seeds) twice. */
static int check_repeated_sets(struct ctx *c)
{
    const struct lsh_config *cfg = c->cfg;
    size_t total = 0;
    for (size_t i = 0; i < cfg->n_strategies; i++)
        total += cfg->strategies[i].n_sets;
    if (cfg->n_strategies < 2)
        return 0;
    struct set_ref *r = malloc(total * sizeof *r);
    if (!r)
        return oom(c);
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_strategies; i++)
        for (size_t s = 0; s < cfg->strategies[i].n_sets; s++)
            r[k++] = (struct set_ref){cfg->strategies[i].name,
                                      cfg->strategies[i].sets[s].canonical, i};
    qsort(r, total, sizeof *r, cmp_set_ref);
    int rc = 0;
    for (size_t i = 1; i < total && !rc; i++)
        if (!strcmp(r[i].name, r[i - 1].name) && !strcmp(r[i].canonical, r[i - 1].canonical)) {
            const struct lsh_strategy_spec *ss = &cfg->strategies[r[i].entry];
            const struct lsh_strategy_spec *s0 = &cfg->strategies[r[i - 1].entry];
            rc = fail_mark(c, (yaml_mark_t){0, (size_t)ss->line - 1, (size_t)ss->column - 1},
                           "strategies[%zu]: strategy '%s' with parameters '%s' is already "
                           "listed on line %d", r[i].entry, ss->name, r[i].canonical, s0->line);
        }
    free(r);
    return rc;
}

static int parse_strategies(struct ctx *c, yaml_node_t *n)
{
    int rc = need_list(c, n, "strategies", "a list of strategies", 0);
    if (rc)
        return rc;
    if (!c->reg)
        return lsh_error_set(c->err, LSH_EINVAL, "no strategy registry to check the "
                                                 "strategies against");
    size_t m = seq_len(n);
    if (!(c->cfg->strategies = calloc(m, sizeof *c->cfg->strategies)))
        return oom(c);
    c->cfg->n_strategies = m;
    for (size_t i = 0; i < m; i++)
        if ((rc = parse_strategy(c, seq_item(c, n, i), i)))
            return rc;
    return check_repeated_sets(c);
}

/* ---- sweep ----------------------------------------------------------------- */

static const char *const sweep_keys[] = {"n_hashes", "n_buckets", "mode", "chunk_size",
                                         "look_back", "window", "combine", "min_collisions",
                                         "sink", "local"};
#define N_SWEEP_KEYS (sizeof sweep_keys / sizeof *sweep_keys)

static int u32_default(struct ctx *c, uint32_t **out, size_t *n, uint32_t value)
{
    if (!(*out = malloc(sizeof **out)))
        return oom(c);
    **out = value;
    *n = 1;
    return 0;
}

static int set_modes(struct ctx *c, yaml_node_t *n, struct lsh_sweep *s)
{
    int *idx = NULL;
    size_t m = 1;
    if (n) {
        int rc = get_choice_list(c, n, "sweep.mode", mode_words, &idx, &m, NULL);
        if (rc)
            return rc;
    }
    if (!(s->mode = malloc(m * sizeof *s->mode))) {
        free(idx);
        return oom(c);
    }
    for (size_t i = 0; i < m; i++)
        s->mode[i] = idx ? (enum lsh_mode)idx[i] : LSH_MODE_BUCKET;
    s->n_mode = m;
    free(idx);
    return 0;
}

static int set_windows(struct ctx *c, yaml_node_t *n, struct lsh_sweep *s)
{
    int *idx = NULL;
    size_t m = 1;
    if (n) {
        int rc = get_choice_list(c, n, "sweep.window", window_words, &idx, &m, NULL);
        if (rc)
            return rc;
    }
    if (!(s->window = malloc(m * sizeof *s->window))) {
        free(idx);
        return oom(c);
    }
    for (size_t i = 0; i < m; i++)
        s->window[i] = idx ? (enum lsh_window)idx[i] : LSH_WINDOW_ALL;
    s->n_window = m;
    free(idx);
    return 0;
}

static int set_combines(struct ctx *c, yaml_node_t *n, struct lsh_sweep *s)
{
    int *idx = NULL;
    size_t m = 1;
    if (n) {
        int rc = get_choice_list(c, n, "sweep.combine", combine_words, &idx, &m,
                                 &s->combine_marks);
        if (rc)
            return rc;
    }
    if (!(s->combine = malloc(m * sizeof *s->combine))) {
        free(idx);
        return oom(c);
    }
    for (size_t i = 0; i < m; i++)
        s->combine[i] = idx ? (enum lsh_combine)idx[i] : LSH_COMBINE_UNION;
    s->n_combine = m;
    free(idx);
    return 0;
}

/* A candidate rule of SPEC 13 (min_collisions, sink, local): an integer in
 * [lo, hi] or a list of them (no repeats, in the order given), default dflt. */
static int set_rule(struct ctx *c, yaml_node_t *sweep, const char *key, uint32_t lo,
                    uint32_t hi, uint32_t dflt, uint32_t **out, size_t *count,
                    struct lsh_mark **marks)
{
    yaml_node_t *v = lookup(c, sweep, key, NULL);
    if (!v)
        return u32_default(c, out, count, dflt);
    char where[32];
    snprintf(where, sizeof where, "sweep.%s", key);
    return get_u32_list(c, v, where, lo, hi, DUP_ERROR, out, count, marks);
}

/* The index of the first value of a rule list other than its neutral one, or n. */
static size_t first_other(const uint32_t *v, size_t n, uint32_t neutral)
{
    size_t i = 0;
    while (i < n && v[i] == neutral)
        i++;
    return i;
}

/* combine rounds is defined only with min_collisions 1, sink 0 and local 0
 * (SPEC 13); combine importance only in bucket mode (SPEC 14).  Whether a
 * strategy publishes the law importance needs is checked by the plan, which
 * knows each dataset's d. */
static int check_combines(struct ctx *c, yaml_node_t *sweep, const struct lsh_sweep *s)
{
    for (size_t k = 0; k < s->n_combine; k++) {
        const struct lsh_mark cm = s->combine_marks ? s->combine_marks[k] : (struct lsh_mark){0, 0};
        if (s->combine[k] == LSH_COMBINE_ROUNDS) {
            const struct {
                const char *key;
                const uint32_t *v;
                size_t n;
                const struct lsh_mark *marks;
                uint32_t neutral;
            } rules[] = {
                {"min_collisions", s->min_collisions, s->n_min_collisions,
                 s->min_collisions_marks, 1},
                {"sink", s->sink, s->n_sink, s->sink_marks, 0},
                {"local", s->local, s->n_local, s->local_marks, 0},
            };
            for (size_t r = 0; r < 3; r++) {
                const size_t i = first_other(rules[r].v, rules[r].n, rules[r].neutral);
                if (i == rules[r].n)
                    continue;
                const struct lsh_mark at = rules[r].marks[i];
                return fail_mark(c, (yaml_mark_t){.line = (size_t)at.line - 1,
                                                  .column = (size_t)at.column - 1},
                                 "sweep.%s: %" PRIu32 " cannot be swept with sweep.combine: "
                                 "rounds (line %d, column %d): combine rounds is defined only "
                                 "with min_collisions 1, sink 0 and local 0 (docs/definitions.md section 4); allowed: "
                                 "use combine union or importance with this rule, or sweep "
                                 "rounds in a config of its own",
                                 rules[r].key, rules[r].v[i], cm.line, cm.column);
            }
        }
        if (s->combine[k] == LSH_COMBINE_IMPORTANCE)
            for (size_t m = 0; m < s->n_mode; m++)
                if (s->mode[m] == LSH_MODE_CHUNKED)
                    return fail_mark(c, (yaml_mark_t){.line = (size_t)cm.line - 1,
                                                      .column = (size_t)cm.column - 1},
                                     "sweep.combine: importance cannot be swept with "
                                     "sweep.mode: chunked (line %d, column %d): importance "
                                     "weights are defined in bucket mode only (docs/definitions.md section 5); "
                                     "allowed: mode bucket, or combine union or rounds",
                                     s->chunked_at.line, s->chunked_at.column);
    }
    (void)sweep;
    return 0;
}

/* a x b, or SIZE_MAX when that does not fit */
static size_t mul_sat(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* Every point is an entry of the plan and a row of the results: their
 * number is bounded (LSH_POINTS_MAX) before anything is expanded.  Counted
 * as plan.c and collision.c expand them. */
static int check_point_count(struct ctx *c, const yaml_node_t *sweep_node)
{
    const struct lsh_config *cfg = c->cfg;
    const struct lsh_sweep *s = &cfg->sweep;
    size_t sets = 0;
    for (size_t i = 0; i < cfg->n_strategies; i++)
        sets += cfg->strategies[i].n_sets; /* each <= MAX_PARAM_SETS: no overflow */
    size_t total = mul_sat(mul_sat(sets, s->n_n_buckets), s->n_n_hashes);
    const char *factors;
    if (cfg->experiment == LSH_EXPERIMENT_COLLISION) {
        total = mul_sat(total, cfg->collision.n_angles);
        factors = "parameter sets x n_buckets x n_hashes x angles";
    } else {
        size_t modes = 0;
        for (size_t i = 0; i < s->n_mode; i++)
            modes += s->mode[i] == LSH_MODE_BUCKET
                         ? 1 : mul_sat(mul_sat(s->n_chunk_size, s->n_look_back), s->n_window);
        const size_t rules = mul_sat(mul_sat(s->n_min_collisions, s->n_sink), s->n_local);
        total = mul_sat(mul_sat(mul_sat(total, modes), s->n_combine),
                        mul_sat(cfg->n_datasets, cfg->repeats));
        total = mul_sat(total, rules);
        factors = "datasets x parameter sets x n_buckets x repeats x mode settings x "
                  "min_collisions x sink x local x n_hashes x combine";
    }
    if (total <= LSH_POINTS_MAX)
        return 0;
    char count[48];
    if (total == SIZE_MAX)
        snprintf(count, sizeof count, "more than %zu", SIZE_MAX - 1);
    else
        snprintf(count, sizeof count, "%zu", total);
    return fail(c, sweep_node, "the sweep is too large: it expands to %s points (%s); "
                "allowed: at most %zu", count, factors, LSH_POINTS_MAX);
}

static int parse_sweep(struct ctx *c, yaml_node_t *n)
{
    struct lsh_sweep *s = &c->cfg->sweep;
    int rc;
    if ((rc = need_mapping(c, n, "sweep", "a mapping (n_hashes, n_buckets, mode, ...)")) ||
        (rc = check_keys(c, n, "sweep", sweep_keys, N_SWEEP_KEYS)))
        return rc;
    if (c->cfg->experiment == LSH_EXPERIMENT_COLLISION)
        for (size_t i = 2; i < N_SWEEP_KEYS; i++) {
            yaml_node_t *k = key_of(c, n, sweep_keys[i]);
            if (k)
                return fail(c, k, "sweep: '%s' does not apply to experiment collision "
                            "(only n_hashes and n_buckets do)", sweep_keys[i]);
        }
    yaml_node_t *v;
    if ((v = lookup(c, n, "n_hashes", NULL)))
        rc = get_u32_list(c, v, "sweep.n_hashes", 1, LSH_N_HASHES_MAX, DUP_SORT_UNIQUE,
                          &s->n_hashes, &s->n_n_hashes, NULL);
    else
        rc = u32_default(c, &s->n_hashes, &s->n_n_hashes, 1);
    if (rc)
        return rc;
    if (!(v = lookup(c, n, "n_buckets", NULL)))
        return fail(c, n, "sweep: missing required key 'n_buckets'");
    if ((rc = get_u32_list(c, v, "sweep.n_buckets", 1, UINT32_MAX, DUP_ERROR, &s->n_buckets,
                           &s->n_n_buckets, &s->n_buckets_marks)))
        return rc;
    yaml_node_t *mode_node = lookup(c, n, "mode", NULL);
    if ((rc = set_modes(c, mode_node, s)))
        return rc;
    for (size_t i = 0; i < s->n_mode; i++) /* plan.c checks chunk_size against n there */
        if (s->mode[i] == LSH_MODE_CHUNKED)
            s->chunked_at = mark_of(item(c, mode_node, i));
    yaml_node_t *chunk_node = lookup(c, n, "chunk_size", NULL);
    if (chunk_node)
        rc = get_u32_list(c, chunk_node, "sweep.chunk_size", 1, UINT32_MAX, DUP_ERROR,
                          &s->chunk_size, &s->n_chunk_size, &s->chunk_size_marks);
    else
        rc = u32_default(c, &s->chunk_size, &s->n_chunk_size, 64);
    if (rc)
        return rc;
    if ((v = lookup(c, n, "look_back", NULL)))
        rc = get_u32_list(c, v, "sweep.look_back", 0, LSH_LOOK_BACK_MAX, DUP_ERROR,
                          &s->look_back, &s->n_look_back, NULL);
    else
        rc = u32_default(c, &s->look_back, &s->n_look_back, 1);
    if (rc || (rc = set_windows(c, lookup(c, n, "window", NULL), s)) ||
        (rc = set_combines(c, lookup(c, n, "combine", NULL), s)) ||
        (rc = set_rule(c, n, "min_collisions", 1, LSH_N_HASHES_MAX, 1, &s->min_collisions,
                       &s->n_min_collisions, &s->min_collisions_marks)) ||
        (rc = set_rule(c, n, "sink", 0, (uint32_t)LSH_ROWS_MAX, 0, &s->sink, &s->n_sink,
                       &s->sink_marks)) ||
        (rc = set_rule(c, n, "local", 0, (uint32_t)LSH_ROWS_MAX, 0, &s->local, &s->n_local,
                       &s->local_marks)) ||
        (rc = check_combines(c, n, s)))
        return rc;
    return check_point_count(c, n);
}

/* ---- collision ------------------------------------------------------------- */

static const char *const collision_keys[] = {"d", "angles", "pairs"};

static int parse_collision(struct ctx *c, yaml_node_t *n)
{
    struct lsh_collision_spec *col = &c->cfg->collision;
    int rc;
    if ((rc = need_mapping(c, n, "collision", "a mapping (d, angles, pairs)")) ||
        (rc = check_keys(c, n, "collision", collision_keys, 3)))
        return rc;
    for (size_t i = 0; i < 3; i++)
        if (!lookup(c, n, collision_keys[i], NULL))
            return fail(c, n, "collision: missing required key '%s'", collision_keys[i]);
    /* a vector at an angle from x needs a second dimension */
    yaml_node_t *pairs = lookup(c, n, "pairs", NULL);
    if ((rc = get_size(c, lookup(c, n, "d", NULL), "collision.d", 2, &col->d)) ||
        (rc = get_size(c, pairs, "collision.pairs", 1, &col->pairs)))
        return rc;
    col->pairs_at = mark_of(pairs);
    if (col->pairs > SIZE_MAX / 2 / col->d / sizeof(double))
        return fail(c, pairs, "collision.pairs: %zu pairs of %zu numbers are more than memory "
                    "can address (2 x pairs x d x 8 bytes); allowed: at most %zu for this d",
                    col->pairs, col->d, SIZE_MAX / 2 / col->d / sizeof(double));
    yaml_node_t *v = lookup(c, n, "angles", NULL);
    const char *what = "an angle in degrees in (0, 180]";
    if ((rc = need_scalar_or_list(c, v, "collision.angles", what)))
        return rc;
    size_t m = n_items(v);
    if (!(col->angles = malloc(m * sizeof *col->angles)))
        return oom(c);
    col->n_angles = m;
    for (size_t i = 0; i < m; i++)
        if ((rc = get_real(c, item(c, v, i), "collision.angles", what, 0, 1, 180, 0,
                           &col->angles[i])))
            return rc;
    size_t first, again;
    int found = find_dup(col->angles, NULL, m, &first, &again);
    if (found < 0)
        return oom(c);
    if (found)
        return fail(c, item(c, v, again), "collision.angles: %g is given twice (first on line "
                    "%d)", col->angles[again], line_of(item(c, v, first)));
    return 0;
}

/* ---- top level ------------------------------------------------------------- */

static const char *const top_keys[] = {"name", "seed", "repeats", "output", "experiment",
                                       "datasets", "attention", "strategies", "sweep",
                                       "dump", "collision"};

static int parse_dump(struct ctx *c, yaml_node_t *n)
{
    int rc = need_list(c, n, "dump", "a list of: data, buckets, hash_params, rows", 1);
    if (rc)
        return rc;
    for (size_t i = 0; i < seq_len(n); i++) {
        int k;
        if ((rc = get_choice(c, seq_item(c, n, i), "dump", dump_words, &k)))
            return rc;
        for (size_t j = 0; j < i; j++) /* as every other list: a value once */
            if (!strcmp(sval(seq_item(c, n, j)), dump_words[k]))
                return fail(c, seq_item(c, n, i), "dump: '%s' is given twice (first on line %d)",
                            dump_words[k], line_of(seq_item(c, n, j)));
        c->cfg->dump |= 1u << k;
    }
    return 0;
}

static int parse_root(struct ctx *c, yaml_node_t *root)
{
    struct lsh_config *cfg = c->cfg;
    int rc;
    if (root->type != YAML_MAPPING_NODE)
        return fail(c, root, "the configuration must be a mapping of keys (name, datasets, "
                    "strategies, sweep, ...), got %s", describe(c, root));
    if ((rc = check_keys(c, root, "the top-level mapping", top_keys,
                         sizeof top_keys / sizeof *top_keys)))
        return rc;

    yaml_node_t *v = lookup(c, root, "name", NULL);
    if (!v)
        return fail(c, root, "missing required key 'name'");
    if ((rc = get_name(c, v, "name", &cfg->name)))
        return rc;
    if ((v = lookup(c, root, "experiment", NULL))) {
        int e;
        if ((rc = get_choice(c, v, "experiment", experiment_words, &e)))
            return rc;
        cfg->experiment = (enum lsh_experiment)e;
    }
    uint64_t seed = 0;
    if ((v = lookup(c, root, "seed", NULL)) && (rc = get_uint(c, v, "seed", 0, UINT64_MAX, &seed)))
        return rc;
    cfg->seed = seed;
    cfg->repeats = 1;
    const int collision = cfg->experiment == LSH_EXPERIMENT_COLLISION;
    if ((v = lookup(c, root, "repeats", NULL))) {
        if ((rc = get_u32(c, v, "repeats", 1, LSH_REPEATS_MAX, &cfg->repeats)))
            return rc;
        if (collision && cfg->repeats != 1)
            return fail(c, v, "repeats: %" PRIu32 " does not apply to experiment collision; "
                        "allowed: 1 (its rounds are its replicates: raise n_hashes or pairs "
                        "instead)", cfg->repeats);
    }
    if ((v = lookup(c, root, "output", NULL))) {
        if ((rc = dup_string(c, v, "output", "a file path", &cfg->output)))
            return rc;
    } else {
        size_t len = strlen(cfg->name) + sizeof "results/.h5";
        if (!(cfg->output = malloc(len)))
            return oom(c);
        snprintf(cfg->output, len, "results/%s.h5", cfg->name);
    }
    if ((v = lookup(c, root, "dump", NULL)) && (rc = parse_dump(c, v)))
        return rc;
    if (collision && cfg->dump)
        return fail(c, v, "dump does not apply to experiment collision; allowed: [] (it writes "
                    "/collision only)");

    yaml_node_t *k;
    if (cfg->experiment == LSH_EXPERIMENT_SWEEP) {
        if ((k = key_of(c, root, "collision")))
            return fail(c, k, "'collision' applies to experiment collision only (this is "
                        "experiment sweep)");
        if (!(v = lookup(c, root, "datasets", NULL)))
            return fail(c, root, "missing required key 'datasets' (experiment sweep)");
        if ((rc = parse_datasets(c, v)))
            return rc;
        if ((rc = parse_attention(c, lookup(c, root, "attention", NULL))))
            return rc;
    } else {
        static const char *const no[] = {"datasets", "attention"};
        for (size_t i = 0; i < 2; i++)
            if ((k = key_of(c, root, no[i])))
                return fail(c, k, "'%s' does not apply to experiment collision (it uses the "
                            "'collision' block)", no[i]);
        if (!(v = lookup(c, root, "collision", NULL)))
            return fail(c, root, "missing required key 'collision' (experiment collision)");
        if ((rc = parse_collision(c, v)) || (rc = parse_attention(c, NULL)))
            return rc;
    }
    if (!(v = lookup(c, root, "strategies", NULL)))
        return fail(c, root, "missing required key 'strategies'");
    if ((rc = parse_strategies(c, v)))
        return rc;
    if (!(v = lookup(c, root, "sweep", NULL)))
        return fail(c, root, "missing required key 'sweep' (n_buckets at least)");
    return parse_sweep(c, v);
}

/* ---- libyaml ---------------------------------------------------------------- */

/* Line and column (0-based) of a byte offset, for libyaml's reader errors,
 * which give an offset instead of a mark. */
static yaml_mark_t mark_of_offset(const char *text, size_t len, size_t offset)
{
    yaml_mark_t m = {0, 0, 0};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if (((unsigned char)text[i] & 0xc0) != 0x80) {
            m.column++;
        }
    }
    m.index = offset;
    return m;
}

/* The byte at a mark (line/column are 0-based, the column in characters). */
static int char_at(const char *text, size_t len, yaml_mark_t m)
{
    size_t i = 0;
    for (size_t line = 0; i < len && line < m.line; i++)
        if (text[i] == '\n')
            line++;
    for (size_t col = 0; i < len && col < m.column; col++)
        do
            i++;
        while (i < len && ((unsigned char)text[i] & 0xc0) == 0x80);
    return i < len ? (unsigned char)text[i] : -1;
}

static int yaml_failure(struct ctx *c, yaml_parser_t *parser, const char *text, size_t len)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return oom(c);
    yaml_mark_t m = parser->problem_mark;
    if (parser->error == YAML_READER_ERROR)
        m = mark_of_offset(text, len, parser->problem_offset);
    const char *problem = parser->problem ? parser->problem : "unknown problem";
    const char *hint = char_at(text, len, m) == '\t'
                           ? "; tabs are not allowed for indentation, use spaces" : "";
    if (parser->context) /* e.g. "while parsing a flow sequence": say where it began */
        return fail_mark(c, m, "YAML syntax error: %s (begun on line %d, column %d), %s%s",
                         parser->context, (int)parser->context_mark.line + 1,
                         (int)parser->context_mark.column + 1, problem, hint);
    return fail_mark(c, m, "YAML syntax error: %s%s", problem, hint);
}

/* Refuse nesting deeper than LSH_CONFIG_DEPTH_MAX from libyaml's events,
 * before a document is built: libyaml's time grows with the square of the
 * depth (100k levels took minutes), and a config needs a handful.  Syntax
 * errors are left to the load that follows, which reports them. */
static int check_depth(struct ctx *c, const char *text, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return oom(c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0, depth = 0, done = 0;
    while (!rc && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev))
            break;
        switch (ev.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > LSH_CONFIG_DEPTH_MAX)
                rc = fail_mark(c, ev.start_mark, "lists and mappings are nested more than %d "
                               "deep; allowed: at most %d levels", LSH_CONFIG_DEPTH_MAX,
                               LSH_CONFIG_DEPTH_MAX);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int load(struct ctx *c, const char *text, size_t len)
{
    int rc = check_depth(c, text, len);
    if (rc)
        return rc;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return oom(c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    /* libyaml returns 1 on success, and frees the document itself on failure */
    if (!yaml_parser_load(&parser, &c->doc)) {
        rc = yaml_failure(c, &parser, text, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&c->doc);
    if (!root) {
        rc = fail_mark(c, (yaml_mark_t){0, 0, 0}, "the configuration is empty");
    } else {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            rc = yaml_failure(c, &parser, text, len);
        } else {
            yaml_node_t *extra = yaml_document_get_root_node(&next);
            if (extra)
                rc = fail(c, extra, "a second YAML document ('---'): a configuration is one "
                          "document");
            yaml_document_delete(&next);
        }
    }
    if (rc)
        yaml_document_delete(&c->doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- public ---------------------------------------------------------------- */

void lsh_config_free(struct lsh_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->text);
    free(cfg->name);
    free(cfg->output);
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        struct lsh_dataset_spec *ds = &cfg->datasets[i];
        free(ds->name);
        free(ds->file);
        free(ds->q);
        free(ds->k);
        free(ds->v);
        free(ds->layers);
        free(ds->heads);
    }
    free(cfg->datasets);
    free(cfg->attention.topk);
    for (size_t i = 0; i < cfg->n_strategies; i++) {
        struct lsh_strategy_spec *ss = &cfg->strategies[i];
        free(ss->name);
        for (size_t s = 0; s < ss->n_sets; s++)
            free_set(&ss->sets[s]);
        free(ss->sets);
    }
    free(cfg->strategies);
    struct lsh_sweep *s = &cfg->sweep;
    free(s->n_hashes);
    free(s->n_buckets);
    free(s->n_buckets_marks);
    free(s->chunk_size_marks);
    free(s->mode);
    free(s->chunk_size);
    free(s->look_back);
    free(s->window);
    free(s->combine);
    free(s->combine_marks);
    free(s->min_collisions);
    free(s->min_collisions_marks);
    free(s->sink);
    free(s->sink_marks);
    free(s->local);
    free(s->local_marks);
    free(cfg->collision.angles);
    free(cfg);
}

int lsh_config_parse(const char *text, size_t len, const char *path,
                     const struct lsh_registry *reg, struct lsh_config **out,
                     struct lsh_error *err)
{
    if ((!text && len) || !out)
        return lsh_error_set(err, LSH_EINVAL, "lsh_config_parse: no text or no output");
    struct ctx c = {.file = path ? path : "<config>", .err = err, .reg = reg};
    if (!(c.cfg = calloc(1, sizeof *c.cfg)))
        return oom(&c);
    int rc = 0;
    if (path && !(c.cfg->path = strdup(path)))
        rc = oom(&c);
    if (!rc && !(c.cfg->text = malloc(len + 1)))
        rc = oom(&c);
    if (rc) {
        lsh_config_free(c.cfg);
        return rc;
    }
    if (len)
        memcpy(c.cfg->text, text, len);
    c.cfg->text[len] = '\0';
    /* on success load() leaves the document to us */
    if (!(rc = load(&c, c.cfg->text, len))) {
        rc = parse_root(&c, yaml_document_get_root_node(&c.doc));
        yaml_document_delete(&c.doc);
    }
    if (rc) {
        lsh_config_free(c.cfg);
        return rc;
    }
    *out = c.cfg;
    return 0;
}

/* The whole of a regular file of at most LSH_CONFIG_SIZE_MAX bytes.  It is
 * opened without blocking (a FIFO with no writer would wait forever) and
 * refused unless regular, so neither a pipe nor /dev/zero is read. */
static int read_config_file(const char *path, char **text, size_t *len, struct lsh_error *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return lsh_error_at(err, LSH_EIO, path, 0, 0, "cannot open the configuration: %s",
                            strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = lsh_error_at(err, LSH_EIO, path, 0, 0, "cannot read the configuration: %s",
                          strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = lsh_error_at(err, LSH_ECONFIG, path, 0, 0, "the configuration is %s; allowed: a "
                          "regular file", lsh_file_kind(st.st_mode));
    else if ((uintmax_t)st.st_size > LSH_CONFIG_SIZE_MAX)
        rc = lsh_error_at(err, LSH_ECONFIG, path, 0, 0, "the configuration is %jd bytes; "
                          "allowed: at most %zu (16 MiB)", (intmax_t)st.st_size,
                          LSH_CONFIG_SIZE_MAX);
    char *buf = rc ? NULL : malloc(LSH_CONFIG_SIZE_MAX + 1);
    if (!rc && !buf)
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory reading %s", path);
    size_t got = 0;
    /* a file that grows while read is cut at the cap and refused */
    while (!rc && got <= LSH_CONFIG_SIZE_MAX) {
        ssize_t r = read(fd, buf + got, LSH_CONFIG_SIZE_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = lsh_error_at(err, LSH_EIO, path, 0, 0, "cannot read the configuration: %s",
                              strerror(errno));
        else if (r == 0)
            break;
        else
            got += (size_t)r;
    }
    if (!rc && got > LSH_CONFIG_SIZE_MAX)
        rc = lsh_error_at(err, LSH_ECONFIG, path, 0, 0, "the configuration is more than %zu "
                          "bytes (16 MiB); allowed: at most that", LSH_CONFIG_SIZE_MAX);
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = got;
    return 0;
}

int lsh_config_load(const char *path, const struct lsh_registry *reg, struct lsh_config **out,
                    struct lsh_error *err)
{
    if (!path || !out)
        return lsh_error_set(err, LSH_EINVAL, "lsh_config_load: no path or no output");
    char *text = NULL;
    size_t len = 0;
    int rc = read_config_file(path, &text, &len, err);
    if (rc)
        return rc;
    rc = lsh_config_parse(text, len, path, reg, out, err);
    free(text);
    return rc;
}

/* ---- resolved YAML ---------------------------------------------------------- */

static int same_value(const struct lsh_param_value *a, const struct lsh_param_value *b)
{
    switch (a->type) {
    case LSH_PARAM_BOOL:
    case LSH_PARAM_INT:
        return a->i == b->i;
    case LSH_PARAM_REAL:
        return a->r == b->r;
    case LSH_PARAM_CHOICE:
        return !strcmp(a->choice, b->choice);
    case LSH_PARAM_INT_LIST:
        return a->list_len == b->list_len &&
               (!a->list_len || !memcmp(a->list, b->list, a->list_len * sizeof *a->list));
    case LSH_PARAM_END:
        break;
    }
    return 1;
}

/* The swept values of parameter p, in the order given: recovered from the
 * product, where each appears first in that order. */
static void put_param_values(struct buf *b, const struct lsh_strategy_spec *ss, size_t p)
{
    put(b, "[");
    size_t shown = 0;
    for (size_t s = 0; s < ss->n_sets; s++) {
        const struct lsh_param_value *v = &ss->sets[s].values[p];
        int seen = 0;
        for (size_t t = 0; t < s && !seen; t++)
            seen = same_value(&ss->sets[t].values[p], v);
        if (seen)
            continue;
        put(b, "%s", shown++ ? ", " : "");
        put_value(b, v, 1);
    }
    put(b, "]");
}

static void put_u32s(struct buf *b, const uint32_t *v, size_t n)
{
    put(b, "[");
    for (size_t i = 0; i < n; i++)
        put(b, "%s%" PRIu32, i ? ", " : "", v[i]);
    put(b, "]\n");
}

/* One enum list as words; name() maps an index of the list to its word. */
static void put_words(struct buf *b, size_t n,
                      const char *(*name)(const struct lsh_sweep *, size_t),
                      const struct lsh_sweep *s)
{
    put(b, "[");
    for (size_t i = 0; i < n; i++)
        put(b, "%s%s", i ? ", " : "", name(s, i));
    put(b, "]\n");
}

static const char *mode_at(const struct lsh_sweep *s, size_t i)
{
    return lsh_mode_name(s->mode[i]);
}

static const char *window_at(const struct lsh_sweep *s, size_t i)
{
    return lsh_window_name(s->window[i]);
}

static const char *combine_at(const struct lsh_sweep *s, size_t i)
{
    return lsh_combine_name(s->combine[i]);
}

static void put_dataset(struct buf *b, const struct lsh_dataset_spec *ds)
{
    put(b, "  - name: ");
    put_str(b, ds->name);
    put(b, "\n    kind: %s\n", lsh_data_kind_name(ds->kind));
    if (ds->kind == LSH_DATA_HDF5 || ds->kind == LSH_DATA_NPY) {
        const char *keys[] = {"file", "q", "k", "v"};
        const char *vals[] = {ds->file, ds->q, ds->k, ds->v};
        for (size_t i = 0; i < 4; i++)
            if (vals[i]) {
                put(b, "    %s: ", keys[i]);
                put_str(b, vals[i]);
                put(b, "\n");
            }
        put(b, "    layers: ");
        if (ds->layers)
            put_u32s(b, ds->layers, ds->n_layers);
        else
            put(b, "all\n");
        put(b, "    heads: ");
        if (ds->heads)
            put_u32s(b, ds->heads, ds->n_heads);
        else
            put(b, "all\n");
        if (ds->d_v)
            put(b, "    d_v: %zu\n", ds->d_v);
    } else {
        put(b, "    n: %zu\n    d: %zu\n    d_v: %zu\n", ds->n, ds->d, ds->d_v ? ds->d_v : ds->d);
    }
    if (ds->kind == LSH_DATA_CLUSTERED)
        put(b, "    clusters: %zu\n    spread: %.17g\n    norm: %.17g\n", ds->clusters,
            ds->spread, ds->norm > 0 ? ds->norm : sqrt((double)ds->d));
    if (ds->reference_rows)
        put(b, "    reference_rows: %zu\n", ds->reference_rows);
    else
        put(b, "    reference_rows: all\n");
}

char *lsh_config_resolved_yaml(const struct lsh_config *cfg)
{
    if (!cfg)
        return NULL;
    struct buf b = {0};
    put(&b, "name: ");
    put_str(&b, cfg->name);
    put(&b, "\nseed: %" PRIu64 "\nrepeats: %" PRIu32 "\noutput: ", cfg->seed, cfg->repeats);
    put_str(&b, cfg->output);
    put(&b, "\nexperiment: %s\n", experiment_words[cfg->experiment]);
    if (cfg->experiment == LSH_EXPERIMENT_SWEEP) {
        put(&b, "datasets:\n");
        for (size_t i = 0; i < cfg->n_datasets; i++)
            put_dataset(&b, &cfg->datasets[i]);
        const struct lsh_attention *a = &cfg->attention;
        put(&b, "attention:\n  keys: %s\n  exclude_self: %s\n  causal: %s\n",
            lsh_keys_name(a->keys), a->exclude_self ? "true" : "false",
            a->causal ? "true" : "false");
        if (a->scale_auto)
            put(&b, "  scale: auto\n");
        else
            put(&b, "  scale: %.17g\n", a->scale);
        put(&b, "  topk: ");
        put_u32s(&b, a->topk, a->n_topk);
        put(&b, "  oracle: %s\n", a->oracle ? "true" : "false");
    } else {
        const struct lsh_collision_spec *col = &cfg->collision;
        put(&b, "collision:\n  d: %zu\n  angles: [", col->d);
        for (size_t i = 0; i < col->n_angles; i++)
            put(&b, "%s%.17g", i ? ", " : "", col->angles[i]);
        put(&b, "]\n  pairs: %zu\n", col->pairs);
    }
    put(&b, "strategies:\n");
    for (size_t i = 0; i < cfg->n_strategies; i++) {
        const struct lsh_strategy_spec *ss = &cfg->strategies[i];
        put(&b, "  - name: ");
        put_str(&b, ss->name);
        put(&b, "\n    skip_invalid: %s\n    params: {", ss->skip_invalid ? "true" : "false");
        size_t np = ss->n_sets ? ss->sets[0].n_params : 0;
        for (size_t p = 0; p < np; p++) {
            put(&b, "%s", p ? ", " : "");
            put_str(&b, ss->strategy->params[p].name);
            put(&b, ": ");
            put_param_values(&b, ss, p);
        }
        put(&b, "}\n");
    }
    const struct lsh_sweep *s = &cfg->sweep;
    put(&b, "sweep:\n  n_hashes: ");
    put_u32s(&b, s->n_hashes, s->n_n_hashes);
    put(&b, "  n_buckets: ");
    put_u32s(&b, s->n_buckets, s->n_n_buckets);
    if (cfg->experiment == LSH_EXPERIMENT_SWEEP) {
        put(&b, "  mode: ");
        put_words(&b, s->n_mode, mode_at, s);
        put(&b, "  chunk_size: ");
        put_u32s(&b, s->chunk_size, s->n_chunk_size);
        put(&b, "  look_back: ");
        put_u32s(&b, s->look_back, s->n_look_back);
        put(&b, "  window: ");
        put_words(&b, s->n_window, window_at, s);
        put(&b, "  combine: ");
        put_words(&b, s->n_combine, combine_at, s);
        put(&b, "  min_collisions: ");
        put_u32s(&b, s->min_collisions, s->n_min_collisions);
        put(&b, "  sink: ");
        put_u32s(&b, s->sink, s->n_sink);
        put(&b, "  local: ");
        put_u32s(&b, s->local, s->n_local);
    }
    put(&b, "dump: [");
    for (size_t i = 0, shown = 0; dump_words[i]; i++)
        if (cfg->dump & (1u << i))
            put(&b, "%s%s", shown++ ? ", " : "", dump_words[i]);
    put(&b, "]\n");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
