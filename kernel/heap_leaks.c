/*
 * kernel/heap_leaks.c: the leak scan over the kernel's heap
 * (mm/spanheap_leak.h; Linux's kmemleak), for the shell's leaks and the
 * tests; mm.debug_poison, whose records say which objects are live and
 * who made them.
 *
 * Roots: the image's data and bss (less the boot stack) and the live
 * part of every thread's stack (thread_each_live_stack: from its saved
 * stack pointer, or a parked CPU's trap frame, which holds the
 * registers, to the top). The dead frames below are left out: read
 * whole, as kmemleak reads a task's stack, they kept every object whose
 * address an earlier call had left there (the first version's kernel
 * test found its leak kept by the boot stack's dead frames). Memory from
 * the page heap or the frame pool is not read: an object whose only
 * pointer lives there is reported (the kernel keeps none so today). The
 * IST stacks are not read: nothing runs on them while a CPU parks.
 *
 * The scan runs with the world stopped (stw_stop: every other CPU parked
 * with interrupts off, and so with no spinlock held, the heap's included)
 * and interrupts off on this CPU, so nothing allocates, frees or moves a
 * pointer meanwhile: registers of the parked CPUs were saved on their
 * stacks by the park's interrupt. Its memory is allocated before the
 * stop (kmalloc), with room for growth; if the heap grew past it
 * meanwhile, the scan is redone with more.
 *
 * Contexts: thread context, no lock held (stw_stop's rule).
 */
#include "kernel/heap.h"
#include "kernel/heap_debug.h"

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/sched.h"
#include "kernel/format.h"
#include "kernel/ksyms.h"
#include "kernel/printk.h"
#include "kernel/string.h"
#include "kernel/stw.h"
#include "kernel/time.h"

struct roots {
	struct spanheap_leak_range *v;
	size_t n, max;
};

static void add_root(uintptr_t lo, uintptr_t hi, void *arg)
{
	struct roots *r = arg;
	if (r->v && r->n < r->max)
		r->v[r->n] = (struct spanheap_leak_range){lo, hi};
	r->n++; /* counted past max: the caller sees it did not fit */
}

/* The image's data and bss, less the boot stack (its live part is its
 * thread's) and that stack's unmapped guard page. */
static void add_image(struct roots *r)
{
	add_root((uintptr_t)__data_start, (uintptr_t)__boot_stack_guard, r);
	add_root((uintptr_t)__boot_stack_top, (uintptr_t)__bss_end, r);
}

/* One scan into hl->work: the roots gathered and the heap read with the
 * world stopped. */
static long scan_stopped(struct heap_leaks *hl, struct roots *r,
                         uint64_t min_age_ns)
{
	stw_stop("leak scan");
	uint64_t t0 = time_now_ns();
	unsigned long flags = read_rflags();
	cpu_cli();
	r->n = 0;
	add_image(r);
	thread_each_live_stack(add_root, r);
	long n = r->n > r->max
	                 ? SPANHEAP_LEAK_RETRY
	                 : spanheap_leak_scan(&kspanheap, hl->work, hl->bytes,
	                                      r->v, r->n, min_age_ns, hl->max,
	                                      &hl->r);
	if (flags & RFLAGS_IF)
		cpu_sti();
	hl->stopped_ns = time_now_ns() - t0;
	stw_start();
	return n;
}

long heap_leaks_scan(struct heap_leaks *hl, uint64_t min_age_ns, size_t max)
{
	*hl = (struct heap_leaks){.max = max};
	if (!kspanheap.track)
		return SPANHEAP_LEAK_NO_RECORDS;
	size_t extra = 0;
	for (int tries = 0; tries < 8; tries++, extra = extra * 2 + 4096) {
		unsigned threads = thread_snapshot(NULL, 0);
		struct roots r = {.max = 2 + threads + 16 + extra / 256};
		r.v = kmalloc(r.max * sizeof(*r.v), 0);
		hl->bytes = spanheap_leak_work_bytes(&kspanheap, max) + extra;
		hl->work = kmalloc(hl->bytes, 0);
		long n = r.v && hl->work ? scan_stopped(hl, &r, min_age_ns)
		                         : HEAP_LEAKS_NOMEM;
		kfree(r.v);
		if (n != SPANHEAP_LEAK_RETRY) {
			hl->n = n;
			if (n < 0)
				heap_leaks_done(hl);
			return n;
		}
		heap_leaks_done(hl);
	}
	return SPANHEAP_LEAK_RETRY;
}

void heap_leaks_done(struct heap_leaks *hl)
{
	if (hl->work) /* no copy of a leak's address left behind */
		memset(hl->work, 0, hl->bytes);
	kfree(hl->work);
	hl->work = NULL;
}

const struct spanheap_leak *heap_leaks_list(const struct heap_leaks *hl,
                                            size_t *n)
{
	/* None once heap_leaks_done gave the list back (it said the scan's
	 * count with no list, and a print then read NULL). */
	*n = !hl->work || hl->n < 0    ? 0
	     : (size_t)hl->n < hl->max ? (size_t)hl->n
	                               : hl->max;
	return hl->work ? spanheap_leak_list(hl->work) : NULL;
}

void heap_leaks_print(const struct heap_leaks *hl)
{
	size_t n;
	const struct spanheap_leak *l = heap_leaks_list(hl, &n);
	uint64_t now = time_now_ns();
	for (size_t i = 0; i < n; i++) {
		char name[OBJCACHE_NAME_MAX + 1] = "";
		if (l[i].owner)
			objcache_owner_name(&kspanheap, l[i].owner, name);
		uint64_t age = now > l[i].alloc.ns ? now - l[i].alloc.ns : 0;
		bool guarded = spanheap_guard_owns(&kspanheap.guard,
		                                   (const void *)l[i].addr);
		/* Class 0: an object of a cache with slabs of its own. */
		char cls[24] = "a slab of its own";
		if (l[i].sizeclass)
			ksnprintf(cls, sizeof(cls), "size class %u",
			          l[i].sizeclass);
		printk("unreferenced object %#lx (%u bytes, %s%s%s%s%s), "
		       "allocated on CPU %u %llu ms ago:\n",
		       (unsigned long)l[i].addr, l[i].asked, cls,
		       guarded ? ", in the guarded pool" : "",
		       name[0] ? ", cache '" : "", name, name[0] ? "''s" : "",
		       l[i].alloc.cpu, (unsigned long long)(age / 1000000));
		heap_stack_print(l[i].alloc.pc, l[i].alloc.npcs);
	}
	if (hl->r.leaks > n)
		printk("... and %zu more\n", hl->r.leaks - n);
	printk("%zu unreferenced of %zu live objects (%zu reached, %zu "
	       "too young to judge); %zu words read, the world stopped for "
	       "%llu us\n",
	       hl->r.leaks, hl->r.objects, hl->r.reachable, hl->r.young,
	       hl->r.words, (unsigned long long)(hl->stopped_ns / 1000));
}

bool heap_leaks_report(uint64_t min_age_ns)
{
	struct heap_leaks hl;
	long n = heap_leaks_scan(&hl, min_age_ns, 64);
	if (n == SPANHEAP_LEAK_NO_RECORDS)
		printk("leaks: the heap keeps no records (boot with "
		       "mm.debug_poison)\n");
	else if (n == HEAP_LEAKS_NOMEM)
		printk("leaks: no memory for the scan\n");
	else if (n < 0)
		printk("leaks: the heap kept growing past the scan's memory; "
		       "try again\n");
	else
		heap_leaks_print(&hl);
	heap_leaks_done(&hl);
	return n >= 0;
}
