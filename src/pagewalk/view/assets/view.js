// pagewalk report: the map, the walk panel, the table tree and the boot timeline.
// Knows no architecture: every entry's meaning was computed in Python (pagewalk.view.walkdata);
// the walk below only follows those precomputed pointers, as pagewalk.walk.descend does.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const M64 = (1n << 64n) - 1n;
  const hex = (v) => "0x" + BigInt(v).toString(16);
  const big = (s) => BigInt(s);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const TYPES = { uint64: BigUint64Array, uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array, float64: Float64Array };
  const PERM_COLORS = { "r--": "#7aa6d8", "rw-": "#e0a040", "r-x": "#4caf50", "rwx": "#d62728", "---": "#bbbbbb", "-w-": "#e0a040", "--x": "#4caf50", "-wx": "#d62728" };
  const SIZE_COLORS = ["#555", "#8e44ad", "#16a085", "#c0392b", "#2c3e50"];
  const state = { meta: null, spaces: [], cur: null, fold: false, drag: null, mark: null };

  function fail(err) {
    const box = $("pw-error");
    box.hidden = false;
    box.textContent = "The report could not be shown: " + (err && err.message ? err.message : err);
  }

  async function inflate(b64) {
    const s = atob(b64.trim());
    const u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream");
    const stream = new Blob([u]).stream().pipeThrough(new DecompressionStream("deflate"));
    return await new Response(stream).arrayBuffer();
  }

  function Space(m, buf) {
    this.m = m;
    this.a = {};
    for (const [name, [dtype, off, n]] of Object.entries(m.arrays)) this.a[name] = new TYPES[dtype](buf, off, n);
    this.halves = m.halves.map((h) => ({ ...h, start: big(h.va_start), end: big(h.va_end), rootPa: big(h.root_pa) }));
    this.tableAt = new Map();
    const t = this.a;
    for (let i = 0; i < t.t_pa.length; i++) this.tableAt.set(t.t_pa[i].toString(16) + ":" + t.t_depth[i], i);
    this.outside = new Set(m.walk.outside.map((s) => big(s).toString(16)));
    this.layout();
  }

  // Per half: the runs in it, their offsets from the half's start (linear) and in folded units.
  Space.prototype.layout = function () {
    const a = this.a, n = a.r_va.length;
    this.strips = this.halves.map((h) => ({ h, idx: [], lin: null, fold: null, span: Number(h.end - h.start), foldSpan: 0 }));
    for (let i = 0; i < n; i++) this.strips[a.r_half[i]].idx.push(i);
    for (const s of this.strips) {
      const k = s.idx.length;
      s.lin = new Float64Array(k); s.w = new Float64Array(k); s.fold = new Float64Array(k); s.fw = new Float64Array(k);
      let x = 0, prevEnd = -1;
      for (let j = 0; j < k; j++) {
        const i = s.idx[j];
        s.lin[j] = Number(a.r_va[i] - s.h.start);
        s.w[j] = Number(a.r_size[i]);
        if (prevEnd !== s.lin[j]) x += 2;
        s.fold[j] = x;
        s.fw[j] = 1 + Math.max(0, Math.log2(s.w[j]) - 12);
        x += s.fw[j];
        prevEnd = s.lin[j] + s.w[j];
      }
      s.foldSpan = x + 2;
      s.view = [0, s.span];
      s.fview = [0, s.foldSpan];
    }
  };

  // ----------------------------------------------------------------- the walk (pointers only)
  function selectHalf(sp, va) {
    const m = sp.m;
    if (m.select_bit !== null && m.select_bit !== undefined) {
      const bit = BigInt(m.select_bit);
      const upper = Number((va >> bit) & 1n);
      const h = sp.halves[upper];
      let v = va;
      if (m.tbi[h.root]) {
        const low = (1n << (bit + 1n)) - 1n;
        v = (va & low) | (upper ? M64 & ~low : 0n);
      }
      return h && h.start <= v && v < h.end ? h : null;
    }
    return sp.halves.find((h) => h.start <= va && va < h.end) || null;
  }

  function findEntry(a, t, index) {
    let lo = a.t_off[t], hi = lo + a.t_n[t];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a.e_idx[mid] < index) lo = mid + 1; else hi = mid;
    }
    return lo < a.t_off[t] + a.t_n[t] && a.e_idx[lo] === index ? lo : -1;
  }

  function walk(sp, va) {
    const m = sp.m, a = sp.a, w = m.walk, esize = BigInt(m.entry_size);
    const out = { va, steps: [], pa: null, size: null, perm: 0, fault: null, incomplete: null };
    const h = selectHalf(sp, va);
    if (!h) {
      out.fault = { kind: m.noncanon.kind, level: m.noncanon.level, reason: `VA ${hex(va)} is outside every translation range of ${m.mode}` };
      return out;
    }
    out.half = h;
    if (h.root_fault) { out.fault = { kind: h.root_fault[0], level: 0, reason: h.root_fault[1] }; return out; }
    let table = h.rootPa, acc = m.walk_start;
    for (let li = 0; li < h.levels.length; li++) {
      const lv = h.levels[li];
      const index = Number((va >> BigInt(lv.shift)) & ((1n << BigInt(lv.bits)) - 1n));
      const entryPa = table + BigInt(index) * esize;
      const t = sp.tableAt.get(table.toString(16) + ":" + li);
      const outsideRam = { kind: "bad-table", level: lv.number, reason: `${lv.name} entry at PA ${hex(entryPa)} is outside RAM` };
      if (t === undefined) {
        if (sp.outside.has(table.toString(16))) { out.fault = outsideRam; return out; }
        out.incomplete = w.capped
          ? `the ${lv.name} table at ${hex(table)} is not embedded: this report holds at most ${w.max} table entries. Run \`pagewalk walk IMAGE ${hex(va)}\`.`
          : `the ${lv.name} table at ${hex(table)} is not embedded (a pointer back up the tree, a recursive slot, or a frame reused at another level). Run \`pagewalk walk IMAGE ${hex(va)}\`.`;
        return out;
      }
      if (a.t_root[t] !== h.root) {
        out.incomplete = `the table at ${hex(table)} was decoded for another root register; run \`pagewalk walk IMAGE ${hex(va)}\`.`;
        return out;
      }
      const missing = w.partial[String(t)];
      if (missing && missing.some(([s, e]) => s <= index && index < e)) { out.fault = outsideRam; return out; }
      const e = findEntry(a, t, index);
      const raw = e < 0 ? 0n : a.e_raw[e], addr = e < 0 ? 0n : a.e_addr[e];
      const rec = w.shapes[e < 0 ? w.zero[h.root][li] : a.e_shape[e]];
      const perm = rec.p[acc];
      acc = rec.n[acc];
      out.steps.push({ lv, index, table, entryPa, raw, addr, rec, perm });
      if (rec.f) { out.fault = { kind: rec.f, level: lv.number, reason: rec.r }; return out; }
      if (rec.k === "l") {
        const size = BigInt(rec.s);
        out.pa = addr | (va & (size - 1n)); out.size = size; out.perm = perm;
        return out;
      }
      table = addr;
    }
    out.incomplete = "the walk ran past the leaf level (a bug in the report)";
    return out;
  }

  function showWalk(sp, va) {
    const box = $("pw-walk"), r = walk(sp, va), m = sp.m;
    const letters = (p) => m.perm_letters[p];
    const width = 2 + 2 * m.entry_size;
    box.dataset.state = "done";
    box.dataset.va = hex(va);
    box.dataset.pa = r.pa === null ? "" : hex(r.pa);
    box.dataset.pageSize = r.size === null ? "" : String(r.size);
    box.dataset.faultKind = r.fault ? r.fault.kind : "";
    box.dataset.faultLevel = r.fault && r.fault.level !== null ? String(r.fault.level) : "";
    box.dataset.incomplete = r.incomplete ? "1" : "";
    let head;
    if (r.incomplete) head = `<div class="head incomplete">${hex(va)}: cannot finish this walk here: ${esc(r.incomplete)}</div>`;
    else if (r.fault) {
      const at = r.fault.level === null ? "" : ` at level ${r.fault.level}`;
      head = `<div class="head"><span class="mono">${hex(va)}</span> &rarr; <span class="fault">${esc(r.fault.kind)} fault${at}</span>: ${esc(r.fault.reason)}</div>`;
    } else {
      const last = r.steps[r.steps.length - 1].rec;
      head = `<div class="head ok"><span class="mono">${hex(va)} &rarr; ${hex(r.pa)}</span>, ${sizeText(Number(r.size))} page, ${letters(r.perm)}${last.m ? ", " + esc(last.m) : ""}</div>`;
    }
    const half = r.half ? `<p class="dim">${esc(r.half.name)} = ${hex(r.half.rootPa)}; ${r.half.levels.length} levels</p>` : "";
    let rows = "";
    for (const s of r.steps) {
      const raw = "0x" + s.raw.toString(16).padStart(width - 2, "0");
      const to = s.rec.k === "t" && !s.rec.f ? `next table ${hex(s.addr)}` : s.rec.k === "l" && !s.rec.f ? `output ${hex(s.addr)} (${sizeText(s.rec.s)})` : "";
      const perm = s.rec.f ? "-" : letters(s.perm);
      const why = s.rec.f ? `<span class="fault">${esc(s.rec.f)}: ${esc(s.rec.r)}</span>` : "";
      rows += `<tr><td>${esc(s.lv.name)}</td><td>${hex(s.table)}</td><td>${s.index}</td><td>${hex(s.entryPa)}</td><td>${raw}</td><td>${esc(s.rec.d)}</td><td>${to}</td><td>${perm}</td><td>${why}</td></tr>`;
    }
    const table = rows ? `<table><tr><th>level</th><th>table PA</th><th>index</th><th>entry PA</th><th>raw</th><th>fields</th><th>points to</th><th>perm so far</th><th>fault</th></tr>${rows}</table>` : "";
    box.innerHTML = head + half + table;
    state.mark = va;
    draw();
  }

  function parseVA(text) {
    const t = text.trim().replace(/_/g, "");
    if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(t)) throw new Error(`${JSON.stringify(text)} is not a number`);
    const v = BigInt(t);
    if (v > M64) throw new Error(`${text} is wider than 64 bits`);
    return v;
  }

  function sizeText(n) {
    const u = [[1 << 30, "G"], [1 << 20, "M"], [1 << 10, "K"]];
    if (n >= 2 ** 40 && n % 2 ** 40 === 0) return n / 2 ** 40 + "T";
    for (const [k, s] of u) if (n >= k && n % k === 0) return n / k + s;
    return String(n);
  }

  // ----------------------------------------------------------------- the map
  const STRIP = 46, TOP = 18, GAP = 30;
  function canvasSize() {
    const c = $("pw-map"), sp = state.cur;
    const h = TOP + sp.strips.length * (STRIP + GAP);
    const ratio = window.devicePixelRatio || 1;
    c.style.height = h + "px";
    c.width = Math.max(200, c.clientWidth) * ratio; c.height = h * ratio;
    return ratio;
  }

  function permColor(p) {
    const l = state.cur.m.perm_letters[p];
    return PERM_COLORS[l.slice(0, 3)] || "#999";
  }

  function draw() {
    const sp = state.cur; if (!sp) return;
    const c = $("pw-map"), ratio = canvasSize(), ctx = c.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const W = c.width / ratio, a = sp.a;
    ctx.clearRect(0, 0, W, c.height);
    ctx.font = "11px ui-monospace, monospace";
    sp.strips.forEach((s, k) => {
      const y = TOP + k * (STRIP + GAP);
      const [lo, hi] = state.fold ? s.fview : s.view;
      const xs = state.fold ? s.fold : s.lin, ws = state.fold ? s.fw : s.w;
      const scale = W / (hi - lo);
      ctx.fillStyle = "#eee"; ctx.fillRect(0, y, W, STRIP);
      ctx.fillStyle = "#222";
      ctx.fillText(`${s.h.name}: ${hex(s.h.start + BigInt(Math.floor(state.fold ? foldVa(s, lo) : lo)))} … ${s.idx.length} runs`, 2, y - 4);
      let j = firstVisible(xs, ws, lo), lastPx = -1;
      for (; j < xs.length && xs[j] <= hi; j++) {
        const x0 = (xs[j] - lo) * scale, x1 = (xs[j] + ws[j] - lo) * scale;
        if (x1 - x0 < 1 && Math.floor(x0) === lastPx) continue;
        lastPx = Math.floor(x0);
        const i = s.idx[j], wpx = Math.max(1, x1 - x0);
        ctx.fillStyle = permColor(a.r_perm[i]);
        ctx.fillRect(x0, y, wpx, STRIP - 12);
        ctx.fillStyle = SIZE_COLORS[Math.min(4, Math.max(0, Math.round((a.r_pg[i] - 12) / 9)))];
        ctx.fillRect(x0, y + STRIP - 10, wpx, 8);
        if (a.r_perm[i] & 8) { ctx.fillStyle = "rgba(0,0,0,.35)"; ctx.fillRect(x0, y, wpx, 4); }
      }
      for (const [rs, re, name] of sp.m.regions) drawRegion(ctx, s, big(rs), big(re), name, lo, scale, y, W);
      if (state.mark !== null && state.mark >= s.h.start && state.mark < s.h.end) {
        const off = Number(state.mark - s.h.start);
        const x = state.fold ? foldX(s, off) : off;
        const px = (x - lo) * scale;
        ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(px, y - 2); ctx.lineTo(px, y + STRIP); ctx.stroke();
      }
    });
  }

  function drawRegion(ctx, s, rs, re, name, lo, scale, y, W) {
    if (re <= s.h.start || rs >= s.h.end) return;
    const a = Number((rs > s.h.start ? rs : s.h.start) - s.h.start), b = Number((re < s.h.end ? re : s.h.end) - s.h.start);
    const xa = ((state.fold ? foldX(s, a) : a) - lo) * scale, xb = ((state.fold ? foldX(s, b) : b) - lo) * scale;
    if (xb < 0 || xa > W) return;
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.strokeRect(xa, y + STRIP, Math.max(1, xb - xa), 6);
    ctx.fillStyle = "#333"; ctx.fillText(name, Math.max(2, xa), y + STRIP + 17);
  }

  function firstVisible(xs, ws, lo) {
    let a = 0, b = xs.length;
    while (a < b) { const m = (a + b) >> 1; if (xs[m] + ws[m] < lo) a = m + 1; else b = m; }
    return a;
  }
  // folded coordinate of a linear offset, and the linear offset at a folded coordinate
  function foldX(s, off) {
    const j = firstVisible(s.lin, s.w, off);
    if (j >= s.lin.length) return s.foldSpan;
    if (off < s.lin[j]) return s.fold[j] - 1;
    return s.fold[j] + s.fw[j] * ((off - s.lin[j]) / s.w[j]);
  }
  function foldVa(s, x) {
    const j = firstVisible(s.fold, s.fw, x);
    if (j >= s.fold.length) return s.span - 1;
    return x < s.fold[j] ? s.lin[j] : s.lin[j] + s.w[j] * Math.min(1, (x - s.fold[j]) / s.fw[j]);
  }

  function hit(ev) {
    const sp = state.cur, c = $("pw-map"), r = c.getBoundingClientRect();
    const px = ev.clientX - r.left, py = ev.clientY - r.top;
    const k = Math.floor((py - TOP + GAP / 2) / (STRIP + GAP));
    if (k < 0 || k >= sp.strips.length) return null;
    const s = sp.strips[k], [lo, hi] = state.fold ? s.fview : s.view;
    const x = lo + (px / r.width) * (hi - lo);
    const xs = state.fold ? s.fold : s.lin, ws = state.fold ? s.fw : s.w;
    const j = firstVisible(xs, ws, x);
    const inRun = j < xs.length && xs[j] <= x && x < xs[j] + ws[j];
    return { s, k, x, px, py, j: inRun ? j : -1 };
  }

  function vaAt(h) {
    const s = h.s, a = state.cur.a;
    if (h.j >= 0) {
      const i = s.idx[h.j];
      if (state.fold) return a.r_va[i];
      const off = BigInt(Math.floor(h.x - s.lin[h.j]));
      const inside = off < a.r_size[i] ? off : 0n;
      return a.r_va[i] + (inside & ~0xfffn);
    }
    if (state.fold) return null;
    return s.h.start + BigInt(Math.floor(h.x)) & ~0xfffn;
  }

  function bindMap() {
    const c = $("pw-map"), tip = $("pw-tip");
    c.addEventListener("wheel", (ev) => {
      const h = hit(ev); if (!h) return;
      ev.preventDefault();
      const v = state.fold ? h.s.fview : h.s.view;
      const span = state.fold ? h.s.foldSpan : h.s.span;
      const f = ev.deltaY > 0 ? 1.5 : 1 / 1.5;
      let w = Math.min(span, Math.max(16, (v[1] - v[0]) * f));
      let lo = h.x - (h.x - v[0]) * (w / (v[1] - v[0]));
      lo = Math.max(0, Math.min(span - w, lo));
      v[0] = lo; v[1] = lo + w; draw();
    }, { passive: false });
    c.addEventListener("mousedown", (ev) => { const h = hit(ev); if (h) state.drag = { h, x: ev.clientX, moved: false }; });
    window.addEventListener("mouseup", (ev) => {
      const d = state.drag; state.drag = null;
      if (d && !d.moved) { const va = vaAt(d.h); if (va !== null) { $("pw-va").value = hex(va); showWalk(state.cur, va); } }
    });
    c.addEventListener("mousemove", (ev) => {
      const d = state.drag;
      if (d) {
        const v = state.fold ? d.h.s.fview : d.h.s.view, span = state.fold ? d.h.s.foldSpan : d.h.s.span;
        const dx = (ev.clientX - d.x) / c.getBoundingClientRect().width * (v[1] - v[0]);
        if (Math.abs(ev.clientX - d.x) > 2) d.moved = true;
        if (d.moved) {
          const lo = Math.max(0, Math.min(span - (v[1] - v[0]), v[0] - dx));
          v[1] = lo + (v[1] - v[0]); v[0] = lo; d.x = ev.clientX; draw();
        }
      }
      const h = hit(ev);
      if (!h || h.j < 0) { tip.hidden = true; return; }
      const a = state.cur.a, i = h.s.idx[h.j], m = state.cur.m;
      tip.textContent = `${hex(a.r_va[i])}-${hex(a.r_va[i] + a.r_size[i] - 1n)}  ${sizeText(Number(a.r_size[i]))}\n-> ${hex(a.r_pa[i])}  ${sizeText(2 ** a.r_pg[i])} pages  ${m.perm_letters[a.r_perm[i]]}`;
      tip.hidden = false;
      tip.style.left = Math.min(h.px + 12, c.clientWidth - 320) + "px"; tip.style.top = h.py + 14 + "px";
    });
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    window.addEventListener("resize", draw);
  }

  // ----------------------------------------------------------------- tree, stats, lint
  function tree(sp) {
    const box = $("pw-tree"), a = sp.a, m = sp.m;
    box.innerHTML = "";
    const w = m.walk;
    const note = `<p class="dim">${w.tables} tables, ${w.entries} non-zero entries embedded${w.capped ? ` (capped at ${w.max}: some tables left out)` : ""}.</p>`;
    box.insertAdjacentHTML("beforeend", note);
    const roots = new Set();
    for (const h of sp.halves) {
      const key = h.rootPa.toString(16) + ":0";
      if (roots.has(key) || !sp.tableAt.has(key)) continue;
      roots.add(key);
      box.appendChild(node(sp, sp.tableAt.get(key), h, h.root_name || h.name));
    }
  }

  function node(sp, t, h, label) {
    const a = sp.a, w = sp.m.walk, d = a.t_depth[t], lv = h.levels[d];
    let tables = 0, leaves = 0;
    for (let e = a.t_off[t]; e < a.t_off[t] + a.t_n[t]; e++) {
      const r = w.shapes[a.e_shape[e]];
      if (!r.f && r.k === "t") tables++; else if (!r.f && r.k === "l") leaves++;
    }
    const el = document.createElement("details");
    const shared = a.t_refs[t] > 1 ? ` <span class="shared">shared by ${a.t_refs[t]} entries</span>` : "";
    el.innerHTML = `<summary>${esc(label)} <b>${esc(lv.name)}</b> @ ${hex(a.t_pa[t])}: ${a.t_n[t]} used (${tables} tables, ${leaves} leaves)${shared}</summary>`;
    el.addEventListener("toggle", () => {
      if (!el.open || el.dataset.filled) return;
      el.dataset.filled = "1";
      let shown = 0;
      for (let e = a.t_off[t]; e < a.t_off[t] + a.t_n[t]; e++) {
        const r = w.shapes[a.e_shape[e]];
        if (r.f || r.k !== "t") continue;
        const child = sp.tableAt.get(a.e_addr[e].toString(16) + ":" + (d + 1));
        if (child === undefined) { el.insertAdjacentHTML("beforeend", `<div class="dim">[${a.e_idx[e]}] ${hex(a.e_addr[e])} (not embedded)</div>`); continue; }
        if (++shown > 600) { el.insertAdjacentHTML("beforeend", `<div class="dim">… more</div>`); break; }
        el.appendChild(node(sp, child, h, `[${a.e_idx[e]}]`));
      }
    });
    return el;
  }

  function stats(sp) {
    const s = sp.m.stats, box = $("pw-stats");
    if (!s) { box.innerHTML = `<p class="dim">not computed</p>`; return; }
    let rows = s.levels.map((l) => `<tr><td>${esc(l.name)}</td><td>${l.tables}</td><td>${l.bytes}</td><td>${l.valid_entries}</td><td>${l.leaves}</td><td>${l.promotable}</td></tr>`).join("");
    let html = `<table><tr><th>level</th><th>tables</th><th>bytes</th><th>valid</th><th>leaves</th><th>promotable</th></tr>${rows}</table>`;
    const sizes = Object.entries(s.leaves_by_size).map(([k, v]) => `${sizeText(Number(k))}: ${v}`).join(", ");
    html += `<p>table memory ${s.table_bytes} bytes; leaves by size: ${sizes || "none"}; shared tables ${s.shared_tables}</p>`;
    box.innerHTML = html;
    const l = sp.m.lint, lb = $("pw-lint");
    if (!l) { lb.innerHTML = ""; return; }
    if (l.skipped) { lb.innerHTML = `<p class="dim">skipped: ${esc(l.skipped)}</p>`; return; }
    if (!l.findings.length) { lb.innerHTML = `<p class="ok">no findings</p>`; return; }
    const items = l.findings.map((f) => `<li class="sev-${esc(f.severity)}">${esc(f.severity)} ${esc(f.code)}: ${esc(f.message)}${f.va !== null ? ` <a href="#" data-va="${esc(f.va)}">walk</a>` : ""}</li>`).join("");
    lb.innerHTML = `<p>${l.total} finding(s)${l.total > l.findings.length ? `, the first ${l.findings.length} shown` : ""}</p><ul class="lintlist">${items}</ul>`;
    lb.querySelectorAll("a[data-va]").forEach((x) => x.addEventListener("click", (ev) => {
      ev.preventDefault(); const va = BigInt(x.dataset.va); $("pw-va").value = hex(va); showWalk(state.cur, va);
    }));
  }

  // ----------------------------------------------------------------- timeline (boot)
  function timeline(extra) {
    const tl = extra.timeline; if (!tl) return;
    $("pw-timeline").hidden = false;
    const list = $("pw-events"), slider = $("pw-step");
    slider.max = String(tl.length - 1);
    list.innerHTML = tl.map((e, i) => `<li data-i="${i}"><b>${esc(e.kind)}</b> ${esc(e.message)}</li>`).join("");
    const show = (i) => {
      i = Math.max(0, Math.min(tl.length - 1, i)); slider.value = String(i);
      const e = tl[i], t = e.tlb || {};
      list.querySelectorAll("li").forEach((li) => li.classList.toggle("cur", Number(li.dataset.i) === i));
      const tlb = `TLB so far: ${t.hits ?? "?"} hits, ${t.misses ?? "?"} misses, ${t.walks ?? "?"} walks, ${t.stale ?? 0} stale use(s); this step: +${t.d_hits ?? 0} hits, +${t.d_misses ?? 0} misses`;
      const fl = (e.flushes || []).map((f) => `<li>${esc(f)}</li>`).join("");
      const space = e.space !== undefined && e.space !== null ? ` <a href="#" id="pw-goto">show ${esc(state.spaces[e.space].m.name)}</a>` : "";
      $("pw-event").innerHTML = `<b>step ${i + 1}: ${esc(e.kind)}</b> ${esc(e.message)}${space}<br>${tlb}${fl ? `<br>flushes before it:<ul>${fl}</ul>` : ""}`;
      $("pw-stepno").textContent = `${i + 1} / ${tl.length}`;
      const g = $("pw-goto"); if (g) g.addEventListener("click", (ev) => { ev.preventDefault(); choose(e.space); });
    };
    slider.addEventListener("input", () => show(Number(slider.value)));
    $("pw-prev").addEventListener("click", () => show(Number(slider.value) - 1));
    $("pw-next").addEventListener("click", () => show(Number(slider.value) + 1));
    list.addEventListener("click", (ev) => { const li = ev.target.closest("li"); if (li) show(Number(li.dataset.i)); });
    $("pw-checks").innerHTML = (extra.checks || []).map((c) => `<li class="${c.ok ? "ok" : "fault"}">${c.ok ? "ok" : "FAIL"} ${esc(c.name)}: ${esc(c.detail)}</li>`).join("");
    show(0);
  }

  function choose(k) {
    state.cur = state.spaces[k]; $("pw-space").value = String(k);
    const m = state.cur.m, notes = [];
    $("pw-sub").textContent = `${m.name}: ${m.describe}; ${m.root_names.map((n, i) => n + "=" + m.roots[i]).join(", ")}; ${m.runs.count} runs`;
    if (m.runs.capped) notes.push(`Only the first ${m.runs.max} runs are drawn.`);
    if (m.walk.capped) notes.push(`Table entries are capped at ${m.walk.max}: walks into tables left out say so.`);
    $("pw-notes").textContent = notes.join(" ");
    tree(state.cur); stats(state.cur); state.mark = null; draw();
  }

  function legend() {
    const sw = (c, t) => `<span class="sw" style="background:${c}"></span>${t}`;
    $("pw-legend").innerHTML = "permission: " + ["r--", "rw-", "r-x", "rwx"].map((p) => sw(PERM_COLORS[p], p)).join("") +
      sw("rgba(0,0,0,.35)", "user (dark top edge)") + " &nbsp; page size (lower band): " +
      [["4K", 0], ["2M", 1], ["1G", 2], ["512G+", 3]].map(([t, i]) => sw(SIZE_COLORS[i], t)).join("") + sw("#eee", "hole (unmapped)");
  }

  async function main() {
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("a big-endian machine cannot read this report");
    const meta = JSON.parse($("pw-meta").textContent);
    const buf = await inflate($("pw-blob").textContent);
    state.meta = meta;
    document.title = meta.title; $("pw-title").textContent = meta.title;
    state.spaces = meta.spaces.map((m) => new Space(m, buf));
    $("pw-space").innerHTML = meta.spaces.map((m, i) => `<option value="${i}">${esc(m.name)}</option>`).join("");
    $("pw-space").addEventListener("change", (ev) => choose(Number(ev.target.value)));
    $("pw-fold").addEventListener("change", (ev) => { state.fold = ev.target.checked; draw(); });
    $("pw-reset").addEventListener("click", () => { for (const s of state.cur.strips) { s.view = [0, s.span]; s.fview = [0, s.foldSpan]; } draw(); });
    $("pw-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try { showWalk(state.cur, parseVA($("pw-va").value)); }
      catch (err) { const b = $("pw-walk"); b.dataset.state = "error"; b.innerHTML = `<p class="fault">${esc(err.message)}</p>`; }
    });
    legend(); bindMap(); timeline(meta.extra); choose(0);
    document.body.dataset.ready = "1";
  }

  main().catch((err) => { fail(err); document.body.dataset.ready = "error"; });
})();
