/* bn_f32.c: float batch normalization for the fp32 baseline mode (bn.h): the per-channel
 * arithmetic on the host, the passes over the activations on the tensors' backend
 * (backend.h's bn_f32_* entries; the CPU's are at the end of this file).
 *
 * Training: mean and biased variance per channel over count = N*H*W values, summed in
 * double (two passes: the mean, then the squared deviations), xhat = (x - mean) *
 * inv_std with inv_std = 1 / sqrt(var + eps), y = gamma * xhat + beta. Running
 * statistics: running = decay * running + (1 - decay) * batch with the unbiased batch
 * variance (as PyTorch); the first update copies the batch values. Backward, with the
 * standard formulas of Ioffe & Szegedy (2015):
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * inv_std * (dy - dbeta / count - xhat * dgamma / count).
 * Dimension legend: M = count rows, C channels (innermost). */
#include "bn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"

static void *xmalloc(size_t nbytes)
{
    void *p = malloc(nbytes ? nbytes : 1);
    WG_ASSERT(p != NULL, "out of memory (%zu bytes) in batch norm", nbytes);
    return p;
}

static void check_f32(const wg_tensor *t, const char *what)
{
    WG_ASSERT(t->data != NULL, "%s is an empty tensor", what);
    WG_ASSERT(t->dtype == WG_F32, "%s is %s, expected f32", what, wg_dtype_name(t->dtype));
}

/* An NHWC f32 tensor (of like's shape when given); returns C, *count = N*H*W. */
static int64_t check_act(const wg_tensor *t, const wg_tensor *like, const char *what, int64_t *count)
{
    check_f32(t, what);
    WG_ASSERT(t->layout == WG_LAYOUT_NHWC, "%s has layout %s, expected nhwc", what, wg_layout_name(t->layout));
    if (like) WG_ASSERT(wg_tensor_same_shape(t, like), "%s does not have the shape of the input", what);
    *count = wg_tensor_numel(t) / t->shape[3];
    return t->shape[3];
}

static void check_vec(const wg_tensor *t, int64_t c, const char *what)
{
    check_f32(t, what);
    WG_ASSERT(wg_tensor_numel(t) == c, "%s has %lld elements, expected C = %lld", what,
              (long long)wg_tensor_numel(t), (long long)c);
}

bool wg_bn_f32_saved_init(wg_bn_f32_saved *s, wg_backend *b, int64_t n, int64_t h, int64_t w, int64_t c)
{
    memset(s, 0, sizeof(*s));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init_nhwc(&s->xhat, b, WG_F32, n, h, w, c, 0) &&
              wg_tensor_init(&s->inv_std, b, WG_F32, WG_LAYOUT_PLAIN, 1, shape_c, 0);
    if (!ok) wg_bn_f32_saved_free(s);
    return ok;
}

void wg_bn_f32_saved_free(wg_bn_f32_saved *s)
{
    wg_tensor_free(&s->xhat);
    wg_tensor_free(&s->inv_std);
    memset(s, 0, sizeof(*s));
}

bool wg_bn_f32_running_init(wg_bn_f32_running *r, wg_backend *b, int64_t c)
{
    memset(r, 0, sizeof(*r));
    const int64_t shape_c[1] = {c};
    bool ok = wg_tensor_init(&r->mean, b, WG_F32, WG_LAYOUT_PLAIN, 1, shape_c, 0) &&
              wg_tensor_init(&r->var, b, WG_F32, WG_LAYOUT_PLAIN, 1, shape_c, 0);
    if (!ok) {
        wg_bn_f32_running_free(r);
        return false;
    }
    float *mean = r->mean.data, *var = r->var.data;
    for (int64_t ch = 0; ch < c; ch++) mean[ch] = 0.0f, var[ch] = 1.0f;
    return true;
}

void wg_bn_f32_running_free(wg_bn_f32_running *r)
{
    wg_tensor_free(&r->mean);
    wg_tensor_free(&r->var);
    memset(r, 0, sizeof(*r));
}

/* ---- the passes, through the backend ---- */

/* A [C] vector's host values (from wg_tensor_host_copy) back to its backend. */
static void vec_upload_free(wg_tensor *t, float *host)
{
    wg_tensor_upload(t, host);
    free(host);
}

void wg_bn_f32_forward_train(const wg_tensor *x, const wg_tensor *gamma, const wg_tensor *beta, float eps,
                             wg_tensor *y, wg_bn_f32_saved *saved, wg_bn_f32_running *running, float decay)
{
    int64_t count, n, c = check_act(x, NULL, "the BN input", &count);
    check_act(y, x, "the BN output", &n);
    check_act(&saved->xhat, x, "saved x-hat", &n);
    check_vec(&saved->inv_std, c, "saved inv_std");
    check_vec(gamma, c, "gamma");
    check_vec(beta, c, "beta");
    WG_ASSERT(eps > 0.0f && decay >= 0.0f && decay <= 1.0f, "eps %g, decay %g", (double)eps, (double)decay);
    void *ctx = x->backend->ctx;
    double *mean = xmalloc((size_t)c * sizeof *mean), *var = xmalloc((size_t)c * sizeof *var);
    double *inv = xmalloc((size_t)c * sizeof *inv);
    float *inv_std = xmalloc((size_t)c * sizeof *inv_std);
    WG_BACKEND_OP(x, bn_f32_moments)(ctx, x, mean, var);
    for (int64_t ch = 0; ch < c; ch++) {
        inv_std[ch] = (float)(1.0 / sqrt(var[ch] + (double)eps));
        inv[ch] = inv_std[ch]; /* the backward pass sees the same float value */
    }
    vec_upload_free(&saved->inv_std, inv_std);
    WG_BACKEND_OP(x, bn_f32_normalize)(ctx, x, mean, inv, gamma, beta, &saved->xhat, y);
    if (running) {
        check_vec(&running->mean, c, "running mean");
        check_vec(&running->var, c, "running var");
        float *rm = wg_tensor_host_copy(&running->mean), *rv = wg_tensor_host_copy(&running->var);
        for (int64_t ch = 0; ch < c; ch++) {
            double unbiased = count > 1 ? var[ch] * (double)count / (double)(count - 1) : var[ch];
            rm[ch] = running->initialized ? (float)(decay * (double)rm[ch] + (1.0 - decay) * mean[ch])
                                          : (float)mean[ch];
            rv[ch] = running->initialized ? (float)(decay * (double)rv[ch] + (1.0 - decay) * unbiased)
                                          : (float)unbiased;
        }
        vec_upload_free(&running->mean, rm);
        vec_upload_free(&running->var, rv);
        running->initialized = true;
    }
    free(mean);
    free(var);
    free(inv);
}

void wg_bn_f32_forward_eval(const wg_tensor *x, const wg_tensor *gamma, const wg_tensor *beta, float eps,
                            const wg_bn_f32_running *running, wg_tensor *y)
{
    int64_t count, n, c = check_act(x, NULL, "the BN input", &count);
    check_act(y, x, "the BN output", &n);
    check_vec(gamma, c, "gamma");
    check_vec(beta, c, "beta");
    check_vec(&running->mean, c, "running mean");
    check_vec(&running->var, c, "running var");
    WG_ASSERT(eps > 0.0f, "eps %g", (double)eps);
    double *mean = xmalloc((size_t)c * sizeof *mean), *inv = xmalloc((size_t)c * sizeof *inv);
    float *rm = wg_tensor_host_copy(&running->mean), *rv = wg_tensor_host_copy(&running->var);
    for (int64_t ch = 0; ch < c; ch++) {
        mean[ch] = rm[ch];
        inv[ch] = 1.0 / sqrt((double)rv[ch] + (double)eps);
    }
    WG_BACKEND_OP(x, bn_f32_normalize)(x->backend->ctx, x, mean, inv, gamma, beta, NULL, y);
    free(rm);
    free(rv);
    free(mean);
    free(inv);
}

void wg_bn_f32_backward(const wg_tensor *dy, const wg_tensor *gamma, const wg_bn_f32_saved *saved, wg_tensor *dx,
                        wg_tensor *dgamma, wg_tensor *dbeta)
{
    int64_t count, n, c = check_act(&saved->xhat, NULL, "saved x-hat", &count);
    check_act(dy, &saved->xhat, "dy", &n);
    check_act(dx, &saved->xhat, "dx", &n);
    check_vec(&saved->inv_std, c, "saved inv_std");
    check_vec(gamma, c, "gamma");
    check_vec(dgamma, c, "dgamma");
    check_vec(dbeta, c, "dbeta");
    void *ctx = dy->backend->ctx;
    double *sb = xmalloc((size_t)c * sizeof *sb), *sg = xmalloc((size_t)c * sizeof *sg);
    float *dg = xmalloc((size_t)c * sizeof *dg), *db = xmalloc((size_t)c * sizeof *db);
    WG_BACKEND_OP(dy, bn_f32_bwd_sums)(ctx, dy, &saved->xhat, sb, sg);
    for (int64_t ch = 0; ch < c; ch++) {
        db[ch] = (float)sb[ch];
        dg[ch] = (float)sg[ch];
        sb[ch] /= (double)count; /* now the means the formula subtracts */
        sg[ch] /= (double)count;
    }
    vec_upload_free(dbeta, db);
    vec_upload_free(dgamma, dg);
    WG_BACKEND_OP(dy, bn_f32_bwd_dx)(ctx, dy, &saved->xhat, gamma, &saved->inv_std, sb, sg, dx);
    free(sb);
    free(sg);
}

/* ---- the CPU backend's passes (backend.h) ---- */

/* Per channel mean and biased variance, in double. */
void wg_cpu_bn_f32_moments(void *ctx, const wg_tensor *x, double *mean, double *var)
{
    (void)ctx;
    const float *xd = x->data;
    int64_t c = x->shape[3], m = wg_tensor_numel(x) / c;
    for (int64_t ch = 0; ch < c; ch++) mean[ch] = var[ch] = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) mean[ch] += xd[i * c + ch];
    for (int64_t ch = 0; ch < c; ch++) mean[ch] /= (double)m;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            double d = xd[i * c + ch] - mean[ch];
            var[ch] += d * d;
        }
    for (int64_t ch = 0; ch < c; ch++) var[ch] /= (double)m;
}

void wg_cpu_bn_f32_normalize(void *ctx, const wg_tensor *x, const double *mean, const double *inv,
                             const wg_tensor *gamma, const wg_tensor *beta, wg_tensor *xhat, wg_tensor *y)
{
    (void)ctx;
    const float *xd = x->data, *gd = gamma->data, *bd = beta->data;
    float *hd = xhat ? xhat->data : NULL, *yd = y->data;
    int64_t c = x->shape[3], m = wg_tensor_numel(x) / c;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t k = i * c + ch;
            float h = (float)((xd[k] - mean[ch]) * inv[ch]);
            if (hd) hd[k] = h;
            yd[k] = gd[ch] * h + bd[ch];
        }
}

void wg_cpu_bn_f32_bwd_sums(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, double *sb, double *sg)
{
    (void)ctx;
    const float *d = dy->data, *h = xhat->data;
    int64_t c = dy->shape[3], m = wg_tensor_numel(dy) / c;
    for (int64_t ch = 0; ch < c; ch++) sb[ch] = sg[ch] = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            sb[ch] += d[i * c + ch];
            sg[ch] += (double)d[i * c + ch] * h[i * c + ch];
        }
}

void wg_cpu_bn_f32_bwd_dx(void *ctx, const wg_tensor *dy, const wg_tensor *xhat, const wg_tensor *gamma,
                          const wg_tensor *inv_std, const double *mb, const double *mg, wg_tensor *dx)
{
    (void)ctx;
    const float *d = dy->data, *h = xhat->data, *g = gamma->data, *inv = inv_std->data;
    float *out = dx->data;
    int64_t c = dy->shape[3], m = wg_tensor_numel(dy) / c;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t k = i * c + ch;
            out[k] = (float)((double)g[ch] * inv[ch] * (d[k] - mb[ch] - h[k] * mg[ch]));
        }
}
