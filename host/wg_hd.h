/* wg_hd.h: the WG_HD qualifier for the shared integer formulas.
 *
 * Design principle 2 ("one formula, two launchers"): every per-element integer
 * formula lives once, in headers of static inline functions that compile both as
 * C (the CPU backend) and as CUDA device code (the CUDA backend). Marking them
 * WG_HD makes nvcc emit a host and a device version; a C compiler sees plain
 * `static inline`. */
#ifndef WG_HD_H
#define WG_HD_H

#if defined(__CUDACC__)
#define WG_HD static inline __host__ __device__
#else
#define WG_HD static inline
#endif

#endif
