/* test_quant.c: the tensor-level quantizers of quant.h on the CPU backend, element
 * by element against wageubn.md's formulas evaluated in value space (long double:
 * every q * 2^e of these tests is exact there; see test_ref.h). Each check compares
 * the output values q_out * 2^exp_out with the reference value and the output
 * exponent with the documented rule. */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid: one test checks for an internal-error abort */

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/wait.h>
#include <unistd.h>

#include <omp.h>

#include "backend.h"
#include "cpu_rne.h"
#include "quant.h"
#include "tensor.h"
#include "wg_par.h"

#include "test_ref.h"

#define N_CASES 600

/* One quantizer of a hand-made input against hand-derived integers and exponent. G
 * uses g_scale 2^7, gc 15 and a fixed stream. */
typedef enum hand_op { OP_DIRECT, OP_DIRECT_CLIP, OP_FIT, OP_GRAD } hand_op;
static void hand_unary(wg_backend *b, hand_op op, wg_dtype dt, const int64_t *q, int64_t n, int e_in, wg_dtype dto,
                       int bits, const int64_t *want, int e_want, const char *what)
{
    tr_src c = tr_src_hand(dt, q, n, e_in);
    wg_tensor src = tr_src_tensor(b, NULL, &c), dst = tr_tensor_out(b, dto, n);
    wg_grad_quant_args a = {.g_scale_log2 = 7, .gc = 15, .seed = 7, .step = 1, .tensor_id = 1};
    if (op == OP_DIRECT || op == OP_DIRECT_CLIP) wg_quant_direct(&dst, &src, bits, op == OP_DIRECT_CLIP);
    else if (op == OP_FIT) wg_quant_fit(&dst, &src, bits);
    else wg_quant_grad(&dst, &src, &a);
    tr_expect_q(&dst, want, n, e_want, what);
    wg_tensor_free(&dst);
    tr_src_release(&src, &c, what);
}

/* Exponent of Shift(max-abs) in input units; an all-zero tensor counts as one unit. */
static int shift_exp(const tr_src *c)
{
    uint64_t m = ref_max_abs(c->q, c->n);
    return m == 0 ? 0 : ref_npow2(m);
}

/* ---- direct: Q(x, bits), clamped to +-(2^(bits-1)-1) units (clip) or the container ---- */

static void check_direct(wg_backend *b, tr_rng *r, tr_src *c, wg_dtype dto, int bits, bool clip)
{
    wg_tensor src = tr_src_tensor(b, r, c), dst = tr_tensor_out(b, dto, c->n);
    wg_quant_direct(&dst, &src, bits, clip);
    TR_EXPECT_I64(-(bits - 1), dst.exp, "direct(%s -> %s, bits %d, clip %d): exponent", tr_dt(c->dt), tr_dt(dto), bits,
                  clip);
    int64_t *out = tr_tensor_get(&dst);
    long double bound = (long double)(clip ? ref_bound_bits(bits) : tr_cbound(dto));
    for (int64_t i = 0; i < c->n; i++) {
        long double x = ldexpl(c->q[i], c->exp);
        long double want = ldexpl(ref_clampl(rintl(ldexpl(x, bits - 1)), bound), -(bits - 1));
        TR_EXPECT_LD(want, ldexpl(out[i], dst.exp),
                     "direct(%s -> %s, bits %d, clip %d) of x = %" PRId64 " * 2^%d (element %" PRId64 ")", tr_dt(c->dt),
                     tr_dt(dto), bits, clip, c->q[i], c->exp, i);
    }
    free(out);
    wg_tensor_free(&dst);
    tr_src_release(&src, c, "direct");
}

static void test_direct_random(void **state)
{
    tr_rng r = {41};
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64}, outs[] = {WG_I8, WG_I16, WG_I32};
    for (int k = 0; k < N_CASES; k++) {
        tr_src c = tr_src_random(&r, ins, 4);
        wg_dtype dto = outs[tr_next(&r) % 3];
        bool clip = tr_next(&r) & 1;
        int bits = (int)tr_range(&r, 2, clip ? tr_cbits(dto) : 32); /* clip: the container holds the bound */
        if (k % 4 == 0) bits = 8;
        if (k % 8 == 0) c.exp = -bits; /* half units: every odd q is a tie */
        check_direct(*state, &r, &c, dto, bits, clip);
    }
}

static void test_direct_edges(void **state)
{
    wg_backend *b = *state;
    /* Ties by hand, bits 8 at exponent -8: x * 2^7 = q / 2: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2,
     * 126.5 -> 126, 127.5 -> 128 (clip: 127), 128.5 -> 128 (clip: 127); signs mirror. */
    const int64_t tq[10] = {1, 3, 5, -1, -3, -5, 253, 255, -255, 257};
    const int64_t want_noclip[10] = {0, 2, 2, 0, -2, -2, 126, 128, -128, 128};
    const int64_t want_clip[10] = {0, 2, 2, 0, -2, -2, 126, 127, -127, 127};
    hand_unary(b, OP_DIRECT, WG_I16, tq, 10, -8, WG_I16, 8, want_noclip, -7, "direct ties, no clip");
    hand_unary(b, OP_DIRECT_CLIP, WG_I16, tq, 10, -8, WG_I8, 8, want_clip, -7, "direct ties, clip");
    /* At the bound and one beyond (bits 8, exponent -7: the value is q units): clip keeps
     * +-127 and saturates 128 and 32767 to 127; no clip into int16 keeps them. */
    const int64_t bq[5] = {127, -127, 128, -128, 32767};
    const int64_t bw_clip[5] = {127, -127, 127, -127, 127};
    hand_unary(b, OP_DIRECT_CLIP, WG_I16, bq, 5, -7, WG_I8, 8, bw_clip, -7, "direct at the clip bound");
    hand_unary(b, OP_DIRECT, WG_I16, bq, 5, -7, WG_I16, 8, bq, -7, "direct, no clip, int16 container");
    /* int32 extremes at exponent -31 with bits 32: the value is q units; INT32_MIN saturates
     * to -INT32_MAX (symmetric containers). */
    const int64_t xq[5] = {INT32_MIN, INT32_MAX, -INT32_MAX, 0, -1};
    const int64_t xw[5] = {-INT32_MAX, INT32_MAX, -INT32_MAX, 0, -1};
    hand_unary(b, OP_DIRECT, WG_I32, xq, 5, -31, WG_I32, 32, xw, -31, "direct of int32 extremes");
    tr_src c;
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    for (int d = 0; d < 4; d++) { /* extremes and zeros through the reference, every container */
        const int64_t eq[6] = {-tr_cbound(ins[d]) - 1, tr_cbound(ins[d]), 0, 1, -1,
                               -tr_cbound(ins[d])}; /* INT*_MIN too */
        for (int e = -40; e <= 8; e += 6) {
            c = tr_src_hand(ins[d], eq, 6, e);
            check_direct(b, NULL, &c, WG_I32, 8, false);
            c = tr_src_hand(ins[d], eq, 6, e);
            check_direct(b, NULL, &c, WG_I8, 8, true);
        }
        const int64_t zq[7] = {0, 0, 0, 0, 0, 0, 0}; /* all zero: exponent -(bits-1), all 0 */
        c = tr_src_hand(ins[d], zq, 7, -3);
        check_direct(b, NULL, &c, WG_I16, 12, true);
    }
}

/* ---- fit: the smallest e >= e_min with round(max / 2^e) in the container -------------
 * wg_quant_fit(bits) is e_min = -(bits-1); bits <= 0 calls wg_quant_fit_exp(e_min). */

static void check_fit(wg_backend *b, tr_rng *r, tr_src *c, wg_dtype dto, int bits, int e_min)
{
    if (bits > 0) e_min = -(bits - 1);
    long double M = ldexpl((long double)ref_max_abs(c->q, c->n), c->exp), bound = (long double)tr_cbound(dto);
    int e = e_min;
    while (rintl(ldexpl(M, -e)) > bound) e++;
    wg_tensor src = tr_src_tensor(b, r, c), dst = tr_tensor_out(b, dto, c->n);
    if (bits > 0) wg_quant_fit(&dst, &src, bits);
    else wg_quant_fit_exp(&dst, &src, e_min);
    TR_EXPECT_I64(e, dst.exp, "fit(%s -> %s, bits %d, e_min %d) of a tensor with max-abs %.21Lg: exponent",
                  tr_dt(c->dt), tr_dt(dto), bits, e_min, M);
    int64_t *out = tr_tensor_get(&dst);
    for (int64_t i = 0; i < c->n; i++) {
        long double want = ldexpl(rintl(ldexpl(ldexpl(c->q[i], c->exp), -e)), e); /* never saturates */
        TR_EXPECT_LD(want, ldexpl(out[i], dst.exp),
                     "fit(%s -> %s, bits %d, e_min %d) of x = %" PRId64 " * 2^%d (element %" PRId64 ")", tr_dt(c->dt),
                     tr_dt(dto), bits, e_min, c->q[i], c->exp, i);
    }
    free(out);
    wg_tensor_free(&dst);
    tr_src_release(&src, c, "fit");
}

static void test_fit(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {42};
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64}, outs[] = {WG_I8, WG_I16, WG_I32};
    for (int k = 0; k < N_CASES; k++) {
        tr_src c = tr_src_random(&r, ins, 4);
        check_fit(b, &r, &c, outs[tr_next(&r) % 3], k % 3 ? 8 : (int)tr_range(&r, 2, 32), 0);
    }
    for (int k = 0; k < N_CASES; k++) { /* wg_quant_fit_exp: any floor, e.g. the input's own exponent */
        tr_src c = tr_src_random(&r, ins, 4);
        wg_dtype dto = ins[tr_next(&r) % 3];
        check_fit(b, &r, &c, dto, 0, k % 2 ? c.exp : (int)tr_range(&r, -40, 10));
    }
    /* By hand (bits 8, int8 out, exponent -7 in): max 127 fits at -7; max 128 needs -6
     * (64; 3 / 2 = 1.5 -> 2; 5 / 2 = 2.5 -> 2); max 255: 127.5 -> 128 does not fit at
     * -6, so -5 (255 / 4 = 63.75 -> 64). INT32_MIN at exponent 0: 2^31 / 2^24 = 128 > 127,
     * so e = 25: -2^31 / 2^25 = -64, 2^24 -> 0.5 -> 0, 3 * 2^23 -> 0.75 -> 1. All zero: -(bits-1). */
    static const struct { wg_dtype dt; int64_t q[4]; int e_in, e_out; int64_t want[4]; } hand[] = {
        {WG_I8, {127, -3, 5, 1}, -7, -7, {127, -3, 5, 1}},
        {WG_I16, {128, 3, -3, 5}, -7, -6, {64, 2, -2, 2}},
        {WG_I16, {255, 3, 4, -6}, -7, -5, {64, 1, 1, -2}},
        {WG_I32, {INT32_MIN, 1 << 24, 3 << 23, 0}, 0, 25, {-64, 0, 1, 0}},
        {WG_I32, {0, 0, 0, 0}, 9, -7, {0, 0, 0, 0}},
    };
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++)
        hand_unary(b, OP_FIT, hand[h].dt, hand[h].q, 4, hand[h].e_in, WG_I8, 8, hand[h].want, hand[h].e_out,
                   "fit by hand");
}

/* An int64 output container: the search for e must still see 2^62 * 2 > INT64_MAX. */
static void test_fit_int64_container(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {43};
    /* By hand: 2^62 at exponent 0, bits 8: 2^62 * 2^-e fits INT64_MAX only for e >= 0. */
    const int64_t q[2] = {INT64_C(1) << 62, -3};
    tr_src c = tr_src_hand(WG_I64, q, 2, 0);
    check_fit(b, NULL, &c, WG_I64, 8, 0);
    for (int k = 0; k < 60; k++) {
        const wg_dtype ins[] = {WG_I64};
        tr_src rc = tr_src_random(&r, ins, 1);
        check_fit(b, &r, &rc, WG_I64, k % 2 ? 8 : 0, k % 4 ? rc.exp : (int)tr_range(&r, -40, 10));
    }
}

/* ---- shift (E1): s = Shift(max); s * clamp(Q(x / s, bits)) ---------------------------- */

/* known: through wg_quant_shift_max with the max-abs the caller knows (the reference's). */
static void check_shift(wg_backend *b, tr_rng *r, tr_src *c, wg_dtype dto, int bits, bool known)
{
    int ps = shift_exp(c), e_s = c->exp + ps; /* Shift(max) = 2^e_s in value terms */
    wg_tensor src = tr_src_tensor(b, r, c), dst = tr_tensor_out(b, dto, c->n);
    if (known) wg_quant_shift_max(&dst, &src, bits, ref_max_abs(c->q, c->n));
    else wg_quant_shift(&dst, &src, bits);
    TR_EXPECT_I64(e_s - (bits - 1), dst.exp, "shift(%s, bits %d, e_in %d, Shift exponent %d): exponent", tr_dt(c->dt),
                  bits, c->exp, ps);
    int64_t *out = tr_tensor_get(&dst);
    long double bound = (long double)ref_bound_bits(bits);
    for (int64_t i = 0; i < c->n; i++) {
        long double z = ldexpl(ldexpl(c->q[i], c->exp), -e_s); /* x / s */
        long double want = ldexpl(ref_clampl(rintl(ldexpl(z, bits - 1)), bound), e_s - (bits - 1));
        TR_EXPECT_LD(want, ldexpl(out[i], dst.exp),
                     "shift(%s, bits %d) of x = %" PRId64 " * 2^%d, Shift = 2^%d (element %" PRId64 ")", tr_dt(c->dt),
                     bits, c->q[i], c->exp, e_s, i);
    }
    free(out);
    wg_tensor_free(&dst);
    tr_src_release(&src, c, "shift");
}

/* ---- flag (E2): z = x / (Shift(max) / 2^(bits-1)); fine Q(z) if |z| < 1 else coarse ---- */

/* known: through wg_quant_flag_max with the max-abs the caller knows (the reference's). */
static void check_flag(wg_backend *b, tr_rng *r, tr_src *c, wg_dtype dto, int bits, bool known)
{
    int ec = c->exp + shift_exp(c) - (bits - 1), ef = ec - (bits - 1);
    wg_tensor src = tr_src_tensor(b, r, c), co = tr_tensor_out(b, dto, c->n), fi = tr_tensor_out(b, dto, c->n);
    if (known) wg_quant_flag_max(&co, &fi, &src, bits, ref_max_abs(c->q, c->n));
    else wg_quant_flag(&co, &fi, &src, bits);
    TR_EXPECT_I64(ec, co.exp, "flag(%s, bits %d, e_in %d): coarse exponent", tr_dt(c->dt), bits, c->exp);
    TR_EXPECT_I64(bits - 1, co.exp - fi.exp, "flag(%s, bits %d): coarse - fine exponent", tr_dt(c->dt), bits);
    int64_t *qc = tr_tensor_get(&co), *qf = tr_tensor_get(&fi), bound = ref_bound_bits(bits);
    for (int64_t i = 0; i < c->n; i++) {
        long double z = ldexpl(ldexpl(c->q[i], c->exp), -ec), wc = 0, wf = 0;
        if (fabsl(z) < 1) {
            wf = rintl(ldexpl(z, bits - 1)); /* Q(z, bits) in fine units */
            if (fabsl(wf) == ldexpl(1, bits - 1)) { wc = wf > 0 ? 1 : -1; wf = 0; } /* = one coarse unit */
        } else {
            wc = ref_clampl(rintl(z), (long double)bound);
        }
        TR_FAIL_IF(qc[i] != 0 && qf[i] != 0,
                   "flag: element %" PRId64 " (x = %" PRId64 " * 2^%d) has both parts: %" PRId64 ", %" PRId64, i,
                   c->q[i], c->exp, qc[i], qf[i]);
        long double want = ldexpl(wc, ec) + ldexpl(wf, ef), got = ldexpl(qc[i], co.exp) + ldexpl(qf[i], fi.exp);
        TR_EXPECT_LD(want, got,
                     "flag(%s, bits %d) of x = %" PRId64 " * 2^%d, coarse grid 2^%d: value (got coarse %" PRId64
                     ", fine %" PRId64 ")",
                     tr_dt(c->dt), bits, c->q[i], c->exp, ec, qc[i], qf[i]);
        TR_FAIL_IF(qc[i] != wc || qf[i] != wf,
                   "flag(%s, bits %d) of x = %" PRId64 " * 2^%d: parts (%" PRId64 ", %" PRId64 "), want (%.0Lf, %.0Lf)",
                   tr_dt(c->dt), bits, c->q[i], c->exp, qc[i], qf[i], wc, wf);
    }
    free(qc);
    free(qf);
    wg_tensor_free(&co);
    wg_tensor_free(&fi);
    tr_src_release(&src, c, "flag");
}

static void test_shift_flag_random(void **state)
{
    tr_rng r = {44};
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64}, outs[] = {WG_I8, WG_I16, WG_I32};
    for (int k = 0; k < 2 * N_CASES; k++) {
        tr_src c = tr_src_random(&r, ins, 4);
        wg_dtype dto = outs[tr_next(&r) % 3];
        int bits = k % 3 ? 8 : (int)tr_range(&r, 2, tr_cbits(dto));
        bool known = k % 4 >= 2; /* the entry points with the caller's max-abs, half of the cases */
        if (k & 1) check_shift(*state, &r, &c, dto, bits, known);
        else check_flag(*state, &r, &c, dto, bits, known);
    }
}

/* E1 (want_e1 != NULL) and E2 (want_c != NULL) of a hand-made input, bits 8, int8
 * outputs, against hand-derived integers: E1 and coarse on 2^e_c, fine on 2^(e_c - 7). */
static void hand_e12(wg_backend *b, wg_dtype dt, const int64_t *q, int64_t n, int e_in, const int64_t *want_e1,
                     const int64_t *want_c, const int64_t *want_f, int e_c, const char *what)
{
    tr_src c = tr_src_hand(dt, q, n, e_in);
    wg_tensor src = tr_src_tensor(b, NULL, &c), d = tr_tensor_out(b, WG_I8, n), co = tr_tensor_out(b, WG_I8, n),
              fi = tr_tensor_out(b, WG_I8, n);
    if (want_e1) {
        wg_quant_shift(&d, &src, 8);
        tr_expect_q(&d, want_e1, n, e_c, what);
    }
    if (want_c) {
        wg_quant_flag(&co, &fi, &src, 8);
        tr_expect_q(&co, want_c, n, e_c, what);
        tr_expect_q(&fi, want_f, n, e_c - 7, what);
    }
    wg_tensor_free(&d);
    wg_tensor_free(&co);
    wg_tensor_free(&fi);
    tr_src_release(&src, &c, what);
}

static void check_grad_out(const tr_src *c, const wg_grad_quant_args *a, const wg_tensor *dst, double *expect_diff);

/* E1 and E2 (and G, at the sqrt(2) boundary) on hand-made inputs. */
static void test_shift_flag_edges(void **state)
{
    wg_backend *b = *state;
    /* Max exactly 2^6 (E1, bits 8, e_in -10): Shift = 2^6 units, x / s * 128 = 2 q:
     * 64 -> 128 -> clamp 127, -64 -> -127, 32 -> 64, 1 -> 2; exponent -10 + 6 - 7 = -11. */
    const int64_t pq[4] = {64, -64, 32, 1}, pw[4] = {127, -127, 64, 2};
    hand_e12(b, WG_I8, pq, 4, -10, pw, NULL, NULL, -11, "E1 with a power-of-two max");
    /* E2, bits 8, max 2^20 (Shift 2^20, coarse grid 2^13 units, fine grid 2^6 units):
     * 2^20 -> z = 128 -> coarse 127; 2^13 - 1 -> fine round(128 - 2^-6) = 128 = 1 coarse;
     * 2^13 -> coarse 1; 2^13 - 2^5 -> fine 127.5 -> 128 (even) = 1 coarse; 2^13 - 2^6 -> fine 127;
     * 3 * 2^5 -> fine 1.5 -> 2; 5 * 2^5 -> fine 2.5 -> 2; -3 * 2^5 -> -2; 255 * 2^12 -> coarse
     * 127.5 -> 128 -> 127; 253 * 2^12 -> coarse 126.5 -> 126. Coarse exponent -20 + 20 - 7. */
    const int64_t fq[10] = {1 << 20, (1 << 13) - 1, 1 << 13, (1 << 13) - 32, (1 << 13) - 64,
                            96, 160, -96, 255 << 12, 253 << 12};
    const int64_t wc[10] = {127, 1, 1, 1, 0, 0, 0, 0, 127, 126}, wf[10] = {0, 0, 0, 0, 127, 2, 2, -2, 0, 0};
    hand_e12(b, WG_I32, fq, 10, -20, NULL, wc, wf, -7, "E2 by hand");
    /* All zero: max-abs counts as one unit, Shift = 2^e_in: E1 and coarse exponent
     * e_in - 7, fine e_in - 14; every output 0. */
    const int64_t zq[5] = {0, 0, 0, 0, 0};
    hand_e12(b, WG_I16, zq, 5, 3, zq, zq, zq, 3 - 7, "E1/E2 of zeros");
    /* int32 extremes: max 2^31 (INT32_MIN), Shift 2^31, exponent 31 - 7: -2^31 -> -128 ->
     * -127; INT32_MAX -> 128 - 2^-24 -> 128 -> 127; 2^24 -> 1 (E1 and E2 coarse alike). */
    const int64_t xq[3] = {INT32_MIN, INT32_MAX, 1 << 24}, xw[3] = {-127, 127, 1}, x0[3] = {0, 0, 0};
    hand_e12(b, WG_I32, xq, 3, 0, xw, xw, x0, 31 - 7, "E1/E2 of int32 extremes");
    /* The sqrt(2) boundary: max t = floor(2^p sqrt 2) gives Shift 2^p, t + 1 gives 2^(p+1)
     * (by hand for p = 3: 11^2 = 121 < 128 <= 144 = 12^2). Both sides for every p, plus
     * powers of two, checked through the references (which check the exponent). */
    for (int p = 0; p <= 62; p++) {
        uint64_t t = ref_isqrt((u128)1 << (2 * p + 1));
        const int64_t cand[3] = {(int64_t)t, (int64_t)t + 1, INT64_C(1) << p};
        for (int j = 0; j < 3; j++) {
            wg_dtype dt = p < 30 ? WG_I32 : WG_I64;
            const int64_t q[5] = {cand[j], -cand[j] / 2, cand[j] / 3, -1, -cand[j]};
            tr_src s1 = tr_src_hand(dt, q, 5, -12), s2 = tr_src_hand(dt, q, 5, -12);
            TR_EXPECT_I64(p + (j == 1), shift_exp(&s1), "Shift exponent of max %" PRId64, cand[j]);
            wg_tensor gsrc = tr_src_tensor(b, NULL, &s1), gdst = tr_tensor_out(b, WG_I8, 5);
            wg_grad_quant_args a = {.g_scale_log2 = 7, .gc = 15, .seed = 3, .step = (uint32_t)p, .tensor_id = 9};
            double unused = 0;
            wg_quant_grad(&gdst, &gsrc, &a); /* G uses the same Shift() */
            check_grad_out(&s1, &a, &gdst, &unused);
            wg_tensor_free(&gsrc);
            wg_tensor_free(&gdst);
            check_shift(b, NULL, &s1, WG_I8, 8, p % 2 == 1);
            check_flag(b, NULL, &s2, WG_I8, 8, p % 2 == 0);
        }
    }
}

/* ---- G: n = SR(x / Shift(max) * g_scale), |n| <= g_scale - 1, exponent -(gc - 1) -------- */

/* Checks one run; returns through *expect_diff the expected number of elements whose
 * draw differs between two independent streams (sum of 2 f (1 - f) over fractional
 * parts f, where the two neighbours clamp apart). */
static void check_grad_out(const tr_src *c, const wg_grad_quant_args *a, const wg_tensor *dst, double *expect_diff)
{
    int ps = shift_exp(c);
    TR_EXPECT_I64(-(a->gc - 1), dst->exp, "grad(%s, e_in %d, gc %d): exponent", tr_dt(c->dt), c->exp, a->gc);
    int64_t *out = tr_tensor_get(dst);
    long double gb = ldexpl(1, a->g_scale_log2) - 1;
    for (int64_t i = 0; i < c->n; i++) {
        long double y =
            ldexpl(ldexpl(ldexpl(c->q[i], c->exp), -(c->exp + ps)), a->g_scale_log2); /* x / Shift * g_scale */
        long double lo = ref_clampl(floorl(y), gb), hi = ref_clampl(ceill(y), gb), got = ldexpl(out[i], dst->exp);
        TR_FAIL_IF(got != ldexpl(lo, -(a->gc - 1)) && got != ldexpl(hi, -(a->gc - 1)),
                   "grad(%s, g_scale 2^%d) of x = %" PRId64 " * 2^%d, Shift 2^%d: y = %.21Lg, got n = %" PRId64
                   " (element %" PRId64 ")",
                   tr_dt(c->dt), a->g_scale_log2, c->q[i], c->exp, c->exp + ps, y, out[i], i);
        if (lo != hi) {
            double f = (double)(y - floorl(y));
            *expect_diff += 2 * f * (1 - f);
        }
    }
    free(out);
}

static void test_grad(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {45};
    const wg_dtype ins[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    double expect_diff = 0;
    int64_t diffs = 0;
    for (int k = 0; k < N_CASES; k++) {
        tr_src c = tr_src_random(&r, ins, 4);
        wg_grad_quant_args a = {.g_scale_log2 = k % 2 ? 7 : (int)tr_range(&r, 1, 7),
                                .gc = k % 3 ? 15 : (int)tr_range(&r, 9, 16),
                                .seed = tr_next(&r),
                                .step = (uint32_t)tr_next(&r),
                                .tensor_id = (uint32_t)tr_range(&r, 0, 99)};
        wg_tensor src = tr_src_tensor(b, &r, &c), d1 = tr_tensor_out(b, WG_I16, c.n),
                  d2 = tr_tensor_out(b, WG_I16, c.n), d3 = tr_tensor_out(b, WG_I8, c.n);
        wg_quant_grad(&d1, &src, &a);
        wg_quant_grad(&d2, &src, &a); /* same arguments */
        wg_grad_quant_args a3 = a;
        a3.step += 1;
        wg_quant_grad(&d3, &src, &a3);
        double ed = 0;
        check_grad_out(&c, &a, &d1, &ed);
        check_grad_out(&c, &a3, &d3, &ed);
        expect_diff += ed / 2;
        int64_t *o1 = tr_tensor_get(&d1), *o2 = tr_tensor_get(&d2), *o3 = tr_tensor_get(&d3);
        for (int64_t i = 0; i < c.n; i++) {
            TR_EXPECT_I64(o1[i], o2[i], "grad not reproducible at element %" PRId64 " (x = %" PRId64 " * 2^%d)", i,
                          c.q[i], c.exp);
            diffs += o1[i] != o3[i];
        }
        free(o1);
        free(o2);
        free(o3);
        wg_tensor_free(&d1);
        wg_tensor_free(&d2);
        wg_tensor_free(&d3);
        tr_src_release(&src, &c, "grad");
    }
    TR_FAIL_IF(expect_diff < 1000, "test data too regular: %.0f expected differences", expect_diff);
    TR_FAIL_IF(fabs((double)diffs - expect_diff) > 0.1 * expect_diff,
               "changing the step changed %" PRId64 " draws; independent streams would change %.0f", diffs,
               expect_diff);
}

static void test_grad_edges(void **state)
{
    wg_backend *b = *state;
    /* Exact cases (no randomness), by hand, g_scale 2^7:
     * max 2^10: y = q / 8: 1024 -> 128 -> clamp 127, -1024 -> -127, 8 -> 1, -16 -> -2;
     * max 5 (Shift 2^2, shift <= 0): y = 32 q: 5 -> 160 -> 127, 3 -> 96, -1 -> -32, 0 -> 0;
     * max 2^31 (INT32_MIN), shift 24: -2^31 -> -128 -> -127; INT32_MAX -> 127 or 128 -> 127. */
    static const struct { wg_dtype dt; int64_t q[4]; int64_t want[4]; } hand[] = {
        {WG_I16, {1024, -1024, 8, -16}, {127, -127, 1, -2}},
        {WG_I8, {5, 3, -1, 0}, {127, 96, -32, 0}},
        {WG_I32, {INT32_MIN, INT32_MAX, 1 << 24, -(1 << 25)}, {-127, 127, 1, -2}},
        {WG_I32, {0, 0, 0, 0}, {0, 0, 0, 0}}, /* all zero: zeros, no division by zero */
    };
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++)
        for (int e_in = -30; e_in <= 5; e_in += 7) /* the input exponent does not matter */
            hand_unary(b, OP_GRAD, hand[h].dt, hand[h].q, 4, e_in, WG_I16, 0, hand[h].want, -14, "grad by hand");
}

/* ---- momentum: m = Q(m * 2^-mshift + g, bits), m on 2^-(bits-1), container saturation ---- */

static void check_momentum(wg_backend *b, tr_rng *r, wg_dtype mdt, int64_t *mq, tr_src *g, int bits, int mshift)
{
    int em = -(bits - 1);
    wg_tensor m = tr_tensor_from(b, r, mdt, mq, g->n, em), gt = tr_src_tensor(b, NULL, g);
    wg_quant_momentum(&m, &gt, bits, mshift);
    TR_EXPECT_I64(em, m.exp, "momentum (bits %d): exponent%s", bits, "");
    int64_t *out = tr_tensor_get(&m);
    for (int64_t i = 0; i < g->n; i++) {
        int exact;
        long double s = ref_add_exact(ldexpl(mq[i], em - mshift), ldexpl(g->q[i], g->exp), &exact);
        TR_FAIL_IF(!exact, "test data: m / 2^mshift + g not exact in long double (m %" PRId64 ", g %" PRId64 ")", mq[i],
                   g->q[i]);
        long double want = ldexpl(ref_clampl(rintl(ldexpl(s, bits - 1)), (long double)tr_cbound(mdt)), em);
        TR_EXPECT_LD(want, ldexpl(out[i], m.exp),
                     "momentum(%s m = %" PRId64 " * 2^%d, mshift %d, %s g = %" PRId64 " * 2^%d, bits %d)", tr_dt(mdt),
                     mq[i], em, mshift, tr_dt(g->dt), g->q[i], g->exp, bits);
    }
    free(out);
    wg_tensor_free(&m);
    tr_src_release(&gt, g, "momentum");
}

static void test_momentum(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {46};
    const wg_dtype gins[] = {WG_I8, WG_I16, WG_I32};
    for (int k = 0; k < N_CASES; k++) {
        tr_src g = tr_src_random(&r, gins, 3);
        wg_dtype mdt = k % 3 ? WG_I16 : WG_I32;
        int bits = k % 2 ? 13 : (int)tr_range(&r, 2, tr_cbits(mdt)), mshift = k % 2 ? 2 : (int)tr_range(&r, 0, 4);
        int e_scaled = -(bits - 1) - mshift; /* quant.c keeps both terms within 2^30 of each other */
        if (g.exp < e_scaled - 30) g.exp = e_scaled - 30;
        if (g.exp > e_scaled + 30) g.exp = e_scaled + 30;
        int64_t *mq = malloc((size_t)g.n * sizeof *mq);
        tr_fill(&r, mq, g.n, mdt, (int)tr_range(&r, 0, tr_cbits(mdt) - 1));
        check_momentum(b, &r, mdt, mq, &g, bits, mshift);
        free(mq);
    }
    /* By hand (bits 13, mshift 2, g = 0): m / 4: 6 -> 1.5 -> 2, 10 -> 2.5 -> 2, -6 -> -2,
     * -10 -> -2, 2 -> 0.5 -> 0; with g = 6 * 2^-14 (= 1.5 units of 2^-12) and m = 0 -> 2;
     * saturation: m = 32767 (8191.75 after the shift) + g = 2^20 units -> 32767 (int16). */
    const int64_t m0[7] = {6, 10, -6, -10, 2, 0, 32767}, g0[7] = {0, 0, 0, 0, 0, 6, INT64_C(1) << 22};
    const int64_t w0[7] = {2, 2, -2, -2, 0, 2, 32767};
    tr_src g = tr_src_hand(WG_I32, g0, 7, -14);
    wg_tensor m = tr_tensor_from(b, NULL, WG_I16, m0, 7, -12), gt = tr_src_tensor(b, NULL, &g);
    wg_quant_momentum(&m, &gt, 13, 2);
    tr_expect_q(&m, w0, 7, -12, "momentum by hand");
    wg_tensor_free(&m);
    tr_src_release(&gt, &g, "momentum");
}

/* ---- update: w = Q(w - lr * m, bits_u), w on 2^-(bits_u-1), container saturation ---- */

static void check_update(wg_backend *b, tr_rng *r, wg_dtype wdt, int64_t *wq, tr_src *m, wg_lr lr, int bits_u)
{
    int ew = -(bits_u - 1);
    wg_tensor w = tr_tensor_from(b, r, wdt, wq, m->n, ew), mt = tr_src_tensor(b, NULL, m);
    wg_quant_update(&w, &mt, lr, bits_u);
    TR_EXPECT_I64(ew, w.exp, "update (bits %d): exponent%s", bits_u, "");
    int64_t *out = tr_tensor_get(&w);
    for (int64_t i = 0; i < m->n; i++) {
        int exact;
        long double p = ldexpl((long double)lr.q * (long double)m->q[i], lr.exp + m->exp); /* lr * m, exact */
        long double s = ref_add_exact(ldexpl(wq[i], ew), -p, &exact);
        TR_FAIL_IF(!exact, "test data: w - lr m not exact in long double (w %" PRId64 ", m %" PRId64 ")", wq[i],
                   m->q[i]);
        long double want = ldexpl(ref_clampl(rintl(ldexpl(s, bits_u - 1)), (long double)tr_cbound(wdt)), ew);
        TR_EXPECT_LD(want, ldexpl(out[i], w.exp),
                     "update(%s w = %" PRId64 " * 2^%d, lr = %d * 2^%d, %s m = %" PRId64 " * 2^%d)", tr_dt(wdt), wq[i],
                     ew, (int)lr.q, lr.exp, tr_dt(m->dt), m->q[i], m->exp);
    }
    free(out);
    wg_tensor_free(&w);
    tr_src_release(&mt, m, "update");
}

static void test_update(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {47};
    const wg_dtype mins[] = {WG_I8, WG_I16, WG_I32};
    for (int k = 0; k < N_CASES; k++) {
        tr_src m = tr_src_random(&r, mins, 3);
        int bits_u = k % 2 ? 24 : (int)tr_range(&r, 2, 32), ew = -(bits_u - 1);
        wg_lr lr = k % 3 ? wg_quant_lr(ldexpl(tr_range(&r, 0, 1 << 20), -20), 10)
                         : (wg_lr){(int32_t)tr_range(&r, 0, 32767), (int)tr_range(&r, -16, 0)};
        /* quant.c needs lr.exp + m.exp within [e_w - 30, e_w + 16] */
        if (lr.exp + m.exp < ew - 30) m.exp = ew - 30 - lr.exp;
        if (lr.exp + m.exp > ew + 16) m.exp = ew + 16 - lr.exp;
        int64_t *wq = malloc((size_t)m.n * sizeof *wq);
        tr_fill(&r, wq, m.n, WG_I32, (int)tr_range(&r, 0, 31));
        check_update(b, &r, WG_I32, wq, &m, lr, bits_u);
        free(wq);
    }
    /* By hand (bits_u 24, m on 2^-15, lr q * 2^-9: lr m = q m / 2 units of 2^-23):
     * w 0, lr 3, m 1 -> -1.5 -> -2; lr 5 -> -2.5 -> -2; w 1, lr 1 -> 0.5 -> 0; w 3, lr 1 -> 2.5 -> 2;
     * saturation: INT32_MAX - (-8 * 2^15 / 2) -> INT32_MAX; -INT32_MAX - (...) -> -INT32_MAX. */
    const int64_t wq[6] = {0, 0, 1, 3, INT32_MAX, -INT32_MAX}, lq[6] = {3, 5, 1, 1, 8, 8};
    const int64_t mq[6] = {1, 1, 1, 1, -32767, 32767}, want[6] = {-2, -2, 0, 2, INT32_MAX, -INT32_MAX};
    for (int i = 0; i < 6; i++) {
        tr_src m = tr_src_hand(WG_I16, &mq[i], 1, -15);
        wg_tensor w = tr_tensor_from(b, NULL, WG_I32, &wq[i], 1, -23), mt = tr_src_tensor(b, NULL, &m);
        wg_quant_update(&w, &mt, (wg_lr){(int32_t)lq[i], -9}, 24);
        tr_expect_q(&w, &want[i], 1, -23, "update by hand");
        wg_tensor_free(&w);
        tr_src_release(&mt, &m, "update");
    }
}

/* Master weights in an int64 container break the contract (int32, docs/numerics.md):
 * the exact w - lr m could not be formed without overflow (w = 2^62 moved up one bit),
 * so wg_quant_update must refuse it as an internal error (abort, checked in a child
 * process) rather than return a silently wrong value. */
static void test_update_rejects_int64_master(void **state)
{
    wg_backend *b = *state;
    const int64_t wq[2] = {INT64_C(1) << 62, -(INT64_C(1) << 62)}, mq[2] = {1, -1};
    fflush(NULL);
    pid_t pid = tr_fork_death_test();
    TR_FAIL_IF(pid < 0, "fork failed%s", "");
    if (pid == 0) {
        tr_src m = tr_src_hand(WG_I16, mq, 2, -15);
        wg_tensor w = tr_tensor_from(b, NULL, WG_I64, wq, 2, -23), mt = tr_src_tensor(b, NULL, &m);
        freopen("/dev/null", "w", stderr); /* the expected internal-error message */
        wg_quant_update(&w, &mt, (wg_lr){1, -9}, 24);
        _exit(0);
    }
    int st = 0;
    TR_FAIL_IF(waitpid(pid, &st, 0) != pid, "waitpid failed%s", "");
    TR_FAIL_IF(!(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT),
               "wg_quant_update accepted int64 master weights (child status %d)", st);
}

/* ---- learning rate: clip(Q(lr, bits), bits) ------------------------------------------- */

static void test_lr(void **state)
{
    (void)state;
    tr_rng r = {48};
    for (int k = 0; k < 20000; k++) {
        int bits = k % 2 ? 10 : (int)tr_range(&r, 2, 16);
        double lr = k % 4 == 0
                        ? (double)ldexpl(tr_range(&r, 0, 1 << 12), -(int)tr_range(&r, 0, 20)) /* on or between grids */
                        : (double)(tr_next(&r) >> 11) * 0x1p-53 * 2.5;
        wg_lr q = wg_quant_lr(lr, bits);
        long double want = ref_clampl(rintl(ldexpl(lr, bits - 1)), (long double)ref_bound_bits(bits));
        TR_EXPECT_I64(-(bits - 1), q.exp, "wg_quant_lr(%a, %d): exponent", lr, bits);
        TR_EXPECT_LD(ldexpl(want, -(bits - 1)), ldexpl(q.q, q.exp), "wg_quant_lr(%a = %.17g, bits %d)", lr, lr, bits);
    }
    /* By hand, bits 10 (grid 2^-9, bound 511): 1.5 * 2^-9 -> 2, 2.5 * 2^-9 -> 2, 3.5 * 2^-9
     * -> 4, 0.5 * 2^-9 -> 0, 2^-11 -> 0, 0 -> 0, 0.4 -> 204.8 -> 205, 1 -> 512 -> 511, 1e9 -> 511. */
    static const struct { double lr; int q; } hand[] = {{0x1.8p-9, 2}, {0x1.4p-8, 2}, {0x1.cp-8, 4},
                                                        {0x1p-10, 0},  {0x1p-11, 0},  {0.0, 0},
                                                        {0.4, 205},    {1.0, 511},    {1e9, 511}};
    for (size_t h = 0; h < sizeof hand / sizeof hand[0]; h++) {
        wg_lr q = wg_quant_lr(hand[h].lr, 10);
        TR_EXPECT_I64(hand[h].q, q.q, "wg_quant_lr(%.17g, 10)", hand[h].lr);
        TR_EXPECT_I64(-9, q.exp, "wg_quant_lr(%.17g, 10): exponent", hand[h].lr);
    }
}

static void test_bits_reference(void **state)
{
    (void)state;
    wg_quant_bits q = wg_quant_bits_reference(); /* wageubn.md's table */
    const int got[14] = {q.w, q.a, q.u, q.e1, q.e2, q.g_scale_log2, q.gc, q.bn_grad, q.bn_stat, q.xhat, q.gamma_beta,
                         q.momentum, q.momentum_shift, q.lr};
    const int want[14] = {8, 8, 24, 8, 8, 7, 15, 15, 16, 8, 8, 13, 2, 10};
    static const char *const names[14] = {"w", "a", "u", "e1", "e2", "g_scale_log2", "gc", "bn_grad", "bn_stat", "xhat",
                                          "gamma_beta", "momentum", "momentum_shift", "lr"};
    for (int i = 0; i < 14; i++) TR_EXPECT_I64(want[i], got[i], "wg_quant_bits_reference().%s", names[i]);
}

/* An op's input still holds q. */
static void expect_input_unchanged(const wg_tensor *src, const int64_t *q, int64_t n)
{
    int64_t *now = tr_tensor_get(src);
    for (int64_t i = 0; i < n; i++) TR_EXPECT_I64(q[i], now[i], "an op modified its input at %" PRId64, i);
    free(now);
}

/* ---- the CPU backend's typed loops (backend_cpu.c) ----------------------------------
 * The backend ops called directly, with chosen shifts and bounds, on every pair of
 * containers: the typed loops (int32 and int64 in) and the int64 chunks behind them
 * (the other containers, shifts outside the typed ranges). Sizes around the chunk
 * (1024) and the vector widths, and above WG_PAR_MIN, run with three threads (an uneven
 * split), against the exact references. */

static const int64_t typed_sizes[] = {1, 13, 1023, 1025, WG_PAR_MIN + 17, 3 * WG_PAR_MIN + 1001};
#define N_TYPED_SIZES ((int)(sizeof typed_sizes / sizeof typed_sizes[0]))

/* round_half_even(x * 2^-s) for s >= 0, x * 2^-s exactly for s < 0. */
static i128 ref_shift(int64_t x, int s) { return s >= 0 ? ref_rne_div_pow2(x, s) : (i128)x * ((i128)1 << -s); }

/* Random values of a container, with its extremes (its minimum, outside the symmetric
 * range, too) at random places. */
static int64_t *typed_values(tr_rng *r, wg_dtype dt, int64_t n)
{
    int64_t *q = malloc((size_t)n * sizeof *q);
    tr_fill(r, q, n, dt, (int)tr_range(r, 1, tr_cbits(dt) - 1));
    int64_t lo = dt == WG_I64 ? INT64_MIN : -tr_cbound(dt) - 1;
    for (int k = 0; k < 9; k++)
        q[tr_range(r, 0, n - 1)] = k % 3 == 0 ? lo : k % 3 == 1 ? tr_cbound(dt) : -tr_cbound(dt);
    return q;
}

/* round_shift(src -> dst, shift, bound) against ref_shift clamped; in_place: dst is src. */
static void check_round_shift_op(wg_backend *b, const int64_t *q, int64_t n, wg_dtype dt, wg_dtype dto, int shift,
                                 int64_t bound, bool in_place)
{
    wg_tensor src = tr_tensor_from(b, NULL, dt, q, n, 0), dst = in_place ? src : tr_tensor_out(b, dto, n);
    b->iface->round_shift(b->ctx, &dst, &src, shift, bound);
    int64_t *out = tr_tensor_get(&dst);
    for (int64_t i = 0; i < n; i++)
        TR_EXPECT_I64((int64_t)ref_clamp128(ref_shift(q[i], shift), bound), out[i],
                      "round_shift(%s -> %s%s, shift %d, bound %" PRId64 ", n %" PRId64 ") of %" PRId64
                      " (element %" PRId64 ")",
                      tr_dt(dt), tr_dt(dto), in_place ? ", in place" : "", shift, bound, n, q[i], i);
    free(out);
    if (!in_place) {
        expect_input_unchanged(&src, q, n);
        wg_tensor_free(&dst);
    }
    wg_tensor_free(&src);
}

static void test_round_shift_typed(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x7e4};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const wg_dtype dts[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    const int shifts[] = {-40, -32, -31, -7, -1, 0, 1, 7, 16, 31, 32, 33, 62, 63, 64, 70};
    const int nshifts = (int)(sizeof shifts / sizeof shifts[0]);
    for (int si = 0; si < N_TYPED_SIZES; si++)
        for (int a = 0; a < 4; a++)
            for (int d = 0; d < 4; d++) {
                int64_t n = typed_sizes[si], *q = typed_values(&r, dts[a], n);
                bool big = n > 2000;
                for (int k = 0; k < (big ? 3 : nshifts); k++) {
                    int shift = big ? shifts[tr_next(&r) % (uint64_t)nshifts] : shifts[k];
                    /* the container's bound, or a clip inside it (7 bits: W's) */
                    int64_t bound = k % 2 ? tr_cbound(dts[d]) : 127;
                    check_round_shift_op(b, q, n, dts[a], dts[d], shift, bound, false);
                    if (a == d && k % 3 == 0) check_round_shift_op(b, q, n, dts[a], dts[d], shift, bound, true);
                }
                free(q);
            }
    omp_set_num_threads(threads);
}

/* flag_split against the value-space rule of check_flag, in exact integers. */
static void check_flag_split_op(wg_backend *b, const int64_t *q, int64_t n, wg_dtype dt, wg_dtype dto, int sc,
                                int bits)
{
    wg_tensor src = tr_tensor_from(b, NULL, dt, q, n, 0), co = tr_tensor_out(b, dto, n), fi = tr_tensor_out(b, dto, n);
    b->iface->flag_split(b->ctx, &co, &fi, &src, sc, bits);
    int64_t *qc = tr_tensor_get(&co), *qf = tr_tensor_get(&fi), bound = ref_bound_bits(bits);
    for (int64_t i = 0; i < n; i++) {
        i128 ax = q[i] < 0 ? -(i128)q[i] : (i128)q[i], wc = 0, wf = 0;
        if (sc >= 64 || (sc >= 0 ? ax < ((i128)1 << sc) : ax == 0)) { /* |z| < 1: the fine grid */
            wf = ref_shift(q[i], sc - (bits - 1));
            if (wf == ((i128)1 << (bits - 1)) || wf == -((i128)1 << (bits - 1))) wc = wf > 0 ? 1 : -1, wf = 0;
        } else {
            wc = ref_clamp128(ref_shift(q[i], sc), bound);
        }
        TR_FAIL_IF(qc[i] != (int64_t)wc || qf[i] != (int64_t)wf,
                   "flag_split(%s -> %s, shift_coarse %d, bits %d, n %" PRId64 ") of %" PRId64 " (element %" PRId64
                   "): (%" PRId64 ", %" PRId64 "), want (%" PRId64 ", %" PRId64 ")",
                   tr_dt(dt), tr_dt(dto), sc, bits, n, q[i], i, qc[i], qf[i], (int64_t)wc, (int64_t)wf);
    }
    free(qc), free(qf);
    expect_input_unchanged(&src, q, n);
    wg_tensor_free(&src), wg_tensor_free(&co), wg_tensor_free(&fi);
}

static void test_flag_split_typed(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0xf1a9};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const wg_dtype ins[] = {WG_I16, WG_I32, WG_I64}, outs[] = {WG_I8, WG_I16};
    const int bitss[] = {8, 5, 2};
    for (int si = 0; si < N_TYPED_SIZES; si++)
        for (int a = 0; a < 3; a++)
            for (int d = 0; d < 2; d++)
                for (int bi = 0; bi < 3; bi++) {
                    int64_t n = typed_sizes[si], *q = typed_values(&r, ins[a], n);
                    int bits = bitss[bi];
                    /* the fine shift -1 and 0, typical, the last typed (63) and beyond */
                    const int scs[] = {bits - 2, bits - 1, bits + 9, 40, 63, 64, 70};
                    for (int k = 0; k < 7; k++)
                        if (n < 2000 || k == 1 || k == 2 || k == 4 || tr_next(&r) % 4 == 0)
                            check_flag_split_op(b, q, n, ins[a], outs[d], scs[k], bits);
                    free(q);
                }
    omp_set_num_threads(threads);
}

/* cpu_rne.h's compact int32 form: RNE(x / 2^s) for every s = 34..64 equals the long
 * double reference (exact: |x| <= 2^62 has at most 63 bits) on random |x| <= 2^62 and
 * on the values that test the sticky bit: exact ties (x = (2m + 1) 2^(s-1)) with both
 * parities of m, ties plus and minus one and a little more, and the edges. */
static void test_compact_rne(void **state)
{
    (void)state;
    tr_rng r = {0xc0c0};
    const int64_t lim = INT64_C(1) << 62;
    for (int it = 0; it < 400000; it++) {
        int s = (int)tr_range(&r, WG_COMPACT_SHIFT + 1, WG_COMPACT_SHIFT + 31);
        int64_t x;
        int kind = it % 4;
        if (kind == 0) {
            x = tr_i64_mag(&r, (int)tr_range(&r, 0, 62));
        } else { /* around a tie at s: (2m + 1) 2^(s-1) + d (none inside +-2^62 beyond s = 62) */
            s = s > 62 ? 62 : s;
            int64_t span = lim >> (s - 1) >> 1, m = tr_range(&r, -span, span - 1);
            int64_t d = kind == 1 ? 0 : kind == 2 ? (tr_next(&r) & 1 ? 1 : -1) : tr_range(&r, -1000, 1000);
            x = (2 * m + 1) * (INT64_C(1) << (s - 1)) + d;
        }
        if (x > lim || x < -lim) continue;
        int32_t p = wg_compact(x);
        TR_EXPECT_I64((int64_t)ref_rne_scale((long double)x, -s), wg_compact_rne(p, wg_compact_k_init(s)),
                      "compact RNE of %" PRId64 " by %d (p = %d)", x, s, (int)p);
    }
    const int64_t edges[] = {lim, -lim, lim - 1, -lim + 1, 0, 1, -1, INT64_C(1) << 33, -(INT64_C(1) << 33)};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        for (int s = WG_COMPACT_SHIFT + 1; s <= WG_COMPACT_SHIFT + 31; s++)
            TR_EXPECT_I64((int64_t)ref_rne_scale((long double)edges[i], -s),
                          wg_compact_rne(wg_compact(edges[i]), wg_compact_k_init(s)),
                          "compact RNE of %" PRId64 " by %d", edges[i], s);
}

static void test_max_abs_typed(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {0x3a};
    int threads = omp_get_max_threads();
    omp_set_num_threads(3);
    const wg_dtype dts[] = {WG_I8, WG_I16, WG_I32, WG_I64};
    for (int si = 0; si < N_TYPED_SIZES; si++)
        for (int d = 0; d < 4; d++)
            for (int k = 0; k < 3; k++) {
                int64_t n = typed_sizes[si], *q = typed_values(&r, dts[d], n);
                if (k == 1) /* no extremes: the maximum somewhere inside, in the last element at times */
                    for (int64_t i = 0; i < n; i++) q[i] = q[i] / 2;
                if (k == 2) q[n - 1] = dts[d] == WG_I64 ? INT64_MIN : -tr_cbound(dts[d]) - 1;
                wg_tensor t = tr_tensor_from(b, NULL, dts[d], q, n, 0);
                uint64_t got = b->iface->max_abs(b->ctx, &t);
                TR_FAIL_IF(got != ref_max_abs(q, n), "max_abs(%s, n %" PRId64 ", case %d) = %" PRIu64 ", want %" PRIu64,
                           tr_dt(dts[d]), n, k, got, ref_max_abs(q, n));
                wg_tensor_free(&t);
                free(q);
            }
    omp_set_num_threads(threads);
}

static int setup(void **state)
{
    *state = wg_backend_cpu_init();
    return *state == NULL;
}

static int teardown(void **state)
{
    wg_backend_free(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_reference),
        cmocka_unit_test(test_direct_random),
        cmocka_unit_test(test_direct_edges),
        cmocka_unit_test(test_fit),
        cmocka_unit_test(test_fit_int64_container),
        cmocka_unit_test(test_shift_flag_random),
        cmocka_unit_test(test_shift_flag_edges),
        cmocka_unit_test(test_grad),
        cmocka_unit_test(test_grad_edges),
        cmocka_unit_test(test_momentum),
        cmocka_unit_test(test_update),
        cmocka_unit_test(test_update_rejects_int64_master),
        cmocka_unit_test(test_lr),
        cmocka_unit_test(test_round_shift_typed),
        cmocka_unit_test(test_flag_split_typed),
        cmocka_unit_test(test_max_abs_typed),
        cmocka_unit_test(test_compact_rne),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
