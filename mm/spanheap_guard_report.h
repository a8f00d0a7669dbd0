/*
 * mm/spanheap_guard_report.h: the guarded pool's reports and checks
 * (spanheap_guard_report.c) and its calls for the named caches
 * (spanheap_guard_own.c). Included by spanheap_guard.h, for the heap's
 * own files (spanheap_internal.h's users).
 */
#ifndef MM_SPANHEAP_GUARD_REPORT_H
#define MM_SPANHEAP_GUARD_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spanheap;
struct spanheap_guard_slot;
struct spanheap_guard_obj;
struct spanheap_where;
struct spanheap_stats;
struct spanheap_track;

/* spanheap_where's and spanheap_where_log's part for an address of the
 * pool (kind GUARD). Any context. */
void spanheap_guard_where(struct spanheap *sh, uintptr_t a,
                          struct spanheap_where *w);
void spanheap_guard_where_log(struct spanheap *sh, uintptr_t a,
                              const struct spanheap_where *w);

/* The records of object a of the pool (its first byte or not, on its
 * slot's page): its slot's last allocation and free (ns 0: none), as
 * spanheap_object_tracks gives a span's; both with ns
 * SPANHEAP_TRACK_CHANGING if the slot is BUSY or changed while read.
 * False if a is on a guard page or its slot never held an object. Any
 * context. */
bool spanheap_guard_tracks(struct spanheap *sh, uintptr_t a,
                           struct spanheap_track *alloc,
                           struct spanheap_track *freed);

/* Slot i's object, if it is live, read with no lock: its fields into *o
 * and its allocation's record into *alloc. False if the slot is not
 * live, or changed while read (its object freed, or the slot reused,
 * meanwhile): never one object's fields with another's. Any context. */
bool spanheap_guard_live(struct spanheap *sh, unsigned i,
                         struct spanheap_guard_obj *o,
                         struct spanheap_track *alloc);

/* The pool's counts into st; its checks for spanheap_check (thread
 * context, as it). */
void spanheap_guard_stats(struct spanheap *sh, struct spanheap_stats *st);
void spanheap_guard_check(struct spanheap *sh);

/* spanheap_guard_own.c: the panic for op by the heap's own callers (or
 * a merged cache's free) on named cache owner's object a; slot i, BUSY
 * with its free recorded (live: still counted live; else waiting for a
 * grace period), filled with the poison and left to the drain (retire),
 * or, a typesafe cache's, left as it is until a grace period has passed,
 * then retired (rcu_wait). Any context but NMI, no mm lock held. */
__attribute__((noreturn)) void spanheap_guard_owned(struct spanheap *sh,
                                                    const char *op, uintptr_t a,
                                                    uint32_t owner);
void spanheap_guard_retire(struct spanheap *sh, unsigned i, bool live);
void spanheap_guard_rcu_wait(struct spanheap *sh, unsigned i);

/* The first byte of slot sl's page pg outside its object whose canary is
 * not there, or 0 (the page mapped: sl live and held); the panic for
 * such a byte, or one of a freed object's poison (what: when it was
 * seen). */
uintptr_t spanheap_guard_canary_damage(const struct spanheap_guard_slot *sl,
                                       uintptr_t pg);
__attribute__((noreturn)) void
spanheap_guard_damaged(struct spanheap *sh,
                       const struct spanheap_guard_slot *sl, uintptr_t b,
                       const char *what);

/* ", cache 'name''s" for a slot's owner (a named cache's slot + 1) into
 * buf, or "" for 0 or a cache gone, for the reports. Any context. */
void spanheap_guard_cache_part(struct spanheap *sh, uint32_t owner, char *buf,
                               size_t size);

/* Whether this allocation is the pool's: this CPU's countdown of
 * refills and out-of-line calls reached 0 (spanheap.c; pins). False for
 * good in a heap with no pool. Any context but NMI. */
bool spanheap_guard_sample(struct spanheap *sh);

#endif
