/* config.h: the training configuration (INI files, style.md item 8).
 *
 * A run is described by an INI file with the sections [model], [data], [train],
 * [quant] and [output], parsed with Debian's libinih. One schema table in config.c
 * (section, key, type, field, default, allowed values, help) drives parsing, value
 * checks, defaults, printing and comparison. Every mistake in a config is a
 * user-input error (style.md item 6): the functions return false and write a message
 * naming the file and line (or the --set override), what was expected and a hint;
 * nothing here aborts on bad input.
 *
 * File rules (those of libinih as Debian builds it, plus ours):
 *   - comments are lines starting with ';' or '#', and " ; ..." after a value;
 *   - leading whitespace is ignored (an indented line never continues the previous
 *     value: values are one line);
 *   - a line may hold at most 197 characters (libinih's 200-byte line buffer);
 *   - every key belongs to a known section, is known, and appears once; a section
 *     appears once; "key = value" or "key: value"; nothing after "[section]" but
 *     a comment. Values are not quoted; strings cannot hold ';'.
 *
 * Learning-rate and g_scale schedules (wg_config_lr_at, wg_config_g_scale_log2_at):
 * epochs are real numbers, epoch e in [0, epochs] (e = step / steps_per_epoch).
 *   piecewise, step: lr * lr_multipliers[i], i = number of lr_boundaries <= e
 *   cosine:          0.5 * lr * (1 + cos(pi * e / epochs))
 *   warmup (all):    times e / warmup_epochs while e < warmup_epochs
 *   g_scale:         g_scale[i] with the same interval i (or g_scale[0] when it has
 *                    one value), returned as log2. */
#ifndef WG_CONFIG_H
#define WG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "act.h" /* wg_act_exponent */
#include "quant.h" /* wg_quant_bits, wg_e2_mode */

#ifdef __cplusplus
extern "C" {
#endif

enum {
    WG_CONFIG_MAX_STR = 161,  /* string values: at most 160 characters */
    WG_CONFIG_MAX_LIST = 16,  /* list values: at most 16 numbers */
    WG_CONFIG_ERR_LEN = 1024, /* a buffer this long holds any message */
};

typedef enum wg_model_name {
    WG_MODEL_RESNET20,
    WG_MODEL_RESNET32,
    WG_MODEL_RESNET56,
    WG_MODEL_RESNET18,
    WG_MODEL_RESNET34,
    WG_MODEL_RESNET50,
    WG_MODEL_PLAINCNN,
    WG_MODEL_RESNET8, /* the smallest ResNet (one block per stage), for quick runs and tests */
} wg_model_name;
/* idx and cifar are read into memory; imagefolder and list (ImageNet) are JPEG files
 * streamed through the loader (loader.h). */
typedef enum wg_data_format { WG_DATA_IDX, WG_DATA_CIFAR, WG_DATA_IMAGEFOLDER, WG_DATA_LIST } wg_data_format;
typedef enum wg_bad_files { WG_BAD_FILES_FAIL, WG_BAD_FILES_SKIP } wg_bad_files;
typedef enum wg_train_mode { WG_MODE_INT8, WG_MODE_FP32 } wg_train_mode;
typedef enum wg_device { WG_DEVICE_CPU, WG_DEVICE_CUDA, WG_DEVICE_AUTO } wg_device;
typedef enum wg_lr_schedule { WG_LR_PIECEWISE, WG_LR_STEP, WG_LR_COSINE } wg_lr_schedule;
typedef enum wg_quant_preset { WG_PRESET_FULL, WG_PRESET_REFERENCE } wg_quant_preset;
/* [dist] (docs/distributed.md): how ranks under mpirun exchange gradients, and whether
 * BN's statistics (with every other reduction over the batch) span all ranks. */
typedef enum wg_allreduce_mode { WG_ALLREDUCE_EXACT, WG_ALLREDUCE_COMPRESSED } wg_allreduce_mode;
typedef enum wg_bn_stats { WG_BN_STATS_SYNC, WG_BN_STATS_LOCAL } wg_bn_stats;

/* A comma-separated list of numbers: v[0..n-1]. */
typedef struct wg_config_list {
    int n;
    double v[WG_CONFIG_MAX_LIST];
} wg_config_list;

/* Every setting of a run. Defaults (wg_config_defaults): the default run, resnet20 on
 * Fashion-MNIST, int8 mode, preset full. */
typedef struct wg_config {
    struct {
        wg_model_name name;
    } model;
    struct {
        wg_data_format format;
        char root[WG_CONFIG_MAX_STR]; /* dataset directory */
        int64_t limit_train;          /* use the first N training images; 0 = all */
        int64_t limit_test;           /* the same for the test set */
        int64_t val_split;            /* hold out this many training images for validation */
        bool augment_flip;            /* random horizontal flips */
        int augment_pad;              /* pad by this many pixels and crop at random; 0 = off */
        /* imagefolder and list */
        int image_size;               /* the crops' side (224) */
        int workers;                  /* decoding threads */
        wg_bad_files bad_files;       /* an unreadable JPEG fails the run, or is skipped */
        double crop_area_min;         /* the training crop's smallest share of the image's area */
    } data;
    struct {
        wg_train_mode mode;
        int epochs;
        int batch;
        uint64_t seed;
        double lr; /* base learning rate */
        wg_lr_schedule lr_schedule;
        wg_config_list lr_boundaries;  /* epochs, strictly ascending, in (0, epochs) */
        wg_config_list lr_multipliers; /* boundaries + 1 values (or 1 without boundaries) */
        wg_config_list g_scale;        /* powers of two: boundaries + 1 values, or 1 */
        double momentum;               /* fp32 mode (int8 uses quant.bits.momentum_shift) */
        double weight_decay;
        double warmup_epochs;
        int log_every;  /* steps */
        int eval_every; /* epochs */
        int bn_recalibrate; /* batches that re-estimate BN running statistics before evaluating */
        int threads;    /* 0 = all cores */
        wg_device device; /* where the network lives: cpu, cuda (GPU 0) or auto */
    } train;
    struct {
        wg_quant_preset preset;
        wg_act_exponent act_exponent;
        wg_e2_mode e2;
        /* bit widths; g_scale_log2 is not a key: loading sets it to the schedule's
         * value at epoch 0 (wg_config_g_scale_log2_at) */
        wg_quant_bits bits;
    } quant;
    struct {
        wg_allreduce_mode allreduce; /* exact: the ranks' bits are one process's */
        wg_bn_stats bn;              /* sync (exact needs it) or local (per rank, as the reference) */
    } dist;
    struct {
        char dir[WG_CONFIG_MAX_STR]; /* "" in the defaults; loading resolves it */
        int keep_checkpoints; /* step_<8 digits>.safetensors files kept in RUN_DIR/checkpoints */
        int checkpoint_every; /* steps between checkpoints; 0: at the end of each epoch only */
    } output;
} wg_config;

/* The defaults: every key's default, quant.bits = wg_quant_bits_reference(), and
 * output.dir = "". */
void wg_config_defaults(wg_config *cfg);

/* Load a run: the defaults, then the file at path (NULL: no file), then the overrides
 * ("section.key=value", in order), then an empty output.dir becomes
 * "runs/<file name without .ini>" ("runs/default" without a file), then the
 * cross-field checks (wg_config_validate). On success fills *cfg and returns true;
 * warnings go to warn (lines, each ending in '\n'; NULL: printed to stderr). On
 * failure returns false with the first error in err and leaves *cfg unchanged. */
bool wg_config_load(wg_config *cfg, const char *path, const char *const *overrides, int n_overrides, char *err,
                    size_t errlen, char *warn, size_t warnlen);

/* The same from a config text in memory (a checkpoint's resolved config): name stands
 * for the file in messages; no overrides. */
bool wg_config_load_text(wg_config *cfg, const char *text, size_t len, const char *name, char *err, size_t errlen,
                         char *warn, size_t warnlen);

/* Apply one override "section.key=value" with the checks a file value gets (not the
 * cross-field ones: call wg_config_validate after a series of these, and note that
 * quant.bits.g_scale_log2 is only refreshed by wg_config_load). On failure cfg is
 * unchanged and err names the override:
 * "--set train.epochs=abc: expected an integer in 1..10000". */
bool wg_config_set(wg_config *cfg, const char *assignment, char *err, size_t errlen);

/* The cross-field checks: list lengths against lr_boundaries, boundaries below epochs,
 * cosine without multipliers, warmup_epochs <= epochs, val_split below limit_train,
 * and in int8 mode learning rates on the bits_lr grid: lr that rounds to 0 is an
 * error; lr x a multiplier that rounds to 0, or any that saturates, a warning. */
bool wg_config_validate(const wg_config *cfg, char *err, size_t errlen, char *warn, size_t warnlen);

/* Write cfg as an INI file: every key, each after a comment line with its help, range
 * and default. Loading it gives a config equal to cfg. Returns false on a write error. */
bool wg_config_write(const wg_config *cfg, FILE *f);

/* True when every key has the same value in a and b. */
bool wg_config_equal(const wg_config *a, const wg_config *b);

/* The keys whose values differ, as "section.key: a -> b, ..." in out (truncated to
 * outlen), skipping the "section.key" names of skip (NULL-terminated; may be NULL).
 * Returns how many differ. */
int wg_config_diff(const wg_config *a, const wg_config *b, const char *const *skip, char *out, size_t outlen);

/* The schedules of the file comment, at a real epoch in [0, epochs] (later epochs
 * are clamped to epochs). The config must have passed wg_config_validate. */
double wg_config_lr_at(const wg_config *cfg, double epoch);
int wg_config_g_scale_log2_at(const wg_config *cfg, double epoch);

#ifdef __cplusplus
}
#endif

#endif
