// keepalive-lab-peer: the lean peer process the harness spawns twice per trial (server in B,
// client in A). Only libc and the Swift core library are loaded: no Foundation, no argument
// parser, no libnl or libpcap, so hundreds of peers can start at once (see Reports/benchmark.md).
//
//   keepalive-lab-peer [--netns /run/netns/NAME] ROLE ADDRESS PORT [key=value | flag]…
//
// Events go to stdout as JSON lines, commands come on stdin ("snapshot", "send", "quit"); the
// same protocol as `keepalive-lab peer --config JSON`, which runs the same session.
import CKeepalivePeer
import KeepalivePeerCore

#if canImport(Glibc)
import Glibc
#endif

/// The peer's whole run (a function, not top-level code: its variables are locals, not globals
/// shared with other code, which Swift 6 would reject).
func peerMain() -> Never {
    // A peer must never outlive the harness, whatever killed it.
    _ = kalp_parent_death_signal(SIGKILL)
    var arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == "--netns", arguments.count >= 2 {
        let path = arguments[1]
        arguments.removeFirst(2)
        // Before any socket exists: sockets keep the namespace they were created in.
        let nsFD = open(path, O_RDONLY | O_CLOEXEC)
        guard nsFD >= 0 else { exit(peerSetupFailure("open \(path): \(String(cString: strerror(errno)))", errno: errno)) }
        guard kalp_setns_net(nsFD) == 0 else { exit(peerSetupFailure("setns \(path): \(String(cString: strerror(errno)))", errno: errno)) }
        close(nsFD)
    }
    do {
        let settings = try PeerSettings(arguments: arguments)
        exit(PeerSession(settings).run())
    } catch {
        exit(peerSetupFailure("config: \(error)", errno: nil, exitCode: 2))
    }
}

peerMain()
