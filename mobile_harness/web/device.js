// The browser's device runner: what device_runner.py does on a board, done in the page.
//
// Reads BUNDLE/bundle.json (the `bundle` query parameter names the served bundle folder), loads the artifact,
// runs the fixed inputs (first run, warm-up, timed runs with performance.now()), then every window of the
// "eval" and "judge" entries one row at a time, and sends everything back to the host: the logits as raw
// float32 (saved there as .npy beside bundle.json, where the host judges them) and result.json with the timings
// and what the browser says about itself. window.pocketbertDone is set when the host may read the results.
import { browserFacts, fetchNpy, loadArtifact } from "./runtime.js";

const params = new URLSearchParams(location.search);
const bundle = params.get("bundle").replace(/\/?$/, "/");
const logBox = document.getElementById("log");
function log(line) {
  logBox.textContent += "\n" + line;
}

async function put(name, body, shape) {
  const headers = shape ? { "X-Shape": shape.join(",") } : { "Content-Type": "application/json" };
  const response = await fetch(bundle + name, { method: "PUT", body, headers });
  if (!response.ok) throw new Error(`PUT ${name}: ${response.status} ${await response.text()}`);
}

function concat(rows, length) {
  const out = new Float32Array(rows.length * length);
  rows.forEach((row, i) => out.set(row.subarray(0, length), i * length));
  return out;
}

// Every row of a {inputs, outputs} entry once, batch 1 as on a phone; the logits go back as [rows, seq] float32.
async function runWindows(model, entry, length) {
  const windows = {};
  for (const [name, file] of Object.entries(entry.inputs)) windows[name] = await fetchNpy(bundle + file);
  const rows = Object.values(windows)[0].shape[0];
  const starts = [], ends = [];
  for (let row = 0; row < rows; row++) {
    const feed = {};
    for (const [name, array] of Object.entries(windows)) feed[name] = array.data.slice(row * length, (row + 1) * length);
    const [start, end] = await model.run(feed, length);
    starts.push(start);
    ends.push(end);
  }
  await put(entry.outputs[0], concat(starts, length), [rows, length]);
  await put(entry.outputs[1], concat(ends, length), [rows, length]);
  return rows;
}

async function main() {
  const config = await (await fetch(bundle + "bundle.json")).json();
  const facts = await browserFacts();
  const length = config.seq_len;
  const feed = {};
  for (const [name, file] of Object.entries(config.inputs)) feed[name] = (await fetchNpy(bundle + file)).data;

  let started = performance.now();
  const model = await loadArtifact(config.format, bundle + config.artifact, {
    threads: config.threads, seqLen: length, outputNames: config.outputs, litertVersion: params.get("litert"),
    runtimeSettings: config.runtime_settings,
  });
  const loadMs = performance.now() - started;
  log(`loaded ${config.artifact} in ${model.runtime} ${model.version} (${loadMs.toFixed(1)} ms, threads ${model.threads})`);

  started = performance.now();
  const outputs = await model.run(feed, length);
  const firstMs = performance.now() - started;
  for (let i = 0; i < config.warmup; i++) await model.run(feed, length);
  const latencies = [];
  for (let i = 0; i < config.runs; i++) {
    started = performance.now();
    await model.run(feed, length);
    latencies.push(performance.now() - started);
  }
  log(`${config.runs} runs, mean ${(latencies.reduce((a, b) => a + b, 0) / latencies.length).toFixed(2)} ms`);
  await put("device_start_logits.npy", outputs[0], [1, outputs[0].length]);
  await put("device_end_logits.npy", outputs[1], [1, outputs[1].length]);

  const windows = {};
  for (const key of ["eval", "judge"]) {
    if (config[key]) windows[key] = await runWindows(model, config[key], length);
  }
  await put("result.json", JSON.stringify({
    runtime: model.runtime, runtime_version: model.version, load_ms: loadMs, first_ms: firstMs,
    latencies_ms: latencies, warmup: config.warmup, threads: model.threads,
    wasm_thread_pool: model.wasm_thread_pool ?? null, runtime_settings: model.settings, windows, device: facts, error: null,
  }));
}

main().then(
  () => { window.pocketbertDone = { ok: true }; log("done"); },
  async (err) => {
    const message = String((err && err.message) || err).split("\n")[0];
    log("error: " + message);
    try {
      await put("result.json", JSON.stringify({ error: message, device: await browserFacts() }));
    } finally {
      window.pocketbertDone = { ok: false, error: message };
    }
  });
