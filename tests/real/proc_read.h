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

#endif
