/*
 * The shell's prompt on a terminal: a half-typed line is drawn again
 * after output another thread printed over it, and an empty printk leaves
 * it shown. The shell runs on a thread of its own, its input queued
 * through conin's test hook and its output captured.
 */
#include <stdatomic.h>

#include "kernel/conin_testing.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/printk.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/sched.h"
#include "arch/x86_64/cpu.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"

#if KTEST_HOOKS
static _Atomic enum shell_status prompt_status;

static void prompt_turn(void *arg)
{
	atomic_store(&prompt_status, shell_run_prompt());
}

/* Waits until the capture begins with want (the shell thread echoes
 * what was typed); false if it never can, having gone another way. A
 * byte not written yet is waited for: compared as it was counted, before
 * its writer on another CPU stored it, it failed the -smp 4 run now and
 * then. */
static bool wait_for_capture(const char *want)
{
	for (unsigned i = 0; want[i];) {
		char c = capture_byte(i);
		if (c == want[i])
			i++;
		else if (c != 0)
			return false;
		else
			thread_yield();
	}
	return true;
}

/* A prompt's turn on a terminal (shell.notty off) in a thread of its
 * own, the output captured, with "cmd" typed: true once the capture shows
 * it. The caller prints its output, then tty_prompt_finish. The heap's
 * threads are stopped until then: a line of theirs (the scavenger's "at
 * goal", after a test before had it scavenge) came between the expected
 * ones, and the exact output these tests compare failed (CI, twice). */
static bool tty_prompt_typed(struct thread_handle *t)
{
	heap_threads_stop();
	conin_testing_reset();
	shell_testing_set_tty(true);
	capture_start_any(); /* the prompt thread's echo, and ours */
	*t = thread_create("prompt", prompt_turn, NULL, THREAD_ANY_CPU);
	if (!thread_handle_ok(*t)) {
		capture_stop();
		shell_testing_set_tty(false);
		KEXPECT(heap_threads_start());
		return false;
	}
	for (const char *k = "cmd"; *k; k++)
		conin_testing_push((uint8_t)*k);
	return wait_for_capture("gantry> cmd");
}

/* Types "line" and Enter (the command "cmdline"), joins the turn and
 * puts the console back. */
static void tty_prompt_finish(struct thread_handle t)
{
	for (const char *k = "line\n"; *k; k++)
		conin_testing_push((uint8_t)*k);
	thread_join(t);
	capture_stop();
	shell_testing_set_tty(false);
	conin_testing_reset();
	KEXPECT(heap_threads_start());
}

/*
 * Output from elsewhere (a stream row, a kernel message) while a line is
 * half typed at a terminal: the line is erased first and drawn again,
 * prompt and all, once that output has ended its own line, so the user
 * sees what was typed. It was left where it was, the output run into it,
 * and the keys typed next went on after the output on its last line.
 */
KTEST(shell, a_half_typed_line_is_redrawn_after_other_output)
{
	struct thread_handle t;
	bool typed = tty_prompt_typed(&t);
	KASSERT(thread_handle_ok(t));
	printk("background: row\n");
	printk("half");
	tty_prompt_finish(t);
	KEXPECT(typed);
	KEXPECT_EQ(atomic_load(&prompt_status), SHELL_OK);
	KEXPECT(seen_has("gantry> cmd\r\x1b[Kbackground: row\n"
	                 "gantry> cmd\r\x1b[Khalf\n"
	                 "gantry> cmdline\ncmdline: "));
}

/* Output of no characters (a "%s" of "") leaves a half-typed line
 * shown: it erased the line and, taking the output's last line for
 * unfinished, did not draw it again until the next key. */
KTEST(shell, an_empty_printk_leaves_the_typed_line_shown)
{
	struct thread_handle t;
	bool typed = tty_prompt_typed(&t);
	KASSERT(thread_handle_ok(t));
	printk("%s", "");
	tty_prompt_finish(t);
	KEXPECT(typed);
	KEXPECT_EQ(atomic_load(&prompt_status), SHELL_OK);
	KEXPECT(seen_has("gantry> cmd\r\x1b[Kgantry> cmdline\ncmdline: "));
}
#endif
