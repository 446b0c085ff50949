/* test_tensor.c: fixed-point tensors (tensor.h) on the CPU backend (backend.h),
 * and the container helpers of wg_dtype.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>

#include "backend.h"
#include "tensor.h"
#include "wg_dtype.h"

#include "test_ref.h"

static const wg_dtype k_dtypes[] = {WG_I8, WG_I16, WG_I32, WG_I64, WG_F32};
static const size_t k_sizes[] = {1, 2, 4, 8, 4};

static int setup(void **state)
{
    *state = wg_backend_cpu_init();
    return *state == NULL;
}

static int teardown(void **state)
{
    wg_backend_free(*state);
    return 0;
}

static void test_backend_cpu(void **state)
{
    wg_backend *b = *state;
    const char *name = wg_backend_name(b);
    TR_FAIL_IF(name == NULL || name[0] == '\0', "the CPU backend has no name%s", "");
    wg_backend_synchronize(b); /* synchronous: a no-op that must not crash */
    wg_backend *b2 = wg_backend_cpu_init();
    TR_FAIL_IF(b2 == NULL, "a second CPU backend could not be made%s", "");
    wg_backend_free(b2);
    wg_backend_free(NULL); /* a no-op, like free(NULL): test_cuda relies on it */
}

static void test_dtype_helpers(void **state)
{
    (void)state;
    static const int64_t bounds[] = {INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX};
    for (int d = 0; d < 5; d++) {
        TR_EXPECT_I64(k_sizes[d], wg_dtype_size(k_dtypes[d]), "wg_dtype_size(%s)", tr_dt(k_dtypes[d]));
        TR_EXPECT_I64(d < 4, wg_dtype_is_int(k_dtypes[d]) != 0, "wg_dtype_is_int(%s)", tr_dt(k_dtypes[d]));
    }
    for (int d = 0; d < 4; d++) {
        TR_EXPECT_I64(bounds[d], wg_dtype_bound(k_dtypes[d]), "wg_dtype_bound(%s)", tr_dt(k_dtypes[d]));
        int64_t buf[4] = {0, 0, 0, 0};
        const int64_t vals[3] = {bounds[d], -bounds[d], -1};
        for (int i = 0; i < 3; i++) wg_store_i64(buf, k_dtypes[d], i, vals[i]);
        for (int i = 0; i < 3; i++)
            TR_EXPECT_I64(vals[i], wg_load_i64(buf, k_dtypes[d], i), "store/load %s element %d", tr_dt(k_dtypes[d]), i);
        unsigned char *bytes = (unsigned char *)buf; /* element 3 untouched */
        for (size_t j = 3 * k_sizes[d]; j < 4 * k_sizes[d]; j++)
            TR_FAIL_IF(bytes[j] != 0, "store wrote past element 2%s", "");
    }
}

static void check_init(wg_backend *b, wg_tensor *t, wg_dtype dt, wg_layout lay, int ndim, const int64_t *shape, int exp)
{
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d];
    TR_FAIL_IF(t->data == NULL, "%s tensor has no data", tr_dt(dt));
    TR_FAIL_IF(t->backend != b, "%s tensor: wrong backend", tr_dt(dt));
    TR_EXPECT_I64(dt, t->dtype, "dtype%s", "");
    TR_EXPECT_I64(lay, t->layout, "layout of a %s tensor", tr_dt(dt));
    TR_EXPECT_I64(ndim, t->ndim, "ndim of a %s tensor", tr_dt(dt));
    TR_EXPECT_I64(exp, t->exp, "exp of a %s tensor", tr_dt(dt));
    for (int d = 0; d < WG_MAX_DIMS; d++)
        TR_EXPECT_I64(d < ndim ? shape[d] : 1, t->shape[d], "shape[%d] (ndim %d, %s)", d, ndim, tr_dt(dt));
    TR_EXPECT_I64(numel, wg_tensor_numel(t), "numel (ndim %d, %s)", ndim, tr_dt(dt));
    TR_EXPECT_I64(numel * (int64_t)wg_dtype_size(dt), (int64_t)wg_tensor_nbytes(t), "nbytes (ndim %d, %s)", ndim,
                  tr_dt(dt));
}

static void test_init_free(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {31};
    for (int d = 0; d < 5; d++)
        for (int lay = 0; lay < 3; lay++)
            for (int ndim = 1; ndim <= WG_MAX_DIMS; ndim++) {
                if (lay != WG_LAYOUT_PLAIN && ndim != 4) continue;
                for (int rep = 0; rep < 4; rep++) {
                    int64_t shape[WG_MAX_DIMS];
                    for (int k = 0; k < ndim; k++) shape[k] = rep == 0 ? 1 : tr_range(&r, 1, 9);
                    int exp = (int)tr_range(&r, -40, 40);
                    wg_tensor t;
                    memset(&t, 0x5a, sizeof t);
                    bool ok = wg_tensor_init(&t, b, k_dtypes[d], (wg_layout)lay, ndim, shape, exp);
                    TR_FAIL_IF(!ok, "wg_tensor_init(%s, layout %d, ndim %d) failed", tr_dt(k_dtypes[d]), lay, ndim);
                    check_init(b, &t, k_dtypes[d], (wg_layout)lay, ndim, shape, exp);
                    wg_tensor_zero(&t); /* touches every byte (the sanitizer build checks the size) */
                    wg_tensor_free(&t);
                    TR_FAIL_IF(t.data != NULL, "a freed tensor keeps its data pointer%s", "");
                    wg_tensor_free(&t); /* freeing an empty tensor is a no-op */
                    TR_FAIL_IF(t.data != NULL, "a twice-freed tensor has data%s", "");
                }
            }
    wg_tensor empty;
    memset(&empty, 0, sizeof empty);
    wg_tensor_free(&empty);
    TR_FAIL_IF(empty.data != NULL, "freeing a zeroed tensor%s", "");
}

static void test_shorthands(void **state)
{
    wg_backend *b = *state;
    wg_tensor t;
    const int64_t nhwc[4] = {2, 3, 5, 7}, ohwi[4] = {11, 3, 1, 4};
    TR_FAIL_IF(!wg_tensor_init_nhwc(&t, b, WG_I8, 2, 3, 5, 7, -7), "wg_tensor_init_nhwc failed%s", "");
    check_init(b, &t, WG_I8, WG_LAYOUT_NHWC, 4, nhwc, -7);
    wg_tensor_free(&t);
    TR_FAIL_IF(!wg_tensor_init_ohwi(&t, b, WG_I32, 11, 3, 1, 4, 3), "wg_tensor_init_ohwi failed%s", "");
    check_init(b, &t, WG_I32, WG_LAYOUT_OHWI, 4, ohwi, 3);
    wg_tensor_free(&t);
}

/* Fill with garbage, expect false and an empty tensor, which frees as a no-op. */
static void expect_invalid(bool ok, wg_tensor *t, const char *what)
{
    TR_FAIL_IF(ok, "%s: accepted", what);
    TR_FAIL_IF(t->data != NULL, "%s: rejected but data is set", what);
    TR_EXPECT_I64(0, wg_tensor_numel(t), "%s: numel of the rejected tensor", what);
    wg_tensor_free(t);
}

static void test_init_invalid(void **state)
{
    wg_backend *b = *state;
    wg_tensor t;
    const int64_t shape[5] = {2, 3, 4, 5, 6};
    static const int bad_ndim[] = {0, 5, -1, 100};
    char what[128];
    for (size_t i = 0; i < sizeof bad_ndim / sizeof bad_ndim[0]; i++) {
        memset(&t, 0xa5, sizeof t);
        snprintf(what, sizeof what, "ndim %d", bad_ndim[i]);
        expect_invalid(wg_tensor_init(&t, b, WG_I32, WG_LAYOUT_PLAIN, bad_ndim[i], shape, 0), &t, what);
    }
    static const int64_t bad_dim[] = {0, -1, -7, INT64_MIN};
    for (int ndim = 1; ndim <= 4; ndim++)
        for (int pos = 0; pos < ndim; pos++)
            for (size_t v = 0; v < sizeof bad_dim / sizeof bad_dim[0]; v++) {
                int64_t s[4] = {3, 3, 3, 3};
                s[pos] = bad_dim[v];
                memset(&t, 0xa5, sizeof t);
                snprintf(what, sizeof what, "ndim %d, dimension %d = %" PRId64, ndim, pos, bad_dim[v]);
                expect_invalid(wg_tensor_init(&t, b, WG_I16, WG_LAYOUT_PLAIN, ndim, s, 0), &t, what);
                if (ndim != 4) continue;
                memset(&t, 0xa5, sizeof t);
                expect_invalid(wg_tensor_init_nhwc(&t, b, WG_I8, s[0], s[1], s[2], s[3], 0), &t,
                               "nhwc with a bad dimension");
                memset(&t, 0xa5, sizeof t);
                expect_invalid(wg_tensor_init_ohwi(&t, b, WG_I8, s[0], s[1], s[2], s[3], 0), &t,
                               "ohwi with a bad dimension");
            }
    /* A shape whose element count overflows int64 (2^32 * 2^32 * 2^32) cannot be valid. */
    const int64_t huge[3] = {INT64_C(1) << 32, INT64_C(1) << 32, INT64_C(1) << 32};
    memset(&t, 0xa5, sizeof t);
    expect_invalid(wg_tensor_init(&t, b, WG_I64, WG_LAYOUT_PLAIN, 3, huge, 0), &t, "an overflowing element count");
}

static void test_upload_download(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {32};
    static const int64_t ns[] = {1, 2, 3, 7, 64, 1001, 4099};
    for (int d = 0; d < 5; d++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int64_t n = ns[k];
            size_t nb = (size_t)n * k_sizes[d];
            unsigned char *src = malloc(nb), *dst = malloc(nb + 16);
            for (size_t j = 0; j < nb; j++) src[j] = (unsigned char)tr_next(&r);
            memset(dst, 0xcc, nb + 16);
            int ndim;
            int64_t shape[WG_MAX_DIMS];
            tr_random_shape(&r, n, &ndim, shape);
            wg_tensor t;
            TR_FAIL_IF(!wg_tensor_init(&t, b, k_dtypes[d], WG_LAYOUT_PLAIN, ndim, shape, 0), "init %s n %" PRId64,
                       tr_dt(k_dtypes[d]), n);
            wg_tensor_upload(&t, src);
            wg_tensor_download(&t, dst);
            TR_FAIL_IF(memcmp(src, dst, nb) != 0, "round trip of %zu bytes (%s, n %" PRId64 ") differs", nb,
                       tr_dt(k_dtypes[d]), n);
            for (size_t j = nb; j < nb + 16; j++)
                TR_FAIL_IF(dst[j] != 0xcc, "download wrote past %zu bytes (%s)", nb, tr_dt(k_dtypes[d]));
            wg_tensor_zero(&t);
            wg_tensor_download(&t, dst);
            for (size_t j = 0; j < nb; j++)
                TR_FAIL_IF(dst[j] != 0, "byte %zu not zero after wg_tensor_zero (%s)", j, tr_dt(k_dtypes[d]));
            wg_tensor_upload(&t, src); /* the memory is reusable after zero */
            wg_tensor_download(&t, dst);
            TR_FAIL_IF(memcmp(src, dst, nb) != 0, "second round trip differs (%s)", tr_dt(k_dtypes[d]));
            wg_tensor_free(&t);
            free(src);
            free(dst);
        }
}

static void test_same_shape(void **state)
{
    wg_backend *b = *state;
    wg_tensor a, c, d, e;
    const int64_t s1[3] = {2, 3, 4}, s2[3] = {2, 4, 3}, s3[2] = {6, 4};
    TR_FAIL_IF(!wg_tensor_init(&a, b, WG_I8, WG_LAYOUT_PLAIN, 3, s1, 0), "init%s", "");
    TR_FAIL_IF(!wg_tensor_init(&c, b, WG_I32, WG_LAYOUT_PLAIN, 3, s1, 5), "init%s", "");
    TR_FAIL_IF(!wg_tensor_init(&d, b, WG_I8, WG_LAYOUT_PLAIN, 3, s2, 0), "init%s", "");
    TR_FAIL_IF(!wg_tensor_init(&e, b, WG_I8, WG_LAYOUT_PLAIN, 2, s3, 0), "init%s", "");
    TR_FAIL_IF(!wg_tensor_same_shape(&a, &c), "same shape, other dtype and exp: not the same shape%s", "");
    TR_FAIL_IF(!wg_tensor_same_shape(&a, &a), "a tensor differs from itself%s", "");
    TR_FAIL_IF(wg_tensor_same_shape(&a, &d), "2x3x4 and 2x4x3 have the same shape%s", "");
    TR_FAIL_IF(wg_tensor_same_shape(&a, &e), "2x3x4 and 6x4 have the same shape%s", "");
    wg_tensor_free(&a);
    wg_tensor_free(&c);
    wg_tensor_free(&d);
    wg_tensor_free(&e);
}

/* Case-insensitive substring. */
static bool has_ci(const char *s, const char *sub)
{
    for (; *s; s++) {
        size_t i = 0;
        while (sub[i] && s[i] && tolower((unsigned char)s[i]) == tolower((unsigned char)sub[i])) i++;
        if (sub[i] == '\0') return true;
    }
    return false;
}

static void test_names(void **state)
{
    (void)state;
    static const char *const widths[5] = {"8", "16", "32", "64", "32"};
    for (int d = 0; d < 5; d++) {
        const char *n = wg_dtype_name(k_dtypes[d]);
        TR_FAIL_IF(n == NULL || n[0] == '\0', "wg_dtype_name(%d) is empty", d);
        TR_FAIL_IF(!has_ci(n, widths[d]), "wg_dtype_name(%s) = \"%s\" does not name its width", tr_dt(k_dtypes[d]), n);
        for (int e = 0; e < d; e++)
            TR_FAIL_IF(strcmp(n, wg_dtype_name(k_dtypes[e])) == 0, "dtypes %d and %d share the name \"%s\"", d, e, n);
    }
    TR_FAIL_IF(!has_ci(wg_dtype_name(WG_F32), "f"), "wg_dtype_name(WG_F32) = \"%s\" does not say float",
               wg_dtype_name(WG_F32));
    const char *lp = wg_layout_name(WG_LAYOUT_PLAIN), *ln = wg_layout_name(WG_LAYOUT_NHWC),
               *lo = wg_layout_name(WG_LAYOUT_OHWI);
    TR_FAIL_IF(lp == NULL || ln == NULL || lo == NULL || lp[0] == '\0', "a layout has no name%s", "");
    TR_FAIL_IF(!has_ci(ln, "nhwc") || !has_ci(lo, "ohwi"), "layout names \"%s\", \"%s\"", ln, lo);
    TR_FAIL_IF(strcmp(lp, ln) == 0 || strcmp(lp, lo) == 0 || strcmp(ln, lo) == 0, "layout names collide%s", "");
}

/* The CPU backend's reduction and rounding ops, called through the vtable. */
static void test_backend_ops(void **state)
{
    wg_backend *b = *state;
    tr_rng r = {33};
    for (int rep = 0; rep < 200; rep++) {
        wg_dtype dt = k_dtypes[rep % 4];
        int64_t n = tr_range(&r, 1, 300), *q = malloc((size_t)n * sizeof *q);
        tr_fill(&r, q, n, dt, (int)tr_range(&r, 0, tr_cbits(dt) - 1));
        if (rep % 5 == 0) q[tr_range(&r, 0, n - 1)] = -tr_cbound(dt) - 1; /* INT*_MIN: |x| = 2^(bits-1) */
        wg_tensor t = tr_tensor_from(b, &r, dt, q, n, 0);
        uint64_t got = b->iface->max_abs(b->ctx, &t);
        TR_FAIL_IF(got != ref_max_abs(q, n), "max_abs (%s, n %" PRId64 "): expected %" PRIu64 ", got %" PRIu64,
                   tr_dt(dt), n, ref_max_abs(q, n), got);
        int shift = (int)tr_range(&r, -10, 40);
        int64_t bound = tr_cbound(dt);
        b->iface->round_shift(b->ctx, &t, &t, shift, bound); /* in place */
        int64_t *out = tr_tensor_get(&t);
        for (int64_t i = 0; i < n; i++) {
            long double v = shift >= 0 ? ref_rne_scale(q[i], -shift) : ldexpl(q[i], -shift);
            TR_EXPECT_LD(ref_clampl(v, (long double)bound), (long double)out[i],
                         "round_shift in place (%s, x %" PRId64 ", shift %d)", tr_dt(dt), q[i], shift);
        }
        free(out);
        free(q);
        wg_tensor_free(&t);
    }
    const int64_t one = 1, mn[1] = {INT64_MIN};
    wg_tensor t = tr_tensor_from(b, NULL, WG_I64, mn, one, 0);
    TR_FAIL_IF(b->iface->max_abs(b->ctx, &t) != UINT64_C(1) << 63, "max_abs(INT64_MIN) != 2^63%s", "");
    wg_tensor_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_cpu),  cmocka_unit_test(test_dtype_helpers),
        cmocka_unit_test(test_init_free),    cmocka_unit_test(test_shorthands),
        cmocka_unit_test(test_init_invalid), cmocka_unit_test(test_upload_download),
        cmocka_unit_test(test_same_shape),   cmocka_unit_test(test_names),
        cmocka_unit_test(test_backend_ops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
