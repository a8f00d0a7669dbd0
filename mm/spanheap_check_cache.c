/*
 * mm/spanheap_check_cache.c: the span heap's checker's per-CPU part:
 * every CPU's cache set up or all zero (a CPU that never used the heap),
 * every CPU's magazines (each object in them a freed object of its class,
 * the slots where the slab puts them) and every CPU's cached spans (of
 * their slot's class, on no list, owned by the CPU).
 *
 * Called by spanheap_check (spanheap_check.c, which has the checker's
 * algorithm and locking), with the cycle semaphore held; another CPU's
 * magazines are read while the port holds that CPU
 * (mm_port_each_other_cpu), this CPU's while pinned. A fault is reported
 * with check_fail (spanheap_check_internal.h) once nothing is pinned or
 * held.
 */
#include "spanheap_check_internal.h"

/* True if a, in a magazine of class cls, is a freed object of the class:
 * it starts an object of a small span of the class, below the span's
 * marked count, allocated by the bitmaps and not freed by them, and it
 * carries its free marker. The marker is read last, from an object's
 * start: a slot an overrun wrote may hold any address (until a review it
 * was read first, and the checker faulted on the address). */
static bool mag_object_ok(struct spanheap *sh, unsigned cls, uintptr_t a,
                          uintptr_t cookie)
{
	const uintptr_t *o = (const uintptr_t *)a;
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	if (!mheap_span_is_span(s) || atomic_load(&s->state) != MSPAN_SMALL ||
	    s->sizeclass != cls)
		return false;
	uintptr_t off = a - s->base;
	uint32_t i = (uint32_t)(off / s->elemsize);
	uint64_t b = (uint64_t)1 << (i % 64);
	return off % s->elemsize == 0 && i < s->nelems &&
	       i < atomic_load(&s->marked) && o[1] == (cookie ^ a) &&
	       (i < atomic_load(&s->freeindex) ||
	        (atomic_load(&s->alloc_bits[i / 64]) & b)) &&
	       !((atomic_load(&s->pending[i / 64]) |
	          atomic_load(&s->local_free[i / 64])) &
	         b);
}

/* The first fault in a CPU's magazines, kept to be reported once nothing
 * is pinned and no CPU is held (a test may catch the panic and go on). */
struct mag_fault {
	enum {
		MAG_OK,
		MAG_UNUSED_WRITTEN,
		MAG_TABLE,
		MAG_NO_SLAB,
		MAG_BROKEN,
		MAG_OBJECT
	} kind;
	unsigned cpu, cls;
	uint32_t seen, n;
	uintptr_t a, below;
	const uintptr_t *top, *limit, *base, *end;
	const struct mmag *table;
	size_t at; /* MAG_UNUSED_WRITTEN: the first word not 0 (its byte) */
};

/*
 * CPU cpu's cache as its magazine table says it is (the CPU pinned or
 * held): set up (mags[cpu] its own magazines: true), or not (the shared
 * empty ones), when the cache must be all zero, never written; anything
 * else is a fault, recorded in *f. *used says which.
 */
static bool cpu_cache_state_ok(struct spanheap *sh, unsigned cpu, bool *used,
                               struct mag_fault *f)
{
	const struct mcache *mc = &sh->caches[cpu];
	f->table = sh->mags[cpu];
	*used = f->table == mc->mag;
	if (*used)
		return true;
	if (f->table != sh->mags[MM_PIN_NONE]) {
		f->kind = MAG_TABLE;
		return false;
	}
	const uintptr_t *w = (const uintptr_t *)mc;
	for (size_t i = 0; i < sizeof(*mc) / sizeof(*w); i++) {
		if (w[i]) {
			f->kind = MAG_UNUSED_WRITTEN;
			f->at = i * sizeof(*w);
			f->a = w[i];
			return false;
		}
	}
	return true;
}

/* CPU cpu's magazines, the CPU pinned or held (nothing on it touches them
 * meanwhile): a cache not set up must be all zero (cpu_cache_state_ok);
 * with no slab made, every class's must be the shared empty
 * one; with one, each lies in its slots with the 0 below them, its size
 * between its floor and its class's most, and every
 * object in it is a freed object of the class (mag_object_ok). Records the
 * first fault in *f; false if there was one. */
static bool cpu_mags_ok(struct spanheap *sh, unsigned cpu, uintptr_t cookie,
                        struct mag_fault *f)
{
	struct mcache *mc = &sh->caches[cpu];
	*f = (struct mag_fault){.cpu = cpu};
	bool used;
	if (!cpu_cache_state_ok(sh, cpu, &used, f) || !used)
		return f->kind == MAG_OK;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mmag *m = &mc->mag[cls];
		f->cls = cls;
		f->top = m->top;
		f->limit = m->limit;
		if (!mc->slab) {
			if (m->top[-1] == 0 && m->top == m->limit)
				continue;
			f->kind = MAG_NO_SLAB;
			return false;
		}
		uintptr_t *base = mag_base(sh, cpu, cls);
		f->base = base;
		f->end = base + sh->mag_max[cls];
		f->below = base[-1];
		if (m->limit > f->end ||
		    (m->limit < base + mag_floor(sh, cls) &&
		     m->limit != base) || /* held at 0: spanheap_fail.c */
		    m->top < base ||
		    m->top > m->limit || base[-1] != 0) {
			f->kind = MAG_BROKEN;
			return false;
		}
		f->n = (uint32_t)(m->top - base);
		for (f->seen = 0; f->seen < f->n; f->seen++) {
			f->a = base[f->seen];
			if (!mag_object_ok(sh, cls, f->a, cookie)) {
				f->kind = MAG_OBJECT;
				return false;
			}
		}
	}
	return true;
}

static void mag_fail(struct spanheap *sh, const struct mag_fault *f)
{
	if (f->kind == MAG_UNUSED_WRITTEN)
		check_fail(sh,
		           "spanheap: check: CPU %u's cache is not set up (its "
		           "magazines are the shared empty ones), but it was "
		           "written: byte %zu holds %#lx",
		           f->cpu, f->at, (unsigned long)f->a);
	if (f->kind == MAG_TABLE)
		check_fail(
		        sh,
		        "spanheap: check: CPU %u's magazine table (mags[%u]) "
		        "is %p: neither its cache's magazines %p nor the "
		        "shared empty ones %p",
		        f->cpu, f->cpu, (const void *)f->table,
		        (const void *)sh->caches[f->cpu].mag,
		        (const void *)sh->mags[MM_PIN_NONE]);
	if (f->kind == MAG_NO_SLAB)
		check_fail(sh,
		           "spanheap: check: CPU %u has no magazine slab, but "
		           "its magazine of class %u is not the empty one",
		           f->cpu, f->cls);
	if (f->kind == MAG_BROKEN)
		check_fail(sh,
		           "spanheap: check: CPU %u's magazine of class %u is "
		           "broken: top %p, limit %p, slots [%p, %p), the 0 "
		           "below them %#lx",
		           f->cpu, f->cls, (const void *)f->top,
		           (const void *)f->limit, (const void *)f->base,
		           (const void *)f->end, (unsigned long)f->below);
	check_fail(sh,
	           "spanheap: check: CPU %u's magazine of class %u: object %u "
	           "of %u, %#lx, is not a freed object of the class",
	           f->cpu, f->cls, f->seen, f->n, (unsigned long)f->a);
}

struct other_mags {
	struct spanheap *sh;
	uintptr_t cookie;
	struct mag_fault fault; /* the first CPU's fault */
};

/* mm_port_each_other_cpu's call for CPU cpu, held: nothing runs on it. */
static void other_cpu_mags(unsigned cpu, void *arg)
{
	struct other_mags *o = arg;
	struct mag_fault f;
	if (o->fault.kind == MAG_OK && !cpu_mags_ok(o->sh, cpu, o->cookie, &f))
		o->fault = f;
}

/*
 * Every CPU's magazines: this CPU's pinned, every other's at a moment the
 * port holds it (mm_port_each_other_cpu; in the kernel the world is
 * stopped, so an interrupt handler that frees on another CPU cannot move
 * its magazine under the check), or, where the port cannot reach other
 * CPUs, this CPU's alone. First the magazines of a fast pin that names no
 * CPU: empty and full at once, never written.
 */
void spanheap_check_mags(struct spanheap *sh)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		struct mmag *none = &sh->mags[MM_PIN_NONE][cls];
		if (none->top != none->limit || none->top[-1] != 0)
			check_fail(sh,
			           "spanheap: check: the magazine of class %u "
			           "for no CPU (MM_PIN_NONE) was written: top "
			           "%p, limit %p, the word below %#lx",
			           cls, (void *)none->top, (void *)none->limit,
			           (unsigned long)none->top[-1]);
	}
	struct other_mags o = {.sh = sh, .cookie = sh->mag_cookie};
	struct mm_pin pin = mm_port_pin();
	bool ok = cpu_mags_ok(sh, (unsigned)pin.cpu, o.cookie, &o.fault);
	mm_port_unpin(pin);
	if (!ok)
		mag_fail(sh, &o.fault);
	mm_port_each_other_cpu(other_cpu_mags, &o);
	if (o.fault.kind != MAG_OK)
		mag_fail(sh, &o.fault);
}

/* Every CPU's cached spans: of their slot's class, on no list, with an
 * odd sweepgen, the class's bit set in cached (else a flush would keep
 * it); counted per class into listed[]. */
void spanheap_check_cached(struct spanheap *sh, size_t listed[SC_NCLASSES])
{
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++) {
		/* One not set up caches nothing (spanheap_check_mags
		 * found it all zero, where the port reaches it). */
		if (!spanheap_cache_used(sh, cpu))
			continue;
		for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
			struct mspan *s = sh->caches[cpu].alloc[cls];
			if (s == &spanheap_empty_span)
				continue;
			uint64_t bits = sh->caches[cpu].cached;
			if (s->sizeclass != cls || s->list != MSPAN_LIST_NONE ||
			    atomic_load(&s->sweepgen) % 2 == 0 ||
			    atomic_load(&s->owner) != cpu + 1 ||
			    !(bits >> cls & 1))
				check_fail(
				        sh,
				        "spanheap: check: CPU %u caches span "
				        "[%#lx] of class %u for class %u, "
				        "sweepgen %u, owner %u, cached bits "
				        "%#lx",
				        cpu, (unsigned long)s->base,
				        s->sizeclass, cls,
				        atomic_load(&s->sweepgen),
				        (unsigned)atomic_load(&s->owner),
				        (unsigned long)bits);
			listed[cls]++;
		}
	}
}
