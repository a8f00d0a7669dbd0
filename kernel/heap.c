/*
 * The kernel's heaps (see heap.h): configuration from the frame pool's
 * size and the command line, the span heap over the page heap, their
 * background threads, flushing every CPU's span cache, the memory dump,
 * and allocation-failure injection's switch (mm.fail, heap_fail_parse).
 */
#include "kernel/heap.h"

#include <stdatomic.h>

#include "kernel/bootinfo.h"
#include "kernel/frames.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/string.h"
#include "kernel/thread.h"

struct mheap kheap;
struct spanheap kspanheap;

/* "key=N" from the command line if present and within [lo, hi]; else
 * def (cmdline_get_uint names a refused value). */
static unsigned cmdline_uint(const char *key, unsigned def, unsigned lo,
                             unsigned hi)
{
	uint64_t v = def;
	cmdline_get_uint(key, lo, hi, &v);
	return (unsigned)v;
}

/* The section mm_rseq (linker.ld): one range per inlined sequence. */
extern struct mm_rseq_range __start_mm_rseq[], __stop_mm_rseq[];

void heap_rseq_init(void)
{
	mm_rseq_init(__start_mm_rseq, __stop_mm_rseq);
	printk("heap: %zu restartable sequences\n",
	       (size_t)(__stop_mm_rseq - __start_mm_rseq));
}

/* Field name of mm.fail's value, len bytes at f: a decimal number in
 * [0, hi] into *out; false, naming who, the field and the value, if it
 * is not one. */
static bool fail_number(const char *who, const char *name, const char *f,
                        size_t len, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;
	bool bad = len == 0 || len > 20;
	for (size_t i = 0; i < len && !bad; i++) {
		unsigned d = (unsigned)(f[i] - '0');
		/* v * 10 + d > hi, asked without overflowing */
		bad = d > 9 || v > hi / 10 || d > hi - v * 10;
		v = v * 10 + d;
	}
	if (bad)
		printk("%s: %s '%.*s' is not a number in [0, %llu]\n", who,
		       name, (int)len, f, (unsigned long long)hi);
	else
		*out = v;
	return !bad;
}

/* mm.fail's what: words joined by '+' (small, large, atomic, all). */
static bool fail_what(const char *who, const char *f, size_t len,
                      unsigned *what)
{
	static const struct {
		const char *word;
		unsigned bits;
	} words[] = {{"small", SPANHEAP_FAIL_SMALL},
	             {"large", SPANHEAP_FAIL_LARGE},
	             {"atomic", SPANHEAP_FAIL_ATOMIC_ONLY},
	             {"all", SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE}};
	*what = 0;
	for (size_t at = 0, end; at <= len; at = end + 1) {
		for (end = at; end < len && f[end] != '+'; end++)
			;
		size_t i = 0, n = sizeof(words) / sizeof(words[0]);
		while (i < n && (strlen(words[i].word) != end - at ||
		                 strncmp(words[i].word, f + at, end - at)))
			i++;
		if (i == n) {
			printk("%s: what '%.*s' is not small, large, atomic or "
			       "all, joined by '+'\n",
			       who, (int)len, f);
			return false;
		}
		*what |= words[i].bits;
	}
	if (*what & (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE))
		return true;
	printk("%s: what '%.*s' names no size (small, large or all)\n", who,
	       (int)len, f);
	return false;
}

/* Field i of mm.fail's value (len bytes at f) into *a. */
static bool fail_field(const char *who, unsigned i, const char *f, size_t len,
                       struct spanheap_fail_attr *a)
{
	uint64_t v = 0;
	switch (i) {
	case 0:
		if (!fail_number(who, "interval", f, len, UINT32_MAX, &v))
			return false;
		a->interval = (uint32_t)v;
		return true;
	case 1:
		if (!fail_number(who, "probability", f, len,
		                 SPANHEAP_FAIL_PROB_ALL, &v))
			return false;
		a->probability = (uint32_t)v;
		return true;
	case 2:
		if (len == 2 && f[0] == '-' && f[1] == '1')
			v = UINT64_MAX; /* no cap */
		else if (!fail_number(who, "times (or -1)", f, len, INT64_MAX,
		                      &v))
			return false;
		a->times = v == UINT64_MAX ? -1 : (int64_t)v;
		return true;
	case 3:
		return fail_what(who, f, len, &a->what);
	default:
		return fail_number(who, "seed", f, len, UINT64_MAX, &a->seed);
	}
}

bool heap_fail_parse(const char *who, const char *s,
                     struct spanheap_fail_attr *a)
{
	*a = (struct spanheap_fail_attr){0};
	const char *p = s;
	for (unsigned i = 0; i < 5; i++) {
		const char *end = p;
		while (*end && *end != ',')
			end++;
		if (!fail_field(who, i, p, (size_t)(end - p), a))
			return false;
		if (*end == '\0' && i >= 2)
			return true;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	printk("%s: '%s' is not interval,probability,times[,what[,seed]]\n",
	       who, s);
	return false;
}

/* mm.fail=...: armed once the heap's threads run (their handles and
 * structs come from kmalloc: armed earlier, the boot could not start
 * them). */
static void heap_fail_boot(void)
{
	char v[96];
	struct spanheap_fail_attr a;
	if (!cmdline_get("mm.fail", v, sizeof(v)) ||
	    !heap_fail_parse("mm.fail", v, &a) ||
	    !spanheap_fail_arm(&kspanheap, &a))
		return;
	printk("heap: failure injection armed: every %u-th eligible call, "
	       "%u/10000 of them, %ld at most (-1: no cap), what %#x, seed "
	       "%llu\n",
	       a.interval, a.probability, (long)a.times, a.what,
	       (unsigned long long)a.seed);
}

void heap_init(void)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	/* Below 1/32 of the pool free, growth scavenges first. */
	cfg.low_watermark_pages = frames_managed_count() / 32;
	if (cmdline_flag("mm.debug_pagealloc"))
		cfg.flags |= MHEAP_DEBUG_SCAV_ON_FREE;
	cfg.goal_percent =
	        cmdline_uint("mm.scav_goal", cfg.goal_percent, 0, 1000);
	cfg.cpu_permille =
	        cmdline_uint("mm.scav_budget", cfg.cpu_permille, 1, 1000);
	if (!mheap_init(&kheap, &cfg))
		panic("heap: cannot set up the kernel heap");
	struct spanheap_config scfg;
	spanheap_config_default(&scfg);
	scfg.poison = cmdline_flag("mm.debug_poison");
	if (!spanheap_init(&kspanheap, &kheap, &scfg))
		panic("heap: cannot set up the kernel span heap");
	/* Threads from here on: their structs come from kmalloc. */
	if (!mheap_scavenger_start(&kheap))
		panic("heap: cannot start the scavenger thread");
	if (!spanheap_sweeper_start(&kspanheap))
		panic("heap: cannot start the sweeper thread");
	printk("heap: %zu MiB arena at %#lx, scavenger goal +%u%%, budget "
	       "%u.%u%% of a CPU, low watermark %zu pages%s%s\n",
	       cfg.arena_bytes >> 20, kheap.arena_base, cfg.goal_percent,
	       cfg.cpu_permille / 10, cfg.cpu_permille % 10,
	       cfg.low_watermark_pages,
	       (cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE) ? ", debug_pagealloc"
	                                              : "",
	       scfg.poison ? ", debug_poison" : "");
	heap_fail_boot();
}

void heap_flush_caches(void)
{
	/* Every CPU's: the others while the world is stopped (mm_port.c). */
	spanheap_flush_all(&kspanheap);
}

size_t heap_release_all(void)
{
	return spanheap_release_all(&kspanheap);
}

void heap_meminfo(void)
{
	printk("meminfo: frames %zu free of %zu managed\n", frames_free_count(),
	       frames_managed_count());
	spanheap_dump(&kspanheap);
}
