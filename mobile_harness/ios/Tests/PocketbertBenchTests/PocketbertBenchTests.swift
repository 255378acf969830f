import Foundation
import PocketbertBench
import XCTest

/// Runs the staged bundle once and prints its record between markers that `pocketbert device run`
/// finds in the `xcodebuild test` log (keys: runtime, backend, load_ms, first_ms, latency_ms
/// {mean, p50, p90, p99, trimmed_mean, min, max, n, warmup}, peak_rss_bytes, status, reason, device, logits: the outputs bundle.json names, in its order, which the host judges).
final class PocketbertBenchTests: XCTestCase {
    func testBenchmarkBundle() throws {
        guard let bundle = Bundle.module.url(forResource: "Bundle", withExtension: nil),
              FileManager.default.fileExists(atPath: bundle.appendingPathComponent("bundle.json").path) else {
            throw XCTSkip("no staged bundle: run this through `pocketbert device run --target ios:UDID`")
        }
        executionTimeAllowance = 3600
        let record = try benchmark(bundle: bundle)
        let json = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        print("POCKETBERT_RESULT_BEGIN")
        print(String(decoding: json, as: UTF8.self))
        print("POCKETBERT_RESULT_END")
        XCTAssertEqual(record["status"] as? String, "ok", "\(record["reason"] ?? "")")
    }
}
