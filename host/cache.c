/*
 * The on-disk cache of program binaries: config->cache_dir or $CLXENT_CACHE_DIR, else
 * $XDG_CACHE_HOME/clxent or ~/.cache/clxent; off with CLXENT_OFF or CLXENT_CACHE=0. A file is named
 * by a hash of its key and starts with the key itself (device, driver, platform version, kernel
 * source hash, build options), so a stale or colliding file is never used. Any cache trouble falls
 * back to building from source: the cache can make a start faster, never fail it.
 */
#define _POSIX_C_SOURCE 200809L /* mkdir, getpid */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static uint64_t fnv1a(const char *text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *text; ++text) h = (h ^ (unsigned char)*text) * 0x100000001b3ull;
  return h;
}

int clxent_cache_path(const clxent_settings *s, const char *key, char *path, size_t size, char *dir, size_t dir_size) {
  if (s->cache == CLXENT_OFF) return 0;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (s->cache_dir[0]) n = snprintf(dir, dir_size, "%s", s->cache_dir);
  else if (xdg && *xdg) n = snprintf(dir, dir_size, "%s/clxent", xdg);
  else if (home && *home) n = snprintf(dir, dir_size, "%s/.cache/clxent", home);
  else return 0;
  if (n <= 0 || (size_t)n >= dir_size) return 0;
  n = snprintf(path, size, "%s/%016llx.bin", dir, (unsigned long long)fnv1a(key));
  return n > 0 && (size_t)n < size;
}

cl_program clxent_cache_load(clxent_ctx *ctx, const char *key, const char *path, const char *options) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  const size_t key_len = strlen(key);
  char stored[2048];
  unsigned char *binary = NULL;
  cl_program program = NULL;
  long end;
  if (key_len < sizeof stored && fread(stored, 1, key_len, f) == key_len && !memcmp(stored, key, key_len) &&
      fseek(f, 0, SEEK_END) == 0 && (end = ftell(f)) > (long)key_len && fseek(f, (long)key_len, SEEK_SET) == 0) {
    const size_t size = (size_t)end - key_len;
    binary = malloc(size);
    if (binary && fread(binary, 1, size, f) == size) {
      cl_int err, status;
      const unsigned char *bins[1] = {binary};
      program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size, bins, &status, &err);
      if (err != CL_SUCCESS || status != CL_SUCCESS) program = NULL;
      else if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        program = NULL;
      }
    }
  }
  free(binary);
  fclose(f);
  return program;
}

static void mkdir_parents(const char *dir) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; ++p)
    if (*p == '/') *p = '\0', mkdir(tmp, 0755), *p = '/';
  mkdir(tmp, 0755);
}

/* Writes the program's binary beside a temporary name, then renames it: readers never see half a
 * file, and concurrent writers of the same key write the same bytes. */
void clxent_cache_store(clxent_ctx *ctx, const char *key, const char *path, const char *dir) {
  size_t size = 0;
  if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
    return;
  unsigned char *binary = malloc(size);
  unsigned char *bins[1] = {binary};
  if (!binary || clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
    free(binary);
    return;
  }
  mkdir_parents(dir);
  char tmp[1300];
  snprintf(tmp, sizeof tmp, "%.1200s.%ld.tmp", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (f) {
    const int ok = fwrite(key, 1, strlen(key), f) == strlen(key) && fwrite(binary, 1, size, f) == size;
    if (fclose(f) == 0 && ok && rename(tmp, path) == 0) tmp[0] = '\0';
    if (tmp[0]) remove(tmp);
  }
  free(binary);
}
