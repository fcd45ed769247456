/* The bias gradient's first step fused into the softmax kernel (softmax_xent_hard_bias; launch.c:
 * clxent_bias_fused) gives the bits of column_partial's pass over the stored gradient: loss,
 * gradient, lse, argmax and bias_grad of every storage type, on shapes around the 64-row chunks
 * and the kernel's paths (several chunks in a row, the local-memory cache and the gradient row
 * as cache, softcap's u-and-e cache, the weights' and smoothing's loops, rows that write no
 * cached values: ignored, bad-free NaN and -inf rows), in place and not, in one block and in
 * blocks that cut the chunks (a small block_bytes: the partial sums continued by the next block),
 * and with the gradient streamed around the caches ($CLXENT_STREAM_GRAD=1, float32 on x86 CPUs).
 * $CLXENT_FUSED_BIAS=1 fuses wherever the kernel can, =0 never (the reference). The bias is also
 * checked against the float64 sum of the stored gradient, so that both agreeing on a wrong value
 * fails too. Row-per-item variant only: the group variant has no fused kernel. */
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
/* around 64-row chunks; c past the short rows (64, with softcap 32), off the vector widths, several 4096-value
 * chunks per row (1 row fewer than a chunk's rows too), rows whose u alone fits the scratch with
 * softcap (40003), rows held together (c ≥ 16384 with e in the scratch, ≥ 28672 in the gradient
 * row: kernels/softmax_xent.cl) of which the scratch holds 4, 2 (70001 with PoCL's 1 MiB of local
 * memory) or 1 (140001; with 512 KiB none: float32 caches in the gradient row, 16-bit computes
 * again and adds the row after it), and short-row shapes (never fused; 40 only without softcap) */
static const shape shapes[] = {{1, 65},     {63, 72},    {64, 100},  {65, 1001}, {130, 4099}, {200, 300},
                               {67, 16400}, {3, 7 * 4096 + 3}, {66, 40003}, {70, 70001}, {3, 140001}, {129, 12}, {65, 40}};

/* smoothing+grad_output NONE: rows whose upstream gradient is +0, -0 or negative (B = ±0 or < 0)
 * among the others, held together */
enum { PLAIN, WEIGHTED_SMOOTHING, SOFTCAP, SOFTCAP_SMOOTHING, ZLOSS_UPSTREAM_NONE, IN_PLACE, LSE_ARGMAX, WEIGHTS,
       SMOOTHING_UPSTREAM_NONE, OPTION_SETS };
static const char *const option_names[OPTION_SETS] = {"plain",   "weights+smoothing", "softcap", "softcap+weights+smoothing",
                                                      "z-loss+grad_output NONE", "in place", "lse+argmax", "weights",
                                                      "smoothing+grad_output NONE"};

typedef support_outputs outputs;


/* One call, its outputs poisoned first (support_poisoned_call). */
static void call(clxent_ctx *ctx, const shape *s, clxent_dtype t, int set, const void *logits, const int32_t *labels,
                 const float *w, const float *up, outputs *o) {
  const int upstream = set == ZLOSS_UPSTREAM_NONE || set == SMOOTHING_UPSTREAM_NONE;
  const clxent_reduction r = upstream ? CLXENT_NONE : CLXENT_MEAN;
  const int smoothing = set == WEIGHTED_SMOOTHING || set == SOFTCAP_SMOOTHING || set == SMOOTHING_UPSTREAM_NONE;
  const int weights = set == WEIGHTED_SMOOTHING || set == SOFTCAP_SMOOTHING || set == WEIGHTS;
  clxent_opts opts = support_opts(r, weights ? w : NULL, smoothing, set == ZLOSS_UPSTREAM_NONE,
                                  set == SOFTCAP || set == SOFTCAP_SMOOTHING, upstream, up, 0);
  opts.ignore_index = -100;
  clxent_ex x = clxent_ex_default();
  x.dtype = t, x.bias_grad = o->bias;
  if (set == LSE_ARGMAX) x.lse = o->lse, x.argmax = o->argmax;
  char what[128];
  snprintf(what, sizeof what, "%zux%zu dtype %d %s", s->n, s->c, (int)t, option_names[set]);
  support_poisoned_call(ctx, s->n, s->c, logits, labels, &opts, &x, o, set == IN_PLACE, what);
}

static void assert_same(const void *got, const void *want, size_t bytes, const char *what, const shape *s, clxent_dtype t,
                        int set, const char *how) {
  char context[256];
  snprintf(context, sizeof context, "%s, %zux%zu dtype %d %s: %s against the unfused call's", how, s->n, s->c, (int)t,
           option_names[set], what);
  assert_same_bytes(got, want, bytes, context);
}

static void test_fused_bias_gives_column_partial_bits(void **state) {
  (void)state;
  /* the environment is read when a context is made */
  env_set("CLXENT_FUSED_BIAS", "0");
  clxent_ctx *unfused = support_create(NULL, NULL, NULL);
  env_set("CLXENT_FUSED_BIAS", "1");
  clxent_ctx *fused = support_create(NULL, NULL, NULL);
  clxent_tuning small = CLXENT_TUNING_INIT;
  small.block_bytes = 288 * 1024; /* one row of c = 70001 (140001's go without: one row past a block is
                                     * refused); 73 of c = 1001: the chunks cut */
  clxent_ctx *blocked = support_create(NULL, &small, NULL);
  /* and with the gradient streamed around the caches wherever the kernel can (float32 on an x86
   * CPU: rows held together whose alignments differ, or agree at c = 16400) */
  env_set("CLXENT_STREAM_GRAD", "1");
  clxent_ctx *streamed = support_create(NULL, NULL, NULL);
  env_set("CLXENT_STREAM_GRAD", NULL);
  env_set("CLXENT_FUSED_BIAS", NULL);
  clxent_ctx *automatic = support_create(NULL, NULL, NULL); /* fuses where the chunks fill the device */

  size_t most = 0, most_n = 0, most_c = 0, past_block = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; ++k) {
    if (shapes[k].n * shapes[k].c > most) most = shapes[k].n * shapes[k].c;
    if (shapes[k].n > most_n) most_n = shapes[k].n;
    if (shapes[k].c > most_c) most_c = shapes[k].c;
    if (shapes[k].c * sizeof(float) > small.block_bytes) ++past_block;
  }
  void *logits = xmalloc(most * 4);
  int32_t *labels = xmalloc(most_n * sizeof(int32_t));
  float *w = xmalloc(most_c * sizeof(float)), *up = xmalloc(most_n * sizeof(float));
  outputs o[2];
  for (int k = 0; k < 2; ++k)
    o[k] = (outputs){.grad = xmalloc(most * 4), .loss = xmalloc(most_n * sizeof(float)),
                     .lse = xmalloc(most_n * sizeof(float)), .bias = xmalloc(most_c * sizeof(float)),
                     .argmax = xmalloc(most_n * sizeof(int32_t))};
  rng_seed(11);
  int compared = 0;
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; ++k) {
    const shape *s = &shapes[k];
    const size_t n = s->n, c = s->c;
    for (size_t j = 0; j < c; ++j) w[j] = (float)rng_uniform(0.25, 2.0);
    for (size_t i = 0; i < n; ++i) up[i] = i % 5 == 2 ? 0.0f : i % 7 == 3 ? -0.0f : (float)rng_uniform(-1.0, 1.0);
    for (int t = CLXENT_FLOAT32; t <= CLXENT_BFLOAT16; ++t) {
      const clxent_dtype dtype = (clxent_dtype)t;
      const size_t esize = dtype == CLXENT_FLOAT32 ? 4 : 2;
      for (size_t i = 0; i < n; ++i) {
        labels[i] = (int32_t)rng_below((uint32_t)c);
        for (size_t j = 0; j < c; ++j) store_dtype(logits, i * c + j, dtype, (float)rng_uniform(-4.0, 4.0));
      }
      support_special_rows(logits, labels, n, c, dtype); /* ignored, masked with +1e4, NaN */
      for (int set = 0; set < OPTION_SETS; ++set) {
        call(unfused, s, dtype, set, logits, labels, w, up, &o[0]);
        clxent_ctx *const others[] = {fused, blocked, automatic, streamed};
        const char *const how[] = {"fused", "fused in small blocks", "automatic", "fused and streamed"};
        for (int v = 0; v < 4; ++v) {
          if (others[v] == blocked && c * sizeof(float) > small.block_bytes) continue; /* a row past a block */
          call(others[v], s, dtype, set, logits, labels, w, up, &o[1]);
          const size_t losses = set == ZLOSS_UPSTREAM_NONE || set == SMOOTHING_UPSTREAM_NONE ? n : 1;
          assert_same(o[1].grad, o[0].grad, n * c * esize, "gradient", s, dtype, set, how[v]);
          assert_same(o[1].loss, o[0].loss, losses * sizeof(float), "loss", s, dtype, set, how[v]);
          assert_same(o[1].bias, o[0].bias, c * sizeof(float), "bias_grad", s, dtype, set, how[v]);
          if (set == LSE_ARGMAX) {
            assert_same(o[1].lse, o[0].lse, n * sizeof(float), "lse", s, dtype, set, how[v]);
            assert_same(o[1].argmax, o[0].argmax, n * sizeof(int32_t), "argmax", s, dtype, set, how[v]);
          }
          ++compared;
        }
        /* and the value itself: Σ_i of the stored gradient in float64 (NaN where a NaN row is) */
        double *sum = xmalloc(c * sizeof(double));
        double gmax = 0;
        for (size_t j = 0; j < c; ++j) {
          double acc = 0;
          for (size_t i = 0; i < n; ++i) {
            const double g = load_dtype(o[0].grad, i * c + j, dtype);
            acc += g;
            if (fabs(g) > gmax) gmax = fabs(g);
          }
          sum[j] = acc;
        }
        assert_close(o[0].bias, sum, c, 1e-6 * (double)n * gmax, 1e-5, "bias_grad against the float64 sum");
        free(sum);
      }
    }
  }
  assert_int_equal(compared, (int)((sizeof shapes / sizeof shapes[0]) * 4 - past_block) * 3 * OPTION_SETS);
  for (int k = 0; k < 2; ++k) free(o[k].grad), free(o[k].loss), free(o[k].lse), free(o[k].bias), free(o[k].argmax);
  free(logits), free(labels), free(w), free(up);
  clxent_destroy(unfused), clxent_destroy(fused), clxent_destroy(blocked), clxent_destroy(automatic), clxent_destroy(streamed);
}

static int save_env(void **state) {
  (void)state;
  static const env_setting list[] = {{"CLXENT_FUSED_BIAS", NULL}, {"CLXENT_STREAM_GRAD", NULL}, {NULL, NULL}};
  return env_override(list);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fused_bias_gives_column_partial_bits, save_env, env_restore)};
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
