import CNftables
import Foundation

/// A failed nftables command: the command text and libnftables' own error output.
public struct NftablesError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let message: String
    public var description: String { "\(operation): \(message)" }
}

/// nftables through libnftables (no `nft` binary). libnftables opens its netlink socket in the
/// thread that runs the command, so every call enters the namespace first.
/// Requires CAP_NET_ADMIN in the namespace.
public enum Nftables {
    /// Runs an nft script (one or more commands) in `namespace` and returns nft's output.
    @discardableResult
    public static func run(_ script: String, in namespace: NetworkNamespace, operation: String) throws -> String {
        try namespace.perform { try runHere(script, operation: "\(operation) in \(namespace.name)") }
    }

    /// Runs in the calling thread's namespace.
    @discardableResult
    public static func runHere(_ script: String, operation: String) throws -> String {
        guard let ctx = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw NftablesError(operation: operation, message: "nft_ctx_new failed")
        }
        defer { nft_ctx_free(ctx) }
        _ = nft_ctx_buffer_output(ctx)
        _ = nft_ctx_buffer_error(ctx)
        let rc = nft_run_cmd_from_buffer(ctx, script)
        let output = nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
        guard rc == 0 else {
            let message = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? "error \(rc)"
            throw NftablesError(operation: operation,
                                message: message.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return output
    }
}
