/* fuzz_npy.c - libFuzzer target for the .npy reader: any bytes are either
 * refused with a message, or parsed into a header whose shape, type and
 * offsets account for every byte of the file; and as a dataset (kind npy)
 * they are either refused or probed and loaded, unit by unit, into finite
 * matrices of the shape the probe announced.  The bytes are written to a
 * private file because the reader opens data by path, as lshlab does. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "fuzz_unit_check.h"
#include "npy.h"

static const char *scratch(void)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/lshlab-fuzz-npy-%ld.npy", (long)getpid());
    return path;
}

/* A parsed header must describe the file exactly. */
static void check_header(const struct lsh_npy *h, size_t size)
{
    if (h->rank < 2 || h->rank > LSH_NPY_RANK_MAX)
        abort();
    if (h->itemsize != 2 && h->itemsize != 4 && h->itemsize != 8)
        abort();
    uint64_t count = 1;
    for (int i = 0; i < h->rank; i++) {
        if (h->shape[i] == 0)
            abort();
        count *= h->shape[i];
    }
    if (count != h->count || h->data_offset + count * h->itemsize != size)
        abort();
    if (h->major < 1 || h->major > 3 || h->minor != 0)
        abort();
}

static void try_spec(const char *file, int with_kv, int separate)
{
    struct lsh_dataset_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.name = "fuzz";
    spec.kind = LSH_DATA_NPY;
    spec.q = (char *)file;
    spec.k = with_kv ? (char *)file : NULL;
    spec.v = with_kv ? (char *)file : NULL;
    spec.norm = -1;
    struct lsh_error err;
    lsh_error_clear(&err);
    struct lsh_dataset_layout lay;
    int probed = lsh_dataset_probe(&spec, NULL, &lay, &err);
    if (probed) {
        if (!err.message[0])
            abort();
        /* what the probe refused, loading refuses too (memory aside) */
        struct lsh_dataset *ds = NULL;
        lsh_error_clear(&err);
        int made = lsh_dataset_make(&spec, NULL, 7, separate, (struct lsh_dataset_unit){-1, -1},
                                    &ds, &err);
        if (!made || !err.message[0])
            abort();
        return;
    }
    if (lay.n_layers * lay.n_heads == 0 || lay.n_layers * lay.n_heads > LSH_UNITS_MAX)
        abort();
    /* the first and the last unit */
    for (int u = 0; u < 2; u++) {
        const struct lsh_dataset_unit unit = {
            u ? lay.layers[lay.n_layers - 1] : lay.layers[0],
            u ? lay.heads[lay.n_heads - 1] : lay.heads[0]};
        struct lsh_dataset *ds = NULL;
        lsh_error_clear(&err);
        int made = lsh_dataset_make(&spec, NULL, 7, separate, unit, &ds, &err);
        if (made) {
            if (made != LSH_ENOMEM) {
                fprintf(stderr, "probe accepted but make refused: %s\n", err.message);
                abort();
            }
            continue;
        }
        fuzz_check_unit(ds, &lay);
        lsh_dataset_free(ds);
    }
    lsh_dataset_layout_free(&lay);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lsh_npy h;
    struct lsh_error err;
    lsh_error_clear(&err);
    int rc = lsh_npy_parse(data, size, size, "fuzz.npy", &h, &err);
    if (rc && !err.message[0])
        abort();
    if (!rc)
        check_header(&h, size);
    const char *file = scratch();
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    try_spec(file, 0, 0);
    try_spec(file, 1, 1);
    unlink(file);
    return 0;
}
