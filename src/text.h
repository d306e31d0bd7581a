/* Bytes shown in messages. */
#ifndef STX_TEXT_H
#define STX_TEXT_H

#include <stddef.h>

/* Write bytes as printable text into out (cap bytes, always NUL-terminated
 * when cap > 0): printable ASCII as is, everything else and the two bytes
 * that would make the text ambiguous inside '...' quotes (backslash and
 * the quote) as \xNN; cut with "..." when it does not fit.  Names, keys and
 * ids are binary-safe, and messages quote them with this one function. */
void stx_printable(const void *bytes, size_t len, char *out, size_t cap);

#endif
