/* deadletters - list, redrive and drop the dead letters of a subscription.
 *
 * Each call is one DeadLettersRequest round trip (sdk_round_trip): the
 * request is packed once and re-sent with the same request_id every retry_ms
 * until the hub answers. A list is a pure read; a resent redrive or drop
 * changes nothing more, though its reply then counts only what was left to
 * change. The answer is copied into one civ_dead_letters_t allocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

void sdk_dl_free(sdk_dl_t *dl)
{
    codec_hub_free(&dl->reply);
    free(dl->frame);
    memset(dl, 0, sizeof *dl);
}

void sdk_dl_on_reply(civ_client_t *self, codec_hub_msg_t **msg_p)
{
    sdk_dl_t *dl = &self->dl;
    if (!dl->id || (*msg_p)->dead_letters_reply->request_id != dl->id || dl->reply)
        return; /* a late answer to an earlier request */
    dl->reply = *msg_p;
    *msg_p = NULL;
    dl->done = true;
}

bool sdk_dl_on_error(civ_client_t *self, const Civibus__V1__Error *error)
{
    sdk_dl_t *dl = &self->dl;
    if (!dl->id || error->request_id != dl->id)
        return false;
    int code = sdk_code_from_wire(error->code);
    dl->error = code == CIV_OK ? CIV_E_PROTOCOL : code;
    sdk_error_set(&self->err, dl->error, "hub error %s: %s", codec_error_name(error->code), error->reason);
    return true;
}

static int s_send(civ_client_t *self, uint64_t id)
{
    (void)id; /* packed into the frame */
    return sdk_send_frame(self, self->dl.frame, self->dl.frame_len);
}

/* Copy the reply into one allocation: the struct, then the items, then the
 * not_found and gone seqs. */
static int s_fill(const Civibus__V1__DeadLettersReply *r, civ_dead_letters_t **out)
{
    size_t size = sizeof(civ_dead_letters_t) + r->n_dead_letters * sizeof(civ_dead_letter_t) +
                  (r->n_not_found + r->n_gone) * sizeof(uint64_t);
    civ_dead_letters_t *o = calloc(1, size);
    if (!o)
        return CIV_E_NOMEM;
    o->items = (civ_dead_letter_t *)(o + 1);
    o->not_found = (uint64_t *)(o->items + r->n_dead_letters);
    o->gone = o->not_found + r->n_not_found;
    o->n = r->n_dead_letters;
    for (size_t i = 0; i < r->n_dead_letters; i++) {
        const Civibus__V1__DeadLetter *in = r->dead_letters[i];
        civ_dead_letter_t *d = &o->items[i];
        d->seq = in->seq;
        d->attempts = in->attempts;
        d->dead_at = in->dead_at;
        d->redrive = in->redrive;
        d->gone = in->gone;
        d->received_at = in->received_at;
        snprintf(d->reason, sizeof d->reason, "%s", in->reason);
        snprintf(d->type, sizeof d->type, "%s", in->type);
        snprintf(d->source, sizeof d->source, "%s", in->source);
        snprintf(d->event_id, sizeof d->event_id, "%s", in->event_id);
    }
    o->next_after = r->next_after_seq;
    o->total = r->total;
    o->affected = r->affected;
    o->n_not_found = r->n_not_found;
    if (r->n_not_found)
        memcpy(o->not_found, r->not_found, r->n_not_found * sizeof *o->not_found);
    o->n_gone = r->n_gone;
    if (r->n_gone)
        memcpy(o->gone, r->gone, r->n_gone * sizeof *o->gone);
    *out = o;
    return CIV_OK;
}

static int s_request(civ_client_t *self, Civibus__V1__DeadLettersRequest *req, civ_dead_letters_t **out)
{
    if (out)
        *out = NULL;
    sdk_dl_t *dl = &self->dl;
    sdk_dl_free(dl);
    dl->id = req->request_id = sdk_request_id(self);
    Civibus__V1__ClientMessage msg = CIVIBUS__V1__CLIENT_MESSAGE__INIT;
    msg.version = CODEC_PROTOCOL_VERSION;
    msg.body_case = CIVIBUS__V1__CLIENT_MESSAGE__BODY_DEAD_LETTERS;
    msg.dead_letters = req;
    dl->frame_len = civibus__v1__client_message__get_packed_size(&msg);
    dl->frame = malloc(dl->frame_len ? dl->frame_len : 1);
    if (!dl->frame) {
        sdk_dl_free(dl);
        return sdk_error_set(&self->err, CIV_E_NOMEM, "no memory for a dead-letter request");
    }
    civibus__v1__client_message__pack(&msg, dl->frame);
    int rc = sdk_round_trip(self, s_send, dl->id, &dl->done, &dl->error);
    if (rc == CIV_OK && out)
        rc = s_fill(dl->reply->dead_letters_reply, out);
    sdk_dl_free(dl);
    return rc;
}

static int s_check_name(civ_client_t *self, const char *name)
{
    if (!codec_name_valid(name))
        return sdk_error_set(&self->err, CIV_E_INVALID, "subscription name must be 1-%d chars of [A-Za-z0-9._-]",
                             CODEC_NAME_MAX);
    return CIV_OK;
}

int civ_dead_letters_list(civ_client_t *self, const char *name, uint64_t after_seq, uint32_t limit,
                          civ_dead_letters_t **out)
{
    if (!self || !out)
        return CIV_E_INVALID;
    *out = NULL;
    int rc = s_check_name(self, name);
    if (rc != CIV_OK)
        return rc;
    Civibus__V1__DeadLettersRequest req = CIVIBUS__V1__DEAD_LETTERS_REQUEST__INIT;
    req.subscription = (char *)name;
    req.op = CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__LIST;
    req.after_seq = after_seq;
    req.limit = limit;
    return s_request(self, &req, out);
}

static int s_change(civ_client_t *self, Civibus__V1__DeadLettersRequest__Op op, const char *name,
                    const uint64_t *seqs, size_t n_seqs, bool all, civ_dead_letters_t **out)
{
    if (out)
        *out = NULL;
    if (!self)
        return CIV_E_INVALID;
    int rc = s_check_name(self, name);
    if (rc != CIV_OK)
        return rc;
    if (all == (n_seqs > 0) || (n_seqs && !seqs))
        return sdk_error_set(&self->err, CIV_E_INVALID, "give seqs or all, not both and not neither");
    if (n_seqs > CIV_DEAD_LETTERS_SEQS_MAX)
        return sdk_error_set(&self->err, CIV_E_INVALID, "at most %d seqs at a time", CIV_DEAD_LETTERS_SEQS_MAX);
    for (size_t i = 0; i < n_seqs; i++)
        if (seqs[i] == 0)
            return sdk_error_set(&self->err, CIV_E_INVALID, "sequence numbers start at 1");
    Civibus__V1__DeadLettersRequest req = CIVIBUS__V1__DEAD_LETTERS_REQUEST__INIT;
    req.subscription = (char *)name;
    req.op = op;
    req.n_seqs = n_seqs;
    req.seqs = (uint64_t *)seqs;
    req.all = all;
    return s_request(self, &req, out);
}

int civ_dead_letters_redrive(civ_client_t *self, const char *name, const uint64_t *seqs, size_t n_seqs, bool all,
                             civ_dead_letters_t **out)
{
    return s_change(self, CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__REDRIVE, name, seqs, n_seqs, all, out);
}

int civ_dead_letters_drop(civ_client_t *self, const char *name, const uint64_t *seqs, size_t n_seqs, bool all,
                          civ_dead_letters_t **out)
{
    return s_change(self, CIVIBUS__V1__DEAD_LETTERS_REQUEST__OP__DROP, name, seqs, n_seqs, all, out);
}

void civ_dead_letters_destroy(civ_dead_letters_t **self_p)
{
    if (self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}
