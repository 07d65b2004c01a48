/// The sysctls of a network namespace that a restore without --join-ns writes in the new
/// namespace it makes, by path under /proc/sys/net: a fixed list, so an image never names
/// another file. A sysctl of a namespace that differs from a new namespace's and is not here is
/// not restored: the dump records it as unrestorable, and such a restore is refused naming it.
public enum NetworkSysctls {
    /// Namespace-wide ones.
    private static let global: Set<String> = [
        "ipv4/ip_forward", "ipv4/ip_local_port_range", "ipv4/ip_local_reserved_ports",
        "ipv4/ip_unprivileged_port_start", "ipv4/ping_group_range", "ipv4/ip_default_ttl", "ipv4/ip_nonlocal_bind",
        "ipv4/ip_no_pmtu_disc", "ipv4/ip_autobind_reuse", "ipv4/icmp_echo_ignore_all",
        "ipv4/icmp_echo_ignore_broadcasts", "ipv4/icmp_ratelimit", "ipv4/icmp_ratemask",
        "ipv4/icmp_ignore_bogus_error_responses", "ipv6/bindv6only", "ipv6/ip_nonlocal_bind", "core/somaxconn",
        "unix/max_dgram_qlen",
    ]

    /// Namespace-wide ones by prefix: every TCP and UDP setting of net.ipv4 (tcp_keepalive_time,
    /// tcp_fastopen and its key, tcp_rmem, udp_rmem_min...).
    private static let globalPrefixes = ["ipv4/tcp_", "ipv4/udp_"]

    /// Those of net.ipv4.conf.LINK, LINK being "all", "default" or a link of the namespace.
    private static let ipv4Link: Set<String> = [
        "forwarding", "rp_filter", "accept_redirects", "send_redirects", "secure_redirects", "accept_source_route",
        "accept_local", "arp_ignore", "arp_announce", "arp_filter", "arp_accept", "proxy_arp", "route_localnet",
        "log_martians",
    ]

    /// Those of net.ipv6.conf.LINK.
    private static let ipv6Link: Set<String> = [
        "forwarding", "disable_ipv6", "accept_ra", "accept_dad", "dad_transmits", "addr_gen_mode", "autoconf",
        "hop_limit", "mtu", "use_tempaddr", "keep_addr_on_down", "accept_redirects", "router_solicitations",
    ]

    /// Whether the restore writes `path` ("ipv4/ip_forward", "ipv6/conf/eth0/forwarding"...)
    /// in a namespace whose links are `links`.
    public static func isRestored(_ path: String, links: Set<String>) -> Bool {
        if global.contains(path) { return true }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if components.count == 2, globalPrefixes.contains(where: { path.hasPrefix($0) }),
            components[1].utf8.allSatisfy({ isNameByte($0) })
        {
            return true
        }
        guard components.count == 4, components[1] == "conf",
            ["all", "default"].contains(components[2]) || links.contains(components[2])
        else { return false }
        switch components[0] {
        case "ipv4": return ipv4Link.contains(components[3])
        case "ipv6": return ipv6Link.contains(components[3])
        default: return false
        }
    }

    /// The per-link setting (net.ipv4.conf.X.forwarding...) that writing `path` sets on every
    /// link, "default" among them: ip_forward and conf.all.forwarding of IPv4, conf.all.forwarding
    /// and conf.all.disable_ipv6 of IPv6. Nil for any other path.
    public static func spread(by path: String) -> (family: String, name: String)? {
        switch path {
        case "ipv4/ip_forward", "ipv4/conf/all/forwarding": ("ipv4", "forwarding")
        case "ipv6/conf/all/forwarding": ("ipv6", "forwarding")
        case "ipv6/conf/all/disable_ipv6": ("ipv6", "disable_ipv6")
        default: nil
        }
    }

    /// The link whose own setting `path` is (net.ipv4.conf.LINK..., net.ipv6.neigh.LINK...),
    /// other than "all" and "default"; nil for a namespace-wide one.
    public static func link(of path: String) -> String? {
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard components.count >= 4, components[1] == "conf" || components[1] == "neigh",
            components[2] != "all", components[2] != "default"
        else { return nil }
        return String(components[2])
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: "_")
    }
}
