/* SPDX-License-Identifier: MIT */
#include "varlink.h"

#include <errno.h>
#include <poll.h>
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

int varlink_reader_feed(struct varlink_reader *r, const void *data, size_t n)
{
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *p;

		while (cap < r->len + n)
			cap *= 2;
		/* Never hold more than one maximal message plus the read that
		 * overflowed it. */
		if (cap > r->max + 1 + 65536)
			cap = r->max + 1 + 65536;
		if (cap < r->len + n)
			return -EMSGSIZE;
		p = realloc(r->buf, cap);
		if (!p)
			return -ENOMEM;
		r->buf = p;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	if (!memchr(r->buf, '\0', r->len) && r->len > r->max)
		return -EMSGSIZE;
	return 0;
}

int varlink_reader_next(struct varlink_reader *r, char **ret)
{
	char *end = r->len ? memchr(r->buf, '\0', r->len) : NULL;
	size_t n;
	char *msg;

	if (!end)
		return 0;
	n = (size_t)(end - r->buf);
	if (n > r->max)
		return -EMSGSIZE;
	msg = malloc(n + 1);
	if (!msg)
		return -ENOMEM;
	memcpy(msg, r->buf, n + 1);
	memmove(r->buf, end + 1, r->len - n - 1);
	r->len -= n + 1;
	*ret = msg;
	return 1;
}

int varlink_call_parse(const char *text, struct varlink_call *call, const char **why)
{
	json_tokener *tok = json_tokener_new();
	json_object *root, *v;
	size_t n = strlen(text);

	*call = (struct varlink_call){0};
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, text, (int)n);
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != n) {
		json_tokener_free(tok);
		json_object_put(root);
		*why = "message is not valid JSON";
		return -EBADMSG;
	}
	json_tokener_free(tok);
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
	if (json_object_object_get_ex(root, "parameters", &v) && !json_object_is_type(v, json_type_null)) {
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

static char *serialize(json_object *msg, size_t *ret_len)
{
	const char *s;
	size_t n;
	char *out = NULL;

	if (!msg)
		return NULL;
	s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s) {
		n = strlen(s);
		out = malloc(n + 1);
		if (out) {
			memcpy(out, s, n + 1);
			*ret_len = n + 1;
		}
	}
	json_object_put(msg);
	return out;
}

static json_object *params_or_empty(json_object *params)
{
	return params ? params : json_object_new_object();
}

char *varlink_reply_serialize(json_object *params, size_t *ret_len)
{
	json_object *msg = json_object_new_object();

	if (!msg) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(msg, "parameters", params_or_empty(params));
	return serialize(msg, ret_len);
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

char *varlink_call_serialize(const char *method, json_object *params, size_t *ret_len)
{
	json_object *msg = json_object_new_object();

	if (!msg) {
		json_object_put(params);
		return NULL;
	}
	json_object_object_add(msg, "method", json_object_new_string(method));
	json_object_object_add(msg, "parameters", params_or_empty(params));
	return serialize(msg, ret_len);
}

int varlink_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
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
	long long left = deadline - now_ms();
	int r;

	if (left < 0)
		return -ETIMEDOUT;
	r = poll(&p, 1, (int)left);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

int varlink_call_sync(int fd, const char *method, json_object *params, int timeout_ms,
		      json_object **ret_reply, const char **ret_error)
{
	long long deadline = now_ms() + timeout_ms;
	struct varlink_reader rd;
	size_t len, off = 0;
	char *out = varlink_call_serialize(method, params, &len);
	char *msg = NULL;
	json_object *reply, *e;
	int r;

	*ret_reply = NULL;
	*ret_error = NULL;
	if (!out)
		return -ENOMEM;
	while (off < len) {
		ssize_t n = send(fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN) {
			r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0)
				goto out_free;
			continue;
		}
		if (n < 0) {
			r = -errno;
			goto out_free;
		}
		off += (size_t)n;
	}
	free(out);
	out = NULL;

	varlink_reader_init(&rd, VARLINK_MAX_MESSAGE * 64);
	for (;;) {
		char buf[65536];
		ssize_t n;

		r = varlink_reader_next(&rd, &msg);
		if (r != 0)
			break;
		r = wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			break;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0) {
			r = -ECONNRESET;
			break;
		}
		r = varlink_reader_feed(&rd, buf, (size_t)n);
		if (r < 0)
			break;
	}
	varlink_reader_free(&rd);
	if (r < 0)
		return r;
	reply = json_tokener_parse(msg);
	free(msg);
	if (!reply || !json_object_is_type(reply, json_type_object)) {
		json_object_put(reply);
		return -EBADMSG;
	}
	if (json_object_object_get_ex(reply, "error", &e) && json_object_is_type(e, json_type_string))
		*ret_error = json_object_get_string(e);
	*ret_reply = reply;
	return 0;
out_free:
	free(out);
	return r;
}
