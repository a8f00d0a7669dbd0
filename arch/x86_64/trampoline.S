/*
 * The AP trampoline: real mode to long mode in one page below 1 MiB.
 *
 * Assembled into .rodata and copied by smp_trampoline.c to the page P,
 * which is identity-mapped in the kernel page tables while APs start.
 * Nothing here is position dependent: 16-bit code addresses the page
 * through DS = CS; the 32-bit and 64-bit code through EBX = P; the
 * addresses that depend on P (GDT base, far-jump targets) are filled into
 * the parameter block by the boot CPU (layout in smp.h).
 *
 * The AP runs no stack until the kernel stack in the parameter block, and
 * has interrupts off throughout.
 */
#include "arch/x86_64/smp.h"

#define CR4_PAE (1 << 5)
#define CR4_PGE (1 << 7)
#define MSR_EFER 0xc0000080

	.section .rodata.trampoline, "a"
	.globl trampoline_start, trampoline_32, trampoline_64, trampoline_end

	.code16
trampoline_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	/* Is this the AP the parameters are for? A SIPI left pending for an
	 * AP the boot CPU gave up on can start it late, while they are set
	 * for the next: it would run on that AP's stack as that AP. CPUID 1
	 * gives the low byte of the APIC id (all of it in xAPIC mode); the
	 * boot CPU writes that byte, or 0xffffffff once bring-up is over. */
	movl $1, %eax
	cpuid
	shrl $24, %ebx
	cmpl (TRAMP_PARAMS + TP_APIC_ID), %ebx
	jne stray
	movw %cs, %ax
	/* Tell the boot CPU that the SIPI arrived. */
	movl $1, (TRAMP_PARAMS + TP_STARTED)
	xorl %ebx, %ebx
	movw %ax, %bx
	shll $4, %ebx /* EBX = P, kept through every mode */
	lgdtl (TRAMP_PARAMS + TP_GDTR)
	movl %cr0, %eax
	orl $1, %eax /* PE */
	movl %eax, %cr0
	ljmpl *(TRAMP_PARAMS + TP_FAR32)

	/* Not the AP the parameters are for: say so and halt here for good,
	 * interrupts off (nothing sends this CPU anything again). */
stray:
	orl $0x100, %ebx
	movl %ebx, (TRAMP_PARAMS + TP_STRAY)
1:	hlt
	jmp 1b

	.code32
trampoline_32:
	movw $TRAMP_SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	/* Long mode needs PAE before paging; the rest of the boot CPU's CR4
	 * waits for long mode (PCIDE, for one, cannot be set before). */
	movl $(CR4_PAE | CR4_PGE), %eax
	movl %eax, %cr4
	movl (TRAMP_PARAMS + TP_CR3)(%ebx), %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl (TRAMP_PARAMS + TP_EFER)(%ebx), %eax
	wrmsr
	/* PG with EFER.LME set enters long mode (compatibility mode until
	 * the far jump). The boot CPU's CR0 also clears the CD and NW bits
	 * INIT left set. */
	movl (TRAMP_PARAMS + TP_CR0)(%ebx), %eax
	movl %eax, %cr0
	ljmpl *(TRAMP_PARAMS + TP_FAR64)(%ebx)

	.code64
trampoline_64:
	movl %ebx, %ebx /* upper halves are undefined after the switch */
	movq (TRAMP_PARAMS + TP_CR4)(%rbx), %rax
	movq %rax, %cr4
	movq (TRAMP_PARAMS + TP_STACK)(%rbx), %rsp
	movq (TRAMP_PARAMS + TP_CPU_ID)(%rbx), %rdi
	movq (TRAMP_PARAMS + TP_ENTRY)(%rbx), %rax
	xorl %ebp, %ebp /* ends frame-pointer backtraces */
	call *%rax
1:	hlt
	jmp 1b

	/* The accessed bits are set (access bytes 0x9b, 0x93): a CPU that
	 * loads a descriptor without it writes it in, and the far jump to
	 * 64-bit code runs with paging on, where this page is read-only
	 * (W^X): that write would fault with no IDT to take it. */
	.org TRAMP_GDT
	.quad 0
	.quad 0x00cf9b000000ffff /* 0x08: 32-bit code, base 0, 4 GiB */
	.quad 0x00cf93000000ffff /* 0x10: data, base 0, 4 GiB */
	.quad 0x00209b0000000000 /* 0x18: 64-bit code */

	.org TRAMP_PARAMS
	.fill TP_SIZE, 1, 0
trampoline_end:
