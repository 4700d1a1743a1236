/* verify - end-to-end checks of signed events (civ_event_verify and
 * civ_verifier_t, docs/SIGNING.md) and of the hub's signed checkpoints
 * (civ_hub_keys_t, civ_checkpoint_verify, docs/LOG.md).
 *
 * A subscriber trusts the agency registry, not the hub: it recomputes each
 * event's batch root from the delivered bytes and checks the source
 * agency's signature itself. The verifier holds every signing key of a
 * registry folder, read once; a key counts when it was valid at the hub's
 * receive time of the event, so that a later revocation does not void
 * events accepted before it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyfile.h"
#include "logfile.h"
#include "sdk.h"

typedef struct {
    char agency[CODEC_AGENCY_MAX + 1];
    keyfile_sign_t key;
    uint8_t id[CRYPTO_KEYID_LEN];
} s_vkey_t;

struct civ_verifier {
    s_vkey_t *keys;
    size_t n;
};

#define S_WHY(...) (why ? snprintf(why, why_len, __VA_ARGS__) : 0)

/* Decode d and recompute its root; CIV_OK or a civ_err code. *ev_p is the
 * caller's to free on CIV_OK. */
static int s_root(const civ_delivery_t *d, codec_event_t **ev_p, uint8_t root[CRYPTO_SHA256_LEN],
                  const uint8_t **key_id, const uint8_t **sig, char *why, size_t why_len)
{
    codec_event_t *ev = NULL;
    if (codec_event_decode(d->raw, d->raw_len, d->raw_len + 1, &ev) != CODEC_OK) {
        S_WHY("not a valid ServiceEvent encoding");
        return CIV_E_MALFORMED;
    }
    char reason[160];
    int rc = evsign_event_root(ev, root, key_id, sig, reason, sizeof reason);
    if (rc != EVSIGN_OK) {
        codec_event_free(&ev);
        S_WHY("%s", reason);
        return rc == EVSIGN_UNSIGNED ? CIV_E_UNSIGNED
               : rc == EVSIGN_INTERNAL ? CIV_E_NOMEM
                                       : CIV_E_BAD_SIGNATURE;
    }
    *ev_p = ev;
    return CIV_OK;
}

static int s_check(const uint8_t pub[CRYPTO_PUB_LEN], const uint8_t root[CRYPTO_SHA256_LEN],
                   const uint8_t sig[CRYPTO_SIG_LEN], char *why, size_t why_len)
{
    crypto_key_t *key = crypto_key_from_public(pub);
    int rc = key ? evsign_verify_root(key, root, sig) : EVSIGN_BAD_SIGNATURE;
    crypto_key_destroy(&key);
    if (rc == EVSIGN_OK)
        return CIV_OK;
    S_WHY("bad signature");
    return rc == EVSIGN_INTERNAL ? CIV_E_NOMEM : CIV_E_BAD_SIGNATURE;
}

int civ_event_verify(const civ_delivery_t *d, const uint8_t *public_key32)
{
    if (!d || !public_key32 || !d->raw)
        return CIV_E_INVALID;
    codec_event_t *ev = NULL;
    uint8_t root[CRYPTO_SHA256_LEN], id[CRYPTO_KEYID_LEN];
    const uint8_t *key_id, *sig;
    int rc = s_root(d, &ev, root, &key_id, &sig, NULL, 0);
    if (rc != CIV_OK)
        return rc;
    crypto_key_id_raw(public_key32, id);
    rc = memcmp(id, key_id, sizeof id) != 0 ? CIV_E_UNKNOWN_KEY : s_check(public_key32, root, sig, NULL, 0);
    codec_event_free(&ev);
    return rc;
}

civ_verifier_t *civ_verifier_new(const char *registry_dir, civ_error_t *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!registry_dir) {
        sdk_error_set(err, CIV_E_INVALID, "a registry folder is required");
        return NULL;
    }
    civ_verifier_t *self = calloc(1, sizeof *self);
    DIR *d = opendir(registry_dir);
    size_t cap = 0;
    if (!self || !d) {
        sdk_error_set(err, self ? CIV_E_KEY : CIV_E_NOMEM, "%s: %s", registry_dir, strerror(errno));
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!keyfile_is_entry_name(de->d_name))
            continue; /* not an agency entry (e.g. the hub's hub-sign.pub) */
        char path[4096], why[512];
        snprintf(path, sizeof path, "%s/%s", registry_dir, de->d_name);
        keyfile_t kf;
        if (keyfile_read_entry(path, &kf, why, sizeof why) != KEYFILE_OK) {
            sdk_error_set(err, CIV_E_KEY, "%s", why);
            goto fail;
        }
        for (int i = 0; i < kf.n_sign; i++) {
            if (self->n == cap) {
                cap = cap ? 2 * cap : 16;
                s_vkey_t *grown = realloc(self->keys, cap * sizeof *grown);
                if (!grown) {
                    sdk_error_set(err, CIV_E_NOMEM, "no memory for the registry's keys");
                    goto fail;
                }
                self->keys = grown;
            }
            s_vkey_t *k = &self->keys[self->n++];
            snprintf(k->agency, sizeof k->agency, "%s", kf.agency);
            k->key = kf.sign[i];
            crypto_key_id_raw(k->key.pub, k->id);
        }
    }
    closedir(d);
    return self;
fail:
    if (d)
        closedir(d);
    civ_verifier_destroy(&self);
    return NULL;
}

void civ_verifier_destroy(civ_verifier_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->keys);
        free(*self_p);
        *self_p = NULL;
    }
}

int civ_verifier_check(const civ_verifier_t *self, const civ_delivery_t *d, char *why, size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    if (!self || !d || !d->raw)
        return CIV_E_INVALID;
    codec_event_t *ev = NULL;
    uint8_t root[CRYPTO_SHA256_LEN];
    const uint8_t *key_id, *sig;
    int rc = s_root(d, &ev, root, &key_id, &sig, why, why_len);
    if (rc != CIV_OK)
        return rc;
    char hex[CRYPTO_KEYID_HEX];
    crypto_hex(key_id, CRYPTO_KEYID_LEN, hex);
    const s_vkey_t *found = NULL;
    for (size_t i = 0; i < self->n && !found; i++)
        if (memcmp(self->keys[i].id, key_id, CRYPTO_KEYID_LEN) == 0 && strcmp(self->keys[i].agency, ev->source) == 0)
            found = &self->keys[i];
    int64_t at = d->received_at / 1000000;
    if (!found) {
        S_WHY("no signing key %s of agency %s in the registry", hex, ev->source);
        rc = CIV_E_UNKNOWN_KEY;
    } else if (keyfile_sign_status(&found->key, at) != KEYFILE_VALID) {
        S_WHY("signing key %s of agency %s was %s when the hub received the event", hex, ev->source,
              keyfile_status_name(keyfile_sign_status(&found->key, at)));
        rc = CIV_E_UNKNOWN_KEY;
    } else {
        rc = s_check(found->key.pub, root, sig, why, why_len);
        if (rc == CIV_E_BAD_SIGNATURE)
            S_WHY("bad signature with key %s of agency %s", hex, ev->source);
    }
    codec_event_free(&ev);
    return rc;
}

struct civ_hub_keys {
    keyfile_hub_t keys;
};

civ_hub_keys_t *civ_hub_keys_new(const char *path, civ_error_t *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!path) {
        sdk_error_set(err, CIV_E_INVALID, "a key file is required");
        return NULL;
    }
    civ_hub_keys_t *self = calloc(1, sizeof *self);
    if (!self) {
        sdk_error_set(err, CIV_E_NOMEM, "no memory for the hub's keys");
        return NULL;
    }
    char why[512];
    if (keyfile_read_hub_sign(path, &self->keys, why, sizeof why) != KEYFILE_OK) {
        sdk_error_set(err, CIV_E_KEY, "%s", why);
        civ_hub_keys_destroy(&self);
    }
    return self;
}

void civ_hub_keys_destroy(civ_hub_keys_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

int civ_checkpoint_verify(const civ_hub_keys_t *keys, const civ_checkpoint_t *cp, char *why, size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    if (!keys || !cp)
        return CIV_E_INVALID;
    logfile_checkpoint_t lc = {.seq = cp->seq, .time = cp->time_us};
    memcpy(lc.chain, cp->chain, sizeof lc.chain);
    memcpy(lc.key_id, cp->key_id, sizeof lc.key_id);
    memcpy(lc.sig, cp->signature, sizeof lc.sig);
    char reason[256];
    int rc = logfile_checkpoint_check(&lc, &keys->keys, reason, sizeof reason);
    if (rc != LOGFILE_OK)
        S_WHY("%s", reason);
    return rc == LOGFILE_OK            ? CIV_OK
           : rc == LOGFILE_UNKNOWN_KEY ? CIV_E_UNKNOWN_KEY
           : rc == LOGFILE_TAMPERED    ? CIV_E_BAD_SIGNATURE
                                       : CIV_E_INTERNAL;
}
