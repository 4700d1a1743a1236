/* test_policy - the access policy: parsing, errors, evaluation, overlap, limits.
 *
 * Evaluation is checked against a plain scan of the rules in file order
 * (s_scan_*), the definition the index must agree with, on hand-made and on
 * generated policies. The CLI cases run the built `civibus` when CIVIBUS_CLI
 * names it (tests/run.sh sets it) and are skipped otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "policy.h"

static policy_t *s_parse(const char *text)
{
    char err[512];
    policy_t *p = policy_parse(text, strlen(text), "t.conf", err, sizeof err);
    if (!p)
        fail_msg("unexpected error: %s", err);
    return p;
}

static bool s_allows(const policy_t *p, const char *agency, policy_action_t action, const char *type)
{
    return policy_allows(p, agency, action, type, strlen(type), NULL);
}

/* The definitions: the first rule in file order that matches. */
static const policy_rule_t *s_scan_allows(const policy_t *p, const char *agency, policy_action_t action,
                                          const char *type)
{
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const policy_rule_t *r = policy_rule_at(p, i);
        const char *a = policy_rule_agency(r);
        if (policy_rule_action(r) == action && (strcmp(a, "*") == 0 || strcmp(a, agency) == 0) &&
            codec_filter_match(policy_rule_pattern(r), type, strlen(type)))
            return r;
    }
    return NULL;
}

static const policy_rule_t *s_scan_filter(const policy_t *p, const char *agency, const char *filter)
{
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const policy_rule_t *r = policy_rule_at(p, i);
        const char *a = policy_rule_agency(r);
        if (policy_rule_action(r) == POLICY_SUBSCRIBE && (strcmp(a, "*") == 0 || strcmp(a, agency) == 0) &&
            policy_patterns_overlap(policy_rule_pattern(r), filter))
            return r;
    }
    return NULL;
}

static void test_parse_layout(void **state)
{
    (void)state;
    const char *text = "# the demo policy\n"
                       "\n"
                       "   \t  \n"
                       "allow population-register publish population.*\n"
                       "\tallow\ttax-office\tsubscribe\tpopulation.birth.*\t\n"
                       "  # indented comment\n"
                       "allow  *   subscribe   public.*   # anyone may read notices\n"
                       "allow municipality publish municipality.permit.granted\r\n"
                       "allow municipality subscribe *"; /* no final newline */
    policy_t *p = s_parse(text);
    assert_int_equal(policy_rule_count(p), 5);
    assert_int_equal(policy_agency_count(p), 3);

    const policy_rule_t *r = policy_rule_at(p, 0);
    assert_string_equal(policy_rule_text(r), "allow population-register publish population.*");
    assert_string_equal(policy_rule_where(r), "t.conf:4");
    assert_int_equal(policy_rule_line(r), 4);
    assert_string_equal(policy_rule_agency(r), "population-register");
    assert_int_equal(policy_rule_action(r), POLICY_PUBLISH);
    assert_string_equal(policy_rule_pattern(r), "population.*");

    r = policy_rule_at(p, 1); /* text as written, tabs inside kept, outer blanks gone */
    assert_string_equal(policy_rule_text(r), "allow\ttax-office\tsubscribe\tpopulation.birth.*");
    assert_string_equal(policy_rule_where(r), "t.conf:5");

    r = policy_rule_at(p, 2); /* a trailing comment is not part of the rule */
    assert_string_equal(policy_rule_text(r), "allow  *   subscribe   public.*");
    assert_string_equal(policy_rule_agency(r), "*");
    assert_string_equal(policy_rule_where(r), "t.conf:7");

    r = policy_rule_at(p, 3); /* CRLF */
    assert_string_equal(policy_rule_pattern(r), "municipality.permit.granted");
    assert_string_equal(policy_rule_text(r), "allow municipality publish municipality.permit.granted");

    r = policy_rule_at(p, 4);
    assert_string_equal(policy_rule_where(r), "t.conf:9");
    assert_string_equal(policy_rule_pattern(r), "*");
    assert_null(policy_rule_at(p, 5));
    policy_destroy(&p);
    assert_null(p);
    policy_destroy(&p);
    policy_destroy(NULL);

    /* nothing but comments: a valid policy that allows nothing */
    p = s_parse("# nothing yet\n\n");
    assert_int_equal(policy_rule_count(p), 0);
    assert_int_equal(policy_agency_count(p), 0);
    policy_destroy(&p);
    p = policy_parse("", 0, NULL, NULL, 0);
    assert_non_null(p);
    policy_destroy(&p);
    p = policy_parse(NULL, 0, "x", NULL, 0);
    assert_non_null(p);
    policy_destroy(&p);
}

/* Every error names the file, the line and what is wrong. */
static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *error;
    } cases[] = {
        {"deny tax-office publish tax.*\n", "t.conf:1: unknown rule 'deny'"},
        {"Allow tax-office publish tax.*\n", "t.conf:1: unknown rule 'Allow'"},
        {"allow\n", "t.conf:1: incomplete rule: AGENCY, ACTION and PATTERN missing"},
        {"# c\nallow tax-office\n", "t.conf:2: incomplete rule: ACTION and PATTERN missing"},
        {"\n\nallow tax-office publish # tax.*\n", "t.conf:3: incomplete rule: PATTERN missing"},
        {"allow tax-office publish tax.* now\n", "t.conf:1: unexpected 'now' after the pattern"},
        {"allow tax-office publish tax.* now and then\n", "t.conf:1: unexpected 'now' after the pattern"},
        {"allow Tax-Office publish tax.*\n", "t.conf:1: invalid agency 'Tax-Office'"},
        {"allow tax..office publish tax.*\n", "t.conf:1: invalid agency 'tax..office'"},
        {"allow ** publish tax.*\n", "t.conf:1: invalid agency '**'"},
        {"allow tax-* publish tax.*\n", "t.conf:1: invalid agency 'tax-*'"},
        {"allow a publish x\nallow "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa publish x\n",
         "t.conf:2: invalid agency 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"},
        {"allow tax-office read tax.*\n", "t.conf:1: unknown action 'read': expected publish or subscribe"},
        {"allow tax-office Publish tax.*\n", "t.conf:1: unknown action 'Publish'"},
        {"allow tax-office serve person.address\n", "t.conf:1: unknown action 'serve'"},
        {"allow tax-office query person.address\n", "t.conf:1: unknown action 'query'"},
        {"allow tax-office publish tax.\n", "t.conf:1: invalid pattern 'tax.'"},
        {"allow tax-office publish .tax\n", "t.conf:1: invalid pattern '.tax'"},
        {"allow tax-office publish tax*\n", "t.conf:1: invalid pattern 'tax*'"},
        {"allow tax-office publish tax.*.filed\n", "t.conf:1: invalid pattern 'tax.*.filed'"},
        {"allow tax-office publish **\n", "t.conf:1: invalid pattern '**'"},
        {"allow tax-office publish .*\n", "t.conf:1: invalid pattern '.*'"},
        {"allow tax-office publish tax#1\n", "t.conf:1: invalid pattern 'tax#1'"},
        {"allow tax-office publish t\x1b[2Jx\n", "t.conf:1: invalid pattern 't?[2Jx'"},
        {"allow tax-office publish tax.\xc3\xa4\n", "t.conf:1: invalid pattern 'tax.?" "?'"},
        {"allow a publish x\n\nallow tax-office subscribe \rtax\n", "t.conf:3: invalid pattern '?tax'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "untouched";
        policy_t *p = policy_parse(cases[i].text, strlen(cases[i].text), "t.conf", err, sizeof err);
        if (p || strncmp(err, cases[i].error, strlen(cases[i].error)) != 0)
            fail_msg("case %zu: expected \"%s\", got %s \"%s\"", i, cases[i].error, p ? "a policy" : "", err);
        for (const char *c = err; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f); /* no control bytes reach a terminal */
    }

    /* a pattern longer than an event type may be */
    char text[512], err[512], want[64];
    char type[200];
    memset(type, 'x', sizeof type);
    type[sizeof type - 1] = '\0';
    snprintf(text, sizeof text, "allow a subscribe %s\n", type);
    assert_null(policy_parse(text, strlen(text), "t.conf", err, sizeof err));
    assert_non_null(strstr(err, "t.conf:1: invalid pattern 'xxxx"));
    assert_non_null(strstr(err, "...'"));
    type[CODEC_TYPE_MAX] = '\0'; /* 128 bytes: fine */
    snprintf(text, sizeof text, "allow a subscribe %s\n", type);
    policy_t *p = s_parse(text);
    policy_destroy(&p);

    /* a NUL byte, even in a comment */
    static const char nul[] = "allow a publish x\n# a\0b\n";
    assert_null(policy_parse(nul, sizeof nul - 1, "t.conf", err, sizeof err));
    assert_string_equal(err, "t.conf:2: NUL byte in the line (not a text file?)");

    /* the name defaults to "policy"; a tiny err buffer is cut, not overrun */
    assert_null(policy_parse("nonsense", 8, NULL, err, sizeof err));
    snprintf(want, sizeof want, "policy:1: unknown rule 'nonsense'");
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    char small[8];
    assert_null(policy_parse("nonsense", 8, "t.conf", small, sizeof small));
    assert_string_equal(small, "t.conf:");
    assert_null(policy_parse("nonsense", 8, "t.conf", NULL, 0));
}

static void test_default_deny(void **state)
{
    (void)state;
    policy_t *p = s_parse("# nothing\n");
    assert_false(s_allows(p, "tax-office", POLICY_PUBLISH, "tax.return.filed"));
    assert_false(s_allows(p, "tax-office", POLICY_SUBSCRIBE, "tax.return.filed"));
    assert_false(policy_filter_allowed(p, "tax-office", "*"));
    policy_destroy(&p);

    p = s_parse("allow tax-office publish tax.*\n");
    const policy_rule_t *r = policy_rule_at(p, 0);
    assert_non_null(r);
    assert_false(policy_allows(p, "municipality", POLICY_PUBLISH, "tax.x", 5, &r));
    assert_null(r); /* rule_out is cleared on deny */
    assert_false(s_allows(p, "tax-office", POLICY_PUBLISH, "tax"));
    assert_false(s_allows(p, "tax-office", POLICY_PUBLISH, "taxes.x"));
    assert_true(s_allows(p, "tax-office", POLICY_PUBLISH, "tax.x"));
    /* bad arguments are denied, never a crash */
    assert_false(s_allows(NULL, "tax-office", POLICY_PUBLISH, "tax.x"));
    assert_false(s_allows(p, NULL, POLICY_PUBLISH, "tax.x"));
    assert_false(s_allows(p, "tax-office", POLICY_ACTIONS, "tax.x"));
    assert_false(s_allows(p, "tax-office", (policy_action_t)-1, "tax.x"));
    assert_false(policy_allows(p, "tax-office", POLICY_PUBLISH, NULL, 3, NULL));
    assert_false(policy_allows(p, "tax-office", POLICY_PUBLISH, NULL, 0, NULL));
    assert_false(s_allows(p, "tax-office", POLICY_PUBLISH, ""));
    assert_false(policy_filter_allowed(NULL, "tax-office", "*"));
    assert_false(policy_filter_allowed(p, NULL, "*"));
    policy_destroy(&p);
}

static void test_agency_and_star_rules(void **state)
{
    (void)state;
    policy_t *p = s_parse("allow tax-office subscribe tax.*\n"            /* 1 */
                          "allow * subscribe public.*\n"                  /* 2 */
                          "allow municipality subscribe public.notice.*\n" /* 3 */
                          "allow * publish public.feedback\n"             /* 4 */
                          "allow municipality subscribe *\n");            /* 5 */
    assert_int_equal(policy_agency_count(p), 2);
    const policy_rule_t *r;

    /* a rule for one agency is for that agency only */
    assert_true(s_allows(p, "tax-office", POLICY_SUBSCRIBE, "tax.return.filed"));
    assert_false(s_allows(p, "population-register", POLICY_SUBSCRIBE, "tax.return.filed"));

    /* '*' rules hold for every agency, named in the policy or not */
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "public.notice.x", 15, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    assert_true(policy_allows(p, "newcomer", POLICY_SUBSCRIBE, "public.notice.x", 15, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    assert_true(s_allows(p, "newcomer", POLICY_PUBLISH, "public.feedback"));
    assert_false(s_allows(p, "newcomer", POLICY_SUBSCRIBE, "tax.x"));

    /* the first rule in file order is named, whichever group it is in */
    assert_true(policy_allows(p, "municipality", POLICY_SUBSCRIBE, "public.notice.x", 15, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    assert_true(policy_allows(p, "municipality", POLICY_SUBSCRIBE, "tax.x", 5, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:5");
    assert_string_equal(policy_rule_text(r), "allow municipality subscribe *");
    policy_destroy(&p);

    /* an agency rule before a '*' rule that also matches */
    p = s_parse("allow tax-office subscribe public.*\nallow * subscribe public.*\n");
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "public.a", 8, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:1");
    assert_true(policy_allows(p, "other", POLICY_SUBSCRIBE, "public.a", 8, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    /* "*" as an agency name is nobody in particular: only '*' rules apply */
    assert_true(policy_allows(p, "*", POLICY_SUBSCRIBE, "public.a", 8, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    policy_destroy(&p);
}

static void test_patterns(void **state)
{
    (void)state;
    policy_t *p = s_parse("allow a subscribe x.*\n"
                          "allow a subscribe exact.type\n"
                          "allow b subscribe *\n"
                          "allow c subscribe x.y.*\n"
                          "allow c subscribe x.y\n");
    /* prefix: "x.*" matches x.b, x.b.c; not x, not xb.c, not x. */
    assert_true(s_allows(p, "a", POLICY_SUBSCRIBE, "x.b"));
    assert_true(s_allows(p, "a", POLICY_SUBSCRIBE, "x.b.c"));
    assert_true(s_allows(p, "a", POLICY_SUBSCRIBE, "x.b.c.d.e.f"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "x"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "xb.c"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "x."));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "y.x.b"));
    /* exact */
    assert_true(s_allows(p, "a", POLICY_SUBSCRIBE, "exact.type"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "exact.type.more"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "exact.typ"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "exact"));
    /* '*' */
    assert_true(s_allows(p, "b", POLICY_SUBSCRIBE, "anything"));
    assert_true(s_allows(p, "b", POLICY_SUBSCRIBE, "x.y.z"));
    /* a prefix does not cover its own stem; the exact rule does */
    const policy_rule_t *r;
    assert_true(policy_allows(p, "c", POLICY_SUBSCRIBE, "x.y", 3, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:5");
    assert_true(policy_allows(p, "c", POLICY_SUBSCRIBE, "x.y.z", 5, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:4");
    assert_false(s_allows(p, "c", POLICY_SUBSCRIBE, "x.z"));
    /* the type is a byte range, not a string: what follows does not count */
    assert_true(policy_allows(p, "a", POLICY_SUBSCRIBE, "exact.type.more", 10, NULL));
    assert_false(policy_allows(p, "a", POLICY_SUBSCRIBE, "exact.type", 9, NULL));
    assert_true(policy_allows(p, "a", POLICY_SUBSCRIBE, "x.b\0junk", 3, NULL));
    policy_destroy(&p);
}

static void test_actions_apart(void **state)
{
    (void)state;
    policy_t *p = s_parse("allow a publish a.*\nallow a subscribe b.*\nallow * publish c.*\n");
    assert_true(s_allows(p, "a", POLICY_PUBLISH, "a.x"));
    assert_false(s_allows(p, "a", POLICY_SUBSCRIBE, "a.x"));
    assert_true(s_allows(p, "a", POLICY_SUBSCRIBE, "b.x"));
    assert_false(s_allows(p, "a", POLICY_PUBLISH, "b.x"));
    assert_true(s_allows(p, "z", POLICY_PUBLISH, "c.x"));
    assert_false(s_allows(p, "z", POLICY_SUBSCRIBE, "c.x"));
    assert_false(policy_filter_allowed(p, "a", "a.*")); /* publishing is not subscribing */
    assert_true(policy_filter_allowed(p, "a", "b.*"));
    assert_false(policy_filter_allowed(p, "z", "*"));
    policy_destroy(&p);

    assert_string_equal(policy_action_name(POLICY_PUBLISH), "publish");
    assert_string_equal(policy_action_name(POLICY_SUBSCRIBE), "subscribe");
    assert_string_equal(policy_action_name(POLICY_ACTIONS), "unknown");
    assert_int_equal(policy_action_parse("publish"), POLICY_PUBLISH);
    assert_int_equal(policy_action_parse("subscribe"), POLICY_SUBSCRIBE);
    assert_int_equal(policy_action_parse("serve"), -1);
    assert_int_equal(policy_action_parse("Publish"), -1);
    assert_int_equal(policy_action_parse(""), -1);
    assert_int_equal(policy_action_parse(NULL), -1);
}

/* Overlap of a subscription filter with a rule's pattern. */
static void test_filter_overlap(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *pattern;
        bool overlap;
    } cases[] = {
        {"*", "*", true},
        {"*", "a.b", true},
        {"*", "a.*", true},
        {"a.b", "*", true},
        {"a.*", "*", true},
        {"a.b", "a.b", true},
        {"a.b", "a.c", false},
        {"a.b", "a.b.c", false},
        {"a.b.c", "a.*", true},
        {"a.b", "a.*", true},
        {"a", "a.*", false},
        {"ab.c", "a.*", false},
        {"a.*", "a.b.c", true},
        {"a.*", "a", false},
        {"a.*", "ab.c", false},
        {"a.*", "a.*", true},
        {"a.*", "a.b.*", true},
        {"a.b.*", "a.*", true},
        {"a.*", "ab.*", false},
        {"ab.*", "a.*", false},
        {"a.b.*", "a.c.*", false},
        {"a.bc.*", "a.b.*", false},
        {"population.*", "population.birth.*", true},
        {"population.birth.registered", "population.*", true},
        {"tax.*", "population.*", false},
        {"a.b", "bad..pattern", false},
        {"", "*", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f = cases[i].filter, *pat = cases[i].pattern;
        if (policy_patterns_overlap(f, pat) != cases[i].overlap || policy_patterns_overlap(pat, f) != cases[i].overlap)
            fail_msg("case %zu: overlap(%s, %s) should be %d", i, f, pat, cases[i].overlap);
        if (!codec_filter_valid(pat))
            continue;
        /* and through a policy's index, with the rule named */
        char text[256], err[256];
        snprintf(text, sizeof text, "allow x publish %s\n# pad\nallow x subscribe %s\n", f[0] ? f : "q", pat);
        policy_t *p = policy_parse(text, strlen(text), "t.conf", err, sizeof err);
        assert_non_null(p);
        const policy_rule_t *r = policy_filter_rule(p, "x", f);
        if ((r != NULL) != cases[i].overlap || policy_filter_allowed(p, "x", f) != cases[i].overlap)
            fail_msg("case %zu: policy_filter_allowed(%s) with rule %s should be %d", i, f, pat, cases[i].overlap);
        if (r)
            assert_string_equal(policy_rule_where(r), "t.conf:3");
        assert_false(policy_filter_allowed(p, "y", f));
        policy_destroy(&p);
    }
}

/* explain: the rule that allows, and where it is. */
static void test_explain_rule(void **state)
{
    (void)state;
    policy_t *p = s_parse("# header\n"
                          "allow tax-office subscribe population.birth.registered\n"
                          "allow tax-office subscribe population.birth.*\n"
                          "allow tax-office subscribe population.*\n"
                          "allow * subscribe population.death.*\n");
    const policy_rule_t *r;
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.birth.registered", 27, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.birth.corrected", 26, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:3");
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.death.registered", 27, &r));
    assert_string_equal(policy_rule_where(r), "t.conf:4");
    assert_string_equal(policy_rule_text(r), "allow tax-office subscribe population.*");

    /* filters: the first rule that overlaps */
    r = policy_filter_rule(p, "tax-office", "population.birth.*");
    assert_non_null(r);
    assert_string_equal(policy_rule_where(r), "t.conf:2"); /* an exact type inside the filter */
    r = policy_filter_rule(p, "tax-office", "*");
    assert_string_equal(policy_rule_where(r), "t.conf:2");
    r = policy_filter_rule(p, "tax-office", "population.death.x.*");
    assert_string_equal(policy_rule_where(r), "t.conf:4"); /* a prefix containing the filter */
    r = policy_filter_rule(p, "municipality", "population.*");
    assert_string_equal(policy_rule_where(r), "t.conf:5"); /* a '*' rule's prefix inside the filter */
    assert_null(policy_filter_rule(p, "municipality", "population.birth.*"));
    assert_null(policy_filter_rule(p, "tax-office", "tax.*"));
    assert_null(policy_filter_rule(p, "tax-office", "bad..filter"));
    assert_null(policy_filter_rule(p, "tax-office", NULL));
    policy_destroy(&p);
}

/* Compare the index with a scan on generated policies over a small alphabet,
 * so that prefixes, exact types and agencies collide often. */
static void test_index_matches_scan(void **state)
{
    (void)state;
    static const char *const agencies[] = {"*", "a", "b", "c", "a.b"};
    static const char *const patterns[] = {"*",   "x",     "x.*",   "x.y",     "x.y.*", "x.yz", "xy.*",
                                           "y.*", "y.x.*", "x.y.z", "x.y.z.*", "z",     "y"};
    static const char *const types[] = {"x",     "x.y",   "x.yz",    "x.y.z",   "x.y.z.w", "xy",  "xy.z",
                                        "y",     "y.x",   "y.x.x",   "z",       "z.z",     "x.z", "yy.x"};
    static const char *const filters[] = {"*",     "x",   "x.*",     "x.y",   "x.y.*",   "x.y.z.*", "xy.*",
                                          "y.*",   "y",   "y.x.x.*", "z.*",   "x.yz",    "q.*",     "x.y.z.w"};
    const char *queried[] = {"a", "b", "c", "a.b", "d"};
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        char text[4096];
        size_t len = 0;
        int n = 1 + round % 24;
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            uint32_t v = seed >> 8;
            len += (size_t)snprintf(text + len, sizeof text - len, "allow %s %s %s\n", agencies[v % 5],
                                    (v >> 3) % 3 ? "subscribe" : "publish", patterns[(v >> 5) % 13]);
        }
        policy_t *p = s_parse(text);
        for (size_t q = 0; q < sizeof queried / sizeof queried[0]; q++) {
            for (int act = 0; act < POLICY_ACTIONS; act++) {
                for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
                    const policy_rule_t *r = NULL;
                    bool ok = policy_allows(p, queried[q], (policy_action_t)act, types[t], strlen(types[t]), &r);
                    const policy_rule_t *want = s_scan_allows(p, queried[q], (policy_action_t)act, types[t]);
                    if (r != want || ok != (want != NULL))
                        fail_msg("round %d: %s %s %s: index %s, scan %s\n%s", round, queried[q],
                                 policy_action_name((policy_action_t)act), types[t], r ? policy_rule_where(r) : "deny",
                                 want ? policy_rule_where(want) : "deny", text);
                }
            }
            for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++) {
                const policy_rule_t *r = policy_filter_rule(p, queried[q], filters[f]);
                const policy_rule_t *want = s_scan_filter(p, queried[q], filters[f]);
                if (r != want)
                    fail_msg("round %d: %s subscribe filter %s: index %s, scan %s\n%s", round, queried[q], filters[f],
                             r ? policy_rule_where(r) : "deny", want ? policy_rule_where(want) : "deny", text);
            }
        }
        policy_destroy(&p);
    }
}

static char *s_build(size_t *len, const char *fmt, size_t count, size_t width)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    for (size_t i = 0; i < count; i++)
        fprintf(f, fmt, (int)width, i, i);
    fclose(f);
    *len = size;
    return buf;
}

static void test_limits(void **state)
{
    (void)state;
    char err[512];
    size_t len;

    /* rules: the 4th of at most 3 is refused, naming its line */
    policy_limits_t lim = {POLICY_MAX_BYTES, 3, POLICY_MAX_LINE};
    const char *four = "allow a publish x\nallow a publish y\n# c\nallow a publish z\nallow a publish w\n";
    assert_null(policy_parse_limited(four, strlen(four), "t.conf", &lim, err, sizeof err));
    assert_string_equal(err, "t.conf:5: more than 3 rules");
    lim.max_rules = 4;
    policy_t *p = policy_parse_limited(four, strlen(four), "t.conf", &lim, err, sizeof err);
    assert_non_null(p);
    policy_destroy(&p);

    /* the default rule ceiling cannot be reached within 1 MiB (a rule takes at
     * least 18 bytes), so show it with a larger byte ceiling */
    char *big = s_build(&len, "allow a%0*zu publish x%zu\n", POLICY_MAX_RULES + 1, 6);
    lim = (policy_limits_t){len, POLICY_MAX_RULES, POLICY_MAX_LINE};
    assert_null(policy_parse_limited(big, len, "t.conf", &lim, err, sizeof err));
    assert_string_equal(err, "t.conf:100001: more than 100000 rules");
    p = policy_parse_limited(big, len - strlen("allow a100000 publish x100000\n"), "t.conf", &lim, err, sizeof err);
    assert_non_null(p);
    assert_int_equal(policy_rule_count(p), POLICY_MAX_RULES);
    policy_destroy(&p);
    /* and with the defaults it is too large */
    assert_null(policy_parse(big, len, "t.conf", err, sizeof err));
    assert_string_equal(err, "t.conf: larger than 1048576 bytes");
    free(big);

    /* bytes: exactly 1 MiB is fine, one more is not */
    char *text = malloc(POLICY_MAX_BYTES + 1);
    memset(text, '#', POLICY_MAX_BYTES + 1);
    for (size_t i = 1000; i < POLICY_MAX_BYTES; i += 1000)
        text[i] = '\n';
    p = policy_parse(text, POLICY_MAX_BYTES, "t.conf", err, sizeof err);
    assert_non_null(p);
    policy_destroy(&p);
    assert_null(policy_parse(text, POLICY_MAX_BYTES + 1, "t.conf", err, sizeof err));
    assert_string_equal(err, "t.conf: larger than 1048576 bytes");
    free(text);

    /* line: 1024 bytes (line ending aside) is fine, 1025 is refused, not cut */
    char line[POLICY_MAX_LINE + 64];
    memset(line, ' ', sizeof line);
    memcpy(line, "allow a publish x", 17);
    memcpy(line + POLICY_MAX_LINE - 2, "#c\r\nallow b publish y\n", 22);
    p = policy_parse(line, POLICY_MAX_LINE + 20, "t.conf", err, sizeof err);
    assert_non_null(p);
    assert_int_equal(policy_rule_count(p), 2);
    policy_destroy(&p);
    memset(line, ' ', sizeof line);
    memcpy(line, "# ok\n", 5);
    memcpy(line + 5, "allow a publish x", 17);
    memcpy(line + 5 + POLICY_MAX_LINE - 1, "#c\nallow b publish y\n", 21);
    assert_null(policy_parse(line, 5 + POLICY_MAX_LINE + 20, "t.conf", err, sizeof err));
    assert_string_equal(err, "t.conf:2: line longer than 1024 bytes");
    lim = (policy_limits_t){POLICY_MAX_BYTES, POLICY_MAX_RULES, 10};
    assert_null(policy_parse_limited("allow a publish x\n", 18, "t.conf", &lim, err, sizeof err));
    assert_string_equal(err, "t.conf:1: line longer than 10 bytes");
}

/* 50,000 rules for 25,000 agencies, and one agency with 20,000 exact types:
 * a scan of the rules per question would take billions of comparisons here. */
static void test_large_policy(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    assert_non_null(f);
    for (int i = 0; i < 25000; i++)
        fprintf(f, "allow agency-%d publish type%d.*\nallow agency-%d subscribe shared.t%d\n", i, i, i, i % 100);
    fclose(f);
    char err[512];
    policy_limits_t lim = {size, POLICY_MAX_RULES, POLICY_MAX_LINE}; /* it takes 2 MB */
    policy_t *p = policy_parse_limited(buf, size, "big.conf", &lim, err, sizeof err);
    if (!p)
        fail_msg("%s", err);
    free(buf);
    assert_int_equal(policy_rule_count(p), 50000);
    assert_int_equal(policy_agency_count(p), 25000);
    char agency[32], type[64];
    int allowed = 0;
    for (int i = 0; i < 200000; i++) {
        int a = (i * 7) % 25000, t = i % 3 ? a : (a + 1 + i % 97) % 25000;
        snprintf(agency, sizeof agency, "agency-%d", a);
        int n = snprintf(type, sizeof type, "type%d.event.x", t);
        const policy_rule_t *r;
        bool ok = policy_allows(p, agency, POLICY_PUBLISH, type, (size_t)n, &r);
        assert_true(ok == (a == t));
        if (ok)
            assert_int_equal(policy_rule_line(r), (size_t)(2 * a + 1));
        allowed += ok;
        n = snprintf(type, sizeof type, "shared.t%d", i % 100);
        assert_true(policy_allows(p, agency, POLICY_SUBSCRIBE, type, (size_t)n, NULL) == (a % 100 == i % 100));
    }
    assert_true(allowed > 0);
    assert_false(s_allows(p, "agency-25000", POLICY_PUBLISH, "type1.x"));
    policy_destroy(&p);

    f = open_memstream(&buf, &size);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "allow one subscribe t.e%05d\n", i);
    fprintf(f, "allow * subscribe public.*\n");
    fclose(f);
    p = policy_parse(buf, size, "one.conf", err, sizeof err);
    assert_non_null(p);
    free(buf);
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(type, sizeof type, "t.e%05d", (i * 31) % 40000);
        assert_true(policy_allows(p, "one", POLICY_SUBSCRIBE, type, (size_t)n, NULL) == ((i * 31) % 40000 < 20000));
    }
    assert_true(policy_filter_allowed(p, "one", "t.*"));
    assert_false(policy_filter_allowed(p, "one", "u.*"));
    assert_true(s_allows(p, "one", POLICY_SUBSCRIBE, "public.x"));
    policy_destroy(&p);
}

static void test_load_file(void **state)
{
    (void)state;
    char err[512];
    /* the shipped example loads and says what it means to */
    policy_t *p = policy_load("deploy/policy.conf", err, sizeof err);
    if (!p)
        fail_msg("deploy/policy.conf: %s", err);
    assert_int_equal(policy_agency_count(p), 3);
    assert_true(s_allows(p, "population-register", POLICY_PUBLISH, "population.birth.registered"));
    assert_true(s_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.birth.registered"));
    assert_false(s_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.address.changed"));
    assert_true(s_allows(p, "municipality", POLICY_SUBSCRIBE, "population.address.changed"));
    assert_false(s_allows(p, "tax-office", POLICY_PUBLISH, "population.birth.registered"));
    assert_true(s_allows(p, "newcomer", POLICY_SUBSCRIBE, "public.notice.x"));
    assert_true(policy_filter_allowed(p, "tax-office", "population.*"));
    assert_false(policy_filter_allowed(p, "tax-office", "tax.*"));
    const policy_rule_t *r;
    assert_true(policy_allows(p, "tax-office", POLICY_SUBSCRIBE, "population.birth.registered", 27, &r));
    assert_non_null(strstr(policy_rule_where(r), "deploy/policy.conf:"));
    policy_destroy(&p);

    assert_null(policy_load("/nonexistent/policy.conf", err, sizeof err));
    assert_string_equal(err, "/nonexistent/policy.conf: No such file or directory");
    char *text;
    size_t len;
    assert_int_equal(policy_read_file("/nonexistent/policy.conf", &text, &len, err, sizeof err), POLICY_IO);
    assert_null(text);
    assert_int_equal(policy_read_file("/", &text, &len, err, sizeof err), POLICY_IO);

    char path[] = "/tmp/civibus-policy-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *bad = "allow a publish x\nallow a pubish y\n";
    assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    assert_null(policy_load(path, err, sizeof err));
    char want[128];
    snprintf(want, sizeof want, "%s:2: unknown action 'pubish'", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    /* too large: refused when read */
    assert_int_equal(ftruncate(fd, POLICY_MAX_BYTES + 1), 0);
    assert_int_equal(policy_read_file(path, &text, &len, err, sizeof err), POLICY_INVALID);
    assert_non_null(strstr(err, "larger than 1048576 bytes"));
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(policy_read_file(path, &text, &len, err, sizeof err), POLICY_OK);
    assert_int_equal(len, 0);
    assert_string_equal(text, "");
    free(text);
    close(fd);
    unlink(path);
    assert_string_equal(policy_strerror(POLICY_IO), "cannot read the policy file");
    assert_string_equal(policy_strerror(POLICY_INVALID), "invalid policy");
}

/* Run the CLI: exit code and the first line of its stdout. */
static int s_cli(char *out, size_t out_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_cli(char *out, size_t out_len, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", getenv("CIVIBUS_CLI"), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (fgets(out, (int)out_len, p))
        out[strcspn(out, "\n")] = '\0';
    char sink[256];
    while (fgets(sink, sizeof sink, p))
        ;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    const char *cli = getenv("CIVIBUS_CLI");
    if (!cli || access(cli, X_OK) != 0)
        skip();
    char out[512];
    assert_int_equal(s_cli(out, sizeof out, "policy check deploy/policy.conf"), 0);
    assert_string_equal(out, "deploy/policy.conf: 7 rules, 3 agencies");
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax-office subscribe "
                                            "population.birth.registered"),
                     0);
    assert_non_null(strstr(out, "allowed: deploy/policy.conf:"));
    assert_non_null(strstr(out, ": allow      tax-office             subscribe  population.birth.*"));
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax-office publish "
                                            "population.birth.registered"),
                     1);
    assert_string_equal(out, "denied: no rule allows tax-office to publish population.birth.registered (default deny)");
    assert_int_equal(
        s_cli(out, sizeof out, "policy explain tax-office subscribe 'population.*' --policy deploy/policy.conf"), 0);
    assert_non_null(strstr(out, "population.birth.*"));
    assert_int_equal(
        s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax-office subscribe 'tax.*'"), 1);
    /* the file from CIVIBUS_POLICY; an empty one counts as unset */
    setenv("CIVIBUS_POLICY", "", 1);
    assert_int_equal(s_cli(out, sizeof out, "policy explain newcomer subscribe public.notice.x"), 2);
    setenv("CIVIBUS_POLICY", "deploy/policy.conf", 1);
    assert_int_equal(s_cli(out, sizeof out, "policy explain newcomer subscribe public.notice.x"), 0);
    assert_non_null(strstr(out, "allow      *"));
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy /nonexistent newcomer subscribe x"), 4);
    unsetenv("CIVIBUS_POLICY");
    /* usage errors and unreadable files */
    assert_int_equal(s_cli(out, sizeof out, "policy"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy frob"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy check"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy check a b"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy check --bogus x"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf Tax subscribe x"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax read x"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax publish 'x.*'"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy deploy/policy.conf tax subscribe 'x.*.y'"), 2);
    assert_int_equal(s_cli(out, sizeof out, "policy check /nonexistent/policy.conf"), 4);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy /nonexistent a publish x"), 4);
    assert_int_equal(s_cli(out, sizeof out, "policy --help"), 0);
    assert_int_equal(s_cli(out, sizeof out, "policy check --help"), 0);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --help"), 0);
    assert_int_equal(s_cli(out, sizeof out, "help policy"), 0);

    /* an invalid policy: check says 1 and names the line; explain cannot answer (4) */
    char path[] = "/tmp/civibus-policy-cli-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *bad = "allow a publish x\nallow a publish\n";
    assert_int_equal(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s policy check %s 2>&1 >/dev/null", cli, path);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    assert_non_null(fgets(out, sizeof out, pp));
    int status = pclose(pp);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    char want[128];
    snprintf(want, sizeof want, "civibus: %s:2: incomplete rule: PATTERN missing", path);
    assert_int_equal(strncmp(out, want, strlen(want)), 0);
    assert_int_equal(s_cli(out, sizeof out, "policy explain --policy %s a publish x", path), 4);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_layout),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_default_deny),
        cmocka_unit_test(test_agency_and_star_rules),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_actions_apart),
        cmocka_unit_test(test_filter_overlap),
        cmocka_unit_test(test_explain_rule),
        cmocka_unit_test(test_index_matches_scan),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_large_policy),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
