/*
 * Two races of the span heap under threads (mm/spanheap*.c through the
 * POSIX port), built for ThreadSanitizer too (make test-tsan): the
 * statistics reading every CPU's magazines while CPUs make them, and a
 * thread held after it sized the all-spans array while others replace it
 * twice. The workers' stress is spanheap_stress_test.c's.
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/*
 * spanheap_stats reads every CPU's magazines while CPUs make them: one
 * thread takes each CPU in turn and frees an object there, that CPU's
 * first free, which makes its slab, while this one reads the statistics
 * in a loop. Under ThreadSanitizer a plain store of a slab pointer that
 * the statistics read is a reported race. At the end the magazines hold
 * the objects freed, and what CPU 0's refill put into its own (mag_fill).
 *
 * The reader counts each read as started before it reads, and the maker
 * makes each slab only once a read has started since the last one: that
 * read (the maker knows only that it began) reads the new slab pointer
 * with nothing ordering it after the store but the store itself. Without
 * the handshake the maker often finished before the first read, and the
 * plain store went unreported in 1 to 5 of 10 runs. Several rounds, each
 * on a new heap, as a CPU makes its slab only once.
 */
enum { SLAB_CPUS = MM_MAX_CPUS < 8 ? MM_MAX_CPUS : 8, SLAB_ROUNDS = 4 };
static void *slab_objs[SLAB_CPUS];
static _Atomic int slabs_done;
static _Atomic unsigned long reads_started;

static void *slab_maker(void *arg)
{
	(void)arg;
	unsigned long seen = atomic_load(&reads_started);
	for (unsigned cpu = 1; cpu < SLAB_CPUS; cpu++) {
		while (atomic_load(&reads_started) == seen)
			sched_yield();
		mm_port_set_cpu(cpu);
		spanheap_free(&sh, slab_objs[cpu]);
		seen = atomic_load(&reads_started);
	}
	atomic_store(&slabs_done, 1);
	return NULL;
}

KTEST(spanheap_stress, stats_while_cpus_make_their_slabs)
{
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	unsigned long reads = 0;
	for (int round = 0; round < SLAB_ROUNDS; round++) {
		KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
		mm_port_set_cpu(0);
		for (unsigned i = 1; i < SLAB_CPUS; i++)
			KASSERT(slab_objs[i] = spanheap_alloc(&sh, 64, 0));
		/* CPU 0's refill made its slab, and put objects into its
		 * magazine (mag_fill). */
		spanheap_stats(&sh, st);
		size_t objs0 = st->mag_objects;
		size_t slabs0 = atomic_load(&sh.mag_slabs);
		KEXPECT_EQ(slabs0, 1);
		atomic_store(&slabs_done, 0);
		atomic_store(&reads_started, 0);
		pthread_t t;
		KASSERT(pthread_create(&t, NULL, slab_maker, NULL) == 0);
		unsigned long n = 0;
		while (!atomic_load(&slabs_done)) {
			atomic_fetch_add(&reads_started, 1);
			spanheap_stats(&sh, st);
			n++;
		}
		pthread_join(t, NULL);
		/* Each slab waited for a read to start. */
		KEXPECT(n >= SLAB_CPUS - 1);
		reads += n;
		spanheap_stats(&sh, st);
		KEXPECT_EQ(st->mag_objects, objs0 + SLAB_CPUS - 1);
		KEXPECT_EQ(atomic_load(&sh.mag_slabs), slabs0 + SLAB_CPUS - 1);
		SH_CHECK(&sh, "after the slabs were made");
		sh_heap_release(&heap, &sh);
	}
	KEXPECT(reads > 0);
	ktest_diag("%d rounds of %u slabs made during %lu reads of the "
	           "statistics",
	           SLAB_ROUNDS, SLAB_CPUS - 1, reads);
	free(st);
}

/*
 * The all-spans array grows while a thread that sized its own bigger one
 * waits to put it in place: here the others replace the array twice
 * meanwhile, so what the waiter made is too small for what is there now.
 * It must give it back and try again; it copied past its end until a
 * review found it (the objects the others made meanwhile were written
 * over with span pointers). The waiter is held at the heap's test hook.
 */
enum { BIG = 40 << 10 }; /* a large span: one span struct each */
static sem_t sized, resume;
/* The hook point the grower is held at, set before its thread starts. */
static enum mheap_hook_point hold_point;
/* Set by the waiter itself before its allocation: set by the test after
 * the thread's start, the thread could pass the hook first, and the test
 * then waited for ever (once in the TSan build). */
static _Thread_local bool hold_here;

static void hold_at_point(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != hold_point || !hold_here)
		return;
	hold_here = false;
	sem_post(&sized);
	sem_wait(&resume);
}

static void *held_grower(void *arg)
{
	mm_port_set_cpu(1);
	hold_here = true;
	*(void **)arg = spanheap_alloc(&sh, BIG, 0);
	return NULL;
}

/* Starts a thread whose allocation grows the all-spans array, and
 * returns once it is held at point; its object will be in *theirs. */
static void start_held_grower(enum mheap_hook_point point, pthread_t *t,
                              void **theirs)
{
	sem_init(&sized, 0, 0);
	sem_init(&resume, 0, 0);
	hold_point = point;
	mheap_test_hook = hold_at_point;
	KASSERT(pthread_create(t, NULL, held_grower, theirs) == 0);
	sem_wait(&sized);
}

/* Lets the held grower go on, and waits for it. */
static void finish_held_grower(pthread_t t)
{
	sem_post(&resume);
	pthread_join(t, NULL);
	mheap_test_hook = NULL;
}

/* The held-grower cases' heap: fresh, its next span growing the
 * all-spans array (of capacity cap0), the objects that filled it in
 * objs[0..n), and a grower thread held at a point, its object to come
 * in theirs. */
static struct {
	void *objs[8192];
	size_t n, cap0;
	pthread_t t;
	void *theirs;
} hc;

static bool held_case_start(enum mheap_hook_point point)
{
	if (!sh_heap_new(&heap, &sh, SH_ARENA_BYTES))
		return false;
	mm_port_set_cpu(0);
	hc.n = 0;
	hc.theirs = NULL;
	if (!sh_fill_until_growth(&sh, BIG, hc.objs, 8192, &hc.n))
		return false;
	hc.cap0 = sh.spans->cap;
	start_held_grower(point, &hc.t, &hc.theirs);
	return true;
}

/* After the grower's end: the heap checked, every object freed. */
static void held_case_end(const char *when)
{
	SH_CHECK(&sh, when);
	for (size_t i = 0; i < hc.n; i++)
		spanheap_free(&sh, hc.objs[i]);
	spanheap_free(&sh, hc.theirs);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_stress, spans_array_replaced_twice_meanwhile)
{
	/* The structs used up: the next span makes the array grow. */
	KASSERT(held_case_start(MHEAP_HOOK_SPANS_SIZED));
	/* Replaced twice (past the waiter's), and full again. */
	size_t first = hc.n;
	while (!(sh.spans->cap > 3 * hc.cap0 &&
	         sh_spans_must_grow(&sh, false))) {
		KASSERT(hc.n < 8192 &&
		        (hc.objs[hc.n] = spanheap_alloc(&sh, BIG, 0)));
		memset(hc.objs[hc.n], 0xab, BIG);
		hc.n++;
	}
	finish_held_grower(hc.t);
	KEXPECT(hc.theirs != NULL);
	KEXPECT(sh.spans->len <= sh.spans->cap);
	size_t bad = 0;
	for (size_t i = first; i < hc.n; i++)
		for (size_t k = 0; k < BIG; k += 8)
			bad += ((unsigned char *)hc.objs[i])[k] != 0xab;
	KEXPECT_EQ(bad, 0);
	ktest_diag("array cap %zu -> %zu while the waiter held one sized "
	           "from %zu; %zu objects made meanwhile",
	           hc.cap0, sh.spans->cap, hc.cap0, hc.n - first);
	held_case_end("after the waiter");
}

/*
 * The case above, the array the others put in place then filled to the
 * last entry (atomic allocations, which grow it only when full): the
 * waiter's array cannot replace it, and its page of structs finds no room
 * either, so both go back to the metadata heap they came from, and the
 * waiter tries again. A mutation audit found this path untested (the page
 * given to the object heap instead survived): with it this test dies
 * (ASan: SEGV in mheap_span_set, a write past the object heap's span
 * table for a page of the metadata arena).
 */
KTEST(spanheap_stress, spans_array_replaced_and_full_meanwhile)
{
	/* The structs used up: the next span makes the array grow. */
	KASSERT(held_case_start(MHEAP_HOOK_SPANS_SIZED));
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	size_t meta_held = ms.in_use_pages; /* the waiter's page and array */
	while (!(sh.spans->cap > 3 * hc.cap0 &&
	         sh_spans_must_grow(&sh, false))) {
		KASSERT(hc.n < 8192 &&
		        (hc.objs[hc.n] = spanheap_alloc(&sh, BIG, 0)));
		hc.n++;
	}
	while (!sh_spans_must_grow(&sh, true)) {
		KASSERT(hc.n < 8192 &&
		        (hc.objs[hc.n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		hc.n++;
	}
	size_t cap1 = sh.spans->cap;
	KEXPECT(cap1 >
	        2 * hc.cap0); /* the waiter's array, 2 * hc.cap0, too small */
	KEXPECT(sh.spans->len + SH_STRUCTS_PER_PAGE > cap1); /* full */
	finish_held_grower(hc.t);
	KEXPECT(hc.theirs != NULL);
	KEXPECT(sh.spans->cap > cap1); /* the waiter's retry grew it */
	KEXPECT(sh.spans->len <= sh.spans->cap);
	mheap_stats(&sh.meta, &ms);
	ktest_diag("array cap %zu -> %zu (full) while the waiter held one "
	           "sized from %zu; metadata pages in use %zu, then %zu",
	           hc.cap0, cap1, hc.cap0, meta_held, ms.in_use_pages);
	held_case_end("after the waiter");
}

/*
 * Structs made between a grower's unlocked copy of the all-spans array and
 * its taking of the lock: it copies those under the lock, and its array,
 * put in place, holds every struct there is, in order. The grower is held
 * at the heap's test hook after its copy; meanwhile atomic allocations
 * (which grow the array only when it is full) add a page of structs to
 * the live array without replacing it.
 */
KTEST(spanheap_stress, spans_made_between_the_copy_and_the_lock)
{
	/* The structs used up: the next span makes the array grow. */
	KASSERT(held_case_start(MHEAP_HOOK_SPANS_COPIED));
	size_t len0 = sh.spans->len;
	while (sh.spans->len == len0) {
		KASSERT(hc.n < 8192 &&
		        (hc.objs[hc.n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		hc.n++;
	}
	KEXPECT_EQ(sh.spans->cap, hc.cap0);
	finish_held_grower(hc.t);
	KEXPECT(hc.theirs != NULL);
	KEXPECT(sh.spans->cap > hc.cap0);
	KEXPECT(sh.spans_copied_locked_max > 0);
	size_t holes = 0;
	for (size_t i = 0; i < sh.spans->len; i++)
		holes += sh.spans->v[i] == NULL;
	KEXPECT_EQ(holes, 0);
	ktest_diag("%zu entries copied under the lock",
	           sh.spans_copied_locked_max);
	held_case_end("after the grower");
}
