/*
 * Poison mode's records of own-slab caches' objects (mm/objcache_track.c)
 * written by threads and read with no lock meanwhile, built for
 * ThreadSanitizer too (make test-tsan). Two churners, CPUs 1 and 2,
 * allocate from and free to two constructor caches (40-byte objects with
 * stashes; 20000-byte ones, a slab each and no stash, so slabs are freed
 * and made all the time), each through call sites of its own, and hand
 * every fourth object to the other to free on its CPU. So a record is
 * whole if its CPU and its stack's site agree: CPU c's records name
 * c's sites, and a record with one's CPU and the other's stack is torn.
 * Meanwhile the reader, CPU 0, holding OWN objects of each cache from
 * its own site, round after round:
 *   - reads its objects' records (spanheap_object_tracks): the same
 *     every round (its allocation, never freed), never changing;
 *   - borrows a churner's live object (the churner lends one and frees
 *     it once given back), so its slab lives while read: its records
 *     must be whole (the churner's allocation, the last free in its slab
 *     before it, or none), never changing, and spanheap_where_log's
 *     lines (captured) name it allocated, its cache and its CPU;
 *   - outside TSan (see WALKS_WHILE_CHURNING), reads the records and
 *     the description of objects the churners may be freeing, whose
 *     slabs may be freed and made again meanwhile: each record whole or
 *     changing, its CPU in range, and counts the caches' live objects
 *     by stack (spanheap_alloc_traces_owned): its own OWN exactly.
 * At the end the caches are checked (objcache_own_check), emptied,
 * destroyed, and the heap checked. Bounded by operation counts.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_own.h"
#include "mm_port_posix.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { CHURNERS = 2, KEEP = 24, OWN = 8, OPS = 3000, ROUNDS = 300 };
enum { NCACHES = 2, SEEN = 16 };

static struct mheap heap;
static struct spanheap sh;
static struct objcache *caches[NCACHES];
static const size_t sizes[NCACHES] = {40, 20000};

static void ctor(void *p)
{
	memset(p, 0x6b, 16);
}

/* The call sites: CPU c allocates through alloc_c and frees through
 * free_c (the reader, CPU 0, allocates through alloc_0 and frees only
 * at the end). Out of line, each the only caller in its body. */
#define SITES(c)                                                  \
	SH_SITE static void *alloc_##c(struct objcache *k)        \
	{                                                         \
		void *p = objcache_alloc(k, 0);                   \
		__asm__ volatile("" ::: "memory");                \
		return p;                                         \
	}                                                         \
	SH_SITE static void free_##c(struct objcache *k, void *p) \
	{                                                         \
		objcache_free(k, p);                              \
		__asm__ volatile("" ::: "memory");                \
	}
SITES(0)
SITES(1)
SITES(2)

static void *const alloc_site[3] = {(void *)alloc_0, (void *)alloc_1,
                                    (void *)alloc_2};
static void *const free_site[3] = {(void *)free_0, (void *)free_1,
                                   (void *)free_2};

/* Whether one of t's return addresses lies in fn's body: from fn up to
 * the next of the sites above it, or 512 bytes. */
static bool in_site(const struct spanheap_track *t, void *fn)
{
	uintptr_t lo = (uintptr_t)fn, hi = lo + 512;
	for (int i = 0; i < 3; i++) {
		uintptr_t a = (uintptr_t)alloc_site[i],
		          f = (uintptr_t)free_site[i];
		if (a > lo && a < hi)
			hi = a;
		if (f > lo && f < hi)
			hi = f;
	}
	for (unsigned i = 0; i < t->npcs && i < SPANHEAP_TRACK_PCS; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return true;
	return false;
}

/* Whether record t (freed: a free's) is whole: none, or a CPU of the
 * test's whose site of that kind its stack names, at or before now;
 * changing only if allowed. */
static bool whole(const struct spanheap_track *t, bool freed, bool changing,
                  uint64_t now)
{
	if (t->ns == SPANHEAP_TRACK_CHANGING)
		return changing;
	if (t->ns == 0)
		return true;
	return t->ns <= now && t->cpu <= CHURNERS && t->npcs > 0 &&
	       in_site(t, freed ? free_site[t->cpu] : alloc_site[t->cpu]);
}

struct churner {
	int id; /* its CPU: id + 1 */
	uint64_t rng;
	struct stress_failures failures;
};
static struct churner churners[CHURNERS];
static _Atomic int running;
static _Atomic unsigned rounds;  /* the reader's, while they run */
static _Atomic unsigned borrows; /* the reader's borrowed objects */
/* Objects for the other churner to free (and their caches' index in
 * bit 0: both caches' objects are 8-aligned). */
static _Atomic uintptr_t handoff[CHURNERS];
/* A churner's object lent to the reader, and given back. */
static _Atomic uintptr_t lent[CHURNERS], returned[CHURNERS];
/* Objects the churners handed out lately, for the reader (tagged). */
static _Atomic uintptr_t seen[SEEN];

static void churn_free(struct churner *r, uintptr_t tagged)
{
	if (!tagged)
		return;
	if (r->id == 0)
		free_1(caches[tagged & 1], (void *)(tagged & ~(uintptr_t)1));
	else
		free_2(caches[tagged & 1], (void *)(tagged & ~(uintptr_t)1));
}

static void *churn_alloc(struct churner *r, unsigned k)
{
	return r->id == 0 ? alloc_1(caches[k]) : alloc_2(caches[k]);
}

/* Frees what the reader gave back, and lends another if none is out. */
static void lend(struct churner *r, uintptr_t tagged)
{
	churn_free(r, atomic_exchange(&returned[r->id], 0));
	uintptr_t none = 0;
	if (!atomic_compare_exchange_strong(&lent[r->id], &none, tagged))
		churn_free(r, tagged);
}

/* Past OPS until the reader has made its rounds and borrowed an object:
 * so many of them overlap the churn, however the threads were scheduled.
 * (Until the borrow was waited for, a loaded machine ran the reader's
 * rounds while the churners waited and their ops while the reader did:
 * "314 rounds, 0 objects borrowed", a clean-clone CI.) */
static void churn(struct churner *r)
{
	uintptr_t keep[KEEP] = {0};
	for (int op = 0; op < OPS || atomic_load(&rounds) < ROUNDS ||
	                 atomic_load(&borrows) == 0;
	     op++) {
		unsigned i = (unsigned)(stress_random(&r->rng) % KEEP);
		unsigned k = (unsigned)(stress_random(&r->rng) % 8 == 0);
		if (keep[i] && op % 4 == 0)
			churn_free(r, atomic_exchange(
			                      &handoff[(r->id + 1) % CHURNERS],
			                      keep[i]));
		else if (keep[i] && op % 16 == 1)
			lend(r, keep[i]);
		else
			churn_free(r, keep[i]);
		churn_free(r, atomic_exchange(&handoff[r->id], 0));
		void *p = churn_alloc(r, k);
		keep[i] = p ? (uintptr_t)p | k : 0;
		if (!p)
			stress_fail(&r->failures, "allocation %d failed", op);
		else
			atomic_store(&seen[op % SEEN], keep[i]);
	}
	for (unsigned i = 0; i < KEEP; i++)
		churn_free(r, keep[i]);
}

static void run_churner(void *arg)
{
	struct churner *r = arg;
	mm_port_set_cpu((unsigned)r->id + 1);
	churn(r);
	spanheap_flush_cache(&sh);
	atomic_fetch_sub(&running, 1);
}

/* ---- The reader ---- */

static void *own[NCACHES][OWN];
static struct spanheap_track own_a[NCACHES][OWN];
static char log[8192];
static struct stress_failures reader_failures;

/* Its own objects' records: the same every round, never freed. */
static unsigned own_bad(void)
{
	unsigned bad = 0;
	for (unsigned k = 0; k < NCACHES; k++)
		for (unsigned i = 0; i < OWN; i++) {
			struct spanheap_track a, f;
			bad += !spanheap_object_tracks(&sh, own[k][i], &a,
			                               &f) ||
			       memcmp(&a, &own_a[k][i], sizeof(a)) != 0 ||
			       f.ns != 0;
		}
	return bad;
}

/* Whether the captured description of live object p of cache k, lent
 * by churner id, names it allocated, its cache and the churner's CPU. */
static bool described(uintptr_t p, unsigned k, int id)
{
	char want[96];
	snprintf(want, sizeof(want), "at %#lx (allocated) of cache '%s'",
	         (unsigned long)p, k ? "track-big" : "track-small");
	const char *obj = strstr(log, want);
	snprintf(want, sizeof(want), "last allocated on CPU %d,", id + 1);
	return obj && strstr(obj, want);
}

/* Borrows each churner's lent object, if any: its records whole and
 * never changing, its description true; then gives it back. */
static unsigned borrowed_bad(unsigned *borrowed)
{
	unsigned bad = 0;
	for (int id = 0; id < CHURNERS; id++) {
		uintptr_t tagged = atomic_exchange(&lent[id], 0);
		if (!tagged)
			continue;
		uintptr_t p = tagged & ~(uintptr_t)1;
		struct spanheap_track a, f;
		bool got = spanheap_object_tracks(&sh, (void *)p, &a, &f);
		uint64_t now = mm_port_now_ns();
		bad += !got || !whole(&a, false, false, now) ||
		       a.cpu != (unsigned)id + 1 ||
		       !whole(&f, true, false, now) || f.ns > a.ns;
		mm_port_log_capture(log, sizeof(log));
		spanheap_where_log(&sh, (void *)p);
		mm_port_log_capture(NULL, 0);
		bad += !described(p, (unsigned)(tagged & 1), id);
		(*borrowed)++;
		uintptr_t none = 0;
		if (!atomic_compare_exchange_strong(&returned[id], &none,
		                                    tagged))
			free_0(caches[tagged & 1], (void *)p);
	}
	return bad;
}

/* Whether the records of p, an object a churner may be freeing
 * meanwhile, are each whole or changing. */
static bool seen_whole(uintptr_t p)
{
	struct spanheap_track a, f;
	if (!p || !spanheap_object_tracks(&sh, (void *)p, &a, &f))
		return true;
	uint64_t now = mm_port_now_ns();
	if (whole(&a, false, true, now) && whole(&f, true, true, now))
		return true;
	stress_fail(&reader_failures,
	            "%#lx: allocated %llu on CPU %u (%u pcs), freed %llu on "
	            "CPU %u (%u pcs), now %llu",
	            (unsigned long)p, (unsigned long long)a.ns, a.cpu, a.npcs,
	            (unsigned long long)f.ns, f.cpu, f.npcs,
	            (unsigned long long)now);
	return false;
}

/* The records of the objects the churners handed out lately, each read
 * a few times (the churners free and take them back meanwhile: a stash
 * hands its last freed first), and one's description: each record
 * line's CPU in range. */
static unsigned seen_bad(unsigned round)
{
	unsigned bad = 0;
	for (unsigned pass = 0; pass < 4; pass++)
		for (unsigned i = 0; i < SEEN; i++)
			bad += !seen_whole(atomic_load(&seen[i]) &
			                   ~(uintptr_t)1);
	uintptr_t p = atomic_load(&seen[round % SEEN]) & ~(uintptr_t)1;
	if (!p)
		return bad;
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, (void *)p);
	mm_port_log_capture(NULL, 0);
	for (const char *l = log; (l = strstr(l, " on CPU ")); l++)
		if (strtoul(l + 8, NULL, 10) > CHURNERS) {
			bad++;
			stress_fail(&reader_failures, "log: %s", log);
		}
	return bad;
}

/* The objects the traces count under the reader's site, both caches. */
static size_t counted_own(void)
{
	static struct spanheap_trace t[32];
	size_t c = 0;
	for (unsigned k = 0; k < NCACHES; k++) {
		struct objcache_info in;
		objcache_info(caches[k], &in);
		size_t rest, n = spanheap_alloc_traces_owned(&sh, 0, in.owner,
		                                             t, 32, &rest);
		for (size_t i = 0; i < n; i++) {
			struct spanheap_track a = {.npcs = t[i].npcs};
			memcpy(a.pc, t[i].pc, sizeof(a.pc));
			if (in_site(&a, alloc_site[0]))
				c += t[i].objects;
		}
	}
	return c;
}

/* Under ThreadSanitizer the reader reads objects it does not hold, and
 * walks every slab, only once the churners are done: such reads meet
 * slabs freed meanwhile, whose pages a new slab's set-up writes plainly
 * (its header, its records zeroed), and throw what they read away when
 * the slab is seen to have changed (objcache_track.c's slab_same), a
 * read TSan cannot tell from a race; spanheap_track_stress_test.c's
 * walks are so too. In the kernel such reads run under the fault hook.
 * The objects the reader holds or borrows live in slabs that live
 * meanwhile, so those are read while the churners run in every build. */
#if defined(__SANITIZE_THREAD__)
#define WALKS_WHILE_CHURNING 0
#else
#define WALKS_WHILE_CHURNING 1
#endif

/* Every object freed (the reader's, what is still lent or handed), the
 * caches checked, shrunk and destroyed, the heap checked. */
static void finish(void)
{
	for (unsigned k = 0; k < NCACHES; k++)
		for (unsigned i = 0; i < OWN; i++)
			free_0(caches[k], own[k][i]);
	for (int id = 0; id < CHURNERS; id++) {
		uintptr_t left[3] = {atomic_exchange(&lent[id], 0),
		                     atomic_exchange(&returned[id], 0),
		                     atomic_exchange(&handoff[id], 0)};
		for (int j = 0; j < 3; j++)
			if (left[j])
				free_0(caches[left[j] & 1],
				       (void *)(left[j] & ~(uintptr_t)1));
	}
	sh_flush_cpus(&sh, CHURNERS + 1);
	for (unsigned k = 0; k < NCACHES; k++) {
		KEXPECT(objcache_own_check(caches[k]));
		objcache_shrink(caches[k]);
		struct objcache_slabs s;
		objcache_slabs_info(caches[k], &s);
		KEXPECT_EQ(s.slabs + s.stashed, 0);
		KEXPECT(objcache_destroy(caches[k]));
	}
	spanheap_check(&sh);
	mheap_check(&heap);
}

KTEST(objcache_track_stress, records_read_whole_while_threads_churn)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(caches[0] = objcache_create_flags(&sh, "track-small", sizes[0],
	                                          0, 0, ctor));
	KASSERT(caches[1] = objcache_create_flags(&sh, "track-big", sizes[1], 0,
	                                          0, ctor));
	for (unsigned k = 0; k < NCACHES; k++)
		for (unsigned i = 0; i < OWN; i++) {
			struct spanheap_track f;
			KASSERT(own[k][i] = alloc_0(caches[k]));
			KASSERT(spanheap_object_tracks(&sh, own[k][i],
			                               &own_a[k][i], &f));
			KASSERT(whole(&own_a[k][i], false, false,
			              mm_port_now_ns()));
		}
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < CHURNERS; i++) {
		churners[i] = (struct churner){.id = i,
		                               .rng = 0x9e3779b97f4a7c15ull *
		                                      (uint64_t)(i + 1)};
		handoff[i] = lent[i] = returned[i] = 0;
	}
	atomic_store(&running, CHURNERS);
	atomic_store(&rounds, 0); /* before the churners read them */
	atomic_store(&borrows, 0);
	struct mm_thread *t[CHURNERS];
	KASSERT(start_all(t, CHURNERS, run_churner, churners,
	                  sizeof(*churners)));
	unsigned bad = 0, bad_lent = 0, bad_seen = 0, miscounted = 0;
	unsigned round = 0, borrowed = 0;
	mm_port_set_quiet(true); /* the descriptions: captured, not said */
	for (; atomic_load(&running) > 0; round++) {
		atomic_store(&rounds, round);
		bad += own_bad();
		bad_lent += borrowed_bad(&borrowed);
		atomic_store(&borrows, borrowed);
		if (WALKS_WHILE_CHURNING) {
			bad_seen += seen_bad(round);
			miscounted += counted_own() != NCACHES * OWN;
		}
	}
	join_all(t, CHURNERS);
	for (int i = 0; i < CHURNERS; i++)
		STRESS_REPORT(i, &churners[i].failures);
	STRESS_REPORT(CHURNERS, &reader_failures);
	miscounted += counted_own() != NCACHES * OWN; /* and once done */
	bad_seen += seen_bad(0);
	mm_port_set_quiet(false);
	ktest_diag("%u rounds, %u objects borrowed; bad: %u own, %u lent, "
	           "%u seen, %u miscounted",
	           round, borrowed, bad, bad_lent, bad_seen, miscounted);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(bad_lent, 0);
	KEXPECT_EQ(bad_seen, 0);
	KEXPECT_EQ(miscounted, 0);
	KEXPECT(round >= ROUNDS && borrowed > 0);
	finish();
	sh_heap_release(&heap, &sh);
}
