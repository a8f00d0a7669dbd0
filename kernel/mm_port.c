/*
 * The kernel's implementation of mm/port.h: address space from the mm
 * region (layout.h), memory from the frame pool mapped through the kernel
 * page tables, irqsave spinlocks, and panic/printk for diagnostics.
 *
 * mm locks are the kernel's ranked ticket spinlocks (kernel/spinlock.c),
 * always taken irqsave; mm's ranks map as mm_ranks below says. */
#include "mm/port.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ksyms.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/stw.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "kernel/tlb.h"

_Static_assert(MM_PAGE_SIZE == PAGE_SIZE, "mm/ and the MMU agree on pages");
_Static_assert(sizeof(struct spinlock) <= sizeof(mm_lock_t),
               "mm_lock_t must hold the kernel's spinlock");

_Static_assert(MAX_CPUS <= MM_MAX_CPUS,
               "mm/'s per-CPU arrays cover every CPU the kernel runs");

#define RESERVE_UNDO_MAX 16
struct reserve_undo {
	uintptr_t base, prev_next;
};
/* Rank MM_RESERVE, irqsave; protects the bump pointer of the mm region
 * and the undo stack: the latest reservations, oldest first, each with the
 * pointer before it (its alignment gap included), so that
 * mm_port_unreserve gives back exactly a range mm_port_reserve returned,
 * latest first. Older ones than the stack holds are kept. */
static struct spinlock reserve_lock =
        SPINLOCK_INIT("mm_reserve", LOCK_RANK_MM_RESERVE);
static uintptr_t mm_region_next = MM_REGION_BASE;
static struct reserve_undo undo[RESERVE_UNDO_MAX];
static unsigned nundo;

/* mm's ranks in the kernel's table (lockrank.h): one entry each. */
static const enum lock_rank mm_ranks[] = {
        [MM_RANK_SWEEP] = LOCK_RANK_MM_SWEEP,
        [MM_RANK_CENTRAL] = LOCK_RANK_MM_CENTRAL,
        [MM_RANK_PALLOC] = LOCK_RANK_FRAMES,
        [MM_RANK_HEAP] = LOCK_RANK_HEAP,
        [MM_RANK_PCPU] = LOCK_RANK_MM_PCPU,
        [MM_RANK_OBJCACHE] = LOCK_RANK_MM_OBJCACHE,
};
_Static_assert(sizeof(mm_ranks) / sizeof(mm_ranks[0]) == MM_RANK_COUNT,
               "every mm rank has a kernel rank");

static struct spinlock *klock(const mm_lock_t *l)
{
	return (struct spinlock *)(uintptr_t)l->opaque;
}

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	if ((unsigned)rank >= MM_RANK_COUNT || mm_ranks[rank] == 0)
		panic("mm_lock_init: lock %s has no rank %d", name, rank);
	spin_init(klock(l), name, mm_ranks[rank]);
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	return spin_lock_irqsave(klock(l));
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	spin_unlock_irqrestore(klock(l), irq_state);
}

bool mm_lock_held(const mm_lock_t *l)
{
	return spin_held(klock(l));
}

bool mm_port_can_sleep(void)
{
	if (!(read_rflags() & RFLAGS_IF))
		return false;
	struct cpu *c = this_cpu(); /* threads never migrate */
	return c->irq_depth == 0 && c->preempt_count == 0 && c->nheld == 0 &&
	       c->current != NULL && c->idle != NULL && c->current != c->idle;
}

void mm_port_yield(void)
{
	thread_yield();
}

/*
 * Stops the world (kernel/stw.h) and calls fn for every other online CPU.
 * A parked CPU took the park IPI with interrupts on, so it is not pinned
 * (a pin disables interrupts), and one parked inside a magazine's
 * restartable sequence starts it over when it leaves the park
 * (irq_dispatch); its cache is the caller's until stw_start. Under an
 * existing stop by this CPU, no second one. The stopper holds no irqsave
 * lock (nothing pinned, no mm lock), as stw_stop requires.
 */
bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	bool stopped_here = stw_stopped_by_this_cpu();
	if (!stopped_here)
		stw_stop("mm: other CPUs' caches");
	unsigned self = this_cpu()->id;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online))
			fn(i, arg);
	if (!stopped_here)
		stw_start();
	return true;
}

/* Pinning (mm_port_pin, mm_port_unpin) is inline: kernel/mm_port_inline.h. */

void *mm_port_reserve(size_t nbytes, size_t align)
{
	if (nbytes == 0 || nbytes % PAGE_SIZE || align < PAGE_SIZE ||
	    (align & (align - 1)))
		return NULL;
	unsigned long irq = spin_lock_irqsave(&reserve_lock);
	uintptr_t base = align_up(mm_region_next, align);
	void *r = NULL;
	if (base >= mm_region_next &&
	    base + nbytes <= MM_REGION_BASE + MM_REGION_SIZE &&
	    base + nbytes > base) {
		if (nundo == RESERVE_UNDO_MAX) { /* the oldest stays for good */
			memmove(undo, undo + 1,
			        (RESERVE_UNDO_MAX - 1) * sizeof(undo[0]));
			nundo--;
		}
		undo[nundo++] = (struct reserve_undo){base, mm_region_next};
		mm_region_next = base + nbytes;
		r = (void *)base;
	}
	spin_unlock_irqrestore(&reserve_lock, irq);
	return r;
}

/* The region is handed out by a bump pointer: the latest reservation
 * alone can go back (mheap_init undoes its own, latest first), and only
 * whole, as reserved. Anything else is kept: a range that began below the
 * latest base would move the pointer under a live reservation, and the
 * next one would overlap it. */
void mm_port_unreserve(void *addr, size_t nbytes)
{
	uintptr_t base = (uintptr_t)addr;
	unsigned long irq = spin_lock_irqsave(&reserve_lock);
	if (nundo > 0 && base == undo[nundo - 1].base &&
	    base + nbytes == mm_region_next) {
		mm_region_next = undo[nundo - 1].prev_next;
		nundo--;
	}
	spin_unlock_irqrestore(&reserve_lock, irq);
}

/*
 * Takes n frames from the pool, all or none, as a list linked through
 * their first word (direct map): nothing is mapped until the caller has
 * them all, so a shortage undoes nothing that another CPU could see.
 * Returns 0 when the pool is short (the frames taken so far go back).
 * alloc: frame_alloc, or frame_alloc_lasting for frames mapped for good.
 */
static paddr_t frames_take(size_t n, paddr_t (*alloc)(void))
{
	paddr_t head = 0;
	for (size_t i = 0; i < n; i++) {
		paddr_t pa = alloc();
		if (!pa) {
			while (head) {
				paddr_t next = *(paddr_t *)phys_to_virt(head);
				frame_free(head);
				head = next;
			}
			return 0;
		}
		*(paddr_t *)phys_to_virt(pa) = head;
		head = pa;
	}
	return head;
}

/* Pops a frame off a frames_take list and zeroes it. */
static paddr_t frames_pop_zeroed(paddr_t *head)
{
	paddr_t pa = *head;
	*head = *(paddr_t *)phys_to_virt(pa);
	memset(phys_to_virt(pa), 0, PAGE_SIZE);
	return pa;
}

/* Frames mm_port_map took (metadata, mapped for good). */
static _Atomic size_t meta_frames;

size_t heap_meta_frames(void)
{
	return atomic_load_explicit(&meta_frames, memory_order_relaxed);
}

bool mm_port_map(void *addr, size_t nbytes)
{
	/* Page tables first (they stay), then every frame, then the PTEs:
	 * no step after the first allocation can fail. */
	uintptr_t base = (uintptr_t)addr;
	if (nbytes == 0)
		return true;
	if (vm_prepare_range(base, nbytes) != 0)
		return false;
	paddr_t list = frames_take(nbytes / PAGE_SIZE, frame_alloc_lasting);
	if (!list)
		return false;
	atomic_fetch_add_explicit(&meta_frames, nbytes / PAGE_SIZE,
	                          memory_order_relaxed);
	/* By page count: a range may end at 2^64 (vm_prepare_range allows
	 * it), where base + nbytes is 0. */
	for (size_t i = 0; i < nbytes / PAGE_SIZE; i++) {
		uintptr_t va = base + i * PAGE_SIZE;
		int err = vm_pte_set(va, frames_pop_zeroed(&list), VM_WRITE);
		if (err)
			panic("mm_port_map: %#lx: error %d (mapped twice?)",
			      (unsigned long)va, -err);
	}
	return true;
}

/* Whether [base, +nbytes) lies in the span heap's metadata heap, whose
 * pages (span records, mostly) outlive the objects they describe: their
 * frames are taken lasting, out of the way of the object heap's. */
static bool in_meta_heap(uintptr_t base, size_t nbytes)
{
	const struct mheap *m = &kspanheap.meta; /* immutable after init */
	size_t off = base - m->arena_base, size = m->arena_pages * PAGE_SIZE;
	return base >= m->arena_base && off < size && nbytes <= size - off;
}

bool mm_port_used(void *addr, size_t nbytes)
{
	/* Only unmapped pages need a frame (a range handed out may mix
	 * scavenged and backed ones). All or nothing: count, take, map; the
	 * caller owns the pages, so the count holds. The shadow's first. */
	uintptr_t base = (uintptr_t)addr;
	size_t n = nbytes / PAGE_SIZE; /* by count: the range may end at 2^64 */
	if (nbytes && base + (nbytes - 1) < base)
		panic("mm_port_used: [%#lx, +%zu) wraps", (unsigned long)base,
		      nbytes);
	if (!kasan_shadow_used(base, nbytes))
		return false;
	size_t need = 0;
	for (size_t i = 0; i < n; i++)
		need += !vm_translate(base + i * PAGE_SIZE, NULL, NULL);
	if (need == 0)
		return true;
	paddr_t list = frames_take(need, in_meta_heap(base, nbytes)
	                                         ? frame_alloc_lasting
	                                         : frame_alloc);
	if (!list)
		return false;
	for (size_t i = 0; i < n; i++) {
		uintptr_t va = base + i * PAGE_SIZE;
		if (vm_translate(va, NULL, NULL))
			continue;
		/* More holes than counted: someone else changed the range,
		 * which the caller owns; mapping page 0 would hide it. */
		if (!list)
			panic("mm_port_used: [%#lx, +%zu): a page became "
			      "unmapped while being mapped (the range is not "
			      "the caller's alone)",
			      (unsigned long)base, nbytes);
		int err = vm_pte_set(va, frames_pop_zeroed(&list), VM_WRITE);
		if (err)
			panic("mm_port_used: %#lx: error %d (not prepared?)",
			      (unsigned long)va, -err);
	}
	if (list)
		panic("mm_port_used: [%#lx, +%zu): a page became mapped while "
		      "being mapped (the range is not the caller's alone)",
		      (unsigned long)base, nbytes);
	return true;
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	return vm_prepare_range((uintptr_t)addr, nbytes) == 0;
}

/* Unused pages fault here: mm_port_unused_begin clears their PTEs. */
bool mm_port_prepare_guarded(void *addr, size_t nbytes)
{
	return mm_port_prepare(addr, nbytes);
}

/* hi holds the batch's last page, not its end: a range may end at 2^64
 * (vm_prepare_range allows it), where the end is 0 (no shootdown). */
void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	uintptr_t base = (uintptr_t)addr;
	if (nbytes < PAGE_SIZE)
		return;
	for (size_t i = 0; i < nbytes / PAGE_SIZE; i++) {
		uintptr_t va = base + i * PAGE_SIZE;
		paddr_t pa;
		if (b->npages == MM_UNUSED_BATCH_PAGES)
			mm_panic("mm_port_unused_begin: batch full at %#lx",
			         va);
		if (vm_pte_clear(va, &pa) != 0)
			continue; /* already unmapped (never used) */
		b->cookie[b->npages++] = pa;
	}
	uintptr_t last = base + (nbytes / PAGE_SIZE - 1) * PAGE_SIZE;
	if (base < b->lo)
		b->lo = base;
	if (last > b->hi)
		b->hi = last;
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	if (b->npages > 0 && b->hi >= b->lo)
		tlb_shootdown(b->lo, (b->hi - b->lo) / PAGE_SIZE + 1);
	for (size_t i = 0; i < b->npages; i++)
		frame_free(b->cookie[i]);
	mm_unused_batch_init(b);
}

size_t mm_port_free_pages(void)
{
	return frames_free_hint();
}

uint64_t mm_port_now_ns(void)
{
	return time_now_ns();
}

/* A frame-pointer walk of the running stack; the asm keeps the call from
 * becoming a jump, which would drop this function's own return address. */
unsigned mm_port_callers(uintptr_t *pcs, unsigned max)
{
	unsigned n = backtrace_save(pcs, max, 0);
	__asm__ volatile("" ::: "memory");
	return n;
}

/* pc is a return address (mm_port_callers'). */
void mm_port_pc_name(uintptr_t pc, char *buf, size_t size)
{
	ksyms_format_return(pc, buf, size);
}

/* An mm_thread is a kmalloc'ed thread handle: mm/ keeps one pointer. */
struct mm_thread *mm_port_thread_start(const char *name, void (*fn)(void *),
                                       void *arg)
{
	struct thread_handle *h = kmalloc(sizeof(*h), 0);
	if (!h)
		return NULL;
	*h = thread_create(name, fn, arg, THREAD_ANY_CPU);
	if (!thread_handle_ok(*h)) {
		kfree(h);
		return NULL;
	}
	return (struct mm_thread *)h;
}

void mm_port_thread_join(struct mm_thread *t)
{
	struct thread_handle *h = (struct thread_handle *)t;
	thread_join(*h);
	kfree(h);
}

uint64_t mm_port_thread_cpu_ns(void)
{
	return thread_cpu_time_ns();
}

/*
 * An mm_event_t: an event count and the threads sleeping on it, under a
 * spinlock of rank WAITQ (a wake takes the waiters' run-queue locks under
 * it). Each waiter links a node on its own stack and unlinks it before it
 * returns; a wake unlinks every node it wakes.
 */
struct event_waiter {
	struct thread_handle t;
	struct event_waiter *next;
};

struct kernel_event {
	struct spinlock lock;         /* rank WAITQ */
	_Atomic uint64_t count;       /* written under lock, read by prepare */
	struct event_waiter *waiters; /* by lock */
};

_Static_assert(sizeof(struct kernel_event) <= sizeof(mm_event_t),
               "mm_event_t must hold the kernel's event");
_Static_assert(_Alignof(struct kernel_event) <= _Alignof(mm_event_t),
               "and be aligned for it");

static struct kernel_event *kevent(mm_event_t *e)
{
	return (struct kernel_event *)(uintptr_t)e->opaque;
}

void mm_event_init(mm_event_t *e, const char *name)
{
	struct kernel_event *k = kevent(e);
	spin_init(&k->lock, name, LOCK_RANK_WAITQ);
	atomic_store(&k->count, 0);
	k->waiters = NULL;
}

uint64_t mm_event_prepare(mm_event_t *e)
{
	return atomic_load(&kevent(e)->count);
}

/* Takes w off k's list if it is still on it. Locking: k->lock held. */
static void unlink_waiter(struct kernel_event *k, struct event_waiter *w)
{
	for (struct event_waiter **pp = &k->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

bool mm_event_wait(mm_event_t *e, uint64_t seen, uint64_t timeout_ns)
{
	struct kernel_event *k = kevent(e);
	if (!mm_port_can_sleep()) {
		/* The lock checker's panic names the reason (the lock held,
		 * the handler, the preemption count, interrupts off); only a
		 * wait with no thread at all gets past it. */
		char what[64];
		ksnprintf(what, sizeof(what), "mm_event_wait(%s)",
		          k->lock.name);
		lockcheck_must_sleep(what);
		panic("mm_event_wait(%s) with no thread to sleep",
		      k->lock.name);
	}
	uint64_t deadline = time_now_ns() + timeout_ns;
	if (deadline < timeout_ns)
		deadline = UINT64_MAX;
	unsigned long irq = spin_lock_irqsave(&k->lock);
	for (;;) {
		uint64_t now = time_now_ns();
		if (atomic_load(&k->count) != seen || now >= deadline)
			break;
		struct event_waiter w = {thread_self(), k->waiters};
		k->waiters = &w;
		thread_sleep_unlock(&k->lock, irq, deadline - now);
		irq = spin_lock_irqsave(&k->lock);
		unlink_waiter(k, &w);
	}
	bool moved = atomic_load(&k->count) != seen;
	spin_unlock_irqrestore(&k->lock, irq);
	return moved;
}

void mm_event_wake(mm_event_t *e)
{
	struct kernel_event *k = kevent(e);
	unsigned long irq = spin_lock_irqsave(&k->lock);
	atomic_fetch_add(&k->count, 1);
	for (struct event_waiter *w = k->waiters; w; w = w->next)
		thread_wake(w->t);
	k->waiters = NULL;
	spin_unlock_irqrestore(&k->lock, irq);
}

/* Formats nothing before the panic is claimed: a second CPU's mm_panic
 * parks instead of writing over the first one's message. */
void mm_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vpanic_prefixed("mm: ", fmt, ap);
}

void mm_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintk_line("mm: ", fmt, ap); /* one line, whole */
	va_end(ap);
}
