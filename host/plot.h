/* plot.h: wageubn plot RUN_DIR [RUN_DIR...] [--out FILE.png] [--title T] [--keep-script]
 *
 * Training curves of one or more runs as one PNG drawn by gnuplot: two panels side by
 * side, loss against epoch and accuracy (%) against epoch, one colour per run (the
 * legend names each run by its directory's base name); training lines solid, test
 * dashed, validation dotted. The data are each RUN_DIR/metrics.jsonl (one JSON object
 * per line: split, epoch, loss, acc; host/train.c writes them); a line that is not
 * such an object is an error naming file:line.
 *
 * The PNG goes to --out, by default RUN_DIR/curves.png for one run and curves.png in
 * the current directory for several. The gnuplot script holds the series as inline
 * data blocks, so it stands alone: with --keep-script it is kept next to the PNG
 * (FILE.gp) for restyling (`gnuplot FILE.gp` redraws the PNG). */
#ifndef WG_PLOT_H
#define WG_PLOT_H

#ifdef __cplusplus
extern "C" {
#endif

/* argv: what follows the word "plot". Returns the exit status: 0 the PNG is written,
 * 1 a run's metrics could not be read, gnuplot is missing or failed, 2 a bad command
 * line. */
int wg_plot_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
