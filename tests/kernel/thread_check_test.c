/*
 * The scheduler's own checks on what it is handed: a wake of a thread
 * that was joined and freed (or of a struct that was never a thread) is
 * reported naming the call, and leaves the struct alone. Each runs in the
 * lock checker's test mode, which records the report instead of
 * panicking.
 */
#include <stdatomic.h>
#include <stddef.h>

#include "arch/x86_64/cpu.h"
#include "kernel/ktest.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/lockcheck_util.h"

static void nothing(void *arg)
{
}

static struct thread_handle stale;

static void wake_stale(void)
{
	thread_wake(stale);
}

/*
 * A joined thread's struct is freed, but a pointer kept to it is still
 * handed to thread_wake: before, the wake read the freed struct's CPU and
 * state, took that CPU's run-queue lock and, had the memory been reused
 * as anything but a thread, could queue it. Nothing on this CPU allocates
 * between the join and the wake, so the struct is not reused meanwhile.
 */
KTEST(thread, wake_after_join_is_reported)
{
	struct thread_handle t =
	        thread_create("joined", nothing, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
	stale = t;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "joined and freed already"));
	ktest_diag("%s", lockcheck_last_violation());
}

KTEST(thread, wake_of_no_thread_is_reported)
{
	static struct thread zeroed;
	stale = (struct thread_handle){&zeroed, 1, 0};
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "another struct's"));
	stale = THREAD_NONE;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "not a live thread"));
	/* The right struct with another id is no thread's either. */
	stale = thread_self();
	stale.id++;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "not a live thread"));
	/* Nor a live thread's struct and id with a CPU that is not its. */
	stale = thread_self();
	stale.cpu = MAX_CPUS;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(", "no home CPU"));
	/* A live thread's wake is no misuse, asleep or not. */
	stale = thread_self();
	KEXPECT_EQ(recorded(wake_stale), 0);
}

/*
 * A sleep needs a thread to put to sleep and another to run meanwhile:
 * before a CPU's scheduler starts there is none, and the idle thread is
 * the one that runs when nothing else can. Each is refused naming it. The
 * test makes this CPU's current thread `pretend` for the one call, with
 * the task priority (CR8) holding interrupts off, so that no tick or wake
 * sees the swap, while RFLAGS.IF stays set: so the context alone refuses
 * the sleep (with IF clear, a sleep checker that forgot the idle thread
 * refused it all the same, for the interrupts).
 */
static struct thread *pretend;
static void (*sleep_call)(void);

static void sleep_a_tick(void)
{
	thread_sleep_ns(0);
}

static void yield(void)
{
	thread_yield();
}

static void call_as_pretend(void)
{
	struct cpu *c = this_cpu();
	uint64_t tpr = read_cr8();
	write_cr8(15);
	struct thread *real = c->current;
	c->current = pretend;
	sleep_call();
	c->current = real;
	write_cr8(tpr);
}

KTEST(thread, sleep_without_a_thread_or_in_idle_is_reported)
{
	KASSERT(read_rflags() & RFLAGS_IF);
	static const struct {
		bool idle;
		void (*call)(void);
		const char *what, *reason;
	} cases[] = {
	        {false, sleep_a_tick, "thread_sleep on cpu",
	         "before its scheduler started"},
	        {false, yield, "thread_yield on cpu",
	         "before its scheduler started"},
	        {true, sleep_a_tick, "thread_sleep in cpu", "idle thread"},
	        {true, yield, "thread_yield in cpu", "idle thread"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pretend = cases[i].idle ? this_cpu()->idle : NULL;
		sleep_call = cases[i].call;
		KEXPECT_EQ(recorded(call_as_pretend), 1);
		if (!message_has(cases[i].what, cases[i].reason))
			ktest_diag("case %zu: '%s'", i,
			           lockcheck_last_violation());
		KEXPECT(message_has(cases[i].what, cases[i].reason));
	}
}

/*
 * A stale handle: thread A is joined (its struct freed) and a new thread B
 * made on this CPU gets the same struct back from kmalloc. A wake or join
 * through the handle kept to A must be reported naming A's id, and leave
 * B alone: when threads were named by their struct alone, it woke B and
 * then joined it (B, asleep for good, was woken, ran and exited).
 */
static _Atomic bool reuser_started, reuser_woke;

static void reuser(void *arg)
{
	atomic_store(&reuser_started, true);
	thread_sleep_ns(UINT64_MAX);
	atomic_store(&reuser_woke, true);
}

/* Wakes t (a reuser) until it has run to its end, and joins it. */
static void finish_reuser(struct thread_handle t)
{
	while (!atomic_load(&reuser_woke)) {
		thread_wake(t);
		thread_yield();
	}
	thread_join(t);
	atomic_store(&reuser_started, false);
	atomic_store(&reuser_woke, false);
}

/* A reuser made on this CPU whose struct is a's old one; the misses made
 * on the way are finished. THREAD_NONE if kmalloc never gave it back (or
 * memory is short). */
static struct thread_handle reuse_struct(struct thread_handle a)
{
	for (int i = 0; i < 8; i++) {
		struct thread_handle b =
		        thread_create("reuser", reuser, NULL, this_cpu()->id);
		if (!thread_handle_ok(b) || b.t == a.t)
			return b;
		finish_reuser(b);
	}
	return THREAD_NONE;
}

static void join_stale(void)
{
	thread_join(stale);
}

KTEST(thread, stale_handle_to_a_reused_struct_is_reported)
{
	struct thread_handle a =
	        thread_create("a", nothing, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(a));
	thread_join(a);
	atomic_store(&reuser_started, false);
	atomic_store(&reuser_woke, false);
	struct thread_handle b = reuse_struct(a);
	if (!thread_handle_ok(b))
		KTEST_SKIP("kmalloc did not give the struct back");
	KEXPECT(b.id != a.id);
	while (!atomic_load(&reuser_started))
		thread_yield();
	/* B now sleeps for good; a tick or two lets it run if woken. */
	thread_sleep_ns(2 * SCHED_TICK_NS);
	stale = a;
	KEXPECT_EQ(recorded(wake_stale), 1);
	KEXPECT(message_has("thread_wake(id ", "a newer thread's"));
	ktest_diag("%s", lockcheck_last_violation());
	thread_sleep_ns(2 * SCHED_TICK_NS);
	KEXPECT(!atomic_load(&reuser_woke));
	unsigned joins = recorded(join_stale);
	KEXPECT_EQ(joins, 1);
	KEXPECT(message_has("thread_join(id ", "not a live thread"));
	ktest_diag("%s", lockcheck_last_violation());
	if (joins == 1)
		finish_reuser(b); /* else the stale join has joined it */
}
