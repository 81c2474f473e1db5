import Glibc
import KeepaliveNet

/// What a fault does to the hosts, for every kind of peer: B's (or A's) cable cut and its process
/// killed, R answering for a dead B, the server killed or stopped. R's misbehaviour (loss,
/// partition, NAT) is NetworkFaultDriver's; this does nothing for those.
enum HostFault {
    /// `signalServer` / `signalClient` deliver a signal to the server's or the client's processes.
    static func inject(_ fault: Fault, topology: Topology, signalServer: (Int32) -> Void,
                       signalClient: ((Int32) -> Void)?) throws {
        switch fault {
        case .none, .loss, .partition, .natIdle:
            break
        case .crash, .reboot:
            try topology.cutB()
            signalServer(SIGKILL)
        case .crashICMP:
            try Nftables.run("""
                table ip kal_fault {
                    chain forward {
                        type filter hook forward priority 0; policy accept;
                        ip daddr \(Topology.bAddress.address) reject with icmp type host-unreachable
                    }
                }
                """, in: topology.r, operation: "answer for the dead B with ICMP host-unreachable")
            try topology.cutB()
            signalServer(SIGKILL)
        case .kill:
            signalServer(SIGKILL)
        case .freeze:
            signalServer(SIGSTOP)
        case .crashClient:
            guard let signalClient else {
                throw TrialError(message: "fault crash-client needs real programs as peers (the built-in server does not detect): "
                                 + "give the policy an `app:`")
            }
            try topology.cutA()
            signalClient(SIGKILL)
        }
    }
}
