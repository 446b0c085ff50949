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

/* A residual block: nconv BN-ReLU-quantize-conv steps plus the shortcut. Step i normalizes
 * the previous step's conv output (step 0: the block input x) into p[i] and convolves
 * p[i].a with c[i] into conv_out[i]; the block output is conv_out[nconv-1] plus the
 * shortcut: x itself, or (proj) the 1x1 convolution cp of the first activation p[0].a.
 * Basic block (nconv = 2): 3x3 (stride) then 3x3. Bottleneck (nconv = 3): 1x1, 3x3
 * (stride), 1x1 to WG_BOTTLENECK_EXPANSION times the width. */
enum { WG_BLOCK_MAX_CONVS = 3, WG_BOTTLENECK_EXPANSION = 4 };

typedef struct block {
    int nconv;
    act_point p[WG_BLOCK_MAX_CONVS];
    conv_unit c[WG_BLOCK_MAX_CONVS], cp; /* cp: the projection shortcut, when proj */
    bool proj;
    /* conv outputs [N][H][W][C] (int32 accumulators, or float), the shortcut conv's
     * output and the block output (the residual stream: int32 by the fit rule) */
    wg_tensor conv_out[WG_BLOCK_MAX_CONVS], cpout, out;
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
    /* input [N][H][W][C] (int8 or float); stem_out, the stem conv's output; pool_out,
     * the ImageNet stem's 3x3 stride-2 max pool of stem_out (when maxpool: the same
     * container and exponent, not quantized), the residual stream's first tensor;
     * pooled [N][C], the global average pool of the head's activation; the logits
     * [N][K] and their error */
    bool maxpool;
    wg_tensor input, stem_out, pool_out, pooled, logits, dlogits;
    block *blocks;
    int nblocks;
    act_point head;
    /* backward scratch, each as large as the largest activation: errors R, T1..T3
     * (int64 or float), E2's parts and E1's output (int8), the residual sum (int64) */
    wg_tensor R, T1, T2, T3, part_c, part_f, e8, sum64;
    uint64_t R_max; /* max |R| as its producer took it (int8), else WG_QUANT_MAX_UNKNOWN */
    /* float_ends (preset reference): float copies at the float layers' boundaries —
     * the image, the stem output (forward) and its error (backward), the pooled
     * features, the logits and their error, the pooled features' error */
    bool float_ends;
    wg_tensor in_f, stem_f, pooled_f, logits_f, dlogits_f, dpool_f;
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
