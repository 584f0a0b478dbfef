/* SPDX-License-Identifier: MIT */
#include "rtnl.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <limits.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/ipv6.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static void rtnl_parse_inet6(const struct nlattr *nest, struct rtnl_link *l)
{
	const struct nlattr *a;

	mnl_attr_for_each_nested(a, nest)
	{
		switch (mnl_attr_get_type(a)) {
		case IFLA_INET6_TOKEN:
			if (mnl_attr_get_payload_len(a) == sizeof(struct in6_addr)) {
				memcpy(&l->token, mnl_attr_get_payload(a), sizeof(l->token));
				l->has_inet6 = true;
			}
			break;
		case IFLA_INET6_CONF: {
			/* An array of int32 indexed by DEVCONF_*. */
			const int32_t *v = mnl_attr_get_payload(a);
			size_t n = mnl_attr_get_payload_len(a) / sizeof(int32_t);

			if (n > DEVCONF_FORWARDING)
				l->conf.forwarding = v[DEVCONF_FORWARDING];
			if (n > DEVCONF_ACCEPT_RA)
				l->conf.accept_ra = v[DEVCONF_ACCEPT_RA];
			if (n > DEVCONF_RTR_SOLICITS)
				l->conf.rtr_solicits = v[DEVCONF_RTR_SOLICITS];
			if (n > DEVCONF_DISABLE_IPV6)
				l->conf.disable_ipv6 = v[DEVCONF_DISABLE_IPV6];
			break;
		}
		}
	}
}

int rtnl_link_parse(const struct nlmsghdr *nlh, struct rtnl_link *l)
{
	const struct ifinfomsg *ifi;
	const struct nlattr *a;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)))
		return -EBADMSG;
	ifi = mnl_nlmsg_get_payload(nlh);
	*l = (struct rtnl_link){
	    .ifindex = ifi->ifi_index,
	    .flags = ifi->ifi_flags,
	    .conf = {INT_MIN, INT_MIN, INT_MIN, INT_MIN},
	};
	mnl_attr_for_each(a, nlh, sizeof(*ifi))
	{
		switch (mnl_attr_get_type(a)) {
		case IFLA_IFNAME:
			if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
				snprintf(l->ifname, sizeof(l->ifname), "%s", mnl_attr_get_str(a));
			break;
		case IFLA_PROTINFO:
			if (ifi->ifi_family == AF_INET6)
				rtnl_parse_inet6(a, l);
			break;
		case IFLA_AF_SPEC: {
			const struct nlattr *af;

			mnl_attr_for_each_nested(af, a)
			{
				if (mnl_attr_get_type(af) == AF_INET6)
					rtnl_parse_inet6(af, l);
			}
			break;
		}
		}
	}
	if (l->ifindex <= 0)
		return -EBADMSG;
	return 0;
}

int rtnl_addr_parse(const struct nlmsghdr *nlh, struct rtnl_addr *ret)
{
	const struct ifaddrmsg *ifa;
	const struct nlattr *a;
	bool have = false;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifa)))
		return -EBADMSG;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family != AF_INET6)
		return -EAFNOSUPPORT;
	*ret = (struct rtnl_addr){
	    .ifindex = (int)ifa->ifa_index,
	    .prefixlen = ifa->ifa_prefixlen,
	    .scope = ifa->ifa_scope,
	    .flags = ifa->ifa_flags,
	};
	mnl_attr_for_each(a, nlh, sizeof(*ifa))
	{
		switch (mnl_attr_get_type(a)) {
		case IFA_ADDRESS:
			if (mnl_attr_get_payload_len(a) == sizeof(struct in6_addr)) {
				memcpy(&ret->addr, mnl_attr_get_payload(a), sizeof(ret->addr));
				have = true;
			}
			break;
		case IFA_FLAGS:
			if (mnl_attr_get_payload_len(a) == sizeof(uint32_t))
				ret->flags = mnl_attr_get_u32(a);
			break;
		}
	}
	return have ? 0 : -EBADMSG;
}

struct nlmsghdr *rtnl_build_set_token(void *buf, size_t len, int ifindex,
				      const struct in6_addr *token)
{
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	struct nlattr *spec, *inet6;

	if (len < 256)
		return NULL;
	memset(buf, 0, 256);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_SETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	/* AF_INET6 routes the request to inet6_set_link_af, which runs the
	 * token checks (loopback, NOARP, accept_ra, rtr_solicits). */
	ifi->ifi_family = AF_INET6;
	ifi->ifi_index = ifindex;
	spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
	inet6 = mnl_attr_nest_start(nlh, AF_INET6);
	mnl_attr_put(nlh, IFLA_INET6_TOKEN, sizeof(*token), token);
	mnl_attr_nest_end(nlh, inet6);
	mnl_attr_nest_end(nlh, spec);
	return nlh;
}

struct nlmsghdr *rtnl_build_dump(void *buf, size_t len, uint16_t type, uint8_t family)
{
	struct nlmsghdr *nlh;

	if (len < 64)
		return NULL;
	memset(buf, 0, 64);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (type == RTM_GETADDR) {
		struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
		ifa->ifa_family = family;
	} else {
		struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
		ifi->ifi_family = family;
	}
	return nlh;
}

void rtnl_link_describe(const struct rtnl_link *l, char *buf, size_t len)
{
	char tok[ADDR_TOKEN_STRLEN];

	snprintf(buf, len,
		 "ifindex %d name \"%s\" flags 0x%x token %s forwarding %d accept_ra %d "
		 "rtr_solicits %d",
		 l->ifindex, l->ifname, l->flags,
		 l->has_inet6 ? addr_format(&l->token, tok, sizeof(tok)) : "(none)",
		 l->conf.forwarding, l->conf.accept_ra, l->conf.rtr_solicits);
}
