import AmberImage

/// Where the other end of a veth of the image's network namespace goes at restore: `restore
/// --external veth[INSIDE]:OUTSIDE[@BRIDGE]`, CRIU's syntax. The restore makes the pair with
/// INSIDE in the tree's new namespace and OUTSIDE in amber's, attached to the bridge BRIDGE
/// when given, and up. They are the only links amber makes or changes outside the namespace it
/// restores into, and the user names them, never the image.
public struct ExternalVeth: Sendable, Hashable {
    /// The veth end's name in the image's namespace.
    public let inside: String
    /// The name of its other end in amber's namespace.
    public let outside: String
    /// The bridge of amber's namespace the other end is attached to.
    public let bridge: String?

    /// "veth[INSIDE]:OUTSIDE[@BRIDGE]"; nil when `argument` is not one, or a name in it is not
    /// a link name.
    public init?(argument: String) {
        guard argument.hasPrefix("veth["), let close = argument.firstIndex(of: "]"),
            argument[argument.index(after: close)...].hasPrefix(":")
        else { return nil }
        inside = String(argument[argument.index(argument.startIndex, offsetBy: 5)..<close])
        let rest = argument[argument.index(close, offsetBy: 2)...]
        if let at = rest.firstIndex(of: "@") {
            outside = String(rest[..<at])
            bridge = String(rest[rest.index(after: at)...])
        } else {
            outside = String(rest)
            bridge = nil
        }
        guard NetworkLinkName.isValid(inside), NetworkLinkName.isValid(outside),
            bridge.map({ NetworkLinkName.isValid($0) }) ?? true
        else { return nil }
    }

    /// The flag that names it, as the user writes it.
    public var argument: String { "veth[\(inside)]:\(outside)\(bridge.map { "@\($0)" } ?? "")" }
}
