/* test_models.c: the ImageNet pre-activation ResNets (models/resnet.c): resnet18 and
 * resnet34 (basic blocks) and resnet50 (bottleneck blocks), on synthetic images.
 *
 * - Parameter counts (3 input channels, 1000 classes, FC without bias, gamma and beta
 *   per BN) against the arithmetic of the architecture written out below, and the
 *   shapes along the network (stem, max pool, head, logits) at 64x64 and 224x224.
 * - A user's mistakes: an ImageNet ResNet on 28x28x1 images, an unknown name.
 * - fp32 mode: the backward pass of a whole resnet18 and resnet50 (train-mode BN, the
 *   batch-mean loss) against central finite differences of the loss, on the weights
 *   of largest gradient in the stem, the convolutions of a block (a bottleneck's
 *   three), a projection shortcut, BN gammas and betas and the FC layer.
 * - int8 mode (presets full and reference) and fp32 mode: optimizer steps (at most 20)
 *   on 8 fixed random 32x32 images of 4 classes: the loss stays finite and falls to
 *   half; a second run with the same seed has bit-identical weights after 2 steps.
 *
 * The test includes resnet_impl.h to read the shapes the network built. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "net.h"
#include "test_net_ref.h"
#include "optim.h"
#include "resnet_impl.h"

/* ---- helpers -------------------------------------------------------------------------- */

static wg_net *create(wg_backend *b, const char *model, bool int8, bool float_ends, int64_t batch, int64_t hw,
                      int64_t classes, uint64_t seed)
{
    wg_net_opts o = {.model = model, .int8 = int8, .bits = wg_quant_bits_reference(), .act = WG_ACT_FIT,
                     .e2 = WG_E2_FLAG, .float_ends = float_ends, .batch = batch, .h = hw, .w = hw, .c = 3,
                     .classes = classes, .seed = seed};
    char err[512];
    wg_net *net = wg_net_create(&o, b, err, sizeof(err));
    if (net == NULL) fail_msg("wg_net_create(%s): %s", model, err);
    return net;
}

static wg_param *find_param(wg_net *net, const char *name)
{
    int n;
    wg_param *ps = wg_net_params(net, &n);
    for (int i = 0; i < n; i++)
        if (!strcmp(ps[i].name, name)) return &ps[i];
    fail_msg("no parameter %s in %s", name, wg_net_name(net));
    return NULL;
}

/* Synthetic data: n images hw x hw x 3 of int8 values in [-127, 127] at exponent -7
 * (and the same values as floats), labels in [0, classes). splitmix64, fixed seed. */
typedef struct images {
    int64_t n, hw;
    int8_t *x8;
    float *xf;
    int32_t *labels;
} images;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum { IMAGE_EXP = -7 };

static images images_make(int64_t n, int64_t hw, int classes, uint64_t seed)
{
    images im = {.n = n, .hw = hw};
    int64_t count = n * hw * hw * 3;
    im.x8 = malloc((size_t)count);
    im.xf = malloc((size_t)count * sizeof(float));
    im.labels = malloc((size_t)n * sizeof(int32_t));
    assert_true(im.x8 && im.xf && im.labels);
    for (int64_t i = 0; i < count; i++) {
        im.x8[i] = (int8_t)((int)(splitmix64(&seed) % 255) - 127);
        im.xf[i] = ldexpf((float)im.x8[i], IMAGE_EXP);
    }
    for (int64_t i = 0; i < n; i++) im.labels[i] = (int32_t)(splitmix64(&seed) % (uint64_t)classes);
    return im;
}

static void images_free(images *im)
{
    free(im->x8);
    free(im->xf);
    free(im->labels);
}

/* Forward (train mode) and the batch-mean loss; the backward pass too when asked.
 * correct (may be NULL): how many images the logits classify right. */
static double loss_of(wg_net *net, const images *im, bool int8, bool backward, int64_t *correct)
{
    wg_net_forward(net, int8 ? (const void *)im->x8 : (const void *)im->xf, IMAGE_EXP, im->n, true);
    wg_loss_stats st = {0};
    wg_net_loss(net, im->labels, backward, &st);
    if (correct != NULL) *correct = st.correct;
    return st.loss_sum / (double)st.count;
}

/* ---- parameter counts and shapes --------------------------------------------------------- */

enum { IN_C = 3, CLASSES = 1000 };

/* One BN: gamma and beta per channel. A k x k convolution: k*k*cin*cout, no bias. */
static int64_t bn_params(int64_t c) { return 2 * c; }
static int64_t conv_params(int64_t k, int64_t cin, int64_t cout) { return k * k * cin * cout; }

/* Pre-activation basic block cin -> c: BN(cin), 3x3 cin->c, BN(c), 3x3 c->c, and a 1x1
 * projection cin->c when the channels change (the strided first block of stages 2-4). */
static int64_t basic_block(int64_t cin, int64_t c)
{
    return bn_params(cin) + conv_params(3, cin, c) + bn_params(c) + conv_params(3, c, c) +
           (cin != c ? conv_params(1, cin, c) : 0);
}

/* Pre-activation bottleneck cin -> 4w: BN(cin), 1x1 cin->w, BN(w), 3x3 w->w, BN(w),
 * 1x1 w->4w, and a 1x1 projection cin->4w when cin != 4w (the first block of every
 * stage, stage 1 included: 64 -> 256). */
static int64_t bottleneck_block(int64_t cin, int64_t w)
{
    return bn_params(cin) + conv_params(1, cin, w) + bn_params(w) + conv_params(3, w, w) + bn_params(w) +
           conv_params(1, w, 4 * w) + (cin != 4 * w ? conv_params(1, cin, 4 * w) : 0);
}

/* stem 7x7 3->64; the stages; head BN; FC (a 1x1 convolution cin->1000, no bias). */
static int64_t imagenet_resnet_params(const int blocks[4], bool bottleneck)
{
    const int64_t widths[4] = {64, 128, 256, 512};
    int64_t total = conv_params(7, IN_C, 64), cin = 64;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < blocks[s]; i++) {
            total += bottleneck ? bottleneck_block(cin, widths[s]) : basic_block(cin, widths[s]);
            cin = bottleneck ? 4 * widths[s] : widths[s];
        }
    return total + bn_params(cin) + conv_params(1, cin, CLASSES);
}

/* Worked by hand (the same arithmetic, written out):
 * resnet18: stem 7*7*3*64 = 9,408. Stage 1: 2 x (128 + 36,864 + 128 + 36,864) =
 *   147,968. Stage 2: (128 + 73,728 + 256 + 147,456 + 8,192) + (256 + 147,456 + 256 +
 *   147,456) = 525,184. Stage 3: (256 + 294,912 + 512 + 589,824 + 32,768) + (512 +
 *   589,824 + 512 + 589,824) = 2,098,944. Stage 4: (512 + 1,179,648 + 1,024 +
 *   2,359,296 + 131,072) + (1,024 + 2,359,296 + 1,024 + 2,359,296) = 8,392,192. Head
 *   BN 1,024, FC 512,000. Total 11,686,720.
 * resnet34: stages 3 x 73,984 = 221,952; 229,760 + 3 x 295,424 = 1,116,032; 918,272 +
 *   5 x 1,180,672 = 6,821,632; 3,671,552 + 2 x 4,720,640 = 13,112,832; with the stem,
 *   head BN and FC: 21,794,880.
 * resnet50: stem 9,408. Stage 1: (128 + 4,096 + 128 + 36,864 + 128 + 16,384 + 16,384) +
 *   2 x (512 + 16,384 + 128 + 36,864 + 128 + 16,384) = 214,912. Stage 2: 377,856 + 3 x
 *   280,064 = 1,218,048. Stage 3: 1,509,376 + 5 x 1,117,184 = 7,095,296. Stage 4:
 *   6,033,408 + 2 x 4,462,592 = 14,958,592. Head BN 4,096, FC 2,048,000. Total
 *   25,548,352. */
enum { RESNET18_PARAMS = 11686720, RESNET34_PARAMS = 21794880, RESNET50_PARAMS = 25548352 };

static void assert_nhwc(const wg_tensor *t, int64_t h, int64_t w, int64_t c)
{
    assert_int_equal(t->ndim, 4);
    assert_int_equal(t->shape[1], h);
    assert_int_equal(t->shape[2], w);
    assert_int_equal(t->shape[3], c);
}

/* Built at hw x hw (batch 1): the parameter count (which does not depend on the input)
 * and the shapes: stem hw/2, max pool hw/4 (stage 1), stages 2-4 halve it: hw/32 at
 * the head, whose channels are 512 (basic) or 2048 (bottleneck); logits [N][1][1][K]. */
static void check_model(wg_backend *b, const char *model, int64_t hw, int64_t params, int64_t head_c, int nblocks)
{
    wg_net *net = create(b, model, false, false, 1, hw, CLASSES, 1);
    assert_int_equal(wg_net_param_scalars(net), params);
    assert_int_equal(net->nblocks, nblocks);
    assert_true(net->maxpool);
    assert_int_equal(net->stem.k, 7);
    assert_int_equal(net->stem.stride, 2);
    assert_int_equal(net->stem.cin, IN_C);
    assert_nhwc(&net->stem_out, hw / 2, hw / 2, 64);
    assert_nhwc(&net->pool_out, hw / 4, hw / 4, 64);
    assert_nhwc(&net->head.y, hw / 32, hw / 32, head_c);
    assert_nhwc(&net->pooled, 1, 1, head_c);
    assert_nhwc(&net->logits, 1, 1, CLASSES);
    assert_int_equal(net->logits.shape[0], 1);
    int nconv = head_c == 2048 ? 3 : 2;
    for (int i = 0; i < net->nblocks; i++) assert_int_equal(net->blocks[i].nconv, nconv);
    print_message("%s at %lldx%lld: %lld parameters in %d tensors; stem %lldx%lld, pool %lldx%lld, head "
                  "%lldx%lldx%lld, logits %lldx%lld\n",
                  model, (long long)hw, (long long)hw, (long long)wg_net_param_scalars(net), net->nparams,
                  (long long)net->stem_out.shape[1], (long long)net->stem_out.shape[2],
                  (long long)net->pool_out.shape[1], (long long)net->pool_out.shape[2], (long long)net->head.y.shape[1],
                  (long long)net->head.y.shape[2], (long long)net->head.y.shape[3], (long long)net->logits.shape[0],
                  (long long)net->logits.shape[3]);
    wg_net_free(net);
}

static void test_param_counts_and_shapes(void **state)
{
    (void)state;
    static const int b18[4] = {2, 2, 2, 2}, b34[4] = {3, 4, 6, 3};
    assert_int_equal(imagenet_resnet_params(b18, false), RESNET18_PARAMS);
    assert_int_equal(imagenet_resnet_params(b34, false), RESNET34_PARAMS);
    assert_int_equal(imagenet_resnet_params(b34, true), RESNET50_PARAMS);
    wg_backend *b = wg_backend_cpu_init();
    const int64_t sizes[2] = {64, 224};
    for (int s = 0; s < 2; s++) {
        check_model(b, "resnet18", sizes[s], RESNET18_PARAMS, 512, 8);
        check_model(b, "resnet34", sizes[s], RESNET34_PARAMS, 512, 16);
        check_model(b, "resnet50", sizes[s], RESNET50_PARAMS, 2048, 16);
    }
    wg_backend_free(b);
}

/* A training-mode forward and backward pass at 64x64 (batch 2) in every mode gives a
 * finite loss (resnet50 in fp32 runs at 64x64 in the gradient check). */
static void test_forward_64(void **state)
{
    (void)state;
    wg_backend *b = wg_backend_cpu_init();
    images im = images_make(2, 64, 10, 3);
    const char *models[2] = {"resnet18", "resnet50"};
    for (int m = 0; m < 2; m++)
        for (int mode = 0; mode < (m == 0 ? 3 : 2); mode++) {
            bool int8 = mode < 2;
            wg_net *net = create(b, models[m], int8, mode == 1, 2, 64, 10, 1);
            double loss = loss_of(net, &im, int8, true, NULL);
            static const char *const mode_names[3] = {"int8 full", "int8 reference", "fp32"};
            print_message("%s %s: loss %.4f\n", models[m], mode_names[mode], loss);
            assert_true(isfinite(loss) && loss > 0.0 && loss < 10.0);
            wg_net_free(net);
        }
    images_free(&im);
    wg_backend_free(b);
}

static void test_user_errors(void **state)
{
    (void)state;
    wg_backend *b = wg_backend_cpu_init();
    char err[512];
    /* Fashion-MNIST with an ImageNet ResNet: a message, not a crash */
    wg_net_opts o = {.model = "resnet50", .int8 = true, .bits = wg_quant_bits_reference(), .batch = 8, .h = 28,
                     .w = 28, .c = 1, .classes = 10, .seed = 1};
    assert_null(wg_net_create(&o, b, err, sizeof(err)));
    print_message("%s\n", err);
    assert_non_null(strstr(err, "resnet50"));
    assert_non_null(strstr(err, "32x32"));
    assert_non_null(strstr(err, "28x28x1"));
    o.h = o.w = 31;
    o.c = 3;
    assert_null(wg_net_create(&o, b, err, sizeof(err)));
    /* the CIFAR ResNets keep taking 28x28x1 */
    o.model = "resnet20";
    o.h = o.w = 28;
    o.c = 1;
    wg_net *net = wg_net_create(&o, b, err, sizeof(err));
    assert_non_null(net);
    wg_net_free(net);
    o.model = "resnet101";
    assert_null(wg_net_create(&o, b, err, sizeof(err)));
    print_message("%s\n", err);
    assert_non_null(strstr(err, "resnet18, resnet34, resnet50"));
    wg_backend_free(b);
}

/* ---- fp32 gradient check ---------------------------------------------------------------- */

/* |analytic - fd| <= FD_REL_TOL * max(|analytic|, |fd|) + FD_ABS_TOL, with a central
 * difference of the absolute step FD_STEP. Train-mode BN over few values per channel
 * makes the loss strongly curved: on resnet50 at 64x64 a step of 1e-2 leaves errors
 * up to 27% from the curvature alone, 1e-2 of the tensor's largest |w| up to 8.5%,
 * 3e-4 a few percent; the float32 rounding of the loss (about 5e-8 in a difference)
 * is then 1e-4 in the gradient, under FD_ABS_TOL. A stage whose BN sees only 4 values
 * per channel (resnet50 at 32x32, batch 4: 1x1 at stage 4) is too ill-conditioned for
 * every step tried (analytic gradients of several hundred), hence 64x64 there. */
#define FD_REL_TOL 0.05
#define FD_ABS_TOL 1e-3
#define FD_STEP 3e-4

enum { FD_CLASSES = 3 };

/* Central difference of the loss along element i of p's master against the
 * backward's gradient at element i; *max_rel keeps the largest relative error. */
static void fd_check(wg_net *net, const images *im, wg_param *p, int64_t i, const float *grad, double *max_rel)
{
    int64_t n = wg_tensor_numel(&p->master);
    float *w = malloc((size_t)n * sizeof(float));
    assert_non_null(w);
    wg_tensor_download(&p->master, w);
    float w0 = w[i];
    double h = FD_STEP;
    w[i] = (float)(w0 + h);
    wg_tensor_upload(&p->master, w);
    double lp = loss_of(net, im, false, false, NULL);
    w[i] = (float)(w0 - h);
    wg_tensor_upload(&p->master, w);
    double lm = loss_of(net, im, false, false, NULL);
    double step = (double)(float)(w0 + h) - (double)(float)(w0 - h);
    w[i] = w0;
    wg_tensor_upload(&p->master, w);
    free(w);
    double fd = (lp - lm) / step, an = grad[i];
    double err = fabs(fd - an), rel = err / fmax(fmax(fabs(fd), fabs(an)), 1e-30);
    print_message("  %-22s [%7lld] analytic % .6e  fd % .6e  rel %.2e\n", p->name, (long long)i, an, fd, rel);
    if (rel > *max_rel) *max_rel = rel;
    assert_true(err <= FD_REL_TOL * fmax(fabs(fd), fabs(an)) + FD_ABS_TOL);
}

/* The gradient of every named parameter (copied after one backward pass), checked at
 * its element of largest |gradient|. */
static void gradcheck(const char *model, int64_t hw, int64_t batch, const char *const *names, int count)
{
    wg_backend *b = wg_backend_cpu_init();
    images im = images_make(batch, hw, FD_CLASSES, 11);
    wg_net *net = create(b, model, false, false, batch, hw, FD_CLASSES, 5);
    double loss = loss_of(net, &im, false, true, NULL);
    print_message("%s fp32, %lldx%lld, batch %lld: loss %.6f\n", model, (long long)hw, (long long)hw,
                  (long long)batch, loss);
    float **grads = calloc((size_t)count, sizeof(float *));
    assert_non_null(grads);
    for (int k = 0; k < count; k++) {
        wg_param *p = find_param(net, names[k]);
        grads[k] = malloc(wg_tensor_nbytes(&p->grad));
        assert_non_null(grads[k]);
        wg_tensor_download(&p->grad, grads[k]);
    }
    double max_rel = 0.0;
    for (int k = 0; k < count; k++) {
        wg_param *p = find_param(net, names[k]);
        int64_t n = wg_tensor_numel(&p->grad), best = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabsf(grads[k][i]) > fabsf(grads[k][best])) best = i;
        fd_check(net, &im, p, best, grads[k], &max_rel);
        free(grads[k]);
    }
    print_message("%s: max relative error %.3e over %d weights\n", model, max_rel, count);
    free(grads);
    wg_net_free(net);
    images_free(&im);
    wg_backend_free(b);
}

static void test_gradcheck_resnet18(void **state)
{
    (void)state;
    /* stem; stage 1's block 0 (no projection); stage 2's first block (strided, with
     * its projection); stage 4; BN gammas and betas; the head BN; the FC */
    static const char *const names[] = {"stem",          "block0.conv1",  "block0.bn1.gamma", "block2.conv1",
                                        "block2.conv2",  "block2.proj",   "block2.bn2.beta",  "block6.proj",
                                        "head.bn.gamma", "block7.conv2",  "fc"};
    gradcheck("resnet18", 32, 4, names, (int)(sizeof(names) / sizeof(names[0])));
}

static void test_gradcheck_resnet50(void **state)
{
    (void)state;
    /* stem; stage 1's first bottleneck (its three convolutions and the 64 -> 256
     * projection); a strided bottleneck's projection; BN gammas and betas; the FC */
    static const char *const names[] = {"stem",         "block0.conv1",     "block0.conv2",    "block0.conv3",
                                        "block0.proj",  "block0.bn3.gamma", "block3.proj",     "block4.bn2.beta",
                                        "block7.conv2", "head.bn.gamma",    "fc"};
    gradcheck("resnet50", 64, 2, names, (int)(sizeof(names) / sizeof(names[0])));
}

/* ---- optimizer steps -------------------------------------------------------------------- */

typedef enum mode { INT8_FULL, INT8_REFERENCE, FP32 } mode;
static const char *const k_mode_names[] = {"int8 full", "int8 reference", "fp32"};

/* At most TRAIN_STEPS steps on the same 8 images (one batch of 4 classes), stopping
 * once all 8 are classified right at under TRAIN_STOP of the first loss: a network
 * this size memorizes them in a few steps, and past that point the data gradient
 * vanishes, G's normalization turns weight decay into full-size steps and whole int8
 * weight tensors round to zero (which the integer layers do not survive yet). It runs
 * at least DET_STEPS steps, after which the weights are hashed. */
enum { TRAIN_IMAGES = 8, TRAIN_CLASSES = 4, TRAIN_HW = 32, TRAIN_STEPS = 20, DET_STEPS = 2 };
#define TRAIN_STOP 0.5

typedef struct run_out {
    double first_loss, last_loss;
    int steps; /* optimizer steps taken */
    uint64_t det_hash;
} run_out;

static run_out train(const char *model, mode m, const images *im, int max_steps)
{
    wg_backend *b = wg_backend_cpu_init();
    bool int8 = m != FP32;
    wg_net *net = create(b, model, int8, m == INT8_REFERENCE, TRAIN_IMAGES, TRAIN_HW, TRAIN_CLASSES, 1);
    int np;
    wg_param *params = wg_net_params(net, &np);
    /* the reference preset keeps exactly the stem and the FC layer in float */
    for (int i = 0; i < np; i++) {
        bool end = !strcmp(params[i].name, "stem") || !strcmp(params[i].name, "fc");
        assert_int_equal(params[i].master.dtype == WG_F32, m == FP32 || (m == INT8_REFERENCE && end));
    }
    wg_quant_bits bits = wg_quant_bits_reference();
    run_out r = {0};
    for (int step = 0; step <= max_steps; step++) {
        if (step == DET_STEPS) r.det_hash = tn_hash_params(net);
        int64_t correct;
        double loss = loss_of(net, im, int8, true, &correct);
        assert_true(isfinite(loss));
        if (step == 0) r.first_loss = loss;
        r.last_loss = loss;
        r.steps = step;
        bool done = step >= DET_STEPS && correct == TRAIN_IMAGES && loss < TRAIN_STOP * r.first_loss;
        if (step == max_steps || done) break;
        wg_optim_step_args a = {.lr = int8 ? 0.4 : 0.05, .g_scale_log2 = 7, .momentum = 0.9, .weight_decay = 1e-4,
                                .seed = 1, .step = (uint32_t)step, .bits = &bits};
        wg_optim_step(params, np, &a);
    }
    wg_net_free(net);
    wg_backend_free(b);
    return r;
}

/* The loss falls below TRAIN_STOP of its start within TRAIN_STEPS steps; a second
 * run with the same seed gives the same losses and bit-identical weights after
 * DET_STEPS steps. */
static void check_training(const char *model, mode m)
{
    images im = images_make(TRAIN_IMAGES, TRAIN_HW, TRAIN_CLASSES, 21);
    run_out a = train(model, m, &im, TRAIN_STEPS);
    print_message("%s %s: loss %.4f -> %.4g after %d steps\n", model, k_mode_names[m], a.first_loss, a.last_loss,
                  a.steps);
    assert_true(a.last_loss < TRAIN_STOP * a.first_loss);
    run_out c = train(model, m, &im, DET_STEPS);
    print_message("%s %s: weights after %d steps %016llx, again %016llx\n", model, k_mode_names[m], DET_STEPS,
                  (unsigned long long)a.det_hash, (unsigned long long)c.det_hash);
    assert_true(a.det_hash == c.det_hash);
    assert_true(a.first_loss == c.first_loss);
    images_free(&im);
}

static void test_train_resnet18_int8(void **state) { (void)state; check_training("resnet18", INT8_FULL); }
static void test_train_resnet18_reference(void **state) { (void)state; check_training("resnet18", INT8_REFERENCE); }
static void test_train_resnet18_fp32(void **state) { (void)state; check_training("resnet18", FP32); }
static void test_train_resnet50_int8(void **state) { (void)state; check_training("resnet50", INT8_FULL); }
static void test_train_resnet50_reference(void **state) { (void)state; check_training("resnet50", INT8_REFERENCE); }
static void test_train_resnet50_fp32(void **state) { (void)state; check_training("resnet50", FP32); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts_and_shapes),
        cmocka_unit_test(test_forward_64),
        cmocka_unit_test(test_user_errors),
        cmocka_unit_test(test_gradcheck_resnet18),
        cmocka_unit_test(test_gradcheck_resnet50),
        cmocka_unit_test(test_train_resnet18_int8),
        cmocka_unit_test(test_train_resnet18_reference),
        cmocka_unit_test(test_train_resnet18_fp32),
        cmocka_unit_test(test_train_resnet50_int8),
        cmocka_unit_test(test_train_resnet50_reference),
        cmocka_unit_test(test_train_resnet50_fp32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
