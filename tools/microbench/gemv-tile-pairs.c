// gemv-tile-pairs: the AVX-512 2-bit GEMV loop in the engine's layout (a 64-byte line is one 16-byte chunk of 4 rows),
// streamed cold over 512 MiB by 1 or 2 threads, each its own contiguous half. pairs 0: one tile at a time (the engine);
// 1: two adjacent tiles read side by side, sharing each activation load (two streams); 2: the same with the two tiles'
// chunks interleaved in memory (one stream); 4: four tiles interleaved. Prints GB/s of codes (docs/BENCHMARKS.md,
// "Tried and dropped: tile pairs").
//   gcc -O2 -pthread -o /tmp/gemv-tile-pairs tools/microbench/gemv-tile-pairs.c
//   /tmp/gemv-tile-pairs THREADS PAIRS [UNITS-PER-ROW]
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#define T __attribute__((target("avx512f,avx512bw,gfni,avx512vnni")))
static unsigned char *W; static size_t N = 512ul << 20;
static __attribute__((aligned(64))) signed char XW[56 * 256];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define A1 _mm512_set1_epi64(0x0408000000000000LL)
#define A2 _mm512_set1_epi64(0x1020000000000000LL)
#define A3 _mm512_set1_epi64(0x4080000000000000LL)
static int pairs, units = 20;
static volatile long sinkv;
#define UNIT(v, s0, s1, x0, x1, x2, x3) \
  s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(_mm512_and_si512(v, m3), x0)); \
  s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A1, 0), x1)); \
  s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A2, 0), x2)); \
  s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A3, 0), x3));
T static long run(unsigned char *p, size_t bytes) {
  const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi16(1);
  __m512i tot = _mm512_setzero_si512();
  unsigned char *end = p + bytes;
  size_t tile = units * 64;
  if (!pairs) {
    for (; p + tile <= end; p += tile) {
      const signed char *x = XW; __m512i s0 = _mm512_setzero_si512(), s1 = s0;
      for (int u = 0; u < units; u++, x += 256) { __m512i v = _mm512_load_si512(p + 64 * u);
        UNIT(v, s0, s1, _mm512_load_si512(x), _mm512_load_si512(x + 64), _mm512_load_si512(x + 128), _mm512_load_si512(x + 192)) }
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
    }
  } else if (pairs == 4) {
    for (; p + 4 * tile <= end; p += 4 * tile) {
      const signed char *x = XW; __m512i s0 = _mm512_setzero_si512(), s1 = s0, t0 = s0, t1 = s0, r0 = s0, r1 = s0, q0 = s0, q1 = s0;
      for (int u = 0; u < units; u++, x += 256) {
        __m512i x0 = _mm512_load_si512(x), x1 = _mm512_load_si512(x + 64), x2 = _mm512_load_si512(x + 128), x3 = _mm512_load_si512(x + 192);
        __m512i v = _mm512_load_si512(p + 256 * u), w = _mm512_load_si512(p + 256 * u + 64), y = _mm512_load_si512(p + 256 * u + 128), z = _mm512_load_si512(p + 256 * u + 192);
        UNIT(v, s0, s1, x0, x1, x2, x3) UNIT(w, t0, t1, x0, x1, x2, x3) UNIT(y, r0, r1, x0, x1, x2, x3) UNIT(z, q0, q1, x0, x1, x2, x3) }
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(t0, one), _mm512_madd_epi16(t1, one)));
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(r0, one), _mm512_madd_epi16(r1, one)));
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(q0, one), _mm512_madd_epi16(q1, one)));
    }
  } else {
    for (; p + 2 * tile <= end; p += 2 * tile) {
      const signed char *x = XW; __m512i s0 = _mm512_setzero_si512(), s1 = s0, t0 = s0, t1 = s0;
      for (int u = 0; u < units; u++, x += 256) {
        __m512i x0 = _mm512_load_si512(x), x1 = _mm512_load_si512(x + 64), x2 = _mm512_load_si512(x + 128), x3 = _mm512_load_si512(x + 192);
        __m512i v = pairs == 2 ? _mm512_load_si512(p + 128 * u) : _mm512_load_si512(p + 64 * u), w = pairs == 2 ? _mm512_load_si512(p + 128 * u + 64) : _mm512_load_si512(p + tile + 64 * u);
        UNIT(v, s0, s1, x0, x1, x2, x3) UNIT(w, t0, t1, x0, x1, x2, x3) }
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(t0, one), _mm512_madd_epi16(t1, one)));
    }
  }
  return _mm512_reduce_add_epi32(tot);
}
struct arg { unsigned char *p; size_t n; };
static void *thr(void *a) { struct arg *g = a; sinkv += run(g->p, g->n); return 0; }
int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: gemv-tile-pairs THREADS PAIRS [UNITS-PER-ROW]\n"); return 2; }
  int threads = atoi(argv[1]); pairs = atoi(argv[2]); units = argc > 3 ? atoi(argv[3]) : 20;
  if (threads < 1 || threads > 2 || units < 1) { fprintf(stderr, "threads 1 or 2, units at least 1\n"); return 2; }
  W = aligned_alloc(2 << 20, N); madvise(W, N, MADV_HUGEPAGE); memset(W, 0x5a, N);
  for (int i = 0; i < (int)sizeof XW; i++) XW[i] = (signed char)(i * 7);
  double best = 0;
  for (int rep = 0; rep < 7; rep++) {
    double t0 = now();
    pthread_t th[2]; struct arg a[2];
    for (int t = 0; t < threads; t++) { a[t].p = W + N / threads * t; a[t].n = N / threads; pthread_create(&th[t], 0, thr, &a[t]); }
    for (int t = 0; t < threads; t++) pthread_join(th[t], 0);
    double gbs = N / (now() - t0) / 1e9; if (gbs > best) best = gbs;
  }
  printf("threads %d pairs %d units %d: %.1f GB/s\n", threads, pairs, units, best);
}
