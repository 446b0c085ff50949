/* conv_tune.h: which kernel runs each int8 convolution on the GPU, chosen once per layer
 * shape and pass (cuda/conv_select.cu times and checks the candidates; this is the
 * table of what it found, and the rule that picks from it: plain C, tested on the CPU
 * by tests/test_conv_tune.c).
 *
 * The candidates all give the same bits by construction (every sum is exact), so the
 * choice is only about speed, and choosing per shape is safe. The first time a shape
 * and pass come, each candidate that accepts them runs on the layer's own tensors: its
 * output is checked against cuBLASLt's (a hash of every element and the maximum; a
 * kernel that disagrees is reported once and never used for that shape) and timed;
 * the fastest that agrees is kept for the rest of the run.
 *
 * WG_CUDA_CONV (environment) sets the mode: auto (that, the default), cublaslt, igemm
 * (mma.sync implicit GEMM where it applies) or wgmma (the Hopper implicit GEMM where it
 * applies, else igemm's). */
#ifndef WG_CONV_TUNE_H
#define WG_CONV_TUNE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wg_conv_pass { WG_PASS_FORWARD, WG_PASS_DATA, WG_PASS_WEIGHT, WG_PASSES } wg_conv_pass;

/* The candidates, the reference first. */
typedef enum wg_conv_kernel {
    WG_KERNEL_CUBLASLT, /* im2col and cuBLASLt's int8 GEMMs (conv.cu): every layer */
    WG_KERNEL_MMA,      /* implicit GEMM on mma.sync (igemm.cuh), sm_80 and later */
    WG_KERNEL_WGMMA,    /* implicit GEMM on wgmma (igemm_wgmma.cuh), sm_90a builds on 9.0 */
    WG_KERNELS
} wg_conv_kernel;

typedef enum wg_conv_mode {
    WG_CONV_AUTO = -1, /* time and check once per shape */
    /* else a wg_conv_kernel, taken where it applies, falling back down the list */
} wg_conv_mode;

/* What makes one choice: the layer's shape, the pass, its error parts (1 or 2) and the
 * width of what it writes (backward-data's dx: 4 or 8 bytes). */
typedef struct wg_conv_tune_key {
    int64_t n, h, w, c, o, kh, kw;
    int stride, pad;
    int pass, nparts, out_bytes;
} wg_conv_tune_key;

typedef struct wg_conv_tune_entry {
    wg_conv_tune_key key;
    bool tried[WG_KERNELS];  /* ran (the kernel accepts the layer) */
    bool agreed[WG_KERNELS]; /* its output equalled cuBLASLt's */
    double ms[WG_KERNELS];   /* its median time */
    int kernel;              /* the choice */
} wg_conv_tune_entry;

typedef struct wg_conv_tune {
    wg_conv_tune_entry *e;
    int n, cap;
} wg_conv_tune;

wg_conv_tune_key wg_conv_tune_key_of(const wg_conv_geom *g, wg_conv_pass pass, int nparts, int out_bytes);

/* The entry of key, or NULL. */
const wg_conv_tune_entry *wg_conv_tune_find(const wg_conv_tune *t, const wg_conv_tune_key *key);

/* Record a finished entry (its key not yet in t) and fill its choice: the fastest
 * candidate that was tried and agreed; cuBLASLt when none did. Returns the choice. */
int wg_conv_tune_add(wg_conv_tune *t, wg_conv_tune_entry e);

void wg_conv_tune_free(wg_conv_tune *t);

/* One line per entry: the shape, the pass, each candidate's time (or why it did not
 * count) and the choice. */
void wg_conv_tune_print(const wg_conv_tune *t, FILE *out);

const char *wg_conv_kernel_name(int kernel);
const char *wg_conv_pass_name(int pass);

/* The mode named by s (auto, cublaslt, igemm, wgmma); false when s names none. */
bool wg_conv_mode_parse(const char *s, int *mode);

/* The kernel a mode runs when allowed[] says which accept the layer (allowed[CUBLASLT]
 * is always true): a named kernel where allowed, else the next one down (wgmma ->
 * igemm -> cuBLASLt). Not for AUTO. */
int wg_conv_mode_kernel(int mode, const bool allowed[WG_KERNELS]);

#ifdef __cplusplus
}
#endif

#endif
