/* killwrite.c - an LD_PRELOAD shim for test_reliability: it lets lshlab
 * write, and kills it (SIGKILL) right after its N-th write() or pwrite() to
 * a file whose path contains $LSHLAB_KILL_PATH - or, with
 * LSHLAB_KILL_TORN=1, after writing only the first half of that write.  So a
 * test can stop a run between any two writes of the results file, including
 * the middle of an HDF5 flush, where a random kill almost never lands.
 *   LSHLAB_KILL_AFTER_WRITES=N   the write to die at (unset: never)
 *   LSHLAB_KILL_COUNT_FILE=PATH  at exit, write the number of writes seen */
#define _GNU_SOURCE
#undef _FILE_OFFSET_BITS /* define pwrite and pwrite64 both, not one twice */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static long limit = -1, count;
static int torn;
static const char *target;

__attribute__((constructor)) static void setup(void)
{
    const char *s = getenv("LSHLAB_KILL_AFTER_WRITES");
    limit = s ? atol(s) : -1;
    torn = getenv("LSHLAB_KILL_TORN") != NULL;
    target = getenv("LSHLAB_KILL_PATH");
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("LSHLAB_KILL_COUNT_FILE");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%ld\n", count);
        fclose(f);
    }
}

static int is_target(int fd)
{
    char link[64], path[4096];
    if (!target)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return strstr(path, target) != NULL;
}

/* How much of this write to let through; dies after it when it is the one. */
static size_t before(int fd, size_t n, int *die)
{
    *die = 0;
    if (!is_target(fd))
        return n;
    long k = __atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST);
    if (k != limit)
        return n;
    *die = 1;
    return torn ? n / 2 : n;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "write"); /* POSIX's way past -Wpedantic */
    int die;
    size_t m = before(fd, n, &die);
    ssize_t w = real(fd, buf, m);
    if (die)
        kill(getpid(), SIGKILL);
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pwrite");
    int die;
    size_t m = before(fd, n, &die);
    ssize_t w = real(fd, buf, m, off);
    if (die)
        kill(getpid(), SIGKILL);
    return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pwrite64");
    int die;
    size_t m = before(fd, n, &die);
    ssize_t w = real(fd, buf, m, off);
    if (die)
        kill(getpid(), SIGKILL);
    return w;
}
