/*
 * malloc/pin.h: the hosted malloc's pin, inline (mm/port.h,
 * MM_PORT_INLINE; malloc/malloc.mk passes this header's name).
 *
 * Every API call already holds its thread's slot (malloc_internal.h), so
 * a pin inside one is a counter (for mm_port_can_sleep) and the slot's
 * index: two thread-local accesses, no call. A pin outside any API call
 * (a background thread, should mm/ pin there) takes the slot out of line
 * in malloc/port_prod.c and says so in state.
 *
 * Included by mm/port.h after struct mm_pin, so it includes no mm/ header.
 */
#ifndef MALLOC_PIN_H
#define MALLOC_PIN_H

/* slots.c and port_prod.c; hidden, initial-exec TLS. */
extern _Thread_local int mm_malloc_slot_id
        __attribute__((visibility("hidden")));
extern _Thread_local unsigned mm_malloc_hold
        __attribute__((visibility("hidden")));
extern _Thread_local unsigned mm_malloc_pin_depth
        __attribute__((visibility("hidden")));

/* The pin outside an API call: holds the slot itself (state 1). */
struct mm_pin mm_malloc_pin_slow(void) __attribute__((visibility("hidden")));
void mm_malloc_unpin_slow(void) __attribute__((visibility("hidden")));

static inline __attribute__((always_inline)) struct mm_pin mm_port_pin(void)
{
	if (__builtin_expect(mm_malloc_hold == 0, 0))
		return mm_malloc_pin_slow();
	mm_malloc_pin_depth++;
	return (struct mm_pin){.state = 0, .cpu = (unsigned)mm_malloc_slot_id};
}

static inline __attribute__((always_inline)) void mm_port_unpin(struct mm_pin p)
{
	mm_malloc_pin_depth--;
	if (__builtin_expect(p.state != 0, 0))
		mm_malloc_unpin_slow();
}

#endif
