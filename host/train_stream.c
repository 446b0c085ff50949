/* train_stream.c: the JPEG datasets of [data] format = imagefolder | list, streamed
 * through the loader (loader.h) into the run's batch buffers (see train_impl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_impl.h"

/* Keep `limit` images spread evenly over the set (i n / limit): a prefix of a sorted
 * ImageFolder would be its first classes only. */
static void limit_set(wg_imageset *s, int64_t limit)
{
    if (limit <= 0 || limit >= s->n) return;
    for (int64_t i = 0; i < limit; i++) {
        int64_t from = i * s->n / limit;
        if (from == i) continue;
        char *t = s->paths[i];
        s->paths[i] = s->paths[from];
        s->paths[from] = t;
        s->labels[i] = s->labels[from];
    }
    for (int64_t i = limit; i < s->n; i++) free(s->paths[i]);
    s->n = limit;
}

/* The virtual dataset the trainer sees: sizes, classes, the normalization. */
static bool describe(const wg_imageset *s, int size, const char *what, wg_dataset *ds, char *err, size_t errlen)
{
    memset(ds, 0, sizeof(*ds));
    snprintf(ds->name, sizeof(ds->name), "%.480s (%s)", s->name, what);
    ds->n = s->n, ds->h = ds->w = size, ds->c = 3, ds->num_classes = s->num_classes;
    return wg_norm_init(&ds->norm, "imagenet", 3, err, errlen);
}

bool wg_run_stream_open(run *r, char *err, size_t errlen)
{
    const wg_config *cfg = r->cfg;
    bool list = cfg->data.format == WG_DATA_LIST;
    char tr[WG_CONFIG_MAX_STR + 16], te[WG_CONFIG_MAX_STR + 16];
    snprintf(tr, sizeof(tr), "%s/%s", cfg->data.root, list ? "train.txt" : "train");
    snprintf(te, sizeof(te), "%s/%s", cfg->data.root, list ? "val.txt" : "val");
    if (cfg->data.val_split > 0) {
        snprintf(err, errlen, "[data] val_split = %lld: with format = %s the validation images are %s (set val_split = 0)",
                 (long long)cfg->data.val_split, list ? "list" : "imagefolder", te);
        return false;
    }
    bool ok = list ? wg_imageset_list(tr, &r->train_set, err, errlen) && wg_imageset_list(te, &r->test_set, err, errlen)
                   : wg_imageset_folder(tr, &r->train_set, err, errlen) &&
                         wg_imageset_folder(te, &r->test_set, err, errlen);
    if (!ok) {
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0, " ([data] root = %s should hold %s; docs/imagenet.md says how "
                 "to prepare ImageNet)", cfg->data.root, list ? "train.txt and val.txt" : "train/ and val/");
        return false;
    }
    if (r->test_set.num_classes > r->train_set.num_classes) {
        snprintf(err, errlen, "%s has %d classes, more than the %d of %s", te, r->test_set.num_classes,
                 r->train_set.num_classes, tr);
        return false;
    }
    limit_set(&r->train_set, cfg->data.limit_train);
    limit_set(&r->test_set, cfg->data.limit_test);
    r->streamed = true;
    r->crop = wg_crop_opts_reference();
    r->crop.size = cfg->data.image_size;
    r->crop.area_lo = cfg->data.crop_area_min;
    return describe(&r->train_set, cfg->data.image_size, "train", &r->train, err, errlen) &&
           describe(&r->test_set, cfg->data.image_size, "test", &r->test, err, errlen);
}

void wg_run_stream_close(run *r)
{
    wg_loader_stop(r->loader);
    r->loader = NULL;
    wg_imageset_free(&r->train_set);
    wg_imageset_free(&r->test_set);
}

/* The backend's page-locked host memory for the batch buffers (backend.h), with
 * malloc where it has none or runs out. */
static void *host_alloc(void *ctx, size_t bytes)
{
    wg_backend *b = ctx;
    void *p = b->iface->host_alloc ? b->iface->host_alloc(b->ctx, bytes) : NULL;
    return p ? p : malloc(bytes);
}

static void host_free(void *ctx, void *p)
{
    wg_backend *b = ctx;
    if (b->iface->host_free == NULL || p == NULL) {
        free(p);
        return;
    }
    b->iface->host_free(b->ctx, p);
}

void wg_run_stream_start(run *r, const wg_imageset *set, const int64_t *order, int64_t n, bool train, uint32_t epoch)
{
    wg_loader_stop(r->loader);
    wg_loader_opts o = {.set = set, .crop = r->crop, .train = train, .seed = r->cfg->train.seed,
                        .workers = r->cfg->data.workers, .batch = r->cfg->train.batch, .ring = 2, .rank = r->rank,
                        .ranks = r->ranks, .skip_bad = r->cfg->data.bad_files == WG_BAD_FILES_SKIP,
                        .norm = &r->train.norm, .as_float = !r->int8};
    if (r->b->iface->host_alloc != NULL) o.alloc = host_alloc, o.free = host_free, o.alloc_ctx = r->b;
    r->loader = wg_loader_start(&o, order, n, epoch);
}

int wg_run_stream_batch(run *r, int64_t *n)
{
    const void *px;
    const int32_t *labels;
    char err[1200];
    if (!wg_loader_next(r->loader, &px, &labels, n, err, sizeof(err))) {
        fprintf(stderr, "wageubn: training stopped: %s (with [data] bad_files = skip such files are left out)\n", err);
        exit(1);
    }
    const wg_norm *norm = &r->train.norm;
    for (int64_t i = 0; i < *n; i++) r->labels[i] = labels[i];
    r->batch_px = px; /* the loader's (page-locked) buffer, already normalized by its workers */
    if (*n == 0) { /* nothing of this batch is this rank's: one image of the normalized zero */
        int64_t per = (int64_t)r->crop.size * r->crop.size;
        for (int64_t i = 0; i < per; i++)
            for (int c = 0; c < 3; c++) {
                if (r->int8) ((int8_t *)r->images)[3 * i + c] = norm->q[c][0];
                else ((float *)r->images)[3 * i + c] = norm->f[c][0];
            }
        r->labels[0] = 0;
        r->batch_px = r->images;
    }
    return norm->exp;
}
