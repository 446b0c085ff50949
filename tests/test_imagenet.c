/* test_imagenet.c: the ImageNet input pipeline (jpeg.h, imageset.h, loader.h) on a
 * small ImageFolder dataset this test writes: three classes created out of order, RGB
 * JPEGs of several sizes (500 x 375 as ImageNet's photos, small ones), grayscale and
 * CMYK ones, all encoded here with TurboJPEG.
 *
 * It checks the class mapping (sorted folder names) and the list layout; decoding
 * against the source pixels and a scaled decode against the full one; the crop
 * geometry of training (area, aspect, inside the image, flips near half) and of
 * evaluation; that a sample depends only on (seed, epoch, index): the same batches with
 * 1 and 3 workers, and 2 ranks' shards put together equal one rank's batch; that the
 * workers' normalization is the preset's tables; and the
 * errors: a truncated JPEG names its file (or is skipped, counted, with skip_bad), an
 * empty class folder and a bad list line are named. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "data.h"
#include "imageset.h"
#include "jpeg.h"
#include "loader.h"
#include "train.h"

typedef struct fixture {
    char dir[256];
    wg_jpeg *j;
} fixture;

/* A smooth, textured test image: gradients and a low-frequency pattern, JPEG-friendly
 * enough that q90 stays within a few levels. */
static uint8_t *make_rgb(int w, int h, int seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(255 * x / (w - 1 > 0 ? w - 1 : 1));
            q[1] = (uint8_t)(255 * y / (h - 1 > 0 ? h - 1 : 1));
            q[2] = (uint8_t)(128 + 100 * ((x / 16 + y / 16 + seed) % 2 ? 1 : -1) * ((x % 16) * (y % 16)) / 225);
        }
    return p;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_jpeg(fixture *f, const char *rel, int w, int h, int channels, int seed)
{
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    uint8_t *rgb = make_rgb(w, h, seed), *px = rgb;
    uint8_t *alt = NULL;
    if (channels != 3) { /* gray: the first channel; CMYK: from RGB by the inverse rule */
        alt = malloc((size_t)w * h * (size_t)channels);
        assert_non_null(alt);
        for (size_t i = 0; i < (size_t)w * h; i++) {
            if (channels == 1) alt[i] = rgb[3 * i];
            else {
                alt[4 * i] = (uint8_t)(255 - rgb[3 * i]), alt[4 * i + 1] = (uint8_t)(255 - rgb[3 * i + 1]);
                alt[4 * i + 2] = (uint8_t)(255 - rgb[3 * i + 2]), alt[4 * i + 3] = 0;
            }
        }
        px = alt;
    }
    uint8_t *jpg;
    size_t len;
    assert_true(wg_jpeg_encode(f->j, px, w, h, channels, 90, &jpg, &len, err, sizeof(err)));
    write_file(path, jpg, len);
    free(jpg), free(rgb), free(alt);
}

static void mkdirs(fixture *f, const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/wg_test_imagenet_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->j = wg_jpeg_new();
    mkdirs(f, "train");
    static const char *const cls[] = {"train/n02", "train/n01", "train/n03"}; /* created out of order */
    for (int c = 0; c < 3; c++) mkdirs(f, cls[c]);
    write_jpeg(f, "train/n01/a.JPEG", 500, 375, 3, 1);
    write_jpeg(f, "train/n01/b.jpg", 64, 48, 3, 2);
    write_jpeg(f, "train/n01/notes.txt", 8, 8, 3, 0); /* not an image name: ignored */
    write_jpeg(f, "train/n02/c.JPEG", 300, 400, 1, 3); /* grayscale */
    write_jpeg(f, "train/n02/d.JPEG", 375, 500, 3, 4);
    write_jpeg(f, "train/n03/e.jpeg", 120, 90, 4, 5); /* CMYK */
    write_jpeg(f, "train/n03/f.JPEG", 256, 256, 3, 6);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    wg_jpeg_free(f->j);
    free(f);
    return 0;
}

static void open_train(fixture *f, wg_imageset *s)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof(dir), "%s/train", f->dir);
    if (!wg_imageset_folder(dir, s, err, sizeof(err))) fail_msg("%s", err);
}

static void test_class_mapping(void **state)
{
    fixture *f = *state;
    wg_imageset s;
    open_train(f, &s);
    assert_int_equal(s.num_classes, 3);
    assert_string_equal(s.classes[0], "n01");
    assert_string_equal(s.classes[1], "n02");
    assert_string_equal(s.classes[2], "n03");
    assert_int_equal(s.n, 6);
    static const char *const tails[] = {"n01/a.JPEG", "n01/b.jpg", "n02/c.JPEG", "n02/d.JPEG", "n03/e.jpeg",
                                        "n03/f.JPEG"};
    static const int labels[] = {0, 0, 1, 1, 2, 2};
    for (int i = 0; i < 6; i++) {
        size_t n = strlen(s.paths[i]), t = strlen(tails[i]);
        assert_true(n > t && strcmp(s.paths[i] + n - t, tails[i]) == 0);
        assert_int_equal(s.labels[i], labels[i]);
    }
    char buf[256] = "";
    FILE *m = fmemopen(buf, sizeof(buf), "w");
    assert_true(wg_imageset_write_classes(&s, m));
    fclose(m);
    assert_string_equal(buf, "0 n01\n1 n02\n2 n03\n");
    wg_imageset_free(&s);

    /* the list layout: relative paths, labels as given, comments skipped */
    char list[512], err[1024];
    snprintf(list, sizeof(list), "%s/list.txt", f->dir);
    const char *text = "# path label\ntrain/n02/d.JPEG 4\n\ntrain/n01/a.JPEG 0\n";
    write_file(list, (const uint8_t *)text, strlen(text));
    assert_true(wg_imageset_list(list, &s, err, sizeof(err)));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.num_classes, 5);
    assert_int_equal(s.labels[0], 4);
    assert_non_null(strstr(s.paths[1], "/train/n01/a.JPEG"));
    wg_imageset_free(&s);
    text = "train/n01/a.JPEG zero\n";
    write_file(list, (const uint8_t *)text, strlen(text));
    assert_false(wg_imageset_list(list, &s, err, sizeof(err)));
    assert_non_null(strstr(err, "list.txt:1: expected \"PATH LABEL\""));
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    assert_int_equal(fread(b, 1, *len, fp), *len);
    fclose(fp);
    return b;
}

static double mean_abs(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

/* Full decodes against the source pixels; a DCT-scaled decode against the full decode
 * averaged over the same blocks; grayscale and CMYK to RGB. */
static void test_decode(void **state)
{
    fixture *f = *state;
    char path[512], err[1024];
    size_t len;
    uint8_t *rgb, *full;
    int w, h, fw, fh;
    snprintf(path, sizeof(path), "%s/train/n01/a.JPEG", f->dir);
    uint8_t *jpg = read_all(path, &len), *src = make_rgb(500, 375, 1);
    assert_true(wg_jpeg_decode(f->j, jpg, len, path, 0, 0, &full, &fw, &fh, err, sizeof(err)));
    assert_int_equal(fw, 500);
    assert_int_equal(fh, 375);
    double e = mean_abs(full, src, (size_t)fw * fh * 3);
    print_message("full decode of a 500 x 375 q90 JPEG: mean |error| %.2f levels\n", e);
    assert_true(e < 3.0);
    /* at least 100 x 75: 1/8 gives 63 x 47, 2/8 gives 125 x 94 */
    assert_true(wg_jpeg_decode(f->j, jpg, len, path, 100, 75, &rgb, &w, &h, err, sizeof(err)));
    assert_int_equal(w, 125);
    assert_int_equal(h, 94);
    double d = 0;
    for (int y = 0; y < 93; y++)
        for (int x = 0; x < 125; x++)
            for (int c = 0; c < 3; c++) {
                double avg = 0;
                for (int yy = 0; yy < 4; yy++)
                    for (int xx = 0; xx < 4; xx++) avg += full[((size_t)(4 * y + yy) * fw + 4 * x + xx) * 3 + c];
                d += fabs(avg / 16 - rgb[((size_t)y * w + x) * 3 + c]);
            }
    d /= 93.0 * 125 * 3;
    print_message("1/4-scale DCT decode against the full decode's 4 x 4 means: mean |difference| %.2f levels\n", d);
    assert_true(d < 4.0);
    free(rgb), free(full), free(jpg), free(src);

    snprintf(path, sizeof(path), "%s/train/n02/c.JPEG", f->dir); /* grayscale */
    jpg = read_all(path, &len);
    assert_true(wg_jpeg_decode(f->j, jpg, len, path, 0, 0, &rgb, &w, &h, err, sizeof(err)));
    assert_true(w == 300 && h == 400);
    src = make_rgb(300, 400, 3);
    double eg = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        assert_true(rgb[3 * i] == rgb[3 * i + 1] && rgb[3 * i] == rgb[3 * i + 2]);
        eg += abs((int)rgb[3 * i] - (int)src[3 * i]);
    }
    assert_true(eg / (w * h) < 3.0);
    free(rgb), free(jpg), free(src);

    snprintf(path, sizeof(path), "%s/train/n03/e.jpeg", f->dir); /* CMYK of 255 - RGB, K = 0 */
    jpg = read_all(path, &len);
    assert_true(wg_jpeg_decode(f->j, jpg, len, path, 0, 0, &rgb, &w, &h, err, sizeof(err)));
    src = make_rgb(120, 90, 5);
    double ec = mean_abs(rgb, src, (size_t)w * h * 3);
    print_message("CMYK JPEG to RGB: mean |error| %.2f levels\n", ec);
    assert_true(w == 120 && h == 90 && ec < 4.0);
    free(rgb), free(jpg), free(src);
}

static bool same_crop(wg_crop a, wg_crop b)
{
    return a.x == b.x && a.y == b.y && a.w == b.w && a.h == b.h && a.flip == b.flip;
}

static void test_crops(void **state)
{
    (void)state;
    wg_crop_opts o = wg_crop_opts_reference();
    int flips = 0, fallbacks = 0;
    for (int64_t i = 0; i < 2000; i++) {
        wg_crop c = wg_crop_train(&o, 500, 375, 7, 3, i), again = wg_crop_train(&o, 500, 375, 7, 3, i);
        assert_true(same_crop(c, again));
        assert_true(c.x >= 0 && c.y >= 0 && c.w >= 1 && c.h >= 1 && c.x + c.w <= 500 && c.y + c.h <= 375);
        double area = (double)c.w * c.h / (500.0 * 375.0), ratio = (double)c.w / c.h;
        if (c.w == 500 && c.h == 375) fallbacks++;
        else {
            assert_true(area > 0.05 * 0.97 && area <= 1.0);
            assert_true(ratio > 0.75 * 0.97 && ratio < 4.0 / 3.0 * 1.03);
        }
        flips += c.flip;
    }
    print_message("2000 training crops of a 500 x 375 image: %d flipped, %d whole-image fallbacks\n", flips,
                  fallbacks);
    assert_true(flips > 900 && flips < 1100);
    wg_crop a = wg_crop_train(&o, 500, 375, 7, 3, 5), b = wg_crop_train(&o, 500, 375, 7, 4, 5);
    assert_false(same_crop(a, b)); /* another epoch, another crop */
    wg_crop e = wg_crop_eval(&o, 500, 375);
    assert_int_equal(e.w, 328); /* round(375 * 0.875) */
    assert_int_equal(e.h, 328);
    assert_int_equal(e.x, 86);
    assert_int_equal(e.y, 24);
}

/* All the batches of an epoch from a loader: 6 images in batches of 4 (the last short)
 * or of 2 (three batches through a ring of 2 slots: each slot refilled while the
 * trainer holds the other's batch). */
static uint8_t *run_loader(const wg_imageset *s, int workers, int rank, int ranks, bool train, int64_t batch,
                           int64_t *total)
{
    wg_loader_opts o = {.set = s, .crop = wg_crop_opts_reference(), .train = train, .seed = 11, .workers = workers,
                        .batch = batch, .ring = 2, .rank = rank, .ranks = ranks};
    o.crop.size = 32;
    int64_t order[6] = {5, 0, 3, 1, 4, 2};
    wg_loader *l = wg_loader_start(&o, order, 6, 2);
    size_t img = 32 * 32 * 3;
    uint8_t *all = calloc(8, img);
    assert_non_null(all);
    *total = 0;
    char err[1024];
    for (int64_t b = 0; b * batch < 6; b++) {
        const void *px;
        const int32_t *lab;
        int64_t n;
        if (!wg_loader_next(l, &px, &lab, &n, err, sizeof(err))) fail_msg("%s", err);
        memcpy(all + (size_t)*total * img, px, (size_t)n * img);
        *total += n;
    }
    wg_loader_stop(l);
    return all;
}

static void test_loader_determinism(void **state)
{
    fixture *f = *state;
    wg_imageset s;
    open_train(f, &s);
    size_t img = 32 * 32 * 3;
    for (int train = 0; train < 2; train++) {
        int64_t n1, n3, na, nb, n2;
        uint8_t *one = run_loader(&s, 1, 0, 1, train, 4, &n1), *three = run_loader(&s, 3, 0, 1, train, 4, &n3);
        uint8_t *pairs = run_loader(&s, 3, 0, 1, train, 2, &n2);
        assert_int_equal(n1, 6);
        assert_int_equal(n3, 6);
        assert_int_equal(n2, 6);
        assert_memory_equal(one, three, 6 * img);
        assert_memory_equal(one, pairs, 6 * img);
        free(pairs);
        /* 2 ranks: batch 0 splits 2 + 2, the short batch 1 (2 images) 1 + 1 */
        uint8_t *r0 = run_loader(&s, 2, 0, 2, train, 4, &na), *r1 = run_loader(&s, 2, 1, 2, train, 4, &nb);
        assert_int_equal(na, 3);
        assert_int_equal(nb, 3);
        assert_memory_equal(r0, one, 2 * img);
        assert_memory_equal(r1, one + 2 * img, 2 * img);
        assert_memory_equal(r0 + 2 * img, one + 4 * img, img);
        assert_memory_equal(r1 + 2 * img, one + 5 * img, img);
        free(one), free(three), free(r0), free(r1);
    }
    wg_imageset_free(&s);
}

/* The workers' normalization: the values the network gets, int8 and float32, are the
 * RGB bytes through the imagenet preset's tables. */
static void test_loader_normalizes(void **state)
{
    fixture *f = *state;
    wg_imageset s;
    open_train(f, &s);
    wg_norm norm;
    char err[1024];
    assert_true(wg_norm_init(&norm, "imagenet", 3, err, sizeof(err)));
    int64_t order[6] = {0, 1, 2, 3, 4, 5}, n;
    const void *px;
    const int32_t *lab;
    size_t per = 24 * 24 * 3;
    uint8_t *raw = malloc(6 * per);
    assert_non_null(raw);
    for (int mode = 0; mode < 3; mode++) {
        wg_loader_opts o = {.set = &s, .crop = wg_crop_opts_reference(), .train = true, .seed = 5, .workers = 2,
                            .batch = 6, .ring = 1, .rank = 0, .ranks = 1, .norm = mode ? &norm : NULL,
                            .as_float = mode == 2};
        o.crop.size = 24;
        wg_loader *l = wg_loader_start(&o, order, 6, 1);
        if (!wg_loader_next(l, &px, &lab, &n, err, sizeof(err))) fail_msg("%s", err);
        assert_int_equal(n, 6);
        for (size_t i = 0; i < 6 * per; i++) {
            if (mode == 0) raw[i] = ((const uint8_t *)px)[i];
            else if (mode == 1) assert_int_equal(((const int8_t *)px)[i], norm.q[i % 3][raw[i]]);
            else assert_true(((const float *)px)[i] == norm.f[i % 3][raw[i]]);
        }
        wg_loader_stop(l);
    }
    free(raw);
    wg_imageset_free(&s);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    char path[512], err[1024];
    size_t len;
    /* a truncated JPEG: named; skipped and counted with skip_bad */
    snprintf(path, sizeof(path), "%s/train/n01/a.JPEG", f->dir);
    uint8_t *jpg = read_all(path, &len);
    snprintf(path, sizeof(path), "%s/train/n01/z_cut.JPEG", f->dir);
    write_file(path, jpg, len / 2);
    free(jpg);
    wg_imageset s;
    open_train(f, &s);
    assert_int_equal(s.n, 7);
    int64_t order[7] = {2, 0, 1, 3, 4, 5, 6}; /* z_cut.JPEG is index 2 */
    wg_loader_opts o = {.set = &s, .crop = wg_crop_opts_reference(), .train = true, .seed = 1, .workers = 2,
                        .batch = 7, .ring = 1, .rank = 0, .ranks = 1};
    o.crop.size = 16;
    const void *px;
    const int32_t *lab;
    int64_t n;
    wg_loader *l = wg_loader_start(&o, order, 7, 0);
    assert_false(wg_loader_next(l, &px, &lab, &n, err, sizeof(err)));
    print_message("truncated file: %s\n", err);
    assert_non_null(strstr(err, "z_cut.JPEG"));
    wg_loader_stop(l);
    o.skip_bad = true;
    l = wg_loader_start(&o, order, 7, 0);
    if (!wg_loader_next(l, &px, &lab, &n, err, sizeof(err))) fail_msg("%s", err);
    assert_int_equal(wg_loader_skipped(l), 1);
    assert_int_equal(lab[0], 1); /* the image after it: n02/c.JPEG */
    wg_loader_stop(l);
    wg_imageset_free(&s);
    remove(path);

    /* an empty class folder */
    mkdirs(f, "train/n04");
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/train", f->dir);
    assert_false(wg_imageset_folder(dir, &s, err, sizeof(err)));
    assert_non_null(strstr(err, "train/n04: class folder without .jpg/.jpeg images"));
    snprintf(path, sizeof(path), "%s/train/n04", f->dir);
    rmdir(path);
    /* not a JPEG at all */
    assert_false(wg_jpeg_size(f->j, (const uint8_t *)"hello", 5, "x.JPEG", &(int){0}, &(int){0}, err, sizeof(err)));
    assert_non_null(strstr(err, "x.JPEG: not a JPEG"));
}

/* A few training steps of resnet18 on the generated images (train/ and a val/ of its
 * own), end to end through the trainer: it runs, writes the class index, and a second
 * run from the same seed ends with the same checkpoint bytes. */
static void test_training(void **state)
{
    fixture *f = *state;
    mkdirs(f, "val");
    static const char *const cls[] = {"val/n01", "val/n02", "val/n03"};
    for (int c = 0; c < 3; c++) mkdirs(f, cls[c]);
    write_jpeg(f, "val/n01/v1.JPEG", 200, 150, 3, 11);
    write_jpeg(f, "val/n02/v2.JPEG", 150, 200, 3, 12);
    write_jpeg(f, "val/n03/v3.JPEG", 90, 90, 1, 13);
    char dirset[600], outset[600], err[2048];
    unsigned char *ck[2] = {NULL, NULL};
    size_t cklen[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        wg_config c;
        wg_config_defaults(&c);
        snprintf(dirset, sizeof(dirset), "data.root=%s", f->dir);
        snprintf(outset, sizeof(outset), "output.dir=%s/run%d", f->dir, run);
        const char *sets[] = {"model.name=resnet18", "data.format=imagefolder", dirset, "data.image_size=64",
                              "data.workers=2", "train.batch=2", "train.epochs=1", "train.lr_boundaries=",
                              "train.lr_multipliers=1", "train.g_scale=128", "train.bn_recalibrate=1",
                              "train.log_every=1", "train.threads=1", outset};
        for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++)
            if (!wg_config_set(&c, sets[k], err, sizeof(err))) fail_msg("%s: %s", sets[k], err);
        wg_train_opts opts = {0};
        wg_train_result res;
        assert_int_equal(wg_train_run(&c, &opts, &res), 0);
        assert_int_equal(res.steps, 3); /* 6 training images, batch 2 */
        char path[700];
        snprintf(path, sizeof(path), "%s/run%d/classes.txt", f->dir, run);
        size_t len;
        uint8_t *txt = read_all(path, &len);
        assert_true(len == 18 && memcmp(txt, "0 n01\n1 n02\n2 n03\n", 18) == 0);
        free(txt);
        snprintf(path, sizeof(path), "%s/run%d/checkpoints/step_00000003.safetensors", f->dir, run);
        ck[run] = read_all(path, &cklen[run]);
    }
    /* the same bytes but for the metadata's times and paths: compare the tensor data */
    uint64_t h0, h1;
    memcpy(&h0, ck[0], 8), memcpy(&h1, ck[1], 8);
    assert_true(cklen[0] - h0 == cklen[1] - h1);
    assert_memory_equal(ck[0] + 8 + h0, ck[1] + 8 + h1, cklen[0] - 8 - h0);
    free(ck[0]), free(ck[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_mapping),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_crops),
        cmocka_unit_test(test_loader_determinism),
        cmocka_unit_test(test_loader_normalizes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_training),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
