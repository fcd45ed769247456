/* Offload of host arrays: the pipelined transfers (double-buffered blocks, pinned staging) and the
 * caller's pinned memory give the bits of the in-place path; a context over two devices gives the
 * bits of one device, whatever the split; and every misuse of either is a clear error.
 *
 * The two devices are PoCL's: main() asks for two (POCL_DEVICES="pthread pthread") unless the
 * environment already says otherwise. */
#define _POSIX_C_SOURCE 200809L /* setenv (POCL_DEVICES, in main) */
#define CL_TARGET_OPENCL_VERSION 120
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning, clxent_device_count, clxent_device_share */
#include <CL/cl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent_cl.h"
#include "support.h"

/* ---------------------------------------------------------------- one batch through every loss */

typedef struct inputs {
  size_t n, c;
  float *logits, *targets, *probs, *binary, *weights, *pos_weight, *p, *q;
  int32_t *labels;
} inputs;

typedef void *(*alloc_fn)(clxent_ctx *, size_t);
static void *plain_alloc(clxent_ctx *ctx, size_t bytes) { return (void)ctx, xmalloc(bytes); }
static void *pinned_alloc(clxent_ctx *ctx, size_t bytes) {
  void *p = clxent_host_alloc(ctx, bytes);
  if (!p) fail_msg("clxent_host_alloc(%zu): %s", bytes, clxent_last_error(ctx));
  if ((uintptr_t)p % 128) fail_msg("clxent_host_alloc returned %p, not 128-byte aligned", p);
  return p;
}
static void plain_free(clxent_ctx *ctx, void *p) { (void)ctx, free(p); }
static void pinned_free(clxent_ctx *ctx, void *p) { ASSERT_OK(ctx, clxent_host_free(ctx, p)); }

static float *copy_of(clxent_ctx *ctx, alloc_fn alloc, const void *src, size_t bytes) {
  float *p = alloc(ctx, bytes);
  memcpy(p, src, bytes);
  return p;
}

static inputs make_inputs(size_t n, size_t c, uint64_t seed) {
  inputs in = {n, c, xmalloc(n * c * 4), xmalloc(n * c * 4), xmalloc(n * c * 4), xmalloc(n * c * 4),
               xmalloc(c * 4), xmalloc(c * 4), xmalloc(n * c * 4), xmalloc(n * c * 4), xmalloc(n * 4)};
  rng_seed(seed);
  fill_uniform(in.logits, n * c, -12, 12);
  fill_distribution_rows(in.targets, n, c, 0.3);
  fill_uniform(in.probs, n * c, 0, 1);
  for (size_t k = 0; k < n * c; ++k) in.binary[k] = rng_uniform(0, 1) < 0.4 ? 1.0f : 0.0f;
  fill_uniform(in.weights, c, 0.25, 3);
  fill_uniform(in.pos_weight, c, 0.5, 2);
  fill_distribution_rows(in.p, n, c, 0.2);
  fill_distribution_rows(in.q, n, c, 0.0);
  for (size_t i = 0; i < n; ++i) in.labels[i] = i % 11 == 5 ? -100 : (int32_t)rng_below((uint32_t)c);
  return in;
}

static void free_inputs(inputs *in) {
  free(in->logits), free(in->targets), free(in->probs), free(in->binary), free(in->weights), free(in->pos_weight);
  free(in->p), free(in->q), free(in->labels);
}

/* Everything the calls write, end to end: the size of one result set. */
static size_t result_floats(size_t n, size_t c) { return 5 + 4 * n + 2 * c + 6 * n * c; }

/* Every loss with every output, into out[result_floats]; the host arrays come from `alloc`
 * (ordinary or pinned memory of ctx). Outputs start poisoned so an unwritten one differs. */
static void run_all(clxent_ctx *ctx, const inputs *in, alloc_fn alloc, void (*release)(clxent_ctx *, void *),
                    float *result) {
  const size_t n = in->n, c = in->c, nc = n * c, total = result_floats(n, c);
  float *out = alloc(ctx, total * sizeof(float)), *at = out;
  float *logits = copy_of(ctx, alloc, in->logits, nc * 4), *targets = copy_of(ctx, alloc, in->targets, nc * 4);
  float *probs = copy_of(ctx, alloc, in->probs, nc * 4), *binary = copy_of(ctx, alloc, in->binary, nc * 4);
  float *p = copy_of(ctx, alloc, in->p, nc * 4), *q = copy_of(ctx, alloc, in->q, nc * 4);
  int32_t *labels = (int32_t *)copy_of(ctx, alloc, in->labels, n * 4);
  poison(out, total);

  /* hard labels, every option and output: loss, grad, lse, bias gradient */
  clxent_opts o = clxent_opts_default();
  o.class_weight = in->weights, o.label_smoothing = 0.05f, o.z_loss = 1e-4f;
  clxent_ex ex = clxent_ex_default();
  float *loss = at++, *grad = at;
  ex.lse = at += nc, ex.bias_grad = at += n;
  at += c;
  ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, logits, labels, &o, &ex, loss, grad));
  /* per-row losses only */
  o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, logits, labels, &o, at, NULL));
  at += n;
  /* in place: the gradient overwrites a copy of the logits */
  float *in_place = at + 1;
  memcpy(in_place, logits, nc * 4);
  o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, in_place, labels, &o, at, in_place));
  at += 1 + nc;
  /* soft targets */
  ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, n, c, logits, targets, NULL, at, at + 1));
  at += 1 + nc;
  /* sigmoid: MEAN with pos_weight and the bias gradient, then NONE */
  o = clxent_opts_default();
  o.pos_weight = in->pos_weight;
  ex = clxent_ex_default();
  ex.bias_grad = at + 1 + nc;
  ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, n, c, logits, binary, &o, &ex, at, at + 1));
  at += 1 + nc + c;
  o.reduction = CLXENT_NONE;
  ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, n, c, logits, binary, &o, NULL, at, NULL));
  at += nc;
  /* bce, summed */
  o = clxent_opts_default();
  o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_bce_ex(ctx, n, c, probs, binary, &o, NULL, at, at + 1));
  at += 1 + nc;
  /* information */
  ASSERT_OK(ctx, clxent_kl_div(ctx, n, c, p, q, at));
  at += n;
  ASSERT_OK(ctx, clxent_entropy(ctx, n, c, p, at));
  at += n;
  if ((size_t)(at - out) != total) fail_msg("result layout: %zu floats written of %zu", (size_t)(at - out), total);
  memcpy(result, out, total * sizeof(float));
  release(ctx, out), release(ctx, logits), release(ctx, targets), release(ctx, probs), release(ctx, binary);
  release(ctx, p), release(ctx, q), release(ctx, labels);
}

/* Bit-for-bit equality, naming the first difference. */
static void assert_same_bits(const float *expected, const float *got, size_t k, const char *what) {
  for (size_t i = 0; i < k; ++i)
    if (memcmp(&expected[i], &got[i], sizeof(float)))
      fail_msg("%s: element %zu of %zu is %.9g, expected %.9g (bit for bit)", what, i, k, (double)got[i],
               (double)expected[i]);
}

static const size_t shapes[][2] = {{1, 1}, {2, 2}, {63, 7}, {64, 5}, {65, 1}, {200, 33}, {1000, 129}, {131, 2053}};
enum { SHAPES = sizeof shapes / sizeof shapes[0] };

/* The reference results: the suite's own context (in CTest: zero-copy or pipelined by variant),
 * checked for unwritten outputs and its per-row losses against the float64 reference. */
static float *reference(clxent_ctx *ctx, const inputs *in) {
  const size_t total = result_floats(in->n, in->c);
  float *r = xmalloc(total * sizeof(float));
  run_all(ctx, in, plain_alloc, plain_free, r);
  for (size_t k = 0; k < total; ++k)
    if (isnan(r[k])) fail_msg("n = %zu, c = %zu: result %zu is NaN (unwritten?)", in->n, in->c, k);
  /* the per-row losses (after loss, grad, lse and bias) against the float64 reference */
  double *rows = xmalloc(in->n * sizeof(double));
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  ref_out ref = {.rows = rows};
  ref_softmax_xent(in->n, in->c, in->logits, in->labels, &o, &ref);
  assert_close(r + 1 + in->n * in->c + in->n + in->c, rows, in->n, 1e-5, 1e-5, "per-row losses vs float64");
  free(rows);
  return r;
}

/* The contexts under test are configured in code (support_create); what a tuning leaves unset
 * comes from the run (in CTest its variant). */

/* Through device buffers in blocks of block_bytes, whatever the CTest run's zero-copy. */
static clxent_ctx *pipelined(uint64_t block_bytes) {
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.zero_copy = CLXENT_OFF, t.block_bytes = block_bytes;
  return support_create(NULL, &t, NULL);
}

/* On the devices of `pair`, with fixed shares (split: count values) or, split NULL, measured ones;
 * blocks capped at block_bytes (0: the device's). */
static clxent_ctx *on_pair(const char *pair, const double *split, size_t count, uint64_t block_bytes) {
  clxent_tuning t = CLXENT_TUNING_INIT;
  t.split = split, t.split_count = count, t.block_bytes = block_bytes;
  return support_create(pair, &t, NULL);
}

/* ---------------------------------------------------------------- the pipelined host path */

/* Blocks of 1, 3 and 64 rows (one to hundreds of blocks, odd counts, a short last block) through
 * both sets of device buffers give the bits of the suite's context. */
static void test_pipeline_bits_match_any_block_size(void **state) {
  for (int s = 0; s < SHAPES; ++s) {
    inputs in = make_inputs(shapes[s][0], shapes[s][1], 100 + (uint64_t)s);
    float *expected = reference(test_ctx(state), &in), *got = xmalloc(result_floats(in.n, in.c) * sizeof(float));
    static const size_t block_rows[] = {1, 3, 64};
    for (int b = 0; b < 3; ++b) {
      char what[96];
      clxent_ctx *piped = pipelined(block_rows[b] * in.c * sizeof(float));
      run_all(piped, &in, plain_alloc, plain_free, got);
      snprintf(what, sizeof what, "n = %zu, c = %zu, pipelined in blocks of %zu rows", in.n, in.c, block_rows[b]);
      assert_same_bits(expected, got, result_floats(in.n, in.c), what);
      clxent_destroy(piped);
    }
    free(expected), free(got), free_inputs(&in);
  }
}

/* Arrays in clxent_host_alloc memory are transferred directly (no staging copy): same bits, with
 * every array pinned and with the outputs alone in ordinary memory. */
static void test_pinned_caller_memory(void **state) {
  inputs in = make_inputs(1000, 129, 7);
  const size_t total = result_floats(in.n, in.c);
  float *expected = reference(test_ctx(state), &in), *got = xmalloc(total * sizeof(float));
  clxent_ctx *piped = pipelined(100 * in.c * sizeof(float)); /* 10 blocks */
  run_all(piped, &in, pinned_alloc, pinned_free, got);
  assert_same_bits(expected, got, total, "every array pinned");
  /* pinned inputs, ordinary outputs */
  float *logits = pinned_alloc(piped, in.n * in.c * 4), *grad = xmalloc(in.n * in.c * 4), loss;
  memcpy(logits, in.logits, in.n * in.c * 4);
  poison(grad, in.n * in.c);
  clxent_opts o = clxent_opts_default();
  o.class_weight = in.weights, o.label_smoothing = 0.05f, o.z_loss = 1e-4f;
  ASSERT_OK(piped, clxent_softmax_xent(piped, in.n, in.c, logits, in.labels, &o, &loss, grad));
  assert_same_bits(expected, &loss, 1, "pinned logits: loss");
  assert_same_bits(expected + 1, grad, in.n * in.c, "pinned logits: gradient");
  /* a view inside a pinned allocation is pinned too */
  ASSERT_OK(piped, clxent_softmax_xent(piped, in.n - 500, in.c, logits + 500 * in.c, in.labels + 500, &o, &loss, grad));
  ASSERT_OK(piped, clxent_host_free(piped, logits));
  /* misuse */
  assert_int_equal(clxent_host_free(piped, grad), CLXENT_ERR_INVALID_ARG);
  assert_non_null(strstr(clxent_last_error(piped), "did not come from clxent_host_alloc"));
  assert_int_equal(clxent_host_free(piped, logits), CLXENT_ERR_INVALID_ARG); /* freed twice */
  assert_int_equal(clxent_host_free(piped, NULL), CLXENT_OK);
  assert_null(clxent_host_alloc(piped, 0));
  assert_non_null(strstr(clxent_last_error(piped), "bytes is 0"));
  assert_null(clxent_host_alloc(NULL, 16));
  assert_int_equal(clxent_host_free(NULL, grad), CLXENT_ERR_INVALID_ARG);
  /* left for clxent_destroy to free */
  assert_non_null(pinned_alloc(piped, 1 << 20));
  clxent_destroy(piped);
  free(expected), free(got), free(grad), free_inputs(&in);
}

/* ---------------------------------------------------------------- several devices */

/* "P:D,P:E": two devices of the same name on one platform (PoCL with POCL_DEVICES); skips the
 * test where there are none. */
static void device_pair(char *out, size_t size) {
  cl_platform_id platforms[16];
  cl_uint np = 0;
  if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS) np = 0;
  for (cl_uint p = 0; p < np && p < 16; ++p) {
    cl_device_id devices[8];
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 8, devices, &nd) != CL_SUCCESS) continue;
    for (cl_uint a = 0; a < nd && a < 8; ++a)
      for (cl_uint b = a + 1; b < nd && b < 8; ++b) {
        char na[256] = "", nb[256] = "";
        clGetDeviceInfo(devices[a], CL_DEVICE_NAME, sizeof na, na, NULL);
        clGetDeviceInfo(devices[b], CL_DEVICE_NAME, sizeof nb, nb, NULL);
        if (!strcmp(na, nb)) {
          snprintf(out, size, "%u:%u,%u:%u", p, a, p, b);
          return;
        }
      }
  }
  print_message("no platform has two devices of one kind (POCL_DEVICES=\"%s\"): skipped\n",
                getenv("POCL_DEVICES") ? getenv("POCL_DEVICES") : "");
  skip();
}

/* The one-device context the pair's results are compared with: its first device, with the run's
 * settings. Not the suite's context, which is on whatever device the run names (CLXENT_DEVICE=gpu
 * on a GPU machine, whose bits differ from PoCL's). */
static clxent_ctx *first_of_pair(const char *pair) {
  char first[64];
  snprintf(first, sizeof first, "%.*s", (int)(strchr(pair, ',') - pair), pair);
  return support_create(first, NULL, NULL);
}

/* Split by measured speed, the two devices give the bits of one, for every loss and shape. */
static void test_two_devices_give_the_bits_of_one(void **state) {
  char pair[64];
  device_pair(pair, sizeof pair);
  clxent_ctx *group = on_pair(pair, NULL, 0, 0);
  assert_int_equal(clxent_device_count(group), 2);
  const double s0 = clxent_device_share(group, 0), s1 = clxent_device_share(group, 1);
  if (!(s0 > 0 && s1 > 0 && fabs(s0 + s1 - 1) < 1e-12)) fail_msg("shares %g + %g", s0, s1);
  assert_true(clxent_device_share(group, 2) == 0.0);
  assert_non_null(strstr(clxent_device_name(group), " + "));
  (void)state;
  clxent_ctx *one = first_of_pair(pair);
  for (int s = 0; s < SHAPES; ++s) {
    inputs in = make_inputs(shapes[s][0], shapes[s][1], 200 + (uint64_t)s);
    float *expected = reference(one, &in), *got = xmalloc(result_floats(in.n, in.c) * sizeof(float));
    char what[96];
    run_all(group, &in, plain_alloc, plain_free, got);
    snprintf(what, sizeof what, "n = %zu, c = %zu on %s", in.n, in.c, pair);
    assert_same_bits(expected, got, result_floats(in.n, in.c), what);
    free(expected), free(got), free_inputs(&in);
  }
  /* the calls refined the shares from their timings: still a split of the whole batch */
  const double r0 = clxent_device_share(group, 0), r1 = clxent_device_share(group, 1);
  if (!(r0 > 0 && r1 > 0 && fabs(r0 + r1 - 1) < 1e-12)) fail_msg("shares after the calls %g + %g", r0, r1);
  clxent_destroy(group);
  clxent_destroy(one);
}

/* Fixed shares, lopsided ones included (a device with no rows for a small batch), and pinned
 * memory from the group: still the same bits. */
/* The strided layout (ex->inner = S) over two devices: splits fall on whole samples (multiples of
 * lcm(64, S) rows) and give the bits of one device, hard labels and dense targets, with lse and the
 * bias gradient, S = 3 (lcm 192 rows) and S = 100 (lcm 1600 rows: 40 samples, more than one). */
static void test_inner_split_gives_the_bits_of_one(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const double splits[][2] = {{1, 1}, {1, 3}, {3, 1}};
  static const size_t cases[][3] = {{300, 21, 3}, {41, 5, 100}}; /* n, c, S */
  for (size_t sh = 0; sh < 2; ++sh) {
    const size_t n = cases[sh][0], c = cases[sh][1], S = cases[sh][2], rows = n * S, nc = rows * c;
    float *z = xmalloc(nc * sizeof(float)), *t = xmalloc(nc * sizeof(float));
    int32_t *labels = xmalloc(rows * sizeof(int32_t));
    rng_seed(40 + sh);
    fill_uniform(z, nc, -9, 9);
    fill_uniform(t, nc, 0, 1);
    for (size_t r = 0; r < rows; ++r) labels[r] = r % 11 == 0 ? -100 : (int32_t)rng_below((uint32_t)c);
    /* per call: the NONE losses, lse, gradient, bias gradient, then the MEAN loss */
    const size_t per = rows + rows + nc + c + 1;
    float *want = xmalloc(2 * per * sizeof(float)), *got = xmalloc(2 * per * sizeof(float));
    for (int s = -1; s < 3; ++s) {
      clxent_ctx *ctx = s < 0 ? first_of_pair(pair) : on_pair(pair, splits[s], 2, 0);
      float *out = s < 0 ? want : got;
      for (int soft = 0; soft <= 1; ++soft) {
        float *o = out + (size_t)soft * per;
        clxent_opts opts = clxent_opts_default();
        clxent_ex ex = clxent_ex_default();
        ex.inner = S, ex.lse = o + rows, ex.bias_grad = o + 2 * rows + nc;
        opts.reduction = CLXENT_NONE, opts.label_smoothing = 0.1f;
        poison(o, per);
        if (soft) ASSERT_OK(ctx, clxent_softmax_xent_soft_ex(ctx, n, c, z, t, &opts, &ex, o, o + 2 * rows));
        else ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &opts, &ex, o, o + 2 * rows));
        opts.reduction = CLXENT_MEAN, ex.lse = NULL, ex.bias_grad = NULL;
        if (soft) ASSERT_OK(ctx, clxent_softmax_xent_soft_ex(ctx, n, c, z, t, &opts, &ex, o + per - 1, NULL));
        else ASSERT_OK(ctx, clxent_softmax_xent_ex(ctx, n, c, z, labels, &opts, &ex, o + per - 1, NULL));
      }
      if (s >= 0) {
        char what[96];
        snprintf(what, sizeof what, "inner %zu, split %g:%g", S, splits[s][0], splits[s][1]);
        assert_same_bits(want, got, 2 * per, what);
      }
      clxent_destroy(ctx);
    }
    free(z), free(t), free(labels), free(want), free(got);
  }
}

static void test_any_split_gives_the_same_bits(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const double splits[][2] = {{1, 3}, {5, 1}, {1, 100000}, {100000, 1}};
  inputs in = make_inputs(1000, 129, 9), small = make_inputs(63, 40, 10);
  clxent_ctx *one = first_of_pair(pair);
  float *expected = reference(one, &in), *expected_small = reference(one, &small);
  clxent_destroy(one);
  float *got = xmalloc(result_floats(in.n, in.c) * sizeof(float));
  for (int s = 0; s < 4; ++s) {
    clxent_ctx *group = on_pair(pair, splits[s], 2, 0);
    char what[96];
    run_all(group, &in, plain_alloc, plain_free, got);
    snprintf(what, sizeof what, "split %g:%g", splits[s][0], splits[s][1]);
    assert_same_bits(expected, got, result_floats(in.n, in.c), what);
    run_all(group, &small, s == 0 ? pinned_alloc : plain_alloc, s == 0 ? pinned_free : plain_free, got);
    snprintf(what, sizeof what, "split %g:%g, 63 rows%s", splits[s][0], splits[s][1], s == 0 ? ", pinned" : "");
    assert_same_bits(expected_small, got, result_floats(small.n, small.c), what);
    if (s == 0 && clxent_device_share(group, 0) != 0.25) /* fixed shares do not follow the timings */
      fail_msg("split 1:3: share 0 is %.17g after the calls, not 0.25", clxent_device_share(group, 0));
    clxent_destroy(group);
  }
  free(expected), free(expected_small), free(got), free_inputs(&in), free_inputs(&small);
}

/* ex->argmax and ex->correct over two devices (the pair: PoCL's two), at an even split and a
 * lopsided one, with n off the 64-row split points: each member writes its rows' argmax at its
 * offset; the count covers the batch. Against the reference and the one-device context. */
static void test_argmax_over_two_devices(void **state) {
  const size_t n = 203, c = 4099;
  float *z = xmalloc(n * c * sizeof(float)), *loss = xmalloc(n * sizeof(float));
  int32_t *labels = xmalloc(n * sizeof(int32_t)), *want = xmalloc(n * sizeof(int32_t));
  int32_t *one = xmalloc(n * sizeof(int32_t)), *got = xmalloc(n * sizeof(int32_t));
  rng_seed(1503);
  fill_uniform(z, n * c, -5, 5);
  z[70 * c + 4098] = NAN, z[70 * c + 3] = 9;       /* NaN after the max, in the second member's rows */
  z[130 * c + 5] = z[130 * c + 4097] = 7;          /* a tie across chunks */
  for (size_t j = 0; j < c; ++j) z[200 * c + j] = -INFINITY; /* all -inf: 0 */
  ref_argmax(n, c, z, want);
  for (size_t i = 0; i < n; ++i) labels[i] = i % 4 == 0 ? -100 : i % 2 ? want[i] : (int32_t)rng_below((uint32_t)c);
  const uint64_t expected = ref_correct(n, want, labels, -100);
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  clxent_ex ex = clxent_ex_default();
  uint64_t correct = 0;
  ex.argmax = one, ex.correct = &correct;
  ASSERT_OK(test_ctx(state), clxent_softmax_xent_ex(test_ctx(state), n, c, z, labels, &o, &ex, loss, NULL));
  assert_memory_equal(one, want, n * sizeof(int32_t));
  assert_int_equal(correct, expected);
  static const double splits[][2] = {{1, 1}, {1, 5}};
  char pair[64];
  device_pair(pair, sizeof pair); /* not "all": on a GPU machine that is the GPU and PoCL's two */
  for (int s = 0; s < 2; ++s) {
    clxent_ctx *group = on_pair(pair, splits[s], 2, 0);
    for (size_t i = 0; i < n; ++i) got[i] = -7;
    correct = 0;
    ex.argmax = got;
    ASSERT_OK(group, clxent_softmax_xent_ex(group, n, c, z, labels, &o, &ex, loss, NULL));
    assert_memory_equal(got, want, n * sizeof(int32_t));
    assert_int_equal(correct, expected);
    ex.argmax = NULL, correct = 0; /* correct alone: the split call's own scratch */
    ASSERT_OK(group, clxent_softmax_xent_ex(group, n, c, z, labels, &o, &ex, loss, NULL));
    assert_int_equal(correct, expected);
    ex.argmax = one;
    clxent_destroy(group);
  }
  free(z), free(loss), free(labels), free(want), free(one), free(got);
}

/* clxent_create_ex(device, config) must fail with `want`, ctx set to NULL, the message naming
 * `message`; `how` says what was wrong, for the failure's message. */
/* The upstream gradient and the MEAN denominator split by rows: each device's stretch of the
 * per-value g (softmax rows, binary values) and the batch's D give the bits of one device. */
static void upstream_calls(clxent_ctx *ctx, const inputs *in, const float *g, float *out) {
  const size_t n = in->n, c = in->c, nc = n * c;
  const float g_one = 0.75f;
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE, o.grad_output = g, o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
  poison(out, 6 * nc + 2 * n + 3);
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, in->logits, in->labels, &o, out, out + n));
  out += n + nc;
  ASSERT_OK(ctx, clxent_softmax_xent_soft(ctx, n, c, in->logits, in->targets, &o, out, out + n));
  out += n + nc;
  o = clxent_opts_default(), o.reduction = CLXENT_NONE, o.grad_output = g, o.pos_weight = in->pos_weight;
  ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, n, c, in->logits, in->binary, &o, NULL, out, out + nc));
  out += 2 * nc;
  o = clxent_opts_default(), o.grad_output = &g_one, o.mean_denominator = 1234.5, o.class_weight = in->weights;
  o.z_loss = 1e-3f;
  ASSERT_OK(ctx, clxent_softmax_xent(ctx, n, c, in->logits, in->labels, &o, out, out + 1));
  out += 1 + nc;
  o = clxent_opts_default(), o.mean_denominator = 3;
  ASSERT_OK(ctx, clxent_bce_ex(ctx, n, c, in->probs, in->binary, &o, NULL, out, out + 1));
  out += 1 + nc;
  o = clxent_opts_default(), o.grad_output = &g_one, o.reduction = CLXENT_SUM;
  ASSERT_OK(ctx, clxent_sigmoid_xent_ex(ctx, n, c, in->logits, in->binary, &o, NULL, out, NULL));
}

static void test_upstream_split_gives_the_same_bits(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const double splits[][2] = {{1, 1}, {1, 3}, {100000, 1}};
  static const size_t ushapes[][2] = {{65, 1}, {200, 33}, {131, 2053}};
  for (int s = 0; s < 3; ++s) {
    clxent_ctx *group = on_pair(pair, splits[s], 2, 0);
    inputs in = make_inputs(ushapes[s][0], ushapes[s][1], 300 + (uint64_t)s);
    const size_t nc = in.n * in.c, total = 6 * nc + 2 * in.n + 3;
    float *g = xmalloc(nc * sizeof(float)), *expected = xmalloc(total * sizeof(float)), *got = xmalloc(total * sizeof(float));
    fill_uniform(g, nc, -2, 2);
    clxent_ctx *one = first_of_pair(pair);
    upstream_calls(one, &in, g, expected);
    clxent_destroy(one);
    upstream_calls(group, &in, g, got);
    char what[96];
    snprintf(what, sizeof what, "n = %zu, c = %zu, split %g:%g with grad_output and mean_denominator", in.n, in.c,
             splits[s][0], splits[s][1]);
    assert_same_bits(expected, got, total, what);
    free(g), free(expected), free(got), free_inputs(&in);
    clxent_destroy(group);
  }
}

static void expect_create_failure(const char *device, const clxent_config *config, const char *how,
                                  clxent_status want, const char *message) {
  clxent_ctx *ctx = (clxent_ctx *)&ctx; /* must be reset to NULL */
  const clxent_status st = clxent_create_ex(&ctx, device, config);
  if (st != want || ctx != NULL || !strstr(clxent_last_error(NULL), message))
    fail_msg("clxent_create_ex(\"%s\")%s%s: %s: \"%s\"; expected %s and \"%s\"", device, how ? " with " : "",
             how ? how : "", clxent_status_str(st), clxent_last_error(NULL), clxent_status_str(want), message);
}

static void test_device_list_errors(void **state) {
  (void)state;
  char pair[64], twice[64];
  device_pair(pair, sizeof pair);
  snprintf(twice, sizeof twice, "%.*s,%.*s", (int)(strchr(pair, ',') - pair), pair, (int)(strchr(pair, ',') - pair), pair);
  expect_create_failure(twice, NULL, NULL, CLXENT_ERR_INVALID_ARG, "twice");
  expect_create_failure("cpu,no-such-device", NULL, NULL, CLXENT_ERR_NO_DEVICE, "device 1 (\"no-such-device\")");
  expect_create_failure("cpu,,cpu", NULL, NULL, CLXENT_ERR_INVALID_ARG, "entry 1 of the list is empty");
  assert_int_equal(clxent_device_count(NULL), 0);
}

/* Shares given in code: one per device, each positive and finite. */
static void test_split_errors_in_code(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const struct {
    double w[3];
    size_t count;
  } bad[] = {{{1}, 1}, {{0, 1}, 2}, {{1, 2, 3}, 3}, {{-1, 1}, 2}, {{NAN, 1}, 2}, {{1, INFINITY}, 2}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
    clxent_tuning t = CLXENT_TUNING_INIT;
    t.split = bad[k].w, t.split_count = bad[k].count;
    clxent_config cfg = clxent_config_default();
    cfg.tuning = &t;
    char how[64];
    snprintf(how, sizeof how, "split {%g, %g, %g} count %zu", bad[k].w[0], bad[k].w[1], bad[k].w[2], bad[k].count);
    expect_create_failure(pair, &cfg, how, CLXENT_ERR_INVALID_ARG, "config->tuning->split");
  }
}

/* $CLXENT_SPLIT, the variable itself: every malformed form is refused, naming it. */
static int no_split_variable(void **state) {
  (void)state;
  static const env_setting env[] = {{"CLXENT_SPLIT", NULL}, {NULL, NULL}};
  return env_override(env);
}
static void test_split_errors_in_environment(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const char *const bad_splits[] = {"1", "1,x", "0,1", "1,2,3", "-1,1", "nan,1", "1,"};
  for (int s = 0; s < 7; ++s) {
    char how[64];
    snprintf(how, sizeof how, "CLXENT_SPLIT=%s", bad_splits[s]);
    env_set("CLXENT_SPLIT", bad_splits[s]);
    expect_create_failure(pair, NULL, how, CLXENT_ERR_INVALID_ARG, "CLXENT_SPLIT");
  }
}

/* A failure on a member names the device and its rows; the _mem entries need one device. */
static void test_group_call_errors(void **state) {
  (void)state;
  char pair[64];
  device_pair(pair, sizeof pair);
  static const double even[2] = {1, 1};
  clxent_ctx *group = on_pair(pair, even, 2, 256); /* 64 floats a block */
  inputs in = make_inputs(200, 100, 11);
  float loss = NAN;
  assert_int_equal(clxent_softmax_xent(group, 200, 100, in.logits, in.labels, NULL, &loss, NULL), CLXENT_ERR_OUT_OF_MEMORY);
  assert_non_null(strstr(clxent_last_error(group), "device 0 ("));
  assert_non_null(strstr(clxent_last_error(group), "rows [0, 128)"));
  assert_true(isnan(loss));
  /* rows that fit: the context still works */
  for (size_t i = 0; i < 200; ++i)
    if (in.labels[i] >= 0) in.labels[i] %= 50;
  ASSERT_OK(group, clxent_softmax_xent(group, 200, 50, in.logits, in.labels, NULL, &loss, NULL));
  assert_false(isnan(loss));
  /* validation happens once, on the group: a bad label names its row */
  in.labels[150] = 50;
  assert_int_equal(clxent_softmax_xent(group, 200, 50, in.logits, in.labels, NULL, &loss, NULL), CLXENT_ERR_LABEL_RANGE);
  assert_non_null(strstr(clxent_last_error(group), "labels[150]"));
  assert_int_equal(clxent_softmax_xent_mem(group, 1, 1, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL),
                   CLXENT_ERR_INVALID_ARG);
  assert_non_null(strstr(clxent_last_error(group), "spans 2 devices"));
  clxent_destroy(group);
  free_inputs(&in);
}

int main(void) {
  setenv("POCL_DEVICES", "pthread pthread", 0); /* before the first OpenCL call; kept if set */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipeline_bits_match_any_block_size),
      cmocka_unit_test(test_pinned_caller_memory),
      cmocka_unit_test(test_two_devices_give_the_bits_of_one),
      cmocka_unit_test(test_any_split_gives_the_same_bits),
      cmocka_unit_test(test_upstream_split_gives_the_same_bits),
      cmocka_unit_test(test_inner_split_gives_the_bits_of_one),
      cmocka_unit_test(test_argmax_over_two_devices),
      cmocka_unit_test(test_device_list_errors),
      cmocka_unit_test(test_split_errors_in_code),
      cmocka_unit_test_setup_teardown(test_split_errors_in_environment, no_split_variable, env_restore),
      cmocka_unit_test(test_group_call_errors),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, support_setup, support_teardown);
}
