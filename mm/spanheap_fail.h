/*
 * mm/spanheap_fail.h: allocation-failure injection on a span heap (Linux's
 * failslab, FreeBSD's fail points), so that a developer can prove a
 * caller's out-of-memory path: armed, chosen allocations return NULL as
 * if memory had run out. Included by failpoint.h (spanheap_types.h
 * includes that); the algorithm and its costs are in spanheap_fail.c.
 *
 * What is eligible: a call of spanheap_alloc, _aligned, _calloc, or a
 * spanheap_realloc that needs memory (it grows out of its object), that
 * the heap would otherwise try to serve (a refused call, bad flags or an
 * impossible size, is not counted: a size no arena holds, its
 * alignment's pages past the arena, an atomic large one over
 * MHEAP_ATOMIC_MAX_PAGES), and that matches what (enum
 * spanheap_fail_what); and a block of the metadata heap for a cache's or
 * a pool's metadata (spanheap_meta_alloc: a cache's struct and the
 * counters, a reserve's array), a small call, so that their creators'
 * out-of-memory paths are reached as when those were objects. Each such
 * call is counted once, before any page of the page heap is asked for,
 * so an injected failure asks for none.
 * mheap_alloc_pages called directly is not covered (the page heap's
 * users are the span heap and a port's own code), nor are the frames a
 * port maps behind the heap: the kernel's frame pool has its own point
 * with the same attribute and parser ("mmfail frame", kernel/frames.h),
 * and both decide through mm/failpoint.c. The injection state is a
 * struct failpoint (failpoint.h) in struct spanheap.
 */
#ifndef MM_SPANHEAP_FAIL_H
#define MM_SPANHEAP_FAIL_H

#include <stdbool.h>
#include <stdint.h>

/* Which calls are eligible (spanheap_fail_attr.what). */
enum spanheap_fail_what {
	SPANHEAP_FAIL_SMALL = 1u << 0, /* served from a size class */
	SPANHEAP_FAIL_LARGE = 1u << 1, /* a span of its own (over 32 KiB) */
	/* Only MM_ATOMIC calls (with SMALL and/or LARGE) */
	SPANHEAP_FAIL_ATOMIC_ONLY = 1u << 2,
};
#define SPANHEAP_FAIL_WHAT_ALL \
	(SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE | SPANHEAP_FAIL_ATOMIC_ONLY)

/* Per 10000: a probability of SPANHEAP_FAIL_PROB_ALL fails every call the
 * interval picks. */
#define SPANHEAP_FAIL_PROB_ALL 10000u

/*
 * The parameters, as Linux's fault_attr: the n-th eligible call since the
 * arming (n from 1) fails if n is a multiple of interval (0 and 1: every
 * call), and a draw for n from seed falls below probability (per 10000),
 * and fewer than times failures were injected (-1: no cap). The draw is a
 * hash of seed and n, not a generator's next value, so the same seed over
 * the same sequence of calls fails the same calls (a failure replays).
 */
struct spanheap_fail_attr {
	uint32_t interval;
	uint32_t probability;
	int64_t times;
	uint64_t seed;
	unsigned what; /* enum spanheap_fail_what; 0 means SMALL | LARGE */
};

struct spanheap;

/*
 * Arms injection on sh with *attr and routes every allocation to the slow
 * paths: every CPU's magazines are emptied and held at size 0
 * (spanheap_flush_all) until spanheap_fail_disarm. Resets the counters.
 * Returns false, logging why, for a bad attr (probability over 10000,
 * times below -1, an unknown what bit; sh unchanged), or if the port
 * could not reach every CPU: then it is armed, but another CPU may serve
 * calls from its magazines (not counted) until its next refill. Thread
 * context, nothing pinned.
 */
bool spanheap_fail_arm(struct spanheap *sh, const struct spanheap_fail_attr *a);

/* Disarms and gives the magazines their sizes back (spanheap_flush_all).
 * The counters stay for spanheap_stats. Thread context, nothing pinned. */
void spanheap_fail_disarm(struct spanheap *sh);

/* The attribute last armed (times: the failures left) and whether it is
 * armed now. Any context. */
bool spanheap_fail_get(struct spanheap *sh, struct spanheap_fail_attr *a);

/*
 * Parses "interval,probability,times[,what[,seed]]" (the kernel's mm.fail
 * and mmfail, the hosted malloc's MM_MALLOC_FAIL) into *a: fail every
 * interval-th eligible call (0 or 1: each), probability per 10000 of
 * those (10000: all), at most times of them (-1: no cap); what is small,
 * large, atomic (MM_ATOMIC calls only) or all, joined by '+' (default
 * small+large); seed makes the draws (default 0). Returns false, after
 * an mm_log line "who: FIELD 'value' ..." naming the bad field, if s is
 * not that. One parser for every switch, so that the kernel and the
 * library accept, and refuse, the same values. Any context.
 */
bool spanheap_fail_parse(const char *who, const char *s,
                         struct spanheap_fail_attr *a);

/* As spanheap_fail_parse, for a switch read once at start (the kernel's
 * mm.fail): the line ends in "; ignored", as the kernel's other options'
 * refusals do. */
bool spanheap_fail_parse_option(const char *who, const char *s,
                                struct spanheap_fail_attr *a);

#endif
