/* sweep.c: wageubn sweep (sweep.h): plan the points, run each as a child process,
 * record the results (sweep_results.c). */
#define _POSIX_C_SOURCE 200809L /* posix_spawn, sigaction, open_memstream, readlink */
#include "sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "run_dir.h"
#include "sweep_file.h"
#include "sweep_results.h"

enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum { WARN_SEEN = 8192 }; /* bytes of warnings already printed */

extern char **environ;

/* The running child and the signal that asks the sweep to stop. Globals because a
 * signal handler reaches nothing else: run_child sets g_child, on_signal sets g_stop,
 * run_point and run_sweep read g_stop. */
static volatile sig_atomic_t g_child;
static volatile sig_atomic_t g_stop;

/* A hang-up (the terminal closed) reaches the point as SIGTERM, which makes the run
 * write a checkpoint before it stops; its own default would end it without one. */
static void on_signal(int sig)
{
    g_stop = sig;
    if (g_child > 0) kill((pid_t)g_child, sig == SIGHUP ? SIGTERM : sig);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: wageubn sweep SWEEP.ini [--dry-run] [--set section.key=value ...]\n"
                 "  trains one run per point of the sweep file's [grid] (format: host/sweep_file.h);\n"
                 "  --dry-run lists the points and their directories without running them\n");
}

static bool exists(const char *dir, const char *name)
{
    char path[WG_SWEEP_MAX_PATH + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* mkdir -p; false with the message printed. */
static bool make_dirs(const char *path)
{
    char err[WG_SWEEP_MAX_PATH + 128];
    if (wg_make_dirs(path, err, sizeof err)) return true;
    fprintf(stderr, "wageubn sweep: %s\n", err);
    return false;
}

/* One argument of a command line as a shell reads it: quoted when it holds anything
 * but letters, digits and "_./=+,:-". */
static void print_arg(FILE *f, const char *a)
{
    bool plain = *a != '\0';
    for (const char *c = a; *c; c++)
        plain &= (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 strchr("_./=+,:-", *c) != NULL;
    if (plain) {
        fputs(a, f);
        return;
    }
    fputc('\'', f);
    for (; *a; a++) a[0] == '\'' ? fputs("'\\''", f) : fputc(*a, f);
    fputc('\'', f);
}

/* ---- planning ------------------------------------------------------------------------ */

/* Print each warning line of warn once per sweep (every point shares most of them). */
static void print_warnings(const char *warn, const char *label, char *seen)
{
    for (const char *l = warn; *l;) {
        size_t n = strcspn(l, "\n");
        char line[WG_CONFIG_ERR_LEN];
        snprintf(line, sizeof line, "%.*s\n", (int)(n < sizeof line - 2 ? n : sizeof line - 2), l);
        if (!strstr(seen, line)) {
            fprintf(stderr, "wageubn sweep: warning (%s): %s", label, line);
            size_t used = strlen(seen);
            if (used + strlen(line) < WARN_SEEN) strcpy(seen + used, line);
        }
        l += n + (l[n] == '\n');
    }
}

/* Print the first key whose written value differs between want and had:
 * "[train] epochs = 2, but DIR/config.ini has epochs = 5". */
static void print_difference(const wg_config *want, const wg_config *had, const char *path)
{
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    FILE *fa = open_memstream(&ta, &la), *fb = open_memstream(&tb, &lb);
    if (fa) wg_config_write(want, fa), fclose(fa);
    if (fb) wg_config_write(had, fb), fclose(fb);
    const char *a = ta, *b = tb;
    int section = 0; /* length of the last "[section]" line at a's start */
    const char *sec = "";
    while (a && b && *a && *b) {
        int na = (int)strcspn(a, "\n"), nb = (int)strcspn(b, "\n");
        if (*a == '[') sec = a, section = na;
        if (*a != ';' && *a != '[' && (na != nb || memcmp(a, b, (size_t)na) != 0)) {
            fprintf(stderr, "%.*s %.*s, but %s has %.*s", section, sec, na, a, path, nb, b);
            break;
        }
        a += na + (a[na] == '\n');
        b += nb + (b[nb] == '\n');
    }
    free(ta);
    free(tb);
}

/* The config.ini of a point directory must be this point's config; false with the
 * message printed. */
static bool same_config(const wg_config *want, const wg_point *pt, const char *at)
{
    char path[WG_SWEEP_MAX_PATH + 16], e[WG_CONFIG_ERR_LEN], w[WG_CONFIG_ERR_LEN];
    snprintf(path, sizeof path, "%s/config.ini", pt->dir);
    wg_config had;
    if (!wg_config_load(&had, path, NULL, 0, e, sizeof e, w, sizeof w)) {
        fprintf(stderr, "wageubn sweep: %s: the point's earlier run left a config that does not load (%s); delete "
                        "%s to run the point again\n", at, e, pt->dir);
        return false;
    }
    if (wg_config_equal(want, &had)) return true;
    fprintf(stderr, "wageubn sweep: %s: %s was run with other settings: ", at, pt->dir);
    print_difference(want, &had, path);
    fprintf(stderr, ". Delete %s to run the point with this sweep's settings, or give the sweep another [sweep] "
                    "out\n", pt->dir);
    return false;
}

/* Load point p's config as its run will (base, overrides, --out last) and look at
 * what its directory already holds. False with the message printed. */
static bool plan_point(const wg_sweep *sw, int p, wg_point *pt, char *seen)
{
    wg_sweep_overrides ov;
    wg_sweep_point_overrides(sw, p, &ov);
    wg_sweep_point_dir(sw, p, pt->dir, sizeof pt->dir);
    wg_sweep_point_label(sw, p, pt->label, sizeof pt->label);
    snprintf(ov.text[ov.n], sizeof ov.text[0], "output.dir=%s", pt->dir);
    ov.v[ov.n] = ov.text[ov.n];
    ov.n++;
    wg_config cfg;
    char err[2 * WG_CONFIG_ERR_LEN], warn[4 * WG_CONFIG_ERR_LEN];
    if (!wg_config_load(&cfg, sw->base, ov.v, ov.n, err, sizeof err, warn, sizeof warn)) {
        fprintf(stderr, "wageubn sweep: %s: point %d/%d (%s): %s\n", sw->path, p + 1, sw->npoints, pt->label, err);
        return false;
    }
    print_warnings(warn, pt->label, seen);
    pt->has_val = cfg.data.val_split > 0;
    pt->finished = exists(pt->dir, "summary.json");
    pt->resume = !pt->finished && exists(pt->dir, "latest.safetensors");
    /* a result or a checkpoint would be reused: it must come from these settings (a
     * point that left neither just runs again, with whatever the sweep now says) */
    char at[sizeof pt->label + 32];
    snprintf(at, sizeof at, "point %d/%d (%s)", p + 1, sw->npoints, pt->label);
    bool reused = pt->finished || pt->resume;
    return !reused || !exists(pt->dir, "config.ini") || same_config(&cfg, pt, at);
}

static bool plan(const wg_sweep *sw, wg_point *pts)
{
    FILE *f = fopen(sw->base, "r");
    if (!f) {
        fprintf(stderr, "wageubn sweep: %s:%d: [sweep] base: cannot open %s: %s\n", sw->path, sw->base_line, sw->base,
                strerror(errno));
        return false;
    }
    fclose(f);
    char *seen = calloc(1, WARN_SEEN);
    bool ok = seen != NULL;
    for (int p = 0; ok && p < sw->npoints; p++) ok = plan_point(sw, p, &pts[p], seen);
    free(seen);
    return ok;
}

/* The command line of point p: EXE train BASE --set ... --out DIR [--resume DIR]. */
static void point_argv(const char *exe, const wg_sweep *sw, const wg_point *pt, wg_sweep_overrides *ov, char **argv)
{
    int a = 0;
    argv[a++] = (char *)exe;
    argv[a++] = "train";
    argv[a++] = (char *)sw->base;
    for (int i = 0; i < ov->n; i++) argv[a++] = "--set", argv[a++] = ov->text[i];
    argv[a++] = "--out";
    argv[a++] = (char *)pt->dir;
    if (pt->resume) argv[a++] = "--resume", argv[a++] = (char *)pt->dir;
    argv[a] = NULL;
}

static void print_plan(const wg_sweep *sw, const wg_point *pts)
{
    printf("%d point%s of %s (base %s), in %s:\n", sw->npoints, sw->npoints == 1 ? "" : "s", sw->path, sw->base,
           sw->out);
    for (int p = 0; p < sw->npoints; p++) {
        const wg_point *pt = &pts[p];
        wg_sweep_overrides ov;
        wg_sweep_point_overrides(sw, p, &ov);
        printf("%3d/%d  %-12s %s\n", p + 1, sw->npoints,
               pt->finished ? "[done]" : pt->resume ? "[resume]" : "[to run]", pt->dir);
        char *argv[2 * WG_SWEEP_MAX_OVERRIDES + 10];
        point_argv("wageubn", sw, pt, &ov, argv);
        printf("        ");
        for (int i = 0; argv[i]; i++) putchar(' '), print_arg(stdout, argv[i]);
        putchar('\n');
    }
}

/* ---- running one point ----------------------------------------------------------------- */

/* stdout and stderr to DIR/train.log (appended: a resumed point keeps its history),
 * stdin from /dev/null (the child is not in the terminal's foreground group). */
static int open_log(const wg_point *pt, char *const *argv)
{
    char path[WG_SWEEP_MAX_PATH + 16];
    snprintf(path, sizeof path, "%s/train.log", pt->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) return -1;
    FILE *f = fdopen(dup(fd), "a");
    if (f) {
        time_t now = time(NULL);
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
        fprintf(f, "# wageubn sweep, %s:", when);
        for (int i = 0; argv[i]; i++) fputc(' ', f), print_arg(f, argv[i]);
        fprintf(f, "\n");
        fclose(f);
    }
    return fd;
}

/* Start argv with the log as stdout and stderr, in a process group of its own, and
 * wait for it; *status as waitpid gives it. False with errno-style text in why. */
static bool run_child(char *const *argv, int log, int *status, char *why, size_t n)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, stops, old;
    sigemptyset(&none);
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGHUP);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, log, 1);
    posix_spawn_file_actions_adddup2(&fa, log, 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    /* block the stop signals until g_child is set, so one that arrives now is
     * forwarded exactly once, by the handler, as soon as they are unblocked */
    sigprocmask(SIG_BLOCK, &stops, &old);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
    if (rc == 0) g_child = pid;
    if (rc == 0 && g_stop) kill(pid, g_stop == SIGHUP ? SIGTERM : g_stop); /* asked to stop before it began */
    sigprocmask(SIG_SETMASK, &old, NULL);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) return snprintf(why, n, "cannot start %s: %s", argv[0], strerror(rc)), false;
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR) {
            g_child = 0;
            return snprintf(why, n, "waiting for the point: %s", strerror(errno)), false;
        }
    }
    g_child = 0;
    return true;
}

static void run_point(const char *exe, const wg_sweep *sw, int p, wg_point *pt)
{
    wg_sweep_overrides ov;
    wg_sweep_point_overrides(sw, p, &ov);
    char *argv[2 * WG_SWEEP_MAX_OVERRIDES + 10];
    point_argv(exe, sw, pt, &ov, argv);
    pt->state = WG_POINT_FAILED;
    int log = make_dirs(pt->dir) ? open_log(pt, argv) : -1;
    if (log < 0) {
        snprintf(pt->why, sizeof pt->why, "cannot write %s/train.log", pt->dir);
        return;
    }
    int status = 0;
    bool ran = run_child(argv, log, &status, pt->why, sizeof pt->why);
    close(log);
    if (!ran) return;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFEXITED(status)) snprintf(pt->why, sizeof pt->why, "exit %d", WEXITSTATUS(status));
    else snprintf(pt->why, sizeof pt->why, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (ok) {
        char err[WG_CONFIG_ERR_LEN];
        pt->state = wg_point_read_summary(pt, err, sizeof err) ? WG_POINT_DONE : WG_POINT_FAILED;
        if (pt->state == WG_POINT_FAILED) snprintf(pt->why, sizeof pt->why, "exit 0, no summary.json");
        if (pt->state == WG_POINT_FAILED) fprintf(stderr, "\nwageubn sweep: %s\n", err);
    } else if (g_stop) {
        pt->state = WG_POINT_INTERRUPTED;
    }
}

/* ---- the sweep ----------------------------------------------------------------------- */

/* A point done before this sweep started: skipped, with its summary's numbers. */
static void read_finished(wg_point *pt)
{
    char err[WG_CONFIG_ERR_LEN];
    pt->state = wg_point_read_summary(pt, err, sizeof err) ? WG_POINT_SKIPPED : WG_POINT_FAILED;
    if (pt->state == WG_POINT_FAILED) {
        snprintf(pt->why, sizeof pt->why, "bad summary.json");
        fprintf(stderr, "wageubn sweep: %s\n", err);
    }
}

static void report_point(const wg_point *pt)
{
    char val[32] = "";
    if (pt->have_summary && pt->has_val) snprintf(val, sizeof val, ", val %.2f%%", 100 * pt->val_acc);
    if (pt->state == WG_POINT_DONE || pt->state == WG_POINT_SKIPPED)
        fprintf(stderr, "%s: test %.2f%%%s, %.0f img/s, %.0f s\n",
                pt->state == WG_POINT_DONE ? "done" : "skipped (done before)", 100 * pt->test_acc, val, pt->img_per_s,
                pt->wall_s);
    else
        fprintf(stderr, "%s (%s); the log: %s/train.log\n", wg_point_status_word(pt->state), pt->why, pt->dir);
}

/* Stop signals: the handler forwards them to the running point. A signal the sweep
 * was started with ignored (nohup, a background job of a script) stays ignored, and
 * so it is for the points. */
static void catch_stop_signals(void)
{
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        struct sigaction old, sa = {0};
        sigaction(sigs[i], NULL, &old);
        if (old.sa_handler == SIG_IGN) continue;
        sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns EINTR and resumes */
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static int run_sweep(const wg_sweep *sw, wg_point *pts, const char *exe)
{
    if (!make_dirs(sw->out) || !wg_sweep_write_resolved(sw)) return EXIT_FAILED;
    fprintf(stderr, "sweep: %d point%s of %s in %s\n", sw->npoints, sw->npoints == 1 ? "" : "s", sw->path, sw->out);
    for (int p = 0; p < sw->npoints; p++) /* the table shows done points even if the sweep stops early */
        if (pts[p].finished) read_finished(&pts[p]);
    catch_stop_signals();
    bool results_ok = true;
    for (int p = 0; p < sw->npoints && !g_stop; p++) {
        wg_point *pt = &pts[p];
        fprintf(stderr, "sweep: point %d/%d (%s) ... ", p + 1, sw->npoints, pt->label);
        fflush(stderr);
        if (!pt->finished) {
            if (pt->resume) fprintf(stderr, "resuming ... "), fflush(stderr);
            run_point(exe, sw, p, pt);
        }
        report_point(pt);
        results_ok &= wg_sweep_write_results(sw, pts);
    }
    int count[WG_POINT_INTERRUPTED + 1] = {0};
    for (int p = 0; p < sw->npoints; p++) count[pts[p].state]++;
    if (g_stop) fprintf(stderr, "sweep: stopped by signal %d; the same command resumes the sweep\n", (int)g_stop);
    fprintf(stderr, "sweep: %d done, %d skipped (done before), %d failed, %d interrupted, %d not run; results: "
                    "%s/results.csv, %s/results.md\n", count[WG_POINT_DONE], count[WG_POINT_SKIPPED],
            count[WG_POINT_FAILED], count[WG_POINT_INTERRUPTED], count[WG_POINT_PENDING], sw->out, sw->out);
    bool bad = count[WG_POINT_FAILED] || count[WG_POINT_INTERRUPTED] || count[WG_POINT_PENDING];
    return bad || !results_ok ? EXIT_FAILED : EXIT_DONE;
}

/* ---- the command line ---------------------------------------------------------------- */

static int parse_args(int argc, char **argv, wg_sweep *sw, bool *dry_run)
{
    const char *path = NULL, *sets[WG_SWEEP_MAX_SET + 1];
    int nsets = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), -1;
        if (!strcmp(a, "--dry-run")) {
            *dry_run = true;
        } else if (!strcmp(a, "--set")) {
            if (i + 1 == argc) return fprintf(stderr, "wageubn sweep: --set needs section.key=value\n"), EXIT_USAGE;
            if (nsets == WG_SWEEP_MAX_SET)
                return fprintf(stderr, "wageubn sweep: more than %d --set\n", WG_SWEEP_MAX_SET), EXIT_USAGE;
            sets[nsets++] = argv[++i];
        } else if (a[0] == '-') {
            return fprintf(stderr, "wageubn sweep: unknown option '%s' (expected --dry-run or --set)\n", a), EXIT_USAGE;
        } else if (path) {
            return fprintf(stderr, "wageubn sweep: one sweep file expected, got '%s' and '%s'\n", path, a), EXIT_USAGE;
        } else {
            path = a;
        }
    }
    if (!path) return usage(stderr), EXIT_USAGE;
    char err[2 * WG_CONFIG_ERR_LEN];
    bool ok = wg_sweep_parse(sw, path, err, sizeof err);
    for (int i = 0; ok && i < nsets; i++) ok = wg_sweep_add_set(sw, sets[i], err, sizeof err);
    ok = ok && wg_sweep_check(sw, err, sizeof err);
    if (!ok) return fprintf(stderr, "wageubn sweep: %s\n", err), EXIT_USAGE;
    return 0;
}

int wg_sweep_main(int argc, char **argv)
{
    wg_sweep *sw = calloc(1, sizeof *sw);
    wg_point *pts = NULL;
    bool dry_run = false;
    char exe[PATH_MAX];
    int rc = sw ? parse_args(argc, argv, sw, &dry_run) : EXIT_FAILED;
    if (rc == 0) {
        pts = calloc((size_t)sw->npoints, sizeof *pts);
        rc = !pts ? EXIT_FAILED : plan(sw, pts) ? 0 : EXIT_USAGE;
    }
    if (rc == 0 && dry_run) {
        print_plan(sw, pts);
    } else if (rc == 0) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0) {
            fprintf(stderr, "wageubn sweep: cannot find this program's path (/proc/self/exe): %s\n", strerror(errno));
            rc = EXIT_FAILED;
        } else {
            exe[n] = '\0';
            rc = run_sweep(sw, pts, exe);
        }
    }
    free(pts);
    free(sw);
    return rc < 0 ? EXIT_DONE : rc;
}
