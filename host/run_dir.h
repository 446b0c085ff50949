/* run_dir.h: the files of a run directory that hold checkpoints (docs/checkpoints.md).
 *
 *   RUN_DIR/checkpoints/step_<8 digits>.safetensors   the last keep_checkpoints of them
 *   RUN_DIR/latest.safetensors                         the newest checkpoint
 *   RUN_DIR/best.safetensors                           the best evaluated one
 *
 * latest and best are hard links to the step file when there is one (no second copy
 * on disk), made atomically (link to a temporary name, rename). */
#ifndef WG_RUN_DIR_H
#define WG_RUN_DIR_H

#include <stdbool.h>
#include <stddef.h>

#include "checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p dir; false with a message naming the directory. */
bool wg_make_dirs(const char *dir, char *err, size_t errlen);

/* Make the run directory ready: 0 when it is, 1 on an I/O error, 2 when a new run
 * (resume false) would go into a directory that holds a run (latest.safetensors)
 * without overwrite (which removes that run's checkpoints first). The message in err
 * says how to go on. */
int wg_run_dir_prepare(const char *dir, bool resume, bool overwrite, char *err, size_t errlen);

/* Save a checkpoint of net at pos: a step file (when keep > 0; then the oldest step
 * files beyond keep are removed), latest.safetensors and, when best, best.safetensors.
 * *written receives the path of the file written. */
bool wg_run_dir_save(const char *dir, int keep, bool best, wg_net *net, const wg_config *cfg,
                     const wg_ckpt_position *pos, char *written, size_t writtenlen, char *err, size_t errlen);

/* The run directory a checkpoint path belongs to: RUN for RUN/latest.safetensors,
 * RUN/best.safetensors and RUN/checkpoints/step_*.safetensors; the directory itself
 * for a directory. */
void wg_run_dir_of(const char *checkpoint_or_dir, char *dir, size_t dirlen);

#ifdef __cplusplus
}
#endif

#endif
