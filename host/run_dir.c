/* run_dir.c: the checkpoint files of a run directory (see run_dir.h). */
#define _POSIX_C_SOURCE 200809L /* mkdir, link, opendir */
#include "run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

enum { PATH_LEN = 1024 };

bool wg_make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[PATH_LEN];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return wg_input_error(err, errlen, "cannot create the directory %s: %s", buf, strerror(errno));
            if (end) return true;
            *p = '/';
        }
    }
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A step file's name: step_<8 digits>.safetensors (more digits past 10^8 steps). */
static bool is_step_file(const char *name)
{
    size_t n = strlen(name);
    if (n < 5 + 8 + 12 || strncmp(name, "step_", 5) || strcmp(name + n - 12, ".safetensors")) return false;
    for (size_t i = 5; i < n - 12; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    return true;
}

static int cmp_names(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = strlen(x), ly = strlen(y); /* more digits: a later step */
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* The step files of dir/checkpoints, oldest first; caller frees each and the array. */
static char **step_files(const char *dir, int *count)
{
    char path[PATH_LEN];
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    *count = 0;
    DIR *d = opendir(path);
    if (d == NULL) return NULL;
    char **names = NULL;
    int cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!is_step_file(e->d_name)) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            names = realloc(names, (size_t)cap * sizeof(*names));
            WG_ASSERT(names != NULL, "out of memory listing %s", path);
        }
        names[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*count) qsort(names, (size_t)*count, sizeof(*names), cmp_names);
    return names;
}

/* Remove the oldest step files beyond keep (all with keep = 0). */
static void prune(const char *dir, int keep)
{
    int n;
    char **names = step_files(dir, &n);
    for (int i = 0; i < n; i++) {
        if (i < n - keep) {
            char path[PATH_LEN];
            snprintf(path, sizeof(path), "%s/checkpoints/%s", dir, names[i]);
            if (remove(path) != 0) fprintf(stderr, "wageubn: warning: cannot remove %s: %s\n", path, strerror(errno));
        }
        free(names[i]);
    }
    free(names);
}

int wg_run_dir_prepare(const char *dir, bool resume, bool overwrite, char *err, size_t errlen)
{
    char path[PATH_LEN];
    snprintf(path, sizeof(path), "%s/latest.safetensors", dir);
    if (!resume && exists(path)) {
        if (!overwrite)
            return wg_input_error(err, errlen,
                                  "%s already holds a run (%s); continue it with --resume %s, start over with "
                                  "--overwrite, or choose another directory with --out",
                                  dir, path, dir),
                   2;
        const char *own[] = {"latest.safetensors", "best.safetensors", "summary.json"};
        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, own[i]);
            if (remove(path) != 0 && errno != ENOENT)
                return wg_input_error(err, errlen, "cannot remove %s: %s", path, strerror(errno)), 1;
        }
        prune(dir, 0);
    }
    snprintf(path, sizeof(path), "%s/checkpoints", dir);
    return wg_make_dirs(path, err, errlen) ? 0 : 1;
}

/* dst becomes a hard link to src, atomically; false when links are not possible. */
static bool link_atomic(const char *src, const char *dst)
{
    char tmp[PATH_LEN + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", dst, (long)getpid());
    remove(tmp);
    if (link(src, tmp) != 0) return false;
    if (rename(tmp, dst) != 0) {
        remove(tmp);
        return false;
    }
    return true;
}

/* dst: a link to src, or else a copy written atomically. */
static bool publish(const char *src, const char *dst, wg_net *net, const wg_config *cfg, const wg_ckpt_position *pos,
                    char *err, size_t errlen)
{
    return link_atomic(src, dst) || wg_checkpoint_save(dst, net, cfg, pos, err, errlen);
}

bool wg_run_dir_save(const char *dir, int keep, bool best, wg_net *net, const wg_config *cfg,
                     const wg_ckpt_position *pos, char *written, size_t writtenlen, char *err, size_t errlen)
{
    char latest[PATH_LEN], best_path[PATH_LEN];
    snprintf(latest, sizeof(latest), "%s/latest.safetensors", dir);
    snprintf(best_path, sizeof(best_path), "%s/best.safetensors", dir);
    if (keep > 0) {
        snprintf(written, writtenlen, "%s/checkpoints/step_%08" PRId64 ".safetensors", dir, pos->step);
        if (!wg_checkpoint_save(written, net, cfg, pos, err, errlen) ||
            !publish(written, latest, net, cfg, pos, err, errlen))
            return false;
        prune(dir, keep);
    } else {
        snprintf(written, writtenlen, "%s", latest);
        if (!wg_checkpoint_save(latest, net, cfg, pos, err, errlen)) return false;
    }
    return !best || publish(latest, best_path, net, cfg, pos, err, errlen);
}

void wg_run_dir_of(const char *arg, char *dir, size_t dirlen)
{
    struct stat st;
    snprintf(dir, dirlen, "%s", arg);
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) return;
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, dirlen, ".");
        return;
    }
    *slash = '\0';
    size_t n = strlen(dir);
    if (n >= 11 && !strcmp(dir + n - 11, "checkpoints") && (n == 11 || dir[n - 12] == '/')) {
        if (n == 11)
            snprintf(dir, dirlen, ".");
        else
            dir[n - 12] = '\0';
    }
    if (dir[0] == '\0') snprintf(dir, dirlen, "/");
}
