/* train.h: the training loop (wageubn train CONFIG).
 *
 * Loads the data set the config names, builds the network, and trains it for the
 * configured epochs in int8 or fp32 mode, evaluating on the held-out validation split
 * (when configured) and the test set. The run directory receives config.ini (the
 * resolved config), metrics.jsonl (one JSON object per logged step and per
 * evaluation) and, at the end, summary.json. Progress goes to stderr: one refreshed
 * line on a terminal, plain lines otherwise. */
#ifndef WG_TRAIN_H
#define WG_TRAIN_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_train_result {
    double test_acc, test_loss, val_acc;
    double train_img_per_s, wall_s;
    int64_t steps;
} wg_train_result;

/* Returns 0 on success; on a user-input problem (data set, output directory) prints
 * the message and returns 1. */
int wg_train_run(const wg_config *cfg, wg_train_result *result);

#ifdef __cplusplus
}
#endif

#endif
