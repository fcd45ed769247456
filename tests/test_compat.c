/* The API's forward compatibility and configuration in code:
 *   - a struct of an older, smaller layout (its `size` says so) still works, the missing fields
 *     taking their defaults; a newer, larger one works when its unknown tail is zero and is
 *     rejected, naming the byte, when not; garbage sizes are rejected, nothing written;
 *   - clxent_create_ex configures a context in code, the environment only filling what the config
 *     leaves unset, and every CLXENT_* value is parsed strictly. */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "old_layouts.h"

enum { N = 6, C = 7 };

static void assert_error_mentions(const clxent_ctx *ctx, const char *needle) {
  const char *msg = clxent_last_error(ctx);
  if (!strstr(msg, needle)) fail_msg("clxent_last_error = \"%s\" does not mention \"%s\"", msg, needle);
}

/* A caller built against a header whose clxent_opts ended at softcap (pos_weight added later). */
typedef struct opts_before_pos_weight {
  size_t size;
  clxent_reduction reduction;
  int32_t ignore_index;
  const float *class_weight;
  float label_smoothing, z_loss, softcap;
} opts_before_pos_weight;

/* ... and one whose clxent_ex had no bias_grad yet. */
typedef struct ex_before_bias_grad {
  size_t size;
  clxent_dtype dtype;
  float *lse;
} ex_before_bias_grad;

/* A newer caller's clxent_opts with one more field. */
typedef struct opts_newer {
  clxent_opts known;
  double future_field;
} opts_newer;

static void batch(float *logits, int32_t *labels) {
  rng_seed(11);
  fill_uniform(logits, N * C, -3, 3);
  for (int i = 0; i < N; ++i) labels[i] = (int32_t)rng_below(C);
}

static void test_smaller_struct_layouts(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  float logits[N * C], grad[N * C], want_grad[N * C], lse[N], want_lse[N], loss, want;
  int32_t labels[N];
  batch(logits, labels);
  /* the reference: the current layout with the same values */
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_SUM, o.label_smoothing = 0.1f, o.z_loss = 1e-3f, o.softcap = 5.0f;
  clxent_ex x = clxent_ex_default();
  x.lse = want_lse;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, N, C, logits, labels, &o, &x, &want, want_grad));

  opts_before_pos_weight old_o = {sizeof old_o, CLXENT_SUM, -100, NULL, 0.1f, 1e-3f, 5.0f};
  ex_before_bias_grad old_x = {sizeof old_x, CLXENT_FLOAT32, lse};
  assert_true(sizeof old_o < sizeof(clxent_opts) && sizeof old_x < sizeof(clxent_ex));
  poison(&loss, 1), poison(grad, N * C), poison(lse, N);
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, N, C, logits, labels, (const clxent_opts *)&old_o,
                                        (const clxent_ex *)&old_x, &loss, grad));
  assert_memory_equal(&loss, &want, sizeof loss);
  assert_memory_equal(grad, want_grad, sizeof grad);
  assert_memory_equal(lse, want_lse, sizeof lse);

  /* the binary losses read the same older opts: pos_weight, which it lacks, is "none" */
  float y[N * C], bl, bwant;
  fill_uniform(y, N * C, 0, 1);
  old_o.label_smoothing = old_o.z_loss = old_o.softcap = 0.0f;
  clxent_opts plain = clxent_opts_default();
  plain.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, N * C, logits, y, &plain, &bwant, NULL));
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, N * C, logits, y, (const clxent_opts *)&old_o, &bl, NULL));
  assert_memory_equal(&bl, &bwant, sizeof bl);

  /* the smallest layout: the size field alone, every option its default */
  const size_t just_size = sizeof(size_t);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, (const clxent_opts *)&just_size, &loss, NULL));
  float mean;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, NULL, &mean, NULL));
  assert_memory_equal(&loss, &mean, sizeof loss);
}

static void test_larger_struct_layouts(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  float logits[N * C], grad[N * C], loss, want;
  int32_t labels[N];
  batch(logits, labels);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, NULL, &want, NULL));
  opts_newer newer;
  memset(&newer, 0, sizeof newer);
  newer.known = clxent_opts_default();
  newer.known.size = sizeof newer;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, &newer.known, &loss, NULL));
  assert_memory_equal(&loss, &want, sizeof loss);
  newer.future_field = 1.0; /* a field this library cannot honour: refused, not ignored */
  poison(&loss, 1), poison(grad, N * C);
  assert_int_equal(clxent_softmax_xent(ctx, N, C, logits, labels, &newer.known, &loss, grad), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(ctx, "does not know");
  assert_true(is_poison(&loss, 1) && is_poison(grad, N * C));
  /* sizes no caller could have: 0, less than the size field, absurdly large */
  const size_t bad_sizes[] = {0, 4, 1u << 20, SIZE_MAX};
  for (size_t k = 0; k < sizeof bad_sizes / sizeof bad_sizes[0]; ++k) {
    clxent_opts o = clxent_opts_default();
    o.size = bad_sizes[k];
    clxent_ex x = clxent_ex_default();
    assert_int_equal(clxent_softmax_xent(ctx, N, C, logits, labels, &o, &loss, grad), CLXENT_ERR_INVALID_ARG);
    assert_error_mentions(ctx, "opts->size");
    x.size = bad_sizes[k];
    assert_int_equal(clxent_softmax_xent_ex(ctx, N, C, logits, labels, NULL, &x, &loss, grad), CLXENT_ERR_INVALID_ARG);
    assert_error_mentions(ctx, "ex->size");
    assert_true(is_poison(&loss, 1) && is_poison(grad, N * C));
  }
}

static void test_config_in_code(void **state) {
  (void)state;
  clxent_ctx *ctx = NULL;
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.variant = CLXENT_VARIANT_GROUP, t.group_size = 16, t.row_threads = 4, t.block_bytes = 4096;
  t.zero_copy = CLXENT_OFF;
  clxent_config cfg = clxent_config_default();
  cfg.cache = CLXENT_OFF, cfg.max_alloc = 1 << 20, cfg.tuning = &t;
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, &cfg));
  clxent_info info = CLXENT_INFO_INIT;
  ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
  assert_int_equal(info.variant, CLXENT_VARIANT_GROUP);
  assert_int_equal(info.group_size, 16);
  assert_int_equal(info.row_threads, 4);
  assert_int_equal(info.zero_copy, 0);
  assert_int_equal(info.program_from_cache, 0);
  assert_true(info.block_bytes == 4096 && info.max_alloc == 1 << 20);
  /* it computes (in blocks of 4096 bytes) what the suite's context computes */
  float logits[N * C], g[N * C], want_g[N * C], loss, want;
  int32_t labels[N];
  batch(logits, labels);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, logits, labels, NULL, &loss, g));
  ASSERT_OK(NULL, clxent_softmax_xent(test_ctx(state), N, C, logits, labels, NULL, &want, want_g));
  assert_float_equal(loss, want, 1e-6);
  clxent_destroy(ctx);
  /* an older clxent_info gets the fields that fit */
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, NULL));
  struct { size_t size; int is_cpu; } small = {sizeof small, -1};
  ASSERT_OK(ctx, clxent_get_info(ctx, 0, (clxent_info *)&small));
  assert_true(small.is_cpu == 0 || small.is_cpu == 1);
  assert_int_equal(clxent_get_info(ctx, 1, &info), CLXENT_ERR_INVALID_ARG);
  clxent_destroy(ctx);

  /* bad values in code: refused before any device work, named */
  clxent_tuning tb = CLXENT_TUNING_INIT;
  clxent_config cb = clxent_config_default();
  cb.tuning = &tb;
  tb.group_size = 24;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "group_size = 24");
  tb = (clxent_tuning)CLXENT_TUNING_INIT, tb.vector_width = 5;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "vector_width = 5");
  tb = (clxent_tuning)CLXENT_TUNING_INIT, tb.group_size = (size_t)1 << 40;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "exceeds");
  tb = (clxent_tuning)CLXENT_TUNING_INIT, tb.variant = (clxent_variant)9;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  tb = (clxent_tuning)CLXENT_TUNING_INIT, tb.split_count = 2;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "split");
  tb = (clxent_tuning)CLXENT_TUNING_INIT;
  cb.cache = (clxent_switch)3;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  cb = clxent_config_default(), cb.size = 3;
  assert_int_equal(clxent_create_ex(&ctx, NULL, &cb), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions(NULL, "config->size");
  assert_null(ctx);
}

/* The environment is read strictly, and only where the config leaves a field unset. The test
 * starts with every variable it touches unset (the run's CLXENT_VARIANT and CLXENT_ZERO_COPY
 * included), so each case sees its own variable alone; support.c's fixture restores them all
 * afterwards, also when the test fails. */
static int no_clxent_variables(void **state) {
  (void)state;
  static const env_setting env[] = {
      {"CLXENT_VARIANT", NULL},   {"CLXENT_VEC", NULL},         {"CLXENT_GROUP_SIZE", NULL}, {"CLXENT_ROW_THREADS", NULL},
      {"CLXENT_MAX_ALLOC", NULL}, {"CLXENT_BLOCK_BYTES", NULL}, {"CLXENT_ZERO_COPY", NULL},  {"CLXENT_CACHE", NULL},
      {"CLXENT_SPLIT", NULL},     {"CLXENT_BUILD_OPTIONS", NULL}, {"CLXENT_OWN_MATH", NULL},   {NULL, NULL}};
  return env_override(env);
}

static void test_strict_environment(void **state) {
  (void)state;
  static const env_setting bad[] = {
      {"CLXENT_GROUP_SIZE", "9223372036854775808"}, /* 2^63: once a loop without end */
      {"CLXENT_GROUP_SIZE", "18446744073709551616"}, /* wraps through 64 bits */
      {"CLXENT_GROUP_SIZE", "8abc"},
      {"CLXENT_GROUP_SIZE", "24"},
      {"CLXENT_GROUP_SIZE", "-64"},
      {"CLXENT_GROUP_SIZE", " 64"},
      {"CLXENT_ROW_THREADS", "3"},
      {"CLXENT_VEC", "4294967304"}, /* 2^32 + 8: wraps to 8 through unsigned */
      {"CLXENT_VEC", "12"},
      {"CLXENT_MAX_ALLOC", "0"},
      {"CLXENT_MAX_ALLOC", "1e9"},
      {"CLXENT_BLOCK_BYTES", "4096 "},
      {"CLXENT_ZERO_COPY", "yes"},
      {"CLXENT_OWN_MATH", "2"},
      {"CLXENT_OWN_MATH", "on"},
      {"CLXENT_CACHE", "2"},
      {"CLXENT_VARIANT", "sideways"},
      {"CLXENT_SPLIT", "1,,1"},
      {"CLXENT_SPLIT", "1,nan"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
    clxent_ctx *ctx = (clxent_ctx *)&bad;
    env_set(bad[k].name, bad[k].value);
    const clxent_status st = clxent_create(&ctx, NULL);
    if (st != CLXENT_ERR_INVALID_ARG)
      fail_msg("%s=\"%s\": %s, expected CLXENT_ERR_INVALID_ARG", bad[k].name, bad[k].value, clxent_status_str(st));
    assert_null(ctx);
    assert_error_mentions(NULL, bad[k].name);
    env_set(bad[k].name, NULL);
  }
  /* the config wins over the environment: the bad variable is not even read */
  env_set("CLXENT_VARIANT", "sideways");
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.variant = CLXENT_VARIANT_ITEM;
  clxent_config cfg = clxent_config_default();
  cfg.tuning = &t;
  clxent_ctx *ctx = NULL;
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, &cfg));
  clxent_destroy(ctx);
  env_set("CLXENT_VARIANT", NULL);
  /* and the environment fills what the config leaves */
  env_set("CLXENT_GROUP_SIZE", "32");
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, &cfg));
  clxent_info info = CLXENT_INFO_INIT;
  ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
  assert_int_equal(info.group_size, 32);
  assert_int_equal(info.variant, CLXENT_VARIANT_ITEM);
  clxent_destroy(ctx);
}

/* test_own_math sets CLXENT_OWN_MATH alone; the run's variant and zero-copy stay, so that it runs
 * on both paths. */
static int no_own_math_variable(void **state) {
  (void)state;
  static const env_setting env[] = {{"CLXENT_OWN_MATH", NULL}, {NULL, NULL}};
  return env_override(env);
}


/* The exponential: clxent's own or the device's, as set in code or in CLXENT_OWN_MATH, else the
 * tuning table's (CPUs: own), reported by clxent_get_info; both correct, and different programs
 * (not one from the cache serving both). */
static void test_own_math(void **state) {
  (void)state;
  enum { R = 64, K = 333 };
  float *z = xmalloc(R * K * sizeof(float)), *g[2], loss[2];
  int32_t labels[R];
  double *ref_grad = xmalloc(R * K * sizeof(double));
  rng_seed(5);
  fill_uniform(z, R * K, -30, 30);
  for (int i = 0; i < R; ++i) labels[i] = (int32_t)rng_below(K);
  clxent_opts o = clxent_opts_default();
  o.softcap = 20.0f; /* tanh, from the same exponential */
  ref_out ref = {0};
  ref.grad = ref_grad;
  ref_softmax_xent(R, K, z, labels, &o, &ref);
  const double tol = 2e-5 * (1.0 + log((double)K)); /* test_softmax_xent's */
  for (int own = 0; own < 2; ++own) {
    clxent_tuning t = CLXENT_TUNING_INIT;
    t.own_math = own ? CLXENT_ON : CLXENT_OFF;
    clxent_ctx *ctx = support_create(NULL, &t, NULL);
    clxent_info info = CLXENT_INFO_INIT;
    ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
    assert_int_equal(info.own_math, own);
    g[own] = xmalloc(R * K * sizeof(float));
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, R, K, z, labels, &o, &loss[own], g[own]));
    assert_close(&loss[own], &ref.loss, 1, tol, tol, own ? "loss, own exp" : "loss, device's exp");
    assert_close(g[own], ref_grad, R * K, 2e-6 / R, 1e-4, own ? "grad, own exp" : "grad, device's exp");
    clxent_destroy(ctx);
  }
  if (!memcmp(g[0], g[1], R * K * sizeof(float)))
    fail_msg("the device's exp and clxent's gave the same %d gradient bits: the switch did not reach the kernels",
             R * K);

  /* unset: the environment's, else the table's; an older clxent_tuning, which cannot say, too */
  tuning_before_own_math old = {sizeof old, CLXENT_VARIANT_AUTO, 0, 0, 0, 0, CLXENT_AUTO, NULL, 0, NULL};
  assert_true(sizeof old < sizeof(clxent_tuning));
  clxent_config cfg = clxent_config_default();
  cfg.tuning = (const clxent_tuning *)&old;
  for (int env = -1; env < 2; ++env) {
    env_set("CLXENT_OWN_MATH", env < 0 ? NULL : env ? "1" : "0");
    clxent_ctx *ctx = support_create(NULL, NULL, &cfg);
    clxent_info info = CLXENT_INFO_INIT;
    ASSERT_OK(ctx, clxent_get_info(ctx, 0, &info));
    if (env >= 0) assert_int_equal(info.own_math, env);
    else assert_true(info.is_cpu ? info.own_math == 1 : info.own_math == 0 || info.own_math == 1);
    float l;
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, R, K, z, labels, &o, &l, NULL));
    assert_close(&l, &ref.loss, 1, tol, tol, "loss, older clxent_tuning");
    clxent_destroy(ctx);
  }
  env_set("CLXENT_OWN_MATH", NULL);
  free(z), free(ref_grad), free(g[0]), free(g[1]);
}

/* A device listed twice is refused however it is spelled, "all" included. */
static void test_device_twice(void **state) {
  (void)state;
  const char *lists[] = {"0:0,0:0", "all,0:0", "0:0,all", "all,all"};
  for (size_t k = 0; k < sizeof lists / sizeof lists[0]; ++k) {
    clxent_ctx *ctx = NULL;
    const clxent_status st = clxent_create(&ctx, lists[k]);
    if (st != CLXENT_ERR_INVALID_ARG) fail_msg("device \"%s\": %s", lists[k], clxent_status_str(st));
    assert_error_mentions(NULL, "twice");
    assert_null(ctx);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_smaller_struct_layouts),
      cmocka_unit_test(test_larger_struct_layouts),
      cmocka_unit_test(test_config_in_code),
      cmocka_unit_test_setup_teardown(test_strict_environment, no_clxent_variables, env_restore),
      cmocka_unit_test(test_device_twice),
      cmocka_unit_test_setup_teardown(test_own_math, no_own_math_variable, env_restore),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
