/*
 * The POSIX port's own contract (tests/host/mm_port_posix.c): ranked locks
 * that nest, each with its own mutex; rank violations reported naming both
 * locks; the contexts in which a thread may sleep and the hooks' checks of
 * them; locks and events independent of each other; joinable threads.
 * Event counts on their own are in mm_event_test.c.
 *
 * Everything here also runs under ThreadSanitizer (make test-tsan), which
 * checks that the locks and events order memory as they claim to.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "port_test_util.h"

/* ---- Locks ----------------------------------------------------------------
 */

enum { NEST_THREADS = 4, NEST_ROUNDS = 20000 };

static mm_lock_t outer, inner;
static unsigned long both_count, inner_count; /* plain: the locks guard them */

struct nest_arg {
	int id;
	unsigned long bad; /* held-state mismatches seen */
};

static void nest_worker(void *p)
{
	struct nest_arg *a = p;
	mm_port_set_cpu((unsigned)a->id);
	for (int i = 0; i < NEST_ROUNDS; i++) {
		bool nest = (i + a->id) % 3 != 0;
		unsigned long o = nest ? mm_lock_acquire(&outer) : 0;
		unsigned long n = mm_lock_acquire(&inner);
		a->bad += !mm_lock_held(&inner) ||
		          mm_lock_held(&outer) != nest || mm_port_can_sleep();
		if (nest)
			both_count++;
		inner_count++;
		mm_lock_release(&inner, n);
		if (nest)
			mm_lock_release(&outer, o);
	}
	a->bad += !mm_port_can_sleep();
}

KTEST(mm_port, locks_nest_in_rank_order)
{
	mm_lock_init(&outer, "outer", MM_RANK_PALLOC);
	mm_lock_init(&inner, "inner", MM_RANK_HEAP);
	both_count = inner_count = 0;
	struct nest_arg args[NEST_THREADS];
	struct mm_thread *t[NEST_THREADS];
	unsigned long nested = 0;
	for (int i = 0; i < NEST_THREADS; i++) {
		args[i] = (struct nest_arg){.id = i};
		for (int r = 0; r < NEST_ROUNDS; r++)
			nested += (r + i) % 3 != 0;
	}
	KASSERT(start_all(t, NEST_THREADS, nest_worker, args, sizeof(*args)));
	join_all(t, NEST_THREADS);
	for (int i = 0; i < NEST_THREADS; i++)
		KEXPECT_EQ(args[i].bad, 0);
	KEXPECT_EQ(both_count, nested);
	KEXPECT_EQ(inner_count, (unsigned long)NEST_THREADS * NEST_ROUNDS);
}

struct other_lock_arg {
	mm_lock_t *lock;
	atomic_int go, done;
	bool could_sleep;
};

static void take_other_lock(void *p)
{
	struct other_lock_arg *a = p;
	poll_until(&a->go, 1, UINT64_MAX);
	a->could_sleep = mm_port_can_sleep(); /* another thread's lock */
	mm_lock_release(a->lock, mm_lock_acquire(a->lock));
	atomic_store(&a->done, 1);
}

/* While one thread holds a lock, another takes a different one at once.
 * No time bound (5 s failed a starved but correct run): locks that were
 * not independent would hang, and HOST_TIMEOUT names the test. */
KTEST(mm_port, locks_are_independent)
{
	static mm_lock_t a_lock, b_lock;
	mm_lock_init(&a_lock, "a", MM_RANK_HEAP);
	mm_lock_init(&b_lock, "b", MM_RANK_HEAP);
	struct other_lock_arg arg = {.lock = &b_lock};
	struct mm_thread *t =
	        mm_port_thread_start("other", take_other_lock, &arg);
	KASSERT(t);
	unsigned long irq = mm_lock_acquire(&a_lock);
	atomic_store(&arg.go, 1);
	bool done = poll_until(&arg.done, 1, UINT64_MAX);
	mm_lock_release(&a_lock, irq);
	mm_port_thread_join(t);
	KEXPECT(done);
	KEXPECT(arg.could_sleep);
}

/* mm_lock_acquire(l) panics (caught); true if it did and l is not held. */
__attribute__((noinline)) static bool acquire_panics(mm_lock_t *l)
{
	bool fired = MM_PORT_PANICS(mm_lock_acquire(l));
	return fired && !mm_lock_held(l);
}

static bool said(const char *a, const char *b, const char *c, const char *d)
{
	const char *m = mm_port_last_panic();
	return strstr(m, a) && strstr(m, b) && strstr(m, c) && strstr(m, d);
}

KTEST(mm_port, misranked_nesting_panics_naming_both)
{
	static mm_lock_t heap_l, palloc_l, heap2_l;
	mm_lock_init(&heap_l, "test_heap", MM_RANK_HEAP);
	mm_lock_init(&palloc_l, "test_palloc", MM_RANK_PALLOC);
	mm_lock_init(&heap2_l, "test_heap2", MM_RANK_HEAP);

	unsigned long irq = mm_lock_acquire(&heap_l);
	KEXPECT(acquire_panics(&palloc_l)); /* lower rank under a higher */
	KEXPECT(said("mm lock test_palloc (rank 3)", "taken while holding",
	             "mm lock test_heap (rank 4)", "ranks must increase"));
	KEXPECT(acquire_panics(&heap2_l)); /* the same rank */
	KEXPECT(said("test_heap2 (rank 4)", "taken while holding",
	             "test_heap (rank 4)", ""));
	KEXPECT(MM_PORT_PANICS(mm_lock_acquire(&heap_l)));
	KEXPECT(said("mm lock test_heap (rank 4)", "taken twice", "", ""));
	KEXPECT(mm_lock_held(&heap_l));
	mm_lock_release(&heap_l, irq);

	/* Nothing was left held: the right order works. */
	KEXPECT(mm_port_can_sleep());
	unsigned long a = mm_lock_acquire(&palloc_l);
	unsigned long b = mm_lock_acquire(&heap_l);
	KEXPECT(mm_lock_held(&palloc_l) && mm_lock_held(&heap_l));
	mm_lock_release(&palloc_l, a); /* out of order release is fine */
	mm_lock_release(&heap_l, b);

	KEXPECT(MM_PORT_PANICS(mm_lock_release(&heap_l, 0)));
	KEXPECT(said("test_heap", "released by a thread that does not hold", "",
	             ""));
	mm_lock_t bad;
	KEXPECT(MM_PORT_PANICS(mm_lock_init(&bad, "bad", MM_RANK_COUNT)));
	KEXPECT(said("mm lock bad: bad rank", "", "", ""));
}

KTEST(mm_port, can_sleep_and_contract_checks)
{
	static mm_lock_t heap_l, palloc_l;
	static mm_event_t e;
	mm_lock_init(&heap_l, "check_heap", MM_RANK_HEAP);
	mm_lock_init(&palloc_l, "check_palloc", MM_RANK_PALLOC);
	mm_event_init(&e, "check_event");
	KEXPECT(mm_port_can_sleep());

	unsigned long irq = mm_lock_acquire(&palloc_l);
	KEXPECT(!mm_port_can_sleep());
	KEXPECT(MM_PORT_PANICS(mm_event_wait(&e, mm_event_prepare(&e), 0)));
	KEXPECT(said("mm_event_wait(check_event)", "holding mm lock",
	             "check_palloc", ""));
	KEXPECT(MM_PORT_PANICS(mm_port_used(NULL, 0)));
	KEXPECT(said("mm_port_used called holding mm lock check_palloc", "", "",
	             ""));
	/* No mm lock at all for a wake (the kernel's event lock ranks below
	 * palloc's; it allowed one below the heap's until a review). */
	KEXPECT(MM_PORT_PANICS(mm_event_wake(&e)));
	KEXPECT(said("mm_event_wake(check_event)", "holding mm lock",
	             "check_palloc", ""));
	unsigned long irq2 = mm_lock_acquire(&heap_l);
	KEXPECT(MM_PORT_PANICS(mm_event_wake(&e)));
	KEXPECT(said("mm_event_wake(check_event)", "check_heap", "", ""));
	/* Nor a log under the heap's (the kernel's printk takes a lock). */
	KEXPECT(MM_PORT_PANICS(mm_log("x")));
	KEXPECT(said("mm_log called holding heap lock check_heap", "", "", ""));
	mm_lock_release(&heap_l, irq2);
	mm_lock_release(&palloc_l, irq);
	KEXPECT(mm_port_can_sleep());

	mm_port_set_atomic(true);
	KEXPECT(!mm_port_can_sleep());
	KEXPECT(MM_PORT_PANICS(mm_event_wait(&e, mm_event_prepare(&e), 0)));
	KEXPECT(said("mm_event_wait(check_event)", "atomic context", "", ""));
	mm_port_set_atomic(false);
	KEXPECT(mm_port_can_sleep());

	/* Pinned, nothing that may sleep (the kernel pins its slow paths
	 * with interrupts off; until a review this port said so only by
	 * can_sleep's answer). A caught panic unpins. */
	(void)mm_port_pin();
	KEXPECT(!mm_port_can_sleep());
	KEXPECT(MM_PORT_PANICS(mm_event_wait(&e, mm_event_prepare(&e), 0)));
	KEXPECT(said("mm_event_wait(check_event)", "pinned to CPU", "", ""));
	(void)mm_port_pin();
	KEXPECT(MM_PORT_PANICS(mm_port_yield()));
	KEXPECT(said("mm_port_yield called pinned", "", "", ""));
	/* An outermost pin takes no lock's place: here it spins on the
	 * CPU's slot, which the lock's holder could be waiting for. */
	irq = mm_lock_acquire(&palloc_l);
	KEXPECT(MM_PORT_PANICS(mm_port_pin()));
	KEXPECT(said("mm_port_pin (outermost) called holding mm lock",
	             "check_palloc", "", ""));
	mm_lock_release(&palloc_l, irq);
	KEXPECT(mm_port_can_sleep());
	KEXPECT(mm_event_wait(&e, mm_event_prepare(&e) - 1, 0));
}

/* A page between its batch's unused_begin and unused_finish is the
 * caller's: a used or map of it then panics (the kernel would map a new
 * frame while other CPUs may still translate the old one, which finish
 * then frees). No port checked it until a review. */
KTEST(mm_port, a_page_in_flight_is_not_used_again)
{
	char *a = mm_port_reserve(4 * MM_PAGE_SIZE, MM_PAGE_SIZE);
	KASSERT(a);
	KASSERT(mm_port_map(a, 4 * MM_PAGE_SIZE));
	struct mm_unused_batch b;
	mm_unused_batch_init(&b);
	mm_port_unused_begin(a + MM_PAGE_SIZE, MM_PAGE_SIZE, &b);
	KEXPECT(mm_port_used(a, MM_PAGE_SIZE)); /* its neighbour: fine */
	KEXPECT(MM_PORT_PANICS(mm_port_used(a, 2 * MM_PAGE_SIZE)));
	KEXPECT(said("mm_port_used(", "is between its batch's", "", ""));
	KEXPECT(MM_PORT_PANICS(mm_port_map(a + MM_PAGE_SIZE, MM_PAGE_SIZE)));
	KEXPECT(said("mm_port_map(", "is between its batch's", "", ""));
	mm_port_unused_finish(&b);
	KEXPECT(mm_port_used(a, 2 * MM_PAGE_SIZE));
	a[MM_PAGE_SIZE] = 1;
	mm_port_unreserve(a, 4 * MM_PAGE_SIZE);
}

/* ---- Events and locks together --------------------------------------------
 */

struct holder_arg {
	mm_lock_t *lock;
	mm_event_t *e;
	atomic_int *cond;
	struct waiter_arg *w;
};

/* Takes the lock, and while holding it makes the condition true once the
 * waiter has read the count (it takes only its own lock first, so it gets
 * there); wakes it once the lock is let go (no wake under an mm lock:
 * port.h, as the kernel's event lock ranks below them all). */
static void holder(void *p)
{
	struct holder_arg *a = p;
	unsigned long irq = mm_lock_acquire(a->lock);
	poll_until(&a->w->ready, 1, UINT64_MAX);
	sleep_ns(5 * MS); /* let it fall asleep */
	atomic_store(a->cond, 1);
	mm_lock_release(a->lock, irq);
	mm_event_wake(a->e);
}

/* The holder of an mm lock makes the condition true for a waiter that
 * itself takes another lock first: locks and events share no mutex. The waiter
 * has no timeout: if the wake did not reach it, it would sleep for good and the
 * suite's timeout (HOST_TIMEOUT) would name the test; how long it took is no
 * check (the host may leave a thread unscheduled for any length). */
KTEST(mm_port, lock_holder_wakes_event_waiter)
{
	static mm_lock_t held_l, own_l;
	static mm_event_t e;
	static atomic_int cond;
	mm_lock_init(&held_l, "held", MM_RANK_PALLOC);
	mm_lock_init(&own_l, "waiter_own", MM_RANK_HEAP);
	mm_event_init(&e, "held_event");
	atomic_store(&cond, 0);
	struct waiter_arg w = {.e = &e,
	                       .cond = &cond,
	                       .timeout_ns = UINT64_MAX,
	                       .own = &own_l};
	struct holder_arg h = {
	        .lock = &held_l, .e = &e, .cond = &cond, .w = &w};
	struct mm_thread *tw = mm_port_thread_start("waiter", waiter, &w);
	KASSERT(tw);
	struct mm_thread *th = mm_port_thread_start("holder", holder, &h);
	if (th)
		mm_port_thread_join(th);
	mm_port_thread_join(tw);
	KASSERT(th);
	KEXPECT(w.moved && w.saw_cond);
}

struct waker_arg {
	mm_event_t *e;
	atomic_int *cond;
	atomic_int go; /* the test thread holds its lock */
	struct waiter_arg *w;
};

static void waker(void *p)
{
	struct waker_arg *a = p;
	poll_until(&a->go, 1, UINT64_MAX);
	poll_until(&a->w->ready, 1, UINT64_MAX);
	sleep_ns(5 * MS); /* let it fall asleep */
	atomic_store(a->cond, 1);
	mm_event_wake(a->e);
}

/* The test thread holds a heap-rank lock while a third thread wakes a
 * waiter, which finishes before the lock is released. (Threads start and
 * join outside the lock: those hooks may sleep.) No wait has a time
 * bound: the test gave up on the waiter after 5 s, and its wait after
 * 10 s, which a host loaded as make test loads it can starve a thread
 * for; a wake that never comes hangs the run, and HOST_TIMEOUT names
 * the test. */
KTEST(mm_port, event_works_while_a_lock_is_held)
{
	static mm_lock_t held_l;
	static mm_event_t e;
	static atomic_int cond;
	mm_lock_init(&held_l, "held_heap", MM_RANK_HEAP);
	mm_event_init(&e, "third_event");
	atomic_store(&cond, 0);
	struct waiter_arg w = {
	        .e = &e, .cond = &cond, .timeout_ns = UINT64_MAX};
	struct waker_arg k = {.e = &e, .cond = &cond, .w = &w};
	struct mm_thread *tw = mm_port_thread_start("waiter", waiter, &w);
	KASSERT(tw);
	struct mm_thread *tk = mm_port_thread_start("waker", waker, &k);
	if (!tk) { /* wake the waiter ourselves, and fail */
		atomic_store(&cond, 1);
		mm_event_wake(&e);
		mm_port_thread_join(tw);
		KASSERT(tk);
	}
	unsigned long irq = mm_lock_acquire(&held_l);
	atomic_store(&k.go, 1);
	bool done_under_lock = poll_until(&w.done, 1, UINT64_MAX);
	mm_lock_release(&held_l, irq);
	mm_port_thread_join(tk);
	mm_port_thread_join(tw);
	KEXPECT(done_under_lock);
	KEXPECT(w.moved && w.saw_cond);
}

/* ---- Threads ---------------------------------------------------------------
 */

struct join_arg {
	int id;
	char name[16];
	bool returned; /* plain: the join orders it */
};

static void join_worker(void *p)
{
	struct join_arg *a = p;
	pthread_getname_np(pthread_self(), a->name, sizeof(a->name));
	sleep_ns((uint64_t)a->id * 20 * MS);
	a->returned = true;
}

static void count_up(void *p)
{
	++*(int *)p;
}

KTEST(mm_port, threads_start_and_join)
{
	enum { N = 4, CHURN = 100 };
	struct join_arg args[N];
	struct mm_thread *t[N];
	for (int i = 0; i < N; i++)
		args[i] = (struct join_arg){.id = i};
	uint64_t t0 = mm_port_now_ns();
	KASSERT(start_all(t, N, join_worker, args, sizeof(*args)));
	join_all(t, N);
	KEXPECT(mm_port_now_ns() - t0 >= (N - 1) * 20 * MS);
	for (int i = 0; i < N; i++) {
		KEXPECT(args[i].returned);
		KEXPECT_STREQ(args[i].name, "test_worker");
	}
	/* One after another: each join frees its thread (ASan: no leak). */
	int count = 0;
	for (int i = 0; i < CHURN; i++) {
		struct mm_thread *c =
		        mm_port_thread_start("churn", count_up, &count);
		KASSERT(c);
		mm_port_thread_join(c);
	}
	KEXPECT_EQ(count, CHURN);
}

/* ---- Reaching the other CPUs ----------------------------------------------
 */

struct bound_arg {
	atomic_int bound, go; /* the thread is bound; it may unbind */
};

static void bound_worker(void *p)
{
	struct bound_arg *a = p;
	mm_port_bind_cpu(3);
	atomic_store(&a->bound, 1);
	poll_until(&a->go, 1, UINT64_MAX); /* no deadline */
	mm_port_unbind_cpu();
}

static void note_cpu(unsigned cpu, void *arg)
{
	*(uint64_t *)arg |= (uint64_t)1 << cpu;
}

/* A bound thread never pins, so its CPU cannot be held for
 * mm_port_each_other_cpu: the call passes it by and says that it did
 * (false), so that mm/ does not take a flush or a check of that CPU's
 * caches as done. The others are visited; unbound, CPU 3 is too. */
KTEST(mm_port, each_other_cpu_reports_a_bound_cpu_it_cannot_reach)
{
	enum { SELF = 0, BOUND = 3 };
	uint64_t others = ~((uint64_t)1 << SELF);
	mm_port_set_cpu(SELF);
	struct bound_arg a = {0};
	struct mm_thread *t = mm_port_thread_start("bound", bound_worker, &a);
	KASSERT(t);
	poll_until(&a.bound, 1, UINT64_MAX);
	uint64_t seen = 0;
	KEXPECT(!mm_port_each_other_cpu(note_cpu, &seen));
	KEXPECT_EQ(seen, others & ~((uint64_t)1 << BOUND));
	atomic_store(&a.go, 1);
	mm_port_thread_join(t);
	seen = 0;
	KEXPECT(mm_port_each_other_cpu(note_cpu, &seen));
	KEXPECT_EQ(seen, others);
}
