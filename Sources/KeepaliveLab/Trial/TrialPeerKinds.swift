import Foundation
import KeepaliveNet

/// The built-in peer on both sides (the `peer` subcommand): it detects on A and speaks the
/// lab's own request/reply.
final class BuiltInPeers: TrialPeers {
    /// The server the trial started first: its events tell whether the request reached B.
    let server: PeerProcess
    let client: PeerProcess
    private let startServer: (Topology) throws -> PeerProcess

    init(server: PeerProcess, client: PeerProcess, startServer: @escaping (Topology) throws -> PeerProcess) {
        self.server = server
        self.client = client
        self.startServer = startServer
    }

    func signalServer(_ signal: Int32) { server.signal(signal) }

    func signalClient(_ signal: Int32) throws {
        throw TrialError(message: "fault crash-client needs real programs as peers (the built-in server does not detect): "
                         + "give the policy an `app:`")
    }

    func restartServer(in topology: Topology) throws -> String {
        _ = try startServer(topology)
        return "fresh server"
    }

    func sendRequest() -> String? {
        client.send(command: "send")
        return nil
    }

    func answer(after sent: Double) -> Double? {
        client.events.first(where: { FaultDriver.isRequest($0, .received, tag: .rrReply) })?.t
    }

    /// The send instant as the client recorded it, and whether B's server saw the request.
    func finishExchange(_ report: inout NetworkFaultReport) {
        if report.sendAt != nil, let sent = client.events.first(where: { FaultDriver.isRequest($0, .sent, tag: .rrRequest) }) {
            report.sendAt = sent.t
        }
        report.dataReachedB = server.events.contains { FaultDriver.isRequest($0, .received, tag: .rrRequest) }
    }
}

/// Real programs on both sides: the client's stdin exchange (`poke`) is its request, and a
/// rebooted B gets the same server program again.
final class ProgramPeers: TrialPeers {
    /// The server now running in B (a new one after a reboot).
    private(set) var server: AppProcess
    let client: AppProcess
    private let poke: (send: String, answer: String)?
    private let pokeAnswer: NSRegularExpression?
    private let startServer: (NetworkNamespace) throws -> AppProcess

    init(server: AppProcess, client: AppProcess, poke: (send: String, answer: String)?,
         startServer: @escaping (NetworkNamespace) throws -> AppProcess) throws {
        self.server = server
        self.client = client
        self.poke = poke
        pokeAnswer = try poke.map { try NSRegularExpression(pattern: $0.answer) }
        self.startServer = startServer
    }

    func signalServer(_ signal: Int32) { server.signalGroup(signal) }
    func signalClient(_ signal: Int32) throws { client.signalGroup(signal) }

    func restartServer(in topology: Topology) throws -> String {
        server = try startServer(topology.b)
        return "\(server.name) restarted"
    }

    func sendRequest() -> String? {
        guard let poke else { return "\(client.name) has no stdin exchange: nothing sent after the silence" }
        client.write(poke.send)
        return nil
    }

    func answer(after sent: Double) -> Double? {
        guard let pokeAnswer else { return nil }
        return client.firstLine(matching: pokeAnswer, streams: ["stdout"], after: sent)?.t
    }

    /// The program's wait predicate: the answer to the request is in (`locked`: called under its lock).
    func answered(_ c: AppProcess, after sent: Double?) -> Bool {
        guard let sent, let pokeAnswer else { return false }
        return c.firstLine(matching: pokeAnswer, streams: ["stdout"], after: sent, locked: true) != nil
    }

    /// A program's answer means the request reached B; no answer says nothing either way.
    func finishExchange(_ report: inout NetworkFaultReport) {
        report.dataReachedB = report.answerAt != nil ? true : nil
    }
}
