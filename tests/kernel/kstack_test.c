/* Kernel stacks: mapped pages above an unmapped guard page, and returned
 * whole on free. */
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/frames.h"
#include "kernel/kstack.h"
#include "kernel/kstack_testing.h"
#include "kernel/ktest.h"
#include "tests/kernel/heap_util.h"

KTEST(kstack, guard_page_below_every_stack)
{
	heap_settle(); /* the heap's threads must not move the pool meanwhile */
	size_t before = frames_free_count();
	struct kstack s;
	KASSERT(kstack_alloc(4, &s));
	KEXPECT_EQ(s.top - s.bottom, 4 * PAGE_SIZE);
	KEXPECT_EQ(s.bottom - s.guard, PAGE_SIZE);
	*(volatile uint64_t *)(s.top - 8) = 1;
	*(volatile uint64_t *)s.bottom = 2;
	KEXPECT(!vm_translate(s.guard, NULL, NULL));
	KEXPECT(kstack_is_guard(s.guard + 8));
	KEXPECT(!kstack_is_guard(s.bottom));
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		*(volatile uint64_t *)(s.bottom - 8) = 3; /* one word too far */
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "guard page writable");
	} else {
		KEXPECT_EQ(fc.vector, VEC_PF);
		KEXPECT_EQ(fc.cr2, s.bottom - 8);
	}
	kstack_free(&s);
	KEXPECT(!vm_translate(s.bottom, NULL, NULL));
	KEXPECT_EQ(frames_free_count(), before);
}

KTEST(kstack, bad_sizes_are_refused)
{
	struct kstack s;
	KEXPECT(!kstack_alloc(0, &s));
	KEXPECT(!kstack_alloc(KSTACK_MAX_PAGES + 1, &s));
	KEXPECT(kstack_alloc(KSTACK_MAX_PAGES, &s));
	kstack_free(&s);
}

/* A guard is its own stack's only: a fault there with RSP on that stack
 * is its overflow; with RSP on another stack, a stray pointer (trap.c). */
KTEST(kstack, a_guard_is_its_own_stacks_only)
{
	struct kstack a, b;
	KASSERT(kstack_alloc(4, &a));
	KASSERT(kstack_alloc(4, &b));
	KEXPECT(kstack_is_own_guard(a.guard + 8, a.bottom + 16));
	KEXPECT(kstack_is_own_guard(a.guard + 8, a.guard + 64));
	KEXPECT(kstack_is_own_guard(a.guard - 8, a.top - 8));
	KEXPECT(!kstack_is_own_guard(a.guard + 8, b.bottom + 16));
	KEXPECT(!kstack_is_own_guard(b.guard + 8, a.top - 8));
	KEXPECT(!kstack_is_own_guard(a.bottom, a.bottom + 16));
	KEXPECT(kstack_is_own_guard((uintptr_t)__boot_stack_guard + 8,
	                            (uintptr_t)__boot_stack_bottom + 8));
	KEXPECT(!kstack_is_own_guard((uintptr_t)__boot_stack_guard + 8,
	                             a.top - 8));
	KEXPECT(!kstack_is_own_guard(a.guard + 8,
	                             (uintptr_t)__boot_stack_bottom + 8));
	kstack_free(&b);
	kstack_free(&a);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness): a stack freed
 * twice, its slot taken by another stack in between. The second free
 * must panic naming the stack, not unmap the new owner's pages. */
KTEST(demo, kstack_free_twice)
{
	struct kstack a, b;
	KASSERT(kstack_alloc(1, &a));
	kstack_free(&a);
	KASSERT(kstack_alloc(1, &b));
	ktest_diag("stack [%p, %p) freed; [%p, %p) allocated; freeing the "
	           "first again",
	           (void *)a.bottom, (void *)a.top, (void *)b.bottom,
	           (void *)b.top);
	kstack_free(&a);
	*(volatile uint64_t *)b.bottom = 1; /* b must still be mapped */
	kstack_free(&b);
}

/* A page mapped into a free slot (as a free that left one would leave
 * it): kstack_check must panic naming the slot and the page, not pass. */
KTEST(demo, kstack_check_finds_a_page_in_a_free_slot)
{
	struct kstack s;
	KASSERT(kstack_alloc(2, &s));
	kstack_free(&s);
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	KASSERT(vm_map_page(s.bottom, pa, VM_WRITE) == 0);
	kstack_check();
	ktest_fail_at(__FILE__, __LINE__,
	              "kstack_check passed a free slot with a mapped page");
}

/* A struct kstack whose bottom is off a page boundary: the free must
 * refuse it, not unmap a page too few and lose that frame. */
KTEST(demo, kstack_free_of_a_bent_stack)
{
	struct kstack s;
	KASSERT(kstack_alloc(3, &s));
	struct kstack bent = s;
	bent.bottom += 8;
	kstack_free(&bent);
	if (vm_translate(s.bottom, NULL, NULL))
		ktest_fail_at(__FILE__, __LINE__,
		              "kstack_free left the stack's lowest page mapped "
		              "(its frame lost, its slot free again)");
}

/* A struct kstack whose bottom (and guard) moved up a whole page: the
 * free must refuse it, not unmap a page too few and return the slot with
 * that page mapped, its frame lost (the next stack there would fail to
 * map, or have no guard page). */
KTEST(demo, kstack_free_of_a_shrunk_stack)
{
	struct kstack s;
	KASSERT(kstack_alloc(3, &s));
	struct kstack shrunk = s;
	shrunk.bottom += PAGE_SIZE;
	shrunk.guard += PAGE_SIZE;
	kstack_free(&shrunk);
	if (vm_translate(s.bottom, NULL, NULL))
		ktest_fail_at(__FILE__, __LINE__,
		              "kstack_free left the stack's lowest page mapped "
		              "(its frame lost, its slot free again)");
}

/* A struct kstack reaching from its top down past its slot, into the top
 * page of the slot below: the free must refuse it, not unmap (and free
 * the frame of) the page another stack is using. */
KTEST(demo, kstack_free_of_a_stack_past_its_slot)
{
	struct kstack a, b;
	KASSERT(kstack_alloc(1, &a));
	KASSERT(kstack_alloc(1, &b));
	struct kstack *hi = a.top > b.top ? &a : &b, *lo = hi == &a ? &b : &a;
	if (hi->top - lo->top != KSTACK_SLOT_SIZE)
		KTEST_SKIP("the two stacks are not in neighbouring slots");
	struct kstack past = *hi;
	past.bottom = past.top - (KSTACK_MAX_PAGES + 2) * PAGE_SIZE;
	past.guard = past.bottom - PAGE_SIZE;
	ktest_diag("freeing [%p, %p), over the top page of [%p, %p)",
	           (void *)past.bottom, (void *)past.top, (void *)lo->bottom,
	           (void *)lo->top);
	kstack_free(&past);
	*(volatile uint64_t *)(lo->top - 8) = 1; /* lo must still be mapped */
	ktest_fail_at(__FILE__, __LINE__,
	              "kstack_free took a stack past "
	              "its slot");
}
#endif

static struct kstack made_in_free;
static _Atomic bool made_armed, made_ok;

/* kstack_testing_unmapping's hook: once, a stack of two pages. */
static void make_in_free(uintptr_t top)
{
	(void)top;
	if (atomic_exchange(&made_armed, false))
		atomic_store(&made_ok, kstack_alloc(2, &made_in_free));
}

/* Whether every page of s is mapped. */
static bool all_mapped(const struct kstack *s)
{
	for (uintptr_t a = s->bottom; a < s->top; a += PAGE_SIZE)
		if (!vm_translate(a, NULL, NULL))
			return false;
	return true;
}

/*
 * A free gives its slot back only once the stack's pages are unmapped: a
 * stack made meanwhile (by the hook, before the unmap) gets another slot
 * and keeps its pages. Given back first, the slot is the lowest free one
 * (the freed stack took it as such) and the new stack gets it: its map
 * fails on the pages still there (what the mutant gave), or, had they
 * gone, the free's unmap would take the new stack's (the storm sees this
 * only at three times its size).
 */
KTEST(kstack, a_slot_is_given_back_after_its_pages_are_unmapped)
{
	struct kstack s;
	KASSERT(kstack_alloc(2, &s));
	atomic_store(&made_ok, false);
	atomic_store(&made_armed, true);
	atomic_store(&kstack_testing_unmapping, make_in_free);
	kstack_free(&s);
	atomic_store(&kstack_testing_unmapping, NULL);
	KASSERT(atomic_load(&made_ok));
	KEXPECT(made_in_free.top != s.top);
	KEXPECT(all_mapped(&made_in_free));
	kstack_free(&made_in_free);
}
