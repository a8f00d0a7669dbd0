# libmm_malloc.so: mm/ with the production port, as the C library's malloc
# for any Linux program (LD_PRELOAD=build/malloc/libmm_malloc.so, or link
# it). Included by the top-level Makefile after mm/mm.mk.
#   make malloc          build it
#   make test-real-quick (part of make test) real programs under it
#   make test-real       the longer set (Python's tests, redis-benchmark)
#   make bench-real      ours against glibc, jemalloc, mimalloc and tcmalloc
#   make plot-rss        RSS over a burst, a free and 15 s idle
#   make bench-blowup    blowup, fragmentation and false sharing against
#                        the same peers
#   make bench-latency   p50 to max ns of single malloc and free calls
#                        against the same peers
MALLOC_BUILD := $(BUILD)/malloc
MALLOC_SO := $(MALLOC_BUILD)/libmm_malloc.so
MALLOC_SRCS := $(addprefix mm/,$(MM_SRCS)) malloc/port_prod.c malloc/port_mem.c malloc/port_clock.c malloc/port_sync.c malloc/locks.c \
	malloc/arena.c malloc/slots.c malloc/slots_gone.c malloc/visit.c malloc/fences.c malloc/enter.c malloc/background.c malloc/fork.c malloc/malloc.c malloc/malloc_info.c \
	malloc/guard.c
# Production flags: no sanitizers, no MM_TEST_HOOKS; only the malloc API
# is exported; initial-exec TLS (the slot index) needs no allocation;
# the compiler must not turn our own code into calls of malloc or free;
# and -z initfirst: its constructor, which registers the fork handlers,
# runs before any other library's constructor (malloc/background.c; why:
# malloc/fork.c).
# Link-time optimisation lets malloc() and free() inline the span heap's
# fast paths (no call, fewer registers saved): mixed sizes 28 -> 26.4 ns,
# 64-byte pairs 13.3 -> 12.6 (best of 5, when LTO came in; docs/DESIGN.md,
# "The hosted build", has the later figures). GCC would not inline them on
# its own; SPANHEAP_FAST (mm/spanheap.h) makes it: mixed sizes 24 -> 22 ns,
# random-order frees of 10^6 objects 85 -> 72 ns an object.
MALLOC_CFLAGS := -std=gnu11 -O2 -g -fPIC -flto -Wall -Wextra -Werror \
	-Wno-unused-parameter -fvisibility=hidden -ftls-model=initial-exec \
	-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc \
	-fno-builtin-realloc -fno-plt -I. -MMD -MP \
	-DMM_PORT_INLINE='"malloc/pin.h"' \
	-DSPANHEAP_FAST='__attribute__((always_inline)) inline'
MALLOC_OBJS := $(patsubst %,$(MALLOC_BUILD)/%.o,$(MALLOC_SRCS))

# The hooks variant's flags are these and -DMM_TEST_HOOKS.
FLAGS_malloc := $(CC) $(MALLOC_CFLAGS)
MALLOC_FLAGS := $(call flags_file,malloc)

$(MALLOC_BUILD)/%.c.o: %.c $(MALLOC_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(MALLOC_CFLAGS) -c $< -o $@

# Each link's object list is a prerequisite too (the Makefile's
# flags_file), so a source taken out of MALLOC_SRCS relinks it.
FLAGS_malloc.objs := $(MALLOC_OBJS)
MALLOC_OBJLIST := $(call flags_file,malloc.objs)

$(MALLOC_SO): $(MALLOC_OBJS) $(MALLOC_OBJLIST)
	$(CC) $(MALLOC_CFLAGS) -shared -Wl,-z,now -Wl,-z,noexecstack \
		-Wl,-z,initfirst -o $@ $(MALLOC_OBJS) -lpthread

malloc: $(MALLOC_SO)

# The test variant: the same objects with MM_TEST_HOOKS, whose hooks
# (malloc/malloc_testing.h) let tests/real/malloc_hooks_test.c run a
# thread inside a window of the set-up. Never installed or benchmarked.
MALLOC_HOOKS_BUILD := $(BUILD)/malloc-hooks
MALLOC_HOOKS_SO := $(MALLOC_BUILD)/libmm_malloc_hooks.so
MALLOC_HOOKS_OBJS := $(patsubst %,$(MALLOC_HOOKS_BUILD)/%.o,$(MALLOC_SRCS))

$(MALLOC_HOOKS_BUILD)/%.c.o: %.c $(MALLOC_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(MALLOC_CFLAGS) -DMM_TEST_HOOKS -c $< -o $@

FLAGS_malloc-hooks.objs := $(MALLOC_HOOKS_OBJS)
MALLOC_HOOKS_OBJLIST := $(call flags_file,malloc-hooks.objs)

$(MALLOC_HOOKS_SO): $(MALLOC_HOOKS_OBJS) $(MALLOC_HOOKS_OBJLIST)
	@mkdir -p $(@D)
	$(CC) $(MALLOC_CFLAGS) -shared -Wl,-z,now -Wl,-z,noexecstack \
		-Wl,-z,initfirst -o $@ $(MALLOC_HOOKS_OBJS) -lpthread

.PHONY: malloc

# The C test of the entry points' conventions (run under LD_PRELOAD): one
# program of a file a topic, which share tests/real/malloc_api_test.h.
# -fno-builtin: the compiler must not fold the calls it tests. It links a
# small library with a fork handler (tests/real/fork_lib.c), found next
# to it, and preloads another, linked with -z initfirst, after ours in
# one scenario (tests/real/initfirst_lib.c).
MALLOC_API_TEST := $(MALLOC_BUILD)/malloc-api-test
MALLOC_API_SRCS := $(addprefix tests/real/,malloc_api_test.c \
	malloc_api_errors.c malloc_api_edges.c malloc_api_threads.c \
	malloc_api_churn.c malloc_api_churn_objs.c \
	malloc_api_slots.c malloc_api_late.c malloc_api_seccomp.c \
	malloc_api_fresh.c malloc_api_fresh_fork.c malloc_api_env.c malloc_api_thp.c malloc_api_rss.c malloc_api_background.c \
	malloc_api_exit.c \
	malloc_api_trim.c malloc_api_blowup.c blowup_work.c \
	malloc_api_glibc.c malloc_api_diff.c \
	malloc_api_diff_shadow.c \
	malloc_api_diff_ops.c malloc_api_describe.c malloc_api_guard.c \
	malloc_api_rt.c malloc_api_setup.c malloc_api_limits.c \
	malloc_api_atfork.c malloc_api_signal.c malloc_api_misuse.c \
	malloc_api_altstack.c) mm/sizeclasses.c
# What they include, besides tests/real/'s own headers (tools/lint-deps,
# in make test-lint, checks that these lists are whole).
MALLOC_API_HDRS := mm/sizeclasses.h mm/port.h
MALLOC_FORK_LIB := $(MALLOC_BUILD)/libmm_fork_lib.so

$(MALLOC_FORK_LIB): tests/real/fork_lib.c $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -fPIC -shared -o $@ $< \
		-lpthread

MALLOC_INITFIRST_LIB := $(MALLOC_BUILD)/libmm_initfirst_lib.so

$(MALLOC_INITFIRST_LIB): tests/real/initfirst_lib.c $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -fno-builtin -fPIC \
		-shared -Wl,-z,initfirst -o $@ $<

$(MALLOC_API_TEST): $(MALLOC_API_SRCS) tests/real/malloc_api_test.h \
		tests/real/malloc_api_scenarios.h \
		tests/real/malloc_api_diff.h tests/real/malloc_api_churn.h \
		tests/real/proc_read.h tests/real/blowup.h \
		tests/real/seccomp_util.h $(MALLOC_API_HDRS) $(CC_FLAGS) \
		$(MALLOC_FORK_LIB) $(MALLOC_INITFIRST_LIB)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -fno-builtin -I. -o $@ \
		$(MALLOC_API_SRCS) \
		-L$(MALLOC_BUILD) -lmm_fork_lib -Wl,-rpath,'$$ORIGIN' \
		-lpthread -ldl

# The C test of the slot lifecycle's windows, run under the test variant.
MALLOC_HOOKS_TEST := $(MALLOC_BUILD)/malloc-hooks-test
MALLOC_HOOKS_SRCS := $(addprefix tests/real/,malloc_hooks_test.c \
	malloc_hooks_waits.c malloc_hooks_signals.c malloc_hooks_share.c \
	malloc_hooks_fork.c malloc_hooks_nested.c malloc_hooks_alone.c \
	malloc_hooks_reclaim.c malloc_hooks_visit.c malloc_hooks_copied.c \
	malloc_hooks_order.c malloc_hooks_handler.c \
	malloc_hooks_progress.c malloc_hooks_lazy.c)

$(MALLOC_HOOKS_TEST): $(MALLOC_HOOKS_SRCS) tests/real/malloc_hooks_test.h \
		tests/real/proc_read.h tests/real/seccomp_util.h \
		malloc/malloc_testing.h $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -fno-builtin -I. \
		-o $@ $(MALLOC_HOOKS_SRCS) -lpthread

MALLOC_C_TESTS := $(MALLOC_SO) $(MALLOC_API_TEST) $(MALLOC_HOOKS_SO) \
	$(MALLOC_HOOKS_TEST)

# Python, gcc, git, sqlite3, sort and Perl with threads, and text tools
# (awk, sed, sort, perl, make), from Debian,
# with and without the library: same output required, times printed
# (tests/real/run-quick); then sort, sqlite3 and git with their K-th
# allocation failing, for 40 values of K each (tests/real/fail_sweep.sh).
# About a minute.
test-real-quick: $(MALLOC_C_TESTS)
	@mkdir -p $(RESULTS)
	@tools/install-deps real || true
	@tests/real/run-quick $(MALLOC_C_TESTS) $(RESULTS)/real-quick

# The longer set: the quick set at size (the sweeps at every K, and
# Python's), Python's own test modules and
# redis-server under redis-benchmark (tests/real/run-long). A few minutes.
test-real: $(MALLOC_C_TESTS)
	@mkdir -p $(RESULTS)
	@tools/install-deps real real-long || true
	@st=0; \
	tests/real/run-quick $(MALLOC_C_TESTS) $(RESULTS)/real-full full || \
		st=1; \
	tests/real/run-long $(MALLOC_SO) $(RESULTS)/real-long || st=1; \
	tools/sum-results $(RESULTS)/real-full $(RESULTS)/real-long && \
		exit $$st || exit 1

.PHONY: test-real-quick test-real

# RSS over a burst, its free and an idle stretch (tools/plot-rss).
MALLOC_RSS_BURST := $(MALLOC_BUILD)/rss-burst
MALLOC_BENCH_DIR := $(BUILD)/bench-real

$(MALLOC_RSS_BURST): tests/real/rss_burst.c tests/real/proc_read.h $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -fno-builtin -o $@ $< \
		-lpthread

plot-rss: $(MALLOC_SO) $(MALLOC_RSS_BURST) | deps-bench
	tools/plot-rss $(MALLOC_SO) $(MALLOC_RSS_BURST) $(MALLOC_BENCH_DIR)

# Real programs and allocation-heavy workloads under ours, glibc, jemalloc,
# mimalloc and tcmalloc (tools/bench-real): a table of medians with ratios
# and a PNG in $(MALLOC_BENCH_DIR); then the RSS plot. About 10 minutes.
# BENCH_REPS (default 3) runs per cell; BENCH_SIZE=quick for a short run.
bench-real: $(MALLOC_SO) $(SPANHEAP_BENCH_BIN) $(MALLOC_RSS_BURST) | deps-bench
	@tools/install-deps real real-long || true
	tools/bench-real $(MALLOC_SO) $(SPANHEAP_BENCH_BIN) $(MALLOC_BENCH_DIR)
	tools/plot-rss $(MALLOC_SO) $(MALLOC_RSS_BURST) $(MALLOC_BENCH_DIR)

.PHONY: plot-rss bench-real

# Blowup, fragmentation and false sharing (tests/real/blowup.c) under ours
# and the peers, one table (tools/bench-blowup; about a minute). The
# pass/fail bounds are malloc-api-test's blowup test.
MALLOC_BLOWUP := $(MALLOC_BUILD)/blowup
MALLOC_BLOWUP_SRCS := $(addprefix tests/real/,blowup.c blowup_work.c \
	blowup_sharing.c)

$(MALLOC_BLOWUP): $(MALLOC_BLOWUP_SRCS) tests/real/blowup.h \
		tests/real/proc_read.h $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -fno-builtin -o $@ \
		$(MALLOC_BLOWUP_SRCS) -lpthread

bench-blowup: $(MALLOC_SO) $(MALLOC_BLOWUP) | deps-bench
	tools/bench-blowup $(MALLOC_SO) $(MALLOC_BLOWUP) $(MALLOC_BENCH_DIR)

.PHONY: bench-blowup

# Transparent huge pages' effect on memory (tests/real/thp_probe.c) under
# ours and the peers, as the host is set and as on an "always" host
# (tools/bench-thp; about a minute, WAIT=60 for khugepaged).
MALLOC_THP_PROBE := $(MALLOC_BUILD)/thp_probe

$(MALLOC_THP_PROBE): tests/real/thp_probe.c $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -fno-builtin -o $@ \
		tests/real/thp_probe.c

bench-thp: $(MALLOC_SO) $(MALLOC_THP_PROBE) | deps-bench
	tools/bench-thp $(MALLOC_SO) $(MALLOC_THP_PROBE)

.PHONY: bench-thp

# The tail latency of single calls (tests/real/latency.c) under ours and
# the peers, one table (tools/bench-latency; under a minute).
MALLOC_LATENCY := $(MALLOC_BUILD)/latency

$(MALLOC_LATENCY): tests/real/latency.c $(CC_FLAGS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -fno-builtin -o $@ \
		tests/real/latency.c -lpthread

bench-latency: $(MALLOC_SO) $(MALLOC_LATENCY) | deps-bench
	tools/bench-latency $(MALLOC_SO) $(MALLOC_LATENCY) $(MALLOC_BENCH_DIR)

.PHONY: bench-latency

# The hosted malloc's own code (slots.c, fork.c, port_prod.c,
# port_sync.c, malloc.c, malloc_info.c) and mm/ under ThreadSanitizer,
# linked into a stress test (tests/real/malloc_tsan_test.c). TSan
# intercepts malloc and the rest of the API, so the library cannot be
# preloaded under it: its sources are built a third time with every
# exported name renamed (malloc -> mmt_malloc, ...; MALLOC_TSAN_API), and
# the test calls those. Production flags but -O1, no LTO and no -fPIC.
# It runs in the "exchange" slot mode (MM_MALLOC_MEMBARRIER=0): the
# membarrier(2) fast path is an asymmetric fence (slots.c, "Why"), which
# TSan cannot model, and is left to the spin model (tests/model).
# MM_MALLOC_BACKGROUND is emptied: the background threads must run.
#   make test-malloc-tsan  runs it (part of make test, after test-tsan;
#                          about 20 s, under a minute); writes "passed
#                          failed skipped" to $(RESULTS)/malloc-tsan; a
#                          report fails it (halt_on_error, and
#                          tools/ktap-check)
MALLOC_TSAN_BUILD := $(BUILD)/malloc-tsan
MALLOC_TSAN_API := malloc free calloc realloc reallocarray memalign \
	aligned_alloc posix_memalign valloc pvalloc malloc_usable_size \
	__libc_malloc __libc_free cfree __libc_calloc __libc_realloc \
	__libc_memalign __libc_valloc __libc_pvalloc mallinfo2 mallinfo \
	malloc_stats malloc_info malloc_trim _Fork
MALLOC_TSAN_LIB_CFLAGS := $(filter-out -O2 -fPIC -flto,$(MALLOC_CFLAGS)) \
	-O1 -fsanitize=thread -fno-omit-frame-pointer \
	$(foreach f,$(MALLOC_TSAN_API),-D$(f)=mmt_$(f))
# The test's own files see the library's headers as the library does (no
# MM_TEST_HOOKS, malloc/pin.h), and keep the names malloc and free for
# TSan's allocator.
MALLOC_TSAN_TEST_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror \
	-Wno-unused-parameter -fsanitize=thread -fno-omit-frame-pointer \
	-fno-builtin -I. -MMD -MP -DMM_PORT_INLINE='"malloc/pin.h"'
MALLOC_TSAN_LIB_OBJS := $(patsubst %,$(MALLOC_TSAN_BUILD)/lib/%.o,$(MALLOC_SRCS))
MALLOC_TSAN_TEST_SRCS := tests/real/malloc_tsan_test.c \
	tests/real/malloc_tsan_threads.c tests/real/malloc_tsan_late.c \
	tests/real/malloc_tsan_churn.c \
	tests/real/malloc_tsan_port.c \
	tests/host/main.c \
	kernel/ktest.c kernel/format.c
MALLOC_TSAN_TEST_OBJS := $(patsubst %,$(MALLOC_TSAN_BUILD)/test/%.o,\
	$(MALLOC_TSAN_TEST_SRCS))
MALLOC_TSAN_TEST := $(MALLOC_TSAN_BUILD)/malloc-tsan-test
MALLOC_TSAN_TIMEOUT ?= 300
# False positives only, each entry narrow and with its reason (the file
# says how); empty of entries while the run is clean.
MALLOC_TSAN_SUPP := tests/real/malloc_tsan.supp

FLAGS_malloc-tsan := $(CC) $(MALLOC_TSAN_LIB_CFLAGS) \
	$(MALLOC_TSAN_TEST_CFLAGS)
MALLOC_TSAN_FLAGS := $(call flags_file,malloc-tsan)

$(MALLOC_TSAN_BUILD)/lib/%.c.o: %.c $(MALLOC_TSAN_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(MALLOC_TSAN_LIB_CFLAGS) -c $< -o $@

$(MALLOC_TSAN_BUILD)/test/%.c.o: %.c $(MALLOC_TSAN_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(MALLOC_TSAN_TEST_CFLAGS) -c $< -o $@

FLAGS_malloc-tsan.objs := $(MALLOC_TSAN_LIB_OBJS) $(MALLOC_TSAN_TEST_OBJS)
MALLOC_TSAN_OBJLIST := $(call flags_file,malloc-tsan.objs)

$(MALLOC_TSAN_TEST): $(MALLOC_TSAN_LIB_OBJS) $(MALLOC_TSAN_TEST_OBJS) \
		$(MALLOC_TSAN_OBJLIST)
	$(CC) -fsanitize=thread -g -o $@ $(MALLOC_TSAN_LIB_OBJS) \
		$(MALLOC_TSAN_TEST_OBJS) -lpthread -ldl

# The suppressions' path is quoted for TSan, whose options a space
# separates: in a checkout under "/tmp/a b" the run failed at once
# ("expected '=' in TSAN_OPTIONS").
test-malloc-tsan: $(MALLOC_TSAN_TEST)
	@mkdir -p $(RESULTS)
	@MM_MALLOC_MEMBARRIER=0 MM_MALLOC_BACKGROUND= \
		TSAN_OPTIONS="$(TSAN_RUN_OPTIONS) suppressions='$(CURDIR)/$(MALLOC_TSAN_SUPP)'" \
		tools/run-progress $(MALLOC_TSAN_TIMEOUT) \
		$(BUILD)/malloc-tsan.log $(MALLOC_TSAN_TEST); \
	tools/ktap-check malloc-tsan $(BUILD)/malloc-tsan.log \
		$(RESULTS)/malloc-tsan \
		"exit status $$? (log: $(BUILD)/malloc-tsan.log)"

.PHONY: test-malloc-tsan
