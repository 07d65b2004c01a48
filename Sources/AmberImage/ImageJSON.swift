import SwiftProtobuf

/// The whole image as indented JSON, for `amber show`:
/// `{"inventory": {...}, "tasks": [{...}, ...]}`.
///
/// Records use the proto3 JSON mapping with the field names of the .proto files
/// (snake_case), so the output reads alongside the schema: fields at their
/// default value are omitted, 64-bit integers are strings (exact in any JSON
/// parser), bytes are base64 and enums are names. Page files appear only in the
/// inventory's file list. The image is opened and validated with `ImageReader`
/// first, so only an image that would restore is shown; errors say what is wrong.
public func imageJSON(directory: String) throws(ImageError) -> String {
    try imageJSON(ImageReader(directory: directory))
}

/// The JSON of an image already opened (and so checked) by `reader`; the tasks are
/// validated and checked against one another as they are read, and shown by ascending PID.
public func imageJSON(_ reader: ImageReader) throws(ImageError) -> String {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    let inventory = try jsonString(reader.inventory, options: options, file: ImageFormat.inventoryName)
    var tasks: [String] = []
    for task in try reader.tasks().sorted(by: { $0.pid < $1.pid }) {
        tasks.append(try jsonString(task, options: options, file: ImageFormat.taskRecordName(pid: task.pid)))
    }
    return indentedJSON("{\"inventory\":\(inventory),\"tasks\":[\(tasks.joined(separator: ","))]}")
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
