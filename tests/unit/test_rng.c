/* test_rng.c - seeds and random streams: known answers, independence of
 * what is drawn, and the Gaussian sampler's moments. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "rng.h"

/* splitmix64 from Vigna's reference code, seeded with 0: these are the first
 * outputs published with it (and used by many ports as test vectors). */
Test(rng, splitmix64_matches_reference_outputs)
{
    uint64_t s = 0;
    cr_expect_eq(lsh_splitmix64(&s), 0xe220a8397b1dcdafULL);
    cr_expect_eq(lsh_splitmix64(&s), 0x6e789e6aa1b965f4ULL);
    cr_expect_eq(lsh_splitmix64(&s), 0x06c45d188009454fULL);
}

Test(rng, seed_depends_on_every_byte_and_on_boundaries)
{
    uint64_t base = lsh_seed_u64(0, 2020);
    cr_expect_neq(lsh_seed_str(base, "rotation"), lsh_seed_str(base, "rotatioN"));
    /* "ab" + "c" and "a" + "bc" must differ: lengths are folded in */
    cr_expect_neq(lsh_seed_str(lsh_seed_str(base, "ab"), "c"),
                  lsh_seed_str(lsh_seed_str(base, "a"), "bc"));
    cr_expect_neq(lsh_seed_u64(base, 1), lsh_seed_u64(base, 2));
    cr_expect_neq(lsh_seed_u64(lsh_seed_u64(0, 1), 2), lsh_seed_u64(lsh_seed_u64(0, 2), 1));
    cr_expect_eq(lsh_seed_str(base, "clustered-4k"), lsh_seed_str(base, "clustered-4k"));
}

Test(rng, stream_is_a_pure_function_of_its_64_bit_seed)
{
    /* seeds that differ only above bit 32 give different streams (GSL's own
     * generators would keep only the low 32 bits) */
    struct lsh_rng *a = lsh_rng_alloc(0x100000001ULL), *b = lsh_rng_alloc(0x200000001ULL);
    struct lsh_rng *c = lsh_rng_alloc(0x100000001ULL);
    int differ = 0;
    for (int k = 0; k < 16; k++) {
        double x = lsh_rng_uniform(a), y = lsh_rng_uniform(b), z = lsh_rng_uniform(c);
        differ |= x != y;
        cr_expect_eq(x, z);
        cr_expect(x >= 0.0 && x < 1.0);
    }
    cr_expect(differ);
    lsh_rng_free(a);
    lsh_rng_free(b);
    lsh_rng_free(c);
}

Test(rng, normal_draws_have_mean_0_and_variance_1)
{
    struct lsh_rng *r = lsh_rng_alloc(12345);
    const int n = 200000;
    double s = 0, s2 = 0, s4 = 0;
    for (int k = 0; k < n; k++) {
        double x = lsh_rng_normal(r);
        s += x;
        s2 += x * x;
        s4 += x * x * x * x;
    }
    lsh_rng_free(r);
    double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
    /* standard errors: mean 1/sqrt(n) = 0.0022, variance sqrt(2/n) = 0.0032,
     * fourth moment sqrt(96/n) = 0.022; allow 5 of them */
    cr_expect(fabs(mean) < 0.011, "mean %g", mean);
    cr_expect(fabs(var - 1.0) < 0.016, "variance %g", var);
    cr_expect(fabs(kurt - 3.0) < 0.11, "E x^4 = %g", kurt);
}

Test(rng, uniform_int_is_uniform_and_in_range)
{
    struct lsh_rng *r = lsh_rng_alloc(99);
    enum { K = 7, N = 70000 };
    int count[K] = {0};
    for (int t = 0; t < N; t++) {
        uint64_t v = lsh_rng_uniform_int(r, K);
        cr_assert_lt(v, K);
        count[v]++;
    }
    lsh_rng_free(r);
    /* chi-square with 6 degrees of freedom; 22.46 is its 0.999 quantile */
    double chi = 0;
    for (int k = 0; k < K; k++)
        chi += (count[k] - N / K) * (double)(count[k] - N / K) / (N / K);
    cr_expect_lt(chi, 22.46, "chi^2 = %g", chi);
}
