/*
 * Per-row information measures of distributions p, q over c classes (natural log):
 *   CLXENT_MODE_ENTROPY        H(p)    = -Σ p ln p
 *   CLXENT_MODE_CROSS_ENTROPY  H(p,q)  = -Σ p ln q
 *   CLXENT_MODE_KL             D(p‖q)  =  Σ p (ln p - ln q)
 * over a block of `rows` rows of p (and q), into out[first_row + i].
 * A term with p = 0 is 0 (0·ln 0 = 0), unless q is NaN: a NaN must reach the result.
 */

inline float info_term(float p, float q, int mode) {
  if (p == 0.0f && !isnan(q)) return 0.0f;
  switch (mode) {
    case CLXENT_MODE_ENTROPY: return -p * log(p);
    case CLXENT_MODE_CROSS_ENTROPY: return -p * log(q);
    default: return p * (log(p) - log(q));
  }
}

#define ROW_INFORMATION_ARGS                                                                          \
  const ulong rows, const ulong c, const ulong first_row, __global const float *p, __global const float *q, \
      const int mode, __global float *out

#if CLXENT_ROW_PER_ITEM
__kernel void row_information(ROW_INFORMATION_ARGS) {
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const float *pi = p + i * c;
  __global const float *qi = (mode == CLXENT_MODE_ENTROPY ? p : q) + i * c;
  float acc[CLXENT_VEC]; /* independent partial sums, so the loop pipelines */
  for (int k = 0; k < CLXENT_VEC; ++k) acc[k] = 0.0f;
  ulong j = 0;
  for (; j + CLXENT_VEC <= c; j += CLXENT_VEC)
    for (int k = 0; k < CLXENT_VEC; ++k) acc[k] += info_term(pi[j + k], qi[j + k], mode);
  float total = 0.0f;
  for (; j < c; ++j) total += info_term(pi[j], qi[j], mode);
  for (int k = 0; k < CLXENT_VEC; ++k) total += acc[k];
  out[first_row + i] = total;
}
#else
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void row_information(ROW_INFORMATION_ARGS) {
  __local float scratch[CLXENT_GROUP_SIZE];
  const ulong i = get_group_id(0);
  const uint lid = get_local_id(0);
  if (i >= rows) return;
  __global const float *pi = p + i * c;
  __global const float *qi = (mode == CLXENT_MODE_ENTROPY ? p : q) + i * c;
  float acc = 0.0f;
  for (ulong j = lid; j < c; j += CLXENT_GROUP_SIZE) acc += info_term(pi[j], qi[j], mode);
  acc = group_sum(acc, scratch);
  if (lid == 0) out[first_row + i] = acc;
}
#endif
