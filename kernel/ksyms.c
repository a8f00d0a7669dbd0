/*
 * Symbol lookup over the table tools/gen-ksyms emits into .ksyms: text
 * symbols sorted by address, each with an offset into a string blob.
 */
#include "ksyms.h"

#include "arch/x86_64/layout.h"
#include "kernel/format.h"
#include "kernel/string.h"

extern const uint64_t ksyms_count;
extern const uint64_t ksyms_addrs[];
extern const uint32_t ksyms_name_offs[];
extern const char ksyms_names[];

const char *ksyms_lookup(uint64_t addr, uint64_t *offset)
{
	if (ksyms_count == 0 || addr < ksyms_addrs[0] ||
	    addr >= (uint64_t)(uintptr_t)__text_end)
		return NULL;
	/* The last symbol whose address is <= addr. */
	uint64_t lo = 0, hi = ksyms_count;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (ksyms_addrs[mid] <= addr)
			lo = mid;
		else
			hi = mid;
	}
	*offset = addr - ksyms_addrs[lo];
	return &ksyms_names[ksyms_name_offs[lo]];
}

/* "name+0xoff" for addr, named by the symbol holding addr - back. */
static void format_at(uint64_t addr, uint64_t back, char *buf, size_t size)
{
	uint64_t off;
	const char *name =
	        addr >= back ? ksyms_lookup(addr - back, &off) : NULL;
	if (name)
		ksnprintf(buf, size, "%s+%#lx", name, off + back);
	else
		ksnprintf(buf, size, "?");
}

void ksyms_format(uint64_t addr, char *buf, size_t size)
{
	format_at(addr, 0, buf, size);
}

void ksyms_format_return(uint64_t ret, char *buf, size_t size)
{
	format_at(ret, 1, buf, size);
}

uint64_t ksyms_address(const char *name)
{
	for (uint64_t i = 0; i < ksyms_count; i++)
		if (strcmp(&ksyms_names[ksyms_name_offs[i]], name) == 0)
			return ksyms_addrs[i];
	return 0;
}
