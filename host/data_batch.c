/* data_batch.c: the epoch order, the augmentation draws and batch assembly.
 *
 * All randomness is Philox4x32-10 keyed by the run seed (wg_philox.h), with
 * counters that name what is drawn (docs/numerics.md, section 10):
 *
 *   shuffle:  counter (position i, round, WG_DATA_STREAM_SHUFFLE, epoch)
 *   augment:  counter (sample index, purpose * 2^24 + round, WG_DATA_STREAM_AUGMENT, epoch)
 *             purpose 0 = flip, 1 = crop row offset, 2 = crop column offset
 *
 * A bounded draw in [0, r) takes the block's four words in order, then the next
 * round's block: Lemire's multiply-shift, u * r / 2^32, which is exactly uniform
 * once words whose low product word is below 2^32 mod r are rejected. Integers
 * only, so it is the same on every machine.
 *
 * Batches are NHWC, [count][H][W][C]. A sample's output pixel (y, x) is the
 * padded image's pixel (y + oy, x' + ox), x' = W-1-x when flipped (crop, then
 * flip), where the padded image has `pad` pixels of normalized value 0 (the
 * channel mean) on each side. Each pixel is a lookup in the dataset's tables. */
#include "data.h"

#include "check.h"
#include "wg_philox.h"

#define WG_AUG_PURPOSE_SHIFT 24
#define WG_AUG_FLIP 0u
#define WG_AUG_CROP_Y 1u
#define WG_AUG_CROP_X 2u

/* Uniform in [0, range), range >= 1, from the blocks (c0, c1 + round, stream, c3). */
static uint32_t wg_data_draw_bounded(wg_philox_key key, uint32_t c0, uint32_t c1, uint32_t stream, uint32_t c3,
                                     uint32_t range)
{
    uint32_t reject_below = (uint32_t)(0u - range) % range; /* 2^32 mod range */
    for (uint32_t round = 0;; round++) {
        wg_u32x4 c = {{c0, c1 + round, stream, c3}};
        wg_u32x4 r = wg_philox4x32_10(c, key);
        for (int k = 0; k < 4; k++) {
            uint64_t m = (uint64_t)r.v[k] * range;
            if ((uint32_t)m >= reject_below) return (uint32_t)(m >> 32);
        }
    }
}

void wg_data_epoch_order(int64_t n, uint64_t seed, uint32_t epoch, int64_t *order)
{
    WG_ASSERT(n >= 0 && n <= (int64_t)UINT32_MAX, "n = %lld", (long long)n);
    wg_philox_key key = wg_philox_key_from_seed(seed);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i >= 1; i--) { /* Fisher-Yates: order[i] from the first i + 1 */
        int64_t j = wg_data_draw_bounded(key, (uint32_t)i, 0, WG_DATA_STREAM_SHUFFLE, epoch, (uint32_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

wg_aug_params wg_data_aug_draw(wg_augment aug, uint64_t seed, uint32_t epoch, int64_t index)
{
    WG_ASSERT(aug.pad >= 0 && aug.pad <= WG_DATA_MAX_PAD, "pad = %d", aug.pad);
    WG_ASSERT(index >= 0 && index <= (int64_t)UINT32_MAX, "index = %lld", (long long)index);
    wg_aug_params p = {0, 0, 0};
    wg_philox_key key = wg_philox_key_from_seed(seed);
    uint32_t s = (uint32_t)index;
    if (aug.flip)
        p.flip = (int)wg_data_draw_bounded(key, s, WG_AUG_FLIP << WG_AUG_PURPOSE_SHIFT, WG_DATA_STREAM_AUGMENT,
                                           epoch, 2);
    if (aug.pad > 0) {
        uint32_t r = 2 * (uint32_t)aug.pad + 1;
        p.oy = (int)wg_data_draw_bounded(key, s, WG_AUG_CROP_Y << WG_AUG_PURPOSE_SHIFT, WG_DATA_STREAM_AUGMENT,
                                         epoch, r);
        p.ox = (int)wg_data_draw_bounded(key, s, WG_AUG_CROP_X << WG_AUG_PURPOSE_SHIFT, WG_DATA_STREAM_AUGMENT,
                                         epoch, r);
    }
    return p;
}

/* One sample into o8 (int8) or of (float32): exactly one of them is non-NULL. */
static void wg_data_sample(const wg_dataset *ds, int64_t index, wg_aug_params p, int pad, int8_t *o8, float *of)
{
    const int h = ds->h, w = ds->w, c = ds->c;
    const uint8_t *img = ds->images + (size_t)index * (size_t)h * (size_t)w * (size_t)c;
    for (int y = 0; y < h; y++) {
        int sy = y + p.oy - pad;
        for (int x = 0; x < w; x++) {
            int sx = (p.flip ? w - 1 - x : x) + p.ox - pad;
            size_t o = ((size_t)y * (size_t)w + (size_t)x) * (size_t)c;
            bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
            const uint8_t *px = inside ? img + ((size_t)sy * (size_t)w + (size_t)sx) * (size_t)c : NULL;
            for (int ch = 0; ch < c; ch++) {
                if (o8) o8[o + ch] = px ? ds->norm.q[ch][px[ch]] : 0;
                else of[o + ch] = px ? ds->norm.f[ch][px[ch]] : 0.0f;
            }
        }
    }
}

static void wg_data_batch(const wg_dataset *ds, const int64_t *idx, int64_t count, wg_augment aug, uint64_t seed,
                          uint32_t epoch, int8_t *o8, float *of)
{
    WG_ASSERT(ds->norm.c == ds->c, "%s: normalization not set (wg_dataset_set_norm)", ds->name);
    WG_ASSERT(count >= 0, "count = %lld", (long long)count);
    size_t img = (size_t)ds->h * (size_t)ds->w * (size_t)ds->c;
    for (int64_t i = 0; i < count; i++) {
        WG_ASSERT(idx[i] >= 0 && idx[i] < ds->n, "%s: sample %lld of %lld", ds->name, (long long)idx[i],
                  (long long)ds->n);
        wg_aug_params p = wg_data_aug_draw(aug, seed, epoch, idx[i]);
        wg_data_sample(ds, idx[i], p, aug.pad, o8 ? o8 + (size_t)i * img : NULL, of ? of + (size_t)i * img : NULL);
    }
}

void wg_data_batch_int8(const wg_dataset *ds, const int64_t *idx, int64_t count, wg_augment aug, uint64_t seed,
                        uint32_t epoch, int8_t *out, int *exp)
{
    wg_data_batch(ds, idx, count, aug, seed, epoch, out, NULL);
    *exp = ds->norm.exp;
}

void wg_data_batch_f32(const wg_dataset *ds, const int64_t *idx, int64_t count, wg_augment aug, uint64_t seed,
                       uint32_t epoch, float *out)
{
    wg_data_batch(ds, idx, count, aug, seed, epoch, NULL, out);
}

void wg_data_batch_labels(const wg_dataset *ds, const int64_t *idx, int64_t count, uint8_t *out)
{
    for (int64_t i = 0; i < count; i++) {
        WG_ASSERT(idx[i] >= 0 && idx[i] < ds->n, "%s: sample %lld of %lld", ds->name, (long long)idx[i],
                  (long long)ds->n);
        out[i] = ds->labels[idx[i]];
    }
}
