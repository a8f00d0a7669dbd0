/*
 * kernel/thread_handle.h: a thread's handle, what thread_join and
 * thread_wake take (thread.h), and why it is not a bare pointer.
 * Included by thread.h.
 */
#ifndef KERNEL_THREAD_HANDLE_H
#define KERNEL_THREAD_HANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct thread;

/*
 * What thread_join and thread_wake take: a thread's struct, its id and
 * its home CPU. A joined thread's struct goes back to kmalloc (to a newer
 * thread, or back to the page heap, unmapped); its id is never reused
 * (ids count up from 1). A handle is looked up by id in its CPU's table of
 * live threads before the struct is read, so one kept past its thread's
 * join is reported, naming its id, instead of reaching whichever thread
 * has the struct now or faulting. Copy it freely; the zero handle
 * (THREAD_NONE) is no thread's.
 */
struct thread_handle {
	struct thread *t;
	uint64_t id;
	unsigned cpu; /* t->cpu's id, so that t need not be read */
};

#define THREAD_NONE ((struct thread_handle){NULL, 0, 0})

/* False for THREAD_NONE (a failed thread_create). Any context. */
static inline bool thread_handle_ok(struct thread_handle h)
{
	return h.t != NULL;
}

#endif
