/* ini_text.c: INI text for libinih, line by line (see ini_text.h). */
#include "ini_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Terminate the len bytes read into t->text and refuse NUL bytes. */
static bool check_text(wg_ini_text *t, char *err, size_t errlen)
{
    t->text[t->len] = '\0';
    const char *nul = memchr(t->text, '\0', t->len);
    if (nul == NULL) return true;
    int line = 1;
    for (const char *p = t->text; p < nul; p++) line += *p == '\n';
    return wg_input_error(err, errlen, "%s:%d: a NUL byte: not a text file", t->name, line);
}

bool wg_ini_text_read(wg_ini_text *t, const char *name, const char *given, size_t len, size_t max, const char *kind,
                      char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->text = malloc(max + 2);
    if (t->text == NULL) return wg_input_error(err, errlen, "%s: out of memory", name);
    if (given) {
        t->len = len > max + 1 ? max + 1 : len;
        memcpy(t->text, given, t->len);
    } else {
        FILE *f = fopen(name, "rb");
        if (f == NULL) return wg_input_error(err, errlen, "%s: cannot open: %s", name, strerror(errno));
        errno = 0;
        t->len = fread(t->text, 1, max + 1, f);
        int rerr = ferror(f) ? (errno ? errno : EIO) : 0;
        fclose(f);
        if (rerr) return wg_input_error(err, errlen, "%s: cannot read: %s", name, strerror(rerr));
    }
    if (t->len > max) return wg_input_error(err, errlen, "%s: larger than %zu bytes: not a %s", name, max, kind);
    return check_text(t, err, errlen);
}

void wg_ini_text_free(wg_ini_text *t)
{
    free(t->text);
    t->text = NULL;
}

wg_ini_next wg_ini_text_next(wg_ini_text *t, char *str, int num, const char **s, const char **eol)
{
    if (t->pos >= t->len) return WG_INI_END;
    const char *p = t->text + t->pos, *nl = memchr(p, '\n', t->len - t->pos);
    const char *next = nl ? nl + 1 : t->text + t->len, *end = nl ? nl : next;
    t->pos = (size_t)(next - t->text);
    t->line++;
    if (end > p && end[-1] == '\r') end--;
    *s = p;
    *eol = end;
    if (num < 4 || end - p + 3 > num) return WG_INI_TOO_LONG;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    memcpy(str, p, (size_t)(next - p));
    str[next - p] = '\0';
    if (t->line == 1 && end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* libinih skips it too */
    *s = p;
    return WG_INI_LINE;
}

void wg_ini_text_line(const wg_ini_text *t, int line, char *out, size_t n)
{
    const char *p = t->text;
    for (int l = 1; l < line && p; l++) p = strchr(p, '\n'), p = p ? p + 1 : NULL;
    size_t len = p ? strcspn(p, "\r\n") : 0;
    snprintf(out, n, "%.*s", (int)(len < n - 1 ? len : n - 1), p ? p : "");
}

const char *wg_ini_show(const char *s, char buf[WG_INI_SHOW + 4])
{
    size_t i = 0;
    for (; s[i] && i < WG_INI_SHOW; i++) buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    strcpy(buf + i, s[i] ? "..." : "");
    return buf;
}

bool wg_ini_header_tail_ok(const char *s, const char *eol, const char *comments)
{
    const char *end = memchr(s, ']', (size_t)(eol - s)), *rest = end ? end + 1 : eol;
    while (rest < eol && (*rest == ' ' || *rest == '\t')) rest++;
    return rest == eol || strchr(comments, *rest) != NULL;
}

char *wg_ini_trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}
