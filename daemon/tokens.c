/* SPDX-License-Identifier: MIT */
#include "tokens.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"
#include "event.h"
#include "log.h"

#define CONTEST_MAX 64

enum token_state {
	TS_NONE,
	TS_PENDING,
	TS_APPLIED,
	TS_ABSENT,
	TS_BLOCKED,
	TS_UNSUPPORTED,
	TS_CONTESTED,
	TS_REMOVING,
};

static const char *const state_names[] = {
    [TS_NONE] = "none",		  [TS_PENDING] = "pending",   [TS_APPLIED] = "applied",
    [TS_ABSENT] = "absent",	  [TS_BLOCKED] = "blocked",   [TS_UNSUPPORTED] = "unsupported",
    [TS_CONTESTED] = "contested", [TS_REMOVING] = "removing",
};

/* An interface as the kernel last described it. */
struct link {
	int ifindex;
	char name[IF_NAMESIZE];
	unsigned flags;
	bool has_inet6;
	struct in6_addr token;
	struct rtnl_inet6_conf conf;
	struct in6_addr *addrs; /* global-scope IPv6 addresses */
	size_t n_addrs;
	bool seen;
};

/* What tokend is doing about one interface name. */
struct binding {
	char name[IF_NAMESIZE];
	enum token_state state;
	char reason[384];
	struct in6_addr target; /* the token being held (:: while removing) */
	bool has_target;
	int reached_ifindex; /* the kernel held target on this ifindex */
	bool contested;
	uint64_t repairs[CONTEST_MAX];
	unsigned n_repairs;
	uint64_t retry_at;
	uint64_t backoff;
	bool dirty;
	bool link_changed; /* the interface changed: a blocked entry is tried now */
	bool inflight;
	struct log_ratelimit rl;
};

struct vec {
	void **v;
	size_t n, cap;
};

struct tokens {
	struct tokens_settings set;
	char run_prefix[256];
	const struct config *config;
	struct store_state state;
	bool degraded;
	struct vec links_by_index;
	struct vec links_by_name;
	struct vec bindings; /* by name */
	bool any_dirty;
	unsigned long long repairs;
};

/* --- sorted pointer vectors ------------------------------------------- */

typedef int (*vec_cmp_t)(const void *key, const void *elem);

static size_t vec_lower(const struct vec *v, const void *key, vec_cmp_t cmp, bool *found)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp(key, v->v[mid]);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*found = false;
	return lo;
}

static void *vec_find(const struct vec *v, const void *key, vec_cmp_t cmp)
{
	bool found;
	size_t i = vec_lower(v, key, cmp, &found);

	return found ? v->v[i] : NULL;
}

static int vec_insert(struct vec *v, const void *key, vec_cmp_t cmp, void *elem)
{
	bool found;
	size_t i = vec_lower(v, key, cmp, &found);

	if (found)
		return -EEXIST;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		void **p = realloc(v->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	memmove(v->v + i + 1, v->v + i, (v->n - i) * sizeof(*v->v));
	v->v[i] = elem;
	v->n++;
	return 0;
}

static void vec_remove(struct vec *v, const void *key, vec_cmp_t cmp)
{
	bool found;
	size_t i = vec_lower(v, key, cmp, &found);

	if (!found)
		return;
	memmove(v->v + i, v->v + i + 1, (v->n - i - 1) * sizeof(*v->v));
	v->n--;
}

static int cmp_link_index(const void *key, const void *elem)
{
	int a = *(const int *)key, b = ((const struct link *)elem)->ifindex;
	return (a > b) - (a < b);
}

static int cmp_link_name(const void *key, const void *elem)
{
	return strcmp(key, ((const struct link *)elem)->name);
}

static int cmp_binding(const void *key, const void *elem)
{
	return strcmp(key, ((const struct binding *)elem)->name);
}

/* --- lookups ------------------------------------------------------------ */

static const struct store_entry *runtime_find(const struct store_state *st, const char *ifname)
{
	/* tokens[] is kept sorted by name, one entry per name. */
	size_t lo = 0, hi = st->n_tokens;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ifname, st->tokens[mid].ifname);
		if (c == 0)
			return &st->tokens[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct store_entry *tokens_runtime_entry(const struct tokens *t, const char *ifname)
{
	return runtime_find(&t->state, ifname);
}

const struct config_token *tokens_config_entry(const struct tokens *t, const char *ifname)
{
	if (!t->config)
		return NULL;
	if (ifname[0] == '\0')
		return t->config->has_global ? &t->config->global : NULL;
	return config_find_token(t->config, ifname);
}

static const struct in6_addr *global_token(const struct tokens *t, const char **where)
{
	const struct store_entry *e;

	if (t->config && t->config->has_global) {
		*where = t->config->global.where;
		return &t->config->global.token;
	}
	e = runtime_find(&t->state, "");
	*where = NULL;
	return e ? &e->token : NULL;
}

static bool global_matches(const struct tokens *t, const struct link *l)
{
	static char *const match_all[] = {"*", NULL};
	char *const *m = t->config && t->config->match ? t->config->match : match_all;

	/* Loopback can never take a token; the global token skips it quietly. */
	if (l->flags & IFF_LOOPBACK)
		return false;
	for (; *m; m++)
		if (fnmatch(*m, l->name, 0) == 0)
			return true;
	return false;
}

static struct link *link_by_name(const struct tokens *t, const char *name)
{
	return vec_find(&t->links_by_name, name, cmp_link_name);
}

/* The token wanted on a name; *origin_global and *where say where from. */
static const struct in6_addr *desired(const struct tokens *t, const char *name, bool *origin_global,
				      const char **where)
{
	const struct config_token *c = tokens_config_entry(t, name);
	const struct store_entry *e;
	const struct link *l;
	const struct in6_addr *g;

	*origin_global = false;
	*where = NULL;
	if (name[0] == '\0')
		return NULL;
	if (c) {
		*where = c->where;
		return &c->token;
	}
	e = runtime_find(&t->state, name);
	if (e)
		return &e->token;
	l = link_by_name(t, name);
	g = global_token(t, where);
	if (g && l && global_matches(t, l)) {
		*origin_global = true;
		return g;
	}
	*where = NULL;
	return NULL;
}

const struct in6_addr *tokens_desired(const struct tokens *t, const char *ifname)
{
	bool g;
	const char *w;
	return desired(t, ifname, &g, &w);
}

/* Did tokend put this token on this name (now or in an earlier life)? */
static bool owned(const struct tokens *t, const char *name, const struct in6_addr *token)
{
	return store_contains(t->state.owned, t->state.n_owned, name, token) ||
	       store_contains(t->state.owned, t->state.n_owned, "", token);
}

/* --- bindings ---------------------------------------------------------- */

static struct binding *binding_get(struct tokens *t, const char *name, bool create)
{
	struct binding *b = vec_find(&t->bindings, name, cmp_binding);

	if (b || !create)
		return b;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->rl = LOG_RATELIMIT_INIT(60ULL * 1000000ULL, 3);
	if (vec_insert(&t->bindings, b->name, cmp_binding, b) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

static void binding_drop(struct tokens *t, struct binding *b)
{
	vec_remove(&t->bindings, b->name, cmp_binding);
	free(b);
}

static void mark_dirty(struct tokens *t, const char *name)
{
	struct binding *b;

	if (name[0] == '\0')
		return;
	b = binding_get(t, name, true);
	if (!b)
		return; /* out of memory: the periodic reconcile catches up */
	b->dirty = true;
	t->any_dirty = true;
}

static void mark_all_dirty(struct tokens *t)
{
	for (size_t i = 0; i < t->links_by_name.n; i++)
		mark_dirty(t, ((struct link *)t->links_by_name.v[i])->name);
	for (size_t i = 0; t->config && i < t->config->n_tokens; i++)
		mark_dirty(t, t->config->tokens[i].ifname);
	for (size_t i = 0; i < t->state.n_tokens; i++)
		mark_dirty(t, t->state.tokens[i].ifname);
	for (size_t i = 0; i < t->bindings.n; i++)
		((struct binding *)t->bindings.v[i])->dirty = true;
	t->any_dirty = true;
}

static void binding_set_state(struct binding *b, enum token_state s, const char *reason)
{
	/* Applied, blocked and contested have lines of their own. */
	if (s != b->state && (s == TS_UNSUPPORTED || (s == TS_ABSENT && b->state != TS_NONE)))
		event_emit(LOG_INFO, EVENT_TOKEN, b->name, state_names[s], "%s: token %s%s%s",
			   b->name, state_names[s],
			   s == TS_ABSENT ? ": the interface is gone; it is set again when "
					    "the interface returns"
					  : ": ",
			   s == TS_ABSENT ? ""
			   : reason	  ? reason
					  : "");
	b->state = s;
	snprintf(b->reason, sizeof(b->reason), "%s", reason ? reason : "");
}

/* --- life cycle -------------------------------------------------------- */

int tokens_new(const struct tokens_settings *s, struct tokens **ret)
{
	struct tokens *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	tokens_set_settings(t, s);
	*ret = t;
	return 0;
}

static void link_free(struct link *l)
{
	if (!l)
		return;
	free(l->addrs);
	free(l);
}

void tokens_free(struct tokens *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->links_by_index.n; i++)
		link_free(t->links_by_index.v[i]);
	for (size_t i = 0; i < t->bindings.n; i++)
		free(t->bindings.v[i]);
	free(t->links_by_index.v);
	free(t->links_by_name.v);
	free(t->bindings.v);
	store_state_free(&t->state);
	free(t);
}

void tokens_set_settings(struct tokens *t, const struct tokens_settings *s)
{
	t->set = *s;
	snprintf(t->run_prefix, sizeof(t->run_prefix), "%s", s->run_prefix ? s->run_prefix : "");
	t->set.run_prefix = t->run_prefix;
	if (t->set.contest_repairs > CONTEST_MAX)
		t->set.contest_repairs = CONTEST_MAX;
}

/* Remember every name whose desired token may change, before and after. */
static void mark_desired_names(struct tokens *t)
{
	for (size_t i = 0; t->config && i < t->config->n_tokens; i++)
		mark_dirty(t, t->config->tokens[i].ifname);
	for (size_t i = 0; i < t->state.n_tokens; i++)
		mark_dirty(t, t->state.tokens[i].ifname);
	/* The global token may apply to any link. */
	for (size_t i = 0; i < t->links_by_name.n; i++)
		mark_dirty(t, ((struct link *)t->links_by_name.v[i])->name);
}

/* After the desired set changed: a binding whose wanted token changed is
 * no longer contested (a config change resumes it). */
static void refresh_targets(struct tokens *t)
{
	for (size_t i = 0; i < t->bindings.n; i++) {
		struct binding *b = t->bindings.v[i];
		const struct in6_addr *want = tokens_desired(t, b->name);

		if (b->contested && (!want || memcmp(want, &b->target, sizeof(*want)) != 0)) {
			b->contested = false;
			b->n_repairs = 0;
		}
	}
}

void tokens_set_config(struct tokens *t, const struct config *c)
{
	mark_desired_names(t);
	t->config = c;
	mark_desired_names(t);
	refresh_targets(t);
}

void tokens_set_state(struct tokens *t, struct store_state *st)
{
	mark_desired_names(t);
	store_state_free(&t->state);
	t->state = *st;
	*st = (struct store_state){0};
	store_state_sort(&t->state);
	mark_desired_names(t);
	refresh_targets(t);
}

const struct store_state *tokens_state(const struct tokens *t)
{
	return &t->state;
}

void tokens_set_degraded(struct tokens *t, bool degraded)
{
	t->degraded = degraded;
}

unsigned tokens_resume(struct tokens *t, const char *ifname, json_object *names)
{
	unsigned n = 0;

	for (size_t i = 0; i < t->bindings.n; i++) {
		struct binding *b = t->bindings.v[i];

		if (!b->contested || (ifname && strcmp(ifname, b->name) != 0))
			continue;
		b->contested = false;
		b->n_repairs = 0;
		b->dirty = true;
		t->any_dirty = true;
		if (names)
			json_object_array_add(names, json_object_new_string(b->name));
		event_emit(LOG_INFO, EVENT_TOKEN, b->name, "resumed",
			   "%s: resumed repairing the token", b->name);
		n++;
	}
	return n;
}

/* --- the observed set -------------------------------------------------- */

static bool same_token(const struct in6_addr *a, const struct in6_addr *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static const char *token_or_none(const char *text, const struct in6_addr *a)
{
	return addr_token_is_zero(a) ? "none" : text;
}

/* Someone else changed a token tokend had in place: count it, and give up
 * repairing when it keeps happening. */
static void note_drift(struct tokens *t, struct binding *b, const struct link *l, uint64_t now)
{
	char have[ADDR_TOKEN_STRLEN], want[ADDR_TOKEN_STRLEN];
	unsigned w = 0;

	addr_format(&l->token, have, sizeof(have));
	addr_format(&b->target, want, sizeof(want));
	for (unsigned i = 0; i < b->n_repairs; i++)
		if (now - b->repairs[i] < t->set.contest_window_usec)
			b->repairs[w++] = b->repairs[i];
	b->n_repairs = w;
	if (b->n_repairs < CONTEST_MAX)
		b->repairs[b->n_repairs++] = now;
	b->reached_ifindex = 0;

	if (b->n_repairs >= t->set.contest_repairs) {
		char why[384];

		snprintf(why, sizeof(why),
			 "another program changed the token %u times within %gs (last to %s); "
			 "tokend stopped repairing it: stop the other manager, then run "
			 "'tokenctl resume dev %s'",
			 b->n_repairs, (double)t->set.contest_window_usec / 1e6,
			 token_or_none(have, &l->token), b->name);
		b->contested = true;
		binding_set_state(b, TS_CONTESTED, why);
		event_emit(LOG_WARNING, EVENT_TOKEN, b->name, "contested",
			   "%s: token %s is contested: %s", b->name, want, why);
		return;
	}
	t->repairs++;
	event_emit(LOG_INFO, EVENT_TOKEN, b->name, "repairing",
		   "%s: token changed behind tokend's back (kernel has %s), restoring %s", b->name,
		   token_or_none(have, &l->token), want);
}

static void link_rename(struct tokens *t, struct link *l, const char *name)
{
	vec_remove(&t->links_by_name, l->name, cmp_link_name);
	mark_dirty(t, l->name);
	snprintf(l->name, sizeof(l->name), "%s", name);
	if (vec_insert(&t->links_by_name, l->name, cmp_link_name, l) < 0) {
		/* Two ifindexes claim one name: the kernel renamed them in
		 * quick succession and we read one message late. The next
		 * messages or the periodic re-read sort it out. */
		log_debug("%s: name already known for another ifindex", name);
	}
}

void tokens_link_update(struct tokens *t, const struct rtnl_link *m, uint64_t now)
{
	struct link *l = vec_find(&t->links_by_index, &m->ifindex, cmp_link_index);
	struct binding *b;

	if (!l) {
		if (m->ifname[0] == '\0')
			return;
		l = calloc(1, sizeof(*l));
		if (!l)
			return;
		l->ifindex = m->ifindex;
		snprintf(l->name, sizeof(l->name), "%s", m->ifname);
		if (vec_insert(&t->links_by_index, &l->ifindex, cmp_link_index, l) < 0) {
			free(l);
			return;
		}
		/* A stale entry under the same name (an ifindex we missed the
		 * deletion of) gives way to the newer one. */
		struct link *old = link_by_name(t, l->name);
		if (old) {
			int idx = old->ifindex;
			tokens_link_delete(t, idx);
		}
		vec_insert(&t->links_by_name, l->name, cmp_link_name, l);
	} else if (m->ifname[0] && strcmp(m->ifname, l->name) != 0) {
		link_rename(t, l, m->ifname);
	}
	l->seen = true;
	l->flags = m->flags;
	if (m->conf.accept_ra != INT_MIN)
		l->conf = m->conf;
	if (m->has_inet6) {
		l->has_inet6 = true;
		l->token = m->token;
	}

	b = binding_get(t, l->name, false);
	if (b && b->has_target && b->reached_ifindex == l->ifindex && l->has_inet6 &&
	    !same_token(&l->token, &b->target) && !b->contested && !b->inflight)
		note_drift(t, b, l, now);
	if (b)
		b->link_changed = true;
	mark_dirty(t, l->name);
}

void tokens_link_delete(struct tokens *t, int ifindex)
{
	struct link *l = vec_find(&t->links_by_index, &ifindex, cmp_link_index);
	struct binding *b;

	if (!l)
		return;
	vec_remove(&t->links_by_index, &ifindex, cmp_link_index);
	if (link_by_name(t, l->name) == l)
		vec_remove(&t->links_by_name, l->name, cmp_link_name);
	b = binding_get(t, l->name, false);
	if (b && b->reached_ifindex == ifindex)
		b->reached_ifindex = 0;
	mark_dirty(t, l->name);
	link_free(l);
}

void tokens_addr_update(struct tokens *t, const struct rtnl_addr *a, bool deleted)
{
	struct link *l = vec_find(&t->links_by_index, &a->ifindex, cmp_link_index);
	size_t i;

	/* Only global addresses can show what a token produced. */
	if (!l || a->scope != RT_SCOPE_UNIVERSE)
		return;
	for (i = 0; i < l->n_addrs; i++)
		if (same_token(&l->addrs[i], &a->addr))
			break;
	if (deleted) {
		if (i < l->n_addrs)
			l->addrs[i] = l->addrs[--l->n_addrs];
		return;
	}
	if (i < l->n_addrs)
		return;
	struct in6_addr *p = realloc(l->addrs, (l->n_addrs + 1) * sizeof(*p));
	if (!p)
		return;
	l->addrs = p;
	l->addrs[l->n_addrs++] = a->addr;
}

void tokens_resync_begin(struct tokens *t)
{
	for (size_t i = 0; i < t->links_by_index.n; i++) {
		struct link *l = t->links_by_index.v[i];
		l->seen = false;
		l->n_addrs = 0; /* the address dump refills them */
	}
}

void tokens_resync_end(struct tokens *t)
{
	for (size_t i = 0; i < t->links_by_index.n;) {
		struct link *l = t->links_by_index.v[i];
		if (!l->seen) {
			tokens_link_delete(t, l->ifindex);
			continue;
		}
		i++;
	}
	mark_all_dirty(t);
}

/* --- reasons ------------------------------------------------------------ */

static bool file_has(const char *path, const char *needle)
{
	char buf[4096];
	FILE *f = fopen(path, "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(buf, sizeof(buf), f))
		found = strstr(buf, needle) != NULL;
	fclose(f);
	return found;
}

/* Another manager that handles router advertisements itself turns the
 * kernel's RA handling off; point at its own token setting instead. */
static const char *other_manager_hint(const struct tokens *t, const struct link *l)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/run/systemd/netif/links/%d", t->run_prefix, l->ifindex);
	if (file_has(path, "NETWORK_FILE="))
		return "the link is managed by systemd-networkd, which handles router "
		       "advertisements itself: set Token= in the [IPv6AcceptRA] section of its "
		       ".network file instead";
	snprintf(path, sizeof(path), "%s/run/NetworkManager/devices/%d", t->run_prefix, l->ifindex);
	if (access(path, F_OK) == 0)
		return "the link is managed by NetworkManager: set the connection's ipv6.token "
		       "property (nmcli connection modify ID ipv6.token TOKEN) instead";
	return NULL;
}

/* Why the kernel refused, in words: its own text where it gave one, and
 * which setting to change. */
/* A sysctl of the link as it is now: they change without a netlink event,
 * so what the last link message said may be stale. */
static int read_conf(const char *ifname, const char *key, int cached)
{
	char path[128], buf[32];
	FILE *f;
	int v;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/%s", ifname, key);
	f = fopen(path, "re");
	if (!f)
		return cached;
	if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%d", &v) != 1)
		v = cached;
	fclose(f);
	return v;
}

static void describe_refusal(const struct tokens *t, const struct link *cached,
			     const struct nl_ack *ack, char *buf, size_t len)
{
	const char *hint = NULL, *other = NULL;
	struct link fresh, *l = NULL;
	char tmp[256];

	if (cached) {
		fresh = *cached;
		fresh.conf.forwarding =
		    read_conf(cached->name, "forwarding", cached->conf.forwarding);
		fresh.conf.accept_ra = read_conf(cached->name, "accept_ra", cached->conf.accept_ra);
		fresh.conf.rtr_solicits =
		    read_conf(cached->name, "router_solicitations", cached->conf.rtr_solicits);
		l = &fresh;
	}
	if (l && ack->error == -EINVAL) {
		if (l->flags & IFF_NOARP) {
			snprintf(tmp, sizeof(tmp),
				 "no neighbour discovery on %s (NOARP); "
				 "'ip link set %s arp on' lifts it",
				 l->name, l->name);
			hint = tmp;
		} else if (l->conf.forwarding > 0 && l->conf.accept_ra == 1) {
			snprintf(tmp, sizeof(tmp),
				 "router advertisements are not accepted: forwarding "
				 "is on, so net.ipv6.conf.%s.accept_ra must be 2",
				 l->name);
			hint = tmp;
		} else if (l->conf.accept_ra == 0) {
			snprintf(tmp, sizeof(tmp),
				 "router advertisements are not accepted "
				 "(net.ipv6.conf.%s.accept_ra is 0)",
				 l->name);
			hint = tmp;
			other = other_manager_hint(t, l);
		} else if (l->conf.rtr_solicits == 0) {
			snprintf(tmp, sizeof(tmp),
				 "router solicitations are off "
				 "(net.ipv6.conf.%s.router_solicitations is 0)",
				 l->name);
			hint = tmp;
		}
	}
	if (ack->msg[0] && hint)
		snprintf(buf, len, "%s: %s%s%s", ack->msg, hint, other ? "; " : "",
			 other ? other : "");
	else if (ack->msg[0])
		snprintf(buf, len, "%s", ack->msg);
	else if (hint)
		snprintf(buf, len, "%s%s%s", hint, other ? "; " : "", other ? other : "");
	else
		snprintf(buf, len, "%s", strerror(-ack->error));
}

/* --- reconcile ---------------------------------------------------------- */

struct plan {
	struct tokens_action *v;
	size_t n, cap;
};

static int plan_add(struct plan *p, const struct link *l, const struct in6_addr *token)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct tokens_action *v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n] = (struct tokens_action){.ifindex = l->ifindex, .token = *token};
	snprintf(p->v[p->n].ifname, sizeof(p->v[p->n].ifname), "%s", l->name);
	p->n++;
	return 0;
}

static bool retry_due(const struct binding *b, uint64_t now)
{
	return b->retry_at == 0 || now >= b->retry_at;
}

/* Nothing is wanted on this name: clear the kernel's token only when tokend
 * put it there. Returns true when the binding is still needed. */
static bool reconcile_absent_want(struct tokens *t, struct binding *b, struct link *l, uint64_t now,
				  struct plan *p)
{
	static const struct in6_addr none;

	b->has_target = false;
	b->contested = false;
	b->n_repairs = 0;
	if (!l || !l->has_inet6 || addr_token_is_zero(&l->token) || !owned(t, b->name, &l->token))
		return false;
	/* In degraded mode tokend does not know its full set: remove nothing. */
	if (t->degraded)
		return false;
	if (b->state == TS_REMOVING && !retry_due(b, now) && !b->link_changed)
		return true;
	b->link_changed = false;
	if (plan_add(p, l, &none) < 0)
		return true;
	b->inflight = true;
	if (b->state != TS_REMOVING)
		binding_set_state(b, TS_REMOVING, NULL);
	return true;
}

/* Returns true when the binding is still needed. */
static bool reconcile_one(struct tokens *t, struct binding *b, uint64_t now, struct plan *p)
{
	struct link *l = link_by_name(t, b->name);
	const struct in6_addr *want = tokens_desired(t, b->name);
	char text[ADDR_TOKEN_STRLEN];

	b->dirty = false;
	if (!want)
		return reconcile_absent_want(t, b, l, now, p);
	if (!b->has_target || !same_token(want, &b->target)) {
		b->target = *want;
		b->has_target = true;
		b->reached_ifindex = 0;
		b->n_repairs = 0;
		b->contested = false;
		b->retry_at = 0;
		b->backoff = 0;
	}
	if (!l) {
		binding_set_state(b, TS_ABSENT, NULL);
		return true;
	}
	if (l->has_inet6 && same_token(&l->token, want)) {
		if (b->state != TS_APPLIED)
			log_debug("%s: kernel holds token %s", b->name,
				  addr_format(want, text, sizeof(text)));
		binding_set_state(b, TS_APPLIED, NULL);
		b->reached_ifindex = l->ifindex;
		b->retry_at = 0;
		b->backoff = 0;
		return true;
	}
	if (b->contested) {
		b->state = TS_CONTESTED;
		return true;
	}
	if (l->flags & IFF_LOOPBACK) {
		binding_set_state(b, TS_UNSUPPORTED, "loopback interfaces cannot take a token");
		return true;
	}
	/* Blocked: retried on its timer, and at once when the interface
	 * changed (arp on, say); sysctl changes send no event. */
	if (b->state == TS_BLOCKED && !retry_due(b, now) && !b->link_changed)
		return true;
	b->link_changed = false;
	if (plan_add(p, l, want) < 0)
		return true;
	b->inflight = true;
	if (b->state != TS_BLOCKED)
		binding_set_state(b, TS_PENDING, NULL);
	return true;
}

int tokens_plan(struct tokens *t, uint64_t now, bool all, struct tokens_action **ret)
{
	struct plan p = {0};

	if (all)
		mark_all_dirty(t);
	t->any_dirty = false;
	for (size_t i = 0; i < t->bindings.n;) {
		struct binding *b = t->bindings.v[i];
		bool due = b->retry_at && now >= b->retry_at &&
			   (b->state == TS_BLOCKED || b->state == TS_REMOVING);

		if ((b->dirty || due) && !b->inflight && !reconcile_one(t, b, now, &p)) {
			binding_drop(t, b);
			continue;
		}
		i++;
	}
	*ret = p.v;
	return (int)p.n;
}

static void schedule_retry(struct tokens *t, struct binding *b, uint64_t now)
{
	if (b->backoff == 0)
		b->backoff = t->set.retry_min_usec;
	else if (b->backoff < t->set.retry_max_usec / 2)
		b->backoff *= 2;
	else
		b->backoff = t->set.retry_max_usec;
	b->retry_at = now + b->backoff;
}

static void action_failed(struct tokens *t, struct binding *b, struct link *l,
			  const struct tokens_action *a, const struct nl_ack *ack, uint64_t now)
{
	bool removal = addr_token_is_zero(&a->token);
	char tok[ADDR_TOKEN_STRLEN], why[384];
	enum token_state s;

	addr_format(removal && l ? &l->token : &a->token, tok, sizeof(tok));
	if (ack->error == -ENODEV) {
		/* The interface went away under us; its RTM_DELLINK follows. */
		b->dirty = true;
		t->any_dirty = true;
		return;
	}
	describe_refusal(t, l, ack, why, sizeof(why));
	s = removal ? TS_REMOVING : TS_BLOCKED;
	schedule_retry(t, b, now);
	if (b->state != s || strcmp(b->reason, why) != 0) {
		binding_set_state(b, s, why);
		event_emit(LOG_WARNING, EVENT_TOKEN, b->name, "refused",
			   "%s: kernel refused to %s token %s: %s; retrying in %gs", b->name,
			   removal ? "clear" : "set", tok, why, (double)b->backoff / 1e6);
	} else {
		log_ratelimited(&b->rl, LOG_DEBUG, "%s: still refused (%s), next try in %gs",
				b->name, why, (double)b->backoff / 1e6);
	}
}

void tokens_action_done(struct tokens *t, const struct tokens_action *a, const struct nl_ack *ack,
			uint64_t now)
{
	struct binding *b = binding_get(t, a->ifname, false);
	struct link *l = vec_find(&t->links_by_index, &a->ifindex, cmp_link_index);
	char tok[ADDR_TOKEN_STRLEN];

	log_debug("%s: kernel answered token write (ifindex %d): %s%s%s", a->ifname, a->ifindex,
		  ack->error ? strerror(-ack->error) : "ok", ack->msg[0] ? ": " : "", ack->msg);
	if (!b)
		return;
	b->inflight = false;
	if (ack->error < 0) {
		action_failed(t, b, l, a, ack, now);
		return;
	}
	b->retry_at = 0;
	b->backoff = 0;
	if (addr_token_is_zero(&a->token)) {
		if (l)
			event_emit(LOG_INFO, EVENT_TOKEN, b->name, "cleared",
				   "%s: token %s cleared", b->name,
				   addr_format(&l->token, tok, sizeof(tok)));
		if (l)
			l->token = a->token;
		binding_set_state(b, TS_NONE, NULL);
		b->dirty = true;
		t->any_dirty = true;
		return;
	}
	if (l) {
		l->token = a->token;
		l->has_inet6 = true;
	}
	event_emit(LOG_INFO, EVENT_TOKEN, b->name, "applied", "%s: token %s applied", b->name,
		   addr_format(&a->token, tok, sizeof(tok)));
	binding_set_state(b, TS_APPLIED, NULL);
	b->reached_ifindex = a->ifindex;
}

bool tokens_dirty(const struct tokens *t)
{
	return t->any_dirty;
}

uint64_t tokens_next_retry(const struct tokens *t)
{
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < t->bindings.n; i++) {
		const struct binding *b = t->bindings.v[i];
		if ((b->state == TS_BLOCKED || b->state == TS_REMOVING) && b->retry_at &&
		    b->retry_at < next)
			next = b->retry_at;
	}
	return next;
}

bool tokens_prune_owned(const struct tokens *t, struct store_state *next)
{
	bool dropped = false;

	if (t->degraded || store_state_copy(&t->state, next) < 0)
		return false;
	next->n_owned = 0;
	for (size_t i = 0; i < t->state.n_owned; i++) {
		const struct store_entry *o = &t->state.owned[i];
		bool keep = false;

		/* Still wanted somewhere, or still in the kernel: keep it. */
		if (o->ifname[0] == '\0') {
			const char *w;
			const struct in6_addr *g = global_token(t, &w);
			keep = g && same_token(g, &o->token);
		} else {
			const struct in6_addr *want = tokens_desired(t, o->ifname);
			const struct link *l = link_by_name(t, o->ifname);
			keep = (want && same_token(want, &o->token)) || !l;
		}
		for (size_t j = 0; !keep && j < t->links_by_index.n; j++) {
			const struct link *l = t->links_by_index.v[j];
			keep = same_token(&l->token, &o->token) &&
			       (o->ifname[0] == '\0' || strcmp(o->ifname, l->name) == 0);
		}
		if (keep)
			next->owned[next->n_owned++] = *o;
		else
			dropped = true;
	}
	if (!dropped)
		store_state_free(next);
	return dropped;
}

/* --- status ------------------------------------------------------------ */

void tokens_counts(const struct tokens *t, struct tokens_counts *c)
{
	*c = (struct tokens_counts){.repairs = t->repairs};
	for (size_t i = 0; i < t->bindings.n; i++) {
		const struct binding *b = t->bindings.v[i];
		switch (b->state) {
		case TS_APPLIED:
			c->applied++;
			break;
		case TS_PENDING:
			c->pending++;
			break;
		case TS_ABSENT:
			c->absent++;
			break;
		case TS_BLOCKED:
			c->blocked++;
			break;
		case TS_UNSUPPORTED:
			c->unsupported++;
			break;
		case TS_CONTESTED:
			c->contested++;
			break;
		case TS_REMOVING:
			c->removing++;
			break;
		case TS_NONE:
			continue;
		}
		if (b->state != TS_REMOVING)
			c->held++;
	}
}

static json_object *json_string_or_null(const char *s)
{
	return s && *s ? json_object_new_string(s) : NULL;
}

static json_object *json_token(const struct in6_addr *a)
{
	char buf[ADDR_TOKEN_STRLEN];
	return json_object_new_string(addr_format(a, buf, sizeof(buf)));
}

json_object *tokens_entry_json(const struct tokens *t, const char *ifname)
{
	const struct binding *b = vec_find(&t->bindings, ifname, cmp_binding);
	const struct link *l = link_by_name(t, ifname);
	const struct in6_addr *want;
	const char *where;
	bool global;
	json_object *o, *addrs;

	if (!b || b->state == TS_NONE)
		return NULL;
	want = desired(t, ifname, &global, &where);
	o = json_object_new_object();
	json_object_object_add(o, "interface", json_object_new_string(ifname));
	json_object_object_add(o, "ifindex", l ? json_object_new_int(l->ifindex) : NULL);
	json_object_object_add(o, "token", json_token(want ? want : &b->target));
	json_object_object_add(o, "origin",
			       json_object_new_string(global ? "global" : "interface"));
	json_object_object_add(
	    o, "source", json_object_new_string(want ? (where ? "config" : "runtime") : "removed"));
	json_object_object_add(o, "file", json_string_or_null(where));
	json_object_object_add(o, "state", json_object_new_string(state_names[b->state]));
	json_object_object_add(o, "reason", json_string_or_null(b->reason));
	json_object_object_add(o, "kernel_token", l && l->has_inet6 ? json_token(&l->token) : NULL);
	addrs = json_object_new_array();
	for (size_t i = 0; l && want && i < l->n_addrs; i++)
		if (addr_has_token(&l->addrs[i], want))
			json_object_array_add(addrs, json_token(&l->addrs[i]));
	json_object_object_add(o, "addresses", addrs);
	return o;
}

static json_object *global_json(const struct tokens *t)
{
	static char *const match_all[] = {"*", NULL};
	char *const *m = t->config && t->config->match ? t->config->match : match_all;
	const char *where;
	const struct in6_addr *g = global_token(t, &where);
	json_object *o, *arr;

	if (!g)
		return NULL;
	o = json_object_new_object();
	json_object_object_add(o, "token", json_token(g));
	json_object_object_add(o, "source", json_object_new_string(where ? "config" : "runtime"));
	json_object_object_add(o, "file", json_string_or_null(where));
	arr = json_object_new_array();
	for (; *m; m++)
		json_object_array_add(arr, json_object_new_string(*m));
	json_object_object_add(o, "match", arr);
	return o;
}

int tokens_list_json(const struct tokens *t, const char *ifname, json_object **ret)
{
	json_object *o = json_object_new_object(), *entries = json_object_new_array();

	if (!o || !entries) {
		json_object_put(o);
		json_object_put(entries);
		return -ENOMEM;
	}
	json_object_object_add(o, "global", global_json(t));
	json_object_object_add(o, "entries", entries);
	if (ifname) {
		json_object *e = tokens_entry_json(t, ifname);
		if (!e) {
			json_object_put(o);
			return -ENOENT;
		}
		json_object_array_add(entries, e);
	} else {
		for (size_t i = 0; i < t->bindings.n; i++) {
			json_object *e =
			    tokens_entry_json(t, ((struct binding *)t->bindings.v[i])->name);
			if (e)
				json_object_array_add(entries, e);
		}
	}
	*ret = o;
	return 0;
}
