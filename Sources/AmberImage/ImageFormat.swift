/// Names and constants of the on-disk image format (see docs/image-format.md).
public enum ImageFormat {
    /// The format this build writes and the only one it reads; bumped on any
    /// change that a reader of the previous version would misread.
    public static let version: UInt32 = 11

    /// The inventory is written last, so its presence marks a complete image.
    public static let inventoryName = "inventory.pb"

    /// Beside the inventory in an image root's dump authenticated: its HMAC (`ImageMAC`),
    /// written before the inventory is renamed into place; never listed in the inventory.
    public static let macName = "inventory.mac"

    /// Beside the inventory in every image: its own XXH64 (`InventoryChecksum`), written before
    /// the inventory is renamed into place; never listed in the inventory.
    public static let inventoryChecksumName = "inventory.xxh64"

    /// Page runs, page file offsets and memory areas are aligned to this.
    public static let pageSize: UInt64 = 4096

    /// The highest user address on x86_64 with 4-level page tables (TASK_SIZE);
    /// only the vsyscall page lies above it.
    public static let userAddressLimit: UInt64 = 0x7fff_ffff_f000

    /// Page files are checksummed in chunks of this many bytes (the last chunk may be shorter),
    /// so a mismatch names the megabyte it is in.
    public static let pageFileChunkSize: UInt64 = 1 << 20

    /// Largest checksum chunk the reader accepts: it hashes a chunk before it can name a mismatch.
    public static let maximumChunkSize: UInt64 = 64 << 20

    /// The character devices an open file may be on, by path, with their device numbers (as
    /// glibc's makedev encodes them): they are the same device on every host, and reopened by
    /// path at restore. The one list the dump, the image validator and the restore go by.
    public static let reopenableDevices: [String: UInt64] = [
        "/dev/null": 0x103, "/dev/zero": 0x105, "/dev/full": 0x107, "/dev/random": 0x108, "/dev/urandom": 0x109,
    ]

    /// The record file of one task, e.g. "task-123.pb".
    public static func taskRecordName(pid: Int32) -> String { "task-\(pid).pb" }

    /// The conventional page files of one task: "pages-123.img", and "pages-123-1.img" for the
    /// second part of a process whose pages are split over two.
    public static func pageFileName(pid: Int32, part: Int = 0) -> String {
        part == 0 ? "pages-\(pid).img" : "pages-\(pid)-\(part).img"
    }

    /// The page file of an object of shared anonymous memory, by its id (its inode at the
    /// dump), written once for every process that maps it: "shmem-4567.img".
    public static func sharedAnonymousFileName(id: UInt64) -> String { "shmem-\(id).img" }

    /// Largest record file (inventory or task) the reader loads into memory.
    static let maximumRecordSize: UInt64 = 64 << 20

    /// Largest pipe capacity an image holds (F_SETPIPE_SZ; /proc/sys/fs/pipe-max-size is 1 MiB
    /// by default): what a pipe holds is kept in its read end's record, which the reader loads
    /// whole, so four such pipes full fill a record.
    public static let maximumPipeCapacity: UInt64 = 16 << 20

    /// Written first by `ImageWriter.finish(inventory:)`, then renamed to `inventoryName`.
    static let inventoryTemporaryName = "inventory.pb.tmp"

    /// The files written beside the inventory, which it does not list: its temporary file,
    /// its checksum and its MAC. No file of the image may take one of these names.
    static let inventoryCompanionNames: Set<String> = [inventoryTemporaryName, inventoryChecksumName, macName]

    /// Sizes an NT_X86_XSTATE buffer can have: the 512-byte legacy area and
    /// 64-byte header at least, and far less than 64 KiB on any CPU.
    static let xstateSizes: ClosedRange<UInt32> = 576...65536

    /// Linux's PID_MAX_LIMIT: no PID is larger on any configuration.
    static let pidRange: ClosedRange<Int32> = 1...4_194_304

    /// The PID a record name stands for, or nil if `name` is not a task record name.
    ///
    /// Only the canonical spelling counts ("task-12.pb", not "task-012.pb" or
    /// "task-+12.pb"), so that one PID can never have two record files.
    static func taskPID(recordName name: String) -> Int32? {
        let prefix = "task-"
        let suffix = ".pb"
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard let pid = Int32(digits), pidRange.contains(pid), taskRecordName(pid: pid) == name else { return nil }
        return pid
    }

    /// Whether `name` names a file directly inside the image directory: not
    /// empty, no "/" (so neither absolute nor nested), no "..", no NUL.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && !name.contains("/") && !name.contains("..") && !name.utf8.contains(0)
    }
}
