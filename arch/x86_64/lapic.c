/*
 * The local APIC driver (see lapic.h): mode selection, enable, EOI, IPIs and
 * the timer, in xAPIC (MMIO) or x2APIC (MSR) mode.
 *
 * Register offsets are the xAPIC ones (Intel SDM vol. 3A, "Local APIC
 * Register Address Map"); the x2APIC MSR for offset r is 0x800 + (r >> 4),
 * except that the ICR is one 64-bit MSR instead of two 32-bit registers
 * ("x2APIC Register Address Space").
 *
 * IPIs in xAPIC mode take two register writes (destination, then the low
 * word that sends) and the delivery-status bit must be clear before the
 * next send; interrupts are disabled around the pair so that a handler on
 * this CPU cannot send in between. In x2APIC mode the ICR write is one
 * WRMSR, which is not serialising and may complete before the sender's
 * earlier stores are visible: MFENCE then LFENCE first, the sequence the
 * SDM names for it ("x2APIC Register Access"; MFENCE alone orders loads
 * and stores, and WRMSR is neither: the request a shootdown or a
 * stop-the-world IPI is sent for could arrive after the IPI; review).
 *
 * An xAPIC whose delivery status stays pending for ICR_SPIN_LIMIT polls
 * has not accepted the IPI, and whoever waits for its answer (a TLB
 * shootdown, a stop-the-world, a reschedule) would wait for good, with no
 * word on why; writing the next IPI over it is undefined (SDM "Interrupt
 * Command Register"). So that is a panic naming the IPI, read back from
 * the ICR: its delivery mode, vector and destination. Only a panic that
 * is already under way (stopping the other CPUs with NMIs) gets a line
 * instead and goes on.
 */
#include "lapic.h"

#include <stdatomic.h>

#include "cpu.h"
#include "paging.h"

#include "lapic_testing.h"

#include "kernel/format.h"
#include "kernel/irq.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"

#define MSR_APIC_BASE     0x1bu
#define APIC_BASE_BSP     (1ull << 8)
#define APIC_BASE_EXTD    (1ull << 10) /* x2APIC mode */
#define APIC_BASE_ENABLE  (1ull << 11)
#define APIC_BASE_ADDR    0x000ffffffffff000ull
#define CPUID1_ECX_X2APIC (1u << 21)
#define X2APIC_MSR_BASE   0x800u
#define X2APIC_MSR_ICR    0x830u

/* Register offsets (xAPIC). */
#define REG_ID         0x020
#define REG_VERSION    0x030
#define REG_TPR        0x080
#define REG_EOI        0x0b0
#define REG_SVR        0x0f0
#define REG_ESR        0x280
#define REG_ICR_LOW    0x300
#define REG_ICR_HIGH   0x310
#define REG_LVT_TIMER  0x320
#define REG_LVT_LINT0  0x350
#define REG_LVT_LINT1  0x360
#define REG_LVT_ERROR  0x370
#define REG_TIMER_INIT 0x380
#define REG_TIMER_CUR  0x390
#define REG_TIMER_DIV  0x3e0

#define SVR_ENABLE         (1u << 8)
#define LVT_MASKED         (1u << 16)
#define LVT_TIMER_PERIODIC (1u << 17)
#define LVT_DELIVERY_NMI   (4u << 8)
#define TIMER_DIV_16       0x3u /* divide configuration: bus clock / 16 */

#define ICR_FIXED        (0u << 8)
#define ICR_NMI          (4u << 8)
#define ICR_INIT         (5u << 8)
#define ICR_STARTUP      (6u << 8)
#define ICR_PENDING      (1u << 12) /* xAPIC delivery status */
#define ICR_ASSERT       (1u << 14)
#define ICR_SELF         (1u << 18)
#define ICR_ALL          (2u << 18)
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_MODE_MASK    (7u << 8)
#define ICR_DEST_MASK    (3u << 18)

/* How long to wait for the xAPIC delivery status to clear: the APIC sends
 * within microseconds; this bound only keeps a wedged one from hanging us. */
#define ICR_SPIN_LIMIT 10000000u

/* Immutable after lapic_init(): */
static bool x2apic;
static volatile uint32_t *mmio; /* xAPIC registers, NULL in x2APIC mode */
static paddr_t mmio_phys;

/* Written once at calibration, then read-only: */
static uint32_t ticks_per_ms;

/* Set by lapic_timer_periodic(), read by APs as they start. Atomic. */
static _Atomic unsigned timer_hz;

static uint32_t rd(unsigned reg)
{
	if (x2apic)
		return (uint32_t)rdmsr(X2APIC_MSR_BASE + (reg >> 4));
	return mmio[reg / 4];
}

static void wr(unsigned reg, uint32_t v)
{
	if (x2apic)
		wrmsr(X2APIC_MSR_BASE + (reg >> 4), v);
	else
		mmio[reg / 4] = v;
}

uint32_t lapic_id(void)
{
	return x2apic ? rd(REG_ID) : rd(REG_ID) >> 24;
}

bool lapic_x2apic(void)
{
	return x2apic;
}

const char *lapic_mode_name(void)
{
	return x2apic ? "x2APIC" : "xAPIC";
}

void lapic_eoi(void)
{
	wr(REG_EOI, 0);
}

/* Default timer tick until the scheduler registers its own. */
static void default_tick(struct trap_frame *f)
{
	this_cpu()->ticks++;
}

/* Enables this CPU's LAPIC in the chosen mode. LINT0 (the 8259's virtual
 * wire) is masked everywhere: the kernel drives no legacy interrupts.
 * LINT1 carries NMI on the boot CPU only, as the MP specification wires it. */
static void enable_local(bool bsp)
{
	uint64_t base = rdmsr(MSR_APIC_BASE);
	if (x2apic) {
		/* A disabled APIC may only go to xAPIC mode; x2APIC mode is
		 * one more step from there (SDM "x2APIC State Transitions"). */
		if (!(base & APIC_BASE_ENABLE)) {
			base |= APIC_BASE_ENABLE;
			wrmsr(MSR_APIC_BASE, base);
		}
		base |= APIC_BASE_EXTD;
	} else {
		if (base & APIC_BASE_EXTD)
			panic("lapic: cpu %u is in x2APIC mode, the boot CPU "
			      "in xAPIC mode",
			      this_cpu()->id);
		if ((base & APIC_BASE_ADDR) != mmio_phys)
			panic("lapic: cpu %u has its APIC at %#llx, the boot "
			      "CPU at %#llx",
			      this_cpu()->id,
			      (unsigned long long)(base & APIC_BASE_ADDR),
			      (unsigned long long)mmio_phys);
		base |= APIC_BASE_ENABLE;
	}
	wrmsr(MSR_APIC_BASE, base);

	/* Software-enable first: while disabled, the LVT mask bits cannot
	 * be cleared (SDM "Local APIC State After It Has Been Software
	 * Disabled"). */
	wr(REG_SVR, SVR_ENABLE | IRQ_VEC_SPURIOUS);
	wr(REG_TPR, 0);
	wr(REG_LVT_TIMER, LVT_MASKED | IRQ_VEC_TIMER);
	wr(REG_LVT_LINT0, LVT_MASKED);
	wr(REG_LVT_LINT1, bsp ? LVT_DELIVERY_NMI : LVT_MASKED);
	wr(REG_LVT_ERROR, LVT_MASKED);
	wr(REG_ESR, 0);
	/* Anything left in service from the firmware is retired here. */
	lapic_eoi();
}

void lapic_init(void)
{
	uint32_t r[4];
	cpuid(1, 0, r);
	uint64_t base = rdmsr(MSR_APIC_BASE);
	/* Firmware that went to x2APIC mode cannot be taken back to xAPIC
	 * without disabling the APIC, so follow it. */
	x2apic = (r[2] & CPUID1_ECX_X2APIC) || (base & APIC_BASE_EXTD);
	if (!x2apic) {
		mmio_phys = base & APIC_BASE_ADDR;
		int err = vm_map_page(LAPIC_MMIO_VA, mmio_phys,
		                      VM_WRITE | VM_NOCACHE);
		if (err)
			panic("lapic: cannot map the xAPIC page %#llx: error "
			      "%d",
			      (unsigned long long)mmio_phys, -err);
		mmio = (volatile uint32_t *)LAPIC_MMIO_VA;
	}
	/* The kernel uses no 8259 interrupt; mask both PICs so that none
	 * arrives through a path the kernel does not set up. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);

	enable_local(true);
	this_cpu()->apic_id = lapic_id();
	irq_set_eoi(lapic_eoi);
	irq_register(IRQ_VEC_TIMER, default_tick);
	printk("lapic: %s mode, boot CPU APIC id %u, version %#x%s\n",
	       lapic_mode_name(), this_cpu()->apic_id, rd(REG_VERSION) & 0xff,
	       x2apic ? "" : " (MMIO page mapped uncached)");
}

void lapic_init_ap(void)
{
	enable_local(false);
	unsigned hz = timer_hz;
	if (hz)
		lapic_timer_periodic(hz);
}

#if KTEST_HOOKS
/* lapic_testing_wedge_next_ipi: the next IPI's delivery status reads
 * pending until the wait for it runs out. Atomic. */
static _Atomic bool icr_wedged;

void lapic_testing_wedge_next_ipi(void)
{
	atomic_store(&icr_wedged, true);
}

static bool take_wedge(void)
{
	return atomic_exchange(&icr_wedged, false);
}
#else
static bool take_wedge(void)
{
	return false;
}
#endif

static const char *icr_mode_name(uint32_t low)
{
	switch (low & ICR_MODE_MASK) {
	case ICR_FIXED:
		return "fixed";
	case ICR_NMI:
		return "NMI";
	case ICR_INIT:
		return "INIT";
	case ICR_STARTUP:
		return "STARTUP";
	default:
		return "other";
	}
}

/* Reports the IPI in the ICR that the APIC did not accept after polls
 * polls: a panic, or a line if this CPU is panicking already. */
static void icr_not_accepted(bool sent, uint32_t polls)
{
	uint32_t low = rd(REG_ICR_LOW), dest = rd(REG_ICR_HIGH) >> 24;
	char to[24];
	switch (low & ICR_DEST_MASK) {
	case ICR_SELF:
		ksnprintf(to, sizeof(to), "itself");
		break;
	case ICR_ALL:
		ksnprintf(to, sizeof(to), "all CPUs");
		break;
	case ICR_ALL_BUT_SELF:
		ksnprintf(to, sizeof(to), "all other CPUs");
		break;
	default:
		ksnprintf(to, sizeof(to), "APIC id %u", dest);
	}
	char msg[256];
	ksnprintf(msg, sizeof(msg),
	          "lapic: cpu %u: %s (%s, vector %#x) to %s not accepted "
	          "after %u polls (ICR delivery status still pending): "
	          "whoever waits for its answer would wait for good",
	          this_cpu()->id, sent ? "IPI" : "the previous IPI",
	          icr_mode_name(low), low & 0xff, to, polls);
	if (!panic_here())
		panic("%s", msg);
	printk("%s\n", msg);
}

/* Waits for an xAPIC to accept the IPI in its ICR: the previous one
 * (before a send) or the one just sent. Interrupts off. */
static void icr_wait(bool sent)
{
	if (x2apic)
		return;
	bool wedged = sent && take_wedge();
	for (uint32_t n = 0; wedged || (rd(REG_ICR_LOW) & ICR_PENDING); n++) {
		if (n == ICR_SPIN_LIMIT) {
			icr_not_accepted(sent, n);
			return;
		}
		cpu_pause();
	}
}

/* Writes the ICR: dest is an APIC id (ignored with a shorthand). */
static void send_icr(uint32_t dest, uint32_t low)
{
	uint64_t flags = read_rflags();
	cpu_cli();
	if (x2apic) {
		__asm__ volatile("mfence; lfence" ::: "memory");
		wrmsr(X2APIC_MSR_ICR, ((uint64_t)dest << 32) | low);
	} else {
		icr_wait(false);
		wr(REG_ICR_HIGH, dest << 24);
		wr(REG_ICR_LOW, low);
		icr_wait(true);
	}
	if (flags & RFLAGS_IF)
		cpu_sti();
}

void lapic_send_ipi(uint32_t apic_id, unsigned vector)
{
	send_icr(apic_id, ICR_FIXED | ICR_ASSERT | (vector & 0xff));
}

void lapic_send_ipi_others(unsigned vector)
{
	send_icr(0,
	         ICR_ALL_BUT_SELF | ICR_FIXED | ICR_ASSERT | (vector & 0xff));
}

void lapic_send_nmi(uint32_t apic_id)
{
	send_icr(apic_id, ICR_NMI | ICR_ASSERT);
}

void lapic_send_init(uint32_t apic_id)
{
	send_icr(apic_id, ICR_INIT | ICR_ASSERT);
}

void lapic_send_sipi(uint32_t apic_id, uint32_t page)
{
	send_icr(apic_id, ICR_STARTUP | ICR_ASSERT | (page & 0xff));
}

void lapic_timer_count_start(void)
{
	wr(REG_LVT_TIMER, LVT_MASKED | IRQ_VEC_TIMER);
	wr(REG_TIMER_DIV, TIMER_DIV_16);
	wr(REG_TIMER_INIT, 0xffffffffu);
}

uint32_t lapic_timer_count(void)
{
	return rd(REG_TIMER_CUR);
}

void lapic_timer_set_rate(uint32_t rate)
{
	if (rate == 0 || rate > LAPIC_MAX_TICKS_PER_MS)
		panic("lapic: timer rate %u ticks/ms is out of range [1, %u]: "
		      "a 1 Hz period would not fit the 32-bit count (a bus "
		      "clock over 68 GHz); the calibration is wrong",
		      rate, LAPIC_MAX_TICKS_PER_MS);
	ticks_per_ms = rate;
	wr(REG_TIMER_INIT, 0);
}

uint32_t lapic_timer_ticks_per_ms(void)
{
	return ticks_per_ms;
}

unsigned lapic_timer_hz(void)
{
	return timer_hz;
}

void lapic_timer_periodic(unsigned hz)
{
	/* In 64 bits: 1000 * ticks_per_ms passes 2^32 at 4295 ticks/ms. */
	uint64_t count = hz ? 1000ull * ticks_per_ms / hz : 0;
	if (count == 0 || count > 0xffffffffu)
		panic("lapic: periodic timer at %u Hz (%u ticks/ms): a period "
		      "of %llu ticks, outside [1, 2^32 - 1]",
		      hz, ticks_per_ms, (unsigned long long)count);
	timer_hz = hz;
	wr(REG_TIMER_DIV, TIMER_DIV_16);
	wr(REG_LVT_TIMER, LVT_TIMER_PERIODIC | IRQ_VEC_TIMER);
	wr(REG_TIMER_INIT, (uint32_t)count);
}

void lapic_timer_oneshot(uint64_t ns)
{
	if (!ticks_per_ms)
		panic("lapic: one-shot timer before calibration");
	uint64_t us = ns / 1000;
	if (us > 0xffffffffu)
		us = 0xffffffffu; /* keeps the product below 2^64 */
	uint64_t n = us * ticks_per_ms / 1000;
	if (n == 0)
		n = 1;
	if (n > 0xffffffffu)
		n = 0xffffffffu;
	wr(REG_TIMER_DIV, TIMER_DIV_16);
	wr(REG_LVT_TIMER, IRQ_VEC_TIMER); /* one-shot mode, unmasked */
	wr(REG_TIMER_INIT, (uint32_t)n);
}

void lapic_timer_stop(void)
{
	wr(REG_LVT_TIMER, LVT_MASKED | IRQ_VEC_TIMER);
	wr(REG_TIMER_INIT, 0);
}
