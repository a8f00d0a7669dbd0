/*
 * KASAN for the kernel heap (mm.kasan): a shadow byte for every 8 bytes of
 * the kernel heap's arena, kept by the span heap's poison-mode paths
 * through mm_port_shadow (mm/port.h), and checked by every load and store
 * of code built with -fsanitize=kernel-address (the KASAN image's kernel/
 * and tests/kernel/, the Makefile's KASAN_NOT_SRCS aside; the plain
 * image's KASAN_SRCS), which calls __asan_load<N>_noabort /
 * __asan_store<N>_noabort before it. A bad access is reported at the access:
 * what it was (an overrun into a red zone, a use after free, ...), the access,
 * the code that made it, the object and who allocated and freed it; then a
 * panic.
 *
 * Shadow bytes, as Linux's generic KASAN: 0, all 8 bytes accessible;
 * 1 to 7, that many first bytes; negative, none, for the reason the code
 * below names. Off (no mm.kasan), every callback returns at its first
 * test and the heap keeps no shadow.
 */
#ifndef KERNEL_KASAN_H
#define KERNEL_KASAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shadow's codes for inaccessible granules (mm/port.h's enum
 * mm_shadow, as a byte). */
#define KASAN_REDZONE   ((int8_t)0xfc) /* a small object's slack */
#define KASAN_FREED     ((int8_t)0xfb) /* a small object freed */
#define KASAN_UNUSED    ((int8_t)0xfa) /* never handed out; a span's tail */
#define KASAN_PAGE_FREE ((int8_t)0xff) /* pages given back to the page heap */

/* Sets up the shadow of the arena [base, +nbytes) (the kernel heap's,
 * before anything of it is used): reserves its address space and maps
 * the bitmap of its mapped pages. Returns false, nothing kept mapped but
 * address space, if either cannot be had. Boot, once. */
bool kasan_init(uintptr_t base, size_t nbytes);
/* True once kasan_init succeeded. Any context. */
bool kasan_enabled(void);

/* The arena's pages [base, +nbytes) are about to be used (mm_port_used):
 * maps the shadow pages they need, each zeroed (accessible) and kept for
 * good. False if a frame cannot be had. Any context mm_port_used is; takes
 * the kasan map lock (rank KASAN), and the vm and frames locks under it. */
bool kasan_shadow_used(uintptr_t base, size_t nbytes);

/* Frames the shadow's pages hold (mapped for good, also counted by
 * heap_meta_frames): 0 without mm.kasan. Any context. */
size_t kasan_shadow_frames(void);

/* The shadow byte of p; *mapped false (and 0 returned) for an address
 * outside the arena or one whose shadow page was never mapped. Any
 * context. */
int8_t kasan_shadow_of(const void *p, bool *mapped);

/* The string functions for instrumented code (kernel/kasan_checked.h
 * renames memcpy, memset and memmove to them): the ranges are checked,
 * then the kernel's own function does the work. */
void *kasan_memcpy(void *restrict dst, const void *restrict src, size_t n);
void *kasan_memset(void *dst, int c, size_t n);
void *kasan_memmove(void *dst, const void *src, size_t n);

/* KASAN_UNCHECKED marks a function whose own loads and stores are not
 * checked in an instrumented object (the KASAN image's, KASAN_SRCS'; no
 * effect elsewhere): for code that touches heap memory the shadow
 * forbids on purpose, as a test of the heap's poison, red zone or free
 * marker does, or a probe that expects a fault. Its memcpy, memset and
 * memmove calls are still checked (kasan_checked.h): spell one
 * (memset)(...) to call string.c's own. The narrowest way out, so each
 * use says why. */
#ifdef __SANITIZE_ADDRESS__
#define KASAN_UNCHECKED __attribute__((no_sanitize_address))
#else
#define KASAN_UNCHECKED
#endif

/* The byte and the word at p, read unchecked (KASAN_UNCHECKED): what the
 * heap wrote into a freed object or a red zone, for a test to look at. */
static inline KASAN_UNCHECKED uint8_t kasan_peek_u8(const void *p)
{
	return *(const volatile uint8_t *)p;
}
static inline KASAN_UNCHECKED uint64_t kasan_peek_u64(const void *p)
{
	return *(const volatile uint64_t *)p;
}

/* Tests: while a struct kasan_seen is armed, a bad access on any CPU is
 * counted into it (atomically), its first one kept, and no panic is
 * made; with say set, the first one's report is printed too, all but
 * the panic (the lines a test reads). One armed at a time. */
struct kasan_seen {
	bool say;
	unsigned reports;
	uintptr_t addr, bad;
	size_t size;
	bool write;
	int8_t shadow;
	const char *kind;
};
void kasan_expect(struct kasan_seen *seen);

/* kasan_report.c: reports the access [addr, +size) (a write or not, by
 * the code at pc) whose byte bad has shadow byte shadow. Panics unless a
 * test armed kasan_expect. */
void kasan_report(uintptr_t addr, size_t size, bool write, uintptr_t pc,
                  uintptr_t bad, int8_t shadow);
/* "use-after-free", "slab-out-of-bounds", ...: what shadow byte v at an
 * access means. */
const char *kasan_kind(int8_t v);

#endif
