/* config.h - an experiment as read from YAML (SPEC section 10), validated.
 *
 * lsh_config_load() parses, type-checks and range-checks everything, fills
 * every default, and checks each strategy's parameters against the plugin's
 * published schema (plan.c then checks n, chunk_size and reference_rows
 * against each dataset's shape and runs each plugin's check() on every point,
 * once data shapes are known).  CHOICE values point into the plugins' own
 * words: free a config before the registry it was loaded with.  Errors
 * carry file:line:column, the offending value and what is allowed; for a
 * misspelt key, the nearest valid one.  After a successful load the engine
 * never needs to validate again.
 */
#ifndef LSH_CONFIG_H
#define LSH_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "lshlab/strategy.h"
#include "point.h"

struct lsh_registry;

enum lsh_experiment { LSH_EXPERIMENT_SWEEP, LSH_EXPERIMENT_COLLISION };
enum lsh_data_kind { LSH_DATA_GAUSSIAN, LSH_DATA_CLUSTERED, LSH_DATA_HDF5, LSH_DATA_NPY };
enum lsh_keys { LSH_KEYS_SHARED, LSH_KEYS_SHARED_NORMALIZED, LSH_KEYS_SEPARATE };

/* Limits lsh_config_load() checks, so that whatever validates also runs.
 * Each is generous for a study and small enough that the plan, the results
 * columns and the per-round arrays provably fit (README lists them). */
#define LSH_CONFIG_SIZE_MAX ((size_t)16 << 20) /* bytes of YAML */
#define LSH_CONFIG_DEPTH_MAX 64       /* nesting of YAML lists and mappings */
#define LSH_NAME_MAX 63               /* names: a 64-byte /runs column with its NUL */
#define LSH_PARAMS_MAX 255            /* a parameter set's canonical text: 256 bytes */
#define LSH_TOPK_MAX 64               /* attention.topk values (one counter each) */
#define LSH_N_HASHES_MAX 1024         /* rounds: H x n bucket ids, H x 512 per tile */
#define LSH_REPEATS_MAX 10000
#define LSH_LOOK_BACK_MAX ((uint32_t)1 << 20) /* (look_back + 1) x chunk_size fits */
#define LSH_POINTS_MAX ((size_t)1 << 22) /* plan entries (24-80 bytes) and /runs rows */
#define LSH_ROWS_MAX (((size_t)1 << 31) - 1) /* n: 32-bit row ids, one bit marking keys */
#define LSH_UNITS_MAX ((size_t)1 << 16) /* (layer, head) problems one dataset selects */
#define LSH_AXIS_MAX ((uint32_t)1 << 20) /* layer and head indices are below it; a
                                            template's `all` looks no further */

/* dump: flags */
enum {
    LSH_DUMP_DATA = 1u << 0,
    LSH_DUMP_BUCKETS = 1u << 1,
    LSH_DUMP_HASH_PARAMS = 1u << 2,
    LSH_DUMP_ROWS = 1u << 3
};

/* Where a value stands in the YAML text (1-based), for errors found later. */
struct lsh_mark {
    int line, column;
};

struct lsh_dataset_spec {
    char *name;                 /* unique within the config */
    enum lsh_data_kind kind;
    size_t n, d, d_v;           /* hdf5: n and d come from the file (0 until loaded);
                                   d_v: 0 means "d" (or the file's V width) */
    size_t clusters;            /* clustered: default 16 */
    double spread;              /* clustered: default 0.5 */
    double norm;                /* clustered: default sqrt(d); < 0 means "default" */
    char *file, *q, *k, *v;     /* hdf5: file path (relative to the config's folder
                                   when not absolute) and dataset paths; k, v may be NULL.
                                   npy: file is NULL, q, k, v name .npy files (relative
                                   to the config's folder when not absolute).  q, k, v
                                   may be templates holding {layer} and/or {head} */
    size_t n_layers, n_heads;   /* hdf5, npy: how many `layers:` / `heads:` lists */
    uint32_t *layers, *heads;   /* ascending, distinct, each < LSH_AXIS_MAX; owned;
                                   NULL (count 0): all, the default */
    struct lsh_mark layers_at, heads_at; /* where given (line 0: not given) */
    size_t reference_rows;      /* 0: all rows */
    struct lsh_mark reference_rows_at; /* where it is given (line 0: not given) */
    int line, column;           /* where the entry starts, for later errors */
};

struct lsh_attention {
    enum lsh_keys keys;
    int exclude_self;           /* resolved: default true unless keys separate */
    int causal;
    int scale_auto;             /* scale: auto -> 1/sqrt(d) per dataset */
    double scale;               /* when !scale_auto */
    size_t n_topk;
    uint32_t *topk;             /* sorted ascending, unique, each >= 1; default {1, 10} */
    int oracle;                 /* the budget-matched oracle columns (SPEC 13); default 0 */
};

/* One concrete parameter setting of a strategy (one element of the cartesian
 * product of its params: lists). */
struct lsh_param_set {
    struct lsh_param_value *values; /* n_params entries, schema order, owned */
    size_t n_params;
    char *canonical;            /* "orthogonal=false,factors=[4,4]" (schema order,
                                   every parameter): the /runs params column and
                                   part of the point seed */
};

struct lsh_strategy_spec {
    char *name;
    const struct lsh_strategy *strategy; /* borrowed from the registry */
    int skip_invalid;
    size_t n_sets;
    struct lsh_param_set *sets; /* the expanded parameter sweep, owned */
    int line, column;
};

struct lsh_sweep {
    size_t n_n_hashes;  uint32_t *n_hashes;   /* sorted ascending, unique */
    size_t n_n_buckets; uint32_t *n_buckets;  /* in the order given */
    struct lsh_mark *n_buckets_marks;         /* one per n_buckets value */
    size_t n_mode;      enum lsh_mode *mode;
    size_t n_chunk_size; uint32_t *chunk_size; /* default {64} */
    struct lsh_mark *chunk_size_marks;        /* one per value; NULL for the default */
    struct lsh_mark chunked_at;               /* where mode chunked is given */
    size_t n_look_back; uint32_t *look_back;   /* default {1} */
    size_t n_window;    enum lsh_window *window;
    size_t n_combine;   enum lsh_combine *combine;
    struct lsh_mark *combine_marks;           /* one per value; NULL for the default */
    /* candidate rules (SPEC 13), each in the order given, default {1} / {0} / {0} */
    size_t n_min_collisions; uint32_t *min_collisions; /* each in [1, LSH_N_HASHES_MAX] */
    struct lsh_mark *min_collisions_marks;    /* one per value; NULL for the default */
    size_t n_sink;      uint32_t *sink;       /* each <= LSH_ROWS_MAX */
    struct lsh_mark *sink_marks;
    size_t n_local;     uint32_t *local;      /* each <= LSH_ROWS_MAX */
    struct lsh_mark *local_marks;
};

struct lsh_collision_spec {
    size_t d;
    size_t n_angles;
    double *angles;             /* degrees, in (0, 180] order given */
    size_t pairs;
    struct lsh_mark pairs_at;   /* where pairs is given, for the plan's memory check */
};

struct lsh_config {
    char *path;                 /* as given */
    char *text;                 /* the YAML text as read */
    char *name;
    uint64_t seed;              /* default 0 */
    uint32_t repeats;           /* default 1 */
    char *output;               /* default results/<name>.h5 */
    enum lsh_experiment experiment;
    size_t n_datasets;
    struct lsh_dataset_spec *datasets;
    struct lsh_attention attention;
    size_t n_strategies;
    struct lsh_strategy_spec *strategies;
    struct lsh_sweep sweep;
    unsigned dump;              /* LSH_DUMP_* */
    struct lsh_collision_spec collision;
};

/* Read, parse and validate a config file.  On success *out is owned by the
 * caller (lsh_config_free).  On failure err says where and why. */
int lsh_config_load(const char *path, const struct lsh_registry *reg,
                    struct lsh_config **out, struct lsh_error *err);

/* The same from text already in memory; `path` names it in errors and is
 * used to resolve relative hdf5 file paths (may be NULL). */
int lsh_config_parse(const char *text, size_t len, const char *path,
                     const struct lsh_registry *reg, struct lsh_config **out,
                     struct lsh_error *err);

void lsh_config_free(struct lsh_config *cfg);

/* Every default filled in, as YAML (owned by the caller, free()). */
char *lsh_config_resolved_yaml(const struct lsh_config *cfg);

/* Names for enums, as written in YAML and in /runs. */
const char *lsh_keys_name(enum lsh_keys k);
const char *lsh_mode_name(enum lsh_mode m);
const char *lsh_window_name(enum lsh_window w);
const char *lsh_combine_name(enum lsh_combine c);
const char *lsh_data_kind_name(enum lsh_data_kind k);

#endif
