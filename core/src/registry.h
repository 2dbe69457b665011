/* registry.h - finds, loads (dlopen) and checks strategy plugins.
 *
 * Search order: every folder of $LSHLAB_STRATEGY_PATH (colon-separated), then
 * the build tree's strategies/ folder when the running binary is in the build
 * tree, else the install folder.  Every *.so in a folder is tried.  A name
 * already found in an earlier folder shadows later ones (like PATH); the same
 * name twice in one folder is an error.  A plugin is refused (with a message
 * naming the file and the reason) when its ABI major differs or its minor is
 * newer than ours, a required callback is NULL, its name is not [a-z0-9_]+,
 * or its parameter schema is inconsistent (a default outside its bounds...),
 * or its state_size is over LSH_HOST_STATE_MAX (host.h).
 *
 * Who can write a plugin: a plugin runs as lshlab, so a folder on the path,
 * or a plugin file, that others can write is refused (LSH_EPLUGIN, naming
 * it): anything world-writable (for a folder, even with the sticky bit: anyone
 * could add a *.so to it), and anything group-writable owned by another user
 * than the one running lshlab.  stat() follows symlinks: the target counts.
 * LSHLAB_ALLOW_INSECURE_PLUGINS=1 in the environment turns the check off
 * (e.g. for a shared mount that shows every file as mode 0777).
 */
#ifndef LSH_REGISTRY_H
#define LSH_REGISTRY_H

#include <stddef.h>

#include "error.h"
#include "lshlab/strategy.h"

struct lsh_registry;

/* An empty registry (owned; lsh_registry_free). NULL when out of memory. */
struct lsh_registry *lsh_registry_alloc(void);
void lsh_registry_free(struct lsh_registry *reg);

/* Load the plugins of the default search path.  A faulty plugin is an error. */
int lsh_registry_load_default(struct lsh_registry *reg, struct lsh_error *err);

/* The first folder of LSHLAB_STRATEGY_PATH that load_default found missing
 * (skipped), or NULL: what an unknown strategy name may come from. */
const char *lsh_registry_missing_folder(const struct lsh_registry *reg);

/* Load every plugin in one folder (shadowing as above). */
int lsh_registry_load_dir(struct lsh_registry *reg, const char *dir, struct lsh_error *err);

/* Load one plugin file. */
int lsh_registry_load_file(struct lsh_registry *reg, const char *path, struct lsh_error *err);

/* Check a strategy struct as the loader does (exposed for tests). */
int lsh_registry_check_strategy(const struct lsh_strategy *s, const char *origin,
                                struct lsh_error *err);

size_t lsh_registry_count(const struct lsh_registry *reg);
const struct lsh_strategy *lsh_registry_get(const struct lsh_registry *reg, size_t i);
const char *lsh_registry_origin(const struct lsh_registry *reg, size_t i); /* file path */
/* NULL when no strategy has that name. */
const struct lsh_strategy *lsh_registry_find(const struct lsh_registry *reg, const char *name);

#endif
