/* SPDX-License-Identifier: MIT */
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

int addr_token_parse(const char *text, struct in6_addr *ret, const char **why)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	struct in6_addr a;
	size_t n;

	if (!text || !*text) {
		*why = "empty token";
		return -EINVAL;
	}
	slash = strchr(text, '/');
	n = slash ? (size_t)(slash - text) : strlen(text);
	if (n >= sizeof(buf)) {
		*why = "not an IPv6 address";
		return -EINVAL;
	}
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (slash && strcmp(slash, "/64") != 0) {
		*why = "a token is a /64 interface identifier; only \"/64\" may follow it";
		return -EINVAL;
	}
	if (inet_pton(AF_INET6, buf, &a) != 1) {
		*why = "not an IPv6 address";
		return -EINVAL;
	}
	for (int i = 0; i < 8; i++)
		if (a.s6_addr[i] != 0) {
			*why = "the upper 64 bits must be zero (a token is an interface identifier "
			       "such as ::1a:2b:3c:4d)";
			return -EINVAL;
		}
	*ret = a;
	return 0;
}

const char *addr_format(const struct in6_addr *a, char *buf, size_t len)
{
	unsigned g[8];
	int best = -1, best_len = 0;
	size_t o = 0;

	for (int i = 0; i < 8; i++)
		g[i] = (unsigned)a->s6_addr[2 * i] << 8 | a->s6_addr[2 * i + 1];
	/* RFC 5952 4.2: compress the longest run of two or more zero groups,
	 * the first one on a tie. */
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && g[j] == 0)
			j++;
		if (j - i > best_len && j - i >= 2) {
			best = i;
			best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
	for (int i = 0; i < 8 && o < len; i++) {
		if (i == best) {
			o += (size_t)snprintf(buf + o, len - o, "::");
			i += best_len - 1;
			continue;
		}
		o += (size_t)snprintf(buf + o, len - o, "%s%x",
				      (i == 0 || i == best + best_len) ? "" : ":", g[i]);
	}
	if (len > 0 && o >= len)
		buf[len - 1] = '\0';
	return buf;
}

bool addr_token_is_zero(const struct in6_addr *a)
{
	static const struct in6_addr zero;
	return memcmp(a, &zero, sizeof(zero)) == 0;
}

bool addr_has_token(const struct in6_addr *a, const struct in6_addr *token)
{
	return memcmp(a->s6_addr + 8, token->s6_addr + 8, 8) == 0;
}

int addr_ifname_valid(const char *name, const char **why)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0) {
		*why = "empty interface name";
		return -EINVAL;
	}
	if (n >= IFNAMSIZ) {
		*why = "interface names are at most 15 characters";
		return -EINVAL;
	}
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		*why = "\".\" and \"..\" are not interface names";
		return -EINVAL;
	}
	for (const char *p = name; *p; p++)
		if (*p == '/' || *p == ':' || isspace((unsigned char)*p) ||
		    !isprint((unsigned char)*p)) {
			*why = "interface names cannot contain '/', ':', spaces or control "
			       "characters";
			return -EINVAL;
		}
	return 0;
}
