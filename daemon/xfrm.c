/* SPDX-License-Identifier: MIT */
#include "xfrm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libmnl/libmnl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Sizes fixed by the kernel's uapi structures. */
#define XFRM_ALG_NAME_LEN sizeof(((struct xfrm_algo *)0)->alg_name)
/* Without XFRMA_REPLAY_ESN_VAL the kernel keeps the window in the legacy
 * struct xfrm_replay_state, whose bitmap is one u32: copy_from_user_state
 * clamps usersa_info.replay_window to 32 without telling anyone. */
#define XFRM_LEGACY_REPLAY_MAX (sizeof(((struct xfrm_replay_state *)0)->bitmap) * 8)
/* verify_replay refuses a bitmap longer than XFRMA_REPLAY_ESN_MAX bits. */
#define XFRM_ESN_BMP_MAX (XFRMA_REPLAY_ESN_MAX / 32)
/* A key must fit one attribute (nla_len is 16 bits) with room to spare. */
#define XFRM_KEY_MAX 4096

/* --- building ------------------------------------------------------------ */

/* unsigned, not uint8_t: the decoders pass the kernel's 16-bit families,
 * which must not be cut to their low byte (0x0102 is not AF_INET). */
static bool xfrm_family_valid(unsigned family)
{
	return family == AF_INET || family == AF_INET6;
}

static size_t xfrm_addr_len(uint8_t family)
{
	return family == AF_INET ? sizeof(struct in_addr) : sizeof(struct in6_addr);
}

/* Start a message with a zeroed nlmsghdr and the fixed header copied in. The
 * structures are built on the stack and copied because several hold u64
 * fields that a 4-aligned netlink buffer does not align. */
static struct nlmsghdr *xfrm_put_msg(void *buf, size_t len, uint16_t type, uint16_t flags,
				     const void *hdr, size_t hdr_len)
{
	struct nlmsghdr *nlh;

	if (!buf || len < MNL_NLMSG_HDRLEN + MNL_ALIGN(hdr_len))
		return NULL;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	if (hdr_len > 0)
		memcpy(mnl_nlmsg_put_extra_header(nlh, hdr_len), hdr, hdr_len);
	return nlh;
}

/* Append one attribute whose payload is head followed by tail (an algorithm
 * structure and its key). Unlike mnl_attr_put this checks the buffer, so
 * the builders can return NULL instead of writing past it. */
static bool xfrm_put_attr(struct nlmsghdr *nlh, size_t buflen, uint16_t type, const void *head,
			  size_t head_len, const void *tail, size_t tail_len)
{
	size_t plen, total;
	struct nlattr *a;
	char *p;

	if (head_len > XFRM_KEY_MAX || tail_len > XFRM_KEY_MAX)
		return false;
	plen = head_len + tail_len;
	total = MNL_ALIGN(MNL_ATTR_HDRLEN + plen);
	if (nlh->nlmsg_len > buflen || total > buflen - nlh->nlmsg_len)
		return false;
	a = mnl_nlmsg_get_payload_tail(nlh);
	a->nla_type = type;
	a->nla_len = (uint16_t)(MNL_ATTR_HDRLEN + plen);
	p = (char *)a + MNL_ATTR_HDRLEN;
	if (head_len > 0)
		memcpy(p, head, head_len);
	if (tail_len > 0)
		memcpy(p + head_len, tail, tail_len);
	memset(p + plen, 0, total - MNL_ATTR_HDRLEN - plen);
	nlh->nlmsg_len += (uint32_t)total;
	return true;
}

static bool xfrm_name_valid(const char *name)
{
	return name && name[0] != '\0' && strnlen(name, XFRM_ALG_NAME_LEN) < XFRM_ALG_NAME_LEN;
}

static bool xfrm_key_valid(const uint8_t *key, size_t len)
{
	return (key || len == 0) && len <= XFRM_KEY_MAX;
}

/* The combinations the kernel can take: an AEAD alone (verify_newsa_info
 * refuses AEAD next to CRYPT or AUTH), or CRYPT and/or AUTH_TRUNC. */
static bool xfrm_sa_algs_valid(const struct xfrm_sa *sa)
{
	if (sa->enc_name &&
	    (!xfrm_name_valid(sa->enc_name) || !xfrm_key_valid(sa->enc_key, sa->enc_key_len)))
		return false;
	if (sa->auth_name &&
	    (!xfrm_name_valid(sa->auth_name) || !xfrm_key_valid(sa->auth_key, sa->auth_key_len)))
		return false;
	if (!sa->enc_name && sa->enc_key_len > 0)
		return false;
	if (!sa->auth_name && sa->auth_key_len > 0)
		return false;
	if (sa->aead)
		return sa->enc_name && !sa->auth_name;
	return sa->enc_name || sa->auth_name;
}

static bool xfrm_put_algs(struct nlmsghdr *nlh, size_t len, const struct xfrm_sa *sa)
{
	if (sa->aead) {
		struct xfrm_algo_aead aead;

		memset(&aead, 0, sizeof(aead));
		snprintf(aead.alg_name, sizeof(aead.alg_name), "%s", sa->enc_name);
		aead.alg_key_len = (unsigned)(sa->enc_key_len * 8);
		aead.alg_icv_len = sa->icv_bits;
		return xfrm_put_attr(nlh, len, XFRMA_ALG_AEAD, &aead, sizeof(aead), sa->enc_key,
				     sa->enc_key_len);
	}
	if (sa->enc_name) {
		struct xfrm_algo crypt;

		memset(&crypt, 0, sizeof(crypt));
		snprintf(crypt.alg_name, sizeof(crypt.alg_name), "%s", sa->enc_name);
		crypt.alg_key_len = (unsigned)(sa->enc_key_len * 8);
		if (!xfrm_put_attr(nlh, len, XFRMA_ALG_CRYPT, &crypt, sizeof(crypt), sa->enc_key,
				   sa->enc_key_len))
			return false;
	}
	if (sa->auth_name) {
		/* AUTH_TRUNC rather than AUTH so the ICV length is ours: with
		 * plain XFRMA_ALG_AUTH the kernel picks the algorithm's default
		 * truncation (96 bits for hmac(sha256), not RFC 4868's 128). */
		struct xfrm_algo_auth auth;

		memset(&auth, 0, sizeof(auth));
		snprintf(auth.alg_name, sizeof(auth.alg_name), "%s", sa->auth_name);
		auth.alg_key_len = (unsigned)(sa->auth_key_len * 8);
		auth.alg_trunc_len = sa->icv_bits;
		if (!xfrm_put_attr(nlh, len, XFRMA_ALG_AUTH_TRUNC, &auth, sizeof(auth),
				   sa->auth_key, sa->auth_key_len))
			return false;
	}
	return true;
}

/* The replay window, shaped the way verify_replay and xfrm_init_replay take it:
 *  - without XFRM_STATE_ESN the window goes in usersa_info.replay_window, and
 *    the kernel silently clamps it to 32 (legacy bitmap), so anything larger
 *    is refused here rather than installed smaller than asked;
 *  - with XFRM_STATE_ESN the kernel demands XFRMA_REPLAY_ESN_VAL ("Missing
 *    required attribute for ESN") and a zero usersa_info.replay_window; the
 *    attribute carries bmp_len = DIV_ROUND_UP(window, 32) and the window. It is
 *    sent in its short form, without the bitmap words, as `ip xfrm state add
 *    flag esn` does: verify_replay accepts an attribute of exactly
 *    sizeof(struct xfrm_replay_state_esn) and xfrm_alloc_replay_state_esn then
 *    starts from a zeroed bitmap. At most XFRMA_REPLAY_ESN_MAX (4096) bits.
 * The kernel could also take ESN_VAL without the ESN flag (a wide bitmap on
 * 32-bit sequence numbers); that is deliberately not offered. */
static bool xfrm_replay_shape(const struct xfrm_sa *sa, struct xfrm_usersa_info *info,
			      struct xfrm_replay_state_esn *esn)
{
	memset(esn, 0, sizeof(*esn));
	if (!(sa->flags & XFRM_STATE_ESN)) {
		if (sa->replay_window > XFRM_LEGACY_REPLAY_MAX)
			return false;
		info->replay_window = (uint8_t)sa->replay_window;
		return true;
	}
	if (sa->replay_window > XFRMA_REPLAY_ESN_MAX)
		return false;
	info->replay_window = 0;
	esn->bmp_len = (sa->replay_window + 31) / 32;
	esn->replay_window = sa->replay_window;
	return true;
}

struct nlmsghdr *xfrm_build_newsa(void *buf, size_t len, const struct xfrm_sa *sa, bool update)
{
	struct xfrm_usersa_info info;
	struct xfrm_replay_state_esn esn;
	struct nlmsghdr *nlh;
	size_t alen;

	if (!xfrm_family_valid(sa->family) || !xfrm_sa_algs_valid(sa))
		return NULL;
	memset(&info, 0, sizeof(info));
	if (!xfrm_replay_shape(sa, &info, &esn))
		return NULL;
	/* The selector stays all zero (AF_UNSPEC), as `ip xfrm state add`
	 * sends it without "sel ...", in either mode: copy_from_user_state
	 * then gives it the SA's family (unless flags has
	 * XFRM_STATE_AF_UNSPEC, which a tunnel SA needs to carry the other
	 * inner family), and a zero selector lets the SA serve any flow its
	 * policy sends to it. Only the address bytes of the family are
	 * copied, so nothing past an IPv4 address leaks in from the union. */
	alen = xfrm_addr_len(sa->family);
	memcpy(&info.id.daddr, &sa->dst, alen);
	memcpy(&info.saddr, &sa->src, alen);
	info.id.spi = htonl(sa->spi);
	info.id.proto = sa->proto;
	info.family = sa->family;
	info.mode = sa->mode;
	info.reqid = sa->reqid;
	info.flags = sa->flags;
	info.lft = sa->lft;
	/* Only NLM_F_REQUEST: xfrm_add_sa decides add or update from the type
	 * alone (NEWSA fails with EEXIST on a duplicate), and nl_transact adds
	 * NLM_F_ACK. */
	nlh = xfrm_put_msg(buf, len, update ? XFRM_MSG_UPDSA : XFRM_MSG_NEWSA, NLM_F_REQUEST, &info,
			   sizeof(info));
	if (!nlh)
		return NULL;
	if (!xfrm_put_algs(nlh, len, sa) ||
	    ((sa->flags & XFRM_STATE_ESN) &&
	     !xfrm_put_attr(nlh, len, XFRMA_REPLAY_ESN_VAL, &esn, sizeof(esn), NULL, 0))) {
		/* A key may already be in buf: leave none behind in a request
		 * that will not be sent. */
		explicit_bzero(buf, nlh->nlmsg_len);
		return NULL;
	}
	return nlh;
}

struct nlmsghdr *xfrm_build_delsa(void *buf, size_t len, uint8_t family,
				  const union xfrm_addr_any *dst, uint32_t spi, uint8_t proto)
{
	struct xfrm_usersa_id id;

	if (!xfrm_family_valid(family))
		return NULL;
	/* xfrm_user_state_lookup finds ESP, AH and IPComp states by (daddr,
	 * spi, proto) alone; the XFRMA_SRCADDR that iproute2 adds is only
	 * read for the SPI-less protocols. */
	memset(&id, 0, sizeof(id));
	memcpy(&id.daddr, dst, xfrm_addr_len(family));
	id.spi = htonl(spi);
	id.family = family;
	id.proto = proto;
	return xfrm_put_msg(buf, len, XFRM_MSG_DELSA, NLM_F_REQUEST, &id, sizeof(id));
}

/* The policy's selector with its family: verify_newpolicy_info refuses a
 * selector without AF_INET or AF_INET6, and the selector family is what the
 * kernel hashes and matches policies by. */
static int xfrm_policy_selector(const struct xfrm_policy *p, struct xfrm_selector *sel)
{
	*sel = p->sel;
	if (sel->family == AF_UNSPEC)
		sel->family = p->family;
	if (!xfrm_family_valid((uint8_t)sel->family) || sel->family != p->family)
		return -EINVAL;
	return 0;
}

struct nlmsghdr *xfrm_build_newpolicy(void *buf, size_t len, const struct xfrm_policy *p,
				      bool update)
{
	struct xfrm_userpolicy_info info;
	struct xfrm_user_tmpl tmpl;
	struct nlmsghdr *nlh;
	int r;

	memset(&info, 0, sizeof(info));
	r = xfrm_policy_selector(p, &info.sel);
	if (r < 0)
		return NULL;
	/* No limits (the kernel would expire the policy at a zero limit), no
	 * index (the kernel picks one; a non-zero one must encode dir), share
	 * XFRM_SHARE_ANY and no flags: what `ip xfrm policy add` sends. */
	info.lft.soft_byte_limit = XFRM_INF;
	info.lft.hard_byte_limit = XFRM_INF;
	info.lft.soft_packet_limit = XFRM_INF;
	info.lft.hard_packet_limit = XFRM_INF;
	info.priority = p->priority;
	info.dir = p->dir;
	info.action = p->action;
	info.share = XFRM_SHARE_ANY;
	nlh = xfrm_put_msg(buf, len, update ? XFRM_MSG_UPDPOLICY : XFRM_MSG_NEWPOLICY,
			   NLM_F_REQUEST, &info, sizeof(info));
	if (!nlh)
		return NULL;
	if (!p->has_tmpl)
		return nlh;
	tmpl = p->tmpl;
	if (tmpl.family == AF_UNSPEC)
		tmpl.family = p->family;
	/* The algorithm masks restrict which SAs may serve the template
	 * (xfrm_state_ok tests 1 << x->props.ealgo against ealgos): all zero
	 * would match no SA with an algorithm, so zero means "any", ~0, as
	 * iproute2 always sends. */
	if (tmpl.aalgos == 0 && tmpl.ealgos == 0 && tmpl.calgos == 0) {
		tmpl.aalgos = ~0U;
		tmpl.ealgos = ~0U;
		tmpl.calgos = ~0U;
	}
	if (!xfrm_put_attr(nlh, len, XFRMA_TMPL, &tmpl, sizeof(tmpl), NULL, 0))
		return NULL;
	return nlh;
}

struct nlmsghdr *xfrm_build_delpolicy(void *buf, size_t len, const struct xfrm_policy *p)
{
	struct xfrm_userpolicy_id id;
	int r;

	memset(&id, 0, sizeof(id));
	r = xfrm_policy_selector(p, &id.sel);
	if (r < 0)
		return NULL;
	/* index stays 0 so xfrm_get_policy looks the policy up by its exact
	 * selector and direction (xfrm_policy_bysel_ctx), never by an index
	 * that may since have been given to another policy. */
	id.dir = p->dir;
	return xfrm_put_msg(buf, len, XFRM_MSG_DELPOLICY, NLM_F_REQUEST, &id, sizeof(id));
}

struct nlmsghdr *xfrm_build_dump(void *buf, size_t len, uint16_t type)
{
	/* A bare header, no payload: xfrm_user_rcv_msg starts a dump before
	 * it checks xfrm_msg_min, xfrm_dump_policy_start reads nothing, and
	 * xfrm_dump_sa parses the payload from offset 0 as attributes (an
	 * optional XFRMA_PROTO / XFRMA_ADDRESS_FILTER): a zeroed struct there
	 * is answered, but logs "netlink: 224 bytes leftover after parsing
	 * attributes" (seen on 6.18). `ip xfrm policy list` sends exactly
	 * this; `ip xfrm state list` adds an all-zero XFRMA_ADDRESS_FILTER,
	 * which filters nothing. */
	if (type != XFRM_MSG_GETSA && type != XFRM_MSG_GETPOLICY)
		return NULL;
	return xfrm_put_msg(buf, len, type, NLM_F_REQUEST | NLM_F_DUMP, NULL, 0);
}

/* --- decoding ------------------------------------------------------------ */

/* Smallest payload of each attribute the kernel defines (as its xfrma_policy
 * table, plus the exact sizes it always sends). The algorithm attributes
 * are checked again against their key length, XFRMA_TMPL against whole
 * templates and XFRMA_REPLAY_ESN_VAL against its bitmap. */
static const uint16_t xfrm_attr_min[XFRMA_MAX + 1] = {
    [XFRMA_ALG_AUTH] = sizeof(struct xfrm_algo),
    [XFRMA_ALG_CRYPT] = sizeof(struct xfrm_algo),
    [XFRMA_ALG_COMP] = sizeof(struct xfrm_algo),
    [XFRMA_ENCAP] = sizeof(struct xfrm_encap_tmpl),
    [XFRMA_TMPL] = sizeof(struct xfrm_user_tmpl),
    [XFRMA_SA] = sizeof(struct xfrm_usersa_info),
    [XFRMA_POLICY] = sizeof(struct xfrm_userpolicy_info),
    [XFRMA_SEC_CTX] = sizeof(struct xfrm_user_sec_ctx),
    [XFRMA_LTIME_VAL] = sizeof(struct xfrm_lifetime_cur),
    [XFRMA_REPLAY_VAL] = sizeof(struct xfrm_replay_state),
    [XFRMA_REPLAY_THRESH] = sizeof(uint32_t),
    [XFRMA_ETIMER_THRESH] = sizeof(uint32_t),
    [XFRMA_SRCADDR] = sizeof(xfrm_address_t),
    [XFRMA_COADDR] = sizeof(xfrm_address_t),
    [XFRMA_LASTUSED] = sizeof(uint64_t),
    [XFRMA_POLICY_TYPE] = sizeof(struct xfrm_userpolicy_type),
    [XFRMA_MIGRATE] = sizeof(struct xfrm_user_migrate),
    [XFRMA_ALG_AEAD] = sizeof(struct xfrm_algo_aead),
    [XFRMA_KMADDRESS] = sizeof(struct xfrm_user_kmaddress),
    [XFRMA_ALG_AUTH_TRUNC] = sizeof(struct xfrm_algo_auth),
    [XFRMA_MARK] = sizeof(struct xfrm_mark),
    [XFRMA_TFCPAD] = sizeof(uint32_t),
    [XFRMA_REPLAY_ESN_VAL] = sizeof(struct xfrm_replay_state_esn),
    [XFRMA_SA_EXTRA_FLAGS] = sizeof(uint32_t),
    [XFRMA_PROTO] = sizeof(uint8_t),
    [XFRMA_ADDRESS_FILTER] = sizeof(struct xfrm_address_filter),
    [XFRMA_OFFLOAD_DEV] = sizeof(struct xfrm_user_offload),
    [XFRMA_SET_MARK] = sizeof(uint32_t),
    [XFRMA_SET_MARK_MASK] = sizeof(uint32_t),
    [XFRMA_IF_ID] = sizeof(uint32_t),
    [XFRMA_MTIMER_THRESH] = sizeof(uint32_t),
};

typedef const struct nlattr *xfrm_attrs_t[XFRMA_MAX + 1];

/* Check and index the attributes after a fixed header of hdr_len bytes.
 * Bounded by nlmsg_len itself, not by libmnl's iterator, which walks up to
 * MNL_ALIGN(nlmsg_len) and so reads up to 3 bytes past an unaligned end.
 * The kernel never repeats an attribute (XFRMA_PAD aside); a repeat is
 * refused rather than silently preferring one copy. Types newer than these
 * headers are skipped. The caller guarantees nlmsg_len bytes are readable. */
static int xfrm_attrs_index(const struct nlmsghdr *nlh, size_t hdr_len, xfrm_attrs_t tb)
{
	const char *p;
	size_t off = MNL_NLMSG_HDRLEN + MNL_ALIGN(hdr_len), rem;

	memset(tb, 0, sizeof(xfrm_attrs_t));
	if (nlh->nlmsg_len < off)
		return -EBADMSG;
	p = (const char *)nlh + off;
	rem = nlh->nlmsg_len - off;
	while (rem > 0) {
		const struct nlattr *a = (const void *)p;
		size_t alen, step;
		uint16_t type;

		if (rem < MNL_ATTR_HDRLEN)
			return -EBADMSG;
		alen = a->nla_len;
		if (alen < MNL_ATTR_HDRLEN || alen > rem)
			return -EBADMSG;
		type = a->nla_type & NLA_TYPE_MASK;
		/* XFRMA_PAD only aligns the next 64-bit attribute
		 * (nla_put_u64_64bit) and may come more than once. */
		if (type <= XFRMA_MAX && type != XFRMA_PAD) {
			if (tb[type] || alen - MNL_ATTR_HDRLEN < xfrm_attr_min[type])
				return -EBADMSG;
			tb[type] = a;
		}
		step = MNL_ALIGN(alen);
		if (step >= rem)
			break;
		p += step;
		rem -= step;
	}
	return 0;
}

static size_t xfrm_attr_len(const struct nlattr *a)
{
	return a->nla_len - MNL_ATTR_HDRLEN;
}

static const uint8_t *xfrm_attr_data(const struct nlattr *a)
{
	return (const uint8_t *)a + MNL_ATTR_HDRLEN;
}

/* Where the key bytes of an algorithm attribute are, after its fixed part
 * of head_len bytes (name, key length in bits and, for AEAD and AUTH_TRUNC,
 * the ICV length). -EBADMSG when the name is not terminated or the key
 * runs past the attribute (xfrm_alg_len / aead_len in the kernel). */
static int xfrm_alg_get(const struct nlattr *a, size_t head_len, uint32_t key_bits,
			const uint8_t **key, size_t *key_len)
{
	const uint8_t *data = xfrm_attr_data(a);
	uint64_t bytes = ((uint64_t)key_bits + 7) / 8;

	if (memchr(data, '\0', XFRM_ALG_NAME_LEN) == NULL)
		return -EBADMSG;
	if (bytes > xfrm_attr_len(a) - head_len)
		return -EBADMSG;
	*key = data + head_len;
	*key_len = (size_t)bytes;
	return 0;
}

static int xfrm_aead_get(const struct nlattr *a, struct xfrm_algo_aead *alg, const uint8_t **key,
			 size_t *key_len)
{
	memcpy(alg, xfrm_attr_data(a), sizeof(*alg));
	return xfrm_alg_get(a, sizeof(*alg), alg->alg_key_len, key, key_len);
}

static int xfrm_algo_get(const struct nlattr *a, struct xfrm_algo *alg, const uint8_t **key,
			 size_t *key_len)
{
	memcpy(alg, xfrm_attr_data(a), sizeof(*alg));
	return xfrm_alg_get(a, sizeof(*alg), alg->alg_key_len, key, key_len);
}

static int xfrm_auth_get(const struct nlattr *a, struct xfrm_algo_auth *alg, const uint8_t **key,
			 size_t *key_len)
{
	memcpy(alg, xfrm_attr_data(a), sizeof(*alg));
	return xfrm_alg_get(a, sizeof(*alg), alg->alg_key_len, key, key_len);
}

static int xfrm_key_digest(const uint8_t *k1, size_t l1, const uint8_t *k2, size_t l2,
			   uint8_t digest[32])
{
	EVP_MD_CTX *ctx;
	unsigned n = 0;
	int ok;

	memset(digest, 0, 32);
	if (l1 + l2 == 0)
		return 0;
	/* Two updates, so the keys are never concatenated into a buffer of
	 * ours that would then need wiping. */
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, k1, l1) &&
	     EVP_DigestUpdate(ctx, k2, l2) && EVP_DigestFinal_ex(ctx, digest, &n) && n == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		memset(digest, 0, 32);
		return -ENOMEM;
	}
	return 0;
}

/* The algorithms of an SA, as copy_to_user_state_extra sends them: AEAD;
 * or CRYPT and, for an authenticating SA, both XFRMA_ALG_AUTH (untruncated,
 * for old readers) and XFRMA_ALG_AUTH_TRUNC with the same name and key.
 * They come in attribute order AEAD, AUTH, AUTH_TRUNC, CRYPT, so the keys
 * are digested after the walk, encryption key first. */
static int xfrm_sa_algs(const xfrm_attrs_t tb, struct xfrm_sa *sa)
{
	const uint8_t *ekey = NULL, *akey = NULL;
	size_t elen = 0, alen = 0;
	int r;

	if (tb[XFRMA_ALG_AEAD] &&
	    (tb[XFRMA_ALG_CRYPT] || tb[XFRMA_ALG_AUTH] || tb[XFRMA_ALG_AUTH_TRUNC]))
		return -EBADMSG;
	if (tb[XFRMA_ALG_AEAD]) {
		struct xfrm_algo_aead aead;

		r = xfrm_aead_get(tb[XFRMA_ALG_AEAD], &aead, &ekey, &elen);
		if (r < 0)
			return r;
		snprintf(sa->enc_name_buf, sizeof(sa->enc_name_buf), "%s", aead.alg_name);
		sa->enc_name = sa->enc_name_buf;
		sa->aead = true;
		sa->icv_bits = aead.alg_icv_len;
	}
	if (tb[XFRMA_ALG_CRYPT]) {
		struct xfrm_algo crypt;

		r = xfrm_algo_get(tb[XFRMA_ALG_CRYPT], &crypt, &ekey, &elen);
		if (r < 0)
			return r;
		snprintf(sa->enc_name_buf, sizeof(sa->enc_name_buf), "%s", crypt.alg_name);
		sa->enc_name = sa->enc_name_buf;
	}
	if (tb[XFRMA_ALG_AUTH_TRUNC]) {
		struct xfrm_algo_auth auth;

		r = xfrm_auth_get(tb[XFRMA_ALG_AUTH_TRUNC], &auth, &akey, &alen);
		if (r < 0)
			return r;
		snprintf(sa->auth_name_buf, sizeof(sa->auth_name_buf), "%s", auth.alg_name);
		sa->auth_name = sa->auth_name_buf;
		sa->icv_bits = auth.alg_trunc_len;
	}
	if (tb[XFRMA_ALG_AUTH]) {
		struct xfrm_algo auth;
		const uint8_t *key;
		size_t len;

		r = xfrm_algo_get(tb[XFRMA_ALG_AUTH], &auth, &key, &len);
		if (r < 0)
			return r;
		if (sa->auth_name) {
			/* Both copies describe one x->aalg: they must agree. */
			if (strcmp(sa->auth_name, auth.alg_name) != 0 || len != alen ||
			    memcmp(key, akey, len) != 0)
				return -EBADMSG;
		} else {
			/* Only an old kernel or a hand-made message: the
			 * truncation is the algorithm's default, unknown here. */
			snprintf(sa->auth_name_buf, sizeof(sa->auth_name_buf), "%s", auth.alg_name);
			sa->auth_name = sa->auth_name_buf;
			sa->icv_bits = 0;
			akey = key;
			alen = len;
		}
	}
	/* The keys themselves are not kept: only their lengths (in bytes) and
	 * one digest over both. */
	sa->enc_key = NULL;
	sa->auth_key = NULL;
	sa->enc_key_len = elen;
	sa->auth_key_len = alen;
	return xfrm_key_digest(ekey, elen, akey, alen, sa->key_digest);
}

/* XFRMA_REPLAY_ESN_VAL as copy_to_user_state_extra sends it (the full
 * bitmap), or in the short form verify_replay also takes from userspace.
 * The kernel sends it with usersa_info.replay_window zero. */
static int xfrm_sa_replay(const xfrm_attrs_t tb, struct xfrm_sa *sa)
{
	struct xfrm_replay_state_esn esn;
	size_t len;

	if (!tb[XFRMA_REPLAY_ESN_VAL])
		return 0;
	len = xfrm_attr_len(tb[XFRMA_REPLAY_ESN_VAL]);
	memcpy(&esn, xfrm_attr_data(tb[XFRMA_REPLAY_ESN_VAL]), sizeof(esn));
	if (esn.bmp_len > XFRM_ESN_BMP_MAX)
		return -EBADMSG;
	if (len != sizeof(esn) && len < sizeof(esn) + (size_t)esn.bmp_len * sizeof(uint32_t))
		return -EBADMSG;
	if (esn.replay_window > esn.bmp_len * 32 || sa->replay_window != 0)
		return -EBADMSG;
	sa->has_replay_esn = true;
	sa->replay_esn_window = esn.replay_window;
	/* replay_window is the SA's window whichever way the kernel holds it,
	 * so that what xfrm_build_newsa took comes back the same. */
	sa->replay_window = esn.replay_window;
	return 0;
}

static int xfrm_sa_from_info(const struct xfrm_usersa_info *info, struct xfrm_sa *sa)
{
	size_t alen;

	if (!xfrm_family_valid(info->family))
		return -EBADMSG;
	memset(sa, 0, sizeof(*sa));
	alen = xfrm_addr_len(info->family);
	sa->family = (uint8_t)info->family;
	memcpy(&sa->dst, &info->id.daddr, alen);
	memcpy(&sa->src, &info->saddr, alen);
	sa->spi = ntohl(info->id.spi);
	sa->proto = info->id.proto;
	sa->mode = info->mode;
	sa->reqid = info->reqid;
	sa->replay_window = info->replay_window;
	sa->flags = info->flags;
	sa->lft = info->lft;
	sa->cur = info->curlft;
	return 0;
}

int xfrm_sa_parse(const struct nlmsghdr *nlh, struct xfrm_sa *ret)
{
	struct xfrm_usersa_info info;
	xfrm_attrs_t tb;
	int r;

	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN)
		return -EBADMSG;
	switch (nlh->nlmsg_type) {
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA:
		r = xfrm_attrs_index(nlh, sizeof(info), tb);
		if (r < 0)
			return r;
		memcpy(&info, mnl_nlmsg_get_payload(nlh), sizeof(info));
		break;
	case XFRM_MSG_DELSA: {
		/* xfrm_notify_sa: for DELSA the fixed header is only the
		 * xfrm_usersa_id, the whole xfrm_usersa_info follows in
		 * XFRMA_SA, and the algorithms etc. come after it at the top
		 * level. A DELSA without XFRMA_SA is a request, not an event. */
		struct xfrm_usersa_id id;

		r = xfrm_attrs_index(nlh, sizeof(id), tb);
		if (r < 0)
			return r;
		if (!tb[XFRMA_SA])
			return -EBADMSG;
		memcpy(&id, mnl_nlmsg_get_payload(nlh), sizeof(id));
		memcpy(&info, xfrm_attr_data(tb[XFRMA_SA]), sizeof(info));
		if (id.spi != info.id.spi || id.proto != info.id.proto ||
		    id.family != info.family ||
		    memcmp(&id.daddr, &info.id.daddr, sizeof(id.daddr)) != 0)
			return -EBADMSG;
		break;
	}
	default:
		return -EINVAL;
	}
	r = xfrm_sa_from_info(&info, ret);
	if (r < 0)
		return r;
	r = xfrm_sa_replay(tb, ret);
	if (r >= 0)
		r = xfrm_sa_algs(tb, ret);
	if (r < 0) {
		memset(ret, 0, sizeof(*ret));
		return r;
	}
	return 0;
}

int xfrm_expire_parse(const struct nlmsghdr *nlh, struct xfrm_sa *ret, bool *ret_hard)
{
	struct xfrm_user_expire ue;
	xfrm_attrs_t tb;
	int r;

	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN)
		return -EBADMSG;
	if (nlh->nlmsg_type != XFRM_MSG_EXPIRE)
		return -EINVAL;
	/* build_expire: struct xfrm_user_expire, then only XFRMA_MARK and
	 * XFRMA_IF_ID; no algorithms, so no names and no key digest. */
	r = xfrm_attrs_index(nlh, sizeof(ue), tb);
	if (r < 0)
		return r;
	memcpy(&ue, mnl_nlmsg_get_payload(nlh), sizeof(ue));
	r = xfrm_sa_from_info(&ue.state, ret);
	if (r < 0)
		return r;
	*ret_hard = ue.hard != 0;
	return 0;
}

static int xfrm_policy_from_info(const struct xfrm_userpolicy_info *info, const xfrm_attrs_t tb,
				 struct xfrm_policy *p)
{
	if (!xfrm_family_valid(info->sel.family))
		return -EBADMSG;
	memset(p, 0, sizeof(*p));
	p->family = (uint8_t)info->sel.family;
	p->sel = info->sel;
	p->dir = info->dir;
	p->priority = info->priority;
	p->index = info->index;
	p->action = info->action;
	if (tb[XFRMA_TMPL]) {
		size_t len = xfrm_attr_len(tb[XFRMA_TMPL]);

		/* copy_to_user_tmpl: an array of whole templates, and no
		 * attribute at all for a policy without one. */
		if (len % sizeof(struct xfrm_user_tmpl) != 0)
			return -EBADMSG;
		/* A bundle (say, IPComp inside ESP) is not something this
		 * structure can hold; refusing it keeps such a policy from
		 * passing for a one-template policy. */
		if (len != sizeof(struct xfrm_user_tmpl))
			return -EOPNOTSUPP;
		memcpy(&p->tmpl, xfrm_attr_data(tb[XFRMA_TMPL]), sizeof(p->tmpl));
		p->has_tmpl = true;
	}
	return 0;
}

int xfrm_policy_parse(const struct nlmsghdr *nlh, struct xfrm_policy *ret)
{
	struct xfrm_userpolicy_info info;
	xfrm_attrs_t tb;
	int r;

	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN)
		return -EBADMSG;
	switch (nlh->nlmsg_type) {
	case XFRM_MSG_NEWPOLICY:
	case XFRM_MSG_UPDPOLICY:
		r = xfrm_attrs_index(nlh, sizeof(info), tb);
		if (r < 0)
			return r;
		memcpy(&info, mnl_nlmsg_get_payload(nlh), sizeof(info));
		break;
	case XFRM_MSG_DELPOLICY: {
		/* xfrm_notify_policy: for DELPOLICY the header is the
		 * xfrm_userpolicy_id that was asked for (the selector, or only
		 * the index when deleted by index) and the policy follows in
		 * XFRMA_POLICY, its templates at the top level. */
		struct xfrm_userpolicy_id id;

		r = xfrm_attrs_index(nlh, sizeof(id), tb);
		if (r < 0)
			return r;
		if (!tb[XFRMA_POLICY])
			return -EBADMSG;
		memcpy(&id, mnl_nlmsg_get_payload(nlh), sizeof(id));
		memcpy(&info, xfrm_attr_data(tb[XFRMA_POLICY]), sizeof(info));
		if (id.dir != info.dir)
			return -EBADMSG;
		if (id.index != 0 ? id.index != info.index
				  : memcmp(&id.sel, &info.sel, sizeof(id.sel)) != 0)
			return -EBADMSG;
		break;
	}
	default:
		return -EINVAL;
	}
	return xfrm_policy_from_info(&info, tb, ret);
}

/* --- describing ---------------------------------------------------------- */

struct xfrm_out {
	char *buf;
	size_t len;
	size_t off;
};

static void xfrm_out_init(struct xfrm_out *o, char *buf, size_t len)
{
	*o = (struct xfrm_out){.buf = buf, .len = len};
	if (len > 0)
		buf[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static void xfrm_out(struct xfrm_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len == 0 || o->off + 1 >= o->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->off, o->len - o->off, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->off = (size_t)n >= o->len - o->off ? o->len - 1 : o->off + (size_t)n;
}

/* An algorithm name as the kernel or a peer sent it, kept to one line of
 * printable text. */
static void xfrm_out_name(struct xfrm_out *o, const char *name, size_t max)
{
	char clean[XFRM_ALG_NAME_LEN];
	size_t i;

	for (i = 0; i < max && i + 1 < sizeof(clean) && name[i] != '\0'; i++)
		clean[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
	clean[i] = '\0';
	xfrm_out(o, "%s", clean);
}

static void xfrm_out_addr(struct xfrm_out *o, uint8_t family, const void *addr)
{
	char s[INET6_ADDRSTRLEN];
	uint8_t a[16];

	memcpy(a, addr, xfrm_addr_len(family));
	if (!xfrm_family_valid(family) || !inet_ntop(family, a, s, sizeof(s)))
		snprintf(s, sizeof(s), "?");
	xfrm_out(o, "%s", s);
}

static const char *xfrm_proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_ESP:
		return "esp";
	case IPPROTO_AH:
		return "ah";
	case IPPROTO_COMP:
		return "comp";
	}
	return NULL;
}

static void xfrm_out_proto(struct xfrm_out *o, uint8_t proto)
{
	const char *n = xfrm_proto_name(proto);

	if (n)
		xfrm_out(o, "%s", n);
	else
		xfrm_out(o, "proto %u", proto);
}

static void xfrm_out_mode(struct xfrm_out *o, uint8_t mode)
{
	static const char *const names[] = {
	    [XFRM_MODE_TRANSPORT] = "transport",
	    [XFRM_MODE_TUNNEL] = "tunnel",
	    [XFRM_MODE_ROUTEOPTIMIZATION] = "ro",
	    [XFRM_MODE_IN_TRIGGER] = "in_trigger",
	    [XFRM_MODE_BEET] = "beet",
	};

	if (mode < sizeof(names) / sizeof(names[0]) && names[mode])
		xfrm_out(o, "mode %s", names[mode]);
	else
		xfrm_out(o, "mode %u", mode);
}

static void xfrm_out_limits(struct xfrm_out *o, const char *what, uint64_t bytes, uint64_t packets,
			    uint64_t add, uint64_t use)
{
	const char *sep = "";

	xfrm_out(o, " %s ", what);
	if (packets != XFRM_INF) {
		xfrm_out(o, "%" PRIu64 "p", packets);
		sep = ",";
	}
	if (bytes != XFRM_INF) {
		xfrm_out(o, "%s%" PRIu64 "B", sep, bytes);
		sep = ",";
	}
	if (add != 0) {
		xfrm_out(o, "%sadd %" PRIu64 "s", sep, add);
		sep = ",";
	}
	if (use != 0) {
		xfrm_out(o, "%suse %" PRIu64 "s", sep, use);
		sep = ",";
	}
	if (sep[0] == '\0')
		xfrm_out(o, "inf");
}

void xfrm_sa_describe(const struct xfrm_sa *sa, char *buf, size_t len)
{
	const struct xfrm_lifetime_cfg *l = &sa->lft;
	/* A decoded SA has its names in its own buffers: read those, so that
	 * a copy of the struct, whose enc_name still points into the original
	 * (perhaps a dead stack frame by now), never follows that pointer. */
	const char *enc = sa->enc_name && sa->enc_name_buf[0] ? sa->enc_name_buf : sa->enc_name;
	const char *auth =
	    sa->auth_name && sa->auth_name_buf[0] ? sa->auth_name_buf : sa->auth_name;
	struct xfrm_out o;

	xfrm_out_init(&o, buf, len);
	xfrm_out_proto(&o, sa->proto);
	xfrm_out(&o, " spi 0x%08" PRIx32 " ", sa->spi);
	xfrm_out_addr(&o, sa->family, &sa->src);
	xfrm_out(&o, " -> ");
	xfrm_out_addr(&o, sa->family, &sa->dst);
	xfrm_out(&o, " reqid %" PRIu32 " ", sa->reqid);
	xfrm_out_mode(&o, sa->mode);
	xfrm_out(&o, " alg ");
	if (enc) {
		xfrm_out_name(&o, enc, XFRM_ALG_NAME_LEN);
		if (sa->aead)
			xfrm_out(&o, "/%u", sa->icv_bits);
	}
	if (auth) {
		xfrm_out(&o, "%s", enc ? " " : "");
		xfrm_out_name(&o, auth, XFRM_ALG_NAME_LEN);
		xfrm_out(&o, "/%u", sa->icv_bits);
	}
	if (!enc && !auth)
		xfrm_out(&o, "none");
	xfrm_out(&o, " replay %" PRIu32 "%s", sa->replay_window,
		 sa->flags & XFRM_STATE_ESN ? " esn" : "");
	if (sa->flags & ~XFRM_STATE_ESN)
		xfrm_out(&o, " flags 0x%x", sa->flags);
	xfrm_out(&o, " lft");
	xfrm_out_limits(&o, "soft", l->soft_byte_limit, l->soft_packet_limit,
			l->soft_add_expires_seconds, l->soft_use_expires_seconds);
	xfrm_out_limits(&o, "hard", l->hard_byte_limit, l->hard_packet_limit,
			l->hard_add_expires_seconds, l->hard_use_expires_seconds);
	xfrm_out(&o, " cur %" PRIu64 "p %" PRIu64 "B", (uint64_t)sa->cur.packets,
		 (uint64_t)sa->cur.bytes);
}

static void xfrm_out_dir(struct xfrm_out *o, uint8_t dir)
{
	static const char *const names[] = {
	    [XFRM_POLICY_IN] = "in",
	    [XFRM_POLICY_OUT] = "out",
	    [XFRM_POLICY_FWD] = "fwd",
	};

	if (dir < sizeof(names) / sizeof(names[0]))
		xfrm_out(o, "dir %s", names[dir]);
	else
		xfrm_out(o, "dir %u", dir);
}

void xfrm_policy_describe(const struct xfrm_policy *p, char *buf, size_t len)
{
	const struct xfrm_selector *s = &p->sel;
	uint8_t family = s->family ? (uint8_t)s->family : p->family;
	struct xfrm_out o;

	xfrm_out_init(&o, buf, len);
	xfrm_out_dir(&o, p->dir);
	xfrm_out(&o, " ");
	xfrm_out_addr(&o, family, &s->saddr);
	xfrm_out(&o, "/%u -> ", s->prefixlen_s);
	xfrm_out_addr(&o, family, &s->daddr);
	xfrm_out(&o, "/%u", s->prefixlen_d);
	if (s->proto)
		xfrm_out(&o, " proto %u", s->proto);
	if (s->sport_mask)
		xfrm_out(&o, " sport %u", ntohs(s->sport));
	if (s->dport_mask)
		xfrm_out(&o, " dport %u", ntohs(s->dport));
	if (s->ifindex)
		xfrm_out(&o, " dev %d", s->ifindex);
	xfrm_out(&o, " priority %" PRIu32, p->priority);
	if (p->index)
		xfrm_out(&o, " index %" PRIu32, p->index);
	if (p->action == XFRM_POLICY_ALLOW)
		xfrm_out(&o, " allow");
	else if (p->action == XFRM_POLICY_BLOCK)
		xfrm_out(&o, " block");
	else
		xfrm_out(&o, " action %u", p->action);
	if (p->has_tmpl) {
		const struct xfrm_user_tmpl *t = &p->tmpl;
		uint8_t tf = t->family ? (uint8_t)t->family : family;

		xfrm_out(&o, " tmpl ");
		xfrm_out_proto(&o, t->id.proto);
		xfrm_out(&o, " ");
		xfrm_out_addr(&o, tf, &t->saddr);
		xfrm_out(&o, " -> ");
		xfrm_out_addr(&o, tf, &t->id.daddr);
		if (t->id.spi)
			xfrm_out(&o, " spi 0x%08" PRIx32, ntohl(t->id.spi));
		xfrm_out(&o, " reqid %" PRIu32 " ", t->reqid);
		xfrm_out_mode(&o, t->mode);
		if (t->optional)
			xfrm_out(&o, " optional");
	}
}

static const char *xfrm_msg_name(uint16_t type)
{
	static const char *const names[] = {
	    [XFRM_MSG_NEWSA - XFRM_MSG_BASE] = "XFRM_MSG_NEWSA",
	    [XFRM_MSG_DELSA - XFRM_MSG_BASE] = "XFRM_MSG_DELSA",
	    [XFRM_MSG_GETSA - XFRM_MSG_BASE] = "XFRM_MSG_GETSA",
	    [XFRM_MSG_NEWPOLICY - XFRM_MSG_BASE] = "XFRM_MSG_NEWPOLICY",
	    [XFRM_MSG_DELPOLICY - XFRM_MSG_BASE] = "XFRM_MSG_DELPOLICY",
	    [XFRM_MSG_GETPOLICY - XFRM_MSG_BASE] = "XFRM_MSG_GETPOLICY",
	    [XFRM_MSG_ALLOCSPI - XFRM_MSG_BASE] = "XFRM_MSG_ALLOCSPI",
	    [XFRM_MSG_ACQUIRE - XFRM_MSG_BASE] = "XFRM_MSG_ACQUIRE",
	    [XFRM_MSG_EXPIRE - XFRM_MSG_BASE] = "XFRM_MSG_EXPIRE",
	    [XFRM_MSG_UPDPOLICY - XFRM_MSG_BASE] = "XFRM_MSG_UPDPOLICY",
	    [XFRM_MSG_UPDSA - XFRM_MSG_BASE] = "XFRM_MSG_UPDSA",
	    [XFRM_MSG_POLEXPIRE - XFRM_MSG_BASE] = "XFRM_MSG_POLEXPIRE",
	    [XFRM_MSG_FLUSHSA - XFRM_MSG_BASE] = "XFRM_MSG_FLUSHSA",
	    [XFRM_MSG_FLUSHPOLICY - XFRM_MSG_BASE] = "XFRM_MSG_FLUSHPOLICY",
	    [XFRM_MSG_NEWAE - XFRM_MSG_BASE] = "XFRM_MSG_NEWAE",
	    [XFRM_MSG_GETAE - XFRM_MSG_BASE] = "XFRM_MSG_GETAE",
	    [XFRM_MSG_REPORT - XFRM_MSG_BASE] = "XFRM_MSG_REPORT",
	    [XFRM_MSG_MIGRATE - XFRM_MSG_BASE] = "XFRM_MSG_MIGRATE",
	    [XFRM_MSG_NEWSADINFO - XFRM_MSG_BASE] = "XFRM_MSG_NEWSADINFO",
	    [XFRM_MSG_GETSADINFO - XFRM_MSG_BASE] = "XFRM_MSG_GETSADINFO",
	    [XFRM_MSG_NEWSPDINFO - XFRM_MSG_BASE] = "XFRM_MSG_NEWSPDINFO",
	    [XFRM_MSG_GETSPDINFO - XFRM_MSG_BASE] = "XFRM_MSG_GETSPDINFO",
	    [XFRM_MSG_MAPPING - XFRM_MSG_BASE] = "XFRM_MSG_MAPPING",
	    [XFRM_MSG_SETDEFAULT - XFRM_MSG_BASE] = "XFRM_MSG_SETDEFAULT",
	    [XFRM_MSG_GETDEFAULT - XFRM_MSG_BASE] = "XFRM_MSG_GETDEFAULT",
	};

	if (type >= XFRM_MSG_BASE && type - XFRM_MSG_BASE < (int)(sizeof(names) / sizeof(names[0])))
		return names[type - XFRM_MSG_BASE];
	return NULL;
}

/* The fixed header before the attributes of each message, as the kernel's
 * xfrm_msg_min and its notifiers lay them out. -1: no attributes follow. */
static long xfrm_msg_hdr_len(const struct nlmsghdr *nlh)
{
	switch (nlh->nlmsg_type) {
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA:
		return sizeof(struct xfrm_usersa_info);
	case XFRM_MSG_GETSA:
		/* xfrm_dump_sa reads a dump request's attributes from offset 0. */
		if (nlh->nlmsg_flags & NLM_F_DUMP)
			return 0;
		return sizeof(struct xfrm_usersa_id);
	case XFRM_MSG_DELSA:
		return sizeof(struct xfrm_usersa_id);
	case XFRM_MSG_NEWPOLICY:
	case XFRM_MSG_UPDPOLICY:
		return sizeof(struct xfrm_userpolicy_info);
	case XFRM_MSG_GETPOLICY:
		if (nlh->nlmsg_flags & NLM_F_DUMP)
			return -1;
		return sizeof(struct xfrm_userpolicy_id);
	case XFRM_MSG_DELPOLICY:
	case XFRM_MSG_MIGRATE:
		return sizeof(struct xfrm_userpolicy_id);
	case XFRM_MSG_ALLOCSPI:
		return sizeof(struct xfrm_userspi_info);
	case XFRM_MSG_ACQUIRE:
		return sizeof(struct xfrm_user_acquire);
	case XFRM_MSG_EXPIRE:
		return sizeof(struct xfrm_user_expire);
	case XFRM_MSG_POLEXPIRE:
		return sizeof(struct xfrm_user_polexpire);
	case XFRM_MSG_FLUSHSA:
		return sizeof(struct xfrm_usersa_flush);
	case XFRM_MSG_FLUSHPOLICY:
		return 0;
	case XFRM_MSG_NEWAE:
	case XFRM_MSG_GETAE:
		return sizeof(struct xfrm_aevent_id);
	case XFRM_MSG_REPORT:
		return sizeof(struct xfrm_user_report);
	case XFRM_MSG_MAPPING:
		return sizeof(struct xfrm_user_mapping);
	case XFRM_MSG_NEWSADINFO:
	case XFRM_MSG_GETSADINFO:
	case XFRM_MSG_NEWSPDINFO:
	case XFRM_MSG_GETSPDINFO:
		return sizeof(uint32_t);
	}
	return -1;
}

static const char *xfrm_attr_name(uint16_t type)
{
	static const char *const names[XFRMA_MAX + 1] = {
	    [XFRMA_ALG_AUTH] = "ALG_AUTH",
	    [XFRMA_ALG_CRYPT] = "ALG_CRYPT",
	    [XFRMA_ALG_COMP] = "ALG_COMP",
	    [XFRMA_ENCAP] = "ENCAP",
	    [XFRMA_TMPL] = "TMPL",
	    [XFRMA_SA] = "SA",
	    [XFRMA_POLICY] = "POLICY",
	    [XFRMA_SEC_CTX] = "SEC_CTX",
	    [XFRMA_LTIME_VAL] = "LTIME_VAL",
	    [XFRMA_REPLAY_VAL] = "REPLAY_VAL",
	    [XFRMA_REPLAY_THRESH] = "REPLAY_THRESH",
	    [XFRMA_ETIMER_THRESH] = "ETIMER_THRESH",
	    [XFRMA_SRCADDR] = "SRCADDR",
	    [XFRMA_COADDR] = "COADDR",
	    [XFRMA_LASTUSED] = "LASTUSED",
	    [XFRMA_POLICY_TYPE] = "POLICY_TYPE",
	    [XFRMA_MIGRATE] = "XFRM_MSG_MIGRATE",
	    [XFRMA_ALG_AEAD] = "ALG_AEAD",
	    [XFRMA_KMADDRESS] = "KMADDRESS",
	    [XFRMA_ALG_AUTH_TRUNC] = "ALG_AUTH_TRUNC",
	    [XFRMA_MARK] = "MARK",
	    [XFRMA_TFCPAD] = "TFCPAD",
	    [XFRMA_REPLAY_ESN_VAL] = "REPLAY_ESN_VAL",
	    [XFRMA_SA_EXTRA_FLAGS] = "SA_EXTRA_FLAGS",
	    [XFRMA_PROTO] = "PROTO",
	    [XFRMA_ADDRESS_FILTER] = "ADDRESS_FILTER",
	    [XFRMA_PAD] = "PAD",
	    [XFRMA_OFFLOAD_DEV] = "OFFLOAD_DEV",
	    [XFRMA_SET_MARK] = "SET_MARK",
	    [XFRMA_SET_MARK_MASK] = "SET_MARK_MASK",
	    [XFRMA_IF_ID] = "IF_ID",
	    [XFRMA_MTIMER_THRESH] = "MTIMER_THRESH",
	};

	return type <= XFRMA_MAX ? names[type] : NULL;
}

/* The algorithm attributes: name, key size and ICV/truncation length only.
 * The key bytes are never read here. */
static void xfrm_out_alg(struct xfrm_out *o, const struct nlattr *a, uint16_t type)
{
	const uint8_t *data = xfrm_attr_data(a);
	size_t len = xfrm_attr_len(a), head;
	uint32_t bits, extra = 0;
	bool has_extra = type == XFRMA_ALG_AEAD || type == XFRMA_ALG_AUTH_TRUNC;
	uint64_t bytes;

	head = has_extra ? sizeof(struct xfrm_algo_aead) : sizeof(struct xfrm_algo);
	if (len < head) {
		xfrm_out(o, " <malformed>");
		return;
	}
	memcpy(&bits, data + offsetof(struct xfrm_algo, alg_key_len), sizeof(bits));
	if (has_extra)
		memcpy(&extra, data + sizeof(struct xfrm_algo), sizeof(extra));
	xfrm_out(o, " name ");
	xfrm_out_name(o, (const char *)data, XFRM_ALG_NAME_LEN);
	bytes = ((uint64_t)bits + 7) / 8;
	xfrm_out(o, " key <redacted, %" PRIu64 " bytes>%s", bytes,
		 bytes > len - head ? " <malformed>" : "");
	if (type == XFRMA_ALG_AEAD)
		xfrm_out(o, " icv %" PRIu32, extra);
	else if (type == XFRMA_ALG_AUTH_TRUNC)
		xfrm_out(o, " trunc %" PRIu32, extra);
}

/* Values only of attributes that cannot hold a secret; everything else,
 * including types newer than these headers, is shown by length alone. */
static void xfrm_out_attr_value(struct xfrm_out *o, const struct nlattr *a, uint16_t type)
{
	const uint8_t *data = xfrm_attr_data(a);
	size_t len = xfrm_attr_len(a);
	uint32_t v[6];

	switch (type) {
	case XFRMA_ALG_AUTH:
	case XFRMA_ALG_CRYPT:
	case XFRMA_ALG_COMP:
	case XFRMA_ALG_AEAD:
	case XFRMA_ALG_AUTH_TRUNC:
		xfrm_out_alg(o, a, type);
		return;
	case XFRMA_REPLAY_THRESH:
	case XFRMA_ETIMER_THRESH:
	case XFRMA_TFCPAD:
	case XFRMA_SA_EXTRA_FLAGS:
	case XFRMA_SET_MARK:
	case XFRMA_SET_MARK_MASK:
	case XFRMA_IF_ID:
	case XFRMA_MTIMER_THRESH:
		if (len == sizeof(uint32_t)) {
			memcpy(v, data, sizeof(uint32_t));
			xfrm_out(o, " %" PRIu32, v[0]);
		}
		return;
	case XFRMA_MARK:
		if (len == sizeof(struct xfrm_mark)) {
			memcpy(v, data, sizeof(struct xfrm_mark));
			xfrm_out(o, " 0x%" PRIx32 "/0x%" PRIx32, v[0], v[1]);
		}
		return;
	case XFRMA_PROTO:
		if (len >= 1)
			xfrm_out(o, " %u", data[0]);
		return;
	case XFRMA_REPLAY_ESN_VAL:
		if (len >= sizeof(struct xfrm_replay_state_esn)) {
			struct xfrm_replay_state_esn esn;

			memcpy(&esn, data, sizeof(esn));
			xfrm_out(o, " window %" PRIu32 " bmp_len %" PRIu32, esn.replay_window,
				 esn.bmp_len);
		}
		return;
	}
}

void xfrm_msg_describe(const struct nlmsghdr *nlh, char *buf, size_t len)
{
	const char *name = NULL, *p;
	struct xfrm_out o;
	long hdr;
	size_t off, rem;

	xfrm_out_init(&o, buf, len);
	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN) {
		xfrm_out(&o, "<short message, %" PRIu32 " bytes>", nlh->nlmsg_len);
		return;
	}
	switch (nlh->nlmsg_type) {
	case NLMSG_ERROR:
		name = "NLMSG_ERROR";
		break;
	case NLMSG_DONE:
		name = "NLMSG_DONE";
		break;
	default:
		name = xfrm_msg_name(nlh->nlmsg_type);
	}
	if (name)
		xfrm_out(&o, "%s", name);
	else
		xfrm_out(&o, "type %u", nlh->nlmsg_type);
	xfrm_out(&o, " len %" PRIu32 " flags 0x%x", nlh->nlmsg_len, nlh->nlmsg_flags);
	hdr = xfrm_msg_hdr_len(nlh);
	if (hdr < 0)
		return;
	off = MNL_NLMSG_HDRLEN + MNL_ALIGN((size_t)hdr);
	if (nlh->nlmsg_len < off) {
		xfrm_out(&o, " <short, header is %ld bytes>", hdr);
		return;
	}
	if (hdr > 0)
		xfrm_out(&o, " hdr %ld", hdr);
	p = (const char *)nlh + off;
	rem = nlh->nlmsg_len - off;
	while (rem > 0) {
		const struct nlattr *a = (const void *)p;
		const char *an;
		uint16_t type;
		size_t step;

		if (rem < MNL_ATTR_HDRLEN || a->nla_len < MNL_ATTR_HDRLEN || a->nla_len > rem) {
			xfrm_out(&o, " | <malformed, %zu bytes left>", rem);
			return;
		}
		type = a->nla_type & NLA_TYPE_MASK;
		an = xfrm_attr_name(type);
		if (an)
			xfrm_out(&o, " | XFRMA_%s len %u", an, a->nla_len);
		else
			xfrm_out(&o, " | attr %u len %u", type, a->nla_len);
		xfrm_out_attr_value(&o, a, type);
		step = MNL_ALIGN((size_t)a->nla_len);
		if (step >= rem)
			break;
		p += step;
		rem -= step;
	}
}
