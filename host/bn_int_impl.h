/* bn_int_impl.h: what integer batch normalization's forward passes (bn_int.c) and
 * backward pass (bn_int_bwd.c) share, private to them: the tiles of per-channel
 * constants, allocation and the checks. Not part of bn.h's interface.
 *
 * Loop shape (for the vectorizer). Every pass over the elements runs over tiles of
 * whole rows, flattened: a tile is rows = max(1, WG_BN_TILE / C) consecutive rows, n =
 * rows * C elements, and the per-channel constants are laid out once per row of a tile
 * (bn_tile, and bn_tile32 in bn_int.c), so element l of a tile finds its constants at
 * index l. C is 16 to 64 in the CIFAR-size ResNets: a loop over one row is shorter than
 * the vectors gcc picks, which it sizes by the narrowest type of the loop (64 lanes for
 * int8 dy). Each tile is one loop that reads its inputs in their containers and writes
 * its outputs (each file's comment says in which lanes). Dimension legend: M = count =
 * N*H*W rows, C channels (innermost). */
#ifndef WG_BN_INT_IMPL_H
#define WG_BN_INT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bn.h"

#include "tensor.h"
#include "wg_bn_elem.h"

/* Elements per tile (at least one row): with 12 int64 constants and 3 int64 buffers per
 * element, a tile's working set is 15 KiB. */
enum { WG_BN_TILE = 128 };

/* For the per-container loops: the container switch folds away in each inlined copy. */
#define WG_BN_INLINE static inline __attribute__((always_inline))

/* The per-channel constants of a tile: wg_bn_lin's fields as arrays of n = rows * C,
 * channel ch's values at every index r * C + ch. gamma, beta: the forward pass only. */
typedef struct bn_tile {
    int64_t rows, n;
    uint64_t *d, *qa, *qb, *qc, *ra, *rb, *rc;
    int64_t *pa, *pb, *pc, *gamma, *beta;
} bn_tile;

/* Rows per tile for C channels. */
static inline int64_t tile_rows(int64_t c) { return c < WG_BN_TILE ? WG_BN_TILE / c : 1; }

/* Element l's constants (vectorizes: the fields are loaded from contiguous arrays). */
WG_BN_INLINE wg_bn_lin tile_at(const bn_tile *t, int64_t l)
{
    const wg_bn_lin k = {t->d[l], t->qa[l], t->qb[l], t->qc[l], t->ra[l], t->rb[l], t->rc[l], t->pa[l], t->pb[l],
                         t->pc[l]};
    return k;
}

/* ---- bn_int.c -------------------------------------------------------------------------- */

/* malloc that aborts when out of memory (never NULL, also for 0 bytes). */
void *bn_xmalloc(size_t nbytes);
/* A tile for C channels, and its release. */
bn_tile bn_tile_alloc(int64_t c);
void bn_tile_free(bn_tile *t);
/* Channel ch's constants k, gamma and beta at every row of t. */
void bn_tile_set(bn_tile *t, int64_t c, int64_t ch, const wg_bn_lin *k, int64_t gamma, int64_t beta);
/* Per-element accumulators (k arrays of n) folded into per-channel sums (the first
 * nsum arrays) and maxima (the rest), out: k arrays of C. */
void bn_tile_fold(const int64_t *acc, int64_t n, int64_t c, int k, int nsum, int64_t *out);
/* Abort unless t is a CPU vector of C elements in container dt. */
void bn_check_vec(const wg_tensor *t, wg_dtype dt, int64_t c, const char *what);
/* Abort unless t is an NHWC activation (container dt, any integer one when dt < 0; of
 * like's shape when given); returns C, *count = N*H*W. */
int64_t bn_check_act(const wg_tensor *t, int dt, const wg_tensor *like, const char *what, int64_t *count);

/* Whether t is on the CPU backend, whose fused passes these files are (else
 * bn_int_generic.c's passes serve). */
bool bn_on_cpu(const wg_tensor *t);
/* The per-channel steps on host arrays of C: mu and sigma from the sums (wg_bn_mean,
 * wg_bn_sigma), the running averages' update, and evaluation statistics from them. */
void bn_pass_stats(const int64_t *s1, const int64_t *s2, int64_t count, int64_t c, int e_x, int32_t *mu,
                   int32_t *sigma);
void bn_pass_running_update(int64_t *rmean, int64_t *rsigma, const int32_t *mu, const int32_t *sigma, int64_t c,
                            bool initialized);
void bn_pass_running_stats(const int64_t *rmean, const int64_t *rsigma, int64_t c, int32_t *mu, int32_t *sigma);

/* bn_int_bwd.c: the backward pass's per-tensor exponent F (host). */
int bn_bwd_exponent(const int16_t *gamma, const int32_t *sigma, int64_t count, int64_t c, const int64_t *bsum,
                    const int64_t *gsum, const uint64_t *dmax, const uint64_t *hmax);

/* ---- bn_int_generic.c: the passes on other backends ------------------------------------ */

uint64_t bn_generic_forward_train(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                  const wg_tensor *beta16, wg_tensor *y, wg_bn_int_saved *saved,
                                  wg_bn_running *running);
uint64_t bn_generic_forward_eval(const wg_tensor *x, uint64_t x_max, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, const wg_bn_running *running, wg_tensor *y,
                                 wg_bn_int_saved *work);

uint64_t bn_generic_backward(const wg_tensor *dy, const wg_tensor *gamma16, const wg_bn_int_saved *saved,
                             wg_tensor *dx, wg_tensor *dgamma, wg_tensor *dbeta);
uint64_t bn_generic_backward_act(const wg_tensor *err, uint64_t err_max, int e1_bits, const wg_tensor *gamma16,
                                 const wg_tensor *beta16, const wg_bn_int_saved *saved, wg_tensor *dy, wg_tensor *dx,
                                 const wg_bn_int_bwd_e2 *e2, wg_tensor *acc, wg_tensor *dgamma, wg_tensor *dbeta);

#endif
