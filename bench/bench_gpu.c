/* bench_gpu.c: the CUDA backend's speed (docs/performance.md, "GPU"): int8 GEMM TOPS
 * against the GPU's dense int8 peak; for every convolution of ResNet-18 and ResNet-50 at
 * 224x224, the forward and backward time of the implicit-GEMM kernels (conv_igemm.cuh)
 * and of the im2col + cuBLASLt path, beside cuBLASLt on the equivalent GEMMs alone (no
 * im2col, no transposes); whole training steps (synthetic data, int8 full preset) in
 * images/s on each path, and the GPU memory they hold. bench/gpu.sh runs it beside
 * PyTorch (bench/gpu_torch.py) on the same GPU.
 *
 *   bench_gpu [--batch N] [--steps S] [--peak TOPS] [--models resnet18,resnet50]
 *             [--layers-only] [--cpu]
 *
 * --cpu runs the same code on the CPU backend with the small GEMMs only: a check of the
 * benchmark itself where no GPU is (ctest runs it at batch 2), not a measurement.
 *
 * Each figure is the median of several timed repetitions after a warm-up; the GPU work
 * is waited for (wg_backend_synchronize) before the clock stops. Lines starting with
 * "result" are the machine-readable summary (bench/gpu.sh collects them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "bench_util.h"
#include "check.h"
#include "conv.h"
#include "conv_tune.h"
#include "net.h"
#include "quant.h"

enum { REPS = 5, MAX_CONVS = 128 };

typedef struct bench_opts {
    int64_t batch;
    int steps;
    double peak_tops; /* dense int8 peak of the GPU: H100/H200 SXM 1979 */
    bool cpu, layers_only;
    char models[128];
} bench_opts;

enum { MAX_REPS = 64 };

/* The median of reps (<= MAX_REPS) runs of fn(arg) on backend b, in seconds, after one
 * untimed run (the arena grows, cuBLASLt picks its kernels). */
static double median_of(wg_backend *b, void (*fn)(void *), void *arg, int reps)
{
    double t[MAX_REPS];
    reps = reps < MAX_REPS ? reps : MAX_REPS;
    fn(arg);
    wg_backend_synchronize(b);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        fn(arg);
        wg_backend_synchronize(b);
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return t[reps / 2];
}

static double median_time(wg_backend *b, void (*fn)(void *), void *arg) { return median_of(b, fn, arg, REPS); }

/* ---- int8 GEMM ---- */

typedef struct gemm_case {
    wg_backend *b;
    int64_t m, n, k;
    wg_tensor a, bt, c;
} gemm_case;

static void run_gemm(void *arg)
{
    gemm_case *g = arg;
    g->b->iface->gemm_s8_nt(g->b->ctx, g->m, g->n, g->k, g->a.data, g->k, g->bt.data, g->k, g->c.data, g->n);
}

static void bench_gemm(wg_backend *b, const bench_opts *o)
{
    static const int64_t sizes[][3] = {{4096, 4096, 4096}, {8192, 8192, 8192}, {16384, 16384, 16384},
                                       {401408, 64, 576}, {100352, 128, 1152}};
    printf("\nint8 GEMM C = A B^T (backend %s), median of %d\n%10s %8s %8s %10s %10s %8s\n", wg_backend_name(b), REPS,
           "M", "N", "K", "ms", "TOPS", "of peak");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        gemm_case g = {.b = b, .m = sizes[i][0], .n = sizes[i][1], .k = sizes[i][2]};
        if (o->cpu && g.m * g.n * g.k > ((int64_t)1 << 36)) continue;
        if (!wg_tensor_init(&g.a, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.k}, 0) ||
            !wg_tensor_init(&g.bt, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.n * g.k}, 0) ||
            !wg_tensor_init(&g.c, b, WG_I32, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.n}, 0)) {
            printf("%10lld %8lld %8lld   out of GPU memory\n", (long long)g.m, (long long)g.n, (long long)g.k);
            continue;
        }
        wg_tensor_zero(&g.a), wg_tensor_zero(&g.bt);
        double t = median_time(b, run_gemm, &g), tops = 2.0 * (double)g.m * (double)g.n * (double)g.k / t / 1e12;
        printf("%10lld %8lld %8lld %10.3f %10.1f %7.1f%%\n", (long long)g.m, (long long)g.n, (long long)g.k, t * 1e3,
               tops, 100.0 * tops / o->peak_tops);
        printf("result gemm_%lldx%lldx%lld_tops %.1f\n", (long long)g.m, (long long)g.n, (long long)g.k, tops);
        wg_tensor_free(&g.a), wg_tensor_free(&g.bt), wg_tensor_free(&g.c);
    }
}

/* ---- the convolutions of a network, one at a time ---- */

typedef struct conv_case {
    const wg_conv_geom *g;
    bool stem; /* the network's first layer: no dx */
    wg_tensor x, w, y, e[2], dx, dw;
    wg_conv_ws ws;
} conv_case;

static void run_conv_forward(void *arg)
{
    conv_case *c = arg;
    wg_conv_s8_forward(c->g, &c->x, &c->w, &c->y, &c->ws);
}

/* Backward with E2's two error parts, as the full preset trains; dx in int64, none
 * for the stem (as the network). */
static void run_conv_backward(void *arg)
{
    conv_case *c = arg;
    const wg_tensor *parts[2] = {&c->e[0], &c->e[1]};
    wg_conv_s8_backward(c->g, &c->x, &c->w, parts, 2, c->stem ? NULL : &c->dx, &c->dw, &c->ws);
}

static bool conv_case_init(conv_case *c, wg_backend *b, const wg_conv_geom *g, bool stem)
{
    memset(c, 0, sizeof(*c));
    c->g = g;
    c->stem = stem;
    int64_t xs[4] = {g->n, g->h, g->w, g->c}, ws[4] = {g->o, g->kh, g->kw, g->c}, ys[4] = {g->n, g->oh, g->ow, g->o};
    bool ok = wg_tensor_init(&c->x, b, WG_I8, WG_LAYOUT_NHWC, 4, xs, -7) &&
              wg_tensor_init(&c->w, b, WG_I8, WG_LAYOUT_OHWI, 4, ws, -7) &&
              wg_tensor_init(&c->y, b, WG_I32, WG_LAYOUT_NHWC, 4, ys, 0) &&
              wg_tensor_init(&c->e[0], b, WG_I8, WG_LAYOUT_NHWC, 4, ys, -20) &&
              wg_tensor_init(&c->e[1], b, WG_I8, WG_LAYOUT_NHWC, 4, ys, -27) &&
              wg_tensor_init(&c->dx, b, WG_I64, WG_LAYOUT_NHWC, 4, xs, 0) &&
              wg_tensor_init(&c->dw, b, WG_I64, WG_LAYOUT_OHWI, 4, ws, 0);
    if (ok) wg_tensor_zero(&c->x), wg_tensor_zero(&c->w), wg_tensor_zero(&c->e[0]), wg_tensor_zero(&c->e[1]);
    return ok;
}

static void conv_case_free(conv_case *c)
{
    wg_tensor *ts[] = {&c->x, &c->w, &c->y, &c->e[0], &c->e[1], &c->dx, &c->dw};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) wg_tensor_free(ts[i]);
    wg_conv_ws_free(&c->ws);
}

/* The convolution kernels of the CUDA backend, or its auto mode (a no-op on the CPU
 * backend); false where the device has no such kernel (wgmma off Hopper). */
static bool set_conv(wg_backend *b, int mode)
{
    if (strcmp(wg_backend_name(b), "cuda") != 0) return mode != WG_KERNEL_WGMMA;
    if (mode == WG_KERNEL_WGMMA && !wg_cuda_has_wgmma(b)) return false;
    wg_cuda_set_conv(b, mode);
    return true;
}

static void run_conv_backward_weight(void *arg)
{
    conv_case *c = arg;
    const wg_tensor *parts[2] = {&c->e[0], &c->e[1]};
    wg_conv_s8_backward(c->g, &c->x, &c->w, parts, 2, NULL, &c->dw, &c->ws);
}

static int64_t round4(int64_t x) { return (x + 3) / 4 * 4; }

/* cuBLASLt alone on the GEMMs a convolution amounts to, reps of them (operands already
 * in place: no im2col, no transposes; K and N padded to 4 as that path pads them). */
static double equiv_time(wg_backend *b, int64_t m, int64_t n, int64_t k, int reps)
{
    gemm_case g = {.b = b, .m = m, .n = round4(n), .k = round4(k)};
    if (!wg_tensor_init(&g.a, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.k}, 0) ||
        !wg_tensor_init(&g.bt, b, WG_I8, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.n * g.k}, 0) ||
        !wg_tensor_init(&g.c, b, WG_I32, WG_LAYOUT_PLAIN, 1, (int64_t[]){g.m * g.n}, 0))
        return 0;
    wg_tensor_zero(&g.a), wg_tensor_zero(&g.bt);
    double t = reps * median_time(b, run_gemm, &g);
    wg_tensor_free(&g.a), wg_tensor_free(&g.bt), wg_tensor_free(&g.c);
    return t;
}

/* Times per kernel (wg_conv_kernel order: lt = im2col + cuBLASLt, ig = mma.sync implicit
 * GEMM, wg = wgmma implicit GEMM, whose backward-weight is ig's; 0: not on this device). */
typedef struct layer_times {
    double fwd[WG_KERNELS], bwd[WG_KERNELS], bwd_w[WG_KERNELS];
    double gemm_fwd, gemm_bwd_data, gemm_bwd_w;
} layer_times;

static layer_times time_layer(wg_backend *b, conv_case *c, bool stem)
{
    const wg_conv_geom *g = c->g;
    layer_times t = {0};
    for (int k = 0; k < WG_KERNELS; k++) {
        if (!set_conv(b, k)) continue;
        t.fwd[k] = median_time(b, run_conv_forward, c);
        t.bwd[k] = median_time(b, run_conv_backward, c);
        t.bwd_w[k] = median_time(b, run_conv_backward_weight, c);
    }
    set_conv(b, WG_CONV_AUTO);
    t.gemm_fwd = equiv_time(b, g->rows, g->o, g->kdim, 1);
    t.gemm_bwd_data = stem ? 0 : equiv_time(b, g->rows, g->kdim, g->o, 2);  /* per E2 part */
    t.gemm_bwd_w = equiv_time(b, g->o, g->kdim, g->rows, 2);
    return t;
}

/* Our faster implicit GEMM's time (ig or wg). */
static double ours(const double t[WG_KERNELS])
{
    return t[WG_KERNEL_WGMMA] > 0 && t[WG_KERNEL_WGMMA] < t[WG_KERNEL_MMA] ? t[WG_KERNEL_WGMMA] : t[WG_KERNEL_MMA];
}

static double ratio(double num, double den) { return den > 0 ? num / den : 0; }

/* A pass's times: per kernel, the equivalent GEMMs', and its int8 operations. */
typedef struct pass_times {
    double t[WG_KERNELS], gemm, ops;
} pass_times;

/* One row: lt, ig, wg (or -), the equivalent GEMMs (ms); our faster kernel's and the
 * GEMMs' TOPS; the GEMMs' time over ours (our throughput as a fraction of cuBLASLt's on
 * the GEMMs alone); ours as a percentage of the dense peak. */
static void print_pass_row(const pass_times *p, double peak)
{
    printf(" %8.3f %8.3f", p->t[WG_KERNEL_CUBLASLT] * 1e3, p->t[WG_KERNEL_MMA] * 1e3);
    if (p->t[WG_KERNEL_WGMMA] > 0) printf(" %8.3f", p->t[WG_KERNEL_WGMMA] * 1e3);
    else printf(" %8s", "-");
    double tops = ratio(p->ops, ours(p->t)) / 1e12;
    printf(" %8.3f %8.1f %8.1f %6.2f %6.1f%%\n", p->gemm * 1e3, tops, ratio(p->ops, p->gemm) / 1e12,
           ratio(p->gemm, ours(p->t)), 100.0 * tops / peak);
}

/* Per layer and pass, then the sums: each kernel's time, and our faster implicit
 * GEMM's TOPS and rate as a fraction of cuBLASLt's on the equivalent GEMMs (> 1: faster
 * than those GEMMs alone) and of the dense peak. */
static void bench_layers(wg_backend *b, wg_net *net, const bench_opts *o)
{
    wg_net_conv convs[MAX_CONVS];
    int n = wg_net_convs(net, convs, MAX_CONVS);
    WG_ASSERT(n <= MAX_CONVS, "%d convolutions", n);
    static pass_times pt[3][MAX_CONVS + 1]; /* [pass][layer], the sums last */
    memset(pt, 0, sizeof(pt));
    bool done[MAX_CONVS] = {false};
    for (int i = 0; i < n; i++) {
        const wg_conv_geom *g = &convs[i].g;
        conv_case c;
        if (!conv_case_init(&c, b, g, i == 0)) {
            conv_case_free(&c);
            continue;
        }
        layer_times t = time_layer(b, &c, i == 0);
        double mac2 = 2.0 * (double)g->rows * (double)g->o * (double)g->kdim; /* one product's operations */
        for (int k = 0; k < WG_KERNELS; k++) {
            pt[0][i].t[k] = t.fwd[k];
            pt[1][i].t[k] = t.bwd[k] > 0 ? t.bwd[k] - t.bwd_w[k] : 0;
            pt[2][i].t[k] = t.bwd_w[k];
        }
        pt[0][i].gemm = t.gemm_fwd, pt[1][i].gemm = t.gemm_bwd_data, pt[2][i].gemm = t.gemm_bwd_w;
        pt[0][i].ops = mac2, pt[1][i].ops = i == 0 ? 0 : 2 * mac2, pt[2][i].ops = 2 * mac2; /* E2's two parts */
        for (int p = 0; p < 3; p++) {
            for (int k = 0; k < WG_KERNELS; k++) pt[p][n].t[k] += pt[p][i].t[k];
            pt[p][n].gemm += pt[p][i].gemm, pt[p][n].ops += pt[p][i].ops;
        }
        done[i] = true;
        conv_case_free(&c);
    }
    static const char *const pass_name[3] = {"forward", "backward-data (E2's two parts)",
                                             "backward-weight (E2's two parts)"};
    for (int p = 0; p < 3; p++) {
        printf("\n%s %s at batch %lld: ms (median of %d); lt = im2col + cuBLASLt, ig = mma.sync implicit GEMM, "
               "wg = wgmma implicit GEMM (backward-weight: ig's), gemm = cuBLASLt on the equivalent GEMMs alone; TOPS "
               "of our faster kernel and of those GEMMs; ratio = gemm / ours; %% of the %.0f TOPS dense peak\n",
               wg_net_name(net), pass_name[p], (long long)o->batch, REPS, o->peak_tops);
        printf("%-14s %4s %5s %5s %2s %2s %8s %8s %8s %8s %8s %8s %6s %7s\n", "layer", "HxW", "C", "O", "k", "s", "lt",
               "ig", "wg", "gemm", "TOPS", "gemmTOPS", "ratio", "peak");
        for (int i = 0; i < n; i++) {
            const wg_conv_geom *g = &convs[i].g;
            printf("%-14s %4lld %5lld %5lld %2lld %2d", convs[i].name, (long long)g->h, (long long)g->c,
                   (long long)g->o, (long long)g->kh, g->stride);
            if (!done[i]) printf(" out of GPU memory\n");
            else if (pt[p][i].ops == 0) printf(" (no dx: the stem)\n");
            else print_pass_row(&pt[p][i], o->peak_tops);
        }
        printf("%-14s %22s", "all", "");
        print_pass_row(&pt[p][n], o->peak_tops);
    }
    const char *m = wg_net_name(net);
    long long bt = (long long)o->batch;
    static const char *const key[3] = {"fwd", "bwd_data", "bwd_weight"};
    for (int p = 0; p < 3; p++) {
        printf("result %s_b%lld_conv_%s_ours_tops %.1f\n", m, bt, key[p], ratio(pt[p][n].ops, ours(pt[p][n].t)) / 1e12);
        printf("result %s_b%lld_conv_%s_ratio_to_gemm %.2f\n", m, bt, key[p], ratio(pt[p][n].gemm, ours(pt[p][n].t)));
    }
    for (int k = 0; k < WG_KERNELS; k++)
        if (pt[0][n].t[k] > 0)
            printf("result %s_b%lld_conv_ms_%s %.2f\n", m, bt, wg_conv_kernel_name(k),
                   (pt[0][n].t[k] + pt[1][n].t[k] + pt[2][n].t[k]) * 1e3);
}

/* ---- whole training steps ---- */

typedef struct train_case {
    wg_net *net;
    int64_t batch;
    int8_t *x;
    int32_t *labels;
    wg_param *params;
    int nparams;
    uint32_t step;
    wg_quant_bits bits;
} train_case;

static void run_step(void *arg)
{
    train_case *t = arg;
    wg_loss_stats st = {0};
    wg_net_forward(t->net, t->x, -7, t->batch, true);
    wg_net_loss(t->net, t->labels, true, &st);
    wg_optim_step_args a = {.lr = 0.1, .g_scale_log2 = 7, .momentum = 0.9, .weight_decay = 1e-4, .seed = 1,
                            .step = t->step++, .bits = &t->bits};
    wg_optim_step(t->params, t->nparams, &a);
}

static void bench_train(wg_backend *b, wg_net *net, const bench_opts *o)
{
    int64_t pix = o->batch * 224 * 224 * 3;
    train_case t = {.net = net, .batch = o->batch, .x = malloc((size_t)pix),
                    .labels = malloc((size_t)o->batch * sizeof(int32_t)), .bits = wg_quant_bits_reference()};
    WG_ASSERT(t.x != NULL && t.labels != NULL, "out of host memory for a batch");
    uint64_t s = 1;
    for (int64_t i = 0; i < pix; i++) t.x[i] = (int8_t)((s = s * 6364136223846793005ull + 1) >> 57) - 64;
    for (int64_t i = 0; i < o->batch; i++) t.labels[i] = (int32_t)(i * 37 % 1000);
    t.params = wg_net_params(net, &t.nparams);
    int steps = o->steps < MAX_REPS ? o->steps : MAX_REPS;
    const char *m = wg_net_name(net);
    /* the auto mode first (its first step tunes every layer), then each kernel alone */
    const int modes[] = {WG_CONV_AUTO, WG_KERNEL_WGMMA, WG_KERNEL_MMA, WG_KERNEL_CUBLASLT};
    for (size_t p = 0; p < sizeof(modes) / sizeof(modes[0]); p++) {
        if (!set_conv(b, modes[p])) continue;
        const char *name = modes[p] == WG_CONV_AUTO ? "auto" : wg_conv_kernel_name(modes[p]);
        double med = median_of(b, run_step, &t, steps);
        printf("\n%s training step (int8 full preset, batch %lld, 224x224, synthetic, convolutions: %s): %.1f ms, "
               "%.0f images/s (median of %d)\n",
               m, (long long)o->batch, name, med * 1e3, (double)o->batch / med, steps);
        printf("result %s_train_img_per_s_%s %.1f\n", m, name, (double)o->batch / med);
        if (modes[p] == WG_CONV_AUTO && !o->cpu) {
            printf("the auto mode's choices (ms: each candidate's median on the layer's tensors):\n");
            wg_cuda_print_conv_choices(b, stdout);
        }
    }
    set_conv(b, WG_CONV_AUTO);
    if (!o->cpu) {
        double gib = (double)wg_cuda_memory_in_use(b) / (double)(1 << 30);
        printf("%s: %.2f GiB of GPU memory in use after training (cudaMemGetInfo)\nresult %s_gpu_mem_gib %.2f\n", m,
               gib, m, gib);
    }
    free(t.x), free(t.labels);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_gpu [--batch N] [--steps S] [--peak TOPS] [--models resnet18,resnet50] "
                    "[--layers-only] [--cpu]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_opts o = {.batch = 128, .steps = 10, .peak_tops = 1979};
    snprintf(o.models, sizeof(o.models), "resnet18,resnet50");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu")) {
            o.cpu = true;
            continue;
        }
        if (!strcmp(argv[i], "--layers-only")) {
            o.layers_only = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--batch")) o.batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) o.steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--peak")) o.peak_tops = atof(argv[++i]);
        else if (!strcmp(argv[i], "--models")) snprintf(o.models, sizeof(o.models), "%s", argv[++i]);
        else usage();
    }
    if (o.batch < 1 || o.steps < 1 || o.peak_tops <= 0) usage();
    char err[512];
    wg_backend *b = o.cpu ? wg_backend_cpu_init() : wg_backend_cuda_init(0, err, sizeof(err));
    if (b == NULL) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        return 77; /* nothing to measure here */
    }
    if (o.cpu) printf("bench_gpu --cpu: the CPU backend, a check of this program, not a measurement\n");
    else wg_cuda_print_info(stdout);
    if (!o.layers_only) bench_gemm(b, &o);
    for (char *m = strtok(o.models, ","); m != NULL; m = strtok(NULL, ",")) {
        wg_net_opts no = {.model = m, .int8 = true, .bits = wg_quant_bits_reference(), .act = WG_ACT_FIT,
                          .e2 = WG_E2_FLAG, .batch = o.batch, .h = 224, .w = 224, .c = 3, .classes = 1000, .seed = 1};
        wg_net *net = wg_net_create(&no, b, err, sizeof(err));
        if (net == NULL) {
            printf("\n%s at batch %lld: %s\n", m, (long long)o.batch, err);
            continue;
        }
        bench_layers(b, net, &o);
        if (!o.layers_only) bench_train(b, net, &o);
        wg_net_free(net);
    }
    wg_backend_free(b);
    return 0;
}
