/* gemm.cu: the int8 and float GEMMs through cuBLASLt (see gemm.cuh). Every call is checked and a
 * refusal names the shape. The descriptors are made per call: a few microseconds, small
 * against a convolution's product. */
#include <stdio.h>

#include "check.h"
#include "cuda_check.cuh"
#include "gemm.cuh"

/* Whether p is 16-byte aligned (what cuBLASLt's IMMA kernels load at a time). */
static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static bool mult4(int64_t x) { return (x & 3) == 0; } /* (WG_ASSERT prints its test: no % there) */

/* C = alpha op(X) op(Y) + beta C with cuBLASLt's first heuristic choice, then the
 * descriptors destroyed. what and M, N, K name the product in a refusal. */
static void lt_matmul(cublasLtHandle_t lt, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t lx, const void *X,
                      cublasLtMatrixLayout_t ly, const void *Y, cublasLtMatrixLayout_t lc, void *C, const void *alpha,
                      const void *beta, void *workspace, size_t workspace_bytes, cudaStream_t stream, const char *what,
                      int64_t M, int64_t N, int64_t K)
{
    cublasLtMatmulPreference_t pref;
    WG_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    WG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof(workspace_bytes)));
    cublasLtMatmulHeuristicResult_t algo;
    int found = 0;
    WG_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, lx, ly, lc, lc, pref, 1, &algo, &found));
    WG_ASSERT(found == 1, "cuBLASLt has no %s algorithm for %lld x %lld x %lld", what, (long long)M, (long long)N,
              (long long)K);
    WG_CUBLAS_CHECK(cublasLtMatmul(lt, op, alpha, X, lx, Y, ly, beta, C, lc, C, lc, &algo.algo, workspace,
                                   workspace_bytes, stream));
    WG_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lc));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ly));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lx));
    WG_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
}

void wg_gemm_s8_nt_cuda(cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, int64_t M, int64_t N, int64_t K,
                        const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb, int32_t *C, int64_t ldc,
                        cudaStream_t stream)
{
    if (M <= 0 || N <= 0) return;
    WG_ASSERT(K > 0 && mult4(K) && mult4(lda) && mult4(ldb) && mult4(ldc) && lda >= K && ldb >= K && ldc >= N,
              "int8 GEMM %lld x %lld x %lld (lda %lld, ldb %lld, ldc %lld): cuBLASLt's int8 kernels need K and the "
              "leading dimensions to be multiples of 4",
              (long long)M, (long long)N, (long long)K, (long long)lda, (long long)ldb, (long long)ldc);
    WG_ASSERT(aligned16(A) && aligned16(B) && aligned16(C), "int8 GEMM: operands not 16-byte aligned (%p, %p, %p)",
              (const void *)A, (const void *)B, (void *)C);
    cublasLtMatmulDesc_t op;
    WG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    WG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    WG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    /* stored column-major: our B is K x N (ldb), our A K x M (lda), C N x M (ldc) */
    cublasLtMatrixLayout_t la, lb, lc;
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, (uint64_t)K, (uint64_t)N, ldb));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, (uint64_t)K, (uint64_t)M, lda));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, (uint64_t)N, (uint64_t)M, ldc));
    const int32_t one = 1, zero = 0;
    lt_matmul(lt, op, la, B, lb, A, lc, C, &one, &zero, workspace, workspace_bytes, stream, "int8", M, N, K);
}

void wg_gemm_f32_cuda(cublasLtHandle_t lt, void *workspace, size_t workspace_bytes, bool ta, bool tb, int64_t M,
                      int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                      int64_t ldc, cudaStream_t stream)
{
    if (M <= 0 || N <= 0) return;
    WG_ASSERT(K > 0 && lda >= (ta ? M : K) && ldb >= (tb ? K : N) && ldc >= N,
              "float GEMM %lld x %lld x %lld (lda %lld, ldb %lld, ldc %lld)", (long long)M, (long long)N, (long long)K,
              (long long)lda, (long long)ldb, (long long)ldc);
    /* Column-major, the row-major product is C^T (N x M) = op(B)^T op(A)^T: cuBLASLt's
     * first operand is our B, its second our A. A row-major r x c matrix is stored as a
     * column-major c x r one, so op(B)^T is B's storage as it is (no transpose) unless tb. */
    cublasLtMatmulDesc_t op;
    WG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t tx = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ty = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    WG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tx, sizeof(tx)));
    WG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &ty, sizeof(ty)));
    cublasLtMatrixLayout_t lx, ly, lc;
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lx, CUDA_R_32F, tb ? (uint64_t)K : (uint64_t)N,
                                               tb ? (uint64_t)N : (uint64_t)K, ldb));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ly, CUDA_R_32F, ta ? (uint64_t)M : (uint64_t)K,
                                               ta ? (uint64_t)K : (uint64_t)M, lda));
    WG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, (uint64_t)N, (uint64_t)M, ldc));
    const float one = 1.0f, zero = 0.0f;
    lt_matmul(lt, op, lx, B, ly, A, lc, C, &one, &zero, workspace, workspace_bytes, stream, "float", M, N, K);
}
