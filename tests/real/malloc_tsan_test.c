/*
 * tests/real/malloc_tsan_test.c: the hosted malloc's own code under
 * ThreadSanitizer (make test-malloc-tsan): the thread slots, the fork
 * handlers, the production port's locks, events and background threads,
 * malloc_trim, mallinfo2 and thread exit, with mm/ beneath them.
 *
 * TSan intercepts malloc, so the library is not preloaded: malloc.mk
 * builds its sources with every exported name renamed (malloc ->
 * mmt_malloc, ...) and links them in; this file calls those and keeps
 * malloc and free for TSan's own allocator. The slots run in the
 * "exchange" mode (MM_MALLOC_MEMBARRIER=0): every holder takes a slot's
 * busy word by compare-and-swap, which TSan sees. The membarrier(2)
 * fast path orders a plain store and a load by a barrier another thread
 * forces on this one (slots.c, "Why"), which TSan cannot model: it is
 * not run here (tests/model checks its protocol).
 *
 * The stress: WORKERS workers, each replaced GENS times (a new thread
 * claims the slot the old one gave back at exit, while the others run),
 * allocate objects of every size class, large ones, calloc'd and aligned
 * ones, fill each with a pattern of their own, realloc some, and free
 * them, a third handed through an inbox to the next worker to check and
 * free (remote frees). Meanwhile the sweeper and the scavenger run
 * (forced on first), a thread calls malloc_trim and mallinfo2 in a loop,
 * one forks (its child allocates, checks and frees), and short-lived
 * threads allocate and exit, one freeing from a later key's destructor
 * (the late slot). Object memory is reused across threads only through
 * the allocator, so a hand-over it fails to order shows as a race on
 * the pattern. At the end the heap checks clean and holds in use what it
 * held before the run (a free lost on the way, which the checks find
 * consistent, shows there). Bounded by operation counts; nothing depends
 * on time.
 * The threads beside the workers are in malloc_tsan_threads.c.
 */
#define _GNU_SOURCE
#include "malloc_tsan_test.h"

struct stress_inbox inboxes[WORKERS];
static struct obj inbox_items[WORKERS][INBOX];
atomic_bool stop_side;
struct stress_failures side_fail;
static pthread_mutex_t side_fail_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_key_t late_key;

/* ref[b]: CHECK_CHUNK bytes of b, to compare patterns against (memcmp:
 * one range access for TSan, not one per byte). Set before any thread. */
static unsigned char ref[256][CHECK_CHUNK];

static void ref_init(void)
{
	for (unsigned b = 0; b < 256; b++)
		memset(ref[b], (int)b, CHECK_CHUNK);
}

/* The first word holds the object's address (a swap of two objects
 * shows); fill the rest, to the end. */
static void obj_fill(struct obj *o, unsigned char fill)
{
	o->fill = fill;
	memset(o->p, fill, o->size);
	if (o->size >= sizeof(uintptr_t))
		memcpy(o->p, &o->p, sizeof(uintptr_t));
}

/* True if o's first n bytes still hold the pattern it was filled with
 * when it had filled bytes: the first word the address it had then (at:
 * o->p, or before a realloc moved it, the old one), the rest o->fill. */
static bool obj_intact(const struct obj *o, size_t n, const void *at,
                       size_t filled)
{
	size_t off = 0;
	if (filled >= sizeof(uintptr_t)) {
		off = n < sizeof(uintptr_t) ? n : sizeof(uintptr_t);
		if (memcmp(o->p, &at, off) != 0)
			return false;
	}
	for (; off < n; off += CHECK_CHUNK) {
		size_t k = n - off < CHECK_CHUNK ? n - off : CHECK_CHUNK;
		if (memcmp(o->p + off, ref[o->fill], k) != 0)
			return false;
	}
	return true;
}

void side_failed(const char *what, const void *p)
{
	pthread_mutex_lock(&side_fail_lock);
	stress_fail(&side_fail, "%s (%p)", what, p);
	pthread_mutex_unlock(&side_fail_lock);
}

/* A size for a new object: every class in turn, a random small size,
 * or a large one. */
static size_t pick_size(uint64_t *rng, unsigned *next_class)
{
	uint64_t r = stress_random(rng);
	switch (r % 8) {
	case 0:
	case 1:
	case 2: {
		unsigned cls = 1 + (*next_class)++ % (SC_NCLASSES - 1);
		return sizeclass_info[cls].size - (size_t)(r >> 32) % 16;
	}
	case 3:
		return SC_MAX_SIZE + 1 + (size_t)(r >> 16) % (256 << 10);
	case 4:
		return (size_t)(r >> 16) % 64;
	default:
		return 1 + (size_t)(r >> 16) % SC_MAX_SIZE;
	}
}

void *obj_new(struct obj *o, uint64_t *rng, unsigned *next_class,
              struct stress_failures *f)
{
	uint64_t r = stress_random(rng);
	o->size = pick_size(rng, next_class);
	size_t align = (size_t)32 << (r >> 40) % 12; /* 32 B to 64 KiB */
	switch (r % 10) {
	case 0:
		align = 16;
		o->p = mmt_calloc(1, o->size);
		for (size_t i = 0; o->p && i < o->size; i += 97)
			if (o->p[i] != 0)
				stress_fail(f, "calloc'd %p not zero", o->p);
		break;
	case 1:
		o->p = mmt_memalign(align, o->size);
		break;
	case 2:
		o->p = mmt_aligned_alloc(align, o->size);
		break;
	case 3:
		if (mmt_posix_memalign((void **)&o->p, align, o->size) != 0)
			o->p = NULL;
		break;
	default:
		align = 16;
		o->p = mmt_malloc(o->size);
	}
	if (!o->p)
		stress_fail(f, "allocation of %zu bytes failed", o->size);
	else if ((uintptr_t)o->p % align != 0)
		stress_fail(f, "%p not aligned to %zu", o->p, align);
	else if (mmt_malloc_usable_size(o->p) < o->size)
		stress_fail(f, "%p usable size below %zu", o->p, o->size);
	else
		obj_fill(o, (unsigned char)(r >> 24));
	return o->p;
}

void obj_free(struct obj *o, struct stress_failures *f)
{
	if (!obj_intact(o, o->size, o->p, o->size))
		stress_fail(f, "%p (%zu bytes) changed", o->p, o->size);
	mmt_free(o->p);
	o->p = NULL;
}

/* Reallocs o to a new size; checks what it kept and fills it anew. */
static void obj_realloc(struct obj *o, uint64_t *rng, unsigned *next_class,
                        struct stress_failures *f)
{
	/* Not 0: realloc(p, 0) frees p (malloc.c's conventions). */
	size_t n = pick_size(rng, next_class) | 1;
	unsigned char *old = o->p;
	unsigned char *p = mmt_realloc(old, n);
	if (!p) {
		stress_fail(f, "realloc of %p to %zu failed", old, n);
		return;
	}
	o->p = p;
	size_t filled = o->size, kept = n < filled ? n : filled;
	o->size = n;
	if (!obj_intact(o, kept, old, filled))
		stress_fail(f, "realloc %p -> %p lost bytes", old, p);
	obj_fill(o, (unsigned char)stress_random(rng));
}

struct worker {
	int index;
	uint64_t seed;
	struct stress_failures fail;
};

/* Frees what other workers handed this one. */
static void drain_inbox(int index, struct stress_failures *f)
{
	struct obj got[INBOX];
	size_t n = stress_inbox_take(&inboxes[index], got);
	for (size_t i = 0; i < n; i++)
		obj_free(&got[i], f);
}

/* Gives up o: to the next worker's inbox one time in three, else free. */
static void obj_drop(struct worker *w, struct obj *o, uint64_t r)
{
	if (r % 3 == 0 &&
	    stress_inbox_put(&inboxes[(w->index + 1) % WORKERS], o)) {
		o->p = NULL;
		return;
	}
	obj_free(o, &w->fail);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = w->seed;
	unsigned next_class = (unsigned)w->seed;
	struct obj live[LIVE] = {0};
	for (int op = 0; op < OPS; op++) {
		uint64_t r = stress_random(&rng);
		struct obj *o = &live[r % LIVE];
		if (op % 64 == 0)
			drain_inbox(w->index, &w->fail);
		if (!o->p)
			obj_new(o, &rng, &next_class, &w->fail);
		else if ((r >> 8) % 8 == 0)
			obj_realloc(o, &rng, &next_class, &w->fail);
		else
			obj_drop(w, o, r >> 16);
	}
	for (int i = 0; i < LIVE; i++)
		if (live[i].p)
			obj_drop(w, &live[i], 0);
	drain_inbox(w->index, &w->fail);
	return NULL;
}

/* ---- Set-up and checks -------------------------------------------------- */

static void setup_once(void)
{
	/* Before the heap's set-up, which reads it. */
	setenv("MM_MALLOC_MEMBARRIER", "0", 1);
	ref_init();
	for (int i = 0; i < WORKERS; i++)
		stress_inbox_init(&inboxes[i], inbox_items[i],
		                  sizeof(struct obj), INBOX);
	mmt_free(mmt_malloc(1)); /* the heap, and its exit key first */
	pthread_key_create(&late_key, late_free);
}

/* The library's first use in this process, in the exchange mode. */
void setup(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, setup_once);
}

/* Grows the heap past the background threads' threshold and makes the
 * allocation that starts them; true if they run. */
static bool force_background(void)
{
	void *big = mmt_malloc((size_t)12 << 20);
	mmt_free(big);
	mmt_free(mmt_malloc(64));
	return atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING &&
	       mm_malloc_sh.sweeper.thread && mm_malloc_heap.scav.thread;
}

/* Stops the background threads (as fork's prepare does); the next
 * allocation's slow path starts them again (as after a fork). */
void stop_background(void)
{
	pthread_mutex_lock(&mm_malloc_ctl_lock);
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING) {
		spanheap_sweeper_stop(&mm_malloc_sh);
		mheap_scavenger_stop(&mm_malloc_heap);
		atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
	}
	pthread_mutex_unlock(&mm_malloc_ctl_lock);
}

void check_heap_back_to(const struct spanheap_stats *before)
{
	static struct spanheap_stats after;
	mmt_malloc_trim(0);
	spanheap_check(&mm_malloc_sh);
	mheap_check(&mm_malloc_heap);
	/* Every object the run made was freed: a free dropped on the way (a
	 * leak) passes the checks above, whose counts agree with it. */
	spanheap_stats(&mm_malloc_sh, &after);
	KEXPECT_EQ(after.bytes_in_use, before->bytes_in_use);
	KEXPECT_EQ(after.n.large_allocs - after.n.large_frees,
	           before->n.large_allocs - before->n.large_frees);
}

/* ---- Tests -------------------------------------------------------------- */

KTEST(malloc_tsan, slots_take_the_exchange_path)
{
	setup();
	KEXPECT_STREQ(mm_malloc_slot_mode(), "exchange");
	KEXPECT(!mm_malloc_fences);
}

KTEST(malloc_tsan, background_threads_run)
{
	setup();
	KEXPECT(force_background());
}

/* Runs the workers, GENS threads per place one after another (a place's
 * next thread starts once its last ended, the other places running). */
static void run_workers(struct worker *w)
{
	pthread_t th[WORKERS];
	for (int g = 0; g < GENS; g++)
		for (int i = 0; i < WORKERS; i++) {
			struct worker *x = &w[g * WORKERS + i];
			if (g > 0)
				pthread_join(th[i], NULL);
			x->index = i;
			x->seed = (uint64_t)(g * WORKERS + i) *
			                  0x9e3779b97f4a7c15u +
			          1;
			if (pthread_create(&th[i], NULL, worker_main, x) != 0)
				stress_fail(&x->fail, "pthread_create failed");
		}
	for (int i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
}

KTEST(malloc_tsan, stress_with_background_trim_fork_and_exits)
{
	setup();
	KASSERT(force_background());
	static struct spanheap_stats before;
	spanheap_stats(&mm_malloc_sh, &before);
	static struct worker w[GENS * WORKERS];
	memset(w, 0, sizeof(w));
	atomic_store(&stop_side, false);
	pthread_t trimmer, forker, spawner;
	KASSERT_EQ(pthread_create(&trimmer, NULL, trimmer_main, NULL), 0);
	KASSERT_EQ(pthread_create(&forker, NULL, forker_main, NULL), 0);
	KASSERT_EQ(pthread_create(&spawner, NULL, short_spawner_main, NULL), 0);
	run_workers(w);
	pthread_join(spawner, NULL);
	atomic_store(&stop_side, true);
	pthread_join(trimmer, NULL);
	pthread_join(forker, NULL);
	struct stress_failures left = {0};
	for (int i = 0; i < WORKERS; i++)
		drain_inbox(i, &left);
	for (int i = 0; i < GENS * WORKERS; i++)
		if (w[i].fail.n)
			ktest_fail_at(__FILE__, __LINE__,
			              "worker %d: %lu failures, first: %s", i,
			              w[i].fail.n, w[i].fail.first);
	KEXPECT_EQ(left.n, 0);
	if (side_fail.n)
		ktest_fail_at(__FILE__, __LINE__,
		              "side threads: %lu failures, first: %s",
		              side_fail.n, side_fail.first);
	/* The heap's own checks, everything freed, nothing running. */
	stop_background();
	check_heap_back_to(&before);
	struct mallinfo2 mi = mmt_mallinfo2();
	KEXPECT(mi.uordblks <= mi.arena);
}
