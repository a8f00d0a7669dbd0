/* Per-CPU GDT and TSS: 64-bit kernel code/data and IST stacks for #DF,
 * NMI and #MC, so those run on a known-good stack. */
#ifndef ARCH_X86_64_GDT_H
#define ARCH_X86_64_GDT_H

#include <stdbool.h>
#include <stdint.h>

#define GDT_KERNEL_CS 0x08
#define GDT_KERNEL_DS 0x10
#define GDT_TSS       0x18

/* IST slots (1-based, as the IDT encodes them). */
#define IST_DOUBLE_FAULT  1
#define IST_NMI           2
#define IST_MACHINE_CHECK 3

/* Loads this CPU's GDT with its kernel code and data segments but no TSS,
 * for idt_init_boot's gates, until gdt_init_cpu can allocate the IST
 * stacks; GS must already point at this CPU's struct cpu. The boot CPU,
 * first thing in kmain: the firmware's GDT is gone with its page tables. */
void gdt_init_boot(void);

/* Allocates cpus[id]'s three IST stacks. Returns false, with none left
 * allocated, when frames or stack slots run out. The boot CPU, for itself
 * and for each AP before it starts it: an AP that claimed its place must
 * come online without anything that can fail or wait (smp_ap.c). */
bool gdt_alloc_ist(unsigned id);

/* Frees the IST stacks of cpus[id], an AP that never ran (no shootdown:
 * no CPU has them in its TLB). The boot CPU, for an AP given up on. */
void gdt_free_ist(unsigned id);

/* Builds this CPU's GDT and TSS on the IST stacks gdt_alloc_ist gave it
 * and loads them; GS must already point at this CPU's struct cpu. Panics,
 * naming the CPU, if they were not allocated. */
void gdt_init_cpu(void);

#endif
