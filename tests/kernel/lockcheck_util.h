/* Shared by the lock checker's tests (tests/kernel/lockcheck_*test.c):
 * running a deliberate violation in record mode and reading its message. */
#ifndef TESTS_KERNEL_LOCKCHECK_UTIL_H
#define TESTS_KERNEL_LOCKCHECK_UTIL_H

#include <stdbool.h>

#include "kernel/lockcheck.h"

/* Runs fn in record mode; returns how many violations it caused. */
static inline unsigned recorded(void (*fn)(void))
{
	unsigned before = lockcheck_violations();
	bool old = lockcheck_set_record(true);
	fn();
	lockcheck_set_record(old);
	return lockcheck_violations() - before;
}

static inline bool message_has(const char *a, const char *b)
{
	const char *m = lockcheck_last_violation();
	bool fa = false, fb = false;
	for (const char *p = m; *p; p++) {
		const char *x = a, *q = p;
		while (*x && *q == *x)
			x++, q++;
		fa |= !*x;
		x = b, q = p;
		while (*x && *q == *x)
			x++, q++;
		fb |= !*x;
	}
	return fa && fb;
}

#endif
