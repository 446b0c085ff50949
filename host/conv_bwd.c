/* conv_bwd.c: the int8 convolution's backward passes (conv.h's wg_conv_s8_backward;
 * docs/numerics.md 7.4): backward-data as a convolution of the error with the flipped
 * weights (stride 1) or by column GEMM and col2im (any stride), and backward-weight,
 * each block by block (conv_impl.h: the dimension legend and the blocks). */
#include "conv_impl.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu_ops.h"
#include "check.h"
#include "gemm.h"
#include "quant.h"

/* ---- backward-data as a convolution (stride 1) ----------------------------------
 * With stride 1, dx[n][ih][iw][ch] = sum over o, i, j of err[n][ih + pad - i][iw + pad - j][o]
 * * w[o][i][j][ch], the error read as zero outside its oh x ow: a convolution of the
 * error (o channels) with the flipped, transposed kernel wt[ch][kh-1-i][kw-1-j][o] and
 * padding kh - 1 - pad, whose output is h x w. It runs as the forward pass does, block
 * by block, and reads and writes no kh * kw * c column matrix of int32. Each part's
 * GEMM sums kh * kw * o products of magnitude <= 127^2 (within WG_GEMM_S8_MAX_K: exact
 * int32), and the parts are combined exactly in int64: the same integer sums as the
 * column GEMM and col2im of the other path. Square kernels with pad < kh only (then
 * the padding is one non-negative number). */
static bool bwd_data_conv_geom(const wg_conv_geom *g, wg_conv_geom *gt)
{
    if (g->stride != 1 || g->kh != g->kw || g->pad > g->kh - 1 || g->kh * g->kw * g->o > WG_GEMM_S8_MAX_K) return false;
    *gt = (wg_conv_geom){.n = g->n, .h = g->oh, .w = g->ow, .c = g->o, .o = g->c, .kh = g->kh, .kw = g->kw,
                         .stride = 1, .pad = (int)g->kh - 1 - g->pad, .oh = g->h, .ow = g->w,
                         .rows = g->n * g->h * g->w, .kdim = g->kh * g->kw * g->o};
    /* the output size rule of wg_conv_geom_init gives back h x w */
    WG_ASSERT(gt->h + 2 * (int64_t)gt->pad - gt->kh + 1 == g->h && gt->w + 2 * (int64_t)gt->pad - gt->kw + 1 == g->w,
              "transposed convolution geometry");
    return true;
}

/* wt[ch][i][j][o] = w[o][kh-1-i][kw-1-j][ch]. */
static void flip_weights(const wg_conv_geom *g, const int8_t *w, int8_t *wt)
{
    for (int64_t ch = 0; ch < g->c; ch++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                for (int64_t o = 0; o < g->o; o++)
                    wt[((ch * g->kh + i) * g->kw + j) * g->o + o] =
                        w[((o * g->kh + (g->kh - 1 - i)) * g->kw + (g->kw - 1 - j)) * g->c + ch];
}

/* Bytes of the transposed path's scratch: the flipped weights, then per thread a block's
 * im2col matrix of the error and its int32 output. */
static size_t bwd_conv_wt_bytes(const wg_conv_geom *gt) { return round64((size_t)(gt->o * gt->kdim)); }

static size_t bwd_conv_per_thread(const wg_conv_geom *gt, int64_t images)
{
    return conv_forward_col_bytes(gt, images) + round64((size_t)(images * gt->oh * gt->ow * gt->o) * sizeof(int32_t));
}

/* dx (int64 [n][h][w][c], or int32 when dx32: wg_conv_s8_dx_fits_s32; at e_w + e_min) =
 * sum over the parts of conv(err_p, wt) * 2^(e_p - e_min); gt from bwd_data_conv_geom, b
 * its blocks. */
static uint64_t backward_data_conv(const wg_conv_geom *g, const wg_conv_geom *gt, const wg_tensor *w,
                                   const wg_tensor *const *err, int nparts, int e_min, void *dx, bool dx32,
                                   char *scratch, img_blocks b)
{
    uint64_t mx = 0; /* max |dx| of an int32 dx, block by block (integers: any split) */
    int8_t *wt = (int8_t *)scratch;
    flip_weights(g, w->data, wt);
    char *blocks = scratch + bwd_conv_wt_bytes(gt);
    size_t per_thread = bwd_conv_per_thread(gt, b.per_block), col_size = conv_forward_col_bytes(gt, b.per_block);
    int64_t per_image = g->h * g->w;
#pragma omp parallel num_threads(b.threads) if (b.threads > 1) reduction(max : mx)
    {
        char *mine = blocks + per_thread * (size_t)thread_num();
        int8_t *col = (int8_t *)mine;
        int32_t *tmp = (int32_t *)(mine + col_size);
        char *padded = conv_padded_alloc(gt, 1);
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t nt = nimg * per_image * g->c;
            int64_t off = img0 * per_image * g->c, *out = (int64_t *)dx + off;
            int32_t *out32 = (int32_t *)dx + off;
            /* int32 with two parts: both products of each block summed in L1 (AMX) */
            size_t in_off = (size_t)(img0 * gt->h * gt->w * gt->c);
            bool paired = dx32 && nparts == 2 && !is_pointwise(gt) &&
                          wg_gemm_s8_conv_s1_pair(nimg, gt->h, gt->w, gt->c, gt->o, gt->kh, gt->kw, gt->pad,
                                                  (const int8_t *)err[0]->data + in_off, err[0]->exp - e_min,
                                                  (const int8_t *)err[1]->data + in_off, err[1]->exp - e_min, wt,
                                                  out32);
            for (int p = 0; p < nparts && !paired; p++) {
                int64_t scale = INT64_C(1) << (err[p]->exp - e_min);
                conv_forward_block(gt, err[p]->data, wt, img0, nimg, col, padded, tmp);
                if (dx32 && p == 0) /* the products and sums fit int32 (wg_conv_s8_dx_fits_s32) */
                    for (int64_t i = 0; i < nt; i++) out32[i] = (int32_t)(tmp[i] * scale);
                else if (dx32)
                    for (int64_t i = 0; i < nt; i++) out32[i] += (int32_t)(tmp[i] * scale);
                else if (p == 0)
                    for (int64_t i = 0; i < nt; i++) out[i] = (int64_t)tmp[i] * scale;
                else
                    for (int64_t i = 0; i < nt; i++) out[i] += (int64_t)tmp[i] * scale;
            }
            if (dx32) { /* the block is in cache */
                uint32_t bm = 0; /* |INT32_MIN| fits uint32 */
                for (int64_t i = 0; i < nt; i++) {
                    uint32_t a = out32[i] < 0 ? 0u - (uint32_t)out32[i] : (uint32_t)out32[i];
                    bm = a > bm ? a : bm;
                }
                mx = bm > mx ? bm : mx;
            }
        }
        free(padded);
    }
    return dx32 ? mx : WG_QUANT_MAX_UNKNOWN;
}

/* ---- backward-data by column GEMM and col2im (any stride) ------------------------- */

/* Bytes of backward-data's scratch per thread: a block's dcol, then a row of w * c int64. */
static size_t bwd_data_per_thread(const wg_conv_geom *g, const img_blocks *b)
{
    return round64((size_t)(b->per_block * g->oh * g->ow * g->kdim) * sizeof(int32_t)) +
           round64((size_t)(g->w * g->c) * sizeof(int64_t));
}

/* dx (int64, at e_w + e_min) from the error parts, block by block: per block the
 * column GEMM(s) into dcol (int32, rows x kdim), then col2im. scratch: per_thread
 * bytes for each of b.threads threads. */
static void backward_data_col(const wg_conv_geom *g, const wg_tensor *w, const wg_tensor *const *err, int nparts,
                              int e_min, int64_t *dx, char *scratch, img_blocks b)
{
    WG_ASSERT(g->o <= WG_GEMM_S8_MAX_K, "backward-data sums over %lld filters", (long long)g->o);
    /* The parts can share one int32 column buffer (the coarser one scaled up before
     * the finer accumulates) when every column sum stays below 2^31: o products of
     * 127 with a part value below 127 * (2^shift + 1). One col2im pass then serves
     * both; otherwise each part takes its own. */
    int64_t span = 0;
    for (int p = 0; p < nparts; p++) span = err[p]->exp - e_min > span ? err[p]->exp - e_min : span;
    bool shared = nparts == 2 && span <= 8 && g->o * 127 * 127 * ((INT64_C(1) << span) + 1) < INT64_C(2147483647);
    int coarse = nparts == 2 && err[1]->exp > err[0]->exp ? 1 : 0;
    int up = err[coarse]->exp - e_min; /* the coarse part's columns scaled by 2^up */
    int64_t per_image = g->oh * g->ow;
    size_t per_thread = bwd_data_per_thread(g, &b);
    size_t acc_off = per_thread - round64((size_t)(g->w * g->c) * sizeof(int64_t));
    /* |dcol| <= o * 127^2 per part (times 2^span + 1 when shared): the sum of a pixel's
     * kh * kw taps fits int32 below that bound. */
    int64_t dcol_max = g->o * 127 * 127 * (shared ? (INT64_C(1) << span) + 1 : 1);
    bool acc32 = g->kh * g->kw * dcol_max <= INT64_C(2147483647);
    tap_rows tr = conv_tap_rows_init(g);
    tap_cols tc = conv_tap_cols_init(g);
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        char *mine = scratch + per_thread * (size_t)thread_num();
        int32_t *tmp = (int32_t *)mine;
        void *acc = mine + acc_off;
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t r0 = img0 * per_image, nr = nimg * per_image, nt = nr * g->kdim;
            if (shared) {
                wg_gemm_s8_nn_overwrite(nr, g->kdim, g->o, (const int8_t *)err[coarse]->data + r0 * g->o, g->o,
                                        w->data, g->kdim, tmp, g->kdim);
                if (up > 0) /* times 2^up as a shift of the bits: the product fits int32 (the bound above) */
                    for (int64_t i = 0; i < nt; i++) tmp[i] = (int32_t)((uint32_t)tmp[i] << up);
                wg_gemm_s8_nn(nr, g->kdim, g->o, (const int8_t *)err[1 - coarse]->data + r0 * g->o, g->o, w->data,
                              g->kdim, tmp, g->kdim);
                if (acc32) conv_col2im_gather_acc32(g, &tr, &tc, tmp, img0, nimg, dx, 1, false, acc);
                else conv_col2im_gather_acc64(g, &tr, &tc, tmp, img0, nimg, dx, 1, false, acc);
            } else {
                for (int p = 0; p < nparts; p++) {
                    int64_t part_scale = INT64_C(1) << (err[p]->exp - e_min);
                    wg_gemm_s8_nn_overwrite(nr, g->kdim, g->o, (const int8_t *)err[p]->data + r0 * g->o, g->o,
                                            w->data, g->kdim, tmp, g->kdim);
                    if (acc32) conv_col2im_gather_acc32(g, &tr, &tc, tmp, img0, nimg, dx, part_scale, p > 0, acc);
                    else conv_col2im_gather_acc64(g, &tr, &tc, tmp, img0, nimg, dx, part_scale, p > 0, acc);
                }
            }
        }
    }
    conv_tap_rows_free(&tr);
    conv_tap_cols_free(&tc);
}

/* ---- backward-weight -------------------------------------------------------------
 * dw[o][k] = sum over the parts p of 2^(e_p - e_min) * sum over rows r of
 * err_p[r][o] * col[r][k]. Threads take blocks of whole images. A block's rows of the
 * im2col matrix are not built: row r is kh runs of kw * c bytes of the input, one per
 * kernel row, each contiguous in x (or in a zero-bordered copy of the image when padded,
 * as conv_im2col_images reads them), and wg_gemm_s8_tn_gather packs them from there,
 * once for both parts. (Runs shorter than 16 bytes, such as the stem's 3 taps x 1
 * channel, would each cost a 16-column step of packing: those blocks are built by
 * conv_im2col_images and gathered a whole row at a time.) The products add into the thread's int32 sums
 * acc32[p][o][k], which cover at most WG_GEMM_S8_MAX_K rows (exact: docs/numerics.md
 * 7.4); before more rows would go in, they are added into the thread's int64 sums and
 * restart from zero. At the end each element of dw is the int64 sum of every thread's
 * sums, scaled by part: integer sums, exact, so neither the blocks nor which thread took
 * which changes a bit. */

/* Whether backward-weight gathers its rows from the input (else from im2col's rows). */
static bool dw_gathers(const wg_conv_geom *g) { return g->kh == 1 || g->kw * g->c >= 16; }

/* Bytes of backward-weight's scratch per thread: the block's padded images (none
 * without padding), its im2col matrix (only when !dw_gathers), its rows' pointers, the
 * GEMM's packing buffers, acc32, then acc64 (only when a thread can see more than
 * WG_GEMM_S8_MAX_K rows). */
typedef struct bwd_weight_layout {
    size_t padded, col, brow, pack, acc32, acc64, per_thread;
} bwd_weight_layout;

static size_t padded_image_bytes(const wg_conv_geom *g)
{
    return (size_t)((g->h + 2 * (int64_t)g->pad) * (g->w + 2 * (int64_t)g->pad) * g->c);
}

static bwd_weight_layout bwd_weight_layout_of(const wg_conv_geom *g, int nparts, const img_blocks *b)
{
    size_t nacc = (size_t)nparts * (size_t)(g->o * g->kdim);
    bwd_weight_layout l = {
        .padded = g->pad > 0 ? round64((size_t)b->per_block * padded_image_bytes(g)) : 0,
        .col = dw_gathers(g) ? 0 : conv_forward_col_bytes(g, b->per_block),
        .brow = round64((size_t)(b->per_block * g->oh * g->ow) * sizeof(const int8_t *)),
        .pack = round64(wg_gemm_s8_tn_gather_scratch(g->o, g->kdim, nparts)),
        .acc32 = round64(nacc * sizeof(int32_t)),
        .acc64 = g->rows > WG_GEMM_S8_MAX_K ? round64(nacc * sizeof(int64_t)) : 0};
    l.per_thread = l.padded + l.col + l.brow + l.pack + l.acc32 + l.acc64;
    return l;
}

/* The blocks of conv_img_blocks_of, resized so that their count divides among the
 * threads (16 blocks of 8 images for 2 threads, not 15 of 9): no thread waits on one
 * more. */
static img_blocks img_blocks_even(const wg_conv_geom *g, img_blocks b)
{
    if (b.threads <= 1 || b.count % b.threads == 0) return b;
    int64_t count = (b.count + b.threads - 1) / b.threads * b.threads;
    int64_t per = (g->n + count - 1) / count;
    return (img_blocks){per, (g->n + per - 1) / per, b.threads};
}

/* brow[r] for the rows of the nimg images from img0: where row r's first run starts
 * (kernel row 0); the others follow *run_ld bytes apart. padded: l.padded bytes, zero
 * but for the interiors, which this writes. Without dw_gathers, the rows of col, which
 * this fills by conv_im2col_images (one run per row). */
static void gather_rows(const wg_conv_geom *g, const int8_t *x, int64_t img0, int64_t nimg, int8_t *padded,
                        int8_t *col, const int8_t **brow, int64_t *run_ld)
{
    if (!dw_gathers(g)) {
        conv_im2col_images(g, x, img0, nimg, col, 1, (char *)padded);
        for (int64_t r = 0; r < nimg * g->oh * g->ow; r++) brow[r] = col + r * g->kdim;
        *run_ld = g->kdim;
        return;
    }
    int64_t pw = g->w + 2 * (int64_t)g->pad, c = g->c;
    *run_ld = pw * c;
    for (int64_t im = 0; im < nimg; im++) {
        const int8_t *src = x + (img0 + im) * g->h * g->w * c;
        if (g->pad > 0) {
            int8_t *dst = padded + (size_t)im * padded_image_bytes(g);
            for (int64_t ih = 0; ih < g->h; ih++)
                memcpy(dst + ((ih + g->pad) * pw + g->pad) * c, src + ih * g->w * c, (size_t)(g->w * c));
            src = dst;
        }
        for (int64_t oh = 0; oh < g->oh; oh++)
            for (int64_t ow = 0; ow < g->ow; ow++)
                *brow++ = src + (oh * g->stride * pw + ow * g->stride) * c;
    }
}

/* One thread's sums: acc32 (nacc int32, rows32 rows in it) and acc64 (nacc int64, used
 * once spilled). */
typedef struct dw_sums {
    int32_t *acc32;
    int64_t *acc64;
    int64_t nacc, rows32;
    bool spilled;
} dw_sums;

static void dw_sums_spill(dw_sums *s)
{
    if (!s->spilled) memset(s->acc64, 0, (size_t)s->nacc * sizeof(int64_t));
    for (int64_t i = 0; i < s->nacc; i++) s->acc64[i] += s->acc32[i];
    memset(s->acc32, 0, (size_t)s->nacc * sizeof(int32_t));
    s->spilled = true;
    s->rows32 = 0;
}

/* dw (int64 [o][kdim], at e_x + e_min) from the parts; scratch: l.per_thread bytes for
 * each of b.threads threads. */
static void backward_weight(const wg_conv_geom *g, const int8_t *x, const wg_tensor *const *err, int nparts,
                            int e_min, int64_t *dw, char *scratch, img_blocks b, bwd_weight_layout l)
{
    int64_t per_image = g->oh * g->ow, nw = g->o * g->kdim;
    int nruns = dw_gathers(g) ? (int)g->kh : 1; /* runs of kdim / nruns bytes per row */
    dw_sums *sums = malloc((size_t)b.threads * sizeof *sums);
    WG_ASSERT(sums != NULL, "out of memory for %d threads' sums", b.threads);
    int team = 1;
#pragma omp parallel num_threads(b.threads) if (b.threads > 1)
    {
        int t = thread_num();
        char *mine = scratch + l.per_thread * (size_t)t;
        int8_t *padded = (int8_t *)mine, *col = (int8_t *)(mine + l.padded);
        const int8_t **brow = (const int8_t **)(mine + l.padded + l.col);
        char *pack = mine + l.padded + l.col + l.brow;
        dw_sums *s = &sums[t];
        *s = (dw_sums){(int32_t *)(pack + l.pack), (int64_t *)(pack + l.pack + l.acc32), nparts * nw, 0, false};
        memset(padded, 0, l.padded);
        memset(s->acc32, 0, (size_t)s->nacc * sizeof(int32_t));
#ifdef _OPENMP
        if (t == 0) team = omp_get_num_threads();
#endif
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < b.count; blk++) {
            int64_t img0 = blk * b.per_block, nimg = g->n - img0 < b.per_block ? g->n - img0 : b.per_block;
            int64_t r0 = img0 * per_image, nr = nimg * per_image, run_ld;
            gather_rows(g, x, img0, nimg, padded, col, brow, &run_ld);
            for (int64_t k0 = 0; k0 < nr; k0 += WG_GEMM_S8_MAX_K) {
                int64_t kr = nr - k0 < WG_GEMM_S8_MAX_K ? nr - k0 : WG_GEMM_S8_MAX_K;
                if (s->rows32 + kr > WG_GEMM_S8_MAX_K) dw_sums_spill(s);
                const int8_t *parts[2];
                for (int p = 0; p < nparts; p++) parts[p] = (const int8_t *)err[p]->data + (r0 + k0) * g->o;
                wg_gemm_s8_tn_gather(g->o, kr, nparts, parts, g->o, brow + k0, nruns, g->kdim / nruns, run_ld,
                                     s->acc32, g->kdim, pack);
                s->rows32 += kr;
            }
        }
        /* the implicit barrier of the loop above: every thread's sums are final */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nw; i++) {
            int64_t sum = 0;
            for (int p = 0; p < nparts; p++) {
                int64_t part = 0;
                for (int u = 0; u < team; u++)
                    part += (int64_t)sums[u].acc32[p * nw + i] + (sums[u].spilled ? sums[u].acc64[p * nw + i] : 0);
                sum += part * (INT64_C(1) << (err[p]->exp - e_min));
            }
            dw[i] = sum;
        }
    }
    free(sums);
}

bool wg_conv_s8_dx_fits_s32(const wg_conv_geom *g, int span)
{
    wg_conv_geom gt;
    /* |dx| <= kdim * 127 * 127 * 2^span (each error element is in one part), below the
     * bound that also covers the coarse part's products before the fine one adds */
    return span >= 0 && span <= 16 && bwd_data_conv_geom(g, &gt) &&
           gt.kdim * 127 * 127 * ((INT64_C(1) << span) + 1) <= INT64_C(2147483647);
}

uint64_t wg_conv_s8_backward(const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                             const wg_tensor *const *err, int nparts, wg_tensor *dx, wg_tensor *dw, wg_conv_ws *ws)
{
    conv_check_geom(g, x, w, WG_I8, WG_I8);
    WG_ASSERT(nparts >= 1 && nparts <= 2, "%d error parts", nparts);
    int e_min = err[0]->exp;
    for (int p = 0; p < nparts; p++) {
        WG_ASSERT(err[p]->dtype == WG_I8 && wg_tensor_numel(err[p]) == g->rows * g->o, "error part %d", p);
        e_min = err[p]->exp < e_min ? err[p]->exp : e_min;
    }
    int span = 0; /* the parts' exponent span */
    for (int p = 0; p < nparts; p++) {
        WG_ASSERT(err[p]->exp - e_min <= 16, "error parts %d grids apart", err[p]->exp - e_min);
        span = err[p]->exp - e_min > span ? err[p]->exp - e_min : span;
    }
    WG_ASSERT(dw->dtype == WG_I64 && wg_tensor_numel(dw) == wg_tensor_numel(w), "convolution dw");
    WG_ASSERT(dx == NULL || ((dx->dtype == WG_I64 || (dx->dtype == WG_I32 && wg_conv_s8_dx_fits_s32(g, span))) &&
                             wg_tensor_numel(dx) == wg_tensor_numel(x)),
              "convolution dx (%s)", wg_dtype_name(dx->dtype));
    uint64_t dx_max = WG_BACKEND_OP(x, conv_s8_backward)(x->backend->ctx, g, x, w, err, nparts, e_min, dx, dw, ws);
    dx_max = wg_backend_sync_max(x->backend, dx_max);
    if (dx) dx->exp = w->exp + e_min;
    dw->exp = x->exp + e_min;
    return dx_max;
}

/* The CPU backend's backward pass (backend.h's conv_s8_backward). */
uint64_t wg_cpu_conv_s8_backward(void *ctx, const wg_conv_geom *g, const wg_tensor *x, const wg_tensor *w,
                                 const wg_tensor *const *err, int nparts, int e_min, wg_tensor *dx, wg_tensor *dw,
                                 wg_conv_ws *ws)
{
    (void)ctx;
    uint64_t dx_max = WG_QUANT_MAX_UNKNOWN;
    /* Workspace: backward-data's scratch (see its paths), then backward-weight's. */
    wg_conv_geom gt;
    bool as_conv = dx != NULL && bwd_data_conv_geom(g, &gt);
    img_blocks b = {0};
    size_t scratch = 0;
    if (as_conv) {
        b = conv_img_blocks_of(&gt, bwd_conv_per_thread(&gt, 1));
        scratch = bwd_conv_wt_bytes(&gt) + bwd_conv_per_thread(&gt, b.per_block) * (size_t)b.threads;
    } else if (dx != NULL) {
        b = conv_img_blocks_of(g, (size_t)(g->oh * g->ow * g->kdim) * sizeof(int32_t));
        scratch = bwd_data_per_thread(g, &b) * (size_t)b.threads;
    }
    img_blocks bw = img_blocks_even(g, conv_img_blocks_of(g, (size_t)(g->oh * g->ow * g->kdim)));
    bwd_weight_layout lw = bwd_weight_layout_of(g, nparts, &bw);
    size_t wbytes = lw.per_thread * (size_t)bw.threads;
    char *buf = conv_ws_reserve(ws, scratch > wbytes ? scratch : wbytes);

    if (dx != NULL) {
        bool dx32 = dx->dtype == WG_I32;
        if (as_conv) dx_max = backward_data_conv(g, &gt, w, err, nparts, e_min, dx->data, dx32, buf, b);
        else backward_data_col(g, w, err, nparts, e_min, dx->data, buf, b);
    }
    backward_weight(g, x->data, err, nparts, e_min, dw->data, buf, bw, lw);
    return dx_max;
}
