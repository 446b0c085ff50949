/* config.c: the training configuration (config.h).
 *
 * One schema table (k_keys) lists every key once: section, name, type, the field it
 * fills (offsetof), its default as text, the allowed values and a line of help. The
 * same table drives the file handler, --set overrides, defaults, writing and
 * comparison, so a key is added in one place.
 *
 * The file is parsed by libinih (ini_parse_stream). We feed it lines ourselves: that
 * gives the handler the current line number (Debian builds libinih without
 * INI_HANDLER_LINENO), lets us reject lines longer than libinih's line buffer
 * (it would split them into two lines) and NUL bytes, and strips leading whitespace
 * so that libinih's multi-line values (an indented line continues the previous value)
 * never apply. Errors stop at the first one, by line. */
#include "config.h"
#include "ini_text.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "check.h"

enum {
    MAX_FILE = 1 << 20, /* bytes; a config is a few KiB */
    MAX_VALUE = 160,    /* characters of a written value */
    SHOW = WG_INI_SHOW, /* characters of a name or value quoted in a message */
    WHY = 512,          /* a reason buffer */
    FMT = 512,          /* a formatted value (16 numbers of at most 26 characters) */
};

typedef enum { T_INT, T_U64, T_FLOAT, T_BOOL, T_ENUM, T_STR, T_LIST } key_type;
enum { LO_OPEN = 1, HI_OPEN = 2, POW2 = 4, ASCENDING = 8, NONEMPTY = 16 };

typedef struct key_def {
    const char *section, *key;
    key_type type;
    size_t off, size;
    const char *def;          /* default as text; NULL: from wg_quant_bits_reference() */
    int64_t ilo, ihi;         /* T_INT: range; T_LIST: least and most values */
    double lo, hi;            /* T_FLOAT: range; T_LIST: range of each value */
    unsigned flags;           /* LO_OPEN, HI_OPEN: open ends of [lo, hi]; the rest as named */
    const char *const *words; /* T_ENUM: NULL-terminated, the value is the index */
    const char *help;
} key_def;

static const char *const k_models[] = {"resnet20", "resnet32", "resnet56", "resnet18",
                                       "resnet34", "resnet50", "plaincnn", "resnet8", NULL};
static const char *const k_formats[] = {"idx", "cifar", "imagefolder", "list", NULL};
static const char *const k_bad_files[] = {"fail", "skip", NULL};
static const char *const k_modes[] = {"int8", "fp32", NULL};
static const char *const k_devices[] = {"cpu", "cuda", "auto", NULL};
static const char *const k_schedules[] = {"piecewise", "step", "cosine", NULL};
static const char *const k_presets[] = {"full", "reference", NULL};
static const char *const k_act[] = {"fit", "fixed", NULL};
static const char *const k_e2[] = {"flag", "shift", NULL};
static const char *const k_allreduce[] = {"exact", "compressed", NULL};
static const char *const k_bn_stats[] = {"sync", "local", NULL};
static const char *const k_sections[] = {"model", "data", "train", "quant", "dist", "output"};
#define N_SECTIONS 6

#define AT(m) offsetof(wg_config, m), sizeof(((wg_config *)0)->m)
#define INT(s, k, m, a, b, d, h) {s, k, T_INT, AT(m), d, .ilo = a, .ihi = b, .help = h}
#define BITS(k, m, a, b, h) INT("quant", k, quant.bits.m, a, b, NULL, h)
#define FLT(s, k, m, a, b, f, d, h) {s, k, T_FLOAT, AT(m), d, .lo = a, .hi = b, .flags = f, .help = h}
#define ENUM(s, k, m, w, d, h) {s, k, T_ENUM, AT(m), d, .words = w, .help = h}
#define LIST(k, m, n0, a, b, f, d, h) \
    {"train", k, T_LIST, AT(train.m), d, .ilo = n0, .ihi = WG_CONFIG_MAX_LIST, .lo = a, .hi = b, .flags = f, .help = h}

static const key_def k_keys[] = {
    ENUM("model", "name", model.name, k_models, "resnet20", "network to train"),
    ENUM("data", "format", data.format, k_formats, "idx",
         "dataset files: idx (MNIST, Fashion-MNIST), cifar (CIFAR-10 binary), imagefolder or list (JPEGs: ImageNet)"),
    {"data", "root", T_STR, AT(data.root), "/usr/share/datasets/fashion-mnist", .flags = NONEMPTY,
     .help = "dataset directory"},
    INT("data", "limit_train", data.limit_train, 0, INT64_MAX, "0", "use only the first N training images (0 = all)"),
    INT("data", "limit_test", data.limit_test, 0, INT64_MAX, "0", "use only the first N test images (0 = all)"),
    INT("data", "val_split", data.val_split, 0, INT64_MAX, "0", "hold out N training images for validation"),
    {"data", "augment_flip", T_BOOL, AT(data.augment_flip), "false", .help = "random horizontal flips"},
    INT("data", "augment_pad", data.augment_pad, 0, 8, "0", "pad by N pixels, then crop at random (0 = off)"),
    INT("data", "image_size", data.image_size, 32, 1024, "224", "imagefolder, list: the crops' side in pixels"),
    INT("data", "workers", data.workers, 1, 256, "4", "imagefolder, list: JPEG decoding threads"),
    ENUM("data", "bad_files", data.bad_files, k_bad_files, "fail",
         "imagefolder, list: an unreadable JPEG fails the run, or is skipped (replaced, counted)"),
    FLT("data", "crop_area_min", data.crop_area_min, 0, 1, LO_OPEN, "0.05",
        "imagefolder, list: the training crop's smallest share of the image's area"),
    ENUM("train", "mode", train.mode, k_modes, "int8", "int8 (WAGEUBN integer training) or fp32 (the float baseline)"),
    INT("train", "epochs", train.epochs, 1, 10000, "5", "training epochs"),
    INT("train", "batch", train.batch, 1, 65536, "128", "images per step"),
    {"train", "seed", T_U64, AT(train.seed), "1", .help = "seed of shuffling, augmentation, init and stochastic rounding"},
    FLT("train", "lr", train.lr, 0, 1000, LO_OPEN, "0.4", "base learning rate"),
    ENUM("train", "lr_schedule", train.lr_schedule, k_schedules, "piecewise", "learning-rate schedule"),
    LIST("lr_boundaries", lr_boundaries, 0, 0, HUGE_VAL, LO_OPEN | ASCENDING, "",
         "epochs where the next lr and g_scale interval starts"),
    LIST("lr_multipliers", lr_multipliers, 1, 0, 1000, LO_OPEN, "1", "lr factor per interval (lr_boundaries + 1 values)"),
    LIST("g_scale", g_scale, 1, 2, 32768, POW2, "128", "G's scale per interval (1 or lr_boundaries + 1 values)"),
    FLT("train", "momentum", train.momentum, 0, 1, HI_OPEN, "0.9", "SGD momentum, fp32 mode (int8: [quant] momentum_shift)"),
    FLT("train", "weight_decay", train.weight_decay, 0, 0.0039, 0, "0.0001", "weight decay (L2; below 2^-8)"),
    FLT("train", "warmup_epochs", train.warmup_epochs, 0, 10000, 0, "0", "linear learning-rate warmup, in epochs"),
    INT("train", "log_every", train.log_every, 1, INT_MAX, "50", "steps between log lines"),
    INT("train", "eval_every", train.eval_every, 1, 10000, "1", "epochs between evaluations"),
    INT("train", "bn_recalibrate", train.bn_recalibrate, 0, 1000, "8",
        "training batches that re-estimate the BN running statistics before each evaluation (0: off)"),
    INT("train", "threads", train.threads, 0, 4096, "0", "CPU threads (0 = all cores)"),
    ENUM("train", "device", train.device, k_devices, "cpu",
         "where to train: cpu, cuda (GPU 0; under mpirun, GPU local_rank) or auto (cuda when usable, else cpu)"),
    ENUM("quant", "preset", quant.preset, k_presets, "full", "full (every layer integer) or reference (first conv, last FC in float)"),
    ENUM("quant", "act_exponent", quant.act_exponent, k_act, "fit", "activation exponent: fit (floor -7) or fixed -7"),
    ENUM("quant", "e2", quant.e2, k_e2, "flag", "E2 at conv outputs: flag (two int8 parts) or shift (one)"),
    BITS("bits_w", w, 2, 32, "bits of forward weights W"),
    BITS("bits_a", a, 2, 32, "bits of activations A"),
    BITS("bits_u", u, 9, 31, "bits of master weights U"),
    BITS("bits_e1", e1, 2, 32, "bits of errors at activations E1"),
    BITS("bits_e2", e2, 2, 32, "bits of errors at conv outputs E2"),
    BITS("bits_gc", gc, 2, 32, "bits of the weight-gradient grid GC"),
    BITS("bits_bn_grad", bn_grad, 2, 32, "bits of BN gamma/beta gradients"),
    BITS("bits_bn_stat", bn_stat, 2, 32, "bits of BN mean and std"),
    BITS("bits_xhat", xhat, 2, 32, "bits of BN x-hat"),
    BITS("bits_gamma_beta", gamma_beta, 2, 32, "bits of BN gamma and beta, forward"),
    BITS("bits_momentum", momentum, 2, 32, "bits of the momentum"),
    BITS("bits_lr", lr, 2, 16, "bits of the learning rate"),
    BITS("momentum_shift", momentum_shift, 0, 8, "momentum factor 2^-shift (2: 1/4)"),
    ENUM("dist", "allreduce", dist.allreduce, k_allreduce, "exact",
         "mpirun: exact (one process's bits) or compressed (int8 gradients, exact sums)"),
    ENUM("dist", "bn", dist.bn, k_bn_stats, "sync", "mpirun: BN statistics over all ranks (sync) or per rank (local)"),
    {"output", "dir", T_STR, AT(output.dir), "", .help = "output directory (empty: runs/<config file name>)"},
    INT("output", "keep_checkpoints", output.keep_checkpoints, 0, INT_MAX, "3",
        "step checkpoints kept in checkpoints/ (latest and best are kept apart)"),
    INT("output", "checkpoint_every", output.checkpoint_every, 0, INT_MAX, "0",
        "steps between checkpoints (0: at the end of each epoch only)"),
};
#define N_KEYS ((int)(sizeof k_keys / sizeof k_keys[0]))

/* ---- small helpers ------------------------------------------------------------- */

typedef struct outbuf {
    char *buf;
    size_t len;
} outbuf;

static void put(outbuf o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (o.buf && o.len) vsnprintf(o.buf, o.len, fmt, ap);
    va_end(ap);
}

/* Append a warning line to o (NULL: print it to stderr). */
static void warnf(outbuf o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(outbuf o, const char *fmt, ...)
{
    char line[WHY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!o.buf) {
        fprintf(stderr, "warning: %s\n", line);
    } else if (o.len) {
        size_t used = strlen(o.buf);
        if (used + 1 < o.len) snprintf(o.buf + used, o.len - used, "%s\n", line);
    }
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c; }

/* Edit distance (Levenshtein, ignoring case); long strings count as far apart. */
static int distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return INT_MAX;
    int row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j], best = diag + (lower(a[i - 1]) != lower(b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

/* The name in names[0..n-1] closest to typed, when close enough to suggest; else -1. */
static int closest(const char *typed, const char *const *names, int n)
{
    int best = -1, bd = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = distance(typed, names[i]);
        if (d < bd) bd = d, best = i;
    }
    int len = best < 0 ? 0 : (int)strlen(names[best]);
    return best >= 0 && (bd <= 2 ? bd < len : bd * 3 <= len) ? best : -1;
}

static int find_section(const char *s)
{
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(s, k_sections[i]) == 0) return i;
    return -1;
}

static int find_key(const char *section, const char *key)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(k_keys[i].section, section) == 0 && strcmp(k_keys[i].key, key) == 0) return i;
    return -1;
}

static int key_index(const char *section, const char *key)
{
    int i = find_key(section, key);
    WG_ASSERT(i >= 0, "no key [%s] %s in the schema", section, key);
    return i;
}

/* The index of [section] key; -1 with "unknown section [x]; did you mean [train]?" or
 * "[train] epoch: unknown key; did you mean 'epochs'?" (or "'lr' belongs in [train]",
 * or the list of keys) in why. */
static int lookup(const char *section, const char *typed, char *out, size_t n)
{
    char s1[SHOW + 4], s2[SHOW + 4];
    if (find_section(section) < 0) {
        int best = closest(section, k_sections, N_SECTIONS);
        if (best >= 0)
            snprintf(out, n, "unknown section [%s]; did you mean [%s]?", wg_ini_show(section, s1), k_sections[best]);
        else
            snprintf(out, n, "unknown section [%s]; the sections are [model], [data], [train], [quant], [output]",
                     wg_ini_show(section, s1));
        return -1;
    }
    int found = find_key(section, typed);
    if (found >= 0) return found;
    const char *names[N_KEYS], *elsewhere = NULL;
    int m = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(k_keys[i].key, typed) == 0) elsewhere = k_keys[i].section;
        if (strcmp(k_keys[i].section, section) == 0) names[m++] = k_keys[i].key;
    }
    int best = closest(typed, names, m);
    size_t used = (size_t)snprintf(out, n, "[%s] %s: unknown key; ", section, wg_ini_show(typed, s2));
    if (elsewhere) {
        snprintf(out + used, n - used, "'%s' belongs in [%s]", typed, elsewhere);
    } else if (best >= 0) {
        snprintf(out + used, n - used, "did you mean '%s'?", names[best]);
    } else {
        used += (size_t)snprintf(out + used, n - used, "the keys of [%s] are", section);
        for (int i = 0; i < m && used < n; i++)
            used += (size_t)snprintf(out + used, n - used, "%s%s", i ? ", " : " ", names[i]);
    }
    return -1;
}

/* The shortest text that reads back as exactly x. */
static void format_double(double x, char *buf, size_t n)
{
    bool integral = x == floor(x) && fabs(x) < 1e15;
    snprintf(buf, n, "%.0f", x);
    for (int p = 1; !integral && p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static const void *cfield(const wg_config *cfg, const key_def *k) { return (const char *)cfg + k->off; }

/* ---- values --------------------------------------------------------------------- */

/* "in [0, 1)", "> 0", ">= 0". */
static void range_text(double lo, double hi, unsigned flags, char *out, size_t n)
{
    char a[32], b[32];
    format_double(lo, a, sizeof a);
    format_double(hi, b, sizeof b);
    if (isinf(hi))
        snprintf(out, n, "%s %s", flags & LO_OPEN ? ">" : ">=", a);
    else
        snprintf(out, n, "in %c%s, %s%c", flags & LO_OPEN ? '(' : '[', a, b, flags & HI_OPEN ? ')' : ']');
}

static bool in_range(double x, double lo, double hi, unsigned flags)
{
    return ((flags & LO_OPEN) ? x > lo : x >= lo) && ((flags & HI_OPEN) ? x < hi : x <= hi);
}

/* What a key accepts, for messages and the written file's comments. */
static void expected_text(const key_def *k, char *out, size_t n)
{
    char r[96];
    switch (k->type) {
    case T_INT:
        if (k->ihi == INT64_MAX || k->ihi == INT_MAX)
            snprintf(out, n, "an integer >= %" PRId64, k->ilo);
        else
            snprintf(out, n, "an integer in %" PRId64 "..%" PRId64, k->ilo, k->ihi);
        return;
    case T_U64: snprintf(out, n, "an integer in 0..18446744073709551615"); return;
    case T_FLOAT: range_text(k->lo, k->hi, k->flags, r, sizeof r); snprintf(out, n, "a number %s", r); return;
    case T_BOOL: snprintf(out, n, "true or false (also yes/no, on/off, 1/0)"); return;
    case T_ENUM: {
        size_t used = (size_t)snprintf(out, n, "one of");
        for (int i = 0; k->words[i] && used < n; i++)
            used += (size_t)snprintf(out + used, n - used, "%s%s", i ? " | " : " ", k->words[i]);
        return;
    }
    case T_STR:
        snprintf(out, n, "%stext of at most %d characters, without ';'", k->flags & NONEMPTY ? "non-empty " : "",
                 WG_CONFIG_MAX_STR - 1);
        return;
    case T_LIST:
        range_text(k->lo, k->hi, k->flags, r, sizeof r);
        snprintf(out, n, "%" PRId64 " to %" PRId64 " comma-separated %s %s%s", k->ilo, k->ihi,
                 k->flags & POW2 ? "powers of two" : "numbers", r, k->flags & ASCENDING ? ", ascending" : "");
        return;
    }
}

static void format_list(const wg_config_list *l, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int j = 0; j < l->n && used < n; j++) {
        char x[32];
        format_double(l->v[j], x, sizeof x);
        used += (size_t)snprintf(buf + used, n - used, "%s%s", j ? ", " : "", x);
    }
}

static void format_value(const wg_config *cfg, const key_def *k, char *buf, size_t n)
{
    const void *p = cfield(cfg, k);
    int i;
    int64_t i64;
    uint64_t u64;
    double d;
    bool b;
    switch (k->type) {
    case T_INT:
        if (k->size == sizeof(int)) memcpy(&i, p, sizeof i), i64 = i;
        else memcpy(&i64, p, sizeof i64);
        snprintf(buf, n, "%" PRId64, i64);
        return;
    case T_U64: memcpy(&u64, p, sizeof u64); snprintf(buf, n, "%" PRIu64, u64); return;
    case T_FLOAT: memcpy(&d, p, sizeof d); format_double(d, buf, n); return;
    case T_BOOL: memcpy(&b, p, sizeof b); snprintf(buf, n, "%s", b ? "true" : "false"); return;
    case T_ENUM: memcpy(&i, p, sizeof i); snprintf(buf, n, "%s", k->words[i]); return;
    case T_STR: snprintf(buf, n, "%s", (const char *)p); return;
    case T_LIST: format_list(p, buf, n); return;
    }
}

/* true/false, yes/no, on/off, 1/0, in any case; *out = -1 for anything else. */
static void parse_bool(const char *s, int *out)
{
    static const char *const words[] = {"false", "true", "no", "yes", "off", "on", "0", "1"};
    *out = -1;
    for (int i = 0; i < 8 && *out < 0; i++) {
        size_t j = 0;
        while (s[j] && lower(s[j]) == words[i][j]) j++;
        if (!s[j] && !words[i][j]) *out = i & 1;
    }
}

static bool parse_list(const key_def *k, const char *s, wg_config_list *l, char *why, size_t n)
{
    char exp[160], x[SHOW + 4];
    expected_text(k, exp, sizeof exp);
    memset(l, 0, sizeof *l);
    while (*s == ' ' || *s == '\t') s++;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno == ERANGE || !isfinite(v)) return put((outbuf){why, n}, "expected %s", exp), false;
        if (l->n == WG_CONFIG_MAX_LIST)
            return put((outbuf){why, n}, "expected at most %d values", WG_CONFIG_MAX_LIST), false;
        format_double(v, x, sizeof x);
        if (!in_range(v, k->lo, k->hi, k->flags) || ((k->flags & POW2) && frexp(v, &(int){0}) != 0.5))
            return put((outbuf){why, n}, "value %d (%s) is not allowed: expected %s", l->n + 1, x, exp), false;
        if ((k->flags & ASCENDING) && l->n > 0 && v <= l->v[l->n - 1])
            return put((outbuf){why, n}, "value %d (%s) is not above the one before: expected %s", l->n + 1, x, exp),
                   false;
        l->v[l->n++] = v;
        for (s = end; *s == ' ' || *s == '\t'; s++) {}
        if (*s == ',') {
            for (s++; *s == ' ' || *s == '\t'; s++) {}
            if (!*s) return put((outbuf){why, n}, "expected %s (a value is missing after the last ',')", exp), false;
        } else if (*s) {
            return put((outbuf){why, n}, "expected %s", exp), false;
        }
    }
    if (l->n < k->ilo) return put((outbuf){why, n}, "expected %s", exp), false;
    return true;
}

/* Parse text as k's value and store it in cfg. On failure cfg is unchanged and why
 * says what was expected. */
static bool set_value(wg_config *cfg, const key_def *k, const char *text, char *why, size_t n)
{
    char exp[160], *end, buf[FMT];
    expected_text(k, exp, sizeof exp);
    outbuf w = {why, n};
    void *p = (char *)cfg + k->off;
    errno = 0;
    switch (k->type) {
    case T_INT: {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE || v < k->ilo || v > k->ihi) break;
        if (k->size == sizeof(int)) memcpy(p, &(int){(int)v}, sizeof(int));
        else memcpy(p, &(int64_t){v}, sizeof(int64_t));
        return true;
    }
    case T_U64: {
        unsigned long long v = strtoull(text, &end, 10);
        if (!*text || *end || errno == ERANGE || strchr(text, '-')) break;
        return memcpy(p, &(uint64_t){v}, sizeof(uint64_t)), true;
    }
    case T_FLOAT: {
        double v = strtod(text, &end);
        if (!*text || *end || errno == ERANGE || !isfinite(v) || !in_range(v, k->lo, k->hi, k->flags)) break;
        return memcpy(p, &v, sizeof v), true;
    }
    case T_BOOL: {
        int v;
        parse_bool(text, &v);
        if (v < 0) break;
        return memcpy(p, &(bool){v}, sizeof(bool)), true;
    }
    case T_ENUM: {
        int m = 0;
        for (; k->words[m]; m++)
            if (strcmp(text, k->words[m]) == 0) return memcpy(p, &m, sizeof m), true;
        int best = closest(text, k->words, m);
        if (best < 0) break;
        return put(w, "expected %s; did you mean '%s'?", exp, k->words[best]), false;
    }
    case T_STR: {
        size_t len = strlen(text);
        bool bad = len >= WG_CONFIG_MAX_STR || ((k->flags & NONEMPTY) && len == 0) || strchr(text, ';');
        for (size_t i = 0; i < len; i++) bad |= (unsigned char)text[i] < 0x20 || text[i] == 0x7f;
        if (bad) break;
        return memcpy(p, text, len + 1), true;
    }
    case T_LIST: {
        wg_config_list l;
        if (!parse_list(k, text, &l, why, n)) return false;
        format_list(&l, buf, sizeof buf);
        if (strlen(buf) > MAX_VALUE) return put(w, "too long: at most %d characters when written", MAX_VALUE), false;
        return memcpy(p, &l, sizeof l), true;
    }
    }
    put(w, "expected %s", exp);
    return false;
}

/* ---- defaults, set, write, equal ---------------------------------------------------- */

void wg_config_defaults(wg_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->quant.bits = wg_quant_bits_reference();
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        WG_ASSERT(k->type != T_INT || k->size == sizeof(int64_t) || (k->ilo >= INT_MIN && k->ihi <= INT_MAX),
                  "[%s] %s: range does not fit an int", k->section, k->key);
        WG_ASSERT(k->type != T_ENUM || k->size == sizeof(int), "[%s] %s: enum is not int-sized", k->section, k->key);
        char why[WHY] = "";
        bool ok = k->def == NULL || set_value(cfg, k, k->def, why, sizeof why);
        WG_ASSERT(ok, "default of [%s] %s: %s", k->section, k->key, why);
    }
    cfg->quant.bits.g_scale_log2 = wg_config_g_scale_log2_at(cfg, 0);
}

/* Apply "section.key=value"; *which receives the key's index. */
static bool apply_set(wg_config *cfg, const char *assignment, int *which, char *err, size_t errlen)
{
    char a[SHOW + 4], why[WHY], copy[1024];
    outbuf e = {err, errlen};
    wg_ini_show(assignment, a);
    if (strlen(assignment) >= sizeof copy) return put(e, "--set %s: longer than %zu characters", a, sizeof copy - 1), false;
    strcpy(copy, assignment);
    char *eq = strchr(copy, '='), *dot = strchr(copy, '.');
    if (!eq || !dot || dot > eq) return put(e, "--set %s: expected section.key=value (e.g. train.epochs=1)", a), false;
    *eq = *dot = '\0';
    int i = lookup(wg_ini_trim(copy), wg_ini_trim(dot + 1), why, sizeof why);
    if (i < 0 || !set_value(cfg, &k_keys[i], wg_ini_trim(eq + 1), why, sizeof why))
        return put(e, "--set %s: %s", a, why), false;
    if (which) *which = i;
    return true;
}

bool wg_config_set(wg_config *cfg, const char *assignment, char *err, size_t errlen)
{
    return apply_set(cfg, assignment, NULL, err, errlen);
}

bool wg_config_write(const wg_config *cfg, FILE *f)
{
    wg_config def;
    wg_config_defaults(&def);
    fprintf(f, "; wageubn configuration: every key, resolved (config.h describes the format)\n");
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        char exp[160], d[FMT], v[FMT];
        if (i == 0 || strcmp(k->section, k_keys[i - 1].section) != 0) fprintf(f, "\n[%s]\n", k->section);
        expected_text(k, exp, sizeof exp);
        format_value(&def, k, d, sizeof d);
        format_value(cfg, k, v, sizeof v);
        fprintf(f, "; %s: %s (default: %s)\n%s = %s\n", k->help, exp, d[0] ? d : "empty", k->key, v);
    }
    return fflush(f) == 0 && !ferror(f);
}

bool wg_config_equal(const wg_config *a, const wg_config *b)
{
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        const void *pa = cfield(a, k), *pb = cfield(b, k);
        const wg_config_list *la = pa, *lb = pb;
        bool same = k->type == T_STR    ? strcmp(pa, pb) == 0
                    : k->type == T_LIST ? la->n == lb->n && memcmp(la->v, lb->v, (size_t)la->n * sizeof(double)) == 0
                                        : memcmp(pa, pb, k->size) == 0;
        if (!same) return false;
    }
    return true;
}

int wg_config_diff(const wg_config *a, const wg_config *b, const char *const *skip, char *out, size_t outlen)
{
    int n = 0;
    if (outlen) out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        char name[64], va[WG_CONFIG_MAX_STR + 32], vb[WG_CONFIG_MAX_STR + 32];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        bool skipped = false;
        for (int s = 0; skip && skip[s]; s++) skipped |= strcmp(skip[s], name) == 0;
        format_value(a, k, va, sizeof va);
        format_value(b, k, vb, sizeof vb);
        if (skipped || strcmp(va, vb) == 0) continue;
        size_t used = strlen(out);
        put((outbuf){out + used, outlen - used}, "%s%s: %s -> %s", n ? ", " : "", name, va, vb);
        n++;
    }
    return n;
}

/* ---- schedules ------------------------------------------------------------------ */

/* The piecewise interval of epoch e: how many lr_boundaries are <= e. */
static int interval(const wg_config *cfg, double e)
{
    int i = 0;
    while (i < cfg->train.lr_boundaries.n && e >= cfg->train.lr_boundaries.v[i]) i++;
    return i;
}

static double list_at(const wg_config_list *l, int i) { return l->v[i < l->n ? i : l->n - 1]; }

double wg_config_lr_at(const wg_config *cfg, double epoch)
{
    static const double pi = 3.14159265358979323846;
    WG_ASSERT(isfinite(epoch) && epoch >= 0, "epoch %g", epoch);
    double e = epoch > cfg->train.epochs ? cfg->train.epochs : epoch, lr = cfg->train.lr;
    if (cfg->train.lr_schedule == WG_LR_COSINE)
        lr *= 0.5 * (1 + cos(pi * e / cfg->train.epochs));
    else
        lr *= list_at(&cfg->train.lr_multipliers, interval(cfg, e));
    if (e < cfg->train.warmup_epochs) lr *= e / cfg->train.warmup_epochs;
    return lr;
}

int wg_config_g_scale_log2_at(const wg_config *cfg, double epoch)
{
    WG_ASSERT(isfinite(epoch) && epoch >= 0, "epoch %g", epoch);
    const wg_config_list *g = &cfg->train.g_scale;
    int ex;
    frexp(g->n == 1 ? g->v[0] : list_at(g, interval(cfg, epoch)), &ex);
    return ex - 1;
}

/* ---- cross-field checks ------------------------------------------------------------ */

/* Where a key got its value, for messages: "file:line: ", "--set x: " or "". */
typedef struct origins {
    const char *path;
    const int *line;               /* per key: line in the file, 0 = not there */
    const int *set;                /* per key: 1 + index of the last override, 0 = none */
    const char *const *overrides;
} origins;

static const char *origin(const origins *o, const char *section, const char *key, char *buf, size_t n)
{
    int i = key_index(section, key);
    char a[SHOW + 4];
    buf[0] = '\0';
    if (o && o->set[i]) snprintf(buf, n, "--set %s: ", wg_ini_show(o->overrides[o->set[i] - 1], a));
    else if (o && o->line[i]) snprintf(buf, n, "%s:%d: ", o->path, o->line[i]);
    return buf;
}

/* In int8 mode a learning rate lives on the grid 2^-(bits_lr-1), at most
 * (2^(bits_lr-1) - 1) steps (docs/numerics.md, section 7.5). */
static int lr_on_grid(double lr, int bits, double *q)
{
    if (!isfinite(lr)) return *q = ldexp((1 << (bits - 1)) - 1, -(bits - 1)), 1;
    wg_lr l = wg_quant_lr(lr, bits);
    *q = ldexp(l.q, l.exp);
    if (l.q == 0) return -1;
    return nearbyint(ldexp(lr, bits - 1)) > l.q ? 1 : 0; /* 1: saturated */
}

static bool validate(const wg_config *cfg, const origins *o, outbuf e, outbuf w)
{
    const char *const T = "train";
    const wg_config_list *bd = &cfg->train.lr_boundaries, *m = &cfg->train.lr_multipliers, *g = &cfg->train.g_scale;
    char at[WHY], x[32], y[32];
    int nb = bd->n;
    if (nb > 0 && bd->v[nb - 1] >= cfg->train.epochs) {
        format_double(bd->v[nb - 1], x, sizeof x);
        return put(e, "%s[train] lr_boundaries: boundary %s is not below [train] epochs = %d",
                   origin(o, T, "lr_boundaries", at, sizeof at), x, cfg->train.epochs), false;
    }
    if (m->n != nb + 1)
        return put(e, "%s[train] lr_multipliers has %d value%s: with %d lr_boundaries it needs %d",
                   origin(o, T, "lr_multipliers", at, sizeof at), m->n, m->n == 1 ? "" : "s", nb, nb + 1), false;
    if (g->n != 1 && g->n != nb + 1)
        return put(e, "%s[train] g_scale has %d values: with %d lr_boundaries it needs 1 or %d",
                   origin(o, T, "g_scale", at, sizeof at), g->n, nb, nb + 1), false;
    if (cfg->train.lr_schedule == WG_LR_COSINE)
        for (int i = 0; i < m->n; i++)
            if (m->v[i] != 1)
                return put(e, "%s[train] lr_multipliers: lr_schedule = cosine takes none (set them all to 1, or use "
                              "piecewise)", origin(o, T, "lr_multipliers", at, sizeof at)), false;
    if (cfg->train.warmup_epochs > cfg->train.epochs) {
        format_double(cfg->train.warmup_epochs, x, sizeof x);
        return put(e, "%s[train] warmup_epochs = %s is above [train] epochs = %d",
                   origin(o, T, "warmup_epochs", at, sizeof at), x, cfg->train.epochs), false;
    }
    if (cfg->dist.allreduce == WG_ALLREDUCE_EXACT && cfg->dist.bn == WG_BN_STATS_LOCAL)
        return put(e, "%s[dist] bn = local: allreduce = exact takes every reduction over the whole batch, BN's "
                      "statistics included (set bn = sync, or allreduce = compressed)",
                   origin(o, "dist", "bn", at, sizeof at)), false;
    if (cfg->data.limit_train > 0 && cfg->data.val_split >= cfg->data.limit_train)
        return put(e, "%s[data] val_split = %" PRId64 " leaves no training images of [data] limit_train = %" PRId64,
                   origin(o, "data", "val_split", at, sizeof at), cfg->data.val_split, cfg->data.limit_train), false;
    /* the integer BN's grids are constants of its formulas (docs/numerics.md 7.3): these
     * keys document them, and other values would be ignored or refused deep inside */
    const struct {
        const char *key;
        int value, fixed;
    } bn_fixed[] = {{"bits_bn_stat", cfg->quant.bits.bn_stat, 16},
                    {"bits_xhat", cfg->quant.bits.xhat, 8},
                    {"bits_gamma_beta", cfg->quant.bits.gamma_beta, 8}};
    for (size_t i = 0; i < sizeof bn_fixed / sizeof bn_fixed[0]; i++)
        if (bn_fixed[i].value != bn_fixed[i].fixed)
            return put(e, "%s[quant] %s = %d: the integer batch norm implements %d bits only (its grids are fixed, "
                          "docs/numerics.md 7.3)", origin(o, "quant", bn_fixed[i].key, at, sizeof at), bn_fixed[i].key,
                       bn_fixed[i].value, bn_fixed[i].fixed), false;
    /* the operands of the int8 GEMMs (docs/numerics.md 7.1, 7.4) */
    const struct {
        const char *key;
        int value;
    } gemm_operands[] = {{"bits_w", cfg->quant.bits.w}, {"bits_a", cfg->quant.bits.a},
                         {"bits_e1", cfg->quant.bits.e1}, {"bits_e2", cfg->quant.bits.e2}};
    for (size_t i = 0; i < sizeof gemm_operands / sizeof gemm_operands[0]; i++)
        if (gemm_operands[i].value > 8)
            return put(e, "%s[quant] %s = %d: at most 8 (W, A, E1 and E2 are the int8 operands of the convolutions)",
                       origin(o, "quant", gemm_operands[i].key, at, sizeof at), gemm_operands[i].key,
                       gemm_operands[i].value), false;
    if (cfg->train.mode != WG_MODE_INT8) return true;

    int bits = cfg->quant.bits.lr;
    double q, step = ldexp(1, -(bits - 1));
    format_double(cfg->train.lr, x, sizeof x);
    int r = lr_on_grid(cfg->train.lr, bits, &q);
    if (r < 0)
        return put(e, "%s[train] lr = %s is 0 on the %d-bit learning-rate grid of int8 mode (steps of %g): use lr > %g "
                      "or more [quant] bits_lr", origin(o, T, "lr", at, sizeof at), x, bits, step, step / 2), false;
    if (r > 0)
        warnf(w, "%s[train] lr = %s saturates on the %d-bit learning-rate grid of int8 mode: it is %g",
              origin(o, T, "lr", at, sizeof at), x, bits, q);
    if (cfg->train.lr_schedule == WG_LR_COSINE) return true;
    for (int i = 0; i < m->n; i++) {
        double lr = cfg->train.lr * m->v[i];
        format_double(m->v[i], y, sizeof y);
        r = lr_on_grid(lr, bits, &q);
        if (r < 0)
            warnf(w, "%s[train] lr_multipliers value %d (%s): lr %s x %s = %g is 0 on the %d-bit grid of int8 mode, "
                     "so the weights stop changing from epoch %g", origin(o, T, "lr_multipliers", at, sizeof at),
                  i + 1, y, x, y, lr, bits, i ? bd->v[i - 1] : 0.0);
        else if (r > 0)
            warnf(w, "%s[train] lr_multipliers value %d (%s): lr %s x %s = %g saturates on the %d-bit grid of int8 "
                     "mode: it is %g", origin(o, T, "lr_multipliers", at, sizeof at), i + 1, y, x, y, lr, bits, q);
    }
    return true;
}

bool wg_config_validate(const wg_config *cfg, char *err, size_t errlen, char *warn, size_t warnlen)
{
    if (err && errlen) err[0] = '\0';
    if (warn && warnlen) warn[0] = '\0';
    return validate(cfg, NULL, (outbuf){err, errlen}, (outbuf){warn, warnlen});
}

/* ---- loading ------------------------------------------------------------------------ */

typedef struct load_ctx {
    wg_config cfg;
    const char *path;
    wg_ini_text t;     /* the file, line by line */
    const char *given; /* wg_config_load_text: the text instead of a file */
    size_t given_len;
    int line;         /* the line handed to libinih last */
    int header_line;  /* the last line that opens a section ("[...") */
    int handler_fail; /* the first line where the handler returned 0 */
    int sec_header[N_SECTIONS];
    int key_line[N_KEYS];
    int key_set[N_KEYS];
    int err_line; /* line of the error in err; 0 = none yet */
    outbuf err;
} load_ctx;

/* Keep the error of the earliest line; returns 0 (libinih's "error"). */
static int fail(load_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(load_ctx *c, int line, const char *fmt, ...)
{
    if (c->err_line && c->err_line <= line) return 0;
    char msg[WG_CONFIG_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->err_line = line;
    put(c->err, "%s:%d: %s", c->path, line, msg);
    return 0;
}

/* libinih's reader: one line per call, without its leading whitespace. */
static char *read_line(char *str, int num, void *stream)
{
    load_ctx *c = stream;
    const char *s, *eol;
    if (c->err_line) return NULL;
    wg_ini_next next = wg_ini_text_next(&c->t, str, num, &s, &eol);
    c->line = c->t.line;
    if (next == WG_INI_END) return NULL;
    if (next == WG_INI_TOO_LONG)
        return fail(c, c->line, "the line is %td characters long: at most %d", eol - s, num - 3), NULL;
    if (s < eol && *s == '[') {
        if (!wg_ini_header_tail_ok(s, eol, ";"))
            return fail(c, c->line, "text after the section name: one '[section]' or 'key = value' per line"), NULL;
        c->header_line = c->line;
    }
    return str;
}

/* One "key = value" line: 1 = fine, 0 = an error (in c->err). */
static int take_key(load_ctx *c, const char *section, const char *name, const char *value)
{
    char s1[SHOW + 4], s2[SHOW + 4], why[WHY];
    int line = c->line, s = find_section(section);
    if (c->err_line) return 0;
    if (section[0] == '\0')
        return fail(c, line, "%s = %s: a key before any [section]", wg_ini_show(name, s1), wg_ini_show(value, s2));
    if (s >= 0 && c->sec_header[s] == 0) c->sec_header[s] = c->header_line;
    if (s >= 0 && c->sec_header[s] != c->header_line)
        return fail(c, c->header_line, "[%s] appears a second time (first on line %d): one section per concern",
                    section, c->sec_header[s]);
    if (s >= 0 && name[0] == '\0')
        return fail(c, line, "[%s] = %s: the key name is missing", section, wg_ini_show(value, s2));
    int i = lookup(section, name, why, sizeof why);
    if (i < 0) return fail(c, s < 0 ? c->header_line : line, "%s", why);
    if (c->key_line[i])
        return fail(c, line, "[%s] %s: set a second time (first on line %d)", section, name, c->key_line[i]);
    if (!set_value(&c->cfg, &k_keys[i], value, why, sizeof why))
        return fail(c, line, "[%s] %s = %s: %s%s", section, name, wg_ini_show(value, s2), why,
                    strpbrk(value, "#;") ? " (a comment after a value starts with ' ;')" : "");
    c->key_line[i] = line;
    return 1;
}

/* libinih's handler. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *c = user;
    int ok = take_key(c, section, name, value);
    if (!ok && !c->handler_fail) c->handler_fail = c->line;
    return ok;
}

static bool parse_file(load_ctx *c)
{
    char msg[WG_CONFIG_ERR_LEN];
    if (!wg_ini_text_read(&c->t, c->path, c->given, c->given_len, MAX_FILE, "config file", msg, sizeof msg)) {
        wg_ini_text_free(&c->t);
        return put(c->err, "%s", msg), false;
    }
    bool ok;
    int rc = ini_parse_stream(read_line, c, on_key, c);
    if (rc == -2) {
        put(c->err, "%s: out of memory", c->path);
        ok = false;
    } else if (rc > 0 && rc != c->handler_fail && (!c->err_line || rc <= c->err_line)) {
        /* libinih's own complaint: a line that is neither a section nor key = value */
        char line[SHOW + 4], s[SHOW + 4];
        wg_ini_text_line(&c->t, rc, line, sizeof line);
        c->err_line = 0;
        fail(c, rc, "expected '[section]' or 'key = value', not '%s'", wg_ini_show(wg_ini_trim(line), s));
        ok = false;
    } else {
        ok = c->err_line == 0;
    }
    wg_ini_text_free(&c->t);
    return ok;
}

/* An empty output.dir becomes runs/<file name without .ini>. */
static bool resolve_dir(load_ctx *c, const char *path)
{
    if (c->cfg.output.dir[0]) return true;
    const char *base = path ? strrchr(path, '/') : NULL;
    base = path ? (base ? base + 1 : path) : "default";
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".ini") == 0) n -= 4;
    char dir[WG_CONFIG_MAX_STR + 16], why[WHY];
    snprintf(dir, sizeof dir, "runs/%.*s", (int)(n < WG_CONFIG_MAX_STR ? n : WG_CONFIG_MAX_STR), base);
    if (set_value(&c->cfg, &k_keys[key_index("output", "dir")], dir, why, sizeof why)) return true;
    put(c->err, "%s: [output] dir from the file name: %s; set [output] dir", path ? path : "(no file)", why);
    return false;
}

static bool load(wg_config *cfg, const char *path, const char *text, size_t len, const char *const *overrides,
                 int n_overrides, char *err, size_t errlen, char *warn, size_t warnlen)
{
    load_ctx *c = calloc(1, sizeof *c);
    if (!c) return put((outbuf){err, errlen}, "%s: out of memory", path ? path : "config"), false;
    if (err && errlen) err[0] = '\0';
    if (warn && warnlen) warn[0] = '\0';
    wg_config_defaults(&c->cfg);
    c->path = path;
    c->given = text;
    c->given_len = len;
    c->err = (outbuf){err, errlen};
    bool ok = !path || parse_file(c);
    for (int i = 0; ok && i < n_overrides; i++) {
        int k = -1;
        ok = apply_set(&c->cfg, overrides[i], &k, err, errlen);
        if (ok) c->key_set[k] = i + 1;
    }
    origins o = {path, c->key_line, c->key_set, overrides};
    ok = ok && resolve_dir(c, path) && validate(&c->cfg, &o, c->err, (outbuf){warn, warnlen});
    if (ok) {
        c->cfg.quant.bits.g_scale_log2 = wg_config_g_scale_log2_at(&c->cfg, 0);
        *cfg = c->cfg;
    }
    free(c);
    return ok;
}

bool wg_config_load(wg_config *cfg, const char *path, const char *const *overrides, int n_overrides, char *err,
                    size_t errlen, char *warn, size_t warnlen)
{
    return load(cfg, path, NULL, 0, overrides, n_overrides, err, errlen, warn, warnlen);
}

bool wg_config_load_text(wg_config *cfg, const char *text, size_t len, const char *name, char *err, size_t errlen,
                         char *warn, size_t warnlen)
{
    return load(cfg, name, text, len, NULL, 0, err, errlen, warn, warnlen);
}
