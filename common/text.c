/* SPDX-License-Identifier: MIT */
#include "text.h"

#include <stdio.h>
#include <string.h>

const char *text_quote(struct text_quoted *b, const char *s)
{
	size_t o = 0;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char tmp[8];
		size_t n;

		if (ch == '"' || ch == '\\')
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", ch);
		else
			n = (size_t)snprintf(tmp, sizeof(tmp), "%c", ch);
		if (o + n + 4 > sizeof(b->s)) {
			memcpy(b->s + o, "...", 4);
			return b->s;
		}
		memcpy(b->s + o, tmp, n);
		o += n;
	}
	b->s[o] = '\0';
	return b->s;
}
