/* train_setup.c: data, network and batch buffers of a run (see train_impl.h). */
#define _POSIX_C_SOURCE 200809L /* isatty, fileno */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "train_impl.h"

static const char *model_name(wg_model_name m)
{
    switch (m) {
    case WG_MODEL_RESNET20: return "resnet20";
    case WG_MODEL_RESNET32: return "resnet32";
    case WG_MODEL_RESNET56: return "resnet56";
    case WG_MODEL_RESNET18: return "resnet18";
    case WG_MODEL_RESNET34: return "resnet34";
    case WG_MODEL_RESNET50: return "resnet50";
    case WG_MODEL_PLAINCNN: return "plaincnn";
    case WG_MODEL_RESNET8: return "resnet8";
    }
    return "unknown";
}

/* Load one batch of images (by index) into r->images and r->labels. */
int wg_run_load_batch(run *r, const wg_dataset *ds, const int64_t *idx, int64_t n, bool augment, uint32_t epoch)
{
    wg_augment aug = {.flip = augment && r->cfg->data.augment_flip, .pad = augment ? r->cfg->data.augment_pad : 0};
    int exp = 0;
    if (r->int8) wg_data_batch_int8(ds, idx, n, aug, r->cfg->train.seed, epoch, r->images, &exp);
    else wg_data_batch_f32(ds, idx, n, aug, r->cfg->train.seed, epoch, r->images);
    r->batch_px = r->images;
    wg_data_batch_labels(ds, idx, n, r->labels8);
    for (int64_t i = 0; i < n; i++) r->labels[i] = r->labels8[i];
    return exp;
}

int64_t wg_run_shard(const run *r, int64_t n, int64_t *lo, bool *counted)
{
    int64_t per = (n + r->ranks - 1) / r->ranks, a = r->rank * per, b = a + per < n ? a + per : n;
    *counted = b > a;
    *lo = *counted ? a : 0;
    return *counted ? b - a : 1;
}

void wg_run_sum_stats(run *r, wg_loss_stats *st)
{
    if (r->dist == NULL) return;
    double v[4] = {st->loss_sum, (double)st->correct, (double)st->correct5, (double)st->count};
    wg_dist_sum_f64(r->dist, v, 4); /* integer counts below 2^53: exact */
    *st = (wg_loss_stats){.loss_sum = v[0], .correct = (int64_t)v[1], .correct5 = (int64_t)v[2], .count = (int64_t)v[3]};
}

/* Each global batch of the evaluation split over the ranks (with the training's
 * reductions over all of them, the decisions are one process's), the statistics summed. */
wg_loss_stats wg_run_evaluate(run *r, const wg_dataset *ds)
{
    wg_loss_stats st = {0};
    int64_t batch = r->cfg->train.batch;
    if (r->streamed) { /* the test set's JPEGs in order, with evaluation crops */
        WG_ASSERT(ds == &r->test, "a streamed run evaluates its test set%s", "");
        for (int64_t k = 0; k < ds->n; k++) r->order[k] = k;
        wg_run_stream_start(r, &r->test_set, r->order, ds->n, false, 0);
    }
    for (int64_t i = 0; i < ds->n; i += batch) {
        int64_t n = ds->n - i < batch ? ds->n - i : batch, lo, m;
        bool counted;
        int exp;
        if (r->streamed) {
            exp = wg_run_stream_batch(r, &m);
            counted = m > 0;
            m = m > 0 ? m : 1;
        } else {
            m = wg_run_shard(r, n, &lo, &counted);
            for (int64_t k = 0; k < m; k++) r->order[k] = i + lo + k;
            exp = wg_run_load_batch(r, ds, r->order, m, false, 0);
        }
        wg_net_forward(r->net, r->batch_px, exp, m, false);
        wg_loss_stats part = {0};
        wg_net_loss(r->net, r->labels, false, &part);
        if (counted) {
            st.loss_sum += part.loss_sum, st.correct += part.correct, st.correct5 += part.correct5;
            st.count += part.count;
        }
    }
    wg_run_sum_stats(r, &st);
    return st;
}

/* Re-estimate the BN running statistics for the current weights: forward passes in
 * training mode (no backward, no update) over the first batches of the training set,
 * in order and without augmentation. During training the weights move faster than a
 * 0.997 running average follows (their scale grows step by step under BN), so the
 * averages lag; re-estimating them makes evaluation reflect the weights evaluated.
 * Deterministic: the same images every time. */
void wg_run_recalibrate_bn(run *r)
{
    int64_t batch = r->cfg->train.batch, nb = r->cfg->train.bn_recalibrate;
    if (nb == 0) return;
    wg_net_reset_bn_stats(r->net);
    if (nb * batch > r->train.n) nb = r->train.n / batch;
    if (r->streamed) { /* the first training images, with evaluation crops */
        for (int64_t k = 0; k < nb * batch; k++) r->order[k] = k;
        wg_run_stream_start(r, &r->train_set, r->order, nb * batch, false, 0);
    }
    for (int64_t k = 0; k < nb; k++) {
        int exp;
        if (r->streamed) {
            int64_t m;
            exp = wg_run_stream_batch(r, &m);
        } else {
            for (int64_t i = 0; i < r->local_batch; i++) r->order[i] = k * batch + r->rank * r->local_batch + i;
            exp = wg_run_load_batch(r, &r->train, r->order, r->local_batch, false, 0);
        }
        wg_net_forward(r->net, r->batch_px, exp, r->local_batch, true);
    }
}

bool wg_run_setup(run *r, char *err, size_t errlen)
{
    r->ranks = r->dist ? wg_dist_size(r->dist) : 1;
    r->rank = r->dist ? wg_dist_rank(r->dist) : 0;
    r->primary = r->rank == 0;
    const wg_config *cfg = r->cfg;
    if (cfg->data.format == WG_DATA_IMAGEFOLDER || cfg->data.format == WG_DATA_LIST) {
        if (!wg_run_stream_open(r, err, errlen)) return false;
    } else {
        if (!wg_dataset_load(cfg->data.root, cfg->data.format == WG_DATA_IDX ? "idx" : "cifar", cfg->data.limit_train,
                             cfg->data.limit_test, &r->train, &r->test, err, errlen))
            return false;
        if (cfg->data.val_split > 0 && !wg_dataset_split_val(&r->train, cfg->data.val_split, &r->val, err, errlen))
            return false;
    }
    if (r->train.n < cfg->train.batch) {
        snprintf(err, errlen, "[train] batch = %d is larger than the %lld training images", cfg->train.batch,
                 (long long)r->train.n);
        return false;
    }
    if (cfg->train.threads > 0) omp_set_num_threads(cfg->train.threads);
    if (cfg->train.batch % r->ranks != 0) {
        snprintf(err, errlen, "[train] batch = %d does not split evenly over %d ranks (each rank takes batch / ranks "
                              "images of every step: choose a multiple of %d)",
                 cfg->train.batch, r->ranks, r->ranks);
        return false;
    }
    r->local_batch = cfg->train.batch / r->ranks;
    if (r->b == NULL) {
        r->b = wg_backend_cpu_init();
        r->b_owned = true;
    }
    if (r->ranks > 1 && cfg->dist.bn == WG_BN_STATS_SYNC) wg_backend_set_sync(r->b, wg_dist_batch_sync(r->dist));
    wg_net_opts o = {.model = model_name(cfg->model.name), .int8 = r->int8, .bits = cfg->quant.bits,
                     .act = cfg->quant.act_exponent, .e2 = cfg->quant.e2,
                     .float_ends = cfg->quant.preset == WG_PRESET_REFERENCE, .batch = r->local_batch,
                     .h = r->train.h, .w = r->train.w, .c = r->train.c, .classes = r->train.num_classes,
                     .seed = cfg->train.seed};
    for (int i = 0; i < cfg->train.g_scale.n; i++) { /* containers for the schedule's largest g_scale (optim.c) */
        int l = (int)lround(log2(cfg->train.g_scale.v[i]));
        if (l > o.bits.g_scale_log2) o.bits.g_scale_log2 = l;
    }
    r->net = wg_net_create(&o, r->b, err, errlen);
    if (r->net == NULL) return false;
    int64_t pix = r->local_batch * r->train.h * r->train.w * r->train.c;
    int64_t most = r->train.n > r->test.n ? r->train.n : r->test.n;
    r->images = malloc((size_t)pix * (r->int8 ? 1 : sizeof(float)));
    r->labels8 = malloc((size_t)cfg->train.batch);
    r->labels = malloc((size_t)cfg->train.batch * sizeof(int32_t));
    r->order = malloc((size_t)(most > cfg->train.batch ? most : cfg->train.batch) * sizeof(int64_t));
    WG_ASSERT(r->images && r->labels8 && r->labels && r->order, "out of memory for the batch buffers");
    r->tty = isatty(fileno(stderr));
    return true;
}

void wg_run_teardown(run *r)
{
    if (r->streamed) wg_run_stream_close(r);
    wg_net_free(r->net);
    if (r->b != NULL) wg_backend_set_sync(r->b, NULL);
    if (r->b_owned) wg_backend_free(r->b);
    wg_dataset_free(&r->train);
    wg_dataset_free(&r->test);
    wg_dataset_free(&r->val);
    free(r->images);
    free(r->labels8);
    free(r->labels);
    free(r->order);
}
