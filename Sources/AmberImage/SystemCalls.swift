import Glibc

// Thin wrappers over the few system calls the image code needs: they retry on
// EINTR, loop on partial transfers and report failures as `ImageError`s that
// name the image file concerned.

/// Opens `name` relative to the image directory, retrying on EINTR; returns -1 with `errno` set on failure.
/// Files an image is made of are the caller's alone (0600): they hold the processes' memory.
func openFile(in directoryFD: CInt, _ name: String, _ flags: CInt, mode: mode_t = 0o600) -> CInt {
    while true {
        let fd = openat(directoryFD, name, flags | O_CLOEXEC, mode)
        if fd >= 0 || errno != EINTR { return fd }
    }
}

/// Writes all of `buffer`, however many calls the kernel needs.
func writeAll(_ fd: CInt, _ buffer: UnsafeRawBufferPointer, file: String) throws(ImageError) {
    guard var next = buffer.baseAddress else { return }
    var remaining = buffer.count
    while remaining > 0 {
        let written = write(fd, next, remaining)
        if written < 0 {
            if errno == EINTR { continue }
            throw .system("write", file: file)
        }
        next += written
        remaining -= written
    }
}

/// Fills `buffer` from the file's current position, or from `offset` without moving it;
/// returns fewer bytes only at end of file.
func readFully(_ fd: CInt, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64? = nil, file: String)
    throws(ImageError) -> Int
{
    guard let base = buffer.baseAddress else { return 0 }
    var total = 0
    while total < buffer.count {
        let count =
            if let offset {
                pread(fd, base + total, buffer.count - total, off_t(offset) + off_t(total))
            } else {
                read(fd, base + total, buffer.count - total)
            }
        if count < 0 {
            if errno == EINTR { continue }
            throw .system(offset == nil ? "read" : "pread", file: file)
        }
        if count == 0 { break }
        total += count
    }
    return total
}

func syncFile(_ fd: CInt, file: String) throws(ImageError) {
    guard fsync(fd) == 0 else { throw .system("fsync", file: file) }
}

func fileStatus(_ fd: CInt, file: String) throws(ImageError) -> stat {
    var status = stat()
    guard fstat(fd, &status) == 0 else { throw .system("fstat", file: file) }
    return status
}
