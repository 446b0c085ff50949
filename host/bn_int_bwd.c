/* bn_int_bwd.c: the backward pass of integer batch normalization on the CPU backend
 * (bn.h's wg_bn_int_backward; docs/numerics.md, section 7.5 "BN backward"). The tiles
 * and checks it shares with the forward passes (bn_int.c) are in bn_int_impl.h.
 *
 * Each step is one static function over plain arrays, and each maps one to one onto
 * a backend op of the CUDA implementation, which runs the same formulas
 * (wg_bn_elem.h):
 *
 *   backward  pass_bwd_sums (per channel B, G, max |dy|, max |xhat|) -> bwd_exponent
 *             (host: the per-tensor exponent F) -> pass_bwd_chan (per-channel
 *             constants) -> pass_bwd_dx (elementwise)
 *
 * wg_bn_int_backward_act runs E1 and ReLU's mask inside pass_bwd_sums (bwd_sums_tile_act),
 * which then writes the int8 dy it sums: the int8 network's path, two passes fewer.
 *
 * The elementwise pass first takes dx from an estimate (wg_bn_dxe_elem, or
 * wg_bn_dxc_elem for the compact form) that decides all but about 2^-14 of the elements
 * and says which; those it leaves take the fast exact form wg_bn_dx_fast (the rational
 * split once per channel, then per element multiplies and compares), equal to wg_bn_dx
 * bit for bit (wg_bn_elem.h gives the arguments). The dx pass also returns max |dx|,
 * which spares E2 its max-abs pass.
 *
 * Loop shape: tiles of whole rows (bn_int_impl.h), dx in int64 lanes, dy read in its
 * own container (one loop per container type, WG_BN_BY_DTYPE; measured faster than
 * widening into buffers first). The sums of an int8 dy accumulate in int32 lanes and
 * move to int64 every WG_BN_SUMS32_TILES tiles.
 *
 * Integer sums and maxima do not depend on order, so a parallel reduction gives the
 * same integers. Dimension legend: M = count = N*H*W rows, C channels (innermost). */
#include "bn.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bn_int_impl.h"
#include "check.h"
#include "cpu_rne.h"
#include "quant.h"
#include "residual.h"
#include "wg_par.h"
#include "wg_bn_elem.h"

/* Exponents of dy beyond this are a bug upstream (the quantizers' own limit is 2^20). */
enum { WG_BN_EXP_LIMIT = 1 << 19 };

/* Runs body(T) with T the container of dy, so that each copy reads it directly. */
#define WG_BN_BY_DTYPE(t, body)                                                                                        \
    do {                                                                                                               \
        switch (t) {                                                                                                   \
        case WG_I8: body(WG_I8); break;                                                                                \
        case WG_I16: body(WG_I16); break;                                                                              \
        case WG_I32: body(WG_I32); break;                                                                              \
        default: body(WG_I64); break;                                                                                  \
        }                                                                                                              \
    } while (0)

/* The len elements of a tile from element k0 into the per-element accumulators acc (4
 * arrays of the tile size n: sum dy, sum dy * xhat, max |dy|, max |xhat|). */
WG_BN_INLINE void bwd_sums_tile(const void *dy, wg_dtype t, int64_t k0, const int16_t *restrict h, int64_t len,
                                int64_t n, int64_t *restrict acc)
{
    int64_t *restrict bs = acc, *restrict gs = acc + n, *restrict dm = acc + 2 * n, *restrict hm = acc + 3 * n;
    for (int64_t l = 0; l < len; l++) {
        int64_t d = wg_load_i64(dy, t, k0 + l), ad = d < 0 ? -d : d, ah = h[l] < 0 ? -h[l] : h[l];
        bs[l] += d;
        gs[l] += d * h[l];
        dm[l] = ad > dm[l] ? ad : dm[l];
        hm[l] = ah > hm[l] ? ah : hm[l];
    }
}

/* The int8 dy of E1 in 32-bit lanes: int32 per-element accumulators (acc32, the same 4
 * arrays), which WG_BN_SUMS32_TILES tiles cannot overflow: each tile adds |dy| <= 128 and
 * |dy xhat| <= 128 * 32767 < 2^22 at each position, so the sums stay below 2^30. */
enum { WG_BN_SUMS32_TILES = 256 };

WG_BN_INLINE void bwd_sums_tile_s8(const int8_t *restrict dy, const int16_t *restrict h, int64_t len, int64_t n,
                                   int32_t *restrict acc)
{
    int32_t *restrict bs = acc, *restrict gs = acc + n, *restrict dm = acc + 2 * n, *restrict hm = acc + 3 * n;
    for (int64_t l = 0; l < len; l++) {
        int32_t d = dy[l], v = h[l], ad = d < 0 ? -d : d, ah = v < 0 ? -v : v;
        bs[l] += d;
        gs[l] += d * v;
        dm[l] = ad > dm[l] ? ad : dm[l];
        hm[l] = ah > hm[l] ? ah : hm[l];
    }
}

/* How the fused sums pass (wg_bn_int_backward_act) makes dy: E1 of err on the fast
 * paths (an int64 err with a shift of 0..63: cpu_rne.h's rne64; an int32 one with 0..31:
 * rne32), or from dy already quantized (neither); then ReLU's mask, y > 0 with y = xhat
 * gamma + beta 2^7 the forward pass's BN output (|y| <= 32767^2 + 32767 2^7 < 2^31:
 * int32, as normalize_tile32 computes it). */
typedef struct bwd_act {
    const int64_t *err;
    const int32_t *err32;
    rne64_k k;
    rne32_k k32;
    int64_t bound;
    int32_t *gamma, *b128; /* per element of a tile (n), like bn_tile */
} bwd_act;

/* dy of one tile from err or err32 (or from dy itself when both are NULL), masked and
 * stored, and its sums in acc32 as bwd_sums_tile_s8 takes them. */
WG_BN_INLINE void bwd_sums_tile_act(const int64_t *restrict err, const int32_t *restrict err32, int8_t *restrict dy,
                                    const int16_t *restrict h, int64_t len, int64_t n, const bwd_act *a,
                                    int32_t *restrict acc)
{
    int32_t *restrict bs = acc, *restrict gs = acc + n, *restrict dm = acc + 2 * n, *restrict hm = acc + 3 * n;
    const int32_t *restrict gamma = a->gamma, *restrict b128 = a->b128;
    rne64_k k = a->k;
    rne32_k k32 = a->k32;
    int64_t bound = a->bound;
    for (int64_t l = 0; l < len; l++) {
        int32_t q = err     ? (int32_t)clamp64(rne64(err[l], k), bound)
                    : err32 ? clamp32(rne32(err32[l], k32), (int32_t)bound)
                            : dy[l],
                v = h[l];
        int32_t d = v * gamma[l] + b128[l] > 0 ? q : 0, ad = d < 0 ? -d : d, ah = v < 0 ? -v : v;
        dy[l] = (int8_t)d;
        bs[l] += d;
        gs[l] += d * v;
        dm[l] = ad > dm[l] ? ad : dm[l];
        hm[l] = ah > hm[l] ? ah : hm[l];
    }
}

/* Moves the int32 accumulators into the int64 ones (sums added, maxima merged) and
 * clears the sums. */
static void sums32_flush(int32_t *restrict acc32, int64_t *restrict acc, int64_t n)
{
    for (int64_t l = 0; l < 2 * n; l++) {
        acc[l] += acc32[l];
        acc32[l] = 0;
    }
    for (int64_t l = 2 * n; l < 4 * n; l++) acc[l] = acc32[l] > acc[l] ? acc32[l] : acc[l];
}

/* Per channel B = sum dy, G = sum dy * xhat (exact: |dy| <= 32767, |xhat| <= 32767,
 * count < 2^32 give |G| < 2^62), and the maxima of |dy| and |xhat| for the bound. With
 * act (int8 dy only), dy is first made and stored (bwd_sums_tile_act). Each
 * thread reduces its tiles element by element, folds them into the channels, and the
 * threads' results are combined (integer sums and maxima: any split gives the same). */
static void pass_bwd_sums(void *dy, wg_dtype dt, const int16_t *xhat, int64_t m, int64_t c, const bwd_act *act,
                          int64_t *bsum, int64_t *gsum, uint64_t *dmax, uint64_t *hmax)
{
    int64_t rows = tile_rows(c), n = rows * c, ntiles = (m + rows - 1) / rows;
    int64_t *out = bn_xmalloc(4 * (size_t)c * sizeof *out);
    memset(out, 0, 4 * (size_t)c * sizeof *out);
#pragma omp parallel if (m * c >= WG_PAR_MIN)
    {
        int64_t *acc = bn_xmalloc(4 * (size_t)n * sizeof *acc), *mine = bn_xmalloc(4 * (size_t)c * sizeof *mine);
        int32_t *acc32 = bn_xmalloc(4 * (size_t)n * sizeof *acc32);
        memset(acc, 0, 4 * (size_t)n * sizeof *acc);
        memset(acc32, 0, 4 * (size_t)n * sizeof *acc32);
        memset(mine, 0, 4 * (size_t)c * sizeof *mine);
        int pending = 0; /* tiles in acc32 */
#pragma omp for schedule(static)
        for (int64_t b = 0; b < ntiles; b++) {
            int64_t k0 = b * n, len = b == ntiles - 1 ? m * c - k0 : n;
            if (dt == WG_I8) {
                int8_t *d8 = (int8_t *)dy + k0;
                if (act && act->err) bwd_sums_tile_act(act->err + k0, NULL, d8, xhat + k0, len, n, act, acc32);
                else if (act && act->err32) bwd_sums_tile_act(NULL, act->err32 + k0, d8, xhat + k0, len, n, act, acc32);
                else if (act) bwd_sums_tile_act(NULL, NULL, d8, xhat + k0, len, n, act, acc32);
                else bwd_sums_tile_s8(d8, xhat + k0, len, n, acc32);
                if (++pending == WG_BN_SUMS32_TILES) {
                    sums32_flush(acc32, acc, n);
                    pending = 0;
                }
                continue;
            }
#define WG_BN_SUMS_TILE(T) bwd_sums_tile(dy, T, k0, xhat + k0, len, n, acc)
            WG_BN_BY_DTYPE(dt, WG_BN_SUMS_TILE);
#undef WG_BN_SUMS_TILE
        }
        sums32_flush(acc32, acc, n);
        bn_tile_fold(acc, n, c, 4, 2, mine);
#pragma omp critical(wg_bn_bwd_sums)
        for (int64_t j = 0; j < 4 * c; j++)
            out[j] = j < 2 * c ? out[j] + mine[j] : (mine[j] > out[j] ? mine[j] : out[j]);
        free(acc);
        free(acc32);
        free(mine);
    }
    for (int64_t ch = 0; ch < c; ch++) {
        bsum[ch] = out[ch];
        gsum[ch] = out[c + ch];
        dmax[ch] = (uint64_t)out[2 * c + ch];
        hmax[ch] = (uint64_t)out[3 * c + ch];
    }
    free(out);
}

/* The per-tensor decision (host): F = min(62, 62 - max over channels of the bound
 * exponent), so that |dx| <= 2^62 on the grid 2^(e-6-F). F >= 0 always holds for
 * |dy| <= 32767 (docs/numerics.md 7.5). */
int bn_bwd_exponent(const int16_t *gamma, const int32_t *sigma, int64_t count, int64_t c, const int64_t *bsum,
                    const int64_t *gsum, const uint64_t *dmax, const uint64_t *hmax)
{
    int emax = WG_BN_DX_NO_BOUND;
    for (int64_t ch = 0; ch < c; ch++) {
        int e = wg_bn_dx_bound_exp(gamma[ch], sigma[ch], (uint64_t)count, bsum[ch], gsum[ch], dmax[ch], hmax[ch]);
        emax = e > emax ? e : emax;
    }
    WG_ASSERT(emax <= WG_BN_DX_BITS, "BN backward: dx bound 2^%d exceeds 2^%d", emax, WG_BN_DX_BITS);
    int f = WG_BN_DX_BITS - emax;
    return f > WG_BN_DX_BITS ? WG_BN_DX_BITS : f;
}

/* ---- dx kept compact for E2 ---------------------------------------------------------
 * When E2 alone reads dx (wg_bn_int_backward_act given e2), dx is stored in int32 in
 * cpu_rne.h's compact form (|dx| <= 2^62), from which every rounding shift above
 * WG_COMPACT_SHIFT is exact. E2 rounds at its fine shift npow2(max |dx|) - 2 (bits - 1)
 * and its coarse one; when the fine shift exceeds WG_COMPACT_SHIFT (max |dx| above about
 * 2^47: the exponent rule puts it near 2^62) the parts come from the compact dx, half
 * the bytes of dx; otherwise dx is computed again in int64 and the backend's pass splits
 * it. The compact dx comes from wg_bn_dxc_elem in 32-bit lanes (wg_bn_elem.h), and the
 * few elements its estimate leaves undecided from wg_bn_dx_fast. */

/* The per-channel constants of wg_bn_dxe_elem (dx in int64) and wg_bn_dxc_elem (compact),
 * laid out like bn_tile: one of the two. */
typedef struct est_tile {
    uint64_t *qa, *qb, *qc; /* dxe */
    uint32_t *ca, *cb, *cc; /* dxc's q */
    int32_t *pa, *pb, *pc, *live;
} est_tile;

static est_tile est_tile_alloc(int64_t n, bool compact)
{
    est_tile t = {0};
    if (compact) {
        uint32_t *u = bn_xmalloc(7 * (size_t)n * sizeof *u);
        t.ca = u, t.cb = u + n, t.cc = u + 2 * n;
        t.pa = (int32_t *)u + 3 * n, t.pb = (int32_t *)u + 4 * n, t.pc = (int32_t *)u + 5 * n;
        t.live = (int32_t *)u + 6 * n;
    } else {
        uint64_t *u = bn_xmalloc(3 * (size_t)n * (sizeof *u + sizeof *t.pa));
        t.qa = u, t.qb = u + n, t.qc = u + 2 * n;
        t.pa = (int32_t *)(u + 3 * n), t.pb = t.pa + n, t.pc = t.pa + 2 * n;
    }
    return t;
}

static void est_tile_free(est_tile *t) { free(t->qa ? (void *)t->qa : (void *)t->ca); }

/* Channel ch's constants (the compact ones when the tile holds them). */
static void est_tile_set(est_tile *t, int64_t n, int64_t c, int64_t ch, int64_t gamma, int64_t sigma, uint64_t count,
                         int64_t b, int64_t g, uint64_t dmax, int f)
{
    if (t->ca) {
        wg_bn_dxc k = wg_bn_dxc_init(gamma, sigma, count, b, g, dmax, f);
        for (int64_t l = ch; l < n; l += c) {
            t->ca[l] = k.qa, t->cb[l] = k.qb, t->cc[l] = k.qc;
            t->pa[l] = k.pa, t->pb[l] = k.pb, t->pc[l] = k.pc, t->live[l] = k.live;
        }
        return;
    }
    wg_bn_dxe k = wg_bn_dxe_init(gamma, sigma, count, b, g, dmax, f);
    for (int64_t l = ch; l < n; l += c) {
        t->qa[l] = k.qa, t->qb[l] = k.qb, t->qc[l] = k.qc;
        t->pa[l] = k.pa, t->pb[l] = k.pb, t->pc[l] = k.pc;
    }
}

WG_BN_INLINE wg_bn_dxe dxe_at(const est_tile *t, int64_t l)
{
    const wg_bn_dxe k = {t->qa[l], t->qb[l], t->qc[l], t->pa[l], t->pb[l], t->pc[l]};
    return k;
}

WG_BN_INLINE wg_bn_dxc dxc_at(const est_tile *t, int64_t l)
{
    const wg_bn_dxc k = {t->ca[l], t->cb[l], t->cc[l], t->pa[l], t->pb[l], t->pc[l], t->live[l]};
    return k;
}

/* Per channel constants of the dx element (wg_bn_dx_lin_init with this tensor's F: the
 * fallback) and of its estimate (into te). */
static void pass_bwd_chan(const int16_t *gamma, const int32_t *sigma, int64_t count, int64_t c, const int64_t *bsum,
                          const int64_t *gsum, const uint64_t *dmax, int f, bn_tile *t, est_tile *te)
{
#pragma omp parallel for schedule(static) if (c >= 32) /* each channel's its own: ~1 us of divisions */
    for (int64_t ch = 0; ch < c; ch++) {
        wg_bn_lin k = wg_bn_dx_lin_init(gamma[ch], sigma[ch], (uint64_t)count, bsum[ch], gsum[ch], dmax[ch], f);
        bn_tile_set(t, c, ch, &k, 0, 0);
        est_tile_set(te, t->n, c, ch, gamma[ch], sigma[ch], (uint64_t)count, bsum[ch], gsum[ch], dmax[ch], f);
    }
}

/* dx of one tile of n elements from element k0 into out (int64): wg_bn_dxe_elem, then
 * wg_bn_dx_fast for the elements it left undecided (about 2^-14 of them). Returns max
 * |dx| over the tile. */
WG_BN_INLINE uint64_t bwd_dx_tile(const void *dy, wg_dtype t, int64_t k0, const int16_t *restrict h,
                                  int64_t *restrict out, int64_t n, const est_tile *te, const bn_tile *tile)
{
    uint64_t mx = 0, undecided = 0;
    for (int64_t l = 0; l < n; l++) {
        const wg_bn_dxe k = dxe_at(te, l);
        int64_t ok, v = wg_bn_dxe_elem(wg_load_i64(dy, t, k0 + l), h[l], &k, &ok);
        uint64_t av = wg_abs_u64(v) & (0 - (uint64_t)ok);
        out[l] = v;
        undecided += (uint64_t)ok ^ 1;
        mx = av > mx ? av : mx;
    }
    for (int64_t l = 0; undecided && l < n; l++) {
        const wg_bn_dxe k = dxe_at(te, l);
        int64_t ok, u = wg_load_i64(dy, t, k0 + l);
        wg_bn_dxe_elem(u, h[l], &k, &ok);
        if (ok) continue;
        const wg_bn_lin kl = tile_at(tile, l);
        out[l] = wg_bn_dx_fast(u, h[l], &kl);
        uint64_t av = wg_abs_u64(out[l]);
        mx = av > mx ? av : mx;
    }
    return mx;
}

/* The compact dx of one tile of n elements (an int8 dy) into out: wg_bn_dxc_elem, then
 * wg_bn_dx_fast for the elements it left undecided. Returns the largest floor(|dx| /
 * 2^33) of the tile. */
WG_BN_INLINE uint32_t bwd_dxc_tile(const int8_t *restrict dy, const int16_t *restrict h, int32_t *restrict out,
                                   int64_t n, const est_tile *tc, const bn_tile *tile)
{
    uint32_t mx = 0, undecided = 0;
    for (int64_t l = 0; l < n; l++) {
        const wg_bn_dxc k = dxc_at(tc, l);
        int32_t ok, p = wg_bn_dxc_elem(dy[l], h[l], &k, &ok);
        uint32_t fa = wg_compact_floor_abs(p) & (0u - (uint32_t)ok);
        out[l] = p;
        undecided += (uint32_t)ok ^ 1;
        mx = fa > mx ? fa : mx;
    }
    for (int64_t l = 0; undecided && l < n; l++) {
        const wg_bn_dxc k = dxc_at(tc, l);
        int32_t ok;
        wg_bn_dxc_elem(dy[l], h[l], &k, &ok);
        if (ok) continue;
        const wg_bn_lin kl = tile_at(tile, l);
        out[l] = wg_compact(wg_bn_dx_fast(dy[l], h[l], &kl));
        uint32_t fa = wg_compact_floor_abs(out[l]);
        mx = fa > mx ? fa : mx;
    }
    return mx;
}

/* Where the dx pass puts dx: into dx (int64), compact into dx's memory (int32, an int8
 * dy only), or added into acc (int64, shifted up by sa, dx by sb: wg_error_accumulate's
 * step, residual.h) without being stored. te: the estimate's constants, for the first or
 * the other two. */
typedef struct dx_dest {
    int64_t *dx;
    bool compact;
    const est_tile *te;
    int64_t *acc;
    int sa, sb;
} dx_dest;

/* Elementwise dx into its destination; returns max |dx|, max |acc| when dx goes into
 * acc, or the largest floor(|dx| / 2^33) when compact (integer maxima: any split gives
 * them). */
static uint64_t pass_bwd_dx(const void *dy, wg_dtype dt, const int16_t *xhat, int64_t m, int64_t c, const bn_tile *t,
                            const dx_dest *to)
{
    WG_ASSERT(!to->compact || dt == WG_I8, "BN backward: compact dx from a %s dy", wg_dtype_name(dt));
    int64_t ntiles = (m + t->rows - 1) / t->rows;
    uint64_t mx = 0;
#pragma omp parallel reduction(max : mx) if (m * c >= WG_PAR_MIN)
    {
        int64_t *buf = to->acc ? bn_xmalloc((size_t)t->n * sizeof *buf) : NULL; /* a tile's dx, in L1 */
#pragma omp for schedule(static)
        for (int64_t b = 0; b < ntiles; b++) {
            int64_t k0 = b * t->n, len = b == ntiles - 1 ? m * c - k0 : t->n;
            int64_t *out = buf ? buf : to->dx + k0;
            uint64_t tm = 0;
            if (to->compact) {
                tm = bwd_dxc_tile((const int8_t *)dy + k0, xhat + k0, (int32_t *)to->dx + k0, len, to->te, t);
            } else {
#define WG_BN_DX_TILE(T) tm = bwd_dx_tile(dy, T, k0, xhat + k0, out, len, to->te, t)
                WG_BN_BY_DTYPE(dt, WG_BN_DX_TILE);
#undef WG_BN_DX_TILE
            }
            for (int64_t j = 0; buf && j < len; j += WG_ERROR_BLOCK) {
                int64_t lj = len - j < WG_ERROR_BLOCK ? len - j : WG_ERROR_BLOCK;
                uint64_t am = wg_error_accumulate_block(to->acc + k0 + j, buf + j, lj, to->sa, to->sb);
                tm = j == 0 || am > tm ? am : tm;
            }
            mx = tm > mx ? tm : mx;
        }
        free(buf);
    }
    return mx;
}

/* E2's parts from the compact dx (p, m elements): the flag split (wg_flag_split, in
 * backend_cpu.c's form: fine when |f| <= bound, else the clamped coarse value) with
 * fine NULL E1's rule into coarse alone; kc, kf: the coarse and fine shifts. */
static void split_compact(const int32_t *p, int64_t m, wg_compact_k kc, wg_compact_k kf, int32_t bound, int8_t *coarse,
                          int8_t *fine)
{
#pragma omp parallel for schedule(static) if (m >= WG_PAR_MIN)
    for (int64_t i0 = 0; i0 < m; i0 += WG_BN_TILE * 64) {
        int64_t len = m - i0 < WG_BN_TILE * 64 ? m - i0 : WG_BN_TILE * 64;
        const int32_t *restrict x = p + i0;
        int8_t *restrict co = coarse + i0;
        if (fine) {
            int8_t *restrict fi = fine + i0;
            for (int64_t i = 0; i < len; i++) {
                int32_t f = wg_compact_rne(x[i], kf), c = clamp32(wg_compact_rne(x[i], kc), bound);
                bool is_fine = f >= -bound && f <= bound;
                co[i] = (int8_t)(is_fine ? 0 : c);
                fi[i] = (int8_t)(is_fine ? f : 0);
            }
        } else {
            for (int64_t i = 0; i < len; i++) co[i] = (int8_t)clamp32(wg_compact_rne(x[i], kc), bound);
        }
    }
}

/* E2 of dx (e2: its parts and bits) from the compact dx in dx's memory, fmax the largest
 * floor(|dx| / 2^33) and dx's exponent; false, nothing written, when E2's fine shift does
 * not exceed S, or when fmax does not decide E2's scale. The scale needs only
 * npow2(max |dx|) (wg_quant_flag_plan), and max |dx| lies in [fmax 2^33, fmax 2^33 +
 * 2^33 - 1]: npow2 at both ends is one and the same except when npow2's threshold
 * 2^(k+1/2), irrational, falls inside (a chance of about 2^-29 near 2^62). */
static bool e2_from_compact(const wg_tensor *dx, uint64_t fmax, int dx_exp, const wg_bn_int_bwd_e2 *e2)
{
    uint64_t lo = fmax << WG_COMPACT_SHIFT, hi = lo | ((UINT64_C(1) << WG_COMPACT_SHIFT) - 1);
    if (fmax == 0 || wg_npow2_exp(lo) != wg_npow2_exp(hi)) return false;
    bool flag = e2->fine != NULL;
    wg_quant_plan p = flag ? wg_quant_flag_plan(dx_exp, e2->bits, lo) : wg_quant_shift_plan(dx_exp, e2->bits, lo);
    int fine_shift = flag ? p.shift - (e2->bits - 1) : p.shift;
    if (e2->bits > 8 || fine_shift <= WG_COMPACT_SHIFT || p.shift > WG_COMPACT_SHIFT + 31) return false;
    wg_compact_k kc = wg_compact_k_init(p.shift), kf = wg_compact_k_init(fine_shift);
    split_compact(dx->data, wg_tensor_numel(dx), kc, kf, (int32_t)p.bound, e2->coarse->data,
                  flag ? e2->fine->data : NULL);
    e2->coarse->exp = p.exp;
    if (flag) e2->fine->exp = p.exp - (e2->bits - 1);
    return true;
}

/* The passes once dy's exponent is known: the sums (making dy first with act), the
 * exponent rule, the per-channel constants and the dx pass, then E2 with e2, or dx
 * added into acc (see wg_bn_int_backward_act). Sets the exponents of dbeta, dgamma and
 * dx (and acc's); returns max |dx|, max |acc| with acc, WG_QUANT_MAX_UNKNOWN with e2. */
static uint64_t backward_passes(wg_tensor *dy, const bwd_act *act, const wg_tensor *gamma16,
                                const wg_bn_int_saved *saved, int64_t count, int64_t c, wg_tensor *dx,
                                const wg_bn_int_bwd_e2 *e2, wg_tensor *acc, wg_tensor *dgamma, wg_tensor *dbeta)
{
    WG_ASSERT(dy->exp > -WG_BN_EXP_LIMIT && dy->exp < WG_BN_EXP_LIMIT, "dy has exponent %d", dy->exp);
    uint64_t *dmax = bn_xmalloc((size_t)c * sizeof *dmax), *hmax = bn_xmalloc((size_t)c * sizeof *hmax);
    int64_t *bsum = dbeta->data, *gsum = dgamma->data;
    pass_bwd_sums(dy->data, dy->dtype, saved->xhat.data, count, c, act, bsum, gsum, dmax, hmax);
    int f = bn_bwd_exponent(gamma16->data, saved->sigma.data, count, c, bsum, gsum, dmax, hmax);
    bn_tile t = bn_tile_alloc(c);
    bool compact = e2 != NULL && dy->dtype == WG_I8;
    est_tile te = est_tile_alloc(t.n, compact);
    pass_bwd_chan(gamma16->data, saved->sigma.data, count, c, bsum, gsum, dmax, f, &t, &te);
    free(hmax);
    dbeta->exp = dy->exp;
    dgamma->exp = dy->exp + WG_BN_XHAT_EXP;
    dx->exp = dy->exp - 6 - f; /* gamma / sigma brings 2^(-7+15), P's unit 2^(e-14): 2^(e-6) */
    const int16_t *xhat = saved->xhat.data;
    dx_dest to = {.dx = dx->data, .compact = compact, .te = &te};
    uint64_t result;
    /* into acc when its grid and dx's are close enough for wg_error_accumulate's plain
     * step (its all-zero special case needs dx stored) */
    int gap = acc ? acc->exp - dx->exp : 0;
    if (acc && gap <= WG_ALIGN_MAX_GAP && -gap <= WG_ALIGN_MAX_GAP) {
        int e = acc->exp < dx->exp ? acc->exp : dx->exp;
        to = (dx_dest){.te = &te, .acc = acc->data, .sa = acc->exp - e, .sb = dx->exp - e};
        result = pass_bwd_dx(dy->data, dy->dtype, xhat, count, c, &t, &to);
        acc->exp = e;
    } else if (compact && e2_from_compact(dx, pass_bwd_dx(dy->data, dy->dtype, xhat, count, c, &t, &to), dx->exp, e2)) {
        result = WG_QUANT_MAX_UNKNOWN;
    } else {
        if (compact) { /* int64 after all, with its own estimate */
            est_tile_free(&te);
            te = est_tile_alloc(t.n, false);
            pass_bwd_chan(gamma16->data, saved->sigma.data, count, c, bsum, gsum, dmax, f, &t, &te);
            to.compact = false;
        }
        uint64_t dx_max = pass_bwd_dx(dy->data, dy->dtype, xhat, count, c, &t, &to);
        if (e2 && e2->fine) wg_quant_flag_max(e2->coarse, e2->fine, dx, e2->bits, dx_max);
        else if (e2) wg_quant_shift_max(e2->coarse, dx, e2->bits, dx_max);
        result = e2 ? WG_QUANT_MAX_UNKNOWN : acc ? wg_error_accumulate(acc, dx) : dx_max;
    }
    est_tile_free(&te);
    free(dmax);
    bn_tile_free(&t);
    return result;
}

/* The checks of both entries (dy of any integer container, dx int64); returns C. */
static int64_t check_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                              const wg_tensor *dx, const wg_tensor *dgamma, const wg_tensor *dbeta, int64_t *count)
{
    int64_t n, c = bn_check_act(&saved->xhat, WG_I16, NULL, "saved x-hat", count);
    bn_check_act(dy, -1, &saved->xhat, "the BN output error dy", &n);
    bn_check_act(dx, WG_I64, &saved->xhat, "the BN input error dx", &n);
    bn_check_vec(&saved->sigma, WG_I32, c, "saved sigma");
    bn_check_vec(gamma16, WG_I16, c, "gamma16");
    bn_check_vec(dgamma, WG_I64, c, "dgamma");
    bn_check_vec(dbeta, WG_I64, c, "dbeta");
    WG_ASSERT(saved->xhat.exp == WG_BN_XHAT_EXP && saved->sigma.exp == WG_BN_STAT_EXP &&
                  gamma16->exp == WG_BN_XHAT_EXP,
              "x-hat, sigma, gamma16 at e = %d, %d, %d (expected -7, -15, -7: a training forward pass first)",
              saved->xhat.exp, saved->sigma.exp, gamma16->exp);
    return c;
}

uint64_t wg_bn_int_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                            wg_tensor *dx, wg_tensor *dgamma, wg_tensor *dbeta)
{
    if (!bn_on_cpu(dy)) return bn_generic_backward(dy, gamma16, saved, dx, dgamma, dbeta);
    int64_t count, c = check_backward(dy, gamma16, saved, dx, dgamma, dbeta, &count);
    if (wg_dtype_bound(dy->dtype) > WG_BN_DY_MAX) {
        uint64_t m = dy->backend->iface->max_abs(dy->backend->ctx, dy);
        WG_ASSERT(m <= WG_BN_DY_MAX, "BN backward: max |dy| = %llu (at most %d: quantize with E1 first)",
                  (unsigned long long)m, WG_BN_DY_MAX);
    }
    wg_tensor dyv = *dy; /* read only: the passes write dy only with act */
    return backward_passes(&dyv, NULL, gamma16, saved, count, c, dx, NULL, NULL, dgamma, dbeta);
}

uint64_t wg_bn_int_backward_act(const wg_tensor *err, uint64_t err_max, int e1_bits, const wg_tensor *gamma16,
                                const wg_tensor *beta16, const wg_bn_int_saved *saved, wg_tensor *dy, wg_tensor *dx,
                                const wg_bn_int_bwd_e2 *e2, wg_tensor *acc, wg_tensor *dgamma, wg_tensor *dbeta)
{
    if (!bn_on_cpu(dy))
        return bn_generic_backward_act(err, err_max, e1_bits, gamma16, beta16, saved, dy, dx, e2, acc, dgamma, dbeta);
    int64_t count, n, c = check_backward(dy, gamma16, saved, dx, dgamma, dbeta, &count);
    WG_ASSERT(!(e2 && acc), "BN backward: E2's parts or a sum, not both%s", "");
    if (acc) bn_check_act(acc, WG_I64, &saved->xhat, "the error sum", &n);
    if (e2) {
        bn_check_act(e2->coarse, WG_I8, &saved->xhat, "E2's coarse part", &n);
        if (e2->fine) bn_check_act(e2->fine, WG_I8, &saved->xhat, "E2's fine part", &n);
    }
    bn_check_act(dy, WG_I8, &saved->xhat, "the BN output error dy", &n);
    bn_check_act(err, -1, &saved->xhat, "the error at the activation", &n);
    bn_check_vec(beta16, WG_I16, c, "beta16");
    WG_ASSERT(beta16->exp == WG_BN_XHAT_EXP, "beta16 at e = %d, expected -7", beta16->exp);
    WG_ASSERT(e1_bits >= 2 && e1_bits <= 8, "E1 into int8: %d bits (expected 2..8)", e1_bits);
    if (err_max == WG_QUANT_MAX_UNKNOWN) err_max = err->backend->iface->max_abs(err->backend->ctx, err);
    /* E1: on the fast path inside the sums pass, else the backend's pass first */
    wg_quant_plan e1 = wg_quant_shift_plan(err->exp, e1_bits, err_max);
    bwd_act act = {.bound = e1.bound};
    if (err->dtype == WG_I64 && e1.shift >= 0 && e1.shift <= 63) {
        act.err = err->data;
        act.k = rne64_init(e1.shift);
    } else if (err->dtype == WG_I32 && e1.shift >= 0 && e1.shift <= 31) {
        act.err32 = err->data;
        act.k32 = rne32_init(e1.shift);
    } else {
        wg_quant_shift_max(dy, err, e1_bits, err_max);
    }
    dy->exp = e1.exp;
    /* ReLU's constants per element of a tile: gamma16 and beta16 2^7 of channel l % C */
    int64_t tn = tile_rows(c) * c;
    act.gamma = bn_xmalloc(2 * (size_t)tn * sizeof *act.gamma);
    act.b128 = act.gamma + tn;
    const int16_t *g16 = gamma16->data, *b16 = beta16->data;
    for (int64_t l = 0; l < tn; l++) {
        act.gamma[l] = g16[l % c];
        act.b128[l] = b16[l % c] * 128;
    }
    uint64_t dx_max = backward_passes(dy, &act, gamma16, saved, count, c, dx, e2, acc, dgamma, dbeta);
    free(act.gamma);
    return dx_max;
}
