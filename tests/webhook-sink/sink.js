#!/usr/bin/env node
/*
 * nudgel webhook sink — a test receiver for signed webhooks.
 *
 * Every request to a configured path is verified with the official Standard
 * Webhooks library (npm "standardwebhooks") against each of the path's
 * secrets, then answered as the path says (status sequence, sleep,
 * redirect). A ledger keeps, per path: requests, verified and failed counts,
 * how many requests each secret verified, the most signatures seen in one
 * header, and per webhook-id the number of arrivals and the first and last
 * arrival times. A request that fails verification is answered 401.
 * Listens on 127.0.0.1 only.
 *
 * Usage: node sink.js [--port N] [--config FILE]
 *   prints {"listening": PORT} on stdout once ready.
 *
 * Control API (JSON):
 *   PUT  /_sink/paths/<path>   {"secrets": ["whsec_..."], "status": 200,
 *                               "statuses": [500, 500], "sleep_ms": 0,
 *                               "redirect": "http://...", "body": "..."}
 *        statuses: answers by arrival number of a webhook-id (1st, 2nd, ...);
 *        later arrivals get "status". redirect: answer 301 with Location.
 *   GET  /_sink/ledger[?path=/p][&summary=1]   (without summary: per id, and
 *        the last 10 requests of each path with their webhook headers and body)
 *   POST /_sink/reset          forget every ledger (paths stay)
 * A request to a path never configured is answered 404 and counted under
 * "unknown".
 */
"use strict";

const http = require("http");
const fs = require("fs");
const { Webhook } = require("standardwebhooks");

const MAX_BODY = 1024 * 1024;
const RECENT = 10;
const SHOWN_HEADERS = ["content-type", "user-agent", "traceparent", "webhook-id", "webhook-timestamp",
  "webhook-signature"];

function parseArgs(argv) {
  const out = { port: 0, config: null };
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === "--port") out.port = Number(argv[++i]);
    else if (argv[i] === "--config") out.config = argv[++i];
    else {
      process.stderr.write(`usage: node sink.js [--port N] [--config FILE]\n`);
      process.exit(2);
    }
  }
  return out;
}

const paths = new Map(); // path -> {cfg, verifiers, ledger}
const unknown = { requests: 0 };

function newLedger(nsecrets) {
  return {
    requests: 0,
    verified: 0,
    failures: 0,
    failure_reasons: {},
    verified_by_secret: new Array(nsecrets).fill(0),
    max_signatures: 0,
    ids: new Map(), // webhook-id -> {count, first_ms, last_ms}
    recent: [], // the last RECENT requests: headers that matter, body, verified
  };
}

function configure(path, cfg) {
  const secrets = Array.isArray(cfg.secrets) ? cfg.secrets : [];
  const verifiers = secrets.map((s) => new Webhook(s));
  const old = paths.get(path);
  const entry = { cfg, verifiers, ledger: old ? old.ledger : newLedger(secrets.length) };
  if (entry.ledger.verified_by_secret.length !== secrets.length)
    entry.ledger.verified_by_secret = new Array(secrets.length).fill(0);
  paths.set(path, entry);
}

function ledgerJson(path, entry, summary) {
  const l = entry.ledger;
  let duplicates = 0;
  let lastMs = 0;
  const ids = {};
  for (const [id, rec] of l.ids) {
    if (rec.count > 1) duplicates += rec.count - 1;
    if (rec.last_ms > lastMs) lastMs = rec.last_ms;
    if (!summary) ids[id] = rec;
  }
  const out = {
    path,
    requests: l.requests,
    verified: l.verified,
    failures: l.failures,
    failure_reasons: l.failure_reasons,
    verified_by_secret: l.verified_by_secret,
    max_signatures: l.max_signatures,
    unique_ids: l.ids.size,
    duplicates,
    last_arrival_ms: lastMs,
  };
  if (!summary) {
    out.ids = ids;
    out.recent = l.recent;
  }
  return out;
}

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function control(req, res, url, body) {
  if (req.method === "PUT" && url.pathname.startsWith("/_sink/paths/")) {
    const path = decodeURIComponent(url.pathname.substring("/_sink/paths".length));
    try {
      configure(path, JSON.parse(body || "{}"));
    } catch (e) {
      return sendJson(res, 400, { error: String(e.message || e) });
    }
    return sendJson(res, 200, { ok: true, path });
  }
  if (req.method === "GET" && url.pathname === "/_sink/ledger") {
    const summary = url.searchParams.get("summary") === "1";
    const only = url.searchParams.get("path");
    const out = { paths: {}, unknown: unknown.requests };
    for (const [path, entry] of paths) {
      if (!only || only === path) out.paths[path] = ledgerJson(path, entry, summary);
    }
    return sendJson(res, 200, out);
  }
  if (req.method === "POST" && url.pathname === "/_sink/reset") {
    for (const entry of paths.values()) entry.ledger = newLedger(entry.verifiers.length);
    unknown.requests = 0;
    return sendJson(res, 200, { ok: true });
  }
  return sendJson(res, 404, { error: "no such control route" });
}

function receive(req, res, url, body) {
  const entry = paths.get(url.pathname);
  if (!entry) {
    unknown.requests++;
    res.writeHead(404, { "content-length": 0 });
    return res.end();
  }
  const now = Date.now();
  const l = entry.ledger;
  const cfg = entry.cfg;
  l.requests++;
  const sig = req.headers["webhook-signature"] || "";
  const nsig = sig ? sig.split(" ").length : 0;
  if (nsig > l.max_signatures) l.max_signatures = nsig;
  let ok = false;
  let reason = "no secret configured";
  entry.verifiers.forEach((wh, i) => {
    try {
      wh.verify(body, req.headers);
      l.verified_by_secret[i]++;
      ok = true;
    } catch (e) {
      reason = String(e.message || e);
    }
  });
  if (ok) l.verified++;
  else {
    l.failures++;
    l.failure_reasons[reason] = (l.failure_reasons[reason] || 0) + 1;
  }
  const shown = {};
  for (const h of SHOWN_HEADERS) if (req.headers[h] !== undefined) shown[h] = req.headers[h];
  l.recent.push({ at_ms: now, method: req.method, path: url.pathname, headers: shown, body,
    verified: ok });
  if (l.recent.length > RECENT) l.recent.shift();
  const id = req.headers["webhook-id"] || "(none)";
  let rec = l.ids.get(id);
  if (!rec) {
    rec = { count: 0, first_ms: now, last_ms: now };
    l.ids.set(id, rec);
  }
  rec.count++;
  rec.last_ms = now;
  const arrival = rec.count;
  const answer = () => {
    if (!ok) {
      res.writeHead(401, { "content-length": 0 });
      return res.end();
    }
    if (cfg.redirect) {
      res.writeHead(301, { location: cfg.redirect, "content-length": 0 });
      return res.end();
    }
    let status = cfg.status || 200;
    if (Array.isArray(cfg.statuses) && arrival <= cfg.statuses.length) status = cfg.statuses[arrival - 1];
    const out = cfg.body !== undefined ? String(cfg.body) : "";
    const headers = { "content-length": Buffer.byteLength(out) };
    if (cfg.retry_after !== undefined) headers["retry-after"] = String(cfg.retry_after);
    res.writeHead(status, headers);
    res.end(out);
  };
  if (cfg.sleep_ms > 0) setTimeout(answer, cfg.sleep_ms);
  else answer();
}

function main() {
  const args = parseArgs(process.argv);
  if (args.config) {
    const conf = JSON.parse(fs.readFileSync(args.config, "utf8"));
    for (const [path, cfg] of Object.entries(conf.paths || {})) configure(path, cfg);
  }
  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url, "http://127.0.0.1");
      if (url.pathname.startsWith("/_sink/")) return control(req, res, url, body);
      return receive(req, res, url, body);
    });
  });
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 65000;
  server.listen(args.port, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n");
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main();
