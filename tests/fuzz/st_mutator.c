/* st_mutator.c: a libFuzzer custom mutator for safetensors inputs (fuzz_safetensors.c,
 * fuzz_checkpoint.c), linked by scripts/fuzz.sh only (it needs libFuzzer's
 * LLVMFuzzerMutate; the corpus replays of `make test` do not use it).
 *
 * Random bytes rarely keep a safetensors file's length field and JSON header
 * consistent, so half the time the header alone is mutated: [length][header][data]
 * -> the data set aside, the header mutated, the data put back after it and the
 * length rewritten. The other half mutates the whole input, as usual. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef WG_FUZZ_MUTATOR
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint64_t hlen = 0;
    for (int i = 7; size >= 8 && i >= 0; i--) hlen = hlen << 8 | data[i];
    if (seed % 2 == 0 || size < 8 || hlen > size - 8 || max_size < size) return LLVMFuzzerMutate(data, size, max_size);
    static uint8_t saved[1 << 16];
    size_t dlen = size - 8 - (size_t)hlen;
    if (dlen > sizeof saved) return LLVMFuzzerMutate(data, size, max_size);
    memcpy(saved, data + 8 + hlen, dlen);
    size_t nh = LLVMFuzzerMutate(data + 8, (size_t)hlen, max_size - 8 - dlen);
    memcpy(data + 8 + nh, saved, dlen);
    for (int i = 0; i < 8; i++) data[i] = (uint8_t)((uint64_t)nh >> (8 * i));
    return 8 + nh + dlen;
}
#endif
