/*
 * Ctrl-C at the console: one queued behind a command's Enter is that
 * command's interrupt, one from the UART at the prompt cancels the line,
 * and a hole (bytes lost) before a Ctrl-C taken out of the queue stays
 * with the byte after it. conin_test.c has the rest of console input.
 */
#include "kernel/percpu.h"
#include "kernel/thread.h"
#include "tests/kernel/conin_test_util.h"

/* A Ctrl-C typed right after a command's Enter, queued before the shell
 * read that far (a paste, a fast typist), is the command's: it stopped
 * nothing and cancelled the next prompt's line instead, and `sleep`
 * slept on. The bytes around it stay, holes and all. */
KTEST(conin, ctrl_c_queued_behind_a_command_interrupts_it)
{
	conin_testing_reset();
	lineedit_init(&le, no_echo, NULL);
	push("sleep 1000\n\003cmdline\n");
	KEXPECT_EQ(shell_run_input(&le), SHELL_INTERRUPTED);
	KEXPECT_EQ(shell_run_input(&le), SHELL_OK);
	/* Two of them, a byte between: the bytes stay, in order. */
	uint64_t lost = 0;
	push("\003a\003b\n");
	conin_command_begin();
	KEXPECT_EQ(conin_interrupted(), true);
	conin_command_end();
	KEXPECT_EQ(conin_interrupted(), false);
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ab");
	/* A hole before a Ctrl-C taken out goes to the byte after it. */
	for (int i = 0; i < CONIN_TESTING_RING + 3; i++)
		conin_testing_push('y');
	for (int i = 0; i < CONIN_TESTING_RING; i++) {
		uint32_t hole;
		conin_getc(&hole);
	}
	push("\003c\n");
	conin_command_begin();
	KEXPECT_EQ(conin_interrupted(), true);
	conin_command_end();
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LOST);
	KEXPECT_EQ(lost, 3);
	conin_testing_reset();
}

/* Sends c to COM1 in loopback, as if typed, and lets the producer take
 * it (conin_testing_drain, as the receive interrupt does). */
static void uart_type(char c)
{
	unsigned long flags = loopback_begin();
	serial_putc(c);
	wait_received();
	conin_testing_drain();
	loopback_end(flags);
}

/* A Ctrl-C from the UART while a command runs is the command's: it
 * interrupts it and is not queued. At the prompt it is a key like any
 * other, which cancels the line being typed; taken as an interrupt
 * there, it went nowhere and the half-typed line stayed. */
KTEST(conin, a_uart_ctrl_c_at_the_prompt_cancels_the_line)
{
	uint64_t lost = 0;
	conin_testing_reset();
	lineedit_init(&le, no_echo, NULL);
	push("junk");
	uart_type('\003');
	/* An Enter, which a Ctrl-C not queued would let run the line. */
	push("\n");
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_CANCEL);
	conin_testing_reset(); /* the Enter left after the Ctrl-C */
	conin_command_begin();
	uart_type('\003');
	KEXPECT_EQ(conin_interrupted(), true);
	conin_command_end();
	push("ok\n");
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ok");
	conin_testing_reset();
}

/* A hole of lost bytes (none if 0), then a Ctrl-C, queued behind a
 * command's Enter: the command's start takes the Ctrl-C out of the queue
 * as its interrupt. */
static void queued_ctrl_c_taken(uint32_t lost)
{
	if (lost)
		conin_testing_hole(lost);
	conin_testing_push(CONIN_CTRL_C);
	conin_command_begin();
	KEXPECT_EQ(conin_interrupted(), true);
	conin_command_end();
}

/* A Ctrl-C taken out of the queue as its last byte keeps the hole before
 * it for the next byte: the bytes before the hole and those typed after
 * form one line, which lost bytes (until a review the hole went with the
 * Ctrl-C and the line 'abc' ran). */
KTEST(conin, a_hole_before_a_last_queued_ctrl_c_is_kept)
{
	conin_testing_reset();
	lineedit_init(&le, no_echo, NULL);
	push("ab");
	queued_ctrl_c_taken(3);
	push("c\n");
	uint64_t lost = 0;
	enum lineedit_event ev = shell_read_line(&le, &lost);
	if (ev == LINEEDIT_LINE)
		ktest_diag("the line '%s' ran with a 3-byte hole in it",
		           lineedit_line(&le));
	KEXPECT_EQ(ev, LINEEDIT_LOST);
	/* A whole line before the hole runs; the one typed after it is
	 * the one refused (the hole went to the first kept byte, 'x',
	 * until a review, and 'y' ran). */
	conin_testing_reset();
	push("x\r");
	queued_ctrl_c_taken(3);
	push("y\r");
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x");
	expect_line_lost();
	conin_testing_reset();
}

/* A hole carried past a taken Ctrl-C stays with its byte when the next
 * command's begin takes another Ctrl-C and moves that byte: the carry
 * was kept at the byte's old index, which the reader then skipped, and
 * the line 'yz', typed after 3 lost bytes, ran (review). */
KTEST(conin, a_carried_hole_survives_the_next_ctrl_c_take)
{
	uint64_t lost = 0;
	conin_testing_reset();
	lineedit_init(&le, no_echo, NULL);
	/* Queued behind a command's Enter: a line, a hole, a Ctrl-C. */
	push("x\r");
	queued_ctrl_c_taken(3);
	push("y"); /* the byte after the hole */
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x");
	/* A Ctrl-C typed before 'x' begins: that begin takes it out. */
	queued_ctrl_c_taken(0);
	push("z\r");
	KEXPECT_EQ(expect_line_lost(), 3);
	/* A carry merged with a later one stays where it was. */
	conin_testing_reset();
	push("a\r");
	queued_ctrl_c_taken(2);
	push("b\r"); /* after the 2-byte hole: refused */
	KEXPECT_EQ(shell_read_line(&le, &lost), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "a");
	queued_ctrl_c_taken(1);
	push("c\r"); /* after the 1-byte hole: refused on its own */
	KEXPECT_EQ(expect_line_lost(), 2);
	KEXPECT_EQ(expect_line_lost(), 1);
	conin_testing_reset();
}
