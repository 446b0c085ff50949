/* checkpoint.c: a network's training state in a safetensors file (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L /* open_memstream, stat */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "check.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints store tensors as the host's bytes: safetensors needs a little-endian host"
#endif

#ifndef WG_VERSION
#define WG_VERSION "unknown"
#endif

/* ---- the tensors of a network's state ----------------------------------------------- */

typedef struct state_tensor {
    char name[WG_ST_NAME_MAX];
    wg_tensor *t;
    bool *initialized; /* BN statistics; NULL for parameters */
} state_tensor;

typedef struct state_list {
    state_tensor *v;
    int n;
} state_list;

/* Masters and momenta of every parameter, then the BN statistics, in a fixed order. */
static state_list list_state(wg_net *net)
{
    int np;
    wg_param *p = wg_net_params(net, &np);
    int nb = wg_net_bn_state(net, NULL, 0);
    wg_net_state *bn = calloc((size_t)nb + 1, sizeof(*bn));
    state_list s = {calloc((size_t)(2 * np + nb) + 1, sizeof(state_tensor)), 0};
    WG_ASSERT(bn && s.v, "out of memory for %d state tensors", 2 * np + nb);
    for (int i = 0; i < np; i++) {
        snprintf(s.v[s.n].name, WG_ST_NAME_MAX, "%s", p[i].name);
        s.v[s.n++].t = &p[i].master;
        snprintf(s.v[s.n].name, WG_ST_NAME_MAX, "%s.momentum", p[i].name);
        s.v[s.n++].t = &p[i].momentum;
    }
    wg_net_bn_state(net, bn, nb);
    for (int i = 0; i < nb; i++, s.n++) {
        snprintf(s.v[s.n].name, WG_ST_NAME_MAX, "%s", bn[i].name);
        s.v[s.n].t = bn[i].t;
        s.v[s.n].initialized = bn[i].initialized;
    }
    free(bn);
    return s;
}

static wg_st_dtype st_dtype(wg_dtype t)
{
    switch (t) {
    case WG_I8: return WG_ST_I8;
    case WG_I16: return WG_ST_I16;
    case WG_I32: return WG_ST_I32;
    case WG_I64: return WG_ST_I64;
    case WG_F32: return WG_ST_F32;
    default: WG_DIE("no safetensors dtype for %s", wg_dtype_name(t));
    }
}

void wg_ckpt_position_str(const wg_ckpt_position *pos, char *buf, size_t n)
{
    if (pos->epoch_step == 0)
        snprintf(buf, n, "step %" PRId64 ", after epoch %d", pos->step, pos->epoch);
    else
        snprintf(buf, n, "step %" PRId64 ", %" PRId64 " steps into epoch %d", pos->step, pos->epoch_step,
                 pos->epoch + 1);
}

/* ---- saving ---------------------------------------------------------------------- */

static void meta_i64(wg_st_writer *w, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    wg_st_add_meta(w, key, buf);
}

static void meta_f64(wg_st_writer *w, const char *key, double v)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%.17g", v);
    wg_st_add_meta(w, key, buf);
}

/* The resolved config as INI text; caller frees. */
static char *config_text(const wg_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    WG_ASSERT(f != NULL, "open_memstream: %s", strerror(errno));
    bool ok = wg_config_write(cfg, f);
    WG_ASSERT(fclose(f) == 0 && ok, "writing the config to memory");
    return text;
}

bool wg_checkpoint_save(const char *path, wg_net *net, const wg_config *cfg, const wg_ckpt_position *pos, char *err,
                        size_t errlen)
{
    state_list s = list_state(net);
    void **host = calloc((size_t)s.n + 1, sizeof(void *));
    WG_ASSERT(host != NULL, "out of memory");
    wg_st_writer w = {0};
    wg_st_add_meta(&w, "format", WG_CKPT_FORMAT);
    meta_i64(&w, "format_version", WG_CKPT_VERSION);
    wg_st_add_meta(&w, "wageubn_version", WG_VERSION);
    wg_st_add_meta(&w, "model", wg_net_name(net));
    wg_st_add_meta(&w, "mode", cfg->train.mode == WG_MODE_INT8 ? "int8" : "fp32");
    meta_i64(&w, "step", pos->step);
    meta_i64(&w, "epoch", pos->epoch);
    meta_i64(&w, "epoch_step", pos->epoch_step);
    meta_f64(&w, "best_acc", pos->best_acc);
    meta_i64(&w, "best_step", pos->best_step);
    meta_f64(&w, "last_acc", pos->last_acc);
    meta_f64(&w, "train_time_s", pos->train_time_s);
    meta_i64(&w, "train_images", pos->train_images);
    char seed[32];
    snprintf(seed, sizeof(seed), "%" PRIu64, cfg->train.seed);
    wg_st_add_meta(&w, "seed", seed);
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    wg_st_add_meta(&w, "created", when);
    char *ini = config_text(cfg);
    wg_st_add_meta(&w, "config", ini);
    free(ini);
    for (int i = 0; i < s.n; i++) {
        wg_tensor *t = s.v[i].t;
        host[i] = malloc(wg_tensor_nbytes(t) ? wg_tensor_nbytes(t) : 1);
        WG_ASSERT(host[i] != NULL, "out of memory for %s", s.v[i].name);
        wg_tensor_download(t, host[i]);
        wg_st_add(&w, s.v[i].name, st_dtype(t->dtype), t->ndim, t->shape, host[i]);
        char key[WG_ST_NAME_MAX + 16];
        snprintf(key, sizeof(key), "%s.exp", s.v[i].name);
        meta_i64(&w, key, t->exp);
        if (s.v[i].initialized) {
            snprintf(key, sizeof(key), "%s.initialized", s.v[i].name);
            wg_st_add_meta(&w, key, *s.v[i].initialized ? "true" : "false");
        }
    }
    bool ok = wg_st_write(&w, path, err, errlen);
    wg_st_writer_free(&w);
    for (int i = 0; i < s.n; i++) free(host[i]);
    free(host);
    free(s.v);
    return ok;
}

/* ---- loading --------------------------------------------------------------------- */

/* A metadata integer (the whole value a decimal integer in [lo, hi]). */
static bool meta_int(const wg_st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
                     size_t errlen)
{
    const char *v = wg_st_meta_get(f, key);
    if (v == NULL) return wg_input_error(err, errlen, "%s: metadata '%s' is missing", f->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return wg_input_error(err, errlen, "%s: metadata '%s' = \"%.40s\"; expected an integer in %lld..%lld", f->path,
                              key, v, (long long)lo, (long long)hi);
    *out = x;
    return true;
}

static bool meta_real(const wg_st_file *f, const char *key, double *out, char *err, size_t errlen)
{
    const char *v = wg_st_meta_get(f, key);
    if (v == NULL) return wg_input_error(err, errlen, "%s: metadata '%s' is missing", f->path, key);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || x != x)
        return wg_input_error(err, errlen, "%s: metadata '%s' = \"%.40s\"; expected a number", f->path, key, v);
    *out = x;
    return true;
}

static bool check_format(const wg_st_file *f, char *err, size_t errlen)
{
    const char *fmt = wg_st_meta_get(f, "format");
    if (fmt == NULL || strcmp(fmt, WG_CKPT_FORMAT))
        return wg_input_error(err, errlen,
                              "%s: metadata 'format' is %s%s%s; expected \"%s\" (a safetensors file, but not a "
                              "wageubn checkpoint)",
                              f->path, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "", WG_CKPT_FORMAT);
    int64_t version;
    if (!meta_int(f, "format_version", 1, INT32_MAX, &version, err, errlen)) return false;
    if (version != WG_CKPT_VERSION)
        return wg_input_error(err, errlen, "%s: format_version %lld; this wageubn reads version %d", f->path,
                              (long long)version, WG_CKPT_VERSION);
    return true;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* The file's tensor for state entry e, checked against the network's tensor. */
static const wg_st_tensor *match(const wg_st_file *f, const state_tensor *e, const char *model, char *err,
                                 size_t errlen)
{
    const wg_tensor *t = e->t;
    const wg_st_tensor *ft = wg_st_find(f, e->name);
    char want[96], got[96], key[WG_ST_NAME_MAX + 16];
    shape_str(t->ndim, t->shape, want, sizeof(want));
    if (ft == NULL) {
        wg_input_error(err, errlen, "%s: tensor '%s' is missing; the %s this config builds needs it (%s %s)", f->path,
                       e->name, model, wg_st_dtype_name(st_dtype(t->dtype)), want);
        return NULL;
    }
    shape_str(ft->ndim, ft->shape, got, sizeof(got));
    if (ft->dtype != st_dtype(t->dtype) || strcmp(want, got)) {
        wg_input_error(err, errlen, "%s: tensor '%s' is %s %s; this config's %s needs %s %s", f->path, e->name,
                       wg_st_dtype_name(ft->dtype), got, model, wg_st_dtype_name(st_dtype(t->dtype)), want);
        return NULL;
    }
    snprintf(key, sizeof(key), "%s.exp", e->name);
    int64_t exp;
    if (!meta_int(f, key, -1000, 1000, &exp, err, errlen)) return NULL;
    if (exp != t->exp) {
        wg_input_error(err, errlen,
                       "%s: tensor '%s' has exponent %lld; this config needs %d (are the bit widths the same?)",
                       f->path, e->name, (long long)exp, t->exp);
        return NULL;
    }
    if (e->initialized) {
        snprintf(key, sizeof(key), "%s.initialized", e->name);
        const char *v = wg_st_meta_get(f, key);
        if (v == NULL || (strcmp(v, "true") && strcmp(v, "false"))) {
            wg_input_error(err, errlen, "%s: metadata '%s' is %s; expected \"true\" or \"false\"", f->path, key,
                           v ? "not a boolean" : "missing");
            return NULL;
        }
    }
    return ft;
}

/* "<name>.initialized" is "true" (checked by match). */
static bool meta_flag(const wg_st_file *f, const char *name)
{
    char key[WG_ST_NAME_MAX + 16];
    snprintf(key, sizeof(key), "%s.initialized", name);
    const char *v = wg_st_meta_get(f, key);
    return v != NULL && !strcmp(v, "true");
}

static bool read_position(const wg_st_file *f, wg_ckpt_position *pos, char *err, size_t errlen)
{
    int64_t epoch;
    return meta_int(f, "step", 0, INT64_MAX, &pos->step, err, errlen) &&
           meta_int(f, "epoch", 0, INT32_MAX, &epoch, err, errlen) && (pos->epoch = (int)epoch, true) &&
           meta_int(f, "epoch_step", 0, INT64_MAX, &pos->epoch_step, err, errlen) &&
           meta_real(f, "best_acc", &pos->best_acc, err, errlen) &&
           meta_int(f, "best_step", 0, INT64_MAX, &pos->best_step, err, errlen) &&
           meta_real(f, "last_acc", &pos->last_acc, err, errlen) &&
           meta_real(f, "train_time_s", &pos->train_time_s, err, errlen) &&
           meta_int(f, "train_images", 0, INT64_MAX, &pos->train_images, err, errlen);
}

bool wg_checkpoint_config(const wg_st_file *f, wg_config *cfg, char *err, size_t errlen)
{
    const char *ini = wg_st_meta_get(f, "config");
    if (ini == NULL) return wg_input_error(err, errlen, "%s: metadata 'config' is missing", f->path);
    char name[600], warn[WG_CONFIG_ERR_LEN];
    snprintf(name, sizeof(name), "%s (metadata 'config')", f->path);
    return wg_config_load_text(cfg, ini, strlen(ini), name, err, errlen, warn, sizeof(warn));
}

bool wg_checkpoint_load(const char *path, wg_net *net, const wg_quant_bits *bits, wg_ckpt_position *pos,
                        wg_config *saved_cfg, char *err, size_t errlen)
{
    wg_st_file f;
    if (!wg_st_read(path, &f, err, errlen)) return false;
    state_list s = list_state(net);
    const wg_st_tensor **src = calloc((size_t)s.n + 1, sizeof(*src));
    WG_ASSERT(src != NULL, "out of memory");
    wg_ckpt_position p = {0};
    wg_config c;
    bool ok = check_format(&f, err, errlen) && read_position(&f, &p, err, errlen) &&
              wg_checkpoint_config(&f, &c, err, errlen);
    /* check everything before touching the network */
    for (int i = 0; ok && i < s.n; i++) ok = (src[i] = match(&f, &s.v[i], wg_net_name(net), err, errlen)) != NULL;
    /* a BN layer's two statistics share one flag: their entries must agree */
    for (int i = 1; ok && i < s.n; i++)
        if (s.v[i].initialized && s.v[i].initialized == s.v[i - 1].initialized &&
            meta_flag(&f, s.v[i].name) != meta_flag(&f, s.v[i - 1].name))
            ok = wg_input_error(err, errlen, "%s: metadata '%s.initialized' and '%s.initialized' disagree", path,
                                s.v[i - 1].name, s.v[i].name);
    for (int i = 0; ok && i < f.ntensors; i++) {
        bool known = false;
        for (int k = 0; k < s.n && !known; k++) known = src[k] == &f.tensors[i];
        if (!known)
            ok = wg_input_error(err, errlen,
                                "%s: tensor '%s' is not part of the %s this config builds (a checkpoint of another "
                                "model?)",
                                path, f.tensors[i].name, wg_net_name(net));
    }
    if (ok) {
        for (int i = 0; i < s.n; i++) {
            wg_tensor_upload(s.v[i].t, src[i]->data);
            if (s.v[i].initialized) *s.v[i].initialized = meta_flag(&f, s.v[i].name);
        }
        int np;
        wg_param *params = wg_net_params(net, &np);
        for (int i = 0; i < np; i++) wg_param_refresh(&params[i], bits);
        *pos = p;
        if (saved_cfg) *saved_cfg = c;
    }
    free(src);
    free(s.v);
    wg_st_free(&f);
    return ok;
}

bool wg_checkpoint_resolve(const char *arg, char *path, size_t pathlen, char *err, size_t errlen)
{
    struct stat st;
    if (stat(arg, &st) != 0) return wg_input_error(err, errlen, "%s: cannot open: %s", arg, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        snprintf(path, pathlen, "%s", arg);
        return true;
    }
    snprintf(path, pathlen, "%s/latest.safetensors", arg);
    if (stat(path, &st) != 0)
        return wg_input_error(err, errlen,
                              "%s: no latest.safetensors in this run directory (%s); name a checkpoint file", arg,
                              strerror(errno));
    return true;
}

/* ---- wageubn info ------------------------------------------------------------------ */

/* One element as a double; memcpy, as the data need not be aligned in the file. */
static double element(wg_st_dtype dtype, const uint8_t *p)
{
    union {
        int8_t i8;
        uint8_t u8;
        int16_t i16;
        int32_t i32;
        int64_t i64;
        float f32;
        double f64;
    } u;
    memcpy(&u, p, wg_st_dtype_size(dtype));
    switch (dtype) {
    case WG_ST_I8: return u.i8;
    case WG_ST_U8: return u.u8;
    case WG_ST_I16: return u.i16;
    case WG_ST_I32: return u.i32;
    case WG_ST_I64: return (double)u.i64;
    case WG_ST_F32: return u.f32;
    default: return u.f64;
    }
}

/* One tensor's values as reals, q * 2^exp (exact in a double for every container but
 * I64 beyond 2^53), one per line. */
static bool print_values(const wg_st_file *f, const char *name, FILE *out, char *err, size_t errlen)
{
    const wg_st_tensor *t = wg_st_find(f, name);
    if (t == NULL)
        return wg_input_error(err, errlen, "%s: no tensor '%s' (wageubn info %s lists them)", f->path, name, f->path);
    char key[WG_ST_NAME_MAX + 16];
    snprintf(key, sizeof(key), "%s.exp", name);
    int64_t exp = 0;
    if (t->dtype != WG_ST_F32 && t->dtype != WG_ST_F64 && !meta_int(f, key, -1000, 1000, &exp, err, errlen))
        return false;
    size_t n = t->nbytes / wg_st_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++) {
        double v = element(t->dtype, (const uint8_t *)t->data + i * wg_st_dtype_size(t->dtype));
        fprintf(out, "%.17g\n", ldexp(v, (int)exp));
    }
    return true;
}

bool wg_checkpoint_print_info(const char *path, const char *tensor, FILE *out, char *err, size_t errlen)
{
    wg_st_file f;
    if (!wg_st_read(path, &f, err, errlen)) return false;
    wg_ckpt_position p;
    wg_config c;
    bool ok = check_format(&f, err, errlen) && read_position(&f, &p, err, errlen) &&
              wg_checkpoint_config(&f, &c, err, errlen);
    if (ok && tensor) {
        ok = print_values(&f, tensor, out, err, errlen);
    } else if (ok) {
        const char *model = wg_st_meta_get(&f, "model"), *mode = wg_st_meta_get(&f, "mode");
        const char *ver = wg_st_meta_get(&f, "wageubn_version"), *when = wg_st_meta_get(&f, "created");
        int64_t scalars = 0;
        size_t bytes = 0;
        for (int i = 0; i < f.ntensors; i++) bytes += f.tensors[i].nbytes;
        fprintf(out, "%s: wageubn checkpoint, format version %d, written by wageubn %s on %s\n", path, WG_CKPT_VERSION,
                ver ? ver : "?", when ? when : "?");
        fprintf(out, "model %s, %s mode, preset %s, seed %s\n", model ? model : "?", mode ? mode : "?",
                c.quant.preset == WG_PRESET_FULL ? "full" : "reference",
                wg_st_meta_get(&f, "seed") ? wg_st_meta_get(&f, "seed") : "?");
        char where[96];
        wg_ckpt_position_str(&p, where, sizeof(where));
        fprintf(out, "position: %s (the run trains %d epochs)\n", where, c.train.epochs);
        if (p.last_acc >= 0)
            fprintf(out, "accuracy: last evaluation %.2f%%, best %.2f%% (step %lld)\n", 100 * p.last_acc,
                    100 * p.best_acc, (long long)p.best_step);
        fprintf(out, "%d tensors, %zu bytes:\n", f.ntensors, bytes);
        for (int i = 0; i < f.ntensors; i++) {
            const wg_st_tensor *t = &f.tensors[i];
            char shape[96], key[WG_ST_NAME_MAX + 16];
            shape_str(t->ndim, t->shape, shape, sizeof(shape));
            snprintf(key, sizeof(key), "%s.exp", t->name);
            const char *exp = wg_st_meta_get(&f, key);
            int64_t n = (int64_t)(t->nbytes / wg_st_dtype_size(t->dtype)); /* not the shape's product: a
                                                                             * zero-size tensor may list huge sizes */
            if (!strstr(t->name, ".momentum") && !strstr(t->name, ".running_")) scalars += n;
            fprintf(out, "  %-28s %-4s %-18s exp %s\n", t->name, wg_st_dtype_name(t->dtype), shape, exp ? exp : "?");
        }
        fprintf(out, "%lld parameters\n", (long long)scalars);
    }
    wg_st_free(&f);
    return ok;
}
