import FoundationEssentials
import SwiftProtobuf

/// The whole image as indented JSON, for `amber show`:
/// `{"inventory": {...}, "tasks": [{...}, ...]}`.
///
/// Records use the proto3 JSON mapping with the field names of the .proto files
/// (snake_case), so the output reads alongside the schema: fields at their
/// default value are omitted, bytes are base64 and enums are names. For reading, not
/// the mapping's letter: integers are JSON numbers, those beyond 2^53 - 1 (which a
/// JSON parser may round) decimal strings; checksums are hex as errors print them
/// (`readableJSON`); and an address range is one string `0x1000-0x2000`. Page files appear
/// only in the inventory's file list. The image is opened and validated with `ImageReader`
/// first, so only an image that would restore is shown; errors say what is wrong.
public func imageJSON(directory: String) throws(ImageError) -> String {
    try imageJSON(ImageReader(directory: directory))
}

/// The JSON of an image already opened (and so checked) by `reader`; the tasks are
/// validated and checked against one another as they are read, and shown by ascending PID.
public func imageJSON(_ reader: ImageReader) throws(ImageError) -> String {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    options.alwaysPrintInt64sAsNumbers = true
    let inventory = try jsonString(reader.inventory, options: options, file: ImageFormat.inventoryName)
    var tasks: [String] = []
    for task in try reader.tasks().sorted(by: { $0.pid < $1.pid }) {
        tasks.append(try jsonString(task, options: options, file: ImageFormat.taskRecordName(pid: task.pid)))
    }
    let compact = "{\"inventory\":\(inventory),\"tasks\":[\(tasks.joined(separator: ","))]}"
    guard let readable = readableJSON(compact) else {
        throw ImageError(.invalid, file: ImageFormat.inventoryName, detail: "the image's JSON does not parse back")
    }
    return indentedJSON(readable)
}

private func jsonString(_ message: some SwiftProtobuf.Message, options: JSONEncodingOptions, file: String)
    throws(ImageError) -> String
{
    do {
        return try message.jsonString(options: options)
    } catch {
        throw ImageError(.invalid, file: file, detail: "cannot encode as JSON: \(error)")
    }
}

/// The fields whose values are XXH64 checksums, shown as `hex` prints them in errors.
private let checksumKeys: Set<String> = ["xxh64", "chunk_xxh64"]

/// The fields whose values are SHA-256 digests (bytes), shown as 64 hex digits, as sha256sum prints them.
private let digestKeys: Set<String> = ["inventory_sha256"]

/// Pairs of fields that bound a half-open address range, and the one field that replaces them:
/// `"range": "0x1000-0x2000"`, as /proc/PID/maps prints an area. Only where the end is set.
private let rangeKeys: [(start: String, end: String, range: String)] = [
    ("start", "end", "range"), ("start_code", "end_code", "code_range"), ("start_data", "end_data", "data_range"),
    ("arg_start", "arg_end", "arg_range"), ("env_start", "env_end", "env_range"),
]

/// The largest integer every JSON parser reads exactly (an IEEE double's 53-bit significand).
private let largestExactInteger: UInt64 = (1 << 53) - 1

/// Rewrites the proto3 JSON of an image (with 64-bit integers as numbers) for reading: checksums
/// and digests in hex, address ranges as one string, integers beyond 2^53 - 1 as decimal
/// strings. nil if `compact` is not JSON.
func readableJSON(_ compact: String) -> String? {
    var parser = JSONTreeParser(Array(compact.utf8))
    guard let tree = parser.parseDocument() else { return nil }
    var output = ""
    readable(tree, key: nil).write(to: &output)
    return output
}

/// A parsed JSON value; strings, numbers and literals keep their text as written.
private indirect enum JSONTree {
    case object([(key: String, value: JSONTree)])
    case array([JSONTree])
    /// A string, with its quotes and escapes.
    case string(String)
    /// A number or true, false, null.
    case scalar(String)

    func write(to output: inout String) {
        switch self {
        case .object(let members):
            output += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { output += "," }
                output += quoted(member.key) + ":"
                member.value.write(to: &output)
            }
            output += "}"
        case .array(let elements):
            output += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { output += "," }
                element.write(to: &output)
            }
            output += "]"
        case .string(let text), .scalar(let text):
            output += text
        }
    }

    /// The integer this is, if it is an integer number.
    var integer: (negative: Bool, magnitude: UInt64)? {
        guard case .scalar(let text) = self else { return nil }
        let negative = text.hasPrefix("-")
        guard let magnitude = UInt64(negative ? text.dropFirst() : Substring(text)) else { return nil }
        return (negative, magnitude)
    }
}

/// A key as a JSON string: keys are kept as written, escapes included.
private func quoted(_ key: String) -> String { "\"" + key + "\"" }

private func readable(_ value: JSONTree, key: String?) -> JSONTree {
    switch value {
    case .object(var members):
        for pair in rangeKeys {
            guard let endIndex = members.firstIndex(where: { $0.key == pair.end }),
                let end = members[endIndex].value.integer, !end.negative
            else { continue }
            // A start at 0 is left out, as every field at its default value.
            var start: UInt64 = 0
            let startIndex = members.firstIndex { $0.key == pair.start }
            if let startIndex {
                guard let value = members[startIndex].value.integer, !value.negative else { continue }
                start = value.magnitude
            }
            members[startIndex ?? endIndex] = (key: pair.range, value: .string(quoted(hexRange(start, end.magnitude))))
            if startIndex != nil { members.remove(at: endIndex) }
        }
        return .object(members.map { (key: $0.key, value: readable($0.value, key: $0.key)) })
    case .array(let elements):
        return .array(elements.map { readable($0, key: key) })
    case .string(let text):
        guard let key, digestKeys.contains(key), let bytes = Data(base64Encoded: String(text.dropFirst().dropLast()))
        else { return value }
        let digits = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
        return .string(quoted(digits.joined()))
    case .scalar:
        guard let integer = value.integer else { return value }
        if let key, checksumKeys.contains(key), !integer.negative { return .string(quoted(hex(integer.magnitude))) }
        guard integer.magnitude > largestExactInteger else { return value }
        return .string(quoted((integer.negative ? "-" : "") + String(integer.magnitude)))
    }
}

/// Parses JSON as SwiftProtobuf writes it (compact, valid); nil on anything else.
private struct JSONTreeParser {
    private let bytes: [UInt8]
    private var index = 0
    /// Deeper nesting than this is refused rather than recursed into.
    private static let depthLimit = 200
    private static let space: [UInt8] = Array(" \n\r\t".utf8)
    /// What ends a number or a literal.
    private static let scalarEnd: [UInt8] = Array(",]} \n\r\t".utf8)

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseDocument() -> JSONTree? {
        guard let value = parseValue(depth: 0) else { return nil }
        skipSpace()
        return index == bytes.count ? value : nil
    }

    private mutating func skipSpace() {
        while index < bytes.count, Self.space.contains(bytes[index]) { index += 1 }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func parseValue(depth: Int) -> JSONTree? {
        skipSpace()
        guard index < bytes.count, depth < Self.depthLimit else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var members: [(key: String, value: JSONTree)] = []
            if consume(UInt8(ascii: "}")) { return .object(members) }
            repeat {
                skipSpace()
                guard let key = parseString(), consume(UInt8(ascii: ":")), let value = parseValue(depth: depth + 1)
                else { return nil }
                members.append((key: String(key.dropFirst().dropLast()), value: value))
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "}")) ? .object(members) : nil
        case UInt8(ascii: "["):
            index += 1
            var elements: [JSONTree] = []
            if consume(UInt8(ascii: "]")) { return .array(elements) }
            repeat {
                guard let element = parseValue(depth: depth + 1) else { return nil }
                elements.append(element)
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "]")) ? .array(elements) : nil
        case UInt8(ascii: "\""):
            return parseString().map { .string($0) }
        default:
            let start = index
            while index < bytes.count, !Self.scalarEnd.contains(bytes[index]) { index += 1 }
            return index > start ? .scalar(String(decoding: bytes[start..<index], as: UTF8.self)) : nil
        }
    }

    /// A string from its opening quote, returned with its quotes and escapes as written.
    private mutating func parseString() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index
        index += 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: bytes[start..<index], as: UTF8.self)
            default: index += 1
            }
        }
        return nil
    }
}

/// Re-indents compact JSON (as SwiftProtobuf writes it) with two spaces per
/// level; empty objects and arrays stay on one line.
func indentedJSON(_ compact: String) -> String {
    let input = Array(compact.utf8)
    var output: [UInt8] = []
    output.reserveCapacity(input.count * 2)
    var depth = 0
    var inString = false
    var escaped = false
    func newline() {
        output.append(UInt8(ascii: "\n"))
        output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
    }
    var index = 0
    while index < input.count {
        let byte = input[index]
        index += 1
        if inString {
            output.append(byte)
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""):
            inString = true
            output.append(byte)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            output.append(byte)
            if index < input.count, input[index] == UInt8(ascii: "}") || input[index] == UInt8(ascii: "]") {
                output.append(input[index])
                index += 1
            } else {
                depth += 1
                newline()
            }
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            depth -= 1
            newline()
            output.append(byte)
        case UInt8(ascii: ","):
            output.append(byte)
            newline()
        case UInt8(ascii: ":"):
            output.append(contentsOf: [byte, UInt8(ascii: " ")])
        case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
            break
        default:
            output.append(byte)
        }
    }
    return String(decoding: output, as: UTF8.self)
}
