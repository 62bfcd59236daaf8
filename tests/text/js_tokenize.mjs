// Hugging Face's JavaScript tokenizer (@huggingface/tokenizers, pinned in package-lock.json) on
// the same documents `mpiquant tokenize` reads: `.jsonl` one {"text": ...} per line (blank lines
// skipped), anything else one document (bytes decoded as UTF-8, ill-formed ones -> U+FFFD).
// usage: node js_tokenize.mjs TOKENIZER_DIR INPUT OUT.i32
// Writes the ids as little-endian int32 to OUT.i32; prints {"tokens", "bytes", "seconds", "mb_s"}.
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, input, output] = process.argv.slice(2);
if (!output) {
  console.error("usage: node js_tokenize.mjs TOKENIZER_DIR INPUT OUT.i32");
  process.exit(2);
}
const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const cfgPath = path.join(dir, "tokenizer_config.json");
const config = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
const tok = new Tokenizer(json, config);
const text = fs.readFileSync(input).toString("utf8");
const docs = input.endsWith(".jsonl")
  ? text.split("\n").filter((l) => l.replace(/[ \t\r]/g, "") !== "").map((l) => JSON.parse(l).text)
  : [text];
let bytes = 0;
for (const d of docs) bytes += Buffer.byteLength(d, "utf8");
const t0 = process.hrtime.bigint();
const parts = [];
let n = 0;
for (const d of docs) {
  const ids = tok.encode(d).ids;
  parts.push(ids);
  n += ids.length;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const out = new Int32Array(n);
let k = 0;
for (const ids of parts) for (const id of ids) out[k++] = id;
fs.writeFileSync(output, Buffer.from(out.buffer));
console.log(JSON.stringify({ tokens: n, bytes, seconds, mb_s: bytes / seconds / 1e6 }));
