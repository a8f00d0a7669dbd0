/* The report lines of poison mode's records (mm/spanheap_track.c's
 * spanheap_track_log, which objcache_track.c's reports use too), read
 * back from a captured log (mm_port_log_capture): the line of an
 * object's record, and whether it names a return address as the port
 * names it. For spanheap_track_test.c and objcache_track_test.c. */
#ifndef TESTS_HOST_TRACK_LOG_UTIL_H
#define TESTS_HOST_TRACK_LOG_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../mm/port.h"
#include "../../mm/spanheap_track.h"

/* The log a PANIC_LOGGED statement's report lines are captured into. */
static char log[16384];

/* Runs stmt, which must panic with a message holding what
 * (SH_EXPECT_PANIC, the including test's), capturing the log lines
 * before it into log. */
#define PANIC_LOGGED(stmt, what)                       \
	do {                                           \
		mm_port_set_quiet(true);               \
		mm_port_log_capture(log, sizeof(log)); \
		SH_EXPECT_PANIC(stmt, what);           \
		mm_port_log_capture(NULL, 0);          \
		mm_port_set_quiet(false);              \
	} while (0)

/* The log line that starts "spanheap: object OBJ: WHAT" in log, or NULL. */
static inline const char *line_of(const char *log, const void *obj,
                                  const char *what)
{
	char head[96];
	snprintf(head, sizeof(head), "spanheap: object %#lx: %s",
	         (unsigned long)(uintptr_t)obj, what);
	return strstr(log, head);
}

/* True if the line at l (to its newline) names pc as the port does. */
static inline bool line_names(const char *l, uintptr_t pc)
{
	char name[128];
	mm_port_pc_name(pc, name, sizeof(name));
	const char *end = strchr(l, '\n');
	const char *at = strstr(l, name);
	return at && (!end || at < end);
}

/* The index of the first of t's return addresses inside function fn,
 * or -1. Where fn ends is taken as 1 KiB past its start (larger than the
 * tests' out-of-line callers), or other's start (the test's other
 * caller) if that comes first. */
static inline int track_pc_in(const struct spanheap_track *t, void *fn,
                              void *other)
{
	uintptr_t lo = (uintptr_t)fn, hi = lo + 1024, o = (uintptr_t)other;
	if (o > lo && o < hi)
		hi = o;
	for (unsigned i = 0; i < t->npcs; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return (int)i;
	return -1;
}

#endif
