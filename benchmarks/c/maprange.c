/* Baseline for bench_speed.py: map GIB GiB of 4 KiB pages with x86-64 4-level tables in C.
 *
 * Usage: maprange GIB REPEAT. Each pass takes fresh zeroed memory for the tables (an anonymous
 * mapping, as pagewalk's simulated RAM is), bump-allocates table frames, and writes every PTE,
 * PDE, PDPTE and PML4E (Intel SDM vol. 3A 4.5: P|RW, address bits 51:12). Prints the median
 * seconds of one pass and the number of table frames.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: maprange GIB REPEAT\n"); return 2; }
    uint64_t gib = strtoull(argv[1], NULL, 0), pages = gib << 18;
    int repeat = atoi(argv[2]);
    uint64_t frames_max = pages / 512 + pages / (512 * 512) + 8;
    double *times = malloc(sizeof(double) * repeat);
    uint64_t used = 0;
    for (int r = 0; r < repeat; r++) {
        double t = now();
        uint64_t *mem = mmap(NULL, frames_max * 4096, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) { perror("mmap"); return 2; }
        uint64_t next = 1; /* frame 0 is the PML4 */
        const uint64_t va0 = 0x100000000000ULL, flags = 3;
        uint64_t *pdpt = NULL, *pd = NULL, *pt = NULL;
        for (uint64_t p = 0; p < pages; p++) {
            uint64_t va = va0 + (p << 12);
            if (!pt || ((va >> 12) & 511) == 0) { /* a new PT every 2 MiB ... */
                if (!pd || ((va >> 21) & 511) == 0) { /* ... a new PD every 1 GiB ... */
                    if (!pdpt || ((va >> 30) & 511) == 0) { /* ... a PDPT every 512 GiB */
                        pdpt = mem + 512 * next;
                        mem[(va >> 39) & 511] = (next++ << 12) | flags;
                    }
                    pd = mem + 512 * next;
                    pdpt[(va >> 30) & 511] = (next++ << 12) | flags;
                }
                pt = mem + 512 * next;
                pd[(va >> 21) & 511] = (next++ << 12) | flags;
            }
            pt[(va >> 12) & 511] = (p << 12) | flags;
        }
        times[r] = now() - t;
        used = next;
        munmap(mem, frames_max * 4096);
    }
    qsort(times, repeat, sizeof(double), cmp);
    printf("%.9f %llu\n", times[repeat / 2], (unsigned long long)used);
    return 0;
}
