/* SHA-256 of `size` bytes into `digest` (host/sha256.c). */
#ifndef CLXENT_SHA256_H
#define CLXENT_SHA256_H

#include <stddef.h>
#include <stdint.h>

void clxent_sha256(const void *data, size_t size, unsigned char digest[32]);
/* The same with portable != 0: the C rounds even where the CPU's SHA extensions would be used
 * (tests/test_sha256.c compares the two). */
void clxent_sha256_ex(const void *data, size_t size, unsigned char digest[32], int portable);

#endif
