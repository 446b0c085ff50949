/* test_net.c: whole networks. A tiny ResNet (resnet8) overfits 64 Fashion-MNIST
 * training images to 100% training accuracy in int8 mode (presets full and
 * reference) and in fp32 mode while its loss falls; two runs with the same seed end
 * with bit-identical weights, another seed does not. Skipped when Debian's
 * dataset-fashion-mnist is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "data.h"
#include "net.h"
#include "test_net_ref.h"
#include "optim.h"

#define FASHION_ROOT "/usr/share/datasets/fashion-mnist"
enum { N_IMAGES = 64, BATCH = 32, MAX_EPOCHS = 60 };

typedef struct fixture {
    wg_dataset train, test;
    bool have_data;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char err[512];
    f->have_data = wg_dataset_load(FASHION_ROOT, "idx", N_IMAGES, 1, &f->train, &f->test, err, sizeof(err));
    if (!f->have_data) fprintf(stderr, "test_net: %s\n", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->have_data) {
        wg_dataset_free(&f->train);
        wg_dataset_free(&f->test);
    }
    free(f);
    return 0;
}

typedef enum mode { INT8_FULL, INT8_REFERENCE, FP32 } mode;
static const char *const k_mode_names[] = {"int8 full", "int8 reference", "fp32"};

typedef struct run_out {
    double first_loss, last_loss, last_acc;
    int epochs;
    uint64_t weight_hash;
} run_out;

/* Train resnet8 on the 64 images until every one is classified right (or a fixed
 * number of epochs when stop_at_100 is false). */
static run_out train(const fixture *f, mode m, uint64_t seed, int max_epochs, bool stop_at_100)
{
    wg_backend *b = wg_backend_cpu_init();
    bool int8 = m != FP32;
    wg_net_opts o = {.model = "resnet8", .int8 = int8, .bits = wg_quant_bits_reference(), .act = WG_ACT_FIT,
                     .e2 = WG_E2_FLAG, .float_ends = m == INT8_REFERENCE, .batch = BATCH, .h = 28, .w = 28,
                     .c = 1, .classes = 10, .seed = seed};
    char err[256];
    wg_net *net = wg_net_create(&o, b, err, sizeof(err));
    assert_non_null(net);
    int np;
    wg_param *params = wg_net_params(net, &np);
    /* the reference preset keeps exactly the stem and the FC layer in float */
    for (int i = 0; i < np; i++) {
        bool end = !strcmp(params[i].name, "stem") || !strcmp(params[i].name, "fc");
        bool want_float = m == FP32 || (m == INT8_REFERENCE && end);
        assert_int_equal(params[i].master.dtype == WG_F32, want_float);
    }
    int8_t *x8 = malloc(BATCH * 28 * 28);
    float *xf = malloc(BATCH * 28 * 28 * sizeof(float));
    int64_t order[N_IMAGES];
    uint8_t lab8[BATCH];
    int32_t lab[BATCH];
    run_out r = {0};
    uint32_t step = 0;
    for (int e = 0; e < max_epochs; e++) {
        wg_data_epoch_order(N_IMAGES, seed, (uint32_t)e, order);
        wg_loss_stats st = {0};
        for (int s = 0; s < N_IMAGES / BATCH; s++, step++) {
            int exp = 0;
            if (int8) wg_data_batch_int8(&f->train, order + s * BATCH, BATCH, (wg_augment){0}, seed, e, x8, &exp);
            else wg_data_batch_f32(&f->train, order + s * BATCH, BATCH, (wg_augment){0}, seed, e, xf);
            wg_data_batch_labels(&f->train, order + s * BATCH, BATCH, lab8);
            for (int i = 0; i < BATCH; i++) lab[i] = lab8[i];
            wg_net_forward(net, int8 ? (const void *)x8 : (const void *)xf, exp, BATCH, true);
            wg_net_loss(net, lab, true, &st);
            wg_optim_step_args a = {.lr = int8 ? 0.4 : 0.05, .g_scale_log2 = 7, .momentum = 0.9, .weight_decay = 1e-4,
                                    .seed = seed, .step = step, .bits = &o.bits};
            wg_optim_step(params, np, &a);
        }
        double loss = st.loss_sum / (double)st.count;
        if (e == 0) r.first_loss = loss;
        r.last_loss = loss;
        r.last_acc = (double)st.correct / (double)st.count;
        r.epochs = e + 1;
        if (stop_at_100 && st.correct == st.count) break;
    }
    r.weight_hash = tn_hash_params(net);
    free(x8);
    free(xf);
    wg_net_free(net);
    wg_backend_free(b);
    return r;
}

static void check_overfit(const fixture *f, mode m)
{
    if (!f->have_data) skip();
    run_out r = train(f, m, 1, MAX_EPOCHS, true);
    print_message("%s: loss %.4f -> %.4f, training accuracy %.1f%% after %d epochs\n", k_mode_names[m],
                  r.first_loss, r.last_loss, 100 * r.last_acc, r.epochs);
    assert_true(r.last_acc == 1.0);
    assert_true(r.last_loss < 0.5 * r.first_loss);
}

static void test_overfit_int8(void **state) { check_overfit(*state, INT8_FULL); }
static void test_overfit_reference(void **state) { check_overfit(*state, INT8_REFERENCE); }
static void test_overfit_fp32(void **state) { check_overfit(*state, FP32); }

static void check_determinism(const fixture *f, mode m)
{
    if (!f->have_data) skip();
    run_out a = train(f, m, 7, 3, false), b = train(f, m, 7, 3, false), c = train(f, m, 8, 3, false);
    assert_true(a.weight_hash == b.weight_hash);
    assert_true(a.weight_hash != c.weight_hash);
}

static void test_determinism_int8(void **state) { check_determinism(*state, INT8_FULL); }
static void test_determinism_reference(void **state) { check_determinism(*state, INT8_REFERENCE); }
static void test_determinism_fp32(void **state) { check_determinism(*state, FP32); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overfit_int8),
        cmocka_unit_test(test_overfit_reference),
        cmocka_unit_test(test_overfit_fp32),
        cmocka_unit_test(test_determinism_int8),
        cmocka_unit_test(test_determinism_reference),
        cmocka_unit_test(test_determinism_fp32),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
