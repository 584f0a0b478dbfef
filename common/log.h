/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

/* Logging to stderr with "<N>" syslog priority prefixes, which journald
 * (SyslogLevelPrefix=yes, the default) turns into real priorities. */

void log_set_level(int level);
int log_get_level(void);
/* Parse "err", "warning", "notice", "info", "debug" (or a number 0-7). */
int log_level_from_string(const char *s);
void log_set_prefix_enabled(bool enabled);

void log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vprintf(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...)	 log_printf(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_printf(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)	 log_printf(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)	 log_printf(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_DEBUG)                                                  \
			log_printf(LOG_DEBUG, __VA_ARGS__);                                        \
	} while (0)

/* A rate limiter for repeated failures: at most `burst` messages per
 * `interval_usec`; the first message after a quiet period says how many were
 * suppressed. Keep one per object whose failures repeat. */
struct log_ratelimit {
	unsigned long long interval_usec;
	unsigned burst;
	unsigned long long begin;
	unsigned emitted;
	unsigned suppressed;
};

#define LOG_RATELIMIT_INIT(interval, b)                                                            \
	((struct log_ratelimit){.interval_usec = (interval), .burst = (b)})

/* Returns true when the message may be logged; *suppressed is set to the
 * number of messages dropped since the last one that was let through. */
bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned long long now_usec, unsigned *suppressed);

void log_ratelimited(struct log_ratelimit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
