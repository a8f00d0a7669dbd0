/*
 * The shell's `heapmap` against the heap's own bitmaps: each chunk's
 * letter is the state most of its pages are in (U in use, F free backed,
 * S scavenged), in capitals only when all of them are, and N past the
 * chunks grown; and `heapmap CHUNK`'s letter for each page: its owner
 * (O/o a span of small objects, L/l a large object, capital on a span's
 * first page, P a page-heap run) or its free state.
 */
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "tests/kernel/capture_util.h"

#if KTEST_HOOKS
#define ROW 64

/* Each chunk's bitmaps, before and after the command (static: 2 x 64
 * chunks of 2 x 64 words are too big for a stack). */
struct chunk_bits {
	bool grown;
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
};
static struct chunk_bits before[ROW], after[ROW];

static void read_bits(struct chunk_bits *b)
{
	for (size_t i = 0; i < ROW; i++)
		b[i].grown = mheap_chunk_bits(&kheap, i, b[i].alloc, b[i].scav);
}

/* The letter heapmap must show for pages [first, first + n) of b; 0
 * when two states tie for the most pages (which one wins is not
 * promised). */
static char want_group(const struct chunk_bits *b, unsigned first, unsigned n)
{
	unsigned used = 0, scav = 0, backed = 0;
	if (!b->grown)
		return 'N';
	for (unsigned p = first; p < first + n; p++) {
		bool a = b->alloc[p / 64] >> (p % 64) & 1;
		bool s = b->scav[p / 64] >> (p % 64) & 1;
		used += a;
		scav += !a && s;
		backed += !a && !s;
	}
	unsigned most = used > scav ? used : scav;
	most = most > backed ? most : backed;
	if ((most == used) + (most == scav) + (most == backed) > 1)
		return 0;
	char c = most == used ? 'U' : most == scav ? 'S' : 'F';
	return most == n ? c : (char)(c - 'A' + 'a');
}

static char want_char(const struct chunk_bits *b)
{
	return want_group(b, 0, PALLOC_CHUNK_PAGES);
}

KTEST(shell_heapmap, chunk_letters_are_the_chunks_states)
{
	bool checked = false;
	for (int tries = 0; tries < 5 && !checked; tries++) {
		read_bits(before);
		capture_start();
		enum shell_status st = shell_run_line("heapmap");
		capture_stop();
		read_bits(after);
		KEXPECT_EQ(st, SHELL_OK);
		if (memcmp(before, after, sizeof(before)) != 0)
			continue;
		checked = true;
		const char *row = strstr(seen, "  chunk     0  ");
		KASSERT(row != NULL);
		row += strlen("  chunk     0  ");
		KASSERT(strlen(row) >= ROW);
		for (size_t i = 0; i < ROW; i++) {
			char want = want_char(&before[i]);
			if (want && row[i] != want)
				ktest_diag("chunk %zu: '%c', not '%c'", i,
				           row[i], want);
			KEXPECT(!want || row[i] == want);
		}
	}
	if (!checked)
		ktest_skip("the heap changed under every try");
}

/* The stream's row ("heapmap-row: MS CHARS"): a letter per 64 pages from
 * the arena's base to one chunk past the grown ones, each the state most
 * of its pages are in. The streamer prints its first row before it looks
 * at the stop, so a stream stopped at once has printed one. */
KTEST(shell_heapmap, stream_row_letters_are_the_groups_states)
{
	const unsigned per_chunk = PALLOC_CHUNK_PAGES / 64;
	bool checked = false;
	for (int tries = 0; tries < 5 && !checked; tries++) {
		read_bits(before);
		capture_start_any(); /* the row is the streamer thread's */
		KEXPECT_EQ(shell_heapmap_stream_ns(UINT64_MAX), SHELL_OK);
		KEXPECT_EQ(shell_run_line("heapmap stream off"), SHELL_OK);
		capture_stop();
		read_bits(after);
		if (memcmp(before, after, sizeof(before)) != 0)
			continue;
		checked = true;
		const char *row = strstr(seen, "heapmap-row: ");
		KASSERT(row != NULL);
		row += strlen("heapmap-row: ");
		while (*row && *row != ' ') /* the milliseconds */
			row++;
		KASSERT(*row == ' ');
		row++;
		size_t grown = 0;
		while (grown < ROW && before[grown].grown)
			grown++;
		KASSERT(grown < ROW);
		size_t len = 0;
		while (row[len] && row[len] != '\r' && row[len] != '\n')
			len++;
		KEXPECT_EQ(len, (grown + 1) * per_chunk);
		for (size_t i = 0; i < len && i < (grown + 1) * per_chunk;
		     i++) {
			const struct chunk_bits *b = &before[i / per_chunk];
			char want = want_group(b, i % per_chunk * 64, 64);
			if (want && row[i] != want)
				ktest_diag("group %zu: '%c', not '%c'", i,
				           row[i], want);
			KEXPECT(!want || row[i] == want);
		}
	}
	if (!checked)
		ktest_skip("the heap changed under every try");
}

/* The letter the captured `heapmap CHUNK` shows for page p of its chunk;
 * 0 if its row is not there. */
static char page_letter(size_t p)
{
	char label[24];
	ksnprintf(label, sizeof(label), "  page %3zu  ", p / ROW * ROW);
	const char *row = strstr(seen, label);
	if (row == NULL || strlen(row) < strlen(label) + ROW)
		return 0;
	return row[strlen(label) + p % ROW];
}

static size_t chunk_of(uintptr_t addr)
{
	return (addr - kheap.arena_base) / PALLOC_CHUNK_BYTES;
}

static enum shell_status heapmap_chunk(size_t ci)
{
	char cmd[32];
	ksnprintf(cmd, sizeof(cmd), "heapmap %zu", ci);
	capture_start();
	enum shell_status st = shell_run_line(cmd);
	capture_stop();
	return st;
}

/* Pages [base, base + npages) (those in base's chunk): first on the
 * first page, rest on the others. */
static void expect_owner(uintptr_t base, size_t npages, char first, char rest)
{
	size_t ci = chunk_of(base);
	KEXPECT_EQ(heapmap_chunk(ci), SHELL_OK);
	for (size_t i = 0; i < npages; i++) {
		uintptr_t a = base + i * MM_PAGE_SIZE;
		if (chunk_of(a) != ci)
			break;
		size_t p = (a - kheap.arena_base) % PALLOC_CHUNK_BYTES /
		           MM_PAGE_SIZE;
		char want = i ? rest : first, got = page_letter(p);
		if (got != want)
			ktest_diag("chunk %zu page %zu: '%c', not '%c'", ci, p,
			           got ? got : '0', want);
		KEXPECT_EQ(got, want);
	}
}

KTEST(shell_heapmap, page_letters_name_each_pages_owner)
{
	void *run = mheap_alloc_pages(&kheap, 8, 0);
	void *large = kmalloc(64 << 10, 0);
	void *small = kmalloc(20000, 0);
	KASSERT(run != NULL && large != NULL && small != NULL);
	const struct mspan *ls = mheap_span_lookup(&kheap, (uintptr_t)large);
	const struct mspan *ss = mheap_span_lookup(&kheap, (uintptr_t)small);
	KASSERT(mheap_span_is_span(ls) && mheap_span_is_span(ss));
	KASSERT(ls->npages > 1 && ss->npages > 1);
	expect_owner((uintptr_t)run, 8, 'P', 'P');
	expect_owner(ls->base, ls->npages, 'L', 'l');
	expect_owner(ss->base, ss->npages, 'O', 'o');
	kfree(small);
	kfree(large);
	mheap_free_pages(&kheap, run, 8);
}

/* The background colour a letter must have on a terminal: red in use
 * (any owner), yellow free backed, blue scavenged, grey not grown. */
static const char *want_colour(char c)
{
	switch (c) {
	case 'F':
	case 'f':
		return "43";
	case 'S':
	case 's':
		return "44";
	case 'N':
		return "100";
	default:
		return "41";
	}
}

/* Counts the letters of the captured rows (after labels of label_len
 * bytes that start with label) whose colour, set by the last
 * "ESC [30;<colour>m" before them, is not the letter's; adds the letters
 * to *letters and the F's among them to *backed. */
static unsigned wrong_colours(const char *label, size_t label_len,
                              unsigned *letters, unsigned *backed)
{
	unsigned bad = 0;
	for (const char *p = seen; (p = strstr(p, label)) != NULL;) {
		char colour[8] = "";
		p += label_len;
		while (*p && *p != '\n' && strncmp(p, "\x1b[0m", 4) != 0) {
			if (strncmp(p, "\x1b[30;", 5) == 0) {
				size_t n = 0;
				for (p += 5; *p && *p != 'm' && n < 7; p++)
					colour[n++] = *p;
				colour[n] = '\0';
				if (*p == 'm')
					p++;
				continue;
			}
			if (strcmp(colour, want_colour(*p)) != 0 && bad++ < 3)
				ktest_diag("'%c' coloured '%s', not '%s'", *p,
				           colour, want_colour(*p));
			(*letters)++;
			*backed += *p == 'F';
			p++;
		}
	}
	return bad;
}

/* mm.debug_pagealloc gives back each page as it is freed: no free page
 * is ever backed ('F'), and the tests that look for one say why. */
#define NO_BACKED_FREE_PAGE                                                \
	"mm.debug_pagealloc scavenges every page as it is freed: no free " \
	"page is backed"

static bool scav_on_free(void)
{
	return kheap.cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE;
}

/* On a terminal each letter of both maps gets its state's colour. The
 * page map is looked at until it shows free backed pages (a run freed
 * just before each look, unless the scavenger took it back meanwhile). */
KTEST(shell_heapmap, colours_follow_the_letters)
{
	unsigned letters = 0, backed = 0;
	shell_testing_set_tty(true);
	for (int tries = 0; tries < 20 && !backed; tries++) {
		void *freed = mheap_alloc_pages(&kheap, 8, 0);
		KASSERT(freed != NULL);
		mheap_free_pages(&kheap, freed, 8);
		letters = 0;
		KEXPECT_EQ(heapmap_chunk(chunk_of((uintptr_t)freed)), SHELL_OK);
		KEXPECT_EQ(wrong_colours("  page ", 12, &letters, &backed), 0);
		KEXPECT_EQ(letters, PALLOC_CHUNK_PAGES);
	}
	letters = 0;
	unsigned chunk_backed = 0;
	capture_start();
	KEXPECT_EQ(shell_run_line("heapmap"), SHELL_OK);
	capture_stop();
	shell_testing_set_tty(false);
	KEXPECT_EQ(wrong_colours("  chunk ", 15, &letters, &chunk_backed), 0);
	KEXPECT(letters >= ROW);
	if (!backed)
		ktest_skip(scav_on_free()
		                   ? NO_BACKED_FREE_PAGE
		                   : "no look showed a free backed page");
}

/* Every free page of a chunk shows S when scavenged, F when backed: the
 * pages of a run just freed (backed) beside the rest of the chunk
 * (scavenged by a release). The background scavenger may take the run's
 * pages back under the map: each try frees a run anew, and a try whose
 * bitmaps changed is not judged. */
KTEST(shell_heapmap, page_letters_of_free_pages)
{
	if (scav_on_free())
		KTEST_SKIP(NO_BACKED_FREE_PAGE);
	mheap_release_all(&kheap);
	bool checked = false;
	for (int tries = 0; tries < 20 && !checked; tries++) {
		void *run = mheap_alloc_pages(&kheap, 8, 0);
		KASSERT(run != NULL);
		size_t ci = chunk_of((uintptr_t)run);
		KASSERT(ci < ROW);
		mheap_free_pages(&kheap, run, 8);
		read_bits(before);
		KEXPECT_EQ(heapmap_chunk(ci), SHELL_OK);
		read_bits(after);
		if (memcmp(&before[ci], &after[ci], sizeof(before[ci])) != 0)
			continue;
		unsigned nfree = 0, nscav = 0;
		for (size_t p = 0; p < PALLOC_CHUNK_PAGES; p++) {
			const struct chunk_bits *b = &before[ci];
			if (b->alloc[p / 64] >> (p % 64) & 1)
				continue;
			bool s = b->scav[p / 64] >> (p % 64) & 1;
			char want = s ? 'S' : 'F', got = page_letter(p);
			nscav += s;
			nfree += !s;
			if (got != want)
				ktest_diag("page %zu: '%c', not '%c'", p,
				           got ? got : '0', want);
			KEXPECT_EQ(got, want);
		}
		checked = nfree > 0 && nscav > 0;
	}
	if (!checked)
		ktest_skip("no try saw free backed and scavenged pages still");
}
#endif
