import CKeepaliveShim
import CNftables
import Foundation

/// A failed nftables command, folded from libnftables' error report: what was attempted, in which
/// namespace, the library's message ("Could not process rule: No such file or directory") and the
/// script line it points at — never its caret art, never on stderr.
public struct NftablesError: Error, CustomStringConvertible, Sendable {
    /// What the lab was doing ("apply nftables impairment").
    public let operation: String
    /// The network namespace it ran in (nil: the calling thread's, unnamed).
    public let namespace: String?
    /// libnftables' message, without its "Error: " prefix: the first error when there are several.
    public let message: String
    /// The script line the library pointed at, trimmed (nil when it pointed at none).
    public let rule: String?
    /// 1-based line of `rule` in the script, when the library said.
    public let line: Int?
    /// Further errors in the same run, one line each ("line 5 `…`: message").
    public let others: [String]

    public init(operation: String, namespace: String? = nil, message: String, rule: String? = nil, line: Int? = nil,
                others: [String] = []) {
        self.operation = operation
        self.namespace = namespace
        self.message = message
        self.rule = rule
        self.line = line
        self.others = others
    }

    public var description: String {
        var text = operation + (namespace.map { " in \($0)" } ?? "") + ": libnftables: " + message
        if let rule {
            text += " (" + (line.map { "line \($0): " } ?? "") + "`\(rule)`)"
        }
        if !others.isEmpty { text += "; also " + others.joined(separator: "; ") }
        return text
    }
}

/// nftables through libnftables (no `nft` binary). libnftables opens its netlink socket in the
/// thread that runs the command, so every call enters the namespace first.
/// Requires CAP_NET_ADMIN in the namespace.
///
/// libnftables writes its errors to stderr unless told otherwise, and exit()s the whole process when
/// it cannot open its netlink socket: output and errors are buffered, the socket is checked first,
/// and the error report is parsed into `NftablesError`.
public enum Nftables {
    /// Runs an nft script (one or more commands) in `namespace` and returns nft's output.
    @discardableResult
    public static func run(_ script: String, in namespace: NetworkNamespace, operation: String) throws -> String {
        try namespace.perform { try runHere(script, operation: operation, namespace: namespace.name) }
    }

    /// Runs in the calling thread's namespace (`namespace`: its name, for errors).
    @discardableResult
    public static func runHere(_ script: String, operation: String, namespace: String? = nil) throws -> String {
        let socket = kal_netfilter_socket_check()
        guard socket == 0 else {
            throw NftablesError(operation: operation, namespace: namespace,
                                message: "cannot open a NETLINK_NETFILTER socket: \(String(cString: strerror(-socket))) "
                                    + "(\(Errno.name(-socket))); the kernel needs nfnetlink and nf_tables")
        }
        guard let ctx = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw NftablesError(operation: operation, namespace: namespace, message: "nft_ctx_new failed")
        }
        defer { nft_ctx_free(ctx) }
        guard nft_ctx_buffer_output(ctx) == 0, nft_ctx_buffer_error(ctx) == 0 else {
            throw NftablesError(operation: operation, namespace: namespace, message: "could not buffer libnftables' output")
        }
        let rc = ScriptFile(script).map { file in
            defer { file.close() }
            return nft_run_cmd_from_filename(ctx, file.path)
        } ?? nft_run_cmd_from_buffer(ctx, script)
        let output = nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
        guard rc == 0 else {
            let report = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? ""
            throw parseError(report, script: script, operation: operation, namespace: namespace, code: rc)
        }
        return output
    }

    /// The script as a file (a memfd seen through /proc/self/fd) so libnftables' errors carry the
    /// line they refer to: with a buffer, libnftables 1.0 quotes the script's first line whatever the
    /// error's line is. nil where memfd or /proc is unavailable.
    struct ScriptFile {
        let fd: Int32
        let path: String

        init?(_ script: String) {
            let fd = kal_memfd_create("kal-nft")
            guard fd >= 0 else { return nil }
            let bytes = Array(script.utf8)
            let path = "/proc/self/fd/\(fd)"
            guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count,
                  access(path, R_OK) == 0 else {
                Glibc.close(fd)
                return nil
            }
            self.fd = fd
            self.path = path
        }

        func close() { Glibc.close(fd) }
    }

    /// libnftables' error report, e.g.
    ///
    ///     /proc/self/fd/7:4:15-21: Error: Could not process rule: No such file or directory
    ///     add rule ip t nochain accept
    ///                   ^^^^^^^
    ///
    /// (or without the location when the script came from a buffer), folded into one error.
    static func parseError(_ report: String, script: String, operation: String, namespace: String?,
                           code: Int32) -> NftablesError {
        struct Record { var message: String; var line: Int?; var rule: String?; var isError: Bool }
        var records: [Record] = []
        let header = try! NSRegularExpression(pattern: #"^(?:\S+?:(\d+):\d+(?:-\d+)?: |netlink: )?(Error|Warning): (.*)$"#)
        for raw in report.split(separator: "\n", omittingEmptySubsequences: true) {
            let text = String(raw)
            let range = NSRange(text.startIndex..., in: text)
            if let match = header.firstMatch(in: text, range: range) {
                let line = Range(match.range(at: 1), in: text).flatMap { Int(text[$0]) }
                let kind = Range(match.range(at: 2), in: text).map { String(text[$0]) } ?? "Error"
                let message = Range(match.range(at: 3), in: text).map { String(text[$0]) } ?? text
                records.append(Record(message: message, line: line, rule: nil, isError: kind == "Error"))
            } else if text.allSatisfy({ " \t^~".contains($0) }) {
                continue  // the caret art under the quoted line
            } else if let last = records.indices.last, records[last].rule == nil {
                records[last].rule = text.trimmingCharacters(in: .whitespaces)
            } else if records.isEmpty {
                records.append(Record(message: text, line: nil, rule: nil, isError: true))
            }
        }
        // The script's own line is the truth when the library said which one.
        let lines = script.split(separator: "\n", omittingEmptySubsequences: false)
        for index in records.indices {
            if let line = records[index].line, line >= 1, line <= lines.count {
                records[index].rule = lines[line - 1].trimmingCharacters(in: .whitespaces)
            }
        }
        let errors = records.filter(\.isError)
        guard let first = errors.first ?? records.first else {
            return NftablesError(operation: operation, namespace: namespace, message: "failed (libnftables returned \(code), no message)")
        }
        let others = errors.dropFirst().map { record in
            (record.line.map { "line \($0) " } ?? "") + (record.rule.map { "`\($0)`: " } ?? "") + record.message
        }
        return NftablesError(operation: operation, namespace: namespace, message: first.message, rule: first.rule,
                             line: first.line, others: Array(others))
    }
}
