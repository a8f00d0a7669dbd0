/*
 * mm/spanheap_stats.c: what the span heap holds, per size class and in
 * all (spanheap_stats), and the slabinfo-style dump (spanheap_dump).
 *
 * Purpose: the numbers a shell, a test or a benchmark reads, without
 * stopping the heap. Modelled on Linux's /proc/slabinfo and the Go
 * runtime's MemStats.
 *
 * Representation: nothing of its own. Objects in use are counted from the
 * spans' bitmaps over a snapshot of the all-spans array (invariant 2 in
 * spanheap.c), only its structs in use (the span-struct allocator's
 * in-use bitmap, spanheap_structs.c: until a review every struct the
 * heap ever made was read, the heap's peak), less the objects in the
 * CPUs' magazines (freed, though
 * their spans count them allocated); the rest comes from the per-class,
 * per-CPU and heap counters.
 *
 * Invariants: none kept here; in the result a class's objects in use are
 * never below 0 nor above its spans' capacity. The walk and the per-class
 * reads that follow it are not one atomic read, and two clamps keep a
 * count read mid-change in range: the magazines may hold more objects
 * than the walk saw allocated (a refill since), and the walk may have
 * counted objects of spans swept away since (host tests
 * spanheap_stats.*, at MHEAP_HOOK_STATS_WALKED). Frees are counted from
 * the walk's bits until folded, then from the classes' counters read
 * after it: a fold between them counted the same frees twice (review),
 * so the walk runs again (up to SPANHEAP_STATS_WALKS times) when the folded
 * counts moved during it.
 *
 * Locking: the heap's lock only to take the snapshot and to copy the
 * counters it guards; the walk and the magazines are read without a lock.
 * Thread context.
 *
 * Limits: exact only when nothing allocates or frees meanwhile.
 */
#include "spanheap_internal.h"

/*
 * Objects in use per class, and frees not folded yet, from the spans'
 * bitmaps (a walk of a snapshot; exact when nothing changes meanwhile).
 */
static void count_objects(struct spanheap *sh, size_t in_use[SC_NCLASSES],
                          uint64_t *local, uint64_t *remote)
{
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	for (size_t i = spanheap_snapshot_next_inuse(&snap, 0); i < snap.len;
	     i = spanheap_snapshot_next_inuse(&snap, i + 1)) {
		struct mspan *s = snap.arr->v[i];
#ifdef MM_TEST_HOOKS
		atomic_fetch_add_explicit(&spanheap_test_spans_walked, 1,
		                          memory_order_relaxed);
#endif
		if (atomic_load_explicit(&s->state, memory_order_acquire) !=
		    MSPAN_SMALL)
			continue;
		unsigned cls = __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED);
		uint32_t fi = atomic_load_explicit(&s->freeindex,
		                                   memory_order_acquire);
		/* Relaxed atomic, as sizeclass: the struct may be made
		 * anew meanwhile (span_init_locked), and a plain read
		 * raced with its write (make test-malloc-tsan). */
		uint32_t n = __atomic_load_n(&s->nelems, __ATOMIC_RELAXED);
		if (cls == 0 || cls >= SC_NCLASSES || n > SC_MAX_NELEMS)
			continue; /* reused meanwhile */
		for (unsigned w = 0; w * 64 < n; w++) {
			uint64_t m = spanheap_bits_below(n, w);
			uint64_t pre = spanheap_bits_below(fi, w);
			uint64_t a =
			        (atomic_load_explicit(&s->alloc_bits[w],
			                              memory_order_relaxed) |
			         pre) &
			        m;
			uint64_t l = atomic_load_explicit(&s->local_free[w],
			                                  memory_order_relaxed);
			uint64_t p = atomic_load_explicit(&s->pending[w],
			                                  memory_order_relaxed);
			in_use[cls] += pallocbits_popcount(a & ~(l | p));
			*local += pallocbits_popcount(l);
			*remote += pallocbits_popcount(p);
		}
	}
	spanheap_snapshot_put(sh, &snap);
}

/* Objects in every CPU's magazines into each class's cs->mag_objects,
 * and the magazines' sizes into cs->mag_room: a CPU at a time, and only
 * the CPUs that have a slab of magazines (made at their first refill or
 * free). Until a review every class looked at every CPU's magazine,
 * slab or none: 64 x 63 reads, 8 us a mallinfo2 of a one-thread program
 * against glibc's 0.1 (tools/bench-cliffs). */
static void count_mags(struct spanheap *sh, struct spanheap_stats *st)
{
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++) {
		uintptr_t *slab = __atomic_load_n(&sh->caches[cpu].slab,
		                                  __ATOMIC_ACQUIRE);
		if (!slab)
			continue;
#ifdef MM_TEST_HOOKS
		atomic_fetch_add_explicit(&spanheap_test_mags_read,
		                          SC_NCLASSES - 1,
		                          memory_order_relaxed);
#endif
		for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
			/* Read while the owner changes them: a top or a
			 * limit not (yet) in the slab counts nothing. */
			struct spanheap_class_stats *cs = &st->cls[cls];
			struct mmag *m = &sh->caches[cpu].mag[cls];
			uintptr_t *t =
			        __atomic_load_n(&m->top, __ATOMIC_RELAXED);
			uintptr_t *l =
			        __atomic_load_n(&m->limit, __ATOMIC_RELAXED);
			uintptr_t *base =
			        slab + sh->mag_off[cls]; /* mag_base */
			uintptr_t *end = base + sh->mag_max[cls];
			if (t >= base && t <= end)
				cs->mag_objects += (size_t)(t - base);
			if (l >= base && l <= end)
				cs->mag_room += (size_t)(l - base);
		}
	}
}

/*
 * Class cls's numbers into st->cls[cls] and its share into st's totals;
 * in_use is what the walk counted of its objects in use.
 */
static void stats_class(struct spanheap *sh, struct spanheap_stats *st,
                        unsigned cls, size_t in_use)
{
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	struct spanheap_class_stats *cs = &st->cls[cls];
	/* A bad class panics naming the entry point, not this helper. */
	struct mcentral *c = spanheap_central_of(sh, cls, "spanheap_stats");
	cs->size = ci->size;
	cs->spans = atomic_load_explicit(&c->nspans, memory_order_relaxed);
	size_t cap = cs->spans * ci->nelems;
	/* Objects in magazines (count_mags, before) are freed, though
	 * their spans still count them allocated. */
	size_t in_mags = cs->mag_objects;
	st->mag_objects += in_mags;
	/* Both clamps: a count read mid-change (see the top). */
	in_use = in_use > in_mags ? in_use - in_mags : 0;
	cs->objects_in_use = in_use;
	if (cs->objects_in_use > cap)
		cs->objects_in_use = cap;
	cs->objects_free = cap - cs->objects_in_use;
	cs->bytes_in_use = cs->objects_in_use * ci->size;
	cs->bytes_spans = cs->spans * ci->npages * MM_PAGE_SIZE;
	st->spans += cs->spans;
	st->bytes_in_use += cs->bytes_in_use;
	st->bytes_spans += cs->bytes_spans;
}

/* The heap's counters into st, and its large objects as class 0. */
static void stats_counters(struct spanheap *sh, struct spanheap_stats *st)
{
	st->refills = spanheap_refills_total(sh);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	st->n = sh->n;
	st->large_pages = sh->large_in_use_pages;
	st->sweepgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed);
	mm_lock_release(&sh->heap->lock, irq);
	st->n.demand_swept =
	        atomic_load_explicit(&sh->demand_swept, memory_order_relaxed);
	st->n.queue_folded =
	        atomic_load_explicit(&sh->queue_folded, memory_order_relaxed);
	st->n.quiet_cycles =
	        atomic_load_explicit(&sh->quiet_cycles, memory_order_relaxed);
	st->n.flush_alls =
	        atomic_load_explicit(&sh->flush_alls, memory_order_relaxed);
	st->n.flush_alls_failed = atomic_load_explicit(&sh->flush_alls_failed,
	                                               memory_order_relaxed);
	st->n.idle_flushes =
	        atomic_load_explicit(&sh->idle_flushes, memory_order_relaxed);
	st->n.quiet_flushes =
	        atomic_load_explicit(&sh->quiet_flushes, memory_order_relaxed);
	st->n.quiet_visits =
	        atomic_load_explicit(&sh->quiet_visits, memory_order_relaxed);
	st->fail_armed = spanheap_fail_armed(sh);
	st->fail_calls =
	        atomic_load_explicit(&sh->fail.calls, memory_order_relaxed);
	st->fail_injected =
	        atomic_load_explicit(&sh->fail.injected, memory_order_relaxed);
	spanheap_depot_stats(&sh->depot, st);
	spanheap_guard_stats(sh, st);
	struct spanheap_class_stats *large = &st->cls[0];
	large->spans = (size_t)(st->n.large_allocs - st->n.large_frees);
	large->objects_in_use = large->spans;
	large->bytes_in_use = large->bytes_spans =
	        st->large_pages * MM_PAGE_SIZE;
	st->spans += large->spans;
	st->bytes_in_use += large->bytes_in_use;
	st->bytes_spans += large->bytes_spans;
}

/* Frees folded so far, every class's, local and remote: they only grow. */
struct folded {
	uint64_t local, remote;
};

static struct folded folded_frees(struct spanheap *sh)
{
	struct folded f = {0, 0};
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mcentral *c = &sh->central[cls];
		f.local +=
		        atomic_load_explicit(&c->nlocal, memory_order_relaxed);
		f.remote +=
		        atomic_load_explicit(&c->nremote, memory_order_relaxed);
	}
	return f;
}

/* Walks again while a fold moved frees from the bits the walk read to
 * the counters read after it (counted twice). A heap folding all the
 * time gets the last walk's numbers. */
#ifdef MM_TEST_HOOKS
_Atomic unsigned spanheap_test_stats_walks = SPANHEAP_STATS_WALKS;
_Atomic uint64_t spanheap_test_mags_read;
_Atomic uint64_t spanheap_test_spans_walked;
#define stats_walks() atomic_load(&spanheap_test_stats_walks)
#else
#define stats_walks() SPANHEAP_STATS_WALKS
#endif

void spanheap_stats(struct spanheap *sh, struct spanheap_stats *st)
{
	size_t in_use[SC_NCLASSES]; /* 504 bytes of stack */
	struct folded was, now;
	for (unsigned walk = 1;; walk++) {
		was = folded_frees(sh);
		mm_memset(st, 0, sizeof(*st));
		mm_memset(in_use, 0, sizeof(in_use));
		count_objects(sh, in_use, &st->local_frees, &st->remote_frees);
		mheap_hook(sh->heap, MHEAP_HOOK_STATS_WALKED);
		now = folded_frees(sh);
		if ((now.local == was.local && now.remote == was.remote) ||
		    walk >= stats_walks())
			break;
	}
	/* Frees are booked when folded: these with the walk's, those not
	 * folded yet (the counts read after it: a fold since the check is
	 * not counted twice; review). */
	st->local_frees += now.local;
	st->remote_frees += now.remote;
	count_mags(sh, st);
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		stats_class(sh, st, cls, in_use[cls]);
	stats_counters(sh, st);
	mheap_hook(sh->heap, MHEAP_HOOK_STATS_COUNTED);
	mheap_stats(sh->heap, &st->heap);
	mheap_stats(&sh->meta, &st->meta);
	st->meta_arena_bytes = sh->meta.arena_pages * MM_PAGE_SIZE;
}

/* The dump's statistics: too large for a small kernel stack, so one
 * buffer for every heap, taken by one dump at a time. */
static struct spanheap_stats dump_stats;
static _Atomic bool dump_busy;

/* Failure injection's line: shown once it was ever armed. */
static void dump_fail(struct spanheap *sh, const struct spanheap_stats *st)
{
	struct spanheap_fail_attr a;
	spanheap_fail_get(sh, &a);
	mm_log("spanheap: failure injection %s: interval %u, probability "
	       "%u/10000, seed %lu, what %#x, failures left %s%lu; %lu "
	       "eligible calls, %lu failures injected",
	       st->fail_armed ? "armed" : "off", a.interval, a.probability,
	       (unsigned long)a.seed, a.what, a.times < 0 ? "-" : "",
	       (unsigned long)(a.times < 0 ? 1 : a.times), /* -1: no cap */
	       (unsigned long)st->fail_calls, (unsigned long)st->fail_injected);
}

/* spanheap_dump's slabinfo table: a row per class with spans, then the
 * large spans. */
static void dump_classes(const struct spanheap_stats *st)
{
	mm_log("slabinfo: class   size  pages   in use     free    spans "
	       "     bytes  waste%%  in mags  mag room");
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		const struct spanheap_class_stats *cs = &st->cls[cls];
		if (!cs->spans)
			continue;
		size_t waste = cs->bytes_spans - cs->bytes_in_use;
		mm_log("slabinfo: %5u %6u %6u %8zu %8zu %8zu %10zu %6zu %8zu "
		       "%9zu",
		       cls, cs->size, (unsigned)sizeclass_info[cls].npages,
		       cs->objects_in_use, cs->objects_free, cs->spans,
		       cs->bytes_spans,
		       cs->bytes_spans ? waste * 100 / cs->bytes_spans : 0,
		       cs->mag_objects, cs->mag_room);
	}
	mm_log("slabinfo: large: %zu spans, %zu pages", st->cls[0].spans,
	       st->large_pages);
}

void spanheap_dump(struct spanheap *sh)
{
	spanheap_assert_can_sleep("spanheap_dump");
	while (atomic_exchange_explicit(&dump_busy, true, memory_order_acquire))
		mm_port_yield();
	struct spanheap_stats *st = &dump_stats;
	spanheap_stats(sh, st);
	dump_classes(st);
	mm_log("spanheap: %zu spans, %zu bytes in use of %zu; %zu objects in "
	       "magazines; frees: %lu local, %lu remote; %lu refills%s",
	       st->spans, st->bytes_in_use, st->bytes_spans, st->mag_objects,
	       (unsigned long)st->local_frees, (unsigned long)st->remote_frees,
	       (unsigned long)st->refills,
	       sh->cfg.poison ? "; poison mode (no magazines)" : "");
	mm_log("spanheap: sweep: %lu cycles, %lu spans swept by cycles, "
	       "%lu on demand, %lu from fold queues, %lu spans freed, sweeper "
	       "CPU %lu us; atomic refusals %lu; %lu cycles for refused "
	       "allocations; %lu flushes of every CPU, %lu of this CPU only, "
	       "%lu by idle CPUs, %lu in %lu visits of stale caches",
	       (unsigned long)st->n.cycles, (unsigned long)st->n.swept_spans,
	       (unsigned long)st->n.demand_swept,
	       (unsigned long)st->n.queue_folded,
	       (unsigned long)st->n.freed_spans,
	       (unsigned long)(st->n.sweeper_cpu_ns / 1000),
	       (unsigned long)st->n.atomic_fails, (unsigned long)st->n.reclaims,
	       (unsigned long)st->n.flush_alls,
	       (unsigned long)st->n.flush_alls_failed,
	       (unsigned long)st->n.idle_flushes,
	       (unsigned long)st->n.quiet_flushes,
	       (unsigned long)st->n.quiet_visits);
	if (st->fail_armed || st->fail_calls)
		dump_fail(sh, st);
	if (st->guard_slots)
		mm_log("spanheap: guarded pool: %u slots, %u objects live; "
		       "%lu handed out, %lu freed; samples turned away: %lu "
		       "with no slot free, %lu with no memory",
		       st->guard_slots, st->guard_live,
		       (unsigned long)st->guard_allocs,
		       (unsigned long)st->guard_frees,
		       (unsigned long)st->guard_full,
		       (unsigned long)st->guard_nomem);
	if (sh->track || st->depot_pages)
		mm_log("spanheap: stack depot: %zu stacks in %zu pages; %lu "
		       "records made with no stack for want of room",
		       st->depot_stacks, st->depot_pages,
		       (unsigned long)st->depot_lost);
	mm_log("spanheap: metadata heap: %zu pages in use, %zu free backed, "
	       "%zu free scavenged, %zu grown, of a %zu MiB arena at %#lx; "
	       "atomic refusals %lu",
	       st->meta.in_use_pages, st->meta.free_backed_pages,
	       st->meta.free_scav_pages, st->meta.grown_pages,
	       st->meta_arena_bytes >> 20, (unsigned long)sh->meta.arena_base,
	       (unsigned long)st->meta.n.atomic_fails);
	atomic_store_explicit(&dump_busy, false, memory_order_release);
	mheap_dump(sh->heap);
	/* Both heaps' details: until a review only the object heap's
	 * (its scavenger's runs, grows, refusals) were told. */
	if (sh->meta.arena_pages)
		mheap_dump_named(&sh->meta, "mheap meta");
}
