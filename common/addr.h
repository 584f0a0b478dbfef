/* SPDX-License-Identifier: MIT */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* IPv6 interface tokens and interface names. */

#define ADDR_TOKEN_STRLEN 48 /* canonical text of any in6_addr, with NUL */

/* Parse a token: any IPv6 spelling inet_pton accepts, optionally followed by
 * "/64", whose upper 64 bits are zero. The kernel keeps only the low 64 bits
 * of what it is given, so anything else is refused rather than cut.
 * Returns 0, or -EINVAL with *why (static text) set. "::" is valid: it is the
 * kernel's spelling of "no token". */
int addr_token_parse(const char *text, struct in6_addr *ret, const char **why);

/* Canonical text (RFC 5952 groups, never dotted-quad). buf >= ADDR_TOKEN_STRLEN. */
const char *addr_format(const struct in6_addr *a, char *buf, size_t len);

bool addr_token_is_zero(const struct in6_addr *a);

/* The interface identifier of `a` (its low 64 bits) equals `token`. */
bool addr_has_token(const struct in6_addr *a, const struct in6_addr *token);

/* Interface names as the kernel accepts them (dev_valid_name): 1-15 bytes,
 * not "." or "..", no '/', ':' or whitespace. Returns 0 or -EINVAL + *why. */
int addr_ifname_valid(const char *name, const char **why);
