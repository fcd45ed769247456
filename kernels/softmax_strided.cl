/*
 * Fused softmax cross-entropy with the class dimension not innermost: PyTorch's (N, C, d1, ...)
 * inputs (segmentation, per-pixel losses), read in place through a class stride, no transpose.
 *
 * With S = d1·d2·… positions, the logits (targets, gradient) are [N][c][S]: class j of row
 * (i, s) is at (i·c + j)·S + s. The rows are r = i·S + s, and labels, row_loss and row_lse are
 * indexed by r ([N][S]). The mathematics per row are those of softmax_xent.cl:
 *
 *   u_rj     = cap(z_rj),  lse_r = m_r + ln s_r,  m_r = max_j u_rj,  s_r = Σ_j e^{u_rj - m_r}
 *   τ_rj     = w_j · ((1-ε) t_rj + ε/c)     (t one-hot at y_r, or the dense targets)
 *   loss_r   = Σ_j τ_rj (lse_r - u_rj) + λ lse_r²
 *   dL/dz_rj = [S (a_rj Σ_k τ_rk - τ_rj) + 2 λ S_z lse_r a_rj] · u'_rj
 *
 * computed, as there, through m - u (exact where lse - u would cancel): hard labels as
 * (1-ε) w_y ((m - u_y) + ln s) + (ε/c) [Σ_j w_j (m - u_j) + W ln s], dense targets as
 * Σ_j τ_j (m - u_j) + (Σ_j τ_j) ln s; terms with τ = 0 add 0 even where u = -inf.
 *
 * A work-item owns CLXENT_VEC consecutive positions s0 .. s0+VEC-1 of one i, one per vector
 * lane, and walks the classes j: the lanes of class j are contiguous in memory (one vector load
 * on a CPU; neighbouring work-items read neighbouring vectors, coalesced on a GPU). Lanes past S
 * (the tail of a sample when VEC does not divide S) repeat its last position and write nothing.
 *   pass 1: the online log-sum-exp over j, one exponential per value: with d = e^{-|u - m|},
 *           s ← s + d when u ≤ m, else s ← s·d + 1 and m ← u (a -inf mask adds nothing; a NaN
 *           makes s NaN); the label's u_y (hard) and Σ τ (dense). -|u - m| is raised to -87
 *           where it is lower, so that the exponential takes its narrow form (math.cl): that
 *           changes no bit, since s ≥ 1 (the max's own term) and s ≤ c < 2^31, so the e^-87 =
 *           1.6e-38 added, or multiplied into s, stays far below half an ulp of the result;
 *   pass 2: the gradient, and the sums Σ w_j (m - u_j) (smoothing) or Σ τ_j (m - u_j) (dense)
 *           that need the final m; it runs only when one of them is wanted. e^{u - m} takes the
 *           narrow form when every lane's min u (pass 1) is within 87 of its max, else the
 *           general one (masks, large spreads). In place (grad == logits), each value is read
 *           before the same work-item overwrites it.
 * Blocks of the batch hold whole samples i (the host's row blocks are multiples of S), so that
 * a block's arrays are one contiguous stretch of the caller's.
 *
 * Arguments: rows (the block's, a multiple of S), c, S (inner), first_row (the block's first
 * row within the batch), logits [rows/S][c][S], labels [batch] (hard, else 0), targets
 * [rows/S][c][S] (dense, else 0), weight [c] or 0, ignore_index, the call's scalars, grad (or 0),
 * row_loss and row_lse [batch] (lse may be 0).
 */

/* The nl ≤ CLXENT_VEC values p[0 .. nl) as a vector; lanes past nl repeat p[nl - 1]. Vectors of
 * a partial tail are built element by element (CLXENT_LANES, softmax_xent.cl). */
inline floatv strided_load(__global const store_t *p, uint nl) {
  if (nl == CLXENT_VEC) return LOADV(p, 0);
#define STRIDED_LANE(l) LOAD(p, min((uint)(l), nl - 1))
  return (floatv)CLXENT_LANES(STRIDED_LANE);
#undef STRIDED_LANE
}

/* p[0 .. nl) = the first nl lanes of v. */
inline void strided_store(floatv v, __global store_t *p, uint nl) {
  if (nl == CLXENT_VEC) {
    STOREV(v, p, 0);
    return;
  }
  float out[CLXENT_VEC];
  vstorev(v, 0, out);
  for (uint l = 0; l < nl; ++l) STORE(out[l], p, l);
}

__kernel void softmax_xent_strided(const ulong rows, const ulong c, const ulong inner, const ulong first_row,
                                   __global const store_t *logits, __global const int *labels,
                                   __global const store_t *targets, __global const float *weight,
                                   const int ignore_index, const clxent_params p, __global store_t *grad,
                                   __global float *row_loss, __global float *row_lse) {
  const ulong per_sample = (inner + CLXENT_VEC - 1) / CLXENT_VEC, gid = get_global_id(0);
  /* no %: LLVM pairs it with the / into a `freeze`, which Oclgrind's uninitialised-value check
   * cannot run */
  const ulong i = gid / per_sample, s0 = (gid - i * per_sample) * CLXENT_VEC;
  if (i * inner >= rows) return;
  const uint nl = (uint)min((ulong)CLXENT_VEC, inner - s0);
  const ulong base = i * c * inner + s0, r0 = first_row + i * inner + s0; /* r0: the lanes' first batch row */
  __global const store_t *z = logits + base;
  __global const store_t *t = targets ? targets + base : 0;
  __global store_t *g = grad ? grad + base : 0;
  const int soft = targets != 0;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss, S = p.scale, inv_c = 1.0f / (float)c;
  const float keep = 1.0f - eps, spread = eps * inv_c;
  const intv lane = (intv)CLXENT_LANES(SHORT_LANE);
  intv y = (intv)(ignore_index), ignored = (intv)(0), bad = (intv)(0);
  if (!soft) {
#define STRIDED_Y(l) labels[r0 + min((uint)(l), nl - 1)]
    y = select((intv)CLXENT_LANES(STRIDED_Y), (intv)(ignore_index), lane >= (int)nl);
#undef STRIDED_Y
    ignored = y == ignore_index;
    bad = !ignored & ((y < 0) | (y >= (int)c)); /* the host checks labels: defensive only */
  }

  /* pass 1 */
  floatv m = (floatv)(-INFINITY), s = (floatv)(0.0f), uy = (floatv)(0.0f), wy = (floatv)(0.0f);
  floatv tsum = (floatv)(0.0f), lo = (floatv)(INFINITY);
  for (ulong j = 0; j < c; ++j) {
    const floatv zj = strided_load(z + j * inner, nl);
    const floatv u = cap != 0.0f ? cap_logitv(zj, cap) : zj;
    const floatv x = -fabs(u - m); /* ≤ 0 or NaN; NaN < -87 is false, so a NaN stays NaN */
    const floatv d = clxent_expv_narrow(select(x, (floatv)(-CLXENT_EXP_FAST_LIMIT), x < -CLXENT_EXP_FAST_LIMIT));
    const intv up = u > m;
    lo = u < lo ? u : lo;
    s = select(select(s + d, s * d + 1.0f, up), s, u == (floatv)(-INFINITY));
    m = select(m, u, up);
    const float w = weight ? weight[j] : 1.0f;
    if (soft) {
      tsum += (keep * strided_load(t + j * inner, nl) + spread) * w;
    } else {
      const intv at_y = y == (int)j;
      uy = select(uy, u, at_y), wy = select(wy, (floatv)(w), at_y);
    }
  }
  const floatv log_s = log(s), lse = m + log_s;
  const int smooth = !soft && eps > 0.0f;
  const floatv k = soft ? (S * tsum + 2.0f * zl * lse * p.z_scale) / s
                        : (S * ((1.0f - eps) * wy + eps * p.weight_sum * inv_c) + 2.0f * zl * lse * p.z_scale) / s;
  const floatv K = S * (1.0f - eps) * wy;
  const float B = S * spread;
  const intv skip = ignored | bad;
  const floatv fill = select((floatv)(0.0f), (floatv)(NAN), bad); /* ignored rows: 0; bad labels: NaN */

  /* pass 2: the gradient, and the sums that need the final m */
  floatv dev = (floatv)(0.0f); /* Σ w_j (m - u_j) (smoothing), or Σ τ_j (m - u_j) (dense) */
  const int narrow = hmax(m - lo) <= CLXENT_EXP_FAST_LIMIT; /* false with a -inf mask; NaN takes either */
  if (g || smooth || soft)
    for (ulong j = 0; j < c; ++j) {
      const floatv zj = strided_load(z + j * inner, nl);
      floatv slope = (floatv)(1.0f);
      const floatv u = cap != 0.0f ? cap_logit_slopev(zj, cap, &slope) : zj;
      const float w = weight ? weight[j] : 1.0f;
      floatv gv;
      const floatv e = narrow ? clxent_expv_narrow(u - m) : clxent_expv(u - m);
      if (soft) {
        const floatv tau = (keep * strided_load(t + j * inner, nl) + spread) * w;
        dev += select(tau * (m - u), (floatv)(0.0f), tau == (floatv)(0.0f));
        gv = (k * e - S * tau) * slope;
      } else {
        if (smooth && w != 0.0f) dev += w * (m - u);
        gv = (k * e - B * w - select((floatv)(0.0f), K, y == (int)j)) * slope;
      }
      if (g) strided_store(select(gv, fill, skip), g + j * inner, nl);
    }

  floatv loss = soft ? dev + tsum * log_s : (1.0f - eps) * wy * ((m - uy) + log_s);
  if (smooth) loss += spread * (dev + p.weight_sum * log_s);
  if (zl != 0.0f) loss += p.z_loss_row * zl * lse * lse;
  loss = select(select(loss, (floatv)(0.0f), ignored), (floatv)(NAN), bad);
  float out[CLXENT_VEC];
  vstorev(loss, 0, out);
  for (uint l = 0; l < nl; ++l) row_loss[r0 + l] = out[l];
  if (row_lse) {
    vstorev(select(lse, (floatv)(NAN), bad), 0, out);
    for (uint l = 0; l < nl; ++l) row_lse[r0 + l] = out[l];
  }
}
