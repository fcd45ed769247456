/* The test support itself, on no device: the environment fixture restores what a test changed even
 * when the test fails (cmocka longjmps out of it), and the float64 reference gives the worked
 * values and the PyTorch divisors of the header by hand. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* ---------------------------------------------------------------- the environment fixture */

#define KEPT "CLXENT_SUPPORT_TEST_KEPT" /* set before the tests run */
#define GONE "CLXENT_SUPPORT_TEST_GONE" /* unset before the tests run */
#define OTHER "CLXENT_SUPPORT_TEST_OTHER"

static int override_both(void **state) {
  (void)state;
  static const env_setting env[] = {{KEPT, NULL}, {GONE, "set by the fixture"}, {NULL, NULL}};
  return env_override(env);
}

/* Fails on purpose after changing both variables: the teardown must still restore them. */
static void fails_after_changing_the_environment(void **state) {
  (void)state;
  assert_null(getenv(KEPT));
  assert_string_equal(getenv(GONE), "set by the fixture");
  env_set(KEPT, "changed by the test");
  fail_msg("a deliberate failure (the fixture must restore " KEPT " and " GONE ")");
}

/* env_set on a variable the fixture did not save fails the test and changes nothing. */
static void sets_a_variable_not_saved(void **state) {
  (void)state;
  env_set(OTHER, "must not be set");
}

static void environment_restored(void **state) {
  (void)state;
  assert_non_null(getenv(KEPT));
  assert_string_equal(getenv(KEPT), "original");
  assert_null(getenv(GONE));
  assert_null(getenv(OTHER));
}

/* A setting that cannot be made: env_override restores what it already changed (cmocka runs no
 * teardown after a failed setup). */
static void failed_override_restores(void **state) {
  (void)state;
  static const env_setting env[] = {{KEPT, "changed"}, {"NOT=A NAME", "x"}, {NULL, NULL}};
  assert_int_equal(env_override(env), -1);
  assert_string_equal(getenv(KEPT), "original");
  assert_int_equal(env_restore(NULL), 0); /* nothing left to restore */
  assert_string_equal(getenv(KEPT), "original");
}

/* ---------------------------------------------------------------- the reference by hand */

#define assert_near(a, b, tol)                                                         \
  do {                                                                                 \
    const double a_ = (a), b_ = (b);                                                   \
    if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
  } while (0)

/* The README's worked values: label 2 with a = [0.1, 0.6, 0.3] gives -ln 0.3 = 1.204; with ε = 0.3
 * the target is [0.1, 0.1, 0.8]; the gradient of one row is a - onehot. */
static void reference_worked_values(void **state) {
  (void)state;
  const float z[3] = {logf(0.1f), logf(0.6f), logf(0.3f)};
  const int32_t y = 2;
  double row, grad[3], lse, bias[3];
  ref_out r = {.rows = &row, .grad = grad, .lse = &lse, .bias = bias};
  clxent_opts o = clxent_opts_default();
  assert_near(ref_softmax_xent(1, 3, z, &y, &o, &r), -log(0.3), 1e-7);
  assert_near(lse, 0, 1e-7);
  assert_near(grad[0], 0.1, 1e-7);
  assert_near(grad[1], 0.6, 1e-7);
  assert_near(grad[2], 0.3 - 1, 1e-7);
  assert_near(bias[2], grad[2], 0);
  o.label_smoothing = 0.3f;
  assert_near(ref_softmax_xent(1, 3, z, &y, &o, &r), -(0.1 * log(0.1) + 0.1 * log(0.6) + 0.8 * log(0.3)), 1e-6);
  /* binary: y = 1, a = 0.6 gives 0.511; pos_weight 2 doubles it */
  const float a = 0.6f, one = 1.0f, two = 2.0f, logit = logf(0.6f / 0.4f);
  o = clxent_opts_default();
  assert_near(ref_bce(1, 1, &a, &one, &o, &r), 0.5108, 1e-4);
  assert_near(ref_sigmoid_xent(1, 1, &logit, &one, &o, &r), 0.5108, 1e-4);
  o.pos_weight = &two;
  assert_near(ref_bce(1, 1, &a, &one, &o, &r), 2 * 0.5108, 2e-4);
  assert_near(ref_sigmoid_xent(1, 1, &logit, &one, &o, &r), 2 * 0.5108, 2e-4);
}

/* MEAN's divisors (PyTorch): hard labels Σ w_{y_i} over the rows counted, the z-loss the rows
 * counted, soft targets n whatever the weights; a zero divisor gives a NaN loss, and a NaN
 * gradient on the rows counted. */
static void reference_divisors(void **state) {
  (void)state;
  const float z[6] = {0, 0, 0, 0, 0, 0}, w[3] = {1, 2, 4}, soft[6] = {0, 0, 1, 0, 0, 1};
  const int32_t y[2] = {1, 2}, y_ignored[2] = {-100, 2};
  double rows[2], grad[6];
  ref_out r = {.rows = rows, .grad = grad};
  clxent_opts o = clxent_opts_default();
  o.class_weight = w;
  const double ln3 = log(3.0);
  assert_near(ref_softmax_xent(2, 3, z, y, &o, &r), (2 * ln3 + 4 * ln3) / 6, 1e-12);
  assert_near(grad[2], (1.0 / 3) * 2 / 6, 1e-12); /* row 0: S·a·w_y, with S = 1/(2 + 4) */
  assert_near(ref_softmax_xent(2, 3, z, y_ignored, &o, &r), ln3, 1e-12);
  assert_near(rows[0], 0, 0);
  assert_near(grad[0], 0, 0);
  o.z_loss = 0.5f; /* lse = ln 3 in every row: + λ lse² over the one row counted, not weighted */
  assert_near(ref_softmax_xent(2, 3, z, y_ignored, &o, &r), ln3 + 0.5 * ln3 * ln3, 1e-12);
  o = clxent_opts_default(), o.class_weight = w;
  assert_near(ref_softmax_xent_soft(2, 3, z, soft, &o, &r), (4 * ln3 + 4 * ln3) / 2, 1e-12);
  o.reduction = CLXENT_SUM;
  assert_near(ref_softmax_xent_soft(2, 3, z, soft, &o, &r), 8 * ln3, 1e-12);
  /* zero divisor: every row counted weighs 0: NaN loss (with smoothing too), NaN gradient */
  const float w0[3] = {0, 1, 1};
  const int32_t y0[2] = {0, 0};
  o = clxent_opts_default(), o.class_weight = w0;
  assert_true(isnan(ref_softmax_xent(2, 3, z, y0, &o, &r)));
  for (int k = 0; k < 6; ++k) assert_true(isnan(grad[k]));
  o.label_smoothing = 0.2f;
  assert_true(isnan(ref_softmax_xent(2, 3, z, y0, &o, &r)));
  for (int k = 0; k < 6; ++k) assert_true(isnan(grad[k]));
  /* binary n×c: MEAN over n·c, pos_weight per column */
  const float x[4] = {0, 0, 0, 0}, t[4] = {1, 1, 0, 1}, pw[2] = {1, 3};
  double vals[4];
  ref_out b = {.rows = vals};
  o = clxent_opts_default(), o.pos_weight = pw;
  const double l2 = log(2.0);
  assert_near(ref_sigmoid_xent(2, 2, x, t, &o, &b), (l2 + 3 * l2 + l2 + 3 * l2) / 4, 1e-12);
  assert_near(vals[1], 3 * l2, 1e-12);
  assert_near(vals[2], l2, 1e-12);
}

int main(void) {
  setenv(KEPT, "original", 1);
  unsetenv(GONE), unsetenv(OTHER);
  const struct CMUnitTest failing[] = {
      cmocka_unit_test_setup_teardown(fails_after_changing_the_environment, override_both, env_restore),
      cmocka_unit_test_setup_teardown(sets_a_variable_not_saved, override_both, env_restore),
  };
  const struct CMUnitTest checks[] = {
      cmocka_unit_test(environment_restored),
      cmocka_unit_test(failed_override_restores),
      cmocka_unit_test(reference_worked_values),
      cmocka_unit_test(reference_divisors),
  };
  print_message("The next 2 tests fail on purpose; the group after them checks what they left.\n");
  const int deliberate = cmocka_run_group_tests(failing, NULL, NULL);
  const int failed = cmocka_run_group_tests(checks, NULL, NULL);
  if (deliberate != 2) fprintf(stderr, "expected the 2 deliberate failures, got %d\n", deliberate);
  return deliberate == 2 && failed == 0 ? 0 : 1;
}
