/* SPDX-License-Identifier: MIT */
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static event_sink_t event_sink;
static void *event_sink_data;

void event_set_sink(event_sink_t sink, void *data)
{
	event_sink = sink;
	event_sink_data = data;
}

void event_emit(int level, enum event_kind kind, const char *object, const char *name,
		const char *fmt, ...)
{
	struct timespec ts;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_printf(level, "%s", msg);
	if (!event_sink || level > LOG_INFO)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	event_sink(&(struct event){.realtime_usec = (uint64_t)ts.tv_sec * 1000000ULL +
						    (uint64_t)ts.tv_nsec / 1000,
				   .level = level,
				   .kind = kind,
				   .object = object,
				   .name = name,
				   .message = msg},
		   event_sink_data);
}

const char *event_kind_name(enum event_kind kind)
{
	switch (kind) {
	case EVENT_TOKEN:
		return "token";
	case EVENT_ASSOCIATION:
		return "association";
	case EVENT_DAEMON:
		break;
	}
	return "daemon";
}

const char *event_level_name(int level)
{
	static const char *const names[] = {"emerg",   "alert",	 "crit", "err",
					    "warning", "notice", "info", "debug"};

	return level >= 0 && level < 8 ? names[level] : "info";
}
