/* Error codes, their names and their classes. */
#include "streamtx.h"

const char *stx_strerror(int code)
{
    switch (code) {
    case STX_OK: return "success";
    case STX_EINVAL: return "invalid argument or configuration";
    case STX_ENOMEM: return "out of memory";
    case STX_ECONN: return "connection to Redis failed or was lost";
    case STX_ETIMEOUT: return "Redis did not answer in time";
    case STX_EAUTH: return "authentication refused";
    case STX_EREDIS: return "unexpected Redis error";
    case STX_EWRONGTYPE: return "a key holds the wrong Redis type";
    case STX_EFENCED: return "fenced: a newer processor or an operator's reset took this stream and group";
    case STX_EHANDLER: return "the handler failed";
    case STX_EDECODE: return "bytes do not decode";
    case STX_ENOTFOUND: return "not found";
    case STX_ESNAPSHOT: return "LMDB snapshot error";
    case STX_ETYPE: return "value is not of the requested type";
    case STX_ELIMIT: return "size or count limit exceeded";
    case STX_ESTOPPED: return "processor stopped";
    case STX_ESTATE: return "call not valid in the current state";
    case STX_EREDIS_REFUSED:
        return "Redis did not run the command for now (OOM, MISCONF, READONLY, NOREPLICAS, "
               "LOADING, BUSY, MASTERDOWN or UNBLOCKED); retry later";
    case STX_ENOGROUP: return "the consumer group or the stream no longer exists";
    case STX_ECONFLICT: return "idempotency key already used with different content";
    case STX_EINVALID_CURSOR: return "cursor is not a stream id";
    case STX_EWINDOW_EXPIRED: return "entries after the cursor were trimmed (retention window expired)";
    case STX_ESCHEMA: return "stored state has another schema version";
    case STX_ETLS:
        return "TLS failed (settings, certificate verification or handshake refused)";
    case STX_EARCHIVE: return "the archive database (PostgreSQL) refused a statement";
    default: return "unknown error code";
    }
}

stx_error_class stx_error_class_of(int code)
{
    switch (code) {
    case STX_OK:
        return STX_CLASS_OK;
    case STX_ECONN:
    case STX_ETIMEOUT:
    case STX_EREDIS_REFUSED:
        return STX_CLASS_RETRIABLE;
    case STX_EHANDLER:
    case STX_EDECODE:
    case STX_ENOTFOUND:
    case STX_ETYPE:
    case STX_ELIMIT:
    case STX_ESNAPSHOT:
    case STX_EREDIS:
    case STX_ESTOPPED:
    case STX_ESTATE:
    case STX_EARCHIVE:
        return STX_CLASS_ABORTABLE;
    default:
        return STX_CLASS_FATAL;
    }
}

const char *stx_version(void)
{
    return "0.2.0";
}
