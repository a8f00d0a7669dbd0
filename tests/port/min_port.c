/*
 * tests/port/min_port.c: the smallest port of mm/ (mm/port.h), written from
 * docs/PORTING.md and mm/port.h alone, and kept as a test of that contract:
 * if port.h grows a hook or a duty the documentation does not name, this
 * file stops building, linking or passing (tests/port/min_port_test.c and
 * min_port_limits_test.c).
 *
 * The system it ports to has one CPU, no threads and no interrupts. Its
 * "address space" is one static array: mm_port_reserve bumps a pointer
 * through it, mm_port_unreserve moves the pointer back when the range is the
 * latest one. Mapping is a memset; scavenged pages are poisoned and recorded
 * in a bitmap, and mm_port_used zero-fills exactly those, so a touch of a
 * scavenged page shows as the poison and a kept page keeps its bytes.
 *
 * Locks are flags with a rank; taking one panics unless every lock held
 * ranks lower (mm/port.h, enum mm_lock_rank). Background threads cannot be
 * started (mm_port_thread_start returns NULL); an event wait never sleeps,
 * since nothing could wake it, and says it timed out. There is no other CPU,
 * so mm_port_each_other_cpu calls nothing and succeeds. Pins count their
 * nesting and are always CPU 0.
 *
 * mm_panic prints and aborts, or longjmps to a test's catch.
 *
 * Built on its own, not with tests/host/mm_port_posix.c: the pin hooks are
 * functions here (no MM_PORT_INLINE), and no MM_TEST_HOOKS.
 */
#include "tests/port/min_port.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/port.h"

/* The whole address space, chunk aligned so that a 2 MiB reservation
 * wastes nothing. Static storage: untouched pages cost nothing. */
#define SPACE_BYTES ((size_t)MIN_PORT_SPACE_MIB << 20)
#define SPACE_PAGES (SPACE_BYTES / MM_PAGE_SIZE)
static _Alignas(2 << 20) unsigned char space[SPACE_BYTES];
static size_t space_used; /* bytes reserved from the start, the bump */

/* A page given back (mm_port_unused_begin) and not used again yet. */
static uint64_t scavenged[SPACE_PAGES / 64];

struct min_port_counts min_port_n;

static int pin_depth;
static int locks_held; /* of any rank */
static unsigned long long fake_ns;

bool min_port_in_space(const void *p)
{
	const unsigned char *c = p;
	return c >= space && c < space + space_used;
}

bool min_port_page_scavenged(const void *p)
{
	size_t pg = (size_t)((const unsigned char *)p - space) / MM_PAGE_SIZE;
	return min_port_in_space(p) && (scavenged[pg / 64] >> (pg % 64) & 1);
}

size_t min_port_reserved_bytes(void)
{
	return space_used;
}

static int held_of_rank[MM_RANK_COUNT]; /* mm locks held, by rank */

/* What a hook's caller must not hold (mm/port.h says it of each hook). */
enum hook_rule {
	NO_HEAP_LOCK, /* every hook: the heap lock is a leaf */
	NO_LOCK,      /* no mm lock at all */
	NOTHING_HELD, /* no mm lock and no pin (thread-only hooks) */
};

static void hook_enter(const char *hook, enum hook_rule rule)
{
	if (held_of_rank[MM_RANK_HEAP])
		mm_panic("min_port: %s called under the heap lock", hook);
	if (rule >= NO_LOCK && locks_held)
		mm_panic("min_port: %s called with %d mm lock(s) held", hook,
		         locks_held);
	if (rule >= NOTHING_HELD && pin_depth)
		mm_panic("min_port: %s called pinned", hook);
}

static size_t page_of(const void *addr, size_t nbytes, const char *who)
{
	const unsigned char *a = addr;
	if (a < space || a + nbytes > space + space_used ||
	    (uintptr_t)a % MM_PAGE_SIZE || nbytes % MM_PAGE_SIZE)
		mm_panic("min_port: %s(%p, %zu): not pages of a reservation",
		         who, addr, nbytes);
	return (size_t)(a - space) / MM_PAGE_SIZE;
}

void *mm_port_reserve(size_t nbytes, size_t align)
{
	hook_enter("mm_port_reserve", NOTHING_HELD);
	size_t at = (space_used + align - 1) & ~(align - 1);
	if (nbytes % MM_PAGE_SIZE || at > SPACE_BYTES ||
	    nbytes > SPACE_BYTES - at)
		return NULL;
	space_used = at + nbytes;
	min_port_n.reserves++;
	return space + at;
}

void mm_port_unreserve(void *addr, size_t nbytes)
{
	hook_enter("mm_port_unreserve", NOTHING_HELD);
	unsigned char *a = addr;
	if (a + nbytes == space + space_used)
		space_used = (size_t)(a - space);
	min_port_n.unreserves++;
}

bool mm_port_map(void *addr, size_t nbytes)
{
	hook_enter("mm_port_map", NO_LOCK);
	page_of(addr, nbytes, "mm_port_map");
	memset(addr, 0, nbytes); /* may be reused after an unreserve */
	return true;
}

bool mm_port_used(void *addr, size_t nbytes)
{
	hook_enter("mm_port_used", NO_LOCK);
	size_t pg = page_of(addr, nbytes, "mm_port_used");
	for (size_t i = pg; i < pg + nbytes / MM_PAGE_SIZE; i++) {
		if (!(scavenged[i / 64] >> (i % 64) & 1))
			continue;
		scavenged[i / 64] &= ~(1ull << (i % 64));
		memset(space + i * MM_PAGE_SIZE, 0, MM_PAGE_SIZE);
	}
	return true;
}

bool mm_port_prepare(void *addr, size_t nbytes)
{
	hook_enter("mm_port_prepare", NO_LOCK);
	page_of(addr, nbytes, "mm_port_prepare");
	return true;
}

/* An array cannot fault: no guarded pool here (port.h allows the
 * refusal; spanheap_init then fails). */
bool mm_port_prepare_guarded(void *addr, size_t nbytes)
{
	hook_enter("mm_port_prepare_guarded", NOTHING_HELD);
	page_of(addr, nbytes, "mm_port_prepare_guarded");
	return false;
}

void mm_port_unused_begin(void *addr, size_t nbytes, struct mm_unused_batch *b)
{
	hook_enter("mm_port_unused_begin", NOTHING_HELD);
	size_t pg = page_of(addr, nbytes, "mm_port_unused_begin");
	size_t n = nbytes / MM_PAGE_SIZE;
	if (b->npages + n > MM_UNUSED_BATCH_PAGES)
		mm_panic("min_port: batch overflow: %zu + %zu pages", b->npages,
		         n);
	for (size_t i = pg; i < pg + n; i++) {
		if (scavenged[i / 64] >> (i % 64) & 1)
			continue; /* not mapped: skipped */
		scavenged[i / 64] |= 1ull << (i % 64);
		memset(space + i * MM_PAGE_SIZE, MIN_PORT_POISON, MM_PAGE_SIZE);
		b->cookie[b->npages++] = i;
	}
	if ((uintptr_t)addr < b->lo)
		b->lo = (uintptr_t)addr;
	if ((uintptr_t)addr + nbytes > b->hi)
		b->hi = (uintptr_t)addr + nbytes;
}

void mm_port_unused_finish(struct mm_unused_batch *b)
{
	hook_enter("mm_port_unused_finish", NOTHING_HELD);
	min_port_n.released_pages += b->npages;
	mm_unused_batch_init(b);
}

bool (*min_port_reclaim_fn)(void);

/* The optional hook (MM_PORT_RECLAIM, port.mk): thread context, nothing
 * held or pinned (PORTING.md). */
bool mm_port_reclaim(void)
{
	hook_enter("mm_port_reclaim", NOTHING_HELD);
	min_port_n.reclaims++;
	return min_port_reclaim_fn && min_port_reclaim_fn();
}

size_t mm_port_free_pages(void)
{
	hook_enter("mm_port_free_pages", NO_HEAP_LOCK);
	return SIZE_MAX / 2;
}

bool mm_port_can_sleep(void)
{
	return pin_depth == 0 && locks_held == 0;
}

uint64_t mm_port_now_ns(void)
{
	hook_enter("mm_port_now_ns", NO_HEAP_LOCK);
	return fake_ns += 1000; /* a clock that moves, which is all mm/ asks */
}

uint64_t mm_port_thread_cpu_ns(void)
{
	hook_enter("mm_port_thread_cpu_ns", NO_HEAP_LOCK);
	return fake_ns;
}

struct mm_thread *mm_port_thread_start(const char *name, void (*fn)(void *),
                                       void *arg)
{
	hook_enter("mm_port_thread_start", NOTHING_HELD);
	(void)name, (void)fn, (void)arg;
	min_port_n.thread_refusals++;
	return NULL; /* mm/ says so, naming what it could not start */
}

void mm_port_thread_join(struct mm_thread *t)
{
	hook_enter("mm_port_thread_join", NOTHING_HELD);
	mm_panic("min_port: join of %p: no thread was ever started", (void *)t);
}

void mm_port_yield(void)
{
	hook_enter("mm_port_yield", NOTHING_HELD);
}

bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	hook_enter("mm_port_each_other_cpu", NOTHING_HELD);
	(void)fn, (void)arg;
	return true; /* one CPU: there is no other */
}

/* ---- Events: a count, and nobody to wait for ---- */

struct min_event {
	uint64_t count;
	const char *name;
};
_Static_assert(sizeof(struct min_event) <= sizeof(mm_event_t), "fits");
_Static_assert(_Alignof(struct min_event) <= _Alignof(mm_event_t), "aligned");

void mm_event_init(mm_event_t *e, const char *name)
{
	hook_enter("mm_event_init", NO_HEAP_LOCK);
	struct min_event *me = (struct min_event *)e;
	me->count = 0;
	me->name = name;
}

uint64_t mm_event_prepare(mm_event_t *e)
{
	hook_enter("mm_event_prepare", NO_HEAP_LOCK);
	return ((struct min_event *)e)->count;
}

bool mm_event_wait(mm_event_t *e, uint64_t seen, uint64_t timeout_ns)
{
	hook_enter("mm_event_wait", NOTHING_HELD);
	struct min_event *me = (struct min_event *)e;
	if (!mm_port_can_sleep())
		mm_panic("min_port: wait on %s pinned or under a lock",
		         me->name);
	if (me->count != seen)
		return true;
	/* The one thread is the waiter: no one can wake it. The time passes
	 * at once. */
	fake_ns += timeout_ns;
	min_port_n.event_timeouts++;
	return false;
}

void mm_event_wake(mm_event_t *e)
{
	hook_enter("mm_event_wake", NO_HEAP_LOCK);
	((struct min_event *)e)->count++;
}

/* ---- Locks: ranked flags ---- */

struct min_lock {
	const char *name;
	enum mm_lock_rank rank;
	bool held;
};
_Static_assert(sizeof(struct min_lock) <= sizeof(mm_lock_t), "fits");
_Static_assert(_Alignof(struct min_lock) <= _Alignof(mm_lock_t), "aligned");

/* PORTING.md maps each mm rank onto the port's own order; here the ranks
 * are the mm ones themselves, and the check is the order of the enum. */

void mm_lock_init(mm_lock_t *l, const char *name, enum mm_lock_rank rank)
{
	struct min_lock *ml = (struct min_lock *)l;
	if (rank < MM_RANK_SWEEP || rank >= MM_RANK_COUNT)
		mm_panic("min_port: lock %s: rank %d is not an mm rank", name,
		         (int)rank);
	ml->name = name;
	ml->rank = rank;
	ml->held = false;
}

unsigned long mm_lock_acquire(mm_lock_t *l)
{
	struct min_lock *ml = (struct min_lock *)l;
	if (ml->held)
		mm_panic("min_port: %s taken twice", ml->name);
	for (int r = ml->rank; r < MM_RANK_COUNT; r++)
		if (held_of_rank[r])
			mm_panic("min_port: %s (rank %d) taken under a lock of "
			         "rank %d",
			         ml->name, (int)ml->rank, r);
	ml->held = true;
	held_of_rank[ml->rank]++;
	locks_held++;
	min_port_n.lock_acquires++;
	return 0;
}

void mm_lock_release(mm_lock_t *l, unsigned long irq_state)
{
	struct min_lock *ml = (struct min_lock *)l;
	if (!ml->held || irq_state != 0)
		mm_panic("min_port: %s released but not held (or a bad state)",
		         ml->name);
	ml->held = false;
	held_of_rank[ml->rank]--;
	locks_held--;
}

bool mm_lock_held(const mm_lock_t *l)
{
	return ((const struct min_lock *)l)->held;
}

/* ---- Pins: one CPU, counted ---- */

struct mm_pin mm_port_pin(void)
{
	if (pin_depth == 0 && locks_held)
		mm_panic("min_port: an outermost pin with an mm lock held");
	pin_depth++;
	min_port_n.pins++;
	return (struct mm_pin){.state = 1, .cpu = 0};
}

void mm_port_unpin(struct mm_pin p)
{
	if (p.state != 1 || p.cpu != 0 || pin_depth == 0)
		mm_panic("min_port: unpin of a pin not taken (cpu %lu)", p.cpu);
	pin_depth--;
}

/* ---- Diagnostics ---- */

jmp_buf *min_port_catch;
char min_port_last_panic[256];

void mm_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(min_port_last_panic, sizeof(min_port_last_panic), fmt, ap);
	va_end(ap);
	jmp_buf *jb = min_port_catch;
	if (jb && locks_held == 0) {
		min_port_catch = NULL;
		pin_depth = 0; /* the catcher goes on unpinned */
		longjmp(*jb, 1);
	}
	fprintf(stderr, "mm_panic: %s\n", min_port_last_panic);
	abort();
}

char min_port_last_log[256];

void mm_log(const char *fmt, ...)
{
	hook_enter("mm_log", NO_HEAP_LOCK);
	va_list ap;
	if (locks_held && min_port_n.log_under_lock++ == 0)
		fputs("min_port: mm_log called with an mm lock held\n", stderr);
	va_start(ap, fmt);
	vsnprintf(min_port_last_log, sizeof(min_port_last_log), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", min_port_last_log);
	min_port_n.logs++;
}

/* No stack walk: poison mode then keeps no records of callers (PORTING.md:
 * a port whose mm_port_callers returns 0). */
unsigned mm_port_callers(uintptr_t *pcs, unsigned max)
{
	hook_enter("mm_port_callers", NO_HEAP_LOCK);
	(void)pcs;
	(void)max;
	return 0;
}

void mm_port_pc_name(uintptr_t pc, char *buf, size_t size)
{
	snprintf(buf, size, "%#lx", (unsigned long)pc);
}
