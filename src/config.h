/* The processor's settings, as checked by stx_config_set(). */
#ifndef STX_CONFIG_H
#define STX_CONFIG_H

#include <stddef.h>

#include "streamtx.h"
#include "url.h"

struct stx_config {
    stx_url url;                /* host, port, db, user, password */
    char *stream;
    char *group;
    char *consumer;             /* NULL: derived from the host name */
    char *group_start_id;       /* where a new group starts: "0", "$" or an id */
    char *snapshot_dir;         /* NULL: no snapshot */
    int snapshot_sync;          /* see stx_snapshot_open() */
    long snapshot_map_size_mb;
    long connect_timeout_ms;
    long command_timeout_ms;
    long block_ms;
    long batch_size;
    long batch_delay_ms;        /* wait after a partial batch so more can gather */
    long pipeline;              /* 1: send the next read with each commit */
    long overlap;               /* 1: handle the next batch while the commit runs */
    long max_key_bytes;
    long max_value_bytes;
    long max_fields;
    long max_batch_bytes;       /* entries read and changes staged by one batch */
    int log_level;              /* lowest level the default logger prints */
    long max_deliveries;        /* deliveries before an entry is dead-lettered */
    int retry_backoff;          /* 0 exponential (with jitter), 1 linear, 2 constant */
    long retry_base_ms;
    long retry_max_ms;
    long handler_warn_ms;       /* a handler call longer than this is reported */
    long stats_interval_ms;     /* heartbeat period (heartbeat.c); 0: none */
    long commit_wait_replicas;  /* replwait.c: WAIT for this many after each commit; 0: off */
    long commit_wait_timeout_ms;
    long lease_ttl_ms;          /* a member's partition leases (member.c) */
    int publish_mode;           /* 0 direct, 1 outbox: every publish through the outbox (relay.c) */
    long relay_batch;           /* outbox entries relayed per poll at most */
    long outbox_max;            /* outbox length at which the processor pauses reading */
    long outbox_warn_ms;        /* oldest unrelayed entry older than this is logged */
    char *client_name;          /* CLIENT SETNAME of the connection; NULL: "stx:CONSUMER" */
    stx_handler_fn handler;
    void *handler_data;
    stx_log_fn log;
    void *log_data;
    long state_schema_version;  /* 0: unversioned */
    stx_migrate_fn migrate;
    void *migrate_data;
    stx_history_fn history;     /* trimmed entries in recovery (history.c); NULL: none */
    void *history_data;
};

/* Deep copy of src into dst (dst uninitialised).  STX_OK or STX_ENOMEM. */
int stx_config_copy(struct stx_config *dst, const struct stx_config *src);
/* Free what a copy owns (not the struct itself). */
void stx_config_release(struct stx_config *conf);

#endif
