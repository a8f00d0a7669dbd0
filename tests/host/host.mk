# Host-only targets beyond the unit tests: fuzzing, benchmarks and the
# ThreadSanitizer build.
#   make fuzz          the libFuzzer targets, long run (FUZZ_SECONDS each,
#                      default 60); FUZZ_TARGET=spanheap_fuzz runs one
#   make test-fuzz     the short run `make test` includes (TEST_FUZZ_SECONDS,
#                      default 12, split between the mm/ targets, and
#                      TEST_FUZZ_INPUT_SECONDS, default 2, for each
#                      parser's); writes
#                      "passed failed skipped" to $(RESULTS)/fuzz, a target
#                      each, skipped only if clang's libFuzzer runtime
#                      cannot be installed
#   make bench         the page allocator's benchmark table, -O2 without
#                      sanitizers, plus callgrind instruction counts (not
#                      pass/fail); the table is kept in $(BENCH_DIR)/bench.txt;
#                      then the span heap's (bench-spanheap)
#   make bench-spanheap  the span heap against glibc malloc, jemalloc,
#                      mimalloc and tcmalloc (tools/bench-spanheap: a table
#                      of ns/op and peak RSS, bulk's two phases apart,
#                      the sweeper's CPU share, callgrind instructions
#                      per 16-byte pair); kept in
#                      $(BENCH_DIR)/spanheap.txt. 2-3 minutes on a quiet
#                      machine; SPANHEAP_BENCH_REPS runs per cell (ns/op the
#                      minimum, RSS the median; default 5).
#                      Fails only if the span heap crashes, never on a number
#   make bench-cliffs  allocation patterns where ours might be many times
#                      slower than those peers (realloc by small steps,
#                      one large size in a loop, written or not, trims
#                      and statistics
#                      after the heap grew...): ns/op of each allocator,
#                      ours' ratio to the slowest and best peer, CLIFF past
#                      3 times the slowest (tools/bench-cliffs); kept in
#                      $(BENCH_DIR)/cliffs.txt. About 30 s on 2 CPUs
#   make test-tsan     the host tests under ThreadSanitizer (below)
#   make test-chaos    the short chaos run `make test` includes (below)
#   make chaos         the long chaos run (below)
#   make sizeclasses   regenerates mm/sizeclasses.h and mm/sizeclasses.c
#                      with tools/gen-sizeclasses.c (never edit them by hand)
#   make test-sizeclasses
#                      regenerates them into $(SC_CHECK_DIR) and diffs
#                      against the committed files; writes "passed failed
#                      skipped" to $(RESULTS)/sizeclasses
# Included by the top-level Makefile after HOST_BUILD, MM_SRCS,
# MM_HOST_SRCS and RESULTS are defined.

FUZZ_SECONDS ?= 60
# make test's short run: 4 s a mm/ target, 2 an input target (it was 7
# and 3 until make test neared its 10 minutes: the depth is make fuzz's).
TEST_FUZZ_SECONDS ?= 12
TEST_FUZZ_INPUT_SECONDS ?= 2
FUZZ_DIR := $(HOST_BUILD)/fuzz
# The targets over mm/, each against its model: the page allocator's
# (tests/host/palloc_model.h), the span heap's (spanheap_harness.h) and
# the page heap's (its model is in mheap_fuzz.c).
FUZZ_MM_TARGETS := palloc_fuzz spanheap_fuzz mheap_fuzz
# The targets over code that reads input it does not control, each
# checking its parser's own contract: the loader's cmdline.txt and ELF
# checks, the ACPI walk and MADT, the kernel's options and memory map
# (bootinfo.c and bootinfo_cmdline.c, with tests/host/kernel_stubs.c),
# the shell's line editor, the failure injection switch's syntax (which
# links all of mm/ and its POSIX port, to log through mm_log).
FUZZ_INPUT_TARGETS := cmdline_trim_fuzz elf_check_fuzz acpi_fuzz \
	bootinfo_fuzz lineedit_fuzz fail_parse_fuzz
FUZZ_TARGETS := $(FUZZ_MM_TARGETS) $(FUZZ_INPUT_TARGETS)
FUZZ_TARGET ?= $(FUZZ_TARGETS)
FUZZ_COMMON_SRCS := $(addprefix mm/,$(MM_SRCS)) $(MM_HOST_SRCS) \
	tests/host/mm_port_posix.c tests/host/mm_port_posix_mem.c \
	tests/host/mm_port_posix_cpu.c tests/host/mm_port_posix_event.c \
	tests/host/mm_port_posix_chaos.c tests/host/mm_port_posix_clock.c \
	tests/host/mm_port_posix_rcu.c
FUZZ_SRCS_palloc_fuzz := tests/host/palloc_model.c \
	tests/host/palloc_harness.c tests/host/palloc_harness_misuse.c \
	tests/host/fuzz/palloc_fuzz.c
FUZZ_SRCS_spanheap_fuzz := tests/host/spanheap_harness.c \
	tests/host/spanheap_harness_check.c tests/host/spanheap_harness_model.c \
	tests/host/spanheap_harness_cache.c tests/host/spanheap_harness_pool.c \
	tests/host/spanheap_harness_pool_elem.c tests/host/spanheap_harness_own.c \
	tests/host/spanheap_harness_bulk.c tests/host/fuzz/spanheap_fuzz.c
FUZZ_SRCS_mheap_fuzz := tests/host/fuzz/mheap_fuzz.c
FUZZ_SRCS_cmdline_trim_fuzz := boot/cmdline.c tests/host/fuzz/cmdline_trim_fuzz.c
FUZZ_SRCS_elf_check_fuzz := boot/elf_check.c tests/host/fuzz/elf_check_fuzz.c
FUZZ_SRCS_acpi_fuzz := kernel/acpi_parse.c tests/host/fuzz/acpi_fuzz.c
FUZZ_SRCS_bootinfo_fuzz := kernel/bootinfo.c kernel/bootinfo_cmdline.c \
	boot/paging.c tests/host/kernel_stubs.c \
	tests/host/fuzz/bootinfo_fuzz.c
FUZZ_SRCS_lineedit_fuzz := kernel/lineedit.c tests/host/fuzz/lineedit_fuzz.c
FUZZ_SRCS_fail_parse_fuzz = $(FUZZ_COMMON_SRCS) \
	tests/host/fuzz/fail_parse_fuzz.c
# Seed inputs, in the repository: tests/host/fuzz/seeds/<target>/ (the
# targets that have some: palloc's starts from nothing; the span heap's
# has a crash found once (the checker's poison-mode test of a span without
# a side table) and sequences of 800 operations heavy in caches and pools,
# one for each of its heap set-ups, and one heavy in caches with slabs of
# their own and batches in an arena that runs out (own_bulk_tight), which
# the short run of make test replays before it mutates; their op bytes
# were rewritten to keep their ops when SHH_BULK came, op % SHH_NOPS).
# Runs
# add what they find to $(FUZZ_DIR)/corpus/<target>/, not to the seeds.
FUZZ_SEEDS := tests/host/fuzz/seeds
# Built with clang whatever CC says: libFuzzer is part of clang. With the
# POSIX port's fake grace periods (MM_PORT_RCU, mm_port_posix_rcu.c), as
# the host tests: the span heap's harness makes OBJCACHE_TYPESAFE_BY_RCU
# caches.
FUZZ_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -I. -DMM_HOSTED=1 $(HOST_PIN) -DMM_PORT_RCU
# -len_control=0: inputs up to max_len from the first run. By default
# libFuzzer lets them grow slowly (the span heap's reached 48 bytes, nine
# operations, in 150 s), so the short run of make test never got to a
# sequence long enough to fill a span, free it from another CPU and sweep.
FUZZ_FLAGS := -max_len=4096 -len_control=0 -timeout=20 -print_final_stats=1 \
	-artifact_prefix=$(FUZZ_DIR)/

# Each source is compiled once into $(FUZZ_OBJ) (mm/ and its port were
# compiled again for each of the four targets that link them: a minute
# of make test's CPU), and each target links its objects.
FUZZ_OBJ := $(FUZZ_DIR)/obj
fuzz_objs = $(patsubst %,$(FUZZ_OBJ)/%.o,$(1))
FUZZ_OBJS_MM := $(call fuzz_objs,$(FUZZ_COMMON_SRCS))
$(foreach t,$(FUZZ_INPUT_TARGETS),$(eval \
	$(FUZZ_DIR)/$(t): $(call fuzz_objs,$(FUZZ_SRCS_$(t)))))
$(foreach t,$(FUZZ_MM_TARGETS),$(eval \
	$(FUZZ_DIR)/$(t): $(FUZZ_OBJS_MM) $(call fuzz_objs,$(FUZZ_SRCS_$(t)))))

FLAGS_fuzz := clang $(FUZZ_CFLAGS)
FUZZ_FLAGS_FILE := $(call flags_file,fuzz)

$(FUZZ_OBJ)/%.c.o: %.c $(FUZZ_FLAGS_FILE)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

# Each target's link, its objects and its flags, is a file of the
# Makefile's flags_file and a prerequisite, as for every other binary:
# a source taken out of a target's list, or other FUZZ_LDFLAGS, relinks
# it (until this version the old binary stayed, with the removed
# object's code in it). tools/test-harness's fuzz_relinks checks it.
FUZZ_LDFLAGS ?= -lpthread
fuzz_link_objs = $(sort $(call fuzz_objs,$(FUZZ_SRCS_$(1))) \
	$(if $(filter $(1),$(FUZZ_MM_TARGETS)),$(FUZZ_OBJS_MM)))
$(foreach t,$(FUZZ_TARGETS),$(eval FLAGS_fuzz-$(t).link := clang \
	$$(FUZZ_CFLAGS) $$(call fuzz_link_objs,$(t)) $$(FUZZ_LDFLAGS)))
$(foreach t,$(FUZZ_TARGETS),$(eval \
	$(FUZZ_DIR)/$(t): $(call flags_file,fuzz-$(t).link)))

$(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS)):
	clang $(FUZZ_CFLAGS) -o $@ $(call fuzz_link_objs,$(@F)) $(FUZZ_LDFLAGS)

# True when clang can link a libFuzzer target here.
FUZZ_RUNTIME = [ -r "$$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ]

# The mm/ targets share TEST_FUZZ_SECONDS between them; each input
# target runs TEST_FUZZ_INPUT_SECONDS (they find their depth in seconds).
# Each runs on its corpus and its seeds (crashes land in $(FUZZ_DIR)/ as
# crash-*); one that does not build or finds a crash is a failure and the
# others still run.
test-fuzz:
	@mkdir -p $(RESULTS) $(FUZZ_DIR)
	@tools/install-deps fuzz || true
	@n=$(words $(FUZZ_TARGETS)); \
	if ! $(FUZZ_RUNTIME); then \
		echo "fuzz: 0 passed, 0 failed, $$n skipped (no libFuzzer runtime)"; \
		echo "0 0 $$n" > $(RESULTS)/fuzz; exit 0; fi; \
	mm=$$(( $(TEST_FUZZ_SECONDS) / $(words $(FUZZ_MM_TARGETS)) )); \
	[ $$mm -ge 1 ] || mm=1; \
	pass=0; fail=0; \
	for t in $(FUZZ_TARGETS); do \
		case " $(FUZZ_MM_TARGETS) " in *" $$t "*) secs=$$mm;; \
		*) secs=$(TEST_FUZZ_INPUT_SECONDS);; esac; \
		log=$(FUZZ_DIR)/test-fuzz-$$t.log; \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		seeds=$(FUZZ_SEEDS)/$$t; [ -d $$seeds ] || seeds=; \
		if ! $(MAKE) --no-print-directory $(FUZZ_DIR)/$$t; then \
			echo "fuzz: $$t does not build"; fail=$$((fail + 1)); \
		elif $(FUZZ_DIR)/$$t $(FUZZ_FLAGS) -max_total_time=$$secs \
			$(FUZZ_DIR)/corpus/$$t $$seeds > $$log 2>&1; then \
			grep -h "stat::number_of_executed_units" $$log | \
				sed "s/^stat::number_of_executed_units: */fuzz: $$t ran /; s/$$/ inputs in $$secs s/"; \
			pass=$$((pass + 1)); \
		else \
			tail -n 30 $$log; \
			echo "fuzz: $$t failed (log: $$log)"; fail=$$((fail + 1)); \
		fi; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed"; \
	echo "$$pass $$fail 0" > $(RESULTS)/fuzz; [ $$fail -eq 0 ]

fuzz: $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGET))
	@for t in $(FUZZ_TARGET); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		seeds=$(FUZZ_SEEDS)/$$t; [ -d $$seeds ] || seeds=; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_DIR)/$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
			$(FUZZ_DIR)/corpus/$$t $$seeds || exit 1; \
	done

# The size class table: generated, committed, and checked to be what the
# generator prints (and what clang-format leaves alone).
SC_GEN := $(HOST_BUILD)/tools/gen-sizeclasses
SC_CHECK_DIR := $(HOST_BUILD)/sizeclasses-check

SC_GEN_SRCS := tools/gen-sizeclasses.c tools/gen-sizeclasses-emit.c

$(SC_GEN): $(SC_GEN_SRCS) tools/gen-sizeclasses.h $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ $(SC_GEN_SRCS)

sizeclasses: $(SC_GEN)
	$(SC_GEN) h > $(HOST_BUILD)/sizeclasses.h.tmp
	$(SC_GEN) c > $(HOST_BUILD)/sizeclasses.c.tmp
	mv $(HOST_BUILD)/sizeclasses.h.tmp mm/sizeclasses.h
	mv $(HOST_BUILD)/sizeclasses.c.tmp mm/sizeclasses.c

test-sizeclasses:
	@mkdir -p $(RESULTS) $(SC_CHECK_DIR)
	@if ! $(MAKE) --no-print-directory $(SC_GEN) || \
		! $(SC_GEN) h > $(SC_CHECK_DIR)/sizeclasses.h || \
		! $(SC_GEN) c > $(SC_CHECK_DIR)/sizeclasses.c; then \
		echo "sizeclasses: 0 passed, 1 failed (the generator failed)"; \
		echo "0 1 0" > $(RESULTS)/sizeclasses; exit 1; fi; \
	st=0; \
	diff -u mm/sizeclasses.h $(SC_CHECK_DIR)/sizeclasses.h || st=1; \
	diff -u mm/sizeclasses.c $(SC_CHECK_DIR)/sizeclasses.c || st=1; \
	if [ $$st -ne 0 ]; then \
		echo "sizeclasses: mm/sizeclasses.{h,c} differ from what" \
			"tools/gen-sizeclasses.c prints: run make sizeclasses"; \
	elif command -v clang-format > /dev/null && \
		! clang-format --dry-run -Werror mm/sizeclasses.h \
			mm/sizeclasses.c; then \
		echo "sizeclasses: the generator's output is not" \
			"clang-format clean: fix tools/gen-sizeclasses.c"; st=1; \
	fi; \
	if [ $$st -eq 0 ]; then \
		echo "sizeclasses: 1 passed, 0 failed"; \
		echo "1 0 0" > $(RESULTS)/sizeclasses; \
	else \
		echo "sizeclasses: 0 passed, 1 failed"; \
		echo "0 1 0" > $(RESULTS)/sizeclasses; exit 1; fi

.PHONY: sizeclasses test-sizeclasses

BENCH_DIR := $(HOST_BUILD)/bench
BENCH_BIN := $(BENCH_DIR)/palloc_bench
BENCH_SRCS := $(addprefix mm/,$(MM_SRCS)) tests/host/mm_port_posix.c \
	tests/host/mm_port_posix_mem.c \
	tests/host/mm_port_posix_cpu.c tests/host/mm_port_posix_event.c \
	tests/host/mm_port_posix_chaos.c tests/host/mm_port_posix_clock.c \
	tests/host/bench/palloc_bench.c

$(BENCH_BIN): $(BENCH_SRCS) $(wildcard mm/*.h tests/host/*.h) $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I. -DMM_HOSTED=1 $(HOST_PIN) -o $@ $(BENCH_SRCS) -lpthread

# The span heap against real allocators (tools/bench-spanheap runs it).
SPANHEAP_BENCH_BIN := $(BENCH_DIR)/spanheap_bench
SPANHEAP_BENCH_SRCS := $(addprefix mm/,$(MM_SRCS)) tests/host/mm_port_posix.c \
	tests/host/mm_port_posix_mem.c \
	tests/host/mm_port_posix_cpu.c tests/host/mm_port_posix_event.c \
	tests/host/mm_port_posix_chaos.c tests/host/mm_port_posix_clock.c \
	tests/host/bench/spanheap_bench.c tests/host/bench/spanheap_bench_work.c \
	tests/host/bench/spanheap_bench_args.c

$(SPANHEAP_BENCH_BIN): $(SPANHEAP_BENCH_SRCS) $(wildcard mm/*.h tests/host/*.h \
		tests/host/bench/*.h) $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I. -DMM_HOSTED=1 $(HOST_PIN) -o $@ $(SPANHEAP_BENCH_SRCS) -lpthread -ldl

# Pairs on one constructor cache from 1 to 8 threads (make
# bench-objcache-own; the figures in docs/DESIGN.md, "own slabs").
OWN_BENCH_BIN := $(BENCH_DIR)/objcache_own_bench
OWN_BENCH_SRCS := $(filter-out tests/host/bench/spanheap_bench.c, \
	$(SPANHEAP_BENCH_SRCS)) tests/host/bench/objcache_own_bench.c

$(OWN_BENCH_BIN): $(OWN_BENCH_SRCS) $(wildcard mm/*.h tests/host/*.h \
		tests/host/bench/*.h) $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I. -DMM_HOSTED=1 $(HOST_PIN) -o $@ $(OWN_BENCH_SRCS) -lpthread -ldl

bench-objcache-own: $(OWN_BENCH_BIN)
	@for t in 1 2 4; do $(OWN_BENCH_BIN) $$t; done

# The bulk calls against single pairs, ns per object (make bench-bulk;
# the figures in docs/DESIGN.md, "Bulk allocation"). Not pass/fail.
BULK_BENCH_BIN := $(BENCH_DIR)/bulk_bench
BULK_BENCH_SRCS := $(filter-out tests/host/bench/spanheap_bench.c, \
	$(SPANHEAP_BENCH_SRCS)) tests/host/bench/bulk_bench.c

$(BULK_BENCH_BIN): $(BULK_BENCH_SRCS) $(wildcard mm/*.h tests/host/*.h \
		tests/host/bench/*.h) $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I. -DMM_HOSTED=1 $(HOST_PIN) -o $@ $(BULK_BENCH_SRCS) -lpthread -ldl

bench-bulk: $(BULK_BENCH_BIN)
	@$(BULK_BENCH_BIN)

SPANHEAP_BENCH_REPS ?= 5
# Ours is measured twice: in the bench's binary (the core) and as the
# library a program runs on (malloc/malloc.mk's MALLOC_SO, named here as
# that file is included after this one), reached as the peers are.
SPANHEAP_BENCH_LIB := $(BUILD)/malloc/libmm_malloc.so
SPANHEAP_BENCH_RUN = BENCH_REPS=$(SPANHEAP_BENCH_REPS) tools/bench-spanheap \
	$(SPANHEAP_BENCH_BIN) $(BENCH_DIR)/spanheap.txt $(SPANHEAP_BENCH_LIB)

bench: $(BENCH_BIN) $(SPANHEAP_BENCH_BIN) $(SPANHEAP_BENCH_LIB) | deps-bench
	@BENCH_DIR=$(BENCH_DIR) $(BENCH_BIN) | tee $(BENCH_DIR)/bench.txt
	@echo
	@$(SPANHEAP_BENCH_RUN)

bench-spanheap: $(SPANHEAP_BENCH_BIN) $(SPANHEAP_BENCH_LIB) | deps-bench
	@$(SPANHEAP_BENCH_RUN)

# Performance cliffs: patterns where ours might be many times slower than
# the peers (tools/bench-cliffs; the malloc API only, so plain -O2 with no
# mm/ sources: the allocator under test is LD_PRELOADed).
CLIFFS_BENCH_BIN := $(BENCH_DIR)/cliffs_bench

$(CLIFFS_BENCH_BIN): tests/host/bench/cliffs_bench.c $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -o $@ $< -lpthread -ldl

bench-cliffs: $(CLIFFS_BENCH_BIN) $(SPANHEAP_BENCH_LIB) | deps-bench
	@tools/bench-cliffs $(CLIFFS_BENCH_BIN) $(BENCH_DIR)/cliffs.txt \
		$(SPANHEAP_BENCH_LIB)

.PHONY: test-fuzz fuzz bench bench-spanheap bench-cliffs bench-objcache-own bench-bulk

# ThreadSanitizer: the host tests' sources built a second time with
# -fsanitize=thread (ASan and TSan cannot share a binary) into
# $(TSAN_BUILD).
#   make test-tsan     runs them all but TSAN_EXCLUDE (TSAN_SLOW_ONE_THREAD's:
#                      the differential tests, the largest arenas' shapes,
#                      and the tests that fill or check large objects, every
#                      class's poison or red zones, a full arena, every byte
#                      of a slab, the misuse matrix: one thread each, none
#                      starts another, and slow under TSan, about 37 s of
#                      them; spanheap_diff.caches_and_pools, whose
#                      scavenger thread runs beside its calls, 44 s there:
#                      its _short variant runs instead; and
#                      TSAN_ONE_THREAD's, which start no thread either,
#                      mm/'s included (strace -f showed no clone of theirs):
#                      TSan reports races between threads, and the port
#                      itself panics on a lock taken twice or released
#                      unheld, in the ASan run that keeps them, so under
#                      TSan they only cost, 11 s of CPU); TSAN_TESTS narrows
#                      further. make test-host checks the claim: a test of
#                      TSAN_ONE_THREAD or TSAN_SLOW_ONE_THREAD that starts a
#                      thread fails there (HOST_TEST_ONE_THREAD,
#                      tests/host/one_thread.c). Writes "passed failed skipped" to
#                      $(RESULTS)/host-tsan. A report stops the run
#                      (halt_on_error) and tools/ktap-check fails it: the KTAP
#                      document is cut short, and it rejects any
#                      "WARNING: ThreadSanitizer" line anyway.
TSAN_BUILD := $(BUILD)/host-tsan
TSAN_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=thread -fno-omit-frame-pointer -I. -MMD -MP -DMM_HOSTED=1 $(HOST_PIN) \
	-DMM_TEST_HOOKS -DMM_PORT_RCU
TSAN_OBJS := $(patsubst %,$(TSAN_BUILD)/%.o,$(HOST_TEST_SRCS))
TSAN_TEST := $(TSAN_BUILD)/host-test
TSAN_TESTS ?=
TSAN_ONE_THREAD := objcache.thousands_of_creates_and_destroys_give_everything_back,objcache_track_race.*,objcache_own.every_alignment_and_size_keeps_objects_off_the_header,palloc_edges.the_longest_free_run_matches_a_scan,mheap_release.a_search_over_a_large_arena_drops_the_lock,spanheap_growth.the_sweep_before_growth_is_bounded,spanheap_depot.a_shortage_uses_up_no_handles,spanheap_depot.full_after_a_shortage_is_said_too,spanheap_depot.no_memory_for_a_chunk_keeps_no_stack_until_room,spanheap_depot.full_keeps_no_new_stack_and_keeps_the_old,spanheap_fail.out_of_pages_sweeps_before_it_fails,pcpu.the_checker_finds_a_broken_map,mempool.bad_parameters_are_refused,mheap.release_all_drops_rss_and_zeroes,palloc_scav.cursor_wraps_to_frees_above
TSAN_SLOW_ONE_THREAD := palloc_diff.*,spanheap_diff.million_ops,spanheap_diff.poison_mode,spanheap_diff.guarded_pool,spanheap_diff.caches_and_pools_poison,palloc_scav.against_a_model*,palloc_grow.tree_shapes,palloc_grow.largest_arena,spanheap.realloc_large_grows_in_place,mheap.zeroed_large_alloc_writes_only_backed_pages,spanheap_width.readers_of_a_large_size_above_4_gib_use_its_pages,spanheap_poison.every_class_*,spanheap_redzone.every_class_overrun_found_at_the_free,spanheap_meta_size.a_full_poison_arena_leaves_its_margins,spanheap_meta_frames.a_full_object_arena_fits_its_metadata,objcache_own.every_byte_of_a_slab_but_the_objects_starts_is_refused,spanheap_misuse_matrix.every_entry_and_every_bad_pointer,spanheap_width.misuse_of_a_5_gib_object_names_its_size
TSAN_EXCLUDE ?= $(TSAN_ONE_THREAD),$(TSAN_SLOW_ONE_THREAD),spanheap_diff.caches_and_pools
TSAN_RUN_OPTIONS := halt_on_error=1 second_deadlock_stack=1
TSAN_TIMEOUT ?= 300

FLAGS_tsan := $(CC) $(TSAN_CFLAGS)
TSAN_FLAGS := $(call flags_file,tsan)

$(TSAN_BUILD)/%.c.o: %.c $(TSAN_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN_BUILD)/host-test.objs: FORCE
	$(call objlist,$@,$(TSAN_OBJS))

$(TSAN_TEST): $(TSAN_OBJS) $(TSAN_BUILD)/host-test.objs
	$(CC) $(TSAN_CFLAGS) -o $@ $(TSAN_OBJS) -lpthread

test-tsan: $(TSAN_TEST)
	@mkdir -p $(RESULTS)
	@TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" HOST_TEST_EXCLUDE='$(TSAN_EXCLUDE)' \
		HOST_TEST_TIMES=$(BUILD)/host-tsan.times \
		tools/run-progress $(TSAN_TIMEOUT) $(BUILD)/host-tsan.log \
		$(TSAN_TEST) '$(TSAN_TESTS)'; \
	tools/ktap-check host-tsan $(BUILD)/host-tsan.log $(RESULTS)/host-tsan \
		"exit status $$? (log: $(BUILD)/host-tsan.log)"

.PHONY: test-tsan

# Chaos mode (tests/host/mm_port_posix_chaos.c): MM_CHAOS=<seed> makes the
# POSIX port delay its callers at random (seeded) at every hook and mm test
# hook, so that races needing an unlucky interleaving show on two cores.
# tools/chaos-run runs the multi-threaded host tests under it, a process
# per group, seed and binary (the ASan and the TSan build), and prints the
# line that replays a failure (MM_CHAOS=<seed> <binary> '<globs>').
#   make test-chaos    part of make test: TEST_CHAOS_SEEDS seeds (default 1;
#                      2 until make test neared its 10 minutes) over the
#                      quick groups (TEST_CHAOS_GROUPS), both builds,
#                      about 20 s; writes "passed failed skipped" (runs)
#                      to $(RESULTS)/chaos
#   make chaos         every group tools/chaos-run lists, CHAOS_SEEDS seeds
#                      (default 1000) from CHAOS_FIRST_SEED (default 1),
#                      both builds, until CHAOS_SECONDS (default 3600) have
#                      passed; MM_CHAOS_RATE (per mille, default 100) sets
#                      how often a hook is perturbed. Logs of failed runs:
#                      $(CHAOS_DIR)
CHAOS_DIR := $(BUILD)/chaos
TEST_CHAOS_SEEDS ?= 1
TEST_CHAOS_GROUPS ?= mheap.stress_threads mm_event.* \
	pagecache.*,palloc.free_pages_hint_reads_while_the_owner_writes \
	mheap_reserve.*,mheap_idle.* spanheap_stats.*
CHAOS_FIRST_SEED ?= 1
CHAOS_SEEDS ?= 1000
CHAOS_SECONDS ?= 3600

test-chaos: $(HOST_TEST) $(TSAN_TEST)
	@CHAOS_DIR=$(CHAOS_DIR) CHAOS_GROUPS='$(TEST_CHAOS_GROUPS)' \
		TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" tools/chaos-run chaos \
		$(RESULTS)/chaos 1 $(TEST_CHAOS_SEEDS) 0 $(HOST_TEST) $(TSAN_TEST)

chaos: $(HOST_TEST) $(TSAN_TEST)
	@mkdir -p $(RESULTS)
	CHAOS_DIR=$(CHAOS_DIR) TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" \
		nice tools/chaos-run chaos $(CHAOS_DIR)/results \
		$(CHAOS_FIRST_SEED) $(CHAOS_SEEDS) $(CHAOS_SECONDS) \
		$(HOST_TEST) $(TSAN_TEST)

.PHONY: test-chaos chaos
