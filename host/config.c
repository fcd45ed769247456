/*
 * Settings: what the caller's clxent_config (and its experimental clxent_tuning) says, with every
 * field it leaves unset taken from its CLXENT_* environment variable. The environment is parsed
 * strictly: the whole string must be a value in range, else CLXENT_ERR_INVALID_ARG names the
 * variable; nothing is silently truncated or replaced by a default.
 *
 * Also the reading of every sized struct the caller passes (clxent_opts, clxent_ex, ...): see
 * clxent_read_sized.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The largest struct size accepted: a caller's struct grows by fields, not by kilobytes, and a
 * garbage size must not make the library read far past it. */
#define SIZED_MAX 4096

clxent_status clxent_read_sized(clxent_ctx *ctx, const char *what, const void *caller, void *known,
                                size_t known_size, const size_t *field_ends, size_t fields) {
  size_t size;
  memcpy(&size, caller, sizeof size);
  if (size < sizeof(size_t) || size > SIZED_MAX)
    return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                       "%s->size = %zu is not the size of a %s this library can read (%zu here): start the "
                       "struct from its _INIT macro or _default() function",
                       what, size, what, known_size);
  const unsigned char *from = caller;
  for (size_t k = known_size; k < size; ++k) /* a newer caller's fields this library lacks */
    if (from[k])
      return clxent_fail(ctx, CLXENT_ERR_INVALID_ARG,
                         "%s sets a field at byte %zu that this library (%s, %zu bytes) does not know", what, k,
                         clxent_version_string(), known_size);
  size_t begin = sizeof(size_t);
  for (size_t f = 0; f < fields && field_ends[f] <= size; ++f) begin = field_ends[f];
  memcpy((unsigned char *)known + sizeof(size_t), from + sizeof(size_t), begin - sizeof(size_t));
  memcpy(known, &known_size, sizeof known_size);
  return CLXENT_OK;
}

/* ---------------------------------------------------------------- strict environment values */

static const char *env_value(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* An unsigned decimal integer in [lo, hi], the whole string. */
static clxent_status env_unsigned(const char *name, uint64_t lo, uint64_t hi, uint64_t *out) {
  const char *v = env_value(name);
  if (!v) return CLXENT_OK;
  char *end;
  errno = 0;
  const unsigned long long x = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
  if (*v < '0' || *v > '9' || *end || errno == ERANGE || x < lo || x > hi)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "%s=\"%s\": expected a decimal integer in [%llu, %llu]", name, v,
                       (unsigned long long)lo, (unsigned long long)hi);
  *out = x;
  return CLXENT_OK;
}

static int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static clxent_status env_switch(const char *name, clxent_switch *out) {
  const char *v = env_value(name);
  if (!v) return CLXENT_OK;
  if (!strcmp(v, "0") || !strcmp(v, "1")) {
    *out = v[0] == '1' ? CLXENT_ON : CLXENT_OFF;
    return CLXENT_OK;
  }
  return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "%s=\"%s\": expected 0 or 1", name, v);
}

static clxent_status copy_text(const char *what, const char *text, char *to, size_t size) {
  if ((size_t)snprintf(to, size, "%s", text) < size) return CLXENT_OK;
  return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "%s is %zu characters; at most %zu", what, strlen(text), size - 1);
}

/* "w0,w1,...": positive finite weights, at most CLXENT_MAX_MEMBERS. */
static clxent_status parse_split(const char *text, clxent_settings *s) {
  const char *p = text;
  s->split_count = 0;
  for (;;) {
    char *end;
    errno = 0;
    const double w = strtod(p, &end);
    if (end == p || isspace((unsigned char)*p) || !(w > 0.0) || !isfinite(w) || w > 1e12 || errno == ERANGE ||
        (*end != ',' && *end != '\0') || s->split_count == CLXENT_MAX_MEMBERS)
      return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                         "CLXENT_SPLIT=\"%s\": expected at most %d positive weights separated by commas", text,
                         CLXENT_MAX_MEMBERS);
    s->split[s->split_count++] = w;
    s->split_from = "CLXENT_SPLIT";
    if (*end == '\0') return CLXENT_OK;
    p = end + 1;
  }
}

/* ---------------------------------------------------------------- the caller's structs */

static const size_t config_fields[] = {
    offsetof(clxent_config, cache) + sizeof(clxent_switch), offsetof(clxent_config, cache_dir) + sizeof(char *),
    offsetof(clxent_config, max_alloc) + sizeof(uint64_t), sizeof(clxent_config)};
static const size_t tuning_fields[] = {
    offsetof(clxent_tuning, variant) + sizeof(clxent_variant),
    offsetof(clxent_tuning, vector_width) + sizeof(unsigned),
    offsetof(clxent_tuning, group_size) + sizeof(size_t),
    offsetof(clxent_tuning, row_threads) + sizeof(size_t),
    offsetof(clxent_tuning, block_bytes) + sizeof(uint64_t),
    offsetof(clxent_tuning, zero_copy) + sizeof(clxent_switch),
    offsetof(clxent_tuning, split) + sizeof(double *),
    offsetof(clxent_tuning, split_count) + sizeof(size_t),
    offsetof(clxent_tuning, build_options) + sizeof(char *),
    offsetof(clxent_tuning, own_math) + sizeof(clxent_switch),
    offsetof(clxent_tuning, linear_rows) + sizeof(size_t),
    offsetof(clxent_tuning, linear_classes) + sizeof(size_t),
    sizeof(clxent_tuning)};

/* The caller's values, checked; 0 / NULL / AUTO where unset. */
static clxent_status from_config(const clxent_config *config, clxent_settings *s) {
  clxent_config c = CLXENT_CONFIG_INIT;
  clxent_tuning t = CLXENT_TUNING_INIT;
  CHECK(clxent_read_sized(NULL, "config", config, &c, sizeof c, config_fields, sizeof config_fields / sizeof(size_t)));
  if (c.tuning)
    CHECK(clxent_read_sized(NULL, "config->tuning", c.tuning, &t, sizeof t, tuning_fields,
                            sizeof tuning_fields / sizeof(size_t)));
  const struct {
    const char *name;
    clxent_switch value;
  } switches[] = {{"cache", c.cache}, {"tuning->zero_copy", t.zero_copy}, {"tuning->own_math", t.own_math}};
  for (size_t k = 0; k < sizeof switches / sizeof switches[0]; ++k)
    if ((unsigned)switches[k].value > CLXENT_OFF)
      return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "config->%s = %d is not a clxent_switch (AUTO 0, ON 1, OFF 2)",
                         switches[k].name, (int)switches[k].value);
  if ((unsigned)t.variant > CLXENT_VARIANT_GROUP)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                       "config->tuning->variant = %d is not a clxent_variant (AUTO 0, ITEM 1, GROUP 2)", (int)t.variant);
  if (t.vector_width && t.vector_width != 4 && t.vector_width != 8 && t.vector_width != 16)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "config->tuning->vector_width = %u: expected 4, 8 or 16 (or 0)",
                       t.vector_width);
  if (t.group_size && !is_pow2(t.group_size))
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "config->tuning->group_size = %zu is not a power of two",
                       t.group_size);
  if (t.row_threads && !is_pow2(t.row_threads))
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "config->tuning->row_threads = %zu is not a power of two",
                       t.row_threads);
  if (t.linear_rows > ((size_t)1 << 16) || t.linear_classes > ((size_t)1 << 24))
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                       "config->tuning->linear_rows = %zu, linear_classes = %zu: at most 65536 and 16777216",
                       t.linear_rows, t.linear_classes);
  if ((t.split == NULL) != (t.split_count == 0) || t.split_count > CLXENT_MAX_MEMBERS)
    return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG,
                       "config->tuning->split and split_count (%zu) must be given together, at most %d values",
                       t.split_count, CLXENT_MAX_MEMBERS);
  for (size_t k = 0; k < t.split_count; ++k) {
    if (!(t.split[k] > 0.0) || !isfinite(t.split[k]) || t.split[k] > 1e12)
      return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "config->tuning->split[%zu] = %g must be positive and finite",
                         k, t.split[k]);
    s->split[k] = t.split[k];
  }
  s->split_count = t.split_count;
  s->split_from = "config->tuning->split";
  s->cache = c.cache;
  if (c.cache_dir) CHECK(copy_text("config->cache_dir", c.cache_dir, s->cache_dir, sizeof s->cache_dir));
  s->max_alloc = c.max_alloc;
  s->variant = t.variant;
  s->vector_width = t.vector_width;
  s->group_size = t.group_size;
  s->row_threads = t.row_threads;
  s->block_bytes = t.block_bytes;
  s->zero_copy = t.zero_copy;
  s->own_math = t.own_math;
  s->linear_rows = t.linear_rows;
  s->linear_classes = t.linear_classes;
  if (t.build_options) CHECK(copy_text("config->tuning->build_options", t.build_options, s->build_options,
                                       sizeof s->build_options));
  return CLXENT_OK;
}

/* The environment, for what the caller left unset. */
static clxent_status from_environment(clxent_settings *s) {
  const char *v;
  if (s->cache == CLXENT_AUTO) CHECK(env_switch("CLXENT_CACHE", &s->cache));
  if (!s->cache_dir[0] && (v = env_value("CLXENT_CACHE_DIR")))
    CHECK(copy_text("CLXENT_CACHE_DIR", v, s->cache_dir, sizeof s->cache_dir));
  if (!s->max_alloc) CHECK(env_unsigned("CLXENT_MAX_ALLOC", 1, UINT64_MAX, &s->max_alloc));
  if (s->variant == CLXENT_VARIANT_AUTO && (v = env_value("CLXENT_VARIANT"))) {
    if (!strcmp(v, "item")) s->variant = CLXENT_VARIANT_ITEM;
    else if (!strcmp(v, "group")) s->variant = CLXENT_VARIANT_GROUP;
    else return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "CLXENT_VARIANT=\"%s\": expected item or group", v);
  }
  uint64_t x = 0;
  if (!s->vector_width) {
    CHECK(env_unsigned("CLXENT_VEC", 4, 16, &x));
    if (x && x != 4 && x != 8 && x != 16)
      return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "CLXENT_VEC=\"%s\": expected 4, 8 or 16", getenv("CLXENT_VEC"));
    s->vector_width = (unsigned)x;
  }
  const struct {
    const char *name;
    size_t *field;
  } pow2[] = {{"CLXENT_GROUP_SIZE", &s->group_size}, {"CLXENT_ROW_THREADS", &s->row_threads}};
  for (size_t k = 0; k < 2; ++k) {
    if (*pow2[k].field) continue;
    x = 0;
    CHECK(env_unsigned(pow2[k].name, 1, (uint64_t)1 << 20, &x));
    if (x && !is_pow2(x))
      return clxent_fail(NULL, CLXENT_ERR_INVALID_ARG, "%s=\"%s\": expected a power of two", pow2[k].name,
                         getenv(pow2[k].name));
    *pow2[k].field = (size_t)x;
  }
  if (!s->block_bytes) CHECK(env_unsigned("CLXENT_BLOCK_BYTES", 1, UINT64_MAX, &s->block_bytes));
  const struct {
    const char *name;
    uint64_t most;
    size_t *field;
  } blocks[] = {{"CLXENT_LINEAR_ROWS", (uint64_t)1 << 16, &s->linear_rows},
                {"CLXENT_LINEAR_CLASSES", (uint64_t)1 << 24, &s->linear_classes}};
  for (size_t k = 0; k < 2; ++k) {
    if (*blocks[k].field) continue;
    x = 0;
    CHECK(env_unsigned(blocks[k].name, 1, blocks[k].most, &x));
    *blocks[k].field = (size_t)x;
  }
  if (env_value("CLXENT_DIRECT_MAX")) { /* 0 is a value here: the direct path off */
    x = 0;
    CHECK(env_unsigned("CLXENT_DIRECT_MAX", 0, (uint64_t)1 << 24, &x));
    s->direct_max = (size_t)x, s->direct_max_set = 1;
  }
  if (s->zero_copy == CLXENT_AUTO) CHECK(env_switch("CLXENT_ZERO_COPY", &s->zero_copy));
  if (s->own_math == CLXENT_AUTO) CHECK(env_switch("CLXENT_OWN_MATH", &s->own_math));
  if (s->fused_bias == CLXENT_AUTO) CHECK(env_switch("CLXENT_FUSED_BIAS", &s->fused_bias));
  if (s->stream_grad == CLXENT_AUTO) CHECK(env_switch("CLXENT_STREAM_GRAD", &s->stream_grad));
  if (s->bf16_cvt == CLXENT_AUTO) CHECK(env_switch("CLXENT_BF16_CVT", &s->bf16_cvt));
  if (!s->split_count && (v = env_value("CLXENT_SPLIT"))) CHECK(parse_split(v, s));
  if (!s->build_options[0] && (v = env_value("CLXENT_BUILD_OPTIONS")))
    CHECK(copy_text("CLXENT_BUILD_OPTIONS", v, s->build_options, sizeof s->build_options));
  return CLXENT_OK;
}

clxent_status clxent_resolve_settings(const clxent_config *config, clxent_settings *out) {
  memset(out, 0, sizeof *out);
  if (config) CHECK(from_config(config, out));
  return from_environment(out);
}
