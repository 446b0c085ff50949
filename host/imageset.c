/* imageset.c: the ImageFolder and list layouts (see imageset.h). */
#define _POSIX_C_SOURCE 200809L /* strdup, strncasecmp */
#include "imageset.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"

/* A growable array of strings. */
typedef struct strv {
    char **v;
    int64_t n, cap;
} strv;

static void strv_push(strv *s, const char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
        WG_ASSERT(s->v != NULL, "out of memory for %lld names", (long long)s->cap);
    }
    s->v[s->n] = strdup(x);
    WG_ASSERT(s->v[s->n] != NULL, "out of memory%s", "");
    s->n++;
}

static void strv_free(strv *s)
{
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (strv){0};
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_jpeg_name(const char *f)
{
    size_t n = strlen(f);
    return (n > 4 && strncasecmp(f + n - 4, ".jpg", 4) == 0) || (n > 5 && strncasecmp(f + n - 5, ".jpeg", 5) == 0);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The entries of dir that pass keep (sorted), or false with a message. */
static bool list_dir(const char *dir, bool dirs, strv *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "%s: cannot open the folder: %s", dir, strerror(errno));
        return false;
    }
    char path[4096 + 512];
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path)) continue; /* no such path */
        if (dirs ? is_dir(path) : (!is_dir(path) && is_jpeg_name(e->d_name))) strv_push(out, e->d_name);
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return true;
}

static void set_name(wg_imageset *s, const char *what)
{
    snprintf(s->name, sizeof(s->name), "%s", what);
}

bool wg_imageset_folder(const char *dir, wg_imageset *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    set_name(out, dir);
    strv classes = {0}, files = {0};
    if (!list_dir(dir, true, &classes, err, errlen)) return false;
    if (classes.n == 0) {
        snprintf(err, errlen, "%s: no class folders (expected DIR/<class>/<image>.JPEG, as ImageNet's train/ and val/)",
                 dir);
        return false;
    }
    int64_t cap = 0;
    char path[4096];
    for (int64_t c = 0; c < classes.n; c++) {
        snprintf(path, sizeof(path), "%s/%s", dir, classes.v[c]);
        int64_t before = files.n;
        strv here = {0};
        bool listed = list_dir(path, false, &here, err, errlen);
        if (listed && here.n == 0)
            snprintf(err, errlen, "%s: class folder without .jpg/.jpeg images (a dataset copied in part?)", path);
        if (!listed || here.n == 0) {
            strv_free(&classes), strv_free(&files), strv_free(&here);
            free(out->labels);
            out->labels = NULL;
            return false;
        }
        for (int64_t i = 0; i < here.n; i++) {
            char f[8192];
            snprintf(f, sizeof(f), "%s/%s", path, here.v[i]);
            strv_push(&files, f);
        }
        strv_free(&here);
        if (files.n > cap) {
            cap = files.n * 2;
            out->labels = realloc(out->labels, (size_t)cap * sizeof *out->labels);
            WG_ASSERT(out->labels != NULL, "out of memory for %lld labels", (long long)cap);
        }
        for (int64_t i = before; i < files.n; i++) out->labels[i] = (int32_t)c;
    }
    out->n = files.n;
    out->paths = files.v;
    out->num_classes = (int)classes.n;
    out->classes = classes.v;
    return true;
}

bool wg_imageset_list(const char *list_path, wg_imageset *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    set_name(out, list_path);
    FILE *f = fopen(list_path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open the list: %s", list_path, strerror(errno));
        return false;
    }
    char base[4096];
    snprintf(base, sizeof(base), "%s", list_path);
    char *slash = strrchr(base, '/');
    if (slash) *slash = '\0';
    else snprintf(base, sizeof(base), ".");
    strv files = {0};
    int64_t cap = 0, line_no = 0;
    int max_label = -1;
    char line[8192];
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        line_no++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%lld: the line is longer than %zu characters", list_path, (long long)line_no,
                     sizeof(line) - 2);
            ok = false;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\0' || *s == '#') continue;
        char *sp = strrchr(s, ' ');
        char *end = NULL;
        long label = sp ? strtol(sp + 1, &end, 10) : -1;
        if (sp == NULL || end == sp + 1 || *end != '\0' || label < 0 || label > 1000000) {
            snprintf(err, errlen, "%s:%lld: expected \"PATH LABEL\" with LABEL a class index (0 .. 1000000)",
                     list_path, (long long)line_no);
            ok = false;
            break;
        }
        *sp = '\0';
        char p[8192 + 4096];
        if (s[0] == '/') snprintf(p, sizeof(p), "%s", s);
        else snprintf(p, sizeof(p), "%s/%s", base, s);
        strv_push(&files, p);
        if (files.n > cap) {
            cap = files.n * 2;
            out->labels = realloc(out->labels, (size_t)cap * sizeof *out->labels);
            WG_ASSERT(out->labels != NULL, "out of memory for %lld labels", (long long)cap);
        }
        out->labels[files.n - 1] = (int32_t)label;
        if (label > max_label) max_label = (int)label;
    }
    fclose(f);
    if (ok && files.n == 0) {
        snprintf(err, errlen, "%s: no images listed", list_path);
        ok = false;
    }
    if (!ok) {
        strv_free(&files);
        free(out->labels);
        out->labels = NULL;
        return false;
    }
    out->n = files.n;
    out->paths = files.v;
    out->num_classes = max_label + 1;
    strv names = {0};
    for (int c = 0; c < out->num_classes; c++) {
        char nm[16];
        snprintf(nm, sizeof(nm), "%d", c);
        strv_push(&names, nm);
    }
    out->classes = names.v;
    return true;
}

void wg_imageset_free(wg_imageset *s)
{
    strv p = {s->paths, s->n, s->n}, c = {s->classes, s->num_classes, s->num_classes};
    strv_free(&p);
    strv_free(&c);
    free(s->labels);
    memset(s, 0, sizeof(*s));
}

bool wg_imageset_write_classes(const wg_imageset *s, FILE *f)
{
    for (int c = 0; c < s->num_classes; c++)
        if (fprintf(f, "%d %s\n", c, s->classes[c]) < 0) return false;
    return true;
}
