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
	pthread_mutex_lock(&p->mutex);
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
	pthread_mutex_unlock(&p->mutex);
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
