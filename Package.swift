// swift-tools-version: 6.0
import PackageDescription

/// Keeps the implicit _Concurrency and _StringProcessing imports (and their shared libraries) out
/// of the peer binary.
let leanSwift: [SwiftSetting] = [
    .unsafeFlags(["-Xfrontend", "-disable-implicit-concurrency-module-import",
                  "-Xfrontend", "-disable-implicit-string-processing-module-import"]),
]

let package = Package(
    name: "keepalive-lab",
    products: [
        .executable(name: "keepalive-lab", targets: ["keepalive-lab"]),
        .executable(name: "keepalive-lab-peer", targets: ["keepalive-lab-peer"]),
        .library(name: "KeepaliveNet", targets: ["KeepaliveNet"]),
        .library(name: "KeepaliveLab", targets: ["KeepaliveLab"]),
    ],
    // Exact versions: Package.resolved is not committed (it is in .gitignore) because the local
    // mirror's commit ids are not GitHub's, so the pins here are what fixes the versions.
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
    ],
    targets: [
        // libnl-3 + libnl-route-3 (netlink: links, addresses, routes, neighbours, qdiscs).
        .systemLibrary(
            name: "CNetlink",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // libpcap: capture in R.
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        // libnftables: firewall / NAT / loss rules in R without the nft binary.
        .systemLibrary(
            name: "CNftables",
            pkgConfig: "libnftables",
            providers: [.apt(["libnftables-dev"])]
        ),
        // zlib: reads /proc/config.gz (the running kernel's CONFIG_HZ).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // struct tcp_info as the lab reports it: one definition and copy for the harness and the
        // lean peer (libc only, so the static peer binary stays as lean as it is).
        .target(name: "CKeepaliveTCPInfo"),
        // What Swift cannot import: unshare/setns/CLONE_NEW*, gettid, TC_HANDLE, extack capture.
        .target(
            name: "CKeepaliveShim",
            dependencies: ["CNetlink", "CKeepaliveTCPInfo"]
        ),
        // The lean peer: libc and the Swift core library only (no Foundation, no Concurrency or
        // StringProcessing runtime), linked statically, so the two peer processes of every trial
        // start in well under a millisecond of CPU each.
        .target(name: "CKeepalivePeer", dependencies: ["CKeepaliveTCPInfo"]),
        .target(
            name: "KeepalivePeerCore",
            dependencies: ["CKeepalivePeer"],
            swiftSettings: leanSwift
        ),
        .executableTarget(
            name: "keepalive-lab-peer",
            dependencies: ["KeepalivePeerCore", "CKeepalivePeer"],
            swiftSettings: leanSwift,
            // Fully static: no dynamic loader at start (0.4 ms of CPU instead of 1.5 ms per peer,
            // measured with perf stat); its pages are shared by every peer through the page cache.
            linkerSettings: [.unsafeFlags(["-static-executable"])]
        ),
        .target(
            name: "KeepaliveNet",
            dependencies: [
                "CNetlink", "CKeepaliveShim", "CNftables",
            ]
        ),
        .target(
            name: "KeepaliveLab",
            dependencies: [
                "KeepaliveNet", "KeepalivePeerCore", "CPcap", "CKeepaliveShim", "CZlib",
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "keepalive-lab",
            dependencies: [
                "KeepaliveNet", "KeepaliveLab", "CKeepaliveShim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "KeepaliveNetTests", dependencies: ["KeepaliveNet"]),
        .testTarget(name: "KeepaliveLabTests", dependencies: ["KeepaliveLab", "KeepaliveNet"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
