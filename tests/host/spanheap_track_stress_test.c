/*
 * Poison mode's records read with no lock while threads churn
 * (mm/spanheap_track.c, mm/spanheap_guard_report.c), built for
 * ThreadSanitizer too (make test-tsan): three churn threads, each a CPU
 * of its own, allocate small objects of random sizes, fill each with a
 * pattern of its address and free them, every fourth handed to the next
 * thread to free (churn_util.h), on a heap that keeps records and samples a
 * guarded pool, while the sweeper runs; meanwhile a reader on CPU 0, holding
 * OWN live objects from one call site, asks round after round for each one's
 * records (spanheap_object_tracks), for the live objects grouped by stack
 * (spanheap_alloc_traces), and for the records of an object a churner is
 * handing on (any answer, read under TSan). No one else touches the
 * reader's objects, so their records never read as changing and always
 * say allocated since the test began, freed before that or never; the
 * trace of the reader's stack counts exactly its OWN objects every round
 * (the churners allocate from another). Bounded by operation counts.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "churn_util.h"

enum { OPS = 20000, OWN = 40, ROUNDS = 200 };

static struct mheap heap;
static struct spanheap sh;
static const size_t churn_sizes[] = {16, 40, 72, 200, 900, 3000};
static struct churn churn = {
        .sh = &sh, .sizes = churn_sizes, .nsizes = 6, .ops = OPS};

/* The reader's one call site: every object of its own carries its stack. */
SH_SITE static void *own_site(size_t size)
{
	void *p = spanheap_alloc(&sh, size, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

/* Whether own object p's records read true: allocated at or after t0 (and
 * not changing), its slot's or span's last free before that or never. */
static bool records_true(const void *p, uint64_t t0)
{
	struct spanheap_track a, f;
	if (!spanheap_object_tracks(&sh, p, &a, &f))
		return false;
	return a.ns != SPANHEAP_TRACK_CHANGING && a.ns >= t0 && a.npcs > 0 &&
	       f.ns != SPANHEAP_TRACK_CHANGING && f.ns < a.ns;
}

/* The stacks the reader's objects were recorded with: one call site,
 * but a guarded object's record may leave out other frames of the heap
 * than a span's. */
static struct spanheap_track stacks[4];
static unsigned nstacks;

static bool same_stack(const struct spanheap_track *a, const uintptr_t *pc,
                       uint32_t npcs)
{
	return a->npcs == npcs && !memcmp(a->pc, pc, npcs * sizeof(pc[0]));
}

/* Notes own object p's stack among stacks[]; false if there is no room. */
static bool note_stack(const void *p)
{
	struct spanheap_track a, f;
	if (!spanheap_object_tracks(&sh, p, &a, &f))
		return false;
	for (unsigned i = 0; i < nstacks; i++)
		if (same_stack(&stacks[i], a.pc, a.npcs))
			return true;
	if (nstacks == 4)
		return false;
	stacks[nstacks++] = a;
	return true;
}

/* The objects the traces count under the reader's stacks. */
static size_t counted_own(void)
{
	static struct spanheap_trace t[64];
	size_t rest, n = spanheap_alloc_traces(&sh, 0, t, 64, &rest), c = 0;
	for (size_t i = 0; i < n; i++)
		for (unsigned k = 0; k < nstacks; k++)
			if (same_stack(&stacks[k], t[i].pc, t[i].npcs))
				c += t[i].objects;
	return c;
}

/* Reads the records of an object a churner is handing on: it may be freed
 * or reused meanwhile, so any answer goes, but the read must be clean. */
static void read_handed(unsigned round)
{
	uintptr_t p = atomic_load(&churn.handed[round % CHURNERS]);
	struct spanheap_track a, f;
	if (p)
		(void)spanheap_object_tracks(&sh, (void *)p, &a, &f);
}

/* Under ThreadSanitizer the reader walks every span (the traces, a
 * churner's object) only once the churners are done: such a walk reads
 * side tables of spans freed meanwhile, whose pages the heap hands out
 * again for their new owner to write as it likes, and throws what it
 * read away when the span is no longer the same (span_same), a read TSan
 * cannot tell from a race (a CI run's TSan build caught a new table's
 * plain initialization under one). In the kernel such reads run under
 * the fault hook. The reader's own objects' spans live throughout, and
 * their records are read while the churners run in every build. */
#if defined(__SANITIZE_THREAD__)
#define WALKS_WHILE_CHURNING 0
#else
#define WALKS_WHILE_CHURNING 1
#endif

KTEST(spanheap_track_stress, records_read_true_while_threads_churn)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = true;
	sc.guard_slots = 8;
	sc.guard_interval = 4;
	KASSERT(sh_heap_fresh_with(&heap, &sh, &sc));
	KASSERT(sh.track);
	uint64_t t0 = mm_port_now_ns();
	static void *own[OWN];
	for (unsigned i = 0; i < OWN; i++)
		KASSERT(own[i] = own_site(24 + 8 * (i % 4)));
	nstacks = 0;
	for (unsigned i = 0; i < OWN; i++)
		KASSERT(note_stack(own[i]));
	KASSERT(spanheap_sweeper_start(&sh));
	KASSERT(churn_start(&churn));
	unsigned bad = 0, miscounted = 0, round = 0;
	for (; round < ROUNDS || churn_running(&churn); round++) {
		for (unsigned i = 0; i < OWN; i++)
			bad += !records_true(own[i], t0);
		if (WALKS_WHILE_CHURNING) {
			miscounted += counted_own() != OWN;
			read_handed(round);
		}
	}
	churn_finish(&churn);
	miscounted += counted_own() != OWN; /* and once they are done */
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(miscounted, 0);
	unsigned guarded = 0;
	for (unsigned i = 0; i < OWN; i++)
		guarded += spanheap_guard_owns(&sh.guard, own[i]);
	ktest_diag("%u rounds while %d threads churned; %u of the reader's "
	           "objects guarded, %u stacks",
	           round, (int)CHURNERS, guarded, nstacks);
	for (unsigned i = 0; i < OWN; i++)
		spanheap_free(&sh, own[i]);
	spanheap_sweeper_stop(&sh);
	sh_flush_cpus(&sh, CHURNERS + 1);
	spanheap_check(&sh);
	mheap_check(&heap);
	spanheap_guard_drain(&sh);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}
