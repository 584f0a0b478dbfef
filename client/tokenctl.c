/* SPDX-License-Identifier: MIT */
/* tokenctl: the command-line client of tokend. It speaks the Varlink protocol
 * of docs/protocol.md; its verbs follow `ip token`. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h> /* isfinite() is a macro: no libm */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
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
	ARG_TOKEN = 1 << 0,    /* takes a TOKEN */
	ARG_DEV = 1 << 1,      /* takes [dev IFACE] */
	ARG_NAME = 1 << 2,     /* takes an association's NAME */
	ARG_NAME_OPT = 1 << 3, /* takes [NAME] */
	ARG_SA_DEF = 1 << 4,   /* takes the keywords of an association */
	ARG_SA = 1 << 5,       /* a verb on associations ("VERB sa") */
	ARG_SA_ONLY = 1 << 6,  /* must be followed by "sa" */
};

/* The keywords of `add sa`, in the order of sa_keys[]. */
enum {
	SA_NUMBER,
	SA_LOCAL,
	SA_REMOTE,
	SA_SECRET,
	SA_MODE,
	SA_ALGORITHM,
	SA_LOCAL_SELECTOR,
	SA_REMOTE_SELECTOR,
	SA_PROTOCOL,
	SA_LOCAL_PORT,
	SA_REMOTE_PORT,
	SA_DEV,
	SA_REPLAY_WINDOW,
	SA_LOOKAHEAD,
	SA_LIFETIME,
	SA_LIFETIME_BYTES,
	SA_LIFETIME_PACKETS,
	SA_EPOCH,
	SA_OVERLAP,
	SA_KEYS
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
	const char *name;	       /* an association's NAME */
	const char *sa_value[SA_KEYS]; /* add sa: the keywords' values, as typed */
	char secret[PATH_MAX];	       /* add sa: the secret file's absolute path */
};

static int print_add(const struct request *req, json_object *params);
static int print_nothing(const struct request *req, json_object *params);
static int print_show(const struct request *req, json_object *params);
static int print_flush(const struct request *req, json_object *params);
static int print_resume(const struct request *req, json_object *params);
static int print_status(const struct request *req, json_object *params);
static int print_assocs(const struct request *req, json_object *params);
static int print_flush_sa(const struct request *req, json_object *params);
static int print_release(const struct request *req, json_object *params);

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
    {"monitor", "io.tokend.Monitor", 0, NULL},
    {"rotate", "io.tokend.RotateAssociation", ARG_NAME, print_nothing},
    {"release", "io.tokend.ReleaseAssociation", ARG_SA_ONLY, print_release},
    {"help", NULL, 0, NULL},
};

/* "VERB sa ...": the verbs on IPsec associations. */
static const struct verb sa_verbs[] = {
    {"show sa", "io.tokend.ListAssociations", ARG_SA | ARG_NAME_OPT, print_assocs},
    {"get sa", "io.tokend.ListAssociations", ARG_SA | ARG_NAME_OPT, print_assocs},
    {"list sa", "io.tokend.ListAssociations", ARG_SA | ARG_NAME_OPT, print_assocs},
    {"ls sa", "io.tokend.ListAssociations", ARG_SA | ARG_NAME_OPT, print_assocs},
    {"add sa", "io.tokend.AddAssociation", ARG_SA | ARG_NAME | ARG_SA_DEF, print_nothing},
    {"delete sa", "io.tokend.DeleteAssociation", ARG_SA | ARG_NAME, print_nothing},
    {"del sa", "io.tokend.DeleteAssociation", ARG_SA | ARG_NAME, print_nothing},
    {"flush sa", "io.tokend.FlushAssociations", ARG_SA, print_flush_sa},
    {"rotate sa", "io.tokend.RotateAssociation", ARG_SA | ARG_NAME, print_nothing},
    {"release sa", "io.tokend.ReleaseAssociation", ARG_SA | ARG_NAME, print_release},
};

enum sa_kind {
	KIND_UINT,     /* decimal, from min to max */
	KIND_ADDR,     /* an IPv4 or IPv6 address */
	KIND_PREFIX,   /* ADDRESS or ADDRESS/LENGTH */
	KIND_CHOICE,   /* one of choices[] */
	KIND_PROTOCOL, /* one of choices[], or 1-255 */
	KIND_IFNAME,
	KIND_PATH,
};

struct sa_key {
	const char *word;  /* on the command line, as in a config file's [sa NAME] */
	const char *param; /* of io.tokend.AddAssociation */
	enum sa_kind kind;
	unsigned long long min, max;
	const char *const *choices;
	const char *expected; /* for messages */
};

static const char *const sa_modes[] = {"transport", "tunnel", NULL};
static const char *const sa_algorithms[] = {"aes-gcm-128", "aes-gcm-256", "aes-cbc-hmac-sha256",
					    NULL};
static const char *const sa_protocols[] = {"tcp",	"udp",	  "sctp", "icmp",
					   "ipv6-icmp", "icmpv6", NULL};

static const struct sa_key sa_keys[SA_KEYS] = {
    [SA_NUMBER] = {"number", "number", KIND_UINT, 1, 65535, NULL, NULL},
    [SA_LOCAL] = {"local", "local", KIND_ADDR, 0, 0, NULL, NULL},
    [SA_REMOTE] = {"remote", "remote", KIND_ADDR, 0, 0, NULL, NULL},
    [SA_SECRET] = {"secret", "secret_file", KIND_PATH, 0, 0, NULL, NULL},
    [SA_MODE] = {"mode", "mode", KIND_CHOICE, 0, 0, sa_modes, "transport or tunnel"},
    [SA_ALGORITHM] = {"algorithm", "algorithm", KIND_CHOICE, 0, 0, sa_algorithms,
		      "aes-gcm-128, aes-gcm-256 or aes-cbc-hmac-sha256"},
    [SA_LOCAL_SELECTOR] = {"local-selector", "local_selector", KIND_PREFIX, 0, 0, NULL, NULL},
    [SA_REMOTE_SELECTOR] = {"remote-selector", "remote_selector", KIND_PREFIX, 0, 0, NULL, NULL},
    [SA_PROTOCOL] = {"protocol", "protocol", KIND_PROTOCOL, 1, 255, sa_protocols,
		     "tcp, udp, sctp, icmp, ipv6-icmp, icmpv6 or a number from 1 to 255"},
    [SA_LOCAL_PORT] = {"local-port", "local_port", KIND_UINT, 1, 65535, NULL, NULL},
    [SA_REMOTE_PORT] = {"remote-port", "remote_port", KIND_UINT, 1, 65535, NULL, NULL},
    [SA_DEV] = {"dev", "dev", KIND_IFNAME, 0, 0, NULL, NULL},
    [SA_REPLAY_WINDOW] = {"replay-window", "replay_window", KIND_UINT, 1, 32, NULL, NULL},
    [SA_LOOKAHEAD] = {"lookahead", "lookahead", KIND_UINT, 1, 16, NULL, NULL},
    [SA_LIFETIME] = {"lifetime", "lifetime", KIND_UINT, 0, 315360000, NULL,
		     NULL}, /* 1: the daemon says why not */
    [SA_LIFETIME_BYTES] = {"lifetime-bytes", "lifetime_bytes", KIND_UINT, 0, INT64_MAX, NULL, NULL},
    [SA_LIFETIME_PACKETS] = {"lifetime-packets", "lifetime_packets", KIND_UINT, 1, 4294967295ULL,
			     NULL, NULL},
    [SA_EPOCH] = {"epoch", "epoch", KIND_UINT, 0, 1099511627775ULL, NULL, NULL},
    [SA_OVERLAP] = {"overlap-ms", "overlap_ms", KIND_UINT, 100, 315360000000ULL, NULL, NULL},
};

/* The keywords add sa cannot do without. */
static const int sa_required[] = {SA_NUMBER, SA_LOCAL, SA_REMOTE, SA_SECRET};

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

static void print_usage_sa(void)
{
	fputs("IPsec associations:\n"
	      "  show sa [NAME]         list the associations, or NAME's (also get, list,\n"
	      "                         ls); keys are never shown: tokend never sends any\n"
	      "  add sa NAME number N local ADDR remote ADDR secret FILE [KEYWORD VALUE]...\n"
	      "                         add a runtime association\n"
	      "  delete sa NAME         delete a runtime association (also del)\n"
	      "  flush sa               delete every runtime association\n"
	      "  rotate [sa] NAME       start sending with NAME's next key generation\n"
	      "  release sa NAME        stop managing NAME; its SAs and policies stay in the\n"
	      "                         kernel, for another tool to take over\n"
	      "\n"
	      "add sa keywords (a config file's [sa NAME] keys; here lifetime is in\n"
	      "seconds and the overlap is overlap-ms, in milliseconds):\n"
	      "  number N               1-65535, the same on both peers (required)\n"
	      "  local ADDR             this host's address (required)\n"
	      "  remote ADDR            the peer's address, of the same family (required)\n"
	      "  secret FILE            the master secret (required), or credential:NAME\n"
	      "                         for one of tokend's systemd credentials. Only the\n"
	      "                         path is sent, never the secret: tokend reads the\n"
	      "                         file itself. A relative path is made absolute\n"
	      "                         here (realpath), so the file must exist\n"
	      "  mode MODE              transport (default) or tunnel\n"
	      "  algorithm ALG          aes-gcm-128 (default), aes-gcm-256 or\n"
	      "                         aes-cbc-hmac-sha256\n"
	      "  local-selector PREFIX  traffic selectors, ADDRESS[/LENGTH] of the\n"
	      "  remote-selector PREFIX   addresses' family (default: the addresses)\n"
	      "  protocol P             tcp, udp, sctp, icmp, ipv6-icmp (or icmpv6)\n"
	      "                         or 1-255\n"
	      "  local-port N           1-65535 (with tcp, udp or sctp)\n"
	      "  remote-port N          1-65535 (with tcp, udp or sctp)\n"
	      "  dev IFACE              policies for this interface only (also device)\n"
	      "  replay-window N        1-32 packets (default 32)\n"
	      "  lookahead N            1-16 inbound generations kept ahead (default 2)\n"
	      "  lifetime SECONDS       rotation period: new keys every SECONDS (2 or more;\n"
	      "                         0: no rotation by the clock)\n"
	      "  epoch UNIXTIME         when generation 0 began (default 0), the same on\n"
	      "                         both peers\n"
	      "  overlap-ms N           old inbound keys stay N ms after a rotation\n"
	      "                         (default a quarter of the lifetime)\n"
	      "  lifetime-bytes N       byte limit of an SA, 0 for none\n"
	      "  lifetime-packets N     packet limit of an SA, 1-4294967295\n"
	      "\n",
	      stdout);
}

static void print_usage(void)
{
	fputs("Usage: tokenctl [OPTIONS] COMMAND [ARGUMENTS]\n"
	      "\n"
	      "Commands:\n"
	      "  show [dev IFACE]       list the tokens tokend holds (the default;\n"
	      "                         also get, list, ls); without dev, then its IPsec\n"
	      "                         associations, if it has any\n"
	      "  add TOKEN [dev IFACE]  set IFACE's token, or the global token (also set)\n"
	      "  delete [dev IFACE]     delete IFACE's runtime token, or the global one\n"
	      "                         (also del)\n"
	      "  flush [dev IFACE]      delete every runtime token, or IFACE's\n"
	      "  resume [dev IFACE]     repair contested tokens again\n"
	      "  status                 show tokend's status\n"
	      "  monitor                print tokend's events (changes, repairs,\n"
	      "                         rotations, failures) as they happen, one a\n"
	      "                         line (JSON lines with --json), until interrupted\n"
	      "  help                   show this help\n"
	      "\n"
	      "TOKEN is an IPv6 interface identifier such as ::1a:2b:3c:4d, optionally\n"
	      "followed by /64. 'dev' may also be written 'device'.\n"
	      "\n",
	      stdout);
	print_usage_sa();
	fputs("Options:\n"
	      "  --socket PATH    tokend's socket (default: $TOKEND_SOCKET, else\n"
	      "                   " DEFAULT_SOCKET ")\n"
	      "  -j, --json       print the reply's parameters as JSON; a daemon error\n"
	      "                   is printed as {\"error\": ..., \"parameters\": ...}.\n"
	      "                   show without dev prints the tokens' reply with an\n"
	      "                   \"associations\" list added (empty when there are none)\n"
	      "  --timeout SEC    give up after SEC seconds without an answer (default 10)\n"
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

/* The row "BASE sa" of sa_verbs[]. */
static const struct verb *find_sa_verb(const char *base)
{
	size_t n = strlen(base);

	for (size_t i = 0; i < sizeof(sa_verbs) / sizeof(sa_verbs[0]); i++)
		if (strncmp(sa_verbs[i].name, base, n) == 0 && streq(sa_verbs[i].name + n, " sa"))
			return &sa_verbs[i];
	return NULL;
}

static int find_sa_key(const char *word)
{
	for (int k = 0; k < SA_KEYS; k++)
		if (streq(sa_keys[k].word, word))
			return k;
	return -1;
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

/* An add sa keyword and its value, taken as it is (it may start with '-'). */
static int take_sa_key(int argc, char **argv, int *i, int k, struct request *req)
{
	if (req->sa_value[k])
		return usage_error("\"%s\" given twice", sa_keys[k].word);
	if (*i + 1 >= argc)
		return usage_error("\"%s\" needs a value", sa_keys[k].word);
	req->sa_value[k] = argv[++*i];
	return 0;
}

/* "sa" right after a verb that has an association form switches to it. */
static bool takes_object(const struct request *req, const char *a)
{
	return streq(a, "sa") && !(req->verb->args & ARG_SA) && !req->ifname && !req->token_text &&
	       !req->name && find_sa_verb(req->verb->name);
}

static int sa_only_error(const struct request *req)
{
	return usage_error("%s works on associations only: tokenctl %s sa NAME", req->verb->name,
			   req->verb->name);
}

/* One argument that is not an option. */
static int take_arg(int argc, char **argv, int *i, struct request *req)
{
	const char *a = argv[*i];
	unsigned args = req->verb->args;
	int k;

	if (takes_object(req, a)) {
		req->verb = find_sa_verb(req->verb->name);
		return 0;
	}
	if (args & ARG_SA_ONLY)
		return sa_only_error(req);
	if (streq(a, "sa") && !(args & ARG_SA) && !req->ifname && !req->token_text && !req->name)
		return usage_error("%s takes no \"sa\"", req->verb->name);
	if ((args & (ARG_NAME | ARG_NAME_OPT)) && !req->name) {
		req->name = a;
		return 0;
	}
	if (args & ARG_SA_DEF) {
		/* As everywhere else, "device" is "dev". */
		k = find_sa_key(streq(a, "device") ? "dev" : a);
		if (k < 0)
			return usage_error("unknown keyword \"%s\" for %s", a, req->verb->name);
		return take_sa_key(argc, argv, i, k, req);
	}
	if (streq(a, "dev") || streq(a, "device"))
		return take_dev(argc, argv, i, req);
	if ((args & ARG_TOKEN) && !req->token_text) {
		req->token_text = a;
		return 0;
	}
	return usage_error("unexpected argument \"%s\" for %s", a, req->verb->name);
}

/* The verb's arguments, in any order as `ip` takes them (an association's
 * NAME first); options may be mixed in, except right after a keyword (an
 * interface may be called "-x"). */
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
		if (!options_done && a[0] == '-' && a[1] != '\0')
			r = parse_option(argc, argv, &i, o);
		else
			r = take_arg(argc, argv, &i, req);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- Checks of association arguments ---------------------------------- */

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (streq(*list, s))
			return true;
	return false;
}

/* Plain decimal digits, no sign or blanks. */
static int parse_uint(const char *s, unsigned long long max, unsigned long long *ret)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || *ret > max)
		return -ERANGE;
	return 0;
}

/* AF_INET, AF_INET6, or 0 when s is no address. */
static int addr_family(const char *s)
{
	struct in6_addr a;

	if (inet_pton(AF_INET, s, &a) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, &a) == 1)
		return AF_INET6;
	return 0;
}

/* ADDRESS or ADDRESS/LENGTH: its family, or 0. */
static int prefix_family(const char *s)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long long len;
	int family;

	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	family = addr_family(buf);
	if (family && slash && parse_uint(slash + 1, family == AF_INET ? 32 : 128, &len) < 0)
		return 0;
	return family;
}

static int check_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != n)
		return usage_error("invalid association name \"%s\": expected 1 to 64 letters, "
				   "digits, '-', '_' or '.'",
				   name);
	return 0;
}

/* One keyword's value; *family for addresses and selectors. */
static int check_sa_value(const struct sa_key *k, const char *v, int *family)
{
	unsigned long long n;
	const char *why = NULL;

	switch (k->kind) {
	case KIND_UINT:
		if (parse_uint(v, k->max, &n) < 0 || n < k->min)
			return usage_error(
			    "invalid %s \"%s\": expected an integer from %llu to %llu", k->word, v,
			    k->min, k->max);
		return 0;
	case KIND_ADDR:
		*family = addr_family(v);
		if (!*family)
			return usage_error("invalid %s address \"%s\": expected an IPv4 or IPv6 "
					   "address",
					   k->word, v);
		return 0;
	case KIND_PREFIX:
		*family = prefix_family(v);
		if (!*family)
			return usage_error("invalid %s \"%s\": expected ADDRESS or ADDRESS/LENGTH",
					   k->word, v);
		return 0;
	case KIND_CHOICE:
	case KIND_PROTOCOL:
		if (in_list(k->choices, v) ||
		    (k->kind == KIND_PROTOCOL && parse_uint(v, k->max, &n) == 0 && n >= k->min))
			return 0;
		return usage_error("invalid %s \"%s\": expected %s", k->word, v, k->expected);
	case KIND_IFNAME:
		if (addr_ifname_valid(v, &why) < 0)
			return usage_error("invalid %s \"%s\": %s", k->word, v, why);
		return 0;
	case KIND_PATH:
		if (!*v)
			return usage_error("\"%s\" needs a file path", k->word);
		return 0;
	}
	return 0;
}

static int check_sa_required(const struct request *req)
{
	char missing[128] = "";

	for (size_t i = 0; i < sizeof(sa_required) / sizeof(sa_required[0]); i++)
		if (!req->sa_value[sa_required[i]]) {
			strcat(missing, missing[0] ? ", " : "");
			strcat(missing, sa_keys[sa_required[i]].word);
		}
	if (missing[0])
		return usage_error("%s %s lacks %s (number, local, remote and secret are "
				   "required)",
				   req->verb->name, req->name, missing);
	return 0;
}

/* The daemon reads the secret itself, so a relative path is made absolute
 * here; the secret is never read, let alone sent. */
static int resolve_secret(struct request *req)
{
	const char *path = req->sa_value[SA_SECRET];

	/* A systemd credential of the service: resolved by tokend. */
	if (path[0] == '/' || strncmp(path, "credential:", 11) == 0) {
		if (strlen(path) >= sizeof(req->secret))
			return usage_error("secret file path \"%s\" is too long", path);
		strcpy(req->secret, path);
	} else if (!realpath(path, req->secret)) {
		return usage_error("cannot find secret file \"%s\": %s", path, strerror(errno));
	}
	return 0;
}

/* Selectors are of the family of the addresses, which share one. */
static int check_families(const struct request *req, const int family[SA_KEYS])
{
	if (family[SA_LOCAL] != family[SA_REMOTE])
		return usage_error("local %s and remote %s are not of the same address family",
				   req->sa_value[SA_LOCAL], req->sa_value[SA_REMOTE]);
	for (int k = SA_LOCAL_SELECTOR; k <= SA_REMOTE_SELECTOR; k++)
		if (req->sa_value[k] && family[k] != family[SA_LOCAL])
			return usage_error("%s %s is not of the family of local and remote",
					   sa_keys[k].word, req->sa_value[k]);
	return 0;
}

static int check_sa_def(struct request *req)
{
	int family[SA_KEYS] = {0};
	int r = check_sa_required(req);

	for (int k = 0; r >= 0 && k < SA_KEYS; k++)
		if (req->sa_value[k])
			r = check_sa_value(&sa_keys[k], req->sa_value[k], &family[k]);
	if (r >= 0)
		r = check_families(req, family);
	if (r >= 0)
		r = resolve_secret(req);
	return r;
}

/* Syntax checks, so that nothing malformed is ever sent. */
static int check_request(struct request *req)
{
	struct in6_addr token;
	const char *why = NULL;
	unsigned args = req->verb->args;

	if (args & ARG_SA_ONLY)
		return sa_only_error(req);
	if ((args & ARG_TOKEN) && !req->token_text)
		return usage_error("%s needs a TOKEN", req->verb->name);
	if (req->token_text) {
		if (addr_token_parse(req->token_text, &token, &why) < 0)
			return usage_error("invalid token \"%s\": %s", req->token_text, why);
		addr_format(&token, req->token, sizeof(req->token));
	}
	if (req->ifname && addr_ifname_valid(req->ifname, &why) < 0)
		return usage_error("invalid interface name \"%s\": %s", req->ifname, why);
	if ((args & ARG_NAME) && !req->name)
		return usage_error("%s needs an association NAME", req->verb->name);
	if (req->name && check_name(req->name) < 0)
		return -EINVAL;
	if (args & ARG_SA_DEF)
		return check_sa_def(req);
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

#define TABLE_MAX_COLS 8
#define TOKEN_COLS     5
#define SA_COLS	       8

/* Rows of malloc'd cells, printed with each column as wide as its widest
 * cell; the last column is not padded, so lines have no trailing blanks. A
 * row may have a note: a line of its own printed under it, as it is. */
struct table {
	size_t cols;
	char *(*rows)[TABLE_MAX_COLS + 1]; /* the cells, then the note or NULL */
	size_t n;
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		for (size_t c = 0; c <= TABLE_MAX_COLS; c++)
			free(t->rows[i][c]);
	free(t->rows);
	*t = (struct table){0};
}

/* Takes the t->cols cells, also on failure. */
static int table_add(struct table *t, char **cells)
{
	char *(*rows)[TABLE_MAX_COLS + 1] = reallocarray(t->rows, t->n + 1, sizeof(*rows));
	bool ok = rows != NULL;

	for (size_t c = 0; c < t->cols; c++)
		ok = ok && cells[c];
	if (rows)
		t->rows = rows;
	if (!ok) {
		for (size_t c = 0; c < t->cols; c++)
			free(cells[c]);
		return -ENOMEM;
	}
	memset(t->rows[t->n], 0, sizeof(t->rows[0]));
	memcpy(t->rows[t->n++], cells, t->cols * sizeof(cells[0]));
	return 0;
}

/* Takes the note, a line to print under the last row (after the notes it
 * already has). */
static int table_note(struct table *t, char *note)
{
	char **slot = &t->rows[t->n - 1][TABLE_MAX_COLS], *both;

	if (!note)
		return -ENOMEM;
	if (!*slot) {
		*slot = note;
		return 0;
	}
	if (asprintf(&both, "%s\n%s", *slot, note) < 0) {
		free(note);
		return -ENOMEM;
	}
	free(*slot);
	free(note);
	*slot = both;
	return 0;
}

static void table_print(const struct table *t, FILE *f)
{
	size_t width[TABLE_MAX_COLS] = {0};

	for (size_t i = 0; i < t->n; i++)
		for (size_t c = 0; c < t->cols; c++)
			if (strlen(t->rows[i][c]) > width[c])
				width[c] = strlen(t->rows[i][c]);
	for (size_t i = 0; i < t->n; i++) {
		for (size_t c = 0; c + 1 < t->cols; c++)
			fprintf(f, "%-*s  ", (int)width[c], t->rows[i][c]);
		fprintf(f, "%s\n", t->rows[i][t->cols - 1]);
		if (t->rows[i][TABLE_MAX_COLS])
			fprintf(f, "%s\n", t->rows[i][TABLE_MAX_COLS]);
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
	char *cells[TOKEN_COLS];

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
	char *header[TOKEN_COLS] = {strdup("INTERFACE"), strdup("TOKEN"), strdup("STATE"),
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
	struct table t = {.cols = TOKEN_COLS};
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

	json_object *entry = get_typed(params, "entry", json_type_object);
	const char *state = get_str(entry, "state"), *reason = get_str(entry, "reason");

	if (!changed)
		return malformed("\"changed\" is missing or not a boolean");
	/* Held, but not in the kernel: say so, with why (tokend keeps at it). */
	if (state &&
	    (streq(state, "blocked") || streq(state, "unsupported") || streq(state, "absent"))) {
		put_safe(stdout,
			 get_str(entry, "interface") ? get_str(entry, "interface") : "global");
		printf(": token %s held, not applied: %s", req->token, state);
		if (reason && *reason) {
			fputs(": ", stdout);
			put_safe(stdout, reason);
		} else if (streq(state, "absent")) {
			fputs(": no such interface yet; it is set when the interface appears",
			      stdout);
		}
		fputc('\n', stdout);
		return 0;
	}
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

/* What the names in a flush reply are. */
struct name_kind {
	const char *key;  /* of a "kept" item */
	const char *what; /* for messages */
	bool null_ok;	  /* null stands for the global token */
	const char *none; /* said when nothing was removed or kept */
};

static const struct name_kind token_names = {"interface", "an interface name", true,
					     "no runtime tokens to flush"};
static const struct name_kind sa_names = {"name", "an association name", false,
					  "no runtime associations to flush"};

static bool name_ok(const struct name_kind *kind, json_object *v)
{
	return v ? json_object_is_type(v, json_type_string) : kind->null_ok;
}

/* Names (interface names, null standing for the global token, or
 * association names). Checked whole before anything is printed, so a bad
 * reply leaves no half-printed list. */
static int check_name_list(json_object *list, const struct name_kind *kind)
{
	for (size_t i = 0; i < json_object_array_length(list); i++)
		if (!name_ok(kind, json_object_array_get_idx(list, i)))
			return malformed(kind->null_ok ? "an interface name is not a string"
						       : "an association name is not a string");
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

/* [{"interface": NAME|null, "file": "PATH:LINE"}...], or with "name". */
static int check_kept(json_object *kept, const struct name_kind *kind)
{
	for (size_t i = 0; i < json_object_array_length(kept); i++) {
		json_object *k = json_object_array_get_idx(kept, i), *v = NULL;

		if (!json_object_is_type(k, json_type_object))
			return malformed("a \"kept\" item is not an object");
		json_object_object_get_ex(k, kind->key, &v);
		if (!name_ok(kind, v))
			return malformed(kind->null_ok ? "an interface name is not a string"
						       : "an association name is not a string");
	}
	return 0;
}

static void print_kept(json_object *kept, const struct name_kind *kind)
{
	for (size_t i = 0; i < json_object_array_length(kept); i++) {
		json_object *k = json_object_array_get_idx(kept, i), *name = NULL;
		const char *file = get_str(k, "file");

		json_object_object_get_ex(k, kind->key, &name);
		fputs("kept ", stdout);
		put_ifname_or_global(stdout, name);
		fputs(" (declared in ", stdout);
		put_safe(stdout, file ? file : "a config file");
		fputs(")\n", stdout);
	}
}

/* {"removed": [NAME...], "kept": [KEPT...]} */
static int print_removed_kept(json_object *params, const struct name_kind *kind)
{
	json_object *removed = get_typed(params, "removed", json_type_array);
	json_object *kept = get_typed(params, "kept", json_type_array);
	int r;

	if (!removed || !kept)
		return malformed("\"removed\" or \"kept\" is missing or not an array");
	r = check_name_list(removed, kind);
	if (r < 0)
		return r;
	r = check_kept(kept, kind);
	if (r < 0)
		return r;
	if (json_object_array_length(removed) == 0 && json_object_array_length(kept) == 0)
		puts(kind->none);
	print_name_list(removed, "removed");
	print_kept(kept, kind);
	return 0;
}

static int print_flush(const struct request *req, json_object *params)
{
	return print_removed_kept(params, &token_names);
}

static int print_flush_sa(const struct request *req, json_object *params)
{
	return print_removed_kept(params, &sa_names);
}

static int print_resume(const struct request *req, json_object *params)
{
	json_object *resumed = get_typed(params, "resumed", json_type_array);
	int r;

	if (!resumed)
		return malformed("\"resumed\" is missing or not an array");
	r = check_name_list(resumed, &token_names);
	if (r < 0)
		return r;
	print_name_list(resumed, "resumed");
	return 0;
}

/* ---- associations ------------------------------------------------------ */

/* Close a memory stream opened on *out: its malloc'd string, or NULL. */
static char *memstream_done(FILE *f, char **out)
{
	if (fclose(f) != 0) {
		free(*out);
		return NULL;
	}
	return *out;
}

static long long get_int(json_object *o, const char *key, long long dflt)
{
	json_object *v = get_typed(o, key, json_type_int);

	return v ? (long long)json_object_get_int64(v) : dflt;
}

/* "1.2 KiB"; bytes below 1024 as "512 B". */
static void put_bytes(FILE *f, long long bytes)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)bytes / 1024;
	size_t u = 0;

	if (bytes < 1024) {
		fprintf(f, "%lld B", bytes);
		return;
	}
	while (v >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	fprintf(f, "%.1f %s", v, units[u]);
}

/* "192.0.2.1 -> 192.0.2.2" */
static char *format_peers(json_object *a)
{
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	put_safe(f, get_str(a, "local") ? get_str(a, "local") : "?");
	fputs(" -> ", f);
	put_safe(f, get_str(a, "remote") ? get_str(a, "remote") : "?");
	return memstream_done(f, &out);
}

/* "gen 3 spi 0x01000503 1.2 KiB 14 pkts", or "... not installed". */
static char *format_outbound(json_object *sa)
{
	json_object *installed = get_typed(sa, "installed", json_type_boolean);
	long long packets = get_int(sa, "packets", 0);
	char *out = NULL;
	size_t len;
	FILE *f;

	if (!get_typed(sa, "generation", json_type_int) || !get_typed(sa, "spi", json_type_int))
		return strdup("-");
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	fprintf(f, "gen %lld spi 0x%08llx ", get_int(sa, "generation", 0),
		(unsigned long long)get_int(sa, "spi", 0));
	if (installed && json_object_get_boolean(installed)) {
		put_bytes(f, get_int(sa, "bytes", 0));
		fprintf(f, " %lld pkt%s", packets, packets == 1 ? "" : "s");
	} else {
		fputs("not installed", f);
	}
	return memstream_done(f, &out);
}

/* The receive window: "gen 3-5", or "gen 3" for one generation. */
static char *format_inbound(json_object *list)
{
	long long lo = 0, hi = 0;
	bool any = false;
	char *out = NULL;

	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *g =
		    get_typed(json_object_array_get_idx(list, i), "generation", json_type_int);
		long long v = g ? (long long)json_object_get_int64(g) : 0;

		if (!g)
			continue;
		lo = !any || v < lo ? v : lo;
		hi = !any || v > hi ? v : hi;
		any = true;
	}
	if (!any)
		return strdup("-");
	if (lo == hi)
		any = asprintf(&out, "gen %lld", lo) >= 0;
	else
		any = asprintf(&out, "gen %lld-%lld", lo, hi) >= 0;
	return any ? out : NULL;
}

/* "  reason: ..." */
static char *format_reason(const char *reason)
{
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	fputs("  reason: ", f);
	put_safe(f, reason);
	return memstream_done(f, &out);
}

/* "  rotation: every 3600s, next 2026-12-04T19:00:00.000Z, 5 done, last 100->101
 * (clock) done", or "  rotation: none by the clock, ..." */
static char *format_rotation(json_object *r)
{
	json_object *last = get_typed(r, "last", json_type_object);
	long long period = get_int(r, "period", 0);
	const char *next = get_str(r, "next_rotation");
	char *out = NULL;
	size_t len;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	fputs("  rotation: ", f);
	if (period > 0) {
		fprintf(f, "every %llds, next ", period);
		put_safe(f, next ? next : "-");
	} else {
		fputs("none by the clock", f);
	}
	fprintf(f, ", %lld done", get_int(r, "rotations", 0));
	if (last) {
		fprintf(f, ", last %lld->%lld (", get_int(last, "from", 0), get_int(last, "to", 0));
		put_safe(f, get_str(last, "reason") ? get_str(last, "reason") : "?");
		fputs(") ", f);
		put_safe(f, get_str(last, "outcome") ? get_str(last, "outcome") : "?");
	}
	return memstream_done(f, &out);
}

/* One association's row, and its reason under it. Keys are never shown: the
 * daemon sends none, and only the fields below are read. */
static int add_assoc_row(struct table *t, json_object *a)
{
	const char *name = get_str(a, "name"), *state = get_str(a, "state");
	const char *reason = get_str(a, "reason");
	json_object *number = get_typed(a, "number", json_type_int), *rot;
	char *cells[SA_COLS];
	int r;

	if (!name || !number || !state)
		return malformed("an association lacks \"name\", \"number\" or \"state\"");
	cells[0] = safe_dup(name);
	if (asprintf(&cells[1], "%lld", (long long)json_object_get_int64(number)) < 0)
		cells[1] = NULL;
	cells[2] = format_peers(a);
	cells[3] = safe_dup(get_str(a, "mode"));
	cells[4] = safe_dup(get_str(a, "algorithm"));
	cells[5] = safe_dup(state);
	cells[6] = format_outbound(get_typed(a, "outbound", json_type_object));
	cells[7] = format_inbound(get_typed(a, "inbound", json_type_array));
	r = table_add(t, cells);
	if (r >= 0 && reason && *reason)
		r = table_note(t, format_reason(reason));
	rot = get_typed(a, "rotation", json_type_object);
	/* A released association is another tool's: no rotation to show. */
	if (r >= 0 && rot && !streq(state ? state : "", "released") &&
	    (get_int(rot, "period", 0) > 0 || get_int(rot, "rotations", 0) > 0))
		r = table_note(t, format_rotation(rot));
	return r;
}

static int print_assoc_table(json_object *list)
{
	static const char *const header[SA_COLS] = {"NAME",	 "NUMBER", "PEERS", "MODE",
						    "ALGORITHM", "STATE",  "OUT",   "IN"};
	char *cells[SA_COLS];
	struct table t = {.cols = SA_COLS};
	int r;

	for (size_t c = 0; c < SA_COLS; c++)
		cells[c] = strdup(header[c]);
	r = table_add(&t, cells);
	for (size_t i = 0; r >= 0 && i < json_object_array_length(list); i++) {
		json_object *a = json_object_array_get_idx(list, i);

		r = json_object_is_type(a, json_type_object)
			? add_assoc_row(&t, a)
			: malformed("an association is not an object");
	}
	if (r >= 0)
		table_print(&t, stdout);
	table_free(&t);
	return r == -ENOMEM ? out_of_memory() : r;
}

static int print_assocs(const struct request *req, json_object *params)
{
	json_object *list = get_typed(params, "associations", json_type_array);

	if (!list)
		return malformed("\"associations\" is missing or not an array");
	if (json_object_array_length(list) == 0) {
		puts("no associations");
		return 0;
	}
	return print_assoc_table(list);
}

/* {"released": {"name", "number", "spis"}}, or null when it already was. */
static int print_release(const struct request *req, json_object *params)
{
	json_object *released = NULL;

	if (!json_object_object_get_ex(params, "released", &released))
		return malformed("\"released\" is missing");
	if (released && !json_object_is_type(released, json_type_object))
		return malformed("\"released\" is not an object");
	fputs(released ? "released " : "", stdout);
	put_safe(stdout, req->name);
	fputs(released ? "" : " was already released", stdout);
	puts(": its SAs and policies stay in the kernel");
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
	printf("%-16s", key);
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

/* " (2 applied, 1 blocked)" and the end of the line: the states of counts
 * with something in them, in the order given. */
static void print_state_counts(json_object *counts, const char *const *states, size_t n)
{
	const char *sep = " (";

	for (size_t i = 0; counts && i < n; i++) {
		json_object *v = get_typed(counts, states[i], json_type_int);

		if (!v || json_object_get_int64(v) == 0)
			continue;
		printf("%s%lld %s", sep, (long long)json_object_get_int64(v), states[i]);
		sep = ", ";
	}
	puts(sep[0] == ',' ? ")" : "");
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

	if (!counts)
		return;
	print_key("tokens:");
	printf("%lld held", held ? (long long)json_object_get_int64(held) : 0LL);
	print_state_counts(counts, states, sizeof(states) / sizeof(states[0]));
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

/* "associations: 3 (2 up, 1 error)". */
static void print_assoc_counts(json_object *params)
{
	static const char *const states[] = {"up", "pending", "error", "conflict", "released"};
	json_object *n = get_typed(params, "associations", json_type_int);
	json_object *counts = get_typed(params, "association_counts", json_type_object);

	if (!n)
		return;
	print_key("associations:");
	printf("%lld", (long long)json_object_get_int64(n));
	print_state_counts(counts, states, sizeof(states) / sizeof(states[0]));
}

static void print_last_error(json_object *e)
{
	const char *when = get_str(e, "time"), *msg = get_str(e, "message");

	print_key("last error:");
	if (!e || !msg) {
		puts("none");
		return;
	}
	put_safe(stdout, when ? when : "?");
	fputs(" ", stdout);
	put_safe(stdout, msg);
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
	print_assoc_counts(params);
	print_int_line(params, "repairs", "repairs:");
	print_int_line(params, "resyncs", "resyncs:");
	print_int_line(params, "reconciles", "reconciles:");
	print_str_line(params, "last_reconcile", "last reconcile:");
	print_last_error(get_typed(params, "last_error", json_type_object));
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

/* add sa: the keywords' values, numbers as numbers, the secret's path made
 * absolute. */
static void add_sa_params(json_object *p, const struct request *req)
{
	unsigned long long n;

	for (int k = 0; k < SA_KEYS; k++) {
		const char *v = req->sa_value[k];
		json_object *j;

		if (!v)
			continue;
		if (k == SA_SECRET)
			j = json_object_new_string(req->secret);
		else if (sa_keys[k].kind == KIND_UINT && parse_uint(v, INT64_MAX, &n) == 0)
			j = json_object_new_int64((int64_t)n);
		else
			j = json_object_new_string(v);
		json_object_object_add(p, sa_keys[k].param, j);
	}
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
	if (req->name)
		json_object_object_add(p, "name", json_object_new_string(req->name));
	if (req->verb->args & ARG_SA_DEF)
		add_sa_params(p, req);
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

/* One call on fd (taking params); 0 and the reply, *error set when it is an
 * error reply, or a negative errno, said on stderr. */
static int call(const struct options *o, int fd, const char *method, json_object *params,
		json_object **reply, const char **error)
{
	int r;

	*reply = NULL;
	*error = NULL;
	if (!params)
		return out_of_memory();
	r = varlink_call_sync(fd, method, params, o->timeout_ms, reply, error);
	if (r < 0)
		print_call_error(o, r);
	return r;
}

static int run_one(const struct options *o, const struct request *req, int fd)
{
	json_object *reply = NULL;
	const char *error = NULL;
	int r;

	if (call(o, fd, req->verb->method, build_params(req), &reply, &error) < 0)
		return EXIT_FAIL;
	r = handle_reply(o, req, reply, error);
	json_object_put(reply);
	return r;
}

/* `show` without dev: the tokens, then the associations when there are any.
 * With --json, the ListTokens reply with an "associations" list added. */
static int show_both(const struct options *o, const struct request *req, json_object *tokens,
		     json_object *list)
{
	json_object *both;
	int r;

	if (!o->json) {
		r = print_show(req, tokens);
		if (r >= 0 && list && json_object_array_length(list) > 0) {
			fputc('\n', stdout);
			r = print_assoc_table(list);
		}
		return r < 0 ? EXIT_FAIL : EXIT_OK;
	}
	/* One stable shape for programs: the ListTokens reply with the
	 * associations added (an empty list from a daemon without any). */
	both = json_object_new_object();
	if (!both) {
		out_of_memory();
		return EXIT_FAIL;
	}
	json_object_object_foreach(tokens, key, val)
	    json_object_object_add(both, key, json_object_get(val));
	json_object_object_add(both, "associations",
			       list ? json_object_get(list) : json_object_new_array());
	print_json(both);
	json_object_put(both);
	return EXIT_OK;
}

/* The ListAssociations reply to `show` without dev. */
static int show_assocs_reply(const struct options *o, const struct request *req,
			     json_object *tokens, json_object *reply, const char *error)
{
	json_object *params = get_typed(reply, "parameters", json_type_object);
	json_object *list = get_typed(params, "associations", json_type_array);
	const struct request list_req = {.verb = find_sa_verb("show")};

	if (error && streq(error, "org.varlink.service.MethodNotFound"))
		return show_both(o, req, tokens, NULL); /* an older tokend */
	if (error) {
		if (!o->json)
			print_show(req, tokens);
		print_daemon_error(o, &list_req, error, params);
		return EXIT_FAIL;
	}
	if (!list) {
		malformed("\"associations\" is missing or not an array");
		return EXIT_FAIL;
	}
	return show_both(o, req, tokens, list);
}

static int run_show_all(const struct options *o, const struct request *req, int fd)
{
	json_object *treply = NULL, *areply = NULL, *tokens, *empty = NULL;
	const char *error = NULL;
	int r;

	if (call(o, fd, req->verb->method, build_params(req), &treply, &error) < 0)
		return EXIT_FAIL;
	if (error) {
		r = handle_reply(o, req, treply, error);
		json_object_put(treply);
		return r;
	}
	tokens = get_typed(treply, "parameters", json_type_object);
	if (!tokens)
		tokens = empty = json_object_new_object();
	if (!tokens) {
		out_of_memory();
		r = EXIT_FAIL;
	} else if (call(o, fd, "io.tokend.ListAssociations", json_object_new_object(), &areply,
			&error) < 0) {
		r = EXIT_FAIL;
	} else {
		r = show_assocs_reply(o, req, tokens, areply, error);
	}
	json_object_put(empty);
	json_object_put(treply);
	json_object_put(areply);
	return r;
}

/* One event as a line: "TIME LEVEL KIND: MESSAGE" (the message names its
 * object), or the event's JSON on one line. */
static void print_event(const struct options *o, json_object *ev)
{
	if (o->json) {
		puts(json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		const char *f[] = {get_str(ev, "time"), get_str(ev, "level"), get_str(ev, "kind")};

		for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			put_safe(stdout, f[i] ? f[i] : "?");
			fputs(i == 2 ? ": " : " ", stdout);
		}
		put_safe(stdout, get_str(ev, "message") ? get_str(ev, "message") : "?");
		fputc('\n', stdout);
	}
	fflush(stdout);
}

/* monitor: replies until tokend goes away or we are interrupted. */
static int run_monitor(const struct options *o, const struct request *req, int fd)
{
	struct varlink_stream st;
	int r, more, n = 0;

	r = varlink_stream_start(&st, fd, req->verb->method, NULL, o->timeout_ms);
	for (more = r < 0 ? r : 1; more > 0;) {
		json_object *reply, *params;
		const char *error;

		/* The first reply within the timeout; events whenever. */
		more = varlink_stream_next(&st, n == 0 ? o->timeout_ms : -1, &reply, &error);
		if (more < 0)
			break;
		params = get_typed(reply, "parameters", json_type_object);
		if (error) {
			print_daemon_error(o, req, error, params);
			json_object_put(reply);
			varlink_stream_done(&st);
			return EXIT_FAIL;
		}
		if (n++ > 0 && params)
			print_event(o, params);
		else if (!o->json)
			fprintf(stderr, "monitoring tokend's events (Ctrl-C ends)\n");
		json_object_put(reply);
	}
	varlink_stream_done(&st);
	if (more == -ECONNRESET && n > 0) {
		fail("tokend closed the connection (stopped, or this monitor fell too far behind)");
		return EXIT_FAIL;
	}
	if (more < 0) {
		print_call_error(o, more);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int run(const struct options *o, const struct request *req)
{
	bool show_all = streq(req->verb->method, "io.tokend.ListTokens") && !req->ifname;
	int fd, r;

	fd = connect_daemon(o);
	if (fd < 0)
		return EXIT_FAIL;
	if (streq(req->verb->method, "io.tokend.Monitor"))
		r = run_monitor(o, req, fd);
	else
		r = show_all ? run_show_all(o, req, fd) : run_one(o, req, fd);
	close(fd);
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
