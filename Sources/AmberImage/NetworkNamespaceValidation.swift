/// The checks of a tree's network namespace (`Amber_NetworkNamespace`): what a restore without
/// --join-ns hands to `ip` as arguments and writes under /proc/sys/net must be a link name, an
/// address and a sysctl path of net.ipv4 or net.ipv6, nothing else.
extension TaskValidator {
    /// IFNAMSIZ counts the terminating NUL.
    private static let linkNameLimit = 15
    /// The largest MTU the kernel's int holds, and `ip` takes.
    private static let mtuLimit = UInt32(Int32.max)
    private static let sysctlValueLimit = 4096

    func validateNetworkNamespace(_ namespace: Amber_NetworkNamespace) throws(ImageError) {
        func invalid(_ field: String, _ problem: String) -> ImageError {
            ImageError(.invalid, file: file, detail: "network_namespace.\(field): \(problem)")
        }
        var names: Set<String> = []
        for (index, link) in namespace.links.enumerated() {
            guard Self.isLinkName(link.name), names.insert(link.name).inserted else {
                throw invalid("links[\(index)].name", "\"\(link.name)\" is not a link name, or is there twice")
            }
            guard !link.kind.isEmpty, link.kind.utf8.count <= 32,
                link.kind.utf8.allSatisfy({ Self.isWordByte($0) })
            else {
                throw invalid("links[\(index)].kind", "\"\(link.kind)\" is not a kind of link")
            }
            guard link.mtu <= Self.mtuLimit else {
                throw invalid("links[\(index)].mtu", "\(link.mtu) is above \(Self.mtuLimit)")
            }
        }
        for (index, address) in namespace.addresses.enumerated() {
            guard names.contains(address.link) else {
                throw invalid("addresses[\(index)].link", "\"\(address.link)\" is not a link of the namespace")
            }
            guard address.address.count == 4 || address.address.count == 16 else {
                throw invalid("addresses[\(index)].address", "\(address.address.count) bytes: neither IPv4 nor IPv6")
            }
            guard address.prefixLength <= UInt32(address.address.count * 8) else {
                throw invalid("addresses[\(index)].prefix_length", "\(address.prefixLength) is longer than the address")
            }
        }
        for (index, sysctl) in namespace.sysctls.enumerated() {
            let components = sysctl.path.split(separator: "/", omittingEmptySubsequences: false)
            guard components.count >= 2, components[0] == "ipv4" || components[0] == "ipv6",
                components.allSatisfy({
                    !$0.isEmpty && $0 != "." && $0 != ".." && $0.utf8.count <= 255
                        && $0.utf8.allSatisfy { Self.isWordByte($0) || $0 == UInt8(ascii: ".") }
                })
            else {
                throw invalid("sysctls[\(index)].path", "\"\(sysctl.path)\" is not a sysctl under net.ipv4 or net.ipv6")
            }
            guard sysctl.value.utf8.count <= Self.sysctlValueLimit,
                sysctl.value.utf8.allSatisfy({ $0 == UInt8(ascii: "\t") || (0x20..<0x7f).contains($0) })
            else {
                throw invalid(
                    "sysctls[\(index)].value",
                    "not one line of printable text of at most \(Self.sysctlValueLimit) bytes")
            }
        }
        for (index, text) in namespace.unrestorable.enumerated()
        where text.isEmpty || text.utf8.count > 1024 || text.utf8.contains(where: { $0 < 0x20 }) {
            throw invalid("unrestorable[\(index)]", "not one line of text of at most 1024 bytes")
        }
    }

    /// A name the kernel takes for a link: 1 to 15 bytes, no "/", ":" or white space, not "." or
    /// "..", and not one `ip` would read as an option.
    static func isLinkName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= linkNameLimit && name != "." && name != ".." && !name.hasPrefix("-")
            && name.utf8.allSatisfy { Self.isWordByte($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "@") }
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
            || byte == UInt8(ascii: "-")
    }
}

extension CrossRecordCheck {
    /// A tree is in one network namespace: only the root's record says which.
    static func checkNetworkNamespace(_ tasks: [Amber_Task]) throws(ImageError) {
        for task in tasks.dropFirst() where task.hasNetworkNamespace {
            throw ImageError(
                .invalid, file: ImageFormat.taskRecordName(pid: task.pid),
                detail: "network_namespace: only the root's record holds the tree's network namespace")
        }
    }
}
