/*
 * The ktest runner: selection by glob, grouping by suite, KTAP v1 output.
 *
 * Output shape (KTAP version 1, one nested subtest per suite):
 *
 *   KTAP version 1
 *   1..<suites>
 *       KTAP version 1
 *       # Subtest: <suite>
 *       1..<tests in suite>
 *       # <file>:<line>: <failed expectation>
 *       not ok 1 <test>
 *       ok 2 <test> # SKIP <reason>
 *   not ok 1 <suite>
 *   # Totals: pass:<n> fail:<n> skip:<n>
 *
 * Every leaf line is preceded by "# run <suite>.<test>" so that a host that
 * loses the guest mid-test (a hang, a triple fault) can name the test that
 * was running. Portable: needs only ktest_port_vprintf() (and the
 * portable kernel/format.c).
 *
 * Each line goes out in one ktest_port_vprintf call: the kernel's printk
 * keeps a call whole, not a line built from several, and other CPUs print
 * while tests run.
 */
#include "ktest.h"

#include <stddef.h>

#include "kernel/format.h"

#define KTEST_INDENT "    "

enum test_state { TEST_PASS, TEST_FAIL, TEST_SKIP };

/* The run in progress. Only the thread that called ktest_run() touches it;
 * a nested ktest_run (the runner's own tests) saves and restores it. */
static struct run_state {
	const struct ktest *current;
	int current_index; /* 1-based number within its suite */
	int suite_index;   /* 1-based number of the suite */
	enum test_state state;
	const char *skip_reason;
	int suite_fail;
	int pass, fail, skip;
} run;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ktest_port_vprintf(fmt, ap);
	va_end(ap);
}

int ktest_strcmp_(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b ? 0 : 1;
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

bool ktest_glob_match(const char *glob, const char *str)
{
	/* Iterative matcher: on a mismatch, retry from the last '*'. */
	const char *star = NULL, *resume = NULL;
	while (*str) {
		if (*glob == '*') {
			star = glob++;
			resume = str;
		} else if (*glob == '?' || *glob == *str) {
			glob++;
			str++;
		} else if (star) {
			glob = star + 1;
			str = ++resume;
		} else {
			return false;
		}
	}
	while (*glob == '*')
		glob++;
	return *glob == '\0';
}

/* True when glob begins with suite and a dot: it names the suite. */
static bool names_suite(const char *glob, const char *suite)
{
	while (*suite && *glob == *suite) {
		glob++;
		suite++;
	}
	return *suite == '\0' && *glob == '.';
}

/* The next glob of the comma list *list into one (KTEST_GLOB_MAX bytes,
 * a longer one cut), *list moved past it and its comma; returns its
 * length (0: an empty glob, ",,"). */
#define KTEST_GLOB_MAX 128
static size_t next_glob(const char **list, char *one)
{
	size_t n = 0;
	const char *p = *list;
	while (*p && *p != ',') {
		if (n + 1 < KTEST_GLOB_MAX)
			one[n++] = *p;
		p++;
	}
	one[n] = '\0';
	*list = *p == ',' ? p + 1 : p;
	return n;
}

/* ktest_select_match; with suite, only globs that name it count (and an
 * empty list selects nothing). */
static bool select_match(const char *list, const char *name, const char *suite)
{
	char one[KTEST_GLOB_MAX];
	if (list == NULL || *list == '\0')
		return suite == NULL;
	while (*list) {
		size_t n = next_glob(&list, one);
		if (n > 0 && (suite == NULL || names_suite(one, suite)) &&
		    ktest_glob_match(one, name))
			return true;
	}
	return false;
}

bool ktest_select_match(const char *list, const char *name)
{
	return select_match(list, name, NULL);
}

static bool selected(const struct ktest *t, const char *select)
{
	char full[160];
	size_t n = 0;
	for (const char *p = t->suite; *p && n + 1 < sizeof(full); p++)
		full[n++] = *p;
	if (n + 1 < sizeof(full))
		full[n++] = '.';
	for (const char *p = t->name; *p && n + 1 < sizeof(full); p++)
		full[n++] = *p;
	full[n] = '\0';
	return select_match(select, full,
	                    t->flags & KTEST_F_EXPLICIT ? t->suite : NULL);
}

/* True when an earlier entry in [begin, t) has the same suite name. */
static bool suite_seen_before(const struct ktest *begin, const struct ktest *t)
{
	for (const struct ktest *p = begin; p < t; p++)
		if (ktest_strcmp_(p->suite, t->suite) == 0)
			return true;
	return false;
}

static int count_in_suite(const struct ktest *begin, const struct ktest *end,
                          const char *suite, const char *select)
{
	int n = 0;
	for (const struct ktest *t = begin; t < end; t++)
		if (ktest_strcmp_(t->suite, suite) == 0 && selected(t, select))
			n++;
	return n;
}

/* Prints "# no test matches 'GLOB'" for each glob of the list select that
 * selects no test of [begin, end) on its own; returns how many. A glob
 * beside others that match (a typo in "paging.*,trpa.*") was left out
 * without a word, and the run passed without the tests it named. */
static int report_unmatched_globs(const struct ktest *begin,
                                  const struct ktest *end, const char *select)
{
	int unmatched = 0;
	char one[KTEST_GLOB_MAX];
	for (const char *list = select; list && *list;) {
		if (next_glob(&list, one) == 0)
			continue;
		const struct ktest *t = begin;
		while (t < end && !selected(t, one))
			t++;
		if (t == end) {
			out("# no test matches '%s'\n", one);
			unmatched++;
		}
	}
	return unmatched;
}

static void run_one(const struct ktest *t, int index)
{
	run.current = t;
	run.current_index = index;
	run.state = TEST_PASS;
	run.skip_reason = NULL;
	out(KTEST_INDENT "# run %s.%s\n", t->suite, t->name);
	t->fn();
	switch (run.state) {
	case TEST_PASS:
		out(KTEST_INDENT "ok %d %s\n", index, t->name);
		run.pass++;
		break;
	case TEST_SKIP:
		out(KTEST_INDENT "ok %d %s # SKIP %s\n", index, t->name,
		    run.skip_reason ? run.skip_reason : "");
		run.skip++;
		break;
	case TEST_FAIL:
		out(KTEST_INDENT "not ok %d %s\n", index, t->name);
		run.fail++;
		run.suite_fail = 1;
		break;
	}
	run.current = NULL;
}

static enum ktest_result run_all(const struct ktest *begin,
                                 const struct ktest *end, const char *select);

enum ktest_result ktest_run(const struct ktest *begin, const struct ktest *end,
                            const char *select)
{
	struct run_state outer = run;
	run = (struct run_state){0};
	enum ktest_result r = run_all(begin, end, select);
	run = outer;
	return r;
}

static enum ktest_result run_all(const struct ktest *begin,
                                 const struct ktest *end, const char *select)
{
	/* A suite counts once, at its first entry, if any of its tests is
	 * selected (not necessarily the first one). */
	int nsuites = 0;
	for (const struct ktest *t = begin; t < end; t++)
		if (!suite_seen_before(begin, t) &&
		    count_in_suite(begin, end, t->suite, select) > 0)
			nsuites++;

	out("KTAP version 1\n");
	if (nsuites == 0) {
		out("1..0\n# no test matches '%s'\n", select ? select : "");
		return KTEST_NO_MATCH;
	}
	out("1..%d\n", nsuites);
	int unmatched = report_unmatched_globs(begin, end, select);

	for (const struct ktest *s = begin; s < end; s++) {
		if (suite_seen_before(begin, s))
			continue;
		int n = count_in_suite(begin, end, s->suite, select);
		if (n == 0)
			continue;
		run.suite_index++;
		run.suite_fail = 0;
		out(KTEST_INDENT "KTAP version 1\n");
		out(KTEST_INDENT "# Subtest: %s\n", s->suite);
		out(KTEST_INDENT "1..%d\n", n);
		int index = 0;
		for (const struct ktest *t = s; t < end; t++)
			if (ktest_strcmp_(t->suite, s->suite) == 0 &&
			    selected(t, select))
				run_one(t, ++index);
		out("%sok %d %s\n", run.suite_fail ? "not " : "",
		    run.suite_index, s->suite);
	}
	out("# Totals: pass:%d fail:%d skip:%d\n", run.pass, run.fail,
	    run.skip);
	if (run.fail)
		return KTEST_FAILED;
	return unmatched ? KTEST_NO_MATCH : KTEST_PASSED;
}

/* Prints one diagnostic line, "# <where><message>", in one call. A
 * message past KTEST_LINE_MAX is cut and says so. */
#define KTEST_LINE_MAX 512
static void diag_line(const char *where, const char *fmt, va_list ap)
{
	char msg[KTEST_LINE_MAX];
	int n = kvsnprintf(msg, sizeof(msg), fmt, ap);
	out(KTEST_INDENT "# %s%s%s\n", where, msg,
	    n >= (int)sizeof(msg) ? " [cut]" : "");
}

void ktest_fail_at(const char *file, int line, const char *fmt, ...)
{
	char where[128];
	va_list ap;
	run.state = TEST_FAIL;
	ksnprintf(where, sizeof(where), "%s:%d: ", file, line);
	va_start(ap, fmt);
	diag_line(where, fmt, ap);
	va_end(ap);
}

void ktest_skip(const char *reason)
{
	if (run.state != TEST_FAIL)
		run.state = TEST_SKIP;
	run.skip_reason = reason;
}

void ktest_diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_line("", fmt, ap);
	va_end(ap);
}

const struct ktest *ktest_current(void)
{
	return run.current;
}

bool ktest_report_crash(const char *reason)
{
	const struct ktest *t = run.current;
	if (t == NULL)
		return false;
	run.current = NULL;
	run.fail++;
	/* The first line of the reason; the console has the rest. */
	int len = 0;
	while (reason[len] && reason[len] != '\n')
		len++;
	out(KTEST_INDENT "not ok %d %s # CRASH %.*s\n", run.current_index,
	    t->name, len, reason);
	out("not ok %d %s\n", run.suite_index, t->suite);
	out("# Totals: pass:%d fail:%d skip:%d\n", run.pass, run.fail,
	    run.skip);
	return true;
}
