/*
 * Interrupt entry stubs for all 256 vectors: the 32 exceptions, then device
 * interrupts and IPIs (32..255, no error code). Each stub pushes a zero
 * where the CPU pushes no error code, then its vector, and joins
 * isr_common, which saves the general registers as a struct trap_frame and
 * calls trap_dispatch. The CPU aligns RSP to 16 before pushing its frame;
 * 22 quadwords keep it aligned for the call.
 */
	.altmacro
	.text

/* Vectors with a CPU error code: 8, 10-14, 17, 21, 29, 30. */
.macro ISR vec
	.balign 16
isr_\vec:
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
.endm

.set vec, 0
.rept 256
	ISR %vec
	.set vec, vec + 1
.endr

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp /* vector and error code */
	iretq

.macro STUB_ADDR vec
	.quad isr_\vec
.endm

	.section .rodata
	.balign 8
	.globl isr_stub_table
isr_stub_table:
.set vec, 0
.rept 256
	STUB_ADDR %vec
	.set vec, vec + 1
.endr
