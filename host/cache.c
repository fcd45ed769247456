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
 * directory owned by this user, writable by no one else, reached through directories no one else
 * can change (open_cache_dir); every file operation then goes through its descriptor, so the path
 * cannot be swapped after the checks. Entries are opened without following links and without
 * blocking (a FIFO planted there cannot hang a start) and read only when they are regular files
 * of plausible size. Writes go to a new file of an unpredictable name (O_EXCL), are fsynced, then
 * renamed over the entry (and the directory fsynced): a crash at any point leaves the old entry,
 * the new one, or none.
 */
#define _XOPEN_SOURCE 700 /* openat and the *at family, O_NOFOLLOW, O_CLOEXEC, realpath, S_ISVTX */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

/* A directory on the way to the cache may be the system's or this user's, and no one else may be
 * able to replace what is in it (writable by others only with the sticky bit, as /tmp). */
static int trusted_parent(const struct stat *st) {
  return (st->st_uid == 0 || st->st_uid == geteuid()) &&
         (!(st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_mode & S_ISVTX));
}

/* Opens the cache directory, created 0700 where missing, for every later file operation
 * (openat, renameat, unlinkat: the path is never resolved again, so it cannot be swapped after
 * the checks); -1 when it is not safe. The path is walked from the root one component at a time,
 * never letting the kernel follow a link: a link is read and its target walked in its place, so
 * that every directory the path passes through, a link's own included, is checked to be one no
 * one else can change. The last must be a directory of this user that no one else can write. */
static int open_cache_dir(const char *dir) {
  char tmp[1100], path[4096], cwd[2048] = "";
  if (dir[0] != '/' && !getcwd(cwd, sizeof cwd)) return -1;
  if ((size_t)snprintf(path, sizeof path, "%s/%s", cwd, dir) >= sizeof path ||
      (size_t)snprintf(tmp, sizeof tmp, "%s", path) >= sizeof tmp)
    return -1;
  for (char *p = tmp + 1; *p; ++p)
    if (*p == '/') *p = '\0', mkdir(tmp, 0700), *p = '/';
  mkdir(tmp, 0700);
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC), links = 0, safe = 0;
  size_t at = 0; /* the next component of path starts here */
  while (fd >= 0) {
    while (path[at] == '/') ++at;
    if (!path[at]) {
      safe = 1; /* every component walked */
      break;
    }
    size_t end = at;
    while (path[end] && path[end] != '/') ++end;
    char part[256];
    struct stat st;
    if (end - at >= sizeof part || fstat(fd, &st) != 0 || !trusted_parent(&st)) break;
    memcpy(part, path + at, end - at), part[end - at] = '\0';
    at = end;
    if (fstatat(fd, part, &st, AT_SYMLINK_NOFOLLOW) != 0) break;
    if (S_ISLNK(st.st_mode)) { /* walk the target in its place: path = target + the rest */
      char target[2048], rest[4096];
      const ssize_t len = readlinkat(fd, part, target, sizeof target - 1);
      if (len <= 0 || ++links > 40) break;
      target[len] = '\0';
      snprintf(rest, sizeof rest, "%s", path + at);
      if ((size_t)snprintf(path, sizeof path, "%s%s", target, rest) >= sizeof path) break;
      at = 0;
      if (target[0] == '/') { /* absolute: from the root again */
        close(fd);
        fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      }
      continue;
    }
    const int next = strcmp(part, ".") ? openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                                       : dup(fd);
    close(fd);
    fd = next;
  }
  struct stat st;
  if (fd >= 0 && (!safe || fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
                  (st.st_mode & (S_IWGRP | S_IWOTH))))
    close(fd), fd = -1;
  return fd;
}

/* The entry's name inside the directory. */
static const char *entry_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
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
static unsigned char *read_entry(int dir_fd, const char *name, size_t *size) {
  const int fd = openat(dir_fd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
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
  const int dir_fd = open_cache_dir(dir);
  if (dir_fd < 0) return NULL;
  size_t size = 0, length = 0;
  unsigned char *file = read_entry(dir_fd, entry_name(path), &size);
  const unsigned char *binary = NULL;
  cl_program program = NULL;
  if (file && !clxent_cache_parse(file, size, key, &binary, &length)) {
    unlinkat(dir_fd, entry_name(path), 0); /* damaged, cut short or foreign: rebuilt and rewritten */
    free(file), file = NULL;
  }
  close(dir_fd);
  if (!file) return NULL;
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

/* A new file in the directory for writing: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under a name no
 * one can predict; nothing planted there is followed or reused. */
static int create_temporary(int dir_fd, char *name, size_t size) {
  static const char digits[] = "0123456789abcdef";
  for (int attempt = 0; attempt < 16; ++attempt) {
    unsigned char seed[8];
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t x = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 32 ^ (uint64_t)attempt;
    const int urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (urandom >= 0) {
      if (read(urandom, seed, sizeof seed) == (ssize_t)sizeof seed)
        for (int i = 0; i < 8; ++i) x ^= (uint64_t)seed[i] << (8 * i);
      close(urandom);
    }
    char *p = name + snprintf(name, size, ".entry-");
    for (int i = 0; i < 16; ++i) *p++ = digits[(x >> (4 * i)) & 15];
    *p = '\0';
    const int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

void clxent_cache_store(clxent_ctx *ctx, const char *key, const char *path, const char *dir) {
  size_t size = 0;
  if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0 ||
      size > CACHE_FILE_MAX / 2)
    return;
  const int dir_fd = open_cache_dir(dir);
  if (dir_fd < 0) return;
  unsigned char *binary = malloc(size);
  unsigned char *bins[1] = {binary};
  if (!binary || clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
    free(binary);
    close(dir_fd);
    return;
  }
  unsigned char digest[32];
  char header[128], sum[65], tmp[64];
  clxent_sha256(binary, size, digest);
  hex(digest, sum);
  const int header_len = snprintf(header, sizeof header, "binary=%zu\nsha256=%s\n", size, sum);
  const int fd = create_temporary(dir_fd, tmp, sizeof tmp);
  if (fd >= 0) {
    const int ok = write_all(fd, key, strlen(key)) && write_all(fd, header, (size_t)header_len) &&
                   write_all(fd, binary, size) && fsync(fd) == 0;
    if (close(fd) == 0 && ok && renameat(dir_fd, tmp, dir_fd, entry_name(path)) == 0)
      fsync(dir_fd); /* the rename itself survives a power loss */
    else
      unlinkat(dir_fd, tmp, 0);
  }
  free(binary);
  close(dir_fd);
}
