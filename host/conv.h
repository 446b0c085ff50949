/* conv.h: 2-D convolution, forward and backward, int8 and float32 (CPU backend).
 *
 * Tensors: x [N][H][W][C] (NHWC), weights [O][KH][KW][C] (OHWI), output
 * [N][OH][OW][O]. Implemented as im2col into rows of KH*KW*C followed by the GEMMs of
 * gemm.h; a 1x1, stride-1, unpadded convolution (and so a fully connected layer,
 * H = W = 1) uses x as the im2col matrix directly, and int8 backward-weight reads the
 * im2col rows where they lie in x (wg_gemm_s8_tn_gather).
 *
 * int8 (docs/numerics.md 7.4): the forward accumulator is int32 at exponent
 * e_x + e_w, exact. The backward passes take the error at the output as one or two
 * int8 parts (E2's coarse and fine grids, or E1's single grid) and return exact int64
 * sums at the finest part's exponent: backward-data at e_w + e_err, backward-weight at
 * e_x + e_err, the latter summing int32 partial products over at most
 * WG_GEMM_S8_MAX_K rows at a time. */
#ifndef WG_CONV_H
#define WG_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_conv_geom {
    int64_t n, h, w, c; /* input */
    int64_t o, kh, kw;  /* weights */
    int stride, pad;
    int64_t oh, ow;     /* output */
    int64_t rows;       /* n * oh * ow: rows of the im2col matrix */
    int64_t kdim;       /* kh * kw * c: columns of the im2col matrix */
} wg_conv_geom;

/* Fill g; false (with a message) when the output would be empty or a size is invalid. */
bool wg_conv_geom_init(wg_conv_geom *g, int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh,
                       int64_t kw, int stride, int pad);

/* Scratch memory reused across calls (grows as needed). */
typedef struct wg_conv_ws {
    void *buf;
    size_t cap;
} wg_conv_ws;
void wg_conv_ws_free(wg_conv_ws *ws);

/* y (int32, exponent x->exp + w->exp) = conv(x int8, w int8). Returns max |y| (its
 * integers), taken block by block while each is in cache, for the BN that narrows y
 * next; a pointwise convolution (one GEMM over all of y) returns WG_QUANT_MAX_UNKNOWN. */
uint64_t wg_conv_s8_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                            wg_conv_ws *ws);

/* Backward from the error at the output, given as nparts int8 tensors (1 or 2) with
 * their exponents (the value is their sum). dx (int64, may be NULL: the first layer;
 * int32 where wg_conv_s8_dx_fits_s32 says so) and dw (int64) are overwritten; their
 * exponents are set. Returns max |dx| when it was taken on the way (an int32 dx, for E1
 * next), else WG_QUANT_MAX_UNKNOWN. */
/* Whether backward-data may write dx in int32 for parts whose exponents span span
 * (E2's flag parts: bits - 1; one part: 0): a stride-1 convolution of the transposed
 * path whose sums are bounded below 2^31. Halves what dx moves through memory. */
bool wg_conv_s8_dx_fits_s32(const wg_conv_geom *g, int span);
uint64_t wg_conv_s8_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                             const wg_tensor *const *err, int nparts, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws);

/* float32 baseline: y = conv(x, w); backward gives dx (may be NULL) and dw. */
void wg_conv_f32_forward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y, wg_conv_ws *ws);
void wg_conv_f32_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, const wg_tensor *dy,
                          wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws);

#ifdef __cplusplus
}
#endif

#endif
