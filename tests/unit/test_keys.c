/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "keys.h"

/* The derivation vectors come from scripts/kdf_vectors.py, an HKDF written
 * from RFC 5869 on Python's hmac module: an implementation that shares
 * nothing with keys.c, which uses OpenSSL. docs/key-derivation.md lists the
 * same vectors. */
struct vector {
	const char *secret;
	const char *name;
	uint32_t number;
	int family;
	const char *src;
	const char *dst;
	uint64_t generation;
	enum keys_algorithm algorithm;
	const char *info;
	const char *output;
};

/* Produced by scripts/kdf_vectors.py --c. */
static const struct vector vectors[] = {
    {
	.secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	.name = "site-a",
	.number = 1u,
	.family = AF_INET,
	.src = "192.0.2.1",
	.dst = "198.51.100.2",
	.generation = UINT64_C(0),
	.algorithm = KEYS_ALG_AES_GCM_128,
	.info = "746f6b656e642d73612d763106736974652d610000000104c0000201c6336402"
		"000000000000000001",
	.output = "e808071d22dae825fcd54deb34b7243a2641d55c",
    },
    {
	.secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	.name = "site-a",
	.number = 1u,
	.family = AF_INET,
	.src = "198.51.100.2",
	.dst = "192.0.2.1",
	.generation = UINT64_C(0),
	.algorithm = KEYS_ALG_AES_GCM_128,
	.info = "746f6b656e642d73612d763106736974652d610000000104c6336402c0000201"
		"000000000000000001",
	.output = "1fbf6d22eb5fd9318957851d3339d92363294d73",
    },
    {
	.secret = "6007de7483fed6b3d15053edba89fbe97a8f254a40de431da8fe75e1649423bb"
		  "de1acff6b5ee7c9e7c04855ef959dc775197980a6769dbe17cc8feff57bdd6b2",
	.name = "branch-office-7",
	.number = 65535u,
	.family = AF_INET6,
	.src = "2001:db8::1",
	.dst = "2001:db8:ffff::2",
	.generation = UINT64_C(1099511627781),
	.algorithm = KEYS_ALG_AES_GCM_256,
	.info = "746f6b656e642d73612d76310f6272616e63682d6f66666963652d370000ffff"
		"0620010db800000000000000000000000120010db8ffff000000000000000000"
		"02000001000000000502",
	.output = "c2b3b78b9a99afc6ff690b07d3fb4e2b4534b627b3dea13c061b56c93263575a"
		  "91e0eae1",
    },
    {
	.secret = "6007de7483fed6b3d15053edba89fbe97a8f254a40de431da8fe75e1649423bb"
		  "de1acff6b5ee7c9e7c04855ef959dc775197980a6769dbe17cc8feff57bdd6b2",
	.name = "dc1-dc2",
	.number = 300u,
	.family = AF_INET,
	.src = "203.0.113.77",
	.dst = "10.1.2.3",
	.generation = UINT64_C(1099511627781),
	.algorithm = KEYS_ALG_AES_CBC_HMAC_SHA256,
	.info = "746f6b656e642d73612d7631076463312d6463320000012c04cb00714d0a0102"
		"03000001000000000503",
	.output = "0e4b043d12e9b090ba963ce1a794078bdc27dc97b78bf34d375d9cb3f7c2e241"
		  "0b8cb81dbd2a1e71e1d4141f13236d591b9130fd84ae16152d66f777f40ddffb",
    },
    {
	.secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	.name = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn-------------------------------z",
	.number = 305419896u,
	.family = AF_INET6,
	.src = "fe80::1",
	.dst = "2001:db8:0:1::abcd",
	.generation = UINT64_C(0),
	.algorithm = KEYS_ALG_AES_CBC_HMAC_SHA256,
	.info = "746f6b656e642d73612d7631406e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e"
		"6e6e6e6e6e6e6e6e6e6e6e6e6e2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d"
		"2d2d2d2d2d2d2d2d2d2d2d2d7a1234567806fe80000000000000000000000000"
		"000120010db800000001000000000000abcd000000000000000003",
	.output = "c19e0b80f8d6ea291290e524ae82207482cc82eace58e1a14756fcc4de131ba7"
		  "53d8d1860c578d1d07233b50553cee39c6dde45576bb4c57fbcdc3001833c8fa",
    },
    {
	.secret = "6007de7483fed6b3d15053edba89fbe97a8f254a40de431da8fe75e1649423bb"
		  "de1acff6b5ee7c9e7c04855ef959dc775197980a6769dbe17cc8feff57bdd6b2",
	.name = "x",
	.number = 4294967295u,
	.family = AF_INET,
	.src = "0.0.0.0",
	.dst = "255.255.255.255",
	.generation = UINT64_C(18446744073709551615),
	.algorithm = KEYS_ALG_AES_GCM_256,
	.info = "746f6b656e642d73612d76310178ffffffff0400000000ffffffffffffffffff"
		"ffffff02",
	.output = "46a9dd688d216d808a690c10d5b851904c5b47952ba75579fef85365b93e6031"
		  "5875d32a",
    },
};
static const char fingerprint_a[] = "f9b2424594c3d3c7";
static const char fingerprint_b[] = "e2c0a453923605c6";

/* Secrets for the file tests, made up for them; the messages are checked to
 * contain none of their digits. */
#define HEX32 "67f2c34c7dac8f16e4646aaca806cc6feb2be9e2266d600632a4355156c8028a"
#define HEX64                                                                                      \
	"9e32bb70fcbf5040404eb6005626323741fe95b5b60e239918e539ab4c1a76b1"                         \
	"d1c0acd09b390a6ef857f6f57ec840306af5e61f29d51ef7c7d8542946799fef"

/* Every test works in a fresh temporary directory, removed afterwards. */
static char tmpdir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/tokend-test-keys-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	unsetenv("CREDENTIALS_DIRECTORY");
}

static void teardown(void)
{
	/* Without fork (CK_FORK=no, valgrind) the environment is shared. */
	unsetenv("CREDENTIALS_DIRECTORY");
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t unhex(const char *hex, uint8_t *out, size_t size)
{
	size_t n = strlen(hex) / 2;

	ck_assert_uint_eq(strlen(hex) % 2, 0);
	ck_assert_uint_le(n, size);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void tohex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

static struct keys_secret *secret_hex(const char *hex)
{
	uint8_t b[KEYS_SECRET_MAX];
	struct keys_secret *s = NULL;
	size_t n = unhex(hex, b, sizeof(b));
	int r;

	r = keys_secret_from_bytes(b, n, &s);
	ck_assert_int_eq(r, 0);
	ck_assert_ptr_nonnull(s);
	keys_wipe(b, sizeof(b));
	return s;
}

/* A path in the test directory. */
static const char *tpath(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return p;
}

static void write_bytes(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	/* fchmod, not the creation mode: the umask must not decide the test. */
	ck_assert_int_eq(fchmod(fd, mode), 0);
	ck_assert_int_eq(close(fd), 0);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	write_bytes(path, text, strlen(text), mode);
}

/* Give the file the access ACL systemd gives a credential: mode 0400 plus
 * a named entry (tag 2 user, or tag 8 group) with id and read permission,
 * and a mask r-- (so stat shows 0440). Written as the kernel's xattr. */
static void set_acl(const char *path, unsigned tag, uint32_t id)
{
	/* Entries in the kernel's order: by tag. */
	const bool user = tag == 2;
	const uint16_t e[][2] = {{0x01, 4},
				 {user ? (uint16_t)tag : 0x04, user ? 4 : 0},
				 {user ? 0x04 : (uint16_t)tag, user ? 0 : 4},
				 {0x10, 4},
				 {0x20, 0}};
	const uint32_t ids[] = {0xffffffffu, user ? id : 0xffffffffu, user ? 0xffffffffu : id,
				0xffffffffu, 0xffffffffu};
	unsigned char buf[4 + 8 * 5];

	memset(buf, 0, sizeof(buf));
	buf[0] = 2; /* version, little endian */
	for (int i = 0; i < 5; i++) {
		unsigned char *p = buf + 4 + 8 * i;
		p[0] = (unsigned char)e[i][0];
		p[2] = (unsigned char)e[i][1];
		for (int b = 0; b < 4; b++)
			p[4 + b] = (unsigned char)(ids[i] >> (8 * b));
	}
	ck_assert_msg(setxattr(path, "system.posix_acl_access", buf, sizeof(buf), 0) == 0,
		      "%s: setxattr: %s", path, strerror(errno));
}

/* No 8 consecutive characters of the file's text appear in the message. */
static void assert_no_content(const char *msg, const char *content)
{
	size_t n = strlen(content);

	for (size_t i = 0; i + 8 <= n; i++) {
		char w[9];

		memcpy(w, content + i, 8);
		w[8] = '\0';
		ck_assert_msg(strstr(msg, w) == NULL, "message \"%s\" quotes the file (\"%s\")",
			      msg, w);
	}
}

/* Loading fails with r; the message names the file, says what, and quotes
 * nothing of the content. Returns nothing: the message is freed here. */
static void load_fails(const char *path, int expect, const char *what, const char *content)
{
	struct keys_secret *s = (struct keys_secret *)1;
	char *err = NULL;
	int r;

	r = keys_secret_load(path, &s, &err);
	ck_assert_int_eq(r, expect);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
		      "message \"%s\" does not start with the file name", err);
	ck_assert_msg(strstr(err, what) != NULL, "message \"%s\" lacks \"%s\"", err, what);
	if (content) {
		assert_no_content(err, content);
		ck_assert_ptr_null(strstr(err, HEX32));
		ck_assert_ptr_null(strstr(err, HEX64));
	}
	free(err);

	/* The message is optional. */
	r = keys_secret_load(path, &s, NULL);
	ck_assert_int_eq(r, expect);
	ck_assert_ptr_null(s);
}

static struct keys_secret *load_ok(const char *path)
{
	struct keys_secret *s = NULL;
	char *err = NULL;
	int r;

	r = keys_secret_load(path, &s, &err);
	ck_assert_msg(r == 0, "%s: %d: %s", path, r, err ? err : "(no message)");
	ck_assert_ptr_null(err);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void fingerprint_eq(const struct keys_secret *a, const struct keys_secret *b)
{
	char fa[17], fb[17];

	keys_secret_fingerprint(a, fa);
	keys_secret_fingerprint(b, fb);
	ck_assert_str_eq(fa, fb);
}

/* A context for vector v; the addresses live in the caller's buffers. */
static struct keys_context vector_ctx(const struct vector *v, uint8_t src[16], uint8_t dst[16])
{
	struct keys_context c = {
	    .name = v->name,
	    .number = v->number,
	    .family = v->family,
	    .src = src,
	    .dst = dst,
	    .generation = v->generation,
	    .algorithm = v->algorithm,
	};

	ck_assert_int_eq(inet_pton(v->family, v->src, src), 1);
	ck_assert_int_eq(inet_pton(v->family, v->dst, dst), 1);
	return c;
}

START_TEST(test_vectors)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		uint8_t src[16], dst[16], out[KEYS_MATERIAL_MAX];
		char hex[2 * KEYS_MATERIAL_MAX + 1];
		struct keys_secret *s = secret_hex(v->secret);
		struct keys_context c = vector_ctx(v, src, dst);
		size_t len = 0;
		int r;

		memset(out, 0xa5, sizeof(out));
		r = keys_derive(s, &c, out, &len);
		ck_assert_int_eq(r, 0);
		ck_assert_uint_eq(len, strlen(v->output) / 2);
		ck_assert_uint_eq(len, keys_material_len(keys_algorithm_by_id(v->algorithm)));
		tohex(out, len, hex);
		ck_assert_msg(strcmp(hex, v->output) == 0, "vector %zu: got %s, expected %s", i + 1,
			      hex, v->output);
		/* Nothing written past L. */
		for (size_t k = len; k < sizeof(out); k++)
			ck_assert_uint_eq(out[k], 0xa5);
		keys_wipe(out, sizeof(out));
		keys_secret_free(s);
	}
}
END_TEST

/* The vectors' info bytes and outputs agree under OpenSSL's HKDF through
 * another interface than keys.c uses (EVP_PKEY rather than EVP_KDF). Should
 * test_vectors fail, this tells whether the info layout or HKDF differs. */
START_TEST(test_vectors_info)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		uint8_t key[KEYS_SECRET_MAX], info[256], out[KEYS_MATERIAL_MAX];
		char hex[2 * KEYS_MATERIAL_MAX + 1];
		size_t klen = unhex(v->secret, key, sizeof(key));
		size_t ilen = unhex(v->info, info, sizeof(info));
		size_t olen = strlen(v->output) / 2;
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);

		ck_assert_ptr_nonnull(pc);
		ck_assert_int_eq(EVP_PKEY_derive_init(pc), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_set1_hkdf_key(pc, key, (int)klen), 1);
		ck_assert_int_eq(EVP_PKEY_CTX_add1_hkdf_info(pc, info, (int)ilen), 1);
		ck_assert_int_eq(EVP_PKEY_derive(pc, out, &olen), 1);
		EVP_PKEY_CTX_free(pc);
		tohex(out, olen, hex);
		ck_assert_str_eq(hex, v->output);

		/* The info begins with the label and ends with the algorithm id. */
		ck_assert_mem_eq(info, "tokend-sa-v1", 12);
		ck_assert_uint_eq(info[ilen - 1], (unsigned)v->algorithm);
		ck_assert_uint_eq(ilen, 12 + 1 + strlen(v->name) + 4 + 1 +
					    (v->family == AF_INET ? 8 : 32) + 8 + 1);
	}
}
END_TEST

/* Derive from vector 1 with one change; the result as hex. */
static void derive_hex(const struct keys_secret *s, const struct keys_context *c, char *hex)
{
	uint8_t out[KEYS_MATERIAL_MAX];
	size_t len = 0;
	int r;

	r = keys_derive(s, c, out, &len);
	ck_assert_int_eq(r, 0);
	tohex(out, len, hex);
	keys_wipe(out, sizeof(out));
}

START_TEST(test_inputs_matter)
{
	const struct vector *v = &vectors[0];
	char base[2 * KEYS_MATERIAL_MAX + 1], other[2 * KEYS_MATERIAL_MAX + 1];
	uint8_t src[16], dst[16], src6[16], dst6[16];
	struct keys_secret *s = secret_hex(v->secret), *s2 = secret_hex(HEX32);
	struct keys_context c = vector_ctx(v, src, dst), d;

	derive_hex(s, &c, base);
	ck_assert_str_eq(base, v->output);
	/* Same inputs, same key: nothing but the inputs goes in. */
	derive_hex(s, &c, other);
	ck_assert_str_eq(base, other);

	d = c;
	d.generation = 1;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	d = c;
	d.generation = UINT64_C(1) << 40;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	d = c;
	d.src = dst;
	d.dst = src;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);
	ck_assert_str_eq(other, vectors[1].output);

	d = c;
	d.number = 2;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	d = c;
	d.number = 1u << 24;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	d = c;
	d.name = "site-b";
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	d = c;
	d.name = "site-";
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	/* HKDF's output for a longer L starts with the shorter one; the
	 * algorithm id in the info is what keeps them apart. */
	d = c;
	d.algorithm = KEYS_ALG_AES_GCM_256;
	derive_hex(s, &d, other);
	ck_assert_uint_eq(strlen(other), 72);
	ck_assert(strncmp(base, other, strlen(base)) != 0);

	d = c;
	d.algorithm = KEYS_ALG_AES_CBC_HMAC_SHA256;
	derive_hex(s, &d, other);
	ck_assert_uint_eq(strlen(other), 128);
	ck_assert(strncmp(base, other, strlen(base)) != 0);

	/* The same addresses as IPv4-mapped IPv6 are another family. */
	memset(src6, 0, sizeof(src6));
	memset(dst6, 0, sizeof(dst6));
	src6[10] = src6[11] = dst6[10] = dst6[11] = 0xff;
	memcpy(src6 + 12, src, 4);
	memcpy(dst6 + 12, dst, 4);
	d = c;
	d.family = AF_INET6;
	d.src = src6;
	d.dst = dst6;
	derive_hex(s, &d, other);
	ck_assert_str_ne(base, other);

	derive_hex(s2, &c, other);
	ck_assert_str_ne(base, other);

	keys_secret_free(s);
	keys_secret_free(s2);
}
END_TEST

START_TEST(test_derive_validation)
{
	const struct vector *v = &vectors[0];
	uint8_t src[16], dst[16], out[KEYS_MATERIAL_MAX];
	char name64[65], name65[66];
	struct keys_secret *s = secret_hex(v->secret);
	struct keys_context c = vector_ctx(v, src, dst), d;
	size_t len = 99;
	int r;

	memset(name64, 'n', 64);
	name64[64] = '\0';
	memset(name65, 'n', 65);
	name65[65] = '\0';

	d = c;
	d.name = name64;
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(len, 20);

	d = c;
	d.name = name65;
	len = 99;
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_uint_eq(len, 0);

	d = c;
	d.name = "";
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, -EINVAL);

	d = c;
	d.name = NULL;
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, -EINVAL);

	const int families[] = {AF_UNSPEC, AF_UNIX, AF_PACKET, 4, 6, -1};
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		d = c;
		d.family = families[i];
		r = keys_derive(s, &d, out, &len);
		ck_assert_int_eq(r, -EINVAL);
	}

	const int algorithms[] = {0, 4, 255, -1};
	for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]); i++) {
		d = c;
		d.algorithm = (enum keys_algorithm)algorithms[i];
		r = keys_derive(s, &d, out, &len);
		ck_assert_int_eq(r, -EINVAL);
	}

	d = c;
	d.src = NULL;
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, -EINVAL);
	d = c;
	d.dst = NULL;
	r = keys_derive(s, &d, out, &len);
	ck_assert_int_eq(r, -EINVAL);

	r = keys_derive(NULL, &c, out, &len);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_derive(s, NULL, out, &len);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_derive(s, &c, NULL, &len);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_derive(s, &c, out, NULL);
	ck_assert_int_eq(r, -EINVAL);

	/* Still fine after all that. */
	r = keys_derive(s, &c, out, &len);
	ck_assert_int_eq(r, 0);
	keys_wipe(out, sizeof(out));
	keys_secret_free(s);
}
END_TEST

START_TEST(test_algorithms)
{
	const struct keys_algorithm_info *a;

	a = keys_algorithm_by_name("aes-gcm-128");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, keys_algorithm_by_id(KEYS_ALG_AES_GCM_128));
	ck_assert_int_eq(a->id, KEYS_ALG_AES_GCM_128);
	ck_assert_str_eq(a->kernel_enc, "rfc4106(gcm(aes))");
	ck_assert_ptr_null(a->kernel_auth);
	ck_assert(a->aead);
	ck_assert_uint_eq(a->enc_key_len, 20);
	ck_assert_uint_eq(a->auth_key_len, 0);
	ck_assert_uint_eq(a->icv_bits, 128);
	ck_assert_uint_eq(keys_material_len(a), 20);

	a = keys_algorithm_by_name("aes-gcm-256");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, keys_algorithm_by_id(KEYS_ALG_AES_GCM_256));
	ck_assert_str_eq(a->kernel_enc, "rfc4106(gcm(aes))");
	ck_assert_ptr_null(a->kernel_auth);
	ck_assert(a->aead);
	ck_assert_uint_eq(a->enc_key_len, 36);
	ck_assert_uint_eq(a->auth_key_len, 0);
	ck_assert_uint_eq(a->icv_bits, 128);
	ck_assert_uint_eq(keys_material_len(a), 36);

	a = keys_algorithm_by_name("aes-cbc-hmac-sha256");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, keys_algorithm_by_id(KEYS_ALG_AES_CBC_HMAC_SHA256));
	ck_assert_str_eq(a->kernel_enc, "cbc(aes)");
	ck_assert_str_eq(a->kernel_auth, "hmac(sha256)");
	ck_assert(!a->aead);
	ck_assert_uint_eq(a->enc_key_len, 32);
	ck_assert_uint_eq(a->auth_key_len, 32);
	ck_assert_uint_eq(a->icv_bits, 128);
	ck_assert_uint_eq(keys_material_len(a), 64);
	ck_assert_uint_le(keys_material_len(a), KEYS_MATERIAL_MAX);

	ck_assert_ptr_null(keys_algorithm_by_name("AES-GCM-128"));
	ck_assert_ptr_null(keys_algorithm_by_name("aes-gcm"));
	ck_assert_ptr_null(keys_algorithm_by_name(""));
	ck_assert_ptr_null(keys_algorithm_by_name(NULL));
	ck_assert_ptr_null(keys_algorithm_by_id((enum keys_algorithm)0));
	ck_assert_ptr_null(keys_algorithm_by_id((enum keys_algorithm)4));
	ck_assert_uint_eq(keys_material_len(NULL), 0);
}
END_TEST

START_TEST(test_from_bytes)
{
	uint8_t b[KEYS_SECRET_MAX + 1];
	struct keys_secret *s = (struct keys_secret *)1;
	int r;

	memset(b, 0x5a, sizeof(b));
	r = keys_secret_from_bytes(b, 31, &s);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(s);
	r = keys_secret_from_bytes(b, 0, &s);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_secret_from_bytes(b, 65, &s);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_secret_from_bytes(NULL, 32, &s);
	ck_assert_int_eq(r, -EINVAL);
	r = keys_secret_from_bytes(b, 32, NULL);
	ck_assert_int_eq(r, -EINVAL);

	for (size_t n = KEYS_SECRET_MIN; n <= KEYS_SECRET_MAX; n++) {
		r = keys_secret_from_bytes(b, n, &s);
		ck_assert_int_eq(r, 0);
		ck_assert_ptr_nonnull(s);
		keys_secret_free(s);
	}
	keys_secret_free(NULL);
}
END_TEST

START_TEST(test_fingerprint)
{
	struct keys_secret *a = secret_hex(vectors[0].secret), *b = secret_hex(vectors[2].secret);
	struct keys_secret *a2 = secret_hex(vectors[0].secret);
	char f1[17], f2[17];

	memset(f1, 'x', sizeof(f1));
	keys_secret_fingerprint(a, f1);
	ck_assert_uint_eq(strlen(f1), 16);
	ck_assert_uint_eq(strspn(f1, "0123456789abcdef"), 16);
	/* The values scripts/kdf_vectors.py computes. */
	ck_assert_str_eq(f1, fingerprint_a);
	keys_secret_fingerprint(a, f2);
	ck_assert_str_eq(f1, f2);
	keys_secret_fingerprint(a2, f2);
	ck_assert_str_eq(f1, f2);
	keys_secret_fingerprint(b, f2);
	ck_assert_str_eq(f2, fingerprint_b);
	ck_assert_str_ne(f1, f2);
	/* Not a prefix of the secret. */
	ck_assert(strncmp(f1, vectors[0].secret, 16) != 0);

	keys_secret_free(a);
	keys_secret_free(a2);
	keys_secret_free(b);
}
END_TEST

/* AddressSanitizer replaces mlock() with a no-op, so nothing is locked there. */
#if defined(__SANITIZE_ADDRESS__)
#define KEYS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEYS_TEST_ASAN 1
#endif
#endif
#ifndef KEYS_TEST_ASAN
#define KEYS_TEST_ASAN 0
#endif

/* The secret lives in its own page-aligned mapping that core dumps leave out
 * (VmFlags "dd" in smaps) and, where RLIMIT_MEMLOCK allows, locked ("lo"). */
START_TEST(test_secret_memory)
{
	struct keys_secret *s = secret_hex(HEX64);
	uintptr_t p = (uintptr_t)s;
	char line[512];
	bool found = false, dd = false, lo = false;
	FILE *f;

	ck_assert_uint_eq(p % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
	f = fopen("/proc/self/smaps", "re");
	if (!f) {
		keys_secret_free(s);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			if (found)
				break;
			found = start <= p && p < end;
			continue;
		}
		if (found && strncmp(line, "VmFlags:", 8) == 0) {
			dd = strstr(line, " dd") != NULL;
			lo = strstr(line, " lo") != NULL;
		}
	}
	fclose(f);
	ck_assert(found);
	ck_assert_msg(dd, "secret memory is not excluded from core dumps");
	if (geteuid() == 0 && !KEYS_TEST_ASAN)
		ck_assert_msg(lo, "secret memory is not locked, although we are root");
	keys_secret_free(s);
}
END_TEST

START_TEST(test_wipe)
{
	uint8_t b[40];

	memset(b, 0xff, sizeof(b));
	keys_wipe(b + 1, 38);
	ck_assert_uint_eq(b[0], 0xff);
	for (size_t i = 1; i < 39; i++)
		ck_assert_uint_eq(b[i], 0);
	ck_assert_uint_eq(b[39], 0xff);
	keys_wipe(NULL, 10);
	keys_wipe(b, 0);
}
END_TEST

START_TEST(test_load_good)
{
	struct keys_secret *want32 = secret_hex(HEX32), *want64 = secret_hex(HEX64), *s;
	char upper[sizeof(HEX64) + 1], mixed[sizeof(HEX32) + 1];
	const struct vector *v = &vectors[3];
	uint8_t src[16], dst[16], out[KEYS_MATERIAL_MAX];
	char hex[2 * KEYS_MATERIAL_MAX + 1];
	struct keys_context c = vector_ctx(v, src, dst);
	size_t len;
	int r;

	write_text(tpath("lower.key"), HEX32, 0600);
	s = load_ok(tpath("lower.key"));
	fingerprint_eq(s, want32);
	keys_secret_free(s);

	write_text(tpath("lower-nl.key"), HEX32 "\n", 0600);
	s = load_ok(tpath("lower-nl.key"));
	fingerprint_eq(s, want32);
	keys_secret_free(s);

	for (size_t i = 0; i <= strlen(HEX64); i++)
		upper[i] = (char)(HEX64[i] >= 'a' && HEX64[i] <= 'f' ? HEX64[i] - 32 : HEX64[i]);
	write_text(tpath("upper.key"), upper, 0600);
	s = load_ok(tpath("upper.key"));
	fingerprint_eq(s, want64);
	keys_secret_free(s);

	strcat(upper, "\n");
	write_text(tpath("upper-nl.key"), upper, 0400);
	s = load_ok(tpath("upper-nl.key"));
	fingerprint_eq(s, want64);
	keys_secret_free(s);

	/* Every other letter upper case. */
	strcpy(mixed, HEX32);
	for (size_t i = 0; mixed[i]; i += 2)
		if (mixed[i] >= 'a' && mixed[i] <= 'f')
			mixed[i] = (char)(mixed[i] - 32);
	write_text(tpath("mixed.key"), mixed, 0600);
	s = load_ok(tpath("mixed.key"));
	fingerprint_eq(s, want32);
	keys_secret_free(s);

	/* A loaded secret derives what the vector says. */
	write_text(tpath("vector.key"), v->secret, 0600);
	s = load_ok(tpath("vector.key"));
	r = keys_derive(s, &c, out, &len);
	ck_assert_int_eq(r, 0);
	tohex(out, len, hex);
	ck_assert_str_eq(hex, v->output);
	keys_wipe(out, sizeof(out));
	keys_secret_free(s);

	/* 33 bytes: any length from 32 to 64 bytes will do. */
	write_text(tpath("33.key"), HEX32 "ab", 0600);
	s = load_ok(tpath("33.key"));
	keys_secret_free(s);

	keys_secret_free(want32);
	keys_secret_free(want64);
}
END_TEST

START_TEST(test_load_permissions)
{
	write_text(tpath("g.key"), HEX32 "\n", 0640);
	load_fails(tpath("g.key"), -EPERM, "permissions 0640 are too open", HEX32);
	load_fails(tpath("g.key"), -EPERM, "chmod 600", HEX32);

	write_text(tpath("o.key"), HEX32 "\n", 0604);
	load_fails(tpath("o.key"), -EPERM, "permissions 0604 are too open", HEX32);

	write_text(tpath("gw.key"), HEX64, 0620);
	load_fails(tpath("gw.key"), -EPERM, "permissions 0620", HEX64);

	write_text(tpath("x.key"), HEX64, 0601);
	load_fails(tpath("x.key"), -EPERM, "permissions 0601", HEX64);

	write_text(tpath("all.key"), HEX64, 0666);
	load_fails(tpath("all.key"), -EPERM, "permissions 0666", HEX64);

	/* Bits above the permissions are shown as they are. */
	write_text(tpath("sgid.key"), HEX64, 02640);
	load_fails(tpath("sgid.key"), -EPERM, "permissions 2640", HEX64);
}
END_TEST

START_TEST(test_load_owner)
{
	char what[128];

	if (geteuid() != 0)
		return; /* only root can give a file away */
	write_text(tpath("theirs.key"), HEX32, 0600);
	ck_assert_int_eq(chown(tpath("theirs.key"), 1000, (gid_t)-1), 0);
	snprintf(what, sizeof(what), "owned by uid 1000, not by uid %u that tokend runs as",
		 (unsigned)geteuid());
	load_fails(tpath("theirs.key"), -EPERM, what, HEX32);
}
END_TEST

START_TEST(test_load_not_regular)
{
	const char *target = tpath("real.key");
	char rel[] = "real.key";

	write_text(target, HEX32, 0600);

	ck_assert_int_eq(symlink(target, tpath("link.key")), 0);
	load_fails(tpath("link.key"), -ELOOP, "not a regular file: a symbolic link", NULL);
	/* Relative or absolute, a link is a link. */
	ck_assert_int_eq(symlink(rel, tpath("rel-link.key")), 0);
	load_fails(tpath("rel-link.key"), -ELOOP, "symbolic link", NULL);

	ck_assert_int_eq(mkdir(tpath("dir.key"), 0700), 0);
	load_fails(tpath("dir.key"), -EISDIR, "not a regular file", NULL);

	/* A FIFO must not block the load (nobody writes to it). */
	ck_assert_int_eq(mkfifo(tpath("fifo.key"), 0600), 0);
	load_fails(tpath("fifo.key"), -EINVAL, "not a regular file", NULL);

	load_fails("/dev/null", -EINVAL, "not a regular file", NULL);
}
END_TEST

START_TEST(test_load_bad_content)
{
	char big[5000], at_limit[4097], binary[33];

	write_text(tpath("short.key"), "a1b2c3d4e5", 0600);
	load_fails(tpath("short.key"), -EINVAL,
		   ": expected 64 to 128 hexadecimal digits (32 to 64 bytes), found 10",
		   "a1b2c3d4e5");

	write_text(tpath("short-nl.key"), "a1b2c3d4e5\n", 0600);
	load_fails(tpath("short-nl.key"), -EINVAL, "found 10", "a1b2c3d4e5");

	write_text(tpath("31.key"), &HEX32[2], 0600);
	load_fails(tpath("31.key"), -EINVAL, "found 62", HEX32);

	write_text(tpath("65.key"), HEX64 "ab", 0600);
	load_fails(tpath("65.key"), -EINVAL, "found 130", HEX64);

	write_text(tpath("odd.key"), HEX32 "a", 0600);
	load_fails(tpath("odd.key"), -EINVAL, "found 65 hexadecimal digits, an odd number", HEX32);

	write_text(tpath("empty.key"), "", 0600);
	load_fails(tpath("empty.key"), -EINVAL, "found 0", NULL);
	write_text(tpath("nl.key"), "\n", 0600);
	load_fails(tpath("nl.key"), -EINVAL, "found 0", NULL);

	write_text(tpath("zz.key"), "zz" HEX32, 0600);
	load_fails(tpath("zz.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("0x.key"), "0x" HEX32, 0600);
	load_fails(tpath("0x.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("space.key"), HEX32 " ", 0600);
	load_fails(tpath("space.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("inner.key"),
		   "67f2c34c7dac8f16 e4646aaca806cc6feb2be9e2266d600632a4355156c8028a", 0600);
	load_fails(tpath("inner.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("2nl.key"), HEX32 "\n\n", 0600);
	load_fails(tpath("2nl.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("crlf.key"), HEX32 "\r\n", 0600);
	load_fails(tpath("crlf.key"), -EINVAL, "not hexadecimal", HEX32);
	write_text(tpath("lead-nl.key"), "\n" HEX32, 0600);
	load_fails(tpath("lead-nl.key"), -EINVAL, "not hexadecimal", HEX32);

	/* Raw bytes where hex was expected: the usual mistake. */
	for (size_t i = 0; i < sizeof(binary); i++)
		binary[i] = (char)(0x80 + 3 * i);
	binary[5] = '\0';
	write_bytes(tpath("binary.key"), binary, sizeof(binary), 0600);
	load_fails(tpath("binary.key"), -EINVAL, "not hexadecimal", NULL);

	/* 4096 bytes is read (and wrong), 4097 is refused unread. */
	memset(at_limit, 'a', sizeof(at_limit));
	write_bytes(tpath("4096.key"), at_limit, 4096, 0600);
	load_fails(tpath("4096.key"), -EINVAL, "found 4096", NULL);
	write_bytes(tpath("4097.key"), at_limit, 4097, 0600);
	load_fails(tpath("4097.key"), -EINVAL, "larger than 4096 bytes", NULL);

	memcpy(big, HEX64, strlen(HEX64));
	memset(big + strlen(HEX64), '0', sizeof(big) - strlen(HEX64));
	write_bytes(tpath("big.key"), big, sizeof(big), 0600);
	load_fails(tpath("big.key"), -EINVAL, "larger than 4096 bytes", HEX64);
}
END_TEST

START_TEST(test_load_missing)
{
	load_fails(tpath("missing.key"), -ENOENT, ": No such file or directory", NULL);
	load_fails(tpath("no-dir/missing.key"), -ENOENT, "No such file or directory", NULL);
}
END_TEST

/* A file name with a newline or bytes that are not text is named escaped:
 * the message stays one printable line (found by fuzz_config). */
START_TEST(test_load_name_escaped)
{
	struct keys_secret *s = NULL;
	char path[128], *err = NULL;

	snprintf(path, sizeof(path), "%s/two\nlines\x01\"q\xff.key", tmpdir);
	ck_assert_int_eq(keys_secret_load(path, &s, &err), -ENOENT);
	ck_assert_ptr_nonnull(err);
	for (const char *p = err; *p; p++)
		ck_assert_msg((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
			      "byte 0x%02x in \"%s\"", (unsigned char)*p, err);
	ck_assert_msg(strstr(err, "two\\x0alines\\x01\\\"q\\xff.key: No such file") != NULL, "%s",
		      err);
	free(err);
}
END_TEST

/* A cache answers a path with the secret or the error it loaded the first
 * time: one read per file per pass, shared by reference. */
START_TEST(test_cache)
{
	struct keys_cache *c = NULL;
	struct keys_secret *a = NULL, *b = NULL, *x = NULL;
	char *err = NULL, *err2 = NULL;
	char name[32];

	ck_assert_int_eq(keys_cache_new(&c), 0);
	write_text(tpath("c.key"), HEX32 "\n", 0600);
	ck_assert_int_eq(keys_cache_load(c, tpath("c.key"), &a, &err), 0);
	ck_assert_ptr_null(err);
	/* Replaced: the cache still answers what it read (one pass). */
	write_text(tpath("c.key"), HEX64 "\n", 0600);
	ck_assert_int_eq(keys_cache_load(c, tpath("c.key"), &b, &err), 0);
	ck_assert_ptr_eq(a, b);
	keys_secret_free(b);
	/* The error is remembered too, a copy each time. */
	ck_assert_int_eq(keys_cache_load(c, tpath("none.key"), &x, &err), -ENOENT);
	ck_assert_ptr_null(x);
	ck_assert_int_eq(keys_cache_load(c, tpath("none.key"), &x, &err2), -ENOENT);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(err2);
	ck_assert_ptr_ne(err, err2);
	ck_assert_str_eq(err, err2);
	free(err);
	free(err2);
	/* Enough paths to make the table grow twice: each still found. */
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "g%d.key", i);
		write_text(tpath(name), i % 2 ? HEX32 "\n" : HEX64 "\n", 0600);
		ck_assert_int_eq(keys_cache_load(c, tpath(name), &x, NULL), 0);
		keys_secret_free(x);
	}
	for (int i = 0; i < 200; i++) {
		struct keys_secret *want;

		snprintf(name, sizeof(name), "g%d.key", i);
		unlink(tpath(name));
		ck_assert_int_eq(keys_cache_load(c, tpath(name), &x, NULL), 0);
		want = secret_hex(i % 2 ? HEX32 : HEX64);
		fingerprint_eq(x, want);
		keys_secret_free(want);
		keys_secret_free(x);
	}
	/* The cache's reference goes; the caller's stays valid. */
	keys_cache_free(c);
	b = secret_hex(HEX32);
	fingerprint_eq(a, b);
	keys_secret_free(b);
	keys_secret_free(a);
	/* No cache: every call reads the file. */
	ck_assert_int_eq(keys_cache_load(NULL, tpath("c.key"), &a, NULL), 0);
	b = secret_hex(HEX64);
	fingerprint_eq(a, b);
	keys_secret_free(b);
	keys_secret_free(a);
	keys_cache_free(NULL);
}
END_TEST

START_TEST(test_load_args)
{
	struct keys_secret *s = (struct keys_secret *)1;
	char *err = (char *)1;
	int r;

	r = keys_secret_load(NULL, &s, &err);
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(err);
	free(err);
	r = keys_secret_load("", &s, &err);
	ck_assert_int_eq(r, -EINVAL);
	free(err);
	r = keys_secret_load(tpath("x"), NULL, &err);
	ck_assert_int_eq(r, -EINVAL);
}
END_TEST

/* systemd sets the modes in $CREDENTIALS_DIRECTORY: 0440 (an ACL's mask)
 * is fine there, and only there; other bits and write bits are not. */
START_TEST(test_load_credentials)
{
	struct keys_secret *want = secret_hex(HEX32), *s;
	char creds[128];

	ck_assert_int_eq(mkdir(tpath("creds"), 0700), 0);
	ck_assert_int_eq(mkdir(tpath("creds-evil"), 0700), 0);
	write_text(tpath("creds/tokend.key"), HEX32 "\n", 0400);
	set_acl(tpath("creds/tokend.key"), 2, geteuid());
	write_text(tpath("creds/open.key"), HEX32, 0644);
	write_text(tpath("creds-evil/tokend.key"), HEX32, 0400);
	set_acl(tpath("creds-evil/tokend.key"), 2, geteuid());
	write_text(tpath("outside.key"), HEX32, 0400);
	set_acl(tpath("outside.key"), 2, geteuid());

	/* Without the variable, 0440 is refused everywhere. */
	load_fails(tpath("creds/tokend.key"), -EPERM, "permissions 0440", HEX32);

	snprintf(creds, sizeof(creds), "%s", tpath("creds"));
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
	s = load_ok(tpath("creds/tokend.key"));
	fingerprint_eq(s, want);
	keys_secret_free(s);
	/* Readable by others, or writable by the group: not systemd's modes. */
	load_fails(tpath("creds/open.key"), -EPERM, "permissions 0644", HEX32);
	write_text(tpath("creds/gw.key"), HEX32, 0460);
	load_fails(tpath("creds/gw.key"), -EPERM, "writable by group", HEX32);
	write_text(tpath("creds/plain.key"), HEX32, 0400);
	s = load_ok(tpath("creds/plain.key"));
	keys_secret_free(s);
	/* The group bit as a real group's (no ACL), or as the mask of an ACL
	 * that lets another user or a group read: refused. */
	write_text(tpath("creds/group.key"), HEX32, 0440);
	load_fails(tpath("creds/group.key"), -EPERM, "readable by its group", HEX32);
	write_text(tpath("creds/other-user.key"), HEX32, 0400);
	set_acl(tpath("creds/other-user.key"), 2, 40001);
	load_fails(tpath("creds/other-user.key"), -EPERM, "readable by another user", HEX32);
	write_text(tpath("creds/acl-group.key"), HEX32, 0400);
	set_acl(tpath("creds/acl-group.key"), 8, 100);
	load_fails(tpath("creds/acl-group.key"), -EPERM, "readable by a group", HEX32);
	/* Found by another spelling of the same path. */
	s = load_ok(tpath("creds/../creds/./tokend.key"));
	keys_secret_free(s);

	load_fails(tpath("outside.key"), -EPERM, "permissions 0440", HEX32);
	/* A name that merely starts with the directory's is not inside it. */
	load_fails(tpath("creds-evil/tokend.key"), -EPERM, "permissions 0440", HEX32);
	/* The content rules still apply. */
	write_text(tpath("creds/short.key"), "a1b2c3d4e5", 0400);
	load_fails(tpath("creds/short.key"), -EINVAL, "found 10", "a1b2c3d4e5");

	/* The directory named through a symlink: compared by real path. */
	ck_assert_int_eq(symlink(creds, tpath("creds-link")), 0);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tpath("creds-link"), 1), 0);
	s = load_ok(tpath("creds/tokend.key"));
	keys_secret_free(s);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tpath("creds-link/"), 1), 0);
	s = load_ok(tpath("creds/tokend.key"));
	keys_secret_free(s);

	/* Relative, missing or empty: no credentials directory. */
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", "creds", 1), 0);
	load_fails(tpath("creds/tokend.key"), -EPERM, "permissions 0440", HEX32);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tpath("nowhere"), 1), 0);
	load_fails(tpath("creds/tokend.key"), -EPERM, "permissions 0440", HEX32);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", "", 1), 0);
	load_fails(tpath("creds/tokend.key"), -EPERM, "permissions 0440", HEX32);
	/* "/" would make every file a credential. */
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", "/", 1), 0);
	load_fails(tpath("outside.key"), -EPERM, "permissions 0440", HEX32);

	/* The owner is still checked there (as root, a file can be given away). */
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(tpath("creds/tokend.key"), 1000, (gid_t)-1), 0);
		load_fails(tpath("creds/tokend.key"), -EPERM, "owned by uid 1000", HEX32);
	}
	keys_secret_free(want);
}
END_TEST

static Suite *keys_suite(void)
{
	Suite *s = suite_create("keys");
	TCase *tc = tcase_create("keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_vectors);
	tcase_add_test(tc, test_vectors_info);
	tcase_add_test(tc, test_inputs_matter);
	tcase_add_test(tc, test_derive_validation);
	tcase_add_test(tc, test_algorithms);
	tcase_add_test(tc, test_from_bytes);
	tcase_add_test(tc, test_fingerprint);
	tcase_add_test(tc, test_secret_memory);
	tcase_add_test(tc, test_wipe);
	tcase_add_test(tc, test_load_good);
	tcase_add_test(tc, test_load_permissions);
	tcase_add_test(tc, test_load_owner);
	tcase_add_test(tc, test_load_not_regular);
	tcase_add_test(tc, test_load_bad_content);
	tcase_add_test(tc, test_load_missing);
	tcase_add_test(tc, test_load_name_escaped);
	tcase_add_test(tc, test_cache);
	tcase_add_test(tc, test_load_args);
	tcase_add_test(tc, test_load_credentials);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(keys_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
