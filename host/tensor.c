/* tensor.c: allocation, shape helpers and host transfers of fixed-point tensors. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"

static const int64_t WG_TENSOR_MAX_BYTES = INT64_C(1) << 46; /* 64 TiB: a shape past this is a bug */

bool wg_tensor_init(wg_tensor *t, wg_backend *b, wg_dtype dtype, wg_layout layout, int ndim,
                    const int64_t *shape, int exp)
{
    memset(t, 0, sizeof(*t));
    WG_ASSERT(b != NULL && dtype >= 0 && dtype < WG_DTYPE_COUNT, "bad backend or dtype");
    if (ndim < 1 || ndim > WG_MAX_DIMS) {
        fprintf(stderr, "wageubn: tensor rank %d is outside 1..%d\n", ndim, WG_MAX_DIMS);
        return false;
    }
    if ((layout == WG_LAYOUT_NHWC || layout == WG_LAYOUT_OHWI) && ndim != 4) {
        fprintf(stderr, "wageubn: layout %s needs 4 dimensions, got %d\n", wg_layout_name(layout), ndim);
        return false;
    }
    int64_t numel = 1;
    for (int d = 0; d < WG_MAX_DIMS; d++) t->shape[d] = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > WG_TENSOR_MAX_BYTES || numel > WG_TENSOR_MAX_BYTES / shape[d]) {
            fprintf(stderr, "wageubn: tensor dimension %d is %lld; expected 1..%lld in all\n", d,
                    (long long)shape[d], (long long)WG_TENSOR_MAX_BYTES);
            return false;
        }
        numel *= shape[d];
        t->shape[d] = shape[d];
    }
    size_t nbytes = (size_t)numel * wg_dtype_size(dtype);
    void *data = b->iface->alloc(b->ctx, nbytes);
    if (data == NULL) {
        fprintf(stderr, "wageubn: out of %s memory allocating a %s tensor of %zu bytes\n", b->iface->name,
                wg_dtype_name(dtype), nbytes);
        for (int d = 0; d < WG_MAX_DIMS; d++) t->shape[d] = 0;
        return false;
    }
    t->dtype = dtype;
    t->layout = layout;
    t->ndim = ndim;
    t->exp = exp;
    t->data = data;
    t->backend = b;
    return true;
}

bool wg_tensor_init_nhwc(wg_tensor *t, wg_backend *b, wg_dtype dtype, int64_t n, int64_t h, int64_t w,
                         int64_t c, int exp)
{
    const int64_t shape[4] = {n, h, w, c};
    return wg_tensor_init(t, b, dtype, WG_LAYOUT_NHWC, 4, shape, exp);
}

bool wg_tensor_init_ohwi(wg_tensor *t, wg_backend *b, wg_dtype dtype, int64_t o, int64_t kh, int64_t kw,
                         int64_t i, int exp)
{
    const int64_t shape[4] = {o, kh, kw, i};
    return wg_tensor_init(t, b, dtype, WG_LAYOUT_OHWI, 4, shape, exp);
}

void wg_tensor_free(wg_tensor *t)
{
    if (t->data != NULL) t->backend->iface->free(t->backend->ctx, t->data);
    memset(t, 0, sizeof(*t));
}

int64_t wg_tensor_numel(const wg_tensor *t)
{
    if (t->data == NULL) return 0;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

size_t wg_tensor_nbytes(const wg_tensor *t) { return (size_t)wg_tensor_numel(t) * wg_dtype_size(t->dtype); }

bool wg_tensor_same_shape(const wg_tensor *a, const wg_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

void wg_tensor_upload(wg_tensor *t, const void *host)
{
    if (t->data != NULL) t->backend->iface->upload(t->backend->ctx, t->data, host, wg_tensor_nbytes(t));
}

void *wg_tensor_host_alloc(const wg_tensor *t)
{
    size_t nb = wg_tensor_nbytes(t);
    void *h = malloc(nb ? nb : 1);
    WG_ASSERT(h != NULL, "out of host memory for a copy of a tensor (%zu bytes)", nb);
    return h;
}

void *wg_tensor_host_copy(const wg_tensor *t)
{
    void *h = wg_tensor_host_alloc(t);
    wg_tensor_download(t, h);
    return h;
}

void wg_tensor_download(const wg_tensor *t, void *host)
{
    if (t->data != NULL) t->backend->iface->download(t->backend->ctx, host, t->data, wg_tensor_nbytes(t));
}

void wg_tensor_zero(wg_tensor *t)
{
    if (t->data != NULL) t->backend->iface->zero(t->backend->ctx, t->data, wg_tensor_nbytes(t));
}

const char *wg_dtype_name(wg_dtype t)
{
    static const char *const names[WG_DTYPE_COUNT] = {"int8", "int16", "int32", "int64", "float32"};
    return t >= 0 && t < WG_DTYPE_COUNT ? names[t] : "invalid";
}

const char *wg_layout_name(wg_layout l)
{
    switch (l) {
    case WG_LAYOUT_PLAIN: return "plain";
    case WG_LAYOUT_NHWC: return "NHWC";
    case WG_LAYOUT_OHWI: return "OHWI";
    default: return "invalid";
    }
}
