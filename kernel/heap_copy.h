/*
 * kmalloc's arrays, copies, rounded sizes and wiping free, under Linux's
 * names: kmalloc_array, krealloc_array, kmemdup, kstrdup, kstrndup,
 * kmalloc_size_roundup, kfree_sensitive, kfree_bulk (and kmalloc_bulk,
 * ours); and the hardened usercopy
 * check, check_object_size. The kernel's wrappers of mm/spanheap_copy.h
 * and mm/spanheap_usercopy.h over kspanheap (heap.h); a file of its own
 * so that heap.h stays a header of the heap's set-up and core calls.
 *
 * Flags: enum kmalloc_flags (heap.h). Contexts: as kmalloc and kfree
 * (heap.h): without KM_ATOMIC thread context only; with KM_ATOMIC any
 * context but NMI, NULL when memory cannot be had at once; the copies
 * read their source in the caller's context. A size that overflows
 * (n * size) is refused before anything is allocated or freed: NULL and
 * a console line naming the call and the sizes.
 */
#ifndef KERNEL_HEAP_COPY_H
#define KERNEL_HEAP_COPY_H

#include <stdbool.h>
#include <stddef.h>

#include "heap.h"

/* n * size bytes, not zeroed (kcalloc zeroes); NULL if the product
 * overflows. */
static inline void *kmalloc_array(size_t n, size_t size, unsigned flags)
{
	return spanheap_alloc_array(&kspanheap, n, size, flags);
}

/* krealloc(p, n * size); an overflowing product gives NULL and leaves p
 * allocated and unchanged. n or size 0 frees p and returns NULL. */
static inline void *krealloc_array(void *p, size_t n, size_t size,
                                   unsigned flags)
{
	return spanheap_realloc_array(&kspanheap, p, n, size, flags);
}

/* A new object holding a copy of len bytes at src. src NULL: NULL (a
 * line if len is not 0); len 0: a unique object. */
static inline void *kmemdup(const void *src, size_t len, unsigned flags)
{
	return spanheap_memdup(&kspanheap, src, len, flags);
}

/* A NUL-terminated copy of s; NULL for s NULL (silently, as Linux's). */
static inline char *kstrdup(const char *s, unsigned flags)
{
	return spanheap_strdup(&kspanheap, s, flags);
}

/* A NUL-terminated copy of s's bytes up to its NUL or n bytes, whichever
 * comes first (no byte past either is read); NULL for s NULL. */
static inline char *kstrndup(const char *s, size_t n, unsigned flags)
{
	return spanheap_strndup(&kspanheap, s, n, flags);
}

/* ksize of kmalloc(size): its size class's, or whole pages (0 for a size
 * no allocation can have). With mm.debug_poison a small object's (32 KiB
 * at most) ksize is the size asked, and so is a guarded object's
 * (mm.guard): ask for the rounded size to use all of it. Any context. */
static inline size_t kmalloc_size_roundup(size_t size)
{
	return spanheap_roundup_size(&kspanheap, size);
}

/* kfree(p) after zeroing its whole ksize, stores the compiler may not
 * drop: for keys and secrets. NULL: nothing. Contexts as kfree's. */
static inline void kfree_sensitive(void *p)
{
	spanheap_free_sensitive(&kspanheap, p);
}

/* Linux's kfree_bulk: frees p[0..n) (NULL entries: nothing) in one pin
 * per run of the CPU's magazine (mm/spanheap_bulk.h); each pointer is
 * checked as kfree checks it, and a misused one panics with kfree's
 * message after a line naming its index. Contexts as kfree's. */
static inline void kfree_bulk(size_t n, void **p)
{
	spanheap_free_bulk(&kspanheap, n, p);
}

/* n objects of size bytes into p[0..n): returns n, or 0 with nothing
 * allocated (all or nothing, as kmem_cache_alloc_bulk); flags and
 * contexts as kmalloc's. Ours, the kmalloc pair of kfree_bulk. */
static inline size_t kmalloc_bulk(size_t size, unsigned flags, size_t n,
                                  void **p)
{
	return spanheap_alloc_bulk(&kspanheap, size, flags, n, p);
}

/*
 * Linux's check_object_size (CONFIG_HARDENED_USERCOPY), for the code that
 * copies between kernel memory at p and another address space (a user's,
 * a guest's, a device's window): panics if [p, p + n) holds any of the
 * heap's memory but is not inside one allocated object, its ksize (the
 * class's size; with mm.debug_poison or for a guarded object the bytes
 * asked) or a large object's pages: an overrun past the end, a copy at a
 * freed object, into free pages or the heap's metadata. The console line
 * before the panic names the object, its span, its class and the overrun.
 * A copy that meets a live DMA buffer (dma.h) must lie inside its whole
 * pages: its line names the buffer (dma_copy_refused). Other memory (a
 * stack, static data, frames) passes. to_user: the copy reads p (an
 * exposure); else it writes p (an overwrite). n 0 passes. Any context,
 * an interrupt handler's included, on any CPU; no lock
 * (spanheap_check_copy, dma_find).
 */
void check_object_size(const void *p, size_t n, bool to_user);

/* check_object_size's verdict without the panic: NULL if the copy
 * passes, else what the panic names (the line naming the object printed
 * first). Contexts as check_object_size's. */
const char *usercopy_refused(const void *p, size_t n, bool to_user);

#endif
