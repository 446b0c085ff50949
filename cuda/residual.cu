/* residual.cu: the aligned sums on the GPU (see residual.cuh). Each element is the
 * shared formula of wg_residual_elem.h, and the maximum an integer one, so the results
 * equal the CPU backend's (residual_cpu.c) bit for bit. */
#include "check.h"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "residual.cuh"
#include "wg_dtype.h"
#include "wg_residual_elem.h"

__global__ void shift_sum_kernel(void *dst, wg_dtype td, const void *a, wg_dtype ta, int sa, const void *b,
                                 wg_dtype tb, int sb, int64_t n, unsigned long long *max_out)
{
    unsigned long long m = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t t = wg_shift_sum_elem(wg_load_i64(a, ta, i), sa, wg_load_i64(b, tb, i), sb);
        unsigned long long at = wg_abs_u64(t);
        wg_store_i64(dst, td, i, t); /* int32: modulo 2^32, as backend.h says */
        m = at > m ? at : m;
    }
    wg_block_max_to(max_out, m);
}

/* The shifts as residual.c's alignment gives them (0..31): what the formulas are exact for. */
static void check_shifts(const char *op, int sa, int sb)
{
    WG_ASSERT(sa >= 0 && sa <= 31 && sb >= 0 && sb <= 31, "%s: shifts %d and %d (expected 0..31)", op, sa, sb);
}

uint64_t wg_shift_sum_cuda(wg_tensor *dst, const wg_tensor *a, int sa, const wg_tensor *b, int sb,
                           unsigned long long *d_scratch, cudaStream_t stream)
{
    wg_check_int_tensors("shift_sum", dst, a);
    wg_check_int_tensors("shift_sum", dst, b);
    check_shifts("shift_sum", sa, sb);
    int64_t n = wg_tensor_numel(dst);
    wg_max_reset(d_scratch, stream);
    if (n > 0) {
        shift_sum_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>(dst->data, dst->dtype, a->data, a->dtype, sa,
                                                                       b->data, b->dtype, sb, n, d_scratch);
        WG_CUDA_CHECK_LAUNCH("shift_sum_kernel");
    }
    return wg_max_read(d_scratch, stream);
}

__global__ void accumulate_kernel(int64_t *acc, int sa, const void *add, wg_dtype ta, int sb, int64_t n,
                                  unsigned long long *max_out)
{
    unsigned long long m = 0;
    WG_GRID_STRIDE_LOOP(i, n)
    {
        int64_t t = wg_accumulate_elem(acc[i], sa, wg_load_i64(add, ta, i), sb);
        unsigned long long at = wg_abs_u64(t);
        acc[i] = t;
        m = at > m ? at : m;
    }
    wg_block_max_to(max_out, m);
}

uint64_t wg_accumulate_cuda(wg_tensor *acc, int sa, const wg_tensor *add, int sb, unsigned long long *d_scratch,
                            cudaStream_t stream)
{
    wg_check_int_tensors("accumulate", acc, add);
    WG_ASSERT(acc->dtype == WG_I64, "accumulate: the sum must be int64, got %s", wg_dtype_name(acc->dtype));
    check_shifts("accumulate", sa, sb);
    int64_t n = wg_tensor_numel(acc);
    wg_max_reset(d_scratch, stream);
    if (n > 0) {
        accumulate_kernel<<<wg_grid_for(n), WG_CUDA_BLOCK, 0, stream>>>((int64_t *)acc->data, sa, add->data,
                                                                        add->dtype, sb, n, d_scratch);
        WG_CUDA_CHECK_LAUNCH("accumulate_kernel");
    }
    return wg_max_read(d_scratch, stream);
}
