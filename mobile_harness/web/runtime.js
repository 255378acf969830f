// The two web runtimes behind one call: load an artifact, run one feed, get its outputs back by name, in the order
// options.outputNames lists them (bundle.json's: start_logits and end_logits for QA, logits for a classifier).
//
// ONNX files run in onnxruntime-web (WASM, threads when the page is cross-origin isolated); .tflite files in
// LiteRT.js (@litertjs/core, its threaded WASM build). Both packages are served by the host under /node/
// (installed by `make setup` into .node/web); nothing is fetched from the internet.

export const MODULES = "/node/";

// A 16-byte SIMD module (one v128 local): WebAssembly.validate says whether this engine has SIMD.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
  65, 0, 253, 15, 253, 98, 11]);

export function wasmSimd() {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch (err) {
    return false;
  }
}

export async function browserFacts() {
  // The user agent string is reduced to "156.0.0.0"; the full version is a high-entropy client hint.
  let version = null;
  try {
    const hints = await navigator.userAgentData.getHighEntropyValues(["fullVersionList"]);
    const entry = hints.fullVersionList.find((b) => /Chromium|Chrome/.test(b.brand));
    version = entry ? entry.version : null;
  } catch (err) {
    version = null;
  }
  const match = navigator.userAgent.match(/(?:HeadlessChrome|Chrome|Chromium)\/([\d.]+)/);
  return {
    user_agent: navigator.userAgent,
    browser: "Chromium",
    browser_version: version || (match ? match[1] : null),
    hardware_concurrency: navigator.hardwareConcurrency,
    cross_origin_isolated: self.crossOriginIsolated === true,
    shared_array_buffer: typeof SharedArrayBuffer !== "undefined",
    wasm_simd: wasmSimd(),
    platform: navigator.platform,
  };
}

// The runtime a format runs in here; the host refuses every other format before a page opens.
export const RUNTIMES = { onnx: "onnxruntime-web", tflite: "litert.js" };

function toInt(values, dtype) {
  // .npy windows hold int64; ONNX files take int64 (BigInt64Array) or int32, .tflite files int32.
  if (dtype === "int64") return BigInt64Array.from(values, (v) => BigInt(v));
  return Int32Array.from(values, (v) => Number(v));
}

async function loadOnnx(url, options) {
  const ort = await import(MODULES + "onnxruntime-web/dist/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = MODULES + "onnxruntime-web/dist/";
  // 0 lets onnxruntime-web choose (half the cores, at most 4, when threads are available).
  ort.env.wasm.numThreads = options.threads || 0;
  ort.env.wasm.simd = true;
  ort.env.logLevel = "error";
  // The manifest's runtime settings (pocketbert/sessions.py applies them on every native runner): session config
  // entries go through `extra`; onnxruntime-web has no option for disabled optimizers, so the row says so.
  const settings = options.runtimeSettings || {};
  const entries = settings.config_entries || {};
  const session = await ort.InferenceSession.create(url, {
    executionProviders: ["wasm"], graphOptimizationLevel: "all", extra: { ...entries },
  });
  const applied = { config_entries: entries };
  if ((settings.disabled_optimizers || []).length) {
    applied.not_applied = { disabled_optimizers: settings.disabled_optimizers,
      why: "onnxruntime-web has no option to disable graph optimizers" };
  }
  const wanted = {};
  for (const name of session.inputNames) {
    const meta = (session.inputMetadata || []).find((m) => m.name === name);
    wanted[name] = meta && meta.type === "int32" ? "int32" : "int64";
  }
  const outputs = options.outputNames || session.outputNames;
  return {
    runtime: RUNTIMES.onnx,
    version: ort.env.versions ? (ort.env.versions.web || ort.env.versions.common) : null,
    // What onnxruntime-web actually configured (it resolves 0 to its own choice at init).
    threads: ort.env.wasm.numThreads,
    settings: applied,
    async run(feed, length) {
      const inputs = {};
      for (const [name, values] of Object.entries(feed)) {
        const dtype = wanted[name] || "int64";
        inputs[name] = new ort.Tensor(dtype, toInt(values, dtype), [1, length]);
      }
      const result = await session.run(inputs);
      return outputs.map((name) => {
        if (!result[name]) throw new Error(`the model returned no output '${name}' (it returned ${Object.keys(result)})`);
        return Float32Array.from(result[name].data);
      });
    },
  };
}

let liteRtLoaded = null;

async function loadTflite(url, options) {
  const litert = await import("@litertjs/core");
  const threaded = self.crossOriginIsolated === true && options.threads !== 1;
  if (!liteRtLoaded) liteRtLoaded = litert.loadLiteRt(MODULES + "@litertjs/core/wasm/", { threads: threaded });
  const rt = await liteRtLoaded;
  const compile = { accelerator: "wasm" };
  if (options.threads) compile.cpuOptions = { numThreads: options.threads };
  const model = await litert.loadAndCompile(url, compile);
  // A file holds one signature per fixed length ("seq64", "seq384", ...): pick the one of this length.
  const signatures = model.signatures;
  let runner = null;
  for (const [key, signature] of Object.entries(signatures)) {
    const details = signature.getInputDetails();
    if (details.every((d) => d.shape[d.shape.length - 1] === options.seqLen)) {
      runner = signature;
      break;
    }
  }
  if (!runner) throw new Error(`no signature of this .tflite takes length ${options.seqLen}: ${Object.keys(signatures)}`);
  const inputDetails = Object.fromEntries(runner.getInputDetails().map((d) => [d.name, d]));
  let threads = null;
  try {
    threads = rt.liteRtWasm.getThreadCount();
  } catch (err) {
    threads = null;
  }
  const outputs = options.outputNames;
  return {
    runtime: RUNTIMES.tflite,
    version: options.litertVersion || null, // @litertjs/core's package version (the host reads it from package.json)
    // What the compiled model runs with: LiteRT.js fills cpuOptions.numThreads with its pool size (the core
    // count) when none is asked; the single-threaded build (1 thread asked, or no isolation) runs on 1.
    threads: threaded ? ((model.options && model.options.cpuOptions && model.options.cpuOptions.numThreads) ||
      options.threads || threads) : 1,
    wasm_thread_pool: threads,
    settings: {},
    async run(feed, length) {
      const inputs = {};
      for (const [name, values] of Object.entries(feed)) {
        const dtype = (inputDetails[name] && inputDetails[name].dtype) || "int32";
        inputs[name] = new litert.Tensor(dtype === "int64" ? toInt(values, "int64") : toInt(values, "int32"), [1, length]);
      }
      const result = await runner.run(inputs);
      const out = [];
      for (const name of outputs) {
        const tensor = result[name];
        if (!tensor) throw new Error(`the signature returned no output '${name}' (it returned ${Object.keys(result)})`);
        const moved = await tensor.moveTo("wasm");
        out.push(Float32Array.from(moved.toTypedArray()));
        if (moved !== tensor) moved.delete();
        tensor.delete();
      }
      for (const tensor of Object.values(inputs)) tensor.delete();
      return out;
    },
  };
}

// format: "onnx" | "tflite"; options: {threads, seqLen, outputNames, litertVersion, runtimeSettings}.
export async function loadArtifact(format, url, options) {
  if (format === "onnx") return loadOnnx(url, options);
  if (format === "tflite") return loadTflite(url, options);
  throw new Error(`format ${format} has no runtime in the browser (it runs onnx and tflite)`);
}

// --- .npy (version 1/2/3, little-endian, C order) -----------------------------------------------------------

const NPY_TYPES = {
  "<i8": BigInt64Array, "<i4": Int32Array, "<f4": Float32Array, "<f8": Float64Array, "|u1": Uint8Array,
  "<u1": Uint8Array, "|i1": Int8Array,
};

export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = header.match(/'descr':\s*'([^']+)'/)[1];
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error("Fortran-ordered .npy is not supported");
  const Type = NPY_TYPES[descr];
  if (!Type) throw new Error(`.npy dtype ${descr} is not supported`);
  const offset = start + headerLen;
  const data = new Type(buffer.slice(offset));
  return { shape, data: Type === BigInt64Array ? Array.from(data, Number) : data };
}

export async function fetchNpy(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return parseNpy(await response.arrayBuffer());
}
