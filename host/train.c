/* train.c: the training loop (see train.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkdir, isatty, fileno */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "check.h"
#include "data.h"
#include "net.h"
#include "optim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mkdir -p; false with a message naming the directory. */
static bool make_dirs(const char *path)
{
    char buf[WG_CONFIG_MAX_STR + 8];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "wageubn: cannot create the run directory %s: %s\n", buf, strerror(errno));
                return false;
            }
            if (end) return true;
            *p = '/';
        }
    }
}

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

/* Everything one run holds. */
typedef struct run {
    const wg_config *cfg;
    bool int8;
    wg_dataset train, test, val;
    wg_net *net;
    wg_backend *b;
    void *images; /* one batch, int8 or float */
    uint8_t *labels8;
    int32_t *labels;
    int64_t *order;
    FILE *metrics;
    bool tty;
} run;

static void metrics_line(run *r, const char *split, double epoch, int64_t step, const wg_loss_stats *st, double lr,
                         double img_per_s)
{
    double loss = st->count ? st->loss_sum / (double)st->count : 0, acc = st->count ? (double)st->correct / (double)st->count : 0;
    fprintf(r->metrics, "{\"split\": \"%s\", \"epoch\": %.4f, \"step\": %lld, \"loss\": %.6f, \"acc\": %.6f, \"lr\": %.6g, "
                        "\"img_per_s\": %.2f}\n",
            split, epoch, (long long)step, loss, acc, lr, img_per_s);
    fflush(r->metrics);
}

/* Load one batch of images (by index) into r->images and r->labels. */
static int load_batch(run *r, const wg_dataset *ds, const int64_t *idx, int64_t n, bool augment, uint32_t epoch)
{
    wg_augment aug = {.flip = augment && r->cfg->data.augment_flip, .pad = augment ? r->cfg->data.augment_pad : 0};
    int exp = 0;
    if (r->int8) wg_data_batch_int8(ds, idx, n, aug, r->cfg->train.seed, epoch, r->images, &exp);
    else wg_data_batch_f32(ds, idx, n, aug, r->cfg->train.seed, epoch, r->images);
    wg_data_batch_labels(ds, idx, n, r->labels8);
    for (int64_t i = 0; i < n; i++) r->labels[i] = r->labels8[i];
    return exp;
}

static wg_loss_stats evaluate(run *r, const wg_dataset *ds)
{
    wg_loss_stats st = {0};
    int64_t batch = r->cfg->train.batch;
    for (int64_t i = 0; i < ds->n; i += batch) {
        int64_t n = ds->n - i < batch ? ds->n - i : batch;
        for (int64_t k = 0; k < n; k++) r->order[k] = i + k;
        int exp = load_batch(r, ds, r->order, n, false, 0);
        wg_net_forward(r->net, r->images, exp, n, false);
        wg_net_loss(r->net, r->labels, false, &st);
    }
    return st;
}

/* Re-estimate the BN running statistics for the current weights: forward passes in
 * training mode (no backward, no update) over the first batches of the training set,
 * in order and without augmentation. During training the weights move faster than a
 * 0.997 running average follows (their scale grows step by step under BN), so the
 * averages lag; re-estimating them makes evaluation reflect the weights evaluated.
 * Deterministic: the same images every time. */
static void recalibrate_bn(run *r)
{
    int64_t batch = r->cfg->train.batch, nb = r->cfg->train.bn_recalibrate;
    if (nb == 0) return;
    wg_net_reset_bn_stats(r->net);
    for (int64_t k = 0; k < nb && (k + 1) * batch <= r->train.n; k++) {
        for (int64_t i = 0; i < batch; i++) r->order[i] = k * batch + i;
        int exp = load_batch(r, &r->train, r->order, batch, false, 0);
        wg_net_forward(r->net, r->images, exp, batch, true);
    }
}

static void progress(run *r, int epoch, int64_t s, int64_t spe, const wg_loss_stats *st, double lr, double ips,
                     double eta_s)
{
    double loss = st->loss_sum / (double)st->count, acc = 100.0 * (double)st->correct / (double)st->count;
    fprintf(stderr, "%sepoch %d/%d  step %lld/%lld  loss %.4f  acc %5.1f%%  lr %.4g  %.0f img/s  ETA %dm%02ds%s",
            r->tty ? "\r" : "", epoch + 1, r->cfg->train.epochs, (long long)s, (long long)spe, loss, acc, lr, ips,
            (int)(eta_s / 60), (int)fmod(eta_s, 60), r->tty ? "   " : "\n");
    fflush(stderr);
}

static void eval_report(run *r, int epoch, int64_t step, wg_train_result *res)
{
    const struct {
        const char *split;
        const wg_dataset *ds;
    } sets[] = {{"val", &r->val}, {"test", &r->test}};
    recalibrate_bn(r);
    for (int k = 0; k < 2; k++) {
        if (sets[k].ds->n == 0) continue;
        wg_loss_stats st = evaluate(r, sets[k].ds);
        metrics_line(r, sets[k].split, epoch + 1, step, &st, 0, 0);
        double acc = (double)st.correct / (double)st.count;
        fprintf(stderr, "%sepoch %d/%d  %s loss %.4f  %s acc %.2f%%\n", r->tty ? "\n" : "", epoch + 1,
                r->cfg->train.epochs, sets[k].split, st.loss_sum / (double)st.count, sets[k].split, 100 * acc);
        if (k == 0) res->val_acc = acc;
        else {
            res->test_acc = acc;
            res->test_loss = st.loss_sum / (double)st.count;
        }
    }
}

static bool setup(run *r, char *err, size_t errlen)
{
    const wg_config *cfg = r->cfg;
    if (!wg_dataset_load(cfg->data.root, cfg->data.format == WG_DATA_IDX ? "idx" : "cifar", cfg->data.limit_train,
                         cfg->data.limit_test, &r->train, &r->test, err, errlen))
        return false;
    if (cfg->data.val_split > 0 && !wg_dataset_split_val(&r->train, cfg->data.val_split, &r->val, err, errlen))
        return false;
    if (r->train.n < cfg->train.batch) {
        snprintf(err, errlen, "[train] batch = %d is larger than the %lld training images", cfg->train.batch,
                 (long long)r->train.n);
        return false;
    }
    if (!make_dirs(cfg->output.dir)) {
        snprintf(err, errlen, "no run directory");
        return false;
    }
    char path[WG_CONFIG_MAX_STR + 32];
    snprintf(path, sizeof(path), "%s/config.ini", cfg->output.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL || !wg_config_write(cfg, f) || fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    snprintf(path, sizeof(path), "%s/metrics.jsonl", cfg->output.dir);
    r->metrics = fopen(path, "w");
    if (r->metrics == NULL) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    r->b = wg_backend_cpu_init();
    wg_net_opts o = {.model = model_name(cfg->model.name), .int8 = r->int8, .bits = cfg->quant.bits,
                     .act = cfg->quant.act_exponent, .e2 = cfg->quant.e2,
                     .float_ends = cfg->quant.preset == WG_PRESET_REFERENCE, .batch = cfg->train.batch,
                     .h = r->train.h, .w = r->train.w, .c = r->train.c, .classes = r->train.num_classes,
                     .seed = cfg->train.seed};
    r->net = wg_net_create(&o, r->b, err, errlen);
    if (r->net == NULL) return false;
    int64_t pix = (int64_t)cfg->train.batch * r->train.h * r->train.w * r->train.c;
    int64_t most = r->train.n > r->test.n ? r->train.n : r->test.n;
    r->images = malloc((size_t)pix * (r->int8 ? 1 : sizeof(float)));
    r->labels8 = malloc((size_t)cfg->train.batch);
    r->labels = malloc((size_t)cfg->train.batch * sizeof(int32_t));
    r->order = malloc((size_t)(most > cfg->train.batch ? most : cfg->train.batch) * sizeof(int64_t));
    WG_ASSERT(r->images && r->labels8 && r->labels && r->order, "out of memory for the batch buffers");
    r->tty = isatty(fileno(stderr));
    return true;
}

static void teardown(run *r)
{
    if (r->metrics) fclose(r->metrics);
    wg_net_free(r->net);
    if (r->b) wg_backend_free(r->b);
    wg_dataset_free(&r->train);
    wg_dataset_free(&r->test);
    wg_dataset_free(&r->val);
    free(r->images);
    free(r->labels8);
    free(r->labels);
    free(r->order);
}

static bool write_summary(const run *r, const wg_train_result *res)
{
    char path[WG_CONFIG_MAX_STR + 32];
    snprintf(path, sizeof(path), "%s/summary.json", r->cfg->output.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return false;
    fprintf(f,
            "{\"model\": \"%s\", \"mode\": \"%s\", \"epochs\": %d, \"steps\": %lld, \"test_acc\": %.6f, "
            "\"test_loss\": %.6f, \"val_acc\": %.6f, \"train_img_per_s\": %.2f, \"wall_s\": %.2f, "
            "\"parameters\": %lld}\n",
            wg_net_name(r->net), r->int8 ? "int8" : "fp32", r->cfg->train.epochs, (long long)res->steps, res->test_acc,
            res->test_loss, res->val_acc, res->train_img_per_s, res->wall_s, (long long)wg_net_param_scalars(r->net));
    return fclose(f) == 0;
}

int wg_train_run(const wg_config *cfg, wg_train_result *res)
{
    run r = {.cfg = cfg, .int8 = cfg->train.mode == WG_MODE_INT8};
    memset(res, 0, sizeof(*res));
    char err[WG_CONFIG_ERR_LEN];
    double t0 = now_s();
    if (!setup(&r, err, sizeof(err))) {
        fprintf(stderr, "wageubn train: %s\n", err);
        teardown(&r);
        return 1;
    }
    int nparams;
    wg_param *params = wg_net_params(r.net, &nparams);
    int64_t batch = cfg->train.batch, spe = r.train.n / batch, step = 0;
    fprintf(stderr, "wageubn: %s, %s mode, %lld parameters; %lld training images (%lld steps of %lld per epoch), "
                    "%lld test; run directory %s\n",
            wg_net_name(r.net), r.int8 ? "int8" : "fp32", (long long)wg_net_param_scalars(r.net), (long long)r.train.n,
            (long long)spe, (long long)batch, (long long)r.test.n, cfg->output.dir);
    double train_time = 0;
    int64_t train_images = 0;
    for (int e = 0; e < cfg->train.epochs; e++) {
        wg_data_epoch_order(r.train.n, cfg->train.seed, (uint32_t)e, r.order);
        wg_loss_stats window = {0};
        double tw = now_s();
        for (int64_t s = 0; s < spe; s++, step++) {
            double ts = now_s(), epoch_f = e + (double)s / (double)spe;
            int exp = load_batch(&r, &r.train, r.order + s * batch, batch, true, (uint32_t)e);
            wg_net_forward(r.net, r.images, exp, batch, true);
            wg_net_loss(r.net, r.labels, true, &window);
            wg_optim_step_args a = {.lr = wg_config_lr_at(cfg, epoch_f), .g_scale_log2 = wg_config_g_scale_log2_at(cfg, epoch_f),
                                    .momentum = cfg->train.momentum, .weight_decay = cfg->train.weight_decay,
                                    .seed = cfg->train.seed, .step = (uint32_t)step, .bits = &cfg->quant.bits};
            wg_optim_step(params, nparams, &a);
            train_time += now_s() - ts;
            train_images += batch;
            bool last = s + 1 == spe;
            if ((s + 1) % cfg->train.log_every == 0 || last) {
                double ips = (double)window.count / (now_s() - tw);
                double eta = (double)((cfg->train.epochs - e) * spe - s - 1) * (double)batch / (train_images / train_time);
                metrics_line(&r, "train", epoch_f, step + 1, &window, a.lr, ips);
                progress(&r, e, s + 1, spe, &window, a.lr, ips, eta);
                window = (wg_loss_stats){0};
                tw = now_s();
            }
        }
        if ((e + 1) % cfg->train.eval_every == 0 || e + 1 == cfg->train.epochs) eval_report(&r, e, step, res);
    }
    res->steps = step;
    res->train_img_per_s = train_time > 0 ? (double)train_images / train_time : 0;
    res->wall_s = now_s() - t0;
    if (!write_summary(&r, res)) fprintf(stderr, "wageubn train: cannot write %s/summary.json\n", cfg->output.dir);
    fprintf(stderr, "wageubn: test accuracy %.2f%% after %d epochs (%.0f training images/s, %.0f s)\n",
            100 * res->test_acc, cfg->train.epochs, res->train_img_per_s, res->wall_s);
    teardown(&r);
    return 0;
}
