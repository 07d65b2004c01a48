/// A JSON value, written compactly with its keys in the order given: enough for the results
/// of --json, without Foundation's encoder.
enum JSONValue: ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByStringLiteral,
    ExpressibleByBooleanLiteral
{
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case integer(Int64)
    /// A number already written out, such as 12.3.
    case number(String)
    case bool(Bool)
    case null

    init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
    init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }

    /// Nanoseconds as milliseconds to a tenth, as the logs give them.
    static func milliseconds(nanoseconds: UInt64) -> JSONValue {
        let tenths = (nanoseconds + 50_000) / 100_000
        return .number("\(tenths / 10).\(tenths % 10)")
    }

    static func milliseconds(_ duration: Duration) -> JSONValue {
        let (seconds, attoseconds) = duration.components
        return milliseconds(nanoseconds: UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
    }

    var text: String {
        switch self {
        case .object(let members):
            return "{" + members.map { "\(JSONValue.quoted($0.0)):\($0.1.text)" }.joined(separator: ",") + "}"
        case .array(let elements):
            return "[" + elements.map(\.text).joined(separator: ",") + "]"
        case .string(let value):
            return Self.quoted(value)
        case .integer(let value):
            return "\(value)"
        case .number(let value):
            return value
        case .bool(let value):
            return value ? "true" : "false"
        case .null:
            return "null"
        }
    }

    private static func quoted(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
