/*
 * The lock checker's test mode (lockcheck.h): a violation is counted and
 * its message kept for the test to read instead of a panic, so that a
 * test can commit one on purpose and check what the checker said.
 *
 * Violations are recorded on any CPU, in threads and interrupt handlers,
 * several at once (the thread race tests refuse wakes from every CPU),
 * so the message is written and read whole under record_lock: a flag,
 * not a struct spinlock (the checker would check itself), taken with
 * interrupts off and a leaf (nothing is taken, printed or formatted
 * under it).
 *
 * The mode is one switch for the whole kernel, so a test that records
 * for long, while other CPUs run the kernel's own threads, says which
 * violations it expects (lockcheck_record_only): any other still panics,
 * and a real fault elsewhere is not taken for the test's own.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/lockcheck.h"
#include "kernel/lockcheck_internal.h"
#include "kernel/lockcheck_testing.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/string.h"

TEST_HOOK_DEFINE(lockcheck_testing_recording);
TEST_HOOK_DEFINE(lockcheck_testing_record_busy);

static _Atomic bool record_mode;
/* While recording, the fragment a message must hold to be recorded, or
 * NULL for any (lockcheck_record_only). */
static const char *_Atomic record_only;

/* A bare spin flag taken with interrupts off, outside the rank table:
 * the checker records from inside spin_lock's own checks, so a ranked
 * spinlock here would check itself. Held for a copy, takes nothing.
 * Protected by record_lock: */
static atomic_flag record_lock = ATOMIC_FLAG_INIT;
static char last_message[LOCKCHECK_MESSAGE_MAX];
/* Raised under record_lock once the message is in place, read anywhere: */
static _Atomic unsigned nviolations;
/* Each CPU's copy of the last message, for lockcheck_last_violation: */
static char read_copy[MAX_CPUS][LOCKCHECK_MESSAGE_MAX];

static unsigned long record_lock_take(const char *msg)
{
	unsigned long flags = read_rflags();
	cpu_cli();
	if (atomic_flag_test_and_set_explicit(&record_lock,
	                                      memory_order_acquire)) {
		TEST_HOOK(lockcheck_testing_record_busy, (uintptr_t)msg);
		while (atomic_flag_test_and_set_explicit(&record_lock,
		                                         memory_order_acquire))
			cpu_pause();
	}
	return flags;
}

static void record_lock_drop(unsigned long flags)
{
	atomic_flag_clear_explicit(&record_lock, memory_order_release);
	if (flags & RFLAGS_IF)
		cpu_sti();
}

/* Keeps msg as the last message, then counts it. Any context. */
static void record(const char *msg)
{
	unsigned long flags = record_lock_take(msg);
	for (unsigned i = 0; i < LOCKCHECK_MESSAGE_MAX; i++) {
		if (i == LOCKCHECK_MESSAGE_MAX / 2)
			TEST_HOOK(lockcheck_testing_recording, (uintptr_t)msg);
		last_message[i] = msg[i];
	}
	atomic_fetch_add(&nviolations, 1);
	record_lock_drop(flags);
}

void lockcheck_report(const char *msg)
{
	if (atomic_load(&record_mode)) {
		const char *only = atomic_load(&record_only);
		if (!only || strstr(msg, only)) {
			record(msg);
			return;
		}
		panic("lock checker: %s (while a test records only \"%s\")",
		      msg, only);
	}
	panic("lock checker: %s", msg);
}

bool lockcheck_set_record(bool on)
{
	return atomic_exchange(&record_mode, on);
}

const char *lockcheck_record_only(const char *fragment)
{
	return atomic_exchange(&record_only, fragment);
}

unsigned lockcheck_violations(void)
{
	return atomic_load(&nviolations);
}

const char *lockcheck_last_violation(void)
{
	unsigned long flags = record_lock_take(NULL);
	char *copy = read_copy[this_cpu()->id];
	for (unsigned i = 0; i < LOCKCHECK_MESSAGE_MAX; i++)
		copy[i] = last_message[i];
	record_lock_drop(flags);
	return copy;
}
