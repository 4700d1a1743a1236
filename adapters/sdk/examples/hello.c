/* hello - the smallest complete civibus adapter: publish, follow, replay.
 *
 * Build against an installed libcivibus:
 *   cc hello.c $(pkg-config --cflags --libs civibus) -o hello
 * Run with the hub's endpoint and keys in the environment:
 *   CIVIBUS_HUB=tcp://127.0.0.1:7400 CIVIBUS_HUB_KEY=hub.pub CIVIBUS_KEY=me.key ./hello
 * It publishes one event, receives it on a durable subscription, acknowledges
 * it, and replays the log's first entry. Exit status 0 when all worked.
 */
#include <civibus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_fail(const char *what, int code)
{
    fprintf(stderr, "hello: %s: %s\n", what, civ_strerror(code));
    return 1;
}

int main(void)
{
    civ_options_t opts = {
        .endpoint = getenv("CIVIBUS_HUB"),
        .hub_key_file = getenv("CIVIBUS_HUB_KEY"),
        .key_file = getenv("CIVIBUS_KEY"),
        .timeout_ms = 5000,
    };
    civ_error_t err;
    civ_client_t *client = civ_client_new(&opts, &err);
    if (!client) {
        fprintf(stderr, "hello: %s\n", err.message);
        return 1;
    }
    int status = 1;
    civ_delivery_t *d = NULL;
    civ_replay_t *replay = NULL;

    /* Subscribe first, from the latest entry: only what comes next. */
    const char *filters[] = {"example.*"};
    civ_start_t latest = {.kind = CIV_START_LATEST};
    int rc = civ_subscribe(client, "hello", filters, 1, latest, 16);
    if (rc != CIV_OK) {
        s_fail("subscribe", rc);
        goto done;
    }

    const char *payload = "{\"greeting\":\"hello\"}";
    civ_event_t ev = {.type = "example.greeting",
                      .subject = "example/1",
                      .content_type = "application/json",
                      .payload = payload,
                      .payload_len = strlen(payload)};
    civ_ack_t ack;
    rc = civ_publish(client, &ev, &ack);
    if (rc != CIV_OK || ack.error != CIV_OK) {
        s_fail("publish", rc != CIV_OK ? rc : ack.error);
        goto done;
    }
    printf("published %s as seq %llu\n", ack.event_id, (unsigned long long)ack.seq);

    rc = civ_next(client, &d, 5000);
    if (rc != CIV_OK) {
        s_fail("next", rc);
        goto done;
    }
    printf("received seq %llu type %s from %s: %.*s\n", (unsigned long long)d->seq, d->event.type,
           d->event.source, (int)d->event.payload_len, (const char *)d->event.payload);
    if (d->seq != ack.seq) {
        fprintf(stderr, "hello: received seq %llu, published %llu\n", (unsigned long long)d->seq,
                (unsigned long long)ack.seq);
        goto done;
    }
    rc = civ_ack(client, "hello", d->seq);
    if (rc != CIV_OK) {
        s_fail("ack", rc);
        goto done;
    }
    civ_delivery_destroy(&d);

    civ_start_t first = {.kind = CIV_START_FIRST};
    replay = civ_replay_open(client, first, 1, &err);
    if (!replay) {
        fprintf(stderr, "hello: replay: %s\n", err.message);
        goto done;
    }
    rc = civ_replay_next(replay, &d, 5000);
    if (rc != CIV_OK || !d) {
        s_fail("replay", rc != CIV_OK ? rc : CIV_E_PROTOCOL);
        goto done;
    }
    printf("replayed seq %llu type %s\n", (unsigned long long)d->seq, d->event.type);
    status = 0;
done:
    civ_delivery_destroy(&d);
    civ_replay_destroy(&replay);
    civ_client_destroy(&client);
    return status;
}
