/* policy - the access policy: which agency may publish and subscribe to what.
 *
 * Default deny: an agency may do only what some rule allows. A policy is a
 * text file of rules, one per line ('#' starts a comment, blank lines are
 * ignored):
 *
 *     allow AGENCY ACTION PATTERN
 *
 * AGENCY is an agency id or '*' (any registered agency), ACTION is publish
 * or subscribe, PATTERN uses the syntax of subscription filters: '*', an
 * exact event type, or a prefix 'a.b.*' (codec_filter_valid, matched as
 * codec_filter_match does). docs/POLICY.md is the full description.
 *
 * A loaded policy_t is immutable: every function below that takes a const
 * policy_t only reads it, so any number of threads may evaluate one policy at
 * once, and a hub reloads by parsing a new policy and swapping pointers (the
 * old one is destroyed once nothing evaluates it any more).
 *
 * Evaluation is indexed at load: rules are grouped by agency and action, and
 * within a group exact types and prefixes are kept sorted, so a question costs
 * one binary search for the agency and a few per dot of the event type,
 * however many rules the policy has. Rules for '*' form one shared group that
 * every agency consults besides its own (a copy per agency would cost agencies
 * times '*' rules of memory); the answer is the same as a scan of the rules in
 * file order, and the rule reported is the first in file order that matches.
 */
#ifndef CIVIBUS_POLICY_H
#define CIVIBUS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

/* Ceilings of a policy file. */
#define POLICY_MAX_BYTES (1024 * 1024) /* size of the file */
#define POLICY_MAX_RULES 100000        /* rules (lines that are not blank or comments) */
#define POLICY_MAX_LINE 1024           /* bytes of one line, without its line ending */

enum policy_err {
    POLICY_OK = 0,
    POLICY_IO = -1,      /* the file cannot be opened or read (errno in the message) */
    POLICY_INVALID = -2, /* a syntax error, or a ceiling exceeded */
};

/* What a rule allows. Record services will add POLICY_SERVE (provide a
 * service) and POLICY_QUERY (ask one) before POLICY_ACTIONS, with patterns
 * that name services instead of event types; they are not implemented yet. */
typedef enum {
    POLICY_PUBLISH = 0,   /* publish events of a type */
    POLICY_SUBSCRIBE = 1, /* receive events of a type (subscriptions) */
    POLICY_ACTIONS        /* the number of actions; not an action */
} policy_action_t;

typedef struct policy policy_t;
typedef struct policy_rule policy_rule_t;

/* Ceilings for policy_parse_limited; policy_parse uses the POLICY_MAX_*. */
typedef struct {
    size_t max_bytes;
    size_t max_rules;
    size_t max_line;
} policy_limits_t;

/* Read and parse the policy file at path. Returns a new policy owned by the
 * caller (policy_destroy), or NULL after writing a one-line message into err:
 * "path: reason" when the file cannot be read, "path:line: what is wrong" for
 * a syntax error. Use policy_read_file and policy_parse to tell the two apart. */
policy_t *policy_load(const char *path, char *err, size_t err_len);

/* Parse len bytes of policy text (need not be NUL-terminated). name_for_errors
 * (NULL: "policy") prefixes error messages and each rule's where. Returns a new
 * policy owned by the caller, or NULL after writing "name:line: what is wrong"
 * (or "name: ..." for the whole text, or "out of memory") into err. Nothing
 * returned points into text. */
policy_t *policy_parse(const char *text, size_t len, const char *name_for_errors, char *err, size_t err_len);

/* policy_parse with other ceilings (NULL: the defaults); for tests. */
policy_t *policy_parse_limited(const char *text, size_t len, const char *name_for_errors,
                               const policy_limits_t *limits, char *err, size_t err_len);

/* Read the file at path whole, refusing one larger than POLICY_MAX_BYTES.
 * On POLICY_OK *text_out is a new NUL-terminated buffer of *len_out bytes
 * owned by the caller (free). Returns POLICY_IO when the file cannot be
 * opened or read, POLICY_INVALID when it is too large; both write err. */
int policy_read_file(const char *path, char **text_out, size_t *len_out, char *err, size_t err_len);

/* Destroy a policy and null the caller's pointer; NULL and *self_p == NULL
 * are accepted. Every rule pointer taken from it dies with it. */
void policy_destroy(policy_t **self_p);

/* May agency do action on the event type of type_len bytes (not
 * NUL-terminated)? Default deny: true only when a rule for the agency or for
 * '*' matches. When rule_out is not NULL it receives the first matching rule
 * in file order, or NULL when denied. An agency that no rule names, with no
 * '*' rules for the action, is denied at once. NULL self or agency, or an
 * action out of range, are denied. */
bool policy_allows(const policy_t *self, const char *agency, policy_action_t action, const char *type,
                   size_t type_len, const policy_rule_t **rule_out);

/* Does the subscription filter (NUL-terminated, codec_filter_valid) overlap
 * anything agency may subscribe to, i.e. could any event that matches the
 * filter be delivered? A hub refuses a subscription none of whose filters is
 * allowed, and checks each event with policy_allows when delivering, since a
 * filter may be wider than the rules. An invalid filter is not allowed. */
bool policy_filter_allowed(const policy_t *self, const char *agency, const char *filter);

/* The first rule (file order) for agency or '*' whose subscribe pattern
 * overlaps filter, or NULL: the reason policy_filter_allowed says yes. */
const policy_rule_t *policy_filter_rule(const policy_t *self, const char *agency, const char *filter);

/* Do two patterns (filter syntax) have an event type in common? '*' overlaps
 * everything, two exact types when equal, an exact type and 'p.*' when the
 * prefix matches the type, 'a.*' and 'b.*' when one contains the other
 * ('a.*' and 'a.b.*' do; 'a.*' and 'ab.*' do not). False when either is not
 * a valid filter. The definition that policy_filter_rule's index follows. */
bool policy_patterns_overlap(const char *a, const char *b);

/* Rules in file order: how many, and the i-th (NULL when out of range). */
size_t policy_rule_count(const policy_t *self);
const policy_rule_t *policy_rule_at(const policy_t *self, size_t i);

/* Distinct agency ids that rules name ('*' not counted). */
size_t policy_agency_count(const policy_t *self);

/* A rule's parts. Strings stay valid as long as the policy they came from.
 * text: the rule as written, without comment and surrounding blanks;
 * where: "name:line"; agency: an agency id or "*"; pattern: as written. */
const char *policy_rule_text(const policy_rule_t *rule);
const char *policy_rule_where(const policy_rule_t *rule);
const char *policy_rule_agency(const policy_rule_t *rule);
const char *policy_rule_pattern(const policy_rule_t *rule);
policy_action_t policy_rule_action(const policy_rule_t *rule);
size_t policy_rule_line(const policy_rule_t *rule);

/* The action's name as written in a policy ("publish"), or "unknown". */
const char *policy_action_name(policy_action_t action);

/* The action named name, or -1 when there is none (NULL included). */
int policy_action_parse(const char *name);

/* A short description of a policy_err code. */
const char *policy_strerror(int code);

#endif
