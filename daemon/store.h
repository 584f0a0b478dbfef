/* SPDX-License-Identifier: MIT */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "assoc.h"

/* The state file: runtime entries acknowledged to clients, and the tokens
 * tokend may have put into the kernel (so that an entry removed while tokend
 * was down can be cleared at start). Written atomically: a temporary file in
 * the same directory, fsync, rename over the old one, fsync the directory.
 *
 *   {"format": "tokend-state", "version": 1,
 *    "tokens": [{"interface": "veth0", "token": "::1"},
 *               {"interface": null, "token": "::42"}],
 *    "owned":  [{"interface": "veth0", "token": "::1"},
 *               {"interface": null, "token": "::42"}]}
 *
 * An "owned" record with a null interface is a global token value: any
 * interface holding exactly that value may have got it from tokend.
 */

#define STORE_VERSION	1
#define STORE_FILE_NAME "state.json"

struct store_entry {
	char ifname[IF_NAMESIZE]; /* "" = global */
	struct in6_addr token;
};

/* How far each direction of an association has gone: the highest
 * generation sent on is on disk before its first packet can leave. */
struct store_generation {
	char name[65];
	uint64_t out_gen;
	uint64_t in_gen;
};

struct store_state {
	struct store_entry *tokens;
	size_t n_tokens;
	struct store_entry *owned;
	size_t n_owned;
	/* "associations": [{"name": ..., "out_generation": N, "in_generation": N}] */
	struct store_generation *generations;
	size_t n_generations;
	/* "released": association numbers handed over to another tool */
	uint32_t *released;
	size_t n_released;
	/* "runtime_associations": definitions added over the socket */
	struct assoc_def *assocs;
	size_t n_assocs;
};

/* Load the file. A missing file gives an empty state and returns 0. Any other
 * problem (unreadable, not JSON, wrong format or version, a bad entry)
 * returns a negative errno and *ret_error, a malloc'd sentence that names the
 * file and the problem. *ret is untouched on error. */
int store_load(const char *path, struct store_state *ret, char **ret_error);

/* Replace the file atomically. On failure the old file is intact, and
 * *ret_error names the file and the problem. */
int store_save(const char *path, const struct store_state *st, char **ret_error);
/* Removes the temporary files of saves that never finished (the daemon
 * killed between writing and renaming): .BASE.XXXXXX beside path. Call with
 * the state directory locked. Returns how many were removed, or -errno. */
int store_remove_temps(const char *path);

void store_state_free(struct store_state *st);

/* Helpers for callers building a state. 0 or -ENOMEM. */
int store_add(struct store_entry **v, size_t *n, const char *ifname, const struct in6_addr *token);
bool store_contains(const struct store_entry *v, size_t n, const char *ifname,
		    const struct in6_addr *token);

/* A deep copy. 0 or -ENOMEM (dst is then empty). */
int store_state_copy(const struct store_state *src, struct store_state *dst);
/* Sort both lists by interface name, then token: lookups bisect tokens[]. */
void store_state_sort(struct store_state *st);
/* Remove every entry of ifname. 0, or -ENOENT when there was none. */
int store_remove(struct store_entry **v, size_t *n, const char *ifname);
