/*
 * The line editor tests' helpers (lineedit_test.c, lineedit_utf8_test.c):
 * an editor fed scripted keystrokes, and what it echoed, as a terminal
 * would receive it.
 */
#ifndef TESTS_KERNEL_LINEEDIT_TEST_UTIL_H
#define TESTS_KERNEL_LINEEDIT_TEST_UTIL_H

#include "kernel/lineedit.h"
#include "kernel/string.h"

/* What the editor echoed since the last reset. */
static char echo[1024];
static size_t echo_len;

static inline void capture(void *ctx, const char *s, size_t n, const char *line)
{
	for (size_t i = 0; i < n && echo_len + 1 < sizeof(echo); i++)
		echo[echo_len++] = s[i];
	echo[echo_len] = '\0';
}

static struct lineedit le;

static inline void reset(void)
{
	lineedit_init(&le, capture, NULL);
	echo_len = 0;
	echo[0] = '\0';
}

/* Feeds keys; returns the event of the last key, and counts the events
 * that were not LINEEDIT_MORE before it in *early (if not NULL). */
static inline enum lineedit_event type(const char *keys, unsigned *early)
{
	enum lineedit_event ev = LINEEDIT_MORE;
	size_t n = strlen(keys);
	for (size_t i = 0; i < n; i++) {
		if (ev != LINEEDIT_MORE && early)
			(*early)++;
		ev = lineedit_feed(&le, keys[i]);
	}
	return ev;
}

#endif
