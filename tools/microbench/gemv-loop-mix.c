// gemv-loop-mix: the instruction mixes behind the AVX-512 2-bit GEMV, timed in L1 on one core, to tell which
// instructions bound it on the machine of the day (docs/BENCHMARKS.md, issue 35). Layout as the engine's: a 64-byte
// line is one 16-byte chunk of 4 rows, four 2-bit fields per byte, 16 tiles of 20 lines (the q/o shape's rows).
//   gcc -O2 -o /tmp/gemv-loop-mix tools/microbench/gemv-loop-mix.c && /tmp/gemv-loop-mix
// Variants: activations broadcast from memory per 16-byte block (vbroadcasti32x4) or read pre-broadcast (the
// engine's QuantizedActivations.Wide); fields by GFNI or by shift and mask; vpmaddubsw + vpaddw (what .NET 10 can
// express) or vpdpbusd zmm (AVX512-VNNI, which .NET 10 cannot). Each prints GB/s of codes.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define TILES 16
#define UNITS 20
#define T __attribute__((target("avx512f,avx512bw,gfni,avx512vnni"), noinline))
static __attribute__((aligned(64))) unsigned char W[TILES * UNITS * 64];
static __attribute__((aligned(64))) signed char X[UNITS * 64], XW[UNITS * 256];
static volatile int sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define A1 _mm512_set1_epi64(0x0408000000000000LL)
#define A2 _mm512_set1_epi64(0x1020000000000000LL)
#define A3 _mm512_set1_epi64(0x4080000000000000LL)
// wide: 1 reads pre-broadcast activations, 0 broadcasts from memory; gfni: 1 fields by affine transform, 0 by shifts
#define X_AT(x, k, wide) ((wide) ? _mm512_load_si512((x) + 64 * (k)) : _mm512_broadcast_i32x4(_mm_load_si128((const void *)((x) + 16 * (k)))))
#define FIELD(v, k, gfni) ((k) == 0 ? _mm512_and_si512(v, m3) : (gfni) ? _mm512_gf2p8affine_epi64_epi8(v, (k) == 1 ? A1 : (k) == 2 ? A2 : A3, 0) : _mm512_and_si512(_mm512_srli_epi16(v, 2 * (k)), m3))
static inline __attribute__((always_inline, target("avx512f,avx512bw,gfni"))) void maddubs_kernel(int rep, int wide, int gfni) {
  const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi16(1);
  for (int r = 0; r < rep; r++)
    for (int t = 0; t < TILES; t++) {
      __m512i acc = _mm512_setzero_si512();
      const unsigned char *p = W + t * UNITS * 64;
      const signed char *x = wide ? XW : X;
      for (int u0 = 0; u0 < UNITS; u0 += 10) {
        __m512i s0 = _mm512_setzero_si512(), s1 = s0;
        for (int u = u0; u < u0 + 10; u++, p += 64, x += wide ? 256 : 64) {
          __m512i v = _mm512_load_si512(p);
          s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(FIELD(v, 0, gfni), X_AT(x, 0, wide)));
          s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(FIELD(v, 1, gfni), X_AT(x, 1, wide)));
          s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(FIELD(v, 2, gfni), X_AT(x, 2, wide)));
          s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(FIELD(v, 3, gfni), X_AT(x, 3, wide)));
        }
        acc = _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
      }
      sink += _mm512_reduce_add_epi32(acc);
    }
}
T void broadcast_gfni(int rep) { maddubs_kernel(rep, 0, 1); }
T void wide_gfni(int rep) { maddubs_kernel(rep, 1, 1); }
T void wide_shifts(int rep) { maddubs_kernel(rep, 1, 0); }
T void wide_gfni_vnni512(int rep) {
  const __m512i m3 = _mm512_set1_epi8(3);
  for (int r = 0; r < rep; r++)
    for (int t = 0; t < TILES; t++) {
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
      const unsigned char *p = W + t * UNITS * 64;
      const signed char *x = XW;
      for (int u = 0; u < UNITS; u++, p += 64, x += 256) {
        __m512i v = _mm512_load_si512(p);
        a0 = _mm512_dpbusd_epi32(a0, FIELD(v, 0, 1), X_AT(x, 0, 1));
        a1 = _mm512_dpbusd_epi32(a1, FIELD(v, 1, 1), X_AT(x, 1, 1));
        a2 = _mm512_dpbusd_epi32(a2, FIELD(v, 2, 1), X_AT(x, 2, 1));
        a3 = _mm512_dpbusd_epi32(a3, FIELD(v, 3, 1), X_AT(x, 3, 1));
      }
      sink += _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
    }
}
int main(void) {
  if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("gfni") || !__builtin_cpu_supports("avx512vnni")) {
    puts("needs AVX-512BW, GFNI and AVX512-VNNI");
    return 0;
  }
  for (size_t i = 0; i < sizeof W; i++) W[i] = (unsigned char)rand();
  for (size_t i = 0; i < sizeof X; i++) X[i] = (signed char)(rand() % 255 - 127);
  for (int b = 0; b < UNITS * 4; b++)
    for (int c = 0; c < 4; c++)
      for (int i = 0; i < 16; i++) XW[b * 64 + c * 16 + i] = X[b * 16 + i];
  struct { const char *name; void (*run)(int); } ks[] = {
    {"broadcast x, gfni, maddubs (before)", broadcast_gfni}, {"wide x, gfni, maddubs (now)", wide_gfni},
    {"wide x, shifts, maddubs", wide_shifts}, {"wide x, gfni, vpdpbusd zmm", wide_gfni_vnni512}};
  for (int round = 0; round < 2; round++)
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
      int rep = 20000;
      ks[k].run(10);
      double t0 = now();
      ks[k].run(rep);
      printf("%-38s %5.1f GB/s\n", ks[k].name, (double)rep * sizeof W / (now() - t0) / 1e9);
    }
  return 0;
}
