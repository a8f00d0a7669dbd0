/*
 * tests/real/malloc_api_diff_ops.c: the randomized differential test's
 * operations (malloc_api_diff.c runs them): each draws its arguments,
 * calls the API and checks the result as glibc 2.36 documents it:
 *   - an impossible size (past the address space, n * size overflowing,
 *     a size that overflows when rounded to pages) fails with NULL and
 *     errno ENOMEM; a failed realloc or reallocarray leaves the object
 *     as it was;
 *   - memalign and aligned_alloc refuse an alignment above SIZE_MAX / 2 + 1
 *     (EINVAL), round one that is not a power of two up, and align to at
 *     least 16; posix_memalign refuses one that is 0, not a power of two
 *     or not a multiple of sizeof(void *) (EINVAL), returns the error
 *     and leaves errno and its output as they were;
 *   - realloc(p, 0) frees p and returns NULL; calloc(n, 0) succeeds;
 *   - a call that succeeds, and free, leave errno as it was;
 *   - under a memory limit (diff_data_limited) any allocation may fail
 *     with ENOMEM, and a realloc that does leaves the object intact.
 * Sizes come from the size classes (mm/sizeclasses.h) and pages, each
 * with one byte either side, and small, medium and large random sizes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "malloc_api_diff.h"
#include "mm/sizeclasses.h"

/* glibc's second names (malloc.c): the same functions, called now and
 * then. glibc exports them but declares none. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/* The impossible sizes are the point: GCC warns of the constant ones.
 * Clang has no such warning, and -Werror refuses its name. */
#ifndef __clang__
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#endif

/* Any size (or alignment) at least this is impossible: 1 TiB, more than
 * the machine's memory and swap, which glibc refuses (ENOMEM) under
 * Linux's default overcommit heuristic; most of huge[] is past the
 * 47-bit address space. */
#define HUGE_SIZE (1ull << 40)

static size_t edge[3 * SC_NCLASSES + 3 * 24 + 8];
static size_t nedge;

static void add_around(size_t s)
{
	edge[nedge++] = s - 1;
	edge[nedge++] = s;
	edge[nedge++] = s + 1;
}

/* The edge sizes: 0, 1, each class and each page multiple up to 16
 * pages (and some beyond) with one byte either side. */
void diff_sizes_init(void)
{
	static const size_t far[] = {32, 64, 256, 257, 1024};
	nedge = 0;
	edge[nedge++] = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		add_around(sizeclass_info[cls].size);
	for (size_t k = 1; k <= 16; k++)
		add_around(k * PAGE);
	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++)
		add_around(far[i] * PAGE);
}

static const size_t huge[] = {
        SIZE_MAX,         SIZE_MAX - 1,  SIZE_MAX - PAGE,
        SIZE_MAX - 16,    PTRDIFF_MAX,   (size_t)PTRDIFF_MAX + 1,
        1ull << 62,       HUGE_SIZE + 1, 1ull << 44,
        (1ull << 40) + 1,
};

/* n * size overflows for each pair. */
static const size_t overflow[][2] = {
        {SIZE_MAX / 2 + 1, 2}, {1ull << 32, 1ull << 32}, {SIZE_MAX, SIZE_MAX},
        {3, SIZE_MAX / 3 + 1}, {SIZE_MAX / 16 + 1, 16},  {2, SIZE_MAX},
};

#define PICK(t, a) ((a)[diff_rand(t) % (sizeof(a) / sizeof((a)[0]))])

static size_t rand_size(struct diff_thread *t)
{
	unsigned r = (unsigned)(diff_rand(t) % 100);
	if (r < 50)
		return edge[diff_rand(t) % nedge];
	if (r < 80)
		return diff_rand(t) % 1024;
	if (r < 97)
		return diff_rand(t) % (2 * SC_MAX_SIZE);
	return diff_rand(t) % (4ul << 20);
}

static size_t small_size(struct diff_thread *t)
{
	size_t s = rand_size(t);
	return s <= SC_MAX_SIZE ? s : s % 512;
}

/* Whether a call that could succeed failed for want of memory, which
 * only the run under a memory limit allows (counted). */
static bool out_of_memory(struct diff_thread *t, bool failed, int err)
{
	if (!failed || !diff_data_limited || err != ENOMEM)
		return false;
	t->ooms++;
	return true;
}

/* A new object p of a call that must have succeeded: checked and held. */
static const char *got(struct diff_thread *t, const char *call, void *p,
                       size_t size, size_t align, bool zeroed)
{
	if (out_of_memory(t, !p, errno))
		return NULL;
	DCHECK(t, p != NULL, "%s returned NULL, errno %d", call, errno);
	DCHECK(t, errno == ERRNO_MARK, "%s succeeded but set errno to %d", call,
	       errno);
	struct diff_obj o = {.p = p, .size = size, .align = align};
	const char *e = diff_adopt(t, &o, zeroed);
	if (e)
		return e;
	return diff_hold(t, &o);
}

/* A call that must have failed with err. */
static const char *failed(struct diff_thread *t, const char *call, void *p,
                          int err)
{
	DCHECK(t, p == NULL, "%s returned %p, not NULL", call, p);
	DCHECK(t, errno == err, "%s: errno %d, not %d", call, errno, err);
	return NULL;
}

static const char *op_malloc(struct diff_thread *t)
{
	char call[64];
	bool bad = diff_rand(t) % 16 == 0;
	size_t n = bad ? PICK(t, huge) : rand_size(t);
	snprintf(call, sizeof(call), "malloc(%#zx)", n);
	errno = ERRNO_MARK;
	void *p = diff_rand(t) % 8 ? malloc(n) : __libc_malloc(n);
	return bad ? failed(t, call, p, ENOMEM) : got(t, call, p, n, 16, false);
}

static const char *op_calloc(struct diff_thread *t)
{
	static const size_t elem[] = {1, 2, 3, 8, 16, 24, 100};
	char call[80];
	size_t n, s;
	unsigned r = (unsigned)(diff_rand(t) % 16);
	const size_t *o = PICK(t, overflow);
	if (r == 0)
		n = o[0], s = o[1];
	else if (r == 1)
		n = 1, s = PICK(t, huge);
	else if (r == 2)
		n = diff_rand(t) % 2 ? SIZE_MAX : 0, s = n ? 0 : SIZE_MAX;
	else
		s = PICK(t, elem), n = rand_size(t) / s;
	size_t total;
	bool bad = __builtin_mul_overflow(n, s, &total) || total >= HUGE_SIZE;
	snprintf(call, sizeof(call), "calloc(%#zx, %#zx)", n, s);
	errno = ERRNO_MARK;
	void *p = diff_rand(t) % 8 ? calloc(n, s) : __libc_calloc(n, s);
	return bad ? failed(t, call, p, ENOMEM)
	           : got(t, call, p, total, 16, true);
}

/* realloc or reallocarray of a held object (or NULL) to size n * s. */
static const char *resize(struct diff_thread *t, bool array, size_t n, size_t s)
{
	char call[96];
	size_t total;
	bool bad = __builtin_mul_overflow(n, s, &total) || total >= HUGE_SIZE;
	struct diff_obj o = {0};
	if (t->nlive && diff_rand(t) % 8)
		o = diff_take(t, (int)(diff_rand(t) % (uint64_t)t->nlive));
	if (array)
		snprintf(call, sizeof(call), "reallocarray(%p, %#zx, %#zx)",
		         (void *)o.p, n, s);
	else
		snprintf(call, sizeof(call), "realloc(%p, %#zx)", (void *)o.p,
		         total);
	if (o.p)
		diff_release(&o);
	errno = ERRNO_MARK;
	unsigned char *p = array              ? reallocarray(o.p, n, s)
	                   : diff_rand(t) % 8 ? realloc(o.p, total)
	                                      : __libc_realloc(o.p, total);
	if (bad) {
		const char *e = failed(t, call, p, ENOMEM);
		if (!e && o.p)
			e = diff_keep(t, &o); /* intact, still ours */
		return e ? e : o.p ? diff_hold(t, &o) : NULL;
	}
	if (o.p && total == 0) { /* freed */
		DCHECK(t, p == NULL && errno == ERRNO_MARK,
		       "%s: returned %p, errno %d; wanted NULL, errno kept",
		       call, (void *)p, errno);
		return NULL;
	}
	if (o.p && out_of_memory(t, !p, errno)) { /* intact, still ours */
		const char *e = diff_keep(t, &o);
		return e ? e : diff_hold(t, &o);
	}
	if (p && o.p) { /* the old prefix, in the new place */
		struct diff_obj moved = o;
		moved.p = p;
		const char *e = diff_check_prefix(
		        t, &moved, total < o.size ? total : o.size);
		if (e)
			return e;
	}
	return got(t, call, p, total, 16, false);
}

static const char *op_realloc(struct diff_thread *t)
{
	unsigned r = (unsigned)(diff_rand(t) % 16);
	if (r == 0)
		return resize(t, false, PICK(t, huge), 1);
	if (r == 1)
		return resize(t, false, 0, 1);
	return resize(t, false, rand_size(t), 1);
}

static const char *op_reallocarray(struct diff_thread *t)
{
	static const size_t elem[] = {1, 4, 8, 16, 24, 48};
	unsigned r = (unsigned)(diff_rand(t) % 16);
	const size_t *o = PICK(t, overflow);
	if (r == 0)
		return resize(t, true, o[0], o[1]);
	if (r == 1)
		return resize(t, true, 0, PICK(t, elem));
	size_t s = PICK(t, elem);
	return resize(t, true, rand_size(t) / s, s);
}

static const char *op_free(struct diff_thread *t)
{
	if (!t->nlive) {
		errno = ERRNO_MARK;
		free(NULL);
		DCHECK(t, errno == ERRNO_MARK, "free(NULL) set errno %d",
		       errno);
		return NULL;
	}
	struct diff_obj o =
	        diff_take(t, (int)(diff_rand(t) % (uint64_t)t->nlive));
	return diff_free(t, &o);
}

static const size_t aligns[] = {
        0,
        1,
        2,
        3,
        4,
        8,
        12,
        16,
        17,
        24,
        32,
        48,
        64,
        100,
        128,
        256,
        1000,
        1024,
        2048,
        4096,
        4097,
        3 * 4096,
        8192,
        16384,
        65536,
        1ul << 20,
        1ull << 50,
        1ull << 62,
        SIZE_MAX / 2 + 1,
        SIZE_MAX / 2 + 2,
        SIZE_MAX,
};

/* What memalign(align, size) must do: 0, EINVAL or ENOMEM; *eff is the
 * alignment the object must have. */
static int memalign_wants(size_t align, size_t size, size_t *eff)
{
	if (align > SIZE_MAX / 2 + 1)
		return EINVAL;
	size_t a = 16;
	while (a < align)
		a <<= 1;
	*eff = a;
	return a >= HUGE_SIZE || size >= HUGE_SIZE ? ENOMEM : 0;
}

/* A size for an alignment: impossible now and then, else smaller for a
 * larger alignment (which may take twice its bytes). */
static size_t size_for(struct diff_thread *t, size_t align)
{
	if (diff_rand(t) % 16 == 0)
		return PICK(t, huge);
	size_t s = rand_size(t);
	return align >= 65536 ? s % 65536 : s;
}

/* memalign, aligned_alloc, valloc or pvalloc. */
static const char *op_memalign(struct diff_thread *t)
{
	static const char *const names[] = {
	        "memalign",      "aligned_alloc",   "valloc",
	        "pvalloc",       "__libc_memalign", "aligned_alloc",
	        "__libc_valloc", "__libc_pvalloc"};
	unsigned which = (unsigned)(diff_rand(t) % 8); /* + 4: glibc's name */
	size_t align = which % 4 < 2 ? PICK(t, aligns) : PAGE, eff = 16;
	size_t size = size_for(t, align), want = size;
	int err = memalign_wants(align, size, &eff);
	if (which % 4 == 3 && !err) { /* pvalloc: whole pages */
		if (size > SIZE_MAX - (PAGE - 1))
			err = ENOMEM;
		else
			want = (size + PAGE - 1) & ~(PAGE - 1);
	}
	char call[80];
	snprintf(call, sizeof(call), "%s(%#zx, %#zx)", names[which], align,
	         size);
	errno = ERRNO_MARK;
	void *p = NULL;
	switch (which) {
	case 0:
		p = memalign(align, size);
		break;
	case 1:
	case 5:
		p = aligned_alloc(align, size);
		break;
	case 2:
		p = valloc(size);
		break;
	case 3:
		p = pvalloc(size);
		break;
	case 4:
		p = __libc_memalign(align, size);
		break;
	case 6:
		p = __libc_valloc(size);
		break;
	case 7:
		p = __libc_pvalloc(size);
		break;
	}
	return err ? failed(t, call, p, err)
	           : got(t, call, p, want, eff, false);
}

static const char *op_posix_memalign(struct diff_thread *t)
{
	size_t align = PICK(t, aligns), eff = 16, size = size_for(t, align);
	int err = align % sizeof(void *) || !align || (align & (align - 1))
	                  ? EINVAL
	                  : memalign_wants(align, size, &eff);
	char call[80];
	snprintf(call, sizeof(call), "posix_memalign(%#zx, %#zx)", align, size);
	void *p = (void *)&err; /* must stay so on failure */
	errno = ERRNO_MARK;
	int r = posix_memalign(&p, align, size);
	if (!err && out_of_memory(t, r != 0, r))
		err = ENOMEM;
	DCHECK(t, r == err, "%s returned %d, not %d", call, r, err);
	DCHECK(t, errno == ERRNO_MARK, "%s set errno to %d", call, errno);
	if (err) {
		DCHECK(t, p == (void *)&err, "%s failed but set *memptr to %p",
		       call, p);
		return NULL;
	}
	return got(t, call, p, size, eff, false);
}

/* Fast paths: same-size malloc (or calloc) and free pairs, then a stack
 * of them freed last first; calloc must clear what malloc's user wrote. */
static const char *op_burst(struct diff_thread *t)
{
	size_t s = small_size(t);
	int n = 1 + (int)(diff_rand(t) % BURST);
	struct diff_obj v[BURST];
	char call[64];
	for (int i = 0; i < 2 * n; i++) {
		bool zero = diff_rand(t) % 4 == 0;
		snprintf(call, sizeof(call), "%s(%#zx) in a burst",
		         zero ? "calloc" : "malloc", s);
		errno = ERRNO_MARK;
		struct diff_obj *o = &v[i < n ? 0 : i - n];
		*o = (struct diff_obj){.size = s, .align = 16};
		o->p = zero ? calloc(1, s) : malloc(s);
		if (out_of_memory(t, !o->p, errno)) {
			n = i < n ? 0 : i - n; /* those held */
			break;
		}
		DCHECK(t, o->p && errno == ERRNO_MARK, "%s: %p, errno %d", call,
		       (void *)o->p, errno);
		const char *e = diff_adopt(t, o, zero);
		if (!e && i < n)
			e = diff_free(t, o);
		if (e)
			return e;
	}
	for (int i = n - 1; i >= 0; i--) {
		const char *e = diff_free(t, &v[i]);
		if (e)
			return e;
	}
	return NULL;
}

static const char *op_usable(struct diff_thread *t)
{
	DCHECK(t, malloc_usable_size(NULL) == 0,
	       "malloc_usable_size(NULL) is not 0");
	return t->nlive
	               ? diff_check(t,
	                            &t->live[diff_rand(t) % (uint64_t)t->nlive])
	               : NULL;
}

/* malloc_trim, which gives free pages back while other threads allocate
 * and free (their objects must stay intact: the full checks), or
 * mallinfo2, which walks the heap meanwhile; each keeps errno. */
static const char *op_trim_info(struct diff_thread *t)
{
	errno = ERRNO_MARK;
	if (diff_rand(t) % 2) {
		int r = malloc_trim(0);
		DCHECK(t, r == 0 || r == 1, "malloc_trim(0) returned %d", r);
	} else {
		struct mallinfo2 m = mallinfo2();
		DCHECK(t,
		       m.arena >= m.uordblks &&
		               m.fordblks == m.arena - m.uordblks,
		       "mallinfo2: arena %zu, uordblks %zu, fordblks %zu",
		       m.arena, m.uordblks, m.fordblks);
	}
	DCHECK(t, errno == ERRNO_MARK, "malloc_trim or mallinfo2 set errno %d",
	       errno);
	return NULL;
}

/* One random operation, by weight. */
const char *diff_op(struct diff_thread *t)
{
	static const struct {
		unsigned weight;
		const char *(*fn)(struct diff_thread *);
	} ops[] = {
	        {20, op_malloc},        {8, op_calloc},    {10, op_realloc},
	        {4, op_reallocarray},   {24, op_free},     {5, op_memalign},
	        {5, op_posix_memalign}, {3, op_burst},     {2, op_usable},
	        {4, diff_send},         {1, op_trim_info},
	};
	unsigned total = 0, r;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += ops[i].weight;
	r = (unsigned)(diff_rand(t) % total);
	for (size_t i = 0;; i++) {
		if (r < ops[i].weight)
			return ops[i].fn(t);
		r -= ops[i].weight;
	}
}

/* One operation on the objects other threads handed t (swapped in): each
 * is freed, resized or looked at by its receiver as well as its maker. */
const char *diff_op_received(struct diff_thread *t)
{
	switch (diff_rand(t) % 4) {
	case 0:
		return op_realloc(t);
	case 1:
		return op_usable(t);
	default:
		return op_free(t);
	}
}
