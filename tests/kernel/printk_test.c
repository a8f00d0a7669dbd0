/*
 * printk from several CPUs at once: a line the test runner prints (a
 * failed expectation, a diagnostic) or mm/ logs (mm_log) reaches the
 * console whole, however much the other CPUs print meanwhile.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/printk_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "mm/port.h"

#if KTEST_HOOKS
#define PROBES 20

/* What the console printed while the hook was set, in order. 64 KiB
 * once: at -smp 8 seven talkers filled it by the 17th probe (CI: "found
 * == 20 (17 vs 20)"), and the last probes went unrecorded. */
static char seen[1 << 18];
static _Atomic unsigned nseen;
static _Atomic bool talk;
static _Atomic unsigned talked;

static void record(uintptr_t c)
{
	unsigned i = atomic_fetch_add(&nseen, 1);
	if (i < sizeof(seen))
		seen[i] = (char)c;
}

/* Talks until told to stop, or quietly once three quarters of seen are
 * used, so that the probes' lines always have room. */
static void talker(void *arg)
{
	while (atomic_load(&talk)) {
		if (atomic_load(&nseen) > sizeof(seen) / 4 * 3) {
			thread_yield();
			continue;
		}
		printk("talker on cpu %u\n", this_cpu()->id);
		atomic_fetch_add(&talked, 1);
	}
}

/* Counts the probes in seen and, in *split, those that another CPU's
 * output cut: each must read head, word, a number and ": whole" to its
 * newline. */
static unsigned count_probes(const char *head, const char *word,
                             unsigned *split)
{
	const unsigned hl = strlen(head), wl = strlen(word);
	unsigned n = atomic_load(&nseen), found = 0;
	if (n > sizeof(seen))
		n = sizeof(seen);
	*split = 0;
	for (unsigned i = 0; i + wl <= n; i++) {
		if (memcmp(seen + i, word, wl) != 0)
			continue;
		found++;
		unsigned j = i + wl;
		while (j < n && seen[j] >= '0' && seen[j] <= '9')
			j++;
		if (i < hl || memcmp(seen + i - hl, head, hl) != 0 ||
		    n - j < 8 || memcmp(seen + j, ": whole\n", 8) != 0)
			(*split)++;
	}
	return found;
}

/* Calls emit(0..PROBES-1), each to print one probe line, with a talker on
 * every other CPU printing all the while; the console's output meanwhile
 * is in seen. False (skipped) with one CPU. */
static bool probe_while_others_talk(void (*emit)(int))
{
	struct thread_handle t[MAX_CPUS] = {0};
	unsigned self = this_cpu()->id, others = 0;
	atomic_store(&nseen, 0); /* the last test's count would hush them */
	atomic_store(&talk, true);
	atomic_store(&talked, 0);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online)) {
			t[i] = thread_create("talker", talker, NULL, i);
			KEXPECT(thread_handle_ok(t[i]));
			others += thread_handle_ok(t[i]);
		}
	if (others == 0) {
		atomic_store(&talk, false);
		ktest_skip("nobody on another CPU to print over the probes");
		return false;
	}
	while (atomic_load(&talked) < 8 * others)
		thread_yield();
	atomic_store(&nseen, 0);
	atomic_store(&printk_testing_putc, record);
	for (int i = 0; i < PROBES; i++)
		emit(i);
	atomic_store(&printk_testing_putc, NULL);
	atomic_store(&talk, false);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (thread_handle_ok(t[i]))
			thread_join(t[i]);
	return true;
}

static void diag_probe(int i)
{
	ktest_diag("probe %d: whole", i);
}

/* Every one of the PROBES lines emit printed, found whole: head, word, a
 * number and ": whole" to its newline, while the other CPUs talked. */
static void expect_probes_whole(void (*emit)(int), const char *head,
                                const char *word)
{
	if (!probe_while_others_talk(emit))
		return;
	unsigned split, found = count_probes(head, word, &split);
	KEXPECT(atomic_load(&nseen) <= sizeof(seen)); /* all recorded */
	KEXPECT_EQ(found, PROBES);
	KEXPECT_EQ(split, 0);
}

KTEST(printk, a_test_line_is_not_cut_by_other_cpus)
{
	expect_probes_whole(diag_probe, "    # ", "probe ");
}

static void mm_log_probe(int i)
{
	mm_log("mmprobe %d: whole", i);
}

/* mm/'s log lines too (kernel/mm_port.c's mm_log): the tests that read
 * "mm: spanheap: ..." lines back rely on it. Until a review mm_log
 * printed "mm: ", the message and the newline as three calls, and
 * another CPU's line could land between them. */
KTEST(printk, an_mm_log_line_is_not_cut_by_other_cpus)
{
	expect_probes_whole(mm_log_probe, "mm: ", "mmprobe ");
}
#endif

#if KTEST_HOOKS
/* Runs backtrace_print(rip, rbp) with the console recorded; returns the
 * frames it printed ("  [N] " lines). */
static unsigned frames_printed(uint64_t rip, uint64_t rbp)
{
	atomic_store(&nseen, 0);
	atomic_store(&printk_testing_putc, record);
	backtrace_print(rip, rbp);
	atomic_store(&printk_testing_putc, NULL);
	unsigned n = atomic_load(&nseen), frames = 0;
	if (n > sizeof(seen))
		n = sizeof(seen);
	for (unsigned i = 0; i + 3 < n; i++)
		frames +=
		        seen[i] == '\n' && memcmp(seen + i + 1, "  [", 3) == 0;
	return frames;
}

/*
 * A backtrace follows the frame chain only while it is sound: a frame
 * pointer off its 8-byte alignment, or a caller's frame that is not
 * above the callee's (a chain that loops), ends it. Followed, the first
 * read words out of line as a return address, the second printed one
 * frame 31 times.
 */
KTEST(printk, backtrace_stops_at_an_unsound_frame)
{
	static uint64_t frames[4] __attribute__((aligned(16)));
	uint64_t rip = (uint64_t)backtrace_print;
	memset(frames, 0x11, sizeof(frames));
	KEXPECT_EQ(frames_printed(rip, (uint64_t)frames + 4), 1);
	frames[0] = (uint64_t)&frames[0]; /* its own caller */
	frames[1] = (uint64_t)printk + 4;
	KEXPECT_EQ(frames_printed(rip, (uint64_t)frames), 2);
}
#endif
