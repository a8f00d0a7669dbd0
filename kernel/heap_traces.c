/*
 * kernel/heap_traces.c: the heap's records of callers printed
 * (mm.debug_poison): a recorded stack, named; the live objects of a size
 * class or a named cache by the stack that allocated them (the shell's
 * alloctraces); and kmem_cache_destroy, which lists a refused cache's
 * live objects that way, as Linux's SLUB lists the objects left in a
 * cache at its shutdown; and the guarded pool's live objects (mm.guard,
 * the shell's guarded), as Linux's kfence/objects lists KFENCE's.
 *
 * The records are read with no lock (spanheap_alloc_traces_owned): a span
 * freed meanwhile gives its side table back, which mm.debug_pagealloc
 * unmaps at once, so the walk runs under the thread's fault hook, and a
 * fault ends it with a line, nothing held.
 */
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/heap_debug.h"

#include "arch/x86_64/trap.h"
#include "kernel/ksyms.h"
#include "kernel/printk.h"
#include "kernel/time.h"

void heap_stack_print(const uintptr_t *pc, uint32_t npcs)
{
	for (uint32_t i = 0; i < npcs && i < SPANHEAP_TRACK_PCS; i++) {
		char sym[96];
		ksyms_format_return(pc[i], sym, sizeof(sym)); /* returns */
		printk("    %016lx %s\n", (unsigned long)pc[i], sym);
	}
}

void heap_read_fault_print(const char *who, uint64_t cr2)
{
	printk("%s: a fault at %#lx while reading the heap (a span freed "
	       "meanwhile); try again\n",
	       who, (unsigned long)cr2);
}

/* The walk under the fault hook: the stacks into t, or -1 after a fault
 * (said). Its own function, so that nothing of the caller's is live
 * across fault_catch_arm's second return. */
static long traces_caught(const char *who, unsigned cls, uint32_t owner,
                          struct spanheap_trace *t, size_t max, size_t *rest)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) != 0) {
		heap_read_fault_print(who, fc.cr2);
		return -1;
	}
	size_t n = spanheap_alloc_traces_owned(&kspanheap, cls, owner, t, max,
	                                       rest);
	fault_catch_disarm(&fc);
	return (long)n;
}

bool heap_traces_print(const char *who, unsigned cls, uint32_t owner,
                       struct spanheap_trace *t, size_t max)
{
	size_t rest = 0;
	long n = traces_caught(who, cls, owner, t, max, &rest);
	if (n < 0)
		return false;
	uint64_t now = time_now_ns();
	for (long i = 0; i < n; i++) {
		uint64_t age = now > t[i].oldest_ns ? now - t[i].oldest_ns : 0;
		printk("%zu objects, %zu bytes, the oldest %llu ms old:\n",
		       t[i].objects, t[i].bytes,
		       (unsigned long long)(age / 1000000));
		heap_stack_print(t[i].pc, t[i].npcs);
	}
	if (rest)
		printk("%zu objects more, of stacks past these %ld\n", rest, n);
	if (!n && !rest)
		printk("none\n");
	return true;
}

bool kmem_cache_destroy(struct objcache *c)
{
	/* Given the heap: a second destroy panics even once the struct's
	 * page is unmapped (objcache.h). */
	if (objcache_destroy_in(&kspanheap, c))
		return true;
	struct objcache_info in;
	objcache_info(c, &in);
	/* A merged cache of large objects (sizeclass 0, no slabs of its
	 * own) has no records; slabs of their own keep theirs. */
	if (in.owner && (in.sizeclass || in.slab_pages) && kspanheap.track &&
	    in.live > 0) {
		struct spanheap_trace t[8]; /* 800 bytes of the stack */
		printk("kmem_cache_destroy: cache '%s''s live objects by the "
		       "stack that allocated them, most first:\n",
		       in.name);
		heap_traces_print("kmem_cache_destroy", in.sizeclass, in.owner,
		                  t, 8);
	}
	return false;
}

bool heap_guard_print(void)
{
	const struct spanheap_guard *g = &kspanheap.guard;
	if (!g->base) {
		printk("guarded: the heap has no guarded pool (boot with "
		       "mm.guard)\n");
		return false;
	}
	printk("guarded pool: %u slots at %#lx, 1 allocation in %u refills "
	       "sampled; live objects, by slot:\n",
	       g->nslots, (unsigned long)g->base, g->interval);
	uint64_t now = time_now_ns();
	unsigned live = 0;
	for (unsigned i = 0; i < g->nslots; i++) {
		/* One object's fields, or none: a slot freed or reused while
		 * read is left out. */
		struct spanheap_guard_obj o;
		struct spanheap_track a;
		if (!spanheap_guard_live(&kspanheap, i, &o, &a))
			continue;
		uint64_t age = now > a.ns ? now - a.ns : 0;
		printk("slot %u: %#lx, %u bytes asked, size class %u, "
		       "allocated %llu ms ago on CPU %u:\n",
		       i, (unsigned long)o.obj, o.asked, o.cls,
		       (unsigned long long)(age / 1000000), a.cpu);
		heap_stack_print(a.pc, a.npcs);
		live++;
	}
	if (!live)
		printk("none\n");
	return true;
}
