/*
 * mm/spanheap_fail.c: allocation-failure injection on a span heap
 * (spanheap_fail.h): which calls are eligible (the what filter), arming
 * and disarming it with the magazines, and the switches' syntax
 * (spanheap_fail_parse), shared by the kernel's mm.fail and mmfail, its
 * frame pool's "mmfail frame" and the hosted malloc's MM_MALLOC_FAIL so
 * that they accept and refuse the same values. The decision itself
 * (interval, draw, cap, counters) is failpoint.c's, shared with the
 * kernel's frame pool.
 *
 * Purpose: "out of memory returns NULL, and nothing is lost or leaked on
 * the error path" is a promise every caller of the heap makes too, and
 * the only other way to test it, exhausting the page heap, cannot pick
 * one caller. Modelled on Linux's fault_attr (failslab,
 * fail_page_alloc): interval, probability, times, and a filter.
 *
 * Representation: a struct failpoint (failpoint.h) in struct spanheap:
 * the parameters, the armed flag, and two counters.
 *
 * Algorithm: arming stores the parameters, then armed, then flushes every
 * CPU's cache (spanheap_flush_all), whose spanheap_cache_flush, seeing armed,
 * sets every magazine's size (its limit) to 0 after draining it. From then on
 * the fast paths, whose code is unchanged, find every magazine empty on
 * an allocation and full on a free: every allocation reaches
 * spanheap_alloc_refill or alloc_any, which (armed) ask
 * spanheap_fail_should before anything else; every free goes to its span
 * (spanheap_mag_full's way for a CPU with no slab), and no refill moves
 * objects into a magazine (mag_fill finds no room). spanheap_fail_should
 * filters by what, then asks failpoint_should, which numbers the call,
 * applies the interval and the draw, and takes one of the failures left
 * (so that concurrent callers never inject more than times). An injected
 * failure returns NULL from the API function before it touches a magazine, a
 * span or the page heap: nothing is held or allocated, and realloc's object is
 * untouched. Disarming clears armed, then flushes every CPU again, which gives
 * each magazine its floor size back (a free that finds a zero-sized magazine
 * meanwhile does the same for its own).
 *
 * Invariants: armed and every CPU flushed since, every magazine of a CPU
 * with a slab has top == limit == its base (spanheap_check accepts that
 * shape, and only it, below a magazine's floor); no slab is made while
 * armed.
 *
 * Cost: nothing on the fast paths (the callgrind count of a 16-byte pair
 * is the same); unarmed, one acquire load of armed (a plain load on x86)
 * in spanheap_alloc_refill, alloc_any, realloc's growth and a full
 * magazine's spill, all slow paths. Armed, every call is a slow path, as
 * in poison mode.
 *
 * Why at run time and not a spanheap_config field like poison: a test
 * wants "fail the next allocation of this caller" at a chosen moment, in
 * a kernel that booted normally (the kernel's mm.fail arms it at boot,
 * its shell's mmfail later). The magazines' limit is already stored
 * atomically by its CPU and reached on other CPUs by spanheap_flush_all,
 * so zeroing it needs no new path on the fast side.
 *
 * Limits: "the next allocation" is the next eligible call on any CPU: a
 * test that targets one caller runs with nothing else allocating (the
 * kernel's stop the sweeper and scavenger). With a port that cannot
 * reach other CPUs, they keep their magazines until their next refill.
 */
#include "objcache_own.h"
#include "spanheap_internal.h"

bool spanheap_fail_should(struct spanheap *sh, bool large, unsigned flags)
{
	struct failpoint *f = &sh->fail;
	unsigned what = atomic_load_explicit(&f->what, memory_order_relaxed);
	if (!(what & (large ? SPANHEAP_FAIL_LARGE : SPANHEAP_FAIL_SMALL)))
		return false;
	if ((what & SPANHEAP_FAIL_ATOMIC_ONLY) && !(flags & MM_ATOMIC))
		return false;
	return failpoint_should(f);
}

bool spanheap_fail_arm(struct spanheap *sh, const struct spanheap_fail_attr *a)
{
	struct spanheap_fail_attr r = *a;
	if (!r.what)
		r.what = SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE;
	bool what_ok = !(r.what & ~SPANHEAP_FAIL_WHAT_ALL) &&
	               (r.what & (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE));
	if (!failpoint_arm(&sh->fail, "spanheap", &r,
	                   what_ok ? NULL : "small 1, large 2, atomic only 4"))
		return false;
	objcache_own_fail_switch(sh); /* their stashes' pops too */
	/* Every CPU's magazines emptied and held at size 0
	 * (spanheap_cache_flush). */
	if (spanheap_flush_all(sh))
		return true;
	mm_log("spanheap: failure injection armed, but the port could not "
	       "reach the other CPUs: their magazines serve calls until their "
	       "next refill");
	return false;
}

void spanheap_fail_disarm(struct spanheap *sh)
{
	failpoint_disarm(&sh->fail);
	objcache_own_fail_switch(sh);
	spanheap_flush_all(sh); /* the magazines' sizes back */
}

bool spanheap_fail_get(struct spanheap *sh, struct spanheap_fail_attr *a)
{
	return failpoint_get(&sh->fail, a);
}

/* ---- The switch's syntax (kernel mm.fail and mmfail, MM_MALLOC_FAIL) --- */

/* The len bytes at f as a string in buf (FIELD_SHOW bytes): its first 40
 * and "..." if longer. A copy rather than a string conversion with a
 * precision, which a port's small formatter need not have
 * (docs/PORTING.md lists the formats mm/ uses; tools/lint-mm checks). */
#define FIELD_SHOW 44
static const char *field_str(char *buf, const char *f, size_t len)
{
	size_t n = len > 40 ? 40 : len, i;
	for (i = 0; i < n; i++)
		buf[i] = f[i];
	for (const char *dots = len > n ? "..." : ""; *dots; dots++)
		buf[i++] = *dots;
	buf[i] = '\0';
	return buf;
}

/* Field name of the value, len bytes at f: a decimal number in
 * [0, hi] into *out; false, naming who, the field and the value, if it
 * is not one. */
static bool fail_number(const char *who, const char *then, const char *name,
                        const char *f, size_t len, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;
	bool bad = len == 0 || len > 20;
	for (size_t i = 0; i < len && !bad; i++) {
		unsigned d = (unsigned)(f[i] - '0');
		/* v * 10 + d > hi, asked without overflowing */
		bad = d > 9 || v > hi / 10 || d > hi - v * 10;
		v = v * 10 + d;
	}
	char buf[FIELD_SHOW];
	if (bad)
		mm_log("%s: %s '%s' is not a number in [0, %lu]%s", who, name,
		       field_str(buf, f, len), (unsigned long)hi, then);
	else
		*out = v;
	return !bad;
}

/* Whether the len bytes at f are word (no libc here: mm/ is freestanding). */
static bool word_is(const char *word, const char *f, size_t len)
{
	size_t i = 0;
	while (i < len && word[i] && word[i] == f[i])
		i++;
	return i == len && !word[i];
}

/* The what field: words joined by '+' (small, large, atomic, all). */
static bool fail_what(const char *who, const char *then, const char *f,
                      size_t len, unsigned *what)
{
	static const struct {
		const char *word;
		unsigned bits;
	} words[] = {{"small", SPANHEAP_FAIL_SMALL},
	             {"large", SPANHEAP_FAIL_LARGE},
	             {"atomic", SPANHEAP_FAIL_ATOMIC_ONLY},
	             {"all", SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE}};
	char buf[FIELD_SHOW];
	*what = 0;
	for (size_t at = 0, end; at <= len; at = end + 1) {
		for (end = at; end < len && f[end] != '+'; end++)
			;
		size_t i = 0, n = sizeof(words) / sizeof(words[0]);
		while (i < n && !word_is(words[i].word, f + at, end - at))
			i++;
		if (i == n) {
			mm_log("%s: what '%s' is not small, large, atomic or "
			       "all, joined by '+'%s",
			       who, field_str(buf, f, len), then);
			return false;
		}
		*what |= words[i].bits;
	}
	if (*what & (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE))
		return true;
	mm_log("%s: what '%s' names no size (small, large or all)%s", who,
	       field_str(buf, f, len), then);
	return false;
}

/* Field i of the value (len bytes at f) into *a. */
static bool fail_field(const char *who, const char *then, unsigned i,
                       const char *f, size_t len, struct spanheap_fail_attr *a)
{
	uint64_t v = 0;
	switch (i) {
	case 0:
		if (!fail_number(who, then, "interval", f, len, UINT32_MAX, &v))
			return false;
		a->interval = (uint32_t)v;
		return true;
	case 1:
		if (!fail_number(who, then, "probability", f, len,
		                 SPANHEAP_FAIL_PROB_ALL, &v))
			return false;
		a->probability = (uint32_t)v;
		return true;
	case 2:
		if (len == 2 && f[0] == '-' && f[1] == '1')
			v = UINT64_MAX; /* no cap */
		else if (!fail_number(who, then, "times (or -1)", f, len,
		                      INT64_MAX, &v))
			return false;
		a->times = v == UINT64_MAX ? -1 : (int64_t)v;
		return true;
	case 3:
		return fail_what(who, then, f, len, &a->what);
	default:
		return fail_number(who, then, "seed", f, len, UINT64_MAX,
		                   &a->seed);
	}
}

/* spanheap_fail_parse's work: its line, if any, ends in then. */
static bool fail_parse(const char *who, const char *then, const char *s,
                       struct spanheap_fail_attr *a)
{
	*a = (struct spanheap_fail_attr){0};
	const char *p = s;
	for (unsigned i = 0; i < 5; i++) {
		const char *end = p;
		while (*end && *end != ',')
			end++;
		if (!fail_field(who, then, i, p, (size_t)(end - p), a))
			return false;
		if (*end == '\0' && i >= 2)
			return true;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	char buf[FIELD_SHOW];
	size_t len = 0;
	while (s[len])
		len++;
	mm_log("%s: '%s' is not interval,probability,times[,what[,seed]]%s",
	       who, field_str(buf, s, len), then);
	return false;
}

bool spanheap_fail_parse(const char *who, const char *s,
                         struct spanheap_fail_attr *a)
{
	return fail_parse(who, "", s, a);
}

bool spanheap_fail_parse_option(const char *who, const char *s,
                                struct spanheap_fail_attr *a)
{
	return fail_parse(who, "; ignored", s, a);
}
