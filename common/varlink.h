/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* Varlink framing: every message is one JSON object followed by a NUL byte.
 * A call is {"method": "iface.Method", "parameters": {...}, "oneway"?: bool,
 * "more"?: bool}; a reply is {"parameters": {...}} or
 * {"error": "iface.Error", "parameters": {...}}. */

#define VARLINK_MAX_MESSAGE (1024 * 1024)

#define TOKEND_INTERFACE	  "io.tokend"
#define VARLINK_SERVICE_INTERFACE "org.varlink.service"

/* Accumulates bytes from a stream and hands out complete messages. */
struct varlink_reader {
	char *buf;
	size_t len; /* bytes buffered, from buf + start */
	size_t cap;
	size_t max;   /* largest message accepted, NUL excluded */
	size_t start; /* bytes at buf already handed out */
	size_t tail;  /* offset after start of the unterminated message at the end; 0: no NUL */
};

void varlink_reader_init(struct varlink_reader *r, size_t max);
void varlink_reader_free(struct varlink_reader *r);
/* Append bytes. -ENOMEM, or -EMSGSIZE when an unterminated message already
 * exceeds the limit (the stream cannot be resynchronised: close it); nothing
 * is appended then. */
int varlink_reader_feed(struct varlink_reader *r, const void *data, size_t n);
/* 1 and a malloc'd NUL-terminated message in *ret, 0 when no whole message is
 * buffered yet, -ENOMEM, or -EMSGSIZE when the next message exceeds the limit
 * (it came whole in one feed; close the stream). */
int varlink_reader_next(struct varlink_reader *r, char **ret);
bool varlink_reader_empty(const struct varlink_reader *r);

struct varlink_call {
	json_object *root;	 /* owns everything below */
	const char *method;	 /* "iface.Method" */
	json_object *parameters; /* always an object (empty when absent) */
	bool oneway;
	bool more;
};

/* Parse a call. On -EBADMSG *why names the problem (static text). */
int varlink_call_parse(const char *text, struct varlink_call *call, const char **why);
void varlink_call_done(struct varlink_call *call);

/* Split "a.b.Method" into the interface ("a.b", copied to iface) and the
 * method name. -EINVAL when the name has no interface part. */
int varlink_method_split(const char *full, char *iface, size_t iface_len, const char **ret_name);

/* Serialise a message (takes ownership of params, which may be NULL) into a
 * malloc'd buffer including the terminating NUL; *ret_len counts the NUL. */
char *varlink_reply_serialize(json_object *params, size_t *ret_len);
/* A reply to a call with "more": "continues" on all but the last. */
char *varlink_reply_more_serialize(json_object *params, bool continues, size_t *ret_len);
char *varlink_error_serialize(const char *error, json_object *params, size_t *ret_len);
char *varlink_call_serialize(const char *method, json_object *params, size_t *ret_len);

/* Blocking client helpers (tokenctl, tests). Return a socket or -errno
 * (-EINVAL for an empty path). */
int varlink_connect(const char *path);
/* Gives up with -EAGAIN when the server's listen backlog stays full for
 * timeout_ms; a negative timeout waits as long as it takes. */
int varlink_connect_timeout(const char *path, int timeout_ms);
/* Send one call (takes ownership of params, which may be NULL) and wait for
 * its reply: timeout_ms for it to begin, and as long again after each part
 * of it that arrives (a long listing is not cut off). On success *ret_reply is the whole reply
 * object; *ret_error points into it when the reply is an error. -ETIMEDOUT, -ECONNRESET when the
 * server closed without replying, -EBADMSG when the reply is not a Varlink
 * reply (not a JSON object, "error" not a string, "parameters" not an
 * object), or another -errno. */
int varlink_call_sync(int fd, const char *method, json_object *params, int timeout_ms,
		      json_object **ret_reply, const char **ret_error);

/* A call with "more": its replies read one by one. */
struct varlink_stream {
	int fd;
	struct varlink_reader rd;
};
int varlink_stream_start(struct varlink_stream *st, int fd, const char *method, json_object *params,
			 int timeout_ms);
/* The next reply (a negative timeout waits for ever): 1 when more follow,
 * 0 for the last one, or -errno as varlink_call_sync. */
int varlink_stream_next(struct varlink_stream *st, int timeout_ms, json_object **ret_reply,
			const char **ret_error);
void varlink_stream_done(struct varlink_stream *st);
