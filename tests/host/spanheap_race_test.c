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

KTEST(spanheap_stress, spans_array_replaced_twice_meanwhile)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	static void *objs[8192];
	size_t n = 0;
	/* Use the structs up: the next span makes the array grow. */
	KASSERT(sh_fill_until_growth(&sh, BIG, objs, 8192, &n));
	size_t cap0 = sh.spans->cap;
	pthread_t t;
	void *theirs = NULL;
	start_held_grower(MHEAP_HOOK_SPANS_SIZED, &t, &theirs);
	/* Replaced twice (past the waiter's), and full again. */
	size_t first = n;
	while (!(sh.spans->cap > 3 * cap0 && sh_spans_must_grow(&sh, false))) {
		KASSERT(n < 8192 && (objs[n] = spanheap_alloc(&sh, BIG, 0)));
		memset(objs[n], 0xab, BIG);
		n++;
	}
	finish_held_grower(t);
	KEXPECT(theirs != NULL);
	KEXPECT(sh.spans->len <= sh.spans->cap);
	size_t bad = 0;
	for (size_t i = first; i < n; i++)
		for (size_t k = 0; k < BIG; k += 8)
			bad += ((unsigned char *)objs[i])[k] != 0xab;
	KEXPECT_EQ(bad, 0);
	ktest_diag("array cap %zu -> %zu while the waiter held one sized "
	           "from %zu; %zu objects made meanwhile",
	           cap0, sh.spans->cap, cap0, n - first);
	SH_CHECK(&sh, "after the waiter");
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_free(&sh, theirs);
	sh_heap_release(&heap, &sh);
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
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	static void *objs[8192];
	size_t n = 0;
	KASSERT(sh_fill_until_growth(&sh, BIG, objs, 8192, &n));
	size_t cap0 = sh.spans->cap;
	pthread_t t;
	void *theirs = NULL;
	start_held_grower(MHEAP_HOOK_SPANS_SIZED, &t, &theirs);
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	size_t meta_held = ms.in_use_pages; /* the waiter's page and array */
	while (!(sh.spans->cap > 3 * cap0 && sh_spans_must_grow(&sh, false))) {
		KASSERT(n < 8192 && (objs[n] = spanheap_alloc(&sh, BIG, 0)));
		n++;
	}
	while (!sh_spans_must_grow(&sh, true)) {
		KASSERT(n < 8192 &&
		        (objs[n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		n++;
	}
	size_t cap1 = sh.spans->cap;
	KEXPECT(cap1 > 2 * cap0); /* the waiter's array, 2 * cap0, too small */
	KEXPECT(sh.spans->len + SH_STRUCTS_PER_PAGE > cap1); /* full */
	finish_held_grower(t);
	KEXPECT(theirs != NULL);
	KEXPECT(sh.spans->cap > cap1); /* the waiter's retry grew it */
	KEXPECT(sh.spans->len <= sh.spans->cap);
	mheap_stats(&sh.meta, &ms);
	ktest_diag("array cap %zu -> %zu (full) while the waiter held one "
	           "sized from %zu; metadata pages in use %zu, then %zu",
	           cap0, cap1, cap0, meta_held, ms.in_use_pages);
	SH_CHECK(&sh, "after the waiter");
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_free(&sh, theirs);
	sh_heap_release(&heap, &sh);
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
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	static void *objs[8192];
	size_t n = 0;
	KASSERT(sh_fill_until_growth(&sh, BIG, objs, 8192, &n));
	size_t cap0 = sh.spans->cap;
	pthread_t t;
	void *theirs = NULL;
	start_held_grower(MHEAP_HOOK_SPANS_COPIED, &t, &theirs);
	size_t len0 = sh.spans->len;
	while (sh.spans->len == len0) {
		KASSERT(n < 8192 &&
		        (objs[n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		n++;
	}
	KEXPECT_EQ(sh.spans->cap, cap0);
	finish_held_grower(t);
	KEXPECT(theirs != NULL);
	KEXPECT(sh.spans->cap > cap0);
	KEXPECT(sh.spans_copied_locked_max > 0);
	size_t holes = 0;
	for (size_t i = 0; i < sh.spans->len; i++)
		holes += sh.spans->v[i] == NULL;
	KEXPECT_EQ(holes, 0);
	ktest_diag("%zu entries copied under the lock",
	           sh.spans_copied_locked_max);
	SH_CHECK(&sh, "after the grower");
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	spanheap_free(&sh, theirs);
	sh_heap_release(&heap, &sh);
}
