/*
 * Helpers for every clxent kernel. The program is clxent_defs.h (the definitions the host shares),
 * this file, then the others, built as one program with these defines, chosen per device
 * (host/tuning.c, host/program.c):
 *
 *   CLXENT_ROW_PER_ITEM  1: one work-item owns a whole row and walks it with explicit vectors
 *                           (CPU devices: PoCL runs a work-item's loop as plain vectorised code);
 *                        0: one work-group of CLXENT_GROUP_SIZE work-items shares a row, with
 *                           strided (coalesced) loads and a tree reduction in local memory (GPUs).
 *   CLXENT_VEC           vector width of the per-item loops: 4, 8 or 16.
 *   CLXENT_GROUP_SIZE    work-items per row (group variant) and per reduction group; power of two.
 *
 * Math is float32 throughout; no -cl-fast-relaxed-math, because inf, -inf masks and NaN must keep
 * their IEEE meaning (a NaN anywhere in a row must reach that row's loss).
 */

#ifndef CLXENT_ROW_PER_ITEM
#define CLXENT_ROW_PER_ITEM 1
#endif
#ifndef CLXENT_VEC
#define CLXENT_VEC 8
#endif
#ifndef CLXENT_GROUP_SIZE
#define CLXENT_GROUP_SIZE 256
#endif
/* first, before any type is made of it: a compiler stops at the first error or lists it first
 * (NVIDIA's lists every later error too, and the build log is cut to the first in the message) */
#if CLXENT_VEC != 4 && CLXENT_VEC != 8 && CLXENT_VEC != 16
#error "CLXENT_VEC must be 4, 8 or 16"
#endif

#define CLXENT_CAT_(a, b) a##b
#define CLXENT_CAT(a, b) CLXENT_CAT_(a, b)
#define floatv CLXENT_CAT(float, CLXENT_VEC)
#define vloadv CLXENT_CAT(vload, CLXENT_VEC)
#define vstorev CLXENT_CAT(vstore, CLXENT_VEC)

/* CLXENT_PREFETCH(p, j): ask the cache for p[j] ahead of its use (the row-per-item kernels on a
 * CPU: clxent_defs.h's CLXENT_PREFETCH_AHEAD says why). Clang's builtin, which becomes a
 * prefetcht1 on x86 (OpenCL's own prefetch() is a no-op on PoCL 3.1), where the kernels are
 * compiled for the CPU itself (PoCL); nothing elsewhere: Oclgrind compiles for SPIR and its
 * interpreter has no prefetch. A prefetch never faults: an address past the buffer's end is
 * harmless. */
#if CLXENT_ROW_PER_ITEM && defined(__clang__) && (defined(__x86_64__) || defined(__aarch64__))
#define CLXENT_PREFETCH(p, j) __builtin_prefetch((p) + (j), 0, 2)
#define CLXENT_PREFETCH_W(p, j) __builtin_prefetch((p) + (j), 1, 2) /* for writing: prefetchw */
#else
#define CLXENT_PREFETCH(p, j) ((void)0)
#define CLXENT_PREFETCH_W(p, j) ((void)0)
#endif

/* CLXENT_HAS_TRANSPOSE_16: 16 vectors of 16 lanes transposed in registers, R[r][c] -> R[c][r]:
 * four steps, each swapping one bit between the row and the column index of every element, two
 * two-source shuffles (Clang's __builtin_shufflevector) per pair of rows a step, 64 in all. Data
 * movement only: the same values, so the same bits. Where the compiler is Clang (PoCL, Oclgrind)
 * and the kernels have 16 lanes. */
#if defined(__clang__) && CLXENT_VEC == 16
#define CLXENT_HAS_TRANSPOSE_16 1
#define CLXENT_T_PAIR(R, i, d, LO, HI)                                                  \
  {                                                                                     \
    const floatv a_ = R[i], b_ = R[(i) + (d)];                                          \
    R[i] = __builtin_shufflevector(a_, b_, LO);                                         \
    R[(i) + (d)] = __builtin_shufflevector(a_, b_, HI);                                 \
  }
#define CLXENT_T_LO1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define CLXENT_T_HI1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define CLXENT_T_LO2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define CLXENT_T_HI2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define CLXENT_T_LO4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define CLXENT_T_HI4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define CLXENT_T_LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define CLXENT_T_HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define CLXENT_T_STEP(R, d, a0, a1, a2, a3, a4, a5, a6, a7)                                                        \
  CLXENT_T_PAIR(R, a0, d, CLXENT_T_LO##d, CLXENT_T_HI##d) CLXENT_T_PAIR(R, a1, d, CLXENT_T_LO##d, CLXENT_T_HI##d)  \
  CLXENT_T_PAIR(R, a2, d, CLXENT_T_LO##d, CLXENT_T_HI##d) CLXENT_T_PAIR(R, a3, d, CLXENT_T_LO##d, CLXENT_T_HI##d)  \
  CLXENT_T_PAIR(R, a4, d, CLXENT_T_LO##d, CLXENT_T_HI##d) CLXENT_T_PAIR(R, a5, d, CLXENT_T_LO##d, CLXENT_T_HI##d)  \
  CLXENT_T_PAIR(R, a6, d, CLXENT_T_LO##d, CLXENT_T_HI##d) CLXENT_T_PAIR(R, a7, d, CLXENT_T_LO##d, CLXENT_T_HI##d)
__attribute__((always_inline)) inline void clxent_transpose16(floatv *R) {
  CLXENT_T_STEP(R, 1, 0, 2, 4, 6, 8, 10, 12, 14)
  CLXENT_T_STEP(R, 2, 0, 1, 4, 5, 8, 9, 12, 13)
  CLXENT_T_STEP(R, 4, 0, 1, 2, 3, 8, 9, 10, 11)
  CLXENT_T_STEP(R, 8, 0, 1, 2, 3, 4, 5, 6, 7)
}
#else
#define CLXENT_HAS_TRANSPOSE_16 0
#endif

/* CLXENT_HAS_GATHER_16: the 16-lane gather and scatter of AVX-512 (vgatherdps, vscatterdps) through
 * Clang's builtins, where the kernels are compiled for such an x86 CPU (PoCL passes the CPU's
 * features: __AVX512F__) with 16 lanes. OpenCL has no gather; built lane by lane, a 16-row block's
 * column took 16 loads and permutes, and its store 16 extracts and stores (the short-row kernel:
 * 57% of its time at c = 10, perf). 0 elsewhere (8 or 4 lanes, other CPUs, GPUs, Oclgrind's SPIR). */
#if CLXENT_ROW_PER_ITEM && defined(__clang__) && CLXENT_VEC == 16 && defined(__AVX512F__)
#define CLXENT_HAS_GATHER_16 1
#else
#define CLXENT_HAS_GATHER_16 0
#endif

/* CLXENT_HAS_STREAM: stores that go around the caches (non-temporal: vmovntps/vmovntdq) through
 * Clang's __builtin_nontemporal_store, where the kernels are compiled for the x86 CPU itself
 * (PoCL). A gradient row written with ordinary stores is first read from memory (the cache takes
 * the line before it is written: a third stream beside the logits read and the gradient written);
 * streamed, it is only written. The host asks for it per launch (clxent_params.stream_grad) where
 * the gradient is larger than the device's cache, so that it would leave the cache anyway. 0
 * elsewhere (GPUs, Oclgrind's SPIR, other CPUs, vectors of 4: not measured). */
#if CLXENT_ROW_PER_ITEM && defined(__clang__) && defined(__x86_64__) && CLXENT_VEC >= 8
#define CLXENT_HAS_STREAM 1
#else
#define CLXENT_HAS_STREAM 0
#endif

/* vstorev_g(v, p): vstorev(v, 0, p) for a __global or __local p. PoCL 3.1 compiles vstore16 into
 * three stores (16 + 16 + 32 bytes, seen in perf of the row kernel's loops); a store through a
 * vector type aligned to one float is one instruction. Against vstore16, interleaved
 * (docs/PERFORMANCE.md, "Sixth round"): 0.95-0.99x the time of the plain call, 0.94-0.97x with
 * the bias gradient (two stores a vector), 0.96-0.99x with softcap, 0.93-0.99x in bfloat16. The
 * row-per-item kernels under Clang (PoCL, Oclgrind's item configuration) only: a GPU's compiler
 * keeps its own vstore, whose alignment it knows best. */
#if CLXENT_ROW_PER_ITEM && defined(__clang__)
typedef float clxent_floatv_unaligned __attribute__((ext_vector_type(CLXENT_VEC), aligned(4)));
inline void __attribute__((overloadable)) vstorev_g(floatv v, __global float *p) {
  *(__global clxent_floatv_unaligned *)p = v;
}
inline void __attribute__((overloadable)) vstorev_g(floatv v, __local float *p) {
  *(__local clxent_floatv_unaligned *)p = v;
}
#else
#define vstorev_g(v, p) vstorev((v), 0, (p))
#endif

/* The scalars in force: the host's, with the three reduction scales from the device if given
 * (device-resident hard-label calls, whose label counts the host never sees: label_stats). The
 * host's scale and z_scale then hold the upstream gradient g (1 without), which multiplies them. */
inline clxent_params call_params(clxent_params p, __global const float *dev_scales) {
  if (dev_scales) p.scale *= dev_scales[0], p.z_scale *= dev_scales[1], p.z_loss_row = dev_scales[2];
  return p;
}

#define uintv CLXENT_CAT(uint, CLXENT_VEC)
#define intv CLXENT_CAT(int, CLXENT_VEC)
#define ushortv CLXENT_CAT(ushort, CLXENT_VEC)

/* 16-bit vectors at any even address: PoCL 3.1 compiles vstoreN of ushort to one 16-bit store per
 * element, and vload_halfN/vstore_halfN to aligned moves that fault on rows starting at an odd
 * multiple of 2 bytes; a vector type whose alignment is lowered to its element's gets one
 * unaligned vector move for each (which is what vloadN means). */
typedef ushortv ushortv_unaligned __attribute__((aligned(2)));
inline ushortv load_ushortv(__global const ushort *p) { return *(__global const ushortv_unaligned *)p; }
inline void store_ushortv(ushortv v, __global ushort *p) { *(__global ushortv_unaligned *)p = v; }

/* bfloat16 is the high half of a float32: widening is a shift; narrowing rounds to nearest even,
 * and keeps a NaN a (quiet) NaN instead of letting the rounding carry turn it into infinity. */
inline float bf16_to_float(ushort b) { return as_float((uint)b << 16); }
inline ushort float_to_bf16(float f) {
  const uint u = as_uint(f);
  if (isnan(f)) return (ushort)((u >> 16) | 0x40);
  return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
inline ushortv float_to_bf16v_bits(floatv f) {
  const uintv u = CLXENT_CAT(as_uint, CLXENT_VEC)(f);
  const uintv rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16, quiet_nan = (u >> 16) | 0x40u;
  return CLXENT_CAT(convert_ushort, CLXENT_VEC)(select(rounded, quiet_nan, isnan(f)));
}
/* CLXENT_HAS_CVT_BF16: AVX-512 BF16's vcvtneps2bf16 narrows 16 values in one instruction, with the
 * same rounding (to nearest even, x + 0x7fff + lsb), the same quiet NaN (high half | 0x40) and the
 * same infinities as float_to_bf16v_bits, but a denormal input becomes a signed zero; a vector
 * holding one (vfpclassps, class 0x20, AVX-512 DQ) takes the bit operations instead, so every value
 * keeps its bits. (vfpclassps sees a denormal as zero under MXCSR.DAZ; PoCL sets DAZ only with FTZ,
 * and then no subnormal reaches a store.) The host asks for it (-DCLXENT_HOST_CVT_BF16=1; set by
 * hand on a CPU without the instruction, it faults) where the device is its own CPU and that CPU
 * has the instruction: PoCL compiles for the CPU model LLVM knows, which may lack the feature
 * (skylake-avx512 on a Zen 4), so the instruction is written as inline assembly. */
/* Clang 15 (PoCL 3.1) only: PoCL 5.0's LLVM 16 aborts compiling this inline assembly (an assertion
 * in CallBase::getArgOperand, on an AVX-512 BF16 Xeon, 2026-11-28; also with the statement split
 * in two of one output each), so newer compilers keep the bit operations until one is measured. */
#if defined(CLXENT_HOST_CVT_BF16) && CLXENT_HOST_CVT_BF16 && defined(__clang__) && defined(__AVX512F__) && \
    defined(__AVX512DQ__) && CLXENT_VEC == 16 && __clang_major__ <= 15
#define CLXENT_HAS_CVT_BF16 1
inline ushortv float_to_bf16v(floatv f) {
  ushortv r;
  ushort classes;
  int denormal;
  __asm__("vcvtneps2bf16 %[f], %[r]\n\t"
          "vfpclassps $0x20, %[f], %[k]\n\t"
          "kortestw %[k], %[k]"
          : [r] "=&v"(r), [k] "=&Yk"(classes), "=@ccnz"(denormal)
          : [f] "v"(f));
  return denormal ? float_to_bf16v_bits(f) : r;
}
/* Never launched: its presence tells the host that the kernels took the instruction (the host's
 * request passes the gates above only where this compiler allows; clxent_info.bf16_cvt reports
 * what was built, host/program.c). */
__kernel void clxent_built_with_cvt_bf16(void) {}
#else
#define CLXENT_HAS_CVT_BF16 0
inline ushortv float_to_bf16v(floatv f) { return float_to_bf16v_bits(f); }
#endif

/* Horizontal reductions of one vector. fmax ignores NaN; callers rely on a later sum to carry it. */
#if CLXENT_VEC == 16
inline float hmax(float16 v) { v.lo = fmax(v.lo, v.hi); float4 a = fmax(v.lo.lo, v.lo.hi); float2 b = fmax(a.lo, a.hi); return fmax(b.x, b.y); }
inline float hsum(float16 v) { float8 h = v.lo + v.hi; float4 a = h.lo + h.hi; float2 b = a.lo + a.hi; return b.x + b.y; }
#elif CLXENT_VEC == 8
inline float hmax(float8 v) { float4 a = fmax(v.lo, v.hi); float2 b = fmax(a.lo, a.hi); return fmax(b.x, b.y); }
inline float hsum(float8 v) { float4 a = v.lo + v.hi; float2 b = a.lo + a.hi; return b.x + b.y; }
#elif CLXENT_VEC == 4
inline float hmax(float4 v) { float2 b = fmax(v.lo, v.hi); return fmax(b.x, b.y); }
inline float hsum(float4 v) { float2 b = v.lo + v.hi; return b.x + b.y; }
#else
#error "CLXENT_VEC must be 4, 8 or 16"
#endif

/* Merges running log-sum-exp states (m, s), meaning s·e^m = Σ e^z: a state with s = 0 is empty
 * and contributes 0 (the guard keeps -inf - -inf from becoming NaN). A NaN logit leaves s = NaN,
 * possibly with m = -inf, so the guard tests s, not m: the NaN must reach the result. */
inline float2 lse_merge(float2 a, float2 b) {
  const float m = fmax(a.x, b.x);
  const float sa = a.y == 0.0f ? 0.0f : a.y * exp(a.x - m);
  const float sb = b.y == 0.0f ? 0.0f : b.y * exp(b.x - m);
  return (float2)(m, sa + sb);
}


/* Segmented forms for several rows per work-group: the group's items form segments of T
 * consecutive items (T a power of two dividing CLXENT_GROUP_SIZE), one segment per row; each item
 * gets its own segment's total. Every item of the group must call them, whatever its row. */
inline float segment_sum(float v, __local float *scratch, uint T) {
  const uint lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = T / 2; step > 0; step >>= 1) {
    if ((lid & (T - 1)) < step) scratch[lid] += scratch[lid + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = scratch[lid & ~(T - 1)];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

inline float2 segment_lse(float2 state, __local float2 *scratch, uint T) {
  const uint lid = get_local_id(0);
  scratch[lid] = state;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = T / 2; step > 0; step >>= 1) {
    if ((lid & (T - 1)) < step) scratch[lid] = lse_merge(scratch[lid], scratch[lid + step]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float2 total = scratch[lid & ~(T - 1)];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

/* An item's argmax step over its slice (the group kernels): v at j replaces the best while no NaN
 * has been seen, if it is larger or a NaN: the first max of z, or the first NaN, in the order of j. */
inline void argmax_push(float *best, uint *best_at, const float v, const ulong j) {
  if (!isnan(*best) && (v > *best || isnan(v))) *best = v, *best_at = (uint)j;
}

/* argmax over a segment: each item gives the first max of its slice (value v, index at), or its
 * first NaN (v NaN); each item gets the segment's: the smallest index among the NaNs, else among
 * the largest values (the first on ties, whatever the slices' order). scratch holds 2 uints per
 * item, the value's bits and the index, moved as integers (no value is altered on the way) and one
 * by one: Oclgrind 21.10 takes a uint2 built in place for uninitialised (clang builds it on a
 * poison vector). */
inline uint segment_argmax(float v, uint at, __local uint *scratch, uint T) {
  const uint lid = get_local_id(0);
  scratch[2 * lid] = as_uint(v);
  scratch[2 * lid + 1] = at;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = T / 2; step > 0; step >>= 1) {
    if ((lid & (T - 1)) < step) {
      const uint a = 2 * lid, b = 2 * (lid + step);
      const float av = as_float(scratch[a]), bv = as_float(scratch[b]);
      const uint ai = scratch[a + 1], bi = scratch[b + 1];
      const int take_b = isnan(bv) ? (!isnan(av) || bi < ai) : !isnan(av) && (bv > av || (bv == av && bi < ai));
      if (take_b) scratch[a] = scratch[b], scratch[a + 1] = bi;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const uint total = scratch[2 * (lid & ~(T - 1)) + 1];
  barrier(CLK_LOCAL_MEM_FENCE);
  return total;
}

/* The whole work-group as one segment. The order of additions is fixed by the tree, so the
 * result is the same bits on every run. */
inline float group_sum(float v, __local float *scratch) { return segment_sum(v, scratch, CLXENT_GROUP_SIZE); }

/* Adds one logit to a running (m, s): s·e^m = Σ e^z. A -inf logit (a mask) adds nothing. A +inf
 * one makes s NaN (its e^{z - m} is e^{inf - inf}), as in the group kernels' blocks of values,
 * the row-per-item kernels, the float64 reference and PyTorch: no softmax has a +inf logit. */
inline float2 lse_push(float2 st, float z) {
  if (z > st.x) return (float2)(z, st.y * exp(st.x - z) + (z == INFINITY ? NAN : 1.0f));
  return (float2)(st.x, st.y + (z == -INFINITY ? 0.0f : exp(z - st.x)));
}

/* float16 vectors by hand: PoCL 3.1 compiles vload_halfN/vstore_halfN to aligned vector moves
 * and faults on rows that start at an odd multiple of 2 bytes, so the vector paths move ushorts
 * (unaligned-safe) and convert with integer operations; the scalar paths use vload_half and
 * vstore_half_rte. Both are exact and round to nearest even, with no denormal arithmetic (which
 * a device may flush). */
inline floatv half_bits_to_floatv(ushortv bits) {
  const uintv h = CLXENT_CAT(convert_uint, CLXENT_VEC)(bits), e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  const floatv normal = CLXENT_CAT(as_float, CLXENT_VEC)(((h & 0x7fffu) << 13) + (112u << 23));
  const floatv subnormal = CLXENT_CAT(convert_float, CLXENT_VEC)(m) * 0x1p-24f;
  const floatv special = CLXENT_CAT(as_float, CLXENT_VEC)(0x7f800000u | (m << 13)); /* inf, NaN */
  const floatv v = select(select(normal, special, e == 31u), subnormal, e == 0u);
  return CLXENT_CAT(as_float, CLXENT_VEC)(CLXENT_CAT(as_uint, CLXENT_VEC)(v) | ((h & 0x8000u) << 16));
}
inline ushortv floatv_to_half_bits(floatv f) {
  const uintv bits = CLXENT_CAT(as_uint, CLXENT_VEC)(f), sign = (bits >> 16) & 0x8000u, a = bits & 0x7fffffffu;
  /* |f| ≥ 65536: infinity, or a quiet NaN */
  const uintv big = select((uintv)(0x7c00u), (uintv)(0x7e00u), a > 0x7f800000u);
  /* |f| < 2^-14: half subnormals; adding 0.5 puts the half's quantum 2^-24 at the float's last
   * bit, so the float adder rounds to nearest even */
  const uintv tiny = CLXENT_CAT(as_uint, CLXENT_VEC)(CLXENT_CAT(as_float, CLXENT_VEC)(a) + 0.5f) - 0x3f000000u;
  /* normal: rebias the exponent, round the 13 dropped bits to nearest even */
  const uintv normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13; /* 0xc8000000 = (15 - 127) << 23 */
  const uintv h = select(select(normal, tiny, a < (113u << 23)), big, a >= 0x47800000u);
  return CLXENT_CAT(convert_ushort, CLXENT_VEC)(h | sign);
}

/* float16 vectors: where the address is a multiple of the vector's size, the core builtins (the
 * device's conversion instructions, F16C on x86); elsewhere the integer code above, since PoCL
 * 3.1 compiles vload_halfN/vstore_halfN to aligned moves that fault on other addresses. The test is
 * a compare and a predictable branch per vector. */
#define CLXENT_HALFV_BYTES (2 * CLXENT_VEC)
inline floatv load_halfv(__global const ushort *p) {
  if (((ulong)p & (CLXENT_HALFV_BYTES - 1)) == 0) return CLXENT_CAT(vload_half, CLXENT_VEC)(0, (__global const half *)p);
  return half_bits_to_floatv(load_ushortv(p));
}
inline void store_halfv(floatv v, __global ushort *p) {
  if (((ulong)p & (CLXENT_HALFV_BYTES - 1)) == 0) CLXENT_CAT(CLXENT_CAT(vstore_half, CLXENT_VEC), _rte)(v, 0, (__global half *)p);
  else store_ushortv(floatv_to_half_bits(v), p);
}

/* τ_j for dense targets: keep = 1-ε, spread = ε/c. */
inline float soft_target(float t, __global const float *w, ulong j, float keep, float spread) {
  const float tau = keep * t + spread;
  return w ? tau * w[j] : tau;
}

inline floatv soft_target_v(floatv t, __global const float *w, ulong j, float keep, float spread) {
  const floatv tau = keep * t + spread;
  return w ? tau * vloadv(0, w + j) : tau;
}
