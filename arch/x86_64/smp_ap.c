/*
 * SMP bring-up's per-AP half (smp.c drives it): starting one AP through
 * the trampoline and waiting for it, on the boot CPU, and the AP's own
 * way online.
 *
 * Basic algorithm:
 *   1. The boot CPU, per AP (smp_start_ap): allocate its stack and IST
 *      stacks (an AP that cannot have them is left out, said so), fill
 *      the per-AP part (stack top, cpus[] index), then INIT, 10 ms,
 *      SIPI, and a second SIPI if the first has not set `started` within
 *      200 us (Intel SDM vol. 3A, "MP Initialization Protocol
 *      Algorithm"). Wait up to 10 s (as
 *      Linux does, but of the boot CPU's own running time, not the wall
 *      clock's: smp_clock.h) for the AP to mark itself online, or, if it has
 *      claimed its place by then, until it has (saying so every second);
 *      the parameter block is reused for the next AP only after that (or
 *      after the INIT that parks an AP given up on).
 *      An AP given up on may still hold a SIPI pending from its start
 *      that the INIT did not clear (a virtual CPU that has not run yet):
 *      it wakes later, while the parameters are set for another AP. The
 *      trampoline's first step compares the low byte of the CPU's APIC
 *      id (CPUID 1) with the one the parameters are for, and a stranger
 *      records itself (`stray`) and halts there, before it touches the
 *      parameters' stack; the boot CPU says so after each AP. Once
 *      bring-up is over the parameters match no CPU.
 *   2. The AP (smp_ap_entry): claims its place (ap_state) unless the boot
 *      CPU has given up on it, in which case it halts; then GS, GDT/TSS,
 *      IDT, drop its TLB entry for the trampoline page, LAPIC and timer,
 *      online, then ap_main. Going online (cpu_set_online) waits while a
 *      TLB shootdown or a stop-the-world is in flight; none can be during
 *      bring-up (the APs only idle until smp_boot_aps returns), so the
 *      wait is short. A boot CPU whose wait ran out sends INIT only to an
 *      AP that has not claimed its place: never to one halfway online.
 *
 * The trampoline mapping is global (vm_map_page maps kernel pages with G),
 * so a CR3 reload would not drop it from an AP's TLB: each AP invalidates
 * it itself once it runs on the kernel's GDT, before it reports online.
 *
 * Fault injection: smp.c reads the smp.* options from the command line and
 * hands them over with smp_ap_setup before any AP starts; each names an
 * APIC id, and what it does to that AP is said at its variable below.
 * They act inside the waits and share their statics: that is why they
 * live here.
 */
#include "smp.h"

#include <stdatomic.h>

#include "cpu.h"
#include "gdt.h"
#include "lapic.h"
#include "paging.h"
#include "smp_clock.h"
#include "smp_internal.h"
#include "trap.h"

#include "kernel/kstack.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/time.h"

#define INIT_DELAY_US 10000
#define SIPI_DELAY_US 200
/* A wait lasts AP_WAIT_US of the boot CPU's running time
 * (smp_internal.h), and at most this much wall clock, whatever the boot
 * CPU ran: a host that gives the VM under a 60th of a CPU is not waited
 * out. A freeze of the whole VM counts 1 s of it at most
 * (SMP_CLOCK_STALL_CAP_NS): the AP had no chance to run in it. */
#define AP_WAIT_WALL_NS (600ull * 1000000000ull)
/* smp.host_stall's jump of the clock: past AP_WAIT_US. */
#define AP_STALL_NS (15ull * 1000000000ull)
/* How often a wait for an AP that claimed its place says it still waits. */
#define AP_REPORT_US 1000000

/* Written by the boot CPU before an AP starts (smp_ap_setup), then read
 * by that AP: */
static void (*ap_main_fn)(void);

/*
 * Who has the AP being started: the boot CPU, which gives up on it once
 * its wait runs out, or the AP, which claims its place on entry, before
 * it touches anything shared. Whichever comes first wins, so the boot
 * CPU never sends INIT to an AP that is coming online (it would leave a
 * dead CPU in the online set, or a lock or the online gate held), and an
 * AP given up on parks untouched. One AP at a time. Atomic.
 */
enum { AP_AWAITED, AP_ARRIVING, AP_ABANDONED };
static _Atomic int ap_state;

/* smp.late_ap=<apic id>: that AP is held at its entry until the boot
 * CPU has given up waiting for it, then let go, so that it arrives in
 * the window between the timeout and the INIT that parks it. */
static uint32_t late_apic = NO_APIC_ID; /* set before any AP starts */
static _Atomic bool late_ap_go;

/* smp.slow_ap=<apic id>: that AP, once it has claimed its place, waits
 * until the boot CPU has said that it is still waiting for it (the boot
 * CPU's wait for it to come online ends there: ap_online_or_held). */
static uint32_t slow_apic = NO_APIC_ID; /* set before any AP starts */
static _Atomic bool slow_ap_reported;

/* smp.stale_sipi=<apic id>: once that AP has been given up on and
 * parked with INIT, the boot CPU sends it a SIPI while the trampoline is
 * set for the next AP, as a SIPI left pending from its own start would
 * arrive if its virtual CPU ran only now. */
static uint32_t stale_apic = NO_APIC_ID; /* set before any AP starts */
static bool stale_parked;

/* smp.no_ist=<apic id>: bring-up finds no memory for that AP's IST
 * stacks, as if the frames had run out. Set before any AP starts. */
static uint32_t no_ist_apic = NO_APIC_ID;

/* smp.host_stall=<apic id>: the boot CPU's wait for that AP to come
 * online sees its clock jump AP_STALL_NS at its first poll, as when the
 * host runs neither vCPU for that long, and the AP is held at its entry
 * until the wait has gone on past the jump (a bound in wall clock gave
 * up on it there). */
static uint32_t stall_apic = NO_APIC_ID; /* set before any AP starts */
static bool stall_pending;               /* boot CPU only */
static uint64_t stall_offset_ns;         /* boot CPU only */
static _Atomic bool stall_ap_go;

/* Immutable after smp_boot_aps(): */
static struct kstack ap_stacks[MAX_CPUS];

void smp_ap_setup(void (*ap_main)(void), const struct smp_faults *f)
{
	ap_main_fn = ap_main;
	late_apic = f->late_ap;
	no_ist_apic = f->no_ist;
	slow_apic = f->slow_ap;
	stale_apic = f->stale_sipi;
	stall_apic = f->host_stall;
}

__attribute__((noreturn)) void smp_ap_entry(uint64_t id)
{
	if (cpus[id].apic_id == late_apic)
		while (!atomic_load(&late_ap_go))
			cpu_pause();
	if (cpus[id].apic_id == stall_apic)
		while (!atomic_load(&stall_ap_go))
			cpu_pause();
	int awaited = AP_AWAITED;
	if (!atomic_compare_exchange_strong(&ap_state, &awaited, AP_ARRIVING))
		cpu_halt_forever(); /* given up on: INIT comes next */
	if (cpus[id].apic_id == slow_apic)
		while (!atomic_load(&slow_ap_reported))
			cpu_pause();
	cpu_init_local((unsigned)id, cpus[id].apic_id);
	gdt_init_cpu();
	idt_init_cpu();
	invlpg(smp_tramp_pa); /* no longer running from it, nor on its GDT */
	lapic_init_ap();
	struct cpu *c = this_cpu();
	if (lapic_id() != c->apic_id)
		panic("smp: cpu %u has APIC id %u, the MADT said %u", c->id,
		      lapic_id(), c->apic_id);
	cpu_set_online();
	ap_main_fn();
	panic("smp: ap_main returned on cpu %u", c->id);
}

static bool ap_started(unsigned id)
{
	return smp_params->started != 0;
}

static bool stray_seen(unsigned id)
{
	return smp_params->stray != 0;
}

static bool ap_online(unsigned id)
{
	return atomic_load(&cpus[id].online);
}

/* ap_online, or smp.slow_ap's AP has claimed its place: from then on it
 * waits for the boot CPU's "still waiting" line, so a longer wait for it
 * to come online would only cost time. */
static bool ap_online_or_held(unsigned id)
{
	return ap_online(id) || (cpus[id].apic_id == slow_apic &&
	                         atomic_load(&ap_state) == AP_ARRIVING);
}

/* How long to wait for an AP to come online: AP_WAIT_US, but only
 * AP_REPORT_US for one that fault injection keeps out (smp.skip_sipi's,
 * smp.late_ap's): no wait brings it sooner, and the harness's cases would
 * spend 10 s each in it. */
static uint64_t ap_wait_us(uint32_t apic_id, bool withhold_sipi)
{
	return withhold_sipi || apic_id == late_apic ? AP_REPORT_US
	                                             : AP_WAIT_US;
}

/* The time a wait reads: the clock, plus smp.host_stall's jump. */
static uint64_t wait_now_ns(void)
{
	if (stall_pending) {
		stall_pending = false;
		stall_offset_ns += AP_STALL_NS;
	}
	return time_now_ns() + stall_offset_ns;
}

/* Polls cond(id) until the boot CPU has run us microseconds of the wait
 * (smp_clock.h), or AP_WAIT_WALL_NS have passed (said so); adds the time
 * the host did not run it to smp_bringup.stalled_ns. */
static bool wait_for(bool (*cond)(unsigned), unsigned id, uint64_t us)
{
	struct smp_clock c = smp_clock_start(time_now_ns() + stall_offset_ns);
	bool met;
	for (;;) {
		met = cond(id);
		if (met)
			break;
		smp_clock_poll(&c, wait_now_ns());
		enum smp_clock_verdict v =
		        smp_clock_verdict(&c, us * 1000, AP_WAIT_WALL_NS);
		if (v == SMP_CLOCK_RAN_OUT)
			break;
		if (v == SMP_CLOCK_WALL_OUT) {
			printk("smp: the wait for cpu %u ran out of wall clock "
			       "(%llu s, a freeze counted 1 s) with the boot "
			       "CPU run for %llu ms of it\n",
			       id, AP_WAIT_WALL_NS / 1000000000,
			       (unsigned long long)(c.ran_ns / 1000000));
			break;
		}
		if (stall_offset_ns)
			atomic_store(&stall_ap_go, true); /* past the jump */
		cpu_pause();
	}
	smp_bringup.stalled_ns += c.stalled_ns;
	return met;
}

/* After the wait for cpus[id] ran out: gives up on the AP, unless it has
 * claimed its place meanwhile; then it comes online within a few stores
 * (no shootdown or stop-the-world runs during bring-up), and this waits
 * for it, saying every AP_REPORT_US that it still does: an AP halfway online
 * cannot be parked, but a hang here must not be silent. Returns true when
 * the AP is online. */
static bool give_up_unless_arriving(unsigned id, uint64_t init_ns)
{
	int awaited = AP_AWAITED;
	if (atomic_compare_exchange_strong(&ap_state, &awaited, AP_ABANDONED))
		return false;
	uint64_t next = time_now_ns() + AP_REPORT_US * 1000ull;
	while (!ap_online(id)) {
		cpu_pause();
		uint64_t now = time_now_ns();
		if (now < next)
			continue;
		printk("smp: cpu %u (APIC id %u) claimed its place but is not "
		       "online %llu ms after its INIT; still waiting (an AP "
		       "halfway online cannot be parked)\n",
		       id, cpus[id].apic_id,
		       (unsigned long long)((now - init_ns) / 1000000));
		atomic_store(&slow_ap_reported, true);
		next = now + AP_REPORT_US * 1000ull;
	}
	return true;
}

/* smp.late_ap: lets the held AP go, now that the wait for it is over,
 * and gives it the time it would take to come online (it runs already:
 * a second is plenty) before the INIT. */
static void let_late_ap_in(unsigned id)
{
	atomic_store(&late_ap_go, true);
	wait_for(ap_online, id, AP_REPORT_US);
}

/* smp.stale_sipi: wakes the parked AP into the trampoline set for the
 * next one, and waits until it has said that it is not the AP the
 * trampoline is for. */
static void send_stale_sipi(void)
{
	stale_parked = false;
	lapic_send_sipi(stale_apic, (uint32_t)(smp_tramp_pa >> PAGE_SHIFT));
	if (!wait_for(stray_seen, 0, AP_WAIT_US))
		printk("smp: smp.stale_sipi=%u: the parked AP did not say it "
		       "ran the trampoline set for APIC id %u\n",
		       stale_apic, smp_params->apic_id);
}

/* Allocates cpus[id]'s stack and IST stacks before the AP starts, so that
 * once it has claimed its place nothing it does can fail for want of
 * memory. Returns false, with neither allocated, saying so. */
static bool alloc_ap_stacks(unsigned id, uint32_t apic_id)
{
	struct kstack *st = &ap_stacks[id];
	if (!kstack_alloc(AP_STACK_PAGES, st)) {
		printk("smp: no memory for cpu %u's stack (APIC id %u): left "
		       "out\n",
		       id, apic_id);
		return false;
	}
	if (apic_id != no_ist_apic && gdt_alloc_ist(id))
		return true;
	if (apic_id == no_ist_apic)
		printk("smp: smp.no_ist=%u on the command line: its IST stacks "
		       "were withheld\n",
		       apic_id);
	printk("smp: no memory for cpu %u's IST stacks (APIC id %u): left "
	       "out\n",
	       id, apic_id);
	kstack_free_local(st);
	*st = (struct kstack){0};
	return false;
}

/* Frees what alloc_ap_stacks gave an AP that never came online. */
static void free_ap_stacks(unsigned id)
{
	gdt_free_ist(id);
	kstack_free_local(&ap_stacks[id]); /* INIT flushed it */
	ap_stacks[id] = (struct kstack){0};
}

/* Notes how long the AP with apic_id took to come online since its
 * INIT, for the bring-up's line. */
static void note_time(uint32_t apic_id, uint64_t init_ns)
{
	uint64_t ns = time_now_ns() - init_ns;
	if (ns >= smp_bringup.slowest_ns) {
		smp_bringup.slowest_ns = ns;
		smp_bringup.slowest_apic = apic_id;
	}
}

bool smp_start_ap(unsigned id, uint32_t apic_id, bool withhold_sipi)
{
	struct kstack *st = &ap_stacks[id];
	if (!alloc_ap_stacks(id, apic_id))
		return false;
	cpus[id].apic_id = apic_id;
	atomic_store(&cpus[id].online, false);
	smp_params->stack_top = st->top;
	smp_params->cpu_id = id;
	smp_params->apic_id = apic_id & 0xff;
	smp_params->started = 0;
	atomic_store(&ap_state, AP_AWAITED);
	if (stale_parked)
		send_stale_sipi();

	uint64_t init_ns = time_now_ns();
	lapic_send_init(apic_id);
	time_delay_us(INIT_DELAY_US);
	for (int i = 0; i < 2 && !withhold_sipi; i++) {
		lapic_send_sipi(apic_id,
		                (uint32_t)(smp_tramp_pa >> PAGE_SHIFT));
		if (wait_for(ap_started, id, SIPI_DELAY_US))
			break;
	}
	stall_pending = apic_id == stall_apic;
	bool came = wait_for(ap_online_or_held, id,
	                     ap_wait_us(apic_id, withhold_sipi));
	stall_pending = false; /* for this wait only */
	if ((came && ap_online(id)) || give_up_unless_arriving(id, init_ns)) {
		note_time(apic_id, init_ns);
		return true;
	}
	/* Given up on: from now on the trampoline is for no CPU, so a SIPI
	 * still pending that wakes this AP before the next is set up halts
	 * it there too (review). */
	smp_params->apic_id = NO_APIC_ID;
	if (apic_id == late_apic)
		let_late_ap_in(id);

	if (withhold_sipi)
		printk("smp: smp.skip_sipi=%u on the command line: its SIPIs "
		       "were withheld\n",
		       apic_id);
	if (smp_params->started)
		printk("smp: cpu %u (APIC id %u) started but did not come "
		       "online\n",
		       id, apic_id);
	else
		printk("smp: cpu %u (APIC id %u) did not answer its SIPI\n", id,
		       apic_id);
	lapic_send_init(apic_id);
	time_delay_us(INIT_DELAY_US);
	free_ap_stacks(id);
	stale_parked = apic_id == stale_apic;
	return false;
}
