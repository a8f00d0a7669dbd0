/*
 * The shell's line editor: turns keystrokes into lines. It knows printable
 * characters (UTF-8 ones too: Backspace erases all of one, or all of one
 * cut short, which a terminal shows as one replacement character), Enter (CR,
 * LF, or CR LF as one), Backspace (DEL or BS), Ctrl-C (abandon the line),
 * Ctrl-U (erase it), and the arrow keys' VT100 sequences ESC [ A / ESC [ B (and
 * ESC O A / B) for the history of the last LINEEDIT_HISTORY lines; other
 * sequences are swallowed whole, but a byte outside 0x20-0x7e inside one (a
 * control key, DEL, UTF-8) ends it and is obeyed or typed. A line longer than
 * LINEEDIT_MAX bytes is not cut: its excess (from the first character that does
 * not fit whole) is not echoed, and Enter rejects it whole. So is a line the
 * caller marks lost (lineedit_lost: input bytes were dropped inside it), saying
 * how many. Other control keys are ignored, the C1 ones (U+0080-U+009F, which
 * a terminal would obey) too.
 *
 * It does no I/O: echo and redraws go through the caller's out function,
 * so a test can feed scripted keystrokes and read what a terminal would
 * show. Each key's echo comes whole, in one call, with the line as the
 * terminal then shows it: a console that prints something else meanwhile
 * can draw the line again. Not locked: one owner (the shell thread, or a
 * test).
 */
#ifndef KERNEL_LINEEDIT_H
#define KERNEL_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LINEEDIT_MAX     120
#define LINEEDIT_HISTORY 16

/* What a keystroke completed. */
enum lineedit_event {
	LINEEDIT_MORE,     /* nothing yet */
	LINEEDIT_LINE,     /* Enter: lineedit_line() is the line */
	LINEEDIT_CANCEL,   /* Ctrl-C: the line was abandoned */
	LINEEDIT_OVERLONG, /* Enter on a line over LINEEDIT_MAX: rejected */
	LINEEDIT_LOST,     /* Enter on a line marked lost: rejected */
};

/* A key's echo s[0..n), n > 0; line is what the terminal shows after it
 * (not counting the prompt), or NULL when the key ended the line (its
 * echo ends with a newline). */
typedef void (*lineedit_out_fn)(void *ctx, const char *s, size_t n,
                                const char *line);

/* The most one key echoes: a history recall erases a whole line (3
 * bytes a column) and shows another. */
#define LINEEDIT_ECHO_MAX (4 * LINEEDIT_MAX + 4)

struct lineedit {
	lineedit_out_fn out;
	void *ctx;
	char buf[LINEEDIT_MAX + 1];   /* the line being edited, NUL-ended */
	char echo[LINEEDIT_ECHO_MAX]; /* this key's, until it is handled */
	size_t echo_len;
	size_t len;
	/* The terminal's columns: col_start[i] when buf[i] starts one; the
	 * continuation bytes the last one still takes (lineedit.c). */
	bool col_start[LINEEDIT_MAX];
	unsigned open;
	size_t overflow;    /* characters typed past LINEEDIT_MAX bytes */
	bool overflow_cont; /* the last character went to overflow */
	unsigned esc;  /* escape-sequence state: 0, after ESC, after ESC [ */
	bool after_cr; /* the last key was CR: a LF next is its pair */
	uint64_t lost; /* input bytes dropped inside this line */
	uint64_t lost_rejected; /* those of the line LINEEDIT_LOST refused */
	/* The history, oldest first in a ring; browse counts back from the
	 * newest while the arrows walk it (0: the line being typed). */
	char hist[LINEEDIT_HISTORY][LINEEDIT_MAX + 1];
	size_t nhist, hist_next;
	size_t browse;
	char draft[LINEEDIT_MAX + 1]; /* the typed line, kept while browsing */
	size_t draft_overflow;        /* and its excess (see overflow) */
	uint64_t draft_lost; /* and the bytes it lost (not in lost meanwhile) */
};

void lineedit_init(struct lineedit *le, lineedit_out_fn out, void *ctx);

/* Feeds one keystroke byte; returns what it completed. After
 * LINEEDIT_LINE the line stays readable until the next lineedit_feed. */
enum lineedit_event lineedit_feed(struct lineedit *le, char c);

/* Marks the line being typed as lost: nbytes of it never arrived. The
 * next Enter returns LINEEDIT_LOST instead of the line (Ctrl-C and
 * Ctrl-U abandon it and its count as usual; a line left for the history
 * keeps its mark and count, and gets them back when the arrows return to
 * it, while the entry recalled over it has none of its own: the hole
 * left the screen with the line). Call it before feeding the byte that
 * followed the hole. */
void lineedit_lost(struct lineedit *le, uint64_t nbytes);

/* After LINEEDIT_LOST: the input bytes the refused line lost, counted
 * since the last Ctrl-U or Ctrl-C (the holes in what they erased are
 * not in it). */
uint64_t lineedit_lost_bytes(const struct lineedit *le);

/* The completed line (after LINEEDIT_LINE). */
const char *lineedit_line(const struct lineedit *le);

/* The history entry back steps from the newest (0 = newest), or NULL. */
const char *lineedit_history(const struct lineedit *le, size_t back);

#endif
