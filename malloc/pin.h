/*
 * malloc/pin.h: the hosted malloc's pin, inline (mm/port.h,
 * MM_PORT_INLINE; malloc/malloc.mk passes this header's name), and the
 * per-thread state it reads.
 *
 * Every API call already holds its thread's slot (malloc_internal.h), so
 * a pin inside one is a thread-local load and the slot's index, no call,
 * and no store: nothing is counted (mm_port_can_sleep counts only the
 * pins outside calls). A pin outside any API call
 * (a background thread, should mm/ pin there) takes the slot out of line
 * in malloc/port_prod.c and says so in state.
 *
 * Included by mm/port.h after struct mm_pin, so it includes no mm/ header.
 */
#ifndef MALLOC_PIN_H
#define MALLOC_PIN_H

struct mm_malloc_slot;

/* A thread's state, one initial-exec TLS object (in a shared library each
 * TLS variable costs a load of its offset; one object costs one). Only
 * its own thread touches it. */
struct mm_malloc_thread {
	int slot_id;        /* its slot's index; -1: none yet */
	unsigned pin_depth; /* pins outside calls (mm_port_can_sleep) */
	/* Its slot while it owns it alone and membarrier works (it may try
	 * the fast path; malloc/slots.c), else NULL. */
	struct mm_malloc_slot *fast;
	/* While it is inside an API call, the word its outermost leave
	 * clears (the slot's in or busy; during fork, a dummy); else NULL.
	 * A call that finds it set is nested. */
	_Atomic unsigned long *held;
	/* The outermost enter's word for a pin outside any call. */
	_Atomic unsigned long *pin_held;
	/* What it writes in a busy word it takes; 0 until its first slow
	 * entry (malloc/slots.c, invariant 5). */
	unsigned long token;
};

extern _Thread_local struct mm_malloc_thread mm_malloc_self
        __attribute__((visibility("hidden")));

/* The pin outside an API call: holds the slot itself (state 1). */
struct mm_pin mm_malloc_pin_slow(void) __attribute__((visibility("hidden")));
void mm_malloc_unpin_slow(void) __attribute__((visibility("hidden")));

static inline __attribute__((always_inline)) struct mm_pin mm_port_pin(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	if (__builtin_expect(t->held == NULL, 0))
		return mm_malloc_pin_slow();
	return (struct mm_pin){.state = 0, .cpu = (unsigned)t->slot_id};
}

static inline __attribute__((always_inline)) void mm_port_unpin(struct mm_pin p)
{
	if (__builtin_expect(p.state != 0, 0))
		mm_malloc_unpin_slow();
}

/*
 * The fast paths' pin (mm/port.h): inside an API call, the slot the call
 * holds, which nothing needs to end; outside one, MM_PIN_NONE, and the
 * slow paths pin with mm_port_pin. A select, not a branch, and no unpin
 * test.
 */
#define MM_PORT_PIN_FAST
static inline __attribute__((always_inline)) struct mm_pin
mm_port_pin_fast(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	unsigned long cpu = t->held != NULL
	                            ? (unsigned long)(unsigned)t->slot_id
	                            : (unsigned long)MM_PIN_NONE;
	return (struct mm_pin){.state = 0, .cpu = cpu};
}

static inline __attribute__((always_inline)) void
mm_port_unpin_fast(struct mm_pin p)
{
	(void)p;
}

#endif
