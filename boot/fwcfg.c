/* The fw_cfg directory parser: portable C, tested on the host. */
#include "fwcfg.h"

uint32_t fwcfg_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Whether the entry's name field (room bytes, not NUL-terminated if
 * full) is exactly name. */
static int name_is(const uint8_t *field, const char *name)
{
	size_t i = 0;

	for (; i < FWCFG_NAME_MAX; i++) {
		if (field[i] != (uint8_t)name[i])
			return 0;
		if (name[i] == 0)
			return 1;
	}
	return 0; /* the field has no NUL: no name is that long */
}

int fwcfg_find(const uint8_t *dir, uint32_t n, const char *name,
               struct fwcfg_file *out)
{
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = dir + (size_t)i * FWCFG_ENTRY_SIZE;

		if (!name_is(e + 8, name))
			continue;
		out->size = fwcfg_be32(e);
		out->select = (uint16_t)(e[4] << 8 | e[5]);
		for (size_t j = 0; j < FWCFG_NAME_MAX; j++)
			out->name[j] = (char)e[8 + j];
		return 0;
	}
	return -1;
}

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int fwcfg_wait_seconds(const char *s, uint64_t len, unsigned *secs)
{
	uint64_t i = 0, v = 0, digits = 0;

	while (i < len && blank(s[i]))
		i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > FWCFG_WAIT_MAX)
			return -1;
	}
	while (i < len && blank(s[i]))
		i++;
	if (i < len || (digits && v == 0))
		return -1;
	*secs = digits ? (unsigned)v : FWCFG_WAIT_DEFAULT;
	return 0;
}
