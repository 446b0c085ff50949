/* checkpoint.h: a network's training state in a safetensors file (docs/checkpoints.md).
 *
 * A checkpoint holds everything a run needs to continue bit for bit: every
 * parameter's master ("<name>", int32 on the grid 2^-(bits_u-1) in int8 mode, float32
 * in fp32 mode) and momentum ("<name>.momentum"), every BN layer's running statistics
 * ("<bn>.running_mean", "<bn>.running_sigma" or "running_var"), and in the metadata
 * the position (step, epoch, steps done in that epoch), the best accuracy so far, the
 * seed and the resolved config. Each tensor's exponent is the metadata entry
 * "<name>.exp" (value = q * 2^exp). The forward copies (int8 W, int16 gamma/beta) are
 * not stored: they are derived from the masters (wg_param_refresh).
 *
 * Loading checks the file against the network the config builds: every tensor present,
 * with the dtype, shape and exponent the network has; a mismatch is a user-input error
 * naming the file, the tensor and what was expected, and leaves the network untouched. */
#ifndef WG_CHECKPOINT_H
#define WG_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "net.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WG_CKPT_FORMAT "wageubn-checkpoint"
#define WG_CKPT_VERSION 1

/* Where training stands. A checkpoint written at the end of an epoch says
 * (epoch + 1, 0): the next epoch starts from its first step. */
typedef struct wg_ckpt_position {
    int64_t step;       /* optimizer steps done */
    int epoch;          /* the epoch in progress, from 0 */
    int64_t epoch_step; /* steps of that epoch done */
    double best_acc;    /* the best evaluated accuracy so far (val when the run has a validation
                           split, else test); -1 before the first evaluation */
    int64_t best_step;
    double last_acc;    /* the last evaluation's accuracy; -1 none */
    double train_time_s; /* time spent in training steps, for img/s across a resume */
    int64_t train_images;
} wg_ckpt_position;

/* "step 51, 51 steps into epoch 1" or "step 32, after epoch 2" into buf. */
void wg_ckpt_position_str(const wg_ckpt_position *pos, char *buf, size_t n);

/* Write the state of net (trained with cfg) and pos to path, atomically. */
bool wg_checkpoint_save(const char *path, wg_net *net, const wg_config *cfg, const wg_ckpt_position *pos, char *err,
                        size_t errlen);

/* Read path, check it against net (see the file comment) and load it: the masters
 * (then the forward copies refreshed), momenta, BN statistics and *pos. saved_cfg (may
 * be NULL) receives the config the checkpoint was trained with. */
bool wg_checkpoint_load(const char *path, wg_net *net, const wg_quant_bits *bits, wg_ckpt_position *pos,
                        wg_config *saved_cfg, char *err, size_t errlen);

/* The checkpoint a --resume argument names: a file, or a run directory (its
 * latest.safetensors). false with a message when neither exists. */
bool wg_checkpoint_resolve(const char *arg, char *path, size_t pathlen, char *err, size_t errlen);

/* The config a checked checkpoint file was trained with (its "config" metadata). */
bool wg_checkpoint_config(const wg_st_file *f, wg_config *cfg, char *err, size_t errlen);

/* wageubn info: print what the checkpoint at path holds to out; with tensor (not
 * NULL), that tensor's values instead, one real number q * 2^exp per line. */
bool wg_checkpoint_print_info(const char *path, const char *tensor, FILE *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
