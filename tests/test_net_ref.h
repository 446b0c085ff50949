/* test_net_ref.h: helpers of the whole-network tests (test_net.c, test_models.c).
 * Include <cmocka.h> and net.h before this header. */
#ifndef TEST_NET_REF_H
#define TEST_NET_REF_H

#include <stdint.h>
#include <stdlib.h>

/* FNV-1a over every parameter's master weights: equal hashes, identical weights. */
static inline uint64_t tn_hash_params(wg_net *net)
{
    int n;
    wg_param *ps = wg_net_params(net, &n);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        size_t nb = wg_tensor_nbytes(&ps[i].master);
        unsigned char *buf = malloc(nb);
        assert_non_null(buf);
        wg_tensor_download(&ps[i].master, buf);
        for (size_t k = 0; k < nb; k++) h = (h ^ buf[k]) * 1099511628211ull;
        free(buf);
    }
    return h;
}

#endif
