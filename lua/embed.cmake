# Turns lua/NAME.lua into C strings: const char stx_lua_NAME[] in OUT.
string(REPLACE "," ";" SCRIPTS "${SCRIPTS}")
set(code "/* Generated from the files in lua/ by lua/embed.cmake; do not edit. */\n")
foreach(s ${SCRIPTS})
  file(READ ${DIR}/${s}.lua hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND code "extern const char stx_lua_${s}[];\nconst char stx_lua_${s}[] = {${bytes}0x00};\n")
endforeach()
file(WRITE ${OUT} "${code}")
