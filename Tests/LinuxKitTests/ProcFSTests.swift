import Glibc
import SystemPackage
import Testing

@testable import LinuxKit

// MARK: - Parsers on fixed text

@Suite struct ParseMapsTests {
    @Test func typicalLines() throws {
        let text = """
            55784d2f8000-55784d2fa000 r--p 00000000 fe:00 253911                     /usr/bin/cat
            55784d2fa000-55784d2ff000 r-xp 00002000 fe:00 253911                     /usr/bin/cat
            55787aa73000-55787aa94000 rw-p 00000000 00:00 0                          [heap]
            7f8b7e617000-7f8b7e639000 rw-p 00000000 00:00 0 \n\
            7f8b7e87f000-7f8b7e886000 r--s 00000000 fe:00 332619                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
            7f8b7e889000-7f8b7e88d000 r--p 00000000 00:00 0                          [vvar]
            7f8b7e88d000-7f8b7e88f000 r--p 00000000 00:00 0                          [vvar_vclock]
            7ffc1c3a1000-7ffc1c3c2000 rw-p 00000000 00:00 0                          [stack]
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]

            """
        let maps = try ProcFS.parseMaps(text)
        #expect(maps.count == 9)
        #expect(
            maps[0]
                == MemoryMapping(
                    start: 0x5578_4d2f_8000, end: 0x5578_4d2f_a000,
                    readable: true, writable: false, executable: false, shared: false,
                    offset: 0, device: makeDevice(major: 0xfe, minor: 0), inode: 253911, path: "/usr/bin/cat"))
        #expect(maps[0].protection == PROT_READ)
        #expect(maps[1].offset == 0x2000)
        #expect(maps[1].protection == PROT_READ | PROT_EXEC)
        #expect(maps[2].path == "[heap]")
        #expect(maps[2].protection == PROT_READ | PROT_WRITE)
        #expect(maps[3].path == "")
        #expect(maps[3].device == 0 && maps[3].inode == 0)
        #expect(maps[4].shared)
        #expect(maps[5].path == "[vvar]")
        #expect(maps[6].path == "[vvar_vclock]")
        #expect(maps[7].path == "[stack]")
        #expect(maps[8].start == 0xffff_ffff_ff60_0000 && maps[8].end == 0xffff_ffff_ff60_1000)
        #expect(maps[8].protection == PROT_EXEC)
        #expect(maps[8].size == 0x1000)
    }

    @Test func nastyPaths() throws {
        let text = """
            7f0000000000-7f0000001000 rw-s 00000000 00:01 1025                       /memfd:my buffer (deleted)
            7f0000001000-7f0000002000 r--p 00001000 08:02 77                         /tmp/dir with spaces/a (b) file.so (deleted)
            7f0000002000-7f0000003000 rw-p 00000000 00:00 0                          [anon:my arena name]
            7f0000003000-7f0000004000 rw-s 00000000 00:01 4                          /dev/zero (deleted)
            7f0000004000-7f0000005000 r--p 00000000 08:02 78                         /tmp/trailing space 
            7f0000005000-7f0000006000 r--p 00000000 08:02 79                         /tmp/(deleted)
            7f0000006000-7f0000007000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)
            7f0000007000-7f0000008000 r--p 00000000 08:02 80                         /tmp/\u{e9}t\u{e9}
            """
        let maps = try ProcFS.parseMaps(text)
        #expect(maps.count == 8)
        #expect(maps[0].path == "/memfd:my buffer" && maps[0].deleted && maps[0].shared)
        #expect(maps[1].path == "/tmp/dir with spaces/a (b) file.so" && maps[1].deleted)
        #expect(maps[1].device == makeDevice(major: 8, minor: 2))
        #expect(maps[2].path == "[anon:my arena name]" && !maps[2].deleted)
        #expect(maps[3].path == "/dev/zero" && maps[3].deleted)
        #expect(maps[4].path == "/tmp/trailing space " && !maps[4].deleted)
        #expect(maps[5].path == "/tmp/(deleted)" && !maps[5].deleted)
        #expect(maps[6].path == "/SYSV00000000" && maps[6].deleted)
        #expect(maps[7].path == "/tmp/\u{e9}t\u{e9}")
    }

    @Test func deviceNumbersMatchGlibc() throws {
        // Expected values printed by a C program with glibc's makedev().
        let text = """
            1000-2000 r--p 00000000 103:1ab 5 /x
            2000-3000 r--p 00000000 fff:fffff 6 /y
            3000-4000 r--p 00000000 12345:6789abc 7 /z
            """
        let maps = try ProcFS.parseMaps(text)
        #expect(maps[0].device == 0x1103ab)
        #expect(maps[1].device == 0xffff_ffff)
        #expect(maps[2].device == 0x1_2067_89a3_45bc)
    }

    @Test func emptyText() throws {
        #expect(try ProcFS.parseMaps("").isEmpty)
        #expect(try ProcFS.parseMaps("\n").isEmpty)
    }

    @Test(arguments: [
        "1000-2000 rwzp 00000000 00:00 0",  // bad permission letter
        "1000-2000 rw-x 00000000 00:00 0",  // neither private nor shared
        "1000-2000 rw-p 00000000 00:00",  // no inode
        "1000 rw-p 00000000 00:00 0",  // no end
        "2000-1000 rw-p 00000000 00:00 0",  // end before start
        "1000-2000 rw-p 0000g000 00:00 0",  // bad offset
        "1000-2000 rw-p 00000000 0000 0",  // device without colon
        "1000-2000 rw-p 00000000 00:00 -1",  // negative inode
        "1000-2000 rw-p 00000000 00:00 1x",  // junk inode
        "10000000000000000-10000000000000001 rw-p 00000000 00:00 0",  // over 64 bits
        "1000-2000 rw-pp 00000000 00:00 0",  // five permission letters
    ])
    func malformedLineNamesItsNumber(_ bad: String) {
        let text = "1000-2000 r--p 00000000 00:00 0\n2000-3000 r--p 00000000 00:00 0\n\(bad)\n"
        #expect {
            try ProcFS.parseMaps(text)
        } throws: { error in
            let error = error as? LinuxError
            return error?.errno == .invalidArgument && error?.operation == "parse /proc maps line 3"
        }
    }
}

@Suite struct ParseStatTests {
    static func line(comm: String, state: String = "S", tail: String = "0") -> String {
        // Fields 3...51 numbered so a misplaced index shows, then exit code.
        var fields = [state]
        for n in 4...51 { fields.append(String(n * 1000)) }
        fields.append(tail)
        return "4242 (\(comm)) " + fields.joined(separator: " ") + "\n"
    }

    @Test func realLine() throws {
        let text =
            "6884 (cat) R 6881 6881 4077 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 90642 3133440 362 18446744073709551615 94182679433216 94182679453097 140721243864096 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94182679469104 94182679470720 94183211487232 140721243871951 140721243871971 140721243871971 140721243873259 0\n"
        let stat = try ProcFS.parseStat(text)
        #expect(stat.pid == 6884 && stat.comm == "cat" && stat.state == "R")
        #expect(stat.ppid == 6881 && stat.pgrp == 6881 && stat.session == 4077)
        #expect(stat.numThreads == 1 && stat.startTime == 90642)
        #expect(stat.startCode == 94_182_679_433_216 && stat.endCode == 94_182_679_453_097)
        #expect(stat.startStack == 140_721_243_864_096)
        #expect(stat.startData == 94_182_679_469_104 && stat.endData == 94_182_679_470_720)
        #expect(stat.startBrk == 94_183_211_487_232)
        #expect(stat.argStart == 140_721_243_871_951 && stat.argEnd == 140_721_243_871_971)
        #expect(stat.envStart == 140_721_243_871_971 && stat.envEnd == 140_721_243_873_259)
        #expect(stat.exitCode == 0)
        #expect(stat.flags == 4_194_304 && stat.flags & ProcessStat.exiting == 0)
    }

    @Test func fieldPositions() throws {
        let stat = try ProcFS.parseStat(Self.line(comm: "x", tail: "-9"))
        #expect(stat.ppid == 4000 && stat.pgrp == 5000 && stat.session == 6000)
        #expect(stat.flags == 9000)
        #expect(stat.numThreads == 20000 && stat.startTime == 22000)
        #expect(stat.startCode == 26000 && stat.endCode == 27000 && stat.startStack == 28000)
        #expect(stat.startData == 45000 && stat.endData == 46000 && stat.startBrk == 47000)
        #expect(stat.argStart == 48000 && stat.argEnd == 49000)
        #expect(stat.envStart == 50000 && stat.envEnd == 51000)
        #expect(stat.exitCode == -9)
    }

    @Test(arguments: ["a b", "a) (b", ") R 1 2 3 (", "x)", "((", "", "tab\there", "new\nline", "cr\r"])
    func commWithAwkwardCharacters(_ comm: String) throws {
        let stat = try ProcFS.parseStat(Self.line(comm: comm))
        #expect(stat.comm == comm)
        #expect(stat.pid == 4242 && stat.state == "S" && stat.ppid == 4000)
    }

    @Test func extraTrailingFieldsAreIgnored() throws {
        let stat = try ProcFS.parseStat(Self.line(comm: "x", tail: "0 7 8 9"))
        #expect(stat.exitCode == 0)
    }

    @Test(arguments: [
        "",
        "4242 cat S 1 2 3",  // no parentheses
        "4242 (cat) S 1 2 3 4 5\n",  // too few fields
        line(comm: "x").replacingFirst("4242", with: "42x2"),  // bad pid
        line(comm: "x").replacingFirst(" 4000 ", with: " 4a00 "),  // bad ppid
        line(comm: "x").replacingFirst(" 26000 ", with: " -26000 "),  // negative address
        line(comm: "x", state: "SS"),  // state not one letter
        line(comm: "x", tail: "99999999999"),  // exit code out of range
    ])
    func malformed(_ text: String) {
        #expect(throws: LinuxError.self) { try ProcFS.parseStat(text) }
    }
}

@Suite struct ParseStatusTests {
    static let sample = """
        Name:\tcat
        Umask:\t0022
        State:\tR (running)
        Tgid:\t6883
        Ngid:\t0
        Pid:\t6883
        PPid:\t6881
        TracerPid:\t0
        Uid:\t0\t0\t0\t0
        Groups:\t\u{20}
        NStgid:\t6883\t1
        NSpid:\t6883\t1
        NSpgid:\t6881\t0
        NSsid:\t4077\t0
        VmPeak:\t    3060 kB
        Threads:\t1
        SigQ:\t0/96365
        SigPnd:\t0000000000000100
        ShdPnd:\t0000000000004000
        SigBlk:\t0000000000010000
        SigIgn:\t0000000000001000
        SigCgt:\tfffffffe00014002
        CapEff:\t000001fffeffffff
        Seccomp:\t2
        Seccomp_filters:\t1
        Cpus_allowed_list:\t0-1
        voluntary_ctxt_switches:\t0

        """

    @Test func sampleFields() throws {
        let status = try ProcFS.parseStatus(Self.sample)
        #expect(status.name == "cat" && status.state == "R")
        #expect(status.tgid == 6883 && status.pid == 6883 && status.ppid == 6881 && status.tracerPID == 0)
        #expect(status.threads == 1)
        #expect(status.umask == 0o022)
        #expect(status.pendingThread == 0x100 && status.pendingShared == 0x4000)
        #expect(status.blockedSignals == 0x10000 && status.ignoredSignals == 0x1000)
        #expect(status.caughtSignals == 0xffff_fffe_0001_4002)
        #expect(status.namespacePIDs == [6883, 1] && status.namespaceTGIDs == [6883, 1])
        #expect(status.namespacePGIDs == [6881, 0] && status.namespaceSIDs == [4077, 0])
        #expect(status.seccompMode == 2)
        #expect(status.fields["VmPeak"] == "3060 kB")
        #expect(status.fields["Uid"] == "0\t0\t0\t0")
        #expect(status.fields["Groups"] == "")
        #expect(status.fields["Cpus_allowed_list"] == "0-1")
        #expect(status.fields["CapEff"] == "000001fffeffffff")
    }

    static let credentialLines = """
        Uid:\t1000\t1001\t1002\t1002
        Gid:\t1000\t1001\t1002\t1000
        Groups:\t1000 1001 4294967294\u{20}
        CapInh:\t0000000000000400
        CapPrm:\t0000000000000400
        CapEff:\t0000000000000400
        CapBnd:\t000001fffebfffff
        CapAmb:\t0000000000000400
        NoNewPrivs:\t1
        """

    @Test func credentials() throws {
        let text = Self.sample.replacingFirst("Uid:\t0\t0\t0\t0\nGroups:\t\u{20}", with: Self.credentialLines)
            .replacingFirst("CapEff:\t000001fffeffffff\n", with: "")
        let status = try ProcFS.parseStatus(text)
        #expect(status.userIDs == CredentialIDs(real: 1000, effective: 1001, saved: 1002, filesystem: 1002))
        #expect(status.groupIDs == CredentialIDs(real: 1000, effective: 1001, saved: 1002, filesystem: 1000))
        #expect(status.supplementaryGroups == [1000, 1001, 4_294_967_294])
        #expect(
            status.capabilities
                == CapabilitySets(
                    inheritable: 0x400, permitted: 0x400, effective: 0x400, bounding: 0x1ff_febf_ffff, ambient: 0x400))
        #expect(status.noNewPrivileges == true)
    }

    @Test func credentialLinesMayBeMissing() throws {
        let status = try ProcFS.parseStatus(Self.sample)
        #expect(status.userIDs == CredentialIDs(real: 0, effective: 0, saved: 0, filesystem: 0))
        #expect(status.groupIDs == nil && status.noNewPrivileges == nil)
        #expect(status.supplementaryGroups == [])
        // Only CapEff of the five sets.
        #expect(status.capabilities == nil)
    }

    @Test(arguments: [
        ("Uid:\t1000\t1001\t1002\t1002", "Uid:\t1000\t1001\t1002"),  // three IDs
        ("Gid:\t1000\t1001\t1002\t1000", "Gid:\t1000\t1001\t1002\t4294967296"),  // beyond 32 bits
        ("Groups:\t1000 1001 4294967294", "Groups:\t1000 staff"),
        ("CapBnd:\t000001fffebfffff", "CapBnd:\txyz"),
        ("NoNewPrivs:\t1", "NoNewPrivs:\t2"),
    ])
    func malformedCredentials(_ replacement: (String, String)) {
        let text = Self.sample.replacingFirst("Uid:\t0\t0\t0\t0\nGroups:\t\u{20}", with: Self.credentialLines)
            .replacingFirst("CapEff:\t000001fffeffffff\n", with: "")
            .replacingFirst(replacement.0, with: replacement.1)
        let key = String(replacement.0.prefix { $0 != ":" })
        #expect {
            try ProcFS.parseStatus(text)
        } throws: { error in
            (error as? LinuxError)?.operation == "parse /proc status field \(key)"
        }
    }

    @Test func nestedNamespacesOutermostFirst() throws {
        let text = Self.sample.replacingFirst("NSpid:\t6883\t1", with: "NSpid:\t4343\t77\t1")
        #expect(try ProcFS.parseStatus(text).namespacePIDs == [4343, 77, 1])
    }

    @Test func escapedNames() throws {
        // The kernel escapes "\n" and "\\" in Name; other bytes (blanks, "\r", ")") come raw.
        let cases: [(written: String, name: String)] = [
            ("a\\nb", "a\nb"),
            ("back\\\\slash", "back\\slash"),
            (" lead and trail ", " lead and trail "),
            ("tab\tin", "tab\tin"),
            ("cr\r", "cr\r"),
            ("x) (y", "x) (y"),
            ("\\101\\102", "AB"),
            ("", ""),
        ]
        for (written, name) in cases {
            let text = Self.sample.replacingFirst("Name:\tcat", with: "Name:\t\(written)")
            let status = try ProcFS.parseStatus(text)
            #expect(status.name == name, "written as \(written.debugDescription)")
            #expect(status.fields["Name"] == written)
            #expect(status.pid == 6883, "lines after the name still parse")
        }
    }

    @Test func optionalLinesMayBeMissing() throws {
        let text = Self.sample.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("Umask") && !$0.hasPrefix("NS") && !$0.hasPrefix("Seccomp") }
            .joined(separator: "\n")
        let status = try ProcFS.parseStatus(text)
        #expect(status.umask == nil && status.seccompMode == nil)
        #expect(status.namespacePIDs.isEmpty && status.namespaceSIDs.isEmpty)
        #expect(status.pid == 6883)
    }

    @Test func unknownAndOddLinesAreIgnored() throws {
        let text = Self.sample + "Brand_new_field:\twhatever: 1 2\nno colon here\n\n"
        let status = try ProcFS.parseStatus(text)
        #expect(status.fields["Brand_new_field"] == "whatever: 1 2")
        #expect(status.pid == 6883)
    }

    @Test(arguments: [
        ("Tgid:\t6883\n", ""),  // missing required line
        ("Tgid:\t6883", "Tgid:\tx"),
        ("PPid:\t6881", "PPid:\t99999999999"),  // beyond Int32
        ("SigBlk:\t0000000000010000", "SigBlk:\t10000000000000000"),  // beyond 64 bits
        ("SigCgt:\tfffffffe00014002", "SigCgt:\tzz"),
        ("Umask:\t0022", "Umask:\t0089"),  // not octal
        ("NSpid:\t6883\t1", "NSpid:\t6883\tone"),
        ("State:\tR (running)", "State:\t"),
        ("Seccomp:\t2", "Seccomp:\ttwo"),
    ])
    func malformed(_ replacement: (String, String)) {
        let text = Self.sample.replacingFirst(replacement.0, with: replacement.1)
        let key = String(replacement.0.prefix { $0 != ":" })
        #expect {
            try ProcFS.parseStatus(text)
        } throws: { error in
            (error as? LinuxError)?.operation == "parse /proc status field \(key)"
        }
    }
}

@Suite struct ParseLimitsTests {
    static let sample = """
        Limit                     Soft Limit           Hard Limit           Units     \u{20}
        Max cpu time              unlimited            unlimited            seconds   \u{20}
        Max file size             unlimited            unlimited            bytes     \u{20}
        Max data size             unlimited            unlimited            bytes     \u{20}
        Max stack size            8388608              unlimited            bytes     \u{20}
        Max core file size        0                    unlimited            bytes     \u{20}
        Max resident set          unlimited            unlimited            bytes     \u{20}
        Max processes             96365                96365                processes \u{20}
        Max open files            20000                20000                files     \u{20}
        Max locked memory         8388608              8388608              bytes     \u{20}
        Max address space         unlimited            unlimited            bytes     \u{20}
        Max file locks            unlimited            unlimited            locks     \u{20}
        Max pending signals       96365                96365                signals   \u{20}
        Max msgqueue size         819200               819200               bytes     \u{20}
        Max nice priority         0                    0                    \u{20}
        Max realtime priority     0                    0                    \u{20}
        Max realtime timeout      unlimited            unlimited            us        \u{20}

        """

    @Test func everyLimit() throws {
        let limits = try ProcFS.parseLimits(Self.sample)
        #expect(limits.map(\.resource) == Array(0...15))
        #expect(limits[0] == ResourceLimitEntry(resource: 0, soft: .max, hard: .max))
        #expect(limits[3] == ResourceLimitEntry(resource: Int32(RLIMIT_STACK.rawValue), soft: 8_388_608, hard: .max))
        #expect(limits[4] == ResourceLimitEntry(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: .max))
        #expect(limits[7] == ResourceLimitEntry(resource: Int32(RLIMIT_NOFILE.rawValue), soft: 20000, hard: 20000))
        #expect(limits[13] == ResourceLimitEntry(resource: 13, soft: 0, hard: 0))
        #expect(limits[15] == ResourceLimitEntry(resource: 15, soft: .max, hard: .max))
    }

    @Test func namesMatchGlibcNumbers() {
        let numbers: [(String, Int32)] = [
            ("Max cpu time", Int32(RLIMIT_CPU.rawValue)), ("Max file size", Int32(RLIMIT_FSIZE.rawValue)),
            ("Max data size", Int32(RLIMIT_DATA.rawValue)), ("Max stack size", Int32(RLIMIT_STACK.rawValue)),
            ("Max core file size", Int32(RLIMIT_CORE.rawValue)), ("Max resident set", Int32(__RLIMIT_RSS.rawValue)),
            ("Max processes", Int32(__RLIMIT_NPROC.rawValue)), ("Max open files", Int32(RLIMIT_NOFILE.rawValue)),
            ("Max locked memory", Int32(__RLIMIT_MEMLOCK.rawValue)), ("Max address space", Int32(RLIMIT_AS.rawValue)),
            ("Max file locks", Int32(__RLIMIT_LOCKS.rawValue)),
            ("Max pending signals", Int32(__RLIMIT_SIGPENDING.rawValue)),
            ("Max msgqueue size", Int32(__RLIMIT_MSGQUEUE.rawValue)),
            ("Max nice priority", Int32(__RLIMIT_NICE.rawValue)),
            ("Max realtime priority", Int32(__RLIMIT_RTPRIO.rawValue)),
            ("Max realtime timeout", Int32(__RLIMIT_RTTIME.rawValue)),
        ]
        for (name, number) in numbers {
            #expect(ProcFS.limitNames[Int(number)] == Array(name.utf8))
        }
    }

    @Test func unknownRowsAreIgnored() throws {
        let text =
            Self.sample
            + "Max brand new thing       5                    6                    widgets\nMax cpu timer 1 2\n"
        #expect(try ProcFS.parseLimits(text).count == 16)
    }

    @Test(arguments: [
        "Max open files            20000                \n",
        "Max open files            lots                 20000                files\n",
        "Max open files            20000                -1                   files\n",
        "Max open files            99999999999999999999 20000                files\n",
    ])
    func malformed(_ line: String) {
        #expect {
            try ProcFS.parseLimits("Limit   Soft Limit   Hard Limit   Units\n" + line)
        } throws: { error in
            (error as? LinuxError)?.operation == "parse /proc limits line 2"
        }
    }
}

@Suite struct ParseFileDescriptorInfoTests {
    @Test func regularFile() throws {
        let info = try ProcFS.parseFileDescriptorInfo("pos:\t4096\nflags:\t02100002\nmnt_id:\t24\nino:\t3\n")
        #expect(info.position == 4096)
        #expect(info.flags == UInt32(O_CLOEXEC | 0o100000 /* O_LARGEFILE */ | O_RDWR))
        #expect(info.flags & 0o2000000 != 0)
        #expect(info.mountID == 24 && info.inode == 3)
        #expect(info.lines == ["pos:\t4096", "flags:\t02100002", "mnt_id:\t24", "ino:\t3"])
    }

    @Test func epollKeepsEveryTarget() throws {
        let text = """
            pos:\t0
            flags:\t02000002
            mnt_id:\t17
            ino:\t20
            tfd:        5 events:       1c data:                5  pos:0 ino:5683 sdev:f
            tfd:        4 events:       1f data:                4  pos:0 ino:5683 sdev:f

            """
        let info = try ProcFS.parseFileDescriptorInfo(text)
        #expect(info.fields["tfd"] == "5 events:       1c data:                5  pos:0 ino:5683 sdev:f")
        #expect(info.lines.filter { $0.hasPrefix("tfd:") }.count == 2)
        #expect(info.fields["flags"] == "02000002")
    }

    @Test func olderKernelWithoutInode() throws {
        let info = try ProcFS.parseFileDescriptorInfo("pos:\t0\nflags:\t0100000\nmnt_id:\t5\neventfd-count:\t3\n")
        #expect(info.inode == nil)
        #expect(info.fields["eventfd-count"] == "3")
    }

    @Test(arguments: [
        ("pos:\t0\nmnt_id:\t5\n", "flags"),
        ("pos:\t0\nflags:\t0800\nmnt_id:\t5\n", "flags"),
        ("pos:\t0\nflags:\t077777777777\nmnt_id:\t5\n", "flags"),
        ("pos:\t-1\nflags:\t0\nmnt_id:\t5\n", "pos"),
        ("pos:\t0\nflags:\t0\n", "mnt_id"),
        ("pos:\t0\nflags:\t0\nmnt_id:\t5\nino:\tx\n", "ino"),
    ])
    func malformed(_ example: (String, String)) {
        #expect {
            try ProcFS.parseFileDescriptorInfo(example.0)
        } throws: { error in
            (error as? LinuxError)?.operation == "parse /proc fdinfo field \(example.1)"
        }
    }
}

@Suite struct ProcTextTests {
    @Test func numbers() {
        #expect(ProcText.unsigned("18446744073709551615".utf8) == .max)
        #expect(ProcText.unsigned("18446744073709551616".utf8) == nil)
        #expect(ProcText.unsigned("ffffffffffffffff".utf8, radix: 16) == .max)
        #expect(ProcText.unsigned("+1".utf8) == nil)
        #expect(ProcText.unsigned(" 1".utf8) == nil)
        #expect(ProcText.unsigned("".utf8) == nil)
        #expect(ProcText.unsigned("8".utf8, radix: 8) == nil)
        #expect(ProcText.signed(Array("-9223372036854775808".utf8)[...]) == .min)
        #expect(ProcText.signed(Array("-9223372036854775809".utf8)[...]) == nil)
        #expect(ProcText.signed(Array("-".utf8)[...]) == nil)
        #expect(ProcText.int32(Array("2147483648".utf8)[...]) == nil)
        #expect(ProcText.int32(Array("-1".utf8)[...]) == -1)
    }

    @Test func unescape() {
        #expect(ProcText.unescape(Array(#"a\nb\\c\t\101\7"#.utf8)[...]) == Array("a\nb\\c\tA\\7".utf8))
        #expect(ProcText.unescape(Array(#"trailing\"#.utf8)[...]) == Array(#"trailing\"#.utf8))
    }

    @Test func lines() {
        #expect(ProcText.lines(Array("a\nb".utf8)[...]).count == 2)
        #expect(ProcText.lines(Array("a\nb\n".utf8)[...]).count == 2)
        #expect(ProcText.lines(Array("a\n\nb\n".utf8)[...]).map(\.count) == [1, 0, 1])
        #expect(ProcText.lines([][...]).isEmpty)
    }
}

@Suite struct ParserRobustnessTests {
    /// Every parser either parses or throws, never traps, on every truncation
    /// and on single-byte corruptions of real text.
    @Test func truncatedAndCorruptedTextNeverTraps() {
        let maps =
            "55784d2f8000-55784d2fa000 r--p 00000000 fe:00 253911   /usr/bin/a b (deleted)\n7f00-7f01 rw-s 0 00:00 0\n"
        let stat = ParseStatTests.line(comm: "a) (b")
        let fdinfo = "pos:\t1\nflags:\t02\nmnt_id:\t3\nino:\t4\ntfd: 5 events: 1c\n"
        let samples: [(String, (ArraySlice<UInt8>) throws(LinuxError) -> Void)] = [
            (maps, { b throws(LinuxError) in _ = try ProcFS.parseMaps(bytes: b) }),
            (stat, { b throws(LinuxError) in _ = try ProcFS.parseStat(bytes: b) }),
            (ParseStatusTests.sample, { b throws(LinuxError) in _ = try ProcFS.parseStatus(bytes: b) }),
            (ParseLimitsTests.sample, { b throws(LinuxError) in _ = try ProcFS.parseLimits(bytes: b) }),
            (fdinfo, { b throws(LinuxError) in _ = try ProcFS.parseFileDescriptorInfo(bytes: b) }),
        ]
        let replacements: [UInt8] = [0x0A, 0x20, 0x29, 0x3A, 0xFF]
        for (text, parse) in samples {
            let bytes = Array(text.utf8)
            // Debug builds parse slowly: sample the long texts more sparsely.
            let step = bytes.count > 400 ? 7 : 1
            for end in stride(from: 0, through: bytes.count, by: step) {
                _ = try? parse(bytes[..<end])
                _ = try? parse(bytes[end...])
            }
            for index in stride(from: 0, to: bytes.count, by: step) {
                for replacement in replacements {
                    var corrupted = bytes
                    corrupted[index] = replacement
                    _ = try? parse(corrupted[...])
                }
            }
        }
    }
}

// MARK: - Live, against the test process

@Suite struct LiveProcFSTests {
    let pid = getpid()

    @Test func maps() throws {
        let maps = try ProcFS.maps(pid: pid)
        #expect(maps.contains { $0.path == "[stack]" })
        #expect(maps.contains { $0.path == "[vdso]" && $0.executable })
        #expect(zip(maps, maps.dropFirst()).allSatisfy { $0.end <= $1.start }, "sorted, not overlapping")

        var local = 0
        let address = withUnsafeMutablePointer(to: &local) { UInt64(UInt(bitPattern: $0)) }
        #expect(maps.contains { $0.start <= address && address < $0.end && $0.writable })

        // The executable is mapped, with the same device and inode stat reports.
        let exe = try ProcFS.executable(pid: pid)
        let file = try FileStatus.stat(path: exe)
        let image = try #require(maps.first { $0.path == exe })
        #expect(image.device == file.device && image.inode == file.inode)
        #expect(file.isRegular)
    }

    @Test func deletedFileMapping() throws {
        let path = "/tmp/amber procfs test \(pid) (x)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, 4096) == 0)
        let area = try #require(mmap(nil, 4096, PROT_READ, MAP_SHARED, fd, 0))
        try #require(area != MAP_FAILED)
        defer { munmap(area, 4096) }
        unlink(path)
        let start = UInt64(UInt(bitPattern: area))
        let mapping = try #require(try ProcFS.maps(pid: pid).first { $0.start == start })
        #expect(mapping.path == path && mapping.deleted && mapping.shared)
        #expect(mapping.protection == PROT_READ)
        #expect(try ProcFS.fileDescriptorPath(pid: pid, fd: fd) == path + " (deleted)")
        let status = try FileStatus.stat(procFD: pid, fd: fd)
        #expect(status == (try FileStatus.fstat(fd: fd)))
        #expect(status.isRegular && status.size == 4096)
        #expect(mapping.device == status.device && mapping.inode == status.inode)
        #expect(status.isDeleted)
    }

    /// The kernel's names: "x (deleted)" is a name, not a deletion; a newline is no "\\012";
    /// a deleted file loses one " (deleted)" only. (Run as root: map_files needs CAP_CHECKPOINT_RESTORE.)
    @Test func mapsWithFilesNamesFromTheKernel() throws {
        try #require(geteuid() == 0)
        let directory = "/tmp/amber procfs names \(pid)"
        try #require(mkdir(directory, 0o700) == 0)
        defer { rmdir(directory) }
        var areas: [(path: String, start: UInt64)] = []
        defer { for area in areas { munmap(UnsafeMutableRawPointer(bitPattern: UInt(area.start)), 4096) } }
        for name in ["x (deleted)", "new\nline", "gone (deleted)"] {
            let path = directory + "/" + name
            let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            try #require(fd >= 0)
            defer { close(fd) }
            try #require(ftruncate(fd, 4096) == 0)
            let area = try #require(mmap(nil, 4096, PROT_READ, MAP_SHARED, fd, 0))
            try #require(area != MAP_FAILED)
            areas.append((path, UInt64(UInt(bitPattern: area))))
        }
        unlink(areas[2].path)
        defer {
            unlink(areas[0].path)
            unlink(areas[1].path)
        }
        let maps = try ProcFS.mapsWithFiles(pid: pid)
        for (index, area) in areas.enumerated() {
            let mapping = try #require(maps.first { $0.start == area.start })
            #expect(mapping.path == area.path)
            #expect(mapping.deleted == (index == 2))
            #expect(mapping.fileSystem != nil)
        }
        let anonymous = try #require(maps.first { $0.path == "[stack]" })
        #expect(anonymous.fileSystem == nil)
    }

    @Test func status() throws {
        let status = try ProcFS.status(pid: pid)
        #expect(status.pid == pid && status.tgid == pid && status.ppid == getppid())
        #expect(status.threads >= 1)
        #expect(status.umask != nil && status.seccompMode != nil)
        #expect(status.namespacePIDs.first == pid)
        #expect(status.namespaceTGIDs.first == pid)
        #expect(status.namespaceSIDs.first == getsid(0))
        #expect(status.namespacePGIDs.first == getpgrp())
        #expect(status.name == (try ProcFS.comm(pid: pid)))
        #expect(status.fields["VmRSS"] != nil)
    }

    @Test func threadStatusShowsThisThreadsMask() throws {
        // "/proc/thread-self" links to "PID/task/TID".
        let tid = try #require(Int32(try ProcFS.link("/proc/thread-self").split(separator: "/").last ?? ""))
        #expect(try ProcFS.threads(pid: pid).contains(tid))
        var set = sigset_t()
        var old = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR2)
        try #require(pthread_sigmask(SIG_BLOCK, &set, &old) == 0)
        let blocked = try ProcFS.threadStatus(pid: pid, tid: tid).blockedSignals
        pthread_sigmask(SIG_SETMASK, &old, nil)
        #expect(blocked & (1 << (SIGUSR2 - 1)) != 0)
        #expect(try ProcFS.threadStatus(pid: pid, tid: tid).pid == tid)
    }

    @Test func stat() throws {
        let stat = try ProcFS.stat(pid: pid)
        #expect(stat.pid == pid && stat.ppid == getppid())
        #expect(stat.pgrp == getpgrp() && stat.session == getsid(0))
        #expect(stat.comm == (try ProcFS.comm(pid: pid)))
        #expect(stat.numThreads >= 1 && stat.startTime > 0)
        #expect(stat.startCode < stat.endCode && stat.argStart < stat.argEnd && stat.envStart <= stat.envEnd)
        #expect(stat.startBrk > 0 && stat.exitCode == 0)
        let maps = try ProcFS.maps(pid: pid)
        #expect(maps.contains { $0.start <= stat.startStack && stat.startStack < $0.end && $0.path == "[stack]" })
        #expect(maps.contains { $0.start <= stat.argStart && stat.argStart < $0.end })
    }

    @Test func limits() throws {
        let limits = try ProcFS.limits(pid: pid)
        #expect(limits.map(\.resource) == Array(0...15))
        var files = rlimit()
        try #require(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0)
        let entry = limits[Int(RLIMIT_NOFILE.rawValue)]
        #expect(entry.soft == UInt64(files.rlim_cur) && entry.hard == UInt64(files.rlim_max))
    }

    @Test func fileDescriptors() throws {
        let path = "/tmp/amber-procfs-fd-\(pid)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer {
            close(fd)
            unlink(path)
        }
        try #require(write(fd, "hello", 5) == 5)

        let fds = try ProcFS.fileDescriptors(pid: pid)
        #expect(fds.contains(fd) && fds == fds.sorted())
        #expect(try ProcFS.fileDescriptorPath(pid: pid, fd: fd) == path)

        let info = try ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
        #expect(info.position == 5)
        #expect(info.flags & UInt32(O_CLOEXEC) != 0)
        #expect(Int32(info.flags) & O_ACCMODE == O_RDWR)
        let file = try FileStatus.fstat(fd: fd)
        #expect(info.inode == file.inode)
        #expect(file.size == 5 && file.isRegular && !file.isDirectory)
        #expect(try FileStatus.stat(procFD: pid, fd: fd) == file)
        #expect(try FileStatus.lstat(path: "/proc/\(pid)/fd/\(fd)").isSymbolicLink)
    }

    @Test func fileTypes() throws {
        var pipeFDs: [Int32] = [0, 0]
        try #require(pipe(&pipeFDs) == 0)
        defer {
            close(pipeFDs[0])
            close(pipeFDs[1])
        }
        #expect(try FileStatus.fstat(fd: pipeFDs[0]).isFIFO)
        #expect(try ProcFS.fileDescriptorPath(pid: pid, fd: pipeFDs[0]).hasPrefix("pipe:["))
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(socketFD >= 0)
        defer { close(socketFD) }
        #expect(try FileStatus.stat(procFD: pid, fd: socketFD).isSocket)
        #expect(try FileStatus.stat(path: "/dev/null").isCharacterDevice)
        #expect(try FileStatus.stat(path: "/dev/null").rdev == 0x103)  // makedev(1, 3)
        #expect(try FileStatus.stat(path: "/tmp").isDirectory)
    }

    /// A pipe's or socket's fdinfo read through a copy says what the fdinfo says, but for the
    /// descriptor's close-on-exec; a regular file, or a pipe with a POSIX or OFD lock, is left
    /// to the fdinfo; every descriptor's link is read through its directory as by path.
    @Test func anonymousInfoThroughACopy() throws {
        let pipe = try PipeBuffer.make(flags: O_NONBLOCK)
        let ends = [pipe.read.rawValue, pipe.write.rawValue]
        defer {
            close(ends[0])
            close(ends[1])
        }
        let socketFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(socketFD >= 0)
        defer { close(socketFD) }
        for fd in [ends[0], ends[1], socketFD] {
            let copy = FileDescriptor(rawValue: fcntl(fd, F_DUPFD_CLOEXEC, 0))
            defer { try? copy.close() }
            let (info, status) = try #require(try AnonymousFileMounts.info(ofCopy: copy))
            let read = try ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
            #expect(info.position == read.position && info.mountID == read.mountID && info.inode == read.inode)
            #expect(info.flags == read.flags & ~UInt32(O_CLOEXEC))
            #expect(status == (try FileStatus.fstat(fd: fd)))
            #expect(AnonymousFileMounts.link(of: info) == (try ProcFS.fileDescriptorPath(pid: pid, fd: fd)))
            #expect(try ProcFS.parseFileDescriptorInfo(ProcText.string(info.text[...])).flags == info.flags)
        }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        try #require(fcntl(ends[1], Int32(FileLocking.setOpenFileDescriptionLock), &lock) == 0)
        #expect(try AnonymousFileMounts.info(ofCopy: FileDescriptor(rawValue: ends[0])) == nil)
        let file = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        try #require(file >= 0)
        defer { close(file) }
        #expect(try AnonymousFileMounts.info(ofCopy: FileDescriptor(rawValue: file)) == nil)
        let links = try ProcFS.fileDescriptorLinks(pid: pid)
        for fd in [ends[0], socketFD, file] {
            #expect(links.first { $0.fd == fd }?.link == (try ProcFS.fileDescriptorPath(pid: pid, fd: fd)))
        }
    }

    @Test func relations() throws {
        let relations = try ProcFS.relations(pid: pid)
        let status = try ProcFS.status(pid: pid)
        #expect(relations.parent == getppid())
        #expect(relations.tracer == status.tracerPID)
        #expect(relations.threadGroup == pid)
        #expect(relations.threads >= 1)
        #expect(try ProcFS.threadRelations(pid: pid, tid: pid).tracer == relations.tracer)
    }

    @Test func cwdExecutableAuxv() throws {
        var buffer = [CChar](repeating: 0, count: 4096)
        try #require(getcwd(&buffer, buffer.count) != nil)
        #expect(
            try ProcFS.cwd(pid: pid)
                == String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        #expect(try ProcFS.executable(pid: pid).hasPrefix("/"))

        let auxv = try ProcFS.auxv(pid: pid)
        #expect(auxv.count % 16 == 0 && auxv.count >= 32)
        let words = stride(from: 0, to: auxv.count, by: 8).map { offset in
            auxv[offset..<offset + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        #expect(words.suffix(2) == [0, 0], "ends with AT_NULL")
        let pairs = stride(from: 0, to: words.count, by: 2).map { (words[$0], words[$0 + 1]) }
        #expect(pairs.first { $0.0 == UInt64(AT_PAGESZ) }?.1 == UInt64(sysconf(Int32(_SC_PAGESIZE))))
    }

    @Test func children() throws {
        var child: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("sleep"), strdup("30"), nil]
        defer { for argument in argv { free(argument) } }
        try #require(posix_spawn(&child, "/bin/sleep", nil, nil, &argv, environ) == 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        #expect(try ProcFS.children(pid: pid).contains(child))
        let childStatus = try ProcFS.status(pid: child)
        #expect(childStatus.ppid == pid)
    }

    @Test func zombieChild() throws {
        var child: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("true"), nil]
        defer { for argument in argv { free(argument) } }
        try #require(posix_spawn(&child, "/bin/true", nil, nil, &argv, environ) == 0)
        defer {
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        // Wait (without reaping) until it has exited.
        var info = siginfo_t()
        try #require(waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) == 0)
        let status = try ProcFS.status(pid: child)
        #expect(status.state == "Z" && status.ppid == pid)
        let stat = try ProcFS.stat(pid: child)
        #expect(stat.state == "Z" && stat.comm == "true")
        #expect(try ProcFS.maps(pid: child).isEmpty)
    }

    /// Another process holding descriptors of many kinds (epoll with repeated
    /// "tfd" lines, eventfd, inotify, signalfd, timerfd, memfd, sockets) parses
    /// completely. Glibc's Swift module lacks those calls, so Python makes them.
    @Test(.enabled(if: access("/usr/bin/python3", X_OK) == 0))
    func otherProcessWithEveryDescriptorKind() throws {
        let script = """
            import os, select, signal, socket, sys
            r, w = os.pipe()
            ep = select.epoll(); ep.register(r); ep.register(w, select.EPOLLOUT)
            ev = os.eventfd(3)
            mem = os.memfd_create("amber procfs test")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                ino = libc.inotify_init1(0); libc.inotify_add_watch(ino, b"/tmp", 0x100)
                tfd = libc.timerfd_create(1, 0)
                mask = (ctypes.c_uint64 * 16)(1 << (signal.SIGUSR1 - 1))
                sfd = libc.signalfd(-1, mask, 0)
            except Exception:
                ino = tfd = sfd = -1
            os.lseek(mem, 0, 0); os.write(mem, b"hello")
            print(ep.fileno(), ev, mem, ino, tfd, sfd, flush=True)
            sys.stdin.read()
            """
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        try #require(pipe(&toChild) == 0 && pipe(&fromChild) == 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        for fd in toChild + fromChild { posix_spawn_file_actions_addclose(&actions, fd) }
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("python3"), strdup("-c"), strdup(script), nil]
        defer { for argument in argv { free(argument) } }
        var child: pid_t = 0
        try #require(posix_spawn(&child, "/usr/bin/python3", &actions, nil, &argv, environ) == 0)
        close(toChild[0])
        close(fromChild[1])
        defer {
            close(toChild[1])  // EOF on its stdin ends it
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(fromChild[0], &byte, 1) == 1, byte != 0x0A { line.append(byte) }
        close(fromChild[0])
        let fds = String(decoding: line, as: UTF8.self).split(separator: " ").compactMap { Int32($0) }
        try #require(fds.count == 6, "child said \(String(decoding: line, as: UTF8.self))")

        try Self.readEverything(pid: child)
        let epoll = try ProcFS.fileDescriptorInfo(pid: child, fd: fds[0])
        #expect(epoll.lines.filter { $0.hasPrefix("tfd:") }.count == 2)
        #expect(try ProcFS.fileDescriptorInfo(pid: child, fd: fds[1]).fields["eventfd-count"] == "3")
        #expect(try ProcFS.fileDescriptorPath(pid: child, fd: fds[2]) == "/memfd:amber procfs test (deleted)")
        #expect(try ProcFS.fileDescriptorInfo(pid: child, fd: fds[2]).position == 5)
        #expect(try FileStatus.stat(procFD: child, fd: fds[2]).size == 5)
        if fds[3] >= 0 {
            #expect(
                try ProcFS.fileDescriptorInfo(pid: child, fd: fds[3]).lines.contains { $0.hasPrefix("inotify wd:") })
        }
        if fds[4] >= 0 { #expect(try ProcFS.fileDescriptorInfo(pid: child, fd: fds[4]).fields["clockid"] == "1") }
        if fds[5] >= 0 {
            #expect(try ProcFS.fileDescriptorInfo(pid: child, fd: fds[5]).fields["sigmask"] == "0000000000000200")
        }
        #expect(try ProcFS.status(pid: child).ppid == pid)
        #expect(try ProcFS.children(pid: pid).contains(child))
    }

    @Test func thisProcessParsesCompletely() throws {
        try Self.readEverything(pid: pid)
    }

    private static func readEverything(pid: Int32) throws(LinuxError) {
        _ = try ProcFS.status(pid: pid)
        _ = try ProcFS.stat(pid: pid)
        _ = try ProcFS.maps(pid: pid)
        let limits = try ProcFS.limits(pid: pid)
        if limits.count != 16 { throw LinuxError(.invalidArgument, "\(pid): \(limits.count) limits") }
        _ = try ProcFS.comm(pid: pid)
        for tid in try ProcFS.threads(pid: pid) {
            _ = try unlessGone { () throws(LinuxError) in _ = try ProcFS.threadStatus(pid: pid, tid: tid) }
        }
        _ = try ProcFS.children(pid: pid)
        for fd in try ProcFS.fileDescriptors(pid: pid) {
            _ = try unlessGone { () throws(LinuxError) in
                _ = try ProcFS.fileDescriptorInfo(pid: pid, fd: fd)
                _ = try ProcFS.fileDescriptorPath(pid: pid, fd: fd)
            }
        }
    }

    /// Runs `body`; false when it failed because the process, thread or descriptor went away meanwhile.
    private static func unlessGone(_ body: () throws(LinuxError) -> Void) throws(LinuxError) -> Bool {
        do {
            try body()
            return true
        } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess { return false }
            throw error
        }
    }

    @Test func goneProcess() {
        let gone = Int32.max - 1  // above any pid_max
        #expect {
            try ProcFS.status(pid: gone)
        } throws: { error in
            let error = error as? LinuxError
            return error?.errno == .noSuchFileOrDirectory && error?.operation == "open /proc/\(gone)/status"
        }
        #expect(throws: LinuxError.self) { try ProcFS.threads(pid: gone) }
        #expect(throws: LinuxError.self) { try ProcFS.children(pid: gone) }
        #expect(throws: LinuxError.self) { try ProcFS.cwd(pid: gone) }
        #expect(throws: LinuxError.self) { try FileStatus.stat(procFD: gone, fd: 0) }
    }

    @Test func readLargeFileAndLongLink() throws {
        // Larger than the initial buffer, and not a multiple of it.
        let path = "/tmp/amber-procfs-read-\(pid)"
        let content = (0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        try #require(write(fd, content, content.count) == content.count)
        close(fd)
        #expect(try ProcFS.read(path) == content)
        #expect(try ProcFS.read("/proc/\(pid)/maps").count > 0)
        #expect(try ProcFS.read("/dev/null").isEmpty)

        let target = "/" + String(repeating: "long-component/", count: 80) + "end"
        let link = "/tmp/amber-procfs-link-\(pid)"
        unlink(link)
        try #require(symlink(target, link) == 0)
        defer { unlink(link) }
        #expect(try ProcFS.link(link) == target)
        #expect(throws: LinuxError.self) { try ProcFS.link(path) }  // not a link: EINVAL
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replaceSubrange(range, with: replacement)
    }

    private func range(of target: String) -> Range<Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) { return index..<self.index(index, offsetBy: target.count) }
            index = self.index(after: index)
        }
        return nil
    }

    private func replaceSubrange(_ range: Range<Index>, with replacement: String) -> String {
        String(self[..<range.lowerBound]) + replacement + String(self[range.upperBound...])
    }
}

@Suite struct ParseMemoryFlagsTests {
    @Test func flagsByAreaStart() throws {
        let text = """
            7f00000000-7f00001000 rw-p 00000000 00:00 0 
            Size:                  4 kB
            VmFlags: rd wr mr mw me ac 
            7f00001000-7f00002000 ---p 00000000 00:00 0 
            Size:                  4 kB
            VmFlags: mr mw me 
            """
        let flags = try ProcFS.parseMemoryFlags(text)
        #expect(flags[0x7f_0000_0000] == [.readable, .writable, .mayRead, .mayWrite, .mayExecute, .accounted])
        #expect(flags[0x7f_0000_1000] == [.mayRead, .mayWrite, .mayExecute])
    }

    @Test func adviceLocksFlagsToRefuseAndUnknownOnes() throws {
        let text = """
            7f00000000-7f00001000 rw-p 00000000 00:00 0 
            VmFlags: rd wr mr mw me lo lf dc wf dd sr nr dp sl hg mg gd 
            7f00001000-7f00002000 rw-p 00000000 00:00 0 
            VmFlags: rd wr mr me rr nh io pf mm ht sf um uw ui ss xx 
            7f00002000-7f00003000 rw-p 00000000 00:00 0 
            VmFlags: rd ms gu sd ar 
            """
        let flags = try ProcFS.parseMemoryFlags(text)
        #expect(
            flags[0x7f_0000_0000] == [
                .readable, .writable, .mayRead, .mayWrite, .mayExecute, .locked, .lockOnFault, .doNotCopy,
                .wipeOnFork, .doNotDump, .sequentialRead, .noReserve, .droppable, .sealed, .hugePage, .mergeable,
                .growsDown,
            ])
        #expect(
            flags[0x7f_0000_1000] == [
                .readable, .writable, .mayRead, .mayExecute, .randomRead, .noHugePage, .io, .pfnMap, .mixedMap,
                .hugeTLB, .synchronous, .userfaultMissing, .userfaultWriteProtect, .userfaultMinor, .shadowStack,
                .unknown,
            ])
        #expect(flags[0x7f_0000_2000] == [.readable, .mayShare, .guardRegions, .softDirty, .architecture])
    }

}

@Suite struct ParsePosixTimersTests {
    @Test func everyNotifyKind() throws {
        let text = """
            ID: 4
            signal: 12/00000000000000c3
            notify: signal/pid.25358
            ClockID: 1
            ID: 3
            signal: 10/00000000000000b2
            notify: signal/tid.25359
            ClockID: 0
            ID: 0
            signal: 0/0000000000000000
            notify: none/pid.27666
            ClockID: -221350

            """
        #expect(
            try ProcFS.parsePosixTimers(text) == [
                PosixTimerEntry(id: 4, signal: 12, value: 0xc3, notify: 0, target: 25358, clock: 1),
                PosixTimerEntry(id: 3, signal: 10, value: 0xb2, notify: 4, target: 25359, clock: 0),
                PosixTimerEntry(id: 0, signal: 0, value: 0, notify: 1, target: 27666, clock: -221350),
            ])
    }

    @Test func noTimers() throws {
        #expect(try ProcFS.parsePosixTimers("") == [])
    }

    @Test(arguments: [
        "signal: 12/00c3\n",
        "ID: x\n",
        "ID: 1\nsignal: 12\n",
        "ID: 1\nnotify: bell/pid.3\n",
        "ID: 1\nnotify: signal/gid.3\n",
        "ID: 1\nClockID: one\n",
    ])
    func malformed(_ text: String) {
        #expect(throws: LinuxError.self) { try ProcFS.parsePosixTimers(text) }
    }
}

@Suite struct ParseFileLockTests {
    @Test func everyKind() {
        #expect(
            FileLock.parse("1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF")
                == FileLock(kind: .posix, mode: "WRITE", pid: 1234, inode: 5678, device: "08:01"))
        #expect(
            FileLock.parse("lock:\t2: FLOCK  ADVISORY  WRITE 99 00:1a:42 0 EOF")
                == FileLock(kind: .flock, mode: "WRITE", pid: 99, inode: 42, device: "00:1a"))
        #expect(
            FileLock.parse("lock:\t3: OFDLCK ADVISORY  READ  -1 fd:00:7 10 99")
                == FileLock(
                    kind: .openFileDescription, mode: "READ", pid: -1, inode: 7, device: "fd:00", start: 10, end: 99))
        #expect(
            FileLock.parse("4: LEASE  ACTIVE    READ 55 00:1a:42 0 EOF")
                == FileLock(kind: .lease, mode: "READ", pid: 55, inode: 42, device: "00:1a", advice: "ACTIVE"))
        #expect(
            FileLock.parse("5: DELEG  ACTIVE    READ 56 00:1a:43 0 EOF")
                == FileLock(kind: .other("DELEG"), mode: "READ", pid: 56, inode: 43, device: "00:1a", advice: "ACTIVE"))
        #expect(
            FileLock.parse("6: POSIX  MANDATORY WRITE 7 08:01:5 100 EOF")
                == FileLock(
                    kind: .posix, mode: "WRITE", pid: 7, inode: 5, device: "08:01", advice: "MANDATORY", start: 100))
    }

    @Test func waitersAndOthersAreNotLocks() {
        #expect(FileLock.parse("1: -> POSIX  ADVISORY  WRITE 1235 08:01:5678 0 EOF") == nil)
        #expect(FileLock.parse("pos:\t0") == nil)
        #expect(FileLock.parse("1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 end") == nil)
        #expect(FileLock.parse("") == nil)
    }
}
