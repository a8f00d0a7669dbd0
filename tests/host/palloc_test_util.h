/*
 * tests/host/palloc_test_util.h: helpers shared by the palloc table and
 * unit tests: fresh allocators over made-up arenas (palloc never touches
 * arena memory, so any chunk-aligned numbers do), comparing a chunk with a
 * table row, and whole-state snapshots for "nothing changed" checks.
 */
#ifndef TESTS_HOST_PALLOC_TEST_UTIL_H
#define TESTS_HOST_PALLOC_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/palloc_testing.h"
#include "mm_port_posix.h"

#define TP_BASE  ((uintptr_t)0x4000000000) /* 256 GiB: chunk aligned */
#define TP_FAIL  ((size_t)-1)              /* "the allocation fails" */
#define P(c, i)  ((size_t)(c)*PALLOC_CHUNK_PAGES + (i)) /* page index */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static inline bool tp_new(struct palloc *p, uintptr_t base, size_t chunks,
                          unsigned flags)
{
	struct palloc_config cfg = {.arena_base = base,
	                            .arena_bytes = chunks * PALLOC_CHUNK_BYTES,
	                            .flags = flags};
	return palloc_init(p, &cfg);
}

/* Gives the reserved metadata back (reserved mode only). */
static inline void tp_release(struct palloc *p)
{
	if (p->mapped)
		mm_port_release((void *)p->meta_base, p->meta_bytes);
}

static inline uintptr_t tp_addr(const struct palloc *p, size_t pi)
{
	return pi == TP_FAIL ? 0 : p->arena_base + pi * MM_PAGE_SIZE;
}

/* True if stmt panicked; a function of its own, so that the setjmp in
 * MM_PORT_PANICS does not put the caller's loop variables at risk. */
__attribute__((noinline, unused)) static bool tp_check_panics(struct palloc *p)
{
	return MM_PORT_PANICS(palloc_check(p));
}

/* Runs palloc_check; on a panic fails the test with its message. */
#define TP_CHECK(p, what)                                                   \
	do {                                                                \
		if (tp_check_panics(p))                                     \
			ktest_fail_at(__FILE__, __LINE__, "%s: %s", (what), \
			              mm_port_last_panic());                \
	} while (0)

/* True if chunk want->chunk of p holds exactly want's ranges. */
static inline bool tp_chunk_is(const struct palloc *p,
                               const struct palloc_test_chunk *want,
                               const char *what)
{
	struct pallocbits a, s, wa, ws;
	if (!palloc_test_grown(p, want->chunk)) {
		ktest_diag("%s: chunk %zu is not grown", what, want->chunk);
		return false;
	}
	palloc_test_read(p, want->chunk, &a, &s);
	palloc_test_bits(want->alloc, &wa);
	palloc_test_bits(want->scav, &ws);
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
		if (a.w[w] != wa.w[w] || s.w[w] != ws.w[w]) {
			ktest_diag("%s: chunk %zu word %u: alloc %016lx scav "
			           "%016lx, want %016lx %016lx",
			           what, want->chunk, w, a.w[w], s.w[w],
			           wa.w[w], ws.w[w]);
			return false;
		}
	}
	return true;
}

struct tp_snap {
	uint64_t *w;
	size_t n;
};

static inline struct tp_snap tp_snapshot(const struct palloc *p)
{
	struct tp_snap s;
	s.n = palloc_test_snapshot(p, NULL, 0);
	s.w = malloc(s.n * sizeof(uint64_t));
	palloc_test_snapshot(p, s.w, s.n);
	return s;
}

/* True if p is word for word as in s; frees s. */
static inline bool tp_unchanged(const struct palloc *p, struct tp_snap s)
{
	struct tp_snap now = tp_snapshot(p);
	bool same = now.n == s.n && memcmp(now.w, s.w, s.n * 8) == 0;
	free(now.w);
	free(s.w);
	return same;
}

#endif
