/*
 * A constructor cache's object (slabs of its own, mm/objcache_own.c) as
 * the shell shows it: addrinfo names the cache, the object and its
 * state, and in poison mode (the poison run, mm.debug_poison) the stacks
 * of its last allocation and free, kept in its slab (mm/objcache_track.c);
 * alloctraces CACHE groups the cache's live objects by the stack that
 * allocated them, where until rv115 it refused a cache of no size class.
 * A refused kmem_cache_destroy lists such a cache's live objects by
 * stack, and mm.kasan's report of a use after free of one (the poison
 * run's KASAN image; kasan_expect with say prints it but for the panic)
 * names its cache, state and records. The shell's lock-free readers
 * racing the destroy of the cache they read (its slab freed in the
 * window between their check of it and their reads, a test hook) end
 * with a line, nothing followed into the freed slab (or a fault the
 * shell's hook caught). The host's objcache_track tests check the
 * misuse reports.
 */
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "mm/mheap_testing.h"
#include "tests/kernel/capture_util.h"

#if KTEST_HOOKS

static void track_ctor(void *p)
{
	*(uint64_t *)p = 0x7ac4;
}

/* Out of line, so that their return addresses are on the stacks. */
__attribute__((noinline)) static void *own_alloc_here(struct objcache *c)
{
	void *p = kmem_cache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

__attribute__((noinline)) static void own_free_here(struct objcache *c, void *p)
{
	kmem_cache_free(c, p);
	__asm__ volatile("" ::: "memory");
}

/* "addrinfo ADDR" at the shell, captured; its status. */
static enum shell_status addrinfo_of(const void *p)
{
	char line[40];
	ksnprintf(line, sizeof(line), "addrinfo %#lx", (unsigned long)p);
	return capture_run_line(line);
}

KTEST(kmem_cache_track, addrinfo_and_alloctraces_show_a_ctor_caches_object)
{
	struct objcache *c = kmem_cache_create_flags(
	        "ktest-tracked", 72, 0, SLAB_SKIP_KFENCE, track_ctor);
	KASSERT(c);
	void *p[3];
	/* One call site, one stack: clang -O2 would unroll it. */
#pragma GCC unroll 1
	for (int i = 0; i < 3; i++)
		KASSERT((p[i] = own_alloc_here(c)) != NULL);
	own_free_here(c, p[2]);
	KEXPECT_EQ(addrinfo_of((char *)p[0] + 4), SHELL_OK);
	KEXPECT(seen_has(": 4 bytes into object "));
	KEXPECT(seen_has("(allocated) of cache 'ktest-tracked''s slab"));
	KEXPECT_EQ(addrinfo_of(p[2]), SHELL_OK);
	KEXPECT(seen_has(
	        "(free, in a CPU's stash) of cache 'ktest-tracked''s"));
	if (kspanheap.track) {
		char want[96];
		ksnprintf(want, sizeof(want), "object %#lx: last freed on CPU",
		          (unsigned long)p[2]);
		KEXPECT(seen_has(want));
		KEXPECT(seen_has("own_free_here+0x"));
		KEXPECT(seen_has("own_alloc_here+0x"));
		KEXPECT_EQ(capture_run_line("alloctraces ktest-tracked"),
		           SHELL_OK);
		KEXPECT(seen_has("cache 'ktest-tracked' (slabs of its own)"));
		KEXPECT(seen_has("\n2 objects, 144 bytes, the oldest "));
		KEXPECT(seen_has(" own_alloc_here+0x"));
	} else {
		KEXPECT(!strstr(seen, "last freed on CPU")); /* no records */
	}
	own_free_here(c, p[0]);
	own_free_here(c, p[1]);
	KEXPECT(kmem_cache_destroy(c));
}

KTEST(kmem_cache_track, a_refused_destroy_lists_a_ctor_caches_objects)
{
	struct objcache *c =
	        kmem_cache_create_flags("ktest-left", 72, 0, 0, track_ctor);
	KASSERT(c);
	void *p[3];
#pragma GCC unroll 1
	for (int i = 0; i < 3; i++)
		KASSERT((p[i] = own_alloc_here(c)) != NULL);
	capture_start();
	bool gone = kmem_cache_destroy(c);
	capture_stop();
	KEXPECT(!gone);
	KEXPECT(seen_has("objcache: cache 'ktest-left' not destroyed: objects "
	                 "of it still allocated: 3"));
	KEXPECT_EQ(seen_has("cache 'ktest-left''s live objects by the stack "
	                    "that allocated them"),
	           kspanheap.track);
	if (kspanheap.track) {
		KEXPECT(seen_has("\n3 objects, 216 bytes, the oldest "));
		KEXPECT(seen_has(" own_alloc_here+0x"));
	}
	for (int i = 0; i < 3; i++)
		own_free_here(c, p[i]);
	KEXPECT(kmem_cache_destroy(c));
}

KTEST(kmem_cache_track, kasans_use_after_free_report_names_the_records)
{
	if (!kasan_enabled())
		KTEST_SKIP("no mm.kasan");
	struct objcache *c = kmem_cache_create_flags(
	        "ktest-kasan", 72, 0, SLAB_SKIP_KFENCE, track_ctor);
	KASSERT(c);
	uint8_t *p = own_alloc_here(c), *q = own_alloc_here(c);
	KASSERT(p && q);
	own_free_here(c, p);
	struct kasan_seen ks = {.say = true};
	capture_start();
	kasan_expect(&ks);
	(void)((volatile uint8_t *)p)[40]; /* instrumented: the KASAN image */
	kasan_expect(NULL);
	capture_stop();
	KEXPECT_EQ(ks.reports, 1u);
	KEXPECT(ks.kind && !strcmp(ks.kind, "use-after-free"));
	KEXPECT(seen_has("KASAN: use-after-free READ of size 1 at "));
	KEXPECT(seen_has(": 40 bytes into object "));
	KEXPECT(seen_has("(free, in a CPU's stash) of cache 'ktest-kasan''s "
	                 "slab"));
	char want[96];
	ksnprintf(want, sizeof(want), "object %#lx: last freed on CPU",
	          (unsigned long)p);
	KEXPECT(seen_has(want)); /* the KASAN image boots in poison mode */
	KEXPECT(seen_has("own_free_here+0x"));
	KEXPECT(seen_has("own_alloc_here+0x"));
	own_free_here(c, q);
	KEXPECT(kmem_cache_destroy(c));
}

/* The race: in the window of a lock-free reader of an own slab, the
 * victim freed and its cache destroyed (its slab back to the heap). */
static struct objcache *_Atomic race_cache;
static void *race_victim;

static void destroy_in_window(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where != MHEAP_HOOK_OWN_SLAB_READ)
		return;
	struct objcache *c = atomic_exchange(&race_cache, NULL);
	if (!c)
		return;
	own_free_here(c, race_victim);
	kmem_cache_destroy(c);
}

/* Runs shell line cmd (%#lx: the victim) with the victim's cache to be
 * destroyed in its reader's window: the command ends with its line, the
 * cache destroyed, no record said. */
static void expect_race_ends(const char *cmd, bool by_name)
{
	struct objcache *c = kmem_cache_create_flags(
	        "ktest-race", 72, 0, SLAB_SKIP_KFENCE, track_ctor);
	KASSERT(c);
	KASSERT((race_victim = own_alloc_here(c)) != NULL);
	char line[48];
	if (by_name)
		ksnprintf(line, sizeof(line), "%s", cmd);
	else
		ksnprintf(line, sizeof(line), cmd, (unsigned long)race_victim);
	atomic_store(&race_cache, c);
	mheap_test_hook = destroy_in_window;
	enum shell_status st = capture_run_line(line);
	mheap_test_hook = NULL;
	KEXPECT_EQ(st, SHELL_OK);
	KEXPECT(atomic_load(&race_cache) == NULL); /* the window was taken */
	KEXPECT(!strstr(seen, "last allocated on CPU"));
	KEXPECT(!strstr(seen, "bytes into object"));
	if (atomic_exchange(&race_cache, NULL) == c) { /* never reached */
		own_free_here(c, race_victim);
		kmem_cache_destroy(c);
	}
}

KTEST(kmem_cache_track, readers_racing_a_destroy_end_with_a_line)
{
	expect_race_ends("addrinfo %#lx", false);
	KEXPECT(seen_has("being made or freed") ||
	        seen_has("while reading the heap"));
	if (!kspanheap.track)
		return; /* objwho and alloctraces: poison mode's */
	expect_race_ends("objwho %#lx", false);
	KEXPECT(seen_has("the record changed while it was read") ||
	        seen_has("while reading the heap"));
	expect_race_ends("alloctraces ktest-race", true);
	KEXPECT(seen_has("none") || seen_has("while reading the heap"));
}

#endif
