/* SPDX-License-Identifier: MIT */
/* tokenctl: the command-line client of tokend. It speaks the Varlink protocol
 * of docs/protocol.md; its verbs follow `ip token`. */
#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <math.h> /* isfinite() is a macro: no libm */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "varlink.h"

#define DEFAULT_SOCKET	   TOKEND_RUNSTATEDIR "/tokend/tokend.sock"
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_SEC	   86400.0

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,	/* the daemon said no, or could not be asked */
	EXIT_USAGE = 2, /* the command line is wrong */
};

enum action {
	ACTION_RUN,
	ACTION_HELP,
	ACTION_VERSION,
};

enum {
	ARG_TOKEN = 1 << 0, /* takes a TOKEN */
	ARG_DEV = 1 << 1,   /* takes [dev IFACE] */
};

struct request;
typedef int (*print_fn)(const struct request *req, json_object *params);

struct verb {
	const char *name;
	const char *method; /* NULL: handled locally (help) */
	unsigned args;
	print_fn print; /* human output of a successful reply */
};

struct options {
	const char *socket;
	int timeout_ms;
	bool json;
	enum action action;
};

struct request {
	const struct verb *verb;
	const char *token_text;	       /* as typed */
	char token[ADDR_TOKEN_STRLEN]; /* canonical */
	const char *ifname;	       /* NULL: the global token, or every entry */
};

static int print_add(const struct request *req, json_object *params);
static int print_nothing(const struct request *req, json_object *params);
static int print_show(const struct request *req, json_object *params);
static int print_flush(const struct request *req, json_object *params);
static int print_resume(const struct request *req, json_object *params);
static int print_status(const struct request *req, json_object *params);

/* Aliases are rows of their own, so messages use the word that was typed. */
static const struct verb verbs[] = {
	{"show", "io.tokend.ListTokens", ARG_DEV, print_show},
	{"get", "io.tokend.ListTokens", ARG_DEV, print_show},
	{"list", "io.tokend.ListTokens", ARG_DEV, print_show},
	{"ls", "io.tokend.ListTokens", ARG_DEV, print_show},
	{"add", "io.tokend.SetToken", ARG_TOKEN | ARG_DEV, print_add},
	{"set", "io.tokend.SetToken", ARG_TOKEN | ARG_DEV, print_add},
	{"delete", "io.tokend.DeleteToken", ARG_DEV, print_nothing},
	{"del", "io.tokend.DeleteToken", ARG_DEV, print_nothing},
	{"flush", "io.tokend.FlushTokens", ARG_DEV, print_flush},
	{"resume", "io.tokend.ResumeToken", ARG_DEV, print_resume},
	{"status", "io.tokend.GetStatus", 0, print_status},
	{"help", NULL, 0, NULL},
};

static bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* ---- Output helpers ---------------------------------------------------- */

/* Text from the daemon or the command line is printed with control and
 * non-ASCII bytes escaped: it must not move the cursor or break a line that
 * scripts grep. */
static void put_safe(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f)
			fputc(*p, f);
		else
			fprintf(f, "\\x%02x", *p);
	}
}

static void __attribute__((format(printf, 1, 0))) vfail(const char *fmt, va_list ap)
{
	char *msg = NULL;

	fputs("tokenctl: ", stderr);
	if (vasprintf(&msg, fmt, ap) < 0)
		fputs("out of memory", stderr);
	else
		put_safe(stderr, msg);
	fputc('\n', stderr);
	free(msg);
}

/* "tokenctl: MESSAGE" on stderr, escaped as a whole: the arguments may come
 * from the command line or the daemon. */
static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
}

/* A usage error: one line saying what is wrong, one pointing to help. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	fputs("Run 'tokenctl help' for usage.\n", stderr);
	return -EINVAL;
}

static int malformed(const char *what)
{
	fail("malformed reply from tokend: %s", what);
	return -EBADMSG;
}

static int out_of_memory(void)
{
	fail("out of memory");
	return -ENOMEM;
}

static void print_usage(void)
{
	fputs("Usage: tokenctl [OPTIONS] COMMAND [ARGUMENTS]\n"
	      "\n"
	      "Commands:\n"
	      "  show [dev IFACE]       list the tokens tokend holds (the default;\n"
	      "                         also get, list, ls)\n"
	      "  add TOKEN [dev IFACE]  set IFACE's token, or the global token (also set)\n"
	      "  delete [dev IFACE]     delete IFACE's runtime token, or the global one\n"
	      "                         (also del)\n"
	      "  flush [dev IFACE]      delete every runtime token, or IFACE's\n"
	      "  resume [dev IFACE]     repair contested tokens again\n"
	      "  status                 show tokend's status\n"
	      "  help                   show this help\n"
	      "\n"
	      "TOKEN is an IPv6 interface identifier such as ::1a:2b:3c:4d, optionally\n"
	      "followed by /64. 'dev' may also be written 'device'.\n"
	      "\n"
	      "Options:\n"
	      "  --socket PATH    tokend's socket (default: $TOKEND_SOCKET, else\n"
	      "                   " DEFAULT_SOCKET ")\n"
	      "  -j, --json       print the reply's parameters as JSON; a daemon error\n"
	      "                   is printed as {\"error\": ..., \"parameters\": ...}\n"
	      "  --timeout SEC    give up after SEC seconds (default 10)\n"
	      "  -h, --help       show this help\n"
	      "  --version        show the version\n"
	      "\n"
	      "Exit status: 0 success, 1 error from tokend or tokend unreachable,\n"
	      "2 bad usage.\n",
	      stdout);
}

/* ---- Command line ------------------------------------------------------ */

static int parse_timeout(const char *text, int *ret_ms)
{
	double sec, ms;
	char *end;

	errno = 0;
	sec = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !isfinite(sec) || sec <= 0 ||
	    sec > MAX_TIMEOUT_SEC)
		return usage_error("invalid timeout \"%s\": expected seconds, more than 0 "
				   "and at most %.0f",
				   text, MAX_TIMEOUT_SEC);
	/* Round up, so that a tiny timeout is not 0 ms. */
	ms = sec * 1000;
	*ret_ms = (int)ms;
	if (*ret_ms < ms)
		++*ret_ms;
	return 0;
}

/* The value of an option given as "--name=VALUE" or "--name VALUE". */
static int option_value(int argc, char **argv, int *i, const char *name, const char **ret)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (a[n] == '=') {
		*ret = a + n + 1;
	} else if (*i + 1 < argc) {
		*ret = argv[++*i];
	} else {
		return usage_error("option %s needs a value", name);
	}
	return 0;
}

static bool is_option(const char *a, const char *name)
{
	size_t n = strlen(name);

	return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

/* Parse the option at argv[*i], advancing *i past its value. */
static int parse_option(int argc, char **argv, int *i, struct options *o)
{
	const char *a = argv[*i], *v = NULL;
	int r;

	if (streq(a, "-h") || streq(a, "--help")) {
		o->action = ACTION_HELP;
	} else if (streq(a, "--version")) {
		o->action = ACTION_VERSION;
	} else if (streq(a, "-j") || streq(a, "--json")) {
		o->json = true;
	} else if (is_option(a, "--socket")) {
		r = option_value(argc, argv, i, "--socket", &v);
		if (r < 0)
			return r;
		if (!*v)
			return usage_error("--socket needs a path");
		o->socket = v;
	} else if (is_option(a, "--timeout")) {
		r = option_value(argc, argv, i, "--timeout", &v);
		if (r < 0)
			return r;
		return parse_timeout(v, &o->timeout_ms);
	} else {
		return usage_error("unknown option \"%s\"", a);
	}
	return 0;
}

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (streq(verbs[i].name, name))
			return &verbs[i];
	return NULL;
}

static int take_dev(int argc, char **argv, int *i, struct request *req)
{
	const char *kw = argv[*i];

	if (!(req->verb->args & ARG_DEV))
		return usage_error("%s takes no \"%s\"", req->verb->name, kw);
	if (req->ifname)
		return usage_error("\"%s\" given twice", kw);
	if (*i + 1 >= argc)
		return usage_error("\"%s\" needs an interface name", kw);
	req->ifname = argv[++*i];
	return 0;
}

/* The verb's arguments, in any order as `ip` takes them; options may be
 * mixed in, except right after "dev" (an interface may be called "-x"). */
static int parse_verb_args(int argc, char **argv, int i, struct options *o, struct request *req)
{
	bool options_done = false;
	int r;

	for (; i < argc; i++) {
		const char *a = argv[i];

		if (!options_done && streq(a, "--")) {
			options_done = true;
			continue;
		}
		if (!options_done && a[0] == '-' && a[1] != '\0') {
			r = parse_option(argc, argv, &i, o);
		} else if (streq(a, "dev") || streq(a, "device")) {
			r = take_dev(argc, argv, &i, req);
		} else if ((req->verb->args & ARG_TOKEN) && !req->token_text) {
			req->token_text = a;
			r = 0;
		} else {
			r = usage_error("unexpected argument \"%s\" for %s", a, req->verb->name);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Syntax checks, so that nothing malformed is ever sent. */
static int check_request(struct request *req)
{
	struct in6_addr token;
	const char *why = NULL;

	if ((req->verb->args & ARG_TOKEN) && !req->token_text)
		return usage_error("%s needs a TOKEN", req->verb->name);
	if (req->token_text) {
		if (addr_token_parse(req->token_text, &token, &why) < 0)
			return usage_error("invalid token \"%s\": %s", req->token_text, why);
		addr_format(&token, req->token, sizeof(req->token));
	}
	if (req->ifname && addr_ifname_valid(req->ifname, &why) < 0)
		return usage_error("invalid interface name \"%s\": %s", req->ifname, why);
	return 0;
}

static int parse_cmdline(int argc, char **argv, struct options *o, struct request *req)
{
	const char *env = getenv("TOKEND_SOCKET");
	const char *name = "show";
	int i = 1, r;

	*o = (struct options){.socket = env && *env ? env : DEFAULT_SOCKET,
			      .timeout_ms = DEFAULT_TIMEOUT_MS};
	*req = (struct request){0};
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		if (streq(argv[i], "--")) {
			i++;
			break;
		}
		r = parse_option(argc, argv, &i, o);
		if (r < 0)
			return r;
	}
	if (o->action != ACTION_RUN)
		return 0;
	if (i < argc)
		name = argv[i++];
	req->verb = find_verb(name);
	if (!req->verb)
		return usage_error("unknown command \"%s\"", name);
	if (!req->verb->method) {
		o->action = ACTION_HELP;
		return 0;
	}
	r = parse_verb_args(argc, argv, i, o, req);
	if (r < 0 || o->action != ACTION_RUN)
		return r;
	return check_request(req);
}

/* ---- Reply access ------------------------------------------------------ */

/* A member of the given type; NULL when absent, null or of another type. */
static json_object *get_typed(json_object *o, const char *key, json_type type)
{
	json_object *v;

	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v = get_typed(o, key, json_type_string);

	return v ? json_object_get_string(v) : NULL;
}

static bool has_member(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null);
}

/* ---- Table ------------------------------------------------------------- */

#define TABLE_COLS 5

/* Rows of malloc'd cells, printed with each column as wide as its widest
 * cell; the last column is not padded, so lines have no trailing blanks. */
struct table {
	char *(*rows)[TABLE_COLS];
	size_t n;
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		for (size_t c = 0; c < TABLE_COLS; c++)
			free(t->rows[i][c]);
	free(t->rows);
	*t = (struct table){0};
}

/* Takes the cells, also on failure. */
static int table_add(struct table *t, char *cells[TABLE_COLS])
{
	char *(*rows)[TABLE_COLS] = reallocarray(t->rows, t->n + 1, sizeof(*rows));
	bool ok = rows != NULL;

	for (size_t c = 0; c < TABLE_COLS; c++)
		ok = ok && cells[c];
	if (rows)
		t->rows = rows;
	if (!ok) {
		for (size_t c = 0; c < TABLE_COLS; c++)
			free(cells[c]);
		return -ENOMEM;
	}
	memcpy(t->rows[t->n++], cells, sizeof(t->rows[0]));
	return 0;
}

static void table_print(const struct table *t, FILE *f)
{
	size_t width[TABLE_COLS] = {0};

	for (size_t i = 0; i < t->n; i++)
		for (size_t c = 0; c < TABLE_COLS; c++)
			if (strlen(t->rows[i][c]) > width[c])
				width[c] = strlen(t->rows[i][c]);
	for (size_t i = 0; i < t->n; i++) {
		for (size_t c = 0; c + 1 < TABLE_COLS; c++)
			fprintf(f, "%-*s  ", (int)width[c], t->rows[i][c]);
		fprintf(f, "%s\n", t->rows[i][TABLE_COLS - 1]);
	}
}

/* ---- Cell text --------------------------------------------------------- */

/* A malloc'd copy with put_safe()'s escaping; "-" for NULL or "". */
static char *safe_dup(const char *s)
{
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	put_safe(f, s && *s ? s : "-");
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* "config FILE:LINE" or "runtime", wrapped as "global (...)" for entries the
 * global token applies to. */
static void put_source(FILE *f, json_object *o)
{
	const char *source = get_str(o, "source"), *file = get_str(o, "file");

	if (source && streq(source, "config")) {
		fputs("config", f);
		if (file) {
			fputc(' ', f);
			put_safe(f, file);
		}
	} else {
		put_safe(f, source ? source : "unknown");
	}
}

static char *format_source(json_object *entry)
{
	const char *origin = get_str(entry, "origin");
	bool global = origin && streq(origin, "global");
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	fputs(global ? "global (" : "", f);
	put_source(f, entry);
	fputs(global ? ")" : "", f);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Two spellings of a token differ, compared as addresses when both parse. */
static bool tokens_differ(const char *a, const char *b)
{
	struct in6_addr x, y;
	const char *why;

	if (addr_token_parse(a, &x, &why) == 0 && addr_token_parse(b, &y, &why) == 0)
		return memcmp(&x, &y, sizeof(x)) != 0;
	return !streq(a, b);
}

/* The kernel spells "no token" as "::". */
static bool kernel_is_zero(const char *kernel)
{
	struct in6_addr a;
	const char *why;

	return addr_token_parse(kernel, &a, &why) == 0 && addr_token_is_zero(&a);
}

static void put_part(FILE *f, bool *first, const char *label, const char *text)
{
	fputs(*first ? "" : "; ", f);
	*first = false;
	fputs(label, f);
	put_safe(f, text);
}

/* DETAIL: the reason, the kernel's token when it is not the one held, and the
 * addresses formed from the token; "-" when there is nothing to say. */
static char *format_detail(json_object *entry)
{
	const char *reason = get_str(entry, "reason"), *token = get_str(entry, "token");
	const char *kernel = get_str(entry, "kernel_token");
	json_object *addrs = get_typed(entry, "addresses", json_type_array);
	bool first = true;
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	if (reason && *reason)
		put_part(f, &first, "", reason);
	if (kernel && token && tokens_differ(kernel, token))
		put_part(f, &first, "kernel token ", kernel_is_zero(kernel) ? "none" : kernel);
	for (size_t i = 0; addrs && i < json_object_array_length(addrs); i++) {
		json_object *a = json_object_array_get_idx(addrs, i);

		if (json_object_is_type(a, json_type_string))
			put_part(f, &first, "addr ", json_object_get_string(a));
	}
	if (first)
		fputc('-', f);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---- show -------------------------------------------------------------- */

static int add_entry_row(struct table *t, json_object *entry)
{
	const char *ifname = get_str(entry, "interface");
	const char *token = get_str(entry, "token"), *state = get_str(entry, "state");
	char *cells[TABLE_COLS];

	if (!ifname || !token || !state)
		return malformed("an entry lacks \"interface\", \"token\" or \"state\"");
	cells[0] = safe_dup(ifname);
	cells[1] = safe_dup(token);
	cells[2] = safe_dup(state);
	cells[3] = format_source(entry);
	cells[4] = format_detail(entry);
	return table_add(t, cells);
}

static int build_table(json_object *entries, struct table *t)
{
	char *header[TABLE_COLS] = {strdup("INTERFACE"), strdup("TOKEN"), strdup("STATE"),
				    strdup("SOURCE"), strdup("DETAIL")};
	int r = table_add(t, header);

	for (size_t i = 0; r >= 0 && i < json_object_array_length(entries); i++) {
		json_object *e = json_object_array_get_idx(entries, i);

		if (!json_object_is_type(e, json_type_object))
			return malformed("an entry is not an object");
		r = add_entry_row(t, e);
	}
	return r;
}

/* "global token ::42 (config /etc/tokend/tokend.conf:7), match eth* veth*" */
static int print_global(json_object *global)
{
	const char *token = get_str(global, "token");
	json_object *match = get_typed(global, "match", json_type_array);

	if (!token)
		return malformed("\"global\" has no \"token\"");
	fputs("global token ", stdout);
	put_safe(stdout, token);
	fputs(" (", stdout);
	put_source(stdout, global);
	fputs(")", stdout);
	for (size_t i = 0; match && i < json_object_array_length(match); i++) {
		json_object *m = json_object_array_get_idx(match, i);

		if (!json_object_is_type(m, json_type_string))
			continue;
		fputs(i == 0 ? ", match " : " ", stdout);
		put_safe(stdout, json_object_get_string(m));
	}
	fputc('\n', stdout);
	return 0;
}

static int print_show(const struct request *req, json_object *params)
{
	json_object *global = get_typed(params, "global", json_type_object);
	json_object *entries = get_typed(params, "entries", json_type_array);
	struct table t = {0};
	int r;

	if (!entries)
		return malformed("\"entries\" is missing or not an array");
	if (!global && has_member(params, "global"))
		return malformed("\"global\" is not an object");
	r = build_table(entries, &t);
	if (r < 0) {
		table_free(&t);
		return r == -ENOMEM ? out_of_memory() : r;
	}
	if (global)
		r = print_global(global);
	if (r >= 0 && t.n > 1)
		table_print(&t, stdout);
	else if (r >= 0 && !global)
		puts("no tokens held");
	table_free(&t);
	return r;
}

/* ---- add, delete, flush, resume --------------------------------------- */

static int print_add(const struct request *req, json_object *params)
{
	json_object *changed = get_typed(params, "changed", json_type_boolean);

	if (!changed)
		return malformed("\"changed\" is missing or not a boolean");
	if (json_object_get_boolean(changed))
		return 0;
	printf("token %s already held ", req->token);
	if (req->ifname) {
		fputs("for ", stdout);
		put_safe(stdout, req->ifname);
		fputc('\n', stdout);
	} else {
		puts("as the global token");
	}
	return 0;
}

static int print_nothing(const struct request *req, json_object *params)
{
	return 0;
}

/* Interface names, null standing for the global token. Checked whole before
 * anything is printed, so a bad reply leaves no half-printed list. */
static int check_name_list(json_object *list)
{
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *v = json_object_array_get_idx(list, i);

		if (v && !json_object_is_type(v, json_type_string))
			return malformed("an interface name is not a string");
	}
	return 0;
}

static void put_ifname_or_global(FILE *f, json_object *v)
{
	put_safe(f, v ? json_object_get_string(v) : "global token");
}

static void print_name_list(json_object *list, const char *verb)
{
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		printf("%s ", verb);
		put_ifname_or_global(stdout, json_object_array_get_idx(list, i));
		fputc('\n', stdout);
	}
}

/* [{"interface": NAME|null, "file": "PATH:LINE"}...] */
static int check_kept(json_object *kept)
{
	for (size_t i = 0; i < json_object_array_length(kept); i++) {
		json_object *k = json_object_array_get_idx(kept, i), *v;

		if (!json_object_is_type(k, json_type_object))
			return malformed("a \"kept\" item is not an object");
		if (json_object_object_get_ex(k, "interface", &v) && v &&
		    !json_object_is_type(v, json_type_string))
			return malformed("an interface name is not a string");
	}
	return 0;
}

static void print_kept(json_object *kept)
{
	for (size_t i = 0; i < json_object_array_length(kept); i++) {
		json_object *k = json_object_array_get_idx(kept, i), *ifname = NULL;
		const char *file = get_str(k, "file");

		json_object_object_get_ex(k, "interface", &ifname);
		fputs("kept ", stdout);
		put_ifname_or_global(stdout, ifname);
		fputs(" (declared in ", stdout);
		put_safe(stdout, file ? file : "a config file");
		fputs(")\n", stdout);
	}
}

static int print_flush(const struct request *req, json_object *params)
{
	json_object *removed = get_typed(params, "removed", json_type_array);
	json_object *kept = get_typed(params, "kept", json_type_array);
	int r;

	if (!removed || !kept)
		return malformed("\"removed\" or \"kept\" is missing or not an array");
	r = check_name_list(removed);
	if (r < 0)
		return r;
	r = check_kept(kept);
	if (r < 0)
		return r;
	if (json_object_array_length(removed) == 0 && json_object_array_length(kept) == 0)
		puts("no runtime tokens to flush");
	print_name_list(removed, "removed");
	print_kept(kept);
	return 0;
}

static int print_resume(const struct request *req, json_object *params)
{
	json_object *resumed = get_typed(params, "resumed", json_type_array);
	int r;

	if (!resumed)
		return malformed("\"resumed\" is missing or not an array");
	r = check_name_list(resumed);
	if (r < 0)
		return r;
	print_name_list(resumed, "resumed");
	return 0;
}

/* ---- status ------------------------------------------------------------ */

static void print_uptime(long long usec)
{
	long long s = usec / 1000000;

	if (s >= 86400)
		printf("%lldd ", s / 86400);
	if (s >= 3600)
		printf("%lldh ", s / 3600 % 24);
	if (s >= 60)
		printf("%lldm ", s / 60 % 60);
	printf("%llds\n", s % 60);
}

static void print_key(const char *key)
{
	printf("%-14s", key);
}

static void print_int_line(json_object *params, const char *key, const char *label)
{
	json_object *v = get_typed(params, key, json_type_int);

	if (!v)
		return;
	print_key(label);
	printf("%lld\n", (long long)json_object_get_int64(v));
}

static void print_str_line(json_object *params, const char *key, const char *label)
{
	const char *v = get_str(params, key);

	if (!v)
		return;
	print_key(label);
	put_safe(stdout, v);
	fputc('\n', stdout);
}

/* "tokens: 3 held (2 applied, 1 blocked)": states with nothing in them are
 * left out. */
static void print_counts(json_object *counts)
{
	/* In the order of docs/protocol.md. */
	static const char *const states[] = {
		"applied", "pending", "absent", "blocked", "unsupported", "contested", "removing",
	};
	json_object *held = get_typed(counts, "held", json_type_int);
	const char *sep = " (";

	if (!counts)
		return;
	print_key("tokens:");
	printf("%lld held", held ? (long long)json_object_get_int64(held) : 0LL);
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		json_object *v = get_typed(counts, states[i], json_type_int);

		if (!v || json_object_get_int64(v) == 0)
			continue;
		printf("%s%lld %s", sep, (long long)json_object_get_int64(v), states[i]);
		sep = ", ";
	}
	puts(sep[0] == ',' ? ")" : "");
}

static void print_config_files(json_object *files)
{
	size_t n = files ? json_object_array_length(files) : 0;

	print_key("config files:");
	if (n == 0)
		fputs("none", stdout);
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(files, i);

		fputs(i ? ", " : "", stdout);
		put_safe(stdout, json_object_is_type(v, json_type_string)
				     ? json_object_get_string(v)
				     : "?");
	}
	fputc('\n', stdout);
}

static int print_status(const struct request *req, json_object *params)
{
	json_object *uptime = get_typed(params, "uptime_usec", json_type_int);
	json_object *degraded = get_typed(params, "degraded", json_type_boolean);
	const char *reason = get_str(params, "degraded_reason");

	if (!get_str(params, "version"))
		return malformed("\"version\" is missing or not a string");
	print_str_line(params, "version", "version:");
	print_int_line(params, "pid", "pid:");
	if (uptime) {
		print_key("uptime:");
		print_uptime(json_object_get_int64(uptime));
	}
	print_config_files(get_typed(params, "config_files", json_type_array));
	print_str_line(params, "state_file", "state file:");
	print_key("degraded:");
	if (degraded && json_object_get_boolean(degraded)) {
		fputs("yes, runtime changes are refused: ", stdout);
		put_safe(stdout, reason ? reason : "no reason given");
		fputc('\n', stdout);
	} else {
		puts("no");
	}
	print_counts(get_typed(params, "counts", json_type_object));
	print_int_line(params, "repairs", "repairs:");
	print_int_line(params, "resyncs", "resyncs:");
	print_int_line(params, "reconciles", "reconciles:");
	return 0;
}

/* ---- Talking to tokend ------------------------------------------------- */

static void print_access_error(const char *path)
{
	struct stat st;
	struct group *gr;

	if (stat(path, &st) < 0)
		fail("cannot connect to tokend at %s: %s (access needs membership of the "
		     "socket's group)",
		     path, strerror(EACCES));
	else if ((gr = getgrgid(st.st_gid)))
		fail("cannot connect to tokend at %s: %s (access needs membership of group "
		     "\"%s\", the socket's group)",
		     path, strerror(EACCES), gr->gr_name);
	else
		fail("cannot connect to tokend at %s: %s (access needs membership of group %u, "
		     "the socket's group)",
		     path, strerror(EACCES), (unsigned)st.st_gid);
}

static int connect_daemon(const struct options *o)
{
	int fd = varlink_connect_timeout(o->socket, o->timeout_ms);

	if (fd >= 0)
		return fd;
	if (fd == -EACCES || fd == -EPERM)
		print_access_error(o->socket);
	else if (fd == -EAGAIN)
		fail("cannot connect to tokend at %s: it accepts no connections (timed out)",
		     o->socket);
	else
		fail("cannot connect to tokend at %s: %s%s", o->socket, strerror(-fd),
		     fd == -ENOENT || fd == -ECONNREFUSED ? " (is tokend running?)" : "");
	return fd;
}

static void print_call_error(const struct options *o, int r)
{
	if (r == -ETIMEDOUT)
		fail("no reply from tokend within %g s", o->timeout_ms / 1000.0);
	else if (r == -ECONNRESET || r == -EPIPE)
		fail("tokend closed the connection without replying");
	else if (r == -EBADMSG)
		fail("tokend sent something that is not a Varlink reply");
	else if (r == -EMSGSIZE)
		fail("tokend's reply is too large");
	else
		fail("talking to tokend: %s", strerror(-r));
}

static json_object *build_params(const struct request *req)
{
	json_object *p = json_object_new_object();

	if (!p)
		return NULL;
	if (req->verb->args & ARG_TOKEN)
		json_object_object_add(p, "token", json_object_new_string(req->token));
	if (req->ifname)
		json_object_object_add(p, "interface", json_object_new_string(req->ifname));
	return p;
}

static void print_json(json_object *o)
{
	int flags =
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE;

	/* json-c spells an empty pretty object over two lines. */
	if (json_object_is_type(o, json_type_object) && json_object_object_length(o) == 0)
		puts("{}");
	else
		puts(json_object_to_json_string_ext(o, flags));
}

static void print_daemon_error(const struct options *o, const struct request *req,
			       const char *error, json_object *params)
{
	const char *message = get_str(params, "message");

	if (o->json) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "error", json_object_new_string(error));
		json_object_object_add(e, "parameters", json_object_get(params));
		print_json(e);
		json_object_put(e);
	}
	fputs("tokenctl: ", stderr);
	if (streq(error, "io.tokend.NoSuchEntry") && req->ifname &&
	    streq(req->verb->method, "io.tokend.ListTokens")) {
		fputs("no token is held for ", stderr);
		put_safe(stderr, req->ifname);
	} else if (message) {
		put_safe(stderr, message);
	} else {
		put_safe(stderr, error);
		if (params && json_object_object_length(params) > 0) {
			fputc(' ', stderr);
			put_safe(stderr, json_object_to_json_string_ext(
					     params, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
		}
	}
	fputc('\n', stderr);
}

static int handle_reply(const struct options *o, const struct request *req, json_object *reply,
			const char *error)
{
	json_object *params = get_typed(reply, "parameters", json_type_object);
	json_object *empty = NULL;
	int r;

	if (error) {
		print_daemon_error(o, req, error, params);
		return EXIT_FAIL;
	}
	if (!params)
		params = empty = json_object_new_object();
	if (!params) {
		out_of_memory();
		return EXIT_FAIL;
	}
	if (o->json) {
		print_json(params);
		r = 0;
	} else {
		r = req->verb->print(req, params);
	}
	json_object_put(empty);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

static int run(const struct options *o, const struct request *req)
{
	json_object *params = build_params(req), *reply = NULL;
	const char *error = NULL;
	int fd, r;

	if (!params) {
		out_of_memory();
		return EXIT_FAIL;
	}
	fd = connect_daemon(o);
	if (fd < 0) {
		json_object_put(params);
		return EXIT_FAIL;
	}
	r = varlink_call_sync(fd, req->verb->method, params, o->timeout_ms, &reply, &error);
	close(fd);
	if (r < 0) {
		print_call_error(o, r);
		return EXIT_FAIL;
	}
	r = handle_reply(o, req, reply, error);
	json_object_put(reply);
	return r;
}

/* A full disk or a closed pipe must not pass for success. */
static int flush_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fail("cannot write output: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct options o;
	struct request req;

	if (parse_cmdline(argc, argv, &o, &req) < 0)
		return EXIT_USAGE;
	switch (o.action) {
	case ACTION_HELP:
		print_usage();
		return flush_stdout(EXIT_OK);
	case ACTION_VERSION:
		printf("tokenctl %s\n", TOKEND_VERSION);
		return flush_stdout(EXIT_OK);
	case ACTION_RUN:
		break;
	}
	return flush_stdout(run(&o, &req));
}
