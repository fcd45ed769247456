/*
 * clxent bench: for each shape, the median time (after warm-up) of
 *   copy    a copy kernel the tool builds itself (one work-item per float4) over a buffer of the
 *           block's size: the device's own bandwidth, the yardstick of the other columns,
 *   kernel  the device-resident call clxent_softmax_xent_mem (clxent_cl.h) on one block of rows in
 *           buffers the tool makes in the context's OpenCL context, with the options and storage,
 *   call    the public host-pointer call clxent_softmax_xent_ex (MEAN, loss + gradient),
 * and the effective bandwidth: bytes that must move (logits read once + gradient written once).
 * The plain C loop is timed against the call by a separate, uninstalled program:
 * bench/c_loop_bench.c (clxent_bench_c_loop).
 *
 * With --host-path (and by default on devices that do not share host memory) a second table
 * measures the offload of host arrays: the transfer bandwidth from and to pinned host memory (and
 * pageable, for comparison), the ideal time (bytes up / pinned up + bytes down / pinned down), and
 * the call with ordinary arrays and with arrays in clxent_host_alloc memory, each over the ideal.
 *
 * Exit status: 0 success, 2 bad usage (every argument is checked, and every shape's byte counts,
 * before a context is created), 3 the device, the library or host memory failed (a shape whose
 * arrays exceed this machine's memory is refused before the run).
 *
 * Only the public API and its experimental section are used (clxent_get_info for what the
 * context settled on, clxent_device_count/_share for contexts over several devices), and OpenCL
 * directly on the queue clxent_queue() lends.
 */
#define CLXENT_EXPERIMENTAL_API /* clxent_get_info, clxent_device_count, clxent_device_share */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "check.h"
#include "clxent.h"
#include "clxent_cl.h"
#include "util.h"

#define MAX_SHAPES 16

typedef tool_shape shape;

typedef struct bench_opts {
  const char *device;
  shape shapes[MAX_SHAPES];
  int shape_count, repeat, warmup, csv;
  clxent_dtype dtype;
  int weights, smoothing, zloss, softcap, lse, bias; /* --options */
} bench_opts;

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

/* The options of --options, as the library takes them. */
static void bench_call_opts(const bench_opts *o, const float *weights, clxent_opts *opts) {
  *opts = clxent_opts_default();
  if (o->weights) opts->class_weight = weights;
  if (o->smoothing) opts->label_smoothing = 0.1f;
  if (o->zloss) opts->z_loss = 1e-4f;
  if (o->softcap) opts->softcap = 30.0f;
}

/* "weights,smoothing,..." into *o: every item known, none empty; 0 otherwise. */
static int parse_options(const char *list, bench_opts *o) {
  static const char *const names[] = {"weights", "smoothing", "zloss", "softcap", "lse", "bias", "all"};
  for (const char *item = list;; ++item) {
    const size_t len = strcspn(item, ",");
    int k = 0;
    while (k < 7 && !(strlen(names[k]) == len && !strncmp(item, names[k], len))) ++k;
    if (k == 7) return 0; /* unknown, or empty */
    int *flags[] = {&o->weights, &o->smoothing, &o->zloss, &o->softcap, &o->lse, &o->bias};
    for (int f = 0; f < 6; ++f)
      if (k == f || k == 6) *flags[f] = 1;
    item += len;
    if (!*item) return 1;
  }
}

/* Host memory one shape holds at once: the arrays of the main table (logits, gradient, 16-bit
 * copy, labels, lse, weights, bias) and, with the host-path table, its pinned copies and the
 * transfer probes as well. 0 if that overflows size_t. */
static size_t bench_host_bytes(const bench_opts *o, const shape *s, int host_path) {
  const size_t nc = s->n * s->c; /* checked by tool_parse_shape */
  size_t bytes = 0;
  int ok = tool_add_bytes(&bytes, nc, 2 * sizeof(float)) &&
           (o->dtype == CLXENT_FLOAT32 || tool_add_bytes(&bytes, nc, sizeof(uint16_t))) &&
           tool_add_bytes(&bytes, s->n, sizeof(int32_t) + sizeof(float)) && tool_add_bytes(&bytes, s->c, 2 * sizeof(float));
  if (ok && host_path) {
    const size_t probe = nc < ((size_t)256 << 20) / sizeof(float) ? nc : ((size_t)256 << 20) / sizeof(float);
    ok = tool_add_bytes(&bytes, nc, 2 * sizeof(float)) && tool_add_bytes(&bytes, s->n, sizeof(int32_t)) &&
         tool_add_bytes(&bytes, probe, 2 * sizeof(float));
  }
  return ok ? bytes : 0;
}

/* Times `what` (which returns nonzero on failure) `warmup` + `repeat` times; the median in seconds,
 * or -1 on failure. */
#define TIME_MEDIAN(result, o, what)                         \
  do {                                                      \
    double t_[256];                                         \
    (result) = -1.0;                                        \
    int ok_ = 1;                                            \
    for (int w_ = 0; w_ < (o)->warmup && ok_; ++w_) ok_ = !(what); \
    for (int r_ = 0; r_ < (o)->repeat && ok_; ++r_) {       \
      const double t0_ = clxent_seconds();                             \
      ok_ = !(what);                                        \
      t_[r_] = clxent_seconds() - t0_;                                 \
    }                                                       \
    if (ok_) (result) = clxent_median(t_, (o)->repeat);            \
  } while (0)

/* The tool's side of the device: the context's queue and OpenCL context, and a copy kernel of its
 * own. None of it exists for a context over several devices (it has no one queue). */
typedef struct device_side {
  cl_command_queue queue; /* lent by clxent_queue(): not released here */
  cl_context context;
  cl_device_id device;
  cl_program copy_program;
  cl_kernel copy_kernel; /* NULL if it did not build: the copy column is then empty */
} device_side;

static const char copy_source[] = "__kernel void copy_float4(__global const float4 *src, __global float4 *dst) {\n"
                                  "  const size_t i = get_global_id(0);\n"
                                  "  dst[i] = src[i];\n"
                                  "}\n";

static int device_side_open(clxent_ctx *ctx, device_side *d) {
  memset(d, 0, sizeof *d);
  d->queue = clxent_queue(ctx);
  if (!d->queue || clGetCommandQueueInfo(d->queue, CL_QUEUE_CONTEXT, sizeof d->context, &d->context, NULL) ||
      clGetCommandQueueInfo(d->queue, CL_QUEUE_DEVICE, sizeof d->device, &d->device, NULL)) {
    d->queue = NULL;
    return 0;
  }
  const char *src = copy_source;
  cl_int err;
  d->copy_program = clCreateProgramWithSource(d->context, 1, &src, NULL, &err);
  if (err == CL_SUCCESS && clBuildProgram(d->copy_program, 1, &d->device, "", NULL, NULL) == CL_SUCCESS)
    d->copy_kernel = clCreateKernel(d->copy_program, "copy_float4", &err);
  if (!d->copy_kernel) fprintf(stderr, "clxent bench: the copy kernel did not build (OpenCL error %d)\n", (int)err);
  return 1;
}

static void device_side_close(device_side *d) {
  if (d->copy_kernel) clReleaseKernel(d->copy_kernel);
  if (d->copy_program) clReleaseProgram(d->copy_program);
  memset(d, 0, sizeof *d);
}

/* A device buffer of `bytes` in the context's OpenCL context, filled from `init` if not NULL;
 * NULL on failure. */
static cl_mem make_buffer(const device_side *d, size_t bytes, const void *init) {
  cl_int err;
  cl_mem m = clCreateBuffer(d->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS) return NULL;
  if (init && clEnqueueWriteBuffer(d->queue, m, CL_TRUE, 0, bytes, init, 0, NULL, NULL) != CL_SUCCESS) {
    clReleaseMemObject(m);
    return NULL;
  }
  return m;
}

static void release_buffers(cl_mem *m, int count) {
  for (int k = 0; k < count; ++k)
    if (m[k]) clReleaseMemObject(m[k]), m[k] = NULL;
}

static int copy_once(const device_side *d, cl_mem src, cl_mem dst, size_t float4s) {
  cl_kernel k = d->copy_kernel;
  if (clSetKernelArg(k, 0, sizeof src, &src) || clSetKernelArg(k, 1, sizeof dst, &dst)) return 1;
  if (clEnqueueNDRangeKernel(d->queue, k, 1, NULL, &float4s, NULL, 0, NULL, NULL)) return 1;
  return clFinish(d->queue) != CL_SUCCESS;
}

/* The library on one device-resident block: the _mem call with the options, to completion. */
static int kernel_once(clxent_ctx *ctx, const device_side *d, size_t rows, size_t c, cl_mem in, cl_mem labels,
                       const clxent_opts *opts, const clxent_mem_ex *mex, cl_mem loss, cl_mem grad) {
  if (clxent_softmax_xent_mem(ctx, rows, c, in, labels, opts, mex, loss, grad, 0, NULL, NULL) != CLXENT_OK) return 1;
  return clFinish(d->queue) != CL_SUCCESS;
}

/* Transfer bandwidths between host memory and a device buffer of `bytes`: pinned (clxent_host_alloc
 * memory, as the library's staging) and pageable (malloc), both ways. */
typedef struct transfer_rates { double up_pinned, down_pinned, up_pageable, down_pageable; } transfer_rates;

static int transfer_once(const device_side *d, cl_mem dev, void *host, size_t bytes, int up) {
  const cl_int err = up ? clEnqueueWriteBuffer(d->queue, dev, CL_TRUE, 0, bytes, host, 0, NULL, NULL)
                        : clEnqueueReadBuffer(d->queue, dev, CL_TRUE, 0, bytes, host, 0, NULL, NULL);
  return err != CL_SUCCESS;
}

static int measure_transfers(clxent_ctx *ctx, const device_side *d, const bench_opts *o, size_t bytes,
                             transfer_rates *r) {
  cl_mem dev = make_buffer(d, bytes, NULL);
  void *pinned = clxent_host_alloc(ctx, bytes), *pageable = malloc(bytes);
  int ok = pinned && pageable && dev;
  double t[4] = {-1, -1, -1, -1};
  if (ok) {
    memset(pinned, 1, bytes), memset(pageable, 1, bytes); /* touched: no first-use page faults timed */
    TIME_MEDIAN(t[0], o, transfer_once(d, dev, pinned, bytes, 1));
    TIME_MEDIAN(t[1], o, transfer_once(d, dev, pinned, bytes, 0));
    TIME_MEDIAN(t[2], o, transfer_once(d, dev, pageable, bytes, 1));
    TIME_MEDIAN(t[3], o, transfer_once(d, dev, pageable, bytes, 0));
  }
  if (dev) clReleaseMemObject(dev);
  clxent_host_free(ctx, pinned), free(pageable);
  for (int k = 0; k < 4; ++k) ok = ok && t[k] > 0;
  if (!ok) return 0;
  r->up_pinned = (double)bytes / t[0] / 1e9, r->down_pinned = (double)bytes / t[1] / 1e9;
  r->up_pageable = (double)bytes / t[2] / 1e9, r->down_pageable = (double)bytes / t[3] / 1e9;
  return 1;
}

/* The host-path table's row for one shape (f32 logits and gradient); 0, or the exit status 3. */
static int host_path_row(clxent_ctx *ctx, const device_side *d, const clxent_info *info, const bench_opts *o, size_t n,
                         size_t c, const float *logits, const int32_t *labels, double t_call, char *row,
                         size_t row_size) {
  const size_t elems = n * c;
  size_t probe = elems * sizeof(float);
  if (probe > ((size_t)256 << 20)) probe = (size_t)256 << 20;
  if (probe > info->max_alloc) probe = (size_t)info->max_alloc;
  transfer_rates r;
  if (!measure_transfers(ctx, d, o, probe, &r)) {
    fprintf(stderr, "clxent bench: transfer measurement failed (%s)\n", clxent_last_error(ctx));
    return 3;
  }
  /* the same call with every array in pinned memory */
  float *pl = clxent_host_alloc(ctx, elems * sizeof(float)), *pg = clxent_host_alloc(ctx, elems * sizeof(float));
  int32_t *py = clxent_host_alloc(ctx, n * sizeof(int32_t));
  float loss;
  double t_pinned = -1;
  if (pl && pg && py) {
    memcpy(pl, logits, elems * sizeof(float)), memcpy(py, labels, n * sizeof(int32_t));
    memset(pg, 0, elems * sizeof(float));
    TIME_MEDIAN(t_pinned, o, clxent_softmax_xent(ctx, n, c, pl, py, NULL, &loss, pg));
  }
  clxent_host_free(ctx, pl), clxent_host_free(ctx, pg), clxent_host_free(ctx, py);
  if (t_pinned < 0) {
    fprintf(stderr, "clxent bench: %zux%zu with pinned arrays: %s\n", n, c, clxent_last_error(ctx));
    return 3;
  }
  const double up = (double)elems * 4 + (double)n * 4, down = (double)elems * 4 + 4;
  const double ideal = up / (r.up_pinned * 1e9) + down / (r.down_pinned * 1e9);
  snprintf(row, row_size,
           o->csv ? "host_path,%zu,%zu,%.2f,%.2f,%.2f,%.2f,%.4f,%.4f,%.3f,%.4f,%.3f\n"
                  : "%9zu %7zu | %7.2f %7.2f | %7.2f %7.2f | %9.3f | %9.3f %6.2fx | %9.3f %6.2fx\n",
           n, c, r.up_pinned, r.down_pinned, r.up_pageable, r.down_pageable, ideal * 1e3, t_call * 1e3, t_call / ideal,
           t_pinned * 1e3, t_pinned / ideal);
  return 0;
}

/* The header's words for the tuning a context settled on, so that a run names the table entry (or
 * the CLXENT_* settings) it measured: see host/tuning.c. */
static const char *row_threads_text(const clxent_info *info, char *text, size_t size) {
  if (!info->row_threads) return "from c";
  snprintf(text, size, "%zu", info->row_threads);
  return text;
}
static const char *exp_text(const clxent_info *info) {
  return !info->own_math ? "the device's" : info->bf16_cvt ? "clxent's own; bfloat16 by vcvtneps2bf16" : "clxent's own";
}

static int bench_usage(FILE *to) {
  fprintf(to, "usage: clxent bench [--device D] [--shape NxC]... [--repeat R] [--warmup W] [--csv] [--quick]\n"
              "                    [--dtype f32|f16|bf16] [--options LIST] [--host-path | --kernel-only]\n"
              "  --device   as clxent_create: gpu, cpu, P:D, a name, all, or a list (gpu,cpu)\n"
              "  --shape    N rows x C classes, 1 <= C <= 2147483647, up to 16 shapes; default shapes:\n"
              "             8192x32000 2048x128256 65536x1000 1048576x10 1x10; --quick: small shapes\n"
              "  --repeat   timed rounds, 1..256 (default 10; 5 with --quick); --warmup W: 0..1000 (default 2)\n"
              "  --dtype    storage of logits and gradient\n"
              "  --options  comma-separated: weights,smoothing,zloss,softcap,lse,bias or all\n"
              "  --host-path  also the offload table: transfer bandwidth (pinned, pageable) and the call\n"
              "             with ordinary and with pinned arrays over the ideal transfer time; on by\n"
              "             default where the device has memory of its own (not zero-copy)\n"
              "  --kernel-only  only the copy and kernel columns: no call through host memory, no host-path\n"
              "             table (tuning sweeps, where each setting's run should cost seconds)\n"
              "  exit 0 success, 2 bad usage, 3 the device, the library or host memory failed\n");
  return to == stderr ? 2 : 0;
}

int clxent_bench_main(int argc, char **argv) {
  static const char prog[] = "clxent bench";
  bench_opts o = {NULL, {{0, 0}}, 0, 10, 2, 0, CLXENT_FLOAT32, 0, 0, 0, 0, 0, 0};
  int quick = 0, host_path = 0, repeat_given = 0, kernel_only = 0;
  for (int i = 1; i < argc; ++i) {
    const char *flag = argv[i], *value = NULL, *why = NULL;
    const int takes_value = !strcmp(flag, "--device") || !strcmp(flag, "--shape") || !strcmp(flag, "--repeat") ||
                            !strcmp(flag, "--warmup") || !strcmp(flag, "--dtype") || !strcmp(flag, "--options");
    if (takes_value && !(value = tool_option_value(prog, argc, argv, &i))) return 2;
    if (!strcmp(flag, "--device")) o.device = value;
    else if (!strcmp(flag, "--shape")) {
      if (o.shape_count == MAX_SHAPES) {
        fprintf(stderr, "%s: --shape: at most %d shapes\n", prog, MAX_SHAPES);
        return 2;
      }
      why = tool_parse_shape(value, &o.shapes[o.shape_count++]);
    } else if (!strcmp(flag, "--repeat")) {
      why = tool_parse_int(value, 1, TOOL_MAX_REPEAT, &o.repeat);
      repeat_given = 1;
    } else if (!strcmp(flag, "--warmup")) why = tool_parse_int(value, 0, TOOL_MAX_WARMUP, &o.warmup);
    else if (!strcmp(flag, "--dtype")) {
      if (!strcmp(value, "f32")) o.dtype = CLXENT_FLOAT32;
      else if (!strcmp(value, "f16")) o.dtype = CLXENT_FLOAT16;
      else if (!strcmp(value, "bf16")) o.dtype = CLXENT_BFLOAT16;
      else why = "is not f32, f16 or bf16";
    } else if (!strcmp(flag, "--options")) {
      if (!parse_options(value, &o)) why = "is not a comma-separated list of weights,smoothing,zloss,softcap,lse,bias,all";
    } else if (!strcmp(flag, "--csv")) o.csv = 1;
    else if (!strcmp(flag, "--quick")) quick = 1;
    else if (!strcmp(flag, "--host-path")) host_path = 1;
    else if (!strcmp(flag, "--kernel-only")) kernel_only = 1;
    else if (!strcmp(flag, "--help")) return bench_usage(stdout);
    else {
      fprintf(stderr, "%s: unknown argument %s\n", prog, flag);
      return bench_usage(stderr);
    }
    if (why) {
      fprintf(stderr, "%s: %s %s %s\n", prog, flag, value, why);
      return 2;
    }
  }
  if (kernel_only && host_path) {
    fprintf(stderr, "%s: --kernel-only and --host-path exclude each other\n", prog);
    return 2;
  }
  if (o.shape_count == 0) {
    static const shape full[] = {{8192, 32000}, {2048, 128256}, {65536, 1000}, {1048576, 10}, {1, 10}};
    static const shape small[] = {{1024, 32000}, {16384, 1000}, {1, 10}};
    const shape *list = quick ? small : full;
    o.shape_count = quick ? 3 : 5;
    for (int s = 0; s < o.shape_count; ++s) o.shapes[s] = list[s];
    if (quick && !repeat_given) o.repeat = 5;
  }
  /* Every byte count of every shape before any context or allocation: one that overflows size_t
   * is bad usage (2); one beyond this machine's memory fails here (3) rather than in the middle of
   * the run, or by the OOM killer once the arrays are touched. The host-path table's share is
   * checked again when it is known to run. */
  for (int s = 0; s < o.shape_count; ++s) {
    if (!bench_host_bytes(&o, &o.shapes[s], 1)) {
      fprintf(stderr, "%s: --shape %zux%zu: its arrays' bytes overflow size_t\n", prog, o.shapes[s].n,
              o.shapes[s].c);
      return 2;
    }
    const int st = tool_check_host_memory(prog, &o.shapes[s], bench_host_bytes(&o, &o.shapes[s], host_path));
    if (st) return st;
  }

  clxent_ctx *ctx;
  const double t_create = clxent_seconds();
  clxent_status st = clxent_create(&ctx, o.device);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent bench: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return 3;
  }
  const double t_created = clxent_seconds() - t_create;
  const size_t devices = clxent_device_count(ctx);
  clxent_info info = CLXENT_INFO_INIT; /* device 0's; the others' are printed below */
  st = clxent_get_info(ctx, 0, &info);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent bench: clxent_get_info: %s: %s\n", clxent_status_str(st), clxent_last_error(ctx));
    clxent_destroy(ctx);
    return 3;
  }
  /* one device: the device-resident columns on the context's own queue; several: the call is split
   * among them, and there is no one queue to measure on */
  device_side dev = {0};
  const int resident = devices == 1 && device_side_open(ctx, &dev);
  if (devices > 1) {
    printf("# %zu devices (%s); rows split at creation", devices, clxent_device_name(ctx));
    for (size_t k = 0; k < devices; ++k) printf("%s %.1f%%", k ? " :" : "", 100 * clxent_device_share(ctx, k));
    printf("\n# call: all of them; no copy and kernel columns (they need one device: --device with one of\n"
           "# them) and no host-path table\n");
    host_path = -1;
  } else if (!resident) {
    fprintf(stderr, "clxent bench: the context's queue or OpenCL context is not available\n");
    clxent_destroy(ctx);
    return 3;
  }
  if (kernel_only && !resident) {
    fprintf(stderr, "%s: --kernel-only needs one device (the kernel column runs on its queue)\n", prog);
    clxent_destroy(ctx);
    return 2;
  }
  if (kernel_only) host_path = -1;
  if (!host_path && !info.zero_copy) host_path = 1;
  char threads[32];
  printf("# context creation %.0f ms (kernels %s); zero-copy %s\n", t_created * 1e3,
         info.program_from_cache ? "from the program cache" : "built from source", info.zero_copy ? "on" : "off");
  if (devices == 1)
    printf("# device: %s; variant %s, vector width %u, group size %zu, row threads %s, exp %s; median of %d "
           "after %d warm-up\n",
           clxent_device_name(ctx), info.variant == CLXENT_VARIANT_ITEM ? "item-per-row" : "group-per-row",
           info.vector_width, info.group_size, row_threads_text(&info, threads, sizeof threads),
           exp_text(&info), o.repeat, o.warmup);
  else
    printf("# devices: %s; median of %d after %d warm-up\n", clxent_device_name(ctx), o.repeat, o.warmup);
  for (size_t k = 0; k < devices && devices > 1; ++k) {
    clxent_info each = CLXENT_INFO_INIT;
    if (clxent_get_info(ctx, k, &each) == CLXENT_OK)
      printf("# device %zu: variant %s, vector width %u, group size %zu, row threads %s, exp %s; zero-copy %s\n",
             k, each.variant == CLXENT_VARIANT_ITEM ? "item-per-row" : "group-per-row", each.vector_width,
             each.group_size, row_threads_text(&each, threads, sizeof threads), exp_text(&each),
             each.zero_copy ? "on" : "off");
  }
  printf("# storage %s; options:%s%s%s%s%s%s%s\n", dtype_names[o.dtype], o.weights ? " class_weight" : "",
         o.smoothing ? " label_smoothing=0.1" : "", o.zloss ? " z_loss=1e-4" : "", o.softcap ? " softcap=30" : "",
         o.lse ? " lse" : "", o.bias ? " bias_grad" : "",
         (o.weights | o.smoothing | o.zloss | o.softcap | o.lse | o.bias) ? "" : " none");
  printf("# bytes = logits read once + gradient written once; copy = a copy kernel (a float4 per work-item)\n"
         "# on the block; kernel = clxent_softmax_xent_mem on one block in device buffers\n");
  if (o.csv)
    printf("n,c,copy_GBps,kernel_ms,kernel_GBps,kernel_pct_copy%s\n", kernel_only ? "" : ",call_ms,call_GBps,call_pct_copy");
  else
    printf("%9s %7s | %9s | %9s %9s %6s%s\n", "n", "c", "copy GB/s", "kernel ms", "GB/s", "%copy",
           kernel_only ? "" : " |   call ms      GB/s  %copy");

  int status = 0, host_path_rows = 0;
  char host_rows[MAX_SHAPES][192];
  for (int s = 0; s < o.shape_count && !status; ++s) {
    const size_t n = o.shapes[s].n, c = o.shapes[s].c, elems = n * c;
    const size_t esize = o.dtype == CLXENT_FLOAT32 ? sizeof(float) : sizeof(uint16_t);
    fprintf(stderr, "bench: shape %d/%d: %zux%zu\n", s + 1, o.shape_count, n, c);
    float *logits = malloc(elems * sizeof(float)), *grad = malloc(elems * sizeof(float));
    float *weights = malloc(c * sizeof(float)), *lse = malloc(n * sizeof(float)), *bias = malloc(c * sizeof(float));
    uint16_t *stored = o.dtype == CLXENT_FLOAT32 ? NULL : malloc(elems * sizeof(uint16_t));
    int32_t *labels = malloc(n * sizeof(int32_t));
    if (!logits || !grad || !labels || !weights || !lse || !bias || (o.dtype != CLXENT_FLOAT32 && !stored)) {
      fprintf(stderr, "clxent bench: out of host memory for %zux%zu\n", n, c);
      free(logits), free(grad), free(labels), free(weights), free(lse), free(bias), free(stored);
      status = 3;
      break;
    }
    for (size_t j = 0; j < c; ++j) weights[j] = 0.5f + (float)(j % 7) / 4.0f;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < elems; ++k) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      logits[k] = (float)((double)(x >> 40) / (double)(1u << 24) * 8.0 - 4.0);
    }
    for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)((i * 2654435761u) % c);
    if (stored)
      for (size_t k = 0; k < elems; ++k) stored[k] = clxent_tool_to_storage(logits[k], o.dtype);
    const void *call_logits = stored ? (const void *)stored : (const void *)logits;
    float loss;
    clxent_opts call_opts;
    bench_call_opts(&o, weights, &call_opts);
    double t_copy = -1, t_kernel = -1, t_call = -1;

    /* Device-resident part: one block of rows, as the streaming path would launch it, in buffers of
     * the tool's own (released before the call below is timed). */
    size_t rows = (size_t)(info.block_bytes / (c * esize));
    if (rows == 0 && c * esize <= info.max_alloc) rows = 1;
    if (rows > n) rows = n;
    const size_t block_bytes = rows * c * esize;
    if (resident && rows > 0) {
      enum { IN, GRAD, LABELS, LOSS, LSE, BIAS, BUFFERS };
      cl_mem m[BUFFERS] = {NULL};
      m[IN] = make_buffer(&dev, block_bytes, call_logits);
      m[GRAD] = make_buffer(&dev, block_bytes, NULL);
      m[LABELS] = make_buffer(&dev, rows * sizeof(int32_t), labels);
      m[LOSS] = make_buffer(&dev, sizeof(float), NULL);
      m[LSE] = o.lse ? make_buffer(&dev, rows * sizeof(float), NULL) : NULL;
      m[BIAS] = o.bias ? make_buffer(&dev, c * sizeof(float), NULL) : NULL;
      clxent_mem_ex mex = clxent_mem_ex_default();
      mex.dtype = o.dtype, mex.lse = m[LSE], mex.bias_grad = m[BIAS];
      if (m[IN] && m[GRAD] && m[LABELS] && m[LOSS] && (m[LSE] || !o.lse) && (m[BIAS] || !o.bias)) {
        TIME_MEDIAN(t_kernel, &o, kernel_once(ctx, &dev, rows, c, m[IN], m[LABELS], &call_opts, &mex, m[LOSS], m[GRAD]));
        if (t_kernel < 0) fprintf(stderr, "clxent bench: %zux%zu, kernel: %s\n", rows, c, clxent_last_error(ctx));
        /* The copy reuses the input and gradient blocks: same sizes, same memory. */
        const size_t float4s = block_bytes / 16;
        if (float4s > 0 && dev.copy_kernel) TIME_MEDIAN(t_copy, &o, copy_once(&dev, m[IN], m[GRAD], float4s));
      } else {
        fprintf(stderr, "clxent bench: %zux%zu: device buffers of %zu bytes could not be made\n", rows, c, block_bytes);
      }
      release_buffers(m, BUFFERS);
    }
    clxent_ex ex = clxent_ex_default();
    ex.dtype = o.dtype, ex.lse = o.lse ? lse : NULL, ex.bias_grad = o.bias ? bias : NULL;
    if (!kernel_only)
      TIME_MEDIAN(t_call, &o, clxent_softmax_xent_ex(ctx, n, c, call_logits, labels, &call_opts, &ex, &loss, grad));
    if (t_call < 0 && !kernel_only) {
      fprintf(stderr, "clxent bench: %zux%zu: %s\n", n, c, clxent_last_error(ctx));
      status = 3;
    }

    const double bytes = 2.0 * (double)elems * (double)esize, kbytes = 2.0 * (double)block_bytes;
    const double copy_bw = t_copy > 0 ? 2.0 * (double)(block_bytes / 16 * 16) / t_copy / 1e9 : NAN;
    const double k_bw = t_kernel > 0 ? kbytes / t_kernel / 1e9 : NAN;
    const double call_bw = t_call > 0 ? bytes / t_call / 1e9 : NAN;
    const double kernel_ms = t_kernel > 0 ? t_kernel * 1e3 : NAN, call_ms = t_call > 0 ? t_call * 1e3 : NAN;
    if (kernel_only && t_kernel < 0) status = 3; /* the one timing this run makes: its failure is the run's */
    if (o.csv)
      printf("%zu,%zu,%.2f,%.4f,%.2f,%.1f", n, c, copy_bw, kernel_ms, k_bw, 100 * k_bw / copy_bw);
    else
      printf("%9zu %7zu | %9.2f | %9.3f %9.2f %5.1f%%", n, c, copy_bw, kernel_ms, k_bw, 100 * k_bw / copy_bw);
    if (kernel_only)
      printf("\n");
    else if (o.csv)
      printf(",%.4f,%.2f,%.1f\n", call_ms, call_bw, 100 * call_bw / copy_bw);
    else
      printf(" | %9.3f %9.2f %5.1f%%\n", call_ms, call_bw, 100 * call_bw / copy_bw);
    if (n * c <= 1024 && t_call > 0) printf("# %zux%zu: one call's host overhead %.1f us\n", n, c, t_call * 1e6);
    fflush(stdout);
    if (host_path > 0 && !status && n * c > 1024) { /* the offload table, printed after this one */
      double t_plain = t_call;
      if (o.dtype != CLXENT_FLOAT32 || o.weights || o.smoothing || o.zloss || o.softcap || o.lse || o.bias)
        TIME_MEDIAN(t_plain, &o, clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &loss, grad));
      if (t_plain < 0) {
        fprintf(stderr, "clxent bench: %zux%zu, plain f32 call: %s\n", n, c, clxent_last_error(ctx));
        status = 3;
      } else if (!(status = tool_check_host_memory("clxent bench (host-path table)", &o.shapes[s],
                                                    bench_host_bytes(&o, &o.shapes[s], 1)))) {
        status = host_path_row(ctx, &dev, &info, &o, n, c, logits, labels, t_plain, host_rows[host_path_rows],
                               sizeof host_rows[0]);
        if (!status) ++host_path_rows; /* a failed row is not printed */
      }
    }
    free(logits), free(grad), free(labels), free(weights), free(lse), free(bias), free(stored);
  }
  if (devices > 1) { /* the split the calls settled on (refined from their timings) */
    printf("# rows split after the calls");
    for (size_t k = 0; k < devices; ++k) printf("%s %.1f%%", k ? " :" : "", 100 * clxent_device_share(ctx, k));
    printf("\n");
  }
  if (host_path_rows) {
    printf("# host path (%s): GB/s of transfers between host and device, pinned then pageable; ideal = bytes up\n"
           "# / pinned up + bytes down / pinned down; the call (f32, MEAN, gradient) with ordinary arrays and with\n"
           "# clxent_host_alloc arrays, each over the ideal (target: at most 1.25x)\n",
           info.zero_copy ? "zero-copy: the call itself transfers nothing" : "pipelined transfers");
    if (o.csv)
      printf("table,n,c,up_pinned_GBps,down_pinned_GBps,up_pageable_GBps,down_pageable_GBps,ideal_ms,call_ms,"
             "call_over_ideal,pinned_call_ms,pinned_call_over_ideal\n");
    else
      printf("%9s %7s | %7s %7s | %7s %7s | %9s | %9s %7s | %9s %7s\n", "n", "c", "up pin", "down pin", "up page",
             "down pg", "ideal ms", "call ms", "/ideal", "pinned ms", "/ideal");
    for (int r = 0; r < host_path_rows; ++r) fputs(host_rows[r], stdout);
  }
  if (resident) device_side_close(&dev);
  clxent_destroy(ctx);
  return status;
}
