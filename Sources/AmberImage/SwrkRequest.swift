import FoundationEssentials
import SwiftProtobuf

/// A request of CRIU's RPC (`amber swrk FD`), decoded from one packet and checked: the peer
/// is as untrusted as an image, so every field is bounded, and every option amber does not
/// honour is refused by name rather than ignored (an option set to its default is fine).
public struct SwrkRequest: Sendable, Equatable {
    /// The largest packet amber reads: a request is a few hundred bytes; runc's own buffer is 40 KiB.
    public static let maximumSize = 64 * 1024
    static let maximumString = 4096
    static let maximumRepeated = 1024

    public enum Kind: Sendable, Equatable {
        case dump, preDump, restore, check, featureCheck, version, notify
    }

    public let kind: Kind
    /// The request's type as it came, for the response's type.
    public let type: Swrk_RequestType
    public let keepOpen: Bool
    public let notifySuccess: Bool
    /// FEATURE_CHECK: the features asked about.
    public let features: Swrk_Features
    /// DUMP, PRE_DUMP and RESTORE: what amber does; the defaults otherwise.
    public let options: SwrkOptions

    /// Decodes and checks one packet. A request amber does not serve, or an option it does not
    /// honour, is an error naming it; `type` in the error is the request's, for the response.
    public static func decode(_ bytes: [UInt8]) throws(SwrkRequestError) -> SwrkRequest {
        guard bytes.count <= maximumSize else {
            throw SwrkRequestError(
                type: .empty, "a request of \(bytes.count) bytes, more than the \(maximumSize) amber reads")
        }
        let request: Swrk_Request
        do {
            request = try Swrk_Request(serializedBytes: bytes)
        } catch {
            throw SwrkRequestError(type: .empty, "a request that is not a valid message: \(error)")
        }
        guard request.hasType else { throw SwrkRequestError(type: .empty, "a request without a (known) type") }
        let type = request.type
        let kind: Kind
        switch type {
        case .dump: kind = .dump
        case .preDump: kind = .preDump
        case .restore: kind = .restore
        case .check: kind = .check
        case .featureCheck: kind = .featureCheck
        case .version: kind = .version
        case .notify: kind = .notify
        case .empty, .pageServer, .cpuinfoDump, .cpuinfoCheck, .waitPid, .pageServerChld, .singlePreDump:
            throw SwrkRequestError(type: type, "request \(type.name) is not served by amber")
        }
        if request.keepOpen && [.dump, .preDump, .restore, .notify].contains(kind) {
            throw SwrkRequestError(
                type: type, "keep_open: amber serves one \(type.name) per swrk process, as CRIU does")
        }
        if !request.unknownFields.data.isEmpty {
            throw SwrkRequestError(
                type: type, "request fields unknown to amber: \(fieldNumbers(request.unknownFields.data))")
        }
        var options = SwrkOptions()
        if [.dump, .preDump, .restore].contains(kind) {
            guard request.hasOpts else { throw SwrkRequestError(type: type, "\(type.name) without options") }
            do {
                options = try SwrkOptions(request.opts, for: kind)
            } catch {
                throw SwrkRequestError(type: type, error)
            }
        }
        return SwrkRequest(
            kind: kind, type: type, keepOpen: request.keepOpen, notifySuccess: request.notifySuccess,
            features: request.features, options: options)
    }

    /// The field numbers of unknown fields, from their tags (the decoder kept them whole).
    static func fieldNumbers(_ data: Data) -> String {
        var numbers: [UInt64] = []
        var bytes = Array(data)[...]
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = bytes.popFirst(), shift < 64 {
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while numbers.count < 8, let tag = varint() {
            numbers.append(tag >> 3)
            switch tag & 7 {
            case 0: _ = varint()
            case 1: bytes = bytes.dropFirst(8)
            case 2: bytes = bytes.dropFirst(Int(clamping: varint() ?? UInt64(bytes.count)))
            case 5: bytes = bytes.dropFirst(4)
            default: bytes = []
            }
        }
        return numbers.map { "\($0)" }.joined(separator: ", ")
    }
}

/// Why a request was refused; `type` is the request's (`.empty` when it had none).
public struct SwrkRequestError: Error, Sendable, CustomStringConvertible {
    public let type: Swrk_RequestType
    public let message: String
    /// The refused request's directories and log, when they were valid: the refusal goes into its log too.
    public let log: SwrkOptions?

    init(type: Swrk_RequestType, _ message: String, log: SwrkOptions? = nil) {
        self.type = type
        self.message = message
        self.log = log
    }

    public var description: String { message }
}

/// The options of a DUMP, PRE_DUMP or RESTORE, as amber honours them.
public struct SwrkOptions: Sendable, Equatable {
    /// The image directory: a descriptor of the requesting process, or a path.
    public enum Directory: Sendable, Equatable {
        case peerDescriptor(Int32)
        case path(String)
    }

    public var images: Directory = .peerDescriptor(-1)
    /// A descriptor of the requesting process; none: the image directory.
    public var workDirectoryFD: Int32?
    public var pid: Int32 = 0
    public var leaveRunning = false
    public var tcpEstablished = false
    public var shellJob = false
    /// A file name in the work directory; none: no log.
    public var logFile: String?
    public var logLevel: Int32 = 2
    public var logToStandardError = false
    public var notifyScripts = false
    /// DUMP and PRE_DUMP: a pre-dump's directory, relative to the image directory.
    public var parentImage: String?
    /// DUMP: objects left outside the tree, in `amber dump --external` form (pipe:[INODE], unix:[INODE]).
    public var externalFiles: [String] = []
    /// RESTORE: veths as `amber restore --external` takes them (veth[INSIDE]:OUTSIDE[@BRIDGE]).
    public var externalVeths: [String] = []
    /// RESTORE: swrk's own descriptors for objects outside the tree, in `amber restore --inherit-fd` form.
    public var inheritFDs: [String] = []
    /// DUMP and PRE_DUMP: a cgroup the runtime asks to be frozen; amber freezes the tree
    /// itself, and checks that the cgroup holds no process outside it.
    public var freezeCgroup: String?
    /// RESTORE: manage_cgroups and manage_cgroups_mode, as `amber restore --manage-cgroups`
    /// names the mode ("soft", "ignore"...): CRIU's soft when neither is given.
    public var cgroupMode = "soft"
    /// RESTORE: cg_root, as `amber restore --cgroup-root` takes it: by controller ("" for every
    /// hierarchy no other names), the cgroup the image's root cgroup of its hierarchy becomes.
    public var cgroupRoots: [String: String] = [:]
    /// A CRIU configuration file, refused if it exists (amber reads none).
    public var configFile: String?
    /// `ext_mnt` in `--external` form, mnt[KEY]:VALUE: at DUMP the bind mount at mount point KEY
    /// recorded by the key VALUE, at RESTORE the host's path VALUE bound for the key KEY.
    public var externalMounts: [String] = []
    /// RESTORE: `root`, the directory the root mount of a tree in a mount namespace of its own becomes.
    public var root: String?
    /// RESTORE: `rst_sibling`, the restored root made the requester's child (CRIU's --restore-sibling).
    public var restoreSibling = false

    public init() {}

    init(_ options: Swrk_Options, for kind: SwrkRequest.Kind) throws(SwrkOptionRefusal) {
        var refusals: [String] = []
        func refuse(_ name: String, _ why: String) { refusals.append("\(name): \(why)") }
        let restoring = kind == .restore
        let verb = restoring ? "restore" : kind == .dump ? "dump" : "pre-dump"
        func unsupported(_ name: String, _ set: Bool, _ why: String = "not implemented by amber") {
            if set { refuse(name, why) }
        }

        if !options.unknownFields.data.isEmpty {
            refuse(
                "options \(SwrkRequest.fieldNumbers(options.unknownFields.data))",
                "fields unknown to amber (a newer CRIU's)")
        }
        for (name, text) in Self.strings(options)
        where text.utf8.count > SwrkRequest.maximumString || text.utf8.contains(0) {
            refuse(name, "longer than \(SwrkRequest.maximumString) bytes or holding a NUL")
        }
        let counts = [
            options.veths.count, options.execCmd.count, options.extMnt.count, options.cgRoot.count,
            options.inheritFd.count, options.skipMnt.count, options.enableFs.count, options.unixSkIno.count,
            options.irmapScanPaths.count, options.external.count, options.joinNs.count,
            options.cgroupDumpController.count,
        ]
        if counts.contains(where: { $0 > SwrkRequest.maximumRepeated }) {
            refuse("options", "a list of more than \(SwrkRequest.maximumRepeated) entries")
        }

        if options.hasImagesDir {
            if options.imagesDir.hasPrefix("/") {
                images = .path(options.imagesDir)
            } else {
                refuse("images_dir \(options.imagesDir)", "not an absolute path")
            }
        } else if options.imagesDirFd >= 0 {
            images = .peerDescriptor(options.imagesDirFd)
        } else {
            refuse("images_dir_fd", "missing (or negative): the image directory is needed")
        }
        if options.hasWorkDirFd {
            if options.workDirFd < 0 { refuse("work_dir_fd", "negative") } else { workDirectoryFD = options.workDirFd }
        }
        if restoring {
            unsupported("pid", options.pid != 0, "a restore brings back the image's own PIDs")
        } else if options.pid > 0 {
            pid = options.pid
        } else {
            refuse("pid", "missing: amber dumps the tree it names, never the requesting process itself")
        }
        leaveRunning = options.leaveRunning
        unsupported("leave_running", restoring && options.leaveRunning, "a dump option")
        tcpEstablished = options.tcpEstablished
        shellJob = options.shellJob
        if options.hasLogFile {
            let name = options.logFile
            if name.isEmpty || name == "." || name == ".." || name.contains("/") || name.utf8.count > 255 {
                refuse("log_file", "\(name) is not a file name (the log goes into the work directory)")
            } else {
                logFile = name
            }
        }
        if (0...4).contains(options.logLevel) { logLevel = options.logLevel } else { refuse("log_level", "not 0 to 4") }
        logToStandardError = options.logToStderr
        notifyScripts = options.notifyScripts
        if options.hasParentImg, !options.parentImg.isEmpty {
            if restoring {
                refuse("parent_img", "a dump option (a restore follows the image's own chain)")
            } else {
                parentImage = options.parentImg
            }
        }
        unsupported("track_mem", restoring && options.trackMem, "a dump option")
        if options.hasFreezeCgroup, !options.freezeCgroup.isEmpty {
            if restoring {
                refuse("freeze_cgroup", "a dump option")
            } else if !options.freezeCgroup.hasPrefix("/") || options.freezeCgroup.split(separator: "/").contains("..")
            {
                refuse("freeze_cgroup", "\(options.freezeCgroup) is not an absolute path without \"..\"")
            } else {
                freezeCgroup = options.freezeCgroup
            }
        }
        // manage_cgroups as CRIU reads it: absent is soft, false is ignore, and the mode wins.
        // A dump records the tree's cgroups whatever the mode; a restore does as it says.
        var cgroupMode: Swrk_CgroupMode =
            options.hasManageCgroups && !options.manageCgroups ? .ignore : .soft
        if options.hasManageCgroupsMode { cgroupMode = options.manageCgroupsMode }
        switch cgroupMode {
        case .ignore: self.cgroupMode = "ignore"
        case .cgNone: self.cgroupMode = "none"
        case .props: self.cgroupMode = "props"
        case .soft, .default: self.cgroupMode = "soft"
        case .full: self.cgroupMode = "full"
        case .strict: self.cgroupMode = "strict"
        }
        for root in options.cgRoot {
            let controllers = root.ctrl.isEmpty ? [""] : root.ctrl.split(separator: ",").map(String.init)
            if !restoring {
                refuse("cg_root \(root.ctrl):\(root.path)", "a restore option")
            } else if !CgroupRules.isClean(root.path, relative: false) || root.ctrl.contains(":") {
                refuse("cg_root \(root.ctrl):\(root.path)", "not an absolute cgroup path without \".\" or \"..\"")
            } else if controllers.contains(where: { cgroupRoots[$0].map { $0 != root.path } ?? false }) {
                refuse("cg_root \(root.ctrl):\(root.path)", "another cg_root names another cgroup for that controller")
            } else {
                for controller in controllers { cgroupRoots[controller] = root.path }
            }
        }
        unsupported(
            "cgroup_props", !options.cgroupProps.isEmpty,
            "amber records and restores a fixed set of cgroup properties (see docs/state-coverage.md)")
        unsupported(
            "cgroup_props_file", !options.cgroupPropsFile.isEmpty,
            "amber records and restores a fixed set of cgroup properties (see docs/state-coverage.md)")
        unsupported(
            "cgroup_dump_controller", !options.cgroupDumpController.isEmpty,
            "amber records every hierarchy mounted where it runs")
        unsupported(
            "cgroup_yard", !options.cgroupYard.isEmpty,
            "amber reaches cgroups through the hierarchies mounted where it runs, and mounts no yard")

        for external in options.external {
            if restoring, external.hasPrefix("veth[") {
                externalVeths.append(external)
            } else if !restoring, let file = Self.externalFile(external) {
                externalFiles.append(file)
            } else {
                refuse(
                    "external \(external)",
                    restoring
                        ? "amber plugs in only veths at restore (veth[INSIDE]:OUTSIDE[@BRIDGE]); pipes and unix sockets come through inherit_fd"
                        : "amber leaves out only pipes and unix sockets (pipe:[INODE], unix:[INODE], unix[INODE]); mounts, namespaces and devices are not dumped yet"
                )
            }
        }
        for socket in options.unixSkIno {
            if restoring {
                refuse("unix_sk_ino", "a dump option")
            } else {
                externalFiles.append("unix:[\(socket.inode)]")
            }
        }
        for inherited in options.inheritFd {
            if !restoring {
                refuse("inherit_fd \(inherited.key)", "a restore option")
            } else if inherited.fd < 0 || Self.externalFile(inherited.key) != inherited.key {
                refuse(
                    "inherit_fd \(inherited.key) (fd \(inherited.fd))",
                    "amber plugs in pipes and unix sockets only (pipe:[INODE], unix:[INODE]), from a descriptor of swrk"
                )
            } else {
                inheritFDs.append("fd[\(inherited.fd)]:\(inherited.key)")
            }
        }
        for veth in options.veths {
            if restoring {
                externalVeths.append("veth[\(veth.ifIn)]:\(veth.ifOut)")
            } else {
                refuse("veths", "a restore option")
            }
        }
        // ext_mnt is CRIU's --external mnt[KEY]:VALUE, as amber's dump and restore take it. A
        // pre-dump records memory only: the mounts are the DUMP's, and runc names them to both.
        for mount in options.extMnt {
            if mount.key.isEmpty || mount.val.isEmpty || mount.key.contains("]:") {
                refuse("ext_mnt \(mount.key):\(mount.val)", "an empty key or value, or a key holding \"]:\"")
            } else if restoring && !mount.val.hasPrefix("/") {
                refuse("ext_mnt \(mount.key):\(mount.val)", "the host's path is not absolute")
            } else if kind != .preDump {
                externalMounts.append("mnt[\(mount.key)]:\(mount.val)")
            }
        }
        // CRIU takes root "/" as no root at all.
        if restoring && !options.root.isEmpty && options.root != "/" {
            if options.root.hasPrefix("/") {
                root = options.root
            } else {
                refuse("root \(options.root)", "not an absolute path")
            }
        }
        let mountNamespaces = "amber restores the mounts it recorded and binds those named by ext_mnt, nothing else"
        unsupported("auto_ext_mnt", options.autoExtMnt, mountNamespaces)
        unsupported("ext_sharing", options.extSharing, mountNamespaces)
        unsupported("ext_masters", options.extMasters, mountNamespaces)
        unsupported("skip_mnt", !options.skipMnt.isEmpty, mountNamespaces)
        unsupported("enable_fs", !options.enableFs.isEmpty, mountNamespaces)
        unsupported("mntns_compat_mode", options.mntnsCompatMode, mountNamespaces)
        unsupported("lsm_mount_context", !options.lsmMountContext.isEmpty, mountNamespaces)
        unsupported(
            "join_ns", !options.joinNs.isEmpty, "amber joins namespaces only by `amber restore --join-ns net:PATH`")
        // runc always asks for an empty network namespace (it sets up none), at DUMP and at
        // RESTORE: amber records the namespace all the same, and its restore makes it as recorded.
        let newNetwork: UInt32 = 0x4000_0000
        unsupported(
            "empty_ns \(options.emptyNs)", options.emptyNs != 0 && options.emptyNs != newNetwork,
            "amber restores a network namespace as recorded, and records no other kind yet")
        if options.rstSibling {
            if restoring { restoreSibling = true } else { refuse("rst_sibling", "a restore option") }
        }
        unsupported("ext_unix_sk", options.extUnixSk, "name each socket instead (external unix[INODE], unix_sk_ino)")
        // CRIU's leave to open a device by another path when its own is inaccessible: amber
        // opens a device by its recorded path and fails the restore naming it when it cannot,
        // so the leave changes nothing.
        unsupported("evasive_devices", options.evasiveDevices && !restoring, "a restore option")
        unsupported("ps (page server)", options.hasPs)
        unsupported("auto_dedup", options.autoDedup)
        unsupported("link_remap", options.linkRemap)
        unsupported(
            "cpu_cap", options.hasCpuCap && options.cpuCap != 0xffff_ffff, "amber checks the CPU's features itself")
        unsupported("force_irmap", options.forceIrmap)
        unsupported("irmap_scan_paths", !options.irmapScanPaths.isEmpty)
        unsupported("exec_cmd", !options.execCmd.isEmpty)
        unsupported("ghost_limit", options.hasGhostLimit && options.ghostLimit != 0x10_0000)
        unsupported("timeout", options.timeout != 0)
        unsupported("tcp_skip_in_flight", options.tcpSkipInFlight)
        unsupported("tcp_close", options.tcpClose)
        unsupported("weak_sysctls", options.weakSysctls)
        unsupported(
            "lazy_pages", options.lazyPages,
            "amber's lazy restore (`amber restore --lazy-pages`) has no page server yet")
        unsupported("status_fd", options.hasStatusFd)
        // CRIU ignores a configuration file that does not exist, and runc names one by default:
        // swrk refuses it only if it exists.
        if !options.configFile.isEmpty { configFile = options.configFile }
        unsupported("lsm_profile", !options.lsmProfile.isEmpty)
        let tls = [options.tlsCacert, options.tlsCacrl, options.tlsCert, options.tlsKey]
        unsupported("tls", options.tls || options.tlsNoCnVerify || tls.contains { !$0.isEmpty })
        unsupported("pidfd_store_sk", options.hasPidfdStoreSk)
        unsupported(
            "network_lock skip", options.networkLock == .skip,
            "amber always locks the network of established TCP connections")
        unsupported("skip_file_rwx_check", options.skipFileRwxCheck)
        unsupported("unprivileged", options.unprivileged)
        unsupported("leave_stopped", options.leaveStopped)
        unsupported("display_stats", options.displayStats)
        if !refusals.isEmpty {
            let logUnusable = refusals.contains {
                $0.hasPrefix("images_dir") || $0.hasPrefix("work_dir_fd") || $0.hasPrefix("log_file")
            }
            throw SwrkOptionRefusal(
                message: "\(verb) options amber does not honour: \(refusals.joined(separator: "; "))",
                log: logUnusable ? nil : self)
        }
    }

    /// `amber dump --external`'s form of CRIU's external pipes and unix sockets.
    static func externalFile(_ external: String) -> String? {
        for prefix in ["pipe:[", "unix:["] where external.hasPrefix(prefix) && external.hasSuffix("]") {
            return UInt64(external.dropFirst(prefix.count).dropLast()) != nil ? external : nil
        }
        if external.hasPrefix("unix["), external.hasSuffix("]"), let inode = UInt64(external.dropFirst(5).dropLast()) {
            return "unix:[\(inode)]"
        }
        return nil
    }

    /// Every string of the options, by name, for the bounds check.
    static func strings(_ options: Swrk_Options) -> [(String, String)] {
        var all: [(String, String)] = [
            ("log_file", options.logFile), ("root", options.root), ("parent_img", options.parentImg),
            ("freeze_cgroup", options.freezeCgroup), ("images_dir", options.imagesDir),
            ("config_file", options.configFile), ("lsm_profile", options.lsmProfile),
            ("cgroup_props", options.cgroupProps), ("cgroup_props_file", options.cgroupPropsFile),
            ("cgroup_yard", options.cgroupYard), ("lsm_mount_context", options.lsmMountContext),
        ]
        all += options.external.map { ("external", $0) }
        all += options.inheritFd.map { ("inherit_fd", $0.key) }
        all += options.extMnt.flatMap { [("ext_mnt", $0.key), ("ext_mnt", $0.val)] }
        all += options.veths.flatMap { [("veths", $0.ifIn), ("veths", $0.ifOut)] }
        return all
    }
}

/// Options refused, each named with why, in one message; `log`: the options with their
/// directories and log file, when those were valid.
struct SwrkOptionRefusal: Error {
    let message: String
    let log: SwrkOptions?
}

extension SwrkRequestError {
    init(type: Swrk_RequestType, _ refusal: SwrkOptionRefusal) {
        self.init(type: type, refusal.message, log: refusal.log)
    }
}

extension Swrk_RequestType {
    /// CRIU's name of the request type, as runc prints it.
    public var name: String {
        switch self {
        case .empty: "EMPTY"
        case .dump: "DUMP"
        case .restore: "RESTORE"
        case .check: "CHECK"
        case .preDump: "PRE_DUMP"
        case .pageServer: "PAGE_SERVER"
        case .notify: "NOTIFY"
        case .cpuinfoDump: "CPUINFO_DUMP"
        case .cpuinfoCheck: "CPUINFO_CHECK"
        case .featureCheck: "FEATURE_CHECK"
        case .version: "VERSION"
        case .waitPid: "WAIT_PID"
        case .pageServerChld: "PAGE_SERVER_CHLD"
        case .singlePreDump: "SINGLE_PRE_DUMP"
        }
    }
}

extension Swrk_CgroupMode {
    var name: String {
        switch self {
        case .ignore: "ignore"
        case .cgNone: "none"
        case .props: "props"
        case .soft: "soft"
        case .full: "full"
        case .strict: "strict"
        case .default: "default"
        }
    }
}
