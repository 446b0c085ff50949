/* gemm_impl.h: the int8 kernel sets behind gemm.h, one per instruction set, and the
 * runtime dispatch between them (gemm.c). Each set implements the whole int8 contract
 * of gemm.h (nt, nn, tn, tn_gather and its scratch size), bit for bit equal to the
 * _ref loops:
 *   wg_gemm_scalar: portable C loops (gemm_scalar.c), on every processor;
 *   wg_gemm_avx2:   AVX2, int8 widened to int16 and multiplied exactly with vpmaddwd
 *                   (gemm_avx2.c; never vpmaddubsw, which saturates);
 *   wg_gemm_vnni:   AVX-512 VNNI, vpdpbusd with an exact correction for the signed x
 *                   signed product (gemm_vnni.c);
 *   wg_gemm_amx:    AMX tiles (tdpbssd, signed x signed), the VNNI set's packing and,
 *                   for shapes the tiles do not fit, its products (gemm_amx.c).
 * The x86 sets are compiled with their own instruction-set flags (CMakeLists.txt), so a
 * build for any x86-64 holds them, and run only where the processor has them. */
#ifndef WG_GEMM_IMPL_H
#define WG_GEMM_IMPL_H

#include "gemm.h"

typedef void wg_gemm_s8_fn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                           int64_t ldb, int32_t *C, int64_t ldc);
/* nn: C = A B when !acc (C's old values never read), C += A B when acc; M, N, K >= 1 */
typedef void wg_gemm_s8_nn_fn(int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                              int64_t ldb, int32_t *C, int64_t ldc, bool acc);
typedef size_t wg_gemm_s8_scratch_fn(int64_t M, int64_t N, int nparts);
typedef void wg_gemm_s8_gather_fn(int64_t M, int64_t K, int nparts, const int8_t *const *A, int64_t lda,
                                  const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int32_t *C,
                                  int64_t ldc, void *scratch);

/* conv_s1 (gemm.h); with x2, the pair: y = conv(x) 2^s + conv(x2) 2^s2 */
typedef bool wg_gemm_s8_conv_fn(int64_t nimg, int64_t h, int64_t w, int64_t c, int64_t o, int64_t kh, int64_t kw,
                                int64_t pad, const int8_t *x, const int8_t *x2, int s, int s2, const int8_t *wt,
                                int32_t *y);

typedef struct wg_gemm_kernels {
    wg_gemm_s8_fn *nt, *tn;
    wg_gemm_s8_nn_fn *nn;
    wg_gemm_s8_scratch_fn *tn_gather_scratch;
    wg_gemm_s8_gather_fn *tn_gather;
    wg_gemm_s8_conv_fn *conv_s1; /* optional (NULL): gemm.h's wg_gemm_s8_conv_s1 and _pair */
} wg_gemm_kernels;

/* What the kernel files share. */

/* Below 2^18 multiply-adds (about a microsecond), threads cost more than they save. */
static inline bool wg_gemm_worth_threads(int64_t M, int64_t N, int64_t K)
{
    return (double)M * (double)N * (double)K >= 262144.0;
}

/* nbytes at a 64-byte boundary, with 64 bytes of slack past them for whole-vector
 * reads; running out of memory stops the program (an internal error: check.h). */
void *wg_gemm_alloc64(size_t nbytes);

/* In a parallel region, after the threads' products: a barrier, then thread t of T adds
 * the partial products of threads 1 .. T - 1 (M x N int32 at buf + u per + off, ldp
 * apart; thread 0's went into C itself) into its share of C's rows, modulo 2^32. */
void wg_gemm_add_partials(int32_t *C, int64_t ldc, int64_t M, int64_t N, const char *buf, size_t per, size_t off,
                          int64_t ldp);

#ifdef _OPENMP
#include <omp.h>
#else /* a build without OpenMP runs everything on one thread */
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* tn's threads over its chunks of K and their scratch, for the sets that give each
 * thread bufs bytes of packing buffers and a partial copy of C (M x np int32, added up
 * by wg_gemm_add_partials): returns the threads (at most one per chunk), *per the bytes
 * of each, *buf (wg_gemm_alloc64, nth * per bytes; the caller frees it). */
static inline int wg_gemm_tn_scratch(int64_t M, int64_t N, int64_t K, int64_t chunks, int64_t np, size_t bufs,
                                     size_t *per, char **buf)
{
    int nth = wg_gemm_worth_threads(M, N, K) ? omp_get_max_threads() : 1;
    if (nth > chunks) nth = (int)chunks;
    *per = (bufs + 63) / 64 * 64 + ((size_t)(M * np) * sizeof(int32_t) + 63) / 64 * 64;
    *buf = wg_gemm_alloc64(*per * (size_t)nth);
    return nth;
}

extern const wg_gemm_kernels wg_gemm_scalar;
#if WG_GEMM_X86
extern const wg_gemm_kernels wg_gemm_avx2;
extern const wg_gemm_kernels wg_gemm_vnni;
extern const wg_gemm_kernels wg_gemm_amx;
/* The processor has AMX-INT8 and the kernel lets this process use the tiles (asked once). */
bool wg_gemm_amx_available(void);
/* The VNNI set's packing, shared with the AMX set: rows k < kr of src[k][n] (n < N) ->
 * dst[ceil(kr / 4)][stride][4], zero padded, flipped (XOR 0x80) when flip, colsum[n] +=
 * the column sums when not NULL; and gathered rows likewise (gemm_vnni.c). */
void wg_gemm_vnni_pack_rows(const int8_t *src, int64_t ld, int64_t kr, int64_t N, int8_t *dst, int64_t stride,
                            bool flip, int32_t *colsum);
void wg_gemm_vnni_pack_gather(const int8_t *const *brow, int nruns, int64_t run, int64_t run_ld, int64_t kr,
                              bool spread16, uint8_t flip, int8_t *bp, int64_t np);
/* The VNNI set's backward-weight products, shared with the AMX set. */
wg_gemm_s8_fn wg_gemm_vnni_tn;
wg_gemm_s8_scratch_fn wg_gemm_vnni_tn_gather_scratch;
wg_gemm_s8_gather_fn wg_gemm_vnni_tn_gather;
#endif

#endif
