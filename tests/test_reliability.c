/* Reliability: bit-identical results over 100 repeats and across block sizes, the threading
 * contract with 8 threads (a context each, and one shared context behind a lock), and faults that
 * must leave a context usable. */
#define _POSIX_C_SOURCE 200809L /* pthreads */
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning */
#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum { N = 4099, C = 37, THREADS = 8, CALLS_PER_THREAD = 25 };

typedef struct batch {
  float *logits, *weights;
  int32_t *labels;
} batch;

static batch make_batch(void) {
  batch b = {xmalloc(N * C * sizeof(float)), xmalloc(C * sizeof(float)), xmalloc(N * sizeof(int32_t))};
  rng_seed(2024);
  fill_uniform(b.logits, N * C, -9, 9);
  for (int j = 0; j < C; ++j) b.weights[j] = (float)rng_uniform(0.5, 2);
  for (int i = 0; i < N; ++i) b.labels[i] = i % 17 == 0 ? -100 : (int32_t)rng_below(C);
  return b;
}

static void free_batch(batch *b) { free(b->logits), free(b->weights), free(b->labels); }

typedef struct outputs {
  float loss, lse[N], bias[C], grad[N * C];
} outputs;

/* One call with every output and option that has a reduction order to get wrong. */
static clxent_status run(clxent_ctx *ctx, const batch *b, outputs *out) {
  clxent_opts o = clxent_opts_default();
  o.class_weight = b->weights, o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
  clxent_ex ex = clxent_ex_default();
  ex.lse = out->lse, ex.bias_grad = out->bias;
  return clxent_softmax_xent_ex(ctx, N, C, b->logits, b->labels, &o, &ex, &out->loss, out->grad);
}

static int same_bits(const outputs *a, const outputs *b) { return !memcmp(a, b, sizeof *a); }

/* A context whose blocks are capped at block_bytes; the rest as the run's. */
static clxent_ctx *blocks_of(uint64_t block_bytes) {
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.block_bytes = block_bytes;
  return support_create(NULL, &t, NULL);
}

static void test_repeats_bit_identical(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  batch b = make_batch();
  outputs *first = xmalloc(sizeof *first), *again = xmalloc(sizeof *again);
  ASSERT_OK(ctx, run(ctx, &b, first));
  for (int k = 0; k < 100; ++k) {
    ASSERT_OK(ctx, run(ctx, &b, again));
    if (!same_bits(first, again)) fail_msg("repeat %d differs from the first call", k);
  }
  /* the same bits when the batch streams through in blocks of 3, 64 and 1000 rows */
  static const uint64_t block_rows[] = {3, 64, 1000};
  for (int s = 0; s < 3; ++s) {
    clxent_ctx *blocky = blocks_of(block_rows[s] * C * sizeof(float));
    ASSERT_OK(blocky, run(blocky, &b, again));
    clxent_destroy(blocky);
    if (!same_bits(first, again)) fail_msg("blocks of %d rows give other bits", (int)block_rows[s]);
  }
  free(first), free(again);
  free_batch(&b);
}

/* A CPU device working in host memory reduces a small batch's losses on the host, in the order
 * of the device's reduce_sum (host/reduce.c); a device with its own buffers (zero-copy off)
 * reduces them on the device. Both give the same bits, on both sides of every tree boundary (64
 * items, 1024 values a group) and of the host's limit (65536 values), for hard labels with
 * ignored rows and for the elementwise chunk sums. Losses of very different sizes make any
 * change of order show. Under a rounding mode other than the device's the host must leave the
 * sum to the device: with SUM (all scales 1, computed exactly in any mode) the bits stay. */
static void test_host_and_device_reductions_agree(void **state) {
  (void)state;
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.variant = CLXENT_VARIANT_ITEM, t.zero_copy = CLXENT_ON;
  clxent_ctx *host = support_create(NULL, &t, NULL);
  t.zero_copy = CLXENT_OFF;
  clxent_ctx *device = support_create(NULL, &t, NULL);
  enum { CLASSES = 7, MAX_ROWS = 65537 };
  static const size_t rows[] = {1, 2, 63, 64, 65, 1023, 1024, 1025, 4099, 16385, 65536, 65537};
  float *z = xmalloc(MAX_ROWS * CLASSES * sizeof(float)), *targets = xmalloc(MAX_ROWS * sizeof(float));
  int32_t *y = xmalloc(MAX_ROWS * sizeof(int32_t));
  rng_seed(14);
  for (size_t k = 0; k < (size_t)MAX_ROWS * CLASSES; ++k)
    z[k] = (float)(rng_uniform(-1, 1) * pow(10, rng_uniform(-3, 1.5)));
  for (int i = 0; i < MAX_ROWS; ++i)
    y[i] = i % 11 == 0 ? -100 : (int32_t)rng_below(CLASSES), targets[i] = (float)rng_uniform(0, 1);
  for (size_t s = 0; s < sizeof rows / sizeof rows[0]; ++s) {
    const size_t n = rows[s];
    for (int r = 0; r < 2; ++r) {
      clxent_opts o = clxent_opts_default();
      o.reduction = r ? CLXENT_SUM : CLXENT_MEAN;
      float a, b;
      ASSERT_OK(host, clxent_softmax_xent(host, n, CLASSES, z, y, &o, &a, NULL));
      ASSERT_OK(device, clxent_softmax_xent(device, n, CLASSES, z, y, &o, &b, NULL));
      if (memcmp(&a, &b, sizeof a)) fail_msg("n = %zu, %s: host %.9g, device %.9g", n, r ? "SUM" : "MEAN", a, b);
      ASSERT_OK(host, clxent_sigmoid_xent(host, n, z, targets, &o, &a, NULL));
      ASSERT_OK(device, clxent_sigmoid_xent(device, n, z, targets, &o, &b, NULL));
      if (memcmp(&a, &b, sizeof a))
        fail_msg("sigmoid, n = %zu, %s: host %.9g, device %.9g", n, r ? "SUM" : "MEAN", a, b);
    }
  }
  clxent_opts sum = clxent_opts_default();
  sum.reduction = CLXENT_SUM;
  float nearest, upward;
  ASSERT_OK(device, clxent_softmax_xent(device, 4099, CLASSES, z, y, &sum, &nearest, NULL));
  if (fesetround(FE_UPWARD) == 0) { /* C allows a platform without it; x86 and ARM have it */
    const clxent_status st = clxent_softmax_xent(host, 4099, CLASSES, z, y, &sum, &upward, NULL);
    fesetround(FE_TONEAREST);
    ASSERT_OK(host, st);
    if (memcmp(&nearest, &upward, sizeof nearest))
      fail_msg("rounding upward: %.9g, to nearest: %.9g (the host reduced in the caller's mode)", upward, nearest);
  }
  free(z), free(targets), free(y);
  clxent_destroy(host), clxent_destroy(device);
}

/* ---------------------------------------------------------------- threads */

typedef struct worker {
  const batch *b;
  const outputs *expected;
  clxent_ctx *shared; /* NULL: the worker makes its own context */
  pthread_mutex_t *lock;
  int failures;
  char why[256];
} worker;

static void *work(void *arg) {
  worker *w = arg;
  outputs *out = malloc(sizeof *out);
  clxent_ctx *ctx = w->shared;
  if (!out || (!ctx && clxent_create(&ctx, NULL) != CLXENT_OK)) {
    snprintf(w->why, sizeof w->why, "setup: %s", out ? clxent_last_error(NULL) : "malloc");
    w->failures = 1;
    free(out);
    return NULL;
  }
  for (int k = 0; k < CALLS_PER_THREAD && !w->failures; ++k) {
    if (w->lock) pthread_mutex_lock(w->lock);
    const clxent_status st = run(ctx, w->b, out);
    if (st != CLXENT_OK) snprintf(w->why, sizeof w->why, "call %d: %s", k, clxent_last_error(ctx)), w->failures = 1;
    if (w->lock) pthread_mutex_unlock(w->lock);
    if (!w->failures && !same_bits(out, w->expected))
      snprintf(w->why, sizeof w->why, "call %d: results differ from the single-threaded ones", k), w->failures = 1;
  }
  if (!w->shared) clxent_destroy(ctx);
  free(out);
  return NULL;
}

static void run_threads(const batch *b, const outputs *expected, clxent_ctx *shared, pthread_mutex_t *lock) {
  pthread_t threads[THREADS];
  worker workers[THREADS];
  for (int t = 0; t < THREADS; ++t) {
    workers[t] = (worker){b, expected, shared, lock, 0, ""};
    if (pthread_create(&threads[t], NULL, work, &workers[t])) fail_msg("pthread_create failed");
  }
  for (int t = 0; t < THREADS; ++t) pthread_join(threads[t], NULL);
  for (int t = 0; t < THREADS; ++t)
    if (workers[t].failures) fail_msg("thread %d (%s context): %s", t, shared ? "shared" : "own", workers[t].why);
}

/* The contract in clxent.h: a context per thread, or a shared one used under a lock. Both give
 * exactly the single-threaded bits. */
static void test_threads(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  batch b = make_batch();
  outputs *expected = xmalloc(sizeof *expected);
  ASSERT_OK(ctx, run(ctx, &b, expected));
  run_threads(&b, expected, NULL, NULL);
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  run_threads(&b, expected, ctx, &lock);
  free(expected);
  free_batch(&b);
}

/* ---------------------------------------------------------------- faults */

/* A call the device cannot hold fails with OUT_OF_MEMORY and a message, and the context goes on. */
static void test_out_of_memory_leaves_context_usable(void **state) {
  (void)state;
  clxent_ctx *ctx = blocks_of(16 * sizeof(float)); /* a row of 37 does not fit */
  batch b = make_batch();
  float loss = 0;
  assert_int_equal(clxent_softmax_xent(ctx, N, C, b.logits, b.labels, NULL, &loss, NULL), CLXENT_ERR_OUT_OF_MEMORY);
  if (!strstr(clxent_last_error(ctx), "exceeds the largest block buffer"))
    fail_msg("message: %s", clxent_last_error(ctx));
  /* small rows still stream through the tiny blocks, and give the usual answer */
  const float z[4] = {logf(0.1f), logf(0.6f), logf(0.3f), 0.0f};
  const int32_t y = 2;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z, &y, NULL, &loss, NULL));
  assert_float_equal(loss, 1.204, 1e-3);
  clxent_destroy(ctx);
  free_batch(&b);
}

/* A context whose largest buffer is capped at 1 MiB (config.max_alloc, fault injection). */
static clxent_ctx *capped_context(void) {
  clxent_config cfg = clxent_config_default();
  cfg.max_alloc = 1 << 20;
  return support_create(NULL, NULL, &cfg);
}

/* An allocation beyond the device: the per-row losses of 300 000 rows need 1.2 MB in one buffer.
 * OUT_OF_MEMORY, a message naming the buffer and the limit, and the context goes on working. */
static void test_allocation_beyond_the_device(void **state) {
  (void)state;
  clxent_ctx *ctx = capped_context();
  const size_t n = 300000;
  float *z = calloc(n * 2, sizeof(float)), mean = 0;
  int32_t *y = calloc(n, sizeof(int32_t));
  if (!z || !y) fail_msg("calloc failed");
  assert_int_equal(clxent_softmax_xent(ctx, n, 2, z, y, NULL, &mean, NULL), CLXENT_ERR_OUT_OF_MEMORY);
  const char *msg = clxent_last_error(ctx);
  if (!strstr(msg, "per-row results need 1200000 bytes") || !strstr(msg, "CL_DEVICE_MAX_MEM_ALLOC_SIZE = 1048576"))
    fail_msg("message: %s", msg);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1000, 2, z, y, NULL, &mean, NULL));
  assert_float_equal(mean, log(2.0), 1e-6);
  free(z), free(y);
  clxent_destroy(ctx);
}

/* The elementwise losses stream their per-value results: 1.5 M binary values, whose losses alone
 * (6 MB) are past the capped 1 MiB buffer, give the exact mean (ln 2 for z = y = 0) and the same
 * bits as an uncapped context. */
static void test_binary_values_beyond_one_allocation(void **state) {
  clxent_ctx *ctx = capped_context(), *whole = test_ctx(state);
  const size_t n = 1500000;
  float *z = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), mean, mean_whole;
  if (!z || !y) fail_msg("malloc failed");
  rng_seed(3);
  fill_uniform(z, n, -5, 5);
  fill_uniform(y, n, 0, 1);
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, n, z, y, NULL, &mean, NULL));
  ASSERT_OK(whole, clxent_sigmoid_xent(whole, n, z, y, NULL, &mean_whole, NULL));
  assert_memory_equal(&mean, &mean_whole, sizeof mean);
  memset(z, 0, n * sizeof(float)), memset(y, 0, n * sizeof(float));
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, n, z, y, NULL, &mean, NULL));
  assert_float_equal(mean, log(2.0), 1e-6);
  free(z), free(y);
  clxent_destroy(ctx);
}

/* A build failure (a bad option injected through the tuning's build_options, the cache off) reports
 * the build log and leaves nothing behind; the next create without it works. */
static void test_build_failure_then_recovery(void **state) {
  (void)state;
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.build_options = "-DCLXENT_VEC=5";
  clxent_config cfg = clxent_config_default();
  cfg.cache = CLXENT_OFF, cfg.tuning = &t;
  clxent_ctx *ctx = (clxent_ctx *)&ctx;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cfg), CLXENT_ERR_BUILD);
  assert_null(ctx);
  if (!strstr(clxent_last_error(NULL), "CLXENT_VEC must be 4, 8 or 16"))
    fail_msg("build log not in the message: %.300s", clxent_last_error(NULL));
  cfg.tuning = NULL;
  clxent_destroy(support_create(NULL, NULL, &cfg));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_repeats_bit_identical),
      cmocka_unit_test(test_host_and_device_reductions_agree),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_out_of_memory_leaves_context_usable),
      cmocka_unit_test(test_allocation_beyond_the_device),
      cmocka_unit_test(test_binary_values_beyond_one_allocation),
      cmocka_unit_test(test_build_failure_then_recovery),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
