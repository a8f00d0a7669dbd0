/*
 * Console input (see conin.h).
 *
 * Representation: a ring of CONIN_RING bytes with one producer (the
 * interrupt handler on CPU 0, or the polling thread, never both) and one
 * consumer (the shell): head is written only by the producer, tail only
 * by the consumer, both atomic, so the ring needs no lock. A byte that
 * finds the ring full is dropped, and an overrun of the UART's FIFO
 * counts as one byte dropped; the count of drops goes with the next
 * byte queued (lost_before, its slot's twin), so that the reader learns
 * where the input has a hole and can refuse the line it fell in. The consumer
 * sleeps on a wait queue (rank WAITQ, taken in the handler too) until the
 * ring is not empty; the producer wakes it after each batch.
 */
#include "conin.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/ioapic.h"
#include "arch/x86_64/serial.h"
#include "kernel/irq.h"
#include "kernel/lockcheck.h"
#include "kernel/percpu.h"
#include "kernel/conin_testing.h"
#include "kernel/printk.h"
#include "kernel/thread.h"

#define CONIN_RING 256
_Static_assert(CONIN_RING == CONIN_TESTING_RING, "conin_testing.h's size");
#define POLL_PERIOD_NS 10000000ull /* SCHED_TICK_NS: a poll each tick */

/* Atomic; head by the producer, tail by the consumer. A slot (ring and
 * lost_before) is written by the producer before head passes it and read
 * by the consumer before tail does: */
static uint8_t ring[CONIN_RING];
static uint32_t lost_before[CONIN_RING]; /* bytes dropped just before it */
static _Atomic uint32_t head, tail;
static _Atomic uint64_t dropped;
/* The producer's own: drops not yet carried by a queued byte. */
static uint32_t unplaced;
/* Atomic, any CPU: */
static _Atomic bool command_running, interrupted;
/* The consumer sleeping for a byte. Its lock (rank WAITQ; the producer's
 * wake takes it in the COM1 interrupt or with interrupts off) guards the
 * queue only: the ring is atomic, and ring_nonempty is checked under the
 * lock so that a byte pushed before the sleep is not missed. */
static struct waitq conin_wq = WAITQ_INIT("conin");
/* The consumer's own: a hole whose Ctrl-C was taken out with no byte
 * after it, for the byte queued next, at index carry_at (not the next
 * read: bytes kept before the Ctrl-C come first; review). */
static uint32_t carry_pending, carry_at;

/* Counts a byte lost before the next one queued. The producer only. */
static void note_drop(void)
{
	atomic_fetch_add(&dropped, 1);
	if (unplaced < UINT32_MAX)
		unplaced++;
}

/* Queues c, with the count of the bytes dropped since the last one
 * queued; returns false, counting c as dropped, when the ring is full.
 * The producer only. */
static bool push(uint8_t c)
{
	uint32_t h = atomic_load_explicit(&head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&tail, memory_order_acquire);
	if (h - t >= CONIN_RING) {
		note_drop();
		return false;
	}
	ring[h % CONIN_RING] = c;
	lost_before[h % CONIN_RING] = unplaced;
	unplaced = 0;
	atomic_store_explicit(&head, h + 1, memory_order_release);
	return true;
}

#if KTEST_HOOKS
TEST_HOOK_DEFINE(conin_testing_drained);
#endif

/* Moves every waiting byte into the ring. The producer only: interrupt
 * context (CPU 0) or the polling thread.
 *
 * An overrun: the UART lost bytes after the SERIAL_RX_FIFO it held when
 * it saw the overrun (those after the first byte read since: a status
 * read clears it, and reads before one do not happen), counted as one
 * hole (it does not say how many). The hole goes right after them, not
 * after the drain: bytes that came meanwhile came after the lost ones,
 * and one of them could be the Enter that ran the damaged line (until a
 * review; test conin.a_hole_lands_after_the_fifos_bytes). */
static void drain_uart(void)
{
	uint8_t c;
	bool any = false;
	unsigned nread = 0, before_hole = 0; /* 0: no hole pending */
	while (serial_rx_byte(&c)) {
		nread++;
		if (!before_hole && serial_rx_take_overrun())
			before_hole = SERIAL_RX_FIFO;
		if (c == CONIN_CTRL_C && atomic_load(&command_running))
			atomic_store(&interrupted, true);
		else
			any |= push(c);
		if (before_hole && --before_hole == 0)
			note_drop();
#if KTEST_HOOKS
		TEST_HOOK(conin_testing_drained, nread);
#endif
	}
	if (before_hole || serial_rx_take_overrun())
		note_drop();
	if (any)
		waitq_wake_all(&conin_wq);
}

static void com1_irq(struct trap_frame *f)
{
	drain_uart();
}

static void poll_thread(void *arg)
{
	for (;;) {
		/* Interrupts off: the shell thread (CPU 0 too) must not
		 * begin a command between the poller's look at
		 * command_running and its push (conin_command_begin). */
		unsigned long flags = read_rflags();
		cpu_cli();
		drain_uart();
		if (flags & RFLAGS_IF)
			cpu_sti();
		/* Half a period: a sleep ends at the first tick at or past
		 * its deadline, and this wakes just after a tick, so a whole
		 * period's deadline fell just after the next tick's reading
		 * and the poll came every other tick, 20 ms (review). */
		thread_sleep_ns(POLL_PERIOD_NS / 2);
	}
}

const char *conin_init(void)
{
	irq_register(IRQ_VEC_COM1, com1_irq);
	if (ioapic_route_isa(SERIAL_COM1_IRQ, IRQ_VEC_COM1,
	                     this_cpu()->apic_id)) {
		serial_rx_irq_enable();
		/* Bytes that came before the route raised no interrupt. */
		unsigned long flags = read_rflags();
		cpu_cli();
		drain_uart();
		if (flags & RFLAGS_IF)
			cpu_sti();
		return "irq";
	}
	if (!thread_handle_ok(
	            thread_create("conin_poll", poll_thread, NULL, 0)))
		panic("conin: cannot start the polling thread");
	return "polling";
}

static bool ring_nonempty(void *arg)
{
	return atomic_load_explicit(&head, memory_order_acquire) !=
	       atomic_load_explicit(&tail, memory_order_relaxed);
}

uint8_t conin_getc(uint32_t *lost)
{
	/* No byte to return without the wait: a refusal, recorded in the
	 * lock checker's test mode, is fatal here. */
	if (!waitq_wait_until(&conin_wq, ring_nonempty, NULL))
		panic("conin_getc: may not wait for a byte: %s",
		      lockcheck_last_violation());
	uint32_t t = atomic_load_explicit(&tail, memory_order_relaxed);
	uint8_t c = ring[t % CONIN_RING];
	*lost = lost_before[t % CONIN_RING];
	if (carry_pending && t == carry_at) {
		*lost += carry_pending;
		carry_pending = 0;
	}
	atomic_store_explicit(&tail, t + 1, memory_order_release);
	return c;
}

/* Takes the Ctrl-Cs out of the bytes queued: they were typed after the
 * Enter of the command about to run (a paste, a fast typist: the
 * producer queued them before the reader reached that Enter) and are
 * its interrupt, not a key for the next prompt. The bytes around them
 * stay, in order, each with its hole (a hole before a Ctrl-C goes to
 * the byte after it, or with none queued to the byte queued next:
 * carry_pending at carry_at; until a review a last Ctrl-C took it
 * along, then it went to the next byte read, a kept one). The
 * consumer only: it moves the bytes in [tail,
 * head), which the producer does not write, toward head, then tail. */
static bool take_queued_ctrl_c(void)
{
	static uint8_t keep[CONIN_RING];
	static uint32_t keep_lost[CONIN_RING];
	uint32_t h = atomic_load_explicit(&head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&tail, memory_order_relaxed);
	uint32_t n = 0, carry = 0;
	/* A hole carried from an earlier take to a byte queued since is
	 * that byte's: the move below changes its index (until a review
	 * the carry stayed at the old one, never read, and the hole was
	 * lost, or moved on to a later line by a new carry). */
	uint32_t pending =
	        carry_pending && carry_at - t < h - t ? carry_pending : 0;
	for (uint32_t i = t; i != h; i++) {
		uint32_t lost = lost_before[i % CONIN_RING];
		if (pending && i == carry_at)
			lost += pending;
		if (ring[i % CONIN_RING] == CONIN_CTRL_C) {
			carry += lost;
			continue;
		}
		keep[n] = ring[i % CONIN_RING];
		keep_lost[n++] = lost + carry;
		carry = 0;
	}
	if (n == h - t)
		return false; /* nothing moves: a carry stays valid */
	if (pending)
		carry_pending = 0; /* in keep_lost, or in carry */
	if (carry) {
		carry_pending += carry;
		carry_at = h;
	}
	for (uint32_t k = 0; k < n; k++) {
		ring[(h - n + k) % CONIN_RING] = keep[k];
		lost_before[(h - n + k) % CONIN_RING] = keep_lost[k];
	}
	atomic_store_explicit(&tail, h - n, memory_order_release);
	return true;
}

void conin_command_begin(void)
{
	atomic_store(&interrupted, false);
	/* After this store every producer sees the command running: both
	 * run on CPU 0 with interrupts off (the handler, the poller's
	 * drain) and so between two of the shell thread's instructions.
	 * What they queued before, the scan finds. */
	atomic_store(&command_running, true);
	if (take_queued_ctrl_c())
		atomic_store(&interrupted, true);
}

void conin_command_end(void)
{
	atomic_store(&command_running, false);
	atomic_store(&interrupted, false);
}

bool conin_interrupted(void)
{
	return atomic_load(&interrupted);
}

uint64_t conin_dropped(void)
{
	return atomic_load(&dropped);
}

void conin_testing_reset(void)
{
	atomic_store(&head, 0);
	atomic_store(&tail, 0);
	atomic_store(&dropped, 0);
	unplaced = 0;
	carry_pending = 0;
}

void conin_testing_push(uint8_t c)
{
	if (push(c))
		waitq_wake_all(&conin_wq); /* a reader may sleep for it */
}

void conin_testing_hole(uint32_t n)
{
	while (n--)
		note_drop();
}

void conin_testing_drain(void)
{
	drain_uart();
}
