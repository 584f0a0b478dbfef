/* SPDX-License-Identifier: MIT */
/* Log levels, output format and the rate limiter (common/log.c). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- Levels ------------------------------------------------------------ */

static const struct {
	const char *text;
	int level;
} levels[] = {
    {"emerg", LOG_EMERG},
    {"alert", LOG_ALERT},
    {"crit", LOG_CRIT},
    {"err", LOG_ERR},
    {"error", LOG_ERR},
    {"warning", LOG_WARNING},
    {"warn", LOG_WARNING},
    {"notice", LOG_NOTICE},
    {"info", LOG_INFO},
    {"debug", LOG_DEBUG},
    {"0", 0},
    {"3", 3},
    {"7", 7},
};

START_TEST(test_level_valid)
{
	ck_assert_int_eq(log_level_from_string(levels[_i].text), levels[_i].level);
}
END_TEST

static const char *const bad_levels[] = {
    "", "8", "9", "-1", "07", "1 ", " 1", "infox", "inf", "debug2", "10", "x",
};

START_TEST(test_level_invalid)
{
	ck_assert_msg(log_level_from_string(bad_levels[_i]) == -EINVAL, "\"%s\" accepted",
		      bad_levels[_i]);
}
END_TEST

START_TEST(test_level_set_get)
{
	log_set_level(LOG_DEBUG);
	ck_assert_int_eq(log_get_level(), LOG_DEBUG);
	log_set_level(LOG_WARNING);
	ck_assert_int_eq(log_get_level(), LOG_WARNING);
}
END_TEST

/* ---- Output ------------------------------------------------------------ */

/* Run with stderr going to a temporary file; return what was written. */
static FILE *capture;
static int saved_stderr = -1;

static void capture_start(void)
{
	capture = tmpfile();
	ck_assert_ptr_nonnull(capture);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	ck_assert_int_ge(saved_stderr, 0);
	ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
}

static char *capture_end(void)
{
	static char buf[8192];
	size_t n;

	fflush(stderr);
	ck_assert_int_ge(dup2(saved_stderr, STDERR_FILENO), 0);
	close(saved_stderr);
	rewind(capture);
	n = fread(buf, 1, sizeof(buf) - 1, capture);
	buf[n] = '\0';
	fclose(capture);
	return buf;
}

START_TEST(test_output_prefix)
{
	log_set_level(LOG_INFO);
	log_set_prefix_enabled(true);
	capture_start();
	log_error("failed: %d", 42);
	log_info("hello %s", "world");
	log_debug("not shown %d", 1);
	ck_assert_str_eq(capture_end(), "<3>failed: 42\n<6>hello world\n");
}
END_TEST

START_TEST(test_output_no_prefix_and_filter)
{
	log_set_level(LOG_WARNING);
	log_set_prefix_enabled(false);
	capture_start();
	log_notice("dropped");
	log_warning("kept %s", "this");
	log_printf(LOG_CRIT, "and this");
	ck_assert_str_eq(capture_end(), "kept this\nand this\n");
}
END_TEST

/* Logging between a failing call and its errno check must not change errno,
 * even when writing the log fails. */
START_TEST(test_output_keeps_errno)
{
	int saved;

	log_set_level(LOG_INFO);
	capture_start();
	errno = ENOENT;
	log_error("x");
	ck_assert_int_eq(errno, ENOENT);
	errno = EPERM;
	log_debug("filtered");
	ck_assert_int_eq(errno, EPERM);
	capture_end();

	/* With stderr closed the write fails with EBADF. */
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	close(STDERR_FILENO);
	errno = ENOENT;
	log_error("lost");
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
}
END_TEST

/* ---- Rate limiter ------------------------------------------------------ */

#define SEC 1000000ULL

/* Burst, then suppression counted, reported by the first message of the
 * next window. */
START_TEST(test_ratelimit_burst_and_count)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(10 * SEC, 3);
	unsigned long long t = 1000 * SEC;
	unsigned suppressed = 99;

	for (int i = 0; i < 3; i++) {
		ck_assert(log_ratelimit_ok(&rl, t + (unsigned long long)i, &suppressed));
		ck_assert_uint_eq(suppressed, 0);
	}
	for (int i = 0; i < 7; i++) {
		ck_assert(!log_ratelimit_ok(&rl, t + SEC + (unsigned long long)i, &suppressed));
		ck_assert_uint_eq(suppressed, 0);
	}
	/* Still inside the window: the last microsecond of it. */
	ck_assert(!log_ratelimit_ok(&rl, t + 10 * SEC - 1, &suppressed));
	/* The window is over: allowed, and told 8 were dropped. */
	ck_assert(log_ratelimit_ok(&rl, t + 10 * SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 8);
	/* The count was handed out once. */
	ck_assert(log_ratelimit_ok(&rl, t + 10 * SEC + 1, &suppressed));
	ck_assert_uint_eq(suppressed, 0);
	ck_assert(log_ratelimit_ok(&rl, t + 10 * SEC + 2, &suppressed));
	ck_assert(!log_ratelimit_ok(&rl, t + 10 * SEC + 3, &suppressed));
}
END_TEST

START_TEST(test_ratelimit_reset_after_quiet)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(SEC, 2);
	unsigned suppressed = 99;

	ck_assert(log_ratelimit_ok(&rl, 5 * SEC, &suppressed));
	ck_assert(log_ratelimit_ok(&rl, 5 * SEC, &suppressed));
	ck_assert(!log_ratelimit_ok(&rl, 5 * SEC, &suppressed));
	/* Long quiet: a full burst again, with the one drop reported once. */
	ck_assert(log_ratelimit_ok(&rl, 100 * SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 1);
	ck_assert(log_ratelimit_ok(&rl, 100 * SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 0);
	ck_assert(!log_ratelimit_ok(&rl, 100 * SEC, &suppressed));
	/* A window with nothing dropped reports nothing. */
	ck_assert(log_ratelimit_ok(&rl, 102 * SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 1);
	ck_assert(log_ratelimit_ok(&rl, 104 * SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 0);
}
END_TEST

/* Timestamp 0 is a time like any other. */
START_TEST(test_ratelimit_from_zero)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(SEC, 2);
	unsigned suppressed = 99;

	ck_assert(log_ratelimit_ok(&rl, 0, &suppressed));
	ck_assert_uint_eq(suppressed, 0);
	ck_assert(log_ratelimit_ok(&rl, 0, &suppressed));
	ck_assert(!log_ratelimit_ok(&rl, 0, &suppressed));
	ck_assert(!log_ratelimit_ok(&rl, SEC - 1, &suppressed));
	ck_assert(log_ratelimit_ok(&rl, SEC, &suppressed));
	ck_assert_uint_eq(suppressed, 2);
}
END_TEST

/* log_ratelimited() says how many were left out, on the real clock. */
START_TEST(test_ratelimited_output)
{
	struct log_ratelimit rl = LOG_RATELIMIT_INIT(200000, 1);

	log_set_level(LOG_INFO);
	log_set_prefix_enabled(true);
	capture_start();
	log_ratelimited(&rl, LOG_WARNING, "link %d down", 1);
	log_ratelimited(&rl, LOG_WARNING, "link %d down", 2);
	log_ratelimited(&rl, LOG_WARNING, "link %d down", 3);
	/* Filtered by level: neither logged nor counted. */
	log_ratelimited(&rl, LOG_DEBUG, "link %d down", 4);
	usleep(300000);
	log_ratelimited(&rl, LOG_WARNING, "link %d down", 5);
	ck_assert_str_eq(capture_end(),
			 "<4>link 1 down\n<4>link 5 down (2 similar messages suppressed)\n");
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("level");

	tcase_add_loop_test(tc, test_level_valid, 0, N(levels));
	tcase_add_loop_test(tc, test_level_invalid, 0, N(bad_levels));
	tcase_add_test(tc, test_level_set_get);
	suite_add_tcase(s, tc);

	tc = tcase_create("output");
	tcase_add_test(tc, test_output_prefix);
	tcase_add_test(tc, test_output_no_prefix_and_filter);
	tcase_add_test(tc, test_output_keeps_errno);
	suite_add_tcase(s, tc);

	tc = tcase_create("ratelimit");
	tcase_add_test(tc, test_ratelimit_burst_and_count);
	tcase_add_test(tc, test_ratelimit_reset_after_quiet);
	tcase_add_test(tc, test_ratelimit_from_zero);
	tcase_add_test(tc, test_ratelimited_output);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
