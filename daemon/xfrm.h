/* SPDX-License-Identifier: MIT */
#pragma once

#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* XFRM netlink messages: building requests for SAs and policies, and
 * decoding what the kernel sends back (dumps, multicast, expire events).
 * No policy lives here and nothing is logged above debug. Key bytes are
 * only ever copied into netlink attributes; describe functions never print
 * them, and debug dumps redact them. */

union xfrm_addr_any {
	struct in_addr v4;
	struct in6_addr v6;
	uint8_t bytes[16];
};

struct xfrm_sa {
	uint8_t family; /* AF_INET or AF_INET6 */
	union xfrm_addr_any src, dst;
	uint32_t spi;  /* host order */
	uint8_t proto; /* IPPROTO_ESP */
	uint8_t mode;  /* XFRM_MODE_TRANSPORT or XFRM_MODE_TUNNEL */
	uint32_t reqid;
	uint32_t replay_window;
	uint8_t flags;		      /* XFRM_STATE_* */
	struct xfrm_lifetime_cfg lft; /* limits; XFRM_INF for none */

	/* Algorithms: the kernel names, and keys (not owned; building only). */
	const char *enc_name; /* e.g. "rfc4106(gcm(aes))" or "cbc(aes)" */
	bool aead;
	unsigned icv_bits;     /* AEAD ICV or HMAC truncation */
	const char *auth_name; /* "hmac(sha256)", or NULL for AEAD */
	const uint8_t *enc_key;
	size_t enc_key_len;
	const uint8_t *auth_key;
	size_t auth_key_len;

	/* Filled in by decoding only. */
	struct xfrm_lifetime_cur cur; /* bytes, packets, add_time, use_time */
	char enc_name_buf[64];
	char auth_name_buf[64];
	uint8_t key_digest[32]; /* SHA-256 of enc key || auth key, to compare keys
				   without keeping them; zero when no key was sent */
	bool has_replay_esn;
	uint32_t replay_esn_window;
};

struct xfrm_policy {
	uint8_t family;
	struct xfrm_selector sel; /* kernel struct: addresses, prefixes, proto, ports, ifindex */
	uint8_t dir;		  /* XFRM_POLICY_IN, OUT or FWD */
	uint32_t priority;
	uint32_t index; /* decoding only */
	uint8_t action; /* XFRM_POLICY_ALLOW */
	bool has_tmpl;
	struct xfrm_user_tmpl tmpl; /* one template: id.daddr/spi/proto, saddr, reqid, mode, ... */
};

/* Builders: buf must hold at least 2048 bytes. NULL if it does not fit.
 * NEWSA with update=true builds XFRM_MSG_UPDSA. */
struct nlmsghdr *xfrm_build_newsa(void *buf, size_t len, const struct xfrm_sa *sa, bool update);
struct nlmsghdr *xfrm_build_delsa(void *buf, size_t len, uint8_t family,
				  const union xfrm_addr_any *dst, uint32_t spi, uint8_t proto);
struct nlmsghdr *xfrm_build_newpolicy(void *buf, size_t len, const struct xfrm_policy *p,
				      bool update);
/* Delete by selector and direction (never by a wildcard). */
struct nlmsghdr *xfrm_build_delpolicy(void *buf, size_t len, const struct xfrm_policy *p);
/* XFRM_MSG_GETSA or XFRM_MSG_GETPOLICY dumps. */
struct nlmsghdr *xfrm_build_dump(void *buf, size_t len, uint16_t type);

/* Decoders. xfrm_sa_parse takes XFRM_MSG_NEWSA, UPDSA and DELSA (and
 * the SA inside XFRM_MSG_EXPIRE via xfrm_expire_parse). -EBADMSG on a short
 * or malformed message. Key attributes are digested, never copied. */
int xfrm_sa_parse(const struct nlmsghdr *nlh, struct xfrm_sa *ret);
int xfrm_expire_parse(const struct nlmsghdr *nlh, struct xfrm_sa *ret, bool *ret_hard);
/* XFRM_MSG_NEWPOLICY, UPDPOLICY, DELPOLICY (DELPOLICY notifications carry
 * an xfrm_userpolicy_id plus XFRMA_POLICY with the full policy). */
int xfrm_policy_parse(const struct nlmsghdr *nlh, struct xfrm_policy *ret);

/* One line for debug logs, never with key bytes. */
void xfrm_sa_describe(const struct xfrm_sa *sa, char *buf, size_t len);
void xfrm_policy_describe(const struct xfrm_policy *p, char *buf, size_t len);
/* A debug dump of any XFRM message with key attributes redacted: attribute
 * types and lengths, values only for non-secret ones. */
void xfrm_msg_describe(const struct nlmsghdr *nlh, char *buf, size_t len);
