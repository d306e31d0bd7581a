/* Limits shared by the C side and the Lua scripts, in one place so that
 * what the library accepts is what the scripts accept. */
#ifndef STX_SCRIPT_LIMITS_H
#define STX_SCRIPT_LIMITS_H

/* Field/value pairs of one XADD built by a script (a handler's publish,
 * with its envelope fields; one produced message).  The scripts pass the
 * pairs to XADD through unpack(), whose results live on Lua's C stack
 * (LUAI_MAXCSTACK, 8000 slots): 2 per pair plus the command, key, id and
 * options must fit.  commit.lua and produce.lua refuse more with BADARGS,
 * so the library refuses it first, where the caller can still react. */
#define STX_MAX_PUBLISH_PAIRS 3000

/* Values in one block of commit.lua's publishes (msgpack objects the script
 * unpacks into one table, through the same C stack): a block holds whole
 * publishes, so one of STX_MAX_PUBLISH_PAIRS (3 + 6000 values) must fit. */
#define STX_PUBLISH_BLOCK_VALUES 6100

#endif
