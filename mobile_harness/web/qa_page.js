// The QA page: everything runs in this browser from the artifact folder the host serves under ?artifact=/b/NAME/.
import { loadArtifact } from "./runtime.js";
import { WordPiece, decodeNbest, prepareWindows, windowFor } from "./qa.js";

const params = new URLSearchParams(location.search);
const folder = (params.get("artifact") || "/b/artifact/").replace(/\/?$/, "/");
const $ = (id) => document.getElementById(id);

async function getJson(name) {
  const response = await fetch(folder + name);
  if (!response.ok) throw new Error(`GET ${folder + name}: ${response.status}`);
  return response.json();
}

function show(id, value) {
  $(id).textContent = value;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function setup() {
  const [manifest, tokenizerJson] = await Promise.all([getJson("manifest.json"), getJson("tokenizer.json")]);
  const tokenizer = new WordPiece(tokenizerJson);
  const qaWindow = windowFor(manifest, params.get("max_seq_len") ? Number(params.get("max_seq_len")) : undefined);
  const inputNames = manifest.inputs.map((spec) => spec.name);
  const threads = params.get("threads") ? Number(params.get("threads")) : undefined;
  const started = performance.now();
  const model = await loadArtifact(manifest.format, folder + manifest.artifact, {
    threads, seqLen: qaWindow.length, outputNames: manifest.outputs.map((spec) => spec.name),
    litertVersion: params.get("litert"), runtimeSettings: manifest.runtime_settings,
  });
  const loadMs = performance.now() - started;
  show("status", `${manifest.format}/${manifest.precision} in ${model.runtime} ${model.version}, ` +
    `${model.threads} thread(s), window ${qaWindow.length} tokens; loaded in ${loadMs.toFixed(0)} ms`);

  async function answer(question, context) {
    const t0 = performance.now();
    const windows = prepareWindows(tokenizer, question, context, qaWindow, inputNames);
    const t1 = performance.now();
    const logits = [];
    for (const w of windows) logits.push(await model.run(w.inputs, qaWindow.length));
    const t2 = performance.now();
    const nbest = decodeNbest(context, windows, logits);
    const t3 = performance.now();
    const best = nbest[0] || { text: "", probability: null, start: 0, end: 0 };
    return { ...best, nbest, windows: windows.length, tokenize_ms: t1 - t0, model_ms: t2 - t1, decode_ms: t3 - t2,
      latency_ms: t3 - t0 };
  }

  async function onAsk() {
    $("ask").disabled = true;
    try {
      const context = $("context").value;
      const result = await answer($("question").value, context);
      show("answer", result.text || "(no answer)");
      show("score", result.probability === null ? "—" : result.probability.toFixed(3));
      show("latency", result.latency_ms.toFixed(1));
      show("tokenize-ms", result.tokenize_ms.toFixed(1));
      show("model-ms", result.model_ms.toFixed(1));
      show("decode-ms", result.decode_ms.toFixed(1));
      show("windows", String(result.windows));
      $("highlight").innerHTML = result.text ? escapeHtml(context.slice(0, result.start)) + "<mark>" +
        escapeHtml(context.slice(result.start, result.end)) + "</mark>" + escapeHtml(context.slice(result.end)) : "";
      window.pocketbertAnswer = { text: result.text, probability: result.probability, latency_ms: result.latency_ms,
        start: result.start, end: result.end, windows: result.windows };
    } catch (err) {
      show("status", "error: " + err.message);
      window.pocketbertAnswer = { error: err.message };
    } finally {
      $("ask").disabled = false;
    }
  }

  $("ask").addEventListener("click", onAsk);
  $("ask").disabled = false;
  // For tests and the curious: the page's tokenizer and windows, to compare with pocketbert/qa.py's.
  window.pocketbertQA = {
    encode: (text) => tokenizer.encode(text),
    windows: (question, context) => prepareWindows(tokenizer, question, context, qaWindow, inputNames),
    answer, window: qaWindow, model: { runtime: model.runtime, version: model.version, threads: model.threads },
  };
}

setup().then(
  () => { window.pocketbertReady = { ok: true }; },
  (err) => { show("status", "error: " + err.message); window.pocketbertReady = { ok: false, error: err.message }; });
