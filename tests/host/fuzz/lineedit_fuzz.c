/*
 * tests/host/fuzz/lineedit_fuzz.c: libFuzzer target for the shell's line
 * editor (kernel/lineedit.c).
 *
 * Input: keystrokes, one a byte; a NUL (which the editor ignores as a
 * control key) marks the line lost instead (lineedit_lost), as the shell
 * does when input bytes were dropped. Everything the editor echoes goes to
 * a model terminal, which keeps the line it shows as columns: a printable
 * ASCII byte is one; a UTF-8 lead byte opens one that takes the
 * continuation bytes its sequence needs (the second within the range
 * Unicode's table 3-7 gives its lead; a sequence cut short by any
 * other byte stays one column, as terminals show it: one replacement
 * character); a stray byte is one; "\b \b" erases the last; "\n" starts
 * a new line. Checked after every key, the promise of lineedit.c: the
 * terminal shows exactly buf[0, len), within LINEEDIT_MAX bytes; a line
 * the editor completes is what the terminal showed; Enter on a line with
 * an excess or a hole rejects it; the history holds at most
 * LINEEDIT_HISTORY lines of at most LINEEDIT_MAX bytes. A model of the
 * escape sequences (ESC, then '[' or 'O' and bytes up to a final one in
 * 0x40-0x7e, a byte outside 0x20-0x7e ending one unfinished) says which
 * bytes are typed: each must reach the line or its excess, and a byte a
 * sequence holds must leave both alone (its final 'A' or 'B' aside). A
 * model of the holes says which lines Enter refuses as lost: an entry
 * recalled over a draft with a hole has none, the draft gets it back.
 * The terminal takes a C1 control (0xc2, then 0x80-0x9f) for an error: a
 * real one would obey it. The line handed out with each key, decoded
 * afresh (as the console draws it again after other output), must take
 * the columns the terminal shows.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../kernel/lineedit.h"

/* The model terminal's current line. */
struct term {
	char bytes[4096];
	size_t len;
	size_t col_start[4096]; /* where each column starts in bytes */
	size_t ncols;
	unsigned open; /* continuation bytes the last column still takes */
	char last_line[4096];
	size_t nlines;
	const char *err;
};

static unsigned seq_len(unsigned char c)
{
	return c >= 0xf5 || c == 0xc0 || c == 0xc1 ? 1
	       : c >= 0xf0                         ? 4
	       : c >= 0xe0                         ? 3
	       : c >= 0xc0                         ? 2
	                                           : 1;
}

/* Whether c may be the second byte of lead's sequence (Unicode's table
 * 3-7; true for any lead that does not narrow the range). */
static bool second_ok(unsigned char lead, unsigned char c)
{
	return lead == 0xe0   ? c >= 0xa0
	       : lead == 0xed ? c <= 0x9f
	       : lead == 0xf0 ? c >= 0x90
	       : lead == 0xf4 ? c <= 0x8f
	                      : true;
}

/* Whether the terminal's line ends with a sequence cut short (by a
 * Backspace: none is open) that c would join if the line were decoded
 * afresh: the editor ignores such a byte. */
static bool rejoins_cut(const struct term *t, unsigned char c)
{
	if ((c & 0xc0) != 0x80 || t->open || !t->ncols)
		return false;
	size_t start = t->col_start[t->ncols - 1], have = t->len - start;
	unsigned char lead = (unsigned char)t->bytes[start];
	return have < seq_len(lead) && (have > 1 || second_ok(lead, c));
}

static void term_byte(struct term *t, unsigned char c)
{
	if (c == '\n') {
		memcpy(t->last_line, t->bytes, t->len);
		t->last_line[t->len] = 0;
		t->len = t->ncols = t->open = 0;
		t->nlines++;
		return;
	}
	if (c < 0x20 || c == 0x7f) {
		t->err = "a control byte other than \\b or \\n echoed";
		return;
	}
	/* The second byte of a sequence whose lead narrows its range
	 * (Unicode's table 3-7) ends it when out of that range. */
	unsigned char lead = t->open && t->col_start[t->ncols - 1] == t->len - 1
	                             ? (unsigned char)t->bytes[t->len - 1]
	                             : 0;
	if ((c & 0xc0) == 0x80 && t->open && second_ok(lead, c)) {
		/* U+0080-U+009F: a terminal obeys it, shows nothing. */
		if (lead == 0xc2 && c <= 0x9f)
			t->err = "a C1 control character echoed";
		t->open--;
	} else {
		t->col_start[t->ncols++] = t->len;
		t->open = (c & 0xc0) == 0x80 ? 0 : seq_len(c) - 1;
	}
	t->bytes[t->len++] = (char)c;
}

static void term_echo(struct term *t, const char *s, size_t n);

/* A key's echo, and the line the editor says the terminal then shows:
 * the console redraws that one after other output, so it must be. */
static void out(void *ctx, const char *s, size_t n, const char *line)
{
	struct term *t = ctx;
	term_echo(t, s, n);
	if (t->err)
		return;
	if (line && (strlen(line) != t->len || memcmp(line, t->bytes, t->len)))
		t->err = "the line handed out is not what the terminal shows";
	/* The console draws that line again, whole, after other output:
	 * decoded afresh, it must take the columns the editor counts. */
	static struct term fresh;
	fresh.len = fresh.ncols = fresh.open = 0;
	fresh.err = NULL;
	for (size_t i = 0; line && line[i] && !t->err; i++)
		term_byte(&fresh, (unsigned char)line[i]);
	if (line && !t->err && fresh.ncols != t->ncols)
		t->err = "the line drawn again would show other columns";
	if (!line && (t->len != 0 || n == 0 || s[n - 1] != '\n'))
		t->err = "a line ended without a newline";
}

static void term_echo(struct term *t, const char *s, size_t n)
{
	for (size_t i = 0; i < n && !t->err; i++) {
		if (s[i] == '\b') {
			if (n - i < 3 || memcmp(s + i, "\b \b", 3) != 0 ||
			    t->ncols == 0) {
				t->err = "a backspace that is not \"\\b \\b\" "
				         "over a shown column";
				return;
			}
			t->len = t->col_start[--t->ncols];
			t->open = 0;
			i += 2;
		} else if (s[i] == '^' && n - i >= 3 &&
		           memcmp(s + i, "^C\n", 3) == 0) {
			t->len = t->ncols = t->open = 0;
			term_byte(t, '\n');
			i += 2;
		} else if (t->len >= sizeof(t->bytes) - 1) {
			t->err = "the terminal line grew past 4 KiB";
		} else {
			term_byte(t, (unsigned char)s[i]);
		}
	}
}

static struct lineedit le; /* large: not on the stack */
static struct term term;

/* What the model makes of a byte: typed, held by an escape sequence (an
 * arrow when it ends one with 'A' or 'B'), or another key. */
enum key_kind { KEY_TYPED, KEY_HELD, KEY_ARROW, KEY_OTHER };
static enum { ESC_NONE, ESC_SEEN, ESC_CSI } model_esc;

static enum key_kind model_key(unsigned char c)
{
	if (c < 0x20 || c > 0x7e) {
		model_esc = c == 0x1b ? ESC_SEEN : ESC_NONE;
		return c >= 0x80 ? KEY_TYPED : KEY_OTHER;
	}
	if (model_esc == ESC_SEEN) {
		model_esc = c == '[' || c == 'O' ? ESC_CSI : ESC_NONE;
		return KEY_HELD;
	}
	if (model_esc == ESC_CSI) {
		if (c < 0x40)
			return KEY_HELD;
		model_esc = ESC_NONE;
		return c == 'A' || c == 'B' ? KEY_ARROW : KEY_HELD;
	}
	return KEY_TYPED;
}

static void fail(const char *what, size_t key)
{
	fprintf(stderr,
	        "lineedit_fuzz: key %zu: %s (editor: %zu bytes '%.*s'; "
	        "terminal: %zu bytes '%.*s')\n",
	        key, what, le.len, (int)le.len, le.buf, term.len, (int)term.len,
	        term.bytes);
	abort();
}

/* The model of holes: whether the line shown has one (a NUL since the
 * last Enter, Ctrl-C or Ctrl-U, or since the draft left the screen),
 * and whether the draft kept while browsing has one, which it brings
 * back. One entry recalled over another keeps a hole that fell since the
 * draft left: the arrow itself may have been in it. */
static bool model_lost, model_draft_lost;

static void model_holes(unsigned char c, enum lineedit_event ev,
                        size_t browse_before)
{
	if (ev != LINEEDIT_MORE) {
		model_lost = model_draft_lost = false;
	} else if (c == 0x15) {
		model_lost = false;
	} else if (browse_before == 0 && le.browse == 1) {
		model_draft_lost = model_lost;
		model_lost = false;
	} else if (browse_before == 1 && le.browse == 0) {
		model_lost |= model_draft_lost;
	}
}

static void check_event(enum lineedit_event ev, size_t key, bool overlong,
                        bool lost)
{
	if (ev == LINEEDIT_LINE) {
		if (overlong || lost)
			fail("a line with an excess or a hole completed", key);
		if (strcmp(lineedit_line(&le), term.last_line) != 0)
			fail("the line completed is not what was shown", key);
		return;
	}
	if (ev == LINEEDIT_OVERLONG && (!overlong || lost))
		fail("a line rejected as overlong without an excess", key);
	if (ev == LINEEDIT_LOST && !lost)
		fail("a line rejected as lost without a hole", key);
	if (ev == LINEEDIT_LOST && lineedit_lost_bytes(&le) == 0)
		fail("a line rejected as lost counts no byte lost", key);
	if (le.len > LINEEDIT_MAX || strlen(le.buf) != le.len)
		fail("the line is not buf[0, len) within the limit", key);
	if (term.len != le.len || memcmp(term.bytes, le.buf, le.len) != 0)
		fail("the terminal does not show the line", key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	memset(&term, 0, sizeof(term));
	model_esc = ESC_NONE;
	model_lost = model_draft_lost = false;
	lineedit_init(&le, out, &term);
	for (size_t i = 0; i < size; i++) {
		if (data[i] == 0) {
			lineedit_lost(&le, 1);
			model_lost = true;
			continue;
		}
		bool overlong = le.overflow != 0;
		size_t len = le.len, over = le.overflow, browse = le.browse;
		enum key_kind kind = model_key(data[i]);
		/* After a 0xc2 shown last, 0x80-0x9f would make a C1 control:
		 * a control key. */
		if (kind == KEY_TYPED && !over && term.len &&
		    (unsigned char)term.bytes[term.len - 1] == 0xc2 &&
		    data[i] >= 0x80 && data[i] <= 0x9f)
			kind = KEY_OTHER;
		if (kind == KEY_TYPED && !over && rejoins_cut(&term, data[i]))
			kind = KEY_OTHER;
		enum lineedit_event ev = lineedit_feed(&le, (char)data[i]);
		if (term.err)
			fail(term.err, i);
		check_event(ev, i, overlong, model_lost);
		model_holes(data[i], ev, browse);
		bool grew = le.len == len + 1 && le.buf[len] == (char)data[i];
		bool cont = (data[i] & 0xc0) == 0x80 && over;
		if (kind == KEY_TYPED && !grew && le.overflow == over && !cont)
			fail("a typed byte reached neither line nor excess", i);
		if (kind == KEY_HELD && (le.len != len || le.overflow != over))
			fail("a byte of an escape sequence changed the line",
			     i);
	}
	if (le.nhist > LINEEDIT_HISTORY)
		fail("more history than LINEEDIT_HISTORY", size);
	for (size_t b = 0; lineedit_history(&le, b); b++)
		if (strlen(lineedit_history(&le, b)) > LINEEDIT_MAX ||
		    !*lineedit_history(&le, b))
			fail("a history line empty or over the limit", size);
	return 0;
}
