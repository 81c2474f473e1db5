import Foundation

/// A real program in place of the built-in peer: a named profile (`socat`, `ssh`, `redis`, `psql`,
/// `curl` for the client; `socat-echo`, `sshd`, `redis-server`, `postgres`, `http-slow` for the
/// server) or a full `command`, with readiness and detection conditions.
///
/// Placeholders in the command: `{server}` (B's address), `{port}`, `{client}` (A's address),
/// `{dir}` (the trial's temporary directory), `{idle}`, `{interval}`, `{count}` (the policy's
/// keepalive), `{user_timeout_ms}`.
public struct AppSpec: Codable, Sendable, Equatable {
    public var profile: String?
    public var command: [String]?
    public var env: [String: String]?
    /// "connected" (the program's connection to B is ESTABLISHED), "listen" (a TCP port listening
    /// in B), "stdout:REGEX" (a line on stdout or stderr), "none".
    public var ready: String?
    /// "exit", "socket-gone", "output:REGEX".
    public var detect: String?
    /// Profile options, e.g. ssh `-o` settings `{ServerAliveInterval: 1}`, redis-server `tcp-keepalive`.
    public var options: [String: String]?

    public init(profile: String? = nil, command: [String]? = nil, env: [String: String]? = nil,
                ready: String? = nil, detect: String? = nil, options: [String: String]? = nil) {
        self.profile = profile
        self.command = command
        self.env = env
        self.ready = ready
        self.detect = detect
        self.options = options
    }

    public var summary: String {
        var s = profile ?? command?.first ?? "command"
        if let options, !options.isEmpty {
            s += " " + options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        }
        return s
    }

    public static let clientProfiles = ["socat", "ssh", "redis", "psql", "curl"]
    public static let serverProfiles = ["socat-echo", "sshd", "redis-server", "postgres", "http-slow"]

    public func validate(role: String) throws {
        let known = role == "client" ? Self.clientProfiles : Self.serverProfiles
        if let profile, !known.contains(profile) {
            throw PolicyError.malformed(field: "\(role) app", input: profile, expected: known.joined(separator: ", ") + " (or a full `command:`)")
        }
        if profile == nil && (command ?? []).isEmpty {
            throw PolicyError.malformed(field: "\(role) app", input: "", expected: "`app: PROFILE` or a non-empty `command:`")
        }
        if let ready { _ = try AppCondition.ready(ready) }
        if let detect { _ = try AppCondition.detect(detect) }
    }
}

enum AppCondition {
    enum Ready: Equatable { case connected, listen, output(String), none }
    enum Detect: Equatable { case exit, socketGone, output(String) }

    static func ready(_ text: String) throws -> Ready {
        switch text {
        case "connected": return .connected
        case "listen": return .listen
        case "none": return .none
        default:
            if text.hasPrefix("stdout:") { return .output(try regex(String(text.dropFirst(7)), "ready")) }
            throw PolicyError.malformed(field: "ready", input: text, expected: "connected, listen, none or {stdout: REGEX}")
        }
    }

    static func detect(_ text: String) throws -> Detect {
        switch text {
        case "exit": return .exit
        case "socket-gone": return .socketGone
        default:
            if text.hasPrefix("output:") { return .output(try regex(String(text.dropFirst(7)), "detect")) }
            throw PolicyError.malformed(field: "detect", input: text, expected: "exit, socket-gone or {output: REGEX}")
        }
    }

    private static func regex(_ pattern: String, _ field: String) throws -> String {
        do { _ = try NSRegularExpression(pattern: pattern) } catch {
            throw PolicyError.malformed(field: "\(field) regex", input: pattern, expected: "a valid regular expression")
        }
        return pattern
    }
}

/// A resolved program: what to run, how to know it is ready, how it tells us it noticed.
struct AppCommand {
    var name: String
    var argv: [String]

    /// The program an argv runs, past the wrappers the profiles put in front (`unshare --ipc`,
    /// `setpriv --reuid=…`): their options all start with "--".
    static func program(_ argv: [String]) -> String {
        argv.first { !["unshare", "setpriv"].contains($0) && !$0.hasPrefix("--") } ?? argv.first ?? ""
    }
    var env: [String: String] = [:]
    var ready: AppCondition.Ready
    var detect: AppCondition.Detect
    /// A line for stdin and the regex of its answer on stdout: sent once ready (a first exchange),
    /// and after the silence of a nat-idle fault.
    var poke: (send: String, answer: String)?
    /// Debian package that provides the program (for "not installed" errors).
    var package: String?
    /// Runs before the program (keys, configuration, a database cluster).
    var setup: ((String) throws -> Void)?
    /// `ready` by output: also require a LISTEN socket on the port (servers).
    var confirmListen = false
}

/// Profiles: how each real program is started and what its options mean.
enum AppProfiles {
    struct Context {
        var server: String
        var client: String
        var port: UInt16
        var dir: String
        var policy: Policy
    }

    static func substitute(_ text: String, _ c: Context) -> String {
        var s = text
        let k = c.policy.keepalive
        let values: [String: String] = [
            "{server}": c.server, "{client}": c.client, "{port}": String(c.port), "{dir}": c.dir,
            "{idle}": k.map { String($0.idle) } ?? "", "{interval}": k.map { String($0.interval) } ?? "",
            "{count}": k.map { String($0.count) } ?? "", "{user_timeout_ms}": c.policy.userTimeoutMs.map(String.init) ?? "",
        ]
        for (key, value) in values { s = s.replacingOccurrences(of: key, with: value) }
        return s
    }

    /// The program for `spec` in `role`; `partner` is the other side's spec (a client profile
    /// picks its server when the server names none).
    static func resolve(_ spec: AppSpec, role: String, context c: Context) throws -> AppCommand {
        var command: AppCommand
        let o = spec.options ?? [:]
        switch spec.profile {
        case nil:
            command = AppCommand(name: spec.command![0], argv: spec.command!, ready: role == "client" ? .connected : .listen,
                                 detect: .exit)
        case "socat"?:
            var address = "TCP:\(c.server):\(c.port)"
            if let k = c.policy.keepalive {
                address += ",keepalive,keepidle=\(k.idle),keepintvl=\(k.interval),keepcnt=\(k.count)"
            } else if c.policy.useSysctlDefaults || o["keepalive"] == "on" {
                address += ",keepalive"
            }
            if let u = c.policy.userTimeoutMs { address += ",setsockopt-int=6:18:\(u)" }
            command = AppCommand(name: "socat", argv: ["socat", "STDIO", address], ready: .connected, detect: .exit,
                                 poke: ("kal-poke\n", "^kal-poke$"), package: "socat")
        case "socat-echo"?:
            command = AppCommand(name: "socat", argv: ["socat", "-d", "-d", "TCP-LISTEN:\(c.port),bind=\(c.server),reuseaddr", "PIPE"],
                                 ready: .listen, detect: .exit, package: "socat")
        case "ssh"?:
            var argv = ["ssh", "-F", "/dev/null", "-i", "\(c.dir)/user_key", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-p", String(c.port)]
            for (key, value) in o.sorted(by: { $0.key < $1.key }) { argv += ["-o", "\(key)=\(value)"] }
            argv += ["root@\(c.server)", "echo kal-ready; exec cat"]
            command = AppCommand(name: "ssh", argv: argv, ready: .output("^kal-ready$"), detect: .exit,
                                 poke: ("kal-poke\n", "^kal-poke$"), package: "openssh-client")
            command.setup = { dir in try sshKeys(dir) }
        case "sshd"?:
            var config = """
                Port \(c.port)
                ListenAddress \(c.server)
                HostKey \(c.dir)/host_key
                PidFile none
                AuthorizedKeysFile \(c.dir)/authorized_keys
                StrictModes no
                PermitRootLogin yes
                UsePAM no
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                LogLevel INFO

                """
            for (key, value) in o.sorted(by: { $0.key < $1.key }) { config += "\(key) \(value)\n" }
            let text = config
            command = AppCommand(name: "sshd", argv: ["/usr/sbin/sshd", "-D", "-e", "-f", "\(c.dir)/sshd_config"],
                                 ready: .output("Server listening on"), detect: .exit, package: "openssh-server",
                                 setup: { dir in
                                     try sshKeys(dir)
                                     try text.write(toFile: "\(dir)/sshd_config", atomically: true, encoding: .utf8)
                                     try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
                                 }, confirmListen: true)
        case "redis"?:
            command = AppCommand(name: "redis-cli", argv: ["redis-cli", "-h", c.server, "-p", String(c.port)],
                                 ready: .connected, detect: .socketGone, poke: ("PING\n", "PONG"), package: "redis-tools")
        case "redis-server"?:
            var argv = ["redis-server", "--port", String(c.port), "--bind", c.server, "--save", "", "--appendonly", "no",
                        "--protected-mode", "no", "--dir", c.dir, "--daemonize", "no"]
            for (key, value) in o.sorted(by: { $0.key < $1.key }) { argv += ["--\(key)", value] }
            command = AppCommand(name: "redis-server", argv: argv, ready: .output("Ready to accept connections"),
                                 detect: .exit, package: "redis-server", confirmListen: true)
        case "curl"?:
            var argv = ["curl", "-sS", "-o", "/dev/null"]
            if let k = c.policy.keepalive { argv += ["--keepalive-time", String(k.idle)] }
            if o["keepalive"] == "off" { argv.append("--no-keepalive") }
            argv.append("http://\(c.server):\(c.port)/")
            command = AppCommand(name: "curl", argv: argv, ready: .connected, detect: .exit, package: "curl")
        case "http-slow"?:
            let reply = "printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 100000000\\r\\n\\r\\nhello'; exec sleep 100000"
            command = AppCommand(name: "socat", argv: ["socat", "-d", "-d", "TCP-LISTEN:\(c.port),bind=\(c.server),reuseaddr",
                                                       "SYSTEM:\(reply)"],
                                 ready: .listen, detect: .exit, package: "socat")
        case "psql"?:
            var conninfo = "host=\(c.server) port=\(c.port) user=postgres dbname=postgres connect_timeout=10"
            if let k = c.policy.keepalive {
                conninfo += " keepalives=1 keepalives_idle=\(k.idle) keepalives_interval=\(k.interval) keepalives_count=\(k.count)"
            }
            if let u = c.policy.userTimeoutMs { conninfo += " tcp_user_timeout=\(u)" }
            command = AppCommand(name: "psql", argv: ["psql", "-X", "-q", "-A", "-t", conninfo], ready: .connected,
                                 detect: .socketGone, poke: ("select 'kal-poke';\n", "^kal-poke$"), package: "postgresql-client")
        case "postgres"?:
            let bin = "/usr/lib/postgresql/15/bin"
            let asPostgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
            // A killed postmaster never unlinks its shared memory. Its dynamic segments go to files
            // in the data directory (removed with the trial's directory) instead of /dev/shm, and
            // its System V interlock segment lives in an IPC namespace of its own, freed by the
            // kernel when the last of its processes is gone.
            command = AppCommand(name: "postgres",
                                 argv: ["unshare", "--ipc"] + asPostgres
                                     + ["\(bin)/postgres", "-D", "\(c.dir)/pgdata", "-k", c.dir, "-h", c.server,
                                        "-p", String(c.port), "-c", "fsync=off", "-c", "logging_collector=off",
                                        "-c", "dynamic_shared_memory_type=mmap"]
                                     + o.sorted(by: { $0.key < $1.key }).flatMap { ["-c", "\($0.key)=\($0.value)"] },
                                 ready: .output("ready to accept connections"), detect: .exit, package: "postgresql",
                                 setup: { dir in
                                     let pgdata = "\(dir)/pgdata"
                                     guard !FileManager.default.fileExists(atPath: pgdata) else { return }  // reboot: same disk
                                     _ = chown(dir, postgresUid.0, postgresUid.1)
                                     try AppProcess.runToCompletion(asPostgres + ["\(bin)/initdb", "-D", pgdata, "-U", "postgres",
                                                                                  "--auth=trust", "-E", "UTF8", "--no-sync"])
                                     // The client connects from A over the network (initdb's trust covers only local ones).
                                     let hba = try String(contentsOfFile: "\(pgdata)/pg_hba.conf", encoding: .utf8)
                                     try (hba + "\nhost all all 0.0.0.0/0 trust\n").write(toFile: "\(pgdata)/pg_hba.conf", atomically: false, encoding: .utf8)
                                 }, confirmListen: true)
            guard FileManager.default.isExecutableFile(atPath: "\(bin)/postgres") else {
                throw TrialError(message: "postgres: \(bin)/postgres is not installed: install the Debian package postgresql (scripts/install-deps)")
            }
        default:
            throw PolicyError.malformed(field: "\(role) app", input: spec.profile!, expected: (AppSpec.clientProfiles + AppSpec.serverProfiles).joined(separator: ", "))
        }
        if let custom = spec.command, spec.profile != nil { command.argv = custom }
        command.argv = command.argv.map { substitute($0, c) }
        command.env = (spec.env ?? [:]).mapValues { substitute($0, c) }
        if let r = spec.ready { command.ready = try AppCondition.ready(r); command.confirmListen = false }
        if let d = spec.detect { command.detect = try AppCondition.detect(d) }
        let program = AppCommand.program(command.argv)
        if AppProcess.which(program) == nil {
            let hint = command.package.map { ": install the Debian package \($0) (scripts/install-deps)" } ?? ""
            throw TrialError(message: "\(program) is not installed\(hint)")
        }
        return command
    }

    /// The default server for a client profile.
    static func defaultServer(for client: AppSpec) -> AppSpec {
        switch client.profile {
        case "ssh"?: return AppSpec(profile: "sshd")
        case "redis"?: return AppSpec(profile: "redis-server")
        case "psql"?: return AppSpec(profile: "postgres")
        case "curl"?: return AppSpec(profile: "http-slow")
        default: return AppSpec(profile: "socat-echo")
        }
    }

    static var postgresUid: (uid_t, gid_t) {
        guard let pw = getpwnam("postgres") else { return (0, 0) }
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    /// A host key and a user key (authorized) in `dir`, once per trial directory.
    static func sshKeys(_ dir: String) throws {
        for key in ["host_key", "user_key"] where !FileManager.default.fileExists(atPath: "\(dir)/\(key)") {
            try AppProcess.runToCompletion(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "keepalive-lab", "-f", "\(dir)/\(key)"])
        }
        let pub = try String(contentsOfFile: "\(dir)/user_key.pub", encoding: .utf8)
        try pub.write(toFile: "\(dir)/authorized_keys", atomically: true, encoding: .utf8)
    }
}
