/* ini_text.h: the text of an INI file (a config, a sweep file), handed to libinih one
 * line at a time (ini_parse_stream), with the checks the readers share: a size limit,
 * no NUL byte, lines of at most num - 3 characters (libinih's buffer), CRLF line ends
 * and a UTF-8 byte-order mark accepted, leading blanks dropped (an indented line is
 * never a continuation). Messages name the file: "path: cannot open: ...". */
#ifndef WG_INI_TEXT_H
#define WG_INI_TEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wg_ini_text {
    const char *name; /* the file, for messages */
    char *text;       /* NUL-terminated */
    size_t len, pos;  /* its length, and where the next line starts */
    int line;         /* the line handed out last, from 1 */
} wg_ini_text;

/* The file at name, or (given not NULL) a copy of the given len bytes, at most max
 * bytes of them; kind names what the text should be ("config file"). */
bool wg_ini_text_read(wg_ini_text *t, const char *name, const char *given, size_t len, size_t max, const char *kind,
                      char *err, size_t errlen);
void wg_ini_text_free(wg_ini_text *t);

typedef enum wg_ini_next { WG_INI_LINE, WG_INI_END, WG_INI_TOO_LONG } wg_ini_next;

/* The next line (t->line), copied into str (num bytes) without its leading blanks.
 * [*s, *eol) is its content after a byte-order mark, without the line end, for the
 * caller's own checks. WG_INI_TOO_LONG: the line has *eol - *s characters, more than
 * num - 3; nothing was copied. */
wg_ini_next wg_ini_text_next(wg_ini_text *t, char *str, int num, const char **s, const char **eol);

/* A "[section]" line [s, eol): true when nothing but blanks, or a comment starting with
 * one of the characters in comments, follows its ']' (or there is no ']': libinih
 * reports that). libinih drops such text silently; the readers refuse it. */
bool wg_ini_header_tail_ok(const char *s, const char *eol, const char *comments);

/* Line `line` (from 1) without its line end, into out (n bytes, truncated). */
void wg_ini_text_line(const wg_ini_text *t, int line, char *out, size_t n);

/* For messages: a user's text made printable (other bytes as '?'), at most
 * WG_INI_SHOW characters, then "..." when cut; buf holds WG_INI_SHOW + 4 bytes. */
enum { WG_INI_SHOW = 48 };
const char *wg_ini_show(const char *s, char buf[WG_INI_SHOW + 4]);

/* s without leading blanks and trailing blanks and line ends (cut in place). */
char *wg_ini_trim(char *s);

#endif
