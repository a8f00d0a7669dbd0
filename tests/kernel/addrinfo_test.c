/*
 * What a kernel address is (kernel/addrinfo.c), as the page-fault report
 * and the shell's addrinfo print it: the NULL page, the lower half, a
 * non-canonical address, the image's sections and a symbol, the boot
 * stack's and a thread stack's guard pages, the direct map with and
 * without a frame of the pool, the device MMIO region, and in the heap
 * arena a small object allocated and freed, a large one and its freed
 * pages; a fault while the heap is read, caught; a span heap never set
 * up, whose fast path's fault the #PF report names; one CPU's readings of
 * its own objects while the other CPUs churn the heap; and, for a #GP,
 * the registers that hold no address (poison, red zone, a free marker).
 * The demos fault on purpose (tools/test-harness checks their reports):
 * a NULL pointer's field, a large object used after its free under
 * mm.debug_pagealloc (its pages unmapped), a pointer read from a
 * freed object and followed (poison mode's fill, and the free marker),
 * and an allocation from a span heap never set up (its NULL magazines).
 */
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/addrinfo.h"
#include "kernel/bootinfo.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"

#include <stdatomic.h>

#if KTEST_HOOKS

static char want[160];

/* addrinfo_print(a)'s output, captured: whether it holds the text fmt
 * makes (with a's value where fmt asks for it). */
__attribute__((format(printf, 2, 3))) static bool says(uint64_t a,
                                                       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	capture_start();
	addrinfo_print("", "at", a);
	capture_stop();
	return seen_has(want);
}

static int demo_data = 1;

KTEST(addrinfo, names_the_region_of_the_address)
{
	KEXPECT(says(0x10, "at 0x10: a NULL pointer dereference (byte 16 of "
	                   "page 0, which is never mapped)"));
	KEXPECT(says(0xdead000, "at 0xdead000: in the lower half"));
	KEXPECT(says(0x0000800000000000ull,
	             "at 0x800000000000: not canonical"));
	uint64_t fn = (uintptr_t)addrinfo_print;
	KEXPECT(says(fn + 4,
	             "at %#lx: in the kernel's text: addrinfo_print+0x4",
	             (unsigned long)(fn + 4)));
	KEXPECT(says((uintptr_t)&demo_data, "in the kernel's data"));
	KEXPECT(says((uintptr_t) "a literal",
	             "in the kernel's read-only data"));
	KEXPECT(says((uintptr_t)__boot_stack_guard + 8,
	             "in the boot stack's guard page (a stack overflow?)"));
	KEXPECT(says(MMIO_REGION_BASE + 0x20, "in the device MMIO region"));
	/* The span heap's metadata arena, by its last byte (a mutation
	 * audit found no test of its line). */
	uint64_t meta_end = kspanheap.meta.arena_base +
	                    kspanheap.meta.arena_pages * PAGE_SIZE;
	KEXPECT(says(meta_end - 1, "at %#lx: in the span heap's own metadata",
	             (unsigned long)(meta_end - 1)));
}

/* A thread's own stack and its guard page (the tests run on the boot
 * stack, in the image): asked by a thread of its own, joined before the
 * answers are read. */
static bool stack_said[2];

static void ask_about_own_stack(void *arg)
{
	(void)arg;
	struct thread *t = thread_current();
	stack_said[0] = says(t->stack.guard + 100,
	                     "in a kernel stack's guard page (a stack "
	                     "overflow?)");
	stack_said[1] = says(t->stack.top - 8, "in the kernel stacks' region");
}

KTEST(addrinfo, names_a_thread_stack_and_its_guard_page)
{
	stack_said[0] = stack_said[1] = false;
	struct thread_handle h = thread_create("addrinfo", ask_about_own_stack,
	                                       NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(h));
	thread_join(h);
	KEXPECT(stack_said[0]);
	KEXPECT(stack_said[1]);
}

KTEST(addrinfo, names_the_frame_of_a_direct_map_address)
{
	paddr_t pa = frame_alloc();
	KASSERT(pa != 0);
	uint64_t va = (uintptr_t)phys_to_virt(pa) + 12;
	KEXPECT(says(va,
	             "at %#lx: in the direct map: physical %#lx, a frame "
	             "of the pool",
	             (unsigned long)va, (unsigned long)(pa + 12)));
	frame_free(pa);
	KEXPECT(says((uintptr_t)phys_to_virt(0x2000),
	             "physical 0x2000, not a frame of the pool: below 1 MiB"));
	/* The VGA hole: no region of QEMU's map, so not in the direct map;
	 * and a region the direct map does not hold (reserved or MMIO). */
	KEXPECT(says((uintptr_t)phys_to_virt(0xa0010),
	             "in the direct map's range, unmapped: physical 0xa0010 "
	             "is in a hole of the memory map"));
	const struct mem_region *dev = NULL;
	for (size_t i = 0; i < boot_state.nregions && !dev; i++)
		if (boot_state.regions[i].type == EFI_RESERVED_MEMORY ||
		    boot_state.regions[i].type == EFI_MEMORY_MAPPED_IO)
			dev = &boot_state.regions[i];
	KASSERT(dev != NULL); /* QEMU's map has both */
	KEXPECT(says((uintptr_t)phys_to_virt(dev->base),
	             "physical %#lx is %s memory in the memory map, which "
	             "it does not hold",
	             (unsigned long)dev->base, mem_type_name(dev->type)));
}

KTEST(addrinfo, names_a_heap_object_and_its_state)
{
	static struct guard_aside aside; /* mm.guard's objects */
	char *p = kmalloc_plain(40, 0, &aside);
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	KEXPECT(says((uintptr_t)p + 8, "at %#lx: in the heap arena",
	             (unsigned long)p + 8));
	KEXPECT(seen_has("8 bytes into object "));
	KEXPECT(seen_has(" (allocated) of span "));
	kfree(p);
	KEXPECT(says((uintptr_t)p, "mm: spanheap: %#lx: 0 bytes into object ",
	             (unsigned long)p));
	KEXPECT(seen_has(" (free) of span "));

	char *big = kmalloc(100 << 10, 0);
	KASSERT(big != NULL);
	KEXPECT(says((uintptr_t)big + 5000,
	             "mm: spanheap: %#lx: 5000 bytes into a large object "
	             "(allocated) [%#lx, +25 pages)",
	             (unsigned long)big + 5000, (unsigned long)big));
	kfree(big);
	/* The heap remembers the free: the object, when, where. */
	KEXPECT(says((uintptr_t)big + 5000,
	             "mm: spanheap: %#lx: 5000 bytes into a large object "
	             "[%#lx, +25 pages) freed ",
	             (unsigned long)big + 5000, (unsigned long)big));
	KEXPECT(seen_has(" us before on CPU "));
}

/* The shell's way, addrinfo_print_caught: a heap page that vanishes while
 * it is read (a span freed and unmapped meanwhile) is caught, said, and
 * no panic. Made to happen by clearing the PTE of a 32 KiB object's first
 * page (its span holds it alone), whose free marker the heap then reads. */
KTEST(addrinfo, a_fault_while_reading_the_heap_is_caught)
{
	char *p = kmalloc(32 << 10, 0);
	KASSERT(p != NULL);
	struct spanheap_where w;
	KASSERT(spanheap_where(&kspanheap, p, &w));
	KASSERT_EQ(w.kind, SPANHEAP_WHERE_SMALL);
	KASSERT_EQ(w.span_base, (uintptr_t)p);
	paddr_t pa;
	unsigned flags;
	KASSERT(vm_translate((uintptr_t)p, &pa, &flags));
	KASSERT_EQ(vm_pte_clear((uintptr_t)p, &pa), 0);
	capture_start();
	bool ok = addrinfo_print_caught("", "at", (uintptr_t)p);
	capture_stop();
	KASSERT_EQ(vm_pte_set((uintptr_t)p, pa, flags), 0);
	KEXPECT(!ok);
	ksnprintf(want, sizeof(want), "(a fault at %#lx while reading the heap",
	          (unsigned long)p + 8);
	KEXPECT(seen_has(want));
	KEXPECT(addrinfo_print_caught("", "at", (uintptr_t)p));
	kfree(p);
}

/* ---- The readers while other CPUs churn the heap ----------------------- */

static _Atomic bool churn_stop;
static _Atomic uintptr_t churn_last; /* a churner's latest object, freed */

/* Allocates and frees objects of random sizes (a large one in 16), so
 * spans are made, emptied and given back while the readers read. */
static void churn(void *arg)
{
	uint64_t r = (uintptr_t)arg * 0x9e3779b97f4a7c15ull | 1;
	static const size_t sizes[] = {16, 40, 200, 900, 3000, 20000, 50000};
	void *keep[32] = {0};
	while (!atomic_load(&churn_stop)) {
		r ^= r << 13, r ^= r >> 7, r ^= r << 17;
		unsigned k = (unsigned)(r % 32);
		if (keep[k]) {
			atomic_store(&churn_last, (uintptr_t)keep[k]);
			kfree(keep[k]);
		}
		keep[k] = kmalloc(sizes[(r >> 8) % 7], 0);
		if (keep[k])
			*(volatile char *)keep[k] = 1;
	}
	for (unsigned k = 0; k < 32; k++)
		kfree(keep[k]);
}

/*
 * Threads on the other CPUs churn the heap while this one asks what its
 * own live objects are, at random offsets, and what the churners' freed
 * objects are (addrinfo_print_caught, under the fault hook), and, in
 * poison mode, for the traces of every stack. Its own objects must read
 * as themselves, allocated, every time; the rest must never panic. The
 * heap checks clean at the end.
 */
enum { NOWN = 48, ROUNDS = 300 };
static const size_t own_sizes[] = {24, 100, 700, 4000, 40000};

/* How many of the test's own objects (own[i] of own_sizes[i % 5] bytes)
 * did not read as themselves, allocated, at round's offsets. */
static unsigned own_misread(char *const *own, unsigned round)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < NOWN; i++) {
		size_t off = (round * 7 + i * 13) % own_sizes[i % 5];
		struct spanheap_where w;
		/* mm.guard: some are the guarded pool's. */
		if (!spanheap_where(&kspanheap, own[i] + off, &w) ||
		    w.start != (uintptr_t)own[i] || w.offset != off ||
		    (w.kind == SPANHEAP_WHERE_SMALL ||
		                     w.kind == SPANHEAP_WHERE_GUARD
		             ? w.state != SPANHEAP_OBJ_ALLOCATED
		             : w.kind != SPANHEAP_WHERE_LARGE))
			bad++;
	}
	return bad;
}

KTEST(addrinfo, readers_stay_true_while_other_cpus_churn)
{
	static struct thread_handle th[MAX_CPUS];
	static char *own[NOWN];
	static struct spanheap_trace tr[8];
	for (unsigned i = 0; i < NOWN; i++)
		KASSERT((own[i] = kmalloc(own_sizes[i % 5], 0)) != NULL);
	atomic_store(&churn_stop, false);
	unsigned n = 0;
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		if (c == this_cpu()->id || !atomic_load(&cpus[c].online))
			continue;
		th[n] = thread_create("churn", churn,
		                      (void *)(uintptr_t)(c + 1), c);
		KEXPECT(thread_handle_ok(th[n]));
		n += thread_handle_ok(th[n]);
	}
	unsigned bad = 0, caught = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		bad += own_misread(own, round);
		capture_start();
		caught += !addrinfo_print_caught("", "at",
		                                 atomic_load(&churn_last));
		capture_stop();
		size_t rest;
		struct fault_catch fc;
		if (kspanheap.track && round % 50 == 0 &&
		    fault_catch_arm(&fc) == 0) {
			spanheap_alloc_traces(&kspanheap, 0, tr, 8, &rest);
			fault_catch_disarm(&fc);
		}
	}
	atomic_store(&churn_stop, true);
	for (unsigned i = 0; i < n; i++)
		thread_join(th[i]);
	KEXPECT_EQ(bad, 0);
	ktest_diag("%u churners; %u of %u reads of their freed objects "
	           "faulted, caught",
	           n, caught, (unsigned)ROUNDS);
	for (unsigned i = 0; i < NOWN; i++)
		kfree(own[i]);
	/* Statics, read by the leak scan: a stale pointer there keeps
	 * whatever the heap puts at its address next (with mm.guard=1, the
	 * pool's slots: heap_leaks' tests, after this one, found no leak). */
	memset(own, 0, sizeof(own));
	memset(th, 0, sizeof(th));
	atomic_store(&churn_last, 0);
	spanheap_check(&kspanheap);
}

/* ---- Registers that hold no address (a #GP's report) ------------------- */

static bool canonical_value(uint64_t v)
{
	int64_t top = (int64_t)v >> 47;
	return top == 0 || top == -1;
}

KTEST(addrinfo, names_what_a_non_canonical_register_may_be)
{
	static struct guard_aside aside; /* mm.guard's objects */
	uint64_t *p = kmalloc_plain(64, 0, &aside);
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	kfree(p);
	/* the free marker: cookie ^ p */
	uint64_t marker = kasan_peek_u64(&p[1]);
	struct trap_frame f = {
	        .rax = 0xdbdbdbdbdbdbdbdbull,
	        .rbx = 0xdbdbdbdbdbdbdbdbull + 0x18, /* a field through it */
	        .rcx = 0xbbbbbbbbbbbbbbbbull,
	        .rdx = marker,
	        .rsi = 0x8000000000000000ull,
	        .rdi = (uintptr_t)p, /* canonical: not printed */
	};
	capture_start();
	addrinfo_print_regs("", &f);
	capture_stop();
	KEXPECT(seen_has("RAX 0xdbdbdbdbdbdbdbdb: not canonical: "
	                 "mm.debug_poison's fill of a freed object: a pointer "
	                 "read from an object after its free?"));
	KEXPECT(seen_has("RBX 0xdbdbdbdbdbdbdbf3: not canonical: "
	                 "mm.debug_poison's fill of a freed object"));
	KEXPECT(seen_has("RCX 0xbbbbbbbbbbbbbbbb: not canonical: "
	                 "mm.debug_poison's red zone"));
	KEXPECT(seen_has("RSI 0x8000000000000000: not canonical: a garbage "
	                 "pointer?"));
	KEXPECT(!strstr(seen, "RDI"));
	/* The marker is the heap's cookie ^ p, never canonical
	 * (spanheap_init picks the cookie's top bits so). */
	KEXPECT(!canonical_value(marker));
	ksnprintf(want, sizeof(want),
	          "RDX %#lx: not canonical: the free marker of the object at "
	          "%p (its second word while it is free)",
	          (unsigned long)marker, (void *)p);
	KEXPECT(seen_has(want));
}

/* A span heap never set up (zeroed; from the heap, 170 KiB, not a
 * static that every boot would carry): its small allocation's fast
 * path, which has no test of its own, faults in page 0 reading its NULL
 * magazines. The #PF report names that case (kernel/addrinfo.c, via the
 * sequences' table, mm/rseq.h's MM_RSEQ_MAGS_RECORD); not a NULL
 * pointer's field read elsewhere, nor that load's fault past page 0. */
KTEST(addrinfo, names_a_span_heap_used_before_its_init)
{
	struct spanheap *volatile unset = kzalloc(sizeof(*unset), 0);
	KASSERT(unset != NULL);
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		void *volatile p =
		        spanheap_alloc_class(unset, 2, 32, MM_ATOMIC);
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "a zeroed heap gave %p",
		              (void *)p);
		return;
	}
	kfree(unset);
	KEXPECT_EQ(fc.vector, VEC_PF);
	KEXPECT_EQ(fc.cr2, 2 * sizeof(struct mmag));
	KEXPECT(heap_fault_unset_mags(fc.fault_rip, fc.cr2));
	KEXPECT(!heap_fault_unset_mags(fc.fault_rip, PAGE_SIZE));
	KEXPECT(!heap_fault_unset_mags(fc.fault_rip + 1, fc.cr2));
	capture_start();
	addrinfo_print_fault("", fc.fault_rip, fc.cr2);
	capture_stop();
	KEXPECT(seen_has("CR2 0x20: a NULL pointer dereference"));
	KEXPECT(seen_has("a span heap used before spanheap_init? (NULL "
	                 "magazines: a CPU's magazine read at 0x20)"));

	long *volatile null = NULL;
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile long *)&null[1];
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__,
		              "the NULL read did not fault");
		return;
	}
	KEXPECT_EQ(fc.cr2, 8);
	capture_start();
	addrinfo_print_fault("", fc.fault_rip, fc.cr2);
	capture_stop();
	KEXPECT(seen_has("CR2 0x8: a NULL pointer dereference"));
	KEXPECT(!seen_has("spanheap_init"));
}

#ifdef KTEST_FAIL_DEMO
/* ---- Faults on purpose (KTEST_FAIL_DEMO only: each panics) ---- */

/* A kmalloc-like allocation from a span heap never set up: the #PF
 * report says so (tools/test-harness, fault_unset_heap). */
KTEST(demo, allocation_from_a_heap_never_set_up)
{
	struct spanheap *unset = kzalloc(sizeof(*unset), 0);
	KASSERT(unset != NULL);
	ktest_diag("an allocation from a zeroed span heap");
	(void)spanheap_alloc_class(unset, 1, 16, MM_ATOMIC);
	ktest_fail_at(__FILE__, __LINE__, "the allocation did not fault");
}

/* A NULL struct pointer's field read: the report says so. */
struct demo_node {
	long key, value;
};

KTEST(demo, null_pointer_dereference)
{
	struct demo_node *volatile n = NULL;
	ktest_diag("reading a field of a NULL pointer");
	(void)*(volatile long *)&n->value;
	ktest_fail_at(__FILE__, __LINE__, "the read did not fault");
}

/* With mm.debug_pagealloc: a large object's pages are unmapped at its
 * free, so a read after it faults, and the report names those pages. */
KTEST(demo, kmalloc_use_after_free_faults)
{
	if (!cmdline_flag("mm.debug_pagealloc"))
		KTEST_SKIP("needs mm.debug_pagealloc");
	char *p = kmalloc(100 << 10, 0);
	KASSERT(p != NULL);
	kfree(p);
	ktest_diag("use after free at %#lx", (unsigned long)(p + 100));
	(void)*(volatile char *)(p + 100);
	ktest_fail_at(__FILE__, __LINE__, "the read after free did not fault");
}
/* Nodes whose pointer field is read after their free: a field past the
 * marker's word (offset 16) holds poison mode's fill, and one at offset
 * 8 holds the free marker, in any mode. */
struct demo_list {
	long key;
	struct demo_list *at8, *at16;
};

/* With mm.debug_poison: the pointer read from a freed object is
 * 0xdbdb..., and following it takes a #GP, whose report says so. */
KTEST(demo, kmalloc_pointer_read_after_free_poison)
{
	if (!kspanheap.cfg.poison)
		KTEST_SKIP("needs mm.debug_poison");
	struct demo_list *volatile n = kmalloc(sizeof(*n), 0);
	KASSERT(n != NULL);
	n->at16 = n;
	kfree(n);
	ktest_diag("following a pointer read from the freed object at %#lx",
	           (unsigned long)n);
	(void)*(volatile long *)&n->at16->key;
	ktest_fail_at(__FILE__, __LINE__, "no fault");
}

/* In normal mode: the pointer read from a freed object's second word is
 * its free marker, and the #GP's report names the object. */
KTEST(demo, kmalloc_pointer_read_free_marker)
{
	struct demo_list *volatile n = kmalloc(sizeof(*n), 0);
	KASSERT(n != NULL);
	n->at8 = n;
	kfree(n);
	ktest_diag("following the pointer in word 1 of the freed object at "
	           "%#lx",
	           (unsigned long)n);
	(void)*(volatile long *)&n->at8->key;
	ktest_fail_at(__FILE__, __LINE__, "no fault");
}
#endif /* KTEST_FAIL_DEMO */

#endif /* KTEST_HOOKS */
