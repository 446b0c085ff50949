/* main.c: the wageubn command line.
 *
 *   wageubn version          version, and the backends and libraries built in
 *   wageubn devices          where training can run on this machine
 *   wageubn train CONFIG     train a network (see host/train.h) [--set k=v] [--out DIR] [--resume R]
 *   wageubn eval CONFIG      evaluate a checkpoint (--checkpoint F)
 *   wageubn info CHECKPOINT  what a checkpoint holds
 *   wageubn sweep SWEEP.ini  train a grid of configs (host/sweep.c)
 *   wageubn plot RUN_DIR...  training curves as a PNG (host/plot.c)
 *
 * Bad command lines get a message naming what was wrong and exit 2. */
#include <stdio.h>
#include <string.h>

#include <stdbool.h>

#include "backend.h"
#include "config.h"
#include "dist.h"
#include "quant.h"
#include "checkpoint.h"
#include "plot.h"
#include "run_dir.h"
#include "sweep.h"
#include "train.h"
#if defined(WG_HAVE_CUDA)
#include "backend_cuda.h"
#include "nccl_comm.cuh"
#endif

#ifndef WG_VERSION
#define WG_VERSION "unknown"
#endif

enum { WG_EXIT_OK = 0, WG_EXIT_FAILED = 1, WG_EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: wageubn COMMAND [ARGS]\n"
            "\n"
            "Full 8-bit integer training of deep convolutional networks (WAGEUBN).\n"
            "\n"
            "commands:\n"
            "  version          print the version and what this build contains\n"
            "  devices          list the backends this machine can run\n"
            "  train CONFIG [--set section.key=value ...] [--out DIR] [--threads N] [--device cpu|cuda|auto]\n"
            "               [--workers N] [--resume RUN_DIR|CHECKPOINT] [--overwrite]\n"
            "                   train the network CONFIG describes (configs/*.ini); --resume\n"
            "                   continues a run from its checkpoint, bit for bit\n"
            "  eval CONFIG --checkpoint CHECKPOINT|RUN_DIR [--set ...] [--json FILE]\n"
            "                   test loss, top-1 and top-5 accuracy of a checkpoint\n"
            "  info CHECKPOINT|RUN_DIR [--tensor NAME]\n"
            "                   what a checkpoint holds: position, accuracy, tensors; or the\n"
            "                   values of one tensor (q * 2^exp), one per line\n"
            "  sweep SWEEP.ini [--dry-run] [--set section.key=value ...]\n"
            "                   train every point of a config grid (configs/sweeps/), skipping\n"
            "                   finished points; writes results.csv and results.md\n"
            "  plot RUN_DIR [RUN_DIR ...] [--out FILE.png] [--title T] [--keep-script]\n"
            "                   loss and accuracy curves of runs, with gnuplot\n"
            "  help             this message\n");
}

static int cmd_version(void)
{
    wg_quant_bits b = wg_quant_bits_reference();
    printf("wageubn %s\n", WG_VERSION);
    printf("backends: cpu");
#if defined(WG_HAVE_CUDA)
    printf(", cuda");
#endif
    printf("\nmulti-process: ");
#if defined(WG_HAVE_MPI)
    printf("MPI");
#else
    printf("none (built without MPI)");
#endif
#if defined(WG_HAVE_NCCL)
    printf(", NCCL");
#endif
    printf("\nreference bit widths: W %d, A %d, U %d, E1 %d, E2 %d, G scale 2^%d on 2^-%d, BN grad %d, "
           "momentum %d (1/%d), lr %d\n",
           b.w, b.a, b.u, b.e1, b.e2, b.g_scale_log2, b.gc - 1, b.bn_grad, b.momentum, 1 << b.momentum_shift, b.lr);
    return WG_EXIT_OK;
}

static int cmd_devices(void)
{
    printf("cpu: available (the reference backend)\n");
#if defined(WG_HAVE_CUDA)
    printf("cuda: ");
    wg_cuda_print_info(stdout);
#else
    printf("cuda: not built (no CUDA toolkit at build time)\n");
#endif
    return WG_EXIT_OK;
}

enum { WG_MAX_OVERRIDES = 64 };

/* The arguments of train and eval: CONFIG, overrides and the command's own options. */
typedef struct cmd_args {
    const char *config;
    const char *overrides[WG_MAX_OVERRIDES];
    char owned[WG_MAX_OVERRIDES][1100]; /* --out and --threads as overrides */
    int n;
    bool has_out;
    const char *resume, *checkpoint, *json; /* train --resume; eval --checkpoint, --json */
    bool overwrite;                         /* train --overwrite */
} cmd_args;

static bool add_override(cmd_args *a, const char *cmd, const char *key, const char *value)
{
    if (a->n == WG_MAX_OVERRIDES) {
        fprintf(stderr, "wageubn %s: more than %d overrides\n", cmd, WG_MAX_OVERRIDES);
        return false;
    }
    if (key == NULL) a->overrides[a->n++] = value;
    else {
        snprintf(a->owned[a->n], sizeof(a->owned[0]), "%s=%s", key, value);
        a->overrides[a->n] = a->owned[a->n];
        a->n++;
    }
    return true;
}

/* Parse argv of `wageubn CMD`; options with values: --set --out --threads --workers, and for
 * train --resume, for eval --checkpoint and --json; train takes --overwrite. */
static bool parse_args(const char *cmd, int argc, char **argv, cmd_args *a)
{
    bool train = !strcmp(cmd, "train");
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        bool valued = !strcmp(o, "--set") || !strcmp(o, "--out") || !strcmp(o, "--threads") ||
                      !strcmp(o, "--device") || !strcmp(o, "--workers") ||
                      (train && !strcmp(o, "--resume")) || (!train && (!strcmp(o, "--checkpoint") || !strcmp(o, "--json")));
        if (valued && i + 1 == argc) {
            fprintf(stderr, "wageubn %s: %s needs a value\n", cmd, o);
            return false;
        }
        if (valued) {
            const char *v = argv[++i];
            bool ok = true;
            if (!strcmp(o, "--set")) ok = add_override(a, cmd, NULL, v);
            else if (!strcmp(o, "--out")) ok = add_override(a, cmd, "output.dir", v), a->has_out = true;
            else if (!strcmp(o, "--threads")) ok = add_override(a, cmd, "train.threads", v);
            else if (!strcmp(o, "--device")) ok = add_override(a, cmd, "train.device", v);
            else if (!strcmp(o, "--workers")) ok = add_override(a, cmd, "data.workers", v);
            else if (!strcmp(o, "--resume")) a->resume = v;
            else if (!strcmp(o, "--checkpoint")) a->checkpoint = v;
            else a->json = v;
            if (!ok) return false;
        } else if (train && !strcmp(o, "--overwrite")) {
            a->overwrite = true;
        } else if (o[0] == '-') {
            fprintf(stderr, "wageubn %s: unknown option '%s' (expected --set, --out, --threads, --workers, --device, %s)\n",
                    cmd, o,
                    train ? "--resume or --overwrite" : "--checkpoint or --json");
            return false;
        } else if (a->config == NULL) {
            a->config = o;
        } else {
            fprintf(stderr, "wageubn %s: one config file expected, got '%s' and '%s'\n", cmd, a->config, o);
            return false;
        }
    }
    return true;
}

static bool load_config(const char *cmd, const cmd_args *a, wg_config *cfg)
{
    char err[WG_CONFIG_ERR_LEN];
    if (wg_config_load(cfg, a->config, a->overrides, a->n, err, sizeof(err), NULL, 0)) return true;
    fprintf(stderr, "wageubn %s: %s\n", cmd, err);
    return false;
}

/* The backend [train] device names (NULL: the run makes its CPU backend itself), or NULL
 * with a message on stderr and *failed set. auto takes GPU 0 when it is usable and says
 * which it took. */
static wg_backend *open_device(const char *cmd, wg_device d, int gpu, bool *failed)
{
    *failed = false;
    if (d == WG_DEVICE_CPU) return NULL;
#if defined(WG_HAVE_CUDA)
    char why[512];
    int n = 0;
    wg_backend *b = NULL;
    if (d == WG_DEVICE_CUDA || wg_cuda_probe(&n, why, sizeof(why)) == WG_CUDA_READY) {
        if (gpu > 0 && wg_cuda_probe(&n, why, sizeof(why)) == WG_CUDA_READY && gpu >= n)
            snprintf(why, sizeof(why), "local rank %d has no GPU of its own (this node has %d: run at most %d ranks "
                                       "per node)", gpu, n, n);
        else
            b = wg_backend_cuda_init(gpu, why, sizeof(why));
    }
    if (b != NULL) {
        fprintf(stderr, "wageubn %s: on the GPU (CUDA device %d)\n", cmd, gpu);
        return b;
    }
    if (d == WG_DEVICE_AUTO) {
        fprintf(stderr, "wageubn %s: on the CPU (%s)\n", cmd, why);
        return NULL;
    }
    fprintf(stderr, "wageubn %s: [train] device = cuda, but %s (wageubn devices lists what this machine has)\n", cmd,
            why);
#else
    (void)gpu;
    if (d == WG_DEVICE_AUTO) {
        fprintf(stderr, "wageubn %s: on the CPU (this build has no CUDA backend)\n", cmd);
        return NULL;
    }
    fprintf(stderr, "wageubn %s: [train] device = cuda, but this build has no CUDA backend (build where the CUDA "
                    "toolkit is installed: CMake finds nvcc under /usr/local/cuda)\n",
            cmd);
#endif
    *failed = true;
    return NULL;
}

/* wageubn train CONFIG [--set section.key=value ...] [--out DIR] [--threads N] [--resume RUN_DIR|FILE] [--overwrite] */
static int cmd_train(int argc, char **argv)
{
    static const char use[] = "usage: wageubn train CONFIG.ini [--set section.key=value ...] [--out DIR] [--threads N] "
                              "[--device cpu|cuda|auto] [--workers N] [--resume RUN_DIR|CHECKPOINT] [--overwrite]\n";
    cmd_args a;
    if (!parse_args("train", argc, argv, &a)) return WG_EXIT_USAGE;
    if (a.config == NULL) return fputs(use, stderr), WG_EXIT_USAGE;
    if (a.resume && a.overwrite) {
        fprintf(stderr, "wageubn train: --resume continues a run and --overwrite starts one over: choose one\n");
        return WG_EXIT_USAGE;
    }
    char dir[1024];
    if (a.resume && !a.has_out) { /* continue in the checkpoint's run directory */
        wg_run_dir_of(a.resume, dir, sizeof(dir));
        if (!add_override(&a, "train", "output.dir", dir)) return WG_EXIT_USAGE;
    }
    wg_config cfg;
    if (!load_config("train", &a, &cfg)) return WG_EXIT_USAGE;
    /* under mpirun: the ranks, each its GPU (its local rank), rank 0 the one that writes */
    wg_dist *d = wg_dist_init(NULL, NULL);
    if (wg_dist_rank(d) == 0) {
        printf("# wageubn %s: resolved configuration of %s\n", WG_VERSION, a.config);
        wg_config_write(&cfg, stdout);
        fflush(stdout);
    }
    bool failed;
    wg_backend *b = open_device("train", cfg.train.device, wg_dist_local_rank(d), &failed);
#if defined(WG_HAVE_CUDA)
    if (b != NULL && wg_dist_size(d) > 1) { /* the GPUs' gradients through NCCL where this build has it */
        char why[256];
        wg_device_comm *c = wg_cuda_nccl_open(b, d, why, sizeof(why));
        if (c != NULL) wg_dist_set_device_comm(d, c);
        else if (wg_dist_rank(d) == 0) fprintf(stderr, "wageubn train: gradients through host copies and MPI: %s\n", why);
    }
#endif
    int status = WG_EXIT_USAGE;
    if (!failed) {
        wg_train_result res;
        wg_train_opts opts = {.resume = a.resume, .overwrite = a.overwrite, .config_path = a.config, .backend = b,
                              .dist = wg_dist_size(d) > 1 ? d : NULL};
        status = wg_train_run(&cfg, &opts, &res);
    }
    wg_backend_free(b);
    wg_dist_finalize(d);
    return status;
}

/* wageubn eval CONFIG --checkpoint FILE|RUN_DIR [--set ...] [--json FILE] */
static int cmd_eval(int argc, char **argv)
{
    cmd_args a;
    if (!parse_args("eval", argc, argv, &a)) return WG_EXIT_USAGE;
    if (a.config == NULL || a.checkpoint == NULL) {
        fprintf(stderr, "usage: wageubn eval CONFIG.ini --checkpoint CHECKPOINT|RUN_DIR [--set section.key=value ...] "
                        "[--json FILE]\n");
        return WG_EXIT_USAGE;
    }
    wg_config cfg;
    if (!load_config("eval", &a, &cfg)) return WG_EXIT_USAGE;
    bool failed;
    wg_backend *b = open_device("eval", cfg.train.device, 0, &failed);
    if (failed) return WG_EXIT_USAGE;
    int status = wg_eval_run(&cfg, a.checkpoint, a.json, b);
    wg_backend_free(b);
    return status;
}

/* wageubn info CHECKPOINT|RUN_DIR [--tensor NAME] */
static int cmd_info(int argc, char **argv)
{
    bool tensor = argc == 3 && !strcmp(argv[1], "--tensor");
    if ((argc != 1 && !tensor) || argv[0][0] == '-') {
        fprintf(stderr, "usage: wageubn info CHECKPOINT|RUN_DIR [--tensor NAME]\n");
        return WG_EXIT_USAGE;
    }
    char err[2048], path[1024];
    if (!wg_checkpoint_resolve(argv[0], path, sizeof(path), err, sizeof(err)) ||
        !wg_checkpoint_print_info(path, tensor ? argv[2] : NULL, stdout, err, sizeof(err))) {
        fprintf(stderr, "wageubn info: %s\n", err);
        return WG_EXIT_FAILED;
    }
    return WG_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return WG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return WG_EXIT_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
    if (!strcmp(cmd, "devices")) return cmd_devices();
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "sweep")) return wg_sweep_main(argc - 2, argv + 2);
    if (!strcmp(cmd, "plot")) return wg_plot_main(argc - 2, argv + 2);
    fprintf(stderr, "wageubn: unknown command '%s' (expected train, eval, info, sweep, plot, version, devices or "
                    "help)\n", cmd);
    usage(stderr);
    return WG_EXIT_USAGE;
}
