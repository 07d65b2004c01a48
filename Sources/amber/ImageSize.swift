import Glibc

/// The bytes an image takes: the sizes of the files of its directory, for --json.
enum ImageSize {
    static func of(directory: String) -> UInt64 {
        guard let stream = opendir(directory) else { return 0 }
        defer { closedir(stream) }
        var total: UInt64 = 0
        while let entry = readdir(stream) {
            var info = stat()
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard fstatat(dirfd(stream), name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFREG
            else { continue }
            total += UInt64(info.st_size)
        }
        return total
    }
}
