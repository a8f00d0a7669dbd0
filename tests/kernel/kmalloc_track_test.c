/*
 * Poison mode's records of callers in the kernel (mm/spanheap_track.c,
 * the port's mm_port_callers: a frame-pointer walk of the running kernel
 * stack). With mm.debug_poison, every small kmalloc'ed object records its
 * last allocation and its last free: the time, the CPU and the stack,
 * whose return addresses the kernel's own symbol table names. Here they
 * must name the functions that allocated and freed, on the CPUs that did;
 * a timer interrupt's allocation and free are recorded too (the walk from
 * an interrupt handler stays on its stack and in the kernel's text).
 * Without the mode, nothing is recorded. The reports that print the
 * records are the harness's (kmalloc_double_free_callers).
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/heap.h"
#include "kernel/ksyms.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/heap_util.h"

/* Out of line, so that their return addresses are on the stacks. */
__attribute__((noinline)) static void *track_kmalloc_here(size_t size)
{
	void *p = kmalloc(size, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

__attribute__((noinline)) static void track_kfree_here(void *p)
{
	kfree(p);
	__asm__ volatile("" ::: "memory");
}

/* True if every one of t's return addresses is in the kernel's text. */
static bool stack_in_text(const struct spanheap_track *t)
{
	for (unsigned i = 0; i < t->npcs; i++) {
		uint64_t off;
		if (!ksyms_lookup(t->pc[i], &off))
			return false;
	}
	return true;
}

static void free_elsewhere(void *p)
{
	track_kfree_here(p);
	__asm__ volatile("" ::: "memory"); /* a frame of its own */
}

KTEST(kmalloc_track, records_name_the_callers_and_cpus)
{
	struct spanheap_track a, f;
	void *p = track_kmalloc_here(72);
	KASSERT(p != NULL);
	if (!kspanheap.cfg.poison) {
		KEXPECT(!kspanheap.track);
		KEXPECT(!spanheap_object_tracks(&kspanheap, p, &a, &f));
		kfree(p);
		return;
	}
	KEXPECT(kspanheap.track); /* the port's walk gave a stack */
	unsigned me = this_cpu()->id;
	KASSERT(spanheap_object_tracks(&kspanheap, p, &a, &f));
	KEXPECT(a.ns != 0);
	KEXPECT_EQ(a.cpu, me);
	KEXPECT(track_names(&a, "track_kmalloc_here"));
	KEXPECT(stack_in_text(&a));
	unsigned other = atomic_load(&ncpus_online) > 1
	                         ? (me + 1) % atomic_load(&ncpus_online)
	                         : me;
	struct thread_handle t =
	        thread_create("track_free", free_elsewhere, p, other);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
	KASSERT(spanheap_object_tracks(&kspanheap, p, &a, &f));
	KEXPECT(f.ns >= a.ns);
	KEXPECT_EQ(f.cpu, other);
	KEXPECT(track_names(&f, "track_kfree_here"));
	KEXPECT(track_names(&f, "free_elsewhere"));
	KEXPECT(!track_names(&f, "track_kmalloc_here"));
	KEXPECT(stack_in_text(&f));
}

static _Atomic bool tick_claimed, tick_done;
static unsigned tick_cpu;
static void *tick_obj, *tick_victim;

/* Once, on the test's CPU: a KM_ATOMIC allocation and the free of an
 * object the thread allocated. */
static void track_tick(void)
{
	if (this_cpu()->id != tick_cpu || atomic_load(&tick_done) ||
	    atomic_exchange(&tick_claimed, true))
		return;
	tick_obj = kmalloc(48, KM_ATOMIC);
	kfree(tick_victim);
	atomic_store(&tick_done, true);
}

KTEST(kmalloc_track, an_interrupt_handlers_calls_are_recorded)
{
	if (!kspanheap.cfg.poison)
		KTEST_SKIP("records are poison mode's (mm.debug_poison)");
	tick_cpu = this_cpu()->id;
	tick_victim = track_kmalloc_here(48);
	KASSERT(tick_victim != NULL);
	tick_obj = NULL;
	atomic_store(&tick_claimed, false);
	atomic_store(&tick_done, false);
	sched_tick_hook = track_tick;
	while (!atomic_load(&tick_done))
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
	struct spanheap_track a, f;
	KASSERT(tick_obj != NULL);
	KASSERT(spanheap_object_tracks(&kspanheap, tick_obj, &a, &f));
	KEXPECT(a.ns != 0);
	KEXPECT_EQ(a.cpu, tick_cpu);
	KEXPECT(track_names(&a, "track_tick"));
	KEXPECT(stack_in_text(&a));
	KASSERT(spanheap_object_tracks(&kspanheap, tick_victim, &a, &f));
	KEXPECT(f.ns != 0);
	KEXPECT_EQ(f.cpu, tick_cpu);
	KEXPECT(track_names(&f, "track_tick"));
	KEXPECT(track_names(&a, "track_kmalloc_here"));
	kfree(tick_obj);
	heap_settle();
}
