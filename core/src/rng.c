/* rng.c - seed mixing and the xoshiro256** GSL generator type behind the
 * random streams handed to plugins (host.c holds the services table). */
#include "rng.h"

#include <string.h>

#include <gsl/gsl_randist.h>

uint64_t lsh_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t lsh_seed_u64(uint64_t h, uint64_t v)
{
    uint64_t s = h ^ lsh_splitmix64(&v);
    return lsh_splitmix64(&s);
}

uint64_t lsh_seed_bytes(uint64_t h, const void *bytes, size_t len)
{
    /* Length first, so "ab"+"c" and "a"+"bc" fold differently. */
    h = lsh_seed_u64(h, (uint64_t)len);
    const unsigned char *p = bytes;
    while (len > 0) {
        uint64_t w = 0;
        size_t take = len < 8 ? len : 8;
        for (size_t i = 0; i < take; i++)
            w |= (uint64_t)p[i] << (8 * i); /* little-endian on every host */
        h = lsh_seed_u64(h, w);
        p += take;
        len -= take;
    }
    return h;
}

uint64_t lsh_seed_str(uint64_t h, const char *s)
{
    return lsh_seed_bytes(h, s, strlen(s));
}

uint64_t lsh_seed_unit(uint64_t h, int32_t layer, int32_t head)
{
    if (layer >= 0)
        h = lsh_seed_u64(lsh_seed_str(h, "layer"), (uint64_t)layer);
    if (head >= 0)
        h = lsh_seed_u64(lsh_seed_str(h, "head"), (uint64_t)head);
    return h;
}

/* ---- xoshiro256** as a gsl_rng_type --------------------------------------- */

struct xoshiro {
    uint64_t s[4];
};

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t xoshiro_next(struct xoshiro *x)
{
    uint64_t *s = x->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void xoshiro_set(void *state, unsigned long seed)
{
    struct xoshiro *x = state;
    uint64_t sm = (uint64_t)seed;
    for (int i = 0; i < 4; i++)
        x->s[i] = lsh_splitmix64(&sm);
}

/* GSL's samplers assume get() spans [min, max]; 32 bits keeps every
 * gsl_rng_uniform_int bound valid, and get_double uses the top 53 bits. */
static unsigned long xoshiro_get(void *state)
{
    return (unsigned long)(xoshiro_next(state) >> 32);
}

static double xoshiro_get_double(void *state)
{
    return (double)(xoshiro_next(state) >> 11) * 0x1.0p-53;
}

static const gsl_rng_type xoshiro_type = {
    "lsh_xoshiro256starstar", 0xffffffffUL, 0, sizeof(struct xoshiro),
    xoshiro_set, xoshiro_get, xoshiro_get_double,
};

const gsl_rng_type *lsh_rng_xoshiro256 = &xoshiro_type;

_Static_assert(sizeof(unsigned long) == 8, "64-bit seeds need a 64-bit unsigned long");

struct lsh_rng *lsh_rng_alloc(uint64_t seed)
{
    gsl_rng *r = gsl_rng_alloc(lsh_rng_xoshiro256);
    if (r)
        gsl_rng_set(r, (unsigned long)seed);
    return (struct lsh_rng *)r;
}

void lsh_rng_free(struct lsh_rng *rng)
{
    if (rng)
        gsl_rng_free((gsl_rng *)rng);
}

gsl_rng *lsh_rng_gsl(struct lsh_rng *rng)
{
    return (gsl_rng *)rng;
}

double lsh_rng_normal(struct lsh_rng *rng)
{
    return gsl_ran_gaussian_ziggurat((gsl_rng *)rng, 1.0);
}

double lsh_rng_uniform(struct lsh_rng *rng)
{
    return gsl_rng_uniform((gsl_rng *)rng);
}

uint64_t lsh_rng_uniform_int(struct lsh_rng *rng, uint64_t n)
{
    /* Rejection sampling on 64-bit draws: exact for any n, unlike
     * gsl_rng_uniform_int which is limited to the generator's range. */
    gsl_rng *r = (gsl_rng *)rng;
    struct xoshiro *x = r->state;
    if (n <= 1)
        return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do
        v = xoshiro_next(x);
    while (v >= limit);
    return v % n;
}
