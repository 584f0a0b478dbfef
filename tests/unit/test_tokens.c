/* SPDX-License-Identifier: MIT */
/* The token manager's reconcile logic, without a kernel: links are fed in
 * as the kernel would report them, and the planned writes are checked. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "store.h"
#include "tokens.h"

#define SEC 1000000ULL

static struct tokens *t;
static struct config *cfg;
static char conf_path[64];
static uint64_t test_now; /* when link_is() reports */

static struct in6_addr tok(const char *s)
{
	struct in6_addr a;
	ck_assert_int_eq(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

static void load_config(const char *text)
{
	struct config_errors errs = {0};
	int fd;

	snprintf(conf_path, sizeof(conf_path), "/tmp/test_tokens.XXXXXX");
	fd = mkstemp(conf_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	config_free(cfg);
	cfg = NULL;
	ck_assert_int_eq(config_load(conf_path, "/nonexistent.d", true, &cfg, &errs), 0);
	unlink(conf_path);
	tokens_set_config(t, cfg);
}

static void setup(void)
{
	struct tokens_settings s = {
	    .contest_repairs = 3,
	    .contest_window_usec = 30 * SEC,
	    .retry_min_usec = 1 * SEC,
	    .retry_max_usec = 8 * SEC,
	    .run_prefix = "/nonexistent",
	};

	log_set_level(LOG_ERR);
	test_now = 0;
	ck_assert_int_eq(tokens_new(&s, &t), 0);
	cfg = NULL;
}

static void teardown(void)
{
	tokens_free(t);
	config_free(cfg);
}

static void link_is(int ifindex, const char *name, const char *token, unsigned flags)
{
	struct rtnl_link l = {.ifindex = ifindex, .flags = flags | IFF_UP, .has_inet6 = true};

	snprintf(l.ifname, sizeof(l.ifname), "%s", name);
	l.token = tok(token);
	l.conf = (struct rtnl_inet6_conf){0, 1, -1, 0};
	tokens_link_update(t, &l, test_now);
}

/* Plan at `now`; return the number of writes, the first one in *first. */
static int plan(uint64_t now, struct tokens_action *first)
{
	struct tokens_action *v = NULL;
	int n = tokens_plan(t, now, false, &v);

	ck_assert_int_ge(n, 0);
	if (n > 0 && first)
		*first = v[0];
	free(v);
	return n;
}

static void answer(const struct tokens_action *a, int error, uint64_t now)
{
	struct nl_ack ack = {.error = error};
	tokens_action_done(t, a, &ack, now);
}

static const char *state_of(const char *ifname)
{
	static char buf[32];
	json_object *e = tokens_entry_json(t, ifname), *s;

	if (!e)
		return "(none)";
	ck_assert(json_object_object_get_ex(e, "state", &s));
	snprintf(buf, sizeof(buf), "%s", json_object_get_string(s));
	json_object_put(e);
	return buf;
}

static void set_runtime(const char *ifname, const char *token, bool own)
{
	struct store_state st;
	struct in6_addr a = tok(token);

	ck_assert_int_eq(store_state_copy(tokens_state(t), &st), 0);
	store_remove(&st.tokens, &st.n_tokens, ifname);
	ck_assert_int_eq(store_add(&st.tokens, &st.n_tokens, ifname, &a), 0);
	if (own)
		ck_assert_int_eq(store_add(&st.owned, &st.n_owned, ifname, &a), 0);
	tokens_set_state(t, &st);
}

static void drop_runtime(const char *ifname)
{
	struct store_state st;

	ck_assert_int_eq(store_state_copy(tokens_state(t), &st), 0);
	store_remove(&st.tokens, &st.n_tokens, ifname);
	tokens_set_state(t, &st);
}

START_TEST(test_config_token_is_applied_once)
{
	struct tokens_action a;

	load_config("[tokens]\nva = ::1a:2b:3c:4d\n");
	link_is(3, "va", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_str_eq(a.ifname, "va");
	ck_assert_int_eq(a.ifindex, 3);
	{
		struct in6_addr want = tok("::1a:2b:3c:4d");
		ck_assert(memcmp(&a.token, &want, sizeof(want)) == 0);
	}
	answer(&a, 0, 0);
	ck_assert_str_eq(state_of("va"), "applied");
	/* The kernel's confirmation is not drift, and nothing is left to do. */
	link_is(3, "va", "::1a:2b:3c:4d", 0);
	ck_assert_int_eq(plan(0, NULL), 0);
}
END_TEST

START_TEST(test_right_kernel_is_adopted_without_writes)
{
	load_config("[tokens]\nva = ::1a:2b:3c:4d\n");
	link_is(3, "va", "::1a:2b:3c:4d", 0);
	ck_assert_int_eq(tokens_plan(t, 0, true, &(struct tokens_action *){NULL}), 0);
	ck_assert_str_eq(state_of("va"), "applied");
}
END_TEST

START_TEST(test_drift_is_repaired_then_contested)
{
	struct tokens_action a;

	load_config("[tokens]\nva = ::1\n");
	link_is(3, "va", "::1", 0);
	ck_assert_int_eq(plan(0, NULL), 0);
	/* Two repairs go through (contest-repairs is 3)... */
	for (int i = 0; i < 2; i++) {
		link_is(3, "va", "::5", 0);
		ck_assert_int_eq(plan(i * SEC, &a), 1);
		answer(&a, 0, i * SEC);
		link_is(3, "va", "::1", 0);
	}
	/* ...the third within the window marks it contested: no write. */
	link_is(3, "va", "::5", 0);
	ck_assert_int_eq(plan(3 * SEC, NULL), 0);
	ck_assert_str_eq(state_of("va"), "contested");
	link_is(3, "va", "::6", 0);
	ck_assert_int_eq(plan(4 * SEC, NULL), 0);
	/* Resume repairs it again. */
	ck_assert_uint_eq(tokens_resume(t, "va", NULL), 1);
	ck_assert_int_eq(plan(5 * SEC, &a), 1);
	ck_assert_str_eq(a.ifname, "va");
}
END_TEST

START_TEST(test_repairs_outside_window_never_contest)
{
	struct tokens_action a;

	load_config("[tokens]\nva = ::1\n");
	link_is(3, "va", "::1", 0);
	for (int i = 0; i < 10; i++) {
		test_now = (uint64_t)i * 31 * SEC;
		link_is(3, "va", "::", 0);
		ck_assert_int_eq(plan((uint64_t)i * 31 * SEC, &a), 1);
		answer(&a, 0, (uint64_t)i * 31 * SEC);
		link_is(3, "va", "::1", 0);
	}
	ck_assert_str_eq(state_of("va"), "applied");
}
END_TEST

START_TEST(test_global_token_skips_loopback_and_unmatched)
{
	struct tokens_action a;

	load_config("[global]\ntoken = ::42\nmatch = eth* veth*\n");
	link_is(1, "lo", "::", IFF_LOOPBACK);
	link_is(2, "eth0", "::", 0);
	link_is(3, "wlan0", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_str_eq(a.ifname, "eth0");
	ck_assert_str_eq(state_of("lo"), "(none)");
	ck_assert_str_eq(state_of("wlan0"), "(none)");
	/* A new interface that matches gets it too. */
	link_is(4, "veth9", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1); /* eth0 awaits its answer: not sent twice */
	ck_assert_str_eq(a.ifname, "veth9");
}
END_TEST

START_TEST(test_interface_entry_wins_over_global)
{
	struct tokens_action a;

	load_config("[global]\ntoken = ::42\n");
	set_runtime("eth0", "::7", true);
	link_is(2, "eth0", "::42", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert(memcmp(&a.token, &(struct in6_addr){0}, 16) != 0);
	ck_assert_uint_eq(a.token.s6_addr[15], 7);
	answer(&a, 0, 0);
	link_is(2, "eth0", "::7", 0);
	/* Deleting the entry lets the global token apply again. */
	drop_runtime("eth0");
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_uint_eq(a.token.s6_addr[15], 0x42);
}
END_TEST

START_TEST(test_removal_only_of_owned_tokens)
{
	struct tokens_action a;
	struct in6_addr foreign = tok("::99");

	set_runtime("eth0", "::7", true);
	link_is(2, "eth0", "::7", 0);
	link_is(3, "eth1", "::99", 0);
	ck_assert_int_eq(plan(0, NULL), 0);
	drop_runtime("eth0");
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_str_eq(a.ifname, "eth0");
	ck_assert(memcmp(&a.token, &(struct in6_addr){0}, 16) == 0);
	answer(&a, 0, 0);
	link_is(2, "eth0", "::", 0);
	/* eth1's token was never tokend's: a full reconcile leaves it. */
	ck_assert_int_eq(tokens_plan(t, 0, true, &(struct tokens_action *){NULL}), 0);
	(void)foreign;
}
END_TEST

START_TEST(test_degraded_removes_nothing)
{
	set_runtime("eth0", "::7", true);
	link_is(2, "eth0", "::7", 0);
	tokens_set_degraded(t, true);
	drop_runtime("eth0");
	ck_assert_int_eq(plan(0, NULL), 0);
}
END_TEST

START_TEST(test_blocked_backs_off)
{
	struct tokens_action a;

	set_runtime("eth0", "::7", true);
	link_is(2, "eth0", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	answer(&a, -EINVAL, 0);
	ck_assert_str_eq(state_of("eth0"), "blocked");
	ck_assert_uint_eq(tokens_next_retry(t), 1 * SEC);
	ck_assert_int_eq(plan(SEC / 2, NULL), 0);
	ck_assert_int_eq(plan(1 * SEC, &a), 1);
	answer(&a, -EINVAL, 1 * SEC);
	ck_assert_uint_eq(tokens_next_retry(t), 3 * SEC); /* backoff doubled */
	ck_assert_int_eq(plan(3 * SEC, &a), 1);
	answer(&a, 0, 3 * SEC);
	ck_assert_str_eq(state_of("eth0"), "applied");
	ck_assert_uint_eq(tokens_next_retry(t), UINT64_MAX);
}
END_TEST

START_TEST(test_loopback_entry_is_unsupported_and_never_tried)
{
	set_runtime("lo", "::7", true);
	link_is(1, "lo", "::", IFF_LOOPBACK);
	ck_assert_int_eq(plan(0, NULL), 0);
	ck_assert_str_eq(state_of("lo"), "unsupported");
	ck_assert_int_eq(tokens_plan(t, 100 * SEC, true, &(struct tokens_action *){NULL}), 0);
}
END_TEST

START_TEST(test_absent_then_created_then_recreated)
{
	struct tokens_action a;

	set_runtime("eth0", "::7", true);
	ck_assert_int_eq(plan(0, NULL), 0);
	ck_assert_str_eq(state_of("eth0"), "absent");
	link_is(5, "eth0", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	answer(&a, 0, 0);
	tokens_link_delete(t, 5);
	ck_assert_int_eq(plan(0, NULL), 0);
	ck_assert_str_eq(state_of("eth0"), "absent");
	/* Re-created with a new ifindex: applied again, not counted as drift. */
	link_is(6, "eth0", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_int_eq(a.ifindex, 6);
}
END_TEST

START_TEST(test_rename_onto_managed_name)
{
	struct tokens_action a;

	set_runtime("wan", "::7", true);
	link_is(5, "eth5", "::", 0);
	ck_assert_int_eq(plan(0, NULL), 0);
	link_is(5, "wan", "::", 0);
	ck_assert_int_eq(plan(0, &a), 1);
	ck_assert_str_eq(a.ifname, "wan");
	ck_assert_int_eq(a.ifindex, 5);
}
END_TEST

START_TEST(test_burst_of_events_costs_one_write)
{
	struct tokens_action a;

	set_runtime("eth0", "::7", true);
	link_is(2, "eth0", "::7", 0);
	ck_assert_int_eq(plan(0, NULL), 0);
	for (int i = 0; i < 20; i++)
		link_is(2, "eth0", i % 2 ? "::" : "::9", 0);
	ck_assert_int_eq(plan(0, &a), 1);
}
END_TEST

START_TEST(test_prune_owned_keeps_what_is_needed)
{
	struct store_state next;

	set_runtime("eth0", "::7", true);
	set_runtime("eth1", "::8", true);
	link_is(2, "eth0", "::7", 0);
	link_is(3, "eth1", "::", 0);
	ck_assert(!tokens_prune_owned(t, &next));
	drop_runtime("eth1");
	/* eth1's record is neither wanted nor in the kernel: dropped. */
	ck_assert(tokens_prune_owned(t, &next));
	ck_assert_uint_eq(next.n_owned, 1);
	ck_assert_str_eq(next.owned[0].ifname, "eth0");
	store_state_free(&next);
}
END_TEST

static Suite *tokens_suite(void)
{
	Suite *s = suite_create("tokens");
	TCase *tc = tcase_create("reconcile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_config_token_is_applied_once);
	tcase_add_test(tc, test_right_kernel_is_adopted_without_writes);
	tcase_add_test(tc, test_drift_is_repaired_then_contested);
	tcase_add_test(tc, test_repairs_outside_window_never_contest);
	tcase_add_test(tc, test_global_token_skips_loopback_and_unmatched);
	tcase_add_test(tc, test_interface_entry_wins_over_global);
	tcase_add_test(tc, test_removal_only_of_owned_tokens);
	tcase_add_test(tc, test_degraded_removes_nothing);
	tcase_add_test(tc, test_blocked_backs_off);
	tcase_add_test(tc, test_loopback_entry_is_unsupported_and_never_tried);
	tcase_add_test(tc, test_absent_then_created_then_recreated);
	tcase_add_test(tc, test_rename_onto_managed_name);
	tcase_add_test(tc, test_burst_of_events_costs_one_write);
	tcase_add_test(tc, test_prune_owned_keeps_what_is_needed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tokens_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
