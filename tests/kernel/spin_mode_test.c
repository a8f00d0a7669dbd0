/*
 * The spinlock's two modes (kernel/spinlock.h): a test-and-set waiter
 * takes no ticket while it waits, until its patience runs out, then
 * queues; and waiters of both modes, the mode changing under them, never
 * let two CPUs hold one lock. The FIFO order
 * of ticket mode is tested in sync_stress_test.c; which mode a boot
 * chooses, by the harness (spinlock_* cases, fwcfg_bare_metal).
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/spinlock_testing.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "tests/kernel/smp_util.h"

/* ---- A test-and-set waiter ---------------------------------------------- */

/* Ranks below the interrupt handlers' locks, as one held with interrupts
 * on must. */
static struct spinlock wait_lock =
        SPINLOCK_INIT("spin_wait_test", LOCK_RANK_STW);
static _Atomic bool waiter_go, waiter_in, waiter_spinning;

static void note_waiting(uintptr_t l)
{
	if (l == (uintptr_t)&wait_lock)
		atomic_store(&waiter_spinning, true);
}

static void waiter(void *arg)
{
	while (!atomic_load(&waiter_go))
		cpu_pause();
	spin_lock(&wait_lock);
	atomic_store(&waiter_in, true);
	spin_unlock(&wait_lock);
}

static uint32_t tickets_out(void)
{
	return atomic_load(&wait_lock.next) - atomic_load(&wait_lock.serving);
}

/* Starts the waiter on CPU cpu and takes wait_lock; returns the waiter
 * once it spins for the lock (the hook says so), the lock still held; or
 * a handle that is not ok, nothing held, if the waiter cannot start. */
static struct thread_handle hold_with_a_waiter(unsigned cpu)
{
	atomic_store(&waiter_go, false);
	atomic_store(&waiter_in, false);
	atomic_store(&waiter_spinning, false);
	atomic_store(&spin_testing_waiting, note_waiting);
	struct thread_handle t =
	        thread_create("spin_waiter", waiter, NULL, cpu);
	if (!thread_handle_ok(t)) {
		atomic_store(&spin_testing_waiting, NULL);
		return t;
	}
	spin_lock(&wait_lock);
	atomic_store(&waiter_go, true);
	while (!atomic_load(&waiter_spinning))
		cpu_pause();
	return t;
}

/* Releases wait_lock, which the waiter then takes and gives back, and
 * joins it; then puts the hook and the mode (old) back. Returns whether
 * the waiter was in while this CPU held the lock. */
static bool release_to_the_waiter(struct thread_handle t, enum spin_mode old)
{
	bool in_early = atomic_load(&waiter_in);
	spin_unlock(&wait_lock);
	thread_join(t);
	atomic_store(&spin_testing_waiting, NULL);
	spin_mode_set(old);
	return in_early;
}

/*
 * While this CPU holds the lock, a waiter on another spins for it (the
 * hook says so) holding no ticket: the lock's words show one holder and
 * no queue (a ticket waiter has taken the next ticket before it spins,
 * and would show two). Once the lock is free it gets in, counted as
 * contended.
 */
KTEST(spin, tas_waiter_takes_no_ticket_until_the_lock_is_free)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	enum spin_mode old = spin_mode_set(SPIN_TAS);
	uint64_t contended0 = atomic_load(&wait_lock.contended);
	struct thread_handle t = hold_with_a_waiter(cpu);
	KASSERT(thread_handle_ok(t));
	uint32_t out = tickets_out();
	KEXPECT(!release_to_the_waiter(t, old));
	KEXPECT_EQ(out, 1);
	KEXPECT(atomic_load(&waiter_in));
	KEXPECT_EQ(atomic_load(&wait_lock.contended) - contended0, 1);
	KEXPECT_EQ(tickets_out(), 0);
}

/*
 * A test-and-set waiter that has seen SPIN_TAS_PATIENCE acquisitions by
 * others queues with a ticket, and the lock is handed to it next. The
 * acquisitions are made by moving both words on under this CPU's hold
 * (next first, so the lock never reads free): to the waiter they are
 * SPIN_TAS_PATIENCE holders come and gone, and no window lets it in.
 * A waiter that never queued would spin here until the run's timeout.
 */
KTEST(spin, tas_waiter_queues_after_its_patience)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	enum spin_mode old = spin_mode_set(SPIN_TAS);
	struct thread_handle t = hold_with_a_waiter(cpu);
	KASSERT(thread_handle_ok(t));
	uint32_t before = tickets_out();
	atomic_fetch_add(&wait_lock.next, SPIN_TAS_PATIENCE - 1);
	atomic_fetch_add(&wait_lock.serving, SPIN_TAS_PATIENCE - 1);
	bool queued_early = tickets_out() != before;
	atomic_fetch_add(&wait_lock.next, 1);
	atomic_fetch_add(&wait_lock.serving, 1);
	while (tickets_out() < 2)
		cpu_pause(); /* it took a ticket */
	KEXPECT(!release_to_the_waiter(t, old));
	KEXPECT_EQ(before, 1);
	KEXPECT(!queued_early);
	KEXPECT(atomic_load(&waiter_in));
	KEXPECT_EQ(tickets_out(), 0);
}

/*
 * A ticket waiter across the wrap of the lock's 32-bit words (2^32
 * acquisitions: minutes of a hot lock). This CPU holds ticket
 * UINT32_MAX, so the waiter's is 0: it is served when serving equals it,
 * and serving, read as a number, is past it. A waiter that compared by
 * order would get in at once, beside the holder; 20 ms of holding give
 * it the time to (a correct lock passes however long it takes).
 */
KTEST(spin, ticket_waiter_waits_across_the_wrap)
{
	unsigned cpu = other_online_cpu();
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	enum spin_mode old = spin_mode_set(SPIN_TICKET);
	atomic_store(&wait_lock.next, UINT32_MAX);
	atomic_store(&wait_lock.serving, UINT32_MAX);
	struct thread_handle t = hold_with_a_waiter(cpu);
	KASSERT(thread_handle_ok(t));
	time_delay_us(20000);
	uint32_t next = atomic_load(&wait_lock.next);
	KEXPECT(!release_to_the_waiter(t, old));
	KEXPECT_EQ(next, 1u); /* the waiter's ticket was 0 */
	KEXPECT(atomic_load(&waiter_in));
	KEXPECT_EQ(tickets_out(), 0);
}

/* ---- Both modes at once -------------------------------------------------- */

#define MIX_PER_CPU 2
#define MIX_ROUNDS  2000
#define MIX_BATCH   20
/* Each thread sets the mode every MIX_FLIP rounds, by the parity of its
 * own number and of the round's, so that waiters of both modes meet at
 * the lock. */
#define MIX_FLIP 8

static struct spinlock mix_lock =
        SPINLOCK_INIT("spin_mix_test", LOCK_RANK_TEST_LOW);
static volatile uint64_t mix_counter; /* by mix_lock */
static volatile int mix_owner = -1;   /* by mix_lock */
static _Atomic unsigned mix_overlaps;

static void mixer(void *arg)
{
	int me = (int)(uintptr_t)arg;
	for (unsigned i = 0; i < MIX_ROUNDS; i++) {
		if (i % MIX_FLIP == 0)
			spin_mode_set(((unsigned)me + i / MIX_FLIP) & 1
			                      ? SPIN_TAS
			                      : SPIN_TICKET);
		unsigned long irq = spin_lock_irqsave(&mix_lock);
		if (mix_owner != -1)
			atomic_fetch_add(&mix_overlaps, 1);
		mix_owner = me;
		for (int k = 0; k < MIX_BATCH; k++)
			mix_counter = mix_counter + 1;
		if (mix_owner != me)
			atomic_fetch_add(&mix_overlaps, 1);
		mix_owner = -1;
		spin_unlock_irqrestore(&mix_lock, irq);
	}
}

/*
 * Threads on every CPU take one lock, each batch of increments a
 * read-modify-write that a second holder would lose, while they switch
 * the mode between ticket and test-and-set under each other. Every
 * increment is kept and no holder ever finds another inside.
 */
KTEST(spin, modes_mixed_keep_one_holder)
{
	enum spin_mode old = spin_mode();
	struct thread_handle t[MIX_PER_CPU * MAX_CPUS];
	unsigned n = 0;
	mix_counter = 0;
	atomic_store(&mix_overlaps, 0);
	for (unsigned c = 0; c < MAX_CPUS; c++)
		for (unsigned k = 0;
		     k < MIX_PER_CPU && atomic_load(&cpus[c].online); k++) {
			t[n] = thread_create("spin_mixer", mixer,
			                     (void *)(uintptr_t)n, c);
			KASSERT(thread_handle_ok(t[n]));
			n++;
		}
	for (unsigned i = 0; i < n; i++)
		thread_join(t[i]);
	spin_mode_set(old);
	ktest_diag("%u threads, %u rounds of %u increments each", n, MIX_ROUNDS,
	           MIX_BATCH);
	KEXPECT_EQ(atomic_load(&mix_overlaps), 0);
	KEXPECT_EQ(mix_counter, (uint64_t)n * MIX_ROUNDS * MIX_BATCH);
}

/* The names the boot's line and the shell print. */
KTEST(spin, mode_names)
{
	KEXPECT_STREQ(spin_mode_name(SPIN_TICKET), "ticket");
	KEXPECT_STREQ(spin_mode_name(SPIN_TAS), "test-and-set");
	enum spin_mode old = spin_mode_set(SPIN_TICKET);
	KEXPECT_EQ(spin_mode(), SPIN_TICKET);
	KEXPECT_EQ(spin_mode_set(SPIN_TAS), SPIN_TICKET);
	KEXPECT_EQ(spin_mode(), SPIN_TAS);
	spin_mode_set(old);
}
