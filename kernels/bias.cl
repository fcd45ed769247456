/*
 * Bias gradient: b_j = Σ_i grad_ij over the batch, deterministic without atomics, in two steps.
 *   column_partial (here, per storage type): chunk k of CLXENT_BIAS_CHUNK consecutive batch rows
 *     gets partial[k][j], a left-to-right sum in row order. A chunk cut by a streaming block
 *     boundary is continued by the next block from the stored value, which is the same sequence of
 *     additions: the result does not depend on the block size.
 *   column_sum (reduce.cl): b_j = Σ_k partial[k][j] in k order.
 * One work-item per (column, chunk): neighbouring items read neighbouring columns, which
 * coalesces on GPUs and vectorises across work-items on PoCL.
 */
#ifndef CLXENT_BIAS_CHUNK
#define CLXENT_BIAS_CHUNK 64
#endif

__kernel void column_partial(const ulong rows, const ulong c, const ulong first_row, __global const store_t *grad,
                             __global float *partial) {
  const ulong j = get_global_id(0);
  if (j >= c) return;
  const ulong k = first_row / CLXENT_BIAS_CHUNK + get_global_id(1);
  const ulong chunk_begin = k * CLXENT_BIAS_CHUNK;
  const ulong begin = chunk_begin > first_row ? chunk_begin : first_row;
  ulong end = chunk_begin + CLXENT_BIAS_CHUNK;
  if (end > first_row + rows) end = first_row + rows;
  float acc = begin == chunk_begin ? 0.0f : partial[k * c + j];
  for (ulong r = begin; r < end; ++r) acc += LOAD(grad, (r - first_row) * c + j);
  partial[k * c + j] = acc;
}
