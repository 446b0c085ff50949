/* backend.c: what every backend shares (see backend.h). */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"

void wg_backend_free(wg_backend *b)
{
    if (b == NULL) return;
    if (b->iface->free_ctx != NULL) b->iface->free_ctx(b->ctx);
    free(b);
}

const char *wg_backend_name(const wg_backend *b) { return b->iface->name; }

bool wg_backend_is_cpu(const wg_backend *b) { return b->sync == NULL && strcmp(b->iface->name, "cpu") == 0; }

void wg_backend_set_sync(wg_backend *b, const wg_batch_sync *sync) { b->sync = sync; }

uint64_t wg_backend_sync_max(const wg_backend *b, uint64_t m)
{
    wg_backend_sync_max_n(b, &m, 1);
    return m;
}

void wg_backend_sync_max_n(const wg_backend *b, uint64_t *v, size_t n)
{
    if (b->sync != NULL && n > 0) b->sync->max_u64(b->sync->ctx, v, n);
}

void wg_backend_sync_sum_n(const wg_backend *b, int64_t *v, size_t n)
{
    if (b->sync != NULL && n > 0) b->sync->sum_i64(b->sync->ctx, v, n);
}

int wg_backend_batch_ranks(const wg_backend *b) { return b->sync != NULL ? b->sync->ranks : 1; }

void wg_backend_synchronize(wg_backend *b)
{
    if (b->iface->synchronize != NULL) b->iface->synchronize(b->ctx);
}

void wg_backend_require(const wg_tensor *t, int present, const char *op)
{
    if (!present) WG_DIE("backend %s has no op %s", wg_backend_name(t->backend), op);
}
