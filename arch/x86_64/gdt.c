/*
 * GDT and TSS. Long mode ignores segment bases and limits except for the
 * TSS, which is reached through a 16-byte system descriptor and holds the
 * IST pointers the IDT refers to. One set per CPU, indexed by its id.
 */
#include "gdt.h"

#include <stdbool.h>

#include "cpu.h"

#include "kernel/kstack.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

_Static_assert(sizeof(struct tss) == 104, "TSS layout (SDM 8.7)");

struct gdt {
	uint64_t null, code, data;
	uint64_t tss_low, tss_high;
} __attribute__((packed, aligned(16)));

struct cpu_tables {
	struct gdt gdt;
	struct tss tss;
	struct kstack ist[3];
};

/* cpu_tables[i] belongs to CPU i. Its IST stacks are allocated by the
 * boot CPU before CPU i starts (gdt_alloc_ist); the rest is written only
 * by CPU i's init. */
static struct cpu_tables cpu_tables[MAX_CPUS];

#define IST_STACK_PAGES 4

/* Loads gdt, reloads every segment register and, with_tss, the task
 * register. Writing a GS selector clears the GS base, which holds the
 * per-CPU pointer, so the base is saved and put back. */
static void load(struct gdt *gdt, bool with_tss)
{
	uint64_t gs_base = rdmsr(MSR_GS_BASE);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = {sizeof(*gdt) - 1, (uintptr_t)gdt};
	__asm__ volatile("lgdt %0\n\t"
	                 "mov %1, %%ds\n\t"
	                 "mov %1, %%es\n\t"
	                 "mov %1, %%ss\n\t"
	                 "xor %%eax, %%eax\n\t"
	                 "mov %%ax, %%fs\n\t"
	                 "mov %%ax, %%gs\n\t"
	                 /* A far return reloads CS. */
	                 "pushq %2\n\t"
	                 "leaq 1f(%%rip), %%rax\n\t"
	                 "pushq %%rax\n\t"
	                 "lretq\n"
	                 "1:"
	                 :
	                 : "m"(desc), "r"((uint64_t)GDT_KERNEL_DS),
	                   "i"((uint64_t)GDT_KERNEL_CS)
	                 : "rax", "memory");
	if (with_tss)
		__asm__ volatile("ltr %w0" : : "r"((uint16_t)GDT_TSS));
	wrmsr(MSR_GS_BASE, gs_base);
}

/* Access byte 0x9a/0x92: present, ring 0, code/data; L bit for 64-bit
 * code. */
static void set_segments(struct gdt *gdt)
{
	gdt->null = 0;
	gdt->code = 0x00209a0000000000ull;
	gdt->data = 0x0000920000000000ull;
}

void gdt_init_boot(void)
{
	struct cpu_tables *t = &cpu_tables[this_cpu()->id];
	set_segments(&t->gdt);
	load(&t->gdt, false);
}

bool gdt_alloc_ist(unsigned id)
{
	struct cpu_tables *t = &cpu_tables[id];
	if (t->ist[0].top)
		panic("gdt: cpu %u's IST stacks are allocated already", id);
	for (int i = 0; i < 3; i++) {
		if (kstack_alloc(IST_STACK_PAGES, &t->ist[i]))
			continue;
		gdt_free_ist(id);
		return false;
	}
	return true;
}

void gdt_free_ist(unsigned id)
{
	struct cpu_tables *t = &cpu_tables[id];
	for (int i = 0; i < 3; i++) {
		if (t->ist[i].top)
			kstack_free_local(&t->ist[i]);
		t->ist[i] = (struct kstack){0};
	}
}

void gdt_init_cpu(void)
{
	unsigned id = this_cpu()->id;
	struct cpu_tables *t = &cpu_tables[id];
	set_segments(&t->gdt);
	for (int i = 0; i < 3; i++) {
		if (!t->ist[i].top)
			panic("gdt: cpu %u has no IST stack %d (gdt_alloc_ist "
			      "first)",
			      id, i + 1);
		t->tss.ist[i] = t->ist[i].top;
	}
	t->tss.iomap_base = sizeof(t->tss); /* no I/O bitmap */
	uint64_t base = (uintptr_t)&t->tss;
	uint64_t limit = sizeof(t->tss) - 1;
	/* Available 64-bit TSS (type 9), present. */
	t->gdt.tss_low = (limit & 0xffff) | ((base & 0xffffff) << 16) |
	                 (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) |
	                 (((base >> 24) & 0xff) << 56);
	t->gdt.tss_high = base >> 32;
	load(&t->gdt, true);
}
