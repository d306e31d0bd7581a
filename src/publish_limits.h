/* Limits shared by the C side and the Lua scripts that must agree. */
#ifndef STX_PUBLISH_LIMITS_H
#define STX_PUBLISH_LIMITS_H

/* Field pairs of one publish: commit.lua passes them to XADD with unpack(),
 * which Lua's C stack bounds (LUAI_MAXCSTACK 8000 values). */
#define STX_PUBLISH_MAX_PAIRS 3000

#endif
