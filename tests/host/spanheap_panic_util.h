/*
 * tests/host/spanheap_panic_util.h: the span heap's host tests behind a
 * panic catch (mm_port_posix.h's MM_PORT_PANICS): the heap's checker, a
 * statement expected to panic with a given message, and the check that a
 * caught panic left no pin. Included by spanheap_test_util.h; the macros
 * report through ktest.h, which their users include.
 */
#ifndef TESTS_HOST_SPANHEAP_PANIC_UTIL_H
#define TESTS_HOST_SPANHEAP_PANIC_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../../mm/spanheap.h"
#include "mm_port_posix.h"

/* A caught panic abandons whatever mm/ was doing, a pin included; the
 * POSIX port's mm_panic undoes this thread's pins before it longjmps. This
 * checks that it did: the thread may sleep again. */
static inline void sh_unpin_after_panic(void)
{
	if (!mm_port_can_sleep())
		mm_panic("a caught panic left this thread pinned");
}

/* Runs stmt expecting a panic whose message holds what, and checks that
 * the panic left no pin; fails the current test (ktest.h) if not. */
#define SH_EXPECT_PANIC(stmt, what)                                       \
	do {                                                              \
		bool fired_ = MM_PORT_PANICS(stmt);                       \
		sh_unpin_after_panic();                                   \
		if (!fired_ || !strstr(mm_port_last_panic(), (what)))     \
			ktest_fail_at(__FILE__, __LINE__,                 \
			              "panic \"%s\", wanted one saying "  \
			              "\"%s\"",                           \
			              fired_ ? mm_port_last_panic() : "", \
			              (what));                            \
	} while (0)

/* Runs spanheap_check; true if it panicked (the message is then in
 * mm_port_last_panic()). */
__attribute__((noinline, unused)) static bool
sh_check_panics(struct spanheap *sh)
{
	return MM_PORT_PANICS(spanheap_check(sh));
}

/* Fails the current test if spanheap_check panics, naming what. */
#define SH_CHECK(shp, what)                                                 \
	do {                                                                \
		if (sh_check_panics(shp))                                   \
			ktest_fail_at(__FILE__, __LINE__, "%s: %s", (what), \
			              mm_port_last_panic());                \
	} while (0)

/*
 * Runs stmt expecting a panic whose message holds what and names ptr (as
 * %p prints it), then leaves any pin the panic abandoned.
 */
#define EXPECT_MISUSE(stmt, what, ptr)                                \
	do {                                                          \
		bool fired_ = MM_PORT_PANICS(stmt);                   \
		sh_unpin_after_panic();                               \
		sh_expect_message(__FILE__, __LINE__, fired_, (what), \
		                  (const void *)(ptr));               \
	} while (0)

static inline void sh_expect_message(const char *file, int line, bool fired,
                                     const char *what, const void *ptr)
{
	char name[32];
	snprintf(name, sizeof(name), "%p", ptr);
	const char *msg = mm_port_last_panic();
	if (!fired)
		ktest_fail_at(file, line, "no panic (wanted \"%s\" for %s)",
		              what, name);
	else if (!strstr(msg, what) || !strstr(msg, name))
		ktest_fail_at(file, line,
		              "panic \"%s\" does not say \"%s\" and %s", msg,
		              what, name);
}

#endif
