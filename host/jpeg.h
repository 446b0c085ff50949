/* jpeg.h: JPEG files to RGB pixels, with libjpeg-turbo (TurboJPEG API; Debian
 * libturbojpeg0-dev), for the ImageNet input pipeline (loader.h).
 *
 * A decode may ask for at least min_w x min_h pixels: the JPEG is then decoded at the
 * smallest of libjpeg-turbo's DCT scaling factors (1/8, 1/4, 3/8, ... 1) that still
 * gives that many, which skips most of the inverse DCT work for an image much larger
 * than the crop it feeds (an ImageNet photo of 500 x 375 for a 224 x 224 crop of its
 * center at evaluation). Grayscale JPEGs come out as RGB with three equal channels;
 * CMYK and YCCK ones are decoded to CMYK and turned into RGB by the simple rule
 * R = (255 - C)(255 - K) / 255 (and G, B alike): no color management. Any warning of
 * the decoder (a truncated or corrupt file) is an error that names the file. */
#ifndef WG_JPEG_H
#define WG_JPEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_jpeg wg_jpeg; /* a decoder: one per thread */

wg_jpeg *wg_jpeg_new(void);
void wg_jpeg_free(wg_jpeg *j);

/* The image's full size, without decoding it. */
bool wg_jpeg_size(wg_jpeg *j, const uint8_t *buf, size_t len, const char *name, int *w, int *h, char *err,
                  size_t errlen);

/* Decode buf (name: for messages) into *rgb (malloc'd, [h][w][3], the caller frees),
 * scaled down by the smallest DCT factor that keeps at least min_w x min_h (0, 0: full
 * size); *w, *h: the decoded size. */
bool wg_jpeg_decode(wg_jpeg *j, const uint8_t *buf, size_t len, const char *name, int min_w, int min_h,
                    uint8_t **rgb, int *w, int *h, char *err, size_t errlen);

/* Encode rgb ([h][w][3], or [h][w] with channels = 1, or CMYK with channels = 4) at
 * `quality` (tests and benchmarks make their JPEGs with it). *jpeg: malloc'd. */
bool wg_jpeg_encode(wg_jpeg *j, const uint8_t *pixels, int w, int h, int channels, int quality, uint8_t **jpeg,
                    size_t *len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
