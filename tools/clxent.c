/* clxent command-line tool: list devices, show the seed's worked examples, self-check, benchmark.
 * Exit status, every command: 0 success, 1 wrong results (demo, check), 2 bad usage (every argument
 * is checked before a device is opened), 3 the device, the library or host memory failed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "check.h"
#include "clxent_cl.h" /* the OpenCL headers: `devices` lists what clxent_create can select */
#include "util.h"

static int usage(FILE *to) {
  fprintf(to,
          "usage: clxent <command> [options]\n"
          "  devices                 list OpenCL platforms and devices with their key limits\n"
          "  demo   [--device D]     compute the seed's worked examples on the device and check them\n"
          "  check  [--device D] [--quiet]\n"
          "                          self-test: every storage type and option against a float64 reference\n"
          "  bench  [--device D] [--shape NxC]... [--repeat R] [--csv] [--quick] [--dtype T] [--options L]\n"
          "                          time the fused loss+gradient against the device's copy bandwidth\n"
          "D: gpu, cpu, P:D (platform:device index from `clxent devices`) or part of a device name;\n"
          "default: $CLXENT_DEVICE, else the first GPU, else any device. `clxent <command> --help` for more.\n"
          "Exit status: 0 success, 1 wrong results, 2 bad usage, 3 the device, the library or memory failed.\n");
  return to == stderr ? 2 : 0;
}

/* ------------------------------------------------------------------ devices */

static int cmd_devices(void) {
  cl_platform_id platforms[16];
  cl_uint np = 0;
  cl_int err = clGetPlatformIDs(16, platforms, &np);
  if (err != CL_SUCCESS || np == 0) {
    printf("no OpenCL platform found (clGetPlatformIDs returned %d%s); for the CPU: apt-get install "
           "pocl-opencl-icd\n",
           (int)err, err == -1001 ? ", CL_PLATFORM_NOT_FOUND_KHR" : "");
    return 3;
  }
  for (cl_uint p = 0; p < np && p < 16; ++p) {
    char pname[256] = "", pver[256] = "";
    clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetPlatformInfo(platforms[p], CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
    printf("platform %u: %s (%s)\n", p, pname, pver);
    cl_device_id devices[64];
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 64, devices, &nd) != CL_SUCCESS) continue;
    for (cl_uint d = 0; d < nd && d < 64; ++d) {
      char name[256] = "", driver[128] = "", vendor[256] = "";
      cl_device_type type = 0;
      cl_uint units = 0;
      size_t wg = 0;
      cl_ulong global = 0, alloc = 0, local = 0;
      clGetDeviceInfo(devices[d], CL_DEVICE_NAME, sizeof name, name, NULL);
      clGetDeviceInfo(devices[d], CL_DRIVER_VERSION, sizeof driver, driver, NULL);
      /* the vendor and the name are what the tuning table's entries match (host/tuning.c) */
      clGetDeviceInfo(devices[d], CL_DEVICE_VENDOR, sizeof vendor, vendor, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
      clGetDeviceInfo(devices[d], CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
      printf("  %u:%u  %s [%s] vendor %s, driver %s\n", p, d, name,
             (type & CL_DEVICE_TYPE_GPU) ? "GPU" : (type & CL_DEVICE_TYPE_CPU) ? "CPU" : "other", vendor, driver);
      printf("        compute units %u, max work-group %zu, global memory %.1f GiB, max allocation %.1f GiB, "
             "local memory %llu KiB\n",
             units, wg, (double)global / (1 << 30), (double)alloc / (1 << 30), (unsigned long long)local >> 10);
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ demo */

static int demo_failures, demo_broken; /* wrong values; calls that failed */

/* Prints one row of a worked-example table and checks it to the seed's 3 decimals. */
static void demo_row(const char *what, double expected, float got) {
  const int ok = fabs((double)got - expected) <= 5e-4 + 1e-6;
  if (!ok) ++demo_failures;
  printf("  %-44s %8.3f %8.3f  %s\n", what, expected, (double)got, ok ? "ok" : "MISMATCH");
}

static int demo_check(clxent_ctx *ctx, clxent_status st, const char *call) {
  if (st == CLXENT_OK) return 1;
  fprintf(stderr, "clxent demo: %s: %s: %s\n", call, clxent_status_str(st), clxent_last_error(ctx));
  ++demo_broken;
  return 0;
}

static int cmd_demo(const char *device) {
  clxent_ctx *ctx;
  clxent_status st = clxent_create(&ctx, device);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent demo: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return 3;
  }
  printf("device: %s\n\n", clxent_device_name(ctx));
  const char *head = "                                                 spec   device\n";

  /* Information I(x) = -ln p(x): the cross-entropy of a one-hot p against the distribution. */
  const float dist[3] = {0.7f, 0.2f, 0.1f};
  const float onehot[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  const float dist3[9] = {0.7f, 0.2f, 0.1f, 0.7f, 0.2f, 0.1f, 0.7f, 0.2f, 0.1f};
  float info[3], entropy;
  printf("Information I(x) = -ln p(x), p = (0.7, 0.2, 0.1)\n%s", head);
  if (demo_check(ctx, clxent_cross_entropy(ctx, 3, 3, onehot, dist3, info), "clxent_cross_entropy")) {
    demo_row("-ln 0.7", 0.357, info[0]);
    demo_row("-ln 0.2", 1.609, info[1]);
    demo_row("-ln 0.1", 2.303, info[2]);
  }
  printf("\nEntropy H(p) = -sum p ln p\n%s", head);
  if (demo_check(ctx, clxent_entropy(ctx, 1, 3, dist, &entropy), "clxent_entropy"))
    demo_row("H(0.7, 0.2, 0.1)", 0.802, entropy);

  /* Binary cross-entropy from probabilities. */
  const float probs[2] = {0.6f, 0.7f}, ones[2] = {1, 1};
  float bce[2];
  clxent_opts none = clxent_opts_default();
  none.reduction = CLXENT_NONE;
  printf("\nBinary cross-entropy -[y ln a + (1-y) ln(1-a)]\n%s", head);
  if (demo_check(ctx, clxent_bce(ctx, 2, probs, ones, &none, bce, NULL), "clxent_bce")) {
    demo_row("y = 1, a = 0.6", 0.511, bce[0]);
    demo_row("y = 1, a = 0.7", 0.357, bce[1]);
  }

  /* Multiclass: label [0,0,1]; the fused softmax path gets logits ln(a), whose softmax is a. */
  const float preds[6] = {0.1f, 0.6f, 0.3f, 0.1f, 0.3f, 0.6f};
  const float label_rows[6] = {0, 0, 1, 0, 0, 1};
  const int32_t labels[2] = {2, 2};
  float logits[6], xent[2], fused[2], grad[6], mean, sum;
  for (int j = 0; j < 6; ++j) logits[j] = logf(preds[j]);
  printf("\nMulticlass cross-entropy -sum y ln a, label y = [0, 0, 1]\n%s", head);
  if (demo_check(ctx, clxent_cross_entropy(ctx, 2, 3, label_rows, preds, xent), "clxent_cross_entropy")) {
    demo_row("a = [0.1, 0.6, 0.3]   H(y, a)", 1.204, xent[0]);
    demo_row("a = [0.1, 0.3, 0.6]   H(y, a)", 0.511, xent[1]);
  }
  if (demo_check(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &none, fused, grad), "clxent_softmax_xent")) {
    demo_row("z = ln[0.1, 0.6, 0.3] fused softmax+xent", 1.204, fused[0]);
    demo_row("z = ln[0.1, 0.3, 0.6] fused softmax+xent", 0.511, fused[1]);
    printf("  gradient a - y, row 1: [%.3f, %.3f, %.3f]   row 2: [%.3f, %.3f, %.3f]\n", (double)grad[0],
           (double)grad[1], (double)grad[2], (double)grad[3], (double)grad[4], (double)grad[5]);
    demo_row("dL/dz_3 row 1 = 0.3 - 1", -0.700, grad[2]);
    demo_row("dL/dz_3 row 2 = 0.6 - 1", -0.400, grad[5]);
  }
  clxent_opts opts = clxent_opts_default();
  printf("\nBatch of the two samples, J = sum loss_i and J/m\n%s", head);
  if (demo_check(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &opts, &mean, NULL), "clxent_softmax_xent")) {
    opts.reduction = CLXENT_SUM;
    if (demo_check(ctx, clxent_softmax_xent(ctx, 2, 3, logits, labels, &opts, &sum, NULL), "clxent_softmax_xent")) {
      demo_row("J (sum)  = -ln 0.3 - ln 0.6", -log(0.3) - log(0.6), sum);
      demo_row("J/m (mean), m = 2", (-log(0.3) - log(0.6)) / 2, mean);
    }
  }
  float kl;
  printf("\nKL divergence D(p||q) = H(p,q) - H(p)\n%s", head);
  const float uniform[3] = {1.0f / 3, 1.0f / 3, 1.0f / 3};
  if (demo_check(ctx, clxent_kl_div(ctx, 1, 3, dist, uniform, &kl), "clxent_kl_div"))
    demo_row("D((0.7,0.2,0.1) || uniform) = ln 3 - 0.802", log(3.0) - 0.8018185525, kl);

  clxent_destroy(ctx);
  printf("\n%s\n", demo_broken    ? "demo: a call FAILED"
                   : demo_failures ? "demo: MISMATCH against the spec"
                                   : "demo: all values match the spec");
  return demo_broken ? 3 : demo_failures ? 1 : 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
  if (argc < 2) return usage(stderr);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) return usage(stdout);
  if (!strcmp(cmd, "devices")) {
    if (argc > 2 && !strcmp(argv[2], "--help")) {
      printf("usage: clxent devices\n  lists OpenCL platforms and devices, numbered as --device P:D selects them\n");
      return 0;
    }
    if (argc > 2) {
      fprintf(stderr, "clxent devices: unknown argument %s\n", argv[2]);
      return 2;
    }
    return cmd_devices();
  }
  if (!strcmp(cmd, "bench")) return clxent_bench_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "check")) return clxent_check_main(argc - 1, argv + 1);
  if (!strcmp(cmd, "demo")) {
    const char *device = NULL;
    for (int i = 2; i < argc; ++i) {
      if (!strcmp(argv[i], "--device")) {
        if (!(device = tool_option_value("clxent demo", argc, argv, &i))) return 2;
      } else if (!strcmp(argv[i], "--help")) {
        printf("usage: clxent demo [--device D]\n  computes the seed's worked examples on the device and checks "
               "them\n  exit 0 all match, 1 a mismatch, 2 bad usage, 3 the device or the library failed\n");
        return 0;
      } else {
        fprintf(stderr, "clxent demo: unknown argument %s\n", argv[i]);
        return usage(stderr);
      }
    }
    return cmd_demo(device);
  }
  fprintf(stderr, "clxent: unknown command %s\n", cmd);
  return usage(stderr);
}
