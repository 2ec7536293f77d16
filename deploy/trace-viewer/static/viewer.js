"use strict";
/*
 * Tsunagu's trace viewer: search traces and show one as a waterfall, over Jaeger's JSON query API
 * on the same origin (api/services, api/services/{service}/operations, api/traces, api/traces/{id}).
 * Every URL is relative to the page's <base>, which Jaeger rewrites when it runs under a base_path.
 * Data from the API only ever reaches the page as text (textContent), never as markup.
 */
(() => {
  const CASE_TAG = "tsunagu.case_id";
  // Readable on white (at least 3:1 as graphics, 4.5:1 as text). Tsunagu's services keep their
  // colour from page to page; any other service gets one by its name.
  const PALETTE = ["#1f5fa8", "#2e7d32", "#8e3fa8", "#a14d00", "#00796b", "#6d4c41", "#ad1457", "#455a64"];
  const KNOWN_SERVICES = ["intake", "referral", "partner-notification", "housing-support"];

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const en = (text) => el("span", { lang: "en", class: "en" }, text);
  const code = (text) => el("code", {}, text);
  const srOnly = (text) => el("span", { class: "sr-only" }, text);

  // ---- the query API ----

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [key, value] of Object.entries(params)) {
      if (value !== "" && value !== undefined && value !== null) url.searchParams.set(key, value);
    }
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" } });
    } catch (error) {
      throw new ApiError(`Jaeger に接続できません（${error.message}）`, 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // an error page that is not JSON: the status says enough
    }
    if (!response.ok) {
      const reasons = body && Array.isArray(body.errors) ? body.errors.map((e) => e.msg).join("; ") : "";
      throw new ApiError(`HTTP ${response.status} ${reasons || response.statusText}`, response.status);
    }
    return body;
  }

  async function listServices() {
    const body = await api("api/services");
    return (body.data || []).slice().sort();
  }

  async function listOperations(service) {
    const body = await api(`api/services/${encodeURIComponent(service)}/operations`);
    return (body.data || []).slice().sort();
  }

  /** Traces that match the query; with no service chosen, every service is asked and the
   *  answers merged by trace id (a case's trace has spans of several services). */
  async function findTraces(query, tags) {
    const services = query.service ? [query.service] : await listServices();
    const params = { lookback: query.lookback, limit: query.limit };
    if (Object.keys(tags).length) params.tags = JSON.stringify(tags);
    if (query.service && query.operation) params.operation = query.operation;
    const answers = await Promise.all(services.map((service) => api("api/traces", { service, ...params })));
    const byId = new Map();
    for (const trace of answers.flatMap((body) => body.data || [])) {
      const known = byId.get(trace.traceID);
      if (!known || known.spans.length < trace.spans.length) byId.set(trace.traceID, trace);
    }
    return [...byId.values()].map(summarize).sort((a, b) => b.start - a.start).slice(0, Number(query.limit));
  }

  async function getTrace(traceId) {
    const body = await api(`api/traces/${encodeURIComponent(traceId)}`);
    const trace = (body.data || [])[0];
    if (!trace || !trace.spans.length) throw new ApiError("trace not found", 404);
    return trace;
  }

  // ---- reading a trace ----

  const serviceOf = (trace, span) => (trace.processes[span.processID] || {}).serviceName || "?";

  function colourOf(service) {
    const known = KNOWN_SERVICES.indexOf(service);
    if (known >= 0) return PALETTE[known];
    let hash = 0;
    for (const ch of service) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return PALETTE[KNOWN_SERVICES.length + (hash % (PALETTE.length - KNOWN_SERVICES.length))];
  }

  function isError(span) {
    return (span.tags || []).some((tag) =>
      (tag.key === "error" && (tag.value === true || tag.value === "true")) ||
      (tag.key === "otel.status_code" && tag.value === "ERROR"));
  }

  function tagValue(span, key) {
    const tag = (span.tags || []).find((t) => t.key === key);
    return tag ? tag.value : undefined;
  }

  /** The span tree by parent reference: CHILD_OF first, else FOLLOWS_FROM, within this trace.
   *  A span whose parent never arrived becomes a root of its own, marked as such. */
  function buildTree(trace) {
    const nodes = new Map(trace.spans.map((span) => [span.spanID, { span, children: [], parent: null }]));
    const roots = [];
    for (const node of nodes.values()) {
      const refs = (node.span.references || []).filter((r) => r.traceID === node.span.traceID);
      if (node.span.parentSpanID) refs.push({ refType: "CHILD_OF", spanID: node.span.parentSpanID });
      const ref = refs.find((r) => r.refType === "CHILD_OF" && nodes.has(r.spanID)) ||
        refs.find((r) => nodes.has(r.spanID));
      if (ref && ref.spanID !== node.span.spanID) {
        node.parent = nodes.get(ref.spanID);
        node.parent.children.push(node);
      } else {
        node.orphan = refs.length > 0;
        roots.push(node);
      }
    }
    const byStart = (a, b) => a.span.startTime - b.span.startTime;
    const rows = [];
    const seen = new Set();
    const walk = (node, depth) => {
      if (seen.has(node)) return; // a reference cycle would otherwise never end
      seen.add(node);
      rows.push({ ...node, depth });
      node.children.sort(byStart).forEach((child) => walk(child, depth + 1));
    };
    roots.sort(byStart).forEach((root) => walk(root, 0));
    for (const node of nodes.values()) if (!seen.has(node)) walk(node, 0);
    return rows;
  }

  function summarize(trace) {
    const spans = trace.spans;
    const start = Math.min(...spans.map((s) => s.startTime));
    const end = Math.max(...spans.map((s) => s.startTime + s.duration));
    const rows = buildTree(trace);
    const first = rows[0].span;
    return {
      traceID: trace.traceID,
      start,
      duration: end - start,
      spanCount: spans.length,
      services: [...new Set(spans.map((s) => serviceOf(trace, s)))].sort(),
      errors: spans.filter(isError).length,
      caseIds: [...new Set(spans.map((s) => tagValue(s, CASE_TAG)).filter(Boolean))],
      first: { service: serviceOf(trace, first), name: first.operationName },
    };
  }

  // ---- formatting ----

  /** Microseconds since the epoch as Japan time (UTC+9, no daylight saving). */
  function jst(micros) {
    const d = new Date(Math.floor(micros / 1000) + 9 * 3600 * 1000);
    const p = (n, width = 2) => String(n).padStart(width, "0");
    return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ` +
      `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
  }

  function duration(micros) {
    if (micros < 1000) return `${Math.round(micros)} µs`;
    if (micros < 1e6) return `${(micros / 1000).toFixed(micros < 1e4 ? 2 : 1)} ms`;
    return `${(micros / 1e6).toFixed(2)} s`;
  }

  const show = (value) => (typeof value === "object" ? JSON.stringify(value) : String(value));

  function serviceChip(service) {
    return el("span", { class: "chip" }, el("span", { class: "swatch", style: { background: colourOf(service) },
      "aria-hidden": "true" }), service);
  }

  function errorBadge(count) {
    return count
      ? el("span", { class: "badge error" }, `⚠ エラー ${count}件`)
      : el("span", { class: "badge ok" }, "なし");
  }

  // ---- the search view ----

  const form = () => $("search-form").elements;

  function parseTags(text) {
    const tags = {};
    const invalid = [];
    for (const token of text.split(/\s+/).filter(Boolean)) {
      const at = token.indexOf("=");
      if (at <= 0) invalid.push(token);
      else tags[token.slice(0, at)] = token.slice(at + 1);
    }
    return { tags, invalid };
  }

  let servicesLoaded = null;

  function loadServices() {
    servicesLoaded = servicesLoaded || listServices().then((services) => {
      const select = form().service;
      for (const service of services) select.append(el("option", { value: service }, service));
      return services;
    }).catch((error) => {
      servicesLoaded = null;
      status("search-status", `サービス一覧を取得できませんでした: ${error.message}`, true);
      return [];
    });
    return servicesLoaded;
  }

  async function loadOperations(selected = "") {
    const service = form().service.value;
    const select = form().operation;
    select.replaceChildren(el("option", { value: "" }, "すべての操作（all）"));
    select.disabled = !service;
    if (!service) return;
    try {
      for (const op of await listOperations(service)) select.append(el("option", { value: op }, op));
      select.value = selected;
    } catch (error) {
      status("search-status", `操作の一覧を取得できませんでした: ${error.message}`, true);
    }
  }

  function status(id, text, isProblem = false) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("problem", isProblem);
  }

  const QUERY_KEYS = ["service", "operation", "case_id", "tags", "lookback", "limit"];

  function queryFromForm() {
    const f = form();
    return Object.fromEntries(QUERY_KEYS.map((key) => [key, f[key].value.trim()]));
  }

  async function fillForm(params) {
    await loadServices();
    const f = form();
    for (const key of ["service", "case_id", "tags", "lookback", "limit"]) {
      if (params.has(key)) f[key].value = params.get(key);
    }
    if (f.service.selectedIndex < 0) f.service.value = ""; // a service Jaeger has not seen (yet)
    await loadOperations(params.get("operation") || "");
  }

  let lastSearch = "./";

  async function showSearch(params, runIt) {
    $("trace-view").hidden = true;
    $("search-view").hidden = false;
    document.title = "トレース検索 — つなぐ（Tsunagu traces）";
    await fillForm(params);
    if (!runIt) {
      status("search-status", "条件を入れて「検索」を押してください。相談IDだけでも探せます。");
      $("results").replaceChildren();
      return;
    }
    lastSearch = location.pathname + location.search;
    const query = queryFromForm();
    const { tags, invalid } = parseTags(query.tags);
    if (invalid.length) {
      status("search-status", `タグは key=value の形で入れてください: ${invalid.join(" ")}`, true);
      form().tags.focus();
      return;
    }
    if (query.case_id) tags[CASE_TAG] = query.case_id;
    status("search-status", "検索中…");
    $("results").replaceChildren();
    try {
      const found = await findTraces(query, tags);
      status("search-status", found.length
        ? `${found.length}件のトレースが見つかりました。`
        : "該当するトレースはありません。期間を広げるか、サービスを「すべてのサービス」にしてください。");
      if (found.length) $("results").replaceChildren(resultsTable(found));
    } catch (error) {
      status("search-status", `検索できませんでした: ${error.message}`, true);
    }
  }

  function resultsTable(found) {
    const head = ["開始時刻（JST）", "最初のスパン", "所要時間", "スパン数", "サービス", "エラー", "相談ID"];
    return el("table", { class: "results" },
      el("caption", {}, "検索結果 ", en("Traces"), `（新しい順、${found.length}件）`),
      el("thead", {}, el("tr", {}, head.map((text) => el("th", { scope: "col" }, text)))),
      el("tbody", {}, found.map((t) => el("tr", {},
        el("td", { class: "time" }, jst(t.start)),
        el("th", { scope: "row" }, el("a", { href: `trace/${t.traceID}`, "data-route": true },
          `${t.first.service}: ${t.first.name}`), el("br"), el("small", { class: "mono" }, t.traceID)),
        el("td", { class: "num" }, duration(t.duration)),
        el("td", { class: "num" }, String(t.spanCount)),
        el("td", {}, el("ul", { class: "chips" }, t.services.map((s) => el("li", {}, serviceChip(s))))),
        el("td", {}, errorBadge(t.errors)),
        el("td", { class: "mono" }, t.caseIds.join(" ") || "—")))));
  }

  // ---- the trace view ----

  async function showTrace(traceId) {
    $("search-view").hidden = true;
    $("trace-view").hidden = false;
    $("back").setAttribute("href", lastSearch);
    $("trace-title").replaceChildren("トレース ", en("Trace"), " ", el("span", { class: "mono" }, traceId));
    document.title = `トレース ${traceId} — つなぐ`;
    $("trace-summary").replaceChildren();
    $("waterfall").replaceChildren();
    status("trace-status", "読み込み中…");
    let trace;
    try {
      trace = await getTrace(traceId);
    } catch (error) {
      status("trace-status", error.status === 404
        ? "このトレースは見つかりません。Jaeger はトレースをメモリにだけ持つため、再起動の前のものや、まだ届いていないものは見えません。"
        : `トレースを取得できませんでした: ${error.message}`, true);
      return;
    }
    status("trace-status", "");
    const summary = summarize(trace);
    $("trace-summary").replaceChildren(el("dl", { class: "summary" },
      el("div", {}, el("dt", {}, "開始時刻"), el("dd", {}, `${jst(summary.start)} JST`)),
      el("div", {}, el("dt", {}, "所要時間"), el("dd", {}, duration(summary.duration))),
      el("div", {}, el("dt", {}, "スパン数"), el("dd", {}, String(summary.spanCount))),
      el("div", {}, el("dt", {}, "エラー"), el("dd", {}, errorBadge(summary.errors))),
      el("div", {}, el("dt", {}, "相談ID（case_id）"), el("dd", { class: "mono" }, summary.caseIds.join(" ") || "—")),
      el("div", { class: "wide" }, el("dt", {}, "サービス"),
        el("dd", {}, el("ul", { class: "chips" }, summary.services.map((s) => el("li", {}, serviceChip(s))))))));
    $("waterfall").replaceChildren(waterfall(trace, summary));
    // A link to one span (`trace/<id>#<spanID>`, what a row's click leaves in the address bar) opens it.
    const linked = location.hash && document.querySelector(`button[data-span-id="${CSS.escape(location.hash.slice(1))}"]`);
    if (linked) {
      linked.click();
      linked.scrollIntoView({ block: "center" });
    }
  }

  function waterfall(trace, summary) {
    const total = Math.max(summary.duration, 1);
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
      el("span", { class: "tick", style: { left: `${f * 100}%` } }, duration(f * total)));
    const rows = buildTree(trace).map((row, index) => spanRow(trace, row, index, summary.start, total));
    return el("div", { class: "waterfall" },
      el("h2", {}, "スパン ", en("Spans"), "（親子順。行を押すと属性を表示）"),
      el("div", { class: "axis", "aria-hidden": "true" }, el("span", { class: "label" }, "サービス: スパン名"),
        el("span", { class: "timeline" }, ticks), el("span", { class: "dur" }, "所要時間")),
      el("ol", { class: "spans", onkeydown: moveBetweenRows }, rows));
  }

  function spanRow(trace, row, index, traceStart, total) {
    const { span, depth } = row;
    const service = serviceOf(trace, span);
    const offset = span.startTime - traceStart;
    const failed = isError(span);
    const detailId = `span-${index}`;
    const detail = el("div", { id: detailId, class: "detail", hidden: true });
    const button = el("button", {
      type: "button", class: "span-row", "aria-expanded": "false", "aria-controls": detailId,
      "data-span-id": span.spanID,
      onclick: () => {
        const open = button.getAttribute("aria-expanded") !== "true";
        button.setAttribute("aria-expanded", String(open));
        if (open && !detail.firstChild) detail.append(...spanDetail(trace, span, traceStart));
        detail.hidden = !open;
        // Not a bare "#id": with <base href="/"> that would resolve to the root, not this trace.
        if (open) history.replaceState(null, "", `${location.pathname}${location.search}#${span.spanID}`);
      },
    },
    // The marks go before the name, which a narrow screen cuts short.
    el("span", { class: "label", style: { paddingLeft: `${depth * 1.1}rem` }, title: `${service}: ${span.operationName}` },
      depth ? srOnly(`階層 ${depth + 1}、`) : null,
      el("span", { class: "swatch", style: { background: colourOf(service) }, "aria-hidden": "true" }),
      failed ? el("span", { class: "badge error" }, "⚠ エラー") : null,
      row.orphan ? el("span", { class: "badge" }, "親スパンなし") : null,
      el("span", { class: "service" }, service), ": ",
      el("span", { class: "name" }, span.operationName)),
    el("span", { class: "timeline", "aria-hidden": "true" },
      el("span", { class: "bar", style: {
        left: `${(offset / total) * 100}%`, width: `${Math.max((span.duration / total) * 100, 0.3)}%`,
        background: failed ? "#b00020" : colourOf(service) } })),
    srOnly(`、開始 +${duration(offset)}、`),
    el("span", { class: "dur" }, duration(span.duration)));
    return el("li", { class: failed ? "failed" : "" }, button, detail);
  }

  function moveBetweenRows(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const buttons = [...event.currentTarget.querySelectorAll("button.span-row")];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    const next = buttons[Math.min(Math.max(at + (event.key === "ArrowDown" ? 1 : -1), 0), buttons.length - 1)];
    next.focus();
  }

  function keyValueTable(caption, pairs) {
    return el("table", { class: "tags" }, el("caption", {}, caption),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "キー（key）"), el("th", { scope: "col" }, "値（value）"))),
      el("tbody", {}, pairs.map(([key, value]) =>
        el("tr", {}, el("th", { scope: "row" }, code(key)), el("td", { class: "mono" }, show(value))))));
  }

  function sortedTags(tags) {
    const ours = (key) => (key.startsWith("tsunagu.") ? 0 : 1);
    return (tags || []).map((t) => [t.key, t.value])
      .sort(([a], [b]) => ours(a) - ours(b) || a.localeCompare(b));
  }

  function spanDetail(trace, span, traceStart) {
    const parts = [
      el("dl", { class: "facts" },
        el("div", {}, el("dt", {}, "サービス"), el("dd", {}, serviceChip(serviceOf(trace, span)))),
        el("div", {}, el("dt", {}, "スパン名"), el("dd", { class: "mono" }, span.operationName)),
        el("div", {}, el("dt", {}, "spanID"), el("dd", { class: "mono" }, span.spanID)),
        el("div", {}, el("dt", {}, "開始時刻"), el("dd", {}, `${jst(span.startTime)} JST（+${duration(span.startTime - traceStart)}）`)),
        el("div", {}, el("dt", {}, "所要時間"), el("dd", {}, duration(span.duration)))),
      keyValueTable("属性（tags）", sortedTags(span.tags)),
    ];
    const refs = span.references || [];
    if (refs.length) {
      parts.push(el("h3", {}, "参照（references）"), el("ul", { class: "refs" }, refs.map((ref) => el("li", {},
        code(ref.refType), " ", el("span", { class: "mono" }, ref.spanID), " ",
        ref.traceID === span.traceID
          ? "（このトレース内）"
          : el("a", { href: `trace/${ref.traceID}`, "data-route": true }, `別のトレース ${ref.traceID} を開く`)))));
    }
    const logs = span.logs || [];
    if (logs.length) {
      parts.push(el("h3", {}, "イベント（logs）"), el("ul", { class: "logs" }, logs.map((log) => el("li", {},
        `+${duration(log.timestamp - traceStart)} `,
        (log.fields || []).map((f) => el("span", { class: "mono kv" }, `${f.key}=${show(f.value)}`))))));
    }
    const process = trace.processes[span.processID];
    if (process && (process.tags || []).length) {
      parts.push(keyValueTable(`プロセスの属性（process: ${process.serviceName}）`, sortedTags(process.tags)));
    }
    return parts;
  }

  // ---- routing: `search?…` and `trace/<id>` under the base, like Jaeger's own UI ----

  function route(focus) {
    const base = new URL(document.baseURI).pathname;
    const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : "";
    const trace = path.match(/^trace\/([0-9a-fA-F]{1,32})\/?$/);
    const done = trace ? showTrace(trace[1]) : showSearch(new URLSearchParams(location.search), path === "search");
    if (focus) done.then(() => $(trace ? "trace-title" : "search-title").focus({ preventScroll: false }));
  }

  function navigate(href) {
    history.pushState(null, "", href);
    route(true);
  }

  function start() {
    $("search-title").setAttribute("tabindex", "-1");
    $("skip").addEventListener("click", (event) => {
      event.preventDefault(); // "#main" would resolve against <base>, leaving the page
      $("main").focus();
    });
    document.addEventListener("click", (event) => {
      const link = event.target.closest("a[data-route]");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(link.getAttribute("href"));
    });
    window.addEventListener("popstate", () => route(true));
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams(Object.entries(queryFromForm()).filter(([, v]) => v !== ""));
      navigate(`search?${query}`);
    });
    form().service.addEventListener("change", () => loadOperations());
    $("open-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("trace_id").value.trim().toLowerCase();
      if (/^[0-9a-f]{1,32}$/.test(id)) navigate(`trace/${id}`);
      else status("search-status", "トレースIDは16進数（0-9, a-f）で、32文字までです。", true);
    });
    route(false);
  }

  start();
})();
