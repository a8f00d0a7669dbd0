/*
 * Poison mode's records of an own-slab cache's objects (mm/objcache_track.c)
 * read with no lock while the slab read is freed and its pages written
 * over, the window held open by a test hook (MHEAP_HOOK_OWN_SLAB_READ):
 * between the reader's check of the slab and its reads of the objects'
 * state and records, the object is freed, its slab given back (the
 * cache's only object, then a shrink) and the slab's pages taken by a
 * large object filled with 0xa5 (the heap's next large objects of the
 * slab's size until one lands there), as a kmem_cache_destroy and the next
 * allocation would leave them. The reader must follow no pointer of the
 * old header (it read 0xa5a5... for the cache and faulted before): the
 * records read as changing, the description says the slab was being
 * freed, the traces count nothing, and nothing of the garbage is said.
 * In the kernel such reads run under the fault hook too (the shell's
 * objwho, addrinfo, alloctraces); the host has no such hook, and its
 * freed pages stay mapped (no debug mode here).
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/objcache_own.h"
#include "mm_port_posix.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static struct objcache *cache; /* one 20000-byte object a slab, no stash */
static void *victim;           /* its one object, freed in the window */
static void *over;             /* the large object over its slab's pages */
static uintptr_t slab_base;
enum { EXTRA = 16 };
static void *extra[EXTRA]; /* those that took other pages */
static unsigned nextra;
static unsigned windows;

static void ctor(void *p)
{
	memset(p, 0x3c, 16);
}

/* In the window: the victim freed, its slab given back and written
 * over. Once a reader's call. */
static void free_in_window(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where != MHEAP_HOOK_OWN_SLAB_READ || over)
		return;
	windows++;
	size_t bytes = (size_t)cache->own->npages * MM_PAGE_SIZE;
	objcache_free(cache, victim);
	objcache_shrink(cache);
	/* Large objects of the slab's size until one takes its pages. */
	for (nextra = 0; nextra < EXTRA; nextra++) {
		void *p = spanheap_alloc(&sh, bytes - 64, 0);
		if (!p || (uintptr_t)p == slab_base) {
			over = p;
			break;
		}
		extra[nextra] = p;
	}
	if (over)
		memset(over, 0xa5, bytes - 64);
}

/* A fresh victim, and the window armed for the next reader. */
static bool victim_ready(void)
{
	over = NULL;
	victim = objcache_alloc(cache, 0);
	if (!victim)
		return false;
	slab_base = (uintptr_t)victim - cache->own->first;
	mheap_test_hook = free_in_window;
	return true;
}

/* The window was taken, and the victim's slab header holds the 0xa5s
 * where its cache pointer was: what an unchecked reader would follow. */
static bool window_scribbled(void)
{
	mheap_test_hook = NULL;
	uint64_t cache_field;
	memcpy(&cache_field,
	       (char *)slab_base + offsetof(struct objslab, cache),
	       sizeof(cache_field));
	return over && cache_field == 0xa5a5a5a5a5a5a5a5ull;
}

static void window_done(void)
{
	spanheap_free(&sh, over);
	over = NULL;
	while (nextra)
		spanheap_free(&sh, extra[--nextra]);
}

static char log[4096];

KTEST(objcache_track_race, readers_of_a_slab_freed_meanwhile_follow_nothing)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(cache = objcache_create_flags(&sh, "race", 20000, 0, 0, ctor));
	KASSERT(cache->own->recs && cache->own->stash_max == 0);
	struct objcache_info in;
	objcache_info(cache, &in);
	windows = 0;

	/* objwho: both records changing, nothing of the garbage. */
	KASSERT(victim_ready());
	struct spanheap_track a, f;
	bool got = spanheap_object_tracks(&sh, victim, &a, &f);
	KEXPECT(window_scribbled());
	KEXPECT(!got || (a.ns == SPANHEAP_TRACK_CHANGING &&
	                 f.ns == SPANHEAP_TRACK_CHANGING));
	window_done();

	/* addrinfo: the slab being freed, no record said. */
	KASSERT(victim_ready());
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, victim);
	mm_port_log_capture(NULL, 0);
	KEXPECT(window_scribbled());
	KEXPECT(!strstr(log, "objcache: ") ||
	        strstr(log, "being made or freed"));
	KEXPECT(!strstr(log, "last allocated") && !strstr(log, "last freed"));
	window_done();

	/* alloctraces CACHE: nothing counted, the slab being gone. */
	KASSERT(victim_ready());
	struct spanheap_trace t[4];
	size_t rest = 0;
	size_t n = spanheap_alloc_traces_owned(&sh, 0, in.owner, t, 4, &rest);
	KEXPECT(window_scribbled());
	KEXPECT_EQ(n + rest, 0u);
	window_done();

	KEXPECT_EQ(windows, 3u);
	KEXPECT(objcache_own_check(cache));
	KEXPECT(objcache_destroy(cache));
	spanheap_check(&sh);
	sh_heap_release(&heap, &sh);
}
