/*
 * libFuzzer harness for the program cache's loader (host/cache.c): any bytes as a cache file.
 * clxent_cache_parse must accept exactly the files that are the key, "binary=<n>\nsha256=<hex>\n"
 * and n bytes hashing to <hex>, and hand back a binary inside the file; nothing else may reach
 * OpenCL. Seeds: fuzz/corpus_cache (a valid entry and damaged ones).
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCLXENT_FUZZ=ON && cmake --build build-fuzz
 * Run:   ./build-fuzz/fuzz_cache -max_total_time=60 fuzz/corpus_cache
 */
#define CLXENT_EXPERIMENTAL_API
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sha256.h"

/* The key the seeds were written with (fuzz/make_corpus.py). */
static const char key[] = "clxent-program-cache 4\ndevice=fuzz\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const unsigned char *binary = NULL;
  size_t length = 0;
  if (!clxent_cache_parse(data, size, key, &binary, &length)) return 0;
  /* accepted: the binary lies inside the file, ends it, and hashes to what the file says */
  if (binary < data || length == 0 || binary + length != data + size) abort();
  unsigned char digest[32];
  clxent_sha256(binary, length, digest);
  char hex[65];
  for (int i = 0; i < 32; ++i) {
    static const char digits[] = "0123456789abcdef";
    hex[2 * i] = digits[digest[i] >> 4], hex[2 * i + 1] = digits[digest[i] & 15];
  }
  if (memcmp(binary - 65, hex, 64) || memcmp(data, key, sizeof key - 1)) abort();
  return 0;
}
