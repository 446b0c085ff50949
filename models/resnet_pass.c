/* resnet_pass.c: the forward and backward passes of the pre-activation ResNet (the
 * structure and the data path are described in resnet.c). Each helper below serves
 * both modes: int8 (the WAGEUBN data path) and fp32 (the baseline). */
#include <string.h>

#include "act.h"
#include "convert.h"
#include "pool.h"
#include "quant.h"
#include "residual.h"
#include "resnet_impl.h"
#include "softmax.h"

static wg_conv_geom geom_of(const wg_net *net, const conv_unit *u)
{
    wg_conv_geom g;
    WG_ASSERT(wg_conv_geom_init(&g, net->n, u->ih, u->iw, u->cin, u->cout, u->k, u->k, (int)u->stride, (int)u->pad),
              "convolution geometry");
    return g;
}

/* The BN unit's saved tensors viewed for the current batch. */
static wg_bn_int_saved saved_int(const wg_net *net, const bn_unit *u)
{
    wg_bn_int_saved s = u->si;
    s.xhat = wg_net_cur(net, &u->si.xhat);
    return s;
}

static wg_bn_f32_saved saved_f32(const wg_net *net, const bn_unit *u)
{
    wg_bn_f32_saved s = u->sf;
    s.xhat = wg_net_cur(net, &u->sf.xhat);
    return s;
}

/* ---- forward ----------------------------------------------------------------------- */

/* p->y = BN(x), then p->a = ReLU (and the A quantizer in int8 mode). x_max: max |x| from
 * x's producer, or WG_QUANT_MAX_UNKNOWN. */
static void bn_act_forward(wg_net *net, act_point *p, const wg_tensor *x, uint64_t x_max, bool train)
{
    bn_unit *u = &p->bn;
    wg_tensor y = wg_net_cur(net, &p->y), a = wg_net_cur(net, &p->a);
    if (net->o.int8) {
        wg_bn_int_saved s = saved_int(net, u);
        if (train) {
            wg_bn_int_forward_train_act(x, x_max, &u->gamma->fwd, &u->beta->fwd, &y, &a, net->o.bits.a, net->o.act,
                                        &s, &u->ri);
        } else {
            uint64_t relu_max = wg_bn_int_forward_eval(x, x_max, &u->gamma->fwd, &u->beta->fwd, &u->ri, &y, &s);
            wg_relu_quant_forward_max(&y, &a, net->o.bits.a, net->o.act, relu_max);
        }
        u->si.e_x = s.e_x;
        u->si.clamps = s.clamps;
    } else {
        wg_bn_f32_saved s = saved_f32(net, u);
        if (train)
            wg_bn_f32_forward_train(x, &u->gamma->master, &u->beta->master, WG_BN_F32_EPS, &y, &s, &u->rf,
                                    WG_BN_F32_DECAY);
        else wg_bn_f32_forward_eval(x, &u->gamma->master, &u->beta->master, WG_BN_F32_EPS, &u->rf, &y);
        wg_relu_f32_forward(&y, &a);
    }
    p->y.exp = y.exp;
    p->a.exp = a.exp;
}

/* Returns max |out| when the int8 convolution took it, else WG_QUANT_MAX_UNKNOWN. */
static uint64_t conv_forward(wg_net *net, const conv_unit *u, const wg_tensor *x, wg_tensor *out)
{
    wg_conv_geom g = geom_of(net, u);
    wg_tensor y = wg_net_cur(net, out);
    uint64_t m = WG_QUANT_MAX_UNKNOWN;
    if (net->o.int8) m = wg_conv_s8_forward(&g, x, &u->w->fwd, &y, &net->ws);
    else wg_conv_f32_forward(&g, x, &u->w->master, &y, &net->ws);
    out->exp = y.exp;
    return m;
}

/* out = a + b on the residual stream. Returns max |out| as conv_forward does. */
static uint64_t residual_forward(wg_net *net, const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    wg_tensor o = wg_net_cur(net, out), x = wg_net_cur(net, a), y = wg_net_cur(net, b);
    uint64_t m = WG_QUANT_MAX_UNKNOWN;
    if (net->o.int8) {
        wg_tensor tmp = wg_net_scratch(net, &net->sum64, o.shape[1], o.shape[2], o.shape[3]);
        m = wg_residual_add(&x, &y, &o, &tmp);
    } else {
        wg_add_f32(&x, &y, &o);
    }
    out->exp = o.exp;
    return m;
}

/* x: the block input, on the residual stream, *x_max its max |x| (or unknown); on
 * return, the block output's. */
static const wg_tensor *block_forward(wg_net *net, block *bl, const wg_tensor *x, uint64_t *x_max, bool train)
{
    wg_tensor in = *x;
    uint64_t in_max = *x_max;
    for (int i = 0; i < bl->nconv; i++) {
        bn_act_forward(net, &bl->p[i], &in, in_max, train);
        wg_tensor a = wg_net_cur(net, &bl->p[i].a);
        in_max = conv_forward(net, &bl->c[i], &a, &bl->conv_out[i]);
        in = wg_net_cur(net, &bl->conv_out[i]);
    }
    const wg_tensor *shortcut = x;
    if (bl->proj) {
        wg_tensor a1 = wg_net_cur(net, &bl->p[0].a);
        conv_forward(net, &bl->cp, &a1, &bl->cpout);
        shortcut = &bl->cpout;
    }
    *x_max = residual_forward(net, &bl->conv_out[bl->nconv - 1], shortcut, &bl->out);
    return &bl->out;
}

/* The stem: integer, or (preset reference) a float convolution of the image's float
 * copy whose output is put back on a fixed-point grid for the residual stream. Returns
 * max |stem_out| as conv_forward does. */
static uint64_t stem_forward(wg_net *net, const wg_tensor *in)
{
    if (!net->float_ends) return conv_forward(net, &net->stem, in, &net->stem_out);
    wg_conv_geom g = geom_of(net, &net->stem);
    wg_tensor xf = wg_net_cur(net, &net->in_f), yf = wg_net_cur(net, &net->stem_f);
    wg_tensor y = wg_net_cur(net, &net->stem_out);
    wg_fixed_to_f32(in, &xf);
    wg_conv_f32_forward(&g, &xf, &net->stem.w->master, &yf, &net->ws);
    wg_f32_to_fixed(&yf, &y, "the stem output");
    net->stem_out.exp = y.exp;
    return WG_QUANT_MAX_UNKNOWN;
}

/* The FC layer: integer logits, or (preset reference) float logits from the pooled
 * features' float copy. */
static void fc_forward(wg_net *net, const wg_tensor *pooled)
{
    if (!net->float_ends) {
        conv_forward(net, &net->fc, pooled, &net->logits);
        return;
    }
    wg_conv_geom g = geom_of(net, &net->fc);
    wg_tensor pf = wg_net_cur(net, &net->pooled_f), zf = wg_net_cur(net, &net->logits_f);
    wg_fixed_to_f32(pooled, &pf);
    wg_conv_f32_forward(&g, &pf, &net->fc.w->master, &zf, &net->ws);
}

static wg_maxpool_geom maxpool_geom(const wg_net *net)
{
    wg_maxpool_geom g;
    WG_ASSERT(wg_maxpool_geom_init(&g, net->n, net->stem.oh, net->stem.ow, net->stem.cout, WG_MAXPOOL_STEM_K,
                                   WG_MAXPOOL_STEM_STRIDE, WG_MAXPOOL_STEM_PAD),
              "max pool geometry");
    return g;
}

/* The ImageNet stem's max pool: stem_out -> pool_out, not quantized (the same integer
 * container and exponent in int8 mode). */
static void maxpool_forward(wg_net *net)
{
    wg_maxpool_geom g = maxpool_geom(net);
    wg_tensor x = wg_net_cur(net, &net->stem_out), y = wg_net_cur(net, &net->pool_out);
    if (net->o.int8) wg_maxpool_int_forward(&g, &x, &y);
    else wg_maxpool_f32_forward(&g, &x, &y);
    net->pool_out.exp = y.exp;
}

void wg_net_forward(wg_net *net, const void *x, int x_exp, int64_t n, bool train)
{
    WG_ASSERT(n >= 1 && n <= net->o.batch, "batch of %lld images (at most %lld)", (long long)n,
              (long long)net->o.batch);
    net->n = n;
    wg_tensor in = wg_net_cur(net, &net->input);
    wg_tensor_upload(&in, x);
    in.exp = net->input.exp = x_exp;
    uint64_t h_max = stem_forward(net, &in); /* max |h| as its producer took it, or unknown */
    const wg_tensor *h = &net->stem_out;
    if (net->maxpool) {
        maxpool_forward(net);
        h = &net->pool_out;
        h_max = WG_QUANT_MAX_UNKNOWN;
    }
    wg_tensor hv;
    for (int i = 0; i < net->nblocks; i++) {
        hv = wg_net_cur(net, h);
        h = block_forward(net, &net->blocks[i], &hv, &h_max, train);
    }
    hv = wg_net_cur(net, h);
    bn_act_forward(net, &net->head, &hv, h_max, train);
    wg_tensor a = wg_net_cur(net, &net->head.a), pooled = wg_net_cur(net, &net->pooled);
    if (net->o.int8) wg_gap_s8_forward(&a, &pooled);
    else wg_gap_f32_forward(&a, &pooled);
    net->pooled.exp = pooled.exp;
    fc_forward(net, &pooled);
}

/* ---- backward ------------------------------------------------------------------------ */

/* The scratch views of E2's parts of the error at convolution u's output, with the
 * exponents the last quantization left; returns how many parts ([quant] e2 = shift: 1). */
static int e2_views(wg_net *net, const conv_unit *u, wg_tensor *pc, wg_tensor *pf)
{
    *pc = wg_net_scratch(net, &net->part_c, u->oh, u->ow, u->cout);
    *pf = wg_net_scratch(net, &net->part_f, u->oh, u->ow, u->cout);
    return net->o.e2 == WG_E2_FLAG ? 2 : 1;
}

/* Backward through convolution u whose input was x, from the error err at its output:
 * dx (NULL for the stem) and the weight gradient. int8: err is quantized first by E2
 * (or E1's rule with [quant] e2 = shift) into the scratch parts; err_max is max|err|
 * when its producer knows it, else WG_QUANT_MAX_UNKNOWN. err NULL (int8): the parts are
 * there already (a projection shares its block's output error with the last
 * convolution; BN's backward pass writes them for the convolution before it). Returns
 * max |dx| when the convolution took it, else WG_QUANT_MAX_UNKNOWN. */
static uint64_t conv_backward(wg_net *net, const conv_unit *u, const wg_tensor *x, const wg_tensor *err,
                              uint64_t err_max, wg_tensor *dx)
{
    wg_conv_geom g = geom_of(net, u);
    if (!net->o.int8) {
        wg_conv_f32_backward(&g, x, &u->w->master, err, dx, &u->w->grad, &net->ws);
        return WG_QUANT_MAX_UNKNOWN;
    }
    wg_tensor pc, pf;
    int nparts = e2_views(net, u, &pc, &pf);
    const wg_tensor *parts[2] = {&pc, &pf};
    if (err && nparts == 2) wg_quant_flag_max(&pc, &pf, err, net->o.bits.e2, err_max);
    else if (err) wg_quant_shift_max(&pc, err, net->o.bits.e2, err_max);
    net->part_c.exp = pc.exp;
    net->part_f.exp = pf.exp;
    return wg_conv_s8_backward(&g, x, &u->w->fwd, parts, nparts, dx, &u->w->grad, &net->ws);
}

/* From the error at activation p->a (err; err_max as for conv_backward) to the error at
 * the BN input (dx; with e2, in int8 mode, E2's parts of it instead; with acc, added into
 * acc, a residual error): E1, ReLU's mask and BN backward (which also fills gamma's and
 * beta's gradients), in int8 mode all inside BN's passes (wg_bn_int_backward_act).
 * Returns max |dx| (max |acc| with acc) in int8 mode, else WG_QUANT_MAX_UNKNOWN. */
static uint64_t act_bn_backward(wg_net *net, act_point *p, const wg_tensor *err, uint64_t err_max, wg_tensor *dx,
                                const wg_bn_int_bwd_e2 *e2, wg_tensor *acc)
{
    bn_unit *u = &p->bn;
    if (net->o.int8) {
        wg_tensor e = wg_net_scratch(net, &net->e8, u->h, u->w, u->c);
        wg_bn_int_saved s = saved_int(net, u);
        return wg_bn_int_backward_act(err, err_max, net->o.bits.e1, &u->gamma->fwd, &u->beta->fwd, &s, &e, dx, e2, acc,
                                      &u->gamma->grad, &u->beta->grad);
    }
    wg_tensor y = wg_net_cur(net, &p->y), e = *err;
    wg_relu_f32_backward(&y, &e);
    wg_bn_f32_saved s = saved_f32(net, u);
    wg_bn_f32_backward(&e, &u->gamma->master, &s, dx, &u->gamma->grad, &u->beta->grad);
    if (acc) wg_add_f32(acc, dx, acc);
    return WG_QUANT_MAX_UNKNOWN;
}

/* acc += add (errors of the same tensor). Returns max |acc| in int8 mode, else
 * WG_QUANT_MAX_UNKNOWN. */
static uint64_t error_add(wg_net *net, wg_tensor *acc, const wg_tensor *add)
{
    if (net->o.int8) return wg_error_accumulate(acc, add);
    wg_add_f32(acc, add, acc);
    return WG_QUANT_MAX_UNKNOWN;
}

static void swap_tensors(wg_tensor *a, wg_tensor *b)
{
    wg_tensor t = *a;
    *a = *b;
    *b = t;
}

/* The scratch view (T1) for the error at convolution u's input, its backward-data
 * output: int32 in int8 mode where the convolution allows it (wg_conv_s8_dx_fits_s32)
 * and no other error is added into it (summed: a projection's), else int64. */
static wg_tensor input_error(wg_net *net, const conv_unit *u, bool summed)
{
    wg_tensor t = wg_net_scratch(net, &net->T1, u->ih, u->iw, u->cin);
    if (net->o.int8 && !summed) {
        wg_conv_geom g = geom_of(net, u);
        if (wg_conv_s8_dx_fits_s32(&g, net->o.e2 == WG_E2_FLAG ? net->o.bits.e2 - 1 : 0)) t.dtype = WG_I32;
    }
    return t;
}

/* R holds the error at the block's output; on return, the error at its input. Scratch:
 * T1 the error at an activation (a conv's input), T3 at a conv's output (the next BN's
 * input), T2 the projection's contribution to the error at a1. */
static void block_backward(wg_net *net, block *bl)
{
    const conv_unit *first = &bl->c[0], *last = &bl->c[bl->nconv - 1];
    int64_t ih = first->ih, iw = first->iw, ci = first->cin;
    wg_tensor R = wg_net_scratch(net, &net->R, last->oh, last->ow, last->cout);
    R.exp = net->R.exp;
    wg_tensor a1 = wg_net_cur(net, &bl->p[0].a);
    wg_tensor da = input_error(net, last, bl->proj && bl->nconv == 1);
    wg_tensor al = wg_net_cur(net, &bl->p[bl->nconv - 1].a);
    uint64_t da_max = conv_backward(net, last, &al, &R, net->R_max, &da);
    wg_tensor dproj = wg_net_scratch(net, &net->T2, ih, iw, ci);
    if (bl->proj) conv_backward(net, &bl->cp, &a1, net->o.int8 ? NULL : &R, WG_QUANT_MAX_UNKNOWN, &dproj);
    for (int i = bl->nconv - 1; i > 0; i--) {
        /* int8: BN's backward pass writes E2's parts of the error at conv c's output */
        const conv_unit *c = &bl->c[i - 1];
        wg_tensor dc = wg_net_scratch(net, &net->T3, c->oh, c->ow, c->cout), pc, pf;
        int nparts = e2_views(net, c, &pc, &pf);
        wg_bn_int_bwd_e2 e2 = {&pc, nparts == 2 ? &pf : NULL, net->o.bits.e2};
        act_bn_backward(net, &bl->p[i], &da, da_max, &dc, net->o.int8 ? &e2 : NULL, NULL);
        net->part_c.exp = pc.exp;
        net->part_f.exp = pf.exp;
        wg_tensor a = wg_net_cur(net, &bl->p[i - 1].a);
        da = input_error(net, c, bl->proj && i == 1);
        da_max = conv_backward(net, c, &a, net->o.int8 ? NULL : &dc, WG_QUANT_MAX_UNKNOWN, &da);
    }
    if (bl->proj) da_max = error_add(net, &da, &dproj);
    wg_tensor dxbn = wg_net_scratch(net, &net->T3, ih, iw, ci);
    if (bl->proj) {
        net->R_max = act_bn_backward(net, &bl->p[0], &da, da_max, &dxbn, NULL, NULL);
        swap_tensors(&net->R, &net->T3); /* the shortcut did not reach x: its error is BN1's */
        net->R.exp = dxbn.exp;
    } else { /* the error at x: the shortcut's (R) plus BN1's, added inside BN's pass */
        wg_tensor Rin = wg_net_scratch(net, &net->R, ih, iw, ci);
        Rin.exp = R.exp;
        net->R_max = act_bn_backward(net, &bl->p[0], &da, da_max, &dxbn, NULL, &Rin);
        net->R.exp = Rin.exp;
    }
}

/* From the logits' error to the pooled features' error dpool (int64 in int8 mode) and
 * the FC weights' gradient; the float layer (preset reference) puts its float error
 * back on a fixed-point grid. */
static void fc_backward(wg_net *net, wg_tensor *dpool)
{
    wg_conv_geom g = geom_of(net, &net->fc);
    if (net->float_ends) {
        wg_tensor pf = wg_net_cur(net, &net->pooled_f), dz = wg_net_cur(net, &net->dlogits_f);
        wg_tensor dpf = wg_net_cur(net, &net->dpool_f);
        wg_conv_f32_backward(&g, &pf, &net->fc.w->master, &dz, &dpf, &net->fc.w->grad, &net->ws);
        wg_f32_to_fixed(&dpf, dpool, "the error of the pooled features");
        return;
    }
    wg_tensor pooled = wg_net_cur(net, &net->pooled), dl = wg_net_cur(net, &net->dlogits);
    pooled.exp = net->pooled.exp;
    dl.exp = net->dlogits.exp;
    conv_backward(net, &net->fc, &pooled, &dl, WG_QUANT_MAX_UNKNOWN, dpool);
}

/* The stem's weight gradient from the error R at its output (the float layer of the
 * preset reference takes R's float copy: no E2 there, as the reference). */
static void stem_backward(wg_net *net, const wg_tensor *R)
{
    wg_tensor in = wg_net_cur(net, &net->input);
    in.exp = net->input.exp;
    if (!net->float_ends) {
        conv_backward(net, &net->stem, &in, R, net->R_max, NULL);
        return;
    }
    wg_conv_geom g = geom_of(net, &net->stem);
    wg_tensor ef = wg_net_cur(net, &net->stem_f), xf = wg_net_cur(net, &net->in_f);
    wg_fixed_to_f32(R, &ef);
    wg_conv_f32_backward(&g, &xf, &net->stem.w->master, &ef, NULL, &net->stem.w->grad, &net->ws);
}

static void backward(wg_net *net)
{
    act_point *hp = &net->head;
    wg_tensor dpool = wg_net_scratch(net, &net->T1, 1, 1, hp->bn.c);
    fc_backward(net, &dpool);
    wg_tensor a = wg_net_cur(net, &hp->a), da = wg_net_scratch(net, &net->T2, hp->bn.h, hp->bn.w, hp->bn.c);
    if (net->o.int8) wg_gap_s8_backward(&dpool, &a, &da);
    else wg_gap_f32_backward(&dpool, &a, &da);
    wg_tensor R = wg_net_scratch(net, &net->R, hp->bn.h, hp->bn.w, hp->bn.c);
    net->R_max = act_bn_backward(net, hp, &da, WG_QUANT_MAX_UNKNOWN, &R, NULL, NULL);
    net->R.exp = R.exp;
    for (int i = net->nblocks - 1; i >= 0; i--) block_backward(net, &net->blocks[i]);
    if (net->maxpool) {
        wg_maxpool_geom g = maxpool_geom(net);
        wg_tensor dy = wg_net_scratch(net, &net->R, g.oh, g.ow, g.c), x = wg_net_cur(net, &net->stem_out);
        dy.exp = net->R.exp;
        R = wg_net_scratch(net, &net->T1, g.h, g.w, g.c);
        if (net->o.int8) wg_maxpool_int_backward(&g, &x, &dy, &R);
        else wg_maxpool_f32_backward(&g, &x, &dy, &R);
        net->R_max = WG_QUANT_MAX_UNKNOWN;
    } else {
        R = wg_net_scratch(net, &net->R, net->stem.oh, net->stem.ow, net->stem.cout);
        R.exp = net->R.exp;
    }
    stem_backward(net, &R);
}

void wg_net_loss(wg_net *net, const int32_t *labels, bool do_backward, wg_loss_stats *st)
{
    wg_tensor z = wg_net_cur(net, &net->logits), dz = wg_net_cur(net, &net->dlogits);
    z.exp = net->logits.exp;
    if (net->float_ends) {
        wg_tensor zf = wg_net_cur(net, &net->logits_f), dzf = wg_net_cur(net, &net->dlogits_f);
        wg_softmax_ce_f32(&zf, labels, do_backward ? &dzf : NULL, st);
    } else if (net->o.int8) wg_softmax_ce_s32(&z, labels, do_backward ? &dz : NULL, st);
    else wg_softmax_ce_f32(&z, labels, do_backward ? &dz : NULL, st);
    net->dlogits.exp = dz.exp;
    if (do_backward) backward(net);
}
