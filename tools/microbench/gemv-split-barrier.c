// gemv-split-barrier: the same loop as gemv-tile-pairs.c, run as the engine runs a decode GEMV: matrices of KB
// kilobytes in turn over 512 MiB, each split in two halves (the caller and one worker) with a spin barrier between
// matrices. Prints GB/s of codes.
//   gcc -O2 -pthread -o /tmp/gemv-split-barrier tools/microbench/gemv-split-barrier.c
//   /tmp/gemv-split-barrier THREADS PAIRS KB        (PAIRS 0: one tile at a time, 1: interleaved pairs)
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#define T __attribute__((target("avx512f,avx512bw,gfni")))
static unsigned char *W; static size_t N = 512ul << 20, MAT;
static __attribute__((aligned(64))) signed char XW[56 * 256];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define A1 _mm512_set1_epi64(0x0408000000000000LL)
#define A2 _mm512_set1_epi64(0x1020000000000000LL)
#define A3 _mm512_set1_epi64(0x4080000000000000LL)
static int pairs, units = 20, nthreads;
static volatile long sinkv;
#define UNIT(v, s0, s1, x0, x1, x2, x3) \
  s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(_mm512_and_si512(v, m3), x0)); \
  s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A1, 0), x1)); \
  s0 = _mm512_add_epi16(s0, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A2, 0), x2)); \
  s1 = _mm512_add_epi16(s1, _mm512_maddubs_epi16(_mm512_gf2p8affine_epi64_epi8(v, A3, 0), x3));
T static long run(unsigned char *p, size_t bytes) {
  const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi16(1);
  __m512i tot = _mm512_setzero_si512();
  unsigned char *end = p + bytes; size_t tile = units * 64;
  if (!pairs) {
    for (; p + tile <= end; p += tile) {
      const signed char *x = XW; __m512i s0 = _mm512_setzero_si512(), s1 = s0;
      for (int u = 0; u < units; u++, x += 256) { __m512i v = _mm512_load_si512(p + 64 * u);
        UNIT(v, s0, s1, _mm512_load_si512(x), _mm512_load_si512(x + 64), _mm512_load_si512(x + 128), _mm512_load_si512(x + 192)) }
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
    }
  } else {
    for (; p + 2 * tile <= end; p += 2 * tile) {
      const signed char *x = XW; __m512i s0 = _mm512_setzero_si512(), s1 = s0, t0 = s0, t1 = s0;
      for (int u = 0; u < units; u++, x += 256) {
        __m512i x0 = _mm512_load_si512(x), x1 = _mm512_load_si512(x + 64), x2 = _mm512_load_si512(x + 128), x3 = _mm512_load_si512(x + 192);
        __m512i v = _mm512_load_si512(p + 128 * u), w = _mm512_load_si512(p + 128 * u + 64);
        UNIT(v, s0, s1, x0, x1, x2, x3) UNIT(w, t0, t1, x0, x1, x2, x3) }
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(s0, one), _mm512_madd_epi16(s1, one)));
      tot = _mm512_add_epi32(tot, _mm512_add_epi32(_mm512_madd_epi16(t0, one), _mm512_madd_epi16(t1, one)));
    }
  }
  return _mm512_reduce_add_epi32(tot);
}
static atomic_int gen, done; static int mats;
static void *worker(void *a) { int seen = 0; for (int m = 0; m < mats; m++) { while (atomic_load(&gen) == seen) _mm_pause(); seen++;
  size_t off = (size_t)(m % (N / MAT)) * MAT; sinkv += run(W + off + MAT / 2, MAT / 2); atomic_fetch_add(&done, 1); } return 0; }
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: gemv-split-barrier THREADS PAIRS KB\n"); return 2; }
  nthreads = atoi(argv[1]); pairs = atoi(argv[2]); MAT = (size_t)atoi(argv[3]) * 1024;
  MAT = MAT / (2 * units * 64 * 2) * (2 * units * 64 * 2);
  W = aligned_alloc(2 << 20, N); madvise(W, N, MADV_HUGEPAGE); memset(W, 0x5a, N);
  mats = (int)(N / MAT) * 3;
  pthread_t th; if (nthreads == 2) pthread_create(&th, 0, worker, 0);
  double t0 = now();
  for (int m = 0; m < mats; m++) {
    size_t off = (size_t)(m % (N / MAT)) * MAT;
    if (nthreads == 2) { atomic_fetch_add(&gen, 1); sinkv += run(W + off, MAT / 2); while (atomic_load(&done) != m + 1) _mm_pause(); }
    else sinkv += run(W + off, MAT);
  }
  double gbs = (double)mats * MAT / (now() - t0) / 1e9;
  if (nthreads == 2) pthread_join(th, 0);
  printf("threads %d pairs %d mat %zu KB: %.1f GB/s\n", nthreads, pairs, MAT / 1024, gbs);
}
