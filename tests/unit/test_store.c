/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

/* Every test works in a fresh temporary directory, removed afterwards. */
static char tmpdir[64];
static char state_path[128];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/tokend-test-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(state_path, sizeof(state_path), "%s/%s", tmpdir, STORE_FILE_NAME);
}

static void teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct in6_addr tok(const char *s)
{
	struct in6_addr a;

	ck_assert_int_eq(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

/* The whole file, malloc'd, NUL-terminated. */
static char *read_text(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(1 << 20);
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if (ret_len)
		*ret_len = n;
	return buf;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void sample_state(struct store_state *st, size_t extra)
{
	struct in6_addr a;

	*st = (struct store_state){0};
	a = tok("0:0:0:0:1a:2b:3c:4d");
	ck_assert_int_eq(store_add(&st->tokens, &st->n_tokens, "veth0", &a), 0);
	a = tok("::42");
	ck_assert_int_eq(store_add(&st->tokens, &st->n_tokens, NULL, &a), 0);
	a = tok("::1");
	ck_assert_int_eq(store_add(&st->owned, &st->n_owned, "veth0", &a), 0);
	a = tok("::2");
	ck_assert_int_eq(store_add(&st->owned, &st->n_owned, "veth0", &a), 0);
	a = tok("::42");
	ck_assert_int_eq(store_add(&st->owned, &st->n_owned, "", &a), 0);
	for (size_t i = 0; i < extra; i++) {
		char name[32];

		snprintf(name, sizeof(name), "dummy%zu", i);
		a = tok("::ffff:ffff:ffff:ffff");
		ck_assert_int_eq(store_add(&st->tokens, &st->n_tokens, name, &a), 0);
	}
}

static void assert_same_entries(const struct store_entry *a, size_t na, const struct store_entry *b,
				size_t nb)
{
	ck_assert_uint_eq(na, nb);
	for (size_t i = 0; i < na; i++) {
		ck_assert_str_eq(a[i].ifname, b[i].ifname);
		ck_assert_mem_eq(&a[i].token, &b[i].token, sizeof(a[i].token));
	}
}

/* Loads text that must be refused, and checks the message. */
static void assert_load_fails(const char *text, int want, const char *message)
{
	struct store_state st = {.n_tokens = 4242};
	char *err = NULL;
	char expect[512];

	write_text(state_path, text);
	ck_assert_int_eq(store_load(state_path, &st, &err), want);
	ck_assert_uint_eq(st.n_tokens, 4242); /* untouched */
	ck_assert_ptr_nonnull(err);
	snprintf(expect, sizeof(expect), "%s: %s", state_path, message);
	if (!strstr(err, expect))
		fprintf(stderr, "got \"%s\", expected it to contain \"%s\"\n", err, expect);
	ck_assert_ptr_nonnull(strstr(err, expect));
	free(err);
}

START_TEST(test_round_trip)
{
	struct store_state st, back = {0};
	json_object *root, *v, *e;
	char *err = NULL, *text;

	sample_state(&st, 0);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(store_load(state_path, &back, &err), 0);
	ck_assert_ptr_null(err);
	assert_same_entries(st.tokens, st.n_tokens, back.tokens, back.n_tokens);
	assert_same_entries(st.owned, st.n_owned, back.owned, back.n_owned);

	/* The documented format, pretty-printed, tokens in canonical form. */
	text = read_text(state_path, NULL);
	ck_assert_ptr_nonnull(strstr(text, "\n  \"tokens\": ["));
	ck_assert_int_eq(text[strlen(text) - 1], '\n');
	free(text);
	root = json_object_from_file(state_path);
	ck_assert_ptr_nonnull(root);
	ck_assert(json_object_object_get_ex(root, "format", &v));
	ck_assert_str_eq(json_object_get_string(v), "tokend-state");
	ck_assert(json_object_object_get_ex(root, "version", &v));
	ck_assert_int_eq(json_object_get_int(v), 1);
	ck_assert(json_object_object_get_ex(root, "tokens", &v));
	e = json_object_array_get_idx(v, 0);
	ck_assert_str_eq(json_object_get_string(json_object_object_get(e, "interface")), "veth0");
	ck_assert_str_eq(json_object_get_string(json_object_object_get(e, "token")),
			 "::1a:2b:3c:4d");
	e = json_object_array_get_idx(v, 1);
	ck_assert(json_object_object_get_ex(e, "interface", &v));
	ck_assert_ptr_null(v); /* JSON null */
	json_object_put(root);

	/* Saving again replaces the file. */
	st.n_owned = 0;
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	store_state_free(&back);
	ck_assert_int_eq(store_load(state_path, &back, &err), 0);
	ck_assert_uint_eq(back.n_owned, 0);
	ck_assert_uint_eq(back.n_tokens, 2);
	ck_assert_uint_eq(count_entries(tmpdir), 1);
	store_state_free(&back);
	store_state_free(&st);
	ck_assert_ptr_null(st.tokens);
	ck_assert_uint_eq(st.n_tokens, 0);
	store_state_free(NULL);
}
END_TEST

START_TEST(test_empty_round_trip)
{
	struct store_state st = {0}, back = {.n_owned = 9};
	char *err = NULL;

	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	ck_assert_int_eq(store_load(state_path, &back, &err), 0);
	ck_assert_uint_eq(back.n_tokens, 0);
	ck_assert_uint_eq(back.n_owned, 0);
	store_state_free(&back);
}
END_TEST

START_TEST(test_load_missing)
{
	struct store_state st = {.n_tokens = 3};
	char *err = NULL;

	ck_assert_int_eq(store_load(state_path, &st, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_uint_eq(st.n_tokens, 0);
	ck_assert_uint_eq(st.n_owned, 0);
	ck_assert_ptr_null(st.tokens);
}
END_TEST

START_TEST(test_load_handwritten)
{
	struct store_state st;
	char *err = NULL;
	struct in6_addr a;

	/* Any spelling addr_token_parse takes; lists may be left out; unknown
	 * members are ignored. */
	write_text(state_path,
		   "{\"version\": 1, \"format\": \"tokend-state\", \"note\": 5,\n"
		   " \"tokens\": [{\"interface\": \"eth0\", \"token\": \"0:0:0:0:0:0:1a:2b/64\"},\n"
		   "            {\"interface\": null, \"token\": \"::42\"}]}\n");
	ck_assert_int_eq(store_load(state_path, &st, &err), 0);
	ck_assert_uint_eq(st.n_tokens, 2);
	ck_assert_uint_eq(st.n_owned, 0);
	a = tok("::1a:2b");
	ck_assert(store_contains(st.tokens, st.n_tokens, "eth0", &a));
	a = tok("::42");
	ck_assert(store_contains(st.tokens, st.n_tokens, NULL, &a));
	store_state_free(&st);
}
END_TEST

START_TEST(test_load_corrupt)
{
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1, \"tokens\": [}", -EBADMSG,
			  "not valid JSON");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1} garbage", -EBADMSG,
			  "not valid JSON: unexpected data");
	assert_load_fails("", -EBADMSG, "empty file");
	assert_load_fails("[1, 2]", -EBADMSG, "not a tokend state file");
	assert_load_fails("{\"version\": 1}", -EBADMSG, "not a tokend state file");
	assert_load_fails("{\"format\": \"other\", \"version\": 1}", -EBADMSG,
			  "not a tokend state file");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": \"1\"}", -EBADMSG,
			  "no integer \"version\"");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1, \"tokens\": {}}",
			  -EBADMSG, "\"tokens\" is not an array");
}
END_TEST

START_TEST(test_load_wrong_version)
{
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 7, \"tokens\": []}",
			  -EBADMSG, "unsupported version 7 (this tokend reads version 1)");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 0}", -EBADMSG,
			  "unsupported version 0");
}
END_TEST

START_TEST(test_load_bad_entries)
{
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"tokens\": [{\"interface\": \"veth0\", \"token\": \"1::5\"}]}",
			  -EBADMSG,
			  "tokens[0]: invalid token \"1::5\": the upper 64 bits must be zero");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1, \"tokens\": [],"
			  " \"owned\": [{\"interface\": null, \"token\": \"::1\"},"
			  " {\"interface\": \"a/b\", \"token\": \"::1\"}]}",
			  -EBADMSG, "owned[1]: invalid interface name \"a/b\"");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"tokens\": [{\"interface\": 3, \"token\": \"::1\"}]}",
			  -EBADMSG, "tokens[0]: \"interface\" is neither a string nor null");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"tokens\": [{\"interface\": \"x\"}]}",
			  -EBADMSG, "tokens[0] has no \"token\"");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1, \"tokens\": [7]}",
			  -EBADMSG, "tokens[0] is not an object");
}
END_TEST

START_TEST(test_load_duplicates)
{
	struct store_state st;
	char *err = NULL;

	/* One runtime entry per interface, one for the global token. */
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"tokens\": [{\"interface\": \"veth0\", \"token\": \"::1\"},"
			  " {\"interface\": \"veth0\", \"token\": \"::2\"}]}",
			  -EBADMSG, "tokens[1]: a second entry for veth0");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"tokens\": [{\"interface\": null, \"token\": \"::1\"},"
			  " {\"interface\": null, \"token\": \"::2\"}]}",
			  -EBADMSG, "tokens[1]: a second entry for the global token");
	/* Owned records: several tokens per interface, but not the same twice
	 * (in any spelling). */
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"owned\": [{\"interface\": \"veth0\", \"token\": \"::1\"},"
			  " {\"interface\": \"veth0\", \"token\": \"::2\"},"
			  " {\"interface\": \"veth0\", \"token\": \"0::0:1\"}]}",
			  -EBADMSG, "owned[2] repeats owned[0]");
	write_text(state_path, "{\"format\": \"tokend-state\", \"version\": 1,"
			       " \"owned\": [{\"interface\": \"veth0\", \"token\": \"::1\"},"
			       " {\"interface\": \"veth0\", \"token\": \"::2\"},"
			       " {\"interface\": null, \"token\": \"::1\"}]}");
	ck_assert_int_eq(store_load(state_path, &st, &err), 0);
	ck_assert_uint_eq(st.n_owned, 3);
	store_state_free(&st);
}
END_TEST

/* A bad runtime association is named by its position and field; an
 * unknown field's key is quoted like any text from the file (it went raw
 * into the message, and from there into the log: found by
 * tests/fuzz/fuzz_methods). */
START_TEST(test_load_bad_association)
{
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"runtime_associations\": [{\"name\": \"web\", \"number\": 0}]}",
			  -EBADMSG, "runtime association 1: local: an IPv4 or IPv6 address");
	assert_load_fails("{\"format\": \"tokend-state\", \"version\": 1,"
			  " \"runtime_associations\": [{\"r\\u001b[2J\\u00e4\": 1}]}",
			  -EBADMSG, "runtime association 1: r\\x1b[2J\\xc3\\xa4: unknown field");
}
END_TEST

START_TEST(test_load_truncated)
{
	struct store_state st;
	char *err = NULL;
	size_t len;
	char *text;

	sample_state(&st, 0);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	store_state_free(&st);
	text = read_text(state_path, &len);
	ck_assert_uint_gt(len, 40);
	free(text);
	ck_assert_int_eq(truncate(state_path, (off_t)(len / 2)), 0);
	st.n_tokens = 4242;
	ck_assert_int_eq(store_load(state_path, &st, &err), -EBADMSG);
	ck_assert_uint_eq(st.n_tokens, 4242);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, state_path));
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
	free(err);
}
END_TEST

START_TEST(test_load_too_big)
{
	struct store_state st = {0};
	char *err = NULL;
	int fd;

	/* Sparse: no disk space used. */
	fd = open(state_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 16 * 1024 * 1024 + 1), 0);
	close(fd);
	ck_assert_int_eq(store_load(state_path, &st, &err), -EFBIG);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, state_path));
	ck_assert_ptr_nonnull(strstr(err, "16 MiB"));
	free(err);
}
END_TEST

START_TEST(test_load_unreadable)
{
	struct store_state st = {0};
	char *err = NULL;

	ck_assert_int_eq(mkdir(state_path, 0700), 0);
	ck_assert_int_eq(store_load(state_path, &st, &err), -EISDIR);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, state_path));
	free(err);
}
END_TEST

START_TEST(test_save_missing_dir)
{
	struct store_state st;
	char path[256], want[512];
	char *err = NULL;

	sample_state(&st, 0);
	snprintf(path, sizeof(path), "%s/nonexistent/%s", tmpdir, STORE_FILE_NAME);
	ck_assert_int_eq(store_save(path, &st, &err), -ENOENT);
	snprintf(want, sizeof(want), "cannot write %s: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, want);
	free(err);
	store_state_free(&st);
	ck_assert_uint_eq(count_entries(tmpdir), 0);
}
END_TEST

START_TEST(test_save_over_directory)
{
	struct store_state st;
	char inner[256];
	char *err = NULL;

	/* A non-empty directory where the file should be: rename() fails, after
	 * the temporary file was written. */
	sample_state(&st, 0);
	ck_assert_int_eq(mkdir(state_path, 0700), 0);
	snprintf(inner, sizeof(inner), "%s/keep", state_path);
	write_text(inner, "x");
	ck_assert_int_lt(store_save(state_path, &st, &err), 0);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, state_path));
	free(err);
	store_state_free(&st);
	/* The directory is untouched and no temporary file is left. */
	ck_assert_int_eq(access(inner, F_OK), 0);
	ck_assert_uint_eq(count_entries(tmpdir), 1);
}
END_TEST

START_TEST(test_save_fails_keeps_old)
{
	struct rlimit old_limit, limit;
	struct store_state st;
	size_t before_len, after_len;
	char *before, *after, *err = NULL;
	void (*old_handler)(int);
	int r;

	sample_state(&st, 0);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	store_state_free(&st);
	before = read_text(state_path, &before_len);

	/* Root ignores file modes, but not the file size limit: writing past it
	 * fails with EFBIG, like a full disk, once the temporary file exists. */
	sample_state(&st, 200);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
	limit = old_limit;
	limit.rlim_cur = 4096;
	old_handler = signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
	r = store_save(state_path, &st, &err);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
	signal(SIGXFSZ, old_handler);
	store_state_free(&st);

	ck_assert_int_eq(r, -EFBIG);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, state_path));
	ck_assert_ptr_nonnull(strstr(err, strerror(EFBIG)));
	free(err);
	after = read_text(state_path, &after_len);
	ck_assert_uint_eq(before_len, after_len);
	ck_assert_mem_eq(before, after, before_len);
	ck_assert_uint_eq(count_entries(tmpdir), 1);
	free(before);
	free(after);
}
END_TEST

START_TEST(test_save_mode)
{
	struct store_state st;
	char *err = NULL;
	struct stat sb;
	mode_t old_umask;

	sample_state(&st, 0);
	/* Whatever the umask, and whatever the mode of the file replaced. */
	old_umask = umask(0277);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	umask(old_umask);
	ck_assert_int_eq(stat(state_path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);

	ck_assert_int_eq(chmod(state_path, 0644), 0);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	ck_assert_int_eq(stat(state_path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	store_state_free(&st);
}
END_TEST

START_TEST(test_add_contains)
{
	struct store_entry *v = NULL;
	struct in6_addr a = tok("::1"), b = tok("::2");
	size_t n = 0;

	ck_assert(!store_contains(v, n, "veth0", &a));
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(store_add(&v, &n, i == 50 ? "veth0" : "x", &b), 0);
	ck_assert_int_eq(store_add(&v, &n, "veth0", &a), 0);
	ck_assert_int_eq(store_add(&v, &n, NULL, &a), 0);
	ck_assert_uint_eq(n, 102);
	ck_assert(store_contains(v, n, "veth0", &a));
	ck_assert(store_contains(v, n, "veth0", &b));
	ck_assert(store_contains(v, n, "", &a));
	ck_assert(store_contains(v, n, NULL, &a));
	ck_assert(!store_contains(v, n, "", &b));
	ck_assert(!store_contains(v, n, "veth", &a));
	ck_assert(!store_contains(v, n, "veth00", &a));
	/* Too long to be an interface name: refused rather than cut. */
	ck_assert_int_eq(store_add(&v, &n, "abcdefghijklmnop", &a), -EINVAL);
	ck_assert_uint_eq(n, 102);
	free(v);
}
END_TEST

/* What a save killed before its rename leaves is removed at start; nothing
 * else is: not the state file, not other names, not links or directories. */
START_TEST(test_remove_temps)
{
	static const char *const keep[] = {".state.json.toolong7", ".state.json.x",
					   ".other.json.AbC123", "state.json.AbC123",
					   ".state.jsonXAbC123"};
	char p[256], target[256];
	struct store_state st = {0};
	struct in6_addr t = tok("::1");
	struct stat sb;
	char *err = NULL;
	int fd;

	ck_assert_int_eq(store_add(&st.tokens, &st.n_tokens, "veth0", &t), 0);
	ck_assert_int_eq(store_save(state_path, &st, &err), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/.%s.Ab%04d", tmpdir, STORE_FILE_NAME, i);
		fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpdir, keep[i]);
		fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
	fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/.%s.LNK123", tmpdir, STORE_FILE_NAME);
	ck_assert_int_eq(symlink(target, p), 0);
	snprintf(p, sizeof(p), "%s/.%s.DIR123", tmpdir, STORE_FILE_NAME);
	ck_assert_int_eq(mkdir(p, 0700), 0);

	ck_assert_int_eq(store_remove_temps(state_path), 3);
	ck_assert_int_eq(store_remove_temps(state_path), 0);
	ck_assert_int_eq(stat(state_path, &sb), 0);
	ck_assert_int_eq(stat(target, &sb), 0);
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpdir, keep[i]);
		ck_assert_msg(stat(p, &sb) == 0, "%s was removed", keep[i]);
	}
	snprintf(p, sizeof(p), "%s/.%s.LNK123", tmpdir, STORE_FILE_NAME);
	ck_assert_int_eq(lstat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/.%s.DIR123", tmpdir, STORE_FILE_NAME);
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(store_remove_temps("/nonexistent-dir/state.json"), -ENOENT);
	store_state_free(&st);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_empty_round_trip);
	tcase_add_test(tc, test_load_missing);
	tcase_add_test(tc, test_load_handwritten);
	tcase_add_test(tc, test_load_corrupt);
	tcase_add_test(tc, test_load_wrong_version);
	tcase_add_test(tc, test_load_bad_entries);
	tcase_add_test(tc, test_load_duplicates);
	tcase_add_test(tc, test_load_bad_association);
	tcase_add_test(tc, test_load_truncated);
	tcase_add_test(tc, test_load_too_big);
	tcase_add_test(tc, test_load_unreadable);
	tcase_add_test(tc, test_save_missing_dir);
	tcase_add_test(tc, test_save_over_directory);
	tcase_add_test(tc, test_save_fails_keeps_old);
	tcase_add_test(tc, test_save_mode);
	tcase_add_test(tc, test_add_contains);
	tcase_add_test(tc, test_remove_temps);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
