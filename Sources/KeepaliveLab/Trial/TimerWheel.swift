/// The kernel's timer wheel (`kernel/time/timer.c`, Linux ≥ 4.8), which runs TCP's keepalive and
/// retransmission timers. A timer is never early but is rounded UP to its level's bucket, so a long
/// timer is late by up to 8^level jiffies: 7200 s at HZ=100 may fire 327.68 s late.
public enum TimerWheel {
    /// LVL_CLK_SHIFT: each level is 8 times coarser than the one below.
    static let levelClockShift = 3
    /// LVL_BITS: 64 buckets per level.
    static let levelBits = 6
    static let levelSize: UInt64 = 1 << 6

    /// LVL_DEPTH: one more level when HZ > 100.
    public static func depth(hz: Int) -> Int { hz > 100 ? 9 : 8 }

    /// LVL_START(n): the smallest delta placed in level n.
    static func levelStart(_ n: Int) -> UInt64 { (levelSize - 1) << UInt64((n - 1) * levelClockShift) }

    /// LVL_SHIFT(n).
    static func levelShift(_ level: Int) -> Int { level * levelClockShift }

    /// LVL_GRAN(n), in jiffies.
    public static func granularity(level: Int) -> UInt64 { 1 << UInt64(levelShift(level)) }

    /// WHEEL_TIMEOUT_CUTOFF and WHEEL_TIMEOUT_MAX: a timer beyond the wheel's capacity is clamped.
    static func cutoff(hz: Int) -> UInt64 { levelStart(depth(hz: hz)) }
    static func timeoutMax(hz: Int) -> UInt64 { cutoff(hz: hz) - granularity(level: depth(hz: hz) - 1) }

    /// The level `calc_wheel_index()` picks for a timer `delta` jiffies away.
    public static func level(forDelta delta: UInt64, hz: Int) -> Int {
        let depth = depth(hz: hz)
        for level in 0..<(depth - 1) where delta < levelStart(level + 1) { return level }
        return depth - 1
    }

    /// `calc_index()`: the jiffy at which the timer's bucket expires. `(expires >> shift) + 1`:
    /// rounded up with the level's granularity, and a level-0 timer still gets one more jiffy
    /// (it may have been armed at the very end of a tick).
    static func calcIndexExpiry(_ expires: UInt64, level: Int) -> UInt64 {
        let shift = UInt64(levelShift(level))
        return ((expires >> shift) + 1) << shift
    }

    /// `calc_wheel_index()`: the jiffy at which a timer armed at wheel clock `clk` for jiffy
    /// `expires` actually fires (its bucket_expiry). Wrap-around of jiffies is ignored (UInt64).
    public static func bucketExpiry(expires: UInt64, clk: UInt64, hz: Int) -> UInt64 {
        guard expires >= clk else { return clk }  // (long) delta < 0: expire at once
        let delta = expires - clk
        let depth = depth(hz: hz)
        for level in 0..<(depth - 1) where delta < levelStart(level + 1) {
            return calcIndexExpiry(expires, level: level)
        }
        // "Force expire obscene large timeouts to expire at the capacity limit of the wheel."
        let clamped = delta >= cutoff(hz: hz) ? clk + timeoutMax(hz: hz) : expires
        return calcIndexExpiry(clamped, level: depth - 1)
    }

    /// How late (jiffies) a timer armed for `delta` jiffies may fire after `expires`: 1 …
    /// granularity of its level. Beyond the wheel's capacity the timer is clamped (early), which no
    /// TCP timer reaches (the cutoff is ≥ 12 days at HZ=1000).
    public static func maxLateness(delta: UInt64, hz: Int) -> UInt64 {
        granularity(level: level(forDelta: delta, hz: hz))
    }

    /// `msecs_to_jiffies()`: rounds up.
    public static func msecsToJiffies(_ ms: UInt64, hz: Int) -> UInt64 {
        (ms * UInt64(hz) + 999) / 1000
    }

    /// `jiffies_to_msecs()`.
    public static func jiffiesToMsecs(_ j: UInt64, hz: Int) -> UInt64 { j * 1000 / UInt64(hz) }
}

/// Where a chain of re-armed timers may fire, in jiffies after an anchor's jiffy: each firing
/// re-arms the next timer from the jiffy it actually ran at, so lateness accumulates.
///
/// A timer that fired at the end of its level-L bucket sits on a multiple of 8^L jiffies; a
/// following timer of a level ≤ L then fires at an exactly known offset (`calc_index()` on an
/// aligned clock) — which is why 75 s intervals at HZ=100 are exactly 76.8 s apart. `jitter` is how
/// many jiffies after its bucket a handler may run (0 in a virtual-time kernel; a busy host: 1).
public struct TimerChain: Sendable, Equatable {
    /// Earliest and latest bucket expiry, jiffies after the anchor's jiffy.
    public var earliest: UInt64
    public var latest: UInt64
    /// The firing jiffy is a multiple of 2^alignmentShift (0: unknown phase).
    public var alignmentShift: Int
    public let hz: Int
    public let jitter: UInt64

    public init(earliest: UInt64, latest: UInt64, alignmentShift: Int = 0, hz: Int, jitter: UInt64) {
        self.earliest = earliest
        self.latest = latest
        self.alignmentShift = alignmentShift
        self.hz = hz
        self.jitter = jitter
    }

    /// A timer armed at the anchor's own jiffy (of unknown phase) for `delta` jiffies.
    public static func armed(delta: UInt64, hz: Int, jitter: UInt64) -> TimerChain {
        let level = TimerWheel.level(forDelta: delta, hz: hz)
        return TimerChain(earliest: delta + 1, latest: delta + TimerWheel.granularity(level: level),
                          alignmentShift: TimerWheel.levelShift(level), hz: hz, jitter: jitter)
    }

    /// The next timer, armed by the handler of this one for `delta` jiffies.
    public func rearmed(delta: UInt64) -> TimerChain {
        rearmed(delta: delta ... delta)
    }

    /// Same, when the handler computes the delta from a clock it reads (a range). The bucket
    /// expiry grows with the delta (a longer delta lands in a coarser level, rounded up further).
    public func rearmed(delta: ClosedRange<UInt64>) -> TimerChain {
        let (dLow, dHigh) = (delta.lowerBound, delta.upperBound)
        let levelLow = TimerWheel.level(forDelta: dLow, hz: hz)
        let levelHigh = TimerWheel.level(forDelta: dHigh, hz: hz)
        var next = self
        // Every bucket expiry of level L is a multiple of 8^L.
        next.alignmentShift = TimerWheel.levelShift(levelLow)
        if TimerWheel.levelShift(levelHigh) <= alignmentShift {
            // Armed from a clock that is a multiple of the new level's granularity (plus at most
            // `jitter`): the offset is known, `calc_index()` of the delta itself.
            next.earliest = earliest + TimerWheel.calcIndexExpiry(dLow, level: levelLow)
            next.latest = latest + TimerWheel.calcIndexExpiry(dHigh + jitter, level: levelHigh)
            return next
        }
        // A coarser level than the clock's alignment: anywhere in the bucket, except that an
        // aligned clock (no jitter, one delta) cannot land in the bucket's last 2^alignment − 1 jiffies.
        let exact = jitter == 0 && dLow == dHigh
        let a = UInt64(1) << UInt64(alignmentShift)
        next.earliest = earliest + dLow + (exact ? a - dLow % a : 1)
        next.latest = latest + dHigh + jitter + TimerWheel.granularity(level: levelHigh) - (exact ? dHigh % a : 0)
        return next
    }

    /// Seconds from this firing (as measured) to the next, armed for `delta`: what one re-arm
    /// adds, whatever the earlier lateness was. A tick either way: both instants sit somewhere in
    /// their jiffy.
    public func step(delta: UInt64) -> ClosedRange<Double> {
        let next = TimerChain(earliest: 0, latest: 0, alignmentShift: alignmentShift, hz: hz, jitter: jitter).rearmed(delta: delta)
        let tick = 1 / Double(hz)
        return (Double(next.earliest) - 1) * tick ... (Double(next.latest + jitter) + 1) * tick
    }

    /// Seconds after the anchor's real instant: the anchor may lie anywhere in its jiffy (up to a
    /// tick before the expected instant), and a handler may run `jitter` jiffies after its bucket.
    public var seconds: ClosedRange<Double> {
        let tick = 1 / Double(hz)
        return (Double(earliest) - 1) * tick ... Double(latest + jitter) * tick
    }
}
