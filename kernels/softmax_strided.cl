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
 * A work-item owns consecutive positions of one i, one per vector lane, and walks the classes j:
 * the lanes of class j are contiguous in memory. On GPUs (the group variant) an item owns one
 * vector, CLXENT_VEC positions, so that neighbouring items read neighbouring vectors (coalesced);
 * on CPUs CLXENT_STRIDED_TILE_ITEM vectors (clxent_defs.h), each step over j then asking memory
 * for several lines at once. Lanes past S (the tail of a sample when the vector width does not
 * divide S) repeat its last position and write nothing; vectors wholly past S are not touched.
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
 * row_loss and row_lse [batch] (lse may be 0), row_scale [batch] or 0: row r's upstream gradient
 * g_r (opts->grad_output under NONE) multiplies its gradient scales S and S_z, as in
 * softmax_xent.cl (the loss is not scaled; g_r = 1 gives the bits of row_scale = 0); row_argmax
 * [batch] or 0: row r's index of its largest raw z (before softcap), the first on ties, its first
 * NaN if it holds one, 0 for a row of -inf only (torch.argmax's rule, as softmax_xent.cl), tracked
 * per lane in pass 1.
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

/* Vectors per work-item: CPUs (one item per row) take CLXENT_STRIDED_TILE_ITEM consecutive vectors
 * of positions, so that each step over the classes asks memory for several lines at once (a
 * sample's c streams, S values apart, are more than the hardware prefetchers follow); GPUs take
 * one, so that neighbouring items read neighbouring vectors (coalesced). */
#if CLXENT_ROW_PER_ITEM
#define CLXENT_STRIDED_TILE CLXENT_STRIDED_TILE_ITEM
#else
#define CLXENT_STRIDED_TILE 1
#endif

__kernel void softmax_xent_strided(const ulong rows, const ulong c, const ulong inner, const ulong first_row,
                                   __global const store_t *logits, __global const int *labels,
                                   __global const store_t *targets, __global const float *weight,
                                   const int ignore_index, const clxent_params p, __global store_t *grad,
                                   __global float *row_loss, __global float *row_lse,
                                   __global const float *row_scale, __global int *row_argmax) {
  enum { R = CLXENT_STRIDED_TILE, SPAN = CLXENT_STRIDED_TILE * CLXENT_VEC };
  const ulong per_sample = (inner + SPAN - 1) / SPAN, gid = get_global_id(0);
  /* no %: LLVM pairs it with the / into a `freeze`, which Oclgrind's uninitialised-value check
   * cannot run */
  const ulong i = gid / per_sample, s0 = (gid - i * per_sample) * SPAN;
  if (i * inner >= rows) return;
  /* nv vectors of positions; vector v has nl[v] lanes (the last may be partial) */
  const uint nv = (uint)min((ulong)R, (inner - s0 + CLXENT_VEC - 1) / CLXENT_VEC);
  const ulong base = i * c * inner + s0, r0 = first_row + i * inner + s0; /* r0: the lanes' first batch row */
  __global const store_t *z = logits + base;
  __global const store_t *t = targets ? targets + base : 0;
  __global store_t *g = grad ? grad + base : 0;
  const int soft = targets != 0;
  const float eps = p.smoothing, cap = p.softcap, zl = p.z_loss, S = p.scale, inv_c = 1.0f / (float)c;
  const float keep = 1.0f - eps, spread = eps * inv_c;
  const intv lane = (intv)CLXENT_LANES(SHORT_LANE);
  uint nl[R];
  intv y[R], ignored[R], bad[R];
  floatv m[R], s[R], uy[R], wy[R], tsum[R], lo[R], gup[R], Sg[R], Bg[R];
  floatv best[R]; /* argmax: each lane's largest raw z so far, its index, whether a NaN was met */
  intv best_at[R], nan_seen[R];
  for (uint v = 0; v < nv; ++v) {
    nl[v] = (uint)min((ulong)CLXENT_VEC, inner - s0 - v * CLXENT_VEC);
    y[v] = (intv)(ignore_index), ignored[v] = (intv)(0), bad[v] = (intv)(0);
    if (!soft) {
#define STRIDED_Y(l) labels[r0 + v * CLXENT_VEC + min((uint)(l), nl[v] - 1)]
      y[v] = select((intv)CLXENT_LANES(STRIDED_Y), (intv)(ignore_index), lane >= (int)nl[v]);
#undef STRIDED_Y
      ignored[v] = y[v] == ignore_index;
      bad[v] = !ignored[v] & ((y[v] < 0) | (y[v] >= (int)c)); /* the host checks labels: defensive only */
    }
#define STRIDED_G(l) row_scale[r0 + v * CLXENT_VEC + min((uint)(l), nl[v] - 1)]
    gup[v] = row_scale ? (floatv)CLXENT_LANES(STRIDED_G) : (floatv)(1.0f); /* the rows' upstream gradients */
#undef STRIDED_G
    m[v] = (floatv)(-INFINITY), s[v] = (floatv)(0.0f), uy[v] = (floatv)(0.0f), wy[v] = (floatv)(0.0f);
    tsum[v] = (floatv)(0.0f), lo[v] = (floatv)(INFINITY);
    best[v] = (floatv)(-INFINITY), best_at[v] = (intv)(0), nan_seen[v] = (intv)(0);
  }

  /* pass 1 */
  for (ulong j = 0; j < c; ++j) {
    const float w = weight ? weight[j] : 1.0f;
    for (uint v = 0; v < nv; ++v) {
      const floatv zj = strided_load(z + j * inner + v * CLXENT_VEC, nl[v]);
      const floatv u = cap != 0.0f ? cap_logitv(zj, cap) : zj;
      if (row_argmax) { /* strictly greater: the first of ties; the first NaN, then nothing more */
        const intv nan_here = isnan(zj), take = ~nan_seen[v] & ((zj > best[v]) | nan_here);
        best[v] = select(best[v], zj, take), best_at[v] = select(best_at[v], (intv)((int)j), take);
        nan_seen[v] |= nan_here;
      }
      const floatv x = -fabs(u - m[v]); /* ≤ 0 or NaN; NaN < -87 is false, so a NaN stays NaN */
      const floatv d = clxent_expv_narrow(select(x, (floatv)(-CLXENT_EXP_FAST_LIMIT), x < -CLXENT_EXP_FAST_LIMIT));
      const intv up = u > m[v];
      lo[v] = u < lo[v] ? u : lo[v];
      s[v] = select(select(s[v] + d, s[v] * d + 1.0f, up), s[v], u == (floatv)(-INFINITY));
      m[v] = select(m[v], u, up);
      if (soft) {
        tsum[v] += (keep * strided_load(t + j * inner + v * CLXENT_VEC, nl[v]) + spread) * w;
      } else {
        const intv at_y = y[v] == (int)j;
        uy[v] = select(uy[v], u, at_y), wy[v] = select(wy[v], (floatv)(w), at_y);
      }
    }
  }
  const int smooth = !soft && eps > 0.0f;
  const float B = S * spread;
  floatv log_s[R], lse[R], k[R], K[R], fill[R], dev[R];
  intv skip[R];
  int narrow = 1; /* every lane's e^{u - m} in the narrow range: false with a -inf mask; NaN takes either */
  for (uint v = 0; v < nv; ++v) {
    log_s[v] = clxent_logv(s[v]), lse[v] = m[v] + log_s[v];
    k[v] = soft ? (S * tsum[v] + 2.0f * zl * lse[v] * p.z_scale) / s[v]
                : (S * ((1.0f - eps) * wy[v] + eps * p.weight_sum * inv_c) + 2.0f * zl * lse[v] * p.z_scale) / s[v];
    k[v] *= gup[v], Sg[v] = S * gup[v], Bg[v] = B * gup[v];
    K[v] = S * (1.0f - eps) * wy[v] * gup[v];
    skip[v] = ignored[v] | bad[v];
    fill[v] = select((floatv)(0.0f), (floatv)(NAN), bad[v]); /* ignored rows: 0; bad labels: NaN */
    dev[v] = (floatv)(0.0f); /* Σ w_j (m - u_j) (smoothing), or Σ τ_j (m - u_j) (dense) */
    narrow = narrow && hmax(m[v] - lo[v]) <= CLXENT_EXP_FAST_LIMIT;
  }

  /* pass 2: the gradient, and the sums that need the final m */
  if (g || smooth || soft)
    for (ulong j = 0; j < c; ++j) {
      const float w = weight ? weight[j] : 1.0f;
      for (uint v = 0; v < nv; ++v) {
        const floatv zj = strided_load(z + j * inner + v * CLXENT_VEC, nl[v]);
        floatv slope = (floatv)(1.0f);
        const floatv u = cap != 0.0f ? cap_logit_slopev(zj, cap, &slope) : zj;
        floatv gv;
        const floatv e = narrow ? clxent_expv_narrow(u - m[v]) : clxent_expv(u - m[v]);
        if (soft) {
          const floatv tau = (keep * strided_load(t + j * inner + v * CLXENT_VEC, nl[v]) + spread) * w;
          dev[v] += select(tau * (m[v] - u), (floatv)(0.0f), tau == (floatv)(0.0f));
          gv = (k[v] * e - Sg[v] * tau) * slope;
        } else {
          if (smooth && w != 0.0f) dev[v] += w * (m[v] - u);
          gv = (k[v] * e - Bg[v] * w - select((floatv)(0.0f), K[v], y[v] == (int)j)) * slope;
        }
        if (g) strided_store(select(gv, fill[v], skip[v]), g + j * inner + v * CLXENT_VEC, nl[v]);
      }
    }

  for (uint v = 0; v < nv; ++v) {
    floatv loss = soft ? dev[v] + tsum[v] * log_s[v] : (1.0f - eps) * wy[v] * ((m[v] - uy[v]) + log_s[v]);
    if (smooth) loss += spread * (dev[v] + p.weight_sum * log_s[v]);
    if (zl != 0.0f) loss += p.z_loss_row * zl * lse[v] * lse[v];
    loss = select(select(loss, (floatv)(0.0f), ignored[v]), (floatv)(NAN), bad[v]);
    float out[CLXENT_VEC];
    vstorev(loss, 0, out);
    for (uint l = 0; l < nl[v]; ++l) row_loss[r0 + v * CLXENT_VEC + l] = out[l];
    if (row_lse) {
      vstorev(select(lse[v], (floatv)(NAN), bad[v]), 0, out);
      for (uint l = 0; l < nl[v]; ++l) row_lse[r0 + v * CLXENT_VEC + l] = out[l];
    }
    if (row_argmax) {
      int at[CLXENT_VEC];
      vstorev(best_at[v], 0, at);
      for (uint l = 0; l < nl[v]; ++l) row_argmax[r0 + v * CLXENT_VEC + l] = at[l];
    }
  }
}
