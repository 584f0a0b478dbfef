/* SPDX-License-Identifier: MIT */
/* The association manager's reconcile logic, without a kernel: SAs and
 * policies are fed in as the kernel would report them, and the planned
 * requests are checked. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assoc.h"
#include "log.h"

#define SEC	   1000000ULL
#define REQID_BASE 0x746b0000u

static struct assocs *m;
static char secret_path[64];

/* A fresh manager, as a (re)started daemon has. */
static void new_manager(void)
{
	ck_assert_int_eq(assocs_new(&(struct assocs_settings){.reqid_base = REQID_BASE,
							      .policy_priority = 100,
							      .counter_interval_usec = SEC,
							      .dwell_usec = 3 * SEC},
				    &m),
			 0);
}

static void setup(void)
{
	static const char hex[] =
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
	int fd;

	log_set_level(getenv("TEST_LOG") ? LOG_DEBUG : LOG_ERR);
	snprintf(secret_path, sizeof(secret_path), "/tmp/test_assoc.XXXXXX");
	fd = mkstemp(secret_path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, hex, sizeof(hex) - 1), (ssize_t)sizeof(hex) - 1);
	fchmod(fd, 0600);
	close(fd);
	new_manager();
}

static void teardown(void)
{
	assocs_free(m);
	unlink(secret_path);
}

static struct assoc_def def(const char *name, uint32_t number)
{
	struct assoc_def d;

	assoc_def_init(&d);
	snprintf(d.name, sizeof(d.name), "%s", name);
	d.number = number;
	d.family = AF_INET;
	inet_pton(AF_INET, "192.0.2.1", &d.local.v4);
	inet_pton(AF_INET, "192.0.2.2", &d.remote.v4);
	d.local_net = d.local;
	d.remote_net = d.remote;
	d.local_plen = d.remote_plen = 32;
	snprintf(d.secret_path, sizeof(d.secret_path), "%s", secret_path);
	return d;
}

static int plan(uint64_t now, bool all, struct assoc_action **v)
{
	int n = assocs_plan(m, now, all, v);
	ck_assert_int_ge(n, 0);
	return n;
}

static int count_op(struct assoc_action *v, int n, enum assoc_op op)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += v[i].op == op;
	return c;
}

/* Answer every action with success and feed back what the kernel would
 * then report, the way dumps and notifications do. */
static void kernel_accepts(struct assoc_action *v, int n)
{
	for (int i = 0; i < n; i++) {
		struct nl_ack ack = {0};

		if (v[i].op == ASSOC_OP_ADD_SA || v[i].op == ASSOC_OP_UPDATE_SA) {
			struct xfrm_sa sa = v[i].sa;
			unsigned len = 32;
			uint8_t keys[KEYS_MATERIAL_MAX];

			memcpy(keys, v[i].sa.enc_key, v[i].sa.enc_key_len);
			if (v[i].sa.auth_key_len)
				memcpy(keys + v[i].sa.enc_key_len, v[i].sa.auth_key,
				       v[i].sa.auth_key_len);
			EVP_Digest(keys, v[i].sa.enc_key_len + v[i].sa.auth_key_len, sa.key_digest,
				   &len, EVP_sha256(), NULL);
			assocs_action_done(m, &v[i], &ack, 0);
			/* An update's notification is the kernel's XFRM_MSG_UPDSA. */
			if (v[i].op == ASSOC_OP_UPDATE_SA)
				assocs_sa_updated(m, &sa, 0);
			else
				assocs_sa_seen(m, &sa, 0);
		} else if (v[i].op == ASSOC_OP_ADD_POLICY || v[i].op == ASSOC_OP_UPDATE_POLICY) {
			assocs_action_done(m, &v[i], &ack, 0);
			assocs_policy_seen(m, &v[i].policy);
		} else if (v[i].op == ASSOC_OP_DEL_SA) {
			assocs_action_done(m, &v[i], &ack, 0);
			assocs_sa_gone(m, &v[i].sa, 0);
		} else {
			assocs_action_done(m, &v[i], &ack, 0);
			assocs_policy_gone(m, &v[i].policy);
		}
	}
}

/* Plan, save generations when asked, apply, until nothing is left. */
static void converge(uint64_t now)
{
	for (int round = 0; round < 5; round++) {
		struct assoc_action *v = NULL;
		int n = plan(now, true, &v);
		bool saved = assocs_need_save(m);

		if (saved)
			assocs_generations_saved(m);
		kernel_accepts(v, n);
		assoc_actions_free(v, (size_t)n);
		if (n == 0 && !saved)
			return;
	}
}

static void synced_empty_kernel(void)
{
	assocs_resync_begin(m);
	assocs_resync_end(m);
}

static const char *state_of(const char *name, json_object **keep)
{
	json_object *arr, *st;

	ck_assert_int_eq(assocs_list_json(m, name, &arr), 0);
	ck_assert(json_object_object_get_ex(json_object_array_get_idx(arr, 0), "state", &st));
	*keep = arr;
	return json_object_get_string(st);
}

START_TEST(test_spi_layout)
{
	union xfrm_addr_any lo = {0}, hi = {0};

	inet_pton(AF_INET, "192.0.2.1", &lo.v4);
	inet_pton(AF_INET, "192.0.2.2", &hi.v4);
	ck_assert_uint_eq(assoc_spi(5, AF_INET, &lo, &hi, 0), 0x01000500u);
	ck_assert_uint_eq(assoc_spi(5, AF_INET, &hi, &lo, 0), 0x01000580u);
	ck_assert_uint_eq(assoc_spi(5, AF_INET, &lo, &hi, 129), 0x01000501u);
	ck_assert_uint_eq(assoc_spi(65535, AF_INET, &lo, &hi, 127), 0x01ffff7fu);
}
END_TEST

START_TEST(test_policies_first_then_inbound_then_outbound_after_save)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;
	int n;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	n = plan(0, true, &v);
	/* in + out policies, W+1 = 3 inbound SAs; the outbound SA waits until
	 * its generation is on disk. */
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_ADD_POLICY), 2);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_ADD_SA), 3);
	ck_assert_int_eq(v[0].op, ASSOC_OP_ADD_POLICY);
	for (int i = 2; i < n; i++)
		ck_assert(!v[i].outbound);
	ck_assert(assocs_need_save(m));
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	assocs_generations_saved(m);
	n = plan(0, false, &v);
	ck_assert_int_eq(n, 1);
	ck_assert(v[0].outbound);
	ck_assert_uint_eq(v[0].sa.spi, 0x01000700u);
	ck_assert_uint_eq(v[0].sa.reqid, REQID_BASE + 7);
	ck_assert_uint_eq(v[0].sa.lft.hard_packet_limit, 0xffff0000ULL);
	ck_assert(v[0].sa.lft.soft_packet_limit < v[0].sa.lft.hard_packet_limit);
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	{
		json_object *keep;
		ck_assert_str_eq(state_of("web", &keep), "up");
		json_object_put(keep);
	}
}
END_TEST

START_TEST(test_right_kernel_needs_nothing)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	converge(0);
	ck_assert_int_eq(plan(0, true, &v), 0);
	free(v);
}
END_TEST

START_TEST(test_lost_outbound_moves_to_next_generation_never_reuses)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL, out;
	struct assoc_gen_record *g;
	size_t n_g;
	int n;

	d.lookahead = 4;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	converge(0);
	/* Someone deletes the outbound SA of generation 0. */
	memset(&out, 0, sizeof(out));
	out.sa.family = AF_INET;
	inet_pton(AF_INET, "192.0.2.2", &out.sa.dst.v4);
	out.sa.spi = 0x01000700u;
	out.sa.reqid = REQID_BASE + 7;
	out.sa.proto = IPPROTO_ESP;
	assocs_sa_gone(m, &out.sa, 10 * SEC);
	n = plan(10 * SEC, false, &v);
	/* Not re-added under the old key: generation 1 must reach the disk. */
	for (int i = 0; i < n; i++)
		ck_assert(!(v[i].op == ASSOC_OP_ADD_SA && v[i].sa.spi == 0x01000700u));
	ck_assert(assocs_need_save(m));
	ck_assert_int_eq(assocs_get_generations(m, &g, &n_g), 0);
	ck_assert_uint_eq(g[0].out_gen, 1);
	free(g);
	assoc_actions_free(v, (size_t)n);
	assocs_generations_saved(m);
	n = plan(10 * SEC, false, &v);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(v[0].sa.spi, 0x01000701u);
	assoc_actions_free(v, (size_t)n);
}
END_TEST

START_TEST(test_sender_never_passes_lookahead_minus_one)
{
	struct assoc_def d = def("web", 7);
	const char *why = NULL;

	d.lookahead = 3;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	converge(0);
	ck_assert_int_eq(assocs_rotate(m, "web", 10 * SEC, &why), 0);
	/* Not installed yet: nothing to rotate. */
	ck_assert_int_eq(assocs_rotate(m, "web", 11 * SEC, &why), -EAGAIN);
	converge(10 * SEC);
	/* Within the dwell time: refused. */
	ck_assert_int_eq(assocs_rotate(m, "web", 11 * SEC, &why), -EBUSY);
	ck_assert_int_eq(assocs_rotate(m, "web", 20 * SEC, &why), 0);
	converge(20 * SEC);
	/* Generation 3 would be beyond what a peer that lost its state
	 * accepts (floor 0 + W-1). */
	ck_assert_int_eq(assocs_rotate(m, "web", 30 * SEC, &why), -ERANGE);
	ck_assert_int_eq(assocs_rotate(m, "nope", 20 * SEC, &why), -ENOENT);
}
END_TEST

/* The outbound SA of generation `gen` as the kernel would report it. */
/* An SA of association web/7 as the kernel would report it. */
static struct xfrm_sa kernel_sa(bool outbound, uint64_t gen)
{
	static const uint8_t secret[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
					   11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
					   22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
	struct xfrm_sa sa = {.family = AF_INET, .proto = IPPROTO_ESP, .reqid = REQID_BASE + 7};
	struct keys_secret *s;
	uint8_t key[KEYS_MATERIAL_MAX];
	unsigned dlen = 32;
	size_t len = 0;

	inet_pton(AF_INET, outbound ? "192.0.2.1" : "192.0.2.2", &sa.src.v4);
	inet_pton(AF_INET, outbound ? "192.0.2.2" : "192.0.2.1", &sa.dst.v4);
	sa.spi = assoc_spi(7, AF_INET, &sa.src, &sa.dst, gen);
	ck_assert_int_eq(keys_secret_from_bytes(secret, sizeof(secret), &s), 0);
	ck_assert_int_eq(keys_derive(s,
				     &(struct keys_context){.name = "web",
							    .number = 7,
							    .family = AF_INET,
							    .src = &sa.src,
							    .dst = &sa.dst,
							    .generation = gen,
							    .algorithm = KEYS_ALG_AES_GCM_128},
				     key, &len),
			 0);
	EVP_Digest(key, len, sa.key_digest, &dlen, EVP_sha256(), NULL);
	keys_secret_free(s);
	return sa;
}

static struct xfrm_sa kernel_outbound(uint64_t gen)
{
	return kernel_sa(true, gen);
}

START_TEST(test_restart_adopts_kernel_outbound)
{
	struct assoc_def d = def("web", 7);
	struct assoc_gen_record rec = {.name = "web", .out_gen = 3, .in_gen = 0};
	struct xfrm_sa sa = kernel_outbound(3);
	struct assoc_gen_record *g;
	struct assoc_action *v = NULL;
	size_t n_g;
	int n;

	d.lookahead = 8;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_set_generations(m, &rec, 1);
	assocs_resync_begin(m);
	assocs_sa_seen(m, &sa, 0);
	assocs_resync_end(m);
	n = plan(0, true, &v);
	/* Adopted: no outbound add, still generation 3, nothing to save. */
	for (int i = 0; i < n; i++)
		ck_assert(!(v[i].op == ASSOC_OP_ADD_SA && v[i].outbound));
	ck_assert(!assocs_need_save(m));
	ck_assert_int_eq(assocs_get_generations(m, &g, &n_g), 0);
	ck_assert_uint_eq(g[0].out_gen, 3);
	free(g);
	assoc_actions_free(v, (size_t)n);
}
END_TEST

START_TEST(test_restart_without_kernel_sa_moves_past_saved)
{
	struct assoc_def d = def("web", 7);
	struct assoc_gen_record rec = {.name = "web", .out_gen = 3, .in_gen = 0};
	struct assoc_gen_record *g;
	struct assoc_action *v = NULL;
	size_t n_g;
	int n;

	d.lookahead = 8;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_set_generations(m, &rec, 1);
	synced_empty_kernel();
	n = plan(0, true, &v);
	ck_assert(assocs_need_save(m));
	ck_assert_int_eq(assocs_get_generations(m, &g, &n_g), 0);
	ck_assert_uint_eq(g[0].out_gen, 4);
	free(g);
	for (int i = 0; i < n; i++)
		ck_assert(!(v[i].op == ASSOC_OP_ADD_SA && v[i].outbound));
	assoc_actions_free(v, (size_t)n);
}
END_TEST

START_TEST(test_orphans_removed_foreign_untouched_released_kept)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;
	struct xfrm_sa orphan = {
	    .family = AF_INET, .proto = IPPROTO_ESP, .spi = 0x01006300u, .reqid = REQID_BASE + 99};
	struct xfrm_sa foreign = {
	    .family = AF_INET, .proto = IPPROTO_ESP, .spi = 0x5000, .reqid = 42};
	int n;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_resync_begin(m);
	assocs_sa_seen(m, &orphan, 0);
	assocs_sa_seen(m, &foreign, 0);
	assocs_resync_end(m);
	n = plan(0, true, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 1);
	for (int i = 0; i < n; i++)
		if (v[i].op == ASSOC_OP_DEL_SA)
			ck_assert_uint_eq(v[i].sa.spi, 0x01006300u);
	assoc_actions_free(v, (size_t)n);

	/* Degraded: nothing is removed. */
	assocs_set_degraded(m, true);
	n = plan(0, true, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 0);
	assoc_actions_free(v, (size_t)n);
}
END_TEST

/* The orphan shows up (again) at t: tokend plans its removal, the kernel
 * does it. */
static void orphan_back_and_removed(const struct xfrm_sa *orphan, uint64_t t)
{
	struct assoc_action *v = NULL;
	int n;

	assocs_sa_seen(m, orphan, t);
	n = plan(t, false, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 1);
	for (int i = 0; i < n; i++) {
		struct nl_ack ack = {0};

		assocs_action_done(m, &v[i], &ack, t);
		if (v[i].op == ASSOC_OP_DEL_SA)
			assocs_sa_gone(m, &v[i].sa, t);
	}
	assoc_actions_free(v, (size_t)n);
}

/* "web" installed in an empty kernel at t = 1 s; the orphan the orphan
 * tests play with: an SA in tokend's reqid range of no association. */
static struct xfrm_sa orphan_test_start(void)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;
	int n;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	n = plan(1000000, true, &v);
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	return (struct xfrm_sa){
	    .family = AF_INET, .proto = IPPROTO_ESP, .spi = 0x01006300u, .reqid = REQID_BASE + 99};
}

/* An orphan that comes back after every removal is someone else's (a second
 * tokend with the same reqid-base): after three removals within the window
 * tokend leaves it alone, and tries once more when the quiet time is over. */
START_TEST(test_orphan_that_keeps_coming_back_is_left_alone)
{
	struct assoc_action *v = NULL;
	struct xfrm_sa orphan = orphan_test_start();
	uint64_t t = 1000000;
	int n;

	for (int round = 0; round < 3; round++, t += 2000000)
		orphan_back_and_removed(&orphan, t); /* someone puts it back */
	assocs_sa_seen(m, &orphan, t);
	n = plan(t, false, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 0);
	assoc_actions_free(v, (size_t)n);
	n = plan(t + 300000000ULL, true, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 0);
	assoc_actions_free(v, (size_t)n);
	n = plan(t + 601000000ULL, true, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 1);
	assoc_actions_free(v, (size_t)n);
}
END_TEST

/* Removals far apart are ordinary clean-up, never a contest. */
START_TEST(test_orphan_removed_now_and_then_is_always_removed)
{
	struct xfrm_sa orphan = orphan_test_start();
	uint64_t t = 1000000;

	for (int round = 0; round < 6; round++, t += 31000000)
		orphan_back_and_removed(&orphan, t);
}
END_TEST

/* A runtime association deleted and added again, over and over (a client
 * that cycles one): each delete removes its policies and SAs, every time.
 * Tokend's own objects coming back with the association are no orphan that
 * another manager keeps installing. */
START_TEST(test_association_readded_is_no_returning_orphan)
{
	struct assoc_def d = def("web", 7);

	synced_empty_kernel();
	for (int k = 0; k < 6; k++) {
		struct assoc_action *v;
		int n;

		ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
		converge(SEC);
		ck_assert_int_eq(assocs_set_defs(m, NULL, 0), 0);
		n = plan(SEC, false, &v);
		ck_assert_msg(count_op(v, n, ASSOC_OP_DEL_POLICY) == 2,
			      "delete %d removes %d policies, not 2", k + 1,
			      count_op(v, n, ASSOC_OP_DEL_POLICY));
		kernel_accepts(v, n);
		assoc_actions_free(v, (size_t)n);
		n = plan(SEC, false, &v);
		ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_POLICY), 0);
		assoc_actions_free(v, (size_t)n);
	}
}
END_TEST

START_TEST(test_foreign_sa_on_computed_spi_is_a_conflict)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;
	struct xfrm_sa foreign = {
	    .family = AF_INET, .proto = IPPROTO_ESP, .spi = 0x01000780u, .reqid = 42};
	json_object *keep;
	int n;

	inet_pton(AF_INET, "192.0.2.1", &foreign.dst.v4);
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_resync_begin(m);
	assocs_resync_end(m);
	assocs_sa_seen(m, &foreign, 0);
	n = plan(0, false, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_DEL_SA), 0);
	assoc_actions_free(v, (size_t)n);
	(void)state_of("web", &keep);
	json_object_put(keep);
}
END_TEST

/* Many associations make the plan array grow (and move) while it is built:
 * every SA must still carry its own derived key. */
START_TEST(test_keys_survive_a_growing_plan)
{
	struct assoc_def defs[20];
	struct assoc_action *v = NULL;
	int n, sas = 0;

	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "a%d", i);
		defs[i] = def(name, (uint32_t)i + 1);
		defs[i].remote.v4.s_addr = htonl(0xc6336400u + (uint32_t)i + 2);
		defs[i].remote_net = defs[i].remote;
	}
	ck_assert_int_eq(assocs_set_defs(m, defs, 20), 0);
	synced_empty_kernel();
	n = plan(0, true, &v);
	ck_assert_int_gt(n, 32);
	for (int i = 0; i < n; i++) {
		struct keys_secret *s;
		uint8_t want[KEYS_MATERIAL_MAX];
		size_t len = 0;
		static const uint8_t secret[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
						   11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
						   22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
		uint32_t number;

		if (v[i].op != ASSOC_OP_ADD_SA)
			continue;
		number = v[i].sa.reqid - REQID_BASE;
		ck_assert_ptr_eq(v[i].sa.enc_key, v[i].key_buf);
		ck_assert_int_eq(keys_secret_from_bytes(secret, sizeof(secret), &s), 0);
		ck_assert_int_eq(
		    keys_derive(s,
				&(struct keys_context){.name = defs[number - 1].name,
						       .number = number,
						       .family = AF_INET,
						       .src = &v[i].sa.src,
						       .dst = &v[i].sa.dst,
						       .generation = v[i].generation,
						       .algorithm = KEYS_ALG_AES_GCM_128},
				want, &len),
		    0);
		keys_secret_free(s);
		ck_assert(memcmp(v[i].sa.enc_key, want, len) == 0);
		sas++;
	}
	ck_assert_int_eq(sas, 20 * 3);
	assoc_actions_free(v, (size_t)n);
}
END_TEST

START_TEST(test_def_checks)
{
	struct assoc_def d = def("web", 7);
	const char *why;

	ck_assert_int_eq(assoc_def_check(&d, &why), 0);
	d.number = 0;
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d = def("web", 70000);
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d = def("web", 7);
	d.remote = d.local;
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "same address"));
	d = def("web", 7);
	d.replay_window = 0;
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d = def("bad name", 7);
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d = def("web", 7);
	d.lifetime_packets = 0;
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
}
END_TEST

START_TEST(test_def_json_round_trip)
{
	struct assoc_def d = def("web", 7), back;
	const char *field, *why;
	json_object *o;

	d.mode = XFRM_MODE_TUNNEL;
	d.proto = IPPROTO_TCP;
	d.remote_port = 443;
	d.algorithm = KEYS_ALG_AES_CBC_HMAC_SHA256;
	o = assoc_def_to_json(&d);
	ck_assert_int_eq(assoc_def_from_json(o, &back, &field, &why), 0);
	ck_assert_str_eq(back.name, "web");
	ck_assert_uint_eq(back.number, 7);
	ck_assert_uint_eq(back.mode, XFRM_MODE_TUNNEL);
	ck_assert_uint_eq(back.proto, IPPROTO_TCP);
	ck_assert_uint_eq(back.remote_port, 443);
	ck_assert_int_eq(back.algorithm, KEYS_ALG_AES_CBC_HMAC_SHA256);
	ck_assert(memcmp(&back.remote, &d.remote, 4) == 0);
	json_object_object_add(o, "bogus", json_object_new_int(1));
	ck_assert_int_eq(assoc_def_from_json(o, &back, &field, &why), -EINVAL);
	ck_assert_str_eq(field, "bogus");
	json_object_put(o);
}
END_TEST

/* --- rotation by the clock ---------------------------------------------- */

#define L_SEC 10

static struct assoc_def clock_def(void)
{
	struct assoc_def d = def("web", 7);

	d.lifetime_sec = L_SEC;
	d.epoch = 1000;
	d.overlap_ms = 2000;
	d.lookahead = 3;
	return d;
}

/* The outbound generation and whether its SA is in the plan's results. */
/* The sending generation of one association, or of the only one. */
static uint64_t out_gen_named(const char *name)
{
	struct assoc_gen_record *g;
	size_t n, i;
	uint64_t v;

	ck_assert_int_eq(assocs_get_generations(m, &g, &n), 0);
	ck_assert_uint_ge(n, 1);
	ck_assert(name || n == 1);
	for (i = 0; name && i < n && strcmp(g[i].name, name) != 0; i++)
		;
	ck_assert_uint_lt(i, n);
	v = g[i].out_gen;
	free(g);
	return v;
}

static uint64_t out_gen_of(void)
{
	return out_gen_named(NULL);
}

static json_object *show_named(json_object **keep, const char *name, const char *path1,
			       const char *path2)
{
	json_object *arr, *o, *v = NULL;

	ck_assert_int_eq(assocs_list_json(m, name, &arr), 0);
	*keep = arr;
	o = json_object_array_get_idx(arr, 0);
	ck_assert(json_object_object_get_ex(o, path1, &v));
	if (path2)
		ck_assert(json_object_object_get_ex(v, path2, &v));
	return v;
}

static json_object *show(json_object **keep, const char *path1, const char *path2)
{
	return show_named(keep, "web", path1, path2);
}

START_TEST(test_clock_generations)
{
	struct assoc_def d = clock_def();
	uint64_t phase = assoc_phase_ms(&d);
	int64_t t0 = 1000 * 1000 + (int64_t)phase;

	ck_assert_uint_lt(phase, L_SEC * 1000);
	ck_assert_uint_eq(assoc_clock_gen(&d, 0), 0);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 - 1), 0);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0), 0);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 9999), 0);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 10000), 1);
	for (uint64_t g = 1; g < 200000; g = g * 3 + 1) {
		int64_t s = assoc_gen_start_ms(&d, g);
		ck_assert_int_eq(s, t0 + (int64_t)g * 10000);
		ck_assert_uint_eq(assoc_clock_gen(&d, s), g);
		ck_assert_uint_eq(assoc_clock_gen(&d, s - 1), g - 1);
	}
	ck_assert_uint_eq(assoc_overlap_ms(&d), 2000);
	d.overlap_ms = 0;
	ck_assert_uint_eq(assoc_overlap_ms(&d), 2500); /* L/4 */
	/* No lifetime: no clock. */
	d.lifetime_sec = 0;
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 1000000), 0);
	ck_assert_int_eq(assoc_gen_start_ms(&d, 5), INT64_MIN);
	/* Far generations saturate instead of wrapping. */
	d = clock_def();
	ck_assert_int_eq(assoc_gen_start_ms(&d, ASSOC_GEN_MAX * 1000), INT64_MAX);
}
END_TEST

/* The phase, computed independently:
 * sha256(b"tokend rotation phase v1" + number.to_bytes(2, "big") +
 *        name)[:8] as a big-endian integer, modulo L in milliseconds. */
START_TEST(test_phase_vectors)
{
	struct assoc_def d = def("web", 7);

	d.lifetime_sec = 3600;
	ck_assert_uint_eq(assoc_phase_ms(&d), 3489929);
	d = def("life", 42);
	d.lifetime_sec = 4;
	ck_assert_uint_eq(assoc_phase_ms(&d), 2425);
	d = def("a", 1);
	d.lifetime_sec = 2;
	ck_assert_uint_eq(assoc_phase_ms(&d), 1526);
}
END_TEST

/* A thousand associations do not rotate in the same millisecond. */
START_TEST(test_phases_spread)
{
	static int hits[60000];
	int max = 0;

	memset(hits, 0, sizeof(hits));
	for (int i = 1; i <= 1000; i++) {
		struct assoc_def d;
		char name[32];
		snprintf(name, sizeof(name), "sa%d", i);
		d = def(name, (uint32_t)i);
		d.lifetime_sec = 60;
		hits[assoc_phase_ms(&d)]++;
	}
	for (int i = 0; i < 60000; i++)
		max = hits[i] > max ? hits[i] : max;
	ck_assert_int_le(max, 2);
}
END_TEST

START_TEST(test_schedule)
{
	struct assoc_def d = clock_def();
	struct assoc_sched sc;
	const char *why = NULL;
	int64_t t0 = assoc_gen_start_ms(&d, 0);

	ck_assert_int_eq(assoc_sched_parse("from 5 lifetime 20", &sc, &why), 0);
	d.sched[d.n_sched++] = sc;
	ck_assert_int_eq(
	    assoc_sched_parse("from 8 secret /etc/k2 algorithm aes-gcm-256", &sc, &why), 0);
	d.sched[d.n_sched++] = sc;
	ck_assert_int_eq(assoc_def_check(&d, &why), 0);
	ck_assert_int_eq(assoc_gen_start_ms(&d, 5), t0 + 50000);
	ck_assert_int_eq(assoc_gen_start_ms(&d, 6), t0 + 70000);
	ck_assert_int_eq(assoc_gen_start_ms(&d, 8), t0 + 110000);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 69999), 5);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 70000), 6);
	ck_assert_uint_eq(assoc_clock_gen(&d, t0 + 110000), 8);
	ck_assert_str_eq(assoc_gen_secret(&d, 7), secret_path);
	ck_assert_str_eq(assoc_gen_secret(&d, 8), "/etc/k2");
	ck_assert_int_eq(assoc_gen_algorithm(&d, 7), KEYS_ALG_AES_GCM_128);
	ck_assert_int_eq(assoc_gen_algorithm(&d, 9), KEYS_ALG_AES_GCM_256);
	/* The base secret is retired once generation 8 is the oldest live. */
	ck_assert(!assoc_secret_retired(&d, 0, 7));
	ck_assert(assoc_secret_retired(&d, 0, 8));
	ck_assert(!assoc_secret_retired(&d, 2, 100));

	/* Bad lines, each with a reason. */
	static const char *const bad[] = {
	    "",
	    "5 secret /k",
	    "from",
	    "from 0 secret /k",
	    "from x",
	    "from -1 secret /k",
	    "from 5",
	    "from 5 secret",
	    "from 5 secret k",
	    "from 5 algorithm des",
	    "from 5 lifetime 1",
	    "from 5 lifetime 1min",
	    "from 5 colour blue",
	    "from 5 secret /a secret /b",
	    "from 281474976710656 secret /k",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		ck_assert_msg(assoc_sched_parse(bad[i], &sc, &why) == -EINVAL, "%s", bad[i]);
		ck_assert_ptr_nonnull(why);
	}
	/* Out of order, or a lifetime no longer than the overlap. */
	d = clock_def();
	assoc_sched_parse("from 9 secret /k", &d.sched[0], &why);
	assoc_sched_parse("from 8 secret /k", &d.sched[1], &why);
	d.n_sched = 2;
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d.n_sched = 1;
	assoc_sched_parse("from 9 lifetime 2", &d.sched[0], &why);
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
	d.lifetime_sec = 0; /* a scheduled lifetime needs a clock */
	assoc_sched_parse("from 9 lifetime 20", &d.sched[0], &why);
	ck_assert_int_eq(assoc_def_check(&d, &why), -EINVAL);
}
END_TEST

START_TEST(test_clock_moves_sender_and_window)
{
	struct assoc_def d = clock_def();
	struct assoc_action *v = NULL;
	json_object *keep;
	int64_t s100 = assoc_gen_start_ms(&d, 100), s101 = assoc_gen_start_ms(&d, 101);
	int n, found = 0;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	/* Past the overlap after 100 began: 99 is no longer received. */
	assocs_set_wallclock(m, s100 + 2500);
	synced_empty_kernel();
	n = plan(SEC, true, &v);
	/* Inbound 100..103 (window [clock, clock + W]), limits from the
	 * boundaries: hard an overlap after the generation ends. */
	for (int i = 0; i < n; i++) {
		if (v[i].op != ASSOC_OP_ADD_SA || v[i].outbound)
			continue;
		found++;
		ck_assert_uint_ge(v[i].generation, 100);
		ck_assert_uint_le(v[i].generation, 103);
		ck_assert_uint_eq(v[i].sa.lft.soft_add_expires_seconds, 0);
		ck_assert_uint_eq(
		    v[i].sa.cur.add_time + v[i].sa.lft.hard_add_expires_seconds,
		    (uint64_t)(assoc_gen_start_ms(&d, v[i].generation + 1) + 2000 + 999) / 1000);
	}
	ck_assert_int_eq(found, 4);
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	assocs_generations_saved(m);
	converge(SEC);
	ck_assert_uint_eq(out_gen_of(), 100);
	ck_assert_int_eq(assocs_next_deadline(m), s101);
	ck_assert_str_eq(json_object_get_string(show(&keep, "state", NULL)), "up");
	json_object_put(keep);

	/* The boundary: one move, the new outbound SA after the save, the old
	 * one removed after the new one is in; inbound 100 stays. */
	assocs_set_wallclock(m, s101 + 3);
	assocs_tick(m);
	n = plan(2 * SEC, false, &v);
	ck_assert_int_eq(count_op(v, n, ASSOC_OP_ADD_SA), 1); /* inbound 104 */
	ck_assert(assocs_need_save(m));
	ck_assert_uint_eq(out_gen_of(), 101);
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	assocs_generations_saved(m);
	n = plan(2 * SEC, false, &v);
	ck_assert_int_eq(n, 1);
	ck_assert(v[0].op == ASSOC_OP_ADD_SA && v[0].outbound && v[0].generation == 101);
	ck_assert_uint_eq(v[0].sa.cur.add_time + v[0].sa.lft.soft_add_expires_seconds,
			  (uint64_t)(assoc_gen_start_ms(&d, 102) + 999) / 1000);
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	n = plan(2 * SEC, true, &v);
	ck_assert_int_eq(n, 1);
	ck_assert(v[0].op == ASSOC_OP_DEL_SA &&
		  v[0].sa.spi == assoc_spi(7, AF_INET, &d.local, &d.remote, 100));
	kernel_accepts(v, n);
	assoc_actions_free(v, (size_t)n);
	converge(2 * SEC);
	ck_assert_int_eq(json_object_get_int64(show(&keep, "rotation", "rotations")), 1);
	json_object_put(keep);
	ck_assert_str_eq(json_object_get_string(
			     json_object_object_get(show(&keep, "rotation", "last"), "outcome")),
			 "done");
	json_object_put(keep);
	/* The overlap ends: inbound 100 goes. */
	ck_assert_int_eq(assocs_next_deadline(m), s101 + 2000);
	assocs_set_wallclock(m, s101 + 2000);
	n = plan(3 * SEC, true, &v);
	ck_assert_int_eq(n, 1);
	ck_assert(v[0].op == ASSOC_OP_DEL_SA &&
		  v[0].sa.spi == assoc_spi(7, AF_INET, &d.remote, &d.local, 100));
	assoc_actions_free(v, (size_t)n);
}
END_TEST

/* Run the association to a steady state at wall time t. */
static void steady_at(const struct assoc_def *d, int64_t t)
{
	ck_assert_int_eq(assocs_set_defs(m, d, 1), 0);
	assocs_set_wallclock(m, t);
	synced_empty_kernel();
	converge(SEC);
}

START_TEST(test_clock_step_forward_goes_straight)
{
	struct assoc_def d = clock_def();
	json_object *keep;

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	ck_assert_uint_eq(out_gen_of(), 100);
	/* Seven periods at once: one move, no intermediate generation. */
	assocs_set_wallclock(m, assoc_gen_start_ms(&d, 107) + 2500);
	assocs_clock_stepped(m);
	converge(2 * SEC);
	ck_assert_uint_eq(out_gen_of(), 107);
	ck_assert_int_eq(json_object_get_int64(show(&keep, "rotation", "rotations")), 1);
	json_object_put(keep);
	ck_assert_str_eq(json_object_get_string(
			     json_object_object_get(show(&keep, "rotation", "last"), "reason")),
			 "clock, several periods");
	json_object_put(keep);
	/* The window went with it. */
	ck_assert_int_eq(json_object_get_int64(show(&keep, "receiving_generation", NULL)), 107);
	json_object_put(keep);
}
END_TEST

START_TEST(test_clock_step_backward_never_reuses)
{
	struct assoc_def d = clock_def();
	struct assoc_action *v = NULL;
	int n;

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	assocs_set_wallclock(m, assoc_gen_start_ms(&d, 97) + 10);
	assocs_clock_stepped(m);
	n = plan(2 * SEC, true, &v);
	/* Nothing to do: generation 100 keeps sending, nothing older is
	 * installed, and the inbound window does not go back either. */
	for (int i = 0; i < n; i++)
		ck_assert(!(v[i].op == ASSOC_OP_ADD_SA && v[i].generation < 100));
	ck_assert(!assocs_need_save(m));
	assoc_actions_free(v, (size_t)n);
	ck_assert_uint_eq(out_gen_of(), 100);
	/* The next step the clock drives: 96 leaving the window, an overlap
	 * after 97 began (which changes nothing installed). */
	ck_assert_int_eq(assocs_next_deadline(m), assoc_gen_start_ms(&d, 97) + 2000);
}
END_TEST

START_TEST(test_soft_limit_moves_early_within_ceiling)
{
	struct assoc_def d = clock_def();
	struct xfrm_sa out = {0};
	int64_t t = assoc_gen_start_ms(&d, 100) + 10;

	d.lifetime_bytes = 100000;
	steady_at(&d, t);
	out.family = AF_INET;
	out.dst = d.remote;
	out.reqid = REQID_BASE + 7;
	out.proto = IPPROTO_ESP;
	out.spi = assoc_spi(7, AF_INET, &d.local, &d.remote, 100);
	out.cur.bytes = 95000;
	out.lft.soft_byte_limit = 90000;
	/* Soft byte limit before the boundary: one generation early. */
	assocs_sa_expired(m, &out, false, 10 * SEC);
	converge(10 * SEC);
	ck_assert_uint_eq(out_gen_of(), 101);
	/* Again, within dwell: not yet... */
	out.spi = assoc_spi(7, AF_INET, &d.local, &d.remote, 101);
	assocs_sa_expired(m, &out, false, 11 * SEC);
	converge(11 * SEC);
	ck_assert_uint_eq(out_gen_of(), 101);
	/* ...but once the dwell has passed, without a new event. */
	converge(14 * SEC);
	ck_assert_uint_eq(out_gen_of(), 102);
	/* The ceiling is clock + W - 1 = 102: a third move waits for the
	 * clock, which then moves past it. */
	out.spi = assoc_spi(7, AF_INET, &d.local, &d.remote, 102);
	assocs_sa_expired(m, &out, false, 20 * SEC);
	converge(20 * SEC);
	ck_assert_uint_eq(out_gen_of(), 102);
	assocs_set_wallclock(m, assoc_gen_start_ms(&d, 101) + 10);
	converge(30 * SEC);
	ck_assert_uint_eq(out_gen_of(), 103);
}
END_TEST

START_TEST(test_restart_mid_rotation_resumes)
{
	struct assoc_def d = clock_def();
	struct assoc_gen_record rec = {.name = "web", .out_gen = 100, .in_gen = 100};

	/* Down over the boundary of 101; the kernel lost nothing, the state
	 * file says 100. */
	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	assocs_free(m);
	new_manager();
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_set_generations(m, &rec, 1);
	assocs_set_wallclock(m, assoc_gen_start_ms(&d, 101) + 500);
	/* A kernel without the outbound SA (reboot): 101 is both saved + 1
	 * and the clock's. */
	synced_empty_kernel();
	converge(SEC);
	ck_assert_uint_eq(out_gen_of(), 101);
}
END_TEST

START_TEST(test_schedule_redefine_checked)
{
	struct assoc_def d = clock_def(), nd;
	char err[300];
	const char *why;

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	/* Installed: 100..103. A change from 103 rewrites a key in use. */
	nd = d;
	assoc_sched_parse("from 103 secret /etc/other", &nd.sched[0], &why);
	nd.n_sched = 1;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "generation 103"));
	ck_assert_ptr_nonnull(strstr(err, "104 or later"));
	assoc_sched_parse("from 104 secret /etc/other", &nd.sched[0], &why);
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), 0);
	/* A lifetime change from 103 moves 104's start: refused too. */
	assoc_sched_parse("from 103 lifetime 20", &nd.sched[0], &why);
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), -EINVAL);
	assoc_sched_parse("from 104 lifetime 20", &nd.sched[0], &why);
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), 0);
	/* A longer lifetime in place would put the clock far behind 100. */
	nd = d;
	nd.lifetime_sec = 1000;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "behind generation 100"));
	/* A shorter one moves it forward: fine. So does an earlier epoch. */
	nd.lifetime_sec = 5;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), 0);
	nd = d;
	nd.epoch = d.epoch - 30;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), 0);
	nd.epoch = d.epoch + 30;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), -EINVAL);
	/* Back by less than the lookahead allows: the sender waits. */
	nd.epoch = d.epoch + 5;
	ck_assert_int_eq(assocs_check_redefine(m, &nd, 1, err, sizeof(err)), 0);
}
END_TEST

/* The peer's packets on `gen`, as a counter read at wall time t sees them. */
static void peer_packets(uint64_t gen, uint64_t packets, int64_t t)
{
	struct xfrm_sa in = kernel_sa(false, gen);

	in.replay_window = 32;
	in.cur.packets = packets;
	assocs_set_wallclock(m, t);
	assocs_sa_seen(m, &in, 0);
}

static void assert_peer(const char *state, bool in_step)
{
	json_object *keep;

	ck_assert_str_eq(json_object_get_string(show(&keep, "state", NULL)), state);
	json_object_put(keep);
	ck_assert(json_object_get_boolean(show(&keep, "rotation", "peer_in_step")) == in_step);
	json_object_put(keep);
}

START_TEST(test_peer_behind_reported_and_recovers)
{
	struct assoc_def d = clock_def();
	json_object *keep;
	int64_t s101 = assoc_gen_start_ms(&d, 101), s102 = assoc_gen_start_ms(&d, 102);
	int64_t s103 = assoc_gen_start_ms(&d, 103);

	/* Counters read every second (the setup's counter-interval). */
	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	peer_packets(100, 10, s101 - 400);
	/* The peer keeps sending on 100 after the boundary... */
	peer_packets(100, 20, s101 + 600);
	peer_packets(100, 40, s101 + 1600);
	converge(SEC);
	assert_peer("up", true);
	/* ...the overlap ends (2 s) with nothing seen on 101: dropped from
	 * now on, but not known yet... */
	assocs_set_wallclock(m, s101 + 2000);
	converge(2 * SEC);
	assert_peer("up", true);
	/* ...until its packets reappear on 101, 3.5 s after 101 began. */
	peer_packets(101, 5, s101 + 3500);
	converge(3 * SEC);
	assert_peer("error", false);
	ck_assert_ptr_nonnull(strstr(json_object_get_string(show(&keep, "reason", NULL)),
				     "moved on to generation 101 about 3500 ms after it began"));
	json_object_put(keep);
	/* Still behind at the next boundary: still reported. */
	peer_packets(101, 25, s102 + 600);
	assocs_set_wallclock(m, s102 + 2000);
	converge(4 * SEC);
	peer_packets(102, 5, s102 + 3500);
	converge(5 * SEC);
	assert_peer("error", false);
	/* Put right: at 103 it moves in time, seen before the overlap ends. */
	peer_packets(103, 3, s103 + 300);
	assocs_set_wallclock(m, s103 + 2000);
	converge(6 * SEC);
	assert_peer("up", true);
}
END_TEST

/* A dump right after a counter read sees no new packet (20 a second, 50 ms
 * apart): that is no gap in the traffic, and a peer behind is still found
 * (the UML rotation test missed it when a reconcile's dump followed the
 * counter read in the last interval before the overlap ended). */
START_TEST(test_peer_behind_close_reads)
{
	struct assoc_def d = clock_def();
	int64_t s101 = assoc_gen_start_ms(&d, 101);

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	peer_packets(100, 10, s101 - 950);
	peer_packets(100, 30, s101 + 50);
	peer_packets(100, 50, s101 + 1050);
	peer_packets(100, 50, s101 + 1080);
	assocs_set_wallclock(m, s101 + 2000);
	converge(2 * SEC);
	assert_peer("up", true);
	peer_packets(101, 5, s101 + 3500);
	converge(3 * SEC);
	assert_peer("error", false);
}
END_TEST

/* Peers in step whose counters are read late are not reported. */
START_TEST(test_peer_on_time_not_reported)
{
	struct assoc_def d = clock_def();
	int64_t s101 = assoc_gen_start_ms(&d, 101);

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	peer_packets(100, 10, s101 - 900);
	/* The peer moved 100 ms after the boundary: a read between saw its
	 * last packets on 100 come in after the boundary, and none on 101
	 * was read before the overlap ended; they are, 2.1 s after the
	 * boundary: within the overlap and a counter interval. */
	peer_packets(100, 10, s101 + 50);
	peer_packets(100, 12, s101 + 150);
	assocs_set_wallclock(m, s101 + 2000);
	converge(SEC);
	peer_packets(101, 30, s101 + 2100);
	assocs_set_wallclock(m, s101 + 3500);
	converge(2 * SEC);
	assert_peer("up", true);
}
END_TEST

START_TEST(test_lifetime_added_by_reload)
{
	struct assoc_def d = def("web", 7);
	json_object *keep, *in;
	int64_t now = 1796400000000LL;

	d.lookahead = 2;
	steady_at(&d, now);
	ck_assert_uint_eq(out_gen_of(), 0);
	/* A reload gives it a lifetime: the clock is ~179 million periods
	 * on. The status must not walk from 0 up to there, and the next plan
	 * moves straight to the clock. */
	d.lifetime_sec = 10;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	in = show(&keep, "inbound", NULL);
	ck_assert_uint_le(json_object_array_length(in), 2 * 2 + 2);
	json_object_put(keep);
	converge(SEC);
	ck_assert_uint_eq(out_gen_of(), assoc_clock_gen(&d, now));
	ck_assert_str_eq(json_object_get_string(show(&keep, "state", NULL)), "up");
	json_object_put(keep);
}
END_TEST

/* An update's notification carries the request's add time and zero
 * counters: restoring lifetimes once must be enough (no ping-pong between
 * the notification and the next dump). */
START_TEST(test_update_notification_does_not_loop)
{
	struct assoc_def d = clock_def();
	struct assoc_action *v = NULL;
	struct xfrm_sa in;
	int64_t t = assoc_gen_start_ms(&d, 100) + 10;
	uint64_t add_time = (uint64_t)t / 1000;
	int n, updates = 0;

	steady_at(&d, t);
	/* What the kernel has for inbound 101 (added at t), with 7 packets. */
	in = kernel_sa(false, 101);
	in.replay_window = 32;
	in.cur.add_time = add_time;
	in.cur.packets = 7;
	in.lft = (struct xfrm_lifetime_cfg){.soft_byte_limit = XFRM_INF,
					    .hard_byte_limit = XFRM_INF,
					    .soft_packet_limit = 100000,
					    .hard_packet_limit = 100000};
	/* Someone changed its limits: the notification shows the request. */
	assocs_set_wallclock(m, t + 3000);
	in.cur = (struct xfrm_lifetime_cur){.add_time = add_time + 3};
	assocs_sa_updated(m, &in, 0);
	for (int round = 0; round < 4; round++) {
		n = plan(SEC, true, &v);
		for (int i = 0; i < n; i++) {
			struct nl_ack ack = {0};
			if (v[i].op != ASSOC_OP_UPDATE_SA)
				continue;
			updates++;
			/* Relative to the SA's own add time, not the request's. */
			ck_assert_uint_eq(add_time + v[i].sa.lft.hard_add_expires_seconds,
					  (uint64_t)(assoc_gen_start_ms(&d, 102) + 2000 + 999) /
					      1000);
			assocs_action_done(m, &v[i], &ack, 0);
			in.lft = v[i].sa.lft;
			in.cur = (struct xfrm_lifetime_cur){.add_time = add_time + 3};
			assocs_sa_updated(m, &in, 0);
		}
		assoc_actions_free(v, (size_t)n);
	}
	ck_assert_int_eq(updates, 1);
}
END_TEST

/* The kernel added an SA seconds after tokend planned it (crypto modules
 * loading): its time limits are counted again from the real add time, as an
 * adjustment, not a repair. Someone else's change is a repair. */
START_TEST(test_late_add_is_an_adjustment)
{
	struct assoc_def d = clock_def();
	struct assoc_action *v = NULL;
	int64_t t = assoc_gen_start_ms(&d, 100) + 2500;
	int n, adjusted = 0, repaired = 0;

	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_set_wallclock(m, t);
	synced_empty_kernel();
	n = plan(SEC, true, &v);
	for (int i = 0; i < n; i++) {
		struct nl_ack ack = {0};
		assocs_action_done(m, &v[i], &ack, 0);
		if (v[i].op == ASSOC_OP_ADD_SA) {
			/* The kernel's own view: added 3 s later, same limits. */
			struct xfrm_sa sa = v[i].sa;
			unsigned len = 32;
			EVP_Digest(v[i].key_buf, v[i].sa.enc_key_len + v[i].sa.auth_key_len,
				   sa.key_digest, &len, EVP_sha256(), NULL);
			sa.cur.add_time += 3;
			assocs_sa_seen(m, &sa, 0);
		}
	}
	assoc_actions_free(v, (size_t)n);
	assocs_generations_saved(m);
	n = plan(SEC, true, &v);
	for (int i = 0; i < n; i++)
		if (v[i].op == ASSOC_OP_UPDATE_SA) {
			adjusted += v[i].adjust;
			repaired += !v[i].adjust;
		}
	assoc_actions_free(v, (size_t)n);
	ck_assert_int_eq(adjusted, 4); /* inbound 100..103 */
	ck_assert_int_eq(repaired, 0);
}
END_TEST

/* Traffic that stops at a boundary is not a peer out of step. */
START_TEST(test_traffic_stopping_not_reported)
{
	struct assoc_def d = clock_def();
	int64_t s101 = assoc_gen_start_ms(&d, 101);

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	peer_packets(100, 10, s101 - 900);
	peer_packets(100, 12, s101 + 150); /* its last packets, just after the end */
	assocs_set_wallclock(m, s101 + 2000);
	converge(SEC);
	assocs_set_wallclock(m, s101 + 3500);
	converge(2 * SEC);
	assert_peer("up", true);
}
END_TEST

/* A secret whose generations have all passed may be gone at start: no
 * error, the association works on the new one. */
START_TEST(test_retired_secret_missing_at_start)
{
	struct assoc_def d = clock_def();
	const char *why;
	json_object *keep;

	snprintf(d.secret_path, sizeof(d.secret_path), "/nonexistent/old.key");
	snprintf(d.sched[0].secret_path, sizeof(d.sched[0].secret_path), "%s", secret_path);
	ck_assert_int_eq(assoc_sched_parse("from 50 secret /x", &d.sched[0], &why), 0);
	snprintf(d.sched[0].secret_path, sizeof(d.sched[0].secret_path), "%s", secret_path);
	d.n_sched = 1;
	assocs_set_wallclock(m, assoc_gen_start_ms(&d, 100) + 2500);
	steady_at(&d, assoc_gen_start_ms(&d, 100) + 2500);
	ck_assert_str_eq(json_object_get_string(show(&keep, "state", NULL)), "up");
	json_object_put(keep);
	/* Before generation 50 was reached, the old one was needed. */
	assocs_free(m);
	new_manager();
	steady_at(&d, assoc_gen_start_ms(&d, 48));
	ck_assert_str_eq(json_object_get_string(show(&keep, "state", NULL)), "error");
	json_object_put(keep);
}
END_TEST

/* The kernel fell back to an older outbound SA while tokend was down: it is
 * adopted, but the next move skips every generation on disk. */
START_TEST(test_adopted_older_sa_never_reinstalls_a_used_one)
{
	struct assoc_def d = def("web", 7);
	struct assoc_gen_record rec = {.name = "web", .out_gen = 3, .in_gen = 0};
	struct xfrm_sa sa = kernel_outbound(2);
	const char *why = NULL;

	d.lookahead = 8;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	assocs_set_generations(m, &rec, 1);
	assocs_resync_begin(m);
	assocs_sa_seen(m, &sa, 0);
	assocs_resync_end(m);
	converge(0);
	ck_assert_uint_eq(out_gen_of(), 3); /* what is on disk is not lowered */
	ck_assert_int_eq(assocs_rotate(m, "web", 10 * SEC, &why), 0);
	converge(10 * SEC);
	ck_assert_uint_eq(out_gen_of(), 4);
}
END_TEST

/* Redefined (a change that replaces its SAs), deleted and declared again,
 * or its secret file replaced in place: the sender goes on past every
 * generation it used, never back to generation 0. */
START_TEST(test_generations_outlive_redefinition)
{
	struct assoc_def d = def("web", 7);
	struct assoc_gen_record *g;
	size_t n_g;
	FILE *f;

	d.lookahead = 8;
	steady_at(&d, 0);
	ck_assert_uint_eq(out_gen_of(), 0);
	/* Mode is not a key input, but its SAs are replaced. */
	d.mode = XFRM_MODE_TUNNEL;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	converge(SEC);
	ck_assert_uint_eq(out_gen_of(), 1);
	/* Deleted, then declared again: the history is kept, and written. */
	ck_assert_int_eq(assocs_set_defs(m, NULL, 0), 0);
	ck_assert_int_eq(assocs_get_generations(m, &g, &n_g), 0);
	ck_assert_uint_eq(n_g, 1);
	ck_assert_str_eq(g[0].name, "web");
	ck_assert_uint_eq(g[0].out_gen, 1);
	/* ...also across a restart: a new manager reads it back. */
	assocs_free(m);
	new_manager();
	assocs_set_generations(m, g, n_g);
	free(g);
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	synced_empty_kernel();
	converge(2 * SEC);
	ck_assert_uint_eq(out_gen_of(), 2);
	/* The secret file replaced in place: new keys, a new generation. */
	f = fopen(secret_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", f);
	fclose(f);
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	converge(3 * SEC);
	ck_assert_uint_eq(out_gen_of(), 3);
}
END_TEST

/* A runtime change (update) reads the secrets of what it adds, not those
 * of every association again; a reload (set) does. */
START_TEST(test_update_keeps_secrets)
{
	struct assoc_def d[2] = {def("web", 7), def("db", 8)};
	FILE *f;

	steady_at(&d[0], 0);
	ck_assert_uint_eq(out_gen_named("web"), 0);
	f = fopen(secret_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n", f);
	fclose(f);
	/* "db" is added at runtime: web keeps the secret it holds... */
	ck_assert_int_eq(assocs_update_defs(m, d, 2), 0);
	converge(SEC);
	ck_assert_uint_eq(out_gen_named("web"), 0);
	/* ...and "db" has one: it comes up. */
	{
		json_object *keep;

		ck_assert_str_eq(json_object_get_string(show_named(&keep, "db", "state", NULL)),
				 "up");
		json_object_put(keep);
	}
	/* A reload reads the file again: new keys, a new generation. */
	ck_assert_int_eq(assocs_set_defs(m, d, 2), 0);
	converge(2 * SEC);
	ck_assert_uint_eq(out_gen_named("web"), 1);
}
END_TEST

/* Many associations, declared in an order that is neither by name nor by
 * number: every kernel answer and report reaches its own (lookups go
 * through the sorted indexes), and a later set that drops some and redefines
 * others keeps, retires and carries each one right. */
START_TEST(test_many_lookups)
{
	enum { N = 300 };
	struct assoc_def *d = calloc(N, sizeof(*d));
	struct assoc_gen_record *g;
	json_object *arr;
	size_t n_g, w = 0;
	char name[32];

	ck_assert_ptr_nonnull(d);
	for (int i = 0; i < N; i++) {
		/* Numbers scattered over 1..65535, names in another order. */
		snprintf(name, sizeof(name), "n%03d", (i * 7919) % N);
		d[i] = def(name, (uint32_t)(1 + (i * 40503u) % 65535u));
		d[i].remote.v4.s_addr = htonl(0xc6336400u + (uint32_t)i); /* 198.51.100.0 + i */
		d[i].remote_net = d[i].remote;
	}
	ck_assert_int_eq(assocs_set_defs(m, d, N), 0);
	synced_empty_kernel();
	converge(SEC);
	for (int i = 0; i < N; i++) {
		json_object *o;

		ck_assert_int_eq(assocs_list_json(m, d[i].name, &arr), 0);
		o = json_object_array_get_idx(arr, 0);
		ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "state")), "up");
		ck_assert_int_eq(json_object_get_int(json_object_object_get(o, "number")),
				 (int)d[i].number);
		json_object_put(arr);
	}
	/* Every third dropped, every fifth redefined (tunnel mode). */
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			continue;
		d[w] = d[i];
		if (i % 5 == 0)
			d[w].mode = XFRM_MODE_TUNNEL;
		w++;
	}
	ck_assert_int_eq(assocs_update_defs(m, d, w), 0);
	converge(2 * SEC);
	ck_assert_uint_eq(assocs_count(m), w);
	for (size_t i = 0; i < w; i++) {
		ck_assert_int_eq(assocs_list_json(m, d[i].name, &arr), 0);
		json_object_put(arr);
	}
	ck_assert_int_eq(assocs_list_json(m, "n000", &arr), -ENOENT);
	/* The dropped ones' generations are kept as history, the rest live:
	 * one record each. */
	ck_assert_int_eq(assocs_get_generations(m, &g, &n_g), 0);
	ck_assert_uint_eq(n_g, N);
	free(g);
	free(d);
}
END_TEST

/* A keepalive now and then is not traffic across a boundary: the next one,
 * long after, is not a peer out of step. */
START_TEST(test_sparse_traffic_not_reported)
{
	struct assoc_def d = clock_def();
	int64_t s101 = assoc_gen_start_ms(&d, 101);

	steady_at(&d, assoc_gen_start_ms(&d, 100) + 10);
	peer_packets(100, 1, s101 - 900);
	peer_packets(100, 1, s101 + 100);
	peer_packets(100, 2, s101 + 1100); /* one keepalive, just after the end */
	peer_packets(100, 2, s101 + 1900);
	assocs_set_wallclock(m, s101 + 2000);
	converge(SEC);
	peer_packets(101, 1, s101 + 8000); /* the next one */
	converge(2 * SEC);
	assert_peer("up", true);
}
END_TEST

/* A reload that adds a schedule line with a new secret file replaces
 * nothing installed. */
START_TEST(test_new_schedule_secret_replaces_nothing)
{
	struct assoc_def d = def("web", 7);
	struct assoc_action *v = NULL;
	const char *why;
	char path2[64];
	int fd, n;

	d.lookahead = 4;
	steady_at(&d, 0);
	snprintf(path2, sizeof(path2), "/tmp/test_assoc2.XXXXXX");
	fd = mkstemp(path2);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "aa55aa55aa55aa55aa55aa55aa55aa55\n", 33), 33);
	fchmod(fd, 0600);
	close(fd);
	ck_assert_int_eq(assoc_sched_parse("from 100 secret /x", &d.sched[0], &why), 0);
	snprintf(d.sched[0].secret_path, sizeof(d.sched[0].secret_path), "%s", path2);
	d.n_sched = 1;
	ck_assert_int_eq(assocs_set_defs(m, &d, 1), 0);
	n = plan(SEC, true, &v);
	ck_assert_int_eq(n, 0);
	assoc_actions_free(v, (size_t)n);
	ck_assert_uint_eq(out_gen_of(), 0);
	unlink(path2);
}
END_TEST

static Suite *assoc_suite(void)
{
	Suite *s = suite_create("assoc");
	TCase *tc = tcase_create("reconcile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_spi_layout);
	tcase_add_test(tc, test_policies_first_then_inbound_then_outbound_after_save);
	tcase_add_test(tc, test_right_kernel_needs_nothing);
	tcase_add_test(tc, test_lost_outbound_moves_to_next_generation_never_reuses);
	tcase_add_test(tc, test_sender_never_passes_lookahead_minus_one);
	tcase_add_test(tc, test_orphans_removed_foreign_untouched_released_kept);
	tcase_add_test(tc, test_orphan_that_keeps_coming_back_is_left_alone);
	tcase_add_test(tc, test_orphan_removed_now_and_then_is_always_removed);
	tcase_add_test(tc, test_association_readded_is_no_returning_orphan);
	tcase_add_test(tc, test_foreign_sa_on_computed_spi_is_a_conflict);
	tcase_add_test(tc, test_keys_survive_a_growing_plan);
	tcase_add_test(tc, test_def_checks);
	tcase_add_test(tc, test_def_json_round_trip);
	tcase_add_test(tc, test_restart_adopts_kernel_outbound);
	tcase_add_test(tc, test_restart_without_kernel_sa_moves_past_saved);
	tcase_add_test(tc, test_clock_generations);
	tcase_add_test(tc, test_phase_vectors);
	tcase_add_test(tc, test_phases_spread);
	tcase_add_test(tc, test_schedule);
	tcase_add_test(tc, test_clock_moves_sender_and_window);
	tcase_add_test(tc, test_clock_step_forward_goes_straight);
	tcase_add_test(tc, test_clock_step_backward_never_reuses);
	tcase_add_test(tc, test_soft_limit_moves_early_within_ceiling);
	tcase_add_test(tc, test_restart_mid_rotation_resumes);
	tcase_add_test(tc, test_schedule_redefine_checked);
	tcase_add_test(tc, test_peer_behind_reported_and_recovers);
	tcase_add_test(tc, test_peer_behind_close_reads);
	tcase_add_test(tc, test_update_keeps_secrets);
	tcase_add_test(tc, test_many_lookups);
	tcase_add_test(tc, test_peer_on_time_not_reported);
	tcase_add_test(tc, test_update_notification_does_not_loop);
	tcase_add_test(tc, test_late_add_is_an_adjustment);
	tcase_add_test(tc, test_traffic_stopping_not_reported);
	tcase_add_test(tc, test_sparse_traffic_not_reported);
	tcase_add_test(tc, test_retired_secret_missing_at_start);
	tcase_add_test(tc, test_adopted_older_sa_never_reinstalls_a_used_one);
	tcase_add_test(tc, test_generations_outlive_redefinition);
	tcase_add_test(tc, test_new_schedule_secret_replaces_nothing);
	tcase_add_test(tc, test_lifetime_added_by_reload);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(assoc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
