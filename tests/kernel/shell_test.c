/*
 * The shell's dispatch of a typed line (shell_run_line): unknown commands
 * and arguments a command does not take are refused with a usage status.
 */
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"

KTEST(shell, arguments_a_command_does_not_take_are_refused)
{
	KEXPECT_EQ(shell_run_line("cmdline"), SHELL_OK);
	KEXPECT_EQ(shell_run_line("  cmdline  "), SHELL_OK);
	KEXPECT_EQ(shell_run_line("frobnicate"), SHELL_USAGE);
	/* Each command whose usage takes no argument. */
	static const char *const lines[] = {
	        "help me",     "meminfo 5", "slabinfo all", "sweep now",
	        "scavenge 10", "release 1", "threads 0",    "locks x",
	        "cmdline -v",  "exit 3",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		enum shell_status st = shell_run_line(lines[i]);
		if (st != SHELL_USAGE)
			ktest_diag("'%s': status %d, not SHELL_USAGE", lines[i],
			           (int)st);
		KEXPECT_EQ(st, SHELL_USAGE);
	}
}
