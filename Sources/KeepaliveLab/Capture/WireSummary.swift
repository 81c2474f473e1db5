/// What a trial cost on the wire, from classified segments. Dictionary keys are
/// `SegmentKind` raw values ("keepalive_probe", …) so the JSON reads naturally.
public struct WireSummary: Codable, Sendable, Equatable {
    public struct Tally: Codable, Sendable, Equatable {
        public var count = 0
        public var bytes = 0
    }

    /// All segments, whatever their direction (including unrelated traffic as "other").
    public var byKind: [String: Tally] = [:]
    public var aToB: [String: Tally] = [:]
    public var bToA: [String: Tally] = [:]
    /// By kind, for frames not belonging to the connection (ARP, other flows, unrelated ICMP).
    public var unrelated: [String: Tally] = [:]

    /// A→B keepalive probes (zero-window probes are `window_probe` and not counted here).
    public var probesSent = 0
    /// B→A replies to A's probes.
    public var probeReplies = 0
    /// Times (monotonic s) of RSTs A sent.
    public var rstFromA: [Double] = []
    /// Time of the last B→A TCP segment: the last thing A heard from B.
    public var lastFromB: Double?
    /// Wire bytes of the connection's TCP segments and the ICMP errors about it.
    public var bytesOnWire = 0

    /// Summarises segments with `t > after` (all of them when nil), e.g. only what followed a fault.
    public init(_ segments: [ClassifiedSegment], after: Double? = nil) {
        for seg in segments where after.map({ seg.t > $0 }) ?? true {
            add(seg)
        }
    }

    public func count(_ kind: SegmentKind, _ direction: SegmentDirection? = nil) -> Int {
        tally(kind, direction).count
    }

    public func bytes(_ kind: SegmentKind, _ direction: SegmentDirection? = nil) -> Int {
        tally(kind, direction).bytes
    }

    private func tally(_ kind: SegmentKind, _ direction: SegmentDirection?) -> Tally {
        let table: [String: Tally]
        switch direction {
        case nil: table = byKind
        case .aToB?: table = aToB
        case .bToA?: table = bToA
        case .other?: table = unrelated
        }
        return table[kind.rawValue] ?? Tally()
    }

    private mutating func add(_ seg: ClassifiedSegment) {
        let key = seg.kind.rawValue
        byKind[key, default: Tally()].add(seg.wireBytes)
        switch seg.direction {
        case .aToB: aToB[key, default: Tally()].add(seg.wireBytes)
        case .bToA: bToA[key, default: Tally()].add(seg.wireBytes)
        case .other: unrelated[key, default: Tally()].add(seg.wireBytes)
        }
        guard seg.direction != .other else { return }
        bytesOnWire += seg.wireBytes
        switch (seg.direction, seg.kind) {
        case (.aToB, .keepaliveProbe): probesSent += 1
        case (.bToA, .keepaliveReply): probeReplies += 1
        case (.aToB, .rst): rstFromA.append(seg.t)
        default: break
        }
        if seg.direction == .bToA, seg.kind != .icmp {
            lastFromB = max(lastFromB ?? seg.t, seg.t)
        }
    }
}

private extension WireSummary.Tally {
    mutating func add(_ bytes: Int) {
        count += 1
        self.bytes += bytes
    }
}
