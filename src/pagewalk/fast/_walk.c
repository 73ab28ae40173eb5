/* The compiled batch walker: one pass over an array of virtual addresses, every level in C.
 *
 * It is the loop of pagewalk.batch (Intel SDM vol. 3A 4.3-4.5, Arm ARM D8.2-D8.3, RISC-V
 * privileged spec "Virtual Address Translation Process") with nothing architectural in it:
 * the mode arrives as data (index shift and mask per level, the rule that tells a leaf from a
 * table, where the address bits are), and the meaning of an entry comes from a per-level table
 * of entry *shapes* (the raw value with its address bits cleared) that Python fills with the
 * scalar codec's verdict. An entry whose shape is not in the table yet stops that address's
 * walk and is reported as a miss; Python decodes the new shapes and walks those addresses
 * again. So the compiled loop cannot disagree with the scalar reference on what an entry means.
 *
 * Plain C with no Python headers: it is loaded with ctypes.
 */
#include <stdint.h>
#include <string.h>

#define PW_MAX_LEVELS 6
#define PW_MAX_SEGS 64

enum { LEAF_NEVER = 0, LEAF_ALWAYS = 1, LEAF_IF_ANY = 2, LEAF_IF_NONE = 3 };

typedef struct {
    uint64_t index_mask;
    uint64_t leaf_bits;       /* bits the leaf rule tests */
    uint64_t leaf_size;       /* bytes a leaf here maps */
    uint64_t shape_mask[2];   /* [table, leaf]: the bits outside the address field */
    uint64_t amask[2][2];     /* [table, leaf][group]: address bits of each group */
    int32_t ashift[2][2];     /* [table, leaf][group]: left shift (negative: right) */
    const uint64_t *keys;     /* shape hash table: keys ... */
    const uint8_t *vals;      /* ... and 0 (empty) or 0x80 | code << 1 | leaf */
    uint64_t hmask;           /* capacity - 1 */
    int32_t hshift;           /* 64 - log2(capacity) */
    int32_t shift;
    int32_t leaf_rule;
    int32_t number;           /* the architecture's level number, for faults */
} pw_level;

typedef struct {
    uint64_t lo, hi;          /* inclusive VA range of the half (after the TBI probe) */
    uint64_t root;
    int32_t split55;          /* the half also needs VA bit 55 == root_index (AArch64) */
    int32_t tbi;              /* top byte ignored: probe with bits 63:56 forced */
    int32_t root_index;
    int32_t early_code;       /* nonzero: every walk in this half faults at once (level 0) */
    int32_t nlevels;
    int32_t pad;
    pw_level levels[PW_MAX_LEVELS];
} pw_half;

typedef struct {
    const uint8_t *buf;       /* the memory, file offsets */
    uint64_t seg_start[PW_MAX_SEGS];
    uint64_t seg_end[PW_MAX_SEGS];
    int64_t seg_delta[PW_MAX_SEGS]; /* file offset minus PA */
    int32_t nseg;
    int32_t esize;            /* 4 or 8 */
    int32_t nhalves;
    int32_t nc_code, nc_level;  /* a VA no half serves */
    int32_t np_code;            /* an entry with bit 0 clear */
    int32_t bad_code;           /* an entry outside RAM */
    int32_t pad;
    pw_half halves[2];
} pw_walker;

static inline int64_t seg_offset(const pw_walker *w, uint64_t pa, uint64_t n) {
    if (w->nseg == 1) {
        if (pa >= w->seg_start[0] && pa + n <= w->seg_end[0] && pa + n > pa)
            return (int64_t)pa + w->seg_delta[0];
        return -1;
    }
    int32_t lo = 0, hi = w->nseg - 1, found = -1;
    while (lo <= hi) { /* the last segment starting at or below pa */
        int32_t mid = (lo + hi) >> 1;
        if (w->seg_start[mid] <= pa) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (found < 0 || pa + n > w->seg_end[found] || pa + n <= pa) return -1;
    return (int64_t)pa + w->seg_delta[found];
}

static inline uint64_t extract(const pw_level *lv, int leaf, uint64_t raw) {
    uint64_t out = 0;
    for (int g = 0; g < 2; g++) {
        uint64_t bits = raw & lv->amask[leaf][g];
        int32_t s = lv->ashift[leaf][g];
        out |= s >= 0 ? bits << s : bits >> -s;
    }
    return out;
}

static inline int lookup(const pw_level *lv, uint64_t key) {
    uint64_t h = (key * 0x9E3779B97F4A7C15ULL) >> lv->hshift;
    for (;;) {
        uint8_t v = lv->vals[h];
        if (!v) return -1;
        if (lv->keys[h] == key) return v;
        h = (h + 1) & lv->hmask;
    }
}

/* One level of one walk, the general way: any entry size, any segments, any shape.
 * Returns 1 when the walk is over (translated, faulted or missed), 0 to go down a level. */
static inline __attribute__((always_inline)) int step(const int simple,
                       const pw_walker *restrict w, const pw_level *lv, int32_t where,
                       uint64_t v, uint64_t *table, int64_t i, uint64_t *restrict pa,
                       uint64_t *restrict psize, int8_t *restrict fault,
                       int8_t *restrict flevel, int64_t *misses, int64_t *restrict miss_idx,
                       int32_t *restrict miss_where, uint64_t *restrict miss_raw,
                       uint64_t *memo) {
    const uint64_t t = *table;
    /* simple: 8-byte entries and one segment, the common case, with constants the compiler
     * can fold */
    const uint64_t esize = simple ? 8 : (uint64_t)w->esize;
    uint64_t epa = t + ((v >> lv->shift) & lv->index_mask) * esize;
    int64_t off;
    if (simple)
        off = (epa >= w->seg_start[0] && epa < w->seg_end[0] - 7 && epa >= t)
                  ? (int64_t)epa + w->seg_delta[0] : -1;
    else
        off = epa >= t ? seg_offset(w, epa, esize) : -1;
    if (off < 0) {
        fault[i] = (int8_t)w->bad_code;
        flevel[i] = (int8_t)lv->number;
        return 1;
    }
    uint64_t raw;
    if (esize == 8) {
        memcpy(&raw, w->buf + off, 8);
    } else {
        uint32_t r32;
        memcpy(&r32, w->buf + off, 4);
        raw = r32;
    }
    if (!(raw & 1)) {
        fault[i] = (int8_t)w->np_code;
        flevel[i] = (int8_t)lv->number;
        return 1;
    }
    if ((raw & lv->shape_mask[0]) == memo[0]) { /* the table shape seen last: no fault */
        *table = extract(lv, 0, raw);
        return 0;
    }
    if ((raw & lv->shape_mask[1]) == memo[1]) { /* the leaf shape seen last */
        pa[i] = extract(lv, 1, raw) | (v & (lv->leaf_size - 1));
        psize[i] = lv->leaf_size;
        fault[i] = 0;
        flevel[i] = -1;
        return 1;
    }
    int rule_leaf;
    switch (lv->leaf_rule) {
    case LEAF_ALWAYS: rule_leaf = 1; break;
    case LEAF_IF_ANY: rule_leaf = (raw & lv->leaf_bits) != 0; break;
    case LEAF_IF_NONE: rule_leaf = (raw & lv->leaf_bits) == 0; break;
    default: rule_leaf = 0;
    }
    uint64_t key = raw & lv->shape_mask[rule_leaf];
    int got = lookup(lv, key);
    if (got < 0) {
        miss_idx[*misses] = i;
        miss_where[*misses] = where;
        miss_raw[*misses] = raw;
        (*misses)++;
        return 1;
    }
    int code = (got >> 1) & 0x3F;
    if (code) {
        fault[i] = (int8_t)code;
        flevel[i] = (int8_t)lv->number;
        return 1;
    }
    /* No fault: remember the shape. The leaf rule's bits lie inside both shape masks (checked
     * in Python), so an entry equal to it under either mask gets the same rule verdict. */
    int leaf = got & 1;
    if (leaf == rule_leaf) memo[leaf] = key;
    uint64_t addr = extract(lv, leaf, raw);
    if (!leaf) {
        *table = addr;
        return 0;
    }
    pa[i] = addr | (v & (lv->leaf_size - 1));
    psize[i] = lv->leaf_size;
    fault[i] = 0;
    flevel[i] = -1;
    return 1;
}

/* Translate va[idx[k]] (or va[k] when idx is NULL) for k < n; results go to the same index.
 * Returns how many walks stopped on an unknown shape; for each, miss_idx holds the address's
 * index, miss_where half * 8 + level index, miss_raw the raw entry. */
static inline __attribute__((always_inline)) int64_t
translate_loop(const int simple, const pw_walker *restrict w, const uint64_t *restrict va,
                     const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
                     uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
                     int64_t *restrict miss_idx, int32_t *restrict miss_where,
                     uint64_t *restrict miss_raw) {
    int64_t misses = 0;
    /* memo[half*8+level][table, leaf]: the last shape that walked cleanly (0: none yet;
     * a shape always has bit 0 set) */
    uint64_t memo[16][2];
    memset(memo, 0, sizeof memo);
    for (int64_t k = 0; k < n; k++) {
        const int64_t i = idx ? idx[k] : k;
        const uint64_t v = va[i];
        int32_t hsel = -1;
        for (int32_t h = 0; h < w->nhalves; h++) {
            const pw_half *c = &w->halves[h];
            uint64_t probe = v;
            if (c->tbi)
                probe = (v & ((1ULL << 56) - 1)) | (c->root_index ? (0xFFULL << 56) : 0);
            if (probe < c->lo || probe > c->hi) continue;
            if ((c->split55 || c->tbi) && (int32_t)((v >> 55) & 1) != c->root_index) continue;
            hsel = h;
            break;
        }
        pa[i] = ~0ULL;
        psize[i] = 0;
        if (hsel < 0) {
            fault[i] = (int8_t)w->nc_code;
            flevel[i] = (int8_t)w->nc_level;
            continue;
        }
        const pw_half *half = &w->halves[hsel];
        if (half->early_code) {
            fault[i] = (int8_t)half->early_code;
            flevel[i] = 0;
            continue;
        }
        uint64_t table = half->root;
        for (int32_t li = 0; li < half->nlevels; li++) {
            int32_t where = hsel * 8 + li;
            if (step(simple, w, &half->levels[li], where, v, &table, i, pa, psize, fault, flevel,
                     &misses, miss_idx, miss_where, miss_raw, memo[where]))
                break;
        }
    }
    return misses;
}

int64_t pw_translate(const pw_walker *restrict w, const uint64_t *restrict va,
                     const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
                     uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
                     int64_t *restrict miss_idx, int32_t *restrict miss_where,
                     uint64_t *restrict miss_raw) {
    if (w->esize == 8 && w->nseg == 1 && w->seg_end[0] >= 8)
        return translate_loop(1, w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where,
                              miss_raw);
    return translate_loop(0, w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where,
                          miss_raw);
}
