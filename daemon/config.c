/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "strmap.h"
#include "text.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)

/* The specified defaults. Not derived from the install prefix: a build with
 * the default /usr/local prefix must still look where the documentation says. */
#define DEFAULT_SOCKET	     "/run/tokend/tokend.sock"
#define DEFAULT_STATE_DIR    "/var/lib/tokend"
#define DEFAULT_SOCKET_GROUP "tokend"
#define DEFAULT_ADMIN_GROUP  "tokend-admin"

/* A config file is a few hundred bytes; anything this big is a mistake (say, a
 * log file named *.conf) and is not worth reading into memory. */
#define CONFIG_FILE_MAX (4u * 1024 * 1024)

#define MAX_CLIENTS_MAX 65536u

/* Where a setting was last made; file points into config->files. */
struct loc {
	const char *file;
	unsigned line;
};

enum section {
	SECTION_NONE, /* before the first header */
	SECTION_TOKEND,
	SECTION_GLOBAL,
	SECTION_TOKENS,
	SECTION_SA,
	SECTION_UNKNOWN, /* already reported at its header */
};

/* What libinih remembers of the previous key, which decides whether an
 * indented line is a continuation. We mirror it to know, in the handler,
 * whether a call comes from a continuation line. */
enum prev_key {
	PREV_NONE,
	PREV_KEY,
	PREV_DROPPED, /* the previous line was refused; its continuations are skipped */
};

struct parse_ctx {
	struct config *c;
	struct config_errors *errs; /* may be NULL */
	struct keys_cache *secrets; /* each secret file checked once per load */
	/* What was declared so far, for duplicates among thousands. */
	struct strmap token_names;   /* interface -> index in c->tokens */
	struct strmap assoc_names;   /* name -> index in c->assocs */
	struct strmap assoc_numbers; /* number, in decimal -> index in c->assocs */
	size_t n_errors;
	bool oom;
	size_t tokens_cap;

	/* The file being parsed: its whole text, and the reader's position. */
	const char *file;
	const char *buf;
	size_t len;
	size_t pos;
	unsigned line; /* of the line last handed to libinih */
	enum prev_key prev;
	enum section section;
	bool continuation; /* the current line continues the previous key */

	/* The match declaration being built in this file (continuations append
	 * to it); checked for emptiness once it is complete. */
	bool match_open;
	struct loc match_at;

	struct loc retry_min_at;
	struct loc retry_max_at;

	/* The [sa NAME] section being read: its index in c->assocs, where its
	 * header is, and which keys it had. */
	bool sa_open;
	size_t sa_index;
	struct loc sa_at;
	uint8_t sa_local_family, sa_remote_family, sa_lnet_family, sa_rnet_family;
	bool sa_has_number, sa_has_lnet, sa_has_rnet;
	size_t sa_errors_before; /* errors found before the section began */
	size_t assocs_cap;
};

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static size_t strv_length(char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

/* Takes ownership of s, also on failure. */
static int strv_push(char ***v, char *s)
{
	size_t n = strv_length(*v);
	char **nv;

	if (!s)
		return -ENOMEM;
	nv = realloc(*v, (n + 2) * sizeof(*nv));
	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	nv[n] = s;
	nv[n + 1] = NULL;
	*v = nv;
	return 0;
}

static void add_error(struct parse_ctx *ctx, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(struct parse_ctx *ctx, const char *file, unsigned line, const char *fmt, ...)
{
	struct config_error *nv;
	char *msg = NULL, *f;
	va_list ap;
	int r;

	ctx->n_errors++;
	if (!ctx->errs)
		return;
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	f = strdup(file);
	nv = realloc(ctx->errs->v, (ctx->errs->n + 1) * sizeof(*nv));
	if (r < 0 || !f || !nv) {
		if (r >= 0)
			free(msg);
		free(f);
		if (nv)
			ctx->errs->v = nv;
		ctx->oom = true;
		return;
	}
	ctx->errs->v = nv;
	nv[ctx->errs->n++] = (struct config_error){.file = f, .line = line, .message = msg};
}

/* An error about the line libinih is parsing right now. */
#define line_error(ctx, ...) add_error((ctx), (ctx)->file, (ctx)->line, __VA_ARGS__)

static char *loc_format(const char *file, unsigned line)
{
	char *s;

	if (asprintf(&s, "%s:%u", file, line) < 0)
		return NULL;
	return s;
}

static void token_done(struct config_token *t)
{
	free(t->where);
	t->where = NULL;
}

struct config *config_new_default(void)
{
	struct config *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->socket_path = strdup(DEFAULT_SOCKET);
	c->state_dir = strdup(DEFAULT_STATE_DIR);
	c->socket_group = strdup(DEFAULT_SOCKET_GROUP);
	c->admin_group = strdup(DEFAULT_ADMIN_GROUP);
	c->reconcile_interval_usec = 60 * USEC_PER_SEC;
	c->retry_min_usec = 1 * USEC_PER_SEC;
	c->retry_max_usec = 60 * USEC_PER_SEC;
	c->contest_repairs = 5;
	c->contest_window_usec = 30 * USEC_PER_SEC;
	c->client_timeout_usec = 10 * USEC_PER_SEC;
	c->max_clients = 1024;
	c->reply_backlog_mib = 256;
	c->log_level = LOG_INFO;
	c->reqid_base = 0x746b0000u; /* "tk" */
	c->policy_priority = 0x2800;
	c->counter_interval_usec = 1 * USEC_PER_SEC;
	c->dwell_usec = 3 * USEC_PER_SEC;
	c->netlink_buffer = 32u * 1024 * 1024;
	c->match = calloc(2, sizeof(*c->match));
	if (c->match)
		c->match[0] = strdup("*");
	c->files = calloc(1, sizeof(*c->files));
	if (!c->socket_path || !c->state_dir || !c->socket_group || !c->admin_group || !c->match ||
	    !c->match[0] || !c->files) {
		config_free(c);
		return NULL;
	}
	return c;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->socket_path);
	free(c->state_dir);
	free(c->socket_group);
	free(c->admin_group);
	token_done(&c->global);
	strv_free(c->match);
	for (size_t i = 0; i < c->n_tokens; i++)
		token_done(&c->tokens[i]);
	free(c->tokens);
	free(c->assocs);
	strv_free(c->files);
	free(c);
}

void config_errors_clear(struct config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].file);
		free(errs->v[i].message);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

static int token_cmp(const void *a, const void *b)
{
	const struct config_token *x = a, *y = b;

	return strcmp(x->ifname, y->ifname);
}

const struct config_token *config_find_token(const struct config *c, const char *ifname)
{
	struct config_token key = {0};

	/* Only per-interface tokens live in tokens[]; a name that cannot be an
	 * interface cannot be found there either. */
	if (!c || !ifname || !*ifname || strlen(ifname) >= sizeof(key.ifname) || c->n_tokens == 0)
		return NULL;
	strcpy(key.ifname, ifname);
	return bsearch(&key, c->tokens, c->n_tokens, sizeof(*c->tokens), token_cmp);
}

int config_parse_duration(const char *s, uint64_t *ret_usec)
{
	static const struct {
		const char *suffix;
		uint64_t usec;
	} units[] = {
	    {"", USEC_PER_SEC},		{"ms", USEC_PER_MSEC},	    {"s", USEC_PER_SEC},
	    {"min", 60 * USEC_PER_SEC}, {"h", 3600 * USEC_PER_SEC},
	};
	uint64_t whole = 0, frac = 0, frac_div = 1, mult = 0, v;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		/* Nine digits are far below a microsecond for every unit; later
		 * ones are accepted and ignored, and keep frac * mult in range. */
		for (; isdigit((unsigned char)*p); p++)
			if (frac_div < UINT64_C(1000000000)) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].suffix) == 0)
			mult = units[i].usec;
	if (mult == 0)
		return -EINVAL;
	if (whole > UINT64_MAX / mult)
		return -EINVAL;
	v = whole * mult;
	if (frac * mult / frac_div > UINT64_MAX - v)
		return -EINVAL;
	*ret_usec = v + frac * mult / frac_div;
	return 0;
}

/* A decimal number, digits only: strtoul alone would take "-1", " 5" or "0x10". */
static int parse_unsigned(const char *s, unsigned long long max, unsigned long long *ret)
{
	unsigned long long v = 0;

	if (!*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		if (v > (ULLONG_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

static int set_string(struct parse_ctx *ctx, char **field, const char *value)
{
	char *s = strdup(value);

	if (!s) {
		ctx->oom = true;
		return -ENOMEM;
	}
	free(*field);
	*field = s;
	return 0;
}

static void set_path(struct parse_ctx *ctx, const char *key, char **field, const char *value,
		     size_t max_len)
{
	struct text_quoted q;

	if (value[0] != '/') {
		line_error(ctx, "invalid %s \"%s\": expected an absolute path", key,
			   text_quote(&q, value));
		return;
	}
	if (max_len && strlen(value) > max_len) {
		line_error(ctx, "invalid %s \"%s\": a socket path has at most %zu characters", key,
			   text_quote(&q, value), max_len);
		return;
	}
	set_string(ctx, field, value);
}

static void set_duration(struct parse_ctx *ctx, const char *key, uint64_t *field, const char *value)
{
	struct text_quoted q;
	uint64_t usec;

	if (config_parse_duration(value, &usec) < 0) {
		line_error(ctx,
			   "invalid duration \"%s\" for %s: expected a number with an optional "
			   "unit ms, s, min or h (e.g. \"500ms\", \"30s\", \"2min\")",
			   text_quote(&q, value), key);
		return;
	}
	if (usec == 0) {
		line_error(ctx, "invalid duration \"%s\" for %s: must be greater than zero",
			   text_quote(&q, value), key);
		return;
	}
	*field = usec;
}

static void set_number(struct parse_ctx *ctx, const char *key, unsigned *field, const char *value,
		       unsigned min, unsigned max)
{
	unsigned long long v;
	struct text_quoted q;

	if (parse_unsigned(value, max, &v) < 0 || v < min) {
		line_error(ctx, "invalid %s \"%s\": expected an integer from %u to %u", key,
			   text_quote(&q, value), min, max);
		return;
	}
	*field = (unsigned)v;
}

static void handle_tokend(struct parse_ctx *ctx, const char *name, const char *value)
{
	struct config *c = ctx->c;
	struct text_quoted q;

	if (strcmp(name, "socket") == 0) {
		/* tokend binds "PATH.PID.tmp" first and renames it into place:
		 * that name must fit in sun_path too (server.c). */
		set_path(ctx, name, &c->socket_path, value,
			 sizeof(((struct sockaddr_un *)NULL)->sun_path) - 17);
	} else if (strcmp(name, "state-dir") == 0) {
		set_path(ctx, name, &c->state_dir, value, 0);
	} else if (strcmp(name, "socket-group") == 0 || strcmp(name, "admin-group") == 0) {
		if (!*value || strpbrk(value, " \t:")) {
			line_error(ctx, "invalid %s \"%s\": expected a group name", name,
				   text_quote(&q, value));
			return;
		}
		set_string(ctx,
			   strcmp(name, "socket-group") == 0 ? &c->socket_group : &c->admin_group,
			   value);
	} else if (strcmp(name, "reconcile-interval") == 0) {
		set_duration(ctx, name, &c->reconcile_interval_usec, value);
	} else if (strcmp(name, "retry-min") == 0) {
		set_duration(ctx, name, &c->retry_min_usec, value);
		ctx->retry_min_at = (struct loc){ctx->file, ctx->line};
	} else if (strcmp(name, "retry-max") == 0) {
		set_duration(ctx, name, &c->retry_max_usec, value);
		ctx->retry_max_at = (struct loc){ctx->file, ctx->line};
	} else if (strcmp(name, "contest-repairs") == 0) {
		/* The token manager keeps at most 64 repair times per entry. */
		set_number(ctx, name, &c->contest_repairs, value, 2, 64);
	} else if (strcmp(name, "contest-window") == 0) {
		set_duration(ctx, name, &c->contest_window_usec, value);
	} else if (strcmp(name, "client-timeout") == 0) {
		set_duration(ctx, name, &c->client_timeout_usec, value);
	} else if (strcmp(name, "max-clients") == 0) {
		set_number(ctx, name, &c->max_clients, value, 1, MAX_CLIENTS_MAX);
	} else if (strcmp(name, "reply-backlog-mib") == 0) {
		set_number(ctx, name, &c->reply_backlog_mib, value, 1, 65536);
	} else if (strcmp(name, "reqid-base") == 0) {
		unsigned long long v;
		char *end;

		errno = 0;
		v = strtoull(value, &end, 0);
		if (errno || *end || !isdigit((unsigned char)value[0]) ||
		    v > 0xffffffffULL - 65535) {
			line_error(ctx, "invalid reqid-base \"%s\": expected a number from 0 to %u",
				   text_quote(&q, value), 0xffffffffu - 65535);
			return;
		}
		c->reqid_base = (uint32_t)v;
	} else if (strcmp(name, "policy-priority") == 0) {
		unsigned prio = c->policy_priority;
		set_number(ctx, name, &prio, value, 1, UINT_MAX);
		c->policy_priority = prio;
	} else if (strcmp(name, "netlink-buffer") == 0) {
		set_number(ctx, name, &c->netlink_buffer, value, 65536, 1u << 30);
	} else if (strcmp(name, "counter-interval") == 0) {
		set_duration(ctx, name, &c->counter_interval_usec, value);
	} else if (strcmp(name, "dwell") == 0) {
		set_duration(ctx, name, &c->dwell_usec, value);
	} else if (strcmp(name, "log-level") == 0) {
		int level = log_level_from_string(value);

		if (level < 0) {
			line_error(ctx,
				   "invalid log-level \"%s\": expected err, warning, notice, info "
				   "or debug",
				   text_quote(&q, value));
			return;
		}
		c->log_level = level;
	} else {
		line_error(ctx, "unknown key \"%s\" in section [tokend]", text_quote(&q, name));
	}
}

/* Parses a token for `what` (for messages); "::" is the kernel's "no token",
 * which a config file has no reason to declare. */
static int parse_token(struct parse_ctx *ctx, const char *what, const char *value,
		       struct in6_addr *ret)
{
	const char *why = NULL;
	struct text_quoted q;

	if (addr_token_parse(value, ret, &why) < 0) {
		line_error(ctx, "invalid token \"%s\" for %s: %s", text_quote(&q, value), what,
			   why);
		return -EINVAL;
	}
	if (addr_token_is_zero(ret)) {
		line_error(ctx,
			   "invalid token \"%s\" for %s: \"::\" means no token; remove the line "
			   "instead",
			   text_quote(&q, value), what);
		return -EINVAL;
	}
	return 0;
}

static void handle_token(struct parse_ctx *ctx, const char *ifname, const char *value)
{
	struct config *c = ctx->c;
	struct config_token *t;
	struct in6_addr token;
	const char *why = NULL;
	struct text_quoted q;
	size_t i;

	if (addr_ifname_valid(ifname, &why) < 0) {
		line_error(ctx, "invalid interface name \"%s\": %s", text_quote(&q, ifname), why);
		return;
	}
	if (parse_token(ctx, ifname, value, &token) < 0)
		return;
	if (strmap_get(&ctx->token_names, ifname, &i)) {
		line_error(ctx, "token for %s already declared at %s", ifname, c->tokens[i].where);
		return;
	}
	if (c->n_tokens == ctx->tokens_cap) {
		size_t cap = ctx->tokens_cap ? ctx->tokens_cap * 2 : 16;
		struct config_token *nv = reallocarray(c->tokens, cap, sizeof(*nv));

		if (!nv) {
			ctx->oom = true;
			return;
		}
		c->tokens = nv;
		ctx->tokens_cap = cap;
	}
	t = &c->tokens[c->n_tokens];
	*t = (struct config_token){.token = token};
	strcpy(t->ifname, ifname); /* length checked by addr_ifname_valid */
	t->where = loc_format(ctx->file, ctx->line);
	if (!t->where || strmap_put(&ctx->token_names, ifname, c->n_tokens) < 0) {
		free(t->where);
		t->where = NULL;
		ctx->oom = true;
		return;
	}
	c->n_tokens++;
}

/* Appends the whitespace-separated patterns of `value` to the match list. */
static void match_append(struct parse_ctx *ctx, const char *value)
{
	const char *p = value;

	for (;;) {
		size_t n;

		while (isspace((unsigned char)*p))
			p++;
		/* libinih strips inline comments from key lines but not from
		 * continuation lines; a word starting with ';' is one. */
		if (!*p || *p == ';')
			return;
		for (n = 0; p[n] && !isspace((unsigned char)p[n]); n++)
			;
		if (strv_push(&ctx->c->match, strndup(p, n)) < 0) {
			ctx->oom = true;
			return;
		}
		p += n;
	}
}

/* Called once a match declaration cannot get more continuation lines. */
static void match_close(struct parse_ctx *ctx)
{
	if (!ctx->match_open)
		return;
	ctx->match_open = false;
	if (strv_length(ctx->c->match) == 0)
		add_error(ctx, ctx->match_at.file, ctx->match_at.line,
			  "match needs at least one fnmatch(3) pattern, such as \"eth*\"");
}

static void handle_global(struct parse_ctx *ctx, const char *name, const char *value)
{
	struct config *c = ctx->c;
	struct in6_addr token;
	struct text_quoted q;

	if (strcmp(name, "token") == 0) {
		char *where;

		if (parse_token(ctx, "the global token", value, &token) < 0)
			return;
		if (c->has_global) {
			line_error(ctx, "global token already declared at %s", c->global.where);
			return;
		}
		where = loc_format(ctx->file, ctx->line);
		if (!where) {
			ctx->oom = true;
			return;
		}
		c->global = (struct config_token){.token = token, .where = where};
		c->has_global = true;
	} else if (strcmp(name, "match") == 0) {
		/* A new declaration replaces the list (a drop-in overrides the
		 * main file); its value may be empty when the patterns follow on
		 * continuation lines. */
		strv_free(c->match);
		c->match = calloc(1, sizeof(*c->match));
		if (!c->match) {
			ctx->oom = true;
			return;
		}
		ctx->match_open = true;
		ctx->match_at = (struct loc){ctx->file, ctx->line};
		match_append(ctx, value);
	} else {
		line_error(ctx, "unknown key \"%s\" in section [global]", text_quote(&q, name));
	}
}

/* --- [sa NAME] sections ------------------------------------------------ */

static struct assoc_def *sa_cur(struct parse_ctx *ctx)
{
	return ctx->sa_open ? &ctx->c->assocs[ctx->sa_index] : NULL;
}

static void sa_open_section(struct parse_ctx *ctx, const char *name)
{
	struct config *c = ctx->c;
	struct assoc_def *d;
	struct text_quoted q;
	size_t i;

	if (strlen(name) > ASSOC_NAME_MAX) {
		line_error(ctx, "association name \"%s\" is longer than %d characters",
			   text_quote(&q, name), ASSOC_NAME_MAX);
		ctx->section = SECTION_UNKNOWN;
		return;
	}
	/* Refused here, quoted, as assoc_def_check would refuse it later: the
	 * name goes unquoted into every message about the section. */
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
			line_error(ctx,
				   "invalid association name \"%s\": letters, digits, '-', '_' and "
				   "'.' only",
				   text_quote(&q, name));
			ctx->section = SECTION_UNKNOWN;
			return;
		}
	if (strmap_get(&ctx->assoc_names, name, &i)) {
		line_error(ctx, "association %s already declared at %s", text_quote(&q, name),
			   c->assocs[i].where);
		ctx->section = SECTION_UNKNOWN;
		return;
	}
	if (c->n_assocs == ctx->assocs_cap) {
		size_t cap = ctx->assocs_cap ? ctx->assocs_cap * 2 : 8;
		struct assoc_def *v = realloc(c->assocs, cap * sizeof(*v));
		if (!v) {
			ctx->oom = true;
			ctx->section = SECTION_UNKNOWN;
			return;
		}
		c->assocs = v;
		ctx->assocs_cap = cap;
	}
	if (strmap_put(&ctx->assoc_names, name, c->n_assocs) < 0) {
		ctx->oom = true;
		ctx->section = SECTION_UNKNOWN;
		return;
	}
	d = &c->assocs[c->n_assocs];
	assoc_def_init(d);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->where, sizeof(d->where), "%s:%u", ctx->file, ctx->line);
	ctx->sa_index = c->n_assocs++;
	ctx->sa_open = true;
	ctx->sa_at = (struct loc){ctx->file, ctx->line};
	ctx->sa_local_family = ctx->sa_remote_family = 0;
	ctx->sa_lnet_family = ctx->sa_rnet_family = 0;
	ctx->sa_has_number = ctx->sa_has_lnet = ctx->sa_has_rnet = false;
	ctx->sa_errors_before = ctx->n_errors;
}

static int parse_addr(const char *s, union xfrm_addr_any *ret, uint8_t *family)
{
	if (inet_pton(AF_INET, s, &ret->v4) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &ret->v6) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static int parse_prefix(const char *s, union xfrm_addr_any *ret, uint8_t *plen, uint8_t *family)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	unsigned long long v;
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*ret = (union xfrm_addr_any){0};
	if (parse_addr(buf, ret, family) < 0)
		return -EINVAL;
	v = *family == AF_INET ? 32 : 128;
	if (slash && parse_unsigned(slash + 1, v, &v) < 0)
		return -EINVAL;
	*plen = (uint8_t)v;
	return 0;
}

static int parse_protocol(const char *s, uint8_t *ret)
{
	static const struct {
		const char *name;
		uint8_t proto;
	} names[] = {{"tcp", IPPROTO_TCP},	    {"udp", IPPROTO_UDP},
		     {"sctp", IPPROTO_SCTP},	    {"icmp", IPPROTO_ICMP},
		     {"ipv6-icmp", IPPROTO_ICMPV6}, {"icmpv6", IPPROTO_ICMPV6}};
	unsigned long long v;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0) {
			*ret = names[i].proto;
			return 0;
		}
	if (parse_unsigned(s, 255, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = (uint8_t)v;
	return 0;
}

/* "credential:NAME" names a file systemd put in $CREDENTIALS_DIRECTORY. */
static void sa_set_secret(struct parse_ctx *ctx, struct assoc_def *d, const char *value)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	struct text_quoted q;

	if (strncmp(value, "credential:", 11) == 0) {
		const char *cred = value + 11;
		if (!*cred || strchr(cred, '/')) {
			line_error(ctx, "invalid secret \"%s\": expected credential:NAME",
				   text_quote(&q, value));
			return;
		}
		if (!dir || !*dir) {
			line_error(
			    ctx,
			    "secret \"%s\" names a systemd credential, but "
			    "$CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)",
			    text_quote(&q, value));
			return;
		}
		if (dir[0] != '/') {
			line_error(ctx,
				   "secret \"%s\": $CREDENTIALS_DIRECTORY is not an absolute path",
				   text_quote(&q, value));
			return;
		}
		if ((size_t)snprintf(d->secret_path, sizeof(d->secret_path), "%s/%s", dir, cred) >=
		    sizeof(d->secret_path)) {
			d->secret_path[0] = '\0';
			line_error(ctx,
				   "secret \"%s\": $CREDENTIALS_DIRECTORY/NAME is longer than %zu "
				   "characters",
				   text_quote(&q, value), sizeof(d->secret_path) - 1);
			return;
		}
		return;
	}
	if (value[0] != '/' || strlen(value) >= sizeof(d->secret_path)) {
		line_error(ctx,
			   "invalid secret \"%s\": expected an absolute file path or "
			   "credential:NAME",
			   text_quote(&q, value));
		return;
	}
	snprintf(d->secret_path, sizeof(d->secret_path), "%s", value);
}

static void sa_set_u64(struct parse_ctx *ctx, const char *key, uint64_t *field, const char *value,
		       unsigned long long max)
{
	unsigned long long v;
	struct text_quoted q;

	if (parse_unsigned(value, max, &v) < 0) {
		line_error(ctx, "invalid %s \"%s\": expected an integer from 0 to %llu", key,
			   text_quote(&q, value), max);
		return;
	}
	*field = v;
}

static void handle_sa(struct parse_ctx *ctx, const char *name, const char *value)
{
	struct assoc_def *d = sa_cur(ctx);
	unsigned n;
	struct text_quoted q;

	if (!d)
		return;
	if (strcmp(name, "number") == 0) {
		n = 0;
		set_number(ctx, name, &n, value, 1, ASSOC_NUMBER_MAX);
		if (n) {
			d->number = n;
			ctx->sa_has_number = true;
		}
	} else if (strcmp(name, "local") == 0 || strcmp(name, "remote") == 0) {
		bool local = name[0] == 'l';
		if (parse_addr(value, local ? &d->local : &d->remote,
			       local ? &ctx->sa_local_family : &ctx->sa_remote_family) < 0)
			line_error(ctx,
				   "invalid %s address \"%s\": expected an IPv4 or IPv6 address",
				   name, text_quote(&q, value));
	} else if (strcmp(name, "local-selector") == 0 || strcmp(name, "remote-selector") == 0) {
		bool local = name[0] == 'l';
		if (parse_prefix(value, local ? &d->local_net : &d->remote_net,
				 local ? &d->local_plen : &d->remote_plen,
				 local ? &ctx->sa_lnet_family : &ctx->sa_rnet_family) < 0)
			line_error(ctx, "invalid %s \"%s\": expected ADDRESS or ADDRESS/PREFIXLEN",
				   name, text_quote(&q, value));
		else if (local)
			ctx->sa_has_lnet = true;
		else
			ctx->sa_has_rnet = true;
	} else if (strcmp(name, "mode") == 0) {
		if (strcmp(value, "transport") == 0)
			d->mode = XFRM_MODE_TRANSPORT;
		else if (strcmp(value, "tunnel") == 0)
			d->mode = XFRM_MODE_TUNNEL;
		else
			line_error(ctx, "invalid mode \"%s\": expected transport or tunnel",
				   text_quote(&q, value));
	} else if (strcmp(name, "algorithm") == 0) {
		const struct keys_algorithm_info *a = keys_algorithm_by_name(value);
		if (a)
			d->algorithm = a->id;
		else
			line_error(ctx,
				   "unknown algorithm \"%s\": expected aes-gcm-128, aes-gcm-256 "
				   "or aes-cbc-hmac-sha256",
				   text_quote(&q, value));
	} else if (strcmp(name, "secret") == 0) {
		sa_set_secret(ctx, d, value);
	} else if (strcmp(name, "protocol") == 0) {
		if (parse_protocol(value, &d->proto) < 0)
			line_error(ctx,
				   "invalid protocol \"%s\": expected tcp, udp, sctp, icmp, "
				   "ipv6-icmp or a number from 1 to 255",
				   text_quote(&q, value));
	} else if (strcmp(name, "local-port") == 0 || strcmp(name, "remote-port") == 0) {
		n = 0;
		set_number(ctx, name, &n, value, 1, 65535);
		if (name[0] == 'l')
			d->local_port = (uint16_t)n;
		else
			d->remote_port = (uint16_t)n;
	} else if (strcmp(name, "dev") == 0) {
		const char *why;
		if (addr_ifname_valid(value, &why) < 0)
			line_error(ctx, "invalid dev \"%s\": %s", text_quote(&q, value), why);
		else
			snprintf(d->dev, sizeof(d->dev), "%s", value);
	} else if (strcmp(name, "replay-window") == 0) {
		n = d->replay_window;
		set_number(ctx, name, &n, value, 1, 32);
		d->replay_window = n;
	} else if (strcmp(name, "lookahead") == 0) {
		set_number(ctx, name, &d->lookahead, value, 1, ASSOC_LOOKAHEAD_MAX);
	} else if (strcmp(name, "lifetime") == 0) {
		uint64_t usec = 0;
		if (strcmp(value, "0") == 0) {
			d->lifetime_sec = 0;
		} else {
			set_duration(ctx, name, &usec, value);
			if (usec && (usec % 1000000 || usec / 1000000 < ASSOC_LIFETIME_MIN ||
				     usec / 1000000 > ASSOC_LIFETIME_MAX))
				line_error(
				    ctx,
				    "invalid lifetime \"%s\": the rotation period is whole "
				    "seconds from 2s to 3650 days (0: no rotation by the clock)",
				    text_quote(&q, value));
			else
				d->lifetime_sec = usec / 1000000;
		}
	} else if (strcmp(name, "epoch") == 0) {
		uint64_t v = 0;
		sa_set_u64(ctx, name, &v, value, (1ULL << 40) - 1);
		d->epoch = (int64_t)v;
	} else if (strcmp(name, "overlap") == 0) {
		uint64_t usec = 0;
		set_duration(ctx, name, &usec, value);
		if (usec && (usec % 1000 || usec < 100000))
			line_error(ctx,
				   "invalid overlap \"%s\": at least 100ms, in whole milliseconds",
				   text_quote(&q, value));
		else
			d->overlap_ms = usec / 1000;
	} else if (strcmp(name, "schedule") == 0) {
		const char *why = NULL;
		struct assoc_sched sc;
		if (d->n_sched >= ASSOC_SCHEDULE_MAX)
			line_error(ctx, "too many schedule lines in [sa %s]: at most 8", d->name);
		else if (assoc_sched_parse(value, &sc, &why) < 0)
			line_error(ctx,
				   "invalid schedule \"%s\": %s (expected \"from GENERATION "
				   "[secret FILE] [algorithm NAME] [lifetime SECONDS]\")",
				   text_quote(&q, value), why);
		else if (d->n_sched > 0 && sc.from <= d->sched[d->n_sched - 1].from)
			line_error(ctx,
				   "schedule from generation %llu must come after the line before "
				   "(from %llu): list schedule lines in ascending order",
				   (unsigned long long)sc.from,
				   (unsigned long long)d->sched[d->n_sched - 1].from);
		else
			d->sched[d->n_sched++] = sc;
	} else if (strcmp(name, "lifetime-bytes") == 0) {
		sa_set_u64(ctx, name, &d->lifetime_bytes, value, UINT64_MAX / 2);
	} else if (strcmp(name, "lifetime-packets") == 0) {
		sa_set_u64(ctx, name, &d->lifetime_packets, value, 0xffffffffULL);
		if (d->lifetime_packets == 0) {
			line_error(ctx,
				   "invalid lifetime-packets \"0\": a packet limit is always set "
				   "so the 32-bit sequence number cannot wrap");
			d->lifetime_packets = 0xffff0000ULL;
		}
	} else {
		line_error(ctx, "unknown key \"%s\" in section [sa %s]", text_quote(&q, name),
			   d->name);
	}
}

/* A secret that cannot be used is a config error like any other: found
 * before the kernel is touched, with the others, at the section's line. */
static void sa_check_one_secret(struct parse_ctx *ctx, const struct assoc_def *d, const char *path,
				const char *file, unsigned line)
{
	struct keys_secret *secret = NULL;
	char *err = NULL;

	if (keys_cache_load(ctx->secrets, path, &secret, &err) < 0)
		add_error(ctx, file, line, "association %s: %s", d->name,
			  err ? err : "cannot load the secret");
	keys_secret_free(secret);
	free(err);
}

/* Every secret a generation still to come needs; one whose generations
 * have all passed by the clock (a schedule line with a newer secret has
 * taken over more than an overlap ago) may be deleted. */
static void sa_check_secret(struct parse_ctx *ctx, const struct assoc_def *d, const char *file,
			    unsigned line)
{
	struct timespec ts;
	uint64_t lo;

	clock_gettime(CLOCK_REALTIME, &ts);
	lo = assoc_clock_gen(d, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 -
				    (int64_t)assoc_overlap_ms(d));
	for (size_t k = 0; k <= d->n_sched; k++) {
		if (k > 0 && !d->sched[k - 1].has_secret)
			continue;
		if (!assoc_secret_retired(d, k, lo))
			sa_check_one_secret(ctx, d,
					    k == 0 ? d->secret_path : d->sched[k - 1].secret_path,
					    file, line);
	}
}

/* The section is complete: check what needs the whole of it. */
static void sa_close(struct parse_ctx *ctx)
{
	struct assoc_def *d = sa_cur(ctx);
	const char *file = ctx->sa_at.file, *why;
	unsigned line = ctx->sa_at.line;
	char number[16];
	size_t alen, i;

	if (!d)
		return;
	ctx->sa_open = false;
	/* A key that was there but wrong has been reported at its line. */
	if (ctx->n_errors > ctx->sa_errors_before)
		return;
	if (!ctx->sa_has_number || !ctx->sa_local_family || !ctx->sa_remote_family ||
	    !d->secret_path[0]) {
		char missing[64] = "";

		if (!ctx->sa_has_number)
			strcat(missing, ", number");
		if (!ctx->sa_local_family)
			strcat(missing, ", local");
		if (!ctx->sa_remote_family)
			strcat(missing, ", remote");
		if (!d->secret_path[0])
			strcat(missing, ", secret");
		add_error(ctx, file, line, "association %s needs %s", d->name, missing + 2);
		return;
	}
	if (ctx->sa_local_family != ctx->sa_remote_family) {
		add_error(ctx, file, line,
			  "association %s mixes address families: local and remote must both be "
			  "IPv4 or both IPv6",
			  d->name);
		return;
	}
	d->family = ctx->sa_local_family;
	alen = d->family == AF_INET ? 4 : 16;
	if (!ctx->sa_has_lnet) {
		memcpy(&d->local_net, &d->local, alen);
		d->local_plen = (uint8_t)(alen * 8);
	} else if (ctx->sa_lnet_family != d->family) {
		add_error(ctx, file, line,
			  "association %s: local-selector is not of the family of "
			  "its addresses",
			  d->name);
	}
	if (!ctx->sa_has_rnet) {
		memcpy(&d->remote_net, &d->remote, alen);
		d->remote_plen = (uint8_t)(alen * 8);
	} else if (ctx->sa_rnet_family != d->family) {
		add_error(ctx, file, line,
			  "association %s: remote-selector is not of the family of "
			  "its addresses",
			  d->name);
	}
	if (assoc_def_check(d, &why) < 0)
		add_error(ctx, file, line, "association %s: %s", d->name, why);
	snprintf(number, sizeof(number), "%u", d->number);
	if (strmap_get(&ctx->assoc_numbers, number, &i))
		add_error(ctx, file, line,
			  "association %s uses number %u, already used by %s at %s", d->name,
			  d->number, ctx->c->assocs[i].name, ctx->c->assocs[i].where);
	else if (strmap_put(&ctx->assoc_numbers, number, ctx->sa_index) < 0)
		ctx->oom = true;
	sa_check_secret(ctx, d, file, line);
}

const struct assoc_def *config_find_assoc(const struct config *c, const char *name)
{
	for (size_t i = 0; c && i < c->n_assocs; i++)
		if (strcmp(c->assocs[i].name, name) == 0)
			return &c->assocs[i];
	return NULL;
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *ctx = user;
	struct text_quoted q;

	/* The section is tracked by the reader, which saw the whole header;
	 * libinih's copy is cut at 49 characters. */
	(void)section;
	if (ctx->continuation) {
		if (ctx->section == SECTION_UNKNOWN)
			return 1;
		if (ctx->section == SECTION_GLOBAL && strcmp(name, "match") == 0 &&
		    ctx->match_open) {
			match_append(ctx, value);
			return 1;
		}
		line_error(ctx,
			   "unexpected indented line \"%s\": only match may continue on further "
			   "lines; remove the leading whitespace",
			   text_quote(&q, value));
		return 1;
	}
	switch (ctx->section) {
	case SECTION_NONE:
		line_error(ctx,
			   "key \"%s\" outside any section: expected it under [tokend], "
			   "[global] or [tokens]",
			   text_quote(&q, name));
		break;
	case SECTION_TOKEND:
		handle_tokend(ctx, name, value);
		break;
	case SECTION_GLOBAL:
		handle_global(ctx, name, value);
		break;
	case SECTION_TOKENS:
		handle_token(ctx, name, value);
		break;
	case SECTION_SA:
		handle_sa(ctx, name, value);
		break;
	case SECTION_UNKNOWN:
		break;
	}
	return 1;
}

/* The first of `chars` or of an inline ';' comment (one preceded by
 * whitespace), as libinih finds it; the terminating NUL when neither. */
static const char *find_chars_or_comment(const char *s, const char *chars)
{
	bool was_space = false;

	while (*s && !(chars && strchr(chars, *s)) && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static enum section section_from_name(const char *s, size_t n)
{
	if (n == 6 && memcmp(s, "tokend", 6) == 0)
		return SECTION_TOKEND;
	if (n == 6 && memcmp(s, "global", 6) == 0)
		return SECTION_GLOBAL;
	if (n == 6 && memcmp(s, "tokens", 6) == 0)
		return SECTION_TOKENS;
	if (n > 3 && memcmp(s, "sa", 2) == 0 && (s[2] == ' ' || s[2] == '\t'))
		return SECTION_SA;
	return SECTION_UNKNOWN;
}

/* Classifies `str`, the line about to be handed to libinih, the way libinih
 * will, and reports the lines it would only count as a failure without
 * saying why. Those are blanked so that libinih does nothing with them. */
static void classify_line(struct parse_ctx *ctx, char *str)
{
	const char *start = str, *end;
	struct text_quoted q;

	ctx->continuation = false;
	/* libinih skips a UTF-8 byte order mark on the first line. */
	if (ctx->line == 1 && strncmp(start, "\xEF\xBB\xBF", 3) == 0)
		start += 3;
	while (isspace((unsigned char)*start))
		start++;
	if (!*start || *start == ';' || *start == '#')
		return;

	if (ctx->prev != PREV_NONE && start > str) {
		if (ctx->prev == PREV_DROPPED)
			str[0] = '\0';
		else
			ctx->continuation = true;
		return;
	}

	if (*start == '[') {
		end = find_chars_or_comment(start + 1, "]");
		if (*end != ']') {
			line_error(ctx, "unterminated section header \"%s\": expected \"[name]\"",
				   text_quote(&q, start));
			str[0] = '\0';
			return;
		}
		match_close(ctx);
		sa_close(ctx);
		ctx->prev = PREV_NONE;
		ctx->section = section_from_name(start + 1, (size_t)(end - start - 1));
		if (ctx->section == SECTION_UNKNOWN) {
			char name[256];

			snprintf(name, sizeof(name), "%.*s", (int)(end - start - 1), start + 1);
			line_error(ctx,
				   "unknown section [%s]: expected [tokend], [global], [tokens] or "
				   "[sa NAME]",
				   text_quote(&q, name));
		} else if (ctx->section == SECTION_SA) {
			char name[256];
			const char *n = start + 3;

			while (isspace((unsigned char)*n))
				n++;
			snprintf(name, sizeof(name), "%.*s", (int)(end - n), n);
			for (size_t i = strlen(name); i > 0 && isspace((unsigned char)name[i - 1]);
			     i--)
				name[i - 1] = '\0';
			sa_open_section(ctx, name);
		}
		return;
	}

	end = find_chars_or_comment(start, "=:");
	if (*end == ':' && end[1] == ':') {
		/* libinih would take the first ':' as the separator, and tokens
		 * start with "::": "eth0 ::1" would become eth0 = ":1". */
		line_error(ctx,
			   "expected 'key = value' (use '=': values such as tokens contain ':')");
		str[0] = '\0';
		ctx->prev = PREV_DROPPED;
		return;
	}
	if (*end != '=' && *end != ':') {
		char *text = strdup(start);

		/* Quote the line without trailing blanks or comment. */
		if (text) {
			char *e = (char *)find_chars_or_comment(text, NULL);

			*e = '\0';
			while (e > text && isspace((unsigned char)e[-1]))
				*--e = '\0';
		}
		line_error(ctx, "expected 'key = value', got \"%s\"",
			   text ? text_quote(&q, text) : "");
		free(text);
		str[0] = '\0';
		return;
	}
	match_close(ctx);
	/* libinih remembers the key (the text before '=' without trailing
	 * blanks) only when it is not empty. */
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	ctx->prev = end > start ? PREV_KEY : PREV_NONE;
}

/* The ini_reader: hands libinih one physical line per call, so that libinih's
 * line count and ours agree, and refuses a line that does not fit instead of
 * letting it be split into two. */
static char *config_reader(char *str, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	const char *p, *nl;
	size_t n, rest;

	if (ctx->pos >= ctx->len || num < 2) {
		match_close(ctx);
		sa_close(ctx);
		return NULL;
	}
	p = ctx->buf + ctx->pos;
	rest = ctx->len - ctx->pos;
	nl = memchr(p, '\n', rest);
	n = nl ? (size_t)(nl - p) : rest;
	ctx->pos += nl ? n + 1 : n;
	ctx->line++;
	if (n > 0 && p[n - 1] == '\r')
		n--;

	str[0] = '\0';
	if (memchr(p, '\0', n)) {
		line_error(ctx, "line contains a NUL byte");
		ctx->prev = PREV_DROPPED;
		return str;
	}
	if (n > (size_t)num - 1) {
		line_error(ctx, "line longer than %d characters", num - 1);
		ctx->prev = PREV_DROPPED;
		return str;
	}
	memcpy(str, p, n);
	str[n] = '\0';
	classify_line(ctx, str);
	return str;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		goto fail;
	}
	for (;;) {
		ssize_t k;

		if (len == cap) {
			char *nb;

			if (cap >= CONFIG_FILE_MAX) {
				r = -EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				r = -ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		k = read(fd, buf + len, cap - len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	if (!buf) {
		buf = malloc(1);
		if (!buf)
			return -ENOMEM;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
fail:
	free(buf);
	close(fd);
	return r;
}

static void file_error(struct parse_ctx *ctx, const char *path, int r)
{
	if (r == -EFBIG)
		add_error(ctx, path, 0, "cannot read %s: larger than %u MiB, not a config file",
			  path, CONFIG_FILE_MAX / (1024 * 1024));
	else if (r == -ENOMEM)
		ctx->oom = true;
	else
		add_error(ctx, path, 0, "cannot read %s: %s", path, strerror(-r));
}

/* Reads and parses one file. A missing file is reported as -ENOENT without an
 * error, for the caller to decide. */
static int parse_file(struct parse_ctx *ctx, const char *path)
{
	size_t before = ctx->n_errors, len = 0;
	char *buf = NULL, *name;
	int r;

	r = read_file(path, &buf, &len);
	if (r == -ENOENT)
		return r;
	if (r < 0) {
		file_error(ctx, path, r);
		return r;
	}
	name = strdup(path);
	if (!name || strv_push(&ctx->c->files, name) < 0) {
		free(buf);
		ctx->oom = true;
		return -ENOMEM;
	}

	ctx->file = name;
	ctx->buf = buf;
	ctx->len = len;
	ctx->pos = 0;
	ctx->line = 0;
	ctx->prev = PREV_NONE;
	ctx->section = SECTION_NONE;
	ctx->continuation = false;
	ctx->match_open = false;
	r = ini_parse_stream(config_reader, ctx, config_handler, ctx);
	ctx->buf = NULL;
	free(buf);
	if (r == -2) {
		ctx->oom = true;
		return -ENOMEM;
	}
	/* Every line libinih refuses should have been reported by the reader;
	 * should a later libinih refuse more, still say where. */
	if (r > 0 && ctx->n_errors == before)
		add_error(ctx, path, (unsigned)r, "syntax error");
	return 0;
}

static int dropin_filter(const struct dirent *de)
{
	/* Hidden files are editor and package manager leftovers, as for the
	 * shell's "*.conf". */
	return fnmatch("*.conf", de->d_name, FNM_PERIOD) == 0;
}

static int dropin_sort(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static void parse_dropins(struct parse_ctx *ctx, const char *dir)
{
	struct dirent **names = NULL;
	int n;

	n = scandir(dir, &names, dropin_filter, dropin_sort);
	if (n < 0) {
		if (errno == ENOENT)
			return;
		if (errno == ENOMEM)
			ctx->oom = true;
		else
			add_error(ctx, dir, 0, "cannot read drop-in directory %s: %s", dir,
				  strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		char *path = NULL;
		struct stat st;

		if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0) {
			ctx->oom = true;
			break;
		}
		/* Follows symlinks: a link to a file is a file. Anything else
		 * (directories, dangling links, sockets) is not a drop-in. */
		if (stat(path, &st) < 0) {
			/* A dangling link, or a file removed since it was listed. */
			if (errno != ENOENT)
				add_error(ctx, path, 0, "cannot read %s: %s", path,
					  strerror(errno));
		} else if (S_ISREG(st.st_mode)) {
			if (parse_file(ctx, path) == -ENOENT)
				add_error(ctx, path, 0, "cannot read %s: %s", path,
					  strerror(ENOENT));
		}
		free(path);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* In the largest unit that shows the value exactly. */
static const char *format_duration(char *buf, size_t len, uint64_t usec)
{
	if (usec % (3600 * USEC_PER_SEC) == 0)
		snprintf(buf, len, "%" PRIu64 "h", usec / (3600 * USEC_PER_SEC));
	else if (usec % (60 * USEC_PER_SEC) == 0)
		snprintf(buf, len, "%" PRIu64 "min", usec / (60 * USEC_PER_SEC));
	else if (usec % USEC_PER_SEC == 0)
		snprintf(buf, len, "%" PRIu64 "s", usec / USEC_PER_SEC);
	else if (usec % USEC_PER_MSEC == 0)
		snprintf(buf, len, "%" PRIu64 "ms", usec / USEC_PER_MSEC);
	else
		snprintf(buf, len, "%" PRIu64 ".%03" PRIu64 "ms", usec / USEC_PER_MSEC,
			 usec % USEC_PER_MSEC);
	return buf;
}

/* Checks between settings, made once every file has had its say. */
static void check_settings(struct parse_ctx *ctx)
{
	const struct config *c = ctx->c;

	/* A sender that moved ahead waits until its peer has had time to read
	 * its counters and follow (docs/associations.md). */
	if (c->dwell_usec <= c->counter_interval_usec) {
		char dw[32], ci[32];

		const char *file = c->files && c->files[0] ? c->files[0] : "config";

		add_error(ctx, file, 0, "%s: dwell (%s) must be longer than counter-interval (%s)",
			  file, format_duration(dw, sizeof(dw), c->dwell_usec),
			  format_duration(ci, sizeof(ci), c->counter_interval_usec));
	}
	const struct loc *min_at = &ctx->retry_min_at, *max_at = &ctx->retry_max_at;
	char min[32], max[32], other[PATH_MAX + 32];

	if (c->retry_min_usec <= c->retry_max_usec)
		return;
	format_duration(min, sizeof(min), c->retry_min_usec);
	format_duration(max, sizeof(max), c->retry_max_usec);
	/* At least one of them was set in a file: the defaults agree. */
	if (min_at->file) {
		if (max_at->file)
			snprintf(other, sizeof(other), "set at %s:%u", max_at->file, max_at->line);
		else
			snprintf(other, sizeof(other), "the default");
		add_error(ctx, min_at->file, min_at->line,
			  "retry-min (%s) is greater than retry-max (%s, %s)", min, max, other);
	} else {
		add_error(ctx, max_at->file, max_at->line,
			  "retry-max (%s) is less than retry-min (%s, the default)", max, min);
	}
}

int config_load(const char *path, const char *dropin_dir, bool must_exist, struct config **ret,
		struct config_errors *errs)
{
	struct parse_ctx ctx = {.errs = errs};
	char *dir = NULL;
	int r;

	if (!path || !ret)
		return -EINVAL;
	ctx.c = config_new_default();
	if (!ctx.c)
		return -ENOMEM;

	(void)keys_cache_new(&ctx.secrets); /* without it, files are read per association */
	r = parse_file(&ctx, path);
	if (r == -ENOENT && must_exist)
		add_error(&ctx, path, 0, "config file %s does not exist", path);

	if (!dropin_dir) {
		if (asprintf(&dir, "%s.d", path) < 0) {
			keys_cache_free(ctx.secrets);
			strmap_free(&ctx.token_names);
			strmap_free(&ctx.assoc_names);
			strmap_free(&ctx.assoc_numbers);
			config_free(ctx.c);
			return -ENOMEM;
		}
		dropin_dir = dir;
	}
	parse_dropins(&ctx, dropin_dir);
	keys_cache_free(ctx.secrets);
	ctx.secrets = NULL;
	strmap_free(&ctx.token_names);
	strmap_free(&ctx.assoc_names);
	strmap_free(&ctx.assoc_numbers);
	free(dir);

	check_settings(&ctx);
	if (ctx.oom) {
		config_free(ctx.c);
		return -ENOMEM;
	}
	if (ctx.n_errors > 0) {
		config_free(ctx.c);
		return -EINVAL;
	}
	if (ctx.c->n_tokens > 1)
		qsort(ctx.c->tokens, ctx.c->n_tokens, sizeof(*ctx.c->tokens), token_cmp);
	*ret = ctx.c;
	return 0;
}
