/* A fault-injecting TCP proxy between a client and redis-server (see proxy.h).
 *
 * Design
 * - The proxy is a forked child of the test process running one poll() loop:
 *   no threads, and nothing the test does to its processor children (fork,
 *   SIGKILL, SIGSTOP) touches it.  The test talks to it over a SOCK_SEQPACKET
 *   socketpair, one fixed-size request and one reply per call.  When that
 *   socket closes (or the test process dies: PR_SET_PDEATHSIG) it exits.
 * - Each accepted connection gets its own upstream connection.  A connection
 *   has two flows, UP (client -> server) and DOWN (server -> client).  A flow
 *   is a byte buffer plus a FIFO of units: a unit is one RESP command on UP
 *   (arrays of bulk strings; an inline command is one line; bytes that do not
 *   parse switch the connection to raw chunks, forwarded unchanged) and one
 *   read() chunk on DOWN.  Every unit carries the time it may leave (delay)
 *   and a held flag; only the front unit may leave, so order is always kept
 *   and a held unit holds everything behind it.
 * - Rules are matched when a command is parsed: the counters, the hold, the
 *   hold's release trigger and the command cuts are decided there, once.
 * - A cut closes the client side and discards what was not forwarded, then
 *   half-closes the upstream side and reads it until EOF: Redis sees a clean
 *   EOF after the commands it already received, so a command forwarded
 *   before the cut ("after" mode) does execute, and no RST can throw away
 *   bytes Redis has not read yet.  A client that closes with held or delayed
 *   commands left is treated the same way once they have been forwarded: as
 *   TCP would, the bytes it sent still reach the server.
 * - Everything is bounded: MAX_CONN connections (more wait in the listen
 *   backlog), BUF_MAX bytes and QMAX units per flow (a full flow is not read
 *   from, which pushes back on the sender).
 */
#define _GNU_SOURCE /* accept4 */
#include "proxy.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_CONN 64
#define MAX_RULES 32
#define BUF_MIN (64u << 10)
#define BUF_MAX (8u << 20)
#define QMAX 1024
#define DRAIN_MS 2000
#define MAX_ARGS 4
#define GATE_MS 50              /* a gated connection goes on this long after the release */

enum { OP_RULE, OP_COUNT, OP_STAT, OP_DELAY, OP_HOLD, OP_RELEASE, OP_CUT, OP_CUT_BYTES,
       OP_BLACKHOLE, OP_CLEAR, OP_QUIT };

struct req {
    int op, a, b;
    long long x, y;
    uint64_t seed;
    char name[64], arg[128];
};

typedef struct unit {
    size_t len;
    int64_t due;                /* may leave at this time (ms) */
    unsigned char held, cut_after;
} unit;

typedef struct flow {
    char *buf;
    size_t cap, start, parsed, end; /* [start,parsed) are units, [parsed,end) unparsed */
    unit q[QMAX];
    size_t qhead, qn;
    int blocked;                /* the last send would block: wait for POLLOUT */
} flow;

typedef struct conn {
    int used, id, cfd, ufd;
    int raw;                    /* input that does not parse: forward chunks unchanged */
    int client_gone;            /* client closed: forward what is queued, then drain */
    int server_gone;            /* server closed: deliver what is queued, then close */
    int draining;               /* upstream half-closed: read it to EOF, discard */
    int64_t drain_until;
    flow up, down;
} conn;

typedef struct rule {
    char name[64], arg[128];
    size_t arglen;
    int argi;
    long long hits;
} match_rule;

struct cmd {
    int argc;
    const char *a[MAX_ARGS];
    size_t l[MAX_ARGS];
};

static struct {
    int ctl, lfd, upstream_port, next_id, nrules;
    conn *c;                    /* MAX_CONN */
    match_rule r[MAX_RULES];
    int64_t now;
    int delay_dirs;
    long delay_lo, delay_hi;
    uint64_t rng;
    int hold_rule, release_rule, held_conn; /* held_conn: id or -1 */
    long release_delay;
    int64_t release_at;         /* 0: no release scheduled */
    int gate_conn;              /* id of the connection that triggered the release, or -1 */
    int64_t gate_at;            /* 0: its gate opens at no set time yet */
    int cut_rule, cut_after;
    long cut_k, cut_seen;
    int cutb_dir;
    long long cutb_left;        /* -1: off */
    int blackhole;
    long long stat[PROXY_STAT_COUNT];
} P;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long delay_for(int dir)
{
    if (!(P.delay_dirs & dir) || P.delay_hi <= 0) return 0;
    P.rng ^= P.rng << 13;
    P.rng ^= P.rng >> 7;
    P.rng ^= P.rng << 17;
    return P.delay_lo + (long)(P.rng % (uint64_t)(P.delay_hi - P.delay_lo + 1));
}

/* ---- RESP parsing ------------------------------------------------------- */

/* "<tag><int>\r\n" at b[*i]: 1 and *out, 0 when incomplete, -1 malformed. */
static int line_int(const char *b, size_t n, size_t *i, char tag, long long *out)
{
    size_t k = *i;
    if (k >= n) return 0;
    if (b[k++] != tag) return -1;
    long long v = 0;
    int digits = 0;
    for (; k < n && b[k] >= '0' && b[k] <= '9'; k++, digits++) {
        if (digits > 12) return -1;
        v = v * 10 + (b[k] - '0');
    }
    if (k + 1 >= n) return 0;
    if (!digits || b[k] != '\r' || b[k + 1] != '\n') return -1;
    *i = k + 2;
    *out = v;
    return 1;
}

/* Length of the command at the front of b (its first args in *c), 0 when
 * incomplete, -1 when it does not parse.  Inline commands have argc 0. */
static long resp_command(const char *b, size_t n, struct cmd *c)
{
    c->argc = 0;
    if (b[0] != '*') {
        const char *nl = memchr(b, '\n', n);
        return nl ? nl - b + 1 : 0;
    }
    size_t i = 0;
    long long argc, len;
    int r = line_int(b, n, &i, '*', &argc);
    if (r <= 0) return r;
    if (argc > (1 << 20)) return -1;
    for (long long k = 0; k < argc; k++) {
        if ((r = line_int(b, n, &i, '$', &len)) <= 0) return r;
        if (len > (512LL << 20)) return -1;
        if (n - i < (size_t)len + 2) return 0;
        if (b[i + len] != '\r' || b[i + len + 1] != '\n') return -1;
        if (k < MAX_ARGS) {
            c->a[k] = b + i;
            c->l[k] = (size_t)len;
        }
        i += (size_t)len + 2;
    }
    c->argc = argc < MAX_ARGS ? (int)argc : MAX_ARGS;
    return (long)i;
}

static int rule_match(const match_rule *r, const struct cmd *c)
{
    if (c->argc == 0) return 0;
    const char *name = r->name + (r->name[0] == '!');
    size_t nl = strlen(name);
    int same = nl == c->l[0] && strncasecmp(name, c->a[0], nl) == 0;
    if (nl && same == (r->name[0] == '!')) return 0;
    if (r->argi > 0 && (r->argi >= c->argc || c->l[r->argi] != r->arglen ||
                        memcmp(c->a[r->argi], r->arg, r->arglen) != 0))
        return 0;
    return 1;
}

/* ---- connections -------------------------------------------------------- */

static void flow_clear(flow *f)
{
    f->start = f->parsed = f->end = 0;
    f->qhead = f->qn = 0;
    f->blocked = 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void conn_free(conn *k)
{
    close_fd(&k->cfd);
    close_fd(&k->ufd);
    free(k->up.buf);
    free(k->down.buf);
    if (P.held_conn == k->id) {
        P.held_conn = -1;
        P.release_at = 0;
        if (P.gate_conn >= 0) P.gate_at = P.now;
    }
    if (P.gate_conn == k->id) {
        P.gate_conn = -1;
        P.gate_at = 0;
    }
    memset(k, 0, sizeof *k);
    P.stat[PROXY_OPEN]--;
}

/* Stop talking to the client; let Redis read what it got, then EOF. */
static void start_drain(conn *k)
{
    close_fd(&k->cfd);
    flow_clear(&k->up);
    flow_clear(&k->down);
    if (k->ufd >= 0 && !k->draining) {
        shutdown(k->ufd, SHUT_WR);
        k->draining = 1;
        k->drain_until = P.now + DRAIN_MS;
    }
}

static void cut(conn *k)
{
    P.stat[PROXY_CUTS]++;
    start_drain(k);
}

static unit *push_unit(flow *f, size_t len, int dir)
{
    unit *u = &f->q[(f->qhead + f->qn++) % QMAX];
    u->len = len;
    u->due = P.now + delay_for(dir);
    u->held = u->cut_after = 0;
    f->parsed += len;
    return u;
}

static void open_gate(void);

/* Rules for one parsed command.  Returns -1 when the connection was cut. */
static int on_command(conn *k, unit *u, const struct cmd *c)
{
    unsigned long mask = 0;
    for (int i = 0; i < P.nrules; i++)
        if (rule_match(&P.r[i], c)) {
            P.r[i].hits++;
            mask |= 1ul << i;
        }
    if (P.gate_conn == k->id) {
        u->held = 1;            /* after the trigger: wait until the held commands went */
    } else if (P.hold_rule >= 0 && (mask >> P.hold_rule & 1) && P.held_conn < 0) {
        u->held = 1;
        P.held_conn = k->id;
        P.hold_rule = -1;
        P.stat[PROXY_HOLDS]++;
    } else if (P.held_conn >= 0 && P.held_conn != k->id && P.release_rule >= 0 &&
               (mask >> P.release_rule & 1) && !P.release_at) {
        if (P.gate_conn >= 0) open_gate(); /* an earlier trigger's gate: open it now */
        P.release_at = P.now + P.release_delay;
        P.gate_conn = k->id;
    }
    if (P.cut_rule >= 0 && (mask >> P.cut_rule & 1) && ++P.cut_seen == P.cut_k) {
        P.cut_rule = -1;
        if (P.cut_after) {
            u->cut_after = 1;
        } else {
            cut(k);
            return -1;
        }
    }
    return 0;
}

/* Whether flow_room() can find room (without moving anything). */
static int flow_has_room(const flow *f)
{
    return f->qn < QMAX && (f->end < f->cap || f->start > 0 || f->cap < BUF_MAX);
}

/* Room to read into f (compacting or growing it); 0 when full. */
static size_t flow_room(flow *f)
{
    if (f->qn == QMAX) return 0;
    if (f->end == f->cap && f->start > 0) {
        memmove(f->buf, f->buf + f->start, f->end - f->start);
        f->parsed -= f->start;
        f->end -= f->start;
        f->start = 0;
    }
    if (f->end == f->cap && f->cap < BUF_MAX) {
        size_t cap = f->cap ? f->cap * 2 : BUF_MIN;
        char *b = realloc(f->buf, cap);
        if (!b) return 0;
        f->buf = b;
        f->cap = cap;
    }
    return f->cap - f->end;
}

static void parse_up(conn *k)
{
    flow *f = &k->up;
    while (!k->raw && f->qn < QMAX && f->parsed < f->end) {
        struct cmd c;
        long n = resp_command(f->buf + f->parsed, f->end - f->parsed, &c);
        /* A command larger than the whole buffer cannot be parsed here. */
        if (n == 0 && f->parsed == f->start && f->end - f->start == BUF_MAX) n = -1;
        if (n == 0) return;
        if (n < 0) {
            k->raw = 1;             /* not ours to understand: pass it on as is */
            break;
        }
        if (on_command(k, push_unit(f, (size_t)n, PROXY_UP), &c) < 0) return;
    }
    if (k->raw && f->parsed < f->end && f->qn < QMAX) push_unit(f, f->end - f->parsed, PROXY_UP);
}

/* Read from the client (up) or the server (down). */
static void on_readable(conn *k, int up)
{
    int fd = up ? k->cfd : k->ufd;
    flow *f = up ? &k->up : &k->down;
    char sink[16384];
    int discard = !up && (k->draining || k->cfd < 0);
    size_t room = discard ? sizeof sink : flow_room(f);
    if (!room) return;
    ssize_t n = recv(fd, discard ? sink : f->buf + f->end, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        if (up) {
            /* Queued commands still go out, then Redis gets its EOF. */
            close_fd(&k->cfd);
            k->client_gone = 1;
            flow_clear(&k->down);
        } else if (k->draining || k->cfd < 0) {
            close_fd(&k->ufd);
        } else {
            close_fd(&k->ufd);
            k->server_gone = 1;
            flow_clear(&k->up);
        }
        return;
    }
    if (discard) return;
    f->end += (size_t)n;
    if (up) parse_up(k);
    else push_unit(f, (size_t)n, PROXY_DOWN);
}

/* Send what may leave from the front of f to fd; 0, or -1 when k was cut. */
static int forward(conn *k, flow *f, int fd, int dir)
{
    while (f->qn && !P.blackhole) {
        unit *u = &f->q[f->qhead];
        if (u->held || u->due > P.now) break;
        size_t n = u->len;
        int counted = P.cutb_left >= 0 && P.cutb_dir == dir;
        if (counted && (long long)n > P.cutb_left) n = (size_t)P.cutb_left;
        ssize_t w = send(fd, f->buf + f->start, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                f->blocked = 1;
                return 0;
            }
            start_drain(k);         /* the peer is gone (not a cut of ours) */
            return -1;
        }
        f->blocked = 0;
        f->start += (size_t)w;
        u->len -= (size_t)w;
        if (counted && (P.cutb_left -= w) == 0) {
            P.cutb_left = -1;
            cut(k);
            return -1;
        }
        if (u->len == 0) {
            int after = u->cut_after;
            f->qhead = (f->qhead + 1) % QMAX;
            f->qn--;
            if (after) {
                cut(k);
                return -1;
            }
        }
    }
    if (f->start == f->end) f->start = f->parsed = f->end = 0;
    return 0;
}

/* Move conn k on: forward, propagate closes, end drains. */
static void pump(conn *k)
{
    if (k->up.parsed < k->up.end) parse_up(k); /* the queue had no room at the last read */
    if (k->ufd >= 0 && !k->draining && forward(k, &k->up, k->ufd, PROXY_UP) < 0) return;
    if (k->client_gone && !k->draining && k->up.qn == 0) start_drain(k);
    if (k->cfd >= 0 && forward(k, &k->down, k->cfd, PROXY_DOWN) < 0) return;
    if (k->server_gone && k->down.qn == 0) close_fd(&k->cfd);
    if (k->draining && P.now >= k->drain_until) close_fd(&k->ufd);
    if (k->cfd < 0 && k->ufd < 0) conn_free(k);
}

static void unhold(int id)
{
    for (int i = 0; i < MAX_CONN; i++)
        for (size_t j = 0; P.c[i].used && P.c[i].id == id && j < P.c[i].up.qn; j++)
            P.c[i].up.q[(P.c[i].up.qhead + j) % QMAX].held = 0;
}

/* Forward the held commands now, the gated connection's GATE_MS later. */
static void release(void)
{
    if (P.held_conn >= 0) {
        unhold(P.held_conn);
        P.stat[PROXY_RELEASES]++;
    }
    P.held_conn = -1;
    P.release_at = 0;
    if (P.gate_conn >= 0) P.gate_at = P.now + GATE_MS;
}

static void open_gate(void)
{
    unhold(P.gate_conn);
    P.gate_conn = -1;
    P.gate_at = 0;
}

static void on_accept(void)
{
    int i = 0;
    while (i < MAX_CONN && P.c[i].used) i++;
    if (i == MAX_CONN) return;
    int cfd = accept4(P.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return;
    P.stat[PROXY_ACCEPTED]++;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)P.upstream_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ufd < 0 || connect(ufd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (ufd >= 0) close(ufd);
        close(cfd);             /* the client sees what it would see without us */
        return;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(ufd, F_SETFL, O_NONBLOCK);
    conn *k = &P.c[i];
    memset(k, 0, sizeof *k);
    k->used = 1;
    k->id = ++P.next_id;
    k->cfd = cfd;
    k->ufd = ufd;
    P.stat[PROXY_OPEN]++;
}

/* One control request; returns 0 to go on, -1 to exit. */
static int on_control(void)
{
    struct req q;
    ssize_t n = recv(P.ctl, &q, sizeof q, 0);
    if (n < 0 && errno == EINTR) return 0;
    if (n != (ssize_t)sizeof q || q.op == OP_QUIT) return -1;
    long long v = 0;
    switch (q.op) {
    case OP_RULE:
        if (q.a < 0 || q.a >= MAX_RULES || q.b < 0 || q.b >= MAX_ARGS) {
            v = -1;
            break;
        }
        memcpy(P.r[q.a].name, q.name, sizeof q.name);
        memcpy(P.r[q.a].arg, q.arg, sizeof q.arg);
        P.r[q.a].name[sizeof q.name - 1] = P.r[q.a].arg[sizeof q.arg - 1] = '\0';
        P.r[q.a].arglen = strlen(P.r[q.a].arg);
        P.r[q.a].argi = q.b;
        P.r[q.a].hits = 0;
        if (q.a >= P.nrules) P.nrules = q.a + 1;
        break;
    case OP_COUNT: v = q.a >= 0 && q.a < P.nrules ? P.r[q.a].hits : -1; break;
    case OP_STAT:
        P.stat[PROXY_HELD] = P.held_conn >= 0;
        v = q.a >= 0 && q.a < PROXY_STAT_COUNT ? P.stat[q.a] : -1;
        break;
    case OP_DELAY:
        P.delay_dirs = q.a;
        P.delay_lo = (long)q.x;
        P.delay_hi = (long)q.y;
        P.rng = q.seed ? q.seed : 0x9e3779b97f4a7c15ull;
        break;
    case OP_HOLD:
        P.hold_rule = q.a;
        P.release_rule = q.b;
        P.release_delay = (long)q.x;
        break;
    case OP_RELEASE: release(); break;
    case OP_CUT:
        P.cut_rule = q.a;
        P.cut_after = q.b;
        P.cut_k = (long)q.x;
        P.cut_seen = 0;
        break;
    case OP_CUT_BYTES:
        P.cutb_dir = q.a;
        P.cutb_left = q.x > 0 ? q.x : -1;
        break;
    case OP_BLACKHOLE: P.blackhole = q.a; break;
    case OP_CLEAR:
        P.delay_dirs = 0;
        P.hold_rule = P.cut_rule = -1;
        P.cutb_left = -1;
        P.blackhole = 0;
        release();
        open_gate();
        break;
    default: v = -1;
    }
    return send(P.ctl, &v, sizeof v, MSG_NOSIGNAL) == (ssize_t)sizeof v ? 0 : -1;
}

static int next_timeout(void)
{
    int64_t t = P.now + 100;
    if (P.release_at && P.release_at < t) t = P.release_at;
    if (P.gate_at && P.gate_at < t) t = P.gate_at;
    for (int i = 0; i < MAX_CONN; i++) {
        conn *k = &P.c[i];
        if (!k->used) continue;
        flow *fs[2] = {&k->up, &k->down};
        /* Units that wait for a release, a blackhole or POLLOUT set no timer. */
        for (int j = 0; j < 2 && !P.blackhole; j++)
            if (fs[j]->qn && !fs[j]->blocked && !fs[j]->q[fs[j]->qhead].held &&
                fs[j]->q[fs[j]->qhead].due < t)
                t = fs[j]->q[fs[j]->qhead].due;
        if (k->draining && k->drain_until < t) t = k->drain_until;
    }
    return t <= P.now ? 0 : (int)(t - P.now);
}

static void proxy_main(void)
{
    struct pollfd pf[2 + 2 * MAX_CONN];
    int who[2 + 2 * MAX_CONN];          /* conn index * 2 + (1 for the upstream side) */
    for (;;) {
        int n = 0, open = 0;
        pf[n++] = (struct pollfd){P.ctl, POLLIN, 0};
        for (int i = 0; i < MAX_CONN; i++) open += P.c[i].used;
        if (open < MAX_CONN) pf[n++] = (struct pollfd){P.lfd, POLLIN, 0};
        else pf[n++] = (struct pollfd){-1, 0, 0};
        for (int i = 0; i < MAX_CONN; i++) {
            conn *k = &P.c[i];
            if (!k->used) continue;
            if (k->cfd >= 0) {
                short ev = (short)((flow_has_room(&k->up) ? POLLIN : 0) |
                                   (k->down.blocked ? POLLOUT : 0));
                who[n] = 2 * i;
                pf[n++] = (struct pollfd){k->cfd, ev, 0};
            }
            if (k->ufd >= 0) {
                short ev = (short)((flow_has_room(&k->down) || k->draining || k->cfd < 0 ? POLLIN : 0) |
                                   (k->up.blocked ? POLLOUT : 0));
                who[n] = 2 * i + 1;
                pf[n++] = (struct pollfd){k->ufd, ev, 0};
            }
        }
        P.now = mono_ms();
        if (poll(pf, (nfds_t)n, next_timeout()) < 0 && errno != EINTR) return;
        P.now = mono_ms();
        if ((pf[0].revents & (POLLIN | POLLHUP | POLLERR)) && on_control() < 0) return;
        if (pf[1].revents & POLLIN) on_accept();
        for (int j = 2; j < n; j++) {
            conn *k = &P.c[who[j] / 2];
            int up_side = who[j] % 2;
            int fd = up_side ? k->ufd : k->cfd;
            /* Skip a descriptor closed (or reused) by an earlier event. */
            if (!k->used || fd != pf[j].fd || !(pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            on_readable(k, !up_side);
        }
        if (P.release_at && P.now >= P.release_at) release();
        if (P.gate_at && P.now >= P.gate_at) open_gate();
        for (int i = 0; i < MAX_CONN; i++)
            if (P.c[i].used) pump(&P.c[i]);
    }
}

/* ---- the test's side ---------------------------------------------------- */

static long long call(proxy *px, struct req *q)
{
    cr_assert(px->pid > 0, "proxy not running");
    cr_assert_eq(send(px->ctl, q, sizeof *q, MSG_NOSIGNAL), (ssize_t)sizeof *q,
                 "proxy control: %s", strerror(errno));
    long long v;
    cr_assert_eq(recv(px->ctl, &v, sizeof v, 0), (ssize_t)sizeof v, "proxy control: no reply");
    return v;
}

void proxy_start(proxy *px, int upstream_port)
{
    memset(px, 0, sizeof *px);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(lfd, 128), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    px->port = ntohs(a.sin_port);
    snprintf(px->url, sizeof px->url, "redis://127.0.0.1:%d", px->port);

    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        close(sv[0]);
        memset(&P, 0, sizeof P);
        P.ctl = sv[1];
        P.lfd = lfd;
        P.upstream_port = upstream_port;
        P.hold_rule = P.release_rule = P.cut_rule = P.held_conn = P.gate_conn = -1;
        P.cutb_left = -1;
        P.c = calloc(MAX_CONN, sizeof *P.c);
        if (P.c) proxy_main();
        _exit(0);               /* not exit(): the test's atexit handlers are not ours */
    }
    close(sv[1]);
    close(lfd);
    px->ctl = sv[0];
    px->pid = pid;
}

void proxy_stop(proxy *px)
{
    if (!px || px->pid <= 0) return;
    struct req q = {.op = OP_QUIT};
    (void)send(px->ctl, &q, sizeof q, MSG_NOSIGNAL);
    close(px->ctl);
    while (waitpid(px->pid, NULL, 0) < 0 && errno == EINTR) {}
    px->pid = 0;
}

int proxy_rule(proxy *px, const char *name, int argi, const char *arg)
{
    struct req q = {.op = OP_RULE, .a = px->nrules, .b = argi};
    cr_assert(px->nrules < MAX_RULES && argi >= 0 && argi < MAX_ARGS, "proxy_rule: bad rule");
    snprintf(q.name, sizeof q.name, "%s", name ? name : "");
    snprintf(q.arg, sizeof q.arg, "%s", arg ? arg : "");
    cr_assert_eq(call(px, &q), 0);
    return px->nrules++;
}

long long proxy_count(proxy *px, int rule)
{
    struct req q = {.op = OP_COUNT, .a = rule};
    return call(px, &q);
}

long long proxy_stat(proxy *px, int which)
{
    struct req q = {.op = OP_STAT, .a = which};
    return call(px, &q);
}

int proxy_wait_count(proxy *px, int rule, long long k, long timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    while (proxy_count(px, rule) < k) {
        if (mono_ms() >= deadline) return -1;
        struct timespec ts = {0, 2000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void proxy_delay(proxy *px, int dirs, long lo_ms, long hi_ms, uint64_t seed)
{
    struct req q = {.op = OP_DELAY, .a = dirs, .x = lo_ms, .y = hi_ms < lo_ms ? lo_ms : hi_ms,
                    .seed = seed};
    call(px, &q);
}

void proxy_hold(proxy *px, int rule, int release_rule, long release_delay_ms)
{
    struct req q = {.op = OP_HOLD, .a = rule, .b = release_rule, .x = release_delay_ms};
    call(px, &q);
}

void proxy_release(proxy *px)
{
    struct req q = {.op = OP_RELEASE};
    call(px, &q);
}

void proxy_cut(proxy *px, int rule, long k, int after)
{
    struct req q = {.op = OP_CUT, .a = rule, .b = after, .x = k};
    call(px, &q);
}

void proxy_cut_bytes(proxy *px, int dir, long long n)
{
    struct req q = {.op = OP_CUT_BYTES, .a = dir, .x = n};
    call(px, &q);
}

void proxy_blackhole(proxy *px, int on)
{
    struct req q = {.op = OP_BLACKHOLE, .a = on};
    call(px, &q);
}

void proxy_clear(proxy *px)
{
    struct req q = {.op = OP_CLEAR};
    call(px, &q);
}
