/* SHA-256 (FIPS 180-4), for the program cache's checksums: a cache file whose binary does not hash
 * to the stored value is never handed to OpenCL.
 *
 * Every clxent_create that finds its programs in the cache hashes them: PoCL's binary of the
 * kernels is 26 MB, which this file's portable rounds take about 0.26 s over (100 MB/s), more than
 * half of `clxent demo`'s start. x86-64 CPUs with the SHA extensions (Intel since Ice Lake and
 * Goldmont, AMD since Zen) do the rounds in hardware, more than ten times faster: the blocks go
 * there when CPUID says so, checked once per process. Both paths give the same digest
 * (tests/test_sha256.c: FIPS 180-4's examples and random lengths through both). */
#include <string.h>

#include "sha256.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLXENT_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#else
#define CLXENT_SHA_NI 0
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; ++i) {
    const uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; ++i) {
    const uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    const uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

#if CLXENT_SHA_NI
/* The blocks with the SHA extensions (SHA256RNDS2 does two rounds, SHA256MSG1/MSG2 the message
 * schedule), as Intel's description of them lays out the state: two registers holding
 * (a, b, e, f) and (c, d, g, h), each word in a lane, most significant lane first. */
__attribute__((target("sha,sse4.1"))) static void blocks_sha_ni(uint32_t h[8], const unsigned char *p, size_t n) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll); /* big-endian words */
  const __m128i dcba = _mm_loadu_si128((const __m128i *)h), hgfe = _mm_loadu_si128((const __m128i *)(h + 4));
  const __m128i badc = _mm_shuffle_epi32(dcba, 0xb1), efgh = _mm_shuffle_epi32(hgfe, 0x1b);
  __m128i abef = _mm_alignr_epi8(badc, efgh, 8), cdgh = _mm_blend_epi16(efgh, badc, 0xf0);
  for (; n; --n, p += 64) {
    const __m128i abef0 = abef, cdgh0 = cdgh;
    __m128i w[4]; /* words 4t..4t+3 of the schedule, in w[t % 4] */
    for (int t = 0; t < 4; ++t) w[t] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * t)), swap);
#pragma GCC unroll 16 /* w[] in registers: 1.0-1.2 GB/s against 0.75 rolled (GCC 12 and Clang 14, the AVX-512 Xeon) */
    for (int t = 0; t < 16; ++t) {
      const __m128i wk = _mm_add_epi32(w[t & 3], _mm_loadu_si128((const __m128i *)(K + 4 * t)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0e));
      if (t < 12) /* words 4t+16..4t+19 from 4t..4t+15, in place of 4t..4t+3 */
        w[t & 3] = _mm_sha256msg2_epu32(
            _mm_add_epi32(_mm_sha256msg1_epu32(w[t & 3], w[(t + 1) & 3]), _mm_alignr_epi8(w[(t + 3) & 3], w[(t + 2) & 3], 4)),
            w[(t + 3) & 3]);
    }
    abef = _mm_add_epi32(abef, abef0), cdgh = _mm_add_epi32(cdgh, cdgh0);
  }
  const __m128i feba = _mm_shuffle_epi32(abef, 0x1b), dchg = _mm_shuffle_epi32(cdgh, 0xb1);
  _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(feba, dchg, 0xf0));
  _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}

/* CPUID: SHA (leaf 7, EBX bit 29), SSSE3 and SSE4.1 (leaf 1, ECX bits 9 and 19). Asked once: in a
 * virtual machine each CPUID is a trip to the hypervisor. 0: not asked yet, 1: no, 2: yes. */
static int have_sha_ni(void) {
  static atomic_int known = 0;
  int k = atomic_load_explicit(&known, memory_order_relaxed);
  if (!k) {
    unsigned a, b, c, d;
    const int sse = __get_cpuid(1, &a, &b, &c, &d) && (c >> 9 & 1) && (c >> 19 & 1);
    k = sse && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1) ? 2 : 1;
    atomic_store_explicit(&known, k, memory_order_relaxed);
  }
  return k == 2;
}
#endif

void clxent_sha256_ex(const void *data, size_t size, unsigned char digest[32], int portable) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const unsigned char *p = data;
  size_t left = size;
#if CLXENT_SHA_NI
  if (!portable && have_sha_ni()) {
    blocks_sha_ni(h, p, left / 64);
    p += left / 64 * 64, left %= 64;
  }
#else
  (void)portable;
#endif
  for (; left >= 64; left -= 64, p += 64) block(h, p);
  unsigned char tail[128] = {0};
  memcpy(tail, p, left);
  tail[left] = 0x80;
  const size_t tail_size = left < 56 ? 64 : 128;
  const uint64_t bits = (uint64_t)size * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = (unsigned char)(bits >> (8 * i));
  block(h, tail);
  if (tail_size == 128) block(h, tail + 64);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) digest[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

void clxent_sha256(const void *data, size_t size, unsigned char digest[32]) { clxent_sha256_ex(data, size, digest, 0); }
