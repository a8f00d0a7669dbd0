/*
 * The shell's `heapmap` against the heap's own bitmaps: each chunk's
 * letter is the state most of its pages are in (U in use, F free backed,
 * S scavenged), in capitals only when all of them are, and N past the
 * chunks grown.
 */
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

/* The letter heapmap must show for b; 0 when two states tie for the
 * most pages (which one wins is not promised). */
static char want_char(const struct chunk_bits *b)
{
	unsigned used = 0, scav = 0, backed = 0;
	if (!b->grown)
		return 'N';
	for (unsigned p = 0; p < PALLOC_CHUNK_PAGES; p++) {
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
	return most == PALLOC_CHUNK_PAGES ? c : (char)(c - 'A' + 'a');
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
#endif
