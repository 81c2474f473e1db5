import KeepaliveNet

/// `none`: nothing happens, B stays healthy (a baseline; a closed connection is a false positive).
struct NoFault: BareFaultKind {
    static let bare = BareFault(name: "none", value: .none, site: .nowhere,
                                help: "nothing happens: a baseline (a closed connection is a false positive)",
                                phrase: "none, B stays healthy")
}
