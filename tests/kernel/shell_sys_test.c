/*
 * The shell's `locks` against the locks' own counters: the locks of one
 * name and rank (a run queue per CPU) are one line, which counts them
 * and sums what each was acquired; the span heap's metadata heap's lock
 * is a line of its own.
 */
#define CAPTURE_BYTES 16384 /* memmap: a line for each of 120 regions */

#include "arch/x86_64/layout.h"
#include "boot/boot_info.h"
#include "kernel/bootinfo.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"

#if KTEST_HOOKS
/* Static: 256 records are too big for a stack. */
static struct spin_stats stats[SPIN_LIST_MAX];

/* Sums what the listed locks named name were acquired; *count gets how
 * many there are. */
static uint64_t acquired_of(const char *name, unsigned *count)
{
	unsigned n = spin_list_stats(stats, SPIN_LIST_MAX);
	uint64_t sum = 0;
	*count = 0;
	for (unsigned i = 0; i < n; i++)
		if (stats[i].name && strcmp(stats[i].name, name) == 0) {
			sum += stats[i].acquired;
			(*count)++;
		}
	return sum;
}

/* How many of the lock list's entries are l. */
static unsigned times_listed(const struct spinlock *l)
{
	unsigned n = spin_list_stats(stats, SPIN_LIST_MAX), found = 0;
	for (unsigned k = 0; k < n; k++)
		found += stats[k].lock == l;
	return found;
}

/*
 * A lock on a stack is not listed: it goes away with its frame, and the
 * list would be read after it (`locks` named what the stack held there
 * next: a #PF in strcmp at 0x100000000). The boot stack, main's (the
 * thread the tests run on), lies in the image's bss: a lock there was
 * listed as if it lived for good.
 */
KTEST(shell_sys, a_lock_on_the_boot_stack_is_not_listed)
{
	struct spinlock on_stack;
	uintptr_t a = (uintptr_t)&on_stack;
	if (a < (uintptr_t)__boot_stack_bottom ||
	    a >= (uintptr_t)__boot_stack_top) {
		ktest_skip("not on the boot stack: the tests run elsewhere");
		return;
	}
	spin_init(&on_stack, "on_boot_stack", LOCK_RANK_TEST_LOW);
	unsigned long irq = spin_lock_irqsave(&on_stack);
	spin_unlock_irqrestore(&on_stack, irq);
	KEXPECT_EQ(times_listed(&on_stack), 0);
}

/* A static lock set up again (tests do) stays in the list once: spin_init
 * finds it there, and its next acquisition does not list it again (each
 * copy took a slot of SPIN_LIST_MAX, and `locks` counted it twice). */
static struct spinlock set_up_twice =
        SPINLOCK_INIT("set_up_twice", LOCK_RANK_TEST_LOW);

KTEST(shell_sys, a_static_lock_set_up_again_is_listed_once)
{
	for (int i = 0; i < 2; i++) {
		spin_init(&set_up_twice, "set_up_twice", LOCK_RANK_TEST_LOW);
		unsigned long irq = spin_lock_irqsave(&set_up_twice);
		spin_unlock_irqrestore(&set_up_twice, irq);
	}
	KEXPECT_EQ(times_listed(&set_up_twice), 1);
}

/* The counters only grow: the sum printed lies between the sums read
 * before and after the command. And the locks summed are not listed
 * again on lines of their own. */
KTEST(shell_sys, locks_sums_the_locks_of_one_name)
{
	unsigned count, count_after;
	uint64_t lo = acquired_of("runqueue", &count);
	if (count < 2) {
		ktest_skip("one run queue: nothing to sum");
		return;
	}
	capture_start();
	enum shell_status st = shell_run_line("locks");
	capture_stop();
	uint64_t hi = acquired_of("runqueue", &count_after);
	KEXPECT_EQ(st, SHELL_OK);
	const char *p = strstr(seen, "\nrunqueue ");
	KASSERT(p != NULL);
	p += strlen("\nrunqueue ");
	while (*p == ' ')
		p++;
	while (*p && *p != ' ') /* the rank's name */
		p++;
	uint64_t shown_count = number_at(&p), shown = number_at(&p);
	KEXPECT_EQ(shown_count, count);
	if (shown < lo || shown > hi)
		ktest_diag("locks said %llu acquisitions, the locks %llu to "
		           "%llu",
		           (unsigned long long)shown, (unsigned long long)lo,
		           (unsigned long long)hi);
	KEXPECT(shown >= lo && shown <= hi);
	/* One line for them all. */
	KEXPECT(strstr(p, "\nrunqueue ") == NULL);
}
#endif

/* The span heap's metadata heap's lock is listed under a name of its
 * own, apart from the object heap's "heap" (mm/spanheap_meta.c): a
 * mutation audit found its renaming unpinned (dropped, both summed on
 * one "heap" line and no test failed). */
KTEST(shell_sys, locks_lists_the_metadata_heaps_lock_apart)
{
	capture_start();
	enum shell_status st = shell_run_line("locks");
	capture_stop();
	KEXPECT_EQ(st, SHELL_OK);
	KEXPECT(strstr(seen, "\nheap_meta ") != NULL);
	KEXPECT(strstr(seen, "\nheap ") != NULL);
}

/* The footer names the mode waiters take the locks in, whichever it is. */
KTEST(shell_sys, locks_names_the_spin_mode)
{
	enum spin_mode old = spin_mode_set(SPIN_TICKET);
	capture_start();
	enum shell_status st = shell_run_line("locks");
	capture_stop();
	bool ticket = strstr(seen, "waiters take them in ticket mode\n");
	spin_mode_set(SPIN_TAS);
	capture_start();
	shell_run_line("locks");
	capture_stop();
	bool tas = strstr(seen, "waiters take them in test-and-set mode\n");
	spin_mode_set(old);
	KEXPECT_EQ(st, SHELL_OK);
	KEXPECT(ticket);
	KEXPECT(tas);
}

/* The line of the capture that starts with prefix, cut at its newline
 * into line; false if there is none. */
static bool line_of(const char *prefix, char *line, size_t cap)
{
	const char *p = strstr(seen, prefix);
	if (!p)
		return false;
	size_t n = 0;
	while (p[n] && p[n] != '\n' && n + 1 < cap) {
		line[n] = p[n];
		n++;
	}
	line[n] = '\0';
	return true;
}

/* Whether memmap's line for the region holding pa says what. */
static bool region_line_says(paddr_t pa, const char *what)
{
	char want[64], line[160];
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (pa < r->base || pa >= r->limit)
			continue;
		ksnprintf(want, sizeof(want), "memmap: %#llx-%#llx ",
		          (unsigned long long)r->base,
		          (unsigned long long)r->limit);
		return line_of(want, line, sizeof(line)) && strstr(line, what);
	}
	return false;
}

/* memmap prints every region the kernel kept and every hole between
 * two, then their counts; a region of the pool's is said to be the
 * pool's and in the direct map, device memory is in neither. */
KTEST(shell_sys, memmap_lists_every_region_and_hole)
{
	capture_start();
	enum shell_status st = shell_run_line("memmap");
	capture_stop();
	KEXPECT_EQ(st, SHELL_OK);
	KASSERT(strlen(seen) + 1 < sizeof(seen)); /* all of it captured */
	char want[96], line[160];
	paddr_t at = 0;
	unsigned holes = 0, missing = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (r->base > at) {
			ksnprintf(want, sizeof(want),
			          "memmap: %#llx-%#llx hole, ",
			          (unsigned long long)at,
			          (unsigned long long)r->base);
			missing += !strstr(seen, want);
			holes++;
		}
		ksnprintf(want, sizeof(want), "memmap: %#llx-%#llx %s, ",
		          (unsigned long long)r->base,
		          (unsigned long long)r->limit, mem_type_name(r->type));
		missing += !strstr(seen, want);
		if (r->type == EFI_MEMORY_MAPPED_IO) {
			KEXPECT(line_of(want, line, sizeof(line)));
			KEXPECT(!strstr(line, "direct map") &&
			        !strstr(line, "pool"));
		}
		at = r->limit;
	}
	KEXPECT_EQ(missing, 0);
	ksnprintf(want, sizeof(want), "memmap: %zu regions, %u holes between",
	          boot_state.nregions, holes);
	KEXPECT(strstr(seen, want) != NULL);
	/* A frame's region: the pool's, in the direct map; the image's is
	 * not said to be the pool's. */
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KEXPECT(region_line_says(pa, ", the frame pool's, in the direct map"));
	frame_free(pa);
	KEXPECT(region_line_says(
	        boot_state.kernel_phys_base,
	        ", holds the kernel image, in the direct map"));
	KEXPECT_EQ(shell_run_line("memmap all"), SHELL_USAGE);
}
