/* test_config.c: the training configuration (config.h): defaults, a full file, every
 * class of error with its exact file:line message and hint, --set overrides, the
 * cross-field checks, the written file loading back to the same config, the
 * schedules against hand-computed values, and garbage input that must give an error
 * and never a crash. Files are written under a fresh mkdtemp directory. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

enum { ERR = WG_CONFIG_ERR_LEN };

/* |got - want| <= eps (cmocka 1.1 has no double comparison) */
#define expect_near(got, want, eps)                                                               \
    do {                                                                                          \
        double g_ = (got), w_ = (want);                                                           \
        if (!(fabs(g_ - w_) <= (eps))) fail_msg("%s = %.17g, expected %.17g", #got, g_, w_);      \
    } while (0)

typedef struct fixture {
    char dir[64];
    char path[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/wg_test_config_XXXXXX");
    if (!mkdtemp(f->dir)) return free(f), -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Write n bytes of text to dir/name; returns the path (in f->path). */
static const char *write_bytes(fixture *f, const char *name, const char *text, size_t n)
{
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    return f->path;
}

static const char *write_text(fixture *f, const char *name, const char *text)
{
    return write_bytes(f, name, text, strlen(text));
}

/* Load path expecting failure with exactly the message fmt (its %s: the path). */
static void expect_error(const char *path, const char *const *ov, int n_ov, const char *fmt)
{
    wg_config c, before;
    char err[ERR], warn[ERR], want[ERR];
    memset(&c, 0x5a, sizeof c);
    before = c;
    bool ok = wg_config_load(&c, path, ov, n_ov, err, sizeof err, warn, sizeof warn);
    snprintf(want, sizeof want, fmt, path, path);
    if (ok) fail_msg("%s loaded; expected: %s", path, want);
    assert_string_equal(err, want);
    assert_memory_equal(&c, &before, sizeof c); /* untouched on failure */
}

static void load_ok(const char *path, const char *const *ov, int n_ov, wg_config *c, char *warn)
{
    char err[ERR], w[ERR];
    if (!wg_config_load(c, path, ov, n_ov, err, sizeof err, warn ? warn : w, ERR)) fail_msg("%s", err);
}

static void test_defaults(void **state)
{
    (void)state;
    wg_config c;
    wg_config_defaults(&c);
    assert_int_equal(c.model.name, WG_MODEL_RESNET20);
    assert_int_equal(c.data.format, WG_DATA_IDX);
    assert_string_equal(c.data.root, "/usr/share/datasets/fashion-mnist");
    assert_true(c.data.limit_train == 0 && c.data.limit_test == 0 && c.data.val_split == 0);
    assert_false(c.data.augment_flip);
    assert_int_equal(c.data.augment_pad, 0);
    assert_int_equal(c.train.mode, WG_MODE_INT8);
    assert_int_equal(c.train.epochs, 5);
    assert_int_equal(c.train.batch, 128);
    assert_true(c.train.seed == 1);
    assert_true(c.train.lr == 0.4);
    assert_int_equal(c.train.lr_schedule, WG_LR_PIECEWISE);
    assert_int_equal(c.train.lr_boundaries.n, 0);
    assert_true(c.train.lr_multipliers.n == 1 && c.train.lr_multipliers.v[0] == 1);
    assert_true(c.train.g_scale.n == 1 && c.train.g_scale.v[0] == 128);
    assert_true(c.train.momentum == 0.9 && c.train.weight_decay == 1e-4 && c.train.warmup_epochs == 0);
    assert_true(c.train.log_every == 50 && c.train.eval_every == 1 && c.train.threads == 0);
    assert_int_equal(c.train.device, WG_DEVICE_CPU);
    assert_int_equal(c.quant.preset, WG_PRESET_FULL);
    assert_int_equal(c.quant.act_exponent, WG_ACT_FIT);
    assert_int_equal(c.quant.e2, WG_E2_FLAG);
    wg_quant_bits ref = wg_quant_bits_reference();
    assert_memory_equal(&c.quant.bits, &ref, sizeof ref);
    assert_string_equal(c.output.dir, "");
    assert_int_equal(c.output.keep_checkpoints, 3);
    char err[ERR], warn[ERR];
    assert_true(wg_config_validate(&c, err, sizeof err, warn, sizeof warn));
    assert_string_equal(warn, "");
}

static const char k_full[] =
    "\xEF\xBB\xBF; every key, not at its default\r\n"
    "[model]\r\n"
    "name = resnet56\r\n"
    "\n"
    "[data]\n"
    "  format = cifar   ; indented, with a comment\n"
    "root: /data/cifar-10\n"
    "limit_train = 50000\n"
    "limit_test = 1000\n"
    "val_split = 5000\n"
    "augment_flip = Yes\n"
    "augment_pad = 4\n"
    "# a comment\n"
    "[train]\n"
    "mode = fp32\n"
    "epochs = 160\n"
    "batch = 256\n"
    "seed = 18446744073709551615\n"
    "lr = 0.1\n"
    "lr_schedule = step\n"
    "lr_boundaries = 80, 120.5\n"
    "lr_multipliers = 1,0.1, 0.01\n"
    "g_scale = 128, 64, 32\n"
    "momentum = 0\n"
    "weight_decay = 5e-4\n"
    "warmup_epochs = 2.5\n"
    "log_every = 10\n"
    "eval_every = 5\n"
    "threads = 2\n"
    "[quant]\n"
    "preset = reference\n"
    "act_exponent = fixed\n"
    "e2 = shift\n"
    "bits_w = 4\nbits_a = 5\nbits_u = 9\nbits_e1 = 6\nbits_e2 = 7\nbits_gc = 16\nbits_bn_grad = 14\n"
    "bits_bn_stat = 16\nbits_xhat = 8\nbits_gamma_beta = 8\nbits_momentum = 32\nbits_lr = 16\nmomentum_shift = 0\n"
    "[output]\n"
    "dir = /tmp/run one\n"
    "keep_checkpoints = 0\n";

static void check_full(const wg_config *c)
{
    assert_int_equal(c->model.name, WG_MODEL_RESNET56);
    assert_int_equal(c->data.format, WG_DATA_CIFAR);
    assert_string_equal(c->data.root, "/data/cifar-10");
    assert_true(c->data.limit_train == 50000 && c->data.limit_test == 1000 && c->data.val_split == 5000);
    assert_true(c->data.augment_flip);
    assert_int_equal(c->data.augment_pad, 4);
    assert_int_equal(c->train.mode, WG_MODE_FP32);
    assert_true(c->train.epochs == 160 && c->train.batch == 256 && c->train.seed == UINT64_MAX);
    assert_true(c->train.lr == 0.1 && c->train.lr_schedule == WG_LR_STEP);
    assert_true(c->train.lr_boundaries.n == 2 && c->train.lr_boundaries.v[0] == 80 && c->train.lr_boundaries.v[1] == 120.5);
    assert_true(c->train.lr_multipliers.n == 3 && c->train.lr_multipliers.v[2] == 0.01);
    assert_true(c->train.g_scale.n == 3 && c->train.g_scale.v[1] == 64);
    assert_true(c->train.momentum == 0 && c->train.weight_decay == 5e-4 && c->train.warmup_epochs == 2.5);
    assert_true(c->train.log_every == 10 && c->train.eval_every == 5 && c->train.threads == 2);
    assert_true(c->quant.preset == WG_PRESET_REFERENCE && c->quant.act_exponent == WG_ACT_FIXED);
    assert_int_equal(c->quant.e2, WG_E2_SHIFT);
    wg_quant_bits b = {.w = 4, .a = 5, .u = 9, .e1 = 6, .e2 = 7, .g_scale_log2 = 7, .gc = 16, .bn_grad = 14,
                       .bn_stat = 16, .xhat = 8, .gamma_beta = 8, .momentum = 32, .momentum_shift = 0, .lr = 16};
    assert_memory_equal(&c->quant.bits, &b, sizeof b);
    assert_string_equal(c->output.dir, "/tmp/run one");
    assert_int_equal(c->output.keep_checkpoints, 0);
}

static void test_full_file(void **state)
{
    wg_config c;
    load_ok(write_text(*state, "full.ini", k_full), NULL, 0, &c, NULL);
    check_full(&c);
}

/* One file per error class, and the exact message (%s: the file's path). */
static const struct {
    const char *text, *message;
} k_errors[] = {
    {"[train]\nepochs = 5\nbatch = -3\n", "%s:3: [train] batch = -3: expected an integer in 1..65536"},
    {"[train]\nbatch = 12x\n", "%s:2: [train] batch = 12x: expected an integer in 1..65536"},
    {"[train]\nepochs = 99999999999999999999\n",
     "%s:2: [train] epochs = 99999999999999999999: expected an integer in 1..10000"},
    {"[train]\nepoch = 3\n", "%s:2: [train] epoch: unknown key; did you mean 'epochs'?"},
    {"[data]\nlr = 0.1\n", "%s:2: [data] lr: unknown key; 'lr' belongs in [train]"},
    {"[output]\nzzz = 1\n", "%s:2: [output] zzz: unknown key; the keys of [output] are dir, keep_checkpoints, checkpoint_every"},
    {"[model]\nname = resnet20\n\n[trian]\nepochs = 1\n", "%s:4: unknown section [trian]; did you mean [train]?"},
    {"[network]\nx = 1\n", "%s:1: unknown section [network]; the sections are [model], [data], [train], [quant], [output]"},
    {"[train]\nepochs = 3\nbatch = 4\nepochs = 4\n", "%s:4: [train] epochs: set a second time (first on line 2)"},
    {"[train]\nepochs = 3\n[data]\nlimit_train = 1\n[train]\nbatch = 4\n",
     "%s:5: [train] appears a second time (first on line 1): one section per concern"},
    {"epochs = 3\n[train]\n", "%s:1: epochs = 3: a key before any [section]"},
    {"[train]\nepochs 5\n", "%s:2: expected '[section]' or 'key = value', not 'epochs 5'"},
    {"[model]\n[train] epochs = 5\n", "%s:2: text after the section name: one '[section]' or 'key = value' per line"},
    {"[train] ; fine\nepochs = 5\n[data] \r\nroot = x\n[train\nepochs = 5\n", "%s:5: expected '[section]' or 'key = value', not '[train'"},
    {"[train\nepochs = 5\n", "%s:1: expected '[section]' or 'key = value', not '[train'"},
    {"[train]\n= 5\n", "%s:2: [train] = 5: the key name is missing"},
    {"[model]\nname = resnet21\n",
     "%s:2: [model] name = resnet21: expected one of resnet20 | resnet32 | resnet56 | resnet18 | resnet34 | resnet50 | "
     "plaincnn | resnet8; did you mean 'resnet20'?"},
    {"[train]\nmode = float\n", "%s:2: [train] mode = float: expected one of int8 | fp32"},
    {"[data]\naugment_flip = maybe\n",
     "%s:2: [data] augment_flip = maybe: expected true or false (also yes/no, on/off, 1/0)"},
    {"[train]\nlr = 0\n", "%s:2: [train] lr = 0: expected a number in (0, 1000]"},
    {"[train]\nlr = nan\n", "%s:2: [train] lr = nan: expected a number in (0, 1000]"},
    {"[train]\nlr = 0.1 # fast\n",
     "%s:2: [train] lr = 0.1 # fast: expected a number in (0, 1000] (a comment after a value starts with ' ;')"},
    {"[train]\nmomentum = 1\n", "%s:2: [train] momentum = 1: expected a number in [0, 1)"},
    {"[train]\nseed = -1\n", "%s:2: [train] seed = -1: expected an integer in 0..18446744073709551615"},
    {"[train]\ng_scale = 128, 100\n",
     "%s:2: [train] g_scale = 128, 100: value 2 (100) is not allowed: expected 1 to 16 comma-separated powers of two "
     "in [2, 32768]"},
    {"[train]\nlr_boundaries = 3, 2\n",
     "%s:2: [train] lr_boundaries = 3, 2: value 2 (2) is not above the one before: expected 0 to 16 comma-separated "
     "numbers > 0, ascending"},
    {"[train]\nlr_multipliers = 1,,2\n",
     "%s:2: [train] lr_multipliers = 1,,2: expected 1 to 16 comma-separated numbers in (0, 1000]"},
    {"[train]\nlr_multipliers = 1, 0.1,\n",
     "%s:2: [train] lr_multipliers = 1, 0.1,: expected 1 to 16 comma-separated numbers in (0, 1000] (a value is "
     "missing after the last ',')"},
    {"[train]\nlr_multipliers =\n",
     "%s:2: [train] lr_multipliers = : expected 1 to 16 comma-separated numbers in (0, 1000]"},
    {"[train]\nlr_boundaries = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
     "%s:2: [train] lr_boundaries = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17: expected at most 16 values"},
    {"[train]\nlr_multipliers = 0.1234567890123,0.1234567890124,0.1234567890125,0.1234567890126,0.1234567890127,"
     "0.1234567890128,0.1234567890129,0.123456789013,0.1234567890131,0.1234567890132\n",
     "%s:2: [train] lr_multipliers = 0.1234567890123,0.1234567890124,0.1234567890125,...: too long: at most 160 "
     "characters when written"},
    {"[data]\nroot =\n", "%s:2: [data] root = : expected non-empty text of at most 160 characters, without ';'"},
    {"[data]\nroot = a;b\n",
     "%s:2: [data] root = a;b: expected non-empty text of at most 160 characters, without ';' (a comment after a "
     "value starts with ' ;')"},
    {"[train]\nepochs = 5;five\n",
     "%s:2: [train] epochs = 5;five: expected an integer in 1..10000 (a comment after a value starts with ' ;')"},
    {"[quant]\nbits_lr = 17\n", "%s:2: [quant] bits_lr = 17: expected an integer in 2..16"},
    {"[quant]\nbits_u = 8\n", "%s:2: [quant] bits_u = 8: expected an integer in 9..31"},
    {"[quant]\nmomentum_shift = 9\n", "%s:2: [quant] momentum_shift = 9: expected an integer in 0..8"},
    {"[data]\naugment_pad = 9\n", "%s:2: [data] augment_pad = 9: expected an integer in 0..8"},
    {"[output]\nkeep_checkpoints = -1\n", "%s:2: [output] keep_checkpoints = -1: expected an integer >= 0"},
    {"[\xff\x01]\nk = v\n", "%s:1: unknown section [??]; the sections are [model], [data], [train], [quant], [output]"},
    /* cross-field, after the whole file */
    {"[train]\nepochs = 5\nlr_boundaries = 2, 5\nlr_multipliers = 1, 0.1, 0.01\n",
     "%s:3: [train] lr_boundaries: boundary 5 is not below [train] epochs = 5"},
    {"[train]\nlr_boundaries = 2, 4\nlr_multipliers = 1, 0.1\n",
     "%s:3: [train] lr_multipliers has 2 values: with 2 lr_boundaries it needs 3"},
    {"[quant]\nbits_xhat = 16\n",
     "%s:2: [quant] bits_xhat = 16: the integer batch norm implements 8 bits only (its grids are fixed, "
     "docs/numerics.md 7.3)"},
    {"[train]\nlr_boundaries = 2\nlr_multipliers = 1, 0.1\ng_scale = 128, 64, 32\n",
     "%s:4: [train] g_scale has 3 values: with 1 lr_boundaries it needs 1 or 2"},
    {"[train]\nlr_multipliers = 1, 0.1\n", "%s:2: [train] lr_multipliers has 2 values: with 0 lr_boundaries it needs 1"},
    {"[train]\nlr_schedule = cosine\nlr_boundaries = 2\nlr_multipliers = 1, 0.5\n",
     "%s:4: [train] lr_multipliers: lr_schedule = cosine takes none (set them all to 1, or use piecewise)"},
    {"[train]\nwarmup_epochs = 6\n", "%s:2: [train] warmup_epochs = 6 is above [train] epochs = 5"},
    {"[data]\nlimit_train = 100\nval_split = 100\n",
     "%s:3: [data] val_split = 100 leaves no training images of [data] limit_train = 100"},
    {"[train]\nlr = 0.0009765625\n",
     "%s:2: [train] lr = 0.0009765625 is 0 on the 10-bit learning-rate grid of int8 mode (steps of 0.00195312): use lr "
     "> 0.000976562 or more [quant] bits_lr"},
    {"[train]\nlr = 0.25\n\n[output]\ndir = runs/x\n[train]\nepochs = 1\n",
     "%s:6: [train] appears a second time (first on line 1): one section per concern"},
};

static void test_errors(void **state)
{
    for (size_t i = 0; i < sizeof k_errors / sizeof k_errors[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "error%zu.ini", i);
        expect_error(write_text(*state, name, k_errors[i].text), NULL, 0, k_errors[i].message);
    }
}

static void test_missing_file(void **state)
{
    fixture *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/no-such-file.ini", f->dir);
    expect_error(path, NULL, 0, "%s: cannot open: No such file or directory");
    expect_error(f->dir, NULL, 0, "%s: cannot read: Is a directory");
}

static void test_long_lines(void **state)
{
    char text[1200];
    /* 197 characters fit libinih's line buffer; 198 do not */
    snprintf(text, sizeof text, "[data]\nroot = %0160d\n", 7);
    wg_config c;
    load_ok(write_text(*state, "fit.ini", text), NULL, 0, &c, NULL);
    assert_int_equal(strlen(c.data.root), 160);
    snprintf(text, sizeof text, "[data]\n; %0195d\n", 7);
    load_ok(write_text(*state, "fit2.ini", text), NULL, 0, &c, NULL);
    snprintf(text, sizeof text, "[data]\n; %0196d\r\n", 7);
    expect_error(write_text(*state, "long1.ini", text), NULL, 0, "%s:2: the line is 198 characters long: at most 197");
    memset(text, 'x', 1100);
    memcpy(text, "[train]\nlr = 0.5\n[data]\nroot = ", 31);
    strcpy(text + 1100, "\n");
    expect_error(write_text(*state, "long2.ini", text), NULL, 0, "%s:4: the line is 1076 characters long: at most 197");
    /* a long value that fits the line but not the field */
    snprintf(text, sizeof text, "[output]\ndir = %0161d\n", 1);
    expect_error(write_text(*state, "long3.ini", text), NULL, 0,
                 "%s:2: [output] dir = 000000000000000000000000000000000000000000000000...: expected text of at most 160 "
                 "characters, without ';'");
}

static void test_overrides(void **state)
{
    wg_config c;
    char err[ERR];
    wg_config_defaults(&c);
    assert_true(wg_config_set(&c, "train.epochs=1", err, sizeof err));
    assert_int_equal(c.train.epochs, 1);
    assert_true(wg_config_set(&c, " train . lr_boundaries = 0.5 ", err, sizeof err));
    assert_true(c.train.lr_boundaries.n == 1 && c.train.lr_boundaries.v[0] == 0.5);
    assert_true(wg_config_set(&c, "output.dir=a=b", err, sizeof err));
    assert_string_equal(c.output.dir, "a=b");
    wg_config before = c;
    static const struct {
        const char *set, *message;
    } bad[] = {
        {"train.epochs=abc", "--set train.epochs=abc: expected an integer in 1..10000"},
        {"train.epoch=2", "--set train.epoch=2: [train] epoch: unknown key; did you mean 'epochs'?"},
        {"trian.epochs=2", "--set trian.epochs=2: unknown section [trian]; did you mean [train]?"},
        {"data.lr=2", "--set data.lr=2: [data] lr: unknown key; 'lr' belongs in [train]"},
        {"epochs=2", "--set epochs=2: expected section.key=value (e.g. train.epochs=1)"},
        {"train.epochs", "--set train.epochs: expected section.key=value (e.g. train.epochs=1)"},
        {"", "--set : expected section.key=value (e.g. train.epochs=1)"},
        {"model.name=", "--set model.name=: expected one of resnet20 | resnet32 | resnet56 | resnet18 | resnet34 | "
                        "resnet50 | plaincnn | resnet8"},
        {"train.g_scale=3", "--set train.g_scale=3: value 1 (3) is not allowed: expected 1 to 16 comma-separated "
                            "powers of two in [2, 32768]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(wg_config_set(&c, bad[i].set, err, sizeof err));
        assert_string_equal(err, bad[i].message);
    }
    assert_memory_equal(&c, &before, sizeof c); /* failed overrides change nothing */

    /* Overrides come after the file and before the cross-field checks. */
    const char *path = write_text(*state, "ov.ini", "[train]\nepochs = 8\nlr_boundaries = 6\nlr_multipliers = 1, 0.1\n");
    const char *const quick[] = {"train.epochs=1"};
    expect_error(path, quick, 1, "%s:3: [train] lr_boundaries: boundary 6 is not below [train] epochs = 1");
    const char *const fix[] = {"train.epochs=1", "train.lr_boundaries=", "train.lr_multipliers=1", "train.epochs=2"};
    load_ok(path, fix, 4, &c, NULL);
    assert_true(c.train.epochs == 2 && c.train.lr_boundaries.n == 0 && c.train.lr_multipliers.n == 1);
    const char *const mult[] = {"train.lr_multipliers=1, 2, 3"};
    expect_error(path, mult, 1, "--set train.lr_multipliers=1, 2, 3: [train] lr_multipliers has 3 values: with 1 "
                                "lr_boundaries it needs 2");
    const char *const typo[] = {"train.batch=64", "train.bach=64"};
    expect_error(path, typo, 2, "--set train.bach=64: [train] bach: unknown key; did you mean 'batch'?");
    /* without a file: the defaults and the overrides */
    load_ok(NULL, quick, 1, &c, NULL);
    assert_int_equal(c.train.epochs, 1);
    assert_string_equal(c.output.dir, "runs/default");
}

static void test_cross_field_warnings(void **state)
{
    wg_config c;
    char warn[ERR];
    const char *path = write_text(*state, "warn.ini",
                                  "[train]\nlr = 0.4\nlr_boundaries = 2, 4\nlr_multipliers = 1, 0.1, 0.001\n");
    load_ok(path, NULL, 0, &c, warn);
    char want[ERR];
    snprintf(want, sizeof want,
             "%s:4: [train] lr_multipliers value 3 (0.001): lr 0.4 x 0.001 = 0.0004 is 0 on the 10-bit grid of int8 "
             "mode, so the weights stop changing from epoch 4\n", path);
    assert_string_equal(warn, want);
    const char *const more_bits[] = {"quant.bits_lr=16"};
    load_ok(path, more_bits, 1, &c, warn);
    assert_string_equal(warn, "");
    const char *const fp32[] = {"train.mode=fp32"};
    load_ok(path, fp32, 1, &c, warn); /* the float baseline has no grid */
    assert_string_equal(warn, "");
    const char *const tiny[] = {"train.mode=fp32", "train.lr=0.0001"};
    load_ok(path, tiny, 2, &c, warn);
    const char *const big[] = {"train.lr=2", "train.lr_multipliers=1, 0.25, 0.125"};
    load_ok(path, big, 2, &c, warn);
    assert_string_equal(warn, "--set train.lr=2: [train] lr = 2 saturates on the 10-bit learning-rate grid of int8 "
                              "mode: it is 0.998047\n"
                              "--set train.lr_multipliers=1, 0.25, 0.125: [train] lr_multipliers value 1 (1): lr 2 x 1 = "
                              "2 saturates on the 10-bit grid of int8 mode: it is 0.998047\n");
    /* wg_config_validate on its own names the keys without an origin */
    wg_config_defaults(&c);
    c.train.lr = 0.0001;
    char err[ERR];
    assert_false(wg_config_validate(&c, err, sizeof err, warn, sizeof warn));
    assert_string_equal(err, "[train] lr = 0.0001 is 0 on the 10-bit learning-rate grid of int8 mode (steps of "
                             "0.00195312): use lr > 0.000976562 or more [quant] bits_lr");
}

static void write_and_reload(fixture *f, const wg_config *c, const char *name, wg_config *back, char **text)
{
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_true(wg_config_write(c, fp));
    assert_int_equal(fclose(fp), 0);
    load_ok(f->path, NULL, 0, back, NULL);
    fp = fopen(f->path, "r");
    assert_non_null(fp);
    *text = calloc(1, 65536);
    assert_non_null(*text);
    fread(*text, 1, 65535, fp);
    fclose(fp);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    wg_config c, back, again;
    char *t1, *t2;
    load_ok(write_text(f, "rt_src.ini", k_full), NULL, 0, &c, NULL);
    write_and_reload(f, &c, "rt1.ini", &back, &t1);
    assert_true(wg_config_equal(&c, &back));
    assert_memory_equal(&c, &back, sizeof c);
    check_full(&back);
    write_and_reload(f, &back, "rt2.ini", &again, &t2);
    assert_string_equal(t1, t2);
    /* every key is there, each after a help line */
    assert_non_null(strstr(t1, "\n; network to train: one of resnet20 | resnet32"));
    assert_non_null(strstr(t1, "\nlr_boundaries = 80, 120.5\n"));
    assert_non_null(strstr(t1, "\nseed = 18446744073709551615\n"));
    assert_non_null(strstr(t1, "\nbits_gamma_beta = 8\n"));
    assert_non_null(strstr(t1, "(default: 8)\nbits_w = 4\n"));
    free(t1), free(t2);

    /* awkward numbers, the defaults, and an empty list */
    wg_config_defaults(&c);
    char err[ERR];
    assert_true(wg_config_set(&c, "train.lr=0.30000000000000004", err, sizeof err));
    assert_true(wg_config_set(&c, "train.weight_decay=1e-300", err, sizeof err));
    assert_true(wg_config_set(&c, "train.lr_boundaries=0.1, 0.7, 1.3333333333333333", err, sizeof err));
    assert_true(wg_config_set(&c, "train.lr_multipliers=1, 0.3, 0.1, 0.03", err, sizeof err));
    assert_true(wg_config_set(&c, "output.dir=runs/x", err, sizeof err));
    write_and_reload(f, &c, "rt3.ini", &back, &t1);
    assert_true(wg_config_equal(&c, &back));
    assert_true(back.train.lr == 0.30000000000000004 && back.train.weight_decay == 1e-300);
    assert_true(back.train.lr_boundaries.v[2] == 1.3333333333333333);
    free(t1);
    wg_config_defaults(&c);
    write_and_reload(f, &c, "rt4.ini", &back, &t1);
    assert_false(wg_config_equal(&c, &back)); /* output.dir was resolved to runs/rt4 */
    assert_string_equal(back.output.dir, "runs/rt4");
    strcpy(c.output.dir, "runs/rt4");
    assert_true(wg_config_equal(&c, &back));
    assert_non_null(strstr(t1, "\nlr_boundaries = \n"));
    free(t1);
    c.train.seed = 2;
    assert_false(wg_config_equal(&c, &back));
}

static void test_output_dir(void **state)
{
    wg_config c;
    load_ok(write_text(*state, "fashion_resnet20_int8.ini", "[model]\nname = resnet20\n"), NULL, 0, &c, NULL);
    assert_string_equal(c.output.dir, "runs/fashion_resnet20_int8");
    load_ok(write_text(*state, "noext", "[model]\nname = resnet20\n"), NULL, 0, &c, NULL);
    assert_string_equal(c.output.dir, "runs/noext");
    const char *const out[] = {"output.dir=/tmp/elsewhere"};
    load_ok(write_text(*state, "empty.ini", ""), out, 1, &c, NULL);
    assert_string_equal(c.output.dir, "/tmp/elsewhere");
    assert_int_equal(c.quant.bits.g_scale_log2, 7);
    const char *const g[] = {"train.g_scale=1024"};
    load_ok(write_text(*state, "g.ini", ""), g, 1, &c, NULL);
    assert_int_equal(c.quant.bits.g_scale_log2, 10); /* follows the schedule at epoch 0 */
}

static void test_schedules(void **state)
{
    (void)state;
    wg_config c;
    char err[ERR];
    const double eps = 1e-15;
    wg_config_defaults(&c);
    assert_true(wg_config_lr_at(&c, 0) == 0.4 && wg_config_lr_at(&c, 4.99) == 0.4 && wg_config_lr_at(&c, 7) == 0.4);
    assert_int_equal(wg_config_g_scale_log2_at(&c, 3), 7);

    /* piecewise: lr 0.4, x1 before epoch 2, x0.1 from 2, x0.01 from 4; g_scale 128, 64, 32 */
    assert_true(wg_config_set(&c, "train.lr_boundaries=2, 4", err, sizeof err));
    assert_true(wg_config_set(&c, "train.lr_multipliers=1, 0.1, 0.01", err, sizeof err));
    assert_true(wg_config_set(&c, "train.g_scale=128, 64, 32", err, sizeof err));
    assert_true(wg_config_validate(&c, err, sizeof err, NULL, 0));
    assert_true(wg_config_lr_at(&c, 0) == 0.4);
    assert_true(wg_config_lr_at(&c, 1.999) == 0.4);
    assert_true(wg_config_lr_at(&c, 2) == 0.4 * 0.1);
    assert_true(wg_config_lr_at(&c, 3.5) == 0.4 * 0.1);
    assert_true(wg_config_lr_at(&c, 4) == 0.4 * 0.01);
    assert_true(wg_config_lr_at(&c, 5) == 0.4 * 0.01);
    assert_int_equal(wg_config_g_scale_log2_at(&c, 0), 7);
    assert_int_equal(wg_config_g_scale_log2_at(&c, 2.5), 6);
    assert_int_equal(wg_config_g_scale_log2_at(&c, 4), 5);
    assert_true(wg_config_set(&c, "train.g_scale=16", err, sizeof err));
    assert_int_equal(wg_config_g_scale_log2_at(&c, 4.5), 4); /* one value: every interval */
    /* step is piecewise by another name */
    assert_true(wg_config_set(&c, "train.lr_schedule=step", err, sizeof err));
    assert_true(wg_config_lr_at(&c, 2.5) == 0.4 * 0.1);

    /* warmup over 1 epoch: half of the scheduled value at epoch 0.5, all of it from 1 */
    assert_true(wg_config_set(&c, "train.warmup_epochs=1", err, sizeof err));
    assert_true(wg_config_lr_at(&c, 0) == 0);
    expect_near(wg_config_lr_at(&c, 0.5), 0.2, eps);
    expect_near(wg_config_lr_at(&c, 0.25), 0.1, eps);
    assert_true(wg_config_lr_at(&c, 1) == 0.4);

    /* cosine, lr 0.1 over 5 epochs: 0.1, 0.05 (1 + cos(pi/4)) = 0.0853553390593274, 0.05, 0 */
    wg_config_defaults(&c);
    assert_true(wg_config_set(&c, "train.lr_schedule=cosine", err, sizeof err));
    assert_true(wg_config_set(&c, "train.lr=0.1", err, sizeof err));
    assert_true(wg_config_lr_at(&c, 0) == 0.1);
    expect_near(wg_config_lr_at(&c, 1.25), 0.0853553390593274, eps);
    expect_near(wg_config_lr_at(&c, 2.5), 0.05, eps);
    expect_near(wg_config_lr_at(&c, 3.75), 0.0146446609406726, eps);
    assert_true(wg_config_lr_at(&c, 5) == 0);
    assert_true(wg_config_lr_at(&c, 6) == 0); /* clamped */
    /* with 2 warmup epochs: at 1, half of 0.05 (1 + cos(pi/5)) = 0.0904508497187474 */
    assert_true(wg_config_set(&c, "train.warmup_epochs=2", err, sizeof err));
    expect_near(wg_config_lr_at(&c, 1), 0.5 * 0.0904508497187474, eps);
    expect_near(wg_config_lr_at(&c, 2.5), 0.05, eps);
}

/* xorshift64: reproducible garbage */
static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void expect_garbage_fails(const char *path, const char *what)
{
    wg_config c;
    char err[ERR], warn[ERR];
    if (wg_config_load(&c, path, NULL, 0, err, sizeof err, warn, sizeof warn)) fail_msg("%s loaded", what);
    if (strncmp(err, path, strlen(path)) != 0 || err[strlen(path)] != ':') fail_msg("%s: message '%s'", what, err);
}

static void test_garbage(void **state)
{
    fixture *f = *state;
    static char buf[3 << 20];
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + next(&s) % 4096;
        int kind = round % 4; /* any byte; no NUL; printable with newlines; INI-looking noise */
        static const char alphabet[] = "[]=:;# \t\nabcdefghijklmnopqrstuvwxyz_.,-0123456789\r";
        for (size_t i = 0; i < n; i++) {
            uint64_t r = next(&s);
            buf[i] = kind == 0   ? (char)r
                     : kind == 1 ? (char)(1 + r % 255)
                     : kind == 2 ? (char)(r % 17 == 0 ? '\n' : 0x20 + r % 95)
                                 : alphabet[r % (sizeof alphabet - 1)];
        }
        if (kind == 3) memcpy(buf, "[train]\nepochs = 3\n", 19 < n ? 19 : n);
        char what[64];
        snprintf(what, sizeof what, "garbage round %d", round);
        wg_config c;
        char err[ERR], warn[ERR];
        err[0] = '\0';
        const char *path = write_bytes(f, "garbage.ini", buf, n);
        bool ok = wg_config_load(&c, path, NULL, 0, err, sizeof err, warn, sizeof warn);
        if (!ok && (strncmp(err, path, strlen(path)) != 0 || strlen(err) >= ERR - 1)) fail_msg("%s: '%s'", what, err);
        for (const char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) fail_msg("%s: unprintable message", what);
    }
    for (size_t i = 0; i < 4096; i++) buf[i] = (char)(next(&s) | 0x80); /* no NUL, no newline */
    expect_garbage_fails(write_bytes(f, "highbytes.ini", buf, 4096), "high bytes");
    memset(buf, '[', 150);
    expect_garbage_fails(write_bytes(f, "brackets.ini", buf, 150), "brackets");
    memset(buf, '\n', sizeof buf);
    memcpy(buf + 100, "x", 1);
    expect_error(write_bytes(f, "huge.ini", buf, sizeof buf), NULL, 0, "%s: larger than 1048576 bytes: not a config file");
    expect_error(write_bytes(f, "nul.ini", "[train]\nepochs = 3\n\0\n", 21), NULL, 0, "%s:3: a NUL byte: not a text file");
    /* a long override, control characters in one, and a NULL-free empty file */
    memset(buf, 'a', 5000);
    memcpy(buf, "data.root=", 10);
    buf[5000] = '\0';
    wg_config c;
    char err[ERR];
    wg_config_defaults(&c);
    assert_false(wg_config_set(&c, buf, err, sizeof err));
    assert_string_equal(err, "--set data.root=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...: longer than 1023 characters");
    assert_false(wg_config_set(&c, "data.root=a\x01z", err, sizeof err));
    assert_string_equal(err, "--set data.root=a?z: expected non-empty text of at most 160 characters, without ';'");
    char small[16];
    assert_false(wg_config_set(&c, "train.epochs=0", small, sizeof small)); /* a short buffer truncates */
    assert_string_equal(small, "--set train.epo");
    load_ok(write_text(f, "empty.ini", ""), NULL, 0, &c, NULL);
    load_ok(write_text(f, "comments.ini", "; nothing\n\n   \n#\n[train]\n"), NULL, 0, &c, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_cross_field_warnings),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_output_dir),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
