/*
 * malloc/port_sync.c: the production port's threads, events, pins and
 * locks (mm/port.h), for libmm_malloc.so; memory, diagnostics and time
 * are in port_prod.c, whose opening comment gives the port as a whole.
 *
 * Purpose: what mm/ needs to wait and to run in the background, from
 * Linux threads and futexes, without calling malloc.
 *
 * Representation. A background thread is a handle from a static pool
 * of MAX_THREADS. An event is a 32-bit count that is its futex word,
 * with a count of waiters; a lock a futex word (0 free, 1 held, 2 held
 * with waiters), its owner and its rank. Each thread keeps a mask of the
 * locks it holds, mm's by rank and the library's own (locks.c).
 *
 * Algorithm: a lock spins a little, then sleeps on its word; a release
 * that finds waiters wakes one. An event's wait sleeps until the count
 * moves past the value its prepare read (see tests/host/mm_port_posix.c
 * for why no wake-up is lost). A background thread waiting on an event
 * wakes every ALONE_CHECK_NS to see whether it is the process's last
 * thread, and ends the process if so (exit_if_alone).
 *
 * Invariants: a thread takes mm locks in rising rank order, and none
 * under shootdown_lock (checked with one compare against its mask; a
 * violation mm_panics, locks.c has the whole order); the count of
 * running background threads is never more than exist.
 *
 * Locking: these are the locks. Contexts: any thread; background threads
 * block every signal.
 *
 * Limits: MM_RANK_COUNT <= 29 ranks (locks.h); MAX_THREADS background threads;
 * without /proc, a process whose threads all pthread_exit lingers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "malloc_internal.h"

static _Thread_local char t_self;       /* its address names the thread */
static _Thread_local bool t_background; /* one of mm_port_thread_start's */

/* ---- Contexts --------------------------------------------------------- */

/* A pin inside an API call is not counted: it stands for the slot the
 * call holds, which another thread of the slot waits for, and nothing
 * forbids sleeping while holding it (mm/ never does: its contract is
 * checked in the kernel and the test port, which count every pin). */
bool mm_port_can_sleep(void)
{
	return mm_malloc_self.pin_depth == 0 &&
	       (mm_malloc_held_mask & MM_MALLOC_MM_BITS) == 0;
}

/* ---- Threads ---------------------------------------------------------- */

/* The sweeper and the scavenger, and room for a restart after fork. */
#define MAX_THREADS 4

struct mm_thread {
	atomic_bool used;
	pthread_t tid;
	void (*fn)(void *);
	void *arg;
	char name[16];
};

static struct mm_thread threads[MAX_THREADS];

/* Background threads running, counted by themselves: never more than
 * exist (counted before pthread_create, a sibling that read it while the
 * new thread did not exist yet would think itself alone). */
static atomic_uint nbackground;
/* Background threads that ever counted themselves in, each before it
 * did (exit_if_alone says why). */
static atomic_uint nbackground_starts;

static void *thread_main(void *p)
{
	struct mm_thread *t = p;
	t_background = true;
	atomic_fetch_add(&nbackground_starts, 1);
	atomic_fetch_add(&nbackground, 1);
	pthread_setname_np(pthread_self(), t->name);
	t->fn(t->arg);
	atomic_fetch_sub(&nbackground, 1);
	return NULL;
}

/*
 * A background thread's stack: what mm/ needs (the kernel runs the same
 * sweeper and scavenger on stacks of at most 60 KiB), with room to spare;
 * the program's atexit handlers, which exit_if_alone's exit(0) runs, get
 * a thread of the default stack (exit_main).
 * glibc's default (RLIMIT_STACK's 8 MiB) took 16 MiB of address space for
 * the two, which under ulimit -v is the room the program's own threads
 * need (mm_malloc_arena_fit leaves it; API test address_limit). A
 * program whose static TLS (on the stack, in glibc) leaves no room in
 * it gets the default.
 */
#define BG_STACK_BYTES ((size_t)1 << 20)

/* pthread_create for thread t, with a stack of BG_STACK_BYTES. */
static int create_small(struct mm_thread *t)
{
	pthread_attr_t a;
	if (pthread_attr_init(&a) != 0)
		return pthread_create(&t->tid, NULL, thread_main, t);
	int err = pthread_attr_setstacksize(&a, BG_STACK_BYTES);
	if (!err)
		err = pthread_create(&t->tid, &a, thread_main, t);
	pthread_attr_destroy(&a);
	if (err == EINVAL)
		err = pthread_create(&t->tid, NULL, thread_main, t);
	return err;
}

struct mm_thread *mm_port_thread_start(const char *name, void (*fn)(void *),
                                       void *arg)
{
	struct mm_thread *t = NULL;
	for (unsigned i = 0; i < MAX_THREADS && !t; i++)
		if (!atomic_exchange(&threads[i].used, true))
			t = &threads[i];
	if (!t)
		return NULL;
	t->fn = fn;
	t->arg = arg;
	snprintf(t->name, sizeof(t->name), "mm_%.12s", name);
	/* The program's signals are not ours: the thread blocks them all
	 * from its first instruction (it inherits this mask). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = create_small(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		atomic_store(&t->used, false);
		return NULL;
	}
	return t;
}

/* One exit: the other background thread, alone too while the program's
 * atexit handlers ran from the first's exit(0), called it as well,
 * found the handlers taken, and ended the process under a handler still
 * running (glibc's last thread exits once). A child made without fork's
 * handlers (_Fork, clone) clears it with the threads it forgets
 * (mm_malloc_threads_forget), so that its own last thread's end still
 * ends it; one forked by such a handler keeps it, as its one thread is
 * the one in that exit, which ends the child when the handlers are
 * done. */
static atomic_bool exiting;

void mm_malloc_threads_forget(void)
{
	for (unsigned i = 0; i < MAX_THREADS; i++)
		atomic_store(&threads[i].used, false);
	/* Their count too: left at the parent's, it made this process's own
	 * threads, once started, take it for background threads only and
	 * end it (exit_if_alone). */
	atomic_store(&nbackground, 0);
	atomic_store(&exiting, false);
}

/* pthread_join is a cancellation point, and the callers (fork's prepare
 * handler, malloc_trim's stop) hold the library's locks: a thread whose
 * cancellation was pending ended here with them held, and every fork
 * after it hung. No call of the library is a cancellation point (POSIX
 * lists none of malloc's). */
void mm_port_thread_join(struct mm_thread *t)
{
	/* The thread itself: it ended the process (exit_if_alone, when no
	 * thread for the exit could start), and a program's atexit handler
	 * it runs forked, whose prepare handler stops the background
	 * threads. It never goes back to fn (exit
	 * does not return); joining itself failed (EDEADLK) and aborted. */
	if (pthread_equal(t->tid, pthread_self())) {
		atomic_store(&t->used, false);
		return;
	}
	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	int err = pthread_join(t->tid, NULL);
	pthread_setcancelstate(cancel, NULL);
	if (err)
		mm_panic("mm_port_thread_join(%s): error %d", t->name, err);
	atomic_store(&t->used, false);
}

/* ---- Events (see tests/host/mm_port_posix.c for the argument) ---------- */

/* How often a sleeping background thread checks that it is not alone. */
#define ALONE_CHECK_NS ((uint64_t)100 * 1000 * 1000)

/* The live threads of this process (/proc/self/stat's num_threads, less
 * the main thread if it exited: a zombie leader still counts there), or
 * 0 if it cannot be read. Raw reads into a stack buffer: no allocation. */
static unsigned process_threads(void)
{
	char buf[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* Fields after the command name, which ends at the last ')':
	 * state is field 3, num_threads field 20. */
	char *f = strrchr(buf, ')');
	if (!f || f[1] != ' ')
		return 0;
	bool leader_gone = f[2] == 'Z';
	for (int field = 2; f && field < 20; field++)
		f = strchr(f + 1, ' ');
	unsigned live = f ? (unsigned)strtoul(f + 1, NULL, 10) : 0;
	return live > leader_gone ? live - leader_gone : 0;
}

/* exit(0) on a thread of glibc's default stack, where the program's
 * atexit handlers and destructors run as on its last thread: on a
 * background thread's BG_STACK_BYTES, a handler that took 2 MiB of stack
 * overran it (API test background_lone_exit). Not joined: a handler's
 * fork stops and joins the thread that started it. */
static void *exit_main(void *arg)
{
	(void)arg;
	exit(0);
}

/*
 * glibc ends a process with exit(0) when its last thread exits
 * (pthread_exit from every thread, main included). Our background threads
 * count as threads there, so they would keep such a process alive: each
 * checks between its sleeps and, once only background threads are left,
 * ends the process as that last thread would have.
 *
 * The two counts are read one after the other, and a background thread
 * that started in between was in the second but not the first: the
 * sweeper, which read 2 threads (main and itself) before the scavenger
 * existed and 2 background threads after it counted itself, ended the
 * process with exit(0) under its main thread, which had printed nothing
 * yet (malloc-api-test's env_switches, once in about 6 runs of make
 * test on a loaded machine). So a start between the reads (counted in
 * nbackground_starts before nbackground) voids the comparison; a thread
 * that ends between them only lowers the second count.
 */
static void exit_if_alone(void)
{
	if (atomic_load(&exiting))
		return;
	unsigned starts = atomic_load(&nbackground_starts);
	unsigned n = process_threads();
	mm_malloc_hook(MM_MALLOC_HOOK_ALONE_COUNTED);
	if (n && n <= atomic_load(&nbackground) &&
	    atomic_load(&nbackground_starts) == starts &&
	    !atomic_exchange(&exiting, true)) {
		pthread_t t;
		if (pthread_create(&t, NULL, exit_main, NULL) != 0)
			exit(0); /* no room for one: here, as before */
		pthread_detach(t);
	}
}

struct prod_event {
	_Atomic uint32_t count;   /* the futex word */
	_Atomic uint32_t waiters; /* in wait, from before reading count */
	const char *name;
};

_Static_assert(sizeof(struct prod_event) <= sizeof(mm_event_t),
               "the event fits in mm_event_t");

static struct prod_event *ev(mm_event_t *e)
{
	return (struct prod_event *)(void *)e->opaque;
}

/* errno is left as it was: a wait whose word changed fails with EAGAIN
 * (or EINTR, ETIMEDOUT), which nobody reads, and free() must not change
 * errno (POSIX.1-2024, glibc since 2.33). Until this version a free that
 * waited for a lock did, now and then. */
static long futex(_Atomic uint32_t *word, int op, uint32_t val,
                  const struct timespec *ts, uint32_t bitset)
{
	int saved = errno;
	long r = syscall(SYS_futex, (uint32_t *)word, op | FUTEX_PRIVATE_FLAG,
	                 val, ts, NULL, bitset);
	errno = saved;
	return r;
}

void mm_event_init(mm_event_t *e, const char *name)
{
	struct prod_event *p = ev(e);
	atomic_init(&p->count, 0);
	atomic_init(&p->waiters, 0);
	p->name = name;
}

uint64_t mm_event_prepare(mm_event_t *e)
{
	return atomic_load(&ev(e)->count);
}

bool mm_event_wait(mm_event_t *e, uint64_t seen, uint64_t timeout_ns)
{
	struct prod_event *p = ev(e);
	uint64_t now = mm_port_now_ns();
	uint64_t deadline =
	        now + timeout_ns < now ? UINT64_MAX : now + timeout_ns;
	bool moved;
	atomic_fetch_add(&p->waiters, 1);
	for (;;) {
		moved = atomic_load(&p->count) != (uint32_t)seen;
		if (moved || (now = mm_port_now_ns()) >= deadline)
			break;
		/* A background thread looks up every ALONE_CHECK_NS. */
		uint64_t until = deadline;
		if (t_background) {
			exit_if_alone();
			if (deadline - now > ALONE_CHECK_NS)
				until = now + ALONE_CHECK_NS;
		}
		struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
		                      .tv_nsec = (long)(until % 1000000000u)};
		futex(&p->count, FUTEX_WAIT_BITSET, (uint32_t)seen, &ts,
		      FUTEX_BITSET_MATCH_ANY);
	}
	atomic_fetch_sub(&p->waiters, 1);
	return moved;
}

void mm_event_wake(mm_event_t *e)
{
	struct prod_event *p = ev(e);
	atomic_fetch_add(&p->count, 1);
	if (atomic_load(&p->waiters))
		futex(&p->count, FUTEX_WAKE_BITSET, INT_MAX, NULL,
		      FUTEX_BITSET_MATCH_ANY);
}

/* ---- Per-CPU data ------------------------------------------------------- */

/* Outside any call (held NULL), so the enter is the outermost one. */
struct mm_pin mm_malloc_pin_slow(void)
{
	mm_malloc_self.pin_held = mm_malloc_enter();
	mm_malloc_self.pin_depth++;
	return (struct mm_pin){.state = 1,
	                       .cpu = (unsigned)mm_malloc_self.slot_id};
}

void mm_malloc_unpin_slow(void)
{
	mm_malloc_self.pin_depth--;
	mm_malloc_leave(mm_malloc_self.pin_held);
}

/* ---- Locks -------------------------------------------------------------- */

struct prod_lock {
	_Atomic uint32_t word; /* 0 free, 1 held, 2 held and maybe waiters */
	_Atomic(const void *) owner;
	const char *name;
	enum mm_lock_rank rank;
};

_Static_assert(sizeof(struct prod_lock) <= sizeof(mm_lock_t),
               "the lock fits in mm_lock_t");

static struct prod_lock *lk(const mm_lock_t *l)
{
	return (struct prod_lock *)(void *)l;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	struct prod_lock *p = lk(l);
	atomic_init(&p->word, 0);
	atomic_init(&p->owner, NULL);
	p->name = name;
	p->rank = rank;
}

static __attribute__((noinline)) void lock_slow(struct prod_lock *p)
{
	for (int i = 0; i < 100; i++) {
		uint32_t want = 0;
		if (atomic_load_explicit(&p->word, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_weak_explicit(&p->word, &want, 1,
		                                          memory_order_acquire,
		                                          memory_order_relaxed))
			return;
		__builtin_ia32_pause();
	}
	while (atomic_exchange_explicit(&p->word, 2, memory_order_acquire))
		futex(&p->word, FUTEX_WAIT, 2, NULL, 0);
}

/* A lock held above rank's bit: mm_panics naming both. */
static __attribute__((noinline, cold)) void misranked(struct prod_lock *p)
{
	char held[64];
	unsigned shift = MM_MALLOC_BIT_MM + p->rank;
	unsigned above = mm_malloc_held_mask >> shift << shift;
	mm_panic("mm lock %s (rank %d) taken while holding %s", p->name,
	         p->rank, mm_malloc_lock_name(above, held, sizeof(held)));
}

/*
 * One compare against the held mask: every mm lock held has a lower
 * rank, and shootdown_lock (the top bit) is not held. The lock's bit is
 * in the mask from before its word is taken (or waited for) until after
 * it is given back: a signal handler's call that interrupts the take
 * and needs the lock is reported (misranked) rather than waiting for
 * its own thread for ever, its signals blocked (until this version the
 * bit came after the take and went before the release; hooks test
 * handler_call_in_lock_window hung).
 */
unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct prod_lock *p = lk(l);
	unsigned bit = 1u << (MM_MALLOC_BIT_MM + p->rank);
	if (__builtin_expect(
	            mm_malloc_held_mask >> (MM_MALLOC_BIT_MM + p->rank), 0))
		misranked(p);
	mm_malloc_held_mask |= bit;
	atomic_signal_fence(memory_order_seq_cst);
	uint32_t want = 0;
	if (!atomic_compare_exchange_strong_explicit(&p->word, &want, 1,
	                                             memory_order_acquire,
	                                             memory_order_relaxed))
		lock_slow(p);
	mm_malloc_hook(MM_MALLOC_HOOK_LOCK_TAKEN);
	atomic_store_explicit(&p->owner, &t_self, memory_order_relaxed);
	return 0;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	(void)irq_state;
	struct prod_lock *p = lk(l);
	atomic_store_explicit(&p->owner, NULL, memory_order_relaxed);
	if (atomic_exchange_explicit(&p->word, 0, memory_order_release) == 2)
		futex(&p->word, FUTEX_WAKE, 1, NULL, 0);
	mm_malloc_hook(MM_MALLOC_HOOK_LOCK_RELEASED);
	atomic_signal_fence(memory_order_seq_cst);
	mm_malloc_held_mask &= ~(1u << (MM_MALLOC_BIT_MM + p->rank));
}

bool mm_lock_held(const mm_lock_t *l)
{
	return atomic_load_explicit(&lk(l)->owner, memory_order_relaxed) ==
	       &t_self;
}
