/*
 * Replays inputs through the fuzz harness without libFuzzer, as zstd's regression driver does:
 * linked with fuzz_api.c by the ordinary compiler (no -fsanitize=fuzzer), it lets CTest check every
 * input the fuzzer ever kept (fuzz/corpus) in every build, not only in the CLXENT_FUZZ one.
 *
 * Usage: fuzz_replay PATH...   each PATH a file (one input) or a folder (each regular file in it,
 *                              in name order, is one input; no recursion).
 * Exit status: 0 every input ran; 1 a path could not be read, there was no input at all, or the
 * harness returned a value libFuzzer does not allow (other than 0 and -1); 77 (CTest's skip) when
 * there is no OpenCL device. A harness that finds a bug aborts, and so does this program then,
 * after naming the input on stderr.
 */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clxent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a harness; libFuzzer calls it once before the first input when it is defined. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

enum { SKIP = 77 };

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs one file; returns 0, or 1 if it could not be read or the harness returned another value. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "fuzz_replay: cannot open %s\n", path), 1;
  size_t cap = 4096, size = 0, got;
  uint8_t *data = malloc(cap);
  while (data && (got = fread(data + size, 1, cap - size, f)) > 0) {
    size += got;
    if (size == cap) {
      uint8_t *more = realloc(data, cap *= 2);
      if (!more) free(data);
      data = more;
    }
  }
  const int bad_read = ferror(f) || !data;
  fclose(f);
  if (bad_read) return free(data), fprintf(stderr, "fuzz_replay: cannot read %s\n", path), 1;
  /* an exact-size copy, so that a sanitizer sees a read past the input's end */
  uint8_t *exact = malloc(size ? size : 1);
  if (!exact) return free(data), fprintf(stderr, "fuzz_replay: out of memory\n"), 1;
  memcpy(exact, data, size);
  free(data);
  fprintf(stderr, "fuzz_replay: %s (%zu bytes)\n", path, size); /* named before an abort */
  const int r = LLVMFuzzerTestOneInput(exact, size);
  free(exact);
  if (r != 0 && r != -1) return fprintf(stderr, "fuzz_replay: %s: the harness returned %d\n", path, r), 1;
  return 0;
}

/* Runs every regular file of a folder in name order; counts them in *inputs. */
static int replay_folder(const char *dir, size_t *inputs) {
  DIR *d = opendir(dir);
  if (!d) return fprintf(stderr, "fuzz_replay: cannot open folder %s\n", dir), 1;
  char **paths = NULL;
  size_t count = 0, cap = 0;
  int failed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* ., .. and hidden files */
    const size_t len = strlen(dir) + strlen(e->d_name) + 2;
    char *path = malloc(len);
    struct stat st;
    if (!path) { failed = 1; break; }
    snprintf(path, len, "%s/%s", dir, e->d_name);
    if (stat(path, &st) || !S_ISREG(st.st_mode)) { free(path); continue; }
    if (count == cap) {
      char **more = realloc(paths, (cap = cap ? 2 * cap : 256) * sizeof *paths);
      if (!more) { free(path); failed = 1; break; }
      paths = more;
    }
    paths[count++] = path;
  }
  closedir(d);
  if (failed) fprintf(stderr, "fuzz_replay: out of memory listing %s\n", dir);
  if (count) qsort(paths, count, sizeof *paths, by_name);
  for (size_t k = 0; k < count; ++k) {
    if (!failed) failed = replay_file(paths[k]);
    free(paths[k]);
  }
  free(paths);
  *inputs += count;
  return failed;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fuzz_replay PATH...  (input files, or folders of them)\n");
    return 1;
  }
  /* The harness aborts when it cannot make a context; without a device that is a skip, not a bug. */
  clxent_ctx *probe = NULL;
  const clxent_status st = clxent_create(&probe, NULL);
  if (st == CLXENT_ERR_NO_DEVICE) {
    fprintf(stderr, "SKIP: no OpenCL device here: %s\n", clxent_last_error(NULL));
    return SKIP;
  }
  clxent_destroy(probe);
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  size_t inputs = 0;
  for (int a = 1; a < argc; ++a) {
    struct stat s;
    if (stat(argv[a], &s)) return fprintf(stderr, "fuzz_replay: cannot stat %s\n", argv[a]), 1;
    const int failed = S_ISDIR(s.st_mode) ? replay_folder(argv[a], &inputs) : (++inputs, replay_file(argv[a]));
    if (failed) return 1;
  }
  if (!inputs) return fprintf(stderr, "fuzz_replay: no input found\n"), 1;
  printf("fuzz_replay: %zu inputs, none failed\n", inputs);
  return 0;
}
