/* error - the SDK's error codes: descriptions, names, wire mapping.
 *
 * The hub's ErrorCode values map to civ_err by negation (NOT_AUTHORISED = 1
 * becomes CIV_E_NOT_AUTHORISED = -1); the names of those codes come from the
 * codec so that hub, SDK and CLI spell them alike.
 */
#include <stdarg.h>
#include <stdio.h>

#include "sdk.h"

const char *civ_strerror(int code)
{
    switch (code) {
    case CIV_OK: return "success";
    case CIV_E_NOT_AUTHORISED: return "not authorised: the hub refused this agency the operation";
    case CIV_E_MALFORMED: return "malformed message or event";
    case CIV_E_TOO_LARGE: return "event or message over the size limit";
    case CIV_E_STORAGE_FULL: return "the hub's log is full; retry later";
    case CIV_E_UNAVAILABLE: return "hub unavailable (shutting down or overloaded); retry later";
    case CIV_E_INTERNAL: return "internal fault; retry later";
    case CIV_E_UNKNOWN_SUBSCRIPTION: return "no such subscription";
    case CIV_E_BAD_REQUEST: return "bad request: invalid arguments";
    case CIV_E_UNSUPPORTED_VERSION: return "unsupported protocol version";
    case CIV_E_BAD_SIGNATURE: return "the event's signature does not verify";
    case CIV_E_BEHIND_RETENTION:
        return "behind retention: the hub deleted entries this subscription or replay needs; start again from "
               "the first retained entry";
    case CIV_E_UNSIGNED: return "the event carries no signature";
    case CIV_E_UNKNOWN_KEY: return "no valid signing key of the source agency has the event's key id";
    case CIV_E_TIMEOUT: return "timed out waiting for the hub; safe to retry";
    case CIV_E_INVALID: return "invalid argument";
    case CIV_E_KEY: return "key file unreadable or invalid";
    case CIV_E_TRANSPORT: return "ZeroMQ transport error";
    case CIV_E_PROTOCOL: return "the hub sent an undecodable or unexpected message";
    case CIV_E_NOMEM: return "out of memory";
    default: return "unknown error code";
    }
}

const char *civ_error_name(int code)
{
    if (code <= CIV_E_NOT_AUTHORISED && code >= CIV_E_BEHIND_RETENTION)
        return codec_error_name((Civibus__V1__ErrorCode)-code);
    switch (code) {
    case CIV_OK: return "ok";
    case CIV_E_TIMEOUT: return "timeout";
    case CIV_E_INVALID: return "invalid";
    case CIV_E_KEY: return "key";
    case CIV_E_TRANSPORT: return "transport";
    case CIV_E_PROTOCOL: return "protocol";
    case CIV_E_NOMEM: return "nomem";
    case CIV_E_UNSIGNED: return "unsigned";
    case CIV_E_UNKNOWN_KEY: return "unknown_key";
    default: return "unknown";
    }
}

int sdk_code_from_wire(int wire_code)
{
    if (wire_code == CIVIBUS__V1__ERROR_CODE__OK)
        return CIV_OK;
    if (wire_code >= CIVIBUS__V1__ERROR_CODE__NOT_AUTHORISED &&
        wire_code <= CIVIBUS__V1__ERROR_CODE__BEHIND_RETENTION)
        return -wire_code;
    return CIV_E_PROTOCOL;
}

int sdk_error_set(civ_error_t *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
