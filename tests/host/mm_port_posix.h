/*
 * tests/host/mm_port_posix.h: the test-facing side of the POSIX port of
 * mm/port.h (mm_port_posix.c): catching mm_panic, reading what mm_log
 * said, choosing the CPU id a thread reports, simulating atomic context,
 * injecting failures, counting an event's waiters, and releasing
 * reservations.
 *
 * A test that expects a panic wraps the call:
 *
 *	bool fired = MM_PORT_PANICS(palloc_free(&p, base, 1));
 *	KEXPECT(fired);
 *	KEXPECT(strstr(mm_port_last_panic(), "is not allocated"));
 *
 * The macro arms a jmp_buf in the caller's frame; mm_panic records its
 * message and longjmps back, so whatever mm/ was doing is abandoned at the
 * panic (a lock taken by the code under test stays held: release it).
 * Without an armed catch, mm_panic prints "mm_panic: ..." and aborts.
 */
#ifndef TESTS_HOST_MM_PORT_POSIX_H
#define TESTS_HOST_MM_PORT_POSIX_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../mm/port.h"

/* Arms (jb != NULL) or disarms panic capture for this thread. */
void mm_port_catch_panic(jmp_buf *jb);

/* True if stmt called mm_panic (caught); the message is then in
 * mm_port_last_panic(). */
#define MM_PORT_PANICS(stmt)                               \
	({                                                 \
		jmp_buf mm_port_jb_;                       \
		volatile bool mm_port_fired_ = false;      \
		if (setjmp(mm_port_jb_) == 0) {            \
			mm_port_catch_panic(&mm_port_jb_); \
			stmt;                              \
		} else {                                   \
			mm_port_fired_ = true;             \
		}                                          \
		mm_port_catch_panic(NULL);                 \
		mm_port_fired_;                            \
	})

/* The last panic's message ("" if none), and how many there were. Read
 * the message when no other thread may panic. */
const char *mm_port_last_panic(void);
unsigned long mm_port_panic_count(void);

/* The last mm_log line ("" if none), and how many lines were logged.
 * Read the line when no other thread (a scavenger) may log. */
const char *mm_port_last_log(void);
unsigned long mm_port_log_count(void);

/* Stops (true) or resumes copying mm_log lines to stderr; they are still
 * recorded. */
void mm_port_set_quiet(bool quiet);

/* From now on, mm_log appends each line and a newline to buf (size bytes,
 * NUL-terminated; lines past its end are cut short), until a call with
 * buf NULL. One capture at a time; read buf after the logging thread is
 * done. */
void mm_port_log_capture(char *buf, size_t size);

/* Test hooks, NULL by default, set before the threads they watch start:
 * called in the calling thread, holding nothing of the port's, after each
 * mm_log line (its text) and at each mm_port_yield. */
extern void (*mm_port_log_hook)(const char *line);
extern void (*mm_port_yield_hook)(void);

/* Sets the CPU id this thread reports (default 0; taken modulo
 * MM_MAX_CPUS), and reads it. */
void mm_port_set_cpu(unsigned cpu);
unsigned mm_port_cpu(void);

/* Maps as a production malloc would (the benchmarks): an arena chunk is
 * read-write from its growth on (one mapping, which the host may back with
 * huge pages), mm_port_used changes nothing, and scavenged pages are only
 * dropped (MADV_DONTNEED), so a touch reads zeroes instead of faulting.
 * Default off: tests want a touch of scavenged memory to fault. Set it
 * before the first heap is made. */
void mm_port_set_production_mapping(bool on);

/* Binds this thread to CPU cpu exclusively until mm_port_unbind_cpu
 * (waiting while another thread holds it pinned or bound): its pins then
 * are one thread-local load (mm_port_posix_pin.h), not counted, so
 * mm_port_can_sleep does not see them (the benchmarks bind; tests do not).
 * A bound thread must unbind before it exits. */
void mm_port_bind_cpu(unsigned cpu);
void mm_port_unbind_cpu(void);

/* The CPU time a thread of mm_port_thread_start's has used so far, all of
 * it (the benchmarks' sweeper share: mm's own count covers only its
 * cycles); 0 if it cannot be read. */
uint64_t mm_port_thread_cpu_ns_of(struct mm_thread *t);

/* mm_port_each_other_cpu (mm/port.h) holds every other CPU's slot in turn,
 * passing by those bound threads hold. With refuse (default false) it
 * returns false instead, as a port that cannot reach other CPUs. */
void mm_port_refuse_each_other_cpu(bool refuse);

/* Puts this thread in (true) or out of simulated atomic context: an
 * interrupt handler or interrupts disabled. mm_port_can_sleep() is then
 * false, and hooks that may sleep mm_panic. Default: out. */
void mm_port_set_atomic(bool on);

/* Bytes mapped through mm_port_map (palloc's metadata), all threads. The
 * heap's own pages (mm_port_used, mm_port_unused_begin) are not counted:
 * their ranges may mix mapped and unmapped pages, and the port keeps no
 * per-page state. */
size_t mm_port_mapped_bytes(void);

/* Bytes of the ranges mm_port_used calls that succeeded were given, all
 * threads: what the kernel's port walks page by page (mheap_used_test). */
size_t mm_port_used_bytes(void);

/* Gives back a whole reservation made by mm_port_reserve (tests only: the
 * kernel never unreserves). */
void mm_port_release(void *addr, size_t nbytes);

/* Makes the next n mm_port_map and mm_port_used calls fail, changing
 * nothing (to test out-of-memory paths). */
void mm_port_fail_maps(unsigned n);

/* Makes the nth mm_port_map or mm_port_used call from now fail (0: none),
 * the ones before it succeed: a failure part of the way through. */
void mm_port_fail_map_at(unsigned nth);

/* Makes the nth mm_port_reserve call from now fail (0: none), to test
 * set-up failures; and the bytes reserved and not given back
 * (mm_port_unreserve, mm_port_release), all threads. */
void mm_port_fail_reserve(unsigned nth);
size_t mm_port_reserved_bytes(void);

/* Makes the nth mm_port_thread_start call from now fail (0: none), as a
 * system out of threads would: the background threads' start failing. */
void mm_port_fail_thread_start(unsigned nth);

/* From now on mm_port_now_ns reads ns more (less, if negative) than
 * CLOCK_MONOTONIC, all threads (default 0): a clock stepped back or
 * forward, as another CPU's may be. The port's own waits keep the real
 * clock. */
void mm_port_set_clock_offset(int64_t ns);

/* Threads in mm_event_wait on e now: a test's way to know that a thread
 * has blocked on e (a count read while threads come and go). */
unsigned mm_port_event_waiters(mm_event_t *e);
/* Calls of mm_event_wait on e that have returned, ever: with the above, a
 * test's way to know that a waiter woke and has blocked on e again. */
unsigned long mm_port_event_returns(mm_event_t *e);

/* Chaos mode (mm_port_posix_chaos.c; MM_CHAOS=<seed> in the environment
 * turns it on at start): from now on every port hook delays its caller
 * (yield, spin or short sleep) with probability rate_permille / 1000, drawn
 * from a generator per thread seeded from seed; seed 0 turns it off. Call
 * it while no other thread runs. mm_port_chaos_delays counts the delays
 * made so far, all threads. */
void mm_port_set_chaos(uint64_t seed, unsigned rate_permille);
unsigned long mm_port_chaos_delays(void);

/* Makes mm_port_callers give no callers (true), as a port without a
 * stack walk (docs/PORTING.md): a poison-mode heap made meanwhile keeps no
 * records of callers (spanheap_init probes it once). Default false. */
void mm_port_set_no_callers(bool on);

/* What mm_port_free_pages() reports from now on (default: plenty), to
 * simulate a frame pool under the heap's low watermark. */
void mm_port_set_free_pages(size_t npages);

/* The fake grace periods (mm_port_posix_rcu.c): callbacks queued and
 * not run yet; and "a grace period has passed": runs those queued so far,
 * in this thread, and returns how many (the caller makes sure no read-side
 * section begun before them is still open). A test with readers takes the
 * queue (_take), waits out its readers, then runs what it took (_run). */
size_t mm_port_posix_rcu_queued(void);
size_t mm_port_posix_rcu_advance(void);
struct mm_rcu_head *mm_port_posix_rcu_take(void);
size_t mm_port_posix_rcu_run(struct mm_rcu_head *list);

#endif
