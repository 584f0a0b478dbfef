/* SPDX-License-Identifier: MIT */
/*
 * ifinfo_watch: count the kernel's IPv6 per-interface notifications until
 * SIGINT or SIGTERM, then print the count.
 *
 * The kernel sends an RTNLGRP_IPV6_IFINFO RTM_NEWLINK for every token it
 * accepts (set or cleared), whoever wrote it. Run in a namespace around a
 * command, this counts the token writes that command made, from the kernel's
 * side rather than from the writer's logs. Router advertisements also cause
 * such a notification; the benchmark namespaces have no router.
 *
 * Prints "ready" on stdout once subscribed (so a script can start the command
 * only then), and "summary ifinfo_events=N overruns=M" at the end.
 */
/* ppoll, SO_RCVBUFFORCE...: also when built outside CMake. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RECV_BUF_SIZE (64u * 1024)

/* A burst of 500 notifications (2 KiB of truesize each) must not overflow. */
#define RCVBUF_BYTES (8 * 1024 * 1024)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int watch_open(struct mnl_socket **ret)
{
	int group = RTNLGRP_IPV6_IFINFO, rcvbuf = RCVBUF_BYTES, r;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
		r = -errno;
		mnl_socket_close(nl);
		return r;
	}
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) <
	    0)
		setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	*ret = nl;
	return 0;
}

/* Read what is queued and count the AF_INET6 link messages. 0, or a negative
 * errno (-ENOBUFS: the kernel dropped some; counted by the caller). */
static int watch_read(struct mnl_socket *nl, char *buf, unsigned long *count)
{
	const struct nlmsghdr *nlh;
	ssize_t n = mnl_socket_recvfrom(nl, buf, RECV_BUF_SIZE);
	int len;

	if (n < 0)
		return -errno;
	len = (int)n;
	for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
	     nlh = mnl_nlmsg_next(nlh, &len)) {
		const struct ifinfomsg *ifi;

		if (nlh->nlmsg_type != RTM_NEWLINK || nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*ifi)))
			continue;
		ifi = mnl_nlmsg_get_payload(nlh);
		if (ifi->ifi_family == AF_INET6)
			(*count)++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t stop_signals, waiting;
	unsigned long count = 0, overruns = 0;
	struct mnl_socket *nl = NULL;
	char *buf;
	int r, rc = 0;

	if (argc != 1) {
		fprintf(stderr,
			"Usage: %s\n(counts IPv6 ifinfo notifications until SIGINT/SIGTERM)\n",
			argv[0]);
		return 2;
	}
	/* The stop signals stay blocked except inside ppoll(): one that came
	 * between the check of `stop` and the wait would otherwise be missed,
	 * and the wait would last until the next notification. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop_signals, &waiting);
	sigdelset(&waiting, SIGINT);
	sigdelset(&waiting, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	buf = malloc(RECV_BUF_SIZE);
	if (!buf) {
		fprintf(stderr, "ifinfo_watch: out of memory\n");
		return 1;
	}
	r = watch_open(&nl);
	if (r < 0) {
		fprintf(stderr, "ifinfo_watch: netlink: %s\n", strerror(-r));
		free(buf);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	while (!stop) {
		struct pollfd pfd = {.fd = mnl_socket_get_fd(nl), .events = POLLIN};

		r = ppoll(&pfd, 1, NULL, &waiting);
		if (r < 0 && errno != EINTR) {
			fprintf(stderr, "ifinfo_watch: ppoll: %s\n", strerror(errno));
			rc = 1;
			break;
		}
		if (r <= 0)
			continue;
		r = watch_read(nl, buf, &count);
		if (r == -ENOBUFS) {
			overruns++;
		} else if (r < 0 && r != -EINTR) {
			fprintf(stderr, "ifinfo_watch: read: %s\n", strerror(-r));
			rc = 1;
			break;
		}
	}
	/* What arrived before the signal and is still queued counts too. */
	for (;;) {
		struct pollfd pfd = {.fd = mnl_socket_get_fd(nl), .events = POLLIN};

		if (poll(&pfd, 1, 0) <= 0 || watch_read(nl, buf, &count) < 0)
			break;
	}
	printf("summary ifinfo_events=%lu overruns=%lu\n", count, overruns);
	mnl_socket_close(nl);
	free(buf);
	return rc;
}
