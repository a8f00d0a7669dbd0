/*
 * The shell's reading of a line into words and of its commands'
 * arguments: a word count a command does not take, or a number out of
 * its range, is refused with the usage status (and a line saying why)
 * before the command does anything; the largest number taken is taken.
 */
#include "kernel/conin.h"
#include "kernel/conin_testing.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"

/*
 * Runs line with a Ctrl-C queued behind it, as if typed after its Enter:
 * the command begins interrupted. One that takes its arguments (or one
 * that wrongly takes them: a sleep or a stress of an hour) returns at
 * once, SHELL_INTERRUPTED, instead of running for its full time.
 */
static enum shell_status run_interrupted(const char *line)
{
	conin_testing_reset();
	conin_testing_push(CONIN_CTRL_C);
	enum shell_status st = shell_run_line(line);
	conin_testing_reset();
	if (st != SHELL_INTERRUPTED && st != SHELL_USAGE)
		ktest_diag("'%s': status %d", line, (int)st);
	return st;
}

/* sleep MS, MS at most an hour; poweroff [STATUS], STATUS below 64 (a
 * poweroff these let through would leave QEMU, ending the test run). */
KTEST(shell_args, sleep_and_poweroff_refuse_what_they_do_not_take)
{
	static const char *const refused[] = {
	        "sleep",       "sleep 1 2",  "sleep 3600001",
	        "sleep -1",    "sleep 1ms",  "poweroff 1 2",
	        "poweroff 64", "poweroff x", "poweroff -1",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		KEXPECT_EQ(run_interrupted(refused[i]), SHELL_USAGE);
	KEXPECT_EQ(run_interrupted("sleep 3600000"), SHELL_INTERRUPTED);
}

/* stress SECONDS [CPUS [SEED]]: SECONDS in [1, 3600], CPUS in [1, the
 * CPUs online], SEED any 64-bit number. */
KTEST(shell_args, stress_refuses_what_it_does_not_take)
{
	char line[64];
	unsigned n = atomic_load(&ncpus_online);
	static const char *const refused[] = {
	        "stress",         "stress 0",
	        "stress 3601",    "stress 1 0",
	        "stress 1 1 1 1", "stress 18446744073709551617",
	        "stress 1 1 x",   "stress 1 1 18446744073709551616",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		KEXPECT_EQ(run_interrupted(refused[i]), SHELL_USAGE);
	ksnprintf(line, sizeof(line), "stress 1 %u", n + 1);
	KEXPECT_EQ(run_interrupted(line), SHELL_USAGE);
	ksnprintf(line, sizeof(line), "stress 3600 %u", n);
	KEXPECT_EQ(run_interrupted(line), SHELL_INTERRUPTED);
}

/* heapmap [CHUNK | stream MS|off]: CHUNK below the arena's chunks, MS
 * in [10, 60000]. A chunk past the arena is a bad argument, not one
 * "not grown" (SHELL_FAILED) as one inside it may be. */
KTEST(shell_args, heapmap_refuses_what_it_does_not_take)
{
	char line[64];
	size_t nchunks = kheap.arena_pages / PALLOC_CHUNK_PAGES;
	static const char *const refused[] = {
	        "heapmap 0 1",          "heapmap stream",
	        "heapmap stream 9",     "heapmap stream 60001",
	        "heapmap stream 1 2",   "heapmap x",
	        "heapmap stream never",
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		KEXPECT_EQ(shell_run_line(refused[i]), SHELL_USAGE);
	ksnprintf(line, sizeof(line), "heapmap %zu", nchunks);
	KEXPECT_EQ(shell_run_line(line), SHELL_USAGE);
	ksnprintf(line, sizeof(line), "heapmap %zu", nchunks - 1);
	KEXPECT_NE(shell_run_line(line), SHELL_USAGE);
}

/* A line of no words runs nothing and changes nothing: `exit` after it
 * still reports the command before. */
KTEST(shell_args, an_empty_line_keeps_the_last_status)
{
	KEXPECT_EQ(shell_run_line("frobnicate"), SHELL_USAGE);
	KEXPECT_EQ(shell_run_line(""), SHELL_USAGE);
	KEXPECT_EQ(shell_run_line(" \t "), SHELL_USAGE);
	KEXPECT_EQ(shell_last_status(), SHELL_USAGE);
	KEXPECT_EQ(shell_run_line("cmdline"), SHELL_OK);
	KEXPECT_EQ(shell_run_line(""), SHELL_OK);
}

/* Words are split at spaces and tabs alike; a tab is no word. */
KTEST(shell_args, tabs_separate_words)
{
	KEXPECT_EQ(shell_run_line("\tcmdline\t"), SHELL_OK);
	KEXPECT_EQ(shell_run_line(" \t cmdline \t "), SHELL_OK);
	KEXPECT_EQ(shell_run_line("cmdline\t-v"), SHELL_USAGE);
}

#if KTEST_HOOKS
/* Runs line with the console captured into seen. */
static enum shell_status run_captured(const char *line)
{
	capture_start();
	enum shell_status st = shell_run_line(line);
	capture_stop();
	return st;
}

/* A line of more words than SHELL_MAX_ARGS is refused as such, whatever
 * its first word, not handed to a command with its words cut short. */
KTEST(shell_args, more_words_than_argv_holds_are_refused)
{
	KEXPECT_EQ(run_captured("cmdline 1 2 3 4 5 6 7"), SHELL_USAGE);
	KEXPECT(seen_has("cmdline: usage: cmdline (no arguments)"));
	KEXPECT_EQ(run_captured("cmdline 1 2 3 4 5 6 7 8"), SHELL_USAGE);
	KEXPECT(seen_has("shell: more than 8 words"));
	KEXPECT_EQ(run_captured("x 1 2 3 4 5 6 7 8 9 10 11"), SHELL_USAGE);
	KEXPECT(seen_has("shell: more than 8 words"));
}

/* A refused number is named, with the command, the argument it was
 * given for (as the usage names it) and the range it must be in. */
KTEST(shell_args, a_bad_number_is_named_with_its_range)
{
	KEXPECT_EQ(run_captured("heapmap stream 9"), SHELL_USAGE);
	KEXPECT(seen_has("heapmap: MS '9' is not a number in [10, 60000]"));
	KEXPECT_EQ(run_captured("poweroff 64"), SHELL_USAGE);
	KEXPECT(seen_has("poweroff: STATUS '64' is not a number in [0, 63]"));
	KEXPECT_EQ(run_captured("sleep 1x"), SHELL_USAGE);
	KEXPECT(seen_has("sleep: MS '1x' is not a number in [0, 3600000]"));
}
/* `help` shows each command's whole usage and its line: a usage longer
 * than the row's buffer was cut (until a review, mmfail's lost its
 * syntax: "mmfail [frame] [off | interval,probability,time"). */
KTEST(shell_args, help_shows_each_usage_whole)
{
	KEXPECT_EQ(run_captured("help"), SHELL_OK);
	unsigned n = 0;
	for (size_t t = 0; t < shell_cmd_ntables; t++)
		for (const struct shell_cmd *c = shell_cmd_tables[t]; c->name;
		     c++) {
			char use[SHELL_USE_MAX + 8];
			int len = ksnprintf(use, sizeof(use), "  %s %s",
			                    c->name, c->args);
			KEXPECT(len <= SHELL_USE_MAX + 2); /* fits help's */
			KEXPECT(seen_has(use));
			KEXPECT(seen_has(c->help));
			n++;
		}
	KEXPECT(n > 10);
}
#endif
