/* SPDX-License-Identifier: MIT */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "assoc.h"

/* The config file (INI, parsed by libinih) and its drop-in directory.
 *
 *   [tokend]                      daemon settings (all optional)
 *   socket = /run/tokend/tokend.sock
 *   state-dir = /var/lib/tokend
 *   socket-group = tokend         group owning the socket (may read)
 *   admin-group = tokend-admin    group allowed to change state
 *   reconcile-interval = 60s      full re-read of the kernel, the backstop
 *   retry-min = 1s                first retry of a blocked/removing entry
 *   retry-max = 60s               backoff ceiling
 *   contest-repairs = 5           repairs (2-64) within contest-window that make
 *   contest-window = 30s            an entry `contested`
 *   client-timeout = 10s          unfinished message deadline
 *   max-clients = 1024
 *   netlink-buffer = 33554432     receive buffer of the netlink monitor sockets
 *                                 (bytes, 65536 and up); an overrun is handled by
 *                                 a full re-read, a larger buffer makes it rarer
 *   log-level = info              err|warning|notice|info|debug
 *
 *   [global]
 *   token = ::42                  optional global token
 *   match = eth* en* veth*        fnmatch(3) patterns, space separated
 *                                 (default "*"); loopback never matches
 *
 *   [tokens]
 *   veth0 = ::1a:2b:3c:4d         per-interface tokens
 *
 *   [sa NAME]                     an IPsec association (docs/associations.md)
 *   number = 7                    1-65535, the same on both peers, unique per host
 *   local = 192.0.2.1             this host's address
 *   remote = 192.0.2.2            the peer's (same family)
 *   secret = /etc/tokend/keys/NAME.key   or credential:NAME ($CREDENTIALS_DIRECTORY)
 *   mode = transport              or tunnel
 *   algorithm = aes-gcm-128       aes-gcm-256, aes-cbc-hmac-sha256
 *   local-selector = 192.0.2.1/32 traffic selectors (default: the host addresses)
 *   remote-selector = 192.0.2.2/32
 *   protocol = tcp                optional: tcp, udp, sctp, icmp, ipv6-icmp or a number
 *   local-port = 443              optional (tcp, udp, sctp)
 *   remote-port = 0
 *   dev = eth0                    optional: policies only for this interface
 *   replay-window = 32            1-32
 *   lookahead = 2                 inbound generations kept ahead of the current one
 *   lifetime = 1h                 outbound SA time limit: at it the sender moves to
 *                                 the next generation (default: none)
 *   lifetime-bytes = 0            0: none
 *   lifetime-packets = 4294901760 below the 32-bit sequence space
 *
 *   [tokend] also takes reqid-base (tokend owns reqids base+1..base+65535,
 *   default 0x746b0000), policy-priority (default 0x2800), counter-interval
 *   (how often inbound counters are read, default 1s) and dwell (minimum time
 *   between early moves of a sender, default 3s, longer than the interval).
 *
 * Durations take a unit: ms, s, min, h (a bare number means seconds).
 * Drop-ins: every "*.conf" in the drop-in directory, in lexical order, after
 * the main file. A later file overrides [tokend] settings and the global
 * match; a token declared twice anywhere is an error naming both places.
 */

struct config_token {
	char ifname[IF_NAMESIZE]; /* "" for the global token */
	struct in6_addr token;
	char *where; /* "FILE:LINE", owned */
};

struct config {
	char *socket_path;
	char *state_dir;
	char *socket_group;
	char *admin_group;
	uint64_t reconcile_interval_usec;
	uint64_t retry_min_usec;
	uint64_t retry_max_usec;
	unsigned contest_repairs;
	uint64_t contest_window_usec;
	uint64_t client_timeout_usec;
	unsigned max_clients;
	unsigned reply_backlog_mib; /* unread replies of all clients together */
	int log_level;

	bool has_global;
	struct config_token global;
	char **match; /* NULL-terminated, never empty ("*" by default) */

	struct config_token *tokens; /* sorted by ifname */
	size_t n_tokens;

	/* IPsec associations, in file order. */
	struct assoc_def *assocs;
	size_t n_assocs;
	uint32_t reqid_base;
	uint32_t policy_priority;
	uint64_t counter_interval_usec;
	uint64_t dwell_usec;
	unsigned netlink_buffer; /* receive buffer of the monitor sockets, bytes */

	char **files; /* files read, NULL-terminated */
};

struct config_error {
	char *file;
	unsigned line; /* 0 when the error is about the whole file */
	char *message;
};

struct config_errors {
	struct config_error *v;
	size_t n;
};

/* A config with every default and no tokens. */
struct config *config_new_default(void);

/* Read `path` and then the drop-ins of `dropin_dir` (NULL: "<path>.d").
 * A missing main file is an error only when must_exist; a missing drop-in
 * directory never is. Returns 0 and *ret, or -EINVAL with every problem
 * found appended to *errs (each "FILE:LINE: message"), or another negative
 * errno. Nothing is returned on error. */
int config_load(const char *path, const char *dropin_dir, bool must_exist, struct config **ret,
		struct config_errors *errs);

void config_free(struct config *c);
void config_errors_clear(struct config_errors *errs);

const struct config_token *config_find_token(const struct config *c, const char *ifname);

const struct assoc_def *config_find_assoc(const struct config *c, const char *name);

/* Parse "1.5s", "500ms", "2min", "1h", "30" (seconds). 0 or -EINVAL. */
int config_parse_duration(const char *s, uint64_t *ret_usec);
