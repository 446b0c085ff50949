/* imageset.h: where the images of a large dataset are (ImageNet), read from disk as
 * they are needed (loader.h) rather than held in memory.
 *
 * Two layouts ([data] format):
 * - imagefolder: DIR/<class>/<image>, as torchvision's ImageFolder. The classes are
 *   the subfolders in sorted (byte) order, class i the i-th; each class's images its
 *   .jpg / .jpeg files (any case), sorted. A class without images is an error that
 *   names it (a half-copied dataset), as is a DIR without classes.
 * - list: a text file of "PATH LABEL" lines (PATH relative to the list file's folder,
 *   or absolute; LABEL a class index; '#' lines and blank lines skipped), in its order.
 *   The classes are 0 .. the largest label, named by their index.
 * Image i is paths[i] with labels[i]; the order is fixed by the layout, so a seed's
 * epoch order means the same images on every machine. */
#ifndef WG_IMAGESET_H
#define WG_IMAGESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_imageset {
    char name[512]; /* for messages */
    int64_t n;
    char **paths;
    int32_t *labels;
    int num_classes;
    char **classes; /* num_classes names */
} wg_imageset;

bool wg_imageset_folder(const char *dir, wg_imageset *out, char *err, size_t errlen);
bool wg_imageset_list(const char *list_path, wg_imageset *out, char *err, size_t errlen);
void wg_imageset_free(wg_imageset *s);

/* "index name" per line: the class mapping, for the run directory. */
bool wg_imageset_write_classes(const wg_imageset *s, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
