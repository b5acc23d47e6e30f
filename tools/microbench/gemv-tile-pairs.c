// gemv-tile-pairs: the AVX-512 2-bit GEMV loop in the engine's layout (a 64-byte line is one 16-byte chunk of 4 rows),
// streamed cold over 512 MiB by 1 or 2 threads, each its own contiguous half. pairs 0: one tile at a time (the engine);
// 1: two adjacent tiles read side by side, sharing each activation load (two streams); 2: the same with the two tiles'
// chunks interleaved in memory (one stream); 4: four tiles interleaved. With KB, it runs as the engine runs a decode
// GEMV instead: matrices of KB kilobytes in turn, each split between the threads with a spin barrier between matrices.
// Prints GB/s of codes (docs/BENCHMARKS.md, "Tried and dropped: tile pairs").
//   gcc -O2 -pthread -o /tmp/gemv-tile-pairs tools/microbench/gemv-tile-pairs.c
//   /tmp/gemv-tile-pairs THREADS PAIRS [UNITS-PER-ROW [KB]]
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
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

// KB mode: matrix m of `mats` is W[m % (N / mat) · mat …], its second half on the worker, a spin barrier after each.
static size_t mat; static int mats; static atomic_int gen, done;
static void *worker(void *a) {
  (void)a;
  for (int m = 0; m < mats; m++) {
    while (atomic_load(&gen) == m) _mm_pause();
    sinkv += run(W + (size_t)(m % (N / mat)) * mat + mat / 2, mat / 2);
    atomic_fetch_add(&done, 1);
  }
  return 0;
}
static double split_barrier(int threads) {
  pthread_t th; if (threads == 2) pthread_create(&th, 0, worker, 0);
  double t0 = now();
  for (int m = 0; m < mats; m++) {
    unsigned char *p = W + (size_t)(m % (N / mat)) * mat;
    if (threads == 1) { sinkv += run(p, mat); continue; }
    atomic_fetch_add(&gen, 1);
    sinkv += run(p, mat / 2);
    while (atomic_load(&done) != m + 1) _mm_pause();
  }
  double gbs = (double)mats * mat / (now() - t0) / 1e9;
  if (threads == 2) pthread_join(th, 0);
  return gbs;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: gemv-tile-pairs THREADS PAIRS [UNITS-PER-ROW [KB]]\n"); return 2; }
  int threads = atoi(argv[1]); pairs = atoi(argv[2]); units = argc > 3 ? atoi(argv[3]) : 20;
  if (threads < 1 || threads > 2 || units < 1) { fprintf(stderr, "threads 1 or 2, units at least 1\n"); return 2; }
  W = aligned_alloc(2 << 20, N); madvise(W, N, MADV_HUGEPAGE); memset(W, 0x5a, N);
  for (int i = 0; i < (int)sizeof XW; i++) XW[i] = (signed char)(i * 7);
  if (argc > 4) {
    size_t quantum = (size_t)2 * 4 * units * 64; // two halves of whole groups of 4 tiles, for every PAIRS
    mat = (size_t)atoi(argv[4]) * 1024 / quantum * quantum;
    if (mat == 0 || mat > N) { fprintf(stderr, "KB must hold at least %zu bytes and at most 512 MiB\n", quantum); return 2; }
    mats = (int)(N / mat) * 3;
    printf("threads %d pairs %d units %d mat %zu KB: %.1f GB/s\n", threads, pairs, units, mat / 1024,
           split_barrier(threads));
    return 0;
  }
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
