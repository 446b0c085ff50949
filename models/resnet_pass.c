/* resnet_pass.c: the forward and backward passes of the pre-activation ResNet (the
 * structure and the data path are described in resnet.c). Each helper below serves
 * both modes: int8 (the WAGEUBN data path) and fp32 (the baseline). */
#include <string.h>

#include "act.h"
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

/* p->y = BN(x), then p->a = ReLU (and the A quantizer in int8 mode). */
static void bn_act_forward(wg_net *net, act_point *p, const wg_tensor *x, bool train)
{
    bn_unit *u = &p->bn;
    wg_tensor y = wg_net_cur(net, &p->y), a = wg_net_cur(net, &p->a);
    if (net->o.int8) {
        wg_bn_int_saved s = saved_int(net, u);
        if (train) wg_bn_int_forward_train(x, &u->gamma->fwd, &u->beta->fwd, &y, &s, &u->ri);
        else wg_bn_int_forward_eval(x, &u->gamma->fwd, &u->beta->fwd, &u->ri, &y, &s);
        u->si.e_x = s.e_x;
        u->si.clamps = s.clamps;
        wg_relu_quant_forward(&y, &a, net->o.bits.a, net->o.act);
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

static void conv_forward(wg_net *net, const conv_unit *u, const wg_tensor *x, wg_tensor *out)
{
    wg_conv_geom g = geom_of(net, u);
    wg_tensor y = wg_net_cur(net, out);
    if (net->o.int8) wg_conv_s8_forward(&g, x, &u->w->fwd, &y, &net->ws);
    else wg_conv_f32_forward(&g, x, &u->w->master, &y, &net->ws);
    out->exp = y.exp;
}

/* out = a + b on the residual stream. */
static void residual_forward(wg_net *net, const wg_tensor *a, const wg_tensor *b, wg_tensor *out)
{
    wg_tensor o = wg_net_cur(net, out), x = wg_net_cur(net, a), y = wg_net_cur(net, b);
    if (net->o.int8) {
        wg_tensor tmp = wg_net_scratch(net, &net->sum64, o.shape[1], o.shape[2], o.shape[3]);
        wg_residual_add(&x, &y, &o, &tmp);
    } else {
        wg_add_f32(&x, &y, &o);
    }
    out->exp = o.exp;
}

static const wg_tensor *block_forward(wg_net *net, block *bl, const wg_tensor *x, bool train)
{
    wg_tensor a1 = wg_net_cur(net, &bl->p1.a), a2 = wg_net_cur(net, &bl->p2.a), c1 = wg_net_cur(net, &bl->c1out);
    bn_act_forward(net, &bl->p1, x, train);
    a1.exp = bl->p1.a.exp;
    conv_forward(net, &bl->c1, &a1, &bl->c1out);
    c1.exp = bl->c1out.exp;
    bn_act_forward(net, &bl->p2, &c1, train);
    a2.exp = bl->p2.a.exp;
    conv_forward(net, &bl->c2, &a2, &bl->c2out);
    const wg_tensor *shortcut = x;
    if (bl->proj) {
        conv_forward(net, &bl->cp, &a1, &bl->cpout);
        shortcut = &bl->cpout;
    }
    residual_forward(net, &bl->c2out, shortcut, &bl->out);
    return &bl->out;
}

void wg_net_forward(wg_net *net, const void *x, int x_exp, int64_t n, bool train)
{
    WG_ASSERT(n >= 1 && n <= net->o.batch, "batch of %lld images (at most %lld)", (long long)n,
              (long long)net->o.batch);
    net->n = n;
    wg_tensor in = wg_net_cur(net, &net->input);
    wg_tensor_upload(&in, x);
    in.exp = net->input.exp = x_exp;
    conv_forward(net, &net->stem, &in, &net->stem_out);
    const wg_tensor *h = &net->stem_out;
    wg_tensor hv;
    for (int i = 0; i < net->nblocks; i++) {
        hv = wg_net_cur(net, h);
        h = block_forward(net, &net->blocks[i], &hv, train);
    }
    hv = wg_net_cur(net, h);
    bn_act_forward(net, &net->head, &hv, train);
    wg_tensor a = wg_net_cur(net, &net->head.a), pooled = wg_net_cur(net, &net->pooled);
    if (net->o.int8) wg_gap_s8_forward(&a, &pooled);
    else wg_gap_f32_forward(&a, &pooled);
    net->pooled.exp = pooled.exp;
    conv_forward(net, &net->fc, &pooled, &net->logits);
}

/* ---- backward ------------------------------------------------------------------------ */

/* Backward through convolution u whose input was x, from the error err at its output:
 * dx (NULL for the stem) and the weight gradient. int8: err is quantized first by E2
 * (or E1's rule with [quant] e2 = shift). */
static void conv_backward(wg_net *net, const conv_unit *u, const wg_tensor *x, const wg_tensor *err, wg_tensor *dx)
{
    wg_conv_geom g = geom_of(net, u);
    if (!net->o.int8) {
        wg_conv_f32_backward(&g, x, &u->w->master, err, dx, &u->w->grad, &net->ws);
        return;
    }
    wg_tensor pc = wg_net_scratch(net, &net->part_c, g.oh, g.ow, g.o), pf = wg_net_scratch(net, &net->part_f, g.oh, g.ow, g.o);
    const wg_tensor *parts[2] = {&pc, &pf};
    int nparts = 2;
    if (net->o.e2 == WG_E2_FLAG) {
        wg_quant_flag(&pc, &pf, err, net->o.bits.e2);
    } else {
        wg_quant_shift(&pc, err, net->o.bits.e2);
        nparts = 1;
    }
    wg_conv_s8_backward(&g, x, &u->w->fwd, parts, nparts, dx, &u->w->grad, &net->ws);
}

/* From the error at activation p->a (err) to the error at the BN input (dx): E1,
 * ReLU's mask, BN backward (which also fills gamma's and beta's gradients). */
static void act_bn_backward(wg_net *net, act_point *p, const wg_tensor *err, wg_tensor *dx)
{
    bn_unit *u = &p->bn;
    wg_tensor y = wg_net_cur(net, &p->y);
    if (net->o.int8) {
        wg_tensor e = wg_net_scratch(net, &net->e8, u->h, u->w, u->c);
        wg_quant_shift(&e, err, net->o.bits.e1);
        wg_relu_backward_s8(&y, &e);
        wg_bn_int_saved s = saved_int(net, u);
        wg_bn_int_backward(&e, &u->gamma->fwd, &s, dx, &u->gamma->grad, &u->beta->grad);
    } else {
        wg_tensor e = *err;
        wg_relu_f32_backward(&y, &e);
        wg_bn_f32_saved s = saved_f32(net, u);
        wg_bn_f32_backward(&e, &u->gamma->master, &s, dx, &u->gamma->grad, &u->beta->grad);
    }
}

/* acc += add (errors of the same tensor). */
static void error_add(wg_net *net, wg_tensor *acc, const wg_tensor *add)
{
    if (net->o.int8) wg_error_accumulate(acc, add);
    else wg_add_f32(acc, add, acc);
}

static void swap_tensors(wg_tensor *a, wg_tensor *b)
{
    wg_tensor t = *a;
    *a = *b;
    *b = t;
}

/* R holds the error at the block's output; on return, the error at its input. */
static void block_backward(wg_net *net, block *bl)
{
    int64_t oh = bl->c1.oh, ow = bl->c1.ow, co = bl->c1.cout, ih = bl->c1.ih, iw = bl->c1.iw, ci = bl->c1.cin;
    wg_tensor R = wg_net_scratch(net, &net->R, oh, ow, co);
    R.exp = net->R.exp;
    wg_tensor a1 = wg_net_cur(net, &bl->p1.a), a2 = wg_net_cur(net, &bl->p2.a);
    a1.exp = bl->p1.a.exp;
    a2.exp = bl->p2.a.exp;
    wg_tensor da2 = wg_net_scratch(net, &net->T1, oh, ow, co);
    conv_backward(net, &bl->c2, &a2, &R, &da2);
    wg_tensor dproj = wg_net_scratch(net, &net->T2, ih, iw, ci);
    if (bl->proj) conv_backward(net, &bl->cp, &a1, &R, &dproj);
    wg_tensor dc1 = wg_net_scratch(net, &net->T3, oh, ow, co);
    act_bn_backward(net, &bl->p2, &da2, &dc1);
    wg_tensor da1 = wg_net_scratch(net, &net->T1, ih, iw, ci);
    conv_backward(net, &bl->c1, &a1, &dc1, &da1);
    if (bl->proj) error_add(net, &da1, &dproj);
    wg_tensor dxbn = wg_net_scratch(net, &net->T3, ih, iw, ci);
    act_bn_backward(net, &bl->p1, &da1, &dxbn);
    if (bl->proj) {
        swap_tensors(&net->R, &net->T3); /* the shortcut did not reach x: its error is BN1's */
        net->R.exp = dxbn.exp;
    } else {
        wg_tensor Rin = wg_net_scratch(net, &net->R, ih, iw, ci);
        Rin.exp = R.exp;
        error_add(net, &Rin, &dxbn);
        net->R.exp = Rin.exp;
    }
}

static void backward(wg_net *net)
{
    act_point *hp = &net->head;
    wg_tensor pooled = wg_net_cur(net, &net->pooled), dl = wg_net_cur(net, &net->dlogits);
    pooled.exp = net->pooled.exp;
    dl.exp = net->dlogits.exp;
    wg_tensor dpool = wg_net_scratch(net, &net->T1, 1, 1, hp->bn.c);
    conv_backward(net, &net->fc, &pooled, &dl, &dpool);
    wg_tensor a = wg_net_cur(net, &hp->a), da = wg_net_scratch(net, &net->T2, hp->bn.h, hp->bn.w, hp->bn.c);
    if (net->o.int8) wg_gap_s8_backward(&dpool, &a, &da);
    else wg_gap_f32_backward(&dpool, &a, &da);
    wg_tensor R = wg_net_scratch(net, &net->R, hp->bn.h, hp->bn.w, hp->bn.c);
    act_bn_backward(net, hp, &da, &R);
    net->R.exp = R.exp;
    for (int i = net->nblocks - 1; i >= 0; i--) block_backward(net, &net->blocks[i]);
    wg_tensor in = wg_net_cur(net, &net->input);
    in.exp = net->input.exp;
    R = wg_net_scratch(net, &net->R, net->stem.oh, net->stem.ow, net->stem.cout);
    R.exp = net->R.exp;
    conv_backward(net, &net->stem, &in, &R, NULL);
}

void wg_net_loss(wg_net *net, const int32_t *labels, bool do_backward, wg_loss_stats *st)
{
    wg_tensor z = wg_net_cur(net, &net->logits), dz = wg_net_cur(net, &net->dlogits);
    z.exp = net->logits.exp;
    if (net->o.int8) wg_softmax_ce_s32(&z, labels, do_backward ? &dz : NULL, st);
    else wg_softmax_ce_f32(&z, labels, do_backward ? &dz : NULL, st);
    net->dlogits.exp = dz.exp;
    if (do_backward) backward(net);
}
