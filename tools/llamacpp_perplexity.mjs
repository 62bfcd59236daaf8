// Runs a GGUF file in llama.cpp (node-llama-cpp's prebuilt CPU binary, no GPU, nothing built or
// downloaded) and prints one JSON line: the perplexity of token windows fed as ids, and how
// llama.cpp tokenizes a sample text.
//
//   node tools/llamacpp_perplexity.mjs --llamacpp DIR --model M.gguf --tokens FILE --seqlen L
//                                      --nwindows N [--tokenize TEXT]
//
// Used by the GGUF tests (tests/io/gguf/run_gguf_llamacpp.py), jobs/demo.sh and
// tools/gguf_size_table.sh; DIR is where tools/install-llamacpp.sh installed node-llama-cpp.
//
// FILE holds raw bytes = token ids (the demo model's byte vocabulary). Window w is tokens
// [w·L, (w+1)·L); token i >= 1 of a window is predicted from tokens 0..i-1 of the same window
// (each window starts with an empty KV cache), as `mpiquant eval` does. The logits come from
// llama.cpp's probabilities of every position (temperature 1, no top-k/top-p/min-p), so the
// NLL is −log p(next token). KV cache float32 and flash attention off, one thread, so only
// the weights' format differs from mpiquant's float32 forward pass.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

function args(argv) {
  const a = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ["llamacpp", "model", "tokens", "seqlen", "nwindows"])
    if (a[k] === undefined) throw new Error(`--${k} missing`);
  return a;
}

const a = args(process.argv);
const seqlen = Number(a.seqlen), nwindows = Number(a.nwindows);
const entry = join(a.llamacpp, "node_modules", "node-llama-cpp", "dist", "index.js");
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: 1,
                               logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: a.model, gpuLayers: 0 });
const context = await model.createContext({
  contextSize: seqlen, batchSize: seqlen, threads: 1, flashAttention: false,
  experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
});
const bytes = readFileSync(a.tokens);
if (bytes.length < seqlen * nwindows)
  throw new Error(`${a.tokens}: ${bytes.length} tokens, ${seqlen * nwindows} needed`);
const out = { nll: 0, tokens: 0, windows: nwindows, seqlen, vocab: model.tokens.length ?? null,
              context: context.contextSize, train_context: model.trainContextSize };
const gen = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
const seq = context.getSequence();
for (let w = 0; w < nwindows; w++) {
  await seq.clearHistory(); /* an empty KV cache for every window */
  const win = Array.from(bytes.subarray(w * seqlen, (w + 1) * seqlen));
  const input = win.map((t, i) => (i + 1 < win.length ? [t, { generateNext: gen }] : t));
  const res = await seq.controlledEvaluate(input);
  for (let i = 0; i + 1 < win.length; i++) {
    const p = res[i]?.next?.probabilities?.get(win[i + 1]);
    if (!(p > 0)) throw new Error(`window ${w} position ${i}: no probability for token ${win[i + 1]}`);
    out.nll -= Math.log(p);
    out.tokens++;
  }
}
seq.dispose();
out.perplexity = Math.exp(out.nll / out.tokens);
if (a.tokenize !== undefined) out.tokenized = Array.from(model.tokenize(a.tokenize));
console.log(JSON.stringify(out));
await context.dispose();
await model.dispose();
await llama.dispose();
