# The mm/ library's sources, for any build that wants the allocator: include
# this file and compile $(addprefix mm/,$(MM_SRCS)) with your port.
MM_SRCS :=
