# The minimal port (tests/port/min_port.c): mm/ built as docs/PORTING.md
# tells another OS to build it (mm/mm.mk's MM_SRCS, no test hooks, the pin
# hooks as functions), against a port written from PORTING.md and
# mm/port.h alone. If port.h grows a hook or a duty the documentation does
# not name, this stops building or passing.
#   make test-port     builds $(PORT_TEST) and runs it; writes "passed
#                      failed skipped" to $(RESULTS)/port
# Included by the top-level Makefile after HOST_BUILD, MM_SRCS and RESULTS
# are defined.

PORT_BUILD := $(HOST_BUILD)/port
PORT_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror \
	-fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -I. -MMD -MP -DMM_PORT_RECLAIM
PORT_SRCS := $(addprefix mm/,$(MM_SRCS)) kernel/ktest.c kernel/format.c \
	$(wildcard tests/port/*.c)
PORT_OBJS := $(patsubst %,$(PORT_BUILD)/%.o,$(PORT_SRCS))
PORT_TEST := $(PORT_BUILD)/min-port-test

# Like every other object, after tools/install-deps (the Makefile's deps).
$(PORT_OBJS): | deps

FLAGS_port := $(CC) $(PORT_CFLAGS)
PORT_FLAGS := $(call flags_file,port)

$(PORT_BUILD)/%.c.o: %.c $(PORT_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(PORT_CFLAGS) -c $< -o $@

# mm/ keeps -Wunused-parameter (PORTING.md); the test runner does not.
$(PORT_BUILD)/kernel/%: PORT_CFLAGS += -Wno-unused-parameter

# The object list as a prerequisite (the Makefile's flags_file): a test
# file removed from tests/port relinks the binary. Before, its tests
# went on running from the old binary.
FLAGS_port.objs := $(PORT_OBJS)
PORT_OBJLIST := $(call flags_file,port.objs)

$(PORT_TEST): $(PORT_OBJS) $(PORT_OBJLIST)
	$(CC) $(PORT_CFLAGS) -o $@ $(PORT_OBJS)

test-port: $(PORT_TEST)
	@mkdir -p $(RESULTS)
	@tools/run-progress $(HOST_TIMEOUT) $(BUILD)/port-test.log $(PORT_TEST); \
	tools/ktap-check port $(BUILD)/port-test.log $(RESULTS)/port "exit status $$?"

.PHONY: test-port
