/* npy.c - read NumPy .npy files of floats strictly, for hostile input. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALLOWED                                                                           \
    "allowed: '<f2', '>f2', '<f4', '>f4', '<f8', '>f8' (or '=' for this machine's byte " \
    "order): float16, float32 or float64"

double lsh_half_to_double(uint16_t h)
{
    const int sign = h >> 15, exp = (h >> 10) & 0x1f;
    const unsigned mant = h & 0x3ffu;
    double x;
    if (exp == 0)
        x = ldexp((double)mant, -24); /* subnormal (or zero): mant x 2^-24 */
    else if (exp == 31)
        x = mant ? NAN : INFINITY;
    else
        x = ldexp((double)(mant | 0x400u), exp - 25);
    return sign ? -x : x;
}

/* ---- the header dict ---------------------------------------------------------- */

struct lex {
    const unsigned char *p, *end;
};

static void skip_ws(struct lex *x)
{
    while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\n' || *x->p == '\r'))
        x->p++;
}

static int eat(struct lex *x, char c)
{
    skip_ws(x);
    if (x->p < x->end && *x->p == (unsigned char)c) {
        x->p++;
        return 1;
    }
    return 0;
}

/* What the parser stopped at, printable, for messages. */
static void near(const struct lex *x, char *buf, size_t size)
{
    size_t n = 0;
    for (const unsigned char *q = x->p; q < x->end && n + 1 < size && n < 16; q++)
        buf[n++] = *q >= 0x20 && *q < 0x7f ? (char)*q : '?';
    buf[n] = '\0';
    if (!n)
        snprintf(buf, size, "the end of the header");
}

/* A quoted string without escapes into out (cut to size, printable); 0 when
 * there is none. */
static int get_string(struct lex *x, char *out, size_t size)
{
    skip_ws(x);
    if (x->p >= x->end || (*x->p != '\'' && *x->p != '"'))
        return 0;
    const unsigned char quote = *x->p++;
    size_t n = 0;
    while (x->p < x->end && *x->p != quote) {
        if (*x->p == '\\' || *x->p < 0x20)
            return 0;
        if (n + 1 < size)
            out[n++] = *x->p >= 0x7f ? '?' : (char)*x->p;
        x->p++;
    }
    out[n] = '\0';
    if (x->p >= x->end)
        return 0;
    x->p++;
    return 1;
}

static int get_word(struct lex *x, const char *w)
{
    skip_ws(x);
    const size_t n = strlen(w);
    if ((size_t)(x->end - x->p) < n || memcmp(x->p, w, n))
        return 0;
    const unsigned char *after = x->p + n;
    if (after < x->end && (*after == '_' || (*after >= 'A' && *after <= 'Z') ||
                           (*after >= 'a' && *after <= 'z') || (*after >= '0' && *after <= '9')))
        return 0;
    x->p = after;
    return 1;
}

/* A non-negative integer (Python 2's 'L' suffix tolerated); -1 if none, -2 if
 * it does not fit in 64 bits. */
static int get_uint(struct lex *x, uint64_t *v)
{
    skip_ws(x);
    if (x->p >= x->end || *x->p < '0' || *x->p > '9')
        return -1;
    uint64_t r = 0;
    int over = 0;
    while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
        const unsigned dgt = *x->p++ - '0';
        if (r > (UINT64_MAX - dgt) / 10)
            over = 1;
        else
            r = r * 10 + dgt;
    }
    if (x->p < x->end && *x->p == 'L')
        x->p++;
    *v = r;
    return over ? -2 : 0;
}

struct parsed {
    char descr[40];
    int fortran;
    int rank; /* may exceed LSH_NPY_RANK_MAX; only the first dims are kept */
    uint64_t shape[LSH_NPY_RANK_MAX];
    uint64_t first_zero; /* 1 + the index of a zero dimension, 0 if none */
};

static int bad(struct lsh_error *err, const char *name, const char *what, const struct lex *x)
{
    char at[40];
    near(x, at, sizeof at);
    return lsh_error_set(err, LSH_EDATA,
                         "'%s': the .npy header is not a dict numpy writes: %s at '%s'; allowed: "
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (n, d)}",
                         name, what, at);
}

static int parse_shape(struct lex *x, struct parsed *ps, const char *name,
                       struct lsh_error *err)
{
    if (!eat(x, '('))
        return bad(err, name, "'shape' is not a tuple", x);
    ps->rank = 0;
    skip_ws(x);
    while (!eat(x, ')')) {
        uint64_t v;
        const int r = get_uint(x, &v);
        if (r == -2)
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': a dimension of 'shape' does not fit in 64 bits", name);
        if (r)
            return bad(err, name, "a dimension is not a non-negative integer", x);
        if (ps->rank < LSH_NPY_RANK_MAX)
            ps->shape[ps->rank] = v;
        if (v == 0 && !ps->first_zero)
            ps->first_zero = (uint64_t)ps->rank + 1;
        if (ps->rank < 1000)
            ps->rank++;
        if (!eat(x, ',')) {
            if (!eat(x, ')'))
                return bad(err, name, "'shape' is not a tuple of integers", x);
            break;
        }
    }
    return 0;
}

static int parse_dict(const unsigned char *h, size_t len, const char *name, struct parsed *ps,
                      struct lsh_error *err)
{
    struct lex x = {h, h + len};
    int seen[3] = {0, 0, 0};
    static const char *const keys[] = {"descr", "fortran_order", "shape"};
    if (!eat(&x, '{'))
        return bad(err, name, "no '{'", &x);
    skip_ws(&x);
    while (!eat(&x, '}')) {
        char key[40];
        if (!get_string(&x, key, sizeof key))
            return bad(err, name, "a key is not a quoted string", &x);
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]))
            k++;
        if (k == 3)
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': the .npy header has a key '%s'; allowed: 'descr', "
                                 "'fortran_order' and 'shape', once each",
                                 name, key);
        if (seen[k]++)
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': the .npy header gives '%s' twice; allowed: once", name,
                                 key);
        if (!eat(&x, ':'))
            return bad(err, name, "no ':' after a key", &x);
        int rc = 0;
        if (k == 0) {
            skip_ws(&x);
            if (x.p < x.end && *x.p == '[')
                return lsh_error_set(err, LSH_EDATA,
                                     "'%s': element type is a structured dtype (a list of "
                                     "fields); " ALLOWED,
                                     name);
            if (!get_string(&x, ps->descr, sizeof ps->descr))
                return bad(err, name, "'descr' is not a quoted string", &x);
        } else if (k == 1) {
            if (get_word(&x, "True"))
                ps->fortran = 1;
            else if (get_word(&x, "False"))
                ps->fortran = 0;
            else
                return bad(err, name, "'fortran_order' is neither True nor False", &x);
        } else if ((rc = parse_shape(&x, ps, name, err))) {
            return rc;
        }
        if (!eat(&x, ',')) {
            if (!eat(&x, '}'))
                return bad(err, name, "no ',' or '}' after a value", &x);
            break;
        }
        skip_ws(&x);
    }
    skip_ws(&x);
    if (x.p != x.end)
        return bad(err, name, "more after the dict", &x);
    for (int k = 0; k < 3; k++)
        if (!seen[k])
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': the .npy header lacks '%s'; it needs 'descr', "
                                 "'fortran_order' and 'shape'",
                                 name, keys[k]);
    return 0;
}

/* descr as a type: 0 with size and order set, else an error naming it. */
static int check_descr(const char *d, const char *name, struct lsh_npy *h, struct lsh_error *err)
{
    const char order = d[0];
    const char kind = order ? d[1] : 0;
    char *end = NULL;
    long size = -1;
    if (kind && d[2] >= '0' && d[2] <= '9') {
        errno = 0;
        size = strtol(d + 2, &end, 10);
        if (errno || *end)
            size = -1;
    }
    const int ordered = order == '<' || order == '>' || order == '=';
    if (ordered && kind == 'f' && (size == 2 || size == 4 || size == 8)) {
        static const int one = 1;
        const int host_big = *(const unsigned char *)&one == 0;
        h->itemsize = (size_t)size;
        h->big_endian = order == '>' || (order == '=' && host_big);
        snprintf(h->dtype, sizeof h->dtype, "float%ld", size * 8);
        return 0;
    }
    char what[160];
    /* names numpy.load accepts but numpy.save never writes */
    static const struct {
        const char *name;
        int size;
    } alias[] = {{"float16", 2}, {"half", 2},   {"e", 2},      {"f2", 2},  {"float32", 4},
                 {"single", 4},  {"f", 4},      {"f4", 4},     {"float64", 8}, {"double", 8},
                 {"d", 8},       {"f8", 8},     {"float", 8}};
    const int has_order = order == '<' || order == '>' || order == '=';
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (!strcmp(d + has_order, alias[i].name))
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': element type '%s' (a numpy type name for float%d, not "
                                 "the type string numpy.save writes: for this file write "
                                 "'%cf%d'); " ALLOWED,
                                 name, d, 8 * alias[i].size, order == '>' ? '>' : '<',
                                 alias[i].size);
    const long bits = size > 0 && size < 1024 ? size * 8 : 0;
    if ((order == '|') && kind == 'f')
        snprintf(what, sizeof what, "floats without a byte order");
    else if (kind == 'f' && bits)
        snprintf(what, sizeof what, "%ld-bit floats", bits);
    else if ((kind == 'i' || kind == 'u') && bits)
        snprintf(what, sizeof what, "%ld-bit %s integers%s", bits,
                 kind == 'i' ? "signed" : "unsigned",
                 kind == 'u' && size == 2 ? " (bfloat16 stored as uint16 is not read: save as "
                                            "float32)"
                                          : "");
    else if (kind == 'c')
        snprintf(what, sizeof what, "complex numbers");
    else if (kind == 'b' || kind == '?')
        snprintf(what, sizeof what, "booleans");
    else if (kind == 'S' || kind == 'a' || kind == 'U')
        snprintf(what, sizeof what, "strings");
    else if (kind == 'O')
        snprintf(what, sizeof what, "Python objects");
    else if (kind == 'V')
        snprintf(what, sizeof what, "raw records (void; bfloat16 is often stored so)");
    else if (kind == 'M' || kind == 'm')
        snprintf(what, sizeof what, "dates or times");
    else
        snprintf(what, sizeof what, "an unknown type");
    return lsh_error_set(err, LSH_EDATA, "'%s': element type '%s' (%s); " ALLOWED, name, d,
                         what);
}

static void shape_text(const struct parsed *ps, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "(");
    const int shown = ps->rank < LSH_NPY_RANK_MAX ? ps->rank : LSH_NPY_RANK_MAX;
    for (int i = 0; i < shown && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)ps->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "%s)", ps->rank > shown ? ", ..." : "");
}

int lsh_npy_parse(const unsigned char *buf, size_t len, uint64_t file_size, const char *name,
                  struct lsh_npy *out, struct lsh_error *err)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len > file_size)
        len = (size_t)file_size;
    if (len < 10 || memcmp(buf, magic, 6))
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is not a .npy file (it does not start with \\x93NUMPY and "
                             "a version); allowed: a file written by numpy.save",
                             name);
    struct lsh_npy h;
    memset(&h, 0, sizeof h);
    h.major = buf[6];
    h.minor = buf[7];
    if (!((h.major == 1 || h.major == 2 || h.major == 3) && h.minor == 0))
        return lsh_error_set(err, LSH_EDATA,
                             "'%s': .npy format version %d.%d; allowed: 1.0, 2.0 or 3.0", name,
                             h.major, h.minor);
    size_t pre = h.major == 1 ? 10 : 12;
    if (len < pre)
        return lsh_error_set(err, LSH_EDATA, "'%s' is truncated: %zu bytes, less than a .npy "
                             "preamble", name, len);
    uint64_t hlen = (uint64_t)buf[8] | (uint64_t)buf[9] << 8;
    if (h.major != 1)
        hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (hlen > LSH_NPY_HEADER_MAX)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s': the .npy header is %llu bytes long; allowed: at most %zu",
                             name, (unsigned long long)hlen, LSH_NPY_HEADER_MAX);
    if (pre + hlen > len)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is truncated: its .npy header needs %llu bytes, the file "
                             "has %llu",
                             name, (unsigned long long)(pre + hlen),
                             (unsigned long long)file_size);
    struct parsed ps;
    memset(&ps, 0, sizeof ps);
    for (size_t i = pre; i < pre + hlen; i++)
        if (buf[i] == 0 || (buf[i] >= 0x80 && h.major < 3))
            return lsh_error_set(err, LSH_EDATA,
                                 "'%s': the .npy header holds byte 0x%02x; allowed: text", name,
                                 buf[i]);
    int rc = parse_dict(buf + pre, (size_t)hlen, name, &ps, err);
    if (rc)
        return rc;
    if ((rc = check_descr(ps.descr, name, &h, err)))
        return rc;
    if (ps.fortran)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' holds a Fortran-order array; allowed: C order (save it with "
                             "np.save(f, np.ascontiguousarray(x)))",
                             name);
    char shape[96];
    shape_text(&ps, shape, sizeof shape);
    if (ps.rank < 2 || ps.rank > LSH_NPY_RANK_MAX)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' has rank %d (shape %s); need a 2-D array [n, d], 3-D "
                             "[heads, n, d] or 4-D [layers, heads, n, d]",
                             name, ps.rank, shape);
    if (ps.first_zero)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is empty (shape %s); allowed: every dimension at least 1",
                             name, shape);
    h.rank = ps.rank;
    uint64_t count = 1;
    for (int i = 0; i < ps.rank; i++) {
        h.shape[i] = ps.shape[i];
        if (count > UINT64_MAX / ps.shape[i])
            return lsh_error_set(err, LSH_EDATA, "'%s': shape %s has too many values to count",
                                 name, shape);
        count *= ps.shape[i];
    }
    if (count > (UINT64_MAX - pre - hlen) / h.itemsize)
        return lsh_error_set(err, LSH_EDATA, "'%s': shape %s has too many bytes to count", name,
                             shape);
    h.count = count;
    h.data_offset = pre + hlen;
    const uint64_t want = h.data_offset + count * h.itemsize;
    if (want != file_size)
        return lsh_error_set(err, LSH_EDATA,
                             "'%s' is %llu bytes long, but its header (%llu bytes) and shape %s "
                             "of %s need exactly %llu (%s)",
                             name, (unsigned long long)file_size,
                             (unsigned long long)h.data_offset, shape, h.dtype,
                             (unsigned long long)want,
                             file_size < want ? "truncated" : "bytes after the data");
    *out = h;
    return 0;
}

/* ---- files ------------------------------------------------------------------ */

/* All of [off, off + len) or an error; 1 when the file ends first. */
static int read_at(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t got = pread(fd, buf, len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            return 1;
        buf += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

int lsh_npy_open(const char *path, struct lsh_npy *out, int *fd_out, struct lsh_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return lsh_error_set(err, LSH_EIO, "cannot open .npy file '%s': %s", path,
                             strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lsh_error_set(err, LSH_EDATA,
                             ".npy file '%s' is %s; allowed: a regular file written by numpy.save",
                             path, lsh_file_kind(st.st_mode));
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return lsh_error_set(err, LSH_EIO, "cannot open .npy file '%s': %s", path,
                             strerror(errno));
    /* it may have been swapped for something else since stat() */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lsh_error_set(err, LSH_EDATA, ".npy file '%s' is not a regular file", path);
    }
    const uint64_t size = (uint64_t)st.st_size;
    unsigned char pre[12];
    size_t have = size < sizeof pre ? (size_t)size : sizeof pre;
    int rc = 0;
    if (read_at(fd, pre, have, 0))
        rc = lsh_error_set(err, LSH_EIO, "cannot read .npy file '%s'", path);
    size_t total = have;
    unsigned char *buf = NULL;
    if (!rc && have >= 12 && pre[6] >= 1 && pre[6] <= 3 && !memcmp(pre, "\x93NUMPY", 6)) {
        uint64_t hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        if (pre[6] != 1)
            hlen |= (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        const uint64_t end = (pre[6] == 1 ? 10 : 12) + hlen;
        if (hlen <= LSH_NPY_HEADER_MAX)
            total = (size_t)(end < size ? end : size);
    }
    if (!rc && !(buf = malloc(total > sizeof pre ? total : sizeof pre)))
        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(buf, pre, have);
        if (total > have && read_at(fd, buf + have, total - have, have))
            rc = lsh_error_set(err, LSH_EIO, "cannot read the header of .npy file '%s'", path);
    }
    if (!rc)
        rc = lsh_npy_parse(buf, total, size, path, out, err);
    free(buf);
    if (rc) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

static double convert(const unsigned char *b, size_t itemsize, int big)
{
    uint64_t u = 0;
    for (size_t i = 0; i < itemsize; i++)
        u |= (uint64_t)b[big ? i : itemsize - 1 - i] << (8 * (itemsize - 1 - i));
    if (itemsize == 2)
        return lsh_half_to_double((uint16_t)u);
    if (itemsize == 4) {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, sizeof f);
        return (double)f;
    }
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

int lsh_npy_read(int fd, const struct lsh_npy *h, const char *path, uint64_t first,
                 size_t count, double *out, struct lsh_error *err)
{
    if (first > h->count || count > h->count - first)
        return lsh_error_set(err, LSH_EINVAL, "'%s': values %llu + %zu are beyond its %llu",
                             path, (unsigned long long)first, count,
                             (unsigned long long)h->count);
    unsigned char buf[32768];
    const size_t per = sizeof buf / h->itemsize;
    uint64_t off = h->data_offset + first * h->itemsize;
    for (size_t done = 0; done < count;) {
        const size_t m = count - done < per ? count - done : per;
        const int r = read_at(fd, buf, m * h->itemsize, off);
        if (r)
            return lsh_error_set(err, LSH_EIO, "cannot read .npy file '%s': %s", path,
                                 r > 0 ? "it is shorter than when it was opened"
                                       : strerror(errno));
        for (size_t i = 0; i < m; i++)
            out[done + i] = convert(buf + i * h->itemsize, h->itemsize, h->big_endian);
        done += m;
        off += (uint64_t)m * h->itemsize;
    }
    return 0;
}
