/* data.h: image datasets, epoch order, augmentation and input batches.
 *
 * Readers: IDX (MNIST, Fashion-MNIST; gzip-compressed or plain) and the CIFAR-10
 * binary version. Both produce a wg_dataset of raw 8-bit pixels in HWC order. The
 * input normalization (docs/numerics.md, section 10) turns a pixel into an int8 at
 * one exponent fixed per dataset, through a 256-entry table per channel computed
 * once at load, so the per-pixel work of a batch is a table lookup.
 *
 * Randomness (the epoch order and the augmentation) comes from Philox4x32-10
 * keyed by the run seed (wg_philox.h), with counters that name the sample or the
 * position, never a generator's state: a sample's flip and crop depend only on
 * (seed, epoch, sample index), not on the batch it lands in or the thread that
 * assembles it.
 *
 * Dimension legend: N images, H height, W width, C channels. Pixels are
 * [N][H][W][C], contiguous, innermost last; batches are NHWC likewise.
 *
 * Errors in what a user gave us (a dataset file, a root directory, a format name,
 * a split size) return false with a message in err naming the file, the byte
 * offset or field, and what was expected. Internal misuse (an index out of range)
 * aborts (check.h). */
#ifndef WG_DATA_H
#define WG_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WG_DATA_MAX_CHANNELS 3
#define WG_DATA_NAME_MAX 512
#define WG_DATA_NUM_CLASSES 10   /* MNIST, Fashion-MNIST, CIFAR-10 */
#define WG_DATA_MAX_SIDE 4096    /* largest accepted image height or width */
#define WG_DATA_MAX_PAD 64       /* largest pad of the pad-and-crop augmentation */
#define WG_DATA_EXP_FLOOR (-7)   /* the finest exponent the input may get */

/* Philox stream ids (the counter word a quantizer uses for its tensor id) reserved
 * for the data pipeline: tensor ids >= WG_DATA_STREAM_BASE must not be assigned
 * to tensors (docs/numerics.md, section 10). */
#define WG_DATA_STREAM_BASE 0xDA7A0000u
#define WG_DATA_STREAM_SHUFFLE 0xDA7A0001u
#define WG_DATA_STREAM_AUGMENT 0xDA7A0002u

/* The per-channel input normalization x = (v / 255 - mean) / std of a pixel v,
 * and its int8 form q = RNE(x * 2^-exp), as tables over v = 0..255. */
typedef struct wg_norm {
    char name[16];                                   /* e.g. the preset: "fashion-mnist", "mnist", "cifar10" */
    int c;                                           /* channels it applies to */
    double mean[WG_DATA_MAX_CHANNELS];               /* of v / 255, per channel */
    double std[WG_DATA_MAX_CHANNELS];
    int exp;                                         /* int8 exponent, fixed per dataset (>= -7) */
    int8_t q[WG_DATA_MAX_CHANNELS][256];             /* int8 value of pixel v in channel c */
    float f[WG_DATA_MAX_CHANNELS][256];              /* float32 value of pixel v in channel c */
} wg_norm;

typedef struct wg_dataset {
    char name[WG_DATA_NAME_MAX]; /* for messages, e.g. "/usr/share/datasets/fashion-mnist (train)" */
    int64_t n;                   /* N images (< 2^32) */
    int h, w, c;                 /* H, W, C of every image */
    int num_classes;
    uint8_t *images;             /* [N][H][W][C] raw pixels 0..255 */
    uint8_t *labels;             /* [N], each < num_classes */
    wg_norm norm;                /* set by wg_dataset_load / wg_dataset_set_norm */
} wg_dataset;

/* Augmentation of training batches. Evaluation batches pass WG_AUGMENT_NONE. */
typedef struct wg_augment {
    bool flip; /* horizontal flip with probability 1/2 */
    int pad;   /* pad by `pad` zeros (in the normalized sense: the channel mean) on each
                  side, then crop H x W at a uniform offset; 0..WG_DATA_MAX_PAD */
} wg_augment;

#define WG_AUGMENT_NONE ((wg_augment){false, 0})

/* One sample's augmentation draw: out(y, x) = padded(y + oy, x' + ox) with
 * x' = W-1-x when flip, else x; oy, ox in [0, 2 pad]. */
typedef struct wg_aug_params {
    int flip;
    int oy, ox;
} wg_aug_params;

/* ---- loading (data.c, data_idx.c, data_cifar.c) ---------------------------- */

/* Load the train and test sets of `format` under directory `root`:
 *   "idx":   train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 *            t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (each also
 *            accepted without .gz); normalization preset "fashion-mnist".
 *   "cifar": data_batch_1.bin .. data_batch_5.bin (train, in that order) and
 *            test_batch.bin, in root or root/cifar-10-batches-bin; preset "cifar10".
 * limit_train / limit_test: use only the first N images (0 = all). On failure both
 * sets are left empty. */
bool wg_dataset_load(const char *root, const char *format, int64_t limit_train, int64_t limit_test,
                     wg_dataset *train, wg_dataset *test, char *err, size_t errlen);

/* Release the memory; *ds becomes empty. Freeing an empty dataset is a no-op. */
void wg_dataset_free(wg_dataset *ds);

/* Read one IDX image file and its label file (gzip or plain), first `limit`
 * images (0 = all). Checks the magic numbers (0x00000803, 0x00000801), the
 * dimensions, that the counts match, label values < 10, truncation and trailing
 * bytes. Does not set the normalization. */
bool wg_idx_read(const char *images_path, const char *labels_path, int64_t limit, wg_dataset *out, char *err,
                 size_t errlen);

/* Read CIFAR-10 binary batch files (records of 1 label byte + 3072 bytes CHW,
 * 3x32x32), in the order given, first `limit` images (0 = all); pixels become HWC.
 * Does not set the normalization. */
bool wg_cifar_read(const char *const *paths, int npaths, int64_t limit, wg_dataset *out, char *err,
                   size_t errlen);

/* Hold out the last val_count images of *train as *val (deterministic: indices
 * n - val_count .. n - 1, in order); *train keeps the first n - val_count. val
 * gets train's normalization. 0 <= val_count < n, else an error naming the field. */
bool wg_dataset_split_val(wg_dataset *train, int64_t val_count, wg_dataset *val, char *err, size_t errlen);

/* ---- normalization (data.c) ---------------------------------------------------- */

/* Fill *norm from a preset ("fashion-mnist", "mnist", "cifar10", "imagenet") for images of
 * `channels` channels: the constants, the exponent rule and both tables. */
bool wg_norm_init(wg_norm *norm, const char *preset, int channels, char *err, size_t errlen);

/* The same from explicit constants (mean and std of v / 255, per channel), e.g.
 * from a config; name is for messages (truncated to 15 characters). */
bool wg_norm_init_values(wg_norm *norm, const char *name, int channels, const double *mean, const double *std,
                         char *err, size_t errlen);

/* Replace ds's normalization by a preset (e.g. "mnist" for MNIST's idx files). */
bool wg_dataset_set_norm(wg_dataset *ds, const char *preset, char *err, size_t errlen);

/* ---- epoch order and batches (data_batch.c) -------------------------------------- */

/* order[0..n-1] = a permutation of 0..n-1, deterministic per (seed, epoch)
 * (Fisher-Yates with unbiased draws from Philox; docs/numerics.md, section 10). */
void wg_data_epoch_order(int64_t n, uint64_t seed, uint32_t epoch, int64_t *order);

/* The augmentation drawn for sample `index` (its index in the dataset) in `epoch`.
 * With aug = WG_AUGMENT_NONE it is the identity {0, 0, 0}. */
wg_aug_params wg_data_aug_draw(wg_augment aug, uint64_t seed, uint32_t epoch, int64_t index);

/* Assemble count samples ds[idx[0]], ... into out, NHWC, [count][H][W][C]:
 * int8 at ds->norm.exp (written to *exp), or normalized float32. */
void wg_data_batch_int8(const wg_dataset *ds, const int64_t *idx, int64_t count, wg_augment aug, uint64_t seed,
                        uint32_t epoch, int8_t *out, int *exp);
void wg_data_batch_f32(const wg_dataset *ds, const int64_t *idx, int64_t count, wg_augment aug, uint64_t seed,
                       uint32_t epoch, float *out);

/* The labels of the same samples: out[i] = ds->labels[idx[i]]. */
void wg_data_batch_labels(const wg_dataset *ds, const int64_t *idx, int64_t count, uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif
