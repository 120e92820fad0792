/* A one-thread STREAM-style copy (c[i] = a[i]) over arrays far larger than the caches: the
 * memory-bandwidth anchor aefm-stress membw is compared with. Counts 16 bytes per element (one
 * read, one write), as STREAM does. Usage: stream_copy [-r REPS] [-n ELEMENTS]
 * Prints: copy best_GBps=X avg_GBps=Y */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  long reps = 10, n = 1L << 26; /* 2 x 512 MiB */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-r")) reps = atol(argv[i + 1]);
    if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
  }
  double *a = malloc(n * sizeof *a), *c = malloc(n * sizeof *c);
  if (!a || !c) { fprintf(stderr, "stream_copy: out of memory\n"); return 1; }
  for (long i = 0; i < n; i++) { a[i] = 1.0; c[i] = 0.0; }
  double best = 0, sum = 0;
  for (long r = 0; r < reps; r++) {
    double t0 = now();
    for (long i = 0; i < n; i++) c[i] = a[i];
    double gbps = 16.0 * n / (now() - t0) / 1e9;
    if (gbps > best) best = gbps;
    sum += gbps;
  }
  printf("copy best_GBps=%.3f avg_GBps=%.3f check=%.0f\n", best, sum / reps, c[n / 2]);
  return 0;
}
