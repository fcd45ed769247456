/*
 * Bias gradient: b_j = Σ_i grad_ij over the batch, deterministic without atomics, in two steps.
 *   column_partial (here, per storage type): chunk k of CLXENT_BIAS_CHUNK consecutive batch rows
 *     gets partial[k][j], a left-to-right sum in row order. A chunk cut by a streaming block
 *     boundary is continued by the next block from the stored value, which is the same sequence of
 *     additions: the result does not depend on the block size.
 *   column_sum (reduce.cl): b_j = Σ_k partial[k][j] in k order.
 * One work-item per (CLXENT_VEC columns, chunk): neighbouring items read neighbouring columns
 * (coalesced on GPUs), and each item's loop over rows is explicit vector code (what PoCL runs
 * fast; its loops inside a work-item are otherwise scalar).
 */
__kernel void column_partial(const ulong rows, const ulong c, const ulong first_row, __global const store_t *grad,
                             __global float *partial) {
  const ulong j0 = get_global_id(0) * CLXENT_VEC;
  if (j0 >= c) return;
  const ulong k = first_row / CLXENT_BIAS_CHUNK + get_global_id(1);
  const ulong chunk_begin = k * CLXENT_BIAS_CHUNK;
  if (chunk_begin >= first_row + rows) return; /* the launch's chunks are rounded up to whole groups */
  const ulong begin = chunk_begin > first_row ? chunk_begin : first_row;
  ulong end = chunk_begin + CLXENT_BIAS_CHUNK;
  if (end > first_row + rows) end = first_row + rows;
  __global float *acc_out = partial + k * c + j0;
  __global const store_t *g = grad + (begin - first_row) * c + j0;
  if (j0 + CLXENT_VEC <= c) {
    floatv acc = begin == chunk_begin ? (floatv)(0.0f) : vloadv(0, acc_out);
    for (ulong r = begin; r < end; ++r, g += c) acc += LOADV(g, 0);
    vstorev(acc, 0, acc_out);
  } else {
    for (ulong j = 0; j < c - j0; ++j) {
      float acc = begin == chunk_begin ? 0.0f : acc_out[j];
      for (ulong r = begin; r < end; ++r) acc += LOAD(g, (r - begin) * c + j);
      acc_out[j] = acc;
    }
  }
}

/* column_partial for the strided layout (softmax_strided.cl): the gradient block is
 * [rows/S][c][S], row r = i·S + s holding class j at (i·c + j)·S + s. The chunks are the same
 * CLXENT_BIAS_CHUNK batch rows in row order, summed left to right and continued across blocks as
 * above, so the result does not depend on the block size either. One work-item per (column,
 * chunk): a column's values of consecutive rows of one i are contiguous. */
__kernel void column_partial_strided(const ulong rows, const ulong c, const ulong inner, const ulong first_row,
                                     __global const store_t *grad, __global float *partial) {
  const ulong j = get_global_id(0);
  if (j >= c) return;
  const ulong k = first_row / CLXENT_BIAS_CHUNK + get_global_id(1);
  const ulong chunk_begin = k * CLXENT_BIAS_CHUNK;
  if (chunk_begin >= first_row + rows) return; /* the launch's chunks are rounded up to whole groups */
  const ulong begin = chunk_begin > first_row ? chunk_begin : first_row;
  ulong end = chunk_begin + CLXENT_BIAS_CHUNK;
  if (end > first_row + rows) end = first_row + rows;
  float acc = begin == chunk_begin ? 0.0f : partial[k * c + j];
  ulong i = (begin - first_row) / inner, s = begin - first_row - i * inner; /* no %: see softmax_strided.cl */
  for (ulong r = begin; r < end; ++r) {
    acc += LOAD(grad, (i * c + j) * inner + s);
    if (++s == inner) s = 0, ++i;
  }
  partial[k * c + j] = acc;
}
