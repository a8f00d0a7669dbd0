# Every entry point of the project.
#
#   make            build the loader, the kernel, the host test binary and
#                   libmm_malloc.so
#   make run        boot the kernel in QEMU (SMP=N CPUs, MEM=size) at its
#                   shell; CMDS='a; b' types the commands and exits with
#                   the last one's status; HEAPMAP=1 also draws the heap
#                   over time into $(BUILD)/heapmap.png
#   make heapmap    a scripted workload drawn as $(BUILD)/heapmap.png
#   make test       host tests under ASan/UBSan (and over the minimal port,
#                   tests/port) and under TSan, real programs
#                   under the hosted malloc, then kernel tests in QEMU;
#                   KTEST=glob selects kernel tests by "suite.name" (the
#                   bench suite only when named: KTEST='bench.*')
#   make debug      QEMU waiting for gdb (-s -S) and a gdb script with symbols
#   make bench      host page-allocator and span heap benchmarks and in-kernel
#                   cost figures (make bench-spanheap: the span heap only;
#                   make bench-cliffs: patterns where ours might be many
#                   times slower than the peers)
#   make format     clang-format every C file; make format-check to verify
#   make clean
#
# CC=clang builds everything with clang instead of gcc. Objects go under
# $(BUILD), mirroring the source tree. KTEST_FAIL_DEMO=1 builds a kernel with
# a deliberately failing test (into its own build directory).

ifeq ($(origin CC),default)
CC := gcc
endif
LD := ld
OBJCOPY := objcopy
NM := nm

KTEST_FAIL_DEMO ?= 0
ifeq ($(KTEST_FAIL_DEMO),1)
BUILD ?= build/faildemo
else
BUILD ?= build
endif

SMP ?= 4
MEM ?= 512M
KTEST ?= *
# A hang guard for each kernel test run, in seconds, never a bound on its
# time: the whole suite takes about 35 s in QEMU alone, but a helper's run
# on a machine loaded 10 deep was killed at 120 s, mid-test.
QEMU_TIMEOUT ?= 600

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:

# ---------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------

# Freestanding x86_64 kernel code: no red zone (interrupts use the stack),
# no FPU/SSE registers (they are not saved on entry), frame pointers kept for
# the backtrace, no libc headers.
KCFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-ffreestanding -fno-stack-protector -fno-pic -fno-pie -fno-builtin \
	-mno-red-zone -mcmodel=kernel -mgeneral-regs-only \
	-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer \
	-fno-asynchronous-unwind-tables -fno-strict-aliasing \
	-nostdinc -isystem $(shell $(CC) -print-file-name=include) \
	-I. -MMD -MP
ifeq ($(KTEST_FAIL_DEMO),1)
KCFLAGS += -DKTEST_FAIL_DEMO=1
endif
# Test hooks (kernel/testhook.h) widen race windows for the tests that need
# them. Every kernel carries its tests, so they are on by default;
# KTEST_HOOKS=0 builds a kernel without them or those tests.
KTEST_HOOKS ?= 1
KCFLAGS += -DKTEST_HOOKS=$(KTEST_HOOKS)
# mm/'s own hooks (mm/mheap_testing.h) follow: a kernel that lifts mm/
# leaves MM_TEST_HOOKS out.
ifeq ($(KTEST_HOOKS),1)
KCFLAGS += -DMM_TEST_HOOKS
endif
# mm/'s pin hooks are inline (mm/port.h, MM_PORT_INLINE).
KCFLAGS += -DMM_PORT_INLINE='"kernel/mm_port_inline.h"'
# The kernel's shrinkers run when the heap runs short (mm/port.h,
# mm_port_reclaim; kernel/shrinker.h).
KCFLAGS += -DMM_PORT_RECLAIM
# The span heap's poison mode keeps mm.kasan's shadow (mm/port.h,
# mm_port_shadow; kernel/kasan.c).
KCFLAGS += -DMM_PORT_SHADOW
# The span heap's TYPESAFE_BY_RCU caches wait for the kernel's grace
# periods (mm/port.h, mm_port_call_rcu; kernel/rcu.c).
KCFLAGS += -DMM_PORT_RCU
# Each object's call graph and frame sizes, beside it (FILE.c.ci), for
# tools/stack-depth (make test-stack); gcc only, clang has no such output.
KCFLAGS_CI := $(if $(shell $(CC) -v 2>&1 | grep '^gcc version'),-fcallgraph-info=su)
KCFLAGS += $(KCFLAGS_CI)
KASFLAGS := -g -I. -MMD -MP -D__ASSEMBLY__
KLDFLAGS := -nostdlib -static -z max-page-size=0x1000 -z noexecstack \
	--no-warn-rwx-segments -T linker.ld

include mm/mm.mk

KERNEL_SRCS := $(wildcard arch/x86_64/*.c arch/x86_64/*.S kernel/*.c) \
	$(addprefix mm/,$(MM_SRCS)) $(wildcard tests/kernel/*.c)
KERNEL_OBJS := $(patsubst %,$(BUILD)/%.o,$(KERNEL_SRCS))
KERNEL := $(BUILD)/kernel.elf

# A link's object list, kept in a file that is rewritten only when the
# list changes: the link depends on it, so a source removed or renamed (a
# test file moved) relinks the binary. Until this version a deleted
# test's object stayed linked in, and its tests ran, until the binary was
# removed by hand. $(call objlist,FILE,OBJS)
objlist = @mkdir -p $(dir $(1)); echo '$(2)' | cmp -s - $(1) || echo '$(2)' > $(1)
.PHONY: FORCE
FORCE:

# A build flavour's compiler and flags, FLAGS_NAME, kept in
# $(BUILD)/flags/NAME, which is rewritten when make reads this file only
# if they changed: the flavour's objects depend on it, so a run with
# other flags (CC=clang, KTEST_HOOKS=0, EFI_INC=...) compiles them again.
# Until this version `make CC=clang` after a gcc build compiled nothing
# but ksyms.S and relinked host-test with clang over gcc's objects.
# make -n or -q leaves the file alone and, if the flags differ, makes
# the objects depend on FORCE, so it shows what a real run would do.
# The new text goes to a file of this make's own (make test runs several
# at once), renamed over the old one. $(call flags_file,NAME) gives the
# prerequisite (use it with :=).
flags_dry := $(findstring n,$(firstword -$(MAKEFLAGS)))$(findstring \
	q,$(firstword -$(MAKEFLAGS)))
flags_new := new.$(shell echo $$PPID)
flags_file = $(BUILD)/flags/$(1)$(shell mkdir -p $(BUILD)/flags)$(file \
	>$(BUILD)/flags/$(1).$(flags_new),$(strip $(FLAGS_$(1))))$(shell \
	cd $(BUILD)/flags && if cmp -s $(1).$(flags_new) $(1); then \
	rm $(1).$(flags_new); elif [ -n "$(flags_dry)" ]; then \
	rm $(1).$(flags_new); echo " FORCE"; \
	else mv $(1).$(flags_new) $(1); fi)

# Written again if removed (make clean all: after make read this file)
# by a make that reads it again: a recipe writing it with $(file) would
# write it under make -n -B too (tools/lint-deps), and the objects would
# all be rebuilt after the lint.
$(BUILD)/flags/%:
	@$(MAKE) --no-print-directory -s FORCE

# The programs compiled straight from their sources: their flags are in
# their recipes, their compiler here.
FLAGS_cc := $(CC)
CC_FLAGS := $(call flags_file,cc)

$(BUILD)/kernel.objs: FORCE
	$(call objlist,$@,$(KERNEL_OBJS))

# KTEST_FAIL_DEMO is left out: its kernel has a build directory of its
# own, which tools/seed-build starts from this one's objects (and flags
# file) that the macro does not change.
FLAGS_kernel := $(CC) $(filter-out -DKTEST_FAIL_DEMO=1,$(KCFLAGS) $(KASFLAGS))
KERNEL_FLAGS := $(call flags_file,kernel)

$(BUILD)/%.c.o: %.c $(KERNEL_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) -c $< -o $@

# KASAN (kernel/kasan.h): these objects are built with gcc's kernel
# address sanitizer, every load and store a call to kasan.c's check,
# which returns at its first test unless the kernel booted with mm.kasan;
# their memcpy, memset and memmove calls go to checked versions
# (kernel/kasan_checked.h). Outline calls (no inline shadow reads: the
# shadow has no fixed offset), no globals or stack red zones (the shadow
# covers the heap's arena alone). Everything else, kasan.c and mm/ among
# it, is not instrumented.
KASAN_SRCS := tests/kernel/kasan_test.c tests/kernel/kasan_storm_test.c
KASAN_PARAM := $(if $(KCFLAGS_CI),--param ,-mllvm -)
KASAN_CFLAGS := -fsanitize=kernel-address \
	$(KASAN_PARAM)asan-instrumentation-with-call-threshold=0 \
	$(KASAN_PARAM)asan-globals=0 $(KASAN_PARAM)asan-stack=0 \
	-include kernel/kasan_checked.h
$(patsubst %,$(BUILD)/%.o,$(KASAN_SRCS)): KCFLAGS += $(KASAN_CFLAGS)

# The KASAN image, $(BUILD)/kernel-kasan.elf, which make
# test-kernel-poison boots with mm.kasan: the same kernel with every file
# of kernel/ and tests/kernel/ instrumented (objects under
# $(BUILD)/kasan/) but those KASAN_NOT_SRCS lists, so that a bad access
# to a heap object in the kernel's own code is reported at the access.
# Every other run boots $(KERNEL), whose objects this leaves alone: each
# check is a call even with mm.kasan off, about a tenth more time for a
# run of the whole suite under TCG. Never instrumented: mm/ (the heap
# writes its poison and markers into freed objects and reads them back,
# as Linux's SLUB leaves its metadata accesses unchecked); arch/ (trap
# and interrupt entry, the APs' start, the NMI handler: where a report
# cannot be made); and these, each for its reason:
#   kernel/kasan.c, kasan_report.c  the checks and the report themselves
#   kernel/string.c     memcpy and friends: checked by their callers
#                       instead (kernel/kasan_checked.h renames the calls)
#   kernel/printk.c     the report's own printing, and the NMI's and the
#                       panic's; its ring and console are globals, which
#                       no shadow covers: its checks could find nothing,
#                       only cost a call a byte printed
KASAN_NOT_SRCS := kernel/kasan.c kernel/kasan_report.c kernel/string.c \
	kernel/printk.c
KASAN_IMAGE_SRCS := $(filter-out $(KASAN_NOT_SRCS) $(KASAN_SRCS), \
	$(wildcard kernel/*.c tests/kernel/*.c))
KERNEL_KASAN := $(BUILD)/kernel-kasan.elf
KERNEL_KASAN_OBJS := $(patsubst %,$(BUILD)/kasan/%.o,$(KASAN_IMAGE_SRCS)) \
	$(filter-out $(patsubst %,$(BUILD)/%.o,$(KASAN_IMAGE_SRCS)), \
	$(KERNEL_OBJS))

FLAGS_kasan := $(FLAGS_kernel) $(KASAN_CFLAGS)
KASAN_FLAGS := $(call flags_file,kasan)

$(BUILD)/kasan/%.c.o: %.c $(KERNEL_FLAGS) $(KASAN_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) $(KASAN_CFLAGS) -c $< -o $@

$(BUILD)/kernel-kasan.objs: FORCE
	$(call objlist,$@,$(KERNEL_KASAN_OBJS))

$(BUILD)/%.S.o: %.S $(KERNEL_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(KASFLAGS) -c $< -o $@

# The symbol table for backtraces is linked into the image itself. Pass 1
# links with an empty table; its text symbols become the table; pass 2 links
# again. The table section sits after .rodata, so text addresses cannot move
# between the passes; the build checks that they did not.
$(BUILD)/ksyms-empty.S.o: tools/gen-ksyms linker.ld $(KERNEL_FLAGS)
	@mkdir -p $(@D)
	tools/gen-ksyms /dev/null > $(BUILD)/ksyms-empty.S
	$(CC) $(KASFLAGS) -c $(BUILD)/ksyms-empty.S -o $@

# $(call kernel_link,IMAGE,OBJS,TAG): IMAGE.elf's two passes, linked
# from OBJS; its pass-1 image IMAGE.pass1.elf, its object list
# IMAGE.objs, its table $(BUILD)/TAGksyms.S.o.
define kernel_link
$(1:.elf=).pass1.elf: $(2) $(BUILD)/ksyms-empty.S.o linker.ld \
		$(1:.elf=).objs
	$(LD) $(KLDFLAGS) -o $$@ $(2) $(BUILD)/ksyms-empty.S.o

$(BUILD)/$(3)ksyms.S.o: $(1:.elf=).pass1.elf tools/gen-ksyms $(KERNEL_FLAGS)
	$(NM) -n --defined-only $$< | tools/gen-ksyms - > $(BUILD)/$(3)ksyms.S
	$(CC) $(KASFLAGS) -c $(BUILD)/$(3)ksyms.S -o $$@

$(1): $(1:.elf=).pass1.elf $(BUILD)/$(3)ksyms.S.o
	$(LD) $(KLDFLAGS) -o $$@ $(2) $(BUILD)/$(3)ksyms.S.o
	@$(NM) -n $(1:.elf=).pass1.elf | grep -i ' t ' > $(BUILD)/$(3)syms.1
	@$(NM) -n $$@ | grep -i ' t ' > $(BUILD)/$(3)syms.2
	@cmp -s $(BUILD)/$(3)syms.1 $(BUILD)/$(3)syms.2 || \
		{ echo "ksyms: text moved between link passes"; rm -f $$@; exit 1; }
	@tools/check-image $$@ || { rm -f $$@; exit 1; }
endef
$(eval $(call kernel_link,$(KERNEL),$(KERNEL_OBJS),))
$(eval $(call kernel_link,$(KERNEL_KASAN),$(KERNEL_KASAN_OBJS),kasan-))

# ---------------------------------------------------------------------------
# Loader (boot/boot.mk defines BOOT_EFI)
# ---------------------------------------------------------------------------

include boot/boot.mk

# ---------------------------------------------------------------------------
# Host tests: the portable code under AddressSanitizer and UBSan (and, in
# tests/host/host.mk, a second build under ThreadSanitizer)
# ---------------------------------------------------------------------------

HOST_BUILD := $(BUILD)/host
# The POSIX test port's pin hooks are inline (mm/port.h, MM_PORT_INLINE).
HOST_PIN := -DMM_PORT_INLINE='"tests/host/mm_port_posix_pin.h"'
HOST_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -I. -MMD -MP -DMM_HOSTED=1 $(HOST_PIN) -DMM_TEST_HOOKS \
	-DMM_PORT_RCU
HOST_TEST_SRCS += kernel/acpi_parse.c kernel/acpi_mem.c kernel/bootinfo.c \
	kernel/bootinfo_cmdline.c
HOST_TEST_SRCS += kernel/ktest.c kernel/format.c \
	$(addprefix mm/,$(MM_SRCS)) $(MM_HOST_SRCS) \
	$(filter-out tests/host/one_thread.c,$(wildcard tests/host/*.c))
HOST_OBJS := $(patsubst %,$(HOST_BUILD)/%.o,$(HOST_TEST_SRCS))
HOST_TEST := $(HOST_BUILD)/host-test

FLAGS_host := $(CC) $(HOST_CFLAGS)
HOST_FLAGS := $(call flags_file,host)

$(HOST_BUILD)/%.c.o: %.c $(HOST_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(HOST_CFLAGS) -c $< -o $@

$(HOST_BUILD)/host-test.objs: FORCE
	$(call objlist,$@,$(HOST_OBJS))

# tests/host/one_thread.c sees the tests' pthread_create calls
# (HOST_TEST_ONE_THREAD): in this binary alone.
HOST_ONE_THREAD_OBJ := $(HOST_BUILD)/tests/host/one_thread.c.o
$(HOST_TEST): $(HOST_OBJS) $(HOST_ONE_THREAD_OBJ) $(HOST_BUILD)/host-test.objs
	$(CC) $(HOST_CFLAGS) -o $@ $(HOST_OBJS) $(HOST_ONE_THREAD_OBJ) \
		-Wl,--wrap=pthread_create -lpthread

include tests/host/host.mk
include tests/host/coverage.mk

# mm/ over a minimal port written from docs/PORTING.md alone.
include tests/port/port.mk

# The hosted malloc (libmm_malloc.so) and its real-program tests.
include malloc/malloc.mk

# ---------------------------------------------------------------------------
# ESP image and QEMU
# ---------------------------------------------------------------------------

ESP := $(BUILD)/esp.img

$(ESP): $(BOOT_EFI) $(KERNEL) tools/mkesp
	tools/mkesp $@ $(BOOT_EFI) $(KERNEL) ""

all: $(BOOT_EFI) $(KERNEL) $(HOST_TEST) $(MALLOC_SO)

# tools/install-deps installs what this machine lacks (with apt-get) or
# stops naming it; with everything there it only looks, in milliseconds.
# Whatever is built first waits for it, so a plain `make` on a fresh
# machine works too, also with -j, and so does `make test-build`: until
# this version its TSan, malloc-tsan and coverage objects and the
# programs compiled straight from their sources did not wait (make -p
# showed no "| deps" on them), so with -j they could start before
# install-deps had put gcc there.
deps:
	@tools/install-deps

$(BOOT_OBJS) $(KERNEL_OBJS) $(BUILD)/ksyms-empty.S.o $(HOST_OBJS) $(ESP) \
	$(MALLOC_OBJS) $(MALLOC_HOOKS_OBJS) $(TSAN_OBJS) $(COV_OBJS) \
	$(MALLOC_TSAN_LIB_OBJS) $(MALLOC_TSAN_TEST_OBJS) $(SC_GEN) \
	$(BENCH_BIN) $(SPANHEAP_BENCH_BIN) $(CLIFFS_BENCH_BIN) \
	$(MALLOC_FORK_LIB) $(MALLOC_INITFIRST_LIB) $(MALLOC_API_TEST) \
	$(MALLOC_HOOKS_TEST) $(MALLOC_RSS_BURST) $(MALLOC_BLOWUP) \
	$(MALLOC_LATENCY) $(MALLOC_THP_PROBE): | deps

# The benchmarks also want valgrind (instruction counts), gnuplot (the
# PNGs) and the peer allocators (tools/bench-spanheap); each bench target
# waits for them.
deps-bench:
	@tools/install-deps bench || \
		echo "bench: tools missing (above): some instruction counts, PNGs or peer allocators will be skipped"

# make run: the shell on this terminal (tools/shell-session --interactive:
# -serial mon:stdio, so Ctrl-C reaches the guest and Ctrl-A X quits), or,
# with CMDS='a; b', typed at it. The serial log is $(BUILD)/run.log.
# HEAPMAP=1 streams heap rows from boot (shell.heapmap=200) and plots them.
CMDS ?=
HEAPMAP ?= 0
RUN_CMDLINE := $(if $(filter 1,$(HEAPMAP)),shell.heapmap=200)
RUN_MODE := $(if $(CMDS),--cmds "$(CMDS)",--interactive)

run: deps
	@$(MAKE) --no-print-directory $(BOOT_EFI) $(KERNEL)
	@st=0; tools/shell-session $(RUN_MODE) --cmdline "$(RUN_CMDLINE)" \
		--log $(BUILD)/run.log $(BOOT_EFI) $(KERNEL) \
		-- -smp $(SMP) -m $(MEM) || st=$$?; \
	if [ "$(HEAPMAP)" = 1 ]; then \
		tools/plot-heapmap $(BUILD)/run.log $(BUILD)/heapmap.png \
			"kernel heap over time (make run, -smp $(SMP))" || st=1; \
	fi; exit $$st

# The heap over time, for the README: growth under a storm, the
# background scavenger after it, then release.
HEAPMAP_CMDS := heapmap stream 100; sleep 300; stress 4; sleep 2000; \
	release; sleep 500; heapmap stream off; heapmap

heapmap: $(BOOT_EFI) $(KERNEL) | deps-bench
	tools/shell-session --cmds "$(HEAPMAP_CMDS)" --log $(BUILD)/heapmap.log \
		$(BOOT_EFI) $(KERNEL) -- -smp $(SMP) -m $(MEM) >/dev/null
	tools/plot-heapmap $(BUILD)/heapmap.log $(BUILD)/heapmap.png \
		"kernel heap: stress 4 s on $(SMP) CPUs, scavenger, release"

debug: deps
	@$(MAKE) --no-print-directory $(ESP)
	@printf 'file %s\ntarget remote :1234\n' $(KERNEL) > $(BUILD)/gdbinit
	@echo "debug: QEMU waits for gdb; in another shell: gdb -x $(BUILD)/gdbinit"
	tools/qemu $(ESP) -smp $(SMP) -m $(MEM) -s -S

RESULTS := $(BUILD)/results
# The results file each part of `make test` writes, in order: the sum names
# any that is missing (a part that died before writing one) as a failure.
TEST_PARTS := lint size deps locks stack sizeclasses host model port host-tsan malloc-tsan chaos fuzz \
	real-quick kernel kernel-smp1 kernel-smp8 kernel-poison \
	harness

# Every run writes "passed failed skipped" under $(RESULTS); the last line of
# `make test` adds them up. One failed part does not hide the others (-k).
# Most parts keep one CPU busy, so they run side by side, one per CPU,
# longest first, each part's output printed whole when it ends (-Otarget);
# the harness, which runs its QEMU cases one per CPU and one more
# itself, is the last of them: it starts as soon as the last other part
# has started, and its cases fill the CPUs the parts' tail leaves idle
# (run after every part, as it was until 2026-12-07, it waited for the
# longest to end alone: kernel-smp1 ran on one CPU for the last 40 s of
# the phase, the other idle, and the harness's first 25 s, its demo
# kernel's build, host cases and saved boots, left a CPU idle too).
# kernel-smp8 is first, the most CPU of any part (8 vCPUs and the
# guarded pool); kernel-smp1 second: one vCPU, so one host CPU, and the
# longest kernel run by the clock (it waits on its timers); then
# kernel-poison, on the KASAN image (a call a load or store of kernel/
# and tests/kernel/: about a third more CPU than the plain image's
# run). Its image's object list is FORCE'd too
# (below): until it was passed over with -o, the run started after
# every other part, at 404 s of a 512 s make test, and ended 23 s after
# the harness, the tail alone. The line before the sum gives the second each
# part ended, to find the tail, and the phases' seconds. The packages
# the fuzz and real-quick parts need are installed first, as two apt-get
# runs at once would fight over dpkg's lock. Neither deps nor the object
# lists that test-build has just brought up to date are remade here
# (-o): a part whose prerequisites led to one (deps is every object's
# order-only prerequisite, the lists are FORCE'd) started only after
# every part that had none, whatever the order here; once, the host
# tests, started last, ran alone for the last 30 s of the phase.
TEST_SIDE_BY_SIDE := kernel-smp8 kernel-smp1 kernel-poison real-quick fuzz \
	tsan kernel-smp host model chaos malloc-tsan port \
	lint locks stack sizeclasses harness
TEST_OBJLISTS := $(BUILD)/kernel.objs $(BUILD)/kernel-kasan.objs \
	$(HOST_BUILD)/host-test.objs \
	$(TSAN_BUILD)/host-test.objs

test: deps
	@mkdir -p $(BUILD) && date +%s > $(BUILD)/.test-start
	@$(MAKE) --no-print-directory -j$$(nproc) test-build
	@tools/install-deps fuzz real || true
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@st=0; t1=$$(date +%s); \
	$(MAKE) --no-print-directory -k -j$$(nproc) -Otarget \
		$(addprefix -o ,deps $(TEST_OBJLISTS)) \
		$(addprefix test-,$(TEST_SIDE_BY_SIDE)) || st=1; \
	t2=$$(date +%s); \
	echo "test: parts by the second each ended:" $$(for r in \
		$(RESULTS)/*; do echo "$$(($$(stat -c %Y $$r) - t1))" \
		"$${r##*/}"; done | sort -n | tr '\n' ' '); \
	t0=$$(cat $(BUILD)/.test-start 2>/dev/null || echo $$t1); \
	echo "test: $$((t2 - t0)) s after deps: build $$((t1 - t0)) s," \
		"parts and harness $$((t2 - t1)) s (keep under 600)"; \
	$(MAKE) --no-print-directory test-sum && exit $$st || exit 1

# What make test runs, built first and in parallel (one job per CPU: a
# clean build of them took 2 minutes serially); each part then builds what
# is left of its own (the fuzzers), so no test shares the CPUs with the
# whole build. The RSS plot's program, bench-blowup's and bench-latency's
# are built too, though only their make targets run them, so that they
# cannot rot unseen.
# The harness's demo kernel is built here too (test-faildemo), with the
# rest, where its harness built it at the start of its own run, as it
# still does when run alone (then with nothing to do after this).
test-build: all $(KERNEL_KASAN) $(MM_KOBJS) $(PORT_TEST) $(TSAN_TEST) $(MALLOC_TSAN_TEST) \
		$(MALLOC_C_TESTS) $(SPANHEAP_BENCH_BIN) $(MALLOC_RSS_BURST) \
		$(MALLOC_BLOWUP) $(MALLOC_LATENCY) test-faildemo

# The kernel with the harness's failing demo tests (KTEST_FAIL_DEMO=1), in
# its own build directory, started from the test kernel's objects that
# the macro does not change (tools/seed-build), as tools/test-harness
# builds it.
test-faildemo: $(KERNEL) $(KERNEL_KASAN)
	@tools/seed-build $(BUILD) $(BUILD)/faildemo KTEST_FAIL_DEMO
	+@$(MAKE) --no-print-directory -s KTEST_FAIL_DEMO=1 \
		BUILD=$(BUILD)/faildemo $(BUILD)/faildemo/kernel.elf \
		$(BUILD)/faildemo/kernel-kasan.elf

# The last line of make test, on its own: RESULTS=dir sums another run's.
test-sum:
	@tools/sum-results $(addprefix $(RESULTS)/,$(TEST_PARTS))

# The include lint reads mm/; the symbol lints read the kernel's mm/
# objects (freestanding, as another kernel would build them).
MM_KOBJS := $(patsubst %,$(BUILD)/mm/%.o,$(MM_SRCS))

# mm/ is built into other kernels, with their warnings: it keeps clean of
# the one -Wextra warning the rest of this tree turns off.
$(MM_KOBJS): KCFLAGS += -Wunused-parameter

# The kernel gives the pin hooks inline (kernel/mm_port_inline.h), so its
# mm/ objects reference no symbol of theirs.
LINT_MM_UNUSED_OK := mm_port_pin mm_port_unpin

# Every lock's definition names its rank (the standards' "every lock
# documents its rank and what it protects").
test-locks:
	@mkdir -p $(RESULTS)
	@tools/lint-locks . $(RESULTS)/locks

# The worst-case stack of each of mm/'s entries in the kernel build, from
# gcc's call graphs (KCFLAGS_CI) of the kernel's own objects (its tests'
# left out: only test hooks call them), against tools/stack-depth.conf's
# budgets; the report goes to $(BUILD)/stack-depth.log. Skipped (one
# line says so) with a compiler that writes no call graphs.
STACK_OBJS := $(filter $(BUILD)/mm/%.c.o $(BUILD)/kernel/%.c.o \
	$(BUILD)/arch/%.c.o,$(KERNEL_OBJS))
test-stack: $(KERNEL)
	@mkdir -p $(RESULTS)
	@if [ -z "$(KCFLAGS_CI)" ]; then echo "test-stack: skipped: $(CC)" \
		"writes no call graph (-fcallgraph-info)"; \
		echo "0 0 1" >$(RESULTS)/stack; exit 0; fi; \
	tools/stack-depth tools/stack-depth.conf $(RESULTS)/stack \
		$(STACK_OBJS) >$(BUILD)/stack-depth.log; st=$$?; \
	grep -v '^    ' $(BUILD)/stack-depth.log | grep -v '^ok: '; exit $$st

# Then the house style's sizes (tools/lint-size: files, headers,
# functions), which a sweep found broken by files that had grown past
# them; its results go apart ("size"), and so do those of
# tools/lint-deps ("deps": the programs compiled straight from their
# sources, with no dependency file, list every header they include);
# each runs whatever the others say.
test-lint: $(MM_KOBJS)
	@mkdir -p $(RESULTS)
	@st=0; NM=$(NM) LINT_MM_UNUSED_OK="$(LINT_MM_UNUSED_OK)" \
		tools/lint-mm $(RESULTS)/lint mm $(MM_KOBJS) || st=1; \
	tools/lint-size $(RESULTS)/size || st=1; \
	MAKE="$(MAKE)" tools/lint-deps $(RESULTS)/deps BUILD=$(BUILD) \
		CC=$(CC) || st=1; exit $$st

# A host test that deadlocks (the port's locks and events) prints nothing
# more; after HOST_TIMEOUT seconds of that, tools/run-progress ends the
# run, cut short, and ktap-check names the test. The bound is on one
# test, not on the whole binary, whose time grows with the load.
HOST_TIMEOUT ?= 300

# Each test's start in CPU seconds goes to $(BUILD)/host.times
# (tests/host/main.c, HOST_TEST_TIMES): `tools/slowest-tests
# build/host.times` names the tests the part spends its CPU on.
test-host: $(HOST_TEST)
	@mkdir -p $(RESULTS)
	@HOST_TEST_ONE_THREAD='$(TSAN_ONE_THREAD),$(TSAN_SLOW_ONE_THREAD)' \
	HOST_TEST_TIMES=$(BUILD)/host.times \
	tools/run-progress $(HOST_TIMEOUT) $(BUILD)/host-test.log $(HOST_TEST); \
	tools/ktap-check host $(BUILD)/host-test.log $(RESULTS)/host "exit status $$?"

# The span heap's sweepgen protocol and the hosted malloc's slot protocol,
# model-checked with spin (tests/model: every interleaving of a few
# threads, and a mutant of each model that must fail); about 40 s of CPU.
test-model: deps
	@mkdir -p $(RESULTS)
	@tests/model/run $(HOST_BUILD) $(RESULTS)/model

# The kernel tests run four times: at -smp $(SMP), on one CPU, so that
# SMP bring-up and everything above it are tested with and without APs
# (that run with frames.debug_fill: every free frame holds garbage, as
# real RAM does, where QEMU's starts zeroed, so a user that takes a frame
# for zero fails there),
# at -smp 8, more vCPUs than twice this machine's cores (47 s alone
# since the spinlocks stopped handing off in FIFO order under a
# hypervisor: kernel/spinlock.h), with the guarded pool taking every
# refill it can (mm.guard=1: until its 64 slots are full, every class's
# objects are each on a page between guard pages, so an overrun or a use
# after free anywhere faults, and every test must hold with objects of
# the pool among the spans'), and at -smp $(SMP) with the heap in
# poison mode (mm.debug_poison: every freed object filled, every reuse
# checked, so a write after a kfree anywhere in the kernel panics naming
# the object; the tests of the magazines it turns off skip);
# smp.expect tells the smp suite how many CPUs QEMU was given.
# The guarded pool had a run of its own at -smp $(SMP) until 2026-12-07:
# 97 s of CPU, and the -smp 8 run 131; as one run, 154 (the same 435
# tests passing and 18 skipping as the pool's own run). Before that the
# poison and guard runs were at -smp 2, with the kmalloc suites booted
# again at -smp 4 in each mode by the harness.
test-kernel: test-kernel-smp test-kernel-smp1 test-kernel-smp8 \
	test-kernel-poison

# One run of the kernel suite:
# $(call kernel_run,LABEL,CPUS,OPTIONS[,MEM[,IMAGE]]), its serial log
# build/LABEL.log and its results $(RESULTS)/LABEL; and
# build/LABEL.times, when each test started (`tools/slowest-tests
# build/*.times` names the tests a make test spent its time on). QEMU
# has MEM of RAM, $(MEM) if not given; it boots IMAGE, $(KERNEL) if not
# given.
kernel_run = @mkdir -p $(RESULTS) && \
	QEMU_TIMEOUT=$(QEMU_TIMEOUT) tools/run-ktest $(1) $(BOOT_EFI) \
		$(or $(5),$(KERNEL)) \
		"ktest=$(KTEST) $(3)smp.expect=$(2)" \
		$(RESULTS)/$(1) -smp $(2) -m $(or $(4),$(MEM))

test-kernel-smp: $(BOOT_EFI) $(KERNEL)
	$(call kernel_run,kernel,$(SMP))

# The one-CPU, the -smp 8 and the poison runs have 256 MiB (MEM if it
# is set on the command line): the tests that take the whole frame pool
# (out of frames, reclaim, the longest free run, frames_frag's fill)
# cost in proportion to its size, more so with frames.debug_fill, where
# every frame a free gives back is filled and every frame handed out
# checked: at -smp 1, 54.5 s of CPU at 512 MiB, 33.0 at 256 (one loaded
# machine); at -smp 4, 92.6 and 78.3 (a quiet one); the same tests pass
# and skip. What those runs are for (no APs, garbage in free frames,
# oversubscribed vCPUs, the pool, poison and KASAN) holds at any size;
# the -smp $(SMP) run keeps $(MEM), as make run has, and the suite
# passes at 64 MiB.
SMALL_MEM := $(if $(filter command line,$(origin MEM)),$(MEM),256M)

test-kernel-smp1: $(BOOT_EFI) $(KERNEL)
	$(call kernel_run,kernel-smp1,1,frames.debug_fill ,$(SMALL_MEM))
	$(call kernel_lines,kernel-smp1,$(FILL_LINES))

# What the one-CPU run must print: the frame pool's fill, and its test
# passing, not skipped.
FILL_LINES := 'frames: debug_fill: free frames hold 0xf7' \
	'ok [0-9]* debug_fill_leaves_garbage_in_free_frames'

test-kernel-smp8: $(BOOT_EFI) $(KERNEL)
	$(call kernel_run,kernel-smp8,8,mm.guard=1 ,$(SMALL_MEM))
	$(call kernel_lines,kernel-smp8,$(GUARD_LINES))

# The guarded pool's run is the -smp 8 run (above).
test-kernel-guard: test-kernel-smp8

# $(call kernel_lines,LABEL,PATTERNS): the run's serial log must hold
# every PATTERN (tools/log-expect), or the run counts one failure more.
# The log is where run-ktest writes it, beside the results directory:
# build/LABEL.log, but with RESULTS=/tmp/r, /tmp/LABEL.log (until this
# version the check read build/'s, another run's, and passed on it).
kernel_lines = @why=$$(tools/log-expect "$(RESULTS)/../$(1).log" $(2)) || { \
	echo "$(1): $$why"; read -r p f s <$(RESULTS)/$(1); \
	echo "$$p $$((f + 1)) $$s" >$(RESULTS)/$(1); exit 1; }

# What the poison run must print: the heap's mode, the kmalloc suite's
# word that it ran in it, and the storm passing with every reuse checked.
# It boots the KASAN image with mm.kasan too (a shadow kept beside the
# poison, and every load and store of kernel/ and tests/kernel/ checked
# against it: 53 s alone before the image, 78 to 87 s on it, a machine
# loaded 1 to 4 deep), so the KASAN tests must pass, not skip.
POISON_LINES := 'heap: .*debug_poison, kasan' '\# heap in poison mode' \
	'poison mode (no magazines)' \
	'ok [0-9]* freed_objects_follow_the_heap_mode' \
	'ok [0-9]* storm_every_cpu_and_interrupts_returns_every_frame' \
	'ok [0-9]* correct_accesses_raise_no_report' \
	'ok [0-9]* bad_accesses_are_caught_at_the_access'

test-kernel-poison: $(BOOT_EFI) $(KERNEL_KASAN)
	$(call kernel_run,kernel-poison,$(SMP),mm.debug_poison mm.kasan ,$(SMALL_MEM),$(KERNEL_KASAN))
	$(call kernel_lines,kernel-poison,$(POISON_LINES))

# What the guard run must print: the pool on, sampling every refill, and
# its own tests passing, not skipped (they skip without a pool).
GUARD_LINES := 'heap: .*, guarded pool: 64 slots, 1 in 1' \
	'ok [0-9]* object_faults_past_its_ends_and_after_its_free' \
	'ok [0-9]* free_from_the_timer_interrupt_waits_for_the_drain' \
	'ok [0-9]* storm_every_cpu_and_interrupts_gives_every_slot_back' \
	'ok [0-9]* storm_every_cpu_and_interrupts_returns_every_frame'


# The harness must fail when a test fails and the loader must refuse a bad
# kernel; both are checked end to end so the checks above can be trusted.
# The lint cases build copies of mm/ with the kernel's flags, but with the
# pin hooks as calls (strict hook check; and no quotes in the variable).
# Its recipe is a make's (+): the makes the harness runs (the host test
# binaries, the demo kernel: test-build made both) share make test's job
# slots, now that it runs among the parts, where they warned they had none.
HARNESS_KCFLAGS := $(filter-out -DMM_PORT_INLINE=%,$(KCFLAGS))

test-harness: $(BOOT_EFI) $(KERNEL) $(SPANHEAP_BENCH_BIN)
	@mkdir -p $(RESULTS)
	+CC="$(CC)" KCFLAGS="$(HARNESS_KCFLAGS)" NM="$(NM)" MM_SRCS="$(MM_SRCS)" \
		LD="$(LD)" KLDFLAGS="$(KLDFLAGS)" \
		tools/test-harness $(BUILD) $(BOOT_EFI) $(KERNEL) $(RESULTS)/harness

# In-kernel cost figures (instructions under -icount, and TSC ticks).
bench-kernel: $(BOOT_EFI) $(KERNEL) | deps-bench
	tools/bench-kernel $(BUILD) $(BOOT_EFI) $(KERNEL) $(SMP)

# The scavenger under a burst: heap in use / backed / scavenged over time,
# as CSV and PNG, in the kernel (QEMU) and on the host.
bench-scavenge: $(BOOT_EFI) $(KERNEL) $(HOST_TEST) | deps-bench
	@mkdir -p $(BUILD)/bench/results
	-QEMU_TIMEOUT=300 tools/run-ktest bench-scavenge $(BOOT_EFI) $(KERNEL) \
		"ktest=scavenger.background*" $(BUILD)/bench/results/scav \
		-smp $(SMP) -m $(MEM) >/dev/null
	tools/plot-heap $(BUILD)/bench/bench-scavenge.log \
		$(BUILD)/bench/scavenge-kernel "kernel heap, 16 MiB burst (QEMU -smp $(SMP))"
	-$(HOST_TEST) 'mheap.*background*' > $(BUILD)/bench/scavenge-host.log 2>&1
	-tools/plot-heap $(BUILD)/bench/scavenge-host.log \
		$(BUILD)/bench/scavenge-host "host heap, burst (POSIX port)"

bench: bench-kernel bench-scavenge bench-blowup bench-cliffs bench-latency

format: deps
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check: deps
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: heapmap all deps run debug test test-build test-faildemo test-sum test-lint test-locks test-stack test-host test-model test-kernel \
	test-kernel-smp test-kernel-smp1 test-kernel-smp8 test-kernel-poison \
	test-kernel-guard test-harness \
	format format-check clean bench-kernel bench-scavenge deps-bench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
