/// The matrix of a lab run: every (cell, trial) in a fixed order, so a shard is deterministic.
public struct TrialPlan: Sendable {
    public struct Item: Sendable {
        /// Position in the full matrix (shards pick by it).
        public var index: Int
        public var cellIndex: Int
        public var cell: Lab.Cell
        public var trial: Int
        public var spec: TrialSpec
        /// [0-9a-z]: goes into namespace names.
        public var trialID: String { "c\(cellIndex)t\(trial)" }
    }

    public var items: [Item]

    /// `shard` is (I, N) with 1 ≤ I ≤ N: items whose index ≡ I−1 (mod N).
    public init(lab: Lab, trialsOverride: Int? = nil, shard: (Int, Int)? = nil) {
        var items: [Item] = []
        let trials = trialsOverride ?? lab.trials
        for (cellIndex, cell) in lab.cells.enumerated() {
            for trial in 0..<trials {
                items.append(Item(index: items.count, cellIndex: cellIndex, cell: cell, trial: trial,
                                  spec: Self.spec(for: cell, lab: lab, trial: trial)))
            }
        }
        if let (i, n) = shard { items = items.filter { $0.index % n == i - 1 } }
        self.items = items
    }

    /// Trial k of every cell gets seed `lab.seed + k`: policies are compared under the same random
    /// loss sequences where the engine can be seeded.
    public static func spec(for cell: Lab.Cell, lab: Lab, trial: Int) -> TrialSpec {
        TrialSpec(clientPolicy: cell.policy.client, serverPolicy: cell.policy.server,
                  workload: cell.fault.workload, fault: cell.fault.fault, deadline: cell.fault.deadline,
                  faultDelay: cell.fault.faultDelay, namespaceKeepalive: cell.policy.namespaceKeepalive,
                  impairment: cell.fault.impairment, seed: lab.seed &+ UInt64(trial), silence: cell.fault.silence,
                  shape: cell.fault.shape, sysctls: cell.policy.sysctls ?? [:])
    }
}
