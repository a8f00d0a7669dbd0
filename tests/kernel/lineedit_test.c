/*
 * The shell's line editor fed scripted keystrokes: what it returns, the
 * line it completes, and what a terminal would show (its echo).
 */
#include "kernel/format.h"
#include "kernel/ktest.h"
#include "kernel/lineedit.h"
#include "kernel/string.h"
#include "tests/kernel/lineedit_test_util.h"

KTEST(lineedit, backspace_and_echo)
{
	reset();
	unsigned early = 0;
	KEXPECT_EQ(type("helo\x7f\x7fllo\r", &early), LINEEDIT_LINE);
	KEXPECT_EQ(early, 0);
	KEXPECT_STREQ(lineedit_line(&le), "hello");
	KEXPECT_STREQ(echo, "helo\b \b\b \bllo\n");
	/* Backspace on an empty line does nothing; BS works like DEL. */
	echo_len = 0;
	KEXPECT_EQ(type("\x7f\bab\bc\n", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ac");
	KEXPECT_STREQ(echo, "ab\b \bc\n");
	/* CR LF is one Enter: the LF completes nothing. */
	KEXPECT_EQ(type("x\r", NULL), LINEEDIT_LINE);
	KEXPECT_EQ(lineedit_feed(&le, '\n'), LINEEDIT_MORE);
	/* A bare Enter is an empty line. */
	KEXPECT_EQ(type("\n", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "");
}

KTEST(lineedit, ctrl_c_and_ctrl_u)
{
	reset();
	KEXPECT_EQ(type("stress 5\x03", NULL), LINEEDIT_CANCEL);
	KEXPECT_STREQ(echo, "stress 5^C\n");
	KEXPECT_EQ(type("meminfo\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "meminfo");
	KEXPECT_EQ(type("junk\x15ok\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ok");
	/* Neither the cancelled line nor anything else leaked into history. */
	KEXPECT_STREQ(lineedit_history(&le, 0), "ok");
	KEXPECT_STREQ(lineedit_history(&le, 1), "meminfo");
	KEXPECT(lineedit_history(&le, 2) == NULL);
}

KTEST(lineedit, overlong_line_is_rejected_whole)
{
	char keys[LINEEDIT_MAX + 16];
	reset();
	memset(keys, 'a', LINEEDIT_MAX + 5);
	keys[LINEEDIT_MAX + 5] = '\0';
	KEXPECT_EQ(type(keys, NULL), LINEEDIT_MORE);
	/* The excess is not echoed. */
	KEXPECT_EQ(echo_len, LINEEDIT_MAX);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_OVERLONG);
	KEXPECT(lineedit_history(&le, 0) == NULL);
	/* The editor starts afresh. */
	KEXPECT_EQ(type("help\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "help");

	/* Erasing the excess makes the line acceptable again: exactly
	 * LINEEDIT_MAX characters fit. */
	memset(keys, 'b', LINEEDIT_MAX + 2);
	keys[LINEEDIT_MAX + 2] = '\0';
	type(keys, NULL);
	KEXPECT_EQ(type("\x7f\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_EQ(strlen(lineedit_line(&le)), LINEEDIT_MAX);
	KEXPECT_EQ(type("\x7f\x7f\x7f", NULL), LINEEDIT_MORE);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "");
}

#define UP   "\x1b[A"
#define DOWN "\x1b[B"

KTEST(lineedit, history_on_the_arrow_keys)
{
	reset();
	type("one\r", NULL);
	type("two\r", NULL);
	type("two\r", NULL); /* a repeat is kept once */
	type("three\r", NULL);
	KEXPECT_STREQ(lineedit_history(&le, 0), "three");
	KEXPECT_STREQ(lineedit_history(&le, 1), "two");
	KEXPECT_STREQ(lineedit_history(&le, 2), "one");

	/* Up twice, then Enter: the older line runs again. */
	echo_len = 0;
	KEXPECT_EQ(type(UP UP "\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "two");
	KEXPECT_STREQ(echo, "three\b \b\b \b\b \b\b \b\b \btwo\n");
	KEXPECT_STREQ(lineedit_history(&le, 0), "two");

	/* Past the oldest, Up stays; Down comes back to the draft. */
	type("dra", NULL);
	type(UP UP UP UP UP UP, NULL);
	KEXPECT_STREQ(le.buf, "one");
	type(DOWN DOWN DOWN DOWN DOWN DOWN, NULL);
	KEXPECT_STREQ(le.buf, "dra");
	/* ESC O A (application cursor mode) is Up too; other sequences,
	 * with parameters, are swallowed whole. */
	KEXPECT_EQ(type("\x1bOA\x1b[1;5C\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "two");

	/* The ring keeps the newest LINEEDIT_HISTORY lines. */
	char cmd[8] = "cmd00\r";
	for (unsigned i = 0; i < LINEEDIT_HISTORY + 3; i++) {
		cmd[3] = (char)('0' + i / 10);
		cmd[4] = (char)('0' + i % 10);
		type(cmd, NULL);
	}
	KEXPECT_STREQ(lineedit_history(&le, 0), "cmd18");
	KEXPECT_STREQ(lineedit_history(&le, LINEEDIT_HISTORY - 1), "cmd03");
	KEXPECT(lineedit_history(&le, LINEEDIT_HISTORY) == NULL);
}

KTEST(lineedit, overlong_draft_stays_overlong_after_browsing)
{
	char keys[LINEEDIT_MAX + 16];
	reset();
	type("help\r", NULL);
	/* An overlong line, then Up and Down back to it: its excess was
	 * typed, so Enter must still reject it, not run its first
	 * LINEEDIT_MAX characters. */
	memset(keys, 'a', LINEEDIT_MAX + 5);
	keys[LINEEDIT_MAX + 5] = '\0';
	type(keys, NULL);
	type(UP, NULL);
	KEXPECT_STREQ(le.buf, "help");
	type(DOWN, NULL);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_OVERLONG);
	KEXPECT_STREQ(lineedit_history(&le, 0), "help");
	/* Erasing the excess after coming back makes it acceptable. */
	type(keys, NULL);
	type(UP DOWN "\x7f\x7f\x7f\x7f\x7f\r", NULL);
	KEXPECT_EQ(strlen(lineedit_line(&le)), LINEEDIT_MAX);
}

/* A control key is obeyed even in the middle of an escape sequence (as
 * terminals do, ECMA-48 5.4): a stray Esc must not eat the Enter, Ctrl-C
 * or Backspace after it. */
KTEST(lineedit, control_keys_end_an_escape_sequence)
{
	reset();
	KEXPECT_EQ(type("ab\x1b\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ab");
	KEXPECT_EQ(type("stress\x1b[\x03", NULL), LINEEDIT_CANCEL);
	KEXPECT_EQ(type("xy\x1b\b\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x");
	/* After them, keys are keys again, and the arrows still work. */
	KEXPECT_EQ(type("\x1b[1;\x15meminfo\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "meminfo");
	KEXPECT_EQ(type("\x1b[A\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "meminfo");
}

/* Backspace is DEL on most terminals, not BS: inside an escape sequence
 * it must be obeyed as BS is, not taken for the sequence's next byte (a
 * stray Esc ate it, and after ESC [ the letter that followed too). */
KTEST(lineedit, backspace_as_del_ends_an_escape_sequence)
{
	reset();
	KEXPECT_EQ(type("xy\x1b\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x");
	KEXPECT_EQ(type("ab\x1b[\x7f"
	                "c\r",
	                NULL),
	           LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ac");
	KEXPECT_EQ(type("pq\x1bO\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "p");
}

/* No byte outside 0x20-0x7e is part of an escape sequence (ECMA-48
 * 5.4): a UTF-8 byte after a stray ESC, ESC [ or ESC O ends the sequence
 * and is typed. They were swallowed, the 'é' and all after it up to the
 * next letter, which ended the sequence unseen. */
KTEST(lineedit, a_utf8_byte_ends_an_escape_sequence)
{
	reset();
	type("help\r", NULL); /* an entry an arrow would recall */
	echo_len = 0;
	KEXPECT_EQ(type("ab\x1b[\xc3\xa9\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ab\xc3\xa9");
	KEXPECT_STREQ(echo, "ab\xc3\xa9\n");
	/* The letter after it is a letter, not the end of an arrow. */
	KEXPECT_EQ(type("\x1b[1;\303\251A\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "\303\251A"); /* 'é' in octal */
	KEXPECT_EQ(type("\x1b\xc3\xa9\x1bO\xe2\x82\xac\r", NULL),
	           LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "\xc3\xa9\xe2\x82\xac");
	/* And the arrows still work after. */
	KEXPECT_EQ(type("\x1b[A\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "\xc3\xa9\xe2\x82\xac");
}

/* A line marked lost stays lost when it comes back from the history: Up,
 * Ctrl-U (which erases the shown entry, not the line being typed) and
 * Down bring back a line with a hole, which Enter must still refuse. */
KTEST(lineedit, lost_draft_stays_lost_after_browsing)
{
	reset();
	type("help\r", NULL);
	type("sleep 1", NULL);
	lineedit_lost(&le, 1); /* bytes were dropped here */
	type("00", NULL);
	type(UP "\x15" DOWN, NULL);
	KEXPECT_STREQ(le.buf, "sleep 100");
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LOST);
	/* Without the Ctrl-U too, and a whole line after it runs. */
	type("sleep 1", NULL);
	lineedit_lost(&le, 1);
	type("00" UP DOWN, NULL);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LOST);
	KEXPECT_EQ(type("sleep 2\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "sleep 2");
}

/* Recall replaces the line: a hole in the half-typed line is not in the
 * entry shown, which Enter must run (it was refused as lost). A hole
 * after the recall is the entry's (the arrow key itself may have been
 * in it), and the draft keeps its own for when Down brings it back. */
KTEST(lineedit, a_recalled_entry_does_not_inherit_the_drafts_hole)
{
	reset();
	type("help\r", NULL);
	type("sle", NULL);
	lineedit_lost(&le, 2);
	type("ep" UP, NULL);
	KEXPECT_STREQ(le.buf, "help");
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "help");
	/* A hole after the recall refuses the entry, counting its own. */
	type("x", NULL);
	lineedit_lost(&le, 2);
	type(UP, NULL);
	lineedit_lost(&le, 1);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LOST);
	KEXPECT_EQ(lineedit_lost_bytes(&le), 1);
	/* Down to the draft: both holes are in the line shown. */
	type("y", NULL);
	lineedit_lost(&le, 2);
	type(UP, NULL);
	lineedit_lost(&le, 1);
	KEXPECT_EQ(type(DOWN "\r", NULL), LINEEDIT_LOST);
	KEXPECT_EQ(lineedit_lost_bytes(&le), 3);
}

/* A hole of no bytes is still a hole: the caller saw input go missing.
 * The count saturates instead of wrapping to a small one. */
KTEST(lineedit, lost_counts_a_hole_of_none_and_saturates)
{
	reset();
	type("sleep 1", NULL);
	lineedit_lost(&le, 0);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LOST);
	KEXPECT_EQ(lineedit_lost_bytes(&le), 1);
	type("sleep 1", NULL);
	lineedit_lost(&le, UINT64_MAX);
	lineedit_lost(&le, 5);
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LOST);
	KEXPECT_EQ(lineedit_lost_bytes(&le), UINT64_MAX);
}

/* The history is a ring: a short line stored over a longer one that
 * fell out of it is that line alone, not the old one's tail after it. */
KTEST(lineedit, history_ring_reuse_keeps_lines_whole)
{
	char keys[8];
	reset();
	type("a-long-line-first\r", NULL);
	for (int i = 0; i < LINEEDIT_HISTORY - 1; i++) {
		ksnprintf(keys, sizeof(keys), "l%d\r", i);
		type(keys, NULL);
	}
	KEXPECT_STREQ(lineedit_history(&le, LINEEDIT_HISTORY - 1),
	              "a-long-line-first");
	type("x\r", NULL);
	KEXPECT_STREQ(lineedit_history(&le, 0), "x");
	KEXPECT(lineedit_history(&le, LINEEDIT_HISTORY) == NULL);
	KEXPECT_EQ(type(UP "\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x");
}

/* A UTF-8 character that does not fit whole in the last bytes of the
 * line goes whole to the unechoed excess: no half of it is echoed or
 * kept in the line, and one Backspace takes it back. */
KTEST(lineedit, a_utf8_character_past_the_end_is_left_out_whole)
{
	char keys[LINEEDIT_MAX + 16];
	reset();
	memset(keys, 'a', LINEEDIT_MAX - 1);
	keys[LINEEDIT_MAX - 1] = '\0';
	type(keys, NULL);
	echo_len = 0;
	KEXPECT_EQ(type("\xc3\xa9\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(echo, "\n"); /* nothing of the 'é' */
	KEXPECT_EQ(strlen(lineedit_line(&le)), LINEEDIT_MAX - 1);
	/* Two of them, two Backspaces. */
	type(keys, NULL);
	KEXPECT_EQ(type("\xc3\xa9\xc3\xa9\x7f\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_EQ(strlen(lineedit_line(&le)), LINEEDIT_MAX - 1);
	/* Without the Backspaces, the line is overlong. */
	type(keys, NULL);
	KEXPECT_EQ(type("\xc3\xa9\r", NULL), LINEEDIT_OVERLONG);
}

/* Once a character went to the excess, every key after it does: the
 * excess is the end of the line. A shorter one that would fit (an ASCII
 * byte after a UTF-8 character that did not) was echoed and kept, and a
 * Backspace then took the excess away while the screen still showed it:
 * Enter ran a line the user had never typed. */
KTEST(lineedit, keys_after_the_excess_join_it)
{
	char keys[LINEEDIT_MAX + 16];
	reset();
	memset(keys, 'a', LINEEDIT_MAX - 2);
	keys[LINEEDIT_MAX - 2] = '\0';
	type(keys, NULL);
	echo_len = 0;
	type("\xe2\x82\xac"
	     "b",
	     NULL); /* a 3-byte euro sign, then b */
	KEXPECT_EQ(echo_len, 0);
	KEXPECT_EQ(type("\x7f\r", NULL), LINEEDIT_OVERLONG);
	type(keys, NULL);
	KEXPECT_EQ(type("\xe2\x82\xac"
	                "b\x7f\x7f\r",
	                NULL),
	           LINEEDIT_LINE);
	KEXPECT_EQ(strlen(lineedit_line(&le)), LINEEDIT_MAX - 2);
}

/* A serial line may carry any byte: a NUL or another control byte the
 * editor has no use for is neither typed nor echoed (a NUL in the line
 * would cut it short where the screen shows nothing). */
KTEST(lineedit, nul_and_unused_control_bytes_are_ignored)
{
	static const char keys[] = {'a',  '\0', 'b',    '\x01', '\x1f',
	                            '\t', 'c',  '\x04', '\r'};
	reset();
	enum lineedit_event ev = LINEEDIT_MORE;
	for (size_t i = 0; i < sizeof(keys); i++)
		ev = lineedit_feed(&le, keys[i]);
	KEXPECT_EQ(ev, LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "abc");
	KEXPECT_STREQ(echo, "abc\n");
}

/* Down brings back the line being typed as it was when Up left it, not
 * with the tail of a longer one left there by an earlier browse. */
KTEST(lineedit, a_shorter_draft_comes_back_whole)
{
	reset();
	type("help\r", NULL);
	type("abcdef" UP DOWN "\x15"
	     "ab" UP DOWN,
	     NULL);
	KEXPECT_STREQ(le.buf, "ab");
	KEXPECT_EQ(type("\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "ab");
}
