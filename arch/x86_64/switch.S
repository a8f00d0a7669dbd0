/*
 * context_switch(uint64_t *save_rsp, uint64_t load_rsp): saves the
 * callee-saved registers on the current stack, stores its RSP in
 * *save_rsp, switches to load_rsp and pops the next thread's registers.
 * Returns into the next thread, which is either inside its own call to
 * context_switch or, when new, at thread_trampoline.
 */
	.text
	.globl context_switch
context_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret

/*
 * First code a new thread runs: its initial stack (thread.c) holds zeroed
 * registers with the struct thread pointer in r12, and this address as the
 * return address. RBP is 0 so backtraces stop here.
 */
	.globl thread_trampoline
thread_trampoline:
	movq %r12, %rdi
	call thread_entry
	ud2
