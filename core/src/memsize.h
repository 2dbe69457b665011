/* memsize.h - byte counts that saturate instead of wrapping, for the memory
 * figures each module gives the plan (lsh_*_bytes): a size from the input
 * that cannot be addressed comes out as SIZE_MAX, which no limit admits. */
#ifndef LSH_MEMSIZE_H
#define LSH_MEMSIZE_H

#include <stddef.h>
#include <stdint.h>

/* What a module allocates for one dataset: bytes that do not depend on the
 * thread count, and bytes each worker thread adds. */
struct lsh_bytes {
    size_t shared, per_thread;
};

static inline size_t lsh_size_mul(size_t a, size_t b)
{
    size_t p;
    return __builtin_mul_overflow(a, b, &p) ? SIZE_MAX : p;
}

static inline size_t lsh_size_add(size_t a, size_t b)
{
    size_t s;
    return __builtin_add_overflow(a, b, &s) ? SIZE_MAX : s;
}

/* a * b * c, saturating. */
static inline size_t lsh_size_mul3(size_t a, size_t b, size_t c)
{
    return lsh_size_mul(lsh_size_mul(a, b), c);
}

/* x + y, both shares, saturating. */
static inline struct lsh_bytes lsh_bytes_add(struct lsh_bytes x, struct lsh_bytes y)
{
    return (struct lsh_bytes){lsh_size_add(x.shared, y.shared),
                              lsh_size_add(x.per_thread, y.per_thread)};
}

/* shared + threads x per_thread, saturating. */
static inline size_t lsh_bytes_total(struct lsh_bytes b, unsigned threads)
{
    return lsh_size_add(b.shared, lsh_size_mul(b.per_thread, threads));
}

#endif
