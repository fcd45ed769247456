/*
 * clxent_bench_layout: what two of API 1.1's conveniences cost, measured interleaved in one process
 * (issue 15's README claims, backed by a committed command):
 *
 *   rows      clxent_softmax_xent_ex on N·S rows of C classes, [N·S][C] (the plain layout)
 *   argmax    the same call with ex.argmax and ex.correct filled (the argmax in the loss's own pass)
 *   strided   the same values in PyTorch's (N, C, S) layout read in place, ex.inner = S
 *
 * float32, MEAN, hard labels, loss and a gradient into its own array (not in place: the three
 * contenders then write the same bytes). Each round calls every contender once, in an order rotated
 * each round; the table gives each one's median and the median of the per-round ratios to `rows`.
 * Before timing, the three losses must agree to 1e-5 relative (the strided kernel sums in another
 * order) and the argmax call's gradient must equal the plain one bit for bit.
 *
 * Bench only (not installed). docs/PERFORMANCE.md and README.md quote it with its command.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/util.h"
#include "clxent.h"

#define MAX_SHAPES 8
#define MAX_ROUNDS 101
#define CONTENDERS 3

static const char *const names[CONTENDERS] = {"rows", "argmax", "strided"};

typedef struct layout_shape {
  size_t n, c, s; /* samples, classes, positions per sample */
} layout_shape;

static int usage(FILE *to) {
  fprintf(to, "usage: clxent_bench_layout [--device D] [--rounds R] NxCxS...\n"
              "  times rows / argmax / strided (see the source's header) on each shape, interleaved\n"
              "  --device  as clxent_create (default: the default device)\n"
              "  --rounds  1..101 (default 15)\n"
              "  NxCxS     samples x classes x positions, up to 8 (default 64x21x4096 64x150x1024 16x1000x256)\n"
              "  exit 0 success, 2 bad usage, 3 the device, the library or host memory failed, 4 results disagree\n");
  return to == stderr ? 2 : 0;
}

static int parse_shape(const char *text, layout_shape *s) {
  unsigned long long n, c, p;
  char tail;
  if (sscanf(text, "%llux%llux%llu%c", &n, &c, &p, &tail) != 3 || !n || !c || !p) return 0;
  if (n > (1ull << 20) || c > (1ull << 20) || p > (1ull << 20) || n * c * p > (1ull << 28)) return 0;
  *s = (layout_shape){(size_t)n, (size_t)c, (size_t)p};
  return 1;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int k) {
  qsort(v, (size_t)k, sizeof *v, cmp_double);
  return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

typedef struct buffers {
  float *rows, *strided, *grad, *grad_check, loss;
  int32_t *labels, *argmax;
  uint64_t correct;
} buffers;

/* One call of contender k into b->grad (b->loss). */
static clxent_status call(clxent_ctx *ctx, const layout_shape *s, int k, buffers *b) {
  clxent_opts o = clxent_opts_default();
  clxent_ex ex = clxent_ex_default();
  if (k == 1) ex.argmax = b->argmax, ex.correct = &b->correct;
  if (k == 2) {
    ex.inner = s->s;
    return clxent_softmax_xent_ex(ctx, s->n, s->c, b->strided, b->labels, &o, &ex, &b->loss, b->grad);
  }
  return clxent_softmax_xent_ex(ctx, s->n * s->s, s->c, b->rows, b->labels, &o, &ex, &b->loss, b->grad);
}

/* Fills both layouts with the same values, the labels, and checks the contenders agree. 0 ok. */
static int prepare(clxent_ctx *ctx, const layout_shape *s, buffers *b) {
  const size_t rows = s->n * s->s;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < s->n; ++i)
    for (size_t p = 0; p < s->s; ++p) {
      for (size_t j = 0; j < s->c; ++j) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float z = (float)((double)(x >> 11) / 9007199254740992.0 * 8.0 - 4.0);
        b->rows[(i * s->s + p) * s->c + j] = z;
        b->strided[(i * s->c + j) * s->s + p] = z;
      }
      b->labels[i * s->s + p] = (int32_t)(x % s->c);
    }
  float loss[CONTENDERS];
  for (int k = 0; k < CONTENDERS; ++k) {
    if (call(ctx, s, k, b) != CLXENT_OK) return 3;
    loss[k] = b->loss;
    if (k == 0) memcpy(b->grad_check, b->grad, rows * s->c * sizeof(float));
    if (k == 1 && memcmp(b->grad_check, b->grad, rows * s->c * sizeof(float))) {
      fprintf(stderr, "clxent_bench_layout: the argmax call's gradient differs from the plain one\n");
      return 4;
    }
  }
  for (int k = 1; k < CONTENDERS; ++k)
    if (!(fabsf(loss[k] - loss[0]) <= 1e-5f * fabsf(loss[0]))) {
      fprintf(stderr, "clxent_bench_layout: %s loss %.9g against rows %.9g\n", names[k], loss[k], loss[0]);
      return 4;
    }
  return 0;
}

static int run_shape(clxent_ctx *ctx, const layout_shape *s, int rounds) {
  const size_t rows = s->n * s->s, values = rows * s->c;
  buffers b = {0};
  b.rows = malloc(values * sizeof(float)), b.strided = malloc(values * sizeof(float));
  b.grad = malloc(values * sizeof(float)), b.grad_check = malloc(values * sizeof(float));
  b.labels = malloc(rows * sizeof(int32_t)), b.argmax = malloc(rows * sizeof(int32_t));
  int rc = 3;
  double t[CONTENDERS][MAX_ROUNDS], ratio[CONTENDERS][MAX_ROUNDS];
  if (!b.rows || !b.strided || !b.grad || !b.grad_check || !b.labels || !b.argmax) goto done;
  if ((rc = prepare(ctx, s, &b)) != 0) goto done;
  for (int k = 0; k < CONTENDERS; ++k) /* warm-up: each kernel built and its buffers grown */
    if (call(ctx, s, k, &b) != CLXENT_OK) goto done;
  for (int r = 0; r < rounds; ++r) {
    for (int q = 0; q < CONTENDERS; ++q) {
      const int k = (q + r) % CONTENDERS;
      const double t0 = clxent_seconds();
      if (call(ctx, s, k, &b) != CLXENT_OK) goto done;
      t[k][r] = clxent_seconds() - t0;
    }
    for (int k = 0; k < CONTENDERS; ++k) ratio[k][r] = t[k][r] / t[0][r];
  }
  for (int k = 0; k < CONTENDERS; ++k)
    printf("| %zu × %zu × %zu | %s | %.3f | %.2f |\n", s->n, s->c, s->s, names[k], 1e3 * median(t[k], rounds),
           median(ratio[k], rounds));
  rc = 0;
done:
  if (rc == 3) fprintf(stderr, "clxent_bench_layout: %s\n", clxent_last_error(ctx));
  free(b.rows), free(b.strided), free(b.grad), free(b.grad_check), free(b.labels), free(b.argmax);
  return rc;
}

int main(int argc, char **argv) {
  const char *device = NULL;
  int rounds = 15, count = 0;
  layout_shape shapes[MAX_SHAPES];
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--help")) return usage(stdout);
    if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      device = argv[++i];
    } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
      char *end;
      const long r = strtol(argv[++i], &end, 10);
      if (*end || r < 1 || r > MAX_ROUNDS) return usage(stderr);
      rounds = (int)r;
    } else if (count < MAX_SHAPES && parse_shape(argv[i], &shapes[count])) {
      ++count;
    } else {
      fprintf(stderr, "clxent_bench_layout: bad argument '%s'\n", argv[i]);
      return usage(stderr);
    }
  }
  if (!count) {
    static const layout_shape defaults[] = {{64, 21, 4096}, {64, 150, 1024}, {16, 1000, 256}};
    memcpy(shapes, defaults, sizeof defaults), count = 3;
  }
  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, device) != CLXENT_OK) {
    fprintf(stderr, "clxent_bench_layout: %s\n", clxent_last_error(NULL));
    return 3;
  }
  printf("# clxent_bench_layout, %d rounds, float32 MEAN, gradient not in place; ratio = median per-round time / rows\n",
         rounds);
  printf("| N × C × S | call | median ms | ratio to rows |\n|---|---|---|---|\n");
  int rc = 0;
  for (int i = 0; i < count && !rc; ++i) rc = run_shape(ctx, &shapes[i], rounds);
  clxent_destroy(ctx);
  return rc;
}
