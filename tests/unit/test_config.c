/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"

/* Every test works in a fresh temporary directory, removed afterwards. */
static char tmpdir[64];

/* Paths handed out by path_of(), freed at teardown. */
static char *paths[64];
static size_t n_paths;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/tokend-test-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	for (size_t i = 0; i < n_paths; i++)
		free(paths[i]);
	n_paths = 0;
}

static const char *path_of(const char *name)
{
	char *p;

	ck_assert_uint_lt(n_paths, sizeof(paths) / sizeof(paths[0]));
	ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, name), 0);
	paths[n_paths++] = p;
	return p;
}

static const char *write_file_n(const char *name, const char *text, size_t len)
{
	const char *p = path_of(name);
	FILE *f = fopen(p, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return p;
}

static const char *write_file(const char *name, const char *text)
{
	return write_file_n(name, text, strlen(text));
}

static void make_dir(const char *name)
{
	ck_assert_int_eq(mkdir(path_of(name), 0755), 0);
}

static void dump_errors(const struct config_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  error: %s:%u: %s\n", e->v[i].file, e->v[i].line,
			e->v[i].message);
}

/* Asserts error i is at file:line and its message contains `text`. */
static void assert_error(const struct config_errors *e, size_t i, const char *file, unsigned line,
			 const char *text)
{
	if (i >= e->n || strcmp(e->v[i].file, file) != 0 || e->v[i].line != line ||
	    !strstr(e->v[i].message, text)) {
		fprintf(stderr, "expected error %zu at %s:%u containing \"%s\"; got:\n", i, file,
			line, text);
		dump_errors(e);
	}
	ck_assert_uint_lt(i, e->n);
	ck_assert_str_eq(e->v[i].file, file);
	ck_assert_uint_eq(e->v[i].line, line);
	ck_assert_ptr_nonnull(strstr(e->v[i].message, text));
}

static struct config *load_ok(const char *path)
{
	struct config_errors e = {0};
	struct config *c = NULL;
	int r;

	r = config_load(path, NULL, true, &c, &e);
	if (r != 0)
		dump_errors(&e);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

static struct in6_addr tok(const char *s)
{
	struct in6_addr a;

	ck_assert_int_eq(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

static void assert_token(const struct config_token *t, const char *ifname, const char *token,
			 const char *where)
{
	struct in6_addr want = tok(token);

	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(t->ifname, ifname);
	ck_assert_mem_eq(&t->token, &want, sizeof(want));
	ck_assert_str_eq(t->where, where);
}

static void assert_defaults(const struct config *c)
{
	ck_assert_str_eq(c->socket_path, "/run/tokend/tokend.sock");
	ck_assert_str_eq(c->state_dir, "/var/lib/tokend");
	ck_assert_str_eq(c->socket_group, "tokend");
	ck_assert_str_eq(c->admin_group, "tokend-admin");
	ck_assert_uint_eq(c->reconcile_interval_usec, 60000000);
	ck_assert_uint_eq(c->retry_min_usec, 1000000);
	ck_assert_uint_eq(c->retry_max_usec, 60000000);
	ck_assert_uint_eq(c->contest_repairs, 5);
	ck_assert_uint_eq(c->contest_window_usec, 30000000);
	ck_assert_uint_eq(c->client_timeout_usec, 10000000);
	ck_assert_uint_eq(c->max_clients, 1024);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert(!c->has_global);
	ck_assert_ptr_nonnull(c->match);
	ck_assert_str_eq(c->match[0], "*");
	ck_assert_ptr_null(c->match[1]);
	ck_assert_uint_eq(c->n_tokens, 0);
	ck_assert_ptr_nonnull(c->files);
}

START_TEST(test_defaults)
{
	struct config *c = config_new_default();

	ck_assert_ptr_nonnull(c);
	assert_defaults(c);
	ck_assert_ptr_null(c->files[0]);
	ck_assert_ptr_null(config_find_token(c, "eth0"));
	config_free(c);
	config_free(NULL);
}
END_TEST

START_TEST(test_missing_optional)
{
	struct config_errors e = {0};
	struct config *c = NULL;

	/* Neither the file nor its drop-in directory exist: the defaults. */
	ck_assert_int_eq(config_load(path_of("none.conf"), NULL, false, &c, &e), 0);
	ck_assert_uint_eq(e.n, 0);
	assert_defaults(c);
	ck_assert_ptr_null(c->files[0]);
	config_free(c);
}
END_TEST

START_TEST(test_missing_required)
{
	const char *p = path_of("none.conf");
	struct config_errors e = {0};
	struct config *c = (struct config *)&e; /* must stay untouched */

	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_ptr_eq(c, (struct config *)&e);
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, p, 0, "does not exist");
	ck_assert_ptr_nonnull(strstr(e.v[0].message, p));
	config_errors_clear(&e);
	ck_assert_ptr_null(e.v);
	ck_assert_uint_eq(e.n, 0);
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_missing_main_with_dropin)
{
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *d;

	make_dir("t.conf.d");
	d = write_file("t.conf.d/a.conf", "[tokend]\nmax-clients = 9\n");
	ck_assert_int_eq(config_load(path_of("t.conf"), NULL, false, &c, &e), 0);
	ck_assert_uint_eq(c->max_clients, 9);
	ck_assert_str_eq(c->files[0], d);
	ck_assert_ptr_null(c->files[1]);
	config_free(c);
}
END_TEST

START_TEST(test_full)
{
	const char *main_conf = write_file("t.conf", "# tokend test config\n"
						     "[tokend]\n"
						     "socket = /run/test/t.sock\n"
						     "state-dir = /var/lib/test\n"
						     "socket-group = grp\n"
						     "admin-group = adm\n"
						     "reconcile-interval = 2min\n"
						     "retry-min = 500ms\n"
						     "retry-max = 1h\n"
						     "contest-repairs = 3\n"
						     "contest-window = 1.5s\n"
						     "client-timeout = 20 ; seconds\n"
						     "max-clients = 10\n"
						     "log-level = debug\n"
						     "\n"
						     "[global]\n"
						     "token = 0:0:0:0:0:0:0:42\n"
						     "match = eth* en*\n"
						     "\n"
						     "[tokens]\n"
						     "veth1 = ::1a:2b:3c:4d/64\n"
						     "eth0: ::5\n");
	const char *a, *b;
	struct config *c;
	char where[256];

	make_dir("t.conf.d");
	a = write_file("t.conf.d/10-a.conf", "[tokend]\n"
					     "max-clients = 65536\n"
					     "log-level = warning\n"
					     "[global]\n"
					     "match = veth*\n");
	b = write_file("t.conf.d/20-b.conf", "[tokens]\naaa0 = ::7\n");
	/* None of these is a drop-in; each would change the result if read. */
	write_file("t.conf.d/README", "[tokend]\nmax-clients = 1\n");
	write_file("t.conf.d/30-c.conf.disabled", "[tokend]\nmax-clients = 2\n");
	write_file("t.conf.d/.99-hidden.conf", "[tokend]\nmax-clients = 3\n");
	make_dir("t.conf.d/40-dir.conf");
	ck_assert_int_eq(symlink("/nonexistent/x", path_of("t.conf.d/50-dangling.conf")), 0);

	c = load_ok(main_conf);
	ck_assert_str_eq(c->socket_path, "/run/test/t.sock");
	ck_assert_str_eq(c->state_dir, "/var/lib/test");
	ck_assert_str_eq(c->socket_group, "grp");
	ck_assert_str_eq(c->admin_group, "adm");
	ck_assert_uint_eq(c->reconcile_interval_usec, 120000000);
	ck_assert_uint_eq(c->retry_min_usec, 500000);
	ck_assert_uint_eq(c->retry_max_usec, 3600000000);
	ck_assert_uint_eq(c->contest_repairs, 3);
	ck_assert_uint_eq(c->contest_window_usec, 1500000);
	ck_assert_uint_eq(c->client_timeout_usec, 20000000);
	/* Overridden by 10-a.conf. */
	ck_assert_uint_eq(c->max_clients, 65536);
	ck_assert_int_eq(c->log_level, LOG_WARNING);
	ck_assert_str_eq(c->match[0], "veth*");
	ck_assert_ptr_null(c->match[1]);

	ck_assert(c->has_global);
	snprintf(where, sizeof(where), "%s:17", main_conf);
	assert_token(&c->global, "", "::42", where);

	/* Sorted by name, each with where it was declared. */
	ck_assert_uint_eq(c->n_tokens, 3);
	snprintf(where, sizeof(where), "%s:2", b);
	assert_token(&c->tokens[0], "aaa0", "::7", where);
	snprintf(where, sizeof(where), "%s:22", main_conf);
	assert_token(&c->tokens[1], "eth0", "::5", where);
	snprintf(where, sizeof(where), "%s:21", main_conf);
	assert_token(&c->tokens[2], "veth1", "::1a:2b:3c:4d", where);
	ck_assert_ptr_eq(config_find_token(c, "eth0"), &c->tokens[1]);
	ck_assert_ptr_eq(config_find_token(c, "veth1"), &c->tokens[2]);
	ck_assert_ptr_eq(config_find_token(c, "aaa0"), &c->tokens[0]);
	ck_assert_ptr_null(config_find_token(c, "veth"));
	ck_assert_ptr_null(config_find_token(c, ""));

	ck_assert_str_eq(c->files[0], main_conf);
	ck_assert_str_eq(c->files[1], a);
	ck_assert_str_eq(c->files[2], b);
	ck_assert_ptr_null(c->files[3]);
	config_free(c);
}
END_TEST

START_TEST(test_dropin_order)
{
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *main_conf = write_file("t.conf", "[tokend]\nlog-level = err\n");
	const char *x, *y;

	/* An explicit directory; "<path>.d" is not read then. */
	make_dir("other");
	make_dir("t.conf.d");
	write_file("t.conf.d/x.conf", "[tokend]\nmax-clients = 1\n");
	y = write_file("other/9-y.conf", "[tokend]\nlog-level = notice\n");
	x = write_file("other/10-x.conf", "[tokend]\nlog-level = debug\n");
	ck_assert_int_eq(config_load(main_conf, path_of("other"), true, &c, &e), 0);
	/* strcmp order: "10-x.conf" before "9-y.conf". */
	ck_assert_int_eq(c->log_level, LOG_NOTICE);
	ck_assert_uint_eq(c->max_clients, 1024);
	ck_assert_str_eq(c->files[0], main_conf);
	ck_assert_str_eq(c->files[1], x);
	ck_assert_str_eq(c->files[2], y);
	ck_assert_ptr_null(c->files[3]);
	config_free(c);
}
END_TEST

/* Files with exactly one error, and where it must be reported. */
static const struct error_case {
	const char *text;
	unsigned line;
	const char *message;
} error_cases[] = {
    {"[tokend]\nsocket = /run/x.sock\nfoo = 1\n", 3, "unknown key \"foo\" in section [tokend]"},
    /* 92 characters: with ".PID.tmp" it would not fit in sun_path. */
    {"[tokend]\nsocket = "
     "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "\n",
     2, "a socket path has at most 91 characters"},
    {"[global]\nfoo = 1\n", 2, "unknown key \"foo\" in section [global]"},
    {"[tokend]\n\n[bar]\nx = 1\ny = 2\n", 3, "unknown section [bar]"},
    {"[tokens]\n\nveth0 = 1::5\n", 3,
     "invalid token \"1::5\" for veth0: the upper 64 bits must be zero"},
    {"[tokens]\nveth0 = ::\n", 2, "invalid token \"::\" for veth0: \"::\" means no token"},
    {"[tokens]\nveth0 = ::1/48\n", 2, "invalid token \"::1/48\" for veth0"},
    {"[tokens]\nveth0 = hello\n", 2, "invalid token \"hello\" for veth0: not an IPv6 address"},
    {"[tokens]\na/b = ::1\n", 2, "invalid interface name \"a/b\": "},
    {"[tokens]\nabcdefghijklmnop = ::1\n", 2,
     "invalid interface name \"abcdefghijklmnop\": interface names are at most 15"},
    {"[tokens]\nveth0 = ::1\nveth0 = ::2\n", 3, "token for veth0 already declared at "},
    {"[global]\ntoken = 1::5\n", 2, "invalid token \"1::5\" for the global token"},
    {"[global]\ntoken = ::\n", 2, "\"::\" means no token"},
    {"[global]\ntoken = ::1\ntoken = ::2\n", 3, "global token already declared at "},
    {"[tokend]\nretry-max = 5x\n", 2, "invalid duration \"5x\" for retry-max"},
    {"[tokend]\nclient-timeout = \n", 2, "invalid duration \"\" for client-timeout"},
    {"[tokend]\nreconcile-interval = 0\n", 2,
     "invalid duration \"0\" for reconcile-interval: must be greater than zero"},
    {"[tokend]\ncontest-window = 0ms\n", 2, "must be greater than zero"},
    {"[tokend]\ncontest-repairs = 1\n", 2,
     "invalid contest-repairs \"1\": expected an integer from 2 to "},
    {"[tokend]\nmax-clients = 0\n", 2,
     "invalid max-clients \"0\": expected an integer from 1 to 65536"},
    {"[tokend]\nmax-clients = 65537\n", 2, "invalid max-clients \"65537\""},
    {"[tokend]\nmax-clients = -1\n", 2, "invalid max-clients \"-1\""},
    {"[tokend]\nmax-clients = 0x10\n", 2, "invalid max-clients \"0x10\""},
    {"[tokend]\nlog-level = loud\n", 2, "invalid log-level \"loud\": expected err, warning"},
    {"[tokend]\nsocket = tokend.sock\n", 2, "invalid socket \"tokend.sock\": expected an absolute"},
    {"[tokend]\nstate-dir = var\n", 2, "invalid state-dir \"var\": expected an absolute path"},
    {"[tokend]\nsocket-group =\n", 2, "invalid socket-group \"\""},
    {"[tokend]\n\n\nretry-min = 2min\n", 4,
     "retry-min (2min) is greater than retry-max (1min, the default)"},
    {"[tokend]\nretry-max = 100ms\n", 2,
     "retry-max (100ms) is less than retry-min (1s, the default)"},
    {"; comment\ntoken = ::1\n", 2, "key \"token\" outside any section"},
    {"[tokend]\n# comment\nmax-clients\n", 3, "expected 'key = value', got \"max-clients\""},
    {"[tokend]\nsocket ; = /x\n", 2, "expected 'key = value'"},
    {"[tokend]\n[global ; ]\n", 2, "unterminated section header \"[global ; ]\""},
    {"[global]\nmatch =\n[tokend]\n", 2, "match needs at least one fnmatch(3) pattern"},
    {"[global]\nmatch = ; nothing\n", 2, "match needs at least one"},
    {"[tokend]\nsocket = /a\n  /b\n", 3, "unexpected indented line \"/b\""},
    {"[tokens]\nveth0 = ::1\n  veth1 = ::2\n", 3, "unexpected indented line"},
};

START_TEST(test_error_case)
{
	const struct error_case *t = &error_cases[_i];
	const char *p = write_file("t.conf", t->text);
	struct config_errors e = {0};
	struct config *c = NULL;

	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_ptr_null(c);
	if (e.n != 1) {
		fprintf(stderr, "case %d: expected exactly one error:\n", _i);
		dump_errors(&e);
	}
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, p, t->line, t->message);
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_error_names_value)
{
	const char *p = write_file("t.conf", "[tokens]\nveth0 = ::1\n\nveth0 = ::2\n"
					     "[tokend]\nretry-max = 1s\nretry-min = 2s\n");
	struct config_errors e = {0};
	struct config *c = NULL;
	char want[512];

	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 2);
	snprintf(want, sizeof(want), "token for veth0 already declared at %s:2", p);
	assert_error(&e, 0, p, 4, want);
	snprintf(want, sizeof(want), "retry-min (2s) is greater than retry-max (1s, set at %s:6)",
		 p);
	assert_error(&e, 1, p, 7, want);
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_errors_without_list)
{
	const char *p = write_file("t.conf", "[tokend]\nmax-clients = 0\n");
	struct config *c = NULL;

	/* Nowhere to put the messages, but the failure is still reported. */
	ck_assert_int_eq(config_load(p, NULL, true, &c, NULL), -EINVAL);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_many_errors)
{
	const char *p = write_file("t.conf", "[tokend]\n"	 /* 1 */
					     "max-clients = 0\n" /* 2 */
					     "nokey\n"		 /* 3 */
					     "retry-max = 5x\n"	 /* 4 */
					     "[nope]\n"		 /* 5 */
					     "x = 1\n"		 /* 6 */
					     "[tokens]\n"	 /* 7 */
					     "a/b = ::1\n"	 /* 8 */
					     "veth0 = 1::5\n"	 /* 9 */
					     "veth1 = ::1\n"	 /* 10 */
					     "[tokend\n"	 /* 11 */
					     "veth2 = ::\n");	 /* 12 */
	struct config_errors e = {0};
	struct config *c = NULL;

	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	if (e.n != 8)
		dump_errors(&e);
	ck_assert_uint_eq(e.n, 8);
	assert_error(&e, 0, p, 2, "invalid max-clients \"0\"");
	assert_error(&e, 1, p, 3, "expected 'key = value'");
	assert_error(&e, 2, p, 4, "invalid duration \"5x\" for retry-max");
	assert_error(&e, 3, p, 5, "unknown section [nope]");
	assert_error(&e, 4, p, 8, "invalid interface name \"a/b\"");
	assert_error(&e, 5, p, 9, "invalid token \"1::5\" for veth0");
	assert_error(&e, 6, p, 11, "unterminated section header");
	/* Still in [tokens]: libinih keeps the section after a broken header. */
	assert_error(&e, 7, p, 12, "invalid token \"::\" for veth2");
	config_errors_clear(&e);
}
END_TEST

static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_long_line)
{
	/* Line 3 holds 300 characters; had it been cut at the buffer size, its
	 * tail "max-clients=0" would have been parsed as a line of its own. */
	char *pad = repeat('x', 286), *text;
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *p;

	ck_assert_int_ge(asprintf(&text,
				  "[tokend]\n"
				  "max-clients = 5\n"
				  "#%smax-clients=0\n"
				  "nokey\n"
				  "max-clients = 7\n"
				  "bogus = 1\n",
				  pad),
			 0);
	p = write_file("t.conf", text);
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	if (e.n != 3)
		dump_errors(&e);
	ck_assert_uint_eq(e.n, 3);
	assert_error(&e, 0, p, 3, "line longer than 199 characters");
	assert_error(&e, 1, p, 4, "expected 'key = value'");
	assert_error(&e, 2, p, 6, "unknown key \"bogus\"");
	config_errors_clear(&e);
	free(text);
	free(pad);
}
END_TEST

START_TEST(test_long_line_limit)
{
	/* 199 characters fit libinih's 200-byte buffer, 200 do not; a CR
	 * before the newline does not count. */
	char *fits = repeat('#', 199), *too_long = repeat('#', 200), *text;
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *p;

	ck_assert_int_ge(
	    asprintf(&text, "%s\n%s\r\n[tokend]\nmax-clients = 2\n%s", fits, fits, fits), 0);
	c = load_ok(write_file("ok.conf", text));
	ck_assert_uint_eq(c->max_clients, 2);
	config_free(c);
	c = NULL;
	free(text);

	/* The last line, without a newline, is just as long. */
	ck_assert_int_ge(asprintf(&text, "[tokend]\nmax-clients = 2\n%s", too_long), 0);
	p = write_file("bad.conf", text);
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, p, 3, "line longer than 199 characters");
	config_errors_clear(&e);
	free(text);
	free(fits);
	free(too_long);
}
END_TEST

START_TEST(test_long_key_line_continuation)
{
	/* The continuation of a refused line belongs to it: it is neither
	 * appended to an earlier key nor reported again. */
	char *pad = repeat('a', 250), *text;
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *p;

	ck_assert_int_ge(asprintf(&text,
				  "[global]\n"
				  "match = eth*\n"
				  "match = %s\n"
				  "  b*\n"
				  "max-clients = 1\n",
				  pad),
			 0);
	p = write_file("t.conf", text);
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	if (e.n != 2)
		dump_errors(&e);
	ck_assert_uint_eq(e.n, 2);
	assert_error(&e, 0, p, 3, "line longer than");
	assert_error(&e, 1, p, 5, "unknown key \"max-clients\" in section [global]");
	config_errors_clear(&e);
	free(text);
	free(pad);
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char text[] = "[tokend]\nmax-clients = 3\0 x\nbogus = 1\n";
	const char *p = write_file_n("t.conf", text, sizeof(text) - 1);
	struct config_errors e = {0};
	struct config *c = NULL;

	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 2);
	assert_error(&e, 0, p, 2, "NUL");
	assert_error(&e, 1, p, 3, "unknown key \"bogus\"");
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_duplicate_token_across_files)
{
	const char *main_conf =
	    write_file("t.conf", "[tokens]\nveth0 = ::1\n[global]\ntoken = ::9\n");
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *d;
	char want[512];

	make_dir("t.conf.d");
	d = write_file("t.conf.d/10-a.conf",
		       "# again\n[tokens]\nveth0 = ::2\n[global]\ntoken = ::9\n");
	ck_assert_int_eq(config_load(main_conf, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 2);
	snprintf(want, sizeof(want), "token for veth0 already declared at %s:2", main_conf);
	assert_error(&e, 0, d, 3, want);
	snprintf(want, sizeof(want), "global token already declared at %s:4", main_conf);
	assert_error(&e, 1, d, 5, want);
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_multiline_match)
{
	const char *p = write_file("t.conf", "[global]\n"
					     "match = eth*\n"
					     "  en* veth*\n"
					     "\twl?\n"
					     "; a comment does not end the value\n"
					     "  br-* ; inline comment\n"
					     "[tokend]\n"
					     "max-clients = 2\n");
	struct config *c = load_ok(p);
	static const char *const want[] = {"eth*", "en*", "veth*", "wl?", "br-*"};

	for (size_t i = 0; i < 5; i++)
		ck_assert_str_eq(c->match[i], want[i]);
	ck_assert_ptr_null(c->match[5]);
	ck_assert_uint_eq(c->max_clients, 2);
	config_free(c);

	/* All patterns on continuation lines. */
	c = load_ok(write_file("u.conf", "[global]\nmatch =\n    a*\n    b*\n"));
	ck_assert_str_eq(c->match[0], "a*");
	ck_assert_str_eq(c->match[1], "b*");
	ck_assert_ptr_null(c->match[2]);
	config_free(c);

	/* A second declaration replaces the first. */
	c = load_ok(write_file("v.conf", "[global]\nmatch = a* b*\nmatch = c*\n"));
	ck_assert_str_eq(c->match[0], "c*");
	ck_assert_ptr_null(c->match[1]);
	config_free(c);
}
END_TEST

START_TEST(test_bom_crlf)
{
	struct config *c = load_ok(write_file(
	    "t.conf", "\xEF\xBB\xBF[tokend]\r\nmax-clients = 7\r\n[tokens]\r\nx0 = ::3\r\n"));

	ck_assert_uint_eq(c->max_clients, 7);
	ck_assert_uint_eq(c->n_tokens, 1);
	ck_assert_str_eq(c->tokens[0].ifname, "x0");
	config_free(c);
}
END_TEST

START_TEST(test_unreadable)
{
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *p;

	/* A directory in place of the file. */
	make_dir("dir.conf");
	p = paths[n_paths - 1];
	ck_assert_int_eq(config_load(p, NULL, false, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, p, 0, "cannot read");
	config_errors_clear(&e);

	/* A file in place of the drop-in directory. */
	p = write_file("t.conf", "[tokend]\n");
	write_file("t.conf.d", "x");
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, paths[n_paths - 1], 0, "cannot read drop-in directory");
	config_errors_clear(&e);
}
END_TEST

static const struct duration_case {
	const char *text;
	int ret;
	uint64_t usec;
} duration_cases[] = {
    {"500ms", 0, 500000},
    {"2min", 0, 120000000},
    {"1h", 0, 3600000000},
    {"30", 0, 30000000},
    {"30s", 0, 30000000},
    {"1.5s", 0, 1500000},
    {"0.25", 0, 250000},
    {"1.5ms", 0, 1500},
    {"0.5h", 0, 1800000000},
    {"0", 0, 0},
    {"007s", 0, 7000000},
    {"5x", -EINVAL, 0},
    {"", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"ms", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"+1", -EINVAL, 0},
    {" 1", -EINVAL, 0},
    {"1 s", -EINVAL, 0},
    {"1.", -EINVAL, 0},
    {".5", -EINVAL, 0},
    {"1.5.5", -EINVAL, 0},
    {"1m", -EINVAL, 0},
    {"1sec", -EINVAL, 0},
    {"1S", -EINVAL, 0},
    {"99999999999999999999", -EINVAL, 0},
    {"5124095576h", 0, UINT64_C(18446744073600000000)},
    {"5124095577h", -EINVAL, 0}, /* over 2^64 microseconds */
    {"18446744073709.551615s", 0, UINT64_MAX},
    {"18446744073709.551616s", -EINVAL, 0},
};

START_TEST(test_duration)
{
	const struct duration_case *t = &duration_cases[_i];
	uint64_t usec = 12345;

	ck_assert_msg(config_parse_duration(t->text, &usec) == t->ret, "\"%s\"", t->text);
	ck_assert_uint_eq(usec, t->ret == 0 ? t->usec : 12345);
}
END_TEST

/* A secret file as tokend accepts it: 0600, ours. */
static const char *write_secret(const char *name)
{
	const char *p = write_file(name, "000102030405060708090a0b0c0d0e0f"
					 "101112131415161718191a1b1c1d1e1f\n");

	ck_assert_int_eq(chmod(p, 0600), 0);
	return p;
}

static const char *sa_conf(const char *key_path, const char *extra)
{
	static char text[2048];

	snprintf(text, sizeof(text),
		 "[sa web]\nnumber = 7\nlocal = 192.0.2.1\nremote = 192.0.2.2\nsecret = %s\n%s",
		 key_path, extra);
	return write_file("sa.conf", text);
}

/* Thousands of entries: duplicates are still found (by a map, not by
 * comparing every pair), each named with the line that declared it first. */
START_TEST(test_many_entries_duplicates)
{
	const char *key = write_secret("many.key");
	enum { T = 4000, A = 1500 };
	size_t cap = (size_t)T * 40 + (size_t)A * 200 + 1024, len = 0;
	char *text = malloc(cap), want[512];
	struct config_errors e = {0};
	struct config *c = NULL;
	const char *p;

	ck_assert_ptr_nonnull(text);
	len += (size_t)snprintf(text + len, cap - len, "[tokens]\n");
	for (int i = 0; i < T; i++)
		len += (size_t)snprintf(text + len, cap - len, "tk%d = ::%x\n", i, i + 1);
	/* Line T + 2: tk1234 again. */
	len += (size_t)snprintf(text + len, cap - len, "tk1234 = ::1\n");
	for (int i = 0; i < A; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"[sa s%d]\nnumber = %d\nlocal = 192.0.2.1\n"
					"remote = 198.51.100.%d\nsecret = %s\n",
					i, i + 1, i % 250 + 1, key);
	/* Name s700 again, then number 900 again. */
	len += (size_t)snprintf(text + len, cap - len,
				"[sa s700]\nnumber = 60000\nlocal = 192.0.2.1\n"
				"remote = 198.51.100.1\nsecret = %s\n"
				"[sa other]\nnumber = 900\nlocal = 192.0.2.1\n"
				"remote = 198.51.100.1\nsecret = %s\n",
				key, key);
	p = write_file("many.conf", text);
	free(text);
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 3);
	snprintf(want, sizeof(want), "token for tk1234 already declared at %s:%d", p, 1234 + 2);
	assert_error(&e, 0, p, T + 2, want);
	snprintf(want, sizeof(want), "association s700 already declared at %s:%d", p,
		 T + 3 + 700 * 5);
	assert_error(&e, 1, p, T + 3 + A * 5, want);
	snprintf(want, sizeof(want),
		 "association other uses number 900, already used by s899 at %s:%d", p,
		 T + 3 + 899 * 5);
	assert_error(&e, 2, p, T + 3 + A * 5 + 5, want);
	config_errors_clear(&e);
}
END_TEST

START_TEST(test_sa_rotation_keys)
{
	const char *k1 = write_secret("k1"), *k2 = write_secret("k2");
	char extra[512];
	struct config *c;

	snprintf(extra, sizeof(extra),
		 "lifetime = 1h\nepoch = 1767225600\noverlap = 90s\n"
		 "schedule = from 900000 secret %s algorithm aes-gcm-256\n"
		 "schedule = from 900010 lifetime 1800\n",
		 k2);
	c = load_ok(sa_conf(k1, extra));
	ck_assert_uint_eq(c->n_assocs, 1);
	ck_assert_uint_eq(c->assocs[0].lifetime_sec, 3600);
	ck_assert_int_eq(c->assocs[0].epoch, 1767225600);
	ck_assert_uint_eq(c->assocs[0].overlap_ms, 90000);
	ck_assert_uint_eq(c->assocs[0].n_sched, 2);
	ck_assert_uint_eq(c->assocs[0].sched[0].from, 900000);
	ck_assert_str_eq(c->assocs[0].sched[0].secret_path, k2);
	ck_assert(c->assocs[0].sched[0].has_algorithm && !c->assocs[0].sched[0].has_lifetime);
	ck_assert_uint_eq(c->assocs[0].sched[1].lifetime_sec, 1800);
	config_free(c);
}
END_TEST

/* Each bad rotation setting is one error at its own line. */
START_TEST(test_sa_rotation_errors)
{
	static const struct {
		const char *extra;
		unsigned line;
		const char *message;
	} cases[] = {
	    {"lifetime = 1s\n", 6, "invalid lifetime"},
	    {"lifetime = 2500ms\n", 6, "whole seconds"},
	    {"lifetime = 20s\noverlap = 20s\n", 1, "overlap must be at least 100ms and shorter"},
	    {"overlap = 50ms\n", 6, "at least 100ms"},
	    {"overlap = 2s\n", 1, "overlap needs a lifetime"},
	    {"epoch = -5\n", 6, "epoch"},
	    {"lifetime = 10s\nschedule = from 5\n", 7, "invalid schedule"},
	    {"lifetime = 10s\nschedule = from 9 algorithm des\n", 7, "unknown algorithm"},
	    {"lifetime = 10s\nschedule = from 9 lifetime 20\nschedule = from 8 lifetime 30\n", 8,
	     "ascending order"},
	    {"schedule = from 9 lifetime 20\n", 1, "only of an association that has one"},
	    {"lifetime = 10s\nschedule = from 9 secret /nonexistent/tokend-key\n", 1,
	     "/nonexistent/tokend-key"},
	};
	const char *k1 = write_secret("k1");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_errors e = {0};
		struct config *c = NULL;
		const char *p = sa_conf(k1, cases[i].extra);

		ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
		if (e.n != 1)
			dump_errors(&e);
		ck_assert_uint_eq(e.n, 1);
		assert_error(&e, 0, p, cases[i].line, cases[i].message);
		config_errors_clear(&e);
	}
}
END_TEST

/* A secret whose generations have all passed by the clock may be gone:
 * the old master secret can be deleted after a scheduled change. */
START_TEST(test_sa_retired_secret_may_be_missing)
{
	const char *k2 = write_secret("k2");
	char extra[512];
	struct config *c;
	struct config_errors e = {0};

	/* Epoch 0, 10 s periods: the clock is far past generation 5. */
	snprintf(extra, sizeof(extra), "lifetime = 10s\nschedule = from 5 secret %s\n", k2);
	c = load_ok(sa_conf("/nonexistent/old-key", extra));
	config_free(c);
	/* The same change still to come: the old secret is needed. */
	snprintf(extra, sizeof(extra),
		 "lifetime = 10s\nschedule = from 281474976710000 secret %s\n", k2);
	c = NULL;
	ck_assert_int_eq(config_load(sa_conf("/nonexistent/old-key", extra), NULL, true, &c, &e),
			 -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_ptr_nonnull(strstr(e.v[0].message, "/nonexistent/old-key"));
	config_errors_clear(&e);
}
END_TEST

/* An association name with control or non-ASCII bytes is refused at its
 * header, quoted: it would go raw into every message about the section
 * (an escape sequence or a carriage return into the journal). Found by
 * tests/fuzz/fuzz_config. */
START_TEST(test_sa_name_quoted)
{
	const char *k = write_secret("k");
	struct config_errors e = {0};
	struct config *c = NULL;
	char text[512];
	const char *p;

	snprintf(text, sizeof(text),
		 "[sa a\x1b[2Jb\rc\xe4]\nnumber = 7\nlocal = 192.0.2.1\nremote = 192.0.2.2\n"
		 "secret = %s\nfoo = 1\n",
		 k);
	p = write_file("t.conf", text);
	ck_assert_int_eq(config_load(p, NULL, true, &c, &e), -EINVAL);
	if (e.n != 1)
		dump_errors(&e);
	ck_assert_uint_eq(e.n, 1);
	assert_error(&e, 0, p, 1, "invalid association name \"a\\x1b[2Jb\\x0dc\\xe4\"");
	for (const char *m = e.v[0].message; *m; m++)
		ck_assert(*m >= 0x20 && *m < 0x7f);
	config_errors_clear(&e);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_missing_optional);
	tcase_add_test(tc, test_missing_required);
	tcase_add_test(tc, test_missing_main_with_dropin);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_dropin_order);
	tcase_add_loop_test(tc, test_error_case, 0,
			    (int)(sizeof(error_cases) / sizeof(error_cases[0])));
	tcase_add_test(tc, test_error_names_value);
	tcase_add_test(tc, test_errors_without_list);
	tcase_add_test(tc, test_many_errors);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_long_line_limit);
	tcase_add_test(tc, test_long_key_line_continuation);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_duplicate_token_across_files);
	tcase_add_test(tc, test_multiline_match);
	tcase_add_test(tc, test_bom_crlf);
	tcase_add_test(tc, test_unreadable);
	tcase_add_test(tc, test_sa_rotation_keys);
	tcase_add_test(tc, test_many_entries_duplicates);
	tcase_add_test(tc, test_sa_rotation_errors);
	tcase_add_test(tc, test_sa_retired_secret_may_be_missing);
	tcase_add_test(tc, test_sa_name_quoted);
	tcase_add_loop_test(tc, test_duration, 0,
			    (int)(sizeof(duration_cases) / sizeof(duration_cases[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
