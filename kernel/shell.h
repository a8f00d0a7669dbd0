/*
 * The serial console shell: a thread on CPU 0 that reads lines from COM1
 * (kernel/conin.c, through the line editor, kernel/lineedit.c) and runs
 * commands that look inside the allocator (meminfo, slabinfo, heapmap),
 * load it (stress), drive it (sweep, scavenge, release), and show the
 * kernel around it (threads, locks, cmdline). `help` lists them.
 *
 * Scripted sessions (tools/shell-session) type at the prompt like a user
 * and end with `exit`, which leaves QEMU with the last command's status.
 * "shell.notty" on the command line says the other end is not a
 * terminal: no ANSI colours.
 */
#ifndef KERNEL_SHELL_H
#define KERNEL_SHELL_H

/* isa-debug-exit code of `poweroff`/`exit` with status s (0..63): the
 * host sees 2 * (SHELL_EXIT_BASE + s) + 1, 65 for status 0. */
#define SHELL_EXIT_BASE 0x20

/* Starts console input and the shell thread. Boot CPU, thread context,
 * after heap_init. */
void shell_start(void);

#endif
