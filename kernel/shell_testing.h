/* The shell's line dispatch, for tests that type at it without a
 * terminal; tests only. */
#ifndef KERNEL_SHELL_TESTING_H
#define KERNEL_SHELL_TESTING_H

#include "kernel/lineedit.h"
#include "kernel/shell_internal.h"

/* Splits text into words and runs the command, as if typed at the
 * prompt; returns its status (also kept for `exit`). A text longer than
 * LINEEDIT_MAX is refused (SHELL_USAGE), as the prompt refuses it. Not
 * while the shell thread runs a line: they share its buffer. */
enum shell_status shell_run_line(const char *text);

/* Feeds le the bytes of console input (conin_getc) until it completes a
 * line, a Ctrl-C or a rejected line, and returns that event; *lost is
 * the number of input bytes dropped inside that line. The shell thread,
 * or a test while the shell does not run. */
enum lineedit_event shell_read_line(struct lineedit *le, uint64_t *lost);

/* Reads a line from console input into le (shell_read_line) and runs
 * it, or says why it was refused; returns the status `exit` would leave
 * with. The shell thread's loop, one turn without the prompt. */
enum shell_status shell_run_input(struct lineedit *le);

/* One turn of the shell thread's loop: the prompt, a line typed at the
 * shell's own editor, its command; returns the status `exit` would leave
 * with. A test while the shell does not run. */
enum shell_status shell_run_prompt(void);

/* Says whether the other end is a terminal (not "shell.notty"), as
 * shell_start does. A test while the shell does not run. */
void shell_testing_set_tty(bool on);

/* Starts the heapmap stream as `heapmap stream MS` does, a row every
 * period_ns; past the command's range too (UINT64_MAX: one row, then a
 * sleep only `heapmap stream off` ends). The shell thread, or a test
 * while the shell does not run. */
enum shell_status shell_heapmap_stream_ns(uint64_t period_ns);

#endif
