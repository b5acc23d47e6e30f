/* The x86-64 front of paretoq-run, paretoq-bench and paretoq-convert (compiled once per program with
 * -DPROGRAM='"name"'): it runs DIR/LEVEL/PROGRAM with the same arguments and environment, where DIR holds this launcher
 * and LEVEL is the best instruction-set level this CPU has among the built variants.
 *
 * NativeAOT compiles each program for one fixed level: AVX-512 code is unreachable from an x86-64-v3 build, and an
 * x86-64-v4 build refuses to start without AVX-512. So tools/publish-native.sh builds both and this picks one, with
 * the same test glibc's loader applies to glibc-hwcaps/x86-64-v4/libparetoq.so (CPUID and the OS's saved vector
 * state, through libgcc). PARETOQ_ISA=x86-64-v3 or x86-64-v4 asks for a level instead. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PROGRAM
#error "compile with -DPROGRAM='\"paretoq-run\"' (the program this launcher runs)"
#endif

static int cpu_has(const char *level) {
  __builtin_cpu_init();
  if (strcmp(level, "x86-64-v4") == 0) return __builtin_cpu_supports("x86-64-v4");
  if (strcmp(level, "x86-64-v3") == 0) return __builtin_cpu_supports("x86-64-v3");
  return 0;
}

int main(int argc, char **argv) {
  (void)argc;
  const char *level = getenv("PARETOQ_ISA");
  if (level != NULL && *level != '\0') {
    if (strcmp(level, "x86-64-v3") != 0 && strcmp(level, "x86-64-v4") != 0) {
      fprintf(stderr, "%s: PARETOQ_ISA='%s' names no built variant (x86-64-v3, x86-64-v4)\n", PROGRAM, level);
      return 2;
    }
    if (!cpu_has(level)) {
      fprintf(stderr, "%s: PARETOQ_ISA=%s, but this CPU lacks that instruction-set level\n", PROGRAM, level);
      return 2;
    }
  } else if (cpu_has("x86-64-v4")) {
    level = "x86-64-v4";
  } else if (cpu_has("x86-64-v3")) {
    level = "x86-64-v3";
  } else {
    fprintf(stderr, "%s: this CPU lacks AVX2, FMA and BMI2 (x86-64-v3), the oldest level this build runs on\n",
            PROGRAM);
    return 1;
  }

  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "%s: cannot find this launcher's own path: %s\n", PROGRAM, strerror(errno));
    return 1;
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash != NULL) *slash = '\0';

  char target[PATH_MAX];
  if (snprintf(target, sizeof target, "%s/%s/%s", self, level, PROGRAM) >= (int)sizeof target) {
    fprintf(stderr, "%s: the path of the %s variant is too long\n", PROGRAM, level);
    return 1;
  }
  execv(target, argv);
  fprintf(stderr, "%s: cannot run the %s variant %s: %s\n", PROGRAM, level, target, strerror(errno));
  return 1;
}
