/* clxent_cl.h: a context on the caller's queue, every loss on device buffers, the wait list and
 * the done event, labels checked on the device, and the argument checks. The device-resident
 * results must agree with the host-pointer API's on the same data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
/* after cmocka (support.h) */
#include "clxent_cl.h"

typedef struct cl_env {
  cl_context context;
  cl_command_queue queue;
  clxent_ctx *ctx;  /* on env.queue */
  clxent_ctx *host; /* the host-pointer API on the same device, for the reference results */
} cl_env;

static cl_env env;

static int setup(void **state) {
  (void)state;
  cl_platform_id platform;
  cl_device_id device;
  cl_uint count = 0;
  cl_int err;
  if (clGetPlatformIDs(1, &platform, &count) != CL_SUCCESS || !count) return -1;
  if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, &count) != CL_SUCCESS || !count) return -1;
  env.context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  if (err != CL_SUCCESS) return -1;
  env.queue = clCreateCommandQueue(env.context, device, 0, &err);
  if (err != CL_SUCCESS) return -1;
  if (clxent_create_from_queue(&env.ctx, env.queue) != CLXENT_OK) {
    fprintf(stderr, "clxent_create_from_queue: %s\n", clxent_last_error(NULL));
    return -1;
  }
  if (clxent_create(&env.host, "0:0") != CLXENT_OK) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  clxent_destroy(env.ctx);
  clxent_destroy(env.host);
  clReleaseCommandQueue(env.queue); /* the clxent context retained and released its own reference */
  clReleaseContext(env.context);
  return 0;
}

static cl_mem upload(const void *data, size_t bytes) {
  cl_int err;
  cl_mem m = clCreateBuffer(env.context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, (void *)data, &err);
  if (err != CL_SUCCESS) fail_msg("clCreateBuffer: %d", err);
  return m;
}
static cl_mem device_buffer(size_t bytes) {
  cl_int err;
  cl_mem m = clCreateBuffer(env.context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS) fail_msg("clCreateBuffer: %d", err);
  float nan = NAN; /* poison: an unwritten element fails */
  clEnqueueFillBuffer(env.queue, m, &nan, sizeof nan, 0, bytes - bytes % sizeof nan, 0, NULL, NULL);
  return m;
}
static void download(cl_mem m, void *out, size_t bytes) {
  if (clEnqueueReadBuffer(env.queue, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL) != CL_SUCCESS) fail_msg("read");
}

static void test_context_on_the_callers_queue(void **state) {
  (void)state;
  assert_string_equal(clxent_device_name(env.ctx), clxent_device_name(env.host));
  clxent_ctx *other = (clxent_ctx *)&other;
  assert_int_equal(clxent_create_from_queue(&other, NULL), CLXENT_ERR_INVALID_ARG);
  assert_null(other);
  cl_device_id device;
  clGetCommandQueueInfo(env.queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
  cl_int err;
  cl_command_queue ooo = clCreateCommandQueue(env.context, device, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
  if (err == CL_SUCCESS) { /* a device that offers out-of-order queues */
    assert_int_equal(clxent_create_from_queue(&other, ooo), CLXENT_ERR_INVALID_ARG);
    assert_non_null(strstr(clxent_last_error(NULL), "out of order"));
    clReleaseCommandQueue(ooo);
  }
}

/* Hard labels with every option and output; the same numbers as the host API. */
static void test_hard_labels_match_host_api(void **state) {
  (void)state;
  enum { N = 301, C = 77 };
  float *z = xmalloc(N * C * sizeof(float)), w[C], loss_host, loss_dev, lse_h[N], lse_d[N], bias_h[C], bias_d[C];
  float *grad_h = xmalloc(N * C * sizeof(float)), *grad_d = xmalloc(N * C * sizeof(float));
  int32_t y[N];
  rng_seed(31);
  fill_uniform(z, N * C, -6, 6);
  for (int j = 0; j < C; ++j) w[j] = (float)rng_uniform(0.5, 2);
  for (int i = 0; i < N; ++i) y[i] = i % 13 == 0 ? -100 : (int32_t)rng_below(C);
  clxent_opts o = clxent_opts_default();
  o.class_weight = w, o.label_smoothing = 0.1f, o.z_loss = 1e-3f, o.softcap = 20.0f;
  clxent_ex hx = clxent_ex_default();
  hx.lse = lse_h, hx.bias_grad = bias_h;
  ASSERT_OK(env.host, clxent_softmax_xent_ex(env.host, N, C, z, y, &o, &hx, &loss_host, grad_h));

  cl_mem dz = upload(z, N * C * sizeof(float)), dy = upload(y, sizeof y), dloss = device_buffer(sizeof(float));
  cl_mem dgrad = device_buffer(N * C * sizeof(float)), dlse = device_buffer(sizeof lse_d);
  cl_mem dbias = device_buffer(sizeof bias_d), dbad = device_buffer(sizeof(cl_uint));
  clxent_mem_ex mx = clxent_mem_ex_default();
  mx.lse = dlse, mx.bias_grad = dbias, mx.bad_labels = dbad;
  cl_event done;
  ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, &mx, dloss, dgrad, 0, NULL, &done));
  assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
  clReleaseEvent(done);
  cl_uint bad = 99;
  download(dloss, &loss_dev, sizeof loss_dev), download(dgrad, grad_d, N * C * sizeof(float));
  download(dlse, lse_d, sizeof lse_d), download(dbias, bias_d, sizeof bias_d), download(dbad, &bad, sizeof bad);
  assert_int_equal(bad, 0);
  assert_float_equal(loss_dev, loss_host, 1e-6 * (1 + fabsf(loss_host)));
  for (int k = 0; k < N * C; ++k)
    if (!(fabsf(grad_d[k] - grad_h[k]) <= 1e-7f + 1e-5f * fabsf(grad_h[k]))) fail_msg("grad[%d] %g vs %g", k, grad_d[k], grad_h[k]);
  assert_memory_equal(lse_d, lse_h, sizeof lse_d);
  for (int j = 0; j < C; ++j) assert_float_equal(bias_d[j], bias_h[j], 1e-6);
  clReleaseMemObject(dz), clReleaseMemObject(dy), clReleaseMemObject(dloss), clReleaseMemObject(dgrad);
  clReleaseMemObject(dlse), clReleaseMemObject(dbias), clReleaseMemObject(dbad);
  free(z), free(grad_h), free(grad_d);
}

/* A label the host cannot see: NaN loss and gradient in its row, counted in bad_labels, left out
 * of the divisor; the batch loss is NaN. */
static void test_bad_labels_on_the_device(void **state) {
  (void)state;
  enum { N = 6, C = 4 };
  float z[N * C], rows[N], grad[N * C], mean;
  int32_t y[N] = {0, 1, 7, 2, -3, -100};
  fill_uniform(z, N * C, -2, 2);
  cl_mem dz = upload(z, sizeof z), dy = upload(y, sizeof y), drows = device_buffer(sizeof rows);
  cl_mem dgrad = device_buffer(sizeof grad), dmean = device_buffer(sizeof mean), dbad = device_buffer(sizeof(cl_uint));
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE;
  clxent_mem_ex mx = clxent_mem_ex_default();
  mx.bad_labels = dbad;
  ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, &mx, drows, dgrad, 0, NULL, NULL));
  o.reduction = CLXENT_MEAN;
  ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, NULL, dmean, NULL, 0, NULL, NULL));
  clFinish(env.queue);
  cl_uint bad = 0;
  download(drows, rows, sizeof rows), download(dgrad, grad, sizeof grad), download(dmean, &mean, sizeof mean);
  download(dbad, &bad, sizeof bad);
  assert_int_equal(bad, 2);
  for (int i = 0; i < N; ++i) {
    const int is_bad = i == 2 || i == 4;
    assert_true(is_bad ? isnan(rows[i]) : isfinite(rows[i]));
    for (int j = 0; j < C; ++j) assert_true(is_bad ? isnan(grad[i * C + j]) : isfinite(grad[i * C + j]));
  }
  assert_true(rows[5] == 0.0f); /* ignored */
  assert_true(isnan(mean));
  clReleaseMemObject(dz), clReleaseMemObject(dy), clReleaseMemObject(drows), clReleaseMemObject(dgrad);
  clReleaseMemObject(dmean), clReleaseMemObject(dbad);
}

/* Nothing runs before the wait list completes; the done event follows the work. */
static void test_wait_list_and_done_event(void **state) {
  (void)state;
  enum { N = 64, C = 50 };
  float z[N * C], loss = 0;
  int32_t y[N];
  fill_uniform(z, N * C, -3, 3);
  for (int i = 0; i < N; ++i) y[i] = i % C;
  cl_int err;
  cl_event gate = clCreateUserEvent(env.context, &err), done;
  assert_int_equal(err, CL_SUCCESS);
  cl_mem dz = upload(z, sizeof z), dy = upload(y, sizeof y), dloss = device_buffer(sizeof loss);
  ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, NULL, NULL, dloss, dz, 1, &gate, &done));
  cl_int status = CL_COMPLETE;
  clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
  assert_true(status != CL_COMPLETE); /* the call returned; its work waits for the gate */
  clSetUserEventStatus(gate, CL_COMPLETE);
  assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
  float ref_loss, grad[N * C];
  ASSERT_OK(env.host, clxent_softmax_xent(env.host, N, C, z, y, NULL, &ref_loss, NULL));
  download(dloss, &loss, sizeof loss), download(dz, grad, sizeof grad); /* in place */
  assert_float_equal(loss, ref_loss, 1e-6);
  assert_true(isfinite(grad[0]) && grad[0] != z[0]);
  clReleaseEvent(gate), clReleaseEvent(done);
  clReleaseMemObject(dz), clReleaseMemObject(dy), clReleaseMemObject(dloss);
}

/* Soft targets and both binary losses, bf16 storage for one of them, against the host API. */
static void test_other_losses_match_host_api(void **state) {
  (void)state;
  enum { N = 40, C = 9 };
  float z[N * C], t[N * C], p[N * C], pw[C], lh, ld, gh[N * C], gd[N * C];
  fill_uniform(z, N * C, -4, 4);
  fill_distribution_rows(t, N, C, 0.2);
  fill_uniform(p, N * C, 0.01, 0.99);
  for (int j = 0; j < C; ++j) pw[j] = 0.5f + (float)j / 4;
  cl_mem dz = upload(z, sizeof z), dt = upload(t, sizeof t), dp = upload(p, sizeof p);
  cl_mem dl = device_buffer(sizeof lh), dg = device_buffer(sizeof gd);
  clxent_opts o = clxent_opts_default();
  for (int which = 0; which < 3; ++which) {
    o = clxent_opts_default();
    if (which == 0) {
      o.label_smoothing = 0.2f;
      ASSERT_OK(env.host, clxent_softmax_xent_soft(env.host, N, C, z, t, &o, &lh, gh));
      ASSERT_OK(env.ctx, clxent_softmax_xent_soft_mem(env.ctx, N, C, dz, dt, &o, NULL, dl, dg, 0, NULL, NULL));
    } else if (which == 1) {
      o.pos_weight = pw, o.reduction = CLXENT_SUM;
      ASSERT_OK(env.host, clxent_sigmoid_xent_ex(env.host, N, C, z, t, &o, NULL, &lh, gh));
      ASSERT_OK(env.ctx, clxent_sigmoid_xent_mem(env.ctx, N, C, dz, dt, &o, NULL, dl, dg, 0, NULL, NULL));
    } else {
      ASSERT_OK(env.host, clxent_bce_ex(env.host, N, C, p, t, &o, NULL, &lh, gh));
      ASSERT_OK(env.ctx, clxent_bce_mem(env.ctx, N, C, dp, dt, &o, NULL, dl, dg, 0, NULL, NULL));
    }
    clFinish(env.queue);
    download(dl, &ld, sizeof ld), download(dg, gd, sizeof gd);
    assert_float_equal(ld, lh, 1e-5 * (1 + fabsf(lh)));
    for (int k = 0; k < N * C; ++k) assert_float_equal(gd[k], gh[k], 1e-6 * (1 + fabsf(gh[k])));
  }
  /* bf16 storage on the device */
  uint16_t zb[N * C], gb[N * C];
  for (int k = 0; k < N * C; ++k) {
    uint32_t bits;
    memcpy(&bits, &z[k], 4);
    zb[k] = (uint16_t)(bits >> 16);
  }
  cl_mem dzb = upload(zb, sizeof zb), dgb = device_buffer(sizeof gb);
  clxent_ex hx = clxent_ex_default();
  hx.dtype = CLXENT_BFLOAT16;
  clxent_mem_ex mx = clxent_mem_ex_default();
  mx.dtype = CLXENT_BFLOAT16;
  uint16_t gbh[N * C];
  ASSERT_OK(env.host, clxent_softmax_xent_soft_ex(env.host, N, C, zb, zb, NULL, &hx, &lh, gbh));
  ASSERT_OK(env.ctx, clxent_softmax_xent_soft_mem(env.ctx, N, C, dzb, dzb, NULL, &mx, dl, dgb, 0, NULL, NULL));
  clFinish(env.queue);
  download(dl, &ld, sizeof ld), download(dgb, gb, sizeof gb);
  assert_float_equal(ld, lh, 1e-5 * (1 + fabsf(lh)));
  assert_memory_equal(gb, gbh, sizeof gb);
  clReleaseMemObject(dz), clReleaseMemObject(dt), clReleaseMemObject(dp), clReleaseMemObject(dl);
  clReleaseMemObject(dg), clReleaseMemObject(dzb), clReleaseMemObject(dgb);
}

/* opts->grad_output (a host array, copied at once) and opts->mean_denominator on device buffers:
 * the host-pointer API's results. Hard labels cover both ways the device path scales: label_stats'
 * counts times the host's g, and with D the host's divisor alone (label_stats then only counts bad
 * labels). Every row ignored with D: loss 0, gradient 0. */
static void test_upstream_matches_host_api(void **state) {
  (void)state;
  enum { N = 70, C = 37 };
  float *z = xmalloc(N * C * sizeof(float)), *t = xmalloc(N * C * sizeof(float)), w[C], g[N * C], lh[N * C], ld[N * C];
  float *gh = xmalloc(N * C * sizeof(float)), *gd = xmalloc(N * C * sizeof(float));
  int32_t y[N], none[N];
  rng_seed(57);
  fill_uniform(z, N * C, -5, 5);
  fill_distribution_rows(t, N, C, 0.2);
  for (int j = 0; j < C; ++j) w[j] = (float)rng_uniform(0.5, 2);
  for (int i = 0; i < N; ++i) y[i] = i % 9 == 0 ? -100 : (int32_t)rng_below(C), none[i] = -100;
  for (int e = 0; e < N * C; ++e) g[e] = e % 11 == 0 ? 0.0f : (float)rng_uniform(-3, 3);
  cl_mem dz = upload(z, N * C * sizeof(float)), dt = upload(t, N * C * sizeof(float)), dy = upload(y, sizeof y);
  cl_mem dnone = upload(none, sizeof none), dl = device_buffer(sizeof ld), dg = device_buffer(N * C * sizeof(float));
  cl_mem dbad = device_buffer(sizeof(cl_uint));
  clxent_mem_ex mx = clxent_mem_ex_default();
  mx.bad_labels = dbad;
  for (int which = 0; which < 7; ++which) {
    clxent_opts o = clxent_opts_default();
    o.label_smoothing = 0.1f, o.z_loss = 1e-3f;
    size_t losses = 1;
    const float g_one = -2.0f;
    switch (which) {
      case 0: o.reduction = CLXENT_NONE, o.grad_output = g, losses = N; break;          /* per row */
      case 1: o.grad_output = &g_one, o.class_weight = w; break;                         /* g × label_stats */
      case 2: o.grad_output = &g_one, o.class_weight = w, o.mean_denominator = 1000; break; /* D */
      case 3: o.mean_denominator = 64; break;                                            /* D, all ignored */
      case 4: o.reduction = CLXENT_NONE, o.grad_output = g, losses = N; break;          /* soft, per row */
      case 5: o.mean_denominator = 33.5, o.grad_output = &g_one; break;                  /* soft, D */
      default: o = clxent_opts_default(), o.reduction = CLXENT_NONE, o.grad_output = g, losses = N * C; break;
    }
    const int32_t *labels = which == 3 ? none : y;
    if (which <= 3) {
      ASSERT_OK(env.host, clxent_softmax_xent(env.host, N, C, z, labels, &o, lh, gh));
      ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, which == 3 ? dnone : dy, &o, &mx, dl, dg, 0, NULL,
                                                 NULL));
    } else if (which <= 5) {
      ASSERT_OK(env.host, clxent_softmax_xent_soft(env.host, N, C, z, t, &o, lh, gh));
      ASSERT_OK(env.ctx, clxent_softmax_xent_soft_mem(env.ctx, N, C, dz, dt, &o, NULL, dl, dg, 0, NULL, NULL));
    } else {
      ASSERT_OK(env.host, clxent_sigmoid_xent_ex(env.host, N, C, z, t, &o, NULL, lh, gh));
      ASSERT_OK(env.ctx, clxent_sigmoid_xent_mem(env.ctx, N, C, dz, dt, &o, NULL, dl, dg, 0, NULL, NULL));
    }
    /* copied at once: the caller's array is free again before the work is done (the next case's) */
    rng_seed(57 + (uint64_t)which);
    for (int e = 0; e < N * C; ++e) g[e] = e % 11 == 0 ? 0.0f : (float)rng_uniform(-3, 3);
    clFinish(env.queue);
    download(dl, ld, losses * sizeof(float)), download(dg, gd, N * C * sizeof(float));
    for (size_t k = 0; k < losses; ++k)
      if (!(fabsf(ld[k] - lh[k]) <= 1e-6f * (1 + fabsf(lh[k])))) fail_msg("case %d: loss[%zu] %g vs %g", which, k, ld[k], lh[k]);
    for (int k = 0; k < N * C; ++k)
      if (!(fabsf(gd[k] - gh[k]) <= 1e-7f + 1e-5f * fabsf(gh[k])))
        fail_msg("case %d: grad[%d] %g vs %g", which, k, gd[k], gh[k]);
    if (which == 3) {
      assert_true(ld[0] == 0.0f);
      for (int k = 0; k < N * C; ++k) assert_true(gd[k] == 0.0f);
    }
  }
  cl_uint bad = 99;
  download(dbad, &bad, sizeof bad);
  assert_int_equal(bad, 0);
  /* checked before anything is enqueued */
  clxent_opts o = clxent_opts_default();
  o.reduction = CLXENT_NONE, o.grad_output = g, g[N - 1] = INFINITY;
  assert_int_equal(clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, NULL, dl, dg, 0, NULL, NULL), CLXENT_ERR_INVALID_ARG);
  if (!strstr(clxent_last_error(env.ctx), "opts->grad_output[69]")) fail_msg("message: %s", clxent_last_error(env.ctx));
  o = clxent_opts_default(), o.mean_denominator = -3;
  assert_int_equal(clxent_bce_mem(env.ctx, N, C, dt, dt, &o, NULL, dl, dg, 0, NULL, NULL), CLXENT_ERR_INVALID_ARG);
  if (!strstr(clxent_last_error(env.ctx), "opts->mean_denominator")) fail_msg("message: %s", clxent_last_error(env.ctx));
  clReleaseMemObject(dz), clReleaseMemObject(dt), clReleaseMemObject(dy), clReleaseMemObject(dnone);
  clReleaseMemObject(dl), clReleaseMemObject(dg), clReleaseMemObject(dbad);
  free(z), free(t), free(gh), free(gd);
}

/* label_stats over more labels than one work-group counts alone on a GPU (kernels/reduce.cl:
 * above CLXENT_GROUP_SIZE · CLXENT_LABEL_ITEMS labels the group variant counts spans in several
 * groups, then adds them): N spans 3 of them at a GPU's group of 256 and 9 at PoCL's 64. Class
 * weights and ignored rows: the mean's divisor as the host API finds it; bad labels (past c,
 * negative) counted across the spans, the first and last label among them. */
static void test_label_counts_in_spans(void **state) {
  (void)state;
  enum { N = 9001, C = 5 };
  float *z = xmalloc(N * C * sizeof(float)), *gh = xmalloc(N * C * sizeof(float)), *gd = xmalloc(N * C * sizeof(float));
  float w[C], lh = 0, ld = 0;
  int32_t *y = xmalloc(N * sizeof(int32_t)), *yb = xmalloc(N * sizeof(int32_t));
  rng_seed(91);
  fill_uniform(z, N * C, -4, 4);
  for (int j = 0; j < C; ++j) w[j] = (float)rng_uniform(0.25, 3);
  cl_uint bad_expected = 0;
  for (int i = 0; i < N; ++i) {
    y[i] = i % 7 == 3 ? -100 : (int32_t)rng_below(C);
    yb[i] = i == 0 || i == N - 1 || i % 997 == 5 ? (i % 2 ? -7 : C + 3) : y[i];
    bad_expected += yb[i] != y[i];
  }
  cl_mem dz = upload(z, N * C * sizeof(float)), dy = upload(y, N * sizeof(int32_t)), dyb = upload(yb, N * sizeof(int32_t));
  cl_mem dl = device_buffer(sizeof(float)), dg = device_buffer(N * C * sizeof(float)), dbad = device_buffer(sizeof(cl_uint));
  clxent_mem_ex mx = clxent_mem_ex_default();
  mx.bad_labels = dbad;
  for (int weighted = 0; weighted < 2; ++weighted) {
    clxent_opts o = clxent_opts_default(); /* mean */
    if (weighted) o.class_weight = w;
    ASSERT_OK(env.host, clxent_softmax_xent(env.host, N, C, z, y, &o, &lh, gh));
    ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, &mx, dl, dg, 0, NULL, NULL));
    clFinish(env.queue);
    cl_uint bad = 99;
    download(dl, &ld, sizeof ld), download(dg, gd, N * C * sizeof(float)), download(dbad, &bad, sizeof bad);
    assert_int_equal(bad, 0);
    if (!(fabsf(ld - lh) <= 1e-5f * fabsf(lh))) fail_msg("weights %d: loss %.9g vs the host API's %.9g", weighted, ld, lh);
    for (int k = 0; k < N * C; ++k)
      if (!(fabsf(gd[k] - gh[k]) <= 1e-10f + 1e-5f * fabsf(gh[k])))
        fail_msg("weights %d: grad[%d] %g vs the host API's %g", weighted, k, gd[k], gh[k]);
    ASSERT_OK(env.ctx, clxent_softmax_xent_mem(env.ctx, N, C, dz, dyb, &o, &mx, dl, dg, 0, NULL, NULL));
    clFinish(env.queue);
    download(dl, &ld, sizeof ld), download(dbad, &bad, sizeof bad);
    if (bad != bad_expected) fail_msg("weights %d: %u bad labels counted, %u in the batch", weighted, bad, bad_expected);
    assert_true(isnan(ld)); /* their rows' NaN reaches the mean */
  }
  clReleaseMemObject(dz), clReleaseMemObject(dy), clReleaseMemObject(dyb);
  clReleaseMemObject(dl), clReleaseMemObject(dg), clReleaseMemObject(dbad);
  free(z), free(gh), free(gd), free(y), free(yb);
}

/* Bad arguments: named, and nothing enqueued (the outputs keep their poison). */
static void test_rejected_arguments(void **state) {
  (void)state;
  enum { N = 8, C = 5 };
  float z[N * C], loss = 0;
  int32_t y[N] = {0};
  fill_uniform(z, N * C, -1, 1);
  cl_mem dz = upload(z, sizeof z), dy = upload(y, sizeof y), dloss = device_buffer(sizeof(float));
  cl_mem small = device_buffer(8), dgrad = device_buffer(sizeof z);
  /* a sub-buffer that starts inside the logits (at the device's base address alignment) */
  cl_device_id dev;
  cl_uint align_bits = 0;
  clGetCommandQueueInfo(env.queue, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
  const size_t align = align_bits / 8, row = 2 * align; /* one row of logits: 2·align bytes */
  cl_mem big = device_buffer(4 * align);
  cl_buffer_region region = {align, row};
  cl_int err;
  cl_mem inside = clCreateSubBuffer(big, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
  assert_int_equal(err, CL_SUCCESS);
#define REJECT(needle, call)                                                                        \
  do {                                                                                              \
    assert_int_equal((call), CLXENT_ERR_INVALID_ARG);                                               \
    if (!strstr(clxent_last_error(env.ctx), needle)) fail_msg("message: %s", clxent_last_error(env.ctx)); \
  } while (0)
  REJECT("logits holds 8 bytes", clxent_softmax_xent_mem(env.ctx, N, C, small, dy, NULL, NULL, dloss, NULL, 0, NULL, NULL));
  REJECT("labels is NULL", clxent_softmax_xent_mem(env.ctx, N, C, dz, NULL, NULL, NULL, dloss, NULL, 0, NULL, NULL));
  REJECT("grad overlaps logits",
         clxent_softmax_xent_mem(env.ctx, 1, row / sizeof(float), big, dy, NULL, NULL, dloss, inside, 0, NULL, NULL));
  REJECT("loss overlaps grad", clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, NULL, NULL, dgrad, dgrad, 0, NULL, NULL));
  REJECT("wait is NULL", clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, NULL, NULL, dloss, NULL, 2, NULL, NULL));
  clxent_opts o = clxent_opts_default();
  o.softcap = -1.0f;
  REJECT("opts->softcap", clxent_softmax_xent_mem(env.ctx, N, C, dz, dy, &o, NULL, dloss, NULL, 0, NULL, NULL));
  /* a buffer of another context */
  cl_device_id device;
  clGetCommandQueueInfo(env.queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
  cl_context other = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, sizeof z, NULL, &err);
  REJECT("another OpenCL context", clxent_softmax_xent_mem(env.ctx, N, C, foreign, dy, NULL, NULL, dloss, NULL, 0, NULL, NULL));
  clReleaseMemObject(foreign), clReleaseContext(other);
#undef REJECT
  clFinish(env.queue);
  download(dloss, &loss, sizeof loss);
  assert_true(isnan(loss)); /* still the poison: nothing ran */
  clReleaseMemObject(inside), clReleaseMemObject(big), clReleaseMemObject(dz), clReleaseMemObject(dy), clReleaseMemObject(dloss);
  clReleaseMemObject(small), clReleaseMemObject(dgrad);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_on_the_callers_queue), cmocka_unit_test(test_hard_labels_match_host_api),
      cmocka_unit_test(test_bad_labels_on_the_device),     cmocka_unit_test(test_wait_list_and_done_event),
      cmocka_unit_test(test_other_losses_match_host_api),  cmocka_unit_test(test_rejected_arguments),
      cmocka_unit_test(test_upstream_matches_host_api), cmocka_unit_test(test_label_counts_in_spans),
  };
  if (!support_device_present()) return SUPPORT_SKIP;
  return cmocka_run_group_tests(tests, setup, teardown);
}
