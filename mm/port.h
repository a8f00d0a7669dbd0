/*
 * mm/port.h: the whole contract between the mm/ library and the OS it runs
 * in. mm/ includes nothing else from outside (tools/lint-mm checks it).
 *
 * Four implementations exist: kernel/mm_port.c (this kernel: page tables,
 * frame pool, irqsave spinlocks), tests/host/mm_port_posix.c (Linux user
 * space: mmap, madvise, pthread mutexes), which is how mm/ is tested under
 * sanitizers, fuzzed and benchmarked, malloc/port_prod.c (a process's
 * malloc, libmm_malloc.so) and tests/port/min_port.c (one CPU, no threads,
 * written from the guide alone). docs/PORTING.md shows how to write
 * another.
 *
 * Every hook says which contexts mm/ calls it from, and tools/lint-mm
 * checks that mm/ calls every hook and nothing else outside itself. No
 * hook is called with the heap lock (MM_RANK_HEAP) held: it is a leaf.
 * (The reports a port calls itself from a fault handler,
 * spanheap_where_log, run mm_log and mm_port_now_ns in the handler's
 * context, whatever locks the faulting code held.)
 * "Atomic callers" are interrupt handlers and code with interrupts
 * disabled: they never sleep and never wait for another CPU.
 *
 * It runs past the house's 200 lines for a header on purpose: it is the
 * one door to the host, and a porter reads it whole, hook by hook, with
 * the contexts each may be called from. Split into pieces it would be
 * several doors, and tools/lint-mm, which reads the list of hooks from
 * this file, would have several to read.
 */
#ifndef MM_PORT_H
#define MM_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C linkage for a port written in C++ (clang++: g++ has no _Atomic, which
 * mm/'s structs hold; docs/PORTING.md). */
#ifdef __cplusplus
extern "C" {
#endif

/* ---- Address space ---------------------------------------------------- */

/*
 * Reserves nbytes (a multiple of MM_PAGE_SIZE) of address space aligned to
 * align (a power of two >= MM_PAGE_SIZE), backed by nothing: touching it
 * faults until mm_port_map. Returns NULL if no such range is free.
 * Thread context, no mm lock held.
 */
void *mm_port_reserve(size_t nbytes, size_t align);

/*
 * Gives back a range mm_port_reserve returned, with nothing in it mapped:
 * a set-up that failed undoes its reservations, the latest first, so that
 * a retry (a smaller arena) has the address space. A port that cannot
 * give address space back may keep it. (No hook unmaps: palloc's init
 * maps what it needs of its metadata in one mm_port_map, all or nothing,
 * so a failed one has nothing mapped to give back.) Thread context, no
 * mm lock held.
 */
void mm_port_unreserve(void *addr, size_t nbytes);

/*
 * Backs [addr, addr + nbytes) (page aligned, inside a reservation, not
 * mapped yet) with zeroed memory, readable and writable: palloc's
 * metadata as the heap grows. All or nothing: returns false if memory ran
 * out, and then nothing of the range is mapped. Any context but NMI (an
 * atomic caller may grow the heap), no mm lock held; must not wait for
 * another CPU.
 */
bool mm_port_map(void *addr, size_t nbytes);

/*
 * Makes pages released by mm_port_unused_finish usable again,
 * zero-filled. The range may mix such pages with pages that are still
 * mapped; those keep their contents. All or nothing: returns false if
 * memory ran out, and then nothing in the range has changed (no page was
 * mapped, none unmapped), so the caller can give the run back as it was.
 * Any context but NMI, no mm lock held; the caller owns the pages, and no
 * CPU holds a TLB entry for the unmapped ones (mm/ returns scavenged pages
 * to the free set only after mm_port_unused_finish). Must not wait for
 * another CPU: atomic callers reach it.
 */
bool mm_port_used(void *addr, size_t nbytes);

/*
 * Makes later mm_port_used and mm_port_unused_begin calls on [addr, addr +
 * nbytes) (chunk aligned, inside a reservation) need no memory and no lock
 * but the port's own allocator's: the kernel allocates the range's
 * page-table pages now and keeps them (docs/DESIGN.md, "Scavenging: the
 * rules"). Returns false if memory ran out. Any context but NMI (atomic
 * callers may grow the heap), no mm lock held.
 */
bool mm_port_prepare(void *addr, size_t nbytes);

/*
 * mm_port_prepare for a guarded pool's reservation (spanheap_guard.c),
 * with one promise more: in [addr, addr + nbytes) a page that is not in
 * use (never made usable by mm_port_used, or given back by
 * mm_port_unused_begin) faults when touched, even in a port whose other
 * given-back pages stay readable (a hosted port that only drops them
 * with madvise(MADV_DONTNEED) and keeps them read-write). A port whose
 * unused pages always fault (the kernel) calls mm_port_prepare. The
 * promise ends with mm_port_unreserve of the range. Returns false,
 * nothing changed, if memory ran out or the port cannot keep the
 * promise. Thread context (spanheap_init), no mm lock held.
 */
bool mm_port_prepare_guarded(void *addr, size_t nbytes);

/*
 * Scavenging (the kernel's madvise(MADV_DONTNEED)) in two halves.
 * mm_port_unused_begin clears the mappings of pages the caller owns and
 * flushes this CPU's TLB, recording in the batch what is left to do;
 * mm_port_unused_finish shoots down the other CPUs' TLBs and returns the
 * memory. A frame goes back only after every CPU flushed it, and mm/
 * returns the pages to its free set only after finish.
 */
#define MM_UNUSED_BATCH_PAGES 256

/* A batch of pages being given back. mm/ only empties it
 * (mm_unused_batch_init) and never reads it: the port's begin counts
 * npages, widens [lo, hi) to bound the addresses touched and fills
 * cookie[] (the kernel: frames), for its finish. */
struct mm_unused_batch {
	size_t npages;
	uintptr_t lo, hi;
	uint64_t cookie[MM_UNUSED_BATCH_PAGES];
};

/* Empties b. Any context. */
static inline void mm_unused_batch_init(struct mm_unused_batch *b)
{
	b->npages = 0;
	b->lo = UINTPTR_MAX;
	b->hi = 0;
}

/*
 * Clears the mappings of [addr, addr + nbytes) into b, which must have room
 * (MM_UNUSED_BATCH_PAGES pages in all). Pages that are not mapped are
 * skipped. Takes no lock, allocates nothing, never waits for another CPU.
 * The range must be prepared and owned by the caller. Thread context.
 */
void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b);

/* Completes b (shootdown, then the memory back to the system) and empties
 * it. Thread context (it waits for other CPUs), no mm lock held. */
void mm_port_unused_finish(struct mm_unused_batch *b);

/* Pages the system could back right now (the kernel: free frames in the
 * pool). A hint for the low-watermark test. Any context, no lock taken. */
size_t mm_port_free_pages(void);

/* ---- Contexts, time and background threads ------------------------------ */

/*
 * True if the caller may sleep: thread context, interrupts enabled, no
 * spinlock (mm lock or the port's own) held, preemption enabled. mm/
 * checks it on entry to every thread-only path and mm_panics naming the
 * function, rather than hanging. mm/ itself unpins before any such path,
 * so a port whose pin does not disable interrupts may ignore pins here;
 * answering false while pinned catches a caller that sleeps pinned. Any
 * context; cheap.
 */
bool mm_port_can_sleep(void);

/*
 * Monotonic nanoseconds: the scavenger's report rate, the sweeper's
 * period and pacing, spanheap_init's magazine cookie, from thread context;
 * and from any context but NMI: the record of every large free or shrink
 * (spanheap_freed.c, every mode), the guarded pool's records, and poison
 * mode's records of callers (mm_port_callers).
 *
 * The clock: one for every CPU (times taken on different CPUs are
 * compared: a record's age, the last cycle's end), never decreasing on
 * one CPU, counting from any origin. mm/ reads a time another thread took
 * that is later than its own read (a race between the two reads, or
 * another CPU's clock a little ahead) as "just now": ages and intervals
 * from it are 0, never wrapped (tests/host/clock_step_test.c). A sleep
 * to a time is re-read against this clock after each wake, so
 * mm_event_wait must not end on a timeout before timeout_ns has passed
 * by this clock (early, mm/'s loop waits again, and would spin).
 */
uint64_t mm_port_now_ns(void);

/* CPU time the calling thread has used so far, for pacing: never
 * decreasing for a thread. The scavenger books the difference from its
 * own previous read (mheap_scav_thread.c's bg_book), so a coarse clock
 * delays its pacing to the next tick but loses none; the sweeper times
 * each cycle, a coarse tick counted or not (right on average). A clock
 * that never moves leaves both unpaced. Thread context. */
uint64_t mm_port_thread_cpu_ns(void);

/*
 * Starts fn(arg) on a thread of its own, for mm's background work (the
 * scavenger, the sweeper). Returns a handle for mm_port_thread_join, or
 * NULL if it cannot (a port without threads may always): mm/ logs it and
 * works on without that thread. Thread context, no mm lock held.
 */
struct mm_thread;
struct mm_thread *mm_port_thread_start(const char *name, void (*fn)(void *),
                                       void *arg);

/* Waits until t's fn has returned and t can no longer run, then frees
 * what the port allocated for it. Thread context, no mm lock held. */
void mm_port_thread_join(struct mm_thread *t);

/*
 * An event count: threads sleep until it is woken, with no lost wake-ups
 * and any number of waiters. A waiter reads the count (prepare), checks
 * its condition, and sleeps only if the count has not moved since:
 *
 *	for (;;) {
 *		uint64_t seen = mm_event_prepare(&e);
 *		if (condition())
 *			break;
 *		mm_event_wait(&e, seen, timeout_ns);
 *	}
 *
 * A waker makes the condition true, then calls mm_event_wake, which
 * advances the count and wakes every thread waiting on it. Counts are only
 * compared for equality and may wrap (the POSIX port keeps 32 bits). An
 * event must outlive every wake and wait call on it.
 */
typedef struct {
	_Alignas(16) unsigned char opaque[64];
} mm_event_t;

/* Prepares e; name is a string literal, kept for diagnostics. */
void mm_event_init(mm_event_t *e, const char *name);

/* The count now. Any context but NMI. */
uint64_t mm_event_prepare(mm_event_t *e);

/* Sleeps until the count differs from seen or timeout_ns passed. Returns
 * true if it moved (now or while asleep), false on a timeout. Thread
 * context (mm_port_can_sleep), no mm lock held. */
bool mm_event_wait(mm_event_t *e, uint64_t seen, uint64_t timeout_ns);

/* Advances the count and wakes every waiter. Any context but NMI; no mm
 * lock held (the kernel's event lock ranks below every mm lock; the host
 * test port panics on any). */
void mm_event_wake(mm_event_t *e);

/* Gives the CPU to another runnable thread, if any (the sweeper between
 * batches, spanheap_dump waiting for another's). Thread context, no mm
 * lock held. */
void mm_port_yield(void);

/*
 * Calls fn(cpu, arg) for every other CPU whose per-CPU caches mm/ may
 * have used, each at a moment when nothing on that CPU is pinned or
 * inside a fast path's restartable sequence, and nothing will be until fn
 * returns (the kernel stops the world; a user-space port holds the CPU's
 * slot). fn may take mm locks and must not sleep. With one CPU it calls
 * nothing and returns true. Returns false if the port cannot reach every
 * such CPU: having called nothing (a port that cannot stop the others;
 * the kernel's stop-the-world always can, or panics), or having called fn
 * for those it could reach (a user-space port
 * whose CPU is held by a thread for good). Then the CPUs not reached give
 * their caches back only themselves. mm/ calls it when memory runs out
 * (spanheap_reclaim), to release everything and to check other CPUs'
 * magazines (spanheap_check): rare and slow. Thread
 * context (mm_port_can_sleep), nothing pinned, no mm lock held.
 */
bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg);

/*
 * The port's own caches under memory pressure (the kernel's shrinkers):
 * called when the page heap refused a thread allocation, before the span
 * heap flushes every CPU's cache and sweeps (spanheap_reclaim), so that
 * objects the port's subsystems keep and could do without are freed
 * first and their pages come back with the sweep. Returns true if it
 * freed anything. Bounded work; it may allocate from the span heap, and
 * an allocation of its own that fails must not call it again (the port
 * marks the thread). Thread context (mm_port_can_sleep), nothing pinned,
 * no mm lock held. A port that does not define MM_PORT_RECLAIM gets the
 * default below, which frees nothing.
 */
#ifdef MM_PORT_RECLAIM
bool mm_port_reclaim(void);
#else
static inline bool mm_port_reclaim(void)
{
	return false;
}
#endif

/*
 * A shadow of the heap's objects for a byte-precise access checker (the
 * kernel's mm.kasan, kernel/kasan.c): in poison mode only (the poison and
 * red-zone paths, and large objects' allocation, resize and free), the
 * span heap says what [addr, +nbytes) of its arena now is. MM_SHADOW_OK:
 * nbytes accessible from addr (8-byte aligned; a last partial 8 bytes is
 * partly so); the others: inaccessible, from addr rounded up to 8 (the
 * bytes before are the object's whose tail it is), for the reason named.
 * Any context the heap's allocation or free is (interrupts too); takes no
 * lock of mm/'s and must allocate nothing. A port that does not define
 * MM_PORT_SHADOW gets the default below: no call is made at all.
 */
enum mm_shadow {
	MM_SHADOW_OK,
	MM_SHADOW_REDZONE,   /* a small object's slack past the bytes asked */
	MM_SHADOW_FREED,     /* a small object freed */
	MM_SHADOW_UNUSED,    /* an object never handed out, a span's tail */
	MM_SHADOW_PAGE_FREE, /* a span's or large object's pages given back */
};
#ifdef MM_PORT_SHADOW
void mm_port_shadow(void *addr, size_t nbytes, enum mm_shadow what);
#else
static inline void mm_port_shadow(void *addr, size_t nbytes,
                                  enum mm_shadow what)
{
	(void)addr, (void)nbytes, (void)what;
}
#endif

/*
 * Grace periods, for the named caches whose freed objects stay objects of
 * their type (OBJCACHE_TYPESAFE_BY_RCU, mm/objcache_own.h): a span that
 * such a cache empties goes back to the page heap only from func(head),
 * which the port runs after a grace period of its RCU (every read-side
 * section begun before the call has ended). head is inside the span's
 * memory, two words mm/ leaves alone until func runs; mm_port_call_rcu
 * must not allocate or sleep: any context a free is (interrupts too), no
 * mm lock held. func runs in thread context or a softirq, no mm lock
 * held. mm_port_rcu_barrier waits until every func queued before it has
 * run: thread context, no lock, may sleep (a cache's destroy). A port
 * without RCU leaves MM_PORT_RCU undefined: the defaults below are never
 * called, as objcache_create refuses the flag, saying why.
 */
struct mm_rcu_head {
	struct mm_rcu_head *next;
	void (*func)(struct mm_rcu_head *head);
};
#ifdef MM_PORT_RCU
#define MM_PORT_HAS_RCU 1
void mm_port_call_rcu(struct mm_rcu_head *head,
                      void (*func)(struct mm_rcu_head *head));
void mm_port_rcu_barrier(void);
#else
#define MM_PORT_HAS_RCU 0
static inline void mm_port_call_rcu(struct mm_rcu_head *head,
                                    void (*func)(struct mm_rcu_head *head))
{
	(void)head, (void)func;
}
static inline void mm_port_rcu_barrier(void)
{
}
#endif

/* ---- Per-CPU data ------------------------------------------------------- */

/*
 * Pins the caller to its CPU for the span heap's per-CPU caches: until
 * mm_port_unpin, nothing else runs on this CPU, not another thread and
 * not an interrupt handler (the kernel disables interrupts), so per-CPU
 * data needs no lock. Returns the CPU's index (< MM_MAX_CPUS) and the
 * state mm_port_unpin restores, in two registers. Pins nest. mm/ takes
 * an outermost pin with no mm lock held (a class's central lock is taken
 * inside one), so a port's pin may itself be a lock ranked below every mm
 * lock (a user-space port with one CPU: one mutex, counted per thread for
 * the nesting). Any context but NMI; cheap: it is on every allocation and
 * free, twice per alloc+free pair (on the slow paths only, with
 * MM_PORT_RSEQ below).
 *
 * The one pair of hooks a port may give inline, and should: a call costs
 * more than the pin itself. A port that defines MM_PORT_INLINE as the
 * name of one of its headers, in quotes (-DMM_PORT_INLINE='"x/pin.h"'),
 * provides both there as static inline functions; that header sees
 * struct mm_pin and must not include mm/ headers. tools/lint-mm allows
 * this one include.
 */
struct mm_pin {
	unsigned long state;
	unsigned long cpu; /* a full register: no zero-extension to index */
};

/* The most CPUs the port will ever run mm/ on (sizes per-CPU arrays); the
 * port asserts that its own limit is no larger. */
#define MM_MAX_CPUS 64

/* The cpu of a pin of mm_port_pin_fast that pinned nothing (below). */
#define MM_PIN_NONE MM_MAX_CPUS

#ifdef MM_PORT_INLINE
/* Under C linkage from C++ too: its functions are static inline. */
#include MM_PORT_INLINE
#else
struct mm_pin mm_port_pin(void);

/* Ends the pin p. */
void mm_port_unpin(struct mm_pin p);
#endif

/*
 * The span heap's fast paths pin with this pair (an alloc or a free from a
 * CPU's magazine), unless the port gives MM_PORT_RSEQ (below). A port may
 * give them in its MM_PORT_INLINE header (defining MM_PORT_PIN_FAST
 * there); else they are mm_port_pin and mm_port_unpin. mm_port_pin_fast
 * may, where mm_port_pin would have to take a CPU the slow way, return a
 * pin whose cpu is MM_PIN_NONE: nothing is pinned and nothing needs
 * ending. The fast paths then find that index's magazines empty and full
 * at once (as a CPU's before its slab is made), and their slow paths pin
 * with mm_port_pin. So the fast path of a port whose pin is usually a
 * thread's own slot (the host ports) tests nothing: mimalloc's empty heap
 * for a thread with none has the same effect. A pin naming a CPU is a pin
 * as mm_port_pin's, which mm_port_unpin ends too; mm_port_unpin_fast ends
 * it on the fast paths.
 */
#ifndef MM_PORT_PIN_FAST
static inline __attribute__((always_inline)) struct mm_pin
mm_port_pin_fast(void)
{
	return mm_port_pin();
}

static inline __attribute__((always_inline)) void
mm_port_unpin_fast(struct mm_pin p)
{
	mm_port_unpin(p);
}

/* These never name MM_PIN_NONE: the slow paths leave out its test (the
 * restartable sequences' slow ways pin for themselves). */
#define MM_PIN_FAST_MAY_BE_NONE 0
#else
#define MM_PIN_FAST_MAY_BE_NONE 1
#endif

/*
 * Restartable sequences (mm/rseq.h), instead of a pin on the fast paths.
 * An x86-64 port whose per-CPU data sits behind a segment base may define
 * MM_PORT_RSEQ in its MM_PORT_INLINE header, with
 *   MM_PORT_RSEQ_CPU       one instruction, a string, that loads this
 *                          CPU's index into the 64-bit asm operand %[cpu]
 *                          (the kernel: "movl %%gs:%c[cpu_off], %k[cpu]")
 *   MM_PORT_RSEQ_CPU_ARGS  the named input operands it uses
 *                          ([cpu_off] "i"(offsetof(struct cpu, id)))
 * The span heap's fast paths (a magazine's pop and push) then run as
 * restartable sequences and pin nothing: no interrupt is disabled. The
 * port's linker script keeps the section mm_rseq; the port calls
 * mm_rseq_init once at boot, before interrupts (spanheap_init refuses to
 * start without it), and mm_rseq_restart on entry to every interrupt
 * handler that may allocate, free, stop this CPU for another or switch
 * threads. Where a sequence cannot finish (an empty or full magazine) the
 * slow paths pin with mm_port_pin as ever, and their magazine work runs
 * pinned, which no sequence on that CPU can interleave with.
 * docs/PORTING.md has the steps.
 */

/* ---- Locks -------------------------------------------------------------- */

/*
 * An mm lock: a spinlock that disables interrupts on its CPU while held
 * (irqsave), so that interrupt handlers that allocate cannot deadlock
 * against the code they interrupted. Opaque to mm/: a 64-byte slot, and
 * the port checks with a _Static_assert that its own lock fits.
 */
typedef struct {
	_Alignas(16) unsigned char opaque[64];
} mm_lock_t;

/*
 * mm's lock ranks, in the order they may nest: a lock may be taken only
 * while every mm lock held has a lower rank. The port maps each onto its
 * own rank table (docs/PORTING.md), where other locks may sit between.
 */
enum mm_lock_rank {
	/* Reserved: no lock has this rank (the sweeper's state is under
	 * the class locks and atomics). Kept so that the ranks keep their
	 * numbers, rank 0 staying invalid (a zeroed lock's); every port's
	 * table has an entry for it. */
	MM_RANK_SWEEP = 1,
	/* A span heap size class's central lists (struct mcentral). Taken
	 * pinned (interrupts off). mm/ takes no lock under it (a refill, a
	 * fold and a sweep let it go before they reach the page heap); the
	 * order allows the ranks above it, as it does for every rank. */
	MM_RANK_CENTRAL,
	/* A palloc used on its own, outside any heap: the kernel's frame
	 * pool. The heap's port hooks take it (mm_port_used), never under
	 * the heap lock. */
	MM_RANK_PALLOC,
	/* A page heap (struct mheap): a leaf, nothing is taken under it. */
	MM_RANK_HEAP,
	/* A per-CPU allocator (struct pcpu, mm/pcpu.h): a leaf taken alone,
	 * in thread context, never with another mm lock held; nothing is
	 * taken under it. */
	MM_RANK_PCPU,
	/* A named cache with slabs of its own (mm/objcache_own.c): its slab
	 * lists. A leaf, taken for a few list and bitmap updates, with
	 * interrupts off, from any context a free is; never with another mm
	 * lock held, and nothing is taken under it. Last so that the ranks
	 * before it keep their numbers (the reports print them). */
	MM_RANK_OBJCACHE,
	MM_RANK_COUNT
};

/* Prepares l. name is a string literal, kept for diagnostics. */
void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank);

/* Disables interrupts, takes l, and returns the previous interrupt state
 * for mm_lock_release. Any context but NMI. */
unsigned long mm_lock_acquire(mm_lock_t *l);

/* Releases l and restores the interrupt state acquire returned. */
void mm_lock_release(mm_lock_t *l, unsigned long irq_state);

/* True if this CPU (thread, on the host) holds l; for assertions. */
bool mm_lock_held(const mm_lock_t *l);

/* ---- Diagnostics -------------------------------------------------------- */

/*
 * Reports broken state or a corrupting call (a bad free) and does not
 * return: the kernel panics; a host test port may record and longjmp,
 * and must then forget the pins and locks held at the panic itself (mm/
 * unwinds nothing). Any context, pinned or under a lock; mm/ dumps the
 * state that explains the failure first.
 */
__attribute__((noreturn, format(printf, 1, 2))) void mm_panic(const char *fmt,
                                                              ...);

/*
 * Logs one line (no trailing newline needed) for a refused call or a
 * report. Never called with the heap lock held by mm/'s own calls; under
 * spanheap_where_log, in the context of the fault handler that calls it.
 * Thread or IRQ context.
 */
__attribute__((format(printf, 1, 2))) void mm_log(const char *fmt, ...);

/*
 * The calling thread's return addresses, innermost first, up to max of
 * them into pcs; returns how many. pcs[0] is where this hook returns to
 * (in its caller), pcs[1] where that caller returns to, and so on.
 * For poison mode's records of who allocated and freed each object
 * (spanheap_track.c) and the guarded pool's: called, once the heap
 * keeps records, at every small allocation and free of a poison heap (the
 * free pinned), every large free or shrink, and every guarded object,
 * with no mm lock held, from any context but NMI, so it takes no lock,
 * never faults (a walk that meets a frame it cannot trust stops there)
 * and allocates nothing. A port that cannot walk its stacks safely
 * returns 0: spanheap_init asks, and a heap that gets 0 keeps no
 * records. mm/ drops its own first frames (up to 4) from a record: a
 * walk that stops inside mm/ records no stack.
 */
unsigned mm_port_callers(uintptr_t *pcs, unsigned max);

/* Writes a name for code address pc, a return address that
 * mm_port_callers gave, into buf (size bytes, terminated): "function+0x1c"
 * where the port knows its symbols (the function of pc - 1: a call that
 * never returns may be its caller's last instruction), the address in
 * hex where not. For reports, before a panic; any context. */
void mm_port_pc_name(uintptr_t pc, char *buf, size_t size);

/* ---- Constants shared with the port ------------------------------------- */

#define MM_PAGE_SHIFT 12
#define MM_PAGE_SIZE  ((uintptr_t)1 << MM_PAGE_SHIFT)

/* mm/ is for 64-bit targets with 64-bit longs (LP64) only: it keeps
 * arena addresses and sizes up to 2^47 in uintptr_t and unsigned long,
 * prints uint64_t with %lu, and fits a chunk's span-table entries in one
 * page. A 32-bit build would truncate them, some without a warning, so it
 * stops here. */
_Static_assert(sizeof(void *) == 8 && sizeof(long) == 8,
               "mm/ needs a 64-bit LP64 target (docs/PORTING.md)");

#ifdef __cplusplus
}
#endif

#endif
