import Foundation

/// A numpy .npy array (format 1.0/2.0, little-endian, C order): enough to read the bundle's inputs and
/// expected outputs, which `pocketbert device run` writes with numpy.save.
public struct NpyArray {
    public let shape: [Int]
    public let dtype: String  // "<i8", "<i4" or "<f4"
    public let data: Data

    public init(contentsOf url: URL) throws {
        let bytes = try Data(contentsOf: url)
        guard bytes.count > 10, bytes.prefix(6) == Data([0x93]) + "NUMPY".data(using: .ascii)! else {
            throw BenchError.badFile("\(url.lastPathComponent) is not a .npy file")
        }
        let major = bytes[6]
        let headerLength = major == 1
            ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let headerStart = major == 1 ? 10 : 12
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)
        guard let descr = header.firstMatch(of: /'descr': '([^']+)'/)?.1,
              let dims = header.firstMatch(of: /'shape': \(([^)]*)\)/)?.1,
              header.contains("'fortran_order': False") else {
            throw BenchError.badFile("\(url.lastPathComponent) has an unsupported .npy header: \(header)")
        }
        dtype = String(descr)
        shape = dims.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        data = bytes.subdata(in: headerStart + headerLength..<bytes.count)
    }

    public var int64s: [Int64] {
        dtype == "<i4" ? data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }.map(Int64.init)
                       : data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
    }

    public var floats: [Float] { data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
}

public enum BenchError: Error, CustomStringConvertible {
    case badFile(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .badFile(let why), .unsupported(let why): return why
        }
    }
}
