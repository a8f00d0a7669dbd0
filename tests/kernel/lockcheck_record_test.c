/*
 * The lock checker's own record (test mode) under other CPUs: violations
 * recorded on two CPUs at once each leave a whole message, the last one
 * written, never the start of one and the end of the other, and the count
 * covers a message only once it is there to read. Needs two CPUs. A test
 * that records only what it names (lockcheck_record_only) gets those,
 * and any other violation panics.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/lockcheck_testing.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/smp_util.h"

#if KTEST_HOOKS
/* Two messages as long as the record keeps, apart at every byte. */
#define MSG_LEN 150
static char msg_a[MSG_LEN + 1], msg_b[MSG_LEN + 1];
static _Atomic unsigned writer_cpu = MAX_CPUS;
static _Atomic bool a_half_written, b_busy, b_done;

static void fill(char *m, char c)
{
	for (unsigned i = 0; i < MSG_LEN; i++)
		m[i] = c;
	m[MSG_LEN] = '\0';
}

/* The first writer, half way through its message: holds it there until
 * the second has written its own, or has found the record busy and waits
 * for this one (then it may go on). */
static void hold_half_written(uintptr_t msg)
{
	if (this_cpu()->id != atomic_load(&writer_cpu))
		return;
	atomic_store(&a_half_written, true);
	while (!atomic_load(&b_done) && !atomic_load(&b_busy))
		cpu_pause();
}

static void note_busy(uintptr_t msg)
{
	atomic_store(&b_busy, true);
}

static void record_a(void *arg)
{
	lockcheck_misuse("%s", msg_a);
}

KTEST(lockcheck, record_from_two_cpus_keeps_one_whole_message)
{
	unsigned other = other_online_cpu();
	if (other == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	fill(msg_a, 'a');
	fill(msg_b, 'b');
	atomic_store(&a_half_written, false);
	atomic_store(&b_busy, false);
	atomic_store(&b_done, false);
	atomic_store(&writer_cpu, other);
	atomic_store(&lockcheck_testing_recording, hold_half_written);
	atomic_store(&lockcheck_testing_record_busy, note_busy);
	unsigned before = lockcheck_violations();
	bool old = lockcheck_set_record(true);
	struct thread_handle t =
	        thread_create("record_a", record_a, NULL, other);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&a_half_written))
		thread_yield();
	lockcheck_misuse("%s", msg_b);
	atomic_store(&b_done, true);
	thread_join(t);
	lockcheck_set_record(old);
	atomic_store(&lockcheck_testing_recording, NULL);
	atomic_store(&lockcheck_testing_record_busy, NULL);
	atomic_store(&writer_cpu, MAX_CPUS);
	const char *last = lockcheck_last_violation();
	ktest_diag("last message: %.20s...%s (second writer %s)", last,
	           last + MSG_LEN - 20,
	           atomic_load(&b_busy) ? "waited" : "did not wait");
	KEXPECT_EQ(lockcheck_violations() - before, 2);
	KEXPECT(strcmp(last, msg_a) == 0 || strcmp(last, msg_b) == 0);
}
#endif

/* A test that records only what it names (lockcheck_record_only) gets
 * those violations recorded, and a later test with no fragment gets any. */
KTEST(lockcheck, record_only_records_what_it_names)
{
	unsigned before = lockcheck_violations();
	const char *old_only = lockcheck_record_only("demo: expected");
	bool old = lockcheck_set_record(true);
	lockcheck_misuse("demo: expected misuse %d", 1);
	lockcheck_misuse("before it, demo: expected misuse %d", 2);
	KEXPECT_EQ(lockcheck_violations() - before, 2);
	KEXPECT(strcmp(lockcheck_last_violation(),
	               "before it, demo: expected misuse 2") == 0);
	const char *was = lockcheck_record_only(NULL);
	KEXPECT(was && strcmp(was, "demo: expected") == 0);
	lockcheck_misuse("demo: anything %d", 3);
	KEXPECT_EQ(lockcheck_violations() - before, 3);
	lockcheck_set_record(old);
	lockcheck_record_only(old_only);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness: demo_record_only).
 * Any other violation while it records is a real one, from whatever CPU:
 * it panics as outside test mode, naming what the test records, and is
 * not counted as the test's. */
KTEST(demo, lockcheck_other_violation_while_recording)
{
	lockcheck_record_only("thread_wake(id ");
	lockcheck_set_record(true);
	lockcheck_misuse("demo: a violation the test does not expect");
	lockcheck_set_record(false);
	lockcheck_record_only(NULL);
	KEXPECT(false); /* not reached */
}
#endif
