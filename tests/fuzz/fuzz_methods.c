/* SPDX-License-Identifier: MIT */
/* The parameters of the control socket's methods, validated by the code the
 * daemon runs for them, as far as it runs without a daemon (no kernel, no
 * socket, no event loop):
 *   - the call itself: varlink_call_parse and varlink_method_split, as
 *     server.c's client_handle does;
 *   - SetToken, DeleteToken, FlushTokens, ResumeToken, ListTokens: the token
 *     and interface checks of daemon_set_token and check_change
 *     (addr_token_parse, addr_token_is_zero, addr_ifname_valid);
 *   - AddAssociation: assoc_def_from_json, then the definition in an
 *     association manager (set, planned, listed, rotated, released) as
 *     daemon_add_assoc leads to, with its clock checked;
 *   - ListAssociations, RotateAssociation, ReleaseAssociation,
 *     DeleteAssociation: their name against a manager holding one
 *     association;
 *   - the state file, which keeps runtime tokens and associations in the
 *     same JSON shape: store_load, then the state as the daemon uses it at
 *     start (tokens, definitions, generations, released numbers), and
 *     store_save and store_load again;
 *   - `schedule` lines: assoc_sched_parse.
 * Not reached: server.c's check_params and dispatch (static, and they
 * need a client with a socket) and the daemon_* functions (they need a
 * struct daemon, which only daemon_new makes, with netlink sockets and the
 * event loop). See tests/fuzz/README.md.
 *
 * Input: byte 0 picks the mode: 0-1 a Varlink call (the rest, one JSON
 * message), 2 a state file, 3 a schedule line (modulo 4).
 *
 * Oracles: the sanitizers; what is accepted keeps the promises of the
 * headers; a definition survives assoc_def_to_json and back unchanged; the
 * generation clock is monotonic and consistent with the start times it
 * gives; a state saved loads back the same; messages are printable. */
#include <arpa/inet.h>
#include <json-c/json.h>

#include "addr.h"
#include "assoc.h"
#include "fuzz_util.h"
#include "keys.h"
#include "store.h"
#include "tokens.h"
#include "varlink.h"

#define WALL_MS	 INT64_C(1767225600000)
#define NOW_USEC UINT64_C(1000000000)

static char secret_path[256], state_path[256], state_copy[256];

/* --- definitions ------------------------------------------------------------ */

static char *def_text(const struct assoc_def *d)
{
	json_object *o = assoc_def_to_json(d);
	char *s;

	FUZZ_CHECK(o, "assoc_def_to_json");
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	FUZZ_CHECK(s, "strdup");
	json_object_put(o);
	return s;
}

/* The generation clock: monotonic, and the generation the clock gives at t
 * is the one whose start is the last at or before t. */
static void check_clock(const struct assoc_def *d)
{
	const int64_t first = assoc_gen_start_ms(d, 0);
	int64_t ts[8];
	uint64_t prev = 0;
	size_t n = 0;

	if (!d->lifetime_sec) {
		FUZZ_CHECK(first == INT64_MIN && assoc_clock_gen(d, WALL_MS) == 0 &&
			       assoc_phase_ms(d) == 0 && assoc_overlap_ms(d) == 0,
			   "a clock without a lifetime");
		return;
	}
	FUZZ_CHECK(assoc_phase_ms(d) < d->lifetime_sec * 1000, "phase past the period");
	FUZZ_CHECK(assoc_overlap_ms(d) > 0 && assoc_overlap_ms(d) < d->lifetime_sec * 1000,
		   "overlap %llu", (unsigned long long)assoc_overlap_ms(d));
	FUZZ_CHECK(first >= 0, "generation 0 starts at %lld", (long long)first);
	/* Ascending times around the interesting points. */
	ts[n++] = first - 1;
	ts[n++] = first;
	ts[n++] = WALL_MS;
	for (size_t i = 0; i < d->n_sched && n < 7; i++)
		if (d->sched[i].has_lifetime)
			ts[n++] = assoc_gen_start_ms(d, d->sched[i].from);
	ts[n++] = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		uint64_t g;
		int64_t start, next;

		for (size_t j = i + 1; j < n; j++)
			if (ts[j] < ts[i]) {
				int64_t x = ts[i];
				ts[i] = ts[j];
				ts[j] = x;
			}
		g = assoc_clock_gen(d, ts[i]);
		FUZZ_CHECK(g >= prev, "the clock went back: %llu after %llu", (unsigned long long)g,
			   (unsigned long long)prev);
		prev = g;
		if (ts[i] < first) {
			FUZZ_CHECK(g == 0, "generation %llu before the first start",
				   (unsigned long long)g);
			continue;
		}
		start = assoc_gen_start_ms(d, g);
		next = g + 1 < g ? INT64_MAX : assoc_gen_start_ms(d, g + 1);
		FUZZ_CHECK(start <= ts[i] && (ts[i] < next || next == INT64_MAX),
			   "at %lld the clock says %llu, which runs from %lld to %lld",
			   (long long)ts[i], (unsigned long long)g, (long long)start,
			   (long long)next);
	}
	for (size_t i = 0; i < d->n_sched; i++) {
		uint64_t f = d->sched[i].from;

		if (d->sched[i].has_algorithm)
			FUZZ_CHECK(assoc_gen_algorithm(d, f) == d->sched[i].algorithm ||
				       (i + 1 < d->n_sched && d->sched[i + 1].from == f),
				   "schedule algorithm");
		(void)assoc_gen_secret(d, f - 1);
		(void)assoc_secret_retired(d, i + 1, f);
	}
}

/* The daemon's secrets are files: every path of a definition points at our
 * valid secret, so that keys can be derived. */
static void own_secrets(struct assoc_def *d)
{
	snprintf(d->secret_path, sizeof(d->secret_path), "%s", secret_path);
	for (size_t i = 0; i < d->n_sched; i++)
		if (d->sched[i].has_secret)
			snprintf(d->sched[i].secret_path, sizeof(d->sched[i].secret_path), "%s",
				 secret_path);
}

/* The definitions in a manager, as the daemon holds them; then the named
 * operations of the control socket on `name`. */
static void run_manager(const struct assoc_def *defs, size_t n, const char *name,
			const struct store_state *st)
{
	struct assocs_settings set = {
	    .reqid_base = 0x746b0000u,
	    .policy_priority = 0x2800,
	    .counter_interval_usec = 1000000,
	    .dwell_usec = 3000000,
	};
	struct assoc_action *acts = NULL;
	struct assocs *m = NULL;
	json_object *o = NULL;
	const char *why = NULL;
	char err[512];
	int r;

	FUZZ_CHECK(assocs_new(&set, &m) == 0, "assocs_new");
	assocs_set_wallclock(m, WALL_MS);
	r = assocs_check_redefine(m, defs, n, err, sizeof(err));
	FUZZ_CHECK(r == 0, "assocs_check_redefine on a fresh manager: %s", err);
	FUZZ_CHECK(assocs_set_defs(m, defs, n) == 0, "assocs_set_defs");
	if (st) {
		struct assoc_gen_record *g = calloc(st->n_generations + 1, sizeof(*g));

		FUZZ_CHECK(g, "calloc");
		for (size_t i = 0; i < st->n_generations; i++) {
			snprintf(g[i].name, sizeof(g[i].name), "%s", st->generations[i].name);
			g[i].out_gen = st->generations[i].out_gen;
			g[i].in_gen = st->generations[i].in_gen;
		}
		assocs_set_generations(m, g, st->n_generations);
		free(g);
		FUZZ_CHECK(assocs_set_released(m, st->released, st->n_released) == 0,
			   "assocs_set_released");
	}
	assocs_resync_begin(m);
	assocs_resync_end(m);
	r = assocs_plan(m, NOW_USEC, true, &acts);
	FUZZ_CHECK(r >= 0, "assocs_plan: %d", r);
	assoc_actions_free(acts, (size_t)r);
	assocs_plan_abandoned(m);
	if (assocs_need_save(m)) {
		struct assoc_gen_record *g = NULL;
		size_t ng = 0;

		FUZZ_CHECK(assocs_get_generations(m, &g, &ng) == 0, "assocs_get_generations");
		free(g);
		assocs_generations_saved(m);
	}
	r = assocs_list_json(m, name, &o);
	FUZZ_CHECK(r == 0 || (r == -ENOENT && name), "assocs_list_json: %d", r);
	json_object_put(o);
	if (name) {
		r = assocs_rotate(m, name, NOW_USEC, &why);
		FUZZ_CHECK(r <= 0, "assocs_rotate: %d", r);
		o = NULL;
		r = assocs_release(m, name, &o);
		FUZZ_CHECK(r == 0 || r == -ENOENT, "assocs_release: %d", r);
		json_object_put(o);
		r = assocs_plan(m, NOW_USEC, true, &acts);
		FUZZ_CHECK(r >= 0, "assocs_plan after release: %d", r);
		assoc_actions_free(acts, (size_t)r);
	}
	assocs_free(m);
}

/* AddAssociation's parameters (and a state file's runtime definitions). */
static void add_association(json_object *params)
{
	struct assoc_def d, back;
	const char *field = NULL, *why = NULL;
	char *t1, *t2;
	json_object *o;
	int r;

	r = assoc_def_from_json(params, &d, &field, &why);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && why && *why, "refusal %d without a reason", r);
		return;
	}
	FUZZ_CHECK(!field, "accepted, but field %s is named", field);
	FUZZ_CHECK(assoc_def_check(&d, &why) == 0, "accepted, yet assoc_def_check: %s", why);
	t1 = def_text(&d);
	o = assoc_def_to_json(&d);
	r = assoc_def_from_json(o, &back, &field, &why);
	FUZZ_CHECK(r == 0, "assoc_def_to_json gives what assoc_def_from_json refuses: %s%s%s: %s",
		   field ? field : "", field ? ": " : "", why, t1);
	json_object_put(o);
	t2 = def_text(&back);
	FUZZ_CHECK(strcmp(t1, t2) == 0, "definition changed on the way back:\n  %s\n  %s", t1, t2);
	free(t2);
	free(t1);
	check_clock(&d);
	own_secrets(&d);
	run_manager(&d, 1, d.name, NULL);
}

/* --- the calls ------------------------------------------------------------------ */

static const char *param_str(json_object *params, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(params, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* check_change and daemon_set_token, up to where they need the daemon. */
static void token_params(json_object *params, bool set)
{
	const char *ifname = param_str(params, "interface"), *text = param_str(params, "token");
	const char *why = NULL;
	struct in6_addr token;
	char buf[ADDR_TOKEN_STRLEN];

	if (ifname && addr_ifname_valid(ifname, &why) < 0)
		FUZZ_CHECK(why && *why, "interface refused without a reason");
	if (!set || !text)
		return;
	if (addr_token_parse(text, &token, &why) < 0) {
		FUZZ_CHECK(why && *why, "token refused without a reason");
		return;
	}
	if (addr_token_is_zero(&token))
		return;
	addr_format(&token, buf, sizeof(buf));
	FUZZ_CHECK(strlen(buf) < sizeof(buf), "addr_format");
}

static void name_params(json_object *params)
{
	static struct assoc_def web;
	static bool have;
	const char *name = param_str(params, "name");

	if (!have) {
		const char *why;

		assoc_def_init(&web);
		snprintf(web.name, sizeof(web.name), "web");
		web.number = 7;
		web.family = AF_INET;
		inet_pton(AF_INET, "192.0.2.1", &web.local);
		inet_pton(AF_INET, "192.0.2.2", &web.remote);
		web.local_net = web.local;
		web.remote_net = web.remote;
		web.local_plen = web.remote_plen = 32;
		web.lifetime_sec = 3600;
		snprintf(web.secret_path, sizeof(web.secret_path), "%s", secret_path);
		FUZZ_CHECK(assoc_def_check(&web, &why) == 0, "web: %s", why);
		have = true;
	}
	if (name)
		run_manager(&web, 1, name, NULL);
}

static void call(const char *text)
{
	struct varlink_call c;
	const char *why = NULL, *name = NULL;
	char iface[256];

	if (varlink_call_parse(text, &c, &why) < 0)
		return;
	if (varlink_method_split(c.method, iface, sizeof(iface), &name) < 0 ||
	    strcmp(iface, TOKEND_INTERFACE) != 0) {
		varlink_call_done(&c);
		return;
	}
	if (strcmp(name, "SetToken") == 0)
		token_params(c.parameters, true);
	else if (strcmp(name, "ListTokens") == 0 || strcmp(name, "DeleteToken") == 0 ||
		 strcmp(name, "FlushTokens") == 0 || strcmp(name, "ResumeToken") == 0)
		token_params(c.parameters, false);
	else if (strcmp(name, "AddAssociation") == 0)
		add_association(c.parameters);
	else if (strcmp(name, "ListAssociations") == 0 || strcmp(name, "DeleteAssociation") == 0 ||
		 strcmp(name, "RotateAssociation") == 0 || strcmp(name, "ReleaseAssociation") == 0)
		name_params(c.parameters);
	varlink_call_done(&c);
}

/* --- the state file ---------------------------------------------------------------- */

static void same_state(const struct store_state *a, const struct store_state *b)
{
	FUZZ_CHECK(a->n_tokens == b->n_tokens && a->n_owned == b->n_owned &&
		       a->n_generations == b->n_generations && a->n_released == b->n_released &&
		       a->n_assocs == b->n_assocs,
		   "saved state loads back with other counts");
	FUZZ_CHECK(!a->n_tokens ||
		       memcmp(a->tokens, b->tokens, a->n_tokens * sizeof(*a->tokens)) == 0,
		   "tokens differ");
	FUZZ_CHECK(!a->n_owned || memcmp(a->owned, b->owned, a->n_owned * sizeof(*a->owned)) == 0,
		   "owned differ");
	for (size_t i = 0; i < a->n_generations; i++)
		FUZZ_CHECK(strcmp(a->generations[i].name, b->generations[i].name) == 0 &&
			       a->generations[i].out_gen == b->generations[i].out_gen &&
			       a->generations[i].in_gen == b->generations[i].in_gen,
			   "generation %zu differs", i);
	FUZZ_CHECK(!a->n_released ||
		       memcmp(a->released, b->released, a->n_released * sizeof(*a->released)) == 0,
		   "released differ");
	for (size_t i = 0; i < a->n_assocs; i++) {
		char *x = def_text(&a->assocs[i]), *y = def_text(&b->assocs[i]);

		FUZZ_CHECK(strcmp(x, y) == 0, "association %zu differs:\n  %s\n  %s", i, x, y);
		free(x);
		free(y);
	}
}

static void state_file(const uint8_t *data, size_t size)
{
	struct tokens_settings ts = {
	    .contest_repairs = 5,
	    .contest_window_usec = 30000000,
	    .retry_min_usec = 1000000,
	    .retry_max_usec = 60000000,
	    .run_prefix = "/nonexistent/tokend-fuzz",
	};
	struct store_state st = {0}, again = {0};
	struct tokens *t = NULL;
	struct tokens_action *acts = NULL;
	json_object *o = NULL;
	char *err = NULL;
	const char *why;
	int r;

	fuzz_write_file(state_path, data, size);
	r = store_load(state_path, &st, &err);
	if (r < 0) {
		FUZZ_CHECK(err && *err, "store_load %d without a message", r);
		FUZZ_CHECK(fuzz_printable(err), "store_load message not printable: %s", err);
		free(err);
		return;
	}
	FUZZ_CHECK(!err, "an error message with success");
	for (size_t i = 0; i < st.n_tokens; i++)
		FUZZ_CHECK(!st.tokens[i].ifname[0] ||
			       addr_ifname_valid(st.tokens[i].ifname, &why) == 0,
			   "runtime token for an invalid name");
	for (size_t i = 0; i < st.n_released; i++)
		FUZZ_CHECK(st.released[i] >= 1 && st.released[i] <= 65535, "released number");
	for (size_t i = 0; i < st.n_assocs; i++)
		FUZZ_CHECK(assoc_def_check(&st.assocs[i], &why) == 0, "runtime association: %s",
			   why);

	/* Written as the daemon writes it, and read back. */
	store_state_sort(&st);
	r = store_save(state_copy, &st, &err);
	FUZZ_CHECK(r == 0, "store_save: %s", err ? err : "?");
	r = store_load(state_copy, &again, &err);
	FUZZ_CHECK(r == 0, "own state file does not load: %s", err ? err : "?");
	same_state(&st, &again);
	store_state_free(&again);

	/* At start: definitions and generations to the association manager,
	 * the rest to the token manager (which takes the state over). */
	if (st.n_assocs > 0) {
		struct assoc_def *defs = calloc(st.n_assocs, sizeof(*defs));
		size_t n = 0;

		FUZZ_CHECK(defs, "calloc");
		for (size_t i = 0; i < st.n_assocs; i++) {
			bool clash = false;

			/* Names and numbers are unique, as the daemon keeps them. */
			for (size_t j = 0; j < n; j++)
				clash |= strcmp(defs[j].name, st.assocs[i].name) == 0 ||
					 defs[j].number == st.assocs[i].number;
			if (clash)
				continue;
			defs[n] = st.assocs[i];
			own_secrets(&defs[n]);
			n++;
		}
		run_manager(defs, n, NULL, &st);
		free(defs);
	}
	FUZZ_CHECK(tokens_new(&ts, &t) == 0, "tokens_new");
	tokens_set_state(t, &st);
	r = tokens_plan(t, NOW_USEC, true, &acts);
	FUZZ_CHECK(r >= 0, "tokens_plan: %d", r);
	free(acts);
	FUZZ_CHECK(tokens_list_json(t, NULL, &o) == 0, "tokens_list_json");
	json_object_put(o);
	tokens_free(t);
	store_state_free(&st);
}

/* --- schedule lines --------------------------------------------------------------- */

static void schedule_line(const char *s)
{
	struct assoc_sched sc, back;
	const char *why = NULL;
	char text[512];
	int r;

	r = assoc_sched_parse(s, &sc, &why);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && why && *why, "refusal without a reason");
		return;
	}
	FUZZ_CHECK(sc.from >= 1 && sc.from < ASSOC_GEN_MAX, "from %llu",
		   (unsigned long long)sc.from);
	FUZZ_CHECK(sc.has_secret || sc.has_algorithm || sc.has_lifetime, "an empty line");
	FUZZ_CHECK(!sc.has_secret || (sc.secret_path[0] == '/' &&
				      memchr(sc.secret_path, '\0', sizeof(sc.secret_path))),
		   "secret path");
	FUZZ_CHECK(!sc.has_algorithm || keys_algorithm_by_id(sc.algorithm), "algorithm");
	FUZZ_CHECK(!sc.has_lifetime || (sc.lifetime_sec >= ASSOC_LIFETIME_MIN &&
					sc.lifetime_sec <= ASSOC_LIFETIME_MAX),
		   "lifetime");
	/* The canonical spelling parses to the same line (a secret path with
	 * blanks cannot be written back: the parser splits at them). */
	if (sc.has_secret && strpbrk(sc.secret_path, " \t"))
		return;
	snprintf(text, sizeof(text), "from %llu", (unsigned long long)sc.from);
	if (sc.has_secret)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), " secret %s",
			 sc.secret_path);
	if (sc.has_algorithm)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), " algorithm %s",
			 keys_algorithm_by_id(sc.algorithm)->name);
	if (sc.has_lifetime)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), " lifetime %llu",
			 (unsigned long long)sc.lifetime_sec);
	r = assoc_sched_parse(text, &back, &why);
	FUZZ_CHECK(r == 0, "\"%s\" does not parse: %s", text, why);
	FUZZ_CHECK(back.from == sc.from && back.has_secret == sc.has_secret &&
		       back.has_algorithm == sc.has_algorithm &&
		       back.has_lifetime == sc.has_lifetime &&
		       strcmp(back.secret_path, sc.secret_path) == 0 &&
		       (!sc.has_algorithm || back.algorithm == sc.algorithm) &&
		       back.lifetime_sec == sc.lifetime_sec,
		   "\"%s\" parses differently", text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	fuzz_path(secret_path, sizeof(secret_path), "web.key");
	fuzz_write_secret(secret_path);
	fuzz_path(state_path, sizeof(state_path), "state.json");
	fuzz_path(state_copy, sizeof(state_copy), "state-copy.json");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1 || size > 256 * 1024)
		return 0;
	switch (data[0] & 3) {
	case 2:
		state_file(data + 1, size - 1);
		return 0;
	case 3:
		s = fuzz_strndup(data + 1, size - 1);
		schedule_line(s);
		free(s);
		return 0;
	default:
		s = fuzz_strndup(data + 1, size - 1);
		call(s);
		free(s);
		return 0;
	}
}
