/* The gradient's store paths against the ordinary one, bit for bit: loss, gradient, lse and argmax,
 * on rows whose gradient starts at every alignment (c off the vector widths, and the arrays
 * themselves one element off a vector's boundary, so that each row has a head and a tail stored
 * one value at a time), rows of several chunks whose max grows (the scratch's segments), a row
 * whose gradient is all subnormal (e^{z-m} of -88 to -92), and the option sets below, with
 * ignored, NaN and masked rows among them. Every call goes to the kernels ($CLXENT_DIRECT_MAX=0:
 * no host direct path for small float32 calls). The outputs are poisoned before each call, so a
 * value a path skipped differs.
 *
 * - Streamed stores (launch.c, kernels/softmax_xent.cl's stream_scaled: non-temporal stores on an
 *   x86 CPU), every storage type: $CLXENT_STREAM_GRAD=0 never streams (the reference), =1 wherever
 *   the kernel can, whatever the size; unset, only gradients larger than the device's cache, which
 *   these are not. The options whose loops stream (plain, weights, label smoothing without
 *   weights, the upstream gradient per row, also with weights and a -0 weight on a masked class:
 *   the sign of the zero it makes) or do not (weights with smoothing, softcap, in place). float16
 *   is never streamed (launch.c says why): its calls check that the setting leaves it alone.
 * - bfloat16 narrowed by the CPU's vcvtneps2bf16 (kernels/common.cl, CLXENT_HAS_CVT_BF16; the host
 *   asks for it where its CPU has AVX-512 BF16) against the bit operations ($CLXENT_BF16_CVT=0):
 *   the instruction flushes a subnormal to zero, which the kernels must catch (the subnormal row).
 *
 * Where the device is not an x86 CPU, or the CPU lacks the instruction, the two contexts run the
 * same code and agree trivially. */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "support.h"

typedef struct shape {
  size_t n, c;
} shape;
/* c past the short rows (64), off every vector width and row alignment; several 4096-value chunks
 * a row; a row past half the scratch (70001) */
static const shape shapes[] = {{3, 65},  {17, 1000},       {9, 1001}, {5, 1536}, {6, 4099},
                               {7, 4133}, {3, 7 * 4096 + 3}, {2, 32000}, {2, 70001}};

enum { PLAIN, WEIGHTS, SMOOTHING, WEIGHTED_SMOOTHING, SOFTCAP, ZLOSS_UPSTREAM_NONE, WEIGHTS_UPSTREAM_NONE, IN_PLACE,
       LSE_ARGMAX, OPTION_SETS };
static const char *const option_names[OPTION_SETS] = {
    "plain", "weights", "smoothing", "weights+smoothing", "softcap", "z-loss+grad_output NONE", "weights+grad_output NONE",
    "in place", "lse+argmax"};

typedef struct outputs {
  unsigned char *grad_base; /* the gradient starts one element past it: rows off the vector boundary */
  support_outputs at;
} outputs;

/* One call, its outputs poisoned first (support_poisoned_call). */
static void call(clxent_ctx *ctx, const shape *s, clxent_dtype t, int set, const void *logits, const int32_t *labels,
                 const float *w, const float *up, outputs *o) {
  const int per_row = set == ZLOSS_UPSTREAM_NONE || set == WEIGHTS_UPSTREAM_NONE;
  const clxent_reduction r = per_row ? CLXENT_NONE : CLXENT_MEAN;
  const int weighted = set == WEIGHTS || set == WEIGHTED_SMOOTHING || set == WEIGHTS_UPSTREAM_NONE;
  const int smoothing = set == SMOOTHING || set == WEIGHTED_SMOOTHING;
  clxent_opts opts = support_opts(r, weighted ? w : NULL, smoothing, set == ZLOSS_UPSTREAM_NONE, set == SOFTCAP,
                                  per_row, up, 0);
  opts.ignore_index = -100;
  clxent_ex x = clxent_ex_default();
  x.dtype = t;
  if (set == LSE_ARGMAX) x.lse = o->at.lse, x.argmax = o->at.argmax;
  o->at.grad = o->grad_base + (t == CLXENT_FLOAT32 ? 4 : 2);
  char what[128];
  snprintf(what, sizeof what, "%zux%zu dtype %d %s", s->n, s->c, (int)t, option_names[set]);
  support_poisoned_call(ctx, s->n, s->c, logits, labels, &opts, &x, &o->at, set == IN_PLACE, what);
}

static void assert_same(const void *got, const void *want, size_t bytes, const char *what, const shape *s, clxent_dtype t,
                        int set) {
  char context[256];
  snprintf(context, sizeof context, "%zux%zu dtype %d %s: the other path's %s against the ordinary one's", s->n,
           s->c, (int)t, option_names[set], what);
  assert_same_bytes(got, want, bytes, context);
}

/* The calls of every shape, storage type in [first, last] and option set on both contexts, compared. */
static void compare_paths(clxent_ctx *plain, clxent_ctx *other, clxent_dtype first, clxent_dtype last) {

  size_t most = 0, most_n = 0, most_c = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; ++k) {
    if (shapes[k].n * shapes[k].c > most) most = shapes[k].n * shapes[k].c;
    if (shapes[k].n > most_n) most_n = shapes[k].n;
    if (shapes[k].c > most_c) most_c = shapes[k].c;
  }
  /* the logits one element past an allocation's start too */
  unsigned char *logits_base = xmalloc((most + 1) * 4);
  int32_t *labels = xmalloc(most_n * sizeof(int32_t));
  float *w = xmalloc(most_c * sizeof(float)), *up = xmalloc(most_n * sizeof(float));
  outputs o[2];
  for (int k = 0; k < 2; ++k)
    o[k] = (outputs){.grad_base = xmalloc((most + 1) * 4),
                     .at = {.loss = xmalloc(most_n * sizeof(float)), .lse = xmalloc(most_n * sizeof(float)),
                            .argmax = xmalloc(most_n * sizeof(int32_t))}};
  rng_seed(23);
  int compared = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; ++k) {
    const shape *s = &shapes[k];
    const size_t n = s->n, c = s->c;
    for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.25, 2.0);
    w[c - 1] = -0.0f; /* a valid weight: where e = 0 and the row's upstream gradient is negative, the
                       * tail's -B·w makes the zero's sign (the ordinary loops' bits) */
    for (size_t i = 0; i < n; ++i) up[i] = (float)rng_uniform(-1.0, 1.0);
    if (n > 1) up[1] = -0.5f; /* row 1 (its masked tail) with a negative upstream gradient */
    for (int t = (int)first; t <= (int)last; ++t) {
      const clxent_dtype dtype = (clxent_dtype)t;
      const size_t esize = dtype == CLXENT_FLOAT32 ? 4 : 2;
      void *logits = logits_base + esize;
      for (size_t i = 0; i < n; ++i) {
        labels[i] = (int32_t)rng_below((uint32_t)c);
        /* row 0 rises along the row: its max grows chunk after chunk (the scratch's segments) */
        for (size_t j = 0; j < c; ++j)
          store_dtype(logits, i * c + j, dtype, (float)rng_uniform(-4.0, 4.0) + (i == 0 ? 8.0f * (float)j / (float)c : 0.0f));
      }
      support_special_rows(logits, labels, n, c, dtype); /* ignored, masked with +1e4, NaN */
      if (n > 1) store_dtype(logits, 1 * c + c - 1, dtype, -INFINITY), store_dtype(logits, 1 * c + c - 2, dtype, -INFINITY);
      /* the last row's gradient subnormal but for its max: e^{z-m} from e^-88 to e^-92 (2^-127 to
       * 2^-133), a - y with its label at the max; scaled by 1/n, weights and the upstream gradient,
       * the largest stay nonzero in bfloat16 (whose smallest subnormal is 2^-133) */
      const size_t sub = n - 1; /* unless it is one of support_special_rows' */
      if (n > 3 && sub != 3 && sub != 5 && sub != n / 2) {
        for (size_t j = 0; j < c; ++j)
          store_dtype(logits, sub * c + j, dtype, j == 0 ? 0.0f : -88.0f - 4.0f * (float)j / (float)c);
        labels[sub] = 0;
      }
      for (int set = 0; set < OPTION_SETS; ++set) {
        call(plain, s, dtype, set, logits, labels, w, up, &o[0]);
        call(other, s, dtype, set, logits, labels, w, up, &o[1]);
        const size_t losses = set == ZLOSS_UPSTREAM_NONE || set == WEIGHTS_UPSTREAM_NONE ? n : 1;
        assert_same(o[1].at.grad, o[0].at.grad, n * c * esize, "gradient", s, dtype, set);
        assert_same(o[1].at.loss, o[0].at.loss, losses * sizeof(float), "loss", s, dtype, set);
        if (set == LSE_ARGMAX) {
          assert_same(o[1].at.lse, o[0].at.lse, n * sizeof(float), "lse", s, dtype, set);
          assert_same(o[1].at.argmax, o[0].at.argmax, n * sizeof(int32_t), "argmax", s, dtype, set);
        }
        ++compared;
      }
    }
  }
  assert_int_equal(compared, (int)(sizeof shapes / sizeof shapes[0]) * ((int)last - (int)first + 1) * OPTION_SETS);
  for (int k = 0; k < 2; ++k) free(o[k].grad_base), free(o[k].at.loss), free(o[k].at.lse), free(o[k].at.argmax);
  free(logits_base), free(labels), free(w), free(up);
}

/* $name=ref against $name=alt (NULL: unset), the storage types in [first, last] */
static void compare_setting(const char *name, const char *ref, const char *alt, clxent_dtype first, clxent_dtype last) {
  /* the environment is read when a context is made */
  env_set("CLXENT_DIRECT_MAX", "0"); /* small float32 calls to the kernels, not the host's direct path */
  env_set(name, ref);
  clxent_ctx *plain = support_create(NULL, NULL, NULL);
  env_set(name, alt);
  clxent_ctx *other = support_create(NULL, NULL, NULL);
  env_set(name, NULL);
  if (strcmp(name, "CLXENT_BF16_CVT") == 0) { /* say which paths met: the instruction needs an AVX-512 BF16 host */
    clxent_info info[2] = {CLXENT_INFO_INIT, CLXENT_INFO_INIT};
    ASSERT_OK(plain, clxent_get_info(plain, 0, &info[0]));
    ASSERT_OK(other, clxent_get_info(other, 0, &info[1]));
    assert_int_equal(info[0].bf16_cvt, 0); /* =0 turns it off */
    print_message("bfloat16 rounding: %s\n", info[1].bf16_cvt ? "vcvtneps2bf16 against the bit operations"
                                                                  : "the bit operations on both sides (no AVX-512 BF16 CPU device)");
  }
  compare_paths(plain, other, first, last);
  clxent_destroy(plain), clxent_destroy(other);
}

static void test_streamed_gradient_gives_the_same_bits(void **state) {
  (void)state;
  compare_setting("CLXENT_STREAM_GRAD", "0", "1", CLXENT_FLOAT32, CLXENT_BFLOAT16);
}

static void test_bf16_narrowing_instruction_gives_the_same_bits(void **state) {
  (void)state;
  /* both store paths of bfloat16 with the instruction: ordinary and streamed stores */
  compare_setting("CLXENT_BF16_CVT", "0", NULL, CLXENT_BFLOAT16, CLXENT_BFLOAT16);
  env_set("CLXENT_STREAM_GRAD", "1");
  compare_setting("CLXENT_BF16_CVT", "0", NULL, CLXENT_BFLOAT16, CLXENT_BFLOAT16);
}

/* clxent_info.bf16_cvt says what the kernels were built with, not what the host asked for: with 8
 * lanes (CLXENT_VEC=8) the host still asks, and kernels/common.cl's gate (16 lanes) refuses, as a
 * compiler outside its gates would; the same host then reports the bit operations */
static void test_bf16_instruction_reported_as_built(void **state) {
  (void)state;
  clxent_ctx *sixteen = support_create(NULL, NULL, NULL);
  env_set("CLXENT_VEC", "8");
  clxent_ctx *eight = support_create(NULL, NULL, NULL);
  clxent_info info[2] = {CLXENT_INFO_INIT, CLXENT_INFO_INIT};
  ASSERT_OK(sixteen, clxent_get_info(sixteen, 0, &info[0]));
  ASSERT_OK(eight, clxent_get_info(eight, 0, &info[1]));
  print_message("bfloat16 rounding as built: %s with %u lanes, %s with %u\n",
                info[0].bf16_cvt ? "the instruction" : "the bit operations", info[0].vector_width,
                info[1].bf16_cvt ? "the instruction" : "the bit operations", info[1].vector_width);
  if (info[1].vector_width != 16) assert_int_equal(info[1].bf16_cvt, 0);
  clxent_destroy(sixteen), clxent_destroy(eight);
}

static int save_env(void **state) {
  (void)state;
  static const env_setting list[] = {
      {"CLXENT_STREAM_GRAD", NULL}, {"CLXENT_BF16_CVT", NULL}, {"CLXENT_DIRECT_MAX", NULL}, {"CLXENT_VEC", NULL}, {NULL, NULL}};
  return env_override(list);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_streamed_gradient_gives_the_same_bits, save_env, env_restore),
      cmocka_unit_test_setup_teardown(test_bf16_narrowing_instruction_gives_the_same_bits, save_env, env_restore),
      cmocka_unit_test_setup_teardown(test_bf16_instruction_reported_as_built, save_env, env_restore)};
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
