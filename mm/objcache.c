/*
 * mm/objcache.c: named caches of objects of one size over the span heap
 * (objcache.h).
 *
 * Purpose: the kernel's kmem_cache. A cache's objects are the span
 * heap's, of the class serving its size and alignment; the cache counts
 * them out and in, so that its listing says what each user holds and its
 * destruction finds what a user leaked.
 *
 * A cache with a constructor or OBJCACHE_TYPESAFE_BY_RCU has slabs of its
 * own instead (objcache_own.c, c->own): its calls all go out of line, there.
 *
 * Representation: struct objcache (objcache.h, for the inline paths), a
 * block of the heap's metadata heap (spanheap_meta_blocks.c), as is the
 * counter area below, so that no overrun of an object reaches them. The
 * heap keeps its caches in a list in creation order (struct
 * spanheap's objcaches) and their counters in one area of OBJCACHE_MAX
 * 64-bit counters per CPU, a row of 512 bytes per CPU: a cache's counter
 * on CPU i is row i's entry at its slot, so CPUs count on lines of their
 * own. A counter is allocations less frees on that CPU, so one may go
 * below zero (an object allocated on one CPU and freed on another); the
 * sum over the CPUs is the objects out.
 *
 * Algorithm: an allocation is the span heap's, then a count: for a small
 * size with no more than 16 bytes of alignment, the class's magazine
 * inline (spanheap_alloc_class, as kmalloc of a constant size); else
 * spanheap_alloc or spanheap_alloc_aligned. A free is spanheap_free's
 * with the span's class tested on the way (spanheap_free_class), then a
 * count (objcache_count, objcache.h) into this CPU's counter, which no
 * other CPU writes. Destroying sums the counters in the same hold of
 * the lock as its unlink.
 *
 * Locking: the list, the slot bits and the area's pointer are under the
 * page heap's lock (the leaf), taken for a few loads and stores: no call
 * is made under it, and every allocation and free of the structs and the
 * area happens outside it. A cache's own fields are fixed from its
 * creation to its destruction; its counters are written by their CPU
 * alone (pinned, or in a restartable sequence) and read relaxed by
 * anyone.
 *
 * Poison mode: each small object's side-table entry (spanheap_redzone.h)
 * has an owner: 0 for the heap's own callers, slot + 1 for a cache's. A
 * small cache's calls all go out of line there (fast_class 0, and a
 * free_class no span has, so spanheap_free_class refuses every free):
 * the allocation sets the owner; the free checks the span's class, then
 * the owner, panicking for another cache's object or kmalloc's, and
 * clears it before the heap's free, whose poison path panics for an
 * object that still has one (kfree, or krealloc, of a cache's object).
 * Normal mode pays nothing for it.
 *
 * Limits: OBJCACHE_MAX caches per heap. A count costs each call a few
 * instructions more than kmalloc's (a restartable sequence of four in the
 * kernel: a 16-byte pair is 73 guest instructions against kmalloc's 45).
 * Outside poison mode, and for a cache of large objects, a wrong-cache free
 * of an object of the same class is not seen, but its count falls below
 * zero, which its destruction reports. A destroyed cache's calls panic
 * saying so while its struct's page of blocks lives (once the page is
 * unmapped, a call faults in the metadata arena); objcache_destroy_in and
 * mempool_init_cache_in, given the heap, look for the struct on its list
 * first, and panic whatever became of the page. A struct reused by a newer
 * cache is that cache to all of them.
 */
#include "objcache.h"

#include "mempool_internal.h"
#include "objcache_internal.h"
#include "spanheap_internal.h"

#define AREA_BYTES ((size_t)MM_MAX_CPUS * OBJCACHE_MAX * sizeof(int64_t))
_Static_assert(OBJCACHE_MAX == 64, "a bit of objcache_slots per cache");

/* Why name, size and align cannot make a cache, or NULL if they can. */
static const char *refusal(struct spanheap *sh, const char *name, size_t size,
                           size_t align)
{
	size_t len = mm_name_len(name, OBJCACHE_NAME_MAX);
	/* A heap not set up (a kernel's cache made before its heap_init):
	 * refused, where its page heap's NULL was followed (review). */
	if (!sh || !sh->heap)
		return "no heap (spanheap_init not called)";
	if (len == 0)
		return "no name";
	if (len > OBJCACHE_NAME_MAX)
		return "a name longer than OBJCACHE_NAME_MAX characters";
	if (size == 0)
		return "size 0";
	if (size > sh->heap->arena_pages * MM_PAGE_SIZE)
		return "a size larger than the heap's arena";
	bool pow2 = !(align & (align - 1));
	if (!(pow2 && align <= MM_PAGE_SIZE) && align % MM_PAGE_SIZE)
		return "an alignment neither a power of two up to a page nor a "
		       "multiple of a page";
	/* A large object's span takes its alignment's pages less one more
	 * (spanheap_large_alloc). */
	size_t pages = sh->heap->arena_pages, need = spanheap_pages_for(size);
	if (align > MM_PAGE_SIZE && align / MM_PAGE_SIZE - 1 > pages - need)
		return "a size and alignment whose pages no arena holds";
	return NULL;
}

/* mm/ has no C library: the name's copy and comparison. */
static void name_copy(char *to, const char *from)
{
	mm_name_copy(to, from, OBJCACHE_NAME_MAX);
}

static bool name_taken(struct spanheap *sh, const char *name)
{
	for (struct objcache *c = sh->objcaches; c; c = c->next) {
		size_t i = 0;
		while (c->name[i] && c->name[i] == name[i])
			i++;
		if (c->name[i] == name[i])
			return true;
	}
	return false;
}

/* Slot's name, under heap->lock: a sequence lock's one writer. The bytes
 * stored release, so that a reader that sees one sees the odd sequence;
 * loaded acquire by objcache_owner_name, so that its second look at the
 * sequence comes after them. */
static void name_publish(struct spanheap *sh, unsigned slot, const char *name)
{
	_Atomic uint32_t *seq = &sh->objcache_name_seq[slot];
	uint32_t s = atomic_load_explicit(seq, memory_order_relaxed);
	atomic_store_explicit(seq, s + 1, memory_order_relaxed);
	for (size_t i = 0; i < OBJCACHE_NAME_MAX + 1; i++)
		__atomic_store_n(&sh->objcache_names[slot][i], name[i],
		                 __ATOMIC_RELEASE);
	atomic_store_explicit(seq, s + 2, memory_order_release);
}

/* link_cache's answer when sh has no counter area and it was given none:
 * the last cache's destroy took it after objcache_create looked. */
static const char no_area[] = "no memory for the counters";

/*
 * Links c into sh's list with a free slot, under heap->lock; *area is
 * a zeroed counter area to install if sh has none (taken: set to NULL).
 * Returns NULL, or why c could not be linked (no_area: none given).
 */
static const char *link_cache(struct spanheap *sh, struct objcache *c,
                              int64_t **area)
{
	if (name_taken(sh, c->name))
		return "the name is another cache's";
	if (sh->objcache_slots == ~(uint64_t)0)
		return "the heap has OBJCACHE_MAX caches already";
	if (!sh->objcache_counts) {
		if (!*area)
			return no_area;
		/* Read without the lock by objcache_create's test. */
		__atomic_store_n(&sh->objcache_counts, *area, __ATOMIC_RELAXED);
		*area = NULL;
	}
	c->slot = (unsigned)__builtin_ctzll(~sh->objcache_slots);
	sh->objcache_slots |= (uint64_t)1 << c->slot;
	if (c->free_class == OBJCACHE_NO_CLASS)
		c->owner = c->slot + 1; /* poison mode: its objects' owner */
	name_publish(sh, c->slot, c->name);
	c->counts = sh->objcache_counts + c->slot;
	if (c->own) /* here: an arm's switch walks the linked caches only */
		__atomic_store_n(&c->own->fast, objcache_own_fast(sh, c->own),
		                 __ATOMIC_RELAXED);
	/* The slot's last cache left its counters summing to 0, not each
	 * 0; nothing writes a free slot's. */
	for (size_t cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		__atomic_store_n(&c->counts[cpu * OBJCACHE_MAX], 0,
		                 __ATOMIC_RELAXED);
	struct objcache **at = &sh->objcaches;
	while (*at)
		at = &(*at)->next;
	*at = c;
	return NULL;
}

struct objcache *objcache_create(struct spanheap *sh, const char *name,
                                 size_t size, size_t align)
{
	return objcache_create_flags(sh, name, size, align, 0, NULL);
}

/* A cache with flags or a ctor gets slabs of its own (objcache_own.c). */
struct objcache *objcache_create_flags(struct spanheap *sh, const char *name,
                                       size_t size, size_t align,
                                       unsigned flags, void (*ctor)(void *))
{
	spanheap_assert_can_sleep("objcache_create");
	if (align < 16)
		align = 16;
	const char *why = refusal(sh, name, size, align);
	struct objcache *c = NULL;
	if (!why && !(c = spanheap_meta_alloc(sh, sizeof(*c))))
		why = "no memory for the cache";
	if (why) {
		mm_log("objcache: cache '%s' of %zu bytes (aligned to %zu) "
		       "refused: %s",
		       name ? name : "(null)", size, align, why);
		return NULL;
	}
	name_copy(c->name, name);
	c->sh = sh;
	c->size = size;
	c->align = align;
	c->sizeclass = spanheap_class_serving(sh, size, align);
	c->objsize = c->sizeclass ? sizeclass_info[c->sizeclass].size
	                          : spanheap_pages_for(size) * MM_PAGE_SIZE;
	/* Poison mode: every call of a small cache goes out of line, where
	 * the owner of each object is set and checked. */
	bool owned = sh->cfg.poison && c->sizeclass;
	c->fast_class = !owned && align <= 16 && size <= SC_MAX_SIZE
	                        ? sizeclass_of(size)
	                        : 0;
	c->free_class = owned ? OBJCACHE_NO_CLASS : c->sizeclass;
	if (flags || ctor) { /* every call out of line, to objcache_own.c */
		c->sizeclass = c->fast_class = 0;
		c->free_class = OBJCACHE_NO_CLASS;
		why = objcache_own_setup(c, flags, ctor);
		mheap_hook(sh->heap, MHEAP_HOOK_OWN_CACHE_SET_UP);
	}
	/* The area, made outside the lock if the heap may need it; asked
	 * for again if the last cache's destroy took it meanwhile. */
	for (bool retry = !why; retry;) {
		int64_t *area = NULL;
		bool asked = !__atomic_load_n(&sh->objcache_counts,
		                              __ATOMIC_RELAXED);
		if (asked)
			area = spanheap_meta_alloc(sh, AREA_BYTES);
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		why = link_cache(sh, c, &area);
		mm_lock_release(&sh->heap->lock, irq);
		/* another create's came first */
		spanheap_meta_free(sh, area, AREA_BYTES);
		retry = why == no_area && !asked;
	}
	if (why) {
		mm_log("objcache: cache '%s' refused: %s", c->name, why);
		if (c->own)
			objcache_own_destroy(c);
		spanheap_meta_free(sh, c, sizeof(*c));
		return NULL;
	}
	return c;
}

/* A destroyed cache's slot (objcache_destroy): its calls all come out of
 * line, where they panic, until its freed struct is reused. */
#define SLOT_DESTROYED OBJCACHE_MAX

static __attribute__((noreturn)) void destroyed(const struct objcache *c,
                                                const char *op)
{
	mm_panic("objcache: %s cache %p, destroyed (no cache of the heap's)",
	         op, (const void *)c);
}

/* objcache_alloc_slow's way for a cache without slabs of its own. */
static __attribute__((noinline)) void *alloc_merged(struct objcache *c,
                                                    unsigned flags)
{
	if (c->slot >= SLOT_DESTROYED)
		destroyed(c, "allocation from");
	void *p = c->align > 16 ? spanheap_alloc_aligned(c->sh, c->size,
	                                                 c->align, flags)
	                        : spanheap_alloc(c->sh, c->size, flags);
	if (!p)
		return NULL;
	if (c->owner) {
		uint32_t idx, *owner;
		unsigned cls;
		if (spanheap_guard_owns(&c->sh->guard, p))
			owner = spanheap_guard_owner_at(c->sh, p, &cls);
		else {
			struct mspan *s =
			        spanheap_span_of(c->sh, p, &idx, "alloc");
			owner = spanheap_redzone_owner_at(s, idx);
		}
		if (owner)
			__atomic_store_n(owner, c->owner, __ATOMIC_RELAXED);
	}
	objcache_count(c, 1);
	return p;
}

/* Panics for p, freed to c, of a span of another class. */
static __attribute__((noreturn)) void wrong_cache(struct objcache *c,
                                                  const void *p)
{
	struct spanheap_where w;
	spanheap_where(c->sh, p, &w);
	spanheap_where_log(c->sh, p);
	mm_panic("objcache: free of %p to cache '%s' (size class %u, "
	         "%zu-byte objects): the object is of span %#lx's size "
	         "class %u (%zu-byte objects): another cache's or kmalloc's",
	         p, c->name, c->sizeclass, c->objsize,
	         (unsigned long)w.span_base, w.sizeclass, w.elemsize);
}

/* Panics for p, freed to c, of c's class but owned by owner (poison
 * mode's side table: 0, the heap's own callers). */
static __attribute__((noreturn)) void wrong_owner(struct objcache *c,
                                                  const void *p, uint32_t owner)
{
	char name[OBJCACHE_NAME_MAX + 1];
	struct spanheap_where w;
	if (owner)
		objcache_owner_name(c->sh, owner, name);
	spanheap_where(c->sh, p, &w);
	spanheap_where_log(c->sh, p);
	mm_panic("objcache: free of %p to cache '%s' (size class %u, "
	         "%zu-byte objects): the object, of span %#lx, is %s%s%s",
	         p, c->name, c->sizeclass, c->objsize,
	         (unsigned long)w.span_base,
	         owner ? "cache '" : "kmalloc's, of no cache",
	         owner ? name : "", owner ? "''s" : "");
}

/* objcache_free_slow's way for a cache without slabs of its own. */
static __attribute__((noinline)) void free_merged(struct objcache *c, void *p)
{
	if (c->slot >= SLOT_DESTROYED)
		destroyed(c, "free to");
	if (!c->owner)
		wrong_cache(c, p); /* spanheap_free_class refused its class */
	/* Poison mode: every free of a small cache. The span's checks (a
	 * foreign or interior pointer panics there), the class, then the
	 * owner of an allocated object (a free one is the heap's double
	 * free to report), cleared before the heap's free, which panics
	 * for an object that has one. */
	uint32_t idx, *owner;
	unsigned cls = 0;
	if (spanheap_guard_owns(&c->sh->guard, p)) {
		owner = spanheap_guard_owner_at(c->sh, p, &cls);
		if (!owner) {
			/* Not a live object: the pool's free panics,
			 * saying which misuse. */
			spanheap_free(c->sh, p);
			return;
		}
	} else {
		struct mspan *s = spanheap_span_of(c->sh, p, &idx, "free");
		cls = s->sizeclass;
		owner = spanheap_redzone_owner_at(s, idx);
	}
	if (cls != c->sizeclass)
		wrong_cache(c, p);
	if (owner) {
		uint32_t o = __atomic_load_n(owner, __ATOMIC_RELAXED);
		if (o != c->owner)
			wrong_owner(c, p, o);
		__atomic_store_n(owner, 0, __ATOMIC_RELAXED);
	}
	spanheap_free(c->sh, p);
}

/* The dispatch to own slabs first, in tail calls (no frame): a ctor
 * cache's every call comes here, a merged cache's only off its
 * magazines. */
void *objcache_alloc_slow(struct objcache *c, unsigned flags)
{
	if (__builtin_expect(c->slot < SLOT_DESTROYED && c->own, 1))
		return objcache_own_alloc(c, flags);
	return alloc_merged(c, flags);
}

void objcache_free_slow(struct objcache *c, void *p)
{
	if (__builtin_expect(c->slot < SLOT_DESTROYED && c->own, 1))
		objcache_own_free(c, p);
	else
		free_merged(c, p);
}

/* unlink_cache's answers but NULL (unlinked). */
static const char not_linked[] = "no cache of the heap's";
static const char objects_out[] = "objects out";

/*
 * Unlinks c from sh's list and frees its slot, under heap->lock, if c is
 * on the list (a destroyed cache's struct is not) and counts no objects
 * out (else *live, their count); the counters' area into *area if the
 * slot was the last. The test, the count and the unlink are one hold:
 * until a review the test was a hold of its own, and of two destroys of
 * one cache at once the second, having passed it, walked off the list's
 * end. Returns NULL, or not_linked or objects_out.
 */
static const char *unlink_cache(struct spanheap *sh, struct objcache *c,
                                int64_t *live, int64_t **area)
{
	struct objcache **at = &sh->objcaches;
	while (*at && *at != c)
		at = &(*at)->next;
	if (!*at)
		return not_linked;
	if ((*live = objcache_live(c)) != 0)
		return objects_out;
	*at = c->next;
	sh->objcache_slots &= ~((uint64_t)1 << c->slot);
	if (!sh->objcache_slots) {
		*area = sh->objcache_counts;
		__atomic_store_n(&sh->objcache_counts, NULL, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* objcache_destroy's work once the heap is known (NULL: c is none of a
 * heap's): unlinks c and frees its blocks, or panics or refuses. */
static bool destroy_in(struct spanheap *sh, struct objcache *c)
{
	const char *why = not_linked;
	int64_t live = 0, *area = NULL;
	if (sh) {
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		why = unlink_cache(sh, c, &live, &area);
		mm_lock_release(&sh->heap->lock, irq);
	}
	if (why == not_linked)
		mm_panic("objcache: destroy of %p: no cache of the heap's (a "
		         "cache destroyed already?)",
		         (void *)c);
	if (why == objects_out) {
		mm_log("objcache: cache '%s' not destroyed: %s %lu (size "
		       "class %u)",
		       c->name,
		       live > 0 ? "objects of it still allocated:"
		                : "more frees than allocations (objects of "
		                  "another cache or kmalloc's freed to it):",
		       (unsigned long)(live > 0 ? live : -live), c->sizeclass);
		return false;
	}
	if (c->own)
		objcache_own_destroy(c);
	/* A call on c from now on goes out of line and panics, not counts
	 * through the counters' pointer of a freed struct: the block keeps
	 * these marks until it is reused (spanheap_meta_blocks.c). */
	c->fast_class = 0;
	c->free_class = OBJCACHE_NO_CLASS;
	__atomic_store_n(&c->slot, SLOT_DESTROYED, __ATOMIC_RELAXED);
	spanheap_meta_free(sh, area, AREA_BYTES);
	spanheap_meta_free(sh, c, sizeof(*c));
	return true;
}

bool objcache_destroy(struct objcache *c)
{
	if (!c)
		return true;
	spanheap_assert_can_sleep("objcache_destroy");
	/* The slot before c->sh: a destroyed cache's is past the last
	 * until its struct is reused. c->sh is not the struct's first word,
	 * which its block's free makes the free chain, so a destroy that
	 * read the slot just before another destroy's free still finds the
	 * heap, and then no c on its list. Atomic: that other destroy may
	 * be writing it (a misuse, told apart, not a data race). */
	unsigned slot = __atomic_load_n(&c->slot, __ATOMIC_RELAXED);
	return destroy_in(slot < SLOT_DESTROYED ? c->sh : NULL, c);
}

/* c's size into *size if c is on sh's list, looked for under the lock
 * that guards the list (heap->lock) before c is read; false, c not
 * read, if it is not there (destroyed, or another heap's). */
bool objcache_size_in(struct spanheap *sh, const struct objcache *c,
                      size_t *size)
{
	bool found = false;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	for (const struct objcache *at = sh->objcaches; at && !found;
	     at = at->next)
		found = at == c;
	if (found)
		*size = c->size;
	mm_lock_release(&sh->heap->lock, irq);
	return found;
}

/* Given the heap, c is looked for on its list before it is read: a
 * destroyed cache's struct may lie on a page given back and unmapped. */
bool objcache_destroy_in(struct spanheap *sh, struct objcache *c)
{
	if (!c)
		return true;
	spanheap_assert_can_sleep("objcache_destroy_in");
	return destroy_in(sh, c);
}
