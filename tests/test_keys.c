/* Key derivation: every derived key in the stream's Redis Cluster slot (as
 * Redis itself computes it, asked with CLUSTER KEYSLOT), and no two inputs
 * deriving one key (a randomized search over names made of braces and
 * colons, plus the pairs that collided in the old layout). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "keys.h"
#include "statemap.h"
#include "streamtx.h"

TestSuite(keys, .timeout = 120);

static const char *const kinds[] = {"meta", "state", "dlq", "attempts", "live", "outbox"};
#define NKINDS 6

static unsigned long long next_rand(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(keys, normal_names_stay_readable)
{
    char buf[256];
    cr_assert_eq(stx_key_name(buf, sizeof buf, "orders", "g", "meta"), 28);
    cr_assert_str_eq(buf, "{orders}:stx:6:orders:g:meta");
    cr_assert(stx_key_name(buf, sizeof buf, "orders", "g", "attempts") > 0);
    cr_assert_str_eq(buf, "{orders}:stx:6:orders:g:attempts");
    cr_assert(stx_key_name(buf, sizeof buf, "app:{eu}:orders", "g", "dlq") > 0);
    cr_assert_str_eq(buf, "{eu}:stx:15:app:{eu}:orders:g:dlq");
    /* A name whose hashed part holds '}' gets a slot tag of '@'..'O'. */
    cr_assert(stx_key_name(buf, sizeof buf, "a}b", "g", "meta") > 0);
    cr_assert_eq(strlen(buf), strlen("{ABCD}:stx:3:a}b:g:meta"));
    cr_assert_eq(buf[0], '{');
    cr_assert_eq(buf[5], '}');
    for (int i = 1; i < 5; i++) cr_assert(buf[i] >= '@' && buf[i] <= 'O', "%s", buf);
    cr_assert_str_eq(buf + 5, "}:stx:3:a}b:g:meta");
    size_t n;
    char *idem = stx_key_alloc_idem("orders", "k\0z", 3, &n);
    cr_assert_not_null(idem);
    cr_assert_eq(n, 30);
    cr_assert_eq(memcmp(idem, "{orders}:stx-idem:6:orders:k\0z", 31), 0);
    free(idem);
    cr_assert_eq(stx_key_name(buf, sizeof buf, "orders", "g", "bogus"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, sizeof buf, "", "g", "meta"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, sizeof buf, "s", "", "meta"), STX_EINVAL);
    cr_assert_eq(stx_key_name(buf, 8, "orders", "g", "meta"), STX_ELIMIT);
    cr_assert_null(stx_key_alloc("s", "g", "bogus"));
}

Test(keys, slot_tags_reach_every_slot)
{
    for (unsigned slot = 0; slot < 16384; slot++) {
        char tag[STX_SLOT_TAG_LEN + 2];
        stx_slot_tag(slot, tag);
        for (int i = 0; i < STX_SLOT_TAG_LEN; i++)
            cr_assert(tag[i] >= '@' && tag[i] <= 'O', "slot %u", slot);
        cr_assert_eq(stx_key_slot(tag, STX_SLOT_TAG_LEN), slot, "slot %u", slot);
    }
}

/* Redis' slot of each of n keys, pipelined. */
static void keyslots(redisContext *c, char **keys, const size_t *lens, size_t n, long long *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"CLUSTER", "KEYSLOT", keys[i]};
        size_t argl[] = {7, 7, lens[i]};
        cr_assert_eq(redisAppendCommandArgv(c, 3, argv, argl), REDIS_OK);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
        out[i] = r->integer;
        freeReplyObject(r);
    }
}

/* For each stream: the stream, its four group keys under each group and
 * its dedup keys, all asked of Redis; every one must share the stream's
 * slot, and stx_key_slot() must agree with Redis on all of them. */
static void check_streams(redisContext *c, const char *const *streams, size_t nstreams)
{
    static const char *const groups[] = {"g", "}", "{", "{}", "{x}", ":stx:", "}{g"};
    static const char *const idems[] = {"", "k", "}", "{a}"};
    size_t per = 1 + 7 * NKINDS + 4 + 1;
    char **keys = calloc(per, sizeof *keys);
    size_t *lens = calloc(per, sizeof *lens);
    long long *slots = calloc(per, sizeof *slots);
    for (size_t s = 0; s < nstreams; s++) {
        size_t n = 0;
        keys[n] = strdup(streams[s]);
        lens[n++] = strlen(streams[s]);
        for (size_t g = 0; g < 7; g++)
            for (size_t k = 0; k < NKINDS; k++) {
                keys[n] = stx_key_alloc(streams[s], groups[g], kinds[k]);
                cr_assert_not_null(keys[n]);
                lens[n] = strlen(keys[n]);
                n++;
            }
        for (size_t i = 0; i < 4; i++) {
            keys[n] = stx_key_alloc_idem(streams[s], idems[i], strlen(idems[i]), &lens[n]);
            cr_assert_not_null(keys[n]);
            n++;
        }
        /* The relay's marks of the stream as a publish target. */
        keys[n] = stx_key_alloc_relayed(streams[s]);
        cr_assert_not_null(keys[n]);
        lens[n] = strlen(keys[n]);
        n++;
        keyslots(c, keys, lens, n, slots);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(slots[i], slots[0], "stream '%s': key '%s' in slot %lld, stream in %lld",
                         streams[s], keys[i], slots[i], slots[0]);
            cr_assert_eq((long long)stx_key_slot(keys[i], lens[i]), slots[i], "key '%s'", keys[i]);
            free(keys[i]);
        }
    }
    free(keys);
    free(lens);
    free(slots);
}

Test(keys, every_key_in_the_stream_slot_per_redis)
{
    static const char *const cluster[] = {"--cluster-enabled", "yes", "--cluster-config-file",
                                          "nodes.conf", NULL};
    test_redis cr;
    test_redis_start(&cr, 0, cluster);
    redisContext *c = test_redis_connect(&cr);

    static const char *const adversarial[] = {
        "a}b", "{}x", "{}", "{}{a}", "}{", "}", "{", "{{", "}}", "{}}", "{{}}", "{a", "a{",
        "a}", "}a", "{a}", "{a}{b}", "x{}y{z}", "{}{}", "}{a}", "{a}}", "{{a}}", "a{}b}",
        "x}:stx:5:ab{x", "ab{x}", "stx:13:x}:stx:5:ab{x:g", ":", "::", "{:}", "@ABC", "{@ABC}",
        " ", "\t", "\x01", "\xff", "\xff}\xfe", "{\x80\x81}", "\x7f{\x01}", "orders",
        "app:{eu}:orders", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
    };
    check_streams(c, adversarial, sizeof adversarial / sizeof *adversarial);

    /* Long names: the tag far inside, and a brace-laden one. */
    enum { LONG = 20000 };
    char *l1 = malloc(LONG + 1), *l2 = malloc(LONG + 1), *l3 = malloc(LONG + 1);
    memset(l1, 'a', LONG);
    l1[LONG] = '\0';
    memset(l2, 'b', LONG);
    memcpy(l2 + LONG - 10, "{tag}", 5);
    l2[LONG] = '\0';
    for (size_t i = 0; i < LONG; i++) l3[i] = "{}a"[i % 3];
    l3[LONG] = '\0';
    const char *longs[] = {l1, l2, l3};
    check_streams(c, longs, 3);
    free(l1);
    free(l2);
    free(l3);

    /* Random NUL-free bytes, braces made frequent. */
    unsigned long long seed = 0x243f6a8885a308d3ull;
    enum { RANDOM = 300 };
    char *names[RANDOM];
    for (size_t i = 0; i < RANDOM; i++) {
        size_t len = 1 + next_rand(&seed) % 24;
        names[i] = malloc(len + 1);
        for (size_t j = 0; j < len; j++) {
            unsigned long long r = next_rand(&seed);
            names[i][j] = r % 4 == 0 ? '{' : r % 4 == 1 ? '}' : (char)(1 + (r >> 8) % 255);
        }
        names[i][len] = '\0';
    }
    check_streams(c, (const char *const *)names, RANDOM);
    for (size_t i = 0; i < RANDOM; i++) free(names[i]);

    redisFree(c);
    test_redis_stop(&cr);
}

/* Parse a group key back into its parts, following the documented layout;
 * 0 on success. */
static int parse_group_key(const char *key, char *stream, char *group, char *kind)
{
    if (key[0] != '{') return -1;
    const char *close = strchr(key, '}');
    if (!close || strncmp(close, "}:stx:", 6) != 0) return -1;
    char *end;
    unsigned long len = strtoul(close + 6, &end, 10);
    if (*end != ':') return -1;
    memcpy(stream, end + 1, len);
    stream[len] = '\0';
    const char *rest = end + 1 + len;
    if (*rest != ':') return -1;
    rest++;
    const char *last = strrchr(rest, ':');
    if (!last) return -1;
    memcpy(group, rest, (size_t)(last - rest));
    group[last - rest] = '\0';
    strcpy(kind, last + 1);
    return 0;
}

static void random_name(unsigned long long *seed, char *out)
{
    static const char alphabet[] = "{}:ax0159";
    size_t len = 1 + next_rand(seed) % 10;
    for (size_t i = 0; i < len; i++) out[i] = alphabet[next_rand(seed) % 9];
    out[len] = '\0';
}

/* Record key -> "STREAM\0GROUP\0KIND" in seen; a key already there with
 * another origin is a collision. */
static void record(stx_statemap *seen, const char *key, size_t key_len, const char *stream,
                   const char *group, const char *kind)
{
    char origin[128];
    size_t a = strlen(stream) + 1, b = strlen(group) + 1, k = strlen(kind) + 1;
    memcpy(origin, stream, a);
    memcpy(origin + a, group, b);
    memcpy(origin + a + b, kind, k);
    size_t olen = a + b + k;
    stx_sm_entry *e = stx_sm_find(seen, key, key_len);
    if (e) {
        cr_assert(e->value_len == olen && memcmp(stx_sm_value(e), origin, olen) == 0,
                  "key '%.*s' derived twice: from '%s' and from '%s'", (int)key_len, key,
                  stx_sm_value(e), stream);
        return;
    }
    cr_assert_not_null(stx_sm_put(seen, key, key_len, origin, olen, 0));
}

Test(keys, no_two_inputs_share_a_key)
{
    /* The pairs that met in one key in the old layout. */
    char k1[256], k2[256];
    for (size_t k = 0; k < NKINDS; k++) {
        cr_assert(stx_key_name(k1, sizeof k1, "x}:stx:5:ab{x", "g", kinds[k]) > 0);
        cr_assert(stx_key_name(k2, sizeof k2, "ab{x}", "stx:13:x}:stx:5:ab{x:g", kinds[k]) > 0);
        cr_assert_str_neq(k1, k2);
    }

    stx_statemap seen;
    stx_sm_init(&seen);
    unsigned long long seed = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        char stream[16], group[16], key[128], ps[128], pg[128], pk[32];
        random_name(&seed, stream);
        random_name(&seed, group);
        for (size_t k = 0; k < NKINDS; k++) {
            int n = stx_key_name(key, sizeof key, stream, group, kinds[k]);
            cr_assert(n > 0);
            /* The key reads back as exactly its inputs. */
            cr_assert_eq(parse_group_key(key, ps, pg, pk), 0, "key '%s'", key);
            cr_assert_str_eq(ps, stream);
            cr_assert_str_eq(pg, group);
            cr_assert_str_eq(pk, kinds[k]);
            record(&seen, key, (size_t)n, stream, group, kinds[k]);
        }
        /* Dedup keys share the key space: the group name as the idempotency key. */
        size_t n;
        char *idem = stx_key_alloc_idem(stream, group, strlen(group), &n);
        cr_assert_not_null(idem);
        record(&seen, idem, n, stream, group, "idem");
        free(idem);
        /* And the relayed keys (of the stream, and of the group name as a target). */
        char *relayed = stx_key_alloc_relayed(stream);
        cr_assert_not_null(relayed);
        record(&seen, relayed, strlen(relayed), stream, "", "relayed");
        free(relayed);
        relayed = stx_key_alloc_relayed(group);
        cr_assert_not_null(relayed);
        record(&seen, relayed, strlen(relayed), group, "", "relayed");
        free(relayed);
    }
    cr_assert_gt(seen.count, 500000);
    stx_sm_free(&seen);
}
