/* SPDX-License-Identifier: MIT */
#pragma once

#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* rtnetlink messages about links, their IPv6 token and their addresses.
 * Decoding and request building only; no policy, debug logging only. */

/* IPv6 settings of a link that decide whether it can take a token
 * (the kernel's inet6_set_iftoken checks), INT_MIN when unknown. */
struct rtnl_inet6_conf {
	int forwarding;
	int accept_ra;
	int rtr_solicits;
	int disable_ipv6;
};

struct rtnl_link {
	int ifindex;
	char ifname[IF_NAMESIZE]; /* "" when the message had no name */
	unsigned flags;		  /* IFF_* */
	bool has_inet6;		  /* the message carried IPv6 link info */
	struct in6_addr token;	  /* valid when has_inet6; :: = none */
	struct rtnl_inet6_conf conf;
};

struct rtnl_addr {
	int ifindex;
	struct in6_addr addr;
	unsigned char prefixlen;
	unsigned char scope;
	uint32_t flags;
};

/* Decode RTM_NEWLINK/RTM_DELLINK of family AF_UNSPEC (RTNLGRP_LINK and
 * link dumps: the token is in IFLA_AF_SPEC/AF_INET6) or AF_INET6
 * (RTNLGRP_IPV6_IFINFO: the token is in IFLA_PROTINFO). 0 or -EBADMSG. */
int rtnl_link_parse(const struct nlmsghdr *nlh, struct rtnl_link *ret);

/* Decode RTM_NEWADDR/RTM_DELADDR of family AF_INET6. -EAFNOSUPPORT for
 * other families. */
int rtnl_addr_parse(const struct nlmsghdr *nlh, struct rtnl_addr *ret);

/* Build an RTM_SETLINK that sets (or, with ::, clears) the token. */
struct nlmsghdr *rtnl_build_set_token(void *buf, size_t len, int ifindex,
				      const struct in6_addr *token);
/* Build a dump request: RTM_GETLINK/AF_UNSPEC or RTM_GETADDR/AF_INET6. */
struct nlmsghdr *rtnl_build_dump(void *buf, size_t len, uint16_t type, uint8_t family);

/* One line for debug logs describing a link message. */
void rtnl_link_describe(const struct rtnl_link *l, char *buf, size_t len);
