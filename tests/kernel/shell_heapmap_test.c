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

/* Every free page of a chunk shows S when scavenged, F when backed: the
 * pages of a run just freed (backed) beside the rest of the chunk
 * (scavenged by a release). The background scavenger may take the run's
 * pages back under the map: each try frees a run anew, and a try whose
 * bitmaps changed is not judged. */
KTEST(shell_heapmap, page_letters_of_free_pages)
{
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
