// The image reader's fuzz target. Built with -sanitize=fuzzer and -D AMBER_FUZZER
// (scripts/fuzz), it is a libFuzzer binary; in the normal build it is a small tool
// that packs image directories into fuzz inputs and says what the reader makes of inputs.
import AmberImage
import Glibc

#if AMBER_FUZZER
import CLibFuzzer

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: count)
    if isSwrkRequest(bytes) {
        _ = try? SwrkRequest.decode(Array(bytes.dropFirst()))
        return 0
    }
    let input = FuzzInput(decoding: UnsafeRawBufferPointer(start: data, count: count))
    exercise(input.image)
    return 0
}

/// Mutates one file of the input, mostly a record, and packs the input again, so that
/// most mutations keep the container whole and land in what the decoders read;
/// one in four mutates the raw input instead (mode byte, framing, names).
@_cdecl("LLVMFuzzerCustomMutator")
func fuzzMutate(_ data: UnsafeMutablePointer<UInt8>?, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    guard let data else { return 0 }
    if isSwrkRequest(UnsafeRawBufferPointer(start: data, count: size)) { return LLVMFuzzerMutate(data, size, maxSize) }
    var random = seed
    func next(_ bound: Int) -> Int {
        random = random &* 1_103_515_245 &+ 12345
        return Int(random >> 16) % bound
    }
    var input = FuzzInput(decoding: UnsafeRawBufferPointer(start: data, count: size))
    let records = input.files.keys.filter { $0.hasSuffix(".pb") }.sorted()
    let others = input.files.keys.filter { !$0.hasSuffix(".pb") }.sorted()
    guard next(4) != 0, !records.isEmpty || !others.isEmpty else {
        return LLVMFuzzerMutate(data, size, maxSize)
    }
    let name =
        (others.isEmpty || (!records.isEmpty && next(8) != 0))
        ? records[next(records.count)] : others[next(others.count)]
    var contents = input.files[name]!
    let count = contents.count
    // Room to grow into; at least one byte, as libFuzzer's mutators need a buffer to write to.
    contents += [UInt8](repeating: 0, count: max(maxSize - size, count == 0 ? 1 : 0))
    let mutated = contents.withUnsafeMutableBufferPointer { LLVMFuzzerMutate($0.baseAddress, count, $0.count) }
    input.files[name] = Array(contents[..<mutated])
    let encoded = input.encoded
    guard encoded.count <= maxSize else { return LLVMFuzzerMutate(data, size, maxSize) }
    encoded.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: encoded.count) }
    return encoded.count
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
#else
let usage = """
    usage: AmberImageFuzz pack [--pages N] [--compress] [--encrypt] IMAGE-DIRECTORY OUTPUT
               an image (not itself compressed or encrypted) as a fuzz input, page files cut to N pages
               (default 2), stored compressed and encrypted with the fuzz target's key if asked
           AmberImageFuzz run INPUT...                              what the reader says about each fuzz input
    """

func fail(_ message: String) -> Never {
    let line = Array("AmberImageFuzz: \(message)\n".utf8)
    _ = write(STDERR_FILENO, line, line.count)
    exit(1)
}

var arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "pack":
    arguments.removeFirst()
    var pageLimit = 2
    if arguments.first == "--pages" {
        guard arguments.count > 1, let limit = Int(arguments[1]), limit >= 0 else { fail(usage) }
        pageLimit = limit
        arguments.removeFirst(2)
    }
    var storage = ImageStorage()
    while let flag = arguments.first, flag == "--compress" || flag == "--encrypt" {
        if flag == "--compress" { storage.compress = true } else { storage.encryptionKey = fuzzEncryptionKey }
        arguments.removeFirst()
    }
    guard arguments.count == 2 else { fail(usage) }
    do {
        let input = try packImage(directory: arguments[0], pageLimit: pageLimit, storage: storage)
        try writeFile(arguments[1], input.encoded)
    } catch {
        fail("\(error)")
    }
case "run" where arguments.count > 1:
    var failed = false
    for path in arguments.dropFirst() {
        do {
            let bytes = try readFile(path)
            if bytes.withUnsafeBytes(isSwrkRequest) {
                do {
                    let request = try SwrkRequest.decode(Array(bytes.dropFirst()))
                    print("\(path): a valid \(request.type.name) request")
                } catch {
                    print("\(path): \(error)")
                }
                continue
            }
            let input = bytes.withUnsafeBytes { FuzzInput(decoding: $0) }
            print("\(path): \(exercise(input.image).map { "\($0)" } ?? "a valid image")")
        } catch {
            print("\(path): \(error)")
            failed = true
        }
    }
    exit(failed ? 1 : 0)
default:
    fail(usage)
}
#endif
