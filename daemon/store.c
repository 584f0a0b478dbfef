/* SPDX-License-Identifier: MIT */
#include "store.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "strmap.h"
#include "text.h"

#define STORE_FORMAT "tokend-state"
/* Far above any real state (a few hundred bytes per interface); a bigger file
 * is not ours, and reading it would only cost memory. */
#define STORE_FILE_MAX (16u * 1024 * 1024)

static void set_error(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(char **ret_error, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (!ret_error)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	*ret_error = s;
}

void store_state_free(struct store_state *st)
{
	if (!st)
		return;
	free(st->tokens);
	free(st->owned);
	free(st->generations);
	free(st->released);
	free(st->assocs);
	*st = (struct store_state){0};
}

int store_add(struct store_entry **v, size_t *n, const char *ifname, const struct in6_addr *token)
{
	struct store_entry *nv;

	if (!ifname)
		ifname = "";
	/* Cutting the name would name another interface. */
	if (strlen(ifname) >= sizeof(nv->ifname))
		return -EINVAL;
	nv = reallocarray(*v, *n + 1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	nv[*n] = (struct store_entry){.token = *token};
	strcpy(nv[*n].ifname, ifname);
	*v = nv;
	(*n)++;
	return 0;
}

bool store_contains(const struct store_entry *v, size_t n, const char *ifname,
		    const struct in6_addr *token)
{
	if (!ifname)
		ifname = "";
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].ifname, ifname) == 0 &&
		    memcmp(&v[i].token, token, sizeof(*token)) == 0)
			return true;
	return false;
}

/* ---- loading ---- */

static int read_all(int fd, char **ret, size_t *ret_len)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t k;

		if (len == cap) {
			char *nb;

			/* One byte past the limit tells a file that is too big
			 * from one exactly at it. */
			if (cap > STORE_FILE_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap = cap ? cap * 2 : 16384;
			if (cap > STORE_FILE_MAX + 1)
				cap = STORE_FILE_MAX + 1;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		k = read(fd, buf + len, cap - len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -errno;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	if (len > STORE_FILE_MAX) {
		free(buf);
		return -EFBIG;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* Parses the array `key` of root into *v. `one_per_interface`: the runtime
 * entries, of which an interface (or the global token) has at most one; the
 * owned records may hold several tokens per interface, but no record twice. */
static int parse_entries(const char *path, json_object *root, const char *key,
			 bool one_per_interface, struct store_entry **v, size_t *n,
			 char **ret_error)
{
	struct strmap seen = STRMAP_INIT;
	json_object *arr;
	size_t len;
	int r;

	if (!json_object_object_get_ex(root, key, &arr) || !arr)
		return 0; /* an empty list may be left out */
	if (!json_object_is_type(arr, json_type_array)) {
		set_error(ret_error, "%s: \"%s\" is not an array", path, key);
		return -EBADMSG;
	}
	len = json_object_array_length(arr);
	for (size_t i = 0; i < len; i++) {
		json_object *e = json_object_array_get_idx(arr, i), *jif, *jtok;
		const char *ifname = "", *text, *why = NULL;
		char key_text[IFNAMSIZ + INET6_ADDRSTRLEN + 2], canon[INET6_ADDRSTRLEN];
		struct in6_addr token;
		struct text_quoted q;
		size_t j;

		r = -EBADMSG;
		if (!json_object_is_type(e, json_type_object)) {
			set_error(ret_error, "%s: %s[%zu] is not an object", path, key, i);
			goto out;
		}
		if (!json_object_object_get_ex(e, "interface", &jif)) {
			set_error(ret_error, "%s: %s[%zu] has no \"interface\"", path, key, i);
			goto out;
		}
		if (jif) {
			if (!json_object_is_type(jif, json_type_string)) {
				set_error(ret_error,
					  "%s: %s[%zu]: \"interface\" is neither a string nor null",
					  path, key, i);
				goto out;
			}
			ifname = json_object_get_string(jif);
			if (addr_ifname_valid(ifname, &why) < 0) {
				set_error(ret_error,
					  "%s: %s[%zu]: invalid interface name \"%s\": %s", path,
					  key, i, text_quote(&q, ifname), why);
				goto out;
			}
		}
		if (!json_object_object_get_ex(e, "token", &jtok) ||
		    !json_object_is_type(jtok, json_type_string)) {
			set_error(ret_error, "%s: %s[%zu] has no \"token\" string", path, key, i);
			goto out;
		}
		text = json_object_get_string(jtok);
		if (addr_token_parse(text, &token, &why) < 0) {
			set_error(ret_error, "%s: %s[%zu]: invalid token \"%s\": %s", path, key, i,
				  text_quote(&q, text), why);
			goto out;
		}
		/* Duplicates through a map: thousands of entries load in
		 * linear time. One per interface, or each (interface, token)
		 * once. */
		inet_ntop(AF_INET6, &token, canon, sizeof(canon));
		snprintf(key_text, sizeof(key_text), "%s %s", ifname,
			 one_per_interface ? "" : canon);
		if (strmap_get(&seen, key_text, &j)) {
			if (one_per_interface)
				set_error(ret_error, "%s: %s[%zu]: a second entry for %s", path,
					  key, i, *ifname ? ifname : "the global token");
			else
				set_error(ret_error, "%s: %s[%zu] repeats %s[%zu]", path, key, i,
					  key, j);
			goto out;
		}
		r = strmap_put(&seen, key_text, i);
		if (r == 0)
			r = store_add(v, n, ifname, &token);
		if (r < 0) {
			set_error(ret_error, "%s: %s", path, strerror(-r));
			goto out;
		}
	}
	r = 0;
out:
	strmap_free(&seen);
	return r;
}

static bool json_u64(json_object *o, const char *key, uint64_t *ret)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	n = json_object_get_int64(v);
	if (n < 0)
		return false;
	*ret = (uint64_t)n;
	return true;
}

/* An optional list member, absent from files written before it existed.
 * 0 when absent or empty; 1 with room for *n elements in *ret; -EBADMSG when
 * the member is not a list; -ENOMEM. */
static int optional_list(json_object *root, const char *key, size_t size, json_object **arr,
			 size_t *n, void **ret)
{
	*n = 0;
	if (!json_object_object_get_ex(root, key, arr))
		return 0;
	if (!json_object_is_type(*arr, json_type_array))
		return -EBADMSG;
	*n = json_object_array_length(*arr);
	if (*n == 0)
		return 0;
	*ret = calloc(*n, size);
	return *ret ? 1 : -ENOMEM;
}

/* Files written before associations existed have no such members. */
static int parse_generations(const char *path, json_object *root, struct store_state *st,
			     char **ret_error)
{
	struct strmap names = STRMAP_INIT;
	json_object *arr;
	size_t n;
	int r = optional_list(root, "associations", sizeof(*st->generations), &arr, &n,
			      (void **)&st->generations);

	if (r == -EBADMSG)
		goto bad;
	if (r <= 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(arr, i), *name;
		struct store_generation *g = &st->generations[i];

		if (!json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, "name", &name) ||
		    !json_object_is_type(name, json_type_string) ||
		    strlen(json_object_get_string(name)) >= sizeof(g->name) ||
		    !json_u64(o, "out_generation", &g->out_gen) ||
		    !json_u64(o, "in_generation", &g->in_gen))
			goto bad;
		snprintf(g->name, sizeof(g->name), "%s", json_object_get_string(name));
		if (strmap_put(&names, g->name, i) < 0) /* a name seen before, or no memory */
			goto bad;
		st->n_generations++;
	}
	strmap_free(&names);
	return 0;
bad:
	strmap_free(&names);
	set_error(ret_error,
		  "%s: \"associations\" is not a list of {name, out_generation, "
		  "in_generation} with unique names",
		  path);
	return -EBADMSG;
}

static int parse_released(const char *path, json_object *root, struct store_state *st,
			  char **ret_error)
{
	json_object *arr;
	size_t n;
	int r = optional_list(root, "released", sizeof(*st->released), &arr, &n,
			      (void **)&st->released);

	if (r == -EBADMSG)
		goto bad;
	if (r <= 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(arr, i);
		int64_t num;

		if (!json_object_is_type(v, json_type_int))
			goto bad;
		num = json_object_get_int64(v);
		if (num < 1 || num > 65535)
			goto bad;
		st->released[st->n_released++] = (uint32_t)num;
	}
	return 0;
bad:
	set_error(ret_error, "%s: \"released\" is not a list of association numbers", path);
	return -EBADMSG;
}

static int parse_assocs(const char *path, json_object *root, struct store_state *st,
			char **ret_error)
{
	json_object *arr;
	const char *field, *why = "";
	size_t n;
	int r = optional_list(root, "runtime_associations", sizeof(*st->assocs), &arr, &n,
			      (void **)&st->assocs);

	if (r == -EBADMSG) {
		set_error(ret_error, "%s: \"runtime_associations\" is not a list", path);
		return r;
	}
	if (r <= 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (assoc_def_from_json(json_object_array_get_idx(arr, i), &st->assocs[i], &field,
					&why) < 0) {
			struct text_quoted q;

			/* An unknown field is named by its key, as found in the file. */
			set_error(ret_error, "%s: runtime association %zu: %s%s%s", path, i + 1,
				  field ? text_quote(&q, field) : "", field ? ": " : "", why);
			return -EBADMSG;
		}
		st->n_assocs++;
	}
	return 0;
}

static int parse_state(const char *path, const char *buf, size_t len, struct store_state *st,
		       char **ret_error)
{
	json_object *root = NULL, *jv;
	enum json_tokener_error jerr;
	json_tokener *tok;
	const char *format;
	int64_t version;
	size_t end;
	int r;

	if (len == 0) {
		set_error(ret_error, "%s: empty file, not a tokend state file", path);
		return -EBADMSG;
	}
	tok = json_tokener_new();
	if (!tok) {
		set_error(ret_error, "%s: %s", path, strerror(ENOMEM));
		return -ENOMEM;
	}
	/* json-c takes an int length; the size limit keeps len far below it. */
	root = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue) {
		set_error(ret_error, "%s: not valid JSON: the file ends in the middle (truncated?)",
			  path);
		r = -EBADMSG;
		goto out;
	}
	if (jerr != json_tokener_success) {
		set_error(ret_error, "%s: not valid JSON: %s at byte %zu", path,
			  json_tokener_error_desc(jerr), end);
		r = -EBADMSG;
		goto out;
	}
	for (; end < len; end++)
		if (!strchr(" \t\r\n", buf[end])) {
			set_error(ret_error, "%s: not valid JSON: unexpected data at byte %zu",
				  path, end);
			r = -EBADMSG;
			goto out;
		}
	if (!json_object_is_type(root, json_type_object)) {
		set_error(ret_error, "%s: not a tokend state file (not a JSON object)", path);
		r = -EBADMSG;
		goto out;
	}
	if (!json_object_object_get_ex(root, "format", &jv) ||
	    !json_object_is_type(jv, json_type_string) ||
	    strcmp((format = json_object_get_string(jv)), STORE_FORMAT) != 0) {
		set_error(ret_error, "%s: not a tokend state file (no \"format\": \"%s\")", path,
			  STORE_FORMAT);
		r = -EBADMSG;
		goto out;
	}
	if (!json_object_object_get_ex(root, "version", &jv) ||
	    !json_object_is_type(jv, json_type_int)) {
		set_error(ret_error, "%s: no integer \"version\"", path);
		r = -EBADMSG;
		goto out;
	}
	version = json_object_get_int64(jv);
	if (version != STORE_VERSION) {
		set_error(ret_error,
			  "%s: unsupported version %" PRId64 " (this tokend reads version %d)",
			  path, version, STORE_VERSION);
		r = -EBADMSG;
		goto out;
	}
	r = parse_entries(path, root, "tokens", true, &st->tokens, &st->n_tokens, ret_error);
	if (r < 0)
		goto out;
	r = parse_entries(path, root, "owned", false, &st->owned, &st->n_owned, ret_error);
	if (r < 0)
		goto out;
	r = parse_generations(path, root, st, ret_error);
	if (r < 0)
		goto out;
	r = parse_released(path, root, st, ret_error);
	if (r < 0)
		goto out;
	r = parse_assocs(path, root, st, ret_error);
out:
	json_object_put(root);
	return r;
}

int store_load(const char *path, struct store_state *ret, char **ret_error)
{
	struct store_state st = {0};
	size_t len = 0;
	char *buf = NULL;
	struct stat sb;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT) {
			*ret = st;
			return 0;
		}
		r = -errno;
		set_error(ret_error, "cannot read %s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &sb) < 0) {
		r = -errno;
		set_error(ret_error, "cannot read %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	if (!S_ISREG(sb.st_mode)) {
		r = S_ISDIR(sb.st_mode) ? -EISDIR : -EBADMSG;
		set_error(ret_error, "cannot read %s: not a regular file", path);
		close(fd);
		return r;
	}
	/* Checked before reading, and again while reading for a file that grows. */
	if (sb.st_size > (off_t)STORE_FILE_MAX)
		r = -EFBIG;
	else
		r = read_all(fd, &buf, &len);
	close(fd);
	if (r == -EFBIG) {
		set_error(ret_error, "cannot read %s: larger than %u MiB, not a tokend state file",
			  path, STORE_FILE_MAX / (1024 * 1024));
		return r;
	}
	if (r < 0) {
		set_error(ret_error, "cannot read %s: %s", path, strerror(-r));
		return r;
	}
	r = parse_state(path, buf, len, &st, ret_error);
	free(buf);
	if (r < 0) {
		store_state_free(&st);
		return r;
	}
	*ret = st;
	return 0;
}

/* ---- saving ---- */

static int entries_to_json(const struct store_entry *v, size_t n, json_object **ret)
{
	json_object *arr = json_object_new_array();

	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char buf[ADDR_TOKEN_STRLEN];
		json_object *e, *jif = NULL, *jtok;
		const char *why;

		/* A caller's bug, but one that would make the file unreadable. */
		if (v[i].ifname[0] && addr_ifname_valid(v[i].ifname, &why) < 0) {
			json_object_put(arr);
			return -EINVAL;
		}
		e = json_object_new_object();
		if (!e || json_object_array_add(arr, e) < 0) {
			json_object_put(e);
			json_object_put(arr);
			return -ENOMEM;
		}
		if (v[i].ifname[0]) {
			jif = json_object_new_string(v[i].ifname);
			if (!jif)
				goto oom;
		}
		/* NULL is json-c's JSON null. */
		if (json_object_object_add(e, "interface", jif) < 0) {
			json_object_put(jif);
			goto oom;
		}
		jtok = json_object_new_string(addr_format(&v[i].token, buf, sizeof(buf)));
		if (!jtok)
			goto oom;
		if (json_object_object_add(e, "token", jtok) < 0) {
			json_object_put(jtok);
			goto oom;
		}
	}
	*ret = arr;
	return 0;
oom:
	json_object_put(arr);
	return -ENOMEM;
}

/* Adds `val` to `obj`, consuming it either way. */
static int add_member(json_object *obj, const char *key, json_object *val)
{
	if (!val)
		return -ENOMEM;
	if (json_object_object_add(obj, key, val) < 0) {
		json_object_put(val);
		return -ENOMEM;
	}
	return 0;
}

static json_object *generations_to_json(const struct store_state *st)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; arr && i < st->n_generations; i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(st->generations[i].name));
		json_object_object_add(o, "out_generation",
				       json_object_new_int64((int64_t)st->generations[i].out_gen));
		json_object_object_add(o, "in_generation",
				       json_object_new_int64((int64_t)st->generations[i].in_gen));
		json_object_array_add(arr, o);
	}
	return arr;
}

static json_object *released_to_json(const struct store_state *st)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; arr && i < st->n_released; i++)
		json_object_array_add(arr, json_object_new_int64(st->released[i]));
	return arr;
}

static int state_to_text(const struct store_state *st, char **ret)
{
	json_object *root, *tokens = NULL, *owned = NULL;
	const char *text;
	int r;

	root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	r = add_member(root, "format", json_object_new_string(STORE_FORMAT));
	if (r < 0)
		goto out;
	r = add_member(root, "version", json_object_new_int(STORE_VERSION));
	if (r < 0)
		goto out;
	r = entries_to_json(st->tokens, st->n_tokens, &tokens);
	if (r < 0)
		goto out;
	r = add_member(root, "tokens", tokens);
	if (r < 0)
		goto out;
	r = entries_to_json(st->owned, st->n_owned, &owned);
	if (r < 0)
		goto out;
	r = add_member(root, "owned", owned);
	if (r < 0)
		goto out;
	r = add_member(root, "associations", generations_to_json(st));
	if (r < 0)
		goto out;
	r = add_member(root, "released", released_to_json(st));
	if (r < 0)
		goto out;
	{
		json_object *arr = json_object_new_array();
		for (size_t i = 0; arr && i < st->n_assocs; i++)
			json_object_array_add(arr, assoc_def_to_json(&st->assocs[i]));
		r = add_member(root, "runtime_associations", arr);
		if (r < 0)
			goto out;
	}
	text =
	    json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(ret, "%s\n", text) < 0)
		r = -ENOMEM;
out:
	json_object_put(root);
	return r;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t k = write(fd, buf, len);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		buf += k;
		len -= (size_t)k;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd, r = 0;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int store_remove_temps(const char *path)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
	size_t blen = strlen(base);
	struct dirent *e;
	int dfd, removed = 0;
	DIR *dp;

	if (!dir)
		return -ENOMEM;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (dfd < 0)
		return -errno;
	dp = fdopendir(dfd);
	if (!dp) {
		int r = -errno;
		close(dfd);
		return r;
	}
	/* Exactly what store_save names them: "." base "." and mkostemp's six
	 * characters; regular files only (lstat: a link is not followed). */
	while ((e = readdir(dp))) {
		struct stat st;

		if (e->d_name[0] != '.' || strncmp(e->d_name + 1, base, blen) != 0 ||
		    e->d_name[1 + blen] != '.' || strlen(e->d_name + 2 + blen) != 6)
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0)
			removed++;
	}
	closedir(dp);
	return removed;
}

int store_save(const char *path, const struct store_state *st, char **ret_error)
{
	char *text = NULL, *dir = NULL, *tmp = NULL;
	const char *slash, *base;
	int fd = -1, r;

	r = state_to_text(st, &text);
	if (r < 0)
		goto fail;

	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	if (!*base) {
		r = -EISDIR;
		goto fail;
	}
	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	/* Same directory, so that rename() is atomic; hidden, so that nobody
	 * takes a leftover for the real file. */
	if (!dir || asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		r = -ENOMEM;
		goto fail;
	}
	/* mkostemp opens with O_CREAT|O_EXCL and mode 0600 under a new name. */
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	/* Whatever the umask: the file says which tokens tokend owns. */
	if (fchmod(fd, 0600) < 0) {
		r = -errno;
		goto fail;
	}
	r = write_all(fd, text, strlen(text));
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	r = close(fd);
	fd = -1;
	if (r < 0) {
		r = -errno;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	free(tmp);
	tmp = NULL;
	/* The rename is durable only once the directory is. Should that fail, the
	 * new file is in place but may not survive a crash: still a failure for
	 * the caller, who must not promise the change is kept. */
	r = fsync_dir(dir);
	if (r < 0) {
		set_error(ret_error, "cannot write %s: syncing its directory: %s", path,
			  strerror(-r));
		goto out;
	}
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	set_error(ret_error, "cannot write %s: %s", path, strerror(-r));
out:
	free(text);
	free(dir);
	return r;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct store_entry *x = a, *y = b;
	int c = strcmp(x->ifname, y->ifname);
	return c ? c : memcmp(&x->token, &y->token, sizeof(x->token));
}

void store_state_sort(struct store_state *st)
{
	if (st->n_tokens)
		qsort(st->tokens, st->n_tokens, sizeof(*st->tokens), entry_cmp);
	if (st->n_owned)
		qsort(st->owned, st->n_owned, sizeof(*st->owned), entry_cmp);
}

static int entries_copy(const struct store_entry *src, size_t n, struct store_entry **dst)
{
	*dst = NULL;
	if (n == 0)
		return 0;
	*dst = malloc(n * sizeof(**dst));
	if (!*dst)
		return -ENOMEM;
	memcpy(*dst, src, n * sizeof(**dst));
	return 0;
}

static void *copy_array(const void *src, size_t n, size_t size, bool *failed)
{
	void *p;

	if (n == 0)
		return NULL;
	p = malloc(n * size);
	if (!p) {
		*failed = true;
		return NULL;
	}
	memcpy(p, src, n * size);
	return p;
}

int store_state_copy(const struct store_state *src, struct store_state *dst)
{
	bool failed = false;

	*dst = (struct store_state){.n_tokens = src->n_tokens,
				    .n_owned = src->n_owned,
				    .n_generations = src->n_generations,
				    .n_released = src->n_released};
	dst->generations =
	    copy_array(src->generations, src->n_generations, sizeof(*src->generations), &failed);
	dst->released = copy_array(src->released, src->n_released, sizeof(*src->released), &failed);
	dst->n_assocs = src->n_assocs;
	dst->assocs = copy_array(src->assocs, src->n_assocs, sizeof(*src->assocs), &failed);
	if (failed || entries_copy(src->tokens, src->n_tokens, &dst->tokens) < 0 ||
	    entries_copy(src->owned, src->n_owned, &dst->owned) < 0) {
		store_state_free(dst);
		return -ENOMEM;
	}
	return 0;
}

int store_remove(struct store_entry **v, size_t *n, const char *ifname)
{
	size_t w = 0, before = *n;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i].ifname, ifname) != 0)
			(*v)[w++] = (*v)[i];
	*n = w;
	return before == w ? -ENOENT : 0;
}
