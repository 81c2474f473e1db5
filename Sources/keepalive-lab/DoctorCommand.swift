import ArgumentParser
import Foundation
import KeepaliveNet

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Tell what this machine can run: capabilities, namespaces, veth, netem, nftables, conntrack, user namespaces, UML.",
        discussion: "Every check is a real attempt in a throwaway namespace. Exit status 0 when the lab can run here.")

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let report = Doctor.examine(userNamespaceProbe: UserNamespaceProbe.runAsNobody)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("kernel        \(report.kernel)")
            let caps = report.capabilities.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value ? "yes" : "no")" }
            print("capabilities  \(caps.joined(separator: " "))")
            for check in report.checks {
                print("\(check.available ? "ok  " : "MISSING") \(check.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(check.why)")
                if !check.available { print("        \("".padding(toLength: 16, withPad: " ", startingAt: 0)) fix: \(check.fix)") }
            }
            print(report.canRun ? "the lab can run here (host backend)" : "the lab cannot run here: see MISSING above")
        }
        if !report.canRun { throw ExitCode(1) }
    }
}

/// Runs `keepalive-lab probe-userns` as uid/gid 65534 in a child process and reports its failure.
enum UserNamespaceProbe {
    static func runAsNobody() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: selfExecutable())
        process.arguments = ["probe-userns", "--uid", "65534"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return "could not start the probe: \(error)" }
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 ? nil : (text.isEmpty ? "probe exited \(process.terminationStatus)" : text)
    }

    static func selfExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// Hidden: drops to an unprivileged uid, then tries unshare(CLONE_NEWUSER | CLONE_NEWNET).
struct ProbeUserNamespaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "probe-userns", shouldDisplay: false)

    @Option var uid: UInt32 = 65534

    func run() throws {
        if getuid() == 0 {
            var groups: [gid_t] = []
            guard setgroups(0, &groups) == 0, setgid(uid) == 0, setuid(uid) == 0 else {
                print("cannot drop to uid \(uid): \(String(cString: strerror(errno)))")
                throw ExitCode(2)
            }
        }
        do {
            try UserNamespace.enterUnprivileged()
            print("ok")
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
