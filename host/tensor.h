/* tensor.h: fixed-point tensors.
 *
 * A tensor is a block of integers with one power-of-two exponent: element q stands
 * for the value q * 2^exp (design principle 1, docs/numerics.md). The container
 * (dtype) and the exponent rule of every tensor of the training data path are fixed
 * by docs/numerics.md. In the fp32 baseline mode the container is WG_F32 and exp is
 * unused (0).
 *
 * Dimension legend: N batch, H height, W width, C channels (activations, NHWC);
 * O output channels, KH/KW kernel height/width, I input channels (weights, OHWI).
 * Shapes are listed outermost first; elements are contiguous, innermost last. */
#ifndef WG_TENSOR_H
#define WG_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "wg_dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_MAX_DIMS 4

typedef struct wg_backend wg_backend;

typedef enum wg_layout {
    WG_LAYOUT_PLAIN = 0, /* any rank, row-major (vectors, per-channel parameters, FC) */
    WG_LAYOUT_NHWC,      /* activations and errors: [N][H][W][C] */
    WG_LAYOUT_OHWI,      /* convolution weights: [O][KH][KW][I] */
} wg_layout;

typedef struct wg_tensor {
    wg_dtype dtype;               /* container */
    wg_layout layout;
    int ndim;                     /* 1..WG_MAX_DIMS */
    int64_t shape[WG_MAX_DIMS];   /* outermost first; unused entries are 1 */
    int exp;                      /* value = q * 2^exp */
    void *data;                   /* backend memory; NULL for an empty tensor */
    wg_backend *backend;          /* owner of data */
} wg_tensor;

/* Allocate an uninitialised tensor on backend b. Returns false (and leaves *t
 * empty) when the shape is invalid or the allocation fails; the message is printed. */
bool wg_tensor_init(wg_tensor *t, wg_backend *b, wg_dtype dtype, wg_layout layout, int ndim,
                    const int64_t *shape, int exp);
/* Shorthands for the two 4-D layouts. */
bool wg_tensor_init_nhwc(wg_tensor *t, wg_backend *b, wg_dtype dtype, int64_t n, int64_t h, int64_t w,
                         int64_t c, int exp);
bool wg_tensor_init_ohwi(wg_tensor *t, wg_backend *b, wg_dtype dtype, int64_t o, int64_t kh, int64_t kw,
                         int64_t i, int exp);
/* Release the memory; *t becomes empty. Freeing an empty tensor is a no-op. */
void wg_tensor_free(wg_tensor *t);

int64_t wg_tensor_numel(const wg_tensor *t);
size_t wg_tensor_nbytes(const wg_tensor *t);
bool wg_tensor_same_shape(const wg_tensor *a, const wg_tensor *b);

/* Copy between host memory (nbytes of t) and the tensor's backend memory. */
void wg_tensor_upload(wg_tensor *t, const void *host);
void wg_tensor_download(const wg_tensor *t, void *host);
void wg_tensor_zero(wg_tensor *t);
/* A host buffer of t's bytes (malloc'd: free it; never NULL), and the same holding a
 * download of t: for work a backend leaves to the host (the loss, initial values). */
void *wg_tensor_host_alloc(const wg_tensor *t);
void *wg_tensor_host_copy(const wg_tensor *t);

const char *wg_dtype_name(wg_dtype t);
const char *wg_layout_name(wg_layout l);

#ifdef __cplusplus
}
#endif

#endif
