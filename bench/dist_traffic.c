/* dist_traffic.c: the gradient bytes one training step allreduces, per mode, for the
 * ImageNet ResNets (224x224, 1000 classes) and the default resnet20: the table of
 * docs/distributed.md. Counts only (wg_dist_traffic_of over the networks' parameters);
 * no MPI needed.
 *
 *   dist_traffic [RANKS]   (default 8) */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "dist.h"
#include "net.h"
#include "quant.h"

int main(int argc, char **argv)
{
    int ranks = argc > 1 ? atoi(argv[1]) : 8;
    if (ranks < 2) {
        fprintf(stderr, "usage: dist_traffic [RANKS >= 2]\n");
        return 2;
    }
    static const struct {
        const char *model;
        int64_t hw, c, classes;
    } nets[] = {{"resnet20", 28, 1, 10}, {"resnet18", 224, 3, 1000}, {"resnet50", 224, 3, 1000}};
    wg_backend *b = wg_backend_cpu_init();
    printf("gradient bytes allreduced per step on %d ranks (int8 mode, preset full)\n", ranks);
    printf("| model | gradient scalars | exact (int64) | compressed (int%d) | fp32 allreduce | compressed / fp32 |\n",
           8 * wg_dist_compressed_container(ranks));
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
        wg_net_opts o = {.model = nets[i].model, .int8 = true, .bits = wg_quant_bits_reference(), .act = WG_ACT_FIT,
                         .e2 = WG_E2_FLAG, .batch = 1, .h = nets[i].hw, .w = nets[i].hw, .c = nets[i].c,
                         .classes = nets[i].classes, .seed = 1};
        char err[512];
        wg_net *net = wg_net_create(&o, b, err, sizeof(err));
        if (net == NULL) {
            fprintf(stderr, "dist_traffic: %s\n", err);
            return 1;
        }
        int n;
        wg_param *p = wg_net_params(net, &n);
        wg_dist_traffic t = wg_dist_traffic_of(p, n, ranks);
        printf("| %s | %lld | %.2f MB | %.2f MB | %.2f MB | %.2f |\n", nets[i].model, (long long)t.scalars,
               (double)t.bytes_exact / 1e6, (double)t.bytes_compressed / 1e6, (double)t.bytes_fp32 / 1e6,
               (double)t.bytes_compressed / (double)t.bytes_fp32);
        wg_net_free(net);
    }
    wg_backend_free(b);
    return 0;
}
