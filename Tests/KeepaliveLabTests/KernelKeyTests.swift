import Foundation
import Testing
@testable import KeepaliveLab

/// `keepalive-lab kernel key`: the cache key CI caches restore the lab kernel by. Through the
/// command line and scripts/build-lab-kernel (the one place the key is computed); no privilege, no
/// build. The key must be the directory name a build writes, and change with everything that
/// changes the kernel: the Debian source version, HZ, kernel/lab.config and the recipe revision.
@Suite(.enabled(if: PeerBinary.path != nil, "needs the keepalive-lab executable (swift build)"))
struct KernelKeyTests {
    static let source = "6.12.118-1~deb12u1"

    /// Runs `keepalive-lab kernel key ARGS` (KEEPALIVE_LAB_SOURCE: another source tree).
    func key(_ arguments: [String], sourceTree: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: PeerBinary.path!)
        process.arguments = ["kernel", "key"] + arguments
        var environment = ProcessInfo.processInfo.environment
        if let sourceTree { environment["KEEPALIVE_LAB_SOURCE"] = sourceTree }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self).trimmingCharacters(in: .newlines),
                String(decoding: errData, as: UTF8.self))
    }

    @Test func keyIsTheCacheDirectoryNameOfSourceVersionAndHz() throws {
        let k250 = try key(["--source-version", Self.source])
        #expect(k250.status == 0, "\(k250.err)")
        #expect(k250.out.wholeMatch(of: /linux-6\.12\.118-hz250-[0-9a-f]{12}/) != nil, "key: \(k250.out)")
        #expect(try key(["--source-version", Self.source]).out == k250.out, "the same inputs give the same key")
        let k1000 = try key(["--source-version", Self.source, "--hz", "1000"])
        #expect(k1000.out.hasPrefix("linux-6.12.118-hz1000-") && k1000.out.suffix(12) != k250.out.suffix(12))
        let newer = try key(["--source-version", "6.12.118-1~deb12u2"])
        #expect(newer.out.hasPrefix("linux-6.12.118-hz250-") && newer.out != k250.out, "a Debian revision builds a new kernel")
    }

    @Test func keyChangesWithTheFragmentAndTheRecipe() throws {
        // A copy of the two inputs that live in the tree, edited one at a time.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("keepalive-lab-key-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: copy) }
        for directory in ["scripts", "kernel"] {
            try FileManager.default.createDirectory(atPath: "\(copy)/\(directory)", withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: "\(root)/scripts/build-lab-kernel", toPath: "\(copy)/scripts/build-lab-kernel")
        try FileManager.default.copyItem(atPath: "\(root)/kernel/lab.config", toPath: "\(copy)/kernel/lab.config")
        let original = try key(["--source-version", Self.source])
        #expect(try key(["--source-version", Self.source], sourceTree: copy).out == original.out, "an unchanged copy keys the same")

        let fragment = "\(copy)/kernel/lab.config"
        try (String(contentsOfFile: fragment, encoding: .utf8) + "CONFIG_NET_SCH_TBF=y\n").write(toFile: fragment, atomically: true, encoding: .utf8)
        let edited = try key(["--source-version", Self.source], sourceTree: copy)
        #expect(edited.status == 0 && edited.out != original.out, "a changed fragment must change the key: \(edited.out)")

        let script = "\(copy)/scripts/build-lab-kernel"
        let text = try String(contentsOfFile: script, encoding: .utf8)
        #expect(text.contains("\nrecipe=1\n"), "the recipe revision line moved: update this test")
        try text.replacingOccurrences(of: "\nrecipe=1\n", with: "\nrecipe=2\n").write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let bumped = try key(["--source-version", Self.source], sourceTree: copy)
        #expect(bumped.status == 0 && bumped.out != edited.out, "a new recipe revision must change the key")
    }

    @Test func badInputIsRefusedNamingTheValidRange() throws {
        let hz = try key(["--hz", "300"])
        #expect(hz.status != 0 && hz.err.contains("--hz 300 is not supported: use 100, 250 or 1000"), "\(hz.err)")
        let version = try key(["--source-version", "6.12 rc"])
        #expect(version.status != 0 && version.err.contains("not a Debian version"), "\(version.err)")
    }

    static let kernelMissing: String? = LabKernel.find(hz: LabKernel.defaultHz) == nil
        ? "no lab kernel at HZ=\(LabKernel.defaultHz) is built (looked in \(LabKernel.searchDirectories.joined(separator: ", "))): scripts/build-lab-kernel"
        : nil

    /// The key of the installed source is the directory the machine's lab kernel was built in.
    @Test(.enabled(if: CIGate.runs(Self.kernelMissing), Comment(rawValue: Self.kernelMissing ?? "")))
    func keyOfTheInstalledSourceNamesTheBuiltKernel() throws {
        let build = try #require(LabKernel.find(hz: LabKernel.defaultHz), "no lab kernel at HZ=\(LabKernel.defaultHz): scripts/build-lab-kernel")
        let installed = try key([])
        #expect(installed.status == 0, "\(installed.err)")
        #expect(installed.out == URL(fileURLWithPath: build.directory).lastPathComponent, "key \(installed.out) vs built \(build.directory)")
        #expect(try key(["--source-version", build.info.sourceVersion]).out == installed.out)
    }
}
