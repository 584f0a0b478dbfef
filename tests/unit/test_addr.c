/* SPDX-License-Identifier: MIT */
/* Token syntax, canonical formatting and interface names (common/addr.c). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

/* An address from eight 16-bit groups. */
static struct in6_addr groups(unsigned g0, unsigned g1, unsigned g2, unsigned g3, unsigned g4,
			      unsigned g5, unsigned g6, unsigned g7)
{
	const unsigned g[8] = {g0, g1, g2, g3, g4, g5, g6, g7};
	struct in6_addr a;

	for (int i = 0; i < 8; i++) {
		a.s6_addr[2 * i] = (uint8_t)(g[i] >> 8);
		a.s6_addr[2 * i + 1] = (uint8_t)g[i];
	}
	return a;
}

/* ---- Parsing ----------------------------------------------------------- */

static const struct {
	const char *text;
	const char *canonical;
} valid_tokens[] = {
    {"::1a:2b:3c:4d", "::1a:2b:3c:4d"},
    {"::1a:2b:3c:4d/64", "::1a:2b:3c:4d"},
    {"::1A:2B:3C:4D", "::1a:2b:3c:4d"},
    {"0:0:0:0:0:0:1a:2b", "::1a:2b"},
    {"0:0:0:0:0:0:1a:2b/64", "::1a:2b"},
    {"::0.26.0.43", "::1a:2b"},
    {"0000:0000:0000:0000:0000:0000:0000:0001", "::1"},
    {"::", "::"},
    {"::/64", "::"},
    {"::ffff:1.2.3.4", "::ffff:102:304"},
    {"::FFFF:ffff:FfFf:ffff", "::ffff:ffff:ffff:ffff"},
    {"0::1:0:0:1", "::1:0:0:1"},
    {"::1:0:0:0", "::1:0:0:0"},
};

START_TEST(test_token_valid)
{
	const char *text = valid_tokens[_i].text, *why = NULL;
	char buf[ADDR_TOKEN_STRLEN];
	struct in6_addr a;

	memset(&a, 0xaa, sizeof(a));
	ck_assert_msg(addr_token_parse(text, &a, &why) == 0, "%s refused: %s", text,
		      why ? why : "(no reason)");
	ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), valid_tokens[_i].canonical);
	/* The upper half is zero, whatever the spelling. */
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(a.s6_addr[i], 0);
}
END_TEST

static const char *const invalid_tokens[] = {
    "2001:db8::1", /* upper half set */
    "1::",	   /* upper half set, low half zero */
    "fe80::1",
    "0:0:0:1::", /* lowest bit of the upper half */
    "::1/63",
    "::1/128",
    "::1/",
    "::1/64/64",
    "::1/064",
    "::1/64 ",
    "/64",
    "",
    "hello",
    "1.2.3.4",
    "::1 ",
    " ::1",
    "::g",
    "1:2:3:4:5:6:7:8:9",
    ":::1",
    "::1::2",
    "::1%eth0",
    "::12345",
    "0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:1",
};

START_TEST(test_token_invalid)
{
	const char *text = invalid_tokens[_i], *why = NULL;
	struct in6_addr a, before;

	memset(&a, 0x5a, sizeof(a));
	before = a;
	ck_assert_msg(addr_token_parse(text, &a, &why) == -EINVAL, "\"%s\" accepted", text);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strlen(why) > 0, "empty reason for \"%s\"", text);
	/* A refused token leaves the result alone. */
	ck_assert_mem_eq(&a, &before, sizeof(a));
}
END_TEST

START_TEST(test_token_null)
{
	const char *why = NULL;
	struct in6_addr a;

	ck_assert_int_eq(addr_token_parse(NULL, &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
}
END_TEST

/* The reasons name the problem, so users can act on them. */
START_TEST(test_token_reasons)
{
	const char *why = NULL;
	struct in6_addr a;

	ck_assert_int_eq(addr_token_parse("2001:db8::1", &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "upper 64 bits"));
	ck_assert_int_eq(addr_token_parse("::1/63", &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "/64"));
	ck_assert_int_eq(addr_token_parse("junk", &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "not an IPv6 address"));
	ck_assert_int_eq(addr_token_parse("", &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "empty"));
}
END_TEST

/* ---- Formatting (RFC 5952) -------------------------------------------- */

static const struct {
	unsigned g[8];
	const char *text;
} formats[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0}, "::"},
    {{0, 0, 0, 0, 0, 0, 0, 1}, "::1"},
    {{1, 0, 0, 0, 0, 0, 0, 0}, "1::"},
    /* Never dotted-quad, though inet_ntop may print these so. */
    {{0, 0, 0, 0, 0, 0, 0x1a, 0x2b}, "::1a:2b"},
    {{0, 0, 0, 0, 0, 0xffff, 0x102, 0x304}, "::ffff:102:304"},
    {{0, 0, 0, 0, 0x1a, 0x2b, 0x3c, 0x4d}, "::1a:2b:3c:4d"},
    /* The longest run is compressed... */
    {{0x2001, 0, 0, 1, 0, 0, 0, 1}, "2001:0:0:1::1"},
    {{0, 0, 1, 0, 0, 0, 1, 0}, "0:0:1::1:0"},
    /* ...the first one on a tie... */
    {{0x2001, 0xdb8, 0, 0, 1, 0, 0, 1}, "2001:db8::1:0:0:1"},
    {{0, 0, 0, 1, 0, 0, 0, 1}, "::1:0:0:0:1"},
    {{1, 0, 0, 2, 0, 0, 3, 4}, "1::2:0:0:3:4"},
    /* ...and a single zero group never. */
    {{0x2001, 0xdb8, 0, 1, 1, 1, 1, 1}, "2001:db8:0:1:1:1:1:1"},
    {{1, 0, 2, 0, 3, 0, 4, 0}, "1:0:2:0:3:0:4:0"},
    {{0, 1, 2, 3, 4, 5, 6, 7}, "0:1:2:3:4:5:6:7"},
    {{1, 2, 3, 4, 5, 6, 7, 0}, "1:2:3:4:5:6:7:0"},
    {{1, 2, 3, 4, 5, 6, 0, 0}, "1:2:3:4:5:6::"},
    {{0, 0, 3, 4, 5, 6, 7, 8}, "::3:4:5:6:7:8"},
    /* Lowercase, no leading zeros. */
    {{0xABCD, 0xEF, 0x0A, 0, 0, 0, 0, 0xF00}, "abcd:ef:a::f00"},
    {{0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff},
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
};

START_TEST(test_format)
{
	const unsigned *g = formats[_i].g;
	struct in6_addr a = groups(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
	char buf[ADDR_TOKEN_STRLEN];

	memset(buf, 'x', sizeof(buf));
	ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), formats[_i].text);
}
END_TEST

/* addr_format() agrees with inet_ntop() (RFC 5952 in glibc) wherever that
 * does not choose dotted-quad, and parses back to the same address. */
START_TEST(test_format_matches_inet_ntop)
{
	unsigned seed = 12345;

	for (int n = 0; n < 20000; n++) {
		char mine[ADDR_TOKEN_STRLEN], ref[INET6_ADDRSTRLEN];
		unsigned g[8];
		struct in6_addr a, back;

		/* Mostly zero groups, to exercise every run layout. */
		for (int i = 0; i < 8; i++)
			g[i] = rand_r(&seed) % 3 ? 0 : (unsigned)rand_r(&seed) & 0xffff;
		a = groups(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
		addr_format(&a, mine, sizeof(mine));
		ck_assert_ptr_nonnull(inet_ntop(AF_INET6, &a, ref, sizeof(ref)));
		ck_assert_ptr_null(strchr(mine, '.'));
		if (!strchr(ref, '.'))
			ck_assert_str_eq(mine, ref);
		ck_assert_int_eq(inet_pton(AF_INET6, mine, &back), 1);
		ck_assert_mem_eq(&a, &back, sizeof(a));
	}
}
END_TEST

START_TEST(test_format_short_buffer)
{
	struct in6_addr a = groups(0, 0, 0, 0, 0x1a, 0x2b, 0x3c, 0x4d);
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	/* Cut, but always terminated. */
	ck_assert_str_eq(addr_format(&a, buf, sizeof(buf)), "::1a:2b");
	memset(buf, 'x', sizeof(buf));
	ck_assert_str_eq(addr_format(&a, buf, 5), "::1a");
}
END_TEST

START_TEST(test_is_zero_and_has_token)
{
	struct in6_addr zero = groups(0, 0, 0, 0, 0, 0, 0, 0);
	struct in6_addr token = groups(0, 0, 0, 0, 0x1a, 0x2b, 0x3c, 0x4d);
	struct in6_addr global = groups(0x2001, 0xdb8, 1, 0, 0x1a, 0x2b, 0x3c, 0x4d);
	struct in6_addr other = groups(0x2001, 0xdb8, 1, 0, 0x1a, 0x2b, 0x3c, 0x4e);

	ck_assert(addr_token_is_zero(&zero));
	ck_assert(!addr_token_is_zero(&token));
	ck_assert(!addr_token_is_zero(&global));
	ck_assert(addr_has_token(&global, &token));
	ck_assert(!addr_has_token(&other, &token));
	ck_assert(!addr_has_token(&global, &zero));
}
END_TEST

/* ---- Interface names --------------------------------------------------- */

static const char *const valid_ifnames[] = {
    "eth0", "a", "veth-1.100", "br_lan", "abcdefghijklmno", "...", "-x", "wg0@x",
};

START_TEST(test_ifname_valid)
{
	const char *why = NULL;

	ck_assert_msg(addr_ifname_valid(valid_ifnames[_i], &why) == 0, "\"%s\" refused: %s",
		      valid_ifnames[_i], why ? why : "");
}
END_TEST

static const char *const invalid_ifnames[] = {
    "",	     "abcdefghijklmnop",
    ".",     "..",
    "a/b",   "eth0:1",
    "a b",   "a\tb",
    "a\nb",  "\x7f",
    "a\rb",  " eth0",
    "eth0 ",
};

START_TEST(test_ifname_invalid)
{
	const char *why = NULL;

	ck_assert_msg(addr_ifname_valid(invalid_ifnames[_i], &why) == -EINVAL, "\"%s\" accepted",
		      invalid_ifnames[_i]);
	ck_assert_ptr_nonnull(why);
	ck_assert(strlen(why) > 0);
}
END_TEST

START_TEST(test_ifname_null)
{
	const char *why = NULL;

	ck_assert_int_eq(addr_ifname_valid(NULL, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *tc = tcase_create("token");

	tcase_add_loop_test(tc, test_token_valid, 0, N(valid_tokens));
	tcase_add_loop_test(tc, test_token_invalid, 0, N(invalid_tokens));
	tcase_add_test(tc, test_token_null);
	tcase_add_test(tc, test_token_reasons);
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_loop_test(tc, test_format, 0, N(formats));
	tcase_add_test(tc, test_format_matches_inet_ntop);
	tcase_add_test(tc, test_format_short_buffer);
	tcase_add_test(tc, test_is_zero_and_has_token);
	suite_add_tcase(s, tc);

	tc = tcase_create("ifname");
	tcase_add_loop_test(tc, test_ifname_valid, 0, N(valid_ifnames));
	tcase_add_loop_test(tc, test_ifname_invalid, 0, N(invalid_ifnames));
	tcase_add_test(tc, test_ifname_null);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(addr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
