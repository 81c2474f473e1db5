import Foundation
import KeepaliveLab

/// What `run`, `trial` and `bench` say first, before any result.
enum StartupNotices {
    /// The peers will be the slow Foundation-linked ones: which, and why (nothing when lean).
    static func peers() {
        if let notice = PeerProcess.slowPeerNotice(near: PeerProcess.selfExecutable) {
            FileHandle.standardError.write(Data("\(notice)\n".utf8))
        }
    }
}
