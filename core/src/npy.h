/* npy.h - a small, strict reader of NumPy .npy files of float16, float32 or
 * float64 values (SPEC 11.1), for hostile input.
 *
 * Accepted: format versions 1.0, 2.0 and 3.0; a header dict with exactly
 * the keys 'descr', 'fortran_order' and 'shape' (any order, Python literal
 * syntax as numpy writes it: whitespace and a trailing comma are fine);
 * descr '<f2', '>f2', '=f2', '<f4', '>f4', '=f4', '<f8', '>f8', '=f8';
 * fortran_order False; a shape of rank 2 to 4, every dimension at least 1;
 * and a file whose size is exactly the header's plus the data's.  Anything
 * else is LSH_EDATA with a message naming the file, what it holds and what
 * is allowed.  Header bytes are capped (64 KiB for version 1, LSH_NPY_HEADER_MAX
 * for versions 2 and 3), and every size is overflow-checked.
 */
#ifndef LSH_NPY_H
#define LSH_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define LSH_NPY_HEADER_MAX ((size_t)1 << 20) /* bytes of a v2/v3 header dict */
#define LSH_NPY_RANK_MAX 4

struct lsh_npy {
    int major, minor;                  /* format version */
    int rank;                          /* 2 .. LSH_NPY_RANK_MAX */
    uint64_t shape[LSH_NPY_RANK_MAX];
    uint64_t count;                    /* product of shape */
    size_t itemsize;                   /* 2, 4 or 8 */
    int big_endian;                    /* the values' byte order */
    char dtype[16];                    /* "float16", "float32" or "float64" */
    uint64_t data_offset;              /* where the values start in the file */
};

/* Parse the start of a .npy file: `buf` holds its first `len` bytes, at
 * least its whole header when the file is that long (12 bytes tell how long
 * the header is: lsh_npy_open reads those first), and file_size is the
 * whole file's size, checked against the shape.  `name` names the file in
 * errors.  *out is written only on success. */
int lsh_npy_parse(const unsigned char *buf, size_t len, uint64_t file_size, const char *name,
                  struct lsh_npy *out, struct lsh_error *err);

/* Open `path` (a regular file only: a FIFO, device or folder is refused
 * without opening it to block), parse its header and check its size.  On
 * success *fd is an open descriptor, owned by the caller (close it). */
int lsh_npy_open(const char *path, struct lsh_npy *out, int *fd, struct lsh_error *err);

/* Read `count` values starting at value index `first` (row-major over the
 * shape) from fd, converted exactly to double.  Errors (the file shrank,
 * I/O) name `path`.  Reads a block at a time with pread: never more of the
 * file than asked for. */
int lsh_npy_read(int fd, const struct lsh_npy *h, const char *path, uint64_t first,
                 size_t count, double *out, struct lsh_error *err);

/* IEEE binary16 bits to double, exactly (subnormals, Inf and NaN too). */
double lsh_half_to_double(uint16_t h);

#endif
