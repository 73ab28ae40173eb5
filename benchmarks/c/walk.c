/* Baseline for bench_speed.py: a plain C x86-64 4-level page walk over a raw image.
 *
 * Usage: walk IMAGE CR3 ADDRS REPEAT
 * Reads little-endian u64 virtual addresses from ADDRS, walks each through the tables at CR3
 * (Intel SDM vol. 3A 4.5: PML4 -> PDPT -> PD -> PT, PS bit 7 for 1 GiB and 2 MiB pages,
 * P bit 0, address bits 51:12), REPEAT times, and prints the median seconds of one pass, the
 * number of faults and a checksum of the physical addresses (to compare with pagewalk's).
 * It does the least a correct walker can: no reserved-bit checks, no permissions.
 *
 * Usage: walk IMAGE CR3 ADDRS - OUT
 * The whole-process baseline of `pagewalk translate --from-file ADDRS --to-file OUT`: one pass
 * that reads ADDRS with read(2) in chunks of CHUNK addresses, walks them and writes each PA
 * (all-ones for a fault) to OUT with write(2). The caller times the whole process.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ADDR_MASK 0x000FFFFFFFFFF000ULL
#define CHUNK (1 << 16)

static const uint8_t *image;
static uint64_t image_size;

static inline int read_entry(uint64_t pa, uint64_t *out) {
    if (pa + 8 > image_size) return 0;
    memcpy(out, image + pa, 8);
    return 1;
}

static void walk_all(uint64_t cr3, const uint64_t *va, uint64_t *pa, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t v = va[i], table = cr3 & ADDR_MASK, e = 0, result = ~0ULL;
        for (int shift = 39; shift >= 12; shift -= 9) {
            if (!read_entry(table + ((v >> shift) & 511) * 8, &e) || !(e & 1)) break;
            if (shift == 12 || (shift <= 30 && (e & 0x80))) {
                uint64_t size = 1ULL << shift;
                result = (e & ADDR_MASK & ~(size - 1)) | (v & (size - 1));
                break;
            }
            table = e & ADDR_MASK;
        }
        pa[i] = result;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void *map_file(const char *path, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(path); exit(2); }
    *size = (uint64_t)st.st_size;
    void *p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    close(fd);
    return p;
}

/* Stream ADDRS to OUT a chunk at a time, as a plain C translate-a-file tool would. */
static int stream(uint64_t cr3, const char *src, const char *dst) {
    static uint64_t va[CHUNK], pa[CHUNK];
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (in < 0 || out < 0) { perror("open"); return 2; }
    ssize_t got;
    while ((got = read(in, va, sizeof va)) > 0) { /* a regular file: whole words */
        size_t n = (size_t)got / 8;
        walk_all(cr3, va, pa, n);
        if (write(out, pa, n * 8) != (ssize_t)(n * 8)) { perror("write"); return 2; }
    }
    if (got < 0 || close(out) < 0) { perror(dst); return 2; }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && !(argc == 6 && !strcmp(argv[4], "-"))) {
        fprintf(stderr, "usage: walk IMAGE CR3 ADDRS REPEAT | walk IMAGE CR3 ADDRS - OUT\n");
        return 2;
    }
    image = map_file(argv[1], &image_size);
    uint64_t cr3 = strtoull(argv[2], NULL, 0), bytes;
    if (argc == 6) return stream(cr3, argv[3], argv[5]);
    const uint64_t *va = map_file(argv[3], &bytes);
    size_t n = bytes / 8;
    int repeat = atoi(argv[4]);
    uint64_t *pa = malloc(n * 8);
    double *times = malloc(sizeof(double) * repeat);
    walk_all(cr3, va, pa, n); /* warm: fault the image pages in, as pagewalk's warm-up does */
    for (int r = 0; r < repeat; r++) {
        double t = now();
        walk_all(cr3, va, pa, n);
        times[r] = now() - t;
    }
    qsort(times, repeat, sizeof(double), cmp);
    uint64_t sum = 0, faults = 0;
    for (size_t i = 0; i < n; i++) {
        if (pa[i] == ~0ULL) faults++; else sum += pa[i];
    }
    printf("%.9f %llu %llu\n", times[repeat / 2], (unsigned long long)faults,
           (unsigned long long)sum);
    return 0;
}
