/*
 * Kernel stacks made and freed on every CPU at once, on the real kernel
 * with the lock checker on. Elsewhere stacks are made and freed one at a
 * time (the tests create threads from one thread and join them from one),
 * so no other test takes slots, maps and unmaps their pages and shoots
 * them down from several CPUs together: here a worker on every CPU makes
 * stacks of 1 to KSTACK_MAX_PAGES pages, fills them with its pattern,
 * checks them (and their guard) and frees them, or hands them to another
 * CPU to check and free. At the end kstack_check finds every slot's pages
 * as its state says, and the frame pool is where it started.
 */
#include <stdatomic.h>

#include "arch/x86_64/layout.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "mm/mheap.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/mheap_ctx_util.h"

/* Each free shoots down on every CPU, which under TCG costs about in
 * proportion to the vCPUs (10 ms at -smp 4, 40 at -smp 8 on two host
 * cores): each of n workers makes STORM_WORK / n^2 stacks (160 in all at
 * -smp 4, 80 at -smp 8; 4 s at -smp 4). The mutant that gives a slot
 * back before its pages are unmapped needs three times that to be seen
 * (8 bad words in 480 stacks at -smp 4, 10 s; none at this size): the
 * storm is the slots' concurrency check, kstack_check its judge. */
#define STORM_WORK   640
#define STORM_LIVE   6
#define STORM_SLOTS  8
#define STORM_STRIDE 512 /* bytes between pattern words */

static struct spinlock handoff_lock =
        SPINLOCK_INIT("kstack_handoff", LOCK_RANK_TEST_LOW);
static struct kstack handoff[STORM_SLOTS];  /* by handoff_lock; top 0: none */
static unsigned handoff_owner[STORM_SLOTS]; /* by handoff_lock */
static _Atomic uint64_t storm_ops, storm_bad, storm_nulls;
static unsigned storm_each; /* stacks each worker makes; set before them */

static uint64_t word_of(unsigned owner, uintptr_t at)
{
	return ((uint64_t)owner << 56) ^ at;
}

static void stack_fill(const struct kstack *s, unsigned owner)
{
	for (uintptr_t at = s->bottom; at < s->top; at += STORM_STRIDE)
		*(uint64_t *)at = word_of(owner, at);
}

/* Frees s after checking the pattern of whoever filled it, and that its
 * guard is still one. */
static void storm_free(const struct kstack *s, unsigned owner)
{
	uint64_t bad = !kstack_is_guard(s->guard) || kstack_is_guard(s->bottom);
	for (uintptr_t at = s->bottom; at < s->top; at += STORM_STRIDE)
		bad += *(const uint64_t *)at != word_of(owner, at);
	atomic_fetch_add(&storm_bad, bad);
	kstack_free(s);
}

/* Swaps s into the hand-off table and frees the stack it displaces: that
 * one was filled on another CPU, most of the time. */
static void hand_off(const struct kstack *s, unsigned owner, uint64_t *rnd)
{
	unsigned k = next_rand(rnd) % STORM_SLOTS;
	unsigned long irq = spin_lock_irqsave(&handoff_lock);
	struct kstack old = handoff[k];
	unsigned old_owner = handoff_owner[k];
	handoff[k] = *s;
	handoff_owner[k] = owner;
	spin_unlock_irqrestore(&handoff_lock, irq);
	if (old.top)
		storm_free(&old, old_owner);
}

/* Makes a stack of 1 to KSTACK_MAX_PAGES pages into *s and fills it;
 * false (counted) if there was none. */
static bool storm_alloc(struct kstack *s, unsigned owner, uint64_t *rnd)
{
	unsigned n = 1 + (unsigned)(next_rand(rnd) % KSTACK_MAX_PAGES);
	if (!kstack_alloc(n, s)) {
		atomic_fetch_add(&storm_nulls, 1);
		return false;
	}
	atomic_fetch_add(&storm_bad, s->top - s->bottom != n * PAGE_SIZE ||
	                                     s->bottom - s->guard != PAGE_SIZE);
	stack_fill(s, owner);
	atomic_fetch_add(&storm_ops, 1);
	return true;
}

static void storm_worker(void *arg)
{
	unsigned owner = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (owner + 7);
	struct kstack live[STORM_LIVE];
	bool held[STORM_LIVE] = {0};
	for (unsigned i = 0; i < storm_each; i++) {
		unsigned k = (unsigned)(next_rand(&rnd) % STORM_LIVE);
		if (held[k]) {
			if (next_rand(&rnd) % 4 == 0)
				hand_off(&live[k], owner, &rnd);
			else
				storm_free(&live[k], owner);
		}
		held[k] = storm_alloc(&live[k], owner, &rnd);
		if (i % 16 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < STORM_LIVE; k++)
		if (held[k])
			storm_free(&live[k], owner);
}

/* Frees the stacks left in the hand-off table; no worker runs now. */
static void free_handoffs(void)
{
	for (unsigned k = 0; k < STORM_SLOTS; k++)
		if (handoff[k].top) {
			storm_free(&handoff[k], handoff_owner[k]);
			handoff[k].top = 0;
		}
}

/* The frames the kernel heap's own pages hold, in use or free and backed
 * (the workers' thread structs come and go through it), and those of its
 * span heap's metadata heap: a span-struct page or a magazine slab made
 * meanwhile is that heap's (mm/spanheap_meta.c; until a review this
 * counted kheap alone, and such a page made the sum one short). */
static size_t kheap_backed(void)
{
	struct mheap_stats k, m;
	mheap_stats(&kheap, &k);
	mheap_stats(&kspanheap.meta, &m);
	return k.in_use_pages + k.free_backed_pages + m.in_use_pages +
	       m.free_backed_pages;
}

/* Makes and frees at once as many stacks as the storm can hold, so that
 * the page tables of every slot it may take are made before the count. */
static void warm_slots(unsigned nw)
{
	static struct kstack warm[MAX_CPUS * (STORM_LIVE + 1) + STORM_SLOTS];
	unsigned n = nw * (STORM_LIVE + 1) + STORM_SLOTS, made = 0;
	while (made < n && kstack_alloc(KSTACK_MAX_PAGES, &warm[made]))
		made++;
	for (unsigned k = 0; k < made; k++)
		kstack_free(&warm[k]);
}

/*
 * Workers on every CPU make, fill, check and free stacks, a quarter of
 * them handed to another CPU to free, so that slots are taken and given
 * back, pages mapped and unmapped and shootdowns sent from every CPU
 * together. No pattern may break, no stack be refused; then every slot's
 * pages match its state and every frame is back.
 */
KTEST(kstack, storm_on_every_cpu_keeps_slots_and_frames)
{
	KTEST_NEED_FREE_FRAMES(MAX_CPUS * STORM_LIVE * KSTACK_MAX_PAGES);
	unsigned nw = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		nw += atomic_load(&cpus[i].online);
	storm_each = STORM_WORK / (nw * nw) + 1;
	warm_slots(nw);
	heap_settle(); /* nothing of kheap's moves the pool meanwhile */
	size_t baseline = frames_free_count(), kheap0 = kheap_backed();
	atomic_store(&storm_ops, 0);
	atomic_store(&storm_bad, 0);
	atomic_store(&storm_nulls, 0);
	struct thread_handle w[MAX_CPUS] = {0};
	for (unsigned i = 0, k = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online)) {
			w[k] = thread_create("kstack_storm", storm_worker,
			                     (void *)(uintptr_t)(i + 1), i);
			KASSERT(thread_handle_ok(w[k++]));
		}
	for (unsigned k = 0; k < nw; k++)
		thread_join(w[k]);
	free_handoffs();
	uint64_t ops = atomic_load(&storm_ops), bad = atomic_load(&storm_bad);
	uint64_t nulls = atomic_load(&storm_nulls);
	ktest_diag("%lu stacks made and freed on %u CPU%s", (unsigned long)ops,
	           nw, nw == 1 ? "" : "s");
	KEXPECT_EQ(bad, 0);   /* patterns, guards and shapes broken */
	KEXPECT_EQ(nulls, 0); /* stacks refused */
	KEXPECT_EQ(ops, (uint64_t)nw * storm_each);
	kstack_check();
	/* The threads' structs, if the guarded pool (mm.guard) took them,
	 * give their frames back at its drain. */
	spanheap_guard_drain_all(&kspanheap);
	KEXPECT_EQ(frames_free_count() + (kheap_backed() - kheap0), baseline);
	frames_check();
}
