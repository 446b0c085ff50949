/* main.c: the wageubn command line.
 *
 *   wageubn version          version, and the backends and libraries built in
 *   wageubn devices          where training can run on this machine
 *   wageubn train CONFIG     train (arrives with the CPU training engine)
 *
 * Bad command lines get a message naming what was wrong and exit 2. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "quant.h"
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
            "  train CONFIG     train a network (not available yet: see README.md, Status)\n"
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
    if (!strcmp(cmd, "train")) {
        fprintf(stderr, "wageubn train: not available yet. This build holds the integer core (fixed-point\n"
                        "tensors, the WAGEUBN quantizers, the CPU backend and the CUDA backend's quantizer\n"
                        "ops); the layers and the trainer come next. See README.md, Status.\n");
        return WG_EXIT_FAILED;
    }
    fprintf(stderr, "wageubn: unknown command '%s' (expected version, devices, train or help)\n", cmd);
    usage(stderr);
    return WG_EXIT_USAGE;
}
