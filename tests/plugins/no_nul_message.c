/* no_nul_message.c - a test plugin that fills all LSH_STRATEGY_MSG_MAX bytes
 * of its message without a NUL: check() with n_buckets 3 ('x'), and hash()
 * always ('y').  The host must read at most LSH_STRATEGY_MSG_MAX - 1 of them. */
#include <lshlab/strategy.h>

#include <string.h>

static int check(const struct lsh_round *round, struct lsh_strategy_error *err)
{
    if (round->n_buckets != 3)
        return 0;
    memset(err->message, 'x', sizeof err->message);
    return LSH_STRATEGY_EINVAL;
}

static int init(void *state, const struct lsh_round *round, struct lsh_strategy_error *err)
{
    (void)state, (void)round, (void)err;
    return 0;
}

static int hash(void *state, const double *x, size_t n, size_t d, uint32_t *bucket,
                struct lsh_strategy_error *err)
{
    (void)state, (void)x, (void)n, (void)d, (void)bucket;
    memset(err->message, 'y', sizeof err->message);
    return LSH_STRATEGY_EFAIL;
}

static void fini(void *state)
{
    (void)state;
}

static const struct lsh_strategy strategy = {
    .abi_major = LSH_STRATEGY_ABI_MAJOR,
    .abi_minor = LSH_STRATEGY_ABI_MINOR,
    .name = "no_nul_message",
    .summary = "test plugin: messages that fill the whole buffer, no NUL",
    .check = check,
    .init = init,
    .hash = hash,
    .fini = fini,
};

LSH_EXPORT const struct lsh_strategy *lsh_strategy_entry(void)
{
    return &strategy;
}
