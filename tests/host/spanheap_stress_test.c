/*
 * The span heap under threads (mm/spanheap*.c through the POSIX port),
 * built for ThreadSanitizer too (make test-tsan): four worker threads,
 * each a CPU of its own (two bound to theirs for good, two pinning at
 * each call: mm_port_bind_cpu), allocate objects of random sizes (large ones
 * too, some MM_ZERO, some MM_ATOMIC in simulated atomic context; half
 * of those without MM_ZERO through spanheap_alloc_sized), fill each
 * with a pattern of its owner and address, and free them, a quarter handed
 * through a locked inbox to the next worker to free (cross-thread frees, the
 * pending path), while the sweeper thread and the page heap's scavenger run
 * and, now and then, a worker flushes its cache, passes an idle loop's
 * call (spanheap_cpu_idle: its cache goes back if a cycle began since
 * its last flush), runs a sweep cycle or a release-all. Every pattern is
 * checked before its free. The same again in poison mode (spanheap_config.h),
 * where every free poisons its object and every reuse checks it.
 *
 * Two rounds: a warm-up, then the measured one, in which the sweeper and
 * the scavenger start while the workers already run. After each, every worker
 * has flushed its cache before exiting, the leftovers are freed, and
 * release-all runs with the sweeper and scavenger still going; then they
 * stop, spanheap_check runs, and the page heap's pages in use must be the
 * span heap's own bookkeeping alone (span-struct pages and the all-spans
 * array), which after the warm-up is the baseline. The run is bounded by
 * operation counts; no assert depends on time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "port_test_util.h"
#include "stress_util.h"
#include "spanheap_test_util.h"

enum {
	WORKERS = 4,
	OPS = 40000, /* per worker and round */
	LIVE = 48,   /* objects a worker holds at most */
	INBOX = 96,  /* objects handed over, waiting to be freed */
	FLUSH_EVERY = 700,
	IDLE_EVERY = 97,      /* an idle loop's pass: spanheap_cpu_idle */
	SWEEP_EVERY = 1500,   /* worker 1 */
	RELEASE_EVERY = 4000, /* worker 2 */
};

/* Under ThreadSanitizer the poison round runs a quarter of the
 * operations: its fills and checks of every object, large ones included,
 * are plain loops TSan instruments byte by byte, and it took 30 s of a
 * make test (the plain round 9). The same paths race as often per
 * operation; the ASan build runs them all. */
#if defined(__SANITIZE_THREAD__)
#define POISON_OPS (OPS / 4)
#else
#define POISON_OPS OPS
#endif

/* Operations per worker and round in this run: OPS or POISON_OPS. */
static int ops;

struct obj {
	uintptr_t p;
	size_t size;
	int owner; /* the worker that allocated and filled it */
};

struct worker {
	int id;
	uint64_t rng;
	struct obj live[LIVE];
	/* Objects handed to this worker by the previous one: */
	struct stress_inbox inbox;
	struct obj inbox_items[INBOX];
	/* What the worker saw, read after it is joined: */
	unsigned long allocs, frees, handed, large, refused;
	struct stress_failures failures;
};

static struct mheap heap;
static struct spanheap sh;
static struct worker workers[WORKERS];

/* Mostly small: up to 1 KiB half the time, up to 32 KiB 7/16, large
 * (up to 256 KiB) 1/16. */
static size_t random_size(uint64_t *rng)
{
	uint64_t r = stress_random(rng);
	unsigned kind = r % 16;
	r >>= 4;
	if (kind < 8)
		return r % (SC_SMALL_MAX + 1);
	if (kind < 15)
		return r % (SC_MAX_SIZE + 1);
	return SC_MAX_SIZE + 1 + r % (7 * SC_MAX_SIZE);
}

/* The pattern word at off; written every stride bytes. */
static uint64_t pattern(const struct obj *o, size_t off)
{
	return ((uint64_t)o->owner << 56) ^ o->p ^ off;
}

static size_t stride(const struct obj *o)
{
	return o->size > 4096 ? 256 : 8;
}

static void fill(const struct obj *o)
{
	for (size_t off = 0; off + 8 <= o->size; off += stride(o))
		*(uint64_t *)(o->p + off) = pattern(o, off);
}

/* Records a failed check of w's. */
#define fail(w, ...) stress_fail(&(w)->failures, __VA_ARGS__)

/* Checks o's pattern, then frees it. */
static void check_and_free(struct worker *w, const struct obj *o)
{
	for (size_t off = 0; off + 8 <= o->size; off += stride(o)) {
		uint64_t got = *(uint64_t *)(o->p + off);
		if (got != pattern(o, off)) {
			fail(w,
			     "object %#lx of %zu bytes of worker %d: word at "
			     "+%zu is %#lx",
			     (unsigned long)o->p, o->size, o->owner, off,
			     (unsigned long)got);
			break;
		}
	}
	spanheap_free(&sh, (void *)o->p);
	w->frees++;
}

/* Hands o to the next worker; false if its inbox is full. */
static bool hand_over(struct worker *w, const struct obj *o)
{
	bool ok = stress_inbox_put(&workers[(w->id + 1) % WORKERS].inbox, o);
	w->handed += ok;
	return ok;
}

static void drain_inbox(struct worker *w)
{
	struct obj got[INBOX];
	size_t n = stress_inbox_take(&w->inbox, got);
	for (size_t i = 0; i < n; i++)
		check_and_free(w, &got[i]);
}

static void one_op(struct worker *w, int op)
{
	struct obj *o = &w->live[stress_random(&w->rng) % LIVE];
	if (o->p) {
		if (stress_random(&w->rng) % 4 != 0 || !hand_over(w, o))
			check_and_free(w, o);
		o->p = 0;
		return;
	}
	size_t size = random_size(&w->rng);
	uint64_t r = stress_random(&w->rng);
	unsigned flags = (r % 4 == 0 ? MM_ZERO : 0) |
	                 ((r >> 2) % 8 == 0 ? MM_ATOMIC : 0);
	/* An atomic caller runs as an interrupt handler would. */
	mm_port_set_atomic(flags & MM_ATOMIC);
	/* Half the calls without MM_ZERO take spanheap_alloc_sized, as the
	 * kernel's kmalloc with constant flags does. */
	bool sized = !(flags & MM_ZERO) && (r >> 5) % 2;
	char *p = sized ? spanheap_alloc_sized(&sh, size, flags)
	                : spanheap_alloc(&sh, size, flags);
	mm_port_set_atomic(false);
	if (!p && (flags & MM_ATOMIC)) {
		w->refused++; /* it may not wait for memory */
		return;
	}
	if (!p) {
		fail(w, "op %d: alloc of %zu bytes failed", op, size);
		return;
	}
	if (flags & MM_ZERO)
		for (size_t i = 0; i < size; i += 61)
			if (p[i]) {
				fail(w,
				     "op %d: %p (%zu bytes) not zeroed at %zu",
				     op, (void *)p, size, i);
				break;
			}
	*o = (struct obj){(uintptr_t)p, size, w->id};
	fill(o);
	w->allocs++;
	w->large += size > SC_MAX_SIZE;
}

static void work(void *arg)
{
	struct worker *w = arg;
	/* Workers 0 and 2 bind a CPU of their own (8 + id: no other thread
	 * pins it), as the benchmarks' threads do, so the fast paths' pin
	 * names it and their magazine ways run; 1 and 3 pin at each call,
	 * through the fast paths' pin that names no CPU and their slow
	 * paths. */
	bool bound = w->id % 2 == 0;
	if (bound)
		mm_port_bind_cpu(8 + (unsigned)w->id);
	else
		mm_port_set_cpu((unsigned)w->id);
	for (int op = 0; op < ops; op++) {
		one_op(w, op);
		if (op % 8 == 0)
			drain_inbox(w);
		if (op % FLUSH_EVERY == FLUSH_EVERY - 1)
			spanheap_flush_cache(&sh);
		if (op % IDLE_EVERY == IDLE_EVERY - 1)
			spanheap_cpu_idle(&sh);
		if (w->id == 1 && op % SWEEP_EVERY == SWEEP_EVERY - 1)
			spanheap_sweep_cycle(&sh);
		if (w->id == 2 && op % RELEASE_EVERY == RELEASE_EVERY - 1)
			spanheap_release_all(&sh);
	}
	for (int i = 0; i < LIVE; i++)
		if (w->live[i].p)
			check_and_free(w, &w->live[i]);
	drain_inbox(w);
	spanheap_flush_cache(&sh);
	if (bound)
		mm_port_unbind_cpu();
}

static bool start_background(void)
{
	return spanheap_sweeper_start(&sh) && mheap_scavenger_start(&heap);
}

static void stop_background(void)
{
	spanheap_sweeper_stop(&sh);
	mheap_scavenger_stop(&heap);
}

/* What the workers did, over the rounds. */
struct totals {
	unsigned long allocs, handed, large, refused;
};

/*
 * One round: the sweeper and the scavenger start (before the workers, or
 * with late_start while they run), the workers run and exit, the leftovers
 * are freed, release-all runs with the background threads going, then
 * they stop. Returns the pages in use then of the page heap and the
 * metadata heap (SIZE_MAX if a thread did not start); *kept gets the span
 * heap's own.
 */
static size_t round_run(struct totals *tot, size_t *kept, bool late_start)
{
	struct mm_thread *t[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		workers[i].rng =
		        0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + tot->allocs;
		workers[i].inbox.n = 0;
		workers[i].allocs = workers[i].handed = workers[i].large = 0;
		workers[i].refused = 0;
		memset(workers[i].live, 0, sizeof(workers[i].live));
	}
	bool started = late_start || start_background();
	if (!started || !start_all(t, WORKERS, work, workers, sizeof(*workers)))
		return SIZE_MAX;
	if (late_start)
		started = start_background();
	join_all(t, WORKERS);
	if (!started)
		return SIZE_MAX;
	/* Objects handed to a worker after it drained its inbox for the
	 * last time; no worker runs now. */
	for (int i = 0; i < WORKERS; i++) {
		mm_port_set_cpu((unsigned)i);
		drain_inbox(&workers[i]);
		spanheap_flush_cache(&sh);
	}
	mm_port_set_cpu(0);
	spanheap_release_all(&sh);
	stop_background();
	for (int i = 0; i < WORKERS; i++) {
		tot->allocs += workers[i].allocs;
		tot->handed += workers[i].handed;
		tot->large += workers[i].large;
		tot->refused += workers[i].refused;
	}
	*kept = sh_kept_pages(&sh);
	/* Both heaps': the span heap's own pages are its metadata heap's. */
	return sh_in_use_pages(&heap) + sh_in_use_pages(&sh.meta);
}

static void report_failures(void)
{
	for (int i = 0; i < WORKERS; i++) {
		struct worker *w = &workers[i];
		STRESS_REPORT(i, &w->failures);
	}
}

/* The heaps' configurations: the scavenger and the sweeper as busy as
 * they can be, so that they race the workers as often as possible. */
static void stress_configs(struct mheap_config *hc, struct spanheap_config *sc,
                           bool poison)
{
	mheap_config_default(hc);
	hc->arena_bytes = SH_ARENA_BYTES;
	hc->goal_percent = 0;    /* every free backed page is work */
	hc->cpu_permille = 1000; /* and the scavenger never pauses */
	spanheap_config_default(sc);
	sc->min_pending_bytes = 64 << 10; /* cycles start often */
	sc->period_ns = 5 * MS;
	sc->poison = poison;
	/* The sweeper's visits of stale caches (the hosted malloc's) race
	 * the workers too: the unbound ones' caches are handed back under
	 * them; the bound ones' CPUs are passed by. */
	sc->flush_quiet_cpus = true;
}

static void workers_init(void)
{
	for (int i = 0; i < WORKERS; i++) {
		workers[i] = (struct worker){.id = i};
		stress_inbox_init(&workers[i].inbox, workers[i].inbox_items,
		                  sizeof(workers[i].inbox_items[0]), INBOX);
	}
}

/* After both rounds: st, the span heap's statistics, show every object
 * freed and every path the workers meant to take taken. */
static void expect_all_freed(const struct spanheap_stats *st, struct totals tot,
                             bool poison)
{
	KEXPECT_EQ(st->spans, 0);
	KEXPECT_EQ(st->bytes_in_use, 0);
	/* Every magazine flushed; a small object's free reached its span by
	 * one path or the other, unless a magazine handed it out again. */
	KEXPECT_EQ(st->mag_objects, 0);
	KEXPECT(st->local_frees + st->remote_frees <= tot.allocs - tot.large);
	KEXPECT_EQ(st->n.large_allocs, tot.large);
	KEXPECT_EQ(st->n.large_frees, tot.large);
	KEXPECT(st->remote_frees > 0);
	KEXPECT(st->n.cycles > 0);
	/* Poison mode keeps no magazines (every object checked at reuse). */
	KEXPECT_EQ(atomic_load(&sh.mag_slabs) == 0, poison);
	KEXPECT(tot.handed > 0);
}

/* The two rounds on a heap in poison mode or not; see the top. */
static void stress_run(bool poison)
{
	struct mheap_config hc;
	struct spanheap_config sc;
	stress_configs(&hc, &sc, poison);
	ops = poison ? POISON_OPS : OPS;
	KASSERT(sh_heap_new_with(&heap, &sh, &hc, &sc));
	workers_init();
	mm_port_set_quiet(true); /* the scavenger's "at goal" lines */
	struct totals tot = {0};
	size_t kept0 = 0, kept = 0;
	uint64_t t0 = mm_port_now_ns();

	size_t baseline = round_run(&tot, &kept0, false);
	KASSERT(baseline != SIZE_MAX);
	SH_CHECK(&sh, "after the warm-up");
	KEXPECT_EQ(baseline, kept0);

	size_t end = round_run(&tot, &kept, true);
	KASSERT(end != SIZE_MAX);
	uint64_t ms = (mm_port_now_ns() - t0) / MS;
	mm_port_set_quiet(false);
	SH_CHECK(&sh, "after the measured round");
	report_failures();

	/* Back to the baseline, but for bookkeeping the second round's
	 * peak may have added (span structs are never freed). */
	KEXPECT_EQ(end, kept);
	KEXPECT_EQ(end - baseline, kept - kept0);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	expect_all_freed(st, tot, poison);
	ktest_diag(
	        "%d ops on %d CPUs in %lu ms: %lu allocs (%lu large, %lu "
	        "atomic refused), %lu cross frees; frees %lu local, %lu "
	        "remote; %lu sweep "
	        "cycles, %lu spans swept by cycles, %lu on demand, "
	        "%lu freed; %lu idle flushes; %lu caches in %lu visits; "
	        "sweeper CPU %lu us; "
	        "scavenger %lu pages; "
	        "in use %zu -> %zu pages (bookkeeping %zu -> %zu)",
	        2 * WORKERS * ops, WORKERS, (unsigned long)ms, tot.allocs,
	        tot.large, tot.refused, tot.handed,
	        (unsigned long)st->local_frees, (unsigned long)st->remote_frees,
	        (unsigned long)st->n.cycles, (unsigned long)st->n.swept_spans,
	        (unsigned long)st->n.demand_swept,
	        (unsigned long)st->n.freed_spans,
	        (unsigned long)st->n.idle_flushes,
	        (unsigned long)st->n.quiet_flushes,
	        (unsigned long)st->n.quiet_visits,
	        (unsigned long)(st->n.sweeper_cpu_ns / 1000),
	        (unsigned long)st->heap.n.bg_pages, baseline, end, kept0, kept);
	free(st);
	for (int i = 0; i < WORKERS; i++)
		stress_inbox_destroy(&workers[i].inbox);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_stress, threads)
{
	stress_run(false);
}

/* The same in poison mode: every free from any thread poisons its object
 * and every reuse checks it, with the sweeper and the scavenger running;
 * no report may come of it, and spanheap_check checks the free objects'
 * poison at the end of each round. */
KTEST(spanheap_stress, threads_poison)
{
	stress_run(true);
}
