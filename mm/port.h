/*
 * mm/port.h: the whole contract between the mm/ library and the OS it runs
 * in. mm/ includes nothing else from outside (tools/lint-mm checks it).
 *
 * Two implementations exist: kernel/mm_port.c (this kernel: page tables,
 * frame pool, irqsave spinlocks) and tests/host/mm_port_posix.c (Linux user
 * space: mmap, madvise, pthread mutexes), which is how mm/ is tested under
 * sanitizers, fuzzed and benchmarked. docs/PORTING.md shows how to write a
 * third.
 *
 * Every hook says which contexts mm/ calls it from. "Heap lock held" means
 * an mm lock of rank MM_RANK_HEAP is held by the caller: such hooks must not
 * take other locks, allocate, print, or sleep (the heap lock is a leaf).
 */
#ifndef MM_PORT_H
#define MM_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Address space ---------------------------------------------------- */

/*
 * Reserves nbytes (a multiple of MM_PAGE_SIZE) of address space aligned to
 * align (a power of two >= MM_PAGE_SIZE), backed by nothing: touching it
 * faults until mm_port_map. Returns NULL if no such range is free.
 * Thread context, no mm lock held.
 */
void *mm_port_reserve(size_t nbytes, size_t align);

/*
 * Backs [addr, addr + nbytes) (page aligned, inside a reservation, not
 * mapped yet) with zeroed memory, readable and writable. Returns false if
 * memory ran out; then nothing of the range is left mapped.
 * Thread context, no mm lock held.
 */
bool mm_port_map(void *addr, size_t nbytes);

/*
 * The scavenger's primitive (madvise(MADV_DONTNEED)): gives the memory
 * behind [addr, addr + nbytes) back to the system. The range stays
 * reserved; its contents are lost, and it must not be touched until
 * mm_port_used. Thread context, no mm lock held.
 */
void mm_port_unused(void *addr, size_t nbytes);

/*
 * Makes pages released by mm_port_unused usable again, zero-filled. The
 * range may mix such pages with pages that are still mapped; those keep
 * their contents. Returns false if memory ran out (then what this call
 * mapped is unmapped again). Thread context, no mm lock held; the caller
 * owns the pages.
 */
bool mm_port_used(void *addr, size_t nbytes);

/*
 * Makes later mm_port_used and mm_port_unused_begin calls on [addr, addr +
 * nbytes) (chunk aligned, inside a reservation) need no memory and no lock:
 * the kernel allocates the range's page-table pages now and keeps them
 * (DESIGN.md, "Unmapping under a leaf lock"). Returns false if memory ran
 * out. Thread context, no mm lock held. The POSIX port has nothing to do.
 */
bool mm_port_prepare(void *addr, size_t nbytes);

/* Scavenging with the heap lock held (DESIGN.md invariant 3), in two
 * halves: under the lock, mm_port_unused_begin clears the mappings and
 * flushes this CPU's TLB, recording in the batch what is left to do; after
 * unlocking, mm_port_unused_finish shoots down the other CPUs' TLBs and
 * returns the memory. A frame goes back only after every CPU flushed it. */
#define MM_UNUSED_BATCH_PAGES 256

struct mm_unused_batch {
	size_t npages;                          /* recorded so far */
	uintptr_t lo, hi;                       /* the address span touched */
	uint64_t cookie[MM_UNUSED_BATCH_PAGES]; /* the port's: e.g. frames */
};

/* Empties b. Any context. */
void mm_unused_batch_init(struct mm_unused_batch *b);

/*
 * Releases [addr, addr + nbytes) into b, which must have room for it
 * (MM_UNUSED_BATCH_PAGES pages in all). Takes no lock, allocates nothing,
 * never waits for another CPU: callable with the heap lock held. The range
 * must be mapped (mm_port_map or mm_port_used) and prepared.
 */
void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b);

/* Completes b (shootdown, memory back to the system) and empties it.
 * Thread context, no mm lock held. */
void mm_port_unused_finish(struct mm_unused_batch *b);

/* Pages the system could back right now (the kernel: free frames in the
 * pool). A hint for the low-watermark test. Any context, no lock taken. */
size_t mm_port_free_pages(void);

/* ---- Time and a background thread --------------------------------------- */

/* Monotonic nanoseconds. Any context. */
uint64_t mm_port_now_ns(void);

/* Starts fn(arg) on a thread of its own, for mm's background work (the
 * scavenger). Returns false if it cannot. Thread context, no mm lock. */
bool mm_port_thread_start(const char *name, void (*fn)(void *), void *arg);

/* CPU time the calling thread has used so far, for pacing. Thread
 * context. */
uint64_t mm_port_thread_cpu_ns(void);

/*
 * An event a background thread sleeps on: mm_event_wait returns after
 * mm_event_wake or when timeout_ns passed, whichever comes first (a wake
 * with no waiter is remembered once). wait: thread context, no mm lock;
 * wake: any context but NMI, never with the heap lock held.
 */
typedef struct {
	_Alignas(16) unsigned char opaque[64];
} mm_event_t;

void mm_event_init(mm_event_t *e, const char *name);
void mm_event_wait(mm_event_t *e, uint64_t timeout_ns);
void mm_event_wake(mm_event_t *e);

/* ---- Locks -------------------------------------------------------------- */

/*
 * An mm lock: a spinlock that disables interrupts on its CPU while held
 * (irqsave), so that interrupt handlers that allocate cannot deadlock
 * against the code they interrupted. Opaque to mm/; the port defines what
 * lives inside and checks that it fits.
 */
typedef struct {
	_Alignas(16) unsigned char opaque[64];
} mm_lock_t;

/* Lock ranks used by mm/; the port maps them onto its own rank table.
 * A lock may only be taken while holding locks of lower rank. */
enum mm_lock_rank {
	MM_RANK_FRAMES = 1, /* the physical frame pool's allocator */
	MM_RANK_HEAP = 2,   /* the heap: a leaf, nothing is taken under it */
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

/* ---- CPUs --------------------------------------------------------------- */

/* The most CPUs the port will ever run mm/ on (sizes per-CPU arrays). */
#define MM_MAX_CPUS 64

/*
 * Pins the caller to its CPU (disables interrupts on it) and returns the
 * previous state for mm_cpu_unpin; mm_cpu_id is stable in between. Used
 * around lock-free per-CPU caches. Any context but NMI.
 */
unsigned long mm_cpu_pin(void);
void mm_cpu_unpin(unsigned long irq_state);

/* The current CPU's index, < MM_MAX_CPUS. Call while pinned or holding an
 * mm lock. */
unsigned mm_cpu_id(void);

/* ---- Diagnostics -------------------------------------------------------- */

/*
 * Reports broken state or a corrupting call (a bad free) and does not
 * return: the kernel panics; a host test port may record and longjmp.
 * Any context; mm/ dumps the state that explains the failure first.
 */
__attribute__((noreturn, format(printf, 1, 2))) void mm_panic(const char *fmt,
                                                              ...);

/*
 * Logs one line (no trailing newline needed) for a refused call or a
 * report. Never called with the heap lock held. Thread or IRQ context.
 */
__attribute__((format(printf, 1, 2))) void mm_log(const char *fmt, ...);

/* ---- Constants shared with the port ------------------------------------- */

#define MM_PAGE_SHIFT 12
#define MM_PAGE_SIZE  ((uintptr_t)1 << MM_PAGE_SHIFT)

#endif
