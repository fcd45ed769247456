/*
 * Deterministic batch reduction: J = Σ_i loss_i / divisor.
 * Group g sums the fixed span [g·SPAN, (g+1)·SPAN), SPAN = CLXENT_GROUP_SIZE · CLXENT_REDUCE_ITEMS:
 * each item adds CLXENT_REDUCE_ITEMS strided values, then a fixed tree combines the items. The host repeats
 * the launch on the partial sums until one value is left and passes divisor (the MEAN count)
 * only to the last launch. No atomics: the order of every addition depends only on n, so the
 * result is bit-identical run to run and whatever block size the host streamed the batch in.
 */
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void reduce_sum(const ulong n, __global const float *in, __global float *out,
                const float divisor_host, __global const float *divisor_dev) {
  const float divisor = divisor_dev ? divisor_dev[CLXENT_SCALES_COUNT - 1] : divisor_host; /* device-resident calls: label_stats */
  __local float scratch[CLXENT_GROUP_SIZE];
  const ulong base = (ulong)get_group_id(0) * CLXENT_GROUP_SIZE * CLXENT_REDUCE_ITEMS;
  const uint lid = get_local_id(0);
  float acc = 0.0f;
  for (uint k = 0; k < CLXENT_REDUCE_ITEMS; ++k) {
    const ulong idx = base + (ulong)k * CLXENT_GROUP_SIZE + lid;
    if (idx < n) acc += in[idx];
  }
  acc = group_sum(acc, scratch);
  if (lid == 0) out[get_group_id(0)] = acc / divisor;
}

/* reduce_sum's stage with one work-item per group span (the row-per-item variant: CPUs), the same
 * additions in the same order, so the same bits: the group's G items become G lanes, CLXENT_VEC to a
 * vector; lane i adds in[base + k·G + i] for k = 0..R-1 from +0 (a lane past n adds +0, which
 * leaves a sum unchanged: a sum from +0 is never -0), then the tree adds lane i + step into lane i
 * for step = G/2, ..., 1: whole vectors while step ≥ CLXENT_VEC, then hsum's halves. On PoCL the
 * group kernel's barriers cost more than its loads: 1024 groups of 64 items took ~2 ms for 2^20
 * values on the Zen 4 EPYC (docs/PERFORMANCE.md, tenth round). */
__kernel void reduce_sum_items(const ulong n, __global const float *in, __global float *out, const float divisor_host,
                               __global const float *divisor_dev, const ulong groups) {
  const ulong g = get_global_id(0);
  if (g >= groups) return;
  const float divisor = divisor_dev ? divisor_dev[CLXENT_SCALES_COUNT - 1] : divisor_host;
  const ulong base = g * CLXENT_GROUP_SIZE * CLXENT_REDUCE_ITEMS;
#if CLXENT_GROUP_SIZE >= CLXENT_VEC
#define LANE_VECTORS (CLXENT_GROUP_SIZE / CLXENT_VEC)
  floatv acc[LANE_VECTORS];
  for (uint q = 0; q < LANE_VECTORS; ++q) acc[q] = (floatv)(0.0f);
  if (base + CLXENT_GROUP_SIZE * CLXENT_REDUCE_ITEMS <= n) {
    for (uint k = 0; k < CLXENT_REDUCE_ITEMS; ++k)
      for (uint q = 0; q < LANE_VECTORS; ++q) acc[q] += vloadv(0, in + base + k * CLXENT_GROUP_SIZE + q * CLXENT_VEC);
  } else { /* the last span, cut by n */
    for (uint k = 0; k < CLXENT_REDUCE_ITEMS; ++k)
      for (uint q = 0; q < LANE_VECTORS; ++q) {
        const ulong at = base + k * CLXENT_GROUP_SIZE + q * CLXENT_VEC;
        float part[CLXENT_VEC];
        for (uint l = 0; l < CLXENT_VEC; ++l) part[l] = at + l < n ? in[at + l] : 0.0f;
        acc[q] += vloadv(0, part);
      }
  }
  for (uint h = LANE_VECTORS / 2; h > 0; h /= 2)
    for (uint q = 0; q < h; ++q) acc[q] += acc[q + h];
  out[g] = hsum(acc[0]) / divisor;
#undef LANE_VECTORS
#else /* a group smaller than a vector: the lanes one by one */
  float lane[CLXENT_GROUP_SIZE];
  for (uint i = 0; i < CLXENT_GROUP_SIZE; ++i) lane[i] = 0.0f;
  for (uint k = 0; k < CLXENT_REDUCE_ITEMS; ++k)
    for (uint i = 0; i < CLXENT_GROUP_SIZE; ++i) {
      const ulong at = base + k * CLXENT_GROUP_SIZE + i;
      if (at < n) lane[i] += in[at];
    }
  for (uint step = CLXENT_GROUP_SIZE / 2; step > 0; step /= 2)
    for (uint i = 0; i < step; ++i) lane[i] += lane[i + step];
  out[g] = lane[0] / divisor;
#endif
}

/* Second step of the bias gradient (bias.cl): out[j] = Σ_k partial[k][j], k in order. */
__kernel void column_sum(const ulong chunks, const ulong c, __global const float *partial, __global float *out) {
  const ulong j0 = get_global_id(0) * CLXENT_VEC;
  if (j0 >= c) return;
  if (j0 + CLXENT_VEC <= c) { /* CLXENT_VEC columns an item, in explicit vectors (PoCL) */
    floatv acc = (floatv)(0.0f);
    for (ulong k = 0; k < chunks; ++k) acc += vloadv(0, partial + k * c + j0);
    vstorev(acc, 0, out + j0);
    return;
  }
  for (ulong j = j0; j < c; ++j) {
    float acc = 0.0f;
    for (ulong k = 0; k < chunks; ++k) acc += partial[k * c + j];
    out[j] = acc;
  }
}

/* column_sum for the group variant (GPUs): the same sums, Σ_k partial[k][j] from +0 in k order,
 * bit for bit, with loads a GPU can keep in flight. column_sum gives an item CLXENT_VEC columns and
 * walks all the chunks one load after the other: at c = 1000 that is 250 items on the whole GPU,
 * each waiting on 1024 loads in turn. Here a work-group takes CLXENT_COLSUM_COLS columns: its items
 * load a tile of chunks × columns into local memory (every load independent; a warp's loads fall in
 * runs of CLXENT_COLSUM_COLS neighbouring floats), then one item per column adds its column of the
 * tile in k order, then the next tile. Only the adding is sequential, as the bits require, and it
 * reads local memory. */
#define COLSUM_COLS (CLXENT_GROUP_SIZE < CLXENT_COLSUM_COLS ? CLXENT_GROUP_SIZE : CLXENT_COLSUM_COLS)
/* at most 16 KiB of local memory, or reduce_sum's 4 bytes an item beyond 1024 items: every
 * program holds this kernel, and a device must build it even where it never runs */
#define COLSUM_LOADS (CLXENT_GROUP_SIZE <= 1024 ? CLXENT_COLSUM_LOADS : 1)
#define COLSUM_TILE (CLXENT_GROUP_SIZE * COLSUM_LOADS)
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void column_sum_group(const ulong chunks, const ulong c, __global const float *partial, __global float *out) {
  __local float tile[COLSUM_TILE];
  const uint lid = get_local_id(0), per_tile = COLSUM_TILE / COLSUM_COLS; /* chunks per tile */
  const ulong j0 = (ulong)get_group_id(0) * COLSUM_COLS;
  float acc = 0.0f;
  for (ulong k0 = 0; k0 < chunks; k0 += per_tile) { /* the same trip count for every item: barriers in it */
    for (uint u = 0; u < COLSUM_LOADS; ++u) {
      const uint e = lid + u * CLXENT_GROUP_SIZE;
      const ulong k = k0 + e / COLSUM_COLS, j = j0 + e % COLSUM_COLS;
      tile[e] = k < chunks && j < c ? partial[k * c + j] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint kn = (uint)min((ulong)per_tile, chunks - k0); /* not the padding: -0 + 0 would be +0 */
    if (lid < COLSUM_COLS) {
      uint kk = 0;
      for (; kk + 8 <= kn; kk += 8) { /* eight reads in flight, then the adds in order */
        float v[8];
        for (uint q = 0; q < 8; ++q) v[q] = tile[(kk + q) * COLSUM_COLS + lid];
        for (uint q = 0; q < 8; ++q) acc += v[q];
      }
      for (; kk < kn; ++kk) acc += tile[kk * COLSUM_COLS + lid];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid < COLSUM_COLS && j0 + lid < c) out[j0 + lid] = acc;
}
#undef COLSUM_COLS
#undef COLSUM_LOADS
#undef COLSUM_TILE

/* Device-resident hard-label calls (host/api_cl.c): the label statistics the host path computes
 * on the host, in a fixed order over the n labels:
 *   counted  rows whose label is not ignore_index;  bad  those outside [0, c);
 *   divisor  Σ weight[y] over the valid counted rows (their number without weights);
 * and from them scales[0..2] = clxent_params scale, z_scale, z_loss_row for `mean` (else 1, 1, 1),
 * scales[3] = the final divisor of reduce_sum, and bad_out[0] = bad (if bad_out).
 * One work-group (label_stats) walks the labels, or on a GPU with more than CLXENT_GROUP_SIZE ·
 * CLXENT_LABEL_ITEMS labels, part_count groups (label_stats_part) count a span each first and
 * label_stats adds their parts: a single group's items, each waiting on one label at a time, took
 * most of a 1048576 × 10 call on an H200 (docs/PERFORMANCE.md, "NVIDIA GPU"). */
inline void count_label(const int y, const ulong c, const int ignore_index, __global const float *weight,
                        uint *counted, uint *bad, float *weighted) {
  if (y == ignore_index) return;
  if (y < 0 || (ulong)y >= c) { ++*bad; return; }
  ++*counted;
  if (weight) *weighted += weight[y];
}

/* exact counts past 2^24 rows, where a float sum of ones stops counting: each item's count is
 * split into 12-bit halves, whose group sums stay below 2^24 (for a total below 2^32) */
inline uint group_count(const uint v, __local float *scratch) {
  return (uint)group_sum((float)(v >> 12), scratch) * 4096u + (uint)group_sum((float)(v & 4095u), scratch);
}

/* Group g's span [g·span, (g+1)·span) of the labels: parts[3g..3g+2] = counted, bad, and the bits
 * of the weighted sum. */
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void label_stats_part(const ulong n, const ulong c, __global const int *labels, __global const float *weight,
                      const int ignore_index, const ulong span, __global uint *parts) {
  __local float scratch[CLXENT_GROUP_SIZE];
  const uint lid = get_local_id(0);
  const ulong g = get_group_id(0), i1 = min(n, (g + 1) * span);
  uint counted_item = 0, bad_item = 0;
  float weighted = 0.0f;
  for (ulong i = g * span + lid; i < i1; i += CLXENT_GROUP_SIZE)
    count_label(labels[i], c, ignore_index, weight, &counted_item, &bad_item, &weighted);
  const uint counted = group_count(counted_item, scratch), bad = group_count(bad_item, scratch);
  weighted = group_sum(weighted, scratch);
  if (lid == 0) parts[3 * g] = counted, parts[3 * g + 1] = bad, parts[3 * g + 2] = as_uint(weighted);
}

__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1)))
void label_stats(const ulong n, const ulong c, __global const int *labels, __global const float *weight,
                 const int ignore_index, const int mean, __global float *scales, __global uint *bad_out,
                 __global const uint *parts, const uint part_count) {
  __local float scratch[CLXENT_GROUP_SIZE];
  const uint lid = get_local_id(0);
  uint counted_item = 0, bad_item = 0;
  float weighted = 0.0f;
  if (parts) { /* label_stats_part's counts, in the order of their spans */
    for (uint k = lid; k < part_count; k += CLXENT_GROUP_SIZE)
      counted_item += parts[3 * k], bad_item += parts[3 * k + 1], weighted += as_float(parts[3 * k + 2]);
  } else {
#if CLXENT_ROW_PER_ITEM
    /* a CPU: each item a contiguous share of the labels, counted without a branch where there are
     * no weights (vectorised). With the GPU's stride below, each of a CPU's items walked all n
     * labels, the group's 64 items 64 passes through the cache: a quarter of a 1048576 × 10
     * device-resident call (perf, docs/PERFORMANCE.md "Sixth round"). (uint)y ≥ c: y < 0 or
     * y ≥ c, c < 2^31. */
    const ulong share = (n + CLXENT_GROUP_SIZE - 1) / CLXENT_GROUP_SIZE;
    const ulong i0 = min(n, (ulong)lid * share), i1 = min(n, i0 + share);
    if (!weight) {
      for (ulong i = i0; i < i1; ++i) {
        const int y = labels[i];
        const uint keep = y != ignore_index, out = keep & ((ulong)(uint)y >= c);
        counted_item += keep & !out, bad_item += out;
      }
    } else {
      for (ulong i = i0; i < i1; ++i) count_label(labels[i], c, ignore_index, weight, &counted_item, &bad_item, &weighted);
    }
#else
    for (ulong i = lid; i < n; i += CLXENT_GROUP_SIZE)
      count_label(labels[i], c, ignore_index, weight, &counted_item, &bad_item, &weighted);
#endif
  }
  const uint counted_all = group_count(counted_item, scratch), bad_all = group_count(bad_item, scratch);
  const float counted = (float)counted_all; /* rounded once, as the host path rounds its count */
  const float divisor = weight ? group_sum(weighted, scratch) : counted;
  if (lid == 0) {
    /* a zero divisor with rows counted (all their weights 0): the gradient is 0/0 on those rows
     * and the loss NaN, as in PyTorch (host/plan.c) */
    scales[0] = !mean ? 1.0f : divisor > 0.0f ? 1.0f / divisor : counted > 0.0f ? NAN : 0.0f;
    scales[1] = !mean ? 1.0f : counted > 0.0f ? 1.0f / counted : 0.0f;
    scales[2] = !mean ? 1.0f : (divisor > 0.0f && counted > 0.0f) ? divisor / counted : 0.0f;
    scales[3] = !mean ? 1.0f : divisor > 0.0f ? divisor : NAN;
    if (bad_out) bad_out[0] = bad_all;
  }
}

/* The elementwise losses stream their per-value results block by block. Chunk k holds values
 * [k·64, (k+1)·64) of the batch; partial[k] is their left-to-right sum, continued from the stored
 * value when an earlier block began the chunk: the same additions in the same order for any block
 * size. reduce_sum then adds the chunk sums in its fixed tree. */
__kernel void chunk_sum(const ulong count, const ulong first, __global const float *values, __global float *partial) {
  const ulong k = first / CLXENT_SUM_CHUNK + get_global_id(0), chunk_begin = k * CLXENT_SUM_CHUNK;
  if (chunk_begin >= first + count) return; /* the launch's items are rounded up to whole groups */
  const ulong begin = chunk_begin > first ? chunk_begin : first;
  ulong end = chunk_begin + CLXENT_SUM_CHUNK;
  if (end > first + count) end = first + count;
  float acc = begin == chunk_begin ? 0.0f : partial[k];
  for (ulong r = begin; r < end; ++r) acc += values[r - first];
  partial[k] = acc;
}
