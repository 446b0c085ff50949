/* train_impl.h: what training (train.c) and evaluation (eval.c) share: a loaded data
 * set, a built network and its batch buffers. Not a public header. */
#ifndef WG_TRAIN_IMPL_H
#define WG_TRAIN_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"
#include "dist.h"
#include "imageset.h"
#include "loader.h"
#include "data.h"
#include "net.h"

typedef struct run {
    const wg_config *cfg;
    bool int8;
    wg_dataset train, test, val;
    wg_net *net;
    wg_backend *b; /* given (the caller's, kept) or, when NULL, a CPU backend of the run's own */
    bool b_owned;
    void *images; /* one batch, int8 or float */
    const void *batch_px; /* the batch to forward: images, or the loader's buffer */
    uint8_t *labels8;
    int32_t *labels;
    int64_t *order;
    FILE *metrics; /* train only; the primary rank's */
    bool tty;
    /* Several processes (dist.h): this rank's part of every global batch is local_batch
     * images from rank * local_batch; only the primary rank (0) writes logs and files. */
    wg_dist *dist; /* NULL: one process */
    int rank, ranks;
    int64_t local_batch;
    bool primary;
    /* [data] format = imagefolder or list (train_stream.c): the JPEG sets, streamed
     * through a loader; train and test above then hold only their sizes, classes and
     * normalization (images NULL). */
    bool streamed;
    wg_imageset train_set, test_set;
    wg_crop_opts crop;
    wg_loader *loader; /* the running one, or NULL */
} run;

/* Load the data (with the validation split), build the network, allocate the batch
 * buffers. false with a message in err (the data set, the network). */
bool wg_run_setup(run *r, char *err, size_t errlen);
void wg_run_teardown(run *r);

/* This rank's part of a global batch of n images from idx: *lo and the count it loads.
 * A rank whose part is empty (the last, short batch of an evaluation) loads the batch's
 * first image as well, which changes no maximum, and *counted = 0 tells it to leave that
 * image out of its statistics. */
int64_t wg_run_shard(const run *r, int64_t n, int64_t *lo, bool *counted);
/* The loss statistics summed over the ranks. */
void wg_run_sum_stats(run *r, wg_loss_stats *st);

/* train_stream.c: open the JPEG sets of [data] root (imagefolder: train/ and val/; list:
 * train.txt and val.txt) into r->train_set and r->test_set, r->train and r->test their
 * sizes and the imagenet normalization; false with a message. */
bool wg_run_stream_open(run *r, char *err, size_t errlen);
void wg_run_stream_close(run *r);
/* Start streaming set's images order[0..n) (this rank's shards of its global batches),
 * with training crops or evaluation ones; stops the loader before. */
void wg_run_stream_start(run *r, const wg_imageset *set, const int64_t *order, int64_t n, bool train, uint32_t epoch);
/* The next batch: r->batch_px (the loader's buffer, normalized) and r->labels; returns
 * the int8 exponent and sets *n (0 for a rank with no image of a short last batch: one
 * image of the normalized zero is there to forward). A file that cannot be read stops
 * the run with its name. */
int wg_run_stream_batch(run *r, int64_t *n);

/* Load images idx[0..n) of ds into r->images and r->labels; returns the int8 exponent. */
int wg_run_load_batch(run *r, const wg_dataset *ds, const int64_t *idx, int64_t n, bool augment, uint32_t epoch);

/* Re-estimate the BN running statistics from the first [train] bn_recalibrate
 * training batches (see train.c), then evaluate ds with them. */
void wg_run_recalibrate_bn(run *r);
wg_loss_stats wg_run_evaluate(run *r, const wg_dataset *ds);

#endif
