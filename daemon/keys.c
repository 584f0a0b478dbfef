/* SPDX-License-Identifier: MIT */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "strmap.h"
#include "text.h"

/* A secret file is 128 hex digits and a newline at most; anything much bigger
 * is not a secret file, and reading it would only hold more bytes that might
 * be secret in memory. */
#define KEYS_FILE_MAX 4096

#define KEYS_INFO_LABEL	     "tokend-sa-v1"
#define KEYS_FINGERPRINT_TAG "tokend-fingerprint-v1"
#define KEYS_NAME_MAX	     64
/* label, name length and name, number, family, two IPv6 addresses,
 * generation, algorithm */
#define KEYS_INFO_MAX (sizeof(KEYS_INFO_LABEL) - 1 + 1 + KEYS_NAME_MAX + 4 + 1 + 16 + 16 + 8 + 1)

static const struct keys_algorithm_info keys_algorithms[] = {
    {
	.id = KEYS_ALG_AES_GCM_128,
	.name = "aes-gcm-128",
	.kernel_enc = "rfc4106(gcm(aes))",
	.kernel_auth = NULL,
	.aead = true,
	.enc_key_len = 16 + 4, /* RFC 4106: the salt is the key's last 4 bytes */
	.auth_key_len = 0,
	.icv_bits = 128,
    },
    {
	.id = KEYS_ALG_AES_GCM_256,
	.name = "aes-gcm-256",
	.kernel_enc = "rfc4106(gcm(aes))",
	.kernel_auth = NULL,
	.aead = true,
	.enc_key_len = 32 + 4,
	.auth_key_len = 0,
	.icv_bits = 128,
    },
    {
	.id = KEYS_ALG_AES_CBC_HMAC_SHA256,
	.name = "aes-cbc-hmac-sha256",
	.kernel_enc = "cbc(aes)",
	.kernel_auth = "hmac(sha256)",
	.aead = false,
	.enc_key_len = 32,
	/* RFC 4868: the key is as long as the hash output, the ICV half of it. */
	.auth_key_len = 32,
	.icv_bits = 128,
    },
};

/* The whole structure lives at the start of its own locked, undumpable
 * mapping, so the secret bytes never touch the malloc heap. */
struct keys_secret {
	unsigned refs;
	size_t len;
	uint8_t bytes[KEYS_SECRET_MAX];
};

const struct keys_algorithm_info *keys_algorithm_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(keys_algorithms) / sizeof(keys_algorithms[0]); i++)
		if (strcmp(keys_algorithms[i].name, name) == 0)
			return &keys_algorithms[i];
	return NULL;
}

const struct keys_algorithm_info *keys_algorithm_by_id(enum keys_algorithm id)
{
	for (size_t i = 0; i < sizeof(keys_algorithms) / sizeof(keys_algorithms[0]); i++)
		if (keys_algorithms[i].id == id)
			return &keys_algorithms[i];
	return NULL;
}

size_t keys_material_len(const struct keys_algorithm_info *a)
{
	if (!a)
		return 0;
	return a->enc_key_len + a->auth_key_len;
}

void keys_wipe(void *p, size_t n)
{
	if (p && n > 0)
		explicit_bzero(p, n);
}

static size_t keys_page_round(size_t n)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t ps = page > 0 ? (size_t)page : 4096;

	return (n + ps - 1) / ps * ps;
}

/* Memory for secret bytes: its own mapping, so that it can be locked (never
 * written to swap) and left out of core dumps without affecting anything
 * else. Locking is best effort: RLIMIT_MEMLOCK is small for unprivileged
 * users and a failure there must not stop the daemon, but a core dump holding
 * the master secret is worse than no secret, so MADV_DONTDUMP is required. */
static int keys_secure_alloc(size_t n, void **ret)
{
	size_t len = keys_page_round(n);
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (madvise(p, len, MADV_DONTDUMP) < 0) {
		int r = -errno;

		munmap(p, len);
		return r;
	}
	(void)mlock(p, len);
	*ret = p;
	return 0;
}

static void keys_secure_free(void *p, size_t n)
{
	size_t len;

	if (!p)
		return;
	len = keys_page_round(n);
	/* The whole mapping, not just n bytes: what lies beyond n is zero or ours. */
	explicit_bzero(p, len);
	munlock(p, len);
	munmap(p, len);
}

static int keys_secret_new(struct keys_secret **ret)
{
	void *p;
	int r;

	r = keys_secure_alloc(sizeof(struct keys_secret), &p);
	if (r < 0)
		return r;
	/* Fresh anonymous pages are zero; len 0 marks it empty. */
	*ret = p;
	(*ret)->refs = 1;
	return 0;
}

struct keys_secret *keys_secret_ref(struct keys_secret *s)
{
	if (s)
		s->refs++;
	return s;
}

void keys_secret_free(struct keys_secret *s)
{
	if (!s || --s->refs > 0)
		return;
	keys_secure_free(s, sizeof(*s));
}

int keys_secret_from_bytes(const uint8_t *bytes, size_t len, struct keys_secret **ret)
{
	struct keys_secret *s;
	int r;

	if (!ret)
		return -EINVAL;
	*ret = NULL;
	if (!bytes || len < KEYS_SECRET_MIN || len > KEYS_SECRET_MAX)
		return -EINVAL;
	r = keys_secret_new(&s);
	if (r < 0)
		return r;
	memcpy(s->bytes, bytes, len);
	s->len = len;
	*ret = s;
	return 0;
}

static void keys_set_error(char **ret_error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Messages are built from the path, numbers and fixed words only, never from
 * the file's bytes. */
static void keys_set_error(char **ret_error, const char *fmt, ...)
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

/* Whether the opened file lies below $CREDENTIALS_DIRECTORY. The path of the
 * open descriptor is used, not the name we were given, so that what is
 * checked is what was opened, whatever happened to the name meanwhile. */
static bool keys_in_credentials_dir(int fd, const char *path)
{
	const char *env = getenv("CREDENTIALS_DIRECTORY");
	char dir[PATH_MAX], file[PATH_MAX], proc[64];
	size_t n;
	ssize_t k;

	if (!env || env[0] != '/')
		return false;
	if (!realpath(env, dir))
		return false;
	n = strlen(dir);
	/* "/" would make every file a credential; systemd never sets that. */
	if (n <= 1)
		return false;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	k = readlink(proc, file, sizeof(file) - 1);
	if (k > 0 && file[0] == '/') {
		file[k] = '\0';
	} else if (!realpath(path, file)) {
		/* Without /proc: the name, resolved; it is not a symlink, we opened
		 * it with O_NOFOLLOW. */
		return false;
	}
	return strncmp(file, dir, n) == 0 && file[n] == '/';
}

/* The POSIX access ACL as the kernel stores it in the xattr
 * "system.posix_acl_access": a version, then (tag, perm, id) entries, little
 * endian (linux/posix_acl_xattr.h). */
#define ACL_XATTR_VERSION 0x0002
#define ACL_TAG_USER_OBJ  0x01
#define ACL_TAG_USER	  0x02
#define ACL_TAG_GROUP_OBJ 0x04
#define ACL_TAG_GROUP	  0x08
#define ACL_TAG_MASK	  0x10
#define ACL_TAG_OTHER	  0x20
#define ACL_PERM_READ	  0x04

static uint32_t keys_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 0 when the file's ACL lets no one read but its owner and tokend's own
 * user (what systemd writes for a credential); -EPERM otherwise, with *who
 * naming the kind of entry that may read. No ACL at all: the group bit is
 * a real group's, -EPERM. */
static int keys_acl_only_us(int fd, const char **who)
{
	unsigned char buf[4 + 8 * 64];
	ssize_t n = fgetxattr(fd, "system.posix_acl_access", buf, sizeof(buf));
	unsigned mask = 07;

	*who = "its group";
	if (n < 4 || keys_le32(buf) != ACL_XATTR_VERSION || (n - 4) % 8 != 0)
		return -EPERM;
	/* The mask limits named entries and the owning group. */
	for (ssize_t i = 4; i < n; i += 8)
		if ((buf[i] | buf[i + 1] << 8) == ACL_TAG_MASK)
			mask = buf[i + 2] | buf[i + 3] << 8;
	for (ssize_t i = 4; i < n; i += 8) {
		unsigned tag = buf[i] | buf[i + 1] << 8, perm = buf[i + 2] | buf[i + 3] << 8;
		uint32_t id = keys_le32(buf + i + 4);

		switch (tag) {
		case ACL_TAG_USER:
			if ((perm & mask & ACL_PERM_READ) && id != geteuid()) {
				*who = "another user (an ACL entry)";
				return -EPERM;
			}
			break;
		case ACL_TAG_GROUP_OBJ:
		case ACL_TAG_GROUP:
			if (perm & mask & ACL_PERM_READ) {
				*who =
				    tag == ACL_TAG_GROUP ? "a group (an ACL entry)" : "its group";
				return -EPERM;
			}
			break;
		case ACL_TAG_OTHER:
			if (perm & ACL_PERM_READ) {
				*who = "others";
				return -EPERM;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

static int keys_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Checks and decodes the file's text into a new secret. */
static int keys_secret_parse(const char *name, const char *text, size_t len,
			     struct keys_secret **ret, char **ret_error)
{
	struct keys_secret *s;
	size_t digits = len;
	int r;

	if (digits > 0 && text[digits - 1] == '\n')
		digits--;
	for (size_t i = 0; i < digits; i++)
		if (keys_hex_value((unsigned char)text[i]) < 0) {
			keys_set_error(ret_error,
				       "%s: not hexadecimal: only the digits 0-9, a-f, A-F and "
				       "one final newline may appear",
				       name);
			return -EINVAL;
		}
	if (digits < 2 * KEYS_SECRET_MIN || digits > 2 * KEYS_SECRET_MAX) {
		keys_set_error(ret_error,
			       "%s: expected %d to %d hexadecimal digits (%d to %d bytes), "
			       "found %zu",
			       name, 2 * KEYS_SECRET_MIN, 2 * KEYS_SECRET_MAX, KEYS_SECRET_MIN,
			       KEYS_SECRET_MAX, digits);
		return -EINVAL;
	}
	if (digits % 2 != 0) {
		keys_set_error(ret_error,
			       "%s: found %zu hexadecimal digits, an odd number: every byte "
			       "is two digits",
			       name, digits);
		return -EINVAL;
	}

	r = keys_secret_new(&s);
	if (r < 0) {
		keys_set_error(ret_error, "%s: %s", name, strerror(-r));
		return r;
	}
	/* Straight into locked memory: no decode buffer to forget. */
	for (size_t i = 0; i < digits / 2; i++)
		s->bytes[i] = (uint8_t)(keys_hex_value((unsigned char)text[2 * i]) << 4 |
					keys_hex_value((unsigned char)text[2 * i + 1]));
	s->len = digits / 2;
	*ret = s;
	return 0;
}

/* Reads the whole file into buf (size KEYS_FILE_MAX + 1, so that a file that
 * grew past the limit after fstat is still noticed). */
static int keys_read_all(int fd, char *buf, size_t size, size_t *ret_len)
{
	size_t n = 0;

	while (n < size) {
		ssize_t k = read(fd, buf + n, size - n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	*ret_len = n;
	return 0;
}

int keys_secret_load(const char *path, struct keys_secret **ret, char **ret_error)
{
	struct text_quoted quoted;
	const char *name;
	struct stat st;
	bool in_creds;
	void *buf = NULL;
	size_t len = 0;
	int fd, r;

	if (ret_error)
		*ret_error = NULL;
	if (!ret)
		return -EINVAL;
	*ret = NULL;
	if (!path || !*path) {
		keys_set_error(ret_error, "no secret file name given");
		return -EINVAL;
	}
	/* Messages name the file escaped: a name is one printable line. */
	name = text_quote(&quoted, path);

	/* O_NONBLOCK: a FIFO put in place of the file must not hang the daemon
	 * in open(); it has no effect on the regular file we accept. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP) {
			struct stat lst;

			/* O_NOFOLLOW says ELOOP for a final symlink; say so in words. */
			if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
				keys_set_error(ret_error,
					       "%s: not a regular file: a symbolic link, which is "
					       "not followed (name the file itself)",
					       name);
				return r;
			}
		}
		if (r == -EACCES)
			keys_set_error(
			    ret_error,
			    "%s: %s (tokend runs as uid %u: the file and every directory "
			    "above it must let that user in; or hand it over with "
			    "LoadCredential= and name it credential:NAME)",
			    name, strerror(-r), (unsigned)geteuid());
		else
			keys_set_error(ret_error, "%s: %s", name, strerror(-r));
		return r;
	}

	if (fstat(fd, &st) < 0) {
		r = -errno;
		keys_set_error(ret_error, "%s: %s", name, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		keys_set_error(ret_error, "%s: not a regular file%s", name,
			       S_ISDIR(st.st_mode) ? ": a directory" : "");
		goto out;
	}
	/* systemd writes a credential as root, mode 0400, and grants the
	 * service's user read access with an ACL entry, whose mask stat shows
	 * in the group bits (0440); where the file system has no ACLs it
	 * chowns the file to the user instead. Only the service's user may
	 * enter that directory. So there, root as owner and a group read bit
	 * are systemd's doing; write bits and anything for others are not. */
	in_creds = keys_in_credentials_dir(fd, path);
	if (st.st_uid != geteuid() && !(in_creds && st.st_uid == 0)) {
		r = -EPERM;
		keys_set_error(ret_error, "%s: owned by uid %u, not by uid %u that tokend runs as",
			       name, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if ((st.st_mode & (in_creds ? 027 : 077)) != 0) {
		r = -EPERM;
		keys_set_error(ret_error,
			       in_creds ? "%s: permissions %04o are too open: a credential must "
					  "not be writable by group or accessible by others"
					: "%s: permissions %04o are too open: the file must not be "
					  "accessible by group or others (chmod 600 it)",
			       name, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	/* In the credentials directory a group read bit is allowed only as the
	 * mask of an ACL that lets nobody but tokend's user read. */
	if (in_creds && (st.st_mode & 040)) {
		const char *who = NULL;

		r = keys_acl_only_us(fd, &who);
		if (r < 0) {
			keys_set_error(ret_error,
				       "%s: permissions %04o: readable by %s, not only by uid %u "
				       "that tokend runs as",
				       name, (unsigned)(st.st_mode & 07777),
				       who ? who : "its group", (unsigned)geteuid());
			goto out;
		}
	}
	if (st.st_size > KEYS_FILE_MAX) {
		r = -EINVAL;
		keys_set_error(ret_error, "%s: larger than %d bytes: not a secret file", name,
			       KEYS_FILE_MAX);
		goto out;
	}

	r = keys_secure_alloc(KEYS_FILE_MAX + 1, &buf);
	if (r < 0) {
		keys_set_error(ret_error, "%s: %s", name, strerror(-r));
		goto out;
	}
	r = keys_read_all(fd, buf, KEYS_FILE_MAX + 1, &len);
	if (r < 0) {
		keys_set_error(ret_error, "%s: %s", name, strerror(-r));
		goto out;
	}
	if (len > KEYS_FILE_MAX) {
		r = -EINVAL;
		keys_set_error(ret_error, "%s: larger than %d bytes: not a secret file", name,
			       KEYS_FILE_MAX);
		goto out;
	}
	r = keys_secret_parse(name, buf, len, ret, ret_error);
out:
	keys_secure_free(buf, KEYS_FILE_MAX + 1);
	close(fd);
	return r;
}

/* What loading one path gave. */
struct keys_cache_entry {
	int r;
	struct keys_secret *secret;
	char *error;
};

struct keys_cache {
	struct keys_cache_entry *v;
	size_t n, cap;
	struct strmap paths; /* path -> index in v */
};

int keys_cache_new(struct keys_cache **ret)
{
	*ret = calloc(1, sizeof(**ret));
	return *ret ? 0 : -ENOMEM;
}

void keys_cache_free(struct keys_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		keys_secret_free(c->v[i].secret);
		free(c->v[i].error);
	}
	strmap_free(&c->paths);
	free(c->v);
	free(c);
}

static int keys_cache_answer(const struct keys_cache_entry *e, struct keys_secret **ret,
			     char **ret_error)
{
	*ret = keys_secret_ref(e->secret);
	if (ret_error)
		*ret_error = e->error ? strdup(e->error) : NULL;
	return e->r;
}

int keys_cache_load(struct keys_cache *c, const char *path, struct keys_secret **ret,
		    char **ret_error)
{
	struct keys_cache_entry *e;
	size_t i;
	int r;

	if (!c || !path)
		return keys_secret_load(path, ret, ret_error);
	if (strmap_get(&c->paths, path, &i))
		return keys_cache_answer(&c->v[i], ret, ret_error);
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct keys_cache_entry *v = realloc(c->v, cap * sizeof(*v));

		/* Out of memory: the cache just misses. */
		if (!v)
			return keys_secret_load(path, ret, ret_error);
		c->v = v;
		c->cap = cap;
	}
	e = &c->v[c->n];
	*e = (struct keys_cache_entry){0};
	e->r = keys_secret_load(path, &e->secret, &e->error);
	r = keys_cache_answer(e, ret, ret_error);
	if (strmap_put(&c->paths, path, c->n) == 0)
		c->n++;
	else {
		keys_secret_free(e->secret);
		free(e->error);
	}
	return r;
}

void keys_secret_fingerprint(const struct keys_secret *s, char out[17])
{
	static const char tag[] = KEYS_FINGERPRINT_TAG;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *c;
	bool ok = false;

	/* The digest runs over tag and secret in two updates rather than one
	 * EVP_Digest over a concatenation, which would be one more copy of the
	 * secret to place and wipe. */
	c = EVP_MD_CTX_new();
	if (s && c && EVP_DigestInit_ex2(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, tag, sizeof(tag) - 1) == 1 &&
	    EVP_DigestUpdate(c, s->bytes, s->len) == 1 && EVP_DigestFinal_ex(c, md, &md_len) == 1 &&
	    md_len >= 8)
		ok = true;
	EVP_MD_CTX_free(c);

	for (size_t i = 0; ok && i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	keys_wipe(md, sizeof(md));
	if (!ok) {
		/* Not hex, so it cannot be mistaken for a fingerprint, and still
		 * 16 characters for callers that print a fixed width. */
		memcpy(out, "????????????????", 17);
	}
}

/* The info bytes exactly as keys.h lists them. Returns the length. */
static size_t keys_build_info(const struct keys_context *ctx, size_t name_len,
			      const struct keys_algorithm_info *a, uint8_t info[KEYS_INFO_MAX])
{
	size_t alen = ctx->family == AF_INET ? 4 : 16;
	size_t o = 0;

	memcpy(info + o, KEYS_INFO_LABEL, sizeof(KEYS_INFO_LABEL) - 1);
	o += sizeof(KEYS_INFO_LABEL) - 1;
	info[o++] = (uint8_t)name_len;
	memcpy(info + o, ctx->name, name_len);
	o += name_len;
	for (int shift = 24; shift >= 0; shift -= 8)
		info[o++] = (uint8_t)(ctx->number >> shift);
	info[o++] = ctx->family == AF_INET ? 4 : 6;
	memcpy(info + o, ctx->src, alen);
	o += alen;
	memcpy(info + o, ctx->dst, alen);
	o += alen;
	for (int shift = 56; shift >= 0; shift -= 8)
		info[o++] = (uint8_t)(ctx->generation >> shift);
	info[o++] = (uint8_t)a->id;
	return o;
}

int keys_derive(const struct keys_secret *s, const struct keys_context *ctx, uint8_t *out,
		size_t *ret_len)
{
	const struct keys_algorithm_info *a;
	uint8_t info[KEYS_INFO_MAX];
	OSSL_PARAM params[4];
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf = NULL;
	size_t name_len, info_len, len;
	int r;

	if (ret_len)
		*ret_len = 0;
	if (!s || !ctx || !out || !ret_len || !ctx->name || !ctx->src || !ctx->dst)
		return -EINVAL;
	name_len = strnlen(ctx->name, KEYS_NAME_MAX + 1);
	if (name_len < 1 || name_len > KEYS_NAME_MAX)
		return -EINVAL;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return -EINVAL;
	a = keys_algorithm_by_id(ctx->algorithm);
	if (!a)
		return -EINVAL;
	len = keys_material_len(a);
	if (len > KEYS_MATERIAL_MAX || s->len < KEYS_SECRET_MIN || s->len > KEYS_SECRET_MAX)
		return -EINVAL;

	info_len = keys_build_info(ctx, name_len, a, info);

	/* No salt parameter: RFC 5869 then uses HashLen zero bytes, which is
	 * what an empty salt amounts to in HMAC. The key is passed by pointer;
	 * OpenSSL copies it and clears its copy when the context is freed. */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)s->bytes, s->len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, info_len);
	params[3] = OSSL_PARAM_construct_end();

	/* Errors inside libcrypto (a failed allocation, a provider without
	 * HKDF) have no errno of their own. */
	r = -EIO;
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (!kdf)
		goto out;
	kctx = EVP_KDF_CTX_new(kdf);
	if (!kctx)
		goto out;
	if (EVP_KDF_derive(kctx, out, len, params) != 1) {
		keys_wipe(out, KEYS_MATERIAL_MAX);
		goto out;
	}
	*ret_len = len;
	r = 0;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return r;
}
