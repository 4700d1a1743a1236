/* policy - the access policy: parser, index and evaluation.
 *
 * Parsing keeps the rules in file order (policy_t.rules); each rule owns one
 * block holding its strings. The index is built once, after parsing, and
 * never changes: every (agency, action) pair gets a set of its patterns, with
 * '*' patterns reduced to the first such rule and exact types and prefixes in
 * two sorted arrays of keys (one entry per distinct pattern, carrying its first
 * rule). Asking about type "a.b.c" then means: the '*' rule, one binary search
 * for "a.b.c" among the exact keys, and one for each of "a" and "a.b" among the
 * prefixes; the smallest rule index found is the first matching rule in file
 * order, exactly what a scan of the rules would find. The same is done in the
 * shared set of the '*' agency, and the earlier of the two answers wins.
 *
 * Nothing here writes to a policy after policy_parse returns, and there is no
 * static mutable state, so a policy may be evaluated from many threads.
 * Allocation failure is reported ("out of memory"), not fatal: a hub that
 * reloads its policy keeps the old one when the new one cannot be built.
 */
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"

#define S_NONE UINT32_MAX /* no rule */
#define S_QUOTE_MAX 48    /* bytes of a field quoted in an error message */
#define S_FIELDS 4        /* allow AGENCY ACTION PATTERN */

struct policy_rule {
    const char *text;    /* the rule as written */
    const char *where;   /* "name:line" */
    const char *agency;  /* an agency id or "*" */
    const char *pattern; /* '*', an event type, or "prefix.*" */
    policy_action_t action;
    size_t line;
    char *block; /* owns the four strings above */
};

/* One distinct exact type or prefix of a set, and the first rule that has it. */
typedef struct {
    const char *bytes; /* the type, or the prefix without its ".*"; not NUL-terminated */
    size_t len;
    uint32_t rule;
} s_key_t;

/* The patterns of one agency (or of '*') for one action. */
typedef struct {
    uint32_t first;        /* first rule of the set, whatever its pattern */
    uint32_t any;          /* first rule whose pattern is '*' */
    const s_key_t *exact;  /* sorted by bytes, distinct */
    size_t n_exact;
    const s_key_t *prefix; /* sorted by bytes, distinct */
    size_t n_prefix;
} s_set_t;

typedef struct {
    const char *agency; /* borrowed from a rule; NULL for the '*' scope */
    s_set_t sets[POLICY_ACTIONS];
} s_scope_t;

struct policy {
    policy_rule_t *rules; /* file order */
    size_t n_rules;
    size_t cap_rules;
    s_scope_t *scopes; /* agencies named by rules, sorted by id */
    size_t n_scopes;
    s_scope_t every; /* the rules for '*' */
    s_key_t *keys;   /* storage of every set's keys */
};

/* Action names, indexed by policy_action_t. */
static const char *const s_action_names[POLICY_ACTIONS] = {
    [POLICY_PUBLISH] = "publish",
    [POLICY_SUBSCRIBE] = "subscribe",
};

static const policy_limits_t s_default_limits = {POLICY_MAX_BYTES, POLICY_MAX_RULES, POLICY_MAX_LINE};

const char *policy_action_name(policy_action_t action)
{
    return (unsigned)action < POLICY_ACTIONS ? s_action_names[action] : "unknown";
}

int policy_action_parse(const char *name)
{
    for (int i = 0; name && i < POLICY_ACTIONS; i++)
        if (strcmp(name, s_action_names[i]) == 0)
            return i;
    return -1;
}

const char *policy_strerror(int code)
{
    switch (code) {
    case POLICY_OK: return "ok";
    case POLICY_IO: return "cannot read the policy file";
    case POLICY_INVALID: return "invalid policy";
    default: return "unknown policy error";
    }
}

static void s_seterr(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Write a message into the caller's err, which may be NULL. */
static void s_seterr(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Byte strings in lexicographic order, a shorter one before its extensions. */
static int s_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

static uint32_t s_min(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- evaluation */

/* Index of the first key not below bytes. */
static size_t s_lower_bound(const s_key_t *keys, size_t n, const char *bytes, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s_bytes_cmp(keys[mid].bytes, keys[mid].len, bytes, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The rule of the key equal to bytes, or S_NONE. */
static uint32_t s_key_rule(const s_key_t *keys, size_t n, const char *bytes, size_t len)
{
    size_t i = s_lower_bound(keys, n, bytes, len);
    if (i < n && s_bytes_cmp(keys[i].bytes, keys[i].len, bytes, len) == 0)
        return keys[i].rule;
    return S_NONE;
}

/* The first rule among keys that start with head and are longer than it. */
static uint32_t s_keys_under(const s_key_t *keys, size_t n, const char *head, size_t head_len)
{
    uint32_t best = S_NONE;
    for (size_t i = s_lower_bound(keys, n, head, head_len); i < n; i++) {
        if (keys[i].len < head_len || memcmp(keys[i].bytes, head, head_len) != 0)
            break; /* past the keys that start with head: they are contiguous */
        if (keys[i].len > head_len)
            best = s_min(best, keys[i].rule);
    }
    return best;
}

/* The first rule of set whose pattern matches the event type (codec_filter_match). */
static uint32_t s_set_match(const s_set_t *set, const char *type, size_t len)
{
    if (set->first == S_NONE)
        return S_NONE;
    uint32_t best = set->any;
    if (set->n_exact)
        best = s_min(best, s_key_rule(set->exact, set->n_exact, type, len));
    /* "p.*" matches when the type is "p." and something more: try each p that
     * ends before a dot that is not the type's last byte. */
    for (size_t i = 0; set->n_prefix && i + 1 < len; i++)
        if (type[i] == '.')
            best = s_min(best, s_key_rule(set->prefix, set->n_prefix, type, i));
    return best;
}

/* The first rule of set whose pattern overlaps filter (valid, of flen bytes). */
static uint32_t s_set_overlap(const s_set_t *set, const char *filter, size_t flen)
{
    if (set->first == S_NONE)
        return S_NONE;
    if (flen == 1 && filter[0] == '*')
        return set->first;
    if (flen < 2 || filter[flen - 1] != '*')
        return s_set_match(set, filter, flen); /* an exact type */
    /* filter "p.*": '*' rules; prefixes q.* that contain it (q is p, or p
     * starts with "q."); prefixes inside it and exact types it matches (both
     * start with "p." and are longer). */
    size_t plen = flen - 2;
    uint32_t best = set->any;
    if (set->n_prefix) {
        best = s_min(best, s_key_rule(set->prefix, set->n_prefix, filter, plen));
        for (size_t i = 0; i < plen; i++)
            if (filter[i] == '.')
                best = s_min(best, s_key_rule(set->prefix, set->n_prefix, filter, i));
        best = s_min(best, s_keys_under(set->prefix, set->n_prefix, filter, plen + 1));
    }
    if (set->n_exact)
        best = s_min(best, s_keys_under(set->exact, set->n_exact, filter, plen + 1));
    return best;
}

static int s_scope_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const s_scope_t *)elem)->agency);
}

static const s_scope_t *s_scope_find(const policy_t *self, const char *agency)
{
    if (self->n_scopes == 0)
        return NULL;
    return bsearch(agency, self->scopes, self->n_scopes, sizeof *self->scopes, s_scope_cmp);
}

bool policy_allows(const policy_t *self, const char *agency, policy_action_t action, const char *type,
                   size_t type_len, const policy_rule_t **rule_out)
{
    if (rule_out)
        *rule_out = NULL;
    if (!self || !agency || (unsigned)action >= POLICY_ACTIONS || (!type && type_len))
        return false;
    if (!type)
        type = "";
    const s_scope_t *own = s_scope_find(self, agency);
    uint32_t best = s_set_match(&self->every.sets[action], type, type_len);
    if (own)
        best = s_min(best, s_set_match(&own->sets[action], type, type_len));
    if (best == S_NONE)
        return false;
    if (rule_out)
        *rule_out = &self->rules[best];
    return true;
}

const policy_rule_t *policy_filter_rule(const policy_t *self, const char *agency, const char *filter)
{
    if (!self || !agency || !codec_filter_valid(filter))
        return NULL;
    size_t flen = strlen(filter);
    const s_scope_t *own = s_scope_find(self, agency);
    uint32_t best = s_set_overlap(&self->every.sets[POLICY_SUBSCRIBE], filter, flen);
    if (own)
        best = s_min(best, s_set_overlap(&own->sets[POLICY_SUBSCRIBE], filter, flen));
    return best == S_NONE ? NULL : &self->rules[best];
}

bool policy_filter_allowed(const policy_t *self, const char *agency, const char *filter)
{
    return policy_filter_rule(self, agency, filter) != NULL;
}

bool policy_patterns_overlap(const char *a, const char *b)
{
    if (!codec_filter_valid(a) || !codec_filter_valid(b))
        return false;
    if (strcmp(a, "*") == 0 || strcmp(b, "*") == 0)
        return true;
    size_t alen = strlen(a), blen = strlen(b);
    bool a_prefix = a[alen - 1] == '*', b_prefix = b[blen - 1] == '*';
    if (!a_prefix && !b_prefix)
        return strcmp(a, b) == 0;
    if (a_prefix && !b_prefix)
        return codec_filter_match(a, b, blen);
    if (!a_prefix && b_prefix)
        return codec_filter_match(b, a, alen);
    /* "p." and "q." (the prefixes with their dot): one starts the other */
    size_t n = alen - 1 < blen - 1 ? alen - 1 : blen - 1;
    return memcmp(a, b, n) == 0;
}

/* ----------------------------------------------------------------- accessors */

size_t policy_rule_count(const policy_t *self)
{
    return self ? self->n_rules : 0;
}

const policy_rule_t *policy_rule_at(const policy_t *self, size_t i)
{
    return self && i < self->n_rules ? &self->rules[i] : NULL;
}

size_t policy_agency_count(const policy_t *self)
{
    return self ? self->n_scopes : 0;
}

const char *policy_rule_text(const policy_rule_t *rule)
{
    return rule->text;
}

const char *policy_rule_where(const policy_rule_t *rule)
{
    return rule->where;
}

const char *policy_rule_agency(const policy_rule_t *rule)
{
    return rule->agency;
}

const char *policy_rule_pattern(const policy_rule_t *rule)
{
    return rule->pattern;
}

policy_action_t policy_rule_action(const policy_rule_t *rule)
{
    return rule->action;
}

size_t policy_rule_line(const policy_rule_t *rule)
{
    return rule->line;
}

void policy_destroy(policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    policy_t *self = *self_p;
    for (size_t i = 0; i < self->n_rules; i++)
        free(self->rules[i].block);
    free(self->rules);
    free(self->scopes);
    free(self->keys);
    free(self);
    *self_p = NULL;
}

/* --------------------------------------------------------------------- index */

typedef enum { S_ANY, S_EXACT, S_PREFIX } s_kind_t;

/* A rule's pattern as the index sees it, sorted to group sets and keys. */
typedef struct {
    const char *agency;
    policy_action_t action;
    s_kind_t kind;
    const char *bytes;
    size_t len;
    uint32_t rule;
} s_entry_t;

static int s_entry_group_cmp(const s_entry_t *x, const s_entry_t *y)
{
    int c = strcmp(x->agency, y->agency);
    if (c != 0)
        return c;
    if (x->action != y->action)
        return x->action < y->action ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return s_bytes_cmp(x->bytes, x->len, y->bytes, y->len);
}

static int s_entry_cmp(const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    int c = s_entry_group_cmp(x, y);
    if (c != 0)
        return c;
    return (x->rule > y->rule) - (x->rule < y->rule);
}

static void s_scope_init(s_scope_t *scope, const char *agency)
{
    memset(scope, 0, sizeof *scope);
    scope->agency = agency;
    for (int a = 0; a < POLICY_ACTIONS; a++)
        scope->sets[a].first = scope->sets[a].any = S_NONE;
}

static void s_entry_of(const policy_rule_t *rule, uint32_t index, s_entry_t *e)
{
    size_t len = strlen(rule->pattern);
    e->agency = rule->agency;
    e->action = rule->action;
    e->bytes = rule->pattern;
    e->rule = index;
    if (len == 1 && rule->pattern[0] == '*') {
        e->kind = S_ANY;
        e->len = 0;
    } else if (rule->pattern[len - 1] == '*') {
        e->kind = S_PREFIX;
        e->len = len - 2;
    } else {
        e->kind = S_EXACT;
        e->len = len;
    }
}

/* Build scopes, sets and keys from the parsed rules. Returns 0 or -1 (out of memory). */
static int s_index(policy_t *self)
{
    s_scope_init(&self->every, NULL);
    size_t n = self->n_rules;
    if (n == 0)
        return 0;
    s_entry_t *entries = malloc(n * sizeof *entries);
    if (!entries)
        return -1;
    for (size_t i = 0; i < n; i++)
        s_entry_of(&self->rules[i], (uint32_t)i, &entries[i]);
    qsort(entries, n, sizeof *entries, s_entry_cmp);

    size_t n_scopes = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(entries[i].agency, "*") != 0 && (i == 0 || strcmp(entries[i].agency, entries[i - 1].agency) != 0))
            n_scopes++;
    self->scopes = calloc(n_scopes ? n_scopes : 1, sizeof *self->scopes);
    self->keys = malloc(n * sizeof *self->keys);
    if (!self->scopes || !self->keys) {
        free(entries);
        return -1;
    }

    s_scope_t *scope = NULL;
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        const s_entry_t *e = &entries[i];
        if (i == 0 || strcmp(e->agency, entries[i - 1].agency) != 0) {
            if (strcmp(e->agency, "*") == 0) {
                scope = &self->every;
            } else {
                scope = &self->scopes[self->n_scopes++];
                s_scope_init(scope, e->agency);
            }
        }
        s_set_t *set = &scope->sets[e->action];
        set->first = s_min(set->first, e->rule);
        if (e->kind == S_ANY) {
            set->any = s_min(set->any, e->rule);
            continue;
        }
        if (i > 0 && s_entry_group_cmp(e, &entries[i - 1]) == 0)
            continue; /* the same pattern again; the earlier rule has it */
        s_key_t *key = &self->keys[n_keys++];
        *key = (s_key_t){e->bytes, e->len, e->rule};
        if (e->kind == S_EXACT) {
            if (set->n_exact++ == 0)
                set->exact = key;
        } else if (set->n_prefix++ == 0) {
            set->prefix = key;
        }
    }
    free(entries);
    return 0;
}

/* -------------------------------------------------------------------- parser */

typedef struct {
    const char *p;
    size_t n;
} s_span_t;

typedef struct {
    policy_t *policy;
    const char *name;
    const policy_limits_t *limits;
    size_t line;
    char *err;
    size_t err_len;
} s_parser_t;

static void s_fail(const s_parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write "name:line: message" into the caller's err. */
static void s_fail(const s_parser_t *ps, const char *fmt, ...)
{
    if (!ps->err || !ps->err_len)
        return;
    int n = snprintf(ps->err, ps->err_len, "%s:%zu: ", ps->name, ps->line);
    if (n < 0 || (size_t)n >= ps->err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
    va_end(ap);
}

/* A field fit to quote in a message: at most S_QUOTE_MAX bytes, anything
 * that is not printable ASCII shown as '?', so that no control character of
 * a broken file reaches a terminal. */
static const char *s_quote(s_span_t f, char *buf, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < f.n && n + 4 < len; i++) {
        if (i == S_QUOTE_MAX) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
        unsigned char c = (unsigned char)f.p[i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[n] = '\0';
    return buf;
}

static bool s_span_is(s_span_t f, const char *word)
{
    return f.n == strlen(word) && memcmp(f.p, word, f.n) == 0;
}

/* Copy f into buf as a string; false when it does not fit. */
static bool s_span_copy(s_span_t f, char *buf, size_t len)
{
    if (f.n >= len)
        return false;
    memcpy(buf, f.p, f.n);
    buf[f.n] = '\0';
    return true;
}

static bool s_agency_ok(const char *agency)
{
    return strcmp(agency, "*") == 0 || codec_agency_valid(agency);
}

/* Is pattern valid for action? Record services (serve, query) will name
 * services here; publish and subscribe take event type filters. */
static bool s_pattern_ok(policy_action_t action, const char *pattern)
{
    switch (action) {
    case POLICY_PUBLISH:
    case POLICY_SUBSCRIBE: return codec_filter_valid(pattern);
    default: return false;
    }
}

static int s_add_rule(s_parser_t *ps, s_span_t text, const char *agency, policy_action_t action,
                      const char *pattern)
{
    policy_t *self = ps->policy;
    if (self->n_rules == self->cap_rules) {
        size_t cap = self->cap_rules ? self->cap_rules * 2 : 64;
        policy_rule_t *grown = realloc(self->rules, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->rules = grown;
        self->cap_rules = cap;
    }
    int wlen = snprintf(NULL, 0, "%s:%zu", ps->name, ps->line);
    size_t alen = strlen(agency), plen = strlen(pattern);
    if (wlen < 0)
        return -1;
    char *block = malloc((size_t)wlen + 1 + text.n + 1 + alen + 1 + plen + 1);
    if (!block)
        return -1;
    policy_rule_t *rule = &self->rules[self->n_rules++];
    rule->block = block;
    rule->action = action;
    rule->line = ps->line;
    char *p = block;
    snprintf(p, (size_t)wlen + 1, "%s:%zu", ps->name, ps->line);
    rule->where = p;
    p += wlen + 1;
    memcpy(p, text.p, text.n);
    p[text.n] = '\0';
    rule->text = p;
    p += text.n + 1;
    memcpy(p, agency, alen + 1);
    rule->agency = p;
    p += alen + 1;
    memcpy(p, pattern, plen + 1);
    rule->pattern = p;
    return 0;
}

static bool s_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Parse one line of n bytes (line ending removed). Returns 0 (a rule was
 * added, or the line is blank or a comment) or a policy_err after s_fail. */
static int s_parse_line(s_parser_t *ps, const char *line, size_t n)
{
    /* Fields are runs of non-blanks; one that starts with '#' starts a
     * comment, so "a#b" is a (bad) field but "a #b" is a field and a comment. */
    s_span_t f[S_FIELDS + 1];
    size_t nf = 0, end = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && s_blank(line[i]))
            i++;
        if (i == n || line[i] == '#')
            break;
        size_t start = i;
        while (i < n && !s_blank(line[i]))
            i++;
        if (nf <= S_FIELDS)
            f[nf++] = (s_span_t){line + start, i - start};
        end = i;
    }
    if (nf == 0)
        return POLICY_OK;

    char q[S_QUOTE_MAX + 8];
    if (!s_span_is(f[0], "allow")) {
        s_fail(ps, "unknown rule '%s': a rule reads 'allow AGENCY ACTION PATTERN'", s_quote(f[0], q, sizeof q));
        return POLICY_INVALID;
    }
    if (nf < S_FIELDS) {
        static const char *const s_missing[] = {"", "AGENCY, ACTION and PATTERN", "ACTION and PATTERN", "PATTERN"};
        s_fail(ps, "incomplete rule: %s missing (a rule reads 'allow AGENCY ACTION PATTERN')", s_missing[nf]);
        return POLICY_INVALID;
    }
    if (nf > S_FIELDS) {
        s_fail(ps, "unexpected '%s' after the pattern (a comment starts with '#')", s_quote(f[S_FIELDS], q, sizeof q));
        return POLICY_INVALID;
    }

    char agency[CODEC_AGENCY_MAX + 1];
    if (!s_span_copy(f[1], agency, sizeof agency) || !s_agency_ok(agency)) {
        s_fail(ps, "invalid agency '%s': expected '*' or an agency id (1-%d characters of a-z 0-9 - in "
                   "dot-separated labels)",
               s_quote(f[1], q, sizeof q), CODEC_AGENCY_MAX);
        return POLICY_INVALID;
    }
    char action_name[16];
    int action = s_span_copy(f[2], action_name, sizeof action_name) ? policy_action_parse(action_name) : -1;
    if (action < 0) {
        s_fail(ps, "unknown action '%s': expected publish or subscribe", s_quote(f[2], q, sizeof q));
        return POLICY_INVALID;
    }
    char pattern[CODEC_TYPE_MAX + 1];
    if (!s_span_copy(f[3], pattern, sizeof pattern) || !s_pattern_ok((policy_action_t)action, pattern)) {
        s_fail(ps, "invalid pattern '%s': expected '*', an event type, or a prefix such as 'population.*'",
               s_quote(f[3], q, sizeof q));
        return POLICY_INVALID;
    }
    if (ps->policy->n_rules >= ps->limits->max_rules || ps->policy->n_rules >= S_NONE) { /* indexes are 32-bit */
        s_fail(ps, "more than %zu rules", ps->limits->max_rules);
        return POLICY_INVALID;
    }
    s_span_t text = {f[0].p, (size_t)(line + end - f[0].p)}; /* as written, up to the comment */
    if (s_add_rule(ps, text, agency, (policy_action_t)action, pattern) != 0) {
        s_fail(ps, "out of memory");
        return POLICY_INVALID;
    }
    return POLICY_OK;
}

policy_t *policy_parse_limited(const char *text, size_t len, const char *name_for_errors,
                               const policy_limits_t *limits, char *err, size_t err_len)
{
    s_parser_t ps = {NULL, name_for_errors ? name_for_errors : "policy", limits ? limits : &s_default_limits, 0,
                     err, err_len};
    s_seterr(err, err_len, "%s", "");
    if (!text && len) {
        s_seterr(err, err_len, "%s: no text", ps.name);
        return NULL;
    }
    if (len > ps.limits->max_bytes) {
        s_seterr(err, err_len, "%s: larger than %zu bytes", ps.name, ps.limits->max_bytes);
        return NULL;
    }
    ps.policy = calloc(1, sizeof *ps.policy);
    if (!ps.policy) {
        s_seterr(err, err_len, "out of memory");
        return NULL;
    }
    size_t pos = 0;
    while (pos < len) {
        ps.line++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n > ps.limits->max_line) {
            s_fail(&ps, "line longer than %zu bytes", ps.limits->max_line);
            goto fail;
        }
        if (memchr(line, '\0', n)) {
            s_fail(&ps, "NUL byte in the line (not a text file?)");
            goto fail;
        }
        if (s_parse_line(&ps, line, n) != POLICY_OK)
            goto fail;
    }
    if (s_index(ps.policy) != 0) {
        s_seterr(err, err_len, "out of memory");
        goto fail;
    }
    return ps.policy;
fail:
    policy_destroy(&ps.policy);
    return NULL;
}

policy_t *policy_parse(const char *text, size_t len, const char *name_for_errors, char *err, size_t err_len)
{
    return policy_parse_limited(text, len, name_for_errors, NULL, err, err_len);
}

int policy_read_file(const char *path, char **text_out, size_t *len_out, char *err, size_t err_len)
{
    *text_out = NULL;
    *len_out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s_seterr(err, err_len, "%s: %s", path, strerror(errno));
        return POLICY_IO;
    }
    /* One byte more than allowed tells a file at the ceiling from a larger one. */
    size_t cap = POLICY_MAX_BYTES + 1, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        s_seterr(err, err_len, "%s: out of memory", path);
        return POLICY_IO;
    }
    int rc = POLICY_OK;
    while (len < cap) {
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            s_seterr(err, err_len, "%s: %s", path, strerror(errno));
            rc = POLICY_IO;
            break;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (rc == POLICY_OK && len > POLICY_MAX_BYTES) {
        s_seterr(err, err_len, "%s: larger than %d bytes", path, POLICY_MAX_BYTES);
        rc = POLICY_INVALID;
    }
    if (rc != POLICY_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *text_out = buf;
    *len_out = len;
    return POLICY_OK;
}

policy_t *policy_load(const char *path, char *err, size_t err_len)
{
    char *text;
    size_t len;
    if (policy_read_file(path, &text, &len, err, err_len) != POLICY_OK)
        return NULL;
    policy_t *self = policy_parse(text, len, path, err, err_len);
    free(text);
    return self;
}
