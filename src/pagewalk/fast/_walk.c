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
 * There are two loops. The general one (translate_loop) takes any entry size, any memory
 * segments and any shape. The fast one (fast_loop) takes the common case, 8-byte entries in one
 * segment, and only the walks that meet the shapes seen last at each level; it walks sixteen
 * addresses abreast so that their cache misses overlap, starts them at the last level when a
 * paging-structure cache knows the table there, and hands every other walk to the general
 * loop. Only the general loop ever decides what a new shape means.
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
    uint64_t lo, hi;          /* inclusive VA range of the half (of the probe, see below) */
    uint64_t root;
    int32_t select_bit;       /* -1, or the VA bit that must equal root_index for this half */
    int32_t ignore_top;       /* ignore the top byte when checking the range: the probe is the
                               * VA with bits 63:56 replaced by copies of bit 55 */
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
    int32_t np_code;            /* an entry with none of present_mask's bits set */
    int32_t bad_code;           /* an entry outside RAM */
    uint32_t present_mask;      /* bit 0, or EPT's R|W|X(|UX) */
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
    if (!(raw & w->present_mask)) {
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

/* The half that serves v, or -1. */
static inline int32_t select_half(const pw_walker *restrict w, uint64_t v) {
    for (int32_t h = 0; h < w->nhalves; h++) {
        const pw_half *c = &w->halves[h];
        uint64_t probe = v;
        if (c->ignore_top)
            probe = (v & ((1ULL << 56) - 1)) | (((v >> 55) & 1) ? (0xFFULL << 56) : 0);
        if (probe < c->lo || probe > c->hi) continue;
        if (c->select_bit >= 0 && (int32_t)((v >> c->select_bit) & 1) != c->root_index) continue;
        return h;
    }
    return -1;
}

/* Translate va[idx[k]] (or va[k] when idx is NULL) for k < n, the general way: any entry size,
 * any segments, any shape. Results go to the same index. memo[half*8+level][table, leaf] holds
 * the last shape that walked cleanly (0: none yet; a shape always has bit 0 set). Returns how
 * many walks stopped on an unknown shape; for each, miss_idx holds the address's index,
 * miss_where half * 8 + level index, miss_raw the raw entry. */
static inline __attribute__((always_inline)) int64_t
translate_loop(const int simple, const pw_walker *restrict w, const uint64_t *restrict va,
               const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
               uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
               int64_t *restrict miss_idx, int32_t *restrict miss_where,
               uint64_t *restrict miss_raw, uint64_t (*memo)[2]) {
    int64_t misses = 0;
    for (int64_t k = 0; k < n; k++) {
        const int64_t i = idx ? idx[k] : k;
        const uint64_t v = va[i];
        const int32_t hsel = select_half(w, v);
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
        for (int32_t li = 0;; li++) {
            int32_t where = hsel * 8 + li;
            if (step(simple, w, &half->levels[li], where, v, &table, i, pa, psize, fault, flevel,
                     &misses, miss_idx, miss_where, miss_raw, memo[where]))
                break;
            if (li + 1 >= half->nlevels) { /* a table at the last level: nowhere to go */
                fault[i] = (int8_t)w->bad_code;
                flevel[i] = (int8_t)half->levels[li].number;
                break;
            }
        }
    }
    return misses;
}

static __attribute__((noinline)) int64_t
general_simple(const pw_walker *restrict w, const uint64_t *restrict va,
               const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
               uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
               int64_t *restrict miss_idx, int32_t *restrict miss_where,
               uint64_t *restrict miss_raw, uint64_t (*memo)[2]) {
    return translate_loop(1, w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where,
                          miss_raw, memo);
}

static __attribute__((noinline)) int64_t
general_any(const pw_walker *restrict w, const uint64_t *restrict va,
            const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
            uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
            int64_t *restrict miss_idx, int32_t *restrict miss_where,
            uint64_t *restrict miss_raw, uint64_t (*memo)[2]) {
    return translate_loop(0, w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where,
                          miss_raw, memo);
}

/* The fast path, for 8-byte entries in one segment of memory (every simulated machine and most
 * dumps). It is the general loop cut down to the walks that meet only the shapes seen last at
 * each level: every other walk (a fault, a new shape, an entry outside RAM) is queued and given
 * to the general loop, which also learns the shapes the fast loop then recognises. Each level's
 * numbers sit in a small local table. An unset memo has mask 0 and value 1, which no entry
 * matches; a set one has bit 0 set, so a match implies a present entry. Two facts of the mode
 * are compile-time constants, so the compiler drops what they make dead: `plain` (every address
 * field is the raw entry under one mask, unshifted: x86, AArch64 without 52-bit addresses) and
 * `single` (one half, no ignored top byte and no select bit: PAE; x86-64 and Sv39+ have two
 * halves).
 *
 * Walks go LANES at a time, level by level in step: the LANES reads of a level are independent,
 * so their cache misses overlap instead of queueing behind each other as the dependent reads of
 * a one-walk-at-a-time loop do (measured on 32 MiB of leaf tables: about 2.5x faster). While
 * every lane meets the table shape seen last, the lanes stay together; at the first level where
 * they do not (normally the leaf level) they are written together if all are leaves of the
 * shape seen last, and otherwise each lane finishes alone. */
typedef struct {
    uint64_t index_mask, m0, v0, m1, v1, am0, am1, size_mask;
    int32_t shift, pad;
} fast_level;

#define REDO 256
#define LANES 16

static void fast_refresh(const pw_walker *restrict w, fast_level (*fl)[PW_MAX_LEVELS],
                         uint64_t (*memo)[2]) {
    for (int h = 0; h < w->nhalves; h++)
        for (int li = 0; li < w->halves[h].nlevels; li++) {
            const pw_level *lv = &w->halves[h].levels[li];
            fast_level *f = &fl[h][li];
            const uint64_t *m = memo[h * 8 + li];
            f->index_mask = lv->index_mask;
            f->shift = lv->shift;
            /* a table at the last level never takes the fast way: the walk must stop there */
            const int last = li + 1 == w->halves[h].nlevels;
            f->m0 = m[0] && !last ? lv->shape_mask[0] : 0, f->v0 = m[0] && !last ? m[0] : 1;
            f->m1 = m[1] ? lv->shape_mask[1] : 0, f->v1 = m[1] ? m[1] : 1;
            f->am0 = lv->amask[0][0], f->am1 = lv->amask[1][0];
            f->size_mask = lv->leaf_size - 1;
        }
}

/* What one fast walk needs besides its own address: the level tables and the memory. */
typedef struct {
    const pw_walker *w;
    const fast_level (*fl)[PW_MAX_LEVELS];
    const uint8_t *base; /* the byte of PA 0 (maybe outside the buffer; only in-range PAs read) */
    uint64_t seg_lo, span; /* an entry at epa is readable iff epa - seg_lo < span */
    uint64_t pow; /* a power of two: entries with epa - seg_lo < pow are readable, since every
                   * epa - seg_lo is a multiple of 8 (fast_ok), and OR-ing the lanes' offsets
                   * tests them all at once */
    uint64_t *pa, *psize;
    int8_t *fault, *flevel;
    int32_t kshift[2]; /* per half: the paging-structure cache's key shift, or -1 (none) */
} fast_ctx;

/* The paging-structure cache (as the CPU's, Intel SDM vol. 3A 4.10.3), kept by the caller for
 * the calls of one batch (the memory does not change meanwhile): the table the last level of a
 * walk reads, keyed by the half and by the VA bits that index the levels above (those at and
 * above kshift, the shift of the last level but one). A walk goes in only when every entry above
 * had the table shape seen last, so a hit skips exactly the reads that would have found them.
 * tag is 0 (empty) or 1 + (key | half << 63); a key has its top two bits clear (kshift >= 2). */
#define PDE_SLOTS 8192
typedef struct {
    struct { uint64_t tag, table; } slot[PDE_SLOTS];
    int64_t fills; /* lanes that missed and were filled: about the tables met, when it is big
                    * the tables outgrow the caches and the loop prefetches (PF_BYTES) */
    int64_t fails; /* groups that missed and ended in large pages, with nothing to cache: when
                    * they outnumber the fills, the cache is given up for the batch */
} pde_cache;
#define PF_GROUPS 2         /* prefetch the entries of the group this many ahead */
#define PF_BYTES (8 << 20)  /* ... once the last-level tables met exceed this */

static inline uint64_t pde_tag(const fast_ctx *c, int32_t h, uint64_t v) {
    return ((v >> c->kshift[h]) | (uint64_t)h << 63) + 1;
}

static inline __attribute__((always_inline)) void
fast_leaf(const int plain, const fast_ctx *c, const fast_level *f, const pw_level *lv,
          uint64_t raw, uint64_t v, int64_t i) {
    c->pa[i] = (plain ? raw & f->am1 : extract(lv, 1, raw)) | (v & f->size_mask);
    c->psize[i] = f->size_mask + 1;
    c->fault[i] = 0;
    c->flevel[i] = -1;
}

/* One walk alone from level li of half h, with the table that level reads. Returns 0 when it
 * is done, 1 when it must go to the general loop. */
static inline __attribute__((always_inline)) int fast_one(const int plain, const fast_ctx *c,
                                                          int32_t h, int32_t li, uint64_t table,
                                                          uint64_t v, int64_t i) {
    if (h < 0) return 1;
    const pw_half *half = &c->w->halves[h];
    for (const fast_level *f = &c->fl[h][li];; li++, f++) {
        const uint64_t epa = table + ((v >> f->shift) & f->index_mask) * 8;
        if (epa - c->seg_lo >= c->span) return 1;
        uint64_t raw;
        memcpy(&raw, c->base + epa, 8);
        if ((raw & f->m0) == f->v0) { /* a table of the shape seen last */
            table = plain ? raw & f->am0 : extract(&half->levels[li], 0, raw);
            continue;
        }
        if ((raw & f->m1) != f->v1) return 1;
        fast_leaf(plain, c, f, &half->levels[li], raw, v, i); /* a leaf of the shape seen last */
        return 0;
    }
}

static inline __attribute__((always_inline)) int32_t half_of(const int single,
                                                             const pw_walker *restrict w,
                                                             uint64_t v) {
    if (single) return v - w->halves[0].lo <= w->halves[0].hi - w->halves[0].lo ? 0 : -1;
    return select_half(w, v);
}

/* LANES walks from va[i] on, all in half h; the ones that leave the fast way go to redo. */
static inline __attribute__((always_inline)) void fast_lanes(const int plain, const fast_ctx *c,
                                                             pde_cache *pc, int32_t h,
                                                             const uint64_t *vs, int64_t i,
                                                             int64_t *redo, int32_t *nredo) {
    const pw_half *half = &c->w->halves[h];
    const fast_level *f = c->fl[h];
    uint64_t ts[LANES], rs[LANES], tags[LANES] = {0};
    int32_t li = 0, missed = 0;
    const int cached = pc && c->kshift[h] >= 0 && pc->fails <= 256 + pc->fills;
    if (cached) { /* every lane in the cache: all start at the last level */
        for (int g = 0; g < LANES; g++) {
            tags[g] = pde_tag(c, h, vs[g]);
            const uint32_t slot = (uint32_t)tags[g] & (PDE_SLOTS - 1);
            ts[g] = pc->slot[slot].table;
            missed += pc->slot[slot].tag != tags[g];
        }
        if (!missed) li = half->nlevels - 1, f += li;
    }
    if (li == 0)
        for (int g = 0; g < LANES; g++) ts[g] = half->root;
    for (;; li++, f++) {
        int ok = 1;
        uint64_t any = 0;
        for (int g = 0; g < LANES; g++) { /* every entry address; all must be in RAM */
            rs[g] = ts[g] + ((vs[g] >> f->shift) & f->index_mask) * 8;
            any |= rs[g] - c->seg_lo;
        }
        if (any >= c->pow) { /* the quick test (exact when RAM is a power of two) fails */
            for (int g = 0; g < LANES; g++) ok &= rs[g] - c->seg_lo < c->span;
            if (!ok) break;
        }
        for (int g = 0; g < LANES; g++) memcpy(&rs[g], c->base + rs[g], 8);
        uint64_t diff = 0;
        for (int g = 0; g < LANES; g++) diff |= (rs[g] & f->m0) ^ f->v0;
        if (!diff) { /* all tables of the shape seen last: down together */
            for (int g = 0; g < LANES; g++)
                ts[g] = plain ? rs[g] & f->am0 : extract(&half->levels[li], 0, rs[g]);
            if (missed && li + 2 == half->nlevels) { /* into the last level: remember them */
                for (int g = 0; g < LANES; g++) {
                    const uint32_t slot = (uint32_t)tags[g] & (PDE_SLOTS - 1);
                    pc->slot[slot].tag = tags[g], pc->slot[slot].table = ts[g];
                }
                pc->fills += missed;
            }
            continue;
        }
        uint64_t ldiff = 0;
        for (int g = 0; g < LANES; g++) ldiff |= (rs[g] & f->m1) ^ f->v1;
        if (!ldiff) { /* all leaves of the shape seen last */
            const uint64_t size = f->size_mask + 1;
            if (missed && li + 1 < half->nlevels) pc->fails++; /* large pages: none to cache */
            for (int g = 0; g < LANES; g++) {
                c->pa[i + g] = (plain ? rs[g] & f->am1 : extract(&half->levels[li], 1, rs[g])) |
                               (vs[g] & f->size_mask);
                c->psize[i + g] = size;
                c->fault[i + g] = 0;
                c->flevel[i + g] = -1;
            }
            return;
        }
        for (int g = 0; g < LANES; g++) { /* the lanes part here, each with its entry read */
            const uint64_t r = rs[g];
            if ((r & f->m0) == f->v0) {
                const uint64_t t = plain ? r & f->am0 : extract(&half->levels[li], 0, r);
                if (fast_one(plain, c, h, li + 1, t, vs[g], i + g)) redo[(*nredo)++] = i + g;
            } else if ((r & f->m1) == f->v1) {
                fast_leaf(plain, c, f, &half->levels[li], r, vs[g], i + g);
            } else {
                redo[(*nredo)++] = i + g;
            }
        }
        return;
    }
    for (int g = 0; g < LANES; g++) /* an entry outside RAM: each lane alone from here */
        if (fast_one(plain, c, h, li, ts[g], vs[g], i + g)) redo[(*nredo)++] = i + g;
}

static inline __attribute__((always_inline)) int64_t
fast_loop(const int plain, const int single, const pw_walker *restrict w,
          const uint64_t *restrict va, int64_t n, uint64_t *restrict pa,
          uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
          int64_t *restrict miss_idx, int32_t *restrict miss_where, uint64_t *restrict miss_raw,
          uint64_t (*memo)[2], pde_cache *pc) {
    int64_t misses = 0, redo[REDO + LANES], pf_fills = INT64_MAX;
    int32_t nredo = 0, flushes = 0;
    fast_level fl[2][PW_MAX_LEVELS];
    fast_refresh(w, fl, memo);
    uint64_t pow = 1; /* the largest power of two no larger than the segment */
    while (pow <= (w->seg_end[0] - w->seg_start[0]) / 2) pow <<= 1;
    fast_ctx c = {w, (const fast_level(*)[PW_MAX_LEVELS])fl, w->buf + w->seg_delta[0],
                  w->seg_start[0], w->seg_end[0] - 7 - w->seg_start[0], pow, pa, psize, fault,
                  flevel, {-1, -1}};
    for (int hh = 0; pc && hh < w->nhalves; hh++) { /* the cache, where the levels above the
                                                     * last index by higher VA bits only */
        const pw_half *q = &w->halves[hh];
        const int32_t ks = q->nlevels >= 2 ? q->levels[q->nlevels - 2].shift : -1;
        int usable = ks >= 2;
        for (int li = 0; li + 1 < q->nlevels; li++) usable &= q->levels[li].shift >= ks;
        c.kshift[hh] = usable ? ks : -1;
        const int64_t tbytes = (int64_t)(q->levels[q->nlevels - 1].index_mask + 1) * 8;
        if (usable && tbytes > 0 && PF_BYTES / tbytes < pf_fills) pf_fills = PF_BYTES / tbytes;
    }

    /* A half whose VA range is a plain power-of-two span (no ignored top byte, no select bit)
     * can take a whole group in one test: every v - lo OR-ed together stays within the span. */
    uint64_t qlo[2] = {0, 0}, qwidth[2] = {0, 0};
    int32_t quick[2] = {0, 0};
    for (int hh = 0; hh < w->nhalves; hh++) {
        const pw_half *q = &w->halves[hh];
        qlo[hh] = q->lo, qwidth[hh] = q->hi - q->lo;
        quick[hh] = !q->ignore_top && q->select_bit < 0 && !(qwidth[hh] & (qwidth[hh] + 1));
    }
    for (int64_t i = 0; i < n; i += LANES) {
        uint64_t vs[LANES];
        int32_t h = -1, together = i + LANES <= n;
        if (pc && pc->fills >= pf_fills && i + (PF_GROUPS + 1) * LANES <= n)
            for (int g = 0; g < LANES; g++) { /* the tables are big: prefetch a later group's
                                               * last-level entries, where the cache knows them */
                const uint64_t v = va[i + PF_GROUPS * LANES + g];
                for (int hh = 0; hh < w->nhalves; hh++) {
                    if (c.kshift[hh] < 0) continue;
                    const uint64_t tag = pde_tag(&c, hh, v);
                    const uint32_t slot = (uint32_t)tag & (PDE_SLOTS - 1);
                    if (pc->slot[slot].tag != tag) continue;
                    const fast_level *z = &fl[hh][w->halves[hh].nlevels - 1];
                    __builtin_prefetch((const void *)((uintptr_t)c.base + pc->slot[slot].table +
                                                      ((v >> z->shift) & z->index_mask) * 8));
                    break;
                }
            }
        if (together) {
            for (int g = 0; g < LANES; g++) vs[g] = va[i + g];
            for (int hh = 0; hh < w->nhalves && h < 0; hh++) {
                if (!quick[hh]) continue;
                uint64_t acc = 0;
                for (int g = 0; g < LANES; g++) acc |= vs[g] - qlo[hh];
                if (acc <= qwidth[hh]) h = hh;
            }
            if (h < 0) {
                h = half_of(single, w, vs[0]);
                for (int g = 1; g < LANES; g++) together &= half_of(single, w, vs[g]) == h;
                together &= h >= 0;
            }
        }
        if (together) {
            fast_lanes(plain, &c, pc, h, vs, i, redo, &nredo);
        } else {
            for (int64_t k = i; k < n && k < i + LANES; k++) {
                const int32_t hk = half_of(single, w, va[k]);
                if (fast_one(plain, &c, hk, 0, w->halves[hk < 0 ? 0 : hk].root, va[k], k))
                    redo[nredo++] = k;
            }
        }
        /* the queue goes to the general loop when full, at the end, and early on after every
         * group, so that the shapes it learns serve the fast loop at once */
        if (nredo >= (flushes < 8 ? 1 : REDO) || (nredo && i + LANES >= n)) {
            misses += general_simple(w, va, redo, nredo, pa, psize, fault, flevel,
                                     miss_idx + misses, miss_where + misses, miss_raw + misses,
                                     memo);
            nredo = 0;
            flushes++;
            fast_refresh(w, fl, memo);
        }
    }
    return misses;
}

/* Whether the fast loop may run: 8-byte entries in one segment; no table address (a root, or
 * the largest value extract() can give) so high that table + index * 8 could wrap around 2^64;
 * and every table address, and the segment's start, a multiple of 8. */
static int fast_ok(const pw_walker *restrict w) {
    if (!(w->esize == 8 && w->nseg == 1 && w->seg_end[0] >= 8) || (w->seg_start[0] & 7))
        return 0;
    for (int h = 0; h < w->nhalves; h++) {
        const uint64_t root = w->halves[h].root;
        if (root >> 62 || (root & 7) || w->halves[h].early_code) return 0;
        for (int li = 0; li < w->halves[h].nlevels; li++) {
            const uint64_t top = extract(&w->halves[h].levels[li], 0, ~0ULL);
            if (top >> 62 || (top & 7)) return 0;
        }
    }
    return 1;
}

static int fast_plain(const pw_walker *restrict w) {
    for (int h = 0; h < w->nhalves; h++)
        for (int li = 0; li < w->halves[h].nlevels; li++) {
            const pw_level *lv = &w->halves[h].levels[li];
            for (int leaf = 0; leaf < 2; leaf++)
                if (lv->ashift[leaf][0] != 0 || lv->amask[leaf][1] != 0) return 0;
        }
    return 1;
}

/* The interface version: _native.ABI must match it. */
int32_t pw_abi(void) { return 4; }

/* The bytes of the paging-structure cache the caller keeps (zeroed at the start of a batch). */
int64_t pw_cache_bytes(void) { return (int64_t)sizeof(pde_cache); }

#define PW_FAST(plain, single) \
    fast_loop(plain, single, w, va, n, pa, psize, fault, flevel, miss_idx, miss_where, \
              miss_raw, memo, (pde_cache *)cache)

/* Translate va[idx[k]] (or va[k] when idx is NULL) for k < n; see translate_loop. memo is the
 * caller's [16][2] table of the last clean shapes (zeros at first); it lasts from call to call,
 * since a shape's verdict never changes. cache is NULL or the caller's pw_cache_bytes() bytes,
 * zeroed at the start of a batch and kept through its calls while the memory does not change. */
int64_t pw_translate(const pw_walker *restrict w, const uint64_t *restrict va,
                     const int64_t *restrict idx, int64_t n, uint64_t *restrict pa,
                     uint64_t *restrict psize, int8_t *restrict fault, int8_t *restrict flevel,
                     int64_t *restrict miss_idx, int32_t *restrict miss_where,
                     uint64_t *restrict miss_raw, uint64_t (*memo)[2], void *cache) {
    if (!idx && fast_ok(w)) {
        const int plain = fast_plain(w);
        const int single =
            w->nhalves == 1 && !w->halves[0].ignore_top && w->halves[0].select_bit < 0;
        if (plain) return single ? PW_FAST(1, 1) : PW_FAST(1, 0);
        return single ? PW_FAST(0, 1) : PW_FAST(0, 0);
    }
    if (w->esize == 8 && w->nseg == 1 && w->seg_end[0] >= 8)
        return general_simple(w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where,
                              miss_raw, memo);
    return general_any(w, va, idx, n, pa, psize, fault, flevel, miss_idx, miss_where, miss_raw,
                       memo);
}
