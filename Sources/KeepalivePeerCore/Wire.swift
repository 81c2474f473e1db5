// The peer's application protocol. No Foundation here: this module is linked into the lean peer
// binary (keepalive-lab-peer), whose start-up cost is paid twice per trial.

// MARK: - Wire format

/// The 4-byte tags of application messages. The capture classifier matches these bytes: never change them.
public enum WireTag: String, CaseIterable, Sendable {
    case heartbeatRequest = "KAHB"
    case heartbeatReply = "KAHR"
    case rrRequest = "KARQ"
    case rrReply = "KARS"
    /// Stream filler: a chunk is this tag repeated, with no sequence number.
    case stream = "KAST"

    public var bytes: [UInt8] { Array(rawValue.utf8) }
}

/// Messages are 8 bytes (tag + UInt32 big-endian seq); stream data is the bare "KAST" tag repeated.
public enum Wire {
    public static let messageLength = 8

    public static func message(_ tag: WireTag, seq: UInt32) -> [UInt8] {
        tag.bytes + withUnsafeBytes(of: seq.bigEndian) { Array($0) }
    }

    public static func streamChunk(bytes: Int) -> [UInt8] {
        Array(repeatElement(WireTag.stream.bytes, count: bytes / 4).joined())
    }
}

/// One unit decoded from a byte stream.
public enum WireItem: Equatable, Sendable {
    case message(WireTag, seq: UInt32)
    /// Consecutive stream filler, coalesced.
    case stream(bytes: Int)
    /// Bytes that are not part of the protocol (the decoder stops there).
    case invalid([UInt8])
}

/// Reassembles messages from arbitrary segment boundaries (recv() results or TCP payloads).
public struct WireDecoder: Sendable {
    private var pending: [UInt8] = []
    public private(set) var failed = false

    public init() {}

    public mutating func feed<C: Collection>(_ bytes: C) -> [WireItem] where C.Element == UInt8 {
        guard !failed else { return [] }
        pending.append(contentsOf: bytes)
        var items: [WireItem] = []
        var i = 0
        var streamRun = 0
        func flushStream() {
            if streamRun > 0 { items.append(.stream(bytes: streamRun)) }
            streamRun = 0
        }
        while pending.count - i >= 4 {
            guard let tag = WireTag(rawValue: String(decoding: pending[i..<i + 4], as: UTF8.self)) else {
                flushStream()
                items.append(.invalid(Array(pending[i..<min(i + Wire.messageLength, pending.count)])))
                failed = true
                break
            }
            if tag == .stream {
                streamRun += 4
                i += 4
                continue
            }
            guard pending.count - i >= Wire.messageLength else { break }
            let seq = pending[i + 4..<i + 8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            flushStream()
            items.append(.message(tag, seq: seq))
            i += Wire.messageLength
        }
        flushStream()
        pending.removeFirst(i)
        return items
    }
}

