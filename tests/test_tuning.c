/* The tuning table (host/tuning.c) and the settings that override it (host/config.c), without a
 * device: internal functions, so this links the static library.
 *   - a device takes the most specific entry matching its type, vendor and name, whatever the case;
 *     a CPU whose vendor names its maker (PoCL: "AuthenticAMD") gets the CPU entry, not a GPU's;
 *   - every entry is a kernel shape the library accepts, and reachable (no entry hides another);
 *   - CLXENT_OWN_MATH is parsed strictly, the config wins over it, and an older clxent_tuning
 *     without own_math still reads, the environment then filling the field it lacks. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#define CLXENT_EXPERIMENTAL_API
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka needs these first */
#include <cmocka.h>

#include "internal.h"
#include "old_layouts.h"

static const clxent_tuning_entry *lookup(cl_device_type type, const char *vendor, const char *name) {
  const clxent_tuning_entry *e = clxent_tuning_lookup(type, vendor, name);
  assert_non_null(e);
  return e;
}

static int same_text(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* The entry for (type, vendor, name) is the one whose patterns are these. */
static void expect(cl_device_type type, const char *vendor, const char *name, cl_device_type want_type,
                   const char *want_vendor, const char *want_name) {
  const clxent_tuning_entry *e = lookup(type, vendor, name);
  if (e->type != want_type || !same_text(e->vendor, want_vendor) || !same_text(e->name, want_name))
    fail_msg("device (type %#llx, vendor \"%s\", name \"%s\") got the entry (%#llx, %s, %s), expected (%#llx, %s, %s)",
             (unsigned long long)type, vendor ? vendor : "(null)", name ? name : "(null)", (unsigned long long)e->type,
             e->vendor ? e->vendor : "any", e->name ? e->name : "any", (unsigned long long)want_type,
             want_vendor ? want_vendor : "any", want_name ? want_name : "any");
}

static void test_lookup(void **state) {
  (void)state;
  const cl_device_type gpu = CL_DEVICE_TYPE_GPU, cpu = CL_DEVICE_TYPE_CPU;
  const char *amd = "Advanced Micro Devices|AMD";
  /* NVIDIA: the device name's entry first, the vendor's for the others; any case */
  expect(gpu, "NVIDIA Corporation", "NVIDIA H100 80GB HBM3", gpu, "NVIDIA", "H100|H200");
  expect(gpu, "nvidia corporation", "nvidia h100 pcie", gpu, "NVIDIA", "H100|H200");
  expect(gpu, "NVIDIA Corporation", "NVIDIA H200", gpu, "NVIDIA", "H100|H200"); /* as the H200 names itself */
  expect(gpu, "NVIDIA Corporation", "NVIDIA GeForce RTX 4090", gpu, "NVIDIA", NULL);
  /* a name alone does not make the entry: it is NVIDIA's H100 */
  expect(gpu, "Some Vendor", "H100 lookalike", gpu, NULL, NULL);
  /* AMD under both spellings of its vendor (ROCm, Mesa's rusticl), Intel's GPUs */
  expect(gpu, "Advanced Micro Devices, Inc.", "gfx90a:sramecc+:xnack-", gpu, amd, NULL);
  expect(gpu, "AMD", "AMD Radeon RX 7900 XTX (radeonsi, navi31, LLVM 15.0.7, DRM 3.54)", gpu, amd, NULL);
  expect(gpu, "Intel(R) Corporation", "Intel(R) Arc(TM) A770 Graphics", gpu, "Intel", NULL);
  /* CPUs: PoCL names the CPU's maker as the vendor; the CPU entry, never a GPU vendor's */
  expect(cpu, "AuthenticAMD", "pthread-haswell-AMD EPYC", cpu, NULL, NULL);
  expect(cpu, "GenuineIntel", "cpu-skylake-avx512-Intel(R) Xeon(R) Gold 6130", cpu, NULL, NULL);
  expect(cpu | CL_DEVICE_TYPE_DEFAULT, "Intel(R) Corporation", "Intel(R) Core(TM) i7", cpu, NULL, NULL);
  /* unknown GPUs, missing strings, other device types: the type's defaults */
  expect(gpu, "Imagination Technologies", "PowerVR", gpu, NULL, NULL);
  expect(gpu, NULL, NULL, gpu, NULL, NULL);
  expect(gpu, "", "", gpu, NULL, NULL);
  expect(CL_DEVICE_TYPE_ACCELERATOR, "NVIDIA Corporation", "H100", CL_DEVICE_TYPE_ALL, NULL, NULL);
  expect(CL_DEVICE_TYPE_CUSTOM, "Xilinx", "u250", CL_DEVICE_TYPE_ALL, NULL, NULL);

  /* the defaults: CPUs a row per item and clxent's own e^x (measured on PoCL), GPUs a group per
   * row and the device's exp (not measured yet), other devices the GPU shape with clxent's e^x */
  const clxent_tuning_entry *c = lookup(cpu, "AuthenticAMD", "pthread-haswell-AMD EPYC");
  assert_int_equal(c->variant, CLXENT_VARIANT_ITEM);
  assert_int_equal(c->vector_width, CLXENT_VEC_NATIVE); /* the CPU's own width, held to [8, 16]: */
  assert_int_equal(clxent_native_vector_width(0), 8);
  assert_int_equal(clxent_native_vector_width(4), 8); /* NEON, SSE: 8, as before (not measured) */
  assert_int_equal(clxent_native_vector_width(8), 8); /* AVX2 */
  assert_int_equal(clxent_native_vector_width(16), 16); /* AVX-512 */
  assert_int_equal(clxent_native_vector_width(32), 16);
  assert_int_equal(c->group_size, 64);
  assert_int_equal(c->row_threads, 0);
  assert_int_equal(c->own_math, 1);
  const char *const gpu_vendors[] = {NULL, "NVIDIA Corporation", "AMD", "Intel(R) Corporation"};
  for (size_t k = 0; k < sizeof gpu_vendors / sizeof gpu_vendors[0]; ++k) {
    const clxent_tuning_entry *g = lookup(gpu, gpu_vendors[k], "a GPU");
    assert_int_equal(g->variant, CLXENT_VARIANT_GROUP);
    assert_int_equal(g->own_math, 0);
  }
  assert_int_equal(lookup(CL_DEVICE_TYPE_ACCELERATOR, "x", "y")->own_math, 1);
}

static int is_pow2(size_t x) { return x && !(x & (x - 1)); }

/* A "|"-separated pattern with no empty word. */
static int well_formed(const char *pattern) {
  if (!pattern) return 1;
  if (!*pattern || *pattern == '|' || pattern[strlen(pattern) - 1] == '|' || strstr(pattern, "||")) return 0;
  return 1;
}

/* Each word of the entry's vendor pattern, with each word of its name pattern (NULL: any text),
 * finds the entry itself: no two entries are for the same devices, and none is hidden. */
static void expect_reachable(const clxent_tuning_entry *e, size_t index) {
  const cl_device_type type = e->type == CL_DEVICE_TYPE_ALL ? CL_DEVICE_TYPE_CUSTOM : e->type;
  const char *v = e->vendor ? e->vendor : "";
  for (;;) {
    char vendor[128] = "", name[128] = "";
    const size_t vl = strcspn(v, "|");
    assert_true(vl < sizeof vendor);
    memcpy(vendor, v, vl);
    const char *n = e->name ? e->name : "";
    for (;;) {
      const size_t nl = strcspn(n, "|");
      assert_true(nl < sizeof name);
      memcpy(name, n, nl), name[nl] = '\0';
      if (lookup(type, vendor, name) != e)
        fail_msg("table entry %zu (vendor %s, name %s) is hidden: (\"%s\", \"%s\") finds another", index,
                 e->vendor ? e->vendor : "any", e->name ? e->name : "any", vendor, name);
      if (!n[nl]) break;
      n += nl + 1;
    }
    if (!v[vl]) break;
    v += vl + 1;
  }
}

static void test_table_entries(void **state) {
  (void)state;
  size_t count = 0;
  const clxent_tuning_entry *table = clxent_tuning_table(&count);
  assert_true(count >= 2);
  /* the last entry catches every device (clxent_tuning_lookup's fallback) */
  assert_true(table[count - 1].type == CL_DEVICE_TYPE_ALL && !table[count - 1].vendor && !table[count - 1].name);
  for (size_t k = 0; k < count; ++k) {
    const clxent_tuning_entry *e = &table[k];
    if (e->type == 0 || (e->variant != CLXENT_VARIANT_ITEM && e->variant != CLXENT_VARIANT_GROUP) ||
        (e->vector_width != 4 && e->vector_width != 8 && e->vector_width != 16 && e->vector_width != CLXENT_VEC_NATIVE) ||
        !is_pow2(e->group_size) ||
        e->group_size > ((size_t)1 << 20) || (e->row_threads && (!is_pow2(e->row_threads) || e->row_threads > e->group_size)) ||
        (e->own_math != 0 && e->own_math != 1) || !well_formed(e->vendor) || !well_formed(e->name) ||
        e->linear_rows == 0 || e->linear_classes == 0 || e->linear_rows > ((size_t)1 << 16) ||
        e->linear_classes > ((size_t)1 << 20))
      fail_msg("table entry %zu (vendor %s, name %s) is not a shape the library accepts", k,
               e->vendor ? e->vendor : "any", e->name ? e->name : "any");
    expect_reachable(e, k);
  }
}

/* ---------------------------------------------------------------- the settings */

static void assert_error_mentions(const char *needle) {
  const char *msg = clxent_last_error(NULL);
  if (!strstr(msg, needle)) fail_msg("clxent_last_error(NULL) = \"%s\" does not mention \"%s\"", msg, needle);
}


static clxent_status resolve(const void *tuning, clxent_settings *s) {
  clxent_config c = CLXENT_CONFIG_INIT;
  c.tuning = (const clxent_tuning *)tuning;
  return clxent_resolve_settings(&c, s);
}

static void test_own_math_settings(void **state) {
  (void)state;
  clxent_settings s;
  clxent_tuning t = CLXENT_TUNING_INIT;
  /* unset: the table's */
  assert_int_equal(resolve(&t, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_AUTO);
  assert_int_equal(clxent_resolve_settings(NULL, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_AUTO);
  /* the environment, strictly */
  setenv("CLXENT_OWN_MATH", "0", 1);
  assert_int_equal(resolve(&t, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_OFF);
  setenv("CLXENT_OWN_MATH", "1", 1);
  assert_int_equal(clxent_resolve_settings(NULL, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_ON);
  const char *const bad[] = {"2", "yes", "on", " 1", "1 ", "01", "-1", "0x1"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
    setenv("CLXENT_OWN_MATH", bad[k], 1);
    const clxent_status st = resolve(&t, &s);
    if (st != CLXENT_ERR_INVALID_ARG)
      fail_msg("CLXENT_OWN_MATH=\"%s\": %s, expected CLXENT_ERR_INVALID_ARG", bad[k], clxent_status_str(st));
    assert_error_mentions("CLXENT_OWN_MATH");
  }
  /* the config wins: the bad variable is not even read */
  t.own_math = CLXENT_OFF;
  assert_int_equal(resolve(&t, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_OFF);
  setenv("CLXENT_OWN_MATH", "0", 1);
  t.own_math = CLXENT_ON;
  assert_int_equal(resolve(&t, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_ON);
  /* a value that is no clxent_switch, named */
  t.own_math = (clxent_switch)3;
  assert_int_equal(resolve(&t, &s), CLXENT_ERR_INVALID_ARG);
  assert_error_mentions("tuning->own_math = 3");
  unsetenv("CLXENT_OWN_MATH");

  /* an older caller's clxent_tuning, without own_math: its fields read, own_math the table's, or
   * the environment's when set */
  tuning_before_own_math old = {sizeof old, CLXENT_VARIANT_GROUP, 16, 32, 8, 4096, CLXENT_OFF, NULL, 0, "-DX=1"};
  assert_true(sizeof old < sizeof(clxent_tuning) && sizeof old == offsetof(clxent_tuning, own_math));
  assert_int_equal(resolve(&old, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_AUTO);
  assert_true(s.variant == CLXENT_VARIANT_GROUP && s.vector_width == 16 && s.group_size == 32 && s.row_threads == 8);
  assert_true(s.block_bytes == 4096 && s.zero_copy == CLXENT_OFF && !strcmp(s.build_options, "-DX=1"));
  setenv("CLXENT_OWN_MATH", "0", 1);
  assert_int_equal(resolve(&old, &s), CLXENT_OK);
  assert_int_equal(s.own_math, CLXENT_OFF);
  unsetenv("CLXENT_OWN_MATH");
}

int main(void) {
  /* the settings' tests see only the variables they set */
  static const char *const variables[] = {"CLXENT_VARIANT",     "CLXENT_VEC",        "CLXENT_GROUP_SIZE",
                                          "CLXENT_ROW_THREADS", "CLXENT_MAX_ALLOC",  "CLXENT_BLOCK_BYTES",
                                          "CLXENT_ZERO_COPY",   "CLXENT_OWN_MATH",   "CLXENT_SPLIT",
                                          "CLXENT_CACHE",       "CLXENT_CACHE_DIR", "CLXENT_BUILD_OPTIONS"};
  for (size_t k = 0; k < sizeof variables / sizeof variables[0]; ++k) unsetenv(variables[k]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lookup),
      cmocka_unit_test(test_table_entries),
      cmocka_unit_test(test_own_math_settings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
