import AmberImage
import CChecksum
import Glibc
import SwiftProtobuf

/// A fuzz input holding the image in `directory`, which must read and validate.
///
/// Each page file keeps at most `pageLimit` pages, those of the first runs in
/// address order; the runs are cut to match and moved to their new offsets. An object of
/// shared anonymous memory is cut once, alike in every task that maps it.
/// Every other file is taken as it is, and the inventory lists the new sizes
/// and checksums (its own checksum made anew), so the input is a valid image in either mode. Its own
/// MAC is left out: the input seals one with the fuzz key when its mode says so. With `storage`, the
/// input's image is stored so: compressed, and encrypted under `fuzzEncryptionKey`.
func packImage(directory: String, pageLimit: Int, storage: ImageStorage = .plain) throws -> FuzzInput {
    let reader = try ImageReader(directory: directory)
    var files: [String: [UInt8]] = [:]
    var pagesKept: [String: [UInt8]] = [:]
    var objectsKept: [UInt64: Amber_SharedAnonymousMemory] = [:]
    for pid in reader.taskPIDs {
        var task = try reader.task(pid: pid)
        var sources: [UInt32: MappedPageFile] = [:]
        // A page file no kept run refers to is kept empty, not whole.
        for name in task.memory.pageFiles where pagesKept[name] == nil { pagesKept[name] = [] }
        for areaIndex in task.memory.areas.indices {
            var runs: [Amber_PageRun] = []
            for var run in task.memory.areas[areaIndex].pages {
                let name = task.memory.pageFiles[Int(run.file)]
                var kept = pagesKept[name] ?? []
                let count = min(run.count, UInt64(pageLimit - kept.count / Int(ImageFormat.pageSize)))
                guard count > 0 else { continue }
                let source = try sources[run.file] ?? reader.pageFile(named: name)
                sources[run.file] = source
                kept += try source.pages(offset: run.offset, count: count)
                run.offset = UInt64(kept.count) - count * ImageFormat.pageSize
                run.count = count
                pagesKept[name] = kept
                runs.append(run)
            }
            task.memory.areas[areaIndex].pages = runs
        }
        for index in task.memory.sharedAnonymous.indices {
            let object = task.memory.sharedAnonymous[index]
            if objectsKept[object.id] == nil {
                var cut = object
                cut.pages = []
                var kept: [UInt8] = []
                let source = object.pages.isEmpty ? nil : try reader.pageFile(named: object.pageFile)
                for var run in object.pages {
                    let count = min(run.count, UInt64(pageLimit - kept.count / Int(ImageFormat.pageSize)))
                    guard count > 0, let source else { break }
                    kept += try source.pages(offset: run.offset, count: count)
                    run.offset = UInt64(kept.count) - count * ImageFormat.pageSize
                    run.count = count
                    cut.pages.append(run)
                }
                pagesKept[object.pageFile] = kept
                objectsKept[object.id] = cut
            }
            task.memory.sharedAnonymous[index] = objectsKept[object.id]!
        }
        files[ImageFormat.taskRecordName(pid: pid)] = try task.serializedBytes()
    }
    files.merge(pagesKept) { _, kept in kept }
    var inventory = reader.inventory
    for index in inventory.files.indices {
        let name = inventory.files[index].name
        let contents = try files[name] ?? readFile(directory + "/" + name)
        files[name] = contents
        inventory.files[index].seal(contents)
    }
    files[ImageFormat.inventoryName] = try inventory.serializedBytes()
    if storage.compress || storage.encryptionKey != nil {
        guard let coded = recodedImage(files, storage: storage) else {
            throw FileError("cannot compress or encrypt the packed image of", directory)
        }
        files = coded
    }
    files[ImageFormat.inventoryChecksumName] = files[ImageFormat.inventoryName].map {
        InventoryChecksum.file(forInventory: $0)
    }
    return FuzzInput(resealsChecksums: false, sealsCode: false, files: files)
}

struct FileError: Error, CustomStringConvertible {
    let description: String

    init(_ operation: String, _ path: String) {
        description = "\(operation) \(path): \(String(cString: strerror(errno)))"
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw FileError("cannot open", path) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[..<count]
        if count < chunk.count { break }
    }
    guard ferror(file) == 0 else { throw FileError("cannot read", path) }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard let file = fopen(path, "wb") else { throw FileError("cannot create", path) }
    defer { fclose(file) }
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count, fflush(file) == 0 else {
        throw FileError("cannot write", path)
    }
}
