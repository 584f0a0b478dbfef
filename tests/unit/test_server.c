/* SPDX-License-Identifier: MIT */
/* The control socket's handling of connections (daemon/server.c), without a
 * daemon: only what needs none of its methods. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

static char dir[64], path[128];
static sd_event *ev;
static struct server *srv;

static void setup(void)
{
	log_set_level(getenv("TEST_LOG") ? LOG_DEBUG : LOG_ERR);
	snprintf(dir, sizeof(dir), "/tmp/test_server.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tokend.sock", dir);
	ck_assert_int_ge(sd_event_new(&ev), 0);
	ck_assert_int_eq(server_new(NULL, ev,
				    &(struct server_options){.path = path,
							     .max_clients = 100,
							     .client_timeout_usec = 10000000},
				    &srv),
			 0);
}

static void teardown(void)
{
	server_free(srv);
	sd_event_unref(ev);
	unlink(path);
	rmdir(dir);
}

static int connect_one(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* Completes at once: the connection waits in the listen backlog. */
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Connections waiting in the backlog are all taken in one turn of the loop,
 * not one per turn: under load a turn takes long (every busy client's call),
 * and a new connection (each tokenctl command) would wait one whole turn per
 * connection ahead of it. */
START_TEST(test_backlog_accepted_in_one_turn)
{
	enum { N = 20 };
	int fds[N];

	for (int i = 0; i < N; i++)
		fds[i] = connect_one();
	ck_assert_int_gt(sd_event_run(ev, 0), 0);
	ck_assert_uint_eq(server_client_count(srv), N);
	for (int i = 0; i < N; i++)
		close(fds[i]);
}
END_TEST

/* Past max-clients the extra ones are refused, and the rest of the backlog
 * still taken. */
START_TEST(test_backlog_past_max_clients)
{
	int fds[120];
	char buf[512];
	ssize_t n;

	for (int i = 0; i < 120; i++)
		fds[i] = connect_one();
	for (int turn = 0; turn < 4; turn++)
		sd_event_run(ev, 0);
	ck_assert_uint_eq(server_client_count(srv), 100);
	n = recv(fds[119], buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "io.tokend.TooManyClients"));
	for (int i = 0; i < 120; i++)
		close(fds[i]);
}
END_TEST

static Suite *server_suite(void)
{
	Suite *s = suite_create("server");
	TCase *tc = tcase_create("accept");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_backlog_accepted_in_one_turn);
	tcase_add_test(tc, test_backlog_past_max_clients);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(server_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
