/* The program binary cache under attack and damage (issue 13 §1): a cache entry cut short, full of
 * random bytes, with one bit flipped, a FIFO, a symlink; a directory others can write or another
 * user owns. Every start must succeed without blocking, never hand OpenCL an unverified binary
 * (PoCL aborts the process on a cut one), never write through a link, and heal the entry. */
#define _POSIX_C_SOURCE 200809L
#define CLXENT_EXPERIMENTAL_API
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"

static char dir[256];

/* A context with the cache in `where`; returns whether its program came from the cache. */
static int start_in(const char *where) {
  clxent_config cfg = clxent_config_default();
  cfg.cache = CLXENT_ON, cfg.cache_dir = where;
  clxent_ctx *ctx = NULL;
  alarm(300); /* a start that blocks fails the test instead of hanging it */
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, &cfg));
  alarm(0);
  clxent_info info = CLXENT_INFO_INIT;
  ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
  /* and it computes: -ln softmax([0, ln 2, ln 7])[2] = ln 10 - ln 7 */
  const float z[3] = {0.0f, 0.69314718f, 1.9459101f};
  const int32_t y = 2;
  float loss;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z, &y, NULL, &loss, NULL));
  assert_float_equal(loss, 0.35667494f, 1e-5);
  clxent_destroy(ctx);
  return info.program_from_cache;
}

static int start(void) { return start_in(dir); }

/* The one entry of the directory (the suite's context uses its own cache elsewhere). */
static void entry_path(char *path, size_t size) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  const struct dirent *e;
  int found = 0;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".bin")) snprintf(path, size, "%s/%s", dir, e->d_name), ++found;
  closedir(d);
  if (found != 1) fail_msg("%d cache entries in %s, expected 1", found, dir);
}

static long file_size(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/clxent-cache-test-%ld", (long)getpid());
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[2048];
  /* the test's own three directories by name: a glob on the prefix would also take those of a test
   * whose pid starts with this one's (two suites run side by side: ctest -j) */
  snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s %s-att %s-victim 2>/dev/null; rm -rf %s %s-att %s-victim", dir, dir, dir,
           dir, dir, dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_damaged_entries_are_rebuilt(void **state) {
  (void)state;
  char path[512];
  assert_int_equal(start(), 0); /* cold */
  assert_int_equal(start(), 1); /* warm */
  entry_path(path, sizeof path);
  const long good = file_size(path);
  /* cut short at several places, random bytes, one bit flipped in the binary, empty */
  const long cuts[] = {good / 2, good - 1, 40, 0};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; ++k) {
    assert_int_equal(truncate(path, cuts[k]), 0);
    assert_int_equal(start(), 0);
    /* healed: written whole again and taken by the next start. Not necessarily at the first
     * entry's size: PoCL's program binary carries the work-group functions compiled so far for
     * that program, in ~/.cache/pocl, which suites running beside this one (ctest -j) fill too
     * (a rebuilt entry of 0xc9db65 bytes against the first 0xc928f2 failed an exact check in
     * three runs on 2026-11-26). A private PoCL cache (POCL_CACHE_DIR) would make PoCL compile
     * in this process, whose LLVM objects LeakSanitizer then reported in CI's ASan stage. */
    assert_true(file_size(path) > cuts[k]);
    assert_int_equal(start(), 1);
  }
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, good - 100, SEEK_SET);
  const int byte = fgetc(f);
  fseek(f, good - 100, SEEK_SET);
  fputc(byte ^ 0x10, f);
  fclose(f);
  assert_int_equal(start(), 0);
  assert_int_equal(start(), 1);
  f = fopen(path, "wb");
  assert_non_null(f);
  rng_seed(5);
  for (long i = 0; i < good; ++i) fputc((int)rng_below(256), f);
  fclose(f);
  assert_int_equal(start(), 0);
  assert_int_equal(start(), 1);
}

static void test_entries_that_are_not_files(void **state) {
  (void)state;
  char path[512], victim[300];
  assert_int_equal(start(), 1); /* the entry from the test before */
  entry_path(path, sizeof path);
  /* a FIFO: opening it must not block the start */
  assert_int_equal(unlink(path), 0);
  assert_int_equal(mkfifo(path, 0600), 0);
  assert_int_equal(start(), 0);
  /* a symlink to a file of the caller's: never followed, never written through */
  snprintf(victim, sizeof victim, "%s-victim", dir);
  FILE *f = fopen(victim, "w");
  assert_non_null(f);
  fputs("precious", f);
  fclose(f);
  unlink(path);
  assert_int_equal(symlink(victim, path), 0);
  assert_int_equal(start(), 0);
  assert_int_equal(file_size(victim), 8);
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode)); /* the link was replaced by a new entry, its target untouched */
  unlink(victim);
  assert_int_equal(start(), 1);
}

static void test_unsafe_directories_are_not_used(void **state) {
  (void)state;
  char path[512];
  assert_int_equal(start(), 1);
  entry_path(path, sizeof path);
  /* writable by others: a neighbour could have planted the entry; neither read nor written */
  assert_int_equal(chmod(dir, 0777), 0);
  assert_int_equal(start(), 0);
  assert_int_equal(chmod(dir, 0700), 0);
  assert_int_equal(start(), 1);
  if (geteuid() == 0) { /* owned by another user */
    assert_int_equal(chown(dir, 65534, 65534), 0);
    assert_int_equal(start(), 0);
    assert_int_equal(chown(dir, 0, 0), 0);
  }
  /* reached through a link in a folder others can write: the link could be swapped after any
   * check, so the cache is not used, whatever the spelling (a trailing slash once got past) */
  char att[300], victim[300], link[320], via[330];
  snprintf(att, sizeof att, "%s-att", dir), snprintf(victim, sizeof victim, "%s-victim", dir);
  snprintf(link, sizeof link, "%s/link", att), snprintf(via, sizeof via, "%s/", link);
  assert_int_equal(mkdir(att, 0700), 0);
  assert_int_equal(chmod(att, 0777), 0);
  assert_int_equal(mkdir(victim, 0700), 0);
  assert_int_equal(symlink(victim, link), 0);
  for (int k = 0; k < 2; ++k) {
    assert_int_equal(start_in(via), 0);
    assert_int_equal(start_in(link), 0);
  }
  DIR *d = opendir(victim);
  assert_non_null(d);
  for (const struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') fail_msg("%s was written through a swappable link", e->d_name);
  closedir(d);
  /* the same link in a folder of this user's alone is fine */
  assert_int_equal(chmod(att, 0700), 0);
  assert_int_equal(start_in(via), 0);
  assert_int_equal(start_in(via), 1);
  /* a directory it creates is private */
  assert_int_equal(teardown(NULL), 0);
  assert_int_equal(start(), 0);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_damaged_entries_are_rebuilt),
      cmocka_unit_test(test_entries_that_are_not_files),
      cmocka_unit_test(test_unsafe_directories_are_not_used),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
