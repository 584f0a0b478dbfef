/* SPDX-License-Identifier: MIT */
/* What the kernel sends, decoded as the daemon decodes it: one datagram of
 * netlink messages, walked as nl_monitor_read, nl_transact and
 * nl_batch_flush walk it (nl_msg_ok and mnl_nlmsg_next; the rest of nl.c
 * reads from sockets, and nl_parse_error is static), each message
 * dispatched as daemon.c's on_rtnl_message and on_xfrm_message do:
 *   rtnetlink: RTM_NEWLINK/DELLINK -> rtnl_link_parse (IFLA_IFNAME,
 *              IFLA_PROTINFO and IFLA_AF_SPEC with IFLA_INET6_TOKEN and
 *              IFLA_INET6_CONF), RTM_NEWADDR/DELADDR -> rtnl_addr_parse,
 *              into a token manager (tokens.c) holding a global and two
 *              per-interface tokens, which then plans its writes;
 *   XFRM:      every message through xfrm_msg_describe (the daemon's
 *              debug dump), NEWSA/UPDSA/DELSA -> xfrm_sa_parse, EXPIRE ->
 *              xfrm_expire_parse, NEWPOLICY/UPDPOLICY/DELPOLICY ->
 *              xfrm_policy_parse, into an association manager (assoc.c)
 *              with two associations, which then plans its requests; the
 *              planned SAs and policies are built (xfrm_build_*) and
 *              decoded again.
 *
 * Input: byte 0: bit 0 the bus (0 rtnetlink, 1 XFRM); bit 1: the datagram
 * is a dump (read between resync_begin and resync_end) rather than
 * multicast events after one. The rest is the datagram, its length rounded
 * up to 4 (the kernel's datagrams always are) with zeros.
 *
 * Oracles: the sanitizers; decoded links have a positive ifindex and a
 * terminated name; decoded SAs and policies have a valid family; describe
 * output is terminated and within its buffer; every SA the manager plans
 * to add decodes back from the request built for it, with the same SPI,
 * addresses, reqid and key digest. */
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <linux/xfrm.h>
#include <openssl/evp.h>

#include "addr.h"
#include "assoc.h"
#include "config.h"
#include "fuzz_util.h"
#include "nl.h"
#include "rtnl.h"
#include "tokens.h"
#include "xfrm.h"

/* 2026-01-01T00:00:00Z, and a monotonic clock well past zero. */
#define WALL_MS	 INT64_C(1767225600000)
#define NOW_USEC UINT64_C(1000000000)

static struct config *conf;
static char secret_path[256];
static struct assoc_def defs[2];

/* --- rtnetlink ------------------------------------------------------------ */

static void check_describe_sizes(void (*describe)(const void *, char *, size_t), const void *obj)
{
	static const size_t sizes[] = {1, 2, 17, 64, 256, 512};
	char full[1024];

	describe(obj, full, sizeof(full));
	FUZZ_CHECK(memchr(full, '\0', sizeof(full)), "describe: unterminated");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *b = malloc(sizes[i]);

		FUZZ_CHECK(b, "malloc");
		describe(obj, b, sizes[i]);
		FUZZ_CHECK(strlen(b) < sizes[i] && strncmp(b, full, strlen(b)) == 0,
			   "describe into %zu bytes: \"%s\" is no prefix of \"%s\"", sizes[i], b,
			   full);
		free(b);
	}
}

static void link_describe(const void *l, char *buf, size_t len)
{
	rtnl_link_describe(l, buf, len);
}

static void sa_describe(const void *sa, char *buf, size_t len)
{
	xfrm_sa_describe(sa, buf, len);
}

static void policy_describe(const void *p, char *buf, size_t len)
{
	xfrm_policy_describe(p, buf, len);
}

static void msg_describe(const void *nlh, char *buf, size_t len)
{
	xfrm_msg_describe(nlh, buf, len);
}

static void on_rtnl(struct tokens *t, const struct nlmsghdr *nlh)
{
	struct rtnl_link l;
	struct rtnl_addr a;

	switch (nlh->nlmsg_type) {
	case RTM_NEWLINK:
	case RTM_DELLINK: {
		const struct ifinfomsg *ifi;

		if (rtnl_link_parse(nlh, &l) < 0)
			return;
		FUZZ_CHECK(l.ifindex > 0, "ifindex %d", l.ifindex);
		FUZZ_CHECK(memchr(l.ifname, '\0', sizeof(l.ifname)), "name unterminated");
		check_describe_sizes(link_describe, &l);
		ifi = mnl_nlmsg_get_payload(nlh);
		if (ifi->ifi_family == AF_UNSPEC && !(nlh->nlmsg_flags & NLM_F_MULTI))
			l.has_inet6 = false;
		if (nlh->nlmsg_type == RTM_DELLINK && ifi->ifi_family == AF_UNSPEC)
			tokens_link_delete(t, l.ifindex);
		else if (nlh->nlmsg_type == RTM_NEWLINK)
			tokens_link_update(t, &l, NOW_USEC);
		break;
	}
	case RTM_NEWADDR:
	case RTM_DELADDR:
		if (rtnl_addr_parse(nlh, &a) < 0)
			return;
		tokens_addr_update(t, &a, nlh->nlmsg_type == RTM_DELADDR);
		break;
	}
}

static void rtnl_datagram(const void *buf, int len, bool dump)
{
	struct tokens_settings ts = {
	    .contest_repairs = 5,
	    .contest_window_usec = 30000000,
	    .retry_min_usec = 1000000,
	    .retry_max_usec = 60000000,
	    /* No other manager's state: nothing to read. */
	    .run_prefix = "/nonexistent/tokend-fuzz",
	};
	struct tokens_action *acts = NULL;
	struct tokens_counts counts;
	const struct nlmsghdr *nlh;
	struct tokens *t = NULL;
	json_object *o = NULL;
	int n;

	FUZZ_CHECK(tokens_new(&ts, &t) == 0, "tokens_new");
	tokens_set_config(t, conf);
	tokens_resync_begin(t);
	if (!dump)
		tokens_resync_end(t);
	for (nlh = buf; nl_msg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		(void)nl_type_name(NETLINK_ROUTE, nlh->nlmsg_type);
		if (nlh->nlmsg_type == NLMSG_NOOP || nlh->nlmsg_type == NLMSG_DONE)
			continue;
		on_rtnl(t, nlh);
	}
	if (dump)
		tokens_resync_end(t);
	n = tokens_plan(t, NOW_USEC, true, &acts);
	FUZZ_CHECK(n >= 0, "tokens_plan: %d", n);
	for (int i = 0; i < n; i++) {
		/* The kernel says no, then yes: both answers are handled. */
		struct nl_ack ack = {.error = i % 2 ? 0 : -EINVAL};
		char req[256];

		FUZZ_CHECK(acts[i].ifindex > 0, "action for ifindex %d", acts[i].ifindex);
		FUZZ_CHECK(rtnl_build_set_token(req, sizeof(req), acts[i].ifindex, &acts[i].token),
			   "rtnl_build_set_token");
		tokens_action_done(t, &acts[i], &ack, NOW_USEC);
	}
	free(acts);
	FUZZ_CHECK(tokens_list_json(t, NULL, &o) == 0 && o, "tokens_list_json");
	json_object_put(o);
	tokens_counts(t, &counts);
	(void)tokens_next_retry(t);
	tokens_free(t);
}

/* --- XFRM ------------------------------------------------------------------ */

static void check_sa(const struct xfrm_sa *sa)
{
	FUZZ_CHECK(sa->family == AF_INET || sa->family == AF_INET6, "SA family %u", sa->family);
	FUZZ_CHECK(!sa->enc_name || sa->enc_name == sa->enc_name_buf, "enc_name elsewhere");
	FUZZ_CHECK(!sa->auth_name || sa->auth_name == sa->auth_name_buf, "auth_name elsewhere");
	FUZZ_CHECK(memchr(sa->enc_name_buf, '\0', sizeof(sa->enc_name_buf)) &&
		       memchr(sa->auth_name_buf, '\0', sizeof(sa->auth_name_buf)),
		   "algorithm name unterminated");
	FUZZ_CHECK(!sa->enc_key && !sa->auth_key, "decoded SA points at key bytes");
	check_describe_sizes(sa_describe, sa);
}

static void on_xfrm(struct assocs *m, const struct nlmsghdr *nlh)
{
	struct xfrm_policy p;
	struct xfrm_sa sa;
	bool hard;

	check_describe_sizes(msg_describe, nlh);
	switch (nlh->nlmsg_type) {
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA:
	case XFRM_MSG_DELSA:
		if (xfrm_sa_parse(nlh, &sa) != 0)
			return;
		check_sa(&sa);
		if (nlh->nlmsg_type == XFRM_MSG_NEWSA)
			assocs_sa_seen(m, &sa, NOW_USEC);
		else if (nlh->nlmsg_type == XFRM_MSG_UPDSA)
			assocs_sa_updated(m, &sa, NOW_USEC);
		else
			assocs_sa_gone(m, &sa, NOW_USEC);
		break;
	case XFRM_MSG_EXPIRE:
		if (xfrm_expire_parse(nlh, &sa, &hard) != 0)
			return;
		check_sa(&sa);
		assocs_sa_expired(m, &sa, hard, NOW_USEC);
		break;
	case XFRM_MSG_NEWPOLICY:
	case XFRM_MSG_UPDPOLICY:
	case XFRM_MSG_DELPOLICY:
		if (xfrm_policy_parse(nlh, &p) != 0)
			return;
		FUZZ_CHECK(p.family == AF_INET || p.family == AF_INET6, "policy family %u",
			   p.family);
		check_describe_sizes(policy_describe, &p);
		if (nlh->nlmsg_type == XFRM_MSG_DELPOLICY)
			assocs_policy_gone(m, &p);
		else
			assocs_policy_seen(m, &p);
		break;
	}
}

/* A planned request, built and decoded again: what tokend would send is
 * what it reads back. */
static void check_action(const struct assoc_action *a)
{
	char buf[4096];
	struct nlmsghdr *nlh;

	switch (a->op) {
	case ASSOC_OP_ADD_SA:
	case ASSOC_OP_UPDATE_SA: {
		uint8_t digest[32];
		unsigned dlen = sizeof(digest);
		uint8_t keys[2 * KEYS_MATERIAL_MAX];
		struct xfrm_sa back;

		nlh = xfrm_build_newsa(buf, sizeof(buf), &a->sa, a->op == ASSOC_OP_UPDATE_SA);
		FUZZ_CHECK(nlh, "xfrm_build_newsa refused a planned SA");
		FUZZ_CHECK(xfrm_sa_parse(nlh, &back) == 0, "planned SA does not decode");
		FUZZ_CHECK(back.spi == a->sa.spi && back.reqid == a->sa.reqid &&
			       back.family == a->sa.family &&
			       memcmp(&back.src, &a->sa.src, sizeof(back.src)) == 0 &&
			       memcmp(&back.dst, &a->sa.dst, sizeof(back.dst)) == 0,
			   "planned SA decodes differently");
		memcpy(keys, a->sa.enc_key, a->sa.enc_key_len);
		if (a->sa.auth_key_len)
			memcpy(keys + a->sa.enc_key_len, a->sa.auth_key, a->sa.auth_key_len);
		FUZZ_CHECK(EVP_Digest(keys, a->sa.enc_key_len + a->sa.auth_key_len, digest, &dlen,
				      EVP_sha256(), NULL),
			   "EVP_Digest");
		FUZZ_CHECK(memcmp(digest, back.key_digest, 32) == 0, "key digest differs");
		explicit_bzero(keys, sizeof(keys));
		explicit_bzero(buf, sizeof(buf));
		break;
	}
	case ASSOC_OP_DEL_SA:
		FUZZ_CHECK(xfrm_build_delsa(buf, sizeof(buf), a->sa.family, &a->sa.dst, a->sa.spi,
					    a->sa.proto),
			   "xfrm_build_delsa");
		break;
	case ASSOC_OP_ADD_POLICY:
	case ASSOC_OP_UPDATE_POLICY: {
		struct xfrm_policy back;

		nlh = xfrm_build_newpolicy(buf, sizeof(buf), &a->policy,
					   a->op == ASSOC_OP_UPDATE_POLICY);
		FUZZ_CHECK(nlh, "xfrm_build_newpolicy refused a planned policy");
		FUZZ_CHECK(xfrm_policy_parse(nlh, &back) == 0, "planned policy does not decode");
		FUZZ_CHECK(back.dir == a->policy.dir &&
			       memcmp(&back.sel, &a->policy.sel, sizeof(back.sel)) == 0,
			   "planned policy decodes differently");
		break;
	}
	case ASSOC_OP_DEL_POLICY:
		FUZZ_CHECK(xfrm_build_delpolicy(buf, sizeof(buf), &a->policy),
			   "xfrm_build_delpolicy");
		break;
	}
	assoc_action_describe(a, buf, sizeof(buf));
	FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)), "assoc_action_describe");
}

static void xfrm_datagram(const void *buf, int len, bool dump)
{
	struct assocs_settings set = {
	    .reqid_base = 0x746b0000u,
	    .policy_priority = 0x2800,
	    .counter_interval_usec = 1000000,
	    .dwell_usec = 3000000,
	};
	struct assoc_action *acts = NULL;
	struct assocs_counts counts;
	const struct nlmsghdr *nlh;
	struct assocs *m = NULL;
	json_object *o = NULL;
	int n;

	FUZZ_CHECK(assocs_new(&set, &m) == 0, "assocs_new");
	assocs_set_wallclock(m, WALL_MS);
	FUZZ_CHECK(assocs_set_defs(m, defs, 2) == 0, "assocs_set_defs");
	assocs_resync_begin(m);
	if (!dump)
		assocs_resync_end(m);
	for (nlh = buf; nl_msg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
		(void)nl_type_name(NETLINK_XFRM, nlh->nlmsg_type);
		if (nlh->nlmsg_type == NLMSG_NOOP || nlh->nlmsg_type == NLMSG_DONE)
			continue;
		on_xfrm(m, nlh);
	}
	if (dump)
		assocs_resync_end(m);
	assocs_tick(m);
	n = assocs_plan(m, NOW_USEC, true, &acts);
	FUZZ_CHECK(n >= 0, "assocs_plan: %d", n);
	for (int i = 0; i < n; i++) {
		struct nl_ack ack = {.error = i % 3 == 2 ? -EEXIST : 0};

		check_action(&acts[i]);
		assocs_action_done(m, &acts[i], &ack, NOW_USEC);
	}
	assoc_actions_free(acts, (size_t)n);
	if (assocs_need_save(m))
		assocs_generations_saved(m);
	FUZZ_CHECK(assocs_list_json(m, NULL, &o) == 0 && o, "assocs_list_json");
	json_object_put(o);
	assocs_counts(m, &counts);
	FUZZ_CHECK(counts.total == 2, "%u associations", counts.total);
	(void)assocs_next_deadline(m);
	assocs_free(m);
}

/* --- setup ------------------------------------------------------------------ */

static void make_def(struct assoc_def *d, const char *name, uint32_t number, int family,
		     const char *local, const char *remote, uint64_t lifetime)
{
	assoc_def_init(d);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->number = number;
	d->family = (uint8_t)family;
	FUZZ_CHECK(inet_pton(family, local, &d->local) == 1 &&
		       inet_pton(family, remote, &d->remote) == 1,
		   "inet_pton");
	d->local_net = d->local;
	d->remote_net = d->remote;
	d->local_plen = d->remote_plen = family == AF_INET ? 32 : 128;
	d->lifetime_sec = lifetime;
	snprintf(d->secret_path, sizeof(d->secret_path), "%s", secret_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const struct {
		const char *ifname;
		const char *token;
	} toks[] = {{"eth0", "::1"}, {"veth0", "::1a:2b:3c:4d"}};
	const char *why;

	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	fuzz_path(secret_path, sizeof(secret_path), "web.key");
	fuzz_write_secret(secret_path);
	/* Association 7 (the tests' "web") without a clock, 9 rotating hourly. */
	make_def(&defs[0], "web", 7, AF_INET, "192.0.2.1", "192.0.2.2", 0);
	make_def(&defs[1], "db", 9, AF_INET6, "2001:db8::1", "2001:db8::9", 3600);
	for (int i = 0; i < 2; i++)
		FUZZ_CHECK(assoc_def_check(&defs[i], &why) == 0, "def %d: %s", i, why);

	/* A global token and two per-interface ones (sorted by name). */
	conf = config_new_default();
	FUZZ_CHECK(conf, "config_new_default");
	conf->has_global = true;
	FUZZ_CHECK(addr_token_parse("::42", &conf->global.token, &why) == 0, "token");
	conf->global.where = strdup("fuzz.conf:1");
	conf->tokens = calloc(2, sizeof(*conf->tokens));
	FUZZ_CHECK(conf->tokens && conf->global.where, "calloc");
	for (int i = 0; i < 2; i++) {
		snprintf(conf->tokens[i].ifname, sizeof(conf->tokens[i].ifname), "%s",
			 toks[i].ifname);
		FUZZ_CHECK(addr_token_parse(toks[i].token, &conf->tokens[i].token, &why) == 0,
			   "token");
		conf->tokens[i].where = strdup("fuzz.conf:2");
	}
	conf->n_tokens = 2;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n, len;
	uint8_t *buf;

	if (size < 1 || size > 65536)
		return 0;
	n = size - 1;
	len = MNL_ALIGN(n);
	buf = calloc(1, len ? len : 1);
	FUZZ_CHECK(buf, "calloc");
	if (n)
		memcpy(buf, data + 1, n);
	if (data[0] & 1)
		xfrm_datagram(buf, (int)len, data[0] & 2);
	else
		rtnl_datagram(buf, (int)len, data[0] & 2);
	free(buf);
	return 0;
}
