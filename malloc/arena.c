/*
 * malloc/arena.c: the size of the hosted malloc's arena, which it
 * reserves whole (address space only) at its set-up (slots.c,
 * heaps_make): 64 GiB, or under an address-space limit (ulimit -v, as
 * batch systems set) what leaves the program room for its own threads
 * and mappings.
 *
 * Algorithm: with no RLIMIT_AS, the size asked, with no probe (every
 * process starts here). Otherwise, if the size asked and an eighth more
 * can be reserved, the size asked; else the room free now, found by
 * bisection to a chunk with PROT_NONE, MAP_NORESERVE mappings unmapped
 * at once, less an eighth of it and at least ARENA_HEADROOM.
 *
 * Limits: the room is measured once, at set-up; a program that maps much
 * later, or a thread that maps meanwhile, is not foreseen (the set-up
 * halves the arena while the heap's own metadata does not fit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
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
