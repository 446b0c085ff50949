/* fuzz_checkpoint.c: libFuzzer harness of the checkpoint layer (wg_checkpoint_load and
 * wg_checkpoint_print_info, checkpoint.h), on top of the safetensors reader that
 * fuzz_safetensors.c covers.
 *
 * The input is a whole checkpoint file's bytes. It goes to a per-process temporary
 * file (fuzz_tmp.h; the checkpoint functions take a path) and is loaded into one
 * network, built once per process: plaincnn (the stem convolution, one BN layer and
 * the FC layer; the smallest model with every kind of state tensor) for 8x8x1 images,
 * 10 classes, batch 2, int8 mode with the defaults of wg_config_defaults. Properties
 * checked, beyond "no crash, no leak, no undefined behaviour" (the sanitizers):
 *   - a failure comes with a message and leaves the network (every master, momentum,
 *     forward copy and BN statistic, and the BN "initialized" flags), the position
 *     and the saved config as they were (checkpoint.h);
 *   - a success gives a position with non-negative counters and no NaN, and a saved
 *     config that passes wg_config_validate and can be written; the network then
 *     evaluates a batch (forward in evaluation mode, then the loss) without a crash,
 *     when every BN layer's statistics are initialized (the precondition of
 *     evaluation; otherwise the trainer recalibrates them first);
 *   - wg_checkpoint_print_info, of the whole file and of the tensor "stem", fails
 *     with a message or succeeds, and succeeds whenever the load did (it checks a
 *     subset of what the load checks).
 *
 * Seeds: WG_FUZZ_CHECKPOINT_SEEDS=DIR replay_checkpoint ANY_FILE writes the seed
 * corpus (tests/fuzz/corpus/checkpoint/: a checkpoint of this network and damaged
 * copies of it) into DIR and exits.
 *
 * scripts/fuzz.sh links it with the structure-aware mutator st_mutator.c: half of
 * the mutations change the JSON header alone (names, shapes, metadata, the embedded
 * config) and rewrite the length field to match. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "config.h"
#include "fuzz_tmp.h"
#include "net.h"
#include "safetensors.h"

enum { FUZZ_BATCH = 2, FUZZ_HW = 8, FUZZ_CLASSES = 10, FUZZ_MAX_BN = 16 };

static void fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_checkpoint: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* The network every input is loaded into, with the config that builds it. */
typedef struct fuzz_ctx {
    wg_config cfg;
    wg_backend *b;
    wg_net *net;
    const char *path; /* the input's temporary file */
    FILE *devnull;
} fuzz_ctx;

static void fuzz_ctx_free(fuzz_ctx *c)
{
    wg_net_free(c->net);
    wg_backend_free(c->b);
    if (c->devnull) fclose(c->devnull);
}

static fuzz_ctx *fuzz_ctx_get(void)
{
    static fuzz_ctx c;
    static bool ready;
    if (ready) return &c;
    wg_config_defaults(&c.cfg);
    c.cfg.model.name = WG_MODEL_PLAINCNN;
    c.cfg.train.mode = WG_MODE_INT8;
    c.cfg.quant.preset = WG_PRESET_FULL;
    c.cfg.train.batch = FUZZ_BATCH;
    c.b = wg_backend_cpu_init();
    wg_net_opts o = {.model = "plaincnn", .int8 = true, .bits = c.cfg.quant.bits, .act = c.cfg.quant.act_exponent,
                     .e2 = c.cfg.quant.e2, .float_ends = false, .batch = FUZZ_BATCH, .h = FUZZ_HW, .w = FUZZ_HW,
                     .c = 1, .classes = FUZZ_CLASSES, .seed = c.cfg.train.seed};
    char err[256];
    c.net = wg_net_create(&o, c.b, err, sizeof err);
    if (!c.net) fuzz_fail("building the network", err);
    c.path = wg_fuzz_tmp_path("checkpoint");
    c.devnull = fopen("/dev/null", "w");
    if (!c.devnull) fuzz_fail("cannot open /dev/null", NULL);
    ready = true;
    return &c;
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

static uint64_t fnv_tensor(uint64_t h, const wg_tensor *t)
{
    if (!t->data) return fnv(h, "-", 1);
    size_t n = wg_tensor_nbytes(t);
    uint8_t *host = malloc(n ? n : 1);
    if (!host) fuzz_fail("out of memory", NULL);
    wg_tensor_download(t, host);
    h = fnv(h, host, n);
    h = fnv(h, &t->exp, sizeof t->exp);
    free(host);
    return h;
}

/* A digest of everything a load may change in the network. */
static uint64_t state_digest(wg_net *net)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    int np;
    wg_param *p = wg_net_params(net, &np);
    for (int i = 0; i < np; i++) h = fnv_tensor(fnv_tensor(fnv_tensor(h, &p[i].master), &p[i].momentum), &p[i].fwd);
    wg_net_state bn[FUZZ_MAX_BN];
    int nb = wg_net_bn_state(net, bn, FUZZ_MAX_BN);
    if (nb > FUZZ_MAX_BN) fuzz_fail("more BN statistics than FUZZ_MAX_BN", NULL);
    for (int i = 0; i < nb; i++) h = fnv(fnv_tensor(h, bn[i].t), bn[i].initialized, sizeof *bn[i].initialized);
    return h;
}

static bool bn_all_initialized(wg_net *net)
{
    wg_net_state bn[FUZZ_MAX_BN];
    int nb = wg_net_bn_state(net, bn, FUZZ_MAX_BN);
    for (int i = 0; i < nb; i++)
        if (!*bn[i].initialized) return false;
    return true;
}

/* One batch in evaluation mode: a fixed image pattern, then the loss. */
static void evaluate(wg_net *net)
{
    int8_t x[FUZZ_BATCH * FUZZ_HW * FUZZ_HW];
    for (size_t i = 0; i < sizeof x; i++) x[i] = (int8_t)((int)(i * 37 % 255) - 127);
    const int32_t labels[FUZZ_BATCH] = {3, 7};
    wg_net_forward(net, x, -7, FUZZ_BATCH, false);
    wg_loss_stats st = {0};
    wg_net_loss(net, labels, false, &st);
    if (st.count != FUZZ_BATCH) fuzz_fail("the evaluation counted the wrong number of images", NULL);
}

static void check_position(const wg_ckpt_position *p)
{
    if (p->step < 0 || p->epoch < 0 || p->epoch_step < 0 || p->best_step < 0 || p->train_images < 0)
        fuzz_fail("a loaded position has a negative counter", NULL);
    if (isnan(p->best_acc) || isnan(p->last_acc) || isnan(p->train_time_s))
        fuzz_fail("a loaded position has a NaN", NULL);
    char buf[96];
    wg_ckpt_position_str(p, buf, sizeof buf);
}

static void write_seeds(fuzz_ctx *c, const char *dir);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_ctx *c = fuzz_ctx_get();
    static bool seeds_checked;
    if (!seeds_checked) {
        seeds_checked = true;
        const char *dir = getenv("WG_FUZZ_CHECKPOINT_SEEDS");
        if (dir && dir[0]) {
            write_seeds(c, dir);
            fuzz_ctx_free(c);
            exit(0);
        }
    }
    wg_fuzz_tmp_write(c->path, data, size, false);

    static wg_config saved, saved_before; /* static: a wg_config is a few KiB */
    wg_ckpt_position pos, pos_before;
    /* the same garbage in each pair, padding included (memset, not assignment) */
    memset(&pos, 0xA5, sizeof pos);
    memset(&pos_before, 0xA5, sizeof pos_before);
    memset(&saved, 0xA5, sizeof saved);
    memset(&saved_before, 0xA5, sizeof saved_before);
    uint64_t before = state_digest(c->net);
    char err[WG_CONFIG_ERR_LEN + 1024];
    err[0] = '\0';
    bool loaded = wg_checkpoint_load(c->path, c->net, &c->cfg.quant.bits, &pos, &saved, err, sizeof err);
    if (!loaded) {
        if (!err[0]) fuzz_fail("wg_checkpoint_load failed without a message", NULL);
        if (state_digest(c->net) != before) fuzz_fail("a failed load changed the network", err);
        if (memcmp(&pos, &pos_before, sizeof pos) || memcmp(&saved, &saved_before, sizeof saved))
            fuzz_fail("a failed load changed the position or the saved config", err);
    } else {
        check_position(&pos);
        char warn[4096];
        err[0] = '\0';
        if (!wg_config_validate(&saved, err, sizeof err, warn, sizeof warn))
            fuzz_fail("a loaded checkpoint's config does not validate", err);
        if (!wg_config_write(&saved, c->devnull)) fuzz_fail("writing a loaded checkpoint's config failed", NULL);
        if (bn_all_initialized(c->net)) evaluate(c->net);
    }

    static const char *const tensors[] = {NULL, "stem"};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
        err[0] = '\0';
        bool ok = wg_checkpoint_print_info(c->path, tensors[i], c->devnull, err, sizeof err);
        if (!ok && !err[0]) fuzz_fail("wg_checkpoint_print_info failed without a message", tensors[i]);
        if (!ok && loaded) fuzz_fail("wg_checkpoint_print_info refused a checkpoint that loads", err);
    }
    return 0;
}

/* ---- the seed corpus (WG_FUZZ_CHECKPOINT_SEEDS) --------------------------------------- */

/* A change to a checkpoint: drop a tensor, give one shape [1] or dtype I8, add one, or
 * set a metadata value (NULL value: remove the key). */
typedef struct seed_edit {
    const char *file;
    const char *drop, *reshape, *retype;
    bool extra;
    const char *key, *value;
} seed_edit;

/* f with edit e to path; the "config" metadata, unless e sets it, becomes config. */
static void seed_write(const wg_st_file *f, const char *path, const seed_edit *e, const char *config)
{
    wg_st_writer w = {0};
    const int64_t one[1] = {1};
    static const int32_t zero[1];
    for (int i = 0; i < f->ntensors; i++) {
        const wg_st_tensor *t = &f->tensors[i];
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        bool rs = e->reshape && !strcmp(t->name, e->reshape);
        bool rt = e->retype && !strcmp(t->name, e->retype);
        wg_st_add(&w, t->name, rt ? WG_ST_I8 : t->dtype, rs ? 1 : t->ndim, rs ? one : t->shape, t->data);
    }
    if (e->extra) wg_st_add(&w, "stem.extra", WG_ST_I32, 1, one, zero);
    for (int i = 0; i < f->nmeta; i++) {
        const wg_st_meta *m = &f->meta[i];
        if (e->key && !strcmp(m->key, e->key)) {
            if (e->value) wg_st_add_meta(&w, m->key, e->value);
        } else if (!strcmp(m->key, "config")) {
            wg_st_add_meta(&w, m->key, config);
        } else {
            wg_st_add_meta(&w, m->key, m->value);
        }
    }
    char err[1024];
    if (!wg_st_write(&w, path, err, sizeof err)) fuzz_fail("writing a seed", err);
    wg_st_writer_free(&w);
}

static void write_seeds(fuzz_ctx *c, const char *dir)
{
    char valid[1024], err[WG_CONFIG_ERR_LEN + 1024];
    /* as the network is built: no BN statistics yet (a run stopped before its first step) */
    const wg_ckpt_position start = {.best_acc = -1, .last_acc = -1};
    snprintf(valid, sizeof valid, "%s/valid_bn_uninitialized.safetensors", dir);
    if (!wg_checkpoint_save(valid, c->net, &c->cfg, &start, err, sizeof err)) fuzz_fail("saving a seed", err);
    /* one training-mode forward pass sets the BN statistics, as a real run's would be */
    int8_t x[FUZZ_BATCH * FUZZ_HW * FUZZ_HW];
    for (size_t i = 0; i < sizeof x; i++) x[i] = (int8_t)((int)(i * 91 % 200) - 100);
    wg_net_forward(c->net, x, -7, FUZZ_BATCH, true);
    if (!bn_all_initialized(c->net)) fuzz_fail("a training forward pass left BN statistics unset", NULL);
    const wg_ckpt_position pos = {.step = 51, .epoch = 1, .epoch_step = 3, .best_acc = 0.5, .best_step = 48,
                                  .last_acc = 0.25, .train_time_s = 1.5, .train_images = 102};
    snprintf(valid, sizeof valid, "%s/valid_plaincnn_8x8_int8.safetensors", dir);
    if (!wg_checkpoint_save(valid, c->net, &c->cfg, &pos, err, sizeof err)) fuzz_fail("saving a seed", err);
    wg_st_file f;
    if (!wg_st_read(valid, &f, err, sizeof err)) fuzz_fail("reading the seed back", err);
    const char *ini = wg_st_meta_get(&f, "config");
    if (!ini) fuzz_fail("the seed has no config", NULL);
    /* The damaged copies carry the config without its comment and blank lines (the
     * same keys and values, half the bytes: the corpus stays small), and one of them
     * that config with an unknown key after the first section line. */
    size_t len = strlen(ini);
    char *lean = malloc(len + 1), *bad_ini = malloc(len + 64);
    if (!lean || !bad_ini) fuzz_fail("out of memory", NULL);
    size_t at = 0;
    for (const char *line = ini; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (line[0] != ';' && line[0] != '\n') memcpy(lean + at, line, n), at += n;
        line += n;
    }
    lean[at] = '\0';
    const char *nl = strchr(lean, '\n');
    int head = nl ? (int)(nl - lean) + 1 : (int)at;
    snprintf(bad_ini, len + 64, "%.*sepochz = 3\n%s", head, lean, lean + head);
    const seed_edit edits[] = {
        {.file = "valid_lean_config"},
        {.file = "error_missing_tensor", .drop = "head.bn.running_sigma"},
        {.file = "error_wrong_shape", .reshape = "fc"},
        {.file = "error_wrong_dtype", .retype = "stem.momentum"},
        {.file = "error_extra_tensor", .extra = true},
        {.file = "error_exp_not_integer", .key = "stem.exp", .value = "-23x"},
        {.file = "error_exp_mismatch", .key = "fc.momentum.exp", .value = "-6"},
        {.file = "error_step_negative", .key = "step", .value = "-1"},
        {.file = "error_epoch_overflow", .key = "epoch", .value = "99999999999999999999"},
        {.file = "error_best_acc_nan", .key = "best_acc", .value = "nan"},
        {.file = "error_initialized_not_bool", .key = "head.bn.running_sigma.initialized", .value = "yes"},
        {.file = "error_format_version", .key = "format_version", .value = "2"},
        {.file = "error_config_missing", .key = "config", .value = NULL},
        {.file = "error_config_unknown_key", .key = "config", .value = bad_ini},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, edits[i].file);
        seed_write(&f, path, &edits[i], lean);
    }
    free(lean);
    free(bad_ini);
    wg_st_free(&f);
}
