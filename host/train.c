/* train.c: the training loop (see train.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sigaction, isatty, fileno */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "gemm.h"
#include "check.h"
#include "checkpoint.h"
#include "data.h"
#include "train_impl.h"
#include "net.h"
#include "optim.h"
#include "run_dir.h"
#include "safetensors.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- signals: SIGINT and SIGTERM stop the run after a checkpoint -------------------- */

static volatile sig_atomic_t g_signal; /* the first SIGINT/SIGTERM received; 0 = none */

static void on_signal(int sig)
{
    if (g_signal) { /* a second signal: stop now (the last checkpoint on disk is whole) */
        static const char msg[] = "\nwageubn: second signal: stopping at once\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)ignored;
        wg_st_abandon_partial();
        _exit(WG_TRAIN_EXIT_SIGNALLED + sig);
    }
    g_signal = sig;
}

typedef struct saved_handlers {
    struct sigaction sigint, sigterm;
} saved_handlers;

static saved_handlers catch_signals(void)
{
    saved_handlers old;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_signal = 0;
    WG_ASSERT(sigaction(SIGINT, &sa, &old.sigint) == 0 && sigaction(SIGTERM, &sa, &old.sigterm) == 0, "sigaction: %s",
              strerror(errno));
    return old;
}

static void restore_signals(const saved_handlers *old)
{
    sigaction(SIGINT, &old->sigint, NULL);
    sigaction(SIGTERM, &old->sigterm, NULL);
}

/* ---- logging ------------------------------------------------------------------------ */

static void metrics_line(run *r, const char *split, double epoch, int64_t step, const wg_loss_stats *st, double lr,
                         double img_per_s)
{
    if (r->metrics == NULL) return; /* a rank other than the primary */
    double loss = st->count ? st->loss_sum / (double)st->count : 0, acc = st->count ? (double)st->correct / (double)st->count : 0;
    char loss_s[32] = "null"; /* a diverged float loss: JSON has no nan or inf */
    if (isfinite(loss)) snprintf(loss_s, sizeof(loss_s), "%.6f", loss);
    fprintf(r->metrics, "{\"split\": \"%s\", \"epoch\": %.4f, \"step\": %lld, \"loss\": %s, \"acc\": %.6f, \"lr\": %.6g, "
                        "\"img_per_s\": %.2f}\n",
            split, epoch, (long long)step, loss_s, acc, lr, img_per_s);
    fflush(r->metrics);
}

static void progress(run *r, int epoch, int64_t s, int64_t spe, const wg_loss_stats *st, double lr, double ips,
                     double eta_s)
{
    if (!r->primary) return;
    double loss = st->loss_sum / (double)st->count, acc = 100.0 * (double)st->correct / (double)st->count;
    fprintf(stderr, "%sepoch %d/%d  step %lld/%lld  loss %.4f  acc %5.1f%%  lr %.4g  %.0f img/s  ETA %dm%02ds%s",
            r->tty ? "\r" : "", epoch + 1, r->cfg->train.epochs, (long long)s, (long long)spe, loss, acc, lr, ips,
            (int)(eta_s / 60), (int)fmod(eta_s, 60), r->tty ? "   " : "\n");
    fflush(stderr);
}

/* Evaluate the validation split (if any) and the test set; returns the accuracy that
 * ranks checkpoints (validation when there is a split, else test). */
static double eval_report(run *r, int epoch, int64_t step, wg_train_result *res)
{
    const struct {
        const char *split;
        const wg_dataset *ds;
    } sets[] = {{"val", &r->val}, {"test", &r->test}};
    wg_run_recalibrate_bn(r);
    for (int k = 0; k < 2; k++) {
        if (sets[k].ds->n == 0) continue;
        wg_loss_stats st = wg_run_evaluate(r, sets[k].ds);
        metrics_line(r, sets[k].split, epoch + 1, step, &st, 0, 0);
        double acc = (double)st.correct / (double)st.count;
        if (r->primary)
            fprintf(stderr, "%sepoch %d/%d  %s loss %.4f  %s acc %.2f%%\n", r->tty ? "\n" : "", epoch + 1,
                    r->cfg->train.epochs, sets[k].split, st.loss_sum / (double)st.count, sets[k].split, 100 * acc);
        if (k == 0) res->val_acc = acc;
        else {
            res->test_acc = acc;
            res->test_loss = st.loss_sum / (double)st.count;
            res->test_top5 = (double)st.correct5 / (double)st.count;
        }
    }
    return r->val.n ? res->val_acc : res->test_acc;
}

static bool write_summary(const run *r, const wg_train_result *res)
{
    char path[WG_CONFIG_MAX_STR + 32];
    snprintf(path, sizeof(path), "%s/summary.json", r->cfg->output.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return false;
    fprintf(f,
            "{\"model\": \"%s\", \"mode\": \"%s\", \"epochs\": %d, \"steps\": %lld, \"test_acc\": %.6f, "
            "\"test_top5\": %.6f, \"test_loss\": %.6f, \"val_acc\": %.6f, \"train_img_per_s\": %.2f, \"wall_s\": %.2f, "
            "\"parameters\": %lld, \"gemm_kernels\": \"%s\"}\n",
            wg_net_name(r->net), r->int8 ? "int8" : "fp32", r->cfg->train.epochs, (long long)res->steps, res->test_acc,
            res->test_top5, res->test_loss, res->val_acc, res->train_img_per_s, res->wall_s,
            (long long)wg_net_param_scalars(r->net),
            r->int8 ? wg_gemm_path_name(wg_gemm_path_current()) : wg_gemm_f32_kernels_name());
    return fclose(f) == 0;
}

/* ---- the run directory and resuming -------------------------------------------------- */

/* Prepare the run directory, write config.ini, open metrics.jsonl (appended to when
 * resuming). Returns an exit status: 0, 1 (I/O) or 2 (a directory in use). */
static int open_run_dir(run *r, const wg_train_opts *opts, char *err, size_t errlen)
{
    const char *dir = r->cfg->output.dir; /* made with its checkpoints/ by wg_run_dir_prepare */
    int status = wg_run_dir_prepare(dir, opts->resume != NULL, opts->overwrite, err, errlen);
    if (status) return status;
    char path[WG_CONFIG_MAX_STR + 32];
    snprintf(path, sizeof(path), "%s/config.ini", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL || !wg_config_write(r->cfg, f) || fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return 1;
    }
    if (r->streamed) { /* the class index of the folder names (or the list's labels) */
        snprintf(path, sizeof(path), "%s/classes.txt", dir);
        f = fopen(path, "w");
        if (f == NULL || !wg_imageset_write_classes(&r->train_set, f) || fclose(f) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            return 1;
        }
    }
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    r->metrics = fopen(path, opts->resume ? "a" : "w");
    if (r->metrics == NULL) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* Load the checkpoint opts->resume names into the network; *pos: where to go on. The
 * keys that give a step and a position their meaning must be those of the checkpoint;
 * other differences are listed as a warning. */
static bool resume(run *r, const char *arg, wg_ckpt_position *pos, char *err, size_t errlen)
{
    const wg_config *cfg = r->cfg;
    char path[1024];
    wg_config saved;
    if (!wg_checkpoint_resolve(arg, path, sizeof(path), err, errlen) ||
        !wg_checkpoint_load(path, r->net, &cfg->quant.bits, pos, &saved, err, errlen))
        return false;
    static const char *const ignore[] = {"output.dir", "output.keep_checkpoints", "output.checkpoint_every",
                                         "train.threads", "train.device", "train.log_every", NULL};
    char diff[700];
    int ndiff = wg_config_diff(&saved, cfg, ignore, diff, sizeof(diff));
    bool fits = saved.model.name == cfg->model.name && saved.train.mode == cfg->train.mode &&
                saved.quant.preset == cfg->quant.preset && saved.data.format == cfg->data.format &&
                saved.data.limit_train == cfg->data.limit_train && saved.data.val_split == cfg->data.val_split &&
                saved.train.batch == cfg->train.batch && saved.train.seed == cfg->train.seed;
    if (!fits) {
        snprintf(err, errlen, "%s: the checkpoint was trained with a different model, mode, preset, data, batch or "
                              "seed; the config differs in: %s", path, diff);
        return false;
    }
    if (pos->epoch > cfg->train.epochs || (pos->epoch == cfg->train.epochs && pos->epoch_step > 0)) {
        snprintf(err, errlen, "%s: the checkpoint is past the end of training (%d epochs in [train] epochs); raise it to "
                              "train on (--set train.epochs=N)", path, cfg->train.epochs);
        return false;
    }
    if (ndiff) fprintf(stderr, "wageubn: warning: resuming with a config that differs from the checkpoint's: %s\n", diff);
    char where[96];
    wg_ckpt_position_str(pos, where, sizeof(where));
    fprintf(stderr, "wageubn: resuming from %s at %s\n", path, where);
    return true;
}

static bool save_primary(run *r, const wg_ckpt_position *pos, bool best, char *written, size_t writtenlen)
{
    char err[1400];
    if (wg_run_dir_save(r->cfg->output.dir, r->cfg->output.keep_checkpoints, best, r->net, r->cfg, pos, written,
                        writtenlen, err, sizeof(err)))
        return true;
    fprintf(stderr, "%swageubn train: %s\n", r->tty ? "\n" : "", err);
    return false;
}

/* The primary rank writes; every rank learns whether that worked. */
static bool save(run *r, const wg_ckpt_position *pos, bool best, char *written, size_t writtenlen)
{
    bool ok = !r->primary || save_primary(r, pos, best, written, writtenlen);
    return r->dist == NULL || wg_dist_agree(r->dist, ok ? 0 : 1) == 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void step_once(run *r, wg_param *params, int nparams, int e, int64_t s, int64_t spe, int64_t step,
                      wg_loss_stats *window, double *lr)
{
    const wg_config *cfg = r->cfg;
    int64_t batch = cfg->train.batch;
    double epoch_f = e + (double)s / (double)spe;
    /* this rank's part of the global batch (streamed: the loader's next batch, the same images) */
    int exp;
    if (r->streamed) {
        int64_t n;
        exp = wg_run_stream_batch(r, &n);
        WG_ASSERT(n == r->local_batch, "the loader gave %lld images, not %lld", (long long)n, (long long)r->local_batch);
    } else {
        const int64_t *idx = r->order + s * batch + r->rank * r->local_batch;
        exp = wg_run_load_batch(r, &r->train, idx, r->local_batch, true, (uint32_t)e);
    }
    wg_net_forward(r->net, r->batch_px, exp, r->local_batch, true);
    wg_net_loss(r->net, r->labels, true, window);
    if (r->dist != NULL)
        wg_dist_allreduce_grads(r->dist, r->cfg->dist.allreduce == WG_ALLREDUCE_EXACT ? WG_DIST_EXACT : WG_DIST_COMPRESSED,
                                params, nparams);
    wg_optim_step_args a = {.lr = wg_config_lr_at(cfg, epoch_f), .g_scale_log2 = wg_config_g_scale_log2_at(cfg, epoch_f),
                            .momentum = cfg->train.momentum, .weight_decay = cfg->train.weight_decay,
                            .seed = cfg->train.seed, .step = (uint32_t)step, .bits = &cfg->quant.bits};
    wg_optim_step(params, nparams, &a);
    *lr = a.lr;
}

int wg_train_run(const wg_config *cfg, const wg_train_opts *opts, wg_train_result *res)
{
    run r = {.cfg = cfg, .int8 = cfg->train.mode == WG_MODE_INT8, .b = opts->backend, .dist = opts->dist,
             .primary = opts->dist == NULL || wg_dist_rank(opts->dist) == 0};
    memset(res, 0, sizeof(*res));
    char err[WG_CONFIG_ERR_LEN + 1024];
    double t0 = now_s();
    wg_ckpt_position pos = {.best_acc = -1, .last_acc = -1};
    /* the checkpoint is checked before the run directory is touched */
    int status = wg_run_setup(&r, err, sizeof(err)) ? 0 : 1;
    if (!status && opts->resume && !resume(&r, opts->resume, &pos, err, sizeof(err))) status = WG_TRAIN_EXIT_USAGE;
    if (!status && r.primary) status = open_run_dir(&r, opts, err, sizeof(err));
    /* one rank's failure stops them all; a failure they share (the config) is said once */
    int64_t failing = status != 0;
    if (r.dist) wg_dist_sum_i64(r.dist, &failing, 1);
    int agreed = r.dist ? wg_dist_agree(r.dist, status) : status;
    if (agreed) {
        if (status && (r.primary || failing < r.ranks)) {
            char who[32] = "";
            if (r.ranks > 1 && failing < r.ranks) snprintf(who, sizeof(who), " (rank %d)", r.rank);
            fprintf(stderr, "wageubn train%s: %s\n", who, err);
        } else if (r.primary) {
            fprintf(stderr, "wageubn train: stopping: %lld of %d ranks failed to start (their messages say why)\n",
                    (long long)failing, r.ranks);
        }
        status = agreed;
        if (r.metrics) fclose(r.metrics);
        wg_run_teardown(&r);
        return status;
    }
    int nparams;
    wg_param *params = wg_net_params(r.net, &nparams);
    int64_t batch = cfg->train.batch, spe = r.train.n / batch, step = pos.step;
    if (r.primary && r.ranks > 1) {
        wg_dist_traffic t = wg_dist_traffic_of(params, nparams, r.ranks);
        bool exact = cfg->dist.allreduce == WG_ALLREDUCE_EXACT;
        fprintf(stderr, "wageubn: %d ranks (%s), %lld images each per step; [dist] allreduce = %s, bn = %s: %.2f MB "
                        "of gradients allreduced per step (fp32 would be %.2f MB)\n",
                r.ranks, wg_dist_describe(r.dist), (long long)r.local_batch, exact ? "exact" : "compressed",
                cfg->dist.bn == WG_BN_STATS_SYNC ? "sync" : "local",
                (double)(exact ? t.bytes_exact : t.bytes_compressed) / 1e6, (double)t.bytes_fp32 / 1e6);
    }
    if (r.primary)
        fprintf(stderr, "wageubn: %s, %s mode%s%s, %lld parameters; %lld training images (%lld steps of %lld per epoch), "
                        "%lld test; run directory %s\n",
                wg_net_name(r.net), r.int8 ? "int8" : "fp32", r.int8 ? " on the int8 GEMM kernels " : "",
                r.int8 ? wg_gemm_path_name(wg_gemm_path_current()) : "", (long long)wg_net_param_scalars(r.net),
                (long long)r.train.n, (long long)spe, (long long)batch, (long long)r.test.n, cfg->output.dir);
    saved_handlers old = catch_signals();
    double train_time = pos.train_time_s;
    int64_t train_images = pos.train_images;
    char written[1100] = "";
    bool evaluated = false;
    for (int e = pos.epoch; e < cfg->train.epochs && !status; e++) {
        wg_data_epoch_order(r.train.n, cfg->train.seed, (uint32_t)e, r.order);
        int64_t s0 = e == pos.epoch ? pos.epoch_step : 0;
        if (r.streamed) /* this epoch's remaining full batches, decoded ahead */
            wg_run_stream_start(&r, &r.train_set, r.order + s0 * batch, (spe - s0) * batch, true, (uint32_t)e);
        wg_loss_stats window = {0};
        double tw = now_s();
        for (int64_t s = e == pos.epoch ? pos.epoch_step : 0; s < spe && !status; s++, step++) {
            double ts = now_s(), lr;
            step_once(&r, params, nparams, e, s, spe, step, &window, &lr);
            train_time += now_s() - ts;
            train_images += batch;
            if ((s + 1) % cfg->train.log_every == 0 || s + 1 == spe) {
                wg_run_sum_stats(&r, &window);
                double ips = (double)window.count / (now_s() - tw);
                double eta = (double)((cfg->train.epochs - e) * spe - s - 1) * (double)batch / (train_images / train_time);
                metrics_line(&r, "train", e + (double)s / (double)spe, step + 1, &window, lr, ips);
                progress(&r, e, s + 1, spe, &window, lr, ips, eta);
                window = (wg_loss_stats){0};
                tw = now_s();
            }
            bool periodic = cfg->output.checkpoint_every && (step + 1) % cfg->output.checkpoint_every == 0 && s + 1 < spe;
            if (r.dist) g_signal = wg_dist_agree(r.dist, g_signal); /* every rank stops at the same step */
            if (periodic || g_signal) {
                pos = (wg_ckpt_position){step + 1, e, s + 1, pos.best_acc, pos.best_step, pos.last_acc, train_time,
                                         train_images};
                if (!save(&r, &pos, false, written, sizeof(written))) status = 1;
                else if (g_signal) status = WG_TRAIN_EXIT_SIGNALLED + g_signal;
            }
        }
        if (status) break;
        bool best = false;
        if ((e + 1) % cfg->train.eval_every == 0 || e + 1 == cfg->train.epochs) {
            pos.last_acc = eval_report(&r, e, step, res);
            evaluated = true;
            best = pos.last_acc > pos.best_acc;
            if (best) pos.best_acc = pos.last_acc, pos.best_step = step;
        }
        pos = (wg_ckpt_position){step, e + 1, 0, pos.best_acc, pos.best_step, pos.last_acc, train_time, train_images};
        if (r.dist) g_signal = wg_dist_agree(r.dist, g_signal);
        if (!save(&r, &pos, best, written, sizeof(written))) status = 1;
        else if (g_signal) status = WG_TRAIN_EXIT_SIGNALLED + g_signal;
    }
    if (!status && !evaluated) {
        /* resumed from the end of training (a run stopped before its summary): evaluate
         * it, as its last epoch did, for the summary */
        if (r.primary) fprintf(stderr, "wageubn: the checkpoint is at the end of training: evaluating it\n");
        eval_report(&r, cfg->train.epochs - 1, step, res);
    }
    restore_signals(&old);
    res->steps = step;
    res->train_img_per_s = train_time > 0 ? (double)train_images / train_time : 0;
    res->wall_s = now_s() - t0;
    if (!r.primary) {
        /* the primary rank reports */
    } else if (status > WG_TRAIN_EXIT_SIGNALLED) {
        fprintf(stderr, "%swageubn: stopped by signal %d at step %lld; checkpoint %s. Continue with: wageubn train "
                        "%s --resume %s\n", r.tty ? "\n" : "", status - WG_TRAIN_EXIT_SIGNALLED, (long long)step,
                written, opts->config_path ? opts->config_path : "CONFIG", cfg->output.dir);
    } else if (status == 0) {
        if (!write_summary(&r, res)) fprintf(stderr, "wageubn train: cannot write %s/summary.json\n", cfg->output.dir);
        fprintf(stderr, "wageubn: test accuracy %.2f%% after %d epochs (%.0f training images/s, %.0f s)%s%s\n",
                100 * res->test_acc, cfg->train.epochs, res->train_img_per_s, res->wall_s, written[0] ? "; checkpoint " : "",
                written);
    }
    if (r.metrics) fclose(r.metrics);
    wg_run_teardown(&r);
    return status;
}
