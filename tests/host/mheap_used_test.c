/*
 * What the page heap asks its port to make usable again (mm_port_used)
 * when a run it hands out is only partly scavenged: the stretch from its
 * first scavenged page to its last, not the whole run. The kernel's port
 * walks every page of the range it is given twice (a page-table lookup
 * per page to count the holes, then to fill them), the cost
 * golang/go#36603 measured for Go's sysUsed on a large span with a few
 * scavenged pages. Counted with the POSIX port's mm_port_used_bytes.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;

/*
 * A fresh heap whose lowest n pages are free and backed (written 0xab)
 * but pages scav[0..nscav), which are scavenged; the pages above them
 * are scavenged too, past a page kept allocated (*wall). Returns the run's
 * base, or NULL.
 */
static char *run_with_scavenged(size_t n, const size_t *scav, size_t nscav,
                                char **wall)
{
	if (!mh_new(&heap, 64, 0, 0))
		return NULL;
	char *x = mheap_alloc_pages(&heap, n, 0);
	*wall = mheap_alloc_pages(&heap, 1, 0);
	if (!x || *wall != x + n * PG)
		return NULL;
	memset(x, 0xab, n * PG);
	for (size_t i = 0; i < nscav; i++)
		mheap_free_pages(&heap, x + scav[i] * PG, 1);
	mheap_release_all(&heap);
	for (size_t i = 0, k = 0; i < n; i++) {
		if (k < nscav && scav[k] == i)
			k++;
		else
			mheap_free_pages(&heap, x + i * PG, 1);
	}
	return x;
}

/* Allocates the n-page run at x again; the bytes mm_port_used was asked
 * for meanwhile. */
static size_t used_for_alloc(char *x, size_t n)
{
	size_t before = mm_port_used_bytes();
	char *y = mheap_alloc_pages(&heap, n, 0);
	size_t used = mm_port_used_bytes() - before;
	KEXPECT_EQ(y, x);
	return used;
}

/*
 * Runs of 512 pages (palloc's backed runs) and of 64 (its mask) with one
 * scavenged page: the port is asked for that page. Until review rv76 it
 * was asked for the whole run (512 and 64 pages), which the kernel's port
 * walked twice to find the one page to map.
 */
KTEST(mheap_used, a_run_with_one_scavenged_page_asks_for_that_page)
{
	static const struct {
		size_t n, scav;
	} cases[] = {{512, 300}, {64, 40}, {512, 0}, {64, 63}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		char *wall = NULL;
		char *x = run_with_scavenged(cases[c].n, &cases[c].scav, 1,
		                             &wall);
		KASSERT(x != NULL);
		size_t used = used_for_alloc(x, cases[c].n);
		ktest_diag("%zu-page run, page %zu scavenged: %zu pages asked",
		           cases[c].n, cases[c].scav, used / PG);
		KEXPECT_EQ(used, PG);
		char *s = x + cases[c].scav * PG;
		KEXPECT(mh_all_bytes(s, PG, 0)); /* mapped, reads zero */
		s[0] = 1;
		KEXPECT(mh_all_bytes(x + (cases[c].scav ? 0 : PG), PG, 0xab));
		MH_CHECK(&heap, "after the alloc");
		mh_release(&heap);
	}
}

/* Two scavenged pages far apart: the stretch between them, both ends
 * included (the backed pages inside keep their bytes). */
KTEST(mheap_used, the_stretch_asked_holds_every_scavenged_page)
{
	static const size_t scav[] = {10, 400};
	char *wall = NULL;
	char *x = run_with_scavenged(512, scav, 2, &wall);
	KASSERT(x != NULL);
	KEXPECT_EQ(used_for_alloc(x, 512), 391 * PG);
	KEXPECT(mh_all_bytes(x + 10 * PG, PG, 0));
	KEXPECT(mh_all_bytes(x + 400 * PG, PG, 0));
	KEXPECT(mh_all_bytes(x + 11 * PG, 389 * PG, 0xab));
	x[10 * PG] = x[400 * PG] = 1;
	MH_CHECK(&heap, "after the alloc");
	mh_release(&heap);
}

/* An extension over pages of which one was scavenged asks for that one. */
KTEST(mheap_used, an_extension_asks_for_its_scavenged_pages_only)
{
	static const size_t scav[] = {200};
	char *wall = NULL;
	char *x = run_with_scavenged(512, scav, 1, &wall);
	KASSERT(x != NULL);
	char *y = mheap_alloc_pages(&heap, 1, 0);
	KASSERT_EQ(y, x);
	size_t before = mm_port_used_bytes();
	KASSERT(mheap_extend_pages(&heap, x, 1, 511, 0));
	KEXPECT_EQ(mm_port_used_bytes() - before, PG);
	KEXPECT(mh_all_bytes(x + 200 * PG, PG, 0));
	x[200 * PG] = 1;
	MH_CHECK(&heap, "after the extension");
	mh_release(&heap);
}
