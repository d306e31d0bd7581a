/* Bytes shown in messages (text.h). */
#include "text.h"

#include <string.h>

void stx_printable(const void *bytes, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = bytes;
    size_t o = 0;
    if (!cap) return;
    for (size_t i = 0; i < len; i++) {
        int plain = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '\'';
        if (o + (plain ? 1 : 4) + 4 > cap) { /* keep room for "..." and the NUL */
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain) {
            out[o++] = (char)s[i];
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[s[i] >> 4];
            out[o++] = hex[s[i] & 15];
        }
    }
    out[o] = '\0';
}
