/* test_rng.c - seeds and random streams: known answers, independence of
 * what is drawn, and the Gaussian sampler's moments. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"

/* splitmix64 from Vigna's reference code: the first outputs published with
 * it for seed 0 and for seed 1234567 (used by many ports as test vectors;
 * checked against the independent Python below). */
Test(rng, splitmix64_matches_reference_outputs)
{
    uint64_t s = 0;
    cr_expect_eq(lsh_splitmix64(&s), 0xe220a8397b1dcdafULL);
    cr_expect_eq(lsh_splitmix64(&s), 0x6e789e6aa1b965f4ULL);
    cr_expect_eq(lsh_splitmix64(&s), 0x06c45d188009454fULL);
    static const uint64_t want[5] = {6457827717110365317ULL, 3203168211198807973ULL,
                                     9817491932198370423ULL, 4593380528125082431ULL,
                                     16408922859458223821ULL};
    s = 1234567;
    for (int k = 0; k < 5; k++)
        cr_expect_eq(lsh_splitmix64(&s), want[k], "output %d", k);
}

/* The golden values below were computed once with this independent Python
 * (Debian's /usr/bin/python3), written from the published algorithms and
 * from SPEC 7's seed rule, not from lshlab's code or output:
 *
 *   M = 2**64 - 1
 *   def splitmix64(s):                      # returns (new state, output)
 *       s = (s + 0x9e3779b97f4a7c15) & M; z = s
 *       z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
 *       z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
 *       return s, z ^ (z >> 31)
 *   def seed_u64(h, v): return splitmix64(h ^ splitmix64(v)[1])[1]
 *   def seed_bytes(h, b):                   # length first, then 8-byte LE words
 *       h = seed_u64(h, len(b))
 *       for i in range(0, len(b), 8): h = seed_u64(h, int.from_bytes(b[i:i+8], "little"))
 *       return h
 *   def rotl(x, k): return ((x << k) | (x >> (64 - k))) & M
 *   def xoshiro(st, count):                 # xoshiro256**, Blackman & Vigna
 *       out = []
 *       for _ in range(count):
 *           out.append((rotl((st[1] * 5) & M, 7) * 9) & M); t = (st[1] << 17) & M
 *           st[2] ^= st[0]; st[3] ^= st[1]; st[1] ^= st[2]; st[0] ^= st[3]; st[2] ^= t
 *           st[3] = rotl(st[3], 45)
 *       return out
 *   def stream(seed, count):                # state = 4 splitmix64 outputs of the seed
 *       st = []
 *       for _ in range(4): seed, v = splitmix64(seed); st.append(v)
 *       return xoshiro(st, count)
 */

/* xoshiro256** from the state {1, 2, 3, 4}: the reference implementation's
 * well-known first outputs.  uniform_int(UINT64_MAX) returns a raw output
 * (only UINT64_MAX itself would be redrawn); gsl_rng_get its top 32 bits and
 * uniform its top 53. */
Test(rng, xoshiro256starstar_matches_reference_outputs)
{
    struct lsh_rng *r = lsh_rng_alloc(0);
    uint64_t *state = lsh_rng_gsl(r)->state; /* struct xoshiro { uint64_t s[4]; } */
    state[0] = 1;
    state[1] = 2;
    state[2] = 3;
    state[3] = 4;
    cr_expect_eq(lsh_rng_uniform_int(r, UINT64_MAX), 11520ULL);
    cr_expect_eq(lsh_rng_uniform_int(r, UINT64_MAX), 0ULL);
    cr_expect_eq(lsh_rng_uniform_int(r, UINT64_MAX), 1509978240ULL);
    cr_expect_eq(lsh_rng_uniform_int(r, UINT64_MAX), 1215971899390074240ULL);
    cr_expect_eq(gsl_rng_get(lsh_rng_gsl(r)), 1216172134540287360ULL >> 32);
    cr_expect_eq(lsh_rng_uniform(r), (double)(607988272756665600ULL >> 11) * 0x1.0p-53);
    lsh_rng_free(r);
}

/* A stream's state is four splitmix64 outputs of its seed: stream(2385, 4). */
Test(rng, stream_of_seed_2385_starts_with_known_outputs)
{
    static const uint64_t want[4] = {0xb045b974e5520fb8ULL, 0xdff7c5e2f7981d47ULL,
                                     0xd4a07718d443cda0ULL, 0xf49925be5aa83ca2ULL};
    struct lsh_rng *r = lsh_rng_alloc(2385);
    for (int k = 0; k < 4; k++)
        cr_expect_eq(lsh_rng_uniform_int(r, UINT64_MAX), want[k], "output %d", k);
    lsh_rng_free(r);
}

/* lsh_seed_* against seed_u64 / seed_bytes above; "clustered-4k" is 12 bytes,
 * so it folds a full word and a partial one. */
Test(rng, seed_functions_match_known_values)
{
    cr_expect_eq(lsh_seed_u64(0, 2020), 12791637790781839857ULL);
    cr_expect_eq(lsh_seed_str(12791637790781839857ULL, "rotation"), 14928891949297922432ULL);
    cr_expect_eq(lsh_seed_str(0, "clustered-4k"), 15990413591879681548ULL);
    cr_expect_eq(lsh_seed_bytes(7, "", 0), 7259628554680249319ULL);
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
