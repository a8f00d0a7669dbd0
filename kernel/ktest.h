/*
 * ktest: a small unit-test framework whose output is KTAP version 1.
 *
 * Tests register themselves with KTEST(suite, name) into the linker section
 * "ktests"; the runner groups them by suite (in order of first appearance),
 * selects them with a glob on "suite.name", and prints one KTAP subtest per
 * suite. KTEST_EXPLICIT(suite, name) registers one that runs only when a
 * glob names its suite (below): the benchmarks, which print figures and
 * judge next to nothing, so that "*" (make test) does not count them as
 * tests. The same runner is built into the test kernel (output on COM1)
 * and into the host test binary (output on stdout), so a test file under
 * tests/host/ and one under tests/kernel/ read alike.
 *
 * Expectations (KEXPECT_*) record a failure with file:line and go on;
 * assertions (KASSERT_*) record it and return from the test function.
 * Contexts: thread context only; not reentrant.
 */
#ifndef KERNEL_KTEST_H
#define KERNEL_KTEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

struct ktest {
	const char *suite;
	const char *name;
	void (*fn)(void);
	unsigned flags; /* enum ktest_flags */
};

enum ktest_flags {
	/* Selected only by a glob that begins with the suite's name and a
	 * dot ("bench.*", "bench.context_switch"), never by "*" or "*.x". */
	KTEST_F_EXPLICIT = 1u << 0,
};

#define KTEST_WITH_FLAGS_(suite, name, flags)                             \
	static void ktest_fn_##suite##_##name(void);                      \
	static const struct ktest ktest_desc_##suite##_##name             \
	        __attribute__((used, section("ktests"), aligned(8))) = {  \
	                #suite, #name, ktest_fn_##suite##_##name, flags}; \
	static void ktest_fn_##suite##_##name(void)

#define KTEST(suite, name) KTEST_WITH_FLAGS_(suite, name, 0)
#define KTEST_EXPLICIT(suite, name) \
	KTEST_WITH_FLAGS_(suite, name, KTEST_F_EXPLICIT)

/* Outcome of a whole run; the kernel maps these onto QEMU exit codes. */
enum ktest_result {
	KTEST_PASSED = 0,
	KTEST_FAILED = 1,
	KTEST_NO_MATCH = 2, /* a glob of the list selected no test: failed */
};

/* What the runner needs from its host: formatted output. */
void ktest_port_vprintf(const char *fmt, va_list ap);

/*
 * Runs the tests in [begin, end) whose "suite.name" matches one of the
 * comma-separated globs in select (NULL or "" selects all), a
 * KTEST_F_EXPLICIT test only if the glob that matches it begins with its
 * suite's name and a dot.
 */
enum ktest_result ktest_run(const struct ktest *begin, const struct ktest *end,
                            const char *select);

/* Shell-style match of "*" and "?" against the whole string. */
bool ktest_glob_match(const char *glob, const char *str);

/* True when name matches one of the comma-separated globs in list. */
bool ktest_select_match(const char *list, const char *name);

/* Records a failure of the current test; prints a KTAP diagnostic line
 * (one console write; formatted by kernel/format.c, cut past 512 bytes). */
void ktest_fail_at(const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Marks the current test skipped (the caller returns right after). */
void ktest_skip(const char *reason);

/* Prints a diagnostic line ("# ...") at the current test's indentation,
 * as ktest_fail_at does. */
void ktest_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Called by the panic path: if a test is running, reports it as "not ok"
 * with the reason and closes the KTAP document so the host sees where the
 * run ended. Returns false when no test was running.
 */
bool ktest_report_crash(const char *reason);

/* The test that is running, or NULL. */
const struct ktest *ktest_current(void);

#define KEXPECT(cond)                                                    \
	do {                                                             \
		if (!(cond))                                             \
			ktest_fail_at(__FILE__, __LINE__, "expected %s", \
			              #cond);                            \
	} while (0)

#define KTEST_CMP_(a, op, b, onfail)                                          \
	do {                                                                  \
		unsigned long long ktest_a_ = (unsigned long long)(a);        \
		unsigned long long ktest_b_ = (unsigned long long)(b);        \
		if (!(ktest_a_ op ktest_b_)) {                                \
			ktest_fail_at(__FILE__, __LINE__,                     \
			              "expected %s %s %s (0x%llx vs 0x%llx, " \
			              "%lld vs %lld)",                        \
			              #a, #op, #b, ktest_a_, ktest_b_,        \
			              (long long)ktest_a_,                    \
			              (long long)ktest_b_);                   \
			onfail;                                               \
		}                                                             \
	} while (0)

#define KEXPECT_EQ(a, b) KTEST_CMP_(a, ==, b, (void)0)
#define KEXPECT_NE(a, b) KTEST_CMP_(a, !=, b, (void)0)
#define KASSERT(cond)                                                     \
	do {                                                              \
		if (!(cond)) {                                            \
			ktest_fail_at(__FILE__, __LINE__, "assertion %s", \
			              #cond);                             \
			return;                                           \
		}                                                         \
	} while (0)
#define KASSERT_EQ(a, b) KTEST_CMP_(a, ==, b, return )
#define KASSERT_NE(a, b) KTEST_CMP_(a, !=, b, return )

int ktest_strcmp_(const char *a, const char *b);
#define KEXPECT_STREQ(a, b)                                                   \
	do {                                                                  \
		const char *ktest_sa_ = (a), *ktest_sb_ = (b);                \
		if (ktest_strcmp_(ktest_sa_, ktest_sb_) != 0)                 \
			ktest_fail_at(__FILE__, __LINE__,                     \
			              "expected %s == %s (\"%s\" vs \"%s\")", \
			              #a, #b, ktest_sa_, ktest_sb_);          \
	} while (0)

#define KTEST_SKIP(reason)          \
	do {                        \
		ktest_skip(reason); \
		return;             \
	} while (0)

/* True if each of the n bytes at p is 0: a zeroing check. Any context. */
static inline bool ktest_all_zero(const void *p, unsigned long n)
{
	const uint8_t *b = p;
	for (unsigned long k = 0; k < n; k++)
		if (b[k])
			return false;
	return true;
}

#endif
