/* backend_cpu_ops.h: entries of the CPU backend's vtable (backend_cpu.c) that live in
 * the files of their op family. Private to the CPU backend. */
#ifndef WG_BACKEND_CPU_OPS_H
#define WG_BACKEND_CPU_OPS_H

#include <stdint.h>

#include "conv.h"
#include "pool.h"
#include "tensor.h"

/* residual_cpu.c: backend.h's shift_sum and accumulate. */
uint64_t wg_cpu_shift_sum(void *ctx, wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb);
uint64_t wg_cpu_accumulate(void *ctx, wg_tensor *acc, int sa, const wg_tensor *add, int sb);

/* pool.c: backend.h's gap_s8_forward and gap_s8_backward. */
void wg_cpu_gap_s8_forward(void *ctx, const wg_tensor *a, wg_tensor *out);
void wg_cpu_gap_s8_backward(void *ctx, const wg_tensor *dout, wg_tensor *da);

/* act.c: backend.h's relu_round_shift and relu_mask. */
void wg_cpu_relu_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound);
void wg_cpu_relu_mask(void *ctx, const wg_tensor *y, wg_tensor *de);

/* conv.c, conv_bwd.c: backend.h's conv_s8_forward and conv_s8_backward. */
uint64_t wg_cpu_conv_s8_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                                wg_conv_ws *ws);
uint64_t wg_cpu_conv_s8_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                 const wg_tensor *const *err, int nparts, int e_min, wg_tensor *dx, wg_tensor *dw,
                                 wg_conv_ws *ws);

/* bn_int_generic.c: backend.h's bn_sums, bn_normalize, bn_bwd_sums, bn_bwd_dx and
 * bn_relu_mask. */
void wg_cpu_bn_sums(void *ctx, const wg_tensor *x16, int64_t *s1, int64_t *s2);
int64_t wg_cpu_bn_normalize(void *ctx, wg_tensor *x16, wg_tensor *y, int e_x, const int32_t *mu, const int32_t *sigma,
                            const int16_t *gamma, const int16_t *beta, uint64_t *relu_max);
void wg_cpu_bn_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, int64_t *b, int64_t *g, uint64_t *dmax,
                        uint64_t *hmax);
uint64_t wg_cpu_bn_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, wg_tensor *dx, int f, int64_t count,
                          const int16_t *gamma, const int32_t *sigma, const int64_t *b, const int64_t *g,
                          const uint64_t *dmax, const uint64_t *hmax);
void wg_cpu_bn_relu_mask(void *ctx, wg_tensor *dy, const wg_tensor *xhat, const int16_t *gamma, const int16_t *beta);

/* pool.c: backend.h's maxpool_forward, maxpool_backward, gap_f32_forward and
 * gap_f32_backward. */
void wg_cpu_maxpool_forward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, wg_tensor *y);
void wg_cpu_maxpool_backward(void *ctx, const wg_maxpool_geom *g, const wg_tensor *x, const wg_tensor *dy,
                             wg_tensor *dx);
void wg_cpu_gap_f32_forward(void *ctx, const wg_tensor *a, wg_tensor *out);
void wg_cpu_gap_f32_backward(void *ctx, const wg_tensor *dout, wg_tensor *da);

/* conv.c: backend.h's conv_f32_forward and conv_f32_backward. */
void wg_cpu_conv_f32_forward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w, wg_tensor *y,
                             wg_conv_ws *ws);
void wg_cpu_conv_f32_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                              const wg_tensor *dy, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws);

/* bn_f32.c: backend.h's bn_f32_moments, bn_f32_normalize, bn_f32_bwd_sums and
 * bn_f32_bwd_dx. */
void wg_cpu_bn_f32_moments(void *ctx, const wg_tensor *x, double *mean, double *var);
void wg_cpu_bn_f32_normalize(void *ctx, const wg_tensor *x, const double *mean, const double *inv,
                             const wg_tensor *gamma, const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y);
void wg_cpu_bn_f32_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg);
void wg_cpu_bn_f32_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                          const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx);

/* act.c, residual_cpu.c, optim.c: backend.h's relu_f32, add_f32 and sgd_f32_step. */
void wg_cpu_relu_f32(void *ctx, const wg_tensor *y, const wg_tensor *src, wg_tensor *dst);
void wg_cpu_add_f32(void *ctx, const wg_tensor *a, const wg_tensor *b, wg_tensor *out);
void wg_cpu_sgd_f32_step(void *ctx, wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd);

/* convert.c: backend.h's fixed_to_f32, f32_max_abs and f32_to_fixed. */
void wg_cpu_fixed_to_f32(void *ctx, const wg_tensor *src, wg_tensor *dst);
float wg_cpu_f32_max_abs(void *ctx, const wg_tensor *x, int64_t *nonfinite);
void wg_cpu_f32_to_fixed(void *ctx, const wg_tensor *src, wg_tensor *dst, int e);

#endif
