/* resnet_impl.h: the pre-activation ResNet's internals, shared by resnet.c (building)
 * and resnet_pass.c (forward and backward passes). Not a public header. */
#ifndef WG_RESNET_IMPL_H
#define WG_RESNET_IMPL_H

#include "bn.h"
#include "check.h"
#include "conv.h"
#include "net.h"

typedef struct conv_unit {
    wg_param *w;
    int64_t cin, cout, k, stride, pad, ih, iw, oh, ow;
} conv_unit;

typedef struct bn_unit {
    wg_param *gamma, *beta;
    int64_t h, w, c;
    wg_bn_int_saved si;
    wg_bn_running ri;
    wg_bn_f32_saved sf;
    wg_bn_f32_running rf;
} bn_unit;

/* One BN-ReLU(-quantize) point: y is the BN output (rectified in place), a the activation. */
typedef struct act_point {
    bn_unit bn;
    wg_tensor y, a;
} act_point;

typedef struct block {
    act_point p1, p2;
    conv_unit c1, c2, cp; /* cp: the projection shortcut, when proj */
    bool proj;
    wg_tensor c1out, c2out, cpout, out;
} block;

enum { WG_NET_MAX_PARAMS = 512 };

struct wg_net {
    wg_net_opts o;
    char name[32];
    wg_backend *b;
    int64_t n; /* images in the current batch */
    wg_param params[WG_NET_MAX_PARAMS];
    int nparams;
    conv_unit stem, fc;
    wg_tensor input, stem_out, pooled, logits, dlogits;
    block *blocks;
    int nblocks;
    act_point head;
    /* backward scratch, each as large as the largest activation: errors R, T1..T3
     * (int64 or float), E2's parts and E1's output (int8), the residual sum (int64) */
    wg_tensor R, T1, T2, T3, part_c, part_f, e8, sum64;
    int64_t max_act;
    wg_conv_ws ws;
};

/* t with its first dimension set to the current batch (same data). */
static inline wg_tensor wg_net_cur(const wg_net *net, const wg_tensor *t)
{
    wg_tensor v = *t;
    v.shape[0] = net->n;
    return v;
}

/* A scratch buffer viewed as [N][h][w][c] for the current batch. */
static inline wg_tensor wg_net_scratch(const wg_net *net, const wg_tensor *buf, int64_t h, int64_t w, int64_t c)
{
    WG_ASSERT(net->n * h * w * c <= net->max_act, "scratch view of %lld elements", (long long)(net->n * h * w * c));
    wg_tensor v = *buf;
    v.layout = WG_LAYOUT_NHWC;
    v.ndim = 4;
    v.shape[0] = net->n;
    v.shape[1] = h;
    v.shape[2] = w;
    v.shape[3] = c;
    return v;
}

#endif
