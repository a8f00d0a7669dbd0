/*
 * The shell's commands that look at single objects and what holds them:
 * objwho, poison mode's records of who last allocated and freed an
 * object (mm/spanheap_track.h); addrinfo, what an address is
 * (kernel/addrinfo.h): its region, and in the heap its object and the
 * object's state; alloctraces, poison mode's live objects grouped by the
 * stack that allocated them (spanheap_alloc_traces), for finding a leak;
 * guarded, the guarded pool's live objects; and leaks, the objects
 * nothing points to (kernel/heap_leaks.c, Linux's kmemleak).
 */
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/addrinfo.h"
#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/heap_debug.h"
#include "kernel/printk.h"
#include "kernel/shell_internal.h"
#include "kernel/string.h"
#include "kernel/time.h"

/* ---- objwho: who last allocated and freed an object
 * -------------------------------------------------------------------- */

/* Parses "0x" and 1 to 16 hex digits into *out. */
static bool parse_address(const char *s, uintptr_t *out)
{
	if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !s[2])
		return false;
	uintptr_t v = 0;
	unsigned n = 0;
	for (s += 2; *s; s++, n++) {
		char c = *s;
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
		             : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		             : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
		                                    : 16u;
		if (d == 16 || n == 16)
			return false;
		v = v << 4 | d;
	}
	*out = v;
	return true;
}

/* Prints one record: "  last WHAT on CPU n, T us ago:" and its stack, one
 * return address a line, named. */
static void print_track(const char *what, const struct spanheap_track *t,
                        uint64_t now)
{
	if (t->ns == 0) {
		printk("  never %s since its span was made\n", what);
		return;
	}
	if (t->ns == SPANHEAP_TRACK_CHANGING) {
		printk("  last %s: the record changed while it was read (the "
		       "object is being allocated or freed); try again\n",
		       what);
		return;
	}
	printk("  last %s on CPU %u, %llu us ago:\n", what, t->cpu,
	       (unsigned long long)((now > t->ns ? now - t->ns : 0) / 1000));
	heap_stack_print(t->pc, t->npcs);
}

/* The one ADDR argument of command c (argc, argv as given) into *a;
 * SHELL_OK, or, having said why, SHELL_USAGE. */
static enum shell_status address_arg(const struct shell_cmd *c, int argc,
                                     char **argv, uintptr_t *a)
{
	if (argc != 2)
		return shell_usage(c);
	if (!parse_address(argv[1], a)) {
		printk("%s: ADDR '%s' is not 0x and 1 to 16 hex digits\n",
		       c->name, argv[1]);
		return SHELL_USAGE;
	}
	return SHELL_OK;
}

/* a's records into *at and *ft: 1, 0 if it has none, or -1 after a
 * fault (said). The records are read without a lock: a span freed
 * meanwhile has its side table given back, unmapped at once under
 * mm.debug_pagealloc (PORTING: such readers run under the hook). Its own
 * function, so that nothing of the caller's is live across
 * fault_catch_arm's second return (gcc -O3's -Wclobbered). */
static int objwho_caught(uintptr_t a, struct spanheap_track *at,
                         struct spanheap_track *ft)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) != 0) {
		heap_read_fault_print("objwho", fc.cr2);
		return -1;
	}
	bool found = spanheap_object_tracks(&kspanheap, (void *)a, at, ft);
	fault_catch_disarm(&fc);
	return found;
}

/* objwho ADDR */
static enum shell_status cmd_objwho(int argc, char **argv)
{
	uintptr_t a = 0; /* set when SHELL_OK; gcc -O3 cannot see it */
	enum shell_status st =
	        address_arg(&shell_debug_cmds[0], argc, argv, &a);
	if (st != SHELL_OK)
		return st;
	struct spanheap_track at, ft;
	int found = objwho_caught(a, &at, &ft);
	if (found < 0)
		return SHELL_FAILED;
	if (!found) {
		printk("objwho: no records for %#lx: %s\n", (unsigned long)a,
		       kspanheap.track
		               ? "not in an object the heap keeps records of"
		               : "the heap keeps none (boot with "
		                 "mm.debug_poison)");
		return SHELL_FAILED;
	}
	printk("object at %#lx:\n", (unsigned long)a);
	uint64_t now = time_now_ns();
	print_track("allocated", &at, now);
	print_track("freed", &ft, now);
	return SHELL_OK;
}

/* addrinfo ADDR */
static enum shell_status cmd_addrinfo(int argc, char **argv)
{
	uintptr_t a = 0; /* set when SHELL_OK; gcc -O3 cannot see it */
	enum shell_status st =
	        address_arg(&shell_debug_cmds[1], argc, argv, &a);
	if (st != SHELL_OK)
		return st;
	return addrinfo_print_caught("", "address", a) ? SHELL_OK
	                                               : SHELL_FAILED;
}

/* The shell thread's own, as snap: 32 stacks of 100 bytes. */
static struct spanheap_trace traces[32];

/* alloctraces' argument: a size class, or a named cache, whose class
 * into *cls, and name and owner into *cache and *owner. False, having
 * said why, if neither. */
static bool traces_class(const char *arg, uint64_t *cls, const char **cache,
                         uint32_t *owner)
{
	if (arg[0] >= '0' && arg[0] <= '9')
		return shell_parse_uint("alloctraces", "CLASS", arg, 1,
		                        SC_NCLASSES - 1, cls);
	size_t n = objcache_list(&kspanheap, shell_caches, OBJCACHE_MAX);
	for (size_t i = 0; i < n && i < OBJCACHE_MAX; i++) {
		if (strcmp(shell_caches[i].name, arg))
			continue;
		/* Slabs of its own keep their objects' records; a merged
		 * cache's large objects have none. */
		if (!shell_caches[i].sizeclass && !shell_caches[i].slab_pages) {
			printk("alloctraces: cache '%s' has large objects, of "
			       "which the heap keeps no records\n",
			       arg);
			return false;
		}
		*cls = shell_caches[i].sizeclass;
		*cache = arg;
		*owner = shell_caches[i].owner;
		return true;
	}
	printk("alloctraces: '%s' is neither a size class nor a named "
	       "cache\n",
	       arg);
	return false;
}

/* alloctraces [CLASS|CACHE] */
static enum shell_status cmd_alloctraces(int argc, char **argv)
{
	uint64_t cls = 0;
	const char *cache = NULL;
	uint32_t owner = SPANHEAP_OWNER_ANY;
	if (argc > 2)
		return shell_usage(&shell_debug_cmds[2]); /* its own entry */
	if (argc == 2 && !traces_class(argv[1], &cls, &cache, &owner))
		return SHELL_USAGE;
	if (!kspanheap.track) {
		printk("alloctraces: the heap keeps no records (boot with "
		       "mm.debug_poison)\n");
		return SHELL_FAILED;
	}
	if (cache && !cls)
		printk("cache '%s' (slabs of its own): ", cache);
	else if (cache)
		printk("cache '%s' (size class %llu): ", cache,
		       (unsigned long long)cls);
	else if (cls)
		printk("size class %llu: ", (unsigned long long)cls);
	printk("live objects by the stack that allocated them, most first:\n");
	return heap_traces_print("alloctraces", (unsigned)cls, owner, traces,
	                         32)
	               ? SHELL_OK
	               : SHELL_FAILED;
}

/* guarded */
static enum shell_status cmd_guarded(int argc, char **argv)
{
	return heap_guard_print() ? SHELL_OK : SHELL_FAILED;
}

/* leaks [SECONDS]: objects younger than SECONDS (5 by default, as
 * kmemleak's) are not judged: their pointers may be in flight. */
static enum shell_status cmd_leaks(int argc, char **argv)
{
	uint64_t secs = 5;
	if (argc > 2)
		return shell_usage(&shell_debug_cmds[4]); /* its own entry */
	if (argc == 2 &&
	    !shell_parse_uint("leaks", "SECONDS", argv[1], 0, 86400, &secs))
		return SHELL_USAGE;
	return heap_leaks_report(secs * 1000000000ull) ? SHELL_OK
	                                               : SHELL_FAILED;
}

const struct shell_cmd shell_debug_cmds[] = {
        {"objwho", "ADDR",
         "who last allocated and freed the object at ADDR (mm.debug_poison)",
         cmd_objwho},
        {"addrinfo", "ADDR",
         "what ADDR is: its region, and in the heap its object and state",
         cmd_addrinfo},
        {"alloctraces", "[CLASS|CACHE]",
         "live objects by the stack that allocated them (mm.debug_poison)",
         cmd_alloctraces},
        {"guarded", "",
         "the guarded pool's live objects and their stacks (mm.guard)",
         cmd_guarded},
        {"leaks", "[SECONDS]",
         "objects nothing points to, older than SECONDS (default 5; "
         "mm.debug_poison)",
         cmd_leaks},
        {NULL, NULL, NULL, NULL},
};
