/*
 * Thread life cycle: creation (struct and guarded stack, all or nothing),
 * the first instructions of a new thread, exit, and join.
 *
 * A struct thread comes from the span heap's "thread" cache (kmem_cache);
 * its stack is a kernel stack with a guard page (kstack.c), which kmalloc
 * cannot give. Both are freed by the joiner once the thread is dead and
 * off its CPU (sched.c invariant 2).
 * The boot threads (main and each CPU's idle thread) are made before the
 * heap exists: their structs are frames, reached through the direct map,
 * and are never freed but on a failed creation.
 *
 * Identity: each thread has an id, counted from 1 and never reused, and
 * callers hold a handle (thread.h): the struct, the id and the home CPU.
 * Each run queue keeps a table of the live threads homed there, by id
 * (struct runqueue.live), from creation (or adoption) until the join
 * frees the struct, which takes it out under the run-queue lock first
 * (thread_struct_free). thread_wake (sched.c) looks the handle up there,
 * under that lock, before it reads the struct: a handle kept past the join
 * then matches no live thread, and is refused without a read of memory
 * that may since be a newer thread's, something else's, or unmapped.
 * Joins check the list of all threads (join_claim) the same way.
 *
 * The list's readers (snapshots, the live stacks) are thread_info.c's.
 */
#include "kernel/thread.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/lockcheck.h"
#include "kernel/printk.h"
#include "kernel/shrinker.h"
#include "kernel/sched.h"
#include "kernel/sched_internal.h"
#include "kernel/stw.h"
#include "kernel/string.h"
#include "kernel/thread_testing.h"
#include "kernel/time.h"

_Static_assert(sizeof(struct thread) <= PAGE_SIZE,
               "a boot thread's struct fits a frame");

/* Ids count from 1: 0 is THREAD_NONE's and a freed struct's. */
static _Atomic uint64_t next_thread_id = 1;

/* sched_internal.h: the list of all threads and its lock (rank THREADS,
 * irqsave, taken alone). */
struct spinlock thread_list_lock = SPINLOCK_INIT("threads", LOCK_RANK_THREADS);
struct thread *thread_list_head;
static struct thread *all_threads_tail;

TEST_HOOK_DEFINE(thread_testing_join_lost);
TEST_HOOK_DEFINE(thread_testing_made);

static void list_add(struct thread *t)
{
	unsigned long irq = spin_lock_irqsave(&thread_list_lock);
	t->all_next = NULL;
	if (all_threads_tail)
		all_threads_tail->all_next = t;
	else
		thread_list_head = t;
	all_threads_tail = t;
	spin_unlock_irqrestore(&thread_list_lock, irq);
}

static void list_remove(struct thread *t)
{
	unsigned long irq = spin_lock_irqsave(&thread_list_lock);
	struct thread *prev = NULL;
	for (struct thread *p = thread_list_head; p;
	     prev = p, p = p->all_next) {
		if (p != t)
			continue;
		if (prev)
			prev->all_next = t->all_next;
		else
			thread_list_head = t->all_next;
		if (all_threads_tail == t)
			all_threads_tail = prev;
		break;
	}
	spin_unlock_irqrestore(&thread_list_lock, irq);
}

extern void thread_trampoline(void);

/* The thread structs made after heap_init (thread_cache_init). */
static struct objcache *thread_cache;

void thread_cache_init(void)
{
	thread_cache = kmem_cache_create("thread", sizeof(struct thread), 0);
	if (!thread_cache)
		panic("thread: cannot make the thread struct cache");
}

/* Where a thread struct comes from. */
enum thread_struct_src {
	FROM_HEAP,   /* thread_cache: any thread made after heap_init */
	FROM_FRAMES, /* a frame: the boot threads, made before the heap */
};

static struct thread *thread_struct_alloc(const char *name, struct cpu *c,
                                          enum thread_struct_src src)
{
	struct thread *t;
	if (src == FROM_FRAMES) {
		paddr_t pa = frame_alloc();
		t = pa ? phys_to_virt(pa) : NULL;
	} else {
		t = kmem_cache_alloc(thread_cache, 0);
	}
	if (!t)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->frame_struct = src == FROM_FRAMES;
	size_t n = strlen(name);
	if (n >= sizeof(t->name))
		n = sizeof(t->name) - 1;
	memcpy(t->name, name, n);
	t->id = atomic_fetch_add(&next_thread_id, 1);
	t->cpu = c;
	return t;
}

static struct thread **live_bucket(struct runqueue *rq, uint64_t id)
{
	return &rq->live[id % RQ_LIVE_BUCKETS];
}

/* Enters t in its run queue's table of live threads: thread_wake takes
 * handles to it from now on. A thread that is not a boot thread is
 * counted among the queue's threads in the same stretch under the lock:
 * counted later, a sched_check between would find the two disagree. */
static void live_add(struct thread *t)
{
	struct runqueue *rq = rq_of(t->cpu);
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	struct thread **b = live_bucket(rq, t->id);
	t->id_next = *b;
	*b = t;
	if (!t->frame_struct)
		rq->nthreads++;
	spin_unlock_irqrestore(&rq->lock, irq);
}

/* Whether t is in rq's table. Reads no struct outside it. Locking:
 * rq->lock held. */
static bool live_has_locked(struct runqueue *rq, const struct thread *t)
{
	for (unsigned i = 0; i < RQ_LIVE_BUCKETS; i++)
		for (struct thread *p = rq->live[i]; p; p = p->id_next)
			if (p == t)
				return true;
	return false;
}

struct thread *thread_live_locked(struct runqueue *rq, struct thread_handle h,
                                  const char **why)
{
	struct thread *p = *live_bucket(rq, h.id);
	while (p && p->id != h.id)
		p = p->id_next;
	if (p && p == h.t)
		return p;
	if (p)
		*why = "its id is another struct's";
	else if (h.id == 0 || h.id >= atomic_load(&next_thread_id))
		*why = "no thread has had its id";
	else if (live_has_locked(rq, h.t))
		*why = "joined already; its struct is a newer thread's";
	else
		*why = "joined and freed already";
	return NULL;
}

/* Takes t out of its run queue's table (if it got there) under the
 * run-queue lock, so that no wake holds it once this returns; then frees
 * it. t is off every queue (never queued, or dead and off its CPU). */
static void thread_struct_free(struct thread *t)
{
	struct runqueue *rq = rq_of(t->cpu);
	unsigned long irq = spin_lock_irqsave(&rq->lock);
	for (struct thread **p = live_bucket(rq, t->id); *p; p = &(*p)->id_next)
		if (*p == t) {
			*p = t->id_next;
			break;
		}
	spin_unlock_irqrestore(&rq->lock, irq);
	if (t->frame_struct)
		frame_free((paddr_t)((uintptr_t)t - DIRECT_MAP_BASE));
	else
		kmem_cache_free(thread_cache, t);
}

/* Lays out a new thread's stack so that context_switch "returns" into
 * thread_trampoline with r12 = t (see switch.S); RSP is then 16-aligned
 * so thread_entry starts with the ABI's alignment. */
static void init_stack(struct thread *t, void (*start)(void))
{
	uint64_t *top = (uint64_t *)t->stack.top;
	top[-1] = (uint64_t)(uintptr_t)start;
	for (int i = 2; i <= 7; i++) /* rbp, rbx, r12, r13, r14, r15 */
		top[-i] = 0;
	top[-4] = (uint64_t)(uintptr_t)t; /* r12 */
	t->saved_rsp = (uint64_t)(uintptr_t)&top[-7];
}

/* The first C code of every new thread (from thread_trampoline). */
__attribute__((noreturn)) void thread_entry(struct thread *t)
{
	sched_finish_switch(rq_of(t->cpu));
	cpu_sti();
	t->fn(t->arg);
	thread_exit();
}

/* A thread struct with a guarded stack laid out to start fn(arg) through
 * thread_trampoline; not on any queue. NULL, with nothing allocated, when
 * memory is short. */
static struct thread *thread_new(const char *name, struct cpu *c,
                                 void (*fn)(void *), void *arg,
                                 enum thread_struct_src src)
{
	struct thread *t = thread_struct_alloc(name, c, src);
	if (!t)
		return NULL;
	/* Short of frames, a creator that may sleep has the shrinkers and
	 * the heap give frames back, and tries once more (shrinker.h). */
	if (!kstack_alloc(THREAD_STACK_PAGES, &t->stack) &&
	    !(reclaim_frames() &&
	      kstack_alloc(THREAD_STACK_PAGES, &t->stack))) {
		thread_struct_free(t);
		return NULL;
	}
	t->fn = fn;
	t->arg = arg;
	init_stack(t, thread_trampoline);
	/* Blocked until its creator wakes it (the enqueue): left at 0,
	 * THREAD_RUNNING, it was running but not current to every reader
	 * from here on (a snapshot counted its CPU time from boot). */
	t->state = THREAD_BLOCKED;
	list_add(t);
	live_add(t);
	return t;
}

static struct cpu *pick_cpu(unsigned cpu_id)
{
	if (cpu_id != THREAD_ANY_CPU)
		return cpu_id < MAX_CPUS && atomic_load(&cpus[cpu_id].online)
		               ? &cpus[cpu_id]
		               : NULL;
	struct cpu *best = NULL;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!atomic_load(&cpus[i].online))
			continue;
		if (!best || runqueues[i].nthreads < rq_of(best)->nthreads)
			best = &cpus[i];
	}
	return best;
}

struct thread_handle thread_create(const char *name, void (*fn)(void *),
                                   void *arg, unsigned cpu_id)
{
	/* Named here, by its creator: without a function the new thread
	 * would fault at address 0, with nothing to say who made it. */
	if (!name || !fn)
		panic("thread_create: thread %s has no %s",
		      name ? name : "(null)", fn ? "name" : "function");
	/* It allocates the struct and stack with kmalloc's thread-only
	 * path: from an interrupt handler or with interrupts off it went
	 * on until an allocation happened to need a new span, and mm's
	 * panic then named the allocation, not this call. */
	char what[64];
	ksnprintf(what, sizeof(what), "thread_create(%s)", name);
	lockcheck_must_sleep(what);
	struct cpu *c = pick_cpu(cpu_id);
	if (!c)
		return THREAD_NONE;
	struct thread *t = thread_new(name, c, fn, arg, FROM_HEAP);
	if (!t)
		return THREAD_NONE;
	struct thread_handle h = thread_handle_of(t);
	TEST_HOOK(thread_testing_made, (uintptr_t)t);
	thread_wake(h); /* blocked since thread_new: this enqueues it */
	return h;
}

/*
 * If t is a boot thread, writes what it is into buf and returns true. The
 * boot threads (main, which runs kmain, and each CPU's idle thread) never
 * exit: nothing counts them among their run queue's threads, their
 * stacks are not theirs to free, and each CPU must have its idle thread.
 * They are the threads whose structs are frames.
 */
static bool is_boot_thread(const struct thread *t, char *buf, size_t n)
{
	if (!t->frame_struct)
		return false;
	if (t->cpu->idle == t)
		ksnprintf(buf, n, "cpu %u's idle thread", t->cpu->id);
	else
		ksnprintf(buf, n, "the boot CPU's first thread (kmain)");
	return true;
}

void thread_exit(void)
{
	/* Cannot refuse as a sleep does: panics naming the cause, test
	 * mode or not. */
	lockcheck_must_sleep("thread_exit");
	struct thread *self = thread_current();
	char boot[48];
	if (is_boot_thread(self, boot, sizeof(boot)))
		panic("thread_exit in thread %s, %s, which must never exit",
		      self->name, boot);
	cpu_cli();
	struct runqueue *rq = rq_of(this_cpu());
	spin_lock(&rq->lock);
	thread_current()->state = THREAD_DEAD;
	rq->nthreads--;
	sched_switch_locked(rq);
	panic("thread_exit: a dead thread was scheduled again");
}

static bool joinable(void *arg)
{
	struct thread *t = arg;
	struct runqueue *rq = rq_of(t->cpu);
	spin_lock(&rq->lock);
	bool done = t->state == THREAD_DEAD && !t->on_cpu;
	spin_unlock(&rq->lock);
	return done;
}

/* Claims h's thread for one join: false if h is no live thread's (its
 * struct on no list of live threads, or now a newer thread's: joined
 * already); panics if another join claimed it first or it is a boot
 * thread (which never exits). Under the threads lock, so the struct's
 * fields are not read unless it is live; the panics use a copy of the
 * name made there, for once the lock is dropped the join that claimed
 * it first may free the struct (and unmap its page). */
static bool join_claim(struct thread_handle h)
{
	char boot[48], name[THREAD_NAME_MAX];
	struct thread *t = h.t;
	unsigned long irq = spin_lock_irqsave(&thread_list_lock);
	struct thread *p = thread_list_head;
	while (p && p != t)
		p = p->all_next;
	bool live = p && t->id == h.id;
	bool never = live && is_boot_thread(t, boot, sizeof(boot));
	bool twice = live && !never && t->join_claimed;
	if (live && !never)
		t->join_claimed = true;
	if (never || twice)
		ksnprintf(name, sizeof(name), "%s", t->name);
	spin_unlock_irqrestore(&thread_list_lock, irq);
	if (twice)
		TEST_HOOK(thread_testing_join_lost, (uintptr_t)t);
	if (never)
		panic("thread_join: thread %s (id %llu at %p) is %s, which "
		      "never exits",
		      name, (unsigned long long)h.id, (void *)t, boot);
	if (twice)
		panic("thread_join: thread %s (id %llu at %p) joined by two "
		      "threads",
		      name, (unsigned long long)h.id, (void *)t);
	return live;
}

void thread_join(struct thread_handle h)
{
	struct thread *t = h.t;
	if (t == thread_current() && h.id == t->id)
		panic("thread_join: thread %s joins itself", t->name);
	/* Before the claim: refused in the checker's test mode, the wait
	 * below would return at once and t be freed while it runs. */
	if (!lockcheck_may_sleep("thread_join"))
		return;
	if (!join_claim(h)) {
		lockcheck_misuse("thread_join(id %llu at %p) on cpu %u: not a "
		                 "live thread (joined already?)",
		                 (unsigned long long)h.id, (void *)t,
		                 this_cpu()->id);
		return;
	}
	if (!waitq_wait_until(&thread_exit_wq, joinable, t))
		panic("thread_join: the wait for %s was refused after its "
		      "check passed: %s",
		      t->name, lockcheck_last_violation());
	list_remove(t);
	if (!t->boot_stack)
		kstack_free(&t->stack);
	thread_struct_free(t);
}

struct thread *thread_adopt_current(const char *name, bool idle)
{
	struct cpu *c = this_cpu();
	char buf[THREAD_NAME_MAX];
	const char *n = name;
	if (idle) {
		buf[0] = '\0';
		ksnprintf(buf, sizeof(buf), "%s/%u", name, c->id);
		n = buf;
	}
	struct thread *t = thread_struct_alloc(n, c, FROM_FRAMES);
	if (!t)
		return NULL;
	t->boot_stack = true;
	t->state = THREAD_RUNNING;
	t->on_cpu = true;
	t->slice_start_ns = time_now_ns();
	c->current = t;
	list_add(t);
	live_add(t);
	return t;
}

static void idle_entry(void *arg)
{
	sched_idle_loop();
}

struct thread *thread_alloc_idle(struct cpu *c)
{
	char name[THREAD_NAME_MAX];
	ksnprintf(name, sizeof(name), "idle/%u", c->id);
	/* Through thread_entry like any thread: the first switch to it
	 * must be finished (the run-queue lock released) before it idles. */
	struct thread *t = thread_new(name, c, idle_entry, NULL, FROM_FRAMES);
	if (t)
		t->state = THREAD_RUNNABLE;
	return t;
}
