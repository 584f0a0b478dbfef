/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "nl.h"
#include "xfrm.h"

/* IPsec associations: a named pair of ESP SAs (one per direction) between a
 * local and a remote address, plus the policies that send traffic through
 * them. Keys are derived per generation from a master secret (keys.h).
 *
 * Like the token manager, this module never talks to the kernel: it keeps
 * the desired set (definitions and generations) and the observed set (the
 * SAs and policies the kernel reports), and assoc_plan() returns the netlink
 * requests that close the difference. */

#define ASSOC_NAME_MAX	    64
#define ASSOC_NUMBER_MAX    65535u
#define ASSOC_LOOKAHEAD_MAX 16u
#define ASSOC_SCHEDULE_MAX  8u
/* Rotation periods: whole seconds from 2 s (the kernel's SA timers tick in
 * seconds) to ten years. */
#define ASSOC_LIFETIME_MIN 2u
#define ASSOC_LIFETIME_MAX 315360000u
/* Scheduled changes name generations below this (far beyond any clock). */
#define ASSOC_GEN_MAX (1ULL << 48)

/* SPIs: 0x01000000 | number << 8 | direction << 7 | generation mod 128. */
#define ASSOC_SPI_BASE	 0x01000000u
#define ASSOC_GEN_WINDOW 128u

/* A change of parameters from one generation on (a `schedule` line). Fields
 * not given keep the values of the generations before. */
struct assoc_sched {
	uint64_t from; /* first generation it applies to */
	char secret_path[256];
	enum keys_algorithm algorithm;
	uint64_t lifetime_sec;
	bool has_secret, has_algorithm, has_lifetime;
};

struct assoc_def {
	char name[ASSOC_NAME_MAX + 1];
	uint32_t number;
	uint8_t family;
	union xfrm_addr_any local, remote;
	uint8_t mode; /* XFRM_MODE_TRANSPORT or XFRM_MODE_TUNNEL */
	enum keys_algorithm algorithm;
	char secret_path[256];
	union xfrm_addr_any local_net, remote_net;
	uint8_t local_plen, remote_plen;
	uint8_t proto;			  /* 0: any */
	uint16_t local_port, remote_port; /* 0: any */
	char dev[IF_NAMESIZE];		  /* "": any interface */
	uint64_t lifetime_sec;		  /* rotation period L; 0: no rotation by the clock */
	int64_t epoch;			  /* Unix seconds the generations count from */
	uint64_t overlap_ms;		  /* old inbound SAs stay this long; 0: L/4 */
	uint64_t lifetime_bytes;	  /* 0: none */
	uint64_t lifetime_packets;	  /* hard packet limit, never 0 */
	uint32_t replay_window;
	unsigned lookahead;			      /* W */
	char where[300];			      /* "FILE:LINE", "" for runtime */
	struct assoc_sched sched[ASSOC_SCHEDULE_MAX]; /* ascending `from` */
	size_t n_sched;
};

/* Defaults for a definition: transport, aes-gcm-128, replay 32, lookahead 2,
 * packet limit below the 32-bit sequence space. */
void assoc_def_init(struct assoc_def *d);
/* Check a definition on its own (not against others). 0 or -EINVAL and
 * *why (static text). */
int assoc_def_check(const struct assoc_def *d, const char **why);

/* --- the clock ----------------------------------------------------------
 * Generations as a function of wall-clock time (milliseconds since the Unix
 * epoch). With lifetime L, epoch E and phase P (derived from the
 * association's name and number, the same on both peers, so that many
 * associations do not rotate at one instant), generation g starts at
 * E + P + g * L; a schedule line that changes the lifetime from generation F
 * on makes the periods from F on that long. Without a lifetime there is no
 * clock: every generation "starts" at 0. */

/* The phase in milliseconds, in [0, L). Fixed by the definition. */
uint64_t assoc_phase_ms(const struct assoc_def *d);
/* The overlap in milliseconds (the default, L/4, filled in). */
uint64_t assoc_overlap_ms(const struct assoc_def *d);
/* The generation the clock gives at `t_ms` (0 before the first start). */
uint64_t assoc_clock_gen(const struct assoc_def *d, int64_t t_ms);
/* When generation `gen` starts (INT64_MAX: never, INT64_MIN: no clock). */
int64_t assoc_gen_start_ms(const struct assoc_def *d, uint64_t gen);
/* The parameters (schedule included) of generation `gen`. */
const char *assoc_gen_secret(const struct assoc_def *d, uint64_t gen);
enum keys_algorithm assoc_gen_algorithm(const struct assoc_def *d, uint64_t gen);
/* Is secret k (0: the base one, i + 1: that of schedule line i) used by no
 * generation from `lo` on? Then its file may be gone. */
bool assoc_secret_retired(const struct assoc_def *d, size_t k, uint64_t lo);
/* Parse one `schedule` value: "from GEN [secret FILE] [algorithm ALG]
 * [lifetime SECONDS]". 0 or -EINVAL and *why (static text). */
int assoc_sched_parse(const char *value, struct assoc_sched *s, const char **why);

/* Definitions as JSON: the AddAssociation parameters and the state file
 * share this shape ("name", "number", "local", "remote", "secret_file",
 * "mode", "algorithm", "local_selector", "remote_selector", "protocol",
 * "local_port", "remote_port", "dev", "replay_window", "lookahead",
 * "lifetime", "epoch", "overlap_ms", "schedule" (array of {"from",
 * "secret_file", "algorithm", "lifetime"}), "lifetime_bytes",
 * "lifetime_packets"). From JSON: -EINVAL with the field
 * and the reason (static text) on a bad or unknown member; the definition
 * is checked with assoc_def_check too. */
int assoc_def_from_json(json_object *o, struct assoc_def *d, const char **ret_field,
			const char **why);
json_object *assoc_def_to_json(const struct assoc_def *d);

/* SPI of generation `gen` sent from src to dst. */
uint32_t assoc_spi(uint32_t number, uint8_t family, const union xfrm_addr_any *src,
		   const union xfrm_addr_any *dst, uint64_t gen);

struct assocs;

struct assocs_settings {
	uint32_t reqid_base;		/* tokend owns reqids base+1 .. base+65535 */
	uint32_t policy_priority;	/* priority of tokend's policies */
	uint64_t counter_interval_usec; /* how often inbound counters are read */
	uint64_t dwell_usec;		/* min time between early moves of a sender */
};

/* One request for the kernel. */
enum assoc_op {
	ASSOC_OP_ADD_SA,
	ASSOC_OP_UPDATE_SA, /* lifetimes only: keys never change under an SPI */
	ASSOC_OP_DEL_SA,
	ASSOC_OP_ADD_POLICY,
	ASSOC_OP_UPDATE_POLICY,
	ASSOC_OP_DEL_POLICY,
};

struct assoc_action {
	enum assoc_op op;
	char name[ASSOC_NAME_MAX + 1]; /* "" for orphans */
	struct xfrm_sa sa;	       /* keys point into key_buf */
	struct xfrm_policy policy;
	uint64_t generation;
	bool outbound;
	bool adjust; /* an update of our own SA's time limits to its real add time */
	uint8_t key_buf[KEYS_MATERIAL_MAX]; /* wiped by assoc_actions_free */
};

/* Generations a direction has reached, kept in the state file. */
struct assoc_gen_record {
	char name[ASSOC_NAME_MAX + 1];
	uint64_t out_gen; /* highest generation sent on (or about to be) */
	uint64_t in_gen;  /* lowest generation the receive window holds */
};

int assocs_new(const struct assocs_settings *s, struct assocs **ret);
/* The wall clock (ms since the Unix epoch) that rotation follows: set
 * before each plan and each batch of kernel events. Dwell and retries use
 * the monotonic `now` passed to the calls. */
void assocs_set_wallclock(struct assocs *m, int64_t t_ms);
/* The wall-clock time of the next step the clock drives (a boundary, the
 * end of an overlap), INT64_MAX when none. */
int64_t assocs_next_deadline(const struct assocs *m);
/* Mark the associations whose clock-driven step is due. */
void assocs_tick(struct assocs *m);
/* The wall clock was set: recompute everything at the next plan. */
void assocs_clock_stepped(struct assocs *m);
/* Before redefinitions are applied (reload, AddAssociation over an existing
 * name): a schedule line must not change the keys, algorithm or start time
 * of a generation that is already installed or in use. 0 or -EINVAL with a
 * message naming the association and the generation. */
int assocs_check_redefine(const struct assocs *m, const struct assoc_def *defs, size_t n, char *err,
			  size_t len);
void assocs_free(struct assocs *m);
void assocs_set_settings(struct assocs *m, const struct assocs_settings *s);

/* The desired set: definitions (config and runtime together; names and
 * numbers already checked unique by the caller). Secrets are (re)loaded
 * here; a definition whose secret cannot be loaded keeps its policies (so
 * traffic is blocked, never sent in the clear) and reports the error. */
int assocs_set_defs(struct assocs *m, const struct assoc_def *defs, size_t n);
/* The same for a runtime change: secrets are loaded for new or redefined
 * associations only; the others keep what they hold. */
int assocs_update_defs(struct assocs *m, const struct assoc_def *defs, size_t n);
/* Generations from the state file, before the first plan. */
void assocs_set_generations(struct assocs *m, const struct assoc_gen_record *v, size_t n);
/* The generations to write to the state file. *ret is malloc'd. */
int assocs_get_generations(const struct assocs *m, struct assoc_gen_record **ret, size_t *n);
/* A generation moved ahead and must reach the disk before its SA is
 * installed: write the state file, then call assocs_generations_saved(). */
bool assocs_need_save(const struct assocs *m);
void assocs_generations_saved(struct assocs *m);
void assocs_set_degraded(struct assocs *m, bool degraded);

/* Association numbers released to another tool (kept in the state file). */
int assocs_set_released(struct assocs *m, const uint32_t *v, size_t n);
int assocs_get_released(const struct assocs *m, uint32_t **ret, size_t *n);

/* The observed set, from dumps and multicast. */
void assocs_resync_begin(struct assocs *m);
void assocs_resync_end(struct assocs *m);
void assocs_sa_seen(struct assocs *m, const struct xfrm_sa *sa, uint64_t now);
/* XFRM_MSG_UPDSA: its counters and add time are the request's, not the SA's. */
void assocs_sa_updated(struct assocs *m, const struct xfrm_sa *sa, uint64_t now);
void assocs_sa_gone(struct assocs *m, const struct xfrm_sa *sa, uint64_t now);
void assocs_sa_expired(struct assocs *m, const struct xfrm_sa *sa, bool hard, uint64_t now);
void assocs_policy_seen(struct assocs *m, const struct xfrm_policy *p);
void assocs_policy_gone(struct assocs *m, const struct xfrm_policy *p);

/* Operations. -ENOENT when no such association. */
int assocs_rotate(struct assocs *m, const char *name, uint64_t now, const char **why);
/* Stop managing: its kernel objects are left in place and recorded as
 * released (returned in *ret, malloc'd: SPIs and policy directions). */
int assocs_release(struct assocs *m, const char *name, json_object **ret);

/* Reconcile: the requests that close the difference. */
int assocs_plan(struct assocs *m, uint64_t now, bool all, struct assoc_action **ret);
void assocs_action_done(struct assocs *m, const struct assoc_action *a, const struct nl_ack *ack,
			uint64_t now);
void assoc_actions_free(struct assoc_action *v, size_t n);
/* The planned actions will not be sent (a dry run): nothing is in flight. */
void assocs_plan_abandoned(struct assocs *m);
bool assocs_dirty(const struct assocs *m);
/* Human description of an action, never with key bytes. */
void assoc_action_describe(const struct assoc_action *a, char *buf, size_t len);

/* Status: one object per association (never keys), or -ENOENT. */
int assocs_list_json(const struct assocs *m, const char *name, json_object **ret);
unsigned assocs_count(const struct assocs *m);
/* Associations by state; anything not up, error, conflict or released is
 * counted as pending. */
struct assocs_counts {
	unsigned total, up, pending, error, conflict, released;
};
void assocs_counts(const struct assocs *m, struct assocs_counts *c);
