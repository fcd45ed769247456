/*
 * Fused softmax cross-entropy: loss and gradient for a block of `rows` rows of `c` logits, with
 * every option of the loss toolbox folded into the same passes.
 *
 *   u_ij     = cap(z_ij)  (softcap s·tanh(z/s), or z itself)           u' = du/dz  (common.cl)
 *   lse_i    = m_i + ln s_i,  m_i = max_j u_ij,  s_i = Σ_j e^{u_ij - m_i}   (overflow-free)
 *   a_ij     = e^{u_ij - lse_i}                                        (softmax)
 *   τ_ij     = w_j · ((1-ε) t_ij + ε/c)    target mass: t one-hot at y_i (hard) or dense (soft),
 *                                          w the class weights (1 without), ε the label smoothing
 *   loss_i   = Σ_j τ_ij (lse_i - u_ij) + λ lse_i²                      (λ: z-loss)
 *   dL/dz_ij = [S (a_ij Σ_k τ_ik - τ_ij) + 2 λ S_z lse_i a_ij] · u'_ij
 *
 * S and S_z are the reduction's scales. For hard labels Σ_j τ_ij (lse - u_ij) is computed as
 * (1-ε) w_y (lse - u_y) + (ε/c) [Σ_j w_j (m - u_j) + W ln s] with W = Σ_j w_j from the host:
 * m - u is exact where lse - u would cancel. Terms with τ = 0 add 0 even where u = -inf (a mask).
 * The per-row loss gets the z-loss term times p.z_loss_row, so that the host's one division
 * of Σ_i loss_i gives every term its own PyTorch/Liger divisor.
 *
 * The block's rows are rows first_row.. of the batch: labels, row_loss and row_lse are indexed by
 * batch row, logits, targets and grad by block row (the host may stream a batch in blocks). grad
 * may be 0 (loss only) or the logits buffer itself (in place): every element is read before the
 * same work-item overwrites it.
 */

/* No contraction of a*b + c into one rounding in this file's row-per-item kernels: the host's
 * direct path (host/direct.c) computes their bits with the same operations in the same order,
 * which an optional fusion would make the compiler's choice (clxent_math.h). The fused steps the
 * exponential and logarithm want are written out there. */
#pragma OPENCL FP_CONTRACT OFF

/* Softcap's cache 3 (hard_row) keeps e in the gradient row itself, not in the scratch's second half,
 * for float32 on AVX-512 CPUs (CLXENT_VEC 16, as the host's own_row for the plain call): the store
 * goes to the line pass 1 has just read, in L1, not to a second 4c-byte stretch of L2. The same
 * values and operations: the same bits, so 16-bit storage (e in the scratch) stays float32's
 * rounded once. The host still makes the stride two rows long where 16-bit storage would be given
 * the two, so that every storage type takes cache 3 for the same c. */
#ifndef CLXENT_E_IN_G
#define CLXENT_E_IN_G (CLXENT_STORAGE == CLXENT_STORAGE_F32 && CLXENT_VEC == 16)
#endif

/* The kernels' arguments:
 *   rows, c      the block's shape; first_row  its first row within the batch
 *   logits       [rows][c]; targets [rows][c] (soft); labels [batch], read at first_row + i (hard)
 *   weight       [c] class weights, or 0 for all ones;  ignore_index  (hard)
 *   p_host       the call's scalars (clxent_params, clxent_defs.h)
 *   grad         [rows][c] or 0;  row_loss, row_lse  [batch], written at first_row + i (lse may be 0)
 *   dev_scales   (hard) 0, or CLXENT_SCALES_COUNT floats from label_stats: scale and z_scale become
 *                p's times them (p's hold the upstream gradient g, 1 without), z_loss_row is replaced
 *                (device-resident calls, whose label counts the host never sees)
 *   row_scale    0, or [batch] floats read at first_row + i: row i's gradient scales S and S_z are
 *                multiplied by it (opts->grad_output under NONE: g_i · dloss_i/dz_i; the loss is not
 *                scaled). A product with 1 is exact: g_i = 1 gives the bits of row_scale = 0
 *   row_cache, row_cache_stride  (hard) local memory, row_cache_stride floats per work-item: the
 *                row-per-item kernel caches the row's exponentials there in pass 1 for pass 2; the
 *                group variant's softmax_xent_hard_tile holds its group's rows there (stride c);
 *                stride 0: none
 *   row_argmax   [batch] or 0: written at first_row + i, the index of the row's largest raw logit z
 *                (not u: softcap's saturation makes ties), the first on ties; a row holding a NaN:
 *                its first NaN (torch.argmax); a row of -inf only: 0. Every row but a bad label's
 *                (device-resident calls). Found from the max that pass 1 computes anyway: only a
 *                chunk whose max beats the running max is searched (from L1), so the vector loops
 *                are those of a call without it */
#define SOFTMAX_HARD_ARGS                                                                               \
  const ulong rows, const ulong c, const ulong first_row, __global const store_t *logits,               \
      __global const int *labels, __global const float *weight, const int ignore_index,                 \
      const clxent_params p_host, __global store_t *grad, __global float *row_loss, __global float *row_lse, \
      __global const float *dev_scales, __global const float *row_scale, __local float *row_cache,      \
      const ulong row_cache_stride, __global int *row_argmax
#define SOFTMAX_SOFT_ARGS                                                                               \
  const ulong rows, const ulong c, const ulong first_row, __global const store_t *logits,               \
      __global const store_t *targets, __global const float *weight, const clxent_params p_host,        \
      __global store_t *grad, __global float *row_loss, __global float *row_lse,                        \
      __global const float *row_scale, __global int *row_argmax

/* Short rows (CLXENT_SHORT_ROWS: c ≤ 64, with softcap c ≤ 32; the one-item-per-row variant): a row's vector loop would be
 * all tail, so a work-item owns blocks of CLXENT_VEC consecutive rows instead (CLXENT_SHORT_BLOCKS
 * of them, one after the other), one row per vector lane: column j of a block is one vector,
 * gathered from the rows' contiguous stretch of memory (lanes past the batch repeat its last row
 * and write nothing). The math is the row kernel's, lane by lane;
 * the label's column is gathered once per block (column 0 for a lane whose label is out of range:
 * its results are replaced by 0 or NaN) and its gradient element written after the row's.
 * (Vectors of the last block's per-row values and, without AVX-512, of columns are built element
 * by element: through a private array, PoCL's code stalls on store-to-load forwarding. A full
 * block's labels and upstream gradients come by one vector load.) */
#if CLXENT_VEC == 4
#define CLXENT_LANES(F) (F(0), F(1), F(2), F(3))
#define CLXENT_EACH_LANE(F) F(0) F(1) F(2) F(3)
#elif CLXENT_VEC == 8
#define CLXENT_LANES(F) (F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7))
#define CLXENT_EACH_LANE(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7)
#else
#define CLXENT_LANES(F) (F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), F(9), F(10), F(11), F(12), F(13), F(14), F(15))
#define CLXENT_EACH_LANE(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
#endif
#define SHORT_LANE(l) (l)

/* The rows [r0, r0 + nr) of softmax_xent_hard_short, nr ≤ CLXENT_VEC: the kernel calls it with
 * nr = CLXENT_VEC as a constant for every block but the batch's last, whose lanes the compiler
 * then knows (no min(l, nr - 1) per lane, no test per store). Inlined by force where the compiler
 * is Clang (PoCL, Oclgrind; PoCL called it out of line otherwise); the group variant's programs
 * compile this kernel too but never launch it. */
#if defined(__clang__)
#define CLXENT_INLINE_ALWAYS __attribute__((always_inline)) inline
#else
#define CLXENT_INLINE_ALWAYS inline
#endif
/* float32 with AVX-512's 16 lanes (common.cl): columns gathered and scattered by one instruction
 * each, from 32-bit offsets (a block spans at most 16 × 64 values). The same values in the same
 * lanes: the same bits. */
#if CLXENT_HAS_GATHER_16 && CLXENT_STORAGE == CLXENT_STORAGE_F32
#define SHORT_GATHER 1
#define SHORT_GATHER16(p, off) __builtin_ia32_gathersiv16sf((floatv)(0.0f), (p), (off), (ushort)0xffffu, 4)
#define SHORT_SCATTER16(p, mask, off, v) __builtin_ia32_scattersiv16sf((p), (mask), (off), (v), 4)
/* A full block's tile of 8 to 16 columns comes in by 16 masked loads and leaves by 16 masked
 * stores around two 16 x 16 transposes in registers (common.cl, 128 shuffles), where gathers and
 * scatters, one per column, cost more: on the AVX-512 EPYC (Zen 4) one 16-lane gather or scatter
 * took ~7 ns from L1, a shuffle ~1 (docs/PERFORMANCE.md, tenth round). */
#define SHORT_LOAD_ROW(r) R[r] = __builtin_ia32_loadups512_mask(z + (r) * stride, (floatv)(0.0f), cmask);
#define SHORT_STORE_ROW(r) __builtin_ia32_storeups512_mask(g + (r) * stride, R[r], cmask);
#define SHORT_EACH16(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)
/* a full block's columns [0, width) (width <= 16) of rows `stride` floats apart, into R[0, width);
 * R[width, 16) get zeros, so R must hold 16 vectors. R is the caller's column array itself: a
 * copy through an array of its own cost 9% of the kernel's samples at c = 10 (perf: the stack
 * copies, R's 16 vectors being spilled anyway beside the block's other values) */
CLXENT_INLINE_ALWAYS void short_columns(__global const float *z, uint stride, uint width, floatv *R) {
  const ushort cmask = (ushort)((1u << width) - 1u);
  SHORT_EACH16(SHORT_LOAD_ROW)
  clxent_transpose16(R);
}
/* a full block's gradient columns R[0, width) stored as its rows' [0, width) (R[width, 16) are
 * read and ignored; R is transposed in place) */
CLXENT_INLINE_ALWAYS void short_rows_out(__global float *g, uint stride, uint width, floatv *R) {
  const ushort cmask = (ushort)((1u << width) - 1u);
  clxent_transpose16(R);
  SHORT_EACH16(SHORT_STORE_ROW)
}
#if CLXENT_SHORT_C % 16 != 0
#error "the transposes write 16 columns a tile into u: CLXENT_SHORT_C must be a multiple of 16"
#endif
#else
#define SHORT_GATHER 0
#endif
CLXENT_INLINE_ALWAYS void short_block(SOFTMAX_HARD_ARGS, const ulong r0, const uint nr) {
  const clxent_params p = call_params(p_host, dev_scales);
  const uint cc = (uint)c;
  __global const store_t *z = logits + r0 * c;
  /* the block CLXENT_SHORT_PREFETCH blocks ahead (this thread's next items' rows: a group's items
   * run one after the other), its logits for reading and its gradient for writing: a line a
   * column's gather or scatter touches first waits for memory otherwise */
  for (uint o = 0, span = CLXENT_VEC * cc; o < span; o += 64 / sizeof(store_t)) {
    CLXENT_PREFETCH(z, CLXENT_SHORT_PREFETCH * span + o);
    if (grad) CLXENT_PREFETCH_W(grad + r0 * c, CLXENT_SHORT_PREFETCH * span + o);
  }
  const intv lane = (intv)CLXENT_LANES(SHORT_LANE);
#define SHORT_ROW(l) ((ulong)min((uint)(l), nr - 1) * c)
#define SHORT_Y(l) labels[first_row + r0 + min((uint)(l), nr - 1)]
  /* the per-row values of a full block (labels; losses, lse, argmax; upstream gradients) by one
   * vector load or store, the last block's lane by lane (sixteen scalar loads and inserts, or
   * extracts and stores, were 3-5% of the kernel's time at c = 10) */
  const int full = nr == CLXENT_VEC;
  const intv y = full ? vloadv(0, labels + first_row + r0)
                      : select((intv)CLXENT_LANES(SHORT_Y), (intv)(ignore_index), lane >= (int)nr);
  const intv ignored = y == ignore_index, bad = !ignored & ((y < 0) | (y >= (int)cc));
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss, W = p.weight_sum;
  const int smooth = eps > 0.0f;

  /* the columns, capped (u, with u' in slope when capped), and their max and min per lane */
  floatv u[CLXENT_SHORT_C], slope[CLXENT_SHORT_CAP_C]; /* slope: softcap only, c ≤ CLXENT_SHORT_CAP_C */
  floatv m = (floatv)(-INFINITY), lo = (floatv)(INFINITY);
#define SHORT_Z(l) LOAD(z, SHORT_ROW(l) + j)
#if SHORT_GATHER
  /* each lane's row offset (past the batch's last row a lane repeats it), and the lanes to store */
  const intv row_off = min(lane, (intv)((int)nr - 1)) * (int)cc;
  const ushort lanes = nr == CLXENT_VEC ? (ushort)0xffffu : (ushort)((1u << nr) - 1u);
  /* c >= 8 in a full block: columns by transposes (short_columns), not by gathers. Against the
   * gathers and scatters on the Zen 4 EPYC, in place: 0.91x the time at c = 8, 0.83x at 10,
   * 0.87x at 12, 0.72x at 16, by tiles 0.74x at 20 and 24, 0.70x at 33, 0.71x at 40, 0.65x at 64;
   * but 0.98x at 6, 1.05x at 5, 1.26x at 3 (a tile's 128 shuffles whatever its width) */
  /* Wider rows by tiles of 16 columns, a last tile of at least 8 too; the columns past them
   * (fewer than 8) by gathers: trc of them by transposes */
  /* into u itself. A last tile narrower than 16 occurs only where trc == cc: its extra vectors
   * fill u[cc, 16·ceil(cc/16)) with zeros (u holds a multiple of 16 columns), never read: every
   * loop runs j < cc */
  const uint trc = nr != CLXENT_VEC || cc < 8 ? 0 : cc / 16 * 16 + (cc % 16 >= 8 ? cc % 16 : 0);
  for (uint t = 0; t < trc; t += 16) short_columns(z + t, cc, min(16u, trc - t), u + t);
#define SHORT_COLUMN (j < trc ? u[j] : SHORT_GATHER16(z + j, row_off))
/* the raw z of column j again (argmax under softcap, where u holds the capped values) */
#define SHORT_RAW_COLUMN SHORT_GATHER16(z + j, row_off)
#else
#define SHORT_COLUMN (floatv)CLXENT_LANES(SHORT_Z)
#define SHORT_RAW_COLUMN SHORT_COLUMN
#endif
  if (cap == 0.0f) { /* without the test per column */
    for (uint j = 0; j < cc; ++j) {
      const floatv v = SHORT_COLUMN;
      u[j] = v;
      m = v > m ? v : m;
      lo = v < lo ? v : lo;
    }
  } else {
    for (uint j = 0; j < cc; ++j) {
      const floatv v = cap_logit_slopev(SHORT_COLUMN, cap, &slope[j]);
      u[j] = v;
      m = v > m ? v : m;
      lo = v < lo ? v : lo;
    }
  }
  /* argmax of the raw z per lane (u is z itself without softcap; with it, z is gathered again,
   * from L1): the first max, else the first NaN; a lane of -inf only keeps 0 */
  if (row_argmax) {
    floatv best = (floatv)(-INFINITY);
    intv at = (intv)(0), nan_at = (intv)(-1);
    for (uint j = 0; j < cc; ++j) {
      const floatv v = cap != 0.0f ? SHORT_RAW_COLUMN : u[j];
      const intv gt = v > best;
      best = select(best, v, gt), at = select(at, (intv)((int)j), gt);
      nan_at = select(nan_at, (intv)((int)j), isnan(v) & (nan_at < 0));
    }
    int idx[CLXENT_VEC];
    if (full) {
      vstorev(select(at, nan_at, nan_at >= 0), 0, row_argmax + first_row + r0);
    } else {
      vstorev(select(at, nan_at, nan_at >= 0), 0, idx);
      for (uint l = 0; l < nr; ++l) row_argmax[first_row + r0 + l] = idx[l];
    }
  }
  /* one range test per item (math.cl): every lane's u - m within the narrow exponential's range */
  const int narrow = hmax(m - lo) <= CLXENT_EXP_FAST_LIMIT;
  /* the label's column per lane (any column where the label is ignored or bad: those lanes'
   * results are replaced below), gathered once, read before an in-place gradient overwrites it;
   * its u, u', e and w are the column loops' values for that column, computed alike */
  const intv yv = select(y, (intv)(0), (y < 0) | (y >= (int)cc));
  int yl[CLXENT_VEC];
  vstorev(yv, 0, yl);
#define SHORT_ZY(l) LOAD(z, SHORT_ROW(l) + (uint)yl[l])
#define SHORT_WY(l) weight[yl[l]]
#if SHORT_GATHER
  floatv slope_y = (floatv)(1.0f), uy = SHORT_GATHER16(z, row_off + yv);
#else
  floatv slope_y = (floatv)(1.0f), uy = (floatv)CLXENT_LANES(SHORT_ZY);
#endif
  if (cap != 0.0f) uy = cap_logit_slopev(uy, cap, &slope_y);
  const floatv ey = narrow ? clxent_expv_narrow(uy - m) : clxent_expv(uy - m);
  const floatv wy = weight ? (floatv)CLXENT_LANES(SHORT_WY) : (floatv)(1.0f);
#undef SHORT_ZY
#undef SHORT_WY
  floatv sv = (floatv)(0.0f), wdev = (floatv)(0.0f);
  /* from here on, u holds e^{u - m}. The common case in a loop of its own: PoCL's compiler kept
   * the general loop's tests in it, and the exponential's constants on the stack (65
   * instructions a column at c = 10, callgrind) */
  if (narrow && !smooth) {
    for (uint j = 0; j < cc; ++j) {
      const floatv e = clxent_expv_narrow(u[j] - m);
      sv += e;
      u[j] = e;
    }
  } else {
    for (uint j = 0; j < cc; ++j) {
      const floatv e = narrow ? clxent_expv_narrow(u[j] - m) : clxent_expv(u[j] - m);
      sv += e;
      const float w = weight ? weight[j] : 1.0f;
      if (smooth && w != 0.0f) wdev += w * (m - u[j]);
      u[j] = e;
    }
  }
  const floatv log_s = clxent_logv(sv), lse = m + log_s;
  const float inv_c = 1.0f / (float)c;
  floatv loss = (1.0f - eps) * wy * ((m - uy) + log_s);
  if (smooth) loss += eps * inv_c * (wdev + W * log_s);
  if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
  loss = select(select(loss, (floatv)(0.0f), ignored), (floatv)(NAN), bad);
  float out[CLXENT_VEC];
  if (full) {
    vstorev_g(loss, row_loss + first_row + r0);
    if (row_lse) vstorev_g(select(lse, (floatv)(NAN), bad), row_lse + first_row + r0);
  } else {
    vstorev(loss, 0, out);
    for (uint l = 0; l < nr; ++l) row_loss[first_row + r0 + l] = out[l];
    if (row_lse) {
      vstorev(select(lse, (floatv)(NAN), bad), 0, out);
      for (uint l = 0; l < nr; ++l) row_lse[first_row + r0 + l] = out[l];
    }
  }
  if (!grad) return;

  /* the gradient's scales, per lane when the rows have their own upstream gradient */
#define SHORT_G(l) row_scale[first_row + r0 + min((uint)(l), nr - 1)]
  const floatv g_up = !row_scale ? (floatv)(1.0f) : full ? vloadv(0, row_scale + first_row + r0) : (floatv)CLXENT_LANES(SHORT_G);
#undef SHORT_G
  const floatv S = p.scale * g_up, Sz = p.z_scale * g_up;
  const floatv k = (S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * Sz) / sv;
  const floatv K = S * (1.0f - eps) * wy;
  const floatv B = S * eps * inv_c;
  const floatv fill = select((floatv)(0.0f), (floatv)(NAN), bad); /* ignored rows: 0; bad labels: NaN */
  const intv skip = ignored | bad;
  __global store_t *g = grad + r0 * c;
#define SHORT_PUT(l) STORE(out[l], g, (ulong)(l) * c + j);
#define SHORT_PUT_IF(l) if ((l) < nr) STORE(out[l], g, (ulong)(l) * c + j);
  /* the stores: unrolled where the item has all its rows (constant lanes, no test per lane) */
#if SHORT_GATHER
#define SHORT_SCATTER(gv)                                         \
  if (j < trc) u[j] = select(gv, fill, skip);                     \
  else SHORT_SCATTER16(g + j, lanes, row_off, select(gv, fill, skip));
#else
#define SHORT_SCATTER(gv)                          \
  vstorev(select(gv, fill, skip), 0, out);         \
  if (nr == CLXENT_VEC) {                          \
    CLXENT_EACH_LANE(SHORT_PUT)                    \
  } else {                                         \
    CLXENT_EACH_LANE(SHORT_PUT_IF)                 \
  }
#endif
  if (!weight && cap == 0.0f) { /* w = 1 and u' = 1: k u - B, the general loop's bits */
    for (uint j = 0; j < cc; ++j) {
      SHORT_SCATTER(k * u[j] - B)
    }
  } else {
    for (uint j = 0; j < cc; ++j) {
      const float w = weight ? weight[j] : 1.0f;
      floatv gv = k * u[j] - B * w;
      if (cap != 0.0f) gv *= slope[j]; /* u' = 1 without softcap: no product */
      SHORT_SCATTER(gv)
    }
  }
#undef SHORT_SCATTER
#undef SHORT_PUT
#undef SHORT_PUT_IF
#if SHORT_GATHER
  for (uint t = 0; t < trc; t += 16) short_rows_out(g + t, cc, min(16u, trc - t), u + t); /* the columns gv, as rows */
#endif
  /* the label's element, written again (a skipped lane's with its fill again) */
#if SHORT_GATHER
  SHORT_SCATTER16(g, lanes, row_off + yv, select((k * ey - B * wy - K) * slope_y, fill, skip));
#else
  vstorev(select((k * ey - B * wy - K) * slope_y, fill, skip), 0, out);
  for (uint l = 0; l < nr; ++l) STORE(out[l], g, (ulong)l * c + (uint)yl[l]);
#endif
#undef SHORT_COLUMN
#undef SHORT_RAW_COLUMN
#undef SHORT_ROW
#undef SHORT_Y
#undef SHORT_Z
}
#undef SHORT_GATHER
#undef SHORT_GATHER16
#undef SHORT_SCATTER16
__kernel void softmax_xent_hard_short(SOFTMAX_HARD_ARGS) {
  for (uint b = 0; b < CLXENT_SHORT_BLOCKS; ++b) {
    const ulong r0 = (get_global_id(0) * CLXENT_SHORT_BLOCKS + b) * CLXENT_VEC;
    if (r0 + CLXENT_VEC <= rows)
      short_block(rows, c, first_row, logits, labels, weight, ignore_index, p_host, grad, row_loss, row_lse,
                  dev_scales, row_scale, row_cache, row_cache_stride, row_argmax, r0, CLXENT_VEC);
    else if (r0 < rows)
      short_block(rows, c, first_row, logits, labels, weight, ignore_index, p_host, grad, row_loss, row_lse,
                  dev_scales, row_scale, row_cache, row_cache_stride, row_argmax, r0, (uint)(rows - r0));
  }
}

#if CLXENT_ROW_PER_ITEM

/* SOFT_CHUNKS: the soft kernel's sums over a row (s, Σ τ, Σ τ (m - u)) add per-chunk sums of
 * CLXENT_ROW_CHUNK values, as the hard kernel's pass 1 does, instead of one running sum per
 * lane: with 4 lanes a 262147-class row put 65536 similar values in each, whose roundings
 * gathered to a relative 2.4e-4 in a gradient element (tests/test_toolbox.c's soft 2 × 262147
 * on an H200, item variant). Rows of one chunk keep their bits (0 + x is x).
 *
 * Pass 2 of the one-item-per-row kernels: s = Σ_j e^{u_j - m}. Float32 storage without softcap
 * caches each e in the gradient row (which may alias z: each element is read before it is
 * written), so that pass 3 scales it instead of recomputing it. */
inline float row_exp_sum_cached(__global const store_t *z, __global store_t *g, ulong c, float m) {
  const ulong cv = c - c % CLXENT_VEC;
  floatv sv = (floatv)(0.0f);
  float s = 0.0f;
  for (ulong j0 = 0; j0 < cv; j0 += CLXENT_ROW_CHUNK) { /* SOFT_CHUNKS */
    const ulong j1 = min(cv, j0 + (ulong)CLXENT_ROW_CHUNK);
    floatv part = (floatv)(0.0f);
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
    if (g) {
      for (ulong j = j0; j < j1; j += CLXENT_VEC) {
        const floatv e = clxent_expv(LOADV(z, j) - m);
        STOREV(e, g, j);
        part += e;
      }
    } else
#endif
      for (ulong j = j0; j < j1; j += CLXENT_VEC) part += clxent_expv(LOADV(z, j) - m);
    sv += part;
  }
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
  if (g) {
    for (ulong j = cv; j < c; ++j) { const float e = clxent_exp(LOAD(z, j) - m); STORE(e, g, j); s += e; }
    return hsum(sv) + s;
  }
#endif
  for (ulong j = cv; j < c; ++j) s += clxent_exp(LOAD(z, j) - m);
  return hsum(sv) + s;
}


/* One work-item per row, two passes, so that the row is read from memory once:
 *   1. chunk by chunk (CLXENT_ROW_CHUNK values, which stay in the L1 cache between their two
 *      reads): the chunk's max, then e^{u_j - m} with the running max m and s = Σ e^{u_j - m}
 *      (when m grows, s is rescaled by e^{m_old - m_new}: the online softmax). Float32 storage
 *      caches each e in the gradient row (which may alias z: each element is read before it is
 *      written), relative to the m of its time: the row's segments of one m are recorded;
 *   2. grad_j = (A e^{u_j - m}/s - B w_j) u'_j, the cached e scaled by its segment's
 *      k·e^{m_seg - m}, then the label's own term at j = y.
 * The smoothing term Σ_j w_j (m - u_j) is kept relative to the running m, as Σ w_j (m_run - u_j)
 * plus (Σ w_j)(m - m_run) when m grows: a sum of non-negative terms, with no cancellation for
 * large logits. Pass 2 reads what pass 1 left in the L2 cache; pass 1 overlaps its memory reads
 * with its exponentials. */

/* max_j z_j over [j0, j1), j0 a multiple of CLXENT_VEC from the row's start, and the min in *lo:
 * compare-select, a NaN is skipped here and reaches the loss through the sum of exponentials. */
inline float range_max(__global const store_t *z, ulong j0, ulong j1, float *lo) {
  const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
  floatv mv = (floatv)(-INFINITY), nv = (floatv)(INFINITY);
  for (ulong j = j0; j < jv; j += CLXENT_VEC) {
    CLXENT_PREFETCH(z, j + CLXENT_PREFETCH_AHEAD);
    const floatv v = LOADV(z, j);
    mv = v > mv ? v : mv;
    nv = v < nv ? v : nv;
  }
  float m = hmax(mv), n = -hmax(-nv);
  for (ulong j = jv; j < j1; ++j) m = fmax(m, LOAD(z, j)), n = fmin(n, LOAD(z, j));
  *lo = n;
  return m;
}

/* argmax (row_argmax): the first j in [j0, j1) where z_j == v, else j1; the first NaN, else j1
 * (not c: callers of a chunk test for j1).
 * Vector compares until the vector that holds it, then its elements one by one. */
inline ulong range_first_eq(__global const store_t *z, ulong j0, ulong j1, float v) {
  const ulong jq = j1 - (j1 - j0) % (4 * CLXENT_VEC), jv = j1 - (j1 - j0) % CLXENT_VEC;
  ulong j = j0;
  /* four vectors a test: any() is a horizontal reduction and a branch */
  while (j < jq && !any((LOADV(z, j) == v) | (LOADV(z, j + CLXENT_VEC) == v) | (LOADV(z, j + 2 * CLXENT_VEC) == v) |
                        (LOADV(z, j + 3 * CLXENT_VEC) == v)))
    j += 4 * CLXENT_VEC;
  while (j < jv && !any(LOADV(z, j) == v)) j += CLXENT_VEC;
  for (; j < j1; ++j)
    if (LOAD(z, j) == v) return j;
  return j1;
}
inline ulong range_first_nan(__global const store_t *z, ulong j0, ulong j1) {
  const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
  ulong j = j0;
  while (j < jv && !any(isnan(LOADV(z, j)))) j += CLXENT_VEC;
  for (; j < j1; ++j)
    if (isnan(LOAD(z, j))) return j;
  return j1;
}

/* The fused loops' epilogue: the next chunk's max and min, from the loop's lanes hv and lv and
 * the values [j, n1) past the next chunk's vector part (the caller ignores them after the last
 * chunk, where the next chunk is empty). */
inline void next_range(__global const store_t *z, floatv hv, floatv lv, ulong j, ulong n1, float *next_hi,
                       float *next_lo) {
  float hi = hmax(hv), lo = -hmax(-lv);
  for (; j < n1; ++j) hi = fmax(hi, LOAD(z, j)), lo = fmin(lo, LOAD(z, j));
  *next_hi = hi, *next_lo = lo;
}

/* Pass 1 over [j0, j1) with the running max m: returns Σ e^{u_j - m}; adds Σ_{w≠0} w_j (m - u_j)
 * to *wdev and Σ w_j to *wsum when smoothing; caches e (cache 1) or u (cache 2) in sc (the item's
 * local scratch) if given, else in g (float32 storage only). narrow: every u_j - m is in the
 * exponential's narrow range (math.cl). It also finds the max and min of z over the next chunk
 * [n0, n1) (no longer than this one): in the plain call within the same loop, so that the next
 * chunk streams in from memory while this one's exponentials are computed from L1 (the phases
 * one after the other left memory idle during the arithmetic, and the arithmetic during the
 * reads). small (softcap): every |z|/s of the chunk is below the tanh's series split, so its u are
 * the series' alone (the general tanh's bits for every finite z; only a NaN's payload may differ).
 * The fused loops read the next chunk's first nvc values within this chunk's vector loop: the
 * next chunk must be no longer than this one (the caller's chunks are CLXENT_ROW_CHUNK values, a
 * multiple of CLXENT_VEC, and only the row's last may be shorter). */
/* cache 3's e: in the gradient row or the scratch's second half (CLXENT_E_IN_G) */
#if CLXENT_E_IN_G
#define KEEP_E_V(e, j) STOREV(e, g, j)
#define KEEP_E_1(e, j) STORE(e, g, j)
#else
#define KEEP_E_V(e, j) vstorev_g(e, se + (j))
#define KEEP_E_1(e, j) (se[j] = (e))
#endif
#define CLXENT_FUSED_LOOP_U(UF, EXPF, KEEP)                             \
  for (ulong k = 0; k < nvc; k += CLXENT_VEC) {                         \
    const floatv u = UF(LOADV(z, j0 + k)), e = EXPF(u - m);             \
    KEEP;                                                               \
    sv += e;                                                            \
    CLXENT_PREFETCH(z, n0 + k + CLXENT_PREFETCH_AHEAD);                 \
    const floatv v = LOADV(z, n0 + k);                                  \
    hv = v > hv ? v : hv;                                               \
    lv = v < lv ? v : lv;                                               \
  }                                                                     \
  for (ulong k = nvc; k < jv - j0; k += CLXENT_VEC) {                   \
    const floatv u = UF(LOADV(z, j0 + k)), e = EXPF(u - m);             \
    KEEP;                                                               \
    sv += e;                                                            \
  }
#define CLXENT_AS_IS(v) (v)
#define CLXENT_FUSED_LOOP(EXPF, KEEP) CLXENT_FUSED_LOOP_U(CLXENT_AS_IS, EXPF, KEEP)
inline float range_exp_sum(__global const store_t *z, __global store_t *g, __local float *sc,
                           __local float *se, __global const float *weight, ulong j0, ulong j1, float m, float cap,
                           int smooth, int cache, int narrow, int small, float *wdev, float *wsum, ulong n0,
                           ulong n1, float *next_hi, float *next_lo) {
  const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
  floatv sv = (floatv)(0.0f), wv = (floatv)(0.0f), wsv = (floatv)(0.0f);
  float s = 0.0f;
  if (cap == 0.0f && !smooth) { /* the plain call: loops of their own, without per-element tests */
    const ulong nvc = (n1 - n0) - (n1 - n0) % CLXENT_VEC;
    floatv hv = (floatv)(-INFINITY), lv = (floatv)(INFINITY);
    if (cache && sc) {
      if (narrow) {
        CLXENT_FUSED_LOOP(clxent_expv_narrow, vstorev_g(e, sc + j0 + k))
      } else {
        CLXENT_FUSED_LOOP(clxent_expv, vstorev_g(e, sc + j0 + k))
      }
    }
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
    else if (cache && narrow) {
      CLXENT_FUSED_LOOP(clxent_expv_narrow, STOREV(e, g, j0 + k))
    } else if (cache) {
      CLXENT_FUSED_LOOP(clxent_expv, STOREV(e, g, j0 + k))
    }
#endif
    else if (narrow) {
      CLXENT_FUSED_LOOP(clxent_expv_narrow, )
    } else {
      CLXENT_FUSED_LOOP(clxent_expv, )
    }
    for (ulong j = jv; j < j1; ++j) {
      const float e = clxent_exp(LOAD(z, j) - m);
      if (cache && sc) sc[j] = e;
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
      else if (cache) STORE(e, g, j);
#endif
      s += e;
    }
    next_range(z, hv, lv, n0 + nvc, n1, next_hi, next_lo);
    return hsum(sv) + s;
  }
  if (cap != 0.0f && (cache == 3 || cache == 2) && ((sc && !smooth) || narrow)) {
    /* softcap in its own loops, as the plain call: u = s·tanh(z/s) (tanh alone: the slope comes
     * from u in pass 2) and e^{u - m} kept (cache 3: u and e side by side in the scratch; 2: u, in
     * the scratch or, float32 rows past it, in the gradient row, as the general loop keeps it),
     * the next chunk's max and min read in the same loop; with label smoothing (narrow chunks) its
     * sums as the general loop below makes them, in the same order */
    const ulong nvc = (n1 - n0) - (n1 - n0) % CLXENT_VEC;
    floatv hv = (floatv)(-INFINITY), lv = (floatv)(INFINITY);
#define CLXENT_CAP_V(v) cap_logitv(v, cap)
#define CLXENT_CAP_SMALL_V(v) cap_logitv_small(v, cap)
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
#define CLXENT_KEEP_U                          \
  if (sc) vstorev_g(u, sc + j0 + k);          \
  else STOREV(u, g, j0 + k)
#else /* 16-bit: cache 2 only with the scratch */
#define CLXENT_KEEP_U vstorev_g(u, sc + j0 + k)
#endif
#define CLXENT_KEEP_UE (vstorev_g(u, sc + j0 + k), KEEP_E_V(e, j0 + k))
#define CLXENT_KEEP_SMOOTH(KEEP)                                                                   \
  {                                                                                                \
    KEEP;                                                                                          \
    const floatv w = weight ? vloadv(0, weight + j0 + k) : (floatv)(1.0f);                         \
    wv += select(w * (m - u), (floatv)(0.0f), w == (floatv)(0.0f));                                \
    wsv += w;                                                                                      \
  }
    if (smooth && small && cache == 3) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_SMALL_V, clxent_expv_narrow, CLXENT_KEEP_SMOOTH(CLXENT_KEEP_UE))
    } else if (smooth && cache == 3) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv_narrow, CLXENT_KEEP_SMOOTH(CLXENT_KEEP_UE))
    } else if (smooth && small) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_SMALL_V, clxent_expv_narrow, CLXENT_KEEP_SMOOTH(CLXENT_KEEP_U))
    } else if (smooth) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv_narrow, CLXENT_KEEP_SMOOTH(CLXENT_KEEP_U))
    } else if (cache == 3 && narrow && small) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_SMALL_V, clxent_expv_narrow, CLXENT_KEEP_UE)
    } else if (narrow && small) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_SMALL_V, clxent_expv_narrow, CLXENT_KEEP_U)
    } else if (cache == 3 && narrow) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv_narrow, CLXENT_KEEP_UE)
    } else if (cache == 3) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv, CLXENT_KEEP_UE)
    } else if (narrow) {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv_narrow, CLXENT_KEEP_U)
    } else {
      CLXENT_FUSED_LOOP_U(CLXENT_CAP_V, clxent_expv, CLXENT_KEEP_U)
    }
#undef CLXENT_CAP_V
#undef CLXENT_CAP_SMALL_V
#undef CLXENT_KEEP_U
#undef CLXENT_KEEP_UE
#undef CLXENT_KEEP_SMOOTH
    for (ulong j = jv; j < j1; ++j) {
      const float u = cap_logit(LOAD(z, j), cap), w = weight ? weight[j] : 1.0f, e = clxent_exp(u - m);
      if (cache == 3) sc[j] = u, KEEP_E_1(e, j);
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
      else if (!sc) STORE(u, g, j);
#endif
      else sc[j] = u;
      s += e;
      if (smooth && w != 0.0f) *wdev += w * (m - u);
      if (smooth) *wsum += w;
    }
    *wdev += hsum(wv), *wsum += hsum(wsv);
    next_range(z, hv, lv, n0 + nvc, n1, next_hi, next_lo);
    return hsum(sv) + s;
  }
  if (cap == 0.0f && narrow && cache) {
    /* label smoothing without softcap: the common case of the options, in the plain call's loops
     * (the next chunk's max and min in the same loop), with the smoothing sums beside the
     * exponentials; e kept in the scratch, or (float32 rows past it) in the gradient row */
    const ulong nvc = (n1 - n0) - (n1 - n0) % CLXENT_VEC;
    floatv hv = (floatv)(-INFINITY), lv = (floatv)(INFINITY);
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
#define CLXENT_KEEP_E(j, e) \
  if (sc) vstorev_g(e, sc + (j)); \
  else STOREV(e, g, j)
#else
#define CLXENT_KEEP_E(j, e) vstorev_g(e, sc + (j)) /* 16-bit: cache is 0 without the scratch */
#endif
#define CLXENT_KEEP_SMOOTH_W                                                   \
  {                                                                            \
    CLXENT_KEEP_E(j0 + k, e);                                                  \
    const floatv w = vloadv(0, weight + j0 + k);                               \
    wv += select(w * (m - u), (floatv)(0.0f), w == (floatv)(0.0f));            \
    wsv += w;                                                                  \
  }
#define CLXENT_KEEP_SMOOTH_1      \
  {                               \
    CLXENT_KEEP_E(j0 + k, e);     \
    wv += m - u;                  \
  }
    if (weight) {
      CLXENT_FUSED_LOOP(clxent_expv_narrow, CLXENT_KEEP_SMOOTH_W)
    } else {
      CLXENT_FUSED_LOOP(clxent_expv_narrow, CLXENT_KEEP_SMOOTH_1)
      *wsum += (float)(jv - j0);
    }
#undef CLXENT_KEEP_SMOOTH_W
#undef CLXENT_KEEP_SMOOTH_1
#undef CLXENT_KEEP_E
    for (ulong j = jv; j < j1; ++j) {
      const float u = LOAD(z, j), w = weight ? weight[j] : 1.0f, e = clxent_exp(u - m);
      if (sc) sc[j] = e;
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
      else STORE(e, g, j);
#endif
      s += e;
      if (w != 0.0f) *wdev += w * (m - u);
      *wsum += w;
    }
    *wdev += hsum(wv), *wsum += hsum(wsv);
    next_range(z, hv, lv, n0 + nvc, n1, next_hi, next_lo);
    return hsum(sv) + s;
  }
  for (ulong j = j0; j < jv; j += CLXENT_VEC) {
    floatv u = LOADV(z, j);
    if (cap != 0.0f) u = cap_logitv(u, cap);
    const floatv e = narrow ? clxent_expv_narrow(u - m) : clxent_expv(u - m);
    if (cache == 3) vstorev_g(u, sc + j), KEEP_E_V(e, j); /* u in the scratch, e beside it (or in g) */
    else if (cache && sc) vstorev_g(cache == 1 ? e : u, sc + j);
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
    else if (cache) STOREV(cache == 1 ? e : u, g, j);
#endif
    sv += e;
    if (smooth) {
      const floatv w = weight ? vloadv(0, weight + j) : (floatv)(1.0f);
      wv += select(w * (m - u), (floatv)(0.0f), w == (floatv)(0.0f));
      wsv += w;
    }
  }
  for (ulong j = jv; j < j1; ++j) {
    const float u = cap_logit(LOAD(z, j), cap), w = weight ? weight[j] : 1.0f, e = clxent_exp(u - m);
    if (cache == 3) sc[j] = u, KEEP_E_1(e, j);
    else if (cache && sc) sc[j] = cache == 1 ? e : u;
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
    else if (cache) STORE(cache == 1 ? e : u, g, j);
#endif
    s += e;
    if (smooth && w != 0.0f) *wdev += w * (m - u);
    if (smooth) *wsum += w;
  }
  *wdev += hsum(wv), *wsum += hsum(wsv);
  if (n1 > n0) *next_hi = range_max(z, n0, n1, next_lo);
  return hsum(sv) + s;
}
#undef CLXENT_FUSED_LOOP
#undef KEEP_E_V
#undef KEEP_E_1
#undef CLXENT_FUSED_LOOP_U
#undef CLXENT_AS_IS

/* cache[j0, j1) *= f (the cached e of a segment whose m was overtaken), in sc or else g */
inline void range_scale(__global store_t *g, __local float *sc, ulong j0, ulong j1, float f) {
  const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
  if (sc) {
    for (ulong j = j0; j < jv; j += CLXENT_VEC) vstorev_g(vloadv(0, sc + j) * f, sc + j);
    for (ulong j = jv; j < j1; ++j) sc[j] *= f;
    return;
  }
  for (ulong j = j0; j < jv; j += CLXENT_VEC) STOREV(LOADV(g, j) * f, g, j);
  for (ulong j = jv; j < j1; ++j) STORE(LOAD(g, j) * f, g, j);
}

inline void row_fill(__global store_t *g, ulong c, float v) {
  const ulong cv = c - c % CLXENT_VEC;
  for (ulong j = 0; j < cv; j += CLXENT_VEC) STOREV((floatv)(v), g, j);
  for (ulong j = cv; j < c; ++j) STORE(v, g, j);
}

/* g[j0, j1) = sc[j]·f - b·w_j, pass 2 of the plain call (b = ±0, with or without weights w) and
 * of label smoothing without weights (b = B, w = 1), with the gradient streamed around the caches
 * (CLXENT_HAS_STREAM, clxent_params.stream_grad), each element with the bits the ordinary loops
 * give it: their vector part [j0, jv) subtracts only a nonzero b (x - (-0) would turn -0 into +0),
 * their tail [jv, j1) always subtracts b·w_j (a -0 weight flips a zero's sign there). The values
 * before the first aligned address go one by one, then whole aligned vectors, the rest one by one.
 * zn[0, pf): the next row's first chunk, asked for meanwhile as the ordinary loops do. */
#if CLXENT_HAS_STREAM
#undef stream_scaled
#define stream_scaled CLXENT_TYPED(stream_scaled)
inline void stream_scaled(__global store_t *g, __local const float *sc, ulong j0, ulong j1, float f, float b,
                          __global const float *w, __global const store_t *zn, ulong pf) {
  const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
  const ulong off = (ulong)(g + j0) % CLXENT_STREAM_ALIGN / sizeof(store_t);
  const ulong head = min(jv - j0, off ? CLXENT_VEC - off : 0);
  const int sub = b != 0.0f;
  ulong j = j0;
  for (; j < j0 + head; ++j) STORE(sub ? sc[j] * f - b : sc[j] * f, g, j);
  if (sub) {
    for (; j + CLXENT_VEC <= jv; j += CLXENT_VEC) {
      if (j < pf) CLXENT_PREFETCH(zn, j);
      STREAMV(vloadv(0, sc + j) * f - b, g, j);
    }
  } else {
    for (; j + CLXENT_VEC <= jv; j += CLXENT_VEC) {
      if (j < pf) CLXENT_PREFETCH(zn, j);
      STREAMV(vloadv(0, sc + j) * f, g, j);
    }
  }
  for (; j < jv; ++j) STORE(sub ? sc[j] * f - b : sc[j] * f, g, j);
  for (; j < j1; ++j) STORE(sc[j] * f - b * (w ? w[j] : 1.0f), g, j);
}
#endif

/* Row i of the launch (batch row first_row + i), all three passes: softmax_xent_hard's item, and
 * each of softmax_xent_hard_bias's rows in turn. p: call_params, made once per item.
 * acc (softmax_xent_hard_bias): the bias partial sums this row is added to, acc_j += g_j with g_j
 * as stored (16-bit values read back from L1 right after their store, as column_partial reads
 * them); the common gradient loops add as they go and return 1, the others return 0 and the
 * caller adds the written row with row_add. */
#if CLXENT_STORAGE == CLXENT_STORAGE_F32 /* the stored value is v itself: no read-back */
#define ACC_V(j, v) vstorev_g(vloadv(0, acc + (j)) + (v), acc + (j))
#else
#define ACC_V(j, v) vstorev_g(vloadv(0, acc + (j)) + LOADV(g, j), acc + (j))
#endif
#define ACC_1(j) (acc[j] += LOAD(g, j))

/* A row's pass 2 left undone by hard_row for softmax_xent_hard_bias, which runs up to
 * CLXENT_BIAS_ROWS rows' as one loop (row_tails_pass2): their gradients from e cached in each row
 * itself or in the scratch, g_j = e_j · f - B·w_j (f: k, times e^{m_seg - m} in a segment before
 * the last; B·w: label smoothing's term, w the class weights or 1) and the label's element gy;
 * not softcap's (its cache holds u as well). The rows' sums in one pass over the partial
 * sums, acc_j = ((acc_j + g_r,j) + g_r+1,j) + ..., the order and operands of the rows one after
 * the other: the same bits, and one load and store of the partial sums from L2 per group of rows
 * instead of one per row (their traffic was all of the option's cost: docs/PERFORMANCE.md,
 * thirteenth round; fourteenth for what the groups gained). Rows are held together from
 * CLXENT_BIAS_ROWS_MIN_C classes on where e is cached in the item's scratch, from
 * CLXENT_BIAS_ROWS_MIN_C_OWN where in the gradient rows themselves (clxent_defs.h); shorter rows
 * run alone, in hard_row, as before the rows were held. */
#if CLXENT_BIAS_ROWS != 4 /* clxent_defs.h; row_tails_pass2 names its rows 0 to 3 */
#error "row_tails_pass2 is written for 4 rows"
#endif
typedef struct {
  __global store_t *g;       /* the row's gradient, holding e where sc is 0 (float32) */
  __local const float *sc;   /* the row's e in its slot of the item's scratch, or 0 */
  __global const store_t *zn; /* the next row's logits, asked for meanwhile */
  __global const float *w;   /* the class weights or 0 (all ones) */
  float k, m, B, gy;         /* pass 2's scale, the row's max, smoothing's B, the label's element */
  int y;
  int stream; /* store the gradient around the caches (hard_row's stream) */
  uint segs;
  ulong seg_start[CLXENT_ROW_SEGMENTS];
  float seg_m[CLXENT_ROW_SEGMENTS];
} row_tail;

/* f in segment t of row tail r: k, times e^{m_t - m} before the last segment (hard_row's); the
 * segment's end */
#define TAIL_F(r, t) ((t) + 1 < (r)->segs ? (r)->k * clxent_exp((r)->seg_m[t] - (r)->m) : (r)->k)
#define TAIL_END(r, t) ((t) + 1 < (r)->segs ? (r)->seg_start[(t) + 1] : c)

/* Rows t[0..n) (1 ≤ n ≤ CLXENT_BIAS_ROWS), in order, added to acc as they are stored. The rows'
 * values are held in locals named by their place (g0, f0, ...) and each row's steps are guarded
 * by n, a test the same for the whole loop, so that no per-row array is indexed per vector. */
inline void row_tails_pass2(const row_tail *t, const uint n, __global float *acc, const ulong c) {
  __global const store_t *zn = t[n - 1].zn;
  const ulong pf_next = min(c, (ulong)CLXENT_PREFETCH_NEXT_ROW);
  /* the label columns' sums before the rows: each is written again below from the stored
   * elements, as hard_row writes acc_y + g_y after its loop */
  float acc_y[CLXENT_BIAS_ROWS];
  uint seg[CLXENT_BIAS_ROWS];
  for (uint q = 0; q < n; ++q) acc_y[q] = acc[t[q].y], seg[q] = 0;
  /* row q's gradient, its cached e (scratch, or 0: the gradient row), whether it is streamed */
#define ROW_LOCALS(q)                                              \
  __global store_t *g##q = t[n > q ? q : 0].g;                     \
  __local const float *sc##q = t[n > q ? q : 0].sc;                \
  const float B##q = t[n > q ? q : 0].B;                           \
  float f##q = 0.0f;                                               \
  int st##q = 0;
  ROW_LOCALS(0) ROW_LOCALS(1) ROW_LOCALS(2) ROW_LOCALS(3)
#undef ROW_LOCALS
  __global const float *w = t[0].w; /* the call's class weights, or 0 */
  /* the cached e of row q at j, one value; what the sums add of a stored vector v: v itself in
   * float32, the stored bits read back in 16-bit storage */
#define E_1(q, j) (sc##q ? sc##q[j] : LOAD(g##q, j))
#if CLXENT_STORAGE == CLXENT_STORAGE_F32
#define ADDED_V(v, q, j) (v)
#else
#define ADDED_V(v, q, j) LOADV(g##q, j)
#endif
  /* The vector loop, written out for each number of rows (ROWS1..ROWS4) and for what the rows
   * have in common: e from the scratch (E_SC), the gradient row (E_G) or either (E_ANY); stores
   * ordinary (S_PLAIN), streamed (S_STREAM) or either (S_ANY); smoothing's B·w subtracted where
   * B is nonzero (BW_ANY, as hard_row's vector loops do) or B zero in every row (BW_NONE). The
   * general instance (E_ANY, S_ANY, BW_ANY, rows guarded by n) tests each row's case per vector,
   * which cost the rows held together all they gained (1.00-1.09x two rows' time). */
#define E_SC(q, j) vloadv(0, sc##q + (j))
#define E_G(q, j) LOADV(g##q, j)
#define E_ANY(q, j) (sc##q ? E_SC(q, j) : E_G(q, j))
#define S_PLAIN(v, q, j) STOREV(v, g##q, j)
#if CLXENT_HAS_STREAM
#define S_STREAM(v, q, j) STREAMV(v, g##q, j)
#define S_ANY(v, q, j) \
  if (st##q) S_STREAM(v, q, j); \
  else S_PLAIN(v, q, j)
#else
#define S_STREAM(v, q, j) S_PLAIN(v, q, j)
#define S_ANY(v, q, j) S_PLAIN(v, q, j)
#endif
#define BW_NONE(v, q, j)
#define BW_ANY(v, q, j) \
  if (B##q != 0.0f) v -= B##q * (w ? vloadv(0, w + (j)) : (floatv)(1.0f))
#define ROW_V(q, E, S, BW)          \
  {                                 \
    floatv v = E(q, j) * f##q;      \
    BW(v, q, j);                    \
    S(v, q, j);                     \
    sum += ADDED_V(v, q, j);        \
  }
#define ROW_V_GUARDED(q, E, S, BW) \
  if (n > q) ROW_V(q, E, S, BW)
#define ROWS1(M, E, S, BW) M(0, E, S, BW)
#define ROWS2(M, E, S, BW) ROWS1(M, E, S, BW) M(1, E, S, BW)
#define ROWS3(M, E, S, BW) ROWS2(M, E, S, BW) M(2, E, S, BW)
#define ROWS4(M, E, S, BW) ROWS3(M, E, S, BW) M(3, E, S, BW)
#define VLOOP(ROWS, M, E, S, BW)                      \
  for (; j + CLXENT_VEC <= jv; j += CLXENT_VEC) {     \
    if (j < pf_next) CLXENT_PREFETCH(zn, j);          \
    floatv sum = vloadv(0, acc + (j));                \
    ROWS(M, E, S, BW)                                 \
    vstorev_g(sum, acc + (j));                        \
  }
#define VLOOPS(E, S, BW)                           \
  switch (n) {                                     \
    case 4: VLOOP(ROWS4, ROW_V, E, S, BW); break;  \
    case 3: VLOOP(ROWS3, ROW_V, E, S, BW); break;  \
    case 2: VLOOP(ROWS2, ROW_V, E, S, BW); break;  \
    default: VLOOP(ROWS1, ROW_V, E, S, BW); break; \
  }
  /* row q's value at j with the vector loops' formula (B·w subtracted where B is nonzero), or
   * with the scalar tails' (B·w subtracted even where B is ±0, as hard_row's tails do: a product
   * of -0 minus -0 gives +0 where the vectors leave -0) */
#define ROW_1(q, j, tail)                                                                         \
  if (n > q) {                                                                                    \
    const float e = E_1(q, j) * f##q, bw = B##q * (w ? w[j] : 1.0f);                              \
    STORE((tail) || B##q != 0.0f ? e - bw : e, g##q, j);                                          \
    sum += LOAD(g##q, j);                                                                         \
  }
#define ROWS_1(j, tail)                   \
  do {                                    \
    float sum = acc[j];                   \
    ROW_1(0, j, tail) ROW_1(1, j, tail) ROW_1(2, j, tail) ROW_1(3, j, tail) \
    acc[j] = sum;                         \
  } while (0)
  for (ulong j0 = 0; j0 < c;) { /* the rows' segments, merged: each f is constant between */
    ulong j1 = c;
    for (uint q = 0; q < n; ++q) j1 = min(j1, TAIL_END(&t[q], seg[q]));
    f0 = TAIL_F(&t[0], seg[0]);
    if (n > 1) f1 = TAIL_F(&t[1], seg[1]);
    if (n > 2) f2 = TAIL_F(&t[2], seg[2]);
    if (n > 3) f3 = TAIL_F(&t[3], seg[3]);
    const ulong jv = j1 - (j1 - j0) % CLXENT_VEC; /* segments start at multiples of the vector */
    /* streamed (float32 only, the host's choice): the vectors from row 0's first aligned address,
     * as stream_scaled's, and each other row's too where its alignment is row 0's, else stored
     * as usual; the values before and after them one by one */
    ulong head = 0;
#if CLXENT_HAS_STREAM
    if (t[0].stream) {
      const ulong off = (ulong)(g0 + j0) % CLXENT_STREAM_ALIGN / sizeof(store_t);
      head = min(jv - j0, off ? CLXENT_VEC - off : 0);
#define ROW_ST(q) st##q = n > q && t[q].stream && (ulong)(g##q + j0) % CLXENT_STREAM_ALIGN / sizeof(store_t) == off;
      ROW_ST(0) ROW_ST(1) ROW_ST(2) ROW_ST(3)
#undef ROW_ST
    }
#endif
    ulong j = j0;
    for (; j < j0 + head; ++j) ROWS_1(j, 0);
    /* the rows' scratch use is the call's (every row or none); B and streaming are per row */
    const int any_b = B0 != 0.0f || (n > 1 && B1 != 0.0f) || (n > 2 && B2 != 0.0f) || (n > 3 && B3 != 0.0f);
    const int any_st = st0 || st1 || st2 || st3, all_st = st0 && (n < 2 || st1) && (n < 3 || st2) && (n < 4 || st3);
    if (!any_b && !any_st && sc0) VLOOPS(E_SC, S_PLAIN, BW_NONE)
    else if (!any_b && !any_st) VLOOPS(E_G, S_PLAIN, BW_NONE)
    else if (!any_b && all_st && sc0) VLOOPS(E_SC, S_STREAM, BW_NONE)
    else if (!any_st && sc0) VLOOPS(E_SC, S_PLAIN, BW_ANY) /* label smoothing */
    else if (!any_st) VLOOPS(E_G, S_PLAIN, BW_ANY)
    else if (all_st && sc0) VLOOPS(E_SC, S_STREAM, BW_ANY)
    else VLOOP(ROWS4, ROW_V_GUARDED, E_ANY, S_ANY, BW_ANY) /* rows streamed and not: alignments differ */
    for (; j < jv; ++j) ROWS_1(j, 0);
    for (; j < j1; ++j) ROWS_1(j, 1);
    for (uint q = 0; q < n; ++q)
      if (j1 == TAIL_END(&t[q], seg[q])) ++seg[q];
    j0 = j1;
  }
  /* the labels' elements, then their columns' sums from the stored values in the rows' order */
  for (uint q = 0; q < n; ++q) STORE(t[q].gy, t[q].g, t[q].y);
  for (uint q = 0; q < n; ++q) {
    const ulong y = t[q].y;
    float sum = acc_y[q];
    for (uint r = 0; r < n; ++r) sum += LOAD(t[r].g, y);
    acc[y] = sum;
  }
#undef E_1
#undef ADDED_V
#undef E_SC
#undef E_G
#undef E_ANY
#undef S_PLAIN
#undef S_STREAM
#undef S_ANY
#undef BW_NONE
#undef BW_ANY
#undef ROW_V
#undef ROW_V_GUARDED
#undef ROWS1
#undef ROWS2
#undef ROWS3
#undef ROWS4
#undef VLOOP
#undef VLOOPS
#undef ROW_1
#undef ROWS_1
}
#undef TAIL_F
#undef TAIL_END

/* tail (softmax_xent_hard_bias; 0 elsewhere): where a row whose pass 2 row_tails_pass2 can run is
 * left for it (hard_row returns 2), pass 2 not done and acc untouched. slot: where in the item's
 * scratch the row caches, in rows of c rounded up to 16 values (the bias kernel's rows held
 * together: the host made its scratch up to CLXENT_BIAS_ROWS rows long where they fit) */
inline int hard_row(SOFTMAX_HARD_ARGS, const clxent_params p, const ulong i, __global float *acc, row_tail *tail,
                    const uint slot) {
  __global const store_t *z = logits + i * c;
  __global store_t *g = grad ? grad + i * c : 0;
  const int y = labels[first_row + i];
  const int ignored = y == ignore_index;
  if (!ignored && (y < 0 || (ulong)y >= c)) { /* only device-resident calls get here unchecked */
    row_loss[first_row + i] = NAN;
    if (row_lse) row_lse[first_row + i] = NAN;
    if (g) row_fill(g, c, NAN);
    return 0;
  }
  if (ignored && !row_lse && !row_argmax) {
    row_loss[first_row + i] = 0.0f;
    if (g) row_fill(g, c, 0.0f);
    return 0;
  }
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const int smooth = eps > 0.0f && !ignored;
  /* what pass 1 leaves for pass 2: e (1), or with softcap u itself (2), so that pass 2 needs no
   * second tanh: u' = 1 - (u/s)²; or with softcap both (3): u in the scratch and e in its second
   * half (se: the host made the stride two rows long where they fit), so that pass 2 needs no
   * exponential either (a softcapped value costs a tanh and one e^x, not a tanh and two). Every
   * storage type takes the same mode for the same c, so that 16-bit results stay the float32
   * ones rounded once. */
  /* the cache: the item's stretch of the group's local scratch when the host gave one (rows that
   * fit: every storage type), else the gradient row itself (float32 only; 16-bit storage then
   * computes the exponentials again in pass 2) */
  __local float *sc = row_cache_stride ? row_cache + get_local_id(0) * row_cache_stride + slot * CLXENT_CACHE_ROW(c) : 0;
  __local float *se = sc && cap != 0.0f && !slot && row_cache_stride / 2 >= c ? sc + row_cache_stride / 2 : 0;
  const int cache = !ignored && g && (sc || CLXENT_STORAGE == CLXENT_STORAGE_F32) ? (cap == 0.0f ? 1 : se ? 3 : 2) : 0;
  const float zy = ignored ? 0.0f : LOAD(z, y); /* before an in-place pass overwrites it */

  /* pass 1; seg_start/seg_m: where each m of the cached e begins (at most CLXENT_ROW_SEGMENTS;
   * past that the cached prefix is rescaled to the current m, rare: the max of random rows grows
   * a few times) */
  ulong seg_start[CLXENT_ROW_SEGMENTS];
  float seg_m[CLXENT_ROW_SEGMENTS];
  uint segs = 0;
  float m = -INFINITY, s = 0.0f, wdev = 0.0f, wsum = 0.0f, umin = INFINITY;
  float hi_next, lo_next; /* the max and min of z over the chunk to come */
  /* argmax: the best raw z so far and its index; the first NaN's index (c: none yet) */
  float best = -INFINITY;
  ulong best_at = 0, nan_at = c;
  hi_next = range_max(z, 0, min(c, (ulong)CLXENT_ROW_CHUNK), &lo_next);
  for (ulong j0 = 0; j0 < c; j0 += CLXENT_ROW_CHUNK) {
    const ulong j1 = min(c, j0 + CLXENT_ROW_CHUNK), n1 = min(c, j1 + CLXENT_ROW_CHUNK);
    const float lo = lo_next;
    const float mc = cap_logit(hi_next, cap), ulo = cap_logit(lo, cap); /* the cap is increasing */
    umin = fmin(umin, ulo);
    if (mc > m) {
      if (s != 0.0f) s *= clxent_exp(m - mc);
      if (wsum != 0.0f) wdev += wsum * (mc - m);
      if (cache == 1 || cache == 3) { /* cache 3 keeps its e in se (or in g) */
        if (segs == CLXENT_ROW_SEGMENTS) {
          for (uint t = 0; t < segs; ++t)
            range_scale(g, cache == 3 ? (CLXENT_E_IN_G ? 0 : se) : sc, seg_start[t], t + 1 < segs ? seg_start[t + 1] : j0,
                        clxent_exp(seg_m[t] - mc));
          segs = 0;
        }
        seg_start[segs] = segs ? j0 : 0, seg_m[segs++] = mc;
      }
      m = mc;
    }
    /* while every value so far is -inf (or NaN), e is 0 (or NaN) against any finite reference */
    const float ref = m == -INFINITY ? 0.0f : m;
    /* argmax, before this chunk's cache may overwrite z in place: a chunk whose max (NaN skipped)
     * beats the best so far holds the new best; NaN is looked for only where the chunk's sum of
     * exponentials comes out NaN, below, except against m = +inf (where z = +inf gives NaN too) */
    if (row_argmax && nan_at == c) {
      if (hi_next > best) best = hi_next, best_at = range_first_eq(z, j0, j1, hi_next);
      if (ref == INFINITY && (nan_at = range_first_nan(z, j0, j1)) == j1) nan_at = c;
    }
    /* softcap: every |z|/s of the chunk below the tanh's series split (its max and min say so) */
    const int small = cap != 0.0f && fmax(fabs(hi_next), fabs(lo)) * (1.0f / cap) < CLXENT_TANH_SPLIT;
    const float chunk_s = range_exp_sum(z, g, sc, se, weight, j0, j1, ref, cap, smooth, cache,
                                        clxent_exp_narrow_range(ulo - ref, mc - ref), small, &wdev, &wsum, j1, n1,
                                        &hi_next, &lo_next);
    s += chunk_s;
    /* a NaN sum against a finite m: a NaN z in the chunk. The cache in the gradient row (float32,
     * which may be z itself) holds e or u, each a NaN exactly where z is one */
    if (row_argmax && nan_at == c && ref != INFINITY && isnan(chunk_s) &&
        (nan_at = range_first_nan((cache && !sc) || (cache == 3 && CLXENT_E_IN_G) ? (__global const store_t *)g : z, j0, j1)) == j1)
      nan_at = c; /* not reached: a NaN sum against a finite m has a NaN z */
  }
  if (row_argmax) row_argmax[first_row + i] = (int)(nan_at < c ? nan_at : best_at);
  if ((cache == 1 || cache == 3) && segs == 0) seg_start[0] = 0, seg_m[0] = m, segs = 1; /* no finite value: all NaN below */
  const float log_s = clxent_log(s), lse = m + log_s;
  if (row_lse) row_lse[first_row + i] = lse;
  if (ignored) {
    row_loss[first_row + i] = 0.0f;
    if (g) row_fill(g, c, 0.0f);
    return 0;
  }
  const float wy = weight ? weight[y] : 1.0f, uy = cap_logit(zy, cap), inv_c = 1.0f / (float)c;
  const float W = p.weight_sum;
  float loss = (1.0f - eps) * wy * ((m - uy) + log_s); /* lse - u_y without cancelling large m */
  if (smooth) loss += eps * inv_c * (wdev + W * log_s);
  if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
  row_loss[first_row + i] = loss;
  if (!g) return 0;
  /* acc at the label before this row: its element is written twice below (the loop's value,
   * then the label's), and added once, as stored last */
  const float acc_y = acc ? acc[y] : 0.0f;
  const int fused = acc && (cache == 1 || cache == 3);

  const float g_up = row_scale ? row_scale[first_row + i] : 1.0f; /* the row's upstream gradient */
  const float S = p.scale * g_up, Sz = p.z_scale * g_up;
  const float k = (S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * Sz) / s;
  const float B = S * eps * inv_c, K = S * (1.0f - eps) * wy; /* smoothing's and the label's terms */
  /* the label's element, stored last (over the loops' value there), from scratch so that a
   * 16-bit gradient is rounded once */
  const float gy = (k * clxent_exp(uy - m) - B * wy - K) * cap_slope(zy, cap);
  if (tail && cache == 1) {
    tail->stream = CLXENT_HAS_STREAM && p.stream_grad && sc && (__global const store_t *)g != z;
    tail->g = g, tail->sc = sc, tail->zn = z + c, tail->w = weight, tail->B = B, tail->k = k, tail->m = m, tail->y = y, tail->segs = segs;
    tail->gy = gy;
    for (uint t = 0; t < segs; ++t) tail->seg_start[t] = seg_start[t], tail->seg_m[t] = seg_m[t];
    return 2;
  }
  /* CACHED(j): the cached vector at j, from the scratch or the gradient row (macros: OpenCL 1.2
   * has no pointer that spans both address spaces) */
#define CACHED_V(j) (sc ? vloadv(0, sc + (j)) : LOADV(g, j))
  /* pass 2 reads the cache, not memory: meanwhile the next row's first chunk is asked for (the
   * next item's row, which this thread most likely runs next: a group's items run in order) */
  const ulong pf_next = min(c, (ulong)CLXENT_PREFETCH_NEXT_ROW);
#define PREFETCH_NEXT_ROW(j)                       \
  do {                                             \
    if ((j) < pf_next) CLXENT_PREFETCH(z + c, j); \
  } while (0)
#define CACHED(j) (sc ? sc[j] : LOAD(g, j))
  /* the gradient streamed around the caches (stream_scaled): where the host asks, into a separate
   * gradient, from the scratch, without the bias's sums (which read the row back) */
  const int stream = CLXENT_HAS_STREAM && p.stream_grad && sc && !acc && !tail && (__global const store_t *)g != z;
  if (cache == 3) { /* se holds e^{u - m_seg}, the scratch u: u' = 1 - (u/s)², 0 where u = -inf */
    const float inv_cap = 1.0f / cap;
    for (uint t = 0; t < segs; ++t) {
      const ulong j0 = seg_start[t], j1 = t + 1 < segs ? seg_start[t + 1] : c;
      const float f = t + 1 < segs ? k * clxent_exp(seg_m[t] - m) : k;
      const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
      for (ulong j = j0; j < jv; j += CLXENT_VEC) {
        const floatv u = vloadv(0, sc + j), tv = u * inv_cap;
        PREFETCH_NEXT_ROW(j);
        floatv gv = (CLXENT_E_IN_G ? LOADV(g, j) : vloadv(0, se + j)) * f;
        if (B != 0.0f) gv -= B * (weight ? vloadv(0, weight + j) : (floatv)(1.0f));
        gv *= select(1.0f - tv * tv, (floatv)(0.0f), u == (floatv)(-INFINITY));
        STOREV(gv, g, j);
        if (acc) ACC_V(j, gv);
      }
      for (ulong j = jv; j < j1; ++j) {
        const float u = sc[j], tj = u * inv_cap;
        STORE(((CLXENT_E_IN_G ? LOAD(g, j) : se[j]) * f - B * (weight ? weight[j] : 1.0f)) * (u == -INFINITY ? 0.0f : 1.0f - tj * tj), g, j);
        if (acc) ACC_1(j);
      }
    }
  } else if (cache == 1) { /* the cache holds e^{u - m_seg}; no cap, so u' = 1 */
    for (uint t = 0; t < segs; ++t) {
      const ulong j0 = seg_start[t], j1 = t + 1 < segs ? seg_start[t + 1] : c;
      const float f = t + 1 < segs ? k * clxent_exp(seg_m[t] - m) : k; /* the last segment's m is m */
      const ulong jv = j1 - (j1 - j0) % CLXENT_VEC;
#if CLXENT_HAS_STREAM
      if (stream && (B == 0.0f || !weight)) {
        stream_scaled(g, sc, j0, j1, f, B, weight, z + c, pf_next);
        continue;
      }
#endif
      if (B == 0.0f && sc && acc) {
        for (ulong j = j0; j < jv; j += CLXENT_VEC) {
          PREFETCH_NEXT_ROW(j);
          const floatv gv = vloadv(0, sc + j) * f;
          STOREV(gv, g, j);
          ACC_V(j, gv);
        }
      } else if (B == 0.0f && sc) {
        for (ulong j = j0; j < jv; j += CLXENT_VEC) {
          PREFETCH_NEXT_ROW(j);
          STOREV(vloadv(0, sc + j) * f, g, j);
        }
      } else if (B == 0.0f) {
        for (ulong j = j0; j < jv; j += CLXENT_VEC) {
          PREFETCH_NEXT_ROW(j);
          const floatv gv = LOADV(g, j) * f;
          STOREV(gv, g, j);
          if (acc) ACC_V(j, gv);
        }
      } else if (sc && !weight && !acc) { /* label smoothing without weights: w = 1, the same bits */
        for (ulong j = j0; j < jv; j += CLXENT_VEC) {
          PREFETCH_NEXT_ROW(j);
          STOREV(vloadv(0, sc + j) * f - B, g, j);
        }
      } else {
        for (ulong j = j0; j < jv; j += CLXENT_VEC) {
          PREFETCH_NEXT_ROW(j);
          const floatv w = weight ? vloadv(0, weight + j) : (floatv)(1.0f);
          const floatv gv = CACHED_V(j) * f - B * w;
          STOREV(gv, g, j);
          if (acc) ACC_V(j, gv);
        }
      }
      for (ulong j = jv; j < j1; ++j) {
        STORE(CACHED(j) * f - B * (weight ? weight[j] : 1.0f), g, j);
        if (acc) ACC_1(j);
      }
    }
  } else {
    const ulong cv = c - c % CLXENT_VEC;
    const int narrow = clxent_exp_narrow_range(umin - m, 0.0f);
    if (cache == 2) { /* the cache holds u */
      const float inv_cap = 1.0f / cap;
      for (ulong j = 0; j < cv; j += CLXENT_VEC) {
        const floatv u = CACHED_V(j), t = u * inv_cap;
        floatv gv = k * (narrow ? clxent_expv_narrow(u - m) : clxent_expv(u - m));
        if (B != 0.0f) gv -= B * (weight ? vloadv(0, weight + j) : (floatv)(1.0f));
        STOREV(gv * select(1.0f - t * t, (floatv)(0.0f), u == (floatv)(-INFINITY)), g, j);
      }
      for (ulong j = cv; j < c; ++j) {
        const float u = CACHED(j), t = u * inv_cap;
        STORE((k * clxent_exp(u - m) - B * (weight ? weight[j] : 1.0f)) * (u == -INFINITY ? 0.0f : 1.0f - t * t), g, j);
      }
    } else {
      for (ulong j = 0; j < cv; j += CLXENT_VEC) {
        const floatv zj = LOADV(z, j);
        floatv slope = (floatv)(1.0f), u = cap != 0.0f ? cap_logit_slopev(zj, cap, &slope) : zj;
        floatv gv = k * (narrow ? clxent_expv_narrow(u - m) : clxent_expv(u - m));
        if (B != 0.0f) gv -= B * (weight ? vloadv(0, weight + j) : (floatv)(1.0f));
        STOREV(cap != 0.0f ? gv * slope : gv, g, j);
      }
      for (ulong j = cv; j < c; ++j) {
        float slope;
        const float u = cap_logit_slope(LOAD(z, j), cap, &slope);
        STORE((k * clxent_exp(u - m) - B * (weight ? weight[j] : 1.0f)) * slope, g, j);
      }
    }
  }
#undef CACHED_V
#undef CACHED
#undef PREFETCH_NEXT_ROW
  STORE(gy, g, y);
  if (fused) acc[y] = acc_y + LOAD(g, y);
  return fused;
}
#undef ACC_V
#undef ACC_1
#define SOFTMAX_HARD_PASS                                                                                  \
  rows, c, first_row, logits, labels, weight, ignore_index, p_host, grad, row_loss, row_lse, dev_scales, row_scale, \
      row_cache, row_cache_stride, row_argmax

__kernel void softmax_xent_hard(SOFTMAX_HARD_ARGS) {
  const ulong i = get_global_id(0);
  if (i < rows) hard_row(SOFTMAX_HARD_PASS, call_params(p_host, dev_scales), i, 0, 0, 0);
#if CLXENT_HAS_STREAM
  /* streamed stores are ordered with nothing but a fence: one per group, after its last item (a
   * group's items run one after the other on one thread), before the group is reported done. Per
   * row it waited for each row's stores to reach memory: 1.13x the time at 65536 x 1000 */
  if (p_host.stream_grad && get_local_id(0) == get_local_size(0) - 1) __builtin_ia32_sfence();
#endif
}

/* acc[j] += g_j: one row's additions of column_partial (bias.cl), in the same order with the same
 * operands (the stored, possibly 16-bit, gradient read back), so that the partial sums come out
 * bit for bit as that kernel's; a chunk's sums start from +0, as its do (0 + g = g, -0 too). */
inline void row_add(__global float *acc, __global const store_t *g, ulong c) {
  const ulong cv = c - c % CLXENT_VEC;
  for (ulong j = 0; j < cv; j += CLXENT_VEC) vstorev_g(vloadv(0, acc + j) + LOADV(g, j), acc + j);
  for (ulong j = cv; j < c; ++j) acc[j] += LOAD(g, j);
}

/* softmax_xent_hard with the bias gradient's first step fused in: one work-item per chunk of
 * CLXENT_BIAS_CHUNK batch rows (column_partial's chunks), its rows of this launch in order, each
 * added to partial[k] as its gradient is written (hard_row), or right after. The row is then in the cache
 * (L2 on a CPU, with partial[k]'s c floats beside it), where column_partial, a launch of its
 * own, read the whole gradient from memory again: a third pass over the largest array. Long
 * rows are added up to CLXENT_BIAS_ROWS at a time (row_tail, row_tails_pass2): one pass over
 * partial[k] per group of rows. A chunk cut by a streaming block is continued from the stored
 * partial sums, as column_partial does. */
__kernel void softmax_xent_hard_bias(SOFTMAX_HARD_ARGS, __global float *partial) {
  const ulong k = first_row / CLXENT_BIAS_CHUNK + get_global_id(0), chunk_begin = k * CLXENT_BIAS_CHUNK;
  const ulong begin = max(chunk_begin, first_row), end = min(chunk_begin + CLXENT_BIAS_CHUNK, first_row + rows);
  if (begin >= end) return; /* an item past the block's last chunk */
  const clxent_params p = call_params(p_host, dev_scales);
  __global float *acc = partial + k * c;
  if (begin == chunk_begin) { /* the chunk starts here: its sums from +0 */
    const ulong cv = c - c % CLXENT_VEC;
    for (ulong j = 0; j < cv; j += CLXENT_VEC) vstorev((floatv)(0.0f), 0, acc + j);
    for (ulong j = cv; j < c; ++j) acc[j] = 0.0f;
  }
  /* rows whose pass 2 hard_row leaves (row_tail) are held, as many as the scratch has slots for
   * (CLXENT_BIAS_ROWS where the rows cache in themselves), and run together; while one is held,
   * the next row is given no acc, so that a row which is not left is added after the held ones */
  const ulong slots = c < (row_cache_stride ? CLXENT_BIAS_ROWS_MIN_C : CLXENT_BIAS_ROWS_MIN_C_OWN) ? 1
                      : row_cache_stride ? min((ulong)CLXENT_BIAS_ROWS, row_cache_stride / CLXENT_CACHE_ROW(c))
                                         : CLXENT_BIAS_ROWS;
  row_tail t[CLXENT_BIAS_ROWS];
  const int hold = slots > 1 || p.stream_grad; /* else each row alone in hard_row (streams only held rows) */
  uint held = 0;
  for (ulong r = begin; r < end; ++r) {
    const int done = hard_row(SOFTMAX_HARD_PASS, p, r - first_row, held ? 0 : acc, hold ? &t[held] : 0, held);
    if (done == 2) {
      if (++held == slots) row_tails_pass2(t, held, acc, c), held = 0;
      continue;
    }
    if (held) row_tails_pass2(t, held, acc, c), held = 0;
    if (!done) row_add(acc, grad + (r - first_row) * c, c);
  }
  if (held) row_tails_pass2(t, held, acc, c);
#if CLXENT_HAS_STREAM
  if (p.stream_grad) __builtin_ia32_sfence(); /* the rows' streamed stores, before the item is done */
#endif
}
#undef SOFTMAX_HARD_PASS

/* Dense targets, one work-item per row: the same three passes with τ_j from the targets. */
__kernel void softmax_xent_soft(SOFTMAX_SOFT_ARGS) {
  const clxent_params p = p_host;
  const ulong i = get_global_id(0);
  if (i >= rows) return;
  __global const store_t *z = logits + i * c;
  __global const store_t *t = targets + i * c;
  __global store_t *g = grad ? grad + i * c : 0;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const float keep = 1.0f - eps, spread = eps / (float)c;
  const int cached = CLXENT_STORAGE == CLXENT_STORAGE_F32 && cap == 0.0f;
  const float zmax = row_max(z, c), m = cap_logit(zmax, cap);
  /* argmax: the first z equal to the max (NaN skipped); a NaN is looked for where the sum of
   * exponentials below comes out NaN, or now if m is not finite (then e is NaN for z = ±inf) */
  ulong best_at = 0, nan_at = c;
  if (row_argmax) {
    best_at = range_first_eq(z, 0, c, zmax);
    if (!isfinite(zmax)) nan_at = range_first_nan(z, 0, c);
  }
  /* Σ τ (m - u) and Σ τ, skipping τ = 0 so that a -inf mask with no target mass adds 0. These
   * read z before pass 2 may overwrite it in place. */
  const ulong cv = c - c % CLXENT_VEC;
  floatv tdv = (floatv)(0.0f), tv = (floatv)(0.0f);
  for (ulong j0 = 0; j0 < cv; j0 += CLXENT_ROW_CHUNK) { /* SOFT_CHUNKS */
    const ulong j1 = min(cv, j0 + (ulong)CLXENT_ROW_CHUNK);
    floatv tdp = (floatv)(0.0f), tp = (floatv)(0.0f);
    for (ulong j = j0; j < j1; j += CLXENT_VEC) {
      const floatv tau = soft_target_v(LOADV(t, j), weight, j, keep, spread);
      floatv u = LOADV(z, j);
      if (cap != 0.0f) u = cap_logitv(u, cap);
      tdp += select(tau * (m - u), (floatv)(0.0f), tau == (floatv)(0.0f));
      tp += tau;
    }
    tdv += tdp, tv += tp;
  }
  float td = hsum(tdv), tsum = hsum(tv);
  for (ulong j = cv; j < c; ++j) {
    const float tau = soft_target(LOAD(t, j), weight, j, keep, spread);
    if (tau != 0.0f) td += tau * (m - cap_logit(LOAD(z, j), cap));
    tsum += tau;
  }
  float s;
  if (cap == 0.0f) {
    s = row_exp_sum_cached(z, cached ? g : 0, c, m);
  } else {
    floatv sv = (floatv)(0.0f);
    s = 0.0f;
    for (ulong j0 = 0; j0 < cv; j0 += CLXENT_ROW_CHUNK) { /* SOFT_CHUNKS */
      const ulong j1 = min(cv, j0 + (ulong)CLXENT_ROW_CHUNK);
      floatv part = (floatv)(0.0f);
      for (ulong j = j0; j < j1; j += CLXENT_VEC) part += clxent_expv(cap_logitv(LOADV(z, j), cap) - m);
      sv += part;
    }
    for (ulong j = cv; j < c; ++j) s += clxent_exp(cap_logit(LOAD(z, j), cap) - m);
    s += hsum(sv);
  }
  if (row_argmax) {
    /* before pass 3 overwrites z in place; the cached e in g is a NaN exactly where z is one */
    if (isfinite(zmax) && isnan(s)) nan_at = range_first_nan(cached && g ? (__global const store_t *)g : z, 0, c);
    row_argmax[first_row + i] = (int)(nan_at < c ? nan_at : best_at < c ? best_at : 0);
  }
  const float log_s = clxent_log(s), lse = m + log_s;
  if (row_lse) row_lse[first_row + i] = lse;
  float loss = td + tsum * log_s;
  if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
  row_loss[first_row + i] = loss;
  if (!g) return;

  const float g_up = row_scale ? row_scale[first_row + i] : 1.0f; /* the row's upstream gradient */
  const float S = p.scale * g_up;
  const float k = (S * tsum + 2.0f * zl * lse * (p.z_scale * g_up)) / s;
  if (cached) {
    for (ulong j = 0; j < cv; j += CLXENT_VEC)
      STOREV(LOADV(g, j) * k - S * soft_target_v(LOADV(t, j), weight, j, keep, spread), g, j);
    for (ulong j = cv; j < c; ++j) STORE(LOAD(g, j) * k - S * soft_target(LOAD(t, j), weight, j, keep, spread), g, j);
    return;
  }
  for (ulong j = 0; j < cv; j += CLXENT_VEC) {
    const floatv zj = LOADV(z, j);
    floatv slope = (floatv)(1.0f), u = cap != 0.0f ? cap_logit_slopev(zj, cap, &slope) : zj;
    STOREV((k * clxent_expv(u - m) - S * soft_target_v(LOADV(t, j), weight, j, keep, spread)) * slope, g, j);
  }
  for (ulong j = cv; j < c; ++j) {
    float slope;
    const float u = cap_logit_slope(LOAD(z, j), cap, &slope);
    STORE((k * clxent_exp(u - m) - S * soft_target(LOAD(t, j), weight, j, keep, spread)) * slope, g, j);
  }
}

#else /* work-groups: T = p.row_threads items per row, CLXENT_GROUP_SIZE / T rows per group */
#pragma OPENCL FP_CONTRACT ON /* GPUs: nothing mirrors these on the host */

/* Loads each item has in flight in the hard kernel's two passes: GU strided values are read
 * before any is used. With one (a load, then its exponential, then the next load) an H200 moved
 * 27% of its copy bandwidth on 8192 × 32000: 2048 items per SM with one 4-byte load each are too
 * few bytes in flight to cover the memory's latency (docs/PERFORMANCE.md, "NVIDIA GPU"). A second
 * count for long rows only (8) was slower than 4 on every shape but 2048 × 128256 and is gone.
 * Build options (-D..., CLXENT_BUILD_OPTIONS) to measure others. */
#ifndef CLXENT_GROUP_UNROLL
#define CLXENT_GROUP_UNROLL 4
#endif
/* one count for every storage type: 16-bit rows must take float32's sums in float32's order
 * (a 16-bit result is float32's rounded once, tests/test_toolbox.c) */
#define GU CLXENT_GROUP_UNROLL
/* Where an item's values are: ZG, the row in global memory (its storage type); ZT, the row in the
 * group's local tile (float32), for rows of at most CLXENT_GROUP_TILE classes (clxent_defs.h). */
#define ZG(j) LOAD(z, (j))
#define ZT(j) zt[j]
/* the blocks' loops unrolled, so that v[] stays in registers; a compiler without _Pragma (not
 * Clang-based) unrolls such short constant loops by itself */
#if defined(__clang__)
#define UNROLL_ALL _Pragma("unroll")
#else
#define UNROLL_ALL
#endif

/* Pass 1's blocks of N values of an item's slice: the block's max first (fmax passes over a NaN,
 * which then reaches s through its exponential, as in lse_push), then their exponentials against
 * the new max. While m is still -inf a block adds nothing but a NaN. With `argmax`, best and
 * best_at follow the item's first max of z (or first NaN) in the order of j. */
#define LSE_BLOCKS(N, ZL)                                                                           \
  for (; j + (ulong)((N) - 1) * T < c; j += (ulong)(N) * T) {                                        \
    float v[N];                                                                                     \
    UNROLL_ALL for (uint k = 0; k < (N); ++k) v[k] = ZL(j + k * T);                          \
    if (argmax) {                                                                                   \
      UNROLL_ALL for (uint k = 0; k < (N); ++k) argmax_push(best, best_at, v[k], j + k * T);       \
    }                                                                                               \
    float mb = -INFINITY;                                                                           \
    UNROLL_ALL for (uint k = 0; k < (N); ++k) v[k] = cap_logit(v[k], cap), mb = fmax(mb, v[k]); \
    if (mb > st.x) st.y *= exp(st.x - mb), st.x = mb;                                               \
    if (st.x != -INFINITY) {                                                                        \
      UNROLL_ALL for (uint k = 0; k < (N); ++k) st.y += exp(v[k] - st.x);                    \
    } else { /* the block is -inf and NaN alone: a NaN is kept in s */                              \
      UNROLL_ALL for (uint k = 0; k < (N); ++k) if (isnan(v[k])) st.y = v[k];                \
    }                                                                                               \
  }

/* Pass 1 over an item's slice j, j + T, ... < c of a row: the running (m, s) of lse_push. */
#define STRIDED_LSE_BODY(ZL)                                                                        \
  float2 st = (float2)(-INFINITY, 0.0f);                                                            \
  LSE_BLOCKS(GU, ZL)                                                                                \
  for (; j < c; j += T) {                                                                           \
    const float v = ZL(j);                                                                          \
    if (argmax) argmax_push(best, best_at, v, j);                                                   \
    st = lse_push(st, cap_logit(v, cap));                                                           \
  }                                                                                                 \
  return st;
inline float2 strided_lse(__global const store_t *z, ulong j, const ulong c, const uint T, const float cap,
                          const int argmax, float *best, uint *best_at) {
  STRIDED_LSE_BODY(ZG)
}
/* the same over a row in the tile (T = 1 there): the same operations, the same bits */
inline float2 tile_lse(__local const float *zt, ulong j, const ulong c, const uint T, const float cap,
                       const int argmax, float *best, uint *best_at) {
  STRIDED_LSE_BODY(ZT)
}
#undef STRIDED_LSE_BODY

/* T items share a row: each keeps a running log-sum-exp over a strided slice (coalesced loads),
 * the row's segment merges them in a fixed tree, then a second pass writes the gradient and sums
 * the smoothing term Σ_j w_j (m - u_j). The host picks T from c (about c / 16 items, at most the
 * group: 256 for a vocabulary, one for c ≤ 16, so that short rows still fill the device). Items of
 * a row past the block, or of an ignored row, keep taking part in the group's barriers. */
CLXENT_INLINE_ALWAYS void hard_group_rows(SOFTMAX_HARD_ARGS, __local float2 *scratch, const int tiled) {
  const clxent_params p = call_params(p_host, dev_scales);
  const uint T = p.row_threads, lid = get_local_id(0), lane = lid & (T - 1);
  const ulong i = (ulong)get_group_id(0) * (CLXENT_GROUP_SIZE / T) + lid / T;
  const int active = i < rows;
  __global const store_t *z = logits + (active ? i : 0) * c;
  __global store_t *g = grad && active ? grad + i * c : 0;
  const int y = active ? labels[first_row + i] : 0;
  /* a label out of range (only device-resident calls get here unchecked): NaN loss and gradient */
  const int bad = active && y != ignore_index && (y < 0 || (ulong)y >= c);
  const int ignored = !active || bad || y == ignore_index;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  float2 st = (float2)(-INFINITY, 0.0f);
  float best = -INFINITY; /* argmax: each item's first max of z, or first NaN, over its slice */
  uint best_at = lane;    /* an item with no element (lane ≥ c) or -inf only ties at its lane */
  /* tiled (softmax_xent_hard_tile): the group's rows are in row_cache, a row of c floats per item */
  const ulong first_i = (ulong)get_group_id(0) * CLXENT_GROUP_SIZE;
  const ulong tile_n = tiled ? min((ulong)CLXENT_GROUP_SIZE, rows - first_i) * c : 0;
  __local float *zt = row_cache + (tiled ? lid * c : 0);
  if (tiled) {
    for (ulong k = lid; k < tile_n; k += CLXENT_GROUP_SIZE) row_cache[k] = LOAD(logits + first_i * c, k);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  /* the argmax (uniform) beside the same sums */
  if (row_argmax ? active && !bad : !ignored || (active && !bad && row_lse))
    st = tiled ? tile_lse(zt, lane, c, T, cap, row_argmax != 0, &best, &best_at)
               : strided_lse(z, lane, c, T, cap, row_argmax != 0, &best, &best_at);
  st = segment_lse(st, scratch, T);
  if (row_argmax) best_at = segment_argmax(best, best_at, (__local uint *)scratch, T); /* written at the end */
  if (active && lane == 0 && row_lse) row_lse[first_row + i] = bad ? NAN : st.x + clxent_log(st.y);
  if (active && ignored) {
    const float fill = bad ? NAN : 0.0f;
    if (g) for (ulong j = lane; j < c; j += T) tiled ? (void)(zt[j] = fill) : (void)STORE(fill, g, j);
    if (lane == 0) row_loss[first_row + i] = fill;
  }
  const float m = st.x, log_s = clxent_log(st.y), lse = m + log_s; /* a = e^{(u - m) - ln s}: u - m exact near m */
  const float zy = ignored ? 0.0f : tiled ? zt[y] : LOAD(z, y), uy = cap_logit(zy, cap);
  const float wy = ignored ? 0.0f : weight ? weight[y] : 1.0f;
  const float g_up = row_scale && !ignored ? row_scale[first_row + i] : 1.0f; /* the row's upstream gradient */
  const float inv_c = 1.0f / (float)c, W = p.weight_sum, S = p.scale * g_up;
  const int smooth = eps > 0.0f; /* uniform: the segment_sum below is called by all or none */
  const float A = S * ((1.0f - eps) * wy + eps * W * inv_c) + 2.0f * zl * lse * (p.z_scale * g_up);
  const float B = S * eps * inv_c, K = S * (1.0f - eps) * wy;
  barrier(CLK_GLOBAL_MEM_FENCE); /* z[y] is read by all before anyone overwrites it in place */
  float wdev = 0.0f;
  /* pass 2: GU values (and weights) read, then used in the order of one at a time: the same sums */
#define PASS2_VALUE(zj, wj, j, GS)                                                                    \
  do {                                                                                              \
    float slope;                                                                                    \
    const float u = cap_logit_slope((zj), cap, &slope), w = (wj);                                   \
    if (smooth && w != 0.0f) wdev += w * (m - u);                                                   \
    if (g) GS((A * clxent_exp((u - m) - log_s) - B * w - ((j) == (ulong)y ? K : 0.0f)) * slope, (j)); \
  } while (0)
#define PASS2_BLOCKS(N, ZL, GS)                                                                     \
  for (; j + (ulong)((N) - 1) * T < c; j += (ulong)(N) * T) {                                        \
    float zv[N], wv[N];                                                                             \
    UNROLL_ALL for (uint k = 0; k < (N); ++k) zv[k] = ZL(j + k * T), wv[k] = weight ? weight[j + k * T] : 1.0f; \
    UNROLL_ALL for (uint k = 0; k < (N); ++k) PASS2_VALUE(zv[k], wv[k], j + k * T, GS);      \
  }
#define GS_G(v, j) STORE((v), g, (j))
#define GS_T(v, j) (zt[j] = (v))
#define PASS2(ZL, GS)                                                                               \
  do {                                                                                              \
    ulong j = lane;                                                                                 \
    PASS2_BLOCKS(GU, ZL, GS)                                                                        \
    for (; j < c; j += T) PASS2_VALUE(ZL(j), weight ? weight[j] : 1.0f, j, GS);                     \
  } while (0)
  if (!ignored && (g || smooth)) {
    if (tiled) PASS2(ZT, GS_T);
    else PASS2(ZG, GS_G);
  }
  if (tiled) { /* the gradient out of the tile (every active row wrote its part) */
    barrier(CLK_LOCAL_MEM_FENCE);
    if (grad)
      for (ulong k = lid; k < tile_n; k += CLXENT_GROUP_SIZE) STORE(row_cache[k], grad + first_i * c, k);
  }
#undef PASS2
#undef GS_T
#undef GS_G
#undef PASS2_BLOCKS
#undef PASS2_VALUE
  if (smooth) wdev = segment_sum(wdev, (__local float *)scratch, T);
  if (!ignored && lane == 0) {
    float loss = (1.0f - eps) * wy * ((m - uy) + log_s);
    if (smooth) loss += eps * inv_c * (wdev + W * log_s);
    if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
    row_loss[first_row + i] = loss;
  }
  /* after the last barrier: PoCL 3.1 stores from the code between the barriers of segment_argmax's
   * call (under `if (row_argmax)`) and the next ones went to rows past the block (valgrind) */
  if (row_argmax && active && !bad && lane == 0) row_argmax[first_row + i] = (int)best_at;
}

#define HARD_ARG_NAMES                                                                              \
  rows, c, first_row, logits, labels, weight, ignore_index, p_host, grad, row_loss, row_lse, dev_scales, row_scale, \
      row_cache, row_cache_stride, row_argmax
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1))) void softmax_xent_hard(SOFTMAX_HARD_ARGS) {
  __local float2 scratch[CLXENT_GROUP_SIZE];
  hard_group_rows(HARD_ARG_NAMES, scratch, 0);
}

/* Rows of at most CLXENT_GROUP_TILE classes (from CLXENT_GROUP_TILE_MIN), one item each: the host
 * gives the group a tile of local memory (row_cache: group size · c floats) and the group reads
 * its rows into it with neighbouring items on neighbouring values, each item works on its row
 * there, and the gradient leaves the same way. In place, a row per item puts a warp's accesses
 * c · 4 bytes apart: c times the cache transactions of coalesced ones (H100: 1.4x the time at
 * c = 10, measured with the tile still inside softmax_xent_hard, c97bef9 + the host's tile; this
 * split form has not run on a GPU yet). A kernel of its own: the same code with the tile in
 * softmax_xent_hard took the long rows 1.09-1.16x their time (registers, or local memory where
 * it was static). tiled is a
 * constant once inlined, so that no barrier is under a runtime if: under one, PoCL 3.1 misplaced
 * the stores around it. The same operations on the same values as softmax_xent_hard: its bits. */
__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1))) void softmax_xent_hard_tile(SOFTMAX_HARD_ARGS) {
  __local float2 scratch[CLXENT_GROUP_SIZE];
  hard_group_rows(HARD_ARG_NAMES, scratch, 1);
}
#undef HARD_ARG_NAMES

__kernel __attribute__((reqd_work_group_size(CLXENT_GROUP_SIZE, 1, 1))) void softmax_xent_soft(SOFTMAX_SOFT_ARGS) {
  const clxent_params p = p_host;
  __local float2 scratch[CLXENT_GROUP_SIZE];
  const uint T = p.row_threads, lid = get_local_id(0), lane = lid & (T - 1);
  const ulong i = (ulong)get_group_id(0) * (CLXENT_GROUP_SIZE / T) + lid / T;
  const int active = i < rows;
  const ulong cols = active ? c : 0; /* an inactive item walks no row */
  __global const store_t *z = logits + (active ? i : 0) * c;
  __global const store_t *t = targets + (active ? i : 0) * c;
  __global store_t *g = grad && active ? grad + i * c : 0;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss;
  const float keep = 1.0f - eps, spread = eps / (float)c;
  float2 st = (float2)(-INFINITY, 0.0f);
  float tsum = 0.0f;
  float best = -INFINITY; /* argmax, as in softmax_xent_hard */
  uint best_at = lane;
  if (row_argmax) {
    for (ulong j = lane; j < cols; j += T) {
      const float v = LOAD(z, j);
      argmax_push(&best, &best_at, v, j);
      st = lse_push(st, cap_logit(v, cap));
      tsum += soft_target(LOAD(t, j), weight, j, keep, spread);
    }
  } else {
    for (ulong j = lane; j < cols; j += T) {
      st = lse_push(st, cap_logit(LOAD(z, j), cap));
      tsum += soft_target(LOAD(t, j), weight, j, keep, spread);
    }
  }
  st = segment_lse(st, scratch, T);
  tsum = segment_sum(tsum, (__local float *)scratch, T);
  if (row_argmax) best_at = segment_argmax(best, best_at, (__local uint *)scratch, T);
  const float g_up = row_scale && active ? row_scale[first_row + i] : 1.0f; /* the row's upstream gradient */
  const float m = st.x, log_s = clxent_log(st.y), lse = m + log_s, S = p.scale * g_up;
  const float A = S * tsum + 2.0f * zl * lse * (p.z_scale * g_up);
  /* loss = Σ τ (m - u) + Στ · ln s, accumulated in the gradient pass: one read of z and t serves
   * both, and m - u keeps its precision where lse - u would cancel. */
  float td = 0.0f;
  for (ulong j = lane; j < cols; j += T) {
    float slope;
    const float u = cap_logit_slope(LOAD(z, j), cap, &slope), tau = soft_target(LOAD(t, j), weight, j, keep, spread);
    if (tau != 0.0f) td += tau * (m - u);
    if (g) STORE((A * clxent_exp((u - m) - log_s) - S * tau) * slope, g, j);
  }
  td = segment_sum(td, (__local float *)scratch, T);
  if (active && lane == 0) {
    if (row_lse) row_lse[first_row + i] = lse;
    if (row_argmax) row_argmax[first_row + i] = (int)best_at;
    float loss = td + tsum * log_s;
    if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
    row_loss[first_row + i] = loss;
  }
}

#endif
#pragma OPENCL FP_CONTRACT ON
