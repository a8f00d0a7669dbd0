/*
 * Host tests of kernel/bootinfo_cmdline.c at the edges the kernel's own
 * tests (tests/kernel/bootinfo_test.c) leave open, each written against a
 * mutant they let through: a number at its option's limits, and a word
 * whose key merely starts with an option's key.
 */
#include "../../kernel/bootinfo_testing.h"
#include "../../kernel/ktest.h"
#include "kernel_stubs.h"

#include <string.h>

/*
 * [lo, hi] is closed at both ends: mm.scav_budget=1, its lower limit,
 * must be taken (with the test made v <= lo it was refused and printed
 * as out of range), and so must hi; one past either is refused.
 */
KTEST(bootinfo_cmdline, number_at_either_limit_is_taken)
{
	uint64_t v = 0;
	KEXPECT(cmdline_find_uint("a=1 b=9 c=0 d=10", "a", 1, 9, &v));
	KEXPECT_EQ(v, 1);
	KEXPECT(cmdline_find_uint("a=1 b=9 c=0 d=10", "b", 1, 9, &v));
	KEXPECT_EQ(v, 9);
	v = 77;
	KEXPECT(!cmdline_find_uint("a=1 b=9 c=0 d=10", "c", 1, 9, &v));
	KEXPECT(!cmdline_find_uint("a=1 b=9 c=0 d=10", "d", 1, 9, &v));
	KEXPECT_EQ(v, 77);
	KEXPECT(cmdline_find_uint("z=0", "z", 0, 0, &v));
	KEXPECT_EQ(v, 0);
	KEXPECT(cmdline_find_uint("m=18446744073709551615", "m", 0, UINT64_MAX,
	                          &v));
	KEXPECT_EQ(v, UINT64_MAX);
}

/*
 * A word repeats an option only when its key is the same, not when an
 * earlier word's key starts with it: in "ktestx=1 ktest=a" the first is
 * unknown and the second is the ktest option. With key_seen_before
 * comparing only the shorter key's bytes, ktest=a was named as a repeat
 * of ktest and ignored (2 words printed, not 1).
 */
KTEST(bootinfo_cmdline, key_that_starts_an_earlier_key_is_no_repeat)
{
	unsigned long lines = kstub_lines;
	KEXPECT_EQ(cmdline_find_unknown("ktestx=1 ktest=a"), 1);
	KEXPECT_EQ(kstub_lines - lines, 1);
	KEXPECT(strstr(kstub_last_line, "unknown option 'ktestx=1'") != NULL);
	KEXPECT_EQ(cmdline_find_unknown("smp.expect.x smp.expect=2"), 1);
	/* The same key twice is a repeat, named. */
	KEXPECT_EQ(cmdline_find_unknown("ktest=a ktest=b"), 1);
	KEXPECT(strstr(kstub_last_line, "'ktest=b' repeats ktest") != NULL);
}

/*
 * A word that merely starts with an on/off option's key ("acpi.no_madtx")
 * is another word, not the option given a value: the option written
 * alone after it is on. Printed and refused as a value, it left the
 * option off.
 */
KTEST(bootinfo_cmdline, flag_after_a_word_it_starts_is_on)
{
	unsigned long lines = kstub_lines;
	KEXPECT(cmdline_find_flag("acpi.no_madtx acpi.no_madt",
	                          "acpi.no_madt"));
	KEXPECT_EQ(kstub_lines - lines, 0);
	KEXPECT(!cmdline_find_flag("acpi.no_madtx", "acpi.no_madt"));
}

/* A bare key found is "" in buf, whatever buf held: with the empty string
 * not written, a caller saw the last value it read there. */
KTEST(bootinfo_cmdline, bare_key_gives_an_empty_value)
{
	char buf[8] = "stale";
	KEXPECT(cmdline_find("x=1 ktest y=2", "ktest", buf, sizeof(buf)));
	KEXPECT_STREQ(buf, "");
}

/* An option that is a number or a bare flag (mm.guard): bare gives the
 * flag's value, "=N" the number, "=" or a bad number nothing; the first
 * word of the key decides, and a longer key is not it. */
KTEST(bootinfo_cmdline, number_or_bare_flag)
{
	uint64_t v = 7;
	KEXPECT(cmdline_find_uint_or_flag("x mm.guard y", "mm.guard", 64, 0,
	                                  100, &v));
	KEXPECT_EQ(v, 64);
	KEXPECT(cmdline_find_uint_or_flag("mm.guard=5", "mm.guard", 64, 0, 100,
	                                  &v));
	KEXPECT_EQ(v, 5);
	v = 7;
	KEXPECT(!cmdline_find_uint_or_flag("mm.guard=", "mm.guard", 64, 0, 100,
	                                   &v));
	KEXPECT(!cmdline_find_uint_or_flag("mm.guard=101", "mm.guard", 64, 0,
	                                   100, &v));
	KEXPECT(!cmdline_find_uint_or_flag("mm.guardx mm.guards=3", "mm.guard",
	                                   64, 0, 100, &v));
	KEXPECT(!cmdline_find_uint_or_flag("", "mm.guard", 64, 0, 100, &v));
	KEXPECT_EQ(v, 7);
	KEXPECT(cmdline_find_uint_or_flag("mm.guardx=1 mm.guard=9 mm.guard",
	                                  "mm.guard", 64, 0, 100, &v));
	KEXPECT_EQ(v, 9);
	KEXPECT(cmdline_find_uint_or_flag("mm.guard mm.guard=9", "mm.guard", 64,
	                                  0, 100, &v));
	KEXPECT_EQ(v, 64);
}
