/* conv_select.cuh: the GPU side of the per-shape choice of convolution kernel
 * (host/conv_tune.h says what is chosen and why that is safe): each candidate runs on
 * the layer's own tensors, its output is hashed and compared with cuBLASLt's, and it is
 * timed (median of IG_TUNE_RUNS, after the run that was hashed).
 *
 * Every candidate writes the whole of the pass's output (none accumulates into it), so
 * after tuning, the caller runs the chosen kernel once more and the layer's output is
 * that kernel's, whatever ran last. */
#ifndef WG_CONV_SELECT_CUH
#define WG_CONV_SELECT_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "conv_tune.h"
#include "cuda_check.cuh"

#define IG_TUNE_RUNS 3

/* A hash of bytes (a multiple of 4) at p that any change of a word or of its place
 * changes (with odds of 2^-64 to the contrary): the sum over the words of a mix of the
 * word and its index, summed in any order (atomics) to the same value. d_word: one
 * device word of scratch. Waits. */
uint64_t wg_hash_cuda(const void *p, size_t bytes, unsigned long long *d_word, cudaStream_t stream);

/* The median time in ms of IG_TUNE_RUNS calls of run(). */
template <class Run>
static double ig_time_ms(Run run, cudaStream_t stream)
{
    cudaEvent_t a, b;
    WG_CUDA_CHECK(cudaEventCreate(&a));
    WG_CUDA_CHECK(cudaEventCreate(&b));
    float ms[IG_TUNE_RUNS];
    for (int r = 0; r < IG_TUNE_RUNS; r++) {
        WG_CUDA_CHECK(cudaEventRecord(a, stream));
        run();
        WG_CUDA_CHECK(cudaEventRecord(b, stream));
        WG_CUDA_CHECK(cudaEventSynchronize(b));
        WG_CUDA_CHECK(cudaEventElapsedTime(&ms[r], a, b));
    }
    WG_CUDA_CHECK(cudaEventDestroy(a));
    WG_CUDA_CHECK(cudaEventDestroy(b));
    for (int i = 1; i < IG_TUNE_RUNS; i++) /* insertion sort of three */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float t = ms[j];
            ms[j] = ms[j - 1], ms[j - 1] = t;
        }
    return ms[IG_TUNE_RUNS / 2];
}

/* The kernel for key: the mode's (wg_conv_mode_kernel) unless the mode is auto; then the
 * table's choice, tuning the shape first if it is new. run(kernel) runs the pass with
 * that kernel and returns the maximum it reports (0 where it reports none); out, bytes:
 * what the pass writes. */
template <class Run>
static int wg_conv_select(wg_conv_tune *t, int mode, const wg_conv_tune_key &key, const bool allowed[WG_KERNELS],
                          const void *out, size_t bytes, unsigned long long *d_word, cudaStream_t stream, Run run)
{
    if (mode != WG_CONV_AUTO) return wg_conv_mode_kernel(mode, allowed);
    const wg_conv_tune_entry *found = wg_conv_tune_find(t, &key);
    if (found != NULL) return found->kernel;
    wg_conv_tune_entry e = {};
    e.key = key;
    uint64_t ref_max = 0, ref_hash = 0;
    for (int k = 0; k < WG_KERNELS; k++) {
        if (!allowed[k]) continue;
        uint64_t mx = run(k), h = wg_hash_cuda(out, bytes, d_word, stream);
        if (k == WG_KERNEL_CUBLASLT) ref_max = mx, ref_hash = h;
        e.tried[k] = true;
        e.agreed[k] = mx == ref_max && h == ref_hash;
        e.ms[k] = ig_time_ms([&] { run(k); }, stream);
        if (!e.agreed[k])
            fprintf(stderr,
                    "wageubn: warning: the %s kernel's %s of a %lldx%lldx%lldx%lld -> %lld, %lldx%lld layer differs "
                    "from cuBLASLt's; it will not run for that layer (a bug: please report it with the output of "
                    "bench_gpu --layers-only)\n",
                    wg_conv_kernel_name(k), wg_conv_pass_name(key.pass), (long long)key.n, (long long)key.h,
                    (long long)key.w, (long long)key.c, (long long)key.o, (long long)key.kh, (long long)key.kw);
    }
    return wg_conv_tune_add(t, e);
}

#endif
