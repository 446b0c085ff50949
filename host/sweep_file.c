/* sweep_file.c: the sweep file of `wageubn sweep` (sweep_file.h).
 *
 * Parsed by libinih's ini_parse_stream fed one line at a time, as config.c does and for
 * the same reasons: the handler learns the line number (Debian builds libinih without
 * INI_HANDLER_LINENO), over-long lines are rejected instead of split, and leading
 * whitespace is stripped so that libinih's multi-line values never apply. The reader
 * also sees every section header, so an unknown or repeated section is an error even
 * when no key follows it. The first error, by line, wins. */
#include "sweep_file.h"
#include "ini_text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

enum {
    MAX_FILE = 1 << 16, /* bytes; a sweep file is a few hundred */
    SHOW = WG_INI_SHOW, /* characters of a user's text quoted in a message */
    MAX_NAME = 40,      /* characters of one value in a directory name */
};

enum { S_SWEEP, S_SET, S_GRID, N_SECTIONS };
static const char *const k_sections[N_SECTIONS] = {"sweep", "set", "grid"};

typedef struct parse_ctx {
    wg_sweep *sw;
    wg_ini_text t;                /* the file, line by line */
    int line;                     /* the line handed to libinih last */
    int header_line[N_SECTIONS]; /* where each section opened; 0 = not yet */
    int out_line;
    int err_line; /* the line of the error in err; 0 = none */
    int handler_fail;
    char *err;
    size_t errlen;
} parse_ctx;

/* ---- helpers -------------------------------------------------------------------- */

static void put(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && n) vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* Record the error of this line (the first one only); returns 0, libinih's "error". */
static int fail(parse_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parse_ctx *c, int line, const char *fmt, ...)
{
    if (c->err_line) return 0;
    char msg[WG_CONFIG_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->err_line = line;
    put(c->err, c->errlen, "%s:%d: %s", c->sw->path, line, msg);
    return 0;
}

static int find_section(const char *name, size_t n)
{
    for (int i = 0; i < N_SECTIONS; i++)
        if (strlen(k_sections[i]) == n && strncmp(name, k_sections[i], n) == 0) return i;
    return -1;
}

/* "section . key" -> "section.key" in out; false when it is not of that form. */
static bool normalize_key(const char *typed, char out[WG_SWEEP_MAX_KEY])
{
    char buf[WG_SWEEP_MAX_KEY];
    if (strlen(typed) >= sizeof buf) return false;
    strcpy(buf, typed);
    char *dot = strchr(buf, '.');
    if (!dot) return false;
    *dot = '\0';
    const char *s = wg_ini_trim(buf), *k = wg_ini_trim(dot + 1);
    if (!*s || !*k || strpbrk(s, " \t=") || strpbrk(k, " \t=.")) return false;
    snprintf(out, WG_SWEEP_MAX_KEY, "%s.%s", s, k);
    return true;
}

/* A value that is one double-quoted string loses its quotes ("" is the empty value). */
static void unquote(const char *v, char *out, size_t n)
{
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"' && !memchr(v + 1, '"', len - 2))
        snprintf(out, n, "%.*s", (int)(len - 2), v + 1);
    else
        snprintf(out, n, "%s", v);
}

/* ---- [grid] values ---------------------------------------------------------------- */

/* One item of a value list at *s (after any blanks): a quoted string, or the text up
 * to the next character of stops (or the end), blanks trimmed. Advances *s to that
 * character; the caller takes the separator. */
static bool next_item(const char **s, const char *stops, char *out, size_t n, char *why, size_t wn)
{
    const char *p = *s;
    while (*p == ' ' || *p == '\t') p++;
    const char *start = p, *end;
    if (*p == '"') {
        start = ++p;
        end = strchr(p, '"');
        if (!end) return put(why, wn, "a quote is not closed (a value in quotes ends with '\"')"), false;
        p = end + 1;
        while (*p == ' ' || *p == '\t') p++;
        if (*p && !strchr(stops, *p))
            return put(why, wn, "text after a quoted value: expected %s",
                       strchr(stops, ')') ? "',' or ')'" : "',' or the end of the line"), false;
    } else {
        end = p + strcspn(p, stops);
        if (memchr(start, '"', (size_t)(end - start)))
            return put(why, wn, "a quote inside a value: quote the whole value (\"2,3\")"), false;
        p = end;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if (end == start) return put(why, wn, "an empty value (write \"\" for the empty value)"), false;
    }
    if ((size_t)(end - start) >= n) return put(why, wn, "a value longer than %zu characters", n - 1), false;
    snprintf(out, n, "%.*s", (int)(end - start), start);
    *s = p;
    return true;
}

/* "(v1, v2, ...)" at *s: one value per key of the axis into out; *s moves past ')'. */
static bool next_tuple(const char **s, const wg_sweep_axis *a, char (*out)[WG_CONFIG_MAX_STR], char *why, size_t wn)
{
    if (a->nkeys == 1) return put(why, wn, "a tuple '(...)' gives values to keys joined by '+'"), false;
    const char *p = *s + 1;
    for (int j = 0;; j++) {
        if (j == a->nkeys) return put(why, wn, "a tuple of more than %d values (one per key)", a->nkeys), false;
        if (!next_item(&p, ",)", out[j], WG_CONFIG_MAX_STR, why, wn)) return false;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ')' && j + 1 != a->nkeys)
            return put(why, wn, "a tuple of %d values: expected %d, one per key", j + 1, a->nkeys), false;
        if (*p == ')') break;
        if (*p != ',') return put(why, wn, "a '(' is not closed"), false;
        p++;
    }
    *s = p + 1;
    return true;
}

static bool same_value(const wg_sweep_axis *a, int v, int w)
{
    for (int j = 0; j < a->nkeys; j++)
        if (strcmp(a->values[v][j], a->values[w][j]) != 0) return false;
    return true;
}

static bool parse_values(wg_sweep_axis *a, const char *list, char *why, size_t wn)
{
    const char *s = list;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return put(why, wn, "no values: expected v1, v2, ..."), false;
    for (;;) {
        if (a->nvalues == WG_SWEEP_MAX_VALUES) return put(why, wn, "more than %d values", WG_SWEEP_MAX_VALUES), false;
        char(*v)[WG_CONFIG_MAX_STR] = a->values[a->nvalues];
        while (*s == ' ' || *s == '\t') s++;
        bool tuple = *s == '(';
        if (tuple ? !next_tuple(&s, a, v, why, wn) : !next_item(&s, ",", v[0], WG_CONFIG_MAX_STR, why, wn))
            return false;
        for (int j = 1; !tuple && j < a->nkeys; j++) strcpy(v[j], v[0]); /* a plain value: every key's */
        for (int i = 0; i < a->nvalues; i++) {
            char sv[SHOW + 4];
            if (same_value(a, i, a->nvalues))
                return put(why, wn, "value %d repeats value %d ('%s')", a->nvalues + 1, i + 1, wg_ini_show(v[0], sv)),
                       false;
        }
        a->nvalues++;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) return true;
        if (*s != ',') return put(why, wn, "text after a tuple: expected ',' or the end of the line"), false;
        for (s++; *s == ' ' || *s == '\t'; s++) {}
        if (!*s) return put(why, wn, "a value is missing after the last ','"), false;
    }
}

/* "quant.bits_xhat + quant.bits_gamma_beta": the axis's keys. */
static bool parse_axis_keys(wg_sweep_axis *a, const char *name, char *why, size_t wn)
{
    char buf[WG_SWEEP_MAX_TIED * WG_SWEEP_MAX_KEY + 8], s[SHOW + 4];
    if (strlen(name) >= sizeof buf) return put(why, wn, "the key is too long"), false;
    strcpy(buf, name);
    for (char *part = buf, *next; part; part = next) {
        next = strchr(part, '+');
        if (next) *next++ = '\0';
        if (a->nkeys == WG_SWEEP_MAX_TIED)
            return put(why, wn, "more than %d keys joined by '+'", WG_SWEEP_MAX_TIED), false;
        if (!normalize_key(wg_ini_trim(part), a->keys[a->nkeys]))
            return put(why, wn, "'%s': expected section.key (e.g. quant.bits_e2)", wg_ini_show(wg_ini_trim(part), s)),
                   false;
        a->nkeys++;
    }
    return true;
}

/* ---- the handler --------------------------------------------------------------------- */

static int take_sweep_key(parse_ctx *c, const char *name, const char *value)
{
    wg_sweep *sw = c->sw;
    char v[WG_SWEEP_MAX_PATH], s[SHOW + 4];
    unquote(value, v, sizeof v);
    bool is_base = strcmp(name, "base") == 0, is_out = strcmp(name, "out") == 0;
    if (!is_base && !is_out)
        return fail(c, c->line, "[sweep] %s: unknown key; the keys of [sweep] are base and out", wg_ini_show(name, s));
    int *seen = is_base ? &sw->base_line : &c->out_line;
    if (*seen) return fail(c, c->line, "[sweep] %s: set a second time (first on line %d)", name, *seen);
    if (!v[0]) return fail(c, c->line, "[sweep] %s: empty; expected a path", name);
    if (strlen(v) >= WG_SWEEP_MAX_PATH - 1)
        return fail(c, c->line, "[sweep] %s: longer than %d characters", name, WG_SWEEP_MAX_PATH - 2);
    *seen = c->line;
    if (is_out) return snprintf(sw->out, sizeof sw->out, "%s", v), 1;
    /* relative to the sweep file's directory, so a sweep file moves with its base */
    const char *slash = strrchr(sw->path, '/');
    int dir = v[0] == '/' || !slash ? 0 : (int)(slash - sw->path) + 1;
    if ((size_t)dir + strlen(v) >= sizeof sw->base)
        return fail(c, c->line, "[sweep] base: the path is too long");
    snprintf(sw->base, sizeof sw->base, "%.*s%s", dir, sw->path, v);
    return 1;
}

static int take_set_key(parse_ctx *c, const char *name, const char *value)
{
    wg_sweep *sw = c->sw;
    char key[WG_SWEEP_MAX_KEY], v[WG_CONFIG_MAX_STR + 2], s[SHOW + 4];
    if (!normalize_key(name, key))
        return fail(c, c->line, "[set] %s: expected section.key (e.g. train.epochs)", wg_ini_show(name, s));
    for (int i = 0; i < sw->nset; i++)
        if (strcmp(sw->set[i].key, key) == 0)
            return fail(c, c->line, "[set] %s: set a second time (first on line %d)", key, sw->set[i].line);
    if (sw->nset == WG_SWEEP_MAX_SET) return fail(c, c->line, "[set]: more than %d keys", WG_SWEEP_MAX_SET);
    unquote(value, v, sizeof v);
    if (strlen(v) >= WG_CONFIG_MAX_STR)
        return fail(c, c->line, "[set] %s: the value is longer than %d characters", key, WG_CONFIG_MAX_STR - 1);
    wg_sweep_set *e = &sw->set[sw->nset++];
    e->line = c->line;
    snprintf(e->key, sizeof e->key, "%s", key);
    snprintf(e->assign, sizeof e->assign, "%s=%s", key, v);
    return 1;
}

static int take_grid_key(parse_ctx *c, const char *name, const char *value)
{
    wg_sweep *sw = c->sw;
    char why[256], s[SHOW + 4], v[SHOW + 4];
    if (sw->naxes == WG_SWEEP_MAX_AXES) return fail(c, c->line, "[grid]: more than %d keys", WG_SWEEP_MAX_AXES);
    wg_sweep_axis *a = &sw->axes[sw->naxes];
    memset(a, 0, sizeof *a);
    a->line = c->line;
    if (!parse_axis_keys(a, name, why, sizeof why)) return fail(c, c->line, "[grid] %s", why);
    for (int k = 0; k < a->nkeys; k++) {
        for (int i = 0; i < sw->naxes; i++)
            for (int j = 0; j < sw->axes[i].nkeys; j++)
                if (strcmp(sw->axes[i].keys[j], a->keys[k]) == 0)
                    return fail(c, c->line, "[grid] %s: swept a second time (first on line %d)", a->keys[k],
                                sw->axes[i].line);
        for (int j = 0; j < k; j++)
            if (strcmp(a->keys[j], a->keys[k]) == 0)
                return fail(c, c->line, "[grid] %s: named twice on one axis", a->keys[k]);
    }
    if (!parse_values(a, value, why, sizeof why))
        return fail(c, c->line, "[grid] %s = %s: %s", wg_ini_show(name, s), wg_ini_show(value, v), why);
    sw->naxes++;
    return 1;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *c = user;
    char s[SHOW + 4];
    if (c->err_line) return 0;
    int sec = find_section(section, strlen(section)), ok;
    if (!section[0])
        ok = fail(c, c->line, "%s: a key before any [section] (expected [sweep], [set] or [grid])",
                  wg_ini_show(name, s));
    else if (sec == S_SWEEP)
        ok = take_sweep_key(c, name, value);
    else if (sec == S_SET) ok = take_set_key(c, name, value);
    else if (sec == S_GRID) ok = take_grid_key(c, name, value);
    else
        ok = fail(c, c->line, "unknown section [%s]; a sweep file has [sweep], [set] and [grid]",
                  wg_ini_show(section, s));
    if (!ok && !c->handler_fail) c->handler_fail = c->line;
    return ok;
}

/* ---- the reader ------------------------------------------------------------------------ */

/* A "[section]" line: known, once, nothing but a comment after it. */
static bool check_header(parse_ctx *c, const char *s, const char *eol)
{
    const char *end = memchr(s, ']', (size_t)(eol - s));
    if (!end) return true; /* libinih reports the missing ']' */
    char name[SHOW + 4], shown[SHOW + 4];
    snprintf(name, sizeof name, "%.*s", (int)(end - s - 1 < SHOW ? end - s - 1 : SHOW), s + 1);
    int sec = find_section(s + 1, (size_t)(end - s - 1));
    if (sec < 0)
        return fail(c, c->line, "unknown section [%s]; a sweep file has [sweep], [set] and [grid]",
                    wg_ini_show(name, shown)),
               false;
    if (c->header_line[sec])
        return fail(c, c->line, "[%s] appears a second time (first on line %d)", name, c->header_line[sec]), false;
    c->header_line[sec] = c->line;
    if (!wg_ini_header_tail_ok(s, eol, ";#"))
        return fail(c, c->line, "text after the section name: one '[section]' or 'key = value' per line"), false;
    return true;
}

static char *read_line(char *str, int num, void *stream)
{
    parse_ctx *c = stream;
    const char *s, *eol;
    if (c->err_line) return NULL;
    wg_ini_next next = wg_ini_text_next(&c->t, str, num, &s, &eol);
    c->line = c->t.line;
    if (next == WG_INI_END) return NULL;
    if (next == WG_INI_TOO_LONG)
        return fail(c, c->line, "the line is %td characters long: at most %d", eol - s, num - 3), NULL;
    if (s < eol && *s == '[' && !check_header(c, s, eol)) return NULL;
    return str;
}

/* The line of the first error libinih found itself (a line that is neither a section
 * nor "key = value"), as a message. */
static void syntax_error(parse_ctx *c, int line)
{
    char text[SHOW + 4], s[SHOW + 4];
    wg_ini_text_line(&c->t, line, text, sizeof text);
    c->err_line = 0;
    fail(c, line, "expected '[section]' or 'key = value', not '%s'", wg_ini_show(wg_ini_trim(text), s));
}

/* What the file must hold: a base and a grid; out defaults to runs/sweep_<name>. */
static bool check_complete(parse_ctx *c)
{
    wg_sweep *sw = c->sw;
    if (!sw->base_line)
        return put(c->err, c->errlen, "%s: [sweep] base is missing: name the base config (relative to the sweep "
                                      "file's directory)", sw->path), false;
    if (sw->naxes == 0)
        return put(c->err, c->errlen, "%s: the grid is empty: [grid] needs at least one 'section.key = v1, v2, ...'",
                   sw->path), false;
    if (!sw->out[0]) {
        const char *name = strrchr(sw->path, '/');
        name = name ? name + 1 : sw->path;
        size_t n = strlen(name);
        if (n > 4 && strcmp(name + n - 4, ".ini") == 0) n -= 4;
        snprintf(sw->out, sizeof sw->out, "runs/sweep_%.*s", (int)(n < 200 ? n : 200), name);
    }
    long long points = 1;
    for (int i = 0; i < sw->naxes && points <= WG_SWEEP_MAX_POINTS; i++) points *= sw->axes[i].nvalues;
    if (points > WG_SWEEP_MAX_POINTS)
        return put(c->err, c->errlen, "%s: the grid has more than %d points: split the sweep", sw->path,
                   WG_SWEEP_MAX_POINTS), false;
    sw->npoints = (int)points;
    return true;
}

bool wg_sweep_parse(wg_sweep *sw, const char *path, char *err, size_t errlen)
{
    memset(sw, 0, sizeof *sw);
    if (strlen(path) >= sizeof sw->path) return put(err, errlen, "the sweep file's path is too long"), false;
    strcpy(sw->path, path);
    parse_ctx c = {.sw = sw, .err = err, .errlen = errlen};
    bool ok = wg_ini_text_read(&c.t, sw->path, NULL, 0, MAX_FILE, "sweep file", err, errlen);
    if (ok) {
        int rc = ini_parse_stream(read_line, &c, on_key, &c);
        if (rc == -2) put(err, errlen, "%s: out of memory", path), ok = false;
        else if (rc > 0 && rc != c.handler_fail && (!c.err_line || rc < c.err_line)) syntax_error(&c, rc), ok = false;
        else ok = c.err_line == 0;
    }
    wg_ini_text_free(&c.t);
    return ok && check_complete(&c);
}

bool wg_sweep_add_set(wg_sweep *sw, const char *assign, char *err, size_t errlen)
{
    char s[SHOW + 4], key[WG_SWEEP_MAX_KEY], name[WG_SWEEP_MAX_KEY + 8];
    const char *eq = strchr(assign, '=');
    size_t kn = eq ? (size_t)(eq - assign) : 0;
    if (eq && kn < sizeof name) snprintf(name, sizeof name, "%.*s", (int)kn, assign);
    if (!eq || kn >= sizeof name || !normalize_key(name, key))
        return put(err, errlen, "--set %s: expected section.key=value", wg_ini_show(assign, s)), false;
    if (strlen(eq + 1) >= WG_CONFIG_MAX_STR)
        return put(err, errlen, "--set %s: the value is longer than %d characters", wg_ini_show(assign, s),
                   WG_CONFIG_MAX_STR - 1), false;
    int i = 0;
    while (i < sw->nset && strcmp(sw->set[i].key, key) != 0) i++; /* the command line overrides [set] */
    if (i == WG_SWEEP_MAX_SET)
        return put(err, errlen, "--set %s: more than %d overrides with [set]", wg_ini_show(assign, s),
                   WG_SWEEP_MAX_SET),
               false;
    sw->nset += i == sw->nset;
    wg_sweep_set *e = &sw->set[i];
    e->line = 0;
    snprintf(e->key, sizeof e->key, "%s", key);
    snprintf(e->assign, sizeof e->assign, "%s=%s", key, eq + 1);
    return true;
}

/* ---- whole-sweep checks ---------------------------------------------------------------- */

/* Where an override came from, for messages: "file:line: [set] " or "--set ". */
static void set_origin(const wg_sweep *sw, const wg_sweep_set *e, char *buf, size_t n)
{
    if (e->line) snprintf(buf, n, "%s:%d: [set] ", sw->path, e->line);
    else snprintf(buf, n, "--set ");
}

/* Run "key=value" through the config loader's single-key checks; on failure the
 * loader's reason, without its own "--set key=value: " prefix. */
static bool check_assignment(const char *assign, char *why, size_t n)
{
    wg_config cfg;
    wg_config_defaults(&cfg);
    char msg[WG_CONFIG_ERR_LEN], prefix[WG_SWEEP_MAX_ASSIGN + 16];
    if (wg_config_set(&cfg, assign, msg, sizeof msg)) return true;
    snprintf(prefix, sizeof prefix, "--set %s: ", assign);
    size_t pn = strlen(prefix);
    snprintf(why, n, "%s", strncmp(msg, prefix, pn) == 0 ? msg + pn : msg);
    return false;
}

static const wg_sweep_axis *swept(const wg_sweep *sw, const char *key)
{
    for (int i = 0; i < sw->naxes; i++)
        for (int j = 0; j < sw->axes[i].nkeys; j++)
            if (strcmp(sw->axes[i].keys[j], key) == 0) return &sw->axes[i];
    return NULL;
}

static bool check_sets(const wg_sweep *sw, char *err, size_t errlen)
{
    char at[WG_SWEEP_MAX_PATH + 32], why[WG_CONFIG_ERR_LEN], s[SHOW + 4];
    for (int i = 0; i < sw->nset; i++) {
        const wg_sweep_set *e = &sw->set[i];
        set_origin(sw, e, at, sizeof at);
        if (strcmp(e->key, "output.dir") == 0)
            return put(err, errlen, "%soutput.dir: each point runs in its own directory under [sweep] out; set that "
                                    "instead", at), false;
        const wg_sweep_axis *a = swept(sw, e->key);
        if (a)
            return put(err, errlen, "%s%s is also swept in [grid] (%s:%d): a key is either set or swept", at, e->key,
                       sw->path, a->line), false;
        if (!check_assignment(e->assign, why, sizeof why))
            return put(err, errlen, "%s%s: %s", at, wg_ini_show(e->assign, s), why), false;
    }
    return true;
}

static bool check_axes(const wg_sweep *sw, char *err, size_t errlen)
{
    char why[WG_CONFIG_ERR_LEN], assign[WG_SWEEP_MAX_ASSIGN], s[SHOW + 4];
    for (int i = 0; i < sw->naxes; i++) {
        const wg_sweep_axis *a = &sw->axes[i];
        for (int j = 0; j < a->nkeys; j++) {
            if (strcmp(a->keys[j], "output.dir") == 0)
                return put(err, errlen, "%s:%d: [grid] output.dir: each point runs in its own directory under [sweep] "
                                        "out", sw->path, a->line), false;
            for (int v = 0; v < a->nvalues; v++) {
                snprintf(assign, sizeof assign, "%s=%s", a->keys[j], a->values[v][j]);
                if (!check_assignment(assign, why, sizeof why))
                    return put(err, errlen, "%s:%d: [grid] %s, value '%s': %s", sw->path, a->line, a->keys[j],
                               wg_ini_show(a->values[v][j], s), why), false;
            }
        }
    }
    return true;
}

bool wg_sweep_check(const wg_sweep *sw, char *err, size_t errlen)
{
    if (!check_axes(sw, err, errlen) || !check_sets(sw, err, errlen)) return false;
    int n = sw->nset;
    for (int i = 0; i < sw->naxes; i++) n += sw->axes[i].nkeys;
    if (n > WG_SWEEP_MAX_OVERRIDES)
        return put(err, errlen, "%s: each point would get %d overrides ([set], --set and [grid] keys): wageubn train "
                                "takes at most %d", sw->path, n, WG_SWEEP_MAX_OVERRIDES), false;
    return true;
}

/* ---- points ----------------------------------------------------------------------- */

void wg_sweep_point_index(const wg_sweep *sw, int p, int *idx)
{
    for (int i = sw->naxes - 1; i >= 0; i--) { /* the first axis varies slowest */
        idx[i] = p % sw->axes[i].nvalues;
        p /= sw->axes[i].nvalues;
    }
}

void wg_sweep_point_overrides(const wg_sweep *sw, int p, wg_sweep_overrides *ov)
{
    int idx[WG_SWEEP_MAX_AXES] = {0};
    wg_sweep_point_index(sw, p, idx);
    ov->n = 0;
    for (int i = 0; i < sw->nset; i++) snprintf(ov->text[ov->n++], WG_SWEEP_MAX_ASSIGN, "%s", sw->set[i].assign);
    for (int i = 0; i < sw->naxes; i++)
        for (int j = 0; j < sw->axes[i].nkeys; j++)
            snprintf(ov->text[ov->n++], WG_SWEEP_MAX_ASSIGN, "%s=%s", sw->axes[i].keys[j],
                     sw->axes[i].values[idx[i]][j]);
    for (int i = 0; i < ov->n; i++) ov->v[i] = ov->text[i];
}

const char *wg_sweep_short_key(const char *key)
{
    const char *dot = strchr(key, '.');
    return dot ? dot + 1 : key;
}

void wg_sweep_axis_name(const wg_sweep_axis *a, bool short_keys, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int j = 0; j < a->nkeys && used < n; j++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", j ? "+" : "",
                                 short_keys ? wg_sweep_short_key(a->keys[j]) : a->keys[j]);
}

bool wg_sweep_value_shared(const wg_sweep_axis *a, int v)
{
    for (int j = 1; j < a->nkeys; j++)
        if (strcmp(a->values[v][j], a->values[v][0]) != 0) return false;
    return true;
}

/* A value as part of a file name: blanks dropped, ',' as '-', anything but letters,
 * digits and ".+-" as '_', at most MAX_NAME characters; "" as "none". */
static void sanitize(const char *v, char *out)
{
    size_t n = 0;
    for (; *v && n < MAX_NAME; v++) {
        char ch = *v;
        if (ch == ' ' || ch == '\t') continue;
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    strchr(".+-", ch);
        out[n++] = ch == ',' ? '-' : keep ? ch : '_';
    }
    out[n] = '\0';
    if (n == 0) strcpy(out, "none");
}

void wg_sweep_point_dir(const wg_sweep *sw, int p, char *dir, size_t n)
{
    int idx[WG_SWEEP_MAX_AXES] = {0};
    wg_sweep_point_index(sw, p, idx);
    size_t used = (size_t)snprintf(dir, n, "%s/%03d", sw->out, p + 1);
    for (int i = 0; i < sw->naxes && used < n; i++) {
        const wg_sweep_axis *a = &sw->axes[i];
        char name[WG_SWEEP_MAX_TIED * WG_SWEEP_MAX_KEY], v[MAX_NAME + 1];
        wg_sweep_axis_name(a, true, name, sizeof name);
        used += (size_t)snprintf(dir + used, n - used, "_%s=", name);
        int nv = wg_sweep_value_shared(a, idx[i]) ? 1 : a->nkeys;
        for (int j = 0; j < nv && used < n; j++) {
            sanitize(a->values[idx[i]][j], v);
            used += (size_t)snprintf(dir + used, n - used, "%s%s", j ? "+" : "", v);
        }
    }
}

void wg_sweep_point_label(const wg_sweep *sw, int p, char *label, size_t n)
{
    int idx[WG_SWEEP_MAX_AXES] = {0};
    wg_sweep_point_index(sw, p, idx);
    size_t used = 0;
    label[0] = '\0';
    for (int i = 0; i < sw->naxes && used < n; i++) {
        const wg_sweep_axis *a = &sw->axes[i];
        char name[WG_SWEEP_MAX_TIED * WG_SWEEP_MAX_KEY], s[SHOW + 4];
        if (wg_sweep_value_shared(a, idx[i])) { /* "bits_xhat+bits_gamma_beta=8" */
            wg_sweep_axis_name(a, true, name, sizeof name);
            used += (size_t)snprintf(label + used, n - used, "%s%s=%s", used ? " " : "", name,
                                     wg_ini_show(a->values[idx[i]][0], s));
            continue;
        }
        for (int j = 0; j < a->nkeys && used < n; j++) /* a tuple: "g_scale=128,128 bits_gc=15" */
            used += (size_t)snprintf(label + used, n - used, "%s%s=%s", used ? " " : "",
                                     wg_sweep_short_key(a->keys[j]), wg_ini_show(a->values[idx[i]][j], s));
    }
}
