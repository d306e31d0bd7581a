/* A fault-injecting TCP proxy for the tests: it sits between a client (the
 * processor) and redis-server on loopback and delays, holds, cuts or
 * blackholes the traffic on command.  It runs in a forked child process, so
 * it keeps running while the test forks, kills and pauses processors; the
 * test drives it through the functions below (each one a round trip on a
 * control socket).  Rules name commands by name (case-insensitive) and
 * optionally by one argument; faults refer to rules.  See proxy.c. */
#ifndef STX_TEST_PROXY_H
#define STX_TEST_PROXY_H

#include <stdint.h>
#include <sys/types.h>

typedef struct proxy {
    pid_t pid;          /* 0 when not running */
    int ctl;            /* control socket */
    int port;           /* where clients connect */
    int nrules;
    char url[64];       /* "redis://127.0.0.1:PORT" */
} proxy;

/* Directions, for delays and byte cuts. */
#define PROXY_UP 1      /* client -> server */
#define PROXY_DOWN 2    /* server -> client */

/* Counters (proxy_stat). */
enum {
    PROXY_ACCEPTED,     /* connections accepted */
    PROXY_OPEN,         /* connections open now */
    PROXY_CUTS,         /* connections cut (rule or byte count) */
    PROXY_HOLDS,        /* holds that caught a command */
    PROXY_RELEASES,     /* holds released (explicitly or by the release rule) */
    PROXY_HELD,         /* 1 while a command is held */
    PROXY_STAT_COUNT
};

/* Start a proxy to 127.0.0.1:upstream_port on a free loopback port (asserts). */
void proxy_start(proxy *px, int upstream_port);
/* Stop it (closes every connection; held data is dropped).  NULL-safe. */
void proxy_stop(proxy *px);

/* A new rule: commands named name (NULL or "": any command; "!NAME": any
 * command but NAME), and when argi > 0 (1..3) whose argument argi equals
 * arg.  Returns its id. */
int proxy_rule(proxy *px, const char *name, int argi, const char *arg);
/* Commands that matched the rule so far. */
long long proxy_count(proxy *px, int rule);
long long proxy_stat(proxy *px, int which);
/* Wait until the rule matched at least k times: 0, or -1 after timeout_ms. */
int proxy_wait_count(proxy *px, int rule, long long k, long timeout_ms);

/* Forward each command (PROXY_UP) or each chunk read (PROXY_DOWN) lo..hi ms
 * after it arrived (random in between, from seed); order is kept.
 * lo = hi = 0 turns it off. */
void proxy_delay(proxy *px, int dirs, long lo_ms, long hi_ms, uint64_t seed);
/* Hold the next command matching rule, and everything after it on that
 * connection, until proxy_release() or, when release_rule >= 0,
 * release_delay_ms after another connection sends a command matching
 * release_rule (the trigger).  The trigger goes through; the triggering
 * connection's later commands wait until 50 ms after the release, so the
 * held commands run between the trigger and whatever the other connection
 * does next (e.g. between a reconnect's read of the meta hash and its next
 * step).  Held commands still reach Redis after their client closed the
 * connection (as bytes already sent would). */
void proxy_hold(proxy *px, int rule, int release_rule, long release_delay_ms);
void proxy_release(proxy *px);
/* Cut the connection (close both sides) when the k-th command matching rule
 * arrives: before forwarding it (after = 0), or after Redis received it and
 * before its reply reaches the client (after = 1).  One shot. */
void proxy_cut(proxy *px, int rule, long k, int after);
/* Cut the connection that carries the n-th byte forwarded in direction dir
 * from now on, right after that byte.  One shot. */
void proxy_cut_bytes(proxy *px, int dir, long long n);
/* Stop (1) or resume (0) forwarding in both directions; the sockets stay
 * open and what arrives meanwhile is forwarded on resume. */
void proxy_blackhole(proxy *px, int on);
/* Every fault off: no delay, holds released, cuts disarmed, no blackhole. */
void proxy_clear(proxy *px);

#endif
