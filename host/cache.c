/*
 * The on-disk cache of program binaries: config->cache_dir or $CLXENT_CACHE_DIR, else
 * $XDG_CACHE_HOME/clxent or ~/.cache/clxent; off with CLXENT_OFF or CLXENT_CACHE=0. Any cache
 * trouble falls back to building from source: the cache can make a start faster, never fail it.
 *
 * A file is named by a hash of its key and holds
 *     the key (device, driver, platform version, kernel source hash, build options), then
 *     "binary=<bytes>\nsha256=<hex>\n", then the binary itself,
 * and is handed to OpenCL only when the key matches, the length is exact and the SHA-256
 * verifies: a drivers' deserialiser (PoCL's aborts the process on a cut file) never sees a binary
 * that is not the one written. A file that does not verify is deleted and rebuilt.
 *
 * Safety on a shared machine: the directory is created 0700 and used only when it is a real
 * directory owned by this user and writable by no one else; entries are opened without following
 * links and without blocking (a FIFO planted there cannot hang a start) and read only when they
 * are regular files of plausible size. Writes go to a fresh mkstemp file in the directory, are
 * fsynced, then renamed over the entry (and the directory fsynced): a crash at any point leaves
 * the old entry, the new one, or none.
 */
#define _POSIX_C_SOURCE 200809L /* mkdir, fsync, O_NOFOLLOW, O_CLOEXEC, mkstemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "sha256.h"

#define CACHE_FILE_MAX ((size_t)1 << 30) /* a program binary is megabytes; anything larger is not ours */

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

/* The directory, created 0700 where missing; 1 if it is safe to read and write. */
static int safe_dir(const char *dir) {
  char tmp[1100];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s", dir) >= sizeof tmp) return 0;
  for (char *p = tmp + 1; *p; ++p)
    if (*p == '/') *p = '\0', mkdir(tmp, 0700), *p = '/';
  mkdir(tmp, 0700);
  struct stat st;
  return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & (S_IWGRP | S_IWOTH));
}

static void hex(const unsigned char *digest, char *out) {
  for (int i = 0; i < 32; ++i) snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int clxent_cache_parse(const unsigned char *file, size_t size, const char *key, const unsigned char **binary,
                       size_t *binary_size) {
  const size_t key_len = strlen(key);
  if (size < key_len || memcmp(file, key, key_len)) return 0;
  /* "binary=<decimal>\nsha256=<64 hex>\n" */
  const unsigned char *p = file + key_len, *end = file + size;
  static const char length_tag[] = "binary=", sum_tag[] = "sha256=";
  if ((size_t)(end - p) < sizeof length_tag - 1 || memcmp(p, length_tag, sizeof length_tag - 1)) return 0;
  p += sizeof length_tag - 1;
  size_t length = 0;
  int digits = 0;
  for (; p < end && *p >= '0' && *p <= '9' && digits < 12; ++p, ++digits) length = length * 10 + (size_t)(*p - '0');
  if (!digits || p == end || *p++ != '\n') return 0;
  if ((size_t)(end - p) < sizeof sum_tag - 1 + 64 + 1 || memcmp(p, sum_tag, sizeof sum_tag - 1)) return 0;
  p += sizeof sum_tag - 1;
  const unsigned char *stored = p;
  p += 64;
  if (*p++ != '\n' || (size_t)(end - p) != length || length == 0) return 0;
  unsigned char digest[32];
  char computed[65];
  clxent_sha256(p, length, digest);
  hex(digest, computed);
  if (memcmp(stored, computed, 64)) return 0;
  *binary = p;
  *binary_size = length;
  return 1;
}

/* The whole entry, if it is a regular file of plausible size; NULL otherwise. */
static unsigned char *read_entry(const char *path, size_t *size) {
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  unsigned char *data = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && (size_t)st.st_size <= CACHE_FILE_MAX &&
      (data = malloc((size_t)st.st_size))) {
    size_t done = 0;
    while (done < (size_t)st.st_size) {
      const ssize_t got = read(fd, data + done, (size_t)st.st_size - done);
      if (got <= 0 && !(got < 0 && errno == EINTR)) break;
      if (got > 0) done += (size_t)got;
    }
    if (done != (size_t)st.st_size) free(data), data = NULL;
    *size = done;
  }
  close(fd);
  return data;
}

cl_program clxent_cache_load(clxent_ctx *ctx, const char *key, const char *path, const char *dir, const char *options) {
  if (!safe_dir(dir)) return NULL;
  size_t size = 0, length = 0;
  unsigned char *file = read_entry(path, &size);
  const unsigned char *binary = NULL;
  cl_program program = NULL;
  if (!file) return NULL;
  if (!clxent_cache_parse(file, size, key, &binary, &length)) {
    unlink(path); /* damaged, cut short or foreign: rebuilt and rewritten by this start */
    free(file);
    return NULL;
  }
  cl_int err, status;
  program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &length, &binary, &status, &err);
  if (err != CL_SUCCESS || status != CL_SUCCESS) program = NULL;
  else if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
    clReleaseProgram(program);
    program = NULL;
  }
  free(file);
  return program;
}

static int write_all(int fd, const void *data, size_t size) {
  const unsigned char *p = data;
  while (size) {
    const ssize_t put = write(fd, p, size);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return 0;
    p += put, size -= (size_t)put;
  }
  return 1;
}

void clxent_cache_store(clxent_ctx *ctx, const char *key, const char *path, const char *dir) {
  size_t size = 0;
  if (!safe_dir(dir) ||
      clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0 ||
      size > CACHE_FILE_MAX / 2)
    return;
  unsigned char *binary = malloc(size);
  unsigned char *bins[1] = {binary};
  if (!binary || clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
    free(binary);
    return;
  }
  unsigned char digest[32];
  char header[128], sum[65];
  clxent_sha256(binary, size, digest);
  hex(digest, sum);
  const int header_len = snprintf(header, sizeof header, "binary=%zu\nsha256=%s\n", size, sum);
  char tmp[1300];
  snprintf(tmp, sizeof tmp, "%s/.entry-XXXXXX", dir); /* O_CREAT|O_EXCL, mode 0600: nothing planted is followed */
  const int fd = mkstemp(tmp);
  if (fd >= 0) {
    const int ok = write_all(fd, key, strlen(key)) && write_all(fd, header, (size_t)header_len) &&
                   write_all(fd, binary, size) && fsync(fd) == 0;
    if (close(fd) == 0 && ok && rename(tmp, path) == 0) {
      const int dfd = open(dir, O_RDONLY | O_CLOEXEC);
      if (dfd >= 0) fsync(dfd), close(dfd); /* the rename itself survives a power loss */
    } else {
      unlink(tmp);
    }
  }
  free(binary);
}
