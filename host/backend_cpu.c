/* backend_cpu.c: the CPU reference backend.
 *
 * Memory is plain host memory (64-byte aligned, for the vector kernels of later
 * issues). The ops are straightforward loops over the shared per-element formulas
 * (wg_intmath.h, wg_quant_elem.h, wg_philox.h): this backend is the reference every
 * other one is compared with, bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "wg_par.h"
#include "wg_intmath.h"
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

static uint64_t cpu_max_abs(void *ctx, const wg_tensor *x)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(x);
    uint64_t m = 0;
    /* an integer maximum: the same whatever the split */
#pragma omp parallel for reduction(max : m) schedule(static) if (n >= WG_PAR_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += WG_CPU_CHUNK) {
        int64_t buf[WG_CPU_CHUNK], len = n - i0 < WG_CPU_CHUNK ? n - i0 : WG_CPU_CHUNK;
        load_chunk(x, i0, len, buf);
        for (int64_t i = 0; i < len; i++) {
            uint64_t a = wg_abs_u64(buf[i]);
            m = a > m ? a : m;
        }
    }
    return m;
}

static void cpu_round_shift(void *ctx, wg_tensor *dst, const wg_tensor *src, int shift, int64_t bound)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK];
        load_chunk(src, i0, len, buf);
        for (int64_t i = 0; i < len; i++) buf[i] = wg_round_shift_clamp(buf[i], shift, bound);
        store_chunk(dst, i0, len, buf);
    }
}

static void cpu_flag_split(void *ctx, wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int shift_coarse,
                           int bits)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(src);
    WG_FOR_CHUNKS(i0, len, n)
    {
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

static void cpu_momentum_step(void *ctx, wg_tensor *m, const wg_tensor *g, wg_momentum_shifts s)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(m);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK], gbuf[WG_CPU_CHUNK];
        load_chunk(m, i0, len, buf);
        load_chunk(g, i0, len, gbuf);
        for (int64_t i = 0; i < len; i++)
            buf[i] = wg_momentum_elem(buf[i], gbuf[i], s.m_up, s.g_up, s.out_down, s.bound);
        store_chunk(m, i0, len, buf);
    }
}

static void cpu_update_step(void *ctx, wg_tensor *w, const wg_tensor *m, int64_t lr_q, wg_update_shifts s)
{
    (void)ctx;
    int64_t n = wg_tensor_numel(w);
    WG_FOR_CHUNKS(i0, len, n)
    {
        int64_t buf[WG_CPU_CHUNK], mbuf[WG_CPU_CHUNK];
        load_chunk(w, i0, len, buf);
        load_chunk(m, i0, len, mbuf);
        for (int64_t i = 0; i < len; i++)
            buf[i] = wg_update_elem(buf[i], mbuf[i], lr_q, s.w_up, s.p_up, s.out_down, s.bound);
        store_chunk(w, i0, len, buf);
    }
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
};

wg_backend *wg_backend_cpu_init(void)
{
    wg_backend *b = malloc(sizeof(*b));
    WG_ASSERT(b != NULL, "out of host memory for the CPU backend");
    b->iface = &wg_backend_cpu_iface;
    b->ctx = NULL;
    return b;
}
