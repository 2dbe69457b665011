/* error.c - error codes, their text, and the error detail helpers. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *lsh_strerror(int code)
{
    switch (code) {
    case LSH_OK:
        return "success";
#define LSH_ERRNO_CASE(name, value, text) \
    case LSH_##name:                      \
        return text;
        LSH_ERRNO_MAP(LSH_ERRNO_CASE)
#undef LSH_ERRNO_CASE
    default:
        return "unknown error";
    }
}

void lsh_error_clear(struct lsh_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

static void vset(struct lsh_error *err, int code, const char *file, int line, int column,
                 const char *fmt, va_list ap)
{
    err->code = code;
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    err->column = column;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

int lsh_error_set(struct lsh_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, code, NULL, 0, 0, fmt, ap);
        va_end(ap);
    }
    return code;
}

int lsh_error_at(struct lsh_error *err, int code, const char *file, int line, int column,
                 const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, code, file, line, column, fmt, ap);
        va_end(ap);
    }
    return code;
}

void lsh_error_format(const struct lsh_error *err, char *buf, size_t size)
{
    if (err->file[0] && err->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line, err->column, err->message);
    else if (err->file[0])
        snprintf(buf, size, "%s: %s", err->file, err->message);
    else
        snprintf(buf, size, "%s", err->message);
}

const char *lsh_file_kind(unsigned mode)
{
    return S_ISDIR(mode)    ? "a folder"
           : S_ISFIFO(mode) ? "a FIFO (named pipe)"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "not a regular file";
}
