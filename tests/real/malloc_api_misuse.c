/*
 * tests/real/malloc_api_misuse.c: the misuse matrix of libmm_malloc.so
 * (docs/DESIGN.md, "What misuse is caught"): every entry that takes a
 * caller's pointer (free, realloc, reallocarray, malloc_usable_size)
 * given every kind of bad pointer. Each misuse must abort the program
 * with a line "mm_malloc: ..." that names the pointer, the words of its
 * kind and, for a pointer into a live span, the span and its size class.
 * The legal cells (NULL; memory of aligned_alloc, posix_memalign,
 * memalign, valloc) must pass through every entry.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "malloc_api_test.h"

enum { M_FREE, M_REALLOC, M_REALLOCARRAY, M_USABLE, M_ROWS };
static const char *const m_row[M_ROWS] = {"free", "realloc", "reallocarray",
                                          "malloc_usable_size"};

static int row;   /* the child's entry */
static void *bad; /* the child's pointer (made in the parent) */
static int m_static;

static void call_row(void *p)
{
	switch (row) {
	case M_FREE:
		free(p);
		break;
	case M_REALLOC:
		free(realloc(p, 200));
		break;
	case M_REALLOCARRAY:
		free(reallocarray(p, 2, 100));
		break;
	default:
		(void)malloc_usable_size(p);
		break;
	}
}

static void *freed_here(void)
{
	void *p = malloc(48);
	free(p);
	return p;
}

static void *free_it(void *p)
{
	free(p);
	return NULL;
}

static void *freed_by_a_thread(void)
{
	void *p = malloc(48);
	pthread_t t;
	pthread_create(&t, NULL, free_it, p);
	pthread_join(t, NULL);
	return p;
}

static void *freed_large(void)
{
	void *p = malloc(1 << 20);
	free(p);
	return p;
}

static void *small_plus1(void)
{
	return (char *)malloc(64) + 1;
}

static void *small_plus8(void)
{
	return (char *)malloc(64) + 8;
}

static void *small_last(void)
{
	return (char *)malloc(64) + 63;
}

static void *large_plus1(void)
{
	return (char *)malloc(1 << 20) + 1;
}

static void *large_last(void)
{
	return (char *)malloc(1 << 20) + (1 << 20) - 1;
}

static void *large_tail_page(void)
{
	return (char *)malloc(1 << 20) + 3 * 4096;
}

static void *aligned_plus16(void)
{
	return (char *)aligned_alloc(4096, 100) + 16;
}

static void *static_data(void)
{
	return &m_static;
}

static void *a_mapping(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

#define DF         "double free"
#define USED_FREED "of an object already freed"
#define IN         "interior pointer"
#define IN_LARGE   "interior pointer of a large object"
#define FOREIGN    "foreign pointer"
#define ALL(w)             \
	{                  \
		w, w, w, w \
	}

static const struct m_column {
	const char *name;
	void *(*make)(void);
	const char *want[M_ROWS];
	bool span; /* a live span's: named with its size class */
} m_columns[] = {
        {"freed here", freed_here, {DF, USED_FREED, USED_FREED, USED_FREED}, 1},
        {"freed by a thread",
         freed_by_a_thread,
         {DF, USED_FREED, USED_FREED, USED_FREED},
         1},
        {"large, freed", freed_large, ALL("a large span freed twice"), 0},
        {"small, 1 byte in", small_plus1, ALL(IN), 1},
        {"small, 8 bytes in", small_plus8, ALL(IN), 1},
        {"small, last byte", small_last, ALL(IN), 1},
        {"large, 1 byte in", large_plus1, ALL(IN_LARGE), 1},
        {"large, last byte", large_last, ALL(IN_LARGE), 1},
        {"large, a tail page", large_tail_page, ALL(IN_LARGE), 1},
        {"aligned_alloc's, 16 bytes in", aligned_plus16, ALL(IN), 1},
        {"static data", static_data, ALL(FOREIGN), 0},
        {"an mmap", a_mapping, ALL(FOREIGN), 0},
};

static void child_call(void)
{
	call_row(bad);
}

static int on_stack_dummy;

/* The stack's cell: the pointer is the child's own local. */
static void child_stack(void)
{
	int x = on_stack_dummy;
	bad = &x;
	call_row(&x);
}

static const char *m_cell(int r, const struct m_column *c)
{
	char out[4096], addr[32];
	row = r;
	bad = c->make();
	CHECK(bad, "%s(%s): no pointer made", m_row[r], c->name);
	int st = in_child(child_call, out, sizeof(out));
	snprintf(addr, sizeof(addr), "%p", bad);
	const char *line = strstr(out, "mm_malloc: ");
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
	      "%s(%s): child status %#x, stderr: %s", m_row[r], c->name, st,
	      out);
	CHECK(line && strstr(line, c->want[r]) && strstr(line, addr) &&
	              (!c->span ||
	               (strstr(line, "span [") && strstr(line, "size class"))),
	      "%s(%s): stderr lacks \"%s\", %s%s: %s", m_row[r], c->name,
	      c->want[r], addr, c->span ? ", the span and its class" : "", out);
	return NULL;
}

/* The legal cells: NULL and the aligned allocators' memory through every
 * entry, in this process. */
static const char *m_legal(void)
{
	free(NULL);
	CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
	void *n = realloc(NULL, 10), *m = reallocarray(NULL, 3, 10);
	CHECK(n && m, "realloc(NULL) %p, reallocarray(NULL) %p", n, m);
	free(n);
	free(m);
	for (size_t align = 16; align <= (1 << 16); align <<= 2) {
		void *p[4] = {aligned_alloc(align, 100), memalign(align, 300),
		              valloc(5000), NULL};
		CHECK(posix_memalign(&p[3], align, 40000) == 0,
		      "posix_memalign(%zu)", align);
		for (int i = 0; i < 4; i++) {
			CHECK(p[i] && malloc_usable_size(p[i]) >= 100,
			      "aligned %zu, %d: %p", align, i, p[i]);
			p[i] = i & 1 ? reallocarray(p[i], 2, 30000)
			             : realloc(p[i], 70000);
			CHECK(p[i] && malloc_usable_size(p[i]) >= 60000,
			      "aligned %zu, %d: realloc gave %p", align, i,
			      p[i]);
			free(p[i]);
		}
	}
	return NULL;
}

const char *test_misuse_matrix(void)
{
	const char *e = m_legal();
	for (int r = 0; !e && r < M_ROWS; r++) {
		for (size_t i = 0;
		     !e && i < sizeof(m_columns) / sizeof(m_columns[0]); i++)
			e = m_cell(r, &m_columns[i]);
		char out[4096];
		row = r;
		int st = in_child(child_stack, out, sizeof(out));
		if (!e &&
		    !(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
		      strstr(out, "mm_malloc: ") && strstr(out, FOREIGN))) {
			snprintf(why, sizeof(why), "%s(stack): status %#x: %s",
			         m_row[r], st, out);
			e = why;
		}
	}
	return e;
}
