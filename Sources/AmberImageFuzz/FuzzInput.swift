import AmberImage
import CChecksum
import SwiftProtobuf

/// The key every fuzz input is authenticated with: images get past the MAC check only when
/// the input seals them with it.
let fuzzImageKey = ImageKey(bytes: Array(0..<UInt8(ImageKey.size)))!

/// Mode bit 2 set: the input after the mode byte is one request packet of `amber swrk`
/// (CRIU's RPC), for the request decoder; clear: an image, as below.
func isSwrkRequest(_ bytes: UnsafeRawBufferPointer) -> Bool { bytes.first.map { $0 & 4 != 0 } ?? false }

/// The key every encrypted fuzz input is sealed with (`pack --encrypt`), and read with.
let fuzzEncryptionKey = ImageEncryptionKey(bytes: Array(32..<64))!

/// One fuzz input: the files of an image, whether the inventory's sizes and checksums are
/// recomputed for them before the image is read, and whether its MAC is then sealed too.
///
/// Bytes: a mode byte, then entries up to the end of the input, each a name
/// length (1 byte), the name (UTF-8), a contents length (4 bytes, little-endian)
/// and the contents. An entry cut short by the end of the input keeps what
/// there is, and a later entry of the same name replaces an earlier one, so
/// that every byte string is an input.
struct FuzzInput: Equatable {
    /// Mode bit 0 clear: recompute the inventory's checksums, so that a mutated
    /// file gets past them to the decoders and validators. Set: keep them, so
    /// that the checksum and size checks themselves are fuzzed.
    var resealsChecksums: Bool
    /// Mode bit 1 clear (and resealing): write `inventory.mac` for the resealed image under
    /// `fuzzImageKey`, so that mutated records are read as authenticated. Set: keep the
    /// input's own `inventory.mac`, if any, to fuzz the MAC check itself.
    var sealsCode: Bool
    /// File names to contents.
    var files: [String: [UInt8]]

    init(resealsChecksums: Bool, sealsCode: Bool, files: [String: [UInt8]]) {
        self.resealsChecksums = resealsChecksums
        self.sealsCode = sealsCode
        self.files = files
    }

    init(decoding bytes: UnsafeRawBufferPointer) {
        resealsChecksums = bytes.first.map { $0 & 1 == 0 } ?? true
        sealsCode = bytes.first.map { $0 & 2 == 0 } ?? true
        files = [:]
        var cursor = 1
        func take(_ count: Int) -> UnsafeRawBufferPointer {
            let end = cursor + min(count, bytes.count - cursor)
            defer { cursor = end }
            return UnsafeRawBufferPointer(rebasing: bytes[cursor..<end])
        }
        while cursor < bytes.count {
            let nameLength = Int(take(1)[0])
            let name = String(decoding: take(nameLength), as: UTF8.self)
            let length = take(4).reversed().reduce(0) { $0 << 8 | Int($1) }
            files[name] = Array(take(length))
        }
    }

    /// The bytes that decode to this input, files in name order.
    var encoded: [UInt8] {
        var bytes: [UInt8] = [(resealsChecksums ? 0 : 1) | (sealsCode ? 0 : 2)]
        for (name, contents) in files.sorted(by: { $0.key < $1.key }) {
            let nameBytes = Array(name.utf8.prefix(255))
            bytes.append(UInt8(nameBytes.count))
            bytes += nameBytes
            let length = UInt32(clamping: contents.count)
            bytes += (0..<4).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
            bytes += contents.prefix(Int(length))
        }
        return bytes
    }

    /// The files as the reader gets them: in reseal mode, with every inventory
    /// entry naming a file that is present set to that file's size and XXH64, the
    /// inventory's own checksum (`inventory.xxh64`) made for it, and with `sealsCode`
    /// a MAC for that. An inventory that does not decode is left as it is.
    var image: [String: [UInt8]] {
        guard resealsChecksums, let bytes = files[ImageFormat.inventoryName],
            var inventory = try? Amber_Inventory(serializedBytes: bytes)
        else { return files }
        for index in inventory.files.indices {
            guard let contents = files[inventory.files[index].name] else { continue }
            inventory.files[index].seal(contents)
        }
        fuzzEncryptionKey.sealInventory(&inventory)
        var image = files
        let inventoryBytes: [UInt8]? = try? inventory.serializedBytes()
        image[ImageFormat.inventoryName] = inventoryBytes
        image[ImageFormat.inventoryChecksumName] = inventoryBytes.map { InventoryChecksum.file(forInventory: $0) }
        if sealsCode { image[ImageFormat.macName] = fuzzImageKey.authenticationCode(forImage: image) }
        return image
    }
}

/// Reads an image the way a restore and `amber show` do, task by task and whole, and traps when
/// the reader accepts something that breaks a promise it makes, names a file in an
/// error that is not the inventory, its checksum or listed in the inventory, or prints invalid JSON;
/// libFuzzer reports the trap as a crash. Returns the first error the reader gave, if any.
@discardableResult
func exercise(_ files: [String: [UInt8]]) -> ImageError? {
    let listed = Set(
        files[ImageFormat.inventoryName].flatMap { try? Amber_Inventory(serializedBytes: $0) }?.files.map(\.name) ?? [])
    func checked(_ error: ImageError) -> ImageError {
        precondition(
            error.file == ImageFormat.inventoryName || error.file == ImageFormat.inventoryChecksumName
                || listed.contains(error.file),
            "an error names \(error.file), which the inventory does not list: \(error)")
        return error
    }
    let encrypted =
        files[ImageFormat.inventoryName].flatMap { try? Amber_Inventory(serializedBytes: $0) }?.hasEncryption ?? false
    let reader: ImageReader
    do {
        reader = try ImageReader(
            files: files, key: fuzzImageKey, encryptionKey: encrypted ? fuzzEncryptionKey : nil)
    } catch {
        return checked(error)
    }
    let authenticated = reader.authenticity.isAuthenticated
    precondition(
        !authenticated || files[ImageFormat.macName] != nil, "an image without \(ImageFormat.macName) is authenticated")
    var firstError: ImageError?
    for pid in reader.taskPIDs {
        do {
            checkPages(of: try reader.task(pid: pid), in: reader)
        } catch {
            // The files in memory never change: a record the MAC covered reads back the same.
            precondition(
                !authenticated || error.kind != .checksumMismatch, "an authenticated record no longer matches: \(error)"
            )
            firstError = firstError ?? checked(error)
        }
    }
    do {
        let tasks = try reader.tasks()
        precondition(
            firstError == nil,
            "tasks() accepted an image with a task that does not validate: \(String(describing: firstError))")
        precondition(
            tasks.map(\.pid).sorted() == reader.taskPIDs && tasks.first?.pid == reader.inventory.rootPid,
            "tasks() gave the records of \(tasks.map(\.pid)), not every one with the root's first")
    } catch {
        firstError = firstError ?? checked(error)
    }
    do {
        let json = try imageJSON(reader)
        precondition(
            (try? Google_Protobuf_Value(jsonString: json)) != nil,
            "imageJSON printed what does not parse as JSON: \(json)")
    } catch {
        if firstError == nil { fatalError("the whole image read but imageJSON failed: \(error)") }
    }
    return firstError
}

/// A validated task's page runs lie inside their page files: fetching every run,
/// as a restore does, must work and give the run's length.
private func checkPages(of task: Amber_Task, in reader: ImageReader) {
    var pageFiles: [UInt32: MappedPageFile] = [:]
    for run in task.memory.areas.flatMap(\.pages) {
        do {
            let pageFile = try pageFiles[run.file] ?? reader.pageFile(named: task.memory.pageFiles[Int(run.file)])
            pageFiles[run.file] = pageFile
            let pages = try pageFile.pages(offset: run.offset, count: run.count)
            precondition(
                UInt64(pages.count) == run.count * ImageFormat.pageSize,
                "a run of \(run.count) pages gave \(pages.count) bytes")
        } catch {
            fatalError("task \(task.pid) validated but its run at \(run.address) is not in its page file: \(error)")
        }
    }
}

extension Amber_ImageFile {
    /// Sets the size and the checksums (whole-file, or per chunk when the entry has a chunk
    /// size the reader accepts) to those of `contents`. A compressed or encrypted file keeps its
    /// plain size; its checksums are those of its stored chunks, when their sizes add up to `contents`.
    mutating func seal(_ contents: [UInt8]) {
        if compressed || encrypted {
            guard storedChunkSize.reduce(0, { $0 &+ $1 }) == UInt64(contents.count) else { return }
            var start = 0
            let digests = storedChunkSize.map { size in
                defer { start += Int(size) }
                return contents[start..<(start + Int(size))].withUnsafeBytes { amber_xxh64($0.baseAddress, $0.count) }
            }
            if chunkSize == 0 { xxh64 = digests.first ?? 0 } else { chunkXxh64 = digests }
            return
        }
        size = UInt64(contents.count)
        guard chunkSize > 0, chunkSize <= ImageFormat.maximumChunkSize else {
            xxh64 = contents.withUnsafeBytes { amber_xxh64($0.baseAddress, $0.count) }
            return
        }
        let step = Int(chunkSize)
        chunkXxh64 = stride(from: 0, to: contents.count, by: step).map { start in
            contents[start..<min(start + step, contents.count)].withUnsafeBytes {
                amber_xxh64($0.baseAddress, $0.count)
            }
        }
    }
}
