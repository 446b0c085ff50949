/* bench_loader.c: the ImageNet pipeline's speed (loader.h): decoded and augmented
 * training images per second at 224 x 224 (random-resized crop, flip), with 1 and 2
 * worker threads, on JPEGs of ImageNet's typical size (500 x 375, quality 90) that it
 * writes into DIR first (DIR/train/c0 .. c3, kept for bench/loader_torch.py, which
 * times torchvision on the same files: bench/loader.sh runs both).
 *
 *   bench_loader DIR [IMAGES (default 256)] [RUNS (default 5)]
 *
 * Each run loads one epoch of the images in batches of 32; the median of the runs. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_util.h"
#include "imageset.h"
#include "jpeg.h"
#include "loader.h"

/* A photo-like test image: gradients, a pattern and noise. */
static void fill(uint8_t *p, int w, int h, unsigned seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            seed = seed * 1103515245u + 12345u;
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            int red = 255 * x / w + ((int)(seed >> 27) - 16) / 2; /* a gradient with noise */
            q[0] = (uint8_t)(red < 0 ? 0 : red > 255 ? 255 : red);
            q[1] = (uint8_t)(255 * y / h);
            q[2] = (uint8_t)(128 + 100 * (((x / 24 + y / 24) & 1) ? 1 : -1) * ((x % 24) * (y % 24)) / 576);
        }
}

static void make_dataset(const char *dir, int images)
{
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/train", dir);
    mkdir(dir, 0755);
    mkdir(path, 0755);
    wg_jpeg *j = wg_jpeg_new();
    uint8_t *px = malloc(500 * 375 * 3);
    for (int i = 0; i < images; i++) {
        snprintf(path, sizeof(path), "%s/train/c%d", dir, i % 4);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/train/c%d/img%05d.JPEG", dir, i % 4, i);
        struct stat st;
        if (stat(path, &st) == 0) continue;
        fill(px, 500, 375, (unsigned)i);
        uint8_t *jpg;
        size_t len;
        if (!wg_jpeg_encode(j, px, 500, 375, 3, 90, &jpg, &len, err, sizeof(err))) {
            fprintf(stderr, "bench_loader: %s\n", err);
            exit(1);
        }
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(jpg, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "bench_loader: cannot write %s\n", path);
            exit(1);
        }
        free(jpg);
    }
    free(px);
    wg_jpeg_free(j);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_loader DIR [IMAGES] [RUNS]\n");
        return 2;
    }
    int images = argc > 2 ? atoi(argv[2]) : 256, runs = argc > 3 ? atoi(argv[3]) : 5;
    if (images < 32 || runs < 1 || runs > 64) {
        fprintf(stderr, "bench_loader: at least 32 images and 1 to 64 runs\n");
        return 2;
    }
    make_dataset(argv[1], images);
    char dir[1024], err[1024];
    snprintf(dir, sizeof(dir), "%s/train", argv[1]);
    wg_imageset s;
    if (!wg_imageset_folder(dir, &s, err, sizeof(err))) {
        fprintf(stderr, "bench_loader: %s\n", err);
        return 1;
    }
    int64_t *order = malloc((size_t)s.n * sizeof *order);
    for (int64_t i = 0; i < s.n; i++) order[i] = i;
    printf("bench_loader: %lld JPEGs of 500 x 375 (q90) -> 224 x 224 random-resized crops with flips\n",
           (long long)s.n);
    for (int workers = 1; workers <= 2; workers++) {
        double t[64];
        for (int r = 0; r < runs; r++) {
            wg_loader_opts o = {.set = &s, .crop = wg_crop_opts_reference(), .train = true, .seed = 1,
                                .workers = workers, .batch = 32, .ring = 2, .rank = 0, .ranks = 1};
            double t0 = now_s();
            wg_loader *l = wg_loader_start(&o, order, s.n, (uint32_t)r);
            const void *px;
            const int32_t *lab;
            int64_t n;
            for (int64_t b = 0; b * 32 < s.n; b++)
                if (!wg_loader_next(l, &px, &lab, &n, err, sizeof(err))) {
                    fprintf(stderr, "bench_loader: %s\n", err);
                    return 1;
                }
            wg_loader_stop(l);
            t[r] = now_s() - t0;
        }
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        double ips = (double)s.n / t[runs / 2];
        printf("%d worker%s: %.0f images/s (%.0f per worker), median of %d\n", workers, workers > 1 ? "s" : "", ips,
               ips / workers, runs);
        printf("result loader_%dw_img_per_s %.1f\n", workers, ips);
    }
    free(order);
    wg_imageset_free(&s);
    return 0;
}
