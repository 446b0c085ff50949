/* sweep.h: wageubn sweep SWEEP.ini [--dry-run] [--set section.key=value ...]
 *
 * Trains one run per point of a grid of config overrides (the file format:
 * sweep_file.h). Before anything runs, every point's config is loaded with
 * wg_config_load, so a bad key or value stops the sweep at once with the loader's
 * message; a point directory whose result or checkpoint would be reused must hold
 * this point's config (else the sweep would mix settings in one table).
 *
 * Each point runs as a child process, `wageubn train BASE --set ... --out POINTDIR`,
 * its stdout and stderr appended to POINTDIR/train.log, in its own process group (a
 * Ctrl-C reaches the sweep alone, which forwards it once). A point whose summary.json
 * exists is done and skipped, so a killed sweep resumes where it stopped; a point with
 * latest.safetensors (a checkpoint of an interrupted run) gets --resume POINTDIR. A
 * failed point is recorded and the others still run. SIGINT or SIGTERM (SIGHUP too,
 * passed on as SIGTERM): forwarded to the running point, which checkpoints and stops;
 * the sweep stops when it exits and the same command resumes it. A point is done when
 * its summary.json exists: delete that file and the point's final checkpoint is
 * evaluated again; delete the directory and the point is trained again.
 *
 * The sweep directory receives sweep.ini (the resolved sweep, written at the start)
 * and, after every point, results.csv and results.md (one row per point: its values,
 * test and validation accuracy in %, training images/s, wall seconds, status), each
 * written to a temporary file and renamed. */
#ifndef WG_SWEEP_H
#define WG_SWEEP_H

#ifdef __cplusplus
extern "C" {
#endif

/* argv: what follows the word "sweep". Returns the exit status: 0 every point done,
 * 1 a point failed, the sweep was interrupted or a result could not be written,
 * 2 a bad command line or sweep file (nothing ran). */
int wg_sweep_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
