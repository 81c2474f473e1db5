import Foundation

/// What the host asks the UML guest's init to do: written as JSON into the run's private directory,
/// which the guest reads through hostfs at the same path.
public struct UMLJob: Codable, Sendable {
    /// The keepalive-lab binary (same path inside the guest).
    public var executable: String
    /// The command to run, without the executable (`--backend host` already appended).
    public var arguments: [String]
    public var workingDirectory: String
    /// Added to the command's environment.
    public var environment: [String: String]
    /// Modules to load before the command runs (with their dependencies).
    public var modules: [String]
    public var moduleDirectory: String
}

/// One line the guest's init writes on the control console (JSON lines).
public struct UMLEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Init is up: filesystems mounted, modules loaded; the command is about to start.
        case ready
        /// The command exited with `status`.
        case exit
        /// Init could not do its job; `message` says why.
        case error
        /// An answer to the host's `status` request: `uptime` and `busiest`.
        case status
    }

    public var event: Kind
    public var kernel: String?
    /// Guest uptime (seconds since the kernel started) when the event was written.
    public var uptime: Double?
    public var loaded: [String]?
    /// Module → why it did not load.
    public var failed: [String: String]?
    public var status: Int32?
    public var message: String?
    /// `status`: the processes that ran the most since the previous request ("pid 42 keepalive-lab
    /// peer …: 1.234 s on CPU").
    public var busiest: [String]?

    public init(event: Kind, kernel: String? = nil, uptime: Double? = nil, loaded: [String]? = nil,
                failed: [String: String]? = nil, status: Int32? = nil, message: String? = nil, busiest: [String]? = nil) {
        self.busiest = busiest
        self.event = event
        self.kernel = kernel
        self.uptime = uptime
        self.loaded = loaded
        self.failed = failed
        self.status = status
        self.message = message
    }
}

/// What the host may ask the guest's init on the control console's input (one word a line).
enum UMLControlRequest {
    /// Answer with a `status` event.
    static let status = "status"
}

/// The guest's consoles, as the host wires them: each is a UML console line on a host pipe.
enum UMLConsole {
    /// Kernel messages and UML's own output (host fd 1 and 2 of linux.uml).
    static let kernelLine = 0
    /// The command's stdout.
    static let stdoutLine = 1
    /// The command's stderr.
    static let stderrLine = 2
    /// UMLEvent lines.
    static let controlLine = 3

    static func device(_ line: Int) -> String { "/dev/tty\(line)" }
}
