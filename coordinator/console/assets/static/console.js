// Latch console: live updates over server-sent events and grant
// countdowns. Plain DOM: text is only ever set with textContent.
"use strict";

(function () {
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(id, v) {
    var e = document.getElementById(id);
    if (e) e.textContent = v;
  }

  // Nodes: the same filter as the server's nodeMatches and postureMatches.
  function postureOK(p, want) {
    var conds = want.split(",");
    for (var i = 0; i < conds.length; i++) {
      var c = conds[i].trim();
      if (!c) continue;
      c = c.replace("==", "=");
      var at = c.indexOf("=");
      var k = (at < 0 ? c : c.slice(0, at)).trim();
      if (!Object.prototype.hasOwnProperty.call(p, k)) return false;
      if (at >= 0 && p[k] !== c.slice(at + 1).trim()) return false;
    }
    return true;
  }
  function matches(n, q, tag, status, posture) {
    if (posture && !postureOK(n.posture || {}, posture)) return false;
    if (q) {
      var hay = (n.name + " " + n.id + " " + n.addresses.join(" ")).toLowerCase();
      if (hay.indexOf(q.toLowerCase()) < 0) return false;
    }
    if (tag && n.tags.indexOf(tag) < 0) return false;
    if (status === "online") return n.online;
    if (status === "offline") return !n.online;
    if (status === "quarantined") return n.quarantined;
    if (status === "expired") return n.expired;
    return true;
  }
  function value(id) {
    var e = document.getElementById(id);
    return e ? e.value.trim() : "";
  }
  function statusCell(n) {
    var td = el("td");
    td.appendChild(el("span", { "class": n.online ? "dot on" : "dot" }, n.online ? "online" : "offline"));
    if (n.quarantined) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("span", { "class": "pill warn" }, "quarantined")); }
    if (n.expired) { td.appendChild(document.createTextNode(" ")); td.appendChild(el("span", { "class": "pill warn" }, "expired")); }
    return td;
  }
  function onNodes(nodes) {
    var online = 0;
    nodes.forEach(function (n) { if (n.online) online++; });
    setText("ov-nodes", nodes.length);
    setText("ov-online", online);
    setText("ov-offline", nodes.length - online);
    var body = document.getElementById("nodes-body");
    if (!body) return;
    var known = {};
    body.querySelectorAll("tr[data-node-id]").forEach(function (tr) { known[tr.getAttribute("data-node-id")] = true; });
    var q = value("f-q"), tag = value("f-tag"), status = value("f-status"), posture = value("f-posture");
    var shown = 0;
    var frag = document.createDocumentFragment();
    nodes.forEach(function (n) {
      if (!matches(n, q, tag, status, posture)) return;
      shown++;
      var tr = el("tr", { "data-node-id": n.id });
      if (!known[n.id]) tr.className = "fresh";
      var name = el("td");
      name.appendChild(el("a", { href: "/console/nodes/" + encodeURIComponent(n.id) }, n.name));
      tr.appendChild(name);
      tr.appendChild(statusCell(n));
      tr.appendChild(el("td", {}, n.tags.join(", ")));
      tr.appendChild(el("td", {}, n.addresses.join(" ")));
      tr.appendChild(el("td", {}, n.last_seen));
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    setText("nodes-count", shown + " of " + nodes.length + " nodes.");
  }

  function onAccess(reqs) {
    setText("nav-pending", reqs.length ? String(reqs.length) : "");
    setText("ov-pending", reqs.length);
    var body = document.getElementById("pending-body");
    if (!body) return;
    var none = document.getElementById("pending-none");
    if (none) none.hidden = reqs.length > 0;
    var csrf = document.querySelector('meta[name="csrf"]');
    var known = {};
    body.querySelectorAll("tr[data-request-id]").forEach(function (tr) { known[tr.getAttribute("data-request-id")] = tr; });
    var want = {};
    reqs.forEach(function (r) {
      want[r.id] = true;
      if (known[r.id]) return;
      var tr = el("tr", { "data-request-id": r.id, "class": "fresh" });
      tr.appendChild(el("td", {}, r.src_name));
      tr.appendChild(el("td", {}, r.to + (r.port ? ":" + r.port : "")));
      tr.appendChild(el("td", {}, ""));
      tr.appendChild(el("td", {}, r.reason));
      tr.appendChild(el("td", {}, "just now"));
      var td = el("td");
      [["approve", "Approve", "small"], ["deny", "Deny", "small danger"]].forEach(function (a) {
        var f = el("form", { method: "post", action: "/console/access/" + encodeURIComponent(r.id) + "/" + a[0], "class": "inline" });
        f.appendChild(el("input", { type: "hidden", name: "csrf", value: csrf ? csrf.content : "" }));
        f.appendChild(el("input", { name: "reason", placeholder: "reason", "class": "short" }));
        var b = el("button", { type: "submit", "class": a[2] }, a[1]);
        b.setAttribute("data-" + a[0], r.id);
        f.appendChild(b);
        td.appendChild(f);
      });
      tr.appendChild(td);
      body.appendChild(tr);
    });
    for (var id in known) if (!want[id]) known[id].remove();
  }

  // Denied flows on the overview.
  function onFlows(flows) {
    var body = document.querySelector("#denied-flows tbody");
    if (!body) return;
    var frag = document.createDocumentFragment();
    flows.forEach(function (f) {
      var tr = el("tr");
      [f.last, f.src, f.dst, f.port, f.reason, String(f.packets)].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      frag.appendChild(tr);
    });
    if (!flows.length) {
      var tr = el("tr");
      tr.appendChild(el("td", { colspan: "6", "class": "muted" }, "None."));
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  function live() {
    if (!document.body.hasAttribute("data-live") || !window.EventSource) return;
    var es = new EventSource("/console/events");
    es.addEventListener("nodes", function (e) { onNodes(JSON.parse(e.data)); });
    es.addEventListener("access", function (e) { onAccess(JSON.parse(e.data)); });
    es.addEventListener("flows", function (e) { onFlows(JSON.parse(e.data)); });
    es.addEventListener("bye", function () { es.close(); });
  }

  // Grant countdowns: every element with data-expires shows the time left.
  function countdowns() {
    var items = document.querySelectorAll("[data-expires]");
    if (!items.length) return;
    function pad(n) { return n < 10 ? "0" + n : String(n); }
    function tick() {
      var now = Date.now();
      items.forEach(function (e) {
        var left = Math.floor((Date.parse(e.getAttribute("data-expires")) - now) / 1000);
        if (left <= 0) { e.textContent = "expired"; return; }
        var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
        e.textContent = (h ? h + "h " : "") + pad(m) + "m " + pad(s) + "s";
      });
    }
    tick();
    setInterval(tick, 1000);
  }

  // Jump the policy editor to the line of its error.
  function policyError() {
    var at = document.getElementById("error-at"), ta = document.getElementById("policy-source");
    if (!at || !ta) return;
    var line = parseInt(at.getAttribute("data-line"), 10), col = parseInt(at.getAttribute("data-column"), 10) || 1;
    var lines = ta.value.split("\n"), pos = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += col - 1;
    ta.focus();
    ta.setSelectionRange(pos, pos + 1);
  }

  // Check the policy as it is typed: the API's dry run parses it,
  // validates it and runs its tests; the result shows under the editor.
  function policyLive() {
    var ta = document.getElementById("policy-source"), out = document.getElementById("policy-live"),
      form = document.getElementById("policy-form");
    if (!ta || !out || !form || ta.readOnly) return;
    var timer = null, seq = 0;
    ta.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var mine = ++seq, body = new URLSearchParams();
        body.set("csrf", form.querySelector("input[name=csrf]").value);
        body.set("source", ta.value);
        fetch("/console/policy/check", { method: "POST", body: body, credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (c) {
            if (mine !== seq) return;
            out.className = c.ok ? "muted live-ok" : "error live-error";
            out.textContent = c.ok ? "Valid, tests pass: " + c.gained + " pairs gained, " + c.lost + " lost (not saved)."
              : c.error;
          })
          .catch(function () { if (mine === seq) out.textContent = "Could not check the policy."; });
      }, 500);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    live();
    countdowns();
    policyError();
    policyLive();
  });
})();
