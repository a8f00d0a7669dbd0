/*
 * The line editor (see lineedit.h). The terminal shows the prompt and
 * then exactly buf[0..len): every change is echoed as the bytes that make
 * the terminal agree (a character; "\b \b" to erase one), so the editor
 * never needs to know the cursor's column. A character is one column: an
 * ASCII byte, a UTF-8 sequence, or a stray byte (which a terminal shows
 * as one replacement character). A sequence is the lead byte and the
 * continuation bytes that reached the terminal right after it, up to the
 * length the lead byte says (the second within the range the lead
 * allows): one cut short (by a key, or by the backspace that erased what
 * followed it) is one column too, a replacement character. A
 * continuation byte after one cut by a backspace, stray on the terminal,
 * is ignored (rejoins_cut): a redraw (the arrows', the console's after
 * other output) decodes the line afresh and would join the two. So buf
 * decoded afresh shows the columns the editor counts; it keeps where
 * each starts (col_start), echoing through show_byte as a terminal
 * decodes.
 * Limit: a double-width character (CJK) takes two columns, and one
 * "\b \b" leaves half of it shown.
 */
#include "lineedit.h"

#include <stdbool.h>

#include "kernel/string.h"

#define KEY_CTRL_C 0x03
#define KEY_BS     0x08
#define KEY_CTRL_U 0x15
#define KEY_ESC    0x1b
#define KEY_DEL    0x7f

enum { ESC_NONE, ESC_SEEN, ESC_CSI };

void lineedit_init(struct lineedit *le, lineedit_out_fn out, void *ctx)
{
	memset(le, 0, sizeof(*le));
	le->out = out;
	le->ctx = ctx;
}

/* Adds to the key's echo, which lineedit_feed hands out whole. */
static void emit(struct lineedit *le, const char *s, size_t n)
{
	/* Never by LINEEDIT_ECHO_MAX; should it be, the part so far goes
	 * out with the line as it stands, not lost. */
	if (le->echo_len + n > sizeof(le->echo)) {
		le->out(le->ctx, le->echo, le->echo_len, le->buf);
		le->echo_len = 0;
	}
	memcpy(le->echo + le->echo_len, s, n);
	le->echo_len += n;
}

static bool is_continuation(char c)
{
	return ((unsigned char)c & 0xc0) == 0x80;
}

/* The bytes of a UTF-8 sequence that starts with lead, or 0 when lead
 * starts none: a continuation byte, and the bytes no valid sequence
 * starts with (0xc0 and 0xc1, overlong; 0xf5 up, past U+10FFFF), which a
 * terminal following Unicode's advice shows as one replacement each. */
static size_t utf8_length(char lead)
{
	unsigned char c = (unsigned char)lead;
	if (c >= 0xf5 || c == 0xc0 || c == 0xc1)
		return 0;
	if (c >= 0xf0)
		return 4;
	if (c >= 0xe0)
		return 3;
	return c >= 0xc0 ? 2 : 0;
}

/* Whether c may follow lead as its sequence's second byte. Four leads
 * take a narrower range (Unicode's table 3-7: what else follows them
 * makes an overlong form, a surrogate, or a code point past U+10FFFF),
 * and a terminal following Unicode's advice ends the sequence at any
 * other byte, showing that byte as a replacement of its own. */
static bool second_byte_fits(char lead, char c)
{
	unsigned char l = (unsigned char)lead, b = (unsigned char)c;
	if (l == 0xe0)
		return b >= 0xa0;
	if (l == 0xed)
		return b <= 0x9f;
	if (l == 0xf0)
		return b >= 0x90;
	if (l == 0xf4)
		return b <= 0x8f;
	return true;
}

/* Whether the continuation byte c, next at buf[len], joins the column
 * of a sequence still open (whose lead is in buf: len > 0); the lead
 * starts the column just before c when c would be the second byte. */
static bool joins_open(const struct lineedit *le, char c)
{
	if (!is_continuation(c) || !le->open)
		return false;
	return !le->col_start[le->len - 1] ||
	       second_byte_fits(le->buf[le->len - 1], c);
}

/* Echoes the byte c, which goes to buf[len], and records whether the
 * terminal starts a column with it: a continuation byte joins the
 * column of a sequence still open (joins_open), any other byte starts
 * one. */
static void show_byte(struct lineedit *le, char c)
{
	if (joins_open(le, c)) {
		le->open--;
		le->col_start[le->len] = false;
	} else {
		size_t n = utf8_length(c);
		le->open = n ? n - 1 : 0;
		le->col_start[le->len] = true;
	}
	emit(le, &c, 1);
}

/* Erases the last column on the terminal and its bytes in buf; len > 0.
 * The backspace ends any sequence still open on the terminal. */
static void erase_char(struct lineedit *le)
{
	do
		le->len--;
	while (le->len && !le->col_start[le->len]);
	le->buf[le->len] = '\0';
	le->open = 0;
	emit(le, "\b \b", 3);
}

/* Erases the whole line on the terminal and in buf. */
static void erase_line(struct lineedit *le)
{
	while (le->len)
		erase_char(le);
	le->overflow = 0;
}

/* Forgets the line: nothing is echoed. */
static void drop_line(struct lineedit *le)
{
	le->len = 0;
	le->buf[0] = '\0';
	le->overflow = 0;
	le->lost = 0;
	le->open = 0;
}

/* Replaces the line with s, echoing it. */
static void set_line(struct lineedit *le, const char *s)
{
	erase_line(le);
	for (; *s; s++) {
		show_byte(le, *s);
		le->buf[le->len++] = *s;
	}
	le->buf[le->len] = '\0';
}

const char *lineedit_history(const struct lineedit *le, size_t back)
{
	if (back >= le->nhist)
		return NULL;
	size_t i = (le->hist_next + LINEEDIT_HISTORY - 1 - back) %
	           LINEEDIT_HISTORY;
	return le->hist[i];
}

static void remember(struct lineedit *le)
{
	const char *newest = lineedit_history(le, 0);
	if (le->len == 0 || (newest && strcmp(newest, le->buf) == 0))
		return;
	memcpy(le->hist[le->hist_next], le->buf, le->len + 1);
	le->hist_next = (le->hist_next + 1) % LINEEDIT_HISTORY;
	if (le->nhist < LINEEDIT_HISTORY)
		le->nhist++;
}

/* An arrow key: up (older) or down (newer). */
static void browse(struct lineedit *le, bool up)
{
	if (up && le->browse < le->nhist) {
		/* The draft leaves the screen with its hole: the entry
		 * that replaces it has none (until one falls after it). */
		if (le->browse == 0) {
			memcpy(le->draft, le->buf, le->len + 1);
			le->draft_overflow = le->overflow;
			le->draft_lost = le->lost;
			le->lost = 0;
		}
		le->browse++;
		set_line(le, lineedit_history(le, le->browse - 1));
	} else if (!up && le->browse > 0) {
		le->browse--;
		set_line(le, le->browse ? lineedit_history(le, le->browse - 1)
		                        : le->draft);
		/* The draft's unechoed excess comes back with it: Enter
		 * still rejects an overlong line whole. So does its hole,
		 * added to any that fell while browsing (not erased by a
		 * Ctrl-U since): an arrow key may have been in those. */
		if (le->browse == 0) {
			le->overflow = le->draft_overflow;
			le->lost += le->draft_lost;
		}
	}
}

/* Ends the line being typed: a fresh one starts at the next key. */
static enum lineedit_event finish(struct lineedit *le)
{
	emit(le, "\n", 1);
	le->open = 0;
	le->browse = 0;
	if (le->lost || le->overflow) {
		enum lineedit_event ev =
		        le->lost ? LINEEDIT_LOST : LINEEDIT_OVERLONG;
		le->lost_rejected = le->lost;
		drop_line(le);
		return ev;
	}
	remember(le);
	le->len = 0; /* buf keeps the line until the next feed */
	return LINEEDIT_LINE;
}

static bool escape(struct lineedit *le, char c)
{
	if (le->esc == ESC_SEEN) {
		le->esc = (c == '[' || c == 'O') ? ESC_CSI : ESC_NONE;
		return true;
	}
	if (le->esc == ESC_CSI) {
		/* Parameters and intermediates run until a final byte. */
		if (c >= 0x40 && c <= 0x7e) {
			le->esc = ESC_NONE;
			if (c == 'A' || c == 'B')
				browse(le, c == 'A');
		}
		return true;
	}
	return false;
}

/* Whether c, after the byte 0xc2 that ends the line, makes U+0080-U+009F:
 * a C1 control, which a terminal obeys rather than shows (CSI and NEL
 * move the cursor; DCS and OSC swallow all output up to a string
 * terminator), so a key to ignore as the C0 ones are. Even after a lead
 * cut short: the line must hold no C1 control, or a redraw of it (the
 * arrows', the console's) would send one whole. */
static bool completes_c1(const struct lineedit *le, char c)
{
	unsigned char b = (unsigned char)c;
	return le->len && (unsigned char)le->buf[le->len - 1] == 0xc2 &&
	       b >= 0x80 && b <= 0x9f;
}

/* Whether the continuation byte c, which the terminal takes as stray
 * (a Backspace ended the sequence open there), would join the sequence
 * cut short that ends the line once the line is drawn again whole: the
 * console's redraw after other output decodes it afresh, and its
 * columns would no longer be those the editor erases. */
static bool rejoins_cut(const struct lineedit *le, char c)
{
	if (!is_continuation(c) || le->open || !le->len)
		return false;
	size_t start = le->len - 1;
	while (start && !le->col_start[start])
		start--;
	size_t have = le->len - start;
	return have < utf8_length(le->buf[start]) &&
	       (have > 1 || second_byte_fits(le->buf[start], c));
}

/* A printable byte: into the line and echoed, or into the excess when
 * the character it starts does not fit whole (or the line has an excess
 * already: the excess is the end of the line). The continuation bytes
 * of a character left out follow it. */
static void add_byte(struct lineedit *le, char c)
{
	if (is_continuation(c) && le->overflow_cont)
		return;
	if (!le->overflow && completes_c1(le, c))
		return; /* an open lead waits for the byte after */
	if (!le->overflow && rejoins_cut(le, c))
		return; /* ignored, as a control key */
	size_t need = utf8_length(c) ? utf8_length(c) : 1;
	if (le->overflow || le->len + need > LINEEDIT_MAX) {
		le->overflow++;
		le->overflow_cont = true;
		return;
	}
	show_byte(le, c);
	le->buf[le->len++] = c;
	le->buf[le->len] = '\0';
}

static enum lineedit_event feed(struct lineedit *le, char c);

enum lineedit_event lineedit_feed(struct lineedit *le, char c)
{
	le->echo_len = 0;
	enum lineedit_event ev = feed(le, c);
	if (le->echo_len)
		le->out(le->ctx, le->echo, le->echo_len,
		        ev == LINEEDIT_MORE ? le->buf : NULL);
	return ev;
}

/* One key: its echo goes to le->echo. */
static enum lineedit_event feed(struct lineedit *le, char c)
{
	bool after_cr = le->after_cr;
	le->after_cr = false;
	if (!is_continuation(c))
		le->overflow_cont = false;
	if (le->len == 0 && !le->overflow)
		le->buf[0] = '\0';
	/* A byte no escape sequence holds (ECMA-48 5.4: they are made of
	 * 0x20-0x7e) abandons one and is obeyed or typed: a stray Esc must
	 * not eat the Enter or Ctrl-C after it, nor DEL (the Backspace most
	 * terminals send), nor a UTF-8 character and every key after it up
	 * to the next letter. */
	if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e)
		le->esc = ESC_NONE;
	if (escape(le, c))
		return LINEEDIT_MORE;
	switch (c) {
	case '\n':
		if (after_cr)
			return LINEEDIT_MORE;
		return finish(le);
	case '\r':
		le->after_cr = true;
		return finish(le);
	case KEY_CTRL_C:
		emit(le, "^C\n", 3);
		drop_line(le);
		le->browse = 0;
		return LINEEDIT_CANCEL;
	case KEY_CTRL_U:
		erase_line(le);
		le->lost = 0;
		return LINEEDIT_MORE;
	case KEY_BS:
	case KEY_DEL:
		if (le->overflow) {
			le->overflow--;
		} else if (le->len) {
			erase_char(le);
		}
		return LINEEDIT_MORE;
	case KEY_ESC:
		le->esc = ESC_SEEN;
		return LINEEDIT_MORE;
	default:
		break;
	}
	if ((unsigned char)c >= 0x20)
		add_byte(le, c); /* other control keys: ignored */
	return LINEEDIT_MORE;
}

void lineedit_lost(struct lineedit *le, uint64_t nbytes)
{
	/* A hole of no bytes is still one: the caller saw a hole. */
	nbytes = nbytes ? nbytes : 1;
	le->lost =
	        le->lost > UINT64_MAX - nbytes ? UINT64_MAX : le->lost + nbytes;
}

uint64_t lineedit_lost_bytes(const struct lineedit *le)
{
	return le->lost_rejected;
}

const char *lineedit_line(const struct lineedit *le)
{
	return le->buf;
}
