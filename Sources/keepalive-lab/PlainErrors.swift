import ArgumentParser
import Foundation
import KeepaliveNet

/// The last line of defence for "no library's raw text reaches the terminal": a Foundation error
/// that escaped a command (an NSError prints as a dump of its domain, code and user info) is
/// said in the lab's words — what failed, the path, the errno. Every other error passes as it is.
enum PlainErrors {
    struct Plain: Error, CustomStringConvertible {
        let description: String
    }

    static func wrap(_ error: Error) -> Error {
        guard error is CocoaError || type(of: error) is NSError.Type else { return error }
        return Plain(description: describe(error as NSError))
    }

    static func describe(_ error: NSError) -> String {
        let path = (error.userInfo[NSFilePathErrorKey] as? String) ?? (error.userInfo[NSURLErrorKey] as? URL)?.path
        var posix: Int32?
        if error.domain == NSPOSIXErrorDomain { posix = Int32(error.code) }
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            posix = Int32(underlying.code)
        }
        let what = path.map { "file operation on \($0)" } ?? "file operation"
        if let posix { return "\(what) failed: \(String(cString: strerror(posix))) (\(Errno.name(posix)))" }
        return "\(what) failed (Foundation error \(error.code) in \(error.domain))"
    }
}
