/* SPDX-License-Identifier: MIT */
/* The config parser (daemon/config.c, on libinih) on real files: the input
 * is the main file and up to four drop-ins, written to a private directory
 * and read by config_load as the daemon reads /etc/tokend/tokend.conf and
 * tokend.conf.d/. A config that loads is then given to a token manager and
 * an association manager, as the daemon does at start and on reload.
 *
 * Input: the files separated by lines "---" ("\n---\n"): the main file,
 * then 10.conf, 20.conf, 30.conf, 40.conf in the drop-in directory. An
 * empty main file part means no main file (config_load with must_exist
 * false, as for the default path). Secrets: "secret = credential:k" names a
 * valid one ($CREDENTIALS_DIRECTORY is set to a directory holding it).
 *
 * Oracles: config_load returns 0 with no error, or -EINVAL with at least
 * one; every error names a file and a line within it and is one printable
 * line (text from the files is quoted, secret file names too); a loaded
 * config keeps every promise
 * of config.h (ranges, defaults, sorted unique tokens, valid associations
 * with unique names and numbers). */
#include <arpa/inet.h>
#include <json-c/json.h>

#include "addr.h"
#include "assoc.h"
#include "config.h"
#include "fuzz_util.h"
#include "tokens.h"

#define SEP	    "\n---\n"
#define MAX_DROPINS 4

static char main_path[256], dropin_dir[256];

/* One file of the input, and its number of lines (for checking the line
 * numbers of errors). */
struct part {
	const char *p;
	size_t len;
	unsigned lines;
};

static unsigned count_lines(const char *p, size_t len)
{
	const char *end = p + len, *nl;
	unsigned n = 0;

	/* memchr: a byte loop here would cost more than the parser. */
	for (; p < end && (nl = memchr(p, '\n', (size_t)(end - p))); p = nl + 1)
		n++;
	return n + (p < end);
}

static void check_errors(const struct config_errors *errs, const struct part *parts, size_t n)
{
	for (size_t i = 0; i < errs->n; i++) {
		const struct config_error *e = &errs->v[i];
		unsigned max = 0;

		FUZZ_CHECK(e->file && e->message && *e->message, "error %zu without text", i);
		FUZZ_CHECK(fuzz_printable(e->message),
			   "error message is not one printable line: %s:%u: %s", e->file, e->line,
			   e->message);
		if (strcmp(e->file, main_path) == 0) {
			max = parts[0].lines;
		} else {
			for (size_t k = 1; k < n; k++) {
				char p[300];

				snprintf(p, sizeof(p), "%s/%zu0.conf", dropin_dir, k);
				if (strcmp(e->file, p) == 0)
					max = parts[k].lines;
			}
		}
		FUZZ_CHECK(e->line <= max || strcmp(e->file, dropin_dir) == 0,
			   "%s:%u is past the end (%u lines): %s", e->file, e->line, max,
			   e->message);
	}
}

static void check_config(const struct config *c)
{
	const char *why;

	FUZZ_CHECK(c->socket_path && c->socket_path[0] == '/' && strlen(c->socket_path) <= 91,
		   "socket path");
	FUZZ_CHECK(c->state_dir && c->state_dir[0] == '/', "state dir");
	FUZZ_CHECK(c->socket_group && *c->socket_group && c->admin_group && *c->admin_group,
		   "groups");
	FUZZ_CHECK(c->reconcile_interval_usec && c->retry_min_usec && c->retry_max_usec &&
		       c->contest_window_usec && c->client_timeout_usec &&
		       c->counter_interval_usec && c->dwell_usec,
		   "a zero duration");
	FUZZ_CHECK(c->retry_min_usec <= c->retry_max_usec, "retry-min > retry-max");
	FUZZ_CHECK(c->dwell_usec > c->counter_interval_usec, "dwell <= counter-interval");
	FUZZ_CHECK(c->contest_repairs >= 2 && c->contest_repairs <= 64, "contest-repairs %u",
		   c->contest_repairs);
	FUZZ_CHECK(c->max_clients >= 1 && c->max_clients <= 65536, "max-clients %u",
		   c->max_clients);
	FUZZ_CHECK(c->netlink_buffer >= 65536 && c->netlink_buffer <= (1u << 30), "netlink-buffer");
	FUZZ_CHECK(c->log_level >= 0 && c->log_level <= 7, "log level %d", c->log_level);
	FUZZ_CHECK(c->policy_priority >= 1, "policy-priority 0");
	FUZZ_CHECK(c->reqid_base <= 0xffffffffu - 65535, "reqid-base %u", c->reqid_base);
	FUZZ_CHECK(c->match && c->match[0], "empty match list");
	for (char **m = c->match; *m; m++)
		FUZZ_CHECK(**m && !strpbrk(*m, " \t\n"), "match pattern \"%s\"", *m);
	FUZZ_CHECK(c->files, "no file list");
	if (c->has_global) {
		FUZZ_CHECK(c->global.where && !addr_token_is_zero(&c->global.token), "global");
		for (int i = 0; i < 8; i++)
			FUZZ_CHECK(c->global.token.s6_addr[i] == 0, "global token upper bits");
	}
	for (size_t i = 0; i < c->n_tokens; i++) {
		const struct config_token *t = &c->tokens[i];

		FUZZ_CHECK(addr_ifname_valid(t->ifname, &why) == 0, "token for \"%s\"", t->ifname);
		FUZZ_CHECK(t->where && !addr_token_is_zero(&t->token), "token %zu", i);
		FUZZ_CHECK(i == 0 || strcmp(c->tokens[i - 1].ifname, t->ifname) < 0,
			   "tokens not sorted or repeated");
		FUZZ_CHECK(config_find_token(c, t->ifname) == t, "config_find_token(%s)",
			   t->ifname);
	}
	FUZZ_CHECK(!config_find_token(c, "") && !config_find_token(c, "no-such-if0"),
		   "config_find_token finds what is not there");
	for (size_t i = 0; i < c->n_assocs; i++) {
		const struct assoc_def *d = &c->assocs[i];

		FUZZ_CHECK(assoc_def_check(d, &why) == 0, "association %s: %s", d->name, why);
		FUZZ_CHECK(config_find_assoc(c, d->name) == d, "config_find_assoc(%s)", d->name);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c->assocs[j].name, d->name) != 0 &&
				       c->assocs[j].number != d->number,
				   "associations %zu and %zu share a name or number", j, i);
	}
}

/* The config in use, as the daemon puts it to use. */
static void use_config(const struct config *c)
{
	struct tokens_settings ts = {
	    .contest_repairs = c->contest_repairs,
	    .contest_window_usec = c->contest_window_usec,
	    .retry_min_usec = c->retry_min_usec,
	    .retry_max_usec = c->retry_max_usec,
	    .run_prefix = "/nonexistent/tokend-fuzz",
	};
	struct assocs_settings as = {
	    .reqid_base = c->reqid_base,
	    .policy_priority = c->policy_priority,
	    .counter_interval_usec = c->counter_interval_usec,
	    .dwell_usec = c->dwell_usec,
	};
	struct tokens *t = NULL;
	struct assocs *m = NULL;
	struct assoc_action *acts = NULL;
	json_object *o = NULL;
	char err[512];
	int n;

	FUZZ_CHECK(tokens_new(&ts, &t) == 0, "tokens_new");
	tokens_set_config(t, c);
	FUZZ_CHECK(tokens_list_json(t, NULL, &o) == 0, "tokens_list_json");
	json_object_put(o);
	tokens_free(t);

	if (c->n_assocs == 0)
		return;
	FUZZ_CHECK(assocs_new(&as, &m) == 0, "assocs_new");
	/* 2026-01-01: the clock of every rotating association is running. */
	assocs_set_wallclock(m, INT64_C(1767225600000));
	FUZZ_CHECK(assocs_check_redefine(m, c->assocs, c->n_assocs, err, sizeof(err)) == 0,
		   "assocs_check_redefine on a fresh manager: %s", err);
	FUZZ_CHECK(assocs_set_defs(m, c->assocs, c->n_assocs) == 0, "assocs_set_defs");
	assocs_resync_begin(m);
	assocs_resync_end(m);
	n = assocs_plan(m, 1000000000, true, &acts);
	FUZZ_CHECK(n >= 0, "assocs_plan %d", n);
	assoc_actions_free(acts, (size_t)n);
	assocs_plan_abandoned(m);
	FUZZ_CHECK(assocs_list_json(m, NULL, &o) == 0, "assocs_list_json");
	json_object_put(o);
	FUZZ_CHECK(assocs_count(m) == c->n_assocs, "assocs_count");
	assocs_free(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char creds[256], key[300];

	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	fuzz_path(main_path, sizeof(main_path), "tokend.conf");
	fuzz_path(dropin_dir, sizeof(dropin_dir), "tokend.conf.d");
	if (mkdir(dropin_dir, 0755) < 0 && errno != EEXIST)
		abort();
	fuzz_path(creds, sizeof(creds), "creds");
	if (mkdir(creds, 0700) < 0 && errno != EEXIST)
		abort();
	snprintf(key, sizeof(key), "%s/k", creds);
	fuzz_write_secret(key);
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct part parts[1 + MAX_DROPINS];
	struct config_errors errs = {0};
	struct config *c = NULL;
	const char *p = (const char *)data, *end = p + size;
	size_t n = 0;
	bool have_main;
	int r;

	if (size > 65536)
		return 0;
	/* Split at the separators. */
	while (n < 1 + MAX_DROPINS) {
		const char *s = memmem(p, (size_t)(end - p), SEP, strlen(SEP));

		if (!s || n == MAX_DROPINS) {
			parts[n++] = (struct part){p, (size_t)(end - p), 0};
			break;
		}
		parts[n++] = (struct part){p, (size_t)(s - p) + 1, 0}; /* keep its newline */
		p = s + strlen(SEP);
	}
	for (size_t k = 0; k < n; k++)
		parts[k].lines = count_lines(parts[k].p, parts[k].len);
	have_main = parts[0].len > 0;
	if (have_main)
		fuzz_write_file(main_path, parts[0].p, parts[0].len);
	else
		unlink(main_path);
	for (size_t k = 1; k <= MAX_DROPINS; k++) {
		char path[300];

		snprintf(path, sizeof(path), "%s/%zu0.conf", dropin_dir, k);
		if (k < n)
			fuzz_write_file(path, parts[k].p, parts[k].len);
		else
			unlink(path);
	}

	r = config_load(main_path, NULL, have_main, &c, &errs);
	FUZZ_CHECK(r == 0 || r == -EINVAL, "config_load: %d", r);
	FUZZ_CHECK((r == 0) == (errs.n == 0), "config_load %d with %zu errors", r, errs.n);
	check_errors(&errs, parts, n);
	if (r == 0) {
		FUZZ_CHECK(c, "no config");
		FUZZ_CHECK(!have_main || (c->files[0] && strcmp(c->files[0], main_path) == 0),
			   "the main file is not the first read");
		check_config(c);
		use_config(c);
	} else {
		FUZZ_CHECK(!c, "a config returned with errors");
	}
	config_free(c);
	config_errors_clear(&errs);
	return 0;
}
