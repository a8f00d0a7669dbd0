/*
 * The fast paths alone (mm/spanheap_fast.h, spanheap_alloc_held and
 * spanheap_free_held), as a port whose entry holds the CPU calls them:
 * an object goes into the magazine and comes back, last in first out;
 * everything the fast path does not take (NULL, a large object, a
 * foreign or interior pointer, a full or empty magazine, a size past the
 * small classes) is refused having changed nothing, so that the caller's
 * general call then does it, and a double free still panics naming the
 * pointer. spanheap_check runs at every quiet point.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static int a_static_object;

/* What a refused call must leave as it was. */
struct held_snap {
	size_t mag_objects, spans, bytes_in_use;
	uint64_t local_frees, remote_frees, refills;
};

static struct held_snap snap(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return (struct held_snap){st.mag_objects,  st.spans,
	                          st.bytes_in_use, st.local_frees,
	                          st.remote_frees, st.refills};
}

static bool snap_same(struct held_snap a, struct held_snap b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* A fresh heap whose calling thread's CPU has its magazines' slab: the
 * general free makes it (its first), as a port's slow path would, so
 * that the held calls below find room. */
static bool heap_with_slab(void)
{
	if (!sh_heap_new(&heap, &sh, SH_ARENA_BYTES))
		return false;
	void *x = spanheap_alloc(&sh, 16, 0);
	if (!x)
		return false;
	spanheap_free(&sh, x);
	return true;
}

KTEST(spanheap_held, free_then_alloc_is_last_in_first_out)
{
	KASSERT(heap_with_slab());
	void *a = spanheap_alloc(&sh, 64, 0), *b = spanheap_alloc(&sh, 64, 0);
	KASSERT(a && b && a != b);
	memset(a, 0x5a, 64);
	struct mm_pin pin = mm_port_pin();
	unsigned cpu = (unsigned)pin.cpu;
	struct held_snap before = snap();
	KEXPECT(spanheap_free_held(&sh, a, cpu));
	KEXPECT(spanheap_free_held(&sh, b, cpu));
	KEXPECT_EQ(snap().mag_objects, before.mag_objects + 2);
	KEXPECT_EQ(spanheap_alloc_held(&sh, 64, cpu), b);
	KEXPECT_EQ(spanheap_alloc_held(&sh, 50, cpu), a); /* same class */
	KEXPECT(snap_same(snap(), before));
	/* The pop clears the free marker, so a's next free is no double
	 * free; its bytes past the marker word are as they were. */
	KEXPECT_EQ(((unsigned char *)a)[63], 0x5a);
	KEXPECT(spanheap_free_held(&sh, a, cpu));
	mm_port_unpin(pin);
	spanheap_free(&sh, b);
	SH_CHECK(&sh, "after the held frees");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_held, refuses_what_it_does_not_take_changing_nothing)
{
	KASSERT(heap_with_slab());
	void *small = spanheap_alloc(&sh, 128, 0);
	void *large = spanheap_alloc(&sh, SC_MAX_SIZE + 1, 0);
	KASSERT(small && large);
	int on_stack;
	void *refused[] = {NULL,
	                   large,
	                   (char *)small + 16, /* interior */
	                   &on_stack,
	                   &a_static_object,
	                   (char *)large + MM_PAGE_SIZE};
	struct mm_pin pin = mm_port_pin();
	unsigned cpu = (unsigned)pin.cpu;
	struct held_snap before = snap();
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		KEXPECT(!spanheap_free_held(&sh, refused[i], cpu));
		KEXPECT(snap_same(snap(), before));
	}
	KEXPECT(spanheap_alloc_held(&sh, SC_MAX_SIZE + 1, cpu) == NULL);
	KEXPECT(spanheap_alloc_held(&sh, (size_t)-1, cpu) == NULL);
	/* CPU 3 has no slab yet (a CPU's first general free or refill makes
	 * it): its magazines are empty and full at once. */
	KEXPECT(spanheap_alloc_held(&sh, 128, 3) == NULL);
	KEXPECT(!spanheap_free_held(&sh, small, 3));
	KEXPECT(snap_same(snap(), before));
	mm_port_unpin(pin);
	SH_CHECK(&sh, "after the refusals");
	/* The general calls still take them. */
	spanheap_free(&sh, small);
	spanheap_free(&sh, large);
	SH_CHECK(&sh, "after the general frees");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_held, full_and_empty_magazines_go_the_long_way)
{
	KASSERT(heap_with_slab());
	unsigned cls = sizeclass_of(256);
	size_t max = sh.mag_max[cls], n = 2 * max + 8, held = 0;
	void **v = spanheap_alloc(&sh, n * sizeof(*v), MM_ZERO);
	KASSERT(v);
	for (size_t i = 0; i < n; i++)
		KASSERT((v[i] = spanheap_alloc(&sh, 256, 0)) != NULL);
	struct mm_pin pin = mm_port_pin();
	unsigned cpu = (unsigned)pin.cpu;
	/* Frees until the magazine is full, then one refused. */
	size_t i = 0;
	while (i < n && spanheap_free_held(&sh, v[i], cpu))
		i++, held++;
	KASSERT(i < n);
	KEXPECT(held <= max);
	struct held_snap full = snap();
	KEXPECT(!spanheap_free_held(&sh, v[i], cpu));
	KEXPECT(snap_same(snap(), full));
	mm_port_unpin(pin);
	/* The general free spills the older half and takes it. */
	spanheap_free(&sh, v[i++]);
	SH_CHECK(&sh, "after the spill");
	while (i < n)
		spanheap_free(&sh, v[i++]);
	/* Empty the magazine with held pops; the last is refused. */
	pin = mm_port_pin();
	size_t popped = 0;
	while (spanheap_alloc_held(&sh, 256, (unsigned)pin.cpu) != NULL)
		popped++;
	struct held_snap empty = snap();
	KEXPECT(spanheap_alloc_held(&sh, 256, (unsigned)pin.cpu) == NULL);
	KEXPECT(snap_same(snap(), empty));
	mm_port_unpin(pin);
	KEXPECT(popped > 0 && popped <= max);
	KEXPECT(spanheap_alloc(&sh, 256, 0) != NULL); /* a refill */
	spanheap_free(&sh, v);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_held, double_free_panics_naming_it)
{
	KASSERT(heap_with_slab());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mm_pin pin = mm_port_pin();
	bool first = spanheap_free_held(&sh, p, (unsigned)pin.cpu);
	bool fired =
	        MM_PORT_PANICS(spanheap_free_held(&sh, p, (unsigned)pin.cpu));
	if (!fired)
		mm_port_unpin(pin);
	sh_unpin_after_panic(); /* a caught panic leaves the pin */
	KEXPECT(first);
	KEXPECT(fired);
	char name[32];
	snprintf(name, sizeof(name), "%p", p);
	KEXPECT(strstr(mm_port_last_panic(), "double free") != NULL);
	KEXPECT(strstr(mm_port_last_panic(), name) != NULL);
	sh_heap_release(&heap, &sh);
}
