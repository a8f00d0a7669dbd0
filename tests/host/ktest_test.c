/* Tests of the ktest runner's own selection logic (globs on suite.name). */
#include "../../kernel/ktest.h"

#include <stddef.h>
#include <string.h>

#include "main.h"

KTEST(ktest, glob_literal)
{
	KEXPECT(ktest_glob_match("mm.alloc", "mm.alloc"));
	KEXPECT(!ktest_glob_match("mm.alloc", "mm.alloc2"));
	KEXPECT(!ktest_glob_match("mm.alloc2", "mm.alloc"));
	KEXPECT(ktest_glob_match("", ""));
	KEXPECT(!ktest_glob_match("", "x"));
}

KTEST(ktest, glob_star_and_question)
{
	KEXPECT(ktest_glob_match("*", ""));
	KEXPECT(ktest_glob_match("*", "anything.at_all"));
	KEXPECT(ktest_glob_match("mm.*", "mm.free"));
	KEXPECT(!ktest_glob_match("mm.*", "vmm.free"));
	KEXPECT(ktest_glob_match("*.free", "vmm.free"));
	KEXPECT(ktest_glob_match("a*b*c", "aXXbYYbZc"));
	KEXPECT(!ktest_glob_match("a*b*c", "aXXbYYbZ"));
	KEXPECT(ktest_glob_match("p?ge", "page"));
	KEXPECT(!ktest_glob_match("p?ge", "pge"));
	KEXPECT(ktest_glob_match("**x", "abx"));
}

KTEST(ktest, select_list)
{
	KEXPECT(ktest_select_match(NULL, "a.b"));
	KEXPECT(ktest_select_match("", "a.b"));
	KEXPECT(ktest_select_match("x.*,a.*", "a.b"));
	KEXPECT(!ktest_select_match("x.*,y.*", "a.b"));
	KEXPECT(ktest_select_match(",,a.b,", "a.b"));
}

/* A nested run over a synthetic table: suites "a" and "b" interleaved. */
static int ran_a1, ran_a2, ran_b1;
static void a1(void)
{
	ran_a1++;
}
static void a2(void)
{
	ran_a2++;
	KEXPECT_EQ(1, 2); /* fails: the nested run must report it */
}
static void b1(void)
{
	ran_b1++;
	ktest_skip("not today");
}
static const struct ktest table[] = {
        {"a", "one", a1, 0},
        {"b", "one", b1, 0},
        {"a", "two", a2, 0},
};

static enum ktest_result nested(const char *select, char *out, size_t size)
{
	ran_a1 = ran_a2 = ran_b1 = 0;
	host_capture_begin(out, size);
	enum ktest_result r = ktest_run(table, table + 3, select);
	host_capture_end();
	return r;
}

KTEST(ktest, selects_a_later_test_of_a_suite)
{
	/* Regression: the plan once skipped a suite whose first test was not
	 * selected, so "a.two" matched nothing. */
	char out[2048];
	KEXPECT_EQ(nested("a.two", out, sizeof(out)), KTEST_FAILED);
	KEXPECT_EQ(ran_a1, 0);
	KEXPECT_EQ(ran_a2, 1);
	KEXPECT(strstr(out, "1..1\n    KTAP version 1\n    # Subtest: a\n"
	                    "    1..1\n") != NULL);
	KEXPECT(strstr(out, "    not ok 1 two\nnot ok 1 a\n") != NULL);
}

KTEST(ktest, groups_by_suite_and_reports_each_result)
{
	char out[2048];
	KEXPECT_EQ(nested("*", out, sizeof(out)), KTEST_FAILED);
	KEXPECT_EQ(ran_a1 + ran_a2 + ran_b1, 3);
	/* Suite a (both tests, in order), then suite b. */
	const char *a = strstr(out, "# Subtest: a\n    1..2\n");
	const char *b = strstr(out, "# Subtest: b\n    1..1\n");
	KEXPECT(a != NULL && b != NULL && a < b);
	KEXPECT(strstr(out, "    ok 1 one\n    # run a.two\n") != NULL);
	KEXPECT(strstr(out, "    ok 1 one # SKIP not today\nok 2 b\n") != NULL);
	KEXPECT(strstr(out, "# Totals: pass:1 fail:1 skip:1\n") != NULL);
	KEXPECT(strstr(out, "ktest_test.c:") != NULL); /* file:line */
}

KTEST(ktest, no_match_is_reported)
{
	char out[512];
	KEXPECT_EQ(nested("zzz*", out, sizeof(out)), KTEST_NO_MATCH);
	KEXPECT(strstr(out, "1..0\n# no test matches 'zzz*'\n") != NULL);
	KEXPECT_EQ(ran_a1 + ran_a2 + ran_b1, 0);
}

/* A glob of a list that selects nothing is named, and fails the run,
 * even when the others select tests (a typo beside a good glob). */
KTEST(ktest, a_glob_of_a_list_that_matches_nothing_is_reported)
{
	char out[2048];
	KEXPECT_EQ(nested("b.*,zzz*", out, sizeof(out)), KTEST_NO_MATCH);
	KEXPECT_EQ(ran_b1, 1);
	KEXPECT(strstr(out, "1..1\n# no test matches 'zzz*'\n") != NULL);
	KEXPECT(strstr(out, "# Totals: pass:0 fail:0 skip:1\n") != NULL);
	/* A failed test still makes it a failed run. */
	KEXPECT_EQ(nested("a.*,zzz*", out, sizeof(out)), KTEST_FAILED);
	KEXPECT(strstr(out, "# no test matches 'zzz*'\n") != NULL);
	/* Every glob selects a test: no such line. */
	KEXPECT_EQ(nested("b.*,,b.one", out, sizeof(out)), KTEST_PASSED);
	KEXPECT(strstr(out, "no test matches") == NULL);
}

/* An explicit test ("x.bench") runs only when a glob names its suite. */
static int ran_bench, ran_plain;
static void bench1(void)
{
	ran_bench++;
}
static void plain1(void)
{
	ran_plain++;
}
static const struct ktest explicit_table[] = {
        {"x", "plain", plain1, 0},
        {"x", "bench", bench1, KTEST_F_EXPLICIT},
};

static enum ktest_result explicit_run(const char *select)
{
	char out[2048];
	ran_bench = ran_plain = 0;
	host_capture_begin(out, sizeof(out));
	enum ktest_result r =
	        ktest_run(explicit_table, explicit_table + 2, select);
	host_capture_end();
	return r;
}

KTEST(ktest, explicit_tests_run_only_when_their_suite_is_named)
{
	static const struct {
		const char *select;
		int bench, plain;
	} cases[] = {
	        {"*", 0, 1},        {"", 0, 1},        {"*.bench", 0, 0},
	        {"x*", 0, 1},       {"?.bench", 0, 0}, {"x.*", 1, 1},
	        {"x.bench", 1, 0},  {"x.b*", 1, 0},    {"*,x.bench", 1, 1},
	        {"xx.bench", 0, 0}, {"x.plain", 0, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum ktest_result r = explicit_run(cases[i].select);
		if (ran_bench != cases[i].bench || ran_plain != cases[i].plain)
			ktest_fail_at(__FILE__, __LINE__,
			              "'%s': bench ran %d times, plain %d; "
			              "expected %d, %d",
			              cases[i].select, ran_bench, ran_plain,
			              cases[i].bench, cases[i].plain);
		KEXPECT_EQ(r, cases[i].bench + cases[i].plain ? KTEST_PASSED
		                                              : KTEST_NO_MATCH);
	}
}

/* A skip after a failed expectation keeps the failure: the reason is
 * printed, the test reads "not ok" and the run fails. Until this review
 * nothing tested it; a skip that overwrote the state would read a failure
 * as "ok ... # SKIP". */
static void fails_then_skips(void)
{
	KEXPECT_EQ(1, 2);
	ktest_skip("too late");
}
/* The crash report for the test that was running (printk's panic path):
 * its first line only, then the suite's result and the totals, the crash
 * counted as a failure. */
static void crashes(void)
{
	ktest_report_crash("boom\nsecond line");
}
static const struct ktest verdict_table[] = {
        {"v", "pass", a1, 0},
        {"v", "skip_after_fail", fails_then_skips, 0},
        {"w", "crash", crashes, 0},
};

static enum ktest_result verdict_run(const char *select, char *out, size_t size)
{
	host_capture_begin(out, size);
	enum ktest_result r =
	        ktest_run(verdict_table, verdict_table + 3, select);
	host_capture_end();
	return r;
}

KTEST(ktest, a_skip_after_a_failure_is_a_failure)
{
	char out[2048];
	KEXPECT_EQ(verdict_run("v.*", out, sizeof(out)), KTEST_FAILED);
	KEXPECT(strstr(out, "    not ok 2 skip_after_fail\nnot ok 1 v\n") !=
	        NULL);
	KEXPECT(strstr(out, "# Totals: pass:1 fail:1 skip:0\n") != NULL);
}

KTEST(ktest, a_crash_ends_the_document_as_a_failure)
{
	char out[2048];
	verdict_run("*", out, sizeof(out));
	KEXPECT(strstr(out, "    # run w.crash\n"
	                    "    not ok 1 crash # CRASH boom\n"
	                    "not ok 2 w\n"
	                    "# Totals: pass:1 fail:2 skip:0\n") != NULL);
}

/* A glob past the runner's 127-byte buffer is cut there, not written
 * past it (ASan's stack check sees a byte too far), and the cut glob
 * still selects by its first 127 bytes. */
KTEST(ktest, an_overlong_glob_is_cut_inside_its_buffer)
{
	char glob[200];
	memset(glob, 'x', sizeof(glob) - 1);
	glob[sizeof(glob) - 1] = '\0';
	KEXPECT(!ktest_select_match(glob, "a.b"));
	glob[126] = '*'; /* the cut keeps the star, drops the rest */
	char name[140];
	memset(name, 'x', 130);
	memcpy(name + 130, ".y", 3);
	KEXPECT(ktest_select_match(glob, name));
	name[0] = 'z';
	KEXPECT(!ktest_select_match(glob, name));
}

/* A diagnostic longer than its line buffer (511 bytes and the NUL) says
 * it was cut; one that fits does not. */
static char long_msg[600];
static void diag_511(void)
{
	ktest_diag("%.511s", long_msg);
}
static void diag_512(void)
{
	ktest_diag("%.512s", long_msg);
}
static const struct ktest diag_table[] = {
        {"d", "fits", diag_511, 0},
        {"d", "cut", diag_512, 0},
};

KTEST(ktest, a_cut_diagnostic_says_so)
{
	static char out[4096];
	memset(long_msg, 'm', sizeof(long_msg) - 1);
	host_capture_begin(out, sizeof(out));
	ktest_run(diag_table, diag_table + 2, "*");
	host_capture_end();
	const char *fits = strstr(out, "# run d.fits\n");
	const char *cut = strstr(out, "# run d.cut\n");
	KASSERT(fits != NULL && cut != NULL);
	KEXPECT(strstr(fits, "mmm\n    ok 1 fits\n") != NULL);
	KEXPECT(strstr(cut, "mmm [cut]\n    ok 2 cut\n") != NULL);
}

/* Each assertion can fail: a nested test per failing form (each must
 * read "not ok"), and one where every form holds (it must read "ok"). A
 * KASSERT form ends its test: what follows it must not run. */
static int ran_past_assert;
const char *ktest_test_null; /* NULL, unseen by the format check */
static void streq_null(void)
{
	KEXPECT_STREQ(ktest_test_null, "x");
}
static void streq_prefix(void)
{
	KEXPECT_STREQ("ab", "abc");
}
static void streq_differ(void)
{
	KEXPECT_STREQ("abd", "abc");
}
static void ne_equal(void)
{
	KEXPECT_NE(7, 7);
}
static void eq_wide(void)
{
	KEXPECT_EQ(1ull << 40, 0); /* not cut to 32 bits */
}
static void assert_eq_stops(void)
{
	KASSERT_EQ(1, 2);
	ran_past_assert++;
}
static void assert_ne_stops(void)
{
	KASSERT_NE(3, 3);
	ran_past_assert++;
}
static void assert_stops(void)
{
	KASSERT(1 == 2);
	ran_past_assert++;
}
static void all_hold(void)
{
	KEXPECT_STREQ(ktest_test_null, ktest_test_null);
	KEXPECT_STREQ("abc", "abc");
	KEXPECT_NE(1, 2);
	KEXPECT_EQ(-1, -1);
	KASSERT_EQ(5, 5);
	KASSERT_NE(5, 6);
	KASSERT(true);
	ran_past_assert += 100;
}
static const struct ktest assert_table[] = {
        {"f", "streq_null", streq_null, 0},
        {"f", "streq_prefix", streq_prefix, 0},
        {"f", "streq_differ", streq_differ, 0},
        {"f", "ne_equal", ne_equal, 0},
        {"f", "eq_wide", eq_wide, 0},
        {"f", "assert_eq_stops", assert_eq_stops, 0},
        {"f", "assert_ne_stops", assert_ne_stops, 0},
        {"f", "assert_stops", assert_stops, 0},
        {"p", "all_hold", all_hold, 0},
};

KTEST(ktest, every_assertion_can_fail)
{
	static char out[8192];
	ran_past_assert = 0;
	host_capture_begin(out, sizeof(out));
	enum ktest_result r = ktest_run(assert_table, assert_table + 9, "*");
	host_capture_end();
	KEXPECT_EQ(r, KTEST_FAILED);
	KEXPECT(strstr(out, "# Totals: pass:1 fail:8 skip:0\n") != NULL);
	KEXPECT(strstr(out, "    ok 1 all_hold\n") != NULL);
	KEXPECT_EQ(ran_past_assert, 100);
}
