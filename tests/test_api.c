/* The API contract: status strings, device selection, every rejected input (with its outputs
 * poisoned and checked untouched, and the message naming the argument), streaming in blocks. */
#define _POSIX_C_SOURCE 200809L /* getpid */
#define CLXENT_EXPERIMENTAL_API   /* clxent_tuning, clxent_get_info */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "support.h"

static void assert_error_mentions(const clxent_ctx *ctx, const char *needle) {
  const char *msg = clxent_last_error(ctx);
  if (!strstr(msg, needle)) fail_msg("clxent_last_error = \"%s\" does not mention \"%s\"", msg, needle);
}

static void test_status_strings(void **state) {
  (void)state;
  const char *seen[7];
  for (int s = CLXENT_OK; s <= CLXENT_ERR_OPENCL; ++s) {
    seen[s] = clxent_status_str((clxent_status)s);
    assert_non_null(seen[s]);
    for (int t = 0; t < s; ++t) assert_string_not_equal(seen[s], seen[t]);
  }
  assert_non_null(strstr(clxent_status_str(CLXENT_ERR_LABEL_RANGE), "LABEL_RANGE"));
  assert_non_null(clxent_status_str((clxent_status)1234));
}

static void test_version(void **state) {
  (void)state;
  assert_int_equal(clxent_version(), CLXENT_VERSION_NUMBER);
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", CLXENT_VERSION_MAJOR, CLXENT_VERSION_MINOR, CLXENT_VERSION_PATCH);
  assert_string_equal(clxent_version_string(), expected);
}

static void test_device_selection(void **state) {
  clxent_ctx *ctx = test_ctx(state), *other = NULL;
  assert_string_equal(clxent_last_error(ctx), "");
  /* by part of the name of the default device */
  char part[16] = "";
  strncpy(part, clxent_device_name(ctx), 6);
  ASSERT_OK(NULL, clxent_create(&other, part));
  assert_string_equal(clxent_device_name(other), clxent_device_name(ctx));
  clxent_destroy(other);
  ASSERT_OK(NULL, clxent_create(&other, "0:0"));
  clxent_destroy(other);
  other = (clxent_ctx *)&other;
  assert_int_equal(clxent_create(&other, "no-such-device-anywhere"), CLXENT_ERR_NO_DEVICE);
  assert_null(other);
  assert_error_mentions(NULL, "no-such-device-anywhere");
  assert_int_equal(clxent_create(&other, "15:63"), CLXENT_ERR_NO_DEVICE);
  const clxent_status gpu = clxent_create(&other, "gpu"); /* either there is a GPU or we are told so */
  assert_true(gpu == CLXENT_OK || gpu == CLXENT_ERR_NO_DEVICE);
  clxent_destroy(other);
  assert_int_equal(clxent_create(NULL, NULL), CLXENT_ERR_INVALID_ARG);
  clxent_destroy(NULL); /* a no-op */
  /* $CLXENT_DEVICE (the fixture's) applies when device is NULL */
  assert_int_equal(clxent_create(&other, NULL), CLXENT_ERR_NO_DEVICE);
  assert_null(other);
}
static int no_such_default_device(void **state) {
  (void)state;
  static const env_setting env[] = {{"CLXENT_DEVICE", "no-such-device-anywhere"}, {NULL, NULL}};
  return env_override(env);
}

static void test_bad_variant(void **state) {
  (void)state;
  clxent_ctx *ctx = (clxent_ctx *)&ctx;
  assert_int_equal(clxent_create(&ctx, NULL), CLXENT_ERR_INVALID_ARG);
  assert_null(ctx);
  assert_error_mentions(NULL, "CLXENT_VARIANT");
}
static int sideways_variant(void **state) {
  (void)state;
  static const env_setting env[] = {{"CLXENT_VARIANT", "sideways"}, {NULL, NULL}};
  return env_override(env);
}

static void test_build_failure(void **state) {
  (void)state;
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.build_options = "-DCLXENT_VEC=3"; /* the kernels' #error */
  clxent_config cfg = clxent_config_default();
  cfg.tuning = &t;
  clxent_ctx *ctx = (clxent_ctx *)&ctx;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cfg), CLXENT_ERR_BUILD);
  assert_null(ctx);
  assert_error_mentions(NULL, "clBuildProgram");
}

/* Every rejected call of the hard-label loss: the status, a message naming the argument, and
 * outputs left exactly as they were. */
static void test_rejected_calls_write_nothing(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 8, C = 5 };
  float logits[N * C], grad[N * C], loss[N];
  int32_t labels[N] = {0, 1, 2, 3, 4, -100, 0, 1};
  fill_uniform(logits, N * C, -1, 1);
  clxent_opts o = clxent_opts_default();
#define REJECT(expected, needle, call)                                 \
  do {                                                                 \
    poison(grad, N * C);                                               \
    poison(loss, N);                                                   \
    assert_int_equal((call), (expected));                              \
    assert_error_mentions(ctx, needle);                                \
    assert_true(is_poison(grad, N * C));                               \
    assert_true(is_poison(loss, N));                                   \
  } while (0)
  REJECT(CLXENT_ERR_INVALID_ARG, "n (rows) is 0", clxent_softmax_xent(ctx, 0, C, logits, labels, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "c (classes) is 0", clxent_softmax_xent(ctx, N, 0, logits, labels, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "overflows", clxent_softmax_xent(ctx, SIZE_MAX / 2, 3, logits, labels, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "logits is NULL", clxent_softmax_xent(ctx, N, C, NULL, labels, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "labels is NULL", clxent_softmax_xent(ctx, N, C, logits, NULL, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "both NULL", clxent_softmax_xent(ctx, N, C, logits, labels, &o, NULL, NULL));
  o.reduction = (clxent_reduction)7;
  REJECT(CLXENT_ERR_INVALID_ARG, "opts->reduction = 7", clxent_softmax_xent(ctx, N, C, logits, labels, &o, loss, grad));
  o = clxent_opts_default();
  /* aliasing other than exact in-place */
  REJECT(CLXENT_ERR_INVALID_ARG, "grad overlaps logits",
         clxent_softmax_xent(ctx, N - 1, C, logits + 1, labels, &o, loss, logits));
  REJECT(CLXENT_ERR_INVALID_ARG, "loss overlaps grad", clxent_softmax_xent(ctx, N, C, logits, labels, &o, grad + 3, grad));
  /* labels: the first bad row and its value, checked before anything runs */
  labels[6] = 5;
  labels[7] = -1;
  REJECT(CLXENT_ERR_LABEL_RANGE, "labels[6] = 5", clxent_softmax_xent(ctx, N, C, logits, labels, &o, loss, grad));
  labels[6] = 0;
  REJECT(CLXENT_ERR_LABEL_RANGE, "labels[7] = -1", clxent_softmax_xent(ctx, N, C, logits, labels, &o, loss, grad));
  o.ignore_index = -1; /* now -1 is the ignored label, and -100 is out of range */
  REJECT(CLXENT_ERR_LABEL_RANGE, "labels[5] = -100", clxent_softmax_xent(ctx, N, C, logits, labels, &o, loss, grad));
  /* the other entries */
  o = clxent_opts_default();
  REJECT(CLXENT_ERR_INVALID_ARG, "targets is NULL", clxent_softmax_xent_soft(ctx, N, C, logits, NULL, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "grad overlaps targets",
         clxent_softmax_xent_soft(ctx, N, C, logits, grad, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "targets is NULL", clxent_sigmoid_xent(ctx, N, logits, NULL, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "n (rows) is 0", clxent_sigmoid_xent(ctx, 0, logits, logits, &o, loss, grad));
  float probs[N] = {0.5f, 0.25f, 1.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, y[N] = {0};
  REJECT(CLXENT_ERR_INVALID_ARG, "probs[2] = 1.5", clxent_bce(ctx, N, probs, y, &o, loss, grad));
  probs[2] = -0.0f - 1e-7f;
  REJECT(CLXENT_ERR_INVALID_ARG, "probs[2]", clxent_bce(ctx, N, probs, y, &o, loss, grad));
  REJECT(CLXENT_ERR_INVALID_ARG, "q is NULL", clxent_cross_entropy(ctx, N, C, logits, NULL, loss));
  REJECT(CLXENT_ERR_INVALID_ARG, "p is NULL", clxent_kl_div(ctx, N, C, NULL, logits, loss));
  REJECT(CLXENT_ERR_INVALID_ARG, "out is NULL", clxent_entropy(ctx, N, C, logits, NULL));
  REJECT(CLXENT_ERR_INVALID_ARG, "out overlaps p", clxent_entropy(ctx, N, C, grad, grad));
#undef REJECT
  assert_int_equal(clxent_softmax_xent(NULL, N, C, logits, labels, &o, loss, grad), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "ctx is NULL");
  /* after all those, the context still works */
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N - 2, C, logits, labels, &o, loss, grad));
  assert_true(isfinite(loss[0]));
}

/* The labels are checked in blocks of 4096 (host/validate.c): the first bad label is named wherever it
 * falls (first, last, past a block's edge, behind ignored rows), every int32 outside [0, c) is caught
 * (INT32_MIN, INT32_MAX, c), and a batch of valid labels with ignored rows among them still runs,
 * its mean over the rows counted. */
static void test_labels_in_blocks(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 3 * 4096 + 5, C = 3 };
  float *logits = xmalloc(N * C * sizeof(float)), *grad = xmalloc(N * C * sizeof(float)), loss;
  int32_t *labels = xmalloc(N * sizeof(int32_t));
  fill_uniform(logits, N * C, -1, 1);
  clxent_opts o = clxent_opts_default();
  const size_t at[] = {0, 4095, 4096, 8191, 8200, N - 1};
  const int32_t bad[] = {C, -1, INT32_MIN, INT32_MAX, -99, 3};
  char needle[64];
  for (size_t k = 0; k < sizeof at / sizeof at[0]; ++k) {
    for (size_t i = 0; i < N; ++i) labels[i] = i % 7 == 3 ? -100 : (int32_t)(i % C);
    labels[at[k]] = bad[k];
    if (at[k] + 1 < N) labels[at[k] + 1] = bad[(k + 1) % 6]; /* a second bad label: not the one named */
    poison(grad, N * C);
    assert_int_equal(clxent_softmax_xent(ctx, N, C, logits, labels, &o, &loss, grad), CLXENT_ERR_LABEL_RANGE);
    snprintf(needle, sizeof needle, "labels[%zu] = %d is outside [0, 3)", at[k], (int)bad[k]);
    assert_error_mentions(ctx, needle);
    assert_true(is_poison(grad, N * C));
  }
  /* valid: the mean counts the rows not ignored; ignored rows' gradient is 0 */
  size_t counted = 0;
  for (size_t i = 0; i < N; ++i) labels[i] = i % 7 == 3 ? -100 : (int32_t)(i % C), counted += i % 7 != 3;
  o.reduction = CLXENT_SUM;
  float sum;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &o, &sum, grad));
  o.reduction = CLXENT_MEAN;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &o, &loss, grad));
  assert_float_equal(loss, sum / (float)counted, 1e-6 * fabs(sum / (float)counted));
  for (size_t j = 0; j < C; ++j) assert_true(grad[3 * C + j] == 0.0f);
  free(logits), free(grad), free(labels);
}

/* A context whose blocks hold few rows gives the same bits as one that takes the batch at once. */
static void test_streaming_blocks_same_bits(void **state) {
  clxent_tuning blocks = CLXENT_TUNING_INIT;
  blocks.block_bytes = 4096;
  clxent_ctx *whole = test_ctx(state), *blocked = support_create(NULL, &blocks, NULL);
  const size_t n = 3001, c = 700; /* 1 row per 4 KiB block: 3001 blocks */
  float *logits = xmalloc(n * c * sizeof(float)), *g1 = xmalloc(n * c * sizeof(float));
  float *g2 = xmalloc(n * c * sizeof(float)), *r1 = xmalloc(n * c * sizeof(float)), *r2 = xmalloc(n * c * sizeof(float));
  float *t = xmalloc(n * c * sizeof(float));
  int32_t *labels = xmalloc(n * sizeof(int32_t));
  rng_seed(21);
  fill_uniform(logits, n * c, -9, 9);
  fill_distribution_rows(t, n, c, 0.5);
  for (size_t i = 0; i < n; ++i) labels[i] = i % 17 ? (int32_t)rng_below((uint32_t)c) : -100;
  for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r) {
    clxent_opts o = clxent_opts_default();
    o.reduction = (clxent_reduction)r;
    const size_t k = r == CLXENT_NONE ? n : 1;
    ASSERT_OK(whole, clxent_softmax_xent(whole, n, c, logits, labels, &o, r1, g1));
    ASSERT_OK(blocked, clxent_softmax_xent(blocked, n, c, logits, labels, &o, r2, g2));
    assert_memory_equal(r1, r2, k * sizeof(float));
    assert_memory_equal(g1, g2, n * c * sizeof(float));
    ASSERT_OK(whole, clxent_softmax_xent_soft(whole, n, c, logits, t, &o, r1, g1));
    ASSERT_OK(blocked, clxent_softmax_xent_soft(blocked, n, c, logits, t, &o, r2, g2));
    assert_memory_equal(r1, r2, k * sizeof(float));
    assert_memory_equal(g1, g2, n * c * sizeof(float));
    ASSERT_OK(whole, clxent_sigmoid_xent(whole, n * c, logits, t, &o, r1, g1)); /* 1024 values a block */
    ASSERT_OK(blocked, clxent_sigmoid_xent(blocked, n * c, logits, t, &o, r2, g2));
    assert_memory_equal(r1, r2, (r == CLXENT_NONE ? n * c : 1) * sizeof(float));
    assert_memory_equal(g1, g2, n * c * sizeof(float));
  }
  ASSERT_OK(whole, clxent_entropy(whole, n, c, t, r1));
  ASSERT_OK(blocked, clxent_entropy(blocked, n, c, t, r2));
  assert_memory_equal(r1, r2, n * sizeof(float));
  /* a row longer than a block is refused with a message, not truncated */
  float loss = 0;
  const size_t wide = 2000;
  assert_int_equal(clxent_softmax_xent(blocked, 1, wide, logits, labels + 1, NULL, &loss, NULL),
                   CLXENT_ERR_OUT_OF_MEMORY);
  assert_error_mentions(blocked, "c = 2000");
  assert_true(loss == 0);
  clxent_destroy(blocked);
  free(logits), free(g1), free(g2), free(r1), free(r2), free(t), free(labels);
}

/* Finds the first *.bin in dir; returns 1 and its path. */
static int find_cache_file(const char *dir, char *path, size_t size) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d)))
    if (strstr(e->d_name, ".bin")) found = snprintf(path, size, "%s/%s", dir, e->d_name) > 0;
  closedir(d);
  return found;
}

static float demo_loss(clxent_ctx *ctx) {
  const float logits[3] = {logf(0.1f), logf(0.6f), logf(0.3f)};
  const int32_t label = 2;
  float loss = NAN;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, logits, &label, NULL, &loss, NULL));
  return loss;
}

/* The program binary cache: written on the first start, used on the next, and a damaged file is
 * ignored (rebuilt from source), never an error. The test is about where the cache lives by
 * default ($XDG_CACHE_HOME/clxent), so that comes from the environment; the cache is switched on in
 * code. */
static char cache_root[64];
static int private_cache(void **state) { /* the cache under a folder of this test's own */
  (void)state;
  snprintf(cache_root, sizeof cache_root, "/tmp/clxent-test-cache-%ld", (long)getpid());
  const env_setting env[] = {{"XDG_CACHE_HOME", cache_root}, {"CLXENT_CACHE_DIR", NULL}, {NULL, NULL}};
  return env_override(env);
}

/* A context with the cache on; whether its kernels came from the cache. */
static clxent_ctx *cached_context(int *from_cache) {
  clxent_config cfg = clxent_config_default();
  cfg.cache = CLXENT_ON;
  clxent_ctx *ctx = support_create(NULL, NULL, &cfg);
  clxent_info info = CLXENT_INFO_INIT;
  ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
  *from_cache = info.program_from_cache;
  return ctx;
}

static void test_program_cache(void **state) {
  (void)state;
  char dir[96], path[512];
  const char *root = cache_root;
  snprintf(dir, sizeof dir, "%s/clxent", root);
  int from_cache = -1;
  clxent_ctx *ctx = cached_context(&from_cache);
  assert_int_equal(from_cache, 0); /* a fresh folder: built from source */
  assert_float_equal(demo_loss(ctx), 1.204, 5e-4);
  clxent_destroy(ctx);
  assert_true(find_cache_file(dir, path, sizeof path));
  ctx = cached_context(&from_cache);
  assert_int_equal(from_cache, 1);
  assert_float_equal(demo_loss(ctx), 1.204, 5e-4);
  clxent_destroy(ctx);
  FILE *f = fopen(path, "r+b"); /* keep the key, damage the binary */
  assert_non_null(f);
  fseek(f, 200, SEEK_SET);
  for (int i = 0; i < 4096; ++i) fputc(0x5A, f);
  fclose(f);
  ctx = cached_context(&from_cache);
  assert_int_equal(from_cache, 0); /* rebuilt from source */
  assert_float_equal(demo_loss(ctx), 1.204, 5e-4);
  clxent_destroy(ctx);
  f = fopen(path, "wb"); /* a different key in the file: not used */
  assert_non_null(f);
  fputs("clxent-program-cache 1\ndevice=other\n", f);
  fclose(f);
  ctx = cached_context(&from_cache);
  assert_int_equal(from_cache, 0);
  assert_float_equal(demo_loss(ctx), 1.204, 5e-4);
  clxent_destroy(ctx);
  remove(path);
  rmdir(dir);
  rmdir(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_strings), cmocka_unit_test(test_version),
      cmocka_unit_test_setup_teardown(test_device_selection, no_such_default_device, env_restore),
      cmocka_unit_test_setup_teardown(test_bad_variant, sideways_variant, env_restore),
      cmocka_unit_test(test_build_failure),
      cmocka_unit_test(test_rejected_calls_write_nothing),
      cmocka_unit_test(test_labels_in_blocks),
      cmocka_unit_test(test_streaming_blocks_same_bits),
      cmocka_unit_test_setup_teardown(test_program_cache, private_cache, env_restore),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
