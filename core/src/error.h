/* error.h - lshlab's error codes and the caller-owned error detail. */
#ifndef LSH_ERROR_H
#define LSH_ERROR_H

#include <stddef.h>

/* One table generates the enum and lsh_strerror() (as libuv does). */
#define LSH_ERRNO_MAP(X)                                   \
    X(EINVAL, -1, "invalid argument")                      \
    X(ENOMEM, -2, "out of memory")                         \
    X(ECONFIG, -3, "configuration error")                  \
    X(EIO, -4, "input/output error")                       \
    X(EPLUGIN, -5, "strategy plugin error")                \
    X(EDATA, -6, "bad input data")                         \
    X(EEXIST, -7, "file exists")                           \
    X(EINTR, -8, "interrupted")                            \
    X(ERANGE, -9, "value out of range")                    \
    X(ENOTFOUND, -10, "not found")

enum lsh_errno {
    LSH_OK = 0,
#define LSH_ERRNO_ENUM(name, value, text) LSH_##name = value,
    LSH_ERRNO_MAP(LSH_ERRNO_ENUM)
#undef LSH_ERRNO_ENUM
};

#define LSH_ERROR_MSG_MAX 1024
#define LSH_ERROR_FILE_MAX 512

/* Owned by the caller.  file/line/column are set (line > 0) when a config or
 * input file is at fault; line and column are 1-based. */
struct lsh_error {
    int code;
    char file[LSH_ERROR_FILE_MAX];
    int line, column;
    char message[LSH_ERROR_MSG_MAX];
};

const char *lsh_strerror(int code);

/* Reset err (NULL is allowed everywhere and means "don't care"). */
void lsh_error_clear(struct lsh_error *err);

/* Fill err with code and a printf-style message; returns code, so that
 * `return lsh_error_set(err, LSH_EINVAL, "...")` reads naturally. */
int lsh_error_set(struct lsh_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, with the place in a file that is at fault. */
int lsh_error_at(struct lsh_error *err, int code, const char *file, int line, int column,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* What a file that is not a regular file is ("a folder", "a FIFO (named
 * pipe)", ...), for messages refusing it; mode is a struct stat st_mode. */
const char *lsh_file_kind(unsigned mode);

/* Format err as "file:line:column: message" (or just the message). */
void lsh_error_format(const struct lsh_error *err, char *buf, size_t size);

#endif
