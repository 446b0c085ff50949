/* eval.c: wageubn eval CONFIG --checkpoint F (see train.h). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "checkpoint.h"
#include "train.h"
#include "train_impl.h"

/* One split's numbers, printed and added to the JSON object. */
static void report(const char *split, const wg_loss_stats *st, int classes, cJSON *root)
{
    double n = (double)st->count, loss = st->loss_sum / n, top1 = (double)st->correct / n;
    double top5 = (double)st->correct5 / n;
    cJSON *o = cJSON_AddObjectToObject(root, split);
    cJSON_AddNumberToObject(o, "images", n);
    cJSON_AddNumberToObject(o, "loss", loss);
    cJSON_AddNumberToObject(o, "top1", top1);
    printf("%-4s  %6.0f images  loss %.4f  top-1 %.2f%%", split, n, loss, 100 * top1);
    if (classes > 5) { /* top-5 says nothing with 5 classes or fewer */
        cJSON_AddNumberToObject(o, "top5", top5);
        printf("  top-5 %.2f%%", 100 * top5);
    }
    printf("\n");
}

static bool write_json(const char *path, const cJSON *root)
{
    char *text = cJSON_Print(root);
    WG_ASSERT(text != NULL, "out of memory");
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = f && fclose(f) == 0 && ok;
    free(text);
    return ok;
}

/* Whether every BN layer's running statistics were set by a training step. */
static bool bn_statistics_set(wg_net *net)
{
    int n = wg_net_bn_state(net, NULL, 0);
    wg_net_state *st = calloc((size_t)n + 1, sizeof(*st));
    WG_ASSERT(st != NULL, "out of memory");
    wg_net_bn_state(net, st, n);
    bool set = true;
    for (int i = 0; i < n; i++) set &= *st[i].initialized;
    free(st);
    return set;
}

/* FILE.safetensors -> FILE.eval.json */
static void default_json_path(const char *ckpt, char *out, size_t n)
{
    size_t len = strlen(ckpt);
    const char *ext = ".safetensors";
    size_t el = strlen(ext);
    if (len > el && !strcmp(ckpt + len - el, ext)) len -= el;
    snprintf(out, n, "%.*s.eval.json", (int)len, ckpt);
}

int wg_eval_run(const wg_config *cfg, const char *checkpoint, const char *json_path, wg_backend *backend)
{
    run r = {.cfg = cfg, .int8 = cfg->train.mode == WG_MODE_INT8, .b = backend};
    char err[WG_CONFIG_ERR_LEN + 1024], path[1024], json_default[1100];
    wg_ckpt_position pos;
    if (!wg_checkpoint_resolve(checkpoint, path, sizeof(path), err, sizeof(err)) ||
        !wg_run_setup(&r, err, sizeof(err)) ||
        !wg_checkpoint_load(path, r.net, &cfg->quant.bits, &pos, NULL, err, sizeof(err))) {
        fprintf(stderr, "wageubn eval: %s\n", err);
        wg_run_teardown(&r);
        return 1;
    }
    if (cfg->train.bn_recalibrate == 0 && !bn_statistics_set(r.net)) {
        fprintf(stderr, "wageubn eval: %s: the BN running statistics were never set (a checkpoint from before the first "
                        "training step); evaluate with [train] bn_recalibrate > 0\n", path);
        wg_run_teardown(&r);
        return 1;
    }
    if (json_path == NULL) {
        default_json_path(path, json_default, sizeof(json_default));
        json_path = json_default;
    }
    char where[96];
    wg_ckpt_position_str(&pos, where, sizeof(where));
    printf("%s: %s, %s\n", path, wg_net_name(r.net), where);
    wg_run_recalibrate_bn(&r);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "checkpoint", path);
    cJSON_AddStringToObject(root, "model", wg_net_name(r.net));
    cJSON_AddNumberToObject(root, "step", (double)pos.step);
    cJSON_AddNumberToObject(root, "bn_recalibrate", cfg->train.bn_recalibrate);
    if (r.val.n) {
        wg_loss_stats st = wg_run_evaluate(&r, &r.val);
        report("val", &st, r.train.num_classes, root);
    }
    wg_loss_stats st = wg_run_evaluate(&r, &r.test);
    report("test", &st, r.train.num_classes, root);
    int status = 0;
    if (!write_json(json_path, root)) {
        fprintf(stderr, "wageubn eval: cannot write %s: %s\n", json_path, strerror(errno));
        status = 1;
    } else {
        printf("written to %s\n", json_path);
    }
    cJSON_Delete(root);
    wg_run_teardown(&r);
    return status;
}
