import CKeepaliveShim
import Foundation

/// Rootless mode: a user namespace in which this process is root, plus a network namespace owned by
/// it. No host privilege is needed where the kernel allows unprivileged user namespaces.
public enum UserNamespace {
    /// unshare(CLONE_NEWUSER | CLONE_NEWNET) and map the current uid/gid to root inside.
    /// Must run before the process has threads (user namespaces require a single-threaded caller).
    public static func enterUnprivileged() throws {
        let uid = getuid(), gid = getgid()
        _ = kal_set_dumpable()
        guard kal_unshare(KAL_CLONE_NEWUSER | KAL_CLONE_NEWNET) == 0 else {
            throw SystemCallError("unshare(CLONE_NEWUSER|CLONE_NEWNET) as uid \(uid)")
        }
        try write("deny", to: "/proc/self/setgroups")
        try write("0 \(uid) 1", to: "/proc/self/uid_map")
        try write("0 \(gid) 1", to: "/proc/self/gid_map")
    }

    static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw SystemCallError("open \(path)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw SystemCallError("write \(path)") }
    }
}
