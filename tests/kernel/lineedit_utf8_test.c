/*
 * The shell's line editor and UTF-8: a character, whole or cut short, is
 * the one column a terminal shows, and a Backspace erases all of it; the
 * line handed out draws again (the console's redraw, the arrows') into
 * the same columns; a C1 control is never echoed. Scripted keystrokes and
 * their echo, as in lineedit_test.c.
 */
#include "kernel/ktest.h"
#include "kernel/lineedit.h"
#include "kernel/string.h"
#include "tests/kernel/lineedit_test_util.h"

#define UP "\x1b[A"

/* A terminal shows a UTF-8 character in one column, and one "\b \b"
 * erases it: Backspace must take all of its bytes from the line, or the
 * line runs with bytes the screen no longer shows (the second Backspace
 * after an 'é' erased the '0' on screen and the lead byte in the line:
 * 'sleep 10' ran while the screen said 'sleep 1'). Ctrl-U and the
 * arrows' redraw erase one column per character too. */
KTEST(lineedit, backspace_erases_a_whole_utf8_character)
{
	reset();
	KEXPECT_EQ(type("sleep 10\xc3\xa9\x7f\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "sleep 1");
	KEXPECT_STREQ(echo, "sleep 10\xc3\xa9\b \b\b \b\n");
	/* Three- and four-byte characters, and Ctrl-U over them. */
	echo_len = 0;
	type("a\xe2\x82\xac\xf0\x9f\x99\x82"
	     "b\x15",
	     NULL);
	KEXPECT_STREQ(echo, "a\xe2\x82\xac\xf0\x9f\x99\x82"
	                    "b\b \b\b \b\b \b\b \b");
	KEXPECT_STREQ(le.buf, "");
	/* Stray bytes, each shown as a replacement character, go one by
	 * one. */
	KEXPECT_EQ(type("x\x80\x80\xc3\x7f\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "x\x80");
}

/* A UTF-8 sequence cut short is one column, a replacement character: a
 * terminal decodes the bytes as they come, so the lead byte takes the
 * continuation bytes that follow it, up to the length it says, and any
 * other byte (or the backspace of what followed) ends it. Backspace must
 * take all of such a column, and bytes that come after its end are
 * stray however they would join it in the buffer (found by
 * tests/host/fuzz/lineedit_fuzz.c: 'caf', 0xe3 0xa9, Backspace left
 * 'caf\xe3' in the line under a screen that showed 'caf'). */
KTEST(lineedit, a_utf8_character_cut_short_is_one_column)
{
	reset();
	/* The screen: 'sleep 1', a replacement character; then 'sleep 10'. */
	KEXPECT_EQ(type("sleep 1\xe2\x82\x7f"
	                "0\r",
	                NULL),
	           LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "sleep 10");
	KEXPECT_STREQ(echo, "sleep 1\xe2\x82\b \b0\n");
	/* The lead byte's sequence ended at the 'x' erased after it: the
	 * 0x82 0xac that follow would be two stray columns on the terminal,
	 * but a '\xe2\x82\xac' with the lead when the line is drawn again
	 * (lineedit.bytes_that_would_join_a_cut_lead_are_ignored): they are
	 * ignored, and one Backspace erases the lead. */
	echo_len = 0;
	type("\xe2x\x7f\x82\xac\x7f\x7f\x7f", NULL);
	KEXPECT_STREQ(echo, "\xe2x\b \b\b \b");
	KEXPECT_STREQ(le.buf, "");
	/* A redraw (the arrows) echoes the line whole: there the three
	 * bytes are one character again, and one Backspace takes them. */
	KEXPECT_EQ(type("\xe2\x82\xac\r", NULL), LINEEDIT_LINE);
	echo_len = 0;
	type("\x1b[A\x7f", NULL);
	KEXPECT_STREQ(echo, "\xe2\x82\xac\b \b");
	KEXPECT_STREQ(le.buf, "");
}

/* 0xc0, 0xc1 and 0xf5 up start no UTF-8 sequence (overlong, or past
 * U+10FFFF): a terminal shows each, and each byte after it, as a
 * replacement of its own, so one Backspace takes one byte. They were
 * taken as leads: "\xc0\x80" was one column, and two Backspaces erased
 * the 'b' before it, unseen. */
KTEST(lineedit, bytes_that_start_no_sequence_are_stray)
{
	reset();
	type("ab\xc0\x80\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
	type("\xf5\x80\x80\x80\x7f\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab\xf5");
	type("\x7f\xc1\xbf\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
	/* A valid two-byte lead still makes one column. */
	type("\xc2\xa9\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
}
/* Four leads take a narrower second byte (Unicode's table 3-7: 0xe0
 * 0xa0-0xbf, 0xed 0x80-0x9f, 0xf0 0x90-0xbf, 0xf4 0x80-0x8f; the rest are
 * overlong forms, surrogates or past U+10FFFF): a terminal following
 * Unicode's advice ends the sequence at any other byte and shows it as a
 * replacement of its own, as it does each byte after. "\xe0\x80" was one
 * column: two Backspaces erased the 'b' before it, unseen, and left a
 * replacement character on the screen over a line without it. */
KTEST(lineedit, a_second_byte_its_lead_forbids_is_stray)
{
	reset();
	type("ab\xe0\x80\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
	KEXPECT_STREQ(echo, "ab\xe0\x80\b \b\b \b");
	type("\xed\xa0\x80\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab\xed");
	type("\x7f\xf0\x8f\xbf\xbf\x7f\x7f\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
	type("\xf4\x90\x80\x80\x7f\x7f\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab\xf4");
	/* At the ends of their ranges, each is one column. */
	type("\x7f\xe0\xa0\x80\x7f\xed\x9f\xbf\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
	type("\xf0\x90\x80\x80\x7f\xf4\x8f\xbf\xbf\x7f", NULL);
	KEXPECT_STREQ(le.buf, "ab");
}

/* U+0080-U+009F, "\xc2\x80" to "\xc2\x9f" in UTF-8, are the C1 control
 * characters, which a terminal obeys rather than shows (xterm and VTE
 * do: CSI, NEL, and DCS or OSC, which swallow all output up to a string
 * terminator), as it obeys the C0 ones the editor does not echo either:
 * the second byte is a control key, ignored, and the lead waits for one
 * that is not. "\xc2\x9b" was echoed: "2J" typed after it cleared the
 * screen. */
KTEST(lineedit, a_c1_control_character_is_not_echoed)
{
	reset();
	KEXPECT_EQ(type("ab\xc2\x9b"
	                "2J\r",
	                NULL),
	           LINEEDIT_LINE);
	KEXPECT_STREQ(echo, "ab\xc2"
	                    "2J\n");
	KEXPECT_STREQ(lineedit_line(&le), "ab\xc2"
	                                  "2J");
	/* The lead still takes the byte that may follow it: one column, and
	 * one Backspace; U+00A0 is no control. */
	echo_len = 0;
	type("\xc2\x85\xa9\x7f\xc2\xa0\x7f", NULL);
	KEXPECT_STREQ(echo, "\xc2\xa9\b \b\xc2\xa0\b \b");
	KEXPECT_STREQ(le.buf, "");
	/* After a lead cut short too: the line holds no C1 control, which
	 * a redraw (Up, Down) would send whole. */
	echo_len = 0;
	type("\xc2x\x7f\x9d\r" UP, NULL);
	KEXPECT_STREQ(echo, "\xc2x\b \b\n\xc2");
	KEXPECT_STREQ(le.buf, "\xc2");
}

/* A continuation byte after a sequence cut short by a Backspace is stray
 * on the terminal (the Backspace ended the sequence), but joins the lead
 * when the line is drawn again whole, as the console draws it after
 * another thread's output: "cmd", a cut '\xe2', 0x82 0xac showed six
 * columns to the editor and "cmd\xe2\x82\xac" redrawn showed four, so
 * three Backspaces erased the euro sign and "md", and Enter ran "cmd"
 * under a screen that said "c". Such a byte is ignored; one its lead's
 * range excludes is stray both ways, and typed. */
KTEST(lineedit, bytes_that_would_join_a_cut_lead_are_ignored)
{
	reset();
	type("cmd\xe2x\x7f\x82\xac", NULL);
	KEXPECT_STREQ(echo, "cmd\xe2x\b \b");
	KEXPECT_STREQ(le.buf, "cmd\xe2");
	KEXPECT_EQ(type("\x7f\x7f\x7f\r", NULL), LINEEDIT_LINE);
	KEXPECT_STREQ(lineedit_line(&le), "c");
	/* A four-byte lead with one byte of it shown, cut the same way. */
	type("\xf0\x9fx\x7f\x80\x80", NULL);
	KEXPECT_STREQ(le.buf, "\xf0\x9f");
	type("\x15\xe0x\x7f\x80", NULL);
	KEXPECT_STREQ(le.buf, "\xe0\x80");
}
