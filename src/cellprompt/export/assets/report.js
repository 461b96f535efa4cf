"use strict";
// Trial bodies are rendered from their JSON only when opened: a 500-trial report stays light.
(function () {
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function fmt(v, d) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); }
  function details(summary, content, open) {
    var d = el("details"); if (open) d.open = true;
    d.appendChild(el("summary", null, summary)); d.appendChild(content); return d;
  }
  function renderOutputs(box, outputs) {
    outputs.forEach(function (o) {
      if (o.k === "img") { var img = el("img", "figure"); img.src = o.src; img.alt = "figure"; box.appendChild(img); }
      else if (o.k === "error") box.appendChild(el("pre", "error", o.text));
      else if (o.k === "html") { var div = el("div", "html-output"); div.innerHTML = o.html; box.appendChild(div); }
      else if (o.k === "stream") box.appendChild(el("pre", o.name === "stderr" ? "stream stderr" : "stream", o.text));
      else box.appendChild(el("pre", "stream", o.text));
    });
  }
  function renderTrial(t) {
    var root = el("div", "trial-body");
    var meta = el("p", "meta");
    var open = t.kind === "open";
    meta.appendChild(el("span", "badge " + (t.passed || (open && t.report) ? "ok" : "bad"),
      open ? (t.report ? "reported" : t.status) : (t.passed ? "passed" : t.status)));
    meta.appendChild(document.createTextNode(
      (open ? "open analysis (judged only)" : "score " + fmt(t.score, 3)) +
      (t.cost_unknown ? " · cost unknown" : " · cost $" + fmt(t.cost, 4)) + " · " + t.tokens + " tokens · " +
      fmt(t.wall, 1) + " s · trial " + t.id + (t.limit ? " · limit " + t.limit : "") + (t.error ? " · " + t.error : "")));
    root.appendChild(meta);
    if (t.grades.length) {
      var ul = el("ul", "grades");
      t.grades.forEach(function (g) {
        ul.appendChild(el("li", null, g.grader + ": " + fmt(g.score, 3) + (g.passed ? " ✓ " : " ✗ ") + (g.reasoning || "")));
      });
      root.appendChild(details("Grades", ul, true));
    }
    if (t.judge) {
      var j = el("div", "judge");
      if (t.judge.ok) {
        j.appendChild(el("p", null, "Grade " + fmt(t.judge.grade, 1) + " ± " + fmt(t.judge.sd, 1) + " / 100 by " + t.judge.model +
          (t.judge.figures ? " · saw " + t.judge.figures + " figure(s)" : "")));
        if (t.judge.disagreement) j.appendChild(el("p", "error", "⚠ the judge's samples disagree: they span " + fmt(t.judge.range, 0) + " points"));
        t.judge.samples.forEach(function (s, i) {
          var ul = el("ul");
          s.criteria.forEach(function (c) { ul.appendChild(el("li", null, c.name + ": " + c.score + "/10 " + (c.comment || ""))); });
          j.appendChild(el("p", "meta", "Sample " + (i + 1) + ": " + s.grade));
          j.appendChild(ul);
          j.appendChild(el("p", "judge-comments", s.comments));
        });
      } else {
        j.appendChild(el("p", "error", "Judgement failed: " + t.judge.error));
      }
      root.appendChild(details("Judge", j, true));
    }
    if (open) root.appendChild(details("Report" + (t.report_source ? " (" + t.report_source + ")" : ""),
      el("pre", "stream report", t.report || "(no report was written)"), true));
    root.appendChild(details("System prompt", el("pre", "stream", t.system_prompt), false));
    if (t.first_message) root.appendChild(details("First message", el("pre", "stream", t.first_message), false));
    var conv = el("div", "conversation");
    t.turns.forEach(function (turn) {
      if (turn.text && turn.text.trim()) conv.appendChild(el("div", "assistant", turn.text));
      turn.execs.forEach(function (x) {
        conv.appendChild(el("div", "meta", "In [" + (x.count === null ? " " : x.count) + "] · " + x.status +
          (x.message ? " · " + x.message : "")));
        var code = el("pre", "code");
        if (x.code_html) code.innerHTML = x.code_html; else code.textContent = x.code;
        conv.appendChild(code);
        renderOutputs(conv, x.outputs);
      });
    });
    root.appendChild(el("h4", null, "Conversation"));
    root.appendChild(conv);
    root.appendChild(el("h4", null, "Final answer"));
    root.appendChild(el("pre", "stream answer", t.answer === null ? "(none)" : t.answer));
    return root;
  }
  function toggle(row) {
    var next = row.nextElementSibling;
    if (next && next.classList.contains("trial-body-row")) { next.remove(); row.classList.remove("open"); return; }
    var data = JSON.parse(document.getElementById("trial-data-" + row.dataset.index).textContent);
    var tr = el("tr", "trial-body-row"); var td = el("td"); td.colSpan = row.children.length;
    td.appendChild(renderTrial(data)); tr.appendChild(td);
    row.after(tr); row.classList.add("open");
  }
  var table = document.getElementById("trials");
  if (!table) return;
  table.addEventListener("click", function (ev) {
    if (ev.target.closest("a")) return;  // a trial's link opens it through the address (openHash)
    var row = ev.target.closest("tr.trial-row"); if (row) toggle(row);
  });
  table.addEventListener("keydown", function (ev) {
    var row = ev.target.closest("tr.trial-row"); if (row && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(row); }
  });
  var filter = document.getElementById("filter");
  filter.addEventListener("input", function () {
    var q = filter.value.toLowerCase();
    table.querySelectorAll("tr.trial-row").forEach(function (row) {
      var show = !q || row.textContent.toLowerCase().indexOf(q) >= 0;
      row.style.display = show ? "" : "none";
      var next = row.nextElementSibling;
      if (!show && next && next.classList.contains("trial-body-row")) { next.remove(); row.classList.remove("open"); }
    });
  });
  // report.html#trial-<id> opens that trial: links from the tables, or one pasted into the address bar
  function openHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id.indexOf("trial-") !== 0) return;
    var row = document.getElementById(id);
    if (!row || !row.classList.contains("trial-row")) return;
    if (row.style.display === "none") { filter.value = ""; filter.dispatchEvent(new Event("input")); }
    if (!row.classList.contains("open")) toggle(row);
    row.scrollIntoView({ block: "start" });
  }
  window.addEventListener("hashchange", openHash);
  openHash();
})();
