/*
 * kernel/kasan_report.c: KASAN's report of a bad access (kasan.h), made
 * at the access itself: one line naming the bug, the access and the code,
 * then what the span heap knows of the address (the object, its span and
 * class, the bytes asked, who last allocated and freed it:
 * spanheap_where_log), the shadow around it, and a panic. Panicking is
 * the one choice: the access has happened once the check returns, and a
 * kernel that went on would run on memory it knows to be wrong (a test
 * arms kasan_expect to count instead). Not instrumented.
 */
#include "kernel/kasan.h"

#include <stdatomic.h>

#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/ksyms.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"

/* The test's record, if armed (kasan_expect). */
static struct kasan_seen *_Atomic expecting;

void kasan_expect(struct kasan_seen *seen)
{
	atomic_store(&expecting, seen);
}

const char *kasan_kind(int8_t v)
{
	switch (v) {
	case KASAN_FREED:
		return "use-after-free";
	case KASAN_UNUSED:
		return "use-of-never-allocated";
	case KASAN_PAGE_FREE:
		return "use-after-free (pages given back to the page heap)";
	default: /* a red zone, or past a partial granule's bytes */
		return "slab-out-of-bounds";
	}
}

/* Prints the shadow of the 16 granules around bad's, bad's in brackets. */
static void shadow_dump(uintptr_t bad)
{
	char line[16 * 5 + 32];
	size_t n = 0;
	uintptr_t at = (bad & ~(uintptr_t)7) - 8 * 8;
	for (int i = 0; i < 16; i++, at += 8) {
		bool mapped;
		int8_t v = kasan_shadow_of((const void *)at, &mapped);
		bool here = at == (bad & ~(uintptr_t)7);
		n += ksnprintf(line + n, sizeof(line) - n,
		               mapped ? (here ? "[%02x]" : " %02x ")
		                      : (here ? "[--]" : " -- "),
		               (unsigned)(uint8_t)v);
	}
	printk("KASAN: shadow from %#lx, 8 bytes a byte: %s\n",
	       (unsigned long)((bad & ~(uintptr_t)7) - 8 * 8), line);
}

/* Counts the access into the armed record, if any; whether it is the
 * first one of a record that asks for the report's lines (say). */
static bool record(struct kasan_seen *s, uintptr_t addr, size_t size,
                   bool write, uintptr_t bad, int8_t shadow)
{
	/* Any CPU may report (a stress's): the count is exact, the first
	 * report's fields its reporter's. */
	if (__atomic_fetch_add(&s->reports, 1, __ATOMIC_RELAXED) != 0)
		return false;
	s->addr = addr;
	s->bad = bad;
	s->size = size;
	s->write = write;
	s->shadow = shadow;
	s->kind = kasan_kind(shadow);
	return s->say;
}

/* The report's lines: the access, what the heap knows of bad, the
 * shadow around it. */
static void report_lines(uintptr_t addr, size_t size, bool write,
                         const char *code, uintptr_t bad, int8_t shadow)
{
	printk("KASAN: %s %s of size %zu at %#lx by %s on CPU %u (byte "
	       "%#lx: shadow %#x)\n",
	       kasan_kind(shadow), write ? "WRITE" : "READ", size,
	       (unsigned long)addr, code, this_cpu()->id, (unsigned long)bad,
	       (unsigned)(uint8_t)shadow);
	spanheap_where_log(&kspanheap, (const void *)bad);
	shadow_dump(bad);
}

void kasan_report(uintptr_t addr, size_t size, bool write, uintptr_t pc,
                  uintptr_t bad, int8_t shadow)
{
	char code[96];
	struct kasan_seen *s = atomic_load(&expecting);
	if (s) {
		if (record(s, addr, size, write, bad, shadow)) {
			ksyms_format(pc, code, sizeof(code));
			report_lines(addr, size, write, code, bad, shadow);
		}
		return;
	}
	ksyms_format(pc, code, sizeof(code));
	panic_begin(); /* the other CPUs stopped: the lines stay together */
	report_lines(addr, size, write, code, bad, shadow);
	panic("KASAN: %s %s of size %zu at %#lx by %s", kasan_kind(shadow),
	      write ? "WRITE" : "READ", size, (unsigned long)addr, code);
}
