/* SPDX-License-Identifier: MIT */
#include "nl.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/xfrm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "log.h"

/* Large enough for the biggest dump datagram the kernel builds (it sizes
 * them by the reader's buffer, up to 32 KiB) and for a batch of requests. */
#define NL_BUF_SIZE  (64 * 1024)
#define NL_BATCH_MAX 64

struct nl_sock {
	struct mnl_socket *mnl;
	int bus;
	uint32_t seq;
	uint32_t portid;
	char *buf;
};

struct nl_pending {
	uint32_t seq;
	uintptr_t cookie;
	bool answered;
};

struct nl_batch {
	struct nl_sock *sock;
	char *buf;
	struct mnl_nlmsg_batch *mb;
	struct nl_pending pending[NL_BATCH_MAX];
	size_t n;
};

int nl_open(int bus, bool monitor, struct nl_sock **ret)
{
	struct nl_sock *s = calloc(1, sizeof(*s));
	int one = 1, r;

	if (!s)
		return -ENOMEM;
	s->bus = bus;
	s->buf = malloc(NL_BUF_SIZE);
	if (!s->buf) {
		free(s);
		return -ENOMEM;
	}
	s->mnl = mnl_socket_open2(bus, SOCK_CLOEXEC | (monitor ? SOCK_NONBLOCK : 0));
	if (!s->mnl)
		goto fail;
	if (mnl_socket_bind(s->mnl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto fail;
	s->portid = mnl_socket_get_portid(s->mnl);
	/* Extended acks give the kernel's reason in words; capped acks keep
	 * our request out of the reply. Both are best effort. */
	mnl_socket_setsockopt(s->mnl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(s->mnl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (!monitor) {
		/* A kernel that never answers must not hang the daemon. */
		struct timeval tv = {.tv_sec = 5};
		setsockopt(mnl_socket_get_fd(s->mnl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		nl_set_rcvbuf(s, 1024 * 1024);
	}
	s->seq = 1;
	*ret = s;
	return 0;
fail:
	r = -errno;
	nl_close(s);
	return r ? r : -EIO;
}

void nl_close(struct nl_sock *s)
{
	if (!s)
		return;
	if (s->mnl)
		mnl_socket_close(s->mnl);
	free(s->buf);
	free(s);
}

int nl_fd(const struct nl_sock *s)
{
	return mnl_socket_get_fd(s->mnl);
}

int nl_join_group(struct nl_sock *s, unsigned group)
{
	if (mnl_socket_setsockopt(s->mnl, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0)
		return -errno;
	return 0;
}

int nl_set_rcvbuf(struct nl_sock *s, int bytes)
{
	int fd = mnl_socket_get_fd(s->mnl);

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) == 0)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0)
		return -errno;
	return 0;
}

uint32_t nl_next_seq(struct nl_sock *s)
{
	/* Zero is what the kernel puts in multicast messages; skip it. */
	if (++s->seq == 0)
		s->seq = 1;
	return s->seq;
}

bool nl_msg_ok(const struct nlmsghdr *nlh, int len)
{
	return len >= (int)sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) &&
	       nlh->nlmsg_len <= (unsigned)len;
}

/* The error and extended-ack text of an NLMSG_ERROR message. */
static void nl_parse_error(const struct nlmsghdr *nlh, struct nl_ack *ack)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *attr;
	size_t off;

	ack->msg[0] = '\0';
	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err))) {
		ack->error = -EBADMSG;
		return;
	}
	ack->error = err->error;
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	off = sizeof(*err);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (mnl_nlmsg_size(off) > nlh->nlmsg_len)
		return;
	mnl_attr_for_each(attr, nlh, off)
	{
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
			snprintf(ack->msg, sizeof(ack->msg), "%s", mnl_attr_get_str(attr));
			/* The kernel ends its messages with a full stop; we
			 * put its text inside our own sentences. */
			size_t n = strlen(ack->msg);
			while (n > 0 && (ack->msg[n - 1] == '.' || ack->msg[n - 1] == '\n'))
				ack->msg[--n] = '\0';
		}
	}
}

/* Read one datagram from a request socket. */
static int nl_recv(struct nl_sock *s, ssize_t *ret_len)
{
	ssize_t n = mnl_socket_recvfrom(s->mnl, s->buf, NL_BUF_SIZE);

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -ETIMEDOUT;
		return -errno;
	}
	*ret_len = n;
	return 0;
}

int nl_transact(struct nl_sock *s, struct nlmsghdr *req, mnl_cb_t cb, void *data,
		struct nl_ack *ack)
{
	struct nl_ack local;
	bool dump = (req->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
	bool intr = false;
	int r;

	if (!ack)
		ack = &local;
	*ack = (struct nl_ack){0};
	req->nlmsg_seq = nl_next_seq(s);
	if (!dump)
		req->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(s->mnl, req, req->nlmsg_len) < 0)
		return ack->error = -errno;

	for (;;) {
		const struct nlmsghdr *nlh;
		ssize_t n = 0;
		int left;

		r = nl_recv(s, &n);
		if (r < 0)
			return ack->error = r;
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)s->buf; nl_msg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_seq != req->nlmsg_seq || nlh->nlmsg_pid != s->portid) {
				log_debug("netlink: dropping stale %s (seq %u, waiting for %u)",
					  nl_type_name(s->bus, nlh->nlmsg_type), nlh->nlmsg_seq,
					  req->nlmsg_seq);
				continue;
			}
			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = true;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				nl_parse_error(nlh, ack);
				return ack->error;
			}
			if (nlh->nlmsg_type == NLMSG_DONE) {
				if (nlh->nlmsg_len >= mnl_nlmsg_size(sizeof(int)))
					ack->error = *(const int *)mnl_nlmsg_get_payload(nlh);
				/* A dump that raced with a change is
				 * inconsistent: the caller reads it again. */
				if (ack->error == 0 && intr)
					ack->error = -EAGAIN;
				return ack->error;
			}
			if (nlh->nlmsg_type == NLMSG_NOOP)
				continue;
			if (cb && cb(nlh, data) < 0)
				return ack->error = -EBADMSG;
		}
	}
}

int nl_batch_new(struct nl_sock *s, struct nl_batch **ret)
{
	struct nl_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->sock = s;
	b->buf = malloc(NL_BUF_SIZE);
	if (!b->buf) {
		free(b);
		return -ENOMEM;
	}
	/* libmnl's batch wants room for one message past the limit. */
	b->mb = mnl_nlmsg_batch_start(b->buf, NL_BUF_SIZE / 2);
	if (!b->mb) {
		free(b->buf);
		free(b);
		return -ENOMEM;
	}
	*ret = b;
	return 0;
}

void nl_batch_free(struct nl_batch *b)
{
	if (!b)
		return;
	/* Requests may have carried key material. */
	explicit_bzero(b->buf, NL_BUF_SIZE);
	mnl_nlmsg_batch_stop(b->mb);
	free(b->buf);
	free(b);
}

struct nlmsghdr *nl_batch_msg(struct nl_batch *b, size_t *len)
{
	if (b->n >= NL_BATCH_MAX)
		return NULL;
	*len = NL_BUF_SIZE - mnl_nlmsg_batch_size(b->mb);
	if (*len < 4096)
		return NULL;
	*len = 4096;
	return mnl_nlmsg_batch_current(b->mb);
}

uint32_t nl_batch_add(struct nl_batch *b, uintptr_t cookie)
{
	struct nlmsghdr *nlh = mnl_nlmsg_batch_current(b->mb);
	uint32_t seq = nl_next_seq(b->sock);

	nlh->nlmsg_seq = seq;
	nlh->nlmsg_flags |= NLM_F_ACK;
	b->pending[b->n++] = (struct nl_pending){.seq = seq, .cookie = cookie};
	mnl_nlmsg_batch_next(b->mb);
	return seq;
}

bool nl_batch_empty(const struct nl_batch *b)
{
	return b->n == 0;
}

static struct nl_pending *nl_batch_find(struct nl_batch *b, uint32_t seq)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->pending[i].seq == seq && !b->pending[i].answered)
			return &b->pending[i];
	return NULL;
}

int nl_batch_flush(struct nl_batch *b, nl_batch_done_t done, void *data)
{
	struct nl_sock *s = b->sock;
	size_t answered = 0;
	int r = 0;

	if (b->n == 0)
		return 0;
	if (mnl_socket_sendto(s->mnl, mnl_nlmsg_batch_head(b->mb), mnl_nlmsg_batch_size(b->mb)) < 0)
		r = -errno;
	while (r == 0 && answered < b->n) {
		const struct nlmsghdr *nlh;
		ssize_t n = 0;
		int left;

		r = nl_recv(s, &n);
		if (r < 0)
			break;
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)s->buf; nl_msg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			struct nl_pending *p;
			struct nl_ack ack;

			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    !(p = nl_batch_find(b, nlh->nlmsg_seq))) {
				log_debug("netlink: dropping stale %s (seq %u)",
					  nl_type_name(s->bus, nlh->nlmsg_type), nlh->nlmsg_seq);
				continue;
			}
			nl_parse_error(nlh, &ack);
			p->answered = true;
			answered++;
			done(p->cookie, &ack, data);
		}
	}
	/* Whatever was not answered failed as a whole. */
	for (size_t i = 0; i < b->n; i++)
		if (!b->pending[i].answered) {
			struct nl_ack ack = {.error = r < 0 ? r : -EIO};
			done(b->pending[i].cookie, &ack, data);
		}
	b->n = 0;
	explicit_bzero(b->buf, NL_BUF_SIZE);
	mnl_nlmsg_batch_reset(b->mb);
	return r;
}

int nl_monitor_read(struct nl_sock *s, mnl_cb_t cb, void *data)
{
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(s->mnl, s->buf, NL_BUF_SIZE);
		const struct nlmsghdr *nlh;
		int left;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)s->buf; nl_msg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_type == NLMSG_NOOP || nlh->nlmsg_type == NLMSG_DONE)
				continue;
			cb(nlh, data);
		}
	}
}

const char *nl_type_name(int bus, uint16_t type)
{
	static char other[32];

	switch (type) {
	case NLMSG_ERROR:
		return "NLMSG_ERROR";
	case NLMSG_DONE:
		return "NLMSG_DONE";
	}
	if (bus == NETLINK_ROUTE)
		switch (type) {
		case RTM_NEWLINK:
			return "RTM_NEWLINK";
		case RTM_DELLINK:
			return "RTM_DELLINK";
		case RTM_SETLINK:
			return "RTM_SETLINK";
		case RTM_NEWADDR:
			return "RTM_NEWADDR";
		case RTM_DELADDR:
			return "RTM_DELADDR";
		}
	if (bus == NETLINK_XFRM)
		switch (type) {
		case XFRM_MSG_NEWSA:
			return "XFRM_MSG_NEWSA";
		case XFRM_MSG_DELSA:
			return "XFRM_MSG_DELSA";
		case XFRM_MSG_UPDSA:
			return "XFRM_MSG_UPDSA";
		case XFRM_MSG_NEWPOLICY:
			return "XFRM_MSG_NEWPOLICY";
		case XFRM_MSG_DELPOLICY:
			return "XFRM_MSG_DELPOLICY";
		case XFRM_MSG_EXPIRE:
			return "XFRM_MSG_EXPIRE";
		}
	snprintf(other, sizeof(other), "message type %u", type);
	return other;
}
