/*
 * clxent bench: for each shape, the median time (after warm-up) of
 *   copy    the device's copy kernel over a buffer of the block's size (its own bandwidth),
 *   kernel  the fused loss+gradient kernel on device-resident data (one block),
 *   call    the public host-pointer call clxent_softmax_xent (MEAN, loss + gradient),
 *   C loop  on CPU devices, the plain C loop (bench/c_loop.c) doing the same work,
 * and the effective bandwidth: bytes that must move (logits read once + gradient written once).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../bench/c_loop.h"
#include "bench.h"
#include "internal.h"

#define MAX_SHAPES 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int k) {
  qsort(t, (size_t)k, sizeof *t, cmp_double);
  return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

typedef struct shape { size_t n, c; } shape;

typedef struct bench_opts {
  const char *device;
  shape shapes[MAX_SHAPES];
  int shape_count, repeat, warmup, csv;
} bench_opts;

/* Times `what` (which returns nonzero on failure) `warmup` + `repeat` times; the median in seconds,
 * or -1 on failure. */
#define TIME_MEDIAN(result, o, what)                         \
  do {                                                      \
    double t_[256];                                         \
    (result) = -1.0;                                        \
    int ok_ = 1;                                            \
    for (int w_ = 0; w_ < (o)->warmup && ok_; ++w_) ok_ = !(what); \
    for (int r_ = 0; r_ < (o)->repeat && ok_; ++r_) {       \
      const double t0_ = now();                             \
      ok_ = !(what);                                        \
      t_[r_] = now() - t0_;                                 \
    }                                                       \
    if (ok_) (result) = median(t_, (o)->repeat);            \
  } while (0)

static int copy_once(clxent_ctx *ctx, cl_mem src, cl_mem dst, size_t float4s) {
  cl_kernel k = ctx->kernels[KERNEL_COPY_FLOAT4][0];
  if (clSetKernelArg(k, 0, sizeof src, &src) || clSetKernelArg(k, 1, sizeof dst, &dst)) return 1;
  if (clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &float4s, NULL, 0, NULL, NULL)) return 1;
  return clFinish(ctx->queue) != CL_SUCCESS;
}

static int kernel_once(clxent_ctx *ctx, size_t rows, size_t c, cl_mem in, cl_mem labels, float scale, cl_mem grad,
                       cl_mem out) {
  const clxent_row_launch l = {KERNEL_SOFTMAX_HARD, CLXENT_FLOAT32, rows, c, 0, in, NULL, labels, NULL,
                               -100, clxent_plain_params(scale, c), grad, out, NULL};
  if (clxent_launch_rows(ctx, &l)) return 1;
  return clFinish(ctx->queue) != CL_SUCCESS;
}

static int parse_shape(const char *s, shape *out) {
  char *end;
  const unsigned long long n = strtoull(s, &end, 10);
  if (*end != 'x' && *end != 'X') return 0;
  const unsigned long long c = strtoull(end + 1, &end, 10);
  if (*end || n == 0 || c == 0) return 0;
  out->n = (size_t)n;
  out->c = (size_t)c;
  return 1;
}

static int bench_usage(FILE *to) {
  fprintf(to, "usage: clxent bench [--device D] [--shape NxC]... [--repeat R] [--warmup W] [--csv] [--quick]\n"
              "  default shapes: 8192x32000 2048x128256 65536x1000 1048576x10 1x10; --quick: small shapes\n");
  return to == stderr ? 2 : 0;
}

int clxent_bench_main(int argc, char **argv) {
  bench_opts o = {NULL, {{0, 0}}, 0, 10, 2, 0};
  int quick = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--device") && i + 1 < argc) o.device = argv[++i];
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc && o.shape_count < MAX_SHAPES) {
      if (!parse_shape(argv[++i], &o.shapes[o.shape_count++])) {
        fprintf(stderr, "clxent bench: --shape wants NxC, got %s\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) o.repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) o.warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--csv")) o.csv = 1;
    else if (!strcmp(argv[i], "--quick")) quick = 1;
    else if (!strcmp(argv[i], "--help")) return bench_usage(stdout);
    else {
      fprintf(stderr, "clxent bench: unknown argument %s\n", argv[i]);
      return bench_usage(stderr);
    }
  }
  if (o.repeat < 1 || o.repeat > 256 || o.warmup < 0) {
    fprintf(stderr, "clxent bench: --repeat must be in 1..256 and --warmup >= 0\n");
    return 2;
  }
  if (o.shape_count == 0) {
    static const shape full[] = {{8192, 32000}, {2048, 128256}, {65536, 1000}, {1048576, 10}, {1, 10}};
    static const shape small[] = {{1024, 32000}, {16384, 1000}, {1, 10}};
    const shape *list = quick ? small : full;
    o.shape_count = quick ? 3 : 5;
    for (int s = 0; s < o.shape_count; ++s) o.shapes[s] = list[s];
    if (quick && o.repeat == 10) o.repeat = 5;
  }

  clxent_ctx *ctx;
  const double t_create = now();
  clxent_status st = clxent_create(&ctx, o.device);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent bench: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return 1;
  }
  const int is_cpu = (ctx->device_type & CL_DEVICE_TYPE_CPU) != 0;
  printf("# context creation %.0f ms (kernels %s); zero-copy %s\n", (now() - t_create) * 1e3,
         ctx->program_from_cache ? "from the program cache" : "built from source", ctx->zero_copy ? "on" : "off");
  printf("# device: %s; variant %s, vector width %u, group size %zu; median of %d after %d warm-up\n",
         ctx->device_name, ctx->variant == CLXENT_VARIANT_ITEM_PER_ROW ? "item-per-row" : "group-per-row",
         ctx->vector_width, ctx->group_size, o.repeat, o.warmup);
  printf("# bytes = logits read once + gradient written once; copy = the device's copy kernel on the block\n");
  if (o.csv)
    printf("n,c,copy_GBps,kernel_ms,kernel_GBps,kernel_pct_copy,call_ms,call_GBps,call_pct_copy,c_loop_ms,"
           "c_loop_GBps,call_over_c_loop\n");
  else
    printf("%9s %7s | %9s | %9s %9s %6s | %9s %9s %6s | %9s %9s %7s\n", "n", "c", "copy GB/s", "kernel ms",
           "GB/s", "%copy", "call ms", "GB/s", "%copy", "C loop ms", "GB/s", "call/C");

  int status = 0;
  for (int s = 0; s < o.shape_count && !status; ++s) {
    const size_t n = o.shapes[s].n, c = o.shapes[s].c, elems = n * c;
    fprintf(stderr, "bench: shape %d/%d: %zux%zu\n", s + 1, o.shape_count, n, c);
    float *logits = malloc(elems * sizeof(float)), *grad = malloc(elems * sizeof(float));
    int32_t *labels = malloc(n * sizeof(int32_t));
    if (!logits || !grad || !labels) {
      fprintf(stderr, "clxent bench: out of host memory for %zux%zu\n", n, c);
      free(logits), free(grad), free(labels);
      status = 1;
      break;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < elems; ++k) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      logits[k] = (float)((double)(x >> 40) / (double)(1u << 24) * 8.0 - 4.0);
    }
    for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)((i * 2654435761u) % c);

    /* Device-resident part: one block of rows, as the streaming path would launch it. */
    size_t rows = (size_t)(ctx->block_bytes / (c * sizeof(float)));
    if (rows > n) rows = n;
    const size_t block_bytes = rows * c * sizeof(float);
    double t_copy = -1, t_kernel = -1, t_call = -1, t_c = -1;
    cl_mem in, g, out, lab;
    if (rows > 0 && !clxent_buffer(ctx, SLOT_IN, block_bytes, &in) && !clxent_buffer(ctx, SLOT_GRAD, block_bytes, &g) &&
        !clxent_buffer(ctx, SLOT_ROW_OUT, rows * sizeof(float), &out) &&
        !clxent_buffer(ctx, SLOT_LABELS, rows * sizeof(int32_t), &lab) &&
        !clEnqueueWriteBuffer(ctx->queue, in, CL_TRUE, 0, block_bytes, logits, 0, NULL, NULL) &&
        !clEnqueueWriteBuffer(ctx->queue, lab, CL_TRUE, 0, rows * sizeof(int32_t), labels, 0, NULL, NULL)) {
      TIME_MEDIAN(t_kernel, &o, kernel_once(ctx, rows, c, in, lab, 1.0f / (float)rows, g, out));
      /* The copy reuses the input and gradient blocks: same sizes, same memory. */
      const size_t float4s = block_bytes / 16;
      if (float4s > 0) TIME_MEDIAN(t_copy, &o, copy_once(ctx, in, g, float4s));
    }
    float loss;
    TIME_MEDIAN(t_call, &o, clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &loss, grad));
    if (t_call < 0) {
      fprintf(stderr, "clxent bench: %zux%zu: %s\n", n, c, clxent_last_error(ctx));
      status = 1;
    }
    if (is_cpu) TIME_MEDIAN(t_c, &o, (clxent_c_loop_softmax_xent(n, c, logits, labels, grad), 0));

    const double bytes = 2.0 * (double)elems * sizeof(float), kbytes = 2.0 * (double)block_bytes;
    const double copy_bw = t_copy > 0 ? 2.0 * (double)(block_bytes / 16 * 16) / t_copy / 1e9 : NAN;
    const double k_bw = t_kernel > 0 ? kbytes / t_kernel / 1e9 : NAN;
    const double call_bw = t_call > 0 ? bytes / t_call / 1e9 : NAN;
    const double c_bw = t_c > 0 ? bytes / t_c / 1e9 : NAN;
    if (o.csv)
      printf("%zu,%zu,%.2f,%.4f,%.2f,%.1f,%.4f,%.2f,%.1f,%.4f,%.2f,%.3f\n", n, c, copy_bw, t_kernel * 1e3, k_bw,
             100 * k_bw / copy_bw, t_call * 1e3, call_bw, 100 * call_bw / copy_bw, t_c * 1e3, c_bw, t_c / t_call);
    else
      printf("%9zu %7zu | %9.2f | %9.3f %9.2f %5.1f%% | %9.3f %9.2f %5.1f%% | %9.3f %9.2f %6.2fx\n", n, c,
             copy_bw, t_kernel * 1e3, k_bw, 100 * k_bw / copy_bw, t_call * 1e3, call_bw, 100 * call_bw / copy_bw,
             t_c * 1e3, c_bw, t_c / t_call);
    if (n * c <= 1024 && t_call > 0) printf("# %zux%zu: one call's host overhead %.1f us\n", n, c, t_call * 1e6);
    fflush(stdout);
    free(logits), free(grad), free(labels);
  }
  clxent_destroy(ctx);
  return status;
}
