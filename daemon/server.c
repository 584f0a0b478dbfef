/* SPDX-License-Identifier: MIT */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "event.h"
#include "log.h"
#include "varlink.h"

/* A connection gets its calls answered one at a time: the next call is read
 * only once the reply before it has gone to the kernel. So one reply is all
 * a connection holds, as large as what tokend holds (10,000 associations:
 * about 15 MiB). The replies waiting for all clients together are capped
 * (reply-backlog-mib); past that a call is answered with io.tokend.Busy. */
/* Calls handled for one connection in one turn of the loop, so that a
 * client with many calls in one write does not keep the others waiting. */
#define SERVER_CALLS_PER_TURN 64
/* A monitor may fall this far behind; all monitors together this far. */
#define SERVER_MAX_MONITOR_BACKLOG  (1024 * 1024)
#define SERVER_MAX_MONITORS_BACKLOG (32 * 1024 * 1024)
#define SERVER_MAX_GROUPS	    256

struct client {
	struct server *server;
	int fd;
	sd_event_source *io;
	sd_event_source *timer;
	struct varlink_reader in;
	char *out;
	size_t out_len, out_off;
	bool closing;	 /* close once the output is flushed */
	bool oneway;	 /* the call being handled gets no reply */
	bool more;	 /* the call being handled asked for several replies */
	bool monitoring; /* gets every event until it hangs up */
	bool eof;	 /* the client shut its side: read no more, answer what was asked */
	bool unread;	 /* calls wait in the reader: handle them on the next turn */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	gid_t groups[SERVER_MAX_GROUPS];
	int n_groups;
	struct client *next, *prev;
};

struct server {
	struct daemon *daemon;
	sd_event *event;
	struct server_options opts;
	char *path;
	bool own_path; /* we created the socket file: remove it on exit */
	int fd;
	sd_event_source *listen_source;
	char *socket_group, *admin_group; /* owned; opts points at them */
	gid_t admin_gid;
	bool have_admin_gid;
	struct client *clients;
	unsigned n_clients;
	unsigned n_monitors;
	size_t queued;		       /* reply bytes not yet sent, all connections but monitors */
	sd_event_source *accept_pause; /* out of descriptors: accept again later */
	struct log_ratelimit accept_rl;
	struct log_ratelimit busy_rl;
};

static void client_free(struct client *c)
{
	struct server *s;

	if (!c)
		return;
	s = c->server;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_clients--;
	if (c->monitoring)
		s->n_monitors--;
	else
		s->queued -= c->out_len - c->out_off;
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	close(c->fd);
	varlink_reader_free(&c->in);
	free(c->out);
	free(c);
}

/* --- output ------------------------------------------------------------ */

static size_t client_backlog(const struct client *c)
{
	return c->out_len - c->out_off;
}

static void client_watch(struct client *c)
{
	/* Read only when nothing waits to be sent and no call waits in the
	 * reader: one call at a time. Nothing more is read from a connection
	 * being closed or shut by the client: unread input there must not
	 * wake the loop again and again. Calls left for the next turn wake it
	 * through EPOLLOUT (a socket with room is writable at once). */
	bool want_in = !c->closing && !c->eof && !c->unread && client_backlog(c) == 0;

	sd_event_source_set_io_events(c->io, (want_in ? EPOLLIN : 0) |
						 (client_backlog(c) || c->unread ? EPOLLOUT : 0));
}

/* Sends what the socket takes. Returns 1 when some of it was sent, 0 when
 * none (nothing to send, or no room). */
static int client_flush(struct client *c)
{
	size_t before = c->out_off;

	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -errno;
		}
		c->out_off += (size_t)n;
	}
	if (!c->monitoring)
		c->server->queued -= c->out_off - before;
	if (c->out_off == c->out_len) {
		/* Sent: the buffer goes too (a listing may have made it many
		 * MiB; an idle connection holds nothing). */
		free(c->out);
		c->out = NULL;
		c->out_off = c->out_len = 0;
		if (c->closing)
			return -ECONNRESET;
	}
	client_watch(c);
	return c->out_off != before ? 1 : 0;
}

static int client_queue(struct client *c, char *msg, size_t len)
{
	char *p;

	if (!msg)
		return -ENOMEM;
	if (c->oneway) {
		free(msg);
		return 0;
	}
	if (c->out_len == 0) { /* the usual case: the message becomes the buffer */
		free(c->out);
		c->out = msg;
		c->out_off = 0;
		c->out_len = len;
		if (!c->monitoring)
			c->server->queued += len;
		return 0;
	}
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	p = realloc(c->out, c->out_len + len);
	if (!p) {
		free(msg);
		return -ENOMEM;
	}
	c->out = p;
	memcpy(c->out + c->out_len, msg, len);
	c->out_len += len;
	if (!c->monitoring)
		c->server->queued += len;
	free(msg);
	return 0;
}

static int reply(struct client *c, json_object *params)
{
	size_t len = 0;
	char *msg = varlink_reply_serialize(params, &len);

	return client_queue(c, msg, len);
}

static json_object *event_json(const struct event *e)
{
	json_object *o = json_object_new_object();
	time_t secs = (time_t)(e->realtime_usec / 1000000);
	struct tm tm;
	char when[64];

	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%06uZ",
		 (unsigned)(e->realtime_usec % 1000000));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "level", json_object_new_string(event_level_name(e->level)));
	json_object_object_add(o, "kind", json_object_new_string(event_kind_name(e->kind)));
	json_object_object_add(o, "object", e->object ? json_object_new_string(e->object) : NULL);
	json_object_object_add(o, "event", json_object_new_string(e->name));
	json_object_object_add(o, "message", json_object_new_string(e->message));
	return o;
}

/* Varlink "more": every reply but the last says "continues"; a monitor's
 * replies all do, it ends when the client hangs up. */
static int reply_continues(struct client *c, json_object *params)
{
	size_t len = 0;
	char *msg = varlink_reply_more_serialize(params, true, &len);

	return client_queue(c, msg, len);
}

void server_broadcast_event(struct server *s, const struct event *e)
{
	struct client *c, *next;
	size_t total = 0;

	if (!s || s->n_monitors == 0)
		return;
	for (c = s->clients; c; c = next) {
		size_t backlog;

		next = c->next;
		if (!c->monitoring)
			continue;
		backlog = c->out_len - c->out_off;
		total += backlog;
		/* A watcher that stops reading is dropped, not waited for; so
		 * is one that would take the monitors past their common cap. */
		if (backlog > SERVER_MAX_MONITOR_BACKLOG || total > SERVER_MAX_MONITORS_BACKLOG ||
		    reply_continues(c, event_json(e)) < 0 || client_flush(c) < 0) {
			log_notice("monitor of uid %u pid %d dropped: it does not read its events",
				   (unsigned)c->uid, (int)c->pid);
			client_free(c);
		}
	}
}

static int reply_error(struct client *c, const char *error, json_object *params)
{
	size_t len = 0;
	char *msg = varlink_error_serialize(error, params, &len);

	return client_queue(c, msg, len);
}

/* --- access ------------------------------------------------------------ */

static bool client_is_admin(const struct client *c)
{
	const struct server *s = c->server;

	if (c->uid == 0)
		return true;
	if (!s->have_admin_gid)
		return false;
	if (c->gid == s->admin_gid)
		return true;
	for (int i = 0; i < c->n_groups; i++)
		if (c->groups[i] == s->admin_gid)
			return true;
	return false;
}

static int client_read_creds(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pid = cred.pid;
	len = sizeof(c->groups);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) < 0) {
		/* ERANGE: more groups than we keep; the primary group and
		 * uid still count. */
		c->n_groups = 0;
		return 0;
	}
	c->n_groups = (int)(len / sizeof(gid_t));
	return 0;
}

/* --- dispatch ---------------------------------------------------------- */

enum param_type { P_STRING, P_STRING_OR_NULL };

struct param_spec {
	const char *name;
	enum param_type type;
	bool required;
};

/* Refuse unknown, missing and mistyped parameters. */
static int check_params(struct client *c, json_object *params, const struct param_spec *spec)
{
	json_object_object_foreach(params, key, val)
	{
		const struct param_spec *p = spec;
		bool ok;

		while (p->name && strcmp(p->name, key) != 0)
			p++;
		if (!p->name)
			goto bad;
		ok = json_object_is_type(val, json_type_string) ||
		     (p->type == P_STRING_OR_NULL && json_object_is_type(val, json_type_null));
		if (!ok)
			goto bad;
		continue;
	bad:
		reply_error(c, "org.varlink.service.InvalidParameter",
			    daemon_error_params(p->name ? "parameter has the wrong type"
							: "unknown parameter",
						"parameter", json_object_new_string(key), NULL));
		return -EINVAL;
	}
	for (const struct param_spec *p = spec; p->name; p++)
		if (p->required && !json_object_object_get_ex(params, p->name, NULL)) {
			reply_error(c, "org.varlink.service.InvalidParameter",
				    daemon_error_params("missing parameter", "parameter",
							json_object_new_string(p->name), NULL));
			return -EINVAL;
		}
	return 0;
}

static const char *param_str(json_object *params, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(params, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

typedef int (*op_read_t)(struct daemon *d, const char *ifname, json_object **ret,
			 const char **ret_error);
typedef int (*op_change_t)(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			   json_object **ret, const char **ret_error);

static const struct param_spec spec_iface[] = {{"interface", P_STRING_OR_NULL, false}, {0}};
static const struct param_spec spec_set[] = {
    {"interface", P_STRING_OR_NULL, false}, {"token", P_STRING, true}, {0}};
static const struct param_spec spec_none[] = {{0}};
static const struct param_spec spec_name_opt[] = {{"name", P_STRING_OR_NULL, false}, {0}};
static const struct param_spec spec_name[] = {{"name", P_STRING, true}, {0}};

static int finish(struct client *c, int r, json_object *out, const char *error)
{
	if (r < 0)
		return reply_error(c, error ? error : "io.tokend.InternalError", out);
	return reply(c, out);
}

static int permission_denied(struct client *c, const char *method)
{
	const struct server *s = c->server;
	char msg[256];

	if (s->have_admin_gid)
		snprintf(msg, sizeof(msg),
			 "%s needs root or membership of group %s (uid %u is neither)", method,
			 s->opts.admin_group, (unsigned)c->uid);
	else
		snprintf(msg, sizeof(msg),
			 "%s needs root or membership of group %s, which does not exist on "
			 "this host (create it: systemd-sysusers, or groupadd --system %s)",
			 method, s->opts.admin_group ? s->opts.admin_group : "tokend-admin",
			 s->opts.admin_group ? s->opts.admin_group : "tokend-admin");
	log_notice("refused %s from uid %u pid %d: not an admin", method, (unsigned)c->uid,
		   (int)c->pid);
	return reply_error(
	    c, "io.tokend.PermissionDenied",
	    daemon_error_params(
		msg, "uid", json_object_new_int64(c->uid), "required",
		json_object_new_string(s->opts.admin_group ? s->opts.admin_group : "root"), NULL));
}

static int start_monitor(struct client *c)
{
	json_object *o;

	if (!c->more)
		return reply_error(c, "org.varlink.service.ExpectedMore",
				   daemon_error_params("Monitor streams events: call it with "
						       "\"more\": true",
						       NULL));
	if (c->monitoring)
		return 0;
	c->monitoring = true;
	c->server->n_monitors++;
	log_debug("uid %u pid %d monitors events", (unsigned)c->uid, (int)c->pid);
	/* The first reply says the stream is live: nothing after it is missed. */
	o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string("monitoring"));
	json_object_object_add(o, "version", json_object_new_string(TOKEND_VERSION));
	return reply_continues(c, o);
}

static int dispatch_tokend(struct client *c, const char *name, json_object *params)
{
	static const struct {
		const char *name;
		op_change_t op;
	} changes[] = {
	    {"DeleteToken", daemon_delete_token},
	    {"FlushTokens", daemon_flush_tokens},
	    {"ResumeToken", daemon_resume_token},
	};
	struct daemon *d = c->server->daemon;
	struct daemon_caller who = {.uid = c->uid, .pid = c->pid};
	json_object *out = NULL;
	const char *error = NULL;
	int r;

	if (strcmp(name, "ListTokens") == 0) {
		if (check_params(c, params, spec_iface) < 0)
			return 0;
		r = daemon_list_tokens(d, param_str(params, "interface"), &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "GetStatus") == 0) {
		if (check_params(c, params, spec_none) < 0)
			return 0;
		r = daemon_get_status(d, &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "Monitor") == 0) {
		if (check_params(c, params, spec_none) < 0)
			return 0;
		return start_monitor(c);
	}
	if (strcmp(name, "SetToken") == 0) {
		if (check_params(c, params, spec_set) < 0)
			return 0;
		if (!client_is_admin(c))
			return permission_denied(c, "SetToken");
		r = daemon_set_token(d, &who, param_str(params, "interface"),
				     param_str(params, "token"), &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "ListAssociations") == 0) {
		if (check_params(c, params, spec_name_opt) < 0)
			return 0;
		r = daemon_list_assocs(d, param_str(params, "name"), &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "AddAssociation") == 0) {
		if (!client_is_admin(c))
			return permission_denied(c, name);
		r = daemon_add_assoc(d, &who, params, &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "FlushAssociations") == 0) {
		if (check_params(c, params, spec_none) < 0)
			return 0;
		if (!client_is_admin(c))
			return permission_denied(c, name);
		r = daemon_flush_assocs(d, &who, &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "DeleteAssociation") == 0) {
		if (check_params(c, params, spec_name) < 0)
			return 0;
		if (!client_is_admin(c))
			return permission_denied(c, name);
		r = daemon_delete_assoc(d, &who, param_str(params, "name"), &out, &error);
		return finish(c, r, out, error);
	}
	if (strcmp(name, "RotateAssociation") == 0 || strcmp(name, "ReleaseAssociation") == 0) {
		bool rotate = name[1] == 'o';

		if (check_params(c, params, spec_name) < 0)
			return 0;
		if (!client_is_admin(c))
			return permission_denied(c, name);
		r = (rotate ? daemon_rotate_assoc : daemon_release_assoc)(
		    d, &who, param_str(params, "name"), &out, &error);
		return finish(c, r, out, error);
	}
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		if (strcmp(name, changes[i].name) != 0)
			continue;
		if (check_params(c, params, spec_iface) < 0)
			return 0;
		if (!client_is_admin(c))
			return permission_denied(c, changes[i].name);
		r = changes[i].op(d, &who, param_str(params, "interface"), &out, &error);
		return finish(c, r, out, error);
	}
	return -ENOENT;
}

static const char tokend_idl[] =
    "# tokend: IPv6 interface tokens held and kept by the daemon.\n"
    "interface io.tokend\n\n"
    "type Entry (\n  interface: string,\n  ifindex: ?int,\n  token: string,\n"
    "  origin: string,\n  source: string,\n  file: ?string,\n  state: string,\n"
    "  reason: ?string,\n  kernel_token: ?string,\n  addresses: []string\n)\n\n"
    "type Global (token: string, source: string, file: ?string, match: []string)\n\n"
    "type Kept (interface: ?string, file: string)\n\n"
    "type Counts (held: int, applied: int, pending: int, absent: int, blocked: int,\n"
    "  unsupported: int, contested: int, removing: int)\n\n"
    "method ListTokens(interface: ?string) -> (global: ?Global, entries: []Entry)\n"
    "method SetToken(interface: ?string, token: string) -> (changed: bool, entry: ?Entry)\n"
    "method DeleteToken(interface: ?string) -> ()\n"
    "method FlushTokens(interface: ?string) -> (removed: []?string, kept: []Kept)\n"
    "method ResumeToken(interface: ?string) -> (resumed: []string)\n"
    "type SA (generation: int, spi: int, installed: bool, bytes: int, packets: int,\n"
    "  replay_window: ?int)\n\n"
    "type Association (name: string, number: int, local: string, remote: string,\n"
    "  mode: string, algorithm: string, local_selector: string, remote_selector: string,\n"
    "  protocol: ?string, local_port: ?int, remote_port: ?int, dev: ?string,\n"
    "  source: string, file: ?string, secret_file: string, state: string, reason: ?string,\n"
    "  lookahead: int, reqid: int, moves: int, outbound: SA, inbound: []SA,\n"
    "  receiving_generation: int, rotation: Rotation, policies: object)\n\n"
    "type Rotation (lifetime: int, period: ?int, epoch: ?int, phase_ms: ?int,\n"
    "  overlap_ms: ?int, clock_generation: ?int, next_rotation: ?string,\n"
    "  next_rotation_in_ms: ?int, secret_file: ?string, rotations: int, last: ?object,\n"
    "  peer_in_step: bool)\n\n"
    "method ListAssociations(name: ?string) -> (associations: []Association)\n"
    "method AddAssociation(name: string, number: int, local: string, remote: string,\n"
    "  secret_file: string, mode: ?string, algorithm: ?string, local_selector: ?string,\n"
    "  remote_selector: ?string, protocol: ?string, local_port: ?int, remote_port: ?int,\n"
    "  dev: ?string, replay_window: ?int, lookahead: ?int, lifetime: ?int, epoch: ?int,\n"
    "  overlap_ms: ?int, schedule: ?[]object, lifetime_bytes: ?int,\n"
    "  lifetime_packets: ?int) -> (associations: []Association)\n"
    "method DeleteAssociation(name: string) -> ()\n"
    "method FlushAssociations() -> (removed: []string, kept: []object)\n"
    "method RotateAssociation(name: string) -> (associations: []Association)\n"
    "method ReleaseAssociation(name: string) -> (released: ?object)\n"
    "method GetStatus() -> (version: string, pid: int, uptime_usec: int,\n"
    "  config_files: []string, state_file: string, degraded: bool,\n"
    "  degraded_reason: ?string, counts: Counts, repairs: int, resyncs: int,\n"
    "  reconciles: int, associations: int, association_counts: object,\n"
    "  last_reconcile: ?string, last_error: ?LastError,\n"
    "  clock_synchronized: ?bool)\n\n"
    "type LastError (time: string, message: string, kind: string, object: ?string)\n\n"
    "type Event (time: string, level: string, kind: string, object: ?string,\n"
    "  event: string, message: string)\n\n"
    "# Call with \"more\": the first reply is (event: \"monitoring\"), then one per\n"
    "# event, until the client hangs up.\n"
    "method Monitor() -> (event: string, version: ?string, time: ?string,\n"
    "  level: ?string, kind: ?string, object: ?string, message: ?string)\n\n"
    "error InvalidMessage (message: string, reason: string)\n"
    "error TooManyClients (message: string, limit: int)\n"
    "error Busy (message: string, limit: int)\n"
    "error PermissionDenied (message: string, uid: int, required: string)\n"
    "error InvalidToken (message: string, token: string, reason: string)\n"
    "error InvalidInterface (message: string, interface: string, reason: string)\n"
    "error ConfigEntry (message: string, interface: ?string, file: string)\n"
    "error NoSuchEntry (message: string, interface: ?string)\n"
    "error StateWriteFailed (message: string, file: string, reason: string)\n"
    "error Degraded (message: string, reason: string)\n"
    "error NoSuchAssociation (message: string, name: string)\n"
    "error InvalidAssociation (message: string, name: ?string, reason: string)\n"
    "error AssociationExists (message: string, name: string)\n"
    "error RotationRefused (message: string, name: string, reason: string)\n"
    "error InternalError (message: string)\n";

static int dispatch_service(struct client *c, const char *name, json_object *params)
{
	json_object *out;

	if (strcmp(name, "GetInfo") == 0) {
		json_object *ifaces = json_object_new_array();

		if (check_params(c, params, spec_none) < 0)
			return 0;
		out = json_object_new_object();
		json_object_object_add(out, "vendor", json_object_new_string("tokend"));
		json_object_object_add(out, "product", json_object_new_string("tokend"));
		json_object_object_add(out, "version", json_object_new_string(TOKEND_VERSION));
		json_object_object_add(out, "url",
				       json_object_new_string("https://tokend.invalid/"));
		json_object_array_add(ifaces, json_object_new_string(VARLINK_SERVICE_INTERFACE));
		json_object_array_add(ifaces, json_object_new_string(TOKEND_INTERFACE));
		json_object_object_add(out, "interfaces", ifaces);
		return reply(c, out);
	}
	if (strcmp(name, "GetInterfaceDescription") == 0) {
		static const struct param_spec spec[] = {{"interface", P_STRING, true}, {0}};
		const char *iface;

		if (check_params(c, params, spec) < 0)
			return 0;
		iface = param_str(params, "interface");
		out = json_object_new_object();
		if (strcmp(iface, TOKEND_INTERFACE) == 0) {
			json_object_object_add(out, "description",
					       json_object_new_string(tokend_idl));
			return reply(c, out);
		}
		if (strcmp(iface, VARLINK_SERVICE_INTERFACE) == 0) {
			json_object_object_add(
			    out, "description",
			    json_object_new_string(
				"interface org.varlink.service\n"
				"method GetInfo() -> (vendor: string, product: string, "
				"version: string, url: string, interfaces: []string)\n"
				"method GetInterfaceDescription(interface: string) -> "
				"(description: string)\n"));
			return reply(c, out);
		}
		json_object_put(out);
		return reply_error(c, "org.varlink.service.InterfaceNotFound",
				   daemon_error_params("no such interface", "interface",
						       json_object_new_string(iface), NULL));
	}
	return -ENOENT;
}

/* Handle one message. A negative return closes the connection. */
static int client_handle(struct client *c, const char *text)
{
	struct varlink_call call;
	char iface[256];
	const char *name, *why;
	int r;

	r = varlink_call_parse(text, &call, &why);
	if (r < 0) {
		reply_error(c, "io.tokend.InvalidMessage",
			    daemon_error_params(why, "reason", json_object_new_string(why), NULL));
		c->closing = true;
		return 0;
	}
	if (varlink_method_split(call.method, iface, sizeof(iface), &name) < 0) {
		r = reply_error(c, "org.varlink.service.InterfaceNotFound",
				daemon_error_params("method has no interface part", "interface",
						    json_object_new_string(call.method), NULL));
		goto done;
	}
	log_debug("call %s from uid %u pid %d%s", call.method, (unsigned)c->uid, (int)c->pid,
		  call.oneway ? " (oneway)" : "");
	/* A oneway call gets no reply, errors included. */
	c->oneway = call.oneway;
	c->more = call.more;
	/* A monitor's connection carries its events and nothing else. */
	if (c->monitoring) {
		r = reply_error(c, "io.tokend.InvalidMessage",
				daemon_error_params("this connection is monitoring: open another "
						    "one for calls",
						    "reason", json_object_new_string("monitoring"),
						    NULL));
		c->closing = true;
		goto done;
	}
	/* Clients that do not read what they asked for cannot make tokend
	 * hold unbounded memory: each holds one reply, and a call is taken
	 * only while all of them together are below the cap (so they stay
	 * below it plus one reply). Refused before anything is done. */
	if (c->server->queued >= c->server->opts.reply_backlog) {
		struct server *s = c->server;

		log_ratelimited(&s->busy_rl, LOG_WARNING,
				"replies waiting to be read by clients fill reply-backlog-mib "
				"(%zu MiB): %s of uid %u pid %d is answered io.tokend.Busy",
				s->opts.reply_backlog >> 20, call.method, (unsigned)c->uid,
				(int)c->pid);
		r = reply_error(c, "io.tokend.Busy",
				daemon_error_params(
				    "too many replies are waiting to be read by "
				    "other clients; nothing was done, try again "
				    "later",
				    "limit", json_object_new_int64((int64_t)s->opts.reply_backlog),
				    NULL));
		goto done;
	}
	if (strcmp(iface, TOKEND_INTERFACE) == 0)
		r = dispatch_tokend(c, name, call.parameters);
	else if (strcmp(iface, VARLINK_SERVICE_INTERFACE) == 0)
		r = dispatch_service(c, name, call.parameters);
	else {
		r = reply_error(c, "org.varlink.service.InterfaceNotFound",
				daemon_error_params("no such interface", "interface",
						    json_object_new_string(iface), NULL));
		goto done;
	}
	if (r == -ENOENT)
		r = reply_error(c, "org.varlink.service.MethodNotFound",
				daemon_error_params("no such method", "method",
						    json_object_new_string(call.method), NULL));
done:
	c->oneway = false;
	c->more = false;
	varlink_call_done(&call);
	return r;
}

/* The clock runs while a message is unfinished (from when it began: a byte
 * now and then does not keep the connection), while a reply waits for a
 * client that reads none of it (from the last bytes it took), and while a
 * closing connection's last reply waits. After client-timeout the
 * connection goes. */
static void client_arm_timer(struct client *c, bool sent)
{
	bool reply_waits = client_backlog(c) > 0 && !c->monitoring;
	bool armed = sd_event_source_get_enabled(c->timer, NULL) > 0;

	if (reply_waits && sent) {
		sd_event_source_set_time_relative(c->timer, c->server->opts.client_timeout_usec);
		sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
	} else if (reply_waits || c->closing || !varlink_reader_empty(&c->in)) {
		if (!armed) {
			sd_event_source_set_time_relative(c->timer,
							  c->server->opts.client_timeout_usec);
			sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
		}
	} else {
		sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
	}
}

/* Takes what the client sent into the reader (calls are handled later, one
 * at a time). */
static int client_recv(struct client *c)
{
	char buf[65536];
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0) {
		/* Shut for writing (printf ... | socat): the calls already
		 * sent are still answered, a monitor's events still sent; then
		 * the connection ends. */
		c->eof = true;
		return 0;
	}
	c->unread = true;
	return varlink_reader_feed(&c->in, buf, (size_t)n);
}

/* Too long, whether found while buffering or once its NUL came: answered,
 * and the connection closed (the stream cannot be followed past it). */
static void client_too_long(struct client *c)
{
	reply_error(c, "io.tokend.InvalidMessage",
		    daemon_error_params("message longer than 1 MiB", "reason",
					json_object_new_string("message too long"), NULL));
	varlink_reader_free(&c->in);
	c->unread = false;
	c->closing = true;
}

/* Handles the next complete call, if any. Returns 1 when one was handled. */
static int client_next_call(struct client *c)
{
	char *msg;
	int r = varlink_reader_next(&c->in, &msg);

	if (r > 0) {
		r = client_handle(c, msg);
		free(msg);
		return r < 0 ? r : 1;
	}
	c->unread = false;
	if (r == -EMSGSIZE) {
		client_too_long(c);
		return 0;
	}
	return r;
}

static int on_client_io(sd_event_source *src, int fd, uint32_t revents, void *data)
{
	struct client *c = data;
	bool sent = false;
	int r = 0, calls = 0;

	if (revents & EPOLLIN) {
		if (!c->closing && !c->eof && client_backlog(c) == 0)
			r = client_recv(c);
	} else if (revents & (EPOLLHUP | EPOLLERR)) {
		r = -ECONNRESET; /* gone both ways: nobody to answer */
	}
	if (r == -EMSGSIZE) {
		client_too_long(c);
		r = 0;
	}
	/* Send, and take the next call once the reply before it is out. */
	while (r >= 0) {
		r = client_flush(c);
		if (r < 0)
			break;
		sent |= r > 0;
		r = 0;
		if (client_backlog(c) > 0 || c->closing || !c->unread ||
		    calls == SERVER_CALLS_PER_TURN)
			break;
		r = client_next_call(c);
		calls++;
	}
	/* Shut by the client and every call answered: the connection ends
	 * once the last reply is out (a monitor's stays for its events). */
	if (r >= 0 && c->eof && !c->unread && !c->monitoring && !c->closing) {
		c->closing = true;
		r = client_flush(c);
	}
	if (r >= 0) {
		client_watch(c);
		client_arm_timer(c, sent);
	}
	if (r < 0)
		client_free(c);
	return 0;
}

static int on_client_timeout(sd_event_source *src, uint64_t usec, void *data)
{
	struct client *c = data;

	log_debug("client uid %u pid %d %s for client-timeout; disconnecting", (unsigned)c->uid,
		  (int)c->pid,
		  client_backlog(c) ? "read none of its reply" : "left a message unfinished");
	client_free(c);
	return 0;
}

static void refuse_busy(struct server *s, int fd)
{
	size_t len = 0;
	char *msg = varlink_error_serialize(
	    "io.tokend.TooManyClients",
	    daemon_error_params("too many clients; try again later", "limit",
				json_object_new_int((int)s->opts.max_clients), NULL),
	    &len);

	if (msg)
		(void)!send(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(msg);
	close(fd);
}

static int on_accept_resume(sd_event_source *src, uint64_t usec, void *data)
{
	struct server *s = data;

	sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
	return 0;
}

/* Accepts one connection: 1, or 0 when none waits (or accepting pauses). */
static int accept_one(struct server *s, int fd)
{
	struct client *c;
	int cfd;

	cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		int e = errno;

		if (e == EAGAIN || e == EINTR)
			return 0;
		if (e == ECONNABORTED)
			return 1;
		log_ratelimited(&s->accept_rl, LOG_WARNING, "accept on %s failed: %s%s", s->path,
				strerror(e),
				e == EMFILE || e == ENFILE
				    ? "; new connections wait (raise LimitNOFILE= or lower "
				      "max-clients)"
				    : "");
		/* The socket stays readable: without a pause this would spin.
		 * Connections wait in the backlog meanwhile. */
		sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
		sd_event_source_set_time_relative(s->accept_pause, 100 * 1000);
		sd_event_source_set_enabled(s->accept_pause, SD_EVENT_ONESHOT);
		return 0;
	}
	if (s->n_clients >= s->opts.max_clients) {
		refuse_busy(s, cfd);
		return 1;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(cfd);
		return 1;
	}
	c->server = s;
	c->fd = cfd;
	varlink_reader_init(&c->in, VARLINK_MAX_MESSAGE);
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->n_clients++;
	if (client_read_creds(c) < 0 ||
	    sd_event_add_io(s->event, &c->io, cfd, EPOLLIN, on_client_io, c) < 0 ||
	    sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 0,
			      on_client_timeout, c) < 0) {
		client_free(c);
		return 1; /* that one is gone; others may wait */
	}
	sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
	return 1;
}

/* Every connection waiting in the backlog (up to a bound), not one per turn
 * of the loop: with many busy clients, a turn takes long, and a new
 * connection would wait for one turn per connection ahead of it. */
static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *data)
{
	for (int k = 0; k < 64 && accept_one(data, fd) > 0; k++)
		;
	return 0;
}

/* --- listening --------------------------------------------------------- */

static int lookup_group(const char *name, gid_t *ret)
{
	struct group *g;

	if (!name || !*name)
		return -ENOENT;
	errno = 0;
	g = getgrnam(name);
	if (!g)
		return errno ? -errno : -ENOENT;
	*ret = g->gr_gid;
	return 0;
}

/* Bind under a temporary name with the final mode (the umask does it, so
 * there is no chmod window), give it its group, then rename it into place:
 * clients never see the socket with other permissions. */
static int listen_on_path(struct server *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char tmp[sizeof(sa.sun_path)];
	gid_t gid;
	mode_t old;
	int fd, r;

	if (strlen(s->path) + 16 >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", s->path, (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(tmp);
	old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		goto fail;
	}
	if (lookup_group(s->opts.socket_group, &gid) == 0) {
		if (chown(tmp, (uid_t)-1, gid) < 0) {
			r = -errno;
			log_error("cannot give %s to group %s: %m", tmp, s->opts.socket_group);
			goto fail_unlink;
		}
	} else {
		log_warning("socket group %s does not exist; only the daemon's own group can "
			    "connect to %s",
			    s->opts.socket_group ? s->opts.socket_group : "(none)", s->path);
	}
	if (listen(fd, 128) < 0 || rename(tmp, s->path) < 0) {
		r = -errno;
		goto fail_unlink;
	}
	s->fd = fd;
	s->own_path = true;
	return 0;
fail_unlink:
	unlink(tmp);
fail:
	close(fd);
	return r;
}

/* A socket file someone still answers on belongs to a running tokend:
 * refuse to steal it. One nobody answers on is stale and replaced. */
static int check_not_running(const char *path)
{
	int fd = varlink_connect(path);

	if (fd < 0)
		return 0;
	close(fd);
	return -EADDRINUSE;
}

static int make_parent_dir(const char *path)
{
	char *dir = strdup(path), *slash;
	int r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			r = -errno;
	}
	free(dir);
	return r;
}

int server_new(struct daemon *d, sd_event *event, const struct server_options *o,
	       struct server **ret)
{
	struct server *s = calloc(1, sizeof(*s));
	int n, r;

	if (!s)
		return -ENOMEM;
	s->daemon = d;
	s->event = event;
	s->opts = *o;
	if (!s->opts.reply_backlog)
		s->opts.reply_backlog = (size_t)256 << 20;
	s->fd = -1;
	/* Our own copies: a reload frees the config these came from. */
	s->opts.path = NULL;
	s->path = strdup(o->path);
	s->opts.socket_group = s->socket_group = o->socket_group ? strdup(o->socket_group) : NULL;
	s->opts.admin_group = s->admin_group = o->admin_group ? strdup(o->admin_group) : NULL;
	if (!s->path || (o->socket_group && !s->socket_group) ||
	    (o->admin_group && !s->admin_group)) {
		r = -ENOMEM;
		goto fail;
	}
	s->have_admin_gid = lookup_group(o->admin_group, &s->admin_gid) == 0;
	if (!s->have_admin_gid)
		log_warning("admin group %s does not exist: only root can change tokens",
			    o->admin_group ? o->admin_group : "(none)");

	n = o->listen_fds;
	if (n < 0)
		log_warning("LISTEN_FDS/LISTEN_PID are set but not usable (%s): tokend makes "
			    "its own socket",
			    strerror(-n));
	if (n > 1) {
		log_error("expected one socket from systemd, got %d", n);
		r = -EINVAL;
		goto fail;
	}
	if (n == 1) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);

		r = sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0);
		if (r <= 0) {
			/* Not ours to close: it may be anything, or nothing. */
			log_error("the socket systemd passed (fd %d) is not a listening Unix "
				  "stream socket%s%s",
				  SD_LISTEN_FDS_START, r < 0 ? ": " : "",
				  r < 0 ? strerror(-r) : "");
			r = -EINVAL;
			goto fail;
		}
		s->fd = SD_LISTEN_FDS_START;
		fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
		/* Its own name, for the log: the config's path is not used. */
		if (getsockname(s->fd, (struct sockaddr *)&sa, &len) == 0 &&
		    len > offsetof(struct sockaddr_un, sun_path)) {
			size_t n_path = len - offsetof(struct sockaddr_un, sun_path);
			bool abstract = sa.sun_path[0] == '\0';
			char *name = malloc(n_path + 2);

			if (name) {
				/* An abstract name is shown as "@name", as ss(8) does. */
				snprintf(
				    name, n_path + 2, "%s%.*s", abstract ? "@" : "",
				    (int)(abstract ? n_path - 1 : strnlen(sa.sun_path, n_path)),
				    sa.sun_path + abstract);
				free(s->path);
				s->path = name;
			}
			if (abstract)
				log_warning(
				    "the socket systemd passed is abstract (%s): it has no "
				    "file permissions, anyone in this network namespace can "
				    "connect and read",
				    s->path);
		}
		log_info("listening on %s, the socket systemd passed", s->path);
	} else {
		make_parent_dir(s->path);
		r = check_not_running(s->path);
		if (r < 0) {
			log_error("another tokend is already listening on %s", s->path);
			goto fail;
		}
		r = listen_on_path(s);
		if (r < 0) {
			log_error("cannot listen on %s: %s", s->path, strerror(-r));
			goto fail;
		}
	}
	r = sd_event_add_io(event, &s->listen_source, s->fd, EPOLLIN, on_accept, s);
	if (r < 0)
		goto fail;
	r = sd_event_add_time(event, &s->accept_pause, CLOCK_MONOTONIC, UINT64_MAX, 0,
			      on_accept_resume, s);
	if (r < 0)
		goto fail;
	sd_event_source_set_enabled(s->accept_pause, SD_EVENT_OFF);
	s->accept_rl = LOG_RATELIMIT_INIT(10 * 1000000ULL, 3);
	s->busy_rl = LOG_RATELIMIT_INIT(10 * 1000000ULL, 3);
	*ret = s;
	return 0;
fail:
	server_free(s);
	return r;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	while (s->clients)
		client_free(s->clients);
	sd_event_source_disable_unref(s->listen_source);
	sd_event_source_disable_unref(s->accept_pause);
	if (s->fd >= 0)
		close(s->fd);
	if (s->own_path)
		unlink(s->path);
	free(s->path);
	free(s->socket_group);
	free(s->admin_group);
	free(s);
}

const char *server_path(const struct server *s)
{
	return s->path;
}

unsigned server_client_count(const struct server *s)
{
	return s->n_clients;
}
