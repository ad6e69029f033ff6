// interp token views: the prompt's tokens as spans, shaded in the page from data sent once as
// JSON (see interp/figures/tokens.py). No network, no libraries. Each view is a <div
// class="itv" data-itv="ID"> followed by <script type="application/json" id="ID-data">.
// Shading is recomputed here on every change (selector, click), which stays well under a
// frame for a few thousand tokens: one style write per token.
(function () {
  "use strict";
  if (window.interpTokenViews) { window.interpTokenViews.renderAll(); return; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "n/a";
    var a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e4)) return x.toExponential(2);
    return x.toFixed(a < 1 ? 3 : 2);
  }
  // One hue for magnitudes (0 → white, 1 → full), two for signed values.
  function shade(v, lo, hi, signed) {
    if (v === null || v === undefined || Number.isNaN(v)) return "";
    if (signed) {
      var m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
      var a = Math.min(Math.abs(v) / m, 1);
      return v >= 0 ? "rgba(213,94,0," + (0.85 * a).toFixed(3) + ")"
                    : "rgba(0,114,178," + (0.85 * a).toFixed(3) + ")";
    }
    var t = hi > lo ? (v - lo) / (hi - lo) : 0;
    t = Math.max(0, Math.min(1, t));
    return "rgba(0,114,178," + (0.85 * t).toFixed(3) + ")";
  }
  function show(tok) {
    return tok.replace(/\n/g, "\u21b5\n").replace(/\t/g, "\u2192");
  }

  // ---------------------------------------------------------------------------- the frame
  function Frame(root, data) {
    this.root = root;
    this.data = data;
    root.textContent = "";
    if (data.title) root.appendChild(el("div", "itv-title", data.title));
    this.controls = root.appendChild(el("div", "itv-controls"));
    this.note = root.appendChild(el("div", "itv-note", data.note || ""));
    this.text = root.appendChild(el("div", "itv-text"));
    this.info = root.appendChild(el("div", "itv-info", "\u00a0"));
    this.legend = root.appendChild(el("div", "itv-legend"));
    var frag = document.createDocumentFragment();
    this.spans = new Array(data.tokens.length);
    var roleColors = data.role_colors || {};
    for (var i = 0; i < data.tokens.length; i++) {
      var s = el("span", "itv-tok", show(data.tokens[i]));
      s.dataset.i = i;
      var role = data.roles[i];
      if (role !== "regular" && roleColors[role]) {
        s.classList.add("itv-role");
        s.style.boxShadow = "inset 0 -3px 0 " + roleColors[role];
      }
      frag.appendChild(s);
      this.spans[i] = s;
    }
    this.text.appendChild(frag);
    var seen = {};
    for (var j = 0; j < data.roles.length; j++) seen[data.roles[j]] = 1;
    for (var r in seen) {
      if (r === "regular" || !roleColors[r]) continue;
      var k = this.legend.appendChild(el("span", "itv-key", r));
      k.style.boxShadow = "inset 0 -3px 0 " + roleColors[r];
    }
    if (data.kind === "attention") this.legend.appendChild(el("span", "itv-key itv-sink", "sink"));
    this.legend.appendChild(el("span", "itv-scale", data.scale || ""));
  }
  Frame.prototype.select = function (label, options, onchange) {
    var wrap = this.controls.appendChild(el("label", "itv-label", label + " "));
    var sel = wrap.appendChild(el("select", "itv-select"));
    sel.dataset.name = label;
    for (var i = 0; i < options.length; i++) {
      var o = sel.appendChild(el("option", null, options[i].label));
      o.value = String(i);
    }
    sel.addEventListener("change", function () { onchange(+sel.value); });
    return sel;
  };
  Frame.prototype.paint = function (values, lo, hi, signed) {
    for (var i = 0; i < this.spans.length; i++)
      this.spans[i].style.backgroundColor = shade(values[i], lo, hi, signed);
  };
  Frame.prototype.mark = function (i, cls) {
    var old = this.text.querySelectorAll("." + cls);
    for (var j = 0; j < old.length; j++) old[j].classList.remove(cls);
    if (i !== null && i >= 0) this.spans[i].classList.add(cls);
  };
  Frame.prototype.on = function (event, fn) {
    this.text.addEventListener(event, function (e) {
      var t = e.target;
      if (t && t.classList && t.classList.contains("itv-tok")) fn(+t.dataset.i, e);
    });
  };
  Frame.prototype.tokenLabel = function (i) {
    return i + " " + JSON.stringify(this.data.tokens[i]) + " (" + this.data.roles[i] + ")";
  };
  function range(arr) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < arr.length; i++) {
      var v = arr[i];
      if (v === null || Number.isNaN(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return lo === Infinity ? [0, 1] : [lo, hi];
  }

  // ---------------------------------------------------------------- 1. future share by token
  function futureShare(f, d) {
    var cur = 0;
    function draw() {
      var s = d.series[cur];
      f.paint(s.share, 0, 1, false);
      f.root.dataset.state = String(cur);
    }
    f.select("site / layer", d.series, function (k) { cur = k; draw(); });
    f.on("mouseover", function (i) {
      var s = d.series[cur];
      f.info.textContent = f.tokenLabel(i) + "  future share " + fmt(s.share[i]) +
        "  |  \u2016self\u2016 " + fmt(s.self[i]) + "  \u2016future\u2016 " + fmt(s.future[i]) +
        "  \u2016total\u2016 " + fmt(s.total[i]);
    });
    draw();
  }

  // ------------------------------------------------------------------------- 2. who reads me
  // pairs per series: src[], tgt[], val[]; indexed once into per-position lists.
  function whoReadsMe(f, d) {
    var n = d.tokens.length, cur = 0, picked = null, mode = 0;
    var index = d.series.map(function (s) {
      var bySrc = new Array(n), byTgt = new Array(n);
      for (var i = 0; i < n; i++) { bySrc[i] = []; byTgt[i] = []; }
      for (var p = 0; p < s.src.length; p++) {
        bySrc[s.src[p]].push(p);
        byTgt[s.tgt[p]].push(p);
      }
      var r = range(s.val);
      return { bySrc: bySrc, byTgt: byTgt, lo: r[0], hi: r[1] };
    });
    var values = new Array(n);
    function draw() {
      var s = d.series[cur], ix = index[cur];
      for (var i = 0; i < n; i++) values[i] = null;
      if (picked !== null) {
        var list = mode === 0 ? ix.bySrc[picked] : ix.byTgt[picked];
        var lo = Infinity, hi = -Infinity;
        for (var q = 0; q < list.length; q++) {
          var p = list[q], v = s.val[p];
          values[mode === 0 ? s.tgt[p] : s.src[p]] = v;
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        if (d.signed) f.paint(values, lo, hi, true);
        else f.paint(values, Math.min(0, lo), hi, false);
      } else {
        f.paint(values, 0, 1, false);
      }
      f.mark(picked, "itv-picked");
      f.root.dataset.state = cur + ":" + mode + ":" + picked;
    }
    f.select("site / layer", d.series, function (k) { cur = k; draw(); });
    f.select("click a token to see", [
      { label: "the later losses that draw on it" },
      { label: "the earlier positions its loss draws on" }], function (k) { mode = k; draw(); });
    f.on("click", function (i) { picked = picked === i ? null : i; draw(); });
    f.on("mouseover", function (i) {
      var txt = f.tokenLabel(i);
      if (picked !== null && values[i] !== null) txt += "  " + d.value_name + " " + fmt(values[i]);
      f.info.textContent = txt;
    });
    draw();
  }

  // --------------------------------------------------------------------- 3. attention by head
  // per series: for each query q, keys[q][] and attn[q][] (entries above a floor), the mean
  // attention each key receives from later queries, and the sinks.
  function attention(f, d) {
    var n = d.tokens.length, cur = 0, picked = null;
    var values = new Array(n);
    function draw() {
      var s = d.series[cur];
      if (picked === null) {
        f.paint(s.received, 0, s.received_max, false);
        f.note.textContent = d.note_received;
      } else {
        for (var i = 0; i < n; i++) values[i] = null;
        var ks = s.keys[picked], as = s.attn[picked];
        for (var j = 0; j < ks.length; j++) values[ks[j]] = as[j];
        f.paint(values, 0, 1, false);
        f.note.textContent = "attention from query " + f.tokenLabel(picked) +
          " to each key (click it again to go back)";
      }
      var sinks = f.text.querySelectorAll(".itv-sink");
      for (var m = 0; m < sinks.length; m++) sinks[m].classList.remove("itv-sink");
      for (var k = 0; k < s.sinks.length; k++) f.spans[s.sinks[k]].classList.add("itv-sink");
      f.mark(picked, "itv-picked");
      f.root.dataset.state = cur + ":" + picked;
    }
    f.select("layer / head", d.series, function (k) { cur = k; draw(); });
    f.on("click", function (i) { picked = picked === i ? null : i; draw(); });
    f.on("mouseover", function (i) {
      var txt = f.tokenLabel(i) + "  received (mean over later queries) " + fmt(d.series[cur].received[i]);
      if (picked !== null && values[i] !== null) txt += "  attention from the query " + fmt(values[i]);
      f.info.textContent = txt;
    });
    draw();
  }

  // ------------------------------------------------------------------------- 4. lens by token
  function lens(f, d) {
    var cur = 0, picked = null;
    var table = f.root.appendChild(el("table", "itv-lens"));
    function draw() {
      var s = d.series[cur];
      f.paint(s.agree, 0, 1, false);
      f.mark(picked, "itv-picked");
      table.textContent = "";
      if (picked !== null) {
        var head = table.appendChild(el("tr"));
        ["offset", "true token", "lens top-" + d.k, "model's own top-" + d.k].forEach(
          function (h) { head.appendChild(el("th", null, h)); });
        for (var o = 0; o < d.offsets.length; o++) {
          var row = table.appendChild(el("tr"));
          var t = picked + d.offsets[o];
          row.appendChild(el("td", null, "t+" + d.offsets[o]));
          row.appendChild(el("td", null, t < d.tokens.length ? JSON.stringify(d.tokens[t]) : "(end)"));
          row.appendChild(el("td", null, (d.lens[s.layer_index][o][picked] || []).map(JSON.stringify).join("  ")));
          row.appendChild(el("td", null, (d.model[o][picked] || []).map(JSON.stringify).join("  ")));
        }
      }
      f.root.dataset.state = cur + ":" + picked;
    }
    f.select("layer / offset", d.series, function (k) { cur = k; draw(); });
    f.on("click", function (i) { picked = picked === i ? null : i; draw(); });
    f.on("mouseover", function (i) {
      var s = d.series[cur], g = d.lens[s.layer_index][s.offset_index][i];
      f.info.textContent = f.tokenLabel(i) + "  lens top-1 " +
        (g ? JSON.stringify(g[0]) : "n/a") + "  model's own " +
        (d.model[s.offset_index][i] ? JSON.stringify(d.model[s.offset_index][i][0]) : "n/a");
    });
    draw();
  }

  var KINDS = { future_share: futureShare, who_reads_me: whoReadsMe, attention: attention,
                lens: lens };
  function render(root) {
    if (root.dataset.itvDone) return;
    var data = JSON.parse(document.getElementById(root.dataset.itv + "-data").textContent);
    var t0 = performance.now();
    KINDS[data.kind](new Frame(root, data), data);
    root.dataset.itvDone = "1";
    root.dataset.renderMs = (performance.now() - t0).toFixed(1);
  }
  function renderAll() {
    var roots = document.querySelectorAll("div.itv[data-itv]");
    for (var i = 0; i < roots.length; i++) render(roots[i]);
  }
  window.interpTokenViews = { render: render, renderAll: renderAll };
  renderAll();
})();
