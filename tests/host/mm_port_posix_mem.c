/*
 * tests/host/mm_port_posix_mem.c: the POSIX port's address space
 * (mm_port_posix.c has the rest of the port and describes the whole):
 * reserve, map, used and prepare as mprotect over PROT_NONE reservations,
 * scavenging as madvise(MADV_DONTNEED) then PROT_NONE, the simulated
 * free-page count, and the tests' knobs (injected map and reserve
 * failures, the production mapping mode) and counters (bytes mapped and
 * reserved). Every hook here that port.h says runs with no mm lock held
 * checks it (expect_no_lock, mm_port_posix.c).
 */
#define _GNU_SOURCE
#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static atomic_size_t mapped_bytes;
static atomic_size_t used_bytes; /* asked of mm_port_used */
static atomic_uint fail_maps;
static atomic_uint fail_reserve;     /* mm_port_fail_reserve */
static atomic_uint fail_map_at;      /* mm_port_fail_map_at */
static atomic_size_t reserved_bytes; /* mm_port_reserved_bytes */

/* Production mapping (mm_port_set_production_mapping): arena chunks are
 * read-write from their growth on, scavenging only drops the pages. */
static atomic_bool production_mapping;

/* ---- Pages between unused_begin and unused_finish ----------------------- */

/* A page given back by unused_begin is the caller's until its batch's
 * unused_finish: the kernel's finish shoots the range down, then frees
 * the frames, so a map or used of such a page in between (a new frame
 * while other CPUs may still translate the old one) is corruption there,
 * which this port would never show. It keeps the pages in flight in a
 * set (open addressing, tombstones; emptied whole when it holds none) and
 * panics on such a call; its callers skip the look while it is empty. */
#define INFLIGHT_SLOTS 65536u
#define INFLIGHT_GONE  1u /* a tombstone: no page address is 1 */
static uintptr_t inflight[INFLIGHT_SLOTS];
static atomic_size_t inflight_n;
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t inflight_slot(uintptr_t a)
{
	return (size_t)(((a >> MM_PAGE_SHIFT) * 0x9e3779b97f4a7c15ull) >> 48) %
	       INFLIGHT_SLOTS;
}

/* The set's slot holding a, or one that does not (empty, or any after a
 * probe of the whole set: tombstones may leave no empty slot). */
static size_t inflight_find(uintptr_t a)
{
	size_t i = inflight_slot(a);
	for (size_t n = 0;
	     n < INFLIGHT_SLOTS && inflight[i] && inflight[i] != a; n++)
		i = (i + 1) % INFLIGHT_SLOTS;
	return i;
}

static void inflight_add(uintptr_t a)
{
	pthread_mutex_lock(&inflight_lock);
	if (atomic_load(&inflight_n) >= INFLIGHT_SLOTS / 2)
		mm_panic("mm_port_unused_begin: over %u pages in flight",
		         INFLIGHT_SLOTS / 2);
	size_t i = inflight_slot(a);
	while (inflight[i] > INFLIGHT_GONE)
		i = (i + 1) % INFLIGHT_SLOTS;
	inflight[i] = a;
	atomic_fetch_add(&inflight_n, 1);
	pthread_mutex_unlock(&inflight_lock);
}

static void inflight_del(uintptr_t a)
{
	pthread_mutex_lock(&inflight_lock);
	size_t i = inflight_find(a);
	if (inflight[i] == a) {
		inflight[i] = INFLIGHT_GONE;
		if (atomic_fetch_sub(&inflight_n, 1) == 1)
			memset(inflight, 0, sizeof(inflight));
	}
	pthread_mutex_unlock(&inflight_lock);
}

/* Panics if a page of [addr, +nbytes) is in flight: who names the call. */
static void inflight_check(const char *who, void *addr, size_t nbytes)
{
	if (atomic_load(&inflight_n) == 0)
		return;
	uintptr_t bad = 0, a = (uintptr_t)addr;
	pthread_mutex_lock(&inflight_lock);
	for (size_t i = 0; i < nbytes / MM_PAGE_SIZE && !bad; i++)
		if (inflight[inflight_find(a + i * MM_PAGE_SIZE)] ==
		    a + i * MM_PAGE_SIZE)
			bad = a + i * MM_PAGE_SIZE;
	pthread_mutex_unlock(&inflight_lock);
	if (bad)
		mm_panic("%s(%p, %zu): page %#lx is between its batch's "
		         "mm_port_unused_begin and _finish",
		         who, addr, nbytes, (unsigned long)bad);
}

/* ---- Address space ------------------------------------------------------ */

/*
 * Where reservations are placed: a large allocation aligned to a page
 * multiple aligns absolute addresses (spanheap_large_alloc), and for an
 * alignment that does not divide the arena's 2 MiB alignment (the
 * harness's 12 KiB) which pages qualify depends on the arena's base
 * modulo it. Under ASLR one run of spanheap_diff's seed then had an
 * allocation refused that another's had not, so a seed (or a fuzzer's
 * crash input) did not replay its run. Each reservation is tried at the next
 * address from a fixed base, replacing no other mapping, else anywhere; the
 * base comes back once none placed there is left, so that a test run alone lays
 * its heaps out as it did among others. Not under TSan, which takes
 * only its own ranges for a program's memory.
 */
#define RESERVE_BASE ((uintptr_t)0x300000000000)
static uintptr_t reserve_next = RESERVE_BASE; /* under reserve_mu */
static size_t reserve_live;                   /* under reserve_mu */
static pthread_mutex_t reserve_mu = PTHREAD_MUTEX_INITIALIZER;

#if defined(__SANITIZE_THREAD__)
#define RESERVE_HINTS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RESERVE_HINTS 0
#endif
#endif
#ifndef RESERVE_HINTS
#define RESERVE_HINTS 1
#endif

static void *reserve_at_hint(size_t span, size_t align)
{
	if (!RESERVE_HINTS)
		return MAP_FAILED;
	pthread_mutex_lock(&reserve_mu);
	uintptr_t at = (reserve_next + align - 1) & ~(uintptr_t)(align - 1);
	void *raw = mmap((void *)at, span, PROT_NONE,
	                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
	                         MAP_FIXED_NOREPLACE,
	                 -1, 0);
	if (raw != MAP_FAILED && (uintptr_t)raw != at) { /* an old kernel */
		munmap(raw, span);
		raw = MAP_FAILED;
	}
	if (raw != MAP_FAILED) {
		reserve_next = at + span + MM_PAGE_SIZE;
		reserve_live++;
	}
	pthread_mutex_unlock(&reserve_mu);
	return raw;
}

/* The reservation at addr is gone: the next address goes back to the
 * base once none placed from it is left. */
static void reserve_gone(void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	pthread_mutex_lock(&reserve_mu);
	if (a >= RESERVE_BASE && a < reserve_next && --reserve_live == 0)
		reserve_next = RESERVE_BASE;
	pthread_mutex_unlock(&reserve_mu);
}

void *mm_port_reserve(size_t nbytes, size_t align)
{
	expect_no_lock("mm_port_reserve");
	mm_posix_chaos();
	unsigned n = atomic_load(&fail_reserve);
	if (n && atomic_fetch_sub(&fail_reserve, 1) == 1)
		return NULL; /* the injected failure (mm_port_fail_reserve) */
	if (align < MM_PAGE_SIZE)
		align = MM_PAGE_SIZE;
	/* A guard page after the range, never mapped: a write past the
	 * reservation's end faults at once (palloc_init set a bit there for
	 * some arena sizes, in whatever came next). */
	size_t span = nbytes + align - MM_PAGE_SIZE + MM_PAGE_SIZE;
	if (span < nbytes)
		return NULL; /* wrapped */
	void *raw = reserve_at_hint(span, align);
	if (raw == MAP_FAILED)
		raw = mmap(NULL, span, PROT_NONE,
		           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t base = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
	if (base > (uintptr_t)raw)
		munmap(raw, base - (uintptr_t)raw);
	uintptr_t end = (uintptr_t)raw + span;
	uintptr_t guard_end = base + nbytes + MM_PAGE_SIZE;
	if (end > guard_end)
		munmap((void *)guard_end, end - guard_end);
	atomic_fetch_add(&reserved_bytes, nbytes);
	return (void *)base;
}

/*
 * Guarded ranges (mm_port_prepare_guarded): their unused pages fault in
 * production mode too, as the hosted malloc's port keeps them. A slot
 * is free while its hi is 0; set under guarded_mu, read with no lock
 * (a heap's own range does not change while the heap lives).
 */
#define GUARDED_MAX 16
static struct {
	_Atomic uintptr_t lo, hi;
} guarded[GUARDED_MAX];
static pthread_mutex_t guarded_mu = PTHREAD_MUTEX_INITIALIZER;

static bool in_guarded(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	for (unsigned i = 0; i < GUARDED_MAX; i++)
		if (a < atomic_load_explicit(&guarded[i].hi,
		                             memory_order_relaxed) &&
		    a >= atomic_load_explicit(&guarded[i].lo,
		                              memory_order_relaxed))
			return true;
	return false;
}

/* Pages of [addr, addr + nbytes) stay read-write once made so. */
static bool production(const void *addr)
{
	return atomic_load_explicit(&production_mapping,
	                            memory_order_relaxed) &&
	       !in_guarded(addr);
}

void mm_port_unreserve(void *addr, size_t nbytes)
{
	expect_no_lock("mm_port_unreserve");
	pthread_mutex_lock(&guarded_mu);
	for (unsigned i = 0; i < GUARDED_MAX; i++)
		if (atomic_load(&guarded[i].lo) == (uintptr_t)addr) {
			atomic_store(&guarded[i].hi, 0);
			atomic_store(&guarded[i].lo, 0);
		}
	pthread_mutex_unlock(&guarded_mu);
	munmap(addr, nbytes + MM_PAGE_SIZE); /* and its guard page */
	reserve_gone(addr);
	atomic_fetch_sub(&reserved_bytes, nbytes);
}

void mm_port_fail_map_at(unsigned nth)
{
	atomic_store(&fail_map_at, nth);
}

void mm_port_fail_reserve(unsigned nth)
{
	atomic_store(&fail_reserve, nth);
}

size_t mm_port_reserved_bytes(void)
{
	return atomic_load(&reserved_bytes);
}

/* True if a failure was injected for this call (mm_port_fail_maps, or
 * mm_port_fail_map_at's call). */
static bool injected_failure(void)
{
	unsigned k = atomic_load(&fail_map_at);
	if (k && atomic_fetch_sub(&fail_map_at, 1) == 1)
		return true;
	unsigned n = atomic_load(&fail_maps);
	while (n && !atomic_compare_exchange_weak(&fail_maps, &n, n - 1))
		;
	return n != 0;
}

/* mm_port_map's range must not be mapped yet (port.h). A page that is
 * resident was mapped and written since (an unmapped page here is
 * PROT_NONE and dropped), so a map of it would keep whatever it held:
 * a span-table page mapped again by a growth kept the entries of the
 * chunk before, and only the kernel's map and the minimal port noticed
 * (a mutation round). Untouched pages cannot be told, and need not be:
 * they read zero either way. */
static void expect_not_mapped(void *addr, size_t nbytes)
{
	unsigned char v[64];
	for (size_t off = 0; off < nbytes; off += sizeof(v) * MM_PAGE_SIZE) {
		size_t n = (nbytes - off) / MM_PAGE_SIZE;
		if (n > sizeof(v))
			n = sizeof(v);
		if (mincore((char *)addr + off, n * MM_PAGE_SIZE, v) != 0)
			return;
		for (size_t i = 0; i < n; i++)
			if (v[i] & 1)
				mm_panic("mm_port_map(%p, %zu): page %p is "
				         "mapped already",
				         addr, nbytes,
				         (char *)addr + off + i * MM_PAGE_SIZE);
	}
}

bool mm_port_map(void *addr, size_t nbytes)
{
	expect_no_lock("mm_port_map");
	inflight_check("mm_port_map", addr, nbytes);
	expect_not_mapped(addr, nbytes);
	mm_posix_chaos();
	if (injected_failure())
		return false;
	if (mprotect(addr, nbytes, PROT_READ | PROT_WRITE) != 0) {
		/* Part of it may have changed (the VMA limit): the range was
		 * not mapped before, so unmapping it all restores it. */
		int err = errno;
		if (mprotect(addr, nbytes, PROT_NONE) != 0)
			mm_panic("mm_port_map: mprotect(%p, %zu) failed (%s) "
			         "and could not be undone",
			         addr, nbytes, strerror(err));
		return false;
	}
	atomic_fetch_add(&mapped_bytes, nbytes);
	return true;
}

void mm_port_set_production_mapping(bool on)
{
	atomic_store(&production_mapping, on);
}

bool mm_port_used(void *addr, size_t nbytes)
{
	expect_no_lock("mm_port_used");
	inflight_check("mm_port_used", addr, nbytes);
	mm_posix_chaos();
	if (injected_failure())
		return false;
	atomic_fetch_add(&used_bytes, nbytes);
	if (production(addr))
		return true; /* dropped pages read as zero when touched */
	if (mprotect(addr, nbytes, PROT_READ | PROT_WRITE) != 0)
		mm_panic("mm_port_used: mprotect(%p, %zu) failed (%s): the "
		         "host port cannot tell which pages it changed",
		         addr, nbytes, strerror(errno));
	return true;
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	expect_no_lock("mm_port_prepare");
	mm_posix_chaos();
	/* The host kernel's page tables are its business; in production
	 * mode the whole chunk becomes read-write now, in one mapping the
	 * host can back with huge pages. */
	if (production(addr) &&
	    mprotect(addr, nbytes, PROT_READ | PROT_WRITE) != 0)
		return false;
	return true;
}

bool mm_port_prepare_guarded(void *addr, size_t nbytes)
{
	expect_no_lock("mm_port_prepare_guarded");
	mm_posix_chaos();
	bool ok = false;
	pthread_mutex_lock(&guarded_mu);
	for (unsigned i = 0; i < GUARDED_MAX && !ok; i++)
		if (atomic_load(&guarded[i].hi) == 0) {
			atomic_store(&guarded[i].lo, (uintptr_t)addr);
			atomic_store(&guarded[i].hi, (uintptr_t)addr + nbytes);
			ok = true;
		}
	pthread_mutex_unlock(&guarded_mu);
	return ok; /* nothing to map: the range stays PROT_NONE until used */
}

/* Drops the memory of [addr, addr + nbytes) now; a touch then faults. */
static void drop_pages(void *addr, size_t nbytes)
{
	madvise(addr, nbytes, MADV_DONTNEED);
	if (!production(addr))
		mprotect(addr, nbytes, PROT_NONE);
}

void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	uintptr_t base = (uintptr_t)addr;
	size_t n = nbytes / MM_PAGE_SIZE;
	if (n > MM_UNUSED_BATCH_PAGES - b->npages)
		mm_panic("mm_port_unused_begin: batch full at %#lx", base);
	for (size_t i = 0; i < n; i++) {
		b->cookie[b->npages++] = base + i * MM_PAGE_SIZE;
		inflight_add(base + i * MM_PAGE_SIZE);
	}
	if (base < b->lo)
		b->lo = base;
	if (base + nbytes > b->hi)
		b->hi = base + nbytes;
	drop_pages(addr, nbytes);
	mm_posix_chaos();
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	expect_no_lock("mm_port_unused_finish");
	mm_posix_chaos();
	for (size_t i = 0; i < b->npages; i++)
		inflight_del(b->cookie[i]);
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

void mm_port_release(void *addr, size_t nbytes)
{
	mm_port_unreserve(addr, nbytes);
}

void mm_port_fail_maps(unsigned n)
{
	atomic_store(&fail_maps, n);
}

size_t mm_port_used_bytes(void)
{
	return atomic_load(&used_bytes);
}

size_t mm_port_mapped_bytes(void)
{
	return atomic_load(&mapped_bytes);
}
