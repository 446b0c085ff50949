/* test_nccl.c: NCCL, the CUDA backend's gradient communicator (cuda/nccl_comm.cu),
 * initializes (its unique id through dist.h's broadcast) and its allreduce of int64
 * and float32 gradients on the GPU gives MPI's host result (dist.h) for the same
 * values: on one GPU, one rank, both are the identity, which checks the whole path
 * (id, communicator, the backend's stream, the types) but not the exchange itself.
 * Exit 77 (ctest: skipped) without a GPU or without NCCL in the build; with
 * WG_REQUIRE_GPU=1 (scripts/gpu-check.sh) a missing GPU fails. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda.h"
#include "dist.h"
#include "nccl_comm.cuh"
#include "tensor.h"

static int skip_or_fail(const char *why)
{
    const char *req = getenv("WG_REQUIRE_GPU");
    fprintf(stderr, "test_nccl: %s\n", why);
    return req != NULL && strcmp(req, "1") == 0 ? 1 : 77;
}

int main(void)
{
    char why[512];
    int n = 0;
    if (wg_cuda_probe(&n, why, sizeof(why)) != WG_CUDA_READY) return skip_or_fail(why);
    wg_backend *b = wg_backend_cuda_init(0, why, sizeof(why));
    if (b == NULL) return skip_or_fail(why);
    wg_dist *d = wg_dist_init(NULL, NULL);
    wg_device_comm *c = wg_cuda_nccl_open(b, d, why, sizeof(why));
    if (c == NULL) {
        wg_backend_free(b);
        wg_dist_finalize(d);
        fprintf(stderr, "test_nccl: %s\n", why);
        return 77;
    }
    wg_dist_set_device_comm(d, c);
    const int64_t len = 1000003;
    int64_t *h = malloc((size_t)len * sizeof *h), *back = malloc((size_t)len * sizeof *back);
    float *hf = malloc((size_t)len * sizeof *hf), *backf = malloc((size_t)len * sizeof *backf);
    if (!h || !back || !hf || !backf) return 1;
    uint64_t s = 12345;
    for (int64_t i = 0; i < len; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = (int64_t)(s >> 1) - (int64_t)(UINT64_C(1) << 62);
        hf[i] = (float)(int32_t)(s >> 40) * 0x1p-10f;
    }
    wg_tensor g, gf;
    if (!wg_tensor_init(&g, b, WG_I64, WG_LAYOUT_PLAIN, 1, &len, 0) ||
        !wg_tensor_init(&gf, b, WG_F32, WG_LAYOUT_PLAIN, 1, &len, 0))
        return 1;
    wg_tensor_upload(&g, h);
    wg_tensor_upload(&gf, hf);
    int failed = 0;
    if (!c->owns(c->ctx, &g)) fprintf(stderr, "FAILED: the communicator does not own the backend's tensor\n"), failed = 1;
    c->sum_i64(c->ctx, g.data, (size_t)len);
    c->sum_f32(c->ctx, gf.data, (size_t)len);
    wg_dist_sum_i64(d, h, (size_t)len); /* MPI's (host) result for the same values */
    wg_tensor_download(&g, back);
    wg_tensor_download(&gf, backf);
    if (memcmp(h, back, (size_t)len * sizeof *h) != 0) fprintf(stderr, "FAILED: int64 sums differ\n"), failed = 1;
    if (memcmp(hf, backf, (size_t)len * sizeof *hf) != 0) fprintf(stderr, "FAILED: float sums differ\n"), failed = 1;
    printf("test_nccl: %s on %d rank%s: %lld int64 and float32 sums %s\n", c->name, wg_dist_size(d),
           wg_dist_size(d) == 1 ? "" : "s", (long long)len, failed ? "DIFFER" : "match MPI's");
    wg_tensor_free(&g);
    wg_tensor_free(&gf);
    free(h), free(back), free(hf), free(backf);
    wg_dist_finalize(d); /* frees the communicator */
    wg_backend_free(b);
    return failed;
}
