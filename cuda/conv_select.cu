/* conv_select.cu: the output hash of the convolution tuning (conv_select.cuh). */
#include "conv_select.cuh"
#include "launch.cuh"

/* splitmix64's finalizer: every bit of the word and of its index moves every bit. */
static __device__ uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__global__ void hash_kernel(const uint32_t *p, int64_t words, unsigned long long *out)
{
    unsigned long long s = 0;
    WG_GRID_STRIDE_LOOP(i, words) { s += mix64((uint64_t)p[i] ^ ((uint64_t)i << 32)); }
    if (s != 0) atomicAdd(out, s);
}

uint64_t wg_hash_cuda(const void *p, size_t bytes, unsigned long long *d_word, cudaStream_t stream)
{
    WG_ASSERT((bytes & 3) == 0, "hash of %zu bytes: not whole words", bytes);
    int64_t words = (int64_t)(bytes / 4);
    wg_max_reset(d_word, stream);
    hash_kernel<<<wg_grid_for(words), WG_CUDA_BLOCK, 0, stream>>>((const uint32_t *)p, words, d_word);
    WG_CUDA_CHECK_LAUNCH("hash_kernel");
    return wg_max_read(d_word, stream);
}
