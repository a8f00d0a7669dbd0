/*
 * malloc/port_mem.c: the production port's address space (mm/port.h's
 * reserve, unreserve, map, prepare, used and unused, and the guarded
 * pool's range), for libmm_malloc.so; the rest of the port is
 * port_prod.c's.
 *
 * Address space: reserve = a PROT_NONE, MAP_NORESERVE mapping trimmed to
 * the alignment; map and prepare = mprotect read-write (prepare makes a
 * whole chunk read-write when the heap grows, so the host can back it
 * with huge pages); used = nothing (a page given back with
 * madvise(MADV_DONTNEED) reads as zero when touched again); unused_begin
 * = madvise(MADV_DONTNEED) at once, or a memset of each page it refuses
 * (locked ones), finish only empties the batch (a user process has no
 * shootdown to defer).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "malloc_internal.h"

/* ---- Address space ------------------------------------------------------ */

/*
 * MM_MALLOC_HUGEPAGE, read at the first reservation: 1 advises huge
 * pages on every range reserved (MADV_HUGEPAGE: under the host's
 * "madvise" setting of transparent huge pages, what an "always" host gives
 * every mapping), 0 refuses them (MADV_NOHUGEPAGE: the opt-out on an
 * "always" host, whose huge pages keep memory that the scavenger gives
 * back a page at a time), unset leaves the host's setting. The metadata
 * heap's chunks are refused them whatever it says (advise_metadata,
 * below). See docs/DESIGN.md, "Transparent huge pages". -2 until read.
 */
static atomic_int hugepage_switch = -2;

static void advise_hugepages(void *base, size_t nbytes)
{
	int v = atomic_load_explicit(&hugepage_switch, memory_order_relaxed);
	if (v == -2) {
		v = mm_malloc_env_switch("MM_MALLOC_HUGEPAGE",
		                         getenv("MM_MALLOC_HUGEPAGE"));
		atomic_store_explicit(&hugepage_switch, v,
		                      memory_order_relaxed);
	}
	int saved = errno; /* a refused advice changes nothing else */
	if (v >= 0)
		madvise(base, nbytes, v ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	errno = saved;
}

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
	advise_hugepages((void *)base, nbytes);
	return (void *)base;
}

/*
 * The guarded pool's range (mm_port_prepare_guarded; one heap, so one
 * range): there a page not in use is PROT_NONE, so that an overrun onto
 * a guard page or a use after free faults (malloc/guard.c reports it).
 * Set once by the heap's set-up, read with no lock.
 */
static _Atomic uintptr_t guarded_lo, guarded_hi;

static bool in_guarded(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	return a < atomic_load_explicit(&guarded_hi, memory_order_relaxed) &&
	       a >= atomic_load_explicit(&guarded_lo, memory_order_relaxed);
}

void mm_port_unreserve(void *addr, size_t nbytes)
{
	if (atomic_load(&guarded_lo) == (uintptr_t)addr) {
		atomic_store(&guarded_hi, 0);
		atomic_store(&guarded_lo, 0);
	}
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
	if (in_guarded(addr))
		return make_writable(addr, nbytes);
	return true; /* read-write since prepare; dropped pages read zero */
}

/* The range stays PROT_NONE (mm_port_reserve's) until used. */
bool mm_port_prepare_guarded(void *addr, size_t nbytes)
{
	uintptr_t none = 0;
	if (!atomic_compare_exchange_strong(&guarded_lo, &none,
	                                    (uintptr_t)addr))
		return false; /* a second pool: not this port's */
	atomic_store(&guarded_hi, (uintptr_t)addr + nbytes); /* in force */
	return true;
}

/*
 * A growth of the span heap's metadata heap (mm_malloc_sh.meta: span
 * structs, magazine slabs, side tables) is kept from transparent huge
 * pages, whatever MM_MALLOC_HUGEPAGE says, before its pages are made
 * writable and touched: on a host whose setting is "always" (or under
 * MM_MALLOC_HUGEPAGE=1, which emulates it) its first chunk became a 2 MiB
 * page that a small program paid for whole (docs/DESIGN.md, "Transparent
 * huge pages": 6.1 MiB of RSS against 4.1; the Go runtime keeps its
 * metadata so too, golang/go#64332). The object arena is never advised
 * here. A failed madvise changes nothing (and keeps errno).
 */
static void advise_metadata(void *addr, size_t nbytes)
{
	const struct mheap *m = &mm_malloc_sh.meta;
	uintptr_t a = (uintptr_t)addr;
	if (!m->arena_pages || a < m->arena_base ||
	    a - m->arena_base >= m->arena_pages * MM_PAGE_SIZE)
		return;
	int saved = errno;
	madvise(addr, nbytes, MADV_NOHUGEPAGE);
	errno = saved;
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	advise_metadata(addr, nbytes);
	if (!make_writable(addr, nbytes))
		return false;
	mm_malloc_hook(MM_MALLOC_HOOK_GROWING);
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

void mm_malloc_give_back(void *addr, size_t nbytes)
{
	/* A free that gives pages back keeps errno, as futex says. */
	int saved = errno;
	if (madvise(addr, nbytes, MADV_DONTNEED) != 0)
		zero_refused(addr, nbytes);
	errno = saved;
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
	mm_malloc_give_back(addr, nbytes);
	/* A failure (the VMA limit) leaves the page read-write and zero: a
	 * use after free of it goes unseen, nothing worse. */
	if (in_guarded(addr)) {
		int saved = errno;
		mprotect(addr, nbytes, PROT_NONE);
		errno = saved;
	}
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	mm_unused_batch_init(b);
}

size_t mm_port_free_pages(void)
{
	return SIZE_MAX / 2; /* the host kernel manages its frames */
}
