/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

/* The control socket: Varlink over a Unix stream socket, peer credentials
 * for access control, and the method table. */

struct daemon;
struct event;
struct server;

struct server_options {
	const char *path;
	const char *socket_group; /* may read; NULL or missing: the daemon's group */
	const char *admin_group;  /* may change; NULL or missing: root only */
	unsigned max_clients;
	int listen_fds; /* sd_listen_fds(), read at the very start */
	uint64_t client_timeout_usec;
	size_t reply_backlog; /* bytes of unread replies, all clients together */
};

/* Listen on the socket systemd passed (sd_listen_fds), or create `path`
 * with mode 0660 and its group from the start. */
int server_new(struct daemon *d, sd_event *event, const struct server_options *o,
	       struct server **ret);
void server_free(struct server *s);
unsigned server_client_count(const struct server *s);
/* Where clients connect: the socket systemd passed, or our own file. */
const char *server_path(const struct server *s);

/* Send an event to every client that called Monitor. */
void server_broadcast_event(struct server *s, const struct event *e);
