/* backend_cpu.c: the CPU reference backend.
 *
 * Memory is plain host memory (64-byte aligned, for the vector kernels of later
 * issues). The ops are straightforward loops over the shared per-element formulas
 * (wg_intmath.h, wg_quant_elem.h, wg_philox.h): this backend is the reference every
 * other one is compared with, bit for bit. The containers of the training step also
 * take typed loops that gcc vectorizes ("typed fast paths" below); each is shown there
 * to compute the shared formula's integer, and tested against exact references. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "gemm.h"
#include "wg_par.h"
#include "wg_intmath.h"
#include "cpu_rne.h"
#include "wg_philox.h"
#include "wg_quant_elem.h"

enum { WG_CPU_ALIGN = 64 };

static void *cpu_alloc(void *ctx, size_t nbytes)
{
    (void)ctx;
    size_t rounded = (nbytes + WG_CPU_ALIGN - 1) / WG_CPU_ALIGN * WG_CPU_ALIGN;
    return aligned_alloc(WG_CPU_ALIGN, rounded ? rounded : WG_CPU_ALIGN);
}

static void cpu_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static void cpu_copy(void *ctx, void *dst, const void *src, size_t nbytes)
{
    (void)ctx;
    memcpy(dst, src, nbytes);
}

static void cpu_zero(void *ctx, void *dst, size_t nbytes)
{
    (void)ctx;
    memset(dst, 0, nbytes);
}

/* The loops work on chunks widened to int64: the container switch is taken once per
 * chunk, not per element, and the typed load/store loops vectorize. */
enum { WG_CPU_CHUNK = 1024 };

static void load_chunk(const wg_tensor *t, int64_t i0, int64_t n, int64_t *buf)
{
    switch (t->dtype) {
    case WG_I8: for (int64_t i = 0; i < n; i++) buf[i] = ((const int8_t *)t->data)[i0 + i]; break;
    case WG_I16: for (int64_t i = 0; i < n; i++) buf[i] = ((const int16_t *)t->data)[i0 + i]; break;
    case WG_I32: for (int64_t i = 0; i < n; i++) buf[i] = ((const int32_t *)t->data)[i0 + i]; break;
    case WG_I64: memcpy(buf, (const int64_t *)t->data + i0, (size_t)n * sizeof(int64_t)); break;
    default: WG_DIE("the CPU backend's integer ops got a %s tensor", wg_dtype_name(t->dtype));
    }
}

/* Values in buf are already clamped to the container's bound. */
static void store_chunk(wg_tensor *t, int64_t i0, int64_t n, const int64_t *buf)
{
    switch (t->dtype) {
    case WG_I8: for (int64_t i = 0; i < n; i++) ((int8_t *)t->data)[i0 + i] = (int8_t)buf[i]; break;
    case WG_I16: for (int64_t i = 0; i < n; i++) ((int16_t *)t->data)[i0 + i] = (int16_t)buf[i]; break;
    case WG_I32: for (int64_t i = 0; i < n; i++) ((int32_t *)t->data)[i0 + i] = (int32_t)buf[i]; break;
    case WG_I64: memcpy((int64_t *)t->data + i0, buf, (size_t)n * sizeof(int64_t)); break;
    default: WG_DIE("the CPU backend's integer ops got a %s tensor", wg_dtype_name(t->dtype));
    }
}

/* A parallel loop over the chunks of n elements: chunk i0 has len elements. Each
 * chunk is independent (elementwise ops; the Philox blocks of four never straddle
 * chunks), so the thread split cannot change a result. Scratch buffers are declared
 * inside the body, one per chunk. */
#define WG_FOR_CHUNKS(i0, len, n)                                                   \
    _Pragma("omp parallel for schedule(static) if (n >= WG_PAR_MIN)")               \
    for (int64_t i0 = 0; i0 < (n); i0 += WG_CPU_CHUNK)                              \
        for (int64_t len = (n) - i0 < WG_CPU_CHUNK ? (n) - i0 : WG_CPU_CHUNK, once_ = 1; once_; once_ = 0)

/* ---- typed fast paths --------------------------------------------------------------
 * The chunked loops above serve every container through int64 buffers. The pairs the
 * trainer meets on every step (int32 and int64 in; int8, int16, int32 out) also get
 * loops of their own, plain loops over the typed arrays without calls or branches, which
 * gcc vectorizes. Each computes the shared formula's integer for every input; the
 * comments say why, and tests/test_quant.c checks them against the reference on
 * tensors large enough to be split across threads. */

/* dst[i0 + i] = (container of dst) EXPR for i in 0..len-1, EXPR in terms of i; one loop
 * per output container (int8, int16, int32, int64). */
#define WG_TYPED_STORE(dst, i0, len, EXPR)                                                         \
    do {                                                                                           \
        switch ((dst)->dtype) {                                                                    \
        case WG_I8: {                                                                              \
            int8_t *y_ = (int8_t *)(dst)->data + (i0);                                             \
            for (int64_t i = 0; i < (len); i++) y_[i] = (int8_t)(EXPR);                            \
        } break;                                                                                   \
        case WG_I16: {                                                                             \
            int16_t *y_ = (int16_t *)(dst)->data + (i0);                                           \
            for (int64_t i = 0; i < (len); i++) y_[i] = (int16_t)(EXPR);                           \
        } break;                                                                                   \
        case WG_I32: {                                                                             \
            int32_t *y_ = (int32_t *)(dst)->data + (i0);                                           \
            for (int64_t i = 0; i < (len); i++) y_[i] = (int32_t)(EXPR);                           \
        } break;                                                                                   \
        default: {                                                                                 \
            int64_t *y_ = (int64_t *)(dst)->data + (i0);                                           \
            for (int64_t i = 0; i < (len); i++) y_[i] = (EXPR);                                    \
        } break;                                                                                   \
        }                                                                                          \
    } while (0)

/* Which typed loop of round_shift serves (source container, shift, bound); none: the
 * chunks. */
typedef enum rs_path { RS_CHUNKS, RS_S32_RIGHT, RS_S32_LEFT, RS_S64_RIGHT } rs_path;

static rs_path round_shift_path(const wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    if (dst->dtype == WG_F32) return RS_CHUNKS; /* not an integer op: the chunks name the error */
    if (src->dtype == WG_I32 && ((shift >= 1 && shift <= 31) || (shift == 0 && bound <= INT32_MAX)))
        return RS_S32_RIGHT;
    if (src->dtype == WG_I32 && shift <= 0 && shift >= -31) return RS_S32_LEFT;
    if (src->dtype == WG_I64 && shift >= 0 && shift <= 63) return RS_S64_RIGHT;
    return RS_CHUNKS;
}

/* Elements i0 .. i0+len-1 of round_shift on a typed path:
 *   int32 right (1..31, or 0 with bound <= INT32_MAX): rne32, then the clamp at
 *       min(bound, INT32_MAX), which equals the clamp at bound: the rounded value is at
 *       most 2^30 in magnitude for a shift >= 1, and for 0 the bound is that minimum;
 *   int32 left (-31..0, 0 with a bound beyond int32): x * 2^-shift is exact in int64
 *       (at most 2^62 in magnitude), where wg_shl_sat does not saturate, then the clamp;
 *   int64 right (0..63): rne64, then the clamp. */
static void round_shift_typed(rs_path path, wg_tensor *dst, const wg_tensor *src, int64_t i0, int64_t len, int shift,
                              int64_t bound)
{
    if (path == RS_S32_RIGHT) {
        const int32_t *x = (const int32_t *)src->data + i0;
        rne32_k k = rne32_init(shift);
        int32_t b32 = bound < INT32_MAX ? (int32_t)bound : INT32_MAX;
        WG_TYPED_STORE(dst, i0, len, clamp32(rne32(x[i], k), b32));
    } else if (path == RS_S32_LEFT) {
        const int32_t *x = (const int32_t *)src->data + i0;
        int64_t scale = INT64_C(1) << -shift;
        WG_TYPED_STORE(dst, i0, len, clamp64((int64_t)x[i] * scale, bound));
    } else {
        const int64_t *x = (const int64_t *)src->data + i0;
        rne64_k k = rne64_init(shift);
        WG_TYPED_STORE(dst, i0, len, clamp64(rne64(x[i], k), bound));
    }
}

/* E2's flag split of an int64 x with 0 <= shift_fine = shift_coarse - (bits - 1) and
 * shift_coarse <= 63 (wg_flag_split): f = RNE(x / 2^shift_fine), c = the clamped
 * RNE(x / 2^shift_coarse); the element is fine (f, 0) iff |f| <= bound, else coarse
 * (0, c). Why that is wg_flag_split: for |x| < 2^shift_coarse the shared formula keeps
 * f when it fits and otherwise (|f| = 2^(bits-1), so |x| is at least 2^(bits-1) - 1/2
 * fine units, 3/4 of a coarse unit or more) takes sign(x), which is then c: x over the
 * coarse grid lies in [3/4, 1) in magnitude and rounds to +-1. For |x| >=
 * 2^shift_coarse it takes c, and there |x| / 2^shift_fine >= 2^(bits-1), so
 * |f| >= 2^(bits-1) > bound: the test picks c. */
static bool flag_typed_ok(const wg_tensor *coarse, const wg_tensor *fine, const wg_tensor *src, int shift_coarse,
                          int bits)
{
    return src->dtype == WG_I64 && coarse->dtype == WG_I8 && fine->dtype == WG_I8 && bits >= 2 && bits <= 8 &&
           shift_coarse - (bits - 1) >= 0 && shift_coarse <= 63;
}

static void flag_split_s64_s8(int8_t *coarse, int8_t *fine, const int64_t *x, int64_t len, int shift_coarse,
                              int bits)
{
    rne64_k kc = rne64_init(shift_coarse), kf = rne64_init(shift_coarse - (bits - 1));
    int64_t bound = wg_bound_bits(bits);
    for (int64_t i = 0; i < len; i++) {
        int64_t f = rne64(x[i], kf), c = clamp64(rne64(x[i], kc), bound);
        bool is_fine = f >= -bound && f <= bound;
        coarse[i] = (int8_t)(is_fine ? 0 : c);
        fine[i] = (int8_t)(is_fine ? f : 0);
    }
}

/* max |x| of a typed array (wg_abs_u64 widened per element: INT64_MIN is exact). */
#define WG_MAX_ABS_LOOP(T, data, i0, len, m)                                                       \
    do {                                                                                           \
        const T *x_ = (const T *)(data) + (i0);                                                    \
        for (int64_t i = 0; i < (len); i++) {                                                      \
            uint64_t a_ = wg_abs_u64(x_[i]);                                                       \
            (m) = a_ > (m) ? a_ : (m);                                                             \
        }                                                                                          \
    } while (0)

/* ---- the ops ------------------------------------------------------------------------ */

static uint64_t cpu_max_abs(void *ctx, const wg_tensor *x)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(x);
    uint64_t m = 0;
    /* an integer maximum: the same whatever the split */
#pragma omp parallel for reduction(max : m) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += WG_CPU_CHUNK) {
        int64_t len = n - i0 < WG_CPU_CHUNK ? n - i0 : WG_CPU_CHUNK;
        switch (x->dtype) {
        case WG_I8: WG_MAX_ABS_LOOP(int8_t, x->data, i0, len, m); break;
        case WG_I16: WG_MAX_ABS_LOOP(int16_t, x->data, i0, len, m); break;
        case WG_I32: WG_MAX_ABS_LOOP(int32_t, x->data, i0, len, m); break;
        case WG_I64: WG_MAX_ABS_LOOP(int64_t, x->data, i0, len, m); break;
        default: WG_DIE("the CPU backend's integer ops got a %s tensor", wg_dtype_name(x->dtype));
        }
    }
    return m;
}

static void cpu_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    rs_path path = round_shift_path(dst, src, shift, bound);
    WG_FOR_CHUNKS(i0, len, n)
    {
        if (path != RS_CHUNKS) {
            round_shift_typed(path, dst, src, i0, len, shift, bound);
        } else {
            int64_t buf[WG_CPU_CHUNK];
            load_chunk(src, i0, len, buf);
            for (int64_t i = 0; i < len; i++) buf[i] = wg_round_shift_clamp(buf[i], shift, bound);
            store_chunk(dst, i0, len, buf);
        }
    }
}

static void cpu_flag_split(void *ctx, wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse,
                           int bits)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    bool typed = flag_typed_ok(coarse, fine, src, shift_coarse, bits);
    WG_FOR_CHUNKS(i0, len, n)
    {
        if (typed) {
            flag_split_s64_s8((int8_t *)coarse->data + i0, (int8_t *)fine->data + i0, (const int64_t *)src->data + i0,
                              len, shift_coarse, bits);
        } else {
            int64_t buf[WG_CPU_CHUNK], fbuf[WG_CPU_CHUNK];
            load_chunk(src, i0, len, buf);
            for (int64_t i = 0; i < len; i++) {
                wg_flag_pair p = wg_flag_split(buf[i], shift_coarse, bits);
                buf[i] = p.coarse;
                fbuf[i] = p.fine;
            }
            store_chunk(coarse, i0, len, buf);
            store_chunk(fine, i0, len, fbuf);
        }
    }
}

static void cpu_stochastic_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound,
                                 wg_sr_stream st)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK];
        load_chunk(src, i0, len, buf);
        /* One Philox block serves the four elements 4j .. 4j+3 (wg_philox.h); chunks
         * start at multiples of 4, so blocks never straddle them. */
        for (int64_t b = 0; b < len; b += 4) {
            wg_u32x4 bits = wg_philox4x32_10(wg_philox_counter(st.step, st.tensor_id, (uint64_t)(i0 + b)), st.key);
            for (int64_t i = b; i < b + 4 && i < len; i++)
                buf[i] = wg_grad_elem(buf[i], shift, bound, bits.v[(i0 + i) & 3]);
        }
        store_chunk(dst, i0, len, buf);
    }
}

/* Whether wg_shl_sat(x, n) is the plain shift for every |x| <= bound, with room to spare:
 * bound 2^n <= 2^62, so that a sum or difference of two such terms fits int64 too. The
 * optimizer's steps always meet this (quant.c: tensors of at most 32 bits, shifts of at
 * most 30, products lr_q m below 2^46 shifted by at most 16), so their loops are the
 * shared formulas without the saturation, and vectorize. */
static bool shl_exact(int64_t bound, int n) { return n >= 0 && n <= 62 && (uint64_t)bound <= (UINT64_C(1) << 62) >> n; }

static void cpu_momentum_step(void *ctx, wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(m);
    WG_ASSERT(shl_exact(wg_dtype_bound(m->dtype), s.m_up) && shl_exact(wg_dtype_bound(g->dtype), s.g_up) &&
                  s.out_down >= 0 && s.out_down <= 63,
              "momentum step: shifts %d, %d, %d on %s and %s", s.m_up, s.g_up, s.out_down, wg_dtype_name(m->dtype),
              wg_dtype_name(g->dtype));
    rne64_k k = rne64_init(s.out_down);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK], gbuf[WG_CPU_CHUNK];
        load_chunk(m, i0, len, buf);
        load_chunk(g, i0, len, gbuf);
        for (int64_t i = 0; i < len; i++) { /* wg_momentum_elem; its saturation cannot act */
            int64_t t = (int64_t)((uint64_t)buf[i] << s.m_up) + (int64_t)((uint64_t)gbuf[i] << s.g_up);
            buf[i] = clamp64(rne64(t, k), s.bound);
        }
        store_chunk(m, i0, len, buf);
    }
}

static void cpu_update_step(void *ctx, wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(w);
    int64_t mb = wg_dtype_bound(m->dtype);
    WG_ASSERT(lr_q >= 0 && lr_q <= INT32_MAX && mb <= INT32_MAX && shl_exact(wg_dtype_bound(w->dtype), s.w_up) &&
                  shl_exact(lr_q * mb, s.p_up) && s.out_down >= 0 && s.out_down <= 63,
              "update step: lr %lld, shifts %d, %d, %d on %s and %s", (long long)lr_q, s.w_up, s.p_up, s.out_down,
              wg_dtype_name(w->dtype), wg_dtype_name(m->dtype));
    rne64_k k = rne64_init(s.out_down);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK], mbuf[WG_CPU_CHUNK];
        load_chunk(w, i0, len, buf);
        load_chunk(m, i0, len, mbuf);
        for (int64_t i = 0; i < len; i++) { /* wg_update_elem; its saturation cannot act */
            int64_t p = (int64_t)(int32_t)lr_q * (int32_t)mbuf[i]; /* both int32 (the check above) */
            int64_t t = (int64_t)((uint64_t)buf[i] << s.w_up) - (int64_t)((uint64_t)p << s.p_up);
            buf[i] = clamp64(rne64(t, k), s.bound);
        }
        store_chunk(w, i0, len, buf);
    }
}

static void cpu_gemm_s8_nt(void *ctx, int64_t M, int64_t N, int64_t K, const int8_t *A, int64_t lda, const int8_t *B,
                           int64_t ldb, int32_t *C, int64_t ldc)
{
    (void)ctx;
    wg_gemm_s8_nt(M, N, K, A, lda, B, ldb, C, ldc);
}

static void cpu_weight_decay(void *ctx, wg_tensor *g, const wg_tensor *w, int64_t wd_q, int shift)
{
    (void)ctx;
    WG_ASSERT(g->dtype == WG_I64 && w->dtype == WG_I32 && wg_tensor_numel(g) == wg_tensor_numel(w),
              "weight decay: a %s gradient, %s weights", wg_dtype_name(g->dtype), wg_dtype_name(w->dtype));
    int64_t n = wg_tensor_numel(g), *gd = g->data;
    const int32_t *wd = w->data;
    for (int64_t i = 0; i < n; i++) gd[i] = wg_weight_decay_elem(gd[i], wd[i], wd_q, shift);
}

static const struct wg_backend_i wg_backend_cpu_iface = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .synchronize = NULL, /* everything runs synchronously */
    .free_ctx = NULL, /* no context */
    .max_abs = cpu_max_abs,
    .round_shift = cpu_round_shift,
    .flag_split = cpu_flag_split,
    .stochastic_shift = cpu_stochastic_shift,
    .momentum_step = cpu_momentum_step,
    .update_step = cpu_update_step,
    .weight_decay = cpu_weight_decay,
    .shift_sum = wg_cpu_shift_sum,
    .accumulate = wg_cpu_accumulate,
    .gap_s8_forward = wg_cpu_gap_s8_forward,
    .gap_s8_backward = wg_cpu_gap_s8_backward,
    .relu_round_shift = wg_cpu_relu_round_shift,
    .relu_mask = wg_cpu_relu_mask,
    .gemm_s8_nt = cpu_gemm_s8_nt,
    .conv_s8_forward = wg_cpu_conv_s8_forward,
    .bn_sums = wg_cpu_bn_sums,
    .bn_normalize = wg_cpu_bn_normalize,
    .bn_bwd_sums = wg_cpu_bn_bwd_sums,
    .bn_bwd_dx = wg_cpu_bn_bwd_dx,
    .bn_relu_mask = wg_cpu_bn_relu_mask,
    .conv_s8_backward = wg_cpu_conv_s8_backward,
    .maxpool_forward = wg_cpu_maxpool_forward,
    .maxpool_backward = wg_cpu_maxpool_backward,
    .conv_f32_forward = wg_cpu_conv_f32_forward,
    .conv_f32_backward = wg_cpu_conv_f32_backward,
    .bn_f32_moments = wg_cpu_bn_f32_moments,
    .bn_f32_normalize = wg_cpu_bn_f32_normalize,
    .bn_f32_bwd_sums = wg_cpu_bn_f32_bwd_sums,
    .bn_f32_bwd_dx = wg_cpu_bn_f32_bwd_dx,
    .relu_f32 = wg_cpu_relu_f32,
    .add_f32 = wg_cpu_add_f32,
    .gap_f32_forward = wg_cpu_gap_f32_forward,
    .gap_f32_backward = wg_cpu_gap_f32_backward,
    .sgd_f32_step = wg_cpu_sgd_f32_step,
    .fixed_to_f32 = wg_cpu_fixed_to_f32,
    .f32_max_abs = wg_cpu_f32_max_abs,
    .f32_to_fixed = wg_cpu_f32_to_fixed,
};

wg_backend *wg_backend_cpu_init(void)
{
    wg_backend *b = calloc(1, sizeof(*b));
    WG_ASSERT(b != NULL, "out of host memory for the CPU backend");
    b->iface = &wg_backend_cpu_iface;
    b->ctx = NULL;
    return b;
}

/* The renamed copy's context is its own vtable, freed with it. */
static void cpu_generic_free_ctx(void *ctx) { free(ctx); }

wg_backend *wg_backend_cpu_generic_init(void)
{
    struct wg_backend_i *iface = malloc(sizeof(*iface));
    wg_backend *b = calloc(1, sizeof(*b));
    WG_ASSERT(iface != NULL && b != NULL, "out of host memory for the CPU backend");
    *iface = wg_backend_cpu_iface;
    iface->name = "cpu-generic";
    iface->free_ctx = cpu_generic_free_ctx;
    b->iface = iface;
    b->ctx = iface;
    return b;
}
