/* publish - `civibus publish`: one event from options, or JSON lines from stdin.
 *
 * With --stdin every input line becomes one event (jsonev.h), published
 * pipelined: up to S_WINDOW events are in flight, and results are printed one
 * line per input line, in input order. Results come back in send order, so a
 * ring of slots (one per line not yet printed) restores the order: a slot is
 * either waiting for the ack of its token or holds its finished line, and the
 * ring is printed from its head as far as lines are finished. The ring holds at
 * most 2 * S_WINDOW slots; when it is full the oldest ack is awaited first.
 *
 * When no further input is immediately available the outstanding acks are
 * collected and printed, so that the command also works interactively.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "codec.h"
#include "jsonev.h"
#include "opts.h"

#define S_WINDOW 256                  /* events in flight, at most */
#define S_LINE_MAX (16u * 1024 * 1024) /* longest input line or --data file */
#define S_LINE_INIT (64u * 1024)

enum {
    S_OPT_TYPE = CLI_OPT_CMD,
    S_OPT_SUBJECT,
    S_OPT_EVENT_ID,
    S_OPT_CORRELATION_ID,
    S_OPT_OCCURRED_AT,
    S_OPT_HEADER,
    S_OPT_DATA,
    S_OPT_DATA_BASE64,
    S_OPT_CONTENT_TYPE,
    S_OPT_STDIN,
    S_OPT_SIGN_KEY
};

static const struct option s_longopts[] = {
    CLI_OPTS_HELP,
    CLI_OPTS_CONN,
    {"type", required_argument, NULL, S_OPT_TYPE},
    {"subject", required_argument, NULL, S_OPT_SUBJECT},
    {"event-id", required_argument, NULL, S_OPT_EVENT_ID},
    {"correlation-id", required_argument, NULL, S_OPT_CORRELATION_ID},
    {"occurred-at", required_argument, NULL, S_OPT_OCCURRED_AT},
    {"header", required_argument, NULL, S_OPT_HEADER},
    {"data", required_argument, NULL, S_OPT_DATA},
    {"data-base64", required_argument, NULL, S_OPT_DATA_BASE64},
    {"content-type", required_argument, NULL, S_OPT_CONTENT_TYPE},
    {"stdin", no_argument, NULL, S_OPT_STDIN},
    {"sign-key", required_argument, NULL, S_OPT_SIGN_KEY},
    {NULL, 0, NULL, 0},
};

static void s_usage(void)
{
    printf("usage: civibus publish --type TYPE [--subject S] [--event-id ID] [--correlation-id C]\n"
           "                       [--occurred-at ISO8601] [--header NAME=VALUE ...]\n"
           "                       [--data JSON | --data @FILE | --data-base64 B64 [--content-type T]]\n"
           "                       [HUB OPTIONS]\n"
           "       civibus publish --stdin [HUB OPTIONS]\n\n"
           "Publish one event and print its sequence number, or publish one event per\n"
           "JSON line read from stdin and print one result line per input line.\n\n"
           "Options:\n"
           "  --type TYPE          event type, e.g. population.birth.registered (required)\n"
           "  --subject S          the record the event concerns\n"
           "  --event-id ID        unique per agency; re-publishing the same id is harmless\n"
           "                       (default: a random UUID)\n"
           "  --correlation-id C   ties related events together\n"
           "  --occurred-at TIME   when it happened, ISO 8601 (default: now)\n"
           "  --header NAME=VALUE  a free-form header; repeatable\n"
           "  --data JSON          the payload, any JSON value, sent compact as application/json\n"
           "  --data @FILE         the same, read from FILE (@- reads stdin)\n"
           "  --data-base64 B64    a binary payload\n"
           "  --sign-key FILE      sign the events with this agency's Ed25519 key\n"
           "                       (AGENCY-sign.key; docs/SIGNING.md)      [CIVIBUS_SIGN_KEY]\n"
           "  --content-type T     its media type (default application/octet-stream)\n"
           "  --stdin              read events as JSON lines from stdin (see docs/CLI.md):\n"
           "                       {\"type\":...,\"event_id\":...,\"subject\":...,\"correlation_id\":...,\n"
           "                        \"occurred_at\":...,\"headers\":{...},\"data\":... | \"data_base64\":...,\n"
           "                        \"content_type\":...}\n"
           "                       prints {\"event_id\":...,\"seq\":N} (\"duplicate\":true when it was),\n"
           "                       {\"event_id\":...,\"error\":CODE,\"reason\":...} when refused, and\n"
           "                       {\"line\":N,\"error\":\"invalid\",\"reason\":...} for an unreadable line;\n"
           "                       exit code 1 when any line was refused or invalid\n"
           "  --help               this text\n\n" CLI_CONN_USAGE);
}

/* --- reading input ----------------------------------------------------------------- */

static int s_read_file(const char *path, char **out, size_t *out_len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_err("%s: %s", path, strerror(errno));
        return CLI_EXIT_FILE;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = CLI_EXIT_OK;
    while (buf) {
        if (len == cap) {
            if (cap > S_LINE_MAX) {
                cli_err("%s: larger than %u bytes", path, S_LINE_MAX);
                rc = CLI_EXIT_FILE;
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                cli_err("%s: read error", path);
                rc = CLI_EXIT_FILE;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        cli_err("out of memory");
        return CLI_EXIT_INTERNAL;
    }
    if (rc != CLI_EXIT_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return CLI_EXIT_OK;
}

/* Lines of a file descriptor, each at most S_LINE_MAX bytes. */
typedef struct {
    int fd;
    char *buf;
    size_t cap, start, end;
    bool eof;
} s_reader_t;

enum { S_LINE_EOF = 0, S_LINE_OK = 1, S_LINE_TOO_LONG = 2, S_LINE_ERROR = -1 };

/* Next line into *line (len bytes, without the newline or a trailing CR);
 * valid until the next call. */
static int s_reader_next(s_reader_t *r, const char **line, size_t *len)
{
    bool skipping = false; /* inside an over-long line, discarding it */
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl || (r->eof && r->start < r->end)) {
            char *end = nl ? nl : r->buf + r->end;
            *line = r->buf + r->start;
            *len = (size_t)(end - *line);
            r->start = nl ? (size_t)(nl - r->buf) + 1 : r->end;
            if (*len && (*line)[*len - 1] == '\r')
                (*len)--;
            return skipping ? S_LINE_TOO_LONG : S_LINE_OK;
        }
        if (r->eof)
            return S_LINE_EOF;
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end == r->cap) {
            if (r->cap >= S_LINE_MAX) {
                skipping = true;
                r->end = 0;
            } else {
                char *grown = realloc(r->buf, r->cap * 2);
                if (!grown)
                    return S_LINE_ERROR;
                r->buf = grown;
                r->cap *= 2;
            }
        }
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return S_LINE_ERROR;
        if (n == 0)
            r->eof = true;
        r->end += (size_t)n;
    }
}

/* Is no complete line available without waiting? */
static bool s_reader_idle(const s_reader_t *r)
{
    if (r->eof || memchr(r->buf + r->start, '\n', r->end - r->start))
        return false;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

static bool s_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* --- the --stdin pipeline ------------------------------------------------------------ */

typedef struct {
    uint64_t token; /* the ack awaited, or 0 when line is final */
    char *line;     /* the result line, once final */
    char event_id[CIV_ID_MAX + 1];
} s_slot_t;

typedef struct {
    civ_client_t *client;
    const char *hub;
    int timeout_ms;
    s_slot_t ring[2 * S_WINDOW];
    size_t head, count, pending; /* pending: slots awaiting an ack */
    bool refused;                /* some line was refused or invalid */
    bool out_closed;             /* the reader of stdout went away */
    int fatal;                   /* exit code once publishing had to stop */
} s_pipe_t;

#define S_RING (2 * S_WINDOW)

static s_slot_t *s_slot(s_pipe_t *p, size_t i)
{
    return &p->ring[(p->head + i) % S_RING];
}

/* Print the finished lines at the head of the ring. */
static void s_emit(s_pipe_t *p)
{
    while (p->count > 0 && s_slot(p, 0)->token == 0) {
        s_slot_t *s = s_slot(p, 0);
        if (!p->out_closed) {
            fputs(s->line ? s->line : "{\"error\":\"nomem\",\"reason\":\"out of memory\"}", stdout);
            fputc('\n', stdout);
        }
        free(s->line);
        s->line = NULL;
        p->head = (p->head + 1) % S_RING;
        p->count--;
    }
}

static void s_flush(s_pipe_t *p)
{
    if (p->out_closed)
        return;
    int rc = cli_flush();
    if (rc != 0) {
        p->out_closed = true;
        if (rc < 0 && !p->fatal)
            p->fatal = CLI_EXIT_FILE;
    }
}

static s_slot_t *s_push(s_pipe_t *p)
{
    s_slot_t *s = s_slot(p, p->count++);
    memset(s, 0, sizeof *s);
    return s;
}

/* Finish every slot still awaiting an ack with error code rc. */
static void s_fail_pending(s_pipe_t *p, int rc)
{
    const char *reason = rc == CIV_E_TIMEOUT
                             ? "no answer from the hub in time; the event may be stored: "
                               "re-publishing it with the same event_id is safe"
                             : civ_strerror(rc);
    for (size_t i = 0; i < p->count; i++) {
        s_slot_t *s = s_slot(p, i);
        if (s->token != 0) {
            s->line = jsonev_nack_line(s->event_id, civ_error_name(rc), reason);
            s->token = 0;
        }
    }
    p->pending = 0;
    s_emit(p);
}

static void s_stop(s_pipe_t *p, int rc)
{
    size_t unconfirmed = p->pending;
    s_fail_pending(p, rc);
    p->fatal = cli_exit_code(rc);
    if (rc == CIV_E_TIMEOUT)
        cli_err("no answer from the hub %s within %d ms; %zu event(s) unconfirmed; stopped", p->hub,
                p->timeout_ms ? p->timeout_ms : 5000, unconfirmed);
    else
        cli_err("publishing stopped: %s", civ_strerror(rc));
}

/* Wait for the next ack and finish its slot. */
static void s_recv_one(s_pipe_t *p)
{
    civ_ack_t ack;
    memset(&ack, 0, sizeof ack);
    int rc = civ_publish_recv(p->client, &ack, -1);
    if (rc != CIV_OK) {
        s_stop(p, rc);
        return;
    }
    s_slot_t *s = NULL;
    for (size_t i = 0; i < p->count && !s; i++)
        if (s_slot(p, i)->token != 0)
            s = s_slot(p, i);
    if (!s || s->token != ack.token) {
        s_stop(p, CIV_E_PROTOCOL);
        return;
    }
    if (ack.error == CIV_OK) {
        s->line = jsonev_ack_line(s->event_id, ack.seq, ack.duplicate);
    } else {
        s->line = jsonev_nack_line(s->event_id, civ_error_name(ack.error),
                                   ack.reason[0] ? ack.reason : civ_strerror(ack.error));
        p->refused = true;
    }
    s->token = 0;
    p->pending--;
    s_emit(p);
}

static void s_drain(s_pipe_t *p)
{
    while (p->pending > 0 && !p->fatal)
        s_recv_one(p);
    s_flush(p);
}

/* Queue a final line (takes line). */
static void s_push_line(s_pipe_t *p, char *line)
{
    while (p->count == S_RING && !p->fatal)
        s_recv_one(p);
    if (p->fatal) {
        free(line);
        return;
    }
    s_push(p)->line = line;
    s_emit(p);
}

static void s_publish_line(s_pipe_t *p, const civ_event_t *ev)
{
    while ((civ_publish_pending(p->client) >= S_WINDOW || p->count == S_RING) && p->pending > 0 && !p->fatal)
        s_recv_one(p);
    if (p->fatal)
        return;
    uint64_t token = 0;
    int rc = civ_publish_send(p->client, ev, &token);
    if (rc == CIV_OK) {
        s_slot_t *s = s_push(p);
        s->token = token;
        snprintf(s->event_id, sizeof s->event_id, "%s", ev->event_id);
        p->pending++;
    } else if (rc == CIV_E_INVALID) {
        p->refused = true;
        s_push_line(p, jsonev_nack_line(ev->event_id, civ_error_name(rc), civ_strerror(rc)));
    } else {
        s_push_line(p, jsonev_nack_line(ev->event_id, civ_error_name(rc), civ_strerror(rc)));
        s_stop(p, rc);
    }
}

static int s_run_stdin(const cli_conn_t *conn)
{
    int rc = CLI_EXIT_OK;
    s_pipe_t *p = calloc(1, sizeof *p);
    s_reader_t r = {.fd = STDIN_FILENO, .cap = S_LINE_INIT};
    r.buf = malloc(r.cap);
    if (!p || !r.buf) {
        cli_err("out of memory");
        rc = CLI_EXIT_INTERNAL;
        goto free_buffers;
    }
    p->hub = conn->hub;
    p->timeout_ms = conn->timeout_ms;
    p->client = cli_connect(conn, S_WINDOW, &rc);
    if (!p->client)
        goto free_buffers;

    uint64_t lineno = 0;
    const char *line;
    size_t len;
    int got;
    char reason[JSONEV_REASON_LEN];
    while (!p->fatal && !p->out_closed && (got = s_reader_next(&r, &line, &len)) != S_LINE_EOF) {
        if (got == S_LINE_ERROR) {
            cli_err("stdin: %s", errno ? strerror(errno) : "out of memory");
            p->fatal = CLI_EXIT_FILE;
            break;
        }
        lineno++;
        if (got == S_LINE_TOO_LONG) {
            snprintf(reason, sizeof reason, "line longer than %u bytes", S_LINE_MAX);
            p->refused = true;
            s_push_line(p, jsonev_invalid_line(lineno, reason));
        } else if (!s_blank(line, len)) {
            jsonev_in_t *in = jsonev_in_parse(line, len, reason, sizeof reason);
            if (in) {
                s_publish_line(p, jsonev_in_event(in));
                jsonev_in_destroy(&in);
            } else {
                p->refused = true;
                s_push_line(p, jsonev_invalid_line(lineno, reason));
            }
        }
        if (!p->fatal && s_reader_idle(&r))
            s_drain(p);
    }
    s_drain(p);
    if (p->pending > 0)
        s_fail_pending(p, CIV_E_TIMEOUT); /* only after a fatal error */
    s_flush(p);
    rc = p->fatal ? p->fatal : p->refused ? CLI_EXIT_REFUSED : CLI_EXIT_OK;
    civ_client_destroy(&p->client);
free_buffers:
    if (p)
        for (size_t i = 0; i < S_RING; i++)
            free(p->ring[i].line);
    free(p);
    free(r.buf);
    return rc;
}

/* --- one event ------------------------------------------------------------------------- */

typedef struct {
    civ_event_t ev;
    civ_header_t headers[CODEC_HEADERS_MAX];
    const char *data;
    const char *data_b64;
    char *payload;
} s_single_t;

static int s_add_header(s_single_t *o, char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        cli_err("publish: --header expects NAME=VALUE, got '%s'", arg);
        return -1;
    }
    if (o->ev.n_headers == CODEC_HEADERS_MAX) {
        cli_err("publish: more than %d headers", CODEC_HEADERS_MAX);
        return -1;
    }
    *eq = '\0';
    o->headers[o->ev.n_headers].key = arg;
    o->headers[o->ev.n_headers].value = eq + 1;
    o->ev.n_headers++;
    o->ev.headers = o->headers;
    return 0;
}

/* Turn --data / --data-base64 into the payload. */
static int s_payload(s_single_t *o)
{
    char reason[JSONEV_REASON_LEN];
    if (o->data) {
        if (o->ev.content_type) {
            cli_err("publish: --data is sent as %s; use --data-base64 with --content-type", JSONEV_CT_JSON);
            return CLI_EXIT_USAGE;
        }
        const char *text = o->data;
        size_t len = strlen(text);
        char *file = NULL;
        if (text[0] == '@') {
            int rc = s_read_file(text + 1, &file, &len);
            if (rc != CLI_EXIT_OK)
                return rc;
            text = file;
        }
        size_t out_len = 0;
        int rc = jsonev_json_compact(text, len, &o->payload, &out_len, reason, sizeof reason);
        free(file);
        if (rc != JSONEV_OK) {
            cli_err("publish: %s: %s", o->data[0] == '@' ? o->data + 1 : "--data",
                    rc == JSONEV_NOMEM ? "out of memory" : reason);
            return rc == JSONEV_NOMEM ? CLI_EXIT_INTERNAL : CLI_EXIT_USAGE;
        }
        o->ev.payload = o->payload;
        o->ev.payload_len = out_len;
        o->ev.content_type = JSONEV_CT_JSON;
    } else if (o->data_b64) {
        unsigned char *bin = NULL;
        size_t bin_len = 0;
        int rc = jsonev_b64_decode(o->data_b64, strlen(o->data_b64), &bin, &bin_len);
        if (rc != JSONEV_OK) {
            cli_err("publish: %s", rc == JSONEV_NOMEM ? "out of memory" : "--data-base64 is not valid base64");
            return rc == JSONEV_NOMEM ? CLI_EXIT_INTERNAL : CLI_EXIT_USAGE;
        }
        o->payload = (char *)bin;
        o->ev.payload = bin;
        o->ev.payload_len = bin_len;
        if (!o->ev.content_type)
            o->ev.content_type = JSONEV_CT_BINARY;
    }
    return CLI_EXIT_OK;
}

static int s_run_single(const cli_conn_t *conn, s_single_t *o)
{
    int rc = s_payload(o);
    if (rc != CLI_EXIT_OK)
        return rc;
    char reason[JSONEV_REASON_LEN];
    if (jsonev_event_check(&o->ev, reason, sizeof reason) != JSONEV_OK) {
        cli_err("publish: %s", reason);
        return CLI_EXIT_USAGE;
    }
    civ_client_t *client = cli_connect(conn, 0, &rc);
    if (!client)
        return rc;
    civ_ack_t ack;
    memset(&ack, 0, sizeof ack);
    int err = civ_publish(client, &o->ev, &ack);
    if (err != CIV_OK) {
        if (err == CIV_E_TIMEOUT)
            cli_err("no answer from the hub %s in time (re-publishing with the same --event-id is safe)", conn->hub);
        else
            cli_err("publish: %s", civ_strerror(err));
        rc = cli_exit_code(err);
    } else if (ack.error != CIV_OK) {
        cli_err("refused: %s: %s", civ_error_name(ack.error), ack.reason[0] ? ack.reason : civ_strerror(ack.error));
        rc = CLI_EXIT_REFUSED;
    } else {
        printf("%" PRIu64 "\n", ack.seq);
        if (ack.duplicate)
            cli_err("duplicate: event %s was accepted before; %" PRIu64 " is its original sequence number",
                    ack.event_id[0] ? ack.event_id : "?", ack.seq);
        rc = CLI_EXIT_OK;
    }
    civ_client_destroy(&client);
    return rc;
}

int cmd_publish(int argc, char **argv)
{
    cli_conn_t conn = {0};
    s_single_t o;
    memset(&o, 0, sizeof o);
    const char *occurred = NULL;
    bool from_stdin = false, single = false;
    int c;
    while ((c = cli_getopt_conn(argc, argv, s_longopts, &conn)) != -1) {
        if (c >= S_OPT_TYPE && c < S_OPT_STDIN)
            single = true;
        switch (c) {
        case CLI_OPT_HELP: s_usage(); return CLI_EXIT_OK;
        case S_OPT_TYPE: o.ev.type = optarg; break;
        case S_OPT_SUBJECT: o.ev.subject = optarg; break;
        case S_OPT_EVENT_ID: o.ev.event_id = optarg; break;
        case S_OPT_CORRELATION_ID: o.ev.correlation_id = optarg; break;
        case S_OPT_OCCURRED_AT: occurred = optarg; break;
        case S_OPT_HEADER:
            if (s_add_header(&o, optarg) != 0)
                return CLI_EXIT_USAGE;
            break;
        case S_OPT_DATA: o.data = optarg; break;
        case S_OPT_DATA_BASE64: o.data_b64 = optarg; break;
        case S_OPT_CONTENT_TYPE: o.ev.content_type = optarg; break;
        case S_OPT_STDIN: from_stdin = true; break;
        case S_OPT_SIGN_KEY: conn.sign_key = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (from_stdin && single) {
        cli_err("publish: --stdin takes the events from stdin; give no event options with it");
        return CLI_EXIT_USAGE;
    }
    if (!from_stdin && !o.ev.type) {
        cli_err("publish: --type TYPE is required (or --stdin)");
        return CLI_EXIT_USAGE;
    }
    if (o.data && o.data_b64) {
        cli_err("publish: give --data or --data-base64, not both");
        return CLI_EXIT_USAGE;
    }
    if (occurred && jsonev_time_parse(occurred, &o.ev.occurred_at) != JSONEV_OK) {
        cli_err("publish: --occurred-at: '%s' is not an ISO 8601 time such as 2026-11-23T04:23:57Z", occurred);
        return CLI_EXIT_USAGE;
    }
    int rc = cli_conn_finish(&conn);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!conn.sign_key && getenv("CIVIBUS_SIGN_KEY") && getenv("CIVIBUS_SIGN_KEY")[0])
        conn.sign_key = getenv("CIVIBUS_SIGN_KEY");
    if (from_stdin)
        return s_run_stdin(&conn);
    rc = s_run_single(&conn, &o);
    free(o.payload);
    return rc;
}
