/*
 * tests/port/min_port.h: what the minimal port (min_port.c) shows its test:
 * counts of the hooks' calls, and where its one static address space is.
 */
#ifndef TESTS_PORT_MIN_PORT_H
#define TESTS_PORT_MIN_PORT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The static array every reservation comes from. */
#define MIN_PORT_SPACE_MIB 64
/* Written over a page as it is given back: read back, a use of it. */
#define MIN_PORT_POISON 0xdb

struct min_port_counts {
	uint64_t reserves, unreserves;
	uint64_t released_pages; /* by mm_port_unused_finish */
	uint64_t thread_refusals;
	uint64_t event_timeouts;
	uint64_t lock_acquires, pins;
	uint64_t logs, log_under_lock;
	uint64_t reclaims; /* mm_port_reclaim's calls */
};
extern struct min_port_counts min_port_n;
/* Armed by a test that expects a panic: mm_panic keeps its message in
 * min_port_last_panic, disarms, drops the pins held and longjmps here
 * (PORTING.md: mm/ unwinds nothing). A panic under a lock still aborts:
 * the flags of the locks held cannot be found from here. */
extern jmp_buf *min_port_catch;
extern char min_port_last_panic[256];
/* The latest mm_log line. */
extern char min_port_last_log[256];

/* What mm_port_reclaim runs (the port is built with MM_PORT_RECLAIM):
 * a test's cache giving objects back; NULL, nothing. */
extern bool (*min_port_reclaim_fn)(void);

/* True if p lies in a reservation still held. */
bool min_port_in_space(const void *p);
/* True if p's page was given back and not used again since. */
bool min_port_page_scavenged(const void *p);
/* Bytes from the start of the space to the end of the latest reservation. */
size_t min_port_reserved_bytes(void);

#endif
