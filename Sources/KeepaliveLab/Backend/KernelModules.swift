import CKeepaliveShim
import Foundation
import KeepaliveNet

/// Loads kernel modules with their dependencies straight from a modules directory (modules.dep),
/// the way `modprobe` does, without kmod: the UML guest's modules live in
/// /usr/lib/uml/modules/<release> on the host filesystem and nothing has to be installed or
/// changed under the host's /lib/modules.
///
/// Requires CAP_SYS_MODULE in the running kernel (the UML guest's init has it).
struct KernelModules {
    let directory: String
    /// Module name → path relative to `directory`.
    private var paths: [String: String] = [:]
    /// Module name → relative paths of its dependencies, as modules.dep lists them (load in reverse).
    private var dependencies: [String: [String]] = [:]
    private var builtin: Set<String> = []

    init(directory: String) throws {
        self.directory = directory
        let dep: String
        do {
            dep = try String(contentsOfFile: "\(directory)/modules.dep", encoding: .utf8)
        } catch {
            throw SystemCallError("read \(directory)/modules.dep", errno: ENOENT)
        }
        for line in dep.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            let deps = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            let name = Self.name(ofPath: path)
            paths[name] = path
            dependencies[name] = deps
        }
        if let list = try? String(contentsOfFile: "\(directory)/modules.builtin", encoding: .utf8) {
            builtin = Set(list.split(separator: "\n").map { Self.name(ofPath: String($0)) })
        }
    }

    /// "kernel/net/sched/sch_netem.ko" → "sch_netem" (the kernel treats '-' and '_' alike).
    static func name(ofPath path: String) -> String {
        var base = String(path.split(separator: "/").last ?? "")
        for suffix in [".ko.xz", ".ko.zst", ".ko.gz", ".ko"] where base.hasSuffix(suffix) {
            base = String(base.dropLast(suffix.count))
            break
        }
        return base.replacingOccurrences(of: "-", with: "_")
    }

    static func isLoaded(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/module/\(name)/initstate")
    }

    /// Loads `module` and what it needs. Returns the modules actually inserted (already loaded and
    /// built-in ones are skipped). The corresponding C function is `finit_module`.
    @discardableResult
    func load(_ module: String) throws -> [String] {
        let name = module.replacingOccurrences(of: "-", with: "_")
        if builtin.contains(name) || Self.isLoaded(name) { return [] }
        guard let path = paths[name] else {
            throw SystemCallError("find module \(name) in \(directory)/modules.dep", errno: ENOENT)
        }
        var inserted: [String] = []
        for dependency in (dependencies[name] ?? []).reversed() {
            inserted += try insert(relativePath: dependency)
        }
        inserted += try insert(relativePath: path)
        return inserted
    }

    private func insert(relativePath: String) throws -> [String] {
        let name = Self.name(ofPath: relativePath)
        if Self.isLoaded(name) { return [] }
        let path = "\(directory)/\(relativePath)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open module \(path)") }
        defer { close(fd) }
        guard kal_finit_module(fd, "", 0) == 0 else {
            if errno == EEXIST { return [] }
            throw SystemCallError("load module \(name) from \(path)")
        }
        return [name]
    }
}
