/*
 * Bulk allocation and free under threads (mm/spanheap_bulk.c through the
 * POSIX port), built for ThreadSanitizer too (make test-tsan): two
 * workers, each a CPU of its own, allocate batches of 1 to 64 objects of
 * a random small size (now and then a large one, or MM_ZERO), write a
 * pattern of their own into each object, and hand every other batch to
 * the other worker through a locked mailbox; the receiver checks the
 * pattern and frees the batch with spanheap_free_bulk, so that batches
 * go back into another CPU's magazines than the one they came from, and
 * spill. The sweeper runs meanwhile. At the end every batch is freed, the
 * heap checked and every page back. Bounded by batch counts (about 0.1 s
 * under ASan).
 */
#include <pthread.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_bulk.h"
#include "mm_port_posix.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { WORKERS = 2, BATCHES = 600, MAXN = 64, BOX = 8 };

static struct mheap heap;
static struct spanheap sh;

struct batch {
	size_t n, size;
	unsigned tag;
	void *p[MAXN];
};

struct worker {
	int id;
	uint64_t rng;
	pthread_mutex_t lock; /* guards box and nbox: the others' batches */
	struct batch box[BOX];
	size_t nbox;
	struct batch mine;
	struct stress_failures failures;
};

static struct worker workers[WORKERS];

static void fill(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		memset(b->p[i], (int)(b->tag + i) & 0xff, b->size);
}

/* Checks b's pattern, then frees it in one call. */
static void check_and_free(struct worker *w, struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		const unsigned char *c = b->p[i];
		for (size_t k = 0; k < b->size; k += 7)
			if (c[k] != ((b->tag + i) & 0xff)) {
				stress_fail(&w->failures,
				            "batch %u entry %zu (%p) byte %zu "
				            "overwritten",
				            b->tag, i, b->p[i], k);
				break;
			}
	}
	spanheap_free_bulk(&sh, b->n, b->p);
	b->n = 0;
}

/* Takes the batches handed to w and frees them. */
static void drain(struct worker *w)
{
	struct batch got[BOX];
	pthread_mutex_lock(&w->lock);
	size_t n = w->nbox;
	memcpy(got, w->box, n * sizeof(got[0]));
	w->nbox = 0;
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < n; i++)
		check_and_free(w, &got[i]);
}

/* Hands b to worker to; false if its box is full. */
static bool hand_over(struct worker *to, const struct batch *b)
{
	pthread_mutex_lock(&to->lock);
	bool room = to->nbox < BOX;
	if (room)
		to->box[to->nbox++] = *b;
	pthread_mutex_unlock(&to->lock);
	return room;
}

static void work(void *arg)
{
	struct worker *w = arg;
	mm_port_set_cpu((unsigned)w->id);
	for (int k = 0; k < BATCHES; k++) {
		uint64_t r = stress_random(&w->rng);
		struct batch *b = &w->mine;
		b->n = 1 + r % MAXN;
		b->size = r % 97 == 0 ? 40000 : 1 + (r >> 8) % 1024;
		b->tag = (unsigned)(w->id * BATCHES + k);
		unsigned flags = (r >> 20) % 4 == 0 ? MM_ZERO : 0;
		if (spanheap_alloc_bulk(&sh, b->size, flags, b->n, b->p) !=
		    b->n) {
			stress_fail(&w->failures, "batch %d of %zu failed", k,
			            b->n);
			break;
		}
		if ((flags & MM_ZERO) && !all_bytes(b->p[b->n - 1], b->size, 0))
			stress_fail(&w->failures, "batch %d not zeroed", k);
		fill(b);
		if (k % 2 == 0 && hand_over(&workers[1 - w->id], b))
			b->n = 0;
		else
			check_and_free(w, b);
		drain(w);
	}
}

KTEST(spanheap_bulk_stress, threads_free_each_others_batches)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	spanheap_release_all(&sh);
	size_t base = sh_in_use_pages(&heap);
	KASSERT(spanheap_sweeper_start(&sh));
	struct mm_thread *t[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		workers[i] = (struct worker){.id = i,
		                             .rng = 0x9e3779b97f4a7c15ull *
		                                    (uint64_t)(i + 1)};
		pthread_mutex_init(&workers[i].lock, NULL);
	}
	KASSERT(start_all(t, WORKERS, work, workers, sizeof(workers[0])));
	join_all(t, WORKERS);
	spanheap_sweeper_stop(&sh);
	for (int i = 0; i < WORKERS; i++) {
		mm_port_set_cpu((unsigned)i);
		drain(&workers[i]); /* batches handed over after its last */
		spanheap_flush_cache(&sh);
		STRESS_REPORT(i, &workers[i].failures);
		pthread_mutex_destroy(&workers[i].lock);
	}
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "after the workers");
	spanheap_release_all(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap), base);
	sh_heap_release(&heap, &sh);
}
