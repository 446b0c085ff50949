/* resnet.c: pre-activation ResNet v2 (wageubn.md, "Network and training recipe"), in
 * int8 mode and in the fp32 baseline mode, through one code path.
 *
 * Every network is a stem convolution, stages of residual blocks, then BN-ReLU, global
 * average pooling and a fully connected layer (no bias). The first block of every stage
 * but the first has stride 2; a block whose stride or channel count changes has a 1x1
 * projection shortcut applied to its first normalized activation (a1).
 * - CIFAR-style ResNet-(6n+2) (resnet20/32/56; resnet8 has n = 1, "plaincnn" n = 0, the
 *   stem and the head alone): a 3x3 stride-1 stem to 16 channels, three stages of n
 *   basic blocks of widths 16, 32, 64. Inputs of at least 8x8.
 * - ImageNet-style ResNet-18/34 (basic blocks, [2,2,2,2] and [3,4,6,3]) and ResNet-50
 *   (bottleneck blocks, [3,4,6,3]): a 7x7 stride-2 stem to 64 channels, a 3x3 stride-2
 *   max pool (its output, not quantized, is the residual stream's first tensor), four
 *   stages of widths 64, 128, 256, 512. Inputs of at least 32x32 (224x224 in the
 *   reference: 7x7 features at the head).
 * Basic block: BN-ReLU-quantize-conv3x3(stride)-BN-ReLU-quantize-conv3x3 plus the
 * shortcut. Bottleneck (as TensorFlow's official ResNet v2, stride on the 3x3):
 * BN-ReLU-quantize-conv1x1(width)-BN-ReLU-quantize-conv3x3(width, stride)-
 * BN-ReLU-quantize-conv1x1(4 width) plus the shortcut (a projection also in the first
 * block of stage 1: 64 -> 256 channels). Both are one struct (resnet_impl.h: block,
 * nconv = 2 or 3) and one forward and backward code path.
 *
 * Data path (int8 mode, docs/numerics.md): the residual stream is int32 by the fit
 * rule; BN gives y (int32, e = -14); ReLU + A quantizer give a (int8); a conv gives an
 * int32 accumulator. Backward, the error of every conv output is quantized by E2 (two
 * int8 parts, or E1's single grid with [quant] e2 = shift) and the error of every
 * activation by E1 (int8), ReLU masks it and BN turns it into the error of its
 * input (int64). Every sum of errors is exact (wg_error_accumulate). The max pool
 * keeps the stem's int32 accumulator and its exponent; backward, it routes each error
 * to its window's arg-max (int64, exact sums). The fp32 mode
 * runs the same structure with float tensors and no quantizers.
 *
 * Dimension legend: N batch, H/W spatial, C channels, K classes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "bn.h"
#include "backend.h"
#include "check.h"
#include "conv.h"
#include "init.h"
#include "net.h"
#include "pool.h"
#include "quant.h"
#include "residual.h"
#include "resnet_impl.h"

/* ---- tensors ------------------------------------------------------------------------- */

static wg_dtype act_dtype(const wg_net *net, wg_dtype int_type) { return net->o.int8 ? int_type : WG_F32; }

static bool alloc_nhwc(wg_net *net, wg_tensor *t, wg_dtype dt, int64_t h, int64_t w, int64_t c)
{
    if (h * w * c * net->o.batch > net->max_act) net->max_act = h * w * c * net->o.batch;
    return wg_tensor_init_nhwc(t, net->b, dt, net->o.batch, h, w, c, 0);
}

/* ---- building ------------------------------------------------------------------------ */

/* int8: an integer parameter (int8 mode, except the reference preset's float layers). */
static wg_param *new_param(wg_net *net, const char *name, wg_param_kind kind, bool int8, wg_layout layout, int ndim,
                           const int64_t *shape)
{
    WG_ASSERT(net->nparams < WG_NET_MAX_PARAMS, "more than %d parameters", WG_NET_MAX_PARAMS);
    wg_param *p = &net->params[net->nparams];
    if (!wg_param_init(p, net->b, name, (uint32_t)net->nparams, kind, int8, &net->o.bits, layout, ndim, shape))
        return NULL;
    net->nparams++;
    return p;
}

/* float_layer: the stem or the FC layer, kept in float by the reference preset. */
static bool conv_unit_init(wg_net *net, conv_unit *u, const char *name, int64_t cin, int64_t cout, int64_t k,
                           int64_t stride, int64_t ih, int64_t iw, bool float_layer)
{
    *u = (conv_unit){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad = (k - 1) / 2, .ih = ih, .iw = iw};
    u->oh = (ih + 2 * u->pad - k) / stride + 1;
    u->ow = (iw + 2 * u->pad - k) / stride + 1;
    const int64_t shape[4] = {cout, k, k, cin};
    u->w = new_param(net, name, WG_PARAM_WEIGHT, net->o.int8 && !(float_layer && net->float_ends), WG_LAYOUT_OHWI, 4,
                     shape);
    if (u->w == NULL) return false;
    wg_init_weight(u->w, k * k * cin, net->o.seed);
    wg_param_refresh(u->w, &net->o.bits);
    return true;
}

static bool bn_unit_init(wg_net *net, bn_unit *u, const char *name, int64_t h, int64_t w, int64_t c)
{
    char pname[48];
    memset(u, 0, sizeof(*u));
    u->h = h;
    u->w = w;
    u->c = c;
    snprintf(pname, sizeof(pname), "%s.gamma", name);
    u->gamma = new_param(net, pname, WG_PARAM_BN, net->o.int8, WG_LAYOUT_PLAIN, 1, &c);
    snprintf(pname, sizeof(pname), "%s.beta", name);
    u->beta = new_param(net, pname, WG_PARAM_BN, net->o.int8, WG_LAYOUT_PLAIN, 1, &c);
    if (u->gamma == NULL || u->beta == NULL) return false;
    wg_init_constant(u->gamma, 1.0);
    wg_init_constant(u->beta, 0.0);
    wg_param_refresh(u->gamma, &net->o.bits);
    wg_param_refresh(u->beta, &net->o.bits);
    if (net->o.int8)
        return wg_bn_int_saved_init(&u->si, net->b, net->o.batch, h, w, c) && wg_bn_running_init(&u->ri, net->b, c);
    return wg_bn_f32_saved_init(&u->sf, net->b, net->o.batch, h, w, c) && wg_bn_f32_running_init(&u->rf, net->b, c);
}

static bool act_point_init(wg_net *net, act_point *p, const char *name, int64_t h, int64_t w, int64_t c)
{
    return bn_unit_init(net, &p->bn, name, h, w, c) && alloc_nhwc(net, &p->y, act_dtype(net, WG_I32), h, w, c) &&
           alloc_nhwc(net, &p->a, act_dtype(net, WG_I8), h, w, c);
}

/* The convolutions of a block: kernel size, stride and output channels of each. */
typedef struct block_shape {
    int nconv;
    int64_t k[WG_BLOCK_MAX_CONVS], stride[WG_BLOCK_MAX_CONVS], cout[WG_BLOCK_MAX_CONVS];
} block_shape;

/* Basic: 3x3 (stride) - 3x3, width channels. Bottleneck (as TensorFlow's official
 * ResNet v2): 1x1 - 3x3 (stride) - 1x1, width, width, then expansion * width. */
static block_shape block_shape_of(bool bottleneck, int64_t width, int64_t stride)
{
    if (!bottleneck) return (block_shape){.nconv = 2, .k = {3, 3}, .stride = {stride, 1}, .cout = {width, width}};
    return (block_shape){.nconv = 3,
                         .k = {1, 3, 1},
                         .stride = {1, stride, 1},
                         .cout = {width, width, WG_BOTTLENECK_EXPANSION * width}};
}

/* Parameters are created in the order bn1, conv1, bn2, conv2 (, bn3, conv3), proj: their
 * index is the Philox id of their initialization and of their G quantizer. */
static bool block_init(wg_net *net, block *bl, int index, const block_shape *sh, int64_t cin, int64_t h, int64_t w)
{
    char name[32];
    memset(bl, 0, sizeof(*bl));
    bl->nconv = sh->nconv;
    int64_t c = cin, stride = 1;
    for (int i = 0; i < sh->nconv; i++) {
        snprintf(name, sizeof(name), "block%d.bn%d", index, i + 1);
        if (!act_point_init(net, &bl->p[i], name, h, w, c)) return false;
        snprintf(name, sizeof(name), "block%d.conv%d", index, i + 1);
        if (!conv_unit_init(net, &bl->c[i], name, c, sh->cout[i], sh->k[i], sh->stride[i], h, w, false)) return false;
        h = bl->c[i].oh;
        w = bl->c[i].ow;
        c = sh->cout[i];
        stride *= sh->stride[i];
        if (!alloc_nhwc(net, &bl->conv_out[i], act_dtype(net, WG_I32), h, w, c)) return false;
    }
    if (!alloc_nhwc(net, &bl->out, act_dtype(net, WG_I32), h, w, c)) return false;
    bl->proj = stride != 1 || cin != c;
    if (bl->proj) {
        snprintf(name, sizeof(name), "block%d.proj", index);
        if (!conv_unit_init(net, &bl->cp, name, cin, c, 1, stride, bl->c[0].ih, bl->c[0].iw, false) ||
            !alloc_nhwc(net, &bl->cpout, act_dtype(net, WG_I32), h, w, c))
            return false;
        WG_ASSERT(bl->cp.oh == h && bl->cp.ow == w, "block %d: the shortcut's %lldx%lld output is not %lldx%lld",
                  index, (long long)bl->cp.oh, (long long)bl->cp.ow, (long long)h, (long long)w);
    }
    return true;
}

enum { WG_ARCH_MAX_STAGES = 4 };

/* A network of the family: the stem (k x k, stride, to widths[0] channels, then the
 * max pool or not), the stages (blocks[s] blocks of width widths[s]; the first block
 * of every stage but the first has stride 2) and the smallest input it takes. */
typedef struct arch {
    const char *name;
    int64_t stem_k, stem_stride;
    bool maxpool, bottleneck;
    int nstages;
    int blocks[WG_ARCH_MAX_STAGES];
    int64_t widths[WG_ARCH_MAX_STAGES];
    int64_t min_hw;
} arch;

#define WG_CIFAR_ARCH(nm, n) {nm, 3, 1, false, false, 3, {n, n, n}, {16, 32, 64}, 8}
#define WG_IMAGENET_ARCH(nm, bn, b1, b2, b3, b4) {nm, 7, 2, true, bn, 4, {b1, b2, b3, b4}, {64, 128, 256, 512}, 32}

static const arch k_archs[] = {
    WG_CIFAR_ARCH("plaincnn", 0),
    WG_CIFAR_ARCH("resnet8", 1),
    WG_CIFAR_ARCH("resnet20", 3),
    WG_CIFAR_ARCH("resnet32", 5),
    WG_CIFAR_ARCH("resnet56", 9),
    WG_IMAGENET_ARCH("resnet18", false, 2, 2, 2, 2),
    WG_IMAGENET_ARCH("resnet34", false, 3, 4, 6, 3),
    WG_IMAGENET_ARCH("resnet50", true, 3, 4, 6, 3),
};

static const arch *find_arch(const char *model)
{
    for (size_t i = 0; i < sizeof(k_archs) / sizeof(k_archs[0]); i++)
        if (!strcmp(model, k_archs[i].name)) return &k_archs[i];
    return NULL;
}

static bool build(wg_net *net, const arch *ar)
{
    const wg_net_opts *o = &net->o;
    int64_t c = ar->widths[0];
    if (!conv_unit_init(net, &net->stem, "stem", o->c, c, ar->stem_k, ar->stem_stride, o->h, o->w, true) ||
        !wg_tensor_init_nhwc(&net->input, net->b, act_dtype(net, WG_I8), o->batch, o->h, o->w, o->c, 0) ||
        !alloc_nhwc(net, &net->stem_out, act_dtype(net, WG_I32), net->stem.oh, net->stem.ow, c))
        return false;
    int64_t h = net->stem.oh, w = net->stem.ow;
    net->maxpool = ar->maxpool;
    if (net->maxpool) {
        wg_maxpool_geom g;
        WG_ASSERT(wg_maxpool_geom_init(&g, o->batch, h, w, c, WG_MAXPOOL_STEM_K, WG_MAXPOOL_STEM_STRIDE,
                                       WG_MAXPOOL_STEM_PAD),
                  "max pool geometry");
        h = g.oh;
        w = g.ow;
        if (!alloc_nhwc(net, &net->pool_out, act_dtype(net, WG_I32), h, w, c)) return false;
    }
    net->nblocks = 0;
    for (int s = 0; s < ar->nstages; s++) net->nblocks += ar->blocks[s];
    net->blocks = calloc((size_t)(net->nblocks > 0 ? net->nblocks : 1), sizeof(block));
    WG_ASSERT(net->blocks != NULL, "out of memory for %d blocks", net->nblocks);
    int index = 0;
    for (int s = 0; s < ar->nstages; s++)
        for (int i = 0; i < ar->blocks[s]; i++, index++) {
            block *bl = &net->blocks[index];
            block_shape sh = block_shape_of(ar->bottleneck, ar->widths[s], (s > 0 && i == 0) ? 2 : 1);
            if (!block_init(net, bl, index, &sh, c, h, w)) return false;
            h = bl->c[bl->nconv - 1].oh;
            w = bl->c[bl->nconv - 1].ow;
            c = bl->c[bl->nconv - 1].cout;
        }
    if (!act_point_init(net, &net->head, "head.bn", h, w, c) ||
        !conv_unit_init(net, &net->fc, "fc", c, o->classes, 1, 1, 1, 1, true) ||
        !wg_tensor_init_nhwc(&net->pooled, net->b, act_dtype(net, WG_I8), o->batch, 1, 1, c, 0) ||
        !wg_tensor_init_nhwc(&net->logits, net->b, act_dtype(net, WG_I32), o->batch, 1, 1, o->classes, 0) ||
        !wg_tensor_init_nhwc(&net->dlogits, net->b, act_dtype(net, WG_I32), o->batch, 1, 1, o->classes, 0))
        return false;
    int64_t m = net->max_act;
    wg_dtype err = act_dtype(net, WG_I64);
    bool ok = wg_tensor_init(&net->R, net->b, err, WG_LAYOUT_PLAIN, 1, &m, 0) &&
              wg_tensor_init(&net->T1, net->b, err, WG_LAYOUT_PLAIN, 1, &m, 0) &&
              wg_tensor_init(&net->T2, net->b, err, WG_LAYOUT_PLAIN, 1, &m, 0) &&
              wg_tensor_init(&net->T3, net->b, err, WG_LAYOUT_PLAIN, 1, &m, 0);
    if (ok && o->int8)
        ok = wg_tensor_init(&net->part_c, net->b, WG_I8, WG_LAYOUT_PLAIN, 1, &m, 0) &&
             wg_tensor_init(&net->part_f, net->b, WG_I8, WG_LAYOUT_PLAIN, 1, &m, 0) &&
             wg_tensor_init(&net->e8, net->b, WG_I8, WG_LAYOUT_PLAIN, 1, &m, 0) &&
             wg_tensor_init(&net->sum64, net->b, WG_I64, WG_LAYOUT_PLAIN, 1, &m, 0);
    if (ok && net->float_ends) {
        int64_t n = o->batch;
        ok = wg_tensor_init_nhwc(&net->in_f, net->b, WG_F32, n, o->h, o->w, o->c, 0) &&
             wg_tensor_init_nhwc(&net->stem_f, net->b, WG_F32, n, net->stem.oh, net->stem.ow, net->stem.cout, 0) &&
             wg_tensor_init_nhwc(&net->pooled_f, net->b, WG_F32, n, 1, 1, c, 0) &&
             wg_tensor_init_nhwc(&net->dpool_f, net->b, WG_F32, n, 1, 1, c, 0) &&
             wg_tensor_init_nhwc(&net->logits_f, net->b, WG_F32, n, 1, 1, o->classes, 0) &&
             wg_tensor_init_nhwc(&net->dlogits_f, net->b, WG_F32, n, 1, 1, o->classes, 0);
    }
    return ok;
}

wg_net *wg_net_create(const wg_net_opts *o, wg_backend *b, char *err, size_t errlen)
{
    const arch *ar = find_arch(o->model);
    if (ar == NULL) {
        snprintf(err, errlen, "model '%s' is not available on this build (expected plaincnn, resnet8, resnet20, "
                              "resnet32, resnet56 (CIFAR-style) or resnet18, resnet34, resnet50 (ImageNet-style))",
                 o->model);
        return NULL;
    }
    if (o->h < ar->min_hw || o->w < ar->min_hw || o->c < 1 || o->classes < 2 || o->batch < 1) {
        snprintf(err, errlen,
                 "model '%s' needs images of at least %lldx%lld and 2 classes (got %lldx%lldx%lld, %lld classes)%s",
                 o->model, (long long)ar->min_hw, (long long)ar->min_hw, (long long)o->h, (long long)o->w,
                 (long long)o->c, (long long)o->classes,
                 ar->maxpool ? "; the ImageNet ResNets (resnet18/34/50) downsample by 32 (train them on JPEGs with "
                               "[data] format = imagefolder, image_size = 224: configs/imagenet_*.ini); for 28x28 or "
                               "32x32 datasets use resnet8, resnet20, resnet32 or resnet56"
                             : "");
        return NULL;
    }
    wg_net *net = calloc(1, sizeof(*net));
    WG_ASSERT(net != NULL, "out of memory for the network");
    net->o = *o;
    snprintf(net->name, sizeof(net->name), "%s", o->model);
    net->o.model = net->name;
    net->b = b;
    net->n = o->batch;
    net->float_ends = o->int8 && o->float_ends;
    if (!build(net, ar)) {
        snprintf(err, errlen, "out of memory building %s for batch %lld", o->model, (long long)o->batch);
        wg_net_free(net);
        return NULL;
    }
    return net;
}

static void bn_unit_free(bn_unit *u)
{
    wg_bn_int_saved_free(&u->si);
    wg_bn_running_free(&u->ri);
    wg_bn_f32_saved_free(&u->sf);
    wg_bn_f32_running_free(&u->rf);
}

static void act_point_free(act_point *p)
{
    bn_unit_free(&p->bn);
    wg_tensor_free(&p->y);
    wg_tensor_free(&p->a);
}

void wg_net_free(wg_net *net)
{
    if (net == NULL) return;
    for (int i = 0; i < net->nblocks && net->blocks != NULL; i++) {
        block *bl = &net->blocks[i];
        for (int k = 0; k < bl->nconv; k++) {
            act_point_free(&bl->p[k]);
            wg_tensor_free(&bl->conv_out[k]);
        }
        wg_tensor_free(&bl->cpout);
        wg_tensor_free(&bl->out);
    }
    free(net->blocks);
    act_point_free(&net->head);
    wg_tensor *ts[] = {&net->input,   &net->stem_out, &net->pool_out, &net->pooled,  &net->logits,
                       &net->dlogits, &net->R,        &net->T1,       &net->T2,      &net->T3,
                       &net->part_c,  &net->part_f,   &net->e8,       &net->sum64,   &net->in_f,
                       &net->stem_f,  &net->pooled_f, &net->dpool_f,  &net->logits_f, &net->dlogits_f};
    for (size_t k = 0; k < sizeof(ts) / sizeof(ts[0]); k++) wg_tensor_free(ts[k]);
    for (int i = 0; i < net->nparams; i++) wg_param_free(&net->params[i]);
    wg_conv_ws_free(&net->ws);
    free(net);
}

static void reset_point(act_point *p)
{
    p->bn.ri.initialized = false;
    p->bn.rf.initialized = false;
}

void wg_net_reset_bn_stats(wg_net *net)
{
    for (int i = 0; i < net->nblocks; i++)
        for (int k = 0; k < net->blocks[i].nconv; k++) reset_point(&net->blocks[i].p[k]);
    reset_point(&net->head);
}

/* The two statistics of one BN layer, named after its gamma ("block1.bn1.gamma"). */
static int point_state(act_point *p, bool int8, wg_net_state *out, int at, int max)
{
    bn_unit *u = &p->bn;
    const char *gname = u->gamma->name;
    int stem = (int)(strlen(gname) - strlen(".gamma"));
    wg_tensor *ts[2] = {int8 ? &u->ri.mean : &u->rf.mean, int8 ? &u->ri.sigma : &u->rf.var};
    const char *what[2] = {"running_mean", int8 ? "running_sigma" : "running_var"};
    for (int k = 0; k < 2; k++, at++) {
        if (at >= max) continue;
        snprintf(out[at].name, sizeof(out[at].name), "%.*s.%s", stem, gname, what[k]);
        out[at].t = ts[k];
        out[at].initialized = int8 ? &u->ri.initialized : &u->rf.initialized;
    }
    return at;
}

int wg_net_bn_state(wg_net *net, wg_net_state *out, int max)
{
    int at = 0;
    for (int i = 0; i < net->nblocks; i++)
        for (int k = 0; k < net->blocks[i].nconv; k++) at = point_state(&net->blocks[i].p[k], net->o.int8, out, at, max);
    return point_state(&net->head, net->o.int8, out, at, max);
}

/* One convolution into the list of wg_net_convs. */
static int conv_entry(const wg_net *net, const conv_unit *u, wg_net_conv *out, int at, int max)
{
    if (at < max) {
        out[at].name = u->w->name;
        WG_ASSERT(wg_conv_geom_init(&out[at].g, net->o.batch, u->ih, u->iw, u->cin, u->cout, u->k, u->k,
                                    (int)u->stride, (int)u->pad),
                  "convolution geometry of %s", u->w->name);
    }
    return at + 1;
}

int wg_net_convs(const wg_net *net, wg_net_conv *out, int max)
{
    int at = conv_entry(net, &net->stem, out, 0, max);
    for (int i = 0; i < net->nblocks; i++) {
        const block *bl = &net->blocks[i];
        for (int k = 0; k < bl->nconv; k++) at = conv_entry(net, &bl->c[k], out, at, max);
        if (bl->proj) at = conv_entry(net, &bl->cp, out, at, max);
    }
    return conv_entry(net, &net->fc, out, at, max);
}

wg_param *wg_net_params(wg_net *net, int *count)
{
    *count = net->nparams;
    return net->params;
}

int64_t wg_net_param_scalars(const wg_net *net)
{
    int64_t s = 0;
    for (int i = 0; i < net->nparams; i++) s += wg_tensor_numel(&net->params[i].master);
    return s;
}

const char *wg_net_name(const wg_net *net) { return net->name; }
