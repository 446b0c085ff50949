/* test_data.c: the dataset readers (IDX, CIFAR-10), the validation split, the
 * epoch order, the augmentation and the int8/float input batches (data.h).
 *
 * Small IDX files (gzip and plain) and a tiny CIFAR-style set are written into a
 * mkdtemp directory. The references here never call the code under test, except
 * Philox itself (checked against its known-answer vectors in test_philox.c) and,
 * in the geometry test, wg_data_aug_draw, which test_aug_draw checks against the
 * documented counter layout. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "wg_philox.h"

#include "test_ref.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define NI 7 /* images in the small IDX files */
#define RI 3 /* their rows */
#define CI 5 /* their columns */

/* ---- files ---------------------------------------------------------------- */

static void td_path(char *out, const char *dir, const char *name) { snprintf(out, 512, "%s/%s", dir, name); }

static void td_write(const char *path, const uint8_t *b, size_t len, bool gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, b, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
}

static void td_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint8_t td_pixel(int i, int y, int x) { return (uint8_t)(i * 37 + y * 11 + x * 3 + 5); }

/* The small IDX pair: NI images of RI x CI, labels i % 10 (+ 3 for variety). */
static size_t td_idx_images(uint8_t *b)
{
    td_be32(b, 0x803), td_be32(b + 4, NI), td_be32(b + 8, RI), td_be32(b + 12, CI);
    for (int i = 0; i < NI; i++)
        for (int y = 0; y < RI; y++)
            for (int x = 0; x < CI; x++) b[16 + (i * RI + y) * CI + x] = td_pixel(i, y, x);
    return 16 + NI * RI * CI;
}

static size_t td_idx_labels(uint8_t *b)
{
    td_be32(b, 0x801), td_be32(b + 4, NI);
    for (int i = 0; i < NI; i++) b[8 + i] = (uint8_t)((i + 3) % 10);
    return 8 + NI;
}

static void td_check_idx(const wg_dataset *ds, int64_t n)
{
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->h, RI), assert_int_equal(ds->w, CI), assert_int_equal(ds->c, 1);
    assert_int_equal(ds->num_classes, 10);
    for (int i = 0; i < n; i++) {
        TR_EXPECT_I64((i + 3) % 10, ds->labels[i], "label %d", i);
        for (int y = 0; y < RI; y++)
            for (int x = 0; x < CI; x++)
                TR_EXPECT_I64(td_pixel(i, y, x), ds->images[(i * RI + y) * CI + x], "image %d (%d, %d)", i, y, x);
    }
}

/* The group's state: the mkdtemp directory (under $TMPDIR, else /tmp). */
static int td_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    char *dir = malloc(300);
    snprintf(dir, 300, "%.200s/wg_test_data.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    *state = dir;
    return mkdtemp(dir) ? 0 : -1;
}

static int td_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int td_teardown(void **state)
{
    nftw(*state, td_rm, 8, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

/* ---- IDX ---------------------------------------------------------------------- */

static void test_idx_parse(void **state)
{
    const char *s = *state;
    uint8_t bi[1024], bl[64];
    size_t ni = td_idx_images(bi), nl = td_idx_labels(bl);
    char pi[512], pl[512], qi[512], ql[512];
    td_path(pi, s, "p-images.gz"), td_path(pl, s, "p-labels.gz");
    td_path(qi, s, "p-images"), td_path(ql, s, "p-labels");
    td_write(pi, bi, ni, true), td_write(pl, bl, nl, true), td_write(qi, bi, ni, false), td_write(ql, bl, nl, false);
    char err[1024] = "";
    const char *pairs[3][2] = {{pi, pl}, {qi, ql}, {qi, pl}}; /* gzip, plain, mixed */
    for (int k = 0; k < 3; k++) {
        wg_dataset ds;
        TR_FAIL_IF(!wg_idx_read(pairs[k][0], pairs[k][1], 0, &ds, err, sizeof(err)), "pair %d: %s", k, err);
        td_check_idx(&ds, NI);
        wg_dataset_free(&ds);
        assert_null(ds.images);
        wg_dataset_free(&ds); /* twice is fine */
    }
    for (int limit = 1; limit <= NI + 3; limit++) { /* limit: only the first N */
        wg_dataset ds;
        TR_FAIL_IF(!wg_idx_read(pi, pl, limit, &ds, err, sizeof(err)), "limit %d: %s", limit, err);
        td_check_idx(&ds, limit < NI ? limit : NI);
        wg_dataset_free(&ds);
    }
}

typedef struct td_idx_case {
    const char *what;
    int which;          /* file the message must name: 0 images, 1 labels */
    const char *expect; /* substring of the message, after "offset " */
} td_idx_case;

/* Apply error case k to the image and label bytes. */
static void td_idx_corrupt(int k, uint8_t *bi, size_t *ni, uint8_t *bl, size_t *nl)
{
    switch (k) {
    case 0: td_be32(bi, 0x801); break;                   /* image magic */
    case 1: td_be32(bl, 0x803); break;                   /* label magic */
    case 2: td_be32(bi + 8, 0); break;                   /* rows */
    case 3: td_be32(bi + 12, 5000); break;               /* columns */
    case 4: td_be32(bl + 4, NI - 1), (*nl)--; break;     /* count mismatch */
    case 5: bl[8 + 4] = 10; break;                       /* label out of range */
    case 6: *ni = 16 + 5 * RI * CI + 2; break;           /* truncated images */
    case 7: *nl = 8 + 5; break;                          /* truncated labels */
    case 8: *ni = 10; break;                             /* truncated header */
    case 9: bi[(*ni)++] = 0; break;                      /* trailing byte */
    case 10: td_be32(bi + 4, 0), td_be32(bl + 4, 0), *ni = 16, *nl = 8; break; /* empty */
    case 11: td_be32(bi + 4, 0xffffffffu), td_be32(bi + 8, 4096), td_be32(bi + 12, 4096); break; /* 2^56 bytes promised */
    default: break;
    }
}

static void test_idx_errors(void **state)
{
    const char *s = *state;
    static const char trunc_img[] = "%d: file ends after 5 of 7 images (2 bytes into image 5)";
    const td_idx_case cases[] = {
        {"image magic", 0, "0: magic number 0x00000801; expected 0x00000803"},
        {"label magic", 1, "0: magic number 0x00000803; expected 0x00000801"},
        {"rows", 0, "8: rows 0; expected 1..4096"},
        {"columns", 0, "12: columns 5000; expected 1..4096"},
        {"count mismatch", 1, "4: 6 labels, but"},
        {"label range", 1, "12: label 10 of image 4; expected 0..9"},
        {"truncated images", 0, trunc_img},
        {"truncated labels", 1, "13: file ends after 5 of 7 labels"},
        {"truncated header", 0, "10: file ends inside the 16-byte IDX header"},
        {"trailing data", 0, "121: data continues after the last of 7 images"},
        {"empty", 0, "4: count 0; expected at least one item"},
        /* memory follows the data, not the header (found by tests/fuzz/fuzz_idx.c) */
        {"huge count", 0, "121: file ends after 0 of 4294967295 images (105 bytes into image 0)"},
    };
    char err[1024];
    for (int gz = 0; gz < 2; gz++)
        for (int k = 0; k < (int)(sizeof(cases) / sizeof(cases[0])); k++) {
            uint8_t bi[1024], bl[64];
            size_t ni = td_idx_images(bi), nl = td_idx_labels(bl);
            td_idx_corrupt(k, bi, &ni, bl, &nl);
            char pi[512], pl[512], name[64], want[600];
            snprintf(name, sizeof(name), "e%d-%d-images", k, gz), td_path(pi, s, name);
            snprintf(name, sizeof(name), "e%d-%d-labels", k, gz), td_path(pl, s, name);
            td_write(pi, bi, ni, gz), td_write(pl, bl, nl, gz);
            wg_dataset ds;
            memset(&ds, 0x5a, sizeof(ds));
            err[0] = 0;
            bool ok = wg_idx_read(pi, pl, 0, &ds, err, sizeof(err));
            TR_FAIL_IF(ok, "case %s (gz %d) was accepted", cases[k].what, gz);
            TR_FAIL_IF(ds.images || ds.labels || ds.n, "case %s: the dataset is not left empty", cases[k].what);
            snprintf(want, sizeof(want), "%s: %soffset ", cases[k].which ? pl : pi, gz ? "decompressed " : "");
            size_t wl = strlen(want);
            snprintf(want + wl, sizeof(want) - wl, cases[k].expect, 16 + 5 * RI * CI + 2);
            TR_FAIL_IF(!strstr(err, want), "case %s (gz %d): message\n  %s\nlacks\n  %s", cases[k].what, gz, err, want);
        }
    /* a missing file, a gzip stream cut short, a damaged gzip checksum */
    char pi[512], pl[512], missing[512];
    td_path(missing, s, "no-such-images.gz");
    td_path(pl, s, "e0-1-labels");
    assert_false(wg_idx_read(missing, pl, 0, &(wg_dataset){0}, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, missing) || !strstr(err, "cannot open: No such file"), "missing: %s", err);
    uint8_t bi[1024], gzb[2048];
    size_t ni = td_idx_images(bi);
    td_path(pi, s, "ok-images.gz"), td_write(pi, bi, ni, true);
    FILE *f = fopen(pi, "rb");
    size_t gzn = fread(gzb, 1, sizeof(gzb), f);
    fclose(f);
    td_path(pl, s, "p-labels.gz");
    td_path(pi, s, "cut-images.gz"), td_write(pi, gzb, gzn / 2, false);
    assert_false(wg_idx_read(pi, pl, 0, &(wg_dataset){0}, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, pi) || !strstr(err, "file ends"), "cut gzip: %s", err);
    gzb[gzn - 6] ^= 0x55; /* the CRC-32 of the trailer */
    td_path(pi, s, "crc-images.gz"), td_write(pi, gzb, gzn, false);
    assert_false(wg_idx_read(pi, pl, 0, &(wg_dataset){0}, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, pi) || !strstr(err, "damaged gzip data"), "bad crc: %s", err);
}

static void test_load_idx(void **state)
{
    const char *s = *state;
    uint8_t bi[1024], bl[64];
    size_t ni = td_idx_images(bi), nl = td_idx_labels(bl);
    char p[600], root[512], err[2048];
    snprintf(root, sizeof(root), "%s/idxroot", s);
    assert_int_equal(mkdir(root, 0700), 0);
    wg_dataset tr, te;
    assert_false(wg_dataset_load(root, "idx", 0, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "idxroot/train-images-idx3-ubyte.gz: cannot open") || !strstr(err, "dataset-fashion-mnist"),
               "empty root: %s", err);
    snprintf(p, sizeof(p), "%s/train-images-idx3-ubyte.gz", root), td_write(p, bi, ni, true);
    snprintf(p, sizeof(p), "%s/train-labels-idx1-ubyte.gz", root), td_write(p, bl, nl, true);
    snprintf(p, sizeof(p), "%s/t10k-images-idx3-ubyte", root), td_write(p, bi, ni, false); /* plain, no .gz */
    snprintf(p, sizeof(p), "%s/t10k-labels-idx1-ubyte", root), td_write(p, bl, nl, false);
    TR_FAIL_IF(!wg_dataset_load(root, "idx", 0, 4, &tr, &te, err, sizeof(err)), "%s", err);
    td_check_idx(&tr, NI), td_check_idx(&te, 4);
    assert_string_equal(tr.norm.name, "fashion-mnist");
    assert_int_equal(tr.norm.exp, -5), assert_int_equal(te.norm.exp, -5);
    TR_FAIL_IF(!strstr(tr.name, "idxroot (train)") || !strstr(te.name, "idxroot (test)"), "%s / %s", tr.name, te.name);
    TR_FAIL_IF(!wg_dataset_set_norm(&tr, "mnist", err, sizeof(err)), "%s", err);
    assert_true(tr.norm.mean[0] == 0.1307 && tr.norm.exp == -5);
    assert_false(wg_dataset_set_norm(&tr, "cifar10", err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "3-channel") || !strstr(err, "1 channels"), "%s", err);
    assert_false(wg_dataset_set_norm(&tr, "imagenet", err, sizeof(err))); /* a preset of colour images */
    TR_FAIL_IF(!strstr(err, "3-channel"), "%s", err);
    assert_false(wg_dataset_set_norm(&tr, "svhn", err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "\"svhn\": unknown"), "%s", err);
    wg_dataset_free(&tr), wg_dataset_free(&te);
    assert_false(wg_dataset_load(root, "png", 0, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "data.format = \"png\"; expected idx or cifar"), "%s", err);
    assert_false(wg_dataset_load(root, "idx", -1, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "data.limit_train = -1"), "%s", err);
}

/* ---- CIFAR ------------------------------------------------------------------------ */

static uint8_t td_cpix(int file, int r, int ch, int y, int x)
{
    return (uint8_t)(file * 71 + r * 29 + ch * 101 + y * 7 + x * 13);
}

static void td_cifar_file(const char *path, int file, int records, int bad_label_at, size_t cut)
{
    size_t len = (size_t)records * 3073;
    uint8_t *b = malloc(len);
    for (int r = 0; r < records; r++) {
        uint8_t *rec = b + (size_t)r * 3073;
        rec[0] = r == bad_label_at ? 10 : (uint8_t)((file + r) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) rec[1 + ch * 1024 + y * 32 + x] = td_cpix(file, r, ch, y, x);
    }
    td_write(path, b, len - cut, false);
    free(b);
}

static void test_cifar(void **state)
{
    const char *s = *state;
    static const int recs[6] = {2, 3, 1, 2, 2, 3}; /* data_batch_1..5, test_batch */
    char root[512], dir[600], p[700], err[2048];
    snprintf(root, sizeof(root), "%s/cifar", s);
    snprintf(dir, sizeof(dir), "%s/cifar-10-batches-bin", root); /* the layout of the tarball */
    assert_int_equal(mkdir(root, 0700), 0), assert_int_equal(mkdir(dir, 0700), 0);
    for (int f = 0; f < 6; f++) {
        if (f < 5) snprintf(p, sizeof(p), "%s/data_batch_%d.bin", dir, f + 1);
        else snprintf(p, sizeof(p), "%s/test_batch.bin", dir);
        td_cifar_file(p, f, recs[f], -1, 0);
    }
    for (int limit = 0; limit <= 11; limit += 4) {
        wg_dataset tr, te;
        TR_FAIL_IF(!wg_dataset_load(root, "cifar", limit, 0, &tr, &te, err, sizeof(err)), "%s", err);
        assert_int_equal(tr.n, limit == 0 || limit > 10 ? 10 : limit), assert_int_equal(te.n, 3);
        assert_int_equal(tr.h, 32), assert_int_equal(tr.w, 32), assert_int_equal(tr.c, 3);
        assert_int_equal(tr.norm.exp, -5), assert_string_equal(te.norm.name, "cifar10");
        for (int k = 0, f = 0, r = 0; k < tr.n + te.n; k++, r++) {
            if (k == tr.n) f = 5, r = 0;
            while (f < 5 && r == recs[f]) f++, r = 0;
            const wg_dataset *ds = k < tr.n ? &tr : &te;
            int64_t i = k < tr.n ? k : k - tr.n;
            TR_EXPECT_I64((f + r) % 10, ds->labels[i], "label of file %d record %d", f, r);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    for (int ch = 0; ch < 3; ch++)
                        TR_EXPECT_I64(td_cpix(f, r, ch, y, x), ds->images[((i * 32 + y) * 32 + x) * 3 + ch],
                                      "file %d record %d (%d, %d, %d)", f, r, y, x, ch);
        }
        wg_dataset_free(&tr), wg_dataset_free(&te);
    }
    /* errors: a cut record, a label out of range, a missing file */
    wg_dataset tr, te;
    snprintf(p, sizeof(p), "%s/data_batch_2.bin", dir), td_cifar_file(p, 1, 3, -1, 100);
    assert_false(wg_dataset_load(root, "cifar", 0, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, p) || !strstr(err, "offset 9119: file ends 2973 bytes into record 2"), "%s", err);
    td_cifar_file(p, 1, 3, 2, 0);
    assert_false(wg_dataset_load(root, "cifar", 0, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, p) || !strstr(err, "offset 6146: label 10 of record 2; expected 0..9"), "%s", err);
    assert_null(tr.images), assert_null(te.images);
    td_cifar_file(p, 1, 3, -1, 0);
    snprintf(p, sizeof(p), "%s/data_batch_4.bin", dir), remove(p);
    assert_false(wg_dataset_load(root, "cifar", 0, 0, &tr, &te, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, p) || !strstr(err, "cannot open"), "%s", err);
    TR_FAIL_IF(!wg_dataset_load(root, "cifar", 5, 0, &tr, &te, err, sizeof(err)), "limit 5 needs batches 1-2: %s", err);
    wg_dataset_free(&tr), wg_dataset_free(&te);
}

/* ---- validation split ------------------------------------------------------------ */

static void td_fake(wg_dataset *ds, int64_t n, int h, int w, int c, const char *preset, uint64_t seed)
{
    memset(ds, 0, sizeof(*ds));
    ds->n = n, ds->h = h, ds->w = w, ds->c = c, ds->num_classes = 10;
    snprintf(ds->name, sizeof(ds->name), "fake");
    ds->images = malloc((size_t)(n * h * w * c));
    ds->labels = malloc((size_t)n);
    tr_rng r = {seed};
    for (int64_t i = 0; i < n * h * w * c; i++) ds->images[i] = (uint8_t)tr_next(&r);
    for (int64_t i = 0; i < n; i++) ds->labels[i] = (uint8_t)(tr_next(&r) % 10);
    char err[256];
    TR_FAIL_IF(!wg_dataset_set_norm(ds, preset, err, sizeof(err)), "%s", err);
}

static void test_split_val(void **state)
{
    (void)state;
    wg_dataset tr, va, ref;
    td_fake(&tr, 9, 4, 3, 3, "cifar10", 1), td_fake(&ref, 9, 4, 3, 3, "cifar10", 1);
    char err[1024];
    assert_false(wg_dataset_split_val(&tr, 9, &va, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "fake: data.val_split = 9; expected 0 <= val_split < 9"), "%s", err);
    assert_false(wg_dataset_split_val(&tr, -1, &va, err, sizeof(err)));
    TR_FAIL_IF(!wg_dataset_split_val(&tr, 3, &va, err, sizeof(err)), "%s", err);
    assert_int_equal(tr.n, 6), assert_int_equal(va.n, 3), assert_int_equal(va.norm.exp, tr.norm.exp);
    assert_string_equal(va.name, "fake (validation)");
    assert_memory_equal(tr.images, ref.images, 6 * 36), assert_memory_equal(tr.labels, ref.labels, 6);
    assert_memory_equal(va.images, ref.images + 6 * 36, 3 * 36), assert_memory_equal(va.labels, ref.labels + 6, 3);
    wg_dataset_free(&va);
    TR_FAIL_IF(!wg_dataset_split_val(&tr, 0, &va, err, sizeof(err)), "%s", err);
    assert_int_equal(tr.n, 6), assert_int_equal(va.n, 0);
    wg_dataset_free(&va), wg_dataset_free(&tr), wg_dataset_free(&ref);
}

/* ---- epoch order and augmentation draws ------------------------------------------------ */

/* The documented bounded draw, in 128-bit arithmetic with '/' and '%'. */
static uint32_t ref_bounded(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t stream, uint32_t c3, uint32_t range)
{
    wg_philox_key key = {{(uint32_t)(seed % 4294967296u), (uint32_t)(seed / 4294967296u)}};
    u128 two32 = (u128)1 << 32;
    u128 threshold = two32 % range;
    for (uint32_t round = 0;; round++) {
        wg_u32x4 r = wg_philox4x32_10((wg_u32x4){{c0, c1 + round, stream, c3}}, key);
        for (int k = 0; k < 4; k++) {
            u128 m = (u128)r.v[k] * range;
            if (m % two32 >= threshold) return (uint32_t)(m / two32);
        }
    }
}

static void test_epoch_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t a[N], b[N], ref[N];
    uint8_t seen[N];
    for (uint32_t epoch = 0; epoch < 3; epoch++) {
        wg_data_epoch_order(N, 42, epoch, a);
        memset(seen, 0, sizeof(seen));
        for (int i = 0; i < N; i++) {
            TR_FAIL_IF(a[i] < 0 || a[i] >= N || seen[a[i]], "epoch %u: not a permutation at %d", epoch, i);
            seen[a[i]] = 1;
            ref[i] = i;
        }
        for (int i = N - 1; i >= 1; i--) { /* the documented Fisher-Yates */
            uint32_t j = ref_bounded(42, (uint32_t)i, 0, WG_DATA_STREAM_SHUFFLE, epoch, (uint32_t)i + 1);
            int64_t t = ref[i];
            ref[i] = ref[j], ref[j] = t;
        }
        assert_memory_equal(a, ref, sizeof(a));
        wg_data_epoch_order(N, 42, epoch, b);
        assert_memory_equal(a, b, sizeof(a)); /* deterministic */
        wg_data_epoch_order(N, 42, epoch + 1, b);
        assert_memory_not_equal(a, b, sizeof(a)); /* epochs differ */
        wg_data_epoch_order(N, 43, epoch, b);
        assert_memory_not_equal(a, b, sizeof(a)); /* seeds differ */
    }
    wg_data_epoch_order(0, 1, 0, a), wg_data_epoch_order(1, 1, 0, a);
    assert_int_equal(a[0], 0);
    /* Uniformity: the position of element 0 among 10, over 20000 seeds, and all 6
     * orders of 3. Chi-square bounds at p ~ 1e-6: 45 for 9 d.o.f., 36 for 5. */
    enum { T = 20000 };
    int64_t pos[10] = {0}, perm[6] = {0};
    for (uint64_t sd = 0; sd < T; sd++) {
        wg_data_epoch_order(10, sd * 7919 + 1, (uint32_t)sd % 5, a);
        for (int i = 0; i < 10; i++) pos[i] += a[i] == 0;
        wg_data_epoch_order(3, sd, 0, b);
        perm[b[0] * 2 + (b[1] > b[2])]++;
    }
    double chi = 0, chi3 = 0;
    for (int i = 0; i < 10; i++) chi += (pos[i] - T / 10.0) * (pos[i] - T / 10.0) / (T / 10.0);
    for (int i = 0; i < 6; i++) chi3 += (perm[i] - T / 6.0) * (perm[i] - T / 6.0) / (T / 6.0);
    TR_FAIL_IF(chi > 45 || chi3 > 36, "chi-square %.1f (position of 0), %.1f (orders of 3)", chi, chi3);
}

static void test_aug_draw(void **state)
{
    (void)state;
    enum { T = 30000, P = 4 };
    int64_t flips = 0, hy[2 * P + 1] = {0}, hx[2 * P + 1] = {0};
    for (int64_t i = 0; i < T; i++) {
        uint32_t epoch = (uint32_t)(i % 3);
        wg_aug_params p = wg_data_aug_draw((wg_augment){true, P}, 99, epoch, i);
        const uint32_t st = WG_DATA_STREAM_AUGMENT, si = (uint32_t)i; /* purpose * 2^24: 0 flip, 1 row, 2 column */
        TR_EXPECT_I64(ref_bounded(99, si, 0u << 24, st, epoch, 2), p.flip, "flip %d", (int)i);
        TR_EXPECT_I64(ref_bounded(99, si, 1u << 24, st, epoch, 2 * P + 1), p.oy, "oy %d", (int)i);
        TR_EXPECT_I64(ref_bounded(99, si, 2u << 24, st, epoch, 2 * P + 1), p.ox, "ox %d", (int)i);
        flips += p.flip, hy[p.oy]++, hx[p.ox]++;
        wg_aug_params q = wg_data_aug_draw((wg_augment){false, P}, 99, epoch, i); /* options draw independently */
        TR_FAIL_IF(q.flip || q.oy != p.oy || q.ox != p.ox, "sample %d: no-flip draw differs", (int)i);
        q = wg_data_aug_draw(WG_AUGMENT_NONE, 99, epoch, i);
        TR_FAIL_IF(q.flip || q.oy || q.ox, "sample %d: WG_AUGMENT_NONE draws", (int)i);
    }
    TR_FAIL_IF(fabs(flips - T / 2.0) > 5 * sqrt(T / 4.0), "flips %lld of %d", (long long)flips, T); /* 5 sigma */
    double cy = 0, cx = 0, e = T / (2.0 * P + 1);
    for (int k = 0; k <= 2 * P; k++) cy += (hy[k] - e) * (hy[k] - e) / e, cx += (hx[k] - e) * (hx[k] - e) / e;
    TR_FAIL_IF(cy > 40 || cx > 40, "crop offsets: chi-square %.1f, %.1f (8 d.o.f.)", cy, cx);
}

/* ---- normalization and batches ---------------------------------------------------------- */

/* nm against the formula in long double: the exponent rule and every table entry.
 * near_tie: the smallest distance of a scaled value from a tie, for the caller. */
static void td_check_norm(const wg_norm *nm, int c, const long double *mean, const long double *std,
                          long double *near_tie)
{
    int e = -7; /* the exponent rule */
    for (bool fits = false; !fits; e += !fits) {
        fits = true;
        for (int ch = 0; ch < c; ch++)
            for (int v = 0; v < 256; v++)
                fits = fits && fabsl(rintl(ldexpl(((long double)v / 255 - mean[ch]) / std[ch], -e))) <= 127;
    }
    TR_EXPECT_I64(e, nm->exp, "%s exponent", nm->name);
    *near_tie = 1;
    for (int ch = 0; ch < c; ch++)
        for (int v = 0; v < 256; v++) {
            long double x = ((long double)v / 255 - mean[ch]) / std[ch], sx = ldexpl(x, -e);
            TR_EXPECT_I64((int64_t)rintl(sx), nm->q[ch][v], "%s c%d v%d", nm->name, ch, v);
            long double tie = fabsl(sx - floorl(sx) - 0.5L);
            *near_tie = tie < *near_tie ? tie : *near_tie;
            /* float path: the same value, rounded once to float (named tolerance: 1 ulp) */
            TR_FAIL_IF(fabsl(nm->f[ch][v] - x) > ldexpl(fabsl(x), -23) + 1e-30L, "%s float c%d v%d: %.9g vs %.12Lg",
                       nm->name, ch, v, nm->f[ch][v], x);
        }
}

static void test_norm_tables(void **state)
{
    (void)state;
    static const struct { const char *name; int c; long double mean[3], std[3]; } pre[] = {
        {"fashion-mnist", 1, {0.2860L}, {0.3530L}},
        {"mnist", 1, {0.1307L}, {0.3081L}},
        {"cifar10", 3, {0.4914L, 0.4822L, 0.4465L}, {0.2470L, 0.2435L, 0.2616L}},
    };
    char err[256];
    long double near;
    wg_norm nm;
    for (int k = 0; k < 3; k++) {
        TR_FAIL_IF(!wg_norm_init(&nm, pre[k].name, pre[k].c, err, sizeof(err)), "%s", err);
        td_check_norm(&nm, pre[k].c, pre[k].mean, pre[k].std, &near);
        TR_EXPECT_I64(-5, nm.exp, "%s exponent (documented)", pre[k].name);
        /* documented: no preset value is near a tie, so double evaluation is exact */
        TR_FAIL_IF(near < 1e-7L, "%s: a value %.3Lg from a tie", pre[k].name, near);
    }
    /* Custom constants: exact ties (mean 3/256: v = 0 gives -1.5 -> -2, v = 255 gives
     * 126.5 -> 126), an exponent above -5, and one at the floor -7. */
    static const double cm[3][1] = {{3.0 / 256}, {0.5}, {0.5}}, cs[3][1] = {{1.0}, {0.01}, {100.0}};
    static const int ce[3] = {-7, -1, -7};
    for (int k = 0; k < 3; k++) {
        TR_FAIL_IF(!wg_norm_init_values(&nm, "custom", 1, cm[k], cs[k], err, sizeof(err)), "%s", err);
        long double lm = cm[k][0], ls = cs[k][0];
        td_check_norm(&nm, 1, &lm, &ls, &near);
        TR_EXPECT_I64(ce[k], nm.exp, "custom %d exponent", k);
    }
    TR_FAIL_IF(!wg_norm_init_values(&nm, "custom", 1, cm[0], cs[0], err, sizeof(err)), "%s", err);
    TR_FAIL_IF(nm.q[0][0] != -2 || nm.q[0][255] != 126, "ties: %d, %d", nm.q[0][0], nm.q[0][255]);
    assert_false(wg_norm_init_values(&nm, "bad", 1, cm[0], (double[]){0.0}, err, sizeof(err)));
    TR_FAIL_IF(!strstr(err, "\"bad\": channel 0 mean 0.0117188, std 0"), "%s", err);
    assert_false(wg_norm_init(&nm, "cifar10", 1, err, sizeof(err)));
}

/* Reference geometry: pad explicitly (marking pad pixels -1), crop, then flip. */
static int td_ref_pixel(const wg_dataset *ds, int64_t i, wg_aug_params p, int pad, int y, int x, int ch)
{
    int ph = ds->h + 2 * pad, pw = ds->w + 2 * pad;
    int *padded = malloc(sizeof(int) * (size_t)(ph * pw));
    for (int yy = 0; yy < ph; yy++)
        for (int xx = 0; xx < pw; xx++) {
            int sy = yy - pad, sx = xx - pad;
            padded[yy * pw + xx] = sy < 0 || sy >= ds->h || sx < 0 || sx >= ds->w
                                       ? -1 : ds->images[((i * ds->h + sy) * ds->w + sx) * ds->c + ch];
        }
    int cx = p.flip ? ds->w - 1 - x : x; /* crop column before the flip */
    int v = padded[(y + p.oy) * pw + cx + p.ox];
    free(padded);
    return v;
}

static void test_batch_geometry(void **state)
{
    (void)state;
    const int shapes[3][3] = {{5, 7, 3}, {6, 4, 1}, {3, 3, 1}};
    const wg_augment augs[4] = {WG_AUGMENT_NONE, {true, 0}, {false, 2}, {true, 4}}; /* pad 4 > 3x3 images */
    for (int s = 0; s < 3; s++) {
        int h = shapes[s][0], w = shapes[s][1], c = shapes[s][2];
        wg_dataset ds;
        td_fake(&ds, 6, h, w, c, c == 3 ? "cifar10" : "mnist", (uint64_t)s + 7);
        int64_t idx[8] = {3, 0, 5, 5, 1, 2, 4, 0};
        int8_t *o8 = malloc((size_t)(8 * h * w * c));
        float *of = malloc(sizeof(float) * (size_t)(8 * h * w * c));
        for (int a = 0; a < 4; a++)
            for (uint32_t epoch = 0; epoch < 3; epoch++) {
                int e = 99;
                wg_data_batch_int8(&ds, idx, 8, augs[a], 5, epoch, o8, &e);
                wg_data_batch_f32(&ds, idx, 8, augs[a], 5, epoch, of);
                assert_int_equal(e, ds.norm.exp);
                for (int b = 0; b < 8; b++) {
                    wg_aug_params p = wg_data_aug_draw(augs[a], 5, epoch, idx[b]);
                    for (int o = 0; o < h * w * c; o++) {
                        int y = o / (w * c), x = o / c % w, ch = o % c;
                        int v = td_ref_pixel(&ds, idx[b], p, augs[a].pad, y, x, ch);
                        const int8_t q = o8[b * h * w * c + o];
                        TR_EXPECT_I64(v < 0 ? 0 : ds.norm.q[ch][v], q, "shape %d aug %d epoch %u b %d (%d,%d,%d)", s,
                                      a, epoch, b, y, x, ch);
                        TR_FAIL_IF(of[b * h * w * c + o] != (v < 0 ? 0.0f : ds.norm.f[ch][v]), "float %d %d", s, a);
                        if (a == 0) TR_EXPECT_I64(ds.images[idx[b] * h * w * c + o], v, "identity %d", b);
                    }
                }
            }
        uint8_t lab[8];
        wg_data_batch_labels(&ds, idx, 8, lab);
        for (int b = 0; b < 8; b++) assert_int_equal(lab[b], ds.labels[idx[b]]);
        free(o8), free(of), wg_dataset_free(&ds);
    }
}

/* A sample's augmented pixels depend on (seed, epoch, sample) only, not on the batch. */
static void test_batch_order_independence(void **state)
{
    (void)state;
    enum { H = 8, W = 8, C = 3, S = H * W * C, B = 12 };
    wg_dataset ds;
    td_fake(&ds, 40, H, W, C, "cifar10", 3);
    const wg_augment aug = {true, 3};
    int64_t one[B], other[B];
    for (int i = 0; i < B; i++) one[i] = 3 * i + 1;
    for (int i = 0; i < B; i++) other[i] = one[(i * 5 + 7) % B]; /* the same samples, reordered */
    int8_t a[B * S], b[B * S], c[S];
    int e;
    for (uint32_t epoch = 0; epoch < 4; epoch++) {
        wg_data_batch_int8(&ds, one, B, aug, 77, epoch, a, &e);
        wg_data_batch_int8(&ds, other, B, aug, 77, epoch, b, &e);
        for (int i = 0; i < B; i++) {
            int j = (i * 5 + 7) % B;
            assert_memory_equal(b + i * S, a + j * S, S);
            wg_data_batch_int8(&ds, &one[j], 1, aug, 77, epoch, c, &e); /* alone */
            assert_memory_equal(c, a + j * S, S);
        }
        wg_data_batch_int8(&ds, one, B, aug, 77, epoch + 1, b, &e);
        assert_memory_not_equal(a, b, sizeof(a)); /* epochs augment differently */
    }
    wg_dataset_free(&ds);
}

/* ---- the real Fashion-MNIST ------------------------------------------------------------ */

static void test_fashion_mnist(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof(p), "%s/train-images-idx3-ubyte.gz", FASHION_DIR);
    if (access(p, R_OK) != 0) {
        print_message("%s not found (Debian package dataset-fashion-mnist): skipped\n", p);
        skip();
    }
    wg_dataset tr, te;
    char err[1024];
    TR_FAIL_IF(!wg_dataset_load(FASHION_DIR, "idx", 0, 0, &tr, &te, err, sizeof(err)), "%s", err);
    assert_int_equal(tr.n, 60000), assert_int_equal(te.n, 10000);
    assert_int_equal(tr.h, 28), assert_int_equal(tr.w, 28), assert_int_equal(tr.c, 1);
    assert_int_equal(te.h, 28), assert_int_equal(te.w, 28), assert_int_equal(tr.norm.exp, -5);
    int64_t htr[10] = {0}, hte[10] = {0};
    for (int64_t i = 0; i < tr.n; i++) htr[tr.labels[i]]++;
    for (int64_t i = 0; i < te.n; i++) hte[te.labels[i]]++;
    for (int k = 0; k < 10; k++) {
        TR_EXPECT_I64(6000, htr[k], "train class %d", k);
        TR_EXPECT_I64(1000, hte[k], "test class %d", k);
    }
    wg_dataset_free(&tr), wg_dataset_free(&te);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_parse),     cmocka_unit_test(test_idx_errors),
        cmocka_unit_test(test_load_idx),      cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_split_val),     cmocka_unit_test(test_epoch_order),
        cmocka_unit_test(test_aug_draw),      cmocka_unit_test(test_norm_tables),
        cmocka_unit_test(test_batch_geometry), cmocka_unit_test(test_batch_order_independence),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, td_setup, td_teardown);
}
