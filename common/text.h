/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Text from files, the command line or the kernel, quoted into messages:
 * '"' and '\' are backslash-escaped, control characters and non-ASCII bytes
 * become \xNN, so a message stays one printable line. Cut with "..." when
 * it does not fit. */
struct text_quoted {
	char s[512];
};

const char *text_quote(struct text_quoted *b, const char *s);
