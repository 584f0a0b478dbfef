/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "nl.h"
#include "rtnl.h"
#include "store.h"

/* The token manager: the desired set (config entries, runtime entries, the
 * global token), the observed set (links as the kernel reports them) and the
 * reconcile step that turns their difference into token writes.
 *
 * It never talks to the kernel itself: tokens_plan() returns the writes to
 * make and tokens_action_done() takes the kernel's answers, so the logic can
 * be tested without a kernel and the daemon can batch the writes. */

struct tokens;

struct tokens_settings {
	unsigned contest_repairs;
	uint64_t contest_window_usec;
	uint64_t retry_min_usec;
	uint64_t retry_max_usec;
	/* Directory prefix for other managers' runtime state (systemd-networkd,
	 * NetworkManager); "" means "/". Tests point it elsewhere. */
	const char *run_prefix;
};

struct tokens_action {
	char ifname[IF_NAMESIZE];
	int ifindex;
	struct in6_addr token; /* :: clears */
};

struct tokens_counts {
	unsigned held, applied, pending, absent, blocked, unsupported, contested, removing;
	unsigned long long repairs;
};

int tokens_new(const struct tokens_settings *s, struct tokens **ret);
void tokens_free(struct tokens *t);
void tokens_set_settings(struct tokens *t, const struct tokens_settings *s);

/* The desired set. The config is borrowed (it must outlive its use here);
 * the state holds runtime entries and the owned records and is taken over.
 * Names whose desired token changed are marked for reconcile, and their
 * contested marks cleared. */
void tokens_set_config(struct tokens *t, const struct config *c);
void tokens_set_state(struct tokens *t, struct store_state *st);
const struct store_state *tokens_state(const struct tokens *t);
/* In degraded mode nothing is removed from the kernel. */
void tokens_set_degraded(struct tokens *t, bool degraded);

/* The token tokend wants on `ifname` right now, and where it comes from. */
const struct in6_addr *tokens_desired(const struct tokens *t, const char *ifname);
/* The runtime entry for ifname ("" = global), NULL when none. */
const struct store_entry *tokens_runtime_entry(const struct tokens *t, const char *ifname);
const struct config_token *tokens_config_entry(const struct tokens *t, const char *ifname);

/* Resume contested entries: one name, or all when ifname is NULL. Returns
 * the number resumed; names are appended to `names` when given. */
unsigned tokens_resume(struct tokens *t, const char *ifname, json_object *names);

/* The observed set. */
void tokens_link_update(struct tokens *t, const struct rtnl_link *l, uint64_t now);
void tokens_link_delete(struct tokens *t, int ifindex);
void tokens_addr_update(struct tokens *t, const struct rtnl_addr *a, bool deleted);
/* A full re-read: links not seen between begin and end are gone. */
void tokens_resync_begin(struct tokens *t);
void tokens_resync_end(struct tokens *t);

/* Reconcile. mark_all makes every name a candidate; otherwise only names
 * touched since the last plan are. Returns the number of actions (*ret is
 * malloc'd, free it), or -ENOMEM. Due retries are included. */
int tokens_plan(struct tokens *t, uint64_t now, bool all, struct tokens_action **ret);
void tokens_action_done(struct tokens *t, const struct tokens_action *a, const struct nl_ack *ack,
			uint64_t now);
bool tokens_dirty(const struct tokens *t);
/* Earliest time a blocked or removing entry should be tried again, or
 * UINT64_MAX. */
uint64_t tokens_next_retry(const struct tokens *t);

/* Owned records no longer needed: fills *next (a copy of the state without
 * them) and returns true when something can be dropped. */
bool tokens_prune_owned(const struct tokens *t, struct store_state *next);

/* Status. */
void tokens_counts(const struct tokens *t, struct tokens_counts *c);
/* The ListTokens reply for all names, or one (-ENOENT when none is held). */
int tokens_list_json(const struct tokens *t, const char *ifname, json_object **ret);
/* One entry object, or NULL when nothing is held for ifname. */
json_object *tokens_entry_json(const struct tokens *t, const char *ifname);
