// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Amber",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "amber", targets: ["amber"]),
        // The engine, for programs that dump and restore without the CLI (examples/library).
        .library(name: "Amber", targets: ["Amber"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Without its default trait BinaryDelimitedStreams, which imports all of Foundation (and ICU)
        // for its stream API: amber then links only FoundationEssentials and starts faster.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        // HMAC-SHA256 and SHA-256 for authenticated images (docs/security.md). 4.x: its Crypto imports
        // FoundationEssentials, where 3.x imported all of Foundation (docs/architecture.md).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // Kernel structs and raw syscall wrappers that Glibc's overlay lacks; nothing else.
        .target(name: "CLinux"),
        // XXH64 for the image checksums, in C so that debug builds checksum at full speed.
        // -O2 even in debug builds: at -O0 clang's XXH64 runs at 1.3 GB/s here, at -O2 at 9 GB/s.
        .target(name: "CChecksum", cSettings: [.unsafeFlags(["-O2"])]),
        .target(
            name: "LinuxKit",
            dependencies: [
                "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Debian's libzstd, for compressed page files (dump --compress).
        .systemLibrary(name: "CZstd"),
        .target(
            name: "AmberImage",
            dependencies: [
                "CChecksum",
                "CZstd",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Schema"]
        ),
        .target(
            name: "Amber",
            dependencies: [
                "LinuxKit",
                "AmberImage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
        ),
        .executableTarget(
            name: "amber",
            dependencies: [
                "Amber",
                "AmberImage",
                "LinuxKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // --static-swift-stdlib links with -export-dynamic (for Swift libraries a program
            // dlopens, which amber does not): it would put some 24,000 of amber's own symbols in
            // the dynamic symbol table, which every start searches (dladdr, the shared libraries'
            // symbol binding). runc starts amber twice for each checkpoint and restore.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])]
        ),
        // The README's library example, built by CI so that it keeps compiling.
        .executableTarget(
            name: "LibraryExample",
            dependencies: [
                "Amber",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/library"
        ),
        // libFuzzer's driver entry point, for the fuzz target; -sanitize=fuzzer links libFuzzer in.
        .systemLibrary(name: "CLibFuzzer"),
        // The image reader's fuzz target (scripts/fuzz builds it with -sanitize=fuzzer -D AMBER_FUZZER);
        // in the normal build, a tool that packs images into fuzz inputs and runs inputs through the reader.
        .executableTarget(
            name: "AmberImageFuzz",
            dependencies: [
                "AmberImage",
                "CChecksum",
                "CLibFuzzer",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(name: "LinuxKitTests", dependencies: ["LinuxKit"]),
        .testTarget(name: "AmberImageTests", dependencies: ["AmberImage"]),
        // The engine's kinds of state against fakes of the injector, the task's memory and /proc: no process, no root.
        .testTarget(name: "AmberTests", dependencies: ["Amber", "AmberImage", "LinuxKit"]),
        // CChecksum: the tests edit images as an attacker would, recomputing their checksums.
        // Amber: the fault tests take their points from the registry of state kinds.
        .testTarget(name: "ScenarioTests", dependencies: ["Amber", "AmberImage", "CChecksum"]),
    ]
)
