/* quant.c: the WAGEUBN quantizers over tensors (quant.h; docs/numerics.md).
 *
 * Each quantizer makes its per-tensor decision here, on the host, from integers
 * only: the max-abs (a backend reduction), the exponent of Shift(max-abs)
 * (wg_npow2_exp), the output exponent and the shift. The elementwise pass is then a
 * backend op over the shared formulas, so every backend computes the same bits.
 *
 * Exponent bookkeeping: a tensor (q, e) holds q * 2^e. Writing it on the grid 2^e'
 * is a shift of q by s = e' - e (right for s > 0, rounded; left for s < 0, exact). */
#include "quant.h"

#include <math.h>

#include "backend.h"
#include "check.h"
#include "wg_intmath.h"

/* Exponents beyond this are a bug upstream, and keep every shift well inside int. */
enum { WG_EXP_LIMIT = 1 << 20 };

wg_quant_bits wg_quant_bits_reference(void)
{
    wg_quant_bits b = {
        .w = 8, .a = 8, .u = 24, .e1 = 8, .e2 = 8, .g_scale_log2 = 7, .gc = 15, .bn_grad = 15,
        .bn_stat = 16, .xhat = 8, .gamma_beta = 8, .momentum = 13, .momentum_shift = 2, .lr = 10,
    };
    return b;
}

static void check_int_tensor(const wg_tensor *t, const char *what)
{
    WG_ASSERT(t->data != NULL, "%s is an empty tensor", what);
    WG_ASSERT(wg_dtype_is_int(t->dtype), "%s must be an integer tensor, not %s", what, wg_dtype_name(t->dtype));
    WG_ASSERT(t->exp > -WG_EXP_LIMIT && t->exp < WG_EXP_LIMIT, "%s has exponent %d", what, t->exp);
}

/* dst receives src's elements: same backend, same count. */
static void check_pair(const wg_tensor *dst, const wg_tensor *src)
{
    check_int_tensor(dst, "the output");
    check_int_tensor(src, "the input");
    WG_ASSERT(dst->backend == src->backend, "input on %s, output on %s", wg_backend_name(src->backend),
              wg_backend_name(dst->backend));
    WG_ASSERT(wg_tensor_numel(dst) == wg_tensor_numel(src), "input has %lld elements, output %lld",
              (long long)wg_tensor_numel(src), (long long)wg_tensor_numel(dst));
}

static void check_bits(int bits, const char *what)
{
    WG_ASSERT(bits >= 2 && bits <= 32, "%s: %d bits (expected 2..32)", what, bits);
}

/* A container must hold the quantizer's clamp bound. */
static void check_holds(const wg_tensor *t, int64_t bound, const char *what)
{
    WG_ASSERT(bound <= wg_dtype_bound(t->dtype), "%s: a %s container cannot hold +-%lld", what,
              wg_dtype_name(t->dtype), (long long)bound);
}

/* Over the whole batch where it is split over ranks (backend.h's wg_batch_sync). */
static uint64_t max_abs(const wg_tensor *x)
{
    return wg_backend_sync_max(x->backend, WG_BACKEND_OP(x, max_abs)(x->backend->ctx, x));
}

/* The caller's max-abs, or the backend's when it has none. */
static uint64_t known_max_abs(const wg_tensor *x, uint64_t known)
{
    return known == WG_QUANT_MAX_UNKNOWN ? max_abs(x) : known;
}

/* ---- per-tensor decisions (wg_quant_plan: the shift, the clamp bound, the output's
 * exponent; E2's are the coarse part's) ---------------------------------------------- */

wg_quant_plan wg_quant_fit_plan(int src_exp, int e_min, int64_t bound, uint64_t max_abs)
{
    WG_ASSERT(e_min > -WG_EXP_LIMIT && e_min < WG_EXP_LIMIT, "fit quantization: floor exponent %d", e_min);
    int shift = wg_fit_shift(max_abs, e_min - src_exp, bound);
    return (wg_quant_plan){shift, bound, src_exp + shift};
}

wg_quant_plan wg_quant_shift_plan(int src_exp, int bits, uint64_t max_abs)
{
    check_bits(bits, "shift quantization (E1)");
    /* s = Shift(max) = 2^p input units; x / s on the grid 2^-(bits-1) is a shift by p - (bits-1). */
    int shift = wg_npow2_exp(max_abs) - (bits - 1);
    return (wg_quant_plan){shift, wg_bound_bits(bits), src_exp + shift};
}

wg_quant_plan wg_quant_flag_plan(int src_exp, int bits, uint64_t max_abs)
{
    check_bits(bits, "flag quantization (E2)");
    /* The coarse grid is Shift(max) / 2^(bits-1): z = x / 2^shift_coarse. */
    int shift = wg_npow2_exp(max_abs) - (bits - 1);
    return (wg_quant_plan){shift, wg_bound_bits(bits), src_exp + shift};
}

/* ---- the quantizers ---------------------------------------------------------------- */

void wg_quant_direct(wg_tensor *dst, const wg_tensor *src, int bits, bool clip)
{
    check_pair(dst, src);
    check_bits(bits, "direct quantization");
    int64_t bound = clip ? wg_bound_bits(bits) : wg_dtype_bound(dst->dtype);
    check_holds(dst, bound, "direct quantization");
    int e_out = -(bits - 1);
    WG_BACKEND_OP(dst, round_shift)(dst->backend->ctx, dst, src, e_out - src->exp, bound);
    dst->exp = e_out;
}

void wg_quant_fit_exp(wg_tensor *dst, const wg_tensor *src, int e_min)
{
    wg_quant_fit_exp_max(dst, src, e_min, WG_QUANT_MAX_UNKNOWN);
}

void wg_quant_fit_exp_max(wg_tensor *dst, const wg_tensor *src, int e_min, uint64_t known_max)
{
    check_pair(dst, src);
    wg_quant_plan p = wg_quant_fit_plan(src->exp, e_min, wg_dtype_bound(dst->dtype), known_max_abs(src, known_max));
    WG_BACKEND_OP(dst, round_shift)(dst->backend->ctx, dst, src, p.shift, p.bound);
    dst->exp = p.exp;
}

void wg_quant_fit(wg_tensor *dst, const wg_tensor *src, int bits)
{
    check_bits(bits, "fit quantization");
    wg_quant_fit_exp(dst, src, -(bits - 1));
}

void wg_quant_shift(wg_tensor *dst, const wg_tensor *src, int bits)
{
    wg_quant_shift_max(dst, src, bits, WG_QUANT_MAX_UNKNOWN);
}

void wg_quant_shift_max(wg_tensor *dst, const wg_tensor *src, int bits, uint64_t known_max)
{
    check_pair(dst, src);
    check_bits(bits, "shift quantization (E1)");
    check_holds(dst, wg_bound_bits(bits), "shift quantization (E1)");
    wg_quant_plan p = wg_quant_shift_plan(src->exp, bits, known_max_abs(src, known_max));
    WG_BACKEND_OP(dst, round_shift)(dst->backend->ctx, dst, src, p.shift, p.bound);
    dst->exp = p.exp;
}

void wg_quant_flag(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int bits)
{
    wg_quant_flag_max(coarse, fine, src, bits, WG_QUANT_MAX_UNKNOWN);
}

void wg_quant_flag_max(wg_tensor *coarse, wg_tensor *fine, const wg_tensor *src, int bits, uint64_t known_max)
{
    check_pair(coarse, src);
    check_pair(fine, src);
    check_bits(bits, "flag quantization (E2)");
    check_holds(coarse, wg_bound_bits(bits), "flag quantization (E2), coarse part");
    check_holds(fine, wg_bound_bits(bits), "flag quantization (E2), fine part");
    wg_quant_plan p = wg_quant_flag_plan(src->exp, bits, known_max_abs(src, known_max));
    WG_BACKEND_OP(src, flag_split)(src->backend->ctx, coarse, fine, src, p.shift, bits);
    coarse->exp = p.exp;
    fine->exp = p.exp - (bits - 1);
}

void wg_quant_grad(wg_tensor *dst, const wg_tensor *src, const wg_grad_quant_args *a)
{
    check_pair(dst, src);
    check_bits(a->gc, "gradient quantization (G), grid");
    WG_ASSERT(a->g_scale_log2 >= 1 && a->g_scale_log2 <= 31, "g_scale = 2^%d (expected 2^1..2^31)",
              a->g_scale_log2);
    int64_t bound = (INT64_C(1) << a->g_scale_log2) - 1;
    check_holds(dst, bound, "gradient quantization (G)");
    /* n = SR(g_scale * x / Shift(max)): x / 2^p * 2^g_scale_log2 is a shift by p - g_scale_log2. */
    int shift = wg_npow2_exp(max_abs(src)) - a->g_scale_log2;
    wg_sr_stream stream = {wg_philox_key_from_seed(a->seed), a->step, a->tensor_id};
    WG_BACKEND_OP(dst, stochastic_shift)(dst->backend->ctx, dst, src, shift, bound, stream);
    dst->exp = -(a->gc - 1); /* the magnitude of the raw gradient is discarded (wageubn.md, G) */
}

/* Bounds that keep the momentum and update sums inside int64 (wg_quant_elem.h). */
enum { WG_MAX_UP_SHIFT = 30, WG_MAX_LR_BITS = 16 };

void wg_quant_momentum(wg_tensor *m, const wg_tensor *g, int bits, int momentum_shift)
{
    check_pair(m, g);
    check_bits(bits, "momentum quantization");
    WG_ASSERT(m->exp == -(bits - 1), "momentum has exponent %d, expected %d", m->exp, -(bits - 1));
    WG_ASSERT(momentum_shift >= 0 && momentum_shift <= WG_MAX_UP_SHIFT, "momentum shift %d", momentum_shift);
    WG_ASSERT(m->dtype <= WG_I32 && g->dtype <= WG_I32, "momentum and gradient must be at most 32-bit");
    int e_scaled = m->exp - momentum_shift; /* m * 2^-shift is the integer m on this exponent */
    int e_t = e_scaled < g->exp ? e_scaled : g->exp;
    wg_momentum_shifts s = {
        .m_up = e_scaled - e_t, .g_up = g->exp - e_t, .out_down = m->exp - e_t, .bound = wg_dtype_bound(m->dtype),
    };
    WG_ASSERT(s.m_up <= WG_MAX_UP_SHIFT && s.g_up <= WG_MAX_UP_SHIFT, "momentum exponents %d and %d are too far apart",
              m->exp, g->exp);
    WG_BACKEND_OP(m, momentum_step)(m->backend->ctx, m, g, s);
}

wg_lr wg_quant_lr(double lr, int bits)
{
    check_bits(bits, "learning-rate quantization");
    WG_ASSERT(bits <= WG_MAX_LR_BITS, "learning rate: %d bits (at most %d)", bits, WG_MAX_LR_BITS);
    WG_ASSERT(isfinite(lr) && lr >= 0, "learning rate %g", lr);
    /* lr * 2^(bits-1) is exact in double; nearbyint rounds half to even (the default
     * rounding mode, which wageubn never changes). */
    double q = nearbyint(ldexp(lr, bits - 1));
    double bound = (double)wg_bound_bits(bits);
    wg_lr r = {(int32_t)(q > bound ? bound : q), -(bits - 1)};
    return r;
}

void wg_quant_update(wg_tensor *w, const wg_tensor *m, wg_lr lr, int bits_u)
{
    check_pair(w, m);
    check_bits(bits_u, "master-weight quantization");
    WG_ASSERT(w->exp == -(bits_u - 1), "master weights have exponent %d, expected %d", w->exp, -(bits_u - 1));
    WG_ASSERT(lr.q >= 0 && lr.q < (1 << (WG_MAX_LR_BITS - 1)), "learning rate q = %d", (int)lr.q);
    WG_ASSERT(w->dtype <= WG_I32 && m->dtype <= WG_I32, "master weights and momentum must be at most 32-bit");
    int e_p = lr.exp + m->exp; /* exponent of the product lr * m */
    int e_t = w->exp < e_p ? w->exp : e_p;
    wg_update_shifts s = {
        .w_up = w->exp - e_t, .p_up = e_p - e_t, .out_down = w->exp - e_t, .bound = wg_dtype_bound(w->dtype),
    };
    WG_ASSERT(s.w_up <= WG_MAX_UP_SHIFT && s.p_up <= WG_MAX_LR_BITS, "update exponents %d and %d are too far apart",
              w->exp, e_p);
    WG_BACKEND_OP(w, update_step)(w->backend->ctx, w, m, lr.q, s);
}
