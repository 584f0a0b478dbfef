/* SPDX-License-Identifier: MIT */
#pragma once

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A netlink socket on libmnl, in two flavours:
 *  - a request socket: requests carry an incrementing sequence number, and
 *    only replies with that number are taken; anything else is stale and
 *    dropped (with a debug line);
 *  - a monitor socket: non-blocking, joined to multicast groups, read from
 *    the event loop.
 * No policy lives here and nothing is logged above debug. */

struct nl_sock;

/* The kernel's answer to one request. msg holds the extended-ack text (empty
 * when the kernel gave none). */
struct nl_ack {
	int error; /* 0 or negative errno */
	char msg[256];
};

int nl_open(int bus, bool monitor, struct nl_sock **ret);
void nl_close(struct nl_sock *s);
int nl_fd(const struct nl_sock *s);
int nl_join_group(struct nl_sock *s, unsigned group);
/* Ask for a receive buffer of at least `bytes` (SO_RCVBUFFORCE when
 * privileged, SO_RCVBUF otherwise). */
int nl_set_rcvbuf(struct nl_sock *s, int bytes);
uint32_t nl_next_seq(struct nl_sock *s);

/* Send one request (seq is assigned here, NLM_F_ACK added) and wait for its
 * answer; data messages of a dump go to cb. Returns 0 or the kernel's
 * negative errno (also in ack->error when ack is given). */
int nl_transact(struct nl_sock *s, struct nlmsghdr *req, mnl_cb_t cb, void *data,
		struct nl_ack *ack);

/* Batches: many requests in one sendmsg. Add requests with nl_batch_add
 * (the sequence number is assigned and returned), then nl_batch_flush sends
 * them and calls done(seq, ack, data) once for each. */
struct nl_batch;
int nl_batch_new(struct nl_sock *s, struct nl_batch **ret);
void nl_batch_free(struct nl_batch *b);
/* Returns a buffer for the next message (len bytes available) or NULL when
 * the batch is full: flush and try again. */
struct nlmsghdr *nl_batch_msg(struct nl_batch *b, size_t *len);
/* Commit the message built at nl_batch_msg; returns its seq. */
uint32_t nl_batch_add(struct nl_batch *b, uintptr_t cookie);
bool nl_batch_empty(const struct nl_batch *b);
typedef void (*nl_batch_done_t)(uintptr_t cookie, const struct nl_ack *ack, void *data);
int nl_batch_flush(struct nl_batch *b, nl_batch_done_t done, void *data);

/* Read whatever the monitor socket holds, calling cb for each message.
 * Returns 0 when drained, -ENOBUFS when the kernel dropped messages (the
 * caller must re-read the whole state), another negative errno on failure. */
int nl_monitor_read(struct nl_sock *s, mnl_cb_t cb, void *data);

/* Does a whole message start at nlh, with len bytes of the datagram left?
 * For walking a datagram with mnl_nlmsg_next. Not libmnl's mnl_nlmsg_ok,
 * which compares nlmsg_len as an int: a length of 2 GiB or more passes it,
 * and mnl_nlmsg_next then stays on the same message (0xfffffffd and up) or
 * hands on one that runs far past the buffer. */
bool nl_msg_ok(const struct nlmsghdr *nlh, int len);

/* Debug helper: one line describing a message header. */
const char *nl_type_name(int bus, uint16_t type);
