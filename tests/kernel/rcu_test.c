/*
 * kfree_rcu under readers on every CPU (kernel/rcu.h): a list of
 * pattern-filled kmalloc'd nodes that readers walk inside read-side
 * sections, keeping every node they saw and checking it again and again
 * for a tick or two before they leave, while a writer replaces nodes
 * and frees the old ones with kfree_rcu. A node freed before a reader
 * that held it left its section shows the heap's poison (mm.debug_poison)
 * or a newer node's pattern: a failure. Then the frame pool and the
 * heap's checker must show nothing kept.
 */
#include <stdatomic.h>

#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/rcu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "tests/kernel/heap_util.h"

#define NODES    16
#define WORDS    8
#define TAG      0x7e57c0de00000000ull
#define GPS      12 /* grace periods the writer runs for */
#define PER_TICK 4  /* replacements between the writer's sleeps */

struct node {
	struct node *next;
	uint64_t pattern; /* TAG | generation */
	uint64_t w[WORDS];
	struct rcu_head rcu;
};

static struct node *list_head;
static _Atomic bool writer_done;
static _Atomic uint64_t n_bad, n_sections, n_checks, n_replaced;
static _Atomic uint64_t first_bad;
static uint64_t generation;

static struct node *node_new(void)
{
	struct node *n = kmalloc(sizeof(*n), 0);
	if (!n)
		return NULL;
	n->pattern = TAG | ++generation;
	for (unsigned j = 0; j < WORDS; j++)
		n->w[j] = n->pattern * 31 + j;
	return n;
}

/* True if n holds a whole pattern. */
static bool node_ok(const struct node *n)
{
	const volatile struct node *v = n;
	uint64_t p = v->pattern;
	if ((p & 0xffffffff00000000ull) != TAG)
		return false;
	for (unsigned j = 0; j < WORDS; j++)
		if (v->w[j] != p * 31 + j)
			return false;
	return true;
}

static void note_bad(const struct node *n)
{
	uint64_t zero = 0;
	atomic_compare_exchange_strong(
	        &first_bad, &zero,
	        ((const volatile struct node *)n)->pattern | 1);
	atomic_fetch_add(&n_bad, 1);
}

/* One section: collects the nodes, then checks them until hold_ns has
 * passed (the nodes must stay whole all the while). */
static void read_section(uint64_t hold_ns)
{
	struct node *seen[NODES + 1];
	unsigned n = 0;
	rcu_read_lock();
	for (struct node *p = rcu_dereference(list_head); p && n <= NODES;
	     p = rcu_dereference(p->next))
		seen[n++] = p;
	uint64_t t0 = time_now_ns();
	do {
		for (unsigned i = 0; i < n; i++) {
			if (!node_ok(seen[i]))
				note_bad(seen[i]);
			atomic_fetch_add(&n_checks, 1);
		}
	} while (time_now_ns() - t0 < hold_ns);
	rcu_read_unlock();
	if (n != NODES)
		atomic_fetch_add(&n_bad, 1);
	atomic_fetch_add(&n_sections, 1);
}

/* Sections of a walk, a tick or ten ticks, at random: a CPU whose long
 * section a grace period did not wait for sees its nodes freed, the
 * others' short sections having ended the grace period early. CPU 0's
 * reader only walks: the writer and the rcu thread run there, and a
 * section there would hold both up. */
static void reader(void *arg)
{
	static const uint64_t holds[4] = {0, 0, SCHED_TICK_NS,
	                                  10 * SCHED_TICK_NS};
	unsigned cpu = this_cpu()->id;
	uint64_t x = 0x9e3779b97f4a7c15ull * (cpu + 1);
	while (!atomic_load(&writer_done)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		read_section(cpu == 0 ? 0 : holds[x % 4]);
		thread_sleep_ns(0);
	}
}

/* Replaces the node at position i with a new one; false if no memory. */
static bool replace(unsigned i)
{
	struct node **link = &list_head;
	for (unsigned k = 0; k < i; k++)
		link = &(*link)->next;
	struct node *old = *link, *n = node_new();
	if (!n)
		return false;
	n->next = old->next;
	rcu_assign_pointer(*link, n);
	kfree_rcu(old, rcu);
	atomic_fetch_add(&n_replaced, 1);
	return true;
}

static bool list_build(void)
{
	for (unsigned i = 0; i < NODES; i++) {
		struct node *n = node_new();
		if (!n)
			return false;
		n->next = list_head;
		rcu_assign_pointer(list_head, n);
	}
	return true;
}

static void list_free(void)
{
	struct node *n = list_head;
	rcu_assign_pointer(list_head, NULL);
	synchronize_rcu();
	while (n) {
		struct node *next = n->next;
		kfree(n);
		n = next;
	}
}

/* Readers on every online CPU, the writer here, for GPS grace periods. */
static bool run_round(void)
{
	struct thread_handle h[MAX_CPUS];
	unsigned nh = 0;
	atomic_store(&writer_done, false);
	if (!list_build())
		return false;
	for (unsigned c = 0; c < MAX_CPUS; c++)
		if (atomic_load(&cpus[c].online)) {
			h[nh] = thread_create("rcu_reader", reader, NULL, c);
			if (thread_handle_ok(h[nh]))
				nh++;
		}
	struct rcu_stats st0, st;
	rcu_stats(&st0);
	bool ok = nh > 0;
	unsigned i = 0;
	do {
		for (unsigned k = 0; k < PER_TICK && ok; k++)
			ok = replace(i++ % NODES);
		thread_sleep_ns(0);
		rcu_stats(&st);
	} while (ok && st.gp_completed < st0.gp_completed + GPS);
	atomic_store(&writer_done, true);
	for (unsigned k = 0; k < nh; k++)
		thread_join(h[k]);
	list_free();
	rcu_barrier();
	return ok;
}

KTEST(rcu, readers_on_every_cpu_never_see_a_node_kfree_rcu_freed)
{
	struct rcu_stats st0, st;
	KASSERT(run_round()); /* warm-up: stacks, spans, tables in place */
	heap_settle();
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	atomic_store(&n_bad, 0);
	atomic_store(&first_bad, 0);
	atomic_store(&n_sections, 0);
	atomic_store(&n_replaced, 0);
	rcu_stats(&st0);
	KASSERT(run_round());
	rcu_stats(&st);
	heap_settle();
	size_t meta = span_meta_pages();
	ktest_diag("%lu sections, %lu node checks, %lu nodes replaced, %lu "
	           "grace periods, %lu callbacks run",
	           (unsigned long)atomic_load(&n_sections),
	           (unsigned long)atomic_load(&n_checks),
	           (unsigned long)atomic_load(&n_replaced),
	           (unsigned long)(st.gp_completed - st0.gp_completed),
	           (unsigned long)(st.cbs_run - st0.cbs_run));
	uint64_t bad = atomic_load(&n_bad), first = atomic_load(&first_bad);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(first, 0); /* the first bad node's pattern word, | 1 */
	KEXPECT(atomic_load(&n_replaced) > 0);
	KEXPECT_EQ(st.waiting, 0);
	KEXPECT_EQ(st.cbs_run - st0.cbs_run, st.cbs_queued - st0.cbs_queued);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
}
