import CKeepaliveShim
import CNetlink
import Glibc

/// A NETLINK_ROUTE socket bound to the network namespace it was opened in.
///
/// Sockets keep the namespace they were created in, so a socket opened once on a namespace thread
/// can then be used from any thread. Requests are serialised by the caller (one owner per socket).
/// Requires CAP_NET_ADMIN in the namespace for every change.
// @unchecked: holds a libnl nl_sock (C pointer, not thread-safe); its owner serialises requests (one owner per socket).
public final class NetlinkSocket: @unchecked Sendable {
    let handle: OpaquePointer
    private let lastError: UnsafeMutablePointer<kal_nl_error>
    /// Namespace name, for error messages ("create veth r-b in kal-…-r").
    public let namespaceName: String

    /// Opens a socket in the calling thread's network namespace.
    public init(namespaceName: String) throws {
        guard let sk = kal_nl_socket_alloc_quiet() else {
            throw SystemCallError("allocate netlink socket for \(namespaceName)", errno: ENOMEM)
        }
        lastError = .allocate(capacity: 1)
        lastError.initialize(to: kal_nl_error())
        let rc = nl_connect(sk, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(sk)
            lastError.deallocate()
            throw NetlinkError(operation: "connect NETLINK_ROUTE in \(namespaceName)",
                               libnlCode: -rc, kernelErrno: 0, extack: "")
        }
        _ = kal_nl_capture_errors(sk, lastError)
        handle = sk
        self.namespaceName = namespaceName
    }

    /// Opens a socket inside `namespace`.
    public static func open(in namespace: NetworkNamespace) throws -> NetlinkSocket {
        try namespace.perform { try NetlinkSocket(namespaceName: namespace.name) }
    }

    deinit {
        nl_socket_free(handle)
        lastError.deallocate()
    }

    /// Runs one libnl request and turns a negative return into a `NetlinkError` carrying the kernel's
    /// errno and extack from the error callback.
    @discardableResult
    func request(_ operation: @autoclosure () -> String, _ call: () -> Int32) throws -> Int32 {
        lastError.pointee.kernel_errno = 0
        lastError.pointee.extack.0 = 0
        let rc = call()
        guard rc < 0 else { return rc }
        let extack = withUnsafePointer(to: lastError.pointee.extack) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        throw NetlinkError(operation: "\(operation()) in \(namespaceName)", libnlCode: -rc,
                           kernelErrno: lastError.pointee.kernel_errno, extack: extack)
    }
}
