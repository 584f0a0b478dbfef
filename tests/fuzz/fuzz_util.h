/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libFuzzer harnesses (header only: each harness is
 * one translation unit plus this). Nothing here talks to the kernel or opens
 * a socket; files go to a private directory under /tmp made at start and
 * removed at exit. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An oracle failed: say which and abort, which libFuzzer reports as a crash
 * (and saves the input). */
#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "\nFUZZ_CHECK failed at %s:%d: %s\n  ", __FILE__,          \
				__LINE__, #cond);                                                  \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of the input (the parsers take C strings). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The private directory, made once per process. */
static char fuzz_dir[64];

static int fuzz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void fuzz_rm_dir(void)
{
	if (fuzz_dir[0])
		nftw(fuzz_dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline const char *fuzz_tmpdir(void)
{
	if (!fuzz_dir[0]) {
		snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/tokend-fuzz.XXXXXX");
		if (!mkdtemp(fuzz_dir)) {
			perror("mkdtemp");
			abort();
		}
		atexit(fuzz_rm_dir);
	}
	return fuzz_dir;
}

/* "<fuzz_dir>/<name>" in a static buffer per call site is error-prone;
 * callers pass their own. */
static inline void fuzz_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", fuzz_tmpdir(), name);

	if (n < 0 || (size_t)n >= len)
		abort();
}

/* Replace a file's content (mode 0600: secrets must be private). */
static inline void fuzz_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	if (fd < 0) {
		perror(path);
		abort();
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror(path);
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

/* A valid master secret (32 bytes as hex) at `path`. */
static inline void fuzz_write_secret(const char *path)
{
	static const char hex[] =
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

	fuzz_write_file(path, hex, sizeof(hex) - 1);
}

/* Quiet: the parsers log refusals, which would drown libFuzzer's output.
 * FUZZ_LOG=debug (or any level log_level_from_string takes) for a replay. */
static inline void fuzz_quiet_logs(void)
{
	const char *e = getenv("FUZZ_LOG");
	int level = e ? log_level_from_string(e) : -1;

	log_set_level(level >= 0 ? level : LOG_EMERG - 1);
}

/* Is every byte of s printable ASCII (the promise of text_quote and of
 * every message built from quoted text)? */
static inline bool fuzz_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}
