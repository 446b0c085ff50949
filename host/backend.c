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

bool wg_backend_is_cpu(const wg_backend *b) { return strcmp(b->iface->name, "cpu") == 0; }

void wg_backend_synchronize(wg_backend *b)
{
    if (b->iface->synchronize != NULL) b->iface->synchronize(b->ctx);
}

void wg_backend_require(const wg_tensor *t, int present, const char *op)
{
    if (!present) WG_DIE("backend %s has no op %s", wg_backend_name(t->backend), op);
}
