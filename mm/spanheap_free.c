/*
 * mm/spanheap_free.c: the span heap's free paths: spanheap_free, its fast
 * path alone for a port that holds the CPU (spanheap_free_held), and the
 * slow path that tells large objects and misuse apart.
 *
 * Purpose: a free from any CPU and any context but NMI that checks the
 * pointer (in the heap, a small span in use, the start of an object
 * handed out, not free already) with no lock and no atomic operation,
 * and records it in the CPU's magazine.
 *
 * Representation: spanheap.c's, whose header has the heap's design, its
 * invariants (7 and 8 are this file's) and its locking.
 *
 * Algorithm (spanheap.c, "free"): the span table gives the span; the
 * checks, by the span's divisibility test (obj_start_index) and its
 * marked count, then the free marker; then, pinned (or as a restartable
 * sequence), the push into the magazine; a full magazine spills its older
 * half (spanheap_mag_full, spanheap_cache.c). A large span or misuse
 * takes the slow path.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_free_fast.h"
#include "spanheap_internal.h"

#ifdef MM_PORT_RSEQ
/*
 * The marker's test and mag_push as one restartable sequence (mm/rseq.h)
 * on this CPU's magazine mag_off bytes into its array: object a's word 1
 * against its marker (cookie ^ a), then the CPU's index, the magazine,
 * its top and limit, the slot, the marker's store; the commit is the
 * store of the raised top. A restart repeats the test, the slot's store
 * (above the top, read by no one) and the marker's (the same value).
 * Returns false, having stored nothing, if the magazine is full or a
 * carries its marker (a double free: the slow path's claim tells it);
 * *sp then tells whether an attempt the sequence restarted had reached
 * the instruction before the marker's store: the raised top is computed
 * into *sp, the span's address s until then (a slot in the CPU's slab,
 * never a span struct's address), just before that store (a restart
 * moves only the instruction pointer, so the register keeps it). A
 * marker met with *sp moved is this free's own, and the push goes on;
 * the slow path takes it so too (until a review it panicked, "double
 * free", when a handler filled the magazine between the marker's store
 * and the commit). The test is in the sequence so that a handler on
 * this CPU that frees a again after the test (a double free across
 * contexts) is told by the restart; it was C before the sequence, and
 * a handler's free anywhere between the two went unseen (the harness's
 * kfree_twice_by_a_handler_mid_push): now only one between the top's
 * computing and the marker's store does. No instruction more on the
 * fast path. Any context but NMI, nothing pinned. top is early-clobber:
 * it holds s's value on entry, and no input (s) may share its register,
 * which the raised top overwrites.
 */
static inline __attribute__((always_inline)) bool
rseq_push(struct spanheap *sh, size_t mag_off, uintptr_t a, uintptr_t marker,
          uintptr_t *sp)
{
	uintptr_t *t, s = *sp, top = s;
	struct mmag *m;
	unsigned long cpu;
	bool full;
	__asm__ volatile(
	        "1:\n\t"
	        "cmpq %[mk], 8(%[a])\n\t"
	        "jne 3f\n\t"
	        "cmpq %[s], %[top]\n\t" /* equal: CF clear, so full */
	        "je 2f\n"
	        "3:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	        "movq %c[mags](%[sh], %[cpu], 8), %[m]\n\t"
	        "9:\n\t"
	        "movq (%[m], %[off]), %[t]\n\t"
	        "cmpq 8(%[m], %[off]), %[t]\n\t"
	        "jae 2f\n\t"
	        "movq %[a], (%[t])\n\t"
	        "leaq 8(%[t]), %[top]\n\t" /* no flags changed */
	        "movq %[mk], 8(%[a])\n\t"
	        "movq %[top], (%[m], %[off])\n" /* the commit */
	        "2:\n\t" MM_RSEQ_RECORD("1b", "2b") MM_RSEQ_MAGS_RECORD("9b")
	        : "=@ccae"(full), [t] "=&r"(t), [m] "=&r"(m), [cpu] "=&r"(cpu),
	          [top] "+&r"(top)
	        : [sh] "r"(sh), [off] "r"(mag_off), [a] "r"(a), [s] "r"(s),
	          [mk] "r"(marker), [mags] "i"(offsetof(struct spanheap, mags)),
	          MM_PORT_RSEQ_CPU_ARGS
	        : "memory");
	*sp = top;
	return !full;
}

/* rseq_push's refusal: a full magazine, or a's marker met with sp still
 * the span's address: a double free, told here as the C test before the
 * sequence told it (the claim would tell it too, but in poison mode it
 * claims nothing, and the poison path then said the marker had been
 * overwritten: review). Else sp is a top a restarted attempt computed
 * just before it stored a's marker, and the marker is this free's own. */
static __attribute__((noinline)) void rseq_full(struct spanheap *sh,
                                                uintptr_t a, uintptr_t sp)
{
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	bool own = sp != (uintptr_t)s;
	if (!own)
		free_check_marker(s, a, sh->mag_cookie);
	spanheap_free_unpinned(sh, a, s->sizeclass, own);
}
#endif

/*
 * Frees object idx of the small span s (checked: in use, p the start of
 * object idx < marked). The object must be allocated: every free object
 * below marked carries the free marker (cookie ^ address) in its second
 * word, from its free until it is handed out again, whichever way it
 * went; so the marker alone tells, with no look at the span's bitmaps
 * (another cache line). Then, pinned (or as a restartable sequence,
 * rseq_push), into this CPU's magazine
 * (last in, first out: the next allocation of the class gets it back
 * while it is still in cache), whose older half goes back to the spans
 * when it is full (spanheap_mag_full). Every free takes the magazine, those of
 * objects of this CPU's own cached span too: a local bit in the span
 * (Go's and mimalloc's way) is reused only when the span's allocation
 * cache runs dry, after the allocations have walked the rest of the span,
 * and in the mixed-size workload that walk cost a fifth of the time (24
 * against 19-20 ns an op). Two CPUs freeing one object at the same
 * instant may both pass the marker test: the check and the mark are not
 * one atomic operation. With MM_PORT_RSEQ the test is the sequence's.
 */
static inline __attribute__((always_inline)) void
free_small(struct spanheap *sh, struct mspan *s, void *p)
{
	uintptr_t a = (uintptr_t)p, cookie = sh->mag_cookie;
#ifdef MM_PORT_RSEQ
	uintptr_t sp = (uintptr_t)s; /* the marker's test is the sequence's */
	if (__builtin_expect(!rseq_push(sh, s->mag_offset, a, cookie ^ a, &sp),
	                     0))
		rseq_full(sh, a, sp);
#else
	free_check_marker(s, a, cookie);
	struct mm_pin pin = mm_port_pin_fast();
	if (__builtin_expect(!mag_try_push(sh, pin.cpu, s, a, cookie), 0)) {
		spanheap_mag_full(sh, a, s->sizeclass, pin);
		return;
	}
	mm_port_unpin_fast(pin);
#endif
}

/* Everything the fast path of spanheap_free does not take: NULL, large
 * spans, and misuse (spanheap_span_of says what is wrong). */
static __attribute__((noinline)) void free_slow(struct spanheap *sh, void *p)
{
	if (!p)
		return;
	if (spanheap_guard_owns(&sh->guard, p)) {
		spanheap_guard_free(sh, p, SPANHEAP_GUARD_UNOWNED);
		return;
	}
	uint32_t idx;
	struct mspan *s = spanheap_span_of(sh, p, &idx, "free");
	if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
	    MSPAN_LARGE)
		spanheap_large_free(sh, s, p);
	else if (idx >= atomic_load_explicit(&s->marked, memory_order_acquire))
		spanheap_free_refused(s, idx,
		                      (uintptr_t)p); /* never handed out */
	else
		free_small(sh, s, p);
}

/* free_class's way for what its fast path does not take: the span
 * (misuse panics, as spanheap_free's), its class, then free_slow. */
static __attribute__((noinline)) bool free_class_slow(struct spanheap *sh,
                                                      void *p, unsigned cls)
{
	if (spanheap_guard_owns(&sh->guard, p))
		return spanheap_guard_free(sh, p, cls);
	uint32_t idx;
	struct mspan *s = spanheap_span_of(sh, p, &idx, "free");
	if (s->sizeclass != cls) /* a large span's is 0 */
		return false;
	free_slow(sh, p);
	return true;
}

/* spanheap_free's path with one test more: the span's class, read from
 * the line the checks read. */
bool spanheap_free_class(struct spanheap *sh, void *p, unsigned cls)
{
	struct mspan *s = fast_span_of(sh, p);
	if (__builtin_expect(s != NULL, 1)) {
		if (__builtin_expect(s->sizeclass != cls, 0))
			return false;
		free_small(sh, s, p);
		return true;
	}
	return p ? free_class_slow(sh, p, cls) : true;
}

/*
 * The fast path: the span from the lock-free table, the checks (p the
 * start of an object below marked, not yet free), then the pin and the
 * magazine. The object keeps its span in use, so nothing needs the pin
 * before the magazine. Any context but NMI.
 */
SPANHEAP_FAST void spanheap_free(struct spanheap *sh, void *p)
{
	struct mspan *s = fast_span_of(sh, p);
	if (__builtin_expect(s != NULL, 1)) {
		free_small(sh, s, p);
		return;
	}
	free_slow(sh, p);
}

/* spanheap_free's fast path on CPU cpu, which the caller holds; the
 * magazine's push, pinned, is the only store (spanheap.h). */
SPANHEAP_FAST bool spanheap_free_held(struct spanheap *sh, void *p,
                                      unsigned cpu)
{
	struct mspan *s = fast_span_of(sh, p);
	if (__builtin_expect(s == NULL, 0))
		return false;
	uintptr_t a = (uintptr_t)p, cookie = sh->mag_cookie;
	free_check_marker(s, a, cookie);
	return mag_try_push(sh, cpu, s, a, cookie);
}
