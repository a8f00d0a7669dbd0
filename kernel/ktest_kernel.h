/* The test kernel's side of ktest: run the tests named on the command line
 * and leave QEMU with a status the host runner understands. */
#ifndef KERNEL_KTEST_KERNEL_H
#define KERNEL_KTEST_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

/* isa-debug-exit codes; the host sees (code << 1) | 1: 33, 35, 37. */
#define KTEST_EXIT_PASS  0x10
#define KTEST_EXIT_FAIL  0x11
#define KTEST_EXIT_PANIC 0x12

/* True once the command line asked for tests ("ktest=<globs>"). */
bool ktest_kernel_mode(void);

/* Reads the command line's ktest= as soon as it is copied, so that a panic
 * during boot already leaves QEMU with the panic code. */
void ktest_kernel_init(void);

/* Runs the selected tests if the command line says so, then leaves QEMU;
 * returns only when no tests were asked for. */
void ktest_kernel_main(void);

/*
 * A test's option "key=N" from the command line, N in [lo, hi]; dflt when
 * the key is absent. A value the kernel's parser refuses (printed, naming
 * it) fails the current test at the caller's line and gives dflt: an
 * option that cannot be read must not pass as no option at all.
 */
#define KTEST_OPTION(key, lo, hi, dflt) \
	ktest_option_at(__FILE__, __LINE__, key, lo, hi, dflt)
uint64_t ktest_option_at(const char *file, int line, const char *key,
                         uint64_t lo, uint64_t hi, uint64_t dflt);

#endif
