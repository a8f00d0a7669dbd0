/*
 * tests/host/mm_port_posix.c: mm/port.h for Linux user space, used by the
 * host tests, the fuzzer and the benchmark.
 *
 * Address space: reserve = an anonymous PROT_NONE, MAP_NORESERVE mapping,
 * over-reserved and trimmed to the alignment asked for; map and used =
 * mprotect read-write (fresh anonymous memory reads as zero); unused =
 * madvise(MADV_DONTNEED), which drops the pages, then PROT_NONE so that a
 * touch faults as it would in the kernel.
 *
 * Scavenging with the heap lock held: unused_begin records the range and
 * drops it at once (madvise + PROT_NONE: a user process has no shootdown
 * to defer), finish only empties the batch. free_pages is a value tests
 * set (mm_port_set_free_pages; default: plenty) to simulate a short frame
 * pool. Threads are detached pthreads; CPU time is CLOCK_THREAD_CPUTIME_ID;
 * an mm_event_t is a condition variable and a pending flag under one
 * mutex shared by all events.
 *
 * Locks: a pthread mutex plus the owning thread inside mm_lock_t; ranks are
 * checked per thread (a lock may only be taken above every rank held).
 * There are no interrupts: the "irq state" is always 0. CPUs: each thread
 * says which CPU it is (mm_port_set_cpu, default 0); pinning is a no-op.
 *
 * Diagnostics: mm_log prints to stderr and keeps the last line;
 * mm_panic longjmps to a catch armed by the test (mm_port_posix.h), or
 * prints "mm_panic: ..." and aborts.
 */
#include "mm_port_posix.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

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

static _Thread_local unsigned held_ranks; /* bit r: a lock of rank r */
static _Thread_local unsigned cpu_id;
static _Thread_local jmp_buf *panic_catch;

static pthread_mutex_t diag_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_panic[4096], last_log[1024];
static unsigned long npanics, nlogs;
static atomic_bool quiet;
static atomic_size_t mapped_bytes;
static atomic_uint fail_maps;

void *mm_port_reserve(size_t nbytes, size_t align)
{
	if (align < MM_PAGE_SIZE)
		align = MM_PAGE_SIZE;
	size_t span = nbytes + align - MM_PAGE_SIZE;
	void *raw = mmap(NULL, span, PROT_NONE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t base = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
	if (base > (uintptr_t)raw)
		munmap(raw, base - (uintptr_t)raw);
	uintptr_t end = (uintptr_t)raw + span;
	if (end > base + nbytes)
		munmap((void *)(base + nbytes), end - (base + nbytes));
	return (void *)base;
}

bool mm_port_map(void *addr, size_t nbytes)
{
	unsigned n = atomic_load(&fail_maps);
	while (n && !atomic_compare_exchange_weak(&fail_maps, &n, n - 1))
		;
	if (n)
		return false;
	if (mprotect(addr, nbytes, PROT_READ | PROT_WRITE) != 0)
		return false;
	atomic_fetch_add(&mapped_bytes, nbytes);
	return true;
}

void mm_port_unused(void *addr, size_t nbytes)
{
	madvise(addr, nbytes, MADV_DONTNEED);
	mprotect(addr, nbytes, PROT_NONE);
	atomic_fetch_sub(&mapped_bytes, nbytes);
}

bool mm_port_used(void *addr, size_t nbytes)
{
	return mm_port_map(addr, nbytes);
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	return true; /* the host kernel's page tables are its business */
}

void mm_unused_batch_init(struct mm_unused_batch *b)
{
	b->npages = 0;
	b->lo = UINTPTR_MAX;
	b->hi = 0;
}

void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	uintptr_t base = (uintptr_t)addr;
	size_t n = nbytes / MM_PAGE_SIZE;
	if (n > MM_UNUSED_BATCH_PAGES - b->npages)
		mm_panic("mm_port_unused_begin: batch full at %#lx", base);
	for (size_t i = 0; i < n; i++)
		b->cookie[b->npages++] = base + i * MM_PAGE_SIZE;
	if (base < b->lo)
		b->lo = base;
	if (base + nbytes > b->hi)
		b->hi = base + nbytes;
	mm_port_unused(addr, nbytes);
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	mm_unused_batch_init(b);
}

static atomic_size_t free_pages = SIZE_MAX / 2;

size_t mm_port_free_pages(void)
{
	return atomic_load(&free_pages);
}

void mm_port_set_free_pages(size_t npages)
{
	atomic_store(&free_pages, npages);
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

struct thread_start {
	void (*fn)(void *);
	void *arg;
};

static void *thread_main(void *p)
{
	struct thread_start ts = *(struct thread_start *)p;
	free(p);
	ts.fn(ts.arg);
	return NULL;
}

bool mm_port_thread_start(const char *name, void (*fn)(void *), void *arg)
{
	struct thread_start *ts = malloc(sizeof(*ts));
	if (!ts)
		return false;
	*ts = (struct thread_start){fn, arg};
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int err = pthread_create(&t, &attr, thread_main, ts);
	pthread_attr_destroy(&attr);
	if (err) {
		free(ts);
		return false;
	}
	return true;
}

/* One mutex for every event: a mutex and a condvar would not fit. */
static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;

struct posix_event {
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	bool pending;
};

_Static_assert(sizeof(struct posix_event) <= sizeof(mm_event_t),
               "the POSIX event fits in mm_event_t");

static struct posix_event *ev(mm_event_t *e)
{
	return (struct posix_event *)(void *)e->opaque;
}

void mm_event_init(mm_event_t *e, const char *name)
{
	struct posix_event *p = ev(e);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	p->pending = false;
}

void mm_event_wait(mm_event_t *e, uint64_t timeout_ns)
{
	struct posix_event *p = ev(e);
	uint64_t until = mm_port_now_ns() + timeout_ns;
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
	                      .tv_nsec = (long)(until % 1000000000u)};
	pthread_mutex_lock(&event_lock);
	while (!p->pending &&
	       pthread_cond_timedwait(&p->cond, &event_lock, &ts) == 0)
		;
	p->pending = false;
	pthread_mutex_unlock(&event_lock);
}

void mm_event_wake(mm_event_t *e)
{
	struct posix_event *p = ev(e);
	pthread_mutex_lock(&event_lock);
	p->pending = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&event_lock);
}

void mm_port_release(void *addr, size_t nbytes)
{
	munmap(addr, nbytes);
}

void mm_port_fail_maps(unsigned n)
{
	atomic_store(&fail_maps, n);
}

size_t mm_port_mapped_bytes(void)
{
	return atomic_load(&mapped_bytes);
}

static struct posix_lock *lk(const mm_lock_t *l)
{
	return (struct posix_lock *)l;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	struct posix_lock *p = lk(l);
	pthread_mutex_init(&p->mutex, NULL);
	atomic_store(&p->owner, (pthread_t)0);
	p->name = name;
	p->rank = rank;
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct posix_lock *p = lk(l);
	if (held_ranks >> p->rank)
		mm_panic("mm lock %s (rank %d) taken while holding a lock of "
		         "rank >= %d (held ranks %#x)",
		         p->name, p->rank, p->rank, held_ranks);
	pthread_mutex_lock(&event_lock);
	atomic_store(&p->owner, pthread_self());
	held_ranks |= 1u << p->rank;
	return 0;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	struct posix_lock *p = lk(l);
	if (!mm_lock_held(l))
		mm_panic("mm lock %s released by a thread that does not "
		         "hold it",
		         p->name);
	held_ranks &= ~(1u << p->rank);
	atomic_store(&p->owner, (pthread_t)0);
	pthread_mutex_unlock(&event_lock);
}

bool mm_lock_held(const mm_lock_t *l)
{
	struct posix_lock *p = lk(l);
	pthread_t owner = atomic_load(&p->owner);
	return owner != 0 && pthread_equal(owner, pthread_self());
}

unsigned long mm_cpu_pin(void)
{
	return 0;
}

void mm_cpu_unpin(unsigned long irq_state)
{
}

unsigned mm_cpu_id(void)
{
	return cpu_id;
}

void mm_port_set_cpu(unsigned cpu)
{
	cpu_id = cpu % MM_MAX_CPUS;
}

void mm_port_catch_panic(jmp_buf *jb)
{
	panic_catch = jb;
}

void mm_panic(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&diag_lock);
	va_start(ap, fmt);
	vsnprintf(last_panic, sizeof(last_panic), fmt, ap);
	va_end(ap);
	npanics++;
	pthread_mutex_unlock(&diag_lock);
	jmp_buf *jb = panic_catch;
	if (jb) {
		panic_catch = NULL;
		longjmp(*jb, 1);
	}
	fprintf(stderr, "mm_panic: %s\n", last_panic);
	abort();
}

void mm_log(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&diag_lock);
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	nlogs++;
	if (!atomic_load(&quiet))
		fprintf(stderr, "mm_log: %s\n", last_log);
	pthread_mutex_unlock(&diag_lock);
}

const char *mm_port_last_panic(void)
{
	return last_panic;
}

unsigned long mm_port_panic_count(void)
{
	return npanics;
}

const char *mm_port_last_log(void)
{
	return last_log;
}

unsigned long mm_port_log_count(void)
{
	return nlogs;
}

void mm_port_set_quiet(bool q)
{
	atomic_store(&quiet, q);
}
