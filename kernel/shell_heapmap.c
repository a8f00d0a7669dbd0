/*
 * The shell's `heapmap`: the kernel page heap's arena drawn as text.
 *
 *   heapmap             one character per 2 MiB chunk, 64 to a row
 *   heapmap CHUNK       one character per page of that chunk, with the
 *                       owner of each page in use (a span of small
 *                       objects, a large object, a page-heap run) and the
 *                       first page of each span in capitals
 *   heapmap stream MS   a background thread prints one row every MS ms,
 *                       "heapmap-row: <ms> <chars>", one character per 64
 *                       pages (256 KiB) from the arena's base to one
 *                       chunk past the grown ones (at most
 *                       HEAPMAP_ROW_CHUNKS chunks), for
 *                       tools/plot-heapmap; "heapmap stream
 *                       off" stops it; "shell.heapmap=MS" on the command
 *                       line starts it at boot (make run HEAPMAP=1)
 *
 * A chunk or group shows the state most of its pages are in (U in use, F
 * free backed, S scavenged, N not grown), lower case when not all are.
 * On a terminal (no "shell.notty") each character also gets a background
 * colour. The states come from mheap_chunk_bits (under the heap lock,
 * chunk by chunk, so the map is a sequence of consistent chunk snapshots,
 * not one snapshot of the heap) and the span table (lock-free).
 */
#include <stdatomic.h>

#include "kernel/bootinfo.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/printk.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "kernel/time.h"

#define ROW_CHARS          64
#define HEAPMAP_ROW_CHUNKS 128 /* 256 MiB in a stream row */
#define GROUP_PAGES        64

enum page_state { ST_USED, ST_BACKED, ST_SCAV, ST_NOT_GROWN, ST_COUNT };

static const char state_char[ST_COUNT] = {'U', 'F', 'S', 'N'};
/* Background colours: red, yellow, blue, grey. */
static const char *const state_colour[ST_COUNT] = {"41", "43", "44", "100"};

static size_t grown_chunks(void)
{
	struct mheap_stats h;
	mheap_stats(&kheap, &h);
	return h.grown_pages / PALLOC_CHUNK_PAGES;
}

/* The letter for pages [first, first + n) of a chunk's bitmaps: the state
 * of most of them, lower case when mixed. */
static char group_char(const uint64_t *alloc, const uint64_t *scav,
                       unsigned first, unsigned n)
{
	unsigned count[ST_COUNT] = {0};
	for (unsigned p = first; p < first + n; p++) {
		bool a = alloc[p / 64] >> (p % 64) & 1;
		bool s = scav[p / 64] >> (p % 64) & 1;
		count[a ? ST_USED : s ? ST_SCAV : ST_BACKED]++;
	}
	unsigned best = ST_USED;
	for (unsigned s = 1; s < ST_NOT_GROWN; s++)
		if (count[s] > count[best])
			best = s;
	char c = state_char[best];
	return count[best] == n ? c : (char)(c - 'A' + 'a');
}

static enum page_state char_state(char c)
{
	for (unsigned s = 0; s < ST_COUNT; s++)
		if (c == state_char[s] || c == state_char[s] - 'A' + 'a')
			return (enum page_state)s;
	return ST_USED;
}

/* A row as printed: its label, and on a terminal a colour change (at
 * most 9 bytes) before each of its characters. */
#define ROW_LINE_MAX (24 + ROW_CHARS * 10 + 8)

/* Prints label and row[0..n) (n <= ROW_CHARS), with colours on a
 * terminal, in one printk: another CPU's line, or the stream's, cannot
 * land inside it (nor inside a colour run; until a review a row went
 * out a character at a time). Thread context. */
static void print_row(const char *label, const char *row, size_t n,
                      enum page_state (*state)(char))
{
	char line[ROW_LINE_MAX]; /* 672 bytes of stack */
	bool tty = shell_tty();
	size_t len = (size_t)ksnprintf(line, sizeof(line), "%s%.*s", label,
	                               tty ? 0 : (int)n, row);
	int last = -1;
	for (size_t i = 0; tty && i < n && len < sizeof(line); i++) {
		int s = state(row[i]);
		len += (size_t)ksnprintf(line + len, sizeof(line) - len,
		                         "%s%s%s%c",
		                         s != last ? "\x1b[30;" : "",
		                         s != last ? state_colour[s] : "",
		                         s != last ? "m" : "", row[i]);
		last = s;
	}
	printk("%s%s\n", line, tty ? "\x1b[0m" : "");
}

static enum shell_status chunk_map(void)
{
	size_t grown = grown_chunks();
	size_t shown = (grown / ROW_CHARS + 1) * ROW_CHARS;
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	char row[ROW_CHARS];
	printk("heapmap: %zu chunks of 2 MiB grown at %#lx, one character per "
	       "chunk\n",
	       grown, kheap.arena_base);
	for (size_t base = 0; base < shown; base += ROW_CHARS) {
		for (size_t i = 0; i < ROW_CHARS; i++)
			row[i] = mheap_chunk_bits(&kheap, base + i, alloc, scav)
			                 ? group_char(alloc, scav, 0,
			                              PALLOC_CHUNK_PAGES)
			                 : 'N';
		char label[24];
		ksnprintf(label, sizeof(label), "  chunk %5zu  ", base);
		print_row(label, row, ROW_CHARS, char_state);
	}
	printk("legend: U in use, F free backed, S scavenged, N not grown; "
	       "lower case: mixed, showing most of its pages\n");
	return SHELL_OK;
}

/* The page zoom's letter for one page in use: who owns it. */
static char owner_char(uintptr_t addr)
{
	void *e = mheap_span_lookup(&kheap, addr);
	if (e == MHEAP_SPAN_PAGES)
		return 'P';
	if (e == NULL || e == MHEAP_SPAN_FREED_LARGE)
		return '?';
	/* Span structs are never freed: reading a stale one is safe. */
	const struct mspan *s = e;
	uint8_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	char c = st == MSPAN_SMALL ? 'o' : st == MSPAN_LARGE ? 'l' : '?';
	return s->base == addr && c != '?' ? (char)(c - 'a' + 'A') : c;
}

static enum page_state page_state_of(char c)
{
	return c == 'F' ? ST_BACKED : c == 'S' ? ST_SCAV : ST_USED;
}

static enum shell_status page_map(size_t ci)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	if (!mheap_chunk_bits(&kheap, ci, alloc, scav)) {
		printk("heapmap: chunk %zu is not grown (%zu are)\n", ci,
		       grown_chunks());
		return SHELL_FAILED;
	}
	uintptr_t base = kheap.arena_base + ci * PALLOC_CHUNK_BYTES;
	printk("heapmap: chunk %zu at %#lx, one character per 4 KiB page\n", ci,
	       base);
	char row[ROW_CHARS];
	for (unsigned p0 = 0; p0 < PALLOC_CHUNK_PAGES; p0 += ROW_CHARS) {
		for (unsigned i = 0; i < ROW_CHARS; i++) {
			unsigned p = p0 + i;
			bool a = alloc[p / 64] >> (p % 64) & 1;
			bool s = scav[p / 64] >> (p % 64) & 1;
			row[i] = a   ? owner_char(base + p * MM_PAGE_SIZE)
			         : s ? 'S'
			             : 'F';
		}
		char label[24];
		ksnprintf(label, sizeof(label), "  page %3u  ", p0);
		print_row(label, row, ROW_CHARS, page_state_of);
	}
	printk("legend: O/o small-object span, L/l large object (capital: "
	       "first page), P page-heap run, F free backed, S scavenged\n");
	return SHELL_OK;
}

/* ---- The stream ---------------------------------------------------------- */

/* The shell thread's (start and stop): */
static struct thread_handle streamer;
static char *stream_row;
/* Set before the streamer starts, read by it: */
static uint64_t stream_period_ns, stream_t0;
/* Rank WAITQ, as a wait queue's lock: the streamer's sleep releases it,
 * and the stop wakes the streamer (RUNQUEUE) under it. Protects
 * stream_stop, so that the stop cannot slip between the streamer's look
 * and its sleep. */
static struct spinlock stream_lock =
        SPINLOCK_INIT("heapmap_stream", LOCK_RANK_WAITQ);
static bool stream_stop;

/* Sleeps one period, or less when the stream is stopped meanwhile;
 * returns false when it is. The streamer. */
static bool stream_wait(void)
{
	uint64_t deadline = time_now_ns() + stream_period_ns;
	if (deadline < stream_period_ns)
		deadline = UINT64_MAX;
	unsigned long irq = spin_lock_irqsave(&stream_lock);
	for (;;) {
		uint64_t now = time_now_ns();
		if (stream_stop || now >= deadline)
			break;
		thread_sleep_unlock(&stream_lock, irq, deadline - now);
		irq = spin_lock_irqsave(&stream_lock);
	}
	bool go = !stream_stop;
	spin_unlock_irqrestore(&stream_lock, irq);
	return go;
}

static void stream_main(void *arg)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	const unsigned per_chunk = PALLOC_CHUNK_PAGES / GROUP_PAGES;
	do {
		/* Up to one chunk past the grown ones: the rest is N. */
		size_t n = 0, nchunks = grown_chunks() + 1;
		if (nchunks > HEAPMAP_ROW_CHUNKS)
			nchunks = HEAPMAP_ROW_CHUNKS;
		for (size_t ci = 0; ci < nchunks; ci++) {
			bool grown = mheap_chunk_bits(&kheap, ci, alloc, scav);
			for (unsigned g = 0; g < per_chunk; g++)
				stream_row[n++] =
				        grown ? group_char(alloc, scav,
				                           g * GROUP_PAGES,
				                           GROUP_PAGES)
				              : 'N';
		}
		stream_row[n] = '\0';
		printk("heapmap-row: %llu %s\n",
		       (unsigned long long)((time_now_ns() - stream_t0) /
		                            1000000),
		       stream_row);
	} while (stream_wait());
}

/* Stops the stream and waits for the streamer to leave: at once, not
 * when its period runs out (up to a minute, the shell deaf meanwhile,
 * and Ctrl-C too). The shell thread. */
static void stream_stop_join(void)
{
	unsigned long irq = spin_lock_irqsave(&stream_lock);
	stream_stop = true;
	thread_wake(streamer);
	spin_unlock_irqrestore(&stream_lock, irq);
	thread_join(streamer);
	streamer = THREAD_NONE;
	kfree(stream_row);
}

static enum shell_status stream_start(uint64_t period_ns)
{
	if (thread_handle_ok(streamer)) {
		printk("heapmap: a stream is running (heapmap stream off)\n");
		return SHELL_FAILED;
	}
	const size_t len =
	        HEAPMAP_ROW_CHUNKS * (PALLOC_CHUNK_PAGES / GROUP_PAGES);
	stream_row = kmalloc(len + 1, 0);
	stream_period_ns = period_ns;
	stream_t0 = time_now_ns();
	stream_stop = false; /* no streamer runs */
	streamer = stream_row ? thread_create("heapmap_stream", stream_main,
	                                      NULL, THREAD_ANY_CPU)
	                      : THREAD_NONE;
	if (!thread_handle_ok(streamer)) {
		kfree(stream_row);
		stream_row = NULL; /* no stream: nothing to point at */
		printk("heapmap: cannot start the stream\n");
		return SHELL_FAILED;
	}
	return SHELL_OK;
}

enum shell_status shell_heapmap_stream_ns(uint64_t period_ns)
{
	return stream_start(period_ns);
}

static enum shell_status stream(const char *cmd, const char *arg)
{
	if (strcmp(arg, "off") == 0) {
		if (!thread_handle_ok(streamer)) {
			printk("heapmap: no stream is running\n");
			return SHELL_FAILED;
		}
		stream_stop_join();
		printk("heapmap: stream stopped\n");
		return SHELL_OK;
	}
	uint64_t ms;
	if (!shell_parse_uint(cmd, "MS", arg, 10, 60000, &ms))
		return SHELL_USAGE;
	enum shell_status st = stream_start(ms * 1000000);
	if (st == SHELL_OK)
		printk("heapmap: streaming a row every %llu ms, one character "
		       "per %u pages\n",
		       (unsigned long long)ms, GROUP_PAGES);
	return st;
}

static enum shell_status cmd_heapmap(int argc, char **argv);

void shell_heapmap_boot(void)
{
	char ms[16];
	if (cmdline_get("shell.heapmap", ms, sizeof(ms)))
		stream("shell.heapmap", ms);
}

const struct shell_cmd shell_heapmap_cmds[] = {
        {"heapmap", "[CHUNK | stream MS|off]",
         "the heap arena, per chunk or per page", cmd_heapmap},
        {NULL, NULL, NULL, NULL},
};

static enum shell_status cmd_heapmap(int argc, char **argv)
{
	if (argc == 1)
		return chunk_map();
	bool streaming = strcmp(argv[1], "stream") == 0;
	if (argc == 3 && streaming)
		return stream(argv[0], argv[2]);
	uint64_t ci;
	if (argc != 2 || streaming) /* "stream" without its MS */
		return shell_usage(&shell_heapmap_cmds[0]);
	if (!shell_parse_uint(argv[0], "CHUNK", argv[1], 0,
	                      kheap.arena_pages / PALLOC_CHUNK_PAGES - 1, &ci))
		return SHELL_USAGE;
	return page_map((size_t)ci);
}
