// swift-tools-version:5.9
// The pocketbert iOS benchmark: a SwiftPM library plus one XCTest, run on a device by
// `xcodebuild test -scheme PocketbertBench -destination platform=iOS,id=UDID` (no Xcode project).
// `pocketbert device run --target ios:UDID` stages a copy of this package with the bundle in
// Tests/PocketbertBenchTests/Bundle and reads the record the test prints.
import PackageDescription

let package = Package(
    name: "PocketbertBench",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [.library(name: "PocketbertBench", targets: ["PocketbertBench"])],
    dependencies: [
        // ExecuTorch's prebuilt runtime; the branch names the release ("swiftpm-<version>").
        .package(url: "https://github.com/pytorch/executorch", branch: "swiftpm-1.0.0"),
    ],
    targets: [
        .target(
            name: "PocketbertBench",
            dependencies: [
                .product(name: "executorch", package: "executorch"),
                .product(name: "backend_xnnpack", package: "executorch"),
                .product(name: "backend_coreml", package: "executorch"),
                .product(name: "kernels_optimized", package: "executorch"),
            ],
            // Backends and kernels register themselves in static initialisers: keep every object file.
            linkerSettings: [.unsafeFlags(["-Wl,-all_load"])]
        ),
        .testTarget(
            name: "PocketbertBenchTests",
            dependencies: ["PocketbertBench"],
            resources: [.copy("Bundle")]
        ),
    ]
)
