/* test_checkpoint.c: safetensors files and checkpoints (host/safetensors.c,
 * host/checkpoint.c, host/run_dir.c) and exact resume (host/train.c).
 *
 * References: hand-written file bytes for the reader; for the corrupt cases, each
 * test writes the damaged file itself and expects a message naming the file and what
 * was wrong, with nothing loaded; the exact-resume test compares an interrupted and
 * resumed run with an uninterrupted one byte for byte (it needs
 * dataset-fashion-mnist and is skipped without it). */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "checkpoint.h"
#include "net.h"
#include "run_dir.h"
#include "safetensors.h"
#include "test_ref.h"
#include "train.h"

#define FASHION_ROOT "/usr/share/datasets/fashion-mnist"

/* ---- fixture: a temporary directory ----------------------------------------------- */

static int setup_dir(void **state)
{
    static char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/wg_ckpt_XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    *state = dir;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown_dir(void **state)
{
    return nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_in(char *out, size_t n, const char *dir, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

/* A safetensors file from a header text and data bytes; hlen_override != 0 replaces
 * the length field. */
static void write_st(const char *path, const char *header, const void *data, size_t ndata, uint64_t hlen_override)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + ndata + 1);
    uint64_t len = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (ndata) memcpy(buf + 8 + hl, data, ndata);
    write_bytes(path, buf, 8 + hl + ndata);
    free(buf);
}

/* No "*.tmp.*" file is left in dir. */
static void expect_no_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) TR_FAIL_IF(strstr(e->d_name, ".tmp."), "left behind: %s", e->d_name);
    closedir(d);
}

/* ---- the safetensors layer --------------------------------------------------------- */

/* A file written by hand (little-endian data) reads back as written. */
static void test_st_hand_file(void **state)
{
    char p[256], err[1024];
    path_in(p, sizeof(p), *state, "hand.safetensors");
    const uint8_t data[] = {0xFE, 0xFF, 0x03, 0x00, 0x7F, 0x81};
    write_st(p,
             "{\"__metadata__\": {\"a.exp\": \"-3\"}, \"b\": {\"dtype\": \"I8\", \"shape\": [2], \"data_offsets\": [4, 6]},"
             " \"a\": {\"dtype\": \"I16\", \"shape\": [1, 2], \"data_offsets\": [0, 4]}}  ",
             data, sizeof(data), 0);
    wg_st_file f;
    TR_FAIL_IF(!wg_st_read(p, &f, err, sizeof(err)), "%s", err);
    assert_int_equal(f.ntensors, 2);
    const wg_st_tensor *a = wg_st_find(&f, "a"), *b = wg_st_find(&f, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, WG_ST_I16);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[1], 2);
    int16_t av[2];
    memcpy(av, a->data, 4);
    assert_int_equal(av[0], -2);
    assert_int_equal(av[1], 3);
    assert_int_equal(((const int8_t *)b->data)[0], 127);
    assert_int_equal(((const int8_t *)b->data)[1], -127);
    assert_string_equal(wg_st_meta_get(&f, "a.exp"), "-3");
    assert_null(wg_st_meta_get(&f, "nope"));
    wg_st_free(&f);
}

/* What the writer writes, the reader reads: every dtype, a scalar, an empty tensor. */
static void test_st_round_trip(void **state)
{
    char p[256], err[1024];
    path_in(p, sizeof(p), *state, "rt.safetensors");
    int8_t i8[3] = {-127, 0, 127};
    int16_t i16[4] = {-300, 1, 2, 32767};
    int32_t i32[1] = {-123456789};
    int64_t i64[2] = {INT64_MAX, -5};
    float f32[3] = {0.5f, -1.25f, 3e30f};
    double f64[1] = {-0.1};
    uint8_t u8[1] = {0};
    const int64_t s3[] = {3}, s22[] = {2, 2}, s2[] = {2}, s13[] = {1, 3}, s1[] = {1}, s0[] = {0};
    wg_st_writer w = {0};
    wg_st_add(&w, "i8", WG_ST_I8, 1, s3, i8);
    wg_st_add(&w, "i16", WG_ST_I16, 2, s22, i16);
    wg_st_add(&w, "scalar", WG_ST_I32, 0, NULL, i32);
    wg_st_add(&w, "i64", WG_ST_I64, 1, s2, i64);
    wg_st_add(&w, "f32", WG_ST_F32, 2, s13, f32);
    wg_st_add(&w, "f64", WG_ST_F64, 1, s1, f64);
    wg_st_add(&w, "empty", WG_ST_U8, 1, s0, u8);
    wg_st_add_meta(&w, "note", "quotes \" and \\ and\nnewlines");
    TR_FAIL_IF(!wg_st_write(&w, p, err, sizeof(err)), "%s", err);
    wg_st_writer_free(&w);
    expect_no_temporaries(*state);
    size_t n;
    uint8_t *raw = read_bytes(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    assert_int_equal((8 + hl) % 8, 0); /* the data area starts aligned */
    free(raw);
    wg_st_file f;
    TR_FAIL_IF(!wg_st_read(p, &f, err, sizeof(err)), "%s", err);
    assert_int_equal(f.ntensors, 7);
    const struct {
        const char *name;
        const void *data;
        size_t nbytes;
        int ndim;
    } want[] = {{"i8", i8, 3, 1},     {"i16", i16, 8, 2}, {"scalar", i32, 4, 0}, {"i64", i64, 16, 1},
                {"f32", f32, 12, 2}, {"f64", f64, 8, 1}, {"empty", u8, 0, 1}};
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        const wg_st_tensor *t = wg_st_find(&f, want[k].name);
        TR_FAIL_IF(t == NULL, "tensor %s missing", want[k].name);
        TR_FAIL_IF(t->nbytes != want[k].nbytes || t->ndim != want[k].ndim, "tensor %s: %zu bytes, %d dims", want[k].name,
                   t->nbytes, t->ndim);
        TR_FAIL_IF(t->nbytes && memcmp(t->data, want[k].data, t->nbytes), "tensor %s differs", want[k].name);
    }
    assert_string_equal(wg_st_meta_get(&f, "note"), "quotes \" and \\ and\nnewlines");
    wg_st_free(&f);
}

/* Each damaged file is refused with a message naming the file and the problem. */
static void test_st_corrupt(void **state)
{
    const uint8_t d6[6] = {1, 2, 3, 4, 5, 6};
    const struct {
        const char *what, *header;
        size_t ndata;
        uint64_t hlen;
        const char *expect;
    } cases[] = {
        {"header length past the end", "{}", 0, 1000, "offset 0: header length 1000; expected 2..2"},
        {"huge header length", "{}", 0, 0xFFFFFFFFFFFFull, "offset 0: header length 281474976710655"},
        {"malformed JSON", "{\"a\": {\"dtype\": ", 0, 0, "the header is not valid JSON"},
        {"not an object", "[1, 2]", 0, 0, "offset 8: the header is not a JSON object"},
        {"text after the JSON", "{} x", 0, 0, "offset 11: data after the header's JSON object"},
        {"unknown dtype", "{\"a\": {\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2, 0,
         "tensor 'a': dtype \"Q7\"; expected one of I8, I16, I32, I64, U8, F32, F64"},
        {"shape and bytes differ", "{\"a\": {\"dtype\": \"I16\", \"shape\": [3], \"data_offsets\": [0, 4]}}", 4, 0,
         "tensor 'a': data_offsets [0, 4] span 4 bytes; its dtype I16 and shape need 6"},
        {"truncated data", "{\"a\": {\"dtype\": \"I16\", \"shape\": [3], \"data_offsets\": [0, 6]}}", 2, 0,
         "past the end of the file (2 data bytes): the file is truncated"},
        {"a gap", "{\"a\": {\"dtype\": \"I8\", \"shape\": [2], \"data_offsets\": [0, 2]}, "
                  "\"b\": {\"dtype\": \"I8\", \"shape\": [2], \"data_offsets\": [4, 6]}}", 6, 0,
         "tensor 'b' starts at data offset 4; expected 2"},
        {"overlap", "{\"a\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}, "
                    "\"b\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [2, 6]}}", 6, 0,
         "tensor 'b' starts at data offset 2; expected 4"},
        {"trailing bytes", "{\"a\": {\"dtype\": \"I8\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 6, 0,
         "4 bytes after the last tensor's data"},
        {"a name twice", "{\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0, 1]}, "
                         "\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 2, 0,
         "tensor 'a' appears twice"},
        {"metadata not a string", "{\"__metadata__\": {\"k\": 1}}", 0, 0, "__metadata__ 'k' is not a string"},
        {"negative size", "{\"a\": {\"dtype\": \"I8\", \"shape\": [-1], \"data_offsets\": [0, 0]}}", 0, 0,
         "tensor 'a': shape entry 0 is not a non-negative integer"},
        {"fractional size", "{\"a\": {\"dtype\": \"I8\", \"shape\": [1.5], \"data_offsets\": [0, 0]}}", 0, 0,
         "shape entry 0 is not a non-negative integer"},
        {"offsets not a pair", "{\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0]}}", 1, 0,
         "data_offsets is not [begin, end]"},
        {"offsets reversed", "{\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [2, 1]}}", 1, 0,
         "data_offsets is not [begin, end]"},
        {"overflowing shape", "{\"a\": {\"dtype\": \"I64\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}",
         0, 0, "tensor 'a': shape is too large"},
        {"unknown field", "{\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0, 1], \"x\": 1}}", 1, 0,
         "unknown field 'x'"},
        {"entry not an object", "{\"a\": 3}", 0, 0, "tensor 'a' is not a JSON object"},
    };
    char p[256], err[1024];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        snprintf(p, sizeof(p), "%s/bad%zu.safetensors", (const char *)*state, k);
        write_st(p, cases[k].header, d6, cases[k].ndata, cases[k].hlen);
        wg_st_file f;
        memset(&f, 0x5a, sizeof(f));
        err[0] = '\0';
        TR_FAIL_IF(wg_st_read(p, &f, err, sizeof(err)), "case '%s' was accepted", cases[k].what);
        TR_FAIL_IF(f.buf || f.tensors || f.meta || f.ntensors, "case '%s': the file is not left empty", cases[k].what);
        TR_FAIL_IF(!strstr(err, p) || !strstr(err, cases[k].expect), "case '%s': message\n  %s\nlacks\n  %s",
                   cases[k].what, err, cases[k].expect);
    }
    /* shorter than the length field; a missing file */
    snprintf(p, sizeof(p), "%s/short.safetensors", (const char *)*state);
    write_bytes(p, d6, 5);
    wg_st_file f;
    assert_false(wg_st_read(p, &f, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "offset 0: 5 bytes; a safetensors file starts with an 8-byte header length"), "%s", err);
    snprintf(p, sizeof(p), "%s/none.safetensors", (const char *)*state);
    assert_false(wg_st_read(p, &f, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, p) || !strstr(err, "cannot open"), "%s", err);
}

/* A failed write leaves the existing file as it was and no temporary behind. */
static void test_st_write_failure(void **state)
{
    char p[256], err[1024];
    snprintf(p, sizeof(p), "%s/no-such-dir/x.safetensors", (const char *)*state);
    wg_st_writer w = {0};
    int8_t v = 1;
    const int64_t s1[] = {1};
    wg_st_add(&w, "v", WG_ST_I8, 1, s1, &v);
    assert_false(wg_st_write(&w, p, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "no-such-dir/x.safetensors") || !strstr(err, "No such file"), "%s", err);
    wg_st_writer_free(&w);
}

/* ---- checkpoints of a network ------------------------------------------------------- */

typedef struct test_net {
    wg_backend *b;
    wg_net *net;
    wg_config cfg;
} test_net;

/* resnet8 on 8x8x1 images (int8 full, int8 reference, or fp32), batch 2. */
static test_net make_net(bool int8, bool reference, int bits_u, uint64_t seed)
{
    test_net t;
    wg_config_defaults(&t.cfg);
    t.cfg.model.name = WG_MODEL_RESNET8;
    t.cfg.train.mode = int8 ? WG_MODE_INT8 : WG_MODE_FP32;
    t.cfg.quant.preset = reference ? WG_PRESET_REFERENCE : WG_PRESET_FULL;
    t.cfg.quant.bits.u = bits_u;
    t.cfg.train.seed = seed;
    snprintf(t.cfg.output.dir, sizeof(t.cfg.output.dir), "runs/test");
    t.b = wg_backend_cpu_init();
    wg_net_opts o = {.model = "resnet8", .int8 = int8, .bits = t.cfg.quant.bits, .act = t.cfg.quant.act_exponent,
                     .e2 = t.cfg.quant.e2, .float_ends = reference, .batch = 2, .h = 8, .w = 8, .c = 1,
                     .classes = 10, .seed = seed};
    char err[256];
    t.net = wg_net_create(&o, t.b, err, sizeof(err));
    TR_FAIL_IF(t.net == NULL, "%s", err);
    return t;
}

static void free_net(test_net *t)
{
    wg_net_free(t->net);
    wg_backend_free(t->b);
}

/* Every state tensor: the parameters' masters, momenta and forward copies, and the BN
 * statistics with their flags, in order, as one byte string (caller frees). */
static uint8_t *state_bytes(wg_net *net, size_t *len)
{
    int np;
    wg_param *p = wg_net_params(net, &np);
    wg_net_state bn[256];
    int nb = wg_net_bn_state(net, bn, 256);
    assert_true(nb <= 256);
    size_t total = 0;
    for (int i = 0; i < np; i++)
        total += wg_tensor_nbytes(&p[i].master) + wg_tensor_nbytes(&p[i].momentum) +
                 (p[i].fwd.data ? wg_tensor_nbytes(&p[i].fwd) : 0);
    for (int i = 0; i < nb; i++) total += wg_tensor_nbytes(bn[i].t) + 1;
    uint8_t *buf = malloc(total), *at = buf;
    assert_non_null(buf);
    for (int i = 0; i < np; i++) {
        wg_tensor_download(&p[i].master, at), at += wg_tensor_nbytes(&p[i].master);
        wg_tensor_download(&p[i].momentum, at), at += wg_tensor_nbytes(&p[i].momentum);
        if (p[i].fwd.data) wg_tensor_download(&p[i].fwd, at), at += wg_tensor_nbytes(&p[i].fwd);
    }
    for (int i = 0; i < nb; i++) {
        wg_tensor_download(bn[i].t, at), at += wg_tensor_nbytes(bn[i].t);
        *at++ = *bn[i].initialized;
    }
    *len = total;
    return buf;
}

/* Fill masters, momenta and BN statistics with values in their ranges, then refresh. */
static void scramble(test_net *t, uint64_t seed)
{
    tr_rng r = {seed};
    int np;
    wg_param *p = wg_net_params(t->net, &np);
    wg_net_state bn[256];
    int nb = wg_net_bn_state(t->net, bn, 256);
    wg_tensor *ts[3 * 256 + 256];
    int nt = 0;
    for (int i = 0; i < np; i++) ts[nt++] = &p[i].master, ts[nt++] = &p[i].momentum;
    for (int i = 0; i < nb; i++) ts[nt++] = bn[i].t, *bn[i].initialized = true;
    for (int k = 0; k < nt; k++) {
        wg_tensor *x = ts[k];
        int64_t n = wg_tensor_numel(x);
        void *h = malloc(wg_tensor_nbytes(x));
        for (int64_t i = 0; i < n; i++) {
            if (x->dtype == WG_I32) ((int32_t *)h)[i] = (int32_t)tr_range(&r, -(1 << 22), 1 << 22);
            else if (x->dtype == WG_I64) ((int64_t *)h)[i] = tr_range(&r, 1 << 16, INT64_C(1) << 40);
            else ((float *)h)[i] = (float)tr_range(&r, 1, 1000) / 1024.0f;
        }
        wg_tensor_upload(x, h);
        free(h);
    }
    for (int i = 0; i < np; i++) wg_param_refresh(&p[i], &t->cfg.quant.bits);
}

/* Saved, then loaded into a network of another seed: the same state, position and config. */
static void test_ckpt_round_trip(void **state)
{
    const struct {
        bool int8, reference;
    } modes[] = {{true, false}, {true, true}, {false, false}};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        char p[256], err[2048];
        snprintf(p, sizeof(p), "%s/rt%zu.safetensors", (const char *)*state, m);
        test_net a = make_net(modes[m].int8, modes[m].reference, 24, 1), b = make_net(modes[m].int8, modes[m].reference, 24, 2);
        scramble(&a, 100 + m);
        wg_ckpt_position pos = {1234, 3, 17, 0.875, 1200, 0.75, 12.5, 39488}, got;
        TR_FAIL_IF(!wg_checkpoint_save(p, a.net, &a.cfg, &pos, err, sizeof(err)), "%s", err);
        expect_no_temporaries(*state);
        size_t la, lb;
        uint8_t *sa = state_bytes(a.net, &la), *sb = state_bytes(b.net, &lb);
        assert_int_equal(la, lb);
        TR_FAIL_IF(!memcmp(sa, sb, la), "mode %zu: the two seeds built identical networks", m);
        free(sb);
        wg_config saved;
        TR_FAIL_IF(!wg_checkpoint_load(p, b.net, &b.cfg.quant.bits, &got, &saved, err, sizeof(err)), "%s", err);
        sb = state_bytes(b.net, &lb);
        TR_FAIL_IF(memcmp(sa, sb, la), "mode %zu: the loaded state differs from the saved one", m);
        TR_FAIL_IF(memcmp(&got, &pos, sizeof(pos)), "mode %zu: position step %lld epoch %d/%lld best %g", m,
                   (long long)got.step, got.epoch, (long long)got.epoch_step, got.best_acc);
        TR_FAIL_IF(!wg_config_equal(&saved, &a.cfg), "mode %zu: the saved config differs", m);
        free(sa), free(sb);
        free_net(&a), free_net(&b);
    }
}

/* Rewrite checkpoint src into dst through the safetensors layer, changing one thing:
 * drop tensor `drop`, give tensor `reshape` shape [1], or set metadata key to value. */
static void rewrite(const char *src, const char *dst, const char *drop, const char *reshape, const char *key,
                    const char *value)
{
    wg_st_file f;
    char err[1024];
    TR_FAIL_IF(!wg_st_read(src, &f, err, sizeof(err)), "%s", err);
    wg_st_writer w = {0};
    const int64_t one[1] = {1};
    for (int i = 0; i < f.ntensors; i++) {
        const wg_st_tensor *t = &f.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        bool rs = reshape && !strcmp(t->name, reshape);
        wg_st_add(&w, t->name, t->dtype, rs ? 1 : t->ndim, rs ? one : t->shape, t->data);
    }
    for (int i = 0; i < f.nmeta; i++)
        if (!key || strcmp(f.meta[i].key, key)) wg_st_add_meta(&w, f.meta[i].key, f.meta[i].value);
    if (key && value) wg_st_add_meta(&w, key, value);
    TR_FAIL_IF(!wg_st_write(&w, dst, err, sizeof(err)), "%s", err);
    wg_st_writer_free(&w);
    wg_st_free(&f);
}

/* A checkpoint that does not fit the network is refused, naming the file and the
 * tensor or field, and the network is left as it was. */
static void test_ckpt_mismatch(void **state)
{
    const char *dir = *state;
    char good[256], bad[256], err[2048];
    path_in(good, sizeof(good), dir, "good.safetensors");
    test_net a = make_net(true, false, 24, 1);
    wg_ckpt_position pos = {10, 0, 10, -1, 0, -1, 1, 320}, got;
    TR_FAIL_IF(!wg_checkpoint_save(good, a.net, &a.cfg, &pos, err, sizeof(err)), "%s", err);
    size_t ngood;
    uint8_t *good_bytes = read_bytes(good, &ngood);
    const char *w0 = "block0.conv1";
    const struct {
        const char *what, *drop, *reshape, *key, *value, *expect;
    } cases[] = {
        {"a tensor missing", w0, NULL, NULL, NULL, "tensor 'block0.conv1' is missing; the resnet8 this config builds needs it"},
        {"a wrong shape", NULL, w0, NULL, NULL, "tensor 'block0.conv1' is I32 [1]; this config's resnet8 needs I32 [16, 3, 3, 16]"},
        {"another format", NULL, NULL, "format", "something", "metadata 'format' is \"something\"; expected \"wageubn-checkpoint\""},
        {"a later version", NULL, NULL, "format_version", "9", "format_version 9; this wageubn reads version 1"},
        {"a malformed step", NULL, NULL, "step", "12abc", "metadata 'step' = \"12abc\"; expected an integer"},
        {"no exponent", NULL, NULL, "stem.exp", NULL, "metadata 'stem.exp' is missing"},
        {"a bad flag", NULL, NULL, "head.bn.running_mean.initialized", "maybe", "expected \"true\" or \"false\""},
        {"flags that disagree", NULL, NULL, "head.bn.running_sigma.initialized", "true",
         "'head.bn.running_mean.initialized' and 'head.bn.running_sigma.initialized' disagree"},
        {"a broken config", NULL, NULL, "config", "[train]\nepochs = zero\n", "(metadata 'config'):2: [train] epochs = zero"},
    };
    size_t ref_len;
    uint8_t *ref = state_bytes(a.net, &ref_len);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        snprintf(bad, sizeof(bad), "%s/bad%zu.safetensors", dir, k);
        rewrite(good, bad, cases[k].drop, cases[k].reshape, cases[k].key, cases[k].value);
        test_net b = make_net(true, false, 24, 7);
        size_t l0, l1;
        uint8_t *before = state_bytes(b.net, &l0);
        err[0] = '\0';
        TR_FAIL_IF(wg_checkpoint_load(bad, b.net, &b.cfg.quant.bits, &got, NULL, err, sizeof(err)), "case '%s' was accepted",
                   cases[k].what);
        TR_FAIL_IF(!strstr(err, bad) || !strstr(err, cases[k].expect), "case '%s': message\n  %s\nlacks\n  %s",
                   cases[k].what, err, cases[k].expect);
        uint8_t *after = state_bytes(b.net, &l1);
        TR_FAIL_IF(memcmp(before, after, l0), "case '%s': a refused checkpoint changed the network", cases[k].what);
        free(before), free(after);
        free_net(&b);
    }
    /* another model; other bit widths (the masters' exponent); a truncated file */
    test_net fp = make_net(false, false, 24, 1), u20 = make_net(true, false, 20, 1);
    assert_false(wg_checkpoint_load(good, fp.net, &fp.cfg.quant.bits, &got, NULL, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "tensor 'stem' is I32 [16, 3, 3, 1]; this config's resnet8 needs F32"), "fp32: %s", err);
    assert_false(wg_checkpoint_load(good, u20.net, &u20.cfg.quant.bits, &got, NULL, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "tensor 'stem' has exponent -23; this config needs -19"), "bits_u: %s", err);
    path_in(bad, sizeof(bad), dir, "cut.safetensors");
    write_bytes(bad, good_bytes, ngood / 2);
    assert_false(wg_checkpoint_load(bad, u20.net, &u20.cfg.quant.bits, &got, NULL, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, bad) || !strstr(err, "the file is truncated"), "cut: %s", err);
    /* none of this touched the good file */
    size_t nnow;
    uint8_t *now = read_bytes(good, &nnow);
    TR_FAIL_IF(nnow != ngood || memcmp(now, good_bytes, ngood), "the good checkpoint changed");
    free(now), free(good_bytes), free(ref);
    free_net(&a), free_net(&fp), free_net(&u20);
}

/* The run directory: step files pruned to keep, latest and best published, a new run
 * into a used directory refused unless overwrite, the run directory of a path. */
static void test_run_dir(void **state)
{
    const char *dir = *state;
    char run[256], p[512], err[2048], written[1100];
    snprintf(run, sizeof(run), "%s/run", dir);
    test_net a = make_net(true, false, 24, 1);
    TR_FAIL_IF(wg_run_dir_prepare(run, false, false, err, sizeof(err)) != 0, "%s", err);
    for (int64_t s = 1; s <= 5; s++) {
        wg_ckpt_position pos = {s * 10, 0, s * 10, -1, 0, -1, 0, 0};
        TR_FAIL_IF(!wg_run_dir_save(run, 2, s == 3, a.net, &a.cfg, &pos, written, sizeof(written), err, sizeof(err)),
                   "%s", err);
    }
    const struct {
        const char *name;
        bool present;
    } files[] = {{"checkpoints/step_00000010.safetensors", false}, {"checkpoints/step_00000030.safetensors", false},
                 {"checkpoints/step_00000040.safetensors", true},  {"checkpoints/step_00000050.safetensors", true},
                 {"latest.safetensors", true},                     {"best.safetensors", true}};
    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
        snprintf(p, sizeof(p), "%s/%s", run, files[k].name);
        TR_FAIL_IF((access(p, F_OK) == 0) != files[k].present, "%s: expected %s", files[k].name,
                   files[k].present ? "present" : "removed");
    }
    wg_ckpt_position got;
    snprintf(p, sizeof(p), "%s/best.safetensors", run);
    TR_FAIL_IF(!wg_checkpoint_load(p, a.net, &a.cfg.quant.bits, &got, NULL, err, sizeof(err)), "%s", err);
    assert_int_equal(got.step, 30);
    snprintf(p, sizeof(p), "%s/latest.safetensors", run);
    TR_FAIL_IF(!wg_checkpoint_load(p, a.net, &a.cfg.quant.bits, &got, NULL, err, sizeof(err)), "%s", err);
    assert_int_equal(got.step, 50);
    assert_int_equal(wg_run_dir_prepare(run, false, false, err, sizeof(err)), 2);
    TR_FAIL_IF(!strstr(err, "already holds a run") || !strstr(err, "--resume"), "%s", err);
    TR_FAIL_IF(access(p, F_OK) != 0, "a refused new run removed latest.safetensors");
    TR_FAIL_IF(wg_run_dir_prepare(run, true, false, err, sizeof(err)) != 0, "resume: %s", err);
    TR_FAIL_IF(wg_run_dir_prepare(run, false, true, err, sizeof(err)) != 0, "overwrite: %s", err);
    TR_FAIL_IF(access(p, F_OK) == 0, "overwrite kept latest.safetensors");
    snprintf(p, sizeof(p), "%s/checkpoints/step_00000050.safetensors", run);
    TR_FAIL_IF(access(p, F_OK) == 0, "overwrite kept the step files");
    char d[256];
    const char *cases[][2] = {{"a/b/latest.safetensors", "a/b"}, {"a/b/checkpoints/step_00000001.safetensors", "a/b"},
                              {"x.safetensors", "."},           {"checkpoints/step_1.safetensors", "."},
                              {"/latest.safetensors", "/"}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        wg_run_dir_of(cases[k][0], d, sizeof(d));
        TR_FAIL_IF(strcmp(d, cases[k][1]), "run dir of %s: %s, expected %s", cases[k][0], d, cases[k][1]);
    }
    wg_run_dir_of(run, d, sizeof(d));
    assert_string_equal(d, run);
    free_net(&a);
}

/* ---- exact resume ------------------------------------------------------------------- */

static bool have_fashion(void) { return access(FASHION_ROOT "/train-images-idx3-ubyte.gz", R_OK) == 0; }

static void load_cfg(wg_config *cfg, const char *dir, const char *const *extra, int nextra)
{
    const char *base[16] = {"model.name=resnet8", "data.limit_train=320", "data.limit_test=64", "train.batch=32",
                            "train.epochs=2", "train.log_every=100", "train.bn_recalibrate=2",
                            "output.checkpoint_every=4", "output.keep_checkpoints=100"};
    int n = 9;
    for (int i = 0; i < nextra; i++) base[n++] = extra[i];
    char out[400], err[2048];
    snprintf(out, sizeof(out), "output.dir=%s", dir);
    base[n++] = out;
    TR_FAIL_IF(!wg_config_load(cfg, NULL, base, n, err, sizeof(err), NULL, 0), "%s", err);
}

/* The tensors of two checkpoint files are identical, byte for byte. */
static void expect_same_tensors(const char *a, const char *b, const char *what)
{
    wg_st_file fa, fb;
    char err[1024];
    TR_FAIL_IF(!wg_st_read(a, &fa, err, sizeof(err)), "%s", err);
    TR_FAIL_IF(!wg_st_read(b, &fb, err, sizeof(err)), "%s", err);
    assert_int_equal(fa.ntensors, fb.ntensors);
    for (int i = 0; i < fa.ntensors; i++) {
        const wg_st_tensor *ta = &fa.tensors[i], *tb = wg_st_find(&fb, ta->name);
        TR_FAIL_IF(tb == NULL || tb->nbytes != ta->nbytes || memcmp(ta->data, tb->data, ta->nbytes),
                   "%s: tensor %s differs between the uninterrupted and the resumed run", what, ta->name);
    }
    assert_string_equal(wg_st_meta_get(&fa, "step"), wg_st_meta_get(&fb, "step"));
    wg_st_free(&fa), wg_st_free(&fb);
}

static void copy_file(const char *src, const char *dst)
{
    size_t n;
    uint8_t *b = read_bytes(src, &n);
    write_bytes(dst, b, n);
    free(b);
}

/* An uninterrupted run, and runs resumed from its checkpoints in the middle of epoch
 * 1, at the end of epoch 1 and in the middle of epoch 2, end with the same weights,
 * momenta and BN statistics, in every mode. 10 steps per epoch. */
static void test_resume_exact(void **state)
{
    if (!have_fashion()) skip();
    const char *dir = *state;
    /* bn_recalibrate = 0 in one mode: evaluation then uses the running statistics that
     * training carried (recalibration would recompute them from the weights alone) */
    const struct {
        const char *name, *set[3];
    } modes[] = {{"int8-full", {"train.mode=int8", "quant.preset=full", "train.bn_recalibrate=0"}},
                 {"int8-reference", {"train.mode=int8", "quant.preset=reference", "train.bn_recalibrate=2"}},
                 {"fp32", {"train.mode=fp32", "train.lr=0.1", "train.bn_recalibrate=2"}}};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        char full[300], p[400], q[400];
        snprintf(full, sizeof(full), "%s/%s-full", dir, modes[m].name);
        wg_config cfg;
        load_cfg(&cfg, full, modes[m].set, 3);
        wg_train_result res, res2;
        wg_train_opts fresh = {0};
        assert_int_equal(wg_train_run(&cfg, &fresh, &res), 0);
        const int64_t from[] = {4, 10, 16};
        for (size_t k = 0; k < sizeof(from) / sizeof(from[0]); k++) {
            char part[300];
            snprintf(part, sizeof(part), "%s/%s-from%lld", dir, modes[m].name, (long long)from[k]);
            wg_config cfg2;
            load_cfg(&cfg2, part, modes[m].set, 3);
            char err[512];
            snprintf(p, sizeof(p), "%s/checkpoints", part);
            TR_FAIL_IF(!wg_make_dirs(p, err, sizeof(err)), "%s", err);
            snprintf(p, sizeof(p), "%s/checkpoints/step_%08lld.safetensors", full, (long long)from[k]);
            snprintf(q, sizeof(q), "%s/latest.safetensors", part);
            copy_file(p, q);
            wg_train_opts resume = {.resume = part};
            assert_int_equal(wg_train_run(&cfg2, &resume, &res2), 0);
            snprintf(p, sizeof(p), "%s/latest.safetensors", full);
            char what[64];
            snprintf(what, sizeof(what), "%s from step %lld", modes[m].name, (long long)from[k]);
            expect_same_tensors(p, q, what);
            TR_FAIL_IF(res.test_acc != res2.test_acc, "%s: test accuracy %g vs %g", what, res.test_acc, res2.test_acc);
        }
    }
}

/* A resume that does not fit the config is refused before anything is written. */
static void test_resume_refused(void **state)
{
    if (!have_fashion()) skip();
    const char *dir = *state;
    char run[300];
    snprintf(run, sizeof(run), "%s/short", dir);
    const char *one[] = {"train.epochs=1", "model.name=plaincnn"};
    wg_config cfg;
    load_cfg(&cfg, run, one, 2);
    wg_train_result res;
    wg_train_opts fresh = {0}, resume = {.resume = run};
    assert_int_equal(wg_train_run(&cfg, &fresh, &res), 0);
    /* the same run again, at its end: evaluated again, the same summary */
    double acc = res.test_acc;
    char summary[400];
    snprintf(summary, sizeof(summary), "%s/summary.json", run);
    assert_int_equal(remove(summary), 0);
    assert_int_equal(wg_train_run(&cfg, &resume, &res), 0);
    TR_FAIL_IF(access(summary, F_OK) != 0 || res.test_acc != acc, "resumed at the end: test accuracy %g, was %g",
               res.test_acc, acc);
    /* with another seed; a new run into it */
    const char *seed[] = {"train.epochs=2", "model.name=plaincnn", "train.seed=9"};
    load_cfg(&cfg, run, seed, 3);
    assert_int_equal(wg_train_run(&cfg, &resume, &res), WG_TRAIN_EXIT_USAGE);
    assert_int_equal(wg_train_run(&cfg, &fresh, &res), WG_TRAIN_EXIT_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_st_hand_file, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_st_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_st_corrupt, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_st_write_failure, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ckpt_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ckpt_mismatch, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_run_dir, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_resume_exact, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_resume_refused, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
