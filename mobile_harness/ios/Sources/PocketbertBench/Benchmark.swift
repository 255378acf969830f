import CoreML
import ExecuTorch
import Foundation
#if canImport(UIKit)
import UIKit
#endif

/// bundle.json, as `pocketbert device run` writes it.
public struct BundleConfig: Decodable {
    public let artifact: String
    public let format: String
    public let seq_len: Int
    public let warmup: Int
    public let runs: Int
    public let threads: Int?
    public let inputs: [String: String]
    public let expected: [String]
    /// The task's output names, in the order the host judges them: start_logits, end_logits (QA) or logits (classifier).
    public let outputs: [String]
}

/// One model loaded in its runtime: run the fixed inputs, return its outputs (bundle.json's, in its order) as flat arrays.
protocol LoadedModel {
    func predict() throws -> [[Float]]
}

final class CoreMLModel: LoadedModel {
    let model: MLModel
    let features: MLDictionaryFeatureProvider
    let outputs: [String]

    init(url: URL, inputs: [String: NpyArray], outputs: [String]) throws {
        self.outputs = outputs
        // Compiling the .mlpackage is part of what a first launch pays, so it counts in load time.
        let compiled = try MLModel.compileModel(at: url)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = .all
        model = try MLModel(contentsOf: compiled, configuration: configuration)
        var values: [String: MLFeatureValue] = [:]
        for (name, array) in inputs {
            let multi = try MLMultiArray(shape: array.shape.map { NSNumber(value: $0) }, dataType: .int32)
            for (i, v) in array.int64s.enumerated() { multi[i] = NSNumber(value: Int32(v)) }
            values[name] = MLFeatureValue(multiArray: multi)
        }
        features = try MLDictionaryFeatureProvider(dictionary: values)
    }

    func predict() throws -> [[Float]] {
        let out = try model.prediction(from: features)
        return try outputs.map { name in
            guard let array = out.featureValue(for: name)?.multiArrayValue else {
                throw BenchError.unsupported("the Core ML model has no output \(name)")
            }
            return (0..<array.count).map { array[$0].floatValue }
        }
    }
}

final class ExecuTorchModel: LoadedModel {
    let module: Module
    let tensors: [Tensor<Int64>]
    let count: Int

    init(url: URL, names: [String], inputs: [String: NpyArray], outputs: Int) throws {
        count = outputs
        module = Module(filePath: url.path)
        try module.load("forward")
        // Inputs in the exported signature's order (bundle.json keeps the manifest's order in `names`).
        tensors = names.map { Tensor<Int64>(inputs[$0]!.int64s, shape: inputs[$0]!.shape) }
    }

    func predict() throws -> [[Float]] {
        let outputs = try module.forward(tensors)
        guard outputs.count >= count else {
            throw BenchError.unsupported("the ExecuTorch program returned \(outputs.count) outputs, bundle.json names \(count)")
        }
        return try outputs.prefix(count).map { value in
            guard let tensor: Tensor<Float> = value.tensor() else {
                throw BenchError.unsupported("an ExecuTorch output is not a float tensor")
            }
            return tensor.scalars()
        }
    }
}

func milliseconds(_ start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

/// mean, p50, p90, p99 (linear interpolation), trimmed mean (middle 80%), min, max: as pocketbert's bench.
public func latencyStats(_ samples: [Double], warmup: Int) -> [String: Double] {
    let sorted = samples.sorted()
    func percentile(_ q: Double) -> Double {
        let position = q * Double(sorted.count - 1)
        let low = Int(position.rounded(.down)), high = Int(position.rounded(.up))
        return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
    }
    let cut = Int((0.1 * Double(sorted.count)).rounded(.down))
    let middle = sorted[cut..<(sorted.count - cut)]
    return ["mean": sorted.reduce(0, +) / Double(sorted.count), "p50": percentile(0.5), "p90": percentile(0.9),
            "p99": percentile(0.99), "trimmed_mean": middle.reduce(0, +) / Double(middle.count),
            "min": sorted.first!, "max": sorted.last!, "n": Double(sorted.count), "warmup": Double(warmup)]
}

func peakResidentBytes() -> Int? {
    var info = task_vm_info_data_t()
    var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
    let status = withUnsafeMutablePointer(to: &info) {
        $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
            task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
        }
    }
    return status == KERN_SUCCESS ? Int(info.resident_size_peak) : nil
}

func deviceFacts() -> [String: Any] {
    var system = utsname()
    uname(&system)
    let machine = withUnsafeBytes(of: &system.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let thermal: String
    switch ProcessInfo.processInfo.thermalState {
    case .nominal: thermal = "nominal"
    case .fair: thermal = "fair"
    case .serious: thermal = "serious"
    case .critical: thermal = "critical"
    @unknown default: thermal = "unknown"
    }
    #if canImport(UIKit)
    let os = "\(UIDevice.current.systemName) \(UIDevice.current.systemVersion)"
    #else
    let os = ProcessInfo.processInfo.operatingSystemVersionString
    #endif
    return ["model": machine, "os": os, "thermal": thermal,
            "low_power_mode": ProcessInfo.processInfo.isLowPowerModeEnabled]
}

/// Load, first inference, warm-up, timed runs, output check: the record pocketbert merges into results.json.
public func benchmark(bundle: URL) throws -> [String: Any] {
    let config = try JSONDecoder().decode(BundleConfig.self, from: Data(contentsOf: bundle.appendingPathComponent("bundle.json")))
    let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: bundle.appendingPathComponent("manifest.json"))) as! [String: Any]
    let names = (manifest["inputs"] as! [[String: Any]]).map { $0["name"] as! String }
    let inputs = try config.inputs.mapValues { try NpyArray(contentsOf: bundle.appendingPathComponent($0)) }
    let artifact = bundle.appendingPathComponent(config.artifact)

    var start = DispatchTime.now()
    let model: LoadedModel
    switch config.format {
    case "coreml": model = try CoreMLModel(url: artifact, inputs: inputs, outputs: config.outputs)
    case "executorch": model = try ExecuTorchModel(url: artifact, names: names, inputs: inputs, outputs: config.outputs.count)
    default: throw BenchError.unsupported("format \(config.format) does not run on iOS here")
    }
    let loadMs = milliseconds(start)
    start = DispatchTime.now()
    let outputs = try model.predict()
    let firstMs = milliseconds(start)
    for _ in 0..<config.warmup { _ = try model.predict() }
    var latencies: [Double] = []
    for _ in 0..<config.runs {
        start = DispatchTime.now()
        _ = try model.predict()
        latencies.append(milliseconds(start))
    }

    // The host judges these logits by pocketbert's rulebook (pocketbert/rules.py), as it does every target's.
    return [
        "runtime": config.format, "backend": config.format == "coreml" ? "all" : "xnnpack",
        "load_ms": loadMs, "first_ms": firstMs, "latency_ms": latencyStats(latencies, warmup: config.warmup),
        "peak_rss_bytes": peakResidentBytes() as Any, "status": "ok", "reason": NSNull(),
        "device": deviceFacts(), "logits": outputs,
    ]
}
