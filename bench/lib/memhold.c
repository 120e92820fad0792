/* The memory-capacity peer: allocates MIB MiB, touches every page, holds it SECONDS seconds.
 * Usage: memhold MIB SECONDS */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  size_t bytes = (size_t)atol(argv[1]) << 20;
  char *p = malloc(bytes);
  if (!p) return 1;
  memset(p, 1, bytes);
  sleep((unsigned)atoi(argv[2]));
  return p[bytes / 2] == 1 ? 0 : 1;
}
