# The UEFI loader: a GNU-EFI application, $(BOOT_EFI). Included by the top
# Makefile once CC, LD, OBJCOPY and BUILD are defined; objects go under
# $(BUILD)/boot/ as name.o (not name.c.o, which the kernel's rule builds).

BOOT_EFI := $(BUILD)/boot/BOOTX64.EFI
BOOT_SRCS := boot/loader.c boot/handoff.c boot/console.c boot/paging.c \
	boot/elf_check.c boot/cmdline.c boot/fwcfg.c boot/fwcfg_load.c
BOOT_OBJS := $(patsubst boot/%.c,$(BUILD)/boot/%.o,$(BOOT_SRCS))

# The portable ELF checker is also linked into the host test binary.
HOST_TEST_SRCS += boot/elf_check.c boot/cmdline.c boot/paging.c boot/fwcfg.c

EFI_INC ?= /usr/include/efi
EFI_LIB ?= /usr/lib

# Position-independent (relocated by gnu-efi's _relocate), no red zone
# (firmware interrupts share our stack), MS ABI for firmware calls. The EFI
# headers are -isystem so that -Wextra judges only our code.
BOOT_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -ffreestanding -fpic \
	-fshort-wchar -fno-stack-protector -fno-strict-aliasing -mno-red-zone \
	-DGNU_EFI_USE_MS_ABI -isystem $(EFI_INC) -isystem $(EFI_INC)/x86_64 \
	-I. -MMD -MP
# Keeps the stack pointer fixed around ms_abi calls; gcc only.
ifeq ($(findstring clang,$(shell $(CC) --version 2>/dev/null)),)
BOOT_CFLAGS += -maccumulate-outgoing-args
endif

BOOT_LDFLAGS := -nostdlib -znocombreloc -shared -Bsymbolic --no-undefined \
	-T $(EFI_LIB)/elf_x86_64_efi.lds
BOOT_SECTIONS := .text .sdata .data .dynamic .rodata .rel .rela .rel.* \
	.rela.* .reloc

FLAGS_boot := $(CC) $(BOOT_CFLAGS)
BOOT_FLAGS := $(call flags_file,boot)

$(BOOT_OBJS): $(BUILD)/boot/%.o: boot/%.c boot/boot.mk $(BOOT_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(BOOT_CFLAGS) -c $< -o $@

$(BUILD)/boot/loader.so: $(BOOT_OBJS)
	$(LD) $(BOOT_LDFLAGS) -o $@ $(EFI_LIB)/crt0-efi-x86_64.o $^ \
		-L$(EFI_LIB) -lefi -lgnuefi

$(BOOT_EFI): $(BUILD)/boot/loader.so
	$(OBJCOPY) $(addprefix -j ,$(BOOT_SECTIONS)) --target efi-app-x86_64 \
		--subsystem=10 $< $@
