/*
 * Table-driven allocation and free cases: each row gives the chunks'
 * bitmaps before (palloc_test_build), a list of operations with their
 * expected results, and the bitmaps after. palloc_check runs after every
 * operation. Page indices are written P(chunk, page).
 */
#include "palloc_test_util.h"

enum tp_op { OP_END, OP_ALLOC, OP_FREE, OP_RANGE };

struct tp_step {
	enum tp_op op;
	size_t npages;
	size_t pi;    /* ALLOC: expected page (TP_FAIL); FREE, RANGE: where */
	size_t nscav; /* ALLOC, RANGE: expected scavenged pages */
	bool ok;      /* RANGE: expected result */
};

#define A(n, at, scav)                            \
	{                                         \
		OP_ALLOC, (n), (at), (scav), true \
	}
#define F(at, n)                            \
	{                                   \
		OP_FREE, (n), (at), 0, true \
	}
#define R(at, n, okay)                         \
	{                                      \
		OP_RANGE, (n), (at), 0, (okay) \
	}
#define FULL(c)                                     \
	{                                           \
		.chunk = (c), .alloc = { {0, 512} } \
	}
#define EMPTY(c)             \
	{                    \
		.chunk = (c) \
	}
#define CHUNKS(...)         \
	{                   \
		__VA_ARGS__ \
	}
#define LAST (((size_t)1 << 18) - 1) /* of a 512 GiB arena */

struct tp_case {
	const char *name;
	size_t chunks; /* arena size in chunks; 0 means 16 */
	struct palloc_test_chunk before[6], after[6];
	struct tp_step steps[10];
};

static size_t nchunks(const struct palloc_test_chunk *c)
{
	/* Rows list chunks in increasing order; a 0 after the first ends. */
	size_t n = 1;
	while (n < 6 && c[n].chunk > c[n - 1].chunk)
		n++;
	return n;
}

static bool run_step(struct palloc *p, const struct tp_case *tc, unsigned i)
{
	const struct tp_step *s = &tc->steps[i];
	size_t nscav = 99;
	switch (s->op) {
	case OP_ALLOC: {
		uintptr_t got = palloc_alloc(p, s->npages, &nscav);
		if (got == tp_addr(p, s->pi) &&
		    (s->pi == TP_FAIL || nscav == s->nscav))
			return true;
		ktest_diag("%s: step %u: alloc %zu gave 0x%lx (%zu scavenged), "
		           "want 0x%lx (%zu)",
		           tc->name, i, s->npages, got, nscav,
		           tp_addr(p, s->pi), s->nscav);
		return false;
	}
	case OP_FREE:
		if (!MM_PORT_PANICS(
		            palloc_free(p, tp_addr(p, s->pi), s->npages)))
			return true;
		ktest_diag("%s: step %u: %s", tc->name, i,
		           mm_port_last_panic());
		return false;
	default: {
		bool ok = palloc_alloc_range_locked(p, tp_addr(p, s->pi),
		                                    s->npages, &nscav);
		struct palloc_refusal r;
		palloc_take_refusal_locked(p, &r);
		if (ok == s->ok && (!ok || nscav == s->nscav))
			return true;
		ktest_diag("%s: step %u: alloc_range gave %d", tc->name, i, ok);
		return false;
	}
	}
}

static void run_cases(const struct tp_case *cases, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const struct tp_case *tc = &cases[k];
		struct palloc p;
		if (!tp_new(&p, TP_BASE, tc->chunks ? tc->chunks : 16, 0) ||
		    !palloc_test_build(&p, tc->before, nchunks(tc->before))) {
			ktest_fail_at(__FILE__, __LINE__, "%s: build failed",
			              tc->name);
			continue;
		}
		TP_CHECK(&p, tc->name);
		bool ok = true;
		for (unsigned i = 0; ok && tc->steps[i].op != OP_END; i++) {
			ok = run_step(&p, tc, i);
			TP_CHECK(&p, tc->name);
		}
		for (size_t c = 0; ok && c < nchunks(tc->after); c++)
			ok = tp_chunk_is(&p, &tc->after[c], tc->name);
		if (!ok)
			ktest_fail_at(__FILE__, __LINE__, "case \"%s\" failed",
			              tc->name);
		tp_release(&p);
	}
}

static const struct tp_case single_chunk[] = {
        {"successive small allocations in an empty chunk",
         0,
         CHUNKS(EMPTY(0)),
         CHUNKS({.chunk = 0, .alloc = {{0, 69}}}),
         {A(1, 0, 0), A(1, 1, 0), A(3, 2, 0), A(64, 5, 0)}},
        {"first fit skips holes too small",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 10}, {12, 8}, {25, 487}}}),
         CHUNKS(FULL(0)),
         {A(3, 20, 0), A(2, 10, 0), A(2, 23, 0), A(1, TP_FAIL, 0)}},
        {"a run across a word boundary",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 60}, {70, 442}}}),
         CHUNKS(FULL(0)),
         {A(11, TP_FAIL, 0), A(10, 60, 0), A(1, TP_FAIL, 0)}},
        {"a fit in the chunk's last pages",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 500}}}),
         CHUNKS(FULL(0)),
         {A(13, TP_FAIL, 0), A(12, 500, 0)}},
        {"a full chunk",
         0,
         CHUNKS(FULL(0)),
         CHUNKS(FULL(0)),
         {A(1, TP_FAIL, 0), A(512, TP_FAIL, 0)}},
        {"a whole chunk, then nothing",
         0,
         CHUNKS(EMPTY(0)),
         CHUNKS(FULL(0)),
         {A(513, TP_FAIL, 0), A(512, 0, 0), A(1, TP_FAIL, 0)}},
};

static const struct tp_case straddling[] = {
        {"2 chunks",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 400}}},
                {.chunk = 1, .alloc = {{100, 412}}}),
         CHUNKS(FULL(0), FULL(1)),
         {A(213, TP_FAIL, 0), A(212, 400, 0)}},
        {"a lower hole inside a chunk wins over a straddle",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 10}, {20, 380}}},
                {.chunk = 1, .alloc = {{50, 462}}}),
         CHUNKS(FULL(0), FULL(1)),
         {A(10, 10, 0), A(150, 400, 0), A(12, P(1, 38), 0)}},
        {"3 chunks",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 500}}}, EMPTY(1),
                {.chunk = 2, .alloc = {{10, 502}}}),
         CHUNKS(FULL(0), FULL(1), FULL(2)),
         {A(535, TP_FAIL, 0), A(534, 500, 0)}},
        {"5 chunks",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 511}}}, EMPTY(1), EMPTY(2), EMPTY(3),
                {.chunk = 4, .alloc = {{1, 511}}}),
         CHUNKS(FULL(0), FULL(1), FULL(2), FULL(3), FULL(4)),
         {A(1539, TP_FAIL, 0), A(1538, 511, 0)}},
        {"the lower of two straddles",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 500}}},
                {.chunk = 1, .alloc = {{20, 480}}},
                {.chunk = 2, .alloc = {{0, 490}}}, EMPTY(3)),
         CHUNKS(FULL(0), {.chunk = 1, .alloc = {{0, 18}, {20, 480}}}, FULL(2),
                {.chunk = 3, .alloc = {{0, 78}}}),
         {A(30, 500, 0), A(100, P(2, 490), 0)}},
        {"the whole arena",
         4,
         CHUNKS(EMPTY(0), EMPTY(1), EMPTY(2), EMPTY(3)),
         CHUNKS(FULL(0), FULL(1), FULL(2), FULL(3)),
         {A(2049, TP_FAIL, 0), A(2048, 0, 0), A(1, TP_FAIL, 0)}},
};

static const struct tp_case discontiguous[] = {
        {"both ends of a 512 GiB arena",
         (size_t)1 << 18,
         CHUNKS({.chunk = 0, .alloc = {{0, 500}}}, EMPTY(LAST)),
         CHUNKS(FULL(0), FULL(LAST)),
         {A(12, 500, 0), A(13, P(LAST, 0), 0), A(600, TP_FAIL, 0),
          A(499, P(LAST, 13), 0), A(1, TP_FAIL, 0)}},
        {"a chunk not grown breaks a run",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 256}}}, EMPTY(2)),
         CHUNKS(FULL(0), FULL(2)),
         {A(512, P(2, 0), 0), A(256, 256, 0)}},
        {"far apart in the middle of 512 GiB",
         (size_t)1 << 18,
         CHUNKS({.chunk = 100000, .alloc = {{0, 511}}}, EMPTY(100001),
                EMPTY(200000)),
         CHUNKS(FULL(100000), FULL(100001),
                {.chunk = 200000, .alloc = {{0, 1}}}),
         {A(514, TP_FAIL, 0), A(513, P(100000, 511), 0),
          A(1, P(200000, 0), 0)}},
};

static const struct tp_case scavenged[] = {
        {"counts scavenged pages",
         0,
         CHUNKS({.chunk = 0, .scav = {{0, 4}, {10, 10}}}),
         CHUNKS({.chunk = 0, .alloc = {{0, 24}}}),
         {A(16, 0, 10), A(8, 16, 4)}},
        {"scavenged pages across chunks",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 500}}, .scav = {{500, 12}}},
                {.chunk = 1, .scav = {{0, 100}}}),
         CHUNKS(FULL(0), {.chunk = 1, .alloc = {{0, 8}}, .scav = {{8, 92}}}),
         {A(20, 500, 20)}},
        {"alloc_range counts them too",
         0,
         CHUNKS({.chunk = 0, .alloc = {{0, 10}}, .scav = {{10, 100}}}),
         CHUNKS({.chunk = 0, .alloc = {{0, 40}}, .scav = {{40, 70}}}),
         {{OP_RANGE, 30, 10, 30, true}}},
};

static const struct tp_case free_then_reuse[] = {
        {"free then reuse",
         0,
         CHUNKS(FULL(0)),
         CHUNKS(FULL(0)),
         {F(100, 10), A(10, 100, 0), F(0, 3), A(4, TP_FAIL, 0), A(3, 0, 0)}},
        {"free across chunks, allocate across them",
         0,
         CHUNKS(FULL(0), FULL(1)),
         CHUNKS(FULL(0), FULL(1)),
         {F(412, 200), A(201, TP_FAIL, 0), A(200, 412, 0)}},
        {"free whole middle chunks",
         0,
         CHUNKS(FULL(0), FULL(1), FULL(2), FULL(3)),
         CHUNKS(FULL(0), {.chunk = 1, .alloc = {{0, 89}}}, EMPTY(2),
                {.chunk = 3, .alloc = {{64, 448}}}),
         {F(256, 1536), A(1536, 256, 0), F(600, 1000), A(1, 600, 0)}},
        {"free lowers the search hint",
         0,
         CHUNKS(FULL(0), {.chunk = 1, .alloc = {{0, 10}}}),
         CHUNKS(FULL(0), {.chunk = 1, .alloc = {{0, 12}}}),
         {A(1, P(1, 10), 0), F(5, 1), A(1, 5, 0), A(1, P(1, 11), 0)}},
        {"alloc_range takes exactly free pages",
         0,
         CHUNKS(EMPTY(0)),
         CHUNKS({.chunk = 0, .alloc = {{10, 35}}}),
         {R(10, 20, true), A(15, 30, 0), R(5, 10, false), R(44, 2, false),
          R(500, 13, false)}},
};

KTEST(palloc_table, single_chunk)
{
	run_cases(single_chunk, NELEM(single_chunk));
}

KTEST(palloc_table, straddling_chunks)
{
	run_cases(straddling, NELEM(straddling));
}

KTEST(palloc_table, discontiguous_growth)
{
	run_cases(discontiguous, NELEM(discontiguous));
}

KTEST(palloc_table, scavenged_counts)
{
	run_cases(scavenged, NELEM(scavenged));
}

KTEST(palloc_table, free_then_reuse)
{
	run_cases(free_then_reuse, NELEM(free_then_reuse));
}
