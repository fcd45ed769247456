/*
 * Soak: many calls of mixed shapes, options and storage types on one context, then many
 * create/destroy cycles, printing the process's resident memory and open file descriptors as it
 * goes; exits 1 if either grows past a small allowance after the warm-up. Not part of the default
 * test run (it takes about a minute):
 *   ./build/tests/soak [--copy] [--device=D] [--split=W0,W1,...] [calls] [cycles]
 * calls and cycles 100000 and 1000 by default. The contexts are configured in code: --copy takes
 * the pipelined host path (zero_copy off), --device names the device(s) as clxent_create does
 * ("all" for every device), --split fixes the shares of a context over several devices. What is
 * not given comes from the CLXENT_* environment, as for any caller. Results are checked against a
 * loss computed once per shape, so a call that silently goes wrong also fails.
 */
#define _POSIX_C_SOURCE 200809L
#define CLXENT_EXPERIMENTAL_API /* clxent_tuning */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clxent.h"

static long rss_kib(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int open_fds(void) {
  int count = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) ++count;
  closedir(d);
  return count - 3; /* ., .. and the directory's own descriptor */
}

enum { SHAPES = 6 };
static const size_t shapes[SHAPES][2] = {{1, 10}, {7, 3}, {64, 1000}, {3, 4099}, {1000, 2}, {33, 129}};

/* "w0,w1,...": up to 16 positive weights (the library checks the rest); 0 on anything else. */
static size_t parse_split(const char *text, double *w) {
  size_t count = 0;
  for (const char *p = text;;) {
    char *end;
    const double x = strtod(p, &end);
    if (end == p || !(x > 0) || count == 16) return 0;
    w[count++] = x;
    if (*end == '\0') return count;
    if (*end != ',') return 0;
    p = end + 1;
  }
}

int main(int argc, char **argv) {
  const char *device = NULL;
  double split[16];
  clxent_tuning tuning = CLXENT_TUNING_INIT;
  clxent_config config = CLXENT_CONFIG_INIT;
  config.tuning = &tuning;
  int arg = 1;
  for (; arg < argc && !strncmp(argv[arg], "--", 2); ++arg) {
    if (!strcmp(argv[arg], "--copy")) tuning.zero_copy = CLXENT_OFF;
    else if (!strncmp(argv[arg], "--device=", 9)) device = argv[arg] + 9;
    else if (!strncmp(argv[arg], "--split=", 8) && (tuning.split_count = parse_split(argv[arg] + 8, split)))
      tuning.split = split;
    else {
      fprintf(stderr, "usage: soak [--copy] [--device=D] [--split=W0,W1,...] [calls] [cycles]\n");
      return 2;
    }
  }
  const long calls = argc > arg ? atol(argv[arg]) : 100000, cycles = argc > arg + 1 ? atol(argv[arg + 1]) : 1000;
  float *z = malloc(64 * 4099 * sizeof(float)), *g = malloc(64 * 4099 * sizeof(float)), w[4099];
  uint16_t *z16 = malloc(64 * 4099 * sizeof(uint16_t)), *g16 = malloc(64 * 4099 * sizeof(uint16_t));
  int32_t y[1000];
  if (!z || !g || !z16 || !g16) return 1;
  unsigned long long s = 7;
  for (size_t k = 0; k < 64 * 4099; ++k) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    z[k] = (float)((double)(s >> 40) / (double)(1 << 24) * 10 - 5);
    uint32_t bits;
    memcpy(&bits, &z[k], 4);
    z16[k] = (uint16_t)(bits >> 16); /* bfloat16, truncated */
  }
  for (int j = 0; j < 4099; ++j) w[j] = 0.5f + (float)(j % 5) / 4;
  for (int i = 0; i < 1000; ++i) y[i] = i % 2;

  clxent_ctx *ctx;
  if (clxent_create_ex(&ctx, device, &config) != CLXENT_OK) {
    fprintf(stderr, "soak: %s\n", clxent_last_error(NULL));
    return 1;
  }
  float expected[SHAPES][4];
  long rss_warm = 0;
  int fds_warm = 0, bad = 0;
  printf("soak: %ld calls on %s\n", calls, clxent_device_name(ctx));
  for (long k = 0; k < calls && !bad; ++k) {
    const int sh = (int)(k % SHAPES), variant = (int)((k / SHAPES) % 4);
    const size_t n = shapes[sh][0], c = shapes[sh][1];
    clxent_opts o = clxent_opts_default();
    clxent_ex ex = clxent_ex_default();
    float loss, lse[1000], bias[4099];
    if (variant == 1) o.class_weight = w, o.label_smoothing = 0.1f, ex.bias_grad = bias;
    if (variant == 2) o.z_loss = 1e-3f, o.softcap = 5.0f, ex.lse = lse;
    if (variant == 3) ex.dtype = CLXENT_BFLOAT16;
    const clxent_status st = clxent_softmax_xent_ex(ctx, n, c, variant == 3 ? (const void *)z16 : (const void *)z, y,
                                                    &o, &ex, &loss, variant == 3 ? (void *)g16 : (void *)g);
    if (st != CLXENT_OK) {
      fprintf(stderr, "soak: call %ld: %s\n", k, clxent_last_error(ctx));
      bad = 1;
    } else if (k < SHAPES * 4) {
      expected[sh][variant] = loss;
    } else if (memcmp(&loss, &expected[sh][variant], sizeof loss)) {
      fprintf(stderr, "soak: call %ld: loss %.9g, earlier %.9g\n", k, loss, expected[sh][variant]);
      bad = 1;
    }
    if (k == calls / 10) rss_warm = rss_kib(), fds_warm = open_fds();
    if (k % (calls / 10 ? calls / 10 : 1) == 0)
      printf("  call %7ld  rss %ld KiB  fds %d\n", k, rss_kib(), open_fds()), fflush(stdout);
  }
  const long rss_calls = rss_kib();
  const int fds_calls = open_fds();
  printf("  after %ld calls: rss %ld KiB (at 10%%: %ld), fds %d (at 10%%: %d)\n", calls, rss_calls, rss_warm, fds_calls,
         fds_warm);
  clxent_destroy(ctx);

  printf("soak: %ld create/destroy cycles\n", cycles);
  long rss_cycle_warm = 0;
  for (long k = 0; k < cycles && !bad; ++k) {
    if (clxent_create_ex(&ctx, device, &config) != CLXENT_OK) {
      fprintf(stderr, "soak: cycle %ld: %s\n", k, clxent_last_error(NULL));
      bad = 1;
      break;
    }
    float loss;
    if (clxent_softmax_xent(ctx, 7, 3, z, y, NULL, &loss, NULL) != CLXENT_OK) bad = 1;
    clxent_destroy(ctx);
    if (k == cycles / 10) rss_cycle_warm = rss_kib();
    if (k % (cycles / 10 ? cycles / 10 : 1) == 0)
      printf("  cycle %5ld  rss %ld KiB  fds %d\n", k, rss_kib(), open_fds()), fflush(stdout);
  }
  const long rss_end = rss_kib();
  printf("  after %ld cycles: rss %ld KiB (at 10%%: %ld), fds %d\n", cycles, rss_end, rss_cycle_warm, open_fds());
  /* growth allowance: 8 MiB of allocator slack; descriptors must not grow at all */
  if (rss_calls > rss_warm + 8192 || fds_calls > fds_warm || rss_end > rss_cycle_warm + 8192 ||
      open_fds() > fds_warm)
    bad = 1;
  printf("soak: %s\n", bad ? "FAILED" : "flat");
  free(z), free(g), free(z16), free(g16);
  return bad;
}
