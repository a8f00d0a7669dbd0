/*
 * Kernel entry from boot/: RDI holds the physical address of boot_info, the
 * loader's page tables are live, interrupts are off. Switch to the boot
 * stack and call kmain(boot_info_phys), which never returns.
 */
	.section .text.entry, "ax"
	.globl _start
_start:
	cli
	cld
	leaq __boot_stack_top(%rip), %rsp
	andq $-16, %rsp
	xorl %ebp, %ebp /* ends frame-pointer backtraces */
	call kmain
1:	hlt
	jmp 1b
