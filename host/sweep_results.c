/* sweep_results.c: summary.json in, sweep.ini and results.csv/results.md out
 * (sweep_results.h). */
#define _XOPEN_SOURCE 700 /* realpath (XSI) */
#include "sweep_results.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

enum { MAX_SUMMARY = 1 << 16 }; /* bytes; a summary.json is one line */

const char *wg_point_status_word(wg_point_state s)
{
    switch (s) {
    case WG_POINT_PENDING: return "pending";
    case WG_POINT_DONE: return "done";
    case WG_POINT_SKIPPED: return "skipped-done";
    case WG_POINT_FAILED: return "failed";
    case WG_POINT_INTERRUPTED: return "interrupted";
    }
    return "?";
}

/* ---- summary.json ---------------------------------------------------------------------- */

static bool read_text(const char *path, char **text, char *err, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, n, "%s: cannot open: %s", path, strerror(errno)), false;
    *text = malloc(MAX_SUMMARY + 1);
    errno = 0;
    size_t len = *text ? fread(*text, 1, MAX_SUMMARY + 1, f) : 0;
    int rerr = !*text ? ENOMEM : ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (rerr) return snprintf(err, n, "%s: cannot read: %s", path, strerror(rerr)), false;
    if (len > MAX_SUMMARY) return snprintf(err, n, "%s: larger than %d bytes: not a summary", path, MAX_SUMMARY), false;
    (*text)[len] = '\0';
    return true;
}

static bool number(const cJSON *root, const char *key, double *out, const char *path, char *err, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return snprintf(err, n, "%s: \"%s\" is %s: expected a number", path, key, v ? "not a number" : "missing"),
               false;
    *out = v->valuedouble;
    return true;
}

bool wg_point_read_summary(wg_point *pt, char *err, size_t errlen)
{
    char path[WG_SWEEP_MAX_PATH + 16];
    snprintf(path, sizeof path, "%s/summary.json", pt->dir);
    char *text = NULL;
    bool ok = read_text(path, &text, err, errlen);
    cJSON *root = ok ? cJSON_Parse(text) : NULL;
    if (ok && !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object (the file of an interrupted write? delete it to run the point "
                              "again)", path);
        ok = false;
    }
    ok = ok && number(root, "test_acc", &pt->test_acc, path, err, errlen) &&
         number(root, "val_acc", &pt->val_acc, path, err, errlen) &&
         number(root, "train_img_per_s", &pt->img_per_s, path, err, errlen) &&
         number(root, "wall_s", &pt->wall_s, path, err, errlen);
    pt->have_summary = ok;
    cJSON_Delete(root);
    free(text);
    return ok;
}

/* ---- writing files atomically ---------------------------------------------------------- */

typedef void (*writer_fn)(FILE *f, const wg_sweep *sw, const wg_point *pts);

/* Write OUT/name through a temporary file and a rename. */
static bool write_atomic(const wg_sweep *sw, const char *name, writer_fn fn, const wg_point *pts)
{
    char path[WG_SWEEP_MAX_PATH + 32], tmp[WG_SWEEP_MAX_PATH + 40];
    snprintf(path, sizeof path, "%s/%s", sw->out, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return fprintf(stderr, "wageubn sweep: cannot write %s: %s\n", tmp, strerror(errno)), false;
    fn(f, sw, pts);
    bool ok = fflush(f) == 0 && !ferror(f);
    int e = errno;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return true;
    fprintf(stderr, "wageubn sweep: cannot write %s: %s\n", path, strerror(ok ? errno : e));
    remove(tmp);
    return false;
}

/* ---- sweep.ini ---------------------------------------------------------------------- */

static void write_resolved(FILE *f, const wg_sweep *sw, const wg_point *pts)
{
    (void)pts;
    char base[PATH_MAX], when[64];
    if (!realpath(sw->base, base)) snprintf(base, sizeof base, "%s", sw->base);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
    fprintf(f, "; The sweep as wageubn sweep ran it (%s), from %s: base resolved,\n"
               "; the command line's --set merged into [set]. It is a sweep file itself.\n",
            when, sw->path);
    fprintf(f, "[sweep]\nbase = %s\nout = %s\n", base, sw->out);
    fprintf(f, "\n[set]\n");
    for (int i = 0; i < sw->nset; i++) {
        const char *eq = strchr(sw->set[i].assign, '=');
        fprintf(f, "%s = %s%s\n", sw->set[i].key, eq + 1, sw->set[i].line ? "" : " ; from --set");
    }
    fprintf(f, "\n[grid]\n");
    for (int i = 0; i < sw->naxes; i++) {
        const wg_sweep_axis *a = &sw->axes[i];
        for (int j = 0; j < a->nkeys; j++) fprintf(f, "%s%s", j ? " + " : "", a->keys[j]);
        for (int v = 0; v < a->nvalues; v++) {
            bool shared = wg_sweep_value_shared(a, v);
            fprintf(f, "%s%s", v ? ", " : " = ", shared ? "" : "(");
            for (int j = 0; j < (shared ? 1 : a->nkeys); j++) fprintf(f, "%s\"%s\"", j ? ", " : "", a->values[v][j]);
            fprintf(f, "%s", shared ? "" : ")");
        }
        fprintf(f, "\n");
    }
}

bool wg_sweep_write_resolved(const wg_sweep *sw) { return write_atomic(sw, "sweep.ini", write_resolved, NULL); }

/* ---- results.csv and results.md --------------------------------------------------------------- */

/* The status column: "done", "failed (exit 1)", ... */
static void status_text(const wg_point *pt, char *buf, size_t n)
{
    bool why = pt->state == WG_POINT_FAILED || pt->state == WG_POINT_INTERRUPTED;
    snprintf(buf, n, "%s%s%s%s", wg_point_status_word(pt->state), why ? " (" : "", why ? pt->why : "", why ? ")" : "");
}

/* A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* A Markdown table cell: '|' escaped. */
static void md_field(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

/* The numbers of a row, as text ("" where there is none): test %, val %, img/s, s. */
static void row_numbers(const wg_point *pt, bool csv, char num[4][32])
{
    for (int i = 0; i < 4; i++) num[i][0] = '\0';
    if (!pt->have_summary) return;
    snprintf(num[0], 32, csv ? "%.4f" : "%.2f", 100 * pt->test_acc);
    if (pt->has_val) snprintf(num[1], 32, csv ? "%.4f" : "%.2f", 100 * pt->val_acc);
    snprintf(num[2], 32, csv ? "%.2f" : "%.0f", pt->img_per_s);
    snprintf(num[3], 32, csv ? "%.2f" : "%.0f", pt->wall_s);
}

/* One column per swept key (tied keys too): its name, or its value at point p. */
typedef void (*field_fn)(FILE *f, const char *s);
static void key_columns(FILE *f, const wg_sweep *sw, int p, bool short_keys, const char *sep, field_fn field)
{
    int idx[WG_SWEEP_MAX_AXES] = {0};
    if (p >= 0) wg_sweep_point_index(sw, p, idx);
    for (int i = 0; i < sw->naxes; i++)
        for (int j = 0; j < sw->axes[i].nkeys; j++) {
            const char *key = sw->axes[i].keys[j];
            fputs(sep, f);
            field(f, p < 0 ? (short_keys ? wg_sweep_short_key(key) : key) : sw->axes[i].values[idx[i]][j]);
        }
}

static void write_csv(FILE *f, const wg_sweep *sw, const wg_point *pts)
{
    char num[4][32], status[160];
    fprintf(f, "point");
    key_columns(f, sw, -1, false, ",", csv_field);
    fprintf(f, ",test_acc_pct,val_acc_pct,train_img_per_s,wall_s,status,dir\n");
    for (int p = 0; p < sw->npoints; p++) {
        fprintf(f, "%d", p + 1);
        key_columns(f, sw, p, false, ",", csv_field);
        row_numbers(&pts[p], true, num);
        status_text(&pts[p], status, sizeof status);
        fprintf(f, ",%s,%s,%s,%s,", num[0], num[1], num[2], num[3]);
        csv_field(f, status);
        fputc(',', f);
        csv_field(f, pts[p].dir);
        fputc('\n', f);
    }
}

static void write_md(FILE *f, const wg_sweep *sw, const wg_point *pts)
{
    char num[4][32], status[160];
    fprintf(f, "# Sweep %s\n\nBase config `%s`; %d point%s; one run directory per point under `%s`.\n\n| point",
            sw->path, sw->base, sw->npoints, sw->npoints == 1 ? "" : "s", sw->out);
    key_columns(f, sw, -1, true, " | ", md_field);
    fprintf(f, " | test acc (%%) | val acc (%%) | train img/s | wall (s) | status |\n|---:|");
    for (int i = 0; i < sw->naxes; i++)
        for (int j = 0; j < sw->axes[i].nkeys; j++) fprintf(f, "---|");
    fprintf(f, "---:|---:|---:|---:|---|\n");
    for (int p = 0; p < sw->npoints; p++) {
        fprintf(f, "| %d", p + 1);
        key_columns(f, sw, p, false, " | ", md_field);
        row_numbers(&pts[p], false, num);
        status_text(&pts[p], status, sizeof status);
        fprintf(f, " | %s | %s | %s | %s | ", num[0], num[1], num[2], num[3]);
        md_field(f, status);
        fprintf(f, " |\n");
    }
}

bool wg_sweep_write_results(const wg_sweep *sw, const wg_point *pts)
{
    bool csv = write_atomic(sw, "results.csv", write_csv, pts);
    bool md = write_atomic(sw, "results.md", write_md, pts);
    return csv && md;
}
