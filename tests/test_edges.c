/* Numerical edges of documented claims (issue 13 §5):
 *   - sigmoid_xent at infinite logits follows the limits (z = +inf, y = 1 and z = -inf, y = 0 give
 *     0; the opposite pairs +inf), and pos_weight all ones gives exactly what no pos_weight gives;
 *   - equal class weights of any positive size (subnormal to near FLT_MAX) give the unweighted
 *     answer under MEAN, where 1/Σ w once overflowed into a NaN gradient;
 *   - a zero MEAN divisor follows the README's (PyTorch's) rule on the device-resident path too;
 *   - the binary losses give a value the same bits whether a kernel's vector lane or its scalar
 *     remainder computes it (kernels/binary.cl), edges included. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "clxent_cl.h"
#include "support.h"

static void test_sigmoid_at_infinity(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { K = 8 };
  const float z[K] = {INFINITY, -INFINITY, INFINITY, -INFINITY, INFINITY, -INFINITY, 3.0f, -2.0f};
  const float y[K] = {1, 0, 0, 1, 0.25f, 0.75f, 1, 0};
  const float want_loss[K] = {0, 0, INFINITY, INFINITY, INFINITY, INFINITY, NAN, NAN}; /* last two: finite */
  const float want_grad[K] = {0, 0, 1, -1, 0.75f, -0.75f, NAN, NAN};
  float loss[K], grad[K], loss1[K], grad1[K];
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  poison(loss, K), poison(grad, K);
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, K, z, y, &o, loss, grad));
  for (int k = 0; k < 6; ++k) {
    if (!(loss[k] == want_loss[k])) fail_msg("z = %g, y = %g: loss %g, want %g", (double)z[k], (double)y[k],
                                             (double)loss[k], (double)want_loss[k]);
    if (!(grad[k] == want_grad[k])) fail_msg("z = %g, y = %g: grad %g, want %g", (double)z[k], (double)y[k],
                                             (double)grad[k], (double)want_grad[k]);
  }
  assert_true(isfinite(loss[6]) && isfinite(loss[7]));
  /* pos_weight all ones: the same bits, at infinity and elsewhere */
  const float ones[1] = {1.0f};
  o.pos_weight = ones;
  poison(loss1, K), poison(grad1, K);
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, K, z, y, &o, loss1, grad1));
  assert_memory_equal(loss1, loss, sizeof loss);
  assert_memory_equal(grad1, grad, sizeof grad);
  /* the batch: MEAN of [0, 0] is 0, not NaN */
  o = clxent_opts_default();
  float mean;
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, 2, z, y, &o, &mean, NULL));
  assert_true(mean == 0.0f);
  /* and a random batch: pos_weight all ones gives the bits of none */
  enum { N = 1000 };
  static float zr[N], yr[N], l0[N], g0[N], l1[N], g1[N];
  rng_seed(9);
  fill_uniform(zr, N, -30, 30), fill_uniform(yr, N, 0, 1);
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, N, zr, yr, &o, l0, g0));
  o.pos_weight = ones;
  ASSERT_OK(ctx, clxent_sigmoid_xent(ctx, N, zr, yr, &o, l1, g1));
  assert_memory_equal(l0, l1, sizeof l0);
  assert_memory_equal(g0, g1, sizeof g0);
}

/* kernels/binary.cl: a work-item's CLXENT_VEC values as one vector, the launch's remainder one by
 * one with the same operations. Each value of a 16·5 + 7 batch (vector lanes for all but the last
 * up to 15) against the same value alone (the scalar path): the same loss and gradient bits (NaN
 * for NaN), for
 * both functions, with pos_weight, at the edges (±inf, NaN, ±0, subnormal, ±1e4, the log1p
 * split near 1 + x = √2) and on random values. */
/* the same bits, or both NaN (a NaN's payload is left open by IEEE 754: which operand's an
 * instruction keeps may differ between a vector and a scalar instruction) */
static int same_bits(float a, float b) { return !memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b)); }
static void test_binary_lanes_and_tail(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { K = 16 * 5 + 7 };
  static const float edges[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 0x1p-140f, -0x1p-140f, 1e4f, -1e4f,
                                0.881373f, -0.881373f, 87.5f, -87.5f, 104.0f, 30.0f, -30.0f};
  float z[K], p[K], y[K], w[K], loss[K], grad[K];
  rng_seed(21);
  fill_uniform(z, K, -12, 12), fill_uniform(p, K, 0, 1), fill_uniform(w, K, 0.25f, 4);
  for (int k = 0; k < K; ++k) y[k] = k % 3 == 0 ? 0.0f : k % 3 == 1 ? 1.0f : 0.3f;
  for (size_t k = 0; k < sizeof edges / sizeof edges[0]; ++k) z[3 * k] = edges[k]; /* every lane position */
  static const float p_edges[] = {0.0f, 1.0f, 0x1p-130f, 1e-30f, 0.5f, 0x1.fffffep-1f, 0.2928932f, 0.7071068f};
  for (size_t k = 0; k < sizeof p_edges / sizeof p_edges[0]; ++k) p[5 * k + 1] = p_edges[k], p[K - 1 - k] = p_edges[k];
  p[3] = 0.0f; /* with y = 0 */
  for (int fn = 0; fn < 2; ++fn)
    for (int weighted = 0; weighted < 2; ++weighted) {
      clxent_opts o = clxent_opts_default();
      o.reduction = CLXENT_NONE;
      o.pos_weight = weighted ? w : NULL;
      const float *in = fn ? p : z;
      poison(loss, K), poison(grad, K);
      ASSERT_OK(ctx, fn ? clxent_bce_ex(ctx, 1, K, in, y, &o, NULL, loss, grad)
                        : clxent_sigmoid_xent_ex(ctx, 1, K, in, y, &o, NULL, loss, grad));
      if (fn) /* a = 0, y = 0: ln(1 - a) is -0, and the loss +0, as PyTorch's */
        for (int k = 0; k < K; ++k)
          if (in[k] == 0.0f && y[k] == 0.0f && (loss[k] != 0.0f || signbit(loss[k])))
            fail_msg("bce, value %d: a = 0, y = 0 gives loss %a, want +0", k, (double)loss[k]);
      for (int k = 0; k < K; ++k) {
        float l1, g1;
        o.pos_weight = weighted ? &w[k] : NULL;
        ASSERT_OK(ctx, fn ? clxent_bce_ex(ctx, 1, 1, &in[k], &y[k], &o, NULL, &l1, &g1)
                          : clxent_sigmoid_xent_ex(ctx, 1, 1, &in[k], &y[k], &o, NULL, &l1, &g1));
        if (!same_bits(l1, loss[k]) || !same_bits(g1, grad[k]))
          fail_msg("%s, value %d (%a, y %g%s): batch loss %a grad %a, alone %a %a", fn ? "bce" : "sigmoid", k,
                   (double)in[k], (double)y[k], weighted ? ", weighted" : "", (double)loss[k], (double)grad[k],
                   (double)l1, (double)g1);
      }
    }
}

static void test_equal_weights_of_any_size(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  enum { N = 12, C = 40 };
  float z[N * C], want_g[N * C], g[N * C], want, loss, w[C];
  int32_t y[N];
  rng_seed(4);
  fill_uniform(z, N * C, -5, 5);
  for (int i = 0; i < N; ++i) y[i] = (int32_t)rng_below(C - 1); /* class C-1 never a label */
  y[3] = -100; /* an ignored row too */
  clxent_opts o = clxent_opts_default();
  for (int smoothing = 0; smoothing < 2; ++smoothing) {
    o.class_weight = NULL, o.label_smoothing = smoothing ? 0.1f : 0.0f;
    ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, z, y, &o, &want, want_g));
    /* powers of two, down into the subnormals: the same bits; others: the same values */
    const float sizes[] = {0x1p-140f, 0x1p-126f, 0x1p-60f, 0x1p100f, 1e-41f, 1e-38f, 3e-20f, 7.0f, 1e30f, 3e38f, FLT_MAX};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; ++k) {
      for (int j = 0; j < C; ++j) w[j] = sizes[k];
      o.class_weight = w;
      poison(&loss, 1), poison(g, N * C);
      ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, z, y, &o, &loss, g));
      const int exact = frexpf(sizes[k], &(int){0}) == 0.5f;
      for (int e = 0; e < N * C; ++e)
        if (exact ? g[e] != want_g[e] : !(fabsf(g[e] - want_g[e]) <= 1e-6f * fabsf(want_g[e]) + 1e-9f))
          fail_msg("weights %g, smoothing %d: grad[%d] = %g, unweighted %g", (double)sizes[k], smoothing, e,
                   (double)g[e], (double)want_g[e]);
      if (exact ? loss != want : !(fabsf(loss - want) <= 1e-6f * want))
        fail_msg("weights %g, smoothing %d: loss %.9g, unweighted %.9g", (double)sizes[k], smoothing, (double)loss,
                 (double)want);
    }
  }
  /* every labelled class weighs 1e-40 and an unlabelled one 1: Σ w_y is subnormal (scaling by the
   * largest weight would not help), and without smoothing the rows' equal weights cancel */
  for (int j = 0; j < C; ++j) w[j] = 1e-40f;
  w[C - 1] = 1.0f;
  o.label_smoothing = 0.0f, o.class_weight = NULL;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, z, y, &o, &want, want_g));
  o.class_weight = w;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, N, C, z, y, &o, &loss, g));
  assert_true(fabsf(loss - want) <= 1e-5f * want);
  for (int e = 0; e < N * C; ++e)
    if (!(fabsf(g[e] - want_g[e]) <= 1e-5f * fabsf(want_g[e]) + 1e-9f))
      fail_msg("tiny labelled weights: grad[%d] = %g, unweighted %g", e, (double)g[e], (double)want_g[e]);
}

/* The zero-divisor rule on buffers: label_stats finds it on the device. */
static void test_zero_divisor_on_buffers(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  cl_command_queue queue = clxent_queue(ctx);
  if (!queue) skip();
  cl_context context;
  assert_int_equal(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, NULL), CL_SUCCESS);
  const float z[12] = {1, 2, 3, -1, 0, 1, 4, 4, 4, 0.5f, -2, 3}, w[3] = {0, 1, 2};
  const int32_t y[4] = {0, 0, -100, 0};
  cl_int err;
  cl_mem zb = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof z, (void *)z, &err);
  cl_mem yb = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof y, (void *)y, &err);
  cl_mem gb = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof z, NULL, &err);
  cl_mem lb = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof(float), NULL, &err);
  clxent_opts o = clxent_opts_default();
  o.class_weight = w;
  for (int smoothing = 0; smoothing < 2; ++smoothing) {
    o.label_smoothing = smoothing ? 0.2f : 0.0f;
    float loss, grad[12];
    ASSERT_OK(ctx, clxent_softmax_xent_mem(ctx, 4, 3, zb, yb, &o, NULL, lb, gb, 0, NULL, NULL));
    assert_int_equal(clEnqueueReadBuffer(queue, lb, CL_TRUE, 0, sizeof loss, &loss, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(queue, gb, CL_TRUE, 0, sizeof grad, grad, 0, NULL, NULL), CL_SUCCESS);
    assert_true(isnan(loss));
    for (int k = 0; k < 12; ++k) assert_true(k / 3 == 2 ? grad[k] == 0.0f : isnan(grad[k]));
  }
  clReleaseMemObject(zb), clReleaseMemObject(yb), clReleaseMemObject(gb), clReleaseMemObject(lb);
}

/* label_stats counted in float sums of ones, which stop counting at 2^24: 2^24 + 1 bad labels
 * were reported as 2^24. */
static void test_label_counts_past_2_24(void **state) {
  clxent_ctx *ctx = test_ctx(state);
  cl_command_queue queue = clxent_queue(ctx);
  if (!queue) skip();
  cl_context context;
  assert_int_equal(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof context, &context, NULL), CL_SUCCESS);
  const size_t n = ((size_t)1 << 24) + 1;
  const cl_int bad_label = 5;
  cl_int err;
  cl_mem zb = clCreateBuffer(context, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  cl_mem yb = clCreateBuffer(context, CL_MEM_READ_WRITE, n * sizeof(cl_int), NULL, &err);
  cl_mem lb = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof(float), NULL, &err);
  cl_mem bb = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &err);
  const float zero = 0.0f;
  assert_int_equal(clEnqueueFillBuffer(queue, zb, &zero, sizeof zero, 0, n * sizeof(float), 0, NULL, NULL), CL_SUCCESS);
  assert_int_equal(clEnqueueFillBuffer(queue, yb, &bad_label, sizeof bad_label, 0, n * sizeof(cl_int), 0, NULL, NULL),
                   CL_SUCCESS);
  clxent_mem_ex x = clxent_mem_ex_default();
  x.bad_labels = bb;
  ASSERT_OK(ctx, clxent_softmax_xent_mem(ctx, n, 1, zb, yb, NULL, &x, lb, NULL, 0, NULL, NULL));
  cl_uint bad = 0;
  assert_int_equal(clEnqueueReadBuffer(queue, bb, CL_TRUE, 0, sizeof bad, &bad, 0, NULL, NULL), CL_SUCCESS);
  assert_int_equal(bad, n);
  clReleaseMemObject(zb), clReleaseMemObject(yb), clReleaseMemObject(lb), clReleaseMemObject(bb);
}

int main(void) {
  if (!support_device_present()) return SUPPORT_SKIP;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigmoid_at_infinity),
      cmocka_unit_test(test_binary_lanes_and_tail),
      cmocka_unit_test(test_equal_weights_of_any_size),
      cmocka_unit_test(test_zero_divisor_on_buffers),
      cmocka_unit_test(test_label_counts_past_2_24),
  };
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
