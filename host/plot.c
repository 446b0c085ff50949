/* plot.c: wageubn plot (plot.h): metrics.jsonl -> a gnuplot script -> one PNG. */
#define _XOPEN_SOURCE 700 /* getline, posix_spawn, mkstemp; realpath (XSI) */
#include "plot.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum { MAX_RUNS = 32, NAME_LEN = 128, PATH_LEN = 4096 };
enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, N_SPLITS };

static const char *const k_splits[N_SPLITS] = {"train", "val", "test"};
static const char *const k_split_style[N_SPLITS] = {
    "with lines dt 1",                   /* train: solid, one point per log line */
    "with linespoints dt 3 pt 6 ps 0.8", /* val: dotted, open circles (one per evaluation) */
    "with linespoints dt 2 pt 7 ps 0.8", /* test: dashed, filled circles */
};
/* one colour per run (Tableau 10), repeating after ten */
static const char *const k_colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

extern char **environ;

typedef struct sample {
    double epoch, loss, acc;
} sample;

typedef struct series {
    sample *v;
    size_t n, cap;
} series;

typedef struct run {
    const char *dir;
    char name[NAME_LEN]; /* the directory's base name, for the legend */
    series s[N_SPLITS];
    long nonfinite; /* lines whose loss is null (nan), drawn as gaps */
} run;

typedef struct plot_args {
    const char *dirs[MAX_RUNS];
    int n;
    const char *out, *title;
    bool keep_script;
} plot_args;

/* ---- reading metrics.jsonl --------------------------------------------------------------- */

static bool push(series *s, sample x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        sample *v = realloc(s->v, cap * sizeof *v);
        if (!v) return false;
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = x;
    return true;
}

static bool field(const cJSON *o, const char *key, double *out, const char *path, long line)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v)) return *out = v->valuedouble, true;
    if (cJSON_IsNull(v)) return *out = NAN, true; /* a gap in the curve (train.c writes null for nan) */
    fprintf(stderr, "wageubn plot: %s:%ld: \"%s\" is %s: expected a number\n", path, line, key,
            v ? "not a number" : "missing");
    return false;
}

/* One line: an object with split, epoch, loss and acc. Splits other than train, val
 * and test (none today) are skipped, so newer files still plot. */
static bool take_line(run *r, const char *text, size_t len, const char *path, long line)
{
    const char *end = NULL;
    /* the length counts the terminating NUL: cJSON checks it to refuse trailing text */
    cJSON *o = cJSON_ParseWithLengthOpts(text, len + 1, &end, true);
    if (!cJSON_IsObject(o)) {
        long col = end && end >= text ? (long)(end - text) + 1 : 1;
        fprintf(stderr, "wageubn plot: %s:%ld: not a JSON object (column %ld): expected one {\"split\": ..., "
                        "\"epoch\": ..., \"loss\": ..., \"acc\": ...} per line\n", path, line, col);
        cJSON_Delete(o);
        return false;
    }
    const cJSON *split = cJSON_GetObjectItemCaseSensitive(o, "split");
    bool ok = cJSON_IsString(split);
    if (!ok) fprintf(stderr, "wageubn plot: %s:%ld: \"split\" is missing or not a string\n", path, line);
    int k = 0;
    while (ok && k < N_SPLITS && strcmp(split->valuestring, k_splits[k]) != 0) k++;
    sample x;
    if (ok && k < N_SPLITS && field(o, "epoch", &x.epoch, path, line) && field(o, "loss", &x.loss, path, line) &&
        field(o, "acc", &x.acc, path, line)) {
        x.acc *= 100; /* percent */
        r->nonfinite += isnan(x.loss); /* a diverged float run's loss is null */
        if (!push(&r->s[k], x)) ok = false, fprintf(stderr, "wageubn plot: out of memory\n");
    } else if (ok && k < N_SPLITS) {
        ok = false; /* field() said which */
    }
    cJSON_Delete(o);
    return ok;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

static bool read_run(run *r)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wageubn plot: %s: cannot open: %s (expected a run directory of wageubn train)\n", path,
                strerror(errno));
        return false;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t len;
    long line = 0;
    bool ok = true;
    while (ok && (len = getline(&text, &cap, f)) >= 0) {
        line++;
        if (memchr(text, '\0', (size_t)len)) {
            fprintf(stderr, "wageubn plot: %s:%ld: a NUL byte: not a text file\n", path, line);
            ok = false;
        } else if (!blank(text)) {
            ok = take_line(r, text, (size_t)len, path, line);
        }
    }
    free(text);
    fclose(f);
    if (ok && r->nonfinite)
        fprintf(stderr, "wageubn plot: %s: %ld line%s with a null loss (a diverged run?): drawn as gaps\n", path,
                r->nonfinite, r->nonfinite == 1 ? "" : "s");
    if (ok && r->s[SPLIT_TRAIN].n + r->s[SPLIT_VAL].n + r->s[SPLIT_TEST].n == 0) {
        fprintf(stderr, "wageubn plot: %s: no train, val or test lines: nothing to plot\n", path);
        ok = false;
    }
    return ok;
}

/* The legend's name of a run: the base name of the directory as given ("run/" too; a
 * link keeps its own name, so links name runs), or of its real path for "." and "..". */
static void run_name(const char *dir, char *out, size_t n)
{
    char buf[PATH_MAX];
    for (int pass = 0; pass < 2; pass++) {
        const char *d = pass == 0 ? dir : realpath(dir, buf) ? buf : dir;
        size_t len = strlen(d);
        while (len > 1 && d[len - 1] == '/') len--;
        size_t start = len;
        while (start > 0 && d[start - 1] != '/') start--;
        snprintf(out, n, "%.*s", (int)(len - start), d + start);
        if (strcmp(out, ".") && strcmp(out, "..")) return;
    }
}

/* ---- the gnuplot script -------------------------------------------------------------------- */

/* A gnuplot single-quoted string: '' stands for one quote. */
static void quoted(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('\'', f);
}

static void data_blocks(FILE *f, const run *runs, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < N_SPLITS; k++) {
            const series *s = &runs[i].s[k];
            if (s->n == 0) continue;
            fprintf(f, "$run%d_%s << EOD\n", i + 1, k_splits[k]);
            for (size_t j = 0; j < s->n; j++) {
                const double x[3] = {s->v[j].epoch, s->v[j].loss, s->v[j].acc};
                for (int c = 0; c < 3; c++) /* NaN: gnuplot leaves the point out */
                    isfinite(x[c]) ? fprintf(f, "%s%.6g", c ? " " : "", x[c]) : fprintf(f, "%sNaN", c ? " " : "");
                fputc('\n', f);
            }
            fprintf(f, "EOD\n");
        }
}

/* One panel: column 2 (loss) or 3 (accuracy) of every series. */
static void panel(FILE *f, const run *runs, int n, int column)
{
    const char *sep = "plot ";
    for (int i = 0; i < n; i++)
        for (int k = 0; k < N_SPLITS; k++) {
            if (runs[i].s[k].n == 0) continue;
            char title[NAME_LEN + 8];
            snprintf(title, sizeof title, "%s %s", runs[i].name, k_splits[k]);
            fprintf(f, "%s$run%d_%s using 1:%d %s lw 1.5 lc rgb '%s' title ", sep, i + 1, k_splits[k], column,
                    k_split_style[k], k_colours[i % 10]);
            quoted(f, title);
            sep = ", \\\n     ";
        }
    fprintf(f, "\n");
}

static void write_script(FILE *f, const run *runs, int n, const char *png, const char *title)
{
    fprintf(f, "# wageubn plot: training curves of %d run%s. Restyle and redraw with `gnuplot THIS_FILE`.\n", n,
            n == 1 ? "" : "s");
    /* pngcairo draws dashes and anti-aliased lines; gnuplot builds without cairo have png */
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
               "    set terminal pngcairo size 1400,520 noenhanced font ',10'\n"
               "} else {\n"
               "    set terminal png size 1400,520 noenhanced\n"
               "}\n"
               "set output ");
    quoted(f, png);
    fprintf(f, "\n");
    data_blocks(f, runs, n);
    fprintf(f, "set multiplot layout 1,2 title ");
    quoted(f, title);
    fprintf(f, " font ',13'");
    fprintf(f, "\nset grid\nset xrange [0:*]\nset xlabel 'epoch'\nset key top right\nset ylabel 'loss'\n");
    panel(f, runs, n, 2);
    fprintf(f, "unset key\nset ylabel 'accuracy (%%)'\n"); /* one legend, in the loss panel */
    panel(f, runs, n, 3);
    fprintf(f, "unset multiplot\nunset output\n");
}

/* ---- running gnuplot ---------------------------------------------------------------------- */

/* gnuplot's path on PATH into out; false when there is none. */
static bool find_gnuplot(char *out, size_t n)
{
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(out, n, "%.*s/gnuplot", (int)len, len ? path : ".");
        if (access(out, X_OK) == 0) return true;
        path += len + (path[len] == ':');
    }
    return false;
}

static bool run_gnuplot(const char *gnuplot, const char *script)
{
    char *argv[] = {(char *)"gnuplot", (char *)script, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, gnuplot, NULL, NULL, argv, environ), status = 0;
    if (rc != 0) return fprintf(stderr, "wageubn plot: cannot run %s: %s\n", gnuplot, strerror(rc)), false;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return fprintf(stderr, "wageubn plot: waiting for gnuplot: %s\n", strerror(errno)), false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    fprintf(stderr, "wageubn plot: gnuplot failed (%s %d) on the script %s\n",
            WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), script);
    return false;
}

/* The script's path: FILE.gp next to FILE.png (kept), or a temporary file. */
static FILE *open_script(const plot_args *a, char *path, size_t n)
{
    if (a->keep_script) {
        size_t len = strlen(a->out);
        if (len > 4 && strcmp(a->out + len - 4, ".png") == 0) len -= 4;
        snprintf(path, n, "%.*s.gp", (int)len, a->out);
        FILE *f = fopen(path, "w");
        if (!f) fprintf(stderr, "wageubn plot: cannot write %s: %s\n", path, strerror(errno));
        return f;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(path, n, "%s/wageubn-plot-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) fprintf(stderr, "wageubn plot: cannot create a temporary file %s: %s\n", path, strerror(errno));
    return f;
}

/* Write the script, run gnuplot, check the PNG. */
static int draw(const plot_args *a, const run *runs, const char *gnuplot)
{
    char script[PATH_LEN], title[NAME_LEN];
    snprintf(title, sizeof title, "%s", a->title ? a->title : a->n == 1 ? runs[0].name : "");
    struct stat st;
    bool existed = stat(a->out, &st) == 0;
    FILE *probe = fopen(a->out, "wb"); /* a PNG path gnuplot cannot open: say so in our words */
    if (!probe) return fprintf(stderr, "wageubn plot: cannot write %s: %s\n", a->out, strerror(errno)), EXIT_FAILED;
    fclose(probe);
    char png[PATH_MAX]; /* absolute, so a kept script redraws the same file from anywhere */
    if (!realpath(a->out, png)) snprintf(png, sizeof png, "%s", a->out);
    FILE *f = open_script(a, script, sizeof script);
    bool ok = f != NULL;
    if (ok) write_script(f, runs, a->n, png, title);
    if (ok && fclose(f) != 0) ok = false, fprintf(stderr, "wageubn plot: cannot write %s\n", script);
    ok = ok && run_gnuplot(gnuplot, script);
    if (ok && (stat(a->out, &st) != 0 || st.st_size == 0)) {
        fprintf(stderr, "wageubn plot: gnuplot wrote no image to %s (the script: %s)\n", a->out, script);
        ok = false;
    }
    if (ok && !a->keep_script) remove(script); /* a failed script stays, for the bug report */
    if (!ok && !existed) remove(a->out);        /* no empty PNG left behind */
    if (!ok) return EXIT_FAILED;
    printf("wageubn plot: %s (%d run%s)%s%s\n", a->out, a->n, a->n == 1 ? "" : "s",
           a->keep_script ? "; gnuplot script: " : "", a->keep_script ? script : "");
    return EXIT_DONE;
}

/* ---- the command line ----------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, plot_args *a, char *def_out, size_t n)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--out") || !strcmp(s, "--title")) {
            if (i + 1 == argc) return fprintf(stderr, "wageubn plot: %s needs a value\n", s), EXIT_USAGE;
            *(!strcmp(s, "--out") ? &a->out : &a->title) = argv[++i];
        } else if (!strcmp(s, "--keep-script")) {
            a->keep_script = true;
        } else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            return -1;
        } else if (s[0] == '-') {
            return fprintf(stderr, "wageubn plot: unknown option '%s' (expected --out, --title or --keep-script)\n",
                           s), EXIT_USAGE;
        } else if (a->n == MAX_RUNS) {
            return fprintf(stderr, "wageubn plot: more than %d runs\n", MAX_RUNS), EXIT_USAGE;
        } else {
            a->dirs[a->n++] = s;
        }
    }
    if (a->n == 0) return fprintf(stderr, "wageubn plot: no run directory given\n"), EXIT_USAGE;
    if (!a->out) snprintf(def_out, n, "%s%s", a->n == 1 ? a->dirs[0] : "", a->n == 1 ? "/curves.png" : "curves.png");
    if (!a->out) a->out = def_out;
    return 0;
}

int wg_plot_main(int argc, char **argv)
{
    static const char *const usage = "usage: wageubn plot RUN_DIR [RUN_DIR...] [--out FILE.png] [--title T] "
                                     "[--keep-script]\n";
    plot_args a = {0};
    char def_out[PATH_LEN], gnuplot[PATH_LEN];
    int rc = parse_args(argc, argv, &a, def_out, sizeof def_out);
    if (rc) return fputs(usage, rc < 0 ? stdout : stderr), rc < 0 ? EXIT_DONE : rc;
    run *runs = calloc((size_t)a.n, sizeof *runs);
    if (!runs) return fprintf(stderr, "wageubn plot: out of memory\n"), EXIT_FAILED;
    bool ok = true;
    for (int i = 0; ok && i < a.n; i++) {
        runs[i].dir = a.dirs[i];
        run_name(a.dirs[i], runs[i].name, sizeof runs[i].name);
        ok = read_run(&runs[i]);
    }
    rc = !ok ? EXIT_FAILED : EXIT_DONE;
    if (ok && !find_gnuplot(gnuplot, sizeof gnuplot)) {
        fprintf(stderr, "wageubn plot: gnuplot was not found (Debian: apt-get install gnuplot-nox)\n");
        rc = EXIT_FAILED;
    } else if (ok) {
        rc = draw(&a, runs, gnuplot);
    }
    for (int i = 0; i < a.n; i++)
        for (int k = 0; k < N_SPLITS; k++) free(runs[i].s[k].v);
    free(runs);
    return rc;
}
