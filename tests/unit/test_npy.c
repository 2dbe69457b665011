/* test_npy.c - the .npy reader against hand-made bytes: every version, byte
 * order and float width numpy writes is read exactly; every malformed or
 * unsupported header is refused with a message naming what it found. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "npy.h"

/* A .npy file in memory: magic, version, header length, the dict padded
 * with spaces to a multiple of 64 and a newline (as numpy.save writes),
 * then `len` data bytes.  Returns its size; buf must hold it. */
static size_t make_npy(unsigned char *buf, int major, const char *dict, const void *data,
                       size_t len)
{
    const size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = dl + 1;
    while ((pre + hlen) % 64)
        hlen++;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    if (major != 1) {
        buf[10] = (unsigned char)(hlen >> 16);
        buf[11] = (unsigned char)(hlen >> 24);
    }
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', hlen - dl - 1);
    buf[pre + hlen - 1] = '\n';
    memcpy(buf + pre + hlen, data, len);
    return pre + hlen + len;
}

static unsigned char buf[1 << 16];

static int parse(const char *dict, int major, size_t data_len, struct lsh_npy *h,
                 struct lsh_error *err)
{
    static unsigned char zeros[4096];
    size_t n = make_npy(buf, major, dict, zeros, data_len);
    lsh_error_clear(err);
    return lsh_npy_parse(buf, n, n, "x.npy", h, err);
}

static void expect_refused(const char *dict, int major, size_t data_len, const char *needle)
{
    struct lsh_npy h;
    struct lsh_error err;
    cr_expect_eq(parse(dict, major, data_len, &h, &err), LSH_EDATA, "accepted: %s", dict);
    cr_expect(strstr(err.message, needle) && strstr(err.message, "x.npy"),
              "%s: message '%s' lacks '%s'", dict, err.message, needle);
}

Test(npy, float16_bits_convert_exactly_including_subnormals)
{
    const struct {
        uint16_t bits;
        double value;
    } cases[] = {
        {0x0000, 0.0},
        {0x0001, 5.9604644775390625e-08},   /* 2^-24, the least subnormal */
        {0x03ff, 6.0975551605224609375e-05}, /* 1023 x 2^-24 */
        {0x0400, 6.103515625e-05},           /* 2^-14, the least normal */
        {0x3c00, 1.0},
        {0x3c01, 1.0009765625},
        {0xc0c4, -2.3828125},
        {0x7bff, 65504.0},
        {0x8001, -5.9604644775390625e-08},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cr_expect_eq(lsh_half_to_double(cases[i].bits), cases[i].value, "0x%04x",
                     cases[i].bits);
    cr_expect(signbit(lsh_half_to_double(0x8000)) && lsh_half_to_double(0x8000) == 0.0);
    cr_expect(isinf(lsh_half_to_double(0x7c00)) && lsh_half_to_double(0x7c00) > 0);
    cr_expect(isinf(lsh_half_to_double(0xfc00)) && lsh_half_to_double(0xfc00) < 0);
    cr_expect(isnan(lsh_half_to_double(0x7e00)) && isnan(lsh_half_to_double(0xfc01)));
}

Test(npy, headers_numpy_writes_are_parsed_in_any_key_order_and_version)
{
    struct lsh_npy h;
    struct lsh_error err;
    cr_assert_eq(parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 1, 24,
                       &h, &err), 0, "%s", err.message);
    cr_expect(h.major == 1 && h.rank == 2 && h.shape[0] == 3 && h.shape[1] == 2);
    cr_expect(h.itemsize == 4 && !h.big_endian && h.count == 6 && h.data_offset == 128);
    cr_expect_str_eq(h.dtype, "float32");
    cr_assert_eq(parse("{\"shape\":(2,3,4,5),\"descr\":\">f8\",\"fortran_order\":False}", 2,
                       8 * 120, &h, &err), 0, "%s", err.message);
    cr_expect(h.major == 2 && h.rank == 4 && h.shape[3] == 5 && h.big_endian && h.itemsize == 8);
    cr_assert_eq(parse("{ 'fortran_order' : False , 'shape' : ( 2L , 3L , 1 , ) , 'descr' : "
                       "'<f2' }", 3, 12, &h, &err), 0, "%s", err.message);
    cr_expect(h.major == 3 && h.rank == 3 && h.shape[0] == 2 && h.itemsize == 2);
    cr_expect_str_eq(h.dtype, "float16");
    cr_assert_eq(parse("{'descr': '=f8', 'fortran_order': False, 'shape': (1, 1)}", 1, 8, &h,
                       &err), 0, "%s", err.message);
    const int one = 1;
    cr_expect_eq(h.big_endian, *(const char *)&one == 0, "'=' is this machine's order");
}

Test(npy, unsupported_types_layouts_and_shapes_are_refused_naming_what_was_found)
{
    expect_refused("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", 1, 24,
                   "Fortran-order array; allowed: C order (save it with np.save(f, "
                   "np.ascontiguousarray(x)))");
    expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 1, 24,
                   "rank 1 (shape (6)); need a 2-D array");
    expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1, 4, "rank 0");
    expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2), }", 1, 8,
                   "rank 5");
    expect_refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }", 1, 0,
                   "is empty (shape (3, 0))");
    expect_refused("{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2), }", 1, 24,
                   "element type '<i4' (32-bit signed integers); allowed: '<f2'");
    expect_refused("{'descr': '<u2', 'fortran_order': False, 'shape': (3, 2), }", 1, 12,
                   "16-bit unsigned integers (bfloat16");
    expect_refused("{'descr': '<c8', 'fortran_order': False, 'shape': (3, 2), }", 1, 48,
                   "'<c8' (complex numbers)");
    expect_refused("{'descr': '|f4', 'fortran_order': False, 'shape': (3, 2), }", 1, 24,
                   "floats without a byte order");
    expect_refused("{'descr': '<f16', 'fortran_order': False, 'shape': (3, 2), }", 1, 96,
                   "128-bit floats");
    expect_refused("{'descr': '|O', 'fortran_order': False, 'shape': (3, 2), }", 1, 48,
                   "Python objects");
    expect_refused("{'descr': '<U3', 'fortran_order': False, 'shape': (3, 2), }", 1, 72,
                   "strings");
    expect_refused("{'descr': '|V2', 'fortran_order': False, 'shape': (3, 2), }", 1, 12,
                   "raw records");
    expect_refused("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3, 2), }", 1,
                   24, "structured dtype");
}

Test(npy, malformed_headers_and_wrong_sizes_are_refused)
{
    const char *ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";
    expect_refused(ok, 1, 47, "is 175 bytes long, but its header (128 bytes) and shape (3, 2) "
                              "of float64 need exactly 176 (truncated)");
    expect_refused(ok, 1, 49, "(bytes after the data)");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), 'x': 1}", 1, 48,
                   "has a key 'x'");
    expect_refused("{'descr': '<f8', 'descr': '<f8', 'shape': (3, 2)}", 1, 48,
                   "gives 'descr' twice");
    expect_refused("{'descr': '<f8', 'shape': (3, 2)}", 1, 48, "lacks 'fortran_order'");
    expect_refused("{'descr': '<f8', 'fortran_order': 0, 'shape': (3, 2)}", 1, 48,
                   "neither True nor False");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3, -2)}", 1, 48,
                   "not a non-negative integer");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2)} x", 1, 48,
                   "more after the dict");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2)", 1, 48,
                   "no ',' or '}'");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, "
                   "4294967296, 4294967296)}", 1, 0, "too many values to count");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999, "
                   "1)}", 1, 0, "does not fit in 64 bits");
    expect_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952, "
                   "1)}", 1, 0, "too many bytes to count");

    /* preambles */
    struct lsh_npy h;
    struct lsh_error err;
    size_t n = make_npy(buf, 1, ok, (double[6]){0}, 48);
    buf[6] = 4;
    cr_expect_eq(lsh_npy_parse(buf, n, n, "x.npy", &h, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "version 4.0; allowed: 1.0, 2.0 or 3.0"), "%s", err.message);
    buf[6] = 1;
    buf[7] = 1;
    cr_expect_eq(lsh_npy_parse(buf, n, n, "x.npy", &h, &err), LSH_EDATA);
    buf[7] = 0;
    buf[0] = 'x';
    cr_expect_eq(lsh_npy_parse(buf, n, n, "x.npy", &h, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "is not a .npy file"), "%s", err.message);
    buf[0] = 0x93;
    cr_expect_eq(lsh_npy_parse(buf, 40, 40, "x.npy", &h, &err), LSH_EDATA, "truncated header");
    cr_expect(strstr(err.message, "truncated"), "%s", err.message);
    n = make_npy(buf, 2, ok, (double[6]){0}, 48);
    buf[10] = 0x20; /* header length 2 MiB + 64 */
    cr_expect_eq(lsh_npy_parse(buf, n, n, "x.npy", &h, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "allowed: at most 1048576"), "%s", err.message);
    n = make_npy(buf, 1, ok, (double[6]){0}, 48);
    buf[20] = 0;
    cr_expect_eq(lsh_npy_parse(buf, n, n, "x.npy", &h, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "byte 0x00"), "%s", err.message);
}

Test(npy, values_are_read_from_an_offset_in_either_byte_order)
{
    char dir[] = "/tmp/lshlab-npy-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.npy", dir);
    /* 2 x 3 float32, big-endian: 0.5 x t - 1.25 */
    unsigned char data[24];
    for (int t = 0; t < 6; t++) {
        float f = 0.5f * (float)t - 1.25f;
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int b = 0; b < 4; b++)
            data[4 * t + b] = (unsigned char)(u >> (8 * (3 - b)));
    }
    size_t n = make_npy(buf, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                        data, sizeof data);
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(buf, 1, n, f) == n);
    fclose(f);
    struct lsh_npy h;
    struct lsh_error err;
    int fd = -1;
    cr_assert_eq(lsh_npy_open(path, &h, &fd, &err), 0, "%s", err.message);
    double x[4];
    cr_assert_eq(lsh_npy_read(fd, &h, path, 2, 4, x, &err), 0, "%s", err.message);
    for (int t = 0; t < 4; t++)
        cr_expect_eq(x[t], 0.5 * (t + 2) - 1.25);
    cr_expect_neq(lsh_npy_read(fd, &h, path, 3, 4, x, &err), 0, "read past the end");
    close(fd);
    /* a FIFO is refused without blocking */
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/p.npy", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_eq(lsh_npy_open(fifo, &h, &fd, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "is a FIFO (named pipe); allowed: a regular file"), "%s", err.message);
    cr_expect_eq(lsh_npy_open(dir, &h, &fd, &err), LSH_EDATA);
    cr_expect(strstr(err.message, "is a folder"), "%s", err.message);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* numpy.load accepts type names that numpy.save never writes ('float32',
 * 'f4', 'd'): such a descr was "an unknown type" next to "allowed: float32".
 * It is refused saying what it is and which string to write instead. */
Test(npy, a_numpy_type_name_as_descr_is_named_with_the_string_to_write)
{
    const struct {
        const char *descr, *want;
    } c[] = {{"float32", "'<f4'"}, {"float64", "'<f8'"}, {"float16", "'<f2'"},
             {"f4", "'<f4'"},      {"d", "'<f8'"},       {"<d", "'<f8'"},
             {">e", "'>f2'"},      {"half", "'<f2'"},    {"double", "'<f8'"}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (2, 2), }",
                 c[i].descr);
        struct lsh_npy h;
        struct lsh_error err;
        cr_expect_eq(parse(dict, 1, 16, &h, &err), LSH_EDATA, "accepted %s", c[i].descr);
        cr_expect(strstr(err.message, "a numpy type name") && strstr(err.message, c[i].want) &&
                      !strstr(err.message, "unknown"),
                  "%s: %s", c[i].descr, err.message);
    }
}
