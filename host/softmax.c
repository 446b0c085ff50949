/* softmax.c: softmax cross-entropy (see softmax.h). */
#include "softmax.h"

#include <math.h>
#include <stdlib.h>

#include "backend.h"
#include "check.h"
#include "wg_rational.h"
#include "wg_softmax_elem.h"

/* N and K of a logits tensor [N][K] (any rank whose last dimension is K). */
static void logits_shape(const wg_tensor *z, int64_t *n, int64_t *k)
{
    *k = z->shape[z->ndim - 1];
    *n = wg_tensor_numel(z) / *k;
}

/* -log softmax(row)[label] in double, and whether the label is the argmax (top-1) or
 * among the 5 largest (top-5). */
static void report_row(const double *row, int64_t k, int32_t label, wg_loss_stats *st)
{
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (row[j] > row[best]) best = j;
    double s = 0;
    for (int64_t j = 0; j < k; j++) s += exp(row[j] - row[best]);
    st->loss_sum += log(s) - (row[label] - row[best]);
    st->correct += best == label;
    int64_t rank = 0; /* logits ahead of the label's */
    for (int64_t j = 0; j < k; j++) rank += row[j] > row[label] || (row[j] == row[label] && j < label);
    st->correct5 += rank < 5;
    st->count += 1;
}

enum { WG_MAX_CLASSES = 4096 }; /* per-row scratch lives on the stack */

/* The loss works on host copies of the logits and of its gradient, whatever backend
 * holds them: N x K is small next to a step's other tensors, and its statistics are
 * host arithmetic (double) anyway, so one download and one upload serve every backend
 * with the same loops (wg_tensor_host_copy). finish: dz's host values up to its backend,
 * and both copies freed. */
static void finish(wg_tensor *dz, void *gh, void *zh)
{
    if (dz != NULL) wg_tensor_upload(dz, gh);
    free(gh);
    free(zh);
}

void wg_softmax_ce_s32(const wg_tensor *z, const int32_t *labels, wg_tensor *dz, wg_loss_stats *st)
{
    int64_t n, k;
    logits_shape(z, &n, &k);
    WG_ASSERT(z->dtype == WG_I32, "integer softmax of %s logits", wg_dtype_name(z->dtype));
    WG_ASSERT(k <= WG_MAX_CLASSES, "%lld classes (at most %d)", (long long)k, WG_MAX_CLASSES);
    WG_ASSERT(z->exp >= -26 && z->exp <= 30, "logit exponent %d outside [-26, 30]", z->exp);
    WG_ASSERT(dz == NULL || (dz->dtype == WG_I32 && wg_tensor_numel(dz) == n * k), "softmax gradient");
    int32_t *zq = wg_tensor_host_copy(z), *gh = dz ? wg_tensor_host_alloc(dz) : NULL;
    int64_t n_all = n * wg_backend_batch_ranks(z->backend); /* the mean is over the whole batch */
    int64_t e[WG_MAX_CLASSES];
    double row[WG_MAX_CLASSES];
    for (int64_t b = 0; b < n; b++) {
        const int32_t *r = zq + b * k;
        int32_t label = labels[b];
        WG_ASSERT(label >= 0 && label < k, "label %d outside [0, %lld)", (int)label, (long long)k);
        int64_t m = r[0];
        for (int64_t j = 1; j < k; j++) m = r[j] > m ? r[j] : m;
        int64_t sum = 0;
        for (int64_t j = 0; j < k; j++) {
            e[j] = wg_exp_q30((int64_t)r[j] - m, z->exp);
            sum += e[j];
        }
        if (dz != NULL) {
            int32_t *g = gh + b * k;
            for (int64_t j = 0; j < k; j++) {
                int64_t p = wg_div_rne(e[j] * ((int64_t)1 << WG_SOFTMAX_PROB_BITS), sum);
                int64_t diff = p - (j == label ? (int64_t)1 << WG_SOFTMAX_PROB_BITS : 0);
                g[j] = (int32_t)wg_div_rne(diff * ((int64_t)1 << WG_SOFTMAX_GRAD_EXTRA), n_all);
            }
        }
        for (int64_t j = 0; j < k; j++) row[j] = ldexp((double)r[j], z->exp);
        report_row(row, k, label, st);
    }
    finish(dz, gh, zq);
    if (dz != NULL) dz->exp = -(WG_SOFTMAX_PROB_BITS + WG_SOFTMAX_GRAD_EXTRA);
}

void wg_softmax_ce_f32(const wg_tensor *z, const int32_t *labels, wg_tensor *dz, wg_loss_stats *st)
{
    int64_t n, k;
    logits_shape(z, &n, &k);
    WG_ASSERT(z->dtype == WG_F32 && k <= WG_MAX_CLASSES, "float softmax of %lld classes", (long long)k);
    WG_ASSERT(dz == NULL || (dz->dtype == WG_F32 && wg_tensor_numel(dz) == n * k), "softmax gradient");
    float *zf = wg_tensor_host_copy(z), *gh = dz ? wg_tensor_host_alloc(dz) : NULL;
    double n_all = (double)(n * wg_backend_batch_ranks(z->backend));
    double row[WG_MAX_CLASSES];
    for (int64_t b = 0; b < n; b++) {
        int32_t label = labels[b];
        WG_ASSERT(label >= 0 && label < k, "label %d outside [0, %lld)", (int)label, (long long)k);
        double m = zf[b * k];
        for (int64_t j = 0; j < k; j++) {
            row[j] = zf[b * k + j];
            m = row[j] > m ? row[j] : m;
        }
        if (dz != NULL) {
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += exp(row[j] - m);
            float *g = gh + b * k;
            for (int64_t j = 0; j < k; j++)
                g[j] = (float)((exp(row[j] - m) / s - (j == label ? 1.0 : 0.0)) / n_all);
        }
        report_row(row, k, label, st);
    }
    finish(dz, gh, zf);
}
