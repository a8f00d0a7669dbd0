/*
 * The misuse matrix of the span heap (docs/DESIGN.md, "What misuse is
 * caught"): every entry that takes a caller's pointer (the rows: free,
 * realloc, usable size, a named cache's free, the page heap's free) given
 * every kind of bad pointer (the columns: freed objects at each stage of
 * their way back, interior pointers, a large object's tail and its second
 * free, foreign memory, another heap's, page-heap runs, the heap's own
 * metadata, another cache's objects). Each cell runs on a heap of its own
 * and expects a panic whose message holds the cell's words and the
 * pointer (and, for a pointer into a live span, "span [" and "size
 * class"), or no panic where the call is legal or the misuse is one the
 * heap cannot tell (a cache's object of the same class outside poison
 * mode). After the report the heap's and the page heap's checkers must
 * pass, and once the cell's own objects are freed no byte is in use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "spanheap_test_util.h"

static struct mheap heap, heap2;
static struct spanheap sh, sh2;
static struct objcache *c64, *c64b, *c128;
static int a_static_object;
static char *stack_addr; /* the cell runner's local array */
static void *keep[4];    /* the cell's live objects (freed after it) */
static size_t nkeep;
static void *run;       /* a page-heap run of 2 pages, or NULL */
static void *libc_mem;  /* another allocator's memory, or NULL */
static void *cache_obj; /* an object of cache_of, live */
static struct objcache *cache_of;

enum row { R_FREE, R_REALLOC, R_USABLE, R_CACHE, R_PAGES, NROWS };
static const char *const row_name[NROWS] = {
        "spanheap_free", "spanheap_realloc", "spanheap_usable_size",
        "objcache_free", "mheap_free_pages"};

/* A cell's expectation: NULL, a legal call (or an undetectable misuse);
 * else the words the panic must hold. */
struct column {
	const char *name;
	void *(*make)(void);
	const char *want[NROWS];
	bool span; /* the message names the live span and its class */
};

static void *kept(void *p)
{
	KEXPECT(p);
	if (p)
		keep[nkeep++] = p;
	return p;
}

/* 64 bytes; in poison mode 60, which its red zone leaves in the class of
 * 64-byte objects (an exact fit takes the next one). */
static size_t small_size;

static void *small(void)
{
	return kept(spanheap_alloc(&sh, small_size, 0));
}

static void *large(void)
{
	return kept(spanheap_alloc(&sh, 100000, 0)); /* 25 pages */
}

static void *null_ptr(void)
{
	return NULL;
}

static void *freed_in_magazine(void)
{
	small();
	void *p = spanheap_alloc(&sh, 64, 0);
	spanheap_free(&sh, p); /* CPU 0's magazine */
	return p;
}

static void *freed_pending(void)
{
	small();
	void *p = spanheap_alloc(&sh, 64, 0);
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* a pending bit: CPU 0 caches the span */
	mm_port_set_cpu(0);
	return p;
}

static void *freed_swept(void)
{
	void *p = freed_pending();
	spanheap_flush_cache(&sh); /* folds it: free in its span's bitmap */
	spanheap_sweep_cycle(&sh);
	return p;
}

static void *freed_span_gone(void)
{
	void *p = spanheap_alloc(&sh, 64, 0);
	spanheap_free(&sh, p);
	for (int i = 0;
	     i < 3 &&
	     mheap_span_is_span(mheap_span_lookup(&heap, (uintptr_t)p));
	     i++) {
		spanheap_flush_cache(&sh);
		spanheap_sweep_cycle(&sh);
	}
	KEXPECT(!mheap_span_is_span(mheap_span_lookup(&heap, (uintptr_t)p)));
	return p;
}

static void *freed_span_scavenged(void)
{
	void *p = freed_span_gone();
	spanheap_release_all(&sh);
	return p;
}

static void *small_plus1(void)
{
	return (char *)small() + 1;
}

static void *small_misaligned(void)
{
	return (char *)small() + 8;
}

static void *small_last(void)
{
	return (char *)small() + 63;
}

static void *large_plus1(void)
{
	return (char *)large() + 1;
}

static void *large_last(void)
{
	return (char *)large() + 100000 - 1;
}

static void *large_tail_page(void)
{
	return (char *)large() + 2 * MM_PAGE_SIZE;
}

static void *large_freed(void)
{
	void *p = spanheap_alloc(&sh, 100000, 0);
	spanheap_free(&sh, p);
	return p;
}

static void *past_arena(void)
{
	return (void *)(heap.arena_base + heap.cfg.arena_bytes);
}

static void *on_stack(void)
{
	return stack_addr;
}

static void *static_data(void)
{
	return &a_static_object;
}

/* The host's stand-in for the kernel's direct map: memory of libc's. */
static void *other_allocator(void)
{
	libc_mem = malloc(64);
	return libc_mem;
}

static void *page_run(void)
{
	run = mheap_alloc_pages(&heap, 2, 0);
	return run;
}

static void *other_heap(void)
{
	void *p = spanheap_alloc(&sh2, 64, 0);
	KEXPECT(p);
	return p;
}

static void *never_allocated(void)
{
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)small());
	return (char *)s->base + atomic_load(&s->marked) * 64;
}

static void *magazine_slab(void)
{
	spanheap_free(&sh, spanheap_alloc(&sh, 64, 0));
	return sh.caches[0].slab;
}

static void *kmalloc_object(void)
{
	return small();
}

static void *cache_object(struct objcache *c)
{
	cache_of = c;
	cache_obj = objcache_alloc(c, 0);
	KEXPECT(cache_obj);
	return cache_obj;
}

static void *same_class_cache_object(void)
{
	return cache_object(c64b);
}

static void *other_class_cache_object(void)
{
	return cache_object(c128);
}

#define DF        "double free"
#define GONE      "in no span (never allocated, or its span was freed)"
#define INTERIOR  "an interior pointer"
#define LARGE_IN  "an interior pointer of a large object"
#define FOREIGN   "foreign pointer"
#define SPANS     "an object of the span heap"
#define OUT       "outside the arena"
#define NOT_ALLOC "is not allocated"
#define ALL5(w)               \
	{                     \
		w, w, w, w, w \
	}
#define ALL4(w, p)            \
	{                     \
		w, w, w, w, p \
	}

static const struct column columns[] = {
        {"NULL", null_ptr, {NULL, NULL, NULL, NULL, OUT}, 0},
        {"freed, in a magazine",
         freed_in_magazine,
         {DF, "realloc of an object already freed",
          "usable size of an object already freed", DF, SPANS},
         1},
        {"freed, pending",
         freed_pending,
         {DF, "realloc of an object already freed",
          "usable size of an object already freed", DF, SPANS},
         1},
        {"freed, swept",
         freed_swept,
         {"not allocated (a double free?)",
          "realloc of an object that is "
          "not allocated",
          "usable size of an object that is not allocated",
          "not allocated (a double free?)", SPANS},
         1},
        {"freed, span given back", freed_span_gone, ALL4(GONE, NOT_ALLOC), 0},
        {"freed, span scavenged", freed_span_scavenged, ALL4(GONE, NOT_ALLOC),
         0},
        {"small, 1 byte in", small_plus1, ALL4(INTERIOR, SPANS), 1},
        {"small, misaligned", small_misaligned, ALL4(INTERIOR, SPANS), 1},
        {"small, last byte", small_last, ALL4(INTERIOR, SPANS), 1},
        {"large, 1 byte in", large_plus1, ALL4(LARGE_IN, SPANS), 1},
        {"large, last byte", large_last, ALL4(LARGE_IN, SPANS), 1},
        {"large, a tail page", large_tail_page, ALL4(LARGE_IN, SPANS), 1},
        {"large, freed", large_freed,
         ALL4("a large span freed twice", NOT_ALLOC), 0},
        {"past the arena", past_arena, ALL4(FOREIGN, OUT), 0},
        {"stack", on_stack, ALL4(FOREIGN, OUT), 0},
        {"static data", static_data, ALL4(FOREIGN, OUT), 0},
        {"another allocator's", other_allocator, ALL4(FOREIGN, OUT), 0},
        {"another heap's", other_heap, ALL4(FOREIGN, OUT), 0},
        {"a page-heap run", page_run, ALL4("page-heap memory", NULL), 0},
        {"never handed out",
         never_allocated,
         {"not allocated", "realloc of an object that is not allocated",
          "usable size of an object that is not allocated", "not allocated",
          SPANS},
         1},
        {"a magazine slab", magazine_slab, ALL4("magazine slabs", OUT), 0},
        /* Legal everywhere; to a cache, undetectable outside poison mode
         * (spanheap_misuse_matrix.caches_in_poison_mode). */
        {"kmalloc's, of the cache's class",
         kmalloc_object,
         {NULL, NULL, NULL, NULL, SPANS},
         1},
        {"another cache's, same class",
         same_class_cache_object,
         {NULL, NULL, NULL, NULL, SPANS},
         1},
        {"another cache's, other class",
         other_class_cache_object,
         {NULL, NULL, NULL, "the object is of span", SPANS},
         1},
};

/* p, given to a call that took it: the cell's cleanup leaves it. */
static void consumed(void *p)
{
	for (size_t i = 0; i < nkeep; i++)
		if (keep[i] == p)
			keep[i] = keep[--nkeep];
	if (p == cache_obj)
		cache_obj = NULL;
	if (p == run)
		run = NULL;
}

/* Row r's call of p; a realloc's new object is freed. */
static void call(enum row r, void *p)
{
	switch (r) {
	case R_FREE:
		spanheap_free(&sh, p);
		consumed(p);
		break;
	case R_REALLOC: {
		void *q = spanheap_realloc(&sh, p, 200, 0);
		consumed(p);
		spanheap_free(&sh, q);
		break;
	}
	case R_USABLE:
		(void)spanheap_usable_size(&sh, p);
		break;
	case R_CACHE:
		objcache_free(c64, p);
		consumed(p);
		break;
	case R_PAGES:
		mheap_free_pages(&heap, p, 2);
		consumed(p);
		break;
	case NROWS:
		break;
	}
}

static bool cell_heap(bool poison)
{
	nkeep = 0;
	run = libc_mem = cache_obj = NULL;
	if (!sh_heap_fresh_poison(&heap, &sh, poison))
		return false;
	small_size = poison ? 60 : 64;
	c64 = objcache_create(&sh, "m64", small_size, 0);
	c64b = objcache_create(&sh, "m64b", small_size - 4, 0);
	c128 = objcache_create(&sh, "m128", 128, 0);
	if (!c64 || !c64b || !c128 || c64b->sizeclass != c64->sizeclass) {
		ktest_fail_at(__FILE__, __LINE__,
		              "caches %p %p %p, classes "
		              "%u %u",
		              (void *)c64, (void *)c64b, (void *)c128,
		              c64 ? c64->sizeclass : 0,
		              c64b ? c64b->sizeclass : 0);
		return false;
	}
	return true;
}

/* Frees the cell's objects and checks that nothing is left in use. */
static void cell_cleanup(const char *where)
{
	for (size_t i = 0; i < nkeep; i++)
		spanheap_free(&sh, keep[i]);
	if (cache_obj)
		objcache_free(cache_of, cache_obj);
	if (run)
		mheap_free_pages(&heap, run, 2);
	free(libc_mem);
	sh_flush_cpus(&sh, 4);
	spanheap_sweep_cycle(&sh);
	struct spanheap_stats *st = malloc(sizeof(*st));
	KASSERT(st);
	spanheap_stats(&sh, st);
	if (st->bytes_in_use != 0)
		ktest_fail_at(__FILE__, __LINE__,
		              "%s: %zu bytes in use after "
		              "the cell's objects were freed",
		              where, st->bytes_in_use);
	free(st);
	SH_CHECK(&sh, where);
}

/* Runs cell (r, c): its call, its panic (or none), the checkers. */
static void run_cell(enum row r, const struct column *c, const char *want)
{
	char where[160], name[32];
	snprintf(where, sizeof(where), "%s(%s)", row_name[r], c->name);
	void *p = c->make();
	bool fired = MM_PORT_PANICS(call(r, p));
	if (mm_lock_held(&heap.lock)) /* the page heap's free panics in it */
		mm_lock_release(&heap.lock, 0);
	sh_unpin_after_panic();
	const char *msg = mm_port_last_panic();
	snprintf(name, sizeof(name), "%p", p);
	if (!want && fired)
		ktest_fail_at(__FILE__, __LINE__,
		              "%s: panic \"%s\", wanted "
		              "none",
		              where, msg);
	else if (want && !fired)
		ktest_fail_at(__FILE__, __LINE__,
		              "%s: no panic (wanted \"%s\")", where, want);
	else if (want && (!strstr(msg, want) || !strstr(msg, name) ||
	                  (c->span && (!strstr(msg, "span ") ||
	                               !strstr(msg, "size class")))))
		ktest_fail_at(__FILE__, __LINE__,
		              "%s: panic \"%s\" does not "
		              "say \"%s\", %s%s",
		              where, msg, want, name,
		              c->span ? ", the span and its class" : "");
	/* A heap the misuse broke is left as it is (its cleanup could
	 * panic out of the test). */
	if (sh_check_panics(&sh) || MM_PORT_PANICS(mheap_check(&heap))) {
		if (mm_lock_held(&heap.lock))
			mm_lock_release(&heap.lock, 0);
		ktest_fail_at(__FILE__, __LINE__, "%s: after the call: %s",
		              where, mm_port_last_panic());
		return;
	}
	cell_cleanup(where);
}

KTEST(spanheap_misuse_matrix, every_entry_and_every_bad_pointer)
{
	char stack_array[64];
	stack_addr = stack_array;
	for (enum row r = 0; r < NROWS; r++) {
		for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]);
		     i++) {
			KASSERT(cell_heap(false));
			KASSERT(sh_heap_fresh(&heap2, &sh2));
			run_cell(r, &columns[i], columns[i].want[r]);
			sh_heap_release(&heap2, &sh2);
			sh_heap_release(&heap, &sh);
		}
	}
}

static void *own_cache_object(void)
{
	return cache_object(c64);
}

/* Poison mode tells a cache's objects by their owner: kfree or krealloc
 * of a cache's object, and a free to cache m64 of kmalloc's object or of
 * another cache's of the same class, each panic naming the owners; the
 * usable size of a cache's object is its caller's to ask (as Linux's
 * ksize). The other cells are as outside poison mode. */
KTEST(spanheap_misuse_matrix, caches_in_poison_mode)
{
	static const struct {
		enum row r;
		struct column c;
	} cells[] = {
	        {R_FREE, {"m64's", own_cache_object, {"is cache 'm64''s"}, 1}},
	        {R_REALLOC,
	         {"m64's", own_cache_object, {[R_REALLOC] = "cache 'm64'"}, 1}},
	        {R_USABLE, {"m64's", own_cache_object, {NULL}, 1}},
	        {R_CACHE,
	         {"kmalloc's", kmalloc_object, {[R_CACHE] = "kmalloc"}, 1}},
	        {R_CACHE,
	         {"m64b's",
	          same_class_cache_object,
	          {[R_CACHE] = "'m64b'"},
	          1}},
	        {R_CACHE,
	         {"m128's",
	          other_class_cache_object,
	          {[R_CACHE] = "the object is of span"},
	          1}},
	};
	char stack_array[64];
	stack_addr = stack_array;
	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		KASSERT(cell_heap(true));
		KASSERT(sh_heap_fresh(&heap2, &sh2));
		run_cell(cells[i].r, &cells[i].c, cells[i].c.want[cells[i].r]);
		sh_heap_release(&heap2, &sh2);
		sh_heap_release(&heap, &sh);
	}
}
