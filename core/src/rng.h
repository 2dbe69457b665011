/* rng.h - seeds as pure functions of what is drawn (SPEC 7), and the random
 * streams handed to plugins.
 *
 * Seeds: lsh_seed_* fold values into a 64-bit state with the splitmix64
 * finaliser, so a seed depends only on the config seed and the names and
 * numbers of what is drawn, never on order or threads.
 *
 * Streams: a GSL generator of our own type, xoshiro256** seeded by splitmix64
 * from the full 64-bit seed (GSL's built-in types keep only 32 bits of it),
 * so GSL's samplers (gsl_ran_gaussian_ziggurat, ...) run on it.
 */
#ifndef LSH_RNG_H
#define LSH_RNG_H

#include <stddef.h>
#include <stdint.h>

#include <gsl/gsl_rng.h>

#include "lshlab/strategy.h"

uint64_t lsh_splitmix64(uint64_t *state);
uint64_t lsh_seed_u64(uint64_t h, uint64_t v);
uint64_t lsh_seed_bytes(uint64_t h, const void *bytes, size_t len);
uint64_t lsh_seed_str(uint64_t h, const char *s);

/* h with a (layer, head) of real data mixed in (SPEC 11.2): each axis that is
 * present (>= 0) as mix_str("layer") then mix_u64(layer), and likewise
 * "head"; h unchanged when both are -1, so data without axes keeps the
 * seeds of format version 1. */
uint64_t lsh_seed_unit(uint64_t h, int32_t layer, int32_t head);

/* The GSL type behind every stream (exported so tests can use gsl_rng_*). */
extern const gsl_rng_type *lsh_rng_xoshiro256;

/* struct lsh_rng is a gsl_rng; alloc returns NULL when out of memory. */
struct lsh_rng *lsh_rng_alloc(uint64_t seed);
void lsh_rng_free(struct lsh_rng *rng);
gsl_rng *lsh_rng_gsl(struct lsh_rng *rng);

double lsh_rng_normal(struct lsh_rng *rng);
double lsh_rng_uniform(struct lsh_rng *rng);
uint64_t lsh_rng_uniform_int(struct lsh_rng *rng, uint64_t n);

#endif
