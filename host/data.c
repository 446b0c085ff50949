/* data.c: datasets as a whole: loading by format, freeing, the validation split,
 * and the input normalization (docs/numerics.md, section 10).
 *
 * Normalization: a pixel v (0..255) of channel c means x = (v / 255 - mean_c) /
 * std_c. Its int8 form is q = RNE(x * 2^-e) with one exponent e per dataset: the
 * finest e >= -7 at which every q of every channel lies in [-127, 127]. Both the
 * int8 and the float32 value of each (c, v) are computed once here, in double
 * (nearbyint rounds half to even in the default rounding mode), so a batch only
 * looks them up. The readers are data_idx.c and data_cifar.c. */
#include "data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define WG_DATA_PATH_MAX 4096
#define WG_NORM_MAX_MEAN 1e3 /* bounds on custom constants: keep |x| <= 2^30 */
#define WG_NORM_MIN_STD 1e-6
#define WG_NORM_MAX_STD 1e6

typedef struct wg_norm_preset {
    const char *name;
    int c;
    double mean[WG_DATA_MAX_CHANNELS];
    double std[WG_DATA_MAX_CHANNELS];
} wg_norm_preset;

/* The customary constants: mean and std of v / 255 over each training set. */
static const wg_norm_preset wg_norm_presets[] = {
    {"fashion-mnist", 1, {0.2860}, {0.3530}},
    {"mnist", 1, {0.1307}, {0.3081}},
    {"cifar10", 3, {0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}},
    {"imagenet", 3, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}},
};

static void wg_data_msg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void wg_data_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- normalization ------------------------------------------------------------ */

static double wg_norm_value(const wg_norm *norm, int ch, int v)
{
    return ((double)v / 255.0 - norm->mean[ch]) / norm->std[ch];
}

bool wg_norm_init_values(wg_norm *norm, const char *name, int channels, const double *mean, const double *std,
                         char *err, size_t errlen)
{
    memset(norm, 0, sizeof(*norm));
    if (channels < 1 || channels > WG_DATA_MAX_CHANNELS) {
        wg_data_msg(err, errlen, "normalization \"%s\": %d channels; expected 1..%d", name, channels,
                    WG_DATA_MAX_CHANNELS);
        return false;
    }
    for (int ch = 0; ch < channels; ch++)
        if (!(fabs(mean[ch]) <= WG_NORM_MAX_MEAN) || !(std[ch] >= WG_NORM_MIN_STD && std[ch] <= WG_NORM_MAX_STD)) {
            wg_data_msg(err, errlen, "normalization \"%s\": channel %d mean %g, std %g; expected |mean| <= %g and "
                        "%g <= std <= %g", name, ch, mean[ch], std[ch], WG_NORM_MAX_MEAN, WG_NORM_MIN_STD,
                        WG_NORM_MAX_STD);
            return false;
        }
    snprintf(norm->name, sizeof(norm->name), "%s", name);
    norm->c = channels;
    for (int ch = 0; ch < channels; ch++) {
        norm->mean[ch] = mean[ch];
        norm->std[ch] = std[ch];
    }
    /* The exponent rule: the finest e >= WG_DATA_EXP_FLOOR on which nothing saturates
     * (|x| <= 2^30 by the bounds above, so e stays below 30). */
    int e = WG_DATA_EXP_FLOOR;
    for (;; e++) {
        WG_ASSERT(e < 64, "no exponent fits normalization %s", name);
        bool fits = true;
        for (int ch = 0; ch < norm->c && fits; ch++)
            for (int v = 0; v < 256 && fits; v++) fits = fabs(nearbyint(ldexp(wg_norm_value(norm, ch, v), -e))) <= 127;
        if (fits) break;
    }
    norm->exp = e;
    for (int ch = 0; ch < norm->c; ch++)
        for (int v = 0; v < 256; v++) {
            double x = wg_norm_value(norm, ch, v);
            norm->q[ch][v] = (int8_t)nearbyint(ldexp(x, -e));
            norm->f[ch][v] = (float)x;
        }
    return true;
}

bool wg_norm_init(wg_norm *norm, const char *preset, int channels, char *err, size_t errlen)
{
    memset(norm, 0, sizeof(*norm));
    const wg_norm_preset *p = NULL;
    for (size_t i = 0; i < sizeof(wg_norm_presets) / sizeof(wg_norm_presets[0]); i++)
        if (preset && strcmp(preset, wg_norm_presets[i].name) == 0) p = &wg_norm_presets[i];
    if (!p) {
        wg_data_msg(err, errlen, "normalization \"%s\": unknown; expected fashion-mnist, mnist, cifar10 or imagenet",
                    preset ? preset : "(null)");
        return false;
    }
    if (p->c != channels) {
        wg_data_msg(err, errlen, "normalization \"%s\" is for %d-channel images, but the images have %d channels",
                    p->name, p->c, channels);
        return false;
    }
    return wg_norm_init_values(norm, p->name, p->c, p->mean, p->std, err, errlen);
}

bool wg_dataset_set_norm(wg_dataset *ds, const char *preset, char *err, size_t errlen)
{
    wg_norm norm;
    if (!wg_norm_init(&norm, preset, ds->c, err, errlen)) return false;
    ds->norm = norm;
    return true;
}

/* ---- lifetime ---------------------------------------------------------------- */

void wg_dataset_free(wg_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof(*ds));
}

bool wg_dataset_split_val(wg_dataset *train, int64_t val_count, wg_dataset *val, char *err, size_t errlen)
{
    memset(val, 0, sizeof(*val));
    if (val_count < 0 || val_count >= train->n) {
        wg_data_msg(err, errlen,
                    "%s: data.val_split = %lld; expected 0 <= val_split < %lld (the number of training images, "
                    "after limit_train)",
                    train->name, (long long)val_count, (long long)train->n);
        return false;
    }
    size_t img = (size_t)train->h * (size_t)train->w * (size_t)train->c;
    int64_t keep = train->n - val_count;
    *val = *train;
    val->images = NULL;
    val->labels = NULL;
    val->n = val_count;
    snprintf(val->name, sizeof(val->name), "%.*s (validation)", WG_DATA_NAME_MAX - 16, train->name);
    if (val_count > 0) {
        val->images = malloc((size_t)val_count * img);
        val->labels = malloc((size_t)val_count);
        if (!val->images || !val->labels) {
            wg_data_msg(err, errlen, "%s: cannot allocate %lld validation images", train->name, (long long)val_count);
            wg_dataset_free(val);
            return false;
        }
        memcpy(val->images, train->images + (size_t)keep * img, (size_t)val_count * img);
        memcpy(val->labels, train->labels + keep, (size_t)val_count);
    }
    train->n = keep; /* the tail stays allocated and unused */
    return true;
}

/* ---- loading by format -------------------------------------------------------- */

static bool wg_file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static bool wg_join(char *out, size_t outlen, const char *dir, const char *name, char *err, size_t errlen)
{
    int k = snprintf(out, outlen, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= outlen) {
        wg_data_msg(err, errlen, "data.root \"%.200s...\": path too long (over %zu bytes)", dir, outlen - 1);
        return false;
    }
    return true;
}

/* dir/name.gz when it exists, else dir/name when that exists, else dir/name.gz
 * (whose open then fails with a message). */
static bool wg_idx_path(char *out, size_t outlen, const char *dir, const char *name, char *err, size_t errlen)
{
    char plain[WG_DATA_PATH_MAX];
    if (!wg_join(plain, sizeof(plain), dir, name, err, errlen)) return false;
    int k = snprintf(out, outlen, "%s.gz", plain);
    if (k < 0 || (size_t)k >= outlen) {
        wg_data_msg(err, errlen, "data.root \"%.200s...\": path too long", dir);
        return false;
    }
    if (!wg_file_exists(out) && wg_file_exists(plain)) snprintf(out, outlen, "%s", plain);
    return true;
}

static bool wg_load_idx(const char *root, int64_t limit, const char *prefix, wg_dataset *ds, char *err,
                        size_t errlen)
{
    char names[2][64], img[WG_DATA_PATH_MAX], lab[WG_DATA_PATH_MAX];
    snprintf(names[0], sizeof(names[0]), "%s-images-idx3-ubyte", prefix);
    snprintf(names[1], sizeof(names[1]), "%s-labels-idx1-ubyte", prefix);
    if (!wg_idx_path(img, sizeof(img), root, names[0], err, errlen)) return false;
    if (!wg_idx_path(lab, sizeof(lab), root, names[1], err, errlen)) return false;
    if (!wg_idx_read(img, lab, limit, ds, err, errlen)) {
        size_t used = err ? strlen(err) : 0;
        if (err && !wg_file_exists(img) && used < errlen)
            snprintf(err + used, errlen - used,
                     " (hint: Fashion-MNIST is Debian's dataset-fashion-mnist, in /usr/share/datasets/fashion-mnist; "
                     "set data.root to the directory that holds the IDX files)");
        return false;
    }
    return true;
}

static bool wg_load_cifar(const char *root, int64_t limit_train, int64_t limit_test, wg_dataset *train,
                          wg_dataset *test, char *err, size_t errlen)
{
    char dir[WG_DATA_PATH_MAX], probe[WG_DATA_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", root);
    if (!wg_join(probe, sizeof(probe), root, "data_batch_1.bin", err, errlen)) return false;
    if (!wg_file_exists(probe)) { /* the layout of the unpacked cifar-10-binary.tar.gz */
        char sub[WG_DATA_PATH_MAX];
        if (!wg_join(sub, sizeof(sub), root, "cifar-10-batches-bin", err, errlen)) return false;
        if (!wg_join(probe, sizeof(probe), sub, "data_batch_1.bin", err, errlen)) return false;
        if (wg_file_exists(probe)) snprintf(dir, sizeof(dir), "%s", sub);
    }
    char paths[6][WG_DATA_PATH_MAX];
    const char *ptr[6];
    for (int i = 0; i < 6; i++) {
        char name[32];
        if (i < 5) snprintf(name, sizeof(name), "data_batch_%d.bin", i + 1);
        else snprintf(name, sizeof(name), "test_batch.bin");
        if (!wg_join(paths[i], sizeof(paths[i]), dir, name, err, errlen)) return false;
        ptr[i] = paths[i];
    }
    if (!wg_cifar_read(ptr, 5, limit_train, train, err, errlen)) return false;
    return wg_cifar_read(ptr + 5, 1, limit_test, test, err, errlen);
}

bool wg_dataset_load(const char *root, const char *format, int64_t limit_train, int64_t limit_test,
                     wg_dataset *train, wg_dataset *test, char *err, size_t errlen)
{
    memset(train, 0, sizeof(*train));
    memset(test, 0, sizeof(*test));
    if (!root || !*root) {
        wg_data_msg(err, errlen, "data.root: empty; expected the directory that holds the dataset files");
        return false;
    }
    if (limit_train < 0 || limit_test < 0) {
        wg_data_msg(err, errlen, "data.%s = %lld; expected >= 0 (0 = all images)",
                    limit_train < 0 ? "limit_train" : "limit_test",
                    (long long)(limit_train < 0 ? limit_train : limit_test));
        return false;
    }
    const char *preset;
    bool ok;
    if (format && strcmp(format, "idx") == 0) {
        preset = "fashion-mnist";
        ok = wg_load_idx(root, limit_train, "train", train, err, errlen) &&
             wg_load_idx(root, limit_test, "t10k", test, err, errlen);
    } else if (format && strcmp(format, "cifar") == 0) {
        preset = "cifar10";
        ok = wg_load_cifar(root, limit_train, limit_test, train, test, err, errlen);
    } else {
        wg_data_msg(err, errlen, "data.format = \"%s\"; expected idx or cifar", format ? format : "(null)");
        return false;
    }
    if (ok) {
        snprintf(train->name, sizeof(train->name), "%.*s (train)", WG_DATA_NAME_MAX - 16, root);
        snprintf(test->name, sizeof(test->name), "%.*s (test)", WG_DATA_NAME_MAX - 16, root);
        ok = wg_dataset_set_norm(train, preset, err, errlen) && wg_dataset_set_norm(test, preset, err, errlen);
    }
    if (!ok) {
        wg_dataset_free(train);
        wg_dataset_free(test);
    }
    return ok;
}
