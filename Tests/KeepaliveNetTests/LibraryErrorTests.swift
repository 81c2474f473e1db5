import Foundation
import Testing
@testable import KeepaliveNet

/// libnftables' error report folded into the lab's own error: no caret art, the right line.
struct NftablesErrorParsingTests {
    @Test func fileReportGivesMessageAndTheScriptLine() {
        let script = "add table ip t\nadd chain ip t c\nadd rule ip t c accept\n  add rule ip t nochain accept"
        let report = """
            /proc/self/fd/7:4:17-23: Error: Could not process rule: No such file or directory
              add rule ip t nochain accept
                            ^^^^^^^

            """
        let error = Nftables.parseError(report, script: script, operation: "apply nftables impairment", namespace: "kal-x-r", code: -1)
        #expect(error.message == "Could not process rule: No such file or directory")
        #expect(error.rule == "add rule ip t nochain accept")
        #expect(error.line == 4)
        #expect(error.description == "apply nftables impairment in kal-x-r: libnftables: Could not process rule: No such file or "
                + "directory (line 4: `add rule ip t nochain accept`)")
    }

    @Test func bufferReportAndSeveralErrors() {
        let report = """
            Error: Could not process rule: No such file or directory
            add rule ip nosuch c accept
                        ^^^^^^
            /proc/self/fd/4:3:15-16: Error: Could not process rule: No such file or directory
            add rule ip t c2 accept
                          ^^

            """
        let error = Nftables.parseError(report, script: "add rule ip nosuch c accept\nx\nadd rule ip t c2 accept",
                                        operation: "probe", namespace: nil, code: -1)
        #expect(error.rule == "add rule ip nosuch c accept")
        #expect(error.line == nil)
        #expect(error.others == ["line 3 `add rule ip t c2 accept`: Could not process rule: No such file or directory"])
        #expect(!error.description.contains("^"))
    }
}

/// Privileged: a real failing ruleset in a real namespace. Nothing may reach this process's stderr.
@Suite(.serialized, .enabled(if: Privileges.canCreateNamespaces, privilegedSkipReason))
struct LibraryErrorTests {
    /// Runs `body` with fd 2 redirected to a temporary file; returns what was written there.
    func capturingStderr<T>(_ body: () throws -> T) rethrows -> (T, String) {
        let path = NSTemporaryDirectory() + "kal-stderr-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(file >= 0)
        let saved = dup(2)
        fflush(nil)
        dup2(file, 2)
        defer {
            fflush(nil)
            dup2(saved, 2)
            close(saved)
            close(file)
            unlink(path)
        }
        let result = try body()
        fflush(nil)
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return (result, text)
    }

    @Test func failingRulesetYieldsOneCleanErrorAndNoStderr() throws {
        let name = "kal-nfterr\(getpid())-\(LabID.newRunID())-r"
        let ns = try NetworkNamespace.create(named: name)
        defer { ns.delete() }
        let script = "add table ip kal_err\nadd chain ip kal_err c { type filter hook forward priority 0; }\n"
            + "add rule ip kal_err c tcp dport 80 accept\nadd rule ip kal_err nochain accept"
        let (error, written) = capturingStderr { () -> NftablesError? in
            do {
                try Nftables.run(script, in: ns, operation: "apply a test ruleset")
                return nil
            } catch let error as NftablesError {
                return error
            } catch {
                Issue.record("unexpected error \(error)")
                return nil
            }
        }
        let failure = try #require(error, "a rule in a missing chain must fail")
        let text = failure.description
        #expect(text.contains(name), "names the namespace: \(text)")
        #expect(text.contains("Could not process rule: No such file or directory"), "the library's message: \(text)")
        #expect(failure.rule == "add rule ip kal_err nochain accept", "the offending line, not the first: \(text)")
        #expect(failure.line == 4)
        #expect(!text.contains("^") && !text.contains("\n"), "one line, no caret art: \(text)")
        for leak in ["Error:", "Could not process", "^^", "nochain"] {
            #expect(!written.contains(leak), "nothing from libnftables on stderr, got: \(written)")
        }
        // The transaction failed as a whole: the table from line 1 is not there.
        #expect(throws: NftablesError.self) { try Nftables.run("list table ip kal_err", in: ns, operation: "list") }
    }

    /// A syntax error: the library's message and the line it is on, nothing on stderr.
    @Test func unknownSyntaxIsReportedWithItsLine() throws {
        let name = "kal-nfterr\(getpid())-\(LabID.newRunID())-r"
        let ns = try NetworkNamespace.create(named: name)
        defer { ns.delete() }
        let (error, written) = capturingStderr { () -> NftablesError? in
            do {
                try Nftables.run("add table ip kal_err\nadd chain ip kal_err c\nadd rule ip kal_err c meta foo bar",
                                 in: ns, operation: "apply a test ruleset")
                return nil
            } catch {
                return error as? NftablesError
            }
        }
        let failure = try #require(error)
        #expect(failure.message.hasPrefix("syntax error, unexpected foo"), "\(failure)")
        #expect(failure.line == 3 && failure.rule == "add rule ip kal_err c meta foo bar", "\(failure)")
        #expect(!written.contains("syntax error"), "stderr: \(written)")
    }
}
