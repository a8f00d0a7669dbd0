/*
 * kernel/addrinfo.c: what a kernel address is (addrinfo.h), for the
 * page-fault report (arch/x86_64/trap.c) and the shell's addrinfo.
 *
 * Purpose: a fault report's CR2 is a number; what a developer wants is
 * what it points at. A NULL pointer's field, a stack's guard page, a
 * freed large object under mm.debug_pagealloc, a guarded object's guard
 * page or freed page (mm.guard), a direct-map address past the end of
 * RAM or in a DMA buffer: each is a line here, after the registers and
 * the backtrace (last, as the heap's part reads the heap's structures).
 *
 * Representation: none; the regions are layout.h's, the sections
 * linker.ld's, the heap's answer mm/spanheap_where.c's.
 *
 * Locking: none taken, no memory read at the address: safe in an
 * exception handler on any CPU, and in a report of a fault that struck
 * while a lock was held.
 */
#include "kernel/addrinfo.h"

#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/bootinfo.h"
#include "kernel/dma.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kstack.h"
#include "kernel/ksyms.h"
#include "kernel/printk.h"

/* The lowest address of the upper, kernel half (48-bit addresses). */
#define UPPER_HALF_BASE 0xffff800000000000ull
/* One past the lower half's last canonical address. */
#define LOWER_HALF_END 0x0000800000000000ull
/* The region kept for tests (PML4 slot 509). */
#define TEST_REGION_BASE (MMIO_REGION_BASE + MMIO_REGION_SIZE)

static bool in(uint64_t a, uint64_t base, uint64_t size)
{
	return a - base < size;
}

/* An address of the kernel image's window: its section and symbol. */
static void print_image(const char *indent, const char *label, uint64_t a)
{
	uintptr_t ua = (uintptr_t)a;
	const char *what = "the kernel image's window, past the image";
	if (ua >= (uintptr_t)__boot_stack_guard &&
	    ua < (uintptr_t)__boot_stack_bottom)
		what = "the boot stack's guard page (a stack overflow?)";
	else if (ua >= (uintptr_t)__text_start && ua < (uintptr_t)__text_end)
		what = "the kernel's text";
	else if (ua >= (uintptr_t)__rodata_start &&
	         ua < (uintptr_t)__rodata_end)
		what = "the kernel's read-only data";
	else if (ua >= (uintptr_t)__data_start && ua < (uintptr_t)__bss_end)
		what = "the kernel's data";
	else if (ua < (uintptr_t)__text_start)
		what = "the kernel image's window, below the image";
	char sym[96];
	ksyms_format(a, sym, sizeof(sym));
	bool named = !(sym[0] == '?' && sym[1] == '\0'); /* "?": no symbol */
	printk("%s%s %#lx: in %s%s%s\n", indent, label, (unsigned long)a, what,
	       named ? ": " : "", named ? sym : "");
}

/* An address of the heap arena: the span heap says what it is. */
static void print_heap(const char *indent, const char *label, uint64_t a)
{
	printk("%s%s %#lx: in the heap arena (kmalloc's and the page "
	       "heap's):\n",
	       indent, label, (unsigned long)a);
	spanheap_where_log(&kspanheap, (const void *)(uintptr_t)a);
}

/* An address of the span heap's guarded pool (mm.guard): the object whose
 * page, or guard page, it is on, with the stacks of its allocation and
 * free: an overrun, an underrun or a use after free of a sampled object
 * faults there. */
static void print_guard(const char *indent, const char *label, uint64_t a)
{
	printk("%s%s %#lx: in the guarded pool (kmalloc's, mm.guard):\n",
	       indent, label, (unsigned long)a);
	spanheap_where_log(&kspanheap, (const void *)(uintptr_t)a);
}

/* An address of the direct map: its frame, and whether the pool owns it;
 * or, where the map holds no RAM (paging_direct.c), what is there. */
static void print_direct(const char *indent, const char *label, uint64_t a)
{
	paddr_t pa = a - DIRECT_MAP_BASE;
	if (!vm_translate(a, NULL, NULL)) {
		const struct mem_region *r = mem_region_of(pa);
		printk("%s%s %#lx: in the direct map's range, unmapped: "
		       "physical %#lx is %s%s, which it does not hold\n",
		       indent, label, (unsigned long)a, (unsigned long)pa,
		       r ? mem_type_name(r->type)
		         : "in a hole of the memory map",
		       r ? " memory in the memory map" : "");
		return;
	}
	const char *why = frames_not_managed(pa & ~(PAGE_SIZE - 1));
	printk("%s%s %#lx: in the direct map: physical %#lx, %s%s\n", indent,
	       label, (unsigned long)a, (unsigned long)pa,
	       why ? "not a frame of the pool: " : "a frame of the pool",
	       why ? why : "");
	/* The table read with no lock (dma_find): a use after dma_free is
	 * told from any frame of the pool while the buffer is among the
	 * last freed. */
	struct dma_extent e;
	if (dma_find((const void *)(uintptr_t)a, 1, &e))
		printk("%s  byte %lu of DMA buffer %p (%zu bytes)%s\n", indent,
		       (unsigned long)(a - e.va), (void *)e.va, e.nbytes,
		       e.freed ? ", freed already (a use after dma_free?)"
		               : "");
}

/* The regions of the upper half other than the image's and the heap's. */
static const char *upper_region(uint64_t a)
{
	if (in(a, MM_REGION_BASE, MM_REGION_SIZE))
		return "mm/'s reservations, outside the heap arena: the page "
		       "allocator's metadata (bitmaps, summaries, span table)";
	if (in(a, MMIO_REGION_BASE, MMIO_REGION_SIZE))
		return "the device MMIO region (LAPIC, I/O APIC)";
	if (in(a, TEST_REGION_BASE, 512ull << 30))
		return "the region kept for tests";
	if (in(a, KSTACK_REGION_BASE, KSTACK_REGION_SIZE))
		return kstack_is_guard(a)
		               ? "a kernel stack's guard page (a stack "
		                 "overflow?)"
		               : "the kernel stacks' region";
	return "no region of the kernel's layout";
}

void addrinfo_print(const char *indent, const char *label, uint64_t a)
{
	unsigned long ua = (unsigned long)a;
	if (a < PAGE_SIZE)
		printk("%s%s %#lx: a NULL pointer dereference (byte %lu of "
		       "page 0, which is never mapped)\n",
		       indent, label, ua, ua);
	else if (a < LOWER_HALF_END)
		printk("%s%s %#lx: in the lower half, which the kernel does "
		       "not map (a user address, or a garbage pointer)\n",
		       indent, label, ua);
	else if (a < UPPER_HALF_BASE)
		printk("%s%s %#lx: not canonical (bits 63 to 47 differ): a "
		       "garbage pointer\n",
		       indent, label, ua);
	else if (a >= KERNEL_VIRT_BASE)
		print_image(indent, label, a);
	else if (a - kheap.arena_base < kheap.arena_pages * PAGE_SIZE)
		print_heap(indent, label, a);
	else if (spanheap_guard_owns(&kspanheap.guard,
	                             (const void *)(uintptr_t)a))
		print_guard(indent, label, a);
	else if (a - kspanheap.meta.arena_base <
	         kspanheap.meta.arena_pages * PAGE_SIZE)
		printk("%s%s %#lx: in the span heap's own metadata (span "
		       "structs, span arrays, magazine slabs, side tables, the "
		       "stack depot, named caches' structs and counters, "
		       "pools' reserves), apart from the heap arena\n",
		       indent, label, ua);
	else if (in(a, DIRECT_MAP_BASE, DIRECT_MAP_SIZE))
		print_direct(indent, label, a);
	else
		printk("%s%s %#lx: in %s\n", indent, label, ua,
		       upper_region(a));
}

void addrinfo_print_fault(const char *indent, uint64_t rip, uint64_t cr2)
{
	addrinfo_print(indent, "CR2", cr2);
	/* The fast path of a heap never set up: no test there is free, so
	 * the report names it (mm/rseq.h, MM_RSEQ_MAGS_RECORD). */
	if (heap_fault_unset_mags(rip, cr2))
		printk("%sa span heap used before spanheap_init? (NULL "
		       "magazines: a CPU's magazine read at %#lx)\n",
		       indent, (unsigned long)cr2);
}

bool addrinfo_print_caught(const char *indent, const char *label, uint64_t a)
{
	/* The hook is this thread's: the scheduler switches it with the
	 * thread, which never leaves its CPU. */
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		addrinfo_print(indent, label, a);
		fault_catch_disarm(&fc);
		return true;
	}
	printk("%s(a fault at %#lx while reading the heap: what it described "
	       "changed meanwhile)\n",
	       indent, (unsigned long)fc.cr2);
	return false;
}

/* ---- Registers that hold no address ------------------------------------ */

static bool canonical(uint64_t v)
{
	int64_t top = (int64_t)v >> 47;
	return top == 0 || top == -1;
}

/* Whether v's upper six bytes are all byte b: a pattern, or a pattern
 * plus a small offset (a field read through a poisoned pointer). */
static bool pattern_of(uint64_t v, uint8_t b)
{
	return (v >> 16) == 0x0101010101010101ull * b >> 16;
}

/* What a value that is no canonical address may be (noncanonical_kind). */
enum noncanonical {
	NC_POISON,  /* poison mode's fill of a freed object */
	NC_REDZONE, /* poison mode's red zone */
	NC_MARKER,  /* a free object's marker */
	NC_GARBAGE,
};

/*
 * mm's own patterns say how such a value came to be used as a pointer:
 * poison mode fills a freed object with 0xdb and a red zone with 0xbb,
 * and a free object of any mode holds its free marker (the heap's cookie
 * ^ its address) in its second word, which points nowhere either. *obj
 * gets the object a marker names.
 */
static enum noncanonical noncanonical_kind(uint64_t v, uint64_t *obj)
{
	if (pattern_of(v, SPANHEAP_POISON_BYTE))
		return NC_POISON;
	if (pattern_of(v, SPANHEAP_REDZONE_BYTE))
		return NC_REDZONE;
	*obj = v ^ kspanheap.mag_cookie;
	struct spanheap_where w;
	if (kspanheap.mag_cookie &&
	    spanheap_where(&kspanheap, (void *)(uintptr_t)*obj, &w) &&
	    w.kind == SPANHEAP_WHERE_SMALL && w.offset == 0)
		return NC_MARKER;
	return NC_GARBAGE;
}

void addrinfo_print_regs(const char *indent, const struct trap_frame *f)
{
	static const char *const says[] = {
	        [NC_POISON] = "mm.debug_poison's fill of a freed object: a "
	                      "pointer read from an object after its free?",
	        [NC_REDZONE] = "mm.debug_poison's red zone: a pointer read "
	                       "past the end of an object?",
	        [NC_GARBAGE] = "a garbage pointer?",
	};
	const struct {
		const char *name;
		uint64_t v;
	} regs[] = {
	        {"RAX", f->rax}, {"RBX", f->rbx}, {"RCX", f->rcx},
	        {"RDX", f->rdx}, {"RSI", f->rsi}, {"RDI", f->rdi},
	        {"RBP", f->rbp}, {"R8", f->r8},   {"R9", f->r9},
	        {"R10", f->r10}, {"R11", f->r11}, {"R12", f->r12},
	        {"R13", f->r13}, {"R14", f->r14}, {"R15", f->r15},
	};
	for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		uint64_t v = regs[i].v, obj = 0;
		if (canonical(v))
			continue;
		enum noncanonical k = noncanonical_kind(v, &obj);
		if (k == NC_MARKER)
			printk("%s%s %#lx: not canonical: the free marker of "
			       "the object at %#lx (its second word while it "
			       "is free): a pointer read from a freed "
			       "object?\n",
			       indent, regs[i].name, (unsigned long)v,
			       (unsigned long)obj);
		else
			printk("%s%s %#lx: not canonical: %s\n", indent,
			       regs[i].name, (unsigned long)v, says[k]);
	}
}
