/* optim.c: the quantized momentum SGD of WAGEUBN and the fp32 SGD (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "wg_intmath.h"

int64_t wg_weight_decay_q(double wd)
{
    WG_ASSERT(isfinite(wd) && wd >= 0 && wd < WG_WD_MAX, "weight decay %g (expected [0, 2^-8))", wd);
    return (int64_t)nearbyint(ldexp(wd, WG_WD_FRAC_BITS));
}

bool wg_param_init(wg_param *p, wg_backend *b, const char *name, uint32_t id, wg_param_kind kind, bool int8,
                   const wg_quant_bits *bits, wg_layout layout, int ndim, const int64_t *shape)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->id = id;
    p->kind = kind;
    bool ok;
    if (int8) {
        wg_dtype fwd = kind == WG_PARAM_WEIGHT ? WG_I8 : WG_I16; /* gamma = 1.0 is 128 units: int16 */
        /* G holds +-(g_scale - 1): int8 for the reference g_scale 128 (bits->g_scale_log2 is
         * the largest of the run's schedule here), int16 up to 2^15 */
        wg_dtype gq = kind != WG_PARAM_WEIGHT ? WG_I32 : bits->g_scale_log2 <= 7 ? WG_I8 : WG_I16;
        ok = wg_tensor_init(&p->master, b, WG_I32, layout, ndim, shape, -(bits->u - 1)) &&
             wg_tensor_init(&p->momentum, b, WG_I32, layout, ndim, shape, -(bits->momentum - 1)) &&
             wg_tensor_init(&p->grad, b, WG_I64, layout, ndim, shape, 0) &&
             wg_tensor_init(&p->fwd, b, fwd, layout, ndim, shape, 0) &&
             wg_tensor_init(&p->gq, b, gq, layout, ndim, shape, 0);
    } else {
        ok = wg_tensor_init(&p->master, b, WG_F32, layout, ndim, shape, 0) &&
             wg_tensor_init(&p->momentum, b, WG_F32, layout, ndim, shape, 0) &&
             wg_tensor_init(&p->grad, b, WG_F32, layout, ndim, shape, 0);
    }
    if (!ok) {
        wg_param_free(p);
        return false;
    }
    wg_tensor_zero(&p->master);
    wg_tensor_zero(&p->momentum);
    wg_tensor_zero(&p->grad);
    return true;
}

void wg_param_free(wg_param *p)
{
    wg_tensor_free(&p->master);
    wg_tensor_free(&p->momentum);
    wg_tensor_free(&p->grad);
    wg_tensor_free(&p->fwd);
    wg_tensor_free(&p->gq);
}

void wg_param_refresh(wg_param *p, const wg_quant_bits *bits)
{
    if (p->master.dtype == WG_F32) return;
    if (p->kind == WG_PARAM_WEIGHT) wg_quant_direct(&p->fwd, &p->master, bits->w, true);
    else wg_quant_direct(&p->fwd, &p->master, bits->gamma_beta, false);
}

/* g += wd * w, rounded half to even onto g's grid: w * 2^e_w * wd_q * 2^-40 / 2^e_g. */
static void add_weight_decay(wg_param *p, int64_t wd_q)
{
    if (wd_q == 0) return;
    int shift = p->grad.exp - p->master.exp + WG_WD_FRAC_BITS; /* product grid -> g grid */
    /* wd < 2^-8 (wg_weight_decay_q), so wd_q < 2^32 and |w * wd_q| < 2^63 */
    WG_BACKEND_OP(&p->grad, weight_decay)(p->grad.backend->ctx, &p->grad, &p->master, wd_q, shift);
}

static void step_int8(wg_param *p, const wg_optim_step_args *a, int64_t wd_q, wg_lr lr)
{
    const wg_quant_bits *bits = a->bits;
    if (p->kind == WG_PARAM_WEIGHT) {
        add_weight_decay(p, wd_q);
        wg_grad_quant_args ga = {.g_scale_log2 = a->g_scale_log2, .gc = bits->gc, .seed = a->seed, .step = a->step,
                                 .tensor_id = p->id};
        wg_quant_grad(&p->gq, &p->grad, &ga);
    } else {
        wg_quant_direct(&p->gq, &p->grad, bits->bn_grad, false);
    }
    wg_quant_momentum(&p->momentum, &p->gq, bits->momentum, bits->momentum_shift);
    wg_quant_update(&p->master, &p->momentum, lr, bits->u);
    wg_param_refresh(p, bits);
}

/* mu: the run's momentum (fp32 mode) or the int8 recipe's 2^-momentum_shift (a float
 * layer of the reference preset, updated with the recipe's momentum but unquantized). */
static void step_f32(wg_param *p, const wg_optim_step_args *a, double momentum)
{
    float wd = p->kind == WG_PARAM_WEIGHT ? (float)a->weight_decay : 0.0f;
    WG_BACKEND_OP(&p->master, sgd_f32_step)(p->master.backend->ctx, &p->master, &p->momentum, &p->grad,
                                             (float)momentum, (float)a->lr, wd);
}

/* The CPU backend's float step (backend.h's sgd_f32_step). */
void wg_cpu_sgd_f32_step(void *ctx, wg_tensor *w, wg_tensor *v, const wg_tensor *g, float mu, float lr, float wd)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(w);
    WG_ASSERT(w->dtype == WG_F32 && v->dtype == WG_F32 && g->dtype == WG_F32 && wg_tensor_numel(v) == n &&
                  wg_tensor_numel(g) == n,
              "float SGD step on %s weights", wg_dtype_name(w->dtype));
    float *wt = w->data, *vt = v->data;
    const float *gt = g->data;
    for (int64_t i = 0; i < n; i++) {
        vt[i] = mu * vt[i] + gt[i] + wd * wt[i];
        wt[i] -= lr * vt[i];
    }
}

void wg_optim_step(wg_param *params, int n, const wg_optim_step_args *a)
{
    bool int8_run = false;
    for (int i = 0; i < n; i++) int8_run |= params[i].master.dtype != WG_F32;
    if (!int8_run) {
        for (int i = 0; i < n; i++) step_f32(&params[i], a, a->momentum);
        return;
    }
    int64_t wd_q = wg_weight_decay_q(a->weight_decay);
    wg_lr lr = wg_quant_lr(a->lr, a->bits->lr);
    double float_momentum = ldexp(1.0, -a->bits->momentum_shift);
    /* The parameters are independent (G's random bits are keyed by the tensor's id, not
     * drawn in order): on the CPU the threads take whole tensors, most of which are too
     * small for the elementwise ops to split (wg_par.h); those ops then run on their own
     * thread (nested regions are inactive). Any split gives the same bits. Another
     * backend's context serves one host thread (its reductions share a word): in order. */
    bool cpu = n > 0 && wg_backend_is_cpu(params[0].master.backend);
#pragma omp parallel for schedule(dynamic, 1) if (cpu)
    for (int i = 0; i < n; i++) {
        if (params[i].master.dtype == WG_F32) step_f32(&params[i], a, float_momentum);
        else step_int8(&params[i], a, wd_q, lr);
    }
}
