/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <linux/rtnetlink.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/timex.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "assoc.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "nl.h"
#include "rtnl.h"
#include "server.h"
#include "store.h"
#include "strmap.h"
#include "tokens.h"
#include "xfrm.h"

/* Where the documentation says, whatever the install prefix. */
#define DEFAULT_CONFIG TOKEND_SYSCONFDIR "/tokend/tokend.conf"

struct daemon {
	sd_event *event;
	struct daemon_options opts;
	char *config_path;
	struct config *config;
	char *state_file;
	struct tokens *tokens;
	struct nl_sock *req;
	struct nl_sock *mon;
	sd_event_source *mon_source;
	sd_event_source *reconcile_timer;
	sd_event_source *retry_timer;
	struct server *server;
	struct assocs *assocs;
	struct nl_sock *xreq;
	struct nl_sock *xmon;
	sd_event_source *xmon_source;
	sd_event_source *counter_timer;
	sd_event_source *rotation_timer; /* CLOCK_REALTIME: the next boundary */
	sd_event_source *clock_source;	 /* a timerfd cancelled when the clock is set */
	int clock_fd;
	int lock_fd;	    /* flock on STATE_DIR/lock: one tokend per state directory */
	int clock_sync;	    /* 1 synchronised, 0 not, -1 unknown, 2 not read yet */
	int clock_reported; /* what the log last said, 2 nothing */
	uint64_t clock_checked_usec, clock_warned_usec;
	bool xfrm_resync_wanted; /* a flush or an overrun: read everything again */
	bool degraded;
	char *degraded_reason;
	bool ready;
	uint64_t start_usec;
	unsigned long long resyncs;
	unsigned long long reconciles;
	int64_t last_reconcile_ms; /* wall clock; 0: none yet */
	struct {
		uint64_t realtime_usec; /* 0: none yet */
		enum event_kind kind;
		char object[ASSOC_NAME_MAX + 16]; /* an association's name or an interface's */
		char message[512];
	} last_error;
	char *status_sent; /* the last STATUS= text, sent again only when it changes */
};

static int xfrm_resync(struct daemon *d);
static void xfrm_reconcile(struct daemon *d, bool all);
static void arm_rotation_timer(struct daemon *d);

/* After an overrun the receive buffer doubles, up to what an int holds
 * (netlink-buffer may be 1 GiB). */
static int doubled_buffer(unsigned bytes)
{
	uint64_t v = 2 * (uint64_t)bytes;

	return v > INT_MAX ? INT_MAX : (int)v;
}

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_object *daemon_error_params(const char *message, ...)
{
	json_object *o = json_object_new_object();
	va_list ap;
	const char *key;

	json_object_object_add(o, "message", json_object_new_string(message));
	va_start(ap, message);
	while ((key = va_arg(ap, const char *)))
		json_object_object_add(o, key, va_arg(ap, json_object *));
	va_end(ap);
	return o;
}

/* --- config and state -------------------------------------------------- */

static void log_config_errors(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++) {
		if (errs->v[i].line)
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "config-error", "%s:%u: %s",
				   errs->v[i].file, errs->v[i].line, errs->v[i].message);
		else /* whole-file problems name the file themselves */
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "config-error", "%s",
				   errs->v[i].message);
	}
}

static int load_config(const struct daemon_options *o, struct config **ret)
{
	struct config_errors errs = {0};
	const char *path = o->config_path ? o->config_path : DEFAULT_CONFIG;
	int r;

	r = config_load(path, NULL, o->config_explicit, ret, &errs);
	if (r < 0) {
		log_config_errors(&errs);
		if (errs.n == 0)
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "config-error",
				   "%s: cannot read config: %s", path, strerror(-r));
		else
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "config-error",
				   "%s: %zu error%s in config", path, errs.n,
				   errs.n == 1 ? "" : "s");
	}
	config_errors_clear(&errs);
	return r;
}

int daemon_check_config(const struct daemon_options *o)
{
	struct config *c = NULL;
	int r = load_config(o, &c);

	if (r == 0)
		event_emit(LOG_INFO, EVENT_DAEMON, NULL, "config-ok",
			   "config OK: %zu token%s%s, %zu association%s", c->n_tokens,
			   c->n_tokens == 1 ? "" : "s", c->has_global ? " and a global token" : "",
			   c->n_assocs, c->n_assocs == 1 ? "" : "s");
	config_free(c);
	return r;
}

/* Write the state file; a copy of what it holds goes to the tokens only on
 * success, so memory never runs ahead of the disk. */
static int commit_state(struct daemon *d, struct store_state *next, char **ret_error)
{
	int r;

	store_state_sort(next);
	r = store_save(d->state_file, next, ret_error);
	if (r < 0) {
		store_state_free(next);
		return r;
	}
	tokens_set_state(d->tokens, next);
	return 0;
}

/* The key of an owned entry in a map: interface and token. */
static const char *owned_key(char *buf, size_t len, const char *ifname,
			     const struct in6_addr *token)
{
	char addr[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, token, addr, sizeof(addr));
	snprintf(buf, len, "%s %s", ifname, addr);
	return buf;
}

/* Every token the config may put into the kernel is recorded as owned
 * before anything is written, and runtime entries that the config now
 * declares give way to it. */
static int adopt_config_into_state(struct daemon *d)
{
	const struct store_state *cur = tokens_state(d->tokens);
	struct store_state next;
	struct strmap runtime = STRMAP_INIT, owned = STRMAP_INIT;
	bool changed = false;
	char *err = NULL, key[IFNAMSIZ + INET6_ADDRSTRLEN + 2];
	size_t unused;
	int r;

	if (d->degraded || d->opts.dry_run)
		return 0;
	r = store_state_copy(cur, &next);
	if (r < 0)
		return r;
	/* Looked up once per config token: maps, not a scan each time. */
	for (size_t i = 0; i < next.n_tokens && r >= 0; i++)
		r = strmap_put(&runtime, next.tokens[i].ifname, i);
	for (size_t i = 0; i < next.n_owned && r >= 0; i++) {
		r = strmap_put(
		    &owned, owned_key(key, sizeof(key), next.owned[i].ifname, &next.owned[i].token),
		    i);
		if (r == -EEXIST)
			r = 0;
	}
	for (size_t i = 0; i < d->config->n_tokens && r >= 0; i++) {
		const struct config_token *c = &d->config->tokens[i];
		if (strmap_get(&runtime, c->ifname, &unused) &&
		    store_remove(&next.tokens, &next.n_tokens, c->ifname) == 0) {
			event_emit(LOG_NOTICE, EVENT_TOKEN, c->ifname, "dropped",
				   "%s: runtime token dropped: %s now declares one", c->ifname,
				   c->where);
			changed = true;
		}
		if (!strmap_get(&owned, owned_key(key, sizeof(key), c->ifname, &c->token),
				&unused)) {
			r = store_add(&next.owned, &next.n_owned, c->ifname, &c->token);
			changed = true;
		}
	}
	strmap_free(&runtime);
	strmap_free(&owned);
	if (r >= 0 && d->config->has_global) {
		const struct config_token *g = &d->config->global;
		if (store_remove(&next.tokens, &next.n_tokens, "") == 0) {
			event_emit(LOG_NOTICE, EVENT_TOKEN, NULL, "dropped",
				   "runtime global token dropped: %s now declares one", g->where);
			changed = true;
		}
		if (!store_contains(next.owned, next.n_owned, "", &g->token)) {
			r = store_add(&next.owned, &next.n_owned, "", &g->token);
			changed = true;
		}
	}
	if (r < 0 || !changed) {
		store_state_free(&next);
		return r;
	}
	r = commit_state(d, &next, &err);
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "state-write-failed", "%s", err);
		free(err);
	}
	return r;
}

static void load_state(struct daemon *d)
{
	struct store_state st = {0};
	char *err = NULL;
	int r;

	r = store_load(d->state_file, &st, &err);
	if (r < 0) {
		/* Keep running on what the config declares, touch nothing we
		 * cannot account for, and keep the file for inspection. */
		d->degraded = true;
		d->degraded_reason = err;
		tokens_set_degraded(d->tokens, true);
		event_emit(
		    LOG_ERR, EVENT_DAEMON, NULL, "degraded",
		    "%s; running degraded: config entries are kept, runtime changes are "
		    "refused and nothing is removed until the file is repaired or moved away",
		    err);
		return;
	}
	tokens_set_state(d->tokens, &st);
}

static void apply_settings(struct daemon *d)
{
	struct tokens_settings s = {
	    .contest_repairs = d->config->contest_repairs,
	    .contest_window_usec = d->config->contest_window_usec,
	    .retry_min_usec = d->config->retry_min_usec,
	    .retry_max_usec = d->config->retry_max_usec,
	    .run_prefix = d->opts.run_prefix,
	};

	tokens_set_settings(d->tokens, &s);
	if (d->assocs)
		assocs_set_settings(d->assocs,
				    &(struct assocs_settings){
					.reqid_base = d->config->reqid_base,
					.policy_priority = d->config->policy_priority,
					.counter_interval_usec = d->config->counter_interval_usec,
					.dwell_usec = d->config->dwell_usec,
				    });
	if (d->opts.log_level >= 0)
		log_set_level(d->opts.log_level);
	else
		log_set_level(d->config->log_level);
}

/* --- kernel ------------------------------------------------------------ */

static void describe_msg(const struct nlmsghdr *nlh, const struct rtnl_link *l)
{
	char buf[256];

	if (log_get_level() < LOG_DEBUG)
		return;
	rtnl_link_describe(l, buf, sizeof(buf));
	log_debug("netlink: %s family %u: %s", nl_type_name(NETLINK_ROUTE, nlh->nlmsg_type),
		  ((const struct ifinfomsg *)mnl_nlmsg_get_payload(nlh))->ifi_family, buf);
}

static int on_rtnl_message(const struct nlmsghdr *nlh, void *data)
{
	struct daemon *d = data;
	struct rtnl_link l;
	struct rtnl_addr a;

	switch (nlh->nlmsg_type) {
	case RTM_NEWLINK:
	case RTM_DELLINK:
		if (rtnl_link_parse(nlh, &l) < 0)
			return MNL_CB_OK;
		describe_msg(nlh, &l);
		/* The kernel announces a token change twice: on RTNLGRP_IPV6_IFINFO
		 * (AF_INET6) and on RTNLGRP_LINK (AF_UNSPEC). Take the token from
		 * the first only, or a late copy of an old change would look like
		 * new drift; dumps (NLM_F_MULTI) are read whole and are current. */
		if (((const struct ifinfomsg *)mnl_nlmsg_get_payload(nlh))->ifi_family ==
			AF_UNSPEC &&
		    !(nlh->nlmsg_flags & NLM_F_MULTI))
			l.has_inet6 = false;
		/* An AF_INET6 RTM_DELLINK only says IPv6 went away. */
		if (nlh->nlmsg_type == RTM_DELLINK &&
		    ((const struct ifinfomsg *)mnl_nlmsg_get_payload(nlh))->ifi_family == AF_UNSPEC)
			tokens_link_delete(d->tokens, l.ifindex);
		else if (nlh->nlmsg_type == RTM_NEWLINK)
			tokens_link_update(d->tokens, &l, now_usec());
		break;
	case RTM_NEWADDR:
	case RTM_DELADDR:
		if (rtnl_addr_parse(nlh, &a) < 0)
			return MNL_CB_OK;
		tokens_addr_update(d->tokens, &a, nlh->nlmsg_type == RTM_DELADDR);
		break;
	}
	return MNL_CB_OK;
}

static int dump(struct daemon *d, uint16_t type, uint8_t family)
{
	char buf[128];
	int r = -EAGAIN;

	/* A dump interrupted by a concurrent change is read again. */
	for (int tries = 0; tries < 5 && r == -EAGAIN; tries++) {
		struct nlmsghdr *nlh = rtnl_build_dump(buf, sizeof(buf), type, family);
		r = nl_transact(d->req, nlh, on_rtnl_message, d, NULL);
	}
	return r;
}

/* Re-read every link and address: at start, after ENOBUFS, periodically. */
static int resync(struct daemon *d)
{
	int r;

	tokens_resync_begin(d->tokens);
	r = dump(d, RTM_GETLINK, AF_UNSPEC);
	if (r == 0)
		r = dump(d, RTM_GETADDR, AF_INET6);
	if (r < 0) {
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "resync-failed",
			   "cannot read links from the kernel: %s; keeping what was known",
			   strerror(-r));
		return r;
	}
	tokens_resync_end(d->tokens);
	d->resyncs++;
	return 0;
}

static void on_action_done(uintptr_t cookie, const struct nl_ack *ack, void *data)
{
	struct daemon *d = data;
	const struct tokens_action *a = (const struct tokens_action *)cookie;

	tokens_action_done(d->tokens, a, ack, now_usec());
}

static void update_status(struct daemon *d)
{
	struct tokens_counts c;
	struct assocs_counts a;
	char text[512], assoc_text[200] = "";

	tokens_counts(d->tokens, &c);
	assocs_counts(d->assocs, &a);
	if (a.total > 0)
		snprintf(assoc_text, sizeof(assoc_text),
			 "; %u association%s: %u up, %u pending, %u error, %u conflict, "
			 "%u released",
			 a.total, a.total == 1 ? "" : "s", a.up, a.pending, a.error, a.conflict,
			 a.released);
	snprintf(text, sizeof(text),
		 "%s%u token%s held: %u applied, %u pending, %u absent, %u blocked, "
		 "%u unsupported, %u contested, %u removing%s",
		 d->degraded ? "DEGRADED (state file unreadable); " : "", c.held,
		 c.held == 1 ? "" : "s", c.applied, c.pending, c.absent, c.blocked, c.unsupported,
		 c.contested, c.removing, assoc_text);
	if (d->status_sent && strcmp(d->status_sent, text) == 0)
		return;
	free(d->status_sent);
	d->status_sent = strdup(text);
	sd_notifyf(0, "STATUS=%s", text);
}

static void arm_retry_timer(struct daemon *d)
{
	uint64_t next = tokens_next_retry(d->tokens);

	if (next == UINT64_MAX) {
		sd_event_source_set_enabled(d->retry_timer, SD_EVENT_OFF);
		return;
	}
	sd_event_source_set_time(d->retry_timer, next);
	sd_event_source_set_enabled(d->retry_timer, SD_EVENT_ONESHOT);
}

static void prune_owned(struct daemon *d)
{
	struct store_state next;
	char *err = NULL;

	if (!tokens_prune_owned(d->tokens, &next))
		return;
	if (commit_state(d, &next, &err) < 0) {
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "state-write-failed",
			   "%s; old records of applied tokens are kept", err);
		free(err);
	}
}

/* The one place that writes tokens to the kernel. */
static void reconcile(struct daemon *d, bool all)
{
	struct tokens_action *actions = NULL;
	struct nl_batch *b = NULL;
	int n, r;

	n = tokens_plan(d->tokens, now_usec(), all, &actions);
	if (n < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot plan reconcile: %s",
			   strerror(-n));
		return;
	}
	d->reconciles++;
	d->last_reconcile_ms = wall_ms();
	if (n > 0 && (r = nl_batch_new(d->req, &b)) < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot reconcile: %s",
			   strerror(-r));
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		size_t len;
		struct nlmsghdr *nlh = nl_batch_msg(b, &len);
		char tok[ADDR_TOKEN_STRLEN];

		if (!nlh) {
			nl_batch_flush(b, on_action_done, d);
			nlh = nl_batch_msg(b, &len);
		}
		rtnl_build_set_token(nlh, len, actions[i].ifindex, &actions[i].token);
		log_debug("%s: netlink RTM_SETLINK ifindex %d token %s", actions[i].ifname,
			  actions[i].ifindex, addr_format(&actions[i].token, tok, sizeof(tok)));
		nl_batch_add(b, (uintptr_t)&actions[i]);
	}
	if (b) {
		nl_batch_flush(b, on_action_done, d);
		nl_batch_free(b);
	}
	free(actions);
	if (all)
		prune_owned(d);
	arm_retry_timer(d);
	if (d->ready)
		update_status(d);
}

static int on_monitor(sd_event_source *s, int fd, uint32_t revents, void *data)
{
	struct daemon *d = data;
	int r = nl_monitor_read(d->mon, on_rtnl_message, d);

	if (r == -ENOBUFS) {
		/* The kernel dropped events: what we know may be stale. Read
		 * everything again with a bigger buffer. */
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "resync",
			   "netlink monitor overrun (ENOBUFS): re-reading all links");
		nl_set_rcvbuf(d->mon, doubled_buffer(d->config->netlink_buffer));
		nl_monitor_read(d->mon, on_rtnl_message, d);
		resync(d);
		reconcile(d, true);
		return 0;
	}
	if (r < 0)
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "error",
			   "netlink monitor read failed: %s", strerror(-r));
	if (tokens_dirty(d->tokens))
		reconcile(d, false);
	return 0;
}

static int on_reconcile_timer(sd_event_source *s, uint64_t usec, void *data)
{
	struct daemon *d = data;

	log_debug("periodic reconcile");
	resync(d);
	reconcile(d, true);
	xfrm_resync(d);
	xfrm_reconcile(d, true);
	sd_event_source_set_time(s, usec + d->config->reconcile_interval_usec);
	return 0;
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *data)
{
	struct daemon *d = data;

	reconcile(d, false);
	return 0;
}

static int open_netlink(struct daemon *d)
{
	static const unsigned groups[] = {RTNLGRP_LINK, RTNLGRP_IPV6_IFINFO, RTNLGRP_IPV6_IFADDR};
	int r;

	r = nl_open(NETLINK_ROUTE, true, &d->mon);
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		r = nl_join_group(d->mon, groups[i]);
		if (r < 0)
			return r;
	}
	nl_set_rcvbuf(d->mon, (int)d->config->netlink_buffer);
	r = nl_open(NETLINK_ROUTE, false, &d->req);
	if (r < 0)
		return r;
	return sd_event_add_io(d->event, &d->mon_source, nl_fd(d->mon), EPOLLIN, on_monitor, d);
}

/* --- IPsec associations ------------------------------------------------ */

/* Write the generations (and released numbers) with everything else in the
 * state file: a new sending generation is on disk before its SA exists. */
static int save_generations(struct daemon *d)
{
	struct assoc_gen_record *gens = NULL;
	struct store_state next;
	size_t n = 0;
	char *err = NULL;
	int r;

	if (d->degraded)
		return -EROFS;
	r = store_state_copy(tokens_state(d->tokens), &next);
	if (r < 0)
		return r;
	free(next.generations);
	free(next.released);
	next.generations = NULL;
	next.released = NULL;
	next.n_generations = next.n_released = 0;
	r = assocs_get_generations(d->assocs, &gens, &n);
	if (r == 0 && n > 0) {
		next.generations = calloc(n, sizeof(*next.generations));
		if (!next.generations)
			r = -ENOMEM;
		for (size_t i = 0; r == 0 && i < n; i++) {
			snprintf(next.generations[i].name, sizeof(next.generations[i].name), "%s",
				 gens[i].name);
			next.generations[i].out_gen = gens[i].out_gen;
			next.generations[i].in_gen = gens[i].in_gen;
		}
		next.n_generations = next.generations ? n : 0;
	}
	free(gens);
	if (r == 0)
		r = assocs_get_released(d->assocs, &next.released, &next.n_released);
	if (r < 0) {
		store_state_free(&next);
		return r;
	}
	r = commit_state(d, &next, &err);
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "state-write-failed",
			   "%s; no new generation is used until it can be recorded", err);
		free(err);
	}
	return r;
}

static void describe_xfrm(const struct nlmsghdr *nlh)
{
	char buf[512];

	if (log_get_level() < LOG_DEBUG)
		return;
	xfrm_msg_describe(nlh, buf, sizeof(buf));
	log_debug("netlink: %s", buf);
}

static int on_xfrm_message(const struct nlmsghdr *nlh, void *data)
{
	struct daemon *d = data;
	struct xfrm_policy p;
	struct xfrm_sa sa;
	bool hard;

	describe_xfrm(nlh);
	switch (nlh->nlmsg_type) {
	case XFRM_MSG_NEWSA:
		if (xfrm_sa_parse(nlh, &sa) == 0)
			assocs_sa_seen(d->assocs, &sa, now_usec());
		break;
	case XFRM_MSG_UPDSA:
		if (xfrm_sa_parse(nlh, &sa) == 0)
			assocs_sa_updated(d->assocs, &sa, now_usec());
		break;
	case XFRM_MSG_DELSA:
		if (xfrm_sa_parse(nlh, &sa) == 0)
			assocs_sa_gone(d->assocs, &sa, now_usec());
		break;
	case XFRM_MSG_EXPIRE:
		if (xfrm_expire_parse(nlh, &sa, &hard) == 0)
			assocs_sa_expired(d->assocs, &sa, hard, now_usec());
		break;
	case XFRM_MSG_NEWPOLICY:
	case XFRM_MSG_UPDPOLICY:
		if (xfrm_policy_parse(nlh, &p) == 0)
			assocs_policy_seen(d->assocs, &p);
		break;
	case XFRM_MSG_DELPOLICY:
		if (xfrm_policy_parse(nlh, &p) == 0)
			assocs_policy_gone(d->assocs, &p);
		break;
	case XFRM_MSG_FLUSHSA:
	case XFRM_MSG_FLUSHPOLICY:
		/* Someone flushed (case S1): read everything again. */
		d->xfrm_resync_wanted = true;
		break;
	}
	return MNL_CB_OK;
}

static int xfrm_dump(struct daemon *d, uint16_t type)
{
	char buf[256];
	int r = -EAGAIN;

	for (int tries = 0; tries < 5 && r == -EAGAIN; tries++) {
		struct nlmsghdr *nlh = xfrm_build_dump(buf, sizeof(buf), type);
		r = nl_transact(d->xreq, nlh, on_xfrm_message, d, NULL);
	}
	return r;
}

static int xfrm_resync(struct daemon *d)
{
	int r;

	if (!d->xreq)
		return 0;
	assocs_set_wallclock(d->assocs, wall_ms());
	assocs_resync_begin(d->assocs);
	r = xfrm_dump(d, XFRM_MSG_GETSA);
	if (r == 0)
		r = xfrm_dump(d, XFRM_MSG_GETPOLICY);
	if (r < 0) {
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "resync-failed",
			   "cannot read SAs and policies from the kernel: %s", strerror(-r));
		return r;
	}
	assocs_resync_end(d->assocs);
	d->xfrm_resync_wanted = false;
	return 0;
}

static struct nlmsghdr *build_assoc_request(const struct assoc_action *a, void *buf, size_t len)
{
	switch (a->op) {
	case ASSOC_OP_ADD_SA:
		return xfrm_build_newsa(buf, len, &a->sa, false);
	case ASSOC_OP_UPDATE_SA:
		return xfrm_build_newsa(buf, len, &a->sa, true);
	case ASSOC_OP_DEL_SA:
		return xfrm_build_delsa(buf, len, a->sa.family, &a->sa.dst, a->sa.spi, a->sa.proto);
	case ASSOC_OP_ADD_POLICY:
		return xfrm_build_newpolicy(buf, len, &a->policy, false);
	case ASSOC_OP_UPDATE_POLICY:
		return xfrm_build_newpolicy(buf, len, &a->policy, true);
	case ASSOC_OP_DEL_POLICY:
		return xfrm_build_delpolicy(buf, len, &a->policy);
	}
	return NULL;
}

static void on_assoc_done(uintptr_t cookie, const struct nl_ack *ack, void *data)
{
	struct daemon *d = data;
	const struct assoc_action *a = (const struct assoc_action *)cookie;

	log_debug("%s: kernel answered: %s%s%s", a->name[0] ? a->name : "(orphan)",
		  ack->error ? strerror(-ack->error) : "ok", ack->msg[0] ? ": " : "", ack->msg);
	assocs_action_done(d->assocs, a, ack, now_usec());
}

/* An action that was never sent is answered here, so nothing waits for it. */
static void assoc_not_sent(struct daemon *d, const struct assoc_action *a, int error)
{
	struct nl_ack ack = {.error = error};

	assocs_action_done(d->assocs, a, &ack, now_usec());
}

static void send_assoc_actions(struct daemon *d, struct assoc_action *v, int n)
{
	struct nl_batch *b = NULL;
	int r;

	if (n <= 0)
		return;
	r = nl_batch_new(d->xreq, &b);
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot send XFRM requests: %s",
			   strerror(-r));
		for (int i = 0; i < n; i++)
			assoc_not_sent(d, &v[i], r);
		return;
	}
	for (int i = 0; i < n; i++) {
		char desc[512];
		size_t len;
		struct nlmsghdr *nlh = nl_batch_msg(b, &len);

		if (!nlh) {
			nl_batch_flush(b, on_assoc_done, d);
			nlh = nl_batch_msg(b, &len);
		}
		assoc_action_describe(&v[i], desc, sizeof(desc));
		if (!nlh || !build_assoc_request(&v[i], nlh, len)) {
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot build request: %s",
				   desc);
			assoc_not_sent(d, &v[i], -EMSGSIZE);
			continue;
		}
		log_debug("netlink request: %s", desc);
		nl_batch_add(b, (uintptr_t)&v[i]);
	}
	nl_batch_flush(b, on_assoc_done, d);
	nl_batch_free(b); /* wipes the buffer: requests held keys */
}

/* The one place that writes SAs and policies to the kernel. A generation
 * that moved ahead is written to disk first, then its SA installed. */
static void xfrm_reconcile(struct daemon *d, bool all)
{
	if (!d->xreq)
		return;
	if (d->xfrm_resync_wanted)
		xfrm_resync(d);
	for (int pass = 0; pass < 4; pass++) {
		struct assoc_action *v = NULL;
		int n;

		assocs_set_wallclock(d->assocs, wall_ms());
		/* Later passes take what the earlier ones changed (marked
		 * dirty), not every association again. */
		n = assocs_plan(d->assocs, now_usec(), all && pass == 0, &v);

		if (n < 0)
			return;
		if (assocs_need_save(d->assocs) && save_generations(d) == 0)
			assocs_generations_saved(d->assocs);
		send_assoc_actions(d, v, n);
		assoc_actions_free(v, (size_t)(n > 0 ? n : 0));
		if (!assocs_dirty(d->assocs))
			break;
	}
	d->last_reconcile_ms = wall_ms();
	if (d->xfrm_resync_wanted) {
		xfrm_resync(d);
		xfrm_reconcile(d, true);
	}
	arm_rotation_timer(d);
	if (d->ready)
		update_status(d);
}

static int on_xfrm_monitor(sd_event_source *s, int fd, uint32_t revents, void *data)
{
	struct daemon *d = data;
	int r;

	assocs_set_wallclock(d->assocs, wall_ms());
	r = nl_monitor_read(d->xmon, on_xfrm_message, d);

	if (r == -ENOBUFS) {
		/* Case S3: keep the socket, ask for a larger buffer, re-read. */
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "resync",
			   "XFRM monitor overrun (ENOBUFS): re-reading all SAs and policies");
		nl_set_rcvbuf(d->xmon, doubled_buffer(d->config->netlink_buffer));
		nl_monitor_read(d->xmon, on_xfrm_message, d);
		d->xfrm_resync_wanted = true;
	} else if (r < 0) {
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "error", "XFRM monitor read failed: %s",
			   strerror(-r));
	}
	if (d->xfrm_resync_wanted) {
		xfrm_resync(d);
		xfrm_reconcile(d, true);
	} else if (assocs_dirty(d->assocs)) {
		xfrm_reconcile(d, false);
	}
	return 0;
}

/* --- the wall clock ------------------------------------------------------
 * Rotation follows the wall clock. A CLOCK_REALTIME timer fires at the next
 * boundary; a timerfd armed far in the future with TFD_TIMER_CANCEL_ON_SET
 * reports every set of the clock (a step), after which everything is
 * recomputed at once. Whether the clock is synchronised is read with
 * adjtimex(2) in read-only mode (modes 0): it needs no privilege, and the
 * unit allows the call explicitly, since systemd 252's ProtectClock= would
 * forbid even that; the unit keeps CAP_SYS_TIME out of the bounding set
 * instead, so the clock cannot be set from here. */

static void check_clock_sync(struct daemon *d)
{
	struct timex tx = {.modes = 0};
	uint64_t now = now_usec();
	int r, sync, prev;

	if (d->clock_checked_usec && now - d->clock_checked_usec < 10 * 1000000ULL)
		return;
	d->clock_checked_usec = now;
	r = adjtimex(&tx);
	if (r < 0)
		sync = -1;
	else
		sync = (r == TIME_ERROR || (tx.status & STA_UNSYNC)) ? 0 : 1;
	/* Only rotation depends on the clock: with tokens alone it is nobody's
	 * business, and is reported once the first association arrives. */
	prev = d->clock_reported;
	d->clock_sync = sync;
	if (assocs_count(d->assocs) == 0) {
		d->clock_reported = 2;
		return;
	}
	if (sync != prev) {
		if (sync < 0)
			event_emit(
			    LOG_INFO, EVENT_DAEMON, NULL, "clock",
			    "cannot read whether the clock is synchronised (adjtimex: %s%s); "
			    "rotation trusts the clock as it is",
			    strerror(errno),
			    errno == EPERM ? ", refused by the unit's ProtectClock=" : "");
		else if (sync == 1 && prev == 0)
			event_emit(LOG_INFO, EVENT_DAEMON, NULL, "clock",
				   "the clock is synchronised again");
	}
	/* Warn while it lasts, every 10 minutes: both peers must agree on the
	 * time within the overlap. */
	if (sync == 0 && (prev != 0 || now - d->clock_warned_usec >= 600 * 1000000ULL)) {
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "clock",
			   "the clock is not synchronised (adjtimex reports STA_UNSYNC): key "
			   "rotation follows it, and a peer whose clock differs by more than the "
			   "overlap loses packets at every boundary");
		d->clock_warned_usec = now;
	}
	d->clock_reported = sync;
}

static void arm_rotation_timer(struct daemon *d)
{
	int64_t t = assocs_next_deadline(d->assocs);

	if (!d->rotation_timer)
		return;
	if (t == INT64_MAX) {
		sd_event_source_set_enabled(d->rotation_timer, SD_EVENT_OFF);
		return;
	}
	sd_event_source_set_time(d->rotation_timer, t <= 0 ? 1 : (uint64_t)t * 1000ULL);
	sd_event_source_set_enabled(d->rotation_timer, SD_EVENT_ONESHOT);
}

static int on_rotation_timer(sd_event_source *s, uint64_t usec, void *data)
{
	struct daemon *d = data;

	(void)s;
	(void)usec;
	assocs_set_wallclock(d->assocs, wall_ms());
	assocs_tick(d->assocs);
	xfrm_reconcile(d, false);
	arm_rotation_timer(d);
	return 0;
}

static int arm_clock_fd(int fd)
{
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)INT32_MAX * 4}};

	/* Far in the future: it only ever reports a set of the clock. */
	return timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
}

static int on_clock_set(sd_event_source *s, int fd, uint32_t revents, void *data)
{
	struct daemon *d = data;
	uint64_t expirations;

	(void)s;
	(void)revents;
	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != ECANCELED &&
	    errno != EAGAIN)
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "clock", "clock watch: %s",
			   strerror(errno));
	if (arm_clock_fd(fd) < 0)
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "clock",
			   "cannot re-arm the clock watch: %s", strerror(errno));
	event_emit(LOG_INFO, EVENT_DAEMON, NULL, "clock",
		   "the wall clock was set: rotation times are recomputed");
	d->clock_checked_usec = 0;
	check_clock_sync(d);
	assocs_set_wallclock(d->assocs, wall_ms());
	assocs_clock_stepped(d->assocs);
	xfrm_reconcile(d, false);
	return 0;
}

static int open_clock_watch(struct daemon *d)
{
	int r = sd_event_add_time(d->event, &d->rotation_timer, CLOCK_REALTIME, UINT64_MAX, 1000,
				  on_rotation_timer, d);

	if (r < 0)
		return r;
	d->clock_fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->clock_fd < 0 || arm_clock_fd(d->clock_fd) < 0) {
		/* Rotation still works; a clock step is noticed at the next
		 * counter read instead of at once. */
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "clock",
			   "cannot watch for clock steps: %s", strerror(errno));
		return 0;
	}
	return sd_event_add_io(d->event, &d->clock_source, d->clock_fd, EPOLLIN, on_clock_set, d);
}

/* Inbound counters show when the peer has moved to a newer generation;
 * the periodic dump also catches anything a missed event hid. */
static int on_counter_timer(sd_event_source *s, uint64_t usec, void *data)
{
	struct daemon *d = data;

	if (assocs_count(d->assocs) > 0) {
		check_clock_sync(d);
		xfrm_resync(d);
		xfrm_reconcile(d, false);
	}
	sd_event_source_set_time(s, usec + d->config->counter_interval_usec);
	return 0;
}

static int open_xfrm(struct daemon *d)
{
	static const unsigned groups[] = {XFRMNLGRP_SA, XFRMNLGRP_POLICY, XFRMNLGRP_EXPIRE};
	int r;

	r = nl_open(NETLINK_XFRM, false, &d->xreq);
	if (r < 0)
		goto fail;
	r = nl_open(NETLINK_XFRM, true, &d->xmon);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		r = nl_join_group(d->xmon, groups[i]);
		if (r < 0)
			goto fail;
	}
	/* Our own installs are echoed here too: thousands at start. */
	nl_set_rcvbuf(d->xmon, (int)d->config->netlink_buffer);
	return sd_event_add_io(d->event, &d->xmon_source, nl_fd(d->xmon), EPOLLIN, on_xfrm_monitor,
			       d);
fail:
	nl_close(d->xreq);
	nl_close(d->xmon);
	d->xreq = d->xmon = NULL;
	return r;
}

/* Config and runtime definitions together. A runtime one that the config
 * now declares (by name or number) gives way to it. At start and on reload
 * every secret file is read again; a runtime change reads only those of the
 * associations it adds or redefines. */
static int apply_assoc_defs(struct daemon *d, bool reread_secrets)
{
	const struct store_state *st = tokens_state(d->tokens);
	size_t n = d->config->n_assocs;
	struct assoc_def *v = calloc(n + st->n_assocs + 1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	/* Which secrets are still needed depends on the clock. */
	assocs_set_wallclock(d->assocs, wall_ms());
	if (n)
		memcpy(v, d->config->assocs, n * sizeof(*v));
	for (size_t i = 0; i < st->n_assocs; i++) {
		const struct assoc_def *rt = &st->assocs[i];
		bool clash = false;

		for (size_t j = 0; j < d->config->n_assocs && !clash; j++)
			clash = strcmp(d->config->assocs[j].name, rt->name) == 0 ||
				d->config->assocs[j].number == rt->number;
		if (clash) {
			event_emit(
			    LOG_NOTICE, EVENT_ASSOCIATION, rt->name, "ignored",
			    "%s: runtime association ignored: the config declares its name or "
			    "number",
			    rt->name);
			continue;
		}
		v[n++] = *rt;
	}
	r = reread_secrets ? assocs_set_defs(d->assocs, v, n) : assocs_update_defs(d->assocs, v, n);
	free(v);
	return r;
}

static int load_assocs(struct daemon *d)
{
	const struct store_state *st = tokens_state(d->tokens);
	struct assoc_gen_record *gens;
	int r;

	r = apply_assoc_defs(d, true);
	if (r < 0)
		return r;
	gens = calloc(st->n_generations ? st->n_generations : 1, sizeof(*gens));
	if (!gens)
		return -ENOMEM;
	for (size_t i = 0; i < st->n_generations; i++) {
		snprintf(gens[i].name, sizeof(gens[i].name), "%s", st->generations[i].name);
		gens[i].out_gen = st->generations[i].out_gen;
		gens[i].in_gen = st->generations[i].in_gen;
	}
	assocs_set_generations(d->assocs, gens, st->n_generations);
	free(gens);
	return assocs_set_released(d->assocs, st->released, st->n_released);
}

/* --- signals and reload ------------------------------------------------ */

static bool str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Settings read once at start: a reload that changes them says so, so
 * nobody believes they took effect. */
static void note_start_only(const struct daemon *d, const struct config *old,
			    const struct config *c)
{
	const struct {
		const char *key;
		bool changed;
	} v[] = {
	    {"socket", !d->opts.socket_path && str_differs(old->socket_path, c->socket_path)},
	    {"state-dir", !d->opts.state_dir && str_differs(old->state_dir, c->state_dir)},
	    {"socket-group", str_differs(old->socket_group, c->socket_group)},
	    {"admin-group", str_differs(old->admin_group, c->admin_group)},
	    {"max-clients", old->max_clients != c->max_clients},
	    {"client-timeout", old->client_timeout_usec != c->client_timeout_usec},
	    {"reply-backlog-mib", old->reply_backlog_mib != c->reply_backlog_mib},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (v[i].changed)
			event_emit(LOG_NOTICE, EVENT_DAEMON, NULL, "restart-needed",
				   "%s changed in the config: it takes effect when tokend "
				   "restarts; the old value stays until then",
				   v[i].key);
}

static int reload(struct daemon *d)
{
	struct config *c = NULL, *old = d->config;
	int r;

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_usec());
	event_emit(LOG_INFO, EVENT_DAEMON, NULL, "reloading", "reloading %s", d->config_path);
	r = load_config(&d->opts, &c);
	if (r == 0) {
		char err[512];
		/* A schedule must not rewrite generations already in use. */
		assocs_set_wallclock(d->assocs, wall_ms());
		if (assocs_check_redefine(d->assocs, c->assocs, c->n_assocs, err, sizeof(err)) <
		    0) {
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "config-error", "%s: %s",
				   d->config_path, err);
			config_free(c);
			r = -EINVAL;
		}
	}
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "reload-failed",
			   "config reload failed; keeping the previous config");
		sd_notify(0, "READY=1");
		update_status(d);
		return 0;
	}
	note_start_only(d, old, c);
	if (d->opts.socket_path) {
		free(c->socket_path);
		c->socket_path = strdup(d->opts.socket_path);
	}
	d->config = c;
	tokens_set_config(d->tokens, c);
	apply_settings(d);
	adopt_config_into_state(d);
	if (apply_assoc_defs(d, true) < 0)
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "reload-failed",
			   "out of memory while reloading associations");
	config_free(old);
	reconcile(d, true);
	xfrm_reconcile(d, true);
	sd_event_source_set_time_relative(d->reconcile_timer, c->reconcile_interval_usec);
	event_emit(LOG_INFO, EVENT_DAEMON, NULL, "reloaded", "config reloaded: %zu token%s%s",
		   c->n_tokens, c->n_tokens == 1 ? "" : "s",
		   c->has_global ? " and a global token" : "");
	sd_notify(0, "READY=1");
	update_status(d);
	return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *data)
{
	return reload(data);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *data)
{
	struct daemon *d = data;

	/* Kernel state is left as it is: tokens outlive the daemon. */
	event_emit(LOG_INFO, EVENT_DAEMON, NULL, "stopping",
		   "stopping on signal %u; tokens stay in the kernel", si->ssi_signo);
	sd_notify(0, "STOPPING=1");
	return sd_event_exit(d->event, 0);
}

/* --- life cycle -------------------------------------------------------- */

static char *path_join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Two daemons writing one state file would each lose the other's changes
 * and reuse generations: the second one refuses to start. The lock goes
 * with the process, kill -9 included. */
static int lock_state_dir(struct daemon *d, const char *dir)
{
	char *path = path_join(dir, "lock"), pid[32] = "";
	ssize_t n;
	int fd;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int r = -errno;
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot open %s: %s", path,
			   strerror(-r));
		free(path);
		return r;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;

		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (r == -EWOULDBLOCK)
			event_emit(
			    LOG_ERR, EVENT_DAEMON, NULL, "error",
			    "another tokend (pid %s) uses the state directory %s; one tokend "
			    "per state directory (give this one its own --state-dir)",
			    pid[0] ? pid : "unknown", dir);
		else
			event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot lock %s: %s", path,
				   strerror(-r));
		close(fd);
		free(path);
		return r == -EWOULDBLOCK ? -EBUSY : r;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		log_debug("%s: cannot record the pid: %s", path, strerror(errno));
	free(path);
	d->lock_fd = fd;
	return 0;
}

static int make_state_dir(const char *dir)
{
	char *copy = strdup(dir);

	if (!copy)
		return -ENOMEM;
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
			int r = -errno;
			free(copy);
			return r;
		}
		*p = '/';
	}
	free(copy);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Every event: remembered when it is a failure, and sent to monitors. */
static void on_event(const struct event *e, void *data)
{
	struct daemon *d = data;

	if (e->level <= LOG_WARNING) {
		d->last_error.realtime_usec = e->realtime_usec;
		d->last_error.kind = e->kind;
		snprintf(d->last_error.object, sizeof(d->last_error.object), "%s",
			 e->object ? e->object : "");
		snprintf(d->last_error.message, sizeof(d->last_error.message), "%s", e->message);
	}
	server_broadcast_event(d->server, e);
}

int daemon_new(const struct daemon_options *o, struct daemon **ret)
{
	struct daemon *d = calloc(1, sizeof(*d));
	struct tokens_settings ts = {0};
	const char *state_dir;
	int r;

	if (!d)
		return -ENOMEM;
	d->opts = *o;
	d->lock_fd = -1;
	d->start_usec = now_usec();
	event_set_sink(on_event, d);
	d->config_path = strdup(o->config_path ? o->config_path : DEFAULT_CONFIG);
	r = load_config(o, &d->config);
	if (r < 0)
		goto fail;
	if (o->socket_path) {
		free(d->config->socket_path);
		d->config->socket_path = strdup(o->socket_path);
	}
	state_dir = o->state_dir ? o->state_dir : d->config->state_dir;
	r = o->dry_run ? 0 : make_state_dir(state_dir);
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error",
			   "cannot create state directory %s: %s", state_dir, strerror(-r));
		goto fail;
	}
	r = o->dry_run ? 0 : lock_state_dir(d, state_dir);
	if (r < 0)
		goto fail;
	d->state_file = path_join(state_dir, STORE_FILE_NAME);
	if (d->state_file && !o->dry_run) {
		/* Ours alone now (locked): what a killed save left is litter. */
		int n = store_remove_temps(d->state_file);

		if (n > 0)
			log_info("removed %d temporary state file%s left by interrupted saves", n,
				 n == 1 ? "" : "s");
	}
	r = tokens_new(&ts, &d->tokens);
	if (r < 0)
		goto fail;
	apply_settings(d);
	r = assocs_new(&(struct assocs_settings){0}, &d->assocs);
	if (r < 0)
		goto fail;
	apply_settings(d);
	tokens_set_config(d->tokens, d->config);
	load_state(d);
	assocs_set_degraded(d->assocs, d->degraded);
	adopt_config_into_state(d);
	r = load_assocs(d);
	if (r < 0)
		goto fail;

	r = sd_event_default(&d->event);
	if (r < 0)
		goto fail;
	r = open_netlink(d);
	if (r < 0) {
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error", "cannot open rtnetlink: %s",
			   strerror(-r));
		goto fail;
	}
	r = open_xfrm(d);
	if (r < 0 && d->config->n_assocs > 0)
		event_emit(LOG_ERR, EVENT_DAEMON, NULL, "error",
			   "cannot open XFRM netlink (%s): IPsec associations cannot be installed",
			   strerror(-r));
	if (o->dry_run) {
		*ret = d;
		return 0;
	}
	r = server_new(d, d->event,
		       &(struct server_options){
			   .path = d->config->socket_path,
			   .socket_group = d->config->socket_group,
			   .admin_group = d->config->admin_group,
			   .max_clients = d->config->max_clients,
			   .listen_fds = d->opts.listen_fds,
			   .client_timeout_usec = d->config->client_timeout_usec,
			   .reply_backlog = (size_t)d->config->reply_backlog_mib << 20,
		       },
		       &d->server);
	if (r < 0)
		goto fail;
	*ret = d;
	return 0;
fail:
	daemon_free(d);
	return r < 0 ? r : -EINVAL;
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	event_set_sink(NULL, NULL);
	server_free(d->server);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	free(d->status_sent);
	sd_event_source_unref(d->mon_source);
	sd_event_source_unref(d->reconcile_timer);
	sd_event_source_unref(d->retry_timer);
	sd_event_source_unref(d->counter_timer);
	sd_event_source_unref(d->rotation_timer);
	sd_event_source_unref(d->clock_source);
	if (d->clock_fd > 0)
		close(d->clock_fd);
	sd_event_source_unref(d->xmon_source);
	nl_close(d->mon);
	nl_close(d->req);
	nl_close(d->xmon);
	nl_close(d->xreq);
	assocs_free(d->assocs);
	tokens_free(d->tokens);
	config_free(d->config);
	sd_event_unref(d->event);
	free(d->config_path);
	free(d->state_file);
	free(d->degraded_reason);
	free(d);
}

int daemon_run(struct daemon *d)
{
	sigset_t mask;
	int r;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sd_event_add_signal(d->event, NULL, SIGTERM, on_sigterm, d);
	sd_event_add_signal(d->event, NULL, SIGINT, on_sigterm, d);
	sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d);
	r = sd_event_add_time_relative(d->event, &d->reconcile_timer, CLOCK_MONOTONIC,
				       d->config->reconcile_interval_usec, 0, on_reconcile_timer,
				       d);
	if (r < 0)
		return 1;
	sd_event_source_set_enabled(d->reconcile_timer, SD_EVENT_ON);
	r = sd_event_add_time(d->event, &d->retry_timer, CLOCK_MONOTONIC, UINT64_MAX, 10000,
			      on_retry_timer, d);
	if (r < 0)
		return 1;

	/* 1 ms accuracy: the default (250 ms) would blur when counters move. */
	r = sd_event_add_time_relative(d->event, &d->counter_timer, CLOCK_MONOTONIC,
				       d->config->counter_interval_usec, 1000, on_counter_timer, d);
	if (r < 0)
		return 1;
	/* Timers are one-shot by default: this one re-arms itself. */
	sd_event_source_set_enabled(d->counter_timer, SD_EVENT_ON);
	d->clock_sync = 2; /* not read yet: the first reading is reported */
	d->clock_reported = 2;
	if (open_clock_watch(d) < 0)
		return 1;

	/* Adopt what the kernel has: nothing right is removed and re-added. */
	r = resync(d);
	if (r < 0)
		return 1;
	reconcile(d, true);
	xfrm_resync(d);
	xfrm_reconcile(d, true);
	d->ready = true;
	event_emit(LOG_INFO, EVENT_DAEMON, NULL, "ready",
		   "tokend %s ready: config %s, state %s, socket %s", TOKEND_VERSION,
		   d->config_path, d->state_file, server_path(d->server));
	sd_notify(0, "READY=1");
	update_status(d);
	/* WatchdogSec= in the unit: the loop itself sends WATCHDOG=1, so a
	 * wedged loop gets the daemon restarted. */
	r = sd_event_set_watchdog(d->event, true);
	if (r > 0)
		log_debug("watchdog enabled: WATCHDOG=1 well within WATCHDOG_USEC");
	else if (r < 0)
		event_emit(LOG_WARNING, EVENT_DAEMON, NULL, "watchdog",
			   "cannot enable the watchdog: %s", strerror(-r));
	r = sd_event_loop(d->event);
	return r < 0 ? 1 : 0;
}

/* --- operations -------------------------------------------------------- */

static const char *name_or_global(const char *ifname)
{
	return ifname && *ifname ? ifname : "global";
}

static json_object *json_name(const char *ifname)
{
	return ifname && *ifname ? json_object_new_string(ifname) : NULL;
}

/* Shared checks of every change: the interface name, degraded mode and
 * entries the config owns. */
static int check_change(struct daemon *d, const char *ifname, json_object **ret,
			const char **ret_error)
{
	const char *why;
	const struct config_token *c;
	char msg[512];

	if (ifname && addr_ifname_valid(ifname, &why) < 0) {
		snprintf(msg, sizeof(msg), "invalid interface name \"%s\": %s", ifname, why);
		*ret_error = "io.tokend.InvalidInterface";
		*ret = daemon_error_params(msg, "interface", json_object_new_string(ifname),
					   "reason", json_object_new_string(why), NULL);
		return -EINVAL;
	}
	if (d->degraded) {
		snprintf(msg, sizeof(msg),
			 "runtime changes are refused while tokend runs degraded: %s",
			 d->degraded_reason);
		*ret_error = "io.tokend.Degraded";
		*ret = daemon_error_params(msg, "reason",
					   json_object_new_string(d->degraded_reason), NULL);
		return -EROFS;
	}
	c = tokens_config_entry(d->tokens, ifname ? ifname : "");
	if (c) {
		snprintf(msg, sizeof(msg),
			 "the %s token is declared in %s; change it there and reload tokend",
			 ifname ? ifname : "global", c->where);
		*ret_error = "io.tokend.ConfigEntry";
		*ret = daemon_error_params(msg, "interface", json_name(ifname), "file",
					   json_object_new_string(c->where), NULL);
		return -EPERM;
	}
	return 0;
}

static int state_write_failed(struct daemon *d, char *err, json_object **ret,
			      const char **ret_error)
{
	char msg[600];

	snprintf(msg, sizeof(msg), "%s; nothing was changed", err ? err : "cannot write state");
	event_emit(LOG_ERR, EVENT_DAEMON, NULL, "state-write-failed", "%s", msg);
	*ret_error = "io.tokend.StateWriteFailed";
	*ret = daemon_error_params(msg, "file", json_object_new_string(d->state_file), "reason",
				   json_object_new_string(err ? err : ""), NULL);
	free(err);
	return -EIO;
}

static int no_such_entry(const char *ifname, bool runtime, json_object **ret,
			 const char **ret_error)
{
	char msg[256];

	if (ifname && runtime)
		snprintf(msg, sizeof(msg),
			 "no runtime token is held for %s (a token from the config, or the "
			 "global token it takes, is not deleted per interface)",
			 ifname);
	else if (ifname)
		snprintf(msg, sizeof(msg), "no token is held for %s", ifname);
	else
		snprintf(msg, sizeof(msg), "no runtime global token is held");
	*ret_error = "io.tokend.NoSuchEntry";
	*ret = daemon_error_params(msg, "interface", json_name(ifname), NULL);
	return -ENOENT;
}

int daemon_list_tokens(struct daemon *d, const char *ifname, json_object **ret,
		       const char **ret_error)
{
	int r = tokens_list_json(d->tokens, ifname, ret);

	if (r == -ENOENT)
		return no_such_entry(ifname, false, ret, ret_error);
	if (r < 0) {
		*ret_error = "io.tokend.InternalError";
		*ret = daemon_error_params(strerror(-r), NULL);
	}
	return r;
}

int daemon_set_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
		     const char *text, json_object **ret, const char **ret_error)
{
	const char *name = ifname ? ifname : "", *why;
	const struct store_entry *cur;
	struct store_state next;
	struct in6_addr token;
	char tok[ADDR_TOKEN_STRLEN], msg[512], *err = NULL;
	bool changed = true;
	int r;

	if (addr_token_parse(text, &token, &why) < 0 || addr_token_is_zero(&token)) {
		if (addr_token_parse(text, &token, &why) == 0)
			why = "\"::\" means no token; use delete to remove one";
		snprintf(msg, sizeof(msg), "invalid token \"%s\": %s", text, why);
		*ret_error = "io.tokend.InvalidToken";
		*ret = daemon_error_params(msg, "token", json_object_new_string(text), "reason",
					   json_object_new_string(why), NULL);
		return -EINVAL;
	}
	r = check_change(d, ifname, ret, ret_error);
	if (r < 0)
		return r;
	addr_format(&token, tok, sizeof(tok));
	cur = tokens_runtime_entry(d->tokens, name);
	if (cur && memcmp(&cur->token, &token, sizeof(token)) == 0) {
		changed = false;
		tokens_resume(d->tokens, ifname, NULL);
	} else {
		r = store_state_copy(tokens_state(d->tokens), &next);
		if (r < 0)
			return state_write_failed(d, strdup("out of memory"), ret, ret_error);
		store_remove(&next.tokens, &next.n_tokens, name);
		if (store_add(&next.tokens, &next.n_tokens, name, &token) < 0 ||
		    (!store_contains(next.owned, next.n_owned, name, &token) &&
		     store_add(&next.owned, &next.n_owned, name, &token) < 0)) {
			store_state_free(&next);
			return state_write_failed(d, strdup("out of memory"), ret, ret_error);
		}
		r = commit_state(d, &next, &err);
		if (r < 0)
			return state_write_failed(d, err, ret, ret_error);
		event_emit(LOG_INFO, EVENT_TOKEN, name_or_global(ifname), "set",
			   "%s: token %s set (uid %u, pid %d)", name_or_global(ifname), tok,
			   (unsigned)c->uid, (int)c->pid);
	}
	reconcile(d, false);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "changed", json_object_new_boolean(changed));
	json_object_object_add(*ret, "entry", ifname ? tokens_entry_json(d->tokens, ifname) : NULL);
	return 0;
}

static int remove_runtime(struct daemon *d, const char *name, char **err)
{
	struct store_state next;
	int r = store_state_copy(tokens_state(d->tokens), &next);

	if (r < 0) {
		*err = strdup("out of memory");
		return r;
	}
	store_remove(&next.tokens, &next.n_tokens, name);
	return commit_state(d, &next, err);
}

int daemon_delete_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error)
{
	const char *name = ifname ? ifname : "";
	char *err = NULL;
	int r;

	r = check_change(d, ifname, ret, ret_error);
	if (r < 0)
		return r;
	if (!tokens_runtime_entry(d->tokens, name))
		return no_such_entry(ifname, true, ret, ret_error);
	r = remove_runtime(d, name, &err);
	if (r < 0)
		return state_write_failed(d, err, ret, ret_error);
	event_emit(LOG_INFO, EVENT_TOKEN, name_or_global(ifname), "deleted",
		   "%s: token deleted (uid %u, pid %d)", name_or_global(ifname), (unsigned)c->uid,
		   (int)c->pid);
	reconcile(d, false);
	*ret = json_object_new_object();
	return 0;
}

static void add_kept(json_object *kept, const char *ifname, const char *where)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "interface", json_name(ifname));
	json_object_object_add(o, "file", json_object_new_string(where));
	json_object_array_add(kept, o);
}

int daemon_flush_tokens(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error)
{
	const struct store_state *cur = tokens_state(d->tokens);
	json_object *removed = json_object_new_array(), *kept = json_object_new_array();
	struct store_state next;
	const char *why;
	char *err = NULL;
	int r;

	if (ifname && addr_ifname_valid(ifname, &why) < 0) {
		json_object_put(removed);
		json_object_put(kept);
		return check_change(d, ifname, ret, ret_error);
	}
	for (size_t i = 0; d->config && i < d->config->n_tokens; i++)
		if (!ifname || strcmp(ifname, d->config->tokens[i].ifname) == 0)
			add_kept(kept, d->config->tokens[i].ifname, d->config->tokens[i].where);
	if (!ifname && d->config->has_global)
		add_kept(kept, NULL, d->config->global.where);
	if (store_state_copy(cur, &next) < 0) {
		json_object_put(removed);
		json_object_put(kept);
		return state_write_failed(d, strdup("out of memory"), ret, ret_error);
	}
	next.n_tokens = 0;
	for (size_t i = 0; i < cur->n_tokens; i++) {
		const struct store_entry *e = &cur->tokens[i];
		if (!ifname || strcmp(ifname, e->ifname) == 0)
			json_object_array_add(removed, json_name(e->ifname));
		else
			next.tokens[next.n_tokens++] = *e;
	}
	if (json_object_array_length(removed) > 0 && d->degraded) {
		store_state_free(&next);
		json_object_put(removed);
		json_object_put(kept);
		return check_change(d, NULL, ret, ret_error);
	}
	if (json_object_array_length(removed) > 0) {
		r = commit_state(d, &next, &err);
		if (r < 0) {
			json_object_put(removed);
			json_object_put(kept);
			return state_write_failed(d, err, ret, ret_error);
		}
		event_emit(LOG_INFO, EVENT_TOKEN, ifname, "flushed",
			   "%s: %zu runtime token%s flushed (uid %u, pid %d)",
			   ifname ? ifname : "all", json_object_array_length(removed),
			   json_object_array_length(removed) == 1 ? "" : "s", (unsigned)c->uid,
			   (int)c->pid);
	} else {
		store_state_free(&next);
	}
	reconcile(d, false);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "removed", removed);
	json_object_object_add(*ret, "kept", kept);
	return 0;
}

int daemon_resume_token(struct daemon *d, const struct daemon_caller *c, const char *ifname,
			json_object **ret, const char **ret_error)
{
	json_object *names = json_object_new_array();
	unsigned n = tokens_resume(d->tokens, ifname, names);

	if (n > 0)
		event_emit(LOG_INFO, EVENT_TOKEN, NULL, "resumed",
			   "%u contested token%s resumed (uid %u, pid %d)", n, n == 1 ? "" : "s",
			   (unsigned)c->uid, (int)c->pid);
	reconcile(d, false);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "resumed", names);
	return 0;
}

static json_object *rfc3339_json(int64_t realtime_usec)
{
	time_t secs = (time_t)(realtime_usec / 1000000);
	struct tm tm;
	char text[64];

	gmtime_r(&secs, &tm);
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(text + strlen(text), sizeof(text) - strlen(text), ".%03dZ",
		 (int)(realtime_usec / 1000 % 1000));
	return json_object_new_string(text);
}

static json_object *assoc_counts_json(const struct daemon *d)
{
	json_object *o = json_object_new_object();
	struct assocs_counts c;

	assocs_counts(d->assocs, &c);
	json_object_object_add(o, "up", json_object_new_int((int)c.up));
	json_object_object_add(o, "pending", json_object_new_int((int)c.pending));
	json_object_object_add(o, "error", json_object_new_int((int)c.error));
	json_object_object_add(o, "conflict", json_object_new_int((int)c.conflict));
	json_object_object_add(o, "released", json_object_new_int((int)c.released));
	return o;
}

static json_object *last_error_json(const struct daemon *d)
{
	json_object *o;

	if (!d->last_error.realtime_usec)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "time", rfc3339_json((int64_t)d->last_error.realtime_usec));
	json_object_object_add(o, "message", json_object_new_string(d->last_error.message));
	json_object_object_add(o, "kind",
			       json_object_new_string(event_kind_name(d->last_error.kind)));
	json_object_object_add(
	    o, "object",
	    d->last_error.object[0] ? json_object_new_string(d->last_error.object) : NULL);
	return o;
}

int daemon_get_status(struct daemon *d, json_object **ret, const char **ret_error)
{
	struct tokens_counts c;
	json_object *o = json_object_new_object(), *counts = json_object_new_object(), *files;

	tokens_counts(d->tokens, &c);
	json_object_object_add(o, "version", json_object_new_string(TOKEND_VERSION));
	json_object_object_add(o, "pid", json_object_new_int(getpid()));
	json_object_object_add(o, "uptime_usec",
			       json_object_new_int64((int64_t)(now_usec() - d->start_usec)));
	files = json_object_new_array();
	for (char **f = d->config->files; f && *f; f++)
		json_object_array_add(files, json_object_new_string(*f));
	json_object_object_add(o, "config_files", files);
	json_object_object_add(o, "state_file", json_object_new_string(d->state_file));
	json_object_object_add(o, "degraded", json_object_new_boolean(d->degraded));
	json_object_object_add(o, "degraded_reason",
			       d->degraded_reason ? json_object_new_string(d->degraded_reason)
						  : NULL);
	json_object_object_add(counts, "held", json_object_new_int((int)c.held));
	json_object_object_add(counts, "applied", json_object_new_int((int)c.applied));
	json_object_object_add(counts, "pending", json_object_new_int((int)c.pending));
	json_object_object_add(counts, "absent", json_object_new_int((int)c.absent));
	json_object_object_add(counts, "blocked", json_object_new_int((int)c.blocked));
	json_object_object_add(counts, "unsupported", json_object_new_int((int)c.unsupported));
	json_object_object_add(counts, "contested", json_object_new_int((int)c.contested));
	json_object_object_add(counts, "removing", json_object_new_int((int)c.removing));
	json_object_object_add(o, "counts", counts);
	json_object_object_add(o, "repairs", json_object_new_int64((int64_t)c.repairs));
	json_object_object_add(o, "resyncs", json_object_new_int64((int64_t)d->resyncs));
	json_object_object_add(o, "reconciles", json_object_new_int64((int64_t)d->reconciles));
	json_object_object_add(o, "associations",
			       json_object_new_int((int)assocs_count(d->assocs)));
	json_object_object_add(o, "association_counts", assoc_counts_json(d));
	json_object_object_add(o, "last_reconcile",
			       d->last_reconcile_ms ? rfc3339_json(d->last_reconcile_ms * 1000)
						    : NULL);
	json_object_object_add(o, "last_error", last_error_json(d));
	/* Key rotation follows the wall clock: whether it is synchronised
	 * (null: not known, adjtimex refused). */
	d->clock_checked_usec = 0;
	check_clock_sync(d);
	json_object_object_add(o, "clock_synchronized",
			       d->clock_sync < 0 || d->clock_sync > 1
				   ? NULL
				   : json_object_new_boolean(d->clock_sync == 1));
	*ret = o;
	return 0;
}

static int no_such_assoc(const char *name, json_object **ret, const char **ret_error)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "no association named %s", name);
	*ret_error = "io.tokend.NoSuchAssociation";
	*ret = daemon_error_params(msg, "name", json_object_new_string(name), NULL);
	return -ENOENT;
}

int daemon_list_assocs(struct daemon *d, const char *name, json_object **ret,
		       const char **ret_error)
{
	json_object *arr;
	int r;

	assocs_set_wallclock(d->assocs, wall_ms()); /* next_rotation_in_ms is from now */
	r = assocs_list_json(d->assocs, name, &arr);

	if (r == -ENOENT)
		return no_such_assoc(name, ret, ret_error);
	if (r < 0) {
		*ret_error = "io.tokend.InternalError";
		*ret = daemon_error_params(strerror(-r), NULL);
		return r;
	}
	*ret = json_object_new_object();
	json_object_object_add(*ret, "associations", arr);
	return 0;
}

int daemon_rotate_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			json_object **ret, const char **ret_error)
{
	const char *why = NULL;
	char msg[400];
	int r;

	if (d->degraded) {
		*ret_error = "io.tokend.Degraded";
		*ret =
		    daemon_error_params("rotation is refused while tokend runs degraded", "reason",
					json_object_new_string(d->degraded_reason), NULL);
		return -EROFS;
	}
	assocs_set_wallclock(d->assocs, wall_ms()); /* the ceiling follows the clock */
	r = assocs_rotate(d->assocs, name, now_usec(), &why);
	if (r == -ENOENT)
		return no_such_assoc(name, ret, ret_error);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "%s cannot move to its next generation now: %s", name,
			 why);
		*ret_error = "io.tokend.RotationRefused";
		*ret = daemon_error_params(msg, "name", json_object_new_string(name), "reason",
					   json_object_new_string(why), NULL);
		return r;
	}
	event_emit(LOG_INFO, EVENT_ASSOCIATION, name, "rotate-asked",
		   "%s: rotation asked for (uid %u, pid %d)", name, (unsigned)c->uid, (int)c->pid);
	xfrm_reconcile(d, false);
	return daemon_list_assocs(d, name, ret, ret_error);
}

int daemon_release_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			 json_object **ret, const char **ret_error)
{
	json_object *out = NULL;
	int r;

	if (d->degraded) {
		*ret_error = "io.tokend.Degraded";
		*ret =
		    daemon_error_params("release is refused while tokend runs degraded", "reason",
					json_object_new_string(d->degraded_reason), NULL);
		return -EROFS;
	}
	r = assocs_release(d->assocs, name, &out);
	if (r == -ENOENT)
		return no_such_assoc(name, ret, ret_error);
	if (r == -EALREADY) {
		*ret = json_object_new_object();
		json_object_object_add(*ret, "released", NULL);
		return 0;
	}
	if (r < 0 || save_generations(d) < 0) {
		json_object_put(out);
		*ret_error = "io.tokend.StateWriteFailed";
		*ret = daemon_error_params("the release could not be recorded in the state file",
					   "file", json_object_new_string(d->state_file), NULL);
		return r < 0 ? r : -EIO;
	}
	event_emit(LOG_INFO, EVENT_ASSOCIATION, name, "released",
		   "%s: released to another tool (uid %u, pid %d)", name, (unsigned)c->uid,
		   (int)c->pid);
	*ret = json_object_new_object();
	json_object_object_add(*ret, "released", out);
	return 0;
}

/* Print a planned change once: the dry run plans again after pretending to
 * record a generation, and the second plan repeats the first. */
static bool print_once(char ***seen, size_t *n, const char *line)
{
	char **v;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*seen)[i], line) == 0)
			return false;
	v = realloc(*seen, (*n + 1) * sizeof(*v));
	if (!v)
		return true;
	*seen = v;
	v[(*n)++] = strdup(line);
	printf("%s\n", line);
	return true;
}

int daemon_dry_run(struct daemon *d)
{
	struct tokens_action *ta = NULL;
	struct assoc_action *aa = NULL;
	char tok[ADDR_TOKEN_STRLEN], desc[512], line[600];
	char **seen = NULL;
	size_t n_seen = 0;
	int n, total = 0;

	if (resync(d) < 0)
		return 1;
	n = tokens_plan(d->tokens, now_usec(), true, &ta);
	for (int i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "token: %s %s on %s (ifindex %d)",
			 addr_token_is_zero(&ta[i].token) ? "clear" : "set",
			 addr_format(&ta[i].token, tok, sizeof(tok)), ta[i].ifname, ta[i].ifindex);
		total += print_once(&seen, &n_seen, line);
	}
	free(ta);
	if (d->xreq && xfrm_resync(d) == 0) {
		for (int pass = 0; pass < 2; pass++) {
			n = assocs_plan(d->assocs, now_usec(), true, &aa);
			for (int i = 0; i < n; i++) {
				assoc_action_describe(&aa[i], desc, sizeof(desc));
				snprintf(line, sizeof(line), "ipsec: %s", desc);
				total += print_once(&seen, &n_seen, line);
			}
			assoc_actions_free(aa, (size_t)(n > 0 ? n : 0));
			aa = NULL;
			assocs_plan_abandoned(d->assocs);
			if (!assocs_need_save(d->assocs))
				break;
			printf("state: a new sending generation would be recorded in %s\n",
			       d->state_file);
			assocs_generations_saved(d->assocs);
		}
	}
	printf("%d change%s\n", total, total == 1 ? "" : "s");
	fflush(stdout);
	for (size_t i = 0; i < n_seen; i++)
		free(seen[i]);
	free(seen);
	return 0;
}

static int invalid_assoc(const char *name, const char *field, const char *why, json_object **ret,
			 const char **ret_error)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "invalid association %s: %s%s%s", name ? name : "",
		 field ? field : "", field ? ": " : "", why);
	*ret_error = "io.tokend.InvalidAssociation";
	*ret = daemon_error_params(msg, "name", name ? json_object_new_string(name) : NULL,
				   "reason", json_object_new_string(why), NULL);
	return -EINVAL;
}

/* Checks of a new runtime definition against what is held. */
static int check_new_assoc(struct daemon *d, const struct assoc_def *def, json_object **ret,
			   const char **ret_error)
{
	const struct store_state *st = tokens_state(d->tokens);
	const struct assoc_def *c = config_find_assoc(d->config, def->name);
	struct keys_secret *secret = NULL;
	char msg[600], *err = NULL;

	if (c) {
		snprintf(msg, sizeof(msg), "association %s is declared in %s; change it there",
			 def->name, c->where);
		*ret_error = "io.tokend.ConfigEntry";
		*ret = daemon_error_params(msg, "name", json_object_new_string(def->name), "file",
					   json_object_new_string(c->where), NULL);
		return -EPERM;
	}
	for (size_t i = 0; i < st->n_assocs; i++)
		if (strcmp(st->assocs[i].name, def->name) == 0) {
			snprintf(msg, sizeof(msg), "association %s already exists", def->name);
			*ret_error = "io.tokend.AssociationExists";
			*ret = daemon_error_params(msg, "name", json_object_new_string(def->name),
						   NULL);
			return -EEXIST;
		}
	for (size_t i = 0; i < d->config->n_assocs + st->n_assocs; i++) {
		const struct assoc_def *o = i < d->config->n_assocs
						? &d->config->assocs[i]
						: &st->assocs[i - d->config->n_assocs];
		if (o->number == def->number) {
			snprintf(msg, sizeof(msg), "number %u is already used by association %s",
				 def->number, o->name);
			return invalid_assoc(def->name, "number", msg, ret, ret_error);
		}
	}
	/* Load the secret now so a bad file is refused before anything is
	 * held; the message names the file and the problem, never content. */
	if (keys_secret_load(def->secret_path, &secret, &err) < 0) {
		snprintf(msg, sizeof(msg), "%s", err ? err : "cannot load the secret");
		free(err);
		return invalid_assoc(def->name, "secret_file", msg, ret, ret_error);
	}
	keys_secret_free(secret);
	/* And the secrets of the schedule lines still to come. */
	for (size_t k = 0; k < def->n_sched; k++) {
		int64_t now = wall_ms() - (int64_t)assoc_overlap_ms(def);
		if (!def->sched[k].has_secret ||
		    assoc_secret_retired(def, k + 1, assoc_clock_gen(def, now)))
			continue;
		secret = NULL;
		err = NULL;
		if (keys_secret_load(def->sched[k].secret_path, &secret, &err) < 0) {
			snprintf(msg, sizeof(msg), "the line from generation %llu: %s",
				 (unsigned long long)def->sched[k].from,
				 err ? err : "cannot load the secret");
			free(err);
			return invalid_assoc(def->name, "schedule", msg, ret, ret_error);
		}
		keys_secret_free(secret);
	}
	return 0;
}

static int change_runtime_assocs(struct daemon *d, const char *remove, const struct assoc_def *add,
				 char **err)
{
	struct store_state next;
	size_t w = 0;
	int r = store_state_copy(tokens_state(d->tokens), &next);

	if (r < 0)
		return r;
	for (size_t i = 0; i < next.n_assocs; i++)
		if (!remove ||
		    (strcmp(remove, "*") != 0 && strcmp(remove, next.assocs[i].name) != 0))
			next.assocs[w++] = next.assocs[i];
	next.n_assocs = w;
	if (add) {
		struct assoc_def *v = realloc(next.assocs, (next.n_assocs + 1) * sizeof(*v));
		if (!v) {
			store_state_free(&next);
			return -ENOMEM;
		}
		next.assocs = v;
		next.assocs[next.n_assocs++] = *add;
	}
	r = commit_state(d, &next, err);
	if (r < 0)
		return r;
	r = apply_assoc_defs(d, false);
	if (r == 0)
		r = save_generations(d);
	xfrm_reconcile(d, false);
	return r;
}

int daemon_add_assoc(struct daemon *d, const struct daemon_caller *c, json_object *params,
		     json_object **ret, const char **ret_error)
{
	struct assoc_def def;
	const char *field = NULL, *why = NULL;
	json_object *name, *secret;
	char *err = NULL;
	int r;

	/* "credential:NAME": a file systemd put in $CREDENTIALS_DIRECTORY, as
	 * in the config. Held (and saved) as the file's path. */
	if (json_object_object_get_ex(params, "secret_file", &secret) &&
	    json_object_is_type(secret, json_type_string) &&
	    strncmp(json_object_get_string(secret), "credential:", 11) == 0) {
		const char *cred = json_object_get_string(secret) + 11;
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		char path[PATH_MAX];

		json_object_object_get_ex(params, "name", &name);
		if (!*cred || strchr(cred, '/'))
			return invalid_assoc(json_object_is_type(name, json_type_string)
						 ? json_object_get_string(name)
						 : NULL,
					     "secret_file", "credential:NAME, NAME without a slash",
					     ret, ret_error);
		if (!dir || dir[0] != '/')
			return invalid_assoc(json_object_is_type(name, json_type_string)
						 ? json_object_get_string(name)
						 : NULL,
					     "secret_file",
					     "a systemd credential is named, but tokend has no "
					     "$CREDENTIALS_DIRECTORY (LoadCredential= in its unit)",
					     ret, ret_error);
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, cred) >= sizeof(path))
			return invalid_assoc(json_object_is_type(name, json_type_string)
						 ? json_object_get_string(name)
						 : NULL,
					     "secret_file", "the credential's path is too long",
					     ret, ret_error);
		json_object_object_add(params, "secret_file", json_object_new_string(path));
	}
	r = assoc_def_from_json(params, &def, &field, &why);
	if (r < 0) {
		json_object_object_get_ex(params, "name", &name);
		return invalid_assoc(json_object_is_type(name, json_type_string)
					 ? json_object_get_string(name)
					 : NULL,
				     field, why, ret, ret_error);
	}
	if (d->degraded)
		return check_change(d, NULL, ret, ret_error);
	r = check_new_assoc(d, &def, ret, ret_error);
	if (r < 0)
		return r;
	r = change_runtime_assocs(d, NULL, &def, &err);
	if (r < 0)
		return state_write_failed(d, err, ret, ret_error);
	event_emit(LOG_INFO, EVENT_ASSOCIATION, def.name, "added",
		   "%s: association added (uid %u, pid %d)", def.name, (unsigned)c->uid,
		   (int)c->pid);
	return daemon_list_assocs(d, def.name, ret, ret_error);
}

int daemon_delete_assoc(struct daemon *d, const struct daemon_caller *c, const char *name,
			json_object **ret, const char **ret_error)
{
	const struct store_state *st = tokens_state(d->tokens);
	const struct assoc_def *cfg = config_find_assoc(d->config, name);
	char msg[400], *err = NULL;
	bool found = false;
	int r;

	if (cfg) {
		snprintf(msg, sizeof(msg),
			 "association %s is declared in %s; remove it there and reload tokend",
			 name, cfg->where);
		*ret_error = "io.tokend.ConfigEntry";
		*ret = daemon_error_params(msg, "name", json_object_new_string(name), "file",
					   json_object_new_string(cfg->where), NULL);
		return -EPERM;
	}
	for (size_t i = 0; i < st->n_assocs; i++)
		found |= strcmp(st->assocs[i].name, name) == 0;
	if (!found)
		return no_such_assoc(name, ret, ret_error);
	if (d->degraded)
		return check_change(d, NULL, ret, ret_error);
	r = change_runtime_assocs(d, name, NULL, &err);
	if (r < 0)
		return state_write_failed(d, err, ret, ret_error);
	event_emit(LOG_INFO, EVENT_ASSOCIATION, name, "deleted",
		   "%s: association deleted (uid %u, pid %d)", name, (unsigned)c->uid, (int)c->pid);
	*ret = json_object_new_object();
	return 0;
}

int daemon_flush_assocs(struct daemon *d, const struct daemon_caller *c, json_object **ret,
			const char **ret_error)
{
	const struct store_state *st = tokens_state(d->tokens);
	json_object *removed = json_object_new_array(), *kept = json_object_new_array();
	char *err = NULL;
	int r;

	for (size_t i = 0; i < st->n_assocs; i++)
		json_object_array_add(removed, json_object_new_string(st->assocs[i].name));
	for (size_t i = 0; i < d->config->n_assocs; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name",
				       json_object_new_string(d->config->assocs[i].name));
		json_object_object_add(o, "file",
				       json_object_new_string(d->config->assocs[i].where));
		json_object_array_add(kept, o);
	}
	if (st->n_assocs > 0) {
		if (d->degraded) {
			json_object_put(removed);
			json_object_put(kept);
			return check_change(d, NULL, ret, ret_error);
		}
		r = change_runtime_assocs(d, "*", NULL, &err);
		if (r < 0) {
			json_object_put(removed);
			json_object_put(kept);
			return state_write_failed(d, err, ret, ret_error);
		}
		event_emit(LOG_INFO, EVENT_ASSOCIATION, NULL, "flushed",
			   "%zu runtime association%s flushed (uid %u, pid %d)",
			   json_object_array_length(removed),
			   json_object_array_length(removed) == 1 ? "" : "s", (unsigned)c->uid,
			   (int)c->pid);
	}
	*ret = json_object_new_object();
	json_object_object_add(*ret, "removed", removed);
	json_object_object_add(*ret, "kept", kept);
	return 0;
}
