/* gemm.cuh: the int8 GEMM on the GPU's tensor cores (gemm.cu), backend.h's gemm_s8_nt:
 * C[M][N] = A[M][K] B[N][K]^T, int8 x int8 -> int32, exact (int32 accumulators cannot
 * overflow for K < 2^17), through cuBLASLt's IMMA kernels.
 *
 * cuBLASLt is column-major, and its int8 kernels want the "TN" form: op(A) transposed,
 * op(B) not, the leading dimensions multiples of 4. Our row-major product is, read
 * column-major, C^T (N x M) = B (K x N)^T A (K x M): cuBLASLt's A is our B (transposed),
 * its B our A, m = N, n = M. What cuBLASLt cannot take (K or a leading dimension not a
 * multiple of 4, a pointer not 16-byte aligned) is refused by name: the caller pads (the
 * convolutions' channels, docs/numerics.md). */
#ifndef WG_GEMM_CUH
#define WG_GEMM_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdint.h>

/* The context's cuBLASLt handle and workspace (workspace_bytes, allocated once). */
void wg_gemm_s8_nt_cuda(cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, int64_t M, int64_t N, int64_t K,
                        const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb, int32_t *C, int64_t ldc,
                        cudaStream_t stream);

/* A context's cuBLASLt handle and workspace, for the callers that pass them on. */
typedef struct wg_gemm_ctx {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
} wg_gemm_ctx;

/* The float GEMM of the fp32 mode: C[M][N] = op(A) op(B), row-major, op(A) = A (M x K,
 * lda) or, with ta, the transpose of A stored K x M; op(B) alike (K x N, or N x K with
 * tb). cuBLASLt's SGEMM with CUBLAS_COMPUTE_32F: float products and sums, no TF32. */
void wg_gemm_f32_cuda(cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, bool ta, bool tb, int64_t M,
                      int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                      int64_t ldc, cudaStream_t stream);

#endif
