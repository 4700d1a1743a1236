/* fuzz_policy - the access policy parser, and evaluation of what it accepts.
 *
 * Parses the input as a policy file. When it parses, asks a fixed set of
 * questions (publish and subscribe of types, subscription filters) and checks
 * each answer, and the rule named, against a plain scan of the rules in file
 * order: the index must never disagree with the definition.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const s_agencies[] = {"a", "b", "tax-office", "population-register", "x.y", "*", ""};
static const char *const s_types[] = {"a",       "a.b",   "a.b.c", "ab.c", "a.", "b.a",  "population.birth.registered",
                                      "tax.x.y", "public", "x",    "",     ".",  "a..b", "*"};
static const char *const s_filters[] = {"*", "a.*", "a.b.*", "a.b", "ab.*", "population.*", "tax.x.*", "x", "b.*"};

#define S_N(a) (sizeof(a) / sizeof((a)[0]))

static bool s_agency_applies(const policy_rule_t *r, const char *agency)
{
    const char *a = policy_rule_agency(r);
    return strcmp(a, "*") == 0 || strcmp(a, agency) == 0;
}

static const policy_rule_t *s_scan_allows(const policy_t *p, const char *agency, policy_action_t action,
                                          const char *type)
{
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const policy_rule_t *r = policy_rule_at(p, i);
        if (policy_rule_action(r) == action && s_agency_applies(r, agency) &&
            codec_filter_match(policy_rule_pattern(r), type, strlen(type)))
            return r;
    }
    return NULL;
}

static const policy_rule_t *s_scan_filter(const policy_t *p, const char *agency, const char *filter)
{
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const policy_rule_t *r = policy_rule_at(p, i);
        if (policy_rule_action(r) == POLICY_SUBSCRIBE && s_agency_applies(r, agency) &&
            policy_patterns_overlap(policy_rule_pattern(r), filter))
            return r;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    policy_t *p = policy_parse((const char *)data, size, "fuzz.conf", err, sizeof err);
    if (!p) {
        if (strncmp(err, "fuzz.conf", 9) != 0 && strcmp(err, "out of memory") != 0)
            abort(); /* every error names the file */
        return 0;
    }
    /* Each rule's own agency and pattern are questions too: they hit the index. */
    size_t n = policy_rule_count(p);
    for (size_t i = 0; i < n && i < 8; i++) {
        const policy_rule_t *r = policy_rule_at(p, i);
        const char *pattern = policy_rule_pattern(r);
        if (!codec_filter_valid(pattern) || policy_rule_text(r)[0] == '\0' || !policy_rule_where(r))
            abort();
        if (policy_rule_action(r) == POLICY_SUBSCRIBE && !policy_filter_allowed(p, policy_rule_agency(r), pattern))
            abort(); /* a subscribe rule's own pattern overlaps it */
    }
    for (size_t a = 0; a < S_N(s_agencies); a++) {
        for (int act = 0; act < POLICY_ACTIONS; act++) {
            for (size_t t = 0; t < S_N(s_types); t++) {
                const policy_rule_t *got = NULL;
                bool ok = policy_allows(p, s_agencies[a], (policy_action_t)act, s_types[t], strlen(s_types[t]), &got);
                const policy_rule_t *want = s_scan_allows(p, s_agencies[a], (policy_action_t)act, s_types[t]);
                if (got != want || ok != (want != NULL))
                    abort();
            }
        }
        for (size_t f = 0; f < S_N(s_filters); f++) {
            const policy_rule_t *got = policy_filter_rule(p, s_agencies[a], s_filters[f]);
            if (got != s_scan_filter(p, s_agencies[a], s_filters[f]) ||
                policy_filter_allowed(p, s_agencies[a], s_filters[f]) != (got != NULL))
                abort();
        }
    }
    policy_destroy(&p);
    return 0;
}
