/* Fuzz the decoder of stream entries: arbitrary bytes are parsed as RESP
 * by hiredis into the library's reply blocks, as a Redis reply would be, and every reply is handed to the
 * message view (stx_msg_decode) and read back through the public calls. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "processor.h"
#include "reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use(const redisReply *r)
{
    struct stx_msg m;
    const char *why = NULL;
    int rc = stx_msg_decode(&m, r, "s", 64, 1 << 20, &why);
    if (rc != STX_OK && rc != STX_ELIMIT) {
        if (!why) __builtin_trap(); /* every refusal says why */
        return;
    }
    m.active = 1; /* read back as a handler would, inside its call */
    if (!m.id || strlen(stx_msg_id(&m)) == 0) __builtin_trap();
    size_t total = 0;
    for (size_t i = 0; i < stx_msg_field_count(&m); i++) {
        const char *n, *v;
        size_t nl, vl;
        if (stx_msg_field(&m, i, &n, &nl, &v, &vl) != STX_OK) __builtin_trap();
        total += nl + vl + (size_t)(unsigned char)(nl ? n[0] : 0) + (vl ? (unsigned char)v[vl - 1] : 0);
    }
    if (stx_msg_field(&m, stx_msg_field_count(&m), NULL, NULL, NULL, NULL) != STX_ENOTFOUND)
        __builtin_trap();
    size_t len;
    (void)stx_msg_get(&m, "k", &len);
    (void)total;
}

/* hiredis 0.14 trusts the counts of RESP headers ("*N", "$N") and
 * allocates for them before reading further; it has no maxelements limit.
 * The replies it parses come from the Redis server, so that is not ours to
 * fuzz: inputs whose headers claim more than the input holds are skipped,
 * wherever they stand (conservatively), and the decoder of entries gets
 * everything else. */
static int counts_fit(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '*' || data[i] == '$') {
            unsigned long long n = 0;
            for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9'; j++) {
                n = n * 10 + (unsigned)(data[j] - '0');
                if (n > size) return 0;
            }
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!counts_fit(data, size)) return 0;
    /* the builder the library's sessions use (reply.c) */
    stx_reply_builder builder;
    stx_reply_builder_init(&builder);
    redisReader *reader = redisReaderCreateWithFunctions(&builder.fn);
    if (!reader) return 0;
    reader->privdata = &builder;
    redisReaderFeed(reader, (const char *)data, size);
    for (int i = 0; i < 64; i++) {
        void *reply = NULL;
        if (redisReaderGetReply(reader, &reply) != REDIS_OK || !reply) break;
        const redisReply *r = reply;
        use(r);
        /* The processor also walks arrays of entries. */
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < r->elements; j++) use(r->element[j]);
        stx_reply_release(reply);
    }
    redisReaderFree(reader);
    return 0;
}
