/* SPDX-License-Identifier: MIT */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool strmap_get(const struct strmap *m, const char *key, size_t *value)
{
	ENTRY want = {.key = (char *)key}, *found = NULL;

	/* hsearch_r takes a non-const table even for FIND. */
	if (!m->live || !hsearch_r(want, FIND, &found, (struct hsearch_data *)&m->table) || !found)
		return false;
	*value = m->values[(uintptr_t)found->data];
	return true;
}

/* A new table of `size`, holding the first n entries. */
static int strmap_index(struct strmap *m, size_t size)
{
	struct hsearch_data table = {0};

	if (!hcreate_r(size, &table))
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		ENTRY e = {.key = m->keys[i], .data = (void *)(uintptr_t)i}, *found;

		if (!hsearch_r(e, ENTER, &found, &table)) {
			hdestroy_r(&table);
			return -ENOMEM;
		}
	}
	if (m->live)
		hdestroy_r(&m->table);
	m->table = table;
	m->live = true;
	m->size = size;
	return 0;
}

int strmap_put(struct strmap *m, const char *key, size_t value)
{
	ENTRY e, *found;
	char *copy;

	/* At most half full: hsearch_r slows down near its capacity. */
	if (2 * (m->n + 1) > m->size) {
		size_t size = m->size ? 2 * m->size : 64;
		char **keys = realloc(m->keys, size / 2 * sizeof(*keys));
		size_t *values;

		if (!keys)
			return -ENOMEM;
		m->keys = keys;
		values = realloc(m->values, size / 2 * sizeof(*values));
		if (!values)
			return -ENOMEM;
		m->values = values;
		if (strmap_index(m, size) < 0)
			return -ENOMEM;
	}
	copy = strdup(key);
	if (!copy)
		return -ENOMEM;
	e.key = copy;
	e.data = (void *)(uintptr_t)m->n;
	if (!hsearch_r(e, ENTER, &found, &m->table)) {
		free(copy);
		return -ENOMEM;
	}
	if (found->key != copy) { /* there already: hsearch_r returned it */
		free(copy);
		return -EEXIST;
	}
	m->keys[m->n] = copy;
	m->values[m->n] = value;
	m->n++;
	return 0;
}

void strmap_free(struct strmap *m)
{
	if (m->live)
		hdestroy_r(&m->table);
	for (size_t i = 0; i < m->n; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->values);
	*m = STRMAP_INIT;
}
