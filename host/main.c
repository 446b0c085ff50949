/* main.c: the wageubn command line.
 *
 *   wageubn version          version, and the backends and libraries built in
 *   wageubn devices          where training can run on this machine
 *   wageubn train CONFIG     train a network (see host/train.h) [--set k=v] [--out DIR]
 *
 * Bad command lines get a message naming what was wrong and exit 2. */
#include <stdio.h>
#include <string.h>

#include <stdbool.h>

#include "backend.h"
#include "config.h"
#include "quant.h"
#include "train.h"
#if defined(WG_HAVE_CUDA)
#include "backend_cuda.h"
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
            "  train CONFIG [--set section.key=value ...] [--out DIR] [--threads N]\n"
            "                   train the network CONFIG describes (configs/*.ini)\n"
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

/* wageubn train CONFIG [--set section.key=value ...] [--out DIR] [--threads N] */
static int cmd_train(int argc, char **argv)
{
    const char *path = NULL;
    const char *overrides[WG_MAX_OVERRIDES];
    char owned[2][WG_CONFIG_MAX_STR + 32];
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--set") || !strcmp(a, "--out") || !strcmp(a, "--threads")) {
            if (!has_value) {
                fprintf(stderr, "wageubn train: %s needs a value\n", a);
                return WG_EXIT_USAGE;
            }
            if (n == WG_MAX_OVERRIDES) {
                fprintf(stderr, "wageubn train: more than %d overrides\n", WG_MAX_OVERRIDES);
                return WG_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--set")) {
                overrides[n++] = v;
            } else {
                char *o = owned[!strcmp(a, "--out") ? 0 : 1];
                snprintf(o, sizeof(owned[0]), "%s=%s", !strcmp(a, "--out") ? "output.dir" : "train.threads", v);
                overrides[n++] = o;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "wageubn train: unknown option '%s' (expected --set, --out or --threads)\n", a);
            return WG_EXIT_USAGE;
        } else if (path == NULL) {
            path = a;
        } else {
            fprintf(stderr, "wageubn train: one config file expected, got '%s' and '%s'\n", path, a);
            return WG_EXIT_USAGE;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "usage: wageubn train CONFIG.ini [--set section.key=value ...] [--out DIR] [--threads N]\n");
        return WG_EXIT_USAGE;
    }
    wg_config cfg;
    char err[WG_CONFIG_ERR_LEN];
    if (!wg_config_load(&cfg, path, overrides, n, err, sizeof(err), NULL, 0)) {
        fprintf(stderr, "wageubn train: %s\n", err);
        return WG_EXIT_USAGE;
    }
    printf("# wageubn %s: resolved configuration of %s\n", WG_VERSION, path);
    wg_config_write(&cfg, stdout);
    fflush(stdout);
    wg_train_result res;
    return wg_train_run(&cfg, &res) == 0 ? WG_EXIT_OK : WG_EXIT_FAILED;
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
    fprintf(stderr, "wageubn: unknown command '%s' (expected version, devices, train or help)\n", cmd);
    usage(stderr);
    return WG_EXIT_USAGE;
}
