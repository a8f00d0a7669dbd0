/*
 * Thread handles under races and after their memory is gone: a join of a
 * thread that is exiting while other CPUs and interrupt handlers wake it
 * through the same handle, and a stale handle whose struct's page has
 * been unmapped. A wake that lands after the join is refused (recorded:
 * these run in the lock checker's test mode); nothing may read the freed
 * struct, wake another thread or lose the target's wake-ups. No time
 * bound: a lost wake-up leaves the join waiting, which the run's hang
 * guard reports.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/paging.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

/* ---- A join racing wakes from threads and interrupt handlers ------------- */

#define RACE_ROUNDS  300
#define RACE_SLEEPS  3 /* wakes each target waits for before it exits */
#define RACE_WAKERS  3
#define RACE_BURST   32 /* wakes in a row by a waker thread */
#define RACE_PATTERN 0x5eed0000a11ce000ull

static struct thread_handle race_handles[RACE_ROUNDS];
static _Atomic int race_round = -1; /* the round being woken; -1 none */
static _Atomic bool race_stop;
static _Atomic uint64_t race_seen[RACE_ROUNDS];
static _Atomic unsigned race_sleeps[RACE_ROUNDS];
static _Atomic unsigned race_in_hook;
static _Atomic uint64_t race_wakes;

/* Sleeps until woken RACE_SLEEPS times, leaves its round's pattern and
 * exits: the join and the wakes race with that exit. */
static void race_target(void *arg)
{
	unsigned r = (unsigned)(uintptr_t)arg;
	for (unsigned k = 0; k < RACE_SLEEPS; k++) {
		thread_sleep_ns(UINT64_MAX);
		atomic_fetch_add(&race_sleeps[r], 1);
	}
	atomic_store(&race_seen[r], RACE_PATTERN ^ r);
}

static void race_wake_current(void)
{
	int r = atomic_load(&race_round);
	if (r < 0)
		return;
	thread_wake(race_handles[r]);
	atomic_fetch_add(&race_wakes, 1);
}

/* Bursts of wakes, a tick apart: flat out, three wakers and every CPU's
 * tick hammering one run-queue lock starve the CPUs under TCG (with
 * ticket spinlocks a vCPU the host preempts holds up every ticket behind
 * it), and a round takes seconds instead of a tick or two. */
static void race_waker(void *arg)
{
	while (!atomic_load(&race_stop)) {
		for (unsigned i = 0; i < RACE_BURST; i++)
			race_wake_current();
		thread_sleep_ns(0);
	}
}

/* Every CPU's timer interrupt wakes the round's target too. */
static void race_hook(void)
{
	atomic_fetch_add(&race_in_hook, 1);
	race_wake_current();
	atomic_fetch_sub(&race_in_hook, 1);
}

/* One round: a target on CPU cpu, published to the wakers, joined while
 * they wake it; its pattern checked. False if the round failed. */
static bool race_one_round(unsigned r, unsigned cpu)
{
	struct thread_handle h = thread_create("race_target", race_target,
	                                       (void *)(uintptr_t)r, cpu);
	KEXPECT(thread_handle_ok(h));
	if (!thread_handle_ok(h))
		return false;
	race_handles[r] = h;
	atomic_store(&race_round, (int)r);
	sched_check(); /* racing the wakes and the target's exit */
	thread_join(h);
	if (atomic_load(&race_seen[r]) != (RACE_PATTERN ^ r) ||
	    atomic_load(&race_sleeps[r]) != RACE_SLEEPS) {
		ktest_diag("round %u: pattern %llx, %u sleeps", r,
		           (unsigned long long)atomic_load(&race_seen[r]),
		           atomic_load(&race_sleeps[r]));
		return false;
	}
	return true;
}

KTEST(thread, join_racing_wakes_from_cpus_and_interrupts)
{
	unsigned ncpus = atomic_load(&ncpus_online);
	struct thread_handle wakers[RACE_WAKERS];
	unsigned before = lockcheck_violations();
	/* Only the stale wakes are this test's: any other violation, on
	 * any CPU meanwhile, panics. */
	const char *old_only = lockcheck_record_only("thread_wake(id ");
	bool old = lockcheck_set_record(true);
	for (unsigned i = 0; i < RACE_WAKERS; i++) {
		wakers[i] = thread_create("race_waker", race_waker, NULL,
		                          (i + 1) % ncpus);
		KASSERT(thread_handle_ok(wakers[i]));
	}
	atomic_store(&sched_tick_hook, race_hook);
	unsigned bad = 0;
	for (unsigned r = 0; r < RACE_ROUNDS; r++)
		bad += !race_one_round(r, r % ncpus);
	atomic_store(&sched_tick_hook, NULL);
	atomic_store(&race_round, -1);
	atomic_store(&race_stop, true);
	for (unsigned i = 0; i < RACE_WAKERS; i++)
		thread_join(wakers[i]);
	while (atomic_load(&race_in_hook))
		thread_yield();
	lockcheck_set_record(old);
	lockcheck_record_only(old_only);
	sched_check();
	unsigned refused = lockcheck_violations() - before;
	ktest_diag("%u rounds on %u cpus, %llu wakes, %u refused as stale",
	           RACE_ROUNDS, ncpus,
	           (unsigned long long)atomic_load(&race_wakes), refused);
	KEXPECT_EQ(bad, 0);
	/* A wake after its round's join is refused as stale, naming why;
	 * whatever else the checker recorded would show here. */
	if (refused)
		KEXPECT(message_has("thread_wake(id ", "not a live thread"));
}

/* ---- The run queues checked while threads come and go -------------------- */

#define CHURN_THREADS 300

static _Atomic bool churn_stop;
static _Atomic unsigned churn_checks;

static void churn_checker(void *arg)
{
	while (!atomic_load(&churn_stop)) {
		for (unsigned i = 0; i < RACE_BURST; i++) {
			sched_check();
			waitq_check(&thread_exit_wq); /* the joiner's */
		}
		atomic_fetch_add(&churn_checks, RACE_BURST);
		thread_sleep_ns(0); /* bursts, as race_waker's wakes */
	}
}

static void churn_nothing(void *arg)
{
}

/* sched_check (and the joiners' wait queue's check) on every CPU but the
 * boot one, in bursts, while the boot CPU makes and joins threads on all
 * of them: a thread is in its run queue's table from creation on, so
 * whatever a check sees of one being made (its state, nthreads) must
 * already agree. */
KTEST(thread, run_queues_check_while_threads_are_made_and_joined)
{
	unsigned ncpus = atomic_load(&ncpus_online);
	if (ncpus < 2)
		KTEST_SKIP("needs two CPUs");
	struct thread_handle checkers[MAX_CPUS];
	atomic_store(&churn_stop, false);
	atomic_store(&churn_checks, 0);
	for (unsigned c = 1; c < ncpus; c++) {
		checkers[c] =
		        thread_create("churn_check", churn_checker, NULL, c);
		KASSERT(thread_handle_ok(checkers[c]));
	}
	for (unsigned i = 0; i < CHURN_THREADS; i++) {
		struct thread_handle h = thread_create(
		        "churn", churn_nothing, NULL, 1 + i % (ncpus - 1));
		KASSERT(thread_handle_ok(h));
		thread_join(h);
	}
	atomic_store(&churn_stop, true);
	for (unsigned c = 1; c < ncpus; c++)
		thread_join(checkers[c]);
	sched_check();
	ktest_diag("%u threads, %u checks", CHURN_THREADS,
	           atomic_load(&churn_checks));
}

/* ---- A stale handle whose struct's page is unmapped ---------------------- */

#define UNMAPPED_THREADS 256

static void nothing(void *arg)
{
}

static struct thread_handle stale;

static void wake_stale(void)
{
	thread_wake(stale);
}

static void join_stale(void)
{
	thread_join(stale);
}

/*
 * Threads are made and joined until their structs' spans are free, and
 * the heap gives its free pages back (with mm.debug_pagealloc a free
 * unmaps them at once): a handle to a struct now unmapped must be refused
 * naming its id, as any stale handle is, not fault reading the struct.
 */
KTEST(thread, stale_handle_whose_struct_is_unmapped_is_reported)
{
	static struct thread_handle t[UNMAPPED_THREADS];
	unsigned cpu = this_cpu()->id;
	for (unsigned i = 0; i < UNMAPPED_THREADS; i++) {
		t[i] = thread_create("unmapped", nothing, NULL, cpu);
		KASSERT(thread_handle_ok(t[i]));
	}
	for (unsigned i = 0; i < UNMAPPED_THREADS; i++)
		thread_join(t[i]);
	heap_release_all();
	unsigned i = 0;
	while (i < UNMAPPED_THREADS &&
	       vm_translate((uintptr_t)t[i].t, NULL, NULL))
		i++;
	if (i == UNMAPPED_THREADS)
		KTEST_SKIP("no joined thread's struct was unmapped");
	stale = t[i];
	ktest_diag("thread id %llu at %p: unmapped",
	           (unsigned long long)stale.id, (void *)stale.t);
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(id ", "joined and freed already"));
	ktest_diag("%s", lockcheck_last_violation());
	KEXPECT_EQ(recorded(join_stale), 1);
	KEXPECT(message_has("thread_join(id ", "not a live thread"));
}
