/* conv_tune.c: the table of per-shape convolution kernel choices (conv_tune.h). */
#include "conv_tune.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const kernel_names[WG_KERNELS] = {"cublaslt", "igemm", "wgmma"};
static const char *const pass_names[WG_PASSES] = {"forward", "backward-data", "backward-weight"};

const char *wg_conv_kernel_name(int kernel)
{
    WG_ASSERT(kernel >= 0 && kernel < WG_KERNELS, "convolution kernel %d", kernel);
    return kernel_names[kernel];
}

const char *wg_conv_pass_name(int pass)
{
    WG_ASSERT(pass >= 0 && pass < WG_PASSES, "convolution pass %d", pass);
    return pass_names[pass];
}

wg_conv_tune_key wg_conv_tune_key_of(const wg_conv_geom *g, wg_conv_pass pass, int nparts, int out_bytes)
{
    wg_conv_tune_key k;
    memset(&k, 0, sizeof(k)); /* no stray padding: keys are compared field by field anyway */
    k.n = g->n, k.h = g->h, k.w = g->w, k.c = g->c, k.o = g->o, k.kh = g->kh, k.kw = g->kw;
    k.stride = g->stride, k.pad = g->pad;
    k.pass = pass, k.nparts = nparts, k.out_bytes = out_bytes;
    return k;
}

static bool key_equal(const wg_conv_tune_key *a, const wg_conv_tune_key *b)
{
    return a->n == b->n && a->h == b->h && a->w == b->w && a->c == b->c && a->o == b->o && a->kh == b->kh &&
           a->kw == b->kw && a->stride == b->stride && a->pad == b->pad && a->pass == b->pass &&
           a->nparts == b->nparts && a->out_bytes == b->out_bytes;
}

const wg_conv_tune_entry *wg_conv_tune_find(const wg_conv_tune *t, const wg_conv_tune_key *key)
{
    for (int i = 0; i < t->n; i++) /* a network has a few dozen shapes */
        if (key_equal(&t->e[i].key, key)) return &t->e[i];
    return NULL;
}

int wg_conv_tune_add(wg_conv_tune *t, wg_conv_tune_entry e)
{
    WG_ASSERT(wg_conv_tune_find(t, &e.key) == NULL, "a convolution shape tuned twice");
    e.kernel = WG_KERNEL_CUBLASLT;
    for (int k = 0; k < WG_KERNELS; k++)
        if (e.tried[k] && e.agreed[k] && (!e.tried[e.kernel] || e.ms[k] < e.ms[e.kernel])) e.kernel = k;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        wg_conv_tune_entry *ne = (wg_conv_tune_entry *)realloc(t->e, (size_t)cap * sizeof(*ne));
        WG_ASSERT(ne != NULL, "out of host memory for the convolution tuning table");
        t->e = ne, t->cap = cap;
    }
    t->e[t->n++] = e;
    return e.kernel;
}

void wg_conv_tune_free(wg_conv_tune *t)
{
    free(t->e);
    memset(t, 0, sizeof(*t));
}

void wg_conv_tune_print(const wg_conv_tune *t, FILE *out)
{
    fprintf(out, "%-44s %-15s %10s %10s %10s  %s\n", "layer (n h w c -> o, k, stride, pad, parts)", "pass",
            "cublaslt", "igemm", "wgmma", "chosen");
    for (int i = 0; i < t->n; i++) {
        const wg_conv_tune_entry *e = &t->e[i];
        char shape[64];
        snprintf(shape, sizeof(shape), "%lld %lld %lld %lld -> %lld, %lldx%lld, s%d, p%d, %d",
                 (long long)e->key.n, (long long)e->key.h, (long long)e->key.w, (long long)e->key.c,
                 (long long)e->key.o, (long long)e->key.kh, (long long)e->key.kw, e->key.stride, e->key.pad,
                 e->key.nparts);
        fprintf(out, "%-44s %-15s", shape, wg_conv_pass_name(e->key.pass));
        for (int k = 0; k < WG_KERNELS; k++) {
            if (!e->tried[k]) fprintf(out, " %10s", "-");
            else if (!e->agreed[k]) fprintf(out, " %10s", "DIFFERS");
            else fprintf(out, " %8.3fms", e->ms[k]);
        }
        fprintf(out, "  %s\n", wg_conv_kernel_name(e->kernel));
    }
}

bool wg_conv_mode_parse(const char *s, int *mode)
{
    if (strcmp(s, "auto") == 0) {
        *mode = WG_CONV_AUTO;
        return true;
    }
    for (int k = 0; k < WG_KERNELS; k++)
        if (strcmp(s, kernel_names[k]) == 0) {
            *mode = k;
            return true;
        }
    return false;
}

int wg_conv_mode_kernel(int mode, const bool allowed[WG_KERNELS])
{
    WG_ASSERT(mode >= 0 && mode < WG_KERNELS, "convolution mode %d", mode);
    for (int k = mode; k > WG_KERNEL_CUBLASLT; k--)
        if (allowed[k]) return k;
    return WG_KERNEL_CUBLASLT;
}
