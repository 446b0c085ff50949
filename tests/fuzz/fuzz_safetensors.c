/* fuzz_safetensors.c: libFuzzer harness of the safetensors reader (wg_st_parse,
 * safetensors.h).
 *
 * The input is a whole file's bytes: 8-byte little-endian header length, JSON
 * header, data. Properties checked, beyond "no crash, no leak, no undefined
 * behaviour": a failure comes with a message and leaves the file empty; a success
 * gives tensors whose bytes lie inside the file's buffer, whose byte count is the
 * product of the shape times the dtype's size, with a known dtype, 0..WG_ST_MAX_DIMS
 * dimensions of non-negative sizes and NUL-terminated names; metadata keys and
 * values are NUL-terminated, and the named lookups find what was read.
 *
 * scripts/fuzz.sh links it with a structure-aware mutator (st_mutator.c): half of
 * the mutations change the JSON header alone and rewrite the length field to match,
 * since a byte-level mutation that inserts or drops a header byte nearly always
 * breaks that length and stops at the first check. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static void fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_safetensors: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void fuzz_check_tensor(const wg_st_file *f, const wg_st_tensor *t)
{
    if (!memchr(t->name, '\0', sizeof t->name)) fuzz_fail("a tensor name is not NUL-terminated", NULL);
    if ((unsigned)t->dtype > WG_ST_F64) fuzz_fail("unknown dtype", t->name);
    if (t->ndim < 0 || t->ndim > WG_ST_MAX_DIMS) fuzz_fail("ndim out of range", t->name);
    /* The product, overflow-checked: a reader that let it wrap around is caught. A
     * zero dimension makes it 0 whatever the others are. */
    uint64_t want = wg_st_dtype_size(t->dtype);
    bool zero = false, wrapped = false;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) fuzz_fail("a negative dimension", t->name);
        zero |= t->shape[d] == 0;
        wrapped |= __builtin_mul_overflow(want, (uint64_t)t->shape[d], &want);
    }
    if (zero) want = 0;
    else if (wrapped) fuzz_fail("product(shape) * dtype size overflows 64 bits", t->name);
    if (want != t->nbytes) fuzz_fail("nbytes != product(shape) * dtype size", t->name);
    const uint8_t *p = t->data, *lo = f->buf, *hi = f->buf + f->size;
    if (t->nbytes > 0 && (!p || p < lo || p > hi || t->nbytes > (size_t)(hi - p)))
        fuzz_fail("tensor bytes outside the file's buffer", t->name);
    volatile uint8_t sum = 0; /* touch them: ASan checks the buffer */
    for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
    (void)sum;
    if (wg_st_find(f, t->name) == NULL) fuzz_fail("wg_st_find misses a tensor that was read", t->name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wg_st_file f;
    memset(&f, 0xA5, sizeof f); /* garbage: a failure must still leave it empty */
    char err[1024];
    err[0] = '\0';
    if (!wg_st_parse(data, size, "fuzz", &f, err, sizeof err)) {
        if (!err[0]) fuzz_fail("wg_st_parse failed without a message", NULL);
        if (f.buf || f.tensors || f.meta || f.ntensors || f.nmeta) fuzz_fail("a failed parse left a non-empty file", err);
        return 0;
    }
    if (f.size != size || !f.buf || memcmp(f.buf, data, size) != 0) fuzz_fail("the buffer is not the input", NULL);
    if (f.ntensors < 0 || f.nmeta < 0 || (f.ntensors > 0 && !f.tensors) || (f.nmeta > 0 && !f.meta))
        fuzz_fail("bad tensor or metadata counts", NULL);
    for (int i = 0; i < f.ntensors; i++) fuzz_check_tensor(&f, &f.tensors[i]);
    for (int i = 0; i < f.nmeta; i++) {
        const wg_st_meta *m = &f.meta[i];
        if (!memchr(m->key, '\0', sizeof m->key) || !m->value) fuzz_fail("bad metadata entry", NULL);
        volatile size_t n = strlen(m->value); /* NUL-terminated (ASan checks) */
        (void)n;
        if (wg_st_meta_get(&f, m->key) == NULL) fuzz_fail("wg_st_meta_get misses a key that was read", m->key);
    }
    wg_st_free(&f);
    return 0;
}
