/* jpeg.c: JPEG decoding and encoding with TurboJPEG (see jpeg.h). */
#include "jpeg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "check.h"

struct wg_jpeg {
    tjhandle dec, enc;
};

wg_jpeg *wg_jpeg_new(void)
{
    wg_jpeg *j = calloc(1, sizeof(*j));
    WG_ASSERT(j != NULL, "out of memory%s", "");
    j->dec = tjInitDecompress();
    j->enc = tjInitCompress();
    WG_ASSERT(j->dec != NULL && j->enc != NULL, "TurboJPEG: cannot start a codec: %s", tjGetErrorStr2(NULL));
    return j;
}

void wg_jpeg_free(wg_jpeg *j)
{
    if (j == NULL) return;
    tjDestroy(j->dec);
    tjDestroy(j->enc);
    free(j);
}

static bool header(wg_jpeg *j, const uint8_t *buf, size_t len, const char *name, int *w, int *h, int *cs,
                   char *err, size_t errlen)
{
    int sub;
    if (len > (size_t)0xFFFFFFFFu || tjDecompressHeader3(j->dec, buf, (unsigned long)len, w, h, &sub, cs) != 0) {
        snprintf(err, errlen, "%s: not a JPEG file we can read (%s)", name,
                 len > 0xFFFFFFFFu ? "larger than 4 GiB" : tjGetErrorStr2(j->dec));
        return false;
    }
    if (*w <= 0 || *h <= 0) {
        snprintf(err, errlen, "%s: a JPEG of %d x %d pixels", name, *w, *h);
        return false;
    }
    return true;
}

bool wg_jpeg_size(wg_jpeg *j, const uint8_t *buf, size_t len, const char *name, int *w, int *h, char *err,
                  size_t errlen)
{
    int cs;
    return header(j, buf, len, name, w, h, &cs, err, errlen);
}

/* The smallest scaling factor at most 1 that keeps at least min_w x min_h. */
static tjscalingfactor pick_scale(int w, int h, int min_w, int min_h)
{
    int n = 0;
    tjscalingfactor *f = tjGetScalingFactors(&n), best = {1, 1};
    if (min_w <= 0 && min_h <= 0) return best; /* no minimum: the full size */
    for (int i = 0; f != NULL && i < n; i++) {
        if (f[i].num > f[i].denom) continue;
        int sw = TJSCALED(w, f[i]), sh = TJSCALED(h, f[i]);
        bool fits = sw >= min_w && sh >= min_h;
        bool smaller = (double)f[i].num / f[i].denom < (double)best.num / best.denom;
        if (fits && smaller) best = f[i];
    }
    return best;
}

bool wg_jpeg_decode(wg_jpeg *j, const uint8_t *buf, size_t len, const char *name, int min_w, int min_h,
                    uint8_t **rgb, int *w, int *h, char *err, size_t errlen)
{
    int fw, fh, cs;
    *rgb = NULL;
    if (!header(j, buf, len, name, &fw, &fh, &cs, err, errlen)) return false;
    tjscalingfactor s = pick_scale(fw, fh, min_w, min_h);
    int sw = TJSCALED(fw, s), sh = TJSCALED(fh, s);
    bool cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    int ch = cmyk ? 4 : 3;
    uint8_t *px = malloc((size_t)sw * (size_t)sh * (size_t)ch);
    if (px == NULL) {
        snprintf(err, errlen, "%s: out of memory for %d x %d pixels", name, sw, sh);
        return false;
    }
    if (tjDecompress2(j->dec, buf, (unsigned long)len, px, sw, 0, sh, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_STOPONWARNING) != 0) {
        snprintf(err, errlen, "%s: corrupt or truncated JPEG (%s)", name, tjGetErrorStr2(j->dec));
        free(px);
        return false;
    }
    if (cmyk) { /* in place: pixel i's RGB over the first 3/4 of the buffer */
        for (size_t i = 0; i < (size_t)sw * (size_t)sh; i++) {
            unsigned k = 255u - px[4 * i + 3];
            for (int c = 0; c < 3; c++) px[3 * i + c] = (uint8_t)(((255u - px[4 * i + c]) * k + 127u) / 255u);
        }
    }
    *rgb = px;
    *w = sw;
    *h = sh;
    return true;
}

bool wg_jpeg_encode(wg_jpeg *j, const uint8_t *pixels, int w, int h, int channels, int quality, uint8_t **jpeg,
                    size_t *len, char *err, size_t errlen)
{
    int pf = channels == 1 ? TJPF_GRAY : channels == 4 ? TJPF_CMYK : TJPF_RGB;
    int sub = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
    unsigned char *out = NULL;
    unsigned long n = 0;
    if (tjCompress2(j->enc, pixels, w, 0, h, pf, &out, &n, sub, quality, 0) != 0) {
        snprintf(err, errlen, "JPEG encoding of %d x %d pixels: %s", w, h, tjGetErrorStr2(j->enc));
        tjFree(out);
        return false;
    }
    *jpeg = malloc(n);
    WG_ASSERT(*jpeg != NULL, "out of memory for a JPEG of %lu bytes", n);
    memcpy(*jpeg, out, n);
    *len = n;
    tjFree(out);
    return true;
}
