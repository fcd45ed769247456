/* Batches larger than one device allocation (PoCL: 1 GiB) stream through in blocks and stay
 * exact; with CLXENT_TEST_HUGE=1 also n × c above 2^31 elements (about 17 GB of host memory). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static void check_large(clxent_ctx *ctx, size_t n, size_t c, int with_grad) {
  const size_t nc = n * c;
  float *logits = xmalloc(nc * sizeof(float)), *grad = with_grad ? xmalloc(nc * sizeof(float)) : NULL;
  float *rows = xmalloc(n * sizeof(float)), mean;
  int32_t *labels = xmalloc(n * sizeof(int32_t));
  rng_seed(1234);
  fill_uniform(logits, nc, -10, 10);
  for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)rng_below((uint32_t)c);
  if (grad) poison(grad, nc);
  poison(rows, n);
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, logits, labels, &o, rows, grad));
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &mean, NULL));
  /* reference row by row, to keep the memory at the batch's own size */
  double total = 0, *ref_grad = grad ? xmalloc(c * sizeof(double)) : NULL, ref_row;
  clxent_opts sum = clxent_opts_default();
  sum.reduction = CLXENT_SUM;
  for (size_t i = 0; i < n; ++i) {
    ref_softmax_xent(1, c, logits + i * c, labels + i, sum, &ref_row, ref_grad);
    char what[64];
    snprintf(what, sizeof what, "row %zu loss", i);
    assert_close(rows + i, &ref_row, 1, 1e-4, 1e-4, what);
    if (grad && i % 97 == 0) { /* a sample of the gradient rows, all of their elements */
      snprintf(what, sizeof what, "row %zu grad", i);
      assert_close(grad + i * c, ref_grad, c, 1e-7, 1e-4, what);
    }
    total += ref_row;
  }
  if (grad) assert_false(isnan(grad[nc - 1])); /* the last element was written */
  const double ref_mean = total / (double)n;
  assert_close(&mean, &ref_mean, 1, 1e-5, 1e-5, "batch mean");
  free(logits), free(grad), free(rows), free(labels), free(ref_grad);
}

/* 1.15 GB of logits and as much gradient: more than PoCL's 1 GiB max allocation. */
static void test_batch_larger_than_one_allocation(void **state) { check_large(test_ctx(state), 1100, 262147, 1); }

/* n × c = 2^31 + 2^21·... elements: indices must not wrap at 2^31 or 2^32. Loss only. */
static void test_more_than_2_31_elements(void **state) {
  if (!getenv("CLXENT_TEST_HUGE")) {
    skip();
    return;
  }
  check_large(test_ctx(state), 16411, 131101, 0); /* 2,151,498,511 elements */
}

/* A device allocation the device cannot make: the per-value losses of 2^28 + 2^20 binary values
 * need 1.08 GB in one buffer, more than PoCL's 1 GiB CL_DEVICE_MAX_MEM_ALLOC_SIZE. The call must
 * fail with OUT_OF_MEMORY and a message naming the buffer and the limit, and the context must go
 * on working. (A device that can hold it computes the batch instead: then the mean is checked.) */
static void test_allocation_beyond_the_device(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  const size_t n = ((size_t)1 << 28) + ((size_t)1 << 20);
  float *z = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float)), mean = 0;
  if (!z || !y) fail_msg("calloc of 2 x %zu floats failed", n);
  const clxent_status st = clxent_sigmoid_xent(ctx, n, z, y, NULL, &mean, NULL);
  if (st == CLXENT_OK) {
    assert_float_equal(mean, log(2.0), 1e-5); /* z = 0, y = 0: ln 2 per value */
  } else {
    assert_int_equal(st, CLXENT_ERR_OUT_OF_MEMORY);
    const char *msg = clxent_last_error(ctx);
    if (!strstr(msg, "per-row results") || !strstr(msg, "CL_DEVICE_MAX_MEM_ALLOC_SIZE")) fail_msg("message: %s", msg);
  }
  free(z), free(y);
  const float z3[3] = {logf(0.1f), logf(0.6f), logf(0.3f)};
  const int32_t label = 2;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, 1, 3, z3, &label, NULL, &mean, NULL));
  assert_float_equal(mean, 1.204, 1e-3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_larger_than_one_allocation),
      cmocka_unit_test(test_allocation_beyond_the_device),
      cmocka_unit_test(test_more_than_2_31_elements),
  };
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
