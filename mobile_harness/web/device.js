// The browser's device runner: what device_runner.py does on a board, done in the page.
//
// Reads BUNDLE/bundle.json (the `bundle` query parameter names the served bundle folder), loads the artifact,
// runs the fixed inputs (first run, warm-up, timed runs with performance.now()), then every row of the
// "eval" and "judge" entries one at a time, and sends everything back to the host: each output (fetched by the
// names bundle.json lists, in its order: start_logits and end_logits for QA, logits for a classifier) as raw
// float32 into the file bundle.json names for it (saved there as .npy, where the host judges them) and result.json
// with the timings and what the browser says about itself. window.pocketbertDone is set when the host may read the
// results.
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

function concat(rows) {
  const width = rows[0].length;
  const out = new Float32Array(rows.length * width);
  rows.forEach((row, i) => out.set(row.subarray(0, width), i * width));
  return out;
}

// The outputs the runtime returned (in bundle.json's output order), each PUT into its file as [rows, scores].
async function putOutputs(files, perOutput) {
  if (perOutput.length < files.length) {
    throw new Error(`the artifact returned ${perOutput.length} outputs, bundle.json names ${files.length}`);
  }
  for (let i = 0; i < files.length; i++) {
    await put(files[i], concat(perOutput[i]), [perOutput[i].length, perOutput[i][0].length]);
  }
}

// Every row of a {inputs, outputs} entry once, batch 1 as on a phone; output i of every row goes back as
// [rows, scores] float32 into entry.outputs[i] (scores: the sequence for QA, the labels for a classifier).
async function runWindows(model, entry, length) {
  const windows = {};
  for (const [name, file] of Object.entries(entry.inputs)) windows[name] = await fetchNpy(bundle + file);
  const rows = Object.values(windows)[0].shape[0];
  const perOutput = entry.outputs.map(() => []);
  for (let row = 0; row < rows; row++) {
    const feed = {};
    for (const [name, array] of Object.entries(windows)) feed[name] = array.data.slice(row * length, (row + 1) * length);
    const outputs = await model.run(feed, length);
    if (outputs.length < perOutput.length) {
      throw new Error(`the artifact returned ${outputs.length} outputs, bundle.json names ${perOutput.length}`);
    }
    outputs.slice(0, perOutput.length).forEach((values, i) => perOutput[i].push(values));
  }
  await putOutputs(entry.outputs, perOutput);
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
  await putOutputs(config.device_outputs, outputs.map((values) => [values]));

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
