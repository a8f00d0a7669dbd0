/*
 * mm/spanheap_structs.c: the span heap's fixed-size allocator for span
 * structs, and the all-spans array that statistics, the checker and the
 * leak and trace reports walk (sweep cycles sweep from the class lists).
 *
 * Purpose: a struct mspan for every span made, from any context, and a
 * list of every struct ever made. Modelled on the Go runtime's fixalloc
 * (mfixalloc.go) and h.allspans.
 *
 * Representation: structs are carved from whole pages of the span heap's
 * metadata heap (spanheap_meta.c: apart from the objects, so that no
 * overrun reaches them; STRUCTS_PER_PAGE a page) onto a free list; the
 * all-spans array (struct spanheap_spans) is a header and a vector in pages of
 * its own, with a count of references: the heap's live one and one per
 * snapshot. A bitmap of the structs in use (off the free list) lives in
 * the unused tails of the structs' pages (INUSE_BLOCK, below), so that
 * the statistics' walk reads the live structs only.
 *
 * Algorithm: spanheap_structs_reserve, without the lock, takes a page of
 * structs and, when the array would be too small, a new one twice its
 * size, into which it copies the entries from a snapshot; under the heap
 * lock it copies the few made since (at most SPANHEAP_SPANS_COPY_LOCKED,
 * else it unlocks and copies again: the array's length is the spans the
 * heap ever had, and the lock keeps interrupts off), installs the copy
 * (if it is still larger and holds what is there) and adds the page's
 * structs to it and to the free list. A thread caller grows the array at
 * three quarters full, an atomic one only when full.
 *
 * Invariants: a struct's in-use bit is set exactly while it is off the
 * free list (spanheap_check counts them); a struct is never given back
 * (a dead span's struct is reused for the next), so a stale pointer to
 * one always reads a span's fields, never foreign memory; every struct
 * is in the live array from its birth; an array replaced by a larger one
 * stays until the last snapshot that walks it is put (invariant 2 in
 * spanheap.c: readers hold the heap lock or walk a snapshot taken under
 * it).
 *
 * Locking: the heap's lock (MM_RANK_HEAP, a leaf) guards the free list,
 * the counts, the live array and the in-use bits' writes (atomic, as
 * the statistics read them without it); the metadata heap (whose lock
 * ranks as the page heap's and is never taken with it) is called with
 * no lock held. The references are atomic.
 *
 * Limits: the structs' pages stay allocated (a few pages per thousand
 * spans the heap once had), and so does the array's length: a full walk
 * of it (the checker, the leak and trace reports) costs the heap's peak;
 * the statistics' costs a bitmap word per 64 entries and the live
 * structs (until a review it read every struct: 4104 after a peak of
 * 4100 large objects freed, now the 6 in use, test spanheap_walk.*); an
 * atomic caller can make an array of at most MHEAP_ATOMIC_MAX_PAGES
 * pages (32K spans), so past that the array grows from threads, ahead
 * of need.
 */
#include "spanheap_internal.h"

#define STRUCTS_PER_PAGE (MM_PAGE_SIZE / sizeof(struct mspan))
_Static_assert(STRUCTS_PER_PAGE >= 8, "span structs are small");

/*
 * The in-use bitmap: a bit per struct, set while it is off the free list
 * (under the heap lock), so that a walk of the spans in use (statistics)
 * skips the peak's dead structs 64 at a time instead of reading each.
 * It needs no pages of its own: block b of INUSE_BLOCK structs keeps its
 * bits in the unused tail of the page of structs that holds its first,
 * entry b * INUSE_BLOCK of every array (pages are appended whole, and
 * INUSE_BLOCK is a multiple of a page's structs). The bits never move,
 * whatever array replaces the live one.
 */
#define INUSE_WORDS                                                 \
	((MM_PAGE_SIZE - STRUCTS_PER_PAGE * sizeof(struct mspan)) / \
	 sizeof(uint64_t))
#define INUSE_BLOCK (INUSE_WORDS * 64 / STRUCTS_PER_PAGE * STRUCTS_PER_PAGE)
_Static_assert(INUSE_WORDS >= 4, "a page of span structs keeps room for "
                                 "the in-use bitmap (spanheap_structs.c)");

/* Block b's bitmap, from the first struct of its page. */
static _Atomic uint64_t *inuse_bits(struct mspan *first)
{
	return (_Atomic uint64_t *)(first + STRUCTS_PER_PAGE);
}

static uint64_t inuse_bit(const struct mspan *s)
{
	return (uint64_t)1 << (s->idx % INUSE_BLOCK % 64);
}

/*
 * Gives back pages the span heap took from page heap h (the object heap
 * or its metadata heap) and no span
 * holds (an aligned allocation's head and tail, a failed span's, its own
 * structures'). mheap_alloc_pages marked them page-heap memory in the
 * span table (or, for a span's, MHEAP_SPAN_ENTRIES, left what they
 * held), and mheap_free_pages leaves the marks: their entries say
 * "no span" first, so that a stray pointer into them is told as one into
 * free pages. Any context but NMI, no lock held.
 */
void spanheap_pages_put(struct mheap *h, void *p, size_t npages)
{
	mheap_span_set(h, (uintptr_t)p, npages, NULL);
	mheap_free_pages(h, p, npages);
}

/* Pages for an all-spans array of cap entries (header included). */
static size_t spans_pages(size_t cap)
{
	size_t bytes = sizeof(struct spanheap_spans) + cap * sizeof(void *);
	return (bytes + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE;
}

/* An empty all-spans array with room for at least cap entries (all its
 * pages hold), with its live reference; NULL without memory. hflags:
 * enum mheap_alloc_flags. */
static struct spanheap_spans *spans_new(struct mheap *h, size_t cap,
                                        unsigned hflags)
{
	size_t np = spans_pages(cap);
	struct spanheap_spans *a = mheap_alloc_pages(h, np, hflags);
	if (!a)
		return NULL;
	*a = (struct spanheap_spans){.cap = (np * MM_PAGE_SIZE - sizeof(*a)) /
	                                    sizeof(void *),
	                             .npages = np};
	a->v = (struct mspan **)(a + 1);
	atomic_init(&a->refs, 1);
	return a;
}

/* The first all-spans array, room for a few pages of structs (set-up). */
bool spanheap_spans_init(struct spanheap *sh)
{
	sh->spans = spans_new(&sh->meta, STRUCTS_PER_PAGE * 4, 0);
	return sh->spans != NULL;
}

/* Drops a reference to an all-spans array; the last frees its pages. */
void spanheap_spans_put(struct spanheap *sh, struct spanheap_spans *a)
{
	if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
		spanheap_pages_put(&sh->meta, a, a->npages);
}

/* Puts a page of span structs in array a (the live one, with room for
 * them) and on the free list. Under the heap lock. */
static void structs_add_locked(struct spanheap *sh, struct spanheap_spans *a,
                               struct mspan *page)
{
	size_t first = a->len - a->len % INUSE_BLOCK;
	if (first == a->len) /* the page hosts a new block's bits */
		for (size_t w = 0; w < INUSE_WORDS; w++)
			atomic_store_explicit(&inuse_bits(page)[w], 0,
			                      memory_order_relaxed);
	_Atomic uint64_t *bits =
	        inuse_bits(first == a->len ? page : a->v[first]);
	for (size_t i = 0; i < STRUCTS_PER_PAGE; i++) {
		struct mspan *s = &page[i];
		*s = (struct mspan){0};
		s->idx = (uint32_t)a->len;
		s->inuse_word = &bits[a->len % INUSE_BLOCK / 64];
		a->v[a->len++] = s;
		s->next = sh->free_structs;
		sh->free_structs = s;
	}
	sh->nstructs += STRUCTS_PER_PAGE;
	sh->nstructs_free += STRUCTS_PER_PAGE;
}

/*
 * Copies entries [from, len) of the live array into na without the heap
 * lock, len the live array's length when it looks: an entry below an
 * array's len never changes, and every array holds the same structs in the
 * same order below its len (the live one only appends; a new one starts
 * as a copy of it), so a snapshot's prefix is the live array's. Returns
 * the entries na holds: from, if the live array no longer fits in na.
 */
static size_t spans_copy_unlocked(struct spanheap *sh,
                                  struct spanheap_spans *na, size_t from)
{
	struct spanheap_snapshot snap;
	spanheap_snapshot(sh, &snap);
	size_t to = snap.len + STRUCTS_PER_PAGE <= na->cap ? snap.len : from;
	for (size_t i = from; i < to; i++)
		na->v[i] = snap.arr->v[i];
	spanheap_snapshot_put(sh, &snap);
	return to;
}

/*
 * Takes the heap lock with na (if any) holding all but at most
 * SPANHEAP_SPANS_COPY_LOCKED of the live array's entries, or unable to
 * hold them all: the copy, as long as the heap is large, runs unlocked,
 * round by round while other CPUs add structs. *copied: the entries na
 * holds. Returns the interrupt state for mm_lock_release.
 */
static unsigned long lock_spans_caught_up(struct spanheap *sh,
                                          struct spanheap_spans *na,
                                          size_t *copied)
{
	for (;;) {
		if (na) {
			*copied = spans_copy_unlocked(sh, na, *copied);
			mheap_hook(sh->heap, MHEAP_HOOK_SPANS_COPIED);
		}
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		size_t len = sh->spans->len;
		if (!na || len + STRUCTS_PER_PAGE > na->cap ||
		    len - *copied <= SPANHEAP_SPANS_COPY_LOCKED)
			return irq;
		mm_lock_release(&sh->heap->lock, irq);
	}
}

void spanheap_not_set_up(const void *sh)
{
	mm_panic("spanheap: a heap not set up used (%p): its spanheap_init "
	         "failed or was not called",
	         sh);
}

/*
 * Makes sure a span struct is free, growing the allocator (and the
 * all-spans array) from the metadata heap. False if memory ran out. No lock
 * held; thread context, or atomic with MM_ATOMIC.
 *
 * A thread caller grows the array once it is three quarters full, ahead
 * of need: an atomic caller may take at most MHEAP_ATOMIC_MAX_PAGES pages
 * at once, which holds an array of 32K spans, so past that an atomic
 * allocation that had to grow the array failed while memory was
 * plentiful, until a thread grew it. Ahead, a quarter of the array is
 * left for atomic callers between two thread callers' refills.
 *
 * Every span's struct comes through here, so a heap with no array (its
 * init failed before or after making it, spanheap_init.c) is told at its
 * first span.
 */
bool spanheap_structs_reserve(struct spanheap *sh, unsigned flags)
{
	spanheap_assert_set_up(sh);
	struct mheap *h = sh->heap, *meta = &sh->meta;
	unsigned long irq = mm_lock_acquire(&h->lock);
	bool have = sh->free_structs != NULL;
	size_t need = sh->spans->len + STRUCTS_PER_PAGE;
	size_t cap = sh->spans->cap;
	mm_lock_release(&h->lock, irq);
	if (have)
		return true;

	struct spanheap_spans *na = NULL;
	size_t room = (flags & MM_ATOMIC) ? cap : cap - cap / 4;
	if (need > room) {
		na = spans_new(meta, cap * 2 > need ? cap * 2 : need,
		               mheap_flags_of(flags));
		if (!na && need > cap)
			return false; /* ahead of need, it can wait */
	}
	struct mspan *page = mheap_alloc_pages(meta, 1, mheap_flags_of(flags));
	if (!page) {
		if (na)
			spanheap_pages_put(meta, na, na->npages);
		return false;
	}
	if (na)
		mheap_hook(h, MHEAP_HOOK_SPANS_SIZED);
	struct spanheap_spans *old = NULL;
	size_t copied = 0;
	irq = lock_spans_caught_up(sh, na, &copied);
	struct spanheap_spans *cur = sh->spans;
	/* Other CPUs may have replaced the array meanwhile, more than once:
	 * na was sized from the cap read above, and must be bigger than
	 * what is there now and hold it. If not, it goes back, and the
	 * caller tries again if it still needs room (until this check, the
	 * copy ran past its end). */
	if (na && na->cap > cur->cap &&
	    cur->len + STRUCTS_PER_PAGE <= na->cap) {
		for (size_t i = copied; i < cur->len; i++)
			na->v[i] = cur->v[i];
		if (cur->len - copied > sh->spans_copied_locked_max)
			sh->spans_copied_locked_max = cur->len - copied;
		na->len = cur->len;
		sh->spans = na;
		old = cur; /* its live reference is dropped below */
		na = NULL;
		cur = sh->spans;
	}
	if (cur->len + STRUCTS_PER_PAGE <= cur->cap) {
		structs_add_locked(sh, cur, page);
		page = NULL;
	}
	mm_lock_release(&h->lock, irq);
	if (old)
		spanheap_spans_put(sh, old);
	if (na)
		spanheap_pages_put(meta, na, na->npages);
	if (page) /* the array is full and na could not replace it */
		spanheap_pages_put(meta, page, 1);
	return true;
}

/* A free span struct, or NULL. Locking: the heap lock. */
struct mspan *spanheap_struct_get_locked(struct spanheap *sh)
{
	struct mspan *s = sh->free_structs;
	if (s) {
		sh->free_structs = s->next;
		sh->nstructs_free--;
		s->next = NULL;
		atomic_fetch_or_explicit(s->inuse_word, inuse_bit(s),
		                         memory_order_relaxed);
	}
	return s;
}

void spanheap_struct_put_locked(struct spanheap *sh, struct mspan *s)
{
	atomic_fetch_and_explicit(s->inuse_word, ~inuse_bit(s),
	                          memory_order_relaxed);
	s->next = sh->free_structs;
	sh->free_structs = s;
	sh->nstructs_free++;
}

/* Relaxed loads: a bit set before the snapshot was set under the heap
 * lock it took, and is seen; one changed since may be read either way,
 * as the struct it names may be made or freed meanwhile (readers check
 * its state, invariant 2's walks always did). */
size_t spanheap_snapshot_next_inuse(const struct spanheap_snapshot *snap,
                                    size_t i)
{
	while (i < snap->len) {
		size_t b = i / INUSE_BLOCK, off = i % INUSE_BLOCK;
		_Atomic uint64_t *bits =
		        inuse_bits(snap->arr->v[b * INUSE_BLOCK]);
		uint64_t w = atomic_load_explicit(&bits[off / 64],
		                                  memory_order_relaxed) &
		             (~(uint64_t)0 << (off % 64));
		if (w) {
			size_t j = b * INUSE_BLOCK + off / 64 * 64 +
			           (size_t)__builtin_ctzll(w);
			return j < snap->len ? j : snap->len;
		}
		off = (off / 64 + 1) * 64;
		i = off < INUSE_BLOCK ? b * INUSE_BLOCK + off
		                      : (b + 1) * INUSE_BLOCK;
	}
	return snap->len;
}

size_t spanheap_structs_inuse_locked(struct spanheap *sh)
{
	size_t n = 0;
	struct spanheap_spans *a = sh->spans;
	for (size_t b = 0; b * INUSE_BLOCK < a->len; b++) {
		_Atomic uint64_t *bits = inuse_bits(a->v[b * INUSE_BLOCK]);
		for (size_t w = 0; w < INUSE_WORDS; w++)
			n += popcount64(atomic_load_explicit(
			        &bits[w], memory_order_relaxed));
	}
	return n;
}

bool spanheap_struct_inuse_marked(const struct mspan *s)
{
	return atomic_load_explicit(s->inuse_word, memory_order_relaxed) &
	       inuse_bit(s);
}

/* Takes a snapshot of the all-spans array (invariant 2). */
void spanheap_snapshot(struct spanheap *sh, struct spanheap_snapshot *snap)
{
	spanheap_assert_set_up(sh); /* the checker, stats, traces, leaks */
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	snap->arr = sh->spans;
	snap->len = snap->arr->len;
	snap->sweepgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_relaxed);
	atomic_fetch_add_explicit(&snap->arr->refs, 1, memory_order_relaxed);
	mm_lock_release(&sh->heap->lock, irq);
}

void spanheap_snapshot_put(struct spanheap *sh, struct spanheap_snapshot *snap)
{
	spanheap_spans_put(sh, snap->arr);
	snap->arr = NULL;
}
