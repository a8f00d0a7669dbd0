/*
 * kernel/kasan.c: the shadow of the kernel heap's arena and the checks of
 * instrumented code against it (KASAN, generic mode; kasan.h says what
 * the shadow bytes mean). Not itself instrumented: nothing here or in mm/
 * is checked, which is what lets the heap write its poison into freed
 * objects.
 *
 * Representation: the shadow is one reservation of arena_bytes / 8 in the
 * mm region, whose page p shadows the arena's 32 KiB [base + p * 32 KiB,
 * +32 KiB). A shadow page is mapped (zeroed: every byte accessible) when
 * mm_port_used first hands out an arena page it shadows, and stays mapped
 * (its frame counted among the port's lasting metadata frames,
 * heap_meta_frames). A bitmap, one bit a shadow page, mapped whole at
 * init (2^21 bits, 256 KiB, for the 64 GiB arena), says which are mapped:
 * the checks and the heap's hook read no shadow page that is not.
 *
 * Algorithm: the span heap's poison-mode paths say what each range of its
 * arena is (mm_port_shadow: an object handed out is accessible for the
 * bytes asked and its class's slack a red zone, a freed object freed, a
 * new span's objects never used, a span's pages going back free); an
 * instrumented access checks each 8-byte granule it touches.
 *
 * Locking: kasan_map_lock (rank KASAN, below vm and frames, which
 * mm_port_map takes under it) serialises the mapping of shadow pages; a
 * bitmap bit is set, release, after its page is mapped, and read acquire.
 * A shadow byte is its object's owner's: written by the heap's calls on
 * that object, read by any CPU's checks (relaxed: a check racing with
 * the object's free may see either state, as the access itself would).
 *
 * Limits: only the arena's addresses are checked (the guarded pool, the
 * metadata heap, stacks and globals are not); large objects are
 * accessible by whole pages, their sizes asked not being known where the
 * hook sits; a freed object is reused as soon as the heap hands it out
 * again (no quarantine beyond poison mode's order of reuse).
 */
#include "kernel/kasan.h"

#include <stdatomic.h>

#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "mm/port.h"

#define GRANULE          8u
#define SHADOW_PAGE_SPAN ((uintptr_t)MM_PAGE_SIZE * GRANULE)

/* Immutable after kasan_init (at boot, before other CPUs or any use of
 * the arena): */
static bool kasan_on;
static uintptr_t arena_base;
static size_t arena_bytes;
static int8_t *shadow;
static _Atomic uint64_t *mapped_bits; /* a bit a shadow page */
/* Atomic, no lock (written under kasan_map_lock, read by anyone): */
static _Atomic size_t shadow_frames;

/* Rank KASAN: held while a shadow page is mapped. */
static struct spinlock kasan_map_lock =
        SPINLOCK_INIT("kasan_map", LOCK_RANK_KASAN);

bool kasan_enabled(void)
{
	return kasan_on;
}

bool kasan_init(uintptr_t base, size_t nbytes)
{
	size_t sbytes = nbytes / GRANULE;
	size_t npages = (sbytes + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE;
	size_t bbytes = (npages + 63) / 64 * 8;
	bbytes = (bbytes + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE * MM_PAGE_SIZE;
	void *s = mm_port_reserve(npages * MM_PAGE_SIZE, MM_PAGE_SIZE);
	void *b = s ? mm_port_reserve(bbytes, MM_PAGE_SIZE) : NULL;
	if (!b || !mm_port_map(b, bbytes))
		return false;
	arena_base = base;
	arena_bytes = nbytes;
	shadow = s;
	mapped_bits = b;
	kasan_on = true;
	return true;
}

static inline bool page_mapped(size_t p)
{
	return atomic_load_explicit(&mapped_bits[p / 64],
	                            memory_order_acquire) &
	       ((uint64_t)1 << (p % 64));
}

/* Maps shadow page p if no one has. Any context but NMI. */
static bool map_page(size_t p)
{
	unsigned long irq = spin_lock_irqsave(&kasan_map_lock);
	bool ok = page_mapped(p) ||
	          mm_port_map(shadow + p * MM_PAGE_SIZE, MM_PAGE_SIZE);
	if (ok && !page_mapped(p))
		atomic_fetch_add_explicit(&shadow_frames, 1,
		                          memory_order_relaxed);
	if (ok)
		atomic_fetch_or_explicit(&mapped_bits[p / 64],
		                         (uint64_t)1 << (p % 64),
		                         memory_order_release);
	spin_unlock_irqrestore(&kasan_map_lock, irq);
	return ok;
}

bool kasan_shadow_used(uintptr_t base, size_t nbytes)
{
	size_t off = base - arena_base;
	if (!kasan_on || nbytes == 0 || off >= arena_bytes)
		return true;
	if (nbytes > arena_bytes - off)
		nbytes = arena_bytes - off;
	size_t last = (off + nbytes - 1) / SHADOW_PAGE_SPAN;
	for (size_t p = off / SHADOW_PAGE_SPAN; p <= last; p++)
		if (!page_mapped(p) && !map_page(p))
			return false;
	return true;
}

size_t kasan_shadow_frames(void)
{
	return atomic_load_explicit(&shadow_frames, memory_order_relaxed);
}

int8_t kasan_shadow_of(const void *p, bool *mapped)
{
	size_t off = (uintptr_t)p - arena_base;
	*mapped = kasan_on && off < arena_bytes &&
	          page_mapped(off / SHADOW_PAGE_SPAN);
	if (!*mapped)
		return 0;
	return __atomic_load_n(&shadow[off / GRANULE], __ATOMIC_RELAXED);
}

/* Sets the shadow of granules [off / 8, end / 8) (arena offsets, 8-byte
 * multiples) to v, skipping shadow pages never mapped. */
static void shadow_set(size_t off, size_t end, int8_t v)
{
	while (off < end) {
		size_t p = off / SHADOW_PAGE_SPAN;
		size_t stop = (p + 1) * SHADOW_PAGE_SPAN;
		if (stop > end)
			stop = end;
		if (page_mapped(p))
			memset(shadow + off / GRANULE, (uint8_t)v,
			       (stop - off) / GRANULE);
		off = stop;
	}
}

static const int8_t shadow_codes[] = {
        [MM_SHADOW_REDZONE] = KASAN_REDZONE,
        [MM_SHADOW_FREED] = KASAN_FREED,
        [MM_SHADOW_UNUSED] = KASAN_UNUSED,
        [MM_SHADOW_PAGE_FREE] = KASAN_PAGE_FREE,
};

/* mm/port.h's hook: the span heap, in poison mode, says what a range of
 * its arena now is. Any context but NMI; writes shadow bytes only. */
void mm_port_shadow(void *addr, size_t nbytes, enum mm_shadow what)
{
	size_t off = (uintptr_t)addr - arena_base;
	if (!kasan_on || nbytes == 0 || off >= arena_bytes)
		return;
	if (nbytes > arena_bytes - off)
		nbytes = arena_bytes - off;
	size_t end = off + nbytes;
	if (what != MM_SHADOW_OK) {
		/* A partial first granule is the object's before it. */
		size_t from = (off + GRANULE - 1) & ~(size_t)(GRANULE - 1);
		size_t to = (end + GRANULE - 1) & ~(size_t)(GRANULE - 1);
		shadow_set(from, to, shadow_codes[what]);
		return;
	}
	size_t whole = end & ~(size_t)(GRANULE - 1);
	shadow_set(off & ~(size_t)(GRANULE - 1), whole, 0);
	if (whole < end && page_mapped(whole / SHADOW_PAGE_SPAN))
		__atomic_store_n(&shadow[whole / GRANULE],
		                 (int8_t)(end - whole), __ATOMIC_RELAXED);
}

/* The first byte of [a, +n) that shadow v of granule g (an address)
 * forbids, or 0 if none. */
static inline uintptr_t granule_bad(uintptr_t g, int8_t v, uintptr_t a,
                                    uintptr_t end)
{
	uintptr_t lo = a > g ? a : g;
	if (v < 0)
		return lo;
	uintptr_t limit = g + (uintptr_t)v; /* bytes [g, limit) are fine */
	if (end <= limit)
		return 0;
	return lo > limit ? lo : limit;
}

/* Checks the access [a, +n) by the code at pc. Any context. */
static void check(uintptr_t a, size_t n, bool write, uintptr_t pc)
{
	size_t off = a - arena_base;
	if (__builtin_expect(!kasan_on, 1) || n == 0 || off >= arena_bytes)
		return;
	uintptr_t end =
	        n > arena_bytes - off ? arena_base + arena_bytes : a + n;
	for (uintptr_t g = a & ~(uintptr_t)(GRANULE - 1); g < end;
	     g += GRANULE) {
		size_t goff = g - arena_base;
		if (!page_mapped(goff / SHADOW_PAGE_SPAN))
			continue;
		int8_t v = __atomic_load_n(&shadow[goff / GRANULE],
		                           __ATOMIC_RELAXED);
		uintptr_t bad = v ? granule_bad(g, v, a, end) : 0;
		if (bad) {
			kasan_report(a, n, write, pc, bad, v);
			return;
		}
	}
}

void *kasan_memcpy(void *restrict dst, const void *restrict src, size_t n)
{
	uintptr_t pc = (uintptr_t)__builtin_return_address(0);
	check((uintptr_t)src, n, false, pc);
	check((uintptr_t)dst, n, true, pc);
	return memcpy(dst, src, n);
}

void *kasan_memmove(void *dst, const void *src, size_t n)
{
	uintptr_t pc = (uintptr_t)__builtin_return_address(0);
	check((uintptr_t)src, n, false, pc);
	check((uintptr_t)dst, n, true, pc);
	return memmove(dst, src, n);
}

void *kasan_memset(void *dst, int c, size_t n)
{
	check((uintptr_t)dst, n, true, (uintptr_t)__builtin_return_address(0));
	return memset(dst, c, n);
}

/* gcc's callbacks (-fsanitize=kernel-address with
 * asan-instrumentation-with-call-threshold=0): one per access, before
 * it; pc is the instruction after the call, in the accessing function. */
#define KASAN_CALLBACKS(n)                                                  \
	void __asan_load##n##_noabort(uintptr_t a);                         \
	void __asan_load##n##_noabort(uintptr_t a)                          \
	{                                                                   \
		check(a, n, false, (uintptr_t)__builtin_return_address(0)); \
	}                                                                   \
	void __asan_store##n##_noabort(uintptr_t a);                        \
	void __asan_store##n##_noabort(uintptr_t a)                         \
	{                                                                   \
		check(a, n, true, (uintptr_t)__builtin_return_address(0));  \
	}
KASAN_CALLBACKS(1)
KASAN_CALLBACKS(2)
KASAN_CALLBACKS(4)
KASAN_CALLBACKS(8)
KASAN_CALLBACKS(16)

void __asan_loadN_noabort(uintptr_t a, size_t n);
void __asan_loadN_noabort(uintptr_t a, size_t n)
{
	check(a, n, false, (uintptr_t)__builtin_return_address(0));
}

void __asan_storeN_noabort(uintptr_t a, size_t n);
void __asan_storeN_noabort(uintptr_t a, size_t n)
{
	check(a, n, true, (uintptr_t)__builtin_return_address(0));
}

/* Called before a noreturn call: user-space ASan unpoisons the stack
 * there; this shadow has no stack in it. */
void __asan_handle_no_return(void);
void __asan_handle_no_return(void)
{
}
