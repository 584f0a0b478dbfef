/* SPDX-License-Identifier: MIT */
/* Varlink framing and call parsing (common/varlink.c), as the server uses
 * them on what a client sends: the byte stream is fed to a varlink_reader
 * in pieces cut where the input says, every whole message taken out is
 * parsed as a call, its method split, and what the server would echo back
 * in a reply serialised and parsed again.
 *
 * Input: byte 0 picks the reader's limit: with bit 7 set, (byte & 0x7f) * 3
 * bytes, else the server's 1 MiB, and 0x40-0x4f repeat the stream up to
 * about 1.1 MB (big messages from small inputs; 1 + 97 * byte 1 times);
 * byte 1 is the number K of split bytes that follow (see chunk_len); the
 * rest is the stream.
 *
 * Oracles: the messages come out exactly as the stream splits at its NUL
 * bytes, none longer than the limit; -EMSGSIZE only when a message that
 * was not handed out is longer than the limit; parsed calls have a method
 * and an object of parameters; what is serialised parses back (strict JSON,
 * valid UTF-8) to the same method and parameters; any bytes put in a reply
 * (check_echo) come out as valid UTF-8 JSON, invalid bytes as U+00XX.
 *
 * The replies' parser (parse_reply) is static and only reachable through
 * varlink_call_sync / varlink_stream_next on a socket: not fuzzed here. */
#include <json-c/json.h>

#include "fuzz_util.h"
#include "varlink.h"

/* The reference split, read lazily: the next message the reader should hand
 * out starts at `cur`. */
struct ref {
	const char *stream;
	size_t n;
	size_t cur;
	size_t count; /* messages handed out */
};

/* Length of the segment at `at`, and whether a NUL ends it. */
static size_t seg_len(const struct ref *f, size_t at, bool *terminated)
{
	const char *nul = memchr(f->stream + at, '\0', f->n - at);

	*terminated = nul != NULL;
	return nul ? (size_t)(nul - (f->stream + at)) : f->n - at;
}

/* Is any segment from `cur` on longer than max? */
static bool big_ahead(const struct ref *f, size_t max)
{
	for (size_t at = f->cur;;) {
		bool term;
		size_t len = seg_len(f, at, &term);

		if (len > max)
			return true;
		if (!term)
			return false;
		at += len + 1;
	}
}

static json_object *parse_strict(const char *text)
{
	json_tokener *tok = json_tokener_new();
	size_t n = strlen(text);
	json_object *o;

	FUZZ_CHECK(tok, "json_tokener_new");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)n + 1);
	FUZZ_CHECK(json_tokener_get_error(tok) == json_tokener_success &&
		       json_tokener_get_parse_end(tok) == n,
		   "serialised text does not parse back: %s", text);
	json_tokener_free(tok);
	return o;
}

/* Reference UTF-8 check, written apart from varlink.c's: the length of the
 * valid sequence at p (n bytes left), or 0 (bad lead byte, short, overlong,
 * surrogate, past U+10FFFF). */
static size_t ref_utf8(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Is all of s valid UTF-8 by the reference? json-c's JSON_TOKENER_VALIDATE_UTF8
 * is laxer (it takes overlong forms such as C0 AF, surrogates, code points
 * past U+10FFFF), and replies re-encode those bytes as U+00XX: a call that
 * holds them does not come back byte for byte. */
static bool strict_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	for (size_t i = 0, k; i < n; i += k)
		if ((k = ref_utf8(p + i, n - i)) == 0)
			return false;
	return true;
}

/* Replies carry text the daemon did not check (interface names from the
 * kernel, what a client sent): whatever its bytes, the reply is valid JSON
 * in UTF-8, valid sequences come back as they were and each other byte as
 * the code point of its value. */
static void check_echo(const char *msg)
{
	const unsigned char *p = (const unsigned char *)msg;
	size_t n = strlen(msg), wn = 0, len = 0;
	json_object *o = json_object_new_object(), *reply, *params, *v;
	char *want = malloc(2 * n + 1), *out;

	FUZZ_CHECK(o && want, "malloc");
	for (size_t i = 0, k; i < n; i += k) {
		k = ref_utf8(p + i, n - i);
		if (k) {
			memcpy(want + wn, p + i, k);
			wn += k;
		} else {
			want[wn++] = (char)(0xc0 | p[i] >> 6);
			want[wn++] = (char)(0x80 | (p[i] & 0x3f));
			k = 1;
		}
	}
	want[wn] = '\0';
	json_object_object_add(o, "raw", json_object_new_string_len(msg, (int)n));
	if (strcmp(msg, "raw") != 0)
		json_object_object_add(o, msg, json_object_new_int(1));
	out = varlink_reply_serialize(o, &len);
	FUZZ_CHECK(out && len == strlen(out) + 1, "reply serialise");
	reply = parse_strict(out);
	FUZZ_CHECK(json_object_object_get_ex(reply, "parameters", &params) &&
		       json_object_object_get_ex(params, "raw", &v) &&
		       (size_t)json_object_get_string_len(v) == wn &&
		       memcmp(json_object_get_string(v), want, wn) == 0,
		   "a string of %zu bytes came back changed: %s", n, out);
	FUZZ_CHECK(strcmp(msg, "raw") == 0 || json_object_object_get_ex(params, want, NULL),
		   "a key of %zu bytes came back changed: %s", n, out);
	json_object_put(reply);
	free(out);
	free(want);
}

/* What the server does with a message: parse, split, reply. */
static void handle_message(const char *msg)
{
	struct varlink_call call, again;
	const char *why = NULL, *name = NULL;
	char iface[256] = "";
	json_object *reply, *v;
	size_t len = 0, mlen;
	char *out;
	int r;

	if (strlen(msg) <= 4096)
		check_echo(msg);
	r = varlink_call_parse(msg, &call, &why);
	if (r < 0) {
		FUZZ_CHECK(r == -EBADMSG && why && *why, "varlink_call_parse: %d", r);
		FUZZ_CHECK(!call.root && !call.method && !call.parameters,
			   "a refused call leaves pointers behind");
		/* The server's error reply carries the reason. */
		out = varlink_error_serialize("io.tokend.InvalidMessage", NULL, &len);
		FUZZ_CHECK(out && len == strlen(out) + 1, "error reply");
		free(out);
		return;
	}
	FUZZ_CHECK(call.root && call.method, "accepted call without method");
	FUZZ_CHECK(json_object_is_type(call.parameters, json_type_object),
		   "parameters are not an object");

	/* The split, into the server's buffer and into tight ones: never a
	 * byte past what it was given. */
	mlen = strlen(call.method);
	r = varlink_method_split(call.method, iface, sizeof(iface), &name);
	if (r == 0) {
		size_t ilen = strlen(iface);

		FUZZ_CHECK(ilen > 0 && ilen < mlen && call.method[ilen] == '.' &&
			       memcmp(iface, call.method, ilen) == 0 &&
			       name == call.method + ilen + 1 && *name && !strchr(name, '.'),
			   "split of \"%s\" gave \"%s\" and \"%s\"", call.method, iface, name);
	} else {
		FUZZ_CHECK(r == -EINVAL, "varlink_method_split: %d", r);
	}
	for (size_t cap = 1; cap <= mlen + 1 && cap <= 300; cap += cap < 8 ? 1 : cap / 2) {
		char *small = malloc(cap);
		int r2;

		FUZZ_CHECK(small, "malloc");
		r2 = varlink_method_split(call.method, small, cap, &name);
		if (r2 == 0)
			FUZZ_CHECK(strlen(small) < cap, "iface overflows its buffer");
		free(small);
	}

	/* The call serialised again (as tokenctl does) parses back the same
	 * (byte for byte when its text was valid UTF-8). */
	out = varlink_call_serialize(call.method, json_object_get(call.parameters), &len);
	FUZZ_CHECK(out && len == strlen(out) + 1, "call serialise");
	r = varlink_call_parse(out, &again, &why);
	FUZZ_CHECK(r == 0, "own call does not parse: %s (%s)", out, why);
	if (strict_utf8(msg)) {
		FUZZ_CHECK(strcmp(again.method, call.method) == 0, "method changed: %s", out);
		FUZZ_CHECK(json_object_equal(again.parameters, call.parameters),
			   "parameters changed: %s", out);
	}
	FUZZ_CHECK(!again.oneway && !again.more, "flags appeared: %s", out);
	varlink_call_done(&again);
	free(out);

	/* Replies echo what the client sent (method, interface, parameters). */
	v = json_object_new_object();
	json_object_object_add(v, "method", json_object_new_string(call.method));
	json_object_object_add(v, "interface", json_object_new_string(iface));
	json_object_object_add(v, "echo", json_object_get(call.parameters));
	out = varlink_error_serialize("org.varlink.service.MethodNotFound", v, &len);
	FUZZ_CHECK(out && len == strlen(out) + 1, "error serialise");
	reply = parse_strict(out);
	FUZZ_CHECK(json_object_object_get_ex(reply, "parameters", &v) &&
		       json_object_object_get_ex(v, "method", &v) &&
		       (!strict_utf8(msg) || strcmp(json_object_get_string(v), call.method) == 0),
		   "error reply lost the method: %s", out);
	json_object_put(reply);
	free(out);

	out = varlink_reply_more_serialize(json_object_get(call.parameters), call.more, &len);
	FUZZ_CHECK(out && len == strlen(out) + 1, "reply serialise");
	reply = parse_strict(out);
	FUZZ_CHECK(json_object_object_get_ex(reply, "parameters", &v) &&
		       (!strict_utf8(msg) || json_object_equal(v, call.parameters)),
		   "reply lost its parameters: %s", out);
	FUZZ_CHECK(json_object_object_get_ex(reply, "continues", NULL) == call.more,
		   "continues: %s", out);
	json_object_put(reply);
	free(out);

	varlink_call_done(&call);
	FUZZ_CHECK(!call.root, "varlink_call_done left the root");
}

/* The split points, from the input: one byte per feed (0: an empty feed,
 * up to 0xdf that many bytes, above it (b - 0xdf) KiB); when they run out,
 * the rest goes in one feed. */
struct splits {
	const uint8_t *p;
	size_t n;
};

static size_t chunk_len(struct splits *sp, size_t left)
{
	size_t n;

	if (sp->n == 0)
		return left;
	n = *sp->p <= 0xdf ? *sp->p : (size_t)(*sp->p - 0xdf) * 1024;
	sp->p++;
	sp->n--;
	return n < left ? n : left;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct varlink_reader rd;
	struct splits sp;
	struct ref f = {0};
	size_t max, n, off = 0;
	const char *stream;
	char *inflated = NULL;
	bool failed = false, term;
	uint8_t sel;

	if (size < 2 || (size_t)data[1] > size - 2)
		return 0;
	sel = data[0];
	sp = (struct splits){data + 2, data[1]};
	stream = (const char *)data + 2 + data[1];
	n = size - 2 - data[1];
	/* Small limits make -EMSGSIZE reachable; the server's is 1 MiB. */
	if (sel & 0x80)
		max = (size_t)(sel & 0x7f) * 3;
	else
		max = VARLINK_MAX_MESSAGE;
	/* Inflation: the stream repeated, so that big messages (past the
	 * reader's 64 KiB shrink, past 1 MiB) come from small inputs. All but
	 * the last copy have their NULs blanked: a few big messages, not
	 * hundreds of thousands of small ones. */
	if ((sel & 0xf0) == 0x40 && n > 0) {
		size_t reps = 1 + (size_t)data[1] * 97, total;

		if (reps > (1100u << 10) / n)
			reps = (1100u << 10) / n;
		if (reps == 0)
			reps = 1;
		total = reps * n;
		inflated = malloc(total);
		FUZZ_CHECK(inflated, "malloc");
		/* One blanked copy, then doubling memcpy: the loops stay
		 * out of the coverage counters. */
		memcpy(inflated, stream, n);
		for (char *z = inflated; (z = memchr(z, '\0', n - (size_t)(z - inflated)));)
			*z = ' ';
		for (size_t have = n; have < total - n;) {
			size_t k = have < total - n - have ? have : total - n - have;

			memcpy(inflated + have, inflated, k);
			have += k;
		}
		memcpy(inflated + total - n, stream, n);
		stream = inflated;
		n = total;
	}
	f.stream = stream;
	f.n = n;

	varlink_reader_init(&rd, max);
	while (!failed) {
		size_t k = chunk_len(&sp, n - off);
		int r = varlink_reader_feed(&rd, stream + off, k);

		if (r == -EMSGSIZE) {
			FUZZ_CHECK(big_ahead(&f, max),
				   "-EMSGSIZE from feed, but no message is over %zu", max);
			failed = true;
			break;
		}
		FUZZ_CHECK(r == 0, "varlink_reader_feed: %d", r);
		off += k;
		for (;;) {
			char *msg = NULL;
			size_t len;

			r = varlink_reader_next(&rd, &msg);
			if (r == 0)
				break;
			len = seg_len(&f, f.cur, &term);
			if (r == -EMSGSIZE) {
				FUZZ_CHECK(
				    term && len > max,
				    "-EMSGSIZE from next for a message of %zu bytes (max %zu)", len,
				    max);
				failed = true;
				break;
			}
			FUZZ_CHECK(r == 1, "varlink_reader_next: %d", r);
			FUZZ_CHECK(term && f.cur + len < off, "a message that was never sent");
			FUZZ_CHECK(len <= max && memcmp(msg, stream + f.cur, len) == 0 &&
				       msg[len] == '\0',
				   "message %zu differs from the stream", f.count);
			f.cur += len + 1;
			f.count++;
			/* Big ones, and the many an inflated stream holds,
			 * only test the framing. */
			if (f.count <= 32 && len <= 65536)
				handle_message(msg);
			free(msg);
		}
		if (off == n)
			break;
	}
	if (!failed) {
		size_t len = seg_len(&f, f.cur, &term);

		FUZZ_CHECK(!term, "message %zu was never handed out", f.count);
		FUZZ_CHECK(len <= max, "an unterminated %zu bytes kept (max %zu)", len, max);
		FUZZ_CHECK(varlink_reader_empty(&rd) == (len == 0),
			   "reader empty %d with %zu bytes unterminated", varlink_reader_empty(&rd),
			   len);
	}
	varlink_reader_free(&rd);
	FUZZ_CHECK(varlink_reader_empty(&rd) && rd.max == max, "varlink_reader_free");
	free(inflated);
	return 0;
}
