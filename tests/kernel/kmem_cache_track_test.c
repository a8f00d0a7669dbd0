/*
 * A constructor cache's object (slabs of its own, mm/objcache_own.c) as
 * the shell shows it: addrinfo names the cache, the object and its
 * state, and in poison mode (the poison run, mm.debug_poison) the stacks
 * of its last allocation and free, kept in its slab (mm/objcache_track.c);
 * alloctraces CACHE groups the cache's live objects by the stack that
 * allocated them, where until rv115 it refused a cache of no size class.
 * The host's objcache_track tests check the misuse reports.
 */
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
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
	struct objcache *c =
	        kmem_cache_create_flags("ktest-tracked", 72, 0, 0, track_ctor);
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

#endif
