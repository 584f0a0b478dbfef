/* SPDX-License-Identifier: MIT */
/*
 * repair_latency: how long tokend takes to put a token back after someone
 * deletes it.
 *
 * Run inside the network namespace where tokend holds a token for IFNAME.
 * Each event: read CLOCK_MONOTONIC, send the equivalent of `ip token del dev
 * IFNAME` (RTM_SETLINK, AF_INET6, IFLA_AF_SPEC/AF_INET6/IFLA_INET6_TOKEN = ::),
 * then wait for the RTNLGRP_IPV6_IFINFO notification that shows the token
 * back in the kernel. The time between the two is one sample: it covers the
 * kernel's notification to tokend, tokend's reaction, its RTM_SETLINK and the
 * kernel's notification of the restored token to us.
 *
 * Output: a human-readable block, then one "summary key=value ..." line for
 * scripts. Exit status: 0 when the run completed (misses are figures, not
 * failures), 1 when something broke (including tokend no longer repairing at
 * all), 2 for bad usage.
 */
/* clock_gettime, nanosleep, SO_RCVBUFFORCE...: also when built outside CMake. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* An AF_INET6 link message carries per-interface stats and the whole devconf
 * array (about 1.5 KiB); a dump packs many into one read. */
#define RECV_BUF_SIZE (64u * 1024)

/* Notifications arrive while we sleep between events; a generous socket
 * buffer keeps a slow iteration from turning into ENOBUFS. */
#define RCVBUF_BYTES (4 * 1024 * 1024)

/* After this many events in a row where the token did not come back at all,
 * tokend is not repairing any more (dead, or the entry is contested): more
 * events would only measure timeouts. */
#define MAX_LOST_IN_A_ROW 3

struct options {
	const char *ifname;
	struct in6_addr token;
	unsigned count;
	unsigned warmup;
	unsigned pace_us;
	unsigned timeout_ms;
};

struct probe {
	struct mnl_socket *nl;
	unsigned portid;
	unsigned seq;
	int ifindex;
	char buf[RECV_BUF_SIZE];
};

/* What one event saw. */
enum outcome {
	EV_RESTORED,
	EV_TIMEOUT,
	EV_OVERRUN, /* ENOBUFS: notifications were dropped, the sample is unknown */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The token in an AF_INET6 RTM_NEWLINK for our interface. 0 and *ret, -ENOENT
 * for another interface or a message without a token, -EINVAL if malformed. */
static int link_token(const struct nlmsghdr *nlh, int ifindex, struct in6_addr *ret)
{
	const struct ifinfomsg *ifi;
	const struct nlattr *attr, *sub;

	if (nlh->nlmsg_type != RTM_NEWLINK || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)))
		return -EINVAL;
	ifi = mnl_nlmsg_get_payload(nlh);
	if (ifi->ifi_family != AF_INET6 || ifi->ifi_index != ifindex)
		return -ENOENT;
	mnl_attr_for_each(attr, nlh, sizeof(*ifi))
	{
		if (mnl_attr_get_type(attr) != IFLA_PROTINFO)
			continue;
		mnl_attr_for_each_nested(sub, attr)
		{
			if (mnl_attr_get_type(sub) != IFLA_INET6_TOKEN)
				continue;
			if (mnl_attr_get_payload_len(sub) != sizeof(*ret))
				return -EINVAL;
			memcpy(ret, mnl_attr_get_payload(sub), sizeof(*ret));
			return 0;
		}
	}
	return -ENOENT;
}

static bool token_is_zero(const struct in6_addr *a)
{
	static const struct in6_addr zero;

	return memcmp(a, &zero, sizeof(zero)) == 0;
}

struct dump_ctx {
	int ifindex;
	bool found;
	struct in6_addr token;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *ctx = data;

	if (link_token(nlh, ctx->ifindex, &ctx->token) == 0)
		ctx->found = true;
	return MNL_CB_OK;
}

/* The kernel's current token of ifindex, read with an AF_INET6 link dump on a
 * socket of its own so that the dump cannot mix with the notifications. */
static int kernel_token(int ifindex, struct in6_addr *ret)
{
	char *buf = malloc(RECV_BUF_SIZE);
	struct dump_ctx ctx = {.ifindex = ifindex};
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	struct rtgenmsg *g;
	unsigned portid, seq = 1;
	ssize_t n;
	int r;

	if (!buf)
		return -ENOMEM;
	nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl) {
		r = -errno;
		free(buf);
		return r;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = -errno;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->rtgen_family = AF_INET6;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		r = -errno;
		goto out;
	}
	for (;;) {
		n = mnl_socket_recvfrom(nl, buf, RECV_BUF_SIZE);
		if (n < 0) {
			r = -errno;
			goto out;
		}
		r = mnl_cb_run(buf, (size_t)n, seq, portid, dump_cb, &ctx);
		if (r < 0) {
			r = -errno;
			goto out;
		}
		if (r == MNL_CB_STOP)
			break;
	}
	if (!ctx.found) {
		r = -ENODEV;
		goto out;
	}
	*ret = ctx.token;
	r = 0;
out:
	mnl_socket_close(nl);
	free(buf);
	return r;
}

/* Poll the kernel until ifindex holds want, up to timeout_ms. 0, -ETIMEDOUT
 * or another negative errno. */
static int wait_token(int ifindex, const struct in6_addr *want, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	struct in6_addr have;
	int r;

	for (;;) {
		r = kernel_token(ifindex, &have);
		if (r < 0)
			return r;
		if (memcmp(&have, want, sizeof(have)) == 0)
			return 0;
		if (now_ns() >= end)
			return -ETIMEDOUT;
		sleep_us(10000);
	}
}

static int probe_open(struct probe *p, const char *ifname)
{
	int group = RTNLGRP_IPV6_IFINFO, one = 1, rcvbuf = RCVBUF_BYTES;

	p->ifindex = (int)if_nametoindex(ifname);
	if (p->ifindex == 0)
		return -errno;
	p->nl = mnl_socket_open(NETLINK_ROUTE);
	if (!p->nl)
		return -errno;
	if (mnl_socket_bind(p->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	p->portid = mnl_socket_get_portid(p->nl);
	/* Subscribed before the first event, so that no restore can slip by. */
	if (mnl_socket_setsockopt(p->nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0)
		return -errno;
	/* Acks without a copy of our request: less to read per event. */
	mnl_socket_setsockopt(p->nl, NETLINK_CAP_ACK, &one, sizeof(one));
	/* SO_RCVBUFFORCE ignores rmem_max (we are root); fall back if not. */
	if (setsockopt(mnl_socket_get_fd(p->nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
		       sizeof(rcvbuf)) < 0)
		setsockopt(mnl_socket_get_fd(p->nl), SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			   sizeof(rcvbuf));
	return 0;
}

static void probe_close(struct probe *p)
{
	if (p->nl)
		mnl_socket_close(p->nl);
	p->nl = NULL;
}

/* `ip token del dev IFNAME`: the kernel's "no token" is the all-zero one. */
static int send_token_delete(struct probe *p)
{
	char req[256];
	static const struct in6_addr zero;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	struct ifinfomsg *ifi;
	struct nlattr *af_spec, *inet6;

	nlh->nlmsg_type = RTM_SETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++p->seq;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_INET6;
	ifi->ifi_index = p->ifindex;
	af_spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
	inet6 = mnl_attr_nest_start(nlh, AF_INET6);
	mnl_attr_put(nlh, IFLA_INET6_TOKEN, sizeof(zero), &zero);
	mnl_attr_nest_end(nlh, inet6);
	mnl_attr_nest_end(nlh, af_spec);
	if (mnl_socket_sendto(p->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

/* One event: delete, then wait for the restore. 0 with *outcome and, for
 * EV_RESTORED, *elapsed_ns; a negative errno when the kernel refused the
 * delete or the socket failed. */
static int one_event(struct probe *p, const struct options *o, enum outcome *outcome,
		     uint64_t *elapsed_ns)
{
	uint64_t t0, deadline;
	bool acked = false, saw_delete = false, restored = false;
	uint64_t t_restored = 0;
	int r;

	t0 = now_ns();
	r = send_token_delete(p);
	if (r < 0)
		return r;
	deadline = t0 + (uint64_t)o->timeout_ms * 1000000;

	/* Done when the restore is seen and our own request is acknowledged
	 * (the ack is queued during our send, so it never delays the sample). */
	while (!(restored && acked)) {
		struct pollfd pfd = {.fd = mnl_socket_get_fd(p->nl), .events = POLLIN};
		uint64_t now = now_ns();
		const struct nlmsghdr *nlh;
		ssize_t n;
		int left, len;

		if (now >= deadline) {
			*outcome = EV_TIMEOUT;
			return 0;
		}
		/* Round up: a zero timeout would spin through the last millisecond. */
		left = (int)((deadline - now + 999999) / 1000000);
		r = poll(&pfd, 1, left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			continue;
		n = mnl_socket_recvfrom(p->nl, p->buf, sizeof(p->buf));
		if (n < 0) {
			if (errno == ENOBUFS) {
				*outcome = EV_OVERRUN;
				return 0;
			}
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		now = now_ns();
		len = (int)n;
		for (nlh = (const struct nlmsghdr *)p->buf; mnl_nlmsg_ok(nlh, len);
		     nlh = mnl_nlmsg_next(nlh, &len)) {
			struct in6_addr tok;

			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

				if (nlh->nlmsg_seq != p->seq || nlh->nlmsg_pid != p->portid)
					continue;
				if (e->error != 0)
					return e->error;
				acked = true;
				continue;
			}
			if (link_token(nlh, p->ifindex, &tok) < 0)
				continue;
			/* The kernel reports our own delete first; only a token
			 * seen after that is the repair (anything before it
			 * is a late echo of the previous event). */
			if (token_is_zero(&tok)) {
				saw_delete = true;
			} else if (saw_delete && !restored &&
				   memcmp(&tok, &o->token, sizeof(tok)) == 0) {
				restored = true;
				t_restored = now;
			}
		}
	}
	*outcome = EV_RESTORED;
	*elapsed_ns = t_restored - t0;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n-1], n > 0. */
static uint64_t percentile(const uint64_t *v, size_t n, unsigned pct)
{
	size_t rank = (n * pct + 99) / 100;

	return v[rank == 0 ? 0 : rank - 1];
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void report(const struct options *o, uint64_t *samples, size_t n, unsigned misses,
		   unsigned overruns, bool aborted)
{
	char tok[INET6_ADDRSTRLEN];

	inet_ntop(AF_INET6, &o->token, tok, sizeof(tok));
	printf("repair latency: token %s on %s deleted, until the kernel holds it again\n", tok,
	       o->ifname);
	printf("  events %zu restored, %u misses (no restore within %u ms), %u overruns; "
	       "%u warm-up events not counted; %u us between events%s\n",
	       n, misses, o->timeout_ms, overruns, o->warmup, o->pace_us,
	       aborted ? "; ABORTED: the token stopped coming back" : "");
	if (n == 0) {
		printf("summary events=0 misses=%u overruns=%u aborted=%d\n", misses, overruns,
		       aborted);
		return;
	}
	qsort(samples, n, sizeof(*samples), cmp_u64);
	printf("  latency (us): min %.1f  median %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
	       us(samples[0]), us(percentile(samples, n, 50)), us(percentile(samples, n, 90)),
	       us(percentile(samples, n, 99)), us(samples[n - 1]));
	printf("summary events=%zu misses=%u overruns=%u aborted=%d min_us=%.1f median_us=%.1f "
	       "p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       n, misses, overruns, aborted, us(samples[0]), us(percentile(samples, n, 50)),
	       us(percentile(samples, n, 90)), us(percentile(samples, n, 99)), us(samples[n - 1]));
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: repair_latency -i IFNAME -t TOKEN [-n COUNT] [-W WARMUP] [-p PACE_US]\n"
		   "                      [-w TIMEOUT_MS]\n"
		   "\n"
		   "Delete IFNAME's token COUNT times (default 1000) and time how long until\n"
		   "the kernel reports TOKEN again. Run in tokend's network namespace.\n"
		   "  -W  events before the measured ones, not counted (default 10)\n"
		   "  -p  pause after each restore, in microseconds (default 2000)\n"
		   "  -w  wait this long for a restore before counting a miss (default 2000)\n");
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/* 0, 1 when help was asked for, or -EINVAL. */
static int parse_options(int argc, char **argv, struct options *o)
{
	bool have_token = false;
	int c;

	*o = (struct options){.count = 1000, .warmup = 10, .pace_us = 2000, .timeout_ms = 2000};
	while ((c = getopt(argc, argv, "i:t:n:W:p:w:h")) != -1) {
		int r = 0;

		switch (c) {
		case 'i':
			o->ifname = optarg;
			break;
		case 't':
			if (inet_pton(AF_INET6, optarg, &o->token) != 1 || token_is_zero(&o->token))
				r = -EINVAL;
			have_token = true;
			break;
		case 'n':
			r = parse_uint(optarg, 1, 10000000, &o->count);
			break;
		case 'W':
			r = parse_uint(optarg, 0, 1000000, &o->warmup);
			break;
		case 'p':
			r = parse_uint(optarg, 0, 10000000, &o->pace_us);
			break;
		case 'w':
			r = parse_uint(optarg, 1, 600000, &o->timeout_ms);
			break;
		case 'h':
			return 1;
		default:
			return -EINVAL;
		}
		if (r < 0) {
			fprintf(stderr, "repair_latency: invalid -%c \"%s\"\n", c, optarg);
			return r;
		}
	}
	if (!o->ifname || !have_token || optind != argc)
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct probe *p;
	uint64_t *samples;
	size_t n = 0;
	unsigned misses = 0, overruns = 0, lost_in_a_row = 0;
	bool aborted = false;
	int r, rc = 0;

	r = parse_options(argc, argv, &o);
	if (r != 0) {
		usage(r > 0 ? stdout : stderr);
		return r > 0 ? 0 : 2;
	}
	p = calloc(1, sizeof(*p));
	samples = calloc(o.count, sizeof(*samples));
	if (!p || !samples) {
		fprintf(stderr, "repair_latency: out of memory\n");
		return 1;
	}
	r = probe_open(p, o.ifname);
	if (r < 0) {
		fprintf(stderr, "repair_latency: %s: %s\n", o.ifname, strerror(-r));
		rc = 1;
		goto out;
	}
	/* Start from the state tokend keeps, or the first sample is a lie. */
	r = wait_token(p->ifindex, &o.token, 5000);
	if (r < 0) {
		fprintf(stderr,
			"repair_latency: %s does not hold the token before the first event: "
			"%s\n",
			o.ifname, strerror(-r));
		rc = 1;
		goto out;
	}

	for (unsigned i = 0; i < o.warmup + o.count; i++) {
		bool counted = i >= o.warmup;
		enum outcome oc = EV_TIMEOUT;
		uint64_t ns = 0;

		r = one_event(p, &o, &oc, &ns);
		if (r < 0) {
			fprintf(stderr, "repair_latency: event %u: %s\n", i + 1, strerror(-r));
			rc = 1;
			aborted = true;
			break;
		}
		if (oc == EV_RESTORED) {
			lost_in_a_row = 0;
			if (counted)
				samples[n++] = ns;
		} else {
			if (counted) {
				if (oc == EV_TIMEOUT)
					misses++;
				else
					overruns++;
			}
			/* Resynchronise: the next event needs the token in place. */
			r = wait_token(p->ifindex, &o.token, o.timeout_ms);
			if (r < 0 && ++lost_in_a_row >= MAX_LOST_IN_A_ROW) {
				fprintf(stderr,
					"repair_latency: the token has not come back for %u events "
					"in a row; stopping\n",
					lost_in_a_row);
				rc = 1;
				aborted = true;
				break;
			}
		}
		if (o.pace_us)
			sleep_us(o.pace_us);
	}
	report(&o, samples, n, misses, overruns, aborted);
out:
	probe_close(p);
	free(p);
	free(samples);
	return rc;
}
