/// The checks of a tree's network namespace (`Amber_NetworkNamespace`): what a restore without
/// --join-ns hands to rtnetlink and writes under /proc/sys/net must be a link name, a unicast
/// MAC, an MTU a veth takes, addresses and routes of one family with prefixes that fit, and a
/// sysctl of `NetworkSysctls`, nothing else.
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
            if link.kind == "veth" {
                guard Self.vethMTU.contains(link.mtu) else {
                    throw invalid("links[\(index)].mtu", "\(link.mtu) is not a veth's (\(Self.vethMTU))")
                }
                let mac = [UInt8](link.hardwareAddress)
                guard mac.count == 6, mac[0] & 1 == 0, mac.contains(where: { $0 != 0 }) else {
                    throw invalid("links[\(index)].hardware_address", "not a unicast MAC address of 6 bytes")
                }
            } else if !link.hardwareAddress.isEmpty {
                throw invalid("links[\(index)].hardware_address", "set on a link that is not a veth")
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
            guard Self.addressScopes.contains(address.scope) else {
                throw invalid("addresses[\(index)].scope", "\(address.scope) is not universe, site, link or host")
            }
            guard address.broadcast.isEmpty || (address.broadcast.count == 4 && address.address.count == 4) else {
                throw invalid("addresses[\(index)].broadcast", "not the 4 bytes of an IPv4 address's broadcast")
            }
        }
        for (index, route) in namespace.routes.enumerated() {
            try validateRoute(route, links: names) { invalid("routes[\(index)].\($0)", $1) }
        }
        for (index, sysctl) in namespace.sysctls.enumerated() {
            let components = sysctl.path.split(separator: "/", omittingEmptySubsequences: false)
            guard components.count >= 2, ["ipv4", "ipv6", "core", "unix"].contains(components[0]),
                components.allSatisfy({
                    !$0.isEmpty && $0 != "." && $0 != ".." && $0.utf8.count <= 255
                        && $0.utf8.allSatisfy { Self.isWordByte($0) || $0 == UInt8(ascii: ".") }
                })
            else {
                throw invalid(
                    "sysctls[\(index)].path",
                    "\"\(sysctl.path)\" is not a sysctl under net.ipv4, net.ipv6, net.core or net.unix")
            }
            guard NetworkSysctls.isRestored(sysctl.path, links: names) else {
                throw invalid("sysctls[\(index)].path", "\"\(sysctl.path)\" is not one of the sysctls amber restores")
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

    /// What a veth takes (ETH_MIN_MTU for IPv4 to ETH_MAX_MTU).
    private static let vethMTU: ClosedRange<UInt32> = 68...65535
    /// RT_SCOPE_UNIVERSE, RT_SCOPE_SITE, RT_SCOPE_LINK, RT_SCOPE_HOST.
    private static let addressScopes: Set<UInt32> = [0, 200, 253, 254]
    /// RTNH_F_ONLINK, the one route flag a restore sets.
    private static let onLinkRouteFlag: UInt32 = 4

    /// A route of one family (AF_INET or AF_INET6) whose addresses are of its size, its
    /// prefix within it, its link one of the namespace's, and its protocol not the kernel's own.
    private func validateRoute(
        _ route: Amber_NetworkRoute, links: Set<String>, _ invalid: (String, String) -> ImageError
    ) throws(ImageError) {
        let size: Int
        switch route.family {
        case 2: size = 4
        case 10: size = 16
        default: throw invalid("family", "\(route.family) is neither AF_INET nor AF_INET6")
        }
        for (field, bytes) in [
            ("destination", route.destination), ("gateway", route.gateway), ("preferred_source", route.preferredSource),
        ] where !bytes.isEmpty && bytes.count != size {
            throw invalid(field, "\(bytes.count) bytes in a route of \(size)-byte addresses")
        }
        guard route.destinationLength <= UInt32(route.destination.count * 8) else {
            throw invalid("destination_length", "\(route.destinationLength) is longer than the destination")
        }
        guard route.link.isEmpty || links.contains(route.link) else {
            throw invalid("link", "\"\(route.link)\" is not a link of the namespace")
        }
        guard route.link.isEmpty == false || !route.gateway.isEmpty else {
            throw invalid("link", "a route with neither a link nor a gateway")
        }
        guard route.protocol <= 255, route.protocol != 2, route.scope <= 255, route.tos <= 255 else {
            throw invalid("protocol", "protocol \(route.protocol), scope \(route.scope), tos \(route.tos) out of range")
        }
        guard route.flags & ~Self.onLinkRouteFlag == 0 else {
            throw invalid("flags", "0x\(String(route.flags, radix: 16)): only RTNH_F_ONLINK is restored")
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

/// A link name as the kernel takes it, for names given on the command line.
public enum NetworkLinkName {
    public static func isValid(_ name: String) -> Bool { TaskValidator.isLinkName(name) }
}
