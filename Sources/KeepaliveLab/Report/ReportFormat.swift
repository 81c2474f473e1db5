import Foundation

// Number and text formatting shared by the report's renderers. Seconds get three decimals
// everywhere (the capture is good to well under a millisecond; more digits would be noise).

/// "4.883" — seconds, no unit.
func fmtSeconds(_ v: Double?) -> String {
    guard let v, v.isFinite else { return "—" }
    return String(format: "%.3f", v)
}

/// "+1.811" / "-0.203": times relative to the fault.
func fmtSigned(_ v: Double) -> String { String(format: "%+.3f", v) }

/// "2", "0.2", "1800", "1.5": whole numbers without ".0", others with up to 3 decimals.
func fmtNumber(_ v: Double) -> String {
    guard v.isFinite else { return "—" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    var s = String(format: "%.3f", v)
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s
}

/// "237,600": grouped thousands for byte counts.
func fmtBytes(_ v: Double?) -> String {
    guard let v, v.isFinite else { return "—" }
    let n = Int64(v.rounded())
    var digits = String(abs(n))
    var groups: [String] = []
    while digits.count > 3 {
        groups.insert(String(digits.suffix(3)), at: 0)
        digits.removeLast(3)
    }
    groups.insert(digits, at: 0)
    return (n < 0 ? "-" : "") + groups.joined(separator: ",")
}

/// "33 %", "0 %".
func fmtPercent(_ v: Double?) -> String {
    guard let v, v.isFinite else { return "n/a" }
    return fmtNumber((v * 1000).rounded() / 10) + " %"
}

/// Text safe inside a Markdown table cell.
func markdownCell(_ s: String) -> String {
    s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
}

/// Text safe in XML content and attribute values (XML 1.0: characters it cannot carry are dropped).
func xmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
        default:
            let v = scalar.value
            let allowed = (0x20...0xD7FF).contains(v) || (0xE000...0xFFFD).contains(v) || (0x10000...0x10FFFF).contains(v)
            if allowed { out.unicodeScalars.append(scalar) }
        }
    }
    return out
}

extension TrialResult {
    /// "A detects ETIMEDOUT", "A's heartbeat times out".
    var detectionPhrase: String {
        switch detectedBy {
        case "heartbeat": return "A's heartbeat times out"
        case "eof": return "A reads EOF"
        case let by?: return "\(detectingHost) detects \(by)"
        case nil: return "\(detectingHost) detects the failure"
        }
    }

    /// "A", or "B" when its server is the detecting side (crash-client).
    var detectingHost: String { spec.fault.detectingHost }
}
