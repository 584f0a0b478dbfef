/* SPDX-License-Identifier: MIT */
/* Varlink framing, call parsing, serialisation and the blocking client
 * helpers (common/varlink.c). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "varlink.h"

/* ---- Reader ------------------------------------------------------------ */

static void expect_next(struct varlink_reader *r, const char *want)
{
	char *msg = NULL;

	ck_assert_int_eq(varlink_reader_next(r, &msg), 1);
	ck_assert_ptr_nonnull(msg);
	ck_assert_str_eq(msg, want);
	free(msg);
}

static void expect_none(struct varlink_reader *r)
{
	char *msg = NULL;

	ck_assert_int_eq(varlink_reader_next(r, &msg), 0);
	ck_assert_ptr_null(msg);
}

START_TEST(test_reader_several_in_one_feed)
{
	static const char data[] = "{\"a\":1}\0{}\0x";
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	expect_none(&r);
	ck_assert(varlink_reader_empty(&r));
	/* sizeof counts the literal's own NUL, which ends "x". */
	ck_assert_int_eq(varlink_reader_feed(&r, data, sizeof(data)), 0);
	expect_next(&r, "{\"a\":1}");
	expect_next(&r, "{}");
	expect_next(&r, "x");
	expect_none(&r);
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
}
END_TEST

START_TEST(test_reader_byte_by_byte)
{
	static const char msg[] = "{\"method\":\"io.tokend.ListTokens\",\"parameters\":{}}";
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	for (size_t i = 0; i < sizeof(msg) - 1; i++) {
		ck_assert_int_eq(varlink_reader_feed(&r, &msg[i], 1), 0);
		expect_none(&r);
		ck_assert(!varlink_reader_empty(&r));
	}
	ck_assert_int_eq(varlink_reader_feed(&r, "", 1), 0);
	expect_next(&r, msg);
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
}
END_TEST

START_TEST(test_reader_split_across_feeds)
{
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	ck_assert_int_eq(varlink_reader_feed(&r, "ab\0c", 4), 0);
	expect_next(&r, "ab");
	expect_none(&r);
	ck_assert(!varlink_reader_empty(&r));
	ck_assert_int_eq(varlink_reader_feed(&r, "d\0e", 3), 0);
	expect_next(&r, "cd");
	expect_none(&r);
	ck_assert_int_eq(varlink_reader_feed(&r, "", 0), 0);
	expect_none(&r);
	ck_assert_int_eq(varlink_reader_feed(&r, "\0", 1), 0);
	expect_next(&r, "e");
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
}
END_TEST

START_TEST(test_reader_empty_message)
{
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	ck_assert_int_eq(varlink_reader_feed(&r, "\0\0", 2), 0);
	expect_next(&r, "");
	expect_next(&r, "");
	expect_none(&r);
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
}
END_TEST

/* A buffer of n 'x' followed by a NUL (n + 1 bytes). */
static char *xs(size_t n)
{
	char *b = malloc(n + 1);

	ck_assert_ptr_nonnull(b);
	memset(b, 'x', n);
	b[n] = '\0';
	return b;
}

START_TEST(test_reader_exactly_max)
{
	char *big = xs(VARLINK_MAX_MESSAGE), *msg = NULL;
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	/* All of it but the NUL: at the limit, not over it. */
	ck_assert_int_eq(varlink_reader_feed(&r, big, VARLINK_MAX_MESSAGE), 0);
	expect_none(&r);
	ck_assert_int_eq(varlink_reader_feed(&r, "", 1), 0);
	ck_assert_int_eq(varlink_reader_next(&r, &msg), 1);
	ck_assert_uint_eq(strlen(msg), VARLINK_MAX_MESSAGE);
	free(msg);
	/* And whole, in one feed. */
	ck_assert_int_eq(varlink_reader_feed(&r, big, VARLINK_MAX_MESSAGE + 1), 0);
	ck_assert_int_eq(varlink_reader_next(&r, &msg), 1);
	ck_assert_uint_eq(strlen(msg), VARLINK_MAX_MESSAGE);
	free(msg);
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
	free(big);
}
END_TEST

START_TEST(test_reader_over_max_one_feed)
{
	char *big = xs(VARLINK_MAX_MESSAGE + 1);
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	ck_assert_int_eq(varlink_reader_feed(&r, big, VARLINK_MAX_MESSAGE + 1), -EMSGSIZE);
	expect_none(&r);
	varlink_reader_free(&r);
	free(big);
}
END_TEST

START_TEST(test_reader_over_max_in_chunks)
{
	char *big = xs(VARLINK_MAX_MESSAGE);
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	for (size_t off = 0; off < VARLINK_MAX_MESSAGE; off += 4096)
		ck_assert_int_eq(varlink_reader_feed(&r, big + off, 4096), 0);
	ck_assert_int_eq(varlink_reader_feed(&r, "y", 1), -EMSGSIZE);
	expect_none(&r);
	varlink_reader_free(&r);
	free(big);
}
END_TEST

/* Over the limit but with its NUL in the same feed: feed() cannot tell it
 * from many small messages, next() refuses it. */
START_TEST(test_reader_over_max_whole)
{
	char *big = xs(VARLINK_MAX_MESSAGE + 1), *msg = NULL;
	struct varlink_reader r;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	ck_assert_int_eq(varlink_reader_feed(&r, big, VARLINK_MAX_MESSAGE + 2), 0);
	ck_assert_int_eq(varlink_reader_next(&r, &msg), -EMSGSIZE);
	ck_assert_ptr_null(msg);
	varlink_reader_free(&r);
	free(big);
}
END_TEST

/* What counts is the unterminated message at the end, not whether some NUL
 * is buffered before it. */
START_TEST(test_reader_over_max_after_whole_message)
{
	static const char data[] = "short\0"
				   "0123456789abcdefg"; /* 17 > 16 */
	struct varlink_reader r;

	varlink_reader_init(&r, 16);
	ck_assert_int_eq(varlink_reader_feed(&r, data, sizeof(data) - 1), -EMSGSIZE);
	varlink_reader_free(&r);

	varlink_reader_init(&r, 16);
	ck_assert_int_eq(varlink_reader_feed(&r,
					     "short\0"
					     "0123456789",
					     16),
			 0);
	ck_assert_int_eq(varlink_reader_feed(&r, "abcdef", 6), 0);
	ck_assert_int_eq(varlink_reader_feed(&r, "g", 1), -EMSGSIZE);
	varlink_reader_free(&r);
}
END_TEST

/* Many small messages in one big feed are fine, however big the feed. */
START_TEST(test_reader_many_messages_one_feed)
{
	const size_t count = 50000;
	char *data = malloc(count * 4);
	struct varlink_reader r;

	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < count; i++)
		memcpy(data + 4 * i, "abc", 4);
	varlink_reader_init(&r, 16);
	ck_assert_int_eq(varlink_reader_feed(&r, data, count * 4), 0);
	for (size_t i = 0; i < count; i++)
		expect_next(&r, "abc");
	expect_none(&r);
	ck_assert(varlink_reader_empty(&r));
	varlink_reader_free(&r);
	free(data);
}
END_TEST

START_TEST(test_reader_free_and_reuse)
{
	struct varlink_reader r;

	varlink_reader_init(&r, 8);
	ck_assert_int_eq(varlink_reader_feed(&r, "abc", 3), 0);
	varlink_reader_free(&r);
	ck_assert(varlink_reader_empty(&r));
	expect_none(&r);
	/* The limit survives free(). */
	ck_assert_uint_eq(r.max, 8);
	ck_assert_int_eq(varlink_reader_feed(&r, "123456789", 9), -EMSGSIZE);
	ck_assert_int_eq(varlink_reader_feed(&r, "12345678\0", 9), 0);
	expect_next(&r, "12345678");
	varlink_reader_free(&r);
	varlink_reader_free(&r);
}
END_TEST

/* ---- Call parsing ------------------------------------------------------ */

static const char *param_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

START_TEST(test_call_valid)
{
	struct varlink_call call;
	const char *why = NULL;

	ck_assert_int_eq(varlink_call_parse("{\"method\":\"io.tokend.SetToken\",\"parameters\":"
					    "{\"token\":\"::1\",\"interface\":\"veth0\"}}",
					    &call, &why),
			 0);
	ck_assert_ptr_nonnull(call.root);
	ck_assert_str_eq(call.method, "io.tokend.SetToken");
	ck_assert(json_object_is_type(call.parameters, json_type_object));
	ck_assert_str_eq(param_str(call.parameters, "token"), "::1");
	ck_assert_str_eq(param_str(call.parameters, "interface"), "veth0");
	ck_assert(!call.oneway);
	ck_assert(!call.more);
	varlink_call_done(&call);
	ck_assert_ptr_null(call.root);
	ck_assert_ptr_null(call.method);
}
END_TEST

static const char *const empty_parameter_calls[] = {
    "{\"method\":\"io.tokend.ListTokens\"}",
    "{\"method\":\"io.tokend.ListTokens\",\"parameters\":null}",
    "{\"method\":\"io.tokend.ListTokens\",\"parameters\":{}}",
    /* Whitespace around the object is JSON too. */
    " \n{ \"method\" : \"io.tokend.ListTokens\" }\r\n\t",
};

START_TEST(test_call_empty_parameters)
{
	struct varlink_call call;
	const char *why = NULL;

	ck_assert_msg(varlink_call_parse(empty_parameter_calls[_i], &call, &why) == 0,
		      "%s refused: %s", empty_parameter_calls[_i], why ? why : "");
	ck_assert_str_eq(call.method, "io.tokend.ListTokens");
	ck_assert_ptr_nonnull(call.parameters);
	ck_assert(json_object_is_type(call.parameters, json_type_object));
	ck_assert_int_eq(json_object_object_length(call.parameters), 0);
	varlink_call_done(&call);
}
END_TEST

START_TEST(test_call_oneway_more)
{
	struct varlink_call call;
	const char *why = NULL;

	ck_assert_int_eq(varlink_call_parse("{\"method\":\"a.B\",\"oneway\":true}", &call, &why),
			 0);
	ck_assert(call.oneway);
	ck_assert(!call.more);
	varlink_call_done(&call);
	ck_assert_int_eq(
	    varlink_call_parse("{\"method\":\"a.B\",\"more\":true,\"oneway\":false}", &call, &why),
	    0);
	ck_assert(!call.oneway);
	ck_assert(call.more);
	varlink_call_done(&call);
}
END_TEST

START_TEST(test_call_json_values)
{
	struct varlink_call call;
	const char *why = NULL;

	ck_assert_int_eq(varlink_call_parse("{\"method\":\"a.B\",\"parameters\":{\"s\":\"\\u00e9"
					    "\\ud83d\\ude00/\\/\",\"n\":-1.5e3,\"a\":[true,false,"
					    "null],\"o\":{}}}",
					    &call, &why),
			 0);
	ck_assert_str_eq(param_str(call.parameters, "s"), "\xc3\xa9\xf0\x9f\x98\x80//");
	varlink_call_done(&call);
}
END_TEST

static const struct {
	const char *text;
	const char *why; /* a part of the reason */
} invalid_calls[] = {
    {"", "not valid JSON"},
    {"{", "not valid JSON"},
    {"hello", "not valid JSON"},
    {"{\"method\":\"a.B\"", "not valid JSON"},
    {"{\"method\":\"a.B\"}x", "not valid JSON"},
    {"{\"method\":\"a.B\"}{}", "not valid JSON"},
    {"{\"method\":\"a.B\"} {\"method\":\"a.C\"}", "not valid JSON"},
    {"{\"method\":\"a.B\",}", "not valid JSON"},
    {"{\"method\":\"a.B\",\"parameters\":{\"x\":\"\xff\"}}", "not valid JSON"},
    {"[1,2]", "not a JSON object"},
    {"[]", "not a JSON object"},
    {"\"io.tokend.ListTokens\"", "not a JSON object"},
    {"true", "not a JSON object"},
    {"null", "not a JSON object"},
    {"1", "not a JSON object"},
    {"{}", "\"method\""},
    {"{\"parameters\":{}}", "\"method\""},
    {"{\"method\":1}", "\"method\""},
    {"{\"method\":null}", "\"method\""},
    {"{\"method\":[\"a.B\"]}", "\"method\""},
    {"{\"method\":\"a.B\",\"parameters\":[]}", "\"parameters\""},
    {"{\"method\":\"a.B\",\"parameters\":\"x\"}", "\"parameters\""},
    {"{\"method\":\"a.B\",\"parameters\":1}", "\"parameters\""},
    {"{\"method\":\"a.B\",\"oneway\":1}", "\"oneway\""},
    {"{\"method\":\"a.B\",\"oneway\":\"true\"}", "\"oneway\""},
    {"{\"method\":\"a.B\",\"oneway\":null}", "\"oneway\""},
    {"{\"method\":\"a.B\",\"more\":0}", "\"more\""},
    {"{\"method\":\"a.B\",\"more\":{}}", "\"more\""},
};

START_TEST(test_call_invalid)
{
	struct varlink_call call;
	const char *why = NULL;

	ck_assert_msg(varlink_call_parse(invalid_calls[_i].text, &call, &why) == -EBADMSG,
		      "accepted: %s", invalid_calls[_i].text);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, invalid_calls[_i].why), "%s: reason \"%s\"",
		      invalid_calls[_i].text, why);
	ck_assert_ptr_null(call.root);
	ck_assert_ptr_null(call.method);
	ck_assert_ptr_null(call.parameters);
	varlink_call_done(&call);
}
END_TEST

/* ---- Method names ------------------------------------------------------ */

START_TEST(test_method_split)
{
	char iface[64];
	const char *name = NULL;

	ck_assert_int_eq(varlink_method_split("io.tokend.ListTokens", iface, sizeof(iface), &name),
			 0);
	ck_assert_str_eq(iface, "io.tokend");
	ck_assert_str_eq(name, "ListTokens");
	ck_assert_int_eq(
	    varlink_method_split("org.varlink.service.GetInfo", iface, sizeof(iface), &name), 0);
	ck_assert_str_eq(iface, "org.varlink.service");
	ck_assert_str_eq(name, "GetInfo");
	ck_assert_int_eq(varlink_method_split("a.B", iface, sizeof(iface), &name), 0);
	ck_assert_str_eq(iface, "a");
	ck_assert_str_eq(name, "B");
}
END_TEST

START_TEST(test_method_split_invalid)
{
	static const char *const bad[] = {"", "NoDot", ".Method", "io.tokend.", "."};
	char iface[64];
	const char *name = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(varlink_method_split(bad[i], iface, sizeof(iface), &name) == -EINVAL,
			      "\"%s\" split", bad[i]);
	/* The interface must fit with its NUL. */
	ck_assert_int_eq(varlink_method_split("io.tokend.X", iface, 9, &name), -EINVAL);
	ck_assert_int_eq(varlink_method_split("io.tokend.X", iface, 10, &name), 0);
	ck_assert_str_eq(iface, "io.tokend");
}
END_TEST

/* ---- Serialisation ----------------------------------------------------- */

/* Framing invariants: NUL-terminated, the length counts the NUL, no NUL
 * before the end. */
static void check_frame(const char *out, size_t len)
{
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_gt(len, 1);
	ck_assert_int_eq(out[len - 1], '\0');
	ck_assert_uint_eq(strlen(out), len - 1);
}

START_TEST(test_serialize_call_round_trip)
{
	json_object *p = json_object_new_object();
	struct varlink_call call;
	struct varlink_reader r;
	const char *why = NULL;
	char *out, *msg = NULL;
	size_t len = 0;

	json_object_object_add(p, "token", json_object_new_string("::1a:2b:3c:4d"));
	json_object_object_add(p, "interface", json_object_new_string("veth0"));
	json_object_object_add(p, "file", json_object_new_string("/etc/tokend/tokend.conf:7"));
	out = varlink_call_serialize("io.tokend.SetToken", p, &len);
	check_frame(out, len);
	/* Slashes are not escaped. */
	ck_assert_ptr_nonnull(strstr(out, "\"/etc/tokend/tokend.conf:7\""));
	/* Through the reader and the parser, unchanged. */
	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	ck_assert_int_eq(varlink_reader_feed(&r, out, len), 0);
	ck_assert_int_eq(varlink_reader_next(&r, &msg), 1);
	ck_assert_str_eq(msg, out);
	ck_assert(varlink_reader_empty(&r));
	ck_assert_int_eq(varlink_call_parse(msg, &call, &why), 0);
	ck_assert_str_eq(call.method, "io.tokend.SetToken");
	ck_assert_str_eq(param_str(call.parameters, "token"), "::1a:2b:3c:4d");
	ck_assert_str_eq(param_str(call.parameters, "interface"), "veth0");
	ck_assert_int_eq(json_object_object_length(call.parameters), 3);
	varlink_call_done(&call);
	varlink_reader_free(&r);
	free(msg);
	free(out);
}
END_TEST

START_TEST(test_serialize_call_no_params)
{
	struct varlink_call call;
	const char *why = NULL;
	size_t len = 0;
	char *out = varlink_call_serialize("io.tokend.GetStatus", NULL, &len);

	check_frame(out, len);
	ck_assert_int_eq(varlink_call_parse(out, &call, &why), 0);
	ck_assert_str_eq(call.method, "io.tokend.GetStatus");
	ck_assert_int_eq(json_object_object_length(call.parameters), 0);
	/* The parameters member is really there, not added by the parser. */
	ck_assert_ptr_nonnull(strstr(out, "\"parameters\":{}"));
	varlink_call_done(&call);
	free(out);
}
END_TEST

static json_object *parse_frame(const char *out, size_t len)
{
	json_object *o;

	check_frame(out, len);
	o = json_tokener_parse(out);
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_is_type(o, json_type_object));
	return o;
}

/* An interface name in bytes that are not UTF-8 (the kernel allows any
 * but '/' and NUL) must not make the reply invalid JSON: each such byte is
 * sent as \u00XX, valid UTF-8 passes as it is. */
START_TEST(test_serialize_non_utf8)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"d\xff", "d\\u00ff"},
	    {"caf\xc3\xa9", "caf\xc3\xa9"},			  /* é: valid */
	    {"\xc3", "\\u00c3"},				  /* cut short */
	    {"\xc0\xaf", "\\u00c0\\u00af"},			  /* overlong '/' */
	    {"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},		  /* a surrogate */
	    {"\xf0\x9f\x98\x80x", "\xf0\x9f\x98\x80x"},		  /* U+1F600 */
	    {"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"}, /* past U+10FFFF */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_object *p = json_object_new_object(), *o, *v;
		size_t len = 0;
		char *out, want[64];

		json_object_object_add(p, "interface", json_object_new_string(cases[i].in));
		out = varlink_reply_serialize(p, &len);
		ck_assert_ptr_nonnull(out);
		ck_assert_uint_eq(strlen(out) + 1, len);
		snprintf(want, sizeof(want), "\"interface\":\"%s\"", cases[i].want);
		ck_assert_msg(strstr(out, want), "case %zu: %s", i, out);
		/* And json-c, which checks UTF-8, reads it back. */
		o = parse_frame(out, len);
		ck_assert(json_object_object_get_ex(o, "parameters", &v));
		json_object_put(o);
		free(out);
	}
}
END_TEST

START_TEST(test_serialize_reply)
{
	json_object *p = json_object_new_object(), *o, *v;
	size_t len = 0;
	char *out;

	json_object_object_add(p, "changed", json_object_new_boolean(1));
	out = varlink_reply_serialize(p, &len);
	o = parse_frame(out, len);
	ck_assert(!json_object_object_get_ex(o, "error", NULL));
	ck_assert(json_object_object_get_ex(o, "parameters", &v));
	ck_assert(json_object_get_boolean(json_object_object_get(v, "changed")));
	json_object_put(o);
	free(out);

	out = varlink_reply_serialize(NULL, &len);
	o = parse_frame(out, len);
	ck_assert(json_object_object_get_ex(o, "parameters", &v));
	ck_assert(json_object_is_type(v, json_type_object));
	ck_assert_int_eq(json_object_object_length(v), 0);
	json_object_put(o);
	free(out);
}
END_TEST

START_TEST(test_serialize_error)
{
	json_object *p = json_object_new_object(), *o, *v;
	size_t len = 0;
	char *out;

	json_object_object_add(p, "interface", json_object_new_string("eth9"));
	out = varlink_error_serialize("io.tokend.NoSuchEntry", p, &len);
	o = parse_frame(out, len);
	ck_assert(json_object_object_get_ex(o, "error", &v));
	ck_assert_str_eq(json_object_get_string(v), "io.tokend.NoSuchEntry");
	ck_assert(json_object_object_get_ex(o, "parameters", &v));
	ck_assert_str_eq(param_str(v, "interface"), "eth9");
	json_object_put(o);
	free(out);

	out = varlink_error_serialize("io.tokend.Degraded", NULL, &len);
	o = parse_frame(out, len);
	ck_assert(json_object_object_get_ex(o, "parameters", &v));
	ck_assert(json_object_is_type(v, json_type_object));
	json_object_put(o);
	free(out);
}
END_TEST

/* ---- Blocking client --------------------------------------------------- */

enum serve_mode {
	SERVE_REPLY,	   /* read the call, send the reply */
	SERVE_REPLY_BYTES, /* the same, one byte per write */
	SERVE_CLOSE,	   /* read the call, close without replying */
	SERVE_SILENT,	   /* read the call, then wait for the client to go */
};

/* A server thread on one end of a socket pair (a thread, not a process:
 * nothing to kill, and valgrind sees one clean process). */
struct server {
	pthread_t thread;
	int fd;	 /* the client's end */
	int sfd; /* the server's end */
	enum serve_mode mode;
	const char *reply;
	size_t len;
	bool call_ok; /* the call was the expected one */
};

/* Read one call and check it is ListTokens for veth0. */
static bool read_call(int fd)
{
	struct varlink_reader r;
	struct varlink_call call;
	const char *why, *ifname;
	char buf[4096], *msg = NULL;
	bool ok;

	varlink_reader_init(&r, VARLINK_MAX_MESSAGE);
	while (varlink_reader_next(&r, &msg) == 0) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0 || varlink_reader_feed(&r, buf, (size_t)n) < 0)
			break;
	}
	varlink_reader_free(&r);
	if (!msg)
		return false;
	ok = varlink_call_parse(msg, &call, &why) == 0 &&
	     strcmp(call.method, "io.tokend.ListTokens") == 0 &&
	     (ifname = param_str(call.parameters, "interface")) && strcmp(ifname, "veth0") == 0;
	varlink_call_done(&call);
	free(msg);
	return ok;
}

static void *serve(void *arg)
{
	struct server *s = arg;
	bool ok = read_call(s->sfd);
	char c;

	if (s->mode == SERVE_REPLY)
		ok = ok && write(s->sfd, s->reply, s->len) == (ssize_t)s->len;
	for (size_t i = 0; s->mode == SERVE_REPLY_BYTES && i < s->len; i++) {
		ok = ok && write(s->sfd, s->reply + i, 1) == 1;
		usleep(100);
	}
	while (s->mode == SERVE_SILENT && read(s->sfd, &c, 1) > 0)
		;
	close(s->sfd);
	s->call_ok = ok;
	return NULL;
}

static void start_server(struct server *s, enum serve_mode mode, const char *reply, size_t len)
{
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*s = (struct server){.fd = sv[0], .sfd = sv[1], .mode = mode, .reply = reply, .len = len};
	ck_assert_int_eq(pthread_create(&s->thread, NULL, serve, s), 0);
}

/* The server's verdict on the call it received. */
static bool stop_server(struct server *s)
{
	close(s->fd);
	ck_assert_int_eq(pthread_join(s->thread, NULL), 0);
	return s->call_ok;
}

/* Call ListTokens for veth0 against a server answering `reply` (with its
 * NUL, hence sizeof). */
static int call_with(enum serve_mode mode, const char *reply, size_t len, int timeout_ms,
		     json_object **ret_reply, const char **ret_error)
{
	json_object *p = json_object_new_object();
	struct server s;
	int r;

	start_server(&s, mode, reply, len);
	json_object_object_add(p, "interface", json_object_new_string("veth0"));
	r = varlink_call_sync(s.fd, "io.tokend.ListTokens", p, timeout_ms, ret_reply, ret_error);
	if (!stop_server(&s)) {
		json_object_put(*ret_reply);
		ck_abort_msg("the server did not receive the expected call");
	}
	return r;
}

START_TEST(test_call_sync_reply)
{
	static const char reply[] = "{\"parameters\":{\"global\":null,\"entries\":[]}}";
	json_object *o = NULL, *v;
	const char *error = "unset";

	ck_assert_int_eq(call_with(SERVE_REPLY, reply, sizeof(reply), 5000, &o, &error), 0);
	ck_assert_ptr_null(error);
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "parameters", &v));
	ck_assert(json_object_is_type(json_object_object_get(v, "entries"), json_type_array));
	json_object_put(o);
}
END_TEST

START_TEST(test_call_sync_reply_bytewise)
{
	static const char reply[] = "{\"parameters\":{\"entries\":[\"a\",\"b\"]}}";
	json_object *o = NULL;
	const char *error = NULL;

	ck_assert_int_eq(call_with(SERVE_REPLY_BYTES, reply, sizeof(reply), 5000, &o, &error), 0);
	ck_assert_ptr_null(error);
	ck_assert_str_eq(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), reply);
	json_object_put(o);
}
END_TEST

START_TEST(test_call_sync_error)
{
	static const char reply[] = "{\"error\":\"io.tokend.NoSuchEntry\",\"parameters\":"
				    "{\"interface\":\"veth0\"}}";
	json_object *o = NULL;
	const char *error = NULL;

	ck_assert_int_eq(call_with(SERVE_REPLY, reply, sizeof(reply), 5000, &o, &error), 0);
	ck_assert_ptr_nonnull(error);
	ck_assert_str_eq(error, "io.tokend.NoSuchEntry");
	json_object_put(o);
}
END_TEST

START_TEST(test_call_sync_closed)
{
	json_object *o = NULL;
	const char *error = NULL;

	ck_assert_int_eq(call_with(SERVE_CLOSE, "", 0, 5000, &o, &error), -ECONNRESET);
	ck_assert_ptr_null(o);
	ck_assert_ptr_null(error);
}
END_TEST

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(test_call_sync_timeout)
{
	json_object *o = NULL;
	const char *error = NULL;
	long long start = now_ms(), took;

	ck_assert_int_eq(call_with(SERVE_SILENT, "", 0, 200, &o, &error), -ETIMEDOUT);
	took = now_ms() - start;
	ck_assert_int_ge(took, 190);
	ck_assert_int_lt(took, 3000);
	ck_assert_ptr_null(o);
}
END_TEST

/* Replies that are no Varlink replies. */
static const char *const bad_replies[] = {
    "{",
    "[]",
    "\"x\"",
    "{\"parameters\":{}}x",
    "{\"parameters\":{},}",
    "{\"error\":1,\"parameters\":{}}",
    "{\"error\":null}",
    "null",
    "0",
    "{\"parameters\":[]}",
    "{\"parameters\":\"x\"}",
    "{\"parameters\":{\"x\":\"\xc3\"}}",
};

START_TEST(test_call_sync_bad_reply)
{
	const char *reply = bad_replies[_i];
	json_object *o = NULL;
	const char *error = NULL;

	ck_assert_msg(call_with(SERVE_REPLY, reply, strlen(reply) + 1, 5000, &o, &error) ==
			  -EBADMSG,
		      "accepted %s", reply);
	ck_assert_ptr_null(o);
	ck_assert_ptr_null(error);
}
END_TEST

/* A server that refuses the connection answers and closes before reading:
 * the call cannot be sent, the answer must still be read. */
START_TEST(test_call_sync_answer_before_call)
{
	static const char reply[] = "{\"error\":\"io.tokend.TooManyClients\",\"parameters\":"
				    "{\"limit\":1}}";
	json_object *o = NULL;
	const char *error = NULL;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(write(sv[1], reply, sizeof(reply)), sizeof(reply));
	close(sv[1]);
	ck_assert_int_eq(varlink_call_sync(sv[0], "io.tokend.GetStatus", NULL, 5000, &o, &error),
			 0);
	ck_assert_ptr_nonnull(error);
	ck_assert_str_eq(error, "io.tokend.TooManyClients");
	json_object_put(o);
	close(sv[0]);
}
END_TEST

START_TEST(test_call_sync_peer_gone)
{
	json_object *o = NULL;
	const char *error = NULL;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	/* No SIGPIPE: the test would die of it. */
	ck_assert_int_eq(varlink_call_sync(sv[0], "io.tokend.GetStatus", NULL, 5000, &o, &error),
			 -EPIPE);
	ck_assert_ptr_null(o);
	close(sv[0]);
}
END_TEST

/* ---- Connecting -------------------------------------------------------- */

static char tmpdir[64];
static char sockpath[128];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_varlink.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sockpath, sizeof(sockpath), "%s/s.sock", tmpdir);
}

static void remove_tmpdir(void)
{
	unlink(sockpath);
	rmdir(tmpdir);
}

static int listen_at(const char *path, int backlog)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	return fd;
}

START_TEST(test_connect_errors)
{
	char longpath[200];

	make_tmpdir();
	ck_assert_int_eq(varlink_connect(sockpath), -ENOENT);
	ck_assert_int_eq(varlink_connect(""), -EINVAL);
	ck_assert_int_eq(varlink_connect_timeout("", 100), -EINVAL);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_int_eq(varlink_connect(longpath), -ENAMETOOLONG);
	/* A socket nobody listens on. */
	close(listen_at(sockpath, 1));
	ck_assert_int_eq(varlink_connect(sockpath), -ECONNREFUSED);
	remove_tmpdir();
}
END_TEST

START_TEST(test_connect_and_talk)
{
	char buf[64];
	int l, c, a;

	make_tmpdir();
	l = listen_at(sockpath, 4);
	c = varlink_connect(sockpath);
	ck_assert_int_ge(c, 0);
	a = accept(l, NULL, NULL);
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(write(c, "ping", 5), 5);
	ck_assert_int_eq(read(a, buf, sizeof(buf)), 5);
	ck_assert_str_eq(buf, "ping");
	close(a);
	close(c);
	close(l);
	remove_tmpdir();
}
END_TEST

/* With the listen backlog full, connecting gives up after the timeout. */
START_TEST(test_connect_timeout)
{
	long long start, took;
	int l, c[8], n = 0, r = 0;

	make_tmpdir();
	l = listen_at(sockpath, 0);
	/* Fill the backlog (its real size is the kernel's business). */
	while (n < 8 && (r = varlink_connect_timeout(sockpath, 100)) >= 0)
		c[n++] = r;
	ck_assert_int_eq(r, -EAGAIN);
	start = now_ms();
	ck_assert_int_eq(varlink_connect_timeout(sockpath, 300), -EAGAIN);
	took = now_ms() - start;
	ck_assert_int_ge(took, 250);
	ck_assert_int_lt(took, 3000);
	while (n > 0)
		close(c[--n]);
	close(l);
	remove_tmpdir();
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *varlink_suite(void)
{
	Suite *s = suite_create("varlink");
	TCase *tc = tcase_create("reader");

	tcase_add_test(tc, test_reader_several_in_one_feed);
	tcase_add_test(tc, test_reader_byte_by_byte);
	tcase_add_test(tc, test_reader_split_across_feeds);
	tcase_add_test(tc, test_reader_empty_message);
	tcase_add_test(tc, test_reader_exactly_max);
	tcase_add_test(tc, test_reader_over_max_one_feed);
	tcase_add_test(tc, test_reader_over_max_in_chunks);
	tcase_add_test(tc, test_reader_over_max_whole);
	tcase_add_test(tc, test_reader_over_max_after_whole_message);
	tcase_add_test(tc, test_reader_many_messages_one_feed);
	tcase_add_test(tc, test_reader_free_and_reuse);
	suite_add_tcase(s, tc);

	tc = tcase_create("call");
	tcase_add_test(tc, test_call_valid);
	tcase_add_loop_test(tc, test_call_empty_parameters, 0, N(empty_parameter_calls));
	tcase_add_test(tc, test_call_oneway_more);
	tcase_add_test(tc, test_call_json_values);
	tcase_add_loop_test(tc, test_call_invalid, 0, N(invalid_calls));
	tcase_add_test(tc, test_method_split);
	tcase_add_test(tc, test_method_split_invalid);
	suite_add_tcase(s, tc);

	tc = tcase_create("serialize");
	tcase_add_test(tc, test_serialize_call_round_trip);
	tcase_add_test(tc, test_serialize_call_no_params);
	tcase_add_test(tc, test_serialize_reply);
	tcase_add_test(tc, test_serialize_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	/* valgrind is slow; the timing tests measure their own time. */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_call_sync_reply);
	tcase_add_test(tc, test_call_sync_reply_bytewise);
	tcase_add_test(tc, test_call_sync_error);
	tcase_add_test(tc, test_call_sync_closed);
	tcase_add_test(tc, test_call_sync_timeout);
	tcase_add_loop_test(tc, test_call_sync_bad_reply, 0, N(bad_replies));
	tcase_add_test(tc, test_call_sync_answer_before_call);
	tcase_add_test(tc, test_call_sync_peer_gone);
	tcase_add_test(tc, test_connect_errors);
	tcase_add_test(tc, test_connect_and_talk);
	tcase_add_test(tc, test_connect_timeout);
	tcase_add_test(tc, test_serialize_non_utf8);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(varlink_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
