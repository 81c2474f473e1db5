/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence on every platform, so a
/// seed written in a result reproduces the same drop pattern anywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A seed of its own for each use of the trial's seed (A→B loss, B→A loss, …), so two
    /// directions never share a sequence.
    public static func derive(_ seed: UInt64, stream: UInt64) -> UInt64 {
        var generator = SplitMix64(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
        return generator.next()
    }
}

/// nftables' `numgen random` cannot be seeded. A reproducible loss pattern instead counts the
/// packets of one direction (`numgen inc mod period`) and drops those whose index is in a set drawn
/// from a seeded generator: exactly `count` of every `period` packets, at seeded positions.
public struct SeededDropPattern: Sendable, Equatable {
    public static let period = 1000

    /// Packet indices (0 ..< period) that are dropped, ascending.
    public let indices: [Int]

    public init(lossPercent: Double, seed: UInt64) {
        // At least one index for any loss > 0: a requested loss never silently becomes none.
        let wanted = Int((lossPercent / 100 * Double(Self.period)).rounded())
        let count = min(Self.period, lossPercent > 0 ? max(1, wanted) : 0)
        var generator = SplitMix64(seed: seed)
        // Partial Fisher–Yates: the first `count` slots are a uniform random subset.
        var slots = Array(0..<Self.period)
        for i in 0..<count {
            let j = i + Int(generator.next() % UInt64(Self.period - i))
            slots.swapAt(i, j)
        }
        indices = slots.prefix(count).sorted()
    }

    /// The loss this pattern really produces (it is rounded to 1 / period).
    public var effectivePercent: Double { Double(indices.count) * 100 / Double(Self.period) }
}
