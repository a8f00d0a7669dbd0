/*
 * The failure injection switch's syntax (mm/spanheap_fail.c,
 * spanheap_fail_parse: the kernel's mm.fail= and mmfail, the hosted
 * malloc's MM_MALLOC_FAIL) at each field's edges: 0, 1, the largest
 * value, one past it, 2^63 and 2^64, a sign, a blank, trailing junk and
 * an empty field. A value taken gives its fields and logs nothing; one
 * refused logs one line naming the switch, the field and its range. The
 * fuzz target (tests/host/fuzz/fail_parse_fuzz.c) checks the same against
 * a reference, at random; this pins the edges in every host run.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_fail.h"
#include "mm_port_posix.h"

#define ALL (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE)

/* Values taken, with the fields they give. */
KTEST(spanheap_fail_parse, takes_each_fields_edges)
{
	static const struct {
		const char *s;
		struct spanheap_fail_attr want;
	} good[] = {
	        {"0,0,0", {0, 0, 0, 0, 0}},
	        {"1,1,1", {1, 1, 1, 0, 0}},
	        {"4294967295,10000,9223372036854775807",
	         {UINT32_MAX, 10000, INT64_MAX, 0, 0}},
	        {"1,10000,-1", {1, 10000, -1, 0, 0}},
	        {"00000000000000000007,1,1", {7, 1, 1, 0, 0}},
	        {"1,1,1,small", {1, 1, 1, 0, SPANHEAP_FAIL_SMALL}},
	        {"1,1,1,large+atomic",
	         {1, 1, 1, 0, SPANHEAP_FAIL_LARGE | SPANHEAP_FAIL_ATOMIC_ONLY}},
	        {"1,1,1,all,0", {1, 1, 1, 0, ALL}},
	        {"1,1,1,all,18446744073709551615", {1, 1, 1, UINT64_MAX, ALL}},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct spanheap_fail_attr a;
		memset(&a, 0x5a, sizeof(a));
		unsigned long logs = mm_port_log_count();
		bool ok = spanheap_fail_parse("test.fail", good[i].s, &a);
		const struct spanheap_fail_attr *w = &good[i].want;
		if (!ok || a.interval != w->interval ||
		    a.probability != w->probability || a.times != w->times ||
		    a.seed != w->seed || a.what != w->what)
			ktest_fail_at(__FILE__, __LINE__,
			              "'%s': %d, %u,%u,%ld,%#x,%lu", good[i].s,
			              ok, a.interval, a.probability,
			              (long)a.times, a.what,
			              (unsigned long)a.seed);
		KEXPECT_EQ(mm_port_log_count(), logs);
	}
}

/* Values refused, each with the line that names what was wrong. */
KTEST(spanheap_fail_parse, refuses_past_each_fields_edges)
{
	static const struct {
		const char *s, *says;
	} bad[] = {
	        {"", "interval '' is not a number in [0, 4294967295]"},
	        {"4294967296,1,1", "interval '4294967296' is not a number in"},
	        {"18446744073709551616,1,1", "interval '18446744073709551616'"},
	        {"-1,1,1", "interval '-1' is not a number"},
	        {" 1,1,1", "interval ' 1' is not a number"},
	        {"+1,1,1", "interval '+1' is not a number"},
	        {"1x,1,1", "interval '1x' is not a number"},
	        {"000000000000000000007,1,1", "interval '0000000000000000000"},
	        {"1,10001,1",
	         "probability '10001' is not a number in [0, 10000]"},
	        {"1,1,9223372036854775808",
	         "times (or -1) '9223372036854775808' is not a number in [0, "
	         "9223372036854775807]"},
	        {"1,1,-2", "times (or -1) '-2'"},
	        {"1,1,", "times (or -1) '' is not a number"},
	        {"1,1,1 ", "times (or -1) '1 ' is not a number"},
	        {"1,1,1,", "what '' is not small, large, atomic or all"},
	        {"1,1,1,atomic", "what 'atomic' names no size"},
	        {"1,1,1,small+", "what 'small+' is not small"},
	        {"1,1,1,all,18446744073709551616",
	         "seed '18446744073709551616' is not a number in [0, "
	         "18446744073709551615]"},
	        {"1,1,1,all,-1", "seed '-1'"},
	        {"1", "'1' is not interval,probability,times[,what[,seed]]"},
	        {"1,1", "'1,1' is not interval,probability,times"},
	        {"1,1,1,all,1,1", "'1,1,1,all,1,1' is not interval,"},
	};
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spanheap_fail_attr a;
		unsigned long logs = mm_port_log_count();
		bool ok = spanheap_fail_parse("test.fail", bad[i].s, &a);
		const char *line = mm_port_last_log();
		if (ok || mm_port_log_count() != logs + 1 ||
		    strncmp(line, "test.fail: ", 11) != 0 ||
		    !strstr(line, bad[i].says))
			ktest_fail_at(__FILE__, __LINE__,
			              "'%s': %s, %lu lines, last \"%s\"",
			              bad[i].s, ok ? "taken" : "refused",
			              mm_port_log_count() - logs, line);
		/* The boot option's line (the kernel's mm.fail) ends as its
		 * other options' refusals do; the command's does not. */
		size_t n = strlen(line);
		KEXPECT(n < 9 || strcmp(line + n - 9, "; ignored") != 0);
		KEXPECT(!spanheap_fail_parse_option("test.fail", bad[i].s, &a));
		line = mm_port_last_log();
		n = strlen(line);
		if (!strstr(line, bad[i].says) || n < 9 ||
		    strcmp(line + n - 9, "; ignored") != 0)
			ktest_fail_at(__FILE__, __LINE__,
			              "'%s' as an option: last \"%s\"",
			              bad[i].s, line);
	}
	mm_port_set_quiet(false);
}
