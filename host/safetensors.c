/* safetensors.c: reading and writing safetensors files (see safetensors.h). */
#define _POSIX_C_SOURCE 200809L /* fsync, fileno, open */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static const struct {
    const char *name;
    size_t size;
} k_dtypes[] = {{"I8", 1}, {"I16", 2}, {"I32", 4}, {"I64", 8}, {"U8", 1}, {"F32", 4}, {"F64", 8}};
#define N_DTYPES ((int)(sizeof k_dtypes / sizeof k_dtypes[0]))

const char *wg_st_dtype_name(wg_st_dtype t) { return (int)t < N_DTYPES ? k_dtypes[t].name : "?"; }
size_t wg_st_dtype_size(wg_st_dtype t) { return (int)t < N_DTYPES ? k_dtypes[t].size : 0; }

/* ---- reading -------------------------------------------------------------------- */

/* A JSON number that is a whole number in [0, 2^53]: *out. */
static bool json_count(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || floor(v) != v) return false;
    *out = (int64_t)v;
    return true;
}

/* One tensor entry {"dtype", "shape", "data_offsets"} into *t, offsets into off[2]. */
static bool parse_entry(const cJSON *e, const char *path, wg_st_tensor *t, int64_t off[2], char *err, size_t errlen)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return wg_input_error(err, errlen, "%s: header: tensor '%s' is not a JSON object", path, name);
    if (strlen(name) >= WG_ST_NAME_MAX)
        return wg_input_error(err, errlen, "%s: header: a tensor name of %zu characters; expected fewer than %d", path,
                              strlen(name), WG_ST_NAME_MAX);
    snprintf(t->name, sizeof(t->name), "%s", name);
    for (const cJSON *f = e->child; f; f = f->next)
        if (strcmp(f->string, "dtype") && strcmp(f->string, "shape") && strcmp(f->string, "data_offsets"))
            return wg_input_error(err, errlen,
                                  "%s: header: tensor '%s' has an unknown field '%s'; expected dtype, shape and "
                                  "data_offsets",
                                  path, name, f->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return wg_input_error(err, errlen, "%s: header: tensor '%s': dtype is missing or not a string", path, name);
    int k = 0;
    while (k < N_DTYPES && strcmp(dt->valuestring, k_dtypes[k].name)) k++;
    if (k == N_DTYPES)
        return wg_input_error(
            err, errlen, "%s: header: tensor '%s': dtype \"%.16s\"; expected one of I8, I16, I32, I64, U8, F32, F64",
            path, name, dt->valuestring);
    t->dtype = (wg_st_dtype)k;
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > WG_ST_MAX_DIMS)
        return wg_input_error(err, errlen, "%s: header: tensor '%s': shape is not an array of at most %d sizes", path,
                              name, WG_ST_MAX_DIMS);
    t->ndim = 0;
    /* the byte count, with an overflow check at each factor: sizes come from the file */
    uint64_t bytes = k_dtypes[k].size;
    for (const cJSON *d = sh->child; d; d = d->next) {
        int64_t v;
        if (!json_count(d, &v))
            return wg_input_error(err, errlen, "%s: header: tensor '%s': shape entry %d is not a non-negative integer",
                                  path, name, t->ndim);
        t->shape[t->ndim++] = v;
        if (v != 0 && bytes > UINT64_MAX / (uint64_t)v)
            return wg_input_error(err, errlen, "%s: header: tensor '%s': shape is too large", path, name);
        bytes *= (uint64_t)v;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_count(of->child, &off[0]) ||
        !json_count(of->child->next, &off[1]) || off[1] < off[0])
        return wg_input_error(err, errlen,
                              "%s: header: tensor '%s': data_offsets is not [begin, end] with 0 <= begin <= end", path,
                              name);
    if ((uint64_t)(off[1] - off[0]) != bytes)
        return wg_input_error(err, errlen,
                              "%s: header: tensor '%s': data_offsets [%lld, %lld] span %lld bytes; its dtype %s and "
                              "shape need %llu",
                              path, name, (long long)off[0], (long long)off[1], (long long)(off[1] - off[0]),
                              k_dtypes[k].name, (unsigned long long)bytes);
    t->nbytes = (size_t)bytes;
    return true;
}

static bool parse_meta(const cJSON *m, wg_st_file *f, char *err, size_t errlen)
{
    if (!cJSON_IsObject(m))
        return wg_input_error(err, errlen, "%s: header: __metadata__ is not a JSON object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta = calloc((size_t)n + 1, sizeof(*f->meta));
    WG_ASSERT(f->meta != NULL, "out of memory for %d metadata entries", n);
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return wg_input_error(err, errlen, "%s: header: __metadata__ '%.64s' is not a string", f->path, e->string);
        if (strlen(e->string) >= WG_ST_NAME_MAX)
            return wg_input_error(err, errlen, "%s: header: a metadata key of %zu characters; expected fewer than %d",
                                  f->path, strlen(e->string), WG_ST_NAME_MAX);
        wg_st_meta *d = &f->meta[f->nmeta++];
        snprintf(d->key, sizeof(d->key), "%s", e->string);
        d->value = strdup(e->valuestring);
        WG_ASSERT(d->value != NULL, "out of memory for metadata");
    }
    return true;
}

/* Sort tensors by their begin offset (insertion sort on an index: headers are small). */
static int cmp_begin(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The header's JSON (f->buf[8 .. 8 + hlen)) into f's tables. */
static bool parse_header(wg_st_file *f, size_t hlen, char *err, size_t errlen)
{
    const char *json = (const char *)f->buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, hlen, &end, false);
    if (root == NULL) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + hlen ? (size_t)(at - json) + 8 : 8;
        return wg_input_error(err, errlen, "%s: offset %zu: the header is not valid JSON", f->path, off);
    }
    bool ok = true;
    /* only spaces may follow the JSON inside the header (the writers' padding) */
    for (const char *p = end; ok && p < json + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
            ok = wg_input_error(err, errlen, "%s: offset %zu: data after the header's JSON object", f->path,
                                (size_t)(p - json) + 8);
    if (ok && !cJSON_IsObject(root))
        ok = wg_input_error(err, errlen, "%s: offset 8: the header is not a JSON object", f->path);
    int n = ok ? cJSON_GetArraySize(root) : 0;
    int64_t(*ranges)[3] = ok ? calloc((size_t)n + 1, sizeof(*ranges)) : NULL;
    if (ok) {
        f->tensors = calloc((size_t)n + 1, sizeof(*f->tensors));
        WG_ASSERT(f->tensors && ranges, "out of memory for %d tensors", n);
    }
    for (const cJSON *e = ok ? root->child : NULL; e && ok; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            ok = f->meta == NULL ? parse_meta(e, f, err, errlen)
                                 : wg_input_error(err, errlen, "%s: header: __metadata__ appears twice", f->path);
            continue;
        }
        if (wg_st_find(f, e->string))
            ok = wg_input_error(err, errlen, "%s: header: tensor '%.64s' appears twice", f->path, e->string);
        int64_t off[2] = {0, 0};
        ok = ok && parse_entry(e, f->path, &f->tensors[f->ntensors], off, err, errlen);
        if (ok) {
            ranges[f->ntensors][0] = off[0];
            ranges[f->ntensors][1] = off[1];
            ranges[f->ntensors][2] = f->ntensors;
            f->ntensors++;
        }
    }
    cJSON_Delete(root);
    /* the tensors must tile the data area: sorted by begin, each starts where the last ended */
    size_t data_start = 8 + hlen, data_len = f->size - data_start;
    if (ok) qsort(ranges, (size_t)f->ntensors, sizeof(*ranges), cmp_begin);
    int64_t at = 0;
    for (int i = 0; ok && i < f->ntensors; i++) {
        wg_st_tensor *t = &f->tensors[ranges[i][2]];
        if (ranges[i][0] != at)
            ok = wg_input_error(err, errlen,
                                "%s: header: tensor '%s' starts at data offset %lld; expected %lld (tensors must "
                                "follow one another without gaps or overlap)",
                                f->path, t->name, (long long)ranges[i][0], (long long)at);
        else if ((uint64_t)ranges[i][1] > data_len)
            ok = wg_input_error(err, errlen,
                                "%s: offset %zu: tensor '%s' ends at data offset %lld, past the end of the file "
                                "(%zu data bytes): the file is truncated",
                                f->path, f->size, t->name, (long long)ranges[i][1], data_len);
        else {
            t->data = f->buf + data_start + ranges[i][0];
            at = ranges[i][1];
        }
    }
    if (ok && (size_t)at != data_len)
        ok = wg_input_error(err, errlen,
                            "%s: offset %zu: %zu bytes after the last tensor's data; expected the end of the file",
                            f->path, data_start + (size_t)at, data_len - (size_t)at);
    free(ranges);
    return ok;
}

/* Parse the size bytes of buf, which f takes over (freed on failure too). */
static bool parse_owned(uint8_t *buf, size_t size, const char *name, wg_st_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s", name);
    f->buf = buf;
    f->size = size;
    uint64_t hlen = 0;
    for (int i = 7; size >= 8 && i >= 0; i--) hlen = hlen << 8 | buf[i];
    bool ok;
    if (size < 8)
        ok = wg_input_error(
            err, errlen, "%s: offset 0: %zu bytes; a safetensors file starts with an 8-byte header length", name, size);
    else if (hlen < 2 || hlen > WG_ST_MAX_HEADER || hlen > size - 8)
        ok = wg_input_error(err, errlen, "%s: offset 0: header length %llu; expected 2..%llu (the file has %zu bytes)",
                            name, (unsigned long long)hlen,
                            (unsigned long long)(size - 8 < WG_ST_MAX_HEADER ? size - 8 : WG_ST_MAX_HEADER), size);
    else
        ok = parse_header(f, (size_t)hlen, err, errlen);
    if (!ok) wg_st_free(f);
    return ok;
}

bool wg_st_parse(const void *bytes, size_t size, const char *name, wg_st_file *f, char *err, size_t errlen)
{
    uint8_t *copy = malloc(size ? size : 1);
    WG_ASSERT(copy != NULL, "out of memory for a %zu-byte file", size);
    if (size) memcpy(copy, bytes, size);
    return parse_owned(copy, size, name, f, err, errlen);
}

/* The file is read into one buffer, which the parsed file then holds: no copy. */
bool wg_st_read(const char *path, wg_st_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    FILE *in = fopen(path, "rb");
    if (in == NULL) return wg_input_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            uint8_t *nb = realloc(buf, cap);
            WG_ASSERT(nb != NULL, "out of memory reading %s", path);
            buf = nb;
        }
        size_t got = fread(buf + size, 1, cap - size, in);
        size += got;
        if (got == 0) break;
    }
    bool read_error = ferror(in);
    fclose(in);
    if (read_error) {
        free(buf);
        return wg_input_error(err, errlen, "%s: read error after %zu bytes", path, size);
    }
    return parse_owned(buf, size, path, f, err, errlen);
}

void wg_st_free(wg_st_file *f)
{
    for (int i = 0; i < f->nmeta; i++) free(f->meta[i].value);
    free(f->meta);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof(*f));
}

const wg_st_tensor *wg_st_find(const wg_st_file *f, const char *name)
{
    for (int i = 0; i < f->ntensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *wg_st_meta_get(const wg_st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

/* ---- writing -------------------------------------------------------------------- */

void wg_st_add(wg_st_writer *w, const char *name, wg_st_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    WG_ASSERT(strlen(name) < WG_ST_NAME_MAX && ndim >= 0 && ndim <= WG_ST_MAX_DIMS, "tensor '%s'", name);
    for (int i = 0; i < w->ntensors; i++) WG_ASSERT(strcmp(w->tensors[i].name, name), "tensor '%s' added twice", name);
    if (w->ntensors == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->tensors = realloc(w->tensors, (size_t)w->cap * sizeof(*w->tensors));
        WG_ASSERT(w->tensors != NULL, "out of memory for %d tensors", w->cap);
    }
    wg_st_tensor *t = &w->tensors[w->ntensors++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->nbytes = wg_st_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->nbytes *= (size_t)shape[d];
    }
    t->data = data;
}

void wg_st_add_meta(wg_st_writer *w, const char *key, const char *value)
{
    WG_ASSERT(strlen(key) < WG_ST_NAME_MAX, "metadata key '%s'", key);
    if (w->nmeta == w->meta_cap) {
        w->meta_cap = w->meta_cap ? 2 * w->meta_cap : 32;
        w->meta = realloc(w->meta, (size_t)w->meta_cap * sizeof(*w->meta));
        WG_ASSERT(w->meta != NULL, "out of memory for %d metadata entries", w->meta_cap);
    }
    wg_st_meta *m = &w->meta[w->nmeta++];
    snprintf(m->key, sizeof(m->key), "%s", key);
    m->value = strdup(value);
    WG_ASSERT(m->value != NULL, "out of memory for metadata");
}

void wg_st_writer_free(wg_st_writer *w)
{
    for (int i = 0; i < w->nmeta; i++) free(w->meta[i].value);
    free(w->meta);
    free(w->tensors);
    memset(w, 0, sizeof(*w));
}

/* The header JSON, unformatted; caller frees. */
static char *header_json(const wg_st_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    if (w->nmeta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->nmeta; i++) cJSON_AddStringToObject(m, w->meta[i].key, w->meta[i].value);
    }
    size_t at = 0;
    for (int i = 0; i < w->ntensors; i++) {
        const wg_st_tensor *t = &w->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", wg_st_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(at + t->nbytes)));
        at += t->nbytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    WG_ASSERT(s != NULL, "out of memory for a checkpoint header");
    return s;
}

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

/* fsync the directory holding path, so the rename itself is durable. */
static bool sync_dir(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* The temporary file being written ("" when none), for wg_st_abandon_partial. */
static char g_partial[1100];
static volatile sig_atomic_t g_partial_set;

void wg_st_abandon_partial(void)
{
    if (g_partial_set) unlink(g_partial);
}

static void set_partial(const char *tmp)
{
    g_partial_set = 0;
    if (tmp == NULL) return;
    snprintf(g_partial, sizeof(g_partial), "%s", tmp);
    g_partial_set = 1;
}

bool wg_st_write(const wg_st_writer *w, const char *path, char *err, size_t errlen)
{
    char *json = header_json(w);
    size_t jlen = strlen(json), hlen = (jlen + 8 + 7) / 8 * 8 - 8; /* data starts at a multiple of 8 */
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    set_partial(tmp);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        free(json);
        set_partial(NULL);
        return wg_input_error(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    bool ok = write_all(f, len8, 8) && write_all(f, json, jlen);
    for (size_t i = jlen; ok && i < hlen; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < w->ntensors; i++) ok = write_all(f, w->tensors[i].data, w->tensors[i].nbytes);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    free(json);
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    set_partial(NULL);
    if (!ok) {
        remove(tmp);
        return wg_input_error(err, errlen, "cannot write %s: %s (the previous file, if any, is unchanged)", path,
                              strerror(saved));
    }
    if (!sync_dir(path))
        return wg_input_error(err, errlen, "cannot sync the directory of %s: %s", path, strerror(errno));
    return true;
}
