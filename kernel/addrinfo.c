/*
 * kernel/addrinfo.c: what a kernel address is (addrinfo.h), for the
 * page-fault report (arch/x86_64/trap.c) and the shell's addrinfo.
 *
 * Purpose: a fault report's CR2 is a number; what a developer wants is
 * what it points at. A NULL pointer's field, a stack's guard page, a
 * freed large object under mm.debug_pagealloc, a direct-map address past
 * the end of RAM: each is a line here, after the registers and the
 * backtrace (last, as the heap's part reads the heap's structures).
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
#include "arch/x86_64/trap.h"
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
	printk("%s%s %#lx: in %s: %s\n", indent, label, (unsigned long)a, what,
	       sym);
}

/* An address of the heap arena: the span heap says what it is. */
static void print_heap(const char *indent, const char *label, uint64_t a)
{
	printk("%s%s %#lx: in the heap arena (kmalloc's and the page "
	       "heap's):\n",
	       indent, label, (unsigned long)a);
	spanheap_where_log(&kspanheap, (const void *)(uintptr_t)a);
}

/* An address of the direct map: its frame, and whether the pool owns it. */
static void print_direct(const char *indent, const char *label, uint64_t a)
{
	paddr_t pa = a - DIRECT_MAP_BASE;
	const char *why = frames_not_managed(pa & ~(PAGE_SIZE - 1));
	printk("%s%s %#lx: in the direct map: physical %#lx, %s%s\n", indent,
	       label, (unsigned long)a, (unsigned long)pa,
	       why ? "not a frame of the pool: " : "a frame of the pool",
	       why ? why : "");
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
	else if (in(a, DIRECT_MAP_BASE, DIRECT_MAP_SIZE))
		print_direct(indent, label, a);
	else
		printk("%s%s %#lx: in %s\n", indent, label, ua,
		       upper_region(a));
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
