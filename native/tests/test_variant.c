/* Which build variant of libparetoq the loader picked, against what this CPU offers: on x86-64 Linux the AVX-512 kernels
 * (x86-64-v4 build in glibc-hwcaps/) when /proc/cpuinfo has AVX-512 F, BW, CD, DQ and VL, the x86-64-v3 build otherwise.
 * Usage: test_variant auto | x86-64-v3 (the latter when the environment hides AVX-512 from the loader, e.g.
 * GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paretoq.h"

static int cpu_has_avx512(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) return 0;
    static char line[1 << 14];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "flags", 5) != 0) continue;
        const char *need[] = {" avx512f ", " avx512bw ", " avx512cd ", " avx512dq ", " avx512vl "};
        char *end = line + strlen(line);
        if (end > line && end[-1] == '\n') end[-1] = ' '; /* so the last flag also ends in a space */
        found = 1;
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) found &= strstr(line, need[i]) != NULL;
        break;
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    const char *version = pq_version_string();
    int expect_avx512 = argc > 1 && strcmp(argv[1], "auto") == 0 && cpu_has_avx512();
    int got_avx512 = strstr(version, "kernels avx512") != NULL;
    printf("%s; this CPU %s AVX-512\n", version, cpu_has_avx512() ? "has" : "lacks");
    if (got_avx512 != expect_avx512) {
        fprintf(stderr, "expected the %s build of libparetoq, got '%s'\n", expect_avx512 ? "x86-64-v4" : "x86-64-v3",
                version);
        return 1;
    }
    return 0;
}
