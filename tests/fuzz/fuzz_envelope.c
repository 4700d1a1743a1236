/* fuzz_envelope - the hub's decoding path for one adapter message.
 *
 * Decodes a ClientMessage under the codec's caps and, for a Publish, every
 * event in it, validating each as the router does; then re-packs what
 * decoded, which must not crash either.
 */
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    codec_client_msg_t *msg = NULL;
    if (codec_client_decode(data, size, 16 * 1024 * 1024, &msg) != CODEC_OK)
        return 0;
    if (msg->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_PUBLISH) {
        for (size_t i = 0; i < msg->publish->n_events; i++) {
            codec_event_t *ev = NULL;
            const ProtobufCBinaryData *raw = &msg->publish->events[i];
            if (codec_event_decode(raw->data, raw->len, 1024 * 1024, &ev) == CODEC_OK) {
                char reason[256];
                if (codec_event_valid(ev, reason, sizeof reason))
                    codec_filter_match("a.*", ev->type, __builtin_strlen(ev->type));
                codec_event_free(&ev);
            }
        }
    } else if (msg->body_case == CIVIBUS__V1__CLIENT_MESSAGE__BODY_SUBSCRIBE) {
        for (size_t i = 0; i < msg->subscribe->n_filters; i++)
            codec_filter_valid(msg->subscribe->filters[i]);
        codec_name_valid(msg->subscribe->name);
    }
    size_t len = civibus__v1__client_message__get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        civibus__v1__client_message__pack(msg, buf);
        free(buf);
    }
    codec_client_free(&msg);
    return 0;
}
