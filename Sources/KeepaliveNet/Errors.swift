import CNetlink
import Glibc

/// A failed system call: what was being done, and the errno the kernel returned.
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.errno = errno
    }

    public var errnoName: String { Errno.name(errno) }
    public var description: String { "\(operation): \(String(cString: strerror(errno))) (\(errnoName))" }
}

/// A failed netlink request. Keeps libnl's own code, the kernel's errno and the kernel's extended-ack
/// text: libnl alone reduces all three to one NLE_* number.
public struct NetlinkError: Error, CustomStringConvertible, Equatable, Sendable {
    public let operation: String
    /// libnl's NLE_* code (positive).
    public let libnlCode: Int32
    /// The errno in the kernel's NLMSG_ERROR, 0 when the failure happened before the kernel answered.
    public let kernelErrno: Int32
    /// The kernel's extack message (NLMSGERR_ATTR_MSG), empty when it sent none.
    public let extack: String

    public init(operation: String, libnlCode: Int32, kernelErrno: Int32, extack: String) {
        self.operation = operation
        self.libnlCode = libnlCode
        self.kernelErrno = kernelErrno
        self.extack = extack
    }

    /// The kernel or libnl refused an address family (e.g. IPv6 not built into the kernel).
    public var isAddressFamilyNotSupported: Bool {
        kernelErrno == EAFNOSUPPORT || libnlCode == NLE_AF_NOSUPPORT
    }

    public var libnlMessage: String { String(cString: nl_geterror(libnlCode)) }

    public var description: String {
        var text = "\(operation): "
        if kernelErrno != 0 {
            text += String(cString: strerror(kernelErrno))
            text += " (\(Errno.name(kernelErrno))"
            text += extack.isEmpty ? ")" : "; kernel says: \(extack))"
        } else {
            text += "\(libnlMessage) (libnl error \(libnlCode))"
        }
        return text
    }
}

/// Errors with a meaning for the lab, wrapping the low-level failure that revealed them.
public enum LabNetworkError: Error, CustomStringConvertible, Sendable {
    /// sch_netem is missing from the running kernel (adding a netem qdisc fails with ENOENT).
    case netemUnavailable(NetlinkError)
    case invalidName(String, reason: String)
    case invalidAddress(String, reason: String)
    case notFound(String)
    /// The topology was torn down (an interrupt) while an operation on it was under way.
    case tornDown(String)

    public var description: String {
        switch self {
        case .netemUnavailable(let underlying):
            return "netem is not available in this kernel (\(underlying)); "
                + "load sch_netem or run with the user-mode-linux backend"
        case .invalidName(let name, let reason): return "invalid name \"\(name)\": \(reason)"
        case .invalidAddress(let text, let reason): return "invalid address \"\(text)\": \(reason)"
        case .notFound(let what): return "\(what) not found"
        case .tornDown(let topology): return "topology \(topology) was torn down (interrupted) during the operation"
        }
    }
}

/// errno names: reports print "ETIMEDOUT", not a number.
public enum Errno {
    static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", EBADF: "EBADF",
        EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EBUSY: "EBUSY", EEXIST: "EEXIST",
        ENODEV: "ENODEV", EINVAL: "EINVAL", ENOSPC: "ENOSPC", EPIPE: "EPIPE", ERANGE: "ERANGE",
        ENOSYS: "ENOSYS", EOPNOTSUPP: "EOPNOTSUPP", EADDRINUSE: "EADDRINUSE",
        EADDRNOTAVAIL: "EADDRNOTAVAIL", ENETDOWN: "ENETDOWN", ENETUNREACH: "ENETUNREACH",
        ECONNABORTED: "ECONNABORTED", ECONNRESET: "ECONNRESET", ENOTCONN: "ENOTCONN",
        ETIMEDOUT: "ETIMEDOUT", ECONNREFUSED: "ECONNREFUSED", EHOSTDOWN: "EHOSTDOWN",
        EHOSTUNREACH: "EHOSTUNREACH", EPROTONOSUPPORT: "EPROTONOSUPPORT", EAFNOSUPPORT: "EAFNOSUPPORT",
        EMSGSIZE: "EMSGSIZE", ENOBUFS: "ENOBUFS", ENOPROTOOPT: "ENOPROTOOPT", EPROTO: "EPROTO",
        EROFS: "EROFS", EDQUOT: "EDQUOT", EFBIG: "EFBIG", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
        ENAMETOOLONG: "ENAMETOOLONG", EMFILE: "EMFILE", ENFILE: "ENFILE", EXDEV: "EXDEV", ENOTEMPTY: "ENOTEMPTY",
    ]

    public static func name(_ value: Int32) -> String { names[value] ?? "E\(value)" }
}
