/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Master secrets and the derivation of SA keys from them.
 *
 * A master secret lives in a file readable by nobody but the user tokend
 * runs as, or in systemd's credential directory ($CREDENTIALS_DIRECTORY,
 * whose modes systemd sets). Secret bytes are held in memory that is locked,
 * excluded from core dumps (MADV_DONTDUMP) and wiped when freed. No function
 * here ever formats secret or key bytes into text.
 *
 * Every input byte of the derivation is documented in docs/key-derivation.md,
 * with test vectors. */

#define KEYS_SECRET_MIN	  32 /* bytes */
#define KEYS_SECRET_MAX	  64
#define KEYS_MATERIAL_MAX 64

enum keys_algorithm {
	KEYS_ALG_AES_GCM_128 = 1, /* rfc4106(gcm(aes)): 16-byte key + 4-byte salt, ICV 16 */
	KEYS_ALG_AES_GCM_256 = 2, /* rfc4106(gcm(aes)): 32-byte key + 4-byte salt, ICV 16 */
	KEYS_ALG_AES_CBC_HMAC_SHA256 =
	    3, /* cbc(aes) 32-byte key, hmac(sha256) 32-byte key, ICV 16 */
};

struct keys_algorithm_info {
	enum keys_algorithm id;
	const char *name; /* config spelling: "aes-gcm-128", "aes-gcm-256", "aes-cbc-hmac-sha256" */
	const char *kernel_enc;	 /* kernel algorithm name: "rfc4106(gcm(aes))" or "cbc(aes)" */
	const char *kernel_auth; /* "hmac(sha256)" or NULL for AEAD */
	bool aead;
	size_t enc_key_len;  /* bytes of the cipher key, salt included for AEAD */
	size_t auth_key_len; /* bytes of the HMAC key, 0 for AEAD */
	unsigned icv_bits;   /* ICV (AEAD) or truncation (HMAC) length in bits */
};

/* NULL when unknown. */
const struct keys_algorithm_info *keys_algorithm_by_name(const char *name);
const struct keys_algorithm_info *keys_algorithm_by_id(enum keys_algorithm id);
/* Total derived bytes: enc_key_len + auth_key_len. */
size_t keys_material_len(const struct keys_algorithm_info *a);

struct keys_secret;

/* Load a master secret. File format: the secret as hexadecimal, 64 to 128
 * hex digits (32 to 64 bytes), upper or lower case, optionally followed by
 * one newline; nothing else. Refused, with *ret_error (malloc'd) naming the
 * file and the problem, never its contents: not a regular file (symlinks
 * are not followed), group or world permission bits set (unless the file
 * lies in $CREDENTIALS_DIRECTORY), owned by another uid than ours, wrong
 * length, not hex. 0 or a negative errno (-EPERM for permissions, -EINVAL
 * for content, -ENOENT etc. from the system). */
int keys_secret_load(const char *path, struct keys_secret **ret, char **ret_error);
/* For tests and tools: a secret from bytes (copied). */
int keys_secret_from_bytes(const uint8_t *bytes, size_t len, struct keys_secret **ret);
/* A secret is shared by reference: keys_secret_ref adds one, and
 * keys_secret_free drops one, wiping the secret with the last. NULL is fine
 * for both. */
struct keys_secret *keys_secret_ref(struct keys_secret *s);
void keys_secret_free(struct keys_secret *s);

/* One pass over many associations (a config check, a reload) reads each
 * secret file once: the cache remembers what loading each path gave, the
 * secret (a new reference each time) or the error (a copy each time). Keep
 * it only for the pass, so that a file replaced later is read again. */
struct keys_cache;
int keys_cache_new(struct keys_cache **ret);
void keys_cache_free(struct keys_cache *c); /* drops its references */
/* Like keys_secret_load; a NULL cache loads the file every time. */
int keys_cache_load(struct keys_cache *c, const char *path, struct keys_secret **ret,
		    char **ret_error);
/* A non-secret fingerprint for logs and show: the first 8 bytes of
 * SHA-256("tokend-fingerprint-v1" || secret), as 16 hex digits. */
void keys_secret_fingerprint(const struct keys_secret *s, char out[17]);

/* What one generation of one direction of one association is derived from. */
struct keys_context {
	const char *name; /* association name, 1-64 bytes */
	uint32_t number;  /* association number */
	int family;	  /* AF_INET or AF_INET6 */
	const void *src;  /* sending address: 4 or 16 bytes, network order */
	const void *dst;  /* receiving address */
	uint64_t generation;
	enum keys_algorithm algorithm;
};

/* HKDF-SHA-256 (RFC 5869, OpenSSL's libcrypto), salt empty, IKM = the master
 * secret, info =
 *   "tokend-sa-v1" (12 ASCII bytes)
 *   || u8 len(name) || name
 *   || u32 number (big endian)
 *   || u8 family (4 or 6)
 *   || src address (4 or 16 bytes) || dst address (4 or 16 bytes)
 *   || u64 generation (big endian)
 *   || u8 algorithm id
 * L = keys_material_len(algorithm). The output is the cipher key (salt as
 * its last 4 bytes for AEAD) followed by the HMAC key.
 * out must hold KEYS_MATERIAL_MAX bytes; wipe it with keys_wipe after use. */
int keys_derive(const struct keys_secret *s, const struct keys_context *ctx, uint8_t *out,
		size_t *ret_len);

/* Overwrite memory in a way the compiler cannot drop. */
void keys_wipe(void *p, size_t n);
