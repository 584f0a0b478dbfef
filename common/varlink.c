/* SPDX-License-Identifier: MIT */
#include "varlink.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void varlink_reader_init(struct varlink_reader *r, size_t max)
{
	*r = (struct varlink_reader){.max = max};
}

void varlink_reader_free(struct varlink_reader *r)
{
	free(r->buf);
	*r = (struct varlink_reader){.max = r->max};
}

bool varlink_reader_empty(const struct varlink_reader *r)
{
	return r->len == 0;
}

/* Room for n more bytes after the buffered ones. Consumed bytes before them
 * are reclaimed when they are at least as many as the buffered ones (so each
 * byte is moved about once), and always before growing. */
static int reader_make_room(struct varlink_reader *r, size_t n)
{
	size_t need, cap;
	char *p;

	if (n <= r->cap - r->start - r->len)
		return 0;
	if (r->start > 0 && (r->start >= r->len || n > r->cap - r->len)) {
		memmove(r->buf, r->buf + r->start, r->len);
		r->start = 0;
		if (n <= r->cap - r->len)
			return 0;
	}
	if (n > SIZE_MAX - r->start - r->len)
		return -ENOMEM;
	need = r->start + r->len + n;
	cap = r->cap ? r->cap : 4096;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(r->buf, cap);
	if (!p)
		return -ENOMEM;
	r->buf = p;
	r->cap = cap;
	return 0;
}

int varlink_reader_feed(struct varlink_reader *r, const void *data, size_t n)
{
	const char *nul = n ? memrchr(data, '\0', n) : NULL;
	size_t tail;
	int ret;

	/* Only the new bytes are searched: a peer trickling a message byte by
	 * byte must not make every feed rescan the whole buffer. What counts
	 * against the limit is the unterminated message at the end, however
	 * many whole messages come before it. Refuse before copying, so an
	 * oversized message never grows the buffer. */
	tail = nul ? n - (size_t)(nul - (const char *)data) - 1 : r->len - r->tail + n;
	if (tail > r->max)
		return -EMSGSIZE;
	ret = reader_make_room(r, n);
	if (ret < 0)
		return ret;
	if (n > 0)
		memcpy(r->buf + r->start + r->len, data, n);
	r->len += n;
	r->tail = r->len - tail;
	return 0;
}

int varlink_reader_next(struct varlink_reader *r, char **ret)
{
	char *begin, *end, *msg;
	size_t n;

	/* r->tail == 0: no NUL is buffered, nothing to scan (and buf may be
	 * NULL). */
	if (r->tail == 0)
		return 0;
	begin = r->buf + r->start;
	end = memchr(begin, '\0', r->tail);
	n = (size_t)(end - begin);
	/* A whole message can arrive in one feed, so the limit is checked here
	 * too. */
	if (n > r->max)
		return -EMSGSIZE;
	msg = malloc(n + 1);
	if (!msg)
		return -ENOMEM;
	memcpy(msg, begin, n + 1);
	r->start += n + 1;
	r->len -= n + 1;
	r->tail -= n + 1;
	if (r->len == 0)
		r->start = 0;
	/* Do not keep a big buffer per idle connection after one big message. */
	if (r->len == 0 && r->cap > 65536) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	*ret = msg;
	return 1;
}

/* One JSON value filling all of text (whitespace aside); *ret is NULL for
 * JSON's null. Strict mode refuses what JSON does not allow (trailing commas,
 * garbage after the value), and invalid UTF-8 would otherwise be echoed back
 * in replies. The NUL is passed too: it tells json-c that a bare "true" or
 * "1" is complete. */
static int parse_json(const char *text, json_object **ret)
{
	json_tokener *tok = json_tokener_new();
	size_t n = strlen(text);
	json_object *root;

	*ret = NULL;
	if (!tok)
		return -ENOMEM;
	if (n >= INT_MAX) {
		json_tokener_free(tok);
		return -EBADMSG;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, text, (int)n + 1);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n) {
		json_tokener_free(tok);
		json_object_put(root);
		return -EBADMSG;
	}
	json_tokener_free(tok);
	*ret = root;
	return 0;
}

int varlink_call_parse(const char *text, struct varlink_call *call, const char **why)
{
	json_object *root, *v;
	int r;

	*call = (struct varlink_call){0};
	r = parse_json(text, &root);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		*why = "message is not valid JSON";
		return -EBADMSG;
	}
	if (!json_object_is_type(root, json_type_object)) {
		*why = "message is not a JSON object";
		goto bad;
	}
	if (!json_object_object_get_ex(root, "method", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		*why = "\"method\" is missing or not a string";
		goto bad;
	}
	call->method = json_object_get_string(v);
	if (json_object_object_get_ex(root, "parameters", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object)) {
			*why = "\"parameters\" is not an object";
			goto bad;
		}
		call->parameters = v;
	} else {
		call->parameters = json_object_new_object();
		if (!call->parameters) {
			json_object_put(root);
			return -ENOMEM;
		}
		json_object_object_add(root, "parameters", call->parameters);
	}
	if (json_object_object_get_ex(root, "oneway", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			*why = "\"oneway\" is not a boolean";
			goto bad;
		}
		call->oneway = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(root, "more", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			*why = "\"more\" is not a boolean";
			goto bad;
		}
		call->more = json_object_get_boolean(v);
	}
	call->root = root;
	return 0;
bad:
	json_object_put(root);
	*call = (struct varlink_call){0};
	return -EBADMSG;
}

void varlink_call_done(struct varlink_call *call)
{
	json_object_put(call->root);
	*call = (struct varlink_call){0};
}

int varlink_method_split(const char *full, char *iface, size_t iface_len, const char **ret_name)
{
	const char *dot = strrchr(full, '.');
	size_t n;

	if (!dot || dot == full || dot[1] == '\0')
		return -EINVAL;
	n = (size_t)(dot - full);
	if (n >= iface_len)
		return -EINVAL;
	memcpy(iface, full, n);
	iface[n] = '\0';
	*ret_name = dot + 1;
	return 0;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0. Overlong forms,
 * surrogates and code points past U+10FFFF are not valid. */
static size_t utf8_seq_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f))
			return 0;
		return 3;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/* json-c copies string bytes as they are, so a name the kernel gave in
 * bytes that are not UTF-8 would make the message invalid JSON for every
 * client. Such bytes can only sit inside strings (the rest is ASCII), where
 * each becomes \u00XX. The result is malloc'd with its NUL; *ret_len counts
 * the NUL. */
static char *utf8_clean_dup(const char *s, size_t n, size_t *ret_len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t bad = 0, k;
	unsigned char high = 0;
	char *out, *o;

	/* Nearly always plain ASCII: one quick pass finds out, and the text
	 * is copied as it is. */
	for (size_t i = 0; i < n; i++)
		high |= p[i];
	if (!(high & 0x80)) {
		out = malloc(n + 1);
		if (!out)
			return NULL;
		memcpy(out, s, n + 1);
		*ret_len = n + 1;
		return out;
	}
	for (size_t i = 0; i < n; i += k)
		if ((k = utf8_seq_len(p + i)) == 0) {
			bad++;
			k = 1;
		}
	out = malloc(n + bad * 5 + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < n; i += k) {
		k = utf8_seq_len(p + i);
		if (k == 0) {
			o += snprintf(o, 7, "\\u%04x", p[i]);
			k = 1;
		} else {
			memcpy(o, p + i, k);
			o += k;
		}
	}
	*o = '\0';
	*ret_len = (size_t)(o - out) + 1;
	return out;
}

static char *serialize(json_object *msg, size_t *ret_len)
{
	const char *s;
	char *out = NULL;
	size_t n = 0;

	if (!msg)
		return NULL;
	s = json_object_to_json_string_length(
	    msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	if (s)
		out = utf8_clean_dup(s, n, ret_len);
	json_object_put(msg);
	return out;
}

static json_object *params_or_empty(json_object *params)
{
	return params ? params : json_object_new_object();
}

char *varlink_reply_more_serialize(json_object *params, bool continues, size_t *ret_len)
{
	json_object *msg = json_object_new_object();

	if (!msg) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(msg, "parameters", params_or_empty(params));
	if (continues)
		json_object_object_add(msg, "continues", json_object_new_boolean(true));
	return serialize(msg, ret_len);
}

char *varlink_reply_serialize(json_object *params, size_t *ret_len)
{
	return varlink_reply_more_serialize(params, false, ret_len);
}

char *varlink_error_serialize(const char *error, json_object *params, size_t *ret_len)
{
	json_object *msg = json_object_new_object();

	if (!msg) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(msg, "error", json_object_new_string(error));
	json_object_object_add(msg, "parameters", params_or_empty(params));
	return serialize(msg, ret_len);
}

static char *call_serialize(const char *method, json_object *params, bool more, size_t *ret_len)
{
	json_object *msg = json_object_new_object();

	if (!msg) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(msg, "method", json_object_new_string(method));
	json_object_object_add(msg, "parameters", params_or_empty(params));
	if (more)
		json_object_object_add(msg, "more", json_object_new_boolean(true));
	return serialize(msg, ret_len);
}

char *varlink_call_serialize(const char *method, json_object *params, size_t *ret_len)
{
	return call_serialize(method, params, false, ret_len);
}

int varlink_connect_timeout(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	int fd;

	/* An empty path would name an abstract socket, not a file. */
	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* connect() on a Unix socket waits for room in a full listen backlog for
	 * as long as the send timeout says; it then fails with EAGAIN. */
	if (timeout_ms >= 0) {
		struct timeval tv = {.tv_sec = timeout_ms / 1000,
				     .tv_usec = (timeout_ms % 1000) * 1000};
		if (tv.tv_sec == 0 && tv.tv_usec == 0)
			tv.tv_usec = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sa,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (timeout_ms >= 0) {
		struct timeval none = {0};
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
	}
	return fd;
}

int varlink_connect(const char *path)
{
	return varlink_connect_timeout(path, -1);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int r;

	do {
		long long left = deadline - now_ms();

		if (left < 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

static int send_all(int fd, const char *data, size_t len, long long deadline)
{
	size_t off = 0;
	int r;

	while (off < len) {
		ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Read until one whole message is buffered; *ret is malloc'd. What
 * follows it stays in rd for the next call. */
/* idle_ms > 0: the deadline moves on by that much whenever bytes arrive (a
 * long reply that keeps coming is not cut off). */
static int recv_next(struct varlink_reader *rd, int fd, long long deadline, int idle_ms, char **ret)
{
	int r;

	for (;;) {
		char buf[65536];
		ssize_t n;

		r = varlink_reader_next(rd, ret);
		if (r != 0)
			break;
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			break;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			r = -ECONNRESET;
			break;
		}
		r = varlink_reader_feed(rd, buf, (size_t)n);
		if (r < 0)
			break;
		if (idle_ms > 0)
			deadline = now_ms() + idle_ms;
	}
	return r < 0 ? r : 0;
}

static int recv_message(int fd, long long deadline, int idle_ms, char **ret)
{
	struct varlink_reader rd;
	int r;

	/* Replies (a long ListTokens) may exceed what a call may be. */
	varlink_reader_init(&rd, VARLINK_MAX_MESSAGE * 64);
	r = recv_next(&rd, fd, deadline, idle_ms, ret);
	varlink_reader_free(&rd);
	return r;
}

/* A reply is an object; "error", when present, a string; "parameters", when
 * present, an object or null. Anything else is not a Varlink reply. */
static int parse_reply(const char *text, json_object **ret_reply, const char **ret_error)
{
	json_object *reply, *v;
	int r;

	r = parse_json(text, &reply);
	if (r < 0)
		return r;
	if (!json_object_is_type(reply, json_type_object))
		goto bad;
	if (json_object_object_get_ex(reply, "error", &v)) {
		if (!json_object_is_type(v, json_type_string))
			goto bad;
		*ret_error = json_object_get_string(v);
	}
	if (json_object_object_get_ex(reply, "parameters", &v) &&
	    !json_object_is_type(v, json_type_null) && !json_object_is_type(v, json_type_object))
		goto bad;
	*ret_reply = reply;
	return 0;
bad:
	*ret_error = NULL;
	json_object_put(reply);
	return -EBADMSG;
}

int varlink_call_sync(int fd, const char *method, json_object *params, int timeout_ms,
		      json_object **ret_reply, const char **ret_error)
{
	long long deadline = now_ms() + timeout_ms;
	char *out, *msg = NULL;
	size_t len;
	int r, sent;

	*ret_reply = NULL;
	*ret_error = NULL;
	out = varlink_call_serialize(method, params, &len);
	if (!out)
		return -ENOMEM;
	sent = send_all(fd, out, len, deadline);
	free(out);
	/* A server that refuses a connection (too many clients) sends its error
	 * and closes without reading: the send fails, but the reply is there. */
	if (sent < 0 && sent != -EPIPE && sent != -ECONNRESET)
		return sent;
	r = recv_message(fd, deadline, timeout_ms, &msg);
	if (r < 0)
		return sent < 0 ? sent : r;
	r = parse_reply(msg, ret_reply, ret_error);
	free(msg);
	return r;
}

int varlink_stream_start(struct varlink_stream *st, int fd, const char *method, json_object *params,
			 int timeout_ms)
{
	size_t len;
	char *out = call_serialize(method, params, true, &len);
	int r;

	if (!out)
		return -ENOMEM;
	st->fd = fd;
	varlink_reader_init(&st->rd, VARLINK_MAX_MESSAGE * 64);
	r = send_all(fd, out, len, now_ms() + timeout_ms);
	free(out);
	return r;
}

int varlink_stream_next(struct varlink_stream *st, int timeout_ms, json_object **ret_reply,
			const char **ret_error)
{
	long long deadline = timeout_ms < 0 ? LLONG_MAX : now_ms() + timeout_ms;
	json_object *v;
	char *msg = NULL;
	int r;

	*ret_reply = NULL;
	*ret_error = NULL;
	r = recv_next(&st->rd, st->fd, deadline, 0, &msg);
	if (r < 0)
		return r;
	r = parse_reply(msg, ret_reply, ret_error);
	free(msg);
	if (r < 0)
		return r;
	return json_object_object_get_ex(*ret_reply, "continues", &v) &&
	       json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

void varlink_stream_done(struct varlink_stream *st)
{
	varlink_reader_free(&st->rd);
}
