/*
 * mm/spanheap_bulk.c: bulk allocation and free (spanheap_bulk.h), a batch
 * of objects moved between the caller's array and the CPU's magazine in
 * one pin.
 *
 * Purpose: networking's and io_uring's pattern, n objects of one size at
 * a time, at less than the cost of n single calls: a single kmalloc and
 * kfree pay a pin, a table lookup and an unpin (interrupts off and on in
 * the kernel) each; a batch pays them once per run.
 *
 * Representation: none of its own; the magazines of spanheap_cache.c.
 *
 * Algorithm. Allocation: pinned, the run takes the newest objects of the
 * class's magazine with one read of its top and one store (each object's
 * free marker cleared, as the single pop does); an empty magazine gets
 * the single path's refill (spanheap_alloc: the span's next object and up
 * to 1 KiB more into the magazine, or a span from the central lists or
 * the page heap, unpinned if it must sleep), and the run goes on. Should
 * an object be missing (no memory, MM_ATOMIC that would wait), those had
 * go back by the bulk free and the call returns 0. Free: pinned, each
 * entry gets the single free's checks (spanheap_free_fast.h: the span
 * from the table, the start of an object handed out, no free marker; an
 * entry in the same span as the last is checked against that span's
 * constants held in registers) and the push; a full magazine spills by
 * the single free's spill (spanheap_mag_full, which unpins; the run pins
 * again). An entry the
 * run does not take (NULL, a large or guarded object, another class, a
 * misused pointer) ends the run and goes by the single free, after a line
 * naming its index if spanheap_where says it is no allocated object's
 * start. Poison mode, the guarded pool and failure injection send every
 * object by the single calls: their records, side tables, shadow and
 * sampling are the single paths'.
 *
 * Invariants: spanheap.c's 7 and 8 (the runs write markers and
 * magazines as the single paths do).
 *
 * Locking: no lock of its own; a run is pinned (interrupts off in the
 * kernel) for at most BULK_RUN objects, so that a batch of thousands does
 * not hold interrupts off for all of them. The refill and the spill take
 * the locks the single paths take.
 *
 * Limits: a batch is at most what the arena could hold (n * size); a
 * class over 512 bytes has no magazine fill, so each of its refills gives
 * one object.
 */
#include "objcache.h"
#include "objcache_track.h"
#include "spanheap_bulk.h"
#include "spanheap_free_fast.h"
#include "spanheap_internal.h"

/* The most objects a run moves in one pin: bounds the time interrupts
 * are off in the kernel (64 pushes or pops, well under a microsecond). */
#define BULK_RUN 64

/* spanheap_free_bulk_class's class for "any class" (spanheap_free_bulk). */
#define ANY_CLASS 0xffffffffu

/* True if an allocation of size must take the single path, object by
 * object: what it is (a large object) or the heap's mode needs it. */
static bool alloc_one_by_one(struct spanheap *sh, size_t size)
{
	return size > SC_MAX_SIZE || sh->cfg.poison || sh->guard.base != 0 ||
	       spanheap_fail_armed(sh);
}

/* Moves up to want objects off magazine m (pinned) into out, newest
 * first, each one's free marker cleared as spanheap_mag_pop clears it:
 * one read of the top, one store. Returns how many (0: empty). */
static inline size_t mag_take(struct mmag *m, void **out, size_t want)
{
	uintptr_t *t = mag_top(m);
	size_t k = 0;
	while (k < want) {
		uintptr_t a = t[-1 - (ptrdiff_t)k];
		if (!a) /* the 0 below the first slot */
			break;
		obj_words(a)[1] = 0;
		out[k++] = (void *)a;
	}
	mag_set_top(m, t - k);
	return k;
}

/* Fills out[0..n) by runs of the class's magazine and the single path's
 * refills; returns how many it could have (n unless memory ran out). */
static size_t alloc_mags(struct spanheap *sh, size_t size, unsigned flags,
                         size_t n, void **out)
{
	unsigned cls = sizeclass_of(size);
	size_t i = 0;
	while (i < n) {
		size_t want = n - i < BULK_RUN ? n - i : BULK_RUN;
		struct mm_pin pin = mm_port_pin();
		struct mcache *mc = spanheap_cache_ready(sh, pin.cpu);
		size_t k = mag_take(&mc->mag[cls], out + i, want);
		mm_port_unpin(pin);
		i += k;
		if (k == want)
			continue;
		/* Dry: the refill takes the span's next object and fills the
		 * magazine (doubling its size) for the next run. */
		void *p = spanheap_alloc(sh, size, flags);
		if (!p)
			break;
		out[i++] = p;
	}
	return i;
}

/* Fills out[0..n) with single calls; returns how many it could have. */
static size_t alloc_each(struct spanheap *sh, size_t size, unsigned flags,
                         size_t n, void **out)
{
	for (size_t i = 0; i < n; i++) {
		void *p = spanheap_alloc(sh, size, flags);
		if (!p)
			return i;
		out[i] = p;
	}
	return n;
}

size_t spanheap_alloc_bulk(struct spanheap *sh, size_t size, unsigned flags,
                           size_t n, void **out)
{
	if (n == 0)
		return 0;
	spanheap_assert_set_up(sh);
	if (spanheap_bad_flags("alloc_bulk", size, flags))
		return 0;
	if (!out || size > sh->arena_bytes / n) {
		mm_log("spanheap: alloc_bulk of %zu objects of %zu bytes "
		       "refused: %s",
		       n, size,
		       out ? "more than the arena holds" : "out is NULL");
		return 0;
	}
	/* As alloc_call's, on every call: not only the day a refill
	 * must sleep. */
	if (!(flags & MM_ATOMIC))
		spanheap_assert_can_sleep("spanheap_alloc_bulk (without "
		                          "MM_ATOMIC)");
	size_t got;
	if (alloc_one_by_one(sh, size)) {
		got = alloc_each(sh, size, flags, n, out);
	} else {
		got = alloc_mags(sh, size, flags & ~(unsigned)MM_ZERO, n, out);
		/* The class's whole size, as alloc_call zeroes a small
		 * object's usable size. */
		size_t bytes = sizeclass_info[sizeclass_of(size)].size;
		for (size_t i = 0; got == n && (flags & MM_ZERO) && i < n; i++)
			mm_memset(out[i], 0, bytes);
	}
	if (got == n)
		return n;
	spanheap_free_bulk(sh, got, out); /* all or nothing */
	return 0;
}

/* The span of the run's last entry, whose checks the next entries in it
 * repeat from registers: its bounds, its division's constants, and its
 * marked count as read (it only grows while an object of it is out, so an
 * index below the value read is below it now). */
struct run_span {
	uintptr_t base, bytes;
	uint32_t dinv, marked;
	unsigned dshift;
};

/* A run's magazine: the one of its current span's class, top and limit
 * held in registers (m NULL: none). */
struct run_mag {
	struct mmag *m;
	uintptr_t *t, *limit;
};

/* Enters span s (checked: span_in_table's) for the run on CPU cpu: the
 * magazine held before gets its top back, s's class's is taken. */
static inline __attribute__((always_inline)) void
run_enter(struct spanheap *sh, unsigned long cpu, struct mspan *s,
          struct run_span *rs, struct run_mag *rm)
{
	if (rm->m)
		mag_set_top(rm->m, rm->t);
	rm->m = (struct mmag *)((char *)sh->mags[cpu] + s->mag_offset);
	rm->t = mag_top(rm->m);
	rm->limit = __atomic_load_n(&rm->m->limit, __ATOMIC_RELAXED);
	*rs = (struct run_span){
	        s->base, (uintptr_t)s->npages << MM_PAGE_SHIFT, s->dinv,
	        atomic_load_explicit(&s->marked, memory_order_acquire),
	        s->dshift};
}

/*
 * Frees p[i..) by the magazine, pinned, at most BULK_RUN of them: each
 * entry that is a small object of class cls (any with ANY_CLASS) passing
 * the single free's checks. What the checks read of the heap is read once
 * a run (span_table_of); an entry in the same span as the one before is
 * checked against that span's constants without the table (a batch's
 * objects mostly share spans); the magazine of the span's class is held
 * in registers while the span stays the same. The kernel builds with
 * -fno-strict-aliasing, so each object's stores would otherwise reload
 * them all. Returns the index it stopped at, and sets *stuck if the entry
 * there is one it does not take (NULL, a large or guarded object, another
 * class, a free marker: misuse), for the single free. Poison mode takes
 * none. Inline, so that ANY_CLASS folds.
 */
static inline __attribute__((always_inline)) size_t
free_run(struct spanheap *sh, size_t n, void **p, size_t i, unsigned cls,
         bool *stuck)
{
	size_t end = n - i < BULK_RUN ? n : i + BULK_RUN;
	const uintptr_t cookie = sh->mag_cookie;
	*stuck = sh->cfg.poison;
	if (*stuck)
		return i;
	struct mm_pin pin = mm_port_pin();
	const struct span_table tb = span_table_of(sh);
	struct run_span rs = {0, 0, 0, 0, 0}; /* no span: bytes 0 */
	struct run_mag rm = {NULL, NULL, NULL};
	for (; i < end; i++) {
		uintptr_t a = (uintptr_t)p[i];
		if (__builtin_expect(a - rs.base >= rs.bytes, 0)) {
			struct mspan *s = span_in_table(tb, a);
			if (!s || (cls != ANY_CLASS && s->sizeclass != cls))
				break;
			run_enter(sh, pin.cpu, s, &rs, &rm);
		}
		uint32_t x = (uint32_t)(a - rs.base) * rs.dinv;
		x = x >> rs.dshift | x << ((32 - rs.dshift) & 31);
		if (__builtin_expect(x >= rs.marked, 0)) {
			/* The table's check, with marked read again. */
			struct mspan *s = span_in_table(tb, a);
			if (!s)
				break;
			run_enter(sh, pin.cpu, s, &rs, &rm);
		}
		if (obj_words(a)[1] == (cookie ^ a))
			break;
		if (__builtin_expect(rm.t >= rm.limit, 0)) {
			mag_set_top(rm.m, rm.t);
			rm.m = NULL;
			rs.bytes = 0;
			spanheap_mag_full(sh, a,
			                  span_in_table(tb, a)->sizeclass,
			                  pin); /* unpins */
			pin = mm_port_pin();
			continue;
		}
		*rm.t++ = a;
		obj_words(a)[1] = cookie ^ a; /* a second free of a sees it */
	}
	if (rm.m)
		mag_set_top(rm.m, rm.t);
	mm_port_unpin(pin);
	*stuck = i < end;
	return i;
}

bool spanheap_bulk_live_start(struct spanheap *sh, const void *q,
                              struct spanheap_where *w)
{
	spanheap_where(sh, q, w);
	if (w->offset != 0)
		return false;
	if (w->kind == SPANHEAP_WHERE_LARGE)
		return true;
	return (w->kind == SPANHEAP_WHERE_SMALL ||
	        w->kind == SPANHEAP_WHERE_GUARD) &&
	       w->state == SPANHEAP_OBJ_ALLOCATED;
}

/* The line for entry i of n, q, no allocated object's start to the heap
 * (w): an object of a cache with slabs of its own is named as such (until
 * rv123 the line said it was no object's start, then the free's panic
 * named the cache); else, that it is no allocated object's start. */
static void misused_line(struct spanheap *sh, size_t n, size_t i, const void *q,
                         const struct spanheap_where *w)
{
	struct mspan *s = w->kind == SPANHEAP_WHERE_LARGE
	                          ? mheap_span_lookup(sh->heap, (uintptr_t)q)
	                          : NULL;
	struct objcache_track_obj o;
	if (s && mheap_span_is_span(s) &&
	    objcache_track_object(sh, s, (uintptr_t)q, &o) && !o.changing &&
	    o.state && o.start == (uintptr_t)q) {
		char name[OBJCACHE_NAME_MAX + 1];
		objcache_owner_name(sh, o.owner, name);
		mm_log("spanheap: free_bulk: entry %zu of %zu, %p, is an "
		       "object of cache '%s' (%s), which has slabs of its "
		       "own: free it with kmem_cache_free or its cache's bulk "
		       "free (the free's report follows)",
		       i, n, q, name, o.state);
		return;
	}
	mm_log("spanheap: free_bulk: entry %zu of %zu, %p, is no allocated "
	       "object's start (the free's report follows)",
	       i, n, q);
}

/* Frees p[i], which a run did not take, by the single free (for a class,
 * spanheap_free_class: false, nothing done, for another class); a
 * misused entry gets a line naming its index first, then the single
 * free's panic. */
static bool free_one(struct spanheap *sh, size_t n, void **p, size_t i,
                     unsigned cls)
{
	void *q = p[i];
	if (!q)
		return true;
	struct spanheap_where w;
	if (!spanheap_bulk_live_start(sh, q, &w))
		misused_line(sh, n, i, q, &w);
	if (cls == ANY_CLASS) {
		spanheap_free(sh, q);
		return true;
	}
	return spanheap_free_class(sh, q, cls);
}

/* Both frees' loop, inline so that each has its own free_run (ANY_CLASS
 * folded in spanheap_free_bulk's). */
static inline __attribute__((always_inline)) size_t
free_bulk(struct spanheap *sh, size_t n, void **p, unsigned cls)
{
	if (n && !p) {
		mm_log("spanheap: free_bulk of %zu objects refused: the array "
		       "is NULL",
		       n);
		return n;
	}
	size_t i = 0;
	while (i < n) {
		bool stuck;
		i = free_run(sh, n, p, i, cls, &stuck);
		if (!stuck)
			continue;
		if (!free_one(sh, n, p, i, cls))
			return i;
		i++;
	}
	return n;
}

size_t spanheap_free_bulk_class(struct spanheap *sh, size_t n, void **p,
                                unsigned cls)
{
	return free_bulk(sh, n, p, cls);
}

void spanheap_free_bulk(struct spanheap *sh, size_t n, void **p)
{
	free_bulk(sh, n, p, ANY_CLASS);
}
