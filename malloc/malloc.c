/*
 * malloc/malloc.c: the C and POSIX allocation API on mm/'s span heap, for
 * libmm_malloc.so (LD_PRELOAD, or linked in).
 *
 * Every entry point holds its thread's slot for the call (slots.c) and
 * follows glibc 2.36's conventions, so that a program sees no difference:
 *   - failures return NULL with errno ENOMEM (EINVAL for an impossible
 *     alignment; posix_memalign returns the error instead);
 *   - malloc(0) returns a unique minimal object (the span heap's smallest
 *     class); realloc(p, 0) frees p and returns NULL; realloc(NULL, n)
 *     is malloc(n); a failed realloc leaves p as it was;
 *   - memalign and aligned_alloc (one function in glibc 2.36) take any
 *     alignment up to SIZE_MAX / 2 + 1, rounding one that is not a power
 *     of two up to the next; alignments up to 16 are malloc's;
 *   - malloc_usable_size(NULL) is 0;
 *   - mallinfo2, mallinfo, malloc_stats and malloc_info report this
 *     heap (malloc_info.c); mallopt is glibc's, and changes nothing here;
 *   - malloc_trim(pad) gives back every free page of the heap (pad is
 *     accepted and ignored: nothing is kept) and returns 1 if it gave
 *     some back, else 0; other threads' caches are handed back too
 *     (mm_port_each_other_cpu visits their slots, visit.c), but for a
 *     thread inside a call meanwhile; it is in malloc_info.c, with the
 *     reports;
 *   - free leaves errno as it was (POSIX.1-2024, glibc 2.33): the port's
 *     system calls that may fail on its paths (a lock's futex wait, the
 *     madvise that gives pages back) restore it (port_prod.c); so do
 *     the mprotects of a growth, which may fail while the allocation
 *     still succeeds (under RLIMIT_DATA);
 *   - so does a call that succeeds (posix_memalign must): the heap's
 *     set-up and the background threads' start restore what their
 *     failing system calls set (slots.c).
 * Misuse (a foreign pointer, a double free, an interior pointer) is
 * caught by mm/, whose mm_panic prints "mm_malloc: ..." with the address
 * and aborts (port_prod.c).
 *
 * glibc's second names for them (__libc_malloc, __libc_free, ...) and
 * cfree are the same functions.
 * Only these functions (and mm_malloc.h's) are exported: the library is
 * built with -fvisibility=hidden.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_internal.h"
#include "mm_malloc.h"

#define API __attribute__((visibility("default")))

/* Allocations below this alignment are malloc's: the span heap aligns
 * every object to 16 bytes. */
#define MIN_ALIGN 16

static void *fail(int err)
{
	errno = err;
	return NULL;
}

/*
 * The span heap's flags for the call just entered: MM_ATOMIC for a signal
 * handler's that cut into a call of its thread (on the late slot lent to
 * it, enter.c), as for an interrupt handler's in the kernel: it never
 * waits, for what only the interrupted call could end (a growth under
 * way: until this version such a call waited for it a second at a time
 * for ever, hooks test handler_call_in_growth), and gets NULL (ENOMEM)
 * where it would have to, or for more than MHEAP_ATOMIC_MAX_PAGES pages.
 */
static unsigned call_flags(void)
{
	return __builtin_expect(mm_malloc_lent(), 0) ? MM_ATOMIC : 0;
}

/*
 * malloc and free are each split in two. The fast path, inline: the slot
 * taken the fast way (mm_malloc_try_enter) and the magazine's pop or
 * push on it (spanheap_alloc_held, spanheap_free_held), with no call, so
 * that it saves no register. Anything else (a nested call, a shared
 * slot, a fork being prepared, an empty or full magazine, a large
 * object, misuse, the thread's first call) leaves having changed nothing
 * and goes to the slow path below, a tail call, which enters the general
 * way and does the whole call. The background threads' start is on the
 * slow path only; while they are wanted (mm_malloc_maybe_start_bg: the heap
 * grew, a fork stopped them, a start found ctl_lock taken) malloc and
 * calloc take it, the size's test on the fast path (fast_below). Until this
 * version only the heap's growth was thought to allow them, and a
 * process whose allocations after a fork all came from its caches never
 * started them again.
 */
static __attribute__((noinline)) void *malloc_slow(size_t size)
{
	if (__builtin_expect(!mm_malloc_heap_up(), 0))
		return fail(ENOMEM);
	_Atomic unsigned long *held = mm_malloc_enter();
	void *p = spanheap_alloc(&mm_malloc_sh, size, call_flags());
	mm_malloc_leave(held);
	if (__builtin_expect(!p, 0))
		return fail(ENOMEM);
	mm_malloc_maybe_start_bg();
	return p;
}

_Static_assert((MM_BG_NOT_YET & 0xffff) == SC_MAX_SIZE + 1 &&
                       (MM_BG_RUNNING & 0xffff) == SC_MAX_SIZE + 1 &&
                       MM_BG_NOT_YET != MM_BG_RUNNING,
               "fast_below: a small size is below the limit unless the "
               "background threads are wanted");

/* The sizes malloc's fast path takes are those below this: the low 16
 * bits of the background threads' state, SC_MAX_SIZE + 1, or 0 while
 * they are wanted (allowed and not running: every malloc goes the slow
 * way, which starts them). One load and compare for the size's test and
 * the state's, which were two of each (a 16-bit load of the state word:
 * ThreadSanitizer's build reads it whole). */
static inline __attribute__((always_inline)) size_t fast_below(void)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	unsigned long below; /* movzwl zeroes the upper 48 bits */
	__asm__ volatile("movzwl %[st], %k[below]"
	                 : [below] "=r"(below)
	                 : [st] "m"(*(const unsigned *)&mm_malloc_bg_state));
	return below;
#else
	return (unsigned)atomic_load_explicit(&mm_malloc_bg_state,
	                                      memory_order_relaxed) &
	       0xffff;
#endif
}

/* The fast path of an allocation of size bytes: the object, or NULL,
 * having changed nothing, if it must go the long way. */
static inline __attribute__((always_inline)) void *alloc_fast(size_t size)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	_Atomic unsigned long *in;
	if (__builtin_expect(size >= fast_below(), 0) ||
	    __builtin_expect((in = mm_malloc_try_enter(t)) == NULL, 0))
		return NULL;
	/* fast_below is at most SC_MAX_SIZE + 1: spanheap_alloc_held's test
	 * of the size can go. */
	if (size > SC_MAX_SIZE)
		__builtin_unreachable();
	void *p =
	        spanheap_alloc_held(&mm_malloc_sh, size, (unsigned)t->slot_id);
	mm_malloc_leave_fast(in);
	return p;
}

API void *malloc(size_t size)
{
	void *p = alloc_fast(size);
	if (__builtin_expect(p != NULL, 1))
		return p;
	return malloc_slow(size);
}

/* p, passed to op (free, realloc, malloc_usable_size) while the heap is
 * not set up, its set-up having failed: not from it. Reported as the
 * span heap reports a foreign pointer. */
static __attribute__((noreturn, cold)) void no_heap(const char *op,
                                                    const void *p)
{
	mm_panic("%s of a foreign pointer %p: there is no heap (its set-up "
	         "failed)",
	         op, p);
}

static __attribute__((noinline)) void free_slow(void *p)
{
	if (__builtin_expect(!mm_malloc_heap_up(), 0))
		no_heap("free", p);
	_Atomic unsigned long *held = mm_malloc_enter();
	spanheap_free(&mm_malloc_sh, p);
	mm_malloc_leave(held);
}

API void free(void *p)
{
	if (!p)
		return;
	struct mm_malloc_thread *t = &mm_malloc_self;
	_Atomic unsigned long *in = mm_malloc_try_enter(t);
	if (__builtin_expect(in != NULL, 1)) {
		bool done = spanheap_free_held(&mm_malloc_sh, p,
		                               (unsigned)t->slot_id);
		mm_malloc_leave_fast(in);
		if (__builtin_expect(done, 1))
			return;
	}
	free_slow(p);
}

/* From this size calloc zeroes by giving the object's whole pages back
 * (madvise(MADV_DONTNEED): they read zero, and take memory only when
 * touched) instead of letting the heap write the ones it still backs, as
 * glibc's calloc of a chunk it maps does (its mmap threshold is at most
 * 32 MiB); below it, writing costs less than the faults would. */
#define CALLOC_LAZY_MIN ((size_t)32 << 20)

/* Zeroes the large object p of n bytes (page-aligned: a span of its own)
 * by giving its whole pages back (a page the program locked is written
 * instead), and writes the rest. Outside any call: the object is the
 * caller's. Keeps errno. The page heap still counts the pages as backed
 * (mallinfo2's arena, the scavenger's goal) until the object is freed and
 * they are scavenged again: an overstatement, never a page taken for zero
 * that is not. */
static void zero_by_giving_back(void *p, size_t n)
{
	size_t whole = n & ~(size_t)(MM_PAGE_SIZE - 1);
	mm_malloc_give_back(p, whole);
	memset((char *)p + whole, 0, n - whole);
}

/* calloc of total bytes (not overflowed) the long way. */
static __attribute__((noinline)) void *calloc_slow(size_t total)
{
	/* Small objects take the general path, then the memset MM_ZERO
	 * would have done (which takes the long path). */
	bool small = total <= SC_MAX_SIZE, lazy = total >= CALLOC_LAZY_MIN;
	if (__builtin_expect(!mm_malloc_heap_up(), 0))
		return fail(ENOMEM);
	_Atomic unsigned long *held = mm_malloc_enter();
	void *p = spanheap_alloc(&mm_malloc_sh, total,
	                         (small || lazy ? 0 : MM_ZERO) | call_flags());
	mm_malloc_leave(held);
	if (!p)
		return fail(ENOMEM);
	if (small)
		memset(p, 0, total);
	else if (lazy)
		zero_by_giving_back(p, total);
	mm_malloc_maybe_start_bg();
	return p;
}

/* Split as malloc is, for a small object. */
API void *calloc(size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total))
		return fail(ENOMEM);
	void *p = alloc_fast(total);
	if (__builtin_expect(p != NULL, 1))
		return memset(p, 0, total);
	return calloc_slow(total);
}

API void *realloc(void *p, size_t size)
{
	if (!p)
		return malloc(size);
	if (size == 0) {
		free(p);
		return NULL;
	}
	if (__builtin_expect(!mm_malloc_heap_up(), 0))
		no_heap("realloc", p);
	_Atomic unsigned long *held = mm_malloc_enter();
	void *n = spanheap_realloc(&mm_malloc_sh, p, size, call_flags());
	mm_malloc_leave(held);
	if (!n)
		return fail(ENOMEM);
	/* A heap grown by realloc alone (a buffer doubled) starts them
	 * too. */
	mm_malloc_maybe_start_bg();
	return n;
}

API void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total))
		return fail(ENOMEM);
	return realloc(p, total);
}

/* size bytes aligned to align (a power of two), or NULL with no errno
 * set: the callers say which error. */
static void *alloc_aligned(size_t align, size_t size)
{
	if (__builtin_expect(!mm_malloc_heap_up(), 0))
		return NULL;
	if (align <= MIN_ALIGN) {
		_Atomic unsigned long *held = mm_malloc_enter();
		void *p = spanheap_alloc(&mm_malloc_sh, size, call_flags());
		mm_malloc_leave(held);
		return p;
	}
	_Atomic unsigned long *held = mm_malloc_enter();
	/* The span heap takes powers of two up to a page and page
	 * multiples above, so every power of two. */
	void *p = spanheap_alloc_aligned(&mm_malloc_sh, size, align,
	                                 call_flags());
	mm_malloc_leave(held);
	return p;
}

API void *memalign(size_t align, size_t size)
{
	if (align > SIZE_MAX / 2 + 1)
		return fail(EINVAL);
	if (align > MIN_ALIGN && (align & (align - 1))) {
		/* glibc rounds an alignment that is not a power of two up. */
		size_t a = MIN_ALIGN * 2;
		while (a < align)
			a <<= 1;
		align = a;
	}
	void *p = alloc_aligned(align, size);
	if (!p)
		return fail(ENOMEM);
	mm_malloc_maybe_start_bg();
	return p;
}

API void *aligned_alloc(size_t align, size_t size)
{
	return memalign(align, size);
}

API int posix_memalign(void **out, size_t align, size_t size)
{
	if (align % sizeof(void *) != 0 || align == 0 ||
	    (align & (align - 1)) != 0)
		return EINVAL;
	void *p = alloc_aligned(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	mm_malloc_maybe_start_bg();
	return 0;
}

API void *valloc(size_t size)
{
	return memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

API void *pvalloc(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), rounded;
	if (__builtin_add_overflow(size, page - 1, &rounded))
		return fail(ENOMEM);
	return memalign(page, rounded & ~(page - 1));
}

API size_t malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	/* No slot: the lookup touches no per-CPU data and takes no lock
	 * (programs that account memory, redis, call this on every
	 * allocation and free). A thread's first call still sets the heap
	 * up, so that a foreign pointer is reported as one. */
	if (__builtin_expect(mm_malloc_self.slot_id < 0, 0) &&
	    mm_malloc_first_use() < 0)
		no_heap("malloc_usable_size", p);
	return spanheap_usable_size(&mm_malloc_sh, p);
}

/*
 * glibc exports its allocator under a second set of names, __libc_malloc
 * and the rest (GLIBC_2.2.5, undeclared in its headers), which programs
 * and preloaded tools call to reach "the real malloc". They were glibc's
 * own heap's: an object from __libc_malloc freed by free aborted on a
 * foreign pointer, and one from malloc freed by __libc_free corrupted
 * glibc's heap. They are ours too, as every other interposing allocator
 * makes them; cfree is glibc's old name for free (kept for old
 * binaries).
 */
/* Declared here: glibc's headers do not. */
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void cfree(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

API void *__libc_malloc(size_t size)
{
	return malloc(size);
}

API void __libc_free(void *p)
{
	free(p);
}

API void cfree(void *p)
{
	free(p);
}

API void *__libc_calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

API void *__libc_realloc(void *p, size_t size)
{
	return realloc(p, size);
}

API void *__libc_memalign(size_t align, size_t size)
{
	return memalign(align, size);
}

API void *__libc_valloc(size_t size)
{
	return valloc(size);
}

API void *__libc_pvalloc(size_t size)
{
	return pvalloc(size);
}
