/*
 * tests/host/mm_port_posix.c: mm/port.h for Linux user space, used by the
 * host tests, the fuzzer and the benchmark.
 *
 * Address space (mm_port_posix_mem.c): reserve = an anonymous PROT_NONE,
 * MAP_NORESERVE mapping, over-reserved and trimmed to the alignment asked
 * for; map and used =
 * mprotect read-write (fresh anonymous memory reads as zero; pages that
 * are already read-write keep their contents). Both are all or nothing:
 * an injected failure (mm_port_fail_maps) returns before touching
 * anything; a real mprotect failure of map is undone (the range was not
 * mapped), one of used mm_panics (the port keeps no per-page state, so it
 * could not tell which pages to put back).
 *
 * Scavenging (mm_port_posix_mem.c): unused_begin records the range and
 * drops it at once (madvise(MADV_DONTNEED), which drops the pages, then
 * PROT_NONE so that a touch faults as it would in the kernel; a user process
 * has no shootdown to defer); finish only empties the batch. free_pages is a
 * value tests set (mm_port_set_free_pages; default: plenty) to simulate a
 * short frame pool.
 *
 * Threads: joinable pthreads behind a malloc'd struct mm_thread; CPU time
 * is CLOCK_THREAD_CPUTIME_ID (mm_port_posix_clock.c, with the test clock
 * offset). Events (mm_port_posix_event.c): a 32-bit
 * count that is also a Linux futex word.
 *
 * Locks: each mm_lock_t holds its own pthread mutex, the owning thread,
 * its name and rank. Ranks are checked per thread: a thread records the
 * lock it holds at each rank, and a lock may only be taken above every
 * rank held; a violation mm_panics naming both locks. There are no
 * interrupts: the "irq state" is always 0; a test can put a thread in
 * simulated atomic context (mm_port_set_atomic), where it may not sleep.
 * CPUs (mm_port_posix_cpu.c): each thread says which CPU it is
 * (mm_port_set_cpu, default 0).
 * Pinning takes the CPU's slot exclusively (a spin on one atomic word per
 * CPU), so threads that say the same CPU take turns as a CPU's threads
 * and interrupt handlers would; a pinned thread is in atomic context. A
 * thread may instead bind a CPU for good (mm_port_bind_cpu): its pins then
 * cost nothing, as a thread-local cache's would (the benchmarks do this).
 *
 * Contract checks: the hooks that port.h says run with no mm lock held
 * mm_panic if the caller holds one; mm_event_wait and mm_port_thread_join
 * also when the caller may not sleep; mm_event_wake when the caller holds
 * a heap-rank lock.
 *
 * Chaos mode (mm_port_posix_chaos.c, MM_CHAOS=<seed>): every hook above
 * may delay its caller at the points marked mm_posix_chaos(), to widen
 * race windows; off by default.
 *
 * Diagnostics: mm_log prints to stderr and keeps the last line (all, if
 * a test captures them); mm_panic longjmps to a catch armed by the test
 * (mm_port_posix.h), or prints "mm_panic: ..." and aborts. Callers
 * (poison mode's records): a frame-pointer walk (the host tests are built
 * with frame pointers) bounded by the thread's stack and the program's
 * text, so a binary built without them (the benchmark) gets a short or
 * empty walk, never a fault; names from dladdr, else the module and the
 * offset in it.
 */
#define _GNU_SOURCE
#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct posix_lock {
	pthread_mutex_t mutex;
	_Atomic(pthread_t) owner; /* 0 when free (glibc never uses 0) */
	const char *name;
	enum mm_lock_rank rank;
};

_Static_assert(sizeof(struct posix_lock) <= sizeof(mm_lock_t),
               "the POSIX lock fits in mm_lock_t");
_Static_assert(_Alignof(struct posix_lock) <= _Alignof(mm_lock_t),
               "and is aligned by it");
_Static_assert(MM_RANK_COUNT <= 32, "held_ranks has a bit per rank");

/* Per thread: the lock held at each rank (at most one: ranks strictly
 * increase), bit r of held_ranks set when held[r] is. */
static _Thread_local const struct posix_lock *held[MM_RANK_COUNT];
static _Thread_local unsigned held_ranks;
static _Thread_local bool atomic_context;
_Thread_local unsigned mm_posix_cpu_id;
/* The inline pin's (mm_port_posix_pin.h): mm_posix_cpu_id while bound. */
_Thread_local unsigned long mm_posix_bound_cpu = MM_POSIX_UNBOUND;
/* Pins held, but a bound thread's. */
_Thread_local unsigned mm_posix_pin_depth;
static _Thread_local jmp_buf *panic_catch;

static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_panic[4096], last_log[1024];
static unsigned long npanics, nlogs;
static atomic_bool quiet;
/* mm_port_log_capture's buffer, size and length; under diag_lock. */
static char *capture;
static size_t capture_size, capture_len;

/* The highest-ranked mm lock this thread holds, or NULL. */
static const struct posix_lock *top_held(void)
{
	if (!held_ranks)
		return NULL;
	return held[31 - __builtin_clz(held_ranks)];
}

/* Hooks documented "no mm lock held" call this first; what names the
 * call in the panic ("mm_port_map", "mm_event_wait(name)"). */
void expect_no_lock(const char *what)
{
	const struct posix_lock *top = top_held();
	if (top)
		mm_panic("%s called holding mm lock %s (rank %d)", what,
		         top->name, top->rank);
}

/* The name of the heap-rank lock this thread holds, or NULL. */
const char *mm_posix_heap_lock_held(void)
{
	return held_ranks & (1u << MM_RANK_HEAP) ? held[MM_RANK_HEAP]->name
	                                         : NULL;
}

/* Hooks that may sleep call this first. */
void mm_posix_expect_can_sleep(const char *what)
{
	expect_no_lock(what);
	if (atomic_context)
		mm_panic("%s called in atomic context (it may sleep)", what);
	/* Pinned, the kernel's slow paths run with interrupts off (a
	 * bound thread's pins are nothing: it is its CPU's alone). */
	if (mm_posix_pin_depth)
		mm_panic("%s called pinned to CPU %u (it may sleep)", what,
		         mm_posix_cpu_id);
}

/* ---- Contexts, time and threads ----------------------------------------- */

bool mm_port_can_sleep(void)
{
	return !atomic_context && !held_ranks && !mm_posix_pin_depth;
}

void (*mm_port_log_hook)(const char *line);
void (*mm_port_yield_hook)(void);

void mm_port_yield(void)
{
	mm_posix_expect_can_sleep("mm_port_yield");
	if (mm_port_yield_hook)
		mm_port_yield_hook();
	mm_posix_chaos();
	sched_yield();
}

void mm_port_set_atomic(bool on)
{
	atomic_context = on;
}

/* mm_port_now_ns, mm_port_thread_cpu_ns: mm_port_posix_clock.c. */

struct mm_thread {
	pthread_t tid;
	void (*fn)(void *);
	void *arg;
	char name[16]; /* Linux's limit (pthread_setname_np) */
};

static void *thread_main(void *p)
{
	struct mm_thread *t = p;
	pthread_setname_np(pthread_self(), t->name);
	mm_posix_chaos();
	t->fn(t->arg);
	return NULL;
}

static atomic_uint fail_thread_start; /* mm_port_fail_thread_start */

void mm_port_fail_thread_start(unsigned nth)
{
	atomic_store(&fail_thread_start, nth);
}

struct mm_thread *mm_port_thread_start(const char *name, void (*fn)(void *),
                                       void *arg)
{
	mm_posix_expect_can_sleep("mm_port_thread_start");
	unsigned n = atomic_load(&fail_thread_start);
	if (n && atomic_fetch_sub(&fail_thread_start, 1) == 1)
		return NULL; /* the injected failure */
	struct mm_thread *t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	*t = (struct mm_thread){.fn = fn, .arg = arg};
	snprintf(t->name, sizeof(t->name), "%s", name);
	if (pthread_create(&t->tid, NULL, thread_main, t) != 0) {
		free(t);
		return NULL;
	}
	mm_posix_chaos();
	return t;
}

uint64_t mm_port_thread_cpu_ns_of(struct mm_thread *t)
{
	clockid_t clock;
	if (!t || pthread_getcpuclockid(t->tid, &clock) != 0)
		return 0;
	return mm_posix_clock_ns(clock);
}

void mm_port_thread_join(struct mm_thread *t)
{
	mm_posix_expect_can_sleep("mm_port_thread_join");
	int err = pthread_join(t->tid, NULL);
	if (err)
		mm_panic("mm_port_thread_join(%s): %s", t->name, strerror(err));
	free(t);
}

/* ---- Locks --------------------------------------------------------------- */

static struct posix_lock *lk(const mm_lock_t *l)
{
	return (struct posix_lock *)l;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	struct posix_lock *p = lk(l);
	if (rank < 1 || rank >= MM_RANK_COUNT)
		mm_panic("mm lock %s: bad rank %d", name, rank);
	pthread_mutex_init(&p->mutex, NULL);
	atomic_init(&p->owner, (pthread_t)0);
	p->name = name;
	p->rank = rank;
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct posix_lock *p = lk(l);
	const struct posix_lock *top = top_held();
	if (held[p->rank] == p)
		mm_panic("mm lock %s (rank %d) taken twice by one thread",
		         p->name, p->rank);
	if (top && top->rank >= p->rank)
		mm_panic("mm lock %s (rank %d) taken while holding mm lock %s "
		         "(rank %d): ranks must increase",
		         p->name, p->rank, top->name, top->rank);
	mm_posix_chaos();
	pthread_mutex_lock(&p->mutex);
	atomic_store_explicit(&p->owner, pthread_self(), memory_order_relaxed);
	held[p->rank] = p;
	held_ranks |= 1u << p->rank;
	mm_posix_chaos(); /* the critical section runs longer */
	return 0;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	struct posix_lock *p = lk(l);
	if (!mm_lock_held(l))
		mm_panic("mm lock %s released by a thread that does not "
		         "hold it",
		         p->name);
	mm_posix_chaos();
	held[p->rank] = NULL;
	held_ranks &= ~(1u << p->rank);
	atomic_store_explicit(&p->owner, (pthread_t)0, memory_order_relaxed);
	pthread_mutex_unlock(&p->mutex);
	mm_posix_chaos(); /* another thread takes the lock first */
}

bool mm_lock_held(const mm_lock_t *l)
{
	/* Only this thread stores its own id, so a relaxed load that sees
	 * it is current. */
	pthread_t owner =
	        atomic_load_explicit(&lk(l)->owner, memory_order_relaxed);
	return owner != 0 && pthread_equal(owner, pthread_self());
}

void mm_port_set_cpu(unsigned cpu)
{
	if (mm_posix_pin_depth || cpu_bound)
		mm_panic("mm_port_set_cpu while pinned or bound to CPU %u",
		         mm_posix_cpu_id);
	mm_posix_cpu_id = cpu % MM_MAX_CPUS;
}

unsigned mm_port_cpu(void)
{
	return mm_posix_cpu_id;
}

/* ---- Diagnostics --------------------------------------------------------- */

void mm_port_catch_panic(jmp_buf *jb)
{
	panic_catch = jb;
}

void mm_panic(const char *fmt, ...)
{
	char msg[sizeof(last_panic)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&diag_lock);
	memcpy(last_panic, msg, sizeof(msg));
	npanics++;
	pthread_mutex_unlock(&diag_lock);
	jmp_buf *jb = panic_catch;
	if (jb) {
		panic_catch = NULL;
		/* The catcher goes on unpinned (a bad free panics pinned). */
		if (mm_posix_pin_depth && !cpu_bound)
			atomic_store_explicit(
			        &mm_posix_cpu_slots[mm_posix_cpu_id].busy, 0,
			        memory_order_release);
		mm_posix_pin_depth = 0;
		longjmp(*jb, 1);
	}
	fflush(stdout);
	fprintf(stderr, "mm_panic: %s\n", msg);
	abort();
}

void mm_log(const char *fmt, ...)
{
	va_list ap;
	/* Never under the heap's lock (port.h): the kernel's printk takes
	 * its console lock, which the leaf's rank forbids. */
	const char *heap = mm_posix_heap_lock_held();
	if (heap)
		mm_panic("mm_log called holding heap lock %s", heap);
	pthread_mutex_lock(&diag_lock);
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	nlogs++;
	if (capture) { /* cut short at its end */
		int n = snprintf(capture + capture_len,
		                 capture_size - capture_len, "%s\n", last_log);
		capture_len = n < 0 ? capture_len : capture_len + (size_t)n;
		if (capture_len >= capture_size)
			capture_len = capture_size - 1;
	}
	if (!atomic_load(&quiet))
		fprintf(stderr, "mm_log: %s\n", last_log);
	char line[sizeof(last_log)];
	if (mm_port_log_hook)
		memcpy(line, last_log, sizeof(line));
	pthread_mutex_unlock(&diag_lock);
	if (mm_port_log_hook)
		mm_port_log_hook(line);
}

void mm_port_log_capture(char *buf, size_t size)
{
	pthread_mutex_lock(&diag_lock);
	capture = size ? buf : NULL;
	capture_size = size;
	capture_len = 0;
	if (capture)
		capture[0] = '\0';
	pthread_mutex_unlock(&diag_lock);
}

const char *mm_port_last_panic(void)
{
	return last_panic;
}

unsigned long mm_port_panic_count(void)
{
	pthread_mutex_lock(&diag_lock);
	unsigned long n = npanics;
	pthread_mutex_unlock(&diag_lock);
	return n;
}

const char *mm_port_last_log(void)
{
	return last_log;
}

unsigned long mm_port_log_count(void)
{
	pthread_mutex_lock(&diag_lock);
	unsigned long n = nlogs;
	pthread_mutex_unlock(&diag_lock);
	return n;
}

void mm_port_set_quiet(bool q)
{
	atomic_store(&quiet, q);
}

/* The calling thread's stack, [lo, hi), asked of pthreads once. */
static __thread uintptr_t stack_lo, stack_hi;

static bool stack_bounds(void)
{
	if (stack_hi)
		return true;
	pthread_attr_t a;
	void *base;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return false;
	int r = pthread_attr_getstack(&a, &base, &size);
	pthread_attr_destroy(&a);
	if (r != 0)
		return false;
	stack_lo = (uintptr_t)base;
	stack_hi = stack_lo + size;
	return true;
}

/* The program's text: from its ELF header to etext (GNU ld and lld). */
extern char __ehdr_start[], etext[];

static _Atomic bool no_callers;

void mm_port_set_no_callers(bool on)
{
	atomic_store(&no_callers, on);
}

__attribute__((noinline)) unsigned mm_port_callers(uintptr_t *pcs, unsigned max)
{
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	if (atomic_load_explicit(&no_callers, memory_order_relaxed) ||
	    !stack_bounds())
		return 0;
	unsigned n = 0;
	while (n < max && fp % 8 == 0 && fp >= stack_lo &&
	       stack_hi - fp >= 16) {
		const uintptr_t *frame = (const uintptr_t *)fp;
		uintptr_t ret = frame[1];
		if (ret < (uintptr_t)__ehdr_start || ret >= (uintptr_t)etext)
			break;
		pcs[n++] = ret;
		if (frame[0] <= fp)
			break;
		fp = frame[0];
	}
	return n;
}

void mm_port_pc_name(uintptr_t pc, char *buf, size_t size)
{
	Dl_info info;
	/* pc is a return address: its call is at pc - 1's function. */
	int found = pc && dladdr((void *)(pc - 1), &info);
	if (found && info.dli_sname)
		snprintf(buf, size, "%s+%#lx", info.dli_sname,
		         (unsigned long)(pc - (uintptr_t)info.dli_saddr));
	else if (found && info.dli_fname && info.dli_fbase)
		snprintf(buf, size, "%s+%#lx", info.dli_fname,
		         (unsigned long)(pc - (uintptr_t)info.dli_fbase));
	else
		snprintf(buf, size, "%#lx", (unsigned long)pc);
}
