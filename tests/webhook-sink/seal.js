#!/usr/bin/env node
/*
 * seal.js — seals webhook signing secrets the way the deliverer opens them
 * (workers/webhooks/include/nudgel/webhooks/secretbox.h): version 0x01 |
 * 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag, the key id as
 * additional authenticated data. For tests that register endpoints with SQL.
 *
 * Usage: node seal.js <key_id>:<base64 of 32 bytes> [secret...]
 *   reads secrets from the arguments (or one per stdin line) and prints the
 *   sealed bytes of each as hex, one per line. Prints nothing else.
 */
"use strict";
const crypto = require("crypto");

function seal(keyId, key, plain) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv("aes-256-gcm", key, nonce);
  c.setAAD(Buffer.from(keyId, "utf8"));
  const ct = Buffer.concat([c.update(Buffer.from(plain, "utf8")), c.final()]);
  return Buffer.concat([Buffer.from([1]), nonce, ct, c.getAuthTag()]).toString("hex");
}

const entry = process.argv[2] || "";
const colon = entry.indexOf(":");
if (colon < 1) {
  process.stderr.write("usage: node seal.js <key_id>:<base64 key> [secret...]\n");
  process.exit(2);
}
const keyId = entry.substring(0, colon);
const key = Buffer.from(entry.substring(colon + 1), "base64");
if (key.length !== 32) {
  process.stderr.write("seal.js: the key must be 32 bytes\n");
  process.exit(2);
}
const secrets = process.argv.slice(3);
if (secrets.length) {
  for (const s of secrets) process.stdout.write(seal(keyId, key, s) + "\n");
} else {
  const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.length);
  for (const s of lines) process.stdout.write(seal(keyId, key, s) + "\n");
}
