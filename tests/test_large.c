/* Batches larger than one device allocation (the suite's context caps it at 1 GiB in code, since
 * PoCL's largest buffer is a share of free host memory, 1 to 4 GiB) stream through in blocks and
 * stay exact; with CLXENT_TEST_HUGE=1 also n × c above 2^31 elements (about 17 GB of host memory). */
#define CLXENT_EXPERIMENTAL_API /* clxent_get_info */
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
    ref_out r = {.rows = &ref_row, .grad = ref_grad};
    ref_softmax_xent(1, c, logits + i * c, labels + i, &sum, &r);
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

/* 1.15 GB of logits and as much gradient: more than one 1 GiB allocation. */
static void test_batch_larger_than_one_allocation(void **state) {
  clxent_info info = CLXENT_INFO_INIT;
  ASSERT_OK(test_ctx(state), clxent_get_info(test_ctx(state), 0, &info));
  if (info.max_alloc > (uint64_t)1 << 30)
    fail_msg("largest buffer %llu bytes: the 1 GiB cap did not apply", (unsigned long long)info.max_alloc);
  check_large(test_ctx(state), 1100, 262147, 1);
}

/* n × c = 2^31 + 2^21·... elements: indices must not wrap at 2^31 or 2^32. Loss only. */
static void test_more_than_2_31_elements(void **state) {
  if (!getenv("CLXENT_TEST_HUGE")) {
    skip();
    return;
  }
  check_large(test_ctx(state), 16411, 131101, 0); /* 2,151,498,511 elements */
}

int main(void) {
  static clxent_config one_gib = CLXENT_CONFIG_INIT;
  one_gib.max_alloc = (uint64_t)1 << 30; /* the 1.15 GB batch always needs more than one allocation */
  support_config = &one_gib;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_larger_than_one_allocation),

      cmocka_unit_test(test_more_than_2_31_elements),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
