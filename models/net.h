/* net.h: the networks the trainer can build (models/), behind one small interface.
 *
 * A network owns its parameters (wg_param: masters, momentum, gradients) and the
 * activations it keeps for the backward pass, all allocated through the backend for
 * a maximum batch size. The trainer feeds a batch, asks for the loss (and, when
 * training, the backward pass that fills every parameter's gradient), then steps the
 * optimizer over wg_net_params. Models never include a kernel: they call the layer
 * functions of host/.
 *
 * Models: pre-activation ResNet v2 (wageubn.md; models/resnet.c describes them):
 * - CIFAR-style resnet20/32/56 (6n+2 layers, widths 16/32/64; resnet8 has n = 1) for
 *   28x28x1 and 32x32x3 inputs (any of at least 8x8), and plaincnn (the stem
 *   convolution and the head alone: the smallest network, for quick tests);
 * - ImageNet-style resnet18 and resnet34 (basic blocks) and resnet50 (bottleneck
 *   blocks), widths 64/128/256/512, a 7x7 stride-2 stem and a 3x3 stride-2 max pool,
 *   for inputs of at least 32x32 (224x224 in the reference recipe). */
#ifndef WG_NET_H
#define WG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "act.h"
#include "backend.h"
#include "conv.h"
#include "optim.h"
#include "quant.h"
#include "softmax.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_net_opts {
    const char *model;   /* "resnet20", "resnet32", "resnet56", "resnet8", "plaincnn",
                          * "resnet18", "resnet34", "resnet50" */
    bool int8;           /* int8 mode (else the fp32 baseline) */
    wg_quant_bits bits;  /* int8 mode */
    wg_act_exponent act; /* int8 mode: A's exponent rule */
    wg_e2_mode e2;       /* int8 mode: errors at conv outputs */
    bool float_ends;     /* int8 mode, preset reference: the stem conv, the FC layer and
                          * the loss in float32 (wageubn.md; docs/numerics.md 7.7) */
    int64_t batch;       /* the largest batch the network will see */
    int64_t h, w, c;     /* input images */
    int64_t classes;
    uint64_t seed;       /* initialization */
} wg_net_opts;

typedef struct wg_net wg_net;

/* NULL with a message in err for an unknown model or an input it cannot take (an
 * ImageNet ResNet needs at least 32x32). */
wg_net *wg_net_create(const wg_net_opts *o, wg_backend *b, char *err, size_t errlen);
void wg_net_free(wg_net *net);

/* Forward n <= batch images: int8 NHWC at exponent x_exp (int8 mode) or float NHWC
 * (fp32 mode). train = true keeps what the backward pass needs (and updates the BN
 * running statistics); false evaluates with the running statistics. */
void wg_net_forward(wg_net *net, const void *x, int x_exp, int64_t n, bool train);

/* The loss of the last forward's n images; with backward = true, the backward pass
 * then fills every parameter's gradient. Adds to *st. */
void wg_net_loss(wg_net *net, const int32_t *labels, bool backward, wg_loss_stats *st);

/* Forget the BN running statistics: the next training-mode forward pass sets them
 * from its batch (the trainer re-estimates them this way before evaluating). */
void wg_net_reset_bn_stats(wg_net *net);

wg_param *wg_net_params(wg_net *net, int *count);

/* One tensor of the state that training carries from step to step besides the
 * parameters' masters and momenta: a BN layer's running statistics (int8 mode: mean
 * and sigma, int64 at 2^-31; fp32: mean and var). name: "<bn>.running_mean", ... */
typedef struct wg_net_state {
    char name[64];
    wg_tensor *t;
    bool *initialized; /* false until a training step set the statistics */
} wg_net_state;

/* The running statistics of every BN layer, in a fixed order: up to max entries into
 * out; returns how many the network has. */
int wg_net_bn_state(wg_net *net, wg_net_state *out, int max);
/* The network's convolutions in forward order (the stem, each block's, its projection,
 * the FC as a 1x1 convolution), with the geometry of a full batch and the weight's
 * name: up to max into out; returns how many the network has. For benchmarks. */
typedef struct wg_net_conv {
    const char *name;
    wg_conv_geom g;
} wg_net_conv;
int wg_net_convs(const wg_net *net, wg_net_conv *out, int max);

int64_t wg_net_param_scalars(const wg_net *net);
const char *wg_net_name(const wg_net *net);

#ifdef __cplusplus
}
#endif

#endif
