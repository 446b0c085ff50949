/* bn_f32.c: float batch normalization for the fp32 baseline mode (bn.h), on the CPU
 * backend.
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
    WG_ASSERT(wg_backend_is_cpu(t->backend), "%s is on backend %s; bn_f32.c runs on the CPU",
              what, wg_backend_name(t->backend));
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

/* Per channel mean and biased variance, in double. */
static void pass_moments(const float *x, int64_t m, int64_t c, double *mean, double *var)
{
    for (int64_t ch = 0; ch < c; ch++) mean[ch] = var[ch] = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) mean[ch] += x[i * c + ch];
    for (int64_t ch = 0; ch < c; ch++) mean[ch] /= (double)m;
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            double d = x[i * c + ch] - mean[ch];
            var[ch] += d * d;
        }
    for (int64_t ch = 0; ch < c; ch++) var[ch] /= (double)m;
}

/* Elementwise: xhat (when wanted) and y from per-channel mean and inv_std. */
static void pass_normalize(const float *x, int64_t m, int64_t c, const double *mean, const double *inv_std,
                           const float *gamma, const float *beta, float *xhat, float *y)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t k = i * c + ch;
            float h = (float)((x[k] - mean[ch]) * inv_std[ch]);
            if (xhat) xhat[k] = h;
            y[k] = gamma[ch] * h + beta[ch];
        }
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
    double *mean = xmalloc((size_t)c * sizeof *mean), *var = xmalloc((size_t)c * sizeof *var);
    double *inv = xmalloc((size_t)c * sizeof *inv);
    pass_moments(x->data, count, c, mean, var);
    float *inv_std = saved->inv_std.data;
    for (int64_t ch = 0; ch < c; ch++) {
        inv_std[ch] = (float)(1.0 / sqrt(var[ch] + (double)eps));
        inv[ch] = inv_std[ch]; /* the backward pass sees the same float value */
    }
    pass_normalize(x->data, count, c, mean, inv, gamma->data, beta->data, saved->xhat.data, y->data);
    if (running) {
        check_vec(&running->mean, c, "running mean");
        check_vec(&running->var, c, "running var");
        float *rm = running->mean.data, *rv = running->var.data;
        for (int64_t ch = 0; ch < c; ch++) {
            double unbiased = count > 1 ? var[ch] * (double)count / (double)(count - 1) : var[ch];
            rm[ch] = running->initialized ? (float)(decay * (double)rm[ch] + (1.0 - decay) * mean[ch])
                                          : (float)mean[ch];
            rv[ch] = running->initialized ? (float)(decay * (double)rv[ch] + (1.0 - decay) * unbiased)
                                          : (float)unbiased;
        }
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
    const float *rm = running->mean.data, *rv = running->var.data;
    for (int64_t ch = 0; ch < c; ch++) {
        mean[ch] = rm[ch];
        inv[ch] = 1.0 / sqrt((double)rv[ch] + (double)eps);
    }
    pass_normalize(x->data, count, c, mean, inv, gamma->data, beta->data, NULL, y->data);
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
    const float *d = dy->data, *h = saved->xhat.data, *g = gamma->data, *inv = saved->inv_std.data;
    double *sb = xmalloc((size_t)c * sizeof *sb), *sg = xmalloc((size_t)c * sizeof *sg);
    for (int64_t ch = 0; ch < c; ch++) sb[ch] = sg[ch] = 0.0;
    for (int64_t i = 0; i < count; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            sb[ch] += d[i * c + ch];
            sg[ch] += (double)d[i * c + ch] * h[i * c + ch];
        }
    float *out = dx->data, *dg = dgamma->data, *db = dbeta->data;
    for (int64_t ch = 0; ch < c; ch++) {
        db[ch] = (float)sb[ch];
        dg[ch] = (float)sg[ch];
        sb[ch] /= (double)count; /* now the means the formula subtracts */
        sg[ch] /= (double)count;
    }
    for (int64_t i = 0; i < count; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            int64_t k = i * c + ch;
            out[k] = (float)((double)g[ch] * inv[ch] * (d[k] - sb[ch] - h[k] * sg[ch]));
        }
    free(sb);
    free(sg);
}
