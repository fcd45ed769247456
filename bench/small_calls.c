/*
 * clxent_bench_small_calls: where the time of one small call goes (issue 14). A call of
 * clxent_softmax_xent (float32, MEAN, loss and gradient) on a small batch is mostly fixed cost:
 * checks, wrapping the caller's arrays as buffers, setting kernel arguments, the launches, and
 * waiting for the device's threads. This program times the call in a loop (median of many calls,
 * back to back and after an idle pause, where the device's worker threads have gone to sleep) and
 * splits each call into its pieces.
 *
 * The pieces come from the library's PIECE marks (host/internal.h): this program links its own
 * static copy of the library built with CLXENT_PIECES, in which every mark records the time at
 * that step of a call; a piece is the time from the previous mark (or the call's start) to its
 * own. The marks cost a clock read each (~25 ns), in this copy only.
 *
 * Beside the call, two raw OpenCL round trips on the context's own queue give the floor of any
 * call that waits for its device: clFinish with nothing queued, and one no-op command (a marker)
 * and clFinish.
 *
 * Bench only (not installed); docs/PERFORMANCE.md, "Small calls", has the command and a table.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/util.h"
#include "internal.h"

#define MAX_SHAPES 8
#define MAX_KEYS 32

static int usage(FILE *to) {
  fprintf(to, "usage: clxent_bench_small_calls [--device D] [--shape NxC]... [--calls K] [--idle-us U]\n"
              "  times clxent_softmax_xent (float32, MEAN, loss and gradient) K times back to back and K times\n"
              "  after U microseconds idle each, and prints the median of each piece of the call\n"
              "  --device   as clxent_create\n"
              "  --shape    N rows x C classes, up to 8 shapes (default 1x10 and 64x1000)\n"
              "  --calls    timed calls per shape and mode, 1..100000 (default 2001)\n"
              "  --idle-us  pause before each call of the second mode, 0..1000000 (default 2000; 0 skips it)\n"
              "  exit 0 success, 2 bad usage, 3 the device, the library or host memory failed\n");
  return to == stderr ? 2 : 0;
}

/* A piece of a call: the step a mark names, with its detail (a kernel's name). */
typedef struct key {
  const char *what, *detail;
} key;

typedef struct table {
  key keys[MAX_KEYS];
  int count;
  double *times[MAX_KEYS]; /* [calls] the piece's time in each call (0 where it did not occur) */
  double *total;           /* [calls] the whole call */
} table;

static int key_index(table *t, const char *what, const char *detail, int calls) {
  for (int k = 0; k < t->count; ++k)
    if (t->keys[k].what == what && t->keys[k].detail == detail) return k;
  if (t->count == MAX_KEYS) return -1;
  double *v = calloc((size_t)calls, sizeof *v);
  if (!v) return -1;
  t->keys[t->count] = (key){what, detail};
  t->times[t->count] = v;
  return t->count++;
}

static void table_free(table *t) {
  for (int k = 0; k < t->count; ++k) free(t->times[k]);
  free(t->total);
  memset(t, 0, sizeof *t);
}

static void pause_us(long us) {
  if (us <= 0) return;
  struct timespec d = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&d, &d) != 0) {
  }
}

/* `calls` calls, each after `idle_us` of sleep, into t. Returns 0 on a failed call. */
static int time_calls(clxent_ctx *ctx, size_t n, size_t c, const float *logits, const int32_t *labels, float *grad,
                      int calls, long idle_us, table *t) {
  static const char entry[] = "checks and plan";
  static const char tail[] = "return to the caller";
  memset(t, 0, sizeof *t);
  if (!(t->total = calloc((size_t)calls, sizeof *t->total))) return 0;
  for (int r = 0; r < calls; ++r) {
    float loss;
    pause_us(idle_us);
    ctx->piece_count = 0;
    const double t0 = clxent_seconds();
    const clxent_status st = clxent_softmax_xent(ctx, n, c, logits, labels, NULL, &loss, grad);
    const double t1 = clxent_seconds();
    if (st != CLXENT_OK) return 0;
    t->total[r] = t1 - t0;
    double prev = t0;
    for (size_t p = 0; p <= ctx->piece_count; ++p) {
      const int last = p == ctx->piece_count;
      const char *what = last ? tail : ctx->pieces[p].what, *detail = last ? NULL : ctx->pieces[p].detail;
      const double at = last ? t1 : ctx->pieces[p].t;
      const int k = key_index(t, what == NULL ? entry : what, detail, calls);
      if (k < 0) return 0;
      t->times[k][r] += at - prev;
      prev = at;
    }
  }
  return 1;
}

/* Raw round trips on the context's queue: clFinish alone, and a marker + clFinish. */
static int time_round_trips(clxent_ctx *ctx, int calls, long idle_us, double *finish_only, double *marker) {
  double *a = malloc((size_t)calls * sizeof *a), *b = malloc((size_t)calls * sizeof *b);
  int ok = a && b;
  for (int r = 0; r < calls && ok; ++r) {
    pause_us(idle_us);
    double t0 = clxent_seconds();
    ok = clFinish(ctx->queue) == CL_SUCCESS;
    a[r] = clxent_seconds() - t0;
    pause_us(idle_us);
    t0 = clxent_seconds();
    ok = ok && clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, NULL) == CL_SUCCESS &&
         clFinish(ctx->queue) == CL_SUCCESS;
    b[r] = clxent_seconds() - t0;
  }
  if (ok) *finish_only = clxent_median(a, calls), *marker = clxent_median(b, calls);
  free(a), free(b);
  return ok;
}

static void print_row(const char *label, const char *detail, double a, double b, int two) {
  char name[96];
  snprintf(name, sizeof name, "%s%s%s%s", label, detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
  if (two) printf("  %-52s %10.1f %10.1f\n", name, a * 1e6, b * 1e6);
  else printf("  %-52s %10.1f\n", name, a * 1e6);
}

int main(int argc, char **argv) {
  static const char prog[] = "clxent_bench_small_calls";
  const char *device = NULL;
  tool_shape shapes[MAX_SHAPES];
  int shape_count = 0, calls = 2001, idle_us = 2000;
  for (int i = 1; i < argc; ++i) {
    const char *flag = argv[i], *value = NULL, *why = NULL;
    const int takes_value = !strcmp(flag, "--device") || !strcmp(flag, "--shape") || !strcmp(flag, "--calls") ||
                            !strcmp(flag, "--idle-us");
    if (takes_value && !(value = tool_option_value(prog, argc, argv, &i))) return 2;
    if (!strcmp(flag, "--device")) device = value;
    else if (!strcmp(flag, "--shape")) {
      if (shape_count == MAX_SHAPES) {
        fprintf(stderr, "%s: --shape: at most %d shapes\n", prog, MAX_SHAPES);
        return 2;
      }
      why = tool_parse_shape(value, &shapes[shape_count++]);
    } else if (!strcmp(flag, "--calls")) why = tool_parse_int(value, 1, 100000, &calls);
    else if (!strcmp(flag, "--idle-us")) why = tool_parse_int(value, 0, 1000000, &idle_us);
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
  if (shape_count == 0) shapes[0] = (tool_shape){1, 10}, shapes[1] = (tool_shape){64, 1000}, shape_count = 2;
  for (int s = 0; s < shape_count; ++s) {
    size_t bytes = 0;
    if (!tool_add_bytes(&bytes, shapes[s].n * shapes[s].c, 2 * sizeof(float)) ||
        !tool_add_bytes(&bytes, shapes[s].n, sizeof(int32_t))) {
      fprintf(stderr, "%s: --shape %zux%zu: its arrays' bytes overflow size_t\n", prog, shapes[s].n, shapes[s].c);
      return 2;
    }
    const int st = tool_check_host_memory(prog, &shapes[s], bytes);
    if (st) return st;
  }

  clxent_ctx *ctx;
  if (clxent_create(&ctx, device) != CLXENT_OK) {
    fprintf(stderr, "%s: %s\n", prog, clxent_last_error(NULL));
    return 3;
  }
  if (ctx->group) {
    fprintf(stderr, "%s: one device only (the pieces are those of the one-device engine)\n", prog);
    clxent_destroy(ctx);
    return 2;
  }
  const int two = idle_us > 0;
  printf("# %s; clxent_softmax_xent, float32, MEAN, loss + gradient; medians of %d calls, in microseconds\n",
         clxent_device_name(ctx), calls);
  int status = 0;
  for (int s = 0; s < shape_count && !status; ++s) {
    const size_t n = shapes[s].n, c = shapes[s].c;
    float *logits = malloc(n * c * sizeof *logits), *grad = malloc(n * c * sizeof *grad);
    int32_t *labels = malloc(n * sizeof *labels);
    table busy = {0}, idle = {0};
    if (!logits || !grad || !labels) {
      fprintf(stderr, "%s: out of host memory for %zux%zu\n", prog, n, c);
      status = 3;
    }
    for (size_t k = 0; !status && k < n * c; ++k) logits[k] = (float)((k * 2654435761u) % 1000) * 0.01f - 5.0f;
    for (size_t i = 0; !status && i < n; ++i) labels[i] = (int32_t)(i * 7919 % c);
    table warm = {0};
    if (!status && (!time_calls(ctx, n, c, logits, labels, grad, 50, 0, &warm) ||
                    !time_calls(ctx, n, c, logits, labels, grad, calls, 0, &busy) ||
                    (two && !time_calls(ctx, n, c, logits, labels, grad, calls, idle_us, &idle)))) {
      fprintf(stderr, "%s: %zux%zu: %s\n", prog, n, c, clxent_last_error(ctx));
      status = 3;
    }
    double finish[2] = {0, 0}, marker[2] = {0, 0};
    if (!status && (!time_round_trips(ctx, calls, 0, &finish[0], &marker[0]) ||
                    (two && !time_round_trips(ctx, calls, idle_us, &finish[1], &marker[1])))) {
      fprintf(stderr, "%s: clFinish or clEnqueueMarkerWithWaitList failed\n", prog);
      status = 3;
    }
    if (!status) {
      char idle_label[32];
      snprintf(idle_label, sizeof idle_label, "%d us idle", idle_us);
      printf("\n%zu x %zu\n  %-52s %10s", n, c, "piece (median us)", "busy");
      printf(two ? " %10s\n" : "\n", idle_label);
      double sum[2] = {0, 0};
      for (int k = 0; k < busy.count; ++k) {
        double b = clxent_median(busy.times[k], calls), d = 0;
        for (int j = 0; two && j < idle.count; ++j)
          if (idle.keys[j].what == busy.keys[k].what && idle.keys[j].detail == busy.keys[k].detail)
            d = clxent_median(idle.times[j], calls);
        sum[0] += b, sum[1] += d;
        print_row(busy.keys[k].what, busy.keys[k].detail, b, d, two);
      }
      print_row("sum of the pieces' medians", NULL, sum[0], sum[1], two);
      print_row("whole call", NULL, clxent_median(busy.total, calls), two ? clxent_median(idle.total, calls) : 0, two);
      print_row("raw: clFinish, nothing queued", NULL, finish[0], finish[1], two);
      print_row("raw: one marker + clFinish", NULL, marker[0], marker[1], two);
      fflush(stdout);
    }
    table_free(&warm), table_free(&busy), table_free(&idle);
    free(logits), free(grad), free(labels);
  }
  clxent_destroy(ctx);
  return status;
}
