/*
 * DMA buffers (kernel/dma.h): physically consecutive frames, checked
 * through the page tables and not only through the phys dma_alloc
 * returns; alignment and limit honoured; zeroing; bad requests refused
 * with a line naming what was wrong; exhausting the pool returns NULL and
 * leaks nothing; a bad free named; addrinfo naming a buffer, live or
 * freed; and the physical address behind any kernel address
 * (kvirt_to_phys), refused for a range that is not physically
 * contiguous. The multi-CPU storm is dma_storm_test.c.
 */
#include "arch/x86_64/paging.h"
#include "kernel/addrinfo.h"
#include "kernel/dma.h"
#include "kernel/format.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "mm/failpoint.h"
#include "mm/spanheap_fail.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

/* A virtual range no one else maps (beside paging_test's scratch). */
#define DMA_TEST_VA 0xfffffe8140000000ull

/* Whether every page of [va, va + npages pages) translates, through the
 * page tables, to phys + its offset. */
static bool consecutive_in_page_tables(const void *va, size_t npages,
                                       paddr_t phys)
{
	for (size_t i = 0; i < npages; i++) {
		paddr_t got;
		uintptr_t at = (uintptr_t)va + i * PAGE_SIZE;
		if (!vm_translate(at, &got, NULL) ||
		    got != phys + i * PAGE_SIZE) {
			ktest_diag("page %zu at %#lx maps %#llx, not %#llx", i,
			           at, (unsigned long long)got,
			           (unsigned long long)(phys + i * PAGE_SIZE));
			return false;
		}
	}
	return true;
}

KTEST(dma, pages_are_consecutive_in_the_page_tables)
{
	size_t baseline_live = dma_live_count();
	paddr_t phys = 0;
	size_t nbytes = 5 * PAGE_SIZE + 100;
	uint8_t *p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	KEXPECT_EQ(dma_live_count(), baseline_live + 1);
	KEXPECT_EQ(phys % PAGE_SIZE, 0);
	KEXPECT(phys >= FRAMES_LOW_LIMIT);
	KEXPECT(consecutive_in_page_tables(p, 6, phys));
	paddr_t pa = 0;
	KEXPECT(kvirt_range_to_phys(p, nbytes, &pa) == NULL);
	KEXPECT_EQ(pa, phys);
	/* The last byte is ours: the size is rounded up to whole pages. */
	p[6 * PAGE_SIZE - 1] = 0x5a;
	dma_free(p, nbytes);
	KEXPECT_EQ(dma_live_count(), baseline_live);
	frames_check();
}

KTEST(dma, alignment_is_honoured)
{
	static const size_t aligns[] = {16, PAGE_SIZE, 64 << 10, 2 << 20};
	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
		size_t a = aligns[i], want = a < PAGE_SIZE ? PAGE_SIZE : a;
		paddr_t phys = 0;
		void *p = dma_alloc(3 * PAGE_SIZE, a, DMA_LIMIT_ANY, 0, &phys);
		KASSERT(p != NULL);
		KEXPECT_EQ(phys % want, 0);
		KEXPECT(consecutive_in_page_tables(p, 3, phys));
		/* An alignment at least the size: no boundary crossed. */
		if (a >= 3 * PAGE_SIZE)
			KEXPECT_EQ(phys / a, (phys + 3 * PAGE_SIZE - 1) / a);
		dma_free(p, 3 * PAGE_SIZE);
	}
	frames_check();
}

KTEST(dma, limit_is_honoured)
{
	paddr_t phys = 0;
	void *p = dma_alloc(64 << 10, PAGE_SIZE, DMA_LIMIT_32BIT, 0, &phys);
	KASSERT(p != NULL);
	KEXPECT(phys + (64 << 10) <= DMA_LIMIT_32BIT);
	dma_free(p, 64 << 10);
	/* The pool is first fit: quiet, the same request finds the same
	 * run, whose end is the lowest limit that admits it. */
	heap_settle();
	p = dma_alloc(16 * PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	dma_free(p, 16 * PAGE_SIZE);
	paddr_t end = phys + 16 * PAGE_SIZE, again = 0;
	p = dma_alloc(16 * PAGE_SIZE, PAGE_SIZE, end, 0, &again);
	KASSERT(p != NULL);
	KEXPECT_EQ(again, phys);
	dma_free(p, 16 * PAGE_SIZE);
	size_t before = frames_free_count();
	KEXPECT(dma_alloc(16 * PAGE_SIZE, PAGE_SIZE, end - 1, 0, &again) ==
	        NULL);
	KEXPECT_EQ(frames_free_count(), before);
	frames_check();
}

KTEST(dma, zeroed_on_request)
{
	paddr_t phys = 0, again = 0;
	size_t nbytes = 4 * PAGE_SIZE;
	heap_settle();
	uint64_t *p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	for (size_t i = 0; i < nbytes / 8; i++)
		p[i] = ~0ull;
	dma_free(p, nbytes);
	p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, DMA_ZERO, &again);
	KASSERT(p != NULL);
	KEXPECT_EQ(again, phys); /* first fit: the dirtied run again */
	bool zero = true;
	for (size_t i = 0; i < nbytes / 8; i++)
		zero &= p[i] == 0;
	KEXPECT(zero);
	dma_free(p, nbytes);
	/* A size short of whole pages: the pages' tail is the buffer's
	 * too (dma.h), zeroed as well. Dirty the run again, then take it
	 * with 100 bytes of the last page asked for. */
	p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, 0, &again);
	KASSERT(p != NULL);
	KEXPECT_EQ(again, phys);
	for (size_t i = 0; i < nbytes / 8; i++)
		p[i] = ~0ull;
	dma_free(p, nbytes);
	size_t short_of = nbytes - PAGE_SIZE + 100;
	p = dma_alloc(short_of, PAGE_SIZE, DMA_LIMIT_ANY, DMA_ZERO, &again);
	KASSERT(p != NULL);
	KEXPECT_EQ(again, phys);
	size_t dirty = 0;
	for (size_t i = 0; i < nbytes / 8; i++)
		dirty += p[i] != 0;
	if (dirty)
		ktest_diag("%zu of %zu words not zeroed", dirty, nbytes / 8);
	KEXPECT_EQ(dirty, 0);
	dma_free(p, short_of);
}

#if KTEST_HOOKS
/* Whether dma_alloc refuses the request, taking nothing, with a line
 * holding `says`. */
static bool refused(size_t nbytes, size_t align, paddr_t limit, unsigned flags,
                    const char *says)
{
	paddr_t phys = 0x1234;
	size_t before = dma_live_count();
	capture_start();
	void *p = dma_alloc(nbytes, align, limit, flags, &phys);
	capture_stop();
	return p == NULL && phys == 0x1234 && dma_live_count() == before &&
	       seen_has("refused: ") && seen_has(says);
}

KTEST(dma, bad_requests_are_refused_and_named)
{
	heap_settle();
	size_t before = frames_free_count();
	KEXPECT(refused(0, PAGE_SIZE, DMA_LIMIT_ANY, 0, "size 0"));
	KEXPECT(refused(SIZE_MAX, PAGE_SIZE, DMA_LIMIT_ANY, 0,
	                "size too large to round up"));
	KEXPECT(refused(SIZE_MAX - (PAGE_SIZE - 2), PAGE_SIZE, DMA_LIMIT_ANY, 0,
	                "size too large to round up"));
	/* The largest size that rounds up is not refused for its size. */
	KEXPECT(refused(SIZE_MAX - (PAGE_SIZE - 1), PAGE_SIZE, DMA_LIMIT_ANY, 0,
	                "limit leaves no room"));
	KEXPECT(refused(PAGE_SIZE, 0, DMA_LIMIT_ANY, 0,
	                "alignment not a power of two"));
	KEXPECT(refused(PAGE_SIZE, 3 * PAGE_SIZE, DMA_LIMIT_ANY, 0,
	                "alignment not a power of two"));
	KEXPECT(refused(PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 1u << 7,
	                "unknown flags"));
	KEXPECT(refused(PAGE_SIZE, PAGE_SIZE, FRAMES_LOW_LIMIT, 0,
	                "limit leaves no room above the pool's lowest"));
	KEXPECT(refused(2 * PAGE_SIZE, PAGE_SIZE, FRAMES_LOW_LIMIT + PAGE_SIZE,
	                0, "limit leaves no room above the pool's lowest"));
	KEXPECT(refused(PAGE_SIZE, PAGE_SIZE, 0, 0, "limit leaves no room"));
	/* A limit that leaves exactly the room asked is not refused as a
	 * bad request (the frame at 1 MiB may be taken: then no run fits). */
	paddr_t phys = 0;
	capture_start();
	void *p = dma_alloc(PAGE_SIZE, PAGE_SIZE, FRAMES_LOW_LIMIT + PAGE_SIZE,
	                    0, &phys);
	capture_stop();
	KEXPECT(!seen_has("limit leaves no room"));
	KEXPECT(p != NULL || seen_has("no run of 1 free frames fits"));
	if (p) {
		KEXPECT_EQ(phys, FRAMES_LOW_LIMIT);
		dma_free(p, PAGE_SIZE);
	}
	/* An alignment whose slack no run can hold: the line says how
	 * many frames were looked for, not only the size's one frame (a
	 * pool full of single frames does not fit "1 frame"). */
	capture_start();
	p = dma_alloc(PAGE_SIZE, 1ull << 40, DMA_LIMIT_ANY, 0, &phys);
	capture_stop();
	KEXPECT(p == NULL);
	KEXPECT(seen_has("no run of 268435456 free frames"));
	KEXPECT(seen_has("1 for the buffer, 268435455 of slack"));
	KEXPECT_EQ(frames_free_count(), before);
}

/* A dma_alloc that frame failure injection failed says so, as the
 * kernel's other injected failures do (smp.no_ist's "its IST stacks
 * were withheld"): a developer proving a driver's error path must tell
 * it from a real shortage, whose line (no run of N free frames fits) it
 * printed too until then. */
KTEST(dma, an_injected_failure_says_it_was_injected)
{
	heap_threads_stop(); /* nothing else takes the injected failure */
	struct spanheap_fail_attr a = {.interval = 1,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	size_t before = frames_free_count();
	KASSERT(frames_fail_arm(&a));
	paddr_t phys = 0x1234;
	capture_start();
	void *p = dma_alloc(3 * PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	capture_stop();
	struct failpoint_counts n;
	frames_fail_get(&a, &n);
	frames_fail_disarm();
	size_t after = frames_free_count();
	KEXPECT(heap_threads_start());
	KEXPECT_EQ(n.injected, 1);
	KEXPECT(p == NULL && phys == 0x1234);
	KEXPECT_EQ(after, before);
	if (p)
		dma_free(p, 3 * PAGE_SIZE);
	KEXPECT(seen_has("dma_alloc(12288, align 0x1000, limit "));
	KEXPECT(seen_has("failure injected by the frame pool's fault "
	                 "injection (mmfail frame), not a shortage"));
	KEXPECT(!seen_has("no run of"));
	/* The next call, not injected, is served. */
	p = dma_alloc(3 * PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KEXPECT(p != NULL);
	if (p)
		dma_free(p, 3 * PAGE_SIZE);
}

/* addrinfo (a fault report's CR2, the shell's) names the DMA buffer an
 * address of the direct map lies in, live or freed lately (rv122: it
 * named the frame only, and a use after dma_free looked like any frame
 * of the pool). */
KTEST(dma, addrinfo_names_the_buffer)
{
	paddr_t phys;
	char *p =
	        dma_alloc(PAGE_SIZE + 100, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	char want[96];
	ksnprintf(want, sizeof(want), "byte 4196 of DMA buffer %p (4196 bytes)",
	          (void *)p);
	capture_start();
	addrinfo_print("", "at", (uintptr_t)p + 4196);
	capture_stop();
	KEXPECT(seen_has(want));
	dma_free(p, PAGE_SIZE + 100);
	ksnprintf(want, sizeof(want),
	          "byte 5 of DMA buffer %p (4196 bytes), "
	          "freed already",
	          (void *)p);
	capture_start();
	addrinfo_print("", "at", (uintptr_t)p + 5);
	capture_stop();
	KEXPECT(seen_has(want));
}
#endif

/* Takes buffers of nbytes until dma_alloc says no, chained through their
 * first word; returns the chain. */
static void *take_all(size_t nbytes, size_t *n)
{
	void *head = NULL;
	paddr_t phys;
	for (void *p; (p = dma_alloc(nbytes, PAGE_SIZE, DMA_LIMIT_ANY, 0,
	                             &phys)) != NULL;
	     (*n)++) {
		*(void **)p = head;
		head = p;
	}
	return head;
}

static void give_all(void *head, size_t nbytes)
{
	while (head) {
		void *next = *(void **)head;
		dma_free(head, nbytes);
		head = next;
	}
}

/* The size of the big buffers that take the pool of free_pages frames:
 * 8 MiB, or more, in 2 MiB steps, where half the table's worth of 8 MiB
 * buffers would not take it all. At -m 5G, 256 buffers of 8 MiB were 2
 * of its 5 GiB: the table ran out first ("expected nbig <
 * DMA_MAX_BUFFERS"); the pool's whole runs need at most half the table
 * (40 MiB buffers there, about 128 of them). */
static size_t big_buffer_bytes(size_t free_pages)
{
	size_t pages = free_pages / (DMA_MAX_BUFFERS / 2) + 1;
	pages = (pages + 511) / 512 * 512;
	return pages < 2048 ? 8 << 20 : pages * PAGE_SIZE;
}

KTEST(dma, exhausting_the_pool_returns_null_and_leaks_nothing)
{
	heap_settle();
	size_t baseline = frames_free_count(), live = dma_live_count();
	/* Big buffers, then single frames for what is left: the pool's
	 * last frames, fragmented, cannot make another big one. */
	size_t nbig = 0, big_bytes = big_buffer_bytes(baseline);
	void *big = take_all(big_bytes, &nbig);
	ktest_diag("%zu buffers of %zu MiB", nbig, big_bytes >> 20);
	KEXPECT(nbig > 0);
	KEXPECT(nbig < DMA_MAX_BUFFERS); /* the pool ran out, not the table */
	paddr_t rest = frames_drain(0);
	KEXPECT_EQ(frames_free_count(), 0);
	paddr_t phys = 0;
	KEXPECT(dma_alloc(PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, DMA_ZERO,
	                  &phys) == NULL);
	KEXPECT_EQ(phys, 0);
	frames_refill(rest);
	give_all(big, big_bytes);
	KEXPECT_EQ(dma_live_count(), live);
	KEXPECT_EQ(frames_free_count(), baseline);
	frames_check();
}

KTEST(dma, a_full_table_is_refused)
{
	heap_settle();
	size_t baseline = frames_free_count();
	size_t n = dma_live_count();
	void *head = take_all(PAGE_SIZE, &n);
	KEXPECT_EQ(n, DMA_MAX_BUFFERS);
	give_all(head, PAGE_SIZE);
	KEXPECT_EQ(frames_free_count(), baseline);
}

KTEST(dma, a_bad_free_is_named)
{
	paddr_t phys;
	uint8_t *p =
	        dma_alloc(2 * PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	KEXPECT(dma_free_check(p, 2 * PAGE_SIZE) == NULL);
	KEXPECT(dma_free_check(NULL, 0) == NULL);
	KEXPECT_STREQ(dma_free_check(p + PAGE_SIZE, 2 * PAGE_SIZE),
	              "inside a DMA buffer, not its start");
	KEXPECT_STREQ(dma_free_check(p, PAGE_SIZE),
	              "not the size the buffer was allocated with");
	/* The rounded-up tail of a buffer short of whole pages is inside
	 * it too. */
	paddr_t qphys;
	uint8_t *q =
	        dma_alloc(PAGE_SIZE + 100, PAGE_SIZE, DMA_LIMIT_ANY, 0, &qphys);
	KASSERT(q != NULL);
	KEXPECT_STREQ(dma_free_check(q + PAGE_SIZE + 200, PAGE_SIZE + 100),
	              "inside a DMA buffer, not its start");
	dma_free(q, PAGE_SIZE + 100);
	void *k = kmalloc(64, 0);
	KASSERT(k != NULL);
	KEXPECT_STREQ(dma_free_check(k, 64), "not a buffer dma_alloc returned");
	/* Past p's end, off a page's start: no buffer's start, live or
	 * among the freed ones an earlier test left (until a CI run, the
	 * page after the second buffer's, which the storm had freed as a
	 * buffer: "freed already (a double free)"). */
	KEXPECT_STREQ(dma_free_check(phys_to_virt(phys + 2 * PAGE_SIZE + 64),
	                             PAGE_SIZE),
	              "not a buffer dma_alloc returned");
	kfree(k);
	dma_free(p, 2 * PAGE_SIZE);
	KEXPECT_STREQ(dma_free_check(p, 2 * PAGE_SIZE),
	              "freed already (a double free)");
}

KTEST(dma, kvirt_to_phys_reads_the_page_tables)
{
	paddr_t pa = frame_alloc(), got = 0;
	KASSERT(pa != 0);
	KEXPECT(kvirt_to_phys((char *)phys_to_virt(pa) + 0x123, &got));
	KEXPECT_EQ(got, pa + 0x123);
	frame_free(pa);
	/* A heap object: not a direct-map address, but read through the
	 * direct map at the address found, it is the same memory. */
	uint64_t *k = kmalloc(64, 0);
	KASSERT(k != NULL);
	*k = 0x1122334455667788ull;
	KEXPECT((uintptr_t)k - DIRECT_MAP_BASE >= DIRECT_MAP_SIZE);
	KEXPECT(kvirt_to_phys(k, &got));
	KEXPECT_EQ(*(uint64_t *)phys_to_virt(got), 0x1122334455667788ull);
	kfree(k);
	KEXPECT(!kvirt_to_phys((void *)DMA_TEST_VA, &got));
}

KTEST(dma, a_range_across_frames_apart_is_refused)
{
	/* Two pages mapped from frames two apart, as the heap may map a
	 * multi-page object. */
	paddr_t run = frames_alloc_contig(3), got = 0x77;
	KASSERT(run != 0);
	KASSERT_EQ(vm_map_page(DMA_TEST_VA, run, VM_WRITE), 0);
	KASSERT_EQ(vm_map_page(DMA_TEST_VA + PAGE_SIZE, run + 2 * PAGE_SIZE,
	                       VM_WRITE),
	           0);
	const char *straddle = (const char *)DMA_TEST_VA + PAGE_SIZE - 8;
	KEXPECT_STREQ(kvirt_range_to_phys(straddle, 16, &got),
	              "not physically contiguous");
	KEXPECT_EQ(got, 0x77);
	KEXPECT(kvirt_range_to_phys(straddle, 8, &got) == NULL);
	KEXPECT_EQ(got, run + PAGE_SIZE - 8);
	KEXPECT_STREQ(kvirt_range_to_phys(straddle + 16, PAGE_SIZE, &got),
	              "not mapped");
	KEXPECT_STREQ(kvirt_range_to_phys(straddle, 0, &got),
	              "empty or wrapping range");
	/* NULL and 0: empty, though 0 + 0 - 1 does not wrap below 0. */
	KEXPECT_STREQ(kvirt_range_to_phys(NULL, 0, &got),
	              "empty or wrapping range");
	KEXPECT_STREQ(kvirt_range_to_phys((void *)UINTPTR_MAX, 2, &got),
	              "empty or wrapping range");
	/* Consecutive frames: the range is one. */
	KASSERT_EQ(vm_unmap_page(DMA_TEST_VA + PAGE_SIZE, NULL), 0);
	KASSERT_EQ(
	        vm_map_page(DMA_TEST_VA + PAGE_SIZE, run + PAGE_SIZE, VM_WRITE),
	        0);
	KEXPECT(kvirt_range_to_phys(straddle, 16, &got) == NULL);
	KEXPECT_EQ(got, run + PAGE_SIZE - 8);
	KEXPECT_EQ(vm_unmap_page(DMA_TEST_VA, NULL), 0);
	KEXPECT_EQ(vm_unmap_page(DMA_TEST_VA + PAGE_SIZE, NULL), 0);
	frames_free_contig(run, 3);
}

#ifdef KTEST_FAIL_DEMO
/* Built only with KTEST_FAIL_DEMO=1 (tools/test-harness). */
KTEST(demo, dma_double_free)
{
	paddr_t phys;
	void *p = dma_alloc(2 * PAGE_SIZE, PAGE_SIZE, DMA_LIMIT_ANY, 0, &phys);
	KASSERT(p != NULL);
	dma_free(p, 2 * PAGE_SIZE);
	/* The frames may be another's by now: the table must refuse. */
	dma_free(p, 2 * PAGE_SIZE);
	ktest_fail_at(__FILE__, __LINE__, "dma_free took a buffer twice");
}
#endif
