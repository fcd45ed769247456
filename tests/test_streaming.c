/* Streaming under a small allocation cap (issue 13 §3): every loss × storage type × reduction ×
 * output combination streams through buffers far smaller than the batch, and gives the bits of the
 * suite's context, which takes the batch in one block. The 16-bit binary losses once failed here
 * with CLXENT_ERR_OUT_OF_MEMORY: their float per-value results were sized from the 16-bit block. */
#define CLXENT_EXPERIMENTAL_API
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum { N = 97, C = 300, CAP = 16384 }; /* a 16-bit batch is 58 KB, its float results 116 KB */

typedef enum { LOSS_HARD, LOSS_SOFT, LOSS_SIGMOID, LOSS_BCE, LOSS_KINDS } loss_kind;
typedef enum { OUT_LOSS, OUT_GRAD, OUT_IN_PLACE, OUT_EXTRAS, OUT_KINDS } output_kind;

static clxent_ctx *capped(void) {
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.block_bytes = CAP;
  clxent_config cfg = clxent_config_default();
  cfg.max_alloc = CAP, cfg.tuning = &t;
  clxent_ctx *ctx = NULL;
  ASSERT_OK(NULL, clxent_create_ex(&ctx, NULL, &cfg));
  return ctx;
}

/* Inputs of the storage type: logits in [-4, 4] (probabilities in (0, 1) for BCE), targets in [0, 1]. */
static void fill(void *x, size_t k, clxent_dtype t, double lo, double hi) {
  for (size_t i = 0; i < k; ++i) {
    const float v = (float)rng_uniform(lo, hi);
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (t == CLXENT_FLOAT32) ((float *)x)[i] = v;
    else if (t == CLXENT_BFLOAT16) ((uint16_t *)x)[i] = (uint16_t)(bits >> 16);
    else { /* float16 of a value in (-8, 8): rebias the exponent, truncate the mantissa; in
            * [2^-15, 2^-14) a float16 subnormal, below it a signed zero (from 2^-24 up, e - 112
            * once wrapped into an infinite or NaN input, whose NaN payload a vector lane and the
            * scalar path may carry differently: IEEE 754 leaves it open) */
      const uint32_t sign = bits >> 31, e = (bits >> 23) & 0xff, m = bits & 0x7fffff;
      ((uint16_t *)x)[i] = e < 112 ? (uint16_t)(sign << 15) : (uint16_t)(sign << 15 | (e - 112) << 10 | m >> 13);
    }
  }
}

static clxent_status run(clxent_ctx *ctx, loss_kind kind, clxent_dtype dtype, clxent_reduction r, output_kind out,
                         const void *in, const void *aux, const int32_t *labels, void *work, float *loss, float *lse,
                         float *bias) {
  clxent_opts o = clxent_opts_default();
  o.reduction = r;
  clxent_ex x = clxent_ex_default();
  x.dtype = dtype;
  const size_t bytes = (size_t)N * C * (dtype == CLXENT_FLOAT32 ? 4 : 2);
  void *grad = NULL;
  if (out == OUT_GRAD || out == OUT_EXTRAS) grad = work;
  if (out == OUT_IN_PLACE) memcpy(work, in, bytes), in = grad = work;
  if (out == OUT_EXTRAS) {
    x.bias_grad = bias;
    if (kind <= LOSS_SOFT) x.lse = lse;
  }
  switch (kind) {
    case LOSS_HARD: return clxent_softmax_xent_ex(ctx, N, C, in, labels, &o, &x, loss, grad);
    case LOSS_SOFT: return clxent_softmax_xent_soft_ex(ctx, N, C, in, aux, &o, &x, loss, grad);
    case LOSS_SIGMOID: return clxent_sigmoid_xent_ex(ctx, N, C, in, aux, &o, &x, loss, grad);
    default: return clxent_bce_ex(ctx, N, C, in, aux, &o, &x, loss, grad);
  }
}

static void test_every_combination_streams(void **state) {
  clxent_ctx *whole = test_ctx(state), *ctx = capped();
  const size_t values = (size_t)N * C;
  void *in = xmalloc(values * 4), *aux = xmalloc(values * 4), *work = xmalloc(values * 4), *want = xmalloc(values * 4);
  float *loss = xmalloc(values * sizeof(float)), *want_loss = xmalloc(values * sizeof(float));
  float lse[N], want_lse[N], bias[C], want_bias[C];
  int32_t labels[N];
  rng_seed(3);
  for (int i = 0; i < N; ++i) labels[i] = (int32_t)rng_below(C);
  int combinations = 0;
  for (int kind = 0; kind < LOSS_KINDS; ++kind)
    for (int t = CLXENT_FLOAT32; t <= CLXENT_BFLOAT16; ++t)
      for (int r = CLXENT_MEAN; r <= CLXENT_NONE; ++r)
        for (int out = 0; out < OUT_KINDS; ++out) {
          const clxent_dtype dtype = (clxent_dtype)t;
          const size_t bytes = values * (dtype == CLXENT_FLOAT32 ? 4 : 2);
          const size_t losses = r != CLXENT_NONE ? 1 : kind <= LOSS_SOFT ? N : values;
          if (kind == LOSS_BCE) fill(in, values, dtype, 0.01, 0.99);
          else fill(in, values, dtype, -4, 4);
          fill(aux, values, dtype, 0, 1);
          ASSERT_OK(whole, run(whole, (loss_kind)kind, dtype, (clxent_reduction)r, (output_kind)out, in, aux, labels,
                               want, want_loss, want_lse, want_bias));
          memset(work, 0xA5, values * 4);
          poison(loss, losses), poison(lse, N), poison(bias, C);
          const clxent_status st = run(ctx, (loss_kind)kind, dtype, (clxent_reduction)r, (output_kind)out, in, aux,
                                       labels, work, loss, lse, bias);
          if (st != CLXENT_OK)
            fail_msg("loss %d, dtype %d, reduction %d, output %d under a %d-byte cap: %s: %s", kind, t, r, out, CAP,
                     clxent_status_str(st), clxent_last_error(ctx));
          assert_memory_equal(loss, want_loss, losses * sizeof(float));
          if (out != OUT_LOSS) assert_memory_equal(work, want, bytes);
          if (out == OUT_EXTRAS) {
            assert_memory_equal(bias, want_bias, sizeof bias);
            if (kind <= LOSS_SOFT) assert_memory_equal(lse, want_lse, sizeof lse);
          }
          ++combinations;
        }
  assert_int_equal(combinations, 4 * 3 * 3 * 4);
  clxent_destroy(ctx);
  free(in), free(aux), free(work), free(want), free(loss), free(want_loss);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_combination_streams)};
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
