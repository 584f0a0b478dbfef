/* SPDX-License-Identifier: MIT */
/* Token, address, interface name and selector syntax: common/addr.c and
 * common/text.c, and the prefix and protocol parsers of the two places
 * that take association definitions, the config file (daemon/config.c,
 * through config_load on a small file) and the AddAssociation parameters
 * (daemon/assoc.c, through assoc_def_from_json).
 *
 * Input: byte 0 picks what the rest (a string) is fed to:
 *   0  addr_token_parse: accepted exactly when inet_pton takes the address
 *      part, its upper 64 bits are zero and nothing but "/64" follows;
 *      addr_format of the result parses back to it
 *   1  addr_format of 16 raw bytes: RFC 5952 as glibc's inet_ntop writes it
 *      (but never dotted-quad), into every buffer size without overflow
 *   2  addr_ifname_valid against the rules it states; text_quote: one
 *      printable line, a faithful escape, cut only when it must be
 *   3  config_parse_duration against a 128-bit reference
 *   4  a selector, in the config and in AddAssociation: both accept the
 *      same strings (of address characters, below 54 bytes) with the same
 *      result
 *   5  a protocol, likewise
 *   6  log_level_from_string, keys_algorithm_by_name */
#include <arpa/inet.h>
#include <ctype.h>
#include <json-c/json.h>
#include <net/if.h>
#include <netinet/in.h>

#include "addr.h"
#include "assoc.h"
#include "config.h"
#include "fuzz_util.h"
#include "keys.h"
#include "text.h"

static char conf_path[256];

/* --- 0: tokens ----------------------------------------------------------- */

static void fuzz_token(const char *s)
{
	const char *why = NULL, *slash = strchr(s, '/');
	struct in6_addr a, b, ref;
	char *addr_part = strndup(s, slash ? (size_t)(slash - s) : strlen(s));
	char out[ADDR_TOKEN_STRLEN], again[ADDR_TOKEN_STRLEN];
	bool want;
	int r;

	FUZZ_CHECK(addr_part, "strndup");
	want = inet_pton(AF_INET6, addr_part, &ref) == 1 && (!slash || strcmp(slash, "/64") == 0);
	for (int i = 0; want && i < 8; i++)
		want = ref.s6_addr[i] == 0;
	r = addr_token_parse(s, &a, &why);
	FUZZ_CHECK((r == 0) == want, "addr_token_parse(\"%s\") = %d (%s), expected %s", s, r,
		   why ? why : "", want ? "success" : "refusal");
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && why && *why, "refusal without a reason");
		free(addr_part);
		return;
	}
	FUZZ_CHECK(memcmp(&a, &ref, sizeof(a)) == 0, "\"%s\" parsed to another address", s);
	FUZZ_CHECK(addr_token_is_zero(&a) == (memcmp(&a, &in6addr_any, sizeof(a)) == 0),
		   "addr_token_is_zero");
	addr_format(&a, out, sizeof(out));
	FUZZ_CHECK(addr_token_parse(out, &b, &why) == 0 && memcmp(&a, &b, sizeof(a)) == 0,
		   "\"%s\" formats as \"%s\", which does not parse back", s, out);
	addr_format(&b, again, sizeof(again));
	FUZZ_CHECK(strcmp(out, again) == 0, "format not canonical: %s vs %s", out, again);
	FUZZ_CHECK(addr_has_token(&a, &b), "addr_has_token of itself");
	free(addr_part);
}

/* --- 1: formatting ------------------------------------------------------- */

static void fuzz_format(const uint8_t *data, size_t size)
{
	struct in6_addr a = {0}, back;
	char out[ADDR_TOKEN_STRLEN], ref[INET6_ADDRSTRLEN];
	size_t n;

	memcpy(&a, data, size < 16 ? size : 16);
	addr_format(&a, out, sizeof(out));
	n = strlen(out);
	FUZZ_CHECK(n > 0 && n < sizeof(out), "length %zu", n);
	FUZZ_CHECK(!strchr(out, '.'), "dotted quad: %s", out);
	FUZZ_CHECK(inet_pton(AF_INET6, out, &back) == 1 && memcmp(&a, &back, sizeof(a)) == 0,
		   "%s does not parse back", out);
	FUZZ_CHECK(inet_ntop(AF_INET6, &a, ref, sizeof(ref)), "inet_ntop");
	if (!strchr(ref, '.'))
		FUZZ_CHECK(strcmp(ref, out) == 0, "RFC 5952: glibc says %s, addr_format %s", ref,
			   out);
	/* Every smaller buffer: a terminated prefix, never a byte past it. */
	for (size_t len = 0; len <= n + 1; len++) {
		char *small = malloc(len ? len : 1);

		FUZZ_CHECK(small, "malloc");
		addr_format(&a, small, len);
		if (len > 0)
			FUZZ_CHECK(strlen(small) < len && strncmp(small, out, strlen(small)) == 0,
				   "buffer of %zu: \"%s\" for \"%s\"", len, small, out);
		free(small);
	}
	if (size >= 32) {
		struct in6_addr t;

		memcpy(&t, data + 16, 16);
		FUZZ_CHECK(addr_has_token(&a, &t) == (memcmp(a.s6_addr + 8, t.s6_addr + 8, 8) == 0),
			   "addr_has_token");
	}
}

/* --- 2: interface names and quoting --------------------------------------- */

static void fuzz_ifname_quote(const char *s)
{
	const char *why = NULL;
	size_t n = strlen(s), full_len = 0, out_len;
	struct text_quoted q;
	bool want = n >= 1 && n < IFNAMSIZ && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
	char *full;
	int r;

	for (size_t i = 0; want && i < n; i++)
		want = s[i] != '/' && s[i] != ':' && isprint((unsigned char)s[i]) &&
		       !isspace((unsigned char)s[i]);
	r = addr_ifname_valid(s, &why);
	FUZZ_CHECK((r == 0) == want, "addr_ifname_valid(\"%s\") = %d", s, r);
	if (r < 0)
		FUZZ_CHECK(r == -EINVAL && why && *why, "refusal without a reason");

	/* The reference escape, whole. */
	full = malloc(4 * n + 1);
	FUZZ_CHECK(full, "malloc");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			full_len += (size_t)sprintf(full + full_len, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			full_len += (size_t)sprintf(full + full_len, "\\x%02x", ch);
		else
			full[full_len++] = (char)ch;
	}
	full[full_len] = '\0';
	text_quote(&q, s);
	out_len = strlen(q.s);
	FUZZ_CHECK(out_len < sizeof(q.s) && fuzz_printable(q.s), "text_quote: not one line");
	if (full_len + 4 <= sizeof(q.s)) {
		FUZZ_CHECK(strcmp(q.s, full) == 0, "text_quote: \"%s\", expected \"%s\"", q.s,
			   full);
	} else {
		/* Cut at an escape boundary, with "...", and not earlier than
		 * the next escape forced it to. */
		size_t kept = out_len - 3, next;

		FUZZ_CHECK(out_len >= 3 && strcmp(q.s + kept, "...") == 0 &&
			       strncmp(q.s, full, kept) == 0,
			   "text_quote: cut wrongly");
		next = full[kept] == '\\' ? (full[kept + 1] == 'x' ? 4 : 2) : 1;
		FUZZ_CHECK(kept + next + 4 > sizeof(q.s), "text_quote: cut at %zu, too early",
			   kept);
	}
	free(full);
}

/* --- 3: durations ---------------------------------------------------------- */

static void fuzz_duration(const char *s)
{
	unsigned __int128 whole = 0, frac = 0, div = 1, mult = 0, v;
	const char *p = s;
	uint64_t got = 0;
	bool want = isdigit((unsigned char)*p), big = false;
	int r;

	for (; isdigit((unsigned char)*p); p++) {
		whole = whole * 10 + (unsigned)(*p - '0');
		if (whole > UINT64_MAX)
			big = true, whole = (unsigned __int128)UINT64_MAX + 1;
	}
	if (want && *p == '.') {
		p++;
		want = isdigit((unsigned char)*p);
		for (; isdigit((unsigned char)*p); p++)
			if (div < 1000000000) {
				frac = frac * 10 + (unsigned)(*p - '0');
				div *= 10;
			}
	}
	if (strcmp(p, "") == 0 || strcmp(p, "s") == 0)
		mult = 1000000;
	else if (strcmp(p, "ms") == 0)
		mult = 1000;
	else if (strcmp(p, "min") == 0)
		mult = 60000000;
	else if (strcmp(p, "h") == 0)
		mult = 3600000000ULL;
	want = want && mult && !big;
	v = whole * mult + frac * mult / div;
	want = want && v <= UINT64_MAX;
	r = config_parse_duration(s, &got);
	FUZZ_CHECK((r == 0) == want, "config_parse_duration(\"%s\") = %d", s, r);
	if (r == 0)
		FUZZ_CHECK(got == (uint64_t)v, "\"%s\": %llu, expected %llu", s,
			   (unsigned long long)got, (unsigned long long)(uint64_t)v);
}

/* --- 4, 5: selectors and protocols, config against JSON -------------------- */

static bool only_chars(const char *s, const char *set)
{
	for (; *s; s++)
		if (!strchr(set, *s))
			return false;
	return true;
}

/* One association in the config with `key = value`; 0 and its definition,
 * or -EINVAL. */
static int from_config(bool v6, const char *key, const char *value, struct assoc_def *ret)
{
	struct config_errors errs = {0};
	struct config *c = NULL;
	char *text = NULL;
	int n, r;

	n = asprintf(&text,
		     "[sa a]\nnumber = 1\nlocal = %s\nremote = %s\nsecret = credential:k\n"
		     "%s = %s\n",
		     v6 ? "2001:db8::1" : "192.0.2.1", v6 ? "2001:db8::2" : "192.0.2.2", key,
		     value);
	FUZZ_CHECK(n > 0, "asprintf");
	fuzz_write_file(conf_path, text, (size_t)n);
	free(text);
	r = config_load(conf_path, NULL, true, &c, &errs);
	FUZZ_CHECK(r == 0 || r == -EINVAL, "config_load: %d", r);
	if (r == 0) {
		FUZZ_CHECK(c->n_assocs == 1, "%zu associations", c->n_assocs);
		*ret = c->assocs[0];
	}
	config_free(c);
	config_errors_clear(&errs);
	return r;
}

static int from_json(bool v6, const char *key, const char *value, struct assoc_def *ret)
{
	json_object *o = json_object_new_object();
	const char *field = NULL, *why = NULL;
	int r;

	json_object_object_add(o, "name", json_object_new_string("a"));
	json_object_object_add(o, "number", json_object_new_int(1));
	json_object_object_add(o, "local",
			       json_object_new_string(v6 ? "2001:db8::1" : "192.0.2.1"));
	json_object_object_add(o, "remote",
			       json_object_new_string(v6 ? "2001:db8::2" : "192.0.2.2"));
	json_object_object_add(o, "secret_file", json_object_new_string("/k"));
	json_object_object_add(o, key, json_object_new_string(value));
	r = assoc_def_from_json(o, ret, &field, &why);
	if (r < 0)
		FUZZ_CHECK(r == -EINVAL && why && *why, "refusal without a reason");
	json_object_put(o);
	return r;
}

static void fuzz_selector(const char *s)
{
	struct assoc_def dc, dj;
	bool v6 = strchr(s, ':') != NULL;
	int rc, rj;

	/* Beyond this the two differ on purpose or by accident, see below:
	 * only address characters, and shorter than assoc.c's buffer. */
	if (!only_chars(s, "0123456789abcdefABCDEF:./") || strlen(s) >= INET6_ADDRSTRLEN + 8 || !*s)
		return;
	rj = from_json(v6, "local_selector", s, &dj);
	rc = from_config(v6, "local-selector", s, &dc);
	FUZZ_CHECK((rc == 0) == (rj == 0), "selector \"%s\": config %d, AddAssociation %d", s, rc,
		   rj);
	/* Only the family's bytes: `(union xfrm_addr_any){0}` zeroes just
	 * the first member (4 bytes) under clang, and every user copies
	 * addr_len(family) bytes. */
	if (rc == 0)
		FUZZ_CHECK(
		    dc.local_plen == dj.local_plen && dc.family == dj.family &&
			memcmp(&dc.local_net, &dj.local_net, dc.family == AF_INET ? 4 : 16) == 0,
		    "selector \"%s\": config /%u, AddAssociation /%u", s, dc.local_plen,
		    dj.local_plen);
}

static void fuzz_protocol(const char *s)
{
	struct assoc_def dc, dj;
	int rc, rj;

	if (!only_chars(s, "0123456789abcdefghijklmnopqrstuvwxyz-") || strlen(s) > 40 || !*s)
		return;
	rj = from_json(false, "protocol", s, &dj);
	rc = from_config(false, "protocol", s, &dc);
	FUZZ_CHECK((rc == 0) == (rj == 0), "protocol \"%s\": config %d, AddAssociation %d", s, rc,
		   rj);
	if (rc == 0)
		FUZZ_CHECK(dc.proto == dj.proto, "protocol \"%s\": config %u, AddAssociation %u", s,
			   dc.proto, dj.proto);
}

/* --- 6: names ---------------------------------------------------------------- */

static void fuzz_names(const char *s)
{
	const struct keys_algorithm_info *a = keys_algorithm_by_name(s);
	int level = log_level_from_string(s);

	FUZZ_CHECK(level == -EINVAL || (level >= 0 && level <= 7), "log level %d", level);
	if (a) {
		FUZZ_CHECK(strcmp(a->name, s) == 0 && keys_algorithm_by_id(a->id) == a,
			   "algorithm \"%s\"", s);
		FUZZ_CHECK(keys_material_len(a) <= KEYS_MATERIAL_MAX, "material length");
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char creds[256], key[300];

	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	fuzz_path(conf_path, sizeof(conf_path), "t.conf");
	/* Config secrets as systemd credentials: "credential:k". */
	fuzz_path(creds, sizeof(creds), "creds");
	if (mkdir(creds, 0700) < 0 && errno != EEXIST)
		abort();
	snprintf(key, sizeof(key), "%s/k", creds);
	fuzz_write_secret(key);
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1 || size > 4096)
		return 0;
	s = fuzz_strndup(data + 1, size - 1);
	switch (data[0] & 7) {
	case 1:
		fuzz_format(data + 1, size - 1);
		break;
	case 2:
		fuzz_ifname_quote(s);
		break;
	case 3:
		fuzz_duration(s);
		break;
	case 4:
		fuzz_selector(s);
		break;
	case 5:
		fuzz_protocol(s);
		break;
	case 6:
		fuzz_names(s);
		break;
	default:
		fuzz_token(s);
	}
	free(s);
	return 0;
}
