/* SPDX-License-Identifier: MIT */
/* The string map behind duplicate checks and the secret cache. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "strmap.h"

START_TEST(test_put_get_grow)
{
	struct strmap m = STRMAP_INIT;
	char key[32];
	size_t v;

	ck_assert(!strmap_get(&m, "none", &v));
	/* Past several doublings of the table: every key still found. */
	for (size_t i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key%zu", i * 7);
		ck_assert_int_eq(strmap_put(&m, key, i), 0);
	}
	for (size_t i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key%zu", i * 7);
		ck_assert(strmap_get(&m, key, &v));
		ck_assert_uint_eq(v, i);
		snprintf(key, sizeof(key), "key%zu", i * 7 + 1);
		ck_assert(!strmap_get(&m, key, &v));
	}
	/* A key already there is refused and keeps its value. */
	ck_assert_int_eq(strmap_put(&m, "key7", 99), -EEXIST);
	ck_assert(strmap_get(&m, "key7", &v));
	ck_assert_uint_eq(v, 1);
	ck_assert_uint_eq(m.n, 5000);
	strmap_free(&m);
	ck_assert(!strmap_get(&m, "key7", &v));
	/* Usable again after free. */
	ck_assert_int_eq(strmap_put(&m, "", 3), 0);
	ck_assert(strmap_get(&m, "", &v));
	ck_assert_uint_eq(v, 3);
	strmap_free(&m);
}
END_TEST

/* The map keeps its own copies of the keys. */
START_TEST(test_keys_copied)
{
	struct strmap m = STRMAP_INIT;
	char key[16] = "veth0";
	size_t v;

	ck_assert_int_eq(strmap_put(&m, key, 1), 0);
	key[4] = '1';
	ck_assert(strmap_get(&m, "veth0", &v));
	ck_assert(!strmap_get(&m, "veth1", &v));
	strmap_free(&m);
}
END_TEST

static Suite *strmap_suite(void)
{
	Suite *s = suite_create("strmap");
	TCase *tc = tcase_create("strmap");

	tcase_add_test(tc, test_put_get_grow);
	tcase_add_test(tc, test_keys_copied);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(strmap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
