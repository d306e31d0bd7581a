/* The embedded Lua scripts: loaded with SCRIPT LOAD, run with EVALSHA,
 * loaded again when Redis answers NOSCRIPT (restart, failover, SCRIPT FLUSH). */
#ifndef STX_SCRIPTS_H
#define STX_SCRIPTS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "connection.h"

typedef struct stx_script {
    const char *name;
    const char *source;
    char sha[41];               /* "" until loaded */
} stx_script;

enum {
    STX_SCRIPT_START,
    STX_SCRIPT_RETAKE,
    STX_SCRIPT_READ,
    STX_SCRIPT_COMMIT,
    STX_SCRIPT_DLQ,
    STX_SCRIPT_REDRIVE,
    STX_SCRIPT_MIGRATE,
    STX_SCRIPT_PRODUCE,
    STX_SCRIPT_RESET,
    STX_SCRIPT_TRIM,
    STX_SCRIPT_PARTITIONS,
    STX_SCRIPT_LEASE,
    STX_SCRIPT_MEMBER,
    STX_SCRIPT_RELAY,
    STX_SCRIPT_HISTORY,
    STX_SCRIPT_COUNT
};

typedef struct stx_scripts {
    stx_script s[STX_SCRIPT_COUNT];
    unsigned long reloads;
} stx_scripts;

void stx_scripts_init(stx_scripts *sc);

/* A growable argument vector for one command; strings are copied. */
typedef struct stx_argv {
    const char **v;
    size_t *len;
    size_t n, cap;
    char **owned;               /* copies, freed by stx_argv_free */
    size_t n_owned, cap_owned;
    int failed;                 /* an allocation failed: the vector is unusable */
    char numkeys[24];
} stx_argv;

void stx_argv_init(stx_argv *a);
void stx_argv_reset(stx_argv *a);   /* keep the memory, drop the items */
void stx_argv_free(stx_argv *a);
/* Add bytes that outlive the command (not copied). */
void stx_argv_add_ref(stx_argv *a, const void *p, size_t len);
/* Add a copy. */
void stx_argv_add_copy(stx_argv *a, const void *p, size_t len);
void stx_argv_add_u64(stx_argv *a, unsigned long long v);

/* EVALSHA script with the given argv, which must hold, from index 0:
 * three free slots (filled here with EVALSHA, sha and numkeys), then
 * numkeys keys, then the arguments.  Loads the script on NOSCRIPT. */
int stx_script_run(stx_scripts *sc, stx_conn *c, int which, stx_argv *a, size_t numkeys,
                   redisReply **reply);
/* Append the EVALSHA to the pipeline (loading the script first if needed);
 * the caller reads the reply and handles NOSCRIPT. */
int stx_script_append(stx_scripts *sc, stx_conn *c, int which, stx_argv *a, size_t numkeys);
/* SCRIPT LOAD every script. */
int stx_scripts_load(stx_scripts *sc, stx_conn *c);

#endif
