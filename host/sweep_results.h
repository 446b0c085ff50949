/* sweep_results.h: what `wageubn sweep` knows of each point, and the files it writes
 * in the sweep directory: sweep.ini (the resolved sweep) and results.csv/results.md
 * (one row per point). Every file is written to NAME.tmp and renamed, so a reader
 * never sees half a table, even when the sweep is killed while writing it. */
#ifndef WG_SWEEP_RESULTS_H
#define WG_SWEEP_RESULTS_H

#include <stdbool.h>
#include <stddef.h>

#include "sweep_file.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wg_point_state {
    WG_POINT_PENDING,     /* not run (yet) */
    WG_POINT_DONE,        /* run by this sweep, summary.json read */
    WG_POINT_SKIPPED,     /* done before: summary.json was there */
    WG_POINT_FAILED,      /* non-zero exit, a signal, or no readable summary.json */
    WG_POINT_INTERRUPTED, /* stopped because the sweep was asked to stop */
} wg_point_state;

typedef struct wg_point {
    char dir[WG_SWEEP_MAX_PATH];
    char label[512];  /* "bits_e2=16 preset=full" */
    bool has_val;     /* the point's config holds out a validation split */
    bool finished;    /* summary.json was there when the sweep started */
    bool resume;      /* latest.safetensors was there: an interrupted run to continue */
    wg_point_state state;
    char why[128];    /* what failed: "exit 1", "signal 6", ... */
    bool have_summary;
    double test_acc, val_acc; /* fractions, from summary.json */
    double img_per_s, wall_s;
} wg_point;

/* "pending", "done", "skipped-done", "failed", "interrupted". */
const char *wg_point_status_word(wg_point_state s);

/* Read DIR/summary.json (test_acc, val_acc, train_img_per_s, wall_s) into the point.
 * False with "DIR/summary.json: what is wrong" in err. */
bool wg_point_read_summary(wg_point *pt, char *err, size_t errlen);

/* OUT/sweep.ini: the sweep as it runs (base resolved to an absolute path, the
 * command line's --set merged into [set]), itself a sweep file. False with the
 * message printed. */
bool wg_sweep_write_resolved(const wg_sweep *sw);

/* OUT/results.csv and OUT/results.md, every point (pending ones too). False with the
 * message printed. */
bool wg_sweep_write_results(const wg_sweep *sw, const wg_point *pts);

#ifdef __cplusplus
}
#endif

#endif
