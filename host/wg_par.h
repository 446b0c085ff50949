/* wg_par.h: when the CPU loops use threads.
 *
 * A parallel region costs a few microseconds of start-up and barrier, and far more
 * when the other core is busy (a waiting thread spins until the descheduled one
 * arrives): loops over fewer than WG_PAR_MIN elements run on the calling thread.
 * Integer results never depend on the split. */
#ifndef WG_PAR_H
#define WG_PAR_H

#define WG_PAR_MIN 32768

#endif
