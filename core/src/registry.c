/* registry.c - finds strategy plugins on the search path, dlopens them and
 * refuses any whose ABI or parameter schema the core cannot trust. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "registry.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

/* Strategy names end up in fixed-width /runs fields (results.h). */
#define NAME_MAX_LEN 63

struct entry {
    const struct lsh_strategy *strategy; /* borrowed from the plugin's image */
    char *origin;                        /* owned: the file it came from */
};

struct lsh_registry {
    struct entry *entries;
    size_t n, cap;
    void **handles; /* owned dlopen handles, closed in reverse order */
    size_t n_handles, cap_handles;
    char *missing;  /* the first LSHLAB_STRATEGY_PATH folder that does not exist */
};

struct lsh_registry *lsh_registry_alloc(void)
{
    return calloc(1, sizeof(struct lsh_registry));
}

void lsh_registry_free(struct lsh_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        free(reg->entries[i].origin);
    free(reg->entries);
    for (size_t i = reg->n_handles; i > 0; i--)
        dlclose(reg->handles[i - 1]);
    free(reg->handles);
    free(reg->missing);
    free(reg);
}

const char *lsh_registry_missing_folder(const struct lsh_registry *reg)
{
    return reg ? reg->missing : NULL;
}

size_t lsh_registry_count(const struct lsh_registry *reg)
{
    return reg->n;
}

const struct lsh_strategy *lsh_registry_get(const struct lsh_registry *reg, size_t i)
{
    return i < reg->n ? reg->entries[i].strategy : NULL;
}

const char *lsh_registry_origin(const struct lsh_registry *reg, size_t i)
{
    return i < reg->n ? reg->entries[i].origin : NULL;
}

static size_t find_index(const struct lsh_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->entries[i].strategy->name, name) == 0)
            return i;
    return SIZE_MAX;
}

const struct lsh_strategy *lsh_registry_find(const struct lsh_registry *reg, const char *name)
{
    size_t i = find_index(reg, name);
    return i == SIZE_MAX ? NULL : reg->entries[i].strategy;
}

/* ---- checking a strategy struct ----------------------------------------- */

static int valid_word(const char *s, size_t max_len)
{
    size_t len = 0;
    if (!s || !*s)
        return 0;
    for (; s[len]; len++) {
        char c = s[len];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return len <= max_len;
}

/* Text printed by `lshlab strategies` (a summary, a doc line): no control bytes. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* A choice is a word (it goes into the canonical params text, where ',', '='
 * and spaces separate): 1 to NAME_MAX_LEN characters of [A-Za-z0-9_.+-]. */
static int valid_choice(const char *s)
{
    size_t len = 0;
    for (; s[len]; len++)
        if (!isalnum((unsigned char)s[len]) && !strchr("_.+-", s[len]))
            return 0;
    return len >= 1 && len <= NAME_MAX_LEN;
}

static const char *type_name(enum lsh_param_type t)
{
    switch (t) {
    case LSH_PARAM_BOOL:
        return "BOOL";
    case LSH_PARAM_INT:
        return "INT";
    case LSH_PARAM_REAL:
        return "REAL";
    case LSH_PARAM_CHOICE:
        return "CHOICE";
    case LSH_PARAM_INT_LIST:
        return "INT_LIST";
    default:
        return "END";
    }
}

static int check_bounds(const struct lsh_param *p, const char *origin, struct lsh_error *err)
{
    if (isnan(p->min) || isnan(p->max) || p->min > p->max)
        return lsh_error_set(err, LSH_EPLUGIN,
                             "plugin %s: parameter '%s' has bounds [%g, %g] (min > max)",
                             origin, p->name, p->min, p->max);
    return 0;
}

static int check_param(const struct lsh_param *p, const char *origin, struct lsh_error *err)
{
    int rc;
    switch (p->type) {
    case LSH_PARAM_BOOL:
        if (p->def_int != 0 && p->def_int != 1)
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: BOOL parameter '%s' has default %lld, not 0 or 1",
                                 origin, p->name, (long long)p->def_int);
        return 0;
    case LSH_PARAM_INT:
        if ((rc = check_bounds(p, origin, err)) < 0)
            return rc;
        if ((double)p->def_int < p->min || (double)p->def_int > p->max)
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: parameter '%s' has default %lld outside its "
                                 "bounds [%g, %g]",
                                 origin, p->name, (long long)p->def_int, p->min, p->max);
        return 0;
    case LSH_PARAM_REAL:
        if ((rc = check_bounds(p, origin, err)) < 0)
            return rc;
        if (!(p->def_real >= p->min && p->def_real <= p->max))
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: parameter '%s' has default %g outside its "
                                 "bounds [%g, %g]",
                                 origin, p->name, p->def_real, p->min, p->max);
        return 0;
    case LSH_PARAM_INT_LIST:
        return check_bounds(p, origin, err); /* the default, [], is always inside */
    case LSH_PARAM_CHOICE: {
        if (!p->choices || !p->choices[0])
            return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: CHOICE parameter '%s' has no choices",
                                 origin, p->name);
        int found = 0;
        for (size_t i = 0; p->choices[i]; i++) {
            if (!valid_choice(p->choices[i]))
                return lsh_error_set(err, LSH_EPLUGIN,
                                     "plugin %s: CHOICE parameter '%s' has choice '%.*s'; "
                                     "allowed: 1 to %d characters of A-Za-z0-9_.+-",
                                     origin, p->name, NAME_MAX_LEN + 1,
                                     printable(p->choices[i]) ? p->choices[i] : "(control bytes)",
                                     NAME_MAX_LEN);
            for (size_t j = 0; j < i; j++)
                if (strcmp(p->choices[i], p->choices[j]) == 0)
                    return lsh_error_set(err, LSH_EPLUGIN,
                                         "plugin %s: CHOICE parameter '%s' lists '%s' twice",
                                         origin, p->name, p->choices[i]);
            if (p->def_choice && strcmp(p->choices[i], p->def_choice) == 0)
                found = 1;
        }
        if (!found)
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: CHOICE parameter '%s' has default '%s', which is "
                                 "not one of its choices",
                                 origin, p->name, p->def_choice ? p->def_choice : "(null)");
        return 0;
    }
    default:
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: parameter '%s' has unknown type %d",
                             origin, p->name, (int)p->type);
    }
}

int lsh_registry_check_strategy(const struct lsh_strategy *s, const char *origin,
                                struct lsh_error *err)
{
    if (!origin)
        origin = "(built in)";
    if (!s)
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: %s() returned NULL", origin,
                             LSH_STRATEGY_ENTRY_SYMBOL);
    /* Only the two version fields may be read before they are checked. */
    if (s->abi_major != LSH_STRATEGY_ABI_MAJOR || s->abi_minor > LSH_STRATEGY_ABI_MINOR)
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: ABI %u.%u, this lshlab speaks %u.%u",
                             origin, (unsigned)s->abi_major, (unsigned)s->abi_minor,
                             (unsigned)LSH_STRATEGY_ABI_MAJOR, (unsigned)LSH_STRATEGY_ABI_MINOR);
    if (!valid_word(s->name, NAME_MAX_LEN))
        return lsh_error_set(err, LSH_EPLUGIN,
                             "plugin %s: strategy name '%s' is not [a-z0-9_]+ of at most %d "
                             "characters",
                             origin, s->name ? s->name : "(null)", NAME_MAX_LEN);
    if (!s->summary)
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: strategy '%s' has no summary", origin,
                             s->name);
    if (!printable(s->summary))
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: strategy '%s': its summary has a "
                             "control character; allowed: one line of printable text", origin,
                             s->name);
    if (!s->init)
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: strategy '%s' has a NULL init callback",
                             origin, s->name);
    if (!s->hash && !lsh_host_assigns(s))
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: strategy '%s' has a NULL hash callback "
                             "and no assign callback",
                             origin, s->name);
    if (!s->fini)
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: strategy '%s' has a NULL fini callback",
                             origin, s->name);
    if (s->state_size > LSH_HOST_STATE_MAX)
        return lsh_error_set(err, LSH_EPLUGIN,
                             "plugin %s: strategy '%s' has state_size %zu bytes; allowed: at "
                             "most %zu (1 GiB; allocate larger tables in init)",
                             origin, s->name, s->state_size, LSH_HOST_STATE_MAX);
    if (!s->params)
        return 0;
    for (size_t i = 0; s->params[i].type != LSH_PARAM_END; i++) {
        const struct lsh_param *p = &s->params[i];
        if (!valid_word(p->name, NAME_MAX_LEN))
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: parameter %zu of '%s' has name '%s', not "
                                 "[a-z0-9_]+",
                                 origin, i, s->name, p->name ? p->name : "(null)");
        if (!p->doc)
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: parameter '%s' (%s) has no doc line", origin,
                                 p->name, type_name(p->type));
        if (!printable(p->doc))
            return lsh_error_set(err, LSH_EPLUGIN,
                                 "plugin %s: parameter '%s' has a control character in its doc "
                                 "line; allowed: one line of printable text", origin, p->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->params[j].name, p->name) == 0)
                return lsh_error_set(err, LSH_EPLUGIN,
                                     "plugin %s: parameter '%s' is declared twice", origin,
                                     p->name);
        int rc = check_param(p, origin, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- who can write a plugin ------------------------------------------------- */

/* A plugin runs as lshlab: a folder or file that users other than its owner
 * (or root) can write lets them run code as us.  One rule for both:
 * refuse anything world-writable (a folder's sticky bit does not help, since
 * anyone may still add a *.so we would load), and anything group-writable
 * that belongs to another user. */
static int insecure(const struct stat *st)
{
    if (st->st_mode & S_IWOTH)
        return 1;
    return (st->st_mode & S_IWGRP) && st->st_uid != geteuid();
}

static int allow_insecure(void)
{
    const char *v = getenv("LSHLAB_ALLOW_INSECURE_PLUGINS");
    return v && strcmp(v, "1") == 0;
}

/* path (a folder, or a plugin file when is_file) is refused with a message
 * naming it when others can write it; stat follows symlinks, so the target
 * is what counts. */
static int check_writers(const char *path, int is_file, struct lsh_error *err)
{
    struct stat st;
    if (allow_insecure() || stat(path, &st) != 0 || !insecure(&st))
        return 0; /* a missing path is reported by whoever opens it */
    const char *who = st.st_mode & S_IWOTH ? "every user"
                                           : "its group, and it belongs to another user";
    return lsh_error_set(err, LSH_EPLUGIN,
                         "strategy %s %s can be written by %s (mode %04o, owner uid %u), so "
                         "anyone among them could make lshlab run their code; allowed: a %s only "
                         "its owner can write (chmod go-w '%s'), or set "
                         "LSHLAB_ALLOW_INSECURE_PLUGINS=1 to load it anyway",
                         is_file ? "plugin" : "folder", path, who, (unsigned)(st.st_mode & 07777),
                         (unsigned)st.st_uid, is_file ? "file" : "folder", path);
}

/* The folder a file is in ("." for a bare name). */
static int check_folder_of(const char *path, struct lsh_error *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return check_writers(".", 0, err);
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (!dir)
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    memcpy(dir, path, len);
    dir[len] = '\0';
    int rc = check_writers(dir, 0, err);
    free(dir);
    return rc;
}

/* ---- loading -------------------------------------------------------------- */

static int push_handle(struct lsh_registry *reg, void *handle)
{
    if (reg->n_handles == reg->cap_handles) {
        size_t cap = reg->cap_handles ? 2 * reg->cap_handles : 8;
        void **h = realloc(reg->handles, cap * sizeof *h);
        if (!h)
            return LSH_ENOMEM;
        reg->handles = h;
        reg->cap_handles = cap;
    }
    reg->handles[reg->n_handles++] = handle;
    return 0;
}

static int push_entry(struct lsh_registry *reg, const struct lsh_strategy *s, const char *origin)
{
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? 2 * reg->cap : 8;
        struct entry *e = realloc(reg->entries, cap * sizeof *e);
        if (!e)
            return LSH_ENOMEM;
        reg->entries = e;
        reg->cap = cap;
    }
    char *copy = malloc(strlen(origin) + 1);
    if (!copy)
        return LSH_ENOMEM;
    strcpy(copy, origin);
    reg->entries[reg->n].strategy = s;
    reg->entries[reg->n].origin = copy;
    reg->n++;
    return 0;
}

/* Load and check one file.  Entries at index >= first_same_dir came from the
 * folder being loaded now: a name among them is a duplicate (error); a name
 * registered before them is shadowed (silently dropped). */
static int load_one(struct lsh_registry *reg, const char *path, size_t first_same_dir,
                    struct lsh_error *err)
{
    int rc = check_writers(path, 1, err);
    if (rc < 0)
        return rc;
    /* A symlink's target sits in a folder of its own: whoever can write that
     * folder can swap the file the link names, so it is held to the same rule
     * (realpath resolves every link on the way). */
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        char target[PATH_MAX];
        if (realpath(path, target) && (rc = check_folder_of(target, err)) < 0)
            return rc;
    }
    /* dlopen searches the library path for a bare name; a file is meant. */
    char *owned = NULL;
    const char *open_path = path;
    if (!strchr(path, '/')) {
        owned = malloc(strlen(path) + 3);
        if (!owned)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        strcpy(owned, "./");
        strcat(owned, path);
        open_path = owned;
    }
    dlerror();
    void *handle = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    free(owned);
    if (!handle) {
        const char *why = dlerror();
        return lsh_error_set(err, LSH_EPLUGIN, "plugin %s: cannot load: %s", path,
                             why ? why : "unknown dlopen error");
    }
    dlerror();
    void *sym = dlsym(handle, LSH_STRATEGY_ENTRY_SYMBOL);
    const char *why = dlerror();
    if (!sym || why) {
        rc = lsh_error_set(err, LSH_EPLUGIN, "plugin %s: no %s symbol: %s", path,
                           LSH_STRATEGY_ENTRY_SYMBOL, why ? why : "symbol is NULL");
        dlclose(handle);
        return rc;
    }
    /* dlsym returns an object pointer; POSIX guarantees it converts. */
    lsh_strategy_entry_fn entry = (lsh_strategy_entry_fn)(uintptr_t)sym;
    const struct lsh_strategy *s = entry();
    rc = lsh_registry_check_strategy(s, path, err);
    if (rc < 0) {
        dlclose(handle);
        return rc;
    }
    size_t prev = find_index(reg, s->name);
    if (prev != SIZE_MAX && prev >= first_same_dir) {
        rc = lsh_error_set(err, LSH_EPLUGIN,
                           "plugin %s: strategy '%s' is also defined by %s in the same folder",
                           path, s->name, reg->entries[prev].origin);
        dlclose(handle);
        return rc;
    }
    if (prev != SIZE_MAX) {
        dlclose(handle); /* shadowed by an earlier folder, as PATH does */
        return 0;
    }
    if (push_handle(reg, handle) < 0) {
        dlclose(handle);
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    }
    if (push_entry(reg, s, path) < 0) /* the handle stays owned by reg */
        return lsh_error_set(err, LSH_ENOMEM, "out of memory");
    return 0;
}

int lsh_registry_load_file(struct lsh_registry *reg, const char *path, struct lsh_error *err)
{
    /* A lone file is its own folder: an already registered name wins. */
    int rc = check_folder_of(path, err);
    return rc < 0 ? rc : load_one(reg, path, reg->n, err);
}

static int ends_with_so(const char *name)
{
    size_t len = strlen(name);
    return len > 3 && strcmp(name + len - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The *.so names of dir in strcmp order (owned).  ENOENT is reported as
 * LSH_ENOTFOUND so the default path can skip missing folders. */
static int list_plugins(const char *dir, char ***out, size_t *n_out, struct lsh_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return lsh_error_set(err, e == ENOENT ? LSH_ENOTFOUND : LSH_EIO,
                             "strategy folder %s: %s", dir, strerror(e));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!ends_with_so(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown)
                goto oom;
            names = grown;
        }
        names[n] = malloc(strlen(de->d_name) + 1);
        if (!names[n])
            goto oom;
        strcpy(names[n++], de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return 0;
oom:
    closedir(d);
    free_names(names, n);
    return lsh_error_set(err, LSH_ENOMEM, "out of memory");
}

int lsh_registry_load_dir(struct lsh_registry *reg, const char *dir, struct lsh_error *err)
{
    char **names = NULL;
    size_t n = 0;
    int rc = list_plugins(dir, &names, &n, err);
    if (rc < 0)
        return rc;
    if ((rc = check_writers(dir, 0, err)) < 0) {
        free_names(names, n);
        return rc;
    }
    size_t first_same_dir = reg->n;
    size_t dir_len = strlen(dir);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *path = malloc(dir_len + strlen(names[i]) + 2);
        if (!path) {
            rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
            break;
        }
        strcpy(path, dir);
        if (dir_len == 0 || dir[dir_len - 1] != '/')
            strcat(path, "/");
        strcat(path, names[i]);
        struct stat st;
        /* A folder named x.so is not a plugin; stat follows symlinks. */
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = load_one(reg, path, first_same_dir, err);
        free(path);
    }
    free_names(names, n);
    return rc;
}

/* Is the running executable inside the build tree?  Then the build's
 * plugins, not an older installed set, belong to it. */
static int running_from_build_tree(void)
{
    char exe[PATH_MAX], root[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return 0;
    exe[len] = '\0';
    if (!realpath(LSHLAB_BUILD_ROOT, root))
        return 0;
    size_t root_len = strlen(root);
    if (root_len > 0 && root[root_len - 1] == '/')
        root_len--; /* root is "/" */
    return strncmp(exe, root, root_len) == 0 && exe[root_len] == '/';
}

int lsh_registry_load_default(struct lsh_registry *reg, struct lsh_error *err)
{
    const char *env = getenv("LSHLAB_STRATEGY_PATH");
    if (env && *env) {
        char *copy = malloc(strlen(env) + 1);
        if (!copy)
            return lsh_error_set(err, LSH_ENOMEM, "out of memory");
        strcpy(copy, env);
        int rc = 0;
        char *p = copy;
        while (rc == 0 && p) {
            char *colon = strchr(p, ':');
            if (colon)
                *colon = '\0';
            if (*p) { /* an empty component means nothing, not "." */
                rc = lsh_registry_load_dir(reg, p, err);
                if (rc == LSH_ENOTFOUND) { /* kept to explain an unknown name later */
                    lsh_error_clear(err);
                    rc = 0;
                    if (!reg->missing && !(reg->missing = strdup(p)))
                        rc = lsh_error_set(err, LSH_ENOMEM, "out of memory");
                }
            }
            p = colon ? colon + 1 : NULL;
        }
        free(copy);
        if (rc < 0)
            return rc;
    }
    const char *dir = running_from_build_tree() ? LSHLAB_BUILD_STRATEGY_DIR
                                                : LSHLAB_INSTALL_STRATEGY_DIR;
    int rc = lsh_registry_load_dir(reg, dir, err);
    if (rc == LSH_ENOTFOUND) {
        lsh_error_clear(err); /* the env path may have been enough */
        rc = 0;
    }
    if (rc == 0 && reg->n == 0)
        return lsh_error_set(err, LSH_ENOTFOUND,
                             "no strategy plugins found in %s or LSHLAB_STRATEGY_PATH (%s)", dir,
                             env && *env ? env : "unset");
    return rc;
}
