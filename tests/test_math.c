/* Exhaustive accuracy of the kernels' own e^x, ln x and tanh (kernels/clxent_math.h, math.cl)
 * against float64, and the host's copy of e^x and ln x (the same clxent_math.h compiled as C, as
 * host/direct.c compiles it) against the device's bits.
 *
 * The functions are compiled for the default device exactly as the library compiles them (the
 * embedded shared sources, the device's vector width and CLXENT_OWN_MATH=1), evaluated on the
 * device for every float32 input of a range, and each result is compared on the host with the
 * float64 value of the same function (glibc's exp, tanh, cosh), in ulps of the float32 result:
 *   e^x      every x in [-104, -0] (the losses' arguments: x = u - max ≤ 0, e^{-|z|}, e^{-2|z|};
 *            below -103.97 the result rounds to 0), and every 16th x in [0, 89] (overflow past
 *            88.72): error ≤ 2 ulp; plus -inf → 0, +inf → inf, NaN → NaN; and its narrow vector
 *            form (chunks whose arguments all lie in [-87, 87]) on every x in [-87, -0] and every
 *            16th in [0, 87]: the scalar's bits;
 *   ln x     every x in [1, 2^40] (the softmax sums s ∈ [1, c]), every 64th other positive x,
 *            subnormals included: error ≤ 1 ulp; plus 0 → -inf, x < 0 → NaN, inf → inf, NaN → NaN;
 *   ln(1+x)  every x in [0, 1] (ln(1 + e^{-|z|}), sigmoid cross-entropy's, in its form given
 *            1 / (1 + x)) and every 8th in [-1, 0]
 *            (ln(1 - a), BCE's): error ≤ 1 ulp; plus -1 → -inf, x < -1 → NaN, NaN → NaN;
 *   tanh x   every x in [0, 9.1] (tanh rounds to 1 beyond), and sech² x = 1 - tanh² x, which
 *            the softcap's slope uses: error ≤ 2 ulp (tanh) and ≤ 3 ulp (sech²); and tanh alone
 *            (tanh_nonnegv_value, softcap's pass 1, one exponential of a clamped argument) on
 *            the same inputs and every 256th x up to +inf: error ≤ 2 ulp, the scalar tanh's bits;
 *            plus +inf → 1, NaN → NaN;
 *   softcap  u = s·tanh(z/s) for s = 30 and 1: every z in [0, 0.55 s] (the tanh series' range,
 *            where softcap's form is z + z·q·R(q); s = 1: every 16th), and every z past it to
 *            saturation: error ≤ 2 ulp in the series' range, ≤ 4.5 past it at s = 30
 *            (BOUND_CAP_ULP; at s = 1, u is tanh itself: ≤ 2 ulp, and its slope sech² ≤ 3 ulp);
 *            its general, slope-giving and series-only vector forms give the same bits (the
 *            slope's too: the vector form's against the scalar's), and
 *            u(-z) = -u(z) bit for bit but at 0 (-0 gives +0: the series' correction, -z³/3, is +0
 *            there, and -0 + +0 is +0; no loss or gradient sees a zero's sign); plus -inf → -inf
 *            (a mask stays one), +inf → s, NaN → NaN.
 * The vector form is what is measured; the scalar form (row tails) must give the same bits for
 * every input, which the device counts; and the host's e^x and ln x must give the device's bits for
 * every input of their sweeps (host/direct.c's promise of the kernels' bits rests on it). A test
 * of accuracy, not of speed.
 *
 * Usage: test_math [--stride S]   (every S-th input only: a quick look; the test uses 1)
 * Exit status 0: within bounds; 1: an error above the bound or a scalar/vector difference;
 * 77: no OpenCL device (CTest: skipped).
 */
#define CLXENT_EXPERIMENTAL_API
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent_cl.h"
#include "clxent_math.h"
#include "embedded.h"

#define CHUNK (1u << 24) /* inputs per launch */
#define BOUND_ULP 2.0
/* sech² x ≈ 4e^{-2x} for x ≥ 0.55 inherits e^x's error, and adds the roundings of 1 + e(2 + e) and
 * of the division: a bound of its own */
#define BOUND_SECH2_ULP 3.0
#define BOUND_LOG_ULP 1.0
/* softcap's u past the series, s·tanh(x0), x0 = |z|·(1/s): tanh's error (1.5 ulp) counted in ulps
 * of s·t, which are up to 2 of t's (s = 30: t in [0.5, 1), s·t in [15, 30)), the rounding of the
 * product, and x0's two roundings carried through tanh's slope: 4.37 ulp measured at s = 30 just
 * past the split (kernels/math.cl says why x0 is not corrected) */
#define BOUND_CAP_ULP 4.5

static const char test_kernels[] =
    "__constant uint lanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};\n"
    /* out[i], out2[i] for the input bits first + step·i; *mismatch counts scalar != vector */
    "__kernel void eval(const uint fn, const uint first, const uint step, const uint count,\n"
    "                   __global float *out, __global float *out2, volatile __global uint *mismatch) {\n"
    "  const uint i = get_global_id(0) * CLXENT_VEC;\n"
    "  if (i >= count) return;\n"
    "  const uintv bits = (uintv)(first + step * i) + step * CLXENT_CAT(vload, CLXENT_VEC)(0, lanes);\n"
    "  const floatv x = CLXENT_CAT(as_float, CLXENT_VEC)(bits);\n"
    "  floatv y, y2 = (floatv)(0.0f);\n"
    "  if (fn == 0) y = clxent_expv(x); else if (fn == 2) y = clxent_logv(x);\n"
    "  else if (fn == 3) y = tanh_nonnegv_value(x); else if (fn == 5) y = clxent_log1pv(x);\n"
    "  else if (fn == 6) y = clxent_log1pv_inv(x, 1.0f / (1.0f + x));\n"
    "  else if (fn == 7) y = clxent_expv_narrow(x);\n"
    "  else if (fn == 8 || fn == 9) { /* softcap's u and slope: their forms and u's oddness agree bit for bit */\n"
    "    const float cs = fn == 8 ? 30.0f : 1.0f;\n"
    "    y = cap_logitv(x, cs);\n"
    "    const floatv u2 = cap_logit_slopev(x, cs, &y2), u3 = cap_logitv_small(x, cs), un = cap_logitv(-x, cs);\n"
    "    const intv bad = (CLXENT_CAT(as_uint, CLXENT_VEC)(u2) != CLXENT_CAT(as_uint, CLXENT_VEC)(y)) |\n"
    "                     ((CLXENT_CAT(as_uint, CLXENT_VEC)(-un) != CLXENT_CAT(as_uint, CLXENT_VEC)(y)) & isfinite(x) & (x != 0.0f)) |\n"
    "                     ((fabs(x) * (1.0f / cs) < CLXENT_TANH_SPLIT) &\n"
    "                      (CLXENT_CAT(as_uint, CLXENT_VEC)(u3) != CLXENT_CAT(as_uint, CLXENT_VEC)(y)));\n"
    "    for (uint l = 0; l < CLXENT_VEC && i + l < count; ++l) if (((int *)&bad)[l]) atomic_inc(mismatch);\n"
    "  }\n"
    "  else y = tanh_nonnegv(x, &y2);\n"
    "  const uint n = min((uint)CLXENT_VEC, count - i);\n"
    "  for (uint l = 0; l < n; ++l) {\n"
    "    float s2 = 0.0f;\n"
    "    const float xl = as_float(first + step * (i + l));\n"
    "    const float s = fn == 0 || fn == 7 ? clxent_exp(xl) : fn == 2 ? clxent_log(xl) : fn == 5 ? clxent_log1p(xl)\n"
    "                  : fn == 6 ? clxent_log1p_inv(xl, 1.0f / (1.0f + xl))\n"
    "                  : fn == 8 || fn == 9 ? cap_logit_slope(xl, fn == 8 ? 30.0f : 1.0f, &s2) : tanh_nonneg(xl, &s2);\n"
    "    if (fn == 3) s2 = 0.0f; /* the value alone: its t must be the scalar's */\n"
    "    const float v = ((float *)&y)[l], v2 = ((float *)&y2)[l];\n"
    "    out[i + l] = v, out2[i + l] = v2;\n"
    "    if (as_uint(s) != as_uint(v) || as_uint(s2) != as_uint(v2)) atomic_inc(mismatch);\n"
    "  }\n"
    "}\n";

/* The error of a float32 result in ulps of the exact value `want` (float64): the ulp of a number
 * in [2^e, 2^(e+1)) is 2^(e-23), at least 2^-149 (subnormals); a result that the exact value
 * rounds to infinity is right when it is infinity. */
static double ulp_error(float got, double want) {
  if (isnan(want)) return isnan(got) ? 0 : INFINITY;
  if (isinf((float)want)) return isinf(got) && (got > 0) == (want > 0) ? 0 : INFINITY;
  if (!isfinite(got)) return INFINITY;
  int e = want == 0 ? -149 : ilogb(want) - 23;
  if (e < -149) e = -149;
  return fabs((double)got - want) / ldexp(1.0, e);
}

typedef struct {
  unsigned fn;
  uint32_t first, step;
  size_t begin, end;
  const float *y, *y2;
  double worst, worst2;
  float worst_x, worst2_x;
  uint64_t host_differs; /* e^x, ln x: inputs where the host's bits are not the device's */
} check_job;

static uint32_t bits_of(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}


/* The host's result is the device's: the same bits, or both NaN. A NaN's payload is the
 * implementation's (IEEE 754 leaves it open): NVIDIA's e^NaN is 0x7fffffff where the host's is the
 * input's 0x7fc00000; both say "not a number", which is all a loss reports. */
static int same_result(float a, float b) { return bits_of(a) == bits_of(b) || (isnan(a) && isnan(b)); }

static void *check(void *arg) {
  check_job *j = arg;
  for (size_t i = j->begin; i < j->end; ++i) {
    const uint32_t bits = j->first + j->step * (uint32_t)i;
    float x;
    memcpy(&x, &bits, sizeof x);
    double err, err2 = 0;
    if (j->fn == 0 || j->fn == 7) {
      err = ulp_error(j->y[i], exp((double)x));
      const float h = clxent_exp_own(x);
      if (!same_result(h, j->y[i]) && j->host_differs++ < 4)
        printf("host e^x differs at x = %a (0x%08x): 0x%08x against the device's 0x%08x\n", (double)x, bits_of(x),
               bits_of(h), bits_of(j->y[i]));
    } else if (j->fn == 2) {
      err = ulp_error(j->y[i], x < 0 ? NAN : log((double)x));
      const float h = clxent_log_own(x);
      if (!same_result(h, j->y[i]) && j->host_differs++ < 4)
        printf("host ln x differs at x = %a (0x%08x): 0x%08x against the device's 0x%08x\n", (double)x, bits_of(x),
               bits_of(h), bits_of(j->y[i]));
    } else if (j->fn == 3) {
      err = ulp_error(j->y[i], tanh((double)x));
    } else if (j->fn == 8 || j->fn == 9) {
      const double cs = j->fn == 8 ? 30 : 1;
      err = ulp_error(j->y[i], cs * tanh((double)x / cs));
      if (j->fn == 9) { /* s = 1: x0 = |z| exactly, so the slope is sech² x itself (s = 30: bits only) */
        const double ch = cosh((double)x);
        err2 = ulp_error(j->y2[i], 1.0 / (ch * ch));
      }
    } else if (j->fn == 5 || j->fn == 6) {
      err = ulp_error(j->y[i], x < -1 ? NAN : log1p((double)x));
    } else {
      const double ch = cosh((double)x);
      err = ulp_error(j->y[i], tanh((double)x));
      err2 = ulp_error(j->y2[i], 1.0 / (ch * ch));
    }
    if (err > j->worst || isnan(err)) j->worst = err, j->worst_x = x;
    if (err2 > j->worst2 || isnan(err2)) j->worst2 = err2, j->worst2_x = x;
  }
  return NULL;
}

typedef struct {
  cl_context context;
  cl_command_queue queue;
  cl_kernel kernel;
  cl_mem out, out2, mismatch;
  float *y, *y2;
} device;

static int failed(const char *what, cl_int err) {
  if (err == CL_SUCCESS) return 0;
  fprintf(stderr, "%s failed: %d\n", what, (int)err);
  return 1;
}

/* Every input from first, stepping by step, count of them: worst errors into *worst, *worst2. */
static int sweep(device *d, unsigned fn, uint32_t first, uint32_t step, uint64_t count, double *worst,
                 float *worst_x, double *worst2, float *worst2_x, unsigned *mismatches, uint64_t *host_differs) {
  for (uint64_t done = 0; done < count; done += CHUNK) {
    const cl_uint n = (cl_uint)(count - done < CHUNK ? count - done : CHUNK);
    const cl_uint from = first + step * (cl_uint)done;
    const cl_uint zero = 0;
    cl_int err = clEnqueueWriteBuffer(d->queue, d->mismatch, CL_TRUE, 0, sizeof zero, &zero, 0, NULL, NULL);
    err |= clSetKernelArg(d->kernel, 0, sizeof fn, &fn);
    err |= clSetKernelArg(d->kernel, 1, sizeof from, &from);
    err |= clSetKernelArg(d->kernel, 2, sizeof step, &step);
    err |= clSetKernelArg(d->kernel, 3, sizeof n, &n);
    if (failed("clSetKernelArg", err)) return 1;
    const size_t global = (n + 15) / 16 * 16; /* ≥ n / VEC items for any VEC ≤ 16 */
    if (failed("clEnqueueNDRangeKernel", clEnqueueNDRangeKernel(d->queue, d->kernel, 1, NULL, &global, NULL, 0, NULL, NULL)))
      return 1;
    cl_uint bad = 0;
    err = clEnqueueReadBuffer(d->queue, d->out, CL_FALSE, 0, n * sizeof(float), d->y, 0, NULL, NULL);
    err |= clEnqueueReadBuffer(d->queue, d->out2, CL_FALSE, 0, n * sizeof(float), d->y2, 0, NULL, NULL);
    err |= clEnqueueReadBuffer(d->queue, d->mismatch, CL_TRUE, 0, sizeof bad, &bad, 0, NULL, NULL);
    if (failed("clEnqueueReadBuffer", err)) return 1;
    *mismatches += bad;
    check_job jobs[2];
    pthread_t thread;
    for (int t = 0; t < 2; ++t)
      jobs[t] = (check_job){fn, from, step, t ? n / 2 : 0, t ? n : n / 2, d->y, d->y2, 0, 0, 0, 0, 0};
    if (pthread_create(&thread, NULL, check, &jobs[1]) != 0) return failed("pthread_create", -1);
    check(&jobs[0]);
    pthread_join(thread, NULL);
    for (int t = 0; t < 2; ++t) {
      *host_differs += jobs[t].host_differs;
      if (!(jobs[t].worst <= *worst)) *worst = jobs[t].worst, *worst_x = jobs[t].worst_x;
      if (!(jobs[t].worst2 <= *worst2)) *worst2 = jobs[t].worst2, *worst2_x = jobs[t].worst2_x;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  uint32_t stride = 1;
  if (argc == 3 && strcmp(argv[1], "--stride") == 0) stride = (uint32_t)strtoul(argv[2], NULL, 10);
  if (stride == 0 || (argc != 1 && argc != 3)) {
    fprintf(stderr, "usage: test_math [--stride S]\n");
    return 2;
  }
  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, NULL) != CLXENT_OK) {
    fprintf(stderr, "no OpenCL device: %s\n", clxent_last_error(ctx));
    clxent_destroy(ctx);
    return 77;
  }
  clxent_info info = CLXENT_INFO_INIT;
  clxent_get_info(ctx, 0, &info);
  device d = {.queue = clxent_queue(ctx)};
  cl_device_id dev;
  clGetCommandQueueInfo(d.queue, CL_QUEUE_CONTEXT, sizeof d.context, &d.context, NULL);
  clGetCommandQueueInfo(d.queue, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL);

  /* the program: the library's shared sources with its vector width, then the test kernel */
  const char *parts[16];
  size_t lengths[16], k = 0;
  for (size_t i = 0; i < clxent_sources_shared_count; ++i)
    parts[k] = clxent_sources_shared[i].text, lengths[k++] = clxent_sources_shared[i].length;
  parts[k] = test_kernels, lengths[k++] = strlen(test_kernels);
  char options[192]; /* the library's division (program.c) */
  snprintf(options, sizeof options, "-cl-std=CL1.2 -DCLXENT_VEC=%u -DCLXENT_OWN_MATH=1 %s", info.vector_width,
           clxent_division_option(dev));
  cl_int err;
  cl_program program = clCreateProgramWithSource(d.context, (cl_uint)k, parts, lengths, &err);
  if (failed("clCreateProgramWithSource", err)) return 1;
  if (clBuildProgram(program, 1, &dev, options, NULL, NULL) != CL_SUCCESS) {
    static char log[65536];
    clGetProgramBuildInfo(program, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
    fprintf(stderr, "build failed:\n%s\n", log);
    return 1;
  }
  d.kernel = clCreateKernel(program, "eval", &err);
  if (failed("clCreateKernel", err)) return 1;
  d.out = clCreateBuffer(d.context, CL_MEM_WRITE_ONLY, CHUNK * sizeof(float), NULL, &err);
  d.out2 = clCreateBuffer(d.context, CL_MEM_WRITE_ONLY, CHUNK * sizeof(float), NULL, &err);
  d.mismatch = clCreateBuffer(d.context, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &err);
  d.y = malloc(CHUNK * sizeof(float)), d.y2 = malloc(CHUNK * sizeof(float));
  if (!d.out || !d.out2 || !d.mismatch || !d.y || !d.y2) return failed("buffers", -1);
  clSetKernelArg(d.kernel, 4, sizeof d.out, &d.out);
  clSetKernelArg(d.kernel, 5, sizeof d.out2, &d.out2);
  clSetKernelArg(d.kernel, 6, sizeof d.mismatch, &d.mismatch);
  char name[256] = "";
  clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
  printf("device: %s, vector width %u; every %u-th input\n", name, info.vector_width, stride);

  static const struct {
    unsigned fn;
    const char *name, *name2;
    float from, to;
    uint32_t thin; /* a further stride for ranges outside the losses' */
  } ranges[] = {
      {0, "exp", NULL, -0.0f, -104.0f, 1},
      {0, "exp", NULL, 0.0f, 89.0f, 16},
      /* the narrow form (the softmax passes' chunks whose arguments all lie in [-87, 87]): the
       * general form's bits, which the scalar's are */
      {7, "exp", NULL, -0.0f, -87.0f, 1},
      {7, "exp", NULL, 0.0f, 87.0f, 16},
      {1, "tanh", "sech^2", 0.0f, 9.1f, 1},
      /* softcap's pass 1: tanh alone, one narrow exponential; the same bits as the scalar tanh on
       * all of [0, inf] (the kernel counts any difference), thinned past the losses' range */
      {3, "tanh", NULL, 0.0f, 9.1f, 1},
      {3, "tanh", NULL, 9.1f, INFINITY, 256},
      /* softcap's u = s·tanh(z/s) (s = 30 and 1): every z of the series' range, |z| ≤ 0.55 s, and
       * past it every z up to the saturation (and every 4096th to +inf): the forms' bits agree
       * (general, with the slope, the series alone, and u(-z) = -u(z)) */
      {8, "cap30", NULL, 0.0f, 16.5f, 1},
      {8, "cap30", NULL, 16.5f, 273.0f, 1},
      {8, "cap30", NULL, 273.0f, INFINITY, 4096},
      {9, "cap1", "slope", 0.0f, 0.55f, 16},
      {9, "cap1", "slope", 0.55f, 9.1f, 1},
      {2, "log", NULL, 1.0f, 0x1p40f, 1},
      {2, "log", NULL, 0x1p-149f, 1.0f, 64},
      {2, "log", NULL, 0x1p40f, 0x1.fffffep127f, 64},
      {6, "log1p", NULL, 0.0f, 1.0f, 1}, /* the sigmoid's form, given 1 / (1 + x) */
      {5, "log1p", NULL, -0.0f, -1.0f, 8},
  };
  int status = 0;
  unsigned mismatches = 0;
  uint64_t host_differs = 0;
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; ++r) {
    const uint32_t step = stride * ranges[r].thin, first = bits_of(ranges[r].from);
    const uint64_t count = (bits_of(ranges[r].to) - first) / step + 1;
    double worst = 0, worst2 = 0;
    float wx = 0, wx2 = 0;
    const unsigned mismatches_before = mismatches;
    if (sweep(&d, ranges[r].fn, first, step, count, &worst, &wx, &worst2, &wx2, &mismatches, &host_differs)) return 1;
    printf("%-4s on [%g, %g], %llu inputs: max error %.3f ulp at x = %a", ranges[r].name, (double)ranges[r].from,
           (double)ranges[r].to, (unsigned long long)count, worst, (double)wx);
    if (ranges[r].name2) printf("; %s %.3f ulp at x = %a", ranges[r].name2, worst2, (double)wx2);
    if (mismatches != mismatches_before) printf("; the forms differ on %u inputs", mismatches - mismatches_before);
    printf("\n");
    /* s = 30 past the series: BOUND_CAP_ULP; s = 1 is tanh itself (x0 = |z|, s·t = t): BOUND_ULP */
    const double bound = ranges[r].fn == 8 ? (ranges[r].from > 0.0f ? BOUND_CAP_ULP : BOUND_ULP)
                         : ranges[r].fn == 9 ? BOUND_ULP
                         : ranges[r].fn == 2 || ranges[r].fn >= 5 ? BOUND_LOG_ULP : BOUND_ULP;
    if (!(worst <= bound) || !(worst2 <= BOUND_SECH2_ULP)) status = 1;
  }
  /* the specials, through the same kernel */
  static const struct {
    unsigned fn;
    float x, want;
  } specials[] = {{0, -INFINITY, 0.0f}, {0, INFINITY, INFINITY}, {0, NAN, NAN},      {0, 88.8f, INFINITY},
                  {0, -150.0f, 0.0f},   {2, 0.0f, -INFINITY},    {2, -0.0f, -INFINITY}, {2, -1.0f, NAN},
                  {2, -INFINITY, NAN},  {2, INFINITY, INFINITY}, {2, NAN, NAN},      {2, 1.0f, 0.0f},
                  {3, INFINITY, 1.0f},  {3, NAN, NAN},      {5, -1.0f, -INFINITY}, {5, -2.0f, NAN},
                  {5, NAN, NAN},        {5, 0.0f, 0.0f},     {5, -0.0f, -0.0f},      {5, 1.0f, 0x1.62e43p-1f},
                  {6, NAN, NAN},        {6, 0.0f, 0.0f},     {6, 1.0f, 0x1.62e43p-1f},
                  {7, NAN, NAN},        {7, 0.0f, 1.0f},     {7, -87.0f, 0x1.666d0ep-126f},
                  {8, -INFINITY, -INFINITY}, {8, INFINITY, 30.0f}, {8, -0.0f, 0.0f}, {8, NAN, NAN},
                  {9, -INFINITY, -INFINITY}, {9, INFINITY, 1.0f}};
  static const char *const fn_names[] = {"exp", "tanh", "log", "tanh", "", "log1p", "log1p", "exp", "cap30", "cap1"};
  for (size_t s = 0; s < sizeof specials / sizeof specials[0]; ++s) {
    double worst = 0, worst2 = 0;
    float wx = 0, wx2 = 0;
    d.y[0] = 1.0f;
    const unsigned mismatches_before = mismatches;
    if (sweep(&d, specials[s].fn, bits_of(specials[s].x), 1, 1, &worst, &wx, &worst2, &wx2, &mismatches,
              &host_differs))
      return 1;
    const int ok = isnan(specials[s].want) ? isnan(d.y[0])
                   : d.y[0] == specials[s].want && !signbit(d.y[0]) == !signbit(specials[s].want); /* -0 too */
    printf("%s(%g) = %g%s%s\n", fn_names[specials[s].fn], (double)specials[s].x, (double)d.y[0],
           ok ? "" : "  WRONG", mismatches != mismatches_before ? "  (the forms differ)" : "");
    if (!ok) status = 1;
  }
  if (mismatches) printf("scalar and vector forms differ on %u inputs\n", mismatches), status = 1;
  if (host_differs)
    printf("the host's e^x or ln x differs from the device's on %llu inputs\n", (unsigned long long)host_differs),
        status = 1;
  printf("%s (bounds: %.1f ulp, sech^2 %.1f ulp)\n", status ? "FAILED" : "passed", BOUND_ULP, BOUND_SECH2_ULP);
  clReleaseMemObject(d.out), clReleaseMemObject(d.out2), clReleaseMemObject(d.mismatch);
  clReleaseKernel(d.kernel), clReleaseProgram(program);
  free(d.y), free(d.y2);
  clxent_destroy(ctx);
  return status;
}
