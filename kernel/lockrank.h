/*
 * The lock ranks: one table for every spinlock in the kernel, in the order
 * locks may nest. A CPU may take a lock only while every lock it holds has
 * a lower rank, and nothing while it holds a leaf. The checker
 * (lockcheck.c) enforces it at run time.
 *
 * The rule the checker taught us: a lock that is ever held with interrupts
 * enabled must rank below every lock an interrupt handler takes, because
 * the handler's locks nest inside whatever it interrupted. So shootdown,
 * the one lock held with interrupts on, comes first.
 *
 * mm/'s ranks (enum mm_lock_rank) map onto MM_SWEEP, MM_CENTRAL, FRAMES,
 * MM_OBJCACHE, HEAP and MM_PCPU here (kernel/mm_port.c).
 */
#ifndef KERNEL_LOCKRANK_H
#define KERNEL_LOCKRANK_H

#include <stdbool.h>

/* X(name, leaf, why), lowest rank first. */
#define LOCK_RANKS(X)                                                          \
	X(SHOOTDOWN, false,                                                    \
	  "serialises TLB shootdowns. Held with interrupts on (CPUs spinning " \
	  "for it still answer IPIs), so every lock an interrupt handler "     \
	  "takes must nest inside it")                                         \
	X(STW, false,                                                          \
	  "reserved: no kernel lock has it (stop-the-world holds stw_sema, "   \
	  "which sleeps); tests use it for a lock below every one an "         \
	  "interrupt takes")                                                   \
	X(SEMA, false,                                                         \
	  "reserved: no kernel lock has it; a semaphore's count is guarded "   \
	  "by its wait queue's lock (WAITQ); lock-checker tests use it")       \
	X(WAITQ, false,                                                        \
	  "a wait queue's list or an mm event's waiters; wake-ups enqueue "    \
	  "threads on run queues under it")                                    \
	X(RUNQUEUE, false,                                                     \
	  "a CPU's run queue and sleepers; the scheduler holds it across the " \
	  "context switch")                                                    \
	X(THREADS, false,                                                      \
	  "the list of all threads (thread_snapshot); taken alone, irqsave, "  \
	  "by creation, adoption, join and the shell's threads command")       \
	X(KSTACK, false, "kernel stack slots; released before mapping")        \
	X(SHRINKERS, true,                                                     \
	  "the shrinker registry (kernel/shrinker.c): the list and each "      \
	  "shrinker's scan count; taken alone, in thread context, never "      \
	  "across a callback")                                                 \
	X(MM_SWEEP, false,                                                     \
	  "mm: reserved (MM_RANK_SWEEP); mm/ has no lock of this rank")        \
	X(MM_CENTRAL, false,                                                   \
	  "mm: a size class's central lists, taken with interrupts off; mm/ "  \
	  "takes no lock under it (a refill drops it before asking the page "  \
	  "heap for a span), though the order allows the ranks above")         \
	X(KASAN, false,                                                        \
	  "the KASAN shadow's page mapping (kernel/kasan.c), irqsave, taken "  \
	  "by mm_port_used; vm and frames are taken under it (mm_port_map)")   \
	X(VM, false,                                                           \
	  "page-table pages: a walk that may create tables allocates frames "  \
	  "under it")                                                          \
	X(DMA, false,                                                          \
	  "the table of live DMA buffers (kernel/dma.c); irqsave, released "   \
	  "before the frame pool is asked or anything printed")                \
	X(FRAMES, false,                                                       \
	  "the physical frame pool (mm's MM_RANK_PALLOC); taken by table "     \
	  "creation under vm")                                                 \
	X(MM_RESERVE, false, "mm/ address-space reservations")                 \
	X(MM_PCPU, true,                                                       \
	  "mm's per-CPU allocator (MM_RANK_PCPU, mm/pcpu.c, the kernel's "     \
	  "alloc_percpu): its chunk table, maps and counters; a leaf taken "   \
	  "alone, irqsave, in thread context (and by meminfo's statistics)")   \
	X(RCU, false,                                                          \
	  "the list of callbacks waiting for a grace period (kernel/rcu.c); "  \
	  "irqsave, taken by call_rcu from any context, under any lock but "   \
	  "a leaf and the console; nothing is taken under it")                 \
	X(CONSOLE, false,                                                      \
	  "serial output; any code but a leaf holder may print, so it ranks "  \
	  "above all the others")                                              \
	X(MM_OBJCACHE, true,                                                   \
	  "a named cache with slabs of its own (mm/objcache_own.c, "           \
	  "MM_RANK_OBJCACHE): its slab lists and bitmaps; a leaf, irqsave, "   \
	  "taken by kmem_cache_alloc and _free from any context when the "     \
	  "CPU's stash is empty or full (pinned), and by the shrinks, "        \
	  "nothing taken, allocated or printed under it")                      \
	X(HEAP, true,                                                          \
	  "mm's page heap (MM_RANK_HEAP), its span heap's named caches "       \
	  "(mm/objcache.c) and mempools' reserves (mm/mempool.c): a leaf, "    \
	  "nothing is taken, allocated, printed or traced under it (design "   \
	  "invariant 1)")

/*
 * Test-only ranks, kept apart from the production order: each sits just
 * above the production rank it names, at an offset below LOCK_RANK_STEP.
 * X(name, above, offset, leaf, why).
 */
#define LOCK_TEST_RANKS(X)                                                   \
	X(TEST_LOW, MM_RESERVE, 1, false,                                    \
	  "lock-checker, scheduler and benchmark tests; the scheduler test " \
	  "takes it from the timer interrupt (sched_tick_hook, called "      \
	  "before sched_tick takes the run queue's lock)")                   \
	X(TEST_IRQ, SEMA, 1, false,                                          \
	  "lock-checker tests: a lock the timer interrupt takes, below the " \
	  "run queues' (a tick takes those too) and above the locks tests "  \
	  "hold with interrupts on")                                         \
	X(TEST_HIGH, MM_RESERVE, 2, false,                                   \
	  "lock-checker tests: above test_low")                              \
	X(TEST_LEAF, HEAP, 1, true, "lock-checker tests: a leaf")

/* Production ranks are spaced by LOCK_RANK_STEP so that test ranks fit
 * between them without renumbering anything. */
#define LOCK_RANK_STEP 8

enum lock_rank_index {
	LOCK_RANK_INDEX_NONE_,
#define LOCK_RANK_INDEX_(name, leaf, why) LOCK_RANK_INDEX_##name,
	LOCK_RANKS(LOCK_RANK_INDEX_)
#undef LOCK_RANK_INDEX_
	        LOCK_RANK_INDEX_COUNT
};

enum lock_rank {
#define LOCK_RANK_VALUE_(name, leaf, why) \
	LOCK_RANK_##name = LOCK_RANK_INDEX_##name * LOCK_RANK_STEP,
	LOCK_RANKS(LOCK_RANK_VALUE_)
#undef LOCK_RANK_VALUE_
#define LOCK_TEST_RANK_VALUE_(name, above, offset, leaf, why) \
	LOCK_RANK_##name = LOCK_RANK_##above + (offset),
	        LOCK_TEST_RANKS(LOCK_TEST_RANK_VALUE_)
#undef LOCK_TEST_RANK_VALUE_
};

/* The rank's name ("?" if there is no such rank). */
const char *lock_rank_name(enum lock_rank r);

/* True for a leaf: nothing may be taken while it is held. */
bool lock_rank_is_leaf(enum lock_rank r);

/* True when r is a rank of the table (production or test). */
bool lock_rank_exists(enum lock_rank r);

#endif
