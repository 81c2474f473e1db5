import CKeepaliveShim
import Glibc

/// A named network namespace, visible to `ip netns list` (a bind mount under `/run/netns`), held by
/// an open file descriptor for as long as this object lives.
///
/// Requires CAP_SYS_ADMIN (unshare and the bind mount) in the namespace's owning user namespace.
public final class NetworkNamespace: Sendable {
    public static let directory = "/run/netns"

    public let name: String
    public let path: String
    /// O_RDONLY descriptor of the namespace file; passed to `setns` and to IFLA_NET_NS_FD.
    /// -1 once the namespace is deleted.
    public var fd: Int32 { descriptor.value }
    private let descriptor: Locked<Int32>

    /// Creates a new namespace named `name`. The name must be a valid file name (see `validate`).
    /// `setup` runs inside the new namespace on the thread that created it, before anyone else can
    /// enter it: the natural place for sysctls and for opening sockets that must live there.
    public static func create(
        named name: String, setup: (() throws -> Void)? = nil
    ) throws -> NetworkNamespace {
        try validate(name: name)
        try prepareDirectory()
        let path = "\(directory)/\(name)"
        // An empty file to mount the namespace on: a hard link, not a new inode (see the shim).
        guard kal_placeholder_create(directory, path) == 0 else { throw SystemCallError("create \(path)") }
        do {
            try NamespaceThread.run {
                guard kal_unshare(KAL_CLONE_NEWNET) == 0 else {
                    throw SystemCallError("unshare(CLONE_NEWNET) for \(name)")
                }
                guard mount("/proc/thread-self/ns/net", path, "none", UInt(MS_BIND), nil) == 0 else {
                    throw SystemCallError("bind-mount namespace \(name) on \(path)")
                }
                try setup?()
            }
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemCallError("open \(path)") }
            return NetworkNamespace(name: name, path: path, fd: fd)
        } catch {
            Self.removeMount(at: path)
            throw error
        }
    }

    /// Opens an existing named namespace (for example one a crashed run left behind).
    public static func open(named name: String) throws -> NetworkNamespace {
        try validate(name: name)
        let path = "\(directory)/\(name)"
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open namespace \(path)") }
        return NetworkNamespace(name: name, path: path, fd: fd)
    }

    private init(name: String, path: String, fd: Int32) {
        self.name = name
        self.path = path
        descriptor = Locked(fd)
    }

    deinit {
        let fd = descriptor.value
        if fd >= 0 { close(fd) }
    }

    /// Runs `body` on a dedicated thread that has entered this namespace.
    public func perform<T>(_ body: () throws -> T) throws -> T {
        try NamespaceThread.run {
            guard kal_setns(fd, KAL_CLONE_NEWNET) == 0 else {
                throw SystemCallError("setns into \(name)")
            }
            return try body()
        }
    }

    /// Removes the name. The kernel frees the namespace once no process, socket or descriptor holds
    /// it; `cleanup` kills the processes first. Idempotent.
    public func delete() {
        let fd = descriptor.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        guard fd >= 0 else { return }
        Self.removeMount(at: path)
        // The descriptor holds a reference on the namespace too; close it so the kernel can free it.
        close(fd)
    }

    /// The namespace's identity (inode of its nsfs file), to find processes living in it.
    public var inode: UInt64? {
        guard fd >= 0 else { return nil }
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    static func inode(atPath path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    static func removeMount(at path: String) {
        _ = umount2(path, Int32(MNT_DETACH))
        _ = unlink(path)
    }

    /// Names become file names under /run/netns and appear in `ip netns` output.
    public static func validate(name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 200 else {
            throw LabNetworkError.invalidName(name, reason: "must be 1…200 characters")
        }
        let allowed = name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2D || c == 0x5F || c == 0x2E
        }
        guard allowed, name != ".", name != ".." else {
            throw LabNetworkError.invalidName(name, reason: "only letters, digits, '-', '_' and '.' are allowed")
        }
    }

    /// As `ip netns add` does: /run/netns must be a shared mount so a namespace mounted there stays
    /// visible to other mount namespaces.
    private static func prepareDirectory() throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw SystemCallError("mkdir \(directory)")
        }
        if mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 { return }
        guard errno == EINVAL else { throw SystemCallError("make \(directory) a shared mount") }
        guard mount(directory, directory, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
            throw SystemCallError("bind-mount \(directory) onto itself")
        }
        guard mount("", directory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 else {
            throw SystemCallError("make \(directory) a shared mount")
        }
    }

    /// Names of all namespaces under /run/netns.
    public static func listNames() -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Blocks until the kernel has destroyed every network namespace released before the call
    /// (deleting a namespace only queues its destruction; after hundreds of trials the kernel's
    /// cleanup work runs for seconds and takes CPU from whatever starts next). Waits for a kernel
    /// event (see kal_netns_cleanup_barrier), not by polling. Returns the seconds it waited.
    @discardableResult
    public static func awaitKernelCleanup(timeout: Double = 120) throws -> Double {
        let start = kal_monotonic_ns()
        var step: Int32 = 0
        let rc = kal_netns_cleanup_barrier(Int32(timeout * 1000), &step)
        guard rc == 0 else {
            let what = ["", "observer namespace and netlink socket", "sentinel namespace", "RTM_NEWNSID (assign the sentinel an id)",
                        "RTM_GETNSID (read the id back)", "waiting for RTM_DELNSID"][Int(min(max(step, 0), 5))]
            throw SystemCallError("namespace cleanup barrier: \(what)\(rc == -ETIMEDOUT ? " (after \(timeout) s)" : "")", errno: -rc)
        }
        return Double(kal_monotonic_ns() - start) / 1e9
    }

    /// Pids of processes whose network namespace is this one (as `ip netns pids`).
    public func pids() -> [pid_t] {
        guard let inode = inode ?? Self.inode(atPath: path) else { return [] }
        return ProcessTable.pids(inNetworkNamespaceInode: inode)
    }
}

enum ProcessTable {
    static func pids(inNetworkNamespaceInode inode: UInt64) -> [pid_t] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var result: [pid_t] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            guard let pid = pid_t(name) else { continue }
            var st = stat()
            if stat("/proc/\(pid)/ns/net", &st) == 0, UInt64(st.st_ino) == inode { result.append(pid) }
        }
        return result
    }
}
