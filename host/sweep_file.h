/* sweep_file.h: the sweep file of `wageubn sweep` (host/sweep.h runs it).
 *
 * A sweep file is an INI file (libinih, the rules of config.h) with three sections:
 *
 *   [sweep]  base = CONFIG.ini   the base config, relative to the sweep file's directory
 *            out = DIR           the sweep directory, relative to the current directory
 *                                (default: runs/sweep_<sweep file name without .ini>)
 *   [set]    section.key = value overrides applied to every point (optional)
 *   [grid]   section.key = v1, v2, ...
 *            each key is one axis; the points are the product of the axes, the first
 *            axis varying slowest. A value holding commas is written in double quotes:
 *            train.lr_boundaries = "2,3", "3,4" (and "" is the empty value).
 *            Keys joined by '+' share one axis (two points below, not four): a plain
 *            value goes to every key, a tuple in parentheses gives one value per key:
 *            quant.bits_xhat + quant.bits_gamma_beta = 8, 16
 *            train.g_scale + quant.bits_gc = ("128,128", 15), ("32768,32768", 23)
 *
 * Point p (0-based) runs in OUT/NNN_key=value_key=value: NNN = p + 1 on three digits,
 * key the part after the dot, values with what a file name should not hold replaced.
 * Its overrides are [set], then the command line's --set, then its grid values; a key
 * may not be both set and swept, and output.dir belongs to the sweep.
 *
 * Errors in the file name it and the line (user input: style.md item 6). Whether a key
 * and value are valid is the config loader's business: wg_sweep_check runs each
 * assignment through wg_config_set and names the sweep file's line on failure. */
#ifndef WG_SWEEP_FILE_H
#define WG_SWEEP_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h" /* WG_CONFIG_MAX_STR */

#ifdef __cplusplus
extern "C" {
#endif

enum {
    WG_SWEEP_MAX_AXES = 8,
    WG_SWEEP_MAX_VALUES = 32, /* values of one axis */
    WG_SWEEP_MAX_TIED = 6,    /* keys sharing one axis */
    WG_SWEEP_MAX_SET = 48,    /* [set] entries and --set overrides together */
    WG_SWEEP_MAX_POINTS = 999, /* point numbers have three digits */
    WG_SWEEP_MAX_KEY = 64,    /* "section.key" */
    WG_SWEEP_MAX_ASSIGN = WG_SWEEP_MAX_KEY + WG_CONFIG_MAX_STR + 1, /* "section.key=value" */
    /* wageubn train takes at most 64 overrides, and --out is one of them */
    WG_SWEEP_MAX_OVERRIDES = 63,
    WG_SWEEP_MAX_PATH = 1024,
};

/* One override of every point: line 0 = from the command line. */
typedef struct wg_sweep_set {
    int line;
    char key[WG_SWEEP_MAX_KEY];      /* "train.epochs" */
    char assign[WG_SWEEP_MAX_ASSIGN]; /* "train.epochs=2" */
} wg_sweep_set;

/* One axis of the grid: nkeys tied keys, nvalues values; value v of key j is
 * values[v][j] (the same text for every key unless the file gave a tuple). */
typedef struct wg_sweep_axis {
    int line;
    int nkeys;
    char keys[WG_SWEEP_MAX_TIED][WG_SWEEP_MAX_KEY];
    int nvalues;
    char values[WG_SWEEP_MAX_VALUES][WG_SWEEP_MAX_TIED][WG_CONFIG_MAX_STR];
} wg_sweep_axis;

typedef struct wg_sweep {
    char path[WG_SWEEP_MAX_PATH]; /* the sweep file as given */
    char base[WG_SWEEP_MAX_PATH]; /* the base config, resolved against path's directory */
    char out[WG_SWEEP_MAX_PATH];  /* the sweep directory */
    int base_line;
    int nset;
    wg_sweep_set set[WG_SWEEP_MAX_SET];
    int naxes;
    wg_sweep_axis axes[WG_SWEEP_MAX_AXES];
    int npoints; /* the product of the axes' value counts */
} wg_sweep;

/* The overrides of one point, in order, as wageubn train's --set takes them. */
typedef struct wg_sweep_overrides {
    int n;
    const char *v[WG_SWEEP_MAX_OVERRIDES + 1];
    char text[WG_SWEEP_MAX_OVERRIDES + 1][WG_SWEEP_MAX_ASSIGN];
} wg_sweep_overrides;

/* Parse the sweep file at path into *sw (zeroed first), npoints included (at most
 * WG_SWEEP_MAX_POINTS). False with "file:line: what, expected what" in err. */
bool wg_sweep_parse(wg_sweep *sw, const char *path, char *err, size_t errlen);

/* Add a command-line override "section.key=value" (after the file's [set]; one of a
 * key [set] has replaces it there). */
bool wg_sweep_add_set(wg_sweep *sw, const char *assign, char *err, size_t errlen);

/* The checks that need the whole sweep: every [set], --set and [grid] assignment
 * passes wg_config_set, no key is both set and swept, output.dir is not touched, the
 * overrides of a point fit wageubn train's limit. Per-point cross-field checks are the
 * caller's (wg_config_load of each point). */
bool wg_sweep_check(const wg_sweep *sw, char *err, size_t errlen);

/* Point p's value index on each axis (idx[0..naxes-1]), its overrides (without
 * output.dir), its directory and its label ("bits_e2=16 preset=full"). A directory
 * names a tied axis once ("bits_xhat+bits_gamma_beta=8"), or each value when a tuple
 * gave them ("g_scale+bits_gc=128-128+15"). */
void wg_sweep_point_index(const wg_sweep *sw, int p, int *idx);
void wg_sweep_point_overrides(const wg_sweep *sw, int p, wg_sweep_overrides *ov);
void wg_sweep_point_dir(const wg_sweep *sw, int p, char *dir, size_t n);
void wg_sweep_point_label(const wg_sweep *sw, int p, char *label, size_t n);

/* An axis's name: its keys joined by '+' ("quant.bits_xhat+quant.bits_gamma_beta"),
 * or with short = true the parts after the dots ("bits_xhat+bits_gamma_beta"). */
void wg_sweep_axis_name(const wg_sweep_axis *a, bool short_keys, char *buf, size_t n);

/* Whether value v of the axis is the same text for every key. */
bool wg_sweep_value_shared(const wg_sweep_axis *a, int v);

/* A key's name after its dot ("quant.bits_e2" -> "bits_e2"). */
const char *wg_sweep_short_key(const char *key);

#ifdef __cplusplus
}
#endif

#endif
