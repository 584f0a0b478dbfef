/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdint.h>

/* State changes, repairs and failures: each is logged once and handed to
 * whoever watches (tokenctl monitor, the daemon's "last error"). A message
 * names its object itself ("eth0: token ::1 applied"); the object and a
 * one-word name are given again as fields for programs. */

enum event_kind {
	EVENT_DAEMON,
	EVENT_TOKEN,
	EVENT_ASSOCIATION,
};

struct event {
	uint64_t realtime_usec;
	int level; /* syslog priority */
	enum event_kind kind;
	const char *object;  /* interface or association name; NULL for the daemon */
	const char *name;    /* "applied", "repaired", "rotated", "error", ... */
	const char *message; /* the log line */
};

typedef void (*event_sink_t)(const struct event *e, void *data);

/* One sink (the daemon); NULL to remove it. */
void event_set_sink(event_sink_t sink, void *data);

/* Log the message at `level` and pass it to the sink. Debug-level events
 * are only logged. */
void event_emit(int level, enum event_kind kind, const char *object, const char *name,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

const char *event_kind_name(enum event_kind kind);
const char *event_level_name(int level);
