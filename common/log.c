/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_level = LOG_INFO;
static bool log_prefix = true;

void log_set_level(int level)
{
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

void log_set_prefix_enabled(bool enabled)
{
	log_prefix = enabled;
}

int log_level_from_string(const char *s)
{
	static const char *const names[] = {"emerg",   "alert",	 "crit", "err",
					    "warning", "notice", "info", "debug"};
	for (int i = 0; i < 8; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	if (strcmp(s, "error") == 0)
		return LOG_ERR;
	if (strcmp(s, "warn") == 0)
		return LOG_WARNING;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	return -EINVAL;
}

void log_vprintf(int level, const char *fmt, va_list ap)
{
	char buf[2048];
	int saved = errno;

	if (level > log_level)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One write per line, so concurrent writers do not interleave. */
	if (log_prefix)
		fprintf(stderr, "<%d>%s\n", level, buf);
	else
		fprintf(stderr, "%s\n", buf);
	errno = saved;
}

void log_printf(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprintf(level, fmt, ap);
	va_end(ap);
}

bool log_ratelimit_ok(struct log_ratelimit *rl, unsigned long long now, unsigned *suppressed)
{
	/* begin == 0 alone does not mean "never used": a window may start at
	 * timestamp 0, and then every call would open a new window. */
	bool fresh = rl->begin == 0 && rl->emitted == 0 && rl->suppressed == 0;

	*suppressed = 0;
	if (fresh || now - rl->begin >= rl->interval_usec) {
		*suppressed = rl->suppressed;
		rl->begin = now;
		rl->emitted = 0;
		rl->suppressed = 0;
	}
	if (rl->emitted < rl->burst) {
		rl->emitted++;
		return true;
	}
	rl->suppressed++;
	return false;
}

void log_ratelimited(struct log_ratelimit *rl, int level, const char *fmt, ...)
{
	struct timespec ts;
	unsigned suppressed;
	char buf[1800];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!log_ratelimit_ok(rl, (unsigned long long)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000,
			      &suppressed))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		log_printf(level, "%s (%u similar messages suppressed)", buf, suppressed);
	else
		log_printf(level, "%s", buf);
}
