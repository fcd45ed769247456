/*
 * clxent_bench_c_loop: the plain C loop (bench/c_loop.c, built -O3 -march=native -ffast-math with
 * OpenMP) against the public call clxent_softmax_xent (MEAN, loss + gradient), in one process,
 * interleaved: every round times both, alternating which goes first, so that a drift of the
 * machine (clock, other load) falls on both alike. Per shape it prints the median of each and the
 * median (and range) of the per-round ratio C loop time / call time. Meaningful where the device
 * is this CPU (PoCL); on a GPU it compares different hardware.
 *
 * A bench program of the source tree: not installed, and not part of the `clxent` tool, so that
 * the installed tool carries no -march=native code.
 */
#define CLXENT_EXPERIMENTAL_API /* clxent_get_info: is the device a CPU */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/util.h"
#include "c_loop.h"
#include "clxent.h"

#define MAX_SHAPES 16
#define MAX_REPEAT TOOL_MAX_REPEAT

static int usage(FILE *to) {
  fprintf(to, "usage: clxent_bench_c_loop [--device D] [--shape NxC]... [--repeat R] [--warmup W] [--csv] [--quick]\n"
              "  times the plain C loop (bench/c_loop.c) and clxent_softmax_xent (float32, MEAN, loss and\n"
              "  gradient) in alternating rounds; prints the medians and the per-round ratio C loop / call\n"
              "  --device   as clxent_create (the comparison means something on a CPU device)\n"
              "  --shape    N rows x C classes, 1 <= C <= 2147483647, up to 16 shapes; default shapes:\n"
              "             8192x32000 2048x128256 65536x1000 1048576x10 1x10; --quick: small shapes\n"
              "  --repeat   rounds, 1..256 (default 10; 5 with --quick); --warmup W rounds first, 0..1000\n"
              "             (default 2)\n"
              "  exit 0 success, 1 the two losses differ, 2 bad usage, 3 the device, the library or host\n"
              "  memory failed\n");
  return to == stderr ? 2 : 0;
}

/* One round: both timed, `call_first` choosing the order. Returns 0 on failure of the call. */
static int round_once(clxent_ctx *ctx, size_t n, size_t c, const float *logits, const int32_t *labels,
                      float *grad_call, float *grad_loop, int call_first, double *t_call, double *t_loop,
                      float *loss_call, double *loss_loop) {
  for (int half = 0; half < 2; ++half) {
    const double t0 = clxent_seconds();
    if ((half == 0) == (call_first != 0)) {
      if (clxent_softmax_xent(ctx, n, c, logits, labels, NULL, loss_call, grad_call) != CLXENT_OK) return 0;
      *t_call = clxent_seconds() - t0;
    } else {
      *loss_loop = clxent_c_loop_softmax_xent(n, c, logits, labels, grad_loop);
      *t_loop = clxent_seconds() - t0;
    }
  }
  return 1;
}

int main(int argc, char **argv) {
  static const char prog[] = "clxent_bench_c_loop";
  const char *device = NULL;
  tool_shape shapes[MAX_SHAPES];
  int shape_count = 0, repeat = 10, warmup = 2, csv = 0, quick = 0, repeat_given = 0;
  for (int i = 1; i < argc; ++i) {
    const char *flag = argv[i], *value = NULL, *why = NULL;
    const int takes_value = !strcmp(flag, "--device") || !strcmp(flag, "--shape") || !strcmp(flag, "--repeat") ||
                            !strcmp(flag, "--warmup");
    if (takes_value && !(value = tool_option_value(prog, argc, argv, &i))) return 2;
    if (!strcmp(flag, "--device")) device = value;
    else if (!strcmp(flag, "--shape")) {
      if (shape_count == MAX_SHAPES) {
        fprintf(stderr, "%s: --shape: at most %d shapes\n", prog, MAX_SHAPES);
        return 2;
      }
      why = tool_parse_shape(value, &shapes[shape_count++]);
    } else if (!strcmp(flag, "--repeat")) {
      why = tool_parse_int(value, 1, MAX_REPEAT, &repeat);
      repeat_given = 1;
    } else if (!strcmp(flag, "--warmup")) why = tool_parse_int(value, 0, TOOL_MAX_WARMUP, &warmup);
    else if (!strcmp(flag, "--csv")) csv = 1;
    else if (!strcmp(flag, "--quick")) quick = 1;
    else if (!strcmp(flag, "--help")) return usage(stdout);
    else {
      fprintf(stderr, "%s: unknown argument %s\n", prog, flag);
      return usage(stderr);
    }
    if (why) {
      fprintf(stderr, "%s: %s %s %s\n", prog, flag, value, why);
      return 2;
    }
  }
  if (shape_count == 0) {
    static const tool_shape full[] = {{8192, 32000}, {2048, 128256}, {65536, 1000}, {1048576, 10}, {1, 10}};
    static const tool_shape small[] = {{1024, 32000}, {16384, 1000}, {1, 10}};
    shape_count = quick ? 3 : 5;
    for (int s = 0; s < shape_count; ++s) shapes[s] = quick ? small[s] : full[s];
    if (quick && !repeat_given) repeat = 5;
  }
  /* Every shape's bytes (logits, two gradients, labels) before any context or allocation: an
   * overflow of size_t is bad usage (2); more than this machine's memory fails here (3). */
  for (int s = 0; s < shape_count; ++s) {
    size_t bytes = 0;
    if (!tool_add_bytes(&bytes, shapes[s].n * shapes[s].c, 3 * sizeof(float)) ||
        !tool_add_bytes(&bytes, shapes[s].n, sizeof(int32_t))) {
      fprintf(stderr, "%s: --shape %zux%zu: its arrays' bytes overflow size_t\n", prog, shapes[s].n, shapes[s].c);
      return 2;
    }
    const int st = tool_check_host_memory(prog, &shapes[s], bytes);
    if (st) return st;
  }

  clxent_ctx *ctx;
  const clxent_status st = clxent_create(&ctx, device);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent_bench_c_loop: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return 3;
  }
  clxent_info info = CLXENT_INFO_INIT;
  const int is_cpu = clxent_get_info(ctx, 0, &info) == CLXENT_OK && info.is_cpu;
  printf("# device: %s%s; %d rounds after %d warm-up, the order of the two alternating\n",
         clxent_device_name(ctx), is_cpu ? "" : " (not a CPU: the C loop runs on other hardware)", repeat, warmup);
  printf("# call = clxent_softmax_xent (f32, MEAN, loss + gradient); C loop = bench/c_loop.c (-O3 -march=native\n"
         "# -ffast-math%s); bytes = logits read once + gradient written once; ratio = C loop / call per round\n",
#if defined(CLXENT_C_LOOP_OPENMP)
         ", OpenMP"
#else
         ", no OpenMP: one thread"
#endif
  );
  if (csv) printf("n,c,call_ms,call_GBps,c_loop_ms,c_loop_GBps,ratio_median,ratio_min,ratio_max,loss_rel_diff\n");
  else
    printf("%9s %7s | %9s %9s | %9s %9s | %7s %12s | %9s\n", "n", "c", "call ms", "GB/s", "C loop ms", "GB/s",
           "C/call", "range", "loss diff");

  int status = 0;
  for (int s = 0; s < shape_count && !status; ++s) {
    const size_t n = shapes[s].n, c = shapes[s].c, elems = n * c;
    fprintf(stderr, "clxent_bench_c_loop: shape %d/%d: %zux%zu\n", s + 1, shape_count, n, c);
    float *logits = malloc(elems * sizeof(float)), *grad_call = malloc(elems * sizeof(float));
    float *grad_loop = malloc(elems * sizeof(float));
    int32_t *labels = malloc(n * sizeof(int32_t));
    if (!logits || !grad_call || !grad_loop || !labels) {
      fprintf(stderr, "clxent_bench_c_loop: out of host memory for %zux%zu\n", n, c);
      free(logits), free(grad_call), free(grad_loop), free(labels);
      status = 3;
      break;
    }
    /* the inputs of `clxent bench`: the same generator, so that the two programs time the same data */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < elems; ++k) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      logits[k] = (float)((double)(x >> 40) / (double)(1u << 24) * 8.0 - 4.0);
    }
    for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)((i * 2654435761u) % c);

    double t_call[MAX_REPEAT], t_loop[MAX_REPEAT], ratio[MAX_REPEAT], loss_loop = 0, dummy_loop;
    float loss_call = 0, dummy_call;
    int ok = 1;
    for (int w = 0; w < warmup && ok; ++w)
      ok = round_once(ctx, n, c, logits, labels, grad_call, grad_loop, w % 2 == 0, &dummy_loop, &dummy_loop,
                      &dummy_call, &dummy_loop);
    for (int r = 0; r < repeat && ok; ++r) {
      ok = round_once(ctx, n, c, logits, labels, grad_call, grad_loop, r % 2 == 0, &t_call[r], &t_loop[r],
                      &loss_call, &loss_loop);
      if (ok) ratio[r] = t_loop[r] / t_call[r];
    }
    if (!ok) {
      fprintf(stderr, "clxent_bench_c_loop: %zux%zu: %s\n", n, c, clxent_last_error(ctx));
      status = 3;
    } else {
      const double call = clxent_median(t_call, repeat), loop = clxent_median(t_loop, repeat);
      const double r_med = clxent_median(ratio, repeat), r_min = ratio[0], r_max = ratio[repeat - 1]; /* sorted */
      const double bytes = 2.0 * (double)elems * sizeof(float);
      const double diff = fabs((double)loss_call - loss_loop) / (fabs(loss_loop) > 1e-30 ? fabs(loss_loop) : 1.0);
      if (csv)
        printf("%zu,%zu,%.4f,%.2f,%.4f,%.2f,%.3f,%.3f,%.3f,%.2e\n", n, c, call * 1e3, bytes / call / 1e9, loop * 1e3,
               bytes / loop / 1e9, r_med, r_min, r_max, diff);
      else
        printf("%9zu %7zu | %9.3f %9.2f | %9.3f %9.2f | %6.2fx %5.2f..%5.2fx | %9.1e\n", n, c, call * 1e3,
               bytes / call / 1e9, loop * 1e3, bytes / loop / 1e9, r_med, r_min, r_max, diff);
      fflush(stdout);
      if (!(diff <= 1e-4)) { /* the two must do the same work */
        fprintf(stderr, "clxent_bench_c_loop: %zux%zu: losses differ: call %.7g, C loop %.7g\n", n, c,
                (double)loss_call, loss_loop);
        status = 1;
      }
    }
    free(logits), free(grad_call), free(grad_loop), free(labels);
  }
  clxent_destroy(ctx);
  return status;
}
