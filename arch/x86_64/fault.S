/*
 * fault_catch_arm: setjmp for the expected-fault hook (see trap.h). Saves
 * the callee-saved registers, the caller's stack pointer and the return
 * address, publishes the hook for this CPU and returns 0. The exception
 * handler resumes at the saved address with RAX = 1.
 */
	.text
	.globl fault_catch_arm
fault_catch_arm:
	movq %rbx, 0(%rdi)
	movq %rbp, 8(%rdi)
	movq %r12, 16(%rdi)
	movq %r13, 24(%rdi)
	movq %r14, 32(%rdi)
	movq %r15, 40(%rdi)
	leaq 8(%rsp), %rax /* the caller's RSP once we have returned */
	movq %rax, 48(%rdi)
	movq (%rsp), %rax
	movq %rax, 56(%rdi)
	pushfq
	popq %rax
	movq %rax, 64(%rdi)
	movq %rdi, %gs:16 /* this_cpu()->fault_catch (CPU_FAULT_CATCH_OFFSET) */
	xorl %eax, %eax
	ret
