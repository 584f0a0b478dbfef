/* SPDX-License-Identifier: MIT */
#pragma once

#include <search.h>
#include <stdbool.h>
#include <stddef.h>

/* Strings to numbers, for finding what was seen before among thousands
 * (config entries, secret files) without comparing every pair. Built on
 * glibc's hsearch_r; the map owns copies of its keys. Nothing is removed. */
struct strmap {
	struct hsearch_data table;
	bool live;
	char **keys;
	size_t *values;
	size_t n, size; /* entries; table capacity (twice the entries at most) */
};

#define STRMAP_INIT ((struct strmap){0})

/* Whether key is in the map; its value in *value. */
bool strmap_get(const struct strmap *m, const char *key, size_t *value);
/* Adds key with value: -EEXIST when it is there already, -ENOMEM when out
 * of memory; the map is then as before. */
int strmap_put(struct strmap *m, const char *key, size_t value);
void strmap_free(struct strmap *m);
