/*
 * malloc/arena.c: the hosted malloc's heaps, made at its set-up (slots.c,
 * "bootstrap"): the page heap in an arena reserved whole (address space
 * only), 64 GiB, or under an address-space limit (ulimit -v, as batch
 * systems set) what leaves the program room for its own threads and
 * mappings; then the span heap over it.
 *
 * Algorithm: the arena's size. With no RLIMIT_AS, the size asked, with
 * no probe (every process starts here). Otherwise, if the size asked and
 * an eighth more can be reserved, the size asked; else the room free
 * now, found by bisection to a chunk with PROT_NONE, MAP_NORESERVE
 * mappings unmapped at once, less an eighth of it and at least
 * ARENA_HEADROOM. The size asked is the arena's and the span heap's
 * metadata arena's (reserved by its set-up beside it): the arena is the
 * largest whose metadata arena fits beside it in the room
 * (arena_with_meta). The page heap is tried at that size, halved down to
 * one chunk while its metadata does not fit beside it.
 *
 * Invariant: a set-up that fails keeps only a page heap it made (its
 * arena reserved), which the next try uses: the span heap's set-up keeps
 * nothing when it fails, but after its metadata heap was made (no memory
 * for its first pages), whose reservations it keeps and the next try
 * takes again (mm/spanheap_meta.c). The tries are the set-up's, one at a time
 * (slots.c's init_state), so the two flags below need no lock.
 *
 * Limits: the room is measured once, at set-up; a program that maps much
 * later, or a thread that maps meanwhile, is not foreseen (the set-up
 * halves the arena while the heap's own metadata does not fit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "malloc_internal.h"

/*
 * Under an address-space limit (ulimit -v) the arena leaves room for the
 * program's stacks and mappings, as glibc's heap does: it is the room free
 * now (bisected to a chunk) less an eighth, at least ARENA_HEADROOM. It
 * was the largest power of two that fitted: past one, threads failed.
 * The heap's metadata (a 512th of the arena for the span table) comes out
 * of that room too.
 */
#define ARENA_HEADROOM ((size_t)16 << 20)

/* The room an arena of n bytes leaves the program. */
static size_t headroom(size_t n)
{
	return n / 8 > ARENA_HEADROOM ? n / 8 : ARENA_HEADROOM;
}

/* Whether n bytes of address space can be reserved now; keeps none. */
static bool reservable(size_t n)
{
	void *p = mmap(NULL, n, PROT_NONE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return false;
	munmap(p, n);
	return true;
}

size_t mm_malloc_arena_fit(size_t want)
{
	const size_t chunk = PALLOC_CHUNK_BYTES;
	int saved = errno;
	struct rlimit rl; /* no limit: no probe (every process comes here) */
	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY) {
		errno = saved;
		return want;
	}
	want &= ~(chunk - 1);     /* bounds in chunks: each mid lies between */
	size_t lo = 0, hi = want; /* lo fits (0 does), hi does not */
	/* The whole arena only with its room: with ARENA_HEADROOM alone, a
	 * limit a few MiB past 64 GiB and the span table's 128 MiB left
	 * the program ~2 MiB (API test address_limit). */
	if (reservable(want + headroom(want)))
		lo = hi = want;
	while (hi - lo > chunk) {
		size_t mid = (lo + (hi - lo) / 2) & ~(chunk - 1);
		if (reservable(mid))
			lo = mid;
		else
			hi = mid;
	}
	errno = saved;
	if (lo == want)
		return want;
	size_t head = headroom(lo);
	return lo >= head + chunk ? (lo - head) & ~(chunk - 1) : chunk;
}

/* The smallest arena the set-up settles for: one chunk. A heap that small
 * runs out sooner, and its allocations fail with ENOMEM as glibc's do
 * under the same limit; until this version it was 256 MiB, and a program
 * under a smaller limit (ulimit -v 200000: python3 ran under glibc)
 * aborted at its first malloc. */
#define ARENA_MIN_BYTES ((size_t)PALLOC_CHUNK_BYTES)

/*
 * The arena for want bytes asked, under sc: the span heap reserves an
 * arena of its own for its metadata beside the page heap's
 * (spanheap_meta_arena_bytes, about a tenth of it; in poison mode about
 * three quarters of it), and both come out of the room. With room for both,
 * want; else the largest arena, cut by eighths, whose metadata fits beside it
 * (until the metadata heap, the page heap's arena took the whole room,
 * and the metadata arena then took the program's headroom: API test
 * address_limit's thread found no room for its stack).
 */
static size_t arena_with_meta(const struct spanheap_config *sc, size_t want)
{
	const size_t chunk = PALLOC_CHUNK_BYTES;
	size_t both = want + spanheap_meta_arena_bytes(sc, want);
	size_t room = mm_malloc_arena_fit(both);
	if (room >= both)
		return want;
	size_t a = room & ~(chunk - 1);
	while (a > ARENA_MIN_BYTES &&
	       a + spanheap_meta_arena_bytes(sc, a) > room)
		a = (a - a / 8) & ~(chunk - 1);
	return a;
}

/* The page heap in the largest arena that fits (above) beside the span
 * heap's metadata arena under sc; false if not even one chunk's does.
 * Until this version a program under a limit below 64 GiB aborted at its
 * first malloc. */
static bool pages_make(const struct spanheap_config *sc)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	for (size_t a = arena_with_meta(sc, hc.arena_bytes);
	     a >= ARENA_MIN_BYTES;
	     a = (a / 2) & ~(size_t)(PALLOC_CHUNK_BYTES - 1)) {
		hc.arena_bytes = a;
		if (mheap_init(&mm_malloc_heap, &hc))
			return true;
	}
	mm_log("cannot set up the heap: no address space for an arena of "
	       "%zu MiB, the smallest tried",
	       ARENA_MIN_BYTES >> 20);
	return false;
}

/* The span heap's configuration: the defaults and the environment's. */
static void span_config(struct spanheap_config *sc)
{
	spanheap_config_default(sc);
	/* Poison mode (mm/spanheap_config.h): a debugging aid that finds a
	 * write after a free at the object's next allocation. */
	sc->poison = mm_malloc_env_switch("MM_MALLOC_POISON",
	                                  getenv("MM_MALLOC_POISON")) == 1;
	/* The guarded pool (malloc/guard.c): production's overrun and use
	 * after free finder, a sampled few objects between PROT_NONE
	 * pages. */
	mm_malloc_guard_config(
	        sc, mm_malloc_guard_switch(getenv("MM_MALLOC_GUARD")));
	/* A thread has no idle loop, and a blocked one would keep its
	 * cache: the sweeper hands back stale caches of a quiet heap
	 * (visit.c reaches them). */
	sc->flush_quiet_cpus = true;
}

bool mm_malloc_heaps_make(void)
{
	static bool paged, told;
	/* The lines of a failed set-up name its cause: said even when
	 * MM_MALLOC_VERBOSE is off, the first time (a program that retries
	 * its allocations tries the set-up again at each). */
	mm_malloc_log_here(!told);
	struct spanheap_config sc;
	span_config(&sc);
	if (!paged)
		paged = pages_make(&sc);
	bool ok = paged && spanheap_init(&mm_malloc_sh, &mm_malloc_heap, &sc);
	if (paged && !ok && sc.guard_slots) {
		/* The pool is a debugging aid: the program runs without it
		 * rather than not at all (spanheap_init kept nothing but a
		 * metadata heap, which this try takes again). Said
		 * only if the heap works without it: a failure of the rest
		 * (the span array under ulimit -d) was blamed on the pool
		 * (until a review; API test setup_fails). */
		mm_malloc_guard_config(&sc, 0);
		ok = spanheap_init(&mm_malloc_sh, &mm_malloc_heap, &sc);
		if (ok)
			mm_log("MM_MALLOC_GUARD: the guarded pool cannot be "
			       "set up (the line before says why); running "
			       "without it");
	}
	if (!ok)
		mm_log("cannot set up the %s heap (the line before says why): "
		       "allocations fail with ENOMEM, and each tries again",
		       paged ? "span" : "page");
	mm_malloc_log_here(false);
	told = told || !ok;
	return ok;
}
