/*
 * tests/real/proc_read.h: reading a small /proc file whole, for
 * malloc-api-test, malloc-hooks-test and malloc-tsan-test alike. The
 * programs are built with different flags (TSan's, or none under
 * LD_PRELOAD; malloc.mk), so they share this as one static inline
 * function rather than an object.
 */
#ifndef TESTS_REAL_PROC_READ_H
#define TESTS_REAL_PROC_READ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Reads the file at path into buf, NUL-terminated, to its end or to
 * buf's (/proc/self/maps comes a page or so a read); returns its length,
 * or 0 or -1 if nothing was read. Allocates nothing, so that a test may
 * call it where an allocation would change what it looks at. */
static inline ssize_t proc_read(const char *path, char *buf, size_t bufsz)
{
	int f = open(path, O_RDONLY);
	ssize_t n = f >= 0 ? 0 : -1, r;
	while (f >= 0 && (size_t)n + 1 < bufsz &&
	       (r = read(f, buf + n, bufsz - 1 - (size_t)n)) > 0)
		n += r;
	if (f >= 0)
		close(f);
	buf[n > 0 ? n : 0] = 0;
	return n;
}

/* This process's thread count (/proc/self/status), read without
 * allocating (async-signal-safe: a signal handler may call it); -1 if it
 * cannot be read. */
static inline int proc_thread_count(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return -1;
	const char *p = strstr(buf, "\nThreads:");
	return p ? atoi(p + strlen("\nThreads:")) : -1;
}

#endif
