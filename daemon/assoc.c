/* SPDX-License-Identifier: MIT */
#include "assoc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "log.h"

enum { DIR_IN, DIR_OUT, DIR_FWD, DIR_MAX };
static const uint8_t dir_kernel[DIR_MAX] = {XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_FWD};
static const char *const dir_names[DIR_MAX] = {"in", "out", "fwd"};

/* An SA of one association as the kernel reports it. */
struct obs_sa {
	struct xfrm_sa sa;
	bool outbound;
	uint64_t gen;
	bool key_ok;	      /* its key is the derivation for (direction, gen) */
	bool seen;	      /* in the current dump (mark and sweep) */
	int64_t rx_at;	      /* wall clock of the read that saw its packet counter move */
	unsigned rx_streak;   /* reads that saw it move, with no quiet half interval */
	uint64_t planned_add; /* the add time its time limits were computed from */
};

/* The last move of the sending generation, for `show`. */
struct rotation_record {
	int64_t at_ms; /* wall clock */
	uint64_t from, to;
	char reason[24];
	char outcome[200];
};

struct assoc {
	struct assoc_def def;
	bool keep;	    /* set_defs: the new set holds this very object */
	bool name_lives_on; /* set_defs: the new set holds its name */
	/* Secrets: [0] the base one, [i + 1] schedule line i (when it names one). */
	struct keys_secret *secrets[1 + ASSOC_SCHEDULE_MAX];
	char *secret_errors[1 + ASSOC_SCHEDULE_MAX];
	char secret_error[320]; /* the one the live generations need */

	uint64_t out_gen;   /* the generation this side sends on */
	uint64_t out_saved; /* the highest generation on disk */
	bool saved_valid;
	uint64_t in_gen;     /* the newest generation the peer was seen sending on */
	uint64_t in_lo;	     /* lowest inbound generation kept (<= in_gen) */
	int64_t in_lo_until; /* wall clock: in_lo catches up with in_gen then */
	bool move_wanted;    /* an early move asked for and not yet made */
	char move_reason[24];
	char move_refused[200]; /* why it was not made, as last logged */
	uint64_t rotations;
	struct rotation_record last;
	bool peer_behind; /* the peer sends on a generation the window has left */
	char peer_note[300];
	uint64_t retire_checked; /* the clock's lowest generation at the last check */
	int64_t awaiting_since;	 /* a generation ended with the peer still on it:
				  * when its packets reappear, how late? (its
				  * end; 0: not waiting) */
	int64_t deadline;	 /* wall clock of its next clock-driven step */
	bool out_sent;		 /* out_gen's SA was in the kernel: losing it means moving on */
	bool adopted;		 /* the first reconcile after start has run */
	uint64_t last_move;	 /* when the sender last moved early */
	unsigned long long moves;

	struct obs_sa *sas;
	size_t n_sas;
	bool pol_seen[DIR_MAX];
	struct xfrm_policy pol[DIR_MAX];

	char state[16];
	char reason[400];
	char conflict[300]; /* found by the last plan */
	char foreign[300];  /* a foreign SA on a computed SPI, from the last dump */
	char foreign_logged[300];
	char sa_error[400];
	uint64_t sa_retry_at; /* SA installs failed: not before this */
	uint64_t sa_backoff;
	bool dirty;
	unsigned inflight;
};

struct orphan {
	bool is_policy;
	struct xfrm_sa sa;
	struct xfrm_policy policy;
	bool seen;
};

/* Orphans removed lately. One that keeps coming back is someone else's
 * (a second tokend in this namespace with the same reqid-base, say): after
 * ORPHAN_RETURNS removals within ORPHAN_WINDOW_USEC tokend leaves it alone
 * for ORPHAN_QUIET_USEC instead of fighting over it. */
#define ORPHAN_HIST_MAX	   64
#define ORPHAN_RETURNS	   3
#define ORPHAN_WINDOW_USEC (30 * 1000000ULL)
#define ORPHAN_QUIET_USEC  (600 * 1000000ULL)

struct orphan_hist {
	struct orphan id; /* identity only: SPI, family, destination, reqid; or policy */
	uint64_t first_usec, quiet_until;
	unsigned removals;
};

struct assocs {
	struct assocs_settings set;
	struct assoc **v;
	size_t n;
	/* v sorted by name and by number, for lookups; NULL (linear search)
	 * when they could not be allocated. */
	struct assoc **by_name, **by_number;
	struct orphan *orphans;
	size_t n_orphans;
	struct orphan_hist ohist[ORPHAN_HIST_MAX];
	size_t n_ohist;
	uint32_t *released; /* association numbers handed over to another tool */
	size_t n_released;
	/* Generations of associations that are gone (deleted, redefined,
	 * removed from the config): one declared again under the same name
	 * goes on from there, never back to a generation it used. */
	struct assoc_gen_record *history;
	size_t n_history;
	bool degraded;
	bool need_save;
	bool any_dirty;
	bool synced;  /* a full dump has been read */
	int64_t wall; /* ms since the Unix epoch, set by assocs_set_wallclock */
};

/* --- definitions -------------------------------------------------------- */

void assoc_def_init(struct assoc_def *d)
{
	*d = (struct assoc_def){
	    .mode = XFRM_MODE_TRANSPORT,
	    .algorithm = KEYS_ALG_AES_GCM_128,
	    .replay_window = 32,
	    .lookahead = 2,
	    /* The ESP sequence number is 32 bits (no ESN): stop well before
	     * it could wrap (case S4). */
	    .lifetime_packets = 0xffff0000ULL,
	};
}

static size_t addr_len(uint8_t family)
{
	return family == AF_INET ? 4 : 16;
}

static bool addr_eq(uint8_t family, const union xfrm_addr_any *a, const union xfrm_addr_any *b)
{
	return memcmp(a, b, addr_len(family)) == 0;
}

int assoc_def_check(const struct assoc_def *d, const char **why)
{
	size_t n = strlen(d->name);

	if (n == 0 || n > ASSOC_NAME_MAX) {
		*why = "the name must be 1 to 64 characters";
		return -EINVAL;
	}
	for (const char *p = d->name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
			*why = "the name may hold letters, digits, '-', '_' and '.' only";
			return -EINVAL;
		}
	if (d->number < 1 || d->number > ASSOC_NUMBER_MAX) {
		*why = "the association number must be 1 to 65535";
		return -EINVAL;
	}
	if (d->family != AF_INET && d->family != AF_INET6) {
		*why = "local and remote must both be IPv4 or both IPv6 addresses";
		return -EINVAL;
	}
	if (addr_eq(d->family, &d->local, &d->remote)) {
		*why = "local and remote are the same address";
		return -EINVAL;
	}
	if (!keys_algorithm_by_id(d->algorithm)) {
		*why = "unknown algorithm";
		return -EINVAL;
	}
	if (d->mode != XFRM_MODE_TRANSPORT && d->mode != XFRM_MODE_TUNNEL) {
		*why = "mode must be transport or tunnel";
		return -EINVAL;
	}
	if (d->secret_path[0] == '\0') {
		*why = "a secret file is required: keys are always derived from a master secret";
		return -EINVAL;
	}
	/* Without ESN the kernel keeps at most 32 packets of replay state;
	 * 0 would switch anti-replay off (case S5). */
	if (d->replay_window < 1 || d->replay_window > 32) {
		*why = "replay-window must be 1 to 32";
		return -EINVAL;
	}
	if (d->lookahead < 1 || d->lookahead > ASSOC_LOOKAHEAD_MAX) {
		*why = "lookahead must be 1 to 16";
		return -EINVAL;
	}
	if (d->lifetime_packets == 0 || d->lifetime_packets > 0xffffffffULL) {
		*why = "lifetime-packets must be 1 to 4294967295 (the 32-bit sequence space)";
		return -EINVAL;
	}
	if (d->lifetime_sec &&
	    (d->lifetime_sec < ASSOC_LIFETIME_MIN || d->lifetime_sec > ASSOC_LIFETIME_MAX)) {
		*why = "lifetime must be whole seconds from 2 to 315360000 (0: no rotation by "
		       "the clock)";
		return -EINVAL;
	}
	if (d->epoch < 0 || d->epoch >= (1LL << 40)) {
		*why = "epoch must be Unix seconds from 0 to 2^40-1";
		return -EINVAL;
	}
	if (!d->lifetime_sec && d->overlap_ms) {
		*why = "overlap needs a lifetime: without rotation by the clock there is no "
		       "boundary to overlap";
		return -EINVAL;
	}
	if (d->overlap_ms && (d->overlap_ms < 100 || d->overlap_ms >= d->lifetime_sec * 1000)) {
		*why = "overlap must be at least 100ms and shorter than the lifetime";
		return -EINVAL;
	}
	if (d->n_sched > ASSOC_SCHEDULE_MAX) {
		*why = "at most 8 schedule lines";
		return -EINVAL;
	}
	for (size_t i = 0; i < d->n_sched; i++) {
		const struct assoc_sched *s = &d->sched[i];
		if (s->from < 1 || s->from >= ASSOC_GEN_MAX ||
		    (i > 0 && s->from <= d->sched[i - 1].from)) {
			*why = "schedule lines need ascending, distinct \"from\" generations "
			       "from 1 to 2^48-1";
			return -EINVAL;
		}
		if (!s->has_secret && !s->has_algorithm && !s->has_lifetime) {
			*why = "a schedule line changes at least one of secret, algorithm, "
			       "lifetime";
			return -EINVAL;
		}
		if (s->has_algorithm && !keys_algorithm_by_id(s->algorithm)) {
			*why = "unknown algorithm in a schedule line";
			return -EINVAL;
		}
		if (s->has_secret && s->secret_path[0] != '/') {
			*why = "a schedule line's secret must be an absolute path";
			return -EINVAL;
		}
		if (s->has_lifetime && !d->lifetime_sec) {
			*why = "a schedule line can change the lifetime only of an association "
			       "that has one";
			return -EINVAL;
		}
		if (s->has_lifetime &&
		    (s->lifetime_sec < ASSOC_LIFETIME_MIN || s->lifetime_sec > ASSOC_LIFETIME_MAX ||
		     s->lifetime_sec * 1000 <= assoc_overlap_ms(d))) {
			*why =
			    "a scheduled lifetime must be 2 to 315360000 seconds and longer than "
			    "the overlap";
			return -EINVAL;
		}
	}
	if ((d->local_port || d->remote_port) && d->proto != IPPROTO_TCP &&
	    d->proto != IPPROTO_UDP && d->proto != IPPROTO_SCTP) {
		*why = "ports need protocol tcp, udp or sctp";
		return -EINVAL;
	}
	if (d->local_plen > addr_len(d->family) * 8 || d->remote_plen > addr_len(d->family) * 8) {
		*why = "a selector prefix is longer than the address";
		return -EINVAL;
	}
	return 0;
}

/* --- the clock ---------------------------------------------------------- */

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t sat_mul(uint64_t a, uint64_t b)
{
	uint64_t r;

	if (__builtin_mul_overflow(a, b, &r) || r > (uint64_t)INT64_MAX)
		return INT64_MAX;
	return (int64_t)r;
}

uint64_t assoc_phase_ms(const struct assoc_def *d)
{
	static const char label[] = "tokend rotation phase v1";
	uint8_t buf[sizeof(label) - 1 + 2 + ASSOC_NAME_MAX], md[32];
	size_t n = sizeof(label) - 1, name_len = strnlen(d->name, ASSOC_NAME_MAX);
	unsigned md_len = sizeof(md);
	uint64_t h = 0;

	if (!d->lifetime_sec)
		return 0;
	/* SHA-256("tokend rotation phase v1" || number (2 bytes, big endian) ||
	 * name), first 8 bytes big endian, modulo L in milliseconds: both
	 * peers share name and number, so they share the phase. */
	memcpy(buf, label, n);
	buf[n++] = (uint8_t)(d->number >> 8);
	buf[n++] = (uint8_t)d->number;
	memcpy(buf + n, d->name, name_len);
	n += name_len;
	if (!EVP_Digest(buf, n, md, &md_len, EVP_sha256(), NULL))
		return 0;
	for (int i = 0; i < 8; i++)
		h = h << 8 | md[i];
	return h % (d->lifetime_sec * 1000);
}

uint64_t assoc_overlap_ms(const struct assoc_def *d)
{
	if (!d->lifetime_sec)
		return 0;
	if (d->overlap_ms)
		return d->overlap_ms;
	return d->lifetime_sec * 1000 / 4;
}

static int64_t first_start_ms(const struct assoc_def *d)
{
	/* assoc_def_check keeps the epoch in [0, 2^40). */
	return sat_add(sat_mul((uint64_t)d->epoch, 1000), (int64_t)assoc_phase_ms(d));
}

int64_t assoc_gen_start_ms(const struct assoc_def *d, uint64_t gen)
{
	int64_t t;
	uint64_t from = 0, len;

	if (!d->lifetime_sec)
		return INT64_MIN;
	t = first_start_ms(d);
	len = d->lifetime_sec * 1000;
	for (size_t i = 0; i < d->n_sched; i++) {
		const struct assoc_sched *s = &d->sched[i];
		if (!s->has_lifetime)
			continue;
		if (s->from >= gen)
			break;
		t = sat_add(t, sat_mul(s->from - from, len));
		from = s->from;
		len = s->lifetime_sec * 1000;
	}
	return sat_add(t, sat_mul(gen - from, len));
}

uint64_t assoc_clock_gen(const struct assoc_def *d, int64_t t_ms)
{
	int64_t start;
	uint64_t from = 0, len;

	if (!d->lifetime_sec)
		return 0;
	start = first_start_ms(d);
	if (t_ms < start)
		return 0;
	len = d->lifetime_sec * 1000;
	for (size_t i = 0; i < d->n_sched; i++) {
		const struct assoc_sched *s = &d->sched[i];
		int64_t end;
		if (!s->has_lifetime)
			continue;
		end = sat_add(start, sat_mul(s->from - from, len));
		if (t_ms < end)
			break;
		start = end;
		from = s->from;
		len = s->lifetime_sec * 1000;
	}
	return from + (uint64_t)(t_ms - start) / len;
}

const char *assoc_gen_secret(const struct assoc_def *d, uint64_t gen)
{
	const char *p = d->secret_path;

	for (size_t i = 0; i < d->n_sched && d->sched[i].from <= gen; i++)
		if (d->sched[i].has_secret)
			p = d->sched[i].secret_path;
	return p;
}

enum keys_algorithm assoc_gen_algorithm(const struct assoc_def *d, uint64_t gen)
{
	enum keys_algorithm a = d->algorithm;

	for (size_t i = 0; i < d->n_sched && d->sched[i].from <= gen; i++)
		if (d->sched[i].has_algorithm)
			a = d->sched[i].algorithm;
	return a;
}

/* The index of the secret (0: the base one, i + 1: schedule line i) that
 * generation `gen` uses. */
static size_t gen_secret_index(const struct assoc_def *d, uint64_t gen)
{
	size_t k = 0;

	for (size_t i = 0; i < d->n_sched && d->sched[i].from <= gen; i++)
		if (d->sched[i].has_secret)
			k = i + 1;
	return k;
}

int assoc_sched_parse(const char *value, struct assoc_sched *s, const char **why)
{
	char buf[512], *save = NULL, *w, *end;
	unsigned long long v;

	*s = (struct assoc_sched){0};
	if (strlen(value) >= sizeof(buf)) {
		*why = "the line is too long";
		return -EINVAL;
	}
	strcpy(buf, value);
	w = strtok_r(buf, " \t", &save);
	if (!w || strcmp(w, "from") != 0 || !(w = strtok_r(NULL, " \t", &save))) {
		*why = "expected \"from GENERATION\" first";
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(w, &end, 10);
	if (errno || *end || w[0] == '-' || v < 1 || v >= ASSOC_GEN_MAX) {
		*why = "the generation after \"from\" must be an integer from 1 to 2^48-1";
		return -EINVAL;
	}
	s->from = v;
	while ((w = strtok_r(NULL, " \t", &save))) {
		char *arg = strtok_r(NULL, " \t", &save);
		if (!arg) {
			*why = "a keyword without its value";
			return -EINVAL;
		}
		if (strcmp(w, "secret") == 0 && !s->has_secret) {
			if (arg[0] != '/' || strlen(arg) >= sizeof(s->secret_path)) {
				*why = "secret needs the absolute path of a file";
				return -EINVAL;
			}
			snprintf(s->secret_path, sizeof(s->secret_path), "%s", arg);
			s->has_secret = true;
		} else if (strcmp(w, "algorithm") == 0 && !s->has_algorithm) {
			const struct keys_algorithm_info *a = keys_algorithm_by_name(arg);
			if (!a) {
				*why = "unknown algorithm (aes-gcm-128, aes-gcm-256, "
				       "aes-cbc-hmac-sha256)";
				return -EINVAL;
			}
			s->algorithm = a->id;
			s->has_algorithm = true;
		} else if (strcmp(w, "lifetime") == 0 && !s->has_lifetime) {
			errno = 0;
			v = strtoull(arg, &end, 10);
			if (errno || arg[0] == '-' || (*end && strcmp(end, "s") != 0) ||
			    v < ASSOC_LIFETIME_MIN || v > ASSOC_LIFETIME_MAX) {
				*why = "lifetime must be whole seconds from 2 to 315360000";
				return -EINVAL;
			}
			s->lifetime_sec = v;
			s->has_lifetime = true;
		} else {
			*why = "expected secret FILE, algorithm NAME or lifetime SECONDS, each at "
			       "most once";
			return -EINVAL;
		}
	}
	if (!s->has_secret && !s->has_algorithm && !s->has_lifetime) {
		*why = "a schedule line changes at least one of secret, algorithm, lifetime";
		return -EINVAL;
	}
	return 0;
}

static int json_get_str(json_object *o, const char *key, const char **ret)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	*ret = json_object_get_string(v);
	return 1;
}

static int json_get_uint(json_object *o, const char *key, uint64_t max, uint64_t *ret)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	n = json_object_get_int64(v);
	if (n < 0 || (uint64_t)n > max)
		return -ERANGE;
	*ret = (uint64_t)n;
	return 1;
}

static int parse_addr_any(const char *s, union xfrm_addr_any *a, uint8_t *family)
{
	*a = (union xfrm_addr_any){0};
	if (inet_pton(AF_INET, s, &a->v4) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, s, &a->v6) == 1)
		*family = AF_INET6;
	else
		return -EINVAL;
	return 0;
}

static int parse_net(const char *s, union xfrm_addr_any *a, uint8_t *plen, uint8_t *family)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long v;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (parse_addr_any(buf, a, family) < 0)
		return -EINVAL;
	v = *family == AF_INET ? 32 : 128;
	if (slash) {
		unsigned long max = v;
		errno = 0;
		v = strtoul(slash + 1, &end, 10);
		if (errno || *end || end == slash + 1 || v > max)
			return -EINVAL;
	}
	*plen = (uint8_t)v;
	return 0;
}

static const char *const known_fields[] = {"name",	"number",	  "local",
					   "remote",	"secret_file",	  "mode",
					   "algorithm", "local_selector", "remote_selector",
					   "protocol",	"local_port",	  "remote_port",
					   "dev",	"replay_window",  "lookahead",
					   "lifetime",	"lifetime_bytes", "lifetime_packets",
					   "epoch",	"overlap_ms",	  "schedule",
					   NULL};

static int def_strings(json_object *o, struct assoc_def *d, const char **field, const char **why)
{
	const char *v = NULL;
	uint8_t fam_l = 0, fam_r = 0, fam = 0;
	int r;

#define FIELD(f) (*field = (f))
	if (json_get_str(o, FIELD("name"), &v) != 1 || strlen(v) > ASSOC_NAME_MAX)
		return *why = "a name of 1 to 64 characters is required", -EINVAL;
	snprintf(d->name, sizeof(d->name), "%s", v);
	if (json_get_str(o, FIELD("local"), &v) != 1 || parse_addr_any(v, &d->local, &fam_l) < 0)
		return *why = "an IPv4 or IPv6 address is required", -EINVAL;
	if (json_get_str(o, FIELD("remote"), &v) != 1 || parse_addr_any(v, &d->remote, &fam_r) < 0)
		return *why = "an IPv4 or IPv6 address is required", -EINVAL;
	if (fam_l != fam_r)
		return *why = "local and remote must both be IPv4 or both IPv6", -EINVAL;
	d->family = fam_l;
	if (json_get_str(o, FIELD("secret_file"), &v) != 1 || v[0] != '/')
		return *why = "the absolute path of a secret file is required", -EINVAL;
	if (strlen(v) >= sizeof(d->secret_path))
		return *why = "a secret file's path has at most 255 characters", -EINVAL;
	snprintf(d->secret_path, sizeof(d->secret_path), "%s", v);
	r = json_get_str(o, FIELD("mode"), &v);
	if (r < 0 || (r == 1 && strcmp(v, "transport") != 0 && strcmp(v, "tunnel") != 0))
		return *why = "transport or tunnel", -EINVAL;
	if (r == 1)
		d->mode = strcmp(v, "tunnel") == 0 ? XFRM_MODE_TUNNEL : XFRM_MODE_TRANSPORT;
	r = json_get_str(o, FIELD("algorithm"), &v);
	if (r < 0 || (r == 1 && !keys_algorithm_by_name(v)))
		return *why = "aes-gcm-128, aes-gcm-256 or aes-cbc-hmac-sha256", -EINVAL;
	if (r == 1)
		d->algorithm = keys_algorithm_by_name(v)->id;
	memcpy(&d->local_net, &d->local, sizeof(d->local));
	memcpy(&d->remote_net, &d->remote, sizeof(d->remote));
	d->local_plen = d->remote_plen = d->family == AF_INET ? 32 : 128;
	r = json_get_str(o, FIELD("local_selector"), &v);
	if (r < 0 ||
	    (r == 1 && (parse_net(v, &d->local_net, &d->local_plen, &fam) < 0 || fam != d->family)))
		return *why = "a prefix of the addresses' family", -EINVAL;
	r = json_get_str(o, FIELD("remote_selector"), &v);
	if (r < 0 || (r == 1 && (parse_net(v, &d->remote_net, &d->remote_plen, &fam) < 0 ||
				 fam != d->family)))
		return *why = "a prefix of the addresses' family", -EINVAL;
	r = json_get_str(o, FIELD("dev"), &v);
	if (r < 0 || (r == 1 && (strlen(v) == 0 || strlen(v) >= sizeof(d->dev))))
		return *why = "an interface name", -EINVAL;
	if (r == 1)
		snprintf(d->dev, sizeof(d->dev), "%s", v);
	r = json_get_str(o, FIELD("protocol"), &v);
	if (r < 0)
		return *why = "tcp, udp, sctp, icmp, ipv6-icmp", -EINVAL;
	if (r == 1) {
		if (strcmp(v, "tcp") == 0)
			d->proto = IPPROTO_TCP;
		else if (strcmp(v, "udp") == 0)
			d->proto = IPPROTO_UDP;
		else if (strcmp(v, "sctp") == 0)
			d->proto = IPPROTO_SCTP;
		else if (strcmp(v, "icmp") == 0)
			d->proto = IPPROTO_ICMP;
		else if (strcmp(v, "ipv6-icmp") == 0 || strcmp(v, "icmpv6") == 0)
			d->proto = IPPROTO_ICMPV6;
		else {
			char *end;
			unsigned long n = strtoul(v, &end, 10);
			if (!*v || *end || n < 1 || n > 255)
				return *why = "tcp, udp, sctp, icmp, ipv6-icmp or 1-255", -EINVAL;
			d->proto = (uint8_t)n;
		}
	}
#undef FIELD
	return 0;
}

static int def_numbers(json_object *o, struct assoc_def *d, const char **field, const char **why)
{
	static const struct {
		const char *key;
		uint64_t max;
		bool required;
		const char *range;
	} nums[] = {
	    {"number", ASSOC_NUMBER_MAX, true, "the association number must be 1 to 65535"},
	    {"local_port", 65535, false, "a port must be 1 to 65535"},
	    {"remote_port", 65535, false, "a port must be 1 to 65535"},
	    {"replay_window", 32, false, "replay-window must be 1 to 32"},
	    {"lookahead", ASSOC_LOOKAHEAD_MAX, false, "lookahead must be 1 to 16"},
	    {"lifetime_bytes", UINT64_MAX / 2, false, "lifetime-bytes is too large"},
	    {"lifetime_packets", 0xffffffffULL, false,
	     "lifetime-packets must be 1 to 4294967295 (the 32-bit sequence space)"},
	    {"lifetime", ASSOC_LIFETIME_MAX, false,
	     "lifetime must be whole seconds from 2 to 315360000 (0: no rotation by the clock)"},
	    {"epoch", (1ULL << 40) - 1, false, "epoch must be Unix seconds from 0 to 2^40-1"},
	    {"overlap_ms", (uint64_t)ASSOC_LIFETIME_MAX * 1000, false,
	     "overlap_ms must be shorter than the lifetime"},
	};
	uint64_t v[10] = {0,
			  0,
			  0,
			  d->replay_window,
			  d->lookahead,
			  d->lifetime_bytes,
			  d->lifetime_packets,
			  d->lifetime_sec,
			  0,
			  0};

	for (size_t i = 0; i < 10; i++) {
		int r = json_get_uint(o, nums[i].key, nums[i].max, &v[i]);
		if (r < 0 || (r == 0 && nums[i].required)) {
			*field = nums[i].key;
			*why = r == -ERANGE ? nums[i].range : "an integer is required";
			return -EINVAL;
		}
	}
	d->number = (uint32_t)v[0];
	d->local_port = (uint16_t)v[1];
	d->remote_port = (uint16_t)v[2];
	d->replay_window = (uint32_t)v[3];
	d->lookahead = (unsigned)v[4];
	d->lifetime_bytes = v[5];
	d->lifetime_packets = v[6];
	d->lifetime_sec = v[7];
	d->epoch = (int64_t)v[8];
	d->overlap_ms = v[9];
	return 0;
}

static int def_schedule(json_object *o, struct assoc_def *d, const char **field, const char **why)
{
	json_object *arr;
	size_t n;

	if (!json_object_object_get_ex(o, "schedule", &arr) ||
	    json_object_is_type(arr, json_type_null))
		return 0;
	*field = "schedule";
	if (!json_object_is_type(arr, json_type_array))
		return *why = "an array of {\"from\", \"secret_file\", \"algorithm\", "
			      "\"lifetime\"} is required",
		       -EINVAL;
	n = json_object_array_length(arr);
	if (n > ASSOC_SCHEDULE_MAX)
		return *why = "at most 8 schedule entries", -EINVAL;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		struct assoc_sched *s = &d->sched[i];
		uint64_t num = 0;
		const char *str = NULL;
		int r;

		*s = (struct assoc_sched){0};
		if (!json_object_is_type(e, json_type_object))
			return *why = "each schedule entry must be an object", -EINVAL;
		json_object_object_foreach(e, key, val)
		{
			(void)val;
			if (strcmp(key, "from") != 0 && strcmp(key, "secret_file") != 0 &&
			    strcmp(key, "algorithm") != 0 && strcmp(key, "lifetime") != 0)
				return *why = "unknown member of a schedule entry (from, "
					      "secret_file, algorithm, lifetime)",
				       -EINVAL;
		}
		if (json_get_uint(e, "from", ASSOC_GEN_MAX - 1, &num) != 1 || num < 1)
			return *why = "each schedule entry needs \"from\": a generation from 1 "
				      "to 2^48-1",
			       -EINVAL;
		s->from = num;
		r = json_get_str(e, "secret_file", &str);
		if (r < 0 || (r == 1 && (str[0] != '/' || strlen(str) >= sizeof(s->secret_path))))
			return *why = "secret_file must be an absolute path", -EINVAL;
		if (r == 1) {
			snprintf(s->secret_path, sizeof(s->secret_path), "%s", str);
			s->has_secret = true;
		}
		r = json_get_str(e, "algorithm", &str);
		if (r < 0 || (r == 1 && !keys_algorithm_by_name(str)))
			return *why = "aes-gcm-128, aes-gcm-256 or aes-cbc-hmac-sha256", -EINVAL;
		if (r == 1) {
			s->algorithm = keys_algorithm_by_name(str)->id;
			s->has_algorithm = true;
		}
		r = json_get_uint(e, "lifetime", ASSOC_LIFETIME_MAX, &num);
		if (r < 0)
			return *why = "lifetime must be whole seconds from 2 to 315360000", -EINVAL;
		if (r == 1) {
			s->lifetime_sec = num;
			s->has_lifetime = true;
		}
	}
	d->n_sched = n;
	return 0;
}

int assoc_def_from_json(json_object *o, struct assoc_def *d, const char **ret_field,
			const char **why)
{
	int r;

	*ret_field = NULL;
	if (!json_object_is_type(o, json_type_object)) {
		*why = "an object is required";
		return -EINVAL;
	}
	json_object_object_foreach(o, key, val)
	{
		bool known = false;
		for (const char *const *k = known_fields; *k && !known; k++)
			known = strcmp(*k, key) == 0;
		(void)val;
		if (!known) {
			*ret_field = key;
			*why = "unknown field";
			return -EINVAL;
		}
	}
	assoc_def_init(d);
	r = def_strings(o, d, ret_field, why);
	if (r < 0)
		return r;
	r = def_numbers(o, d, ret_field, why);
	if (r < 0)
		return r;
	r = def_schedule(o, d, ret_field, why);
	if (r < 0)
		return r;
	*ret_field = NULL;
	return assoc_def_check(d, why);
}

json_object *assoc_def_to_json(const struct assoc_def *d)
{
	json_object *o = json_object_new_object();
	char a[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 5];
	const struct keys_algorithm_info *alg = keys_algorithm_by_id(d->algorithm);

	json_object_object_add(o, "name", json_object_new_string(d->name));
	json_object_object_add(o, "number", json_object_new_int((int)d->number));
	json_object_object_add(
	    o, "local", json_object_new_string(inet_ntop(d->family, &d->local, a, sizeof(a))));
	json_object_object_add(
	    o, "remote", json_object_new_string(inet_ntop(d->family, &d->remote, a, sizeof(a))));
	json_object_object_add(o, "secret_file", json_object_new_string(d->secret_path));
	json_object_object_add(
	    o, "mode",
	    json_object_new_string(d->mode == XFRM_MODE_TUNNEL ? "tunnel" : "transport"));
	json_object_object_add(o, "algorithm", json_object_new_string(alg ? alg->name : "?"));
	inet_ntop(d->family, &d->local_net, a, sizeof(a));
	snprintf(net, sizeof(net), "%s/%u", a, d->local_plen);
	json_object_object_add(o, "local_selector", json_object_new_string(net));
	inet_ntop(d->family, &d->remote_net, a, sizeof(a));
	snprintf(net, sizeof(net), "%s/%u", a, d->remote_plen);
	json_object_object_add(o, "remote_selector", json_object_new_string(net));
	if (d->proto) {
		char num[8];
		const char *p = d->proto == IPPROTO_TCP	     ? "tcp"
				: d->proto == IPPROTO_UDP    ? "udp"
				: d->proto == IPPROTO_SCTP   ? "sctp"
				: d->proto == IPPROTO_ICMP   ? "icmp"
				: d->proto == IPPROTO_ICMPV6 ? "ipv6-icmp"
							     : NULL;
		snprintf(num, sizeof(num), "%u", d->proto);
		json_object_object_add(o, "protocol", json_object_new_string(p ? p : num));
	}
	if (d->local_port)
		json_object_object_add(o, "local_port", json_object_new_int(d->local_port));
	if (d->remote_port)
		json_object_object_add(o, "remote_port", json_object_new_int(d->remote_port));
	if (d->dev[0])
		json_object_object_add(o, "dev", json_object_new_string(d->dev));
	json_object_object_add(o, "replay_window", json_object_new_int((int)d->replay_window));
	json_object_object_add(o, "lookahead", json_object_new_int((int)d->lookahead));
	json_object_object_add(o, "lifetime", json_object_new_int64((int64_t)d->lifetime_sec));
	if (d->epoch)
		json_object_object_add(o, "epoch", json_object_new_int64(d->epoch));
	if (d->overlap_ms)
		json_object_object_add(o, "overlap_ms",
				       json_object_new_int64((int64_t)d->overlap_ms));
	if (d->n_sched) {
		json_object *arr = json_object_new_array();
		for (size_t i = 0; i < d->n_sched; i++) {
			const struct assoc_sched *sc = &d->sched[i];
			json_object *e = json_object_new_object();
			json_object_object_add(e, "from", json_object_new_int64((int64_t)sc->from));
			if (sc->has_secret)
				json_object_object_add(e, "secret_file",
						       json_object_new_string(sc->secret_path));
			if (sc->has_algorithm)
				json_object_object_add(
				    e, "algorithm",
				    json_object_new_string(
					keys_algorithm_by_id(sc->algorithm)->name));
			if (sc->has_lifetime)
				json_object_object_add(
				    e, "lifetime",
				    json_object_new_int64((int64_t)sc->lifetime_sec));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "schedule", arr);
	}
	json_object_object_add(o, "lifetime_bytes",
			       json_object_new_int64((int64_t)d->lifetime_bytes));
	json_object_object_add(o, "lifetime_packets",
			       json_object_new_int64((int64_t)d->lifetime_packets));
	return o;
}

/* Direction bit: 0 when the sender's address is the lower one, so both
 * peers name a direction the same way. */
static unsigned direction_bit(uint8_t family, const union xfrm_addr_any *src,
			      const union xfrm_addr_any *dst)
{
	return memcmp(src, dst, addr_len(family)) < 0 ? 0 : 1;
}

uint32_t assoc_spi(uint32_t number, uint8_t family, const union xfrm_addr_any *src,
		   const union xfrm_addr_any *dst, uint64_t gen)
{
	return ASSOC_SPI_BASE | (number & 0xffff) << 8 | direction_bit(family, src, dst) << 7 |
	       (uint32_t)(gen % ASSOC_GEN_WINDOW);
}

/* --- the manager ------------------------------------------------------- */

int assocs_new(const struct assocs_settings *s, struct assocs **ret)
{
	struct assocs *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->set = *s;
	*ret = m;
	return 0;
}

static void assoc_free(struct assoc *a)
{
	if (!a)
		return;
	for (size_t k = 0; k <= ASSOC_SCHEDULE_MAX; k++) {
		keys_secret_free(a->secrets[k]);
		free(a->secret_errors[k]);
	}
	free(a->sas);
	free(a);
}

void assocs_free(struct assocs *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		assoc_free(m->v[i]);
	free(m->v);
	free(m->by_name);
	free(m->by_number);
	free(m->orphans);
	free(m->released);
	free(m->history);
	free(m);
}

void assocs_set_settings(struct assocs *m, const struct assocs_settings *s)
{
	m->set = *s;
}

void assocs_set_degraded(struct assocs *m, bool degraded)
{
	m->degraded = degraded;
}

static int by_name_cmp(const void *x, const void *y)
{
	return strcmp((*(struct assoc *const *)x)->def.name, (*(struct assoc *const *)y)->def.name);
}

static int by_number_cmp(const void *x, const void *y)
{
	uint32_t a = (*(struct assoc *const *)x)->def.number;
	uint32_t b = (*(struct assoc *const *)y)->def.number;

	return a < b ? -1 : a > b;
}

static int name_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(struct assoc *const *)elem)->def.name);
}

static int number_key_cmp(const void *key, const void *elem)
{
	uint32_t a = *(const uint32_t *)key, b = (*(struct assoc *const *)elem)->def.number;

	return a < b ? -1 : a > b;
}

/* Every packet counter read and every kernel answer looks an association
 * up: with thousands of them, a linear search per lookup would make each
 * dump quadratic. */
static void index_rebuild(struct assocs *m)
{
	free(m->by_name);
	free(m->by_number);
	m->by_name = m->n ? malloc(m->n * sizeof(*m->by_name)) : NULL;
	m->by_number = m->n ? malloc(m->n * sizeof(*m->by_number)) : NULL;
	if (!m->by_name || !m->by_number) {
		free(m->by_name);
		free(m->by_number);
		m->by_name = m->by_number = NULL;
		return;
	}
	memcpy(m->by_name, m->v, m->n * sizeof(*m->v));
	memcpy(m->by_number, m->v, m->n * sizeof(*m->v));
	qsort(m->by_name, m->n, sizeof(*m->by_name), by_name_cmp);
	qsort(m->by_number, m->n, sizeof(*m->by_number), by_number_cmp);
}

static struct assoc *find_name(const struct assocs *m, const char *name)
{
	struct assoc **p;

	if (m->by_name) {
		p = bsearch(name, m->by_name, m->n, sizeof(*p), name_key_cmp);
		return p ? *p : NULL;
	}
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i]->def.name, name) == 0)
			return m->v[i];
	return NULL;
}

static struct assoc *find_number(const struct assocs *m, uint32_t number)
{
	struct assoc **p;

	if (m->by_number) {
		p = bsearch(&number, m->by_number, m->n, sizeof(*p), number_key_cmp);
		return p ? *p : NULL;
	}
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i]->def.number == number)
			return m->v[i];
	return NULL;
}

static bool reqid_ours(const struct assocs *m, uint32_t reqid, uint32_t *number)
{
	if (reqid <= m->set.reqid_base || reqid - m->set.reqid_base > ASSOC_NUMBER_MAX)
		return false;
	*number = reqid - m->set.reqid_base;
	return true;
}

static bool released(const struct assocs *m, uint32_t number)
{
	for (size_t i = 0; i < m->n_released; i++)
		if (m->released[i] == number)
			return true;
	return false;
}

static void mark(struct assocs *m, struct assoc *a)
{
	a->dirty = true;
	m->any_dirty = true;
}

void assocs_set_wallclock(struct assocs *m, int64_t t_ms)
{
	m->wall = t_ms;
}

int64_t assocs_next_deadline(const struct assocs *m)
{
	int64_t d = INT64_MAX;

	for (size_t i = 0; i < m->n; i++)
		if (m->v[i]->adopted && m->v[i]->deadline < d && !released(m, m->v[i]->def.number))
			d = m->v[i]->deadline;
	return d;
}

void assocs_tick(struct assocs *m)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i]->adopted && m->v[i]->deadline <= m->wall)
			mark(m, m->v[i]);
}

void assocs_clock_stepped(struct assocs *m)
{
	for (size_t i = 0; i < m->n; i++)
		mark(m, m->v[i]);
}

static void set_state(struct assoc *a, const char *state, const char *reason)
{
	/* A new association's first state is not a change. */
	if (a->state[0] && strcmp(a->state, state) != 0)
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "state",
			   "%s: state %s -> %s%s%s%s", a->def.name, a->state, state,
			   reason && *reason ? " (" : "", reason ? reason : "",
			   reason && *reason ? ")" : "");
	snprintf(a->state, sizeof(a->state), "%s", state);
	snprintf(a->reason, sizeof(a->reason), "%s", reason ? reason : "");
}

/* The file of secret k: 0 the base one, i + 1 schedule line i's. */
static const char *secret_path_of(const struct assoc_def *d, size_t k)
{
	return k == 0 ? d->secret_path : d->sched[k - 1].secret_path;
}

/* The first generation that still matters: older ones are neither sent
 * nor received again, so their secret may be gone. */
static uint64_t live_floor(const struct assocs *m, const struct assoc *a)
{
	uint64_t lo = assoc_clock_gen(&a->def, m->wall - (int64_t)assoc_overlap_ms(&a->def));

	if (a->saved_valid || a->adopted) {
		uint64_t mine = a->in_lo < a->out_gen ? a->in_lo : a->out_gen;
		if (mine < lo)
			lo = mine;
	}
	return lo;
}

bool assoc_secret_retired(const struct assoc_def *d, size_t k, uint64_t lo)
{
	for (size_t i = k; i < d->n_sched; i++)
		if (d->sched[i].has_secret)
			return d->sched[i].from <= lo;
	return false;
}

/* Load the base secret and those of the schedule lines. A secret whose
 * generations are all behind may be missing: it was retired. */
static void load_secrets(const struct assocs *m, struct assoc *a, struct keys_cache *cache)
{
	uint64_t lo = live_floor(m, a);

	a->secret_error[0] = '\0';
	for (size_t k = 0; k <= a->def.n_sched; k++) {
		const char *path = secret_path_of(&a->def, k);
		char *err = NULL;

		keys_secret_free(a->secrets[k]);
		a->secrets[k] = NULL;
		free(a->secret_errors[k]);
		a->secret_errors[k] = NULL;
		if (k > 0 && !a->def.sched[k - 1].has_secret)
			continue;
		if (keys_cache_load(cache, path, &a->secrets[k], &err) == 0)
			continue;
		a->secret_errors[k] = strdup(err ? err : "cannot load the secret");
		free(err);
		if (assoc_secret_retired(&a->def, k, lo)) {
			log_debug("%s: secret %s is no longer needed (%s)", a->def.name, path,
				  a->secret_errors[k] ? a->secret_errors[k] : "");
			continue;
		}
		if (!a->secret_error[0]) {
			snprintf(a->secret_error, sizeof(a->secret_error), "%s",
				 a->secret_errors[k] ? a->secret_errors[k]
						     : "cannot load a secret");
			event_emit(LOG_ERR, EVENT_ASSOCIATION, a->def.name, "secret-error",
				   "%s: %s; its policies stay, so its traffic is blocked",
				   a->def.name, a->secret_error);
		}
	}
}

static const struct keys_secret *gen_secret(const struct assoc *a, uint64_t gen)
{
	return a->secrets[gen_secret_index(&a->def, gen)];
}

/* A decoded SA names its algorithms through pointers into its own buffers:
 * a copy must point into its own, and never at keys. */
static void sa_copy(struct xfrm_sa *dst, const struct xfrm_sa *src)
{
	*dst = *src;
	dst->enc_name = dst->enc_name_buf[0] ? dst->enc_name_buf : NULL;
	dst->auth_name = dst->auth_name_buf[0] ? dst->auth_name_buf : NULL;
	dst->enc_key = dst->auth_key = NULL;
}

static void orphan_add_sa(struct assocs *m, const struct xfrm_sa *sa)
{
	struct orphan *o = realloc(m->orphans, (m->n_orphans + 1) * sizeof(*o));

	if (!o)
		return;
	m->orphans = o;
	m->orphans[m->n_orphans] = (struct orphan){.seen = true};
	sa_copy(&m->orphans[m->n_orphans++].sa, sa);
}

static void orphan_add_policy(struct assocs *m, const struct xfrm_policy *p)
{
	struct orphan *o = realloc(m->orphans, (m->n_orphans + 1) * sizeof(*o));

	if (!o)
		return;
	m->orphans = o;
	m->orphans[m->n_orphans++] = (struct orphan){.is_policy = true, .policy = *p, .seen = true};
}

/* An association that is no longer declared: what it had in the kernel is
 * now an orphan, removed by the next reconcile. */
static void remember(struct assocs *m, const char *name, uint64_t out_gen, uint64_t in_gen)
{
	struct assoc_gen_record *v;
	size_t i;

	for (i = 0; i < m->n_history; i++)
		if (strcmp(m->history[i].name, name) == 0)
			break;
	if (i == m->n_history) {
		v = realloc(m->history, (m->n_history + 1) * sizeof(*v));
		if (!v)
			return;
		m->history = v;
		m->n_history++;
		m->history[i] = (struct assoc_gen_record){0};
		snprintf(m->history[i].name, sizeof(m->history[i].name), "%s", name);
	}
	if (out_gen > m->history[i].out_gen)
		m->history[i].out_gen = out_gen;
	if (in_gen > m->history[i].in_gen)
		m->history[i].in_gen = in_gen;
}

/* The highest generation this association's sender has used (or is about
 * to): the next one must be above it. */
static bool used_up_to(const struct assoc *a, uint64_t *g)
{
	if (!a->saved_valid && !a->adopted)
		return false;
	*g = a->out_gen > a->out_saved || !a->saved_valid ? a->out_gen : a->out_saved;
	return true;
}

/* A new definition under a name that was used before goes on from its
 * history: sending resumes past every generation used. */
static void carry_history(struct assoc *a, uint64_t out_gen, uint64_t in_gen)
{
	a->out_gen = a->out_saved = out_gen;
	a->in_gen = a->in_lo = in_gen;
	a->saved_valid = true;
}

static void assoc_retire(struct assocs *m, struct assoc *a, bool name_lives_on)
{
	uint64_t used;

	if (!name_lives_on && used_up_to(a, &used))
		remember(m, a->def.name, used, a->in_gen);
	if (released(m, a->def.number))
		return; /* handed over: its objects are not tokend's to remove */
	for (size_t i = 0; i < a->n_sas; i++)
		orphan_add_sa(m, &a->sas[i].sa);
	for (int d = 0; d < DIR_MAX && !name_lives_on; d++)
		if (a->pol_seen[d])
			orphan_add_policy(m, &a->pol[d]);
	m->any_dirty = true;
}

static bool def_changed_keys(const struct assoc_def *a, const struct assoc_def *b)
{
	/* Anything that feeds the keys or SPIs: the old SAs cannot stay. */
	return a->number != b->number || a->family != b->family ||
	       !addr_eq(a->family, &a->local, &b->local) ||
	       !addr_eq(a->family, &a->remote, &b->remote) || a->algorithm != b->algorithm ||
	       strcmp(a->secret_path, b->secret_path) != 0 || a->mode != b->mode;
}

/* The same secret file for every schedule line (so for every generation). */
static bool same_secret_files(const struct assoc_def *a, const struct assoc_def *b)
{
	if (a->n_sched != b->n_sched)
		return false;
	for (size_t k = 0; k <= a->n_sched; k++)
		if ((k > 0 && a->sched[k - 1].has_secret != b->sched[k - 1].has_secret) ||
		    (k > 0 && a->sched[k - 1].from != b->sched[k - 1].from) ||
		    strcmp(secret_path_of(a, k), secret_path_of(b, k)) != 0)
			return false;
	return true;
}

static int set_defs(struct assocs *m, const struct assoc_def *defs, size_t n, bool reread)
{
	struct assoc **v = calloc(n ? n : 1, sizeof(*v));
	struct keys_cache *cache = NULL;

	if (!v)
		return -ENOMEM;
	(void)keys_cache_new(&cache); /* without one, each file is read per association */
	for (size_t i = 0; i < m->n; i++)
		m->v[i]->keep = m->v[i]->name_lives_on = false;
	for (size_t i = 0; i < n; i++) {
		struct assoc *old = find_name(m, defs[i].name);
		bool changed = !old || def_changed_keys(&old->def, &defs[i]);

		if (old)
			old->name_lives_on = true;

		if (!changed && !reread && same_secret_files(&old->def, &defs[i])) {
			/* Same files, read before: a runtime change elsewhere
			 * does not read every association's secret again (a
			 * reload does). */
			old->def = defs[i];
		} else if (!changed) {
			char before[1 + ASSOC_SCHEDULE_MAX][17], after[17];
			char paths[1 + ASSOC_SCHEDULE_MAX][256];
			size_t n_before = 0;

			/* Which file had which secret, before the reload. */
			for (size_t k = 0; k <= old->def.n_sched; k++)
				if (old->secrets[k]) {
					keys_secret_fingerprint(old->secrets[k], before[n_before]);
					snprintf(paths[n_before++], sizeof(paths[0]), "%s",
						 secret_path_of(&old->def, k));
				}
			old->def = defs[i];
			load_secrets(m, old, cache); /* the file may have been replaced */
			/* A secret file replaced in place: none of the SAs
			 * keyed from the old one may stay. A schedule line
			 * naming a new file changes nothing installed. */
			for (size_t k = 0; k <= old->def.n_sched && !changed; k++) {
				if (!old->secrets[k])
					continue;
				keys_secret_fingerprint(old->secrets[k], after);
				for (size_t j = 0; j < n_before && !changed; j++)
					changed =
					    strcmp(paths[j], secret_path_of(&old->def, k)) == 0 &&
					    strcmp(before[j], after) != 0;
			}
			if (changed)
				event_emit(
				    LOG_INFO, EVENT_ASSOCIATION, old->def.name, "secret-changed",
				    "%s: a secret file changed: its SAs are replaced with keys "
				    "from the new secret",
				    old->def.name);
		}
		if (!changed) {
			v[i] = old;
			old->keep = true;
		} else {
			v[i] = calloc(1, sizeof(**v));
			if (!v[i]) {
				for (size_t j = 0; j < i; j++)
					if (!find_name(m, v[j]->def.name) ||
					    v[j] != find_name(m, v[j]->def.name))
						assoc_free(v[j]);
				free(v);
				keys_cache_free(cache);
				return -ENOMEM;
			}
			v[i]->def = defs[i];
			set_state(v[i], "pending", NULL);
			if (old) {
				uint64_t used;
				if (used_up_to(old, &used))
					carry_history(v[i], used, old->in_gen);
				/* Its policies stay in place (updated, not removed
				 * and added again): traffic is never left without
				 * one, so never sent in the clear. */
				memcpy(v[i]->pol, old->pol, sizeof(old->pol));
				memcpy(v[i]->pol_seen, old->pol_seen, sizeof(old->pol_seen));
			} else {
				for (size_t h = 0; h < m->n_history; h++)
					if (strcmp(m->history[h].name, defs[i].name) == 0) {
						carry_history(v[i], m->history[h].out_gen,
							      m->history[h].in_gen);
						m->history[h] = m->history[--m->n_history];
						break;
					}
			}
			load_secrets(m, v[i], cache);
		}
		mark(m, v[i]);
	}
	keys_cache_free(cache);
	/* Retire the associations that are gone or were redefined. */
	for (size_t i = 0; i < m->n; i++) {
		if (!m->v[i]->keep) {
			assoc_retire(m, m->v[i], m->v[i]->name_lives_on);
			assoc_free(m->v[i]);
		}
	}
	free(m->v);
	m->v = v;
	m->n = n;
	index_rebuild(m);
	m->any_dirty = true;
	return 0;
}

int assocs_set_defs(struct assocs *m, const struct assoc_def *defs, size_t n)
{
	return set_defs(m, defs, n, true);
}

int assocs_update_defs(struct assocs *m, const struct assoc_def *defs, size_t n)
{
	return set_defs(m, defs, n, false);
}

static uint64_t window_hi(const struct assocs *m, const struct assoc *a);
static uint64_t window_lo(const struct assocs *m, const struct assoc *a);
static void peer_reappeared(struct assocs *m, struct assoc *a, uint64_t gen);

int assocs_check_redefine(const struct assocs *m, const struct assoc_def *defs, size_t n, char *err,
			  size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct assoc_def *d = &defs[i];
		const struct assoc *a = find_name(m, d->name);
		uint64_t lo, hi;

		/* New, or redefined from scratch: nothing to keep. */
		if (!a || !a->adopted || def_changed_keys(&a->def, d))
			continue;
		/* A new clock (lifetime or epoch) must not move generations far
		 * back: the sender never goes back, so a clock behind it would
		 * leave it on one generation until the clock caught up. */
		bool new_clock = a->def.lifetime_sec != d->lifetime_sec || a->def.epoch != d->epoch;
		if (new_clock) {
			uint64_t g = assoc_clock_gen(d, m->wall);
			/* A little back is fine: within the ceiling the sender
			 * just waits for the clock. */
			if (g + d->lookahead - 1 < a->out_gen) {
				snprintf(
				    err, len,
				    "association %s: the new %s would put the clock at generation "
				    "%llu, behind generation %llu that it already sends on; change "
				    "the lifetime with a schedule line (from GENERATION lifetime "
				    "SECONDS), or delete the association and add it again",
				    d->name,
				    a->def.lifetime_sec != d->lifetime_sec ? "lifetime" : "epoch",
				    (unsigned long long)g, (unsigned long long)a->out_gen);
				return -EINVAL;
			}
		}
		lo = window_lo(m, a) < a->out_gen ? window_lo(m, a) : a->out_gen;
		hi = window_hi(m, a);
		if (a->out_gen > hi)
			hi = a->out_gen;
		for (uint64_t g = lo; g <= hi + 1; g++) {
			bool same =
			    g > hi ||
			    (strcmp(assoc_gen_secret(&a->def, g), assoc_gen_secret(d, g)) == 0 &&
			     assoc_gen_algorithm(&a->def, g) == assoc_gen_algorithm(d, g));
			/* A new clock moves every start on purpose; keys and
			 * algorithms of installed generations must stay. */
			if (same && (new_clock ||
				     assoc_gen_start_ms(&a->def, g) == assoc_gen_start_ms(d, g)))
				continue;
			snprintf(err, len,
				 "association %s: the schedule changes generation %llu, which is "
				 "already installed or in use (generations %llu-%llu); a scheduled "
				 "change must start at generation %llu or later",
				 d->name, (unsigned long long)(g > hi ? g - 1 : g),
				 (unsigned long long)lo, (unsigned long long)hi,
				 (unsigned long long)(hi + 1));
			return -EINVAL;
		}
	}
	return 0;
}

void assocs_set_generations(struct assocs *m, const struct assoc_gen_record *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct assoc *a = find_name(m, v[i].name);
		if (!a) {
			remember(m, v[i].name, v[i].out_gen, v[i].in_gen);
			continue;
		}
		a->out_gen = a->out_saved = v[i].out_gen;
		a->in_gen = a->in_lo = v[i].in_gen;
		a->saved_valid = true;
	}
}

int assocs_get_generations(const struct assocs *m, struct assoc_gen_record **ret, size_t *n)
{
	struct assoc_gen_record *v = calloc(m->n + m->n_history + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		uint64_t used = m->v[i]->out_gen;
		used_up_to(m->v[i], &used);
		snprintf(v[i].name, sizeof(v[i].name), "%s", m->v[i]->def.name);
		v[i].out_gen = used;
		v[i].in_gen = m->v[i]->in_gen;
	}
	/* The history too: it outlives restarts. */
	if (m->n_history)
		memcpy(v + m->n, m->history, m->n_history * sizeof(*v));
	*ret = v;
	*n = m->n + m->n_history;
	return 0;
}

bool assocs_need_save(const struct assocs *m)
{
	return m->need_save;
}

void assocs_generations_saved(struct assocs *m)
{
	for (size_t i = 0; i < m->n; i++) {
		/* A generation that just reached the disk can now be installed. */
		struct assoc *a = m->v[i];
		if (a->out_saved < a->out_gen || !a->saved_valid)
			mark(m, a);
		/* Never lowered: an adopted older SA does not unuse the rest. */
		if (!a->saved_valid || a->out_gen > a->out_saved)
			a->out_saved = a->out_gen;
		a->saved_valid = true;
	}
	m->need_save = false;
}

int assocs_set_released(struct assocs *m, const uint32_t *v, size_t n)
{
	uint32_t *copy = NULL;

	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, v, n * sizeof(*copy));
	}
	free(m->released);
	m->released = copy;
	m->n_released = n;
	return 0;
}

int assocs_get_released(const struct assocs *m, uint32_t **ret, size_t *n)
{
	*ret = NULL;
	*n = m->n_released;
	if (!m->n_released)
		return 0;
	*ret = malloc(m->n_released * sizeof(**ret));
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, m->released, m->n_released * sizeof(**ret));
	return 0;
}

/* --- keys and kernel objects ------------------------------------------- */

static void dir_addrs(const struct assoc *a, bool outbound, const union xfrm_addr_any **src,
		      const union xfrm_addr_any **dst)
{
	*src = outbound ? &a->def.local : &a->def.remote;
	*dst = outbound ? &a->def.remote : &a->def.local;
}

static uint32_t assoc_dir_spi(const struct assoc *a, bool outbound, uint64_t gen)
{
	const union xfrm_addr_any *src, *dst;

	dir_addrs(a, outbound, &src, &dst);
	return assoc_spi(a->def.number, a->def.family, src, dst, gen);
}

/* Derive generation `gen` of one direction into buf; *len gets its size. */
static int derive(const struct assoc *a, bool outbound, uint64_t gen, uint8_t *buf, size_t *len)
{
	const struct keys_secret *secret = gen_secret(a, gen);
	const union xfrm_addr_any *src, *dst;
	struct keys_context ctx;

	if (!secret)
		return -ENOKEY;
	dir_addrs(a, outbound, &src, &dst);
	ctx = (struct keys_context){
	    .name = a->def.name,
	    .number = a->def.number,
	    .family = a->def.family,
	    .src = src,
	    .dst = dst,
	    .generation = gen,
	    .algorithm = assoc_gen_algorithm(&a->def, gen),
	};
	return keys_derive(secret, &ctx, buf, len);
}

/* When the kernel should end an SA by the clock, in whole seconds since
 * the Unix epoch (0: never). An outbound SA soft-expires at the end of its
 * generation (the sender moves on then, if the timer has not moved it
 * already) and hard-expires an overlap later; an inbound one hard-expires
 * an overlap after the end of its generation, when the receive window
 * leaves it anyway. The kernel then cleans up by itself even while tokend
 * is down, and a key is never used much past its time. */
static uint64_t clock_end_sec(const struct assoc *a, uint64_t gen, bool with_overlap)
{
	int64_t end = assoc_gen_start_ms(&a->def, gen + 1);

	if (end == INT64_MIN || end == INT64_MAX || end <= 0)
		return 0;
	if (with_overlap)
		end = sat_add(end, (int64_t)assoc_overlap_ms(&a->def));
	return ((uint64_t)end + 999) / 1000; /* never before the time itself */
}

/* The kernel's limits for an SA of generation `gen`; time limits are
 * relative to `base_sec`, the SA's add time (now, for a new one). */
static void lifetimes(const struct assoc *a, bool outbound, uint64_t gen, uint64_t base_sec,
		      struct xfrm_lifetime_cfg *lft)
{
	uint64_t hard_p = a->def.lifetime_packets;
	uint64_t soft_t = outbound ? clock_end_sec(a, gen, false) : 0;
	uint64_t hard_t = clock_end_sec(a, gen, true);

	*lft = (struct xfrm_lifetime_cfg){
	    .soft_byte_limit = XFRM_INF,
	    .hard_byte_limit = XFRM_INF,
	    .soft_packet_limit = hard_p - hard_p / 10,
	    .hard_packet_limit = hard_p,
	};
	if (a->def.lifetime_bytes) {
		lft->hard_byte_limit = a->def.lifetime_bytes;
		lft->soft_byte_limit = a->def.lifetime_bytes - a->def.lifetime_bytes / 10;
	}
	if (soft_t)
		lft->soft_add_expires_seconds = soft_t > base_sec ? soft_t - base_sec : 1;
	if (hard_t)
		lft->hard_add_expires_seconds = hard_t > base_sec ? hard_t - base_sec : 1;
}

/* The SA of (direction, gen), keys in act->key_buf. */
static int build_sa(const struct assocs *m, const struct assoc *a, bool outbound, uint64_t gen,
		    uint64_t base_sec, struct assoc_action *act)
{
	const struct keys_algorithm_info *alg =
	    keys_algorithm_by_id(assoc_gen_algorithm(&a->def, gen));
	const union xfrm_addr_any *src, *dst;
	size_t len = 0;
	int r;

	if (!alg)
		return -EINVAL;
	r = derive(a, outbound, gen, act->key_buf, &len);
	if (r < 0)
		return r;
	dir_addrs(a, outbound, &src, &dst);
	act->sa = (struct xfrm_sa){
	    .family = a->def.family,
	    .src = *src,
	    .dst = *dst,
	    .spi = assoc_dir_spi(a, outbound, gen),
	    .proto = IPPROTO_ESP,
	    .mode = a->def.mode,
	    .reqid = m->set.reqid_base + a->def.number,
	    .replay_window = a->def.replay_window,
	    .enc_name = alg->kernel_enc,
	    .aead = alg->aead,
	    .icv_bits = alg->icv_bits,
	    .auth_name = alg->kernel_auth,
	    .enc_key = act->key_buf,
	    .enc_key_len = alg->enc_key_len,
	    .auth_key = alg->auth_key_len ? act->key_buf + alg->enc_key_len : NULL,
	    .auth_key_len = alg->auth_key_len,
	};
	lifetimes(a, outbound, gen, base_sec, &act->sa.lft);
	act->sa.cur.add_time = base_sec; /* not sent: what observe_done records */
	act->generation = gen;
	act->outbound = outbound;
	return 0;
}

static void fill_addr(uint8_t family, xfrm_address_t *out, const union xfrm_addr_any *in)
{
	memset(out, 0, sizeof(*out));
	memcpy(out, in, addr_len(family));
}

static void build_policy(const struct assocs *m, const struct assoc *a, int d,
			 struct xfrm_policy *p)
{
	bool out = d == DIR_OUT;
	const union xfrm_addr_any *snet = out ? &a->def.local_net : &a->def.remote_net;
	const union xfrm_addr_any *dnet = out ? &a->def.remote_net : &a->def.local_net;
	uint16_t sport = out ? a->def.local_port : a->def.remote_port;
	uint16_t dport = out ? a->def.remote_port : a->def.local_port;

	*p = (struct xfrm_policy){
	    .family = a->def.family,
	    .dir = dir_kernel[d],
	    .priority = m->set.policy_priority,
	    .action = XFRM_POLICY_ALLOW,
	    .has_tmpl = true,
	};
	fill_addr(a->def.family, &p->sel.saddr, snet);
	fill_addr(a->def.family, &p->sel.daddr, dnet);
	p->sel.prefixlen_s = out ? a->def.local_plen : a->def.remote_plen;
	p->sel.prefixlen_d = out ? a->def.remote_plen : a->def.local_plen;
	p->sel.family = a->def.family;
	p->sel.proto = a->def.proto;
	p->sel.sport = htons(sport);
	p->sel.sport_mask = sport ? 0xffff : 0;
	p->sel.dport = htons(dport);
	p->sel.dport_mask = dport ? 0xffff : 0;
	if (a->def.dev[0])
		p->sel.ifindex = (int)if_nametoindex(a->def.dev);
	fill_addr(a->def.family, &p->tmpl.id.daddr, out ? &a->def.remote : &a->def.local);
	fill_addr(a->def.family, &p->tmpl.saddr, out ? &a->def.local : &a->def.remote);
	p->tmpl.id.proto = IPPROTO_ESP;
	p->tmpl.family = a->def.family;
	p->tmpl.reqid = m->set.reqid_base + a->def.number;
	p->tmpl.mode = a->def.mode;
	p->tmpl.aalgos = p->tmpl.ealgos = p->tmpl.calgos = ~0u;
}

static bool policy_matches(const struct xfrm_policy *want, const struct xfrm_policy *have)
{
	const struct xfrm_selector *a = &want->sel, *b = &have->sel;

	return memcmp(&a->saddr, &b->saddr, sizeof(a->saddr)) == 0 &&
	       memcmp(&a->daddr, &b->daddr, sizeof(a->daddr)) == 0 &&
	       a->prefixlen_s == b->prefixlen_s && a->prefixlen_d == b->prefixlen_d &&
	       a->proto == b->proto && a->sport == b->sport && a->dport == b->dport &&
	       a->sport_mask == b->sport_mask && a->dport_mask == b->dport_mask &&
	       a->ifindex == b->ifindex && want->priority == have->priority &&
	       want->action == have->action && have->has_tmpl &&
	       want->tmpl.reqid == have->tmpl.reqid && want->tmpl.mode == have->tmpl.mode &&
	       memcmp(&want->tmpl.id.daddr, &have->tmpl.id.daddr, sizeof(xfrm_address_t)) == 0;
}

static void digest(const uint8_t *p, size_t n, uint8_t out[32])
{
	unsigned len = 32;

	if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL))
		memset(out, 0, 32);
}

/* Map the generation bits of an SPI to the generation nearest `ref`. */
static uint64_t gen_near(uint32_t spi, uint64_t ref)
{
	uint64_t low = spi % ASSOC_GEN_WINDOW;
	uint64_t base = ref >= ASSOC_GEN_WINDOW / 2 ? ref - ASSOC_GEN_WINDOW / 2 : 0;
	uint64_t g = base - base % ASSOC_GEN_WINDOW + low;

	if (g < base)
		g += ASSOC_GEN_WINDOW;
	return g;
}

/* Does a kernel SA carry the key tokend derives for it? */
static bool key_matches(const struct assoc *a, const struct xfrm_sa *sa, bool outbound,
			uint64_t gen)
{
	uint8_t buf[KEYS_MATERIAL_MAX], d[32];
	size_t len = 0;
	bool ok;

	if (derive(a, outbound, gen, buf, &len) < 0)
		return false;
	digest(buf, len, d);
	keys_wipe(buf, sizeof(buf));
	ok = memcmp(d, sa->key_digest, 32) == 0;
	keys_wipe(d, sizeof(d));
	return ok;
}

/* Time limits are compared as the instants they stand for (add time +
 * seconds), which clock steps do not change; the kernel's add time is
 * whole seconds, hence the second of slack. */
static bool time_limit_matches(uint64_t add_time, uint64_t have, uint64_t want_abs)
{
	uint64_t abs;

	if (!want_abs)
		return have == 0;
	if (!have)
		return false;
	abs = add_time + have;
	return abs + 1 >= want_abs && abs <= want_abs + 1;
}

static bool lft_matches(const struct assoc *a, const struct xfrm_sa *sa, bool outbound,
			uint64_t gen)
{
	struct xfrm_lifetime_cfg want;

	lifetimes(a, outbound, gen, sa->cur.add_time, &want);
	return sa->lft.soft_byte_limit == want.soft_byte_limit &&
	       sa->lft.hard_byte_limit == want.hard_byte_limit &&
	       sa->lft.soft_packet_limit == want.soft_packet_limit &&
	       sa->lft.hard_packet_limit == want.hard_packet_limit &&
	       time_limit_matches(sa->cur.add_time, sa->lft.soft_add_expires_seconds,
				  outbound ? clock_end_sec(a, gen, false) : 0) &&
	       time_limit_matches(sa->cur.add_time, sa->lft.hard_add_expires_seconds,
				  clock_end_sec(a, gen, true));
}

static void update_state(struct assoc *a);

/* --- the observed set -------------------------------------------------- */

static struct obs_sa *obs_find(struct assoc *a, uint32_t spi)
{
	for (size_t i = 0; i < a->n_sas; i++)
		if (a->sas[i].sa.spi == spi)
			return &a->sas[i];
	return NULL;
}

/* A new, empty entry in the observed set; NULL when out of memory. */
static struct obs_sa *obs_add(struct assoc *a)
{
	struct obs_sa *v = realloc(a->sas, (a->n_sas + 1) * sizeof(*v));

	if (!v)
		return NULL;
	a->sas = v;
	v[a->n_sas] = (struct obs_sa){0};
	return &v[a->n_sas++];
}

static void obs_remove(struct assoc *a, uint32_t spi)
{
	for (size_t i = 0; i < a->n_sas; i++)
		if (a->sas[i].sa.spi == spi) {
			a->sas[i] = a->sas[--a->n_sas];
			return;
		}
}

/* Which of this association's SPIs is it, if any? */
static bool classify_spi(const struct assoc *a, uint32_t spi, bool *outbound)
{
	uint32_t prefix = ASSOC_SPI_BASE | (a->def.number & 0xffff) << 8;
	unsigned out_bit = direction_bit(a->def.family, &a->def.local, &a->def.remote);

	if ((spi & ~0xffu) != prefix)
		return false;
	*outbound = ((spi >> 7) & 1) == out_bit;
	return true;
}

static bool orphan_sa_matches(const struct orphan *o, const struct xfrm_sa *sa)
{
	return !o->is_policy && o->sa.spi == sa->spi && o->sa.family == sa->family &&
	       addr_eq(sa->family, &o->sa.dst, &sa->dst);
}

static void orphan_sa_forget(struct assocs *m, const struct xfrm_sa *sa)
{
	for (size_t i = 0; i < m->n_orphans;)
		if (orphan_sa_matches(&m->orphans[i], sa))
			m->orphans[i] = m->orphans[--m->n_orphans];
		else
			i++;
}

/* A foreign SA on one of our computed SPIs: report, never touch. */
static void check_foreign(struct assocs *m, const struct xfrm_sa *sa)
{
	for (size_t i = 0; i < m->n; i++) {
		struct assoc *a = m->v[i];
		bool outbound;

		if (a->def.family != sa->family || !classify_spi(a, sa->spi, &outbound))
			continue;
		if (!addr_eq(sa->family, &sa->dst, outbound ? &a->def.remote : &a->def.local))
			continue;
		snprintf(a->foreign, sizeof(a->foreign),
			 "an SA that tokend did not make (reqid %u) holds SPI 0x%08x, which this "
			 "association computes; tokend leaves it alone",
			 sa->reqid, sa->spi);
		if (strcmp(a->foreign, a->foreign_logged) != 0) {
			event_emit(LOG_WARNING, EVENT_ASSOCIATION, a->def.name, "conflict",
				   "%s: conflict: %s", a->def.name, a->foreign);
			snprintf(a->foreign_logged, sizeof(a->foreign_logged), "%s", a->foreign);
		}
		update_state(a);
		mark(m, a);
	}
}

/* The receive window after the peer was seen sending on generation `gen`:
 * older inbound SAs stay for the overlap (packets still in flight), then go. */
static void peer_moved(struct assocs *m, struct assoc *a, uint64_t gen, uint32_t spi)
{
	event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "peer-moved",
		   "%s: peer now sends on generation %llu (SPI 0x%08x); receive window moves",
		   a->def.name, (unsigned long long)gen, spi);
	a->in_gen = gen;
	a->in_lo_until = m->wall + (int64_t)assoc_overlap_ms(&a->def);
	m->need_save = true;
}

static void ohist_forget(struct assocs *m, const struct orphan *o);

static void sa_seen(struct assocs *m, const struct xfrm_sa *sa, bool update)
{
	uint32_t number;
	struct assoc *a;
	struct obs_sa *o;
	bool outbound, fresh = false;
	uint64_t gen;

	if (sa->proto != IPPROTO_ESP)
		return;
	if (!reqid_ours(m, sa->reqid, &number)) {
		check_foreign(m, sa);
		return;
	}
	if (released(m, number))
		return; /* handed over: not ours, not an orphan either */
	a = find_number(m, number);
	if (!a || a->def.family != sa->family || !classify_spi(a, sa->spi, &outbound)) {
		orphan_sa_forget(m, sa);
		orphan_add_sa(m, sa);
		m->any_dirty = true;
		return;
	}
	if (m->n_ohist)
		ohist_forget(m, &(struct orphan){.sa = {.family = sa->family,
							.dst = sa->dst,
							.spi = sa->spi,
							.reqid = sa->reqid}});
	o = obs_find(a, sa->spi);
	if (!o) {
		o = obs_add(a);
		if (!o)
			return;
		fresh = true;
	}
	gen = gen_near(sa->spi, outbound ? a->out_gen : a->in_gen);
	/* The same SA as before (same generation, same key) needs no new
	 * derivation: counter reads see every SA every interval. */
	if (fresh || o->gen != gen || o->outbound != outbound ||
	    memcmp(o->sa.key_digest, sa->key_digest, sizeof(sa->key_digest)) != 0)
		o->key_ok = key_matches(a, sa, outbound, gen);
	/* A notification of an update describes the request the kernel copied
	 * the limits from, with zero counters and the time of the update as
	 * its add time: of an SA already known, those are kept. */
	bool trust_cur = fresh || !update;
	struct xfrm_lifetime_cur known = o->sa.cur;
	bool rx = trust_cur && sa->cur.packets > 0 && (fresh || sa->cur.packets != known.packets);

	/* A read that follows the last movement closely (a reconcile's dump
	 * right after a counter read) may see no new packet at 20 a second:
	 * not a gap. Half an interval without one is (reads are an interval
	 * apart, give or take a millisecond). */
	int64_t quiet = m->wall - o->rx_at;

	if (rx) {
		o->rx_at = m->wall;
		o->rx_streak++;
	} else if (trust_cur && quiet >= (int64_t)(m->set.counter_interval_usec / 2000)) {
		o->rx_streak = 0;
	}
	sa_copy(&o->sa, sa);
	if (!trust_cur)
		o->sa.cur = known;
	o->outbound = outbound;
	o->gen = gen;
	o->seen = true;
	/* What the kernel kept is checked, not assumed (case S5): a window
	 * cut down or switched off weakens anti-replay silently. */
	if (o->key_ok) {
		uint32_t kept = sa->has_replay_esn ? sa->replay_esn_window : sa->replay_window;
		if (kept != a->def.replay_window && !outbound) {
			snprintf(a->sa_error, sizeof(a->sa_error),
				 "the kernel kept replay window %u on SA 0x%08x, not %u", kept,
				 sa->spi, a->def.replay_window);
			event_emit(LOG_WARNING, EVENT_ASSOCIATION, a->def.name, "sa-error",
				   "%s: %s", a->def.name, a->sa_error);
		}
	}
	/* The peer sends on a newer generation: move the receive window. */
	if (!outbound && o->key_ok && o->gen > a->in_gen && o->sa.cur.packets > 0)
		peer_moved(m, a, o->gen, sa->spi);
	if (!outbound && o->key_ok && o->gen >= a->in_gen && rx)
		peer_reappeared(m, a, o->gen);
	mark(m, a);
	update_state(a);
}

void assocs_sa_seen(struct assocs *m, const struct xfrm_sa *sa, uint64_t now)
{
	(void)now;
	sa_seen(m, sa, false);
}

void assocs_sa_updated(struct assocs *m, const struct xfrm_sa *sa, uint64_t now)
{
	(void)now;
	sa_seen(m, sa, true);
}

void assocs_sa_gone(struct assocs *m, const struct xfrm_sa *sa, uint64_t now)
{
	uint32_t number;
	struct assoc *a;

	orphan_sa_forget(m, sa);
	if (!reqid_ours(m, sa->reqid, &number) || !(a = find_number(m, number)))
		return;
	if (obs_find(a, sa->spi))
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-gone",
			   "%s: SA 0x%08x went away", a->def.name, sa->spi);
	obs_remove(a, sa->spi);
	(void)now;
	mark(m, a);
	update_state(a);
}

void assocs_sa_expired(struct assocs *m, const struct xfrm_sa *sa, bool hard, uint64_t now)
{
	uint32_t number;
	struct assoc *a;
	bool outbound;

	if (!reqid_ours(m, sa->reqid, &number) || !(a = find_number(m, number)) ||
	    !classify_spi(a, sa->spi, &outbound))
		return;
	if (hard) {
		/* The kernel removed it; a lost outbound SA is replaced by the
		 * next generation in the reconcile step. */
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-expired",
			   "%s: SA 0x%08x reached its hard limit", a->def.name, sa->spi);
		obs_remove(a, sa->spi);
	} else if (outbound && sa->spi == assoc_dir_spi(a, true, a->out_gen)) {
		if (assoc_clock_gen(&a->def, m->wall) > a->out_gen) {
			/* Its time is up: the boundary move, which the timer
			 * may have made already. */
			log_debug("%s: outbound SA 0x%08x reached the end of its generation",
				  a->def.name, sa->spi);
		} else {
			/* A byte or packet limit before its time: move early,
			 * as `tokenctl rotate` does (dwell permitting). */
			bool bytes =
			    a->def.lifetime_bytes && sa->cur.bytes >= sa->lft.soft_byte_limit;
			event_emit(
			    LOG_INFO, EVENT_ASSOCIATION, a->def.name, "soft-limit",
			    "%s: outbound SA 0x%08x reached its soft %s limit; moving to the "
			    "next generation",
			    a->def.name, sa->spi, bytes ? "byte" : "packet");
			a->move_wanted = true;
			snprintf(a->move_reason, sizeof(a->move_reason), "soft %s limit",
				 bytes ? "byte" : "packet");
		}
	}
	(void)now;
	mark(m, a);
}

static int policy_dir_index(uint8_t dir)
{
	for (int d = 0; d < DIR_MAX; d++)
		if (dir_kernel[d] == dir)
			return d;
	return -1;
}

static bool orphan_policy_matches(const struct orphan *o, const struct xfrm_policy *p)
{
	return o->is_policy && o->policy.dir == p->dir &&
	       memcmp(&o->policy.sel, &p->sel, sizeof(p->sel)) == 0;
}

static void orphan_policy_forget(struct assocs *m, const struct xfrm_policy *p)
{
	for (size_t i = 0; i < m->n_orphans;)
		if (orphan_policy_matches(&m->orphans[i], p))
			m->orphans[i] = m->orphans[--m->n_orphans];
		else
			i++;
}

void assocs_policy_seen(struct assocs *m, const struct xfrm_policy *p)
{
	uint32_t number;
	struct assoc *a;
	int d = policy_dir_index(p->dir);

	if (!p->has_tmpl || d < 0 || !reqid_ours(m, p->tmpl.reqid, &number) || released(m, number))
		return;
	a = find_number(m, number);
	if (!a) {
		orphan_policy_forget(m, p);
		orphan_add_policy(m, p);
		m->any_dirty = true;
		return;
	}
	if (m->n_ohist)
		ohist_forget(m, &(struct orphan){.is_policy = true, .policy = *p});
	a->pol[d] = *p;
	a->pol_seen[d] = true;
	mark(m, a);
	update_state(a);
}

void assocs_policy_gone(struct assocs *m, const struct xfrm_policy *p)
{
	uint32_t number;
	struct assoc *a;
	int d = policy_dir_index(p->dir);

	orphan_policy_forget(m, p);
	if (!p->has_tmpl || d < 0 || !reqid_ours(m, p->tmpl.reqid, &number) ||
	    !(a = find_number(m, number)))
		return;
	if (a->pol_seen[d])
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "policy-gone",
			   "%s: %s policy went away", a->def.name, dir_names[d]);
	a->pol_seen[d] = false;
	mark(m, a);
	update_state(a);
}

void assocs_resync_begin(struct assocs *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct assoc *a = m->v[i];
		/* Mark and sweep: what an SA was (its counters, its checked
		 * key) outlives the dump that sees it again. */
		for (size_t k = 0; k < a->n_sas; k++)
			a->sas[k].seen = false;
		a->foreign[0] = '\0';
		for (int d = 0; d < DIR_MAX; d++)
			a->pol_seen[d] = false;
	}
	m->n_orphans = 0;
}

void assocs_resync_end(struct assocs *m)
{
	m->synced = true;
	for (size_t i = 0; i < m->n; i++) {
		struct assoc *a = m->v[i];
		for (size_t k = 0; k < a->n_sas;)
			if (!a->sas[k].seen)
				a->sas[k] = a->sas[--a->n_sas];
			else
				k++;
		mark(m, a);
	}
}

/* --- operations -------------------------------------------------------- */

/* The generation the clock gives now: every direction sends on at least
 * this one (0 without a lifetime). */
static uint64_t clock_floor(const struct assocs *m, const struct assoc *a)
{
	return assoc_clock_gen(&a->def, m->wall);
}

/* The highest generation a sender may use: W-1 past the clock's floor, so a
 * peer that lost its state (window [floor, floor+W]) still accepts it, with
 * one generation to spare for a clock a little behind. */
static uint64_t out_ceiling(const struct assocs *m, const struct assoc *a)
{
	return clock_floor(m, a) + a->def.lookahead - 1;
}

static void record_move(struct assocs *m, struct assoc *a, uint64_t from, const char *reason)
{
	a->rotations++;
	a->last = (struct rotation_record){.at_ms = m->wall, .from = from, .to = a->out_gen};
	snprintf(a->last.reason, sizeof(a->last.reason), "%s", reason);
	snprintf(a->last.outcome, sizeof(a->last.outcome), "pending");
	a->out_sent = false;
	a->move_wanted = false;
	m->need_save = true;
	mark(m, a);
	event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "rotated",
		   "%s: rotation %llu: sending moves from generation %llu to %llu (%s), SPI 0x%08x",
		   a->def.name, (unsigned long long)a->rotations, (unsigned long long)from,
		   (unsigned long long)a->out_gen, reason, assoc_dir_spi(a, true, a->out_gen));
}

/* `target`, or past it if that was used already (an adopted kernel SA may
 * be older than the newest generation on disk). */
static uint64_t next_unused(const struct assoc *a, uint64_t target)
{
	return a->saved_valid && target <= a->out_saved ? a->out_saved + 1 : target;
}

/* An early move: one generation ahead of the clock, at most once per dwell
 * and never past the ceiling. */
static int move_ahead(struct assocs *m, struct assoc *a, uint64_t now, const char *reason,
		      const char **why)
{
	uint64_t from = a->out_gen;

	if (next_unused(a, a->out_gen + 1) > out_ceiling(m, a)) {
		*why = a->def.lifetime_sec
			   ? "every generation the peer is sure to accept has been used until "
			     "the clock moves on (raise lookahead for more early moves per period)"
			   : "every generation the peer is sure to accept has been used (raise "
			     "lookahead, or give the association a lifetime so the clock moves "
			     "the floor)";
		return -ERANGE;
	}
	if (a->last_move && now - a->last_move < m->set.dwell_usec) {
		*why = "the sender moved ahead moments ago; the peer needs time to follow";
		return -EBUSY;
	}
	a->out_gen = next_unused(a, a->out_gen + 1);
	a->last_move = now;
	a->moves++;
	record_move(m, a, from, reason);
	return 0;
}

/* The clock passed a boundary (or several: a clock step or a long pause):
 * straight to the clock's generation, one move however far it is. */
static void clock_move(struct assocs *m, struct assoc *a, uint64_t floor)
{
	uint64_t from = a->out_gen;

	a->out_gen = next_unused(a, floor);
	record_move(m, a, from, a->out_gen - from > 1 ? "clock, several periods" : "clock");
}

int assocs_rotate(struct assocs *m, const char *name, uint64_t now, const char **why)
{
	struct assoc *a = find_name(m, name);

	if (!a) {
		*why = "no such association";
		return -ENOENT;
	}
	if (!obs_find(a, assoc_dir_spi(a, true, a->out_gen))) {
		*why = "its outbound SA is not installed, so there is nothing to rotate";
		return -EAGAIN;
	}
	return move_ahead(m, a, now, "rotate", why);
}

int assocs_release(struct assocs *m, const char *name, json_object **ret)
{
	struct assoc *a = find_name(m, name);
	json_object *o, *spis;
	uint32_t *v;

	if (!a)
		return -ENOENT;
	if (released(m, a->def.number))
		return -EALREADY;
	v = realloc(m->released, (m->n_released + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->released = v;
	m->released[m->n_released++] = a->def.number;
	o = json_object_new_object();
	spis = json_object_new_array();
	for (size_t i = 0; i < a->n_sas; i++)
		json_object_array_add(spis, json_object_new_int64(a->sas[i].sa.spi));
	json_object_object_add(o, "name", json_object_new_string(a->def.name));
	json_object_object_add(o, "number", json_object_new_int((int)a->def.number));
	json_object_object_add(o, "spis", spis);
	set_state(a, "released",
		  "handed over to another tool: tokend leaves its SAs and "
		  "policies alone");
	event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "released",
		   "%s: released; its SAs and policies stay in the kernel", a->def.name);
	*ret = o;
	return 0;
}

/* --- reconcile --------------------------------------------------------- */

struct plan {
	struct assoc_action *v;
	size_t n, cap;
};

static struct assoc_action *plan_push(struct plan *p, enum assoc_op op, const char *name)
{
	struct assoc_action *a;

	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct assoc_action *v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		p->v = v;
		p->cap = cap;
	}
	a = &p->v[p->n++];
	memset(a, 0, sizeof(*a));
	a->op = op;
	snprintf(a->name, sizeof(a->name), "%s", name);
	return a;
}

static void plan_pop(struct plan *p)
{
	keys_wipe(p->v[p->n - 1].key_buf, sizeof(p->v[p->n - 1].key_buf));
	p->n--;
}

/* base_sec: the add time the SA's time limits count from (the kernel's,
 * for an update; now, for a new SA). */
static void plan_sa(struct plan *p, const struct assocs *m, struct assoc *a, enum assoc_op op,
		    bool outbound, uint64_t gen, uint64_t base_sec)
{
	struct assoc_action *act = plan_push(p, op, a->def.name);

	if (!act)
		return;
	if (build_sa(m, a, outbound, gen, base_sec, act) < 0) {
		plan_pop(p);
		return;
	}
	a->inflight++;
}

/* New limits for an SA of ours, relative to its own add time. When the
 * kernel added it later than planned (the first SA of an algorithm can take
 * seconds while crypto modules load) and nobody changed it, this is an
 * adjustment, not a repair. */
static void plan_update(struct plan *p, const struct assocs *m, struct assoc *a,
			const struct obs_sa *o)
{
	struct xfrm_lifetime_cfg planned;
	size_t n = p->n;

	plan_sa(p, m, a, ASSOC_OP_UPDATE_SA, o->outbound, o->gen, o->sa.cur.add_time);
	if (p->n == n || !o->planned_add || o->planned_add == o->sa.cur.add_time)
		return;
	lifetimes(a, o->outbound, o->gen, o->planned_add, &planned);
	p->v[n].adjust = memcmp(&planned, &o->sa.lft, sizeof(planned)) == 0;
}

static void plan_del_sa(struct plan *p, const char *name, const struct xfrm_sa *sa)
{
	struct assoc_action *act = plan_push(p, ASSOC_OP_DEL_SA, name);

	if (!act)
		return;
	sa_copy(&act->sa, sa);
}

static void plan_policy(struct plan *p, const char *name, enum assoc_op op,
			const struct xfrm_policy *pol)
{
	struct assoc_action *act = plan_push(p, op, name);

	if (act)
		act->policy = *pol;
}

/* At the first reconcile after start: keep sending on the outbound SA the
 * kernel still has; where it lost it, move past the generation on disk, so
 * no key and sequence number pair is ever sent twice. */
static void adopt(struct assocs *m, struct assoc *a)
{
	uint64_t floor = clock_floor(m, a), best = 0;
	bool found = false;

	a->adopted = true;
	for (size_t i = 0; i < a->n_sas; i++) {
		struct obs_sa *o = &a->sas[i];
		if (o->outbound && o->key_ok && (!found || o->gen > best)) {
			best = o->gen;
			found = true;
		}
	}
	if (found) {
		a->out_gen = best;
		a->out_sent = true;
		if (!a->saved_valid || best > a->out_saved)
			m->need_save = true;
		return; /* behind the clock: plan_outbound moves it on */
	}
	if (a->saved_valid) {
		a->out_gen = a->out_saved + 1 > floor ? a->out_saved + 1 : floor;
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sending-starts",
			   "%s: no outbound SA in the kernel; generation %llu was used before, so "
			   "sending starts on %llu",
			   a->def.name, (unsigned long long)a->out_saved,
			   (unsigned long long)a->out_gen);
	} else {
		a->out_gen = floor;
		if (a->def.lifetime_sec)
			event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sending-starts",
				   "%s: sending starts on generation %llu, the clock's",
				   a->def.name, (unsigned long long)floor);
	}
	m->need_save = true;
}

/* Is the peer in step? When the clock retires a generation (an overlap
 * after it ended) with the peer last seen on it, and a counter read after
 * its end still saw its packets come in (traffic was flowing across the
 * boundary), tokend waits for the peer's packets on a newer generation:
 * when they reappear more than the overlap plus a counter interval after
 * the boundary, the peer switched that late, so its clock or epoch is
 * behind ours by more than the overlap, and its packets in between were
 * dropped. That is reported (with the lag) until a later retirement finds
 * the peer already on the new generation. Traffic that merely stops at a
 * boundary never reappears, and is not reported. */
static void peer_check(struct assocs *m, struct assoc *a, uint64_t lo_clock)
{
	if (!a->def.lifetime_sec || lo_clock == a->retire_checked)
		return;
	a->awaiting_since = 0; /* one boundary at a time */
	if (a->adopted && a->retire_checked && a->in_gen < lo_clock) {
		struct obs_sa *o = obs_find(a, assoc_dir_spi(a, false, a->in_gen));
		int64_t end = assoc_gen_start_ms(&a->def, a->in_gen + 1);

		/* Flowing: reads in a row saw packets, the last after the
		 * end. A lone keepalive is not traffic across a boundary. */
		if (o && o->key_ok && o->rx_at > end && o->rx_streak >= 2)
			a->awaiting_since = end;
	} else if (a->peer_behind && a->retire_checked) {
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "peer-in-step",
			   "%s: the peer is in step again: it moved on to generation %llu in time",
			   a->def.name, (unsigned long long)a->in_gen);
		a->peer_behind = false;
		a->peer_note[0] = '\0';
	}
	a->retire_checked = lo_clock;
}

static void peer_reappeared(struct assocs *m, struct assoc *a, uint64_t gen)
{
	int64_t lag, ov = (int64_t)assoc_overlap_ms(&a->def);

	if (!a->awaiting_since)
		return;
	lag = m->wall - a->awaiting_since;
	a->awaiting_since = 0;
	if (lag <= ov + (int64_t)(m->set.counter_interval_usec / 1000))
		return; /* within the overlap, give or take a counter read */
	snprintf(a->peer_note, sizeof(a->peer_note),
		 "the peer moved on to generation %llu about %lld ms after it began, more than "
		 "the overlap (%lld ms): its clock or epoch is behind ours, and its packets "
		 "sent in between on the generation before were dropped",
		 (unsigned long long)gen, (long long)lag, (long long)ov);
	if (!a->peer_behind)
		event_emit(LOG_WARNING, EVENT_ASSOCIATION, a->def.name, "peer-out-of-step",
			   "%s: %s", a->def.name, a->peer_note);
	a->peer_behind = true;
}

/* The receive window [in_lo, hi]. The clock raises it: a generation that
 * ended more than an overlap ago is not received any more. Generations the
 * peer has left stay for an overlap after it was seen on a newer one. */
static void window_update(struct assocs *m, struct assoc *a)
{
	uint64_t ov = assoc_overlap_ms(&a->def);
	uint64_t lo_clock = assoc_clock_gen(&a->def, m->wall - (int64_t)ov);

	peer_check(m, a, lo_clock);
	if (a->in_gen < lo_clock) {
		a->in_gen = lo_clock;
		m->need_save = true;
	}
	if (a->in_lo > a->in_gen || (a->in_lo < a->in_gen && m->wall >= a->in_lo_until))
		a->in_lo = a->in_gen;
	if (a->in_lo < lo_clock)
		a->in_lo = lo_clock;
}

static uint64_t window_hi(const struct assocs *m, const struct assoc *a)
{
	uint64_t floor = clock_floor(m, a);

	return (a->in_gen > floor ? a->in_gen : floor) + a->def.lookahead;
}

/* The lowest generation of the window, never more than the widest window
 * can be below its top (2W + 1: W early moves past an overlap), even before
 * the first plan has brought in_lo up to the clock. */
static uint64_t window_lo(const struct assocs *m, const struct assoc *a)
{
	uint64_t hi = window_hi(m, a), span = 2 * (uint64_t)a->def.lookahead + 1;

	return hi - a->in_lo > span ? hi - span : a->in_lo;
}

static uint64_t wall_sec(const struct assocs *m)
{
	return m->wall > 0 ? (uint64_t)m->wall / 1000 : 0;
}

static void plan_policies(struct plan *p, const struct assocs *m, struct assoc *a)
{
	int dirs = a->def.mode == XFRM_MODE_TUNNEL ? DIR_MAX : DIR_FWD;

	for (int d = 0; d < dirs; d++) {
		struct xfrm_policy want;

		build_policy(m, a, d, &want);
		if (a->pol_seen[d] && policy_matches(&want, &a->pol[d]))
			continue;
		/* A policy of ours with another selector is replaced whole:
		 * the kernel keys policies by selector. */
		if (a->pol_seen[d] && memcmp(&want.sel, &a->pol[d].sel, sizeof(want.sel)) != 0)
			plan_policy(p, a->def.name, ASSOC_OP_DEL_POLICY, &a->pol[d]);
		plan_policy(p, a->def.name,
			    a->pol_seen[d] &&
				    memcmp(&want.sel, &a->pol[d].sel, sizeof(want.sel)) == 0
				? ASSOC_OP_UPDATE_POLICY
				: ASSOC_OP_ADD_POLICY,
			    &want);
	}
}

static void plan_outbound(struct plan *p, struct assocs *m, struct assoc *a, uint64_t now)
{
	uint64_t floor = clock_floor(m, a);
	uint32_t spi = assoc_dir_spi(a, true, a->out_gen);
	struct obs_sa *o = obs_find(a, spi);
	const char *why = NULL;

	if (a->out_gen < floor) {
		clock_move(m, a, floor);
		return; /* installed once the new generation is on disk */
	}
	if (o && !o->key_ok) {
		snprintf(a->conflict, sizeof(a->conflict),
			 "the outbound SA 0x%08x in the kernel does not carry the derived key; "
			 "tokend never changes a key under an SPI and leaves it alone",
			 spi);
		return;
	}
	if (!o && a->out_sent) {
		/* Lost: never send twice under one key. Move to the next
		 * generation, which the peer already accepts. */
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-lost",
			   "%s: outbound SA 0x%08x was lost", a->def.name, spi);
		a->out_sent = false;
		a->move_wanted = true;
		snprintf(a->move_reason, sizeof(a->move_reason), "outbound SA lost");
	}
	if (a->move_wanted) {
		if (move_ahead(m, a, now, a->move_reason[0] ? a->move_reason : "soft limit",
			       &why) == 0) {
			a->move_reason[0] = '\0';
			return; /* installed once the new generation is on disk */
		}
		if (!o) {
			snprintf(a->sa_error, sizeof(a->sa_error),
				 "the outbound SA was lost and cannot be replaced yet: %s", why);
			return;
		}
		if (strcmp(why, a->move_refused) != 0)
			event_emit(LOG_WARNING, EVENT_ASSOCIATION, a->def.name, "move-refused",
				   "%s: cannot move ahead yet: %s", a->def.name, why);
		snprintf(a->move_refused, sizeof(a->move_refused), "%s", why);
	} else {
		a->move_refused[0] = '\0';
	}
	if (a->out_gen > a->out_saved || !a->saved_valid) {
		/* Waiting for the state file; in degraded mode it cannot be
		 * written, and no new generation is used unrecorded. */
		if (m->degraded)
			snprintf(
			    a->sa_error, sizeof(a->sa_error),
			    "generation %llu cannot be recorded: the state file is unreadable "
			    "(degraded mode), and no generation is sent on before it is on disk",
			    (unsigned long long)a->out_gen);
		return;
	}
	if (!o && a->out_gen > out_ceiling(m, a)) {
		/* Used generations are never sent on again, and a peer that
		 * lost its state would not accept this one. */
		snprintf(a->sa_error, sizeof(a->sa_error),
			 "generation %llu would be the next to send on, but a peer that lost its "
			 "state accepts generations up to %llu only (floor %llu + lookahead - 1); "
			 "%s",
			 (unsigned long long)a->out_gen, (unsigned long long)out_ceiling(m, a),
			 (unsigned long long)floor,
			 a->def.lifetime_sec ? "sending resumes when the clock reaches it"
					     : "raise lookahead on both peers");
		return;
	}
	if (!o)
		plan_sa(p, m, a, ASSOC_OP_ADD_SA, true, a->out_gen, wall_sec(m));
	else if (!lft_matches(a, &o->sa, true, a->out_gen))
		plan_update(p, m, a, o);
	/* Older outbound SAs are no longer used once the new one is in. */
	for (size_t i = 0; o && i < a->n_sas; i++)
		if (a->sas[i].outbound && a->sas[i].sa.spi != spi)
			plan_del_sa(p, a->def.name, &a->sas[i].sa);
}

static void plan_inbound(struct plan *p, struct assocs *m, struct assoc *a)
{
	uint64_t hi = window_hi(m, a);

	for (uint64_t g = window_lo(m, a); g <= hi; g++) {
		struct obs_sa *o = obs_find(a, assoc_dir_spi(a, false, g));

		if (o && !o->key_ok)
			continue; /* reported as a conflict below */
		if (!gen_secret(a, g))
			continue; /* reported by update_state */
		if (!o)
			plan_sa(p, m, a, ASSOC_OP_ADD_SA, false, g, wall_sec(m));
		else if (!lft_matches(a, &o->sa, false, g))
			plan_update(p, m, a, o);
	}
	for (size_t i = 0; i < a->n_sas; i++) {
		struct obs_sa *o = &a->sas[i];
		/* An SA of a retired secret cannot be checked any more; outside
		 * the window it is one of ours all the same. */
		if (!o->outbound && (o->key_ok || !gen_secret(a, o->gen)) &&
		    (o->gen < a->in_lo || o->gen > hi))
			plan_del_sa(p, a->def.name, &o->sa);
	}
}

/* The secret error that matters now: one a live generation needs. */
static void check_live_secrets(struct assocs *m, struct assoc *a)
{
	/* A sender behind the clock is about to move up to it. */
	uint64_t out = a->out_gen > clock_floor(m, a) ? a->out_gen : clock_floor(m, a);
	uint64_t lo = window_lo(m, a) < out ? window_lo(m, a) : out;
	uint64_t hi = window_hi(m, a);

	if (out > hi)
		hi = out;
	a->secret_error[0] = '\0';
	for (size_t k = 0; k <= a->def.n_sched; k++) {
		if (!a->secret_errors[k] || assoc_secret_retired(&a->def, k, lo))
			continue;
		/* Does any generation in [lo, hi] use secret k? */
		for (uint64_t g = lo; g <= hi; g++)
			if (gen_secret_index(&a->def, g) == k) {
				snprintf(a->secret_error, sizeof(a->secret_error), "%s",
					 a->secret_errors[k]);
				return;
			}
	}
}

static void update_state(struct assoc *a)
{
	uint32_t spi = assoc_dir_spi(a, true, a->out_gen);
	struct obs_sa *o = obs_find(a, spi);

	if (a->secret_error[0])
		set_state(a, "error", a->secret_error);
	else if (a->foreign[0])
		set_state(a, "conflict", a->foreign);
	else if (a->sa_error[0])
		set_state(a, "error", a->sa_error);
	else if (a->conflict[0])
		set_state(a, "conflict", a->conflict);
	else if (a->peer_behind)
		set_state(a, "error", a->peer_note);
	else if (o && o->key_ok && a->pol_seen[DIR_OUT] && a->pol_seen[DIR_IN])
		set_state(a, "up", NULL);
	else
		set_state(a, "pending", NULL);
}

/* The wall-clock time of the association's next clock-driven step. */
static int64_t assoc_deadline(const struct assocs *m, const struct assoc *a)
{
	uint64_t ov = assoc_overlap_ms(&a->def);
	int64_t d = INT64_MAX, t;

	if (!a->def.lifetime_sec)
		return INT64_MAX;
	/* The next boundary (the sender moves, the window grows)... */
	t = assoc_gen_start_ms(&a->def, clock_floor(m, a) + 1);
	d = t < d ? t : d;
	/* ...the next generation leaving the window by the clock... */
	t = sat_add(
	    assoc_gen_start_ms(&a->def, assoc_clock_gen(&a->def, m->wall - (int64_t)ov) + 1),
	    (int64_t)ov);
	d = t < d ? t : d;
	/* ...and the end of an overlap after the peer moved on. */
	if (a->in_lo < a->in_gen && a->in_lo_until < d)
		d = a->in_lo_until;
	return d;
}

static void plan_one(struct plan *p, struct assocs *m, struct assoc *a, uint64_t now)
{
	a->dirty = false;
	a->conflict[0] = '\0';
	if (!a->adopted && m->synced)
		adopt(m, a);
	/* Policies first, even without keys: traffic meant to be protected is
	 * then dropped rather than sent in the clear. */
	plan_policies(p, m, a);
	window_update(m, a);
	check_live_secrets(m, a);
	a->deadline = assoc_deadline(m, a);
	if (a->secret_error[0] || (a->sa_retry_at && now < a->sa_retry_at)) {
		update_state(a);
		return;
	}
	plan_inbound(p, m, a);
	plan_outbound(p, m, a, now);
	a->deadline = assoc_deadline(m, a);
	update_state(a);
}

static bool orphan_same(const struct orphan *a, const struct orphan *b)
{
	if (a->is_policy != b->is_policy)
		return false;
	return a->is_policy ? orphan_policy_matches(a, &b->policy) : orphan_sa_matches(a, &b->sa);
}

static struct orphan_hist *ohist_find(struct assocs *m, const struct orphan *o, uint64_t now)
{
	for (size_t i = 0; i < m->n_ohist; i++) {
		struct orphan_hist *h = &m->ohist[i];

		if (!orphan_same(&h->id, o))
			continue;
		/* Quiet time or counting window over: count afresh. */
		if (h->quiet_until ? now >= h->quiet_until
				   : now - h->first_usec > ORPHAN_WINDOW_USEC) {
			h->first_usec = now;
			h->removals = 0;
			h->quiet_until = 0;
		}
		return h;
	}
	return NULL;
}

/* An SA or policy that an association tokend holds has (again) is not an
 * orphan that someone else keeps putting back: tokend put it there itself,
 * a runtime association deleted and added again, say. Its removals so far
 * are forgotten; counted on, they would make the next delete of that
 * association leave its objects in the kernel as "contested". */
static void ohist_forget(struct assocs *m, const struct orphan *o)
{
	for (size_t i = 0; i < m->n_ohist;)
		if (orphan_same(&m->ohist[i].id, o))
			m->ohist[i] = m->ohist[--m->n_ohist];
		else
			i++;
}

static void ohist_note_removal(struct assocs *m, const struct assoc_action *act, uint64_t now)
{
	struct orphan id = {.is_policy = act->op == ASSOC_OP_DEL_POLICY};
	struct orphan_hist *h;

	if (id.is_policy) {
		id.policy = act->policy;
	} else {
		id.sa.family = act->sa.family;
		id.sa.dst = act->sa.dst;
		id.sa.spi = act->sa.spi;
		id.sa.reqid = act->sa.reqid;
	}
	h = ohist_find(m, &id, now);
	if (!h) {
		size_t k = 0;

		if (m->n_ohist < ORPHAN_HIST_MAX) {
			k = m->n_ohist++;
		} else {
			for (size_t i = 1; i < m->n_ohist; i++)
				if (m->ohist[i].first_usec < m->ohist[k].first_usec)
					k = i;
		}
		h = &m->ohist[k];
		*h = (struct orphan_hist){.id = id, .first_usec = now};
	}
	h->removals++;
}

/* Removed this often lately and back each time: left alone, said once. */
static bool orphan_contested(struct assocs *m, const struct orphan *o, uint64_t now)
{
	struct orphan_hist *h = ohist_find(m, o, now);
	uint32_t reqid = o->is_policy ? o->policy.tmpl.reqid : o->sa.reqid, number = 0;

	if (!h || h->removals < ORPHAN_RETURNS)
		return false;
	if (!h->quiet_until) {
		h->quiet_until = now + ORPHAN_QUIET_USEC;
		reqid_ours(m, reqid, &number);
		event_emit(
		    LOG_WARNING, EVENT_ASSOCIATION, NULL, "orphan-contested",
		    "an %s with reqid %u (number %u, in tokend's range but in no association "
		    "of its own) came back after each of %u removals: another manager "
		    "installs it, perhaps a second tokend in this network namespace; tokend "
		    "leaves it alone for %llu minutes. Give each tokend its own reqid-base",
		    o->is_policy ? "IPsec policy" : "SA", reqid, number, h->removals,
		    ORPHAN_QUIET_USEC / 60000000ULL);
	}
	return now < h->quiet_until;
}

static void plan_orphans(struct plan *p, struct assocs *m, uint64_t now)
{
	if (m->degraded)
		return; /* tokend does not know its full set: remove nothing */
	for (size_t i = 0; i < m->n_orphans; i++) {
		struct orphan *o = &m->orphans[i];
		if (orphan_contested(m, o, now))
			continue;
		if (o->is_policy)
			plan_policy(p, "", ASSOC_OP_DEL_POLICY, &o->policy);
		else
			plan_del_sa(p, "", &o->sa);
	}
}

int assocs_plan(struct assocs *m, uint64_t now, bool all, struct assoc_action **ret)
{
	struct plan p = {0};

	*ret = NULL;
	if (!m->synced)
		return 0;
	/* Orphans first: a redefined association's old SAs hold SPIs its new
	 * ones take. */
	plan_orphans(&p, m, now);
	for (size_t i = 0; i < m->n; i++) {
		struct assoc *a = m->v[i];
		if (released(m, a->def.number)) {
			set_state(a, "released",
				  "handed over to another tool: tokend leaves its SAs "
				  "and policies alone");
			continue;
		}
		if ((all || a->dirty) && a->inflight == 0)
			plan_one(&p, m, a, now);
	}
	m->any_dirty = false;
	/* The plan array moved as it grew: point every SA at its own key
	 * buffer only now. */
	for (size_t i = 0; i < p.n; i++) {
		struct assoc_action *act = &p.v[i];
		if (act->op != ASSOC_OP_ADD_SA && act->op != ASSOC_OP_UPDATE_SA)
			continue;
		act->sa.enc_key = act->key_buf;
		act->sa.auth_key = act->sa.auth_key_len ? act->key_buf + act->sa.enc_key_len : NULL;
	}
	*ret = p.v;
	return (int)p.n;
}

void assoc_actions_free(struct assoc_action *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		keys_wipe(v[i].key_buf, sizeof(v[i].key_buf));
	free(v);
}

static void describe_sa_error(const struct assoc_action *act, const struct nl_ack *ack, char *buf,
			      size_t len)
{
	const char *msg = ack->msg[0] ? ack->msg : strerror(-ack->error);

	/* A kernel without ESP (or without the algorithm) answers the SA add
	 * with ENOENT/ENOSYS/EPROTONOSUPPORT. */
	if (ack->error == -ENOENT || ack->error == -ENOSYS || ack->error == -EPROTONOSUPPORT ||
	    ack->error == -EOPNOTSUPP)
		snprintf(
		    buf, len,
		    "the kernel cannot install ESP SAs (%s): it lacks ESP support or the "
		    "algorithm %s (modules esp4/esp6 and the crypto templates); the policies are "
		    "installed, so the protected traffic is blocked, not sent in the clear",
		    msg, act->sa.enc_name ? act->sa.enc_name : "?");
	else if (ack->error == -EEXIST)
		snprintf(
		    buf, len,
		    "SPI 0x%08x is already taken by an SA tokend did not make; it is left alone",
		    act->sa.spi);
	else
		snprintf(buf, len, "the kernel refused SA 0x%08x: %s", act->sa.spi, msg);
}

static void observe_done(struct assocs *m, struct assoc *a, const struct assoc_action *act)
{
	int d = policy_dir_index(act->policy.dir);
	struct obs_sa *o;

	switch (act->op) {
	case ASSOC_OP_ADD_SA:
	case ASSOC_OP_UPDATE_SA:
		o = obs_find(a, act->sa.spi);
		if (!o && !(o = obs_add(a)))
			return;
		{
			struct xfrm_lifetime_cur cur = o->sa.cur;
			sa_copy(&o->sa, &act->sa);
			o->sa.cur =
			    act->op == ASSOC_OP_UPDATE_SA
				? cur
				: (struct xfrm_lifetime_cur){.add_time = act->sa.cur.add_time};
		}
		digest(act->key_buf, act->sa.enc_key_len + act->sa.auth_key_len, o->sa.key_digest);
		o->planned_add = act->op == ASSOC_OP_ADD_SA ? act->sa.cur.add_time : 0;
		o->outbound = act->outbound;
		o->gen = act->generation;
		o->key_ok = true;
		o->seen = true;
		break;
	case ASSOC_OP_DEL_SA:
		obs_remove(a, act->sa.spi);
		break;
	case ASSOC_OP_ADD_POLICY:
	case ASSOC_OP_UPDATE_POLICY:
		if (d >= 0) {
			a->pol[d] = act->policy;
			a->pol_seen[d] = true;
		}
		break;
	case ASSOC_OP_DEL_POLICY:
		if (d >= 0 && a->pol_seen[d] &&
		    memcmp(&a->pol[d].sel, &act->policy.sel, sizeof(act->policy.sel)) == 0)
			a->pol_seen[d] = false;
		break;
	}
	(void)m;
}

void assocs_action_done(struct assocs *m, const struct assoc_action *act, const struct nl_ack *ack,
			uint64_t now)
{
	struct assoc *a = act->name[0] ? find_name(m, act->name) : NULL;
	char buf[400];

	if (a && (act->op == ASSOC_OP_ADD_SA || act->op == ASSOC_OP_UPDATE_SA) && a->inflight > 0)
		a->inflight--;
	if (!a) {
		if ((act->op == ASSOC_OP_DEL_SA || act->op == ASSOC_OP_DEL_POLICY) &&
		    ack->error == 0)
			ohist_note_removal(m, act, now);
		if (act->op == ASSOC_OP_DEL_SA)
			orphan_sa_forget(m, &act->sa);
		else if (act->op == ASSOC_OP_DEL_POLICY)
			orphan_policy_forget(m, &act->policy);
		if (ack->error < 0 && ack->error != -ENOENT && ack->error != -ESRCH)
			event_emit(LOG_WARNING, EVENT_ASSOCIATION, NULL, "orphan-kept",
				   "could not remove an orphaned %s of tokend: %s",
				   act->op == ASSOC_OP_DEL_POLICY ? "policy" : "SA",
				   ack->msg[0] ? ack->msg : strerror(-ack->error));
		return;
	}
	if (ack->error < 0) {
		switch (act->op) {
		case ASSOC_OP_ADD_SA:
		case ASSOC_OP_UPDATE_SA:
			describe_sa_error(act, ack, buf, sizeof(buf));
			if (strcmp(buf, a->sa_error) != 0)
				event_emit(LOG_ERR, EVENT_ASSOCIATION, a->def.name, "refused",
					   "%s: %s", a->def.name, buf);
			if (act->outbound && act->generation == a->out_gen && a->rotations &&
			    a->last.to == act->generation)
				snprintf(a->last.outcome, sizeof(a->last.outcome), "failed: %s",
					 buf);
			snprintf(a->sa_error, sizeof(a->sa_error), "%s", buf);
			/* Retry with backoff: a missing module does not appear by
			 * itself every second. */
			if (a->sa_retry_at <= now) {
				a->sa_backoff = a->sa_backoff ? a->sa_backoff * 2 : 1000000ULL;
				if (a->sa_backoff > 60000000ULL)
					a->sa_backoff = 60000000ULL;
				a->sa_retry_at = now + a->sa_backoff;
			}
			break;
		case ASSOC_OP_ADD_POLICY:
		case ASSOC_OP_UPDATE_POLICY:
			event_emit(LOG_ERR, EVENT_ASSOCIATION, a->def.name, "refused",
				   "%s: the kernel refused the %s policy: %s", a->def.name,
				   act->policy.dir == XFRM_POLICY_OUT  ? "out"
				   : act->policy.dir == XFRM_POLICY_IN ? "in"
								       : "fwd",
				   ack->msg[0] ? ack->msg : strerror(-ack->error));
			break;
		default:
			break; /* already gone is fine */
		}
		update_state(a);
		return;
	}
	if (act->op == ASSOC_OP_DEL_SA) {
		/* What it carried, as last read: each generation's share. */
		struct obs_sa *o = obs_find(a, act->sa.spi);
		if (o)
			event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-removed",
				   "%s: SA 0x%08x removed (%s, generation %llu, carried %llu "
				   "packets, %llu bytes)",
				   a->def.name, act->sa.spi, o->outbound ? "outbound" : "inbound",
				   (unsigned long long)o->gen,
				   (unsigned long long)o->sa.cur.packets,
				   (unsigned long long)o->sa.cur.bytes);
		else
			event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-removed",
				   "%s: SA 0x%08x removed", a->def.name, act->sa.spi);
	}
	/* The kernel did it: the observed set says so now, before its own
	 * notification is read, so a second pass does not plan it again. */
	observe_done(m, a, act);
	/* What the kernel now has may allow the next step (the old outbound
	 * SA goes once the new one is in): reconsider this association. */
	mark(m, a);
	switch (act->op) {
	case ASSOC_OP_ADD_SA:
		a->sa_error[0] = '\0';
		a->sa_retry_at = a->sa_backoff = 0;
		if (act->outbound && act->generation == a->out_gen) {
			a->out_sent = true;
			if (a->rotations && a->last.to == act->generation)
				snprintf(a->last.outcome, sizeof(a->last.outcome), "done");
		}
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-installed",
			   "%s: %s SA 0x%08x installed (generation %llu)", a->def.name,
			   act->outbound ? "outbound" : "inbound", act->sa.spi,
			   (unsigned long long)act->generation);
		break;
	case ASSOC_OP_UPDATE_SA:
		if (act->adjust)
			log_debug("%s: time limits of SA 0x%08x counted from its add time in the "
				  "kernel, which was later than planned",
				  a->def.name, act->sa.spi);
		else
			event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "sa-repaired",
				   "%s: lifetimes of SA 0x%08x restored", a->def.name, act->sa.spi);
		break;
	case ASSOC_OP_DEL_SA:
		break;
	case ASSOC_OP_ADD_POLICY:
	case ASSOC_OP_UPDATE_POLICY:
		event_emit(LOG_INFO, EVENT_ASSOCIATION, a->def.name, "policy-installed",
			   "%s: %s policy installed", a->def.name,
			   act->policy.dir == XFRM_POLICY_OUT  ? "out"
			   : act->policy.dir == XFRM_POLICY_IN ? "in"
							       : "fwd");
		break;
	case ASSOC_OP_DEL_POLICY:
		break;
	}
}

void assocs_plan_abandoned(struct assocs *m)
{
	for (size_t i = 0; i < m->n; i++)
		m->v[i]->inflight = 0;
}

bool assocs_dirty(const struct assocs *m)
{
	return m->any_dirty;
}

void assoc_action_describe(const struct assoc_action *a, char *buf, size_t len)
{
	static const char *const ops[] = {"add SA",	"update SA",	 "delete SA",
					  "add policy", "update policy", "delete policy"};
	char what[256];

	if (a->op <= ASSOC_OP_DEL_SA)
		xfrm_sa_describe(&a->sa, what, sizeof(what));
	else
		xfrm_policy_describe(&a->policy, what, sizeof(what));
	snprintf(buf, len, "%s: %s %s", a->name[0] ? a->name : "(orphan)", ops[a->op], what);
}

/* --- status ------------------------------------------------------------- */

static json_object *json_addr(uint8_t family, const void *a)
{
	char buf[INET6_ADDRSTRLEN];

	return json_object_new_string(inet_ntop(family, a, buf, sizeof(buf)) ? buf : "?");
}

static json_object *json_net(uint8_t family, const union xfrm_addr_any *a, uint8_t plen)
{
	char buf[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 5];

	inet_ntop(family, a, buf, sizeof(buf));
	snprintf(out, sizeof(out), "%s/%u", buf, plen);
	return json_object_new_string(out);
}

static json_object *json_sa(const struct assoc *a, const struct obs_sa *o, uint32_t spi,
			    uint64_t gen)
{
	json_object *j = json_object_new_object();

	json_object_object_add(j, "generation", json_object_new_int64((int64_t)gen));
	json_object_object_add(j, "spi", json_object_new_int64(spi));
	json_object_object_add(j, "installed", json_object_new_boolean(o != NULL));
	json_object_object_add(j, "bytes", json_object_new_int64(o ? (int64_t)o->sa.cur.bytes : 0));
	json_object_object_add(j, "packets",
			       json_object_new_int64(o ? (int64_t)o->sa.cur.packets : 0));
	if (o)
		json_object_object_add(j, "replay_window",
				       json_object_new_int64(o->sa.has_replay_esn
								 ? o->sa.replay_esn_window
								 : o->sa.replay_window));
	(void)a;
	return j;
}

/* RFC 3339 in UTC with milliseconds. */
static json_object *json_time(int64_t t_ms)
{
	char buf[40];
	struct tm tm;
	time_t sec;

	if (t_ms == INT64_MAX || t_ms == INT64_MIN)
		return NULL;
	sec = (time_t)(t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000);
	if (!gmtime_r(&sec, &tm))
		return NULL;
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(t_ms - (int64_t)sec * 1000));
	return json_object_new_string(buf);
}

static json_object *rotation_json(const struct assocs *m, const struct assoc *a)
{
	json_object *r = json_object_new_object(), *last = NULL;
	uint64_t floor = clock_floor(m, a);

	json_object_object_add(r, "lifetime", json_object_new_int64((int64_t)a->def.lifetime_sec));
	if (a->def.lifetime_sec) {
		const char *secret = assoc_gen_secret(&a->def, a->out_gen);
		int64_t next =
		    assoc_gen_start_ms(&a->def, (a->out_gen > floor ? a->out_gen : floor) + 1);
		uint64_t period_ms = (uint64_t)(assoc_gen_start_ms(&a->def, floor + 1) -
						assoc_gen_start_ms(&a->def, floor));

		json_object_object_add(r, "period",
				       json_object_new_int64((int64_t)period_ms / 1000));
		json_object_object_add(r, "epoch", json_object_new_int64(a->def.epoch));
		json_object_object_add(r, "phase_ms",
				       json_object_new_int64((int64_t)assoc_phase_ms(&a->def)));
		json_object_object_add(r, "overlap_ms",
				       json_object_new_int64((int64_t)assoc_overlap_ms(&a->def)));
		json_object_object_add(r, "clock_generation",
				       json_object_new_int64((int64_t)floor));
		json_object_object_add(r, "next_rotation", json_time(next));
		json_object_object_add(
		    r, "next_rotation_in_ms",
		    json_object_new_int64(next == INT64_MAX ? -1 : next - m->wall));
		json_object_object_add(r, "secret_file", json_object_new_string(secret));
	}
	json_object_object_add(r, "rotations", json_object_new_int64((int64_t)a->rotations));
	if (a->rotations) {
		last = json_object_new_object();
		json_object_object_add(last, "at", json_time(a->last.at_ms));
		json_object_object_add(last, "from", json_object_new_int64((int64_t)a->last.from));
		json_object_object_add(last, "to", json_object_new_int64((int64_t)a->last.to));
		json_object_object_add(last, "reason", json_object_new_string(a->last.reason));
		json_object_object_add(last, "outcome", json_object_new_string(a->last.outcome));
	}
	json_object_object_add(r, "last", last);
	json_object_object_add(r, "peer_in_step", json_object_new_boolean(!a->peer_behind));
	return r;
}

static json_object *assoc_json(const struct assocs *m, const struct assoc *a)
{
	json_object *j = json_object_new_object(), *in = json_object_new_array(), *pol;
	static const char *const proto_names[256] = {[IPPROTO_TCP] = "tcp",
						     [IPPROTO_UDP] = "udp",
						     [IPPROTO_ICMP] = "icmp",
						     [IPPROTO_ICMPV6] = "ipv6-icmp",
						     [IPPROTO_SCTP] = "sctp"};
	uint32_t out_spi = assoc_dir_spi(a, true, a->out_gen);

	json_object_object_add(j, "name", json_object_new_string(a->def.name));
	json_object_object_add(j, "number", json_object_new_int((int)a->def.number));
	json_object_object_add(j, "local", json_addr(a->def.family, &a->def.local));
	json_object_object_add(j, "remote", json_addr(a->def.family, &a->def.remote));
	json_object_object_add(
	    j, "mode",
	    json_object_new_string(a->def.mode == XFRM_MODE_TUNNEL ? "tunnel" : "transport"));
	json_object_object_add(
	    j, "algorithm",
	    json_object_new_string(
		keys_algorithm_by_id(assoc_gen_algorithm(&a->def, a->out_gen))->name));
	json_object_object_add(j, "local_selector",
			       json_net(a->def.family, &a->def.local_net, a->def.local_plen));
	json_object_object_add(j, "remote_selector",
			       json_net(a->def.family, &a->def.remote_net, a->def.remote_plen));
	json_object_object_add(j, "protocol",
			       a->def.proto ? json_object_new_string(proto_names[a->def.proto]
									 ? proto_names[a->def.proto]
									 : "other")
					    : NULL);
	json_object_object_add(j, "local_port",
			       a->def.local_port ? json_object_new_int(a->def.local_port) : NULL);
	json_object_object_add(j, "remote_port",
			       a->def.remote_port ? json_object_new_int(a->def.remote_port) : NULL);
	json_object_object_add(j, "dev", a->def.dev[0] ? json_object_new_string(a->def.dev) : NULL);
	json_object_object_add(j, "source",
			       json_object_new_string(a->def.where[0] ? "config" : "runtime"));
	json_object_object_add(j, "file",
			       a->def.where[0] ? json_object_new_string(a->def.where) : NULL);
	json_object_object_add(j, "secret_file", json_object_new_string(a->def.secret_path));
	json_object_object_add(j, "state", json_object_new_string(a->state));
	json_object_object_add(j, "reason",
			       a->reason[0] ? json_object_new_string(a->reason) : NULL);
	json_object_object_add(j, "lookahead", json_object_new_int((int)a->def.lookahead));
	json_object_object_add(j, "reqid",
			       json_object_new_int64(m->set.reqid_base + a->def.number));
	json_object_object_add(j, "moves", json_object_new_int64((int64_t)a->moves));
	json_object_object_add(
	    j, "outbound", json_sa(a, obs_find((struct assoc *)a, out_spi), out_spi, a->out_gen));
	for (uint64_t g = window_lo(m, a), hi = window_hi(m, a); g <= hi; g++) {
		uint32_t spi = assoc_dir_spi(a, false, g);
		json_object_array_add(in, json_sa(a, obs_find((struct assoc *)a, spi), spi, g));
	}
	json_object_object_add(j, "inbound", in);
	json_object_object_add(j, "receiving_generation",
			       json_object_new_int64((int64_t)a->in_gen));
	json_object_object_add(j, "rotation", rotation_json(m, a));
	pol = json_object_new_object();
	for (int d = 0; d < DIR_MAX; d++)
		if (d != DIR_FWD || a->def.mode == XFRM_MODE_TUNNEL)
			json_object_object_add(pol, dir_names[d],
					       json_object_new_boolean(a->pol_seen[d]));
	json_object_object_add(j, "policies", pol);
	return j;
}

int assocs_list_json(const struct assocs *m, const char *name, json_object **ret)
{
	json_object *arr = json_object_new_array();

	for (size_t i = 0; i < m->n; i++)
		if (!name || strcmp(name, m->v[i]->def.name) == 0)
			json_object_array_add(arr, assoc_json(m, m->v[i]));
	if (name && json_object_array_length(arr) == 0) {
		json_object_put(arr);
		return -ENOENT;
	}
	*ret = arr;
	return 0;
}

unsigned assocs_count(const struct assocs *m)
{
	return (unsigned)m->n;
}

void assocs_counts(const struct assocs *m, struct assocs_counts *c)
{
	*c = (struct assocs_counts){.total = (unsigned)m->n};
	for (size_t i = 0; i < m->n; i++) {
		const char *st = m->v[i]->state;

		if (strcmp(st, "up") == 0)
			c->up++;
		else if (strcmp(st, "error") == 0)
			c->error++;
		else if (strcmp(st, "conflict") == 0)
			c->conflict++;
		else if (strcmp(st, "released") == 0)
			c->released++;
		else
			c->pending++;
	}
}
