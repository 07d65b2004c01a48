import SystemPackage

/// Checked, allocation-light scanning of /proc text as bytes.
///
/// /proc text is parsed as bytes, not `String`: a comm may hold "\r" just
/// before a newline, which `String` would fuse with it into one grapheme, and
/// kernel text is ASCII apart from names that need no interpretation.
enum ProcText {
    static let newline: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09

    /// The error every parser throws for text it does not understand.
    static func malformed(_ what: String) -> LinuxError {
        LinuxError(.invalidArgument, "parse /proc \(what)")
    }

    @inline(__always)
    static func isBlank(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    /// The lines of `text` without their newlines; a final newline ends the last line
    /// rather than starting an empty one.
    static func lines(_ text: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            if text[index] == newline {
                result.append(text[start..<index])
                start = index + 1
            }
            index += 1
        }
        if start < text.endIndex { result.append(text[start...]) }
        return result
    }

    /// The runs of non-blank bytes in `line`.
    static func words(_ line: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, isBlank(line[index]) { index += 1 }
            let start = index
            while index < line.endIndex, !isBlank(line[index]) { index += 1 }
            if start < index { result.append(line[start..<index]) }
        }
        return result
    }

    /// `line` without leading and trailing blanks.
    static func trimmed(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var start = line.startIndex
        var end = line.endIndex
        while start < end, isBlank(line[start]) { start += 1 }
        while end > start, isBlank(line[end - 1]) { end -= 1 }
        return line[start..<end]
    }

    /// Splits "Key:\tvalue" at the first colon; nil when there is none.
    static func keyValue(_ line: ArraySlice<UInt8>) -> (key: ArraySlice<UInt8>, value: ArraySlice<UInt8>)? {
        guard let colon = line.firstIndex(of: 0x3A) else { return nil }
        return (line[..<colon], line[(colon + 1)...])
    }

    /// An unsigned number in `radix` (2...16), digits only: no sign, no prefix,
    /// no blanks; nil when empty, malformed or too large for 64 bits.
    static func unsigned<C: Collection<UInt8>>(_ text: C, radix: UInt64 = 10) -> UInt64? {
        guard !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in text {
            let digit: UInt64
            switch byte {
            case 0x30...0x39: digit = UInt64(byte &- 0x30)
            case 0x61...0x66: digit = UInt64(byte &- 0x61) + 10
            case 0x41...0x46: digit = UInt64(byte &- 0x41) + 10
            default: return nil
            }
            guard digit < radix else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// A decimal number with an optional leading "-"; nil when malformed or out of range.
    static func signed(_ text: ArraySlice<UInt8>) -> Int64? {
        if text.first == 0x2D {
            guard let magnitude = unsigned(text.dropFirst()), magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return unsigned(text).flatMap { Int64(exactly: $0) }
    }

    static func int32(_ text: ArraySlice<UInt8>) -> Int32? {
        signed(text).flatMap { Int32(exactly: $0) }
    }

    static func int(_ text: ArraySlice<UInt8>) -> Int? {
        signed(text).flatMap { Int(exactly: $0) }
    }

    static func string<C: Collection<UInt8>>(_ bytes: C) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// Undoes the kernel's `seq_escape_str` / `string_escape_mem` escaping
    /// (as in the Name line of /proc/PID/status): "\n", "\t", "\\", octal "\ooo", etc.
    /// An unknown escape is kept as written.
    static func unescape(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(text.count)
        var index = text.startIndex
        while index < text.endIndex {
            let byte = text[index]
            index += 1
            guard byte == 0x5C, index < text.endIndex else {
                result.append(byte)
                continue
            }
            let next = text[index]
            let simple: UInt8? =
                switch next {
                case 0x6E: 0x0A  // \n
                case 0x74: 0x09  // \t
                case 0x72: 0x0D  // \r
                case 0x66: 0x0C  // \f
                case 0x76: 0x0B  // \v
                case 0x61: 0x07  // \a
                case 0x65: 0x1B  // \e
                case 0x5C: 0x5C  // \\
                case 0x22: 0x22  // \"
                default: nil
                }
            if let simple {
                result.append(simple)
                index += 1
            } else if index + 3 <= text.endIndex,
                let octal = unsigned(text[index..<(index + 3)], radix: 8), octal <= 0xFF
            {
                result.append(UInt8(octal))
                index += 3
            } else {
                result.append(byte)
            }
        }
        return result
    }
}
