extension DoctorReport {
    /// One backend as the doctor found it on this machine.
    public struct BackendStatus: Codable, Sendable {
        /// host, userns or uml.
        public var name: String
        /// The lab can run there (namespaces and veth work).
        public var available: Bool
        /// The kernel that runs there (uname -r), when it could be asked.
        public var kernel: String?
        /// CONFIG_HZ, when known (UML).
        public var hz: Int?
        /// What happened when it was tried.
        public var why: String
        /// What to do when it is unavailable (empty when available).
        public var fix: String
        /// Feature → available there (netns, veth, netem, nftables, conntrack), from the doctor run inside.
        public var features: [String: Bool]
        /// Feature → why it is missing there.
        public var missing: [String: String]
        /// Host seconds the examination took (UML: the boot plus the doctor inside).
        public var seconds: Double?
        /// UML: host seconds until the guest was up.
        public var bootSeconds: Double?
        /// userns: the way into the user namespace that was used, if one worked.
        public var route: UserNamespaceRoute?
        /// userns: every route tried, in order, and what refused those that failed.
        public var routes: [UserNamespaceAttempt]?

        public init(name: String, available: Bool, kernel: String? = nil, hz: Int? = nil, why: String, fix: String = "",
                    features: [String: Bool] = [:], missing: [String: String] = [:], seconds: Double? = nil,
                    bootSeconds: Double? = nil) {
            self.name = name
            self.available = available
            self.kernel = kernel
            self.hz = hz
            self.why = why
            self.fix = fix
            self.features = features
            self.missing = missing
            self.seconds = seconds
            self.bootSeconds = bootSeconds
        }
    }
}
