/* test_fastexp.c - lsh_exp against glibc's exp: at most 2 ulp over the whole
 * range, exact edges (0, underflow, overflow), subnormal results. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "fastexp.h"

static double ulp_distance(double got, double want)
{
    if (got == want)
        return 0.0;
    double u = nextafter(want, INFINITY) - want;
    return fabs(got - want) / u;
}

static uint64_t state = 0x2385;
static double uniform(double lo, double hi)
{
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(state >> 11) * 0x1.0p-53;
}

Test(fastexp, within_2_ulp_of_libm_over_the_normal_range)
{
    double worst = 0.0, at = 0.0;
    for (int k = 0; k < 2000000; k++) {
        double x = k % 2 ? uniform(-708.3, 709.7) : uniform(-40.0, 40.0);
        double d = ulp_distance(lsh_exp(x), exp(x));
        if (d > worst) {
            worst = d;
            at = x;
        }
    }
    cr_expect_leq(worst, 2.0, "%.1f ulp at x = %.17g", worst, at);
}

Test(fastexp, subnormal_results_are_within_one_subnormal_step)
{
    const double tiny = 4.9406564584124654e-324;
    for (int k = 0; k < 200000; k++) {
        double x = uniform(-745.13, -708.4);
        double got = lsh_exp(x), want = exp(x);
        cr_assert_leq(fabs(got - want), tiny, "x = %.17g: %.17g vs %.17g", x, got, want);
    }
}

Test(fastexp, edges)
{
    cr_expect_eq(lsh_exp(0.0), 1.0);
    cr_expect_eq(lsh_exp(-1000.0), 0.0);
    cr_expect_eq(lsh_exp(-746.0), 0.0);
    cr_expect(isinf(lsh_exp(710.0)) && lsh_exp(710.0) > 0);
    cr_expect(isinf(lsh_exp(1e300)));
    cr_expect_leq(ulp_distance(lsh_exp(709.78), exp(709.78)), 2.0);
    cr_expect_leq(ulp_distance(lsh_exp(1.0), 2.718281828459045), 1.0);
    cr_expect_leq(ulp_distance(lsh_exp(-2.385), exp(-2.385)), 2.0);
}

/* The array form runs the widest vector form this CPU has; every form must
 * give the very bits of the scalar form (NaN aside: NaN in, NaN out), or
 * results would depend on the CPU.  Inputs cover the clamps, subnormal
 * results, 2^k's two halves, each table entry and lengths off the vectors. */
Test(fastexp, every_vector_form_gives_the_scalar_bits)
{
    enum { N = 4099 };
    static double x[N], y[N];
    const double edge[] = {-INFINITY, INFINITY, NAN, -746.0, -745.2, -708.5, 709.78, 710.0, 1e300,
                           -0.0, 0.0, 0.5 * 0.6931471805599453 / 16.0};
    for (int isa = 2; isa >= 0; isa--)
        for (size_t n = N - 8; n <= N; n++) {
            for (size_t k = 0; k < n; k++) {
                x[k] = k < sizeof edge / sizeof *edge ? edge[k]
                       : k % 3                        ? uniform(-90.0, 90.0)
                                                      : uniform(-6000.0, 5700.0);
                y[k] = x[k];
            }
            lsh_exp_affine_isa(y, n, 0.125, -2.385, isa);
            for (size_t k = 0; k < n; k++) {
                double want = lsh_exp(0.125 * x[k] + 2.385);
                if (isnan(want))
                    cr_assert(isnan(y[k]), "isa %d, x = %.17g", isa, x[k]);
                else
                    cr_assert_eq(memcmp(&y[k], &want, sizeof want), 0,
                                 "isa %d, x = %.17g: %a against %a", isa, x[k], y[k], want);
            }
        }
}

/* lsh_exp_keep against its definition, computed here in long double with
 * glibc's exp: kept keys (ok >= 1) get exp(scale x - shift), the others
 * exactly 0 (also where that exp overflows), and the three sums over the new
 * keys (ok == 1) alone; every form gives the bits of the scalar one. */
Test(fastexp, exp_keep_is_a_masked_exp_with_its_sums_in_every_form)
{
    enum { N = 203 };
    double x[N], y[N], g[N], want_sum[3], first[N];
    unsigned char ok[N];
    uint32_t id[N];
    for (int k = 0; k < N; k++) {
        x[k] = k == 7 ? 1e6 : uniform(-30.0, 10.0); /* key 7 off S: its exp is inf */
        /* 0: off; 1: new; 2..4: met in earlier rounds (combine rounds) */
        const double r = uniform(0.0, 1.0);
        ok[k] = k == 7 || r >= 0.8 ? 0 : r < 0.5 ? 1 : (unsigned char)(2 + (k % 3));
        g[k] = uniform(0.5, 2.0);
        id[k] = (uint32_t)(3 * k);
    }
    const uint32_t self = 3 * 40; /* key 40 is the row's own */
    ok[40] = 1;
    long double s[3] = {0};
    for (int k = 0; k < N; k++) {
        if (ok[k] != 1)
            continue;
        if (id[k] != self)
            s[0] += (long double)(x[k] * g[k]) * (x[k] * g[k]);
        const long double a = expl(0.5L * x[k] - 1.25L);
        s[1] += a;
        s[2] += a * a;
    }
    for (int isa = 2; isa >= 0; isa--) {
        memcpy(y, x, sizeof y);
        double got[3];
        lsh_exp_keep_isa(y, N, 0.5, 1.25, ok, g, id, self, got, isa);
        for (int k = 0; k < N; k++) {
            if (!ok[k])
                cr_assert_eq(memcmp(&y[k], &(double){0.0}, sizeof y[k]), 0, "isa %d key %d", isa,
                             k);
            else
                cr_assert_leq(ulp_distance(y[k], exp(0.5 * x[k] - 1.25)), 2.0, "isa %d key %d",
                              isa, k);
        }
        for (int q = 0; q < 3; q++) {
            cr_assert_leq(fabsl(got[q] - s[q]), 1e-14L * s[q], "isa %d sum %d: %.17g vs %.17Lg",
                          isa, q, got[q], s[q]);
            if (isa == 2)
                want_sum[q] = got[q];
            else
                cr_assert_eq(memcmp(&got[q], &want_sum[q], sizeof got[q]), 0, "isa %d sum %d", isa,
                             q);
        }
        if (isa == 2)
            memcpy(first, y, sizeof y);
        else
            cr_assert_eq(memcmp(first, y, sizeof y), 0, "isa %d: other bits than AVX-512's", isa);
        /* g NULL is g = 1: the same bits as ones */
        double ones[N], y1[N], y2[N], o1[3], o2[3];
        for (int k = 0; k < N; k++)
            ones[k] = 1.0;
        memcpy(y1, x, sizeof y1);
        memcpy(y2, x, sizeof y2);
        lsh_exp_keep_isa(y1, N, 0.5, 1.25, ok, ones, id, self, o1, isa);
        lsh_exp_keep_isa(y2, N, 0.5, 1.25, ok, NULL, id, self, o2, isa);
        cr_assert_eq(memcmp(y1, y2, sizeof y1), 0, "isa %d, g NULL", isa);
        cr_assert_eq(memcmp(o1, o2, sizeof o1), 0, "isa %d, g NULL: sums", isa);
    }
}

/* lsh_rounds_row against its definition in long double: the four sums over
 * a row (A_ij, 0 where N_ij = 0) and max N, with the dlog table by a permute
 * (h_max <= 15) and by a gather (h_max 40); the scalar form gives the
 * AVX-512 form's bits. */
Test(fastexp, rounds_row_sums_match_their_definition_in_every_form)
{
    enum { N = 203 };
    const uint32_t hmaxes[3] = {7, 15, 40};
    for (int c = 0; c < 3; c++) {
        const uint32_t hm = hmaxes[c];
        double a[N], dlog[41];
        unsigned char ok[N];
        for (uint32_t k = 0; k <= hm; k++)
            dlog[k] = k > 1 ? k * log((double)k) - (k - 1) * log((double)(k - 1)) : 0.0;
        uint32_t want_max = 0;
        long double s[4] = {0};
        for (int k = 0; k < N; k++) {
            ok[k] = uniform(0.0, 1.0) < 0.3 ? 0 : (unsigned char)(1 + (uint32_t)k * 7 % hm);
            a[k] = ok[k] ? uniform(0.0, 0.1) : 0.0;
            const long double x = a[k];
            s[0] += x;
            s[1] += x * x;
            s[2] += (2.0L * ok[k] - 1.0L) * x * x;
            s[3] += (long double)dlog[ok[k]] * x;
            want_max = ok[k] > want_max ? ok[k] : want_max;
        }
        double first[4];
        for (int isa = 2; isa >= 0; isa -= 2) {
            double got[4] = {0};
            const uint32_t mx = lsh_rounds_row_isa(a, ok, N, dlog, hm, got, isa);
            cr_assert_eq(mx, want_max, "h_max %u isa %d: max N %u, want %u", hm, isa, mx,
                         want_max);
            for (int q = 0; q < 4; q++) {
                cr_assert_leq(fabsl(got[q] - s[q]), 1e-14L * fabsl(s[q]),
                              "h_max %u isa %d sum %d: %.17g vs %.17Lg", hm, isa, q, got[q], s[q]);
                if (isa == 2)
                    first[q] = got[q];
                else
                    cr_assert_eq(memcmp(&got[q], &first[q], sizeof got[q]), 0,
                                 "h_max %u sum %d: scalar bits differ from AVX-512's", hm, q);
            }
        }
    }
}
