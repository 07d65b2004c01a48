// The image reader's fuzz target. Built with -sanitize=fuzzer and -D AMBER_FUZZER
// (scripts/fuzz), it is a libFuzzer binary; in the normal build it is a small tool
// that packs image directories into fuzz inputs and says what the reader makes of inputs.
import AmberImage
import Glibc

#if AMBER_FUZZER
import CLibFuzzer

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = FuzzInput(decoding: UnsafeRawBufferPointer(start: data, count: count))
    exercise(input.image)
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
#else
let usage = """
    usage: AmberImageFuzz pack [--pages N] IMAGE-DIRECTORY OUTPUT   an image as a fuzz input, page files cut to N pages (default 2)
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
    guard arguments.count == 2 else { fail(usage) }
    do {
        let input = try packImage(directory: arguments[0], pageLimit: pageLimit)
        try writeFile(arguments[1], input.encoded)
    } catch {
        fail("\(error)")
    }
case "run" where arguments.count > 1:
    var failed = false
    for path in arguments.dropFirst() {
        do {
            let input = try readFile(path).withUnsafeBytes { FuzzInput(decoding: $0) }
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
