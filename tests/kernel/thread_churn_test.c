/*
 * Thread churn on the real kernel, with the lock checker on: a spawner on
 * every CPU makes short-lived threads in waves, on its own CPU and on the
 * others, and joins them, so that structs (the "thread" cache) and stacks
 * are made and freed from every CPU at once. Each thread allocates and
 * frees objects of every kmalloc kind with a pattern of its own, leaves
 * some in graves for later threads to free (most of them a thread already
 * joined made), and ends one of three ways: returning, calling
 * thread_exit from deep in its calls, or after blocking on its spawner's
 * semaphore (a wait queue's entry is its own struct, which must be off
 * every queue when the join frees it). Elsewhere threads are made and
 * joined by one thread at a time (thread_race_test.c) or live for the
 * whole storm (kmalloc_storm_test.c).
 *
 * What must hold once every thread is joined: no pattern broken and no
 * allocation refused; every run queue's count of threads and the list of
 * all threads as before; kstack_check's slots as their state says; the
 * scheduler's, the span heap's and the frame pool's checks; and the
 * frame pool where it was after a warm-up round, but for the span heap's
 * own metadata pages, which stay by design: nothing a thread had (stack,
 * struct, objects) outlives its join.
 */
#include <stdatomic.h>

#include "arch/x86_64/layout.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/mheap_ctx_util.h"

/* Under TCG each join's stack free shoots down on every CPU, which costs
 * about in proportion to the vCPUs (10 ms at -smp 4): each of n spawners
 * makes 4 * CHURN_WORK / n^2 threads, at most CHURN_WORK (480 in all at
 * -smp 1 and 4, 960 at -smp 2, 240 at -smp 8; a few seconds at -smp 4). */
#define CHURN_WORK  480
#define CHURN_WAVE  8  /* threads a spawner has alive at most */
#define CHURN_OPS   24 /* allocations and frees a thread makes */
#define CHURN_LIVE  4  /* objects a thread holds at most */
#define CHURN_GRAVE 64

/* An object and who filled it. */
struct cobj {
	uint8_t *p;
	size_t n;
	unsigned owner;
};

static struct spinlock grave_lock =
        SPINLOCK_INIT("thread_churn_graves", LOCK_RANK_TEST_LOW);
static struct cobj graves[CHURN_GRAVE]; /* by grave_lock; p NULL: none */
static _Atomic uint64_t churn_bad, churn_nulls, churn_threads;
static unsigned churn_each; /* threads each spawner makes; set before */

static uint8_t pat(unsigned owner, size_t i)
{
	return (uint8_t)(owner * 13 + i / 64 + 1);
}

/* Small objects whole; larger ones every 64th byte and the last. */
static size_t pat_step(size_t n)
{
	return n <= 512 ? 1 : 64;
}

static void cobj_fill(struct cobj *o)
{
	for (size_t i = 0; i < o->n; i += pat_step(o->n))
		o->p[i] = pat(o->owner, i);
	o->p[o->n - 1] = pat(o->owner, o->n - 1);
}

/* Counts o bad unless its first keep bytes hold its pattern. */
static void cobj_check(const struct cobj *o, size_t keep)
{
	bool bad = keep == o->n && o->p[keep - 1] != pat(o->owner, keep - 1);
	for (size_t i = 0; i < keep && !bad; i += pat_step(o->n))
		bad = o->p[i] != pat(o->owner, i);
	if (bad)
		atomic_fetch_add(&churn_bad, 1);
}

static void cobj_free(struct cobj *o)
{
	if (!o->p)
		return;
	cobj_check(o, o->n);
	kfree(o->p);
	o->p = NULL;
}

/* A new object of a random kmalloc kind: small, large (a span of its
 * own), zeroed, aligned. */
static void cobj_new(struct cobj *o, unsigned owner, uint64_t *rnd)
{
	uint64_t r = next_rand(rnd);
	o->owner = owner;
	o->n = r % 8 == 0 ? 8192 + (r >> 8) % (128 << 10) : 1 + (r >> 8) % 2048;
	if (r % 8 == 1) {
		o->p = kzalloc(o->n, 0);
		for (size_t i = 0; o->p && i < o->n; i += 37)
			if (o->p[i]) {
				atomic_fetch_add(&churn_bad, 1);
				break;
			}
	} else if (r % 8 == 2) {
		size_t align = (size_t)16 << (r >> 20) % 9; /* up to 4 KiB */
		o->p = kmalloc_aligned(o->n, align, 0);
		if (o->p && (uintptr_t)o->p % align)
			atomic_fetch_add(&churn_bad, 1);
	} else {
		o->p = kmalloc(o->n, 0);
	}
	if (!o->p) {
		atomic_fetch_add(&churn_nulls, 1);
		return;
	}
	cobj_fill(o);
}

/* Resizes o; what it kept must have kept its pattern. */
static void cobj_resize(struct cobj *o, uint64_t *rnd)
{
	size_t n = 1 + next_rand(rnd) % 6000;
	uint8_t *q = krealloc(o->p, n, 0);
	if (!q) {
		atomic_fetch_add(&churn_nulls, 1);
		return;
	}
	struct cobj kept = {q, o->n, o->owner};
	cobj_check(&kept, n < o->n ? n : o->n);
	o->p = q;
	o->n = n;
	cobj_fill(o);
}

/* Swaps o into a random grave and frees the object it displaces. */
static void bury(struct cobj *o, uint64_t *rnd)
{
	unsigned g = (unsigned)(next_rand(rnd) % CHURN_GRAVE);
	unsigned long irq = spin_lock_irqsave(&grave_lock);
	struct cobj old = graves[g];
	graves[g] = *o;
	spin_unlock_irqrestore(&grave_lock, irq);
	o->p = NULL;
	cobj_free(&old);
}

/* ---- The threads ----------------------------------------------------------
 */

/* How a short-lived thread ends. */
enum churn_end {
	END_RETURN,     /* returns from its function */
	END_EXIT_DEEP,  /* thread_exit, frames deep in its own calls */
	END_AFTER_WAIT, /* returns once its spawner's semaphore lets it */
	END_KINDS,
};

struct churn_arg {
	unsigned owner;
	enum churn_end end;
	struct semaphore *sema; /* its spawner's, on the spawner's stack */
};

/* One step on the live objects: a new one, or a free, resize or burial
 * of one. */
static void churn_step(struct cobj *live, unsigned owner, uint64_t *rnd)
{
	struct cobj *o = &live[next_rand(rnd) % CHURN_LIVE];
	if (!o->p) {
		cobj_new(o, owner, rnd);
		return;
	}
	uint64_t r = next_rand(rnd) % 4;
	if (r == 0)
		cobj_resize(o, rnd);
	else if (r == 1)
		bury(o, rnd);
	else
		cobj_free(o);
}

/* The thread's last objects: half left in graves, half freed. */
static void churn_leave(struct cobj *live, uint64_t *rnd)
{
	for (unsigned k = 0; k < CHURN_LIVE; k++)
		if (live[k].p && next_rand(rnd) % 2)
			bury(&live[k], rnd);
		else
			cobj_free(&live[k]);
	atomic_fetch_add(&churn_threads, 1);
}

static void exit_deep(unsigned depth, struct cobj *live, uint64_t *rnd);
/* Through a pointer the compiler cannot follow: every path of exit_deep
 * ends in thread_exit, which GCC calls infinite recursion. */
static void (*volatile exit_deeper)(unsigned, struct cobj *,
                                    uint64_t *) = exit_deep;

/* Ends the thread from depth calls down, its objects left first. */
static __attribute__((noinline)) void
exit_deep(unsigned depth, struct cobj *live, uint64_t *rnd)
{
	if (depth) {
		exit_deeper(depth - 1, live, rnd);
		atomic_fetch_add(&churn_bad, 1); /* thread_exit returned */
		return;
	}
	churn_leave(live, rnd);
	thread_exit();
}

static void churn_thread(void *arg)
{
	const struct churn_arg *a = arg;
	uint64_t rnd = (uint64_t)a->owner * 0x9e3779b97f4a7c15ull | 1;
	struct cobj live[CHURN_LIVE] = {0};
	for (unsigned i = 0; i < CHURN_OPS; i++) {
		churn_step(live, a->owner, &rnd);
		if (i % 8 == 7)
			thread_yield();
	}
	/* Blocked holding its objects, on a wait queue whose entry is this
	 * thread's struct. */
	if (a->end == END_AFTER_WAIT && !sema_acquire(a->sema))
		atomic_fetch_add(&churn_bad, 1);
	if (a->end == END_EXIT_DEEP)
		exit_deep(4, live, &rnd);
	churn_leave(live, &rnd);
}

static unsigned online_ids[MAX_CPUS], n_online;

/* Makes waves of 1 to CHURN_WAVE threads, on any online CPU, until it
 * made churn_each; lets the waiting ones go and joins each wave. */
static void churn_spawner(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (me + 3);
	struct semaphore sema;
	sema_init(&sema, "thread_churn", 0, CHURN_WAVE);
	struct churn_arg args[CHURN_WAVE];
	struct thread_handle h[CHURN_WAVE];
	for (unsigned made = 0; made < churn_each;) {
		unsigned n = 1 + (unsigned)(next_rand(&rnd) % CHURN_WAVE);
		if (n > churn_each - made)
			n = churn_each - made;
		int waiting = 0;
		for (unsigned i = 0; i < n; i++, made++) {
			uint64_t r = next_rand(&rnd);
			args[i] = (struct churn_arg){
			        me << 16 | made,
			        (enum churn_end)(r % END_KINDS), &sema};
			unsigned cpu =
			        (r >> 8) % 4 == 0
			                ? THREAD_ANY_CPU
			                : online_ids[(r >> 16) % n_online];
			h[i] = thread_create("churn", churn_thread, &args[i],
			                     cpu);
			if (!thread_handle_ok(h[i]))
				atomic_fetch_add(&churn_nulls, 1);
			else
				waiting += args[i].end == END_AFTER_WAIT;
		}
		while (waiting-- > 0)
			sema_release(&sema);
		for (unsigned i = 0; i < n; i++)
			if (thread_handle_ok(h[i]))
				thread_join(h[i]);
	}
	sema_check(&sema);
}

/* A spawner on every online CPU, each making `each` threads; joins them
 * and frees what the graves hold. */
static void churn_run(unsigned each)
{
	struct thread_handle s[MAX_CPUS];
	churn_each = each;
	for (unsigned k = 0; k < n_online; k++) {
		s[k] = thread_create("churn_spawner", churn_spawner,
		                     (void *)(uintptr_t)(k + 1), online_ids[k]);
		KASSERT(thread_handle_ok(s[k]));
	}
	for (unsigned k = 0; k < n_online; k++)
		thread_join(s[k]);
	for (unsigned g = 0; g < CHURN_GRAVE; g++)
		cobj_free(&graves[g]);
}

/* Makes and frees at once as many stacks as a run holds alive, so that
 * the page tables of every slot it may take are made before the count. */
static void warm_slots(void)
{
	static struct kstack warm[MAX_CPUS * (CHURN_WAVE + 1) + 8];
	unsigned n = n_online * (CHURN_WAVE + 1) + 8, made = 0;
	while (made < n && kstack_alloc(THREAD_STACK_PAGES, &warm[made]))
		made++;
	for (unsigned k = 0; k < made; k++)
		kstack_free(&warm[k]);
}

/* The run queues' counts of threads, the count of all threads and the
 * thread structs out of their cache. */
struct churn_counts {
	unsigned per_cpu[MAX_CPUS];
	unsigned all;
	int64_t structs;
	size_t bytes_in_use; /* kmalloc's and the caches' objects */
};

/* The objects out of the "thread" cache (thread.c's structs); -1 if
 * there is no such cache. */
static int64_t thread_structs_live(void)
{
	static struct objcache_info info[OBJCACHE_MAX];
	size_t n = objcache_list(&kspanheap, info, OBJCACHE_MAX);
	for (size_t i = 0; i < n && i < OBJCACHE_MAX; i++)
		if (strcmp(info[i].name, "thread") == 0)
			return info[i].live;
	return -1;
}

static struct spanheap_stats churn_stats; /* large: not on a stack */

static void churn_count(struct churn_counts *c)
{
	for (unsigned k = 0; k < n_online; k++) {
		struct sched_cpu_info info = {0};
		KEXPECT(sched_cpu_info(online_ids[k], &info));
		c->per_cpu[k] = info.nthreads;
	}
	c->all = thread_snapshot(NULL, 0);
	c->structs = thread_structs_live();
	struct spanheap_stats *st = &churn_stats;
	spanheap_stats(&kspanheap, st);
	c->bytes_in_use = st->bytes_in_use;
}

/*
 * Spawners on every CPU make and join short-lived threads that allocate,
 * free, leave objects to later threads and end every way a thread ends.
 * After a warm-up round, the baseline; after the run, every thread's
 * stack, struct and objects are back: the same counts of threads, the
 * slots and checks clean, and the frame pool where it was but for the
 * span heap's metadata pages. Exact counts right after the joins hold
 * because thread_join frees a thread's stack (unmapped, its TLB entries
 * shot down, its frames back in the pool) and its struct itself, once the
 * thread is dead and off its CPU (sched_finish_switch clears on_cpu under
 * the run-queue lock before it wakes the joiners): no reaper, no free
 * deferred to a later switch (thread.c, checked by review). The guarded
 * pool's frames (mm.guard) are the one late return, drained below.
 */
/* The heap is grown by this much before the baseline: past the run's
 * peak, 14 MiB at -smp 8. */
#define CHURN_GROW_PAGES 8192

/* Finds the online CPUs, makes the page tables a run needs (of the heap's
 * arena grown past its peak, of the stacks' slots) and runs a small round,
 * then settles the heap: the baseline's state. Until the heap was grown
 * first, a run that grew it past the warm-up's peak came out 2 frames (its
 * arena's page tables) short. Returns the threads each spawner makes; 0
 * if the heap could not grow. */
static unsigned churn_prepare(void)
{
	n_online = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (atomic_load(&cpus[i].online))
			online_ids[n_online++] = i;
	void *grow = mheap_alloc_pages(&kheap, CHURN_GROW_PAGES, 0);
	if (!grow)
		return 0;
	mheap_free_pages(&kheap, grow, CHURN_GROW_PAGES);
	warm_slots();
	churn_run(2 * CHURN_WAVE);
	heap_settle();
	atomic_store(&churn_bad, 0);
	atomic_store(&churn_nulls, 0);
	atomic_store(&churn_threads, 0);
	unsigned each = 4 * CHURN_WORK / (n_online * n_online);
	return each > CHURN_WORK ? CHURN_WORK : each;
}

KTEST(thread, churn_on_every_cpu_gives_back_every_thread)
{
	KTEST_NEED_FREE_FRAMES(CHURN_GROW_PAGES);
	unsigned each = churn_prepare();
	KASSERT(each > 0);
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	struct mheap_stats hs0;
	mheap_stats(&kheap, &hs0);
	size_t grown0 = hs0.grown_pages, in_use0 = hs0.in_use_pages;
	struct churn_counts c0, c;
	churn_count(&c0);
	churn_run(each);
	churn_count(&c);
	uint64_t threads = atomic_load(&churn_threads);
	ktest_diag("%lu threads by %u spawners", (unsigned long)threads,
	           n_online);
	KEXPECT_EQ(atomic_load(&churn_bad), 0);
	KEXPECT_EQ(atomic_load(&churn_nulls), 0);
	KEXPECT_EQ(threads, (uint64_t)each * n_online);
	for (unsigned k = 0; k < n_online; k++)
		KEXPECT_EQ(c.per_cpu[k], c0.per_cpu[k]);
	KEXPECT_EQ(c.all, c0.all);
	KEXPECT(c0.structs >= 0);
	KEXPECT_EQ(c.structs, c0.structs);
	KEXPECT_EQ(c.bytes_in_use, c0.bytes_in_use);
	kstack_check();
	sched_check();
	/* Thread structs the guarded pool (mm.guard) took give their frames
	 * back at its drain. */
	spanheap_guard_drain_all(&kspanheap);
	heap_settle();
	size_t meta = span_meta_pages();
	struct mheap_stats hs;
	mheap_stats(&kheap, &hs);
	ktest_diag("frames free: %zu at the baseline, %zu now; span-heap "
	           "metadata pages %zu then, %zu now; heap grown %zu pages, "
	           "%zu then; %zu in use, %zu then",
	           frames0, frames_free_count(), meta0, meta,
	           (size_t)hs.grown_pages, grown0, (size_t)hs.in_use_pages,
	           in_use0);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
	frames_check();
}
