/* quant.cu: the quantizer primitives on the GPU (see quant.cuh).
 *
 * Elementwise kernels use a grid-stride loop over int64 indices; the per-element
 * work is the shared formula, so results equal the CPU backend's bit for bit. The
 * random bits of element i are wg_philox_element_bits(.., i): the same word of the
 * same Philox block the CPU loop uses. */
#include "cuda_check.cuh"
#include "launch.cuh"
#include "quant.cuh"
#include "wg_dtype.h"
#include "wg_intmath.h"
#include "wg_philox.h"
#include "wg_quant_elem.h"

__global__ void max_abs_kernel(const void *x, wg_dtype t, int64_t n, unsigned long long *out)
{
    unsigned long long m = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        unsigned long long a = wg_abs_u64(wg_load_i64(x, t, i));
        m = a > m ? a : m;
    }
    wg_block_max_to(out, m);
}

uint64_t wg_max_abs_cuda(const wg_tensor *x, unsigned long long *d_scratch, cudaStream_t stream)
{
    wg_check_int_tensors("max_abs", x, NULL);
    int64_t n = wg_tensor_numel(x);
    wg_max_reset(d_scratch, stream);
    if (n > 0) {
        max_abs_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(x->data, x->dtype, n, d_scratch);
        WG_CUDA_CHECK_LAUNCH("max_abs_kernel");
    }
    return wg_max_read(d_scratch, stream);
}

__global__ void round_shift_kernel(void *dst, wg_dtype td, const void *src, wg_dtype ts, int64_t n, int shift,
                                   int64_t bound)
{
    WG_GRID_STRIDE_LOOP(i, n) { wg_store_i64(dst, td, i, wg_round_shift_clamp(wg_load_i64(src, ts, i), shift, bound)); }
}

void wg_round_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, cudaStream_t stream)
{
    wg_check_int_tensors("round_shift", dst, src);
    int64_t n = wg_tensor_numel(src);
    round_shift_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(dst->data, dst->dtype, src->data, src->dtype, n,
                                                                      shift, bound);
    WG_CUDA_CHECK_LAUNCH("round_shift_kernel");
}

__global__ void flag_split_kernel(void *coarse, wg_dtype tc, void *fine, wg_dtype tf, const void *src, wg_dtype ts,
                                  int64_t n, int shift_coarse, int bits)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        wg_flag_pair p = wg_flag_split(wg_load_i64(src, ts, i), shift_coarse, bits);
        wg_store_i64(coarse, tc, i, p.coarse);
        wg_store_i64(fine, tf, i, p.fine);
    }
}

void wg_flag_split_cuda(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse, int bits,
                        cudaStream_t stream)
{
    wg_check_int_tensors("flag_split", coarse, src);
    wg_check_int_tensors("flag_split", fine, src);
    int64_t n = wg_tensor_numel(src);
    flag_split_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(coarse->data, coarse->dtype, fine->data,
                                                                     fine->dtype, src->data, src->dtype, n,
                                                                     shift_coarse, bits);
    WG_CUDA_CHECK_LAUNCH("flag_split_kernel");
}

__global__ void stochastic_shift_kernel(void *dst, wg_dtype td, const void *src, wg_dtype ts, int64_t n, int shift,
                                        int64_t bound, wg_sr_stream sr)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        uint32_t u = wg_philox_element_bits(sr.key, sr.step, sr.tensor_id, (uint64_t)i);
        wg_store_i64(dst, td, i, wg_grad_elem(wg_load_i64(src, ts, i), shift, bound, u));
    }
}

void wg_stochastic_shift_cuda(wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound, wg_sr_stream sr,
                              cudaStream_t stream)
{
    wg_check_int_tensors("stochastic_shift", dst, src);
    int64_t n = wg_tensor_numel(src);
    stochastic_shift_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(dst->data, dst->dtype, src->data,
                                                                           src->dtype, n, shift, bound, sr);
    WG_CUDA_CHECK_LAUNCH("stochastic_shift_kernel");
}

__global__ void momentum_step_kernel(void *m, wg_dtype tm, const void *g, wg_dtype tg, int64_t n,
                                     wg_momentum_shifts s)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t v = wg_momentum_elem(wg_load_i64(m, tm, i), wg_load_i64(g, tg, i), s.m_up, s.g_up, s.out_down, s.bound);
        wg_store_i64(m, tm, i, v);
    }
}

void wg_momentum_step_cuda(wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s, cudaStream_t stream)
{
    wg_check_int_tensors("momentum_step", m, g);
    int64_t n = wg_tensor_numel(m);
    momentum_step_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(m->data, m->dtype, g->data, g->dtype, n, s);
    WG_CUDA_CHECK_LAUNCH("momentum_step_kernel");
}

__global__ void update_step_kernel(void *w, wg_dtype tw, const void *m, wg_dtype tm, int64_t n, int64_t lr_q,
                                   wg_update_shifts s)
{
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t v = wg_update_elem(wg_load_i64(w, tw, i), wg_load_i64(m, tm, i), lr_q, s.w_up, s.p_up, s.out_down,
                                   s.bound);
        wg_store_i64(w, tw, i, v);
    }
}

void wg_update_step_cuda(wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s, cudaStream_t stream)
{
    wg_check_int_tensors("update_step", w, m);
    int64_t n = wg_tensor_numel(w);
    update_step_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(w->data, w->dtype, m->data, m->dtype, n, lr_q,
                                                                      s);
    WG_CUDA_CHECK_LAUNCH("update_step_kernel");
}

__global__ void weight_decay_kernel(int64_t *g, const int32_t *w, int64_t n, int64_t wd_q, int shift)
{
    WG_GRID_STRIDE_LOOP(i, n) { g[i] = wg_weight_decay_elem(g[i], w[i], wd_q, shift); }
}

void wg_weight_decay_cuda(wg_tensor *g, const wg_tensor *w, int64_t wd_q, int shift, cudaStream_t stream)
{
    WG_ASSERT(g->dtype == WG_I64 && w->dtype == WG_I32 && wg_tensor_numel(g) == wg_tensor_numel(w),
              "weight decay: a %s gradient, %s weights", wg_dtype_name(g->dtype), wg_dtype_name(w->dtype));
    int64_t n = wg_tensor_numel(g);
    if (n == 0) return;
    weight_decay_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((int64_t *)g->data, (const int32_t *)w->data, n,
                                                                      wd_q, shift);
    WG_CUDA_CHECK_LAUNCH("weight_decay_kernel");
}
