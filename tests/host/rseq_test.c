/*
 * The restartable sequences' table (mm/rseq.c) on made-up ranges: sorted
 * by init, searched by restart (inside moves to the start, the end and
 * everything outside stay), and a bad table refused with its ranges
 * named. The sequences themselves are x86-64 kernel code, tested in the
 * kernel (tests/kernel/rseq_test.c).
 */
#include "../../kernel/ktest.h"
#include "../../mm/rseq.h"
#include "mm_port_posix.h"

#include <string.h>

/* Leaves no table behind for other tests. */
static void table_clear(void)
{
	mm_rseq_init(NULL, NULL);
}

/* restart on ip: the ip afterwards, or ~0 if it said no. */
static uintptr_t restart_at(uintptr_t ip)
{
	return mm_rseq_restart(&ip) ? ip : ~(uintptr_t)0;
}

KTEST(rseq, restart_searches_the_sorted_table)
{
	/* Out of order, as sections of several files would be. */
	struct mm_rseq_range t[] = {
	        {0x5000, 0x5020}, {0x1000, 0x1010}, {0x3000, 0x3004},
	        {0x1010, 0x1018}, {0x9000, 0x9100},
	};
	uint64_t before = mm_rseq_restarts();
	mm_rseq_init(t, t + 5);
	for (unsigned i = 1; i < 5; i++)
		KEXPECT(t[i - 1].start < t[i].start);
	KEXPECT_EQ(restart_at(0x1000), 0x1000);
	KEXPECT_EQ(restart_at(0x100f), 0x1000);
	KEXPECT_EQ(restart_at(0x1010), 0x1010); /* the next one's start */
	KEXPECT_EQ(restart_at(0x1017), 0x1010);
	KEXPECT_EQ(restart_at(0x1018), ~(uintptr_t)0); /* an end */
	KEXPECT_EQ(restart_at(0x3003), 0x3000);
	KEXPECT_EQ(restart_at(0x3004), ~(uintptr_t)0);
	KEXPECT_EQ(restart_at(0x4fff), ~(uintptr_t)0); /* a gap */
	KEXPECT_EQ(restart_at(0x5010), 0x5000);
	KEXPECT_EQ(restart_at(0x90ff), 0x9000);
	KEXPECT_EQ(restart_at(0x9100), ~(uintptr_t)0); /* past all */
	KEXPECT_EQ(restart_at(0xfff), ~(uintptr_t)0);  /* below all */
	KEXPECT_EQ(restart_at(0), ~(uintptr_t)0);
	KEXPECT_EQ(restart_at(~(uintptr_t)0 - 1), ~(uintptr_t)0);
	KEXPECT_EQ(mm_rseq_restarts() - before, 7);
	table_clear();
	KEXPECT_EQ(restart_at(0x1000), ~(uintptr_t)0);
}

KTEST(rseq, one_range_and_no_range)
{
	struct mm_rseq_range t[] = {{0x2000, 0x2001}};
	mm_rseq_init(t, t + 1);
	KEXPECT_EQ(restart_at(0x2000), 0x2000);
	KEXPECT_EQ(restart_at(0x2001), ~(uintptr_t)0);
	KEXPECT_EQ(restart_at(0x1fff), ~(uintptr_t)0);
	mm_rseq_init(t, t);
	KEXPECT_EQ(restart_at(0x2000), ~(uintptr_t)0);
	/* lo and hi are 0 then: address 0 is in no range either (the
	 * bound test's >= is what keeps the search from the empty table's
	 * first slot, here the range left over). */
	KEXPECT_EQ(restart_at(0), ~(uintptr_t)0);
	table_clear();
}

KTEST(rseq, overlapping_ranges_are_refused)
{
	struct mm_rseq_range t[] = {{0x2000, 0x2010}, {0x1000, 0x2008}};
	KEXPECT(MM_PORT_PANICS(mm_rseq_init(t, t + 2)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "sequences [0x1000, 0x2008) and [0x2000, 0x2010) "
	               "overlap") != NULL);
	table_clear();
}

KTEST(rseq, an_empty_range_is_refused)
{
	struct mm_rseq_range t[] = {{0x1000, 0x1010}, {0x3000, 0x3000}};
	KEXPECT(MM_PORT_PANICS(mm_rseq_init(t, t + 2)));
	KEXPECT(strstr(mm_port_last_panic(),
	               "sequence 1, [0x3000, 0x3000), is empty") != NULL);
	table_clear();
}

/* A table whose bounds cannot be one (a port's linker script with its
 * symbols swapped, or one that is not a whole number of ranges) is
 * refused with its bounds named, before anything in it is read or
 * sorted; the table before stays in use. */
KTEST(rseq, a_table_with_bad_bounds_is_refused)
{
	struct mm_rseq_range t[] = {{0x1000, 0x1010}, {0x2000, 0x2010}};
	mm_rseq_init(t, t + 1);
	KEXPECT(MM_PORT_PANICS(mm_rseq_init(t + 2, t)));
	KEXPECT(strstr(mm_port_last_panic(), "ends before it starts") != NULL);
	struct mm_rseq_range *half =
	        (struct mm_rseq_range *)((char *)t + sizeof(uintptr_t));
	KEXPECT(MM_PORT_PANICS(mm_rseq_init(t, half)));
	KEXPECT(strstr(mm_port_last_panic(), "not a whole number of ranges") !=
	        NULL);
	KEXPECT(MM_PORT_PANICS(mm_rseq_init(NULL, t + 1)));
	KEXPECT(strstr(mm_port_last_panic(), "starts at NULL") != NULL);
	KEXPECT_EQ(t[1].start, 0x2000); /* not sorted, not read */
	KEXPECT_EQ(restart_at(0x1008), 0x1000);
	KEXPECT_EQ(restart_at(0x2008), ~(uintptr_t)0);
	table_clear();
}
