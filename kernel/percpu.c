/* The per-CPU areas (see percpu.h). */
#include "percpu.h"

#include "arch/x86_64/cpu_local.h"

_Static_assert(offsetof(struct cpu, fault_catch) == CPU_FAULT_CATCH_OFFSET,
               "fault.S stores the hook at this offset");

struct cpu cpus[MAX_CPUS];
_Atomic unsigned ncpus_online;

void cpu_init_local(unsigned id, uint32_t apic_id)
{
	struct cpu *c = &cpus[id];
	c->self = c;
	c->id = id;
	c->apic_id = apic_id;
	arch_cpu_local_set(c);
}
