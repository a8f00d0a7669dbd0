/* The shell's line dispatch, for tests that type at it without a
 * terminal; tests only. */
#ifndef KERNEL_SHELL_TESTING_H
#define KERNEL_SHELL_TESTING_H

#include "kernel/shell_internal.h"

/* Splits text into words and runs the command, as if typed at the
 * prompt; returns its status (also kept for `exit`). Not while the shell
 * thread runs a line: they share its buffer. */
enum shell_status shell_run_line(const char *text);

#endif
