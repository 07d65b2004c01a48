/// The name of an object outside the tree, as `amber dump --external` and `amber restore
/// --inherit-fd` give it and an `ExternalFile` record keeps it: CRIU's "KIND:[INODE]", the kind
/// in lowercase letters ("pipe", "unix") and the object's inode on its pseudo file system.
public enum ExternalFileName {
    /// Whether `name` is such a name: a kind of 1 to 16 lowercase letters, then ":[", an inode
    /// that fits 64 bits, and "]".
    public static func isValid(_ name: String) -> Bool {
        guard let colon = name.firstIndex(of: ":") else { return false }
        let kind = name[..<colon]
        let rest = name[name.index(after: colon)...]
        guard (1...16).contains(kind.count), kind.allSatisfy({ ("a"..."z").contains($0) }),
            rest.hasPrefix("["), rest.hasSuffix("]"), rest.count >= 3
        else { return false }
        let inode = rest.dropFirst().dropLast()
        return inode.allSatisfy(\.isASCII) && inode.first != "+" && UInt64(inode) != nil
    }
}
