/*
 * malloc/port_prod.c: mm/port.h for a production malloc on Linux, the
 * port libmm_malloc.so is built with.
 *
 * Unlike the test port (tests/host/mm_port_posix.c) it never calls malloc
 * (it would be calling itself): memory comes from mmap, diagnostics are
 * formatted into stack buffers and written with write(2), thread handles
 * come from a static pool. Nothing is caught: mm_panic prints
 * "mm_malloc: ..." on stderr and aborts, as glibc does on a bad free.
 *
 * Address space: reserve = a PROT_NONE, MAP_NORESERVE mapping trimmed to
 * the alignment; map and prepare = mprotect read-write (prepare makes a
 * whole chunk read-write when the heap grows, so the host can back it
 * with huge pages); used = nothing (a page given back with
 * madvise(MADV_DONTNEED) reads as zero when touched again); unused_begin
 * = madvise(MADV_DONTNEED) at once, or a memset of each page it refuses
 * (locked ones), finish only empties the batch (a user process has no
 * shootdown to defer).
 *
 * CPUs are thread slots (slots.c): every API call holds its thread's slot
 * (malloc_internal.h), so a pin is a counter and the slot's index, inline
 * (malloc/pin.h). A pin outside an API call takes the slot itself
 * (mm_malloc_pin_slow).
 *
 * Locks: a futex word (0 free, 1 held, 2 held with waiters) after a short
 * spin, the owner for mm_lock_held, and mm's rank order checked against a
 * per-thread mask of the ranks held (one compare; a violation mm_panics).
 * Events: a 32-bit count that is the futex word, as in the test port.
 *
 * Background threads block every signal, and end the process with
 * exit(0) once they are the only threads left, as glibc's last thread
 * would (see exit_if_alone).
 *
 * Limits: MM_MAX_CPUS slots; at most MAX_THREADS background threads;
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "malloc_internal.h"

static _Thread_local unsigned t_held_mask; /* bit r: an mm lock of rank r */
static _Thread_local char t_self;          /* its address names the thread */
static _Thread_local bool t_background;    /* one of mm_port_thread_start's */

/* ---- Diagnostics (first: everything below may panic) ------------------- */

/* Writes all of buf to stderr, retrying short writes. */
static void write_all(const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(2, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		n -= (size_t)w;
	}
}

/* "mm_malloc: " prefix + the message + newline, in one write. */
static void report(const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "mm_malloc: %s", prefix);
	if (n < 0)
		n = 0;
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	write_all(buf, len);
}

void mm_panic(const char *fmt, ...)
{
	/* One thread reports; another that panics meanwhile waits for the
	 * abort rather than interleaving its lines. */
	static atomic_bool panicking;
	if (atomic_exchange(&panicking, true))
		for (;;)
			pause();
	va_list ap;
	va_start(ap, fmt);
	report("", fmt, ap);
	va_end(ap);
	abort();
}

/* Appends at most max bytes of s to buf, which has room for cap. */
static void append(char *buf, size_t *n, size_t cap, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max && *n < cap; i++)
		buf[(*n)++] = s[i];
}

int mm_malloc_env_switch(const char *name, const char *val)
{
	if (!val || !val[0])
		return -1;
	if ((val[0] == '0' || val[0] == '1') && !val[1])
		return val[0] - '0';
	/* No stdio: the constructor calls this before libc is set up. */
	char buf[200];
	size_t n = 0;
	append(buf, &n, sizeof(buf), "mm_malloc: ", SIZE_MAX);
	append(buf, &n, sizeof(buf), name, 40);
	append(buf, &n, sizeof(buf), "=", 1);
	append(buf, &n, sizeof(buf), val, 40);
	if (strlen(val) > 40)
		append(buf, &n, sizeof(buf), "...", 3);
	append(buf, &n, sizeof(buf), ": not 0 or 1; ignored\n", SIZE_MAX);
	int saved = errno;
	write_all(buf, n);
	errno = saved;
	return -1;
}

/* mm_log lines go to stderr only if MM_MALLOC_VERBOSE=1: a preloaded
 * malloc must not change what a program prints. -1 until read. */
static atomic_int verbose = -1;

void mm_malloc_log_init(const char *val)
{
	atomic_store_explicit(
	        &verbose, mm_malloc_env_switch("MM_MALLOC_VERBOSE", val) == 1,
	        memory_order_relaxed);
}

void mm_log(const char *fmt, ...)
{
	/* Read here if a line comes before the constructor. */
	if (atomic_load_explicit(&verbose, memory_order_relaxed) < 0)
		mm_malloc_log_init(getenv("MM_MALLOC_VERBOSE"));
	int v = atomic_load_explicit(&verbose, memory_order_relaxed);
	if (!v)
		return;
	va_list ap;
	va_start(ap, fmt);
	report("log: ", fmt, ap);
	va_end(ap);
}

/* ---- Address space ------------------------------------------------------ */

void *mm_port_reserve(size_t nbytes, size_t align)
{
	if (align < MM_PAGE_SIZE)
		align = MM_PAGE_SIZE;
	size_t len = nbytes + align - MM_PAGE_SIZE;
	if (len < nbytes)
		return NULL;
	void *raw = mmap(NULL, len, PROT_NONE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t base = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
	if (base > (uintptr_t)raw)
		munmap(raw, base - (uintptr_t)raw);
	uintptr_t end = (uintptr_t)raw + len;
	if (end > base + nbytes)
		munmap((void *)(base + nbytes), end - (base + nbytes));
	return (void *)base;
}

void mm_port_unreserve(void *addr, size_t nbytes)
{
	munmap(addr, nbytes);
}

/*
 * A failed map or prepare leaves errno as it was: mprotect fails with
 * ENOMEM under RLIMIT_DATA or the VMA limit, but a growth that fails is
 * not yet an allocation that fails (the heap grows a reserve ahead and
 * rounds growths to whole chunks, and the allocation may be served from
 * what is left); an API call that does fail sets ENOMEM itself
 * (malloc.c). Until this version the mprotect's ENOMEM leaked out of
 * allocations that succeeded near RLIMIT_DATA.
 */
static bool make_writable(void *addr, size_t nbytes)
{
	int saved = errno;
	bool ok = mprotect(addr, nbytes, PROT_READ | PROT_WRITE) == 0;
	/* Part may have changed (the VMA limit): it was not mapped before,
	 * so taking it all back restores it. */
	if (!ok)
		mprotect(addr, nbytes, PROT_NONE);
	errno = saved;
	return ok;
}

bool mm_port_map(void *addr, size_t nbytes)
{
	return make_writable(addr, nbytes);
}

bool mm_port_used(void *addr, size_t nbytes)
{
	(void)addr;
	(void)nbytes;
	return true; /* read-write since prepare; dropped pages read zero */
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	if (!make_writable(addr, nbytes))
		return false;
	mm_malloc_note_growth(nbytes);
	return true;
}

/*
 * madvise(MADV_DONTNEED) refuses locked pages (EINVAL: the program's
 * mlock of an object it then freed, or mlockall), which keep their
 * contents; the heap takes pages it gave back for zero (mm_port_used
 * makes them usable "zero-filled"), so each page the call refused is
 * zeroed here, and the others are given back one by one. Until this
 * version a calloc under mlockall returned the bytes of a freed object.
 * A refused call may have given back the pages before the locked ones,
 * so the range is not simply zeroed whole: that would make them resident
 * again.
 */
static void zero_refused(void *addr, size_t nbytes)
{
	for (size_t off = 0; off < nbytes; off += MM_PAGE_SIZE) {
		char *pg = (char *)addr + off;
		if (madvise(pg, MM_PAGE_SIZE, MADV_DONTNEED) != 0)
			memset(pg, 0, MM_PAGE_SIZE);
	}
}

void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	uintptr_t base = (uintptr_t)addr;
	size_t n = nbytes / MM_PAGE_SIZE;
	if (n > MM_UNUSED_BATCH_PAGES - b->npages)
		mm_panic("mm_port_unused_begin: batch full at %#lx",
		         (unsigned long)base);
	b->npages += n; /* the cookies are the kernel's; nothing to keep */
	if (base < b->lo)
		b->lo = base;
	if (base + nbytes > b->hi)
		b->hi = base + nbytes;
	/* A free that gives pages back keeps errno, as futex says. */
	int saved = errno;
	if (madvise(addr, nbytes, MADV_DONTNEED) != 0)
		zero_refused(addr, nbytes);
	errno = saved;
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	mm_unused_batch_init(b);
}

size_t mm_port_free_pages(void)
{
	return SIZE_MAX / 2; /* the host kernel manages its frames */
}

/* ---- Contexts, time and threads ----------------------------------------- */

/* A pin inside an API call is not counted: it stands for the slot the
 * call holds, which another thread of the slot waits for, and nothing
 * forbids sleeping while holding it (mm/ never does: its contract is
 * checked in the kernel and the test port, which count every pin). */
bool mm_port_can_sleep(void)
{
	return mm_malloc_self.pin_depth == 0 && t_held_mask == 0;
}

void mm_port_yield(void)
{
	sched_yield();
}

/* A slot belongs to the thread that owns it, which may hold it for good
 * in its fast path (malloc/slots.c): another thread cannot stop it, so
 * other slots' caches are given back only by their threads (at a refill
 * after a sweep cycle's flip, and at their exit). */
bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	(void)fn;
	(void)arg;
	return false;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mm_port_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t mm_port_thread_cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

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

static void *thread_main(void *p)
{
	struct mm_thread *t = p;
	t_background = true;
	atomic_fetch_add(&nbackground, 1);
	pthread_setname_np(pthread_self(), t->name);
	t->fn(t->arg);
	atomic_fetch_sub(&nbackground, 1);
	return NULL;
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
	int err = pthread_create(&t->tid, NULL, thread_main, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		atomic_store(&t->used, false);
		return NULL;
	}
	return t;
}

void mm_malloc_threads_forget(void)
{
	for (unsigned i = 0; i < MAX_THREADS; i++)
		atomic_store(&threads[i].used, false);
	/* Their count too: left at the parent's, it made this process's own
	 * threads, once started, take it for background threads only and
	 * end it (exit_if_alone). */
	atomic_store(&nbackground, 0);
}

void mm_port_thread_join(struct mm_thread *t)
{
	int err = pthread_join(t->tid, NULL);
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

/*
 * glibc ends a process with exit(0) when its last thread exits
 * (pthread_exit from every thread, main included). Our background threads
 * count as threads there, so they would keep such a process alive: each
 * checks between its sleeps and, once only background threads are left,
 * ends the process as that last thread would have.
 */
static void exit_if_alone(void)
{
	unsigned n = process_threads();
	if (n && n <= atomic_load(&nbackground))
		exit(0);
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
_Static_assert(MM_RANK_COUNT <= 32, "t_held_mask has a bit per rank");

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

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct prod_lock *p = lk(l);
	if (__builtin_expect(t_held_mask >> p->rank, 0))
		mm_panic("mm lock %s (rank %d) taken while holding a lock of "
		         "rank %d or above",
		         p->name, p->rank, p->rank);
	uint32_t want = 0;
	if (!atomic_compare_exchange_strong_explicit(&p->word, &want, 1,
	                                             memory_order_acquire,
	                                             memory_order_relaxed))
		lock_slow(p);
	atomic_store_explicit(&p->owner, &t_self, memory_order_relaxed);
	t_held_mask |= 1u << p->rank;
	return 0;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	(void)irq_state;
	struct prod_lock *p = lk(l);
	t_held_mask &= ~(1u << p->rank);
	atomic_store_explicit(&p->owner, NULL, memory_order_relaxed);
	if (atomic_exchange_explicit(&p->word, 0, memory_order_release) == 2)
		futex(&p->word, FUTEX_WAKE, 1, NULL, 0);
}

bool mm_lock_held(const mm_lock_t *l)
{
	return atomic_load_explicit(&lk(l)->owner, memory_order_relaxed) ==
	       &t_self;
}
