/* gemm.h: the three matrix products of convolution training, int8 and float32.
 *
 * Row-major matrices; ld* are leading dimensions (elements between rows). The three
 * shapes are the ones a convolution needs without transposing anything:
 *   nt: C[M][N]  = A[M][K] * B[N][K]^T   forward: im2col rows times weight rows
 *   nn: C[M][N] += A[M][K] * B[K][N]     backward-data: errors times weights
 *       (nn_overwrite: C[M][N] = A[M][K] * B[K][N], C's old values never read)
 *   tn: C[M][N] += A[K][M]^T * B[K][N]   backward-weight: errors^T times im2col rows
 * (float32 has nn and tn only: its forward multiplies by transposed weights with nn,
 * whose inner loop vectorizes without reassociating a sum.)
 * int8 inputs multiply exactly into int32 accumulators. The caller keeps every
 * int32 sum inside its bound: K <= WG_GEMM_S8_MAX_K products of magnitude <= 127^2
 * (docs/numerics.md 7.4: backward-weight sums over longer K in chunks, into int64).
 * Each has a scalar reference (_ref) that the tests compare with, bit for bit. */
#ifndef WG_GEMM_H
#define WG_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 127^2 * 131072 < 2^31: the longest int8 dot product an int32 holds exactly. */
#define WG_GEMM_S8_MAX_K 131072

void wg_gemm_s8_nt(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc);
void wg_gemm_s8_nn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc);
void wg_gemm_s8_nn_overwrite(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                             int64_t ldb, int32_t *C, int64_t ldc);
void wg_gemm_s8_tn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                   int32_t *C, int64_t ldc);

/* Backward-weight's product: tn for nparts left operands (the error parts) that share a
 * B whose rows are gathered. Row k of B, N = nruns * run columns, is nruns runs of run
 * bytes side by side, run i at brow[k] + i * run_ld:
 *   C[p*M + m][i*run + j] += sum over k < K of A[p][k*lda + m] * brow[k][i*run_ld + j]
 * for p < nparts, m < M, i < nruns, j < run. A row of the im2col matrix read from the
 * input itself (one run per kernel row, kw * c bytes), or with one run a row of a plain
 * matrix. The parts' C are stacked by rows, ldc apart; B is packed once for all parts.
 * It runs on the calling thread: the caller splits K across threads. scratch:
 * wg_gemm_s8_tn_gather_scratch(M, N, nparts) bytes, 64-byte aligned, reused from call
 * to call; NULL allocates them here. */
size_t wg_gemm_s8_tn_gather_scratch(int64_t M, int64_t N, int nparts);
void wg_gemm_s8_tn_gather(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                          const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C, int64_t ldc,
                          void *scratch);

void wg_gemm_f32_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc);
void wg_gemm_f32_tn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                    float *C, int64_t ldc);
/* What computes the float32 products: "onednn" or "loops" (built without oneDNN). */
const char *wg_gemm_f32_kernels_name(void);

/* A stride-1 convolution of nimg images straight from the images (implicit GEMM), where
 * the kernel set has one (AMX): for each image, y[oy][ox][o] (int32, oh x ow x o, oh =
 * h + 2 pad - kh + 1, likewise ow) = sum over i < kh, j < kw, ch < c of
 * xp[oy + i][ox + j][ch] wt[o][i][j][ch], xp the image (h x w x c) padded by pad zeros.
 * Bit for bit nt on the im2col matrix. Returns false, touching nothing, where the set
 * has none or the shape does not fit its tiles (c a multiple of 4, kw c at most 64 or a
 * multiple of 64); the caller then runs im2col and nt. On the calling thread. */
bool wg_gemm_s8_conv_s1(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t pad,
                        const int8_t *x, const int8_t *wt, int32_t *y);
/* The same for two images of the same shape and one filter bank, as backward-data
 * wants E2's two parts: y = conv(x) 2^s + conv(x2) 2^s2 (s, s2 in 0..30) in int32, each
 * block of both products summed while in L1, where the caller guarantees that every
 * product and sum fits int32 (conv.h's wg_conv_s8_dx_fits_s32). */
bool wg_gemm_s8_conv_s1_pair(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw,
                             int64_t pad, const int8_t *x, int s, const int8_t *x2, int s2, const int8_t *wt,
                             int32_t *y);

/* The int8 kernel sets (gemm_impl.h), fastest last. Every product goes through the set
 * chosen at the first one: the one WG_GEMM_KERNELS names in the environment (auto, amx,
 * vnni, avx2, scalar), else the best that runs here. A set this processor cannot run
 * stops the program with exit status 77, a name that is none of them with 2.
 * wg_gemm_use switches between products (not while one runs) and returns false,
 * switching nothing, for a set that cannot run here. */
typedef enum { WG_GEMM_SCALAR, WG_GEMM_AVX2, WG_GEMM_VNNI, WG_GEMM_AMX, WG_GEMM_NPATHS } wg_gemm_path;
const char *wg_gemm_path_name(wg_gemm_path p);
bool wg_gemm_path_runs(wg_gemm_path p); /* compiled in and supported by this processor */
wg_gemm_path wg_gemm_path_current(void);
bool wg_gemm_use(wg_gemm_path p);

/* Scalar references: the plain triple loops. */
void wg_gemm_s8_nt_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc);
void wg_gemm_s8_nn_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc);
void wg_gemm_s8_tn_ref(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B, int64_t ldb,
                       int32_t *C, int64_t ldc);
void wg_gemm_s8_tn_gather_ref(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                              const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C,
                              int64_t ldc);

#ifdef __cplusplus
}
#endif

#endif
