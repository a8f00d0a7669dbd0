/*
 * Kernel glue for the ktest runner: KTAP goes to the console, the tests to
 * run come from "ktest=<glob>[,<glob>...]" on the command line, and the
 * result leaves QEMU through isa-debug-exit (see ktest_kernel.h).
 */
#include "ktest_kernel.h"

#include "arch/x86_64/cpu.h"
#include "kernel/bootinfo.h"
#include "kernel/ktest.h"
#include "kernel/printk.h"

extern const struct ktest __start_ktests[], __stop_ktests[];

static bool test_mode;
static char select[BOOT_CMDLINE_MAX];

void ktest_port_vprintf(const char *fmt, va_list ap)
{
	vprintk(fmt, ap);
}

bool ktest_kernel_mode(void)
{
	return test_mode;
}

void ktest_kernel_init(void)
{
	test_mode = cmdline_get("ktest", NULL, 0);
}

uint64_t ktest_option_at(const char *file, int line, const char *key,
                         uint64_t lo, uint64_t hi, uint64_t dflt)
{
	uint64_t v;
	if (cmdline_get_uint(key, lo, hi, &v))
		return v;
	if (cmdline_get(key, NULL, 0))
		ktest_fail_at(file, line, "%s is not a number in [%lu, %lu]",
		              key, (unsigned long)lo, (unsigned long)hi);
	return dflt;
}

void ktest_kernel_main(void)
{
	if (!cmdline_get("ktest", select, sizeof(select)))
		return;
	test_mode = true;
	printk("ktest: running tests matching '%s'\n", select);
	enum ktest_result r = ktest_run(__start_ktests, __stop_ktests, select);
	qemu_exit(r == KTEST_PASSED ? KTEST_EXIT_PASS : KTEST_EXIT_FAIL);
	printk("ktest: isa-debug-exit is missing; halting\n");
	cpu_halt_forever();
}
