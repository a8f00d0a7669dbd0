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
 * ARENA_HEADROOM. The size asked is all the set-up reserves for the
 * arena (setup_bytes: the page heap's, the span heap's metadata heap's
 * and guarded pool's beside it): the arena is the largest whose set-up
 * fits in the room (arena_with_meta), at least one chunk. The page heap
 * is tried at that size, halved down to one chunk while the whole set-up
 * does not fit (one reservation of its size, given back); where even one
 * chunk's does not, nothing is reserved.
 *
 * Invariant: a set-up that fails keeps only a page heap it made (its
 * arena reserved), which the next try uses: the span heap's set-up keeps
 * nothing when it fails, but after its metadata heap was made (no memory
 * for its first pages), whose reservations it keeps and the next try
 * takes again (mm/spanheap_meta.c); a set-up that fails after both heaps
 * were made (no fork handlers, fork.c) keeps both, and the next try takes
 * them as they are. The tries are the set-up's, one at a time (slots.c's
 * init_state), so the flags below need no lock.
 *
 * Limits: the room is measured once, at set-up; a program that maps much
 * later is not foreseen, and a thread that maps between the probe and
 * the reservations may leave the metadata heap's arena halved
 * (spanheap_meta.c) or the span heap's set-up failed, the page heap kept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "malloc_internal.h"

/*
 * Under an address-space limit (ulimit -v) the set-up leaves room for the
 * program's stacks and mappings, as glibc's heap does: it takes the room
 * free now (bisected to a chunk) less an eighth, at least ARENA_HEADROOM.
 * The arena was the largest power of two that fitted: past one, threads
 * failed.
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

/* Whether the address space is limited (RLIMIT_AS); with no limit the
 * set-up probes nothing (every process comes here). Keeps errno. */
static bool limited(void)
{
	int saved = errno;
	struct rlimit rl;
	bool lim =
	        getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur != RLIM_INFINITY;
	errno = saved;
	return lim;
}

size_t mm_malloc_arena_fit(size_t want)
{
	const size_t chunk = PALLOC_CHUNK_BYTES;
	if (!limited())
		return want;
	int saved = errno;
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
 * The address space the set-up reserves for an object arena of a bytes
 * under sc: the page heap's (the arena, its span table and palloc's
 * metadata: mheap_reserved_bytes), the same for the span heap's metadata
 * heap over its own arena (spanheap_meta_arena_bytes: about a tenth of a,
 * in poison mode about three quarters), the guarded pool's, and a chunk
 * less a page: mm_port_reserve maps an arena that much longer, for its
 * alignment, before it trims it. Until a review the set-up counted the
 * two arenas alone: a page heap made where its arena fitted and the rest
 * did not was kept (2 MiB and its tables, for good, by a process short of
 * address space), and the metadata heap's arena was halved to fit (API
 * test address_sweep).
 */
static size_t setup_bytes(const struct spanheap_config *sc, size_t a)
{
	return mheap_reserved_bytes(a) +
	       mheap_reserved_bytes(spanheap_meta_arena_bytes(sc, a)) +
	       spanheap_guard_bytes(sc->guard_slots) + PALLOC_CHUNK_BYTES -
	       MM_PAGE_SIZE;
}

/*
 * The arena for want bytes asked, under sc: with room for all the set-up
 * reserves for it (above), want; else the largest arena, cut by eighths,
 * whose set-up fits in the room (until the metadata heap, the page heap's
 * arena took the whole room, and the metadata arena then took the
 * program's headroom: API test address_limit's thread found no room for
 * its stack). At least ARENA_MIN_BYTES: whether that fits is pages_make's
 * to find.
 */
static size_t arena_with_meta(const struct spanheap_config *sc, size_t want)
{
	const size_t chunk = PALLOC_CHUNK_BYTES;
	size_t both = setup_bytes(sc, want);
	size_t room = mm_malloc_arena_fit((both + chunk - 1) & ~(chunk - 1));
	if (room >= both)
		return want;
	size_t a = room & ~(chunk - 1);
	while (a > ARENA_MIN_BYTES && setup_bytes(sc, a) > room)
		a = (a - a / 8) & ~(chunk - 1);
	return a > ARENA_MIN_BYTES ? a : ARENA_MIN_BYTES;
}

/* Whether the set-up of an arena of a bytes fits now: with no limit, yes
 * (no probe); else one reservation of all it takes, given back. */
static bool setup_fits(const struct spanheap_config *sc, size_t a)
{
	if (!limited())
		return true;
	int saved = errno;
	bool fits = reservable(setup_bytes(sc, a));
	errno = saved;
	return fits;
}

/* The page heap in the largest arena whose set-up (above) fits under sc;
 * false, having reserved nothing, if not even one chunk's does (until a
 * review the page heap was made when its arena alone fitted, and kept
 * when the metadata heap's did not). Until this version a program under
 * a limit below 64 GiB aborted at its first malloc. */
static bool pages_make(const struct spanheap_config *sc)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	for (size_t a = arena_with_meta(sc, hc.arena_bytes);
	     a >= ARENA_MIN_BYTES;
	     a = (a / 2) & ~(size_t)(PALLOC_CHUNK_BYTES - 1)) {
		hc.arena_bytes = a;
		if (setup_fits(sc, a) && mheap_init(&mm_malloc_heap, &hc))
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
	static bool paged, told, made;
	if (made) /* a set-up that failed after it (fork.c) */
		return true;
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
		 * for want of memory (under ulimit -d, the page heap's
		 * growth to its reserve, or the span array) was blamed on
		 * the pool (until a review; API test setup_fails). */
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
	made = ok;
	return ok;
}
