/* resnet.c: pre-activation ResNet v2 (wageubn.md, "Network and training recipe"), in
 * int8 mode and in the fp32 baseline mode, through one code path.
 *
 * CIFAR-style ResNet-(6n+2): a 3x3 stem convolution to 16 channels, three stages of n
 * blocks (16, 32, 64 channels; the second and third start with stride 2 and a 1x1
 * projection shortcut), then BN-ReLU, global average pooling and a fully connected
 * layer. Each block: BN-ReLU-quantize-conv-BN-ReLU-quantize-conv plus the shortcut;
 * the projection is applied to the block's first normalized activation (a1).
 * "plaincnn" is the stem and the head alone (n = 0); "resnet8" has n = 1.
 *
 * Data path (int8 mode, docs/numerics.md): the residual stream is int32 by the fit
 * rule; BN gives y (int32, e = -14); ReLU + A quantizer give a (int8); a conv gives an
 * int32 accumulator. Backward, the error of every conv output is quantized by E2 (two
 * int8 parts, or E1's single grid with [quant] e2 = shift) and the error of every
 * activation by E1 (int8), ReLU masks it and BN turns it into the error of its
 * input (int64). Every sum of errors is exact (wg_error_accumulate). The fp32 mode
 * runs the same structure with float tensors and no quantizers.
 *
 * Dimension legend: N batch, H/W spatial, C channels, K classes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "bn.h"
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

static wg_param *new_param(wg_net *net, const char *name, wg_param_kind kind, wg_layout layout, int ndim,
                           const int64_t *shape)
{
    WG_ASSERT(net->nparams < WG_NET_MAX_PARAMS, "more than %d parameters", WG_NET_MAX_PARAMS);
    wg_param *p = &net->params[net->nparams];
    if (!wg_param_init(p, net->b, name, (uint32_t)net->nparams, kind, net->o.int8, &net->o.bits, layout, ndim, shape))
        return NULL;
    net->nparams++;
    return p;
}

static bool conv_unit_init(wg_net *net, conv_unit *u, const char *name, int64_t cin, int64_t cout, int64_t k,
                           int64_t stride, int64_t ih, int64_t iw)
{
    *u = (conv_unit){.cin = cin, .cout = cout, .k = k, .stride = stride, .pad = (k - 1) / 2, .ih = ih, .iw = iw};
    u->oh = (ih + 2 * u->pad - k) / stride + 1;
    u->ow = (iw + 2 * u->pad - k) / stride + 1;
    const int64_t shape[4] = {cout, k, k, cin};
    u->w = new_param(net, name, WG_PARAM_WEIGHT, WG_LAYOUT_OHWI, 4, shape);
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
    u->gamma = new_param(net, pname, WG_PARAM_BN, WG_LAYOUT_PLAIN, 1, &c);
    snprintf(pname, sizeof(pname), "%s.beta", name);
    u->beta = new_param(net, pname, WG_PARAM_BN, WG_LAYOUT_PLAIN, 1, &c);
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

static bool block_init(wg_net *net, block *bl, int index, int64_t cin, int64_t cout, int64_t stride, int64_t h,
                       int64_t w)
{
    char name[32];
    memset(bl, 0, sizeof(*bl));
    bl->proj = stride != 1 || cin != cout;
    snprintf(name, sizeof(name), "block%d.bn1", index);
    if (!act_point_init(net, &bl->p1, name, h, w, cin)) return false;
    snprintf(name, sizeof(name), "block%d.conv1", index);
    if (!conv_unit_init(net, &bl->c1, name, cin, cout, 3, stride, h, w)) return false;
    int64_t oh = bl->c1.oh, ow = bl->c1.ow;
    snprintf(name, sizeof(name), "block%d.bn2", index);
    if (!act_point_init(net, &bl->p2, name, oh, ow, cout)) return false;
    snprintf(name, sizeof(name), "block%d.conv2", index);
    if (!conv_unit_init(net, &bl->c2, name, cout, cout, 3, 1, oh, ow)) return false;
    wg_dtype acc = act_dtype(net, WG_I32);
    if (!alloc_nhwc(net, &bl->c1out, acc, oh, ow, cout) || !alloc_nhwc(net, &bl->c2out, acc, oh, ow, cout) ||
        !alloc_nhwc(net, &bl->out, acc, oh, ow, cout))
        return false;
    if (bl->proj) {
        snprintf(name, sizeof(name), "block%d.proj", index);
        if (!conv_unit_init(net, &bl->cp, name, cin, cout, 1, stride, h, w) ||
            !alloc_nhwc(net, &bl->cpout, acc, oh, ow, cout))
            return false;
    }
    return true;
}

/* Blocks per stage of a model name, or -1 when unknown. */
static int blocks_per_stage(const char *model)
{
    if (!strcmp(model, "plaincnn")) return 0;
    if (!strcmp(model, "resnet8")) return 1;
    if (!strcmp(model, "resnet20")) return 3;
    if (!strcmp(model, "resnet32")) return 5;
    if (!strcmp(model, "resnet56")) return 9;
    return -1;
}

static bool build(wg_net *net)
{
    const wg_net_opts *o = &net->o;
    int per_stage = blocks_per_stage(o->model);
    const int64_t widths[3] = {16, 32, 64};
    if (!conv_unit_init(net, &net->stem, "stem", o->c, widths[0], 3, 1, o->h, o->w) ||
        !wg_tensor_init_nhwc(&net->input, net->b, act_dtype(net, WG_I8), o->batch, o->h, o->w, o->c, 0) ||
        !alloc_nhwc(net, &net->stem_out, act_dtype(net, WG_I32), o->h, o->w, widths[0]))
        return false;
    net->nblocks = 3 * per_stage;
    net->blocks = calloc((size_t)(net->nblocks > 0 ? net->nblocks : 1), sizeof(block));
    WG_ASSERT(net->blocks != NULL, "out of memory for %d blocks", net->nblocks);
    int64_t h = o->h, w = o->w, c = widths[0];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < per_stage; i++) {
            block *bl = &net->blocks[s * per_stage + i];
            if (!block_init(net, bl, s * per_stage + i, c, widths[s], (s > 0 && i == 0) ? 2 : 1, h, w)) return false;
            h = bl->c1.oh;
            w = bl->c1.ow;
            c = widths[s];
        }
    if (!act_point_init(net, &net->head, "head.bn", h, w, c) ||
        !conv_unit_init(net, &net->fc, "fc", c, o->classes, 1, 1, 1, 1) ||
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
    return ok;
}

wg_net *wg_net_create(const wg_net_opts *o, wg_backend *b, char *err, size_t errlen)
{
    if (blocks_per_stage(o->model) < 0) {
        snprintf(err, errlen, "model '%s' is not available on this build (expected plaincnn, resnet8, resnet20, "
                              "resnet32 or resnet56; the ImageNet ResNets come with the ImageNet pipeline)",
                 o->model);
        return NULL;
    }
    if (o->h < 8 || o->w < 8 || o->c < 1 || o->classes < 2 || o->batch < 1) {
        snprintf(err, errlen, "model '%s' needs images of at least 8x8 and 2 classes (got %lldx%lldx%lld, %lld)",
                 o->model, (long long)o->h, (long long)o->w, (long long)o->c, (long long)o->classes);
        return NULL;
    }
    wg_net *net = calloc(1, sizeof(*net));
    WG_ASSERT(net != NULL, "out of memory for the network");
    net->o = *o;
    snprintf(net->name, sizeof(net->name), "%s", o->model);
    net->o.model = net->name;
    net->b = b;
    net->n = o->batch;
    if (!build(net)) {
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
        act_point_free(&bl->p1);
        act_point_free(&bl->p2);
        wg_tensor *ts[] = {&bl->c1out, &bl->c2out, &bl->cpout, &bl->out};
        for (size_t k = 0; k < sizeof(ts) / sizeof(ts[0]); k++) wg_tensor_free(ts[k]);
    }
    free(net->blocks);
    act_point_free(&net->head);
    wg_tensor *ts[] = {&net->input, &net->stem_out, &net->pooled, &net->logits, &net->dlogits, &net->R, &net->T1,
                       &net->T2, &net->T3, &net->part_c, &net->part_f, &net->e8, &net->sum64};
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
    for (int i = 0; i < net->nblocks; i++) {
        reset_point(&net->blocks[i].p1);
        reset_point(&net->blocks[i].p2);
    }
    reset_point(&net->head);
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
