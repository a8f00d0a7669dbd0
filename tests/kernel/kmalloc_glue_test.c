/*
 * kernel/heap.h's wrappers where they do more than pass their arguments
 * on: kmalloc's compile-time class (a size and flags the compiler knows
 * take the magazine's inline pop), which must still honour KM_ZERO. A
 * mutation review of the heap glue found it untested: kzalloc, which the
 * other tests use, never takes that path.
 */
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"

/* Non-zero bytes among the n at p. */
static size_t nonzero_bytes(const uint8_t *p, size_t n)
{
	size_t bad = 0;
	for (size_t k = 0; k < n; k++)
		bad += p[k] != 0;
	return bad;
}

/*
 * kmalloc(N, KM_ZERO) with N a constant of a linear class (at most
 * SC_LINEAR_MAX) and the flags constant: zeroed, even when the object
 * is the one just freed dirty to this CPU's magazine (its next pop).
 * Rounds, so that a migration between the free and the allocation
 * cannot hide a dirty one every time.
 */
KTEST(kmalloc, zero_flag_with_a_size_known_at_compile_time)
{
	size_t dirty = 0, dirty_atomic = 0, dirty_top = 0;
	for (unsigned round = 0; round < 64; round++) {
		uint8_t *d = kmalloc(200, 0);
		KASSERT(d != NULL);
		memset(d, 0xa5, 200);
		kfree(d);
		uint8_t *z = kmalloc(200, KM_ZERO);
		KASSERT(z != NULL);
		dirty += nonzero_bytes(z, 200);
		kfree(z);

		d = kmalloc(48, 0);
		KASSERT(d != NULL);
		memset(d, 0x5a, 48);
		kfree(d);
		z = kmalloc(48, KM_ZERO | KM_ATOMIC);
		KASSERT(z != NULL);
		dirty_atomic += nonzero_bytes(z, 48);
		kfree(z);

		/* The largest linear class, whole. */
		d = kmalloc(SC_LINEAR_MAX, 0);
		KASSERT(d != NULL);
		memset(d, 0xff, SC_LINEAR_MAX);
		kfree(d);
		z = kmalloc(SC_LINEAR_MAX, KM_ZERO);
		KASSERT(z != NULL);
		dirty_top += nonzero_bytes(z, SC_LINEAR_MAX);
		kfree(z);
	}
	KEXPECT_EQ(dirty, 0);
	KEXPECT_EQ(dirty_atomic, 0);
	KEXPECT_EQ(dirty_top, 0);
}

/*
 * kmalloc with a constant size and a constant flag that is no kmalloc
 * flag: refused with a line naming it, as spanheap_alloc refuses it, and
 * not handed an object from the magazine's inline pop (which would take
 * a mistyped flag, say a GFP_ constant, as if it were none). The
 * magazine holds an object of the class first, so the pop would succeed.
 */
#if KTEST_HOOKS
KTEST(kmalloc, unknown_flag_with_a_size_known_at_compile_time)
{
	enum { BOGUS = 1u << 9 };
	_Static_assert(!(BOGUS & (KM_ZERO | KM_ATOMIC | KM_NOGROW)),
	               "BOGUS is no kmalloc flag");
	void *d = kmalloc(64, 0);
	KASSERT(d != NULL);
	kfree(d);
	capture_start();
	void *p = kmalloc(64, BOGUS);
	capture_stop();
	KEXPECT(p == NULL);
	KEXPECT(seen_has("alloc of 64 bytes refused: unknown flags 0x200"));
	kfree(p);
	/* Non-constant, as before: the same refusal. */
	unsigned flags = *(volatile unsigned *)&(unsigned){BOGUS};
	KEXPECT(kmalloc(64, flags) == NULL);
}
#endif
