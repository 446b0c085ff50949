/* train.h: the training loop (wageubn train CONFIG) and evaluation (wageubn eval).
 *
 * Loads the data set the config names, builds the network, and trains it for the
 * configured epochs in int8 or fp32 mode, evaluating on the held-out validation split
 * (when configured) and the test set. The run directory receives config.ini (the
 * resolved config), metrics.jsonl (one JSON object per logged step and per
 * evaluation), checkpoints (docs/checkpoints.md: checkpoints/step_<8 digits>
 * .safetensors, the last [output] keep_checkpoints of them; latest.safetensors;
 * best.safetensors, the best validation accuracy, or test accuracy without a
 * validation split) and, at the end, summary.json. A checkpoint is written at the end
 * of each epoch, every [output] checkpoint_every steps, and on SIGINT or SIGTERM,
 * after which the run stops (a second signal stops it at once). A run resumed from a
 * checkpoint ends with the weights an uninterrupted run would have, bit for bit.
 * Progress goes to stderr: one refreshed line on a terminal, plain lines otherwise. */
#ifndef WG_TRAIN_H
#define WG_TRAIN_H

#include "backend.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit statuses beyond 0 (done) and 1 (a problem with the input, printed). */
enum {
    WG_TRAIN_EXIT_USAGE = 2,       /* a checkpoint that cannot be read or does not fit the config; a run
                                      directory in use */
    WG_TRAIN_EXIT_SIGNALLED = 128, /* + the signal: stopped by SIGINT (130) or SIGTERM (143) after a checkpoint */
};

typedef struct wg_train_opts {
    const char *resume; /* a checkpoint file or a run directory (its latest.safetensors); NULL: a new run */
    bool overwrite;     /* a new run may replace the run already in the run directory */
    const char *config_path; /* for the message that says how to resume; NULL: "CONFIG" */
    wg_backend *backend;     /* where the network lives (kept: the caller frees it); NULL: the CPU */
    struct wg_dist *dist;    /* the ranks of an mpirun job (dist.h); NULL: one process */
} wg_train_opts;

typedef struct wg_train_result {
    double test_acc, test_loss, test_top5, val_acc;
    double train_img_per_s, wall_s;
    int64_t steps;
} wg_train_result;

/* Train; returns an exit status (above). A new run into a directory that holds one
 * (latest.safetensors) is refused unless opts->overwrite, which first removes that
 * run's checkpoints. */
int wg_train_run(const wg_config *cfg, const wg_train_opts *opts, wg_train_result *result);

/* wageubn eval: load the checkpoint into the network cfg describes, re-estimate the
 * BN statistics as training does before an evaluation ([train] bn_recalibrate; 0
 * keeps the checkpoint's), evaluate the validation split (if any) and the test set,
 * print the loss, top-1 and top-5 accuracy and write them as JSON to json_path.
 * Returns an exit status. */
int wg_eval_run(const wg_config *cfg, const char *checkpoint, const char *json_path, wg_backend *backend);

#ifdef __cplusplus
}
#endif

#endif
