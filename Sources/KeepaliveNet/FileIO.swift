import Glibc

/// A failed file operation in the lab's own words: what was being done, the path, the errno.
/// (Foundation's `Data.write`/`FileManager` errors print as an NSError dump; none reaches the
/// terminal.)
public struct FileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What the lab was doing, e.g. "write the report".
    public let operation: String
    public let path: String
    public let errno: Int32

    public init(_ operation: String, path: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var errnoName: String { Errno.name(errno) }
    public var description: String { "\(operation): \(path): \(String(cString: strerror(errno))) (\(errnoName))" }
    /// The file system is full (or the quota is): the condition captures give way to results for.
    public var isOutOfSpace: Bool { errno == ENOSPC || errno == EDQUOT || errno == EFBIG }
}

/// File writes and reads through the system calls, each failure a `FileError`.
public enum FileIO {
    /// Writes `bytes` to `path`. `atomic`: through `path.tmp-PID` and rename(2), so a reader sees the
    /// old file or the whole new one, and a failed write leaves neither a partial file nor the
    /// temporary one.
    public static func write(_ bytes: [UInt8], to path: String, operation: String, atomic: Bool = true, mode: mode_t = 0o644) throws {
        let target = atomic ? "\(path).tmp-\(getpid())" : path
        let fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(operation, path: path) }
        do {
            try writeAll(fd, bytes, operation: operation, path: path)
            guard close(fd) == 0 else { throw FileError(operation, path: path) }
        } catch {
            close(fd)
            unlink(target)
            throw error
        }
        if atomic && rename(target, path) != 0 {
            let failure = FileError(operation, path: path)
            unlink(target)
            throw failure
        }
    }

    public static func write(_ text: String, to path: String, operation: String, atomic: Bool = true) throws {
        try write(Array(text.utf8), to: path, operation: operation, atomic: atomic)
    }

    /// The whole of `bytes` to `fd`, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], operation: String, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw FileError(operation, path: path)
            }
            offset += n
        }
    }

    /// The file's bytes, or nil when it does not exist; any other failure is an error.
    public static func read(_ path: String, operation: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if Glibc.errno == ENOENT { return nil }
            throw FileError(operation, path: path)
        }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw FileError(operation, path: path)
            }
            if n == 0 { return result }
            result.append(contentsOf: buffer[..<n])
        }
    }

    /// mkdir -p, naming the component that failed.
    public static func createDirectories(_ path: String, operation: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            if mkdir(prefix, 0o755) != 0 && Glibc.errno != EEXIST {
                throw FileError("\(operation): mkdir", path: prefix)
            }
        }
    }

    /// Copies a regular file (`operation` names what for); the copy is removed if it fails.
    public static func copy(_ source: String, to target: String, operation: String) throws {
        guard let bytes = try read(source, operation: "\(operation): read") else {
            throw FileError("\(operation): read", path: source, errno: ENOENT)
        }
        try write(bytes, to: target, operation: "\(operation): write", atomic: true)
    }
}
