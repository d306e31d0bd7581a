/* stx_client_call() against a real redis-server: every reply type, binary
 * arguments and replies, error replies as replies, argument checks, and a
 * lost connection. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"
#include "streamtx.h"

static test_redis R;

static void setup(void) { test_redis_start(&R, 0, NULL); }
static void teardown(void) { test_redis_stop(&R); }

TestSuite(command, .init = setup, .fini = teardown, .timeout = 60);

/* Call a NUL-terminated list of text arguments; asserts STX_OK. */
static stx_reply *call(stx_client *c, const char *const *argv)
{
    size_t n = 0;
    while (argv[n]) n++;
    stx_reply *r = NULL;
    int rc = stx_client_call(c, n, argv, NULL, &r);
    cr_assert_eq(rc, STX_OK, "%s: %s", argv[0], stx_client_errmsg(c));
    cr_assert_not_null(r);
    return r;
}

static void assert_text(const stx_reply *r, stx_reply_type type, const char *want)
{
    size_t len = 99;
    const char *s = stx_reply_string(r, &len);
    cr_assert_eq(stx_reply_type_of(r), type);
    cr_assert_not_null(s);
    cr_assert_eq(len, strlen(want));
    cr_assert_str_eq(s, want);
}

Test(command, status_integer_nil_string)
{
    stx_client *c = test_client(&R);
    char key[64];
    test_unique("k", key, sizeof key);

    stx_reply *r = call(c, (const char *[]){"PING", NULL});
    assert_text(r, STX_REPLY_STATUS, "PONG");
    cr_assert_eq(stx_reply_integer(r), 0);
    cr_assert_eq(stx_reply_count(r), 0);
    cr_assert_null(stx_reply_at(r, 0));
    stx_reply_free(r);

    r = call(c, (const char *[]){"INCRBY", key, "41", NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_INTEGER);
    cr_assert_eq(stx_reply_integer(r), 41);
    size_t len = 7;
    cr_assert_null(stx_reply_string(r, &len));
    cr_assert_eq(len, 0);
    stx_reply_free(r);

    r = call(c, (const char *[]){"GET", key, NULL});
    assert_text(r, STX_REPLY_STRING, "41");
    stx_reply_free(r);

    r = call(c, (const char *[]){"GET", "no-such-key-anywhere", NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_NIL);
    cr_assert_null(stx_reply_string(r, NULL));
    stx_reply_free(r);
    cr_assert_str_eq(stx_client_errmsg(c), "");
    stx_client_free(c);
}

Test(command, binary_arguments_and_replies)
{
    stx_client *c = test_client(&R);
    char key[64];
    test_unique("bin", key, sizeof key);
    const char val[] = {'a', '\0', '\r', '\n', (char)0xff, 'z'};
    const char *argv[] = {"SET", key, val};
    const size_t lens[] = {3, strlen(key), sizeof val};
    stx_reply *r = NULL;
    cr_assert_eq(stx_client_call(c, 3, argv, lens, &r), STX_OK);
    assert_text(r, STX_REPLY_STATUS, "OK");
    stx_reply_free(r);

    /* An empty argument given as (NULL, 0). */
    char hkey[80];
    snprintf(hkey, sizeof hkey, "%s:h", key);
    const char *argv2[] = {"HSET", hkey, NULL, "v"};
    const size_t lens2[] = {4, strlen(hkey), 0, 1};
    cr_assert_eq(stx_client_call(c, 4, argv2, lens2, &r), STX_OK);
    cr_assert_eq(stx_reply_integer(r), 1);
    stx_reply_free(r);

    r = call(c, (const char *[]){"GET", key, NULL});
    size_t len = 0;
    const char *s = stx_reply_string(r, &len);
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_STRING);
    cr_assert_eq(len, sizeof val);
    cr_assert_eq(memcmp(s, val, sizeof val), 0);
    cr_assert_eq(s[len], '\0');
    stx_reply_free(r);

    r = call(c, (const char *[]){"HGETALL", hkey, NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_ARRAY);
    cr_assert_eq(stx_reply_count(r), 2);
    assert_text(stx_reply_at(r, 0), STX_REPLY_STRING, "");
    assert_text(stx_reply_at(r, 1), STX_REPLY_STRING, "v");
    cr_assert_null(stx_reply_at(r, 2));
    stx_reply_free(r);
    stx_client_free(c);
}

Test(command, nested_arrays)
{
    stx_client *c = test_client(&R);
    char s[64];
    test_unique("s", s, sizeof s);
    stx_reply_free(call(c, (const char *[]){"XADD", s, "1-1", "f", "v", NULL}));
    stx_reply_free(call(c, (const char *[]){"XADD", s, "2-1", "g", "w", NULL}));
    stx_reply *r = call(c, (const char *[]){"XRANGE", s, "-", "+", NULL});
    cr_assert_eq(stx_reply_count(r), 2);
    const stx_reply *e = stx_reply_at(r, 1);
    cr_assert_eq(stx_reply_type_of(e), STX_REPLY_ARRAY);
    cr_assert_eq(stx_reply_count(e), 2);
    assert_text(stx_reply_at(e, 0), STX_REPLY_STRING, "2-1");
    const stx_reply *f = stx_reply_at(e, 1);
    cr_assert_eq(stx_reply_count(f), 2);
    assert_text(stx_reply_at(f, 0), STX_REPLY_STRING, "g");
    assert_text(stx_reply_at(f, 1), STX_REPLY_STRING, "w");
    stx_reply_free(r);

    r = call(c, (const char *[]){"XRANGE", s, "5", "+", NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_ARRAY);
    cr_assert_eq(stx_reply_count(r), 0);
    stx_reply_free(r);
    stx_client_free(c);
}

Test(command, error_reply_is_a_reply)
{
    stx_client *c = test_client(&R);
    char key[64];
    test_unique("t", key, sizeof key);
    stx_reply *r = call(c, (const char *[]){"NOSUCHCOMMAND", "x", NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_ERROR);
    size_t len;
    const char *s = stx_reply_string(r, &len);
    cr_assert(strncmp(s, "ERR unknown command", 19) == 0, "%s", s);
    cr_assert_eq(len, strlen(s));
    stx_reply_free(r);
    cr_assert_str_eq(stx_client_errmsg(c), "");

    stx_reply_free(call(c, (const char *[]){"SET", key, "x", NULL}));
    r = call(c, (const char *[]){"LPUSH", key, "y", NULL});
    cr_assert_eq(stx_reply_type_of(r), STX_REPLY_ERROR);
    cr_assert(strncmp(stx_reply_string(r, NULL), "WRONGTYPE ", 10) == 0);
    stx_reply_free(r);

    /* The connection is still in step after an error reply. */
    r = call(c, (const char *[]){"GET", key, NULL});
    assert_text(r, STX_REPLY_STRING, "x");
    stx_reply_free(r);
    stx_client_free(c);
}

Test(command, bad_arguments)
{
    stx_client *c = test_client(&R);
    const char *argv[] = {"PING", NULL};
    stx_reply *r = (stx_reply *)argv; /* must be reset to NULL */
    cr_assert_eq(stx_client_call(NULL, 1, argv, NULL, &r), STX_EINVAL);
    cr_assert_null(r);
    cr_assert_eq(stx_client_call(c, 1, argv, NULL, NULL), STX_EINVAL);
    cr_assert_eq(stx_client_call(c, 1, NULL, NULL, &r), STX_EINVAL);
    cr_assert_eq(stx_client_call(c, 0, argv, NULL, &r), STX_EINVAL);
    cr_assert_str_eq(stx_client_errmsg(c), "call: no command");
    cr_assert_eq(stx_client_call(c, 2, argv, NULL, &r), STX_EINVAL);
    cr_assert_str_eq(stx_client_errmsg(c), "call: argument 1 is NULL");
    cr_assert_null(r);

    /* The accessors accept NULL. */
    stx_reply_free(NULL);
    cr_assert_eq(stx_reply_type_of(NULL), STX_REPLY_NIL);
    cr_assert_null(stx_reply_string(NULL, NULL));
    cr_assert_eq(stx_reply_integer(NULL), 0);
    cr_assert_eq(stx_reply_count(NULL), 0);
    cr_assert_null(stx_reply_at(NULL, 0));

    /* Still usable. */
    r = call(c, (const char *[]){"PING", NULL});
    assert_text(r, STX_REPLY_STATUS, "PONG");
    stx_reply_free(r);
    stx_client_free(c);
}

Test(command, lost_connection_then_reconnect)
{
    stx_client *c = test_client(&R);
    const char *ping[] = {"PING"};
    test_redis_kill(&R);
    stx_reply *r = NULL;
    cr_assert_eq(stx_client_call(c, 1, ping, NULL, &r), STX_ECONN);
    cr_assert_null(r);
    cr_assert(strncmp(stx_client_errmsg(c), "call: ", 6) == 0, "%s", stx_client_errmsg(c));
    int rc = stx_client_call(c, 1, ping, NULL, &r);
    cr_assert_eq(rc, STX_ECONN, "down: %d", rc);
    cr_assert(strstr(stx_client_errmsg(c), "reconnect") != NULL, "%s", stx_client_errmsg(c));
    test_redis_restart(&R);
    cr_assert_eq(stx_client_call(c, 1, ping, NULL, &r), STX_OK, "%s", stx_client_errmsg(c));
    assert_text(r, STX_REPLY_STATUS, "PONG");
    stx_reply_free(r);
    stx_client_free(c);
}
