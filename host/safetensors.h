/* safetensors.h: reading and writing safetensors files (docs/checkpoints.md).
 *
 * The format (https://github.com/huggingface/safetensors): 8 bytes, the little-endian
 * length N of a JSON header; N bytes of JSON, an object mapping each tensor name to
 * {"dtype": "I32", "shape": [..], "data_offsets": [begin, end]} plus an optional
 * "__metadata__" object of string values; then the tensors' raw little-endian bytes,
 * offsets counted from the end of the header. The JSON is parsed and written with
 * cJSON (Debian: libcjson-dev).
 *
 * This layer knows nothing of networks: host/checkpoint.c maps a network's state
 * onto it. The reader trusts nothing in the file. It checks the header length against
 * the file size, that the JSON parses and has the shape above, every dtype (I8, I16,
 * I32, I64, U8, F32, F64), that each shape's byte count equals its offsets' span, and
 * that the tensors tile the data area exactly (no overlap, no hole, nothing after), as
 * the format requires. A failure returns false with a message naming the file, the
 * byte offset or the tensor and field, and what was expected; nothing is left
 * allocated. The writer is atomic: a temporary file in the same directory, fsync,
 * rename, fsync of the directory, so a crash or a full disk never leaves a
 * half-written file under the final name. */
#ifndef WG_SAFETENSORS_H
#define WG_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    WG_ST_MAX_DIMS = 8,
    WG_ST_NAME_MAX = 128,             /* tensor names and metadata keys, with the NUL */
    WG_ST_MAX_HEADER = 100 * 1000000, /* the largest header accepted, as the reference reader */
};

typedef enum wg_st_dtype { WG_ST_I8, WG_ST_I16, WG_ST_I32, WG_ST_I64, WG_ST_U8, WG_ST_F32, WG_ST_F64 } wg_st_dtype;

const char *wg_st_dtype_name(wg_st_dtype t); /* "I8", ... */
size_t wg_st_dtype_size(wg_st_dtype t);

typedef struct wg_st_tensor {
    char name[WG_ST_NAME_MAX];
    wg_st_dtype dtype;
    int ndim; /* 0..WG_ST_MAX_DIMS (0: a scalar) */
    int64_t shape[WG_ST_MAX_DIMS];
    const void *data; /* little-endian bytes (in the file's buffer when read) */
    size_t nbytes;
} wg_st_tensor;

typedef struct wg_st_meta {
    char key[WG_ST_NAME_MAX];
    char *value; /* NUL-terminated; owned by the file or writer */
} wg_st_meta;

/* ---- reading -------------------------------------------------------------------- */

typedef struct wg_st_file {
    char path[512];
    uint8_t *buf; /* the whole file */
    size_t size;
    wg_st_tensor *tensors;
    int ntensors;
    wg_st_meta *meta;
    int nmeta;
} wg_st_file;

/* Read and check the file at path (see the file comment). On failure *f is empty. */
bool wg_st_read(const char *path, wg_st_file *f, char *err, size_t errlen);

/* The same from bytes in memory (copied); name stands for the path in messages. */
bool wg_st_parse(const void *bytes, size_t size, const char *name, wg_st_file *f, char *err, size_t errlen);

void wg_st_free(wg_st_file *f);

/* The tensor or metadata value of that name; NULL when absent. */
const wg_st_tensor *wg_st_find(const wg_st_file *f, const char *name);
const char *wg_st_meta_get(const wg_st_file *f, const char *key);

/* ---- writing -------------------------------------------------------------------- */

typedef struct wg_st_writer {
    wg_st_tensor *tensors; /* data points at the caller's memory until wg_st_write */
    int ntensors, cap;
    wg_st_meta *meta; /* values copied */
    int nmeta, meta_cap;
} wg_st_writer;

/* Add a tensor (its bytes must stay valid until wg_st_write) or a metadata string.
 * Names must be unique and shorter than WG_ST_NAME_MAX (checked: abort, a
 * programming error). */
void wg_st_add(wg_st_writer *w, const char *name, wg_st_dtype dtype, int ndim, const int64_t *shape, const void *data);
void wg_st_add_meta(wg_st_writer *w, const char *key, const char *value);

/* Write the file atomically (see the file comment); tensors in the order added. The
 * header is padded with spaces so that the data area starts at a multiple of 8. */
bool wg_st_write(const wg_st_writer *w, const char *path, char *err, size_t errlen);

void wg_st_writer_free(wg_st_writer *w);

/* Remove the temporary file of a write in progress, if any. Async-signal-safe: for a
 * signal handler that exits at once, so no partial file is left behind. */
void wg_st_abandon_partial(void);

#ifdef __cplusplus
}
#endif

#endif
